#!/bin/sh
# ctr_runc.sh - runc checkpoints and restores a container through haul's
# criu entry point (a `criu` symlink to haul first on PATH), with no change
# to runc.
#
# The container: `runc spec` with what this machine needs and nothing
# else: no rlimits (root has no CAP_SYS_RESOURCE here: runc fails setting
# them), terminal false (runc -d needs a console socket otherwise), a
# writable rootfs (the program writes to it), hostname ctr<PID>; default
# namespaces (pid, net with lo only, ipc, uts, mount), masked and
# read-only paths, capabilities and no_new_privs as runc sets them.  The
# rootfs is busybox-static plus tests/progs/ctr_counter.c built static; it
# writes "TOKEN COUNTER" to /dev/shm/count (tmpfs) and /count (rootfs),
# TOKEN drawn at start and kept only in memory.
#
# Checks: runc checkpoint ran haul (its log line in dump.log), wrote
# stats-dump in CRIU's framing, and the container is gone; runc restore -d
# brings it back under the same ID, running, with the same token and a
# counter that goes on (memory), the tmpfs file and the hostname;
# checkpoint --leave-running leaves it running; an option haul does not
# implement (--ext-unix-sk) and a mount it does not carry (ramfs) are
# refused by name and the container runs on; runc restore in the
# foreground waits for the container and returns its exit; a container of
# several processes (a shell, two counters, a pipeline, a zombie) comes back
# with the same pids, ppids, groups and sessions, each counter going on, and
# a `runc exec` process in it is refused by name.  Needs root and Debian's
# runc, busybox-static, jq (installed here when missing; 77 when they
# cannot be).  Names carry this script's PID: runc state under its own
# --root, container IDs ctr<PID>a/b/c/d, cgroups /ctr<PID>a/b/c/d.
set -u
haul=${HAUL_BIN:-$PWD/build/haul}
src=${HAUL_SRC:-$PWD}
[ "$(id -u)" = 0 ] || { echo "needs root (runc)"; exit 77; }
[ -x "$haul" ] || { echo "haul not built ($haul)"; exit 77; }
. "$(dirname "$0")/ctr_need.shlib"
ctr_install || exit 77

