#!/bin/busybox sh
# rst_aa_init.sh - /init of the guest of tests/extra/rst_apparmor_qemu.sh
# (busybox sh): load profile haultest, confine /rst_aa_prog to it, checkpoint
# and restore it with haul (alone, then with an unconfined child: a tree),
# check each thread's label and that it counts on;
# then unload the profile and check the restore is refused by name with
# nothing left running.  Then `haul migrate` to a page server on this host
# (127.0.0.1), of the process, of a tree with a confined parent and of one
# with only a confined child: moved under its profiles; and refused at the
# precheck, never frozen, by a target whose view lacks the profile.  One host cannot both
# run a process under haultest and lack haultest: unloading a profile
# makes its tasks unconfined (measured here: they read "unconfined" after
# apparmor_parser -R), so that target is a page server in a mount namespace
# of its own with an empty list bind-mounted over
# /sys/kernel/security/apparmor/profiles.  Results as "AA-QEMU: PASS|FAIL|SKIP ..." lines on
# the serial console; the guest powers off at the end.
/bin/busybox mkdir -p /bin /sbin /usr/bin /usr/sbin
/bin/busybox --install -s
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
export LD_LIBRARY_PATH=/lib/x86_64-linux-gnu
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
mkdir -p /run && mount -t tmpfs tmpfs /run
mount -t securityfs securityfs /sys/kernel/security 2>/dev/null
mount -t cgroup2 cgroup2 /sys/fs/cgroup 2>/dev/null

say() { echo "AA-QEMU: $*"; }
end() {
	sync
	poweroff -f
}
fail() {
	say "FAIL $*"
	for f in /tmp/*.log; do [ -s "$f" ] && sed "s|^|guest $f: |" "$f"; done
	end
}
# until file $1 exists (the workload's ready signal), up to 60 s
wait_file() {
	i=0
	while [ ! -e "$1" ]; do
		i=$((i + 1))
		[ $i -gt 600 ] && return 1
		sleep 0.1
	done
}
# the count and the label that thread $2 last wrote in directory $1
count() { cut -d' ' -f1 "$1/$2" 2>/dev/null; }
label() { cut -d' ' -f2- "$1/$2" 2>/dev/null; }
# every rst_aa_prog reads its threads' labels again (it reads them only when told)
relabel() { for p in $(alive_progs); do kill -USR1 "$p"; done; }
# until the count of thread $2 in $1 passes $3, up to 60 s
wait_count() {
	i=0
	while [ -z "$(count "$1" "$2")" ] || [ "$(count "$1" "$2")" -le "$3" ]; do
		i=$((i + 1))
		[ $i -gt 600 ] && return 1
		sleep 0.1
	done
}
# pids of rst_aa_prog that are not zombies
alive_progs() {
	for s in /proc/[0-9]*/stat; do
		{ read -r p c st rest <"$s"; } 2>/dev/null || continue
		[ "$c" = "(rst_aa_prog)" ] && [ "$st" != Z ] && echo "$p"
	done
}

[ -d /sys/kernel/security/apparmor ] ||
	{ say "SKIP AppArmor is off in the guest kernel (lsm: $(cat /sys/kernel/security/lsm 2>/dev/null))"; end; }
say "lsm $(cat /sys/kernel/security/lsm)"

