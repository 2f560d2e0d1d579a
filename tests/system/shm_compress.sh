# The compressed shm tier under a fake guest, once with lz4 and 64K runs, once with zstd and 4K
# runs: 4 threads over 96 MiB whose pages are of five kinds (tests/tools/fakeguest.c,
# --content mixed: incompressible, zero, a repeated pattern, half and 7/8 random), 4 MiB
# resident, an 8 MiB shm tier and a disk tier, so runs are stored as blobs (compressed, or raw
# when they do not shrink by a quarter; zero pages as zero pages), demoted to disk unpacked past
# the watermark, faulted back from both tiers, and discarded (3% of operations, as QEMU does:
# punch + MADV_DONTNEED, whichever tier the page is in). The fake guest checks every page it
# reads and every page at the end. While it runs, the shm tier must hold more guest bytes than
# the pool bytes they take; after, stats must show compressed and raw blobs, demotions, faults
# from both tiers, discards, and no fault, blob or I/O error.
# The tracker runs as by default: discards meet its armings here (the race where a discard's
# REMOVE came before an arming's own once lost a page rewritten in between; PF_ARMING now stays
# until the arming ends, and test_vm's test_discard_during_arming has that race alone).
. "$(dirname "$0")/lib.bash"
start_daemon
for cfg in "lz4 64K" "zstd 4K"; do
	set -- $cfg
	alg=$1 rs=$2 vm=z$1
	cat >"$T/$vm.conf" <<CONF
[memory]
resident_max = 4M
run_size = $rs
[shm]
max = 8M
compress = $alg
high_watermark = 80
low_watermark = 50
[disk]
path = $T/%n.swap
max = 256M
CONF
	fakeguest $vm "$T/$vm.conf" --mb 96 --threads 4 --seconds 8 --write-pct 40 --hot-pct 50 \
		--fill --discard-pct 3 --content mixed >"$T/$vm.log" 2>&1 &
	fg=$!
	wait_vm $vm
	best=0
	for _ in $(seq 20); do # the capacity the tier gives, sampled while it is full
		sleep 0.3
		r=$("$BUILD/uffdctl" --socket "$SOCK" stats --json | python3 -c "
import json, sys
v = [x for x in json.load(sys.stdin)['vms'] if x['name'] == '$vm'][-1]
print(int(100 * v['shm_bytes'] / v['shm_stored_bytes']) if v['shm_stored_bytes'] else 0)")
		[ "$r" -le "$best" ] || best=$r
	done
	wait $fg || fail "$alg: the fake guest saw wrong bytes: $(tail -3 "$T/$vm.log")"
	grep -q "FAKEGUEST PASS" "$T/$vm.log" || fail "$alg: no PASS from the fake guest"
	"$BUILD/uffdctl" --socket "$SOCK" stats
	[ "$(stat $vm zshm.compress)" = "$alg" ] || fail "$alg: stats say compress $(stat $vm zshm.compress)"
	[ "$(stat $vm zshm.blobs)" -gt "$(stat $vm zshm.raw_blobs)" ] || fail "$alg: too few compressed blobs"
	[ "$(stat $vm zshm.raw_blobs)" -gt 10 ] || fail "$alg: no incompressible run kept raw"
	[ "$(stat $vm evictions.zero_pages)" -gt 100 ] || fail "$alg: no zero page dropped"
	[ "$(stat $vm disk.demote_pages)" -gt 1000 ] || fail "$alg: too few demotions"
	[ "$(stat $vm faults.disk)" -gt 100 ] || fail "$alg: too few faults served from disk"
	[ "$(stat $vm faults.shm)" -gt 100 ] || fail "$alg: too few faults served from shm"
	[ "$(stat $vm removes.pages)" -gt 10 ] || fail "$alg: too few discards seen"
	for k in faults.errors zshm.errors disk.read_errors disk.demote_errors; do
		[ "$(stat $vm $k)" -eq 0 ] || fail "$alg: $k is $(stat $vm $k)"
	done
	[ "$best" -gt 110 ] || fail "$alg: the shm tier held only $best% of its pool bytes in guest bytes"
	echo "PASS $alg, run_size $rs: capacity up to $best% of the pool's bytes;" \
		"$(stat $vm zshm.blobs) blobs ($(stat $vm zshm.raw_blobs) raw)," \
		"$(stat $vm disk.demote_pages) pages demoted, $(stat $vm faults.shm) shm and" \
		"$(stat $vm faults.disk) disk faults"
done
