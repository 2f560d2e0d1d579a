#!/bin/bash
# bench/run.sh: the benchmark suite behind `make bench` (issue 6).
#
# Every figure is a ratio to a baseline measured in this same run, because these machines are
# noisy; the absolute values are printed beside. One line per step while it runs, then one
# table; bench/results/ gets bench.json, the PNG plots and latest.md, and bench/latest.md and
# bench/latest.png (the README's copy) are refreshed.
#
#   1. Fault service latency, per access as the guest sees it (bench/faultlat.c): zero page,
#      shm tier, disk tier, against the kernel's anonymous (and shmem) first touch and a
#      swap-in from a swap file in a memory cgroup; the shm tier with the fault thread on the
#      guest's CPU or the other one, busy_poll 0 or 50 µs, and the default placement.
#   2. Regrowth (bench/regrow.c): a working set pushed out to the shm or disk tier and read
#      back in order and at random, run_size 64K (batched) and 4K, against memcpy of the same
#      bytes and the kernel's own paging in a memory cgroup of the same resident size: swap on
#      a file, zswap in front of it, and zram (where the kernel has it); and the first touch of
#      the whole set in address order (the fill) with no limit, against the kernel's.
#   Scenes 1 and 2 print, per scene, the longest single access (fault) any of their runs saw.
#   3. Disk-tier 4 KiB random reads, one page per fault, against fio randread (4k, direct,
#      io_uring, QD1, same CPU) on the disk tier's own file while it holds the guest's pages.
#   4. The test guest (KVM or TCG) running memstress under the manager, resident_max 50% and
#      25% of its working set, against the same guest with all its RAM resident (plain QEMU).
#   5. Tracker overhead on a 4 GiB fake guest (tests/tools/fakeguest): 1 GiB written, then
#      256 MiB of it read in back-to-back passes, no resident limit, with [tracker] mode off
#      (the baseline), ebpf with its default adaptive regions, and ebpf exact (regions = 0,
#      every resident page armed each second): the passes' time and the writes' (faults) time
#      against off, the minor faults per second the tracker causes, and the default's
#      working-set estimate against the truth; medians of 5 runs each, interleaved.
#   6. Three real guests under one daemon with a budget of half their RAM, with phased
#      memstress (one grows while another shrinks, as tests/system/three_guests.sh), with the
#      balloon and proactive prefetch on, against the same scene with both off: pages
#      faulted back from the tiers, and the time until all three are done.
#   7. Eviction bookkeeping on a 4 GiB guest map, no guest memory (bench/evictbench.c): runs
#      read back at random under a 64 MiB limit, victims picked by age, run_size 4K and 64K,
#      with the tracker's arming applied promptly and with it still pending; picks and pages
#      per second against the old whole-map walk in the same run, and memcpy of the bytes.
#   9. Fair disk I/O between VMs: a light VM's disk-tier faults (faultlat, run_size 4K, random
#      reads of pushed-out pages) alone, then while two other VMs thrash their disk tiers
#      (regrow over 256 MiB with 16 MiB resident and an 8 MiB shm tier: every run they read
#      back comes from disk and pushes another out through demotion writes); the light VM's
#      fault p99 beside them against alone, with the daemon's disk scheduler (the default)
#      and without it (--disk-inflight 0); medians of 3 runs of each, interleaved. The light
#      VM and its fault thread on CPU 0, the thrashers and theirs on CPU 1, so that what they
#      share is the disk more than a CPU. And the disk's own share, without uffd-mgr: fio's
#      4k random reads at QD1 alone and beside two fio jobs reading and writing 64k.
#   8. The pause a guest sees while uffd-mgrd is killed with SIGKILL and started again at once
#      (as systemd's Restart=always, RestartSec=0 would), and while it is upgraded in place
#      (uffdctl upgrade), 7 times each (bench/pausebench.c: random reads of 192 MiB, 48 MiB
#      resident, so that most fault from the shm tier): the time between the last read served
#      before each kill and the first after the new daemon adopted the guest, p50 and max,
#      against the shm-tier fault p50 of the running daemon, from the same program.
#  10. A real guest paging at a fixed resident limit against the kernel's own paging: memstress
#      over $PAGE_MB MiB (grow, then verify twice) in the test guest under uffd-mgr at
#      resident_max $PAGE_LIMIT, then plain QEMU in a memory cgroup of the same guest memory
#      (QEMU's own memory, sampled under uffd-mgr as all the cgroup holds but the guest memfd,
#      plus $PAGE_LIMIT) swapping to a file, and with zswap; $PAGE_RUNS rounds interleaved,
#      medians of the whole run and of its grow phase.
#  11. The compressed shm tier ([shm] compress) on guest-like memory: the pages of the test
#      guest's files (its kernel image and initramfs, already compressed; busybox, memstress
#      and its kernel modules, ELF; System.map and config, text; all-zero pages left out, as
#      the evictor never stores them; bench/report.py corpus) fill a fake guest of $LAT_MB MiB
#      (bench/faultlat.c --corpus) pushed out under $LAT_LIMIT MiB resident, with compress off,
#      lz4 and zstd, run_size 4K and 64K: the guest bytes the shm tier holds per byte of its
#      pool (capacity; uncompressed is the baseline), and the shm-tier fault p50 and p99 of
#      reading those pages back at random, fault thread on the guest's CPU, against the
#      uncompressed tier holding the same data. Every page read back is checked byte for byte.
#
# Environment: BUILD (default <repo>/build, needs `make all guest`; the guest only for scenes
# 4 and 6), BENCH_OUT (default
# bench/results), BENCH_REGROW_MB (scene 2 working set, default 1024), BENCH_PASS_S (longest
# read-back pass in scene 2, default 6), BENCH_SCENES (the scenes to run, e.g. "1 8", scene 3
# comes with 1 or runs alone; default all; a partial run makes no plots and leaves
# bench/latest.* alone), BENCH_TRACKER (a [tracker] mode for the fake-guest VMs of scenes 1
# and 2; default: the policy's default).
# Needs root (swap file, memory cgroup v1), fio and gnuplot. Everything it starts (daemon,
# guests, swap file, cgroup, scratch files) is stopped and removed on exit, failure or
# interrupt. Exit status: 0, or 1 when a step failed or a page came back wrong.
set -eu -o pipefail

SRC=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-$SRC/build}
OUT=${BENCH_OUT:-$SRC/bench/results}
BIN=$BUILD/bench
export UFFDCTL=$BUILD/uffdctl

GUEST_CPU=0 # every guest thread is pinned here; "other CPU" is OTHER_CPU
OTHER_CPU=1
LAT_MB=192 LAT_LIMIT=48 LAT_SAMPLES=8192 # scene 1: 36k pages pushed out, 8k sampled
REGROW_MB=${BENCH_REGROW_MB:-1024} REGROW_LIMIT=64 PASS_S=${BENCH_PASS_S:-6}
GUEST_MB=128 GUEST_RAM=256M GUEST_RUNS=5 # scene 4: the median of 5 boots per setting
PAGE_MB=160 PAGE_LIMIT=48M PAGE_RUNS=3 # scene 10: ~30% of the touched memory resident
# What tests/guest/run-guest.sh will pick (its --accel auto): KVM needs vmx/svm and /dev/kvm.
ACCEL=TCG
if [ -r /dev/kvm ] && [ -w /dev/kvm ] && grep -qwE 'vmx|svm' /proc/cpuinfo; then
	ACCEL=KVM
fi
FIO_S=5
FAIR_MB=96 FAIR_LIMIT=24 FAIR_SAMPLES=4096 FAIR_RUNS=3 # scene 9: the light VM
THRASH_MB=256 THRASH_LIMIT=16              # scene 9: each of the two thrashing VMs
TRACK_MB=4096 TRACK_SET=262144 TRACK_HOT=65536 # scene 5: 1 GiB written, 256 MiB of it read
TRACK_OPS=150000000 # scene 5: pages read per thread, ~8 s of passes here
TRACK_RUNS=5        # scene 5: this host's run-to-run noise is larger than the effect

WORK='' SOCK='' DAEMON='' CHILD='' BGCHILD='' SWAP='' CG='' FAILED=0 GBOOTS=''
ZSWAP_WAS='' ZRAM='' # zswap's enabled parameter before us; our zram device's number
# scenes 1, 2: longest single access (µs) under uffd-mgr, and (k) under the kernel's paging
LONGEST1=0 LONGEST2=0 LONGEST1_AT='' LONGEST2_AT='' LONGEST1k=0 LONGEST2k=0 LONGEST1k_AT='' LONGEST2k_AT='' LONGEST2m=0 LONGEST2m_AT=''
T0=$SECONDS

# ---- plumbing ----

say() { printf '[%3ds] %s\n' $((SECONDS - T0)) "$*"; }
die() {
	say "bench: $*" >&2
	exit 1
}

# Stops one of our children: SIGTERM, then SIGKILL if it is still there after 15 s.
stop() {
	kill -TERM "$1" 2>/dev/null || return 0
	for _ in $(seq 150); do
		kill -0 "$1" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$1" 2>/dev/null
	wait "$1" 2>/dev/null
}

cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	set +e # undo as much as can be undone
	for p in $CHILD $BGCHILD; do
		stop "$p"
	done
	if [ -n "$DAEMON" ]; then
		stop "$DAEMON" # after its guests: it then has no pages to hand back
		cp "$WORK/daemon.log" "$OUT/daemon.log" 2>/dev/null
	fi
	[ -z "$ZSWAP_WAS" ] || echo "$ZSWAP_WAS" >/sys/module/zswap/parameters/enabled
	if [ -n "$ZRAM" ]; then
		swapoff "/dev/zram$ZRAM" 2>/dev/null
		echo "$ZRAM" >/sys/class/zram-control/hot_remove || say "cannot remove zram$ZRAM" >&2
	fi
	[ -z "$SWAP" ] || swapoff "$SWAP" 2>/dev/null || say "cannot swapoff $SWAP" >&2
	[ -z "$CG" ] || rmdir "$CG" 2>/dev/null || say "cannot remove cgroup $CG" >&2
	[ -z "$WORK" ] || rm -rf "$WORK"
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Runs a command in the background and waits for it, so that a signal reaches our trap at once
# rather than after the command; its stdout goes to the file $1, its stderr to $1.err.
# Returns its exit status; a failure shows the tail of its stderr.
run() {
	local out=$1 rc=0
	shift
	"$@" >"$out" 2>"$out.err" &
	CHILD=$!
	wait "$CHILD" || rc=$?
	CHILD=
	if [ $rc -ne 0 ]; then
		echo "failed (exit $rc): $*" >&2
		tail -n 5 "$out.err" >&2
	fi
	return $rc
}

