/* test_slotmap: the extent allocator behind both tiers. Checks exact and longest-extent
 * allocation, -ENOSPC, reuse after free and the used count, against a shadow bitmap over a
 * seeded random sequence of allocations and frees. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_exact_and_longest),
		cmocka_unit_test(test_random_against_shadow),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
