#!/bin/bash
# srv_postgres.sh - a PostgreSQL 15 cluster (initdb in the work directory,
# shared_buffers SRV_PG_BUFFERS, default 128MB) listening on the service
# address moves from the source host to the target host with `haul migrate
# POSTMASTER --move-address 198.18.0.100/24` while `pgbench -c 8 -j 2` runs
# from the client host (issue 12, Deliver 6):
#  - pgbench's own report: no failed transaction, no aborted client, and it
#    kept committing after the move;
#  - the data is consistent afterwards: one pgbench_history row per
#    transaction pgbench counted, and the sums of pgbench_accounts.abalance,
#    pgbench_tellers.tbalance and pgbench_branches.bbalance all equal the sum
#    of pgbench_history.delta (each TPC-B transaction adds its delta to one
#    row of each);
#  - postgres runs on the target only, the address is there only, no haul
#    nftables/iptables rule is left.
# The whole tree moves: the postmaster, its auxiliary processes and one
# backend per pgbench connection, sharing shared_buffers (MAP_SHARED), the
# postmaster's SysV interlock segment and the dynamic shared memory control
# segment (/dev/shm).  Autovacuum stays on, as in production: its launcher is
# one more child, and the workers it may fork during the move are the kind of
# process the tree freeze has to catch.  Clients come over TCP only
# (unix_socket_directories is empty): both "hosts" share this machine's file
# system, where a socket path is one name for two hosts.
# A refusal by haul is a failure (haul's words are printed), not a skip.
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
set -u
. "$(dirname "$0")/srv_hosts.shlib"
PGBIN=${SRV_PG_BIN:-/usr/lib/postgresql/15/bin}
BUFFERS=${SRV_PG_BUFFERS:-128MB}
SCALE=${SRV_PG_SCALE:-5}
SECONDS_RUN=${SRV_PG_SECONDS:-30}
srv_require_base
srv_require_pkgs postgresql python3 nftables
for t in initdb postgres pgbench psql; do
	[ -x "$PGBIN/$t" ] || srv_skip "no $PGBIN/$t (Debian 12: postgresql-15; SRV_PG_BIN names another)"
done
id postgres >/dev/null 2>&1 || srv_skip "no user postgres (Debian: postgresql creates it)"
srv_need_mem $((1 << 30))

# psql_cli SQL: one value from the cluster, asked from the client host
psql_cli() {
	srv_in cli "$PGBIN/psql" -h "$SRV_ADDR" -U postgres -d postgres -XAtq -v ON_ERROR_STOP=1 -c "$1"
}

# pg_remember: the postmaster's SysV interlock segment (postmaster.pid line 7:
# key, shmid).  A postgres killed with SIGKILL (cleanup, a failed move) leaves
# it behind, and its dynamic shared memory segments in /dev/shm: nobody else
# removes them.
pg_shmid=
pg_remember() {
	pg_shmid=$(awk 'NR == 7 { print $2 }' "$SRV_DIR/pg/data/postmaster.pid" 2>/dev/null)
}

# pg_cleanup: the EXIT trap: srv_cleanup (every process gone), then the SysV
# segment and the /dev/shm/PostgreSQL.* files made since this script started
# that no process maps any more.
pg_cleanup() {
	local rc=$? f
	(exit $rc)
	(srv_cleanup)
	[ -n "$pg_shmid" ] && ipcrm -m "$pg_shmid" 2>/dev/null
	[ -n "${pg_mark:-}" ] && for f in $(find /dev/shm -maxdepth 1 -name 'PostgreSQL.*' -user postgres \
		-newer "$pg_mark" 2>/dev/null); do
		grep -qF "$f" /proc/[0-9]*/maps 2>/dev/null || rm -f "$f"
	done
	rm -f "$pg_mark"
	exit $rc
}

srv_hosts_up "${SRV_RATE:-}"
trap pg_cleanup EXIT
pg_mark=$SRV_DIR.pgmark
: >"$pg_mark"
chmod 755 "$SRV_DIR"
mkdir "$SRV_DIR/pg" && chown postgres: "$SRV_DIR/pg"
setpriv --reuid=postgres --regid=postgres --init-groups \
	"$PGBIN/initdb" -D "$SRV_DIR/pg/data" -A trust -U postgres >"$SRV_DIR/initdb.log" 2>&1 ||
	srv_fail "initdb failed: $(tail -3 "$SRV_DIR/initdb.log")"
