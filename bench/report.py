#!/usr/bin/env python3
"""bench/report.py - the harness's arithmetic: read haul's --json, add ratios, make plot data.

  report.py --haul-json FILE      print "downtime_ms total_s bytes rounds pages_per_round
                                  throttle_max_pct dump_ms restore_ms freeze_at_s resume_at_s
                                  memory_complete_ms fault_p50_us fault_p99_us faults
                                  client_stall_ms client_stall_before_ms
                                  client_stall_resolution_ms attach_stop_ms scan_call_max_ms
                                  throttle_stall_max_ms"
                                  ('-' if absent; the fault numbers are the target's, post-copy)
  report.py --csv CSV --out DIR   add the ratio columns to CSV (against haul stop-and-copy
                                  of the same memory, rate, pattern and bandwidth in the
                                  same run), write DIR/summary.md, and the gnuplot data
                                  DIR/headline.md (one line per memory, rate and link), and
                                  DIR/plot_*.dat + DIR/plotvars.gp that bench/plot.gp reads;
                                  with post-copy cells also DIR/postcopy.md (issue 6's metrics);
                                  issue 16's targets: DIR/stalls.md and PASS/FAIL lines

Ratios are taken only within one run: the baseline is measured minutes apart on the
same machine, with the same fresh-memory conditions.
"""
import csv
import json
import os
import sys

RATIO_COLS = ["gap_vs_sc", "downtime_vs_sc", "total_vs_sc"]
MODES = ["stop-and-copy", "pre-copy", "post-copy", "hybrid"]


def find(obj, names):
    """The first value under any of @names, searching nested objects breadth-first."""
    queue = [obj]
    while queue:
        o = queue.pop(0)
        if isinstance(o, dict):
            for n in names:
                if n in o and not isinstance(o[n], (dict,)):
                    return o[n]
            queue.extend(v for v in o.values() if isinstance(v, (dict, list)))
        elif isinstance(o, list):
            queue.extend(v for v in o if isinstance(v, (dict, list)))
    return None


def haul_json(path):
    try:
        with open(path) as f:
            j = json.load(f)
    except (OSError, ValueError):
        print("- - - - - - - - - - - - - -")
        return
    down = find(j, ["downtime_ms"])
    if down is None and find(j, ["downtime_us"]) is not None:
        down = find(j, ["downtime_us"]) / 1000.0
    if down is None and find(j, ["downtime_s"]) is not None:
        down = find(j, ["downtime_s"]) * 1000.0
    total = find(j, ["total_s", "total_time_s"])
    if total is None:
        t = find(j, ["total_ms", "total_time_ms"])
        total = t / 1000.0 if t is not None else None
    nbytes = find(j, ["bytes_sent", "bytes", "total_bytes", "bytes_total", "wire_bytes"])
    rounds = find(j, ["rounds", "nrounds", "round_count"])
    if isinstance(rounds, list):
        rounds = len(rounds)

    ppr = find(j, ["pages_per_round"])
    ppr = ";".join(str(p) for p in ppr) if isinstance(ppr, list) and ppr else None
    throttle = find(j, ["throttle_max_pct"])
    dump = find(j, ["dump_ms"])
    restore = find(j, ["restore_ms"])
    kill = find(j, ["kill_ms"])
    complete = find(j, ["memory_complete_ms"])
    lazy = find(j, ["lazy"]) and find(j, ["target_report"])
    fp50 = find(j, ["fault_p50_us"]) if lazy else None
    fp99 = find(j, ["fault_p99_us"]) if lazy else None
    faults = find(j, ["faults"]) if lazy else None
    # When the process froze and when it ran again on the target, in seconds after
    # migrate began: its total ends with killing the source, after the downtime
    # (post-copy: after all memory arrived, which memory_complete_ms counts from
    # the freeze).
    freeze_at = resume_at = None
    if total is not None and down is not None:
        end = total - (kill or 0) / 1000.0
        span = complete if find(j, ["lazy"]) and complete is not None else down
        freeze_at = max(0.0, end - span / 1000.0)
        resume_at = freeze_at + down / 1000.0

    def fmt(v, spec):
        return "-" if v is None else format(v, spec)

    # haul's own view of the client's stalls (issue 16); null (None) where it cannot know
    stall = [find(j, [k]) for k in ("client_stall_ms", "client_stall_before_ms",
                                    "client_stall_resolution_ms", "attach_stop_ms",
                                    "scan_call_max_ms", "throttle_stall_max_ms")]
    print(fmt(down, ".3f"), fmt(total, ".3f"), fmt(nbytes, "d") if isinstance(nbytes, int)
          else fmt(nbytes, ".0f"), fmt(rounds, "d") if isinstance(rounds, int) else fmt(rounds, ""),
          fmt(ppr, ""), fmt(throttle, ""), fmt(dump, ".3f"), fmt(restore, ".3f"),
          fmt(freeze_at, ".3f"), fmt(resume_at, ".3f"), fmt(complete, ".3f"),
          fmt(fp50, ".1f"), fmt(fp99, ".1f"), fmt(faults, "d") if isinstance(faults, int)
          else fmt(faults, ""), *(fmt(v, ".3f") for v in stall))


