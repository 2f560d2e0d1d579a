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
 *    at slot 0 and in a partial last run);
 *  - scale: on 262144 runs with 16 resident, 100k rounds of pick/evict/fault-back visit a
 *    bounded number of runs per pick (pagemap_debug_steps), where the old walk visited
 *    hundreds of thousands;
 *  - every pick and runs_with against a reference model that scans all runs, over seeded
 *    random transitions (states, in-flight flags, touches, marks, epochs forward and back);
 *  - pagemap_attach over a copy of a driven map's entries: same counts, same pickable runs,
 *    address order for equal ages, in-flight runs pickable again once their flags clear.
 * The map is not thread-safe by contract, so there are no threads here. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdbool.h>
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
			sh[p].slot = (st == PS_SHM || st == PS_DISK || st == PS_ZSHM) ? slot : 0;
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

/* ---- Scale: picks cost what is in their queue, not the size of the guest ---- */

/* What the evictor does to a run it picked: flags its resident pages, moves them to shm,
 * clears the flags (evict.c choose/commit). */
static void evict_like(struct pagemap *pm, size_t first, uint64_t *slot)
{
	size_t end = first + pagemap_run_pages(pm);

	end = end < pagemap_npages(pm) ? end : pagemap_npages(pm);
	for (size_t p = first; p < end; p++)
		if (pagemap_state(pm, p) == PS_RESIDENT)
			pagemap_set_flags(pm, p, PF_EVICTING);
	for (size_t p = first; p < end; p++) {
		if (!(pagemap_flags(pm, p) & PF_EVICTING))
			continue;
		pagemap_set(pm, p, PS_SHM, (*slot)++);
		pagemap_set_flags(pm, p, 0);
	}
}

/* A guest of 262144 runs (4K runs) with 16 resident: 100k rounds of pick (age and clock in
 * turn), evict, fault a run back, an epoch every 1000 rounds, a demotion every 8. The old
 * picks walked the runs, resident or not (thousands of visits per pick here); these must
 * visit what is in their queue: at most the resident runs, usually the heap's depth. */
static void test_picks_do_not_walk_the_map(void **state)
{
	const size_t nruns = 262144, resident = 16, rounds = 100000;
	struct pagemap *pm = make(nruns, 1);
	size_t first, worst_pick = 0, before;
	uint64_t slot = 0;

	rng_state = 0x5ca1e;
	for (size_t r = 0; r < resident; r++)
		pagemap_set(pm, r * (nruns / resident), PS_RESIDENT, 0);
	before = pagemap_debug_steps(pm);
	for (size_t i = 0; i < rounds; i++) {
		size_t s0 = pagemap_debug_steps(pm), back = rnd() % nruns;

		if (i % 1000 == 0)
			pagemap_set_epoch(pm, pagemap_epoch(pm) + 1);
		assert_int_equal(
		    i % 2 ? pagemap_clock_pick(pm, &first) : pagemap_age_pick(pm, &first), 0);
		worst_pick = pagemap_debug_steps(pm) - s0 > worst_pick
				 ? pagemap_debug_steps(pm) - s0
				 : worst_pick;
		evict_like(pm, first, &slot);
		while (pagemap_state(pm, back) == PS_RESIDENT)
			back = (back + 1) % nruns;
		pagemap_set(pm, back, PS_RESIDENT, 0); /* a fault brings a run back */
		pagemap_touch(pm, back);
		if (i % 8 == 0 && pagemap_demote_pick(pm, &first) == 0)
			pagemap_set(pm, first, PS_DISK, slot++);
		assert_int_equal(pagemap_hot_tiered_pick(pm, &first), 0);
		assert_int_equal(pagemap_runs_with(pm, PS_RESIDENT), resident);
	}
	size_t per_round = (pagemap_debug_steps(pm) - before) / rounds;

	print_message("steps per round %zu, worst pick %zu (runs %zu)\n", per_round, worst_pick,
		      nruns);
	/* The clock may pass each resident run once (its bit set by the fault that brought it
	 * back), each pass a heap path of depth 4 up and down: the bound is resident runs, not
	 * the guest's 262144. */
	assert_true(worst_pick <= 2 * resident * (1 + 2 * 4));
	assert_true(per_round <= 200); /* with upkeep: a few heap paths of depth <= 18 */
	assert_int_equal(pagemap_count(pm, PS_RESIDENT), resident);
	pagemap_destroy(pm);
}

