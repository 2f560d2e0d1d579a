/* libuffd-shim.so: LD_PRELOADed into QEMU by uffd-qemu.
 *
 * It watches QEMU's mmap calls for the guest-RAM memfd (QEMU names it memory-backend-memfd
 * and maps it MAP_SHARED), and before that mmap returns it creates a userfaultfd in QEMU's
 * process, registers the mapping for MISSING and WP faults, and hands {uffd, memfd, address,
 * length, VM name, policy} to uffd-mgrd over the control socket. Only after the daemon says
 * it serves the region does QEMU go on, so no access can fault unserved.
 *
 * Discards: QEMU discards guest RAM (balloon, free page reporting) by punching a hole in the
 * memfd and then calling madvise(MADV_DONTNEED), which the daemon sees as UFFD_EVENT_REMOVE.
 * A punch on a page the daemon holds in a tier is invisible to it, so between the punch and
 * the REMOVE it could bring the page's old bytes back (a fault on a neighbour brings back the
 * whole run) and the discarded page would read stale data instead of zeros. The shim therefore
 * wraps fallocate: a punch in guest RAM is preceded by a MADV_DONTNEED of the same range, so
 * the daemon drops its tier copies before the hole exists, and no copy can land after.
 *
 * QEMU calls mmap64, which glibc aliases to mmap on 64-bit: both are wrapped. The real mmap is
 * the raw syscall, so no dlsym is needed before libc is ready. Without UFFD_MGR_SOCKET in the
 * environment the shim does nothing. Any failure stops QEMU with one line on stderr: the
 * guest has not run yet, so nothing is lost. */
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "uffd-mgr/proto.h"
#include "uffd-mgr/uffd.h"

#define GUEST_RAM_MEMFD "/memfd:memory-backend-memfd"

/* The shim's own state, one per QEMU process: the region registered and the connection that
 * keeps it registered. Mutable global state is unavoidable in an LD_PRELOAD shim. */
static struct {
	pthread_mutex_t lock;
	int uffd;
	int sock;
	int memfd;
	uint64_t addr, len, memfd_off;
	int arming; /* an arming thread runs */
} shim = {PTHREAD_MUTEX_INITIALIZER, -1, -1, -1, 0, 0, 0, 0};

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static void die(const char *fmt, ...)
{
	va_list ap;

	fputs("uffd-qemu: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	_exit(1);
}

static void *raw_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	long r = syscall(SYS_mmap, addr, len, prot, flags, fd, off);

	return (r < 0 && r > -4096) ? MAP_FAILED : (void *)r;
}

static int is_guest_ram(int fd)
{
	char link[64], target[PATH_MAX];
	ssize_t n;

	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	n = readlink(link, target, sizeof(target) - 1);
	if (n <= 0)
		return 0;
	target[n] = 0;
	return !strncmp(target, GUEST_RAM_MEMFD, strlen(GUEST_RAM_MEMFD));
}

/* The daemon has brought every page back: unregister, so QEMU's faults go to the kernel. */
static int release_region(void)
{
	int r;

	pthread_mutex_lock(&shim.lock);
	r = uffd_unregister(shim.uffd, shim.addr, shim.len);
	/* The unregister wakes the threads blocked in a fault; a wake of our own as well, since
	 * one thread was once seen still blocked after a release (kernel 6.18). */
	if (!r)
		uffd_wake(shim.uffd, shim.addr, shim.len);
	pthread_mutex_unlock(&shim.lock);
	proto_reply(shim.sock, r, "%s", r ? strerror(-r) : "released");
	if (!r)
		fprintf(stderr, "uffd-qemu: uffd-mgrd stopped and handed guest RAM back; QEMU runs "
				"on unmanaged\n");
	return r;
}

/* The tracker's arming (arm_thread): drops QEMU's page-table entries for the ranges (the pages stay
 * in the memfd), so the next access to each is a minor fault the tracker sees. Each madvise raises
 * a REMOVE that the daemon reads before the madvise returns; the daemon has flagged the pages so it
 * knows they are not discarded. Holds the lock so that a hole punch of QEMU's (announce_punch) does
 * not interleave. */
