# Logs under journald. A real systemd-journald runs in a private mount namespace on tmpfs
# (/run/systemd, /run/log, /var/log/journal: the host's journal, if any, is not touched), and
# uffd-mgrd runs with its stderr as the journal stream (JOURNAL_STREAM names it, as systemd
# sets it for a service). Its records must reach that journal as native records: PRIORITY,
# SYSLOG_IDENTIFIER=uffd-mgrd, the daemon's pid, and for a VM's records UFFD_VM=NAME, so that
# `journalctl UFFD_VM=NAME` finds the fake guest's registration; nothing falls back to stderr.
# With JOURNAL_STREAM naming another file, records stay on stderr as before.
if [ -z "${UFFD_IN_NS:-}" ]; then
	[ "$(id -u)" -eq 0 ] || { echo "SKIP: needs root (a mount namespace)"; exit 77; }
	[ -x /lib/systemd/systemd-journald ] && command -v journalctl >/dev/null ||
		{ echo "SKIP: no systemd-journald (systemd)"; exit 77; }
	exec unshare -m --propagation private env UFFD_IN_NS=1 bash "$0" "$@"
fi
. "$(dirname "$0")/lib.bash"
JPID=
trap 'rc=$?; [ -n "$JPID" ] && kill "$JPID" 2>/dev/null; (exit $rc); cleanup' EXIT
for d in /run/systemd /run/log /var/log/journal; do
	mkdir -p "$d"
	mount -t tmpfs tmpfs "$d" || skip "cannot mount a tmpfs on $d"
done
mkdir -p /run/systemd/journal
/lib/systemd/systemd-journald >"$T/journald.log" 2>&1 &
JPID=$!
wait_socket /run/systemd/journal/socket || fail "journald did not start: $(cat "$T/journald.log")"

# The daemon's stderr (--log) is the journal stream.
: >"$T/daemon.log"
JOURNAL_STREAM=$(command stat -c %d:%i "$T/daemon.log") start_daemon
printf '[memory]\nresident_max = 4M\n[shm]\nmax = 64M\n' >"$T/p.conf"
fakeguest jvm "$T/p.conf" --mb 16 --seconds 1 --fill >"$T/fg.log" 2>&1 || fail "fake guest failed: $(cat "$T/fg.log")"
sleep 0.3
journalctl --no-pager -o json UFFD_VM=jvm >"$T/vm.json"
journalctl --no-pager -o json SYSLOG_IDENTIFIER=uffd-mgrd >"$T/all.json"
python3 - "$T/vm.json" "$T/all.json" "$DAEMON_PID" <<'PY' || fail "journal records are not as expected"
import json, sys
vm = [json.loads(l) for l in open(sys.argv[1])]
every = [json.loads(l) for l in open(sys.argv[2])]
pid = sys.argv[3]
reg = [r for r in vm if "registered pid" in r["MESSAGE"]]
assert reg, "no registration under UFFD_VM=jvm: %r" % [r["MESSAGE"] for r in vm]
for r in vm:
    assert r["UFFD_VM"] == "jvm" and r["SYSLOG_IDENTIFIER"] == "uffd-mgrd", r
    assert r["_PID"] == pid, (r["_PID"], pid)
    assert r["MESSAGE"].split(" ", 1)[1].startswith("[jvm]: "), r["MESSAGE"]
assert reg[0]["PRIORITY"] == "6", reg[0]
host = [r for r in every if "listening on" in r["MESSAGE"]]
assert host and "UFFD_VM" not in host[0] and host[0]["MESSAGE"].startswith("info: "), host
print("ok: %d records of VM jvm in the journal, e.g. %r" % (len(vm), reg[0]["MESSAGE"]))
PY
[ ! -s "$T/daemon.log" ] || fail "records fell back to stderr: $(head -3 "$T/daemon.log")"
kill "$DAEMON_PID" && wait "$DAEMON_PID" || fail "daemon did not stop cleanly"
DAEMON_PID=

# Another file as the journal stream: the log stays on stderr.
JOURNAL_STREAM=1:1 start_daemon
for _ in $(seq 100); do
	grep -q "uffd-mgrd info: listening on $SOCK" "$T/daemon.log" && break
	sleep 0.05
done
grep -q "uffd-mgrd info: listening on $SOCK" "$T/daemon.log" ||
	fail "with JOURNAL_STREAM not its stderr, the daemon did not log to stderr"
echo "ok: with JOURNAL_STREAM naming another file, the log stays on stderr"
echo PASS
