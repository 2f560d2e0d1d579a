# Prometheus metrics under a fake guest: the daemon runs with --metrics on a free loopback
# port, a fake guest (32 MiB, every byte verified) runs under a 4 MiB resident_max so that it
# evicts. Both `uffdctl metrics` and an HTTP GET of /metrics must pass `promtool check metrics`
# (Debian's prometheus package, installed here if missing), carry the exposition content
# type, show the VM's evictions (> 0), and have a sample for the VM in every per-VM family
# (the formatter's table agrees with the real snapshot). Then: other paths 404, a bad
# --metrics address is a usage error, a port in use stops a second daemon with the reason,
# and once the guest has gone its series have gone too.
. "$(dirname "$0")/lib.bash"

if ! command -v promtool >/dev/null; then
	[ "$(id -u)" -eq 0 ] || skip "promtool missing (Debian package prometheus) and not root"
	flock /tmp/apt.lock apt-get install -y --no-install-recommends prometheus >"$T/apt.log" 2>&1 ||
		skip "promtool missing and prometheus does not install: $(tail -1 "$T/apt.log")"
fi
command -v curl >/dev/null || skip "curl missing"

cat >"$T/p.conf" <<CONF
[memory]
resident_max = 4M
[shm]
max = 64M
CONF
start_daemon --metrics 127.0.0.1:0
for _ in $(seq 100); do
	port=$(sed -n 's/.*metrics: serving .*(port \([0-9]*\)).*/\1/p' "$T/daemon.log")
	[ -n "$port" ] && break
	sleep 0.05
done
[ -n "$port" ] || fail "the daemon did not say where it serves metrics"
URL=http://127.0.0.1:$port/metrics

fakeguest web1 "$T/p.conf" --mb 32 --threads 2 --seconds 4 --write-pct 40 --fill \
	>"$T/guest.log" 2>&1 &
GUEST=$!
wait_vm web1
for _ in $(seq 100); do
	[ "$(stat web1 evictions.runs)" -gt 0 ] && break
	sleep 0.1
done

# check NAME FILE: promtool passes it, and the VM's eviction counter is above 0.
check() {
	local evictions
	promtool check metrics <"$2" >"$T/promtool.out" 2>&1 ||
		{ cat "$T/promtool.out"; fail "promtool check metrics refused $1"; }
	[ -s "$T/promtool.out" ] && { cat "$T/promtool.out"; fail "promtool has remarks on $1"; }
	evictions=$(sed -n 's/^uffd_mgr_evictions_total{vm="web1"} \([0-9]*\)$/\1/p' "$2")
	[ -n "$evictions" ] && [ "$evictions" -gt 0 ] ||
		fail "$1: no eviction counter above 0 for web1 ('$evictions')"
	for fam in $(sed -n 's/^# TYPE \([^ ]*\) .*/\1/p' "$2"); do
		grep -q "^$fam{vm=\"web1\"" "$2" || grep -q "^$fam " "$2" ||
			fail "$1: family $fam has no sample for web1"
	done
	echo "ok: $1 passes promtool, $(grep -c '^# TYPE' "$2") families," \
		"uffd_mgr_evictions_total{vm=\"web1\"} $evictions"
}

"$BUILD/uffdctl" --socket "$SOCK" metrics >"$T/uffdctl.txt" || fail "uffdctl metrics failed"
check "uffdctl metrics" "$T/uffdctl.txt"
curl -fsS -D "$T/headers" "$URL" >"$T/http.txt" || fail "GET $URL failed"
check "GET /metrics" "$T/http.txt"
grep -qi '^Content-Type: text/plain; version=0.0.4; charset=utf-8' "$T/headers" ||
	fail "wrong content type: $(grep -i content-type "$T/headers")"
code=$(curl -sS -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/")
[ "$code" = 404 ] || fail "GET / answered $code, expected 404"

expect 2 "^uffd-mgrd: --metrics: bad address '9848' \(use HOST:PORT" \
	"$BUILD/uffd-mgrd" --socket "$T/other.sock" --metrics 9848
expect 1 "^uffd-mgrd: --metrics: cannot listen on 127.0.0.1:$port: Address already in use$" \
	"$BUILD/uffd-mgrd" --socket "$T/other.sock" --metrics "127.0.0.1:$port"

wait "$GUEST" || { cat "$T/guest.log"; fail "fake guest saw wrong bytes"; }
grep FAKEGUEST "$T/guest.log"
for _ in $(seq 100); do
	curl -fsS "$URL" >"$T/after.txt" || fail "GET $URL failed after the guest"
	grep -q '^uffd_mgr_vms 0$' "$T/after.txt" && break
	sleep 0.1
done
grep -q 'vm="web1"' "$T/after.txt" && fail "web1's series outlive it"
promtool check metrics <"$T/after.txt" || fail "promtool refused the metrics with no VM"
echo "PASS: metrics over uffdctl and HTTP pass promtool; web1 evicted and is gone after"
