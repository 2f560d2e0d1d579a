/* regions: see regions.h. */
#include "uffd-mgr/regions.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "uffd-mgr/wss.h"

#define PICK_TRIES 16	/* random tries for an armable page before a short scan */
#define PICK_SCAN  256	/* pages the scan looks at */
#define MIN_SHARE  8	/* regions never grow past npages / (max / MIN_SHARE) */
#define SPLIT_OBS  2	/* intervals observed before a region may be split ... */
#define MERGE_OBS  5	/* ... or merged: its last MERGE_OBS samples agree */
#define KEEP_OBS   8	/* a sample is kept only where the last KEEP_OBS were unused */

enum sample_state {
	S_NONE,	    /* no sample this interval: nothing armable found, or arming failed */
	S_ARMED,    /* armed for this interval */
	S_UNMAPPED, /* armed before and not used since: still unmapped, watched for free */
};

struct region {
	size_t first, n;
	size_t sample;
	uint32_t last_used; /* epoch its sample was last used; 0: never */
	uint16_t hist;	    /* bit i: the sample was used i + 1 intervals ago */
	uint8_t nobs;	    /* intervals observed since the region was made (capped) */
	uint8_t state;	    /* enum sample_state */
};

struct regions {
	size_t npages, max_size;
	unsigned n, max;
	uint32_t epoch;
	uint64_t rng;
	unsigned cursor; /* where the next plan starts: after the last capped one stopped */
	struct region *r, *tmp; /* tmp: room for a split pass */
};

static uint64_t rnd(struct regions *rg)
{
	rg->rng ^= rg->rng << 13;
	rg->rng ^= rg->rng >> 7;
	rg->rng ^= rg->rng << 17;
	return rg->rng;
}

int regions_create(size_t npages, unsigned max, uint64_t seed, struct regions **out)
{
	struct regions *rg;
	unsigned min;

	if (!npages || !max)
		return -EINVAL;
	rg = calloc(1, sizeof(*rg));
	if (!rg)
		return -ENOMEM;
	if ((size_t)max > npages)
		max = (unsigned)npages;
	min = max / MIN_SHARE ? max / MIN_SHARE : 1;
	rg->npages = npages;
	rg->max = max;
	rg->max_size = (npages + min - 1) / min;
	rg->rng = seed | 1;
	rg->r = calloc(max, sizeof(*rg->r));
	rg->tmp = calloc(max, sizeof(*rg->tmp));
	if (!rg->r || !rg->tmp) {
		regions_destroy(rg);
		return -ENOMEM;
	}
	/* Start at the size bound: splits find the structure from there. */
	for (size_t first = 0; first < npages; first += rg->max_size) {
		struct region *x = &rg->r[rg->n++];

		x->first = first;
		x->n = npages - first < rg->max_size ? npages - first : rg->max_size;
		x->sample = REGIONS_NO_PAGE;
	}
	*out = rg;
	return 0;
}

void regions_destroy(struct regions *rg)
{
	if (!rg)
		return;
	free(rg->r);
	free(rg->tmp);
	free(rg);
}

unsigned regions_count(const struct regions *rg)
{
	return rg->n;
}

/* A random armable page of x, or REGIONS_NO_PAGE: random tries keep the choice uniform over
 * the armable pages where most are; a short scan finds the few in a sparse region. */
static size_t pick(struct regions *rg, const struct region *x, const struct regions_ops *ops,
		   void *ctx)
{
	size_t p;

	for (int i = 0; i < PICK_TRIES; i++) {
		p = x->first + rnd(rg) % x->n;
		if (ops->armable(ctx, p))
			return p;
	}
	p = rnd(rg) % x->n;
	for (size_t i = 0; i < PICK_SCAN && i < x->n; i++, p = (p + 1) % x->n)
		if (ops->armable(ctx, x->first + p))
			return x->first + p;
	return REGIONS_NO_PAGE;
}

/* The last k samples of x were all unused (0), all used (1), or disagree (-1). */
static int agree(const struct region *x, unsigned k)
{
	unsigned mask = (1u << k) - 1, h = x->hist & mask;

	if (x->nobs < k)
		return -1;
	return h == 0 ? 0 : h == mask ? 1 : -1;
}

static int by_page(const void *a, const void *b)
{
	size_t x = *(const size_t *)a, y = *(const size_t *)b;

	return x < y ? -1 : x > y;
}

size_t regions_plan(struct regions *rg, const struct regions_ops *ops, void *ctx, size_t *arm,
		    size_t cap)
{
	size_t narm = 0;
	unsigned start = rg->cursor < rg->n ? rg->cursor : 0, next = 0; /* next: + 1 */

	/* From where the last capped plan stopped, so a cap leaves no region out for good. */
	for (unsigned i = 0; i < rg->n; i++) {
		struct region *x = &rg->r[(start + i) % rg->n];

		/* A cold region's unused sample is still unmapped: keep watching it, and move
		 * it now and then so one unlucky page does not speak for the region forever. */
		if (x->state == S_UNMAPPED && agree(x, KEEP_OBS) == 0 &&
		    rnd(rg) % REGIONS_ROTATE && ops->armable(ctx, x->sample))
			continue;
		x->sample = narm < cap ? pick(rg, x, ops, ctx) : REGIONS_NO_PAGE;
		x->state = x->sample == REGIONS_NO_PAGE ? S_NONE : S_ARMED;
		if (x->state != S_ARMED)
			continue;
		arm[narm++] = x->sample;
		if (narm == cap && !next)
			next = (start + i + 1) % rg->n + 1;
	}
	rg->cursor = next ? next - 1 : 0;
	if (start)
		qsort(arm, narm, sizeof(*arm), by_page);
	return narm;
}

