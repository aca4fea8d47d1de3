#!/bin/bash
# bench/servers/pg.sh - `make bench-postgres` (issue 12, Deliver 7): PostgreSQL
# with 2 GiB of shared_buffers, filled and dirtied by pgbench, migrated under
# pgbench load; pre-copy against stop-and-copy in the same run, and CRIU when
# a working `criu` is on PATH (else a visible "SKIP criu:" line).
#
# Three network namespaces on one bridge (tests/extra/srv_hosts.shlib): one
# cluster (initdb, `pgbench -i -s SCALE` with server-side generation) is made
# once in the work directory.  Each mode then starts the postmaster on the
# source with the service address, loads every page of pgbench_accounts and
# its index into shared_buffers (pg_prewarm: the 2 GiB are resident, not just
# reserved), starts `pgbench -c 8 -j 2 -T SECONDS -l` (per-transaction log)
# from the client host, and after WARMUP seconds of it migrates the
# postmaster's tree with `haul migrate --move-address 198.18.0.100/24`.  The
# moved cluster is shut down (fast) on the target, and the next mode starts
# from the same data directory.
#
# Per mode: haul's downtime and total time (--json), pgbench's transaction
# latency p50/p99/max over the whole run and the largest gap between
# commits (from the -l log), its tps, failed transactions and aborted
# clients (its own report), and whether the data is consistent afterwards
# (one pgbench_history row per counted transaction since the run started,
# and the accounts, tellers and branches balances equal to the history sum).
# Output in --out (default bench/results/postgres): pg.csv, logs/ of each
# mode; with --results, a table appended to bench/RESULTS.md.  Modes that do
# not fit in --budget seconds are skipped visibly.
set -u
# One brace group, parsed before it runs: editing the file cannot derail a run.
{

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
BUILD=${BUILD:-build}
export HAUL_BIN=${HAUL_BIN:-$top/$BUILD/haul} HAUL_PROGS=${HAUL_PROGS:-$top/$BUILD/progs}
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
out=$top/bench/results/postgres
buffers=2GB
scale=130
run_s=40
warmup_s=10
modes="pre-copy stop-and-copy"
budget=900
criu=1
results=0
haul_args=

usage() {
	cat <<EOF
usage: bench/servers/pg.sh [--out DIR] [--buffers 2GB] [--scale N] [--seconds S]
                           [--warmup S] [--modes "pre-copy stop-and-copy"]
                           [--budget SECONDS] [--no-criu] [--results]
                           [--haul-args "--downtime 50ms ..."]

Defaults: shared_buffers 2GB, pgbench scale 130 (about 1.9 GiB of accounts
and index: every buffer holds a page), pgbench runs 40 s and the migration
starts 10 s into it, both modes, a budget of 900 s after which the remaining
modes are skipped.  CRIU runs when 'criu check' passes.  --results appends
the table to bench/RESULTS.md.
EOF
}

while [ $# -gt 0 ]; do
	case $1 in
	--out) out=$2; shift ;;
	--buffers) buffers=$2; shift ;;
	--scale) scale=$2; shift ;;
	--seconds) run_s=$2; shift ;;
	--warmup) warmup_s=$2; shift ;;
	--modes) modes=$2; shift ;;
	--budget) budget=$2; shift ;;
	--no-criu) criu=0 ;;
	--results) results=1 ;;
	--haul-args) haul_args=$2; shift ;;
	-h | --help) usage; exit 0 ;;
	*) usage >&2; exit 2 ;;
	esac
	shift
done

# shellcheck source=../../tests/extra/srv_hosts.shlib
. "$top/tests/extra/srv_hosts.shlib"
say() { echo "bench-postgres: $*"; }
srv_say() { say "$@"; }
[ "$(id -u)" = 0 ] || { say "error: needs root (network namespaces, ptrace, cgroups)"; exit 1; }
[ -x "$HAUL" ] || { say "error: no haul at $HAUL: run make all"; exit 1; }
for t in initdb postgres pgbench psql pg_ctl; do
	[ -x "$PGBIN/$t" ] || { say "error: no $PGBIN/$t: make deps-servers (Debian 12: postgresql-15)"; exit 1; }
