/* fakeguest: a host process that stands in for a guest, for fast exact stress tests.
 *
 * It creates a memfd named like QEMU's guest RAM (memory-backend-memfd) and maps it
 * MAP_SHARED, so with LD_PRELOAD=libuffd-shim.so the shim registers it with uffd-mgrd exactly
 * as it does QEMU's. Then T threads read and write seeded patterns for a while.
 *
 * What it checks: every page has a version (kept in private memory, one writer per page:
 * thread t owns pages p with p % T == t); a page's bytes are a function of (seed, page,
 * version), version 0 meaning never written, which must read as zeros. A write rewrites the
 * whole page with the next version, in 64-bit words, so a write that races an eviction blocks
 * part-way on a write-protect fault and must then finish on the page brought back from the
 * tier. Every read verifies the whole page, and at the end every page is verified.
 * With --discard-pct, some operations discard a page as QEMU does (hole punch, then
 * MADV_DONTNEED, which raises UFFD_EVENT_REMOVE): the page must then read zero, wherever it
 * lived (resident, shm or disk tier).
 * With --content mixed, a page's bytes are of one of five kinds, chosen by (seed, page,
 * version): random (incompressible), all zero, a 64-byte pattern repeated (compresses well),
 * half random and half pattern (compresses to about half), and 7/8 random (does not compress
 * by a quarter: the compressed shm tier keeps it raw). The default is random only.
 * Any mismatch prints the page, word, expected and found value and exits 1.
 *
 * With --pattern the threads instead touch a known working set, for the tracker's tests:
 * uniform:K touches pages [0, K) over and over; hotcold:H:C writes H + C pages once, then
 * touches only the first H; phase:A:B:S touches [0, A) for S seconds, then [A, A + B). Each
 * pass reads one word of every page of the set (checked against its version), then sleeps
 * 20 ms. Time counts from when the pages are written (phase's S too). The working set it holds
 * is printed as "FAKEGUEST WSS pages=N" by the first pass that touches a new set: the truth a
 * tracker's estimate is held to, and when it began. At the end a pattern verifies the pages it wrote (the
 * others it never touched). The PASS line gives the run's minor faults (minflt=), the cost a
 * tracker's arming puts on the guest. With --ops N a pattern reads N pages per thread in
 * passes back to back, not paced, and the PASS line gives the time its writes took (fill_ms)
 * and the time of the passes (pass_ms), for a tracker's overhead. With --backends N (patterns
 * only) guest RAM is N memfds mapped back to back, as a NUMA guest's backends. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <pthread.h>
#include <stdint.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#define PAGE  4096u
#define WORDS (PAGE / 8)

/* SIGUSR1: stop the workers now and verify every page, as at the end of --seconds (a test
 * that drives the run from outside decides when it is over). */
static volatile sig_atomic_t finish_now;

struct config {
	uint64_t mb;
	unsigned threads;
	double seconds;
	uint64_t seed;
	unsigned write_pct;
	unsigned hot_pct;     /* share of accesses that go to the hot 1/8 of the pages */
	int map_twice;	      /* map the guest memfd a second time: the shim must refuse */
	int fill;	      /* write every page once before the random phase */
	unsigned discard_pct; /* share of operations that discard a page as QEMU does */
	uint64_t ops;         /* operations per thread (then stop), 0 = run for --seconds */
	unsigned backends;    /* RAM backends, as a NUMA guest has (patterns only) */
	/* --pattern: a known working set for the tracker's tests instead of random accesses */
	enum { PAT_RANDOM, PAT_UNIFORM, PAT_HOTCOLD, PAT_PHASE } pattern;
	uint64_t pat_a, pat_b; /* uniform: a pages; hotcold: a hot, b cold; phase: a then b */
	double pat_switch;     /* phase: seconds before the switch */
	int mixed;	       /* --content mixed: pages of five kinds of compressibility */
};

