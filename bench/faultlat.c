/* faultlat: fault service latency as the guest sees it: one timed access per page, random order.
 *
 * 1. First touch: writes one word to each of the first K pages of a seeded random order,
 *    timing each write. Each is a first touch: a zero-page fault when uffd-mgrd serves the
 *    memory, the kernel's own fault otherwise. K pages fit under the resident limit, so the
 *    evictor has no work yet.
 * 2. Fill: writes a non-zero pattern to every page, in the same order (untimed). Past the
 *    resident limit the evictor (or, for anonymous memory in a memory cgroup, the kernel's
 *    reclaim to swap) moves pages out.
 * 3. Tier faults (--limit-mb): once residency has settled under the limit, discards K resident
 *    pages (so that bringing K pages back costs no eviction meanwhile), then reads one word of
 *    K absent pages in random order, timing each read, and checks each page's pattern. With
 *    run_size 4K each read is one fault of one page, served from wherever the page lives: the
 *    shm tier, the disk tier, or kernel swap.
 * The caller pins us (--cpu) so that the fault thread's placement relative to us is known.
 * With --corpus FILE, page p holds page p (mod its length) of FILE instead of a pattern, and
 * comes back checked byte for byte: guest-like data for the compressed shm tier (run.sh,
 * scene 11, builds FILE from the test guest's kernel, initramfs and modules).
 *
 * Output: one line "FAULTLAT key=value ..." (latencies in µs; *_max_us is the longest single
 * access of a phase, so that no median hides a stall). Exit 0, or 1 when a page came
 * back wrong or a step failed (the reason on stderr). */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bench/gmem.h"

struct opts {
	size_t mb, samples, limit_mb;
	int cpu;
	bool anon;
	const char *sync_dir;
	uint64_t seed;
	const char *corpus_path;
	uint8_t *corpus; /* --corpus: its pages, loaded */
	size_t corpus_pages;
};

static int parse(int argc, char **argv, struct opts *o)
{
	static const struct option lo[] = {
	    {"mb", required_argument, NULL, 'm'},	{"samples", required_argument, NULL, 'k'},
	    {"limit-mb", required_argument, NULL, 'l'}, {"cpu", required_argument, NULL, 'c'},
	    {"anon", no_argument, NULL, 'a'},		{"sync", required_argument, NULL, 's'},
	    {"seed", required_argument, NULL, 'S'},	{"corpus", required_argument, NULL, 'C'},
	    {NULL, 0, NULL, 0},
	};
	int c;

	*o = (struct opts){.mb = 192, .samples = 8192, .cpu = -1, .seed = 1};
	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (c) {
		case 'm':
			o->mb = strtoul(optarg, NULL, 0);
			break;
		case 'k':
			o->samples = strtoul(optarg, NULL, 0);
			break;
		case 'l':
			o->limit_mb = strtoul(optarg, NULL, 0);
			break;
		case 'c':
			o->cpu = atoi(optarg);
			break;
		case 'a':
			o->anon = true;
			break;
		case 's':
			o->sync_dir = optarg;
			break;
		case 'S':
			o->seed = strtoull(optarg, NULL, 0);
			break;
		case 'C':
			o->corpus_path = optarg;
			break;
		default:
			fprintf(stderr, "usage: faultlat [--mb N] [--samples K] [--limit-mb L] "
					"[--cpu C] [--anon] [--sync DIR] [--seed S] [--corpus FILE]\n");
			return -EINVAL;
		}
	}
	/* The first-touch samples must fit under the limit, or they would race the evictor. */
	if (!o->mb || !o->samples || o->samples * GMEM_PAGE > o->mb << 20 ||
	    (o->limit_mb && o->samples * GMEM_PAGE >= o->limit_mb << 20))
		return -EINVAL;
	return 0;
}

/* Reads the --corpus file, whole pages of it. Returns 0 or -errno. */
static int load_corpus(struct opts *o)
{
	struct stat sb;
	int fd = open(o->corpus_path, O_RDONLY | O_CLOEXEC), r = 0;

	if (fd < 0 || fstat(fd, &sb) < 0)
		return -errno;
	o->corpus_pages = (size_t)sb.st_size / GMEM_PAGE;
	o->corpus = malloc(o->corpus_pages * GMEM_PAGE + 1);
	if (!o->corpus_pages || !o->corpus)
		r = -EINVAL;
	for (size_t done = 0; !r && done < o->corpus_pages * GMEM_PAGE;) {
		ssize_t n = read(fd, o->corpus + done, o->corpus_pages * GMEM_PAGE - done);

		if (n <= 0)
			r = n ? -errno : -EIO;
		done += n > 0 ? (size_t)n : 0;
	}
	close(fd);
	return r;
}

static const uint8_t *corpus_page(const struct opts *o, size_t page)
{
	return o->corpus + (page % o->corpus_pages) * GMEM_PAGE;
}

static void fill_page(struct gmem *g, const struct opts *o, size_t page)
{
	if (o->corpus)
		memcpy(g->base + page * GMEM_PAGE, corpus_page(o, page), GMEM_PAGE);
	else
		gmem_fill_page(g, page);
}

