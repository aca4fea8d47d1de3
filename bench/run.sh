#!/bin/bash
# bench/run.sh - haul's downtime benchmark: one command, real migrations, CSV + PNG.
#
# Two network namespaces stand for two hosts (haulb-src-PID, haulb-dst-PID, joined
# by a veth pair in 198.18.0.0/15).  For every cell of the matrix
#   memory x dirty rate x bandwidth x mode
# it starts `haul pageserver --once` in the target namespace, starts bench's
# workload in the source namespace, lets it run, and runs `haul migrate` from the
# source namespace.  The bandwidth cells shape both directions of the veth with
# tbf; "loopback" leaves it unshaped.  Each cell records haul's own --json (total
# time, downtime, rounds, bytes) and the workload's view: the largest gap between
# its 1 ms heartbeats, which is the downtime a client sees, and a verify of every
# page after the move.  Peers in the same run: haul's stop-and-copy always (the
# baseline every ratio is taken against); CRIU (dump to its page server, restore)
# only when `criu check` passes.  A cell that cannot run says why in its row.
#
# Output (in --out, default bench/results): bench.csv, summary.md (with ratios),
# env.txt, downtime_vs_bandwidth.png, total_vs_rate.png, logs/ of failed cells.
# Everything it starts and the namespaces are removed on exit (trap).
set -u
# The whole script is one brace group, parsed before it runs: editing this file
# while a run is in progress cannot derail that run.
{

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
BUILD=${BUILD:-build}

profile=quick
out=$top/bench/results
haul=${HAUL_BIN:-$top/$BUILD/haul}
workload=${HAUL_PROGS:-$top/$BUILD/progs}/workload
mems= rates= bws= modes= pattern=uniform warm= settle= peers=1 budget= keep_all=0 repeat=1 rep=1

usage() {
	cat <<EOF
usage: bench/run.sh [--quick|--full|--smoke] [--out DIR] [--haul BIN] [--workload BIN]
                    [--mems "256M 1G"] [--rates "0 64 256 unbounded"]
                    [--bws "loopback 10gbit 1gbit"] [--pattern uniform|hot|seq]
                    [--modes "stop-and-copy pre-copy post-copy hybrid"] [--no-peers]
                    [--budget SECONDS] [--keep-logs] [--repeat N]

  --quick  (make bench)      256M 1G; rates 0 64 256; loopback 1gbit; all modes
  --full   (make bench-full) 256M 1G 4G 16G; rates 0 16 64 256 unbounded;
                             loopback 10gbit 1gbit; all modes
  --smoke  (tests)           64M; rate 16; loopback; stop-and-copy pre-copy
  --stalls (make bench-stalls) issue 16's cells: 1G 4G; rates 0 64; loopback 1gbit;
                             stop-and-copy pre-copy post-copy
Every run ends with issue 16's targets (PASS/FAIL/n/a) for the cells it ran.
Cells whose memory does not fit (3x the size must be available) are skipped visibly,
and so are the cells left when --budget seconds (quick: 450) have been spent.
Logs of failed cells are kept in DIR/logs (--keep-logs: of every cell).
--repeat N runs each cell N times (modes interleaved); summaries and plots use medians.
EOF
}

while [ $# -gt 0 ]; do
	case $1 in
	--quick | --full | --smoke | --stalls) profile=${1#--} ;;
	--out) out=$2; shift ;;
	--haul) haul=$2; shift ;;
	--workload) workload=$2; shift ;;
	--mems) mems=$2; shift ;;
	--rates) rates=$2; shift ;;
	--bws) bws=$2; shift ;;
	--modes) modes=$2; shift ;;
	--pattern) pattern=$2; shift ;;
	--warm) warm=$2; shift ;;
	--no-peers) peers=0 ;;
	--budget) budget=$2; shift ;;
	--keep-logs) keep_all=1 ;;
	--repeat) repeat=$2; shift ;;
	-h | --help) usage; exit 0 ;;
	*) usage >&2; exit 2 ;;
	esac
	shift
done

