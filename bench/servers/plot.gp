# bench/servers/plot.gp - the picture of a bench/servers/run.sh run:
# `gnuplot -e "dir='bench/results/servers'" bench/servers/plot.gp`.  Reads
# dir/plot.dat (bench/servers/report.py): per server and size, the clients' max
# latency and haul's downtime in each mode ("-": the cell did not run).
set terminal pngcairo size 1100, 480 font ",10"
set output dir.'/latency.png'
set datafile missing "-"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set key autotitle columnhead below horizontal font ",9"
set xtics rotate by -15 font ",9"
set grid ytics
set logscale y
set yrange [0.1:*]
set multiplot layout 1, 2 title "Redis and memcached migrated under 16 checked clients (make bench-servers)"
set title "clients' max latency (ms, log)"
plot for [c = 2:6] dir.'/plot.dat' using c:xtic(1)
set title "haul's downtime (ms, log)"
plot for [c = 7:11] dir.'/plot.dat' using c:xtic(1)
unset multiplot
