#!/bin/bash
# bench/ctr/run.sh - container migration under client load (issue 14,
# Deliver 5): `haul migrate --container` against `podman container
# checkpoint --export` + copy + `podman container restore --import` (runc,
# with haul's criu entry point underneath) of the same workload in the same
# run.  `make bench-containers` runs it; results to bench/results/ctr/.
#
# The workload: tests/progs/ctr_httpd.c (static, busybox rootfs) holding
# CTR_MIB MiB (default 64), one page rewritten per request, bound to the
# service address on the host's network (see tests/extra/ctr_migrate.sh for
# why and for what this machine needs); 16 keep-alive HTTP clients
# (srvload_http) on the client host.  Per case: downtime (haul: its
# --json downtime_ms, freeze to the target's "running"; podman: the
# checkpoint command's start to the restore command's end, which is when
# the process is stopped at most), the clients' largest gap between
# answers, p99 latency and errors (a broken connection is an error).
# The podman case moves the address by hand (ip addr del/add) between the
# two commands; it runs only when podman is installed.
# usage: bench/ctr/run.sh [--out DIR] [--mib N] [--repeat N]
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
set -u
. "$(dirname "$0")/../../tests/extra/srv_hosts.shlib"
OUT=bench/results/ctr
MIB=${CTR_MIB:-64}
REPEAT=1
while [ $# -gt 0 ]; do
	case $1 in
	--out) OUT=$2; shift 2 ;;
	--mib) MIB=$2; shift 2 ;;
	--repeat) REPEAT=$2; shift 2 ;;
	*) echo "usage: $0 [--out DIR] [--mib N] [--repeat N]"; exit 2 ;;
	esac
done
srv_require_base
srv_require_pkgs nftables
srv_require_prog srvload_http
for t in runc jq gcc; do command -v $t >/dev/null || srv_skip "needs $t"; done
[ -x /bin/busybox ] || srv_skip "needs busybox-static"
mkdir -p "$OUT"
RESULTS=$OUT/results.tsv
printf 'case\tmib\trun\tdowntime_ms\tclient_max_gap_ms\tclient_p99_ms\tclient_errors\trestore_ms\n' >"$RESULTS"

ID=ctrb$$
RS= RD= PD=pdb$$ PIMG=localhost/haulctrb$$
bench_cleanup() {
	local rc=$? r
	for r in "$RS" "$RD"; do
		[ -n "$r" ] && runc --root "$r" kill $ID KILL 2>/dev/null
	done
	sleep 0.3
	for r in "$RS" "$RD"; do
		[ -n "$r" ] && runc --root "$r" delete -f $ID >/dev/null 2>&1
	done
	if command -v podman >/dev/null; then
		podman rm -f $PD >/dev/null 2>&1
		podman rmi -f $PIMG >/dev/null 2>&1
	fi
	(
		(exit $rc)
		srv_cleanup
	)
	rc=$?
	for d in /sys/fs/cgroup/*/hctr-*-$$ /sys/fs/cgroup/hctr-*-$$; do
		[ -d "$d" ] || continue
		for sub in "$d"/*/; do [ -d "$sub" ] && rmdir "$sub" 2>/dev/null; done
		rmdir "$d" 2>/dev/null
	done
	exit $rc
}
srv_hosts_up
trap bench_cleanup EXIT
RS=$SRV_DIR/runc-src
RD=$SRV_DIR/runc-dst
cg_enter() {
	local m
	for m in $(awk '$3 == "cgroup" || $3 == "cgroup2" { print $2 }' /proc/self/mounts); do
		mkdir -p "$m/$1" 2>/dev/null && echo "$BASHPID" >"$m/$1/cgroup.procs" 2>/dev/null
	done
}
export -f cg_enter
gcc -static -O2 -o "$SRV_DIR/ctr_httpd" "$SRV_TOP/tests/progs/ctr_httpd.c" ||
	srv_skip "cannot build a static program (libc6-dev)"
mkdir -p "$SRV_DIR/root/bin" "$SRV_DIR/root/dev" "$SRV_DIR/root/proc" "$SRV_DIR/root/sys" \
	"$SRV_DIR/root/tmp"
cp /bin/busybox "$SRV_DIR/root/bin/" && cp "$SRV_DIR/ctr_httpd" "$SRV_DIR/root/"

