#!/bin/bash
# srv_pipeline.sh - a shell pipeline with data in flight,
#   sh -c 'PRODUCER | gzip -1 | sha256sum > out'
# moves from the source host to the target host with `haul migrate SH` in the
# middle of its stream (issue 12, Deliver 6): the output is identical to the
# one an undisturbed run of the same pipeline writes.
#
# The producer is deterministic and incompressible: SIZE bytes (default 160M,
# SRV_PIPE_SIZE) of AES-128-CTR keystream under a fixed key (`openssl enc` of
# /dev/zero, cut by `head -c`), so gzip is the slow stage and every pipe
# between the five processes holds data when the tree freezes.  "Mid-stream"
# is checked, not hoped for: gzip has read at least 8 MiB and the pipeline
# still runs when haul starts, and after the move gzip runs on the target.
# A refusal by haul is a failure (haul's words are printed), not a skip.
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
set -u
. "$(dirname "$0")/srv_hosts.shlib"
SIZE=${SRV_PIPE_SIZE:-160M}
srv_require_base
srv_require_pkgs openssl gzip coreutils nftables
command -v openssl >/dev/null 2>&1 || srv_skip "openssl is not installed (Debian: openssl)"

# pipeline OUT: the command line of the pipeline writing its digest to OUT
pipeline() {
	echo "openssl enc -aes-128-ctr -nosalt -K 000102030405060708090a0b0c0d0e0f" \
		"-iv 0f0e0d0c0b0a09080706050403020100 -in /dev/zero 2>/dev/null |" \
		"head -c $SIZE | gzip -1 | sha256sum > $1"
}

# gzip_read PID: bytes the gzip child of sh PID has read so far (0 if none yet)
gzip_read() {
	local c
	for c in $(cat /proc/"$1"/task/*/children 2>/dev/null); do
		[ "$(cat /proc/"$c"/comm 2>/dev/null)" = gzip ] || continue
		awk '/^rchar:/ { print $2 }' /proc/"$c"/io 2>/dev/null
		return 0
	done
	echo 0
}

srv_hosts_up "${SRV_RATE:-}"
srv_pageserver
srv_bg src "$SRV_DIR/pipe.log" sh -c "$(pipeline "$SRV_DIR/out")"
sh_pid=$SRV_BG_PID
srv_migrated_pids+=("$sh_pid")
n=0
until [ "$(gzip_read "$sh_pid")" -ge $((8 << 20)) ]; do
	kill -0 "$sh_pid" 2>/dev/null || srv_fail "the pipeline ended before it was 8 MiB in: $(cat "$SRV_DIR/pipe.log")"
	n=$((n + 1))
	[ $n -lt 1200 ] || srv_fail "gzip did not read 8 MiB in 60 s"
	sleep 0.05
done
before=$(gzip_read "$sh_pid")
[ -s "$SRV_DIR/out" ] && srv_fail "the pipeline finished before the move: make SRV_PIPE_SIZE larger"
srv_say "pipeline sh pid $sh_pid ($(cat /proc/"$sh_pid"/task/*/children | wc -w) children), gzip has read $((before >> 20)) MiB of $SIZE"

srv_migrate_or_fail "$sh_pid"
mrc=$?
[ $mrc -eq 0 ] || srv_fail "haul migrate did not move the pipeline (exit $mrc; see its output above)"
srv_say "haul migrate: downtime $(srv_downtime) ms"
srv_haul_summary
moved=$(srv_pid_on dst gzip)
fail=0
if [ -s "$SRV_DIR/out" ] && [ -z "$moved" ]; then
	srv_say "the pipeline had finished when haul migrate returned: cannot tell it moved mid-stream (make SRV_PIPE_SIZE larger)"
	fail=1
fi
[ -z "$(srv_pid_on src gzip)" ] || { srv_say "gzip still runs on the source"; fail=1; }
[ -z "$(srv_pid_on src sh)" ] || { srv_say "the pipeline's sh still runs on the source"; fail=1; }
[ $fail -eq 0 ] || srv_fail "the pipeline did not move mid-stream"

# the moved pipeline finishes on the target: its sh exits after sha256sum
moved_sh=$(srv_pid_on dst sh)
n=0
while [ -n "$moved_sh" ] && [ -d /proc/"$moved_sh" ] &&
	[ "$(awk '{ print $3 }' /proc/"$moved_sh"/stat 2>/dev/null)" != Z ]; do
	n=$((n + 1))
	[ $n -lt 3600 ] || srv_fail "the moved pipeline (sh pid $moved_sh) did not finish in 180 s"
	sleep 0.05
done
wait_line "$SRV_DIR/out" ' -$' 10 || srv_fail "the moved pipeline wrote no digest: $(cat "$SRV_DIR/pipe.log")"

# the same pipeline, undisturbed, on the host
sh -c "$(pipeline "$SRV_DIR/ref")" || srv_fail "the undisturbed pipeline failed"
got=$(cat "$SRV_DIR/out")
want=$(cat "$SRV_DIR/ref")
[ "$got" = "$want" ] ||
	srv_fail "output differs from an undisturbed run: moved '$got', undisturbed '$want'"
srv_say "PASS: moved mid-stream ($((before >> 20)) MiB in), output identical to an undisturbed run: ${got%% *}"
exit 0
