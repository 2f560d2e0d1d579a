/* fault: a VM's fault thread. Reads the VM's userfaultfd, applies discards, serves missing
 * and write-protect faults from the page map, parks faults on pages being evicted. */
#ifndef UFFD_FAULT_H
#define UFFD_FAULT_H

#include <stddef.h>

/* pthread entry; arg is the struct vm. Returns when vm->stopping is set or the guest's
 * address space is gone. */
void *fault_thread_main(void *arg);

struct vm;
struct disktier_io;

/* Brings the run holding page back into guest RAM if its home is a tier (as a fault would).
 * Returns 0 (also when there was nothing to do), -EAGAIN to retry once the fault thread has
 * read a pending REMOVE, -EBUSY while it is being evicted, or another -errno. */
int fault_bring_back(struct vm *vm, struct disktier_io *io, void *bounce, size_t page);

/* Brings back, ahead of faults, the tiered pages of the hottest tiered run and of the runs of
 * the same age beside it, up to max_pages in all: shm spans with UFFDIO_COPY calls that wake
 * nobody and one wake at the end, disk spans one read each through io and bounce (the
 * caller's ring and run-sized buffer). Pages brought back are flagged PF_PREFETCHED. Never
 * writes over a page the guest has, nor brings back one discarded meanwhile. Returns the
 * pages brought back, 0 when none could be (in flight, or a discard to read first), -ENOENT
 * when nothing is tiered, or another -errno. */
long fault_prefetch_batch(struct vm *vm, struct disktier_io *io, void *bounce, size_t max_pages);

#endif
