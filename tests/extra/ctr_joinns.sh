#!/bin/bash
# ctr_joinns.sh - a runc container that joins existing uts and ipc
# namespaces (namespace "path"s in config.json, as podman's pods share
# them) is checkpointed and restored through haul's criu entry point into
# those same namespaces (CRIU's join_ns; src/restore/joinns_ctr.c).
#
# A holder process (unshare --uts --ipc) sets the hostname hold<PID> and
# makes a SysV shared memory segment in its IPC namespace, then sleeps.
# The container (ctr_runc.sh's bundle: busybox-static and ctr_counter.c
# built static) names /proc/HOLDER/ns/uts and /proc/HOLDER/ns/ipc.
# Checks: the checkpoint is not refused for the holder's segment (the
# namespace is shared with a process outside the container: its objects
# are the holder's); a restore whose config.json lacks the ipc path is
# refused by name (join_ns ipc), nothing restored; the restore with the
# paths brings the container back running, with its memory (token and
# counter), in the holder's uts and ipc namespaces (same /proc/PID/ns
# inodes), seeing the holder's segment, and the dumped hostname set again
# in the joined uts namespace as CRIU does (the holder renamed it after
# the checkpoint).  A
# container that joins a PID namespace (runc: external pid[INODE]), and
# one whose process maps the holder's segment, are refused by name at
# checkpoint and run on.
# Needs root, runc, busybox-static, jq (installed when missing: 77 when
# they cannot be).  Names carry this script's PID: the runc state under
# its own --root, container IDs ctr<PID>j/p/s, cgroups /ctr<PID>j/p/s.
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
set -u
haul=${HAUL_BIN:-$PWD/build/haul}
src=${HAUL_SRC:-$PWD}
[ "$(id -u)" = 0 ] || { echo "needs root (runc)"; exit 77; }
[ -x "$haul" ] || { echo "haul not built ($haul)"; exit 77; }
srv_skip() { echo "$*"; exit 77; }
. "$src/tests/extra/ctr_hosts.shlib"
ctr_require
command -v runc >/dev/null && [ -x /bin/busybox ] && command -v jq >/dev/null ||
	srv_skip "runc, busybox-static or jq missing after install"
command -v ipcmk >/dev/null && command -v unshare >/dev/null || srv_skip "util-linux's ipcmk and unshare missing"

