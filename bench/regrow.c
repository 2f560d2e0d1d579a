/* regrow: how fast a guest gets its working set back after it was pushed out of host RAM.
 *
 * Fills every page of its memory with a non-zero pattern (in order), waits until residency has
 * settled under --limit-mb (the evictor, or the kernel's reclaim in a memory cgroup, has pushed
 * all but that much out), then reads the whole working set back twice, copying each 4 KiB page
 * into a small ring buffer and checking its pattern: once in address order, once in a seeded
 * random order; with --max-s a pass stops after that long and the rate is taken over the
 * pages it read. The copy is what a guest reading its memory does, and what the memcpy baseline
 * (--anon with no limit: all resident) does over the same bytes in the same orders. The limit
 * stays in force while reading back, so every page brought back makes another leave, for
 * uffd-mgrd as for the kernel baseline in a memory cgroup of the same size.
 *
 * Output: one line "REGROW key=value ..." (seconds and MiB/s per order, and the longest
 * single page read of each, *_max_us, fault included). Exit 0, or 1 when a
 * page came back wrong or a step failed (the reason on stderr). */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/gmem.h"

#define RING_PAGES 16 /* 64 KiB: the copies stay in cache, the reads are what is measured */

struct opts {
	size_t mb, limit_mb;
	double max_s; /* a pass stops after this long: the rate is steady well before */
	int cpu;
	bool anon;
	uint64_t seed;
};

static int parse(int argc, char **argv, struct opts *o)
{
	static const struct option lo[] = {
	    {"mb", required_argument, NULL, 'm'},
	    {"limit-mb", required_argument, NULL, 'l'},
	    {"cpu", required_argument, NULL, 'c'},
	    {"anon", no_argument, NULL, 'a'},
	    {"seed", required_argument, NULL, 'S'},
	    {"max-s", required_argument, NULL, 't'},
	    {NULL, 0, NULL, 0},
	};
	int c;

	*o = (struct opts){.mb = 1024, .cpu = -1, .seed = 1};
	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (c) {
		case 'm':
			o->mb = strtoul(optarg, NULL, 0);
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
		case 'S':
			o->seed = strtoull(optarg, NULL, 0);
			break;
		case 't':
			o->max_s = atof(optarg);
			break;
		default:
			fprintf(stderr, "usage: regrow [--mb N] [--limit-mb L] [--cpu C] [--anon] "
					"[--seed S] [--max-s S]\n");
			return -EINVAL;
		}
	}
	return o->mb ? 0 : -EINVAL;
}

/* Copies each page of order[0..n) into the ring and checks it, stopping after max_s seconds
 * (0: never). Prints the pages read, the seconds and the rate; *bad counts pages that came
 * back wrong. */
static void read_back(struct gmem *g, const char *name, const size_t *order, size_t n, double max_s,
		      size_t *bad)
{
	static uint8_t ring[RING_PAGES][GMEM_PAGE];
	uint64_t t0 = gmem_now_ns(), stop = t0 + (uint64_t)(max_s * 1e9), last = t0, longest = 0;
	size_t i;
	double s;

	for (i = 0; i < n; i++) {
		uint8_t *dst = ring[i % RING_PAGES];
		uint64_t now;

		memcpy(dst, g->base + order[i] * GMEM_PAGE, GMEM_PAGE);
		*bad += !gmem_check_page(dst, order[i]);
		/* A clock read per page (tens of ns beside a 4 KiB copy and its fault, if any)
		 * gives the longest single access: a stall no rate shows. */
		now = gmem_now_ns();
		if (now - last > longest)
			longest = now - last;
		last = now;
		if (max_s > 0 && now > stop)
			break;
	}
	i += i < n;
	s = (double)(gmem_now_ns() - t0) / 1e9;
	printf(" %s_pages=%zu %s_s=%.3f %s_mibs=%.1f %s_max_us=%.1f", name, i, name, s, name,
	       (double)i * GMEM_PAGE / (1 << 20) / s, name, (double)longest / 1e3);
}

int main(int argc, char **argv)
{
	struct opts o;
	struct gmem g;
	size_t *order, bad = 0;
	uint64_t t0;

	if (parse(argc, argv, &o))
		return 2;
	if (gmem_pin(o.cpu) || gmem_map(&g, o.mb << 20, o.anon)) {
		perror("regrow: pin or map");
		return 1;
	}
	order = malloc(g.npages * sizeof(*order));
	if (!order)
		return 1;
	t0 = gmem_now_ns();
	for (size_t p = 0; p < g.npages; p++)
		gmem_fill_page(&g, p);
	printf("REGROW mb=%zu fill_s=%.3f", o.mb, (double)(gmem_now_ns() - t0) / 1e9);
	if (o.limit_mb && gmem_settle(&g, (o.limit_mb << 20) / GMEM_PAGE, 120)) {
		fprintf(stderr, "regrow: residency did not settle under %zu MiB\n", o.limit_mb);
		return 1;
	}
	gmem_iota(order, g.npages);
	read_back(&g, "seq", order, g.npages, o.max_s, &bad);
	gmem_shuffle(order, g.npages, o.seed);
	read_back(&g, "rand", order, g.npages, o.max_s, &bad);
	printf(" bad=%zu\n", bad);
	gmem_unmap(&g);
	if (bad)
		fprintf(stderr, "regrow: %zu pages came back wrong\n", bad);
	return bad ? 1 : 0;
}
