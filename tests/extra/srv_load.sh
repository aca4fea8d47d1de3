#!/bin/bash
# srv_load.sh - the ground the server migration tests stand on, without a
# migration: the three-host topology of srv_hosts.shlib, and the load clients
# against servers that stay where they are.
#  1. the client host reaches the service address 198.18.0.100 on the source;
#  2. redis-server, memcached -t 4, the asyncio HTTP server and the UDP echo
#     server each serve 16 checked client connections with 0 errors, 0 wrong
#     values, 0 reconnects (latency p50/p99/max printed); a Redis fill reads
#     back intact and the load leaves DEBUG DIGEST as it found it;
#  3. a server killed under load is seen by its clients: errors counted by
#     kind, exit status 1 (a client that missed it would pass anything);
#  4. a value changed behind the clients' back is reported as wrong;
#  5. after the EXIT trap: no namespace, process or cgroup of the run is left.
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
set -u
. "$(dirname "$0")/srv_hosts.shlib"
srv_require_base
srv_require_pkgs redis-server redis-tools memcached python3
srv_require_prog srvload_redis srvload_memcached srvload_http srvload_udp
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=$(mktemp -d /tmp/haul-srv-load-$$.XXXXXX)
trap 'rm -rf "$OUT"' EXIT

# one client run of SECONDS against a server that stays up: must be clean
clean_run() {
	local proto=$1 port=$2
	shift 2
	srv_in cli "$PROGS/srvload_$proto" --host "$SRV_ADDR" --port "$port" --duration 2 \
		--json "$SRV_DIR/$proto.json" "$@" >/dev/null 2>"$SRV_DIR/$proto.log"
	local rc=$?
	srv_say "$proto: $(tr -d '\n' <"$SRV_DIR/$proto.json" | tr -s ' ')"
	[ $rc -eq 0 ] && [ "$(srv_json "$SRV_DIR/$proto.json" errors)" = 0 ] &&
		[ "$(srv_json "$SRV_DIR/$proto.json" wrong_values)" = 0 ] &&
		[ "$(srv_json "$SRV_DIR/$proto.json" reconnects)" = 0 ] &&
		[ "$(srv_json "$SRV_DIR/$proto.json" ops)" -gt 0 ] ||
		srv_fail "$proto clients against a server that stays up: exit $rc, $(tail -2 "$SRV_DIR/$proto.log")"
}