struct worker {
	const struct config *cfg;
	unsigned id;
	uint64_t *mem;
	int fd;
	uint32_t *version;
	uint64_t npages;
	uint64_t reads, writes, discards;
	double fill_s, run_s; /* pattern: writing its pages, then the passes */
	int failed;
	pthread_t tid;
};

static uint64_t mix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

/* With --content mixed: which words of a page repeat a 64-byte pattern (from word cut on), or
 * WORDS + 1 for an all-zero page. */
static unsigned pattern_from(uint64_t seed, uint64_t page, uint32_t version)
{
	static const unsigned cut[] = {WORDS, WORDS + 1, 0, WORDS / 2, WORDS * 7 / 8};

	return cut[mix(seed ^ 0x5a5a ^ (page << 20) ^ ((uint64_t)version << 44)) % 5];
}

static uint64_t expected(const struct config *c, uint64_t page, uint32_t version, unsigned word)
{
	if (!version)
		return 0;
	if (c->mixed) {
		unsigned from = pattern_from(c->seed, page, version);

		if (from > WORDS)
			return 0;
		if (word >= from)
			word = WORDS + word % 8;
	}
	return mix(c->seed ^ (page << 20) ^ ((uint64_t)version << 44) ^ word);
}

static int check_page(struct worker *w, uint64_t page)
{
	const uint64_t *p = w->mem + page * WORDS;
	uint32_t v = w->version[page];

	for (unsigned i = 0; i < WORDS; i++) {
		uint64_t want = expected(w->cfg, page, v, i);

		if (p[i] != want) {
			fprintf(stderr,
				"FAKEGUEST FAIL page %llu word %u version %u: expected %016llx "
				"found %016llx\n",
				(unsigned long long)page, i, v, (unsigned long long)want,
				(unsigned long long)p[i]);
			return -1;
		}
	}
	return 0;
}

static void write_page(struct worker *w, uint64_t page)
{
	uint64_t *p = w->mem + page * WORDS;
	uint32_t v = ++w->version[page];

	for (unsigned i = 0; i < WORDS; i++)
		p[i] = expected(w->cfg, page, v, i);
}

/* Discards a page the way QEMU does (balloon, free page reporting): punch it out of the
 * memfd, then drop the mapping (which raises UFFD_EVENT_REMOVE). It must read zero after. */
static void discard_page(struct worker *w, uint64_t page)
{
	fallocate(w->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)(page * PAGE), PAGE);
	madvise(w->mem + page * WORDS, PAGE, MADV_DONTNEED);
	w->version[page] = 0;
	w->discards++;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Picks one of this thread's pages: mostly from the hot eighth when hot_pct is set. */
static uint64_t pick(struct worker *w, uint64_t *rng)
{
	uint64_t r = mix((*rng)++), span = w->npages;

	if (w->cfg->hot_pct && (r % 100) < w->cfg->hot_pct)
		span = w->npages / 8 ? w->npages / 8 : 1;
	r = mix(r) % span;
	r -= r % w->cfg->threads;
	r += w->id;
	return r < w->npages ? r : w->id;
}

/* The pages [*lo, *hi) the pattern touches at time t seconds into the run. */
static void pattern_set(const struct config *c, double t, uint64_t *lo, uint64_t *hi)
{
	*lo = 0;
	*hi = c->pat_a;
	if (c->pattern == PAT_PHASE && t >= c->pat_switch) {
		*lo = c->pat_a;
		*hi = c->pat_a + c->pat_b;
	}
}

/* Pages a pattern writes first (and the only ones it ever touches). */
static uint64_t pattern_fill(const struct config *c)
{
	return c->pattern == PAT_UNIFORM ? c->pat_a : c->pat_a + c->pat_b;
}

/* Pages checked at the end: all of them, or those a pattern touched. */
static uint64_t verify_pages(const struct config *c, uint64_t npages)
{
	if (c->pattern == PAT_RANDOM || pattern_fill(c) > npages)
		return npages;
	return pattern_fill(c);
}

