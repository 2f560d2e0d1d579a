# Bad input gets one clear line and a non-zero exit, and harms no running guest: a broken
# policy (file:line), QEMU command lines the manager cannot serve, no daemon, a second
# registration of a VM name or of the same memory, a resume of a VM the daemon serves or with
# a state of another version or cut short, a second daemon on a socket. A fake guest
# runs under the daemon throughout and must still verify every byte at the end.
. "$(dirname "$0")/lib.bash"


printf '[memory]\nresident_max = 8M\n[shm]\nmax = 64M\n[disk]\npath = %s\nmax = 64M\n' \
	"$T/shared.swap" >"$T/good.conf"
printf '[memory]\nresident_max = 8M\n' >"$T/plain.conf"
printf '[memory]\nresident_max = 8M\n\n[shm]\nmax = 12Q\n' >"$T/bad.conf"
printf '[memory]\nresident_mx = 8M\n' >"$T/typo.conf"
printf '[tracker]\nmode = ebfp\n' >"$T/mode.conf"
Q="qemu-system-x86_64 -nographic -m 128M"

start_daemon
fakeguest victim "$T/good.conf" --mb 32 --threads 2 --seconds 12 >"$T/victim.log" 2>&1 &
victim=$!
sleep 1

expect 2 "bad.conf:5: .*size" "$BUILD/uffd-qemu" --policy "$T/bad.conf" --socket "$SOCK" -- $Q
expect 2 "typo.conf:2: unknown key 'resident_mx'" "$BUILD/uffd-qemu" --policy "$T/typo.conf" -- $Q
expect 2 "mode.conf:2: \\[tracker\\] mode must be one of ebpf\\|sample\\|off" "$BUILD/uffd-qemu" \
	--policy "$T/mode.conf" -- $Q
expect 2 "bad --budget 'lots'" "$BUILD/uffd-mgrd" --socket "$T/other.sock" --budget lots
expect 2 "nonexistent.conf: No such file" "$BUILD/uffd-qemu" --policy "$T/nonexistent.conf" -- $Q
expect 2 "mem-path" "$BUILD/uffd-qemu" --socket "$SOCK" -- $Q -mem-path /dev/hugepages
expect 2 "memory-backend-file" "$BUILD/uffd-qemu" --socket "$SOCK" -- $Q \
	-object memory-backend-file,id=m,size=128M,mem-path=/tmp/x -machine memory-backend=m
expect 2 "vhost-user" "$BUILD/uffd-qemu" --socket "$SOCK" -- $Q \
	-chardev socket,id=c,path=/tmp/vu.sock -netdev vhost-user,id=n,chardev=c
expect 2 "cache=none means O_DIRECT.*use cache=writeback" "$BUILD/uffd-qemu" --socket "$SOCK" -- $Q \
	-drive file="$T/disk.img",if=virtio,cache=none
expect 2 "file.aio=native needs O_DIRECT" "$BUILD/uffd-qemu" --socket "$SOCK" -- $Q -blockdev \
	'{"driver":"raw","node-name":"d0","file":{"driver":"file","filename":"x.img","aio":"native"}}'
expect 2 "vhost-scsi-pci is not supported" "$BUILD/uffd-qemu" --socket "$SOCK" -- $Q \
	-device vhost-scsi-pci,wwpn=naa.5001405df3e54061
expect 2 "unknown QEMU option '-frobnicate'" "$BUILD/uffd-qemu" --socket "$SOCK" -- $Q -frobnicate
expect 1 "no uffd-mgrd answers" "$BUILD/uffd-qemu" --no-start --socket "$T/none.sock" -- $Q
expect 1 "no uffd-mgrd answers" "$BUILD/uffdctl" --socket "$T/none.sock" stats
expect 1 "no uffd-mgrd answers at $T/none.sock" env UFFD_MGR_SOCKET="$T/none.sock" \
	UFFD_MGR_VM=x LD_PRELOAD="$BUILD/libuffd-shim.so" "$BUILD/tests/fakeguest" --seconds 0
expect 1 "refused.*a VM of this name is already registered as vm 'victim'" fakeguest victim \
	"$T/good.conf" --mb 8 --seconds 0
# A broken or hostile shim's resume: of a VM this daemon serves, with a state of another
# version, with a truncated state. Each is refused before the daemon touches the guest.
expect 1 "refused.*vm 'victim'.*refusing a second resume" \
	"$BUILD/tests/ctlclient" "$SOCK" dup-resume victim
expect 1 "refused.*state is version [0-9]+, this uffd-mgrd reads version [0-9]+" \
	"$BUILD/tests/ctlclient" "$SOCK" bad-version ghost
expect 1 "refused.*state is truncated" "$BUILD/tests/ctlclient" "$SOCK" truncated ghost
# Two VMs naming one [disk] path each get a swap file of their own (nameless once open).
fakeguest other "$T/good.conf" --mb 8 --seconds 0 >"$T/other.log" 2>&1 ||
	fail "a second VM on the same [disk] path was refused: $(cat "$T/other.log")"
[ ! -e "$T/shared.swap" ] || fail "a swap file kept its name"
echo "ok: a second VM on the same [disk] path runs with a swap file of its own"
expect 1 "a second mapping of guest RAM" fakeguest twice "$T/plain.conf" --mb 8 --map-twice
expect 1 "refused.*bad.conf:5:" fakeguest badpol "$T/bad.conf" --mb 8 --seconds 0
expect 1 "another uffd-mgrd \(pid [0-9]+\) already serves" "$BUILD/uffd-mgrd" --socket "$SOCK"
expect 2 "unexpected argument" "$BUILD/uffd-mgrd" --socket "$SOCK" extra

wait $victim || fail "the running fake guest lost data: $(cat "$T/victim.log")"
echo "running guest unharmed: $(cat "$T/victim.log")"