/* ---- The picks against a reference model that scans every run ----
 *
 * The model keeps each page's state and flags, and each run's age, reference bit and pick
 * order, and answers each pick by a plain scan, from pagemap.h's contracts: the age and
 * clock picks take the run with the least (last seen, last picked or brought back, address)
 * among runs with resident pages and none in flight; the clock first clears and passes
 * referenced runs; demotion takes the least key among runs with shm pages and none in
 * flight; the prefetch pick the greatest last seen (lowest address) among runs with tiered
 * pages and none in flight. */
struct model {
	size_t npages, nruns;
	uint32_t run, epoch;
	struct shadow *pg;
	uint32_t *seen;
	uint64_t *seq, seq_next;
	uint8_t *ref;
};

/* Pages of run in state st (PS_SHM and PS_ZSHM both count the shm pages of either form, as
 * the map's per-run counts do), or with a flag of fl when st < 0. */
static size_t m_run_count(const struct model *m, size_t run, int st, unsigned fl)
{
	size_t n = 0;

	if (st == PS_ZSHM)
		st = PS_SHM;
	for (size_t p = run * m->run; p < (run + 1) * m->run && p < m->npages; p++) {
		enum page_state ps = m->pg[p].st == PS_ZSHM ? PS_SHM : m->pg[p].st;

		n += st >= 0 ? ps == (enum page_state)st : (m->pg[p].flags & fl) != 0;
	}
	return n;
}

static bool m_idle(const struct model *m, size_t run)
{
	return !m_run_count(m, run, -1, PF_EVICTING | PF_ARMING);
}

static bool m_older(const struct model *m, size_t a, size_t b)
{
	if (m->seen[a] != m->seen[b])
		return m->seen[a] < m->seen[b];
	return m->seq[a] != m->seq[b] ? m->seq[a] < m->seq[b] : a < b;
}

/* The oldest idle run holding pages in state st, or SIZE_MAX. */
static size_t m_oldest(const struct model *m, enum page_state st)
{
	size_t best = SIZE_MAX;

	for (size_t r = 0; r < m->nruns; r++)
		if (m_run_count(m, r, st, 0) && m_idle(m, r) &&
		    (best == SIZE_MAX || m_older(m, r, best)))
			best = r;
	return best;
}

static size_t m_hottest(const struct model *m)
{
	size_t best = SIZE_MAX;

	for (size_t r = 0; r < m->nruns; r++)
		if ((m_run_count(m, r, PS_SHM, 0) || m_run_count(m, r, PS_DISK, 0)) &&
		    m_idle(m, r) && (best == SIZE_MAX || m->seen[r] > m->seen[best]))
			best = r;
	return best;
}

static void m_set(struct model *m, struct pagemap *pm, size_t p, enum page_state st)
{
	size_t run = p / m->run;
	bool was = m_run_count(m, run, PS_RESIDENT, 0);
	uint64_t slot = rnd() >> 8;

	m->pg[p].st = st;
	m->pg[p].slot = (st == PS_SHM || st == PS_DISK || st == PS_ZSHM) ? slot : 0;
	if (!was && st == PS_RESIDENT)
		m->seq[run] = ++m->seq_next;
	pagemap_set(pm, p, st, slot);
}

static void m_pick(struct model *m, struct pagemap *pm, int kind)
{
	size_t want = m_oldest(m, kind == 2 ? PS_SHM : PS_RESIDENT), got = 0;
	int r;

	while (kind == 1 && want != SIZE_MAX && m->ref[want]) { /* the clock passes it */
		m->ref[want] = 0;
		m->seq[want] = ++m->seq_next;
		want = m_oldest(m, PS_RESIDENT);
	}
	r = kind == 0	? pagemap_age_pick(pm, &got)
	    : kind == 1 ? pagemap_clock_pick(pm, &got)
			: pagemap_demote_pick(pm, &got);
	if (want == SIZE_MAX) {
		assert_int_equal(r, -ENOENT);
		return;
	}
	assert_int_equal(r, 0);
	assert_int_equal(got, want * m->run);
	m->seq[want] = ++m->seq_next;
}

static void m_check(const struct model *m, const struct pagemap *pm)
{
	size_t want = m_hottest(m), got = 0;
	int r = pagemap_hot_tiered_pick(pm, &got);

	assert_int_equal(r, want == SIZE_MAX ? -ENOENT : 0);
	if (want != SIZE_MAX)
		assert_int_equal(got, want * m->run);
	for (int st = PS_RESIDENT; st < PS_NSTATES; st++) {
		size_t n = 0;

		if (st == PS_ZERO)
			continue;
		for (size_t run = 0; run < m->nruns; run++)
			n += m_run_count(m, run, st, 0) != 0;
		assert_int_equal(pagemap_runs_with(pm, (enum page_state)st), n);
	}
}

