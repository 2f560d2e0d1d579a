# Shared helpers for system tests (sourced). Each test gets a scratch dir and its own daemon
# socket there; everything it started is stopped on exit.
set -eu
SRC=${UFFD_SRC:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
BUILD=${BUILD:-$SRC/build}
T=$(mktemp -d /tmp/uffd-test.XXXXXX)
SOCK=$T/uffd-mgr.sock
DAEMON_PID=

cleanup() {
	local rc=$?
	[ -n "$DAEMON_PID" ] && kill "$DAEMON_PID" 2>/dev/null && wait "$DAEMON_PID" 2>/dev/null
	if [ $rc -ne 0 ] && [ -f "$T/daemon.log" ]; then
		echo "--- daemon log (last 30 lines) ---"
		tail -n 30 "$T/daemon.log"
	fi
	rm -rf "$T"
	exit $rc
}
trap cleanup EXIT

fail() {
	echo "FAIL: $*" >&2
	exit 1
}

skip() {
	echo "SKIP: $*"
	exit 77
}

# Waits up to 5 s for a Unix socket to appear at $1: returns 0 when it did, 1 when not.
wait_socket() {
	for _ in $(seq 100); do
		[ -S "$1" ] && return 0
		sleep 0.05
	done
	return 1
}

# The daemon start_daemon runs: DAEMON=test picks the test build with the fault-injection
# hooks (build/tests/uffd-mgrd-hooks, UFFD_MGR_INJECT_* in its environment), else the product.
start_daemon() {
	local bin=$BUILD/uffd-mgrd
	if [ "${DAEMON:-}" = test ]; then
		bin=$BUILD/tests/uffd-mgrd-hooks
		[ -x "$bin" ] || fail "no $bin: build it with 'make unit-test' or 'make test'"
	fi
	"$bin" --socket "$SOCK" --log "$T/daemon.log" "$@" &
	DAEMON_PID=$!
	wait_socket "$SOCK" || fail "daemon did not start"
}

# Kills this test's daemon with SIGKILL, as a crash would, and starts another on the same
# socket, as systemd's Restart=always would, after a random pause of up to 300 ms.
kill_and_restart_daemon() {
	kill -KILL "$DAEMON_PID"
	wait "$DAEMON_PID" 2>/dev/null || true
	DAEMON_PID=
	sleep "$(printf '0.%03d' $((RANDOM % 300)))"
	start_daemon "$@"
}

# Waits (up to 30 s) until VM is running under this test's daemon, adopted N times in all.
wait_adoptions() { # vm n
	for _ in $(seq 300); do
		[ "$(stat "$1" restarts.adoptions 2>/dev/null)" = "$2" ] &&
			[ "$(stat "$1" state 2>/dev/null)" = running ] && return 0
		sleep 0.1
	done
	fail "VM $1 was not adopted $2 times within 30 s"
}

# Runs the fake guest through the shim against this test's daemon.
fakeguest() { # vm policy args...
	local vm=$1 policy=$2
	shift 2
	UFFD_MGR_SOCKET=$SOCK UFFD_MGR_VM=$vm UFFD_MGR_POLICY=$policy \
		LD_PRELOAD=$BUILD/libuffd-shim.so "$BUILD/tests/fakeguest" "$@"
}

# Waits (up to 20 s) until VM has registered with this test's daemon.
wait_vm() {
	for _ in $(seq 200); do
		"$BUILD/uffdctl" --socket "$SOCK" stats --json 2>/dev/null | grep -q "\"name\": *\"$1\"" &&
			return 0
		sleep 0.1
	done
	fail "VM $1 did not register within 20 s"
}

# Prints one number from the stats JSON of a VM: stat VM jq-path
stat() {
	"$BUILD/uffdctl" --socket "$SOCK" stats --json |
		python3 -c "import json,sys; d=json.load(sys.stdin); v=[x for x in d['vms'] if x['name']=='$1'][-1]; print(eval('v'+''.join('[%r]'%k for k in '$2'.split('.'))))"
}

# Boots the test guest through uffd-qemu under this test's daemon with the policy $T/guest.conf
# and memstress over 256 MiB of its 512 MiB (grow, verify, shrink, verify, regrow, verify);
# fails the test unless it prints MEMSTRESS PASS. Prints the daemon's stats table after.
run_memstress_guest() { # [phases]
	local rc=0 phases=${1:-grow,verify,shrink:64,verify,regrow,verify}
	[ -f "$BUILD/guest/vmlinuz" ] || fail "no test guest: run 'make guest'"
	"$SRC/tests/guest/run-guest.sh" --mem 512M --timeout 300 --log "$T/console.log" \
		--append "memstress.mb=256 memstress.phases=$phases" \
		--wrapper "$BUILD/uffd-qemu --policy $T/guest.conf --socket $SOCK --" || rc=$?
	grep -a MEMSTRESS "$T/console.log" || true
	[ $rc -eq 0 ] || { tail -n 20 "$T/console.log"; fail "guest run failed (exit $rc)"; }
	"$BUILD/uffdctl" --socket "$SOCK" stats
}

# expect EXIT PATTERN cmd...: exit status EXIT, stderr exactly one line matching PATTERN. With
# EXPECT_LOGGED=1, a refusal's reason must also be in the daemon's log, word for word.
expect() {
	local want=$1 pattern=$2 rc=0 reason
	shift 2
	"$@" >"$T/out" 2>"$T/err" </dev/null || rc=$?
	[ "$rc" -eq "$want" ] || fail "'$*' exited $rc, expected $want: $(cat "$T/err")"
	[ "$(wc -l <"$T/err")" -eq 1 ] || fail "'$*' printed $(wc -l <"$T/err") lines: $(cat "$T/err")"
	grep -Eq -- "$pattern" "$T/err" || fail "'$*' said '$(cat "$T/err")', expected /$pattern/"
	if [ "${EXPECT_LOGGED:-0}" = 1 ] && [ "$want" -ne 0 ]; then
		reason=$(sed -E 's/^[^:]*: (refused \(status -?[0-9]+\): |refused: |upgrade refused: |uffd-mgrd refused guest RAM: )?//' "$T/err")
		sleep 0.2
		grep -qF -- "$reason" "$T/daemon.log" || fail "the daemon did not log '$reason'"
	fi
	echo "ok: $(cat "$T/err")"
}
