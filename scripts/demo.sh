#!/bin/sh
# demo.sh - a real live migration, shown: two network namespaces stand for
# the source and target hosts (veth, 198.18.0.1 -> 198.18.0.2, test addresses
# that never leave them); a workload that keeps 512 MiB of memory and rewrites
# it at 64 MiB/s prints a line every 100 ms with its network namespace; haul
# migrates it while it runs and it carries on in the target namespace.
# Run by `make demo` (which installs and builds first); root needed.
# Everything it made (namespaces, processes, files) is removed at the end.
set -u
BUILD=${BUILD:-build}
MEM=${DEMO_MEM:-512}
RATE=${DEMO_RATE:-64}
HAUL=$PWD/$BUILD/haul
WL=$PWD/$BUILD/progs/mig_workload
A=haul-demo-$$-src
B=haul-demo-$$-dst
PORT=7070
TMP=$(mktemp -d /tmp/haul-demo.XXXXXX)
export HAUL_RUN_DIR=$TMP/run
PS_PID= TAIL_PID=

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
die() { echo "demo: $*" >&2; exit 1; }

cleanup() {
	[ -n "$TAIL_PID" ] && kill "$TAIL_PID" 2>/dev/null
	# the workload, wherever it runs now: the source pid, and the target's from --json
	[ -f "$HAUL_RUN_DIR/demo$$/info" ] && ! grep -q migrated_to "$HAUL_RUN_DIR/demo$$/info" &&
		kill -9 "$(sed -n 's/^pid=//p' "$HAUL_RUN_DIR/demo$$/info")" 2>/dev/null
	[ -f "$TMP/migrate.json" ] &&
		kill -9 "$(sed -n 's/.*"target_pid": \([0-9]*\).*/\1/p' "$TMP/migrate.json")" 2>/dev/null
	[ -n "$PS_PID" ] && kill "$PS_PID" 2>/dev/null
	sleep 0.2
	for d in /sys/fs/cgroup/unified/haul/demo$$ /sys/fs/cgroup/haul/demo$$; do
		[ -d "$d" ] && { echo 0 >"$d/cgroup.freeze"; rmdir "$d"; } 2>/dev/null
	done
	ip netns del "$A" 2>/dev/null
	ip netns del "$B" 2>/dev/null
	rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

[ "$(id -u)" = 0 ] || die "run as root (namespaces, cgroups and ptrace need it)"
[ -x "$HAUL" ] && [ -x "$WL" ] || die "build first: make BUILD=$BUILD"
command -v nsenter >/dev/null || die "nsenter (util-linux) is missing"

say "two hosts: network namespaces $A (198.18.0.1) and $B (198.18.0.2), joined by veth"
ip netns add "$A" && ip netns add "$B" || die "cannot create network namespaces"
ip link add hdemo$$a type veth peer name hdemo$$b || die "cannot create veth"
ip link set hdemo$$a netns "$A" && ip link set hdemo$$b netns "$B"
ip -n "$A" link set lo up && ip -n "$B" link set lo up
ip -n "$A" addr add 198.18.0.1/30 dev hdemo$$a && ip -n "$B" addr add 198.18.0.2/30 dev hdemo$$b
ip -n "$A" link set hdemo$$a up && ip -n "$B" link set hdemo$$b up
NET_A=$(stat -L -c %i /run/netns/"$A") NET_B=$(stat -L -c %i /run/netns/"$B")
echo "source netns inode $NET_A, target netns inode $NET_B (the workload prints net=INODE)"
head -c 32 /dev/urandom >"$TMP/key"
chmod 600 "$TMP/key"

say "target: haul pageserver listening on 198.18.0.2:$PORT"
nsenter --net=/run/netns/"$B" "$HAUL" pageserver --listen 198.18.0.2:$PORT --key "$TMP/key" \
	>"$TMP/pageserver.log" 2>&1 &
PS_PID=$!
for i in $(seq 50); do
	grep -q "listening on" "$TMP/pageserver.log" 2>/dev/null && break
	kill -0 $PS_PID 2>/dev/null || { cat "$TMP/pageserver.log"; die "the page server did not start"; }
	sleep 0.1
done

say "source: haul run a workload with $MEM MiB, rewriting $RATE MiB/s"
nsenter --net=/run/netns/"$A" "$HAUL" run --name demo$$ --log "$TMP/workload.log" -- \
	"$WL" --mem "$MEM" --rate "$RATE" --control "$TMP/control" --tag demo$$ ||
	die "haul run failed"
"$HAUL" ps
for i in $(seq 100); do grep -q tick "$TMP/workload.log" 2>/dev/null && break; sleep 0.1; done
tail -n 0 -f "$TMP/workload.log" | sed -u 's/^/  workload | /' &
TAIL_PID=$!
sleep 2

say "haul migrate demo$$ --to 198.18.0.2:$PORT (live: it keeps running)"
nsenter --net=/run/netns/"$A" "$HAUL" migrate demo$$ --to 198.18.0.2:$PORT --key "$TMP/key" \
	--downtime 25 --json "$TMP/migrate.json"
rc=$?
sleep 2
echo verify >"$TMP/control"
sleep 1
kill "$TAIL_PID" 2>/dev/null
TAIL_PID=

say "result"
if [ $rc -ne 0 ]; then
	echo "migration failed (exit $rc); page server log:"
	cat "$TMP/pageserver.log"
	exit 1
fi
last=$(grep tick "$TMP/workload.log" | tail -1)
echo "last line: $last"
case "$last" in
*"net=$NET_B "*) echo "the workload now runs in the target namespace ($NET_B)" ;;
*) echo "the workload is not running in the target namespace"; exit 1 ;;
esac
grep -q 'verify ok' "$TMP/workload.log" && echo "its memory verified intact after the move"
sed -n 's/.*"downtime_ms": \([0-9.]*\).*/measured downtime: \1 ms (freeze to resume on the target)/p
s/.*"total_ms": \([0-9.]*\).*/total migration time: \1 ms/p
s/.*"rounds": \([0-9]*\).*/pre-copy rounds: \1/p' "$TMP/migrate.json"
grep maxgap "$TMP/workload.log" | tail -1 |
	sed 's/.*maxgap_ms=\([0-9.]*\).*/largest stall the workload itself saw: \1 ms/'
"$HAUL" ps
