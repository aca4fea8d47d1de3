#!/bin/bash
# ctr_tree.sh - `haul migrate --container ID` of a runc container whose pid 1
# has children (issue 14, multi-process containers): the tree's pre-copy
# (one session and one tracker per process, mig_tree.c) into the target's
# page-store image, and its restore by the target's runc through haul's criu
# entry point, inside the container's new namespaces.
#
# Hosts: srv_hosts.shlib's source and target.  The container (runc 1.1,
# Debian's): pid 1 is busybox sh running two counters (tests/progs/
# ctr_counter.c built static: each keeps a token only in memory and writes
# "TOKEN COUNTER" to a tmpfs file and a rootfs file every 20 ms), a
# pipeline (sleep | cat) and a zombie (a subshell forks `true` and execs
# sleep, which never reaps it).  What this machine needs, as in
# ctr_migrate.sh: no rlimits in config.json (root lacks CAP_SYS_RESOURCE),
# terminal false, a writable rootfs, runc (crun refuses the hybrid
# cgroups), the host's network namespace (no "network" entry), runc on each
# "host" from a cgroup of its own and the target's hook renaming the
# cgroupsPath (one kernel stands for two machines).
# Checks: haul migrate exits 0; the target's runc lists the container
# running and the source's nothing; inside it every process has the same
# pid, ppid, process group and session as before, the zombie included;
# each counter goes on with its own token (memory moved, no restart) in the
# target's rootfs.  Before it, a switch the target refuses
# (HAUL_FAULT=corrupt-state) leaves the whole tree running here, unchanged,
# and nothing on the target.  Names carry this script's PID (srv_hosts.shlib, the
# container ID ctr<PID>t, the cgroups hctr-src/dst-<PID>).
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
set -u
. "$(dirname "$0")/srv_hosts.shlib"
. "$(dirname "$0")/ctr_hosts.shlib"
SRC_TOP=${HAUL_SRC:-$SRV_TOP}
srv_require_base
ctr_require

ID=ctr$$t
CTR_IDS="$ID"
ctr_hosts_up

gcc -static -O2 -o "$SRV_DIR/counter" "$SRC_TOP/tests/progs/ctr_counter.c" 2>"$SRV_DIR/gcc.err" ||
	srv_skip "cannot build a static test program (libc6-dev): $(tail -1 "$SRV_DIR/gcc.err")"
mkdir -p "$SRV_DIR/b/rootfs/bin" "$SRV_DIR/b/rootfs/dev" "$SRV_DIR/b/rootfs/proc" \
	"$SRV_DIR/b/rootfs/sys" "$SRV_DIR/b/rootfs/tmp"
