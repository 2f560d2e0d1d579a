#!/bin/sh
# libvirt-setup: the one-time host set-up for libvirt domains under uffd-mgr (README, "With
# libvirt"). Installed as PREFIX/lib/uffd-mgr/libvirt-setup; run it as root once:
#  - lets libvirt's QEMU register its VMs: allow-group = libvirt-qemu in the daemon's config
#    (/etc/uffd-mgr/uffd-mgrd.conf, or the file given with --config);
#  - makes the operator's policy directory /etc/uffd-mgr/vms (a VM's limits: NAME.conf);
#  - applies it: with systemd, gives the socket unit the same group and reloads the daemon (a
#    live upgrade: running VMs are kept); without, says how to start the daemon.
# Nothing in libvirt's qemu.conf changes: QEMU stays libvirt-qemu in its own /dev and device
# cgroup; uffd-mgrd opens /dev/userfaultfd for it. Running it twice changes nothing more.
set -eu

conf=/etc/uffd-mgr/uffd-mgrd.conf
group=libvirt-qemu
while [ $# -gt 0 ]; do
	case $1 in
	--config) conf=$2; shift 2 ;;
	--group) group=$2; shift 2 ;;
	-h|--help)
		sed -n '2,11s/^# \{0,1\}//p' "$0"
		echo "usage: libvirt-setup [--config FILE] [--group GROUP]"
		exit 0 ;;
	*) echo "libvirt-setup: unknown argument '$1' (try --help)" >&2; exit 2 ;;
	esac
done
[ "$(id -u)" = 0 ] || { echo "libvirt-setup: run as root" >&2; exit 1; }
getent group "$group" >/dev/null ||
	{ echo "libvirt-setup: no group '$group' (is libvirt installed?)" >&2; exit 1; }

mkdir -p "$(dirname "$conf")" /etc/uffd-mgr/vms
if grep -Eq "^[[:space:]]*allow-group[[:space:]]*=[[:space:]]*$group[[:space:]]*$" "$conf" 2>/dev/null; then
	echo "libvirt-setup: $conf already lets group $group register"
else
	printf '# libvirt runs QEMU as %s: let it register its VMs (libvirt-setup)\nallow-group = %s\n' \
		"$group" "$group" >>"$conf"
	echo "libvirt-setup: $conf: allow-group = $group"
fi

if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
	mkdir -p /etc/systemd/system/uffd-mgrd.socket.d
	printf '[Socket]\nSocketGroup=%s\nSocketMode=0660\n' "$group" \
		>/etc/systemd/system/uffd-mgrd.socket.d/libvirt.conf
	systemctl daemon-reload
	if systemctl is-active --quiet uffd-mgrd.service; then
		systemctl reload uffd-mgrd.service # re-reads the config; every VM is kept
		echo "libvirt-setup: uffd-mgrd reloaded with the new settings"
	else
		systemctl enable --now uffd-mgrd.socket uffd-mgrd.service
		echo "libvirt-setup: uffd-mgrd started"
	fi
else
	echo "libvirt-setup: no systemd: start the daemon yourself, e.g. 'uffd-mgrd &' (it reads $conf)"
fi
bindir=$(cd "$(dirname "$0")/../../bin" 2>/dev/null && pwd) || bindir=PREFIX/bin
echo "libvirt-setup: done; name $bindir/uffd-qemu-system-x86_64 in a domain's <emulator>"