tmp=$(mktemp -d /tmp/ctr_runc.XXXXXX)
id=ctr$$a
id2=ctr$$b
id3=ctr$$c
R="runc --root $tmp/state"
cleanup() {
	for c in $id $id2 $id3 ctr$$d; do $R kill $c KILL 2>/dev/null; done
	sleep 0.2
	for c in $id $id2 $id3 ctr$$d; do $R delete -f $c >/dev/null 2>&1; done
	rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; for f in "$tmp"/img*/*.log; do [ -f "$f" ] && { echo "== $f"; tail -20 "$f"; }; done; exit 1; }

# the criu entry point: a symlink named criu to haul, first on PATH
mkdir -p "$tmp/bin" && ln -s "$haul" "$tmp/bin/criu"
CPATH="$tmp/bin:$PATH"
PATH="$CPATH" criu --version | grep -q '^Version: 3\.' || fail "criu --version through haul"
PATH="$CPATH" criu check --feature lazy_pages | grep -q "is NOT supported" ||
	fail "criu check --feature lazy_pages does not say it is not supported"
PATH="$CPATH" criu dump -t 1 >/dev/null 2>"$tmp/dump.err" && fail "criu dump was not refused"
grep -q "'criu dump' is not supported" "$tmp/dump.err" || fail "criu dump refused without its name"

mk_bundle() { # dir hostname extra-jq
	mkdir -p "$1/rootfs/bin" "$1/rootfs/dev" "$1/rootfs/proc" "$1/rootfs/sys" "$1/rootfs/tmp"
	cp /bin/busybox "$1/rootfs/bin/"
	cp "$tmp/counter" "$1/rootfs/counter"
	(cd "$1" && runc spec) || return 1
	jq "del(.process.rlimits) | .process.terminal=false | .root.readonly=false |
	    .process.args=[\"/counter\",\"/dev/shm/count\",\"/count\"] | .hostname=\"$2\" $3" \
		"$1/config.json" >"$1/c.json" && mv "$1/c.json" "$1/config.json"
}
gcc -static -O2 -o "$tmp/counter" "$src/tests/progs/ctr_counter.c" 2>"$tmp/gcc.err" ||
	{ cat "$tmp/gcc.err"; echo "cannot build a static test program (libc6-dev)"; exit 77; }
mk_bundle "$tmp/b" "ctr$$" "" || fail "runc spec"
B=$tmp/b

waitcount() { # file min-counter tenths
	i=0
	while [ $i -lt "$3" ]; do
		set -- "$1" "$2" "$3" $(cat "$1" 2>/dev/null)
		[ $# -ge 5 ] && [ "$5" -gt "$2" ] && { echo "$4 $5"; return 0; }
		sleep 0.1; i=$((i + 1))
	done
	return 1
}

# the container's stdio is /dev/null: a file of the host would be outside
# its mount namespace, and refused at checkpoint (haul reopens by path)
(cd "$B" && $R run -d $id </dev/null >/dev/null 2>&1) ||
	{ echo "runc run does not work here"; exit 77; }
first=$(waitcount "$B/rootfs/count" 5 100) || fail "the container never counted"
token=${first% *}
caps() { grep -E '^(Cap(Inh|Prm|Eff|Bnd|Amb)|NoNewPrivs):' /proc/$($R state $id | jq .pid)/status; }
caps_before=$(caps)

# 1. checkpoint: through haul, the container is gone, stats-dump written
(cd "$B" && PATH="$CPATH" $R checkpoint --image-path "$tmp/img" $id) >"$tmp/ck.out" 2>&1 ||
	{ cat "$tmp/ck.out"; fail "runc checkpoint"; }
grep -q "^haul-criu: criu: haul .* serves the criu DUMP request" "$tmp/img/dump.log" ||
	fail "runc checkpoint did not run haul (no haul line in dump.log)"
$R list | grep -q "^$id " && fail "the container is still listed after checkpoint"
[ "$(od -An -tx4 -N8 "$tmp/img/stats-dump" | tr -s ' ')" = " 55105940 57093306" ] ||
	fail "stats-dump lacks CRIU's service and stats magics"
at_ckpt=$(cut -d' ' -f2 "$B/rootfs/count")
echo "checkpointed $id at counter $at_ckpt (token $token) through haul"

# 2. restore: same ID, running, memory (token, counter), tmpfs file, hostname
(cd "$B" && PATH="$CPATH" $R restore -d --image-path "$tmp/img" $id) \
	</dev/null >"$tmp/rs.out" 2>&1 || { cat "$tmp/rs.out"; fail "runc restore"; }
$R list | grep -q "^$id .* running " || fail "runc list does not show $id running: $($R list)"
now=$(waitcount "$B/rootfs/count" "$at_ckpt" 100) || fail "the counter did not go on after restore"
[ "${now% *}" = "$token" ] || fail "token ${now% *} after restore, was $token: it restarted"
shm=$($R exec $id /bin/busybox cat /dev/shm/count) || fail "runc exec in the restored container"
[ "${shm% *}" = "$token" ] || fail "the tmpfs file says '$shm', token $token"
hn=$($R exec $id /bin/busybox hostname)
[ "$hn" = "ctr$$" ] || fail "hostname '$hn' after restore, was ctr$$"
[ "$(caps)" = "$caps_before" ] || fail "capabilities or no_new_privs differ after restore: $(caps)"
ps_lines=$($R ps $id | wc -l)
[ "$ps_lines" -eq 2 ] || fail "runc ps shows $((ps_lines - 1)) processes, expected the counter only"
echo "restored $id: counter ${now#* } > $at_ckpt, same token, /dev/shm/count, hostname, capabilities kept"

# 3. checkpoint --leave-running: the container runs on
(cd "$B" && PATH="$CPATH" $R checkpoint --leave-running --image-path "$tmp/img2" $id) \
	>"$tmp/ck2.out" 2>&1 || { cat "$tmp/ck2.out"; fail "runc checkpoint --leave-running"; }
$R list | grep -q "^$id .* running " || fail "$id not running after --leave-running"
c=$(cut -d' ' -f2 "$B/rootfs/count")
waitcount "$B/rootfs/count" "$c" 50 >/dev/null || fail "the counter stopped after --leave-running"
echo "checkpoint --leave-running: $id runs on"

# 4. refusals name what they refuse, and the container runs on
(cd "$B" && PATH="$CPATH" $R checkpoint --ext-unix-sk --image-path "$tmp/img3" $id) \
	>"$tmp/ck3.out" 2>&1 && fail "checkpoint --ext-unix-sk was not refused"
grep -q "option 'ext_unix_sk' is not supported" "$tmp/img3/dump.log" ||
	fail "the refusal does not name ext_unix_sk"
$R list | grep -q "^$id .* running " || fail "$id not running after a refused checkpoint"
mk_bundle "$tmp/b2" "ctr$$" '| .mounts += [{"destination":"/mnt/r","type":"ramfs","source":"ramfs"}]' ||
	fail "runc spec (ramfs)"
(cd "$tmp/b2" && $R run -d $id2 </dev/null >/dev/null 2>&1) ||
	fail "runc run with a ramfs mount"
waitcount "$tmp/b2/rootfs/count" 1 100 >/dev/null || fail "$id2 never counted"
(cd "$tmp/b2" && PATH="$CPATH" $R checkpoint --image-path "$tmp/img4" $id2) \
	>"$tmp/ck4.out" 2>&1 && fail "a container with a ramfs mount was checkpointed"
grep -q "at /mnt/r (ramfs" "$tmp/img4/dump.log" || fail "the refusal does not name /mnt/r (ramfs)"
$R list | grep -q "^$id2 .* running " || fail "$id2 not running after a refused checkpoint"
echo "refused by name: ext_unix_sk, the ramfs at /mnt/r; both containers run on"

# 5. runc restore in the foreground waits for the container as runc run does:
# the restored process is runc's child (rst_sibling), its exit is runc's
(cd "$B" && PATH="$CPATH" $R checkpoint --image-path "$tmp/img5" $id) >"$tmp/ck5.out" 2>&1 ||
	{ cat "$tmp/ck5.out"; fail "runc checkpoint (before a foreground restore)"; }
(cd "$B" && PATH="$CPATH" $R restore --image-path "$tmp/img5" $id </dev/null >/dev/null 2>&1
	echo $? >"$tmp/fg.rc") &
i=0
until $R list | grep -q "^$id .* running "; do
	i=$((i + 1)); [ $i -lt 100 ] || fail "no running $id under a foreground runc restore"; sleep 0.1
done
[ -e "$tmp/fg.rc" ] && fail "the foreground runc restore returned at once ($(cat "$tmp/fg.rc"))"
$R kill $id KILL
wait
[ "$(cat "$tmp/fg.rc")" = 137 ] || fail "foreground runc restore exited $(cat "$tmp/fg.rc"), expected 137 (its container killed)"
echo "runc restore in the foreground waited for $id and returned its exit (137)"

# 6. a container with its own cgroup namespace: its cgroup mounts are new
# instances rooted at the namespace's root, which is its cgroup again
mk_bundle "$tmp/b3" "ctr$$" '| .linux.namespaces += [{"type":"cgroup"}]' || fail "runc spec (cgroupns)"
(cd "$tmp/b3" && $R run -d $id3 </dev/null >/dev/null 2>&1) || fail "runc run with a cgroup namespace"
waitcount "$tmp/b3/rootfs/count" 1 100 >/dev/null || fail "$id3 never counted"
(cd "$tmp/b3" && PATH="$CPATH" $R checkpoint --image-path "$tmp/img6" $id3) >"$tmp/ck6.out" 2>&1 ||
	{ cat "$tmp/ck6.out"; fail "runc checkpoint of a container with a cgroup namespace"; }
(cd "$tmp/b3" && PATH="$CPATH" $R restore -d --image-path "$tmp/img6" $id3) </dev/null \
	>"$tmp/rs6.out" 2>&1 || { cat "$tmp/rs6.out"; fail "runc restore (cgroup namespace)"; }
inside=$($R exec $id3 /bin/busybox grep '^[0-9]*:pids:' /proc/1/cgroup)
outside=$(grep '^[0-9]*:pids:' /proc/$($R state $id3 | jq .pid)/cgroup)
[ "${inside##*:}" = / ] && [ "${outside##*:}" = "/$id3" ] ||
	fail "cgroup namespace after restore: inside '$inside', outside '$outside'"
$R exec $id3 /bin/busybox test -e /sys/fs/cgroup/pids/cgroup.procs ||
	fail "no cgroup hierarchy mounted in the restored cgroup namespace"
echo "a container with a cgroup namespace comes back in its cgroup, seeing it as /"

# 7. a container of several processes (the process-tree work): pid 1 is a
# shell with two counters, a pipeline (sleep | cat) and a zombie (a child
# of a subshell that exec'd sleep and never reaps).  Checkpoint and restore
# bring back every process with the same pids, ppids, groups and sessions
# as the container sees them, and each counter goes on with its own token.
# A `runc exec` process (its parent outside the container) is refused by
# name, the container running on.
id4=ctr$$d
ids_in() { # the container's own processes as it sees them: pid ppid pgrp sid name [zombie]
	# (leaving out this exec's shell, its children and other exec'd processes: ppid 0)
	$R exec $id4 /bin/busybox sh -c 'for f in /proc/[0-9]*/stat; do
		read l <$f 2>/dev/null || continue; set -- $l
		[ $1 = $$ ] || [ $4 = $$ ] && continue
		[ $4 = 0 ] && [ $1 != 1 ] && continue
		n=$2; [ $3 = Z ] && n="$2 zombie"
		echo "$1 $4 $5 $6 $n"
	done' | sort -n
}
tree_case() {
	mk_bundle "$tmp/b4" "ctr$$" '| .process.args=["/bin/busybox","sh","-c",
		"/counter /dev/shm/c1 /c1 & /counter /dev/shm/c2 /c2 & /bin/busybox sleep 100000 | /bin/busybox cat & (/bin/busybox true & exec /bin/busybox sleep 100001) & wait"]' ||
		fail "runc spec (tree)"
	(cd "$tmp/b4" && $R run -d $id4 </dev/null >/dev/null 2>&1) || fail "runc run of a process tree"
	t1=$(waitcount "$tmp/b4/rootfs/c1" 3 100) || fail "the first counter of $id4 never counted"
	t2=$(waitcount "$tmp/b4/rootfs/c2" 3 100) || fail "the second counter of $id4 never counted"
	i=0
	until [ "$(ids_in | wc -l)" -ge 7 ]; do
		i=$((i + 1)); [ $i -lt 50 ] || fail "$id4 has not its 7 processes: $(ids_in)"; sleep 0.1
	done
	before=$(ids_in)
	echo "$before" | grep -q ' zombie$' || fail "no zombie in $id4: $before"

	# a runc exec process is no descendant of pid 1: refused, the container runs on
	$R exec -d $id4 /bin/busybox sleep 100002 || fail "runc exec -d in $id4"
	(cd "$tmp/b4" && PATH="$CPATH" $R checkpoint --image-path "$tmp/img7" $id4) \
		>"$tmp/ck7.out" 2>&1 && fail "a container with a runc exec process was checkpointed"
	grep -q "does not descend from its pid 1 (a \`runc exec\` process)" "$tmp/img7/dump.log" ||
		fail "the refusal does not name the runc exec process"
	$R list | grep -q "^$id4 .* running " || fail "$id4 not running after a refused checkpoint"
	# the refusal names its host pid: end it from here
	ex=$(sed -n 's/.*: pid \([0-9]*\) is in the PID namespace of the container.*/\1/p' \
		"$tmp/img7/dump.log")
	[ -n "$ex" ] && kill -KILL "$ex" || fail "cannot end the runc exec process ($ex)"
	i=0
	while [ -d "/proc/$ex" ] && ! grep -q '^State:.*Z' "/proc/$ex/status" 2>/dev/null; do
		i=$((i + 1)); [ $i -lt 50 ] || fail "the runc exec process $ex does not end"; sleep 0.1
	done
	# a pre-dump follows one process: refused for a tree, the container runs on
	(cd "$tmp/b4" && PATH="$CPATH" $R checkpoint --pre-dump --image-path "$tmp/img9" $id4) \
		>"$tmp/ck9.out" 2>&1 && fail "a pre-dump of a process tree was not refused"
	grep -q "pre-dump of a container of several processes is not carried" "$tmp/img9/dump.log" ||
		fail "the pre-dump refusal does not say why"
	$R list | grep -q "^$id4 .* running " || fail "$id4 not running after a refused pre-dump"

	# checkpoint --leave-running: the whole tree runs on, unchanged
	(cd "$tmp/b4" && PATH="$CPATH" $R checkpoint --leave-running --image-path "$tmp/img10" $id4) \
		>"$tmp/ck10.out" 2>&1 || { cat "$tmp/ck10.out"; fail "runc checkpoint --leave-running of a tree"; }
	$R list | grep -q "^$id4 .* running " || fail "$id4 not running after --leave-running"
	c=$(cut -d' ' -f2 "$tmp/b4/rootfs/c2")
	waitcount "$tmp/b4/rootfs/c2" "$c" 50 >/dev/null || fail "a counter stopped after --leave-running"
	[ "$(ids_in)" = "$before" ] || fail "the tree changed after --leave-running: $(ids_in)"

	(cd "$tmp/b4" && PATH="$CPATH" $R checkpoint --image-path "$tmp/img8" $id4) \
		>"$tmp/ck8.out" 2>&1 || { cat "$tmp/ck8.out"; fail "runc checkpoint of a process tree"; }
	$R list | grep -q "^$id4 " && fail "$id4 is still listed after checkpoint"
	grep -q "checkpointed pid 1 with 6 descendants (1 zombies)" "$tmp/img8/dump.log" ||
		fail "the checkpoint did not dump the tree of 7 processes"
	a1=$(cut -d' ' -f2 "$tmp/b4/rootfs/c1")
	a2=$(cut -d' ' -f2 "$tmp/b4/rootfs/c2")
	(cd "$tmp/b4" && PATH="$CPATH" $R restore -d --image-path "$tmp/img8" $id4) </dev/null \
		>"$tmp/rs8.out" 2>&1 || { cat "$tmp/rs8.out"; fail "runc restore of a process tree"; }
	$R list | grep -q "^$id4 .* running " || fail "$id4 not running after restore"
	n1=$(waitcount "$tmp/b4/rootfs/c1" "$a1" 100) || fail "the first counter did not go on"
	n2=$(waitcount "$tmp/b4/rootfs/c2" "$a2" 100) || fail "the second counter did not go on"
	[ "${n1% *}" = "${t1% *}" ] && [ "${n2% *}" = "${t2% *}" ] ||
		fail "a counter restarted: tokens ${n1% *} ${n2% *}, were ${t1% *} ${t2% *}"
	after=$(ids_in)
	[ "$after" = "$before" ] ||
		fail "the processes differ after restore (pid ppid pgrp sid name):
$before
-- after:
$after"
	echo "restored the tree of $id4: $(echo "$after" | wc -l) processes with their pids, ppids, groups, sessions and the zombie; both counters go on"
	$R kill $id4 KILL
	sleep 0.2
	$R delete -f $id4 >/dev/null 2>&1
}
tree_case
exit 0
