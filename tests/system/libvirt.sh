# libvirt runs a domain through uffd-mgr, as an operator would set it up: Debian's libvirt
# (installed here if missing), libvirtd and virtlogd started by this test (and stopped after, if
# it started them), the programs installed by make install into a scratch root, a domain whose
# <emulator> is the installed uffd-qemu-system-x86_64, with libvirt's defaults otherwise: no
# <memoryBacking> (memory-backend-ram), libvirt's balloon (balloon0), QEMU as libvirt-qemu in
# its own mount namespace and device cgroup. The daemon serves the default socket and lets the libvirt-qemu
# group register; the VM's policy is the operator's file by its name, with resident_max 64M.
# The guest runs memstress over 256 MiB and must pass; the daemon must show evictions and the
# guest's statistics from the balloon; virsh dommemstat must answer; virsh destroy ends it.
# Then the same for a two-node NUMA domain (a memory-backend-ram per node): each node's RAM is
# managed as a VM of its own (NAME and NAME.ram-node1), with half the domain's limits.
. "$(dirname "$0")/lib.bash"

BASE=uffd-lv$$
DOM=
SOCK=/run/uffd-mgr/uffd-mgr.sock
STARTED_LIBVIRTD= STARTED_VIRTLOGD=
VIRSH="virsh -q -c qemu:///system"

# Whether pid runs (a zombie does not: a daemonized libvirtd may wait unreaped under a
# container's init).
alive() {
	[ -n "$1" ] && [ -r "/proc/$1/stat" ] && [ "$(awk '{print $3}' "/proc/$1/stat")" != Z ]
}

# The pid a daemon wrote to its pid file, if that process runs.
running_pid() { # pidfile
	local p
	p=$(cat "$1" 2>/dev/null) || return 1
	alive "$p" && echo "$p"
}

lv_cleanup() {
	local rc=$?
	set +e
	if [ -n "$DOM" ]; then
		$VIRSH destroy "$DOM" >/dev/null 2>&1
		$VIRSH undefine "$DOM" >/dev/null 2>&1
	fi
	# Gone before we return: the next run must not find a libvirtd on its way out.
	for p in $STARTED_LIBVIRTD $STARTED_VIRTLOGD; do
		kill "$p" 2>/dev/null
		for _ in $(seq 100); do
			alive "$p" || break
			sleep 0.1
		done
		kill -KILL "$p" 2>/dev/null
	done
	if [ $rc -ne 0 ]; then
		echo "--- libvirt's QEMU log ---"
		tail -n 20 "/var/log/libvirt/qemu/$DOM.log" 2>/dev/null
		echo "--- console ---"
		tail -n 20 "$T/console.log" 2>/dev/null
	fi
	rm -f "/var/log/libvirt/qemu/$BASE.log" "/var/log/libvirt/qemu/$BASE-numa.log"
	(exit $rc)
	cleanup
}
trap lv_cleanup EXIT

[ "$(id -u)" = 0 ] || skip "needs root (libvirtd, the default socket)"
[ -f "$BUILD/guest/vmlinuz" ] || fail "no test guest: run 'make guest'"
if ! command -v libvirtd >/dev/null || ! command -v virsh >/dev/null; then
	echo "installing Debian's libvirt"
	flock /tmp/apt.lock apt-get install -y -qq --no-install-recommends \
		libvirt-daemon-system libvirt-clients >/dev/null 2>&1 ||
		fail "cannot install libvirt-daemon-system and libvirt-clients"
fi
id libvirt-qemu >/dev/null 2>&1 || fail "no libvirt-qemu user after installing libvirt"
if [ -S /run/uffd-mgr/uffd-mgr.sock ] && "$BUILD/uffdctl" --socket "$SOCK" stats >/dev/null 2>&1; then
	skip "a uffd-mgrd already serves $SOCK; this test runs its own there"
fi

# libvirt's daemons, unless they run already (then they are the operator's and stay).
if ! running_pid /run/virtlogd.pid >/dev/null; then
	virtlogd -d
	for _ in $(seq 100); do
		STARTED_VIRTLOGD=$(running_pid /run/virtlogd.pid) && break
		sleep 0.1
	done
fi
if ! running_pid /run/libvirtd.pid >/dev/null; then
	libvirtd -d
	for _ in $(seq 100); do
		STARTED_LIBVIRTD=$(running_pid /run/libvirtd.pid) && break
		sleep 0.1
	done
fi
for _ in $(seq 300); do
	$VIRSH version >/dev/null 2>&1 && break
	sleep 0.1
done
$VIRSH version >/dev/null 2>&1 || fail "libvirtd does not answer"

# The programs, installed by make install into a scratch root libvirt-qemu can read.
D=$T/dest
P=$D/usr
make -s -C "$SRC" install BUILD="$BUILD" DESTDIR="$D" PREFIX=/usr >"$T/install.log" 2>&1 ||
	fail "make install failed: $(tail -3 "$T/install.log")"
[ -x "$P/bin/uffd-qemu-system-x86_64" ] || fail "make install put no uffd-qemu-system-x86_64"
mkdir -p "$T/img" "$T/vms"
cp "$BUILD/guest/vmlinuz" "$BUILD/guest/initramfs.cpio.gz" "$T/img/"
chmod -R a+rX "$D"
chmod 755 "$T" "$T/img"
chmod 644 "$T/img/"*
: >"$T/console.log"
chmod 666 "$T/console.log"