static void *arm_thread(void *arg)
{
	struct proto_arm *a = arg;
	struct proto_arm_done done = {0};
	uint64_t npages = shim.len / 4096;

	proto_hdr_init(&done.hdr, PROTO_ARM_DONE, sizeof(done));
	done.seq = a->seq;
	pthread_mutex_lock(&shim.lock);
	for (uint32_t i = 0; i < a->nranges; i++) {
		const struct proto_range *r = &a->range[i];

		if (r->first_page >= npages || r->npages > npages - r->first_page || !r->npages)
			continue;
		if (syscall(SYS_madvise, (void *)(uintptr_t)(shim.addr + r->first_page * 4096),
			    (size_t)(r->npages * 4096), MADV_DONTNEED) < 0) {
			if (!done.status)
				done.status = -errno;
			continue;
		}
		done.pages += r->npages;
	}
	pthread_mutex_unlock(&shim.lock);
	free(a);
	__atomic_store_n(&shim.arming, 0, __ATOMIC_RELEASE);
	proto_send(shim.sock, &done, sizeof(done), NULL, 0);
	return NULL;
}

/* Arms on a thread of its own: each madvise waits for the daemon to read its REMOVE, and the
 * watcher must stay free to notice a daemon that has gone. One arming at a time. */
static void arm_ranges(const struct proto_arm *a, size_t len)
{
	struct proto_arm_done done = {0};
	struct proto_arm *copy;
	pthread_t tid;

	proto_hdr_init(&done.hdr, PROTO_ARM_DONE, sizeof(done));
	done.seq = a->seq;
	if (len < sizeof(*a) || a->nranges > PROTO_ARM_MAX ||
	    len != sizeof(*a) + a->nranges * sizeof(a->range[0]))
		done.status = -EPROTO;
	else if (__atomic_exchange_n(&shim.arming, 1, __ATOMIC_ACQ_REL))
		done.status = -EBUSY;
	else if (!(copy = malloc(len)))
		done.status = -ENOMEM;
	else {
		memcpy(copy, a, len);
		if (pthread_create(&tid, NULL, arm_thread, copy) == 0) {
			pthread_detach(tid);
			return;
		}
		free(copy);
		done.status = -EAGAIN;
	}
	if (done.status != -EBUSY)
		__atomic_store_n(&shim.arming, 0, __ATOMIC_RELEASE);
	proto_send(shim.sock, &done, sizeof(done), NULL, 0);
}

/* Watches the daemon's end of the connection. A daemon that stops cleanly first releases the
 * region; one that vanishes without doing so took the tiered pages with it and nothing serves
 * the guest's faults any more, so QEMU stops loudly rather than hang or run on with wrong
 * memory. */
static void *watch_daemon(void *arg)
{
	static union {
		struct proto_hdr h;
		struct proto_arm arm;
		char raw[sizeof(struct proto_arm) + PROTO_ARM_MAX * sizeof(struct proto_range)];
	} msg; /* only this thread uses it */
	ssize_t n;

	(void)arg;
	for (;;) {
		n = proto_recv(shim.sock, &msg, sizeof(msg), NULL, NULL);
		if (n < 0 && n == -EINTR)
			continue;
		if (n <= 0)
			break;
		if (proto_hdr_check(&msg.h, (size_t)n))
			continue;
		if (msg.h.type == PROTO_ARM)
			arm_ranges(&msg.arm, (size_t)n);
		else if (msg.h.type == PROTO_RELEASE && release_region() == 0)
			return NULL;
	}
	die("uffd-mgrd closed the control connection; guest memory can no longer be served, "
	    "stopping QEMU (pid %d)",
	    getpid());
}

static void fill_request(struct proto_register *req, void *addr, size_t len, off_t off,
			 uint64_t features)
{
	const char *vm = getenv("UFFD_MGR_VM"), *policy = getenv("UFFD_MGR_POLICY");
	const char *qmp = getenv("UFFD_MGR_QMP");

	memset(req, 0, sizeof(*req));
	proto_hdr_init(&req->hdr, PROTO_REGISTER, sizeof(*req));
	req->host_addr = (uint64_t)(uintptr_t)addr;
	req->length = len;
	req->memfd_offset = (uint64_t)off;
	req->pid = getpid();
	req->uffd_features = features;
	snprintf(req->vm_name, sizeof(req->vm_name), "%s", vm && *vm ? vm : "vm");
	snprintf(req->block_name, sizeof(req->block_name), "memory-backend-memfd");
	snprintf(req->policy_path, sizeof(req->policy_path), "%s", policy ? policy : "");
	snprintf(req->qmp_path, sizeof(req->qmp_path), "%s", qmp ? qmp : "");
}

