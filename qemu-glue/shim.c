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
 * A daemon that goes away (crash, kill -9, upgrade) does not stop QEMU. The shim keeps, besides
 * the uffd and the guest memfd, the descriptors the daemon's reply handed it (the VM's state
 * memfd, its shm tier, its swap file): every page's home and contents outlive the daemon.
 * Meanwhile vCPUs that fault wait in the kernel, as for a slow fault. The shim reconnects,
 * with a short backoff, and resumes: the registration again, marked PROTO_REG_RESUME, with
 * every descriptor, and the new daemon adopts the VM. When uffd-qemu started the daemon
 * (UFFD_MGR_DAEMON), a shim that finds none after RESTART_AFTER_MS starts one again.
 *
 * QEMU calls mmap64, which glibc aliases to mmap on 64-bit: both are wrapped. The real mmap is
 * the raw syscall, so no dlsym is needed before libc is ready. Without UFFD_MGR_SOCKET in the
 * environment the shim does nothing. A failure to register stops QEMU with one line on
 * stderr: the guest has not run yet, so nothing is lost. */
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "uffd-mgr/proto.h"
#include "uffd-mgr/uffd.h"

#define GUEST_RAM_MEMFD	 "/memfd:memory-backend-memfd"
#define BACKOFF_MAX_MS	 20   /* between reconnection attempts: a connect is cheap */
#define RESTART_AFTER_MS 500  /* no daemon this long: start one (embedded mode) */
#define RESUME_WAIT_MS	 60000 /* adoption of a large guest walks its whole state */

/* One guest-RAM memfd mapping registered with the daemon (QEMU has one per memory backend:
 * several in a NUMA guest), the connection that keeps it registered, and what a resume
 * needs. Each has its own userfaultfd and connection, so each is resumed on its own. */
struct region {
	pthread_mutex_t lock;
	int uffd;
	int sock;
	int memfd;
	uint64_t addr, len, memfd_off;
	int arming;	/* an arming thread runs */
	int arm_abort; /* its daemon has gone: leave the rest of the ranges */
	struct proto_register req; /* as first sent; a resume sends it again */
	int keep[3];		   /* the daemon's reply: state, shm tier[, swap file] */
	int nkeep;
	int resumed_arming; /* the last resume said an arming was running */
};

#define REGIONS_MAX 16

/* The shim's own state, one per QEMU process. Mutable global state is unavoidable in an
 * LD_PRELOAD shim. A region, once published (n), is never moved or freed. */
static struct {
	pthread_mutex_t lock; /* registrations */
	struct region rg[REGIONS_MAX];
	int n;
} shim = {.lock = PTHREAD_MUTEX_INITIALIZER};

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
static int release_region(struct region *rg)
{
	int r;

	pthread_mutex_lock(&rg->lock);
	r = uffd_unregister(rg->uffd, rg->addr, rg->len);
	/* The unregister wakes the threads blocked in a fault; a wake of our own as well, since
	 * one thread was once seen still blocked after a release (kernel 6.18). */
	if (!r)
		uffd_wake(rg->uffd, rg->addr, rg->len);
	pthread_mutex_unlock(&rg->lock);
	proto_reply(rg->sock, r, "%s", r ? strerror(-r) : "released");
	if (!r)
		fprintf(stderr, "uffd-qemu: uffd-mgrd stopped and handed guest RAM back; QEMU runs "
				"on unmanaged\n");
	return r;
}

static uint64_t now_ns(void);

/* Between two ranges of an arming, the daemon's faults get a window at least as long as the
 * last madvise held them up (see arm_thread), up to this. */
#define ARM_PACE_MAX_NS 200000ull /* a fault retries an EAGAIN within ~100 µs */

/* The tracker's arming (arm_thread): drops QEMU's page-table entries for the ranges (the pages stay
 * in the memfd), so the next access to each is a minor fault the tracker sees. Each madvise raises
 * a REMOVE that the daemon reads before the madvise returns; the daemon has flagged the pages so it
 * knows they are not discarded. Each madvise holds the lock so that a hole punch of QEMU's
 * (announce_punch) does not interleave with it.
 *
 * From a madvise's REMOVE until the madvise has woken up, every uffd ioctl of the daemon fails
 * with EAGAIN; back to back, a long arming would starve its faults (an EAGAIN storm). So after
 * each range the thread pauses as long as that madvise took (at most ARM_PACE_MAX_NS): the
 * arming takes at most half of the time, and a waiting fault is served in the gap. */
