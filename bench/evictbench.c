/* evictbench: what choosing victims costs on a big guest, with the page map alone (issue 13).
 *
 * A 4 GiB guest map (no guest memory behind it) with a 64 MiB resident limit, read back as
 * scene 2 does: runs come back in a seeded random order (a fault: the run's pages become
 * resident and the run is touched), and while residency is past the limit the evictor picks
 * a victim by age and moves it out (flags it in flight, gives its pages shm homes, clears
 * the flags), as evict.c does under the VM's lock, down to its low mark. Every --epoch-faults runs
 * brought back the tracker ends an epoch and, as the default tracker (ebpf, every resident page)
 * does, arms every resident run: its pages are in flight (PF_ARMING) until the REMOVE that the
 * arming raises is applied, which here happens to one armed run per fault until --arm-faults faults
 * have passed. A pick that finds nothing (every resident run armed) counts as a miss; the evictor
 * retries after the next fault. Only this bookkeeping runs, and all of it is timed.
 *
 * Baselines measured in the same run: the old pick (the hand that walked every run of the
 * guest, resident or not, against an age cutoff; reproduced below from pagemap.c before
 * issue 13) over the same workload, and memcpy of the bytes those picks evict (4 KiB pages
 * copied between two buffers of the resident limit's size, in random order): what the
 * evictor has to spend anyway on each page it moves.
 *
 * Output: one line "EVICTBENCH key=value ..." per impl (new, old) and one for memcpy. Exit 0,
 * or 1 when a step failed (the reason on stderr). */
#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/gmem.h"
#include "uffd-mgr/pagemap.h"

struct opts {
	size_t mb, limit_mb, run_kb, epoch_faults, arm_faults;
	double max_s;
	uint64_t seed;
};

/* The workload's view of a map: the new one (pagemap.c) or the old walk below. */
struct impl {
	const char *name;
	void *(*create)(size_t npages, uint32_t run_pages);
	void (*fault)(void *m, size_t first, size_t n); /* a run comes back and is touched */
	int (*pick)(void *m, size_t *first);
	void (*evict)(void *m, size_t first, size_t n, uint64_t *slot);
	void (*epoch)(void *m, uint32_t e);
	void (*arm)(void *m, size_t first, size_t n, bool on); /* the tracker's arming */
	size_t (*resident)(void *m);
	size_t (*steps)(void *m);
	void (*destroy)(void *m);
};

/* ---- the new map ---- */

static void *new_create(size_t npages, uint32_t run_pages)
{
	struct pagemap *pm;

	return pagemap_create(npages, run_pages, &pm) ? NULL : pm;
}

static void new_fault(void *m, size_t first, size_t n)
{
	for (size_t p = first; p < first + n; p++)
		pagemap_set(m, p, PS_RESIDENT, 0);
	pagemap_touch(m, first);
}

static int new_pick(void *m, size_t *first)
{
	return pagemap_age_pick(m, first);
}

static void new_evict(void *m, size_t first, size_t n, uint64_t *slot)
{
	for (size_t p = first; p < first + n; p++) /* evict.c choose() */
		pagemap_set_flags(m, p, PF_EVICTING);
	for (size_t p = first; p < first + n; p++) { /* evict.c commit() */
		pagemap_set_flags(m, p, 0);
		pagemap_set(m, p, PS_SHM, (*slot)++);
	}
}

static void new_epoch(void *m, uint32_t e)
{
	pagemap_set_epoch(m, e);
}

static void new_arm(void *m, size_t first, size_t n, bool on)
{
	for (size_t p = first; p < first + n; p++)
		pagemap_set_flags(m, p, on ? PF_ARMING : 0);
}

static size_t new_resident(void *m)
{
	return pagemap_count(m, PS_RESIDENT);
}

static size_t new_steps(void *m)
{
	return pagemap_debug_steps(m);
}

static void new_destroy(void *m)
{
	pagemap_destroy(m);
}

static const struct impl new_impl = {
    .name = "new",
    .create = new_create,
    .fault = new_fault,
    .pick = new_pick,
    .evict = new_evict,
    .epoch = new_epoch,
    .arm = new_arm,
    .resident = new_resident,
    .steps = new_steps,
    .destroy = new_destroy,
};

/* ---- the old walk: pagemap.c's per-run counters and age pick before issue 13 ---- */

struct oldmap {
	size_t nruns, hand, resident, steps;
	uint32_t run_pages, epoch, age_cutoff;
	uint32_t *run_resident, *run_evicting, *run_seen;
};