static void *run_pattern(struct worker *w)
{
	const struct config *c = w->cfg;
	uint64_t fill = pattern_fill(c);
	double start = now_s(), t = 0;
	uint64_t truth = 0;

	for (uint64_t p = w->id; p < fill && p < w->npages; p += c->threads)
		write_page(w, p);
	/* The run's clock starts once the pages are written: with --ops, the time of a fixed
	 * number of passes, back to back, is the throughput a tracker can slow down. */
	w->fill_s = now_s() - start;
	start = now_s();
	while ((c->ops ? w->reads < c->ops : (t = now_s() - start) < c->seconds) && !w->failed &&
	       !finish_now) {
		uint64_t lo, hi;

		pattern_set(c, c->ops ? 0 : t, &lo, &hi);
		if (w->id == 0 && hi - lo != truth) { /* the set this pass touches is new */
			truth = hi - lo;
			printf("FAKEGUEST WSS pages=%llu\n", (unsigned long long)truth);
			fflush(stdout);
		}
		for (uint64_t p = lo + w->id; p < hi && p < w->npages; p += c->threads) {
			volatile uint64_t *word = w->mem + p * WORDS;

			if (*word != expected(c, p, w->version[p], 0)) {
				fprintf(stderr, "FAKEGUEST FAIL page %llu word 0 changed\n",
					(unsigned long long)p);
				w->failed = 1;
			}
			w->reads++;
		}
		if (!c->ops)
			usleep(20000);
	}
	w->run_s = now_s() - start;
	return NULL;
}

static void *run(void *arg)
{
	struct worker *w = arg;
	uint64_t rng = w->cfg->seed * 1000003 + w->id;
	double end;

	if (w->cfg->pattern != PAT_RANDOM)
		return run_pattern(w);
	for (uint64_t p = w->id; w->cfg->fill && p < w->npages; p += w->cfg->threads)
		write_page(w, p);
	end = now_s() + w->cfg->seconds;
	while ((w->cfg->ops ? w->reads + w->writes + w->discards < w->cfg->ops : now_s() < end) &&
	       !w->failed && !finish_now) {
		for (int i = 0; i < 64; i++) {
			uint64_t page = pick(w, &rng);

			uint64_t dice = mix(rng++) % 100;

			if (dice < w->cfg->discard_pct) {
				discard_page(w, page);
			} else if (dice < w->cfg->discard_pct + w->cfg->write_pct) {
				write_page(w, page);
				w->writes++;
			} else {
				if (check_page(w, page))
					w->failed = 1;
				w->reads++;
			}
		}
	}
	return NULL;
}

static int parse_pattern(const char *s, struct config *c)
{
	unsigned long long a = 0, b = 0;
	double sw = 0;

	if (sscanf(s, "uniform:%llu", &a) == 1 && a) {
		c->pattern = PAT_UNIFORM;
	} else if (sscanf(s, "hotcold:%llu:%llu", &a, &b) == 2 && a) {
		c->pattern = PAT_HOTCOLD;
	} else if (sscanf(s, "phase:%llu:%llu:%lf", &a, &b, &sw) == 3 && a && b) {
		c->pattern = PAT_PHASE;
	} else {
		fprintf(stderr,
			"fakeguest: bad --pattern '%s' (uniform:K, hotcold:H:C, "
			"phase:A:B:SECONDS)\n",
			s);
		return -EINVAL;
	}
	c->pat_a = a;
	c->pat_b = b;
	c->pat_switch = sw;
	return 0;
}

