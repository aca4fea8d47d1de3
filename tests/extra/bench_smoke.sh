#!/bin/sh
# bench_smoke.sh - the benchmark's tools work: the workload generator measures a
# stall, verifies its pages and catches a corrupted one; bench/run.sh runs a tiny
# matrix (real migrations when haul migrate exists, visible skips otherwise),
# writes its CSV and removes its namespaces.  Under a minute.
set -u
progs=${HAUL_PROGS:-$PWD/build/progs}
wl=$progs/workload
src=${HAUL_SRC:-$PWD}
[ -x "$wl" ] || { echo "workload not built ($wl)"; exit 77; }
command -v python3 >/dev/null || { echo "python3 missing"; exit 77; }
tmp=$(mktemp -d /tmp/bench_smoke.XXXXXX)
pid=
trap '[ -n "$pid" ] && kill -KILL $pid 2>/dev/null; rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; [ -f "$tmp/wl.out" ] && tail -5 "$tmp/wl.out"; exit 1; }
waitfor() { # file regex tenths
	i=0
	while [ $i -lt "$3" ]; do
		grep -q "$2" "$1" 2>/dev/null && return 0
		sleep 0.1; i=$((i + 1))
	done
	return 1
}

# 1. a 300 ms SIGSTOP is seen as a ~300 ms gap; verify passes; a poked byte fails it
"$wl" --mem 32M --rate 64 --pattern hot --heartbeat "$tmp/hb" --control "$tmp/ctl" \
	--print-every 0.5 >"$tmp/wl.out" 2>&1 &
pid=$!
waitfor "$tmp/hb" "^state=ready" 100 || fail "workload never became ready"
# its tick loop runs once it reports state=running (each progress line)
waitfor "$tmp/hb" "^state=running" 100 || fail "workload never reported running"
# the 300 ms stop is the behaviour under test
kill -STOP $pid; sleep 0.3; kill -CONT $pid
waitfor "/proc/$pid/status" "^State:[[:space:]]*[RSD]" 50 || fail "pid $pid did not run again after SIGCONT"
echo verify >"$tmp/ctl"
waitfor "$tmp/hb" "^verify=ok" 50 || fail "verify did not pass: $(grep verify= "$tmp/hb")"
gap=$(sed -n 's/^max_gap_rt_us=//p' "$tmp/hb")
[ "$gap" -ge 250000 ] && [ "$gap" -lt 2000000 ] || fail "300 ms stop measured as $gap us"
# poke the last page: --pattern hot never rewrites it, so the damage stays
addr=$(sed -n 's/^mem_addr=//p' "$tmp/hb")
python3 - $pid "$addr" <<'PY' || fail "cannot poke the workload's memory at $addr"
import sys
pid, addr = int(sys.argv[1]), int(sys.argv[2], 16)
with open("/proc/%d/mem" % pid, "r+b") as f:
    f.seek(addr + 4096 * 8191 + 64)
    f.write(b"\xff\x00\xff\x00")
PY
echo verify >"$tmp/ctl"
waitfor "$tmp/hb" "^verify=bad page 8191 " 50 || fail "corruption not caught: $(grep verify= "$tmp/hb")"
echo exit >"$tmp/ctl"
wait $pid
rc=$?
pid=
[ $rc -eq 3 ] || fail "workload exit $rc after a bad verify, expected 3"
echo "workload: stall of 300 ms measured as $gap us; verify ok, then caught the poked page"

# 2. the harness on a 64 MiB cell
if [ "$(id -u)" != 0 ] || ! command -v ip >/dev/null; then
	echo "bench/run.sh needs root and iproute2"
	exit 77
fi
before=$(ip netns list | grep -c haulb-)
timeout 120 bash "$src/bench/run.sh" --smoke --out "$tmp/res" >"$tmp/run.out" 2>&1
rc=$?
cat "$tmp/run.out"
[ $rc -eq 0 ] || fail "bench/run.sh exit $rc"
[ "$(ip netns list | grep -c haulb-)" -eq "$before" ] || fail "bench/run.sh left namespaces behind"
rows=$(($(wc -l <"$tmp/res/bench.csv") - 1))
[ "$rows" -ge 2 ] || fail "bench.csv has $rows rows"
if grep -q ',failed,' "$tmp/res/bench.csv"; then
	fail "a cell failed: $(grep ',failed,' "$tmp/res/bench.csv" | head -1)"
fi
if grep -q ',ok,' "$tmp/res/bench.csv"; then
	[ -f "$tmp/res/downtime_vs_bandwidth.png" ] || fail "no plot from a run with results"
	echo "harness: $(grep -c ',ok,' "$tmp/res/bench.csv") cells migrated and verified"
else
	echo "harness: ran, every cell skipped visibly: $(grep ',skipped,' "$tmp/res/bench.csv" | head -1 | cut -d, -f17)"
fi
exit 0
