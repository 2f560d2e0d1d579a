# A short fuzz run of every libFuzzer target in tests/fuzz (the policy parser, the control
# protocol), FUZZ_SECONDS each (default 20), as `make fuzz` runs them longer. A crash, a
# sanitizer report or a broken contract (the targets abort) fails the test; the input that
# did it is kept in build/fuzz/. Skips where clang cannot build a fuzzer.
. "$(dirname "$0")/lib.bash"

secs=${FUZZ_SECONDS:-20}
echo 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n) { return 0; }' >"$T/probe.c"
clang -fsanitize=fuzzer -o "$T/probe" "$T/probe.c" 2>/dev/null ||
	skip "clang cannot build a libFuzzer target (needs clang and libclang-rt-dev)"
targets=$(cd "$SRC/tests/fuzz" && ls fuzz_*.c | sed 's/\.c$//')
make -s -C "$SRC" BUILD="$BUILD" $(for t in $targets; do echo "$BUILD/fuzz/$t"; done) ||
	fail "cannot build the fuzz targets"
for t in $targets; do
	mkdir -p "$BUILD/fuzz/corpus-$t"
	(cd "$BUILD/fuzz" && "./$t" -max_total_time="$secs" -timeout=10 -rss_limit_mb=1024 \
		"corpus-$t" >"$T/$t.log" 2>&1) ||
		{ tail -n 30 "$T/$t.log"; fail "$t found a crash (input kept in $BUILD/fuzz)"; }
	echo "ok: $t, ${secs} s: $(grep -Eo 'Done [0-9]+ runs' "$T/$t.log" || tail -n 1 "$T/$t.log")"
done