# the target page server (as in tests/extra/ctr_migrate.sh)
cat >"$SRV_DIR/hook.sh" <<EOF
[ "\$HAUL_SWITCH_PHASE" = target-prepare ] || exit 0
for b in $SRV_DIR/dst/*\$HAUL_MIGRATION_ID/bundle; do
	[ -f "\$b/config.json" ] || continue
	jq '.linux.cgroupsPath="$ID-dst"' "\$b/config.json" >"\$b/c.json" && mv "\$b/c.json" "\$b/config.json"
done
EOF
: >"$SRV_DIR/ps.log"
srv_bg dst "$SRV_DIR/ps.log" bash -c 'cg_enter "$0"; exec "$@"' "hctr-dst-$$" \
	"$HAUL" pageserver --listen "$SRV_DST_IP:$SRV_PS_PORT" --key "$SRV_KEY" \
	--containers "$SRV_DIR/dst" --root "$RD" --on-switch "sh $SRV_DIR/hook.sh"
wait_line "$SRV_DIR/ps.log" "listening on" 10 || srv_fail "the page server did not start"

# record CASE RUN DOWNTIME RESTORE: one line of results from the clients' json
record() {
	local j=$SRV_DIR/load.json
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$MIB" "$2" "$3" "$(srv_json "$j" max_gap_ms)" \
		"$(srv_json "$j" p99)" "$(srv_json "$j" errors)" "$4" >>"$RESULTS"
	srv_say "$1 run $2: downtime $3 ms, clients: max gap $(srv_json "$j" max_gap_ms) ms," \
		"p99 $(srv_json "$j" p99) ms, errors $(srv_json "$j" errors)" \
		"$(python3 -c 'import json,sys; k=json.load(open(sys.argv[1]))["errors_by_kind"]
print(" ".join("%s=%s" % (a, b) for a, b in k.items() if b))' "$j" 2>/dev/null)"
}

# the service address back on the source, and the client's neighbour cache
# forgets the target's MAC (nothing announces the address back)
addr_back() {
	ip -n "$SRV_NS_DST" addr del "$SRV_ADDR/$SRV_PREFIX" dev eth0 2>/dev/null
	ip -n "$SRV_NS_SRC" addr add "$SRV_ADDR/$SRV_PREFIX" dev eth0 2>/dev/null
	ip -n "$SRV_NS_CLI" neigh flush all
}

haul_case() { # RUN
	local b=$SRV_DIR/b$1
	mkdir -p "$b" && cp -a "$SRV_DIR/root" "$b/rootfs" && (cd "$b" && runc spec) || return 1
	jq "del(.process.rlimits) | .process.terminal=false | .root.readonly=false |
	    .process.args=[\"/ctr_httpd\",\"$SRV_ADDR\",\"8080\",\"$MIB\",\"/served\"] |
	    .hostname=\"$ID\" | .linux.cgroupsPath=\"$ID\" |
	    .linux.namespaces |= map(select(.type != \"network\"))" "$b/config.json" >"$b/c.json" &&
		mv "$b/c.json" "$b/config.json"
	(cg_enter "hctr-src-$$" && cd "$b" &&
		exec nsenter --net=/run/netns/"$SRV_NS_SRC" -- runc --root "$RS" run -d $ID) \
		</dev/null >/dev/null 2>&1 || srv_fail "runc run"
	wait_line "$b/rootfs/served" "^[0-9]* 0$" 20 || srv_fail "the container's server never started"
	srv_load_start http "$SRV_DIR/load.log" "$SRV_DIR/load.json" --port 8080 --conns 16
	srv_load_progress "$SRV_DIR/load.log" 3 || srv_fail "no client progress"
	srv_in src "$HAUL" migrate --container $ID --root "$RS" --to "$SRV_DST_IP:$SRV_PS_PORT" \
		--key "$SRV_KEY" --json "$SRV_DIR/migrate.json" --quiet \
		--move-address "$SRV_ADDR/$SRV_PREFIX" >"$SRV_DIR/migrate.log" 2>&1 ||
		{ cat "$SRV_DIR/migrate.log"; srv_fail "haul migrate --container"; }
	srv_load_progress "$SRV_DIR/load.log" 3 || srv_fail "no client progress after the move"
	srv_load_stop "$SRV_LOAD_PID" "$SRV_DIR/load.log" "$SRV_DIR/load.json" >/dev/null
	record haul-migrate "$1" "$(srv_json "$SRV_DIR/migrate.json" downtime_ms)" \
		"$(srv_json "$SRV_DIR/migrate.json" restore_ms)"
	grep -E "container $ID: (restored|image committed)" "$SRV_DIR/ps.log" | tail -2 |
		sed 's/^/    target: /'
	grep -E "frozen-time files" "$SRV_DIR/migrate.log" | sed 's/^/    source: /'
	runc --root "$RD" kill $ID KILL
	sleep 0.5
	runc --root "$RD" delete -f $ID >/dev/null 2>&1
	addr_back
}

podman_case() { # RUN
	local t0 t1 ck=$SRV_DIR/ck$1.tar.gz copy=$SRV_DIR/copy$1.tar.gz
	mkdir -p "$SRV_DIR/crbin" && ln -sf "$HAUL" "$SRV_DIR/crbin/criu"
	if [ "$1" = 1 ]; then
		tar -C "$SRV_DIR/root" -cf "$SRV_DIR/root.tar" . &&
			podman import "$SRV_DIR/root.tar" $PIMG >/dev/null 2>&1 || return 1
	fi
	srv_in src podman run -d --name $PD --runtime runc --network host \
		--ulimit nofile=1024:1024 --ulimit nproc=1024:1024 $PIMG \
		/ctr_httpd "$SRV_ADDR" 8080 "$MIB" /tmp/served >/dev/null 2>"$SRV_DIR/prun.err" ||
		{ srv_say "podman run: $(tail -1 "$SRV_DIR/prun.err")"; return 1; }
	# ready: the server accepts (podman run -d returns before it listens)
	srv_in cli timeout 20 bash -c "until exec 3<>/dev/tcp/$SRV_ADDR/8080; do sleep 0.05; done" \
		2>/dev/null || { srv_say "the podman container's server never listened"; return 1; }
	srv_load_start http "$SRV_DIR/load.log" "$SRV_DIR/load.json" --port 8080 --conns 16
	srv_load_progress "$SRV_DIR/load.log" 3 ||
		{ srv_say "no client progress (podman): $(tail -3 "$SRV_DIR/load.log" | tr "\n" " ")"; return 1; }
	t0=$(date +%s%N)
	PATH="$SRV_DIR/crbin:$PATH" srv_in src podman container checkpoint --export "$ck" $PD \
		>/dev/null 2>"$SRV_DIR/pck.err" || { srv_say "podman checkpoint: $(tail -2 "$SRV_DIR/pck.err")"; return 1; }
	ip -n "$SRV_NS_SRC" addr del "$SRV_ADDR/$SRV_PREFIX" dev eth0
	cp "$ck" "$copy"
	podman rm $PD >/dev/null
	ip -n "$SRV_NS_DST" addr add "$SRV_ADDR/$SRV_PREFIX" dev eth0
	PATH="$SRV_DIR/crbin:$PATH" srv_in dst podman container restore --import "$copy" \
		>/dev/null 2>"$SRV_DIR/prs.err" || { srv_say "podman restore: $(tail -2 "$SRV_DIR/prs.err")"; return 1; }
	t1=$(date +%s%N)
	srv_load_progress "$SRV_DIR/load.log" 3 20 || srv_say "podman: the clients stopped getting answers"
	srv_load_stop "$SRV_LOAD_PID" "$SRV_DIR/load.log" "$SRV_DIR/load.json" >/dev/null
	record podman-export-import "$1" "$(((t1 - t0) / 1000000))" -
	podman rm -f $PD >/dev/null 2>&1
	addr_back
}

for r in $(seq 1 "$REPEAT"); do
	if command -v podman >/dev/null; then
		podman_case "$r" || {
			srv_say "podman case $r failed (above)"
			printf 'podman-export-import\t%s\t%s\tfailed\t-\t-\t-\t-\n' "$MIB" "$r" >>"$RESULTS"
			podman rm -f $PD >/dev/null 2>&1
			addr_back
		}
		if [ -n "${SRV_LOAD_PID:-}" ] && kill -0 "$SRV_LOAD_PID" 2>/dev/null; then
			srv_load_stop "$SRV_LOAD_PID" "$SRV_DIR/load.log" "$SRV_DIR/load.json" >/dev/null
		fi
	fi
	haul_case "$r"
done
srv_say "results: $RESULTS"
column -t -s "$(printf '\t')" "$RESULTS"
exit 0
