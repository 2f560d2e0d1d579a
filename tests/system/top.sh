# uffdctl top through tmux (Debian's tmux, installed here if missing): a fake guest (32 MiB,
# every byte verified) runs under a 4 MiB resident_max, so that it faults and evicts all the
# time; `uffdctl top` runs in a detached tmux session (a 200x40 terminal). The screen must
# show the header and the VM's row, and the row must change from one capture to a later one
# (the view refreshes every second and the guest keeps faulting). Then q: top must exit 0 and
# give the terminal back. Without a terminal, top must say so in one line and exit 1.
. "$(dirname "$0")/lib.bash"

if ! command -v tmux >/dev/null; then
	[ "$(id -u)" -eq 0 ] || skip "tmux missing and not root"
	flock /tmp/apt.lock apt-get install -y --no-install-recommends tmux >"$T/apt.log" 2>&1 ||
		skip "tmux missing and does not install: $(tail -1 "$T/apt.log")"
fi

cat >"$T/p.conf" <<CONF
[memory]
resident_max = 4M
[shm]
max = 64M
[tracker]
interval = 500ms
CONF
start_daemon
fakeguest topvm "$T/p.conf" --mb 32 --threads 2 --seconds 30 --write-pct 40 --fill \
	>"$T/guest.log" 2>&1 &
GUEST=$!
wait_vm topvm

# tmux of its own (its own server socket), so that nothing of the user's is touched.
TMUX_SOCK=$T/tmux.sock
tm() { tmux -S "$TMUX_SOCK" "$@"; }
stop_tmux() { tm kill-server 2>/dev/null || true; }
trap 'rc=$?; set +e; stop_tmux; pkill -P "$GUEST" 2>/dev/null || true; (exit $rc); cleanup' EXIT
tm new-session -d -s top -x 200 -y 40 \
	"TERM=xterm-256color '$BUILD/uffdctl' --socket '$SOCK' top; echo \"TOP EXIT \$?\"; sleep 30"

# The VM's row as top draws it: the first captured line that starts with the VM's name.
row() {
	tm capture-pane -p -t top | grep -m1 '^topvm ' || true
}
first=""
for _ in $(seq 100); do
	first=$(row)
	[ -n "$first" ] && break
	sleep 0.1
done
[ -n "$first" ] || { tm capture-pane -p -t top; fail "top shows no row for topvm"; }
screen=$(tm capture-pane -p -t top)
echo "$screen" | grep -q '^uffd-mgrd pid [0-9]*, up ' || { echo "$screen"; fail "no header"; }
echo "$screen" | grep -q 'VM  *STATE  *RESIDENT  *SHM  *DISK  *ZERO/s' ||
	{ echo "$screen"; fail "no column header"; }
echo "$first" | grep -Eq '^topvm +running +[0-9.]+[KM]?/4\.0M ' ||
	{ echo "$screen"; fail "topvm's row does not show resident/4.0M: '$first'"; }

later=""
for _ in $(seq 100); do
	later=$(row)
	[ -n "$later" ] && [ "$later" != "$first" ] &&
		echo "$later" | grep -Eq '^topvm +running( +[^ ]+){3} +[0-9]+' && break
	sleep 0.1
done
[ "$later" != "$first" ] || fail "topvm's row did not change in 10 s: '$first'"
echo "$later" | grep -Eq '^topvm +running( +[^ ]+){3} +[0-9]+ +[0-9]+' ||
	fail "no faults/s figures in '$later'"
echo "first: $first"
echo "later: $later"

tm send-keys -t top q
for _ in $(seq 100); do
	tm capture-pane -p -t top | grep -q '^TOP EXIT' && break
	sleep 0.1
done
status=$(tm capture-pane -p -t top | sed -n 's/^TOP EXIT \([0-9]*\)$/\1/p')
[ "$status" = 0 ] || { tm capture-pane -p -t top; fail "top exited '$status' after q, expected 0"; }
tm capture-pane -p -t top | grep -q '^topvm ' && fail "top left its screen behind after q"

expect 1 "^uffdctl: top needs a terminal on stdin and stdout" \
	"$BUILD/uffdctl" --socket "$SOCK" top

pkill -USR1 -P "$GUEST" # the run is over: the fake guest checks every page and exits
wait "$GUEST" || { cat "$T/guest.log"; fail "fake guest saw wrong bytes"; }
grep FAKEGUEST "$T/guest.log"
echo "PASS: top showed topvm, its row changed, q exited 0"
