# make install and make uninstall, checked against the README's Install table: with
# DESTDIR and PREFIX=/usr exactly the files and directories of its `make install` column are
# installed (modes, the emulator link); the installed uffd-qemu finds the installed shim and
# daemon, not the build tree's (its dry run: nothing is started); every man page renders with
# no warning from groff or man, covers every option of its program's --help, and
# uffd-mgr.conf(5) every policy key with its default; the units pass systemd-analyze verify
# (installed under a scratch PREFIX so their paths exist) where systemd is installed; make
# uninstall leaves nothing of ours. The tree's files do not change.
. "$(dirname "$0")/lib.bash"
command -v groff >/dev/null && command -v man >/dev/null || skip "no groff/man (man-db)"
before=$(git -C "$SRC" status --porcelain 2>/dev/null || true)
mk() { make -s --no-print-directory -C "$SRC" BUILD="$BUILD" "$@"; }

# The README's Install table, column 2 (make install) or 3 (package): one path a line.
readme_paths() { # column
	sed -n '/^## Install$/,/^## /p' "$SRC/README.md" | grep '^| ' |
		awk -F'|' -v c=$(($1 + 1)) '{print $c}' | grep -o '`[^`]*`' | tr -d '`' |
		grep -E '^(PREFIX)?/' || true
}

dest=$T/dest
mk install DESTDIR="$dest" PREFIX=/usr
readme_paths 2 | sed 's|^PREFIX|/usr|' | sort >"$T/want"
[ "$(wc -l <"$T/want")" -ge 15 ] || fail "the README's Install table lists $(wc -l <"$T/want") paths"
# What is there: files and links, and directories that are listed (ending in /).
(cd "$dest" && find . ! -type d | sed 's|^\.||') >"$T/got"
grep '/$' "$T/want" | while read -r d; do [ -d "$dest$d" ] && echo "$d"; done >>"$T/got"
sort -o "$T/got" "$T/got"
diff -u "$T/want" "$T/got" >"$T/diff" || fail "installed files differ from the README (- README, + installed):
$(cat "$T/diff")"
echo "ok: make install put the $(wc -l <"$T/got") paths of the README's table"

mode() { command stat -c %a "$dest$1"; }
[ "$(mode /usr/sbin/uffd-mgrd)" = 755 ] && [ "$(mode /usr/bin/uffd-qemu)" = 755 ] ||
	fail "programs are not 0755"
[ "$(mode /usr/lib/uffd-mgr/libuffd-shim.so)" = 644 ] || fail "the shim is not 0644"
[ "$(mode /var/lib/uffd-mgr)" = 700 ] || fail "/var/lib/uffd-mgr is $(mode /var/lib/uffd-mgr), not 700"
[ "$(readlink "$dest/usr/bin/uffd-qemu-system-x86_64")" = uffd-qemu ] ||
	fail "uffd-qemu-system-x86_64 is not a link to uffd-qemu"
grep -q '^ExecStart=/usr/sbin/uffd-mgrd ' "$dest/usr/lib/systemd/system/uffd-mgrd.service" ||
	fail "the installed service does not run /usr/sbin/uffd-mgrd"
grep -q '^ExecReload=/usr/bin/uffdctl ' "$dest/usr/lib/systemd/system/uffd-mgrd.service" ||
	fail "the installed service does not reload with /usr/bin/uffdctl"

# The installed uffd-qemu finds the installed shim and daemon (its dry run starts nothing).
"$dest/usr/bin/uffd-qemu" --dry-run --socket "$T/none.sock" -- qemu-system-x86_64 -m 64 \
	>"$T/dry" 2>&1 || fail "dry run failed: $(cat "$T/dry")"
grep -q "^LD_PRELOAD=$dest/usr/lib/uffd-mgr/libuffd-shim.so " "$T/dry" ||
	fail "the installed uffd-qemu does not preload the installed shim: $(grep LD_PRELOAD "$T/dry")"
grep -q "starts\$" "$T/dry" && grep -q "^#   $dest/usr/sbin/uffd-mgrd --socket" "$T/dry" ||
	fail "the installed uffd-qemu would not start the installed daemon: $(cat "$T/dry")"
mv "$dest/usr/lib/uffd-mgr/libuffd-shim.so" "$T/shim.so"
EXPECT_LOGGED=0 expect 1 "shim libuffd-shim.so is missing from $dest/usr/bin/../lib/uffd-mgr and $dest/usr/bin" \
	"$dest/usr/bin/uffd-qemu" --dry-run --socket "$T/none.sock" -- qemu-system-x86_64 -m 64
