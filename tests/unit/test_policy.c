/* test_policy: the policy file parser (uffd-mgr/policy.c).
 *
 * Table-driven: sizes that parse (with their values), that are garbage (-EINVAL) and that
 * overflow (-ERANGE); whole policy files that parse (with every field checked); and bad
 * files, each with the exact one-line error it must give. Every row runs as a cmocka test
 * of its own, named after the row. Then: the defaults, policy_load on real files (missing,
 * a directory, NUL bytes, too large, errors naming the path), lines at inih's length limit,
 * a failed parse leaving *p alone, and examples/vm.conf, which must parse and be exactly
 * policy_print_example()'s output after its header comment.
 *
 * Run from the repo root, or set UFFD_SRC to it. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "uffd-mgr/policy.h"

#define K (UINT64_C(1) << 10)
#define M (UINT64_C(1) << 20)
#define G (UINT64_C(1) << 30)
#define T (UINT64_C(1) << 40)

/* ---- Tables ---- */

struct size_case {
	const char *text;
	int ret;	/* 0, -EINVAL or -ERANGE */
	uint64_t bytes; /* when ret == 0 */
};

static const struct size_case size_cases[] = {
    {"0", 0, 0},
    {"1", 0, 1},
    {"4096", 0, 4096},
    {"007", 0, 7},
    {"64K", 0, 64 * K},
    {"64k", 0, 64 * K},
    {"64KB", 0, 64 * K},
    {"64kb", 0, 64 * K},
    {"64KiB", 0, 64 * K},
    {"64kib", 0, 64 * K},
    {"64KIB", 0, 64 * K},
    {"512m", 0, 512 * M},
    {"512MiB", 0, 512 * M},
    {"2G", 0, 2 * G},
    {"2gb", 0, 2 * G},
    {"1T", 0, T},
    {"1tib", 0, T},
    {"0K", 0, 0},
    {"18446744073709551615", 0, UINT64_MAX},
    {"16777215T", 0, 16777215 * T},
    {"17179869183G", 0, 17179869183 * G},
    {"", -EINVAL, 0},
    {"-1", -EINVAL, 0},
    {"-64K", -EINVAL, 0},
    {"+1", -EINVAL, 0},
    {" 1", -EINVAL, 0},
    {"1 ", -EINVAL, 0},
    {"1 K", -EINVAL, 0},
    {"K", -EINVAL, 0},
    {"KiB", -EINVAL, 0},
    {"64Q", -EINVAL, 0},
    {"1KK", -EINVAL, 0},
    {"1KiBB", -EINVAL, 0},
    {"1Ki", -EINVAL, 0},
    {"1Kb2", -EINVAL, 0},
    {"1B", -EINVAL, 0},
    {"1iB", -EINVAL, 0},
    {"1.5G", -EINVAL, 0},
    {"1e3", -EINVAL, 0},
    {"0x1000", -EINVAL, 0},
    {"abc", -EINVAL, 0},
    {"1P", -EINVAL, 0},
    {"99999999999999999999Q", -EINVAL, 0},
    {"18446744073709551616", -ERANGE, 0},
    {"99999999999999999999999", -ERANGE, 0},
    {"16777216T", -ERANGE, 0},
    {"17179869184G", -ERANGE, 0},
    {"18014398509481984K", -ERANGE, 0},
    {"99999999999999999999K", -ERANGE, 0},
};

/* The expected policy, every field spelled out. */
#define POL(n, res, run, shm, cpu, poll)                                                           \
	{                                                                                          \
		.name = n, .resident_max = (res), .run_size = (run), .shm_max = (shm),             \
		.fault_cpu = (cpu), .busy_poll_us = (poll)                                         \
	}
#define DEFAULTS POL("", 0, 64 * K, 256 * M, POLICY_CPU_FOLLOW, 0)

struct good_case {
	const char *name;
	const char *text;
	struct policy want;
};

static const struct good_case good_cases[] = {
    {"empty", "", DEFAULTS},
    {"comments_only", "# a\n; b\n\n   # indented comment\n\t; tab\n", DEFAULTS},
    {"empty_sections", "[vm]\n[memory]\n[shm]\n[fault]\n", DEFAULTS},
    {"every_key",
     "[vm]\nname = db-1.prod_2\n[memory]\nresident_max = 2G\nrun_size = 2M\n"
     "[shm]\nmax = 1T\n[fault]\ncpu = 3\nbusy_poll = 50\n",
     POL("db-1.prod_2", 2 * G, 2 * M, T, 3, 50)},
    {"keys_in_any_order",
     "[fault]\nbusy_poll = 1000\ncpu = 4095\n[memory]\nrun_size = 4K\n[vm]\nname = x\n",
     POL("x", 0, 4 * K, 256 * M, 4095, 1000)},
    {"section_twice", "[memory]\nrun_size = 4K\n[shm]\nmax = 1M\n[memory]\nresident_max = 1M\n",
     POL("", M, 4 * K, M, POLICY_CPU_FOLLOW, 0)},
    {"no_spaces", "[memory]\nrun_size=128K\n", POL("", 0, 128 * K, 256 * M, POLICY_CPU_FOLLOW, 0)},
    {"wide_spaces", "[memory]\nrun_size   =\t 128k  \t\n",
     POL("", 0, 128 * K, 256 * M, POLICY_CPU_FOLLOW, 0)},
    {"colon", "[shm]\nmax: 1G\n", POL("", 0, 64 * K, G, POLICY_CPU_FOLLOW, 0)},
    {"no_final_newline", "[shm]\nmax = 512MiB", POL("", 0, 64 * K, 512 * M, POLICY_CPU_FOLLOW, 0)},
    {"crlf", "[vm]\r\nname = a\r\n[fault]\r\ncpu = 2\r\n", POL("a", 0, 64 * K, 256 * M, 2, 0)},
    {"bom", "\xef\xbb\xbf[fault]\ncpu = 1\n", POL("", 0, 64 * K, 256 * M, 1, 0)},
    {"bom_comment", "\xef\xbb\xbf# c\n[fault]\ncpu = 1\n", POL("", 0, 64 * K, 256 * M, 1, 0)},
    {"cpu_any", "[fault]\ncpu = any\n", POL("", 0, 64 * K, 256 * M, -1, 0)},
    {"cpu_ANY", "[fault]\ncpu = ANY\n", POL("", 0, 64 * K, 256 * M, -1, 0)},
    {"cpu_minus_one", "[fault]\ncpu = -1\n", POL("", 0, 64 * K, 256 * M, -1, 0)},
    {"cpu_follow", "[fault]\ncpu = follow\n", DEFAULTS},
    {"cpu_FOLLOW", "[fault]\ncpu = FOLLOW\n", DEFAULTS},
    {"cpu_zero", "[fault]\ncpu = 0\n", POL("", 0, 64 * K, 256 * M, 0, 0)},
    {"busy_poll_us", "[fault]\nbusy_poll = 10us\n", POL("", 0, 64 * K, 256 * M, POLICY_CPU_FOLLOW, 10)},
    {"busy_poll_micro_sign", "[fault]\nbusy_poll = 20\xc2\xb5s\n",
     POL("", 0, 64 * K, 256 * M, POLICY_CPU_FOLLOW, 20)},
    {"busy_poll_ms", "[fault]\nbusy_poll = 1ms\n", POL("", 0, 64 * K, 256 * M, POLICY_CPU_FOLLOW, 1000)},
    {"name_empty", "[vm]\nname =\n", DEFAULTS},
    {"name_63", "[vm]\nname = 123456789012345678901234567890123456789012345678901234567890123\n",
     POL("123456789012345678901234567890123456789012345678901234567890123", 0, 64 * K, 256 * M,
	 POLICY_CPU_FOLLOW, 0)},
    {"resident_zero", "[memory]\nresident_max = 0K\n", DEFAULTS},
    {"resident_equals_run", "[memory]\nresident_max = 2M\nrun_size = 2M\n",
     POL("", 2 * M, 2 * M, 256 * M, POLICY_CPU_FOLLOW, 0)},
    {"resident_huge", "[memory]\nresident_max = 16777215T\n",
     POL("", 16777215 * T, 64 * K, 256 * M, POLICY_CPU_FOLLOW, 0)},
    {"shm_equals_run", "[memory]\nrun_size = 1M\n[shm]\nmax = 1M\n", POL("", 0, M, M, POLICY_CPU_FOLLOW, 0)},
    {"bytes", "[memory]\nrun_size = 8192\n[shm]\nmax = 1048576\n", POL("", 0, 8 * K, M, POLICY_CPU_FOLLOW, 0)},
};

