# Nobody is left waiting on a fault nobody serves, with fake guests verifying every byte:
#  1. the test daemon's fault thread exits after 3000 faults (injected, once): the control
#     loop notices within a second and restarts it; the guest completes with every byte
#     right, stats show one restart and no fault error;
#  2. it exits after every 500 faults: it is restarted once, then, stopping again at once,
#     its QEMU (the fake guest) is stopped with SIGTERM and one log line; stats say failed;
#  3. every disk read fails (injected EIO) with [disk] read_retry_max = 1s: past the bound
#     one line names the VM, the page, the swap file and the error, the VM is failed and
#     its guest stopped.
. "$(dirname "$0")/lib.bash"
cat >"$T/fg.conf" <<'CONF'
[memory]
resident_max = 8M
[shm]
max = 128M
CONF
cat >"$T/disk.conf" <<CONF
[memory]
resident_max = 4M
[shm]
max = 8M
[disk]
path = $T/%n.swap
max = 256M
read_retry_max = 1s
CONF
stop_daemon() {
	kill "$DAEMON_PID"
	wait "$DAEMON_PID" 2>/dev/null || true
	mv "$T/daemon.log" "$T/daemon-$1.log"
}

# 1. one exit: restarted within a second
DAEMON=test UFFD_MGR_INJECT_FAULT_EXIT=3000 start_daemon
fakeguest restart "$T/fg.conf" --mb 64 --threads 4 --seconds 5 --write-pct 40 --hot-pct 60 ||
	fail "restart: fake guest saw wrong bytes"
[ "$(stat restart fault_thread.restarts)" -eq 1 ] || fail "no restart counted"
[ "$(stat restart faults.errors)" -eq 0 ] || fail "fault errors"
[ "$(stat restart failed)" = False ] || fail "the VM was failed"
grep -q "\[restart\]: fault thread stops: Operation canceled" "$T/daemon.log" ||
	fail "the thread's exit was not logged"
grep -q "\[restart\]: the fault thread stopped (Operation canceled); restarted it (1 restarts)" \
	"$T/daemon.log" || fail "the restart was not logged"
gap=$(python3 - "$T/daemon.log" <<'PY'
import sys, datetime
t = {}
for line in open(sys.argv[1]):
    for key in ("fault thread stops", "restarted it"):
        if key in line and key not in t:
            t[key] = datetime.datetime.strptime(line.split()[0], "%H:%M:%S.%f")
print(int((t["restarted it"] - t["fault thread stops"]).total_seconds() * 1000))
PY
)
[ "$gap" -le 1000 ] || fail "restarted $gap ms after the thread stopped"
! grep -q "stopping QEMU" "$T/daemon.log" || fail "the guest was stopped"
echo "restart: the fault thread was restarted $gap ms after it stopped; guest verified"
stop_daemon restart

# 2. exits again soon after its restart: the guest is stopped
DAEMON=test UFFD_MGR_INJECT_FAULT_EXIT=500:always start_daemon
rc=0
fakeguest again "$T/fg.conf" --mb 64 --threads 2 --seconds 20 --write-pct 40 || rc=$?
[ "$rc" -eq 143 ] || fail "again: fake guest exit $rc, not SIGTERM (143)"
grep -q "\[again\]: stopping QEMU (pid [0-9]*): the fault thread stopped (Operation canceled) again" \
	"$T/daemon.log" || fail "the stop was not logged"
[ "$(grep -c "stopping QEMU" "$T/daemon.log")" -eq 1 ] || fail "more than one stop line"
[ "$(stat again failed)" = True ] || fail "stats do not say failed"
[ "$(stat again fault_thread.restarts)" -eq 1 ] || fail "not exactly one restart"
echo "again: restarted once, then the guest was stopped with SIGTERM"
stop_daemon again

# 3. disk reads failing past read_retry_max
DAEMON=test UFFD_MGR_INJECT_DISK="read:1:EIO" start_daemon
rc=0
fakeguest diskfail "$T/disk.conf" --mb 64 --threads 2 --seconds 30 --write-pct 50 --fill || rc=$?
[ "$rc" -eq 143 ] || fail "diskfail: fake guest exit $rc, not SIGTERM (143)"
grep -q "\[diskfail\]: stopping QEMU (pid [0-9]*): disk read of page 0x[0-9a-f]* from $T/diskfail.swap keeps failing (Input/output error) for [0-9]* ms" \
	"$T/daemon.log" || fail "the stop was not logged with page, swap file and error"
[ "$(stat diskfail failed)" = True ] || fail "stats do not say failed"
echo "diskfail: $(stat diskfail faults.disk_read_errors) failed reads, then the guest was stopped"
