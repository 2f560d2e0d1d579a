/*
 * memstress: the real guest's workload, run by the initramfs init.
 *
 * It proves that no guest byte is lost or served stale while the host moves guest RAM around:
 * every word it writes is a pure function of (seed, chunk, generation, word index), so any
 * later read can be checked exactly without keeping a copy. Memory is mapped in 1 MiB chunks;
 * each chunk remembers the generation it was last written with, so shrink/regrow/rewrite
 * leave a mix of old and new data that a verify checks in full, byte for byte.
 *
 * Parameters come from the kernel command line (/proc/cmdline, or the file named by
 * $MEMSTRESS_CMDLINE for runs on a host), then from argv in the same key=value form:
 *   memstress.mb=N         MiB to use (default 64)
 *   memstress.seed=S       pattern seed (default 1)
 *   memstress.phases=LIST  comma-separated phases (default grow,verify)
 * Phases:
 *   grow       map and write chunks until mb MiB are live (current generation)
 *   verify     check every word of every live chunk against its pattern
 *   shrink:M   unmap chunks from the top until at most M MiB are live
 *   regrow     new generation, then grow back to mb MiB
 *   rewrite    new generation, rewrite every live chunk
 *   hold:S     sleep S seconds, then verify
 *   touch:S    verify the live chunks over and over for S seconds: a steady working set of
 *              the live size, for the host's working-set tracker to measure
 *   corrupt    flip one seeded bit: the checker's self-test, the next verify must fail
 *   loop:K     run the phases since the previous loop (or the start) K times in total
 * The first failing phase ends the run.
 *
 * Output, one write(2) per line so console lines stay whole:
 *   MEMSTRESS phase=<token> mb=<live MiB> ms=<duration> result=ok|fail   after every phase
 *   MEMSTRESS PASS | MEMSTRESS FAIL <details>                           once, at the end
 * Exit status: 0 pass, 1 fail (the FAIL line was printed).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define CHUNK_SIZE	(1UL << 20)
#define PAGE_SZ		4096UL
#define WORDS_PER_PAGE	(PAGE_SZ / sizeof(uint64_t))
#define PAGES_PER_CHUNK (CHUNK_SIZE / PAGE_SZ)
#define CHUNK_WORDS	(CHUNK_SIZE / sizeof(uint64_t))
#define MAX_MB		(1UL << 20)
#define MAX_STEPS	64
#define MAX_REPORTED	8 /* mismatch lines printed per verify, the rest are only counted */
#define GOLDEN		0x9e3779b97f4a7c15ULL

struct chunk {
	uint64_t *mem;
	uint64_t gen; /* generation the chunk was last written with */
};

struct stress {
	uint64_t seed;
	unsigned long target_mb;
	struct chunk *chunks; /* target_mb slots; live ones are [0, live) */
	unsigned long live;
	uint64_t gen;	      /* generation for the next write */
	uint64_t corruptions; /* so that two corrupt phases never flip the same bit back */
	char where[48];	      /* "config" or "phase=<token>": what failed */
	char fail[512];	      /* why, set once by fail() */
};

struct phase_def {
	const char *name;
	int arg; /* 1: takes ":N" */
	int (*run)(struct stress *st, unsigned long arg);
};

struct step {
	const struct phase_def *def;
	unsigned long arg;
	char token[32];
};

/* Prints one line with a single write(2): the console never sees half a line from us. */
static void say(const char *fmt, ...)
{
	char buf[640];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf) - 1, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if (n > (int)sizeof(buf) - 2)
		n = sizeof(buf) - 2;
	buf[n++] = '\n';
	/* A console that fails a write leaves no one to tell: the runner sees no verdict. */
	if (write(STDOUT_FILENO, buf, n) < 0)
		return;
}

