# Daemon crashes harm no guest: a fake guest reads and writes seeded patterns over 96 MiB, most
# of it in the shm and disk tiers, while uffd-mgrd is killed with SIGKILL 20 times at random
# moments (mid-eviction, mid-demotion, mid-fault: the evictor never rests at resident_max = 8M)
# and started again each time as systemd would, and once upgraded in place with uffdctl
# upgrade. Each time the shim resumes the VM and the new daemon adopts it. The fake guest checks
# every page it reads and every page at the end; stats must show 21 adoptions, counters that
# went on across them, and no fault errors. KILLS=N changes the number of kills (make stress
# runs 300). COMPRESS=lz4|zstd gives the VM a compressed shm tier and pages of mixed
# compressibility (daemon_kill_zshm.sh), RUN_SIZE its run_size (64K), TRACKER its tracker mode
# (ebpf).
. "$(dirname "$0")/lib.bash"
cat >"$T/kill.conf" <<CONF
[memory]
resident_max = 8M
run_size = ${RUN_SIZE:-64K}
[shm]
max = 24M
compress = ${COMPRESS:-off}
[tracker]
mode = ${TRACKER:-ebpf}
[disk]
path = $T/%n.swap
max = 256M
CONF
kills=${KILLS:-20}
upgrade_at=$((kills / 2 + 1))
start_daemon
content=random
[ "${COMPRESS:-off}" = off ] || content=mixed
fakeguest crashy "$T/kill.conf" --mb 96 --threads 4 --seconds $((kills * 3 + 60)) --write-pct 40 --hot-pct 60 \
	--discard-pct 1 --content $content >"$T/fg.log" 2>&1 &
# (--seconds is only a bound: the fake guest stops when told, below)
fg=$!
wait_vm crashy
for i in $(seq 1 $((kills + 1))); do
	sleep "$(printf '0.%03d' $((RANDOM % 800 + 200)))"
	evicted=$(stat crashy evictions.pages)
	if [ "$i" -eq "$upgrade_at" ]; then
		"$BUILD/uffdctl" --socket "$SOCK" upgrade || fail "uffdctl upgrade failed"
	else
		kill_and_restart_daemon
	fi
	wait_adoptions crashy "$i"
	[ "$(stat crashy evictions.pages)" -ge "$evicted" ] || fail "counters went back after adoption $i"
	echo "adoption $i: $(grep -c . "$T/daemon.log") log lines; shm $(($(stat crashy shm_bytes) >> 20)) MiB," \
		"disk $(($(stat crashy disk.bytes) >> 20)) MiB, last pause $(stat crashy restarts.last_pause_ms) ms"
done
pkill -USR1 -P $fg # the run is over: the fake guest checks every page and exits
wait $fg || fail "the fake guest lost data across daemon restarts: $(grep -v "^uffd-qemu: \(resumed\|uffd-mgrd went\)" "$T/fg.log" | tail -5)"
tail -3 "$T/fg.log"
grep -q "FAKEGUEST PASS" "$T/fg.log" || fail "no PASS from the fake guest"
[ "$(stat crashy faults.errors)" -eq 0 ] || fail "fault errors"
[ "$(stat crashy restarts.adoptions)" -eq $((kills + 1)) ] || fail "expected $((kills + 1)) adoptions"
if [ "${COMPRESS:-off}" != off ]; then
	[ "$(stat crashy zshm.compress)" = "$COMPRESS" ] || fail "the shm tier is not $COMPRESS any more"
	[ "$(stat crashy zshm.blobs)" -gt 1000 ] || fail "too few compressed runs"
	[ "$(stat crashy zshm.errors)" -eq 0 ] || fail "damaged blobs"
	echo "compressed shm tier ($COMPRESS): $(stat crashy zshm.blobs) blobs," \
		"$(stat crashy zshm.raw_blobs) raw; adoptions found $(grep -o '([0-9]* compressed)' \
		"$T/daemon.log" | tr -d '()' | awk '{s += $1} END {print s + 0}') compressed pages in all"
fi
settled=$(grep -o '[0-9]* entries settled' "$T/daemon.log" | awk '{s += $1} END {print s + 0}')
echo "PASS: $kills kills and 1 upgrade, every byte verified; $settled page entries were in flight" \
	"at a kill; max pause $(stat crashy restarts.max_pause_ms) ms"
