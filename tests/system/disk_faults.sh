# Fault injection on the disk tier, with a fake guest verifying every byte throughout:
#  1. the disk tier's file system (a 6 MiB tmpfs) fills long before the tier's 256 MiB: the
#     write fails with ENOSPC, demotion pauses, the shm tier then fills and eviction stops;
#     the log and stats say so and the guest runs on;
#  2. injected EIO on every 7th disk write and every 5th disk read: failed writes leave the
#     pages in shm, failed reads are reported with the page and VM and the fault is retried,
#     never served with wrong bytes.
. "$(dirname "$0")/lib.bash"
mkdir -p "$T/small"
mount -t tmpfs -o size=6m tmpfs "$T/small" || skip "cannot mount a tmpfs (needs root)"
trap 'umount "$T/small" 2>/dev/null; cleanup' EXIT
cat >"$T/full.conf" <<CONF
[memory]
resident_max = 4M
[shm]
max = 16M
[disk]
path = $T/small/%n.swap
max = 256M
CONF
cat >"$T/eio.conf" <<CONF
[memory]
resident_max = 4M
[shm]
max = 8M
[disk]
path = $T/%n.swap
max = 256M
CONF
start_daemon
fakeguest full "$T/full.conf" --mb 64 --threads 2 --seconds 5 --write-pct 50 --fill ||
	fail "disk full: fake guest saw wrong bytes"
[ "$(stat full disk.full_events)" -ge 1 ] || fail "no disk-full event"
[ "$(stat full tier_full_events)" -ge 1 ] || fail "no shm-full event after the disk filled"
grep -q "disk tier .* full" "$T/daemon.log" || fail "disk full not logged"
echo "disk full: $(stat full disk.full_events) disk-full events, $(stat full tier_full_events)" \
	"shm-full events, guest verified"

kill "$DAEMON_PID"; wait "$DAEMON_PID" 2>/dev/null || true
DAEMON=test UFFD_MGR_INJECT_DISK="write:7:EIO,read:5:EIO" start_daemon
fakeguest eio "$T/eio.conf" --mb 64 --threads 2 --seconds 6 --write-pct 50 --fill ||
	fail "injected EIO: fake guest saw wrong bytes"
[ "$(stat eio disk.write_errors)" -ge 1 ] || fail "no write errors counted"
[ "$(stat eio disk.read_errors)" -ge 1 ] || fail "no read errors counted"
[ "$(stat eio faults.disk_read_errors)" -ge 1 ] || fail "no retried disk faults"
[ "$(stat eio faults.disk)" -ge 1 ] || fail "no disk faults served"
grep -q "disk read of page .* failed: Input/output error; the fault waits" "$T/daemon.log" ||
	fail "read error not reported with its page"
grep -q "writing run .* failed: Input/output error; it stays in shm" "$T/daemon.log" ||
	fail "write error not reported"
echo "EIO: $(stat eio disk.write_errors) write and $(stat eio disk.read_errors) read errors" \
	"injected, all retried or kept; guest verified"
