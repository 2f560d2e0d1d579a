#!/bin/bash
# Boots the test guest (make guest) under QEMU, bounded in time, and judges it by the
# MEMSTRESS verdict that memstress prints on the serial console. See --help.
set -eu

me=run-guest
die() {
	echo "$me: $*" >&2
	exit 2
}

usage() {
	cat <<EOF
usage: $me [options] [-- extra qemu args]
Boots build/guest/{vmlinuz,initramfs.cpio.gz} with qemu-system-x86_64 (KVM if it works,
else TCG), waits for the guest to power itself off, and keeps the serial console in a log.

  --mem SIZE          guest RAM, as QEMU's -m takes it (default 512M)
  --timeout SECONDS   kill QEMU and its process group after this long (default 300)
  --log FILE          serial console log (default BUILD/console.log)
  --build DIR         folder with vmlinuz and initramfs.cpio.gz (default <repo>/build/guest)
  --append "ARGS"     more kernel arguments, e.g. "memstress.mb=256 memstress.phases=grow,verify"
                      (memstress.mb, memstress.seed, memstress.phases; see memstress --help)
  --wrapper "CMD"     command put before qemu-system-x86_64, split on spaces, e.g.
                      --wrapper "build/uffd-qemu --policy vm.conf --"
  --accel auto|kvm|tcg
                      auto (default): KVM, falling back to TCG, when the host has hardware
                      virtualisation (vmx/svm) and a usable /dev/kvm; else plain TCG
  --verbose           also copy the console to stdout while the guest runs
  -h, --help          this text

The QEMU command line stays plain (-m SIZE, -kernel, -initrd, -append; no memory backend)
so that a wrapper can rewrite it. \$QEMU overrides the binary name.

Exit status: 0 the log has 'MEMSTRESS PASS'; 1 it has 'MEMSTRESS FAIL' or QEMU ended without
a verdict; 124 timeout (QEMU and everything in its process group were killed); 2 usage error.
EOF
}

root=$(cd "$(dirname "$0")/../.." && pwd)
mem=512M
timeout=300
log=
build=$root/build/guest
append=
wrapper=
accel=auto
verbose=0

need_arg() {
	[ $# -ge 2 ] || die "$1 needs a value (see --help)"
}

while [ $# -gt 0 ]; do
	case $1 in
	--mem) need_arg "$@"; mem=$2; shift 2 ;;
	--timeout) need_arg "$@"; timeout=$2; shift 2 ;;
	--log) need_arg "$@"; log=$2; shift 2 ;;
	--build) need_arg "$@"; build=$2; shift 2 ;;
	--append) need_arg "$@"; append=$2; shift 2 ;;
	--wrapper) need_arg "$@"; wrapper=$2; shift 2 ;;
	--accel) need_arg "$@"; accel=$2; shift 2 ;;
	--verbose) verbose=1; shift ;;
	-h | --help) usage; exit 0 ;;
	--) shift; break ;;
	*) die "unknown argument '$1' (see --help)" ;;
	esac
done

case $timeout in
'' | *[!0-9]*) die "--timeout wants whole seconds, got '$timeout'" ;;
esac
if [ ! -f "$build/vmlinuz" ] || [ ! -f "$build/initramfs.cpio.gz" ]; then
	die "no vmlinuz/initramfs.cpio.gz in $build (run 'make guest')"
fi
case $accel in
auto)
	# A /dev/kvm without vmx/svm is a software KVM (this kind of sandbox has kvm_pvm),
	# which runs only guests built for it: a stock kernel hangs there, so use TCG.
	if [ -r /dev/kvm ] && [ -w /dev/kvm ] && grep -qwE 'vmx|svm' /proc/cpuinfo; then
		accel=kvm:tcg
	else
		accel=tcg
	fi
	;;
kvm) accel=kvm:tcg ;;
tcg) ;;
*) die "--accel wants auto, kvm or tcg, got '$accel'" ;;
esac
[ -n "$log" ] || log=$build/console.log
mkdir -p "$(dirname "$log")"
rm -f "$log"
qemu=${QEMU:-qemu-system-x86_64}
command -v "$qemu" >/dev/null || die "$qemu not found (apt-get install qemu-system-x86)"

# loglevel=4 keeps kernel chatter from interleaving with MEMSTRESS lines; panic=-1 reboots
# at once on a panic and -no-reboot turns that into QEMU exiting.
kargs="console=ttyS0 panic=-1 loglevel=4 $append"
# QEMU's option parser takes ',,' for a literal comma in a path.
chardev="file,id=con0,path=${log//,/,,}"

# shellcheck disable=SC2206 # the wrapper is a command line: split it on spaces
cmd=($wrapper "$qemu" -machine "accel=$accel" -nographic -no-reboot -smp 1 -m "$mem"
	-kernel "$build/vmlinuz" -initrd "$build/initramfs.cpio.gz" -append "$kargs"
	-chardev "$chardev" -serial chardev:con0 -monitor none -nic none "$@")

# timeout(1) puts itself and QEMU in a new process group and kills that whole group, so a
# wrapper's children go too; our own signal handler does the same when we are interrupted.
start=$(date +%s%N)
timeout -k 10 "$timeout" "${cmd[@]}" </dev/null &
tpid=$!
trap 'kill -TERM -- -$tpid 2>/dev/null; wait $tpid; exit 130' INT TERM
tail_pid=
if [ "$verbose" -eq 1 ]; then
	tail -n +1 -F --pid=$tpid "$log" 2>/dev/null &
	tail_pid=$!
fi

rc=0
wait $tpid || rc=$?
trap - INT TERM
[ -z "$tail_pid" ] || wait "$tail_pid" || true
ms=$((($(date +%s%N) - start) / 1000000))
secs=$(printf '%d.%01d' $((ms / 1000)) $((ms % 1000 / 100)))

# 137: timeout's -k had to KILL; anything else is QEMU's own status.
if [ "$rc" -eq 124 ] || { [ "$rc" -eq 137 ] && [ "$ms" -ge $((timeout * 1000)) ]; }; then
	echo "$me: TIMEOUT after ${secs}s (log: $log)" >&2
	exit 124
fi
# No '^': a stray kernel message may share the line. A FAIL anywhere outweighs a PASS.
verdict=$(grep -a -m1 -o 'MEMSTRESS FAIL.*' "$log" 2>/dev/null | tr -d '\r' || true)
if [ -z "$verdict" ] && grep -aq 'MEMSTRESS PASS' "$log" 2>/dev/null; then
	echo "$me: PASS in ${secs}s (log: $log)" >&2
	exit 0
fi
[ -n "$verdict" ] || verdict="no MEMSTRESS verdict, qemu exit status $rc"
echo "$me: FAIL in ${secs}s: $verdict (log: $log)" >&2
exit 1