struct bad_case {
	const char *name;
	const char *text;
	const char *err; /* exact, with the label "vm.conf" */
};

static const struct bad_case bad_cases[] = {
    /* Keys and sections */
    {"unknown_key", "[memory]\nrun_size = 64K\nresident_mx = 1G\n",
     "vm.conf:3: unknown key 'resident_mx' in [memory]"},
    {"key_case", "[memory]\nRun_Size = 64K\n", "vm.conf:2: unknown key 'Run_Size' in [memory]"},
    {"key_with_space", "[memory]\nrun size = 64K\n",
     "vm.conf:2: unknown key 'run size' in [memory]"},
    {"empty_key", "[vm]\n= x\n", "vm.conf:2: unknown key '' in [vm]"},
    {"misplaced_key", "[memory]\ncpu = 1\n",
     "vm.conf:2: unknown key 'cpu' in [memory] (it belongs in [fault])"},
    {"outside_section", "name = x\n[vm]\n",
     "vm.conf:1: key 'name' outside any section (it belongs in [vm])"},
    {"outside_section_unknown", "# c\nfoo = 1\n", "vm.conf:2: key 'foo' outside any section"},
    {"unknown_section", "[vm]\nname = a\n\n\n\n\n[memroy]\nrun_size = 64K\n",
     "vm.conf:7: unknown section [memroy]"},
    {"unknown_section_empty", "[memroy]\n", "vm.conf:1: unknown section [memroy]"},
    {"section_case", "[Memory]\n", "vm.conf:1: unknown section [Memory]"},
    {"section_spaces", "[ memory ]\n", "vm.conf:1: unknown section [ memory ]"},
    {"section_empty_name", "[]\n", "vm.conf:1: unknown section []"},
    {"section_no_bracket", "[vm]\n[memory\n", "vm.conf:2: missing ']' in section header"},
    {"section_trailing_text", "[memory] x\n",
     "vm.conf:1: unexpected text after section header [memory]"},
    {"section_semicolon_inside", "[memory ; x]\n", "vm.conf:1: unknown section [memory ; x]"},
    {"duplicate_key", "[memory]\nrun_size = 64K\n\nresident_max = 1G\nresident_max = 2G\n",
     "vm.conf:5: duplicate key [memory] resident_max"},
    {"duplicate_key_same_value", "[memory]\nresident_max = 1G\nrun_size = 64K\nresident_max = 1G\n",
     "vm.conf:4: duplicate key [memory] resident_max"},
    {"duplicate_across_sections", "[shm]\nmax = 1G\n[vm]\nname = a\n[shm]\nmax = 1G\n",
     "vm.conf:6: duplicate key [shm] max"},

    /* inih quirks we refuse */
    {"inline_comment_semicolon", "[shm]\nmax = 1G ; big\n",
     "vm.conf:2: comment after a value (comments go on lines of their own)"},
    {"inline_comment_hash", "[shm]\nmax = 1G # big\n",
     "vm.conf:2: comment after a value (comments go on lines of their own)"},
    {"inline_comment_no_space", "[shm]\nmax = 1G;big\n",
     "vm.conf:2: comment after a value (comments go on lines of their own)"},
    {"comment_after_section", "[shm] ; the shm tier\n",
     "vm.conf:1: comment after a section header (comments go on lines of their own)"},
    {"comment_after_section_hash", "[shm]# x\n",
     "vm.conf:1: comment after a section header (comments go on lines of their own)"},
    {"continuation", "[memory]\nrun_size = 64K\n  resident_max = 1G\n",
     "vm.conf:3: indented line: multi-line values are not supported (remove the leading "
     "whitespace)"},
    {"continuation_after_blank", "[memory]\nrun_size = 64K\n\n# c\n\t4K\n",
     "vm.conf:5: indented line: multi-line values are not supported (remove the leading "
     "whitespace)"},
    {"indented_first_key", "[memory]\n    run_size = 64K\n",
     "vm.conf:2: indented line: multi-line values are not supported (remove the leading "
     "whitespace)"},
    {"indented_section", "[vm]\nname = a\n  [shm]\n",
     "vm.conf:3: indented line: multi-line values are not supported (remove the leading "
     "whitespace)"},

    /* inih's own syntax errors, and which error wins */
    {"no_equals", "[memory]\nrun_size\n", "vm.conf:2: syntax error"},
    {"no_equals_outside", "hello\n", "vm.conf:1: syntax error"},
    {"syntax_before_key_error", "[memory]\ngarbage\nresident_mx = 1\n", "vm.conf:2: syntax error"},
    {"key_error_before_syntax", "[memory]\nresident_mx = 1\ngarbage\n",
     "vm.conf:2: unknown key 'resident_mx' in [memory]"},
    {"section_error_after_syntax", "[memory]\ngarbage\n[memroy]\n", "vm.conf:2: syntax error"},

    /* Values */
    {"bad_size", "[vm]\nname = a\n\n[shm]\nmax = 64Q\n",
     "vm.conf:5: bad size '64Q' for [shm] max (use bytes or K/M/G/T)"},
    {"empty_size", "[shm]\nmax =\n", "vm.conf:2: bad size '' for [shm] max (use bytes or K/M/G/T)"},
    {"negative_size", "[memory]\nresident_max = -1\n",
     "vm.conf:2: bad size '-1' for [memory] resident_max (use bytes or K/M/G/T)"},
    {"size_with_space", "[memory]\nresident_max = 1 G\n",
     "vm.conf:2: bad size '1 G' for [memory] resident_max (use bytes or K/M/G/T)"},
    {"size_fraction", "[memory]\nresident_max = 1.5G\n",
     "vm.conf:2: bad size '1.5G' for [memory] resident_max (use bytes or K/M/G/T)"},
    {"size_overflow", "[memory]\nresident_max = 16777216T\n",
     "vm.conf:2: size '16777216T' for [memory] resident_max does not fit in 64 bits"},
    {"size_control_char", "[shm]\nmax = 1\x1b[2J\n",
     "vm.conf:2: bad size '1?[2J' for [shm] max (use bytes or K/M/G/T)"},
    {"size_long_quoted",
     "[shm]\nmax = 1xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n",
     "vm.conf:2: bad size '1xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx...' for [shm] max "
     "(use bytes or K/M/G/T)"},
    {"run_size_not_pow2", "[memory]\nrun_size = 48K\n",
     "vm.conf:2: [memory] run_size must be a power of two between 4K and 2M"},
    {"run_size_small", "[memory]\nrun_size = 2K\n",
     "vm.conf:2: [memory] run_size must be a power of two between 4K and 2M"},
    {"first_touch_odd", "[fault]\nfirst_touch = 48K\n",
     "vm.conf:2: [fault] first_touch must be a power of two between 4K and 2M"},
    {"first_touch_big", "[fault]\nfirst_touch = 4M\n",
     "vm.conf:2: [fault] first_touch must be a power of two between 4K and 2M"},
    {"readahead_small", "[fault]\nreadahead = 32K\n",
     "vm.conf:2: [fault] readahead must be 0 or a power of two between 64K and 64M"},
    {"run_size_big", "[memory]\nrun_size = 4M\n",
     "vm.conf:2: [memory] run_size must be a power of two between 4K and 2M"},
    {"run_size_zero", "[memory]\nrun_size = 0\n",
     "vm.conf:2: [memory] run_size must be a power of two between 4K and 2M"},
    {"resident_small", "[memory]\nresident_max = 1023K\n",
     "vm.conf:2: [memory] resident_max must be 0 or at least 1M"},
    {"shm_small", "[shm]\nmax = 512K\n", "vm.conf:2: [shm] max must be between 1M and 1T"},
    {"shm_zero", "[shm]\nmax = 0\n", "vm.conf:2: [shm] max must be between 1M and 1T"},
    {"shm_big", "[shm]\nmax = 2T\n", "vm.conf:2: [shm] max must be between 1M and 1T"},
    {"cpu_big", "[fault]\ncpu = 4096\n",
     "vm.conf:2: [fault] cpu must be follow, any or between 0 and 4095"},
    {"cpu_overflow", "[fault]\ncpu = 99999999999999999999999\n",
     "vm.conf:2: [fault] cpu must be follow, any or between 0 and 4095"},
    {"cpu_minus_two", "[fault]\ncpu = -2\n",
     "vm.conf:2: bad CPU '-2' for [fault] cpu (use a CPU number, follow or any)"},
    {"cpu_word", "[fault]\ncpu = all\n",
     "vm.conf:2: bad CPU 'all' for [fault] cpu (use a CPU number, follow or any)"},
    {"cpu_empty", "[fault]\ncpu =\n",
     "vm.conf:2: bad CPU '' for [fault] cpu (use a CPU number, follow or any)"},
    {"busy_poll_big", "[fault]\nbusy_poll = 1001\n",
     "vm.conf:2: [fault] busy_poll must be between 0 and 1ms"},
    {"busy_poll_2ms", "[fault]\nbusy_poll = 2ms\n",
     "vm.conf:2: [fault] busy_poll must be between 0 and 1ms"},
    {"busy_poll_unit", "[fault]\nbusy_poll = 10ns\n",
     "vm.conf:2: [fault] busy_poll: '10ns' is not a duration (use e.g. 500ms, 1s, 2m)"},
    {"busy_poll_negative", "[fault]\nbusy_poll = -1\n",
     "vm.conf:2: [fault] busy_poll: '-1' is not a duration (use e.g. 500ms, 1s, 2m)"},
    {"busy_poll_hex", "[fault]\nbusy_poll = 0x10\n",
     "vm.conf:2: [fault] busy_poll: '0x10' is not a duration (use e.g. 500ms, 1s, 2m)"},
    {"name_space", "[vm]\nname = my vm\n",
     "vm.conf:2: [vm] name must be at most 63 characters of A-Z a-z 0-9 . _ -"},
    {"name_slash", "[vm]\nname = ../etc\n",
     "vm.conf:2: [vm] name must be at most 63 characters of A-Z a-z 0-9 . _ -"},
    {"name_utf8", "[vm]\nname = caf\xc3\xa9\n",
     "vm.conf:2: [vm] name must be at most 63 characters of A-Z a-z 0-9 . _ -"},
    {"name_64", "[vm]\nname = 1234567890123456789012345678901234567890123456789012345678901234\n",
     "vm.conf:2: [vm] name must be at most 63 characters of A-Z a-z 0-9 . _ -"},

    /* Cross-key rules: the line is the later of the two keys' lines */
    {"resident_below_run", "[memory]\nresident_max = 1M\nrun_size = 2M\n",
     "vm.conf:3: [memory] resident_max (1M) is smaller than [memory] run_size (2M)"},
    {"resident_below_default_run", "[memory]\nrun_size = 2M\n[shm]\nmax = 1M\n",
     "vm.conf:4: [shm] max (1M) is smaller than [memory] run_size (2M)"},
    {"shm_below_run_set_first", "[shm]\nmax = 1M\n[memory]\nrun_size = 2M\n",
     "vm.conf:4: [shm] max (1M) is smaller than [memory] run_size (2M)"},
};

