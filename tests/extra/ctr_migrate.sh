#!/bin/bash
# ctr_migrate.sh - `haul migrate --container ID` moves a running runc
# container, under client load, from one host (network namespace) to
# another with its service address (issue 14, Deliver 3 and 4).
#
# Hosts: srv_hosts.shlib's source, target and client on one bridge.  The
# container (runc 1.1, Debian's) runs on the source: busybox-static plus
# tests/progs/ctr_httpd.c built static (srvload_http's protocol; it
# rewrites /served in its rootfs every 100 requests with a token kept only
# in memory), bound to the service address 198.18.0.100:8080.  What this
# machine needs, and why:
#   - no rlimits in config.json (root lacks CAP_SYS_RESOURCE: runc fails
#     setting them), terminal false, a writable rootfs;
#   - runc, not crun (crun refuses the hybrid cgroups);
#   - the container shares its host's network namespace (no "network"
#     entry): haul carries its sockets and moves the address in the host's
#     namespace (one in a network namespace of its own that the engine made
#     by path, with a veth: ctr_migrate_netns.sh);
#   - the two "hosts" share one kernel, so their containers must not share
#     a cgroup as two machines' would not: runc on each host runs from a
#     cgroup of that host's own (hctr-src-PID, hctr-dst-PID; runc makes a
#     relative cgroupsPath below its own cgroup in the v1 hierarchies), and
#     the target page server's target-prepare hook (--on-switch) renames the
#     cgroupsPath in the received (or shared) config.json (runc puts the cgroup2 part of
#     a hybrid layout at /cgroupsPath whatever its own cgroup: without the
#     rename the restore would join the source's frozen cgroup).
# Checks: 16 keep-alive clients on the client host see zero errors, wrong
# values or reconnects through the migration; haul migrate exits 0; the
# target's runc lists the container running under the same ID (runc list,
# runc state, runc exec) and the source's lists nothing; the token in
# /served is the same (the process moved, it did not restart) and its
# count goes on; a file written into the rootfs before the migration and
# one written while pre-copy runs (haul parked at its "precopy" fault
# point meanwhile) are in the target's rootfs; runc kill on the target
# stops it.  A refusal: a container with a `runc exec` process (not a
# descendant of its pid 1) is refused by name before anything is touched,
# and it runs on here with nothing left on the target.  A rollback: the target refuses the switch
# (HAUL_FAULT=corrupt-state), and the container runs on here with its
# address and its clients' connections (counted in the zero errors), and
# nothing of it is left on the target; so too when runc restore hangs on
# the target (a wrapper, while a file exists): it is killed after
# HAUL_CTR_RESTORE_TIMEOUT_MS and the switch refused; and when haul is
# killed mid-pre-copy.  --shared-storage: a second
# container moves without its bundle being copied and runs on the target
# from the same bundle path.
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
set -u
. "$(dirname "$0")/srv_hosts.shlib"
. "$(dirname "$0")/ctr_hosts.shlib"
SRC_TOP=${HAUL_SRC:-$SRV_TOP}
srv_require_base
srv_require_pkgs nftables
srv_require_prog srvload_http
ctr_require

ID=ctr$$m
ID2=ctr$$u
ID3=ctr$$s
CTR_IDS="$ID $ID2 $ID3"
ctr_hosts_up

gcc -static -O2 -o "$SRV_DIR/ctr_httpd" "$SRC_TOP/tests/progs/ctr_httpd.c" 2>"$SRV_DIR/gcc.err" ||
	srv_skip "cannot build a static test program (libc6-dev): $(tail -1 "$SRV_DIR/gcc.err")"

