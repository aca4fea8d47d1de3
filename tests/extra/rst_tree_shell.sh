#!/bin/bash
# rst_tree_shell.sh - a real shell job as a process tree (issue 12): dash
# runs `seq | while read; echo | gzip | sha256sum > out` (Debian's tools);
# `haul checkpoint` of the shell takes the shell and its four children with
# the bytes in flight in the three pipes, kills them, and `haul restore`
# brings the job back: the digest is the undisturbed run's.
#
# Three cases, by the session the job is in:
#  named     the job leads its own session (setsid);
#  unnamed   the job's session and group are led outside the PID namespace
#            haul runs in (it sees sid 0, pgid 0): a CI runner started by a
#            service manager is in the kernel's first session, sid 0;
#  outgroup  the same session, the job's group led by its parent outside
#            the tree (pgid visible, sid 0).
# The two last run inside `unshare --pid`, haul too.
# Exit 0 pass, 77 skip, else fail.
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
set -u
HAUL=${HAUL_BIN:-$PWD/build/haul}
JOB='seq 1 300000 | while read l; do echo line $l; done | gzip | sha256sum > out'
. "$(dirname "$0")/th_wait.shlib"

# one_case MODE DIR: the job started, checkpointed, killed and restored in DIR.
one_case() {
	local mode=$1 D=$2 pid="" sh=""
	cd "$D" || return 1
	echo "$JOB" >job.sh
	# Only /dev/null on 0-2: a pipe or file inherited from the test runner would be
	# shared with a process outside the tree (refused, by name).
	for fd in /proc/$BASHPID/fd/*; do
		n=${fd##*/}
		[ "$n" -gt 2 ] && eval "exec $n>&-"
	done
	exec </dev/null >"$D/case.log" 2>&1
	case $mode in
	named) setsid dash job.sh >/dev/null 2>&1 & pid=$! ;;
	unnamed) dash job.sh >/dev/null 2>&1 & pid=$! ;;
	outgroup)
		set -m # the parent below leads a group of its own
		sh -c 'dash job.sh; :' >/dev/null 2>&1 &
		sh=$!
		set +m
		n=200
		while [ $n -gt 0 ] && [ -z "$pid" ]; do
			pid=$(pgrep -P "$sh" -x dash)
			sleep 0.05
			n=$((n - 1))
		done
		;;
	esac
	# In flight: gzip is running (a child of the shell) and the job is not done.
	n=200
	while [ $n -gt 0 ] && ! pgrep -P "${pid:-0}" -x gzip >/dev/null; do
		sleep 0.05
		n=$((n - 1))
	done
	[ $n -gt 0 ] || { echo "the job did not start"; return 1; }
	echo "job pid $pid: pgid $(ps -o pgid= -p "$pid" | tr -d " "), sid $(ps -o sid= -p "$pid" | tr -d " ")"
	"$HAUL" checkpoint "$pid" --images "$D/img" || { echo "FAIL: checkpoint of the shell job"; return 1; }
	wait "$pid" 2>/dev/null
	[ -s out ] && { echo "FAIL: the job ended before its checkpoint"; return 1; }
	"$HAUL" restore --images "$D/img" || { echo "FAIL: restore of the shell job"; return 1; }
	[ -n "$sh" ] && wait "$sh" 2>/dev/null
	return 0
}

if [ "${1:-}" = --case ]; then
	one_case "$2" "$3"
	exit $?
fi

[ "$(id -u)" = 0 ] || { echo "needs root (ptrace, clone3 set_tid, mount)"; exit 77; }
[ -x "$HAUL" ] || { echo "build haul first"; exit 77; }
for t in dash seq gzip sha256sum unshare pgrep; do
	command -v $t >/dev/null || { echo "no $t here"; exit 77; }
done
TOP=$(mktemp -d /tmp/haul-rst-tree-shell-$$.XXXXXX)
kids=()
cleanup() {
	for k in "${kids[@]}"; do
		kill -9 "$k" 2>/dev/null
	done
	rm -rf "$TOP"
}
trap cleanup EXIT

want=$(cd "$TOP" && dash -c "$JOB" && cat out) || { echo "the job fails undisturbed"; exit 1; }
fail=0
for mode in named unnamed outgroup; do
	D=$TOP/$mode
	mkdir -p "$D"
	if [ $mode = named ]; then
		timeout 300 bash "$0" --case $mode "$D" &
	else
		timeout 300 unshare --pid --fork --mount-proc bash "$0" --case $mode "$D" &
	fi
	kids+=($!)
	wait $!
	rc=$?
	got=$(cat "$D/out" 2>/dev/null)
	if [ $rc -ne 0 ] || [ "$got" != "$want" ]; then
		echo "FAIL: $mode: exit $rc, digest '$got', undisturbed '$want'; its log:"
		sed 's/^/    /' "$D/case.log"
		fail=1
	else
		echo "$mode: $(head -1 "$D/case.log"): the restored job gave the undisturbed digest"
	fi
done
[ $fail -eq 0 ] || exit 1
echo "PASS: the restored shell job gave the undisturbed digest in every session"
exit 0
