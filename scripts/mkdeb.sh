#!/bin/sh
# mkdeb.sh OUT - build the haul .deb from debian/ with dpkg-buildpackage, in a
# copy of this working tree under OUT/src (dpkg-buildpackage writes its
# results next to the source directory, which must not be the parent of a
# checkout), then run lintian on it.  The .deb ends in OUT.
# The package version (debian/changelog) must be the VERSION file's.
set -eu
OUT=$1
V=$(cat VERSION)
DV=$(dpkg-parsechangelog -S Version)
if [ "$DV" != "$V" ] && [ "${DV%-*}" != "$V" ]; then
	echo "mkdeb: debian/changelog says $DV but VERSION says $V; add a changelog entry (dch -v $V)" >&2
	exit 1
fi
rm -rf "$OUT/src"
mkdir -p "$OUT/src/haul-$V"
# tracked and new files, not what .gitignore ignores (build trees)
git ls-files -z -co --exclude-standard | xargs -0 cp --parents -t "$OUT/src/haul-$V"
HAUL_GIT=$(git describe --always --dirty 2>/dev/null || true)
export HAUL_GIT
(cd "$OUT/src/haul-$V" && dpkg-buildpackage -us -uc -b)
deb=$(ls "$OUT"/src/haul_"$V"*_*.deb)
mv "$deb" "$OUT/"
deb=$OUT/$(basename "$deb")
echo "mkdeb: built $deb"
if command -v lintian >/dev/null; then
	lintian --info "$deb" || echo "mkdeb: lintian has findings (above)"
fi