static void register_region(void *addr, size_t len, int memfd, off_t off, const char *sock_path)
{
	struct proto_register req;
	struct proto_reply rep;
	char err[256];
	uint64_t features;
	pthread_t tid;
	int fds[2], r, n = 0;
	ssize_t got;

	if (shim.uffd >= 0)
		die("a second guest-RAM memfd mapping (%zu MiB at %p): only one memory backend "
		    "per VM is supported",
		    len >> 20, addr);
	r = uffd_open(&shim.uffd, &features, err, sizeof(err));
	if (r)
		die("%s", err);
	r = uffd_register(shim.uffd, (uint64_t)(uintptr_t)addr, len);
	if (r)
		die("cannot register guest RAM with userfaultfd: %s%s", strerror(-r),
		    r == -EBUSY ? " (already registered by another userfaultfd)" : "");
	shim.sock = proto_connect(sock_path);
	if (shim.sock < 0)
		die("no uffd-mgrd answers at %s: %s", sock_path, strerror(-shim.sock));
	fill_request(&req, addr, len, off, features);
	fds[0] = shim.uffd;
	fds[1] = memfd;
	r = proto_send(shim.sock, &req, sizeof(req), fds, 2);
	if (r)
		die("cannot send the registration to uffd-mgrd: %s", strerror(-r));
	got = proto_recv(shim.sock, &rep, sizeof(rep), NULL, &n);
	if (got != (ssize_t)sizeof(rep) || proto_hdr_check(&rep.hdr, (size_t)got))
		die("uffd-mgrd gave no answer to the registration");
	rep.message[sizeof(rep.message) - 1] = 0;
	if (rep.status)
		die("uffd-mgrd refused guest RAM: %s", rep.message);
	if ((rep.flags & PROTO_REPLY_MINOR) &&
	    uffd_register_mode(shim.uffd, (uint64_t)(uintptr_t)addr, len, true))
		fprintf(stderr, "uffd-qemu: cannot register guest RAM for minor faults; the "
				"sampling tracker sees only missing faults\n");
	shim.addr = req.host_addr;
	shim.len = len;
	shim.memfd = memfd;
	shim.memfd_off = (uint64_t)off;
	if (getenv("UFFD_MGR_VERBOSE"))
		fprintf(stderr, "uffd-qemu: %s\n", rep.message);
	if (pthread_create(&tid, NULL, watch_daemon, NULL) == 0)
		pthread_detach(tid);
}

static void *shim_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	void *p = raw_mmap(addr, len, prot, flags, fd, off);
	const char *sock_path = getenv("UFFD_MGR_SOCKET");

	if (p == MAP_FAILED || fd < 0 || !(flags & MAP_SHARED) || !sock_path || !*sock_path)
		return p;
	if (!is_guest_ram(fd))
		return p;
	pthread_mutex_lock(&shim.lock);
	register_region(p, len, fd, off, sock_path);
	pthread_mutex_unlock(&shim.lock);
	return p;
}

void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	return shim_mmap(addr, len, prot, flags, fd, off);
}

void *mmap64(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	return shim_mmap(addr, len, prot, flags, fd, off);
}

/* Announces a punch in guest RAM to the daemon before it happens (see the top of the file).
 * The madvise returns only once the daemon has read the REMOVE it raises. */
static void announce_punch(int fd, int mode, off_t off, off_t len)
{
	uint64_t start, end;

	if (fd < 0 || fd != shim.memfd || !(mode & FALLOC_FL_PUNCH_HOLE) || off < 0 || len <= 0 ||
	    !is_guest_ram(fd))
		return;
	start = (uint64_t)off;
	end = start + (uint64_t)len;
	if (end <= shim.memfd_off || start >= shim.memfd_off + shim.len)
		return;
	if (start < shim.memfd_off)
		start = shim.memfd_off;
	if (end > shim.memfd_off + shim.len)
		end = shim.memfd_off + shim.len;
	start &= ~(uint64_t)4095;
	end = (end + 4095) & ~(uint64_t)4095;
	pthread_mutex_lock(&shim.lock);
	syscall(SYS_madvise, (void *)(uintptr_t)(shim.addr + start - shim.memfd_off),
		(size_t)(end - start), MADV_DONTNEED);
	pthread_mutex_unlock(&shim.lock);
}

static int shim_fallocate(int fd, int mode, off_t off, off_t len)
{
	long r;

	announce_punch(fd, mode, off, len);
	r = syscall(SYS_fallocate, fd, mode, off, len);
	return r < 0 ? -1 : 0; /* syscall() has set errno */
}

int fallocate(int fd, int mode, off_t off, off_t len)
{
	return shim_fallocate(fd, mode, off, len);
}

int fallocate64(int fd, int mode, off_t off, off_t len)
{
	return shim_fallocate(fd, mode, off, len);
}
