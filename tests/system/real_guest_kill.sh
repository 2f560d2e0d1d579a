# A real Linux guest lives through uffd-mgrd being killed: a 512 MiB guest runs memstress over
# 256 MiB (grow, verify, shrink, verify, regrow, verify, 5 times) with resident_max = 32M, a
# 32 MiB shm tier and a disk tier for the rest, so the evictor and the demoter never rest.
# Meanwhile the daemon is killed with SIGKILL 4 times at random moments and started again each
# time; QEMU's shim resumes the VM and the new daemon adopts it. memstress must PASS (it checks
# every byte it wrote), and after each adoption the stats must show the tiered bytes carried
# over and the adoption counted.
. "$(dirname "$0")/lib.bash"
cat >"$T/guest.conf" <<CONF
[vm]
name = phoenix
[memory]
resident_max = 32M
[shm]
max = 32M
[disk]
path = $T/%n.swap
max = 1G
CONF
# On failure, say what the guest and QEMU said.
trap 'rc=$?; set +e; [ $rc -eq 0 ] || { echo "--- guest and QEMU (last 25 lines) ---"; tail -n 25 "$T/guest.out" "$T/console.log" 2>/dev/null; }; (exit $rc); cleanup' EXIT
start_daemon
run_memstress_guest grow,verify,shrink:64,verify,regrow,verify,loop:5 >"$T/guest.out" 2>&1 &
guest=$!
wait_vm phoenix
for i in 1 2 3 4; do
	sleep "$((RANDOM % 3 + 1)).$((RANDOM % 10))"
	kill -0 $guest 2>/dev/null || fail "the guest finished before kill $i: make its run longer"
	tiered=$(($(stat phoenix shm_bytes) + $(stat phoenix disk.bytes)))
	kill_and_restart_daemon
	wait_adoptions phoenix "$i"
	after=$(($(stat phoenix shm_bytes) + $(stat phoenix disk.bytes)))
	echo "kill $i: $((tiered >> 20)) MiB tiered before, $((after >> 20)) MiB after adoption," \
		"pause $(stat phoenix restarts.last_pause_ms) ms"
	[ "$tiered" -lt $((8 << 20)) ] || [ "$after" -gt 0 ] || fail "the tiers came back empty"
done
wait $guest || fail "guest run failed: $(tail -n 25 "$T/guest.out")"
grep -a "MEMSTRESS" "$T/guest.out"
grep -aq "MEMSTRESS PASS" "$T/guest.out" || fail "memstress did not pass"
[ "$(stat phoenix faults.errors)" -eq 0 ] || fail "fault errors"
grep "adopted" "$T/daemon.log" | sed 's/^/  /'
echo "PASS: 4 kills, memstress verified every byte; $(stat phoenix faults.disk) disk faults," \
	"$(stat phoenix faults.shm) shm faults in all"
