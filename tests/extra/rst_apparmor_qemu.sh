#!/bin/sh
# rst_apparmor_qemu.sh - carry a process's AppArmor profile for real: AppArmor
# is off on our kernels, on by default in Debian's stock kernel.  Boot that
# kernel under qemu-system-x86_64 (TCG) with an initramfs holding haul (the
# dynamic build/haul, every library ldd names and the loader), a static
# busybox, apparmor_parser from Debian's apparmor package (apt-get download,
# unpacked, never installed here), the profile tests/qemu/haultest.profile
# and the workload tests/qemu/rst_aa_prog.c; its /init is
# tests/qemu/rst_aa_init.sh: checkpoint/restore, then haul migrate to a
# page server in the guest.  Read AA-QEMU: PASS/FAIL/SKIP from the console.
# TCG runs the two vCPUs in one host thread (thread=single): with one
# thread per vCPU the guest kernel died once in four runs here (an int3
# oops in __schedule, in the idle task, before haul ran).
#
# Exit 0 pass, 1 fail, 77 skip (reason on the last line).  The kernel and
# the parser are cached in $BUILD/qemu (vmlinuz-aa, apparmor/).
BUILD=${BUILD:-build}
SRC=${HAUL_SRC:-$PWD}
WORK="$SRC/$BUILD/qemu"
HAUL=${HAUL_BIN:-$SRC/$BUILD/haul}
TIMEOUT=${AA_QEMU_TIMEOUT:-600}
mkdir -p "$WORK" || exit 1

skip() {
	echo "$1"
	exit 77
}

[ -x "$HAUL" ] || skip "skip: build haul first ($HAUL is missing)"
. "$(dirname "$0")/qemu_need.shlib"
why=$(qemu_install) || skip "$why"
BUSYBOX=$(command -v busybox) || skip "skip: busybox is missing (apt-get install busybox-static)"
ldd "$BUSYBOX" >/dev/null 2>&1 && skip "skip: $BUSYBOX is dynamic; the guest needs busybox-static"

# Debian's kernel, fetched as trk_softdirty_qemu.sh fetches its own, but the
# 6.12 one of bookworm (linux-image-6.12-amd64): haul needs 6.3 or later to
# read the membarrier registrations, and the stock 6.1 kernel is refused for
# that at the checkpoint.  Cached in $WORK/vmlinuz-aa.
KERNEL="$WORK/vmlinuz-aa"
if [ ! -s "$KERNEL" ]; then
	pkg=$(apt-cache depends linux-image-6.12-amd64 2>/dev/null |
		sed -n 's/^ *Depends: \(linux-image-6\.12[^ ]*\)$/\1/p' | head -1)
	[ -n "$pkg" ] || skip "skip: apt does not know linux-image-6.12-amd64 (no bookworm-security archive?)"
	rm -rf "$WORK/aadeb" && mkdir -p "$WORK/aadeb"
	(cd "$WORK/aadeb" && apt-get download "$pkg" >"$WORK/aa-download.log" 2>&1) ||
		skip "skip: cannot download $pkg (see $WORK/aa-download.log)"
	dpkg-deb -x "$WORK"/aadeb/*.deb "$WORK/aadeb/root" || skip "skip: cannot unpack $pkg"
	vmlinuz=$(ls "$WORK"/aadeb/root/boot/vmlinuz-* 2>/dev/null | head -1)
	[ -n "$vmlinuz" ] || skip "skip: $pkg holds no /boot/vmlinuz"
	grep -q '^CONFIG_SECURITY_APPARMOR=y' "$WORK"/aadeb/root/boot/config-* ||
		skip "skip: $pkg is built without AppArmor"
	cp "$vmlinuz" "$KERNEL"
	rm -rf "$WORK/aadeb"
fi

# apparmor_parser from Debian's apparmor package, unpacked here only; the
# binary alone is kept (the Makefile reads every *.d under $BUILD, and the
# package has an etc/init.d).
AA="$WORK/apparmor"
if [ ! -x "$AA/apparmor_parser" ]; then
	rm -rf "$AA" && mkdir -p "$AA"
	(cd "$AA" && apt-get download apparmor >"$AA/download.log" 2>&1) ||
		skip "skip: cannot download the apparmor package (see $AA/download.log)"
	dpkg-deb -x "$AA"/apparmor_*.deb "$AA/root" || skip "skip: cannot unpack apparmor"
	[ -x "$AA/root/sbin/apparmor_parser" ] || skip "skip: the apparmor package has no apparmor_parser"
	cp "$AA/root/sbin/apparmor_parser" "$AA/apparmor_parser" || exit 1
	rm -rf "$AA/root" "$AA"/apparmor_*.deb
fi

cd "$SRC" || exit 1
gcc -static -std=gnu11 -O2 -D_GNU_SOURCE -Wall -Wextra -Werror -o "$WORK/rst_aa_prog" \
	tests/qemu/rst_aa_prog.c -lpthread || {
	echo "fail: cannot build the static rst_aa_prog"
	exit 1
}

# Every shared library of haul and apparmor_parser, at /lib/x86_64-linux-gnu
# (LD_LIBRARY_PATH in the guest), the loader where the binaries name it.
libs=$( (ldd "$HAUL"; ldd "$AA/apparmor_parser") |
	sed -n 's/.*=> \(\/[^ ]*\) .*/\1/p' | sort -u)
