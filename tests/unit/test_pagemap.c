/* test_pagemap: the page state map and its clock (uffd-mgr/pagemap.c).
 *
 * What it stresses:
 *  - argument checks of pagemap_create and the initial state (all PS_NONE);
 *  - state, slot and flags are independent fields of one entry: slots up to 2^56-1 survive,
 *    a slot is kept only for PS_SHM, flags survive state changes and vice versa;
 *  - a seeded random walk of 200k set / set_flags calls against a shadow model, checking
 *    every page and every per-state count after each step;
 *  - the clock: victims in hand order, referenced runs skipped once and cleared, runs with
 *    nothing resident or a page being evicted never picked, -ENOENT when nothing qualifies,
 *    the partial last run, and the clock's own run counters after the random walk;
 *  - pagemap_tier_span: spans stop at a slot gap, a state change and the run's edge (also
 *    at slot 0 and in a partial last run).
 * The map is not thread-safe by contract, so there are no threads here. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "uffd-mgr/pagemap.h"

static uint64_t rng_state;

static uint64_t rnd(void)
{
	/* xorshift64*: reproducible from the seed printed on failure. */
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 2685821657736338717ull;
}

static struct pagemap *make(size_t npages, uint32_t run_pages)
{
	struct pagemap *pm = NULL;

	assert_int_equal(pagemap_create(npages, run_pages, &pm), 0);
	assert_non_null(pm);
	return pm;
}

static void test_create_args(void **state)
{
	struct pagemap *pm = NULL;

	assert_int_equal(pagemap_create(0, 16, &pm), -EINVAL);
	assert_int_equal(pagemap_create(16, 0, &pm), -EINVAL);
	assert_int_equal(pagemap_create(16, 3, &pm), -EINVAL);
	assert_int_equal(pagemap_create(16, 12, &pm), -EINVAL);
	assert_null(pm);
	pagemap_destroy(NULL);

	pm = make(100, 8);
	assert_int_equal(pagemap_npages(pm), 100);
	assert_int_equal(pagemap_run_pages(pm), 8);
	assert_int_equal(pagemap_count(pm, PS_NONE), 100);
	for (int s = PS_RESIDENT; s < PS_NSTATES; s++)
		assert_int_equal(pagemap_count(pm, (enum page_state)s), 0);
	for (size_t p = 0; p < 100; p++) {
		assert_int_equal(pagemap_state(pm, p), PS_NONE);
		assert_int_equal(pagemap_slot(pm, p), 0);
		assert_int_equal(pagemap_flags(pm, p), 0);
	}
	pagemap_destroy(pm);

	pm = make(1, 1); /* the smallest map */
	pagemap_set(pm, 0, PS_RESIDENT, 0);
	size_t first = 99;
	assert_int_equal(pagemap_clock_pick(pm, &first), 0);
	assert_int_equal(first, 0);
	pagemap_destroy(pm);
}

static void test_fields_independent(void **state)
{
	struct pagemap *pm = make(64, 16);
	const uint64_t big = (UINT64_C(1) << 56) - 1;

	pagemap_set(pm, 5, PS_SHM, big);
	assert_int_equal(pagemap_state(pm, 5), PS_SHM);
	assert_true(pagemap_slot(pm, 5) == big);
	assert_int_equal(pagemap_flags(pm, 5), 0);

	/* Flags do not disturb state or slot. */
	pagemap_set_flags(pm, 5, PF_EVICTING | PF_DISCARDED);
	assert_int_equal(pagemap_state(pm, 5), PS_SHM);
	assert_true(pagemap_slot(pm, 5) == big);
	assert_int_equal(pagemap_flags(pm, 5), PF_EVICTING | PF_DISCARDED);

	/* A state change keeps the flags; the slot goes for a non-tier state. */
	pagemap_set(pm, 5, PS_RESIDENT, 1234);
	assert_int_equal(pagemap_state(pm, 5), PS_RESIDENT);
	assert_int_equal(pagemap_slot(pm, 5), 0);
	assert_int_equal(pagemap_flags(pm, 5), PF_EVICTING | PF_DISCARDED);
	pagemap_set(pm, 5, PS_ZERO, 77);
	assert_int_equal(pagemap_slot(pm, 5), 0);
	pagemap_set_flags(pm, 5, 0);
	assert_int_equal(pagemap_flags(pm, 5), 0);

	/* Neighbours untouched. */
	assert_int_equal(pagemap_state(pm, 4), PS_NONE);
	assert_int_equal(pagemap_state(pm, 6), PS_NONE);
	assert_int_equal(pagemap_slot(pm, 4), 0);
	assert_int_equal(pagemap_slot(pm, 6), 0);

	/* Setting the same state twice keeps the counts right. */
	pagemap_set(pm, 7, PS_RESIDENT, 0);
	pagemap_set(pm, 7, PS_RESIDENT, 0);
	assert_int_equal(pagemap_count(pm, PS_RESIDENT), 1);
	assert_int_equal(pagemap_count(pm, PS_ZERO), 1);
	assert_int_equal(pagemap_count(pm, PS_NONE), 62);
	pagemap_destroy(pm);
}