static void *old_create(size_t npages, uint32_t run_pages)
{
	struct oldmap *o = calloc(1, sizeof(*o));

	if (!o)
		return NULL;
	o->run_pages = run_pages;
	o->nruns = (npages + run_pages - 1) / run_pages;
	o->run_resident = calloc(o->nruns, sizeof(uint32_t));
	o->run_evicting = calloc(o->nruns, sizeof(uint32_t));
	o->run_seen = calloc(o->nruns, sizeof(uint32_t));
	return o;
}

static void old_fault(void *m, size_t first, size_t n)
{
	struct oldmap *o = m;
	size_t run = first / o->run_pages;

	if (!o->run_resident[run]) { /* as pagemap_set: a resident page stays counted once */
		o->run_resident[run] = (uint32_t)n;
		o->resident += n;
	}
	o->run_seen[run] = o->epoch;
}

static int old_pick(void *m, size_t *first)
{
	struct oldmap *o = m;

	for (int sweep = 0; sweep < 2; sweep++) {
		uint32_t oldest = UINT32_MAX;

		for (size_t step = 0; step < o->nruns; step++) {
			size_t run = o->hand;

			o->steps++;
			o->hand = (o->hand + 1) % o->nruns;
			if (!o->run_resident[run] || o->run_evicting[run])
				continue;
			if (o->run_seen[run] <= o->age_cutoff) {
				*first = run * o->run_pages;
				return 0;
			}
			if (o->run_seen[run] < oldest)
				oldest = o->run_seen[run];
		}
		if (oldest == UINT32_MAX)
			return -ENOENT;
		o->age_cutoff = oldest;
	}
	return -ENOENT;
}

static void old_evict(void *m, size_t first, size_t n, uint64_t *slot)
{
	struct oldmap *o = m;
	size_t run = first / o->run_pages;

	for (size_t i = 0; i < n; i++)
		o->run_evicting[run]++;
	for (size_t i = 0; i < n; i++) {
		o->run_evicting[run]--;
		o->run_resident[run]--;
	}
	o->resident -= n;
	*slot += n;
}

static void old_epoch(void *m, uint32_t e)
{
	((struct oldmap *)m)->epoch = e;
}

static void old_arm(void *m, size_t first, size_t n, bool on)
{
	struct oldmap *o = m;

	for (size_t i = 0; i < n; i++) /* pagemap_set_flags, per page */
		o->run_evicting[first / o->run_pages] += on ? 1u : -1u;
}

static size_t old_resident(void *m)
{
	return ((struct oldmap *)m)->resident;
}

static size_t old_steps(void *m)
{
	return ((struct oldmap *)m)->steps;
}

static void old_destroy(void *m)
{
	struct oldmap *o = m;

	if (!o)
		return;
	free(o->run_resident);
	free(o->run_evicting);
	free(o->run_seen);
	free(o);
}

static const struct impl old_impl = {
    .name = "old",
    .create = old_create,
    .fault = old_fault,
    .pick = old_pick,
    .evict = old_evict,
    .epoch = old_epoch,
    .arm = old_arm,
    .resident = old_resident,
    .steps = old_steps,
    .destroy = old_destroy,
};

/* ---- the workload ---- */

struct result {
	size_t picks, misses, pages, faults, steps;
	double s;
};

/* What the workload knows of the map, the same for both impls: which runs are resident (to
 * arm them) and which are armed, in arming order (to release them). */
struct guest {
	const struct impl *im;
	void *m;
	const struct opts *o;
	size_t run_pages, nruns;
	size_t *res, nres, *res_at; /* resident runs, and each one's index in res */
	size_t *armed, narmed, released;
	uint8_t *is_armed;
	uint64_t slot;
};

static void g_fault(struct guest *g, size_t run)
{
	g->im->fault(g->m, run * g->run_pages, g->run_pages);
	g->res_at[run] = g->nres;
	g->res[g->nres++] = run;
}

static void g_evict(struct guest *g, size_t run)
{
	size_t last = g->res[--g->nres];

	g->im->evict(g->m, run * g->run_pages, g->run_pages, &g->slot);
	g->res[g->res_at[run]] = last;
	g->res_at[last] = g->res_at[run];
}

/* The end of an epoch: every resident run not already armed is armed. */
static void g_arm_all(struct guest *g)
{
	g->narmed = g->released = 0;
	for (size_t i = 0; i < g->nres; i++) {
		size_t run = g->res[i];

		if (g->is_armed[run])
			continue;
		g->is_armed[run] = 1;
		g->armed[g->narmed++] = run;
		g->im->arm(g->m, run * g->run_pages, g->run_pages, true);
	}
}

/* The fault thread applies the REMOVEs of an arming: all of it within arm_faults faults, or
 * (arm_faults 0) none before the next epoch: it is behind, as when the evictor holds the lock. */
