/* policy: the policy file parser. See policy.h.
 *
 * Every key is one row of keys[]: the parser, policy_print_keys() and policy_print_example()
 * read nothing else. inih splits lines into section, key and value; our own line reader
 * (read_line) hands it one line at a time and first rejects the lines that inih would read
 * in a surprising way:
 *
 *  - an indented line after a key is a continuation of that key's value (even across blank
 *    lines and comments), so "  run_size = 64K" under another key silently changes the
 *    other key: we reject every indented line that is not blank or a comment;
 *  - " ; text" ends a value but "64K;text" and "64K # text" do not, and text after a
 *    "[section]" header is ignored: we reject ';' and '#' anywhere after the start of a
 *    line, and anything after ']';
 *  - a line longer than inih's buffer is cut and its tail parsed as a line of its own (a
 *    long comment could end in "key = value"): we reject long lines;
 *  - a section header with no keys under it never reaches the handler: we check section
 *    names here, so "[memroy]" is an error even when empty.
 *
 * No state outside the parse context: it goes through inih's user and stream pointers. */
#include "uffd-mgr/policy.h"
#include "uffd-mgr/log.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <ini.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define KIB (UINT64_C(1) << 10)
#define MIB (UINT64_C(1) << 20)
#define TIB (UINT64_C(1) << 40)

#define POLICY_FILE_MAX (1024 * 1024) /* larger policy files are refused with -EFBIG */
#define POLICY_MSG_MAX	256
#define QUOTE_MAX	48 /* longest piece of a file quoted in an error */
#define WRAP_WIDTH	80

enum key_type {
	KT_SIZE, /* uint64_t, bytes, written with policy_parse_size's suffixes */
	KT_UINT, /* uint32_t */
	KT_CPU,	 /* int: a CPU number, -1 written "any" or "-1", or POLICY_CPU_FOLLOW "follow" */
	KT_NAME, /* char[max + 1]: [A-Za-z0-9._-], possibly empty */
	KT_PATH, /* char[max + 1]: an absolute path (or empty), printable, %n and %% only */
	KT_CHOICE, /* int: index of the value in choices ("a|b|c") */
	KT_TIME,   /* uint32_t in the key's unit_us, written with a unit: 500ms, 1s, 2m (or 0) */
	KT_BOOL,   /* int: 0 or 1, written on/off, true/false, yes/no or 1/0 */
};

#define KF_ZERO_OFF (1u << 0) /* 0 is allowed below min: it switches the limit off */
#define KF_POW2	    (1u << 1) /* the value must be a power of two */
#define KF_PLAIN    (1u << 2) /* KT_TIME: a bare number counts in the field's unit, as it did
			       * before the key took units */

struct policy_key {
	const char *section;
	const char *key;
	enum key_type type;
	const char *def;   /* default, as written in a policy file */
	uint64_t min, max; /* inclusive bounds; KT_NAME: max is the longest length */
	unsigned flags;	   /* KF_* */
	size_t offset;	   /* of the field in struct policy */
	const char *help;
	const char *choices; /* KT_CHOICE: the values, '|'-separated, in index order */
	uint32_t unit_us;    /* KT_TIME: the field's unit in microseconds (1000: ms); min and
			      * max are in it */
};

/* The table reads best one field a line, which clang-format would re-indent. */
/* clang-format off */

/* Offset of member m of struct policy, which must have type t: a key whose type does not
 * match its field is a compile error (negative array size). */
#define FIELD(m, t)								\
	(offsetof(struct policy, m) +						\
	 0 * sizeof(char[__builtin_types_compatible_p(				\
		 __typeof__(((struct policy *)0)->m), t) ? 1 : -1]))

enum {
	K_NAME, K_OWNER, K_RESIDENT_MAX, K_RUN_SIZE, K_WEIGHT, K_CRITICAL_MIN, K_SHM_MAX, K_SHM_HIGH, K_SHM_LOW, K_SHM_COMPRESS, K_DISK_PATH,
	K_DISK_MAX, K_DISK_READ_RETRY, K_FAULT_CPU, K_BUSY_POLL, K_STALL_WARN, K_FIRST_TOUCH, K_READAHEAD, K_TRACK_MODE, K_TRACK_INTERVAL, K_TRACK_SAMPLE,
	K_TRACK_REGIONS,
	K_BALLOON, K_BALLOON_MIN, K_BALLOON_MAX, K_BALLOON_HEADROOM, K_PREFETCH, K_PREFETCH_BATCH,
	K_COUNT
};