done
[ -f "$(dirname "$PGBIN")/lib/pg_prewarm.so" ] ||
	{ say "error: no pg_prewarm extension in $(dirname "$PGBIN")/lib: install postgresql-contrib"; exit 1; }
bytes=$(srv_size_bytes "${buffers%B}")
avail=$(awk '/^MemAvailable:/ { print $2 }' /proc/meminfo)
[ "$avail" -ge $((bytes * 3 >> 10)) ] ||
	{ say "error: needs $((bytes * 3 >> 20)) MiB of available memory (source, target, page cache), $((avail >> 10)) MiB are"; exit 1; }
mkdir -p "$out/logs" || { say "error: cannot create $out"; exit 1; }
out=$(cd "$out" && pwd)
rm -f "$out"/logs/* "$out/pg.csv"

criu_why=
if [ $criu = 0 ]; then
	criu_why="--no-criu"
elif ! command -v criu >/dev/null 2>&1; then
	criu_why="criu is not on PATH (make deps-servers installs Debian's)"
elif ! criu check >/dev/null 2>&1; then
	criu_why="'criu check' fails here: $(criu check 2>&1 | grep -m1 -i error)"
fi
if [ -n "$criu_why" ]; then
	say "SKIP criu: $criu_why"
else
	modes="$modes criu"
fi

# A postgres killed with SIGKILL (a failed move, the cleanup) leaves its SysV
# interlock segment and /dev/shm/PostgreSQL.* segments behind: removed at exit
# (those this run made that nobody maps any more).
pg_shmids=()
pg_cleanup() {
	local rc=$? f id
	(exit $rc)
	(srv_cleanup)
	for id in "${pg_shmids[@]:-}"; do
		[ -n "$id" ] && ipcrm -m "$id" 2>/dev/null
	done
	[ -n "${pg_mark:-}" ] && for f in $(find /dev/shm -maxdepth 1 -name 'PostgreSQL.*' \
		-user postgres -newer "$pg_mark" 2>/dev/null); do
		grep -qF "$f" /proc/[0-9]*/maps 2>/dev/null || rm -f "$f"
	done
	rm -f "${pg_mark:-}"
	exit $rc
}
srv_hosts_up
trap pg_cleanup EXIT
pg_mark=$SRV_DIR.pgmark
: >"$pg_mark"
t_start=$SECONDS
chmod 755 "$SRV_DIR"
data=$SRV_DIR/pg/data
echo "mode,status,haul_downtime_ms,haul_total_s,pgbench_tps,txn_p50_ms,txn_p99_ms,txn_max_ms,commit_gap_ms,transactions,failed,aborted,consistent,note" >"$out/pg.csv"

# psql_cli SQL: the result of SQL, asked from the client host
psql_cli() {
	srv_in cli "$PGBIN/psql" -h "$SRV_ADDR" -U postgres -d postgres -XAtq -v ON_ERROR_STOP=1 -c "$1"
}

# start_pg: the postmaster on the source; pid in pg_pid; 1 when it does not start.
start_pg() {
	: >"$SRV_DIR/pg.log"
	srv_bg src "$SRV_DIR/pg.log" setpriv --reuid=postgres --regid=postgres --init-groups \
		"$PGBIN/postgres" -D "$data" -c listen_addresses="$SRV_ADDR" -c port=5432 \
		-c unix_socket_directories= -c shared_buffers="$buffers" -c max_connections=40 \
		-c max_wal_size=8GB -c logging_collector=off
	pg_pid=$SRV_BG_PID
	srv_migrated_pids+=("$pg_pid")
	wait_line "$SRV_DIR/pg.log" "database system is ready to accept connections" 60 || return 1
	pg_shmids+=("$(awk 'NR == 7 { print $2 }' "$data/postmaster.pid" 2>/dev/null)")
}

