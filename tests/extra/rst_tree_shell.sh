#!/bin/bash
# rst_tree_shell.sh - a real shell job as a process tree (issue 12): dash
# runs `seq | while read; echo | gzip | sha256sum > out` (Debian's tools);
# `haul checkpoint` of the shell takes the shell and its four children with
# the bytes in flight in the three pipes, kills them, and `haul restore`
# brings the job back: the digest is the undisturbed run's.
# Exit 0 pass, 77 skip, else fail.
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
set -u
HAUL=${HAUL_BIN:-$PWD/build/haul}
[ "$(id -u)" = 0 ] || { echo "needs root (ptrace, clone3 set_tid, mount)"; exit 77; }
[ -x "$HAUL" ] || { echo "build haul first"; exit 77; }
for t in dash seq gzip sha256sum; do
	command -v $t >/dev/null || { echo "no $t here"; exit 77; }
done
. "$(dirname "$0")/th_wait.shlib"
D=$(mktemp -d /tmp/haul-rst-tree-shell-$$.XXXXXX)
JOB='seq 1 300000 | while read l; do echo line $l; done | gzip | sha256sum > out'
pid=""
cleanup() {
	[ -n "$pid" ] && pkill -9 -s "$pid" 2>/dev/null
	rm -rf "$D"
}
trap cleanup EXIT

want=$(cd "$D" && dash -c "$JOB" && cat out) || { echo "the job fails undisturbed"; exit 1; }
rm -f "$D/out"
# Only /dev/null on 0-2: a pipe or file inherited from the test runner would be shared
# with a process outside the tree (refused, by name).
(
	cd "$D" || exit 1
	for fd in /proc/$BASHPID/fd/*; do
		n=${fd##*/}
		[ "$n" -gt 2 ] && eval "exec $n>&-"
	done
	exec setsid dash -c "$JOB" </dev/null >/dev/null 2>&1
) &
pid=$!
# In flight: gzip is running (a child of the shell) and the job is not done.
n=200
while [ $n -gt 0 ] && ! pgrep -P "$pid" -x gzip >/dev/null; do sleep 0.05; n=$((n - 1)); done
[ $n -gt 0 ] || { echo "the job did not start"; exit 1; }
if ! "$HAUL" checkpoint "$pid" --images "$D/img"; then
	echo "FAIL: checkpoint of the shell job"
	exit 1
fi
wait "$pid" 2>/dev/null
[ -s "$D/out" ] && { echo "FAIL: the job ended before its checkpoint"; exit 1; }
if ! (cd "$D" && "$HAUL" restore --images "$D/img"); then
	echo "FAIL: restore of the shell job"
	exit 1
fi
got=$(cat "$D/out")
if [ "$got" != "$want" ]; then
	echo "FAIL: digest '$got', undisturbed '$want'"
	exit 1
fi
echo "PASS: the restored shell job gave the undisturbed digest"
exit 0
