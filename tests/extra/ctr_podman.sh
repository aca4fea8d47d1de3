#!/bin/sh
# ctr_podman.sh - podman container checkpoint --export and restore --import
# with haul's criu entry point underneath (podman -> runc -> criu = haul).
#
# What this machine needs, and why: podman sets RLIMIT_NOFILE and
# RLIMIT_NPROC even with --ulimit host, and root here has no
# CAP_SYS_RESOURCE ("error setting rlimit type 6"): explicit limits of
# 1024; --runtime runc (crun refuses the hybrid cgroup layout); --network
# none (haul carries a network namespace with lo only; podman's default
# network adds an interface, which is refused by name).  Podman's default
# seccomp profile and capabilities stay: both are carried.  The image is imported from a busybox-static
# rootfs tar (no registry here), the process tests/progs/ctr_counter.c
# built static.  Checks: the checkpoint ran haul (its haul-ctr.img is in
# the archive: podman does not export dump.log), --print-stats
# shows the criu_statistics haul wrote (stats-dump), the container
# restored from the archive runs under the same name with the same memory
# token and a counter that went on, under seccomp with its capabilities.  Names carry this script's PID.
set -u
haul=${HAUL_BIN:-$PWD/build/haul}
src=${HAUL_SRC:-$PWD}
[ "$(id -u)" = 0 ] || { echo "needs root (podman)"; exit 77; }
[ -x "$haul" ] || { echo "haul not built ($haul)"; exit 77; }
need=
command -v podman >/dev/null || need="$need podman"
command -v runc >/dev/null || need="$need runc"
[ -x /bin/busybox ] || need="$need busybox-static"
command -v jq >/dev/null || need="$need jq"
if [ -n "$need" ]; then
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $need \
		>/dev/null 2>&1 || { echo "cannot install$need from the Debian mirror"; exit 77; }
fi
command -v podman >/dev/null && command -v runc >/dev/null && [ -x /bin/busybox ] &&
	command -v jq >/dev/null || { echo "podman, runc, busybox-static or jq missing"; exit 77; }

tmp=$(mktemp -d /tmp/ctr_podman.XXXXXX)
name=pd$$
img=localhost/haulctr$$
cleanup() {
	podman rm -f $name ${name}t >/dev/null 2>&1
	podman rmi -f $img >/dev/null 2>&1
	rm -rf "$tmp"
}
trap cleanup EXIT
fail() {
	echo "FAIL: $*"
	d=$(podman inspect -f '{{.StaticDir}}' $name 2>/dev/null)
	for f in "$d"/dump.log "$d"/restore.log; do [ -f "$f" ] && { echo "== $f"; tail -20 "$f"; }; done
	exit 1
}
mkdir -p "$tmp/bin" "$tmp/root/bin" "$tmp/root/dev" "$tmp/root/proc" "$tmp/root/sys" "$tmp/root/tmp"
ln -s "$haul" "$tmp/bin/criu"
CPATH="$tmp/bin:$PATH"
cp /bin/busybox "$tmp/root/bin/"
gcc -static -O2 -o "$tmp/root/counter" "$src/tests/progs/ctr_counter.c" 2>/dev/null ||
	{ echo "cannot build a static test program (libc6-dev)"; exit 77; }
tar -C "$tmp/root" -cf "$tmp/root.tar" . && podman import "$tmp/root.tar" $img >/dev/null 2>&1 ||
	{ echo "podman import does not work here"; exit 77; }
podman run -d --name $name --runtime runc --network none \
	--ulimit nofile=1024:1024 --ulimit nproc=1024:1024 $img /counter /dev/shm/count /count \
	>/dev/null 2>"$tmp/run.err" || { cat "$tmp/run.err"; echo "podman run does not work here"; exit 77; }

count() { podman exec $name /bin/busybox cat /count 2>/dev/null; }
i=0
while :; do
	first=$(count) && [ -n "$first" ] && break
	i=$((i + 1)); [ $i -lt 100 ] || fail "$name never counted"; sleep 0.1
done
token=${first% *}

status() { podman exec $name /bin/busybox grep -E '^(Seccomp|CapEff|CapBnd):' /proc/1/status; }
before=$(status)
echo "$before" | grep -q "^Seccomp:.*2" || fail "podman's container runs without seccomp: $before"
PATH="$CPATH" podman container checkpoint --print-stats --export "$tmp/ck.tar.gz" $name \
	>"$tmp/ck.json" 2>"$tmp/ck.err" || { cat "$tmp/ck.err"; fail "podman container checkpoint"; }
jq -e '.container_statistics[0].criu_statistics.frozen_time > 0' "$tmp/ck.json" >/dev/null ||
	fail "--print-stats shows no criu statistics: $(cat "$tmp/ck.json")"