# Value of key in a "NAME key=value ..." line of file; empty when absent.
kv() { sed -n "s/.* $2=\([^ ]*\).*/\1/p" "$1" | head -n 1; }

# One table row: scene, measurement, value, unit, then (baseline name, value) pairs.
row() {
	local IFS=$'\t'
	echo "$*" >>"$OUT/rows.tsv"
}
# One bar group of a plot: plot name, label, values.
bar() {
	local IFS=$'\t'
	echo "$*" >>"$OUT/plots.tsv"
}
# One key=value of the report's header; the words after the key are joined by spaces.
meta() {
	local k=$1
	shift
	echo "$k=$*" >>"$OUT/meta.txt"
}
failed() {
	FAILED=1
	say "step failed: $*" >&2
}

check_prereqs() {
	[ "$(id -u)" -eq 0 ] || die "needs root (swap file, memory cgroup)"
	local need="uffd-mgrd uffdctl uffd-qemu libuffd-shim.so tests/fakeguest"
	# Only scenes 4 and 6 boot the test guest.
	! scene 4 && ! scene 6 || need="$need guest/vmlinuz"
	for b in $need; do
		[ -e "$BUILD/$b" ] || die "$BUILD/$b is missing: run 'make all guest' first"
	done
	for c in fio gnuplot python3 gcc mkswap swapon; do
		command -v "$c" >/dev/null || die "$c not found (scripts/install-deps.sh installs it)"
	done
	[ "$(nproc)" -ge 2 ] || die "needs 2 CPUs to place the fault thread apart from the guest"
}

# The bench programs are built here, not by the Makefile: they need nothing of the project but
# the shim that LD_PRELOAD puts under them (they talk to the daemon only through it), or for
# evictbench the page map's one source file, and they build in a second.
build_programs() {
	mkdir -p "$BIN"
	for p in faultlat regrow evictbench pausebench; do
		gcc -O2 -g -Wall -Wextra -Wshadow -Wstrict-prototypes -D_GNU_SOURCE -I"$SRC" \
			-o "$BIN/$p" "$SRC/bench/$p.c" "$SRC/bench/gmem.c" \
			$([ $p != evictbench ] || echo "$SRC/uffd-mgr/pagemap.c") || die "cannot build $p"
	done
}

# Starts the daemon and waits until it answers: a daemon killed before (scene 8) leaves its
# socket file behind, so the file alone says nothing.
start_daemon() { # [daemon options]
	"$BUILD/uffd-mgrd" --socket "$SOCK" --log "$WORK/daemon.log" "$@" &
	DAEMON=$!
	for _ in $(seq 200); do
		"$UFFDCTL" --socket "$SOCK" stats >/dev/null 2>&1 && return 0
		kill -0 "$DAEMON" 2>/dev/null || break
		sleep 0.02
	done
	die "uffd-mgrd did not start (log: $OUT/daemon.log)"
}

# A swap file on the same file system as the disk tier, and a memory cgroup (v1) under ours for
# the kernel-swap baselines. Without either, CG is empty and those baselines are n/a: this
# machine cannot measure them, which is not a failure of what is benchmarked.
setup_swap() {
	local mine
	SWAP=$WORK/swapfile
	CG=''
	if ! { fallocate -l $((REGROW_MB * 5 / 4))M "$SWAP" && chmod 600 "$SWAP" &&
		mkswap "$SWAP" >/dev/null && swapon "$SWAP"; }; then
		say "no swap file on $WORK: kernel-swap baselines are n/a" >&2
		rm -f "$SWAP"
		SWAP=
		return 0
	fi
	mine=$(sed -n 's/^[0-9]*:memory:\(.*\)$/\1/p' /proc/self/cgroup)
	CG=/sys/fs/cgroup/memory${mine%/}/uffd-bench.$$
	if ! mkdir "$CG" 2>/dev/null; then
		say "no memory cgroup v1 at /sys/fs/cgroup/memory: kernel-swap baselines are n/a" >&2
		CG=
	fi
}

# Runs a command as the only task of the bench cgroup, limited to $1 MiB: in_cgroup MiB out cmd...
in_cgroup() {
	local mb=$1 out=$2
	shift 2
	echo $((mb << 20)) >"$CG/memory.limit_in_bytes"
	# shellcheck disable=SC2016 # $$ and $1 belong to the inner shell
	run "$out" sh -c 'echo $$ >"$1/tasks" && shift && exec "$@"' sh "$CG" "$@"
}

# Runs a command with zswap in front of the swap file: with_zswap cmd...
with_zswap() {
	local rc=0
	ZSWAP_WAS=$(cat /sys/module/zswap/parameters/enabled)
	echo Y >/sys/module/zswap/parameters/enabled
	"$@" || rc=$?
	echo "$ZSWAP_WAS" >/sys/module/zswap/parameters/enabled
	ZSWAP_WAS=''
	return $rc
}

# Runs a command with a zram device of $1 MiB as the only swap: with_zram MiB cmd... zram is
# built into some kernels (no module to load): a device of our own comes from zram-control.
with_zram() {
	local mb=$1 rc=0 dev
	shift
	modprobe zram 2>/dev/null || true
	[ -w /sys/class/zram-control/hot_add ] || return 2
	ZRAM=$(cat /sys/class/zram-control/hot_add) || return 2
	dev=/dev/zram$ZRAM
	echo $((mb << 20)) >"/sys/block/zram$ZRAM/disksize" && mkswap "$dev" >/dev/null &&
		swapoff "$SWAP" && swapon -p 100 "$dev" || rc=2
	[ $rc -ne 0 ] || "$@" || rc=$?
	swapoff "$dev" 2>/dev/null
	swapon "$SWAP" || say "cannot swapon $SWAP again" >&2
	echo "$ZRAM" >/sys/class/zram-control/hot_remove
	ZRAM=''
	return $rc
}

# Keeps the longest single access of scene $1 seen so far: longest SCENE microseconds what.
longest() {
	local v=${2:-0} cur="LONGEST$1"
	if awk -v a="$v" -v b="${!cur}" 'BEGIN { exit !(a > b) }'; then
		printf -v "LONGEST$1" %s "$v"
		printf -v "LONGEST$1_AT" %s "$3"
	fi
}

# Writes the policy of VM $1: resident_max run_size shm_max disk_max(0: none) cpu busy_poll.
policy() {
	{
		printf '[vm]\nname = %s\n[memory]\nresident_max = %s\nrun_size = %s\n' "$1" "$2" "$3"
		printf '[shm]\nmax = %s\n' "$4"
		[ "$5" = 0 ] || printf '[disk]\npath = %s/%%n.swap\nmax = %s\n' "$WORK" "$5"
		printf '[fault]\n'
		[ "$6" = default ] || printf 'cpu = %s\n' "$6"
		[ "$7" = default ] || printf 'busy_poll = %s\n' "$7"
		[ -z "${BENCH_TRACKER:-}" ] || printf '[tracker]\nmode = %s\n' "$BENCH_TRACKER"
	} >"$WORK/$1.conf"
}

# Runs a bench program as a guest of the daemon: managed VM out cmd...
managed() {
	local vm=$1 out=$2
	shift 2
	run "$out" env UFFD_MGR_SOCKET="$SOCK" UFFD_MGR_VM="$vm" UFFD_MGR_POLICY="$WORK/$vm.conf" \
		LD_PRELOAD="$BUILD/libuffd-shim.so" "$@"
}

vmstat() { python3 "$SRC/bench/report.py" stat "$SOCK" "$1" "$2"; }

# ---- scene 1: fault service latency ----

FL=(--mb "$LAT_MB" --samples "$LAT_SAMPLES" --cpu "$GUEST_CPU")

lat_kernel() {
	local o=$WORK/lat-anon.out
	say "scene 1: kernel anonymous first touch (baseline)"
	run "$o" "$BIN/faultlat" --anon "${FL[@]}" || failed "anonymous first touch"
	ANON50=$(kv "$o" touch_p50_us) ANON99=$(kv "$o" touch_p99_us)
	o=$WORK/lat-memfd.out
	say "scene 1: kernel shmem first touch, memfd not registered (baseline)"
	run "$o" "$BIN/faultlat" "${FL[@]}" || failed "shmem first touch"
	SHMEM50=$(kv "$o" touch_p50_us) SHMEM99=$(kv "$o" touch_p99_us)
	o=$WORK/lat-swap.out
	say "scene 1: kernel swap-in, memory cgroup of $LAT_LIMIT MiB, swap file (baseline)"
	if [ -n "$CG" ]; then
		in_cgroup $LAT_LIMIT "$o" "$BIN/faultlat" --anon "${FL[@]}" --limit-mb $LAT_LIMIT ||
			failed "kernel swap-in faults"
		SWAP50=$(kv "$o" tier_p50_us) SWAP99=$(kv "$o" tier_p99_us)
		longest 1k "$(kv "$o" tier_max_us)" "kernel swap-in"
		o=$WORK/lat-zswap.out
		say "scene 1: kernel zswap swap-in, memory cgroup of $LAT_LIMIT MiB (baseline)"
		with_zswap in_cgroup $LAT_LIMIT "$o" "$BIN/faultlat" --anon "${FL[@]}" \
			--limit-mb $LAT_LIMIT || failed "kernel zswap swap-in faults"
		ZSW50=$(kv "$o" tier_p50_us) ZSW99=$(kv "$o" tier_p99_us)
		longest 1k "$(kv "$o" tier_max_us)" "kernel zswap swap-in"
	fi
	say "  anon p50 ${ANON50:-?} µs, shmem p50 ${SHMEM50:-?} µs, swap-in p50 ${SWAP50:-?} µs," \
		"zswap swap-in p50 ${ZSW50:-?} µs"
}