static const struct policy_key keys[K_COUNT] = {
	[K_NAME] = {
		.section = "vm",
		.key = "name",
		.type = KT_NAME,
		.def = "",
		.max = POLICY_NAME_MAX - 1,
		.offset = FIELD(name, char[POLICY_NAME_MAX]),
		.help = "Name of the VM in logs, statistics and uffdctl. Empty: derived from "
			"the policy file's name.",
	},
	[K_OWNER] = {
		.section = "vm",
		.key = "owner",
		.type = KT_NAME,
		.def = "",
		.max = POLICY_NAME_MAX - 1,
		.offset = FIELD(owner, char[POLICY_NAME_MAX]),
		.help = "In the daemon's policy directory only: the user (name or uid) whose "
			"QEMU may register this VM; root always may. Empty: any peer the daemon "
			"lets register VMs. Ignored in a file named by uffd-qemu --policy.",
	},
	[K_RESIDENT_MAX] = {
		.section = "memory",
		.key = "resident_max",
		.type = KT_SIZE,
		.def = "0",
		.min = MIB,
		.max = UINT64_MAX,
		.flags = KF_ZERO_OFF,
		.offset = FIELD(resident_max, uint64_t),
		.help = "Most guest RAM kept resident in host memory; colder runs beyond it "
			"are evicted to the shm tier. 0: no limit.",
	},
	[K_RUN_SIZE] = {
		.section = "memory",
		.key = "run_size",
		.type = KT_SIZE,
		.def = "64K",
		.min = 4 * KIB,
		.max = 2 * MIB,
		.flags = KF_POW2,
		.offset = FIELD(run_size, uint64_t),
		.help = "Unit of eviction: the evictor moves the resident pages of an "
			"aligned run of guest pages together into adjacent tier slots, and "
			"a fault on any of them brings them all back with one copy. Larger "
			"runs mean fewer faults and coarser eviction.",
	},
	[K_WEIGHT] = {
		.section = "memory",
		.key = "weight",
		.type = KT_UINT,
		.def = "100",
		.min = 1,
		.max = 10000,
		.offset = FIELD(weight, uint32_t),
		.help = "This VM's weight in the host budget (uffd-mgrd --budget): when memory is "
			"short, VMs get their predicted demand in proportion to their weights, and "
			"spare memory goes out the same way.",
	},
	[K_CRITICAL_MIN] = {
		.section = "memory",
		.key = "critical_min",
		.type = KT_SIZE,
		.def = "64M",
		.min = 0,
		.max = 64 * TIB,
		.offset = FIELD(critical_min, uint64_t),
		.help = "Least memory the planner guarantees this VM, whatever it predicts: the "
			"floor of its critical amount (the memory below which the guest starts "
			"to page).",
	},
	[K_SHM_MAX] = {
		.section = "shm",
		.key = "max",
		.type = KT_SIZE,
		.def = "256M",
		.min = MIB,
		.max = TIB,
		.offset = FIELD(shm_max, uint64_t),
		.help = "Most of this VM's evicted memory kept in the shm tier.",
	},
	[K_SHM_HIGH] = {
		.section = "shm",
		.key = "high_watermark",
		.type = KT_UINT,
		.def = "90",
		.min = 1,
		.max = 100,
		.offset = FIELD(shm_high_pct, uint32_t),
		.help = "Percent of [shm] max at which the coldest runs start moving from the "
			"shm tier to the disk tier (when [disk] path is set).",
	},
	[K_SHM_LOW] = {
		.section = "shm",
		.key = "low_watermark",
		.type = KT_UINT,
		.def = "75",
		.min = 0,
		.max = 99,
		.offset = FIELD(shm_low_pct, uint32_t),
		.help = "Percent of [shm] max down to which demotion to disk goes once it has "
			"started; below high_watermark.",
	},
	[K_SHM_COMPRESS] = {
		.section = "shm",
		.key = "compress",
		.type = KT_CHOICE,
		.def = "off",
		.choices = "off|lz4|zstd",
		.offset = FIELD(shm_compress, int),
		.help = "Store each evicted run compressed, in 256-byte grains of the shm tier: "
			"more guest memory in the same [shm] max, for the CPU time of compressing "
			"on eviction and decompressing on fault. A run that does not shrink by a "
			"quarter is kept as it is; zero pages are never stored. lz4: fast (the "
			"fault costs little more than uncompressed); zstd: smaller, slower. "
			"Pages demoted to the disk tier are written there uncompressed. Fixed for "
			"the life of the VM: a daemon that adopts it keeps the form its tier has.",
	},
	[K_DISK_PATH] = {
		.section = "disk",
		.key = "path",
		.type = KT_PATH,
		.def = "",
		.max = POLICY_PATH_MAX - 1,
		.offset = FIELD(disk_path, char[POLICY_PATH_MAX]),
		.help = "Swap file of this VM's disk tier, created at start (O_DIRECT where "
			"the file system allows it) and unlinked at once: it lives as long as "
			"the VM, and no crash leaves guest memory in a named file (df counts "
			"it, ls does not). A symbolic link, a file with other names or another "
			"user's file there is refused, never truncated. %n stands for the VM "
			"name. Empty: no disk tier, the shm tier is the last one.",
	},
	[K_DISK_MAX] = {
		.section = "disk",
		.key = "max",
		.type = KT_SIZE,
		.def = "1G",
		.min = MIB,
		.max = 64 * TIB,
		.offset = FIELD(disk_max, uint64_t),
		.help = "Most of this VM's evicted memory kept in the disk tier.",
	},
	[K_DISK_READ_RETRY] = {
		.section = "disk",
		.key = "read_retry_max",
		.type = KT_TIME,
		.def = "30s",
		.min = 100,
		.max = 3600 * 1000,
		.flags = KF_ZERO_OFF,
		.unit_us = 1000,
		.offset = FIELD(disk_read_retry_ms, uint32_t),
		.help = "How long a fault retries a disk read that keeps failing. Past it the VM "
			"has failed: the log names the page, the swap file and the error, and its "
			"QEMU is stopped rather than left with a vCPU that never runs again. 0: "
			"retry for ever.",
	},
	[K_FAULT_CPU] = {
		.section = "fault",
		.key = "cpu",
		.type = KT_CPU,
		.def = "follow",
		.max = 4095,
		.offset = FIELD(fault_cpu, int),
		.help = "CPU the fault-handling thread is pinned to. follow: the CPU of the "
			"thread whose faults it serves most, as the kernel last ran it (a wake-up "
			"across CPUs costs several times one on the same CPU); it moves at most "
			"once per 32 faults, and stays put when the kernel does not say which "
			"thread faulted. any (or -1): left to the scheduler.",
	},
	[K_BUSY_POLL] = {
		.section = "fault",
		.key = "busy_poll",
		.type = KT_TIME,
		.def = "0",
		.max = 1000,
		.flags = KF_PLAIN,
		.unit_us = 1,
		.offset = FIELD(busy_poll_us, uint32_t),
		.help = "How long the fault thread polls for the next fault before it sleeps "
			"(e.g. 50us), only while the VM faults hard (its last fault was served "
			"less than a millisecond ago) and never on the CPU of the thread that "
			"faulted (which polling would keep from running); trades CPU time for "
			"fault latency. A plain number is in microseconds. 0: no polling.",
	},
	[K_FIRST_TOUCH] = {
		.section = "fault",
		.key = "first_touch",
		.type = KT_SIZE,
		.def = "64K",
		.min = 4 * KIB,
		.max = 2 * MIB,
		.flags = KF_POW2,
		.offset = FIELD(first_touch, uint64_t),
		.help = "A fault on a never-touched page fills the aligned block of this size "
			"around it, over the pages of the block still never touched, with one "
			"call, when the page before the block is in use (the guest grows its "
			"memory in address order): such first touches then fault once per "
			"block, scattered ones one page each as before. The pages "
			"filled are resident and count against the limit: under one, blocks are "
			"filled only while they leave the evictor nothing to do, and a block the "
			"guest never uses is evicted as zero pages, which cost no tier slot. 4K: "
			"one page a fault.",
	},
	[K_READAHEAD] = {
		.section = "fault",
		.key = "readahead",
		.type = KT_SIZE,
		.def = "1M",
		.min = 64 * KIB,
		.max = 64 * MIB,
		.flags = KF_ZERO_OFF | KF_POW2,
		.offset = FIELD(readahead_max, uint64_t),
		.help = "Most memory a fault from the shm tier brings back ahead of the guest "
			"once its faults go through the tier in address order: the window starts "
			"at one run past the fault and doubles with each fault that follows on, "
			"up to this; a fault out of order closes it. 0: no read-ahead.",
	},
	[K_STALL_WARN] = {
		.section = "fault",
		.key = "stall_warn",
		.type = KT_TIME,
		.def = "1s",
		.min = 10,
		.max = 3600 * 1000,
		.flags = KF_ZERO_OFF,
		.unit_us = 1000,
		.offset = FIELD(stall_warn_ms, uint32_t),
		.help = "A fault that has waited longer than this is logged, once, with its page "
			"and what it waits on (an eviction in flight, a disk read retry, the "
			"throttle, host memory), and counted in faults.stalled. 0: not reported.",
	},
	[K_TRACK_MODE] = {
		.section = "tracker",
		.key = "mode",
		.type = KT_CHOICE,
		.def = "ebpf",
		.choices = "ebpf|sample|off",
		.offset = FIELD(track_mode, int),
		.help = "How the working set is measured. ebpf: a BPF program on the page-fault "
			"tracepoints sees the first access to each observed page per interval "
			"(falls back to sample, and says why, where BPF cannot load). sample: "
			"userfaultfd minor faults on a random sample of pages. off: no tracker; "
			"eviction follows the order of fault-ins.",
	},
	[K_TRACK_INTERVAL] = {
		.section = "tracker",
		.key = "interval",
		.type = KT_TIME,
		.def = "1s",
		.min = 100,
		.max = 60000,
		.flags = KF_PLAIN,
		.unit_us = 1000,
		.offset = FIELD(track_interval_ms, uint32_t),
		.help = "Time between two observations: each one reads which observed pages "
			"were accessed and arms the next set. A plain number is in milliseconds.",
	},
	[K_TRACK_SAMPLE] = {
		.section = "tracker",
		.key = "sample_pages",
		.type = KT_UINT,
		.def = "0",
		.max = 1u << 24,
		.offset = FIELD(track_sample_pages, uint32_t),
		.help = "Resident pages observed per interval, chosen at random in whole runs; "
			"the working set is scaled up from them. 0: with mode ebpf, as regions "
			"says; with mode sample, 4096.",
	},
	[K_TRACK_REGIONS] = {
		.section = "tracker",
		.key = "regions",
		.type = KT_UINT,
		.def = "1000",
		.max = 8192, /* PROTO_ARM_MAX: one arming message */
		.offset = FIELD(track_regions, uint32_t),
		.help = "Mode ebpf: at most this many adaptive regions, each observed through "
			"one page per interval (split where its samples disagree, merged with "
			"neighbours where they agree), so the tracker's cost per interval is "
			"bounded whatever the guest's size. 0: observe every resident page each "
			"interval (exact, at one minor fault per used page per interval).",
	},
	[K_BALLOON] = {
		.section = "balloon",
		.key = "enabled",
		.type = KT_BOOL,
		.def = "on",
		.offset = FIELD(balloon_on, int),
		.help = "Drive the guest's virtio-balloon over QMP: the planner asks the guest to "
			"give back what its predicted demand does not need, and to take it back "
			"when demand grows. uffd-qemu adds the device (with deflate-on-oom, so "
			"the guest never runs out of memory because of it).",
	},
	[K_BALLOON_MIN] = {
		.section = "balloon",
		.key = "min",
		.type = KT_SIZE,
		.def = "128M",
		.min = 0,
		.max = 64 * TIB,
		.offset = FIELD(balloon_min, uint64_t),
		.help = "The balloon never leaves the guest less than this.",
	},
	[K_BALLOON_MAX] = {
		.section = "balloon",
		.key = "max",
		.type = KT_SIZE,
		.def = "0",
		.min = MIB,
		.max = 64 * TIB,
		.flags = KF_ZERO_OFF,
		.offset = FIELD(balloon_max, uint64_t),
		.help = "Most memory the planner gives this VM. 0: its guest RAM.",
	},
	[K_BALLOON_HEADROOM] = {
		.section = "balloon",
		.key = "headroom",
		.type = KT_UINT,
		.def = "10",
		.min = 0,
		.max = 100,
		.offset = FIELD(balloon_headroom_pct, uint32_t),
		.help = "Percent of its share the guest keeps on top of it when ballooned, for "
			"what the prediction did not see coming.",
	},
	[K_PREFETCH] = {
		.section = "prefetch",
		.key = "proactive",
		.type = KT_BOOL,
		.def = "on",
		.offset = FIELD(prefetch_on, int),
		.help = "Bring tiered pages back before the guest faults on them when its demand "
			"is predicted to grow and its share allows: the runs seen most recently "
			"first, in batches, stopping when pressure returns.",
	},
	[K_PREFETCH_BATCH] = {
		.section = "prefetch",
		.key = "batch",
		.type = KT_SIZE,
		.def = "32M",
		.min = 64 * KIB,
		.max = 64 * TIB,
		.offset = FIELD(prefetch_batch, uint64_t),
		.help = "Most memory one plan brings back ahead of faults.",
	},
};