echo "host all all 198.18.0.0/15 trust" >>"$SRV_DIR/pg/data/pg_hba.conf"
srv_pageserver
: >"$SRV_DIR/pg.log"
# setpriv execs: the pid is the postmaster's
srv_bg src "$SRV_DIR/pg.log" setpriv --reuid=postgres --regid=postgres --init-groups \
	"$PGBIN/postgres" -D "$SRV_DIR/pg/data" -c listen_addresses="$SRV_ADDR" -c port=5432 \
	-c unix_socket_directories= -c shared_buffers="$BUFFERS" -c max_connections=40 \
	-c logging_collector=off
pm=$SRV_BG_PID
srv_migrated_pids+=("$pm")
wait_line "$SRV_DIR/pg.log" "database system is ready to accept connections" 30 ||
	srv_fail "postgres did not start: $(tail -3 "$SRV_DIR/pg.log")"
wait_comm "$pm" postgres || srv_fail "pid $pm is not postgres"
pg_remember

srv_in cli "$PGBIN/pgbench" -h "$SRV_ADDR" -U postgres -i -s "$SCALE" -q postgres \
	>"$SRV_DIR/init.log" 2>&1 || srv_fail "pgbench -i failed: $(tail -3 "$SRV_DIR/init.log")"
srv_say "postmaster pid $pm, shared_buffers $BUFFERS, pgbench scale $SCALE"

srv_bg cli "$SRV_DIR/bench.log" "$PGBIN/pgbench" -h "$SRV_ADDR" -U postgres -c 8 -j 2 \
	-T "$SECONDS_RUN" -P 1 postgres
bench=$SRV_BG_PID
wait_more "$SRV_DIR/bench.log" '^progress: ' 2 30 ||
	srv_fail "pgbench made no progress before the move: $(tail -3 "$SRV_DIR/bench.log")"
srv_say "pgbench pid $bench runs; the postmaster has $(cat /proc/"$pm"/task/*/children | wc -w) children"
srv_migrate_or_fail "$pm"
mrc=$?
progress_at_move=$(grep -c '^progress: ' "$SRV_DIR/bench.log")
[ $mrc -eq 0 ] || srv_fail "haul migrate did not move postgres (exit $mrc; see its output above)"
srv_say "haul migrate: downtime $(srv_downtime) ms"
srv_haul_summary
fail=0
srv_check_moved postgres || fail=1
srv_wait_line_while "$SRV_DIR/bench.log" '^number of transactions actually processed' "$bench" \
	$((SECONDS_RUN + 60)) || { srv_say "pgbench did not finish"; fail=1; }
srv_say "pgbench's report:"
grep -E '^(number of|latency|tps|pgbench: error|Run was aborted)' "$SRV_DIR/bench.log" | sed 's/^/    /'
grep -Eq 'aborted|pgbench: error' "$SRV_DIR/bench.log" && { srv_say "pgbench clients aborted"; fail=1; }
grep -Eq '^number of failed transactions: 0 ' "$SRV_DIR/bench.log" ||
	{ srv_say "pgbench reports failed transactions (or no count of them)"; fail=1; }
# a progress line after the move with transactions in it: commits went on on the target
tail -n +$((progress_at_move + 1)) "$SRV_DIR/bench.log" | grep '^progress: ' |
	awk '$4 > 0 { ok = 1 } END { exit !ok }' ||
	{ srv_say "pgbench committed nothing after the move"; fail=1; }
processed=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$SRV_DIR/bench.log")
history=$(psql_cli "select count(*) from pgbench_history") || { srv_say "cannot query the moved cluster"; fail=1; }
[ -n "$processed" ] && [ "$history" = "$processed" ] ||
	{ srv_say "pgbench_history holds ${history:-?} rows, pgbench counted ${processed:-?} transactions"; fail=1; }
sums=$(psql_cli "select (select coalesce(sum(delta), 0) from pgbench_history) || ' ' ||
	(select sum(abalance) from pgbench_accounts) || ' ' || (select sum(tbalance) from pgbench_tellers)
	|| ' ' || (select sum(bbalance) from pgbench_branches)")
read -r h a t b <<<"$sums"
[ -n "${h:-}" ] && [ "$h" = "${a:-}" ] && [ "$h" = "${t:-}" ] && [ "$h" = "${b:-}" ] ||
	{ srv_say "balances disagree: history $h, accounts ${a:-?}, tellers ${t:-?}, branches ${b:-?}"; fail=1; }
if [ $fail -ne 0 ]; then
	srv_say "the server's log (the restored copy writes to the same file):"
	tail -8 "$SRV_DIR/pg.log" | sed 's/^/    /'
	srv_fail "PostgreSQL did not move intact under pgbench"
fi
srv_say "PASS: $processed transactions, 0 failed, history and balances agree (sum $h)"
exit 0
