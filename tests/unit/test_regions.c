/* test_regions: the bounded working-set sampler (uffd-mgr/regions.c), against a simulated
 * guest whose truth is known.
 *
 * The simulation stands in for QEMU's page table and the BPF program: an armed page is
 * unmapped; a page the guest uses in an interval faults (its bit is set) only if it was
 * unmapped, and is mapped again after. So a sample that was not used stays unmapped into the
 * next interval, as in the real thing.
 *
 * What it stresses:
 *  - accuracy: the mean of the last 10 estimates within 10% of the truth for uniform (a
 *    prefix used), hot/cold (a hot prefix of a resident set) and phase shift (one set, then
 *    another), on guests of 64 MiB and 4 GiB (16 Ki and 1 Mi pages), and for a working set
 *    scattered in stripes;
 *  - cost: never more regions than the budget, never more pages armed per interval than
 *    regions, and once settled about as many as the used share of the regions (cold samples
 *    are kept unmapped, not armed again);
 *  - pages that are not resident are never armed; a failed arming observes nothing;
 *  - a cap on the pages armed (a VM busy with faults): in order, every region in turn, and the
 *    regions left out hold their last verdict;
 *  - the regions always tile the guest, in order. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "uffd-mgr/regions.h"
#include "uffd-mgr/wss.h"

struct sim {
	size_t npages;
	uint8_t *resident, *unmapped;
	uint64_t *bits;
	size_t hot_calls;
};

static bool sim_armable(void *ctx, size_t p)
{
	struct sim *s = ctx;

	return s->resident[p];
}

static size_t sim_resident(void *ctx, size_t first, size_t n)
{
	struct sim *s = ctx;
	size_t c = 0;

	for (size_t p = first; p < first + n; p++)
		c += s->resident[p];
	return c;
}

static void sim_hot(void *ctx, size_t first, size_t n)
{
	((struct sim *)ctx)->hot_calls++;
}

static const struct regions_ops ops = {.armable = sim_armable, .resident = sim_resident};

static struct sim *sim_new(size_t npages)
{
	struct sim *s = calloc(1, sizeof(*s));

	s->npages = npages;
	s->resident = calloc(npages, 1);
	s->unmapped = calloc(npages, 1);
	s->bits = calloc(npages / 64 + 1, sizeof(uint64_t));
	assert_true(s->resident && s->unmapped && s->bits);
	return s;
}

static void sim_free(struct sim *s)
{
	free(s->resident);
	free(s->unmapped);
	free(s->bits);
	free(s);
}

/* The guest uses page p: resident from now on; a fault (bit) if it was unmapped. */
static void sim_use(struct sim *s, size_t p)
{
	if (!s->resident[p] || s->unmapped[p])
		s->bits[p / 64] |= 1ull << (p % 64);
	s->resident[p] = 1;
	s->unmapped[p] = 0;
}

static void check_tiling(const struct regions *rg, size_t npages)
{
	size_t first, n, p = 0;

	while (p < npages) {
		regions_find(rg, p, &first, &n);
		assert_int_equal(first, p);
		assert_true(n > 0);
		p += n;
	}
	assert_int_equal(p, npages);
}

typedef bool (*used_fn)(size_t p, unsigned interval, size_t a, size_t b);

/* Runs intervals; returns the mean of the last 10 estimates. *armed_last gets the pages
 * armed in the last interval. */
static double run(struct regions *rg, struct sim *s, unsigned intervals, used_fn used, size_t a,
		  size_t b, size_t *armed_last)
{
	size_t *arm = calloc(s->npages < 4096 ? s->npages : 4096, sizeof(*arm));
	double sum = 0;
	size_t narm = 0;

	for (unsigned i = 0; i < intervals; i++) {
		size_t cap = regions_count(rg);
		double est;

		narm = regions_plan(rg, &ops, s, arm, cap);
		assert_true(narm <= cap);
		for (size_t k = 0; k < narm; k++) {
			assert_true(s->resident[arm[k]]);
			assert_true(k == 0 || arm[k] > arm[k - 1]);
			s->unmapped[arm[k]] = 1;
		}
		memset(s->bits, 0, (s->npages / 64 + 1) * sizeof(uint64_t));
		for (size_t p = 0; p < s->npages; p++)
			if (used(p, i, a, b))
				sim_use(s, p);
		est = regions_end(rg, s->bits, &ops, s, sim_hot);
		if (i + 10 >= intervals)
			sum += est;
	}
	free(arm);
	*armed_last = narm;
	return sum / 10;
}

static bool used_prefix(size_t p, unsigned i, size_t a, size_t b)
{
	return p < a;
}

/* Resident: [0, a + b); used: [0, a). */
static bool used_hotcold(size_t p, unsigned i, size_t a, size_t b)
{
	return i == 0 ? p < a + b : p < a;
}

/* [0, a) for 5 intervals, then [a, a + b). */
static bool used_phase(size_t p, unsigned i, size_t a, size_t b)
{
	return i == 0 ? p < a + b : i < 5 ? p < a : p >= a && p < a + b;
}

/* Resident: [0, a); used: 64 pages in every 256 of it, so that no region starts uniform. */
static bool used_stripes(size_t p, unsigned i, size_t a, size_t b)
{
	return p < a && (i == 0 || p % 256 < 64);
}

