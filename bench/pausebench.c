/* pausebench: the pause a guest sees while uffd-mgrd is killed and restarted, or upgraded.
 *
 * Fills every page of its memory with a non-zero pattern (in order), waits until residency has
 * settled under --limit-mb, prints "PAUSEBENCH ready", then reads one word of a page chosen at
 * random (seeded) after another, forever, until SIGUSR1 or --seconds. The resident limit is a
 * quarter of the memory or less, so most reads fault from the shm tier while the evictor
 * pushes another page out. Every time between two consecutive completed reads longer than
 * --gap-ms is a pause: it is printed at once, one line
 *   gap start_ns=<end of the read before> end_ns=<end of the read after> ms=<length>
 * (CLOCK_MONOTONIC). A daemon killed while we fault leaves that fault waiting in the kernel
 * until a new daemon has adopted the VM, so a kill or an upgrade shows as one gap: from the
 * last read served before it to the first served after. Reads outside gaps give the fault
 * latency of the running daemon: a read whose page mincore(2) called absent just before is a
 * tier fault, timed alone.
 *
 * Each page read is checked against its pattern, and at the end every page is.
 *
 * Output: gap lines, then one line "PAUSEBENCH key=value ..." (latencies in µs, gaps in ms).
 * Exit 0, or 1 when a page came back wrong or a step failed (the reason on stderr). */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "bench/gmem.h"

#define BUCKET_NS 100 /* latency histogram resolution: faults take some µs */

/* SIGUSR1: the script has done its kills; stop reading and verify. */
static volatile sig_atomic_t stop_now;

struct opts {
	size_t mb, limit_mb;
	double gap_ms, seconds; /* seconds 0: until SIGUSR1 */
	int cpu;
	uint64_t seed;
};

/* Latencies below the gap threshold, BUCKET_NS apart: a run of minutes makes millions of
 * reads, too many to keep each. */
struct hist {
	uint64_t *n;
	size_t nb, count;
	double sum_us;
};

static void on_usr1(int sig)
{
	(void)sig;
	stop_now = 1;
}

static int parse(int argc, char **argv, struct opts *o)
{
	static const struct option lo[] = {
	    {"mb", required_argument, NULL, 'm'},
	    {"limit-mb", required_argument, NULL, 'l'},
	    {"gap-ms", required_argument, NULL, 'g'},
	    {"seconds", required_argument, NULL, 't'},
	    {"cpu", required_argument, NULL, 'c'},
	    {"seed", required_argument, NULL, 'S'},
	    {NULL, 0, NULL, 0},
	};
	int c;

	*o = (struct opts){.mb = 192, .limit_mb = 48, .gap_ms = 2, .cpu = -1, .seed = 1};
	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (c) {
		case 'm':
			o->mb = strtoul(optarg, NULL, 0);
			break;
		case 'l':
			o->limit_mb = strtoul(optarg, NULL, 0);
			break;
		case 'g':
			o->gap_ms = atof(optarg);
			break;
		case 't':
			o->seconds = atof(optarg);
			break;
		case 'c':
			o->cpu = atoi(optarg);
			break;
		case 'S':
			o->seed = strtoull(optarg, NULL, 0);
			break;
		default:
			fprintf(stderr, "usage: pausebench [--mb N] [--limit-mb L] [--gap-ms G] "
					"[--seconds S] [--cpu C] [--seed S]\n");
			return -EINVAL;
		}
	}
	return o->mb && o->limit_mb && o->limit_mb < o->mb && o->gap_ms > 0 ? 0 : -EINVAL;
}

