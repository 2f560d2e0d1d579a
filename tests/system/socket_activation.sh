# Socket activation: systemd-socket-activate (systemd's own tool, the protocol of a .socket
# unit) holds a seqpacket socket and starts uffd-mgrd on the first connection, as
# uffd-mgrd.socket does. The daemon takes the socket (LISTEN_PID/LISTEN_FDS, fd 3), gives it
# the group and mode of its settings, serves a fake guest whose bytes are all verified, and on
# SIGTERM, after a live upgrade too, leaves the socket in place for systemd. Mismatches (a stream socket, a socket bound
# to another path than --socket) are refused with one line.
. "$(dirname "$0")/lib.bash"
command -v systemd-socket-activate >/dev/null || skip "no systemd-socket-activate (systemd)"
group=$(getent group daemon | cut -d: -f1)
[ -n "$group" ] || skip "no group 'daemon' to give the socket"

activate() { # socket-activate-options... -- daemon-arguments...
	local opts=()
	while [ "$1" != -- ]; do opts+=("$1"); shift; done
	shift
	systemd-socket-activate "${opts[@]}" -- "$BUILD/uffd-mgrd" --config /dev/null \
		--log "$T/daemon.log" "$@" 2>>"$T/activate.err" &
	DAEMON_PID=$!
	wait_socket "${opts[-1]}" || fail "systemd-socket-activate did not listen"
}

# 1. Served through the passed socket; its mode and group come from the daemon's settings.
activate --seqpacket -l "$SOCK" -- --socket "$SOCK" --stats-group "$group"
[ ! -s "$T/daemon.log" ] || fail "the daemon ran before anyone connected"
printf '[memory]\nresident_max = 4M\n[shm]\nmax = 64M\n' >"$T/p.conf"
fakeguest act "$T/p.conf" --mb 32 --threads 2 --seconds 3 --write-pct 50 --fill >"$T/fg.log" 2>&1 &
fg=$!
wait_vm act
grep -q "listening on $SOCK (pid $DAEMON_PID, socket from systemd)" "$T/daemon.log" ||
	fail "the daemon did not say it serves systemd's socket: $(cat "$T/daemon.log")"
[ "$(command stat -c '%a %G' "$SOCK")" = "660 $group" ] ||
	fail "socket is $(command stat -c '%a %G' "$SOCK"), expected 660 $group"
wait $fg || fail "fake guest failed: $(cat "$T/fg.log")"
[ "$(stat act evictions.pages)" -gt 0 ] || fail "nothing was evicted through the passed socket"
# A live upgrade passes the socket on, and that it is systemd's too.
"$BUILD/uffdctl" --socket "$SOCK" upgrade >/dev/null || fail "upgrade failed"
for _ in $(seq 100); do
	grep -q "upgraded: serving" "$T/daemon.log" && break
	sleep 0.05
done
grep -q "upgraded: serving" "$T/daemon.log" || fail "the upgraded daemon did not start"
kill -TERM "$DAEMON_PID"
wait "$DAEMON_PID" || fail "daemon exited non-zero on SIGTERM"
DAEMON_PID=
[ -S "$SOCK" ] || fail "the daemon unlinked systemd's socket"
rm -f "$SOCK"
echo "ok: served a fake guest on systemd's socket, left it in place; mode 660 group $group"

# 2. A stream socket (ListenStream= instead of ListenSequentialPacket=).
activate -l "$T/stream.sock" -- --socket "$T/stream.sock"
python3 -c "import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.recv(1)" \
	"$T/stream.sock" 2>/dev/null || true
wait "$DAEMON_PID" && fail "the daemon took a stream socket"
DAEMON_PID=
grep -q "ListenSequentialPacket=$T/stream.sock" "$T/daemon.log" ||
	fail "no reason for the stream socket: $(tail -3 "$T/daemon.log")"
echo "ok: $(grep ListenSequentialPacket "$T/daemon.log")"

# 3. The unit's path and --socket disagree.
activate --seqpacket -l "$T/other.sock" -- --socket "$SOCK"
"$BUILD/uffdctl" --socket "$T/other.sock" stats >/dev/null 2>&1 || true
wait "$DAEMON_PID" && fail "the daemon served a socket bound elsewhere"
DAEMON_PID=
grep -q "bound to $T/other.sock, but --socket is $SOCK" "$T/daemon.log" ||
	fail "no reason for the path mismatch: $(tail -3 "$T/daemon.log")"
echo "ok: $(grep 'bound to' "$T/daemon.log")"
echo PASS