/* Cross-key rules, checked once the whole file is read: keys[big] >= keys[small], both
 * KT_SIZE, unless keys[big] is 0 and KF_ZERO_OFF. */
static const struct {
	int big, small;
} at_least[] = {
	{K_RESIDENT_MAX, K_RUN_SIZE},
	{K_SHM_MAX, K_RUN_SIZE},
};

/* clang-format on */

struct parse_ctx {
	const char *label;     /* file name in errors */
	const char *pos;       /* the text not yet handed to inih */
	int lineno;	       /* of the line inih is working on */
	struct policy pol;     /* copied out only if the whole file is good */
	int key_line[K_COUNT]; /* where each key was set; 0 = not set */
	int err_line;	       /* of the first error; 0 = none, or none that has a line */
	bool failed;
	char msg[POLICY_MSG_MAX];
};

/* Records the first error, at the line being read. Returns 0: a handler's "failed". */
__attribute__((format(printf, 2, 3))) static int fail(struct parse_ctx *c, const char *fmt, ...)
{
	va_list ap;

	if (c->failed)
		return 0;
	va_start(ap, fmt);
	vsnprintf(c->msg, sizeof(c->msg), fmt, ap);
	va_end(ap);
	c->failed = true;
	c->err_line = c->lineno;
	return 0;
}