def num(s):
    try:
        return float(s)
    except (TypeError, ValueError):
        return None


def ratio(a, b):
    a, b = num(a), num(b)
    if a is None or b is None or b <= 0:
        return ""
    return "%.3f" % (a / b)


def median(rows, engine, mode, mib, rate, bw, col):
    """The median of @col over the ok repeats of one cell, or None."""
    v = sorted(x for x in (num(r.get(col)) for r in rows
                           if (r["engine"], r["mode"], r["mem_mib"], r["rate"], r["bandwidth"])
                           == (engine, mode, mib, rate, bw) and r["status"] == "ok")
               if x is not None)
    if not v:
        return None
    return v[len(v) // 2] if len(v) % 2 else (v[len(v) // 2 - 1] + v[len(v) // 2]) / 2


def mem_label(mib):
    mib = int(mib)
    return "%dG" % (mib // 1024) if mib % 1024 == 0 else "%dM" % mib


def rate_label(r):
    return r if r == "unbounded" else r + " MiB/s"


def summarize(path, out):
    with open(path) as f:
        rows = list(csv.DictReader(f))
    if not rows:
        print("bench: no rows in %s" % path)
        return 0
    fields = [k for k in rows[0].keys() if k not in RATIO_COLS] + RATIO_COLS
    base = {}
    for r in rows:
        if r["engine"] == "haul" and r["mode"] == "stop-and-copy" and r["status"] == "ok":
            base[(r["run"], r["mem_mib"], r["rate"], r["pattern"], r["bandwidth"],
                  r.get("rep") or "1")] = r
    for r in rows:
        b = base.get((r["run"], r["mem_mib"], r["rate"], r["pattern"], r["bandwidth"],
                      r.get("rep") or "1"))
        ok = r["status"] == "ok" and b is not None
        r["gap_vs_sc"] = ratio(r["client_gap_ms"], b["client_gap_ms"]) if ok else ""
        r["downtime_vs_sc"] = ratio(r["downtime_ms"], b["downtime_ms"]) if ok else ""
        r["total_vs_sc"] = ratio(r["total_s"], b["total_s"]) if ok else ""
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)

    # summary.md: one table, every cell, ratios against stop-and-copy
    lines = ["| engine | mode | memory | dirty rate | bandwidth | client downtime ms (x s&c) "
             "| haul downtime ms | total s (x s&c) | MiB sent | rounds | verify / why |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    counts = {}
    for r in rows:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
        if r["status"] == "ok":
            gap = "%s (%sx)" % (r["client_gap_ms"], r["gap_vs_sc"] or "?")
            tot = "%s (%sx)" % (r["total_s"], r["total_vs_sc"] or "?")
            mb = num(r["bytes"])
            mb = "%.0f" % (mb / 2**20) if mb is not None else "-"
            tail = r["verify"]
        else:
            gap = tot = mb = "-"
            tail = "%s: %s" % (r["status"], r["note"])
        lines.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            r["engine"], r["mode"], mem_label(r["mem_mib"]), rate_label(r["rate"]),
            r["bandwidth"], gap, r["downtime_ms"] or "-", tot, mb, r["rounds"] or "-", tail))
    lines.append("")
    lines.append("cells: " + ", ".join("%d %s" % (v, k) for k, v in sorted(counts.items())))
    with open(os.path.join(out, "summary.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    # headline.md: one line per (memory, rate, bandwidth), one column per mode,
    # medians over the repeats
    ok_rows = [r for r in rows if r["status"] == "ok"]
    modes = [m for m in MODES if any(r["mode"] == m and r["engine"] == "haul" for r in ok_rows)]
    not_run = {}
    for r in rows:
        if r["mode"] not in modes or r["engine"] != "haul":
            not_run.setdefault("%s %s" % (r["engine"], r["mode"]), r["note"])
    head = ["| memory | dirty rate | link | " + " | ".join(
        "%s: client downtime ms / total s" % m for m in modes) + " |",
        "|---|---|---|" + "---|" * len(modes)]
    keys = list(dict.fromkeys((r["mem_mib"], r["rate"], r["bandwidth"]) for r in rows))
    for mib, rate, bw in keys:
        cells = []
        sc_gap = median(ok_rows, "haul", "stop-and-copy", mib, rate, bw, "client_gap_ms")
        sc_tot = median(ok_rows, "haul", "stop-and-copy", mib, rate, bw, "total_s")
        for m in modes:
            tried = [x for x in rows if x["engine"] == "haul" and x["mode"] == m and
                     (x["mem_mib"], x["rate"], x["bandwidth"]) == (mib, rate, bw)]
            n_ok = sum(1 for x in tried if x["status"] == "ok")
            gap = median(ok_rows, "haul", m, mib, rate, bw, "client_gap_ms")
            tot = median(ok_rows, "haul", m, mib, rate, bw, "total_s")
            if not tried:
                cells.append("-")
                continue
            if gap is None or tot is None:
                cells.append(tried[0]["status"])
                continue
            if m == "stop-and-copy" or not sc_gap or not sc_tot:
                text = "%.0f / %.1f" % (gap, tot)
            else:
                text = "%.0f (%.3fx) / %.1f (%.3fx)" % (gap, gap / sc_gap, tot, tot / sc_tot)
            if n_ok != len(tried):
                text += " (%d of %d ok)" % (n_ok, len(tried))
            cells.append(text)
        head.append("| %s | %s | %s | %s |" % (mem_label(mib), rate_label(rate), bw,
                                               " | ".join(cells)))
    head.append("")
    for name, why in not_run.items():
        head.append("- %s: not run (%s)" % (name, why))
    with open(os.path.join(out, "headline.md"), "w") as f:
        f.write("\n".join(head) + "\n")

    postcopy_report(rows, out)
    stall_targets(rows, out)

    for r in rows:
        if r["status"] == "ok" and r["mode"] != "stop-and-copy" and r["gap_vs_sc"]:
            print("bench: ratio: %s %s %s %s %s: client downtime %sx stop-and-copy, total %sx"
                  % (r["engine"], r["mode"], mem_label(r["mem_mib"]), rate_label(r["rate"]),
                     r["bandwidth"], r["gap_vs_sc"], r["total_vs_sc"] or "?"))
    print("bench: cells: " + ", ".join("%d %s" % (v, k) for k, v in sorted(counts.items())))

    # plot data: per memory size, a table with one column per mode; nothing
    # stale from an earlier run may stay behind to be plotted
    for name in os.listdir(out):
        if name.startswith("plot_") or name == "plotvars.gp" or name.endswith(".png"):
            os.unlink(os.path.join(out, name))
    ok = [r for r in rows if r["status"] == "ok"]
    if not ok:
        print("bench: skipped: plots (no cell ran)")
        return 0
    # a memory size none of whose cells ran (skipped: too large here) gets no panel
    mems = sorted({int(r["mem_mib"]) for r in ok})
    bws = list(dict.fromkeys(r["bandwidth"] for r in rows))
    # slowest first, as on an x axis of growing bandwidth
    order = {"1gbit": 0, "10gbit": 1, "loopback": 2}
    bws.sort(key=lambda b: order.get(b, 1))
    rates = list(dict.fromkeys(r["rate"] for r in rows))
    series = [("haul", m) for m in MODES] + [("criu", "stop-and-copy")]
    series = [s for s in series if any(r["engine"] == s[0] and r["mode"] == s[1] for r in ok)]
    # downtime vs bandwidth at one dirty rate (64 MiB/s when measured)
    dt_rate = "64" if "64" in rates else rates[len(rates) // 2]
    # total time vs dirty rate at the slowest bandwidth measured
    tot_bw = bws[0]
    link = {r["bandwidth"]: r["link_gbps"] for r in rows}

    def cell(engine, mode, mib, rate, bw, col):
        v = median(ok, engine, mode, str(mib), rate, bw, col)
        return "-" if v is None else "%.3f" % v

    names = ["%s:%s" % s if s[0] != "haul" else s[1] for s in series]
    for mib in mems:
        with open(os.path.join(out, "plot_downtime_%d.dat" % mib), "w") as f:
            f.write("bandwidth " + " ".join(names) + "\n")
            for bw in bws:
                label = "%s(%sG)" % (bw, link.get(bw, "?"))
                f.write('"%s" ' % label + " ".join(
                    cell(e, m, mib, dt_rate, bw, "client_gap_ms") for e, m in series) + "\n")
        with open(os.path.join(out, "plot_total_%d.dat" % mib), "w") as f:
            f.write("rate " + " ".join(names) + "\n")
            for rate in rates:
                f.write('"%s" ' % rate + " ".join(
                    cell(e, m, mib, rate, tot_bw, "total_s") for e, m in series) + "\n")
    with open(os.path.join(out, "plotvars.gp"), "w") as f:
        f.write('mems = "%s"\n' % " ".join(str(m) for m in mems))
        f.write('nseries = %d\n' % len(series))
        f.write('dt_rate = "%s"\n' % rate_label(dt_rate))
        f.write('tot_bw = "%s"\n' % tot_bw)
        f.write('run = "%s"\n' % rows[0]["run"])
    return 0


def postcopy_report(rows, out):
    """DIR/postcopy.md: issue 6's metrics per post-copy cell, medians over the repeats.

    resume: freeze to running on the target (haul's downtime_ms); its ratio between the
    largest and the smallest memory of the same rate and link (target: within 1.5x);
    fault latency p50/p99 as the target's fault server measured it; all memory: freeze
    to the last page on the target, against memory / link bandwidth measured by the
    harness in the same run (target: within 1.3x) and against stop-and-copy's total of
    the same cell (same bytes over the same path, fresh-memory writes included).
    """
    ok = [r for r in rows if r["status"] == "ok"]
    pc = [r for r in ok if r["engine"] == "haul" and r["mode"] == "post-copy"]
    path = os.path.join(out, "postcopy.md")
    if not pc:
        if os.path.exists(path):
            os.unlink(path)
        return
    lines = ["| memory | dirty rate | link | resume ms | client gap ms | fault p50 / p99 ms "
             "| faults | all memory s | memory / link s | x link | stop-and-copy s | x s&c |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    keys = list(dict.fromkeys((r["mem_mib"], r["rate"], r["bandwidth"]) for r in pc))
    resume = {}
    for mib, rate, bw in keys:
        def med(col, mode="post-copy"):
            return median(ok, "haul", mode, mib, rate, bw, col)
        down, gap, comp = med("downtime_ms"), med("client_gap_ms"), med("memory_complete_ms")
        p50, p99, nf = med("fault_p50_us"), med("fault_p99_us"), med("faults")
        sc = med("total_s", "stop-and-copy")
        gbps = num(next((r["link_gbps"] for r in pc if r["bandwidth"] == bw), None))
        link_s = int(mib) * 2**20 * 8 / (gbps * 1e9) if gbps else None
        comp_s = comp / 1e3 if comp is not None else None
        resume[(mib, rate, bw)] = down

        def f(v, spec):
            return "-" if v is None else format(v, spec)

        lines.append("| %s | %s | %s | %s | %s | %s / %s | %s | %s | %s | %s | %s | %s |" % (
            mem_label(mib), rate_label(rate), bw, f(down, ".1f"), f(gap, ".1f"),
            f(p50 / 1e3 if p50 is not None else None, ".2f"),
            f(p99 / 1e3 if p99 is not None else None, ".2f"), f(nf, ".0f"), f(comp_s, ".2f"),
            f(link_s, ".2f"), ratio(comp_s, link_s) or "-", f(sc, ".2f"),
            ratio(comp_s, sc) or "-"))
    lines.append("")
    for rate, bw in dict.fromkeys((k[1], k[2]) for k in keys):
        mibs = sorted((int(m) for m, r_, b in keys if (r_, b) == (rate, bw)))
        if len(mibs) < 2:
            continue
        lo, hi = resume.get((str(mibs[0]), rate, bw)), resume.get((str(mibs[-1]), rate, bw))
        if lo and hi:
            text = ("post-copy resume %s vs %s at %s on %s: %.1f vs %.1f ms, ratio %.2fx "
                    "(issue 6: within 1.5x)" % (mem_label(mibs[-1]), mem_label(mibs[0]),
                                                 rate_label(rate), bw, hi, lo, hi / lo))
            lines.append("- " + text)
            print("bench: ratio: " + text)
    lines.append("")
    lines.append("resume: freeze to running on the target (haul's downtime). Fault latency: "
                 "the target's fault server, fault read to thread woken. memory / link: the "
                 "memory at the TCP bandwidth the harness measured on that link in this run. "
                 "x s&c: all memory against the whole stop-and-copy of the same cell.")
    with open(path, "w") as fh:
        fh.write("\n".join(lines) + "\n")


def spread(rows, mode, mib, rate, bw, col):
    """min..max of @col over the ok repeats of one haul cell, or '-'."""
    v = sorted(x for x in (num(r.get(col)) for r in rows
                           if (r["engine"], r["mode"], r["mem_mib"], r["rate"], r["bandwidth"])
                           == ("haul", mode, mib, rate, bw) and r["status"] == "ok")
               if x is not None)
    if not v:
        return "-"
    return "%.1f" % v[0] if len(v) == 1 else "%.1f..%.1f" % (v[0], v[-1])


def stall_targets(rows, out):
    """Issue 16's targets, PASS/FAIL per target on the medians of this run's cells.

    pre-copy, every cell: the client's largest gap <= 2x haul's downtime and < 20 ms;
    pre-copy: the gap does not grow from 1 to 4 GiB (4 GiB / 1 GiB <= 1.2x), per rate and
    link; post-copy at 64 MiB/s: the client's largest gap < 50 ms and fault p99 < 2 ms.
    A target whose cells did not run is n/a.  DIR/stalls.md: the table with the spread
    of the repeats, the idle noise floor, and haul's own view (its stall probe).
    """
    ok = [r for r in rows if r["status"] == "ok" and r["engine"] == "haul"]
    res = []

    def med(mode, mib, rate, bw, col):
        return median(ok, "haul", mode, mib, rate, bw, col)

    lines = ["| mode | memory | dirty rate | link | client gap ms (repeats) | before / "
             "switchover / after ms | haul downtime ms | idle gap ms | haul's stall ms "
             "(before, resolution) | attach ms | longest scan call ms | throttle stall ms | "
             "host steal in the largest gap ms |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    keys = list(dict.fromkeys((r["mode"], r["mem_mib"], r["rate"], r["bandwidth"])
                              for r in ok if r["mode"] in ("pre-copy", "post-copy")))
    for mode, mib, rate, bw in keys:
        def f(col, spec=".1f"):
            v = med(mode, mib, rate, bw, col)
            return "-" if v is None else format(v, spec)
        lines.append("| %s | %s | %s | %s | %s (%s) | %s / %s / %s | %s | %s | %s (%s, %s) | "
                     "%s | %s | %s | %s |" % (
                         mode, mem_label(mib), rate_label(rate), bw, f("client_gap_ms"),
                         spread(ok, mode, mib, rate, bw, "client_gap_ms"), f("other_gap_ms"),
                         f("switch_gap_ms"), f("post_gap_ms"), f("downtime_ms"),
                         f("base_gap_ms"), f("haul_stall_ms"), f("haul_stall_before_ms"),
                         f("stall_resolution_ms"), f("attach_stop_ms", ".2f"),
                         f("scan_call_max_ms", ".2f"), f("throttle_stall_ms"),
                         f("gap_steal_ms")))
        gap, down = med(mode, mib, rate, bw, "client_gap_ms"), med(mode, mib, rate, bw,
                                                                    "downtime_ms")
        cell = "%s %s %s %s" % (mode, mem_label(mib), rate_label(rate), bw)
        if mode == "pre-copy" and int(mib) in (1024, 4096) and gap is not None and down:
            res.append((gap <= 2 * down and gap < 20,
                        "%s: client gap %.1f ms <= 2x downtime %.1f ms and < 20 ms" %
                        (cell, gap, down)))
        if mode == "post-copy" and rate == "64" and gap is not None:
            p99 = med(mode, mib, rate, bw, "fault_p99_us")
            res.append((gap < 50 and p99 is not None and p99 < 2000,
                        "%s: client gap %.1f ms < 50 ms, fault p99 %s ms < 2 ms" %
                        (cell, gap, "%.2f" % (p99 / 1e3) if p99 is not None else "-")))
    for rate, bw in dict.fromkeys((k[2], k[3]) for k in keys if k[0] == "pre-copy"):
        lo = med("pre-copy", "1024", rate, bw, "client_gap_ms")
        hi = med("pre-copy", "4096", rate, bw, "client_gap_ms")
        if lo and hi is not None:
            res.append((hi <= 1.2 * lo, "pre-copy %s %s: client gap 4G vs 1G %.1f vs %.1f ms, "
                        "%.2fx <= 1.2x" % (rate_label(rate), bw, hi, lo, hi / lo)))
    need = [("pre-copy", m, r, b) for m in ("1024", "4096") for r in ("0", "64")
            for b in ("loopback", "1gbit")] + \
        [("post-copy", m, "64", b) for m in ("1024", "4096") for b in ("loopback", "1gbit")]
    missing = [k for k in need if k not in keys]
    lines.append("")
    for passed, text in res:
        lines.append("- %s: %s" % ("PASS" if passed else "FAIL", text))
        print("bench: target: %s: %s" % ("PASS" if passed else "FAIL", text))
    if missing:
        text = "n/a: issue 16's cells not run (or not ok) here: " + ", ".join(
            "%s %s %s %s" % (m, mem_label(b), rate_label(r), w) for m, b, r, w in missing)
        lines.append("- " + text)
        print("bench: target: " + text)
    lines.append("")
    lines.append("client gap: the workload's largest gap between its 1 ms heartbeats (medians "
                 "of the repeats, their range in brackets); before / switchover / after: the "
                 "largest gap that ended before the freeze, between freeze and resume, after "
                 "the resume; idle: the largest gap of the warm-up, no migration (this "
                 "machine's noise floor). haul's stall: what haul reports from outside "
                 "(`client_stall_ms`; before: its run-time probe, with the sampling interval "
                 "it really had). host steal: the time the host did not run this VM's vCPUs "
                 "(/proc/stat steal, averaged over the CPUs, 10 ms resolution) in the largest "
                 "gap and the <= 100 ms before it, as the workload read it: a gap about that "
                 "long was the host's, not haul's.")
    with open(os.path.join(out, "stalls.md"), "w") as fh:
        fh.write("\n".join(lines) + "\n")


def main(argv):
    if len(argv) == 3 and argv[1] == "--haul-json":
        haul_json(argv[2])
        return 0
    if len(argv) == 5 and argv[1] == "--csv" and argv[3] == "--out":
        return summarize(argv[2], argv[4])
    sys.stderr.write(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