/* ---- Helpers ---- */

static void assert_policy_equal(const struct policy *got, const struct policy *want)
{
	assert_string_equal(got->name, want->name);
	assert_int_equal(got->resident_max, want->resident_max);
	assert_int_equal(got->run_size, want->run_size);
	assert_int_equal(got->shm_max, want->shm_max);
	assert_int_equal(got->fault_cpu, want->fault_cpu);
	assert_int_equal(got->busy_poll_us, want->busy_poll_us);
}

/* The path of a file in the source tree: $UFFD_SRC/rel, or rel from the current folder. */
static void src_path(char *buf, size_t len, const char *rel)
{
	const char *root = getenv("UFFD_SRC");

	snprintf(buf, len, "%s%s%s", root ? root : "", root ? "/" : "", rel);
}

/* Writes len bytes of text to a new temporary file whose path is left in path. */
static void write_temp(char *path, size_t pathlen, const char *text, size_t len)
{
	int fd;

	snprintf(path, pathlen, "/tmp/test_policy.XXXXXX");
	fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, len), (ssize_t)len);
	close(fd);
}

static char *capture(void (*print)(FILE *))
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	assert_non_null(f);
	print(f);
	fclose(f);
	return buf;
}

/* ---- Table rows ---- */

static void test_size(void **state)
{
	const struct size_case *c = *state;
	uint64_t bytes = 12345;

	assert_int_equal(policy_parse_size(c->text, &bytes), c->ret);
	assert_int_equal(bytes, c->ret ? 12345 : c->bytes); /* untouched on error */
}

