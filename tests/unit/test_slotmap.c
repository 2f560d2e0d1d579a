/* test_slotmap: the extent allocator behind both tiers. Checks exact and longest-extent
 * allocation, -ENOSPC, reuse after free and the used count, against a shadow bitmap over a
 * seeded random sequence of allocations and frees. For adoption (a daemon rebuilding the map
 * from page entries): slotmap_claim's -ERANGE, -EEXIST and used count, claimed slots never
 * handed out; slotmap_each_free visiting exactly the maximal free extents, in order, on map
 * sizes around the bitmap's 64-slot words, empty, full and after seeded claims. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "shmswap/slotmap.h"

static void test_exact_and_longest(void **state)
{
	struct slotmap *m;
	uint32_t got;

	(void)state;
	assert_int_equal(slotmap_create(0, &m), -EINVAL);
	assert_int_equal(slotmap_create(10, &m), 0);
	assert_int_equal(slotmap_alloc(m, 4, &got), 0);
	assert_int_equal(got, 4);
	assert_int_equal(slotmap_alloc(m, 4, &got), 4);
	slotmap_free(m, 0, 4); /* free: 0-3 and 8-9 */
	assert_int_equal(slotmap_alloc(m, 3, &got), 0);
	assert_int_equal(got, 3);
	assert_int_equal(slotmap_alloc(m, 5, &got), 8); /* longest is 2 at 8 */
	assert_int_equal(got, 2);
	assert_int_equal(slotmap_alloc(m, 5, &got), 3);
	assert_int_equal(got, 1);
	assert_int_equal(slotmap_alloc(m, 1, &got), -ENOSPC);
	assert_int_equal(slotmap_used(m), 10);
	slotmap_destroy(m);
	slotmap_destroy(NULL);
}

static void test_random_against_shadow(void **state)
{
	enum { N = 1000 };
	struct slotmap *m;
	uint8_t shadow[N] = {0};
	uint64_t used = 0, rng = 42;

	(void)state;
	assert_int_equal(slotmap_create(N, &m), 0);
	for (int step = 0; step < 20000; step++) {
		uint32_t want, got;
		int64_t s;

		rng = rng * 6364136223846793005ull + 1442695040888963407ull;
		want = (uint32_t)((rng >> 33) % 16) + 1;
		if ((rng >> 20) % 3) {
			s = slotmap_alloc(m, want, &got);
			if (s == -ENOSPC) {
				assert_int_equal(used, N);
				continue;
			}
			assert_true(s >= 0 && got >= 1 && got <= want && s + got <= N);
			for (uint32_t i = 0; i < got; i++) {
				assert_int_equal(shadow[s + i], 0);
				shadow[s + i] = 1;
			}
			used += got;
		} else {
			uint64_t at = (rng >> 40) % N, n = 0;

			while (at + n < N && shadow[at + n] && n < want)
				n++;
			if (!n)
				continue;
			slotmap_free(m, at, (uint32_t)n);
			memset(shadow + at, 0, n);
			used -= n;
		}
		assert_int_equal(slotmap_used(m), used);
	}
	slotmap_destroy(m);
}

static void test_claim(void **state)
{
	struct slotmap *m;
	uint32_t got;

	(void)state;
	assert_int_equal(slotmap_create(130, &m), 0);
	assert_int_equal(slotmap_claim(m, 130), -ERANGE);
	assert_int_equal(slotmap_claim(m, UINT64_MAX), -ERANGE);
	assert_int_equal(slotmap_used(m), 0);
	assert_int_equal(slotmap_claim(m, 0), 0);
	assert_int_equal(slotmap_claim(m, 0), -EEXIST);
	assert_int_equal(slotmap_used(m), 1);
	assert_int_equal(slotmap_claim(m, 63), 0);
	assert_int_equal(slotmap_claim(m, 64), 0);
	assert_int_equal(slotmap_claim(m, 129), 0);
	assert_int_equal(slotmap_claim(m, 64), -EEXIST);
	assert_int_equal(slotmap_used(m), 4);
	/* Claimed slots are never handed out: free are 1-62 and 65-128. */
	assert_int_equal(slotmap_alloc(m, 100, &got), 65);
	assert_int_equal(got, 64);
	assert_int_equal(slotmap_alloc(m, 100, &got), 1);
	assert_int_equal(got, 62);
	assert_int_equal(slotmap_alloc(m, 1, &got), -ENOSPC);
	assert_int_equal(slotmap_used(m), 130);
	/* A slot taken by alloc cannot be claimed; once freed it can. */
	assert_int_equal(slotmap_claim(m, 70), -EEXIST);
	slotmap_free(m, 70, 1);
	assert_int_equal(slotmap_used(m), 129);
	assert_int_equal(slotmap_claim(m, 70), 0);
	assert_int_equal(slotmap_used(m), 130);
	slotmap_destroy(m);
}

