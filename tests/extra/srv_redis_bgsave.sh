#!/bin/bash
# srv_redis_bgsave.sh - redis-server holding SRV_REDIS_SIZE (default 256M) moves
# from the source host to the target host with `haul migrate --move-address
# 198.18.0.100/24` while its BGSAVE child is writing the snapshot and 16
# clients on the client host do checked SET/GET on it (issue 12, Deliver 6):
#  - the BGSAVE child is running when haul starts and is frozen and moved
#    with its parent (checked, not hoped for: haul's report counts both
#    processes; rdb-key-save-delay makes each key cost SRV_REDIS_SAVE_DELAY
#    microseconds to save);
#  - the child finishes on the target: the parent reaps it and reports the
#    save ok, LASTSAVE advances, and the snapshot it wrote passes
#    redis-check-rdb with every filled key in it;
#  - zero client errors, wrong values or reconnects (as srv_redis.sh), the
#    filled values read back byte for byte, redis-server runs on the target
#    only, the address is there only, no haul nftables/iptables rule is left.
# Parent and child share the listening and client sockets and the epoll set
# they inherited over fork, and a pipe (the child's report); they move as one
# tree.  A refusal by haul is a failure (haul's words are printed), not a skip.
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
set -u
. "$(dirname "$0")/srv_hosts.shlib"
SIZE=${SRV_REDIS_SIZE:-256M}
DELAY=${SRV_REDIS_SAVE_DELAY:-1000}
srv_require_base
srv_require_pkgs redis-server redis-tools python3 nftables
command -v redis-check-rdb >/dev/null 2>&1 || srv_skip "redis-check-rdb is not installed (Debian: redis-tools)"
srv_require_prog srvload_redis
srv_need_mem $(($(srv_size_bytes "$SIZE") * 4 + (512 << 20)))

# info FIELD: the value of FIELD in INFO persistence, asked from the client host
info() {
	srv_in cli redis-cli -h "$SRV_ADDR" INFO persistence | tr -d '\r' | sed -n "s/^$1://p"
}

srv_hosts_up "${SRV_RATE:-}"
srv_pageserver
srv_bg src "$SRV_DIR/redis.log" redis-server --bind 0.0.0.0 --port 6379 --save '' \
	--appendonly no --protected-mode no --enable-debug-command yes --dir "$SRV_DIR" \
	--dbfilename dump.rdb
redis=$SRV_BG_PID
srv_migrated_pids+=("$redis")
wait_line "$SRV_DIR/redis.log" "Ready to accept connections" 20 ||
	srv_fail "redis-server did not start: $(tail -3 "$SRV_DIR/redis.log")"
wait_comm "$redis" redis-server || srv_fail "pid $redis is not redis-server"

srv_in cli "$PROGS/srvload_redis" --host "$SRV_ADDR" --fill "$SIZE" --json "$SRV_DIR/fill.json" \
	>/dev/null || srv_fail "fill of $SIZE: $(cat "$SRV_DIR/fill.json")"
fill_keys=$(srv_in cli redis-cli -h "$SRV_ADDR" DBSIZE)
srv_say "redis-server pid $redis holds $SIZE: $fill_keys keys"

srv_load_start redis "$SRV_DIR/load.log" "$SRV_DIR/load.json" --port 6379 --conns 16
srv_load_progress "$SRV_DIR/load.log" 2 || srv_fail "the clients made no progress before the move"
lastsave=$(srv_in cli redis-cli -h "$SRV_ADDR" LASTSAVE)
# the delay only while this BGSAVE forks: the child inherits it, the restored
# parent's later saves would not need it
srv_in cli redis-cli -h "$SRV_ADDR" CONFIG SET rdb-key-save-delay "$DELAY" >/dev/null ||
	srv_fail "redis-server refuses CONFIG SET rdb-key-save-delay"