case $profile in
quick)
	: "${mems:=256M 1G}" "${rates:=0 64 256}" "${bws:=loopback 1gbit}"
	: "${modes:=stop-and-copy pre-copy post-copy hybrid}" "${budget:=450}"
	: "${warm:=1}" "${settle:=0.5}" ;;
full)
	: "${mems:=256M 1G 4G 16G}" "${rates:=0 16 64 256 unbounded}"
	: "${bws:=loopback 10gbit 1gbit}" "${modes:=stop-and-copy pre-copy post-copy hybrid}" ;;
smoke)
	: "${mems:=64M}" "${rates:=16}" "${bws:=loopback}" "${modes:=stop-and-copy pre-copy}"
	: "${warm:=1}" "${settle:=0.5}" ;;
stalls)
	: "${mems:=1G 4G}" "${rates:=0 64}" "${bws:=loopback 1gbit}"
	: "${modes:=stop-and-copy pre-copy post-copy}" "${warm:=1}" "${settle:=0.5}" ;;
esac
: "${warm:=2}" "${settle:=1}"

say() { echo "bench: $*"; }
die() { echo "bench: error: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "needs root (network namespaces, tc, ptrace)"
for tool in ip tc nsenter python3; do
	command -v $tool >/dev/null || die "'$tool' not found; run 'make deps'"
done
[ -x "$workload" ] || die "workload '$workload' not built; run 'make BUILD=$BUILD'"

mkdir -p "$out" || die "cannot create '$out'"
out=$(cd "$out" && pwd)
work=$(mktemp -d /tmp/haulb.XXXXXX) || die "cannot make a work directory"
src=haulb-src-$$
dst=haulb-dst-$$
vs=hbs$$
vd=hbd$$
src_ip=198.18.0.1
dst_ip=198.18.0.2
pids=()

# Enter only the network namespace: `ip netns exec` also makes a mount namespace
# with a fresh /sys, which hides the cgroup hierarchies haul freezes with.
in_src=(nsenter --net=/run/netns/"$src" --)
in_dst=(nsenter --net=/run/netns/"$dst" --)

# Kill what we started, by PID: the tracked ones, and restored workloads, which
# the kernel gave PIDs we never saw: they carry this run's work directory in argv.
kill_ours() {
	local p cmd
	for p in "${pids[@]}"; do
		kill -KILL "$p" 2>/dev/null
	done
	for p in /proc/[0-9]*; do
		cmd=$(tr '\0' ' ' 2>/dev/null <"$p/cmdline") || continue
		case $cmd in
		*"$work/"*) kill -KILL "${p#/proc/}" 2>/dev/null ;;
		esac
	done
	pids=()
}

cleanup() {
	kill_ours
	wait 2>/dev/null
	ip netns del "$src" 2>/dev/null
	ip netns del "$dst" 2>/dev/null
	rm -rf "$work"
}
trap cleanup EXIT
trap 'say "interrupted"; exit 130' INT TERM

# ---- the two "hosts" ---------------------------------------------------------
ip netns add "$src" || die "cannot create network namespace $src"
ip netns add "$dst" || die "cannot create network namespace $dst"
ip link add "$vs" type veth peer name "$vd" || die "cannot create veth pair"
ip link set "$vs" netns "$src" && ip link set "$vd" netns "$dst" || die "cannot move veth"
ip -n "$src" addr add $src_ip/24 dev "$vs"
ip -n "$dst" addr add $dst_ip/24 dev "$vd"
for ns in "$src" "$dst"; do
	ip -n "$ns" link set lo up
done
ip -n "$src" link set "$vs" up
ip -n "$dst" link set "$vd" up

# tbf on both ends; burst sized for ~4 ms at the rate (at least 256 KiB) so TCP
# reaches the rate, latency 50 ms of queue.
set_bandwidth() {
	local bw=$1 burst
	"${in_src[@]}" tc qdisc del dev "$vs" root 2>/dev/null
	"${in_dst[@]}" tc qdisc del dev "$vd" root 2>/dev/null
	[ "$bw" = loopback ] && return 0
	case $bw in
	10gbit) burst=5mb ;;
	*) burst=512kb ;;
	esac
	"${in_src[@]}" tc qdisc add dev "$vs" root tbf rate "$bw" burst $burst latency 50ms &&
		"${in_dst[@]}" tc qdisc add dev "$vd" root tbf rate "$bw" burst $burst latency 50ms
}

