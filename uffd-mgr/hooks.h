/* hooks: fault injection for tests. Compiled in only with -DUFFD_MGR_TEST_HOOKS (the test
 * daemon build/tests/uffd-mgrd-hooks and the unit tests); in the product daemon every hook is
 * a constant false and none of this is in the binary.
 *
 * The environment drives them, read once at the first hook:
 *   UFFD_MGR_INJECT_ENOMEM="N"          every Nth UFFDIO_COPY/UFFDIO_ZEROPAGE fails with
 *                                       ENOMEM without reaching the kernel;
 *   UFFD_MGR_INJECT_ENOMEM="burst:N[:M]" the first N of every M of them fail (M: 1000);
 *   UFFD_MGR_INJECT_FAULT_EXIT="N"      the first fault thread of the process exits after
 *                                       serving N faults; "N:always": every fault thread;
 *   UFFD_MGR_INJECT_DISK="OP:N:ERR,..." disk tier I/O errors (disktier_set_injection);
 *   UFFD_MGR_INJECT_DISK_WRITE_DELAY_US="N" every disk-tier write, once the disk scheduler
 *                                       granted it, waits N µs (at most 1 s) before it starts:
 *                                       a slow disk, so that faults meet runs whose demotion
 *                                       write is in flight. */
#ifndef UFFD_HOOKS_H
#define UFFD_HOOKS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef UFFD_MGR_TEST_HOOKS

/* Whether this UFFDIO_COPY/UFFDIO_ZEROPAGE must fail with ENOMEM. Thread-safe. */
bool hooks_enomem(void);

/* Whether a fault thread that has served `served` faults must exit now. Thread-safe. */
bool hooks_fault_exit(uint64_t served);

/* Whether lifting write-protection (uffd_wp with protect false) must fail with ENOMEM; set
 * only by unit tests (hooks_set_unprotect_fail). Thread-safe. */
bool hooks_unprotect_fail(void);
void hooks_set_unprotect_fail(bool on);

struct vm;

/* Called by the evictor once it has copied a run out and before it records and punches it; a unit test sets the function (NULL: none) to look at the guest memfd in between. */
void hooks_evict_copied(struct vm *vm, size_t first);
void hooks_set_evict_copied(void (*fn)(struct vm *vm, size_t first));

/* The disk tier's injection spec from the environment, or NULL. */
const char *hooks_disk_injection(void);

/* Microseconds each disk-tier write waits before it starts; 0 = none. */
uint32_t hooks_disk_write_delay_us(void);

/* Replaces the environment's settings (same syntax; NULL or "" = off) and restarts the
 * counters, for unit tests. Returns 0, or -EINVAL (and changes nothing) on a bad spec. */
int hooks_set(const char *enomem, const char *fault_exit);

#else

static inline bool hooks_enomem(void)
{
	return false;
}

static inline bool hooks_fault_exit(uint64_t served)
{
	(void)served;
	return false;
}

static inline bool hooks_unprotect_fail(void)
{
	return false;
}

struct vm;

static inline void hooks_evict_copied(struct vm *vm, size_t first)
{
	(void)vm;
	(void)first;
}

static inline const char *hooks_disk_injection(void)
{
	return NULL;
}

static inline uint32_t hooks_disk_write_delay_us(void)
{
	return 0;
}

#endif
#endif