mv "$T/shim.so" "$dest/usr/lib/uffd-mgr/libuffd-shim.so"
echo "ok: the installed uffd-qemu preloads $dest/usr/lib/uffd-mgr/libuffd-shim.so"

# Man pages: no warnings; man finds each by name; each covers its program's options.
export MANWIDTH=80
for page in "$dest"/usr/share/man/man*/*; do
	out=$(groff -man -ww -z "$page" 2>&1) && [ -z "$out" ] || fail "groff on $page: $out"
	out=$(man --warnings -l "$page" 2>&1 >/dev/null) && [ -z "$out" ] || fail "man on $page: $out"
	name=$(basename "$page")
	man -M "$dest/usr/share/man" -w "${name%.*}" >/dev/null || fail "man does not find ${name%.*}"
done
nopts=0
for prog in sbin/uffd-mgrd:8 bin/uffdctl:1 bin/uffd-qemu:1; do
	bin=${prog%:*} page=$dest/usr/share/man/man${prog#*:}/$(basename "${prog%:*}").${prog#*:}
	for opt in $("$dest/usr/$bin" --help | grep -oE '^ +(-h, )?--[a-z][a-z-]+' | grep -oE -- '--[a-z-]+' | sort -u); do
		grep -qF -- "\\-\\-${opt#--}" "$page" || fail "$(basename "$page") does not document $opt"
		nopts=$((nopts + 1))
	done
done
[ "$nopts" -ge 20 ] || fail "found only $nopts options in the programs' --help"
# Every policy key of uffd-mgrd --help, in its section, with its default.
"$dest/usr/sbin/uffd-mgrd" --help | python3 -c '
import re, sys
keys, sec = set(), None
for line in sys.stdin.read().split("\nPOLICY KEYS\n", 1)[1].splitlines():
    m = re.match(r"^\[(\w+)\]$", line)
    if m: sec = m.group(1)
    m = re.match(r"^    (\w+) = \S+ \(default: (.*)\)$", line)
    if m and sec: keys.add((sec, m.group(1), "empty" if m.group(2) == "\"\"" else m.group(2)))
man, sec = set(), None
for line in open(sys.argv[1]):
    m = re.match(r"^\.SS \[(\w+)\]", line)
    if m: sec = m.group(1)
    m = re.match(r"^\.BR (\w+) \" = \\fI\S+\\fR \(default: (.*)\)\"$", line)
    if m and sec: man.add((sec, m.group(1), m.group(2)))
missing, extra = sorted(keys - man), sorted(man - keys)
if missing or extra or len(keys) < 20:
    sys.exit("uffd-mgr.conf.5 against uffd-mgrd --help: missing %s, not in --help %s" % (missing, extra))
print("ok: uffd-mgr.conf(5) has the %d policy keys of --help with their defaults" % len(keys))
' "$dest/usr/share/man/man5/uffd-mgr.conf.5" || fail "policy keys differ"
echo "ok: $(ls "$dest"/usr/share/man/man*/* | wc -l) man pages render without warnings and document the $nopts options of --help"

# systemd-analyze verify needs the programs at the paths the units name.
if command -v systemd-analyze >/dev/null; then
	p=$T/prefix
	mk install PREFIX="$p" SYSCONFDIR="$p/etc" STATEDIR="$p/var/lib/uffd-mgr"
	out=$(MANPATH=$p/share/man systemd-analyze verify "$p/lib/systemd/system/uffd-mgrd.socket" \
		"$p/lib/systemd/system/uffd-mgrd.service" 2>&1) && [ -z "$out" ] ||
		fail "systemd-analyze verify: $out"
	echo "ok: systemd-analyze verify passes on uffd-mgrd.socket and uffd-mgrd.service"
else
	echo "skip: no systemd-analyze (systemd is not installed): the units are not verified"
fi

mk uninstall DESTDIR="$dest" PREFIX=/usr
left=$(cd "$dest" && find . ! -type d)
[ -z "$left" ] || fail "make uninstall left: $left"
for d in /etc/uffd-mgr /var/lib/uffd-mgr /usr/lib/uffd-mgr /usr/share/doc/uffd-mgr; do
	[ ! -e "$dest$d" ] || fail "make uninstall left $d"
done
echo "ok: make uninstall removed everything"
[ "$(git -C "$SRC" status --porcelain 2>/dev/null || true)" = "$before" ] ||
	fail "the test changed the tree: $(git -C "$SRC" status --porcelain)"
echo PASS