/* Copies at most n bytes of s into buf (QUOTE_MAX + 4 bytes) for an error message: control
 * and non-ASCII bytes become '?', so the message stays one printable line. */
static const char *quote(const char *s, size_t n, char *buf)
{
	size_t i;

	for (i = 0; i < n && s[i] && i < QUOTE_MAX; i++)
		buf[i] = isprint((unsigned char)s[i]) ? s[i] : '?';
	buf[i] = '\0';
	if (i < n && s[i])
		strcpy(buf + i, "...");
	return buf;
}

/* Writes v with the largest binary suffix that divides it: 65536 -> "64K". */
static const char *fmt_size(uint64_t v, char buf[24])
{
	static const char suffix[] = "KMGT";
	int i = 0;

	while (v && i < 4 && (v & (KIB - 1)) == 0) {
		v >>= 10;
		i++;
	}
	if (i)
		snprintf(buf, 24, "%llu%c", (unsigned long long)v, suffix[i - 1]);
	else
		snprintf(buf, 24, "%llu", (unsigned long long)v);
	return buf;
}

/* Parses decimal digits only (no sign, no space). Returns 0, -EINVAL or -ERANGE. */
static int parse_u64(const char *s, const char **end, uint64_t *out)
{
	uint64_t n = 0;
	bool overflow = false;

	if (!isdigit((unsigned char)*s))
		return -EINVAL;
	for (; isdigit((unsigned char)*s); s++) {
		unsigned d = (unsigned)(*s - '0');

		if (n > (UINT64_MAX - d) / 10)
			overflow = true;
		else
			n = n * 10 + d;
	}
	*end = s;
	if (overflow)
		return -ERANGE;
	*out = n;
	return 0;
}

int policy_parse_size(const char *text, uint64_t *bytes)
{
	static const char units[] = "KMGT";
	const char *s, *u;
	unsigned shift = 0;
	uint64_t n = 0;
	int ret;

	ret = parse_u64(text, &s, &n);
	if (ret == -EINVAL)
		return ret;
	if (*s) {
		u = strchr(units, toupper((unsigned char)*s));
		if (!u)
			return -EINVAL;
		shift = 10 * (unsigned)(u - units + 1);
		s++;
		if (*s && strcasecmp(s, "B") && strcasecmp(s, "iB"))
			return -EINVAL;
	}
	/* Syntax first: "99999999999999999999Q" is garbage, not an overflow. */
	if (ret == -ERANGE || n > (UINT64_MAX >> shift))
		return -ERANGE;
	*bytes = n << shift;
	return 0;
}

static const struct {
	const char *unit;
	uint64_t us;
} time_units[] = {{"h", 3600000000ull}, {"m", 60000000}, {"s", 1000000}, {"ms", 1000},
		  {"us", 1}, {"\xc2\xb5s", 1}};

/* Writes us microseconds with the largest unit that divides it: 60000000 -> "1m". */
static const char *fmt_time(uint64_t us, char buf[24])
{
	for (size_t i = 0; us && i < sizeof(time_units) / sizeof(time_units[0]); i++)
		if (us % time_units[i].us == 0) {
			snprintf(buf, 24, "%llu%s", (unsigned long long)(us / time_units[i].us),
				 time_units[i].unit);
			return buf;
		}
	snprintf(buf, 24, "0");
	return buf;
}

/* Parses a duration such as "500ms", "1s", "2m", "1h", "50us" (any case), or "0", in
 * microseconds; a bare number counts plain_us each, or is not a duration when plain_us is 0
 * (but for 0). Returns 0, -EINVAL if the text is not a duration, -ERANGE if it overflows. */
static int parse_time(const char *text, uint64_t plain_us, uint64_t *us)
{
	const char *s;
	uint64_t n = 0;
	int ret = parse_u64(text, &s, &n);

	if (ret == -EINVAL)
		return ret;
	if (!*s && (plain_us || (ret == 0 && n == 0))) {
		if (ret == -ERANGE || n > UINT64_MAX / (plain_us ? plain_us : 1))
			return -ERANGE;
		*us = n * plain_us;
		return 0;
	}
	for (size_t i = 0; i < sizeof(time_units) / sizeof(time_units[0]); i++) {
		if (strcasecmp(s, time_units[i].unit))
			continue;
		if (ret == -ERANGE || n > UINT64_MAX / time_units[i].us)
			return -ERANGE;
		*us = n * time_units[i].us;
		return 0;
	}
	return -EINVAL;
}

/* Parses on/off, true/false, yes/no, 1/0 (any case). Returns 0 or 1, or -EINVAL. */
static int parse_bool(const char *text)
{
	static const char *const yes[] = {"on", "true", "yes", "1"};
	static const char *const no[] = {"off", "false", "no", "0"};

	for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
		if (!strcasecmp(text, yes[i]))
			return 1;
		if (!strcasecmp(text, no[i]))
			return 0;
	}
	return -EINVAL;
}

/* Describes the values keys[k] accepts, completing "[sec] key must be ...". */
static const char *describe_bounds(const struct policy_key *k, char *buf, size_t len)
{
	char lo[24], hi[24];

	switch (k->type) {
	case KT_SIZE:
		fmt_size(k->min, lo);
		fmt_size(k->max, hi);
		if (k->flags & KF_POW2)
			snprintf(buf, len, "%sa power of two between %s and %s",
				 k->flags & KF_ZERO_OFF ? "0 or " : "", lo, hi);
		else if (k->max == UINT64_MAX)
			snprintf(buf, len, "%sat least %s", k->flags & KF_ZERO_OFF ? "0 or " : "",
				 lo);
		else
			snprintf(buf, len, "%sbetween %s and %s",
				 k->flags & KF_ZERO_OFF ? "0 or " : "", lo, hi);
		break;
	case KT_UINT:
		snprintf(buf, len, "between %llu and %llu", (unsigned long long)k->min,
			 (unsigned long long)k->max);
		break;
	case KT_CPU:
		snprintf(buf, len, "follow, any or between %llu and %llu", (unsigned long long)k->min,
			 (unsigned long long)k->max);
		break;
	case KT_NAME:
		snprintf(buf, len, "at most %llu characters of A-Z a-z 0-9 . _ -",
			 (unsigned long long)k->max);
		break;
	case KT_CHOICE:
		snprintf(buf, len, "one of %s", k->choices);
		break;
	case KT_TIME:
		snprintf(buf, len, "%sbetween %s and %s", k->flags & KF_ZERO_OFF ? "0 or " : "",
			 fmt_time(k->min * k->unit_us, lo), fmt_time(k->max * k->unit_us, hi));
		break;
	case KT_BOOL:
		snprintf(buf, len, "on or off (also true/false, yes/no, 1/0)");
		break;
	case KT_PATH:
		snprintf(buf, len,
			 "empty, or an absolute path (at most %llu characters) whose only %% "
			 "escapes are %%n and %%%%",
			 (unsigned long long)k->max);
		break;
	}
	return buf;
}

