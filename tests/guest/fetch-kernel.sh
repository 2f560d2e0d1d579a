#!/bin/sh
# Usage: fetch-kernel.sh CACHE_DIR ID_FILE
# Puts Debian's current kernel package (the linux-image-* that linux-image-amd64 depends on,
# or $KERNEL_PKG) into CACHE_DIR, unpacked with dpkg-deb -x and never installed, then writes
# the unpacked folder's path into ID_FILE. ID_FILE is rewritten only when that path changes, so
# make rebuilds the guest only for a new kernel. A cached package is never downloaded again.
# Stale apt lists get one 'apt-get update' and a retry; with no way to resolve the package
# (offline, no lists) the newest kernel already in the cache is used, with a warning.
set -eu

me=fetch-kernel
die() {
	echo "$me: $*" >&2
	exit 1
}

[ $# -eq 2 ] || die "usage: $0 CACHE_DIR ID_FILE"
cache=$1
id_file=$2
updated=0

# Sets pkg to the kernel package and deb to its candidate's file name; fails if apt cannot
# tell. One apt-cache call when the meta package pins the version (this image has no apt
# binary cache, so each call costs about a second).
resolve() {
	deb=
	if [ -n "${KERNEL_PKG:-}" ]; then
		pkg=$KERNEL_PKG
	else
		# "Depends: linux-image-6.1.0-56-amd64 (= 6.1.192-2)" -> pkg, version, arch.
		# shellcheck disable=SC2046 # the words are split on purpose
		set -- $(apt-cache show --no-all-versions linux-image-amd64 2>/dev/null | awk '
			$1 == "Architecture:" { arch = $2 }
			$1 == "Depends:" && $2 ~ /^linux-image-/ {
				pkg = $2; sub(/,$/, "", pkg)
				if ($3 == "(=") { ver = $4; sub(/\).*/, "", ver) }
			}
			END { if (pkg != "") print pkg, ver, arch }')
		[ $# -ge 1 ] || return 1
		pkg=$1
		if [ $# -eq 3 ]; then
			deb=${1}_${2#*:}_$3.deb
			return 0
		fi
	fi
	deb=$(apt-cache show --no-all-versions "$pkg" 2>/dev/null |
		sed -n 's|^Filename: .*/||p' | head -n 1)
	[ -n "$deb" ]
}

# apt-get update, once per run and as root only; a non-root caller is told what to run.
apt_update() {
	[ "$updated" -eq 0 ] || return 1
	updated=1
	if [ "$(id -u)" -ne 0 ]; then
		echo "$me: apt lists look stale or missing; run 'apt-get update' as root" >&2
		return 1
	fi
	echo "$me: refreshing apt lists" >&2
	apt-get update -qq >/dev/null || return 1
}

# Downloads $pkg into the cache as $deb; the temporary folder keeps a half download out.
download() {
	tmp=$(mktemp -d "$cache/.dl.XXXXXX")
	echo "$me: downloading $pkg" >&2
	# Root's apt drops to _apt, which cannot write a root-owned folder: skip that sandbox.
	if (cd "$tmp" && apt-get download -qq -o APT::Sandbox::User=root "$pkg" >/dev/null); then
		mv "$tmp"/*.deb "$cache/$deb"
		rmdir "$tmp"
		return 0
	fi
	rm -rf "$tmp"
	return 1
}

# Newest unpacked kernel in the cache, for runs where apt cannot resolve the package.
newest_cached() {
	find "$cache" -mindepth 2 -maxdepth 2 -path '*/linux-image-*/.unpacked' -printf '%T@ %h\n' |
		sort -nr | head -n 1 | cut -d' ' -f2-
}

mkdir -p "$cache" 2>/dev/null || die "cannot create $cache (set GUEST_CACHE to a writable folder)"
[ -w "$cache" ] || die "$cache is not writable (set GUEST_CACHE to a writable folder)"
exec 9>"$cache/.lock"
flock 9

if ! resolve && apt_update; then
	resolve || true
fi
if [ -z "$deb" ]; then
	dir=$(newest_cached)
	[ -n "$dir" ] || die "cannot resolve ${KERNEL_PKG:-linux-image-amd64} and the cache is empty"
	echo "$me: warning: apt cannot resolve the kernel package; using cached $dir" >&2
else
	if [ ! -f "$cache/$deb" ] && ! download; then
		apt_update || die "apt-get download $pkg failed"
		resolve || die "cannot resolve $pkg after apt-get update"
		[ -f "$cache/$deb" ] || download || die "apt-get download $pkg failed"
	fi
	dir=$cache/${deb%.deb}
	if [ ! -f "$dir/.unpacked" ]; then
		rm -rf "$dir"
		dpkg-deb -x "$cache/$deb" "$dir" || die "dpkg-deb -x $cache/$deb failed"
		touch "$dir/.unpacked"
	fi
fi

ls "$dir"/boot/vmlinuz-* >/dev/null 2>&1 || die "no boot/vmlinuz-* in $dir"
if [ "$(cat "$id_file" 2>/dev/null)" != "$dir" ]; then
	mkdir -p "$(dirname "$id_file")"
	echo "$dir" >"$id_file.tmp"
	mv "$id_file.tmp" "$id_file"
fi