/* Shadow model of one page. */
struct shadow {
	enum page_state st;
	uint64_t slot;
	unsigned flags;
};

static void check_all(const struct pagemap *pm, const struct shadow *sh, size_t n)
{
	size_t counts[PS_NSTATES] = {0};

	for (size_t p = 0; p < n; p++) {
		assert_int_equal(pagemap_state(pm, p), sh[p].st);
		assert_true(pagemap_slot(pm, p) == sh[p].slot);
		assert_int_equal(pagemap_flags(pm, p), sh[p].flags);
		counts[sh[p].st]++;
	}
	for (int s = 0; s < PS_NSTATES; s++)
		assert_int_equal(pagemap_count(pm, (enum page_state)s), counts[s]);
}

static void test_random_walk(void **state)
{
	const size_t n = 1000; /* not a multiple of the run: a partial last run */
	const uint32_t run = 16;
	struct pagemap *pm = make(n, run);
	struct shadow *sh = calloc(n, sizeof(*sh));
	uint64_t seed = 0x5eed0001;

	assert_non_null(sh);
	rng_state = seed;
	print_message("seed %#llx\n", (unsigned long long)seed);
	for (int step = 0; step < 200000; step++) {
		size_t p = rnd() % n;

		if (rnd() % 4 == 0) {
			unsigned f = (unsigned)(rnd() % 4);

			pagemap_set_flags(pm, p, f);
			sh[p].flags = f;
		} else {
			enum page_state st = (enum page_state)(rnd() % PS_NSTATES);
			uint64_t slot = rnd() >> 8;

			pagemap_set(pm, p, st, slot);
			sh[p].st = st;
			sh[p].slot = (st == PS_SHM || st == PS_DISK) ? slot : 0;
		}
		if (step % 997 == 0)
			check_all(pm, sh, n);
	}
	check_all(pm, sh, n);
	/* Most runs now hold an evicting page: clear the flags of every other run, which
	 * exercises the counters' decrements. */
	for (size_t p = 0; p < n; p++) {
		if ((p / run) % 2 == 0) {
			pagemap_set_flags(pm, p, 0);
			sh[p].flags = 0;
		}
	}
	check_all(pm, sh, n);

	/* The clock's per-run counters must agree with the pages: clear every reference bit by
	 * letting the clock sweep, then every pick must be a run that has a resident page and
	 * no evicting page, and every such run must be picked once per sweep. */
	size_t nruns = (n + run - 1) / run;
	int *eligible = calloc(nruns, sizeof(int));
	size_t neligible = 0, first;

	assert_non_null(eligible);
	for (size_t r = 0; r < nruns; r++) {
		int res = 0, ev = 0;

		for (size_t p = r * run; p < (r + 1) * run && p < n; p++) {
			res |= sh[p].st == PS_RESIDENT;
			ev |= (sh[p].flags & PF_EVICTING) != 0;
		}
		eligible[r] = res && !ev;
		neligible += (size_t)eligible[r];
	}
	assert_true(neligible > 0);
	int *seen = calloc(nruns, sizeof(int));
	assert_non_null(seen);
	for (size_t i = 0; i < 3 * neligible; i++) {
		assert_int_equal(pagemap_clock_pick(pm, &first), 0);
		assert_int_equal(first % run, 0);
		assert_true(eligible[first / run]);
		seen[first / run]++;
	}
	for (size_t r = 0; r < nruns; r++)
		assert_int_equal(seen[r], eligible[r] ? 3 : 0);
	free(seen);
	free(eligible);
	free(sh);
	pagemap_destroy(pm);
}

