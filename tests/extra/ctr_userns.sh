#!/bin/sh
# ctr_userns.sh - a runc container with a user namespace (config.json
# "user" namespace, uidMappings/gidMappings 0 -> 100000, 65536 ids) is
# checkpointed and restored through haul's criu entry point, with no change
# to runc; then pre-dumped and restored through its parents.
#
# The container is ctr_runc.sh's (no rlimits: root has no CAP_SYS_RESOURCE
# here; terminal false; busybox-static rootfs, chowned to the mapped root
# as runc needs for a user namespace) running tests/progs/ctr_counter.c:
# "TOKEN COUNTER" to /dev/shm/count (tmpfs) and /count.  runc binds the
# host's devices into its /dev in a user namespace (no mknod there).
#
# Checks: checkpoint writes the maps (the container is gone); restore -d
# brings it back under the same ID with the same token and a counter that
# goes on, in a user namespace of its own with the same maps, its process
# the namespace's root (uid 0 inside, 100000 outside) with the same
# capabilities, the tmpfs file and the bound /dev/null there; `runc exec`
# joins it.  Then runc checkpoint --pre-dump and a final checkpoint with
# --parent-path restore it again.  Needs root and Debian's runc, busybox-static, jq (77 when they
# cannot be installed).  Names carry this script's PID: runc state under
# its own --root, container ID ctr<PID>u, registry under the temporary dir.
set -u
haul=${HAUL_BIN:-$PWD/build/haul}
src=${HAUL_SRC:-$PWD}
[ "$(id -u)" = 0 ] || { echo "needs root (runc)"; exit 77; }
[ -x "$haul" ] || { echo "haul not built ($haul)"; exit 77; }
. "$(dirname "$0")/ctr_need.shlib"
ctr_install || exit 77

tmp=$(mktemp -d /tmp/ctr_userns.XXXXXX)
chmod 755 "$tmp" # the namespace's root (host uid 100000) walks to its rootfs through it
id=ctr$$u
R="runc --root $tmp/state"
export HAUL_RUN_DIR="$tmp/run"
cleanup() {
	$R kill $id KILL 2>/dev/null
	sleep 0.2
	$R delete -f $id >/dev/null 2>&1
	for f in "$HAUL_RUN_DIR"/.trackd/*.info; do
		[ -f "$f" ] && kill "$(sed -n 's/^daemon=//p' "$f")" 2>/dev/null
	done
	rm -rf "$tmp"
}
trap cleanup EXIT
fail() {
	echo "FAIL: $*"
	for f in "$tmp"/img*/*.log; do [ -f "$f" ] && { echo "== $f"; tail -20 "$f"; }; done
	exit 1
}

mkdir -p "$tmp/bin" && ln -s "$haul" "$tmp/bin/criu"
CPATH="$tmp/bin:$PATH"
PATH="$CPATH" criu check --feature userns | grep -q "is supported" ||
	fail "criu check --feature userns does not say it is supported"

B=$tmp/b
mkdir -p "$B/rootfs/bin" "$B/rootfs/dev" "$B/rootfs/proc" "$B/rootfs/sys" "$B/rootfs/tmp"
cp /bin/busybox "$B/rootfs/bin/"
gcc -static -O2 -o "$B/rootfs/counter" "$src/tests/progs/ctr_counter.c" 2>"$tmp/gcc.err" ||
	{ cat "$tmp/gcc.err"; echo "cannot build a static test program (libc6-dev)"; exit 77; }
(cd "$B" && runc spec) || fail "runc spec"
jq 'del(.process.rlimits) | .process.terminal=false | .root.readonly=false |
    .process.args=["/counter","/dev/shm/count","/count"] | .hostname="un'$$'" |
    .linux.namespaces += [{"type":"user"}] |
    .linux.uidMappings=[{"containerID":0,"hostID":100000,"size":65536}] |
    .linux.gidMappings=[{"containerID":0,"hostID":100000,"size":65536}]' \
	"$B/config.json" >"$B/c.json" && mv "$B/c.json" "$B/config.json"
chown -R 100000:100000 "$B/rootfs"

