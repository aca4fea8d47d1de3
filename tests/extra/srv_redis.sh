#!/bin/bash
# srv_redis.sh - redis-server holding a dataset of SRV_REDIS_SIZE (default 1G,
# persistence off) moves from the source host to the target host with
# `haul migrate --move-address 198.18.0.100/24` while 16 clients on the
# client host do checked SET/GET on it (issue 11, Deliver 5):
#  - zero client errors, zero wrong values, zero reconnects, and the clients
#    keep getting answers from the target afterwards;
#  - the dataset is identical: DBSIZE and DEBUG DIGEST equal to before (the
#    clients delete their own keys at the end), and every filled value reads
#    back byte for byte;
#  - redis-server runs on the target only, the address is there only, no haul
#    nftables/iptables rule is left.
# A refusal by haul is a failure (haul's words are printed), not a skip.
# SRV_REDIS_UPGRADED=1 (srv_redis_upgraded.sh): redis-server runs from a copy
# of its binary with copies of libssl and libcrypto, all three deleted and
# replaced by new files once it serves (a package upgrade under a running
# server): they move by content, and the target's new files stay untouched.
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
set -u
. "$(dirname "$0")/srv_hosts.shlib"
SIZE=${SRV_REDIS_SIZE:-1G}
srv_require_base
srv_require_pkgs redis-server redis-tools python3 nftables
srv_require_prog srvload_redis
srv_need_mem $(($(srv_size_bytes "$SIZE") * 3 + (512 << 20)))

srv_hosts_up "${SRV_RATE:-}"
srv_pageserver
server=redis-server
up=$SRV_DIR/upgraded
if [ -n "${SRV_REDIS_UPGRADED:-}" ]; then
	mkdir -p "$up/lib" && cp /usr/bin/redis-server "$up/redis-server" &&
		cp /lib/x86_64-linux-gnu/libssl.so.3 /lib/x86_64-linux-gnu/libcrypto.so.3 "$up/lib/" ||
		srv_fail "cannot copy redis-server and its libraries"
	server=$up/redis-server
fi
LD_LIBRARY_PATH=${SRV_REDIS_UPGRADED:+$up/lib} srv_bg src "$SRV_DIR/redis.log" "$server" \
	--bind 0.0.0.0 --port 6379 --save '' --appendonly no --protected-mode no \
	--enable-debug-command yes --dir "$SRV_DIR"
redis=$SRV_BG_PID
srv_migrated_pids+=("$redis")
wait_line "$SRV_DIR/redis.log" "Ready to accept connections" 20 ||
	srv_fail "redis-server did not start: $(tail -3 "$SRV_DIR/redis.log")"
wait_comm "$redis" redis-server || srv_fail "pid $redis is not redis-server"
if [ -n "${SRV_REDIS_UPGRADED:-}" ]; then
	for f in "$up/redis-server" "$up/lib/libssl.so.3" "$up/lib/libcrypto.so.3"; do
		rm "$f" && echo new >"$f" || srv_fail "cannot replace $f"
	done
	[ "$(grep -c "$up.* (deleted)" /proc/$redis/maps)" -ge 3 ] ||
		srv_fail "redis-server does not map its replaced files deleted"
	srv_say "redis-server's binary, libssl and libcrypto replaced under it (deleted)"
fi

srv_in cli "$PROGS/srvload_redis" --host "$SRV_ADDR" --fill "$SIZE" --json "$SRV_DIR/fill.json" \
	>/dev/null || srv_fail "fill of $SIZE: $(cat "$SRV_DIR/fill.json")"
dbsize=$(srv_in cli redis-cli -h "$SRV_ADDR" DBSIZE)
digest=$(srv_in cli redis-cli -h "$SRV_ADDR" DEBUG DIGEST)
srv_say "redis-server pid $redis holds $SIZE: $dbsize keys, DEBUG DIGEST $digest"

srv_load_start redis "$SRV_DIR/load.log" "$SRV_DIR/load.json" --port 6379 --conns 16
srv_load_progress "$SRV_DIR/load.log" 2 || srv_fail "the clients made no progress before the move"
srv_migrate_or_fail "$redis"
mrc=$?
if [ $mrc -ne 0 ]; then
	srv_load_stop "$SRV_LOAD_PID" "$SRV_DIR/load.log" "$SRV_DIR/load.json"
	srv_fail "haul migrate did not move redis-server (exit $mrc; see its output above)"
fi
srv_say "haul migrate: downtime $(srv_downtime) ms"
srv_haul_summary
fail=0
srv_check_moved redis-server || fail=1
if [ -n "${SRV_REDIS_UPGRADED:-}" ]; then
	[ "$(cat "$up/redis-server" "$up/lib/libssl.so.3" "$up/lib/libcrypto.so.3")" = "new
new
new" ] || { srv_say "the new files at the paths were touched"; fail=1; }
	[ "$(grep -c "$up.* (deleted)" "/proc/$SRV_MOVED_PID/maps" 2>/dev/null)" -ge 3 ] ||
		{ srv_say "the moved redis-server does not map the old files deleted"; fail=1; }
	[ "$(ls -a "$up" "$up/lib" | grep -c '\.haul-')" = 0 ] ||
		{ srv_say "made-again files left: $(ls -a "$up" "$up/lib")"; fail=1; }
fi
srv_load_progress "$SRV_DIR/load.log" 2 || { srv_say "the clients stopped getting answers after the move"; fail=1; }
srv_load_stop "$SRV_LOAD_PID" "$SRV_DIR/load.log" "$SRV_DIR/load.json" ||
	{ srv_say "the clients saw errors, wrong values or reconnects"; fail=1; }
after_size=$(srv_in cli redis-cli -h "$SRV_ADDR" DBSIZE)
after_digest=$(srv_in cli redis-cli -h "$SRV_ADDR" DEBUG DIGEST)
[ "$after_size" = "$dbsize" ] && [ "$after_digest" = "$digest" ] ||
	{ srv_say "dataset changed: DBSIZE $dbsize -> $after_size, DEBUG DIGEST $digest -> $after_digest"; fail=1; }
srv_in cli "$PROGS/srvload_redis" --host "$SRV_ADDR" --fill "$SIZE" --check \
	--json "$SRV_DIR/check.json" >/dev/null ||
	{ srv_say "filled values read back wrong: $(cat "$SRV_DIR/check.json")"; fail=1; }
if [ $fail -ne 0 ]; then
	srv_say "the server's output (the restored copy writes to the same file):"
	tail -5 "$SRV_DIR/redis.log" | sed 's/^/    /'
	srv_fail "redis-server did not move intact under load"
fi
srv_say "PASS: $SIZE moved, clients max latency $(srv_json "$SRV_DIR/load.json" max) ms, largest gap $(srv_json "$SRV_DIR/load.json" max_gap_ms) ms, dataset identical"
exit 0
