#!/bin/bash
# bench/servers/run.sh - `make bench-servers` (issue 11, Deliver 6): the latency
# that clients see while Redis and memcached migrate under load.
#
# Three network namespaces on one bridge (tests/extra/srv_hosts.shlib): the
# server starts on the source host with the service address 198.18.0.100, is
# filled with SIZE of values, 16 checked clients (build/progs/srvload_*) on the
# client host load it, and `haul migrate --move-address 198.18.0.100/24` moves it
# to the target host.  Every cell (server x size x mode) starts afresh; the
# modes run in the same run: pre-copy, post-copy (--postcopy), stop-and-copy
# (--stop-and-copy), hybrid (--hybrid, when --modes names it), and CRIU (dump --tcp-established, restore on the target)
# when a working `criu` is on PATH (else a visible "SKIP criu:" line).
#
# Per cell: the clients' p50/p99/max latency over the run that contains the
# move, their largest gap between answers, errors, wrong values, reconnects;
# haul's downtime and total time from its --json; whether the dataset is
# identical afterwards (Redis: DEBUG DIGEST; memcached: checked read-back).
# Targets of the issue, printed as PASS/FAIL lines:
#   0 client errors (and 0 wrong values, 0 reconnects) in every mode;
#   pre-copy: clients' max latency <= haul's downtime + 20 ms;
#   pre-copy at 4 GiB: clients' max latency <= 50 ms.
# Output in --out (default bench/results/servers): servers.csv, servers.json,
# summary.md, latency.png (gnuplot), logs/ of failed cells.  Cells that do not
# fit in memory (3x SIZE available) or in --budget seconds are skipped visibly.
set -u
# One brace group, parsed before it runs: editing the file cannot derail a run.
{

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
BUILD=${BUILD:-build}
export HAUL_BIN=${HAUL_BIN:-$top/$BUILD/haul} HAUL_PROGS=${HAUL_PROGS:-$top/$BUILD/progs}
out=$top/bench/results/servers
sizes="1G 4G"
servers="redis memcached"
modes="pre-copy post-copy stop-and-copy"
conns=16
budget=1500
rate=
criu=1
keep_all=0
haul_args=

usage() {
	cat <<EOF
usage: bench/servers/run.sh [--out DIR] [--sizes "1G 4G"] [--servers "redis memcached"]
                            [--modes "pre-copy post-copy stop-and-copy hybrid"] [--conns N]
                            [--rate RATE] [--budget SECONDS] [--no-criu] [--keep-logs]
                            [--haul-args "--timeout 60s ..."]

Defaults: sizes 1G 4G, both servers, all three modes, 16 connections, the
bridge unshaped (--rate 1gbit caps the source's and target's links with tbf),
a budget of 1500 s after which the remaining cells are skipped.  A cell needs
3x its size of available memory.  CRIU runs when 'criu check' passes.
--haul-args adds options to every haul migrate (haul's defaults otherwise).
EOF
}

while [ $# -gt 0 ]; do
	case $1 in
	--out) out=$2; shift ;;
	--sizes) sizes=$2; shift ;;
	--servers) servers=$2; shift ;;
	--modes) modes=$2; shift ;;
	--conns) conns=$2; shift ;;
	--rate) rate=$2; shift ;;
	--budget) budget=$2; shift ;;
	--no-criu) criu=0 ;;
	--keep-logs) keep_all=1 ;;
	--haul-args) haul_args=$2; shift ;;
	-h | --help) usage; exit 0 ;;
	*) usage >&2; exit 2 ;;
	esac
	shift
done

# shellcheck source=../../tests/extra/srv_hosts.shlib
. "$top/tests/extra/srv_hosts.shlib"
say() { echo "bench-servers: $*"; }
srv_say() { say "$@"; }
[ "$(id -u)" = 0 ] || { say "error: needs root (network namespaces, ptrace, cgroups)"; exit 1; }
[ -x "$HAUL" ] || { say "error: no haul at $HAUL: run make all"; exit 1; }
for s in $servers; do
	[ -x "$PROGS/srvload_$s" ] || { say "error: no $PROGS/srvload_$s: run make all"; exit 1; }
done
command -v redis-server >/dev/null && command -v redis-cli >/dev/null ||
	case " $servers " in *" redis "*) say "error: redis-server/redis-cli missing: make deps-servers"; exit 1 ;; esac
