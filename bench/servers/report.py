#!/usr/bin/env python3
"""bench/servers/report.py DIR - the summary of a bench/servers/run.sh run.

Reads DIR/servers.csv (one row per server x size x mode), writes
DIR/servers.json (the same rows as objects), DIR/summary.md (a table and the
targets) and DIR/plot.dat (client max latency and haul downtime per cell, for
plot.gp), and prints the issue's targets as PASS/FAIL lines:
  0 client errors, 0 wrong values, 0 reconnects in every mode;
  pre-copy: clients' max latency <= haul's downtime + 20 ms;
  pre-copy at 4 GiB: clients' max latency <= 50 ms;
and whether each dataset came through identical.  Exit 1 when any target
failed (a cell that did not move fails the first), else 0.
"""
import csv
import json
import os
import sys

MODES = ["pre-copy", "post-copy", "stop-and-copy", "hybrid", "criu"]


def num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def size_gib(s):
    unit = s[-1:].upper()
    n = num(s[:-1]) if unit in "KMG" else num(s)
    if n is None:
        return 0
    return n / {"K": 1 << 20, "M": 1 << 10, "G": 1}.get(unit, 1 << 30)


def targets(rows):
    lines, failed = [], False
    for r in rows:
        name = "%s %s %s" % (r["server"], r["size"], r["mode"])
        if r["status"] == "skipped":
            lines.append("SKIP %s: %s" % (name, r["note"]))
            continue
        if r["status"] != "ok":
            lines.append("FAIL target 0 client errors: %s: did not move (%s)" % (name, r["note"]))
            failed = True
            continue
        bad = [k for k in ("client_errors", "client_wrong", "client_reconnects")
               if num(r[k]) != 0]
        ok = not bad
        lines.append("%s target 0 client errors: %s: %s errors, %s wrong, %s reconnects"
                     % ("PASS" if ok else "FAIL", name, r["client_errors"],
                        r["client_wrong"], r["client_reconnects"]))
        failed |= not ok
        ok = r["dataset"] == "identical"
        lines.append("%s dataset identical: %s" % ("PASS" if ok else "FAIL", name))
        failed |= not ok
        if r["mode"] != "pre-copy":
            continue
        mx, down = num(r["client_max_ms"]), num(r["haul_downtime_ms"])
        ok = mx is not None and down is not None and mx <= down + 20
        lines.append("%s target pre-copy max <= downtime + 20 ms: %s: max %s ms, downtime %s ms"
                     % ("PASS" if ok else "FAIL", name, r["client_max_ms"],
                        r["haul_downtime_ms"]))
        failed |= not ok
        if size_gib(r["size"]) >= 4:
            ok = mx is not None and mx <= 50
            lines.append("%s target pre-copy max <= 50 ms at 4 GiB: %s: max %s ms"
                         % ("PASS" if ok else "FAIL", name, r["client_max_ms"]))
            failed |= not ok
    return lines, failed


def plot_data(rows, path):
    cells = []
    for r in rows:
        key = "%s-%s" % (r["server"], r["size"])
        if key not in cells:
            cells.append(key)
    get = {("%s-%s" % (r["server"], r["size"]), r["mode"]): r for r in rows}
    with open(path, "w") as f:
        f.write("cell " + " ".join("max:" + m for m in MODES) + " "
                + " ".join("down:" + m for m in MODES) + "\n")
        for c in cells:
            vals = []
            for col in ("client_max_ms", "haul_downtime_ms"):
                for m in MODES:
                    r = get.get((c, m))
                    v = num(r[col]) if r and r["status"] == "ok" else None
                    vals.append("-" if v is None else "%g" % v)
            f.write(c + " " + " ".join(vals) + "\n")
    return bool(cells)


def main():
    d = sys.argv[1]
    with open(os.path.join(d, "servers.csv")) as f:
        rows = list(csv.DictReader(f))
    with open(os.path.join(d, "servers.json"), "w") as f:
        json.dump(rows, f, indent=1)
    lines, failed = targets(rows)
    for l in lines:
        print("bench-servers: " + l)
    cols = ["server", "size", "mode", "status", "client_p50_ms", "client_p99_ms",
            "client_max_ms", "client_max_gap_ms", "client_errors", "client_wrong",
            "client_reconnects", "haul_downtime_ms", "haul_total_s", "dataset", "note"]
    with open(os.path.join(d, "summary.md"), "w") as f:
        f.write("| " + " | ".join(cols) + " |\n|" + "---|" * len(cols) + "\n")
        for r in rows:
            f.write("| " + " | ".join(r.get(c, "") or "" for c in cols) + " |\n")
        f.write("\n" + "\n".join("- " + l for l in lines) + "\n")
    plot_data([r for r in rows if r["status"] == "ok"], os.path.join(d, "plot.dat"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
