# ENOMEM on the fault path, with a fake guest verifying every byte: the test daemon fails 3
# in every 200 UFFDIO_COPY/UFFDIO_ZEROPAGE calls with ENOMEM (host memory pressure) while 4
# threads read and write 64 MiB over an 8 MiB resident limit, so zero-page faults, faults
# from the shm tier and writes racing evictions all meet it. Each such fault must wait and
# be retried, never dropped: the guest sees every byte right, stats count the retries and
# no fault error, the fault thread lives throughout, and the log says so, rate-limited. The
# guest's exit must be quiet: no uffd errors from a process that has gone.
. "$(dirname "$0")/lib.bash"
cat >"$T/fg.conf" <<'CONF'
[memory]
resident_max = 8M
run_size = 64K
[shm]
max = 128M
CONF
DAEMON=test UFFD_MGR_INJECT_ENOMEM=burst:3:200 start_daemon
fakeguest enomem "$T/fg.conf" --mb 64 --threads 4 --seconds 6 --write-pct 40 --hot-pct 60 \
	--discard-pct 1 >"$T/fg.out" 2>&1 &
fg=$!
wait_vm enomem
sleep 3
alive=$(stat enomem fault_thread.alive)
wait $fg || { cat "$T/fg.out"; fail "fake guest saw wrong bytes"; }
[ "$alive" = True ] || fail "fault thread not alive mid-run"
retries=$(stat enomem faults.enomem_retries)
[ "$retries" -gt 0 ] || fail "no ENOMEM retries counted"
[ "$(stat enomem faults.errors)" -eq 0 ] || fail "fault errors"
[ "$(stat enomem fault_thread.restarts)" -eq 0 ] || fail "the fault thread stopped"
[ "$(stat enomem failed)" = False ] || fail "the VM was failed"
[ "$(stat enomem faults.shm)" -gt 100 ] || fail "too few faults from the shm tier"
grep -q "host out of memory serving page .*; the fault waits and is retried" "$T/daemon.log" ||
	fail "ENOMEM not logged"
lines=$(grep -c "host out of memory" "$T/daemon.log")
[ "$lines" -le $((retries / 1000 + 1)) ] || fail "ENOMEM logged $lines times for $retries retries"
! grep -E "fault thread stops|cannot lift|not served|eviction of run" "$T/daemon.log" ||
	fail "errors in the log"
[ "$(grep -c "guest gone" "$T/daemon.log")" -le 1 ] || fail "guest gone said more than once"
echo "ENOMEM: $retries retries over $(stat enomem faults.zero) zero-page and" \
	"$(stat enomem faults.shm) shm faults, $lines log line(s); guest verified"