static void test_good(void **state)
{
	const struct good_case *c = *state;
	struct policy p;
	char err[256] = "junk";

	assert_int_equal(policy_parse_string(c->text, "vm.conf", &p, err, sizeof(err)), 0);
	assert_string_equal(err, "");
	assert_policy_equal(&p, &c->want);
}

static void test_bad(void **state)
{
	const struct bad_case *c = *state;
	struct policy p;
	char err[256] = "";

	assert_int_equal(policy_parse_string(c->text, "vm.conf", &p, err, sizeof(err)), -EINVAL);
	assert_string_equal(err, c->err);
	assert_null(strchr(err, '\n'));
}

/* ---- Single tests ---- */

/* The disk tier and shm watermark keys: values, the watermark order rule, path checks and
 * the %n expansion. */
/* Durations ([fault] stall_warn, [disk] read_retry_max): a unit is required (but for 0), any
 * case; values in milliseconds; bounds and overflow are errors naming the key. */
static void test_time_keys(void **state)
{
	static const struct {
		const char *text;
		uint32_t stall, retry; /* ms, when err is NULL */
		const char *err;
	} cases[] = {
		{"[fault]\nstall_warn = 500ms\n[disk]\nread_retry_max = 2m\n", 500, 120000, NULL},
		{"[fault]\nstall_warn = 0\n[disk]\nread_retry_max = 0\n", 0, 0, NULL},
		{"[fault]\nstall_warn = 1H\n[disk]\nread_retry_max = 100MS\n", 3600000, 100, NULL},
		{"[fault]\nstall_warn = 10ms\n", 10, 30000, NULL},
		{"[fault]\nstall_warn = 1\n", 0, 0,
		 "vm.conf:2: [fault] stall_warn: '1' is not a duration (use e.g. 500ms, 1s, 2m)"},
		{"[fault]\nstall_warn = 1.5s\n", 0, 0,
		 "vm.conf:2: [fault] stall_warn: '1.5s' is not a duration (use e.g. 500ms, 1s, "
		 "2m)"},
		{"[fault]\nstall_warn = 2 s\n", 0, 0,
		 "vm.conf:2: [fault] stall_warn: '2 s' is not a duration (use e.g. 500ms, 1s, 2m)"},
		{"[fault]\nstall_warn = 10000us\n", 10, 30000, NULL},
		{"[fault]\nstall_warn = 10500us\n", 0, 0,
		 "vm.conf:2: [fault] stall_warn: '10500us' is not a whole number of milliseconds"},
		{"[fault]\nstall_warn = s\n", 0, 0,
		 "vm.conf:2: [fault] stall_warn: 's' is not a duration (use e.g. 500ms, 1s, 2m)"},
		{"[fault]\nstall_warn = 9ms\n",
		 0, 0, "vm.conf:2: [fault] stall_warn must be 0 or between 10ms and 1h"},
		{"[disk]\nread_retry_max = 61m\n",
		 0, 0, "vm.conf:2: [disk] read_retry_max must be 0 or between 100ms and 1h"},
		{"[disk]\nread_retry_max = 99999999999999999999s\n",
		 0, 0, "vm.conf:2: [disk] read_retry_max must be 0 or between 100ms and 1h"},
		{"[disk]\nread_retry_max = 9999999999999999h\n",
		 0, 0, "vm.conf:2: [disk] read_retry_max must be 0 or between 100ms and 1h"},
	};
	struct policy p;
	char err[256];

	(void)state;
	policy_defaults(&p);
	assert_int_equal(p.stall_warn_ms, 1000);
	assert_int_equal(p.disk_read_retry_ms, 30000);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int r = policy_parse_string(cases[i].text, "vm.conf", &p, err, sizeof(err));

		if (!cases[i].err) {
			assert_int_equal(r, 0);
			assert_int_equal(p.stall_warn_ms, cases[i].stall);
			assert_int_equal(p.disk_read_retry_ms, cases[i].retry);
			continue;
		}
		assert_int_equal(r, -EINVAL);
		assert_string_equal(err, cases[i].err);
	}
}

