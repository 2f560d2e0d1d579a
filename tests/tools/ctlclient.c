/* ctlclient: speaks the control protocol as a hostile or broken shim would, for the system
 * tests of what a daemon refuses (tests/system/bad_input.sh, authz.sh, ctl_stall.sh).
 *
 *   ctlclient SOCKET MODE NAME [options]
 *
 * MODE is one of:
 *   dup-resume   a resume (PROTO_REG_RESUME) of vm NAME, carrying four 1 MiB memfds: for a
 *                NAME the daemon serves already, it must refuse before looking at them;
 *   bad-version  a resume of vm NAME (one the daemon does not hold) with a guest memfd of
 *                1 MiB, a shm pool memfd and a state made by vmstate_create for that VM but
 *                with its version bumped;
 *   truncated    the same with a state cut short: a sealed copy of its header pages only,
 *                without its counters and page entries;
 *   big-state    the same with a good state whose shm tier is 64 GiB: more than any policy
 *                of the tests allows;
 *   register     a real registration of 1 MiB of guest RAM (a sealed memfd, mapped and
 *                registered with a real userfaultfd), made as root and then sent as the
 *                --uid/--gid/--groups given; --hold keeps the VM that long after the reply;
 *   not-uffd     the same registration with a memfd in the uffd slot;
 *   foreign-uffd the same registration with a userfaultfd of another process: a child that
 *                maps a memfd of its own at the same address, registers it and passes its
 *                uffd over (the daemon must see that it serves another address space);
 *   silent       connects and sends nothing: the daemon must drop it (prints when);
 *   stall-watch  asks for a stats stream every 100 ms and never reads it, for --hold s.
 * Options: --uid U --gid G --groups G1,G2 (drop to them before connecting), --policy PATH,
 * --qmp PATH, --unsealed (no seals on the guest memfd), --hold SECONDS.
 * The uffd slot of the resumes carries a real userfaultfd registered on nothing: every
 * refusal tested comes before the daemon uses it.
 *
 * Prints the daemon's reply as one line on stderr. Exit status: 0 when the daemon accepted,
 * 1 when it refused (or the exchange failed), 2 on bad usage. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <poll.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "shmswap/shmpool.h"
#include "uffd-mgr/uffd.h"
#include "uffd-mgr/proto.h"
#include "uffd-mgr/vm.h"
#include "uffd-mgr/vmstate.h"

#define GUEST_BYTES (1u << 20)
#define SHM_SLOTS   256u
#define REPLY_MS    10000

static int make_memfd(const char *name, off_t len)
{
	int fd = memfd_create(name, MFD_CLOEXEC);

	if (fd < 0 || ftruncate(fd, len) < 0) {
		fprintf(stderr, "ctlclient: memfd %s: %s\n", name, strerror(errno));
		exit(1);
	}
	return fd;
}

/* A state for vm name, as a daemon would have made it, damaged as mode says. Returns its fd. */
static int damaged_state(const char *mode, const char *name)
{
	struct vmstate_geom g = {.guest_bytes = GUEST_BYTES,
				 .run_pages = 16,
				 .stats_len = sizeof(struct vm_stats),
				 .shm_slots = SHM_SLOTS};
	struct vmstate vs;
	char err[256];
	uint32_t v = VMSTATE_VERSION + 1;
	int copy;
	off_t len;

	snprintf(g.vm_name, sizeof(g.vm_name), "%s", name);
	if (!strcmp(mode, "big-state"))
		g.shm_slots = UINT64_C(16) << 20; /* 64 GiB: the state only says so */
	if (vmstate_create(&g, &vs, err, sizeof(err))) {
		fprintf(stderr, "ctlclient: %s\n", err);
		exit(1);
	}
	if (!strcmp(mode, "big-state")) { /* a state as made, only too big for the policy */
		int fd = dup(vs.fd);

		vmstate_close(&vs);
		return fd;
	}
	/* A forged copy (the daemon's own is sealed against writes too): the whole state for
	 * bad-version, the header alone (its pages end where the counters start) for truncated,
	 * sealed against resizing as a real one is. */
	copy = memfd_create("uffd-state-forged", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	len = !strcmp(mode, "bad-version") ? (off_t)vs.hdr->total_len : (off_t)vs.hdr->stats_off;
	if (copy < 0 || ftruncate(copy, len) < 0 || pwrite(copy, vs.hdr, (size_t)len, 0) != len ||
	    (!strcmp(mode, "bad-version") &&
	     pwrite(copy, &v, sizeof(v), offsetof(struct vmstate_hdr, version)) != sizeof(v)) ||
	    fcntl(copy, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0)
		goto fail;
	vmstate_close(&vs);
	return copy;
fail:
	fprintf(stderr, "ctlclient: cannot damage the state: %s\n", strerror(errno));
	exit(1);
}

static int shm_pool_fd(void)
{
	struct shmpool *p;
	int fd, r = shmpool_create("uffd-shm-ctlclient", (uint64_t)SHM_SLOTS * 4096, &p);

	if (r) {
		fprintf(stderr, "ctlclient: shm pool: %s\n", strerror(-r));
		exit(1);
	}
	fd = dup(shmpool_fd(p));
	shmpool_destroy(p);
	return fd;
}

/* Sends the resume and prints the answer. Returns the daemon's status, or -errno. */
static int exchange(int sock, const struct proto_register *req, const int *fds, int nfds,
		    struct proto_reply *rep)
{
	struct pollfd p = {.fd = sock, .events = POLLIN};
	int got_fds[3], n = 3, r;
	ssize_t got;

	r = proto_send(sock, req, sizeof(*req), fds, nfds);
	if (r)
		return r;
	r = poll(&p, 1, REPLY_MS);
	if (r <= 0)
		return r < 0 ? -errno : -ETIMEDOUT;
	got = proto_recv(sock, rep, sizeof(*rep), got_fds, &n);
	if (got < 0)
		return (int)got;
	for (int i = 0; i < n; i++)
		close(got_fds[i]);
	if (got == 0)
		return -ECONNRESET;
	if (got != (ssize_t)sizeof(*rep) || proto_hdr_check(&rep->hdr, (size_t)got) ||
	    rep->hdr.type != PROTO_REPLY)
		return -EPROTO;
	rep->message[sizeof(rep->message) - 1] = 0;
	return 0;
}

struct opts {
	long uid, gid;
	gid_t groups[16];
	int ngroups;
	const char *policy, *qmp;
	bool unsealed;
	double hold_s;
};

static int parse_opts(int argc, char **argv, struct opts *o)
{
	static const struct option lo[] = {
	    {"uid", required_argument, NULL, 'u'},    {"gid", required_argument, NULL, 'g'},
	    {"groups", required_argument, NULL, 'G'}, {"policy", required_argument, NULL, 'p'},
	    {"qmp", required_argument, NULL, 'q'},    {"unsealed", no_argument, NULL, 'U'},
	    {"hold", required_argument, NULL, 'h'},   {NULL, 0, NULL, 0},
	};
	int c;

	*o = (struct opts){.uid = -1, .gid = -1, .policy = "", .qmp = ""};
	optind = 4;
	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (c) {
		case 'u': o->uid = atol(optarg); break;
		case 'g': o->gid = atol(optarg); break;
		case 'G':
			for (char *t = strtok(optarg, ","); t && o->ngroups < 16; t = strtok(NULL, ","))
				o->groups[o->ngroups++] = (gid_t)atol(t);
			break;
		case 'p': o->policy = optarg; break;
		case 'q': o->qmp = optarg; break;
		case 'U': o->unsealed = true; break;
		case 'h': o->hold_s = atof(optarg); break;
		default: return -1;
		}
	}
	return 0;
}

/* Becomes the peer the test wants the daemon to see: SO_PEERCRED is taken at connect(). */
static void drop_to(const struct opts *o)
{
	if (o->uid < 0)
		return;
	if (setgroups((size_t)o->ngroups, o->groups) < 0 ||
	    setresgid((gid_t)o->gid, (gid_t)o->gid, (gid_t)o->gid) < 0 ||
	    setresuid((uid_t)o->uid, (uid_t)o->uid, (uid_t)o->uid) < 0) {
		fprintf(stderr, "ctlclient: cannot become uid %ld: %s\n", o->uid, strerror(errno));
		exit(1);
	}
}

static int real_uffd(void)
{
	char err[256];
	uint64_t features;
	int fd;

	if (uffd_open(&fd, &features, err, sizeof(err))) {
		fprintf(stderr, "ctlclient: %s\n", err);
		exit(1);
	}
	return fd;
}

/* A guest: 1 MiB of sealed memfd, mapped and registered with a real userfaultfd. */
static void make_guest(struct proto_register *req, const struct opts *o, int fds[2])
{
	void *mem;

	fds[1] = memfd_create("memory-backend-memfd", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fds[1] < 0 || ftruncate(fds[1], GUEST_BYTES) < 0 ||
	    (!o->unsealed && fcntl(fds[1], F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW) < 0) ||
	    (mem = mmap(NULL, GUEST_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED, fds[1], 0)) ==
		MAP_FAILED) {
		fprintf(stderr, "ctlclient: guest memfd: %s\n", strerror(errno));
		exit(1);
	}
	fds[0] = real_uffd();
	if (uffd_register(fds[0], (uint64_t)(uintptr_t)mem, GUEST_BYTES)) {
		fprintf(stderr, "ctlclient: cannot register the guest with userfaultfd\n");
		exit(1);
	}
	req->host_addr = (uint64_t)(uintptr_t)mem;
	req->flags = 0;
}

/* A userfaultfd made by a child with an address space of its own: at the guest's address
 * the child maps a memfd of its own, registers it and passes the uffd back; it then waits
 * for its parent to go. */
static int foreign_uffd(uint64_t host_addr)
{
	int sv[2], uffd;
	char c = 0;
	struct iovec iov = {.iov_base = &c, .iov_len = 1};
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int))];
	} u;
	struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
			   .msg_controllen = sizeof(u.buf)};

	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
		exit(1);
	if (fork() == 0) {
		int own = memfd_create("neighbour", MFD_CLOEXEC);
		void *mem;

		close(sv[0]);
		if (own < 0 || ftruncate(own, GUEST_BYTES) < 0)
			_exit(1);
		mem = mmap((void *)(uintptr_t)host_addr, GUEST_BYTES, PROT_READ | PROT_WRITE,
			   MAP_SHARED | MAP_FIXED, own, 0);
		uffd = real_uffd();
		if (mem == MAP_FAILED || uffd_register(uffd, host_addr, GUEST_BYTES))
			_exit(1);
		u.h.cmsg_level = SOL_SOCKET;
		u.h.cmsg_type = SCM_RIGHTS;
		u.h.cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(&u.h), &uffd, sizeof(int));
		if (sendmsg(sv[1], &m, 0) != 1)
			_exit(1);
		(void)!read(sv[1], &c, 1); /* until the parent exits */
		_exit(0);
	}
	close(sv[1]);
	if (recvmsg(sv[0], &m, 0) != 1 || !CMSG_FIRSTHDR(&m)) {
		fprintf(stderr, "ctlclient: the child made no userfaultfd\n");
		exit(1);
	}
	memcpy(&uffd, CMSG_DATA(CMSG_FIRSTHDR(&m)), sizeof(int));
	return uffd;
}