# What the link really carries (one TCP stream for 1 s), in Gbit/s.
measure_link() {
	local port=$((40000 + $$ % 20000)) sp gbps
	"${in_dst[@]}" python3 -c '
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(1); s.settimeout(10)
c, _ = s.accept()
while c.recv(1 << 20): pass
' $dst_ip $port &
	sp=$!
	sleep 0.3
	gbps=$("${in_src[@]}" python3 -c '
import socket, sys, time
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
buf = bytes(1 << 20); n = 0; t0 = time.monotonic()
while time.monotonic() - t0 < 1.0: c.sendall(buf); n += len(buf)
c.shutdown(socket.SHUT_WR); c.recv(1); dt = time.monotonic() - t0
print("%.2f" % (n * 8 / dt / 1e9))
' $dst_ip $port 2>/dev/null)
	wait $sp 2>/dev/null
	echo "${gbps:-?}"
}

# ---- what this haul and this machine can do -----------------------------------
mem_avail_mib=$(awk '/^MemAvailable:/ { print int($2 / 1024) }' /proc/meminfo)
haul_skip=
if [ ! -x "$haul" ]; then
	haul_skip="haul binary '$haul' not built"
else
	help=$("$haul" migrate --help 2>&1)
	if ! echo "$help" | grep -q -- '--to'; then
		haul_skip="'haul migrate' is not available in this build ($(echo "$help" | tail -1))"
	elif ! "$haul" pageserver --help 2>&1 | grep -q -- '--listen'; then
		haul_skip="'haul pageserver' is not available in this build"
	fi
fi

# The flag a mode needs, or "skip:<reason>".
mode_flag() {
	case $1 in
	pre-copy) echo "" ;;
	stop-and-copy | post-copy | hybrid)
		local f=--$1
		[ "$1" = post-copy ] && f=--postcopy
		if echo "$help" | grep -q -- "$f"; then echo "$f"; else echo "skip:haul migrate has no $f"; fi ;;
	*) echo "skip:unknown mode $1" ;;
	esac
}

criu_skip=
if [ "$peers" = 0 ]; then
	criu_skip=off
elif ! command -v criu >/dev/null; then
	criu_skip="no working criu (not on PATH)"
elif ! criu check >"$work/criu-check.log" 2>&1; then
	criu_skip="no working criu (criu check: $(tail -1 "$work/criu-check.log"))"
fi

key=$work/key
head -c 32 /dev/urandom >"$key" && chmod 600 "$key"

size_mib() {
	local v=${1%[MmGg]}
	case $1 in
	*[Gg]) echo $((v * 1024)) ;;
	*) echo "$v" ;;
	esac
}

# Wait until FILE has a line KEY=VALUE matching the pattern, up to SECS.
wait_kv() {
	local file=$1 kv=$2 secs=$3 i=0
	while [ "$i" -lt $((secs * 10)) ]; do
		grep -q -- "^$kv" "$file" 2>/dev/null && return 0
		sleep 0.1
		i=$((i + 1))
	done
	return 1
}
kv() { sed -n "s/^$2=//p" "$1" 2>/dev/null | head -1; }

csv=$out/bench.csv
rm -rf "$out/logs"
echo "run,engine,mode,mem_mib,rate,pattern,bandwidth,link_gbps,status,downtime_ms,client_gap_ms,client_gap_mono_ms,total_s,bytes,rounds,verify,note,pages_per_round,throttle_max_pct,dump_ms,restore_ms,gap_end_s,switch_gap_ms,other_gap_ms,base_gap_ms,rep,post_gap_ms,memory_complete_ms,fault_p50_us,fault_p99_us,faults,haul_stall_ms,haul_stall_before_ms,stall_resolution_ms,attach_stop_ms,scan_call_max_ms,throttle_stall_ms,gap_steal_ms" >"$csv"
run_id=$(date -u +%Y%m%dT%H%M%SZ)
cell_no=0

