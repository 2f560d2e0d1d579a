# A real Linux guest over three tiers: 512 MiB guest, resident_max = 32M, a 32 MiB shm tier
# and a disk tier for the rest. memstress writes 256 MiB, verifies, shrinks to 64 MiB,
# verifies, regrows and verifies: most of its memory goes through shm to disk and back. The
# guest must pass, and the stats must show pages served from both tiers.
. "$(dirname "$0")/lib.bash"
cat >"$T/guest.conf" <<CONF
[vm]
name = tiers
[memory]
resident_max = 32M
[shm]
max = 32M
[disk]
path = $T/%n.swap
max = 1G
CONF
start_daemon
run_memstress_guest
[ "$(stat tiers faults.shm)" -gt 100 ] || fail "expected faults served from the shm tier"
[ "$(stat tiers faults.disk)" -gt 100 ] || fail "expected faults served from the disk tier"
[ "$(stat tiers faults.errors)" -eq 0 ] || fail "fault errors"
echo "PASS: $(stat tiers faults.shm) shm faults, $(stat tiers faults.disk) disk faults," \
	"$(stat tiers disk.demote_pages) pages demoted"
