#!/bin/bash
# srv_nginx.sh - nginx, a master and 2 workers (its own configuration in the
# work directory, `daemon off`, worker_processes 2) serving files of known
# content on the service address, moves from the source host to the target
# host with `haul migrate MASTER --move-address 198.18.0.100/24` while 16
# keep-alive HTTP connections from the client host keep fetching them
# (srvload_file; issue 12, Deliver 6):
#  - every response complete and its body identical to the file: zero errors,
#    zero wrong bodies, zero reconnects; answers keep coming from the target;
#  - the master and both workers run on the target (the workers still the
#    master's children) and none on the source, the address is on the target
#    only, no haul nftables/iptables rule is left.
# The whole tree moves: the workers hold the connections, the master the
# channels (socketpairs) to them.  A refusal by haul is a failure (haul's
# words are printed), not a skip.
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
set -u
. "$(dirname "$0")/srv_hosts.shlib"
KEYS=32
FILE_SIZE=16384
srv_require_base
srv_require_pkgs nginx python3 nftables
srv_require_prog srvload_file

srv_hosts_up "${SRV_RATE:-}"
# the workers run as nginx's unprivileged user: they read the files through it
chmod 755 "$SRV_DIR"
mkdir -p "$SRV_DIR/www" "$SRV_DIR/tmp"
"$PROGS/srvload_file" --write-files "$SRV_DIR/www" --keys $KEYS --value-size $FILE_SIZE ||
	srv_fail "cannot write the files nginx serves into $SRV_DIR/www"
cat >"$SRV_DIR/nginx.conf" <<EOF
daemon off;
master_process on;
worker_processes 2;
pid $SRV_DIR/nginx.pid;
error_log $SRV_DIR/error.log info;
events { worker_connections 256; }
http {
	access_log off;
	client_body_temp_path $SRV_DIR/tmp/body;
	proxy_temp_path $SRV_DIR/tmp/proxy;
	fastcgi_temp_path $SRV_DIR/tmp/fastcgi;
	uwsgi_temp_path $SRV_DIR/tmp/uwsgi;
	scgi_temp_path $SRV_DIR/tmp/scgi;
	# one connection per client for the whole run: a close is an error
	keepalive_requests 1000000000;
	keepalive_timeout 3600s;
	server {
		listen $SRV_ADDR:8080;
		root $SRV_DIR/www;
	}
}
EOF
srv_pageserver
: >"$SRV_DIR/error.log"
srv_bg src "$SRV_DIR/nginx.out" nginx -p "$SRV_DIR" -e "$SRV_DIR/error.log" -c "$SRV_DIR/nginx.conf"
master=$SRV_BG_PID
srv_migrated_pids+=("$master")
wait_more "$SRV_DIR/error.log" "start worker process" 1 20 ||
	srv_fail "nginx did not start its 2 workers: $(tail -3 "$SRV_DIR/error.log" "$SRV_DIR/nginx.out")"
wait_comm "$master" nginx || srv_fail "pid $master is not nginx"
srv_wait_tcp cli "$SRV_ADDR" 8080 || srv_fail "nginx does not answer on $SRV_ADDR:8080"
workers=$(cat /proc/"$master"/task/*/children)
srv_say "nginx master pid $master, workers $workers"

srv_load_start file "$SRV_DIR/load.log" "$SRV_DIR/load.json" --port 8080 --conns 16 \
	--keys $KEYS --value-size $FILE_SIZE
srv_load_progress "$SRV_DIR/load.log" 2 || srv_fail "the clients made no progress before the move"
srv_migrate_or_fail "$master"
mrc=$?
if [ $mrc -ne 0 ]; then
	srv_load_stop "$SRV_LOAD_PID" "$SRV_DIR/load.log" "$SRV_DIR/load.json"
	srv_fail "haul migrate did not move nginx (exit $mrc; see its output above)"
fi
srv_say "haul migrate: downtime $(srv_downtime) ms"
srv_haul_summary
fail=0
srv_check_moved nginx || fail=1
if [ -n "${SRV_MOVED_PID:-}" ]; then
	# srv_pid_on finds the first nginx of the target: the master or a worker
	moved_master=$SRV_MOVED_PID
	ppid=$(awk '{ print $4 }' /proc/"$moved_master"/stat 2>/dev/null)
	[ "$(cat /proc/"$ppid"/comm 2>/dev/null)" = nginx ] && moved_master=$ppid
	n=$(wc -w </proc/"$moved_master"/task/"$moved_master"/children 2>/dev/null || echo 0)
	[ "$n" = 2 ] || { srv_say "the nginx master on the target (pid $moved_master) has $n children, not its 2 workers"; fail=1; }
fi
srv_load_progress "$SRV_DIR/load.log" 2 || { srv_say "the clients stopped getting answers after the move"; fail=1; }
srv_load_stop "$SRV_LOAD_PID" "$SRV_DIR/load.log" "$SRV_DIR/load.json" ||
	{ srv_say "the clients saw errors, wrong bodies or reconnects"; fail=1; }
if [ $fail -ne 0 ]; then
	srv_say "nginx's error log (the restored copy writes to the same file):"
	tail -5 "$SRV_DIR/error.log" | sed 's/^/    /'
	srv_fail "nginx did not move with its keep-alive connections"
fi
srv_say "PASS: master and 2 workers moved, clients max latency $(srv_json "$SRV_DIR/load.json" max) ms, largest gap $(srv_json "$SRV_DIR/load.json" max_gap_ms) ms"
exit 0