static bool in_bounds(const struct policy_key *k, uint64_t v)
{
	if (v == 0 && (k->flags & KF_ZERO_OFF))
		return true;
	if ((k->flags & KF_POW2) && (v & (v - 1)))
		return false;
	return v >= k->min && v <= k->max;
}

static bool valid_path(const char *s, size_t max)
{
	if (!*s)
		return true;
	if (*s != '/' || strlen(s) > max)
		return false;
	for (; *s; s++) {
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return false;
		if (*s == '%' && s[1] != 'n' && s[1] != '%')
			return false;
		if (*s == '%')
			s++;
	}
	return true;
}

static bool valid_name(const char *s, size_t max)
{
	size_t n = strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-");

	return s[n] == '\0' && n <= max;
}

/* The index of value among choices ("a|b|c"), or -1. */
static int choice_index(const char *choices, const char *value)
{
	size_t n = strlen(value);

	for (int i = 0; *choices; i++) {
		size_t w = strcspn(choices, "|");

		if (w == n && !strncmp(choices, value, n))
			return i;
		choices += w + (choices[w] == '|');
	}
	return -1;
}

static int set_time(const struct policy_key *k, const char *value, char *field, char *msg,
		    size_t len)
{
	char q[QUOTE_MAX + 4], bounds[96];
	uint64_t us = 0;
	uint32_t v;
	int ret = parse_time(value, k->flags & KF_PLAIN ? k->unit_us : 0, &us);

	if (ret == -EINVAL) {
		snprintf(msg, len, "[%s] %s: '%s' is not a duration (use e.g. 500ms, 1s, 2m)",
			 k->section, k->key, quote(value, SIZE_MAX, q));
		return -EINVAL;
	}
	if (ret == 0 && us % k->unit_us) {
		snprintf(msg, len, "[%s] %s: '%s' is not a whole number of %s", k->section, k->key,
			 quote(value, SIZE_MAX, q), k->unit_us == 1000 ? "milliseconds" : "units");
		return -EINVAL;
	}
	if (ret == -ERANGE || !in_bounds(k, us / k->unit_us)) {
		snprintf(msg, len, "[%s] %s must be %s", k->section, k->key,
			 describe_bounds(k, bounds, sizeof(bounds)));
		return -EINVAL;
	}
	v = (uint32_t)(us / k->unit_us); /* bounded above, so it fits */
	memcpy(field, &v, sizeof(v));
	return 0;
}

static int set_bool(const struct policy_key *k, const char *value, char *field, char *msg,
		    size_t len)
{
	char q[QUOTE_MAX + 4];
	int v = parse_bool(value);

	if (v < 0) {
		snprintf(msg, len,
			 "[%s] %s: '%s' is not a boolean (use on/off, true/false, yes/no, 1/0)",
			 k->section, k->key, quote(value, SIZE_MAX, q));
		return -EINVAL;
	}
	memcpy(field, &v, sizeof(v));
	return 0;
}

/* Parses value for key k into its field of *p. Returns 0, or -EINVAL with msg set to why
 * (without the line). */
static int set_value(const struct policy_key *k, const char *value, struct policy *p, char *msg,
		     size_t len)
{
	char *field = (char *)p + k->offset;
	char q[QUOTE_MAX + 4], bounds[96];
	const char *end;
	uint64_t v = 0;
	int ret;

	switch (k->type) {
	case KT_SIZE:
		ret = policy_parse_size(value, &v);
		if (ret == -EINVAL) {
			snprintf(msg, len, "bad size '%s' for [%s] %s (use bytes or K/M/G/T)",
				 quote(value, SIZE_MAX, q), k->section, k->key);
			return -EINVAL;
		}
		if (ret == -ERANGE) {
			snprintf(msg, len, "size '%s' for [%s] %s does not fit in 64 bits",
				 quote(value, SIZE_MAX, q), k->section, k->key);
			return -EINVAL;
		}
		if (in_bounds(k, v)) {
			memcpy(field, &v, sizeof(uint64_t));
			return 0;
		}
		break;
	case KT_UINT:
	case KT_CPU:
		if (k->type == KT_CPU && (!strcasecmp(value, "any") || !strcmp(value, "-1") ||
					  !strcasecmp(value, "follow"))) {
			int cpu = strcasecmp(value, "follow") ? -1 : POLICY_CPU_FOLLOW;

			memcpy(field, &cpu, sizeof(int));
			return 0;
		}
		ret = parse_u64(value, &end, &v);
		if (ret == -EINVAL || (ret == 0 && *end)) {
			snprintf(msg, len, "bad %s '%s' for [%s] %s (use %s)",
				 k->type == KT_CPU ? "CPU" : "number", quote(value, SIZE_MAX, q),
				 k->section, k->key,
				 k->type == KT_CPU ? "a CPU number, follow or any" : "a whole number");
			return -EINVAL;
		}
		if (ret == 0 && in_bounds(k, v)) {
			uint32_t u = (uint32_t)v;
			int i = (int)v;

			/* Bounds are checked above, so neither cast truncates. */
			if (k->type == KT_CPU)
				memcpy(field, &i, sizeof(int));
			else
				memcpy(field, &u, sizeof(uint32_t));
			return 0;
		}
		break;
	case KT_NAME:
		if (valid_name(value, k->max)) {
			strcpy(field, value);
			return 0;
		}
		break;
	case KT_PATH:
		if (valid_path(value, k->max)) {
			strcpy(field, value);
			return 0;
		}
		break;
	case KT_CHOICE:
		ret = choice_index(k->choices, value);
		if (ret >= 0) {
			memcpy(field, &ret, sizeof(int));
			return 0;
		}
		break;
	case KT_TIME:
		return set_time(k, value, field, msg, len);
	case KT_BOOL:
		return set_bool(k, value, field, msg, len);
	}
	snprintf(msg, len, "[%s] %s must be %s", k->section, k->key,
		 describe_bounds(k, bounds, sizeof(bounds)));
	return -EINVAL;
}