row() { # engine mode mem rate bw status downtime gap gap_mono total bytes rounds verify note
	# [pages_per_round throttle_max_pct dump_ms restore_ms]
	local note=${14//,/;}
	echo "$run_id,$1,$2,$(size_mib "$3"),$4,$pattern,$5,${link[$5]},$6,$7,$8,$9,${10},${11},${12},${13},${note//$'\n'/ },${15:-},${16:-},${17:-},${18:-},${gap_end:-},${switch_gap:-},${other_gap:-},${base_gap:-},$rep,${post_gap:-},${complete:-},${fp50:-},${fp99:-},${faults:-},${hstall:-},${hbefore:-},${hres:-},${hattach:-},${hcall:-},${hthr:-},${gap_steal:-}" >>"$csv"
}

# Start the workload in the source namespace; sets wl_pid, or returns 1.
start_workload() {
	local cell=$1 mem=$2 rate=$3 mib secs
	mib=$(size_mib "$mem")
	"${in_src[@]}" "$workload" --mem "$mem" --rate "$rate" --pattern "$pattern" \
		--heartbeat "$cell/hb" --control "$cell/ctl" --print-every 1 </dev/null >"$cell/wl.out" 2>&1 &
	wl_pid=$!
	pids+=("$wl_pid")
	disown "$wl_pid" # killed by kill_ours; no job notices
	secs=$((10 + mib / 100))
	wait_kv "$cell/hb" "state=" "$secs" || return 1
	sleep "$warm"
	kill -0 "$wl_pid" 2>/dev/null || return 1
	# this machine's noise floor: the largest gap of the warm-up, no migration
	base_gap=$(awk -v u="$(kv "$cell/hb" max_gap_rt_us)" 'BEGIN { if (u != "") printf "%.3f", u / 1000 }')
	# the measurement window starts now: forget the gaps of the fill and warm-up
	kill -HUP "$wl_pid"
	sleep 0.05
}

# After a move that began at realtime $2, froze the process $3 s later and
# resumed it on the target $4 s later: let it run on the target, verify every
# page, make it exit; sets gap, gap_mono, gap_end, switch_gap, other_gap,
# post_gap, verify.
finish_workload() {
	local cell=$1 t0=$2 freeze_at=$3 resume_at=$4 mib=$5
	sleep "$settle"
	echo verify >"$cell/ctl"
	if wait_kv "$cell/hb" "verify=[ob]" $((20 + mib / 200)); then
		verify=$(kv "$cell/hb" verify)
	else
		verify="no answer (workload gone?)"
	fi
	echo exit >"$cell/ctl"
	wait_kv "$cell/hb" "state=exited" 10
	gap=$(awk -v u="$(kv "$cell/hb" max_gap_rt_us)" 'BEGIN { if (u != "") printf "%.3f", u / 1000 }')
	gap_mono=$(awk -v u="$(kv "$cell/hb" max_gap_us)" 'BEGIN { if (u != "") printf "%.3f", u / 1000 }')
	# the host's steal of this VM's vCPUs in (and <= 100 ms before) the largest gap
	gap_steal=$(awk -v u="$(kv "$cell/hb" max_gap_steal_us)" 'BEGIN { if (u != "") printf "%.1f", u / 1000 }')
	# when the largest gap ended, in seconds after the move began
	gap_end=$(awk -v at="$(kv "$cell/hb" max_gap_at_rt)" -v t0="$t0" \
		'BEGIN { if (at != "" && at > 0) printf "%.3f", at - t0 }')
	# Attribute the largest gaps by when they ended: before the freeze (pre-copy:
	# tracker attach, CPU throttle, contention for the cores), at the switchover
	# (freeze to resume, 100 ms / 250 ms of slack), or after the resume (post-copy
	# faults while memory follows, or noise).
	read -r switch_gap other_gap post_gap < <(awk -v list="$(kv "$cell/hb" top_gaps)" \
		-v t0="$t0" -v fa="$freeze_at" -v ra="$resume_at" 'BEGIN {
			sw = 0; ot = 0; po = 0
			c1 = t0 + fa - 0.1; c2 = t0 + ra + 0.25
			n = split(list, g, ";")
			for (i = 1; i <= n; i++) {
				split(g[i], p, "@"); len = p[1] / 1000
				if (p[2] < t0) continue
				if (p[2] < c1) { if (len > ot) ot = len }
				else if (p[2] <= c2) { if (len > sw) sw = len }
				else if (len > po) po = len
			}
			printf "%.3f %.3f %.3f\n", sw, ot, po
		}')
}

# Whether the run's time budget is spent (so that `make bench` ends in 10 minutes).
over_budget() {
	[ -n "$budget" ] || return 1
	[ $(($(date +%s) - start)) -ge "$budget" ] || return 1
	budget_why="time budget of ${budget}s for this run spent (make bench-full runs every cell)"
}

keep_logs() {
	mkdir -p "$out/logs"
	cp -r "$1" "$out/logs/$(basename "$1")" 2>/dev/null
}

run_haul_cell() {
	local mem=$1 rate=$2 bw=$3 mode=$4 flag cell port rc t0 t1 mib limit
	local downtime= total= bytes= rounds= gap= gap_mono= gap_end= gap_steal= verify= js
	local base_gap= switch_gap= other_gap= post_gap= post_gap=
	flag=$(mode_flag "$mode")
	if [ -n "$haul_skip" ]; then
		say "skipped: haul $mode $mem $rate $bw: $haul_skip"
		row haul "$mode" "$mem" "$rate" "$bw" skipped "" "" "" "" "" "" "" "$haul_skip"
		return
	fi
	case $flag in skip:*)
		say "skipped: haul $mode $mem $rate $bw: ${flag#skip:}"
		row haul "$mode" "$mem" "$rate" "$bw" skipped "" "" "" "" "" "" "" "${flag#skip:}"
		return ;;
	esac
	if over_budget; then
		say "skipped: haul $mode $mem $rate $bw: $budget_why"
		row haul "$mode" "$mem" "$rate" "$bw" skipped "" "" "" "" "" "" "" "$budget_why"
		return
	fi
	cell_no=$((cell_no + 1))
	cell=$work/cell$cell_no-haul-$mode-$mem-$rate-$bw
	mkdir -p "$cell"
	mib=$(size_mib "$mem")
	port=$((7000 + cell_no))
	"${in_dst[@]}" "$haul" pageserver --listen $dst_ip:$port --key "$key" --once \
		>"$cell/ps.log" 2>&1 &
	pids+=($!)
	disown $!
	if ! wait_kv "$cell/ps.log" ".*listening" 10; then
		say "failed: haul $mode $mem $rate $bw: page server did not start"
		row haul "$mode" "$mem" "$rate" "$bw" failed "" "" "" "" "" "" "" \
			"page server did not start: $(tail -1 "$cell/ps.log")"
		keep_logs "$cell"; kill_ours; return
	fi
	if ! start_workload "$cell" "$mem" "$rate"; then
		say "failed: haul $mode $mem $rate $bw: workload did not start"
		row haul "$mode" "$mem" "$rate" "$bw" failed "" "" "" "" "" "" "" \
			"workload did not start: $(tail -1 "$cell/wl.out")"
		keep_logs "$cell"; kill_ours; return
	fi
	# generous: 4x the time the link needs for the memory, plus a minute
	limit=$((60 + 4 * mib * 8 / 1000))
	t0=$(date +%s.%N)
	# shellcheck disable=SC2086
	timeout "$limit" "${in_src[@]}" "$haul" migrate "$wl_pid" --to $dst_ip:$port \
		--key "$key" --json "$cell/mig.json" $flag >"$cell/mig.log" 2>&1
	rc=$?
	t1=$(date +%s.%N)
	if [ $rc -ne 0 ]; then
		local why
		why=$(grep -v '^$' "$cell/mig.log" | tail -1)
		[ $rc -eq 124 ] && why="timed out after ${limit}s; $why"
		say "failed: haul $mode $mem $rate $bw: migrate exit $rc: $why"
		row haul "$mode" "$mem" "$rate" "$bw" failed "" "" "" \
			"$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')" "" "" "" \
			"migrate exit $rc: $why"
		keep_logs "$cell"; kill_ours; return
	fi
	js=$(python3 "$here/report.py" --haul-json "$cell/mig.json" 2>&1)
	local ppr throttle dump restore freeze_at resume_at complete fp50 fp99 faults
	local hstall hbefore hres hattach hcall hthr
	read -r downtime total bytes rounds ppr throttle dump restore freeze_at resume_at complete \
		fp50 fp99 faults hstall hbefore hres hattach hcall hthr <<<"$js"
	if [ "$freeze_at" = - ]; then # no --json: assume the freeze came last
		freeze_at=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a - 0.5 }')
		resume_at=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
	fi
	finish_workload "$cell" "$t0" "$freeze_at" "$resume_at" "$mib"
	[ "$total" = "-" ] && total=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
	local status=ok note=
	case $verify in
	ok*) ;;
	*) status=failed; note="memory not intact after the move: $verify"; keep_logs "$cell" ;;
	esac
	[ "$keep_all" = 1 ] && [ "$status" = ok ] && echo "t0=$t0 t1=$t1" >"$cell/times" && keep_logs "$cell"
	say "$status: haul $mode $mem $rate $bw: downtime ${downtime} ms, client gap ${gap} ms" \
		"(switchover ${switch_gap}, before ${other_gap}, after ${post_gap}, idle ${base_gap})," \
		"haul's view: stall ${hstall} ms (before ${hbefore}, resolution ${hres})," \
		"total ${total} s, ${bytes} bytes, ${rounds} rounds, verify $verify"
	row haul "$mode" "$mem" "$rate" "$bw" $status "$downtime" "$gap" "$gap_mono" "$total" \
		"$bytes" "$rounds" "$verify" "$note" "$ppr" "$throttle" "$dump" "$restore"
	kill_ours
}