struct extents {
	uint64_t first[1024], n[1024];
	int count;
};

static void record(uint64_t first, uint64_t n, void *arg)
{
	struct extents *e = arg;

	assert_true(e->count < 1024);
	e->first[e->count] = first;
	e->n[e->count] = n;
	e->count++;
}

/* The extents slotmap_each_free visits are exactly the maximal runs of 0 in shadow, in order. */
static void check_each_free(struct slotmap *m, const uint8_t *shadow, uint64_t nslots)
{
	static struct extents e;
	int k = 0;

	e.count = 0;
	slotmap_each_free(m, record, &e);
	for (uint64_t i = 0; i < nslots;) {
		uint64_t n = 0;

		if (shadow[i]) {
			i++;
			continue;
		}
		while (i + n < nslots && !shadow[i + n])
			n++;
		if (k >= e.count || e.first[k] != i || e.n[k] != n)
			print_error("map of %llu: free extent %d should be %llu+%llu\n",
				    (unsigned long long)nslots, k, (unsigned long long)i,
				    (unsigned long long)n);
		assert_true(k < e.count);
		assert_int_equal(e.first[k], i);
		assert_int_equal(e.n[k], n);
		k++;
		i += n;
	}
	assert_int_equal(e.count, k);
}

static void test_each_free(void **state)
{
	static const uint64_t sizes[] = {1, 63, 64, 65, 128, 130, 200, 1000};
	uint64_t rng = 7;

	(void)state;
	for (size_t si = 0; si < sizeof(sizes) / sizeof(sizes[0]); si++) {
		uint64_t n = sizes[si], used = 0;
		uint8_t *shadow = calloc(n, 1);
		struct slotmap *m;

		assert_non_null(shadow);
		assert_int_equal(slotmap_create(n, &m), 0);
		check_each_free(m, shadow, n); /* empty: one extent, the whole map */
		/* Claims of rising density, checking the extents after each batch. */
		for (int batch = 0; batch < 12; batch++) {
			for (uint64_t c = 0; c < n / 8 + 1; c++) {
				uint64_t s;

				rng = rng * 6364136223846793005ull + 1442695040888963407ull;
				s = (rng >> 33) % n;
				assert_int_equal(slotmap_claim(m, s), shadow[s] ? -EEXIST : 0);
				used += !shadow[s];
				shadow[s] = 1;
			}
			assert_int_equal(slotmap_used(m), used);
			check_each_free(m, shadow, n);
		}
		/* Full: nothing to visit. */
		for (uint64_t s = 0; s < n; s++)
			if (!shadow[s]) {
				assert_int_equal(slotmap_claim(m, s), 0);
				shadow[s] = 1;
			}
		assert_int_equal(slotmap_used(m), n);
		check_each_free(m, shadow, n);
		/* Whole words used and a free slot right after them (the word skip's edge). */
		if (n > 65) {
			slotmap_free(m, 64, 1);
			shadow[64] = 0;
			slotmap_free(m, n - 1, 1);
			shadow[n - 1] = 0;
			check_each_free(m, shadow, n);
		}
		slotmap_destroy(m);
		free(shadow);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_exact_and_longest),
		cmocka_unit_test(test_random_against_shadow),
		cmocka_unit_test(test_claim),
		cmocka_unit_test(test_each_free),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