loader=$(ldd "$HAUL" | sed -n 's/^[[:space:]]*\(\/[^ ]*ld-linux[^ ]*\) .*/\1/p' | head -1)
[ -n "$libs" ] && [ -n "$loader" ] || {
	echo "fail: ldd names no libraries or loader for $HAUL"
	exit 1
}
set -- dir:/dev chr:/dev/console=5,1 dir:/proc dir:/sys dir:/tmp dir:/bin dir:/sbin dir:/lib \
	dir:/lib/x86_64-linux-gnu dir:/lib64 dir:/usr dir:/usr/bin dir:/usr/sbin \
	file:/init=tests/qemu/rst_aa_init.sh file:/bin/busybox="$BUSYBOX" \
	file:/usr/bin/haul="$HAUL" file:/sbin/apparmor_parser="$AA/apparmor_parser" \
	file:/haultest.profile=tests/qemu/haultest.profile file:/rst_aa_prog="$WORK/rst_aa_prog" \
	file:"$loader"="$(readlink -f "$loader")"
for l in $libs; do
	set -- "$@" file:/lib/x86_64-linux-gnu/"$(basename "$l")"="$(readlink -f "$l")"
done
python3 tests/qemu/mkcpio.py "$WORK/aa-initramfs.cpio" "$@" || {
	echo "fail: cannot build the initramfs"
	exit 1
}

echo "booting $(basename "$(readlink -f "$KERNEL")") under qemu (TCG, up to ${TIMEOUT}s)"
timeout "$TIMEOUT" qemu-system-x86_64 -nographic -no-reboot -m 1024 -smp 2 -accel tcg,thread=single -cpu max \
	-kernel "$KERNEL" -initrd "$WORK/aa-initramfs.cpio" \
	-append 'console=ttyS0 panic=-1 quiet apparmor=1 security=apparmor' \
	</dev/null >"$WORK/aa-console.log" 2>&1
rc=$?
grep 'AA-QEMU:\|^guest ' "$WORK/aa-console.log"
if grep -q 'AA-QEMU: PASS all' "$WORK/aa-console.log"; then
	exit 0
fi
if reason=$(grep -m1 'AA-QEMU: SKIP' "$WORK/aa-console.log"); then
	echo "skip: ${reason#*SKIP }"
	exit 77
fi
tail -20 "$WORK/aa-console.log"
if [ $rc -eq 124 ]; then
	echo "fail: the guest did not finish within ${TIMEOUT}s (console: $WORK/aa-console.log)"
else
	echo "fail: AppArmor restore test failed in the guest (console: $WORK/aa-console.log)"
fi
exit 1
