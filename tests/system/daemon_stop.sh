# Stopping the daemon harms no guest: a fake guest runs with most of its 64 MiB in the shm
# and disk tiers; uffd-mgrd gets SIGTERM mid-run, brings every tiered page back into guest
# RAM and has the shim unregister it. The fake guest runs on unmanaged and must verify every
# byte.
. "$(dirname "$0")/lib.bash"
printf '[memory]\nresident_max = 4M\n[shm]\nmax = 24M\n[disk]\npath = %s\nmax = 128M\n' \
	"$T/stop.swap" >"$T/p.conf"
start_daemon
fakeguest stopper "$T/p.conf" --mb 64 --threads 2 --seconds 6 --write-pct 50 --fill >"$T/fg.log" 2>&1 &
fg=$!
wait_vm stopper
sleep 2
shm=$(stat stopper shm_bytes)
disk=$(stat stopper disk.bytes)
[ $((shm + disk)) -gt $((32 << 20)) ] || fail "expected most of the guest tiered, got $shm+$disk"
[ "$disk" -gt 0 ] || fail "expected pages on disk"
kill -TERM "$DAEMON_PID"
wait "$DAEMON_PID" || fail "daemon exited non-zero on SIGTERM"
DAEMON_PID=
grep -q "every page is back in guest RAM" "$T/daemon.log" || fail "no release logged"
wait $fg || fail "fake guest failed after the daemon stopped: $(cat "$T/fg.log")"
cat "$T/fg.log"
echo "PASS: $((shm >> 20)) MiB in shm and $((disk >> 20)) MiB on disk when the daemon stopped;" \
	"nothing lost"
