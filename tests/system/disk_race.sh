# Faults racing the disk tier's own I/O, with a fake guest verifying every byte: the test
# daemon makes every disk write wait 2 ms once the disk scheduler granted it (a slow disk,
# UFFD_MGR_INJECT_DISK_WRITE_DELAY_US), under a 2 MiB shm tier that demotes all the time, so
# the guest keeps faulting on runs whose demotion write is in flight (they park until the
# commit and are then read back from disk), writes to them block on write-protection or
# park, and 2% of operations discard pages that may be mid-demotion (zero at the commit).
# Meanwhile the fault path frees disk slots, whose punch the evictor does later and in
# batches, and slots are reused after it. Stats must show demotions, parked faults, faults
# from disk, deferred punches and the scheduler's write grants, and no error.
. "$(dirname "$0")/lib.bash"
cat >"$T/p.conf" <<CONF
[memory]
resident_max = 2M
run_size = 64K
[shm]
max = 2M
high_watermark = 50
low_watermark = 20
[disk]
path = $T/%n.swap
max = 128M
[tracker]
mode = off
CONF
export UFFD_MGR_INJECT_DISK_WRITE_DELAY_US=2000
DAEMON=test start_daemon
fakeguest racy "$T/p.conf" --mb 8 --threads 2 --seconds 5 --write-pct 50 --hot-pct 50 --fill \
	--discard-pct 2 ||
	fail "fake guest saw wrong bytes"
"$BUILD/uffdctl" --socket "$SOCK" stats
[ "$(stat racy disk.demote_pages)" -gt 200 ] || fail "too few demotions"
[ "$(stat racy faults.parked)" -gt 10 ] || fail "too few faults met a run in flight"
[ "$(stat racy faults.disk)" -gt 100 ] || fail "too few faults served from disk"
[ "$(stat racy disk.punches)" -gt 0 ] || fail "no freed disk slot was punched"
[ "$(stat racy disk.queue.write.grants)" -gt 0 ] || fail "writes did not go through the scheduler"
[ "$(stat racy faults.errors)" -eq 0 ] || fail "fault errors"
[ "$(stat racy disk.read_errors)" -eq 0 ] || fail "read errors"
[ "$(stat racy disk.write_errors)" -eq 0 ] || fail "write errors"
echo "PASS: $(stat racy disk.demote_pages) pages demoted, $(stat racy faults.parked) faults" \
	"parked, $(stat racy faults.disk) disk faults, $(stat racy disk.punches) punches"
