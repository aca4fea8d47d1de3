#!/bin/bash
# srv_jvm.sh - a JVM server (OpenJDK's HotSpot, default G1 collector, JIT,
# its ~20 threads, hsperfdata mapped shared) moves from the source host to the
# target host with `haul migrate PID --move-address 198.18.0.100/24` while 16
# keep-alive HTTP connections from the client host keep asking it
# (srvload_http).  The server is tests/extra/SrvJvm.java: one NIO selector
# thread answers "path=PATH n=N h=H" (N counts the answers of each
# connection, so lost per-connection state shows as a wrong value), two
# threads churn a heap of JVM_MIB MiB (default 256) so the collector runs and
# pre-copy has pages to chase, and a thread re-sums a table and prints ERROR
# if it ever changes.  Checks: zero client errors, wrong values and
# reconnects; answers keep coming from the target; the JVM runs on the target
# only, with its threads, and printed no ERROR; the address is on the target
# only, no haul nftables/iptables rule is left.  A refusal by haul is a
# failure (haul's words are printed), not a skip.  JVM_MIGRATE_ARGS adds
# words to haul migrate (--postcopy, --hybrid).
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
set -u
. "$(dirname "$0")/srv_hosts.shlib"
MIB=${JVM_MIB:-256}
srv_require_base
srv_require_pkgs openjdk-17-jdk-headless nftables
srv_require_prog srvload_http

srv_hosts_up "${SRV_RATE:-}"
mkdir -p "$SRV_DIR/classes"
javac -d "$SRV_DIR/classes" "$SRV_TOP/tests/extra/SrvJvm.java" 2>"$SRV_DIR/javac.err" ||
	srv_fail "javac: $(tail -3 "$SRV_DIR/javac.err")"
srv_pageserver
srv_bg src "$SRV_DIR/jvm.out" java -Xms$((MIB + 128))m -Xmx$((MIB * 2 + 256))m \
	-cp "$SRV_DIR/classes" SrvJvm "$SRV_ADDR" 8080 "$MIB"
jvm=$SRV_BG_PID
srv_migrated_pids+=("$jvm")
wait_line "$SRV_DIR/jvm.out" "^listening" 60 || srv_fail "the JVM did not start: $(tail -3 "$SRV_DIR/jvm.out")"
srv_wait_tcp cli "$SRV_ADDR" 8080 || srv_fail "the JVM does not answer on $SRV_ADDR:8080"
threads=$(ls /proc/"$jvm"/task | wc -l)
srv_say "JVM pid $jvm: $threads threads, heap of $MIB MiB churning"

srv_load_start http "$SRV_DIR/load.log" "$SRV_DIR/load.json" --port 8080 --conns 16
srv_load_progress "$SRV_DIR/load.log" 2 || srv_fail "the clients made no progress before the move"
# shellcheck disable=SC2086 # JVM_MIGRATE_ARGS: extra words for haul migrate (--postcopy)
srv_migrate_or_fail "$jvm" ${JVM_MIGRATE_ARGS:-}
mrc=$?
if [ $mrc -ne 0 ]; then
	srv_load_stop "$SRV_LOAD_PID" "$SRV_DIR/load.log" "$SRV_DIR/load.json"
	srv_fail "haul migrate did not move the JVM (exit $mrc; see its output above)"
fi
srv_say "haul migrate: downtime $(srv_downtime) ms"
srv_haul_summary
fail=0
srv_check_moved java || fail=1
if [ -n "${SRV_MOVED_PID:-}" ]; then
	n=$(ls /proc/"$SRV_MOVED_PID"/task 2>/dev/null | wc -l)
	[ "$n" -ge "$threads" ] || { srv_say "the JVM on the target has $n threads, not $threads"; fail=1; }
fi
srv_load_progress "$SRV_DIR/load.log" 2 || { srv_say "the clients stopped getting answers after the move"; fail=1; }
sleep 2 # the checksum thread and the collector run on the target
srv_load_stop "$SRV_LOAD_PID" "$SRV_DIR/load.log" "$SRV_DIR/load.json" ||
	{ srv_say "the clients saw errors, wrong values or reconnects"; fail=1; }
if grep -q "ERROR\|Exception\|fatal error" "$SRV_DIR/jvm.out"; then
	srv_say "the JVM reports: $(grep -m3 "ERROR\|Exception\|fatal error" "$SRV_DIR/jvm.out")"
	fail=1
fi
[ $fail -eq 0 ] || srv_fail "the JVM did not move with its keep-alive connections"
srv_say "PASS: the JVM moved with $threads threads, clients max latency $(srv_json "$SRV_DIR/load.json" max) ms, largest gap $(srv_json "$SRV_DIR/load.json" max_gap_ms) ms"
exit 0