static void g_release(struct guest *g)
{
	if (!g->o->arm_faults)
		return;
	size_t want = g->narmed / g->o->arm_faults + 1;

	for (size_t k = 0; k < want && g->released < g->narmed; k++) {
		size_t run = g->armed[g->released++];

		g->is_armed[run] = 0;
		g->im->arm(g->m, run * g->run_pages, g->run_pages, false);
	}
}

/* Fills the limit with the first runs of order and sends every other run to shm: the state
 * a regrowth pass starts from. */
static void preload(struct guest *g, const size_t *order)
{
	size_t limit_runs = g->o->limit_mb * 256 / g->run_pages;

	for (size_t i = 0; i < g->nruns; i++) {
		g_fault(g, order[i]);
		if (i >= limit_runs)
			g_evict(g, order[i]);
	}
}

/* evict.c evict_round: once past the limit, evicts down to a low mark (the slack batches
 * the work: limit/32, at least 4 runs), or until the pick finds nothing. Returns 0 or -errno. */
static int g_evict_round(struct guest *g, struct result *res)
{
	size_t limit = g->o->limit_mb * 256, slack = limit / 32, first;

	slack = slack > 4 * g->run_pages ? slack : 4 * g->run_pages;
	if (g->im->resident(g->m) <= limit)
		return 0;
	while (g->im->resident(g->m) > limit - slack) {
		int r = g->im->pick(g->m, &first);

		if (r ==
		    -ENOENT) { /* all in flight: evict.c tries again at once, we after a fault */
			res->misses++;
			return 0;
		}
		if (r)
			return r;
		g_evict(g, first / g->run_pages);
		res->picks++;
		res->pages += g->run_pages;
	}
	return 0;
}

/* One fault and what follows it: the epoch's end now and then, REMOVEs applied, and the
 * evictor. Returns 0 or -errno. */
static int g_step(struct guest *g, size_t run, struct result *res, uint32_t *epoch)
{
	g_fault(g, run);
	if (++res->faults % g->o->epoch_faults == 0) {
		g->im->epoch(g->m, ++*epoch);
		g_arm_all(g);
	}
	g_release(g);
	return g_evict_round(g, res);
}

/* Brings runs back in order (from the limit on, skipping resident ones, wrapping) for max_s
 * seconds. Returns 0 or -errno. */
static int regrow(struct guest *g, const size_t *order, struct result *res)
{
	size_t next = g->o->limit_mb * 256 / g->run_pages, steps0 = g->im->steps(g->m);
	uint64_t t0 = gmem_now_ns(), end = t0 + (uint64_t)(g->o->max_s * 1e9);
	uint32_t epoch = 1;
	int r = 0;

	*res = (struct result){0};
	g_arm_all(g); /* the pass starts at an epoch's end */
	for (; !r; next = (next + 1) % g->nruns) {
		if ((res->faults & 15) == 0 && gmem_now_ns() >= end)
			break;
		if (g->res_at[order[next]] < g->nres &&
		    g->res[g->res_at[order[next]]] == order[next])
			continue; /* still resident */
		r = g_step(g, order[next], res, &epoch);
	}
	res->s = (gmem_now_ns() - t0) / 1e9;
	res->steps = g->im->steps(g->m) - steps0;
	return r;
}

static void g_free(struct guest *g)
{
	if (g->m)
		g->im->destroy(g->m);
	free(g->res);
	free(g->res_at);
	free(g->armed);
	free(g->is_armed);
}

static int g_init(struct guest *g, const struct impl *im, const struct opts *o)
{
	*g = (struct guest){.im = im, .o = o, .run_pages = o->run_kb / 4};
	g->nruns = o->mb * 256 / g->run_pages;
	g->m = im->create(o->mb * 256, (uint32_t)g->run_pages);
	g->res = calloc(g->nruns, sizeof(*g->res));
	g->res_at = calloc(g->nruns, sizeof(*g->res_at));
	g->armed = calloc(g->nruns, sizeof(*g->armed));
	g->is_armed = calloc(g->nruns, 1);
	if (!g->m || !g->res || !g->res_at || !g->armed || !g->is_armed) {
		g_free(g);
		return -ENOMEM;
	}
	im->epoch(g->m, 1);
	return 0;
}

