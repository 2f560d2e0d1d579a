# The control loop cannot be stalled by a client, and stats work for hundreds of VMs. While a
# fake guest runs (and must verify every byte at the end):
#  - connections that never send a message are dropped after 5 s, each with a log line;
#  - stats watchers that never read are dropped once a snapshot cannot go out, and
#    meanwhile a registration and a stats request are served as fast as ever;
#  - a 4-byte message and a registration with a stray flag get the connection dropped with
#    a line, the daemon serving on;
#  - 300 VMs registered at once (ctlclient, 1 MiB each): one snapshot holds all of them,
#    larger than one control message (the stream, ctlmsg.h), and `uffdctl stats` parses it.
. "$(dirname "$0")/lib.bash"

printf '[tracker]\nmode = off\n[shm]\nmax = 1M\n[balloon]\nenabled = off\n' >"$T/tiny.conf"
printf '[memory]\nresident_max = 8M\n[shm]\nmax = 64M\n' >"$T/guest.conf"
start_daemon
fakeguest victim "$T/guest.conf" --mb 32 --threads 2 --seconds 25 >"$T/victim.log" 2>&1 &
victim=$!
wait_vm victim

# Silent connections.
silent=""
for i in 1 2 3; do
	"$BUILD/tests/ctlclient" "$SOCK" silent s$i 2>"$T/silent$i.err" &
	silent="$silent $!"
done
# Stalled watchers.
for i in 1 2; do "$BUILD/tests/ctlclient" "$SOCK" stall-watch w$i --hold 20 2>/dev/null & done
sleep 1
# Served meanwhile: a registration and a snapshot, each well within a second or two.
t0=$(date +%s%N)
fakeguest quick "$T/guest.conf" --mb 8 --seconds 0 >"$T/quick.log" 2>&1 || fail "quick: $(cat "$T/quick.log")"
"$BUILD/uffdctl" --socket "$SOCK" stats --json >/dev/null || fail "stats failed while stalled"
ms=$((($(date +%s%N) - t0) / 1000000))
[ $ms -lt 3000 ] || fail "a registration and a snapshot took $ms ms beside stalled clients"
echo "ok: a registration and a snapshot in $ms ms beside 3 silent and 2 stalled clients"

wait_log() { # pattern count seconds
	for _ in $(seq $(($3 * 10))); do
		[ "$(grep -c -- "$1" "$T/daemon.log")" -ge "$2" ] && return 0
		sleep 0.1
	done
	fail "the daemon did not log '$1' $2 times in $3 s"
}
wait_log "asked nothing within 5 s; dropped" 3 10
wait $silent
for i in 1 2 3; do
	grep -Eq "dropped after [4-7]\.[0-9] s" "$T/silent$i.err" || fail "silent $i: $(cat "$T/silent$i.err")"
done
echo "ok: $(cat "$T/silent1.err"); $(grep -m1 'asked nothing' "$T/daemon.log")"
wait_log "does not keep up with its stream; dropped" 2 15
echo "ok: $(grep -m1 'does not keep up' "$T/daemon.log")"

# Broken messages: one line, the connection dropped, the daemon serving on.
python3 - "$SOCK" <<'PY'
import socket, struct, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
s.connect(sys.argv[1])
s.send(b"junk")
s.settimeout(5)
assert s.recv(1024) == b"", "the daemon kept a connection that sent junk"
PY
wait_log "not a control message of this protocol (4 bytes); dropped" 1 5
echo "ok: $(grep -m1 'not a control message' "$T/daemon.log")"

# Hundreds of VMs in one snapshot.
n=300 many=""
for i in $(seq $n); do
	"$BUILD/tests/ctlclient" "$SOCK" register many$i --policy "$T/tiny.conf" --hold 40 2>>"$T/many.err" &
	many="$many $!"
done
for _ in $(seq 300); do
	[ "$(grep -c accepted "$T/many.err" 2>/dev/null)" -ge $n ] && break
	grep -q refused "$T/many.err" && fail "$(grep -m1 refused "$T/many.err")"
	sleep 0.1
done
[ "$(grep -c accepted "$T/many.err")" -ge $n ] || fail "only $(grep -c accepted "$T/many.err") of $n VMs registered"
"$BUILD/uffdctl" --socket "$SOCK" stats --json >"$T/many.json" || fail "stats of $n VMs failed"
got=$(python3 -c "import json,sys; d=json.load(open('$T/many.json')); print(sum(v['name'].startswith('many') and v['state']=='running' for v in d['vms']))")
size=$(wc -c <"$T/many.json")
[ "$got" -eq $n ] || fail "the snapshot holds $got of $n VMs"
[ "$size" -gt 262144 ] || fail "a snapshot of $n VMs is only $size bytes: not a test of the stream"
"$BUILD/uffdctl" --socket "$SOCK" stats >/dev/null || fail "uffdctl stats (table) of $n VMs failed"
echo "ok: one snapshot of $n VMs, $size bytes ($((size / n)) a VM), parsed whole"
kill $many 2>/dev/null || true
wait $victim || fail "the running fake guest lost data: $(cat "$T/victim.log")"
echo "running guest unharmed: $(cat "$T/victim.log")"