static void test_clock_order_and_refs(void **state)
{
	struct pagemap *pm = make(64, 8); /* 8 runs */
	size_t first;

	assert_int_equal(pagemap_clock_pick(pm, &first), -ENOENT); /* nothing resident */
	for (size_t r = 0; r < 8; r++)
		pagemap_set(pm, r * 8 + 3, PS_RESIDENT, 0);

	/* No reference bits: plain hand order, wrapping around. */
	for (size_t i = 0; i < 10; i++) {
		assert_int_equal(pagemap_clock_pick(pm, &first), 0);
		assert_int_equal(first, (i % 8) * 8);
	}
	/* Hand is at run 2. Runs 2 and 3 were referenced: skipped once, then eligible. */
	pagemap_touch(pm, 2 * 8 + 7);
	pagemap_touch(pm, 3 * 8);
	assert_int_equal(pagemap_clock_pick(pm, &first), 0);
	assert_int_equal(first, 4 * 8);
	for (size_t r = 5; r < 8; r++) {
		assert_int_equal(pagemap_clock_pick(pm, &first), 0);
		assert_int_equal(first, r * 8);
	}
	assert_int_equal(pagemap_clock_pick(pm, &first), 0);
	assert_int_equal(first, 0);
	assert_int_equal(pagemap_clock_pick(pm, &first), 0);
	assert_int_equal(first, 8);
	assert_int_equal(pagemap_clock_pick(pm, &first), 0);
	assert_int_equal(first, 16); /* its bit was cleared on the last pass */

	/* Every run referenced: the first sweep clears, the second picks. */
	for (size_t r = 0; r < 8; r++)
		pagemap_touch(pm, r * 8);
	assert_int_equal(pagemap_clock_pick(pm, &first), 0);
	assert_int_equal(first, 24);

	/* Runs with a page being evicted are never picked, referenced or not. */
	for (size_t r = 0; r < 8; r++)
		if (r != 6)
			pagemap_set_flags(pm, r * 8 + 3, PF_EVICTING);
	for (size_t i = 0; i < 5; i++) {
		assert_int_equal(pagemap_clock_pick(pm, &first), 0);
		assert_int_equal(first, 48);
	}
	/* Evicting a second page of run 6 and clearing one keeps the run blocked. */
	pagemap_set(pm, 6 * 8 + 4, PS_RESIDENT, 0);
	pagemap_set_flags(pm, 6 * 8 + 3, PF_EVICTING);
	pagemap_set_flags(pm, 6 * 8 + 4, PF_EVICTING);
	pagemap_set_flags(pm, 6 * 8 + 4, PF_EVICTING | PF_DISCARDED); /* not counted twice */
	pagemap_set_flags(pm, 6 * 8 + 3, 0);
	assert_int_equal(pagemap_clock_pick(pm, &first), -ENOENT);
	pagemap_set_flags(pm, 6 * 8 + 4, PF_DISCARDED);
	assert_int_equal(pagemap_clock_pick(pm, &first), 0);
	assert_int_equal(first, 48);

	/* A run whose only resident page leaves is not picked any more. */
	pagemap_set(pm, 6 * 8 + 3, PS_SHM, 9);
	pagemap_set(pm, 6 * 8 + 4, PS_ZERO, 0);
	assert_int_equal(pagemap_clock_pick(pm, &first), -ENOENT);
	pagemap_destroy(pm);
}

static void test_clock_partial_last_run(void **state)
{
	struct pagemap *pm = make(20, 8); /* runs 0-7, 8-15, 16-19 */
	size_t first;

	pagemap_set(pm, 19, PS_RESIDENT, 0);
	assert_int_equal(pagemap_clock_pick(pm, &first), 0);
	assert_int_equal(first, 16);
	assert_int_equal(pagemap_clock_pick(pm, &first), 0);
	assert_int_equal(first, 16);
	pagemap_touch(pm, 19);
	assert_int_equal(pagemap_clock_pick(pm, &first), 0); /* the only candidate: 2nd sweep */
	assert_int_equal(first, 16);
	pagemap_destroy(pm);
}

static void span(const struct pagemap *pm, size_t page, enum page_state st, size_t want_first,
		 size_t want_count)
{
	size_t first = 12345, count = 12345;

	pagemap_tier_span(pm, page, st, &first, &count);
	if (first != want_first || count != want_count)
		print_error("span of page %zu: got [%zu, +%zu), want [%zu, +%zu)\n", page, first,
			    count, want_first, want_count);
	assert_int_equal(first, want_first);
	assert_int_equal(count, want_count);
}