tmp=$(mktemp -d /tmp/ctr_joinns.XXXXXX)
id=ctr$$j
idp=ctr$$p
ids=ctr$$s
R="runc --root $tmp/state"
holders=
cleanup() {
	for c in $id $idp $ids; do $R kill $c KILL 2>/dev/null; done
	sleep 0.2
	for c in $id $idp $ids; do $R delete -f $c >/dev/null 2>&1; done
	for h in $holders; do kill -KILL "$h" 2>/dev/null; done
	rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; for f in "$tmp"/img*/*.log; do [ -f "$f" ] && { echo "== $f"; tail -20 "$f"; }; done; exit 1; }

mkdir -p "$tmp/bin" && ln -s "$haul" "$tmp/bin/criu"
CPATH="$tmp/bin:$PATH"
gcc -static -O2 -o "$tmp/counter" "$src/tests/progs/ctr_counter.c" 2>"$tmp/gcc.err" ||
	{ cat "$tmp/gcc.err"; echo "cannot build a static test program (libc6-dev)"; exit 77; }

mk_bundle() { # dir jq-filter
	mkdir -p "$1/rootfs/bin" "$1/rootfs/dev" "$1/rootfs/proc" "$1/rootfs/sys" "$1/rootfs/tmp"
	cp /bin/busybox "$1/rootfs/bin/"
	cp "$tmp/counter" "$1/rootfs/counter"
	(cd "$1" && runc spec) || return 1
	jq "del(.process.rlimits) | .process.terminal=false | .root.readonly=false |
	    .process.args=[\"/counter\",\"/dev/shm/count\",\"/count\"] | $2" \
		"$1/config.json" >"$1/c.json" && mv "$1/c.json" "$1/config.json"
}
# the namespace entry of TYPE gets PATH (the hostname is the holder's: runc may not set it)
ns_path() { echo "del(.hostname) | .linux.namespaces |= map(if .type == \"$1\" then .path = \"$2\" else . end)"; }

waitcount() { # file min-counter tenths
	i=0
	while [ $i -lt "$3" ]; do
		set -- "$1" "$2" "$3" $(cat "$1" 2>/dev/null)
		[ $# -ge 5 ] && [ "$5" -gt "$2" ] && { echo "$4 $5"; return 0; }
		sleep 0.1; i=$((i + 1))
	done
	return 1
}
running() { $R list | grep -q "^$1 .* running "; }

# the holder: its own uts (hostname hold<PID>) and ipc (one segment) namespaces
mkfifo "$tmp/ready"
unshare --uts --ipc sh -c "hostname hold$$ && ipcmk -M 4096 | sed -n 's/.*id: //p' >$tmp/shmid &&
	echo ready >$tmp/ready; exec sleep 100000" &
holder=$!
disown $holder
holders="$holder"
read -r _ <"$tmp/ready" || fail "the holder never got ready"
shmid=$(cat "$tmp/shmid")
[ -n "$shmid" ] || fail "the holder made no SysV segment"
H=/proc/$holder/ns

mk_bundle "$tmp/b" "$(ns_path uts $H/uts) | $(ns_path ipc $H/ipc)" || fail "runc spec"
B=$tmp/b
(cd "$B" && $R run -d $id </dev/null >/dev/null 2>&1) || { echo "runc run does not work here"; exit 77; }
first=$(waitcount "$B/rootfs/count" 5 100) || fail "the container never counted"
token=${first% *}
[ "$($R exec $id /bin/busybox hostname)" = "hold$$" ] || fail "the container does not see the holder's hostname"

# 1. checkpoint: the holder's segment is not refused, the container is gone
(cd "$B" && PATH="$CPATH" $R checkpoint --image-path "$tmp/img" $id) >"$tmp/ck.out" 2>&1 ||
	{ cat "$tmp/ck.out"; fail "runc checkpoint of a container in the holder's uts and ipc namespaces"; }
running $id && fail "the container still runs after checkpoint"
at_ckpt=$(cut -d' ' -f2 "$B/rootfs/count")
echo "checkpointed $id (in the holder's uts and ipc namespaces) at counter $at_ckpt"
# the holder renames its namespace: the restore sets the dumped name in it again, as CRIU
nsenter -t $holder -u hostname hold$$b || fail "cannot rename the holder's uts namespace"

# 2. a restore that names no IPC namespace to join is refused by name, nothing restored
jq 'del(.linux.namespaces[] | select(.type == "ipc") | .path)' "$B/config.json" >"$tmp/noipc.json"
cp "$B/config.json" "$tmp/ipc.json" && cp "$tmp/noipc.json" "$B/config.json"
(cd "$B" && PATH="$CPATH" $R restore -d --image-path "$tmp/img" $id) </dev/null \
	>"$tmp/rs0.out" 2>&1 && fail "a restore without the shared ipc namespace's path was not refused"
grep -q "names none to join (join_ns ipc)" "$tmp/img/restore.log" ||
	fail "the refusal does not name join_ns ipc"
running $id && fail "$id runs after a refused restore"
$R delete -f $id >/dev/null 2>&1
cp "$tmp/ipc.json" "$B/config.json"
echo "a restore without the ipc namespace path is refused by name"

# 3. restore: running, same memory, in the holder's namespaces, its hostname and segment
(cd "$B" && PATH="$CPATH" $R restore -d --image-path "$tmp/img" $id) </dev/null \
	>"$tmp/rs.out" 2>&1 || { cat "$tmp/rs.out"; fail "runc restore"; }
running $id || fail "runc list does not show $id running: $($R list)"
now=$(waitcount "$B/rootfs/count" "$at_ckpt" 100) || fail "the counter did not go on after restore"
[ "${now% *}" = "$token" ] || fail "token ${now% *} after restore, was $token: it restarted"
pid=$($R state $id | jq .pid)
for ns in uts ipc; do
	[ "$(readlink /proc/$pid/ns/$ns)" = "$(readlink $H/$ns)" ] ||
		fail "the restored $id is in $ns namespace $(readlink /proc/$pid/ns/$ns), the holder's is $(readlink $H/$ns)"
done
hn=$($R exec $id /bin/busybox hostname)
[ "$hn" = "hold$$" ] || fail "hostname '$hn' after restore, the dumped one is hold$$ (renamed hold$$b since)"
[ "$(nsenter -t $holder -u hostname)" = "hold$$" ] || fail "the holder does not see the hostname the restore set"
$R exec $id /bin/busybox cat /proc/sysvipc/shm | awk -v id="$shmid" '$2 == id { f = 1 } END { exit !f }' ||
	fail "the restored container does not see the holder's segment $shmid"
[ "$(uname -n)" != "hold$$b" ] || fail "the host's hostname changed"
echo "restored $id in the holder's uts and ipc namespaces: same token, the dumped hostname hold$$ set again there (as CRIU), the holder's segment $shmid"

# 4. a container that joins a PID namespace (runc: external pid[INODE], inherit_fd
# extRootPidNS): checkpointed and restored into the holder's namespace with its pid there
unshare --pid --fork --mount-proc sh -c "echo ready >$tmp/ready; exec sleep 100000" &
pholder=$!
disown $pholder
holders="$holders $pholder"
read -r _ <"$tmp/ready" || fail "the pid namespace holder never got ready"
pinit=$(cat /proc/$pholder/task/$pholder/children)
pinit=${pinit%% *}
[ -n "$pinit" ] || fail "the pid namespace holder has no init"
holders="$holders $pinit"
nspid() { awk '/^NSpid:/ { print $NF }' /proc/$1/status; }
mk_bundle "$tmp/b2" "$(ns_path pid /proc/$pholder/ns/pid_for_children)" || fail "runc spec (pid path)"
(cd "$tmp/b2" && $R run -d $idp </dev/null >/dev/null 2>&1) || fail "runc run in the holder's PID namespace"
first=$(waitcount "$tmp/b2/rootfs/count" 1 100) || fail "$idp never counted"
ptoken=${first% *}
ppid0=$($R state $idp | jq .pid)
pns=$(nspid $ppid0)
[ "$(readlink /proc/$ppid0/ns/pid)" = "$(readlink /proc/$pinit/ns/pid)" ] ||
	fail "$idp is not in the holder's PID namespace"
[ "$pns" != 1 ] || fail "$idp is pid 1 of the holder's namespace"
(cd "$tmp/b2" && PATH="$CPATH" $R checkpoint --image-path "$tmp/img2" $idp) >"$tmp/ck2.out" 2>&1 ||
	{ cat "$tmp/ck2.out"; fail "runc checkpoint of a container in the holder's PID namespace"; }
running $idp && fail "$idp still runs after checkpoint"
at2=$(cut -d' ' -f2 "$tmp/b2/rootfs/count")
echo "checkpointed $idp (pid $pns in the holder's PID namespace) at counter $at2"
# the dumped process is reaped by the host's init (slowly here): its pid is free after
i=0
while [ -e /proc/$ppid0 ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
[ -e /proc/$ppid0 ] && fail "the checkpointed pid $ppid0 was never reaped"

# 4a. its pid taken in the holder's namespace: the restore is refused by name
nsenter -t $pinit -p sh -c "echo $((pns - 1)) >/proc/sys/kernel/ns_last_pid" ||
	fail "cannot set ns_last_pid in the holder's namespace"
nsenter -t $pinit -p sleep 100000 &
taker_ns=$!
holders="$holders $taker_ns"
i=0
until taker=$(cat /proc/$taker_ns/task/$taker_ns/children 2>/dev/null) && [ -n "$taker" ]; do
	i=$((i + 1)); [ $i -lt 100 ] || fail "the pid taker never started"; sleep 0.1
done
taker=${taker%% *}
[ "$(nspid $taker)" = "$pns" ] || fail "the taker got pid $(nspid $taker), not $pns, in the namespace"
(cd "$tmp/b2" && PATH="$CPATH" $R restore -d --image-path "$tmp/img2" $idp) </dev/null \
	>"$tmp/rs2.out" 2>&1 && fail "a restore whose pid is taken in the joined namespace was not refused"
grep -q "pid $pns is taken in the PID namespace" "$tmp/img2/restore.log" ||
	fail "the refusal does not name pid $pns taken in the namespace"
running $idp && fail "$idp runs after a refused restore"
$R delete -f $idp >/dev/null 2>&1
kill -KILL $taker
wait $taker_ns 2>/dev/null
echo "a restore whose pid $pns is taken in the joined PID namespace is refused by name"

# 4b. restore: in the holder's PID namespace, the same pid there, memory going on
(cd "$tmp/b2" && PATH="$CPATH" $R restore -d --image-path "$tmp/img2" $idp) </dev/null \
	>"$tmp/rs2.out" 2>&1 || { cat "$tmp/rs2.out"; fail "runc restore into the holder's PID namespace"; }
running $idp || fail "runc list does not show $idp running: $($R list)"
now=$(waitcount "$tmp/b2/rootfs/count" "$at2" 100) || fail "$idp's counter did not go on after restore"
[ "${now% *}" = "$ptoken" ] || fail "token ${now% *} after restore, was $ptoken: it restarted"
ppid1=$($R state $idp | jq .pid)
[ "$(readlink /proc/$ppid1/ns/pid)" = "$(readlink /proc/$pinit/ns/pid)" ] ||
	fail "the restored $idp is in PID namespace $(readlink /proc/$ppid1/ns/pid), the holder's is $(readlink /proc/$pinit/ns/pid)"
[ "$(nspid $ppid1)" = "$pns" ] || fail "the restored $idp is pid $(nspid $ppid1) in the namespace, was $pns"
echo "restored $idp in the holder's PID namespace as pid $pns there: same token, counting"

# 5. a container process that maps the holder's segment: refused by name, runs on
# (its restore would make the segment anew, away from the holder's namespace)
printf '%s\n' '#include <stdlib.h>' '#include <sys/shm.h>' '#include <unistd.h>' \
	'int main(int c, char **v) { if (c < 2 || shmat(atoi(v[1]), 0, 0) == (void *)-1) return 1; for (;;) pause(); }' \
	>"$tmp/shmat.c"
gcc -static -O2 -o "$tmp/shmat" "$tmp/shmat.c" || fail "cannot build the shmat program"
mk_bundle "$tmp/b3" "$(ns_path uts $H/uts) | $(ns_path ipc $H/ipc) | .process.args=[\"/shmat\",\"$shmid\"]" ||
	fail "runc spec (shmat)"
cp "$tmp/shmat" "$tmp/b3/rootfs/shmat"
(cd "$tmp/b3" && $R run -d $ids </dev/null >/dev/null 2>&1) || fail "runc run of the shmat container"
spid=$($R state $ids | jq .pid)
i=0
until grep -q ' /SYSV' /proc/$spid/maps 2>/dev/null; do
	i=$((i + 1)); [ $i -lt 100 ] || fail "$ids never attached segment $shmid"; sleep 0.1
done
(cd "$tmp/b3" && PATH="$CPATH" $R checkpoint --image-path "$tmp/img3" $ids) \
	>"$tmp/ck3.out" 2>&1 && fail "a container mapping the holder's segment was checkpointed"
grep -q "maps the SysV segment /SYSV[0-9a-f]* .*shared with a process outside the container" \
	"$tmp/img3/dump.log" || fail "the refusal does not name the mapped SysV segment"
running $ids || fail "$ids not running after a refused checkpoint"
echo "a container mapping the holder's segment is refused by name and runs on"
exit 0