# stop_pg: a fast shutdown of the cluster wherever it runs now (a clean data
# directory for the next mode), else SIGKILL of everything on the hosts.
stop_pg() {
	local h p
	local pm n
	# the postmaster wherever it runs now: a moved one may have another pid than
	# postmaster.pid says (a new PID namespace), so pg_ctl is not asked; SIGINT is
	# its fast shutdown
	for h in dst src; do
		for p in $(ip netns pids "$(srv_ns $h)" 2>/dev/null); do
			[ "$(cat /proc/"$p"/comm 2>/dev/null)" = postgres ] || continue
			pm=$(awk '{ print $4 }' /proc/"$p"/stat 2>/dev/null)
			[ "$(cat /proc/"$pm"/comm 2>/dev/null)" = postgres ] && continue
			kill -INT "$p" 2>/dev/null
			n=0
			while kill -0 "$p" 2>/dev/null && [ $n -lt 1200 ]; do
				sleep 0.05
				n=$((n + 1))
			done
		done
	done
	for h in src dst cli; do
		for p in $(ip netns pids "$(srv_ns $h)" 2>/dev/null); do
			[ "$p" = "${SRV_PS_PID:-}" ] && continue
			srv_thaw "$p"
			kill -9 "$p" 2>/dev/null
		done
	done
	[ -n "${SRV_PS_PID:-}" ] && kill -9 "$SRV_PS_PID" 2>/dev/null
	while [ -n "$(ip netns pids "$SRV_NS_SRC")$(ip netns pids "$SRV_NS_DST")$(ip netns pids "$SRV_NS_CLI")" ]; do
		sleep 0.05
	done
	rm -f "$data/postmaster.pid"
	srv_addr_on dst && ip -n "$SRV_NS_DST" addr del "$SRV_ADDR/$SRV_PREFIX" dev eth0
	srv_addr_on src || ip -n "$SRV_NS_SRC" addr add "$SRV_ADDR/$SRV_PREFIX" dev eth0
}

# row FIELDS...: one CSV line.
row() {
	local IFS=,
	echo "$*" >>"$out/pg.csv"
}

# txn_stats LOGS...: "p50 p99 max gap" in ms of the pgbench -l logs (fields:
# client, txn, latency us, script, epoch s, us; "failed"/"skipped" latencies
# are not numbers and count in pgbench's report instead)
txn_stats() {
	python3 - "$@" <<'EOF'
import sys
lat, ends = [], []
for f in sys.argv[1:]:
    for line in open(f):
        p = line.split()
        if len(p) < 6 or not p[2].isdigit():
            continue
        lat.append(int(p[2]) / 1000.0)
        ends.append(int(p[4]) * 1e6 + int(p[5]))
if not lat:
    print("- - - -")
    sys.exit()
lat.sort()
ends.sort()
gap = max((b - a for a, b in zip(ends, ends[1:])), default=0) / 1000.0
q = lambda x: lat[min(len(lat) - 1, int(x * len(lat)))]
print("%.2f %.2f %.1f %.1f" % (q(0.5), q(0.99), lat[-1], gap))
EOF
}

# move MODE: migrate pg_pid (haul) or dump/restore it (criu); sets mig_rc,
# downtime, total.
move() {
	local flag= t0 t1 img=$SRV_DIR/criu
	case $1 in
	stop-and-copy) flag=--stop-and-copy ;;
	criu)
		rm -rf "$img" && mkdir -p "$img"
		t0=$(date +%s%N)
		srv_in src criu dump -t "$pg_pid" --tcp-established --shell-job -D "$img" \
			-o dump.log >/dev/null 2>&1 ||
			{ mig_rc=1; cp "$img/dump.log" "$SRV_DIR/migrate.log"; return; }
		ip -n "$SRV_NS_SRC" addr del "$SRV_ADDR/$SRV_PREFIX" dev eth0
		ip -n "$SRV_NS_DST" addr add "$SRV_ADDR/$SRV_PREFIX" dev eth0
		srv_in dst criu restore -d --tcp-established --shell-job -D "$img" \
			-o restore.log >/dev/null 2>&1
		mig_rc=$?
		t1=$(date +%s%N)
		[ $mig_rc -ne 0 ] && cp "$img/restore.log" "$SRV_DIR/migrate.log"
		downtime=$(((t1 - t0) / 1000000))
		total=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", (b - a) / 1e9 }')
		return ;;
	esac
	# shellcheck disable=SC2086
	SRV_MIGRATE_TIMEOUT=$((run_s + 120)) srv_migrate "$pg_pid" $flag $haul_args
	mig_rc=$?
	downtime=$(srv_downtime)
	total=$(srv_json "$SRV_DIR/migrate.json" total_ms)
	[ "$total" = - ] || total=$(awk -v t="$total" 'BEGIN { printf "%.3f", t / 1000 }')
}