srv_in cli redis-cli -h "$SRV_ADDR" BGSAVE | grep -q "started" || srv_fail "BGSAVE did not start"
srv_in cli redis-cli -h "$SRV_ADDR" CONFIG SET rdb-key-save-delay 0 >/dev/null
child=$(cat /proc/"$redis"/task/*/children 2>/dev/null)
[ -n "$child" ] && [ "$(info rdb_bgsave_in_progress)" = 1 ] ||
	srv_fail "no BGSAVE child runs under pid $redis"
srv_say "BGSAVE child pid $child writes the snapshot ($DELAY us a key, about $((fill_keys * DELAY / 1000000)) s)"

srv_migrate_or_fail "$redis"
mrc=$?
if [ $mrc -ne 0 ]; then
	srv_load_stop "$SRV_LOAD_PID" "$SRV_DIR/load.log" "$SRV_DIR/load.json"
	srv_fail "haul migrate did not move redis-server (exit $mrc; see its output above)"
fi
in_progress=$(info rdb_bgsave_in_progress)
srv_say "haul migrate: downtime $(srv_downtime) ms"
srv_haul_summary
fail=0
srv_check_moved redis-server || fail=1
# Mid-save: the BGSAVE child was frozen and moved with its parent (haul's report
# counts 2 processes; a child that ended during pre-copy restarts the migration
# with the parent alone).  Whether it still ran when haul returned is only
# reported: a restore slowed down by a busy machine may outlast the save.
procs=$(srv_json "$SRV_DIR/migrate.json" processes)
srv_say "haul moved $procs processes; rdb_bgsave_in_progress $in_progress when it returned"
[ "$procs" = 2 ] || { srv_say "haul moved $procs processes, not redis-server and its BGSAVE child: the save was over before the freeze; raise SRV_REDIS_SAVE_DELAY"; fail=1; }
n=0
while [ "$(info rdb_bgsave_in_progress)" = 1 ]; do
	n=$((n + 1))
	[ $n -lt 1200 ] || { srv_say "the moved BGSAVE did not end in 120 s"; fail=1; break; }
	sleep 0.1
done
status=$(info rdb_last_bgsave_status)
[ "$status" = ok ] || { srv_say "the moved BGSAVE ended with status '$status'"; fail=1; }
after=$(srv_in cli redis-cli -h "$SRV_ADDR" LASTSAVE)
[ "$after" -gt "$lastsave" ] 2>/dev/null || { srv_say "LASTSAVE did not advance ($lastsave -> $after)"; fail=1; }
redis-check-rdb "$SRV_DIR/dump.rdb" >"$SRV_DIR/check-rdb.log" 2>&1 ||
	{ srv_say "redis-check-rdb rejects the snapshot: $(tail -3 "$SRV_DIR/check-rdb.log")"; fail=1; }
keys=$(sed -n 's/.*\[info\] \([0-9]*\) keys read.*/\1/p' "$SRV_DIR/check-rdb.log")
[ "${keys:-0}" -ge "$fill_keys" ] ||
	{ srv_say "the snapshot holds ${keys:-no} keys, fewer than the $fill_keys filled"; fail=1; }
srv_load_progress "$SRV_DIR/load.log" 2 || { srv_say "the clients stopped getting answers after the move"; fail=1; }
srv_load_stop "$SRV_LOAD_PID" "$SRV_DIR/load.log" "$SRV_DIR/load.json" ||
	{ srv_say "the clients saw errors, wrong values or reconnects"; fail=1; }
srv_in cli "$PROGS/srvload_redis" --host "$SRV_ADDR" --fill "$SIZE" --check \
	--json "$SRV_DIR/check.json" >/dev/null ||
	{ srv_say "filled values read back wrong: $(cat "$SRV_DIR/check.json")"; fail=1; }
if [ $fail -ne 0 ]; then
	srv_say "the server's output (the restored copy writes to the same file):"
	tail -5 "$SRV_DIR/redis.log" | sed 's/^/    /'
	srv_fail "redis-server and its BGSAVE child did not move intact"
fi
srv_say "PASS: moved mid-BGSAVE, snapshot valid ($keys keys), clients max latency $(srv_json "$SRV_DIR/load.json" max) ms"
exit 0
