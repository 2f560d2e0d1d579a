/* pagemap: see pagemap.h. An entry is 64 bits: state in bits 0-3, flags in 4-7, slot above. */
#include "uffd-mgr/pagemap.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>

#define ST_MASK	   0xfull
#define FL_SHIFT   4
#define FL_MASK	   (0xfull << FL_SHIFT)
#define SLOT_SHIFT 8

struct pagemap;

/* A keyed queue of runs: a binary heap of run numbers plus each run's place in it, so a run
 * joins, leaves or changes key in O(log n) and the first run is read in O(1). The picks read
 * these instead of walking the runs, which is what lets them cost the same on a guest of any
 * size. The arrays are sized for every run, but calloc'd memory is backed only where written:
 * a queue of n runs touches n words of heap. */
struct runq {
	uint32_t *heap; /* run numbers, heap-ordered by before() */
	uint32_t *pos;	/* run -> its index in heap + 1; 0: not queued */
	size_t n;
	bool (*before)(const struct pagemap *pm, uint32_t a, uint32_t b);
};

struct pagemap {
	bool ent_owned; /* ent is ours (pagemap_create), not the caller's (pagemap_attach) */
	size_t npages;
	uint32_t run_pages;
	size_t nruns;
	uint64_t *ent;
	uint32_t *run_resident;
	uint8_t *run_ref;
	uint32_t *run_evicting;
	uint32_t *run_shm;
	uint32_t *run_disk;
	uint32_t *run_seen;
	/* When the run last went round a pick or came back into RAM: orders runs of one age.
	 * 64 bits so that it never wraps. */
	uint64_t *run_seq;
	uint64_t seq_next;
	uint32_t epoch;
	size_t counts[PS_NSTATES];
	size_t runs_with[PS_NSTATES]; /* runs holding a page in the state (resident, shm, disk) */
	/* Runs with nothing in flight that hold resident pages (victims), shm pages (demotion),
	 * or tiered pages (prefetch). Membership follows the per-run counts (sync_run). */
	struct runq evictable, demotable, tiered;
	size_t steps; /* runs visited by picks and queue upkeep: pagemap_debug_steps */
};

/* Age order: last seen longest ago, then the one that went round a pick (or came back into
 * RAM) longest ago, then the lowest address. Victims and demotion go in this order. */
static bool older(const struct pagemap *pm, uint32_t a, uint32_t b)
{
	if (pm->run_seen[a] != pm->run_seen[b])
		return pm->run_seen[a] < pm->run_seen[b];
	if (pm->run_seq[a] != pm->run_seq[b])
		return pm->run_seq[a] < pm->run_seq[b];
	return a < b;
}

/* Prefetch order: seen most recently, then the lowest address. */
static bool hotter(const struct pagemap *pm, uint32_t a, uint32_t b)
{
	if (pm->run_seen[a] != pm->run_seen[b])
		return pm->run_seen[a] > pm->run_seen[b];
	return a < b;
}

static void runq_place(struct runq *q, size_t i, uint32_t run)
{
	q->heap[i] = run;
	q->pos[run] = (uint32_t)(i + 1);
}

static void sift_up(struct pagemap *pm, struct runq *q, size_t i)
{
	uint32_t run = q->heap[i];

	while (i > 0) {
		size_t parent = (i - 1) / 2;

		pm->steps++;
		if (!q->before(pm, run, q->heap[parent]))
			break;
		runq_place(q, i, q->heap[parent]);
		i = parent;
	}
	runq_place(q, i, run);
}

static void sift_down(struct pagemap *pm, struct runq *q, size_t i)
{
	uint32_t run = q->heap[i];

	for (size_t c; (c = 2 * i + 1) < q->n; i = c) {
		pm->steps++;
		if (c + 1 < q->n && q->before(pm, q->heap[c + 1], q->heap[c]))
			c++;
		if (!q->before(pm, q->heap[c], run))
			break;
		runq_place(q, i, q->heap[c]);
	}
	runq_place(q, i, run);
}

