#!/usr/bin/env python3
"""bench/pc_timeline.py - post-copy: the target's fault latency next to the client's gaps.

  pc_timeline.py CELL_DIR [CELL_DIR ...]

CELL_DIR is a post-copy cell kept by `bench/run.sh --keep-logs` (DIR/logs/cellN-haul-post-copy-*):
its ps.log holds the fault server's timeline (rst_lz_timeline_log: per 250 ms after the
start, faults and their latency p50/p99/max, and the start on the realtime clock), its hb
the workload's largest gaps with the realtime at which each ended.  For each 250 ms after
the start it prints the faults, their latency, and the client's gaps that ended then (the
workload keeps only its 64 largest, so a slot without one had none of those).  The gap a
client sees while memory is missing is about (writes due in a tick) x (fraction missing)
x (fault latency): the workload catches up at most 10 ms of writes, 161 pages at 64 MiB/s.
"""
import glob
import re
import sys

SLOT_S = 0.25


def timeline(ps_log):
    """(start on the realtime clock, {slot: (faults, p50_us, p99_us, max_us)}) from ps.log."""
    text = open(ps_log).read()
    m = re.search(r"fault timeline, the start at ([0-9.]+)", text)
    if not m:
        return None, {}
    slots = {}
    for line in text.splitlines():
        mm = re.search(r"faults (\d+)(?: and later)? s after the start: (.*)", line)
        if not mm:
            continue
        for part in mm.group(2).split("; "):
            q = re.match(r"\+(\d+) ms: (\d+) faults, p50 (\d+) p99 (\d+) max (\d+) us", part)
            if q:
                slot = int(mm.group(1)) * 4 + int(q.group(1)) // 250
                slots[slot] = tuple(int(x) for x in q.groups()[1:])
    return float(m.group(1)), slots


def gaps(hb_file, t0):
    """{slot: [gap ms, ...]} of the workload's kept gaps that ended after @t0."""
    hb = dict(l.rstrip("\n").split("=", 1) for l in open(hb_file) if "=" in l)
    out = {}
    for g in hb.get("top_gaps", "").split(";"):
        if "@" not in g:
            continue
        us, at = g.split("@")[:2]
        t = float(at) - t0
        if t >= 0:
            out.setdefault(int(t / SLOT_S), []).append(int(us) / 1000)
    return out


def main():
    if len(sys.argv) < 2:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    for cell in sys.argv[1:]:
        ps = glob.glob(cell + "/ps.log")
        hb = glob.glob(cell + "/hb")
        if not ps or not hb:
            print("%s: no ps.log or hb (keep the cell with --keep-logs)" % cell, file=sys.stderr)
            continue
        t0, tl = timeline(ps[0])
        if t0 is None:
            print("%s: no fault timeline in ps.log (no fault, or an older haul)" % cell)
            continue
        g = gaps(hb[0], t0)
        print("%s" % cell)
        print("  after start s | faults  p50 us  p99 us  max us | client gaps: n  max ms")
        for k in sorted(set(tl) | set(g)):
            f = tl.get(k, (0, 0, 0, 0))
            gl = g.get(k, [])
            print("  %13.2f | %6d %7d %7d %7d | %14d %7.1f"
                  % (k * SLOT_S, f[0], f[1], f[2], f[3], len(gl), max(gl) if gl else 0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
