#!/bin/bash
# srv_memcached.sh - memcached -t 4 holding SRV_MEMCACHED_SIZE (default 1G) of
# values moves from the source host to the target host with `haul migrate
# --move-address 198.18.0.100/24` while 16 clients on the client host do
# checked set/get on it (issue 11, Deliver 5):
#  - zero client errors, zero wrong values, zero reconnects, and the clients
#    keep getting answers from the target afterwards;
#  - the dataset is identical: every filled value reads back byte for byte
#    (memcached has no digest; its -m leaves room, so nothing is evicted);
#  - memcached runs on the target only, the address is there only, no haul
#    nftables/iptables rule is left.
# A refusal by haul is a failure (haul's words are printed), not a skip.
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
set -u
. "$(dirname "$0")/srv_hosts.shlib"
SIZE=${SRV_MEMCACHED_SIZE:-1G}
srv_require_base
srv_require_pkgs memcached python3 nftables
srv_require_prog srvload_memcached
bytes=$(srv_size_bytes "$SIZE")
srv_need_mem $((bytes * 3 + (512 << 20)))
# 64 KiB items land in slab classes up to 25% larger: 1.5x plus slack
mem_mb=$((bytes * 3 / 2 / 1048576 + 64))

srv_hosts_up "${SRV_RATE:-}"
srv_pageserver
srv_bg src "$SRV_DIR/mc.log" memcached -u root -l 0.0.0.0 -p 11211 -U 0 -t 4 -m "$mem_mb" -c 1024
mc=$SRV_BG_PID
srv_migrated_pids+=("$mc")
srv_wait_tcp cli "$SRV_ADDR" 11211 || srv_fail "memcached does not accept connections: $(tail -3 "$SRV_DIR/mc.log")"
wait_comm "$mc" memcached || srv_fail "pid $mc is not memcached"

srv_in cli "$PROGS/srvload_memcached" --host "$SRV_ADDR" --fill "$SIZE" \
	--json "$SRV_DIR/fill.json" >/dev/null || srv_fail "fill of $SIZE: $(cat "$SRV_DIR/fill.json")"
srv_in cli "$PROGS/srvload_memcached" --host "$SRV_ADDR" --fill "$SIZE" --check \
	--json "$SRV_DIR/check0.json" >/dev/null ||
	srv_fail "the fill does not read back before the move (evicted?): $(cat "$SRV_DIR/check0.json")"
srv_say "memcached pid $mc holds $SIZE ($(srv_json "$SRV_DIR/fill.json" keys) keys, -m $mem_mb)"

srv_load_start memcached "$SRV_DIR/load.log" "$SRV_DIR/load.json" --port 11211 --conns 16
srv_load_progress "$SRV_DIR/load.log" 2 || srv_fail "the clients made no progress before the move"
srv_migrate_or_fail "$mc"
mrc=$?
if [ $mrc -ne 0 ]; then
	srv_load_stop "$SRV_LOAD_PID" "$SRV_DIR/load.log" "$SRV_DIR/load.json"
	srv_fail "haul migrate did not move memcached (exit $mrc; see its output above)"
fi
srv_say "haul migrate: downtime $(srv_downtime) ms"
srv_haul_summary
fail=0
srv_check_moved memcached || fail=1
srv_load_progress "$SRV_DIR/load.log" 2 || { srv_say "the clients stopped getting answers after the move"; fail=1; }
srv_load_stop "$SRV_LOAD_PID" "$SRV_DIR/load.log" "$SRV_DIR/load.json" ||
	{ srv_say "the clients saw errors, wrong values or reconnects"; fail=1; }
srv_in cli "$PROGS/srvload_memcached" --host "$SRV_ADDR" --fill "$SIZE" --check \
	--json "$SRV_DIR/check.json" >/dev/null ||
	{ srv_say "filled values read back wrong: $(cat "$SRV_DIR/check.json")"; fail=1; }
if [ $fail -ne 0 ]; then
	srv_say "the server's output (the restored copy writes to the same file):"
	tail -5 "$SRV_DIR/mc.log" | sed 's/^/    /'
	srv_fail "memcached did not move intact under load"
fi
srv_say "PASS: $SIZE moved, clients max latency $(srv_json "$SRV_DIR/load.json" max) ms, largest gap $(srv_json "$SRV_DIR/load.json" max_gap_ms) ms, dataset identical"
exit 0