# CRIU: page server on the target, dump to it, restore on the target; the whole
# dump + restore is downtime (CRIU's stop-and-copy).
run_criu_cell() {
	local mem=$1 rate=$2 bw=$3 cell port t0 t1 t2 mib gap= gap_mono= gap_end= gap_steal= verify= rc
	local base_gap= switch_gap= other_gap= post_gap= post_gap=
	if [ -n "$criu_skip" ]; then
		[ "$criu_skip" = off ] && return
		say "skipped: criu $mem $rate $bw: $criu_skip"
		row criu stop-and-copy "$mem" "$rate" "$bw" skipped "" "" "" "" "" "" "" "$criu_skip"
		return
	fi
	if over_budget; then
		say "skipped: criu $mem $rate $bw: $budget_why"
		row criu stop-and-copy "$mem" "$rate" "$bw" skipped "" "" "" "" "" "" "" "$budget_why"
		return
	fi
	cell_no=$((cell_no + 1))
	cell=$work/cell$cell_no-criu-$mem-$rate-$bw
	mkdir -p "$cell/img"
	mib=$(size_mib "$mem")
	port=$((7000 + cell_no))
	"${in_dst[@]}" criu page-server -D "$cell/img" --address $dst_ip --port $port \
		>"$cell/ps.log" 2>&1 &
	pids+=($!)
	disown $!
	sleep 0.5
	if ! start_workload "$cell" "$mem" "$rate"; then
		row criu stop-and-copy "$mem" "$rate" "$bw" failed "" "" "" "" "" "" "" "workload did not start"
		keep_logs "$cell"; kill_ours; return
	fi
	t0=$(date +%s.%N)
	"${in_src[@]}" criu dump -t "$wl_pid" -D "$cell/img" --shell-job --page-server \
		--address $dst_ip --port $port -o dump.log >/dev/null 2>&1
	rc=$?
	t1=$(date +%s.%N)
	if [ $rc -eq 0 ]; then
		"${in_dst[@]}" criu restore -D "$cell/img" --shell-job -d -o restore.log \
			>/dev/null 2>&1
		rc=$?
	fi
	t2=$(date +%s.%N)
	if [ $rc -ne 0 ]; then
		row criu stop-and-copy "$mem" "$rate" "$bw" failed "" "" "" "" "" "" "" \
			"criu exit $rc: $(tail -1 "$cell/img/dump.log" "$cell/img/restore.log" 2>/dev/null | tail -1)"
		keep_logs "$cell"; kill_ours; return
	fi
	local dt status=ok
	dt=$(awk -v a="$t0" -v b="$t2" 'BEGIN { printf "%.1f", (b - a) * 1000 }')
	finish_workload "$cell" "$t0" 0 "$(awk -v a="$t0" -v b="$t2" 'BEGIN { print b - a }')" "$mib"
	case $verify in ok*) ;; *) status=failed ;; esac
	say "$status: criu $mem $rate $bw: downtime $dt ms, client gap $gap ms, verify $verify"
	row criu stop-and-copy "$mem" "$rate" "$bw" $status "$dt" "$gap" "$gap_mono" \
		"$(awk -v a="$t0" -v b="$t2" 'BEGIN { printf "%.3f", b - a }')" "" 1 "$verify" \
		"dump $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", (b - a) * 1000 }') ms"
	kill_ours
}

