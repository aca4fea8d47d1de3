#!/usr/bin/env python3
# ops_events.py FILE END [postcopy] - check a `haul migrate --events` stream: every line
# one JSON object with event, time and pid; started first; rounds numbered
# 1, 2, ...; frozen before the final round, resumed after it; exactly one end
# event (committed, rolled_back, in_doubt, lost), last, equal to END;
# memory_complete after resumed with postcopy, else none.
# Exit 0 when it holds, else 1 with the reason.
import json
import sys

ENDS = {"committed", "rolled_back", "in_doubt", "lost"}


def fail(why):
    print("events: " + why)
    sys.exit(1)


lines = open(sys.argv[1]).read().splitlines()
want_end = sys.argv[2]
ev = []
for i, line in enumerate(lines, 1):
    try:
        o = json.loads(line)
    except ValueError as e:
        fail("line %d is not JSON (%s): %r" % (i, e, line))
    for k in ("event", "time", "pid"):
        if k not in o:
            fail("line %d has no %r: %r" % (i, k, line))
    ev.append(o)
names = [o["event"] for o in ev]
print("events: " + " ".join(names))
if not names or names[0] != "started":
    fail("the first event is not 'started'")
if names[-1] != want_end:
    fail("the last event is %r, not %r" % (names[-1], want_end))
if sum(n in ENDS for n in names) != 1:
    fail("not exactly one end event")
rounds = [o for o in ev if o["event"] == "round"]
if [o["round"] for o in rounds] != list(range(1, len(rounds) + 1)):
    fail("rounds are not numbered 1, 2, ...")
for o in rounds:
    for k in ("pages", "bytes", "mbps", "dirty_mbps", "expected_downtime_ms", "final"):
        if k not in o:
            fail("round %d has no %r" % (o["round"], k))
if want_end == "committed":
    order = [n for n in names if n in ("frozen", "resumed", "committed")]
    if order != ["frozen", "resumed", "committed"]:
        fail("frozen, resumed, committed are not in that order: %s" % order)
    fin = [i for i, o in enumerate(ev) if o["event"] == "round" and o["final"]]
    if len(fin) != 1 or not names.index("frozen") < fin[0] < names.index("resumed"):
        fail("the final round is not between frozen and resumed")
    lazy = [o for o in ev if o["event"] == "memory_complete"]
    if len(sys.argv) > 3 and sys.argv[3] == "postcopy":
        if len(lazy) != 1 or not names.index("resumed") < names.index("memory_complete"):
            fail("post-copy without one memory_complete after resumed")
    elif lazy:
        fail("memory_complete in a pre-copy migration")
    if ev[-1]["exit_status"] != 0 or ev[-1]["target_pid"] <= 0:
        fail("committed without exit_status 0 and a target_pid")
else:
    if "resumed" in names:
        fail("resumed, yet %s" % want_end)
    if not ev[-1].get("phase") or ev[-1]["exit_status"] == 0:
        fail("%s without a phase and a nonzero exit_status" % want_end)
sys.exit(0)
