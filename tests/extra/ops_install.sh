#!/bin/sh
# ops_install.sh - `make install` with PREFIX and DESTDIR puts the binary,
# the man pages, bash completion, the systemd unit (ExecStart pointing at
# the installed binary) and its environment file where they belong; the
# installed haul runs; the completion completes subcommands and options.
set -u
SRC=${HAUL_SRC:-$PWD}
BUILD=${HAUL_BUILD:-$SRC/build}
[ -x "$BUILD/haul" ] || { echo "build haul first ($BUILD/haul)"; exit 77; }
D=$(mktemp -d /tmp/haul-install-$$.XXXXXX)
trap 'rm -rf "$D"' EXIT
fail=0
bad() { echo "FAIL $*"; fail=1; }

# BUILD relative to SRC when it is inside it: make expects the same spelling
b=$BUILD
case $b in "$SRC"/*) b=${b#"$SRC"/} ;; esac
make -s -C "$SRC" BUILD="$b" install DESTDIR="$D" PREFIX=/opt/haul >"$D.log" 2>&1 ||
	{ cat "$D.log"; rm -f "$D.log"; echo "FAIL make install"; exit 1; }
rm -f "$D.log"
for f in opt/haul/bin/haul opt/haul/share/man/man1/haul.1 opt/haul/share/man/man1/haul-migrate.1 \
	opt/haul/share/bash-completion/completions/haul lib/systemd/system/haul-pageserver.service \
	etc/haul/pageserver.env; do
	[ -f "$D/$f" ] || bad "make install did not install /$f"
done
grep -q '^ExecStart=/opt/haul/bin/haul pageserver ' "$D/lib/systemd/system/haul-pageserver.service" ||
	bad "the unit's ExecStart does not name /opt/haul/bin/haul"
[ "$(stat -c %a "$D/etc/haul")" = 700 ] || bad "/etc/haul is not mode 700 (it holds the key)"
"$D/opt/haul/bin/haul" --version | grep -q "^haul $(cat "$SRC/VERSION")" ||
	bad "the installed haul --version does not print the VERSION file's version"
[ "$(readlink "$D/opt/haul/libexec/haul/criu-compat/criu")" = /opt/haul/bin/haul ] ||
	bad "make install did not link libexec/haul/criu-compat/criu to the installed haul"

if command -v bash >/dev/null; then
	got=$(PATH="$D/opt/haul/bin:$PATH" bash -c '
		. "$1"
		COMP_WORDS=(haul mi); COMP_CWORD=1; _haul; echo "${COMPREPLY[*]}"
		COMP_WORDS=(haul migrate --ev); COMP_CWORD=2; _haul; echo "${COMPREPLY[*]}"
		COMP_WORDS=(haul track 1 --tracker s); COMP_CWORD=4; _haul; echo "${COMPREPLY[*]}"' \
		sh "$D/opt/haul/share/bash-completion/completions/haul")
	[ "$got" = "migrate
--events
soft-dirty" ] || bad "bash completion gave: $got"
fi
make -s -C "$SRC" BUILD="$b" uninstall DESTDIR="$D" PREFIX=/opt/haul >/dev/null 2>&1
[ -e "$D/opt/haul/bin/haul" ] && bad "make uninstall left the binary"
[ -L "$D/opt/haul/libexec/haul/criu-compat/criu" ] && bad "make uninstall left the criu link"
[ "$fail" = 0 ] && echo "make install and uninstall: ok"
exit $fail
