/* uffd: see uffd.h. */
#include "uffd-mgr/uffd.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "uffd-mgr/hooks.h"

#ifndef USERFAULTFD_IOC_NEW
#define USERFAULTFD_IOC_NEW _IO(0xAA, 0x00)
#endif

static const struct {
	uint64_t bit;
	const char *name;
	const char *why;
} needed[] = {
    {UFFD_FEATURE_MISSING_SHMEM, "UFFD_FEATURE_MISSING_SHMEM", "missing faults on shmem"},
    {UFFD_FEATURE_WP_HUGETLBFS_SHMEM, "UFFD_FEATURE_WP_HUGETLBFS_SHMEM",
     "write-protect on shmem (Linux 5.19+), needed for race-free eviction"},
    {UFFD_FEATURE_PAGEFAULT_FLAG_WP, "UFFD_FEATURE_PAGEFAULT_FLAG_WP", "write-protect faults"},
    {UFFD_FEATURE_EVENT_REMOVE, "UFFD_FEATURE_EVENT_REMOVE", "discard events"},
};

/* /dev/userfaultfd works for root even when vm.unprivileged_userfaultfd is 0 and needs no
 * UFFD_USER_MODE_ONLY; the syscall is the fallback on kernels without the device. */
/* A new userfaultfd from devfd (an open /dev/userfaultfd), or when devfd is -1 from the
 * device if we may open it, else from the system call. */
static int uffd_new(int devfd)
{
	int dev = devfd >= 0 ? devfd : open("/dev/userfaultfd", O_RDWR | O_CLOEXEC), fd;

	if (dev >= 0) {
		fd = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
		if (dev != devfd)
			close(dev);
		if (fd >= 0 || devfd >= 0)
			return fd < 0 ? -errno : fd;
	}
	fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	return fd < 0 ? -errno : fd;
}

/* What the kernel offers: UFFDIO_API with no features asked answers with all of them. */
static uint64_t uffd_available(int devfd)
{
	struct uffdio_api probe = {.api = UFFD_API};
	int pfd = uffd_new(devfd);
	uint64_t have = 0;

	if (pfd >= 0 && ioctl(pfd, UFFDIO_API, &probe) == 0)
		have = probe.features;
	if (pfd >= 0)
		close(pfd);
	return have;
}

int uffd_open(int *out, uint64_t *features, char *err, size_t errlen)
{
	return uffd_open_dev(-1, out, features, err, errlen);
}

int uffd_open_dev(int devfd, int *out, uint64_t *features, char *err, size_t errlen)
{
	uint64_t have = uffd_available(devfd);
	struct uffdio_api api = {
	    .api = UFFD_API, .features = UFFD_NEEDED_FEATURES | (have & UFFD_OPTIONAL_FEATURES)};
	int fd = uffd_new(devfd);

	if (fd < 0) {
		snprintf(err, errlen,
			 "cannot create a userfaultfd: %s (needs root or "
			 "vm.unprivileged_userfaultfd=1)",
			 strerror(-fd));
		return fd;
	}
	if (ioctl(fd, UFFDIO_API, &api) < 0) {
		int e = -errno;

		snprintf(err, errlen, "UFFDIO_API failed: %s", strerror(-e));
		/* The kernel refuses the whole request: name the first feature it lacks. */
		for (size_t i = 0; i < sizeof(needed) / sizeof(needed[0]); i++) {
			if (!(have & needed[i].bit)) {
				snprintf(err, errlen, "kernel lacks %s (%s)", needed[i].name,
					 needed[i].why);
				break;
			}
		}
		close(fd);
		return e;
	}
	*out = fd;
	if (features)
		*features = api.features;
	return 0;
}

static int uffd_ioctl(int uffd, unsigned long req, void *arg)
{
	return ioctl(uffd, req, arg) < 0 ? -errno : 0;
}

int uffd_register(int uffd, uint64_t addr, uint64_t len)
{
	return uffd_register_mode(uffd, addr, len, false);
}

