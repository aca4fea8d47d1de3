#!/bin/sh
# net_servers.sh - real servers across `haul checkpoint` + `haul restore` in one
# network namespace, a client connection open throughout: redis-server (SET
# before, GET and SET on the same connection after, and a new connection) and
# memcached -t 4 (set before, get after on the same connection).  Host A
# (198.18.0.1) runs the server, host B the client; an nft table of A (named with
# this script's pid) drops the client's segments from before the checkpoint
# until the restore, as the network lock does.  redis-server, redis-tools,
# memcached and nftables are installed when missing (bench/servers/deps.sh, as
# the srv_* tests do: this test runs before them, and on a fresh machine
# nothing else has installed them yet).  Skips (77) without root, or when they
# cannot be installed.
set -u
haul=${HAUL_BIN:-$PWD/build/haul}
progs=${HAUL_PROGS:-$PWD/build/progs}
top=${HAUL_SRC:-$(dirname "$0")/../..}
[ "$(id -u)" = 0 ] || { echo "needs root"; exit 77; }
[ -x "$progs/rst_exec" ] || { echo "build the progs first"; exit 77; }
why=$(sh "$top/bench/servers/deps.sh" redis-server redis-tools memcached nftables 2>&1) ||
	{ echo "redis-server, redis-tools, memcached or nftables cannot be installed: $(echo "$why" | tail -1)"; exit 77; }
for c in nft nsenter redis-server redis-cli memcached ip; do
	command -v $c >/dev/null || { echo "$c is not installed"; exit 77; }
done
. "$(dirname "$0")/th_wait.shlib"
A=hsrv-a-$$ B=hsrv-b-$$
tmp=$(mktemp -d /tmp/net_servers.XXXXXX)
spid= rpid= cpid=
cleanup() {
	for p in $spid $rpid $cpid; do kill -KILL "$p" 2>/dev/null; done
	ip netns del $A 2>/dev/null
	ip netns del $B 2>/dev/null
	rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; for f in "$tmp"/*.out "$tmp"/*.log; do [ -f "$f" ] && sed "s|^|$(basename "$f"): |" "$f"; done; exit 1; }

ip netns add $A && ip netns add $B || exit 77
ip link add sa$$ netns $A type veth peer name sb$$ netns $B || exit 77
ip -n $A addr add 198.18.0.1/24 dev sa$$ && ip -n $B addr add 198.18.0.2/24 dev sb$$
ip -n $A link set sa$$ up && ip -n $B link set sb$$ up && ip -n $A link set lo up || exit 1

lock() { # on|off PORT
	if [ "$1" = on ]; then
		ip netns exec $A nft "add table inet hsrv$$; add chain inet hsrv$$ in { type filter hook input priority 0; }; add rule inet hsrv$$ in tcp dport $2 drop"
	else
		ip netns exec $A nft delete table inet hsrv$$
	fi
}

# checkpoint $spid, restore it (its pid in $rpid); the lock is held meanwhile
move() { # PORT
	lock on "$1" || fail "cannot add the nft table"
	: >"$tmp/haul.log"
	nsenter --net=/run/netns/$A "$haul" checkpoint "$spid" --images "$tmp/img" \
		>>"$tmp/haul.log" 2>&1 || fail "checkpoint of $spid"
	wait_gone "$spid" 5 || fail "the source did not die"
	spid=
	rpid=$(nsenter --net=/run/netns/$A "$haul" restore --images "$tmp/img" --detach \
		2>>"$tmp/haul.log") || fail "restore"
	lock off "$1"
}

listening() { # PORT
	_n=200
	while [ $_n -gt 0 ]; do
		ip netns exec $A ss -Hltn "sport = :$1" | grep -q . && return 0
		sleep 0.05
		_n=$((_n - 1))
	done
	return 1
}

# --- redis-server -------------------------------------------------------------
mkdir -p "$tmp/img"
# rst_exec: only files on the server's fds (a runner's pipes would be refused)
(cd "$tmp" && exec ip netns exec $A setsid "$progs/rst_exec" /dev/null "$tmp/redis.out" \
	"$tmp/redis.log" "$(command -v redis-server)" --bind 198.18.0.1 --port 6379 --save '' \
	--appendonly no --protected-mode no) &
spid=$!
listening 6379 || fail "redis-server does not listen"
mkfifo "$tmp/in"
ip netns exec $B redis-cli -h 198.18.0.1 <"$tmp/in" >"$tmp/cli.out" 2>&1 &
cpid=$!
exec 7>"$tmp/in"
echo "SET k1 v1" >&7
wait_line "$tmp/cli.out" '^OK' || fail "redis SET before"
move 6379
echo "GET k1" >&7
echo "SET k2 v2" >&7
wait_more "$tmp/cli.out" '^OK' 1 || fail "redis after"
exec 7>&-
wait "$cpid"
cpid=
[ "$(grep -c . "$tmp/cli.out")" = 3 ] && grep -q '^v1$' "$tmp/cli.out" ||
	fail "redis on the kept connection"
[ "$(ip netns exec $B redis-cli -h 198.18.0.1 GET k2)" = v2 ] || fail "redis on a new connection"
echo "redis-server: ok"
kill -KILL "$rpid"
rpid=
rm -rf "$tmp/img" && mkdir "$tmp/img"

# --- memcached -t 4 -------------------------------------------------------------
ip netns exec $A setsid "$progs/rst_exec" /dev/null "$tmp/mc.out" "$tmp/mc.log" \
	"$(command -v memcached)" -u root -t 4 -l 198.18.0.1 -p 11211 -U 0 &
spid=$!
listening 11211 || fail "memcached does not listen"
ip netns exec $B bash -c "exec 3<>/dev/tcp/198.18.0.1/11211
printf 'set k 0 0 2\r\nv1\r\n' >&3; read -t 10 l <&3; echo \"before \$l\"
while [ ! -e $tmp/go ]; do sleep 0.05; done
printf 'get k\r\n' >&3; for i in 1 2 3; do read -t 10 l <&3; echo \"after \$l\"; done" \
	>"$tmp/mcc.out" 2>&1 &
cpid=$!
wait_line "$tmp/mcc.out" '^before STORED' || fail "memcached set before"
move 11211
touch "$tmp/go"
wait "$cpid"
cpid=
grep -q '^after v1' "$tmp/mcc.out" && grep -q '^after END' "$tmp/mcc.out" ||
	fail "memcached get on the kept connection"
echo "memcached -t 4: ok"
exit 0
