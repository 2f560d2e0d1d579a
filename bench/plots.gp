# plots.gp: the bench suite's plots, drawn from the .dat files report.py writes.
#   gnuplot -e "dir='bench/results'; wset='...'; gset='...'" bench/plots.gp
# (wset and gset describe the regrowth working set and the guest workload in the titles)
# latency.png (fault service latency per source, p50 and p99, log scale), regrow.png (read-back
# throughput per mode, sequential and random, log scale), guest.png (memstress run time) and
# main.png (latency and regrowth together: the README's plot).

if (!exists("dir")) dir = "bench/results"
if (!exists("wset")) wset = ""
if (!exists("gset")) gset = ""
lat = dir."/latency.dat"
reg = dir."/regrow.dat"
gst = dir."/guest.dat"

set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set grid ytics mytics
set key top left
set xtics rotate by -30 left nomirror noenhanced
set ytics nomirror
set datafile missing "NaN"
set bmargin 8

# Two bars per group, gap 1: the bars of group x are centred at x - 1/6 and x + 1/6. Each bar
# carries its value; each panel is a macro so that main.png can reuse them in a multiplot.
L = "with labels font ',8' offset 0,0.6 notitle"
V(x) = x != x ? "" : (x >= 100 ? sprintf("%.0f", x) : sprintf("%.3g", x))
lat_panel = "set title 'Fault service latency per source, one access as the guest sees it'; \
  set ylabel 'µs (log scale)'; set logscale y; set yrange [0.5:2000]; \
  plot lat using 2:xtic(1) title 'p50' lc rgb '#3b75af', \
  '' using 3 title 'p99' lc rgb '#ef8636', \
  '' using ($0-1/6.):2:(V($2)) @L, '' using ($0+1/6.):3:(V($3)) @L"
reg_panel = "set title 'Regrowth: reading back an evicted working set, '.wset; \
  set ylabel 'MiB/s (log scale)'; set logscale y; set yrange [1:100000]; \
  plot reg using 2:xtic(1) title 'sequential' lc rgb '#519e3e', \
  '' using 3 title 'random' lc rgb '#c53a32', \
  '' using ($0-1/6.):2:(V($2)) @L, '' using ($0+1/6.):3:(V($3)) @L"
gst_panel = "set title 'Real guest running memstress '.gset; \
  set ylabel 'ms'; unset logscale y; set yrange [0:*]; \
  plot gst using 2:xtic(1) title 'total' lc rgb '#3b75af', \
  '' using 3 title 'verify phases' lc rgb '#ef8636', \
  '' using ($0-1/6.):2:(V($2)) @L, '' using ($0+1/6.):3:(V($3)) @L"

set terminal pngcairo size 1100,600 font "DejaVu Sans,10"
set output dir."/latency.png"
@lat_panel
set output dir."/regrow.png"
@reg_panel
set output dir."/guest.png"
@gst_panel

set terminal pngcairo size 1100,1150 font "DejaVu Sans,10"
set output dir."/main.png"
set multiplot layout 2,1
@lat_panel
@reg_panel
unset multiplot
set output
