/* pagemap: see pagemap.h. An entry is 64 bits: state in bits 0-3, flags in 4-7, slot above. */
#include "uffd-mgr/pagemap.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>

#define ST_MASK	   0xfull
#define FL_SHIFT   4
#define FL_MASK	   (0xfull << FL_SHIFT)
#define SLOT_SHIFT 8

struct pagemap {
	bool ent_owned; /* ent is ours (pagemap_create), not the caller's (pagemap_attach) */
	size_t npages;
	uint32_t run_pages;
	size_t nruns;
	size_t hand;
	size_t demote_hand;
	uint64_t *ent;
	uint32_t *run_resident;
	uint8_t *run_ref;
	uint32_t *run_evicting;
	uint32_t *run_shm;
	uint32_t *run_disk;
	uint32_t *run_seen;
	uint32_t epoch, age_cutoff;
	size_t counts[PS_NSTATES];
};

/* Allocates the map with ent as its entries (NULL: allocate them zeroed, owned). */
static int pagemap_new(size_t npages, uint32_t run_pages, uint64_t *ent, struct pagemap **out)
{
	struct pagemap *pm;

	if (!npages || !run_pages || (run_pages & (run_pages - 1)))
		return -EINVAL;
	pm = calloc(1, sizeof(*pm));
	if (!pm)
		return -ENOMEM;
	pm->npages = npages;
	pm->run_pages = run_pages;
	pm->nruns = (npages + run_pages - 1) / run_pages;
	pm->ent_owned = !ent;
	pm->ent = ent ? ent : calloc(npages, sizeof(*pm->ent));
	pm->run_resident = calloc(pm->nruns, sizeof(*pm->run_resident));
	pm->run_ref = calloc(pm->nruns, sizeof(*pm->run_ref));
	pm->run_evicting = calloc(pm->nruns, sizeof(*pm->run_evicting));
	pm->run_shm = calloc(pm->nruns, sizeof(*pm->run_shm));
	pm->run_disk = calloc(pm->nruns, sizeof(*pm->run_disk));
	pm->run_seen = calloc(pm->nruns, sizeof(*pm->run_seen));
	if (!pm->ent || !pm->run_resident || !pm->run_ref || !pm->run_evicting || !pm->run_shm ||
	    !pm->run_disk || !pm->run_seen) {
		pagemap_destroy(pm);
		return -ENOMEM;
	}
	*out = pm;
	return 0;
}

/* Derives every per-run count and per-state total from the entries alone: the entries are
 * the only state that outlives the daemon, so everything else must follow from them. */
static void rebuild_derived(struct pagemap *pm)
{
	for (size_t p = 0; p < pm->npages; p++) {
		enum page_state st = pagemap_state(pm, p);
		size_t run = p / pm->run_pages;

		pm->counts[st]++;
		if (st == PS_RESIDENT)
			pm->run_resident[run]++;
		else if (st == PS_SHM)
			pm->run_shm[run]++;
		else if (st == PS_DISK)
			pm->run_disk[run]++;
		if (pagemap_flags(pm, p) & (PF_EVICTING | PF_ARMING))
			pm->run_evicting[run]++;
	}
}

