/* evict: a VM's evictor. Keeps the VM's resident pages at or under its policy's resident_max
 * by moving the clock's victim runs into the shm tier, race-free against guest writes. */
#ifndef UFFD_EVICT_H
#define UFFD_EVICT_H

#include <stddef.h>

struct vm;

/* pthread entry; arg is the struct vm. Returns when vm->stopping is set. */
void *evict_thread_main(void *arg);

/* Evicts the run starting at first_page. Returns the number of pages moved out of guest RAM
 * (0 when none could be), -ENOSPC when the tier is full, or another -errno. Exposed for tests
 * and for draining on demand. */
int evict_run(struct vm *vm, size_t first_page);

#endif
