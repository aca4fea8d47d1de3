#!/bin/sh
# rst_debian.sh - real Debian programs are checkpointed mid-run with
# `haul checkpoint`, killed, brought back with `haul restore`, and must
# produce exactly the output of an undisturbed run: compressors mid-stream
# (gzip, bzip2, xz; xz and zstd also with worker threads), a hash over a
# large file (sha256sum), an interpreter holding a large dict (python3) or
# running an asyncio loop (epoll, socketpair), a memory tester (memtester,
# mlock'ed memory), a sleep.  Some cases restore with the same PID on the
# host, the others into a new PID namespace (--pidns always).
set -u
HAUL=${HAUL_BIN:-$PWD/build/haul}
PROGS=${HAUL_PROGS:-$PWD/build/progs}
[ "$(id -u)" = 0 ] || { echo "needs root (ptrace, clone3 set_tid)"; exit 77; }
[ -x "$HAUL" ] && [ -x "$PROGS/rst_exec" ] || { echo "build haul and progs first"; exit 77; }
D=$(mktemp -d /tmp/haul-rst-debian.XXXXXX)
trap 'rm -rf "$D"' EXIT
fail=0 ran=0

# rcase NAME DELAY PIDNS CMD...: undisturbed output vs checkpoint at DELAY s, restore.
rcase() {
	name=$1 delay=$2 pidns=$3
	shift 3
	if ! command -v "$1" >/dev/null 2>&1; then
		echo "skip $name: $1 is not installed"
		return
	fi
	ran=$((ran + 1))
	t0=$(date +%s%N)
	if ! "$PROGS/rst_exec" /dev/null "$D/$name.want" "$D/$name.want.err" "$@"; then
		echo "FAIL $name: the undisturbed run failed: $(cat "$D/$name.want.err")"
		fail=1
		return
	fi
	# Checkpoint mid-run: at most the given delay, and at most 40% of how
	# long the undisturbed run took (a fast machine finishes sooner).
	half=$(( ($(date +%s%N) - t0) * 4 / 10 / 1000000 ))
	delay=$(awk -v d="$delay" -v h="$half" 'BEGIN { h /= 1000; print (h < d ? h : d) }')
	"$PROGS/rst_exec" /dev/null "$D/$name.out" "$D/$name.err" "$@" &
	pid=$!
	sleep "$delay" # the behaviour under test: a checkpoint this far into the run
	if ! "$HAUL" checkpoint "$pid" --images "$D/$name.img"; then
		echo "FAIL $name: checkpoint of pid $pid failed"
		kill -9 "$pid" 2>/dev/null
		wait "$pid" 2>/dev/null
		fail=1
		return
	fi
	wait "$pid" 2>/dev/null
	"$HAUL" restore --pidns "$pidns" --images "$D/$name.img"
	rc=$?
	if [ "$rc" -ne 0 ]; then
		echo "FAIL $name: the restored process exited with $rc: $(tail -3 "$D/$name.err")"
		fail=1
	elif ! cmp -s "$D/$name.want" "$D/$name.out"; then
		echo "FAIL $name: output differs from the undisturbed run"
		fail=1
	else
		echo "ok $name"
	fi
}

seq 1 4000000 >"$D/seq.txt"
seq 1 500000 >"$D/seq-small.txt"
head -c 256M /dev/urandom >"$D/big.bin"
cat >"$D/dict.py" <<'PY'
import hashlib, time
d = {i: str(i * 7919) for i in range(1500000)}
h = hashlib.sha256()
for r in range(40):
    for k in range(r, len(d), 997):
        h.update(d[k].encode())
    time.sleep(0.05)
print(len(d), h.hexdigest())
PY
cat >"$D/aio.py" <<'PY'
import asyncio, hashlib
async def tick(name, n):
    h = hashlib.sha256(name.encode())
    for i in range(n):
        await asyncio.sleep(0.02)
        h.update(str(i).encode())
    return h.hexdigest()
async def main():
    print(*(await asyncio.gather(tick("a", 80), tick("b", 60))))
asyncio.run(main())
PY

rcase gzip 0.7 auto gzip -9 -c "$D/seq.txt"
rcase bzip2 0.7 always bzip2 -9 -c "$D/seq.txt"
# xz holds a self-pipe (both ends, for its signal handler): carried with its bytes.
rcase xz 0.8 auto xz -T1 -6 -c "$D/seq-small.txt"
# Two compression threads plus the main one.
rcase xz-threads 0.8 always xz -T2 -6 --block-size=1MiB -c "$D/seq-small.txt"
rcase zstd-threads 0.5 auto zstd -T2 -19 -c "$D/seq-small.txt"
rcase sha256sum 0.4 always sha256sum "$D/big.bin"
rcase python3 1.5 auto /usr/bin/python3 "$D/dict.py"
# asyncio: an epoll selector and a socketpair self-pipe.
rcase python3-asyncio 0.8 always /usr/bin/python3 "$D/aio.py"
rcase memtester 1.5 always memtester 16M 1
# Interrupted inside nanosleep (ERESTART_RESTARTBLOCK): must sleep on, not fail with EINTR.
rcase sleep 0.3 auto sleep 1

[ "$ran" -gt 0 ] || { echo "none of gzip, bzip2, xz, sha256sum, python3, memtester is installed"; exit 77; }
exit $fail
