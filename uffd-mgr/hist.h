/* hist: a latency histogram with bounded relative error (log2 buckets, 8 sub-buckets each),
 * fixed size, no allocation. Not thread-safe: the owner serialises. */
#ifndef UFFD_HIST_H
#define UFFD_HIST_H

#include <stdint.h>

#define HIST_SUB 8
#define HIST_BUCKETS (64 * HIST_SUB)

struct hist {
	uint64_t count;
	uint64_t max;
	uint64_t sum;
	uint64_t bucket[HIST_BUCKETS];
};

/* Records one value (e.g. nanoseconds). Cannot fail. */
void hist_add(struct hist *h, uint64_t value);

/* The value below which a fraction q (0..1) of the records fall, as the upper bound of its
 * bucket (at most 12.5% above the truth); 0 when empty. */
uint64_t hist_quantile(const struct hist *h, double q);

#endif