void regions_arm_failed(struct regions *rg)
{
	for (unsigned i = 0; i < rg->n; i++)
		if (rg->r[i].state == S_ARMED) {
			rg->r[i].state = S_NONE;
			rg->r[i].sample = REGIONS_NO_PAGE;
		}
}

static bool test_bit(const uint64_t *bits, size_t p)
{
	return bits[p / 64] >> (p % 64) & 1;
}

/* Bits set in [first, first + n). */
static size_t count_bits(const uint64_t *bits, size_t first, size_t n)
{
	size_t c = 0, end = first + n;

	while (first < end && first % 64)
		c += test_bit(bits, first++);
	for (; first + 64 <= end; first += 64)
		c += (size_t)__builtin_popcountll(bits[first / 64]);
	while (first < end)
		c += test_bit(bits, first++);
	return c;
}

/* Splits each region whose samples disagree, at a random point in its middle half, while
 * there is room. The half holding the sample keeps it. */
static void split(struct regions *rg)
{
	unsigned n = 0, room = rg->max - rg->n;

	for (unsigned i = 0; i < rg->n; i++) {
		struct region x = rg->r[i], *a = &rg->tmp[n++], *b;
		size_t cut;

		*a = x;
		if (!room || x.n < 2 || x.nobs < SPLIT_OBS || agree(&x, SPLIT_OBS) >= 0)
			continue;
		room--;
		cut = x.n / 4 + rnd(rg) % (x.n / 2 ? x.n / 2 : 1);
		cut = cut ? cut : 1;
		b = &rg->tmp[n++];
		*b = x;
		a->n = cut;
		b->first = x.first + cut;
		b->n = x.n - cut;
		a->hist = b->hist = 0;
		a->nobs = b->nobs = 0;
		if (x.sample != REGIONS_NO_PAGE && x.sample >= b->first) {
			a->sample = REGIONS_NO_PAGE;
			a->state = S_NONE;
		} else {
			b->sample = REGIONS_NO_PAGE;
			b->state = S_NONE;
		}
	}
	memcpy(rg->r, rg->tmp, n * sizeof(*rg->r));
	rg->n = n;
}

/* Merges neighbours whose last samples agree (both unused, or both used), up to the size
 * bound. The merged region keeps a sample that is watching. */
static void merge(struct regions *rg)
{
	unsigned n = 0;

	for (unsigned i = 0; i < rg->n; i++) {
		struct region *a = n ? &rg->r[n - 1] : NULL, *b = &rg->r[i];
		int va = a ? agree(a, MERGE_OBS) : -1;

		if (va < 0 || va != agree(b, MERGE_OBS) || a->n + b->n > rg->max_size) {
			rg->r[n++] = *b;
			continue;
		}
		a->n += b->n;
		if (a->state == S_NONE) {
			a->sample = b->sample;
			a->state = b->state;
		}
		a->nobs = a->nobs < b->nobs ? a->nobs : b->nobs;
		a->last_used = a->last_used > b->last_used ? a->last_used : b->last_used;
	}
	rg->n = n;
}

double regions_end(struct regions *rg, const uint64_t *bits, const struct regions_ops *ops,
		   void *ctx, void (*hot)(void *ctx, size_t first, size_t n))
{
	double est = 0;

	rg->epoch++;
	for (unsigned i = 0; i < rg->n; i++) {
		struct region *x = &rg->r[i];
		bool used;

		if (x->state == S_NONE) {
			/* Not observed (nothing armable, a capped or failed arming): as it was
			 * last seen. A region found used keeps counting its resident pages. */
			if (x->nobs && (x->hist & 1))
				est += (double)ops->resident(ctx, x->first, x->n);
			else
				est += (double)count_bits(bits, x->first, x->n);
			continue;
		}
		used = test_bit(bits, x->sample);
		x->hist = (uint16_t)(x->hist << 1 | used);
		x->nobs += x->nobs < UINT8_MAX;
		if (used) {
			/* Its sample is mapped again: the next interval picks a fresh one. */
			x->last_used = rg->epoch;
			x->state = S_NONE;
			est += (double)ops->resident(ctx, x->first, x->n);
			if (hot)
				hot(ctx, x->first, x->n);
		} else {
			x->state = S_UNMAPPED;
			est += (double)count_bits(bits, x->first, x->n);
		}
	}
	split(rg);
	merge(rg);
	return est;
}

void regions_ages(const struct regions *rg, uint64_t *ages)
{
	for (unsigned i = 0; i < rg->n; i++)
		ages[wss_age_bucket(rg->r[i].last_used, rg->epoch)] += rg->r[i].n;
}

void regions_find(const struct regions *rg, size_t page, size_t *first, size_t *n)
{
	unsigned lo = 0, hi = rg->n;

	while (hi - lo > 1) {
		unsigned mid = (lo + hi) / 2;

		if (rg->r[mid].first <= page)
			lo = mid;
		else
			hi = mid;
	}
	*first = rg->r[lo].first;
	*n = rg->r[lo].n;
}
