# A real Linux guest (Debian's kernel, busybox initramfs, memstress) with 512 MiB of RAM boots
# through uffd-qemu under a host-wide uffd-mgrd with resident_max = 64M. memstress writes
# 256 MiB with a seeded pattern, verifies it, shrinks to 64 MiB, verifies, regrows and
# verifies again: four times the resident limit, so most of it lives in the shm tier and comes
# back through faults. The guest must print MEMSTRESS PASS, and the daemon's stats must show
# evictions, faults served from the shm tier, no fault errors.
. "$(dirname "$0")/lib.bash"
cat >"$T/guest.conf" <<'CONF'
[vm]
name = memstress
[memory]
resident_max = 64M
[shm]
max = 512M
CONF
start_daemon
run_memstress_guest
[ "$(stat memstress evictions.pages)" -gt 32768 ] || fail "expected more than 128 MiB evicted"
[ "$(stat memstress faults.shm)" -gt 1000 ] || fail "expected faults served from the shm tier"
[ "$(stat memstress faults.errors)" -eq 0 ] || fail "fault errors"
echo "PASS: $(stat memstress evictions.pages) pages evicted, $(stat memstress faults.shm)" \
	"shm faults bringing back $(stat memstress faults.shm_pages) pages"
