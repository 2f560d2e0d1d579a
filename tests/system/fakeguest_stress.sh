# Fake-guest stress: 4 threads read and write seeded patterns over 96 MiB while the evictor
# holds resident memory to 8 MiB, so most accesses fault a run back from the shm tier and
# writes race evictions (write-protect faults); 2% of operations discard a page as QEMU
# does, which must then read zero. The fake guest verifies every page it reads
# and every page at the end; stats must show evictions, shm faults and no fault errors.
. "$(dirname "$0")/lib.bash"
cat >"$T/fg.conf" <<'CONF'
[memory]
resident_max = 8M
run_size = 64K
[shm]
max = 128M
CONF
start_daemon
fakeguest stress "$T/fg.conf" --mb 96 --threads 4 --seconds 8 --write-pct 40 --hot-pct 60 \
	--discard-pct 2 ||
	fail "fake guest saw wrong bytes"
[ "$(stat stress evictions.pages)" -gt 10000 ] || fail "too few evictions"
[ "$(stat stress faults.shm)" -gt 1000 ] || fail "too few faults served from shm"
[ "$(stat stress faults.errors)" -eq 0 ] || fail "fault errors"
echo "evicted $(stat stress evictions.pages) pages, $(stat stress faults.shm) shm faults," \
	"$(stat stress faults.wp) wp faults"