int policy_disk_path(const struct policy *p, const char *vm_name, char *out, size_t len)
{
	size_t n = 0;

	for (const char *s = p->disk_path; *s; s++) {
		const char *piece = s;
		size_t plen = 1;

		if (*s == '%' && s[1] == 'n') {
			piece = vm_name;
			plen = strlen(vm_name);
			s++;
		} else if (*s == '%' && s[1] == '%') {
			s++;
		}
		if (n + plen >= len)
			return -ENAMETOOLONG;
		memcpy(out + n, piece, plen);
		n += plen;
	}
	if (n >= len)
		return -ENAMETOOLONG;
	out[n] = 0;
	return 0;
}

void policy_defaults(struct policy *p)
{
	char msg[POLICY_MSG_MAX];
	int i;

	memset(p, 0, sizeof(*p));
	/* Every default is valid: test_policy checks that the defaults are what they say. */
	for (i = 0; i < K_COUNT; i++)
		set_value(&keys[i], keys[i].def, p, msg, sizeof(msg));
}

static const struct policy_key *find_key(const char *section, const char *key)
{
	int i;

	for (i = 0; i < K_COUNT; i++)
		if (!strcmp(keys[i].section, section) && !strcmp(keys[i].key, key))
			return &keys[i];
	return NULL;
}

/* The section of the only key called key, or NULL if there is none or more than one. */
static const char *section_of(const char *key)
{
	const char *found = NULL;
	int i;

	for (i = 0; i < K_COUNT; i++) {
		if (strcmp(keys[i].key, key))
			continue;
		if (found)
			return NULL;
		found = keys[i].section;
	}
	return found;
}

static bool known_section(const char *name, size_t len)
{
	int i;

	for (i = 0; i < K_COUNT; i++)
		if (strlen(keys[i].section) == len && !strncmp(keys[i].section, name, len))
			return true;
	return false;
}

/* inih's handler: one key = value line. Returns 1, or 0 after recording the error. */
static int on_key(void *user, const char *section, const char *name, const char *value)
{
	struct parse_ctx *c = user;
	const struct policy_key *k;
	const char *home = section_of(name);
	char q[QUOTE_MAX + 4], msg[POLICY_MSG_MAX];

	if (!*section) {
		if (home)
			return fail(c, "key '%s' outside any section (it belongs in [%s])", name,
				    home);
		return fail(c, "key '%s' outside any section", quote(name, SIZE_MAX, q));
	}
	if (!known_section(section, strlen(section))) /* read_line has checked already */
		return fail(c, "unknown section [%s]", quote(section, SIZE_MAX, q));
	k = find_key(section, name);
	if (!k) {
		if (home)
			return fail(c, "unknown key '%s' in [%s] (it belongs in [%s])", name,
				    section, home);
		return fail(c, "unknown key '%s' in [%s]", quote(name, SIZE_MAX, q), section);
	}
	if (c->key_line[k - keys])
		return fail(c, "duplicate key [%s] %s", k->section, k->key);
	if (set_value(k, value, &c->pol, msg, sizeof(msg)))
		return fail(c, "%s", msg);
	c->key_line[k - keys] = c->lineno;
	return 1;
}

/* Checks a "[section]" line (s at the '['). Returns 0 or -EINVAL after fail(). */
static int check_section(struct parse_ctx *c, const char *s)
{
	const char *end = strchr(s, ']'), *rest;
	char q[QUOTE_MAX + 4];

	if (!end) {
		fail(c, "missing ']' in section header");
		return -EINVAL;
	}
	if (!known_section(s + 1, (size_t)(end - s - 1))) {
		fail(c, "unknown section [%s]", quote(s + 1, (size_t)(end - s - 1), q));
		return -EINVAL;
	}
	for (rest = end + 1; isspace((unsigned char)*rest); rest++)
		;
	if (*rest == ';' || *rest == '#') {
		fail(c, "comment after a section header (comments go on lines of their own)");
		return -EINVAL;
	} else if (*rest) {
		fail(c, "unexpected text after section header [%s]",
		     quote(s + 1, (size_t)(end - s - 1), q));
		return -EINVAL;
	}
	return 0;
}

/* Rejects the lines inih would read in a surprising way (see the top of this file). Returns
 * 0 or -EINVAL after fail(). */
static int check_line(struct parse_ctx *c, const char *line)
{
	const char *start = line, *s;

	if (c->lineno == 1 && !strncmp(line, "\xef\xbb\xbf", 3))
		start += 3; /* inih skips a UTF-8 byte order mark */
	for (s = start; isspace((unsigned char)*s); s++)
		;
	if (*s == '\0' || *s == ';' || *s == '#')
		return 0;
	if (s != start) {
		fail(c, "indented line: multi-line values are not supported (remove the leading "
			"whitespace)");
		return -EINVAL;
	}
	if (*s == '[')
		return check_section(c, s);
	if (strpbrk(s, ";#")) {
		fail(c, "comment after a value (comments go on lines of their own)");
		return -EINVAL;
	}
	return 0;
}

/* inih's reader: hands over one whole line of c->pos, or NULL at the end of the text and
 * after the first error (inih then stops and returns the first error's line). */
static char *read_line(char *buf, int size, void *stream)
{
	struct parse_ctx *c = stream;
	const char *eol;
	size_t len, text;

	if (c->failed || !*c->pos)
		return NULL;
	eol = strchr(c->pos, '\n');
	len = eol ? (size_t)(eol - c->pos) + 1 : strlen(c->pos);
	c->lineno++;
	/* inih needs room for "\r\n\0" after the text of the line. */
	text = len;
	if (text && c->pos[text - 1] == '\n')
		text--;
	if (text && c->pos[text - 1] == '\r')
		text--;
	if (size < 4 || text > (size_t)size - 3) {
		fail(c, "line too long (at most %d characters)", size < 4 ? 0 : size - 3);
		return NULL;
	}
	memcpy(buf, c->pos, len);
	buf[len] = '\0';
	c->pos += len;
	if (check_line(c, buf))
		return NULL;
	return buf;
}

/* Checks the at_least[] rules. The error's line is the last line that set one of the two
 * keys; none if neither was set (their defaults never conflict). */
