/* gmem: what the bench programs share. A stand-in for guest RAM that the shim registers with
 * uffd-mgrd exactly as it does QEMU's (or plain memory only the kernel serves, for the
 * baselines), residency as the kernel reports it, CPU pinning, timing and percentiles.
 *
 * Not thread-safe: each bench program is one thread, so that every access it times is one
 * fault of one thread. */
#ifndef BENCH_GMEM_H
#define BENCH_GMEM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define GMEM_PAGE 4096u

struct gmem {
	uint8_t *base;
	size_t npages;
	int fd; /* the guest-RAM memfd; -1 for private anonymous memory */
};

/* Maps bytes (a multiple of 4 KiB) of guest RAM. anon false: a memfd named as QEMU names its
 * RAM, mapped MAP_SHARED, so that with LD_PRELOAD=libuffd-shim.so uffd-mgrd serves every
 * fault on it from the moment mmap returns. anon true: MAP_PRIVATE|MAP_ANONYMOUS, served by
 * the kernel alone (first-touch and kernel-swap baselines). Returns 0 or -errno. */
int gmem_map(struct gmem *g, size_t bytes, bool anon);

/* Unmaps and closes. Accepts a gmem that was never mapped. */
void gmem_unmap(struct gmem *g);

/* Writes page's pattern over the whole page. The pattern is never all zero: the evictor drops
 * zero pages instead of storing them, and they would come back as zero-page faults. */
void gmem_fill_page(struct gmem *g, size_t page);

/* Whether the 4 KiB at p hold page's pattern (first and last word): a cheap check that a
 * page brought back is the one that left. */
bool gmem_check_page(const uint8_t *p, size_t page);

/* Fills vec (npages bytes) with 1 for each page present in memory, as mincore(2) says, and
 * returns how many are. A page the daemon evicted is a hole in the memfd; an anonymous page
 * the kernel swapped out is not in core: both count as absent. Never faults. */
size_t gmem_resident(struct gmem *g, uint8_t *vec);

/* Waits (polling every 20 ms) until at most max_pages are resident and the count has not
 * moved for 100 ms: the evictor has finished its round. Returns 0, or -ETIMEDOUT after
 * timeout_s seconds. */
int gmem_settle(struct gmem *g, size_t max_pages, double timeout_s);

/* Discards up to want pages that vec marks resident, as QEMU does for a balloon (punch the
 * memfd, then MADV_DONTNEED; for anonymous memory MADV_DONTNEED alone). It frees room under
 * the resident limit so that pages brought back afterwards are not paid for with evictions.
 * Returns the pages discarded. */
size_t gmem_discard(struct gmem *g, const uint8_t *vec, size_t want);

/* Pins the calling thread to cpu; cpu < 0 leaves it alone. Returns 0 or -errno. */
int gmem_pin(int cpu);

uint64_t gmem_now_ns(void);

/* Shuffles a[0..n) with a seeded generator: the same seed gives the same order in every run. */
void gmem_shuffle(size_t *a, size_t n, uint64_t seed);

/* Fills a[0..n) with 0..n-1. */
void gmem_iota(size_t *a, size_t n);

/* The pct-th percentile (0..100) of v[0..n), nearest rank. Sorts v. 0 for n == 0. */
double gmem_pct(double *v, size_t n, double pct);

/* Mean of v[0..n); 0 for n == 0. */
double gmem_mean(const double *v, size_t n);

/* Hand-shake with the bench script: creates dir/ready, then waits until dir/go exists (the
 * script measures a baseline meanwhile, e.g. fio on the disk tier's file while it holds this
 * guest's pages). Does nothing when dir is NULL. Returns 0, -ETIMEDOUT after 5 minutes
 * without go, or -errno. */
int gmem_sync(const char *dir);

#endif
