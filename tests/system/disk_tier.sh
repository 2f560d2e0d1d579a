# The disk tier under a fake guest: 4 threads over 96 MiB with 4 MiB resident, a 8 MiB shm
# tier and a 256 MiB disk tier, so runs are evicted to shm, demoted to disk past the shm
# high watermark, and faulted back from both. Every byte is verified; stats must show pages
# served from both tiers, demotions, and no I/O error. 3% of operations discard a page as
# QEMU does (punch + MADV_DONTNEED): it must read zero after, from whichever tier it was in.
. "$(dirname "$0")/lib.bash"
cat >"$T/p.conf" <<CONF
[memory]
resident_max = 4M
[shm]
max = 8M
high_watermark = 80
low_watermark = 50
[disk]
path = $T/%n.swap
max = 256M
CONF
start_daemon
fakeguest disky "$T/p.conf" --mb 96 --threads 4 --seconds 8 --write-pct 40 --hot-pct 50 --fill \
	--discard-pct 3 ||
	fail "fake guest saw wrong bytes"
"$BUILD/uffdctl" --socket "$SOCK" stats
[ "$(stat disky disk.demote_pages)" -gt 1000 ] || fail "too few demotions"
[ "$(stat disky faults.disk)" -gt 100 ] || fail "too few faults served from disk"
[ "$(stat disky faults.shm)" -gt 100 ] || fail "too few faults served from shm"
[ "$(stat disky faults.errors)" -eq 0 ] || fail "fault errors"
[ "$(stat disky disk.read_errors)" -eq 0 ] || fail "read errors"
[ "$(stat disky removes.pages)" -gt 10 ] || fail "too few discards seen"
[ ! -e "$T/disky.swap" ] || fail "the swap file has a name (it is unlinked once open)"
echo "PASS: $(stat disky disk.demote_pages) pages demoted, $(stat disky faults.disk) disk faults" \
	"($(stat disky faults.disk_pages) pages), $(stat disky faults.shm) shm faults"
