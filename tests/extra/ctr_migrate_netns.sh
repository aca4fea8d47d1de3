#!/bin/bash
# ctr_migrate_netns.sh - `haul migrate --container ID` moves a running runc
# container that has a network namespace of its own (config.json: a
# "network" namespace with a path, a veth in it) under client load from one
# host to another with its address and its connections (issue 14, Deliver
# 2 last bullet, 3 and 4).
#
# Hosts: srv_hosts.shlib's source, target and client on one bridge (br0,
# the segment's switch).  The engine's part, done by this test as an engine
# (or its network plugin) would:
#   - on the source: network namespace hctr-net-PID, a veth whose host end
#     is a port of br0 and whose other end is eth0 in it, up, with the
#     service address 198.18.0.100/24 (srv_hosts puts that on the source
#     host's eth0: it is taken off there first);
#   - on the target, before the migration: the same namespace name with the
#     same veth on br0, up, without the address (two hosts on one segment
#     must not answer for it at once: haul moves it).  Both "hosts" share
#     one /run/netns, so the target's page server (and the runc it runs)
#     has a mount namespace of its own where /run/netns/hctr-net-PID is the
#     target's namespace, as it would be on another machine.
# The container runs ctr_httpd (tests/progs, static) on 198.18.0.100:8080,
# which rewrites /served every 100 requests with a token kept in memory.
# What this machine needs (see ctr_migrate.sh): no rlimits in config.json,
# runc (not crun), the containers' cgroups under a cgroup of each host's
# own and a target-prepare hook that renames the cgroupsPath.
# First the criu entry point alone: runc checkpoint and restore through it
# bring another container back in its namespace (joined, not made), then
# with --tcp-established a client's keep-alive connection with it (a
# request sent while it was checkpointed is answered after the restore;
# without the option the connection is refused by name); one
# that also has a user namespace is refused by name and runs on.
# Then the container that moves is itself checkpointed and restored through
# runc and haul's criu first (so a container haul restored migrates too), a
# switch the target refuses rolls back inside the namespaces, and
# 16 keep-alive clients on the client host see zero errors, wrong
# values or reconnects through the migration; haul migrate exits 0; the
# target's runc lists the container running, the source's nothing; the
# process is in the target's namespace; 198.18.0.100 is on the target's
# eth0 there and not on the source's; the token is the same (it moved, it
# did not restart) and its count goes on; no haul nftables table is left
# in either namespace.
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
set -u
. "$(dirname "$0")/srv_hosts.shlib"
. "$(dirname "$0")/ctr_hosts.shlib"
SRC_TOP=${HAUL_SRC:-$SRV_TOP}
srv_require_base
srv_require_pkgs nftables
srv_require_prog srvload_http
ctr_require

