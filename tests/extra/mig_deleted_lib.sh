#!/bin/sh
# mig_deleted_lib.sh - `haul migrate` of a Python process mapping a 6 MiB
# file MAP_PRIVATE that was deleted since (a library an upgrade replaced),
# with the same path taken by a new file: the file's content travels with
# the state, which is then over one frame (4 MiB) and goes in parts
# (State.total).  On the target the process reads the old bytes (its
# checksum), its written page, maps the file "(deleted)", and the new file
# at the path is left alone.
set -u
HAUL=${HAUL_BIN:-$PWD/build/haul}
[ "$(id -u)" = 0 ] || { echo "needs root (ptrace)"; exit 77; }
[ -x "$HAUL" ] || { echo "build haul first"; exit 77; }
command -v python3 >/dev/null || { echo "needs python3"; exit 77; }
. "$(dirname "$0")/th_wait.shlib"
D=$(mktemp -d /tmp/haul-mig-dellib.XXXXXX)
pids=""
trap 'for p in $pids; do kill -9 -$p 2>/dev/null; kill -9 $p 2>/dev/null; done; rm -rf "$D"' EXIT
head -c 32 /dev/urandom >"$D/key" && chmod 600 "$D/key"
head -c $((6 << 20)) /dev/urandom >"$D/lib.so"

cat >"$D/w.py" <<'EOF'
import hashlib, mmap, os, signal, sys, time
path, out = sys.argv[1], sys.argv[2]
fd = os.open(path, os.O_RDONLY)
m = mmap.mmap(fd, 0, mmap.MAP_PRIVATE, mmap.PROT_READ | mmap.PROT_WRITE)
os.close(fd)
want = hashlib.sha256(m[4096:]).hexdigest()
m[0:5] = b"hello"  # a written page: travels as a page, not in the file
os.unlink(path)
def check(sig, frame):
    maps = [l for l in open("/proc/self/maps") if "lib.so" in l]
    ok = (hashlib.sha256(m[4096:]).hexdigest() == want and m[0:5] == b"hello" and
          maps and maps[0].rstrip().endswith("(deleted)"))
    with open(out, "a") as f:
        f.write("pass\n" if ok else "FAIL %s\n" % (maps,))
signal.signal(signal.SIGUSR1, check)
with open(out, "a") as f:
    f.write("ready\n")
while True:
    time.sleep(0.05)
EOF

setsid python3 "$D/w.py" "$D/lib.so" "$D/out" >"$D/w.log" 2>&1 </dev/null &
pid=$!
pids="$pids $pid"
wait_line "$D/out" '^ready' || exit 1
echo new >"$D/lib.so" # the upgrade's file
setsid "$HAUL" pageserver --listen 127.0.0.1:0 --key "$D/key" --once >"$D/ps.log" 2>&1 </dev/null &
pids="$pids $!"
wait_line "$D/ps.log" 'listening on 127.0.0.1:[0-9]+' || exit 1
port=$(grep -Eo 'listening on 127.0.0.1:[0-9]+' "$D/ps.log" | head -1 | cut -d: -f2)
if ! "$HAUL" migrate "$pid" --to "127.0.0.1:$port" --key "$D/key" >"$D/mig.out" 2>"$D/mig.log"; then
	echo "FAIL: migrate: $(cat "$D/mig.log")"
	exit 1
fi
there=$(sed -n 's/.*(pid \([0-9]*\) there).*/\1/p' "$D/mig.out")
[ -n "$there" ] || { echo "FAIL: no restored pid in: $(cat "$D/mig.out")"; exit 1; }
pids="$pids $there"
kill -USR1 "$there"
wait_line "$D/out" '^(pass|FAIL)' || exit 1
grep -q '^pass' "$D/out" || { echo "FAIL: the migrated process: $(cat "$D/out")"; exit 1; }
[ "$(cat "$D/lib.so")" = new ] || { echo "FAIL: the new file at the path was touched"; exit 1; }
[ "$(ls "$D" | grep -c '^lib.so')" = 1 ] || { echo "FAIL: the file made again was left: $(ls "$D")"; exit 1; }
echo "mig_deleted_lib: PASS: a 6 MiB deleted mapping moved with its state in parts:" \
	"$(sed -n 's/.*\(downtime [0-9.]* ms\).*/\1/p' "$D/mig.out" | head -1)"
exit 0