# One managed latency run: VM cpu busy_poll [shm_max disk_max sync_dir]. Output in $WORK/VM.out.
lat_vm() {
	local vm=$1 shm=${4:-512M} disk=${5:-0} sync=()
	[ -z "${6:-}" ] || sync=(--sync "$6")
	policy "$vm" ${LAT_LIMIT}M 4K "$shm" "$disk" "$2" "$3"
	managed "$vm" "$WORK/$vm.out" "$BIN/faultlat" "${FL[@]}" --limit-mb $LAT_LIMIT \
		"${sync[@]}" || return 1
	longest 1 "$(kv "$WORK/$vm.out" touch_max_us)" "$vm, first touch"
	longest 1 "$(kv "$WORK/$vm.out" tier_max_us)" "$vm, tier faults"
}

# Placement variants of the shm tier: label cpu busy_poll.
PL_P50=() PL_P99=()
PLACEMENTS=("fault thread on the guest's CPU, busy_poll 0|$GUEST_CPU|0|same CPU"
	"fault thread on the other CPU, busy_poll 0|$OTHER_CPU|0|other CPU"
	"fault thread on the other CPU, busy_poll 50|$OTHER_CPU|50|other CPU, poll 50"
	"fault thread on the guest's CPU, busy_poll 50|$GUEST_CPU|50|same CPU, poll 50"
	"fault thread unpinned (cpu = any), busy_poll 0|any|0|cpu any"
	"fault thread placed by the policy's defaults|default|default|default placement")

# Runs every placement; the first (the guest's CPU, no polling) is the headline, whose
# first touches also give the zero-page row. Sets ZERO*, SHM* and PL_P50/PL_P99 per placement.
lat_shm() {
	local i label cpu poll o
	for i in "${!PLACEMENTS[@]}"; do
		IFS='|' read -r label cpu poll _ <<<"${PLACEMENTS[$i]}"
		o=$WORK/lat-shm$i.out
		say "scene 1: zero-page and shm-tier faults, $label"
		lat_vm "lat-shm$i" "$cpu" "$poll" || failed "shm faults ($label)"
		PL_P50[i]=$(kv "$o" tier_p50_us) PL_P99[i]=$(kv "$o" tier_p99_us)
		say "  zero page p50 $(kv "$o" touch_p50_us) µs;" \
			"shm tier p50 ${PL_P50[$i]:-?} µs, p99 ${PL_P99[$i]:-?} µs"
	done
	ZERO50=$(kv "$WORK/lat-shm0.out" touch_p50_us) ZERO99=$(kv "$WORK/lat-shm0.out" touch_p99_us)
	SHM50=${PL_P50[0]} SHM99=${PL_P99[0]}
}

# The disk-tier run also serves scene 3: while the guest waits with its pages on disk, fio
# reads the disk tier's own file.
lat_disk() {
	local vm=lat-disk sy=$WORK/sync o
	o=$WORK/$vm.out
	mkdir -p "$sy"
	say "scene 1+3: disk-tier faults (shm tier 1 MiB, run_size 4K)," \
		"fault thread on the guest's CPU"
	policy $vm ${LAT_LIMIT}M 4K 1M 1G $GUEST_CPU 0
	env UFFD_MGR_SOCKET="$SOCK" UFFD_MGR_VM=$vm UFFD_MGR_POLICY="$WORK/$vm.conf" \
		LD_PRELOAD="$BUILD/libuffd-shim.so" "$BIN/faultlat" "${FL[@]}" \
		--limit-mb $LAT_LIMIT --sync "$sy" >"$o" 2>"$o.err" &
	BGCHILD=$!
	while [ ! -e "$sy/ready" ] && kill -0 $BGCHILD 2>/dev/null; do sleep 0.05; done
	[ -e "$sy/ready" ] && fio_on_tier "$(tier_file "$WORK/$vm.swap")"
	touch "$sy/go"
	wait $BGCHILD || failed "disk-tier faults: $(tail -n 3 "$o.err")"
	BGCHILD=
	DISK50=$(kv "$o" tier_p50_us) DISK99=$(kv "$o" tier_p99_us) DISKMEAN=$(kv "$o" tier_mean_us)
	longest 1 "$(kv "$o" tier_max_us)" "disk-tier faults"
	meta note4 "Scene 1: of the $(kv "$o" tier_n) disk-tier samples, $(vmstat $vm faults.disk)" \
		"were served from disk, the rest from the 1 MiB shm tier."
	say "  disk tier p50 ${DISK50:-?} µs p99 ${DISK99:-?} µs"
}