# balances: "accounts tellers branches" balance sums now.
balances() {
	psql_cli "select (select sum(abalance) from pgbench_accounts) || ' ' ||
		(select sum(tbalance) from pgbench_tellers) || ' ' ||
		(select sum(bbalance) from pgbench_branches)"
}

# consistent "A0 T0 B0" PROCESSED: yes when pgbench_history (which pgbench
# truncates when a run starts) holds exactly the transactions pgbench counted,
# and the accounts, tellers and branches balances each grew by its sum of deltas.
consistent() {
	local n h a t b a0 t0 b0
	read -r a0 t0 b0 <<<"$1"
	n=$(psql_cli "select count(*) from pgbench_history") || { echo "no answer"; return; }
	h=$(psql_cli "select coalesce(sum(delta), 0) from pgbench_history")
	read -r a t b <<<"$(balances)"
	if [ "$n" != "$2" ]; then
		echo "history $n rows, pgbench counted $2"
	elif [ -z "${a:-}" ] || [ $((a - a0)) != "$h" ] || [ $((t - t0)) != "$h" ] ||
		[ $((b - b0)) != "$h" ]; then
		echo "balances grew $((a - a0))/$((t - t0))/$((b - b0)), history $h"
	else
		echo yes
	fi
}

# mode MODE: one measurement, one CSV row.
mode() {
	local m=$1 bal0 processed failed aborted stats tps cons note=
	if [ $((SECONDS - t_start)) -ge "$budget" ]; then
		say "skipped: $m: over the budget of $budget s"
		row "$m" skipped "" "" "" "" "" "" "" "" "" "" "" "over budget"
		return
	fi
	start_pg || { say "failed: $m: postgres did not start: $(tail -2 "$SRV_DIR/pg.log")"; row "$m" failed "" "" "" "" "" "" "" "" "" "" "" "postgres did not start"; stop_pg; return; }
	srv_pageserver
	psql_cli "create extension if not exists pg_prewarm" >/dev/null 2>&1
	psql_cli "select pg_prewarm('pgbench_accounts') + pg_prewarm('pgbench_accounts_pkey')
		+ pg_prewarm('pgbench_tellers') + pg_prewarm('pgbench_branches')" >"$SRV_DIR/prewarm" ||
		say "warning: pg_prewarm failed"
	bal0=$(balances)
	say "mode $m: postmaster pid $pg_pid, $(($(cat "$SRV_DIR/prewarm") * 8 >> 10)) MiB prewarmed into shared_buffers $buffers"
	rm -rf "$SRV_DIR/txlog" && mkdir -p "$SRV_DIR/txlog"
	srv_bg cli "$SRV_DIR/bench.log" "$PGBIN/pgbench" -h "$SRV_ADDR" -U postgres -c 8 -j 2 \
		-T "$run_s" -P 1 -l --log-prefix="$SRV_DIR/txlog/pgbench_log" postgres
	local bench=$SRV_BG_PID
	wait_more "$SRV_DIR/bench.log" '^progress: ' $((warmup_s - 1)) $((warmup_s + 30)) ||
		say "warning: pgbench made little progress before the move"
	move "$m"
	srv_wait_line_while "$SRV_DIR/bench.log" '^number of transactions actually processed' \
		"$bench" $((run_s + 120))
	processed=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$SRV_DIR/bench.log")
	failed=$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' "$SRV_DIR/bench.log")
	aborted=$(grep -c 'aborted' "$SRV_DIR/bench.log")
	tps=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' "$SRV_DIR/bench.log" | head -1)
	stats=$(txn_stats "$SRV_DIR"/txlog/pgbench_log*)
	read -r p50 p99 max gap <<<"$stats"
	cp "$SRV_DIR/bench.log" "$out/logs/$m-pgbench.log"
	cp "$SRV_DIR/migrate.log" "$out/logs/$m-migrate.log" 2>/dev/null
	if [ $mig_rc -ne 0 ]; then
		note="migrate exit $mig_rc: $(grep -v '^$' "$SRV_DIR/migrate.log" | tail -1 | tr ',' ';')"
		say "failed: $m: $note"
		row "$m" failed "" "" "${tps:-}" "$p50" "$p99" "$max" "$gap" "${processed:-}" "${failed:-}" "$aborted" "" "$note"
		cp "$SRV_DIR/pg.log" "$out/logs/$m-postgres.log"
		stop_pg
		return
	fi
	cons=$(consistent "$bal0" "${processed:-?}")
	say "mode $m: haul downtime $downtime ms, pgbench $tps tps, txn p50 $p50 p99 $p99 max $max ms, commit gap $gap ms, $processed transactions, ${failed:-?} failed, $aborted aborted clients, consistent: $cons"
	row "$m" ok "$downtime" "$total" "$tps" "$p50" "$p99" "$max" "$gap" "$processed" "${failed:-}" "$aborted" "$(echo "$cons" | tr ',' ';')" ""
	cp "$SRV_DIR/pg.log" "$out/logs/$m-postgres.log"
	stop_pg
}