# round NAME [child]: confine rst_aa_prog (with an unconfined child: a tree),
# checkpoint it, restore it, check every label and that it counts on; then
# unload the profile and check the restore is refused by name.
round() {
	name=$1
	out=/tmp/out-$name
	img=/tmp/img-$name
	threads="main thread"
	[ -n "$2" ] && threads="main thread child"
	apparmor_parser -r -K /haultest.profile >/tmp/parser.log 2>&1 ||
		fail "$name: apparmor_parser -r haultest"
	grep -q '^haultest (' /sys/kernel/security/apparmor/profiles ||
		fail "$name: haultest is not listed after loading"
	mkdir -p "$out"
	/rst_aa_prog haultest "$out" $2 </dev/null >/tmp/prog.log 2>&1 &
	pid=$!
	wait_file "$out/ready" || fail "$name: rst_aa_prog did not confine itself"
	if [ -n "$2" ]; then
		wait_count "$out" child 0 || fail "$name: the child does not count"
	fi
	for t in main thread; do
		[ "$(label "$out" $t)" = "haultest (enforce)" ] || fail "$name: before: $t is '$(label "$out" $t)'"
	done
	if [ -n "$2" ]; then
		[ "$(label "$out" child)" = unconfined ] || fail "$name: before: child is '$(label "$out" child)'"
	fi

	haul checkpoint "$pid" --images "$img" >/tmp/checkpoint.log 2>&1 || fail "$name: haul checkpoint $pid"
	wait "$pid" 2>/dev/null
	[ -z "$(alive_progs)" ] || fail "$name: the checkpointed source still runs"
	from=""
	for t in $threads; do from="$from $(count "$out" $t)"; done

	rpid=$(haul restore --detach --images "$img" 2>/tmp/restore.log) || fail "$name: haul restore"
	relabel
	set -- $from
	for t in $threads; do
		wait_count "$out" $t $(($1 + 5)) || fail "$name: the restored $t does not count on (from $1)"
		shift
	done
	for t in main thread; do
		[ "$(label "$out" $t)" = "haultest (enforce)" ] || fail "$name: restored: $t reads '$(label "$out" $t)'"
	done
	for a in /proc/"$rpid"/task/*/attr/current; do
		[ "$(cat "$a")" = "haultest (enforce)" ] || fail "$name: restored: $a is '$(cat "$a")'"
	done
	if [ "$threads" != "main thread" ]; then
		[ "$(label "$out" child)" = unconfined ] || fail "$name: restored: child reads '$(label "$out" child)'"
	fi
	say "PASS $name restored (pid $rpid):$(for t in $threads; do printf " %s '%s'" $t "$(label "$out" $t)"; done), counting on"

	for p in $(alive_progs); do kill -9 "$p"; done
	i=0
	while [ -n "$(alive_progs)" ]; do
		i=$((i + 1))
		[ $i -gt 600 ] && fail "$name: the restored processes do not die"
		sleep 0.1
	done
	apparmor_parser -R -K /haultest.profile >/tmp/parser.log 2>&1 ||
		fail "$name: apparmor_parser -R haultest"
	grep -q '^haultest (' /sys/kernel/security/apparmor/profiles &&
		fail "$name: haultest still listed after -R"
	rm -f /tmp/*.log
	if haul restore --images "$img" >/tmp/refused.log 2>&1; then
		fail "$name: restore without the profile loaded succeeded"
	fi
	grep -q "AppArmor profile 'haultest' is not loaded on this host" /tmp/refused.log ||
		fail "$name: the refusal does not name the profile"
	[ -z "$(alive_progs)" ] || fail "$name: a refused restore left rst_aa_prog running: $(alive_progs)"
	say "PASS $name refused without the profile: $(grep -m1 AppArmor /tmp/refused.log)"
}

# pids of haul processes other than $1 (the page server): a target's stubs
other_hauls() {
	for s in /proc/[0-9]*/stat; do
		{ read -r p c st rest <"$s"; } 2>/dev/null || continue
		[ "$c" = "(haul)" ] && [ "$st" != Z ] && [ "$p" != "$1" ] && echo "$p"
	done
}
# the words of $1, one a line; how many there are
words() { for w in $1; do echo "$w"; done; }
nwords() { set -- $1; echo $#; }
# haul pageserver on 127.0.0.1:$1, log $2, in a mount namespace of its own
# when $3 is a file: bind-mounted over AppArmor's profiles list there, it
# makes the target a host that has not loaded them.  Its pid in ps_pid.
pageserver() {
	: >"$2"
	if [ -n "$3" ]; then
		unshare -m --propagation private sh -c \
			'mount --bind "$0" /sys/kernel/security/apparmor/profiles && exec "$@"' "$3" \
			haul pageserver --listen "127.0.0.1:$1" --key /tmp/key >"$2" 2>&1 &
	else
		haul pageserver --listen "127.0.0.1:$1" --key /tmp/key >"$2" 2>&1 &
	fi
	ps_pid=$!
	i=0
	until grep -q "listening on" "$2"; do
		i=$((i + 1))
		[ $i -gt 600 ] && fail "migrate: the page server on port $1 did not start: $(tail -3 "$2")"
		sleep 0.1
	done
}

# the label thread $1 of rst_aa_prog (mode $mode) runs under
want() {
	case "$mode:$1" in
	:main | :thread | child:main | child:thread | confined-child:child) echo "haultest (enforce)" ;;
	*) echo unconfined ;;
	esac
}
# mig_round NAME PORT [child|confined-child]: haul migrate to a page server
# on this host (127.0.0.1:PORT): the confined rst_aa_prog (a tree with a
# child: the parent confined, or only the child) moves, the source gone,
# each copy under its label, counting on; then a new one, to a target
# without haultest (port PORT+1), is refused at the precheck (a tree's
# member: at its own session's open, after the root's), before any freeze:
# it counts on throughout under its pids and cgroups, nothing of it runs
# on the target.
mig_round() {
	name=$1
	port=$2
	mode=$3
	out=/tmp/out-$name
	threads="main thread"
	[ -n "$3" ] && threads="main thread child"
	apparmor_parser -r -K /haultest.profile >/tmp/parser.log 2>&1 ||
		fail "$name: apparmor_parser -r haultest"
	pageserver "$port" "/tmp/ps-$name.log"
	mkdir -p "$out"
	/rst_aa_prog haultest "$out" $3 </dev/null >/tmp/prog.log 2>&1 &
	pid=$!
	wait_file "$out/ready" || fail "$name: rst_aa_prog did not confine itself"
	if [ -n "$3" ]; then
		wait_count "$out" child 0 || fail "$name: the child does not count"
	fi
	src=$(alive_progs)
	haul migrate "$pid" --to "127.0.0.1:$port" --key /tmp/key >/tmp/migrate.log 2>&1 ||
		fail "$name: haul migrate $pid to 127.0.0.1:$port"
	wait "$pid" 2>/dev/null
	copies=$(alive_progs)
	for p in $src; do
		words "$copies" | grep -qx "$p" && fail "$name: the source's pid $p still runs"
	done
	[ "$(nwords "$copies")" = "$(nwords "$src")" ] ||
		fail "$name: $(nwords "$copies") copies run for $(nwords "$src") sources: $copies"
	confined=""
	for p in $copies; do
		case "$(cat /proc/"$p"/task/*/attr/current | sort -u | tr '\n' ,)" in
		"haultest (enforce),") confined="$confined $p" ;;
		unconfined,) [ -n "$3" ] || fail "$name: migrated: pid $p is unconfined" ;;
		*) fail "$name: migrated: pid $p reads $(cat /proc/"$p"/task/*/attr/current | tr '\n' ,)" ;;
		esac
	done
	[ "$(nwords "$confined")" = 1 ] || fail "$name: migrated: not one copy under haultest: '$confined'"
	relabel
	for t in $threads; do
		c=$(count "$out" $t)
		wait_count "$out" $t $((c + 5)) || fail "$name: the migrated $t does not count on (from $c)"
	done
	for t in $threads; do
		[ "$(label "$out" $t)" = "$(want $t)" ] || fail "$name: migrated: $t reads '$(label "$out" $t)'"
	done
	say "PASS $name moved pid $(echo $src) to pid$confined:$(for t in $threads; do printf " %s '%s'" $t "$(label "$out" $t)"; done), counting on"
	for p in $copies; do kill -9 "$p"; done
	kill "$ps_pid"

	# the target's host view lacks haultest (see pageserver); the source's has it
	: >/tmp/noprofiles
	pageserver $((port + 1)) "/tmp/ps-$name-refused.log" /tmp/noprofiles
	out=/tmp/out-$name-refused
	mkdir -p "$out"
	/rst_aa_prog haultest "$out" $3 </dev/null >/tmp/prog.log 2>&1 &
	pid=$!
	wait_file "$out/ready" || fail "$name: rst_aa_prog did not confine itself"
	if [ -n "$3" ]; then
		wait_count "$out" child 0 || fail "$name: the child does not count"
	fi
	src=$(alive_progs)
	cgs=$(for p in $src; do cat /proc/"$p"/cgroup; done)
	from=""
	for t in $threads; do from="$from $(count "$out" $t)"; done
	if haul migrate "$pid" --to "127.0.0.1:$((port + 1))" --key /tmp/key --events /tmp/events \
		>/tmp/refused.log 2>&1; then
		fail "$name: haul migrate to a target without haultest succeeded"
	fi
	grep -q "pid [0-9]*: AppArmor profile 'haultest' is not loaded on this host: load it (apparmor_parser -r FILE) and retry" \
		/tmp/refused.log || fail "$name: the refusal does not name the profile"
	grep -q "not migrated (precheck: .*refused: " /tmp/refused.log ||
		fail "$name: the refusal is not the precheck's"
	grep -q '"frozen"' /tmp/events && fail "$name: the refused process was frozen"
	[ "$(alive_progs)" = "$src" ] || fail "$name: after the refusal $(echo $(alive_progs)) run, not $(echo $src)"
	[ "$(for p in $src; do cat /proc/"$p"/cgroup; done)" = "$cgs" ] ||
		fail "$name: the refused processes were left in other cgroups: $(cat /proc/"$pid"/cgroup)"
	set -- $from
	for t in $threads; do
		wait_count "$out" $t $(($1 + 5)) || fail "$name: the refused $t does not count on (from $1)"
		shift
	done
	for t in $threads; do
		[ "$(label "$out" $t)" = "$(want $t)" ] || fail "$name: refused: $t reads '$(label "$out" $t)'"
	done
	# nothing on the target: a refused member's tree had its stubs made; none stays
	i=0
	while [ -n "$(other_hauls "$ps_pid")" ]; do
		i=$((i + 1))
		[ $i -gt 100 ] && fail "$name: the target keeps processes of the refused migration: $(other_hauls "$ps_pid")"
		sleep 0.1
	done
	say "PASS $name refused at the precheck, pid $(echo $src) never frozen, counting on: $(grep -m1 'not migrated' /tmp/refused.log)"
	for p in $src; do kill -9 "$p"; done
	kill "$ps_pid"
}

round process
round tree child
ip link set lo up || fail "migrate: cannot bring lo up"
head -c 32 /dev/urandom >/tmp/key && chmod 600 /tmp/key
mig_round migrate 7001
mig_round migrate-tree 7003 child
mig_round migrate-tree-child 7005 confined-child
say "PASS all"
end