static void check_rules(struct parse_ctx *c)
{
	const struct policy_key *big, *small;
	uint64_t vb, vs;
	char b[24], s[24];
	size_t i;

	for (i = 0; i < sizeof(at_least) / sizeof(at_least[0]) && !c->failed; i++) {
		big = &keys[at_least[i].big];
		small = &keys[at_least[i].small];
		memcpy(&vb, (char *)&c->pol + big->offset, sizeof(vb));
		memcpy(&vs, (char *)&c->pol + small->offset, sizeof(vs));
		if (vb >= vs || (vb == 0 && (big->flags & KF_ZERO_OFF)))
			continue;
		c->lineno = c->key_line[at_least[i].big] > c->key_line[at_least[i].small]
				? c->key_line[at_least[i].big]
				: c->key_line[at_least[i].small];
		fail(c, "[%s] %s (%s) is smaller than [%s] %s (%s)", big->section, big->key,
		     fmt_size(vb, b), small->section, small->key, fmt_size(vs, s));
	}
	if (!c->failed && c->pol.shm_low_pct >= c->pol.shm_high_pct) {
		c->lineno = c->key_line[K_SHM_LOW] > c->key_line[K_SHM_HIGH] ? c->key_line[K_SHM_LOW]
									     : c->key_line[K_SHM_HIGH];
		fail(c, "[shm] low_watermark (%u) must be below high_watermark (%u)",
		     c->pol.shm_low_pct, c->pol.shm_high_pct);
	}
}

/* Parses text over base (NULL: the defaults). On error *p is left as it was. */
static int parse_over(const char *text, const char *label, const struct policy *base,
		      struct policy *p, char *err, size_t errlen)
{
	struct parse_ctx c = {.label = label ? label : "<string>", .pos = text};
	int ret;

	err_set(err, errlen, "%s", "");
	if (base)
		c.pol = *base;
	else
		policy_defaults(&c.pol);
	ret = ini_parse_stream(read_line, &c, on_key, &c);
	if (ret < 0) {
		err_set(err, errlen, "%s: %s", c.label, strerror(ENOMEM));
		return -ENOMEM;
	}
	if (ret > 0 && (!c.failed || ret < c.err_line)) {
		/* An error inih found on its own: a key line with no '=' or ':'. */
		c.err_line = ret;
		snprintf(c.msg, sizeof(c.msg), "syntax error");
		c.failed = true;
	}
	if (!c.failed)
		check_rules(&c);
	if (c.failed) {
		if (c.err_line)
			err_set(err, errlen, "%s:%d: %s", c.label, c.err_line, c.msg);
		else
			err_set(err, errlen, "%s: %s", c.label, c.msg);
		return -EINVAL;
	}
	*p = c.pol;
	return 0;
}

int policy_parse_string(const char *text, const char *label, struct policy *p, char *err,
			size_t errlen)
{
	return parse_over(text, label, NULL, p, err, errlen);
}

/* Reads the whole file into a NUL-terminated buffer. Returns 0 or -errno (-EFBIG past
 * POLICY_FILE_MAX). */
static int read_file(int fd, char **text, size_t *len)
{
	char *buf;
	size_t n = 0;
	ssize_t r;
	int ret = 0;

	buf = malloc(POLICY_FILE_MAX + 1);
	if (!buf)
		return -ENOMEM;
	while (n <= POLICY_FILE_MAX) {
		r = read(fd, buf + n, POLICY_FILE_MAX + 1 - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			ret = -errno;
			goto free_buf;
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
	if (n > POLICY_FILE_MAX) {
		ret = -EFBIG;
		goto free_buf;
	}
	buf[n] = '\0';
	*text = buf;
	*len = n;
	return 0;
free_buf:
	free(buf);
	return ret;
}

int policy_load_fd(int fd, const char *label, const struct policy *base, struct policy *p,
		   char *err, size_t errlen)
{
	const char *nul, *s;
	char *text = NULL;
	size_t len = 0;
	int ret, line = 1;

	ret = read_file(fd, &text, &len);
	if (ret) {
		err_set(err, errlen, "%s: %s", label, strerror(-ret));
		return ret;
	}
	nul = memchr(text, '\0', len);
	if (nul) {
		for (s = text; s < nul; s++)
			line += *s == '\n';
		err_set(err, errlen, "%s:%d: NUL byte in line", label, line);
		ret = -EINVAL;
	} else {
		ret = parse_over(text, label, base, p, err, errlen);
	}
	free(text);
	return ret;
}

int policy_load(const char *path, struct policy *p, char *err, size_t errlen)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC), ret;

	if (fd < 0) {
		ret = -errno;
		err_set(err, errlen, "%s: %s", path, strerror(-ret));
		return ret;
	}
	ret = policy_load_fd(fd, path, NULL, p, err, errlen);
	close(fd);
	return ret;
}

/* How a policy a VM names itself combines with the operator's (policy_clamp): a key listed
 * here may move only the way that costs the host no more; every other key is the operator's.
 * CLAMP_LOWER on a KF_ZERO_OFF key counts 0 (no limit) as the highest value. */
enum clamp_rule { CLAMP_LOWER, CLAMP_RAISE, CLAMP_FREE };

/* clang-format off */
static const struct {
	int key;
	enum clamp_rule rule;
} clamp_rules[] = {
	{K_RESIDENT_MAX, CLAMP_LOWER}, {K_WEIGHT, CLAMP_LOWER}, {K_CRITICAL_MIN, CLAMP_LOWER},
	{K_FIRST_TOUCH, CLAMP_FREE}, {K_READAHEAD, CLAMP_FREE}, /* within the VM's own limit */
	{K_SHM_MAX, CLAMP_LOWER}, {K_DISK_MAX, CLAMP_LOWER}, {K_BUSY_POLL, CLAMP_LOWER},
	{K_BALLOON_MIN, CLAMP_LOWER}, {K_BALLOON_MAX, CLAMP_LOWER},
	{K_PREFETCH, CLAMP_LOWER}, {K_PREFETCH_BATCH, CLAMP_LOWER},
	{K_TRACK_INTERVAL, CLAMP_RAISE},
	{K_SHM_HIGH, CLAMP_FREE}, {K_SHM_LOW, CLAMP_FREE},
};
/* clang-format on */

/* A key's value as a number (KT_SIZE, KT_UINT, KT_TIME, KT_CHOICE, KT_BOOL), 0 standing for
 * "no limit" moved
 * to the top for KF_ZERO_OFF keys. */