/* [tracker] interval: units, and a plain number in milliseconds as before units. */
static void test_interval(void **state)
{
	static const struct {
		const char *value;
		uint32_t ms; /* when err is NULL */
		const char *err; /* after "vm.conf:3: [tracker] interval" */
	} cases[] = {
		{"1s", 1000, NULL},
		{"500ms", 500, NULL},
		{"1m", 60000, NULL},
		{"250", 250, NULL},
		{"60000", 60000, NULL},
		{"100000us", 100, NULL},
		{"2m", 0, " must be between 100ms and 1m"},
		{"1h", 0, " must be between 100ms and 1m"},
		{"99", 0, " must be between 100ms and 1m"},
		{"0", 0, " must be between 100ms and 1m"},
		{"99999999999999999999", 0, " must be between 100ms and 1m"},
		{"100500us", 0, ": '100500us' is not a whole number of milliseconds"},
		{"1 s", 0, ": '1 s' is not a duration (use e.g. 500ms, 1s, 2m)"},
		{"1sec", 0, ": '1sec' is not a duration (use e.g. 500ms, 1s, 2m)"},
		{"fast", 0, ": 'fast' is not a duration (use e.g. 500ms, 1s, 2m)"},
		{"", 0, ": '' is not a duration (use e.g. 500ms, 1s, 2m)"},
	};
	struct policy p;
	char text[128], err[256], want[256];

	(void)state;
	policy_defaults(&p);
	assert_int_equal(p.track_interval_ms, 1000);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int r;

		snprintf(text, sizeof(text), "# x\n[tracker]\ninterval = %s\n", cases[i].value);
		r = policy_parse_string(text, "vm.conf", &p, err, sizeof(err));
		if (!cases[i].err) {
			if (r)
				fail_msg("interval = %s: %s", cases[i].value, err);
			assert_int_equal(p.track_interval_ms, cases[i].ms);
			continue;
		}
		snprintf(want, sizeof(want), "vm.conf:3: [tracker] interval%s", cases[i].err);
		assert_int_equal(r, -EINVAL);
		assert_string_equal(err, want);
	}
}

/* Booleans ([balloon] enabled, [prefetch] proactive): every spelling, any case. */
static void test_booleans(void **state)
{
	static const char *const on[] = {"on", "true", "yes", "1", "ON", "True", "YeS"};
	static const char *const off[] = {"off", "false", "no", "0", "OFF", "False", "nO"};
	static const char *const bad[] = {"maybe", "2", "", "enabled", "o", "onn", "y", "-1", "01"};
	struct policy p;
	char text[128], err[256], want[256];

	(void)state;
	policy_defaults(&p);
	assert_int_equal(p.balloon_on, 1);
	assert_int_equal(p.prefetch_on, 1);
	for (size_t i = 0; i < sizeof(on) / sizeof(on[0]); i++) {
		snprintf(text, sizeof(text),
			 "[balloon]\nenabled = %s\n[prefetch]\nproactive = %s\n", off[i], on[i]);
		assert_int_equal(policy_parse_string(text, "vm.conf", &p, err, sizeof(err)), 0);
		assert_int_equal(p.balloon_on, 0);
		assert_int_equal(p.prefetch_on, 1);
		snprintf(text, sizeof(text),
			 "[balloon]\nenabled = %s\n[prefetch]\nproactive = %s\n", on[i], off[i]);
		assert_int_equal(policy_parse_string(text, "vm.conf", &p, err, sizeof(err)), 0);
		assert_int_equal(p.balloon_on, 1);
		assert_int_equal(p.prefetch_on, 0);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(text, sizeof(text), "[prefetch]\nproactive = %s\n", bad[i]);
		snprintf(want, sizeof(want),
			 "vm.conf:2: [prefetch] proactive: '%s' is not a boolean (use on/off, "
			 "true/false, yes/no, 1/0)",
			 bad[i]);
		assert_int_equal(policy_parse_string(text, "vm.conf", &p, err, sizeof(err)),
				 -EINVAL);
		assert_string_equal(err, want);
	}
}

static void test_disk_keys(void **state)
{
	static const struct {
		const char *text, *err;
	} bad[] = {
		{"[disk]\npath = relative/x.swap\n", "vm.conf:2: [disk] path must be empty, or an "
		 "absolute path (at most 1023 characters) whose only % escapes are %n and %%"},
		{"[disk]\npath = /x/%d.swap\n", "vm.conf:2: [disk] path must be empty, or an "
		 "absolute path (at most 1023 characters) whose only % escapes are %n and %%"},
		{"[shm]\nhigh_watermark = 50\nlow_watermark = 50\n",
		 "vm.conf:3: [shm] low_watermark (50) must be below high_watermark (50)"},
		{"[shm]\nhigh_watermark = 101\n",
		 "vm.conf:2: [shm] high_watermark must be between 1 and 100"},
		{"[disk]\nmax = 512K\n", "vm.conf:2: [disk] max must be between 1M and 64T"},
	};
	struct policy p;
	char err[256], path[64];

	(void)state;
	assert_int_equal(policy_parse_string("[shm]\nhigh_watermark = 80\nlow_watermark = 10\n"
					     "[disk]\npath = /var/tmp/%n-%%.swap\nmax = 8G\n",
					     "vm.conf", &p, err, sizeof(err)),
			 0);
	assert_int_equal(p.shm_high_pct, 80);
	assert_int_equal(p.shm_low_pct, 10);
	assert_int_equal(p.disk_max, 8ull << 30);
	assert_string_equal(p.disk_path, "/var/tmp/%n-%%.swap");
	assert_int_equal(policy_disk_path(&p, "web1", path, sizeof(path)), 0);
	assert_string_equal(path, "/var/tmp/web1-%.swap");
	assert_int_equal(policy_disk_path(&p, "web1", path, 10), -ENAMETOOLONG);
	policy_defaults(&p);
	assert_string_equal(p.disk_path, "");
	assert_int_equal(p.shm_high_pct, 90);
	assert_int_equal(p.shm_low_pct, 75);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(policy_parse_string(bad[i].text, "vm.conf", &p, err, sizeof(err)),
				 -EINVAL);
		assert_string_equal(err, bad[i].err);
	}
}

static void test_defaults(void **state)
{
	const struct policy want = DEFAULTS;
	struct policy p;

	memset(&p, 0x5a, sizeof(p));
	policy_defaults(&p);
	assert_policy_equal(&p, &want);
}

