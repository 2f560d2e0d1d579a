#!/bin/sh
# Usage: mkinitramfs.sh OUT.cpio.gz STAGING_DIR KERNEL_DIR INIT MEMSTRESS MODULE...
# Builds the test guest's initramfs in STAGING_DIR (wiped first): static busybox with its
# applet links, INIT as /init, MEMSTRESS as /bin/memstress, and each MODULE from the unpacked
# kernel package in KERNEL_DIR with its dependencies (modinfo -F depends), decompressed, in
# /lib/modules with a load.order that lists dependencies first (the guest has no modprobe
# data, init insmods in that order). A module missing from the kernel is a warning: the guest
# still boots and init says the balloon is unavailable.
set -eu

me=mkinitramfs
die() {
	echo "$me: $*" >&2
	exit 1
}

[ $# -ge 5 ] || die "usage: $0 OUT.cpio.gz STAGING_DIR KERNEL_DIR INIT MEMSTRESS MODULE..."
out=$1
stage=$2
kdir=$3
init=$4
memstress=$5
shift 5

# Busybox ($BUSYBOX, else the one on PATH) must be the static build: the initramfs has no libc.
bb=${BUSYBOX:-$(command -v busybox || true)}
[ -n "$bb" ] || die "busybox not found (apt-get install busybox-static)"
if LC_ALL=C readelf -l "$bb" 2>/dev/null | grep -q INTERP; then
	die "$bb is dynamically linked (apt-get install busybox-static)"
fi

rm -rf "$stage"
mkdir -p "$stage/bin" "$stage/lib/modules"
for d in dev proc sys tmp root etc; do
	mkdir -p "$stage/$d"
done
cp "$bb" "$stage/bin/busybox"
for applet in $("$bb" --list-full); do
	case $applet in
	*/busybox | linuxrc) continue ;;
	esac
	mkdir -p "$stage/$(dirname "$applet")"
	ln -sf /bin/busybox "$stage/$applet"
done
cp "$init" "$stage/init"
chmod 755 "$stage/init"
cp "$memstress" "$stage/bin/memstress"

# Echoes the path of module $1 in the kernel package ('-' and '_' are the same to modprobe).
find_module() {
	alt=$(echo "$1" | tr _ -)
	find "$kdir/lib/modules" \( -name "$1.ko*" -o -name "$alt.ko*" \) -print | head -n 1
}

# Copies module $1 after its dependencies, once; appends it to load.order.
add_module() {
	grep -qx "$1" "$stage/lib/modules/load.order" 2>/dev/null && return 0
	ko=$(find_module "$1")
	if [ -z "$ko" ]; then
		echo "$me: warning: module $1 not in $kdir" >&2
		return 0
	fi
	for dep in $(modinfo -F depends "$ko" | tr , ' '); do
		add_module "$dep"
	done
	# $ko was clobbered by the recursion: look it up again.
	ko=$(find_module "$1")
	case $ko in
	*.ko.xz) xz -dc "$ko" >"$stage/lib/modules/$1.ko" ;;
	*.ko.zst) zstd -qdc "$ko" >"$stage/lib/modules/$1.ko" ;;
	*.ko.gz) gzip -dc "$ko" >"$stage/lib/modules/$1.ko" ;;
	*) cp "$ko" "$stage/lib/modules/$1.ko" ;;
	esac
	echo "$1" >>"$stage/lib/modules/load.order"
}

for m in "$@"; do
	add_module "$m"
done

# Sorted names and root ownership: the archive depends only on its inputs' contents and dates.
(cd "$stage" && find . -mindepth 1 -print | LC_ALL=C sort |
	cpio -o -H newc -R 0:0 --quiet) | gzip -9 -n >"$out.tmp"
mv "$out.tmp" "$out"
