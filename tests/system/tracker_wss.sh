# Working-set tracker accuracy on fake guests with a known working set, for the eBPF tracker's
# exact mode ([tracker] regions = 0: every resident page armed each interval) and for the uffd
# minor-fault sampling fallback (the default, bounded mode is tracker_bounded.sh's). Three fake
# guests under one daemon:
#   uni: uniform over 8192 pages (32 MiB)                 truth 8192 pages
#   hc:  4096 hot pages, 12288 written once and left cold   truth 4096 over 10 s, after 10 s
#   ph:  6144 pages for 2 s, then 10240 other pages         truth 10240 once the shift is 10 s old
# After 15 s each estimate must be within 5% of the truth: the 1 s and 10 s windows with
# ebpf (exact: every resident page observed each interval), the 10 s window with sample
# (8192 pages sampled a second, averaged over the window). Eviction is off, so only the
# tracker's own arming moves page-table entries. The fake guests check their data too.
. "$(dirname "$0")/lib.bash"

within5() { # vm window truth
	python3 - "$T/stats.json" "$1" "$2" "$3" <<'PY'
import json, sys
path, vm, win, truth = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
v = [x for x in json.load(open(path))['vms'] if x['name'] == vm][-1]
got = v['tracker']['wss_bytes'][win] // 4096
ok = abs(got - truth) <= 0.05 * truth
print(f"  {v['tracker']['mode']:6} {vm:3} wss[{win:>3}] = {got:6} pages, truth {truth:6}: "
      f"{'ok' if ok else 'OUT OF 5%'}")
sys.exit(0 if ok else 1)
PY
}

run_mode() { # mode sample_pages
	local pids=() rc=0
	printf '[memory]\nresident_max = 0\n[shm]\nmax = 16M\n[tracker]\nmode = %s\nsample_pages = %s\nregions = 0\n' \
		"$1" "$2" >"$T/$1.conf"
	start_daemon
	fakeguest uni "$T/$1.conf" --mb 96 --threads 2 --seconds 17 --pattern uniform:8192 \
		>"$T/uni.out" 2>&1 &
	pids+=($!)
	fakeguest hc "$T/$1.conf" --mb 96 --threads 2 --seconds 17 --pattern hotcold:4096:12288 \
		>"$T/hc.out" 2>&1 &
	pids+=($!)
	fakeguest ph "$T/$1.conf" --mb 96 --threads 2 --seconds 17 --pattern phase:6144:10240:2 \
		>"$T/ph.out" 2>&1 &
	pids+=($!)
	sleep 15
	"$BUILD/uffdctl" --socket "$SOCK" stats --json >"$T/stats.json"
	for p in "${pids[@]}"; do wait "$p" || rc=1; done
	[ $rc -eq 0 ] || { cat "$T"/*.out; fail "a fake guest failed ($1)"; }
	grep -q "tracker: $1 " "$T/daemon.log" || fail "daemon did not run the $1 tracker"
	rc=0
	if [ "$1" = ebpf ]; then
		within5 uni 1s 8192 || rc=1
		within5 hc 1s 4096 || rc=1
		within5 ph 1s 10240 || rc=1
	fi
	within5 uni 10s 8192 || rc=1
	within5 hc 10s 4096 || rc=1
	within5 ph 10s 10240 || rc=1
	[ $rc -eq 0 ] || fail "$1 tracker estimate off by more than 5%"
	kill "$DAEMON_PID"
	wait "$DAEMON_PID" || true
	DAEMON_PID=
	rm -f "$SOCK"
}

run_mode ebpf 0
run_mode sample 8192