# The operator's policy for the domain, in the daemon's trusted directory.
for d in "$BASE" "$BASE-numa"; do
	cat >"$T/vms/$d.conf" <<'CONF'
[memory]
resident_max = 64M
[shm]
max = 512M
CONF
done
# The documented set-up, into a config of the test's own (no systemd here: it says so).
"$P/lib/uffd-mgr/libvirt-setup" --config "$T/uffd-mgrd.conf" >"$T/setup.log" ||
	fail "libvirt-setup failed: $(cat "$T/setup.log")"
grep -qx "allow-group = libvirt-qemu" "$T/uffd-mgrd.conf" || fail "libvirt-setup wrote no allow-group"
echo "ok: $(tail -1 "$T/setup.log")"
mkdir -p /run/uffd-mgr
"$P/sbin/uffd-mgrd" --config "$T/uffd-mgrd.conf" --socket "$SOCK" --log "$T/daemon.log" \
	--policy-dir "$T/vms" &
DAEMON_PID=$!
wait_socket "$SOCK" || fail "daemon did not start"

# run_domain NAME NUMA(0|1): defines, starts and checks one domain, then destroys it.
run_domain() {
	local numa=$2 cpu="" units
	DOM=$1
	units=$DOM
	if [ "$numa" = 1 ]; then
		cpu="<cpu><numa><cell id='0' cpus='0' memory='256' unit='MiB'/><cell id='1' cpus='1' memory='256' unit='MiB'/></numa></cpu>"
		units="$DOM $DOM.ram-node1"
	fi
	: >"$T/console.log"
	cat >"$T/dom.xml" <<XML
<domain type='qemu'>
  <name>$DOM</name>
  <memory unit='MiB'>512</memory>
  <vcpu>$((numa + 1))</vcpu>
  $cpu
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>$T/img/vmlinuz</kernel>
    <initrd>$T/img/initramfs.cpio.gz</initrd>
    <cmdline>console=ttyS0 panic=-1 loglevel=4 memstress.mb=256 memstress.phases=grow,verify,hold:5,shrink:64,verify,regrow,verify</cmdline>
  </os>
  <on_poweroff>destroy</on_poweroff>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>$P/bin/uffd-qemu-system-x86_64</emulator>
    <serial type='file'><source path='$T/console.log'/><target port='0'/></serial>
    <memballoon model='virtio'/>
  </devices>
</domain>
XML
	$VIRSH define "$T/dom.xml" >/dev/null
	$VIRSH start "$DOM" || fail "virsh start $DOM failed"
	ps -o user=,pid= -C qemu-system-x86_64 | grep -q '^libvirt' ||
		fail "QEMU does not run as libvirt-qemu"
	for u in $units; do
		wait_vm "$u"
	done
	echo "ok: $DOM registered with uffd-mgrd as $(echo $units | wc -w) VM(s): $units"

	# While the guest works: the balloon's statistics reach the planner, dommemstat answers.
	for _ in $(seq 600); do
		grep -aqE "MEMSTRESS (PASS|FAIL)" "$T/console.log" && break
		[ "$(stat "$DOM" plan.guest_available 2>/dev/null || echo 0)" -gt 0 ] && break
		sleep 0.5
	done
	$VIRSH dommemstat "$DOM" >"$T/memstat" || fail "virsh dommemstat failed"
	grep -q actual "$T/memstat" || fail "virsh dommemstat has no 'actual': $(cat "$T/memstat")"
	echo "ok: virsh dommemstat: $(tr '\n' ' ' <"$T/memstat")"

	for _ in $(seq 600); do
		grep -aqE "MEMSTRESS (PASS|FAIL)" "$T/console.log" && break
		sleep 0.5
	done
	grep -aE "MEMSTRESS (PASS|FAIL)" "$T/console.log" || fail "no MEMSTRESS verdict within 300 s"
	grep -aq "MEMSTRESS PASS" "$T/console.log" || fail "memstress failed in $DOM"
	for u in $units; do
		[ "$(stat "$u" evictions.pages)" -gt 4096 ] || fail "$u: expected evictions"
		[ "$(stat "$u" faults.errors)" -eq 0 ] || fail "$u: fault errors"
	done
	[ "$(stat "$DOM" plan.guest_available)" -gt 0 ] ||
		fail "no guest statistics from libvirt's balloon: $(grep -i balloon "$T/daemon.log" | tail -2)"
	echo "ok: $DOM: $(stat "$DOM" evictions.pages) pages evicted," \
		"guest available $(($(stat "$DOM" plan.guest_available) >> 20)) MiB by its balloon"
	"$BUILD/uffdctl" --socket "$SOCK" stats

	$VIRSH destroy "$DOM" >/dev/null 2>&1 || true # it may have powered off already
	for _ in $(seq 100); do
		[ "$(stat "$DOM" state 2>/dev/null)" = running ] || break
		sleep 0.1
	done
	[ "$(stat "$DOM" state 2>/dev/null || echo gone)" != running ] ||
		fail "$DOM still runs after destroy"
	$VIRSH undefine "$DOM" >/dev/null
	echo "ok: $DOM destroyed and undefined"
}

run_domain "$BASE" 0
run_domain "$BASE-numa" 1
echo "PASS: libvirt domains $BASE and $BASE-numa ran under uffd-mgr as libvirt-qemu"