size_t pagemap_reconcile(uint64_t *ent, size_t npages, const uint64_t *in_memfd)
{
	size_t changed = 0;

	for (size_t p = 0; p < npages; p++) {
		enum page_state st = (enum page_state)(ent[p] & ST_MASK), to = st;
		unsigned fl = (unsigned)((ent[p] & FL_MASK) >> FL_SHIFT);
		uint64_t keep;

		if ((in_memfd[p / 64] >> (p % 64)) & 1)
			to = PS_RESIDENT;
		else if (fl & PF_DISCARDED)
			to = PS_ZERO;
		else if (st == PS_RESIDENT)
			to = PS_ZERO;
		keep = (to == PS_SHM || to == PS_DISK) ? (ent[p] & ~(ST_MASK | FL_MASK)) : 0;
		if (to != st || fl) {
			ent[p] = keep | (uint64_t)to;
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

	/* run_evicting counts the pages in flight: being moved, or being armed. */
	bool was = old & (PF_EVICTING | PF_ARMING), is = flags & (PF_EVICTING | PF_ARMING);

	if (was && !is)
		pm->run_evicting[run]--;
	else if (!was && is)
		pm->run_evicting[run]++;
	pm->ent[page] = (pm->ent[page] & ~FL_MASK) | ((uint64_t)(flags & 0xf) << FL_SHIFT);
}

void pagemap_set(struct pagemap *pm, size_t page, enum page_state st, uint64_t slot)
{
	enum page_state old = pagemap_state(pm, page);
	size_t run = page / pm->run_pages;
	uint64_t keep_flags = pm->ent[page] & FL_MASK;

	uint32_t *per_run[PS_NSTATES] = {
	    [PS_RESIDENT] = pm->run_resident, [PS_SHM] = pm->run_shm, [PS_DISK] = pm->run_disk};

	if (st != PS_SHM && st != PS_DISK)
		slot = 0;
	pm->counts[old]--;
	pm->counts[st]++;
	if (per_run[old])
		per_run[old][run]--;
	if (per_run[st])
		per_run[st][run]++;
	pm->ent[page] = (slot << SLOT_SHIFT) | keep_flags | (uint64_t)st;
}

size_t pagemap_count(const struct pagemap *pm, enum page_state st)
{
	return pm->counts[st];
}

void pagemap_touch(struct pagemap *pm, size_t page)
{
	pm->run_ref[page / pm->run_pages] = 1;
	pm->run_seen[page / pm->run_pages] = pm->epoch;
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
	pm->run_seen[page / pm->run_pages] = pm->epoch;
}

uint32_t pagemap_run_seen(const struct pagemap *pm, size_t page)
{
	return pm->run_seen[page / pm->run_pages];
}

int pagemap_age_pick(struct pagemap *pm, size_t *first_page)
{
	for (int sweep = 0; sweep < 2; sweep++) {
		uint32_t oldest = UINT32_MAX;

		for (size_t step = 0; step < pm->nruns; step++) {
			size_t run = pm->hand;

			pm->hand = (pm->hand + 1) % pm->nruns;
			if (!pm->run_resident[run] || pm->run_evicting[run])
				continue;
			if (pm->run_seen[run] <= pm->age_cutoff) {
				*first_page = run * pm->run_pages;
				return 0;
			}
			if (pm->run_seen[run] < oldest)
				oldest = pm->run_seen[run];
		}
		if (oldest == UINT32_MAX)
			return -ENOENT;
		pm->age_cutoff = oldest;
	}
	return -ENOENT;
}

int pagemap_clock_pick(struct pagemap *pm, size_t *first_page)
{
	for (size_t step = 0; step < 2 * pm->nruns; step++) {
		size_t run = pm->hand;

		pm->hand = (pm->hand + 1) % pm->nruns;
		if (!pm->run_resident[run] || pm->run_evicting[run])
			continue;
		if (pm->run_ref[run]) {
			pm->run_ref[run] = 0;
			continue;
		}
		*first_page = run * pm->run_pages;
		return 0;
	}
	return -ENOENT;
}

int pagemap_demote_pick(struct pagemap *pm, size_t *first_page)
{
	for (size_t step = 0; step < pm->nruns; step++) {
		size_t run = pm->demote_hand;

		pm->demote_hand = (pm->demote_hand + 1) % pm->nruns;
		if (pm->run_shm[run] && !pm->run_evicting[run]) {
			*first_page = run * pm->run_pages;
			return 0;
		}
	}
	return -ENOENT;
}

int pagemap_hot_tiered_pick(const struct pagemap *pm, size_t *first_page)
{
	size_t best = SIZE_MAX;

	for (size_t run = 0; run < pm->nruns; run++) {
		if (!(pm->run_shm[run] || pm->run_disk[run]) || pm->run_evicting[run])
			continue;
		if (best == SIZE_MAX || pm->run_seen[run] > pm->run_seen[best])
			best = run;
	}
	if (best == SIZE_MAX)
		return -ENOENT;
	*first_page = best * pm->run_pages;
	return 0;
}

size_t pagemap_runs_with(const struct pagemap *pm, enum page_state st)
{
	const uint32_t *per_run = st == PS_RESIDENT ? pm->run_resident
				  : st == PS_SHM    ? pm->run_shm
				  : st == PS_DISK   ? pm->run_disk
						    : NULL;
	size_t n = 0;

	for (size_t r = 0; per_run && r < pm->nruns; r++)
		n += per_run[r] != 0;
	return n;
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
