/* wss: working-set bookkeeping for one VM: when each page was last seen accessed, and the
 * estimates built from that.
 *
 * Time is counted in epochs, one per tracker interval (epoch 0 = never seen). A page is
 * "seen" in an epoch when the tracker observed an access to it then: the BPF bitmap, a
 * uffd minor fault on a sampled page, or a missing fault that brought it in.
 *
 * Three ways to estimate:
 *  - exact (every resident page observed each interval): the working set over a window of
 *    W epochs is the number of pages seen in the last W epochs, a union;
 *  - sampled (a random sample observed each interval): for the epoch just ended,
 *    estimate = accessed/observed of the sample x the resident population, plus the pages
 *    seen outside the sample (brought in by missing faults). A window of W epochs averages
 *    the last W estimates: a sample cannot tell a union from a mean, and for a steady working
 *    set the two agree;
 *  - regions (regions.h): one sample per adaptive region; the epoch's estimate is pushed here
 *    and windows are means, as for sampled.
 *
 * Not thread-safe: the VM's lock serialises. */
#ifndef UFFD_WSS_H
#define UFFD_WSS_H

#include <stddef.h>
#include <stdint.h>

#define WSS_HISTORY	64 /* epochs of sampled estimates kept: the longest window */
#define WSS_AGE_BUCKETS 9  /* ages 0, 1, 2-3, 4-7, 8-15, 16-31, 32-63, 64+, never */

struct wss;

/* Returns 0 or -ENOMEM. */
int wss_create(size_t npages, struct wss **out);
void wss_destroy(struct wss *w); /* NULL ok */

/* Marks page seen in epoch. */
void wss_mark(struct wss *w, size_t page, uint32_t epoch);

/* Marks every page whose bit is set in bits (npages bits) as seen in epoch; returns how many. */
size_t wss_mark_bits(struct wss *w, const uint64_t *bits, uint32_t epoch);

uint32_t wss_last_seen(const struct wss *w, size_t page);

/* Pages seen in epoch since or later. O(npages). */
size_t wss_seen_since(const struct wss *w, uint32_t since);

/* Pages of [first, first + n) seen in epoch. */
size_t wss_seen_in(const struct wss *w, size_t first, size_t n, uint32_t epoch);

/* Ends a sampled epoch: of observed sampled pages, accessed were seen; population is the
 * resident pages the sample stands for; outside is the pages seen that were not in the
 * sample. Records and returns the estimate in pages. */
double wss_sample_end(struct wss *w, size_t observed, size_t accessed, size_t population,
		      size_t outside);

/* Records the estimate of an epoch that ended, made elsewhere (the regions sampler). */
void wss_push_estimate(struct wss *w, double est);

/* Mean of the last window (1..WSS_HISTORY) sampled estimates; 0 before the first. */
double wss_sample_window(const struct wss *w, unsigned window);

/* The age bucket (0..WSS_AGE_BUCKETS-1) of a page last seen in epoch `seen` at epoch now. */
unsigned wss_age_bucket(uint32_t seen, uint32_t now);

#endif
