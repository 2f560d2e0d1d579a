#!/bin/sh
# Builds the Debian package (dpkg-buildpackage -b -us -uc) from a scratch copy of the tree's
# files (those git tracks, plus new ones it does not ignore; or the whole tree less build/ when
# it is not a git checkout), so that neither the tree nor build/ changes. Puts the .deb and
# the .buildinfo/.changes in OUTDIR. Needs the Build-Depends of debian/control
# (scripts/install-deps.sh installs them).
#   scripts/build-deb.sh OUTDIR
set -eu
out=${1:?usage: $0 OUTDIR}
src=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$out"
out=$(cd "$out" && pwd)
scratch=$(mktemp -d /tmp/uffd-mgr-deb.XXXXXX)
trap 'rm -rf "$scratch"' EXIT
mkdir "$scratch/uffd-mgr"

if git -C "$src" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
	# Deleted but not yet committed files are listed and missing: skip them.
	git -C "$src" ls-files -z --cached --others --exclude-standard |
		(cd "$src" && xargs -0 sh -c 'for f; do [ -e "$f" ] && printf "%s\0" "$f"; done' sh) |
		(cd "$src" && cpio -0 -pdm --quiet "$scratch/uffd-mgr")
else
	(cd "$src" && tar --exclude=./build --exclude='./build-*' -cf - .) |
		(cd "$scratch/uffd-mgr" && tar -xf -)
fi

cd "$scratch/uffd-mgr"
unset BUILD SAN V # the Makefile's variables: the copy builds in its own build/
dpkg-checkbuilddeps
dpkg-buildpackage -b -us -uc >"$scratch/build.log" 2>&1 || {
	tail -n 40 "$scratch/build.log" >&2
	echo "build-deb: dpkg-buildpackage failed (above: the end of its log)" >&2
	exit 1
}
mv "$scratch"/*.deb "$scratch"/*.buildinfo "$scratch"/*.changes "$out"/
ls "$out"/*.deb
