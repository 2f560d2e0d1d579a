/* zshm: one VM's moves through the compressed shm tier ([shm] compress; the store itself is
 * shmswap/zpool.h). The evictor stores a run's pages as a blob, faults (and prefetch, and
 * release) bring a blob back whole, discards and commits drop a page's claim on a blob, the
 * demoter unpacks pages for the disk tier, and an adopting daemon claims the blobs the page
 * entries name. The entries alone say which pages a blob holds (pagemap.h, PS_ZSHM): a blob is
 * freed once none of its run's entries names it, so a daemon killed at any instant leaves
 * every blob either named (kept) or not (freed at adoption). */
#ifndef UFFD_ZSHM_H
#define UFFD_ZSHM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct vm;

/* The evictor, without the lock: stores the pages sel[i] of a run of n pages read into src
 * (each resident, non-zero and write-protected) as one blob of up to 64 KiB of them, or several (a
 * larger run, or no room in the pool for one), gathering them through stage (run_size bytes). Sets
 * ref[i] (the packed zpool reference for pagemap_set) and stored[i] = 1 for each page stored.
 * Returns 0, or -ENOSPC when the pool filled before every page was stored (the others keep
 * stored[i] = 0). */
int zshm_store(struct vm *vm, const uint8_t *src, size_t n, const uint8_t *sel, uint8_t *stored,
	       uint64_t *ref, uint8_t *stage);

/* Lock held: page's entry has just stopped naming the blob of ref (a packed reference): frees
 * the blob if no entry of page's run names it any more. Cannot fail. */
void zshm_put(struct vm *vm, size_t page, uint64_t ref);

/* Lock held: brings back the blob holding page (PS_ZSHM, not in flight), unpacked into bounce
 * (run_size bytes): page first (its copy wakes the vCPU), then one UFFDIO_COPY per span of the
 * blob's pages that still name it; the blob is freed once none does. demand: a fault (counted as
 * one), else prefetch or release. Returns 0, -EAGAIN after partial progress (serve again), -EIO
 * when the blob is damaged (the VM is marked failed, with the page in its reason), or -errno from
 * UFFDIO_COPY. */
int zshm_serve(struct vm *vm, void *bounce, size_t page, bool demand);

/* The demoter, lock held: copies the 4 KiB of the page whose reference is ref into dst,
 * unpacking its blob into scratch (run_size bytes) unless *cached says scratch holds it already
 * (*cached: 1 + the grain of the blob in scratch; 0: none). Returns 0 or -EUCLEAN (damaged). */
int zshm_copy_page(struct vm *vm, uint64_t ref, void *dst, void *scratch, uint64_t *cached);

/* Adoption, before the threads start: claims every blob the entries name, once per blob,
 * checking that each is whole and that the pages naming it agree. Returns 0, or -EUCLEAN with
 * *bad_page set to the first entry refused. */
int zshm_claim_all(struct vm *vm, size_t *bad_page);

#endif
