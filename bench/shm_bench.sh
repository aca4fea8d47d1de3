#!/bin/sh
# bench/shm_bench.sh - `make bench-shmem`: pre-copy of a process whose data is
# 1 GiB (SHM_MIB) of shared memory with a small writer (32 hot pages rewritten
# every 1 ms, tests/progs/shm_workload), against stop-and-copy in the same
# run, on loopback (page server and source on this host; the target runs in
# a new PID namespace).  Per kind (anon, memfd, sysv of a page-aligned size,
# sysv-1000: 1000 bytes short of it, which the restore must make again at
# its exact size in the downtime: see DESIGN.md "Shared memory") and mode: downtime,
# total time, rounds and the pages of the frozen round.  Shared memory is
# tracked with uffd-wp like private memory, so the frozen round carries the
# dirty pages only; a tracker that left shmem untracked (CRIU's default)
# would copy the whole segment in the freeze, as stop-and-copy does here.
# Exit 0, or 77 when not root.
set -u
BUILD=${BUILD:-build}
MIB=${SHM_MIB:-1024}
KINDS=${SHM_KINDS:-"anon memfd sysv sysv-1000"}
haul=$BUILD/haul
wl=$BUILD/progs/shm_workload
[ "$(id -u)" = 0 ] || { echo "shm_bench: needs root"; exit 77; }
dir=$(mktemp -d /tmp/haul-shm-bench-$$.XXXX)
key=$dir/key
head -c 32 /dev/urandom >"$key"
chmod 600 "$key"
skey=$(printf '0x%x' $((0x5b000000 + $$ % 65536))) # ipcrm takes keys in hex only
trap 'kill $ps $src 2>/dev/null; ipcrm -M $skey 2>/dev/null; rm -rf "$dir"' EXIT

json_num() { sed -n "s/.*\"$2\": \([0-9.]*\).*/\1/p" "$1" | head -1; }
last_round() { sed -n 's/.*"pages_per_round": \[\(.*\)\].*/\1/p' "$1" | tr -d ' ' | awk -F, '{print $NF}'; }

printf '%-9s %-14s %9s %9s %7s %12s\n' kind mode downtime total rounds frozen_pages
for kind in $KINDS; do
	for mode in pre-copy stop-and-copy; do
		out=$dir/ps.out
		"$haul" pageserver --listen 127.0.0.1:0 --key "$key" --once >"$out" 2>&1 &
		ps=$!
		for i in $(seq 50); do grep -q 'listening on' "$out" && break; sleep 0.1; done
		addr=$(sed -n 's/.*listening on \([0-9.:]*\).*/\1/p' "$out" | head -1)
		# only stdin/out/err open: what haul migrates
		short=0
		k=$kind
		[ $kind = sysv-1000 ] && { k=sysv; short=1000; }
		(exec 3>&- 4>&- 5>&- 6>&- 7>&- 8>&- 9>&-; exec "$wl" --kind "$k" --mem "$MIB" \
			--sysv-short $short \
			--hot 32 --key $skey --tag bench$$ \
			--control "$dir/control" >"$dir/wl.out" 2>&1 </dev/null) &
		src=$!
		for i in $(seq 600); do grep -q '^tick' "$dir/wl.out" 2>/dev/null && break; sleep 0.1; done
		sleep 1 # some writes before the move
		extra="--downtime 100"
		[ $mode = stop-and-copy ] && extra="--stop-and-copy"
		if "$haul" migrate $src --to "$addr" --key "$key" $extra --json "$dir/j" \
			>"$dir/mig.out" 2>&1; then
			printf '%-9s %-14s %7.1fms %7.0fms %7s %12s\n' $kind $mode \
				"$(json_num "$dir/j" downtime_ms)" "$(json_num "$dir/j" total_ms)" \
				"$(json_num "$dir/j" rounds)" "$(last_round "$dir/j")"
		else
			echo "$kind $mode: migrate failed: $(tail -1 "$dir/mig.out")"
		fi
		pid=$(json_num "$dir/j" target_pid)
		[ -n "$pid" ] && kill -9 "$pid" 2>/dev/null
		kill -9 $src $ps 2>/dev/null
		wait 2>/dev/null
		ipcrm -M $skey 2>/dev/null
	done
done
exit 0