static void expect_within(const char *what, double est, double truth)
{
	printf("  %-30s estimate %9.0f truth %9.0f (%+.1f%%)\n", what, est, truth,
	       100 * (est - truth) / truth);
	assert_true(est >= truth * 0.9 && est <= truth * 1.1);
}

static void one(const char *what, size_t npages, unsigned max, used_fn used, size_t a,
		size_t b, double truth, unsigned intervals)
{
	struct regions *rg;
	struct sim *s = sim_new(npages);
	size_t armed;
	double est;

	assert_int_equal(regions_create(npages, max, 42, &rg), 0);
	check_tiling(rg, npages);
	est = run(rg, s, intervals, used, a, b, &armed);
	expect_within(what, est, truth);
	assert_true(regions_count(rg) <= max);
	check_tiling(rg, npages);
	printf("  %-30s %u regions, %zu pages armed in the last interval\n", "", regions_count(rg),
	       armed);
	/* Settled: a used region arms a fresh sample each interval, but most cold samples are
	 * kept, so the arming is about the used share of the regions (where regions could
	 * settle: stripes finer than the starting regions leave some mixed). */
	if (used != used_stripes)
		assert_true(armed <= (size_t)(truth / npages * regions_count(rg)) + regions_count(rg) / 4 + 4);
	regions_destroy(rg);
	sim_free(s);
}

static void test_small_guest(void **state)
{
	size_t n = 16384; /* 64 MiB */

	one("64M uniform 8192", n, 1000, used_prefix, 8192, 0, 8192, 30);
	one("64M hotcold 4096:8192", n, 1000, used_hotcold, 4096, 8192, 4096, 30);
	one("64M phase 3000:9000", n, 1000, used_phase, 3000, 9000, 9000, 30);
	one("64M stripes", n, 1000, used_stripes, 12288, 0, 3072, 40);
}

static void test_large_guest(void **state)
{
	size_t n = 1u << 20; /* 4 GiB */

	one("4G uniform 65536", n, 1000, used_prefix, 65536, 0, 65536, 30);
	one("4G hotcold 20000:60000", n, 1000, used_hotcold, 20000, 60000, 20000, 30);
	one("4G phase 30000:50000", n, 1000, used_phase, 30000, 50000, 50000, 30);
}

/* A failed arming observes nothing: the estimate counts only what faulted anyway. */
static void test_arm_failed(void **state)
{
	struct regions *rg;
	struct sim *s = sim_new(4096);
	size_t arm[64], narm;

	assert_int_equal(regions_create(4096, 64, 1, &rg), 0);
	for (size_t p = 0; p < 4096; p++)
		s->resident[p] = 1;
	narm = regions_plan(rg, &ops, s, arm, 64);
	assert_int_equal(narm, regions_count(rg));
	regions_arm_failed(rg);
	memset(s->bits, 0, 65 * sizeof(uint64_t));
	s->bits[0] = 3; /* two pages faulted */
	assert_true(regions_end(rg, s->bits, &ops, s, NULL) == 2);
	/* Nothing resident: nothing armed. */
	memset(s->resident, 0, 4096);
	assert_int_equal(regions_plan(rg, &ops, s, arm, 64), 0);
	regions_destroy(rg);
	sim_free(s);
}

/* A capped plan arms at most cap pages, in order, and over successive intervals every region
 * is observed in turn; regions not observed hold their last verdict. */
static void test_cap(void **state)
{
	struct regions *rg;
	struct sim *s = sim_new(8192);
	size_t arm[64], narm, first, n, seen_regions = 0;
	uint8_t *observed = calloc(8192, 1);
	double est;

	assert_int_equal(regions_create(8192, 64, 3, &rg), 0);
	for (size_t p = 0; p < 8192; p++)
		s->resident[p] = 1;
	for (int i = 0; i < 8; i++) {
		narm = regions_plan(rg, &ops, s, arm, 3);
		assert_true(narm <= 3);
		for (size_t k = 0; k < narm; k++) {
			assert_true(k == 0 || arm[k] > arm[k - 1]);
			regions_find(rg, arm[k], &first, &n);
			seen_regions += !observed[first];
			observed[first] = 1;
			s->unmapped[arm[k]] = 1;
		}
		memset(s->bits, 0, (8192 / 64 + 1) * sizeof(uint64_t));
		for (size_t p = 0; p < 8192; p++)
			sim_use(s, p); /* everything used */
		est = regions_end(rg, s->bits, &ops, s, NULL);
		assert_true(est > 0);
	}
	/* 8 regions of 1024 pages at the start, 3 a time: all observed within 8 intervals, and
	 * once each was seen used, the estimate holds it: every page. */
	assert_int_equal(seen_regions, regions_count(rg) < 8 ? regions_count(rg) : 8);
	assert_true(est == 8192);
	free(observed);
	regions_destroy(rg);
	sim_free(s);
}

static void test_bad_args(void **state)
{
	struct regions *rg;

	assert_int_equal(regions_create(0, 10, 1, &rg), -EINVAL);
	assert_int_equal(regions_create(10, 0, 1, &rg), -EINVAL);
	assert_int_equal(regions_create(10, 1000, 1, &rg), 0); /* at most one per page */
	assert_true(regions_count(rg) <= 10);
	regions_destroy(rg);
	regions_destroy(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_small_guest),
	    cmocka_unit_test(test_large_guest),
	    cmocka_unit_test(test_arm_failed),
	    cmocka_unit_test(test_cap),
	    cmocka_unit_test(test_bad_args),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