waitcount() { # min-counter tenths
	i=0
	while [ $i -lt "$2" ]; do
		set -- "$1" "$2" $(cat "$B/rootfs/count" 2>/dev/null)
		[ $# -ge 4 ] && [ "$4" -gt "$1" ] && { echo "$3 $4"; return 0; }
		sleep 0.1; i=$((i + 1))
	done
	return 1
}
ids() { # what the host and the container see of the container's process
	p=$($R state $id | jq .pid)
	echo "$(cat /proc/$p/uid_map /proc/$p/gid_map | tr -s ' ')"
	grep -E '^(Uid|Gid|Cap(Prm|Eff|Bnd)|NoNewPrivs):' /proc/$p/status
	[ "$(readlink /proc/$p/ns/user)" != "$(readlink /proc/self/ns/user)" ] && echo own-userns
}

(cd "$B" && $R run -d $id </dev/null >/dev/null 2>&1) ||
	{ echo "runc run with a user namespace does not work here"; exit 77; }
first=$(waitcount 5 100) || fail "the container never counted"
token=${first% *}
before=$(ids)
echo "$before" | grep -q own-userns || fail "runc did not give the container a user namespace"

# 1. checkpoint and restore
(cd "$B" && PATH="$CPATH" $R checkpoint --image-path "$tmp/img" $id) >"$tmp/ck.out" 2>&1 ||
	{ cat "$tmp/ck.out"; fail "runc checkpoint of a container with a user namespace"; }
$R list | grep -q "^$id " && fail "the container is still listed after checkpoint"
at=$(cut -d' ' -f2 "$B/rootfs/count")
(cd "$B" && PATH="$CPATH" $R restore -d --image-path "$tmp/img" $id) </dev/null \
	>"$tmp/rs.out" 2>&1 || { cat "$tmp/rs.out"; fail "runc restore of a container with a user namespace"; }
now=$(waitcount "$at" 100) || fail "the counter did not go on after restore"
[ "${now% *}" = "$token" ] || fail "token ${now% *} after restore, was $token: it restarted"
after=$(ids)
[ "$after" = "$before" ] || fail "maps, ids or capabilities differ after restore: '$after' vs '$before'"
[ "$($R exec $id /bin/busybox id -u)" = 0 ] || fail "runc exec does not see uid 0 inside"
shm=$($R exec $id /bin/busybox cat /dev/shm/count) || fail "runc exec in the restored container"
[ "${shm% *}" = "$token" ] || fail "the tmpfs file says '$shm', token $token"
$R exec $id /bin/busybox sh -c 'echo x >/dev/null' || fail "/dev/null is not usable inside"
echo "restored $id in its own user namespace (maps 0 100000 65536): counter ${now#* } > $at, same token, ids, capabilities, /dev/shm/count"

# 2. pre-dump rounds in a user namespace
(cd "$B" && PATH="$CPATH" $R checkpoint --pre-dump --image-path "$tmp/img2" $id) \
	>"$tmp/ck2.out" 2>&1 || { cat "$tmp/ck2.out"; fail "runc checkpoint --pre-dump (userns)"; }
(cd "$B" && PATH="$CPATH" $R checkpoint --parent-path ../img2 --image-path "$tmp/img3" $id) \
	>"$tmp/ck3.out" 2>&1 || { cat "$tmp/ck3.out"; fail "final runc checkpoint (userns)"; }
grep -q "only those written since the parent ../img2" "$tmp/img3/dump.log" ||
	fail "the final checkpoint did not use its parent"
at=$(cut -d' ' -f2 "$B/rootfs/count")
(cd "$B" && PATH="$CPATH" $R restore -d --image-path "$tmp/img3" $id) </dev/null \
	>"$tmp/rs3.out" 2>&1 || { cat "$tmp/rs3.out"; fail "runc restore through a parent (userns)"; }
now=$(waitcount "$at" 100) || fail "the counter did not go on after the restore through a parent"
[ "${now% *}" = "$token" ] || fail "token ${now% *} after the second restore, was $token"
echo "pre-dump, final dump with a parent, restore: $id counts on (${now#* } > $at) in its user namespace"
exit 0