static uint64_t clamp_value(const struct policy_key *k, const struct policy *p)
{
	const char *f = (const char *)p + k->offset;
	uint64_t v = 0;
	uint32_t u;
	int i;

	if (k->type == KT_SIZE) {
		memcpy(&v, f, sizeof(v));
	} else if (k->type == KT_UINT || k->type == KT_TIME) {
		memcpy(&u, f, sizeof(u));
		v = u;
	} else if (k->type == KT_CHOICE || k->type == KT_BOOL) {
		memcpy(&i, f, sizeof(i));
		v = (uint64_t)i;
	}
	return v == 0 && (k->flags & KF_ZERO_OFF) ? UINT64_MAX : v;
}

static bool clamp_allows(int key, uint64_t mine, uint64_t theirs)
{
	for (size_t i = 0; i < sizeof(clamp_rules) / sizeof(clamp_rules[0]); i++) {
		if (clamp_rules[i].key != key)
			continue;
		return clamp_rules[i].rule == CLAMP_FREE ||
		       (clamp_rules[i].rule == CLAMP_LOWER ? mine <= theirs : mine >= theirs);
	}
	return false;
}

int policy_clamp(const struct policy *trusted, struct policy *p, char *what, size_t len)
{
	int n = 0;

	err_set(what, len, "%s", "");
	for (int i = 0; i < K_COUNT; i++) {
		const struct policy_key *k = &keys[i];
		char *mine = (char *)p + k->offset;
		const char *theirs = (const char *)trusted + k->offset;
		size_t size = k->type == KT_SIZE ? sizeof(uint64_t)
			      : k->type == KT_NAME || k->type == KT_PATH ? k->max + 1
									 : sizeof(uint32_t);

		if (!memcmp(mine, theirs, size) ||
		    clamp_allows(i, clamp_value(k, p), clamp_value(k, trusted)))
			continue;
		memcpy(mine, theirs, size);
		if (what && strlen(what) + strlen(k->key) + strlen(k->section) + 5 < len)
			snprintf(what + strlen(what), len - strlen(what), "%s[%s] %s", n ? ", " : "",
				 k->section, k->key);
		n++;
	}
	/* The operator's limits may now sit under a run the VM chose: take the operator's run,
	 * and if the VM's own lower limits sit under that, the operator's whole policy. */
	for (int pass = 0; pass < 2; pass++)
		for (size_t i = 0; i < sizeof(at_least) / sizeof(at_least[0]); i++)
			if (clamp_value(&keys[at_least[i].big], p) <
			    clamp_value(&keys[at_least[i].small], p)) {
				if (pass)
					*p = *trusted;
				else
					p->run_size = trusted->run_size;
			}
	return n;
}

/* Writes text word-wrapped to WRAP_WIDTH columns, each line starting with prefix. */
static void wrap(FILE *out, const char *prefix, const char *text)
{
	size_t col = 0, plen = strlen(prefix), w;

	while (*text) {
		while (*text == ' ')
			text++;
		w = strcspn(text, " ");
		if (!w)
			break;
		if (col && col + 1 + w > WRAP_WIDTH) {
			fputc('\n', out);
			col = 0;
		}
		if (!col) {
			fputs(prefix, out);
			col = plen;
		} else {
			fputc(' ', out);
			col++;
		}
		fwrite(text, 1, w, out);
		col += w;
		text += w;
	}
	if (col)
		fputc('\n', out);
}

static const char *type_name(enum key_type t)
{
	switch (t) {
	case KT_SIZE:
		return "SIZE";
	case KT_UINT:
		return "NUMBER";
	case KT_CPU:
		return "CPU";
	case KT_NAME:
		return "NAME";
	case KT_PATH:
		return "PATH";
	case KT_CHOICE:
		return "WORD";
	case KT_TIME:
		return "DURATION";
	case KT_BOOL:
		return "BOOLEAN";
	}
	return "?";
}

void policy_print_keys(FILE *out)
{
	char bounds[96], line[256];
	const char *section = "";
	int i;

	fputs("POLICY FILE\n", out);
	wrap(out, "    ",
	     "An INI file: [section] headers, then key = value lines. Comments are lines of "
	     "their own starting with # or ;. Sizes are bytes or take a K, M, G or T suffix "
	     "(binary: 1K = 1024; 64K, 64KiB, 512m and 2G are all sizes). Durations take a "
	     "unit: 50us, 500ms, 30s, 2m, 1h (a key whose text says so also takes a plain "
	     "number, in the unit it always had). Booleans are on/off, true/false, yes/no or "
	     "1/0. A key that is not set keeps its default; a key set twice is an error.");
	for (i = 0; i < K_COUNT; i++) {
		const struct policy_key *k = &keys[i];

		if (strcmp(section, k->section)) {
			section = k->section;
			fprintf(out, "\n[%s]\n", section);
		}
		fprintf(out, "    %s = %s (default: %s%s%s)\n", k->key, type_name(k->type),
			k->type == KT_NAME || k->type == KT_PATH ? "\"" : "", k->def,
			k->type == KT_NAME || k->type == KT_PATH ? "\"" : "");
		wrap(out, "        ", k->help);
		snprintf(line, sizeof(line), "Allowed: %s.",
			 describe_bounds(k, bounds, sizeof(bounds)));
		wrap(out, "        ", line);
	}
}

void policy_print_example(FILE *out)
{
	char bounds[96], line[256];
	const char *section = NULL;
	int i;

	wrap(out, "# ",
	     "uffd-mgr VM policy. Every key is shown at its default; a key left out keeps "
	     "its default. Sizes are bytes or take a K, M, G or T suffix (1K = 1024); durations "
	     "take a unit (50us, 500ms, 30s, 2m, 1h); booleans are on/off, true/false, yes/no "
	     "or 1/0. Comments go on lines of their own.");
	for (i = 0; i < K_COUNT; i++) {
		const struct policy_key *k = &keys[i];

		if (!section || strcmp(section, k->section)) {
			section = k->section;
			fprintf(out, "\n[%s]\n", section);
		} else {
			fputc('\n', out);
		}
		wrap(out, "# ", k->help);
		snprintf(line, sizeof(line), "Allowed: %s.",
			 describe_bounds(k, bounds, sizeof(bounds)));
		wrap(out, "# ", line);
		fprintf(out, "%s =%s%s\n", k->key, *k->def ? " " : "", k->def);
	}
}
