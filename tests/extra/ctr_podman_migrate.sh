#!/bin/bash
# ctr_podman_migrate.sh - `haul migrate --container NAME --podman CMD` moves a
# running podman container live to another host, whose podman then knows and
# manages it under the same name and ID (issue 14, item 3).
#
# Hosts: srv_hosts.shlib's source and target (network namespaces); the page
# server runs on the target with --containers and --podman.  One kernel stands
# for two machines, so each "host" has a podman of its own, a wrapper
# ($SRV_DIR/podman-src, podman-dst) with its own storage and state: --root,
# --runroot, --tmpdir and runc's --root (--runtime-flag root=...).  Why: podman
# keeps its containers in one storage per host, and restore --import of the same
# ID into the source's storage fails while the source still has it (it does
# until the target committed); runc's state directory and podman's exit files
# are named by that ID too.  The image is imported on the source and moved by
# podman save/load (same image ID on both).  The container's cgroup parent is
# /hpod-src-PID on the source; the target page server's target-prepare hook
# renames it to /hpod-dst-PID in the received config.dump and spec.dump (as
# ctr_migrate.sh renames runc's cgroupsPath): two machines' containers would
# not share a cgroup, and the source's removal would kill what the cgroup holds.
# What this machine needs besides (ctr_podman.sh says why): --runtime runc,
# explicit --ulimit nofile/nproc, --network none (or host).
# Checks: haul migrate exits 0; the target's `podman ps` lists the container
# running under the same name and ID; its counter went on with the same memory
# token; a file written into its rootfs before the migration and one written
# during pre-copy (haul parked at its "precopy" fault point) are there, a file
# and a directory of the image deleted before are gone; the source's podman no longer lists it;
# the target's podman stops and removes it; nothing is left (runc state,
# storage mounts, the session's files, cgroups).  A refusal: a container in a
# network namespace given by path (--network ns:PATH) is refused by name before
# anything is touched and runs on, nothing on the target; so is a directory of
# the image removed and made again (opaque: podman's diff cannot say it).  A
# rollback: the target's podman restores it but the restore is reported failed
# (a wrapper): the target removes it from its podman, the source's counts on.
# A container of several processes moves too.  Names carry $$.
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
set -u
. "$(dirname "$0")/srv_hosts.shlib"
. "$(dirname "$0")/ctr_hosts.shlib"
SRC_TOP=${HAUL_SRC:-$SRV_TOP}
srv_require_base
ctr_require
command -v podman >/dev/null ||
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman >/dev/null 2>&1 ||
	srv_skip "cannot install podman from the Debian mirror"

NAME=pm$$
NAME2=pm$$r
NAME3=pm$$t
IMG=localhost/haulpm$$
CG_SRC=/hpod-src-$$
CG_DST=/hpod-dst-$$
NS_REF=hpod-ns-$$

ctr_cleanup_more() {
	local h d m
	for h in src dst; do
		[ -x "$SRV_DIR/podman-$h" ] || continue
		"$SRV_DIR/podman-$h" rm -af -t 0 >/dev/null 2>&1
		"$SRV_DIR/podman-$h" rmi -af >/dev/null 2>&1
	done
	# storage mounts left by a failed run (never rm -rf through a mount)
	for m in $(awk -v d="$SRV_DIR/" 'index($2, d) == 1 { print $2 }' /proc/mounts | sort -r); do
		umount -l "$m" 2>/dev/null
	done
	for m in $(awk '$3 == "cgroup" || $3 == "cgroup2" { print $2 }' /proc/self/mounts); do
		for d in "$m$CG_SRC" "$m$CG_DST"; do
			[ -d "$d" ] || continue
			find "$d" -mindepth 1 -depth -type d -exec rmdir {} + 2>/dev/null
			rmdir "$d" 2>/dev/null
		done
	done
	ip netns del "$NS_REF" 2>/dev/null
}
ctr_hosts_up

# the target's podman fails a restore it did (exit 1 after it) while
# $SRV_DIR/failrestore exists: case 2
for h in src dst; do
	cat >"$SRV_DIR/podman-$h" <<EOF
#!/bin/sh
case " \$* " in *" restore "*) [ $h = dst ] && [ -e "$SRV_DIR/failrestore" ] && fail=1 ;; esac
podman --root "$SRV_DIR/pod-$h/storage" --runroot "$SRV_DIR/pod-$h/run" \\
	--tmpdir "$SRV_DIR/pod-$h/tmp" --runtime-flag root="$SRV_DIR/runc-$h" "\$@" || exit
