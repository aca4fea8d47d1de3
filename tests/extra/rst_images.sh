#!/bin/sh
# rst_images.sh - no lost image, no silent corruption from images (issue 18),
# on the rst_counter workload:
#  1. a damaged image (pages.img truncated, a byte flipped in a page, in the
#     index, in the process state; pages.img or index.img deleted; another
#     format version): `haul restore` exits non-zero naming the file (and
#     the slot), and every file of the image is byte-identical afterwards;
#  2. haul killed (-9) at each step of a --leave-running checkpoint that
#     replaces an image (HAUL_FAULT=ckpt-kill:staged|committed|switched):
#     an image of the process still restores to the undisturbed result (the
#     old one, byte-identical, before the switch), and the next checkpoint
#     into the directory removes what the killed one left;
#  3. ENOSPC (a tmpfs with room for one image): the new checkpoint fails,
#     leaves no partial files, and the old image restores;
#  4. two `haul run` workloads, both PID 1 in their own PID namespace,
#     checkpointed into one directory: both images survive, restore without
#     --id lists them and refuses, each restores by --id and ends right.
# Exit 0 pass, 77 skip, else fail.
set -u
HAUL=${HAUL_BIN:-$PWD/build/haul}
PROGS=${HAUL_PROGS:-$PWD/build/progs}
[ "$(id -u)" = 0 ] || { echo "needs root (ptrace, clone3 set_tid, mount)"; exit 77; }
[ -x "$HAUL" ] && [ -x "$PROGS/rst_counter" ] || { echo "build haul and progs first"; exit 77; }
. "$(dirname "$0")/th_wait.shlib"
D=$(mktemp -d /tmp/haul-rst-images-$$.XXXXXX)
pids=""
cleanup() {
	for p in $pids; do kill -9 "$p" 2>/dev/null; done
	umount "$D/small" 2>/dev/null
	# haul run's cgroups (<cgroup2 or v1 freezer>/haul/NAME), once their workloads are gone.
	for p in $pids; do wait_gone "$p" 2 2>/dev/null; done
	for c in /sys/fs/cgroup/haul /sys/fs/cgroup/unified/haul /sys/fs/cgroup/freezer/haul; do
		rmdir "$c/rstimga$$" "$c/rstimgb$$" 2>/dev/null
	done
	rm -rf "$D"
}
trap cleanup EXIT
fail=0
N=1200

# The sha256 of every file under $1 (dot files included), one line per file.
hashes() {
	(cd "$1" && find . -type f | sort | xargs -r sha256sum)
}

# Start rst_counter writing to $D/$1.out; $pid is its PID.
start_counter() {
	mkdir -p "$D/$1.d"
	"$PROGS/rst_exec" /dev/null "$D/$1.out" "$D/$1.err" "$PROGS/rst_counter" "$D/$1.d" $N 8 1000 memonly &
	pid=$!
	pids="$pids $pid"
	wait_line "$D/$1.out" '^tick' || exit 1
}

mkdir -p "$D/want.d"
"$PROGS/rst_exec" /dev/null "$D/want.out" "$D/want.err" "$PROGS/rst_counter" "$D/want.d" $N 8 0 memonly
want=$(grep '^final' "$D/want.out")
[ -n "$want" ] || { echo "FAIL: undisturbed run printed no final line"; exit 1; }

# ---- 1. damaged images are refused by name and left as they were -------------------------
start_counter dmg
if ! "$HAUL" checkpoint "$pid" --images "$D/pristine" >"$D/dmg.log" 2>&1; then
	echo "FAIL: checkpoint: $(cat "$D/dmg.log")"
	exit 1
fi
wait "$pid" 2>/dev/null
id=$(ls "$D/pristine")
img="$id/$pid"

# damage NAME PATTERN CMD...: copy the image, run CMD in it, restore must fail matching PATTERN.
damage() {
	name=$1
	pattern=$2
	shift 2
	rm -rf "$D/c"
	cp -a "$D/pristine" "$D/c"
	(cd "$D/c/$img" && "$@") || { echo "FAIL: $name: cannot damage the image"; fail=1; return; }
	before=$(hashes "$D/c")
	"$HAUL" restore --pidns always --images "$D/c" >"$D/c.log" 2>&1
	rc=$?
	after=$(hashes "$D/c")
	if [ "$rc" -eq 0 ]; then
		echo "FAIL: $name: restore exited 0"
		fail=1
	elif ! grep -q "$pattern" "$D/c.log"; then
		echo "FAIL: $name: no '$pattern' in: $(cat "$D/c.log")"
		fail=1
	elif [ "$before" != "$after" ]; then
		echo "FAIL: $name: the restore changed the image"
		fail=1
	else
		echo "ok $name: exit $rc, $(grep -o "$pattern" "$D/c.log" | head -1)"
	fi
}

