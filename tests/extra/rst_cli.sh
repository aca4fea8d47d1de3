#!/bin/sh
# rst_cli.sh - `haul checkpoint` / `haul restore` as a user runs them, on the
# rst_counter workload (every VMA and fd kind the restorer supports):
#  1. checkpoint --leave-running: the source carries on; later it is killed
#     and the image restored; the restored run ends with the undisturbed hash;
#  2. restore --pidns never while the PID is taken fails cleanly (exit 1, a
#     message naming the PID) and leaves the running process alone;
#  3. two hops: a restored process (in its time namespace, maybe a new PID
#     namespace) is checkpointed and restored again and still ends right;
#  4. restore --detach prints the PID and the process runs on alone; usage
#     errors exit 2;
#  5. checkpoint of a refused process (a FIFO on fd 0) exits 1, names the fd,
#     and the process runs on.
set -u
HAUL=${HAUL_BIN:-$PWD/build/haul}
PROGS=${HAUL_PROGS:-$PWD/build/progs}
[ "$(id -u)" = 0 ] || { echo "needs root (ptrace, clone3 set_tid)"; exit 77; }
[ -x "$HAUL" ] && [ -x "$PROGS/rst_counter" ] || { echo "build haul and progs first"; exit 77; }
. "$(dirname "$0")/th_wait.shlib"
D=$(mktemp -d /tmp/haul-rst-cli.XXXXXX)
pids=""
trap 'for p in $pids; do kill -9 $p 2>/dev/null; done; rm -rf "$D"' EXIT
fail=0

"$PROGS/rst_exec" /dev/null "$D/want.out" "$D/want.err" "$PROGS/rst_counter" "$D" 1200 8 0 memonly
want=$(grep '^final' "$D/want.out")
[ -n "$want" ] || { echo "FAIL: undisturbed run printed no final line"; exit 1; }

"$PROGS/rst_exec" /dev/null "$D/run.out" "$D/run.err" "$PROGS/rst_counter" "$D" 1200 8 1000 memonly &
pid=$!
pids="$pids $pid"
wait_line "$D/run.out" '^tick' || exit 1
if ! "$HAUL" checkpoint "$pid" --images "$D/img" --leave-running >"$D/ck.log" 2>&1; then
	echo "FAIL: checkpoint --leave-running: $(cat "$D/ck.log")"
	exit 1
fi
kill -0 "$pid" 2>/dev/null || { echo "FAIL: the source did not keep running"; fail=1; }
# It ticks every 100 iterations; on a loaded machine that can take a while: wait up to 5 s.
t1=$(grep -c tick "$D/run.out")
t2=$t1
for i in $(seq 1 50); do
	t2=$(grep -c tick "$D/run.out")
	[ "$t2" -gt "$t1" ] && break
	sleep 0.1
done
[ "$t2" -gt "$t1" ] || { echo "FAIL: the source stopped ticking after --leave-running"; fail=1; }

# The PID is taken by the running source: without a namespace, restore must refuse.
"$HAUL" restore --pidns never --images "$D/img" >"$D/taken.log" 2>&1
rc=$?
if [ "$rc" -ne 1 ] || ! grep -q "pid $pid.*in use" "$D/taken.log"; then
	echo "FAIL: restore onto a taken PID: exit $rc: $(cat "$D/taken.log")"
	fail=1
fi
kill -0 "$pid" 2>/dev/null || { echo "FAIL: a refused restore disturbed the source"; fail=1; }

# Kill the source, restore the image taken while it ran: the run goes on from there.
kill -9 "$pid"
wait "$pid" 2>/dev/null
if ! "$HAUL" restore --images "$D/img" >"$D/rs.log" 2>&1; then
	echo "FAIL: restore: $(cat "$D/rs.log")"
	fail=1
fi
got=$(grep '^final' "$D/run.out")
if [ "$got" != "$want" ] || grep -q ERROR "$D/run.out"; then
	echo "FAIL: restored run ended with '$got', want '$want'; $(grep ERROR "$D/run.out")"
	fail=1
else
	echo "ok checkpoint --leave-running, restore later: $got"
fi

