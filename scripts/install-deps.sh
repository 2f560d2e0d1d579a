#!/bin/sh
# Installs the Debian 12 packages uffd-mgr needs to build, test, package and demo, and only those
# that are missing, so a second run costs one dpkg query. Run as root (make calls it).
set -eu

PKGS="build-essential pkg-config clang llvm libclang-rt-14-dev bpftool libbpf-dev libelf-dev zlib1g-dev
liburing-dev libcmocka-dev libjson-c-dev libinih-dev libncurses-dev liblz4-dev libzstd-dev
qemu-system-x86 busybox-static cpio xz-utils zstd kmod
fio gnuplot-nox e2fsprogs util-linux
debhelper man-db prometheus tmux curl"

missing=""
for p in $PKGS; do
	st=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
	[ "$st" = "installed" ] || missing="$missing $p"
done

if [ -z "$missing" ]; then
	exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
	echo "install-deps: missing Debian packages:$missing; run 'sudo $0' (needs root)" >&2
	exit 1
fi

echo "install-deps: installing:$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing >/dev/null
echo "install-deps: done"
