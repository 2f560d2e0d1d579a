# 32 fake-guest VMs on one daemon (issue 13): each a 12 MiB guest with 2 MiB resident, a 1 MiB
# shm tier and its own disk tier, so every VM evicts, demotes to disk and faults back from
# both tiers at once, all their disk I/O going through the daemon's one disk scheduler. Each
# fake guest verifies every page it reads and all its pages at the end (checksums per page
# version); 2% of operations discard a page, which must then read zero. While they run, the
# stats must list all 32 running; at the end, each VM's final snapshot must show faults served
# from disk and from shm, demotions, and no fault or disk error.
. "$(dirname "$0")/lib.bash"
N=32
cat >"$T/p.conf" <<CONF
[memory]
resident_max = 2M
run_size = 16K
[shm]
max = 1M
high_watermark = 80
low_watermark = 40
[disk]
path = $T/%n.swap
max = 64M
[tracker]
mode = off
CONF
start_daemon
pids=()
for i in $(seq -w 1 $N); do
	fakeguest "vm$i" "$T/p.conf" --mb 12 --threads 1 --seconds 6 --write-pct 40 --hot-pct 30 \
		--fill --discard-pct 2 --seed "$i" >"$T/vm$i.out" 2>&1 &
	pids+=($!)
done

# All 32 at once in the stats, while they run.
seen=0
for _ in $(seq 100); do
	seen=$("$BUILD/uffdctl" --socket "$SOCK" stats --json | python3 -c '
import json, sys
d = json.load(sys.stdin)
print(sum(1 for v in d["vms"] if v["state"] == "running"))')
	[ "$seen" -eq $N ] && break
	sleep 0.1
done
[ "$seen" -eq $N ] || fail "stats listed $seen running VMs, never all $N"
"$BUILD/uffdctl" --socket "$SOCK" stats | head -n 40

bad=0
for k in "${!pids[@]}"; do
	if ! wait "${pids[$k]}"; then
		bad=$((bad + 1))
		echo "vm$(printf %02d $((k + 1))):" && tail -n 5 "$T/vm$(printf %02d $((k + 1))).out"
	fi
done
[ "$bad" -eq 0 ] || fail "$bad fake guests saw wrong bytes or failed"

# Every VM's final snapshot (the daemon keeps the last 32 VMs that exited).
"$BUILD/uffdctl" --socket "$SOCK" stats --json | python3 -c '
import json, sys
d, n = json.load(sys.stdin), int(sys.argv[1])
vms = {v["name"]: v for v in d["vms"]}
names = ["vm%02d" % i for i in range(1, n + 1)]
missing = [x for x in names if x not in vms]
if missing:
    sys.exit("FAIL: not in the stats: %s" % " ".join(missing))
errs, tot = [], {"disk": 0, "shm": 0, "demoted": 0}
for x in names:
    v = vms[x]
    f, k = v["faults"], v["disk"]
    tot["disk"] += f["disk"]; tot["shm"] += f["shm"]; tot["demoted"] += k["demote_pages"]
    if f["errors"] or k["read_errors"] or k["write_errors"] or k["demote_errors"]:
        errs.append("%s: errors %s" % (x, json.dumps({"faults": f["errors"], "disk": k})))
    if not f["disk"] or not f["shm"] or not k["demote_pages"]:
        errs.append("%s: disk faults %d, shm faults %d, demoted %d" %
                    (x, f["disk"], f["shm"], k["demote_pages"]))
if errs:
    sys.exit("FAIL: " + "; ".join(errs))
print("PASS: %d VMs, %d disk faults, %d shm faults, %d pages demoted" %
      (n, tot["disk"], tot["shm"], tot["demoted"]))
' $N || fail "stats"
