# The eBPF tracker's default mode, adaptive regions ([tracker] regions, uffd-mgr/regions.h),
# against fake guests whose working set is known, on guests of 64 MiB and of 4 GiB at once
# under one daemon (seven fake guests):
#   uni:  uniform over a prefix                      truth: the prefix
#   hc:   a hot prefix of pages written once         truth: the hot prefix
#   ph:   one set for 3 s, then another              truth: the second set, once the shift is
#                                                    older than the window (3 s counted from
#                                                    when the guest's pages are written)
#            64 MiB guests                 4 GiB guests
#   uni      8192 pages                    65536 pages (256 MiB)
#   hc       4096 hot of 16384 written     16384 hot of 65536 written
#   ph       6144 then 10240               24576 then 40960
# and a 64 MiB guest of two NUMA backends (two memfds in one process, as QEMU maps them; each
# is a unit of its own, nm and nm.n1, tracked side by side by the same BPF entry): uniform over
# 12288 pages, so 8192 of nm's and 4096 of nm.n1's.
# 11 s after the phase guests shifted, the 10 s window of each estimate must be within 10% of
# the truth, and the
# tracker's cost bounded: at most [tracker] regions regions, and an arming of at most as
# many pages. Eviction is off, so only the tracker's arming moves page-table entries. The fake
# guests check their data too (every page they wrote, at the end).
. "$(dirname "$0")/lib.bash"

REGIONS=1000

check() { # vm truth
	python3 - "$T/stats.json" "$1" "$2" "$REGIONS" <<'PY'
import json, sys
path, vm, truth, regions = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
v = [x for x in json.load(open(path))['vms'] if x['name'] == vm][-1]
t = v['tracker']
got = t['wss_bytes']['10s'] // 4096
ok = abs(got - truth) <= 0.10 * truth
bounded = 0 < t['regions'] <= regions and t['armed_pages'] <= t['regions']
print(f"  {vm:6} wss[10s] = {got:6} pages, truth {truth:6} ({100 * (got - truth) / truth:+5.1f}%)"
      f" regions {t['regions']:4} armed {t['armed_pages']:4} ranges {t['arm_ranges']:4}: "
      f"{'ok' if ok and bounded else 'OUT OF 10%' if not ok else 'NOT BOUNDED'}")
sys.exit(0 if ok and bounded else 1)
PY
}

printf '[memory]\nresident_max = 0\n[shm]\nmax = 16M\n[tracker]\nmode = ebpf\nregions = %s\n' \
	$REGIONS >"$T/p.conf"
start_daemon
pids=()
run() { # vm mb pattern [args]: runs until told to stop (SIGUSR1), then verifies its pages
	local vm=$1 mb=$2 pat=$3
	shift 3
	fakeguest "$vm" "$T/p.conf" --mb "$mb" --threads 2 --seconds 120 --pattern "$pat" "$@" \
		>"$T/$vm.out" 2>&1 &
	pids+=($!)
}
run uni 64 uniform:8192
run hc 64 hotcold:4096:12288
run ph 64 phase:6144:10240:3
run uni4g 4096 uniform:65536
run hc4g 4096 hotcold:16384:49152
run ph4g 4096 phase:24576:40960:3
run nm 64 uniform:12288 --backends 2 # two NUMA nodes: units nm and nm.n1 of one process
# A pattern's clock starts once its pages are written, and each guest says when its working
# set changed (FAKEGUEST WSS): once both phase guests have shifted, the 10 s window is
# measured 11 s later, so it holds the second set only.
for _ in $(seq 600); do
	grep -q 'WSS pages=10240' "$T/ph.out" && grep -q 'WSS pages=40960' "$T/ph4g.out" && break
	sleep 0.1
done
grep -q 'WSS pages=40960' "$T/ph4g.out" || fail "the phase guests did not shift within 60 s"
sleep 11
"$BUILD/uffdctl" --socket "$SOCK" stats --json >"$T/stats.json"
for p in "${pids[@]}"; do pkill -USR1 -P "$p"; done # the fake guests, not their subshells
rc=0
for p in "${pids[@]}"; do wait "$p" || rc=1; done
[ $rc -eq 0 ] || { tail -n 3 "$T"/*.out; fail "a fake guest failed"; }
grep -q "tracker: ebpf " "$T/daemon.log" || fail "daemon did not run the ebpf tracker"
check uni 8192 || rc=1
check hc 4096 || rc=1
check ph 10240 || rc=1
check uni4g 65536 || rc=1
check hc4g 16384 || rc=1
check ph4g 40960 || rc=1
check nm 8192 || rc=1
check nm.n1 4096 || rc=1
[ $rc -eq 0 ] || fail "a bounded tracker's estimate is off by more than 10%, or its cost unbounded"
echo "PASS"