static void test_error_leaves_policy(void **state)
{
	struct policy p, before;
	char err[256];

	memset(&p, 0x5a, sizeof(p));
	before = p;
	assert_int_equal(policy_parse_string("[memory]\nrun_size = 4K\nresident_max = 1\n",
					     "vm.conf", &p, err, sizeof(err)),
			 -EINVAL);
	assert_memory_equal(&p, &before, sizeof(p));
}

static void test_null_err_and_label(void **state)
{
	struct policy p;
	char err[256], small[12];

	assert_int_equal(policy_parse_string("[x]\n", "vm.conf", &p, NULL, 0), -EINVAL);
	assert_int_equal(policy_parse_string("[x]\n", "vm.conf", &p, err, 0), -EINVAL);
	assert_int_equal(policy_parse_string("[x]\n", NULL, &p, err, sizeof(err)), -EINVAL);
	assert_string_equal(err, "<string>:1: unknown section [x]");
	assert_int_equal(policy_parse_string("[x]\n", "vm.conf", &p, small, sizeof(small)),
			 -EINVAL);
	assert_string_equal(small, "vm.conf:1: "); /* truncated, still terminated */
}

/* inih's line buffer holds 197 characters plus "\r\n\0"; a longer line would be cut and its
 * tail read as a line of its own, so it is an error. */
static void test_long_lines(void **state)
{
	char text[512], comment[300], err[256];
	struct policy p;

	memset(comment, 'x', sizeof(comment));
	comment[0] = '#';
	comment[197] = '\0';
	snprintf(text, sizeof(text), "%s\r\n[fault]\ncpu = 1\n", comment);
	assert_int_equal(policy_parse_string(text, "vm.conf", &p, err, sizeof(err)), 0);
	assert_int_equal(p.fault_cpu, 1);

	/* 198 characters; the tail would be "[fault]" then "cpu = 2". */
	comment[197] = 'x';
	snprintf(text, sizeof(text), "[fault]\n%.*s[vm]\n", 197, comment);
	assert_int_equal(policy_parse_string(text, "vm.conf", &p, err, sizeof(err)), -EINVAL);
	assert_string_equal(err, "vm.conf:2: line too long (at most 197 characters)");

	memset(comment + 150, 'x', 100);
	memcpy(comment + 190, "cpu = 2", 7);
	comment[197] = '\0';
	snprintf(text, sizeof(text), "[fault]\n%sx\ncpu = 1\n", comment);
	assert_int_equal(policy_parse_string(text, "vm.conf", &p, err, sizeof(err)), -EINVAL);
	assert_string_equal(err, "vm.conf:2: line too long (at most 197 characters)");
}

static void test_load_missing(void **state)
{
	struct policy p;
	char err[256];

	assert_int_equal(policy_load("/nonexistent/vm.conf", &p, err, sizeof(err)), -ENOENT);
	assert_string_equal(err, "/nonexistent/vm.conf: No such file or directory");
}

static void test_load_directory(void **state)
{
	struct policy p;
	char err[256];

	assert_int_equal(policy_load("/tmp", &p, err, sizeof(err)), -EISDIR);
	assert_string_equal(err, "/tmp: Is a directory");
}

static void test_load_good_and_bad(void **state)
{
	const char good[] = "[vm]\nname = vm7\n[memory]\nresident_max = 4G\n";
	const char bad[] = "[vm]\nname = vm7\n[memory]\nresident_max = 4Q\n";
	char path[64], want[256], err[256];
	struct policy p;

	write_temp(path, sizeof(path), good, strlen(good));
	assert_int_equal(policy_load(path, &p, err, sizeof(err)), 0);
	assert_string_equal(p.name, "vm7");
	assert_int_equal(p.resident_max, 4 * G);
	unlink(path);

	write_temp(path, sizeof(path), bad, strlen(bad));
	assert_int_equal(policy_load(path, &p, err, sizeof(err)), -EINVAL);
	snprintf(want, sizeof(want),
		 "%s:4: bad size '4Q' for [memory] resident_max (use bytes or K/M/G/T)", path);
	assert_string_equal(err, want);
	unlink(path);
}

static void test_load_nul_byte(void **state)
{
	const char text[] = "[vm]\nname = a\n[shm]\nmax = 1G\0\n";
	char path[64], want[256], err[256];
	struct policy p;

	write_temp(path, sizeof(path), text, sizeof(text) - 1);
	assert_int_equal(policy_load(path, &p, err, sizeof(err)), -EINVAL);
	snprintf(want, sizeof(want), "%s:4: NUL byte in line", path);
	assert_string_equal(err, want);
	unlink(path);
}

static void test_load_too_large(void **state)
{
	size_t len = 1024 * 1024 + 1;
	char *text = malloc(len), path[64], want[256], err[256];
	struct policy p;

	assert_non_null(text);
	memset(text, '\n', len);
	write_temp(path, sizeof(path), text, len);
	assert_int_equal(policy_load(path, &p, err, sizeof(err)), -EFBIG);
	snprintf(want, sizeof(want), "%s: File too large", path);
	assert_string_equal(err, want);
	unlink(path);

	/* Exactly the limit is fine. */
	write_temp(path, sizeof(path), text, len - 1);
	assert_int_equal(policy_load(path, &p, err, sizeof(err)), 0);
	unlink(path);
	free(text);
}

/* examples/vm.conf is a header comment then exactly what policy_print_example() prints. */
static void test_example_file(void **state)
{
	const struct policy want = DEFAULTS;
	char path[4096], err[512], *example = capture(policy_print_example), *file;
	size_t len = 0, elen = strlen(example);
	struct policy p;
	const char *s;
	FILE *f;

	src_path(path, sizeof(path), "examples/vm.conf");
	if (policy_load(path, &p, err, sizeof(err)))
		fail_msg("%s (run from the repo root, or set UFFD_SRC to it)", err);
	assert_policy_equal(&p, &want);

	f = fopen(path, "r");
	assert_non_null(f);
	file = calloc(1, 1 << 16);
	assert_non_null(file);
	len = fread(file, 1, (1 << 16) - 1, f);
	fclose(f);
	assert_true(len >= elen);
	if (strcmp(file + len - elen, example))
		fail_msg("examples/vm.conf differs from policy_print_example(); regenerate it");
	for (s = file; s < file + len - elen; s = strchr(s, '\n') + 1)
		if (*s != '#' && *s != '\n')
			fail_msg("examples/vm.conf: header has a line that is not a comment");
	free(file);
	free(example);
}