/* Records why the run failed; the first reason wins, later ones are consequences. */
static int fail(struct stress *st, const char *fmt, ...)
{
	va_list ap;

	if (st->fail[0])
		return -1;
	va_start(ap, fmt);
	vsnprintf(st->fail, sizeof(st->fail), fmt, ap);
	va_end(ap);
	return -1;
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* splitmix64's finaliser: cheap (two multiplies) and every input bit reaches every output. */
static inline uint64_t mix64(uint64_t z)
{
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/* Key of one chunk's contents: a page served from the wrong chunk or generation mismatches. */
static uint64_t chunk_key(const struct stress *st, unsigned long idx, uint64_t gen)
{
	return mix64(st->seed ^ mix64(((uint64_t)idx << 32) ^ gen ^ GOLDEN));
}

/* Word i of a chunk (i = page * 512 + word): a splitmix64 stream, so pages differ too. */
static inline uint64_t pattern(uint64_t key, unsigned long i)
{
	return mix64(key + (i + 1) * GOLDEN);
}

static void chunk_fill(const struct stress *st, unsigned long idx)
{
	struct chunk *c = &st->chunks[idx];
	uint64_t key = chunk_key(st, idx, c->gen);
	unsigned long i;

	for (i = 0; i < CHUNK_WORDS; i++)
		c->mem[i] = pattern(key, i);
}

/* OR of the XORs of one page against its pattern: no branch per word, which TCG likes. */
static uint64_t page_diff(const uint64_t *p, uint64_t key, unsigned long base)
{
	uint64_t diff = 0;
	unsigned long w;

	for (w = 0; w < WORDS_PER_PAGE; w++)
		diff |= p[w] ^ pattern(key, base + w);
	return diff;
}

/* Reports the first bad word of a page known to differ; the first one ever is the reason. */
static void page_report(struct stress *st, unsigned long idx, unsigned long page,
			unsigned long *reported)
{
	const struct chunk *c = &st->chunks[idx];
	const uint64_t *p = c->mem + page * WORDS_PER_PAGE;
	uint64_t key = chunk_key(st, idx, c->gen);
	unsigned long w;

	for (w = 0; w < WORDS_PER_PAGE; w++) {
		uint64_t want = pattern(key, page * WORDS_PER_PAGE + w);

		if (p[w] == want)
			continue;
		fail(st,
		     "chunk=%lu page=%lu offset=0x%lx expected=0x%016" PRIx64 " got=0x%016" PRIx64,
		     idx, page, w * 8, want, p[w]);
		if ((*reported)++ < MAX_REPORTED)
			say("memstress: mismatch chunk=%lu gen=%" PRIu64 " page=%lu offset=0x%lx"
			    " expected=0x%016" PRIx64 " got=0x%016" PRIx64,
			    idx, c->gen, page, w * 8, want, p[w]);
		return;
	}
}

/* Checks every word of chunk idx; returns the number of bad pages, reporting the first few. */
static unsigned long chunk_verify(struct stress *st, unsigned long idx, unsigned long *reported)
{
	const struct chunk *c = &st->chunks[idx];
	uint64_t key = chunk_key(st, idx, c->gen);
	unsigned long page, bad = 0;

	for (page = 0; page < PAGES_PER_CHUNK; page++) {
		if (!page_diff(c->mem + page * WORDS_PER_PAGE, key, page * WORDS_PER_PAGE))
			continue;
		bad++;
		page_report(st, idx, page, reported);
	}
	return bad;
}

static int phase_verify(struct stress *st, unsigned long arg)
{
	unsigned long idx, bad = 0, reported = 0;

	for (idx = 0; idx < st->live; idx++)
		bad += chunk_verify(st, idx, &reported);
	if (!bad)
		return 0;
	/* The first mismatch is already the reason; append the total so one line says it all. */
	snprintf(st->fail + strlen(st->fail), sizeof(st->fail) - strlen(st->fail), " bad_pages=%lu",
		 bad);
	return -1;
}

/* Maps and writes chunks until target_mb are live, all with the current generation. */
static int phase_grow(struct stress *st, unsigned long arg)
{
	while (st->live < st->target_mb) {
		struct chunk *c = &st->chunks[st->live];
		void *mem = mmap(NULL, CHUNK_SIZE, PROT_READ | PROT_WRITE,
				 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

		if (mem == MAP_FAILED)
			return fail(st, "chunk=%lu mmap: %s", st->live, strerror(errno));
		c->mem = mem;
		c->gen = st->gen;
		chunk_fill(st, st->live);
		st->live++;
	}
	return 0;
}

/* Unmaps from the top until at most arg MiB remain: the guest kernel gets the pages back. */
static int phase_shrink(struct stress *st, unsigned long arg)
{
	while (st->live > arg) {
		struct chunk *c = &st->chunks[--st->live];

		if (munmap(c->mem, CHUNK_SIZE))
			return fail(st, "chunk=%lu munmap: %s", st->live, strerror(errno));
		c->mem = NULL;
	}
	return 0;
}

/* Grows back to target_mb; the new chunks get a new generation, the old ones keep theirs. */
static int phase_regrow(struct stress *st, unsigned long arg)
{
	st->gen++;
	return phase_grow(st, arg);
}

static int phase_rewrite(struct stress *st, unsigned long arg)
{
	unsigned long idx;

	st->gen++;
	for (idx = 0; idx < st->live; idx++) {
		st->chunks[idx].gen = st->gen;
		chunk_fill(st, idx);
	}
	return 0;
}

static int phase_hold(struct stress *st, unsigned long arg)
{
	struct timespec ts = {.tv_sec = (time_t)arg};

	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
	return phase_verify(st, 0);
}

static int phase_touch(struct stress *st, unsigned long arg)
{
	struct timespec t0, t;
	int r;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	do {
		r = phase_verify(st, 0);
		clock_gettime(CLOCK_MONOTONIC, &t);
	} while (!r && (unsigned long)(t.tv_sec - t0.tv_sec) < arg);
	return r;
}

/*
 * Flips one seeded bit in a live chunk without updating the pattern: the checker's own
 * self-test, so a run can prove that a lost byte really turns into FAIL.
 */
static int phase_corrupt(struct stress *st, unsigned long arg)
{
	uint64_t r = mix64(st->seed ^ st->gen ^ mix64(++st->corruptions));
	volatile uint64_t *word;

	if (!st->live)
		return fail(st, "no live chunk to corrupt");
	word = st->chunks[r % st->live].mem + (r >> 20) % CHUNK_WORDS;
	*word ^= 1ULL << ((r >> 8) % 64);
	return 0;
}

static const struct phase_def phase_defs[] = {
    {"grow", 0, phase_grow},	   {"verify", 0, phase_verify},
    {"shrink", 1, phase_shrink},   {"regrow", 0, phase_regrow},
    {"rewrite", 0, phase_rewrite}, {"hold", 1, phase_hold},
    {"corrupt", 0, phase_corrupt}, {"loop", 1, NULL},
    {"touch", 1, phase_touch},
};

/* Parses "name" or "name:N" into step; returns 0 or -1 with st->fail set. */
static int parse_step(struct stress *st, const char *tok, size_t len, struct step *step)
{
	const char *colon = memchr(tok, ':', len);
	size_t nlen = colon ? (size_t)(colon - tok) : len;
	unsigned i;

	if (len >= sizeof(step->token))
		return fail(st, "phase '%.*s' is too long", (int)len, tok);
	memcpy(step->token, tok, len);
	step->token[len] = '\0';
	for (i = 0; i < sizeof(phase_defs) / sizeof(phase_defs[0]); i++) {
		const struct phase_def *d = &phase_defs[i];
		const char *num;
		char *end;

		if (strlen(d->name) != nlen || strncmp(d->name, tok, nlen))
			continue;
		if (d->arg != !!colon)
			return fail(st, "phase '%s' %s", step->token,
				    d->arg ? "needs :N" : "takes no argument");
		step->def = d;
		if (!colon)
			return 0;
		num = step->token + nlen + 1; /* tok is not NUL-terminated: parse the copy */
		errno = 0;
		step->arg = strtoul(num, &end, 10);
		if (errno || end == num || *end || *num == '-')
			return fail(st, "phase '%s': bad number", step->token);
		return 0;
	}
	return fail(st, "unknown phase '%s'", step->token);
}

/* Splits the comma-separated list; returns the number of steps or -1 with st->fail set. */
static int parse_phases(struct stress *st, const char *list, struct step *steps)
{
	int n = 0;

	while (*list) {
		size_t len = strcspn(list, ",");

		if (len && n == MAX_STEPS)
			return fail(st, "more than %d phases", MAX_STEPS);
		if (len && parse_step(st, list, len, &steps[n++]))
			return -1;
		list += len + (list[len] == ',');
	}
	if (!n)
		return fail(st, "empty phase list");
	return n;
}

/* Runs one step and prints its line; on failure the reason is prefixed with the phase. */
static int run_step(struct stress *st, const struct step *step)
{
	uint64_t t0 = now_ms();
	int ret = step->def->run(st, step->arg);

	say("MEMSTRESS phase=%s mb=%lu ms=%" PRIu64 " result=%s", step->token, st->live,
	    now_ms() - t0, ret ? "fail" : "ok");
	if (ret)
		snprintf(st->where, sizeof(st->where), "phase=%s", step->token);
	return ret;
}

/*
 * Runs the plan. "loop:K" makes the phases since the previous loop (or the start) run K
 * times in total, then prints its own line with the time of the K-1 extra rounds.
 */
static int run_steps(struct stress *st, const struct step *steps, int n)
{
	int start = 0, i, j;
	unsigned long round;

	for (i = 0; i < n; i++) {
		uint64_t t0 = now_ms();

		if (steps[i].def->run) {
			if (run_step(st, &steps[i]))
				return -1;
			continue;
		}
		for (round = 1; round < steps[i].arg; round++)
			for (j = start; j < i; j++)
				if (run_step(st, &steps[j]))
					return -1;
		say("MEMSTRESS phase=%s mb=%lu ms=%" PRIu64 " result=ok", steps[i].token, st->live,
		    now_ms() - t0);
		start = i + 1;
	}
	return 0;
}

struct config {
	unsigned long mb;
	unsigned long seed;
	char phases[512];
};

/* The parameters: one table gives the parser, the defaults and the help text. */
static const struct param {
	const char *key;
	int is_num;
	size_t off;
	unsigned long min, max;
	const char *def;
	const char *help;
} params[] = {
    {"mb", 1, offsetof(struct config, mb), 1, MAX_MB, "64", "MiB to use, in 1 MiB chunks"},
    {"seed", 1, offsetof(struct config, seed), 0, ~0UL, "1", "seed of the data pattern"},
    {"phases", 0, offsetof(struct config, phases), 0, 0, "grow,verify",
     "comma-separated: grow verify shrink:M regrow rewrite hold:S touch:S corrupt loop:K"},
};

#define N_PARAMS (sizeof(params) / sizeof(params[0]))

/* Stores val into the field of p; returns 0 or -1 with st->fail set. */
static int param_set(struct stress *st, struct config *cfg, const struct param *p, const char *val)
{
	char *field = (char *)cfg + p->off;
	unsigned long v;
	char *end;

	if (!p->is_num) {
		if (strlen(val) >= sizeof(cfg->phases))
			return fail(st, "memstress.%s is too long", p->key);
		strcpy(field, val);
		return 0;
	}
	errno = 0;
	v = strtoul(val, &end, 0);
	if (errno || end == val || *end || *val == '-' || v < p->min || v > p->max)
		return fail(st, "memstress.%s=%s: want a number in [%lu, %lu]", p->key, val, p->min,
			    p->max);
	memcpy(field, &v, sizeof(v));
	return 0;
}

/* Applies one "memstress.key=value" token; other tokens are not ours and are skipped. */
static int param_token(struct stress *st, struct config *cfg, const char *tok)
{
	static const char prefix[] = "memstress.";
	const char *key = tok + sizeof(prefix) - 1;
	const char *eq = strchr(tok, '=');
	unsigned i;

	if (strncmp(tok, prefix, sizeof(prefix) - 1))
		return 0;
	if (!eq)
		return fail(st, "%s: want key=value", tok);
	for (i = 0; i < N_PARAMS; i++)
		if (strlen(params[i].key) == (size_t)(eq - key) &&
		    !strncmp(params[i].key, key, eq - key))
			return param_set(st, cfg, &params[i], eq + 1);
	return fail(st, "unknown parameter '%.*s'", (int)(eq - tok), tok);
}

/* Reads the kernel command line (or $MEMSTRESS_CMDLINE) and applies our tokens. */
static int param_cmdline(struct stress *st, struct config *cfg)
{
	const char *path = getenv("MEMSTRESS_CMDLINE");
	char buf[8192], *tok, *save;
	FILE *f;
	size_t n;

	if (!path || !*path)
		path = "/proc/cmdline";
	f = fopen(path, "r");
	if (!f)
		return fail(st, "%s: %s", path, strerror(errno));
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	for (tok = strtok_r(buf, " \t\n", &save); tok; tok = strtok_r(NULL, " \t\n", &save))
		if (param_token(st, cfg, tok))
			return -1;
	return 0;
}

static void usage(void)
{
	unsigned i;

	printf("usage: memstress [memstress.KEY=VALUE...]\n"
	       "Writes, checks and reports seeded data; keys are read from /proc/cmdline\n"
	       "(or the file $MEMSTRESS_CMDLINE names), then from the arguments:\n");
	for (i = 0; i < N_PARAMS; i++)
		printf("  memstress.%-7s %s (default %s)\n", params[i].key, params[i].help,
		       params[i].def);
	printf("Exit status: 0 and 'MEMSTRESS PASS', or 1 and 'MEMSTRESS FAIL <details>'.\n");
}

/* Fills cfg from defaults, command line and argv; returns 0 or -1 with st->fail set. */
static int configure(struct stress *st, struct config *cfg, int argc, char **argv)
{
	unsigned i;
	int a;

	for (i = 0; i < N_PARAMS; i++)
		if (param_set(st, cfg, &params[i], params[i].def))
			return -1;
	if (param_cmdline(st, cfg))
		return -1;
	for (a = 1; a < argc; a++) {
		if (strncmp(argv[a], "memstress.", 10))
			return fail(st, "argument '%s': want memstress.KEY=VALUE", argv[a]);
		if (param_token(st, cfg, argv[a]))
			return -1;
	}
	return 0;
}

static int run(struct stress *st, int argc, char **argv)
{
	static struct step steps[MAX_STEPS];
	struct config cfg;
	int n;

	snprintf(st->where, sizeof(st->where), "config");
	if (configure(st, &cfg, argc, argv))
		return -1;
	n = parse_phases(st, cfg.phases, steps);
	if (n < 0)
		return -1;
	st->seed = cfg.seed;
	st->target_mb = cfg.mb;
	st->gen = 1;
	st->chunks = calloc(cfg.mb, sizeof(*st->chunks));
	if (!st->chunks)
		return fail(st, "calloc: %s", strerror(errno));
	say("memstress: mb=%lu seed=%lu phases=%s", cfg.mb, cfg.seed, cfg.phases);
	return run_steps(st, steps, n);
}

int main(int argc, char **argv)
{
	static struct stress st;

	if (argc > 1 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
		usage();
		return 0;
	}
	if (run(&st, argc, argv)) {
		say("MEMSTRESS FAIL %s %s", st.where, st.fail);
		return 1;
	}
	say("MEMSTRESS PASS");
	return 0;
}
