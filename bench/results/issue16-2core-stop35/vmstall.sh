#!/bin/bash
# vmstall.sh WORKLOAD: an idle 64 MiB workload's largest heartbeat gaps (10 s) on this VM
# alone, beside two nice-19 CPU burners, and beside a process that populates fresh memory
# (a 1 GiB workload started over and over: fresh pages written, then unmapped at exit).
wl=${1:-build/progs/workload}
hb=$(mktemp)
gaps() { tr ' ' '\n' <"$hb" | grep -E '^(max_gap_us|stalls_over_5ms)=' | tr '\n' ' '
	 echo "top=$(tr ' ' '\n' <"$hb" | grep top_gaps | cut -d= -f2 | tr ';' '\n' | head -6 | cut -d@ -f1 | tr '\n' ,)"; }
idle() { "$wl" --mem 64M --rate 0 --duration 10 --heartbeat "$hb" --print-every 0 >/dev/null 2>&1; }
for rep in 1 2; do
	idle; echo "alone:            $(gaps)"
	pids=""; for i in 1 2; do nice -n 19 bash -c 'while :; do :; done' & pids="$pids $!"; done
	idle; kill $pids; wait $pids 2>/dev/null
	echo "2 CPU burners:    $(gaps)"
	( end=$((SECONDS + 11)); while [ $SECONDS -lt $end ]; do "$wl" --mem 1G --rate 0 --duration 1 --print-every 0 >/dev/null 2>&1; done ) & bp=$!
	idle; wait $bp
	echo "fresh-memory:     $(gaps)"
done
rm -f "$hb"
