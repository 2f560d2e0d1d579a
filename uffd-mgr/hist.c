/* hist: see hist.h. Bucket = (exponent, 3 mantissa bits below the leading one). */
#include "uffd-mgr/hist.h"

static unsigned bucket_of(uint64_t v)
{
	unsigned e;

	if (v < HIST_SUB)
		return (unsigned)v;
	e = 63 - (unsigned)__builtin_clzll(v); /* position of the leading one, >= 3 */
	return (e - 2) * HIST_SUB + (unsigned)((v >> (e - 3)) & (HIST_SUB - 1));
}

/* The largest value that falls in bucket b. */
static uint64_t bucket_top(unsigned b)
{
	unsigned e, m;

	if (b < HIST_SUB)
		return b;
	e = b / HIST_SUB + 2;
	m = b % HIST_SUB;
	return ((uint64_t)(HIST_SUB + m + 1) << (e - 3)) - 1;
}

void hist_add(struct hist *h, uint64_t v)
{
	h->count++;
	h->sum += v;
	if (v > h->max)
		h->max = v;
	h->bucket[bucket_of(v)]++;
}

uint64_t hist_quantile(const struct hist *h, double q)
{
	uint64_t want, seen = 0;

	if (!h->count)
		return 0;
	want = (uint64_t)(q * (double)h->count);
	if (want >= h->count)
		want = h->count - 1;
	for (unsigned b = 0; b < HIST_BUCKETS; b++) {
		seen += h->bucket[b];
		if (seen > want) {
			uint64_t top = bucket_top(b);

			return top < h->max ? top : h->max;
		}
	}
	return h->max;
}
