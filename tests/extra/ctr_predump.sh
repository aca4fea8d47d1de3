#!/bin/sh
# ctr_predump.sh - runc's pre-dump rounds through haul's criu entry point:
# `runc checkpoint --pre-dump` twice, then a final checkpoint with
# --parent-path, then `runc restore` from the final directory, with no
# change to runc.
#
# The container is ctr_runc.sh's (no rlimits: root has no
# CAP_SYS_RESOURCE here; terminal false; busybox-static rootfs) running
# tests/progs/ctr_memcheck.c: 64 MiB whose every page it rewrites,
# replaces, zaps and verifies nonstop, writing "TOKEN COUNTER BAD" to
# /status.  The restored process goes on verifying its memory: the same
# token, a larger counter and BAD 0 show the memory came back whole through
# the chain of images.
#
# Checks: the first pre-dump starts a tracker daemon that `haul ps` lists
# and the container runs on; the second writes only what changed and names
# its parent (parent.img); the final one too, and the container is gone;
# restore from the final directory (its parents beside it) brings back
# intact memory; its tracker ended with the process.  Then the restored
# container is checkpointed again without parents in the same run: its
# size and time against the final dump's are printed (bench/RESULTS.md).
# Then a chain whose tracker was killed: the next dump with --parent-path
# says it dumps every page, and that image restores whole.  Needs root and
# Debian's runc, busybox-static, jq (77 when they cannot be installed).
# CTR_PREDUMP_MIB sets the container's memory (default 64; bench/RESULTS.md
# used 256).  Names carry this script's PID: runc state under its own --root,
# container ID ctr<PID>p, registry $HAUL_RUN_DIR under the temporary dir.
set -u
haul=${HAUL_BIN:-$PWD/build/haul}
src=${HAUL_SRC:-$PWD}
[ "$(id -u)" = 0 ] || { echo "needs root (runc)"; exit 77; }
[ -x "$haul" ] || { echo "haul not built ($haul)"; exit 77; }
. "$(dirname "$0")/ctr_need.shlib"
ctr_install || exit 77

tmp=$(mktemp -d /tmp/ctr_predump.XXXXXX)
id=ctr$$p
mib=${CTR_PREDUMP_MIB:-64}
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
	for f in "$tmp"/d*/*.log "$HAUL_RUN_DIR"/.trackd/*.log; do
		[ -f "$f" ] && { echo "== $f"; tail -20 "$f"; }
	done
	exit 1
}

mkdir -p "$tmp/bin" && ln -s "$haul" "$tmp/bin/criu"
CPATH="$tmp/bin:$PATH"
PATH="$CPATH" criu check --feature mem_dirty_track | grep -q "is supported" ||
	fail "criu check --feature mem_dirty_track does not say it is supported"

B=$tmp/b
mkdir -p "$B/rootfs/bin" "$B/rootfs/dev" "$B/rootfs/proc" "$B/rootfs/sys" "$B/rootfs/tmp"
cp /bin/busybox "$B/rootfs/bin/"
gcc -static -O2 -o "$B/rootfs/memcheck" "$src/tests/progs/ctr_memcheck.c" 2>"$tmp/gcc.err" ||
	{ cat "$tmp/gcc.err"; echo "cannot build a static test program (libc6-dev)"; exit 77; }
(cd "$B" && runc spec) || fail "runc spec"
jq 'del(.process.rlimits) | .process.terminal=false | .root.readonly=false |
    .process.args=["/memcheck","/status","'"$mib"'"] | .hostname="pd'$$'"' \
	"$B/config.json" >"$B/c.json" && mv "$B/c.json" "$B/config.json"

# "TOKEN COUNTER BAD" once COUNTER > $1 (within $2 tenths of a second)
status_after() {
	i=0
	while [ $i -lt "$2" ]; do
		set -- "$1" "$2" $(cat "$B/rootfs/status" 2>/dev/null)
		[ $# -ge 5 ] && [ "$4" -gt "$1" ] && { echo "$3 $4 $5"; return 0; }
		sleep 0.1; i=$((i + 1))
	done
	return 1
}
ms() { date +%s%3N; }

(cd "$B" && $R run -d $id </dev/null >/dev/null 2>&1) ||
	{ echo "runc run does not work here"; exit 77; }
st=$(status_after 5 300) || fail "the container never verified its memory"
token=${st%% *}
pid=$($R state $id | jq .pid)

# 1. first pre-dump: every page, a tracker daemon stays; the container runs on
ck() { # name args...
	n=$1; shift
	t0=$(ms)
	(cd "$B" && PATH="$CPATH" $R checkpoint "$@" $id) >"$tmp/$n.out" 2>&1 ||
		{ cat "$tmp/$n.out"; fail "runc checkpoint $*"; }
	echo $(($(ms) - t0)) >"$tmp/$n.ms"
}
ck d1 --pre-dump --image-path "$tmp/d1"
grep -q "serves the criu PRE_DUMP request" "$tmp/d1/dump.log" ||
	fail "runc checkpoint --pre-dump did not run haul's PRE_DUMP"
grep -q "pre-dumped pid $pid" "$tmp/d1/dump.log" || fail "no pre-dump line in d1/dump.log"
$R list | grep -q "^$id .* running " || fail "$id not running after a pre-dump"
"$haul" ps | grep -q "criu pre-dump *$pid " || fail "haul ps does not list the tracker of $pid"
c=$(status_after 0 10 | cut -d' ' -f2)
status_after "$c" 100 >/dev/null || fail "the container stopped counting after a pre-dump"
echo "pre-dump 1: $(grep -o 'round [0-9]*, [0-9]* pages' "$tmp/d1/dump.log"), tracker listed by haul ps"

# 2. second pre-dump: only what changed since d1, which it names
ck d2 --pre-dump --parent-path ../d1 --image-path "$tmp/d2"
grep -q "only those written since the parent ../d1" "$tmp/d2/dump.log" ||
	fail "the second pre-dump did not use its parent ../d1"
ls "$tmp"/d2/*/parent.img >/dev/null 2>&1 || fail "no parent.img in d2"
echo "pre-dump 2: $(grep -o 'round [0-9]*, [0-9]* pages' "$tmp/d2/dump.log") since ../d1"

