# What a product build must not carry, and files it must never clobber: the daemon has no
# fault-injection hooks (they live in build/tests/uffd-mgrd-hooks only); the shim that goes
# into every QEMU exports only the libc functions it interposes; a [disk] path that is a
# symbolic link, or has a second name, is refused with one line and its target keeps every
# byte. A fake guest runs under the daemon throughout and must stay unharmed.
. "$(dirname "$0")/lib.bash"

inject=$(strings "$BUILD/uffd-mgrd" | grep -c UFFD_MGR_INJECT || true)
[ "$inject" -eq 0 ] || fail "the product daemon carries $inject fault-injection strings"
strings "$BUILD/tests/uffd-mgrd-hooks" | grep -q UFFD_MGR_INJECT_DISK ||
	fail "the test daemon lost its disk injection"
echo "ok: no injection hook in $BUILD/uffd-mgrd"

exported=$(nm -D --defined-only "$BUILD/libuffd-shim.so" | awk '{print $3}' | sort | tr '\n' ' ')
[ "$exported" = "fallocate fallocate64 mmap mmap64 " ] ||
	fail "the shim exports more than it interposes: $exported"
echo "ok: the shim exports $exported"

printf 'keep these bytes\n' >"$T/precious"
ln -s "$T/precious" "$T/link.swap"
ln "$T/precious" "$T/second-name.swap"
printf '[memory]\nresident_max = 8M\n[disk]\npath = %s\nmax = 64M\n' "$T/link.swap" >"$T/link.conf"
printf '[memory]\nresident_max = 8M\n[disk]\npath = %s\nmax = 64M\n' "$T/second-name.swap" \
	>"$T/hard.conf"
printf '[memory]\nresident_max = 8M\n' >"$T/plain.conf"
start_daemon
fakeguest bystander "$T/plain.conf" --mb 32 --threads 2 --seconds 6 >"$T/bystander.log" 2>&1 &
bystander=$!
wait_vm bystander
expect 1 "refused.*link.swap: open: a symbolic link, which is never followed" fakeguest \
	linked "$T/link.conf" --mb 8 --seconds 0
expect 1 "refused.*second-name.swap: open: it has other names" fakeguest hard "$T/hard.conf" \
	--mb 8 --seconds 0
[ "$(cat "$T/precious")" = "keep these bytes" ] || fail "the link's target was changed"
echo "ok: the link's target kept every byte"
wait $bystander || fail "the running fake guest lost data: $(cat "$T/bystander.log")"
echo "PASS: running guest unharmed: $(tail -n 1 "$T/bystander.log")"