/* One random step: mostly state and flag changes, touches and marks, a new epoch now and
 * then (once in a while an older one, as when the tracker restarts), and picks. */
static void m_step(struct model *m, struct pagemap *pm)
{
	size_t p = rnd() % m->npages, run = p / m->run;
	unsigned k = (unsigned)(rnd() % 100);
	static const unsigned fl[] = {0, PF_EVICTING, PF_ARMING, PF_PREFETCHED, PF_DISCARDED};

	if (k < 40) {
		m_set(m, pm, p, (enum page_state)(rnd() % PS_NSTATES));
	} else if (k < 55) {
		m->pg[p].flags = fl[rnd() % 5] | (rnd() % 8 == 0 ? PF_PREFETCHED : 0);
		pagemap_set_flags(pm, p, m->pg[p].flags);
	} else if (k < 65) {
		m->ref[run] = 1;
		m->seen[run] = m->epoch;
		pagemap_touch(pm, p);
	} else if (k < 75) {
		m->seen[run] = m->epoch;
		pagemap_mark_seen(pm, p);
	} else if (k < 78) {
		m->epoch = rnd() % 50 == 0 ? m->epoch / 2 : m->epoch + 1;
		pagemap_set_epoch(pm, m->epoch);
	} else {
		m_pick(m, pm, (int)(k % 3));
	}
}

static void reference_run(uint64_t seed)
{
	struct model m = {.npages = 1500, .run = 8};

	m.nruns = (m.npages + m.run - 1) / m.run; /* a partial last run */
	m.pg = calloc(m.npages, sizeof(*m.pg));
	m.seen = calloc(m.nruns, sizeof(*m.seen));
	m.seq = calloc(m.nruns, sizeof(*m.seq));
	m.ref = calloc(m.nruns, 1);
	assert_true(m.pg && m.seen && m.seq && m.ref);
	struct pagemap *pm = make(m.npages, m.run);

	rng_state = seed;
	print_message("seed %#llx\n", (unsigned long long)seed);
	for (int step = 0; step < 40000; step++) {
		m_step(&m, pm);
		if (step % 7 == 0)
			m_check(&m, pm);
	}
	check_all(pm, m.pg, m.npages);
	pagemap_destroy(pm);
	free(m.pg);
	free(m.seen);
	free(m.seq);
	free(m.ref);
}

/* Four seeds, or the one in PM_SEED (to replay a failure). */
static void test_picks_match_reference(void **state)
{
	const char *env = getenv("PM_SEED");

	if (env) {
		reference_run(strtoull(env, NULL, 0));
		return;
	}
	for (uint64_t seed = 0x5eed0013; seed < 0x5eed0017; seed++)
		reference_run(seed);
}

/* ---- Attach: a second map over a copy of the entries picks what the first would ----
 *
 * A map is built over entries the test owns, then driven like a guest under the evictor:
 * faults, epochs, evictions, demotions, a discard, and pages left in flight (an eviction and
 * an arming under way). A second map attached to a copy of the entries must agree on every
 * count and on the set of runs each pick can hand out; its ages start equal, so it hands
 * victims out in address order; and its in-flight runs come back when their flags clear. */
static void drain(struct pagemap *pm, int kind, uint8_t *picked, size_t nruns)
{
	size_t first, n = 0;

	memset(picked, 0, nruns);
	while ((kind == 0   ? pagemap_age_pick(pm, &first)
		: kind == 1 ? pagemap_demote_pick(pm, &first)
			    : pagemap_hot_tiered_pick(pm, &first)) == 0) {
		size_t run = first / pagemap_run_pages(pm);

		assert_false(picked[run]);
		picked[run] = 1;
		n++;
		/* Park the run (an arming of its first page), as the evictor would a victim. */
		pagemap_set_flags(pm, first, pagemap_flags(pm, first) | PF_ARMING);
	}
	assert_true(n <= nruns);
}

static void unpark(struct pagemap *pm, const uint8_t *picked, size_t nruns)
{
	for (size_t r = 0; r < nruns; r++)
		if (picked[r])
			pagemap_set_flags(pm, r * pagemap_run_pages(pm),
					  pagemap_flags(pm, r * pagemap_run_pages(pm)) &
					      ~PF_ARMING);
}