# The daemon's descriptor of the swap file once at path (unlinked as soon as it is open), as a
# path fio can open: /proc/PID/fd/N.
tier_file() {
	local fd
	for fd in /proc/"$DAEMON"/fd/*; do
		if [ "$(readlink "$fd")" = "$1 (deleted)" ]; then
			echo "$fd"
			return 0
		fi
	done
	echo "$1" # not found: fio says why
}

# fio randread over the part of the disk tier's file that holds data (slots are handed out
# from 0, and nothing was freed before this point); reads only.
fio_on_tier() {
	local f=$1 size
	size=$(python3 "$SRC/bench/report.py" holes "$f")
	say "scene 3: fio randread 4k QD1 direct io_uring on the disk tier's file" \
		"($((size >> 20)) MiB of data), CPU $GUEST_CPU"
	if run "$WORK/fio.json" fio --name=tier --filename="$f" --readonly --size="$size" \
		--rw=randread --bs=4k --direct=1 --ioengine=io_uring --iodepth=1 \
		--runtime=$FIO_S --time_based --cpus_allowed=$GUEST_CPU --output-format=json; then
		read -r FIO_IOPS FIO50 FIO99 < <(python3 "$SRC/bench/report.py" fio "$WORK/fio.json")
		say "  fio $FIO_IOPS IOPS, read p50 $FIO50 µs"
	else
		failed "fio"
	fi
}

scene1_rows() {
	local same="fault thread on the guest's CPU"
	row 1 "zero-page fault p50 (first touch), $same" "${ZERO50:-n/a}" µs \
		"kernel anon first touch" "$ANON50" "kernel shmem first touch" "$SHMEM50"
	row 1 "zero-page fault p99 (first touch), $same" "${ZERO99:-n/a}" µs \
		"kernel anon first touch" "$ANON99" "kernel shmem first touch" "$SHMEM99"
	row 1 "shm-tier fault p50, $same, busy_poll 0" "${SHM50:-n/a}" µs \
		"kernel anon first touch" "$ANON50" "kernel swap-in" "${SWAP50:-n/a}" \
		"kernel zswap swap-in" "${ZSW50:-n/a}"
	row 1 "shm-tier fault p99, $same, busy_poll 0" "${SHM99:-n/a}" µs \
		"kernel anon first touch" "$ANON99" "kernel swap-in" "${SWAP99:-n/a}" \
		"kernel zswap swap-in" "${ZSW99:-n/a}"
	row 1 "shm-tier fault p50, the policy's default placement" "${PL_P50[-1]:-n/a}" µs \
		"kernel zswap swap-in" "${ZSW50:-n/a}" "kernel swap-in" "${SWAP50:-n/a}"
	row 1 "longest single access in scene 1 under uffd-mgr ($LONGEST1_AT)" "$LONGEST1" µs \
		"longest under kernel swap or zswap (${LONGEST1k_AT:-none})" "$LONGEST1k"
	row 1 "disk-tier fault p50, $same" "${DISK50:-n/a}" µs \
		"kernel swap-in" "${SWAP50:-n/a}" "kernel anon first touch" "$ANON50"
	row 1 "disk-tier fault p99, $same" "${DISK99:-n/a}" µs \
		"kernel swap-in" "${SWAP99:-n/a}" "kernel anon first touch" "$ANON99"
	bar latency "kernel anon first touch" "$ANON50" "$ANON99"
	bar latency "kernel shmem first touch" "$SHMEM50" "$SHMEM99"
	bar latency "uffd zero page" "$ZERO50" "$ZERO99"
	scene1_placement_rows
	bar latency "kernel swap-in" "${SWAP50:-NaN}" "${SWAP99:-NaN}"
	bar latency "kernel zswap swap-in" "${ZSW50:-NaN}" "${ZSW99:-NaN}"
	bar latency "uffd disk tier" "${DISK50:-NaN}" "${DISK99:-NaN}"
	bar latency "fio 4k read (QD1)" "${FIO50:-NaN}" "${FIO99:-NaN}"
}

# The shm tier under each fault-thread placement (the first is in the rows above).
scene1_placement_rows() {
	local i label cpu poll short
	for i in "${!PLACEMENTS[@]}"; do
		IFS='|' read -r label cpu poll short <<<"${PLACEMENTS[$i]}"
		bar latency "uffd shm, $short" "${PL_P50[$i]:-NaN}" "${PL_P99[$i]:-NaN}"
		[ "$i" -gt 0 ] || continue
		row 1 "shm-tier fault p50, $label" "${PL_P50[$i]:-n/a}" µs \
			"kernel anon first touch" "$ANON50"
		row 1 "shm-tier fault p99, $label" "${PL_P99[$i]:-n/a}" µs \
			"kernel anon first touch" "$ANON99"
	done
}

scene3_rows() {
	local iops=n/a
	[ -z "${DISKMEAN:-}" ] || iops=$(awk -v m="$DISKMEAN" 'BEGIN { printf "%.0f", 1e6 / m }')
	row 3 "disk-tier 4 KiB random reads through faults (one page per fault, QD1)" "$iops" IOPS \
		"fio randread 4k QD1 direct io_uring, same file, same CPU" "${FIO_IOPS:-n/a}"
	row 3 "disk-tier fault p50 against one fio read p50" "${DISK50:-n/a}" µs \
		"fio randread 4k QD1 read latency p50" "${FIO50:-n/a}"
}

# ---- scene 2: regrowth ----

RG=(--mb "$REGROW_MB" --cpu "$GUEST_CPU" --max-s "$PASS_S")

# One regrowth run: label out cmd...; sets SEQ and RAND (MiB/s).
regrow_run() {
	local label=$1 o=$2
	shift 2
	say "scene 2: $label"
	SEQ='' RAND=''
	"$@" || { failed "regrowth ($label)"; return 0; }
	SEQ=$(kv "$o" seq_mibs) RAND=$(kv "$o" rand_mibs) FILL=$(kv "$o" fill_s)
	longest "2${KSIDE:-}" "$(kv "$o" seq_max_us)" "$label, sequential"
	longest "2${KSIDE:-}" "$(kv "$o" rand_max_us)" "$label, random"
	say "  fill $FILL s; sequential $SEQ MiB/s, random $RAND MiB/s;" \
		"longest read $(kv "$o" seq_max_us) / $(kv "$o" rand_max_us) µs"
}

regrow_vm() { # label vm run_size shm_max disk_max
	policy "$2" ${REGROW_LIMIT}M "$3" "$4" "$5" $GUEST_CPU 0
	regrow_run "$1" "$WORK/$2.out" managed "$2" "$WORK/$2.out" "$BIN/regrow" "${RG[@]}" \
		--limit-mb $REGROW_LIMIT
}

# The kernel's own paging of the same set in a memory cgroup of the same resident size: swap
# on a file, zswap in front of it, zram. Sets K{SEQ,RAND}, Z{SEQ,RAND}, R{SEQ,RAND}.
scene2_kernel() {
	local cg="memory cgroup of $REGROW_LIMIT MiB" args=("${RG[@]}" --anon --limit-mb $REGROW_LIMIT)
	local KSIDE=k # their longest accesses are the kernel's
	SEQ='' RAND=''
	[ -z "$CG" ] ||
		regrow_run "kernel swap-in, $cg, swap file (baseline)" "$WORK/rg-swap.out" \
			in_cgroup $REGROW_LIMIT "$WORK/rg-swap.out" "$BIN/regrow" "${args[@]}"
	KSEQ=${SEQ:-n/a} KRAND=${RAND:-n/a}
	SEQ='' RAND=''
	[ -z "$CG" ] ||
		regrow_run "kernel zswap ($(cat /sys/module/zswap/parameters/compressor)), $cg" \
			"$WORK/rg-zswap.out" with_zswap in_cgroup $REGROW_LIMIT "$WORK/rg-zswap.out" \
			"$BIN/regrow" "${args[@]}"
	ZSEQ=${SEQ:-n/a} ZRAND=${RAND:-n/a}
	SEQ='' RAND=''
	if [ -n "$CG" ]; then
		with_zram $((REGROW_MB * 5 / 4)) true && regrow_run "kernel zram swap, $cg" \
			"$WORK/rg-zram.out" with_zram $((REGROW_MB * 5 / 4)) in_cgroup $REGROW_LIMIT \
			"$WORK/rg-zram.out" "$BIN/regrow" "${args[@]}" ||
			say "  no zram here (no module, no zram-control): its baseline is n/a"
	fi
	RSEQ=${SEQ:-n/a} RRAND=${RAND:-n/a}
	for k in "kernel swap-in|$KSEQ|$KRAND" "kernel zswap|$ZSEQ|$ZRAND" "kernel zram|$RSEQ|$RRAND"; do
		IFS='|' read -r label sq rn <<<"$k"
		row 2 "$label, sequential" "$sq" MiB/s "memcpy" "$MSEQ"
		row 2 "$label, random" "$rn" MiB/s "memcpy" "$MRAND"
		bar regrow "$label" "${sq/n\/a/NaN}" "${rn/n\/a/NaN}"
	done
}

# First touch of the whole set in address order (regrow's fill), no limit: uffd-mgr against
# the kernel's anonymous first touch (the memcpy run's fill).
scene2_first_touch() {
	local vm=rg-touch mfill=$1
	policy $vm 0 64K 64M 0 $GUEST_CPU 0
	regrow_run "first touch in address order, no limit (fill)" "$WORK/$vm.out" \
		managed $vm "$WORK/$vm.out" "$BIN/regrow" "${RG[@]}"
	row 2 "first touch of $REGROW_MB MiB in address order, no limit" \
		"$(awk -v f="${FILL:-0}" -v m=$REGROW_MB 'BEGIN { print (f > 0 ? m / f : "n/a") }')" MiB/s \
		"kernel anon first touch" "$(awk -v f="$mfill" -v m=$REGROW_MB 'BEGIN { print m / f }')"
}

scene2() {
	local big=$((REGROW_MB * 2))M mfill
	KSIDE=m regrow_run "memcpy of the same bytes, all resident (baseline)" \
		"$WORK/rg-memcpy.out" run "$WORK/rg-memcpy.out" "$BIN/regrow" "${RG[@]}" --anon
	MSEQ=$SEQ MRAND=$RAND mfill=$FILL
	bar regrow "memcpy" "$MSEQ" "$MRAND"
	scene2_kernel
	scene2_first_touch "$mfill"
	# label | VM | run_size | shm max | disk max | plot label
	for cfg in "shm tier, run_size 64K (batched)|rg-shm64k|64K|$big|0|uffd shm, run 64K" \
		"shm tier, run_size 4K (a page per fault)|rg-shm4k|4K|$big|0|uffd shm, run 4K" \
		"disk tier (shm 32M), run_size 64K (batched)|rg-disk64k|64K|32M|$big|uffd disk, run 64K" \
		"disk tier (shm 32M), run_size 4K (a page per fault)|rg-disk4k|4K|32M|$big|uffd disk, run 4K"; do
		IFS='|' read -r label vm rs shm disk short <<<"$cfg"
		regrow_vm "$label" "$vm" "$rs" "$shm" "$disk"
		row 2 "$label, sequential" "${SEQ:-n/a}" MiB/s "kernel swap-in" "$KSEQ" \
			"kernel zswap" "$ZSEQ" "kernel zram" "$RSEQ" memcpy "$MSEQ"
		row 2 "$label, random" "${RAND:-n/a}" MiB/s "kernel swap-in" "$KRAND" \
			"kernel zswap" "$ZRAND" "kernel zram" "$RRAND" memcpy "$MRAND"
		bar regrow "$short" "${SEQ:-NaN}" "${RAND:-NaN}"
	done
	row 2 "longest single page read in scene 2 under uffd-mgr ($LONGEST2_AT)" "$LONGEST2" µs \
		"longest under kernel swap, zswap or zram (${LONGEST2k_AT:-none})" "$LONGEST2k"
}

# ---- scene 4: real guest ----

# Boots the test guest once with memstress: label log [wrapper]; sets GT and GV (ms of the
# memstress phases, and of its verify phases alone). Returns non-zero when the guest failed.
guest_once() {
	local label=$1 log=$2 w=()
	[ -z "${3:-}" ] || w=(--wrapper "$3")
	say "scene 4: memstress ${GUEST_MB} MiB in a $GUEST_RAM $ACCEL guest, $label"
	run "$log.out" "$SRC/tests/guest/run-guest.sh" --mem $GUEST_RAM --timeout 180 --log "$log" \
		--append "memstress.mb=$GUEST_MB memstress.phases=grow,verify,verify" "${w[@]}" ||
		return 1
	GT=$(phase_ms "$log" '') GV=$(phase_ms "$log" verify)
	say "  memstress phases $GT ms (verify $GV ms);" \
		"$(sed -n 's/.*PASS in \(.*\) (log.*/\1/p' "$log.out.err") wall"
}

# Sum of the ms= of the MEMSTRESS phase lines in a console log whose phase starts with $2.
phase_ms() {
	tr -d '\r' <"$1" | awk -v p="MEMSTRESS phase=$2" -F'ms=' \
		'index($0, p) { split($2, a, " "); s += a[1] } END { print s + 0 }'
}

# The median of its arguments (NaN sorts first, as sort -g has it); nothing for none.
median() {
	printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END { if (NR) print a[int((NR + 1) / 2)] }'
}

# Boots the guest GUEST_RUNS times (the guest's phases last about a second, and one boot is
# noisy): label log wrapper short-label; sets GTOTAL and GVERIFY to the medians, empty on a
# failure, and adds every boot's total to GBOOTS.
guest_run() {
	local totals=() verifies=() i
	GTOTAL='' GVERIFY=''
	for i in $(seq "$GUEST_RUNS"); do
		if ! guest_once "$1 (boot $i of $GUEST_RUNS)" "$2.$i" "${3:-}"; then
			failed "guest ($1)"
			return 0
		fi
		totals+=("$GT") verifies+=("$GV")
	done
	GTOTAL=$(median "${totals[@]}") GVERIFY=$(median "${verifies[@]}")
	GBOOTS="${GBOOTS:+$GBOOTS; }$4 ${totals[*]}"
}

scene4() {
	local base base_v
	guest_run "plain QEMU, all RAM resident (baseline)" "$WORK/guest-plain.log" "" "plain QEMU"
	base=${GTOTAL:-n/a} base_v=${GVERIFY:-n/a}
	bar guest "plain QEMU" "$base" "$base_v"
	for cfg in "under uffd-mgr, no resident limit|g-nolimit|0" \
		"under uffd-mgr, resident_max 64M (50%)|g-half|64M" \
		"under uffd-mgr, resident_max 32M (25%)|g-quarter|32M"; do
		IFS='|' read -r label vm lim <<<"$cfg"
		policy "$vm" "$lim" 64K 512M 0 any 0
		guest_run "$label" "$WORK/$vm.log" \
			"$BUILD/uffd-qemu --policy $WORK/$vm.conf --socket $SOCK --" "resident_max $lim"
		row 4 "memstress run time, $label" "${GTOTAL:-n/a}" ms "plain QEMU" "$base"
		row 4 "memstress verify phases, $label" "${GVERIFY:-n/a}" ms "plain QEMU" "$base_v"
		bar guest "${label#under uffd-mgr, }" "${GTOTAL:-NaN}" "${GVERIFY:-NaN}"
	done
	meta note8 "Scene 4, memstress time of every boot (ms): $GBOOTS" \
		"(resident_max 0: no limit)."
}

# ---- scene 10: a real guest paging at a fixed resident limit, against the kernel ----

# One boot of the scene 4 guest with memstress over PAGE_MB in the bench cgroup (limit $2 MiB):
# label limit-MiB log [wrapper]; sets GT and OWN (MiB: the most the cgroup held besides shmem,
# i.e. QEMU's own memory and page cache without the guest memfd, sampled every 100 ms).
paging_once() {
	local label=$1 lim=$2 log=$3 w=() sampler
	[ -z "${4:-}" ] || w=(--wrapper "$4")
	say "scene 10: memstress ${PAGE_MB} MiB in a $GUEST_RAM $ACCEL guest, $label"
	# shellcheck disable=SC2016 # the sampler's own variables
	sh -c 'max=0; while :; do
		u=$(cat "$1/memory.usage_in_bytes"); s=$(sed -n "s/^shmem //p" "$1/memory.stat")
		[ $((u - s)) -le $max ] || { max=$((u - s)); echo $((max >> 20)) >"$2"; }
		sleep 0.1; done' sh "$CG" "$log.own" &
	sampler=$!
	in_cgroup "$lim" "$log.out" "$SRC/tests/guest/run-guest.sh" --mem $GUEST_RAM --timeout 300 \
		--log "$log" --append "memstress.mb=$PAGE_MB memstress.phases=grow,verify,verify" \
		"${w[@]}" || { kill $sampler; return 1; }
	kill $sampler
	wait $sampler 2>/dev/null || true
	GT=$(phase_ms "$log" '') GG=$(phase_ms "$log" grow) OWN=$(cat "$log.own" 2>/dev/null || echo 0)
	say "  memstress phases $GT ms (grow $GG ms); QEMU's own memory at most $OWN MiB"
}

