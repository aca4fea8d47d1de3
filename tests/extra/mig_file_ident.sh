#!/bin/sh
# mig_file_ident.sh - `haul migrate` of a process whose private file mapping
# names, on the target, another file than the one it mapped (a library of
# another version there): only the pages the process wrote travel, so the
# target would have mapped the other file's pages beside them.  The target's
# page server runs in a mount namespace of its own where another file is
# bound over the path; the migration must fail before the freeze, the
# source's error must name the file and what differs, and the process must
# run on here with its memory intact.  Then the same file there (the bind
# made of the file itself): the migration succeeds.
set -u
HAUL=${HAUL_BIN:-$PWD/build/haul}
PROGS=${HAUL_PROGS:-$PWD/build/progs}
[ "$(id -u)" = 0 ] || { echo "needs root (ptrace, mount namespaces)"; exit 77; }
[ -x "$HAUL" ] && [ -x "$PROGS/rst_vmas" ] || { echo "build haul and progs first"; exit 77; }
. "$(dirname "$0")/th_wait.shlib"
D=$(mktemp -d /tmp/haul-mig-ident.XXXXXX)
pids=""
# the page servers by process group (setsid), the processes by pid
trap 'for p in $pids; do kill -9 -$p 2>/dev/null; kill -9 $p 2>/dev/null; done; rm -rf "$D"' EXIT
head -c 32 /dev/urandom >"$D/key" && chmod 600 "$D/key"

# A page server in a mount namespace of its own where @1 is bound over $D/mapped.
start_ps() {
	setsid unshare -m sh -c "mount --make-rprivate / && mount --bind '$1' '$D/mapped' &&
		exec '$HAUL' pageserver --listen 127.0.0.1:0 --key '$D/key' --once" \
		>"$D/ps.log" 2>&1 &
	pids="$pids $!"
	wait_line "$D/ps.log" 'listening on 127.0.0.1:[0-9]+' || exit 1
	port=$(grep -Eo 'listening on 127.0.0.1:[0-9]+' "$D/ps.log" | head -1 | cut -d: -f2)
}

"$PROGS/rst_vmas" "$D" filepriv >"$D/out" 2>&1 &
pid=$!
pids="$pids $pid"
wait_line "$D/out" '^ready' || exit 1

# Another file of the same size, one byte changed (its XXH3 differs), later mtime.
cp "$D/mapped" "$D/other"
printf X | dd of="$D/other" bs=1 seek=100 conv=notrunc 2>/dev/null
start_ps "$D/other"
"$HAUL" migrate "$pid" --to "127.0.0.1:$port" --key "$D/key" >"$D/mig1.out" 2>"$D/mig1.log"
rc=$?
if [ "$rc" -eq 0 ]; then
	pids="$pids $(sed -n 's/.*(pid \([0-9]*\) there).*/\1/p' "$D/mig1.out")"
	echo "FAIL: a migration onto another $D/mapped succeeded: $(cat "$D/mig1.log")"
	exit 1
fi
if ! grep -q "$D/mapped holds other bytes on the restoring host than at the source" "$D/mig1.log"; then
	echo "FAIL: the source's error does not name the file and what differs: $(cat "$D/mig1.log")"
	exit 1
fi
kill -0 "$pid" 2>/dev/null || { echo "FAIL: the refused migration lost the source"; exit 1; }

# The same file there: migrated, and its pages read back right on the target.
start_ps "$D/mapped"
if ! "$HAUL" migrate "$pid" --to "127.0.0.1:$port" --key "$D/key" >"$D/mig2.out" 2>"$D/mig2.log"; then
	echo "FAIL: the migration with the same file failed: $(cat "$D/mig2.log")"
	exit 1
fi
wait "$pid" 2>/dev/null # the source, killed once the target runs
there=$(sed -n 's/.*(pid \([0-9]*\) there).*/\1/p' "$D/mig2.out")
[ -n "$there" ] || { echo "FAIL: no restored pid in: $(cat "$D/mig2.out")"; exit 1; }
pids="$pids $there"
kill -USR2 "$there"
wait_line "$D/out" '^(pass|FAIL)' || exit 1
grep -q '^pass' "$D/out" || { echo "FAIL: the migrated process: $(cat "$D/out")"; exit 1; }
echo "mig_file_ident: PASS: another file refused by name before the freeze, the same one migrated"
exit 0