struct arm_job {
	struct region *rg;
	struct proto_arm a; /* with its ranges after it */
};

static void *arm_thread(void *arg)
{
	struct arm_job *job = arg;
	struct region *rg = job->rg;
	struct proto_arm *a = &job->a;
	struct proto_arm_done done = {0};
	uint64_t npages = rg->len / 4096, t0, took;

	proto_hdr_init(&done.hdr, PROTO_ARM_DONE, sizeof(done));
	done.seq = a->seq;
	for (uint32_t i = 0; i < a->nranges; i++) {
		const struct proto_range *r = &a->range[i];
		int rc;

		/* Each madvise waits for a daemon to read its REMOVE, and until it returns every
		 * uffd ioctl fails with EAGAIN: an arming of thousands of ranges would hold up the
		 * faults of the daemon that adopts the VM. Its answer is lost anyway. */
		if (__atomic_load_n(&rg->arm_abort, __ATOMIC_ACQUIRE))
			break;
		if (r->first_page >= npages || r->npages > npages - r->first_page || !r->npages)
			continue;
		t0 = now_ns();
		pthread_mutex_lock(&rg->lock);
		rc = (int)syscall(SYS_madvise, (void *)(uintptr_t)(rg->addr + r->first_page * 4096),
				  (size_t)(r->npages * 4096), MADV_DONTNEED);
		if (rc < 0 && !done.status)
			done.status = -errno;
		pthread_mutex_unlock(&rg->lock);
		if (rc == 0)
			done.pages += r->npages;
		took = now_ns() - t0;
		if (i + 1 < a->nranges) {
			struct timespec gap = {0, (long)(took < ARM_PACE_MAX_NS ? took
									: ARM_PACE_MAX_NS)};

			nanosleep(&gap, NULL);
		}
	}
	free(job);
	__atomic_store_n(&rg->arming, 0, __ATOMIC_RELEASE);
	proto_send(rg->sock, &done, sizeof(done), NULL, 0);
	return NULL;
}

/* Arms on a thread of its own: each madvise waits for the daemon to read its REMOVE, and the
 * watcher must stay free to notice a daemon that has gone. One arming at a time. */
static void arm_ranges(struct region *rg, const struct proto_arm *a, size_t len)
{
	struct proto_arm_done done = {0};
	struct arm_job *copy;
	pthread_t tid;

	proto_hdr_init(&done.hdr, PROTO_ARM_DONE, sizeof(done));
	done.seq = a->seq;
	if (len < sizeof(*a) || a->nranges > PROTO_ARM_MAX ||
	    len != sizeof(*a) + a->nranges * sizeof(a->range[0]))
		done.status = -EPROTO;
	else if (__atomic_exchange_n(&rg->arming, 1, __ATOMIC_ACQ_REL))
		done.status = -EBUSY;
	else if (!(copy = malloc(offsetof(struct arm_job, a) + len)))
		done.status = -ENOMEM;
	else {
		__atomic_store_n(&rg->arm_abort, 0, __ATOMIC_RELEASE);
		copy->rg = rg;
		memcpy(&copy->a, a, len);
		if (pthread_create(&tid, NULL, arm_thread, copy) == 0) {
			pthread_detach(tid);
			return;
		}
		free(copy);
		done.status = -EAGAIN;
	}
	if (done.status != -EBUSY)
		__atomic_store_n(&rg->arming, 0, __ATOMIC_RELEASE);
	proto_send(rg->sock, &done, sizeof(done), NULL, 0);
}

static uint64_t now_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

static void sleep_ms(unsigned ms)
{
	struct timespec t = {ms / 1000, (long)(ms % 1000) * 1000000L};

	nanosleep(&t, NULL);
}

static void close_all(const int *fds, int n)
{
	for (int i = 0; i < n; i++)
		close(fds[i]);
}

/* Reads the daemon's answer to a registration or a resume within wait_ms (-1: no limit). The
 * descriptors it carries go to keep (at most 3) when keep is set and the answer is yes, else
 * they are closed. Returns the daemon's status, or -ETIMEDOUT / -EPROTO. */