mk_bundle() { # dir id extra-jq
	mkdir -p "$1/rootfs/bin" "$1/rootfs/dev" "$1/rootfs/proc" "$1/rootfs/sys" "$1/rootfs/tmp"
	cp /bin/busybox "$1/rootfs/bin/"
	cp "$SRV_DIR/ctr_httpd" "$1/rootfs/ctr_httpd"
	(cd "$1" && runc spec) || return 1
	jq "del(.process.rlimits) | .process.terminal=false | .root.readonly=false |
	    .process.args=[\"/ctr_httpd\",\"$SRV_ADDR\",\"8080\",\"32\",\"/served\"] |
	    .hostname=\"$2\" | .linux.cgroupsPath=\"$2\" |
	    .linux.namespaces |= map(select(.type != \"network\")) $3" \
		"$1/config.json" >"$1/c.json" && mv "$1/c.json" "$1/config.json"
}
mk_bundle "$SRV_DIR/b" "$ID" "" || srv_fail "runc spec"
B=$SRV_DIR/b/rootfs
echo "written before" >"$B/before.txt"

# the container on the source: runc run from the source's cgroup, in its network
# namespace; its stdio is /dev/null (a host file would be outside its mounts: refused)
(cg_enter "hctr-src-$$" && cd "$SRV_DIR/b" &&
	exec nsenter --net=/run/netns/"$SRV_NS_SRC" -- runc --root "$RS" --log "$SRV_DIR/run.log" \
		run -d $ID) </dev/null >/dev/null 2>&1 ||
	srv_skip "runc run does not work here: $(tail -2 "$SRV_DIR/run.log")"
wait_line "$B/served" "^[0-9]* 0$" 20 || srv_fail "the container's server never started"
token=$(cut -d' ' -f1 "$B/served")
srv_say "container $ID runs on the source (token $token)"

# the target: a page server taking containers, in the target's cgroup; its hook
# gives the container a cgroup of the target's (see the header)
cat >"$SRV_DIR/hook.sh" <<EOF
[ "\$HAUL_SWITCH_PHASE" = target-prepare ] || exit 0
for b in $SRV_DIR/dst/*\$HAUL_MIGRATION_ID/bundle $SRV_DIR/s; do
	[ -f "\$b/config.json" ] || continue
	jq '.linux.cgroupsPath |= sub("-dst\$"; "") + "-dst"' "\$b/config.json" >"\$b/c.json" &&
		mv "\$b/c.json" "\$b/config.json"
done
EOF
: >"$SRV_DIR/ps.log"
# its runc is a wrapper that hangs on restore while $SRV_DIR/hang exists (case 3)
mkdir -p "$SRV_DIR/fakebin"
cat >"$SRV_DIR/fakebin/runc" <<EOF
#!/bin/sh
case " \$* " in *" restore "*) [ -e "$SRV_DIR/hang" ] && exec sleep 60 ;; esac
exec $(command -v runc) "\$@"
EOF
chmod +x "$SRV_DIR/fakebin/runc"
srv_bg dst "$SRV_DIR/ps.log" bash -c 'cg_enter "$0"; exec "$@"' "hctr-dst-$$" \
	env PATH="$SRV_DIR/fakebin:$PATH" "$HAUL" pageserver --listen "$SRV_DST_IP:$SRV_PS_PORT" --key "$SRV_KEY" \
	--containers "$SRV_DIR/dst" --root "$RD" --on-switch "sh $SRV_DIR/hook.sh"
SRV_PS_PID=$SRV_BG_PID
wait_line "$SRV_DIR/ps.log" "listening on" 10 ||
	srv_fail "the page server did not start: $(tail -3 "$SRV_DIR/ps.log")"

# 1. a refusal leaves the container running: one with a `runc exec` process (its
# parent is outside the container, so it is no part of pid 1's tree: refused by
# name).  (This case refused a user namespace before the criu entry point carried
# them; ctr_userns.sh covers those.)  Its stdio is /dev/null: a host file is refused too.
mk_bundle "$SRV_DIR/u" "$ID2" '| .process.args=["/bin/busybox","sleep","3600"]' ||
	srv_fail "runc spec (exec refusal)"
if (cg_enter "hctr-src-$$" && cd "$SRV_DIR/u" &&
	exec runc --root "$RS" --log "$SRV_DIR/run2.log" run -d $ID2) </dev/null >/dev/null 2>&1; then
	runc --root "$RS" exec -d $ID2 /bin/busybox sleep 3601 </dev/null >/dev/null 2>&1 ||
		srv_fail "runc exec -d in $ID2"
	srv_in src "$HAUL" migrate --container $ID2 --root "$RS" --to "$SRV_DST_IP:$SRV_PS_PORT" \
		--key "$SRV_KEY" >"$SRV_DIR/refuse.log" 2>&1
	rc=$?
	[ $rc -eq 1 ] || srv_fail "the container with a runc exec process: haul migrate exited $rc, want 1: $(cat "$SRV_DIR/refuse.log")"
	grep -q "does not descend from its pid 1 (a \`runc exec\` process)" "$SRV_DIR/refuse.log" ||
		srv_fail "the refusal does not name the runc exec process: $(cat "$SRV_DIR/refuse.log")"
	runc --root "$RS" list | grep -q "^$ID2 .* running " || srv_fail "$ID2 is not running after the refusal"
	[ -z "$(runc --root "$RD" list -q 2>/dev/null)" ] || srv_fail "the refusal left a container on the target"
	[ -z "$(ls -A "$SRV_DIR/dst" | grep -v '^\.criu$')" ] || srv_fail "the refusal left files on the target: $(ls "$SRV_DIR/dst")"
	srv_say "refused by name (a runc exec process); $ID2 runs on, nothing on the target"
	runc --root "$RS" kill $ID2 KILL 2>/dev/null
	sleep 0.2
	runc --root "$RS" delete -f $ID2 >/dev/null 2>&1
else
	srv_fail "runc run of $ID2: $(tail -2 "$SRV_DIR/run2.log")"
fi

# 2. under load, a migration the target refuses at the switch (HAUL_FAULT=corrupt-state:
# the state it receives does not decode) rolls back: the container runs on here, its
# clients keep their connections, nothing of it stays on the target
srv_load_start http "$SRV_DIR/load.log" "$SRV_DIR/load.json" --port 8080 --conns 16
srv_load_progress "$SRV_DIR/load.log" 2 || srv_fail "the clients made no progress before the move"
HAUL_FAULT=corrupt-state srv_in src timeout 300 "$HAUL" migrate --container $ID --root "$RS" \
	--to "$SRV_DST_IP:$SRV_PS_PORT" --key "$SRV_KEY" --move-address "$SRV_ADDR/$SRV_PREFIX" \
	>"$SRV_DIR/rollback.log" 2>&1
rc=$?
[ $rc -eq 1 ] || srv_fail "the refused switch: haul migrate exited $rc, want 1: $(tail -5 "$SRV_DIR/rollback.log")"
runc --root "$RS" list | grep -q "^$ID .* running " || srv_fail "$ID is not running here after the rollback"
srv_addr_on src || srv_fail "$SRV_ADDR is not back on the source after the rollback"
srv_load_progress "$SRV_DIR/load.log" 2 || srv_fail "the clients stopped getting answers after the rollback"
[ -z "$(runc --root "$RD" list -q 2>/dev/null)" ] || srv_fail "the rollback left a container on the target"
i=0
while [ -n "$(ls -A "$SRV_DIR/dst" | grep -v '^\.criu$')" ]; do
	i=$((i + 1)); [ $i -lt 100 ] || srv_fail "the rollback left files on the target: $(ls "$SRV_DIR/dst")"
	sleep 0.05
done
srv_say "a switch the target refused rolled back: $ID runs on here, its clients served, nothing on the target"

# 3. a runc restore that hangs on the target is killed there and refused: the
# container rolls back here (never none), nothing of it stays on the target
touch "$SRV_DIR/hang"
srv_in src timeout 300 "$HAUL" migrate --container $ID --root "$RS" --timeout 30s \
	--to "$SRV_DST_IP:$SRV_PS_PORT" --key "$SRV_KEY" --move-address "$SRV_ADDR/$SRV_PREFIX" \
	>"$SRV_DIR/hang.log" 2>&1
rc=$?
rm -f "$SRV_DIR/hang"
[ $rc -eq 1 ] || srv_fail "a hung runc restore: haul migrate exited $rc, want 1: $(tail -5 "$SRV_DIR/hang.log")"
grep -q "runc restore of container $ID failed" "$SRV_DIR/hang.log" ||
	srv_fail "the refusal does not say runc restore failed: $(tail -5 "$SRV_DIR/hang.log")"
runc --root "$RS" list | grep -q "^$ID .* running " || srv_fail "$ID is not running here after the hung restore"
srv_load_progress "$SRV_DIR/load.log" 2 || srv_fail "the clients stopped getting answers after the hung restore"
i=0
while [ -n "$(ls -A "$SRV_DIR/dst" | grep -v '^\.criu$')" ]; do
	i=$((i + 1)); [ $i -lt 100 ] || srv_fail "the hung restore left files on the target: $(ls "$SRV_DIR/dst")"
	sleep 0.05
done
srv_say "a hung runc restore on the target was killed and refused: $ID runs on here"

# 4. haul killed (SIGKILL) in the middle of pre-copy: the container runs on here, and the
# target drops what it received once the file channel and the session are gone
HAUL_FAULT=stall:precopy:30000 srv_in src timeout 300 "$HAUL" migrate --container $ID \
	--root "$RS" --to "$SRV_DST_IP:$SRV_PS_PORT" --key "$SRV_KEY" \
	--move-address "$SRV_ADDR/$SRV_PREFIX" >"$SRV_DIR/killed.log" 2>&1 &
kpid=$!
wait_line "$SRV_DIR/killed.log" "fault: stalled at precopy" 60 ||
	srv_fail "haul migrate never reached pre-copy: $(tail -3 "$SRV_DIR/killed.log")"
# the background job is a subshell running nsenter, which became timeout; haul is its child
hpid=
for p in $(pgrep -P $kpid); do hpid=$hpid$(pgrep -P "$p" -x haul); done
[ -n "$hpid" ] || srv_fail "no haul process below job $kpid"
kill -9 "$hpid"
wait $kpid
runc --root "$RS" list | grep -q "^$ID .* running " || srv_fail "$ID is not running here after haul was killed"
srv_load_progress "$SRV_DIR/load.log" 2 || srv_fail "the clients stopped getting answers after haul was killed"
i=0
while [ -n "$(ls -A "$SRV_DIR/dst" | grep -v '^\.criu$')" ]; do
	i=$((i + 1)); [ $i -lt 200 ] || srv_fail "a killed haul left files on the target: $(ls "$SRV_DIR/dst")"
	sleep 0.05
done
[ -z "$(runc --root "$RD" list -q 2>/dev/null)" ] || srv_fail "a killed haul left a container on the target"
# its work directory here goes with it (the guardian removes it)
i=0
while ls -d /tmp/haul-ctr-$ID-* >/dev/null 2>&1; do
	i=$((i + 1)); [ $i -lt 100 ] || srv_fail "a killed haul left its work directory: $(ls -d /tmp/haul-ctr-$ID-*)"
	sleep 0.05
done
srv_say "haul killed mid-pre-copy: $ID runs on here, nothing on the target, no work directory here"

# 5. the migration under load
: >"$SRV_DIR/migrate.log"
HAUL_FAULT=stall:precopy:1500 srv_in src timeout 300 "$HAUL" migrate --container $ID --root "$RS" \
	--to "$SRV_DST_IP:$SRV_PS_PORT" --key "$SRV_KEY" --json "$SRV_DIR/migrate.json" \
	--move-address "$SRV_ADDR/$SRV_PREFIX" >"$SRV_DIR/migrate.log" 2>&1 &
mpid=$!
wait_line "$SRV_DIR/migrate.log" "fault: stalled at precopy" 60 ||
	{ kill $mpid; wait $mpid; srv_fail "haul migrate never reached pre-copy: $(tail -5 "$SRV_DIR/migrate.log")"; }
echo "written during pre-copy" >"$B/during.txt"
echo "changed during pre-copy" >"$B/before.txt"
wait $mpid
mrc=$?
if [ $mrc -ne 0 ]; then
	srv_say "haul migrate --container exited $mrc; its output:"
	sed 's/^/    /' "$SRV_DIR/migrate.log"
	srv_say "page server:"
	tail -20 "$SRV_DIR/ps.log" | sed 's/^/    /'
	for f in "$SRV_DIR"/dst/*/img/restore.log "$SRV_DIR"/dst/*/runc-restore.log; do
		[ -f "$f" ] && { srv_say "$f:"; tail -20 "$f" | sed 's/^/    /'; }
	done
	srv_load_stop "$SRV_LOAD_PID" "$SRV_DIR/load.log" "$SRV_DIR/load.json"
	srv_fail "the container was not migrated"
fi
srv_say "haul migrate --container: downtime $(srv_json "$SRV_DIR/migrate.json" downtime_ms) ms"
grep -E "container $ID:" "$SRV_DIR/migrate.log" | sed 's/^/    /'

fail=0
runc --root "$RD" list | grep -q "^$ID .* running " ||
	{ srv_say "the target's runc does not list $ID running: $(runc --root "$RD" list)"; fail=1; }
[ -z "$(runc --root "$RS" list -q)" ] || { srv_say "the source still lists $(runc --root "$RS" list -q)"; fail=1; }
DB=$(runc --root "$RD" state $ID | jq -r .bundle)/rootfs
for f in before.txt during.txt; do
	[ -f "$DB/$f" ] && cmp -s "$DB/$f" "$B/$f" || { srv_say "$f is not on the target as written ($DB)"; fail=1; }
done
srv_load_progress "$SRV_DIR/load.log" 3 || { srv_say "the clients stopped getting answers after the move"; fail=1; }
now=$(runc --root "$RD" exec $ID /bin/busybox cat /served) || { srv_say "runc exec on the target failed"; fail=1; }
[ "${now% *}" = "$token" ] || { srv_say "token '${now% *}' on the target, was $token: it restarted"; fail=1; }
srv_say "on the target: /served '$now', bundle $(dirname "$DB")"
srv_load_stop "$SRV_LOAD_PID" "$SRV_DIR/load.log" "$SRV_DIR/load.json" || { srv_say "client errors"; fail=1; }
runc --root "$RD" kill $ID KILL || { srv_say "runc kill on the target failed"; fail=1; }
i=0
until runc --root "$RD" state $ID 2>/dev/null | jq -e '.status == "stopped"' >/dev/null; do
	i=$((i + 1)); [ $i -lt 100 ] || { srv_say "$ID did not stop after runc kill on the target"; fail=1; break; }
	sleep 0.05
done
[ $fail -eq 0 ] || srv_fail "see above"
srv_say "$ID moved live under load, managed by the target's runc"

# 6. --shared-storage: nothing of the bundle is copied, the target's runc runs the
# container from the source's bundle path (one filesystem here stands for shared
# storage); a wildcard listener, no address moved
mk_bundle "$SRV_DIR/s" "$ID3" '| .process.args=["/ctr_httpd","0.0.0.0","8081","4","/served"]' ||
	srv_fail "runc spec (shared storage)"
(cg_enter "hctr-src-$$" && cd "$SRV_DIR/s" &&
	exec nsenter --net=/run/netns/"$SRV_NS_SRC" -- runc --root "$RS" run -d $ID3) \
	</dev/null >/dev/null 2>&1 || srv_fail "runc run (shared storage)"
wait_line "$SRV_DIR/s/rootfs/served" "^[0-9]* 0$" 20 || srv_fail "$ID3's server never started"
token3=$(cut -d' ' -f1 "$SRV_DIR/s/rootfs/served")
srv_in src timeout 300 "$HAUL" migrate --container $ID3 --root "$RS" --shared-storage \
	--to "$SRV_DST_IP:$SRV_PS_PORT" --key "$SRV_KEY" >"$SRV_DIR/shared.log" 2>&1 ||
	srv_fail "--shared-storage: haul migrate failed: $(tail -5 "$SRV_DIR/shared.log")"
grep -q "bundle copied" "$SRV_DIR/shared.log" && srv_fail "--shared-storage copied the bundle"
runc --root "$RD" list | grep -q "^$ID3 .* running " || srv_fail "$ID3 is not running on the target"
[ "$(runc --root "$RD" state $ID3 | jq -r .bundle)" = "$SRV_DIR/s" ] ||
	srv_fail "$ID3 runs from $(runc --root "$RD" state $ID3 | jq -r .bundle), not the shared $SRV_DIR/s"
[ -z "$(runc --root "$RS" list -q)" ] || srv_fail "the source still lists $(runc --root "$RS" list -q)"
now3=$(runc --root "$RD" exec $ID3 /bin/busybox cat /served) || srv_fail "runc exec $ID3 on the target"
[ "${now3% *}" = "$token3" ] || srv_fail "$ID3: token '${now3% *}' on the target, was $token3"
srv_say "--shared-storage: $ID3 runs on the target from the same bundle, same token"
srv_say "PASS: containers moved live, managed by the target's runc"
exit 0
