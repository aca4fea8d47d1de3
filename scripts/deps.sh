#!/bin/sh
# Install the Debian packages haul needs, only those that are missing.
# Idempotent and quiet when everything is already there; run as root.
set -e
PKGS="memtester bzip2 zstd build-essential pkg-config libev-dev libprotobuf-c-dev protobuf-c-compiler \
liblz4-dev liburing-dev libcriterion-dev libsodium-dev libxxhash-dev libnftables-dev nftables iproute2 \
clang libbpf-dev libelf-dev gnuplot-nox procps psmisc python3 xz-utils gzip coreutils"
[ -n "$HAUL_EXTRA_PKGS" ] && PKGS="$PKGS $HAUL_EXTRA_PKGS"
missing=""
for p in $PKGS; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
		missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ]; then
	echo "deps: missing Debian packages:$missing; run as root or install them" >&2
	exit 1
fi
echo "deps: installing$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends $missing >/dev/null