/* [shm] compress: its three values, anything else refused with the key named, the operator's
 * value kept against a VM's own file, and examples/compressed.conf, which sets lz4. */
static void test_compress_key(void **state)
{
	static const char *const vals[] = {"off", "lz4", "zstd"};
	struct policy p, trusted;
	char text[64], err[256], path[4096], what[256];

	for (int i = 0; i < 3; i++) {
		snprintf(text, sizeof(text), "[shm]\ncompress = %s\n", vals[i]);
		assert_int_equal(policy_parse_string(text, "vm.conf", &p, err, sizeof(err)), 0);
		assert_int_equal(p.shm_compress, i);
	}
	assert_int_equal(POLICY_COMPRESS_LZ4, 1);
	assert_int_equal(POLICY_COMPRESS_ZSTD, 2);
	assert_int_equal(policy_parse_string("[shm]\ncompress = gzip\n", "vm.conf", &p, err,
					     sizeof(err)),
			 -EINVAL);
	print_message("%s\n", err);
	assert_non_null(strstr(err, "vm.conf:2:"));
	assert_non_null(strstr(err, "compress"));

	/* Compression spends the daemon's CPU: the operator's choice, not the VM's. */
	policy_defaults(&trusted);
	assert_int_equal(policy_parse_string("[shm]\ncompress = zstd\n", "vm.conf", &p, err,
					     sizeof(err)),
			 0);
	assert_int_equal(policy_clamp(&trusted, &p, what, sizeof(what)), 1);
	assert_int_equal(p.shm_compress, POLICY_COMPRESS_OFF);
	assert_non_null(strstr(what, "compress"));

	src_path(path, sizeof(path), "examples/compressed.conf");
	if (policy_load(path, &p, err, sizeof(err)))
		fail_msg("%s", err);
	assert_int_equal(p.shm_compress, POLICY_COMPRESS_LZ4);
}

static void test_example_output_parses(void **state)
{
	const struct policy want = DEFAULTS;
	char *example = capture(policy_print_example), err[256];
	struct policy p;

	assert_int_equal(policy_parse_string(example, "example", &p, err, sizeof(err)), 0);
	assert_policy_equal(&p, &want);
	free(example);
}

static void test_print_keys(void **state)
{
	static const char *const want[] = {
	    "[vm]",
	    "[memory]",
	    "[shm]",
	    "[fault]",
	    "name = NAME (default: \"\")",
	    "resident_max = SIZE (default: 0)",
	    "run_size = SIZE (default: 64K)",
	    "max = SIZE (default: 256M)",
	    "cpu = CPU (default: follow)",
	    "busy_poll = DURATION (default: 0)",
	    "stall_warn = DURATION (default: 1s)",
	    "read_retry_max = DURATION (default: 30s)",
	    "interval = DURATION (default: 1s)",
	    "enabled = BOOLEAN (default: on)",
	    "proactive = BOOLEAN (default: on)",
	    "Allowed: on or off (also true/false, yes/no, 1/0).",
	    "Allowed: between 100ms and 1m.",
	    "Allowed: a power of two between 4K and 2M.",
	};
	char *keys = capture(policy_print_keys);
	size_t i;

	for (i = 0; i < sizeof(want) / sizeof(want[0]); i++)
		if (!strstr(keys, want[i]))
			fail_msg("policy_print_keys() lacks '%s'", want[i]);
	free(keys);
}

/* ---- Runner ---- */

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* policy_clamp: a VM's own file, parsed over the operator's, may lower limits, never raise
 * them, and never choose what is the operator's (owner, disk path, fault CPU). Each row: the
 * operator's file, the VM's, the keys put back, and one field to check after. */
static const struct clamp_case {
	const char *trusted, *mine, *put_back;
	size_t offset;
	uint64_t want; /* the field's value after, read as uint64_t or uint32_t by width */
	int width;
} clamp_cases[] = {
    {"[memory]\nresident_max = 1G\n", "[memory]\nresident_max = 512M\n", "",
     offsetof(struct policy, resident_max), 512 * M, 8},
    {"[memory]\nresident_max = 1G\n", "[memory]\nresident_max = 2G\n", "[memory] resident_max",
     offsetof(struct policy, resident_max), G, 8},
    {"[memory]\nresident_max = 1G\n", "[memory]\nresident_max = 0\n", "[memory] resident_max",
     offsetof(struct policy, resident_max), G, 8}, /* 0 is "no limit": the highest */
    {"", "[memory]\nresident_max = 64M\n", "", offsetof(struct policy, resident_max), 64 * M, 8},
    {"[memory]\nweight = 100\n", "[memory]\nweight = 10000\n", "[memory] weight",
     offsetof(struct policy, weight), 100, 4},
    {"[memory]\nweight = 300\n", "[vm]\nname = x\n", "[vm] name",
     offsetof(struct policy, weight), 300, 4}, /* unset keys keep the operator's */
    {"", "[memory]\ncritical_min = 4G\n", "[memory] critical_min",
     offsetof(struct policy, critical_min), 64 * M, 8},
    {"", "[shm]\nmax = 1T\n", "[shm] max", offsetof(struct policy, shm_max), 256 * M, 8},
    {"", "[shm]\nmax = 16M\n", "", offsetof(struct policy, shm_max), 16 * M, 8},
    {"", "[balloon]\nmax = 2G\n", "", offsetof(struct policy, balloon_max), 2 * G, 8},
    {"[balloon]\nmax = 1G\n", "[balloon]\nmax = 0\n", "[balloon] max",
     offsetof(struct policy, balloon_max), G, 8},
    {"", "[balloon]\nmin = 1G\n", "[balloon] min", offsetof(struct policy, balloon_min),
     128 * M, 8},
    {"", "[fault]\nbusy_poll = 500\n", "[fault] busy_poll", offsetof(struct policy, busy_poll_us),
     0, 4},
    {"", "[tracker]\ninterval = 100\n", "[tracker] interval",
     offsetof(struct policy, track_interval_ms), 1000, 4},
    {"", "[tracker]\ninterval = 5000\n", "", offsetof(struct policy, track_interval_ms), 5000, 4},
    {"", "[tracker]\ninterval = 2s\n", "", offsetof(struct policy, track_interval_ms), 2000, 4},
    {"", "[tracker]\ninterval = 500ms\n", "[tracker] interval",
     offsetof(struct policy, track_interval_ms), 1000, 4},
    {"", "[fault]\nbusy_poll = 5us\n", "[fault] busy_poll", offsetof(struct policy, busy_poll_us),
     0, 4},
    {"[fault]\nbusy_poll = 50us\n", "[fault]\nbusy_poll = 20\n", "",
     offsetof(struct policy, busy_poll_us), 20, 4},
    {"", "[prefetch]\nproactive = no\n", "", offsetof(struct policy, prefetch_on), 0, 4},
    {"[prefetch]\nproactive = off\n", "[prefetch]\nproactive = yes\n", "[prefetch] proactive",
     offsetof(struct policy, prefetch_on), 0, 4},
    {"", "[balloon]\nenabled = false\n", "[balloon] enabled", offsetof(struct policy, balloon_on),
     1, 4},
    {"[vm]\nowner = alice\n", "[vm]\nowner = mallory\n", "[vm] owner",
     offsetof(struct policy, owner), 0, 0},
    {"", "[disk]\npath = /etc/passwd\n", "[disk] path", offsetof(struct policy, disk_path), 0, 0},
    {"", "[fault]\ncpu = 0\n", "[fault] cpu", offsetof(struct policy, fault_cpu),
     (uint64_t)POLICY_CPU_FOLLOW, 4},
    /* first touch and read-ahead cost only memory the VM's own limit counts: its choice */
    {"", "[fault]\nfirst_touch = 2M\nreadahead = 64M\n", "",
     offsetof(struct policy, first_touch), 2 * M, 8},
    {"[shm]\nmax = 1M\n", "[memory]\nrun_size = 2M\n[shm]\nmax = 4M\n",
     "[memory] run_size, [shm] max", offsetof(struct policy, run_size), 64 * K, 8},
    {"", "[shm]\nhigh_watermark = 50\nlow_watermark = 10\n", "",
     offsetof(struct policy, shm_high_pct), 50, 4},
};

