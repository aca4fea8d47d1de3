#!/bin/sh
# trk_softdirty_qemu.sh - test the soft-dirty tracker for real: our kernels lack
# CONFIG_MEM_SOFT_DIRTY, Debian's stock kernel has it.  Boot that kernel under
# qemu-system-x86_64 (TCG: no usable KVM here) with an initramfs whose /init is
# a static build of the tracker's accuracy scenario (tests/qemu/trk_sd_guest.c)
# and /trk_target; read PASS/FAIL from the serial console.
#
# Exit 0 pass, 1 fail, 77 skip (reason on the last line) when qemu or the
# kernel package cannot be had.  qemu-system-x86 is installed here, not in
# scripts/deps.sh: it is large and only this test needs it.  The kernel .deb
# is fetched with `apt-get download` and unpacked, never installed.
# Cached under $BUILD/qemu between runs.
BUILD=${BUILD:-build}
SRC=${HAUL_SRC:-$PWD}
WORK="$SRC/$BUILD/qemu"
TIMEOUT=${TRK_QEMU_TIMEOUT:-600}
mkdir -p "$WORK" || exit 1

skip() {
	echo "$1"
	exit 77
}

. "$(dirname "$0")/qemu_need.shlib"
why=$(qemu_install) || skip "$why"

# Debian's stock kernel image: linux-image-amd64 is a metapackage naming it.
if [ ! -s "$WORK/vmlinuz" ]; then
	pkg=$(apt-cache depends linux-image-amd64 2>/dev/null |
		sed -n 's/^ *Depends: \(linux-image-[0-9].*\)$/\1/p' | head -1)
	[ -n "$pkg" ] || skip "skip: apt does not know linux-image-amd64 (no Debian archive?)"
	rm -rf "$WORK/deb" && mkdir -p "$WORK/deb"
	(cd "$WORK/deb" && apt-get download "$pkg" >"$WORK/download.log" 2>&1) ||
		skip "skip: cannot download $pkg (see $WORK/download.log)"
	dpkg-deb -x "$WORK"/deb/*.deb "$WORK/deb/root" ||
		skip "skip: cannot unpack $pkg"
	vmlinuz=$(ls "$WORK"/deb/root/boot/vmlinuz-* 2>/dev/null | head -1)
	[ -n "$vmlinuz" ] || skip "skip: $pkg holds no /boot/vmlinuz"
	grep -q '^CONFIG_MEM_SOFT_DIRTY=y' "$WORK"/deb/root/boot/config-* ||
		skip "skip: $pkg is built without CONFIG_MEM_SOFT_DIRTY"
	cp "$vmlinuz" "$WORK/vmlinuz"
	rm -rf "$WORK/deb"
fi

# The guest's /init: the tracker sources and the scenario, static; no modules needed
# (soft-dirty, the 8250 console and initramfs support are built into the image).
cd "$SRC" || exit 1
gcc -static -std=gnu11 -O2 -D_GNU_SOURCE -Wall -Wextra -Werror -Isrc -o "$WORK/init" \
	tests/qemu/trk_sd_guest.c src/tracker/*.c src/common/log.c src/common/vma.c \
	src/common/rsys.c src/common/injlog.c src/common/probe.c src/common/proc.c \
	src/common/grow.c src/common/vma_data.c src/common/vma_ident.c \
	-lxxhash -lelf -lz -lpthread || {
	echo "fail: cannot build the static guest test"
	exit 1
}
gcc -static -std=gnu11 -O2 -D_GNU_SOURCE -o "$WORK/trk_target" tests/progs/trk_target.c || {
	echo "fail: cannot build a static trk_target"
	exit 1
}
# bench/trk_bench too: the soft-dirty backend's costs can only be measured in the guest
# (TCG: compare its ratios, not its milliseconds, with the host's).
bench=""
if gcc -static -std=gnu11 -O2 -D_GNU_SOURCE -Isrc -o "$WORK/trk_bench" bench/trk_bench.c \
	src/tracker/*.c src/common/log.c src/common/vma.c src/common/rsys.c \
	src/common/injlog.c src/common/probe.c src/common/proc.c src/common/grow.c \
	src/common/vma_data.c src/common/vma_ident.c -lxxhash -lelf -lz -lpthread; then
	bench="file:/trk_bench=$WORK/trk_bench"
fi
python3 tests/qemu/mkcpio.py "$WORK/initramfs.cpio" dir:/dev chr:/dev/console=5,1 \
	dir:/proc dir:/tmp file:/init="$WORK/init" file:/trk_target="$WORK/trk_target" $bench || {
	echo "fail: cannot build the initramfs"
	exit 1
}

echo "booting $(basename "$(readlink -f "$WORK/vmlinuz")") under qemu (TCG, up to ${TIMEOUT}s)"
timeout "$TIMEOUT" qemu-system-x86_64 -nographic -no-reboot -m 512 -smp 1 -accel tcg \
	-kernel "$WORK/vmlinuz" -initrd "$WORK/initramfs.cpio" \
	-append 'console=ttyS0 panic=-1 quiet transparent_hugepage=madvise' \
	</dev/null >"$WORK/console.log" 2>&1
rc=$?
grep 'TRK-SD:' "$WORK/console.log"
grep '^trk_bench: \(soft-dirty\|memory read (\|untracked 10%\)' "$WORK/console.log" |
	sed 's/^/guest /'
if grep -q 'TRK-SD: PASS' "$WORK/console.log"; then
	exit 0
fi
if [ $rc -eq 124 ]; then
	tail -20 "$WORK/console.log"
	echo "fail: the guest did not finish within ${TIMEOUT}s (console: $WORK/console.log)"
	exit 1
fi
tail -20 "$WORK/console.log"
echo "fail: soft-dirty accuracy test failed in the guest (console: $WORK/console.log)"
exit 1