# The same guest and workload three ways with the same guest memory: under uffd-mgr with
# resident_max PAGE_LIMIT (in the cgroup, unlimited, to measure QEMU's own memory: everything
# but the guest memfd), then plain QEMU in the cgroup limited to that own memory plus
# PAGE_LIMIT, the kernel swapping to a file, and with zswap in front of it. Interleaved (uffd,
# swap, zswap, uffd, ...), PAGE_RUNS rounds, medians.
scene10() {
	local i own='' lim w cfg
	declare -A t g
	[ -n "$CG" ] || { say "scene 10: no memory cgroup or swap here: skipped"; return 0; }
	policy g-page "$PAGE_LIMIT" 64K 512M 0 default default
	w="$BUILD/uffd-qemu --policy $WORK/g-page.conf --socket $SOCK --"
	for i in $(seq "$PAGE_RUNS"); do
		if paging_once "under uffd-mgr, resident_max $PAGE_LIMIT (round $i)" 8192 \
			"$WORK/pg-uffd.$i" "$w"; then
			t[uffd]="${t[uffd]:-} $GT" g[uffd]="${g[uffd]:-} $GG"
			# the kernel's QEMU gets the most own memory uffd-mgr's QEMU had in any round
			[ -n "$own" ] && [ "$own" -ge "$OWN" ] || own=$OWN
		else
			failed "scene 10 guest under uffd-mgr"
		fi
		[ -n "$own" ] || continue
		lim=$((own + ${PAGE_LIMIT%M}))
		for cfg in "swap|kernel swap to a file" "zswap|kernel zswap"; do
			IFS='|' read -r k label <<<"$cfg"
			if if [ $k = zswap ]; then
				with_zswap paging_once "plain QEMU, $label, cgroup $lim MiB (round $i)" \
					"$lim" "$WORK/pg-$k.$i"
			else
				paging_once "plain QEMU, $label, cgroup $lim MiB (round $i)" "$lim" \
					"$WORK/pg-$k.$i"
			fi; then
				t[$k]="${t[$k]:-} $GT" g[$k]="${g[$k]:-} $GG"
			else
				failed "scene 10 plain guest ($label)"
			fi
		done
	done
	# shellcheck disable=SC2086 # word lists
	PG_UFFD=$(median ${t[uffd]:-}) PG_SWAP=$(median ${t[swap]:-}) PG_ZSWAP=$(median ${t[zswap]:-})
	row 10 "memstress run time, ${PAGE_MB} MiB at resident_max $PAGE_LIMIT, uffd-mgr (shm tier)" \
		"${PG_UFFD:-n/a}" ms "kernel swap to a file" "${PG_SWAP:-n/a}" "kernel zswap" \
		"${PG_ZSWAP:-n/a}"
	# shellcheck disable=SC2086 # word lists
	row 10 "its grow phase (first touch of $PAGE_MB MiB at the limit), uffd-mgr" \
		"$(median ${g[uffd]:-})" ms "kernel swap to a file" "$(median ${g[swap]:-})" \
		"kernel zswap" "$(median ${g[zswap]:-})"
	meta note14 "Scene 10: memstress over $PAGE_MB MiB in a $GUEST_RAM $ACCEL guest," \
		"grow then verify twice; uffd-mgr at resident_max $PAGE_LIMIT (its shm tier is not" \
		"in the cgroup); the kernel runs plain QEMU in a memory cgroup of ${lim:-n/a} MiB:" \
		"the most own memory uffd-mgr's QEMU had (${own:-n/a} MiB, all but the guest memfd)" \
		"plus $PAGE_LIMIT. Times of every round (ms): uffd${t[uffd]:-};" \
		"swap${t[swap]:-}; zswap${t[zswap]:-}."
}

# ---- scene 5: tracker overhead ----

# One fake guest of TRACK_MB with the tracker in mode $1 ("off", "regions": ebpf's default,
# "exact": ebpf with regions = 0): it writes TRACK_SET pages once, then reads the hot
# TRACK_HOT of them in passes, TRACK_OPS pages per thread. Output in $WORK/tr-$1.out.
track_run() {
	local vm=tr-$1 mode=ebpf regions=1000
	case $1 in off) mode=off ;; exact) regions=0 ;; esac
	printf '[vm]\nname = %s\n[memory]\nresident_max = 0\n[tracker]\nmode = %s\nregions = %s\n' \
		"$vm" "$mode" "$regions" >"$WORK/$vm.conf"
	managed "$vm" "$WORK/$vm.out" "$BUILD/tests/fakeguest" --mb "$TRACK_MB" --threads 2 \
		--pattern "hotcold:$TRACK_HOT:$((TRACK_SET - TRACK_HOT))" --ops "$TRACK_OPS"
}

# The estimate against the truth: the same guest, its passes paced (one every 20 ms), the
# 10 s window read 11 s after its pages are written (it says so: FAKEGUEST WSS), then the
# guest is told to stop (SIGUSR1) and check its pages. Sets TR_EST (pages).
track_estimate() {
	local vm=tr-est
	printf '[vm]\nname = %s\n[memory]\nresident_max = 0\n' "$vm" >"$WORK/$vm.conf"
	env UFFD_MGR_SOCKET="$SOCK" UFFD_MGR_VM=$vm UFFD_MGR_POLICY="$WORK/$vm.conf" \
		LD_PRELOAD="$BUILD/libuffd-shim.so" "$BUILD/tests/fakeguest" --mb "$TRACK_MB" \
		--threads 2 --pattern "hotcold:$TRACK_HOT:$((TRACK_SET - TRACK_HOT))" --seconds 120 \
		>"$WORK/$vm.out" 2>&1 &
	BGCHILD=$!
	for _ in $(seq 600); do
		grep -q 'FAKEGUEST WSS' "$WORK/$vm.out" && break
		sleep 0.1
	done
	sleep 11
	TR_EST=$(($(vmstat $vm tracker.wss_bytes.10s) / 4096)) || TR_EST=
	TR_EST_REGIONS=$(vmstat $vm tracker.regions) || TR_EST_REGIONS=
	kill -USR1 $BGCHILD 2>/dev/null # env has become the fake guest
	wait $BGCHILD || failed "scene 5: estimate run: $(tail -n 3 "$WORK/$vm.out")"
	BGCHILD=
}

scene5() {
	local mode i
	declare -A pass fill flt secs
	for i in $(seq "$TRACK_RUNS"); do
		for mode in off regions exact; do
			say "scene 5: $TRACK_MB MiB fake guest, tracker $mode, run $i of $TRACK_RUNS"
			if track_run $mode; then
				pass[$mode]="${pass[$mode]:-} $(kv "$WORK/tr-$mode.out" pass_ms)"
				fill[$mode]="${fill[$mode]:-} $(kv "$WORK/tr-$mode.out" fill_ms)"
				flt[$mode]="${flt[$mode]:-} $(kv "$WORK/tr-$mode.out" minflt)"
				secs[$mode]="${secs[$mode]:-} $(kv "$WORK/tr-$mode.out" ms)"
			else
				failed "scene 5 fake guest (tracker $mode)"
			fi
		done
	done
	say "scene 5: the estimate of the default tracker against the truth ($TRACK_HOT pages)"
	track_estimate
	local off_p reg_p ex_p off_f reg_f ex_f fl_off fl_reg fl_ex
	off_p=$(median ${pass[off]:-}) reg_p=$(median ${pass[regions]:-}) ex_p=$(median ${pass[exact]:-})
	off_f=$(median ${fill[off]:-}) reg_f=$(median ${fill[regions]:-}) ex_f=$(median ${fill[exact]:-})
	# Faults the tracker causes: minor faults beyond the run without it, per second of run.
	fl_off=$(median ${flt[off]:-})
	fl_reg=$(python3 -c "import sys; print(max(0, round(($(median ${flt[regions]:-0}) - ${fl_off:-0}) / ($(median ${secs[regions]:-1}) / 1000))))")
	fl_ex=$(python3 -c "import sys; print(max(0, round(($(median ${flt[exact]:-0}) - ${fl_off:-0}) / ($(median ${secs[exact]:-1}) / 1000))))")
	row 5 "4 GiB fake guest, $TRACK_HOT hot pages read in passes, tracker ebpf regions (default)" \
		"${reg_p:-n/a}" ms "tracker off" "${off_p:-n/a}"
	row 5 "the same, tracker ebpf exact (regions = 0: every resident page armed)" \
		"${ex_p:-n/a}" ms "tracker off" "${off_p:-n/a}"
	row 5 "4 GiB fake guest writing $TRACK_SET pages (faults), tracker ebpf regions" \
		"${reg_f:-n/a}" ms "tracker off" "${off_f:-n/a}"
	row 5 "the same, tracker ebpf exact" "${ex_f:-n/a}" ms "tracker off" "${off_f:-n/a}"
	row 5 "minor faults the tracker causes, 4 GiB guest, regions (default)" "${fl_reg:-n/a}" \
		faults/s "exact" "${fl_ex:-n/a}"
	row 5 "working-set estimate, 4 GiB guest, regions, 10 s window" "${TR_EST:-n/a}" pages \
		"truth" "$TRACK_HOT"
	meta note9 "Scene 5: a $TRACK_MB MiB fake guest writes $TRACK_SET pages, then reads" \
		"$TRACK_HOT of them in back-to-back passes, $TRACK_OPS pages per thread, 2 threads," \
		"nothing evicted; medians of $TRACK_RUNS interleaved runs per tracker mode. Pass" \
		"times (ms) off:${pass[off]:-}, regions:${pass[regions]:-}, exact:${pass[exact]:-};" \
		"write times (ms) off:${fill[off]:-}, regions:${fill[regions]:-}," \
		"exact:${fill[exact]:-}. The estimate: the same guest paced (a pass every 20 ms), 10 s" \
		"window 11 s after its pages were written, ${TR_EST_REGIONS:-?} regions."
}

