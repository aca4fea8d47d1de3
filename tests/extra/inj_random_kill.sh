#!/bin/bash
# inj_random_kill.sh - the issue's reproducer, kept as a check: kill -9 of
# `haul track` / `haul checkpoint --leave-running` at random moments (most
# of them inside the attach or the dump, whose injected calls last ~1 ms)
# must never hurt the process: after each kill it runs on (not stopped, not
# traced), with its own signal mask, and its ticks go on without an ERROR.
# The timed kills at every injection step are tests/integration/crash_inject.c;
# this one shows the timing-free picture.  HAUL_INJ_KILLS kills (default 300).
set -u
HAUL=${HAUL_BIN:-$PWD/build/haul}
PROGS=${HAUL_PROGS:-$PWD/build/progs}
KILLS=${HAUL_INJ_KILLS:-300}
[ "$(id -u)" = 0 ] || { echo "needs root (ptrace)"; exit 77; }
[ -x "$HAUL" ] && [ -x "$PROGS/rst_counter" ] || { echo "build haul and progs first"; exit 77; }
D=$(mktemp -d /tmp/haul-inj-kill.XXXXXX)
pid=""
trap '[ -n "$pid" ] && kill -9 $pid 2>/dev/null; rm -rf "$D"' EXIT

field() { sed -n "s/^$1:[[:space:]]*//p" "/proc/$pid/status" 2>/dev/null; }

"$PROGS/rst_exec" /dev/null "$D/out" "$D/err" "$PROGS/rst_counter" "$D" 100000000 4 1000 memonly &
pid=$!
for _ in $(seq 100); do grep -q tick "$D/out" 2>/dev/null && break; sleep 0.05; done
grep -q tick "$D/out" || { echo "FAIL: the workload never ticks"; exit 1; }
blk=$(field SigBlk)
killed=0
for i in $(seq "$KILLS"); do
	if [ $((i % 2)) = 0 ]; then
		"$HAUL" track "$pid" --rounds 1 >/dev/null 2>&1 &
	else
		"$HAUL" checkpoint "$pid" --images "$D/img" --leave-running >/dev/null 2>&1 &
	fi
	h=$!
	sleep "0.00$((RANDOM % 9 + 1))" # the behaviour under test: a kill at a random point
	kill -9 $h 2>/dev/null && killed=$((killed + 1))
	wait $h 2>/dev/null
	ok=0
	for _ in $(seq 200); do
		st=$(field State)
		tr=$(field TracerPid)
		case "$st" in
		T* | t*) ;;
		*) [ "$tr" = 0 ] && { ok=1; break; } ;;
		esac
		sleep 0.01
	done
	kill -0 "$pid" 2>/dev/null || { echo "FAIL: kill $i: the process died"; exit 1; }
	[ $ok = 1 ] || { echo "FAIL: kill $i: left stopped or traced ($st, tracer $tr)"; exit 1; }
	# The workload's own SIGUSR1 handler blocks SIGUSR1 while it runs, and
	# a signal that arrived while haul held the process runs its handler
	# right after the resume: a mask left by haul stays, that one passes.
	m=$(field SigBlk)
	for _ in $(seq 100); do
		[ "$m" = "$blk" ] && break
		sleep 0.01
		m=$(field SigBlk)
	done
	[ "$m" = "$blk" ] || { echo "FAIL: kill $i: mask $m for 1 s, was $blk, state $(field State)"; exit 1; }
done
# it ticks on: a new tick line within 5 s
n1=$(grep -c tick "$D/out")
n2=$n1
for _ in $(seq 100); do
	n2=$(grep -c tick "$D/out")
	[ "$n2" -gt "$n1" ] && break
	sleep 0.05
done
[ "$n2" -gt "$n1" ] || { echo "FAIL: the workload stopped ticking"; exit 1; }
if grep -q ERROR "$D/out"; then
	echo "FAIL: $(grep -m1 ERROR "$D/out")"
	exit 1
fi
echo "ok: $killed of $KILLS runs killed mid-way, the process ran on each time"
exit 0
