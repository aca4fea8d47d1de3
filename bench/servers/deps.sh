#!/bin/sh
# bench/servers/deps.sh - install the server daemons that the srv_* tests and
# `make bench-servers` migrate (only those missing), through scripts/deps.sh,
# without leaving them running or enabled: the tests start their own copies in
# network namespaces, and a packaged redis/memcached/nginx/PostgreSQL left
# listening on the host would only be in the way.
#
# usage: bench/servers/deps.sh [PACKAGE...]   (default: the ones every srv test needs)
# Exit 0 when all are installed, 1 with the reason when they cannot be.
set -u
here=$(cd "$(dirname "$0")" && pwd)
pkgs=${*:-redis-server redis-tools memcached python3 nftables}
missing=
for p in $pkgs; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
		missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ]; then
	echo "srv deps: missing Debian packages:$missing; run as root or install them" >&2
	exit 1
fi
# policy-rc.d 101 keeps maintainer scripts from starting the daemons; ours is
# removed again, one that was already there is left alone.
own_policy=0
if [ ! -e /usr/sbin/policy-rc.d ]; then
	printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d &&
		own_policy=1
fi
HAUL_EXTRA_PKGS="$missing" sh "$here/../../scripts/deps.sh"
rc=$?
[ $own_policy = 1 ] && rm -f /usr/sbin/policy-rc.d
for svc in redis-server memcached nginx postgresql; do
	case " $missing " in *" $svc "*) ;; *) continue ;; esac
	if command -v systemctl >/dev/null 2>&1; then
		systemctl disable --now "$svc" >/dev/null 2>&1
	fi
	if command -v update-rc.d >/dev/null 2>&1; then
		update-rc.d "$svc" disable >/dev/null 2>&1
	fi
	if [ -x "/etc/init.d/$svc" ]; then
		"/etc/init.d/$svc" stop >/dev/null 2>&1
	fi
done
[ $rc = 0 ] || echo "srv deps: cannot install$missing (apt-get failed, exit $rc)" >&2
exit $rc
