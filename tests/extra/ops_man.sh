#!/bin/sh
# ops_man.sh - the man pages in man/ are the CLI reference: they must say
# what the binary does.  For haul and each subcommand `haul --help` lists:
#  - man/haul-CMD.1 exists and renders without warnings (man --warnings,
#    where man-db is installed);
#  - every --option of `haul CMD --help` is an option (a .TP tag under
#    OPTIONS) of its page, and every option there is in --help (--help
#    itself excepted: every command takes it);
#  - every exit status CMD's source returns is a .TP tag under EXIT STATUS;
#  - every JSON field CMD writes ("key": in its source, events.c for
#    migrate, and the keys `haul version --json` really prints) is named in
#    the page.
# Exit 0 when all hold, 1 with each mismatch named.
set -u
SRC=${HAUL_SRC:-$PWD}
HAUL=${HAUL_BIN:-$SRC/build/haul}
MAN=$SRC/man
[ -x "$HAUL" ] || { echo "build haul first ($HAUL)"; exit 77; }
fail=0
bad() { echo "FAIL $*"; fail=1; }

# section NAME FILE: the roff lines of section NAME, escapes undone.
section() {
	awk -v s="$1" '/^\.SH/ { on = ($0 ~ "^\\.SH \"?" s "\"?$"); next } on' "$2" |
		sed -e 's/\\-/-/g' -e 's/\\f[BIRP]//g'
}
# tags NAME FILE: the words of the .TP tag lines of section NAME.
tags() { section "$1" "$2" | awk 'p { print; p = 0 } /^\.TP/ { p = 1 }'; }
opts() { grep -o -- '--[a-z][a-z0-9-]*' | sort -u; }

check_page() {
	cmd=$1 page=$2 help=$3 src=$4
	if ! [ -f "$page" ]; then
		bad "$cmd: no man page $page"
		return
	fi
	if command -v man >/dev/null; then
		w=$(LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -l "$page" 2>&1 >/dev/null)
		[ -z "$w" ] || bad "$cmd: $page renders with warnings: $w"
	fi
	man_opts=$(tags OPTIONS "$page" | opts)
	for o in $(echo "$help" | opts); do
		echo "$man_opts" | grep -qx -- "$o" || bad "$cmd: $o is in --help but not an option of $page"
	done
	for o in $man_opts; do
		[ "$o" = --help ] && continue
		echo "$help" | opts | grep -qx -- "$o" || bad "$cmd: $o is in $page but not in --help"
	done
	[ -n "$src" ] || return
	codes=$(tags "EXIT STATUS" "$page" | tr -cs '0-9' '\n')
	for c in $(grep -o 'return [^;]*;' $src | grep -o '\b[0-9]\b' | sort -u); do
		echo "$codes" | grep -qx "$c" || bad "$cmd: exit status $c is not under EXIT STATUS of $page"
	done
	text=$(sed -e 's/\\-/-/g' -e 's/\\f[BIRP]//g' "$page")
	for k in $(grep -oh '\\"[a-z_0-9]*\\":' $src | tr -d '\\":' | sort -u); do
		echo "$text" | grep -qw -- "$k" || bad "$cmd: JSON field '$k' is not in $page"
	done
}

top=$("$HAUL" --help)
check_page haul "$MAN/haul.1" "--help --version" ""
for cmd in $(echo "$top" | awk '/^commands:/ { on = 1; next } on && /^  [a-z]/ { print $1 }'); do
	help=$("$HAUL" "$cmd" --help 2>&1)
	src=$SRC/src/haul/cmd_$cmd.c
	[ "$cmd" = migrate ] && src="$src $SRC/src/haul/events.c"
	check_page "$cmd" "$MAN/haul-$cmd.1" "$help" "$src"
	grep -q "^\.BR haul-$cmd (1)\|^\.BR haul\\\\-$cmd (1)" "$MAN/haul.1" ||
		bad "$cmd: haul.1 does not point to haul-$cmd(1)"
done
# the keys haul version --json really prints
for k in $("$HAUL" version --json | python3 -c 'import json, sys
o = json.load(sys.stdin)
print("\n".join(list(o) + list(o["features"])))'); do
	grep -qw -- "$k" "$MAN/haul-version.1" || bad "version: JSON field '$k' is not in haul-version.1"
done
[ "$fail" = 0 ] && echo "man pages match --help, exit statuses and JSON fields"
exit $fail
