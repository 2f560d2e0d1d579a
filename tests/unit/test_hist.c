/* test_hist: the latency histogram (uffd-mgr/hist.c).
 *
 * What it stresses:
 *  - the empty histogram, count/sum/max bookkeeping;
 *  - values 0..7 are exact; every value from 0 to 2^20 and values around every power of two
 *    up to 2^64-1 come back as the top of their bucket: never below the value, at most 12.5%
 *    above it, never above the recorded max, monotonic in the value, and the top itself falls
 *    in the same bucket while top + 1 does not;
 *  - quantiles of seeded random samples (uniform, log-uniform, heavy tail, with duplicates)
 *    against the sorted truth, for q from 0 to 1; q above 1 clamps to the max. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "uffd-mgr/hist.h"

static struct hist h; /* 4 KiB: static, not on the stack */

static uint64_t rng_state;

static uint64_t rnd(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 2685821657736338717ull;
}

/* The quantile a histogram holding only v and a huge value gives for q = 0: v's bucket top. */
static uint64_t top_of(uint64_t v)
{
	memset(&h, 0, sizeof(h));
	hist_add(&h, v);
	hist_add(&h, UINT64_MAX);
	return hist_quantile(&h, 0.0);
}

/* truth <= got <= truth * 1.125 (computed without overflow). */
static void check_bound(uint64_t truth, uint64_t got)
{
	if (got < truth || got - truth > truth / 8)
		print_error("value %llu reported as %llu\n", (unsigned long long)truth,
			    (unsigned long long)got);
	assert_true(got >= truth);
	assert_true(got - truth <= truth / 8);
}

static void test_empty_and_counters(void **state)
{
	memset(&h, 0, sizeof(h));
	assert_int_equal(hist_quantile(&h, 0.0), 0);
	assert_int_equal(hist_quantile(&h, 0.5), 0);
	assert_int_equal(hist_quantile(&h, 1.0), 0);

	hist_add(&h, 10);
	hist_add(&h, 1000);
	hist_add(&h, 5);
	assert_int_equal(h.count, 3);
	assert_int_equal(h.sum, 1015);
	assert_int_equal(h.max, 1000);
	/* One value: every quantile is that value (its bucket top clamped to the max). */
	memset(&h, 0, sizeof(h));
	hist_add(&h, 123456789);
	assert_int_equal(hist_quantile(&h, 0.0), 123456789);
	assert_int_equal(hist_quantile(&h, 0.5), 123456789);
	assert_int_equal(hist_quantile(&h, 1.0), 123456789);
	/* Zero is a value like any other. */
	memset(&h, 0, sizeof(h));
	for (int i = 0; i < 10; i++)
		hist_add(&h, 0);
	assert_int_equal(hist_quantile(&h, 0.99), 0);
	assert_int_equal(h.max, 0);
}

static void test_small_values_exact(void **state)
{
	for (uint64_t v = 0; v < 8; v++)
		assert_int_equal(top_of(v), v);
	/* 8..15 still have one value per bucket. */
	for (uint64_t v = 8; v < 16; v++)
		assert_int_equal(top_of(v), v);
}

static void check_value(uint64_t v, uint64_t *prev_top)
{
	uint64_t t = top_of(v);

	check_bound(v, t);
	assert_true(t >= *prev_top); /* monotonic */
	*prev_top = t;
	/* The top is in v's bucket, and top + 1 is in the next one. */
	assert_true(top_of(t) == t);
	if (t != UINT64_MAX)
		assert_true(top_of(t + 1) > t);
}

static void test_bucket_tops(void **state)
{
	uint64_t prev = 0;

	for (uint64_t v = 0; v <= (1u << 20); v++) {
		uint64_t t = top_of(v);

		check_bound(v, t);
		assert_true(t >= prev);
		prev = t;
	}
	prev = 0;
	for (unsigned e = 2; e < 64; e++) { /* increasing: 3,4,5,6, 7,8,9,12, ... */
		uint64_t p = UINT64_C(1) << e;

		check_value(p - 1, &prev);
		check_value(p, &prev);
		check_value(p + 1, &prev);
		check_value(p + p / 2, &prev);
	}
	check_value(UINT64_MAX - 1, &prev);
	check_value(UINT64_MAX, &prev);
	assert_true(top_of(UINT64_MAX) == UINT64_MAX);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static void check_sample(uint64_t *v, size_t n)
{
	static const double qs[] = {0.0, 0.001, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 0.999, 1.0};

	memset(&h, 0, sizeof(h));
	for (size_t i = 0; i < n; i++)
		hist_add(&h, v[i]);
	qsort(v, n, sizeof(*v), cmp_u64);
	assert_int_equal(h.count, n);
	assert_true(h.max == v[n - 1]);
	for (size_t i = 0; i < sizeof(qs) / sizeof(qs[0]); i++) {
		size_t k = (size_t)(qs[i] * (double)n);
		uint64_t got = hist_quantile(&h, qs[i]);

		if (k >= n)
			k = n - 1;
		check_bound(v[k], got);
		assert_true(got <= h.max);
	}
	assert_true(hist_quantile(&h, 1.0) == v[n - 1]);
	assert_true(hist_quantile(&h, 2.0) == v[n - 1]);
}

static void test_random_samples(void **state)
{
	const size_t n = 100000;
	uint64_t *v = malloc(n * sizeof(*v));

	assert_non_null(v);
	rng_state = 0x41c64e6d;
	for (int kind = 0; kind < 4; kind++) {
		for (size_t i = 0; i < n; i++) {
			uint64_t r = rnd();

			switch (kind) {
			case 0: /* uniform, like fault latencies in ns */
				v[i] = 1000 + r % 100000;
				break;
			case 1: /* log-uniform over the whole range */
				v[i] = r >> (r % 64);
				break;
			case 2: /* heavy tail: mostly small, a few huge */
				v[i] = (r % 1000) ? 5000 + r % 2000 : r >> 8;
				break;
			default: /* few distinct values, many duplicates */
				v[i] = UINT64_C(1) << (r % 40);
				break;
			}
		}
		check_sample(v, n);
	}
	free(v);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_empty_and_counters),
	    cmocka_unit_test(test_small_values_exact),
	    cmocka_unit_test(test_bucket_tops),
	    cmocka_unit_test(test_random_samples),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