tar -tf "$tmp/ck.tar.gz" 2>/dev/null | grep -q "^checkpoint/haul-ctr.img$" ||
	fail "the checkpoint archive has no haul-ctr.img: haul did not make it"
podman rm $name >/dev/null || fail "podman rm after checkpoint"
PATH="$CPATH" podman container restore --import "$tmp/ck.tar.gz" >/dev/null 2>"$tmp/rs.err" ||
	{ cat "$tmp/rs.err"; fail "podman container restore --import"; }
podman ps --format '{{.Names}} {{.Status}}' | grep -q "^$name Up" || fail "$name is not up after restore"
i=0
while :; do
	now=$(count) && [ "${now#* }" -gt "${first#* }" ] 2>/dev/null && break
	i=$((i + 1)); [ $i -lt 100 ] || fail "the counter did not go on after restore ($now)"; sleep 0.1
done
[ "${now% *}" = "$token" ] || fail "token ${now% *} after restore, was $token: it restarted"
after=$(status)
[ "$after" = "$before" ] || fail "seccomp or capabilities differ after restore: '$before' / '$after'"
echo "podman checkpoint --export / restore --import through haul: $name counter ${first#* } -> ${now#* }, same token"

# a container of several processes (the process-tree work): pid 1 is busybox sh
# with two counters, a pipeline and a zombie (a subshell forks true and execs
# sleep, which never reaps it); their stdout and stderr are conmon's pipes,
# inherited.  After checkpoint --export and restore --import every process
# has the same pid, ppid, group and session inside, and each counter goes on
# with its own token.
tree_case() {
	tn=${name}t
	podman run -d --name $tn --runtime runc --network none \
		--ulimit nofile=1024:1024 --ulimit nproc=1024:1024 $img /bin/busybox sh -c \
		'/counter /dev/shm/c1 /c1 & /counter /dev/shm/c2 /c2 & /bin/busybox sleep 100000 | /bin/busybox cat & (/bin/busybox true & exec /bin/busybox sleep 100001) & wait' \
		>/dev/null 2>"$tmp/run2.err" || { cat "$tmp/run2.err"; fail "podman run of a process tree"; }
	ids() { # pid ppid pgrp sid name [zombie], as the container sees them (not this exec's)
		podman exec $tn /bin/busybox sh -c 'for f in /proc/[0-9]*/stat; do
			read l <$f 2>/dev/null || continue; set -- $l
			[ $1 = $$ ] || [ $4 = $$ ] && continue
			[ $4 = 0 ] && [ $1 != 1 ] && continue
			n=$2; [ $3 = Z ] && n="$2 zombie"
			echo "$1 $4 $5 $6 $n"
		done' | sort -n
	}
	cnt() { podman exec $tn /bin/busybox cat "$1" 2>/dev/null; }
	i=0
	until [ "$(ids | wc -l)" -ge 7 ] && c1=$(cnt /c1) && c2=$(cnt /c2) && [ -n "$c1" ] && [ -n "$c2" ]; do
		i=$((i + 1)); [ $i -lt 100 ] || fail "$tn has not its 7 processes: $(ids)"; sleep 0.1
	done
	before=$(ids)
	PATH="$CPATH" podman container checkpoint --export "$tmp/ck2.tar.gz" $tn \
		>/dev/null 2>"$tmp/ck2.err" || { cat "$tmp/ck2.err"; name=$tn fail "podman checkpoint of a tree"; }
	podman rm $tn >/dev/null || fail "podman rm after checkpoint (tree)"
	PATH="$CPATH" podman container restore --import "$tmp/ck2.tar.gz" >/dev/null 2>"$tmp/rs2.err" ||
		{ cat "$tmp/rs2.err"; name=$tn fail "podman restore --import of a tree"; }
	podman ps --format '{{.Names}} {{.Status}}' | grep -q "^$tn Up" || fail "$tn is not up after restore"
	for f in /c1 /c2; do
		was=$([ $f = /c1 ] && echo "$c1" || echo "$c2")
		i=0
		while :; do
			now=$(cnt $f) && [ "${now#* }" -gt "${was#* }" ] 2>/dev/null && break
			i=$((i + 1)); [ $i -lt 100 ] || fail "$tn: $f did not go on after restore ($now)"; sleep 0.1
		done
		[ "${now% *}" = "${was% *}" ] || fail "$tn: $f has token ${now% *}, was ${was% *}: it restarted"
	done
	after=$(ids)
	[ "$after" = "$before" ] || fail "$tn: the processes differ after restore:
$before
-- after:
$after"
	echo "podman checkpoint --export / restore --import of a tree: $tn's $(echo "$after" | wc -l) processes with their ids, both counters go on"
}
tree_case
exit 0
