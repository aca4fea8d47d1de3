#!/bin/bash
# bench/deleted_lib.sh - what a deleted file mapped privately (a library an
# upgrade replaced while the server runs) costs a migration's downtime: its
# content goes to the target before the freeze and is made there unnamed
# (src/restore/vma_ghost_pre.c), so the stop only links and maps it.
# A process maps an M MiB file MAP_PRIVATE and reads it whole; it is moved
# by `haul migrate` to a page server on this host, alternately with the
# file still there (only the pages it wrote travel) and deleted (its data
# travels too), in the same run.  Prints the median downtime of each and
# their ratio.
#   usage: bench/deleted_lib.sh [M MiB, default 4] [rounds, default 5]
# Needs root, python3.  HAUL: the haul binary (default build/haul).
set -euo pipefail
MIB=${1:-4}
ROUNDS=${2:-5}
HAUL=${HAUL:-build/haul}
DIR=$(mktemp -d /tmp/haul-bench-dellib.XXXXXX)
PIDS=""

cleanup() {
	for p in $PIDS; do
		kill -9 -"$p" 2>/dev/null || true
		kill -9 "$p" 2>/dev/null || true
	done
	rm -rf "$DIR"
}
trap cleanup EXIT
head -c 32 /dev/urandom >"$DIR/key"
chmod 600 "$DIR/key"

# Mapped as ld.so maps a library: mmap, then the fd closed (Python's own mmap
# keeps a copy of the fd, which would carry the file as an open fd instead).
cat >"$DIR/w.py" <<EOF
import ctypes, os, sys, time
path = sys.argv[1]
libc = ctypes.CDLL(None, use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                      ctypes.c_int, ctypes.c_long]
fd = os.open(path, os.O_RDONLY)
size = os.fstat(fd).st_size
addr = libc.mmap(None, size, 1, 2, fd, 0)  # PROT_READ, MAP_PRIVATE
os.close(fd)
sum(ctypes.string_at(addr + i, 1)[0] for i in range(0, size, 4096))
if sys.argv[2] == "deleted":
    os.unlink(path)
print("ready", flush=True)
while True:
    time.sleep(0.05)
EOF

# One migration of a process mapping DIR/lib-$1 ($2: kept or deleted): its downtime in
# ms into $MS (not a subshell: the trap must see every pid started).
once() {
	local out="$DIR/w-$1.out" port pid ms
	head -c $((MIB << 20)) /dev/urandom >"$DIR/lib-$1"
	setsid python3 "$DIR/w.py" "$DIR/lib-$1" "$2" >"$out" 2>&1 </dev/null 251>&- &
	pid=$!
	PIDS="$PIDS $pid"
	for _ in $(seq 100); do grep -q ready "$out" && break; sleep 0.05; done
	setsid "$HAUL" pageserver --listen 127.0.0.1:0 --key "$DIR/key" --once \
		>"$DIR/ps.log" 2>&1 </dev/null 251>&- &
	PIDS="$PIDS $!"
	for _ in $(seq 100); do grep -q 'listening on' "$DIR/ps.log" && break; sleep 0.05; done
	port=$(grep -Eo 'listening on 127.0.0.1:[0-9]+' "$DIR/ps.log" | head -1 | cut -d: -f2)
	"$HAUL" migrate "$pid" --to "127.0.0.1:$port" --key "$DIR/key" >"$DIR/mig.out" \
		2>"$DIR/mig.log" || { cat "$DIR/mig.log" >&2; exit 1; }
	ms=$(sed -n 's/.*downtime \([0-9.]*\) ms.*/\1/p' "$DIR/mig.out" | head -1)
	pid=$(sed -n 's/.*(pid \([0-9]*\) there).*/\1/p' "$DIR/mig.out")
	kill -9 "$pid" 2>/dev/null || true
	rm -f "$DIR/lib-$1"
	MS=$ms
}

declare -a kept deleted
for r in $(seq "$ROUNDS"); do
	once "k$r" kept
	a=$MS
	once "d$r" deleted
	b=$MS
	kept+=("$a")
	deleted+=("$b")
	echo "round $r: $MIB MiB mapped, downtime kept $a ms, deleted $b ms"
done
med() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
mk=$(med "${kept[@]}")
md=$(med "${deleted[@]}")
echo "median downtime, $MIB MiB mapped: file kept $mk ms, deleted $md ms, ratio" \
	"$(awk -v a="$md" -v b="$mk" 'BEGIN {printf "%.2f", a / b}')"
