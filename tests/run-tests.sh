#!/bin/bash
# Runs uffd-mgr's tests: every unit test program (build/tests/test_*), then every system test
# script (tests/system/*.sh), each under a time bound, with its output in build/test-logs/.
# Exit codes of a test: 0 pass, 77 skip (it prints the missing feature), anything else fail.
# Like liburing's runner, a test also fails if the kernel log gains a BUG: or WARNING: line.
#   --unit     unit tests only
#   --stress   the long stress tests (tests/stress/*.sh) instead
set -u
here=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-$here/build}
export BUILD UFFD_SRC=$here
logs=$BUILD/test-logs
mkdir -p "$logs"
mode=${1:-all}

pass=0 fail=0 skip=0 failed_names=""

kernel_marks() {
	dmesg 2>/dev/null | grep -cE 'BUG:|WARNING:' || true
}

run_one() { # name timeout command...
	local name=$1 limit=$2 start rc before after
	shift 2
	before=$(kernel_marks)
	start=$(date +%s%N)
	timeout --kill-after=10 "$limit" "$@" >"$logs/$name.log" 2>&1
	rc=$?
	after=$(kernel_marks)
	if [ "$rc" -eq 0 ] && [ "$after" != "$before" ]; then
		echo "kernel log gained BUG/WARNING lines during $name" >>"$logs/$name.log"
		rc=1
	fi
	local ms=$((($(date +%s%N) - start) / 1000000)) secs
	secs=$((ms / 1000)).$((ms % 1000 / 100))
	case $rc in
	0) pass=$((pass + 1)); printf '  PASS  %-34s %6ss\n' "$name" "$secs" ;;
	77) skip=$((skip + 1))
	    printf '  SKIP  %-34s %6ss  %s\n' "$name" "$secs" "$(grep -i skip "$logs/$name.log" | tail -1)" ;;
	*) fail=$((fail + 1)); failed_names="$failed_names $name"
	   [ $rc -eq 124 ] && echo "timed out after ${limit}s" >>"$logs/$name.log"
	   printf '  FAIL  %-34s %6ss  (exit %d, log %s)\n' "$name" "$secs" "$rc" "$logs/$name.log"
	   tail -n 15 "$logs/$name.log" | sed 's/^/        | /' ;;
	esac
}

if [ "$mode" = --stress ]; then
	echo "stress tests:"
	for t in "$here"/tests/stress/*.sh; do
		[ -e "$t" ] && run_one "$(basename "$t" .sh)" 3600 bash "$t"
	done
else
	echo "unit tests:"
	for t in "$BUILD"/tests/test_*; do
		case $t in *.d) continue ;; esac
		[ -x "$t" ] && run_one "$(basename "$t")" 60 "$t"
	done
	if [ "$mode" != --unit ]; then
		echo "system tests:"
		for t in "$here"/tests/system/*.sh; do
			[ -e "$t" ] && run_one "$(basename "$t" .sh)" 420 bash "$t"
		done
	fi
fi

[ -n "$failed_names" ] && echo "failed:$failed_names"
echo "$pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ]