[ -z "\${fail:-}" ]
EOF
	chmod +x "$SRV_DIR/podman-$h"
done
PS=$SRV_DIR/podman-src
PD=$SRV_DIR/podman-dst

R=$SRV_DIR/rootfs
mkdir -p "$R/bin" "$R/dev" "$R/proc" "$R/sys" "$R/tmp"
cp /bin/busybox "$R/bin/"
gcc -static -O2 -o "$R/counter" "$SRC_TOP/tests/progs/ctr_counter.c" 2>"$SRV_DIR/gcc.err" ||
	srv_skip "cannot build a static test program (libc6-dev): $(tail -1 "$SRV_DIR/gcc.err")"
echo "in the image" >"$R/gone.txt"
mkdir "$R/olddir" && echo "in the image" >"$R/olddir/f"
tar -C "$R" -cf "$SRV_DIR/root.tar" . && "$PS" import "$SRV_DIR/root.tar" $IMG >/dev/null 2>&1 ||
	srv_skip "podman import does not work here"
"$PS" save -o "$SRV_DIR/img.tar" $IMG >/dev/null 2>&1 && "$PD" load -i "$SRV_DIR/img.tar" >/dev/null 2>&1 ||
	srv_fail "cannot move the image to the target's storage (podman save / load)"

run_ctr() { # name network
	"$PS" run -d --name "$1" --runtime runc --network "$2" --cgroup-parent $CG_SRC \
		--ulimit nofile=1024:1024 --ulimit nproc=1024:1024 $IMG /counter /dev/shm/count /count
}
count() { # podman name
	"$1" exec "$2" /bin/busybox cat /count 2>/dev/null
}
first_count() { # name: its first "TOKEN N" on the source
	local i=0 c
	while :; do
		c=$(count "$PS" "$1") && [ -n "$c" ] && { echo "$c"; return 0; }
		i=$((i + 1)); [ $i -lt 100 ] || return 1; sleep 0.1
	done
}
counts_on() { # podman name was: the counter went past was's, same token
	local i=0 now
	while :; do
		now=$(count "$1" "$2") && [ "${now#* }" -gt "${3#* }" ] 2>/dev/null && break
		i=$((i + 1)); [ $i -lt 100 ] || { echo "no progress: '$now'"; return 1; }; sleep 0.1
	done
	[ "${now% *}" = "${3% *}" ] || { echo "token ${now% *}, was ${3% *}: it restarted"; return 1; }
	echo "$now"
}
nothing_on_target() {
	[ -z "$("$PD" ps -aq)" ] || { echo "the target's podman lists $("$PD" ps -a --format '{{.Names}}')"; return 1; }
	[ -z "$(ls -A "$SRV_DIR/dst" | grep -v '^\.criu$')" ] || { echo "files on the target: $(ls "$SRV_DIR/dst")"; return 1; }
	[ -z "$(runc --root "$SRV_DIR/runc-dst" list -q 2>/dev/null)" ] || { echo "runc state on the target"; return 1; }
}