/* Puts a queued run back in order after its key changed; a run not queued is left alone. */
static void runq_fix(struct pagemap *pm, struct runq *q, uint32_t run)
{
	if (!q->pos[run])
		return;
	sift_up(pm, q, q->pos[run] - 1);
	sift_down(pm, q, q->pos[run] - 1);
}

/* Makes run a member of q or not. */
static void runq_member(struct pagemap *pm, struct runq *q, uint32_t run, bool want)
{
	size_t i;

	if (want == (q->pos[run] != 0))
		return;
	if (want) {
		runq_place(q, q->n++, run);
		sift_up(pm, q, q->n - 1);
		return;
	}
	i = q->pos[run] - 1;
	q->pos[run] = 0;
	if (i == --q->n)
		return;
	runq_place(q, i, q->heap[q->n]);
	runq_fix(pm, q, q->heap[i]);
}

static int runq_init(struct runq *q, size_t nruns,
		     bool (*before)(const struct pagemap *, uint32_t, uint32_t))
{
	q->heap = calloc(nruns, sizeof(*q->heap));
	q->pos = calloc(nruns, sizeof(*q->pos));
	q->before = before;
	return q->heap && q->pos ? 0 : -ENOMEM;
}

static void runq_free(struct runq *q)
{
	free(q->heap);
	free(q->pos);
}

/* Brings the run's queue memberships in line with its counts. O(log n) when one changes,
 * O(1) otherwise; called after every change to a per-run count. */
static void sync_run(struct pagemap *pm, uint32_t run)
{
	bool idle = !pm->run_evicting[run];

	runq_member(pm, &pm->evictable, run, idle && pm->run_resident[run]);
	runq_member(pm, &pm->demotable, run, idle && pm->run_shm[run]);
	runq_member(pm, &pm->tiered, run, idle && (pm->run_shm[run] || pm->run_disk[run]));
}

/* Sends the run behind every other run of its age: after a pick (a run that was not moved
 * after all comes round again only after its peers) and when it comes back into RAM. */
static void bump_seq(struct pagemap *pm, uint32_t run)
{
	pm->run_seq[run] = ++pm->seq_next;
	runq_fix(pm, &pm->evictable, run);
	runq_fix(pm, &pm->demotable, run);
}

/* Allocates the map with ent as its entries (NULL: allocate them zeroed, owned). */
static int pagemap_new(size_t npages, uint32_t run_pages, uint64_t *ent, struct pagemap **out)
{
	struct pagemap *pm;
	size_t nruns;
	int r;

	if (!npages || !run_pages || (run_pages & (run_pages - 1)))
		return -EINVAL;
	nruns = (npages + run_pages - 1) / run_pages;
	if (nruns >= UINT32_MAX) /* the queues hold run numbers in 32 bits */
		return -EINVAL;
	pm = calloc(1, sizeof(*pm));
	if (!pm)
		return -ENOMEM;
	pm->npages = npages;
	pm->run_pages = run_pages;
	pm->nruns = nruns;
	pm->ent_owned = !ent;
	pm->ent = ent ? ent : calloc(npages, sizeof(*pm->ent));
	pm->run_resident = calloc(nruns, sizeof(*pm->run_resident));
	pm->run_ref = calloc(nruns, sizeof(*pm->run_ref));
	pm->run_evicting = calloc(nruns, sizeof(*pm->run_evicting));
	pm->run_shm = calloc(nruns, sizeof(*pm->run_shm));
	pm->run_disk = calloc(nruns, sizeof(*pm->run_disk));
	pm->run_seen = calloc(nruns, sizeof(*pm->run_seen));
	pm->run_seq = calloc(nruns, sizeof(*pm->run_seq));
	r = runq_init(&pm->evictable, nruns, older);
	r = r ? r : runq_init(&pm->demotable, nruns, older);
	r = r ? r : runq_init(&pm->tiered, nruns, hotter);
	if (r || !pm->ent || !pm->run_resident || !pm->run_ref || !pm->run_evicting ||
	    !pm->run_shm || !pm->run_disk || !pm->run_seen || !pm->run_seq) {
		pagemap_destroy(pm);
		return -ENOMEM;
	}
	*out = pm;
	return 0;
}