static int parse(int argc, char **argv, struct config *c)
{
	static const struct option opts[] = {
	    {"mb", required_argument, NULL, 'm'},
	    {"threads", required_argument, NULL, 't'},
	    {"seconds", required_argument, NULL, 's'},
	    {"seed", required_argument, NULL, 'S'},
	    {"write-pct", required_argument, NULL, 'w'},
	    {"hot-pct", required_argument, NULL, 'H'},
	    {"map-twice", no_argument, NULL, '2'},
	    {"fill", no_argument, NULL, 'f'},
	    {"discard-pct", required_argument, NULL, 'D'},
	    {"pattern", required_argument, NULL, 'P'},
	    {"ops", required_argument, NULL, 'O'},
	    {"backends", required_argument, NULL, 'B'},
	    {"content", required_argument, NULL, 'C'},
	    {NULL, 0, NULL, 0},
	};
	int o;

	*c = (struct config){.mb = 64, .threads = 2, .seconds = 5, .seed = 1, .write_pct = 50};
	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (o) {
		case 'm':
			c->mb = strtoull(optarg, NULL, 0);
			break;
		case 't':
			c->threads = (unsigned)atoi(optarg);
			break;
		case 's':
			c->seconds = atof(optarg);
			break;
		case 'S':
			c->seed = strtoull(optarg, NULL, 0);
			break;
		case 'w':
			c->write_pct = (unsigned)atoi(optarg);
			break;
		case 'H':
			c->hot_pct = (unsigned)atoi(optarg);
			break;
		case '2':
			c->map_twice = 1;
			break;
		case 'f':
			c->fill = 1;
			break;
		case 'D':
			c->discard_pct = (unsigned)atoi(optarg);
			break;
		case 'O': c->ops = strtoull(optarg, NULL, 0); break;
		case 'B':
			c->backends = (unsigned)atoi(optarg);
			break;
		case 'C':
			c->mixed = !strcmp(optarg, "mixed");
			if (!c->mixed && strcmp(optarg, "random"))
				return -EINVAL;
			break;
		case 'P':
			if (parse_pattern(optarg, c))
				return -EINVAL;
			break;
		default:
			fprintf(stderr,
				"usage: fakeguest [--mb N] [--threads T] [--seconds S] "
				"[--seed S] [--write-pct P] [--hot-pct P] [--map-twice] [--fill] "
				"[--discard-pct P]\n"
				"                 [--pattern uniform:K|hotcold:H:C|phase:A:B:S] [--ops N]"
				" [--backends N]\n"
				"                 [--content random|mixed]\n");
			return -EINVAL;
		}
	}
	return c->mb && c->threads && c->threads <= 64 ? 0 : -EINVAL;
}

/* A memfd of npages pages named and sealed as QEMU's memory-backend-memfd (uffd-mgrd refuses
 * a guest memfd that could shrink under its mapping); -1 on failure. */
static int guest_memfd(uint64_t npages)
{
	int fd = memfd_create("memory-backend-memfd", MFD_CLOEXEC | MFD_ALLOW_SEALING);

	if (fd < 0 || ftruncate(fd, (off_t)(npages * PAGE)) < 0 ||
	    (!getenv("FAKEGUEST_UNSEALED") &&
	     fcntl(fd, F_ADD_SEALS, F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL) < 0)) {
		perror("fakeguest: memfd");
		return -1;
	}
	return fd;
}

/* A NUMA guest's RAM: one memfd per backend, mapped back to back so the workers see one
 * array, and named to the shim as uffd-qemu names QEMU's (UFFD_MGR_BACKENDS, ids n0, n1...):
 * each registers as a unit of its own, NAME then NAME.n1 ... */
