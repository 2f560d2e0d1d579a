# Who may do what (README, Security model), with peers of other uids made by ctlclient (it
# builds a real guest as root, then drops to the uid/gids given before it connects) and the
# operator's policies in a policy directory of this test:
#  - an allowed uid registers; its own policy file cannot raise the operator's limits and its
#    [disk] path is ignored; a stranger, a stats-group member and a name's non-owner are
#    refused; root may take any name; a policy file the peer cannot read is not read for it;
#  - stats: a stats-group member reads them, a stranger is refused; nobody but root upgrades;
#  - what QEMU sends: a memfd in the uffd slot, an unsealed guest memfd, a resume whose state
#    claims a larger shm tier than the policy allows: refused, each with one line;
#  - the socket is created with the mode the options call for, never wider.
# Every refusal must reach the client and the daemon's log as the same line.
. "$(dirname "$0")/lib.bash"
EXPECT_LOGGED=1 # every refusal: the same line to the client and in the log

A=4242 B=4243 S=4244 STATS_GID=4300 # allowed, allowed (not web's owner), stats only
chmod 755 "$T"
mkdir "$T/vms"
printf '[vm]\nowner = %s\n[memory]\nresident_max = 8M\nweight = 50\n[shm]\nmax = 16M\n[tracker]\nmode = off\n' \
	$A >"$T/vms/web.conf"
printf '[tracker]\nmode = off\n' >"$T/vms/db.conf"
printf '[memory]\nresident_max = 0\nweight = 10000\n[shm]\nmax = 1G\n[disk]\npath = %s/planted\n' \
	"$T" >"$T/raise.conf"
printf '[memory]\nresident_max = 4M\n' >"$T/lower.conf"
printf '[memory]\nresident_max = 8G\n' >"$T/secret.conf"
chown $A "$T/raise.conf" "$T/lower.conf"
chmod 600 "$T/raise.conf" "$T/secret.conf"
chmod 644 "$T/lower.conf"

ctl() { "$BUILD/tests/ctlclient" "$SOCK" "$@"; }
as() { # uid gid cmd...: run cmd as uid with primary gid and no other group
	local u=$1 g=$2
	shift 2
	setpriv --reuid "$u" --regid "$g" --clear-groups "$@"
}

# A daemon with no options: only root and its own uid, a socket nobody else can open.
start_daemon --policy-dir "$T/vms"
[ "$(command stat -c %a "$SOCK")" = 600 ] || fail "default socket mode $(command stat -c %a "$SOCK"), expected 600"
ctl register db --uid $A --gid $A 2>"$T/err" && fail "uid $A registered with a default daemon"
grep -q "Permission denied" "$T/err" || fail "uid $A: $(cat "$T/err")"
echo "ok: default daemon, uid $A cannot even connect: $(cat "$T/err")"
kill "$DAEMON_PID"; wait "$DAEMON_PID" 2>/dev/null || true; DAEMON_PID=

start_daemon --policy-dir "$T/vms" --allow-uid $A --allow-uid $B --stats-group $STATS_GID
[ "$(command stat -c %a "$SOCK")" = 666 ] || fail "socket mode $(command stat -c %a "$SOCK"), expected 666"

# Registration: allowed uids, names, policies.
expect 1 "refused.*uid $S, gid $S\) may not register VMs" ctl register db --uid $S --gid $S
expect 1 "refused.*uid $S, gid $STATS_GID\) may not register VMs" \
	ctl register db --uid $S --gid $STATS_GID
expect 1 "refused.*vm 'web' belongs to uid $A, not pid [0-9]+'s uid $B" \
	ctl register web --uid $B --gid $B
expect 1 "refused.*secret.conf: Permission denied \(as uid $A\)" \
	ctl register db --uid $A --gid $A --policy "$T/secret.conf"
ctl register web --uid $A --gid $A --policy "$T/raise.conf" --hold 30 2>"$T/web.err" &
web=$!
wait_vm web
[ "$(stat web resident_max)" = $((8 << 20)) ] || fail "web raised resident_max: $(stat web resident_max)"
[ "$(stat web shm_max)" = $((16 << 20)) ] || fail "web raised its shm tier: $(stat web shm_max)"
grep -q "may not raise .*\[memory\] resident_max.*\[memory\] weight.*\[shm\] max.*\[disk\] path" \
	"$T/daemon.log" || fail "no log line of what web's policy could not raise"
[ ! -e "$T/planted" ] || fail "web's own [disk] path was created"
echo "ok: web runs with the operator's limits: $(grep 'may not raise' "$T/daemon.log" | tail -1)"
expect 0 "accepted" ctl register db --uid $B --gid $B --policy "$T/lower.conf" --hold 0
grep -q "db.*resident_max 4 MiB" "$T/daemon.log" || fail "db's own lower resident_max not applied"
echo "ok: a VM's own file lowers its limits"
expect 0 "accepted" ctl register web2 --hold 0 # root: any name, any policy

# What QEMU sends.
expect 1 "refused.*the first descriptor is not a userfaultfd" ctl not-uffd db --uid $A --gid $A
expect 1 "refused.*userfaultfd does not serve this guest memory.*another address space" \
	ctl foreign-uffd db --uid $A --gid $A
expect 1 "refused.*not sealed against shrinking" ctl register db --unsealed --uid $A --gid $A
expect 1 "refused.*state's tiers \([0-9]+ shm, 0 disk slots\) exceed the policy's" \
	ctl big-state ghost
FAKEGUEST_UNSEALED=1 expect 1 "refused.*not sealed against shrinking" \
	fakeguest fgun /dev/null --mb 8 --seconds 0

# Stats and upgrade.
as $S $STATS_GID "$BUILD/uffdctl" --socket "$SOCK" stats --json >"$T/stats.json" ||
	fail "a stats-group member could not read stats"
grep -q '"name": *"web"' "$T/stats.json" || fail "stats-group snapshot lacks web"
echo "ok: the stats group reads stats"
expect 1 "refused: permission denied: pid [0-9]+ \(uid $S, gid $S\) may not read stats" \
	as $S $S "$BUILD/uffdctl" --socket "$SOCK" stats
expect 1 "upgrade refused: permission denied: .*uid $A.* may not upgrade the daemon" \
	as $A $A "$BUILD/uffdctl" --socket "$SOCK" upgrade

# Stop the held registration: its ctlclient, then the subshell around it (either may be gone).
{ pkill -P $web; kill $web; } 2>/dev/null || true
wait $web 2>/dev/null || true
grep -q "accepted" "$T/web.err" || fail "web: $(cat "$T/web.err")"
echo "PASS"