static void test_tier_span(void **state)
{
	struct pagemap *pm = make(36, 16); /* runs 0-15, 16-31, 32-35 */

	/* Run 0: pages 0-5 in slots 0-5 (slot 0 at the run start), page 6 resident, pages 7-9
	 * in slots 100-102, page 10 in slot 200 (gaps both sides), pages 11-15 in slots
	 * 105-109. */
	for (size_t p = 0; p < 6; p++)
		pagemap_set(pm, p, PS_SHM, p);
	pagemap_set(pm, 6, PS_RESIDENT, 0);
	for (size_t p = 7; p < 10; p++)
		pagemap_set(pm, p, PS_SHM, 93 + p);
	pagemap_set(pm, 10, PS_SHM, 200);
	for (size_t p = 11; p < 16; p++)
		pagemap_set(pm, p, PS_SHM, 94 + p);
	/* Run 1 continues run 0's slots: 110-125. The span must not cross the run's edge. */
	for (size_t p = 16; p < 32; p++)
		pagemap_set(pm, p, PS_SHM, 94 + p);
	/* Partial run 2: 32-35 in slots 7-10. */
	for (size_t p = 32; p < 36; p++)
		pagemap_set(pm, p, PS_SHM, p - 25);

	for (size_t p = 0; p < 6; p++)
		span(pm, p, PS_SHM, 0, 6);
	for (size_t p = 7; p < 10; p++)
		span(pm, p, PS_SHM, 7, 3);
	span(pm, 10, PS_SHM, 10, 1);
	for (size_t p = 11; p < 16; p++)
		span(pm, p, PS_SHM, 11, 5);
	for (size_t p = 16; p < 32; p++)
		span(pm, p, PS_SHM, 16, 16);
	for (size_t p = 32; p < 36; p++)
		span(pm, p, PS_SHM, 32, 4);
	span(pm, 6, PS_RESIDENT, 6, 1);

	/* Same slot numbers but another state do not join a span. */
	pagemap_set(pm, 3, PS_ZERO, 0);
	span(pm, 2, PS_SHM, 0, 3);
	span(pm, 4, PS_SHM, 4, 2);
	pagemap_destroy(pm);
}

/* The demotion hand: only runs with shm pages and nothing in flight, in hand order; runs_with
 * counts runs per tier. */
static void test_demote_pick(void **state)
{
	struct pagemap *pm;
	size_t first;

	(void)state;
	assert_int_equal(pagemap_create(64, 8, &pm), 0);
	assert_int_equal(pagemap_demote_pick(pm, &first), -ENOENT);
	pagemap_set(pm, 9, PS_SHM, 100);
	pagemap_set(pm, 40, PS_SHM, 101);
	pagemap_set(pm, 41, PS_DISK, 5);
	pagemap_set(pm, 42, PS_RESIDENT, 0);
	assert_int_equal(pagemap_runs_with(pm, PS_SHM), 2);
	assert_int_equal(pagemap_runs_with(pm, PS_DISK), 1);
	assert_int_equal(pagemap_runs_with(pm, PS_RESIDENT), 1);
	assert_int_equal(pagemap_demote_pick(pm, &first), 0);
	assert_int_equal(first, 8);
	pagemap_set_flags(pm, 40, PF_EVICTING);
	assert_int_equal(pagemap_demote_pick(pm, &first), 0);
	assert_int_equal(first, 8); /* run 5 is in flight: skipped, wraps to run 1 */
	pagemap_set_flags(pm, 40, 0);
	assert_int_equal(pagemap_demote_pick(pm, &first), 0);
	assert_int_equal(first, 40);
	pagemap_set(pm, 9, PS_DISK, 7);
	pagemap_set(pm, 40, PS_DISK, 8);
	assert_int_equal(pagemap_demote_pick(pm, &first), -ENOENT);
	assert_int_equal(pagemap_runs_with(pm, PS_DISK), 2);
	pagemap_destroy(pm);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_create_args),
	    cmocka_unit_test(test_fields_independent),
	    cmocka_unit_test(test_random_walk),
	    cmocka_unit_test(test_demote_pick),
	    cmocka_unit_test(test_clock_order_and_refs),
	    cmocka_unit_test(test_clock_partial_last_run),
	    cmocka_unit_test(test_tier_span),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
