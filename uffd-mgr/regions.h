/* regions: the bounded-cost working-set sampler of the eBPF tracker, after DAMON's adaptive
 * regions (Park et al., "DAOS", and mm/damon in Linux).
 *
 * Guest RAM is cut into at most max regions of adjacent pages. Each interval, one resident
 * page per region is the region's sample: its page-table entry is dropped (armed), and
 * whether the BPF program saw it fault says whether the region was used in that interval.
 * A region whose sample was used counts all its resident pages in the working set; one whose
 * sample was not counts only the pages the BPF program saw fault there anyway (a page brought
 * in by a missing fault, an older sample touched at last). Regions adapt: one whose samples
 * disagree over the last intervals is split in two at a random point; neighbours whose
 * samples agree are merged, up to a size bound. So hot and cold stretches end up in regions
 * of their own, where one sample speaks for every page, and the few regions left mixed are
 * unbiased (a fresh random sample each interval) if noisy.
 *
 * Cost per interval: O(regions) work and at most one armed range per region, whatever the
 * guest size; and an armed page costs one minor fault only if it is used. Cheaper still: a
 * sample that was not used stays unmapped, so a cold region is watched for free; its sample
 * is only moved now and then (1 in REGIONS_ROTATE intervals), or when it stops being
 * armable. Counting a used region's resident pages costs O(its runs), which is work in
 * proportion to the working set; so does the hot() callback.
 *
 * Not thread-safe: the tracker thread owns it; the callbacks are called with whatever lock
 * the caller holds. */
#ifndef UFFD_REGIONS_H
#define UFFD_REGIONS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define REGIONS_DEFAULT_MAX 1000
#define REGIONS_ROTATE	    8 /* a cold region's sample moves once in this many intervals */
#define REGIONS_NO_PAGE	    SIZE_MAX

struct regions;

/* What the sampler asks of the page map. */
struct regions_ops {
	/* Page may be armed now: resident, nothing in flight. */
	bool (*armable)(void *ctx, size_t page);
	/* Resident pages in [first, first + n). */
	size_t (*resident)(void *ctx, size_t first, size_t n);
};

/* Covers npages pages with regions, at most max (at least 1); seed makes the random choices
 * repeatable. Returns 0, -EINVAL (npages or max 0) or -ENOMEM. */
int regions_create(size_t npages, unsigned max, uint64_t seed, struct regions **out);
void regions_destroy(struct regions *rg); /* NULL ok */

unsigned regions_count(const struct regions *rg);

/* Chooses this interval's samples. Writes the pages that must be armed now, in increasing
 * order, to arm[] (room for cap; regions_count() is always enough) and returns how many;
 * samples already unmapped are kept and need no arming. */
size_t regions_plan(struct regions *rg, const struct regions_ops *ops, void *ctx, size_t *arm,
		    size_t cap);

/* The arming of the pages regions_plan returned did not happen: their regions are not
 * observed this interval. */
void regions_arm_failed(struct regions *rg);

/* Ends the interval: bits (one per page, set when the page faulted in the interval) says
 * what was used. Returns the working-set estimate of the interval in pages; calls
 * hot(ctx, first, n) for each region found used (may be NULL). Then splits and merges. */
double regions_end(struct regions *rg, const uint64_t *bits, const struct regions_ops *ops,
		   void *ctx, void (*hot)(void *ctx, size_t first, size_t n));

/* Adds each region's pages to ages[bucket of its age] (wss_age_bucket: intervals since its
 * sample was last used; "never" for a region never seen used). ages has WSS_AGE_BUCKETS. */
void regions_ages(const struct regions *rg, uint64_t *ages);

/* For tests: the region holding page: *first, *n. */
void regions_find(const struct regions *rg, size_t page, size_t *first, size_t *n);

#endif
