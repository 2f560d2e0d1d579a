# One command runs a managed guest: with no daemon at the socket, uffd-qemu starts an
# embedded uffd-mgrd for the VM, the guest (128 MiB, memstress over 48 MiB with a 16 MiB
# resident limit) passes, and the embedded daemon exits once its VM has gone.
. "$(dirname "$0")/lib.bash"
[ -f "$BUILD/guest/vmlinuz" ] || fail "no test guest: run 'make guest'"
printf '[memory]\nresident_max = 16M\n[shm]\nmax = 128M\n' >"$T/small.conf"
rc=0
"$SRC/tests/guest/run-guest.sh" --mem 128M --timeout 200 --log "$T/console.log" \
	--append "memstress.mb=48 memstress.phases=grow,verify" \
	--wrapper "$BUILD/uffd-qemu --policy $T/small.conf --socket $SOCK --name small --" || rc=$?
grep -a MEMSTRESS "$T/console.log" || true
[ $rc -eq 0 ] || fail "guest run failed (exit $rc)"
log=$T/uffd-mgrd-small.log
[ -f "$log" ] || fail "no embedded daemon log at $log"
grep -q "registered pid" "$log" || fail "the embedded daemon did not serve the VM: $(cat "$log")"
for _ in $(seq 50); do
	grep -q "exiting" "$log" && break
	sleep 0.1
done
grep -q "no VM left, exiting" "$log" || fail "embedded daemon did not exit: $(tail -3 "$log")"
for _ in $(seq 50); do # it removes the socket last, after detaching its BPF programs
	[ -S "$SOCK" ] || break
	sleep 0.1
done
[ ! -S "$SOCK" ] || fail "embedded daemon left its socket behind"
echo "PASS: embedded daemon served the guest and exited"