# 3. the final checkpoint on top of d2: the container is gone
ck d3 --parent-path ../d2 --image-path "$tmp/d3"
grep -q "only those written since the parent ../d2" "$tmp/d3/dump.log" ||
	fail "the final checkpoint did not use its parent ../d2"
$R list | grep -q "^$id " && fail "$id still listed after the final checkpoint"
at_ckpt=$(cut -d' ' -f2 "$B/rootfs/status")
i=0
while ls "$HAUL_RUN_DIR"/.trackd/*.info >/dev/null 2>&1; do
	i=$((i + 1)); [ $i -lt 50 ] || fail "the tracker outlived its process"; sleep 0.1
done

# 4. restore from the final directory: memory whole through d3 -> d2 -> d1
(cd "$B" && PATH="$CPATH" $R restore -d --image-path "$tmp/d3" $id) </dev/null \
	>"$tmp/rs.out" 2>&1 || { cat "$tmp/rs.out"; fail "runc restore from d3"; }
grep -q "pages through 2 parent image" "$tmp/d3/restore.log" ||
	fail "the restore did not read through d2 and d1"
st=$(status_after "$((at_ckpt + 5))" 100) || fail "the restored container does not verify its memory"
[ "${st%% *}" = "$token" ] || fail "token ${st%% *} after restore, was $token: it restarted"
[ "${st##* }" = 0 ] || fail "the restored memory has ${st##* } wrong pages"
echo "restored from d3 (parents d2, d1): same token, counter $(echo "$st" | cut -d' ' -f2) > $at_ckpt, 0 wrong pages"

# 5. the same container, a checkpoint without parents, in the same run
ck d4 --image-path "$tmp/d4"
(cd "$B" && PATH="$CPATH" $R restore -d --image-path "$tmp/d4" $id) </dev/null \
	>"$tmp/rs4.out" 2>&1 || { cat "$tmp/rs4.out"; fail "runc restore from d4"; }
size() { du -sk --apparent-size "$1" | cut -f1; }
printf "final dump, $mib MiB container: with parents %s KiB in %s ms (pre-dumps %s + %s KiB); without %s KiB in %s ms\n" \
	"$(size "$tmp/d3")" "$(cat "$tmp/d3.ms")" "$(size "$tmp/d1")" "$(size "$tmp/d2")" \
	"$(size "$tmp/d4")" "$(cat "$tmp/d4.ms")"
grep -o 'stopped [0-9.]* ms' "$tmp/d3/dump.log" | sed 's/^/  with parents: /'
grep -o 'stopped [0-9.]* ms' "$tmp/d4/dump.log" | sed 's/^/  without:      /'

# 6. a broken chain: the tracker is killed; the next dump with a parent dumps
# every page, says so, and its image restores whole
st=$(status_after 0 100) || fail "the container restored from d4 does not count"
pid=$($R state $id | jq .pid)
ck d5 --pre-dump --image-path "$tmp/d5"
kill -9 "$(sed -n 's/^daemon=//p' "$HAUL_RUN_DIR"/.trackd/"$pid"-*.info)" ||
	fail "no tracker daemon to kill"
ck d6 --parent-path ../d5 --image-path "$tmp/d6"
grep -q "no tracker holds its writes since ../d5.*every page is dumped" "$tmp/d6/dump.log" ||
	fail "the dump after a killed tracker does not say it dumps every page"
ls "$tmp"/d6/*/parent.img >/dev/null 2>&1 && fail "d6 names a parent although its tracker died"
at_ckpt=$(cut -d' ' -f2 "$B/rootfs/status")
(cd "$B" && PATH="$CPATH" $R restore -d --image-path "$tmp/d6" $id) </dev/null \
	>"$tmp/rs6.out" 2>&1 || { cat "$tmp/rs6.out"; fail "runc restore from d6"; }
st=$(status_after "$((at_ckpt + 5))" 100) || fail "the container restored from d6 does not count"
[ "${st##* }" = 0 ] || fail "the memory restored from d6 has ${st##* } wrong pages"
echo "a killed tracker: the next dump took every page (said so), restored with 0 wrong pages"
exit 0