cp /bin/busybox "$SRV_DIR/b/rootfs/bin/"
cp "$SRV_DIR/counter" "$SRV_DIR/b/rootfs/counter"
(cd "$SRV_DIR/b" && runc spec) || srv_fail "runc spec"
jq "del(.process.rlimits) | .process.terminal=false | .root.readonly=false |
    .process.args=[\"/bin/busybox\",\"sh\",\"-c\",
	\"/counter /dev/shm/c1 /c1 & /counter /dev/shm/c2 /c2 & /bin/busybox sleep 100000 | /bin/busybox cat & (/bin/busybox true & exec /bin/busybox sleep 100001) & wait\"] |
    .hostname=\"$ID\" | .linux.cgroupsPath=\"$ID\" |
    .linux.namespaces |= map(select(.type != \"network\"))" \
	"$SRV_DIR/b/config.json" >"$SRV_DIR/b/c.json" && mv "$SRV_DIR/b/c.json" "$SRV_DIR/b/config.json"
B=$SRV_DIR/b/rootfs

# waitcount FILE MIN TENTHS: "TOKEN COUNTER" once COUNTER > MIN
waitcount() {
	local i=0 l
	while [ $i -lt "$3" ]; do
		l=$(cat "$1" 2>/dev/null)
		set -- "$1" "$2" "$3" $l
		[ $# -ge 5 ] && [ "$5" -gt "$2" ] && { echo "$4 $5"; return 0; }
		sleep 0.1; i=$((i + 1))
	done
	return 1
}
# ids_in ROOT: the container's own processes as it sees them: pid ppid pgrp sid
# name [zombie] (leaving out this exec's shell and its children, and every other
# process with ppid 0 but pid 1)
ids_in() {
	runc --root "$1" exec $ID /bin/busybox sh -c 'for f in /proc/[0-9]*/stat; do
		read l <$f 2>/dev/null || continue; set -- $l
		[ $1 = $$ ] || [ $4 = $$ ] && continue
		[ $4 = 0 ] && [ $1 != 1 ] && continue
		n=$2; [ $3 = Z ] && n="$2 zombie"
		echo "$1 $4 $5 $6 $n"
	done' | sort -n
}

(cg_enter "hctr-src-$$" && cd "$SRV_DIR/b" &&
	exec nsenter --net=/run/netns/"$SRV_NS_SRC" -- runc --root "$RS" --log "$SRV_DIR/run.log" \
		run -d $ID) </dev/null >/dev/null 2>&1 ||
	srv_skip "runc run does not work here: $(tail -2 "$SRV_DIR/run.log")"
t1=$(waitcount "$B/c1" 3 100) || srv_fail "the first counter never counted"
t2=$(waitcount "$B/c2" 3 100) || srv_fail "the second counter never counted"
i=0
until [ "$(ids_in "$RS" | wc -l)" -ge 7 ]; do
	i=$((i + 1)); [ $i -lt 50 ] || srv_fail "$ID has not its 7 processes: $(ids_in "$RS")"; sleep 0.1
done
before=$(ids_in "$RS")
echo "$before" | grep -q ' zombie$' || srv_fail "no zombie in $ID: $before"
srv_say "container $ID runs on the source: $(echo "$before" | wc -l) processes"

cat >"$SRV_DIR/hook.sh" <<EOF
[ "\$HAUL_SWITCH_PHASE" = target-prepare ] || exit 0
for b in $SRV_DIR/dst/*\$HAUL_MIGRATION_ID/bundle; do
	[ -f "\$b/config.json" ] || continue
	jq '.linux.cgroupsPath |= sub("-dst\$"; "") + "-dst"' "\$b/config.json" >"\$b/c.json" &&
		mv "\$b/c.json" "\$b/config.json"
done
EOF
: >"$SRV_DIR/ps.log"
srv_bg dst "$SRV_DIR/ps.log" bash -c 'cg_enter "$0"; exec "$@"' "hctr-dst-$$" \
	"$HAUL" pageserver --listen "$SRV_DST_IP:$SRV_PS_PORT" --key "$SRV_KEY" \
	--containers "$SRV_DIR/dst" --root "$RD" --on-switch "sh $SRV_DIR/hook.sh"
wait_line "$SRV_DIR/ps.log" "listening on" 10 ||
	srv_fail "the page server did not start: $(tail -3 "$SRV_DIR/ps.log")"

# a switch the target refuses (HAUL_FAULT=corrupt-state: a state that does not
# decode) rolls the whole tree back: it runs on here unchanged, nothing on the target
HAUL_FAULT=corrupt-state srv_in src timeout 300 "$HAUL" migrate --container $ID --root "$RS" \
	--to "$SRV_DST_IP:$SRV_PS_PORT" --key "$SRV_KEY" >"$SRV_DIR/rollback.log" 2>&1
rc=$?
[ $rc -eq 1 ] || srv_fail "the refused switch: haul migrate exited $rc, want 1: $(tail -5 "$SRV_DIR/rollback.log")"
runc --root "$RS" list | grep -q "^$ID .* running " || srv_fail "$ID is not running here after the rollback"
[ "$(ids_in "$RS")" = "$before" ] || srv_fail "the tree changed in the rollback: $(ids_in "$RS")"
c=$(cut -d' ' -f2 "$B/c1")
waitcount "$B/c1" "$c" 50 >/dev/null || srv_fail "a counter stopped after the rollback"
[ -z "$(runc --root "$RD" list -q 2>/dev/null)" ] || srv_fail "the rollback left a container on the target"
i=0
while [ -n "$(ls -A "$SRV_DIR/dst" | grep -v '^\.criu$')" ]; do
	i=$((i + 1)); [ $i -lt 100 ] || srv_fail "the rollback left files on the target: $(ls "$SRV_DIR/dst")"
	sleep 0.05
done
srv_say "a switch the target refused rolled back: the tree of $ID runs on here, nothing on the target"

srv_in src timeout 300 "$HAUL" migrate --container $ID --root "$RS" \
	--to "$SRV_DST_IP:$SRV_PS_PORT" --key "$SRV_KEY" --json "$SRV_DIR/migrate.json" \
	>"$SRV_DIR/migrate.log" 2>&1
rc=$?
if [ $rc -ne 0 ]; then
	srv_say "haul migrate --container exited $rc; its output:"
	sed 's/^/    /' "$SRV_DIR/migrate.log"
	srv_say "page server:"
	tail -20 "$SRV_DIR/ps.log" | sed 's/^/    /'
	for f in "$SRV_DIR"/dst/*/img/restore.log "$SRV_DIR"/dst/*/runc-restore.log; do
		[ -f "$f" ] && { srv_say "$f:"; tail -20 "$f" | sed 's/^/    /'; }
	done
	srv_fail "the container of several processes was not migrated"
fi
grep -q "pid [0-9]*: a tree of 7 processes (1 zombies)" "$SRV_DIR/migrate.log" ||
	srv_fail "haul migrate did not move a tree of 7 processes: $(grep tree "$SRV_DIR/migrate.log")"
grep -q "tree of 7 processes written" "$SRV_DIR/ps.log" ||
	srv_fail "the target did not write the tree's image: $(tail -5 "$SRV_DIR/ps.log")"
srv_say "haul migrate --container (a tree): downtime $(srv_json "$SRV_DIR/migrate.json" downtime_ms) ms"

runc --root "$RD" list | grep -q "^$ID .* running " ||
	srv_fail "the target's runc does not list $ID running: $(runc --root "$RD" list)"
[ -z "$(runc --root "$RS" list -q)" ] || srv_fail "the source still lists $(runc --root "$RS" list -q)"
DB=$(runc --root "$RD" state $ID | jq -r .bundle)/rootfs
a1=$(cut -d' ' -f2 "$DB/c1")
a2=$(cut -d' ' -f2 "$DB/c2")
n1=$(waitcount "$DB/c1" "$a1" 100) || srv_fail "the first counter does not go on on the target"
n2=$(waitcount "$DB/c2" "$a2" 100) || srv_fail "the second counter does not go on on the target"
[ "${n1% *}" = "${t1% *}" ] && [ "${n2% *}" = "${t2% *}" ] ||
	srv_fail "a counter restarted: tokens ${n1% *} ${n2% *}, were ${t1% *} ${t2% *}"
after=$(ids_in "$RD")
[ "$after" = "$before" ] || srv_fail "the processes differ on the target (pid ppid pgrp sid name):
$before
-- on the target:
$after"
srv_say "PASS: $ID moved with its $(echo "$after" | wc -l) processes (same pids, ppids, groups, sessions, zombie); both counters go on"
exit 0