ID=ctr$$n
ID1=ctr$$c
ID3=ctr$$u
CNS=hctr-net-$$     # the container's namespace name on both hosts
CNS1=hctr-net1-$$   # the checkpointed-and-restored one's (case 1)
ADDR1=198.18.0.101
DNS=hctr-netd-$$    # where the target's one really lives on this one machine
CTR_IDS="$ID $ID1 $ID3"
ctr_cleanup_more() { # the containers' network namespaces, their processes and lock tables
	local ns p t
	for ns in $CNS $DNS $CNS1; do
		[ -e /run/netns/$ns ] || continue
		for p in $(ip netns pids $ns 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
		for t in $(ip netns exec $ns nft list tables 2>/dev/null | awk '/haul/ { print $2 "|" $3 }'); do
			ip netns exec $ns nft delete table "${t%%|*}" "${t#*|}" 2>/dev/null
		done
		ip netns del $ns 2>/dev/null
	done
}

ctr_hosts_up

# the engine's network: the service address leaves the source host for the container
ip -n "$SRV_NS_SRC" addr del "$SRV_ADDR/$SRV_PREFIX" dev eth0 ||
	srv_fail "cannot take $SRV_ADDR off the source host's eth0"
mk_netns() { # name veth-host-end [address]
	ip netns add "$1" || return 1
	ip -n "$1" link set lo up
	ip -n "$SRV_NS_BR" link add "$2" type veth peer name eth0 netns "$1" || return 1
	ip -n "$SRV_NS_BR" link set "$2" master br0 up || return 1
	[ -z "${3:-}" ] || ip -n "$1" addr add "$3" dev eth0 || return 1
	ip -n "$1" link set eth0 up
}
mk_netns $CNS cs$$ "$SRV_ADDR/$SRV_PREFIX" || srv_fail "cannot make the source container's network"
mk_netns $DNS cd$$ || srv_fail "cannot make the target container's network"

gcc -static -O2 -o "$SRV_DIR/ctr_httpd" "$SRC_TOP/tests/progs/ctr_httpd.c" 2>"$SRV_DIR/gcc.err" ||
	srv_skip "cannot build a static test program (libc6-dev): $(tail -1 "$SRV_DIR/gcc.err")"
mk_bundle() { # dir id address netns
	mkdir -p "$1/rootfs/bin" "$1/rootfs/dev" "$1/rootfs/proc" "$1/rootfs/sys" "$1/rootfs/tmp"
	cp /bin/busybox "$1/rootfs/bin/"
	cp "$SRV_DIR/ctr_httpd" "$1/rootfs/ctr_httpd"
	(cd "$1" && runc spec) || return 1
	jq "del(.process.rlimits) | .process.terminal=false | .root.readonly=false |
	    .process.args=[\"/ctr_httpd\",\"$3\",\"8080\",\"32\",\"/served\"] |
	    .hostname=\"$2\" | .linux.cgroupsPath=\"$2\" |
	    .linux.namespaces |= map(if .type == \"network\" then .path = \"/run/netns/$4\" else . end)" \
		"$1/config.json" >"$1/c.json" && mv "$1/c.json" "$1/config.json"
}

# 1. the criu entry point alone, on another container in a namespace of its own
# (hctr-net1-PID, 198.18.0.101): runc checkpoint and runc restore through haul's
# `criu` (runc names the namespace external net[INODE]:extRootNetNS, then hands it
# over as inherit_fd extRootNetNS): it comes back in the same namespace, its
# interface untouched, and serves again with the same token
mk_netns $CNS1 cs1$$ "$ADDR1/$SRV_PREFIX" || srv_fail "cannot make the first container's network"
mk_bundle "$SRV_DIR/b1" $ID1 $ADDR1 $CNS1 || srv_fail "runc spec"
(cg_enter "hctr-src-$$" && cd "$SRV_DIR/b1" && exec runc --root "$RS" --log "$SRV_DIR/run1.log" \
	run -d $ID1) </dev/null >/dev/null 2>&1 || srv_skip "runc run does not work here: $(tail -2 "$SRV_DIR/run1.log")"
wait_line "$SRV_DIR/b1/rootfs/served" "^[0-9]* 0$" 20 || srv_fail "$ID1's server never started"
token1=$(cut -d' ' -f1 "$SRV_DIR/b1/rootfs/served")
mkdir -p "$SRV_DIR/cbin" && ln -s "$HAUL" "$SRV_DIR/cbin/criu"
(cd "$SRV_DIR/b1" && PATH="$SRV_DIR/cbin:$PATH" runc --root "$RS" checkpoint --image-path "$SRV_DIR/img" $ID1) \
	>"$SRV_DIR/ck.log" 2>&1 || srv_fail "runc checkpoint: $(tail -3 "$SRV_DIR/ck.log") $(tail -5 "$SRV_DIR/img/dump.log")"
grep -q "serves the criu DUMP request" "$SRV_DIR/img/dump.log" || srv_fail "runc checkpoint did not run haul"
(cg_enter "hctr-src-$$" && cd "$SRV_DIR/b1" && PATH="$SRV_DIR/cbin:$PATH" exec runc --root "$RS" \
	--log "$SRV_DIR/rs.log" restore -d --image-path "$SRV_DIR/img" $ID1) </dev/null >/dev/null 2>&1 ||
	srv_fail "runc restore: $(tail -3 "$SRV_DIR/rs.log") $(tail -5 "$SRV_DIR/img/restore.log")"
pid1=$(runc --root "$RS" state $ID1 | jq .pid)
[ "$(stat -L -c %i /proc/$pid1/ns/net)" = "$(stat -L -c %i /run/netns/$CNS1)" ] ||
	srv_fail "the restored container did not join its network namespace $CNS1"
ip -n $CNS1 -4 addr show dev eth0 | grep -q "inet $ADDR1/" || srv_fail "$ADDR1 left eth0 in $CNS1"
srv_wait_tcp cli "$ADDR1" 8080 || srv_fail "the restored container does not serve on $ADDR1:8080"
[ "$(cut -d' ' -f1 "$SRV_DIR/b1/rootfs/served")" = "$token1" ] || srv_fail "$ID1's token changed: it restarted"
srv_say "runc checkpoint + restore through haul: $ID1 back in $CNS1 with the same token"

# 1b. a client's keep-alive connection across runc checkpoint --tcp-established and
# restore --tcp-established: without the option the checkpoint is refused naming the
# connection (as CRIU does) and the container runs on; with it the connection is
# carried under the checkpoint's network lock in $CNS1, so the request the client
# sends while no process exists is neither answered by a RST nor lost: the restored
# server answers it on the same connection (its per-connection counter says n=2),
# and no haul table is left in $CNS1
srv_bg cli "$SRV_DIR/ka.log" python3 "$SRC_TOP/tests/extra/ka_client.py" "$ADDR1" 8080 "$SRV_DIR/ka.go"
wait_line "$SRV_DIR/ka.log" "^first ok" 10 || srv_fail "the keep-alive client: $(cat "$SRV_DIR/ka.log")"
(cd "$SRV_DIR/b1" && PATH="$SRV_DIR/cbin:$PATH" runc --root "$RS" checkpoint --image-path "$SRV_DIR/img1r" $ID1) \
	>"$SRV_DIR/ck1r.log" 2>&1 && srv_fail "a checkpoint with a connection and no --tcp-established was not refused"
grep -q "is a TCP connection .*--tcp-established" "$SRV_DIR/img1r/dump.log" ||
	srv_fail "the refusal does not name the connection and the option: $(tail -3 "$SRV_DIR/img1r/dump.log")"
runc --root "$RS" list | grep -q "^$ID1 .* running " || srv_fail "$ID1 is not running after the refusal"
(cd "$SRV_DIR/b1" && PATH="$SRV_DIR/cbin:$PATH" runc --root "$RS" checkpoint --tcp-established \
	--image-path "$SRV_DIR/img1t" $ID1) >"$SRV_DIR/ck1t.log" 2>&1 ||
	srv_fail "runc checkpoint --tcp-established: $(tail -3 "$SRV_DIR/ck1t.log") $(tail -5 "$SRV_DIR/img1t/dump.log")"
ip netns exec $CNS1 nft list tables 2>/dev/null | grep -q haul-lock ||
	srv_fail "no network lock in $CNS1 after the checkpoint"
touch "$SRV_DIR/ka.go"
wait_line "$SRV_DIR/ka.log" "^sent during the gap" 10 || srv_fail "the client did not send: $(cat "$SRV_DIR/ka.log")"
sleep 1 # its segment and a retransmission meet the lock
grep -q "^second" "$SRV_DIR/ka.log" && srv_fail "the client's request was answered with no server: $(cat "$SRV_DIR/ka.log")"
(cg_enter "hctr-src-$$" && cd "$SRV_DIR/b1" && PATH="$SRV_DIR/cbin:$PATH" exec runc --root "$RS" \
	--log "$SRV_DIR/rs1t.log" restore -d --tcp-established --image-path "$SRV_DIR/img1t" $ID1) \
	</dev/null >/dev/null 2>&1 ||
	srv_fail "runc restore --tcp-established: $(tail -3 "$SRV_DIR/rs1t.log") $(tail -5 "$SRV_DIR/img1t/restore.log")"
wait_line "$SRV_DIR/ka.log" "^second" 60 || srv_fail "the client got no answer after the restore"
grep -q "^second ok n=2" "$SRV_DIR/ka.log" || srv_fail "the carried connection: $(cat "$SRV_DIR/ka.log");
	$(ip netns exec $CNS1 nft list tables 2>&1); $(ip netns exec $CNS1 ss -tni 2>&1 | head -8);
	$(tail -12 "$SRV_DIR/img1t/restore.log")"
ip netns exec $CNS1 nft list tables 2>/dev/null | grep -q haul && srv_fail "a haul table is left in $CNS1"
[ "$(cut -d' ' -f1 "$SRV_DIR/b1/rootfs/served")" = "$token1" ] || srv_fail "$ID1's token changed: it restarted"
srv_say "runc checkpoint/restore --tcp-established through haul: the client's connection carried, its request sent in the gap answered (n=2); refused by name without the option"
runc --root "$RS" kill $ID1 KILL && sleep 0.3 && runc --root "$RS" delete -f $ID1

# and a refusal: the engine's namespace with a user namespace (M would have to join
# it from inside the user namespace) is refused by name, the container runs on
# (sysfs cannot be mounted in a user namespace that does not own the network
# namespace: /sys is a bind of the host's, as rootless engines do)
mkdir -p "$SRV_DIR/b3/rootfs/bin" "$SRV_DIR/b3/rootfs/dev" "$SRV_DIR/b3/rootfs/proc" \
	"$SRV_DIR/b3/rootfs/sys" "$SRV_DIR/b3/rootfs/tmp"
cp /bin/busybox "$SRV_DIR/b3/rootfs/bin/"
(cd "$SRV_DIR/b3" && runc spec) || srv_fail "runc spec (user namespace)"
jq "del(.process.rlimits) | .process.terminal=false | .root.readonly=false |
    .process.args=[\"/bin/busybox\",\"sleep\",\"3600\"] | .linux.cgroupsPath=\"$ID3\" |
    .linux.namespaces |= map(if .type == \"network\" then .path = \"/run/netns/$CNS1\" else . end) |
    .linux.namespaces += [{\"type\":\"user\"}] |
    .linux.uidMappings=[{\"containerID\":0,\"hostID\":0,\"size\":65536}] |
    .linux.gidMappings=[{\"containerID\":0,\"hostID\":0,\"size\":65536}] |
    .mounts |= map(if .destination == \"/sys\" then {\"destination\":\"/sys\",\"type\":\"none\",
	\"source\":\"/sys\",\"options\":[\"rbind\",\"nosuid\",\"noexec\",\"nodev\",\"ro\"]} else . end)" \
	"$SRV_DIR/b3/config.json" >"$SRV_DIR/b3/c.json" && mv "$SRV_DIR/b3/c.json" "$SRV_DIR/b3/config.json" ||
	srv_fail "jq (user namespace)"
(cg_enter "hctr-src-$$" && cd "$SRV_DIR/b3" && exec runc --root "$RS" --log "$SRV_DIR/run3.log" \
	run -d $ID3) </dev/null >/dev/null 2>&1 || srv_fail "runc run (user namespace): $(tail -2 "$SRV_DIR/run3.log")"
(cd "$SRV_DIR/b3" && PATH="$SRV_DIR/cbin:$PATH" runc --root "$RS" checkpoint --image-path "$SRV_DIR/img3" $ID3) \
	>"$SRV_DIR/ck3.log" 2>&1 && srv_fail "the checkpoint with a user namespace was not refused"
grep -q "is the engine's (external) and the container has a user namespace" "$SRV_DIR/img3/dump.log" ||
	srv_fail "the refusal does not name the external network namespace: $(tail -3 "$SRV_DIR/img3/dump.log")"
runc --root "$RS" list | grep -q "^$ID3 .* running " || srv_fail "$ID3 is not running after the refusal"
srv_say "refused by name (the engine's network namespace with a user namespace); $ID3 runs on"
runc --root "$RS" kill $ID3 KILL && sleep 0.3 && runc --root "$RS" delete -f $ID3

# the container that moves
b=$SRV_DIR/b
mk_bundle "$b" $ID "$SRV_ADDR" $CNS || srv_fail "runc spec"
B=$b/rootfs

(cg_enter "hctr-src-$$" && cd "$b" &&
	exec nsenter --net=/run/netns/"$SRV_NS_SRC" -- runc --root "$RS" --log "$SRV_DIR/run.log" \
		run -d $ID) </dev/null >/dev/null 2>&1 ||
	srv_skip "runc run does not work here: $(tail -2 "$SRV_DIR/run.log")"
wait_line "$B/served" "^[0-9]* 0$" 20 || srv_fail "the container's server never started"
token=$(cut -d' ' -f1 "$B/served")
spid=$(runc --root "$RS" state $ID | jq .pid)
[ "$(stat -L -c %i /proc/$spid/ns/net)" = "$(stat -L -c %i /run/netns/$CNS)" ] ||
	srv_fail "the container is not in its network namespace $CNS"
srv_wait_tcp cli "$SRV_ADDR" 8080 || srv_fail "the client host cannot reach $SRV_ADDR:8080"
srv_say "container $ID runs on the source in $CNS (token $token)"
# it moves as one haul's criu entry point restored: runc's masked paths are then
# binds of the host's /dev/null, which the migration names as runc does
(cd "$b" && PATH="$SRV_DIR/cbin:$PATH" runc --root "$RS" checkpoint --image-path "$SRV_DIR/img2" $ID) \
	>"$SRV_DIR/ck2.log" 2>&1 || srv_fail "runc checkpoint of $ID: $(tail -3 "$SRV_DIR/img2/dump.log")"
(cg_enter "hctr-src-$$" && cd "$b" && PATH="$SRV_DIR/cbin:$PATH" exec runc --root "$RS" \
	--log "$SRV_DIR/rs2.log" restore -d --image-path "$SRV_DIR/img2" $ID) </dev/null >/dev/null 2>&1 ||
	srv_fail "runc restore of $ID: $(tail -3 "$SRV_DIR/img2/restore.log")"
srv_wait_tcp cli "$SRV_ADDR" 8080 || srv_fail "the restored $ID does not serve on $SRV_ADDR:8080"

# 2. the target: its page server in a mount namespace where /run/netns/$CNS is the
# target's namespace; the hook gives the container a cgroup of the target's
cat >"$SRV_DIR/hook.sh" <<EOF
[ "\$HAUL_SWITCH_PHASE" = target-prepare ] || exit 0
for b in $SRV_DIR/dst/*\$HAUL_MIGRATION_ID/bundle; do
	[ -f "\$b/config.json" ] || continue
	jq '.linux.cgroupsPath |= sub("-dst\$"; "") + "-dst"' "\$b/config.json" >"\$b/c.json" &&
		mv "\$b/c.json" "\$b/config.json"
done
EOF
: >"$SRV_DIR/ps.log"
srv_bg dst "$SRV_DIR/ps.log" unshare -m --propagation private bash -c \
	'cg_enter "$0" && mount --bind "/run/netns/$1" "/run/netns/$2" && shift 2 && exec "$@"' \
	"hctr-dst-$$" $DNS $CNS \
	"$HAUL" pageserver --listen "$SRV_DST_IP:$SRV_PS_PORT" --key "$SRV_KEY" \
	--containers "$SRV_DIR/dst" --root "$RD" --on-switch "sh $SRV_DIR/hook.sh"
wait_line "$SRV_DIR/ps.log" "listening on" 10 ||
	srv_fail "the page server did not start: $(tail -3 "$SRV_DIR/ps.log")"

# 3. the migration under load
srv_load_start http "$SRV_DIR/load.log" "$SRV_DIR/load.json" --port 8080 --conns 16
srv_load_progress "$SRV_DIR/load.log" 2 || srv_fail "the clients made no progress before the move"

# a switch the target refuses (HAUL_FAULT=corrupt-state) rolls back inside the
# namespaces: the address back on the source container's eth0 and not on the
# target's, no lock left in either, the clients served on (counted below)
HAUL_FAULT=corrupt-state srv_in src timeout 300 "$HAUL" migrate --container $ID --root "$RS" \
	--to "$SRV_DST_IP:$SRV_PS_PORT" --key "$SRV_KEY" --move-address "$SRV_ADDR/$SRV_PREFIX" \
	>"$SRV_DIR/rollback.log" 2>&1
rc=$?
[ $rc -eq 1 ] || srv_fail "the refused switch: haul migrate exited $rc, want 1: $(tail -5 "$SRV_DIR/rollback.log")"
runc --root "$RS" list | grep -q "^$ID .* running " || srv_fail "$ID is not running here after the rollback"
ip -n $CNS -4 addr show dev eth0 | grep -q "inet $SRV_ADDR/" ||
	srv_fail "$SRV_ADDR is not back on the source container's eth0 after the rollback"
i=0
while ip -n $DNS -4 addr show dev eth0 | grep -q "inet $SRV_ADDR/" ||
	ip netns exec $CNS nft list tables 2>/dev/null | grep -q haul ||
	ip netns exec $DNS nft list tables 2>/dev/null | grep -q haul; do
	i=$((i + 1)); [ $i -lt 100 ] || srv_fail "the rollback left the address or a lock on the target or a lock here"
	sleep 0.05
done
srv_load_progress "$SRV_DIR/load.log" 2 || srv_fail "the clients stopped getting answers after the rollback"
srv_say "a switch the target refused rolled back in the container's namespace: $ID serves on here"

srv_in src timeout 300 "$HAUL" migrate --container $ID --root "$RS" \
	--to "$SRV_DST_IP:$SRV_PS_PORT" --key "$SRV_KEY" --json "$SRV_DIR/migrate.json" \
	--move-address "$SRV_ADDR/$SRV_PREFIX" >"$SRV_DIR/migrate.log" 2>&1
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

fail=0
runc --root "$RD" list | grep -q "^$ID .* running " ||
	{ srv_say "the target's runc does not list $ID running: $(runc --root "$RD" list)"; fail=1; }
[ -z "$(runc --root "$RS" list -q)" ] || { srv_say "the source still lists $(runc --root "$RS" list -q)"; fail=1; }
dpid=$(runc --root "$RD" state $ID | jq .pid)
[ "$(stat -L -c %i /proc/$dpid/ns/net)" = "$(stat -L -c %i /run/netns/$DNS)" ] ||
	{ srv_say "the restored container is not in the target's namespace"; fail=1; }
ip -n $DNS -4 addr show dev eth0 | grep -q "inet $SRV_ADDR/" ||
	{ srv_say "$SRV_ADDR is not on the target container's eth0"; fail=1; }
ip -n $CNS -4 addr show dev eth0 | grep -q "inet $SRV_ADDR/" &&
	{ srv_say "$SRV_ADDR is still on the source container's eth0"; fail=1; }
for ns in $CNS $DNS; do
	ip netns exec $ns nft list tables 2>/dev/null | grep -q haul &&
		{ srv_say "a haul table is left in $ns: $(ip netns exec $ns nft list tables)"; fail=1; }
done
srv_load_progress "$SRV_DIR/load.log" 3 || { srv_say "the clients stopped getting answers after the move"; fail=1; }
now=$(cat "/proc/$dpid/root/served") || { srv_say "cannot read /served on the target"; fail=1; }
[ "${now% *}" = "$token" ] || { srv_say "token '${now% *}' on the target, was $token: it restarted"; fail=1; }
srv_say "on the target: /served '$now'"
srv_load_stop "$SRV_LOAD_PID" "$SRV_DIR/load.log" "$SRV_DIR/load.json" || { srv_say "client errors"; fail=1; }
[ $fail -eq 0 ] || srv_fail "see above"
srv_say "PASS: $ID moved live in its own network namespace with its address, zero client errors"
exit 0
