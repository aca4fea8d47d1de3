#!/bin/busybox sh
# rst_aa_init.sh - /init of the guest of tests/extra/rst_apparmor_qemu.sh
# (busybox sh): load profile haultest, confine /rst_aa_prog to it, checkpoint
# and restore it with haul, check each thread's label and that it counts on;
# then unload the profile and check the restore is refused by name with
# nothing left running.  Results as "AA-QEMU: PASS|FAIL|SKIP ..." lines on
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
count() { cut -d' ' -f1 "/tmp/out/$1" 2>/dev/null; }
label() { cut -d' ' -f2- "/tmp/out/$1" 2>/dev/null; }
# until the count in /tmp/out/$1 passes $2, up to 60 s
wait_count() {
	i=0
	while [ "$(count "$1")" -le "$2" ] 2>/dev/null || [ -z "$(count "$1")" ]; do
		i=$((i + 1))
		[ $i -gt 600 ] && return 1
		sleep 0.1
	done
}
# pids of rst_aa_prog that are not zombies
alive_progs() {
	for s in /proc/[0-9]*/stat; do
		read -r p c st rest <"$s" 2>/dev/null || continue
		[ "$c" = "(rst_aa_prog)" ] && [ "$st" != Z ] && echo "$p"
	done
}

[ -d /sys/kernel/security/apparmor ] ||
	{ say "SKIP AppArmor is off in the guest kernel (lsm: $(cat /sys/kernel/security/lsm 2>/dev/null))"; end; }
say "lsm $(cat /sys/kernel/security/lsm)"

apparmor_parser -r -K /haultest.profile >/tmp/parser.log 2>&1 || fail "apparmor_parser -r haultest"
grep -q '^haultest (' /sys/kernel/security/apparmor/profiles || fail "haultest is not listed after loading"

mkdir -p /tmp/out
/rst_aa_prog haultest /tmp/out </dev/null >/tmp/prog.log 2>&1 &
pid=$!
wait_file /tmp/out/ready || fail "rst_aa_prog did not confine itself"
for t in main thread; do
	[ "$(label $t)" = "haultest (enforce)" ] || fail "before: $t is '$(label $t)'"
done

haul checkpoint "$pid" --images /tmp/img >/tmp/checkpoint.log 2>&1 || fail "haul checkpoint $pid"
wait "$pid" 2>/dev/null
[ -z "$(alive_progs)" ] || fail "the checkpointed source still runs"
c0=$(count main)
t0=$(count thread)

rpid=$(haul restore --detach --images /tmp/img 2>/tmp/restore.log) || fail "haul restore"
wait_count main $((c0 + 5)) || fail "the restored main thread does not count on (from $c0)"
wait_count thread $((t0 + 5)) || fail "the restored thread does not count on (from $t0)"
for t in main thread; do
	[ "$(label $t)" = "haultest (enforce)" ] || fail "restored: $t reads '$(label $t)'"
done
for a in /proc/"$rpid"/task/*/attr/current; do
	[ "$(cat "$a")" = "haultest (enforce)" ] || fail "restored: $a is '$(cat "$a")'"
done
say "PASS restored pid $rpid: both threads 'haultest (enforce)', counting from $c0 to $(count main)"

kill -9 "$rpid"
i=0
while [ -n "$(alive_progs)" ]; do
	i=$((i + 1))
	[ $i -gt 600 ] && fail "the restored pid $rpid does not die"
	sleep 0.1
done
apparmor_parser -R -K /haultest.profile >/tmp/parser.log 2>&1 || fail "apparmor_parser -R haultest"
grep -q '^haultest (' /sys/kernel/security/apparmor/profiles && fail "haultest still listed after -R"
rm -f /tmp/*.log
if haul restore --images /tmp/img >/tmp/refused.log 2>&1; then
	fail "restore without the profile loaded succeeded"
fi
grep -q "AppArmor profile 'haultest' is not loaded on this host" /tmp/refused.log ||
	fail "the refusal does not name the profile"
[ -z "$(alive_progs)" ] || fail "a refused restore left rst_aa_prog running: $(alive_progs)"
say "PASS refused without the profile: $(grep -m1 AppArmor /tmp/refused.log)"
say "PASS all"
end
