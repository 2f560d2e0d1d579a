/* ctlclient: speaks the control protocol as a hostile or broken shim would, for the system
 * tests of what a daemon refuses (tests/system/bad_input.sh).
 *
 *   ctlclient SOCKET MODE NAME
 *
 * MODE is one of:
 *   dup-resume   a resume (PROTO_REG_RESUME) of vm NAME, carrying four 1 MiB memfds: for a
 *                NAME the daemon serves already, it must refuse before looking at them;
 *   bad-version  a resume of vm NAME (one the daemon does not hold) with a guest memfd of
 *                1 MiB, a shm pool memfd and a state made by vmstate_create for that VM but
 *                with its version bumped;
 *   truncated    the same with a state cut short: a sealed copy of its header pages only,
 *                without its counters and page entries.
 * The uffd slot carries a memfd: every refusal tested comes before the daemon touches it.
 *
 * Prints the daemon's reply as one line on stderr. Exit status: 0 when the daemon accepted,
 * 1 when it refused (or the exchange failed), 2 on bad usage. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "shmswap/shmpool.h"
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
	if (vmstate_create(&g, &vs, err, sizeof(err))) {
		fprintf(stderr, "ctlclient: %s\n", err);
		exit(1);
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

int main(int argc, char **argv)
{
	static struct proto_register req;
	struct proto_reply rep;
	int fds[4], sock, r;
	const char *mode = argc == 4 ? argv[2] : "";

	if (strcmp(mode, "dup-resume") && strcmp(mode, "bad-version") &&
	    strcmp(mode, "truncated")) {
		fprintf(stderr, "usage: ctlclient SOCKET dup-resume|bad-version|truncated NAME\n");
		return 2;
	}
	proto_hdr_init(&req.hdr, PROTO_REGISTER, sizeof(req));
	req.flags = PROTO_REG_RESUME;
	req.pid = getpid();
	req.length = GUEST_BYTES;
	snprintf(req.vm_name, sizeof(req.vm_name), "%s", argv[3]);
	snprintf(req.block_name, sizeof(req.block_name), "memory-backend-memfd");
	fds[0] = make_memfd("not-a-uffd", GUEST_BYTES);
	fds[1] = make_memfd("guest", GUEST_BYTES);
	if (!strcmp(mode, "dup-resume")) {
		fds[2] = make_memfd("state", GUEST_BYTES);
		fds[3] = make_memfd("shm", GUEST_BYTES);
	} else {
		fds[2] = damaged_state(mode, argv[3]);
		fds[3] = shm_pool_fd();
	}
	sock = proto_connect(argv[1]);
	if (sock < 0) {
		fprintf(stderr, "ctlclient: no uffd-mgrd answers at %s: %s\n", argv[1],
			strerror(-sock));
		return 1;
	}
	r = exchange(sock, &req, fds, 4, &rep);
	if (r) {
		fprintf(stderr, "ctlclient: no answer from uffd-mgrd: %s\n", strerror(-r));
		return 1;
	}
	fprintf(stderr, "ctlclient: %s (status %d): %s\n", rep.status ? "refused" : "accepted",
		rep.status, rep.message);
	close(sock);
	return rep.status ? 1 : 0;
}