/* Derives every per-run count, per-state total and queue from the entries alone: the entries
 * are the only state that outlives the daemon, so everything else must follow from them. The
 * ages start equal (never seen), so the queues start in address order. */
static void rebuild_derived(struct pagemap *pm)
{
	for (size_t p = 0; p < pm->npages; p++) {
		enum page_state st = pagemap_state(pm, p);
		size_t run = p / pm->run_pages;

		pm->counts[st]++;
		if (st == PS_RESIDENT)
			pm->run_resident[run]++;
		else if (st == PS_SHM || st == PS_ZSHM)
			pm->run_shm[run]++;
		else if (st == PS_DISK)
			pm->run_disk[run]++;
		if (pagemap_flags(pm, p) & (PF_EVICTING | PF_ARMING))
			pm->run_evicting[run]++;
	}
	for (uint32_t run = 0; run < pm->nruns; run++) {
		pm->runs_with[PS_RESIDENT] += pm->run_resident[run] != 0;
		pm->runs_with[PS_SHM] += pm->run_shm[run] != 0;
		pm->runs_with[PS_DISK] += pm->run_disk[run] != 0;
		sync_run(pm, run);
	}
}

size_t pagemap_reconcile(uint64_t *ent, size_t npages, const uint64_t *in_memfd,
			 bool keep_arming)
{
	size_t changed = 0;

	for (size_t p = 0; p < npages; p++) {
		enum page_state st = (enum page_state)(ent[p] & ST_MASK), to = st;
		unsigned fl = (unsigned)((ent[p] & FL_MASK) >> FL_SHIFT), keep_fl = 0;
		uint64_t keep;

		if ((in_memfd[p / 64] >> (p % 64)) & 1)
			to = PS_RESIDENT;
		else if (fl & PF_DISCARDED)
			to = PS_ZERO;
		else if (st == PS_RESIDENT)
			to = PS_ZERO;
		if (keep_arming && to == PS_RESIDENT)
			keep_fl = fl & PF_ARMING;
		keep = (to == PS_SHM || to == PS_DISK || to == PS_ZSHM)
			   ? (ent[p] & ~(ST_MASK | FL_MASK))
			   : 0;
		if (to != st || fl != keep_fl) {
			ent[p] = keep | ((uint64_t)keep_fl << FL_SHIFT) | (uint64_t)to;
			changed++;
		}
	}
	return changed;
}

int pagemap_create(size_t npages, uint32_t run_pages, struct pagemap **out)
{
	int r = pagemap_new(npages, run_pages, NULL, out);

	if (!r)
		(*out)->counts[PS_NONE] = npages;
	return r;
}

int pagemap_attach(uint64_t *ent, size_t npages, uint32_t run_pages, struct pagemap **out)
{
	int r;

	for (size_t p = 0; p < npages; p++)
		if ((ent[p] & ST_MASK) >= PS_NSTATES)
			return -EUCLEAN;
	r = pagemap_new(npages, run_pages, ent, out);
	if (!r)
		rebuild_derived(*out);
	return r;
}

void pagemap_destroy(struct pagemap *pm)
{
	if (!pm)
		return;
	if (pm->ent_owned)
		free(pm->ent);
	free(pm->run_resident);
	free(pm->run_ref);
	free(pm->run_evicting);
	free(pm->run_shm);
	free(pm->run_disk);
	free(pm->run_seen);
	free(pm->run_seq);
	runq_free(&pm->evictable);
	runq_free(&pm->demotable);
	runq_free(&pm->tiered);
	free(pm);
}