static void sleep_s(double s)
{
	struct timespec t = {.tv_sec = (time_t)s, .tv_nsec = (long)((s - (time_t)s) * 1e9)};

	while (nanosleep(&t, &t) < 0 && errno == EINTR)
		;
}

/* silent: waits for the daemon to drop a connection that never says anything. */
static int run_silent(int sock)
{
	struct pollfd p = {.fd = sock, .events = POLLIN};
	struct timespec a, b;
	char c;

	clock_gettime(CLOCK_MONOTONIC, &a);
	if (poll(&p, 1, 60000) <= 0 || recv(sock, &c, 1, 0) != 0) {
		fprintf(stderr, "ctlclient: the daemon kept a silent connection for 60 s\n");
		return 1;
	}
	clock_gettime(CLOCK_MONOTONIC, &b);
	fprintf(stderr, "ctlclient: dropped after %.1f s of silence\n",
		(double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9);
	return 0;
}

/* stall-watch: a stats stream nobody reads. Returns 0 once held. */
static int run_stall_watch(int sock, double hold_s)
{
	struct proto_stats_req req = {.interval_ms = 100};

	proto_hdr_init(&req.hdr, PROTO_STATS_WATCH, sizeof(req));
	if (proto_send(sock, &req, sizeof(req), NULL, 0))
		return 1;
	sleep_s(hold_s);
	fprintf(stderr, "ctlclient: held an unread stats stream for %.1f s\n", hold_s);
	return 0;
}

int main(int argc, char **argv)
{
	static const char *const modes[] = {"dup-resume", "bad-version", "truncated", "big-state",
					    "register", "not-uffd", "foreign-uffd", "silent", "stall-watch"};
	static struct proto_register req;
	struct proto_reply rep;
	struct opts o;
	int fds[4], nfds = 4, sock, r;
	const char *mode = argc >= 4 ? argv[2] : "";
	bool known = false;

	for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++)
		known |= !strcmp(mode, modes[i]);
	if (!known || parse_opts(argc, argv, &o)) {
		fprintf(stderr, "usage: ctlclient SOCKET dup-resume|bad-version|truncated|big-state|"
				"register|not-uffd|foreign-uffd|silent|stall-watch NAME [--uid U --gid G "
				"--groups G,..] [--policy P] [--qmp P] [--unsealed] [--hold S]\n");
		return 2;
	}
	proto_hdr_init(&req.hdr, PROTO_REGISTER, sizeof(req));
	req.flags = PROTO_REG_RESUME;
	req.pid = getpid();
	req.length = GUEST_BYTES;
	snprintf(req.vm_name, sizeof(req.vm_name), "%s", argv[3]);
	snprintf(req.block_name, sizeof(req.block_name), "memory-backend-memfd");
	snprintf(req.policy_path, sizeof(req.policy_path), "%s", o.policy);
	snprintf(req.qmp_path, sizeof(req.qmp_path), "%s", o.qmp);
	if (!strcmp(mode, "register") || !strcmp(mode, "not-uffd") ||
	    !strcmp(mode, "foreign-uffd")) {
		make_guest(&req, &o, fds);
		if (!strcmp(mode, "not-uffd"))
			fds[0] = dup(fds[1]);
		if (!strcmp(mode, "foreign-uffd"))
			fds[0] = foreign_uffd(req.host_addr);
		nfds = 2;
	} else if (!strcmp(mode, "dup-resume")) {
		fds[0] = make_memfd("not-a-uffd", GUEST_BYTES);
		fds[1] = make_memfd("guest", GUEST_BYTES);
		fds[2] = make_memfd("state", GUEST_BYTES);
		fds[3] = make_memfd("shm", GUEST_BYTES);
	} else if (strcmp(mode, "silent") && strcmp(mode, "stall-watch")) {
		struct opts sealed = {.unsealed = false};

		make_guest(&req, &sealed, fds);
		req.flags = PROTO_REG_RESUME;
		fds[2] = damaged_state(mode, argv[3]);
		fds[3] = shm_pool_fd();
	}
	drop_to(&o);
	sock = proto_connect(argv[1]);
	if (sock < 0) {
		fprintf(stderr, "ctlclient: no uffd-mgrd answers at %s: %s\n", argv[1],
			strerror(-sock));
		return 1;
	}
	if (!strcmp(mode, "silent"))
		return run_silent(sock);
	if (!strcmp(mode, "stall-watch"))
		return run_stall_watch(sock, o.hold_s);
	r = exchange(sock, &req, fds, nfds, &rep);
	if (r) {
		fprintf(stderr, "ctlclient: no answer from uffd-mgrd: %s\n", strerror(-r));
		return 1;
	}
	fprintf(stderr, "ctlclient: %s (status %d): %s\n", rep.status ? "refused" : "accepted",
		rep.status, rep.message);
	if (!rep.status && o.hold_s > 0)
		sleep_s(o.hold_s);
	close(sock);
	return rep.status ? 1 : 0;
}