static int read_reply(int sock, int wait_ms, struct proto_reply *rep, int *keep, int *nkeep)
{
	struct pollfd p = {.fd = sock, .events = POLLIN};
	int fds[3], n = 3;
	ssize_t got;

	rep->message[0] = 0;
	if (poll(&p, 1, wait_ms) <= 0)
		return -ETIMEDOUT;
	got = proto_recv(sock, rep, sizeof(*rep), fds, &n);
	if (got < 0)
		return (int)got;
	if (got != (ssize_t)sizeof(*rep) || proto_hdr_check(&rep->hdr, (size_t)got) ||
	    rep->hdr.type != PROTO_REPLY) {
		close_all(fds, n);
		rep->message[0] = 0; /* not an answer: no message either */
		return -EPROTO;
	}
	rep->message[sizeof(rep->message) - 1] = 0;
	if (rep->status || !keep) {
		close_all(fds, n);
		return rep->status;
	}
	memcpy(keep, fds, (size_t)n * sizeof(int));
	*nkeep = n;
	return 0;
}

/* An arming of the dead daemon's that was running when we resumed may have ended before the
 * new connection took the old one's place, its answer lost: tell the new daemon it is over
 * (an answer of an unknown sequence number is how it recognises that). */
static void announce_stale_arming_end(struct region *rg)
{
	struct proto_arm_done done = {.seq = 0x5eed0000u};

	if (!rg->resumed_arming || __atomic_load_n(&rg->arming, __ATOMIC_ACQUIRE))
		return;
	proto_hdr_init(&done.hdr, PROTO_ARM_DONE, sizeof(done));
	proto_send(rg->sock, &done, sizeof(done), NULL, 0);
}

/* Asks the daemon at sock to adopt this VM, with every descriptor it needs. Returns 0; the
 * daemon's refusal (> 0 here: its -errno negated) with why set; or -errno when no daemon
 * answered (a dying one's socket resets the connection): worth retrying at once. */
static int resume(struct region *rg, int sock, uint64_t paused_ns, char *why, size_t whylen)
{
	struct proto_register req = rg->req;
	struct proto_reply rep;
	int fds[2 + 3] = {rg->uffd, rg->memfd}, keep[3], nkeep = 0, r;

	req.flags |= PROTO_REG_RESUME;
	rg->resumed_arming = __atomic_load_n(&rg->arming, __ATOMIC_ACQUIRE);
	if (rg->resumed_arming)
		req.flags |= PROTO_REG_ARMING;
	req.paused_ns = paused_ns;
	memcpy(fds + 2, rg->keep, (size_t)rg->nkeep * sizeof(int));
	r = proto_send(sock, &req, sizeof(req), fds, 2 + rg->nkeep);
	rep.message[0] = 0;
	if (!r)
		r = read_reply(sock, RESUME_WAIT_MS, &rep, keep, &nkeep);
	if (!r && nkeep == rg->nkeep) {
		/* The new daemon keeps the VM's state in a copy of its own: keep that one. */
		close_all(rg->keep, rg->nkeep);
		memcpy(rg->keep, keep, (size_t)nkeep * sizeof(int));
	} else if (!r) {
		close_all(keep, nkeep);
	}
	snprintf(why, whylen, "%s", rep.message[0] ? rep.message : strerror(-r));
	if (!r && (rep.flags & PROTO_REPLY_MINOR) &&
	    uffd_register_mode(rg->uffd, rg->addr, rg->len, true))
		fprintf(stderr, "uffd-qemu: cannot register guest RAM for minor faults\n");
	return r && rep.message[0] ? -r : r;
}

/* An executable's path as execve needs it: name searched in PATH unless it has a slash. */
static int find_exe(const char *name, char *out, size_t len)
{
	const char *path = getenv("PATH");

	if (strchr(name, '/')) {
		snprintf(out, len, "%s", name);
		return access(out, X_OK);
	}
	for (const char *p = path ? path : "/usr/bin:/bin"; *p;) {
		size_t n = strcspn(p, ":");

		snprintf(out, len, "%.*s/%s", (int)n, p, name);
		if (!access(out, X_OK))
			return 0;
		p += n + (p[n] == ':');
	}
	return -1;
}

/* The daemon's environment: QEMU's, without the preload and our variables (the daemon maps
 * guest memfds too, and must not register them with itself). NULL when out of memory. */