cat >"$SRV_DIR/hook.sh" <<EOF
[ "\$HAUL_SWITCH_PHASE" = target-prepare ] || exit 0
for b in $SRV_DIR/dst/*\$HAUL_MIGRATION_ID/bundle; do
	[ -f "\$b/config.dump" ] || continue
	jq -c '.cgroupParent = "$CG_DST"' "\$b/config.dump" >"\$b/c" && mv "\$b/c" "\$b/config.dump" &&
	jq -c '.linux.cgroupsPath |= sub("^$CG_SRC/"; "$CG_DST/")' "\$b/spec.dump" >"\$b/s" &&
		mv "\$b/s" "\$b/spec.dump" || exit 1
done
EOF
: >"$SRV_DIR/ps.log"
srv_bg dst "$SRV_DIR/ps.log" "$HAUL" pageserver --listen "$SRV_DST_IP:$SRV_PS_PORT" --key "$SRV_KEY" \
	--containers "$SRV_DIR/dst" --root "$SRV_DIR/runc-dst" --podman "$PD" --on-switch "sh $SRV_DIR/hook.sh"
wait_line "$SRV_DIR/ps.log" "listening on" 10 ||
	srv_fail "the page server did not start: $(tail -3 "$SRV_DIR/ps.log")"

# 1. a refusal: a container in a network namespace given by path is refused by
# name before anything is touched; it counts on here, nothing on the target
ip netns add "$NS_REF" || srv_fail "cannot create network namespace $NS_REF"
run_ctr $NAME2 "ns:/run/netns/$NS_REF" >/dev/null 2>"$SRV_DIR/run2.err" ||
	srv_skip "podman run does not work here: $(tail -2 "$SRV_DIR/run2.err")"
c2=$(first_count $NAME2) || srv_fail "$NAME2 never counted"
srv_in src "$HAUL" migrate --container $NAME2 --podman "$PS" --root "$SRV_DIR/runc-src" --to "$SRV_DST_IP:$SRV_PS_PORT" \
	--key "$SRV_KEY" >"$SRV_DIR/refuse.log" 2>&1
rc=$?
[ $rc -eq 1 ] || srv_fail "--network ns:PATH: haul migrate exited $rc, want 1: $(cat "$SRV_DIR/refuse.log")"
grep -q "its network 'ns:/run/netns/$NS_REF'.*--network none" "$SRV_DIR/refuse.log" ||
	srv_fail "the refusal does not name the network: $(cat "$SRV_DIR/refuse.log")"
why=$(counts_on "$PS" $NAME2 "$c2") || srv_fail "$NAME2 after the refusal: $why"
why=$(nothing_on_target) || srv_fail "the refusal left something on the target: $why"
srv_say "refused by name (--network ns:PATH); $NAME2 counts on, nothing on the target"
ID2=$("$PS" inspect -f '{{.Id}}' $NAME2)
"$PS" rm -f -t 0 $NAME2 >/dev/null 2>&1

run_ctr $NAME none >/dev/null 2>"$SRV_DIR/run.err" || srv_fail "podman run: $(tail -2 "$SRV_DIR/run.err")"
ID=$("$PS" inspect -f '{{.Id}}' $NAME)
CTR_IDS=$ID # the runc ID: ctr_cleanup kills it in either runc root
first=$(first_count $NAME) || srv_fail "$NAME never counted"

# 1b. a refusal of the rootfs: a directory of the image removed and made again
# (an opaque overlay directory) is refused by name; once removed for good (a
# whiteout) the container migrates (case 3)
M=$("$PS" inspect -f '{{.GraphDriver.Data.MergedDir}}' $NAME)
rm -r "$M/olddir" && mkdir "$M/olddir" || srv_fail "cannot remake /olddir in $M"
srv_in src "$HAUL" migrate --container $NAME --podman "$PS" --root "$SRV_DIR/runc-src" --to "$SRV_DST_IP:$SRV_PS_PORT" \
	--key "$SRV_KEY" >"$SRV_DIR/opaque.log" 2>&1
rc=$?
[ $rc -eq 1 ] || srv_fail "an opaque directory: haul migrate exited $rc, want 1: $(cat "$SRV_DIR/opaque.log")"
grep -q "directory /olddir of the rootfs was removed and made again" "$SRV_DIR/opaque.log" ||
	srv_fail "the refusal does not name /olddir: $(cat "$SRV_DIR/opaque.log")"
why=$(counts_on "$PS" $NAME "$first") || srv_fail "$NAME after the refusal: $why"
why=$(nothing_on_target) || srv_fail "the refusal left something on the target: $why"
rmdir "$M/olddir" || srv_fail "cannot remove /olddir in $M"
srv_say "refused by name (an opaque directory); $NAME counts on, nothing on the target"

# 2. a rollback: the target's podman restored the container but the restore is
# reported failed: the target removes it from its podman (never two copies), the
# source thaws it and it counts on with its memory
touch "$SRV_DIR/failrestore"
srv_in src timeout 300 "$HAUL" migrate --container $NAME --podman "$PS" --root "$SRV_DIR/runc-src" \
	--to "$SRV_DST_IP:$SRV_PS_PORT" --key "$SRV_KEY" >"$SRV_DIR/rollback.log" 2>&1
rc=$?
rm -f "$SRV_DIR/failrestore"
[ $rc -eq 1 ] || srv_fail "a failed podman restore: haul migrate exited $rc, want 1: $(tail -5 "$SRV_DIR/rollback.log")"
grep -q "podman restore of container $ID failed" "$SRV_DIR/rollback.log" ||
	srv_fail "the refusal does not say podman's restore failed: $(tail -5 "$SRV_DIR/rollback.log")"
why=$(counts_on "$PS" $NAME "$first") || srv_fail "$NAME after the rollback: $why"
i=0
until why=$(nothing_on_target); do
	i=$((i + 1)); [ $i -lt 200 ] || srv_fail "the rollback left something on the target: $why"
	sleep 0.05
done
grep -q "container $ID: not committed; removed from podman here" "$SRV_DIR/ps.log" ||
	srv_fail "the target did not remove what its podman restored: $(tail -5 "$SRV_DIR/ps.log")"
srv_say "a failed podman restore on the target rolled back: $NAME counts on here, nothing there"

# 3. the migration: files changed before and during pre-copy, a directory deleted
echo "written before" >"$M/before.txt"
rm "$M/gone.txt" || srv_fail "cannot delete gone.txt in $M"
srv_say "podman container $NAME ($ID) counts on the source: $first"

: >"$SRV_DIR/migrate.log"
HAUL_FAULT=stall:precopy:1500 srv_in src timeout 300 "$HAUL" migrate --container $NAME \
	--podman "$PS" --root "$SRV_DIR/runc-src" --to "$SRV_DST_IP:$SRV_PS_PORT" --key "$SRV_KEY" --json "$SRV_DIR/migrate.json" \
	>"$SRV_DIR/migrate.log" 2>&1 &
mpid=$!
wait_line "$SRV_DIR/migrate.log" "fault: stalled at precopy" 60 ||
	{ kill $mpid; wait $mpid; srv_fail "haul migrate never reached pre-copy: $(tail -5 "$SRV_DIR/migrate.log")"; }
echo "written during pre-copy" >"$M/during.txt"
wait $mpid
mrc=$?
if [ $mrc -ne 0 ]; then
	srv_say "haul migrate --container exited $mrc; its output:"
	sed 's/^/    /' "$SRV_DIR/migrate.log"
	srv_say "page server:"
	tail -20 "$SRV_DIR/ps.log" | sed 's/^/    /'
	for f in "$SRV_DIR"/dst/*/podman-restore.log "$SRV_DIR"/pod-dst/storage/overlay-containers/*/userdata/restore.log; do
		[ -f "$f" ] && { srv_say "$f:"; tail -20 "$f" | sed 's/^/    /'; }
	done
	srv_fail "the podman container was not migrated"
fi
srv_say "haul migrate --container $NAME --podman: downtime $(srv_json "$SRV_DIR/migrate.json" downtime_ms) ms"
grep -E "container $NAME:|container $ID:" "$SRV_DIR/migrate.log" | sed 's/^/    /'
grep -E "container $ID: restored by podman" "$SRV_DIR/ps.log" | sed 's/^/    /'

"$PD" ps --format '{{.Names}} {{.ID}} {{.Status}}' | grep -q "^$NAME ${ID:0:12} Up" ||
	srv_fail "the target's podman does not list $NAME ($ID) up: $("$PD" ps -a)"
[ "$("$PD" inspect -f '{{.Id}}' $NAME)" = "$ID" ] || srv_fail "$NAME has another ID on the target"
[ -z "$("$PS" ps -aq)" ] || srv_fail "the source's podman still lists $("$PS" ps -a --format '{{.Names}}')"
# podman's cleanup of the killed container (conmon's exit) may still be running.
# The refused container's state is this test's own leftover (its podman rm above,
# podman 4.3 dropping --runtime-flag in conmon's cleanup, which ends after rm
# returns): removed here; haul must have removed the migrated one's.
runc --root "$SRV_DIR/runc-src" delete -f "$ID2" >/dev/null 2>&1
i=0
while [ -n "$(runc --root "$SRV_DIR/runc-src" list -q 2>/dev/null)" ]; do
	runc --root "$SRV_DIR/runc-src" state "$ID" >/dev/null 2>&1 ||
		runc --root "$SRV_DIR/runc-src" delete -f "$ID2" >/dev/null 2>&1
	i=$((i + 1)); [ $i -lt 100 ] || srv_fail "runc state left on the source: $(runc --root "$SRV_DIR/runc-src" list)"
	sleep 0.05
done
now=$(counts_on "$PD" $NAME "$first") || srv_fail "$NAME on the target: $now"
for f in before during; do
	got=$("$PD" exec $NAME /bin/busybox cat /$f.txt 2>&1)
	case "$got" in "written $f"*) ;; *) srv_fail "/$f.txt on the target: '$got'" ;; esac
done
for f in /gone.txt /olddir; do
	"$PD" exec $NAME /bin/busybox test -e $f && srv_fail "$f, deleted on the source, is back"
done
srv_say "on the target: $NAME ($ID) up under podman, counter $first -> $now, rootfs changes there"

# the target's podman manages it: it stops and removes it, and nothing is left.
# (podman 4.3's cleanup at the container's exit, conmon's exit command, drops
# --runtime-flag and deletes in runc's default root: runc's state of a container
# podman restored is left "stopped" in the wrapper's root, on a real host it is
# one root; haul's own podman rm deletes it with runc, the test here does too)
"$PD" rm -f -t 0 $NAME >/dev/null || srv_fail "podman rm -f on the target"
runc --root "$SRV_DIR/runc-dst" delete -f $ID >/dev/null 2>&1
i=0
until why=$(nothing_on_target); do
	i=$((i + 1)); [ $i -lt 100 ] || srv_fail "after podman rm on the target: $why"
	sleep 0.05
done
left=$(awk -v d="$SRV_DIR/" 'index($2, d) == 1 { print $2 }' /proc/mounts)
[ -z "$left" ] || srv_fail "storage mounts left: $left"
for m in $(awk '$3 == "cgroup" || $3 == "cgroup2" { print $2 }' /proc/self/mounts); do
	for d in "$m$CG_SRC/libpod-$ID" "$m$CG_DST/libpod-$ID"; do
		[ -d "$d" ] || continue
		rmdir "$d" 2>/dev/null || srv_fail "cgroup $d still holds processes"
	done
done
# 4. a container of several processes (haul migrate's tree): pid 1 is busybox sh
# with two counters; both go on with their tokens under the target's podman
"$PS" run -d --name $NAME3 --runtime runc --network none --cgroup-parent $CG_SRC \
	--ulimit nofile=1024:1024 --ulimit nproc=1024:1024 $IMG /bin/busybox sh -c \
	'/counter /dev/shm/c1 /c1 & /counter /dev/shm/c2 /c2 & wait' >/dev/null 2>"$SRV_DIR/run3.err" ||
	srv_fail "podman run of a tree: $(tail -2 "$SRV_DIR/run3.err")"
ID3=$("$PS" inspect -f '{{.Id}}' $NAME3)
CTR_IDS="$ID $ID3"
i=0
until t1=$("$PS" exec $NAME3 /bin/busybox cat /c1 2>/dev/null) && t2=$("$PS" exec $NAME3 /bin/busybox cat /c2 2>/dev/null) &&
	[ -n "$t1" ] && [ -n "$t2" ]; do
	i=$((i + 1)); [ $i -lt 100 ] || srv_fail "$NAME3 never counted"; sleep 0.1
done
srv_in src timeout 300 "$HAUL" migrate --container $NAME3 --podman "$PS" --root "$SRV_DIR/runc-src" \
	--to "$SRV_DST_IP:$SRV_PS_PORT" --key "$SRV_KEY" >"$SRV_DIR/tree.log" 2>&1 ||
	srv_fail "the tree was not migrated: $(tail -8 "$SRV_DIR/tree.log"; tail -5 "$SRV_DIR/ps.log")"
"$PD" ps --format '{{.Names}} {{.Status}}' | grep -q "^$NAME3 Up" || srv_fail "$NAME3 is not up on the target"
for f in c1 c2; do
	was=$([ $f = c1 ] && echo "$t1" || echo "$t2")
	i=0
	while :; do
		now=$("$PD" exec $NAME3 /bin/busybox cat /$f 2>/dev/null) && [ "${now#* }" -gt "${was#* }" ] 2>/dev/null && break
		i=$((i + 1)); [ $i -lt 100 ] || srv_fail "$NAME3: /$f did not go on ($now)"; sleep 0.1
	done
	[ "${now% *}" = "${was% *}" ] || srv_fail "$NAME3: /$f has token ${now% *}, was ${was% *}: it restarted"
done
[ -z "$("$PS" ps -aq)" ] || srv_fail "the source's podman still lists $("$PS" ps -a --format '{{.Names}}')"
srv_say "a tree: $NAME3's pid 1 $(grep -o 'and its [0-9]* descendants' "$SRV_DIR/tree.log") moved, both counters go on"
"$PD" rm -f -t 0 $NAME3 >/dev/null || srv_fail "podman rm -f $NAME3 on the target"
runc --root "$SRV_DIR/runc-dst" delete -f $ID3 >/dev/null 2>&1
srv_say "PASS: podman container moved live, managed by the target's podman"
exit 0