# ---- scene 6: three guests sharing a budget, balloon and prefetch on against off ----

# Boots the three phased guests against the daemon at $1 with policies $2-g{1,2,3}.conf;
# sets S6_MS (wall time until all are done) and S6_PAGES (tier-fault pages of the three).
three_guests() {
	local sock=$1 pre=$2 pids=() t0 rc=0 g
	t0=$(date +%s%N)
	for g in "g1 grow,touch:25,shrink:16,touch:30 160" "g2 grow,shrink:16,touch:25,regrow,touch:30 160" \
		"g3 grow,touch:55 64"; do
		set -- $g
		"$SRC/tests/guest/run-guest.sh" --mem 256M --timeout 400 --log "$WORK/$pre-$1.console" \
			--append "memstress.mb=$3 memstress.phases=$2" \
			--wrapper "$BUILD/uffd-qemu --policy $WORK/$pre-$1.conf --socket $sock --" \
			>"$WORK/$pre-$1.out" 2>&1 &
		pids+=($!)
	done
	BGCHILD="$BGCHILD ${pids[*]}"
	for g in "${pids[@]}"; do wait "$g" || rc=1; done
	S6_MS=$((($(date +%s%N) - t0) / 1000000))
	S6_PAGES=$("$BUILD/uffdctl" --socket "$sock" stats --json | python3 -c '
import json, sys
print(sum(v["faults"]["shm_pages"] + v["faults"]["disk_pages"] for v in json.load(sys.stdin)["vms"]))')
	return $rc
}

scene6() {
	local mode d sock g
	declare -A ms pages
	for mode in off on; do
		say "scene 6: three guests, 384 MiB budget, balloon and prefetch $mode"
		sock=$WORK/s6-$mode.sock
		"$BUILD/uffd-mgrd" --socket "$sock" --log "$WORK/s6-$mode.log" --budget 384M &
		d=$!
		BGCHILD="$BGCHILD $d"
		for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.05; done
		for g in g1 g2 g3; do
			printf '[vm]\nname = s6%s-%s\n[memory]\nresident_max = 0\ncritical_min = 32M\n' \
				"$mode" "$g" >"$WORK/s6$mode-$g.conf"
			printf '[balloon]\nenabled = %s\nmin = 64M\n[prefetch]\nproactive = %s\n' \
				"$mode" "$mode" >>"$WORK/s6$mode-$g.conf"
		done
		if three_guests "$sock" "s6$mode"; then
			ms[$mode]=$S6_MS pages[$mode]=$S6_PAGES
		else
			failed "scene 6 ($mode): a guest failed"
		fi
		stop "$d" || true
	done
	row 6 "three guests: pages faulted back from the tiers, balloon+prefetch on" \
		"${pages[on]:-n/a}" pages "balloon+prefetch off" "${pages[off]:-n/a}"
	row 6 "three guests: time until all three are done, balloon+prefetch on" \
		"${ms[on]:-n/a}" ms "balloon+prefetch off" "${ms[off]:-n/a}"
	meta note10 "Scene 6: 3 guests of 256 MiB (TCG), budget 384 MiB; g1 grows to 160 MiB then" \
		"shrinks to 16, g2 the other way round, g3 holds 64; one run each way."
}

# ---- scene 7: eviction bookkeeping on a 4 GiB map ----

# Value of key in the EVICTBENCH line of impl in file: ev file impl key.
ev() { grep "impl=$2 " "$1" | kv /dev/stdin "$3"; }

scene7() {
	local rk arm label o
	for rk in 4 64; do
		for arm in 256 0; do
			label="run_size ${rk}K, arming $([ $arm = 0 ] && echo pending || echo applied)"
			o=$WORK/evict-$rk-$arm.out
			say "scene 7: victim picks on a 4 GiB map, 64 MiB resident, $label"
			run "$o" "$BIN/evictbench" --mb 4096 --limit-mb 64 --run-kb $rk \
				--arm-faults $arm --max-s 2 || { failed "evictbench ($label)"; continue; }
			say "  picks/s $(ev "$o" new picks_s), old walk $(ev "$o" old picks_s);" \
				"visits per pick $(ev "$o" new steps_per_pick), old $(ev "$o" old steps_per_pick)"
			row 7 "victim picks, 4 GiB map, $label" "$(ev "$o" new picks_s)" picks/s \
				"old whole-map walk" "$(ev "$o" old picks_s)"
			row 7 "pages evicted (bookkeeping only), $label" "$(ev "$o" new pages_s)" pages/s \
				"memcpy of the same bytes" "$(ev "$o" memcpy pages_s)" \
				"old whole-map walk" "$(ev "$o" old pages_s)"
		done
	done
	meta note11 "Scene 7: evictbench, 4 GiB map, 64 MiB resident limit, runs read back at" \
		"random, an epoch (every resident run armed) every 4096 runs; arming applied: its" \
		"REMOVEs within 256 faults; pending: not before the next epoch, so only runs brought" \
		"back since can be evicted. 2 s per impl; page map bookkeeping only."
}

# ---- scene 8: the pause across a daemon kill -9 + restart, and across an upgrade ----

PAUSE_N=7 # kills, then as many upgrades

# Waits (up to 30 s) until VM $1 has been adopted $2 times in all.
wait_adopted() {
	for _ in $(seq 300); do
		[ "$(vmstat "$1" restarts.adoptions 2>/dev/null)" = "$2" ] && return 0
		sleep 0.1
	done
	return 1
}

# One pause of VM $1, adoption number $2, by $3 (kill or upgrade): the daemon goes away and a
# new one adopts the VM. Appends "how daemon_pause_ms" to $WORK/pauses. Returns non-zero when
# it went wrong.
pause_once() {
	if [ "$3" = kill ]; then
		kill -KILL "$DAEMON"
		wait "$DAEMON" 2>/dev/null || true
		start_daemon # at once, as Restart=always with RestartSec=0
	else
		"$UFFDCTL" --socket "$SOCK" upgrade >"$WORK/upgrade.out" 2>&1 || return 1
	fi
	wait_adopted "$1" "$2" || return 1
	echo "$3 $(vmstat "$1" restarts.last_pause_ms)" >>"$WORK/pauses"
}

# The guest's pause at each adoption of VM $2, from pausebench's output $1: the gap that holds
# the moment the daemon's log says it adopted the VM (the old daemon had gone, and the new one
# starts serving only after that line; the log stamps UTC to the ms, so the moment is taken as
# 1 ms long). Other gaps are no pause of ours: the running daemon makes some too. The first
# line of $WORK/pauses relates CLOCK_MONOTONIC, which the gaps use, to the log's clock.
# Prints "how gap_ms daemon_pause_ms" per line of $WORK/pauses, then "other count longest_ms"
# of the other gaps.
match_pauses() {
	awk -v vm="$2" 'FILENAME == ARGV[1] && FNR == 1 { mono = $3; real = $5; next }
	FILENAME == ARGV[1] { n++; how[n] = $1; dp[n] = $2; next }
	FILENAME == ARGV[2] && index($0, "[" vm "]: adopted (") {
		split($1, t, ":"); split($0, w, "adopted [(]"); split(w[2], k, " ")
		day = int(real / 1e9 / 86400) * 86400
		s = day + t[1] * 3600 + t[2] * 60 + t[3]
		if (s * 1e9 < real - 43200e9)
			s += 86400 # past midnight
		at[k[1] + 0] = s * 1e9 - (real - mono)
		next
	}
	/^gap / {
		split($2, a, "="); split($3, b, "="); split($4, c, "=")
		mine = 0
		for (i = 1; i <= n; i++)
			if ((i in at) && a[2] + 0 <= at[i] + 1e6 && b[2] + 0 >= at[i]) {
				ms[i] = c[2] + 0
				mine = 1
			}
		if (!mine) {
			others++
			longest = c[2] + 0 > longest ? c[2] + 0 : longest
		}
	}
	END {
		for (i = 1; i <= n; i++)
			print how[i], (i in ms) ? ms[i] : "n/a", dp[i]
		print "other", others + 0, longest + 0
	}' \
		"$WORK/pauses" "$WORK/daemon.log" "$1"
}

# Column $2 of the matched pauses of kind $1, on one line.
pause_col() {
	awk -v h="$1" -v c="$2" '$1 == h { printf "%s%s", s, $c; s = " " }' "$WORK/pauses.matched"
}

# scene8 MODE: the tracker's mode in the VM's policy. Its default (ebpf) arms every resident
# page each second, and an arming in flight holds up faults by itself; with it off, a pause is
# the restart's alone.
scene8() {
	local mode=$1 vm=pause-$1 o=$WORK/pause-$1.out pb i how fault50 fault99 k_ms u_ms k_dp u_dp dmax
	# The daemon's log stamps CLOCK_REALTIME: this line relates it to the pauses.
	python3 -c 'import time; print("# monotonic_ns", time.monotonic_ns(), "realtime_ns",
	time.time_ns())' >"$WORK/pauses"
	say "scene 8: pausebench, 192 MiB, $LAT_LIMIT MiB resident, tracker $mode, fill and settle"
	policy $vm ${LAT_LIMIT}M 4K 512M 0 $GUEST_CPU 0
	printf '[tracker]\nmode = %s\n' "$mode" >>"$WORK/$vm.conf"
	env UFFD_MGR_SOCKET="$SOCK" UFFD_MGR_VM=$vm UFFD_MGR_POLICY="$WORK/$vm.conf" \
		LD_PRELOAD="$BUILD/libuffd-shim.so" "$BIN/pausebench" --mb "$LAT_MB" \
		--limit-mb "$LAT_LIMIT" --cpu "$GUEST_CPU" >"$o" 2>"$o.err" &
	pb=$!
	BGCHILD=$pb
	while ! grep -q '^PAUSEBENCH ready' "$o" && kill -0 $pb 2>/dev/null; do sleep 0.1; done
	if ! grep -q '^PAUSEBENCH ready' "$o"; then
		wait $pb || true
		BGCHILD=
		failed "scene 8: pausebench did not start: $(tail -n 3 "$o.err")"
		return 0
	fi
	sleep 2 # the running daemon's faults, before the first kill
	for i in $(seq $((2 * PAUSE_N))); do
		how="kill"
		[ "$i" -le $PAUSE_N ] || how="upgrade"
		say "scene 8: $how $(((i - 1) % PAUSE_N + 1)) of $PAUSE_N"
		pause_once $vm "$i" $how || { failed "scene 8: $how $i: no adoption"; break; }
		sleep 1
	done
	dmax=$(vmstat $vm restarts.max_pause_ms 2>/dev/null || echo n/a)
	kill -USR1 $pb 2>/dev/null || true
	wait $pb || failed "scene 8: pausebench: $(tail -n 3 "$o.err")"
	BGCHILD=
	fault50=$(kv "$o" fault_p50_us) fault99=$(kv "$o" fault_p99_us)
	match_pauses "$o" $vm >"$WORK/pauses.matched"
	cp "$o" "$OUT/pause-gaps-$mode.txt"
	cp "$WORK/pauses" "$OUT/pauses-$mode.txt"
	k_ms=$(pause_col kill 2) u_ms=$(pause_col upgrade 2)
	k_dp=$(pause_col kill 3) u_dp=$(pause_col upgrade 3)
	scene8_rows "$fault50" "$k_ms" "$u_ms" "$mode"
	say "  shm-tier fault p50 ${fault50:-?} µs p99 ${fault99:-?} µs; pauses (ms) kill: $k_ms;" \
		"upgrade: $u_ms; other gaps: $(pause_col other 2), longest $(pause_col other 3) ms"
	meta "note12$mode" "Scene 8, tracker $mode: pausebench reads pages of $LAT_MB MiB at random, $LAT_LIMIT MiB" \
		"resident, run_size 4K, the fault thread on the guest's CPU; a pause is the time" \
		"between two reads served that holds the new daemon's adoption of the VM: from the last" \
		"read before the kill to the first after. Pauses (ms) kill -9 + restart: $k_ms;" \
		"upgrade: $u_ms. The daemon's own count (restarts.last_pause_ms, from the shim losing" \
		"it to the adoption's end) kill: $k_dp; upgrade: $u_dp; restarts.max_pause_ms" \
		"$dmax. Other gaps over 2 ms" \
		"(the running daemon's): $(pause_col other 2), the longest $(pause_col other 3) ms;" \
		"$(kv "$o" fault_n) shm-tier faults timed."
}

