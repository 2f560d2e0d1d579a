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

#endif