(
	srv_hosts_up
	echo "$SRV_NS_INODES" >"$OUT/inodes"
	srv_say "hosts up: $SRV_NS_SRC $SRV_NS_DST $SRV_NS_CLI on $SRV_NS_BR"
	srv_addr_on src || srv_fail "$SRV_ADDR is not on the source"
	srv_addr_on dst && srv_fail "$SRV_ADDR is on the target before any migration"

	srv_bg src "$SRV_DIR/redis.log" redis-server --bind 0.0.0.0 --port 6379 --save '' \
		--appendonly no --protected-mode no --enable-debug-command yes --dir "$SRV_DIR"
	redis=$SRV_BG_PID
	srv_bg src "$SRV_DIR/mc.log" memcached -u root -l 0.0.0.0 -p 11211 -U 0 -t 4 -m 256
	mc=$SRV_BG_PID
	srv_bg src "$SRV_DIR/http.log" python3 "$HERE/srv_asyncio_server.py" "$SRV_ADDR" 8080
	srv_bg src "$SRV_DIR/udp.log" python3 "$HERE/srv_udp_server.py" "$SRV_ADDR" 7777
	udp=$SRV_BG_PID
	wait_line "$SRV_DIR/redis.log" "Ready to accept connections" 20 || srv_fail "redis-server did not start"
	wait_line "$SRV_DIR/http.log" "^ready" 20 || srv_fail "the asyncio server did not start"
	wait_line "$SRV_DIR/udp.log" "^ready" 20 || srv_fail "the UDP echo server did not start"
	n=100
	until srv_in cli bash -c "exec 3<>/dev/tcp/$SRV_ADDR/11211" 2>/dev/null; do
		n=$((n - 1))
		[ $n -gt 0 ] || srv_fail "memcached does not accept connections"
		sleep 0.1
	done

	srv_in cli "$PROGS/srvload_redis" --host "$SRV_ADDR" --fill 64M --json "$SRV_DIR/fill.json" >/dev/null ||
		srv_fail "redis fill: $(cat "$SRV_DIR/fill.json")"
	before=$(srv_in cli redis-cli -h "$SRV_ADDR" DEBUG DIGEST)
	clean_run redis 6379
	clean_run memcached 11211
	clean_run http 8080
	clean_run udp 7777
	after=$(srv_in cli redis-cli -h "$SRV_ADDR" DEBUG DIGEST)
	[ -n "$before" ] && [ "$before" = "$after" ] ||
		srv_fail "the redis load changed the dataset: DEBUG DIGEST $before, then $after"
	srv_in cli "$PROGS/srvload_redis" --host "$SRV_ADDR" --fill 64M --check \
		--json "$SRV_DIR/check.json" >/dev/null ||
		srv_fail "redis fill read back wrong: $(cat "$SRV_DIR/check.json")"
	srv_say "redis: fill of 64M reads back intact, DEBUG DIGEST unchanged by the load ($after)"

	# a value changed behind the clients' back is a wrong value
	srv_in cli redis-cli -h "$SRV_ADDR" SET fill:3 tampered >/dev/null
	if srv_in cli "$PROGS/srvload_redis" --host "$SRV_ADDR" --fill 64M --check \
		--json "$SRV_DIR/check.json" >/dev/null 2>&1; then
		srv_fail "a tampered fill key was not noticed"
	fi
	[ "$(srv_json "$SRV_DIR/check.json" wrong_values)" = 1 ] ||
		srv_fail "tampered key: want 1 wrong value, got $(cat "$SRV_DIR/check.json")"
	srv_say "redis: a tampered key is reported as 1 wrong value"

	# servers killed under load: the clients count errors and fail
	# TCP: every connection breaks (16); UDP: ICMP port unreachable is rate-limited, so
	# only some sockets hear of it before the client is stopped (at least 1)
	for s in "redis $redis 6379 reset|eof 16" "memcached $mc 11211 reset|eof 16" \
		"udp $udp 7777 connect_refused 1"; do
		set -- $s
		# UDP: a datagram without echo is resent after 200 ms, and that one meets
		# the closed port (the default 30 s wait would outlast the check)
		srv_load_start "$1" "$SRV_DIR/kill-$1.log" "$SRV_DIR/kill-$1.json" --port "$3" \
			$([ "$1" = udp ] && echo --timeout 200)
		srv_load_progress "$SRV_DIR/kill-$1.log" 1 || srv_fail "$1 clients made no progress"
		kill -9 "$2"
		wait_line "$SRV_DIR/kill-$1.log" "errors=[1-9]" 10 ||
			srv_fail "$1 killed under load: its clients saw no error within 10 s"
		if srv_load_stop "$SRV_LOAD_PID" "$SRV_DIR/kill-$1.log" "$SRV_DIR/kill-$1.json"; then
			srv_fail "$1 killed under load, yet its clients report no error"
		fi
		errs=0
		for k in ${4//|/ }; do
			errs=$((errs + $(srv_json "$SRV_DIR/kill-$1.json" "$k")))
		done
		[ "$errs" -ge "$5" ] ||
			srv_fail "$1 killed: want >= $5 errors of kind $4, got $(cat "$SRV_DIR/kill-$1.json")"
		srv_say "$1 killed under load: $errs errors of kind $4 counted, clients exit nonzero"
	done
	srv_say "ok (cleanup follows)"
)
rc=$?
[ $rc -eq 0 ] || exit $rc
left=$(srv_leftovers "$(cat "$OUT/inodes")")
[ -z "$left" ] || { srv_say "FAIL: cleanup left: $left"; exit 1; }
srv_say "cleanup left no namespace, process or cgroup"
srv_say "PASS"
exit 0
