/* uffd: thin, errno-returning wrappers around the userfaultfd ioctls.
 *
 * Every call returns 0 or a negative errno. -EAGAIN means a non-cooperative event (REMOVE)
 * is queued and must be read first; -EEXIST from copy/zeropage means the page is already
 * there (serve by waking); -ESRCH means the guest's address space is gone; -ENOMEM is memory
 * pressure on the host (the fault waits and is retried, it is never dropped). */
#ifndef UFFD_UFFD_H
#define UFFD_UFFD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The features uffd-mgr needs on shmem, in the order they are checked. */
#define UFFD_NEEDED_FEATURES                                                                       \
	(UFFD_FEATURE_MISSING_SHMEM | UFFD_FEATURE_WP_HUGETLBFS_SHMEM |                            \
	 UFFD_FEATURE_PAGEFAULT_FLAG_WP | UFFD_FEATURE_EVENT_REMOVE)

/* Asked for when the kernel has them: minor faults on shmem serve the sampling tracker; the
 * faulting thread's id lets the fault thread follow the vCPU it serves (fault.c, placement). */
#define UFFD_OPTIONAL_FEATURES (UFFD_FEATURE_MINOR_SHMEM | UFFD_FEATURE_THREAD_ID)

/* Opens a userfaultfd (O_CLOEXEC|O_NONBLOCK; /dev/userfaultfd first, then the syscall) and
 * negotiates UFFD_NEEDED_FEATURES, plus
 * the UFFD_OPTIONAL_FEATURES the kernel has; *features is what was granted. On failure err names
 * the missing piece in one line. */
int uffd_open(int *uffd, uint64_t *features, char *err, size_t errlen);

/* The same with a userfaultfd made from devfd, an open /dev/userfaultfd (one uffd-mgrd
 * passed: PROTO_UFFD_DEV), for a process that may not open the device itself. */
int uffd_open_dev(int devfd, int *uffd, uint64_t *features, char *err, size_t errlen);

/* Registers [addr, addr+len) for MISSING and WP faults. */
int uffd_register(int uffd, uint64_t addr, uint64_t len);
int uffd_unregister(int uffd, uint64_t addr, uint64_t len);

/* As uffd_register, and for MINOR faults too when minor is set (needs
 * UFFD_FEATURE_MINOR_SHMEM); registering a range again changes its modes. */
int uffd_register_mode(int uffd, uint64_t addr, uint64_t len, bool minor);

/* Maps the pages already in the page cache over [addr, addr+len) after minor faults, and
 * wakes. -EEXIST: already mapped; -EFAULT: a page is no longer in the page cache. */
int uffd_continue(int uffd, uint64_t addr, uint64_t len);

/* Installs zero pages over [dst, dst+len), waking the faulting threads. */
int uffd_zeropage(int uffd, uint64_t dst, uint64_t len);

/* Copies len bytes from src (this process) to dst (the guest) and wakes. *copied is the
 * progress made, also on failure (a short copy is partial progress, not an error). */
int uffd_copy(int uffd, uint64_t dst, const void *src, uint64_t len, uint64_t *copied);

/* As uffd_zeropage and uffd_copy, saying how far they got and waking only when wake is set
 * (a batch wakes once, at its end). *done is the bytes installed, also on failure; a short
 * range (a page already present stopped it) is -EAGAIN with *done < len, and -EEXIST when
 * the first page was present. */
int uffd_zeropage_range(int uffd, uint64_t dst, uint64_t len, bool wake, uint64_t *done);
int uffd_copy_range(int uffd, uint64_t dst, const void *src, uint64_t len, bool wake,
		    uint64_t *done);

/* Sets or clears write protection on [addr, addr+len); wake applies when clearing. */
int uffd_wp(int uffd, uint64_t addr, uint64_t len, bool protect, bool wake);

int uffd_wake(int uffd, uint64_t addr, uint64_t len);

#endif