static void test_clamp(void **state)
{
	const struct clamp_case *c = *state;
	struct policy trusted, mine, before;
	char err[256], what[256];
	uint64_t v = 0;
	uint32_t u;

	assert_int_equal(policy_parse_string(c->trusted, "op.conf", &trusted, err, sizeof(err)), 0);
	mine = trusted;
	/* As authz parses it: over the operator's policy. */
	{
		char path[] = "/tmp/test_policy_clamp.XXXXXX";
		int fd = mkstemp(path);

		assert_true(fd >= 0);
		assert_int_equal(write(fd, c->mine, strlen(c->mine)), (ssize_t)strlen(c->mine));
		lseek(fd, 0, SEEK_SET);
		assert_int_equal(policy_load_fd(fd, "vm.conf", &trusted, &mine, err, sizeof(err)), 0);
		close(fd);
		unlink(path);
	}
	before = mine;
	policy_clamp(&trusted, &mine, what, sizeof(what));
	assert_string_equal(what, c->put_back);
	if (c->width == 8) {
		memcpy(&v, (char *)&mine + c->offset, 8);
		assert_int_equal(v, c->want);
	} else if (c->width == 4) {
		memcpy(&u, (char *)&mine + c->offset, 4);
		assert_int_equal(u, (uint32_t)c->want);
	} else {
		assert_string_equal((char *)&mine + c->offset, (char *)&trusted + c->offset);
	}
	/* Clamping twice changes nothing more; the operator's own policy is never clamped. */
	assert_int_equal(policy_clamp(&trusted, &mine, NULL, 0), 0);
	before = trusted;
	assert_int_equal(policy_clamp(&trusted, &before, NULL, 0), 0);
}

int main(void)
{
	static const struct CMUnitTest single[] = {
	    cmocka_unit_test(test_defaults),
	    cmocka_unit_test(test_disk_keys),
	    cmocka_unit_test(test_time_keys),
	    cmocka_unit_test(test_interval),
	    cmocka_unit_test(test_booleans),
	    cmocka_unit_test(test_error_leaves_policy),
	    cmocka_unit_test(test_null_err_and_label),
	    cmocka_unit_test(test_long_lines),
	    cmocka_unit_test(test_load_missing),
	    cmocka_unit_test(test_load_directory),
	    cmocka_unit_test(test_load_good_and_bad),
	    cmocka_unit_test(test_load_nul_byte),
	    cmocka_unit_test(test_load_too_large),
	    cmocka_unit_test(test_example_file),
	    cmocka_unit_test(test_compress_key),
	    cmocka_unit_test(test_example_output_parses),
	    cmocka_unit_test(test_print_keys),
	};
	size_t n = 0, i,
	       max = ARRAY_SIZE(size_cases) + ARRAY_SIZE(good_cases) + ARRAY_SIZE(bad_cases) +
		     ARRAY_SIZE(single) + ARRAY_SIZE(clamp_cases);
	struct CMUnitTest *tests = calloc(max, sizeof(*tests));
	char(*names)[80] = calloc(ARRAY_SIZE(size_cases), sizeof(*names));
	int failed;

	if (!tests || !names)
		return 1;
	for (i = 0; i < ARRAY_SIZE(size_cases); i++) {
		snprintf(names[i], sizeof(names[i]), "size '%s'", size_cases[i].text);
		tests[n++] = (struct CMUnitTest){.name = names[i],
						 .test_func = test_size,
						 .initial_state = (void *)&size_cases[i]};
	}
	for (i = 0; i < ARRAY_SIZE(good_cases); i++)
		tests[n++] = (struct CMUnitTest){.name = good_cases[i].name,
						 .test_func = test_good,
						 .initial_state = (void *)&good_cases[i]};
	for (i = 0; i < ARRAY_SIZE(bad_cases); i++)
		tests[n++] = (struct CMUnitTest){.name = bad_cases[i].name,
						 .test_func = test_bad,
						 .initial_state = (void *)&bad_cases[i]};
	for (i = 0; i < ARRAY_SIZE(single); i++)
		tests[n++] = single[i];
	for (i = 0; i < ARRAY_SIZE(clamp_cases); i++)
		tests[n++] = (struct CMUnitTest){.name = "clamp",
						 .test_func = test_clamp,
						 .initial_state = (void *)&clamp_cases[i]};
	failed = _cmocka_run_group_tests("policy", tests, n, NULL, NULL);
	free(names);
	free(tests);
	return failed ? 1 : 0;
}
