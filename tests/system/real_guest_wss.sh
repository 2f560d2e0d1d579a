# The eBPF tracker follows a real guest's working set. memstress in a 256 MiB guest grows to
# 128 MiB and keeps reading it for 10 s, shrinks to 32 MiB (the guest kernel gets the rest
# back) and keeps reading that for 10 s. Sampled every second, the 1 s working-set estimate
# must rise to at least 110 MiB, then drop, three samples in a row, to between 20 and 70
# MiB (32 MiB plus the guest kernel's own pages). No resident limit: only the tracker's
# arming moves page-table entries; memstress checks every byte as usual.
. "$(dirname "$0")/lib.bash"
[ -f "$BUILD/guest/vmlinuz" ] || fail "no test guest: run 'make guest'"
printf '[memory]\nresident_max = 0\n[tracker]\nmode = ebpf\n' >"$T/guest.conf"
start_daemon
"$SRC/tests/guest/run-guest.sh" --mem 256M --timeout 240 --log "$T/console.log" \
	--append "memstress.mb=128 memstress.phases=grow,touch:10,shrink:32,touch:10" \
	--wrapper "$BUILD/uffd-qemu --policy $T/guest.conf --socket $SOCK --" &
guest=$!
: >"$T/series"
while kill -0 $guest 2>/dev/null; do
	"$BUILD/uffdctl" --socket "$SOCK" stats --json 2>/dev/null | python3 -c '
import json, sys
v = [x for x in json.load(sys.stdin)["vms"] if x["state"] == "running"]
if v: print(v[-1]["tracker"]["wss_bytes"]["1s"] >> 20)' >>"$T/series" || true
	sleep 1
done
wait $guest || { grep -a MEMSTRESS "$T/console.log"; fail "guest run failed"; }
grep -a "MEMSTRESS PASS" "$T/console.log" >/dev/null || fail "memstress did not pass"
echo "wss[1s] MiB, one per second: $(tr '\n' ' ' <"$T/series")"
python3 - "$T/series" <<'PY' || fail "the working-set estimate did not follow grow and shrink"
import sys
s = [int(x) for x in open(sys.argv[1]) if x.strip()]
peak = max(range(len(s)), key=lambda i: s[i]) if s else 0
low = [i for i in range(peak, len(s) - 2) if all(20 <= s[j] <= 70 for j in (i, i + 1, i + 2))]
print(f"peak {s[peak] if s else 0} MiB; low plateau from sample {low[0] if low else None}")
sys.exit(0 if s and s[peak] >= 110 and low else 1)
PY