# Rows of scene 8: fault p50 (µs), the kill pauses, the upgrade pauses (ms, space-separated).
scene8_rows() {
	local base=n/a how ms p50 max
	[ -z "$1" ] || base=$(awk -v u="$1" 'BEGIN { printf "%.4f", u / 1000 }')
	for how in "kill -9 + restart|$2" "uffdctl upgrade|$3"; do
		IFS='|' read -r how ms <<<"$how"
		ms=$(printf '%s\n' $ms | grep -v n/a | sort -n || true) # unmatched: n/a
		p50=$(median $ms) max=$(echo "$ms" | tail -n 1)
		row 8 "pause across $how, tracker $4, p50 of $PAUSE_N" "${p50:-n/a}" ms \
			"shm-tier fault p50 of the running daemon" "$base"
		row 8 "pause across $how, tracker $4, max of $PAUSE_N" "${max:-n/a}" ms \
			"shm-tier fault p50 of the running daemon" "$base"
	done
}

# ---- scene 9: fair disk I/O between VMs ----

# The light VM's disk-tier faults, $1 (a label); with $2 = thrash, while two VMs thrash their
# disk tiers. Sets L50 and L99 (µs).
fair_light() {
	local vm=fair-light$3 sy=$WORK/sync-fair$3 o i t=()
	o=$WORK/$vm.out
	L50='' L99=''
	rm -rf "$sy" && mkdir -p "$sy"
	say "scene 9: light VM's disk-tier faults, $1"
	policy $vm ${FAIR_LIMIT}M 4K 1M 1G $GUEST_CPU 0
	# No tracker (its arming each second would stall faults alike with or without the others)
	# and no prefetch (the planner would bring some of the sampled pages back ahead).
	printf '[tracker]\nmode = off\n[prefetch]\nproactive = off\n' >>"$WORK/$vm.conf"
	env UFFD_MGR_SOCKET="$SOCK" UFFD_MGR_VM=$vm UFFD_MGR_POLICY="$WORK/$vm.conf" \
		LD_PRELOAD="$BUILD/libuffd-shim.so" "$BIN/faultlat" --mb $FAIR_MB \
		--samples $FAIR_SAMPLES --cpu $GUEST_CPU --limit-mb $FAIR_LIMIT --sync "$sy" \
		--seed 9 >"$o" 2>"$o.err" &
	BGCHILD=$!
	while [ ! -e "$sy/ready" ] && kill -0 $BGCHILD 2>/dev/null; do sleep 0.05; done
	if [ "$2" = thrash ]; then
		for i in 1 2; do
			policy thrash$i$3 ${THRASH_LIMIT}M 64K 8M 1G $OTHER_CPU 0
			printf '[tracker]\nmode = off\n[prefetch]\nproactive = off\n' \
				>>"$WORK/thrash$i$3.conf"
			env UFFD_MGR_SOCKET="$SOCK" UFFD_MGR_VM=thrash$i$3 \
				UFFD_MGR_POLICY="$WORK/thrash$i$3.conf" \
				LD_PRELOAD="$BUILD/libuffd-shim.so" "$BIN/regrow" --mb $THRASH_MB \
				--limit-mb $THRASH_LIMIT --cpu $OTHER_CPU --max-s 60 --seed $i \
				>"$WORK/thrash$i$3.out" 2>&1 &
			t+=($!)
		done
		# Thrashing: both read runs back from disk, each pushing another out to it.
		for _ in $(seq 1200); do
			[ "$(vmstat thrash1$3 faults.disk 2>/dev/null || echo 0)" -gt 500 ] &&
				[ "$(vmstat thrash2$3 faults.disk 2>/dev/null || echo 0)" -gt 500 ] && break
			sleep 0.1
		done
	fi
	touch "$sy/go"
	wait $BGCHILD || failed "scene 9 light VM ($1): $(tail -n 3 "$o.err")"
	BGCHILD=
	if [ "$2" = thrash ]; then
		THRASH_DISK=$(($(vmstat thrash1$3 faults.disk) + $(vmstat thrash2$3 faults.disk)))
		stop "${t[0]}" || true
		stop "${t[1]}" || true
	fi
	L50=$(kv "$o" tier_p50_us) L99=$(kv "$o" tier_p99_us)
	say "  light VM fault p50 ${L50:-?} µs, p99 ${L99:-?} µs," \
		"$(vmstat $vm faults.disk) of $FAIR_SAMPLES from disk;" \
		"the thrashing VMs' disk faults: ${THRASH_DISK:-none}"
	THRASH_DISK=''
}

# The disk's own share of the interference, without uffd-mgr: one fio job reading 4 KiB at
# random, QD1, like the light VM's faults, alone and then beside two jobs reading and writing
# 64 KiB runs like the thrashing VMs (direct io_uring, files on the disk tier's file system,
# the light job on the light VM's CPU). Sets FIO_A99 and FIO_T99 (µs).
fio_interference() {
	local o=$WORK/fio-fair
	local light=(--name=light --filename="$o-light" --size=96M --rw=randread --bs=4k
		--iodepth=1 --cpus_allowed=$GUEST_CPU)
	local bg=(--name=bg1 --filename="$o-bg1" --size=256M --rw=randrw --bs=64k --iodepth=4
		--cpus_allowed=$OTHER_CPU --name=bg2 --filename="$o-bg2" --size=256M --rw=randrw
		--bs=64k --iodepth=4 --cpus_allowed=$OTHER_CPU)
	local common=(--direct=1 --ioengine=io_uring --runtime=$FIO_S --time_based
		--output-format=json)
	say "scene 9: fio 4k random reads QD1, alone and beside two 64k read/write jobs"
	FIO_A99='' FIO_T99=''
	if run "$o-alone.json" fio "${common[@]}" "${light[@]}" &&
		run "$o-thrash.json" fio "${common[@]}" "${light[@]}" "${bg[@]}"; then
		FIO_A99=$(python3 "$SRC/bench/report.py" fio "$o-alone.json" | cut -d' ' -f3)
		FIO_T99=$(python3 "$SRC/bench/report.py" fio "$o-thrash.json" | cut -d' ' -f3)
		say "  fio 4k read p99 alone $FIO_A99 µs, beside the two jobs $FIO_T99 µs"
	else
		failed "scene 9 fio"
	fi
	rm -f "$o-light" "$o-bg1" "$o-bg2"
}


scene9() {
	local r a50=() a99=() on50=() on99=() off50=() off99=() what="light VM's disk-tier fault"
	# Interleaved, so that a spell of load from elsewhere on the host hits each setting alike.
	for r in $(seq $FAIR_RUNS); do
		say "scene 9: run $r of $FAIR_RUNS"
		fair_light "alone" alone a$r
		a50+=("${L50:-NaN}") a99+=("${L99:-NaN}")
		fair_light "beside two VMs thrashing their disk tiers, disk scheduler on (default)" \
			thrash b$r
		on50+=("${L50:-NaN}") on99+=("${L99:-NaN}")
		stop "$DAEMON" || true
		start_daemon --disk-inflight 0
		fair_light "beside two VMs thrashing their disk tiers, no disk scheduler" thrash c$r
		off50+=("${L50:-NaN}") off99+=("${L99:-NaN}")
		stop "$DAEMON" || true
		start_daemon
	done
	meta note9 "Scene 9: medians of $FAIR_RUNS runs per setting, interleaved; the light VM" \
		"($FAIR_MB MiB, $FAIR_LIMIT MiB resident, run_size 4K, $FAIR_SAMPLES random reads of" \
		"pushed-out pages) alone had p99s of ${a99[*]} µs, beside the thrashers ${on99[*]} µs" \
		"with the disk scheduler and ${off99[*]} µs without."
	row 9 "$what p99, two VMs thrashing their disk tiers, disk scheduler on (default)" \
		"$(median "${on99[@]}")" µs "the same VM alone" "$(median "${a99[@]}")"
	row 9 "$what p99, two VMs thrashing their disk tiers, no disk scheduler" \
		"$(median "${off99[@]}")" µs "the same VM alone" "$(median "${a99[@]}")"
	fio_interference
	row 9 "fio 4k random read p99 (QD1), beside two fio jobs reading and writing 64k" \
		"${FIO_T99:-n/a}" µs "the same fio job alone" "${FIO_A99:-n/a}"
	row 9 "$what p50, two VMs thrashing their disk tiers, disk scheduler on (default)" \
		"$(median "${on50[@]}")" µs "the same VM alone" "$(median "${a50[@]}")"
	row 9 "$what p50, two VMs thrashing their disk tiers, no disk scheduler" \
		"$(median "${off50[@]}")" µs "the same VM alone" "$(median "${a50[@]}")"
}

