# Embedded mode outlives its daemon: when uffd-qemu started the daemon (no service ran), nobody
# else restarts it, so the shim does. A fake guest runs as uffd-qemu would start it (with
# UFFD_MGR_DAEMON and UFFD_MGR_DAEMON_LOG); its daemon is killed with SIGKILL 3 times and not
# started again by the test. Each time the shim must start one after 0.5 s without an answer,
# and resume the VM with it; the fake guest checks every byte.
. "$(dirname "$0")/lib.bash"
trap 'rc=$?; set +e; for p in $(pgrep -f "uffd-mgrd --socket $SOCK"); do kill -KILL "$p"; done; (exit $rc); cleanup' EXIT
cat >"$T/emb.conf" <<CONF
[memory]
resident_max = 8M
run_size = 64K
[shm]
max = 16M
[disk]
path = $T/%n.swap
max = 128M
CONF
start_daemon --embedded
UFFD_MGR_DAEMON=$BUILD/uffd-mgrd UFFD_MGR_DAEMON_LOG=$T/daemon.log \
	fakeguest lonely "$T/emb.conf" --mb 64 --threads 2 --seconds 300 --write-pct 40 \
	--discard-pct 1 >"$T/fg.log" 2>&1 &
fg=$!
wait_vm lonely
for i in 1 2 3; do
	sleep "0.$((RANDOM % 9 + 1))"
	pid=$(pgrep -f "uffd-mgrd --socket $SOCK" | head -n 1)
	[ -n "$pid" ] || fail "no daemon to kill"
	kill -KILL "$pid"
	[ "$pid" != "$DAEMON_PID" ] || { wait "$DAEMON_PID" 2>/dev/null || true; DAEMON_PID=; }
	wait_adoptions lonely "$i"
	echo "kill $i: the shim started a daemon again; pause $(stat lonely restarts.last_pause_ms) ms"
done
pkill -USR1 -P $fg
wait $fg || fail "the fake guest lost data: $(grep -v '^uffd-qemu: ' "$T/fg.log" | tail -5)"
grep -c "starts .*uffd-mgrd again" "$T/daemon.log" | grep -qx 3 || fail "expected 3 restarts by the shim"
# The last daemon is embedded: it leaves once its VM has gone.
for _ in $(seq 50); do pgrep -f "uffd-mgrd --socket $SOCK" >/dev/null || break; sleep 0.1; done
pgrep -f "uffd-mgrd --socket $SOCK" >/dev/null && fail "the embedded daemon did not exit after its VM"
tail -n 1 "$T/fg.log"
echo "PASS: 3 kills, the shim restarted the daemon each time, every byte verified"