size_t pagemap_npages(const struct pagemap *pm)
{
	return pm->npages;
}

uint32_t pagemap_run_pages(const struct pagemap *pm)
{
	return pm->run_pages;
}

size_t pagemap_run_resident(const struct pagemap *pm, size_t page)
{
	return page < pm->npages ? pm->run_resident[page / pm->run_pages] : 0;
}

enum page_state pagemap_state(const struct pagemap *pm, size_t page)
{
	return (enum page_state)(pm->ent[page] & ST_MASK);
}

uint64_t pagemap_slot(const struct pagemap *pm, size_t page)
{
	return pm->ent[page] >> SLOT_SHIFT;
}

unsigned pagemap_flags(const struct pagemap *pm, size_t page)
{
	return (unsigned)((pm->ent[page] & FL_MASK) >> FL_SHIFT);
}

void pagemap_set_flags(struct pagemap *pm, size_t page, unsigned flags)
{
	size_t run = page / pm->run_pages;
	unsigned old = pagemap_flags(pm, page);

	/* run_evicting counts the pages in flight: being moved, or being armed. A run with one
	 * leaves the queues, and is back in them, where its key puts it, when the last clears. */
	bool was = old & (PF_EVICTING | PF_ARMING), is = flags & (PF_EVICTING | PF_ARMING);

	pm->ent[page] = (pm->ent[page] & ~FL_MASK) | ((uint64_t)(flags & 0xf) << FL_SHIFT);
	if (was == is)
		return;
	if (is)
		pm->run_evicting[run]++;
	else
		pm->run_evicting[run]--;
	sync_run(pm, (uint32_t)run);
}

/* The per-run count a state goes into: a run's shm pages are counted together, plain or
 * compressed (both are the shm tier's, for demotion and prefetch alike). */
static enum page_state bucket(enum page_state st)
{
	return st == PS_ZSHM ? PS_SHM : st;
}

/* Moves one page of run out of state old and into state st in the per-run counts, keeping the
 * runs_with totals. Returns whether the run now holds resident pages it did not before. */
static bool count_move(struct pagemap *pm, size_t run, enum page_state old, enum page_state st)
{
	uint32_t *per_run[PS_NSTATES] = {
	    [PS_RESIDENT] = pm->run_resident, [PS_SHM] = pm->run_shm, [PS_DISK] = pm->run_disk};

	pm->counts[old]--;
	pm->counts[st]++;
	old = bucket(old);
	st = bucket(st);
	if (per_run[old] && --per_run[old][run] == 0)
		pm->runs_with[old]--;
	if (per_run[st] && per_run[st][run]++ == 0) {
		pm->runs_with[st]++;
		return st == PS_RESIDENT;
	}
	return false;
}

void pagemap_set(struct pagemap *pm, size_t page, enum page_state st, uint64_t slot)
{
	enum page_state old = pagemap_state(pm, page);
	size_t run = page / pm->run_pages;
	uint64_t keep_flags = pm->ent[page] & FL_MASK;

	if (st != PS_SHM && st != PS_DISK && st != PS_ZSHM)
		slot = 0;
	pm->ent[page] = (slot << SLOT_SHIFT) | keep_flags | (uint64_t)st;
	if (old == st)
		return;
	/* A run back in RAM is new to the clock: it goes behind the runs already there. */
	if (count_move(pm, run, old, st))
		bump_seq(pm, (uint32_t)run);
	sync_run(pm, (uint32_t)run);
}

size_t pagemap_count(const struct pagemap *pm, enum page_state st)
{
	return pm->counts[st];
}

/* Stamps run with the current epoch. Only a run not yet stamped this epoch moves in the
 * queues, so an epoch's marking costs O(log n) per run seen, whatever the pages seen. */