say "making the cluster: initdb, pgbench -i -s $scale"
mkdir "$SRV_DIR/pg" && chown postgres: "$SRV_DIR/pg"
setpriv --reuid=postgres --regid=postgres --init-groups "$PGBIN/initdb" -D "$data" -A trust \
	-U postgres >"$SRV_DIR/initdb.log" 2>&1 || { say "error: initdb failed: $(tail -2 "$SRV_DIR/initdb.log")"; exit 1; }
echo "host all all 198.18.0.0/15 trust" >>"$data/pg_hba.conf"
start_pg || { say "error: postgres did not start: $(tail -2 "$SRV_DIR/pg.log")"; exit 1; }
t0=$SECONDS
srv_in cli "$PGBIN/pgbench" -h "$SRV_ADDR" -U postgres -i -s "$scale" -I dtGvp -q postgres \
	>"$SRV_DIR/init.log" 2>&1 || { say "error: pgbench -i failed: $(tail -2 "$SRV_DIR/init.log")"; exit 1; }
say "pgbench -i -s $scale: $((SECONDS - t0)) s, database $(psql_cli "select pg_size_pretty(pg_database_size('postgres'))")"
stop_pg
for m in $modes; do
	mode "$m"
done
[ -n "$criu_why" ] && row criu skipped "" "" "" "" "" "" "" "" "" "" "" "$(echo "$criu_why" | tr ',' ';')"

say "results: $out/pg.csv"
column -s, -t <"$out/pg.csv" 2>/dev/null || cat "$out/pg.csv"
if [ $results = 1 ]; then
	{
		echo
		echo "**Run** $(date -u +%Y-%m-%d) $(git -C "$top" rev-parse --short HEAD 2>/dev/null): shared_buffers $buffers, pgbench -s $scale -c 8 -j 2 -T $run_s, move at ${warmup_s} s (\`bench/servers/pg.sh\`)"
		echo
		echo "| mode | haul downtime (ms) | pgbench tps | txn p50 / p99 / max (ms) | largest commit gap (ms) | transactions | failed | aborted clients | data consistent |"
		echo "|---|---|---|---|---|---|---|---|---|"
		tail -n +2 "$out/pg.csv" | while IFS=, read -r m st d _ tp p5 p9 mx g n f a c note; do
			if [ "$st" = ok ]; then
				echo "| $m | $d | $tp | $p5 / $p9 / $mx | $g | $n | $f | $a | $c |"
			else
				echo "| $m | $st: $note | | | | | | | |"
			fi
		done
	} >"$out/table.md"
	# into the PostgreSQL section: before the next section's heading
	python3 - "$top/bench/RESULTS.md" "$out/table.md" <<'PYEOF'
import sys
doc, table = open(sys.argv[1]).read(), open(sys.argv[2]).read()
start = doc.find("## PostgreSQL under pgbench")
nxt = doc.find("\n## ", start + 1) if start >= 0 else -1
doc = doc[:nxt + 1] + table.lstrip("\n") + "\n" + doc[nxt + 1:] if nxt >= 0 else doc + table
open(sys.argv[1], "w").write(doc)
PYEOF
	say "table added to bench/RESULTS.md (section PostgreSQL under pgbench)"
fi
bad=$(tail -n +2 "$out/pg.csv" | awk -F, '$2 == "failed" || ($2 == "ok" && ($11 != 0 || $12 != 0 || $13 != "yes"))' | wc -l)
[ "$bad" -eq 0 ]
exit
}
