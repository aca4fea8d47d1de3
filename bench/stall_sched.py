#!/usr/bin/env python3
"""stall_sched.py - who ran while a thread of the migrated process waited for a CPU.

haul's stall probe (src/haul/stall.c, HAUL_LOG=debug) names each stall of the
workload before the freeze, queued or blocked, with its start and end on
CLOCK_MONOTONIC in ms.  A queued stall says only that the thread was runnable and
did not run.  This reads the scheduler's own record of the same time and says
who had the CPUs instead:

  perf record -e sched:sched_switch,sched:sched_wakeup,sched:sched_migrate_task \\
      -a -o sched.data -- sleep 5        # while `haul migrate` runs round 1
  perf script -i sched.data > sched.txt
  bench/stall_sched.py sched.txt --tid TID [--min-ms 20]      # each long wait of TID
  bench/stall_sched.py sched.txt --from S --to S              # CPU share per thread

perf's timestamps are CLOCK_MONOTONIC seconds here (the probe's ms / 1000).
Used for bench/RESULTS.md "Stalls" (Redis's stall before the freeze).
"""
import argparse
import collections
import re

LINE = re.compile(r"\s*(.+?)\s+(\d+)\s+\[(\d+)\]\s+([\d.]+):\s+sched:(\w+):\s+(.*)")
SWITCH = re.compile(r"prev_comm=(.*?) prev_pid=(\d+) prev_prio=(\d+) prev_state=(\S+) ==> "
                    r"next_comm=(.*?) next_pid=(\d+) next_prio=(\d+)")
WAKEUP = re.compile(r"pid=(\d+) prio=\d+ target_cpu=\d+")


def events(path):
    ev = []
    with open(path) as f:
        for line in f:
            m = LINE.match(line)
            if m:
                ev.append((float(m.group(4)), m.group(3), m.group(5), m.group(6)))
    ev.sort()
    return ev


def waits(ev, tid, min_ms):
    """Each time TID waited runnable for min_ms or more, and who ran meanwhile."""
    running, since, used = {}, None, collections.Counter()
    for t, cpu, kind, rest in ev:
        if kind == "sched_wakeup":
            m = WAKEUP.search(rest)
            if m and int(m.group(1)) == tid and since is None:
                since, used = t, collections.Counter()
            continue
        if kind != "sched_switch":
            continue
        m = SWITCH.search(rest)
        if not m:
            continue
        prev, state, ncomm, nxt = int(m.group(2)), m.group(4), m.group(5), int(m.group(6))
        if cpu in running and since is not None:
            comm, pid, start = running[cpu]
            used[(comm, pid)] += t - max(start, since)
        running[cpu] = (ncomm, nxt, t)
        if prev == tid and state.startswith("R") and since is None:
            since, used = t, collections.Counter()  # preempted: still runnable
        if nxt == tid and since is not None:
            ms = (t - since) * 1e3
            if ms >= min_ms:
                top = ", ".join("%s/%d %.1f" % (c, p, x * 1e3) for (c, p), x in used.most_common(6))
                print("waited %.1f ms from %.3f: %s" % (ms, since, top))
            since = None


def shares(ev, t0, t1, ncpu, n):
    """Each thread's share of one CPU between t0 and t1 (s)."""
    running, used = {}, collections.Counter()
    for t, cpu, kind, rest in ev:
        if kind != "sched_switch":
            continue
        m = SWITCH.search(rest)
        if not m:
            continue
        if cpu in running:
            comm, pid, start = running[cpu]
            a, b = max(start, t0), min(t, t1)
            if b > a:
                used[(comm, pid)] += b - a
        running[cpu] = (m.group(5), int(m.group(6)), t)
    for (comm, pid), x in used.most_common(n):
        print("%-20s %7d %6.1f%% of a CPU" % (comm, pid, 100 * x / (t1 - t0)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("perf_script_txt")
    ap.add_argument("--tid", type=int)
    ap.add_argument("--min-ms", type=float, default=20)
    ap.add_argument("--from", dest="t0", type=float)
    ap.add_argument("--to", dest="t1", type=float)
    ap.add_argument("--cpus", type=int, default=2)
    ap.add_argument("--top", type=int, default=15)
    a = ap.parse_args()
    ev = events(a.perf_script_txt)
    if a.tid is not None:
        waits(ev, a.tid, a.min_ms)
    if a.t0 is not None and a.t1 is not None:
        shares(ev, a.t0, a.t1, a.cpus, a.top)
    if a.tid is None and a.t0 is None:
        ap.error("give --tid, or --from and --to")


if __name__ == "__main__":
    main()