static bool check_page(const struct opts *o, const uint8_t *p, size_t page)
{
	return o->corpus ? !memcmp(p, corpus_page(o, page), GMEM_PAGE) : gmem_check_page(p, page);
}

/* Phase 1: times a one-word write to each of pages[0..n) into us[]. */
static void first_touch(struct gmem *g, const size_t *pages, size_t n, double *us)
{
	for (size_t i = 0; i < n; i++) {
		volatile uint64_t *w = (volatile uint64_t *)(g->base + pages[i] * GMEM_PAGE);
		uint64_t t0 = gmem_now_ns();

		*w = 1;
		us[i] = (double)(gmem_now_ns() - t0) / 1e3;
	}
}

/* Phase 3: times a one-word read of each of pages[0..n) into us[]; returns the pages whose
 * pattern came back wrong. */
static size_t tier_touch(struct gmem *g, const struct opts *o, const size_t *pages, size_t n,
			 double *us)
{
	size_t bad = 0;

	for (size_t i = 0; i < n; i++) {
		const uint8_t *p = g->base + pages[i] * GMEM_PAGE;
		uint64_t t0 = gmem_now_ns();

		(void)*(const volatile uint64_t *)p;
		us[i] = (double)(gmem_now_ns() - t0) / 1e3;
		bad += !check_page(o, p, pages[i]);
	}
	return bad;
}

/* Makes room for n pages, then picks n absent pages in random order into pages[]. Returns
 * how many it found (fewer when fewer are absent). */
static size_t pick_absent(struct gmem *g, size_t n, uint64_t seed, size_t *pages)
{
	uint8_t *vec = malloc(g->npages);
	size_t *absent = malloc(g->npages * sizeof(*absent)), na = 0;

	if (!vec || !absent) {
		free(vec);
		free(absent);
		return 0;
	}
	gmem_resident(g, vec);
	for (size_t p = 0; p < g->npages; p++)
		if (!vec[p])
			absent[na++] = p;
	gmem_discard(g, vec, n); /* discarded pages were resident: never among the picked */
	gmem_shuffle(absent, na, seed);
	na = na < n ? na : n;
	memcpy(pages, absent, na * sizeof(*pages));
	free(vec);
	free(absent);
	return na;
}

static void report(const char *name, double *us, size_t n)
{
	double mean = gmem_mean(us, n);

	printf(" %s_n=%zu %s_mean_us=%.2f %s_p50_us=%.2f %s_p99_us=%.2f", name, n, name, mean, name,
	       gmem_pct(us, n, 50), name, gmem_pct(us, n, 99));
	printf(" %s_max_us=%.1f", name, gmem_pct(us, n, 100)); /* the longest single fault */
}

/* Phases 2 and 3; pages holds the random order of every page on entry, the pages sampled on
 * return. Returns the pages that came back wrong, or -errno. */
static long tier_phase(struct gmem *g, const struct opts *o, size_t *pages, double *us)
{
	size_t n, bad;
	int r;

	/* In the same order as the first touches, so that a page is written only while it is
	 * still resident: nothing comes back from a tier before the timed phase, and the disk
	 * tier's slots are written once, in one extent from slot 0. */
	for (size_t i = 0; i < g->npages; i++)
		fill_page(g, o, pages[i]);
	r = gmem_settle(g, (o->limit_mb << 20) / GMEM_PAGE, 120);
	if (r) {
		fprintf(stderr, "faultlat: residency did not settle under %zu MiB\n", o->limit_mb);
		return r;
	}
	n = pick_absent(g, o->samples, o->seed + 1, pages);
	r = gmem_sync(o->sync_dir);
	if (r)
		return r;
	bad = tier_touch(g, o, pages, n, us);
	report("tier", us, n);
	return (long)bad;
}

int main(int argc, char **argv)
{
	struct opts o;
	struct gmem g;
	size_t *order;
	double *us;
	long bad = 0;

	if (parse(argc, argv, &o))
		return 2;
	if (o.corpus_path && load_corpus(&o)) {
		fprintf(stderr, "faultlat: cannot read whole pages of %s\n", o.corpus_path);
		return 1;
	}
	if (gmem_pin(o.cpu) || gmem_map(&g, o.mb << 20, o.anon)) {
		perror("faultlat: pin or map");
		return 1;
	}
	order = malloc(g.npages * sizeof(*order));
	us = malloc(o.samples * sizeof(*us));
	if (!order || !us)
		return 1;
	gmem_iota(order, g.npages);
	gmem_shuffle(order, g.npages, o.seed);
	printf("FAULTLAT");
	first_touch(&g, order, o.samples, us);
	report("touch", us, o.samples);
	if (o.limit_mb)
		bad = tier_phase(&g, &o, order, us);
	printf(" bad=%ld\n", bad);
	gmem_unmap(&g);
	if (bad < 0)
		fprintf(stderr, "faultlat: %s\n", strerror((int)-bad));
	else if (bad)
		fprintf(stderr, "faultlat: %ld pages came back wrong\n", bad);
	return bad ? 1 : 0;
}