command -v memcached >/dev/null ||
	case " $servers " in *" memcached "*) say "error: memcached missing: make deps-servers"; exit 1 ;; esac
mkdir -p "$out/logs" || { say "error: cannot create $out"; exit 1; }
out=$(cd "$out" && pwd)
rm -f "$out"/logs/*.log "$out"/servers.csv "$out"/servers.json

criu_why=
if [ $criu = 0 ]; then
	criu_why="--no-criu"
elif ! command -v criu >/dev/null 2>&1; then
	criu_why="criu is not on PATH (make deps-servers installs Debian's)"
elif ! criu check >/dev/null 2>&1; then
	criu_why="'criu check' fails here: $(criu check 2>&1 | grep -m1 -i error)"
fi
[ -n "$criu_why" ] && say "SKIP criu: $criu_why"

srv_hosts_up "$rate"
t_start=$SECONDS
echo "server,size,mode,status,client_p50_ms,client_p99_ms,client_max_ms,client_max_gap_ms,client_ops,client_errors,client_wrong,client_reconnects,haul_downtime_ms,haul_total_s,dataset,note" >"$out/servers.csv"

# reset_hosts: nothing runs on the hosts, the address is on the source only.
reset_hosts() {
	local h p t
	for h in src dst cli; do
		for p in $(ip netns pids "$(srv_ns $h)" 2>/dev/null); do
			srv_thaw "$p"
			kill -9 "$p" 2>/dev/null
		done
	done
	for h in src dst cli; do
		while [ -n "$(ip netns pids "$(srv_ns $h)" 2>/dev/null)" ]; do sleep 0.05; done
		for t in $(srv_in $h nft list tables 2>/dev/null | awk '/haul/ { print $2 "|" $3 }'); do
			srv_in $h nft delete table "${t%%|*}" "${t#*|}"
		done
	done
	srv_addr_on dst && ip -n "$SRV_NS_DST" addr del "$SRV_ADDR/$SRV_PREFIX" dev eth0
	srv_addr_on src || ip -n "$SRV_NS_SRC" addr add "$SRV_ADDR/$SRV_PREFIX" dev eth0
	# the last cell's announcement pointed the hosts at the target: ask again
	for h in src dst cli; do ip -n "$(srv_ns $h)" neigh flush dev eth0 2>/dev/null; done
	# the freezer cgroup haul made for a server it could not move (mig-PID), once empty
	for p in $(cat "$SRV_DIR/server_pids" 2>/dev/null); do
		for t in /sys/fs/cgroup/haul/mig-"$p" /sys/fs/cgroup/*/haul/mig-"$p"; do
			[ -d "$t" ] && ! grep -q . "$t/cgroup.procs" 2>/dev/null && rmdir "$t" 2>/dev/null
		done
	done
}

# row SERVER SIZE MODE STATUS [FIELDS...]: one CSV line (missing fields empty).
row() {
	local IFS=,
	echo "$*" >>"$out/servers.csv"
}

# start_server SERVER SIZE: on the source, filled; pid in srv_pid; 1 on failure.
start_server() {
	local bytes
	bytes=$(srv_size_bytes "$2")
	# emptied here, not by srv_bg's subshell (that runs later): the last cell's
	# server wrote "Ready to accept connections" to this file too
	: >"$SRV_DIR/server.log"
	case $1 in
	redis)
		srv_bg src "$SRV_DIR/server.log" redis-server --bind 0.0.0.0 --port 6379 --save '' \
			--appendonly no --protected-mode no --enable-debug-command yes --dir "$SRV_DIR"
		srv_pid=$SRV_BG_PID port=6379
		wait_line "$SRV_DIR/server.log" "Ready to accept connections" 20 || return 1 ;;
	memcached)
		srv_bg src "$SRV_DIR/server.log" memcached -u root -l 0.0.0.0 -p 11211 -U 0 -t 4 \
			-m $((bytes * 3 / 2 / 1048576 + 64)) -c 1024
		srv_pid=$SRV_BG_PID port=11211
		srv_wait_tcp cli "$SRV_ADDR" 11211 || return 1 ;;
	esac
	srv_migrated_pids+=("$srv_pid")
	echo "$srv_pid" >>"$SRV_DIR/server_pids" # cells run in subshells: reset_hosts reads it
	srv_in cli "$PROGS/srvload_$1" --host "$SRV_ADDR" --port $port --fill "$2" \
		--json "$SRV_DIR/fill.json" >/dev/null 2>"$SRV_DIR/fill.log"
}

