# The Debian package: scripts/build-deb.sh (as make deb) runs dpkg-buildpackage -b -us -uc on
# a scratch copy of the tree; neither the tree's files nor build/ change. The .deb holds exactly
# the paths of the README's Install table (its package column), with the swap directory
# 0700 and the emulator link, depends on the shared libraries it links, and its maintainer
# scripts never stop uffd-mgrd on an upgrade (that would hand every guest back to QEMU
# unmanaged): they reload it, a live upgrade. Installs missing build dependencies through
# scripts/install-deps.sh (under the apt lock) when root, else skips.
. "$(dirname "$0")/lib.bash"
command -v dpkg-buildpackage >/dev/null || skip "no dpkg-buildpackage (dpkg-dev): not Debian?"
if ! (cd "$SRC" && dpkg-checkbuilddeps) 2>"$T/deps"; then
	[ "$(id -u)" -eq 0 ] || skip "build dependencies missing and not root: $(cat "$T/deps")"
	flock /tmp/apt.lock "$SRC/scripts/install-deps.sh" || fail "install-deps.sh failed"
	(cd "$SRC" && dpkg-checkbuilddeps) || fail "build dependencies still missing after install-deps.sh"
fi
before=$(git -C "$SRC" status --porcelain 2>/dev/null || true)
touch "$T/marker"
sleep 0.01

"$SRC/scripts/build-deb.sh" "$T/out" >"$T/build.out" 2>&1 || fail "the package did not build: $(tail -n 30 "$T/build.out")"
deb=$(ls "$T"/out/uffd-mgr_*_amd64.deb 2>/dev/null | head -1)
[ -n "$deb" ] || fail "no uffd-mgr_*.deb in $T/out: $(ls "$T/out")"
echo "ok: built $(basename "$deb") ($(command stat -c %s "$deb") bytes)"

[ "$(git -C "$SRC" status --porcelain 2>/dev/null || true)" = "$before" ] ||
	fail "building the package changed the tree: $(git -C "$SRC" status --porcelain)"
changed=$(find "$BUILD" -path "$BUILD/test-logs" -prune -o -newer "$T/marker" -print | head -5)
[ -z "$changed" ] || fail "building the package changed build/: $changed"
echo "ok: neither the tree nor build/ changed"

# The README's Install table, package column.
sed -n '/^## Install$/,/^## /p' "$SRC/README.md" | grep '^| ' | awk -F'|' '{print $4}' |
	grep -o '`[^`]*`' | tr -d '`' | grep '^/' | sort >"$T/want"
[ "$(wc -l <"$T/want")" -ge 15 ] || fail "the README's Install table lists $(wc -l <"$T/want") package paths"
dpkg-deb -c "$deb" >"$T/contents"
{
	awk '$1 !~ /^d/ {print $6}' "$T/contents" | sed 's|^\.||'
	grep '/$' "$T/want" | while read -r d; do
		awk -v d=".$d" '$1 ~ /^d/ && $6 == d {print substr(d, 2)}' "$T/contents"
	done
} | sort >"$T/got"
diff -u "$T/want" "$T/got" >"$T/diff" ||
	fail "the package's files differ from the README (- README, + package):
$(cat "$T/diff")"
echo "ok: the package holds the $(wc -l <"$T/got") paths of the README's table"

grep -q '^drwx------ root/root .* \./var/lib/uffd-mgr/$' "$T/contents" ||
	fail "/var/lib/uffd-mgr is not 0700 root: $(grep var/lib/uffd-mgr/ "$T/contents")"
grep -q '\./usr/bin/uffd-qemu-system-x86_64 -> uffd-qemu$' "$T/contents" ||
	fail "uffd-qemu-system-x86_64 is not a link to uffd-qemu"
depends=$(dpkg-deb -f "$deb" Depends)
for lib in libjson-c5 libinih1 liburing2 libbpf1; do
	case "$depends" in *"$lib"*) ;; *) fail "Depends lacks $lib: $depends" ;; esac
done
dpkg-deb -x "$deb" "$T/root"
grep -q '^ExecStart=/usr/sbin/uffd-mgrd ' "$T/root/lib/systemd/system/uffd-mgrd.service" ||
	fail "the packaged service does not run /usr/sbin/uffd-mgrd"
dpkg-deb -e "$deb" "$T/ctl"
grep -q 'systemctl reload uffd-mgrd.service' "$T/ctl/postinst" || fail "postinst does not reload uffd-mgrd"
grep -q "deb-systemd-invoke restart" "$T/ctl/postinst" && fail "postinst restarts uffd-mgrd on upgrade"
grep -q 'deb-systemd-invoke stop' "$T/ctl/prerm" && ! grep -q '"$1" = remove' "$T/ctl/prerm" &&
	fail "prerm stops uffd-mgrd on upgrade"
echo "ok: 0700 swap directory, emulator link, Depends: $depends; upgrades reload, never stop"
echo PASS