static char **daemon_env(void)
{
	extern char **environ;
	size_t n = 0, k = 0;
	char **env;

	while (environ[n])
		n++;
	env = calloc(n + 1, sizeof(*env));
	for (size_t i = 0; env && i < n; i++)
		if (strncmp(environ[i], "LD_PRELOAD=", 11) && strncmp(environ[i], "UFFD_MGR_", 9))
			env[k++] = environ[i];
	return env;
}

/* Forks the daemon, detached (its own session, reparented away from QEMU), with its output
 * appended to log. Only async-signal-safe calls between fork and exec: QEMU has threads. */
static void spawn_daemon(const char *exe, const char *sock_path, const char *log)
{
	char *argv[] = {(char *)exe, "--socket", (char *)sock_path, "--embedded", NULL};
	char **env = daemon_env();
	int logfd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	int nullfd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	pid_t pid;

	if (env && logfd >= 0 && nullfd >= 0) {
		dprintf(logfd, "uffd-qemu: QEMU pid %d starts %s again: no uffd-mgrd answered at %s\n",
			getpid(), exe, sock_path);
		pid = fork();
		if (pid == 0) {
			setsid();
			if (fork() != 0)
				_exit(0);
			if (dup2(nullfd, 0) < 0 || dup2(logfd, 1) < 0 || dup2(logfd, 2) < 0)
				_exit(126);
			syscall(SYS_close_range, 3, ~0u, 0); /* none of QEMU's descriptors */
			execve(exe, argv, env);
			_exit(127);
		}
		if (pid > 0)
			waitpid(pid, NULL, 0);
	}
	free(env);
	if (logfd >= 0)
		close(logfd);
	if (nullfd >= 0)
		close(nullfd);
}

/* Embedded mode: starts the daemon uffd-qemu started, unless one answers once we hold the
 * socket directory's lock (uffd-qemu takes the same lock, and another shim may have just
 * started one), and waits a little for it to answer. */
static void restart_daemon(const char *sock_path)
{
	const char *daemon = getenv("UFFD_MGR_DAEMON"), *log = getenv("UFFD_MGR_DAEMON_LOG");
	char exe[PATH_MAX], dir[PATH_MAX], *slash;
	int dirfd, probe;

	if (!daemon || !*daemon || !log || find_exe(daemon, exe, sizeof(exe)))
		return;
	snprintf(dir, sizeof(dir), "%s", sock_path);
	slash = strrchr(dir, '/');
	if (slash)
		*slash = 0;
	dirfd = open(slash && dir[0] ? dir : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dirfd >= 0)
		flock(dirfd, LOCK_EX);
	probe = proto_connect(sock_path);
	if (probe < 0) {
		spawn_daemon(exe, sock_path, log);
		for (int waited = 0; waited < 3000 && probe < 0; waited += 10) {
			sleep_ms(10);
			probe = proto_connect(sock_path);
		}
	}
	if (probe >= 0)
		close(probe);
	if (dirfd >= 0)
		close(dirfd);
}

/* The daemon has gone: reconnect until one answers and adopts the VM. vCPUs that fault
 * meanwhile wait in the kernel; nothing else in QEMU waits for this, except a discard or an
 * arming, whose madvise returns once a daemon has read its REMOVE. */
static void reconnect(struct region *rg)
{
	const char *path = getenv("UFFD_MGR_SOCKET");
	uint64_t lost = now_ns(), started = 0;
	unsigned backoff = 1;
	char why[512], said[512] = "";

	__atomic_store_n(&rg->arm_abort, 1, __ATOMIC_RELEASE);
	fprintf(stderr,
		"uffd-qemu: uffd-mgrd went away (QEMU pid %d); guest faults wait until a daemon "
		"answers at %s\n",
		getpid(), path);
	for (;;) {
		uint64_t now = now_ns();
		int fd = proto_connect(path),
		    r = fd < 0 ? fd : resume(rg, fd, now - lost, why, sizeof(why));

		if (r == 0) {
			dup3(fd, rg->sock, O_CLOEXEC); /* the same number: arm_thread may send */
			close(fd);
			announce_stale_arming_end(rg);
			fprintf(stderr, "uffd-qemu: resumed with uffd-mgrd after %.0f ms\n",
				(now_ns() - lost) / 1e6);
			return;
		}
		if (fd >= 0)
			close(fd);
		if (r > 0) {
			if (strcmp(why, said))
				fprintf(stderr, "uffd-qemu: uffd-mgrd refused to resume the VM: %s; "
						"retrying\n",
					why);
			snprintf(said, sizeof(said), "%s", why);
			sleep_ms(1000);
			continue;
		}
		if (now - lost > RESTART_AFTER_MS * 1000000ull &&
		    (!started || now - started > 5000000000ull)) {
			restart_daemon(path);
			started = now_ns();
			continue;
		}
		sleep_ms(backoff);
		backoff = backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2;
	}
}