# dataset_digest SERVER SIZE: Redis DEBUG DIGEST, or "checked" after a clean
# read-back of every filled value (memcached), or "wrong".
dataset_digest() {
	case $1 in
	redis) srv_in cli redis-cli -h "$SRV_ADDR" DEBUG DIGEST ;;
	memcached)
		if srv_in cli "$PROGS/srvload_memcached" --host "$SRV_ADDR" --fill "$2" --check \
			--json "$SRV_DIR/check.json" >/dev/null 2>&1; then
			echo checked
		else
			echo wrong
		fi ;;
	esac
}

# move MODE: migrate srv_pid to the target; sets mig_rc, downtime, total.
move() {
	local flag=
	case $1 in
	post-copy) flag=--postcopy ;;
	hybrid) flag=--hybrid ;;
	stop-and-copy) flag=--stop-and-copy ;;
	esac
	srv_pageserver
	local t0=$SECONDS
	# shellcheck disable=SC2086
	SRV_MIGRATE_TIMEOUT=$((60 + 4 * $(srv_size_bytes "$size") / 1048576 * 8 / 1000)) \
		srv_migrate "$srv_pid" $flag $haul_args
	mig_rc=$?
	downtime=$(srv_downtime)
	total=$(srv_json "$SRV_DIR/migrate.json" total_ms)
	if [ "$total" = - ]; then
		total=$((SECONDS - t0))
	else
		total=$(awk -v t="$total" 'BEGIN { printf "%.3f", t / 1000 }')
	fi
}

# move_criu: dump with --tcp-established (CRIU holds its own network lock), move
# the address, restore on the target; the images cross through this machine's
# /tmp (both "hosts" share it), so the copy is local, not over the bridge.
move_criu() {
	local img=$SRV_DIR/criu t0 t1
	mkdir -p "$img"
	t0=$(date +%s%N)
	srv_in src criu dump -t "$srv_pid" --tcp-established --shell-job -D "$img" \
		-o dump.log >/dev/null 2>&1 || { mig_rc=1; cp "$img/dump.log" "$SRV_DIR/migrate.log" 2>/dev/null; return; }
	ip -n "$SRV_NS_SRC" addr del "$SRV_ADDR/$SRV_PREFIX" dev eth0
	ip -n "$SRV_NS_DST" addr add "$SRV_ADDR/$SRV_PREFIX" dev eth0
	srv_in dst criu restore -d --tcp-established --shell-job -D "$img" -o restore.log \
		>/dev/null 2>&1
	mig_rc=$?
	t1=$(date +%s%N)
	[ $mig_rc -ne 0 ] && cp "$img/restore.log" "$SRV_DIR/migrate.log" 2>/dev/null
	downtime=$(( (t1 - t0) / 1000000 ))
	total=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", (b - a) / 1e9 }')
}