static uint64_t *map_backends(const struct config *c, uint64_t npages)
{
	uint64_t per = npages / c->backends;
	char list[512] = "";
	size_t at = 0;
	uint8_t *base;

	for (unsigned b = 0; b < c->backends && at < sizeof(list); b++)
		at += (size_t)snprintf(list + at, sizeof(list) - at, "%sn%u:%llu", b ? "," : "", b,
				       (unsigned long long)(per * PAGE));
	setenv("UFFD_MGR_BACKENDS", list, 1);
	base = mmap(NULL, npages * PAGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (base == MAP_FAILED)
		return MAP_FAILED;
	for (unsigned b = 0; b < c->backends; b++) {
		int fd = guest_memfd(per);

		if (fd < 0 || mmap(base + b * per * PAGE, per * PAGE, PROT_READ | PROT_WRITE,
				   MAP_SHARED | MAP_FIXED, fd, 0) == MAP_FAILED)
			return MAP_FAILED;
	}
	return (uint64_t *)base;
}

static double max_of(const struct worker *ws, unsigned n, int run)
{
	double m = 0;

	for (unsigned i = 0; i < n; i++) {
		double v = run ? ws[i].run_s : ws[i].fill_s;

		m = v > m ? v : m;
	}
	return m;
}

static void on_usr1(int sig)
{
	(void)sig;
	finish_now = 1;
}

int main(int argc, char **argv)
{
	struct config cfg;
	struct worker *ws;
	uint64_t npages, reads = 0, writes = 0, discards = 0;
	uint32_t *version;
	uint64_t *mem;
	int fd, failed = 0;
	double t0, run_s;
	struct rusage ru;

	if (parse(argc, argv, &cfg))
		return 2;
	signal(SIGUSR1, on_usr1);
	npages = cfg.mb * 1024 * 1024 / PAGE;
	if (cfg.backends > 1) {
		if (cfg.pattern == PAT_RANDOM || npages % cfg.backends) {
			fprintf(stderr, "fakeguest: --backends needs a --pattern and pages it "
					"divides\n");
			return 2;
		}
		fd = -1;
		mem = map_backends(&cfg, npages);
	} else {
		fd = guest_memfd(npages);
		mem = fd < 0 ? MAP_FAILED
			     : mmap(NULL, npages * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	}
	if (cfg.map_twice)
		mmap(NULL, npages * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	version = calloc(npages, sizeof(*version));
	ws = calloc(cfg.threads, sizeof(*ws));
	if (mem == MAP_FAILED || !version || !ws) {
		perror("fakeguest: mmap");
		return 1;
	}
	t0 = now_s();
	for (unsigned t = 0; t < cfg.threads; t++) {
		ws[t] = (struct worker){.cfg = &cfg,
					.id = t,
					.mem = mem,
					.fd = fd,
					.version = version,
					.npages = npages};
		pthread_create(&ws[t].tid, NULL, run, &ws[t]);
	}
	for (unsigned t = 0; t < cfg.threads; t++) {
		pthread_join(ws[t].tid, NULL);
		failed |= ws[t].failed;
		reads += ws[t].reads;
		writes += ws[t].writes;
		discards += ws[t].discards;
	}
	run_s = now_s() - t0;
	getrusage(RUSAGE_SELF, &ru);
	/* A pattern never touches the pages past the ones it wrote: reading them all would be a
	 * zero-page fault each (minutes on a guest of gigabytes), and they are zero by the same
	 * check on the pages that are read. */
	for (uint64_t p = 0; p < verify_pages(&cfg, npages) && !failed; p++)
		if (check_page(&ws[p % cfg.threads], p))
			failed = 1;
	if (failed)
		return 1;
	printf("FAKEGUEST PASS pages=%llu threads=%u reads=%llu writes=%llu discards=%llu "
	       "ms=%.0f minflt=%ld",
	       (unsigned long long)npages, cfg.threads, (unsigned long long)reads,
	       (unsigned long long)writes, (unsigned long long)discards, run_s * 1000,
	       ru.ru_minflt);
	if (cfg.pattern != PAT_RANDOM) /* the slowest thread's */
		printf(" fill_ms=%.0f pass_ms=%.0f", max_of(ws, cfg.threads, 0) * 1000,
		       max_of(ws, cfg.threads, 1) * 1000);
	printf("\n");
	return 0;
}
