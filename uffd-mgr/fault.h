/* fault: a VM's fault thread. Reads the VM's userfaultfd, applies discards, serves missing
 * and write-protect faults from the page map, parks faults on pages being evicted. */
#ifndef UFFD_FAULT_H
#define UFFD_FAULT_H

#include <stddef.h>
#include <stdint.h>

#include "shmswap/disktier.h"

/* pthread entry; arg is the struct vm. Returns when vm->stopping is set or the guest's
 * address space is gone. */
void *fault_thread_main(void *arg);

struct vm;
struct disktier_io;

/* Brings the run holding page back into guest RAM if its home is a tier (as a fault would).
 * Returns 0 (also when there was nothing to do), -EAGAIN to retry once the fault thread has
 * read a pending REMOVE, -EBUSY while it is being evicted, or another -errno. */
int fault_bring_back(struct vm *vm, struct disktier_io *io, void *bounce, size_t page);

/* Prefetch from the disk tier in one deep queue: runs are added (their shm pages brought back
 * at once, their disk spans flagged in flight and laid out in a stage at their guest offsets),
 * then read together and installed. */
#define FAULT_BATCH_SEGS 256
struct disk_batch {
	uint8_t *stage;	   /* the ring's registered buffer */
	size_t stage_pages;
	size_t used;	   /* stage pages taken by the runs added */
	size_t demand_page; /* the fault's page (its span counts as the fault's), or SIZE_MAX */
	unsigned nsegs;
	struct disktier_seg segs[FAULT_BATCH_SEGS];
	size_t first[FAULT_BATCH_SEGS]; /* each span's first page */
};

/* See fault.c. Lock held for add_run (and, outside the fault thread, event_lock before it:
 * add_run installs shm pages; vm.h), not for read. */
int fault_batch_add_run(struct vm *vm, struct disk_batch *b, size_t first);
int fault_batch_read(struct vm *vm, struct disktier_io *io, struct disk_batch *b);

/* Brings back, ahead of faults, the shm pages (PS_SHM only) of the hottest tiered run and of
 * the runs of the same age beside it, up to max_pages in all: each span of adjacent slots with
 * UFFDIO_COPY calls that wake nobody, and one wake at the end. Compressed and disk pages are
 * left to the disk batch above. Pages brought back are flagged PF_PREFETCHED. Never writes
 * over a page the guest has, nor brings back one discarded meanwhile. Returns the pages
 * brought back, 0 when none could be (in flight, none in shm, or a discard to read first),
 * -ENOENT when nothing is tiered, or another -errno. */
long fault_prefetch_batch(struct vm *vm, size_t max_pages);

#endif