flip() { # flip FILE OFFSET: invert one byte
	b=$(od -An -tu1 -j "$2" -N1 "$1" | tr -d ' ')
	printf "$(printf '\\%03o' $((255 - b)))" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}
truncate_half() { truncate -s $(($(stat -c %s pages.img) / 2)) pages.img; }
flip_page() { flip pages.img $((4096 * 3 + 100)); }
flip_index() { flip index.img $(($(stat -c %s index.img) - 3)); }
# The kernel release is written only inside the process state blob.
flip_state() { flip index.img "$(grep -boa "$(uname -r)" index.img | head -1 | cut -d: -f1)"; }
old_version() { printf '\001' | dd of=index.img bs=1 seek=8 conv=notrunc status=none; }

damage "truncated pages.img" "pages.img is truncated" truncate_half
damage "flipped byte in a page" "slot 3 of [^ ]*pages.img fails its checksum" flip_page
damage "flipped byte in the index" "index.img fails its checksum" flip_index
damage "flipped byte in the state" "index.img fails its checksum" flip_state
damage "deleted pages.img" "pages.img: No such file" rm pages.img
damage "deleted index.img" "index.img cannot be opened: No such file" rm index.img
damage "other format version" "index.img has format version 1; this haul reads version 2" old_version

# ---- 2. haul killed at each step of a checkpoint that replaces an image ------------------
for point in staged committed switched; do
	k="$D/kill-$point"
	start_counter "k$point"
	if ! "$HAUL" checkpoint "$pid" --images "$k" --leave-running >"$k.log" 2>&1; then
		echo "FAIL: kill at $point: first checkpoint: $(cat "$k.log")"
		fail=1
		continue
	fi
	id=$(ls "$k")
	old=$(hashes "$k/$id")
	HAUL_FAULT=ckpt-kill:$point "$HAUL" checkpoint "$pid" --images "$k" --leave-running >"$k.log2" 2>&1
	rc=$?
	left=$(ls -A "$k" | grep -c '^\.haul-tmp-')
	now=$(hashes "$k/$id")
	if [ "$rc" -ne 137 ] || [ "$left" -ne 1 ]; then
		echo "FAIL: kill at $point: exit $rc (want 137), $left tmp directories left (want 1)"
		fail=1
	elif [ "$point" != switched ] && [ "$old" != "$now" ]; then
		echo "FAIL: kill at $point: the committed image changed before the switch"
		fail=1
	elif [ "$point" = switched ] && [ "$old" = "$now" ]; then
		echo "FAIL: kill at $point: the new image is not in place after the switch"
		fail=1
	fi
	kill -9 "$pid" 2>/dev/null # it may be dead: see the report on haul killed while it holds the process
	wait "$pid" 2>/dev/null
	"$HAUL" restore --images "$k" >"$k.rlog" 2>&1
	rc=$?
	got=$(grep '^final' "$D/k$point.out")
	if [ "$rc" -ne 0 ] || [ "$got" != "$want" ]; then
		echo "FAIL: kill at $point: restore exit $rc, '$got' (want '$want'): $(cat "$k.rlog")"
		fail=1
		continue
	fi
	# The next checkpoint into the directory removes what the killed one left.
	start_counter "k2$point"
	"$HAUL" checkpoint "$pid" --images "$k" >"$k.log3" 2>&1 || echo "FAIL: kill at $point: next checkpoint: $(cat "$k.log3")"
	wait "$pid" 2>/dev/null
	left=$(ls -A "$k" | grep -c '^\.haul-tmp-')
	if [ "$left" -ne 0 ] || ! grep -q "left by a failed checkpoint" "$k.log3"; then
		echo "FAIL: kill at $point: $left tmp directories after the next checkpoint: $(cat "$k.log3")"
		fail=1
	else
		echo "ok killed at $point: an image restored to $got; the leftovers were removed"
	fi
done