static void drive_like_a_guest(struct pagemap *pm, size_t npages)
{
	uint64_t slot = 1;
	size_t first;

	for (size_t p = 0; p < npages; p++)
		pagemap_set(pm, p, PS_RESIDENT, 0);
	for (int i = 0; i < 3000; i++) {
		size_t p = rnd() % npages;

		if (i % 100 == 0)
			pagemap_set_epoch(pm, pagemap_epoch(pm) + 1);
		if (pagemap_state(pm, p) != PS_RESIDENT && !pagemap_flags(pm, p))
			pagemap_set(pm, p, PS_RESIDENT, 0);
		pagemap_touch(pm, p);
		if (pagemap_count(pm, PS_RESIDENT) > npages / 4 && !pagemap_age_pick(pm, &first))
			evict_like(pm, first, &slot);
		if (i % 5 == 0 && !pagemap_demote_pick(pm, &first))
			pagemap_set(pm, first, PS_DISK, slot++);
	}
	pagemap_set(pm, 7, PS_ZERO, 0); /* a discard */
	assert_int_equal(pagemap_age_pick(pm, &first), 0);
	pagemap_set_flags(pm, first, PF_EVICTING); /* an eviction under way */
	assert_int_equal(pagemap_demote_pick(pm, &first), 0);
	pagemap_set_flags(pm, first, PF_EVICTING); /* a demotion under way */
	assert_int_equal(pagemap_age_pick(pm, &first), 0);
	pagemap_set_flags(pm, first, PF_ARMING); /* an arming under way */
}

static void test_attach_agrees(void **state)
{
	const size_t npages = 4096, nruns = 4096 / 16;
	uint64_t *ent = calloc(npages, sizeof(*ent)), *copy = malloc(npages * sizeof(*copy));
	uint8_t *pa = malloc(nruns), *pb = malloc(nruns);
	struct pagemap *a, *b;
	size_t first, parked[8];
	int nparked = 0;

	assert_true(ent && copy && pa && pb);
	rng_state = 0xa77ac4;
	assert_int_equal(pagemap_attach(ent, npages, 16, &a), 0);
	drive_like_a_guest(a, npages);
	memcpy(copy, ent, npages * sizeof(*ent));
	assert_int_equal(pagemap_attach(copy, npages, 16, &b), 0);

	for (int st = 0; st < PS_NSTATES; st++) {
		assert_int_equal(pagemap_count(a, (enum page_state)st),
				 pagemap_count(b, (enum page_state)st));
		assert_int_equal(pagemap_runs_with(a, (enum page_state)st),
				 pagemap_runs_with(b, (enum page_state)st));
	}
	assert_true(pagemap_runs_with(b, PS_SHM) > 0 && pagemap_runs_with(b, PS_DISK) > 0);
	/* b: every age equal, so victims come in address order. */
	while (nparked < 8 && !pagemap_age_pick(b, &first)) {
		assert_true(nparked == 0 || first > parked[nparked - 1]);
		parked[nparked++] = first;
		pagemap_set_flags(b, first, pagemap_flags(b, first) | PF_ARMING);
	}
	assert_int_equal(nparked, 8);
	while (nparked--)
		pagemap_set_flags(b, parked[nparked],
				  pagemap_flags(b, parked[nparked]) & ~PF_ARMING);
	for (int kind = 0; kind < 3; kind++) {
		drain(a, kind, pa, nruns);
		drain(b, kind, pb, nruns);
		assert_memory_equal(pa, pb, nruns);
		unpark(a, pa, nruns);
		unpark(b, pb, nruns);
	}
	/* The runs in flight when b attached are pickable once their flags clear. */
	for (size_t p = 0; p < npages; p++)
		if (pagemap_flags(b, p) & (PF_EVICTING | PF_ARMING))
			pagemap_set_flags(b, p, 0);
	drain(b, 0, pb, nruns);
	for (size_t r = 0; r < nruns; r++) {
		bool res = false;

		for (size_t p = r * 16; p < (r + 1) * 16; p++)
			res |= pagemap_state(b, p) == PS_RESIDENT;
		assert_int_equal(pb[r], res);
	}
	pagemap_destroy(a);
	pagemap_destroy(b);
	free(ent);
	free(copy);
	free(pa);
	free(pb);
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
	    cmocka_unit_test(test_picks_do_not_walk_the_map),
	    cmocka_unit_test(test_picks_match_reference),
	    cmocka_unit_test(test_attach_agrees),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
