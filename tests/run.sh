#!/bin/sh
# Run every test suite and print one closing line: "N passed, N failed, N skipped".
#  - build/test-unit: Criterion, no root, parallel.
#  - build/test-integration: Criterion, real processes and namespaces, one at a time.
#  - tests/extra/*.sh: standalone scripts; exit 0 pass, 77 skip (reason on stdout), else fail.
BUILD=${BUILD:-build}
export HAUL_BIN="$PWD/$BUILD/haul" HAUL_PROGS="$PWD/$BUILD/progs" HAUL_BUILD="$PWD/$BUILD" HAUL_SRC="$PWD"
pass=0 fail=0 skip=0
log=$(mktemp)
failed=$(mktemp)
why=$(mktemp)
trap 'rm -f "$log" "$failed" "$why"' EXIT

crit() {
	bin=$1; shift
	[ -x "$bin" ] || return 0
	echo "== $bin"
	"$bin" --verbose=0 "$@" 2>&1 | tee "$log"
	line=$(grep 'Synthesis:' "$log" | tail -1)
	if [ -z "$line" ]; then
		echo "== $bin: no Criterion summary (crashed?)"
		fail=$((fail + 1))
		echo "$bin (no summary)" >> "$failed"
		return
	fi
	t=$(echo "$line" | sed -n 's/.*Tested: \([0-9]*\).*/\1/p')
	p=$(echo "$line" | sed -n 's/.*Passing: \([0-9]*\).*/\1/p')
	f=$(echo "$line" | sed -n 's/.*Failing: \([0-9]*\).*/\1/p')
	c=$(echo "$line" | sed -n 's/.*Crashing: \([0-9]*\).*/\1/p')
	s=$(grep -c '^\[SKIP\]' "$log")
	grep -E '^\[(FAIL|CRASH)\]' "$log" | sed 's/^\[[A-Z]*\] *//; s/: .*//' >> "$failed"
	# each failed assertion's place and message, repeated at the end where a log's tail keeps them
	awk '/^\[----\] .*\.c:[0-9]+: / { n = 3 } n > 0 && !/^\[----\] *$/ { print; n-- }' "$log" |
		head -12 | cut -c1-400 | sed "s|^|  ${bin##*/}: |" >> "$why"
	# Criterion counts a skipped test as passing; report it as skipped only.
	pass=$((pass + p - s))
	fail=$((fail + f + c))
	skip=$((skip + s))
	: "$t"
}

crit "$BUILD/test-unit" --jobs 2
crit "$BUILD/test-integration" --jobs 1

for t in tests/extra/*.sh; do
	[ -f "$t" ] || continue
	echo "== $t"
	t0=$(date +%s)
	out=$(timeout 1800 sh "$t" 2>&1)
	rc=$?
	echo "== $t: exit $rc after $(($(date +%s) - t0)) s"
	case $rc in
	0) echo "$out" | tail -20; pass=$((pass + 1)) ;;
	77) echo "$out" | tail -20; skip=$((skip + 1)); echo "[SKIP] $t: $(echo "$out" | tail -1)" ;;
	*)
		echo "$out"
		fail=$((fail + 1))
		echo "[FAIL] $t (exit $rc)"
		echo "$t" >> "$failed"
		# its first words of failure, repeated at the end where a log's tail keeps them
		echo "$out" | grep -E 'FAIL|error' | head -3 | cut -c1-400 | sed "s|^|  ${t##*/}: |" >> "$why"
		;;
	esac
done

# The failures by name just above the count, where a log's tail shows them.
[ -s "$why" ] && cat "$why"
[ -s "$failed" ] && echo "failed: $(tr '\n' ' ' < "$failed")"
echo "$pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ]
