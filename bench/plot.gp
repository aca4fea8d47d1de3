# bench/plot.gp - the two pictures of a bench run; `gnuplot -e "dir='bench/results'" bench/plot.gp`.
# Reads dir/plotvars.gp and dir/plot_{downtime,total}_MIB.dat written by bench/report.py:
# one panel per memory size, one line per mode ("-" marks a cell that did not run).
load dir.'/plotvars.gp'
n = words(mems)
set datafile missing "-"
set key autotitle columnhead below horizontal font ",9"
set offsets 0.25, 0.25, 0, 0
set grid ytics
set style data linespoints
set pointsize 1.2
label(mib) = (int(mib) % 1024 == 0) ? sprintf("%d GiB", int(mib) / 1024) : sprintf("%d MiB", int(mib))

set terminal pngcairo size (420 * n + 80), 460 font ",10"

set output dir.'/downtime_vs_bandwidth.png'
set multiplot layout 1, n title sprintf("client-seen downtime (largest 1 ms heartbeat gap) vs bandwidth, dirty rate %s, run %s", dt_rate, run)
set logscale y
set ylabel "downtime (ms, log)"
unset xlabel  # the title names the axis
do for [i = 1:n] {
	m = word(mems, i)
	set title label(m)
	plot for [c = 2:nseries + 1] sprintf("%s/plot_downtime_%s.dat", dir, m) using c:xtic(1)
}
unset multiplot

set output dir.'/total_vs_rate.png'
set multiplot layout 1, n title sprintf("total migration time vs dirty rate (MiB/s), bandwidth %s, run %s", tot_bw, run)
unset logscale y
set ylabel "total time (s)"
unset xlabel
do for [i = 1:n] {
	m = word(mems, i)
	set title label(m)
	plot for [c = 2:nseries + 1] sprintf("%s/plot_total_%s.dat", dir, m) using c:xtic(1)
}
unset multiplot