# ---- 3. ENOSPC: the old image stays, the new one leaves nothing --------------------------
mkdir -p "$D/small"
if ! mount -t tmpfs -o size=64m tmpfs "$D/small" 2>"$D/mount.log"; then
	echo "skip ENOSPC: cannot mount a tmpfs: $(cat "$D/mount.log")"
else
	start_counter nospc
	if ! "$HAUL" checkpoint "$pid" --images "$D/small/img" --leave-running >"$D/ns.log" 2>&1; then
		echo "FAIL: ENOSPC: first checkpoint: $(cat "$D/ns.log")"
		fail=1
	else
		used=$(du -sk "$D/small" | cut -f1)
		# Room for the image and half another: the second one cannot fit.
		mount -o remount,size=$((used * 3 / 2))k "$D/small"
		id=$(ls "$D/small/img")
		old=$(hashes "$D/small/img/$id")
		"$HAUL" checkpoint "$pid" --images "$D/small/img" --leave-running >"$D/ns.log2" 2>&1
		rc=$?
		left=$(ls -A "$D/small/img" | grep -c '^\.haul-tmp-')
		now=$(hashes "$D/small/img/$id")
		kill -9 "$pid"
		wait "$pid" 2>/dev/null
		"$HAUL" restore --images "$D/small/img" >"$D/ns.rlog" 2>&1
		rrc=$?
		got=$(grep '^final' "$D/nospc.out")
		if [ "$rc" -ne 1 ] || ! grep -qi "no space\|disk full" "$D/ns.log2"; then
			echo "FAIL: ENOSPC: second checkpoint exit $rc: $(cat "$D/ns.log2")"
			fail=1
		elif [ "$left" -ne 0 ] || [ "$old" != "$now" ]; then
			echo "FAIL: ENOSPC: $left tmp directories left, image changed: $([ "$old" = "$now" ] && echo no || echo yes)"
			fail=1
		elif [ "$rrc" -ne 0 ] || [ "$got" != "$want" ]; then
			echo "FAIL: ENOSPC: restore exit $rrc, '$got' (want '$want'): $(cat "$D/ns.rlog")"
			fail=1
		else
			echo "ok ENOSPC: refused ($(grep -oi "no space[^;]*\|disk full" "$D/ns.log2" | head -1)), old image restored to $got"
		fi
	fi
	umount "$D/small"
fi

# ---- 4. two PID 1 workloads in one directory -----------------------------------------
# The registry of haul run in our directory; cgroups carry our PID in their names.
export HAUL_RUN_DIR="$D/run"
hp=""
for w in a b; do
	mkdir -p "$D/run$w.d"
	out=$("$HAUL" run --name "rstimg$w$$" --log "$D/run$w.out" -- "$PROGS/rst_counter" "$D/run$w.d" $N 8 1000 memonly)
	p=$(echo "$out" | awk '{print $2}')
	pids="$pids $p"
	hp="$hp $p"
done
wait_line "$D/runa.out" '^tick' && wait_line "$D/runb.out" '^tick' || exit 1
for p in $hp; do
	"$HAUL" checkpoint "$p" --images "$D/two" >>"$D/two.log" 2>&1 || { echo "FAIL: checkpoint of pid $p: $(cat "$D/two.log")"; fail=1; }
done
n=$(ls "$D/two" | grep -c '^1-')
"$HAUL" restore --images "$D/two" >"$D/two.rlog" 2>&1
rc=$?
if [ "$n" -ne 2 ] || [ "$rc" -eq 0 ] || [ "$(grep -c -- '--id 1-' "$D/two.rlog")" -ne 2 ]; then
	echo "FAIL: two PID 1 images: $n images, restore without --id exit $rc: $(cat "$D/two.rlog")"
	fail=1
else
	for id in $(ls "$D/two"); do
		"$HAUL" restore --images "$D/two" --id "$id" >"$D/two.$id.log" 2>&1 || { echo "FAIL: restore --id $id: $(cat "$D/two.$id.log")"; fail=1; }
	done
	ga=$(grep '^final' "$D/runa.out")
	gb=$(grep '^final' "$D/runb.out")
	if [ "$ga" != "$want" ] || [ "$gb" != "$want" ]; then
		echo "FAIL: two PID 1 workloads ended with '$ga' and '$gb', want '$want'"
		fail=1
	else
		echo "ok two PID 1 workloads: both images kept, listed, restored by --id to $want"
	fi
fi
exit $fail