# ---- the run -----------------------------------------------------------------
declare -A link
{
	echo "run $run_id, profile $profile, pattern $pattern"
	echo "host: $(uname -sr), $(nproc) cpus, $(awk '/^MemTotal:/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo) memory, MemAvailable $mem_avail_mib MiB"
	echo "haul: $(git -C "$top" describe --always --dirty 2>/dev/null)"
	echo "memory: the workload fills its memory right before each cell (fresh pages)"
} >"$out/env.txt"
[ -n "$haul_skip" ] && say "skipped: every haul cell: $haul_skip"
[ -n "$criu_skip" ] && [ "$criu_skip" != off ] && say "skipped: $criu_skip"

start=$(date +%s)
for bw in $bws; do
	if ! set_bandwidth "$bw"; then
		say "skipped: bandwidth $bw: tc tbf failed"
		continue
	fi
	link[$bw]=$(measure_link)
	say "bandwidth $bw: link measured at ${link[$bw]} Gbit/s (one TCP stream)"
	echo "link $bw: ${link[$bw]} Gbit/s measured" >>"$out/env.txt"
	for mem in $mems; do
		mib=$(size_mib "$mem")
		if [ $((mib * 3)) -gt "$mem_avail_mib" ]; then
			why="needs $((mib * 3)) MiB available (3x: source, target, page server), MemAvailable is $mem_avail_mib MiB"
			for rate in $rates; do
				for mode in $modes; do
					say "skipped: haul $mode $mem $rate $bw: $why"
					row haul "$mode" "$mem" "$rate" "$bw" skipped "" "" "" "" "" "" "" "$why"
				done
			done
			continue
		fi
		for rate in $rates; do
			for rep in $(seq "$repeat"); do
				for mode in $modes; do
					run_haul_cell "$mem" "$rate" "$bw" "$mode"
				done
				run_criu_cell "$mem" "$rate" "$bw"
			done
		done
	done
done
set_bandwidth loopback
say "matrix done in $(($(date +%s) - start)) s"

python3 "$here/report.py" --csv "$csv" --out "$out" || die "report failed"
if [ ! -f "$out/plotvars.gp" ]; then
	: # report.py said why
elif command -v gnuplot >/dev/null; then
	gnuplot -e "dir='$out'" "$here/plot.gp" 2>"$work/gnuplot.log" ||
		say "plot failed: $(grep -v '^$' "$work/gnuplot.log" | tail -1)"
else
	say "skipped: plots (no gnuplot)"
fi
say "results in $out: bench.csv summary.md *.png"
exit 0
}