static int run_impl(const struct impl *im, const struct opts *o, const size_t *order)
{
	struct guest g;
	struct result res;
	int r = g_init(&g, im, o);

	if (r)
		return r;
	preload(&g, order);
	r = regrow(&g, order, &res);
	if (!r)
		printf("EVICTBENCH impl=%s run_kb=%zu runs=%zu limit_mb=%zu faults=%zu picks=%zu "
		       "misses=%zu s=%.3f picks_s=%.0f pages_s=%.0f steps_per_pick=%.1f\n",
		       im->name, o->run_kb, g.nruns, o->limit_mb, res.faults, res.picks, res.misses,
		       res.s, res.picks / res.s, res.pages / res.s,
		       res.picks + res.misses ? (double)res.steps / (res.picks + res.misses) : 0.0);
	g_free(&g);
	return r;
}

/* memcpy of 4 KiB pages between two buffers of the resident limit's size, in random order,
 * for max_s seconds. Returns 0 or -ENOMEM. */
static int run_memcpy(const struct opts *o)
{
	size_t n = o->limit_mb * 256, done = 0, *order = malloc(n * sizeof(*order));
	uint8_t *src = malloc(n * GMEM_PAGE), *dst = malloc(n * GMEM_PAGE);
	uint64_t t0, end;
	int r = -ENOMEM;

	if (!order || !src || !dst)
		goto out;
	memset(src, 0x5a, n * GMEM_PAGE);
	memset(dst, 0, n * GMEM_PAGE);
	gmem_iota(order, n);
	gmem_shuffle(order, n, o->seed);
	t0 = gmem_now_ns();
	end = t0 + (uint64_t)(o->max_s * 1e9);
	for (; (done & 1023) || gmem_now_ns() < end; done++)
		memcpy(dst + order[done % n] * GMEM_PAGE, src + order[(done + 1) % n] * GMEM_PAGE,
		       GMEM_PAGE);
	printf("EVICTBENCH impl=memcpy limit_mb=%zu pages_s=%.0f check=%u\n", o->limit_mb,
	       done / ((gmem_now_ns() - t0) / 1e9), dst[order[0] * GMEM_PAGE]);
	r = 0;
out:
	free(order);
	free(src);
	free(dst);
	return r;
}

static int parse(int argc, char **argv, struct opts *o)
{
	static const struct option lo[] = {
	    {"mb", required_argument, NULL, 'm'},
	    {"limit-mb", required_argument, NULL, 'l'},
	    {"run-kb", required_argument, NULL, 'r'},
	    {"epoch-faults", required_argument, NULL, 'e'},
	    {"max-s", required_argument, NULL, 't'},
	    {"seed", required_argument, NULL, 'S'},
	    {"arm-faults", required_argument, NULL, 'a'},
	    {NULL, 0, NULL, 0},
	};
	int c;

	*o = (struct opts){.mb = 4096,
			   .limit_mb = 64,
			   .run_kb = 4,
			   .epoch_faults = 4096,
			   .arm_faults = 256,
			   .max_s = 2,
			   .seed = 1};
	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		size_t v = optarg ? strtoul(optarg, NULL, 0) : 0; /* NULL for an unknown option */

		if (c == 'm')
			o->mb = v;
		else if (c == 'l')
			o->limit_mb = v;
		else if (c == 'r')
			o->run_kb = v;
		else if (c == 'e')
			o->epoch_faults = v;
		else if (c == 't')
			o->max_s = strtod(optarg, NULL);
		else if (c == 'S')
			o->seed = v;
		else if (c == 'a')
			o->arm_faults = v;
		else
			return -EINVAL;
	}
	/* run_kb: a power of two of 4 KiB pages, as the policy allows */
	if (o->run_kb < 4 || o->run_kb > 2048 || ((o->run_kb / 4) & (o->run_kb / 4 - 1)) ||
	    !o->epoch_faults || o->limit_mb * 1024 / o->run_kb < 1 || o->limit_mb >= o->mb)
		return -EINVAL;
	return 0;
}

int main(int argc, char **argv)
{
	struct opts o;
	size_t nruns, *order;
	int r;

	if (parse(argc, argv, &o)) {
		fprintf(stderr,
			"usage: evictbench [--mb 4096] [--limit-mb 64] [--run-kb 4] "
			"[--epoch-faults 4096] [--arm-faults 256] [--max-s 2] [--seed 1]\n");
		return 1;
	}
	nruns = o.mb * 1024 / o.run_kb;
	order = malloc(nruns * sizeof(*order));
	if (!order)
		return 1;
	gmem_iota(order, nruns);
	gmem_shuffle(order, nruns, o.seed);
	r = run_impl(&new_impl, &o, order);
	r = r ? r : run_impl(&old_impl, &o, order);
	r = r ? r : run_memcpy(&o);
	free(order);
	if (r)
		fprintf(stderr, "evictbench: %s\n", strerror(-r));
	return r ? 1 : 0;
}