# ---- scene 11: the compressed shm tier on guest-like memory ----

# The guest-like data, $LAT_MB MiB of it, into $WORK/zcorpus; says what went in.
zcorpus() {
	local k
	k=$(cat "$BUILD/guest/kernel.id" 2>/dev/null || true)
	[ -n "$k" ] && [ -d "$k/lib/modules" ] || { failed "scene 11: no guest kernel"; return 1; }
	ZC_WHAT=$(python3 "$SRC/bench/report.py" corpus "$WORK/zcorpus" "$LAT_MB" \
		"$BUILD/guest/vmlinuz" "$BUILD/guest/initramfs.cpio.gz" \
		"$BUILD/guest/initramfs.root" "$k"/boot/System.map-* "$k"/boot/config-* \
		"$k/lib/modules") || { failed "scene 11: corpus"; return 1; }
}

# One run: compress run_size. Sets ZC_CAP (guest bytes in shm per pool byte, read while the
# guest waits with its pages pushed out), ZC50 and ZC99 (µs).
zc_run() {
	local alg=$1 rs=$2 vm=zc-$1-$2 sy=$WORK/sync-zc-$1-$2 o=$WORK/zc-$1-$2.out
	ZC_CAP='' ZC50='' ZC99=''
	mkdir -p "$sy"
	policy "$vm" ${LAT_LIMIT}M "$rs" 512M 0 $GUEST_CPU 0
	printf '[shm]\ncompress = %s\n' "$alg" >>"$WORK/$vm.conf"
	say "scene 11: shm tier, compress $alg, run_size $rs, guest-like data"
	env UFFD_MGR_SOCKET="$SOCK" UFFD_MGR_VM=$vm UFFD_MGR_POLICY="$WORK/$vm.conf" \
		LD_PRELOAD="$BUILD/libuffd-shim.so" "$BIN/faultlat" "${FL[@]}" \
		--limit-mb $LAT_LIMIT --corpus "$WORK/zcorpus" --sync "$sy" >"$o" 2>"$o.err" &
	BGCHILD=$!
	while [ ! -e "$sy/ready" ] && kill -0 $BGCHILD 2>/dev/null; do sleep 0.05; done
	if [ -e "$sy/ready" ]; then
		ZC_CAP=$(awk -v a="$(vmstat $vm shm_bytes)" -v b="$(vmstat $vm shm_stored_bytes)" \
			'BEGIN { if (b > 0) printf "%.3f", a / b }')
		ZC_MIB=$(($(vmstat $vm shm_bytes) >> 20))
	fi
	touch "$sy/go"
	wait $BGCHILD || failed "scene 11 ($alg, $rs): $(tail -n 3 "$o.err")"
	BGCHILD=
	ZC50=$(kv "$o" tier_p50_us) ZC99=$(kv "$o" tier_p99_us)
	say "  capacity ${ZC_CAP:-?}x of $ZC_MIB MiB; fault p50 ${ZC50:-?} µs p99 ${ZC99:-?} µs"
}

scene11() {
	local rs alg off50 off99 offcap
	zcorpus || return 0
	say "scene 11: corpus: $ZC_WHAT"
	for rs in 4K 64K; do
		zc_run off $rs
		offcap=${ZC_CAP:-n/a} off50=${ZC50:-n/a} off99=${ZC99:-n/a}
		for alg in lz4 zstd; do
			zc_run $alg $rs
			row 11 "compressed shm tier, $alg, run_size $rs: guest bytes held per pool byte" \
				"${ZC_CAP:-n/a}" x "uncompressed shm tier" "$offcap"
			row 11 "shm-tier fault p50, compress $alg, run_size $rs, guest-like data" \
				"${ZC50:-n/a}" µs "uncompressed shm tier, same data" "$off50"
			row 11 "shm-tier fault p99, compress $alg, run_size $rs, guest-like data" \
				"${ZC99:-n/a}" µs "uncompressed shm tier, same data" "$off99"
		done
	done
	meta note13 "Scene 11: $LAT_MB MiB of guest-like data ($ZC_WHAT: the test guest's" \
		"vmlinuz and initramfs.cpio.gz, the initramfs' files, System.map and config, then" \
		"its kernel modules in path order; all-zero pages left out), $LAT_LIMIT MiB" \
		"resident, shm max 512M; capacity read while the guest waits with its pages out;" \
		"$LAT_SAMPLES pages read back at random, fault thread on CPU $GUEST_CPU. With 64K" \
		"runs each fault brings back up to 16 pages, more than the discards made room for," \
		"so the evictor works during the timed reads and a fault can wait for it (the" \
		"throttle): compressing makes eviction slower, and that wait shows in the p99."
}

# ---- the report ----

machine_meta() {
	local cpu mem hyp fs dev disk irq
	cpu=$(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -n 1)
	mem=$(free -g | awk '/Mem:/ { print $2 }')
	hyp=$(lscpu | sed -n 's/^Hypervisor vendor: *//p')
	fs=$(df --output=source,fstype "$WORK" | tail -n 1 | tr -s ' ')
	meta date "$(date -u '+%Y-%m-%d %H:%M UTC')"
	meta machine "Linux $(uname -r), $(nproc) x $cpu, $mem GiB${hyp:+, a $hyp guest}, disk $fs"
	meta note1 "Guest threads are pinned to CPU $GUEST_CPU; each row says where the fault" \
		"thread is (cpu = follow, the policy default, moves it to the guest's CPU). The real" \
		"guest (scene 4) runs under $ACCEL," \
		"unpinned, with the default placement."
	meta note2 "Scene 1: $LAT_MB MiB filled, resident limit $LAT_LIMIT MiB, run_size 4K;" \
		"$LAT_SAMPLES pages first-touched, then $LAT_SAMPLES pushed-out pages read once each in" \
		"random order, after the guest discarded as many resident pages so that no eviction" \
		"runs meanwhile."
	meta note13 "Scenes 1 and 2: kernel zswap ($(cat /sys/module/zswap/parameters/compressor))" \
		"sits in front of the same swap file; zram is a device of our own (lzo-rle by" \
		"default) as the only swap. The pages' pattern compresses well, which favours both." \
		"Each scene's last row is the longest single access any of its runs saw."
	meta note3 "Scene 2: working set $REGROW_MB MiB, resident limit $REGROW_LIMIT MiB kept while" \
		"reading back (the evictor runs alongside, as reclaim does in the cgroup); each pass" \
		"stops after $PASS_S s and its rate is over the pages it read. Scene 4: median of" \
		"$GUEST_RUNS boots per setting."
	# Where the disk's completions land decides which CPU a waiting reader is woken on.
	dev=$(basename "$(df --output=source "$WORK" | tail -n 1)")
	disk=$(basename "$(readlink -f "/sys/block/$dev/device" 2>/dev/null)" 2>/dev/null || true)
	irq=$(grep -E " $disk-req" /proc/interrupts 2>/dev/null |
		awk '{ printf "CPU0 %s, CPU1 %s", $2, $3 }' || true)
	[ -z "$irq" ] || meta note5 "Completion interrupts of the disk ($dev, $disk) so far: $irq."
	meta note6 "Load average at the start: $(cut -d' ' -f1-3 /proc/loadavg) (anything else" \
		"running on this host shares its $(nproc) CPUs)."
}

report() {
	meta duration "$((SECONDS - T0)) s"
	meta note7 "Load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)."
	python3 "$SRC/bench/report.py" table "$OUT" >"$OUT/table.txt"
	if [ -n "${BENCH_SCENES:-}" ]; then # a partial run: no plots, bench/latest.* stay as they are
		echo
		cat "$OUT/table.txt"
		say "done in $((SECONDS - T0)) s (scenes $BENCH_SCENES): $OUT/bench.json, $OUT/latest.md"
		return 0
	fi
	gnuplot -e "dir='$OUT'; wset='$REGROW_MB MiB set, $REGROW_LIMIT MiB resident'" \
		-e "gset='$GUEST_MB MiB, grow,verify,verify, $ACCEL (median of $GUEST_RUNS boots)'" \
		"$SRC/bench/plots.gp" || failed "gnuplot"
	cp "$OUT/latest.md" "$SRC/bench/latest.md"
	[ ! -f "$OUT/main.png" ] || cp "$OUT/main.png" "$SRC/bench/latest.png"
	echo
	cat "$OUT/table.txt"
	echo
	say "done in $((SECONDS - T0)) s: $OUT/bench.json, $OUT/*.png, bench/latest.md, bench/latest.png"
}

# Whether scene $1 is among BENCH_SCENES (default: all).
scene() { [[ " ${BENCH_SCENES:-1 2 3 4 5 6 7 8 9 10 11} " == *" $1 "* ]]; }

main() {
	check_prereqs
	mkdir -p "$OUT"
	rm -f "$OUT"/rows.tsv "$OUT"/plots.tsv "$OUT"/meta.txt "$OUT"/*.dat "$OUT"/*.png
	WORK=$(mktemp -d /var/tmp/uffd-bench.XXXXXX) # the disk tier, swap file: one file system
	SOCK=$WORK/uffd-mgr.sock
	say "building bench programs into $BIN"
	build_programs
	machine_meta
	! scene 1 && ! scene 2 && ! scene 10 || setup_swap
	start_daemon
	if scene 1; then
		lat_kernel
		lat_shm
		lat_disk
		scene1_rows
		scene3_rows
	elif scene 3; then # alone: its disk-tier faults and fio, without the rest of scene 1
		lat_disk
		scene3_rows
	fi
	! scene 2 || scene2
	! scene 7 || scene7
	! scene 8 || { scene8 off && scene8 ebpf; }
	! scene 9 || scene9
	! scene 11 || scene11
	! scene 4 || scene4
	! scene 10 || scene10
	! scene 5 || scene5
	! scene 6 || scene6
	report
	[ $FAILED -eq 0 ] || die "some steps failed (see above); their rows say n/a"
}

main "$@"
