#!/bin/bash
# make demo: boots the real test guest under uffd-mgrd with a small resident limit and shows
# its memory moving live: resident against the limit, the shm tier, the disk tier, faults,
# evictions and demotions, the working set the tracker measures, the balloon target, next to what the guest's workload (memstress) is doing. Ends with
# the guest's verdict.
set -eu
SRC=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-$SRC/build}
D=${DEMO_DIR:-/tmp/uffd-mgr-demo}
SOCK=$D/uffd-mgr.sock
MB=${DEMO_MB:-256}
PHASES=${DEMO_PHASES:-grow,verify,hold:3,shrink:64,verify,regrow,verify}

mkdir -p "$D"
rm -f "$D"/console.log
cat >"$D/demo.conf" <<CONF
# The demo VM: 512 MiB of guest RAM, at most 64 MiB of it resident in host RAM, 96 MiB
# in the shared-memory tier, the rest in a swap file.
[vm]
name = demo
[memory]
resident_max = 64M
[shm]
max = 96M
[disk]
path = $D/%n.swap
max = 1G
CONF

"$BUILD/uffd-mgrd" --socket "$SOCK" --log "$D/daemon.log" &
daemon=$!
trap 'kill $daemon $guest 2>/dev/null || true; wait 2>/dev/null || true' EXIT
for _ in $(seq 100); do [ -S "$SOCK" ] && break; sleep 0.05; done

"$SRC/tests/guest/run-guest.sh" --mem 512M --timeout 600 --log "$D/console.log" \
	--append "memstress.mb=$MB memstress.phases=$PHASES" \
	--wrapper "$BUILD/uffd-qemu --policy $D/demo.conf --socket $SOCK --" >"$D/run.log" 2>&1 &
guest=$!

bar() { # value max width
	local n=$(($1 * $3 / ($2 > 0 ? $2 : 1)))
	[ $n -gt $3 ] && n=$3
	printf '%*s' "$n" '' | tr ' ' '#'
	printf '%*s' $(($3 - n)) ''
}

while kill -0 $guest 2>/dev/null; do
	out=$("$BUILD/uffdctl" --socket "$SOCK" stats 2>/dev/null || true)
	json=$("$BUILD/uffdctl" --socket "$SOCK" stats --json 2>/dev/null || echo '{}')
	read -r res max shm disk wss1 wss10 bal < <(python3 -c 'import json,sys
d=json.load(sys.stdin); v=[x for x in d.get("vms",[]) if x["name"]=="demo"]
v=v[-1] if v else {}
w=list(v.get("tracker",{}).get("wss_bytes",{}).values())+[0,0]
print(v.get("resident_bytes",0)>>20, v.get("resident_max",1)>>20, v.get("shm_bytes",0)>>20,
      v.get("disk",{}).get("bytes",0)>>20, w[0]>>20, w[1]>>20,
      v.get("plan",{}).get("balloon_target",0)>>20)' <<<"$json")
	clear 2>/dev/null || printf '\033[H\033[2J'
	echo "uffd-mgr demo: a real Linux guest (512 MiB, TCG) whose RAM uffd-mgrd serves"
	echo "   socket $SOCK   daemon log $D/daemon.log   console $D/console.log"
	echo
	echo "$out"
	echo
	printf '  resident %4s MiB [%s] limit %s MiB\n' "$res" "$(bar "$res" $((max * 2)) 40)" "$max"
	printf '  shm tier %4s MiB [%s] size 96 MiB\n' "$shm" "$(bar "$shm" 96 40)"
	printf '  disk     %4s MiB [%s]\n' "$disk" "$(bar "$disk" 512 40)"
	printf '  working set (eBPF tracker) %s MiB over 1 s, %s MiB over 10 s' "$wss1" "$wss10"
	[ "$bal" = 0 ] && echo || echo "; balloon target $bal MiB"
	echo
	echo "guest workload (memstress over $MB MiB):"
	grep -a 'MEMSTRESS' "$D/console.log" 2>/dev/null | tr -d '\r' | tail -n 8 | sed 's/^/  /' || true
	sleep 1
done
rc=0
wait $guest || rc=$?
echo
"$BUILD/uffdctl" --socket "$SOCK" stats
echo
if [ $rc -eq 0 ]; then
	echo "demo: the guest verified every byte it wrote: $(grep -a 'MEMSTRESS PASS' "$D/console.log" | tr -d '\r')"
else
	echo "demo: guest run failed (exit $rc); see $D/console.log and $D/run.log"
	tail -n 5 "$D/run.log"
fi
exit $rc
