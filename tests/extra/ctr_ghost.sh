#!/bin/sh
# ctr_ghost.sh - a container whose library was upgraded under it, through
# runc and haul's criu entry point: its process (tests/progs/ctr_ghost.c,
# static, busybox rootfs) maps /lib.so privately with a page of its own,
# holds /held.tmp open, both deleted, and a new /lib.so took the path.
# runc checkpoint, then runc restore: the deleted files are made again in
# the container's root (not the host's), the process goes on with the same
# token, its mapping and held file intact and the mapping deleted again;
# the new /lib.so is untouched, nothing made again is left in the rootfs,
# and the host's / got nothing.  Needs root, runc, busybox-static, jq and a
# static libc (77 otherwise).
set -u
haul=${HAUL_BIN:-$PWD/build/haul}
src=${HAUL_SRC:-$PWD}
[ "$(id -u)" = 0 ] || { echo "needs root (runc)"; exit 77; }
[ -x "$haul" ] || { echo "haul not built ($haul)"; exit 77; }
. "$(dirname "$0")/ctr_need.shlib"
ctr_install || exit 77
[ -e /lib.so ] || [ -e /held.tmp ] && { echo "/lib.so or /held.tmp exists on the host"; exit 77; }

tmp=$(mktemp -d /tmp/ctr_ghost.XXXXXX)
id=ctr$$g
R="runc --root $tmp/state"
cleanup() {
	$R kill $id KILL 2>/dev/null
	sleep 0.2
	$R delete -f $id >/dev/null 2>&1
	rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; for f in "$tmp"/img/*.log; do [ -f "$f" ] && { echo "== $f"; tail -20 "$f"; }; done; exit 1; }

mkdir -p "$tmp/bin" && ln -s "$haul" "$tmp/bin/criu"
CPATH="$tmp/bin:$PATH"
gcc -static -O2 -o "$tmp/ghost" "$src/tests/progs/ctr_ghost.c" 2>"$tmp/gcc.err" ||
	{ cat "$tmp/gcc.err"; echo "cannot build a static test program (libc6-dev)"; exit 77; }
B=$tmp/b
mkdir -p "$B/rootfs/bin" "$B/rootfs/dev" "$B/rootfs/proc" "$B/rootfs/sys" "$B/rootfs/tmp"
cp /bin/busybox "$B/rootfs/bin/" && cp "$tmp/ghost" "$B/rootfs/ghost"
(cd "$B" && runc spec) || fail "runc spec"
jq 'del(.process.rlimits) | .process.terminal=false | .root.readonly=false |
    .process.args=["/ghost","/count"]' "$B/config.json" >"$B/c.json" && mv "$B/c.json" "$B/config.json"

# "TOKEN COUNTER ok" with COUNTER over $1, within 10 s: echo the line
waitok() {
	i=0
	while [ $i -lt 100 ]; do
		set -- "$1" $(cat "$B/rootfs/count" 2>/dev/null)
		[ $# -ge 4 ] && [ "$3" -gt "$1" ] && [ "$4" = ok ] && { echo "$2 $3"; return 0; }
		sleep 0.1
		i=$((i + 1))
	done
	return 1
}

(cd "$B" && $R run -d $id </dev/null >/dev/null 2>&1) || { echo "runc run does not work here"; exit 77; }
first=$(waitok 3) || fail "the container never counted ok: $(cat "$B/rootfs/count" 2>&1)"
token=${first% *}
(cd "$B" && PATH="$CPATH" $R checkpoint --image-path "$tmp/img" $id) >"$tmp/ck.out" 2>&1 ||
	{ cat "$tmp/ck.out"; fail "runc checkpoint"; }
at=$(cut -d' ' -f2 "$B/rootfs/count")
(cd "$B" && PATH="$CPATH" $R restore -d --image-path "$tmp/img" $id) \
	</dev/null >"$tmp/rs.out" 2>&1 || { cat "$tmp/rs.out"; fail "runc restore"; }
now=$(waitok "$at") || fail "the restored container does not count ok: $(cat "$B/rootfs/count")"
[ "${now% *}" = "$token" ] || fail "token ${now% *} after restore, was $token: it restarted"
[ "$(cat "$B/rootfs/lib.so")" = new ] || fail "the new /lib.so of the container was touched"
left=$(ls -a "$B/rootfs" | grep -E 'haul|held' || true)
[ -z "$left" ] || fail "made-again files left in the rootfs: $left"
[ -e /lib.so ] || [ -e /held.tmp ] || ls -a / | grep -q 'haul-ghost' && fail "files made on the host's /"
echo "ctr_ghost: PASS: $id came back with its deleted library mapping and held file" \
	"(token $token, counter $at -> ${now#* })"
exit 0
