#!/bin/bash
# bench/ckpt_netlock.sh - what the checkpoint's network lock costs the stop:
# `haul checkpoint` of a server with N established TCP connections (from a
# client process on loopback), with the lock and with --no-network-lock,
# alternated in the same run, each followed by `haul restore` (the client
# then checks that every connection still answers).  Prints the median
# "stopped" of each and their ratio.
#   usage: bench/ckpt_netlock.sh [N connections, default 16] [rounds, default 5]
# Needs root, nft, python3.  HAUL: the haul binary (default build/haul).
set -euo pipefail
N=${1:-16}
ROUNDS=${2:-5}
HAUL=${HAUL:-build/haul}
DIR=$(mktemp -d /tmp/haul-bench-lock.XXXXXX)
PORT=$((20000 + $$ % 20000))
SRV= CLI=

cleanup() {
	[ -n "$SRV" ] && kill -9 "$SRV" 2>/dev/null || true
	[ -n "$CLI" ] && kill -9 "$CLI" 2>/dev/null || true
	rm -rf "$DIR"
}
trap cleanup EXIT

cat >"$DIR/srv.py" <<EOF
import selectors, socket
sel = selectors.DefaultSelector()
l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind(("127.0.0.1", $PORT)); l.listen(64); sel.register(l, selectors.EVENT_READ)
print("listening", flush=True)
while True:
    for k, _ in sel.select():
        if k.fileobj is l:
            c, _ = l.accept(); sel.register(c, selectors.EVENT_READ)
        else:
            d = k.fileobj.recv(64)
            if d: k.fileobj.send(d)
            else: sel.unregister(k.fileobj); k.fileobj.close()
EOF
cat >"$DIR/cli.py" <<EOF
import socket, sys, time, os
cs = [socket.create_connection(("127.0.0.1", $PORT)) for _ in range($N)]
print("connected", flush=True)
while True:
    line = sys.stdin.readline()
    if not line: break
    bad = 0
    for c in cs:
        c.settimeout(10)
        try:
            c.send(b"ping"); bad += c.recv(4) != b"ping"
        except OSError:
            bad += 1
    print("bad", bad, flush=True)
EOF

mkfifo "$DIR/cmd"
python3 "$DIR/srv.py" >"$DIR/srv.out" 2>&1 </dev/null 251>&- &
SRV=$!
sleep 0.5
python3 "$DIR/cli.py" <"$DIR/cmd" >"$DIR/cli.out" 2>&1 251>&- &
CLI=$!
disown -a
exec 7>"$DIR/cmd"
sleep 0.5

declare -a with without
for r in $(seq "$ROUNDS"); do
	for mode in lock nolock; do
		rm -rf "$DIR/img"
		extra=""
		[ $mode = nolock ] && extra="--no-network-lock"
		ms=$($HAUL checkpoint "$SRV" --images "$DIR/img" $extra 2>/dev/null |
			sed -n 's/.*stopped \([0-9.]*\) ms.*/\1/p')
		SRV=$($HAUL restore --images "$DIR/img" --detach 2>/dev/null | tail -1)
		echo ping >&7
		sleep 0.3
		bad=$(tail -1 "$DIR/cli.out")
		[ "$bad" = "bad 0" ] || { echo "round $r $mode: $bad after the restore" >&2; exit 1; }
		if [ $mode = lock ]; then with+=("$ms"); else without+=("$ms"); fi
		echo "round $r $mode: stopped $ms ms, $N connections answer"
	done
done
med() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
mw=$(med "${with[@]}")
mo=$(med "${without[@]}")
echo "median stopped: with the lock $mw ms, without $mo ms, ratio $(awk -v a="$mw" -v b="$mo" 'BEGIN {printf "%.2f", a / b}')"