int uffd_register_mode(int uffd, uint64_t addr, uint64_t len, bool minor)
{
	struct uffdio_register r = {
	    .range = {.start = addr, .len = len},
	    .mode = UFFDIO_REGISTER_MODE_MISSING | UFFDIO_REGISTER_MODE_WP |
		    (minor ? UFFDIO_REGISTER_MODE_MINOR : 0),
	};

	return uffd_ioctl(uffd, UFFDIO_REGISTER, &r);
}

int uffd_continue(int uffd, uint64_t addr, uint64_t len)
{
	struct uffdio_continue c = {.range = {.start = addr, .len = len}};
	int ret = uffd_ioctl(uffd, UFFDIO_CONTINUE, &c);

	if (ret == 0 && c.mapped != (int64_t)len)
		ret = -EAGAIN;
	return ret;
}

int uffd_unregister(int uffd, uint64_t addr, uint64_t len)
{
	struct uffdio_range r = {.start = addr, .len = len};

	return uffd_ioctl(uffd, UFFDIO_UNREGISTER, &r);
}

int uffd_zeropage(int uffd, uint64_t dst, uint64_t len)
{
	struct uffdio_zeropage z = {.range = {.start = dst, .len = len}};

	if (hooks_enomem())
		return -ENOMEM;
	return uffd_ioctl(uffd, UFFDIO_ZEROPAGE, &z);
}

int uffd_copy(int uffd, uint64_t dst, const void *src, uint64_t len, uint64_t *copied)
{
	struct uffdio_copy c = {.dst = dst, .src = (uint64_t)(uintptr_t)src, .len = len};
	int ret;

	if (hooks_enomem()) {
		*copied = 0;
		return -ENOMEM;
	}
	ret = uffd_ioctl(uffd, UFFDIO_COPY, &c);

	/* .copy holds bytes copied, or a negative errno when nothing was. */
	*copied = c.copy > 0 ? (uint64_t)c.copy : 0;
	if (ret == 0 && *copied != len)
		ret = -EAGAIN;
	return ret;
}

int uffd_zeropage_range(int uffd, uint64_t dst, uint64_t len, bool wake, uint64_t *done)
{
	struct uffdio_zeropage z = {.range = {.start = dst, .len = len},
				    .mode = wake ? 0 : UFFDIO_ZEROPAGE_MODE_DONTWAKE};
	int ret;

	*done = 0;
	if (hooks_enomem())
		return -ENOMEM;
	ret = uffd_ioctl(uffd, UFFDIO_ZEROPAGE, &z);
	*done = z.zeropage > 0 ? (uint64_t)z.zeropage : 0;
	if (ret == 0 && *done != len)
		ret = -EAGAIN;
	return ret;
}

int uffd_copy_range(int uffd, uint64_t dst, const void *src, uint64_t len, bool wake,
		    uint64_t *done)
{
	struct uffdio_copy c = {.dst = dst, .src = (uint64_t)(uintptr_t)src, .len = len,
				.mode = wake ? 0 : UFFDIO_COPY_MODE_DONTWAKE};
	int ret;

	*done = 0;
	if (hooks_enomem())
		return -ENOMEM;
	ret = uffd_ioctl(uffd, UFFDIO_COPY, &c);
	*done = c.copy > 0 ? (uint64_t)c.copy : 0;
	if (ret == 0 && *done != len)
		ret = -EAGAIN;
	return ret;
}

int uffd_wp(int uffd, uint64_t addr, uint64_t len, bool protect, bool wake)
{
	struct uffdio_writeprotect w = {
	    .range = {.start = addr, .len = len},
	    .mode = protect ? UFFDIO_WRITEPROTECT_MODE_WP
			    : (wake ? 0 : UFFDIO_WRITEPROTECT_MODE_DONTWAKE),
	};

	if (!protect && hooks_unprotect_fail())
		return -ENOMEM;
	return uffd_ioctl(uffd, UFFDIO_WRITEPROTECT, &w);
}

int uffd_wake(int uffd, uint64_t addr, uint64_t len)
{
	struct uffdio_range r = {.start = addr, .len = len};

	return uffd_ioctl(uffd, UFFDIO_WAKE, &r);
}