/* Watches the daemon's end of the connection: armings and a release come this way, and a
 * close means the daemon has gone (reconnect). */
static void *watch_daemon(void *arg)
{
	struct region *rg = arg;
	union watch_msg {
		struct proto_hdr h;
		struct proto_arm arm;
		char raw[sizeof(struct proto_arm) + PROTO_ARM_MAX * sizeof(struct proto_range)];
	} *msg = malloc(sizeof(*msg)); /* one per region's watcher */
	ssize_t n;

	if (!msg)
		die("out of memory for the watcher of guest RAM at %#llx",
		    (unsigned long long)rg->addr);
	for (;;) {
		n = proto_recv(rg->sock, msg, sizeof(*msg), NULL, NULL);
		if (n == -EINTR || n == -EMSGSIZE)
			continue;
		if (n <= 0) {
			reconnect(rg);
			continue;
		}
		if (proto_hdr_check(&msg->h, (size_t)n))
			continue;
		if (msg->h.type == PROTO_ARM)
			arm_ranges(rg, &msg->arm, (size_t)n);
		else if (msg->h.type == PROTO_RELEASE && release_region(rg) == 0) {
			close_all(rg->keep, rg->nkeep); /* nothing left to resume */
			rg->nkeep = 0;
			free(msg);
			return NULL;
		}
	}
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

/* QEMU's own userfaultfd: made here when this process may (root, or a device it can open),
 * else from the /dev/userfaultfd the daemon opens for it (libvirt's QEMU runs unprivileged
 * with a /dev and device cgroup of its own). */
static void open_uffd(struct region *rg, uint64_t *features)
{
	struct proto_hdr ask;
	struct proto_reply rep = {.message = ""};
	char err[256], why[256];
	int dev[3], ndev = 0, r = uffd_open(&rg->uffd, features, err, sizeof(err));

	if (!r)
		return;
	proto_hdr_init(&ask, PROTO_UFFD_DEV, sizeof(ask));
	r = proto_send(rg->sock, &ask, sizeof(ask), NULL, 0);
	if (!r)
		r = read_reply(rg->sock, 10000, &rep, dev, &ndev);
	if (r || ndev != 1) {
		close_all(dev, r ? 0 : ndev);
		die("%s; uffd-mgrd did not give one either: %s", err,
		    rep.message[0] ? rep.message : strerror(r ? -r : EPROTO));
	}
	r = uffd_open_dev(dev[0], &rg->uffd, features, why, sizeof(why));
	close(dev[0]);
	if (r)
		die("cannot make a userfaultfd from uffd-mgrd's /dev/userfaultfd: %s", why);
}

/* Which of the guest's RAM backends this mapping is: uffd-qemu lists them in
 * UFFD_MGR_BACKENDS as "id:bytes,..." in the order QEMU creates them. The first one not yet
 * registered with this size; none listed (or one): a single backend. */
static void set_backend(struct proto_register *req, size_t len)
{
	const char *list = getenv("UFFD_MGR_BACKENDS");
	uint32_t count = 0, pick = UINT32_MAX;
	uint64_t total = 0;

	for (const char *p = list; p && *p;) {
		size_t n = strcspn(p, ","), idlen = strcspn(p, ":");
		unsigned long long bytes = idlen < n ? strtoull(p + idlen + 1, NULL, 10) : 0;
		bool taken = false;

		for (int k = 0; k < shim.n; k++)
			taken |= shim.rg[k].req.backend.index == count &&
				 shim.rg[k].req.backend.count > 1;
		if (pick == UINT32_MAX && !taken && bytes == len) {
			pick = count;
			snprintf(req->backend.id, sizeof(req->backend.id), "%.*s",
				 (int)(idlen < n ? idlen : n), p);
		}
		total += bytes;
		count++;
		p += n + (p[n] == ',');
	}
	if (count <= 1 || pick == UINT32_MAX)
		return;
	req->backend.index = pick;
	req->backend.count = count;
	req->backend.total_bytes = total;
}

static void register_region(void *addr, size_t len, int memfd, off_t off, const char *sock_path)
{
	struct proto_register req;
	struct proto_reply rep;
	struct region *rg;
	uint64_t features;
	pthread_t tid;
	int fds[2], r;

	for (int k = 0; k < shim.n; k++)
		if (shim.rg[k].memfd == memfd)
			die("a second mapping of guest RAM (%zu MiB at %p) is not supported", len >> 20,
			    addr);
	if (shim.n == REGIONS_MAX)
		die("more than %d guest-RAM backends are not supported", REGIONS_MAX);
	rg = &shim.rg[shim.n];
	*rg = (struct region){.lock = PTHREAD_MUTEX_INITIALIZER, .uffd = -1, .memfd = -1,
			      .keep = {-1, -1, -1}};
	rg->sock = proto_connect(sock_path);
	if (rg->sock < 0)
		die("no uffd-mgrd answers at %s: %s", sock_path, strerror(-rg->sock));
	open_uffd(rg, &features);
	r = uffd_register(rg->uffd, (uint64_t)(uintptr_t)addr, len);
	if (r)
		die("cannot register guest RAM with userfaultfd: %s%s", strerror(-r),
		    r == -EBUSY ? " (already registered by another userfaultfd)" : "");
	fill_request(&req, addr, len, off, features);
	set_backend(&req, len);
	fds[0] = rg->uffd;
	fds[1] = memfd;
	r = proto_send(rg->sock, &req, sizeof(req), fds, 2);
	if (r)
		die("cannot send the registration to uffd-mgrd: %s", strerror(-r));
	r = read_reply(rg->sock, -1, &rep, rg->keep, &rg->nkeep);
	if (r == -EPROTO || r == -ETIMEDOUT || (r && !rep.message[0]))
		die("uffd-mgrd gave no answer to the registration: %s", strerror(-r));
	if (r)
		die("uffd-mgrd refused guest RAM: %s", rep.message);
	rg->req = req;
	if ((rep.flags & PROTO_REPLY_MINOR) &&
	    uffd_register_mode(rg->uffd, (uint64_t)(uintptr_t)addr, len, true))
		fprintf(stderr, "uffd-qemu: cannot register guest RAM for minor faults; the "
				"sampling tracker sees only missing faults\n");
	rg->addr = req.host_addr;
	rg->len = len;
	rg->memfd = memfd;
	rg->memfd_off = (uint64_t)off;
	__atomic_store_n(&shim.n, shim.n + 1, __ATOMIC_RELEASE); /* announce_punch sees it */
	if (getenv("UFFD_MGR_VERBOSE"))
		fprintf(stderr, "uffd-qemu: %s\n", rep.message);
	if (pthread_create(&tid, NULL, watch_daemon, rg) == 0)
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
	int n = __atomic_load_n(&shim.n, __ATOMIC_ACQUIRE);
	struct region *rg = NULL;
	uint64_t start, end;

	for (int k = 0; k < n && fd >= 0; k++)
		if (shim.rg[k].memfd == fd)
			rg = &shim.rg[k];
	if (!rg || !(mode & FALLOC_FL_PUNCH_HOLE) || off < 0 || len <= 0 || !is_guest_ram(fd))
		return;
	start = (uint64_t)off;
	end = start + (uint64_t)len;
	if (end <= rg->memfd_off || start >= rg->memfd_off + rg->len)
		return;
	if (start < rg->memfd_off)
		start = rg->memfd_off;
	if (end > rg->memfd_off + rg->len)
		end = rg->memfd_off + rg->len;
	start &= ~(uint64_t)4095;
	end = (end + 4095) & ~(uint64_t)4095;
	pthread_mutex_lock(&rg->lock);
	syscall(SYS_madvise, (void *)(uintptr_t)(rg->addr + start - rg->memfd_off),
		(size_t)(end - start), MADV_DONTNEED);
	pthread_mutex_unlock(&rg->lock);
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
