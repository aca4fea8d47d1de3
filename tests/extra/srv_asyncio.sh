#!/bin/bash
# srv_asyncio.sh - a Python asyncio HTTP/1.1 server (srv_asyncio_server.py,
# listening on the service address itself) moves from the source host to the
# target host with `haul migrate --move-address 198.18.0.100/24` while 16
# keep-alive connections from the client host keep sending requests (issue
# 11, Deliver 5):
#  - zero errors, zero wrong values (every answer carries the count of
#    requests the server answered on that connection: its coroutines' state
#    moved with it), zero reconnects; answers keep coming from the target;
#  - the server runs on the target only, the address is there only, no haul
#    nftables/iptables rule is left.
# A refusal by haul is a failure (haul's words are printed), not a skip.
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
set -u
. "$(dirname "$0")/srv_hosts.shlib"
srv_require_base
srv_require_pkgs python3 nftables
srv_require_prog srvload_http
HERE=$(cd "$(dirname "$0")" && pwd)

srv_hosts_up "${SRV_RATE:-}"
srv_pageserver
srv_bg src "$SRV_DIR/http.log" python3 "$HERE/srv_asyncio_server.py" "$SRV_ADDR" 8080
py=$SRV_BG_PID
srv_migrated_pids+=("$py")
wait_line "$SRV_DIR/http.log" "^ready" 20 || srv_fail "the asyncio server did not start: $(tail -3 "$SRV_DIR/http.log")"

srv_load_start http "$SRV_DIR/load.log" "$SRV_DIR/load.json" --port 8080 --conns 16
srv_load_progress "$SRV_DIR/load.log" 2 || srv_fail "the clients made no progress before the move"
srv_migrate_or_fail "$py"
mrc=$?
if [ $mrc -ne 0 ]; then
	srv_load_stop "$SRV_LOAD_PID" "$SRV_DIR/load.log" "$SRV_DIR/load.json"
	srv_fail "haul migrate did not move the asyncio server (exit $mrc; see its output above)"
fi
srv_say "haul migrate: downtime $(srv_downtime) ms"
srv_haul_summary
fail=0
srv_check_moved python3 || fail=1
srv_load_progress "$SRV_DIR/load.log" 2 || { srv_say "the clients stopped getting answers after the move"; fail=1; }
srv_load_stop "$SRV_LOAD_PID" "$SRV_DIR/load.log" "$SRV_DIR/load.json" ||
	{ srv_say "the clients saw errors, wrong values or reconnects"; fail=1; }
if [ $fail -ne 0 ]; then
	srv_say "the server's output (the restored copy writes to the same file):"
	tail -5 "$SRV_DIR/http.log" | sed 's/^/    /'
	srv_fail "the asyncio server did not move with its keep-alive connections"
fi
srv_say "PASS: clients max latency $(srv_json "$SRV_DIR/load.json" max) ms, largest gap $(srv_json "$SRV_DIR/load.json" max_gap_ms) ms"
exit 0
