#!/bin/sh
# ops_deb.sh - the .deb installs on a clean Debian 12 and works there:
# `make deb`, then in a minimal bookworm chroot (debootstrap --variant=minbase)
# `apt-get install ./haul_*.deb` (apt resolves its Depends from the mirror),
# `haul --version`, `haul check`, the man page and the unit (installed, not
# enabled).
# Needs the Debian mirror (skips, exit 77, naming it when it is out of reach);
# HAUL_TEST_DEB=0 turns it off.  The chroot, with apt lists, is cached as a
# tarball in /var/cache/haul-test (first run ~3-5 min, later ones ~1 min).
set -u
SRC=${HAUL_SRC:-$PWD}
BUILD=${HAUL_BUILD:-$SRC/build}
CACHE=/var/cache/haul-test
MIRROR=${HAUL_DEB_MIRROR:-http://deb.debian.org/debian}
[ "${HAUL_TEST_DEB:-1}" = 1 ] || { echo "HAUL_TEST_DEB=0: the .deb is not built and installed in a chroot"; exit 77; }
[ "$(id -u)" = 0 ] || { echo "needs root (debootstrap, chroot, mounts)"; exit 77; }
HAUL_EXTRA_PKGS="debootstrap debhelper lintian" sh "$SRC/scripts/deps.sh" ||
	{ echo "cannot install debootstrap and debhelper"; exit 77; }

b=$BUILD
case $b in "$SRC"/*) b=${b#"$SRC"/} ;; esac
rm -f "$BUILD"/deb/haul_*.deb
if ! make -s -C "$SRC" BUILD="$b" deb >"/tmp/haul-deb-build-$$.log" 2>&1; then
	tail -30 "/tmp/haul-deb-build-$$.log"
	rm -f "/tmp/haul-deb-build-$$.log"
	echo "FAIL make deb"
	exit 1
fi
grep -E '^[EW]: ' "/tmp/haul-deb-build-$$.log" | sed 's/^/lintian: /'
rm -f "/tmp/haul-deb-build-$$.log"
deb=$(ls "$BUILD"/deb/haul_*.deb 2>/dev/null | head -1)
[ -n "$deb" ] || { echo "FAIL make deb made no .deb"; exit 1; }

R=$(mktemp -d /tmp/haul-deb-root-$$.XXXXXX)
cleanup() {
	for m in dev/pts dev sys proc; do umount -R "$R/$m" 2>/dev/null; done
	# only if nothing is mounted there any more
	grep -q " $R/" /proc/self/mounts || rm -rf "$R"
}
trap cleanup EXIT
mkdir -p "$CACHE"
if [ -f "$CACHE/bookworm-minbase.tar" ]; then
	tar -C "$R" -xf "$CACHE/bookworm-minbase.tar"
else
	if ! timeout 900 debootstrap --variant=minbase bookworm "$R" "$MIRROR" >"$R.log" 2>&1; then
		tail -5 "$R.log"
		rm -f "$R.log"
		echo "debootstrap cannot reach $MIRROR (or failed); set HAUL_DEB_MIRROR"
		exit 77
	fi
	rm -f "$R.log"
	tar -C "$R" -cf "$CACHE/bookworm-minbase.tar.tmp" . && mv "$CACHE/bookworm-minbase.tar.tmp" "$CACHE/bookworm-minbase.tar"
fi
mount -t proc proc "$R/proc"
mount --rbind /sys "$R/sys" && mount --make-rslave "$R/sys"
mount --rbind /dev "$R/dev" && mount --make-rslave "$R/dev"
cp /etc/resolv.conf "$R/etc/resolv.conf" 2>/dev/null
cp "$deb" "$R/tmp/"
in_root() { chroot "$R" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive "$@"; }

if ! timeout 300 sh -c 'chroot "$1" apt-get update -qq' sh "$R" >/dev/null 2>&1; then
	echo "apt-get update in the chroot cannot reach the mirror"
	exit 77
fi
if ! in_root apt-get install -y -qq --no-install-recommends "/tmp/$(basename "$deb")" >"$R.apt" 2>&1; then
	cat "$R.apt"; rm -f "$R.apt"
	echo "FAIL apt-get install of $(basename "$deb") in a clean bookworm"
	exit 1
fi
rm -f "$R.apt"
fail=0
v=$(in_root haul --version) || { echo "FAIL haul --version in the chroot"; fail=1; }
echo "$v"
echo "$v" | grep -q "^haul $(cat "$SRC/VERSION")" || { echo "FAIL the version is not $(cat "$SRC/VERSION")"; fail=1; }
in_root haul check || { echo "FAIL haul check in the chroot"; fail=1; }
[ -f "$R/usr/share/man/man1/haul-migrate.1.gz" ] || { echo "FAIL no haul-migrate(1)"; fail=1; }
[ -f "$R/lib/systemd/system/haul-pageserver.service" ] || { echo "FAIL no unit"; fail=1; }
[ -e "$R/etc/systemd/system/multi-user.target.wants/haul-pageserver.service" ] &&
	{ echo "FAIL the unit is enabled by the package"; fail=1; }
in_root dpkg -s haul | grep '^Depends:'
[ "$fail" = 0 ] && echo "the .deb installs on a clean bookworm and haul check passes there"
exit $fail
