/* test_wss: working-set bookkeeping (uffd-mgr/wss.c).
 *
 * What it stresses:
 *  - marking pages one by one and from a bitmap (bits past npages ignored), last-seen only
 *    moving forward;
 *  - windows as unions: pages seen since an epoch, and per epoch inside a range;
 *  - sampled estimates: scaling the sampled fraction to the population plus what was seen
 *    outside the sample, and window means over the ring, including when it wraps;
 *  - the age buckets at every power-of-two edge, and "never". */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "uffd-mgr/wss.h"

static void test_mark_and_windows(void **state)
{
	struct wss *w;
	uint64_t bits[2] = {0, 0};

	assert_int_equal(wss_create(100, &w), 0);
	assert_int_equal(wss_seen_since(w, 0), 0);
	wss_mark(w, 3, 1);
	wss_mark(w, 4, 2);
	wss_mark(w, 4, 1); /* never backwards */
	assert_int_equal(wss_last_seen(w, 4), 2);
	wss_mark(w, 1000, 5); /* outside: ignored */
	bits[0] = (1ull << 10) | (1ull << 11);
	bits[1] = (1ull << 35) | (1ull << 36) | (1ull << 40); /* pages 99, 100 (out), 104 (out) */
	assert_int_equal(wss_mark_bits(w, bits, 3), 3);
	assert_int_equal(wss_seen_since(w, 1), 5);
	assert_int_equal(wss_seen_since(w, 2), 4);
	assert_int_equal(wss_seen_since(w, 3), 3);
	assert_int_equal(wss_seen_since(w, 4), 0);
	assert_int_equal(wss_seen_in(w, 0, 100, 3), 3);
	assert_int_equal(wss_seen_in(w, 0, 11, 3), 1);
	assert_int_equal(wss_seen_in(w, 90, 50, 3), 1); /* clipped at npages */
	assert_int_equal(wss_last_seen(w, 5), 0);
	wss_destroy(w);
	wss_destroy(NULL);
}

static void test_sampled_estimates(void **state)
{
	struct wss *w;

	assert_int_equal(wss_create(10, &w), 0);
	assert_true(wss_sample_window(w, 10) == 0);
	/* a quarter of 400 sampled pages were touched, of 4000 resident, plus 10 outside */
	assert_true(wss_sample_end(w, 400, 100, 4000, 10) == 1010);
	assert_true(wss_sample_end(w, 0, 0, 4000, 7) == 7); /* nothing sampled: outside only */
	assert_true(wss_sample_window(w, 1) == 7);
	assert_true(wss_sample_window(w, 2) == (1010 + 7) / 2.0);
	assert_true(wss_sample_window(w, 60) == (1010 + 7) / 2.0); /* only two so far */
	for (int i = 0; i < 3 * WSS_HISTORY; i++)
		wss_sample_end(w, 10, 5, 100, (size_t)i);
	/* the last ten: 50 + i for i = 3*64-10 .. 3*64-1 */
	assert_true(wss_sample_window(w, 10) ==
		    50 + (3 * WSS_HISTORY - 10 + 3 * WSS_HISTORY - 1) / 2.0);
	/* an estimate made elsewhere (regions) joins the same ring */
	wss_push_estimate(w, 1e6);
	assert_true(wss_sample_window(w, 1) == 1e6);
	wss_destroy(w);
}

static void test_age_buckets(void **state)
{
	assert_int_equal(wss_age_bucket(0, 100), WSS_AGE_BUCKETS - 1);
	assert_int_equal(wss_age_bucket(100, 100), 0);
	assert_int_equal(wss_age_bucket(101, 100), 0); /* from the future: age 0 */
	assert_int_equal(wss_age_bucket(99, 100), 1);
	assert_int_equal(wss_age_bucket(98, 100), 2);
	assert_int_equal(wss_age_bucket(97, 100), 2);
	assert_int_equal(wss_age_bucket(96, 100), 3);
	assert_int_equal(wss_age_bucket(93, 100), 3);
	assert_int_equal(wss_age_bucket(92, 100), 4);
	assert_int_equal(wss_age_bucket(100 - 63, 100), 6);
	assert_int_equal(wss_age_bucket(100 - 64, 100), 7);
	assert_int_equal(wss_age_bucket(1, 100000), 7);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_mark_and_windows),
	    cmocka_unit_test(test_sampled_estimates),
	    cmocka_unit_test(test_age_buckets),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