# cell SERVER SIZE MODE: one measurement, one CSV row, PASS/FAIL lines.
cell() {
	local server=$1 size=$2 mode=$3 bytes name before after ds j note=
	name=$server-$size-$mode
	bytes=$(srv_size_bytes "$size")
	if [ $((SECONDS - t_start)) -ge "$budget" ]; then
		say "skipped: $name: over the budget of $budget s"
		row "$server" "$size" "$mode" skipped "" "" "" "" "" "" "" "" "" "" "" "over budget"
		return
	fi
	if [ "$(awk '/^MemAvailable:/ { print $2 }' /proc/meminfo)" -lt $((bytes * 3 >> 10)) ]; then
		say "skipped: $name: needs $((bytes * 3 >> 20)) MiB of available memory"
		row "$server" "$size" "$mode" skipped "" "" "" "" "" "" "" "" "" "" "" "memory"
		return
	fi
	reset_hosts
	say "cell $name: starting $server, filling $size"
	if ! start_server "$server" "$size"; then
		say "failed: $name: $server did not start or fill: $(tail -n 2 "$SRV_DIR/server.log" "$SRV_DIR/fill.log" | tr '\n' ' ')"
		row "$server" "$size" "$mode" failed "" "" "" "" "" "" "" "" "" "" "" "server did not start"
		cp "$SRV_DIR/server.log" "$out/logs/$name-server.log" 2>/dev/null
		return
	fi
	before=$(dataset_digest "$server" "$size")
	srv_load_start "$server" "$SRV_DIR/load.log" "$SRV_DIR/load.json" --port $port --conns "$conns"
	srv_load_progress "$SRV_DIR/load.log" 2
	if [ "$mode" = criu ]; then move_criu; else move "$mode"; fi
	[ $mig_rc -eq 0 ] && srv_load_progress "$SRV_DIR/load.log" 2
	srv_load_stop "$SRV_LOAD_PID" "$SRV_DIR/load.log" "$SRV_DIR/load.json" >/dev/null
	j=$SRV_DIR/load.json
	if [ $mig_rc -ne 0 ]; then
		note="migrate exit $mig_rc: $(grep -v '^$' "$SRV_DIR/migrate.log" | tail -1 | tr ',' ';')"
		say "failed: $name: $note"
		row "$server" "$size" "$mode" failed "$(srv_json "$j" p50)" "$(srv_json "$j" p99)" \
			"$(srv_json "$j" max)" "$(srv_json "$j" max_gap_ms)" "$(srv_json "$j" ops)" \
			"$(srv_json "$j" errors)" "$(srv_json "$j" wrong_values)" \
			"$(srv_json "$j" reconnects)" "" "" "" "$note"
		cp "$SRV_DIR/migrate.log" "$out/logs/$name-migrate.log"
		cp "$SRV_DIR/ps.log" "$out/logs/$name-pageserver.log" 2>/dev/null
		say "FAIL target: $name: the server did not move"
		return
	fi
	after=$(dataset_digest "$server" "$size")
	if [ -n "$before" ] && [ "$before" = "$after" ] && [ "$after" != wrong ]; then ds=identical; else ds=changed; fi
	row "$server" "$size" "$mode" ok "$(srv_json "$j" p50)" "$(srv_json "$j" p99)" \
		"$(srv_json "$j" max)" "$(srv_json "$j" max_gap_ms)" "$(srv_json "$j" ops)" \
		"$(srv_json "$j" errors)" "$(srv_json "$j" wrong_values)" "$(srv_json "$j" reconnects)" \
		"$downtime" "$total" "$ds" ""
	say "cell $name: clients p50 $(srv_json "$j" p50) p99 $(srv_json "$j" p99) max $(srv_json "$j" max) ms, errors $(srv_json "$j" errors), haul downtime $downtime ms, dataset $ds"
	if [ $keep_all = 1 ]; then
		cp "$SRV_DIR/migrate.log" "$out/logs/$name-migrate.log"
		cp "$SRV_DIR/migrate.json" "$out/logs/$name-migrate.json" 2>/dev/null
		cp "$SRV_DIR/ps.log" "$out/logs/$name-pageserver.log" 2>/dev/null
	fi
}

# one_cell SERVER SIZE MODE: cell in a subshell, so that a helper of srv_hosts.shlib
# giving up (srv_fail: exit) ends that cell only, with a "failed" row.
one_cell() {
	local n
	n=$(wc -l <"$out/servers.csv")
	( cell "$@" )
	if [ "$(wc -l <"$out/servers.csv")" -eq "$n" ]; then
		row "$1" "$2" "$3" failed "" "" "" "" "" "" "" "" "" "" "" "gave up (see the lines above)"
		say "FAIL target: $1-$2-$3: the cell did not complete"
	fi
}

for server in $servers; do
	for size in $sizes; do
		for mode in $modes; do
			one_cell "$server" "$size" "$mode"
		done
		if [ -z "$criu_why" ]; then
			one_cell "$server" "$size" criu
		else
			row "$server" "$size" criu skipped "" "" "" "" "" "" "" "" "" "" "" "$criu_why"
		fi
	done
done
reset_hosts

python3 "$here/report.py" "$out"
rc=$?
if command -v gnuplot >/dev/null 2>&1 && [ "$(wc -l <"$out/plot.dat")" -gt 1 ]; then
	gnuplot -e "dir='$out'" "$here/plot.gp" 2>"$out/logs/gnuplot.log" &&
		say "plot: $out/latency.png"
fi
say "results: $out/servers.csv $out/servers.json $out/summary.md"
exit $rc
}