# Two hops: checkpoint the restored process again, then restore that.
"$PROGS/rst_exec" /dev/null "$D/hop.out" "$D/hop.err" "$PROGS/rst_counter" "$D" 1200 8 1000 memonly &
pid=$!
pids="$pids $pid"
wait_line "$D/hop.out" '^tick' || exit 1
"$HAUL" checkpoint "$pid" --images "$D/hop1" >"$D/hop1.log" 2>&1 || echo "FAIL: hop 1 checkpoint: $(cat "$D/hop1.log")"
wait "$pid" 2>/dev/null
ticks=$(grep -c '^tick' "$D/hop.out")
"$HAUL" restore --pidns always --images "$D/hop1" >"$D/hop1r.log" 2>&1 &
rpid=$!
# Restored and running: it ticks again.  In its new PID namespace it keeps $pid; from here it has another.
wait_more "$D/hop.out" '^tick' "$ticks" || { echo "FAIL: the restored hop 1 does not tick"; fail=1; }
hpid=$(wait_pgrep "rst_counter $D 1200 8 1000 memonly")
"$HAUL" checkpoint "${hpid:-0}" --images "$D/hop2" >"$D/hop2.log" 2>&1 || echo "FAIL: hop 2 checkpoint: $(cat "$D/hop2.log")"
wait "$rpid"
"$HAUL" restore --images "$D/hop2" >"$D/hop2r.log" 2>&1
rc=$?
got=$(grep '^final' "$D/hop.out")
if [ "$rc" -ne 0 ] || [ "$got" != "$want" ] || grep -q ERROR "$D/hop.out"; then
	echo "FAIL: two hops: exit $rc, '$got' (want '$want'); $(grep ERROR "$D/hop.out"; cat "$D/hop2r.log")"
	fail=1
else
	echo "ok two hops (checkpoint of a restored process): $got"
fi

# --detach: haul restore prints the PID and returns; the process runs on by itself.
"$PROGS/rst_exec" /dev/null "$D/det.out" "$D/det.err" "$PROGS/rst_counter" "$D" 1200 8 1000 memonly &
pid=$!
pids="$pids $pid"
wait_line "$D/det.out" '^tick' || exit 1
"$HAUL" checkpoint "$pid" --images "$D/det" >/dev/null 2>&1 || echo "FAIL: --detach checkpoint"
wait "$pid" 2>/dev/null
dpid=$("$HAUL" restore --detach --images "$D/det" 2>/dev/null)
if [ "$dpid" != "$pid" ]; then
	echo "FAIL: restore --detach printed '$dpid', want $pid"
	fail=1
else
	pids="$pids $dpid"
	for i in $(seq 1 100); do
		grep -q '^final' "$D/det.out" && break
		sleep 0.1
	done
	got=$(grep '^final' "$D/det.out")
	if [ "$got" != "$want" ]; then
		echo "FAIL: detached restore ended with '$got', want '$want'"
		fail=1
	else
		echo "ok restore --detach: pid $dpid ran on to $got"
	fi
fi

# Usage errors exit 2 and say what is wrong.
"$HAUL" checkpoint 1 >/dev/null 2>&1
rc1=$?
"$HAUL" restore --images "$D/det" --pidns sometimes >/dev/null 2>&1
rc2=$?
if [ "$rc1" -ne 2 ] || [ "$rc2" -ne 2 ]; then
	echo "FAIL: usage errors exit $rc1 and $rc2, want 2"
	fail=1
fi

# A process haul cannot restore: refused by name, untouched.
mkfifo "$D/fifo"
sleep 30 <"$D/fifo" &
spid=$!
pids="$pids $spid"
exec 9>"$D/fifo"
wait_comm "$spid" sleep || exit 1
"$HAUL" checkpoint "$spid" --images "$D/img2" >"$D/refuse.log" 2>&1
rc=$?
exec 9>&-
if [ "$rc" -ne 1 ] || ! grep -q "fd 0 is a named fifo .*stays behind" "$D/refuse.log"; then
	echo "FAIL: checkpoint of a process reading a fifo: exit $rc: $(cat "$D/refuse.log")"
	fail=1
elif ! kill -0 "$spid" 2>/dev/null; then
	echo "FAIL: the refused process died"
	fail=1
else
	echo "ok refused: $(grep -o 'fd 0 is a named fifo [^,]*, which stays behind' "$D/refuse.log")"
fi
exit $fail