static void stamp(struct pagemap *pm, uint32_t run)
{
	if (pm->run_seen[run] == pm->epoch)
		return;
	pm->run_seen[run] = pm->epoch;
	runq_fix(pm, &pm->evictable, run);
	runq_fix(pm, &pm->demotable, run);
	runq_fix(pm, &pm->tiered, run);
}

void pagemap_touch(struct pagemap *pm, size_t page)
{
	pm->run_ref[page / pm->run_pages] = 1;
	stamp(pm, (uint32_t)(page / pm->run_pages));
}

void pagemap_set_epoch(struct pagemap *pm, uint32_t epoch)
{
	pm->epoch = epoch;
}

uint32_t pagemap_epoch(const struct pagemap *pm)
{
	return pm->epoch;
}

void pagemap_mark_seen(struct pagemap *pm, size_t page)
{
	stamp(pm, (uint32_t)(page / pm->run_pages));
}

uint32_t pagemap_run_seen(const struct pagemap *pm, size_t page)
{
	return pm->run_seen[page / pm->run_pages];
}

/* Hands out the first run of q and sends it behind its peers. */
static int pick_first(struct pagemap *pm, struct runq *q, size_t *first_page)
{
	uint32_t run;

	if (!q->n)
		return -ENOENT;
	run = q->heap[0];
	pm->steps++;
	bump_seq(pm, run);
	*first_page = (size_t)run * pm->run_pages;
	return 0;
}

int pagemap_age_pick(struct pagemap *pm, size_t *first_page)
{
	return pick_first(pm, &pm->evictable, first_page);
}

int pagemap_clock_pick(struct pagemap *pm, size_t *first_page)
{
	/* The queue's head is the hand; a referenced run loses its bit and goes behind its
	 * peers. After one sweep every bit is clear, so the second finds a victim. */
	for (size_t step = 0; step < 2 * pm->evictable.n; step++) {
		uint32_t run = pm->evictable.heap[0];

		if (!pm->run_ref[run])
			return pick_first(pm, &pm->evictable, first_page);
		pm->steps++;
		pm->run_ref[run] = 0;
		bump_seq(pm, run);
	}
	return -ENOENT;
}

int pagemap_demote_pick(struct pagemap *pm, size_t *first_page)
{
	return pick_first(pm, &pm->demotable, first_page);
}

int pagemap_hot_tiered_pick(const struct pagemap *pm, size_t *first_page)
{
	if (!pm->tiered.n)
		return -ENOENT;
	*first_page = (size_t)pm->tiered.heap[0] * pm->run_pages;
	return 0;
}

size_t pagemap_runs_with(const struct pagemap *pm, enum page_state st)
{
	st = bucket(st);
	return st == PS_RESIDENT || st == PS_SHM || st == PS_DISK ? pm->runs_with[st] : 0;
}

size_t pagemap_debug_steps(const struct pagemap *pm)
{
	return pm->steps;
}

/* A page in flight is not part of a span, even when its new home is already recorded (the
 * evictor records it before punching the page out of guest RAM). */
static int span_member(const struct pagemap *pm, size_t page, enum page_state st, uint64_t slot)
{
	return pagemap_state(pm, page) == st && pagemap_slot(pm, page) == slot &&
	       !(pagemap_flags(pm, page) & PF_EVICTING);
}

void pagemap_tier_span(const struct pagemap *pm, size_t page, enum page_state st, size_t *first,
		       size_t *count)
{
	size_t run_lo = page - page % pm->run_pages;
	size_t run_hi = run_lo + pm->run_pages;
	uint64_t slot = pagemap_slot(pm, page);
	size_t lo = page, hi = page + 1;

	if (run_hi > pm->npages)
		run_hi = pm->npages;
	while (lo > run_lo && span_member(pm, lo - 1, st, slot - (page - lo) - 1))
		lo--;
	while (hi < run_hi && span_member(pm, hi, st, slot + (hi - page)))
		hi++;
	*first = lo;
	*count = hi - lo;
}
