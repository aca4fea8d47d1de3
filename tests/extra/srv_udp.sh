#!/bin/bash
# srv_udp.sh - a UDP echo server (srv_udp_server.py, one socket bound to the
# service address) moves from the source host to the target host with
# `haul migrate --move-address 198.18.0.100/24` while 16 connected UDP
# sockets on the client host each keep one datagram in flight (issue 11,
# Deliver 5).
#
# What UDP may lose, and what this test accepts: a datagram that reaches the
# source after the network lock is up, or that is in flight while the address
# moves, is dropped (UDP promises nothing, and the lock drops rather than
# refuses so no peer sees an ICMP error).  Each socket has one datagram in
# flight and sends the next one after 200 ms without an echo, so within a
# downtime of D ms a socket loses at most ceil(D / 200) + 1 datagrams:
#   accepted: lost <= 16 * (ceil(D / 200) + 2)   (one more for the switch itself)
# and none of these: errors (ICMP port unreachable: the port was closed on
# some host), wrong echoes, reconnects.  Measured and printed: "lost", and
# "late", the echoes of datagrams that waited in the server's queue across
# the freeze and were answered after their 200 ms (datagrams queued at the
# freeze that the move kept; 0 means the queue was empty or dropped).
# A refusal by haul is a failure (haul's words are printed), not a skip.
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
set -u
. "$(dirname "$0")/srv_hosts.shlib"
srv_require_base
srv_require_pkgs python3 nftables
srv_require_prog srvload_udp
HERE=$(cd "$(dirname "$0")" && pwd)
CONNS=16
TIMEOUT_MS=200

srv_hosts_up "${SRV_RATE:-}"
srv_pageserver
srv_bg src "$SRV_DIR/udp.log" python3 "$HERE/srv_udp_server.py" "$SRV_ADDR" 7777
py=$SRV_BG_PID
srv_migrated_pids+=("$py")
wait_line "$SRV_DIR/udp.log" "^ready" 20 || srv_fail "the UDP echo server did not start: $(tail -3 "$SRV_DIR/udp.log")"

srv_load_start udp "$SRV_DIR/load.log" "$SRV_DIR/load.json" --port 7777 --conns $CONNS \
	--timeout $TIMEOUT_MS
srv_load_progress "$SRV_DIR/load.log" 2 || srv_fail "the clients made no progress before the move"
srv_migrate_or_fail "$py"
mrc=$?
if [ $mrc -ne 0 ]; then
	srv_load_stop "$SRV_LOAD_PID" "$SRV_DIR/load.log" "$SRV_DIR/load.json"
	srv_fail "haul migrate did not move the UDP echo server (exit $mrc; see its output above)"
fi
down=$(srv_downtime)
srv_say "haul migrate: downtime $down ms"
srv_haul_summary
fail=0
srv_check_moved python3 || fail=1
srv_load_progress "$SRV_DIR/load.log" 2 || { srv_say "the clients stopped getting echoes after the move"; fail=1; }
srv_load_stop "$SRV_LOAD_PID" "$SRV_DIR/load.log" "$SRV_DIR/load.json" ||
	{ srv_say "the clients saw errors, wrong echoes or reconnects"; fail=1; }
lost=$(srv_json "$SRV_DIR/load.json" lost)
late=$(srv_json "$SRV_DIR/load.json" late)
[ "$down" = - ] && down=$(srv_json "$SRV_DIR/load.json" max_gap_ms)
allowed=$(awk -v d="$down" -v c=$CONNS -v t=$TIMEOUT_MS \
	'BEGIN { n = int(d / t); if (n * t < d) n++; print c * (n + 2) }')
srv_say "datagrams: lost $lost (accepted <= $allowed for a downtime of $down ms), late $late (queued at the freeze, answered after the resume)"
[ "$lost" -le "$allowed" ] || { srv_say "more datagrams lost than the downtime explains"; fail=1; }
if [ $fail -ne 0 ]; then
	srv_say "the server's output (the restored copy writes to the same file):"
	tail -5 "$SRV_DIR/udp.log" | sed 's/^/    /'
	srv_fail "the UDP echo server did not move cleanly"
fi
srv_say "PASS: clients max latency $(srv_json "$SRV_DIR/load.json" max) ms, largest gap $(srv_json "$SRV_DIR/load.json" max_gap_ms) ms"
exit 0
