# Three real guests share one host budget smaller than their RAM (3 x 256 MiB guests, a 384
# MiB budget), with phased memstress: g1 grows to 160 MiB and later shrinks to 16 MiB, g2
# starts at 16 MiB and later grows to 160 MiB, g3 holds 64 MiB throughout. All three must
# pass (every byte checked); the planner's balloon target for g1 must fall after its shrink,
# g2's must rise after its growth, and the log must show at least one emergency re-plan
# (a guest growing faster than its share). Balloon targets are sampled every second.
. "$(dirname "$0")/lib.bash"
[ -f "$BUILD/guest/vmlinuz" ] || fail "no test guest: run 'make guest'"
for g in g1 g2 g3; do
	printf '[memory]\nresident_max = 0\ncritical_min = 32M\n[balloon]\nmin = 64M\n' >"$T/$g.conf"
done
start_daemon --budget 384M
boot() { # name "phases" mb
	"$SRC/tests/guest/run-guest.sh" --mem 256M --timeout 300 --log "$T/$1.log" \
		--append "memstress.mb=$3 memstress.phases=$2" \
		--wrapper "$BUILD/uffd-qemu --policy $T/$1.conf --socket $SOCK --"
}
boot g1 grow,touch:25,shrink:16,touch:30 160 >"$T/g1.out" 2>&1 &
p1=$!
boot g2 grow,shrink:16,touch:25,regrow,touch:30 160 >"$T/g2.out" 2>&1 &
p2=$!
boot g3 grow,touch:55 64 >"$T/g3.out" 2>&1 &
p3=$!
: >"$T/series"
while kill -0 $p1 2>/dev/null || kill -0 $p2 2>/dev/null || kill -0 $p3 2>/dev/null; do
	"$BUILD/uffdctl" --socket "$SOCK" stats --json 2>/dev/null | python3 -c '
import json, sys, time
for v in json.load(sys.stdin)["vms"]:
    if v["state"] == "running":
        p = v["plan"]
        print(int(time.time()), v["name"], p["balloon_target"] >> 20, p["balloon_actual"] >> 20,
              v["tracker"]["wss_bytes"]["10s"] >> 20, p["share"] >> 20)' >>"$T/series" || true
	sleep 1
done
rc=0
for g in 1 2 3; do
	eval "wait \$p$g" || { rc=1; echo "g$g failed:"; grep -a MEMSTRESS "$T/g$g.log" | tail -3; }
done
[ $rc -eq 0 ] || fail "a guest failed"
"$BUILD/uffdctl" --socket "$SOCK" stats
grep "emergency re-plan" "$T/daemon.log" | head -3
grep -q "emergency re-plan" "$T/daemon.log" || fail "no emergency re-plan in the log"
python3 - "$T/series" <<'PY' || fail "balloon targets did not follow the phases"
import sys
s = {}
for line in open(sys.argv[1]):
    t, name, target, actual, wss, share = line.split()
    if int(target):
        s.setdefault(name, []).append((int(t), int(target), int(actual), int(wss)))
for n in sorted(s):
    print(n, "balloon target MiB over time:", " ".join(str(x[1]) for x in s[n]))
def peak_then_low(series):
    if not series: return False
    i = max(range(len(series)), key=lambda k: series[k][1])
    return any(x[1] < series[i][1] - 48 for x in series[i:])
def low_then_high(series):
    if not series: return False
    i = min(range(len(series)), key=lambda k: series[k][1])
    return any(x[1] > series[i][1] + 48 for x in series[i:])
ok = peak_then_low(s.get("g1", [])) and low_then_high(s.get("g2", []))
print("g1 fell after its peak:", peak_then_low(s.get("g1", [])),
      "| g2 rose after its low:", low_then_high(s.get("g2", [])))
sys.exit(0 if ok else 1)
PY