/* splitmix64: the page order, the same for the same seed. */
static uint64_t next_rand(uint64_t *s)
{
	uint64_t x = (*s += 0x9e3779b97f4a7c15ull);

	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

static void hist_add(struct hist *h, uint64_t ns)
{
	size_t b = ns / BUCKET_NS;

	h->n[b < h->nb ? b : h->nb - 1]++;
	h->count++;
	h->sum_us += (double)ns / 1e3;
}

/* The pct-th percentile (nearest rank) in µs, at the middle of its bucket; 0 when empty. */
static double hist_pct(const struct hist *h, double pct)
{
	uint64_t rank = (uint64_t)(pct / 100.0 * (double)h->count + 0.999999), seen = 0;

	for (size_t b = 0; b < h->nb && h->count; b++) {
		seen += h->n[b];
		if (seen >= (rank ? rank : 1))
			return ((double)b + 0.5) * BUCKET_NS / 1e3;
	}
	return 0;
}

static void hist_report(const char *name, const struct hist *h)
{
	printf(" %s_n=%zu %s_mean_us=%.2f %s_p50_us=%.2f %s_p99_us=%.2f", name, h->count, name,
	       h->count ? h->sum_us / (double)h->count : 0, name, hist_pct(h, 50), name,
	       hist_pct(h, 99));
}

/* Fills every page in order and waits for the evictor to bring residency under the limit.
 * Returns 0 or -errno. */
static int fill(struct gmem *g, const struct opts *o)
{
	for (size_t p = 0; p < g->npages; p++)
		gmem_fill_page(g, p);
	return gmem_settle(g, (o->limit_mb << 20) / GMEM_PAGE, 120);
}

/* The read loop (see the header); faults and all take the latencies outside gaps, *gaps and
 * *longest_ms the pauses. Returns the pages that came back wrong. */
static size_t read_loop(struct gmem *g, const struct opts *o, struct hist *faults, struct hist *all,
			size_t *gaps, double *longest_ms)
{
	uint64_t gap_ns = (uint64_t)(o->gap_ms * 1e6), seed = o->seed, start = gmem_now_ns();
	uint64_t end = o->seconds > 0 ? start + (uint64_t)(o->seconds * 1e9) : UINT64_MAX;
	uint64_t prev = start;
	size_t bad = 0;

	while (!stop_now && prev < end) {
		size_t page = next_rand(&seed) % g->npages;
		const uint8_t *p = g->base + page * GMEM_PAGE;
		unsigned char in = 1;
		uint64_t t0, t1;

		mincore((void *)p, GMEM_PAGE, &in);
		t0 = gmem_now_ns();
		(void)*(const volatile uint64_t *)p;
		t1 = gmem_now_ns();
		bad += !gmem_check_page(p, page);
		if (t1 - prev > gap_ns) {
			double ms = (double)(t1 - prev) / 1e6;

			printf("gap start_ns=%llu end_ns=%llu ms=%.3f\n", (unsigned long long)prev,
			       (unsigned long long)t1, ms);
			(*gaps)++;
			*longest_ms = ms > *longest_ms ? ms : *longest_ms;
		} else {
			hist_add(all, t1 - t0);
			if (!(in & 1))
				hist_add(faults, t1 - t0);
		}
		prev = gmem_now_ns(); /* the check and a gap line are not the next read's */
	}
	return bad;
}

/* Reads every page back and checks it. Returns the pages that came back wrong. */
static size_t verify_all(struct gmem *g)
{
	size_t bad = 0;

	for (size_t p = 0; p < g->npages; p++)
		bad += !gmem_check_page(g->base + p * GMEM_PAGE, p);
	return bad;
}

int main(int argc, char **argv)
{
	struct hist faults = {0}, all = {0};
	size_t gaps = 0, bad = 0;
	double longest = 0;
	struct opts o;
	struct gmem g;
	int r, rc = 1;

	if (parse(argc, argv, &o))
		return 2;
	setvbuf(stdout, NULL, _IOLBF, 0); /* the script reads the gaps as they happen */
	signal(SIGUSR1, on_usr1);
	faults.nb = all.nb = (size_t)(o.gap_ms * 1e6) / BUCKET_NS + 1;
	faults.n = calloc(faults.nb, sizeof(*faults.n));
	all.n = calloc(all.nb, sizeof(*all.n));
	if (!faults.n || !all.n)
		goto out_free;
	if (gmem_pin(o.cpu) || gmem_map(&g, o.mb << 20, false)) {
		perror("pausebench: pin or map");
		goto out_free;
	}
	r = fill(&g, &o);
	if (r) {
		fprintf(stderr, "pausebench: residency did not settle under %zu MiB: %s\n",
			o.limit_mb, strerror(-r));
		goto out_unmap;
	}
	printf("PAUSEBENCH ready\n");
	bad = read_loop(&g, &o, &faults, &all, &gaps, &longest);
	bad += verify_all(&g);
	printf("PAUSEBENCH");
	hist_report("fault", &faults);
	hist_report("access", &all);
	printf(" gaps=%zu longest_gap_ms=%.3f bad=%zu\n", gaps, longest, bad);
	if (bad)
		fprintf(stderr, "pausebench: %zu pages came back wrong\n", bad);
	else
		rc = 0;
out_unmap:
	gmem_unmap(&g);
out_free:
	free(faults.n);
	free(all.n);
	return rc;
}
