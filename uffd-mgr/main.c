/* uffd-mgrd: the host daemon. Top level: options, start-up checks, the control socket and
 * its poll loop (registrations from shims, stats requests from uffdctl, VM exits). */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <json-c/json.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "uffd-mgr/authz.h"
#include "uffd-mgr/ctlmsg.h"
#include "uffd-mgr/diskq.h"
#include "uffd-mgr/log.h"
#include "uffd-mgr/policy.h"
#include "uffd-mgr/promhttp.h"
#include "uffd-mgr/proto.h"
#include "uffd-mgr/sdlisten.h"
#include "ebpf/tracker.h"
#include "uffd-mgr/plan.h"
#include "uffd-mgr/stats.h"
#include "uffd-mgr/track.h"
#include "uffd-mgr/uffd.h"
#include "uffd-mgr/vm.h"
#include "uffd-mgr/vmstate.h"

#define MAX_CLIENTS	1024
#define CLIENT_SILENT_S 5 /* a new connection must ask something within this */
#define MAX_EXITED	32
#define EMBEDDED_IDLE_S 60
/* Default bytes of disk-tier I/O in flight on all VMs' rings together (diskq.h). Measured on
 * this project's test host (virtio disk): a 4 KiB read's p99 beside 64 KiB writes was 0.30 ms
 * with one write in flight, 0.34 ms with four (256 KiB), 2.5 ms with 32 (2 MiB); sequential
 * 64 KiB reads reach 650 MiB/s with eight in flight (512 KiB), 760 with 32. So 1 MiB: writes
 * (a quarter) stay at the 256 KiB that barely slows a read, prefetch (half) keeps most of the
 * disk's sequential rate, and a fault's read always finds a quarter left for it. */
#define DISK_INFLIGHT (1ull << 20)

enum client_kind { CLIENT_NEW, CLIENT_SHIM, CLIENT_WATCH };

struct client {
	int fd;
	enum client_kind kind;
	struct vm *vm;	      /* CLIENT_SHIM */
	uint32_t interval_ms; /* CLIENT_WATCH */
	uint64_t next_ns;
	uint64_t deadline_ns; /* CLIENT_NEW: dropped if it has asked nothing by then */
	struct ctlmsg_out out; /* a snapshot going out as the reader makes room */
	bool close_when_sent;  /* a one-shot stats request: done once out has gone */
};

struct daemon {
	const char *socket_path;
	bool embedded;
	int listen_fd, sig_fd;
	int lock_fd;		/* flock on SOCKET.lock: one daemon per socket */
	bool systemd_socket;	/* systemd made the socket and keeps it: never unlink it */
	char exe[PATH_MAX];	/* this binary's path at start: what an upgrade runs */
	char **argv;		/* and with these arguments */
	struct client clients[MAX_CLIENTS];
	int nclients;
	bool had_vm;
	uint64_t started_ns;
	struct json_object *exited[MAX_EXITED]; /* final snapshots of VMs gone, oldest first */
	int nexited;
	struct planner *planner;
	struct diskq *diskq; /* every VM's disk-tier I/O goes through it */
	uint64_t budget;     /* --budget, 0: the planner's default */
	uint64_t disk_inflight; /* --disk-inflight, 0: no cap */
	struct tracker *bpf; /* loaded when the first VM asks for it */
	bool bpf_tried;
	char bpf_err[160]; /* why it could not load */
	pthread_t bpf_thread; /* loading it ahead, when VMs are likely to resume at once */
	bool bpf_loading;
	int bpf_load_r;
	struct authz_conf az; /* who may do what; where VM policies live */
	const char *metrics_addr; /* --metrics */
	struct promhttp *metrics;
};

static void usage(FILE *out)
{
	fprintf(
	    out,
	    "NAME\n"
	    "    uffd-mgrd - host memory manager for QEMU guests (userfaultfd, shm tier)\n\n"
	    "SYNOPSIS\n"
	    "    uffd-mgrd [--socket PATH] [--log FILE] [--budget SIZE] [--disk-inflight SIZE]\n"
	    "              [--embedded] [--metrics ADDR]\n\n"
	    "DESCRIPTION\n"
	    "    Serves the guest RAM of every QEMU started through uffd-qemu: never-touched\n"
	    "    pages as zero pages, cold runs moved to a per-VM shared-memory tier when the\n"
	    "    VM's resident memory passes its policy's resident_max, and brought back a run\n"
	    "    at a time on the next access. One daemon serves many VMs; each VM's policy\n"
	    "    file is named by uffd-qemu --policy. Runs in the foreground; logs to stderr.\n"
	    "    Each VM's working set is measured (eBPF, or userfaultfd sampling) and a\n"
	    "    planner shares the host budget among the VMs by their predicted demand:\n"
	    "    it sets each one's resident target, balloon target (over QMP) and brings\n"
	    "    pages back ahead of faults when a VM's demand is about to grow.\n\n"
	    "OPTIONS\n"
	    "    --socket PATH  control and stats socket (default $UFFD_MGR_SOCKET, else\n"
	    "                   %s)\n"
	    "    --log FILE     append the log to FILE instead of stderr\n"
	    "    --budget SIZE  host RAM all VMs may hold together (K/M/G/T; default 80%%\n"
	    "                   of MemTotal), split by predicted demand, critical amount,\n"
	    "                   [balloon] min/max and [memory] weight; re-planned every 5 s\n"
	    "                   and at once when a VM's faults or swapping spike\n"
	    "    --disk-inflight SIZE\n"
	    "                   disk-tier I/O in flight for all VMs together (default 1M;\n"
	    "                   0: no cap): past it, a fault's read goes before prefetch\n"
	    "                   reads and demotion writes, and each class is shared among\n"
	    "                   the VMs by bytes, in proportion to [memory] weight\n"
	    "    --embedded     exit when the last VM has gone (uffd-qemu starts the daemon\n"
	    "                   this way when none answers at the socket)\n"
	    "    --metrics ADDR serve Prometheus metrics over HTTP at http://ADDR/metrics\n"
	    "                   (the text of 'uffdctl metrics': per-VM tiers, faults,\n"
	    "                   evictions, latency, working set, planner targets). ADDR is\n"
	    "                   HOST:PORT, [IPV6]:PORT or :PORT (every address), e.g.\n"
	    "                   127.0.0.1:9848. Anyone who can connect can read it: bind it\n"
	    "                   to loopback or a management network. A thread of its own\n"
	    "                   answers, with 16 connections at most and %d s for each.\n"
	    "    --config FILE  settings below as 'key = value' lines (default %s,\n"
	    "                   if it exists); options given here come after it\n",
	    PROTO_DEFAULT_SOCKET, PROMHTTP_TIMEOUT_S, AUTHZ_DEFAULT_CONF);
	authz_print_options(out);
	fprintf(out,
	    "    -h, --help     this text\n"
	    "    --version      the control protocol and VM state versions it speaks\n\n"
	    "WHO MAY DO WHAT\n"
	    "    Decided per connection from the peer's uid and groups (SO_PEERCRED): stats\n"
	    "    need --stats-group or more, registering a VM --allow-uid/--allow-group (or\n"
	    "    root, or this daemon's uid), an upgrade root or this daemon's uid. A VM runs\n"
	    "    with --policy-dir/NAME.conf; its QEMU's own policy can only lower it. See\n"
	    "    the README's Security model.\n\n"
	    "SIGNALS\n"
	    "    SIGTERM, SIGINT  stop: every running guest gets all its tiered pages back in\n"
	    "                     its RAM and is handed back to QEMU, which runs on unmanaged.\n"
	    "    SIGUSR2          live upgrade (as 'uffdctl upgrade'): exec the uffd-mgrd now\n"
	    "                     at this binary's path, keeping every VM.\n"
	    "    SIGHUP           ignored (logged).\n\n"
	    "WHEN IT STOPS\n"
	    "    A crash or kill -9 loses no guest and no page: each VM's page map, counters\n"
	    "    and tiers live in memfds and files its QEMU keeps open. Faults wait in the\n"
	    "    kernel until a daemon is back on the socket (systemd's Restart=always, or\n"
	    "    the shim restarts an embedded one); each QEMU then resumes its VM with it.\n\n"
	    "EXIT STATUS\n"
	    "    0 on a clean stop, 1 when it cannot start (the reason is printed).\n\n"
	    "POLICY KEYS\n");
	policy_print_keys(out);
	fprintf(out, "\nSEE ALSO\n    uffd-qemu(1), uffdctl(1), examples/vm.conf\n");
}

/* Checks the kernel features every VM will need, so a missing one is named at start. */
static int check_kernel(void)
{
	char err[256];
	uint64_t features;
	int fd, r = uffd_open(&fd, &features, err, sizeof(err));

	if (r) {
		fprintf(stderr, "uffd-mgrd: %s\n", err);
		return r;
	}
	close(fd);
	return 0;
}

static int make_dirs(const char *path)
{
	char dir[PATH_MAX];
	char *slash;

	snprintf(dir, sizeof(dir), "%s", path);
	slash = strrchr(dir, '/');
	if (!slash || slash == dir)
		return 0;
	*slash = 0;
	for (char *p = dir + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = 0;
		mkdir(dir, 0755);
		*p = '/';
	}
	if (mkdir(dir, 0755) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

/* Takes SOCKET.lock for the life of the daemon (and across an upgrade's exec), so that two
 * daemons can never both think they serve one socket, even when started at the same instant.
 * Returns the lock's fd or -errno, having said why. */
static int lock_socket(const char *path)
{
	char lock[PATH_MAX], pid[32] = "";
	int fd;
	ssize_t n;

	snprintf(lock, sizeof(lock), "%s.lock", path);
	fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0) {
		fprintf(stderr, "uffd-mgrd: cannot open %s: %s\n", lock, strerror(errno));
		return -errno;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		n = pread(fd, pid, sizeof(pid) - 1, 0);
		pid[n > 0 ? n : 0] = 0;
		pid[strcspn(pid, "\n")] = 0;
		fprintf(stderr, "uffd-mgrd: another uffd-mgrd (pid %s) already serves %s\n",
			pid[0] ? pid : "?", path);
		close(fd);
		return -EADDRINUSE;
	}
	n = snprintf(pid, sizeof(pid), "%d\n", getpid());
	if (ftruncate(fd, 0) < 0 || pwrite(fd, pid, (size_t)n, 0) != n)
		fprintf(stderr, "uffd-mgrd: cannot write the pid to %s\n", lock);
	return fd;
}

/* Gives the socket at path the group and mode the settings call for (authz_socket_mode).
 * Returns 0 or -1 with errno set. */
static int set_socket_mode(const char *path, const struct authz_conf *az)
{
	mode_t mode;
	gid_t gid;

	authz_socket_mode(az, &mode, &gid);
	if (gid != (gid_t)-1 && chown(path, (uid_t)-1, gid) < 0)
		return -1;
	return chmod(path, mode);
}

/* Listens on path; *stale says a dead daemon's socket was there. The socket is created
 * 0600 (umask) and only then given its group and mode (authz_socket_mode): never more open
 * than meant, even for an instant. */
static int listen_on(const char *path, const struct authz_conf *az, bool *stale)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd, probe, r;
	mode_t old_mask;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		fprintf(stderr, "uffd-mgrd: socket path too long: %s\n", path);
		return -ENAMETOOLONG;
	}
	probe = proto_connect(path);
	if (probe >= 0) {
		close(probe);
		fprintf(stderr, "uffd-mgrd: another uffd-mgrd already answers at %s\n", path);
		return -EADDRINUSE;
	}
	if (make_dirs(path) < 0) {
		fprintf(stderr, "uffd-mgrd: cannot create the directory of %s: %s\n", path,
			strerror(errno));
		return -errno;
	}
	*stale = unlink(path) == 0; /* stale: nobody answered, and we hold the lock */
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	old_mask = umask(0177);
	r = fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ? -errno : 0;
	umask(old_mask);
	if (!r && (set_socket_mode(path, az) < 0 || listen(fd, 64) < 0))
		r = -errno;
	if (r) {
		fprintf(stderr, "uffd-mgrd: cannot listen on %s: %s\n", path, strerror(-r));
		if (fd >= 0)
			close(fd);
		return r;
	}
	return fd;
}

/* Under socket activation systemd made the socket (0600, the unit's SocketMode) and keeps it
 * across our restarts: take it and give it the group and mode of our settings, as listen_on
 * would. Else make it. *stale: VMs may be about to resume (a connection waits already, or a
 * dead daemon's socket was there). Returns the fd or -errno, having said why. */
static int open_listener(struct daemon *d, bool *stale)
{
	char err[256];
	int fd = sdlisten_take(d->socket_path, err, sizeof(err)), r;

	if (fd == -ENOENT)
		return listen_on(d->socket_path, &d->az, stale);
	if (fd < 0) {
		fprintf(stderr, "uffd-mgrd: %s\n", err);
		return fd;
	}
	if (set_socket_mode(d->socket_path, &d->az) < 0) {
		r = -errno;
		fprintf(stderr, "uffd-mgrd: cannot set the group and mode of %s: %s\n",
			d->socket_path, strerror(-r));
		close(fd);
		return r;
	}
	d->systemd_socket = true;
	*stale = poll(&(struct pollfd){.fd = fd, .events = POLLIN}, 1, 0) > 0;
	return fd;
}

/* The pid of a client's process, for log lines; -1 if the socket cannot say. */
static pid_t client_pid(const struct client *c)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);

	return getsockopt(c->fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0 ? -1 : cred.pid;
}

static int running_vms(const struct daemon *d)
{
	int n = 0;

	for (int i = 0; i < d->nclients; i++)
		n += d->clients[i].kind == CLIENT_SHIM;
	return n;
}

static struct vm *find_vm(struct daemon *d, const char *name, ino_t ino, dev_t dev)
{
	for (int i = 0; i < d->nclients; i++) {
		struct vm *vm = d->clients[i].vm;
		struct stat sb;

		if (d->clients[i].kind != CLIENT_SHIM)
			continue;
		if (!strcmp(vm->name, name))
			return vm;
		if (fstat(vm->memfd, &sb) == 0 && sb.st_ino == ino && sb.st_dev == dev)
			return vm;
	}
	return NULL;
}

static bool valid_name(const char *s)
{
	size_t n = strnlen(s, POLICY_NAME_MAX);

	if (!n || n >= POLICY_NAME_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!(s[i] == '-' || s[i] == '_' || s[i] == '.' || (s[i] >= '0' && s[i] <= '9') ||
		      ((s[i] | 32) >= 'a' && (s[i] | 32) <= 'z')))
			return false;
	return true;
}

/* Loads the BPF tracker once, for every VM that wants it; remembers why it could not. */
static void load_bpf(struct daemon *d)
{
	unsigned src;
	int r;

	if (d->bpf_tried)
		return;
	d->bpf_tried = true;
	if (d->bpf_loading) {
		pthread_join(d->bpf_thread, NULL);
		d->bpf_loading = false;
		r = d->bpf_load_r;
	} else {
		r = tracker_open(&d->bpf, d->bpf_err, sizeof(d->bpf_err));
	}
	if (r) {
		d->bpf = NULL;
		log_warn(NULL, "tracker: BPF cannot load: %s", d->bpf_err);
		return;
	}
	src = tracker_sources(d->bpf);
	log_info(NULL, "tracker: BPF loaded on%s%s%s",
		 src & TRACKER_SRC_USER ? " page_fault_user" : "",
		 src & TRACKER_SRC_KERNEL ? " page_fault_kernel" : "",
		 src & TRACKER_SRC_KVM ? " kvm_page_fault" : "");
}

static void *bpf_loader(void *arg)
{
	struct daemon *d = arg;

	d->bpf_load_r = tracker_open(&d->bpf, d->bpf_err, sizeof(d->bpf_err));
	return NULL;
}

/* After a crash or an upgrade, VMs resume as soon as we listen, and their faults wait until
 * the first is adopted, which needs the BPF tracker (tens to hundreds of ms to load): load it
 * meanwhile. Only then: loaded, it runs on every page fault of the host. */
static void load_bpf_ahead(struct daemon *d)
{
	d->bpf_loading = pthread_create(&d->bpf_thread, NULL, bpf_loader, d) == 0;
}

/* Checks who is registering: the peer must be the process it says it is, and allowed to
 * register (authz.h). */
static int check_peer(const struct daemon *d, const struct client *c,
		      const struct proto_register *req, struct authz_peer *peer, char *err,
		      size_t errlen)
{
	int r = authz_peer(c->fd, peer);

	if (r) {
		snprintf(err, errlen, "cannot read the peer's credentials: %s", strerror(-r));
		return r;
	}
	r = authz_check(&d->az, peer, AUTHZ_REGISTER, err, errlen);
	if (r)
		return r;
	if (peer->pid != req->pid) {
		snprintf(err, errlen, "pid %d in the request is not the peer's pid %d", req->pid,
			 peer->pid);
		return -EPERM;
	}
	return 0;
}

/* A guest with several RAM backends (a NUMA guest: one per node) registers each on its own;
 * each is managed as a VM of its own, named NAME for the first and NAME.ID for the others
 * (ID: QEMU's id of the backend), under NAME's policy with its limits split in proportion to
 * the backend's size. The balloon acts on the whole guest, so none of them drives it; the
 * first reads the guest's statistics. Rewrites req->vm_name; base gets NAME. Returns 0 or
 * -EINVAL with a one-line reason. */
static int backend_unit(struct proto_register *req, char *base, size_t baselen, char *err,
			size_t errlen)
{
	const struct proto_backend *b = &req->backend;
	char id[64];

	snprintf(base, baselen, "%s", req->vm_name);
	if (b->count <= 1)
		return 0;
	if (b->index >= b->count || b->count > 64 || b->total_bytes < req->length) {
		snprintf(err, errlen, "backend %u of %u (%llu of %llu bytes) does not add up",
			 b->index, b->count, (unsigned long long)req->length,
			 (unsigned long long)b->total_bytes);
		return -EINVAL;
	}
	if (b->index == 0)
		return 0;
	snprintf(id, sizeof(id), "%s", b->id);
	if (!valid_name(id))
		snprintf(id, sizeof(id), "ram%u", b->index);
	if (snprintf(req->vm_name, sizeof(req->vm_name), "%s.%s", base, id) >=
		(int)sizeof(req->vm_name) ||
	    !valid_name(req->vm_name)) {
		snprintf(err, errlen, "VM name '%s' with backend '%s' is too long", base, id);
		return -EINVAL;
	}
	req->qmp_path[0] = 0;
	return 0;
}

/* One backend's part of the VM's limits (backend_unit). */
static void split_policy(struct policy *pol, const struct proto_register *req)
{
	uint64_t *const part[] = {&pol->resident_max, &pol->shm_max, &pol->disk_max,
				  &pol->critical_min, &pol->balloon_min, &pol->balloon_max};
	unsigned __int128 total = req->backend.total_bytes;

	if (req->backend.count <= 1)
		return;
	for (size_t i = 0; i < sizeof(part) / sizeof(part[0]); i++)
		if (*part[i]) /* 0 means no limit: it stays so */
			*part[i] = (uint64_t)((*part[i] * (unsigned __int128)req->length / total +
					       PAGE_SIZE_4K - 1) &
					      ~(unsigned __int128)(PAGE_SIZE_4K - 1));
	pol->balloon_on = 0;
}

/* Validates a registration or a resume and builds its VM. Returns 0, or -errno with a
 * one-line reason. */
static int accept_registration(struct daemon *d, struct client *c, struct proto_register *req,
			       const int *fds, int nfds, char *err, size_t errlen)
{
	bool resume = req->flags & PROTO_REG_RESUME;
	struct authz_peer peer;
	struct policy pol;
	struct stat sb;
	struct vm *other, *vm;
	char clamped[256], base[64];
	int r;

	if (resume ? nfds < 4 : nfds != 2) {
		snprintf(err, errlen, "%s", resume ? "a resume must carry the uffd, memfd, state and "
						     "shm tier"
						   : "registration must carry the uffd and the memfd");
		return -EPROTO;
	}
	r = check_peer(d, c, req, &peer, err, errlen);
	if (r)
		return r;
	/* The userfaultfd must be one the registering QEMU holds itself: with a neighbour's,
	 * our faults and evictions would land in the neighbour's address space. (A daemon that
	 * may not compare a peer's descriptors relies on vm_create's probe alone.) */
	r = authz_peer_holds(peer.pid, fds[0]);
	if (r == -ESRCH) {
		snprintf(err, errlen, "the userfaultfd sent is not one pid %d holds", peer.pid);
		return -EPERM;
	}
	req->vm_name[sizeof(req->vm_name) - 1] = 0;
	req->policy_path[sizeof(req->policy_path) - 1] = 0;
	req->backend.id[sizeof(req->backend.id) - 1] = 0;
	if (!valid_name(req->vm_name)) {
		snprintf(err, errlen, "bad VM name '%.63s' (use [A-Za-z0-9._-], 1-63 chars)",
			 req->vm_name);
		return -EINVAL;
	}
	r = backend_unit(req, base, sizeof(base), err, errlen);
	if (r)
		return r;
	if (fstat(fds[1], &sb) < 0)
		return -errno;
	other = find_vm(d, req->vm_name, sb.st_ino, sb.st_dev);
	if (other) {
		snprintf(err, errlen, "%s already registered as vm '%s' (pid %d)%s",
			 strcmp(other->name, req->vm_name) ? "this guest memory is"
							   : "a VM of this name is",
			 other->name, other->pid,
			 resume ? ": this daemon serves it, refusing a second resume" : "");
		return -EEXIST;
	}
	r = authz_vm_policy(&d->az, &peer, base, req->policy_path, &pol, clamped,
			    sizeof(clamped), err, errlen);
	if (r)
		return r;
	split_policy(&pol, req);
	if (clamped[0])
		log_warn(req->vm_name, "pid %d's policy %s may not raise %s: the operator's kept",
			 req->pid, req->policy_path, clamped);
	r = resume ? vm_adopt(req, fds, nfds, &pol, &vm, err, errlen)
		   : vm_create(req, fds[0], fds[1], &pol, &vm, err, errlen);
	if (r)
		return r;
	if (vm_join_diskq(vm, d->diskq))
		log_warn(vm->name, "out of memory joining the disk scheduler: its disk I/O is not "
				   "arbitrated with the other VMs'");
	if (pol.track_mode == POLICY_TRACK_EBPF || d->bpf_loading)
		load_bpf(d);
	track_choose(vm, d->bpf, d->bpf_err);
	snprintf(vm->backend_id, sizeof(vm->backend_id), "%s", req->backend.id);
	vm->backend_index = req->backend.count > 1 ? req->backend.index : 0;
	vm->plan.stats_only = req->backend.count > 1 && req->backend.index == 0;
	/* A shim's connection carries the tracker's armings and the release, which wait for
	 * room (vm.h): blocking from now on; the loop itself only reads from it. */
	fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) & ~O_NONBLOCK);
	c->kind = CLIENT_SHIM;
	c->vm = vm;
	vm->ctl_sock = c->fd;
	d->had_vm = true;
	return 0;
}

static void handle_register(struct daemon *d, struct client *c, struct proto_register *req,
			    int *fds, int nfds)
{
	bool resume = req->flags & PROTO_REG_RESUME;
	uint64_t t0 = vm_now_ns();
	char err[512] = "";
	int keep[3], nkeep, r = accept_registration(d, c, req, fds, nfds, err, sizeof(err));

	/* A new VM owns fds 0-1 now; a resume's other descriptors stay the shim's. */
	for (int i = r ? 0 : 2; i < nfds; i++)
		close(fds[i]);
	if (r) {
		log_warn(NULL, "%s refused (pid %d, vm '%.63s'): %s",
			 resume ? "resume" : "registration", req->pid, req->vm_name,
			 err[0] ? err : strerror(-r));
		proto_reply(c->fd, r, "%s", err[0] ? err : strerror(-r));
		return;
	}
	if (resume) {
		/* The guest's pause: without a daemon, then while we adopted it. */
		struct vmstate_hdr *h = c->vm->state.hdr;

		h->last_pause_ns = req->paused_ns + (vm_now_ns() - t0);
		if (h->last_pause_ns > h->max_pause_ns)
			h->max_pause_ns = h->last_pause_ns;
		log_info(c->vm->name, "resumed pid %d: faults waited %.1f ms for a daemon",
			 c->vm->pid, h->last_pause_ns / 1e6);
	}
	else
		log_info(c->vm->name,
			 "registered pid %d: %llu MiB at %#llx, resident_max %llu MiB, shm %llu MiB",
			 c->vm->pid, (unsigned long long)(req->length >> 20),
			 (unsigned long long)req->host_addr,
			 (unsigned long long)(c->vm->pol.resident_max >> 20),
			 (unsigned long long)(c->vm->pol.shm_max >> 20));
	log_info(c->vm->name, "tracker: %s (%s)", track_mode_name(c->vm->track_mode),
		 c->vm->track_why);
	/* The reply first: the shim must hold the state (an adoption's is a new copy) before
	 * any thread of ours records a page's home in it, or a kill of ours in between would
	 * lose that home. */
	nkeep = vm_keep_fds(c->vm, keep);
	proto_reply_fds(c->fd, 0, c->vm->track_mode == POLICY_TRACK_SAMPLE ? PROTO_REPLY_MINOR : 0,
			keep, nkeep, "%s vm %s: %llu MiB managed by uffd-mgrd (pid %d)",
			resume ? "resumed" : "registered", c->vm->name,
			(unsigned long long)(req->length >> 20), getpid());
	r = vm_start(c->vm);
	if (r) { /* the shim sees the close and resumes with whoever answers next */
		log_err(c->vm->name, "cannot start the VM's threads: %s; closing its connection",
			strerror(-r));
		vm_destroy(c->vm);
		c->vm = NULL;
		c->kind = CLIENT_NEW;
		return;
	}
	r = track_start(c->vm); /* its armings go to the shim, after the reply */
	if (r)
		log_warn(c->vm->name, "tracker not started: %s", strerror(-r));
}

static struct json_object *snapshot(struct daemon *d)
{
	struct json_object *root = json_object_new_object(), *vms = json_object_new_array();
	struct json_object *dm = json_object_new_object();

	json_object_object_add(dm, "pid", json_object_new_int(getpid()));
	json_object_object_add(dm, "socket", json_object_new_string(d->socket_path));
	json_object_object_add(dm, "uptime_s",
			       json_object_new_double((vm_now_ns() - d->started_ns) / 1e9));
	json_object_object_add(dm, "plan", planner_json(d->planner));
	json_object_object_add(root, "daemon", dm);
	for (int i = 0; i < d->nclients; i++)
		if (d->clients[i].kind == CLIENT_SHIM)
			json_object_array_add(vms, stats_vm_json(d->clients[i].vm, "running"));
	for (int i = 0; i < d->nexited; i++)
		json_object_array_add(vms, json_object_get(d->exited[i]));
	json_object_object_add(root, "vms", vms);
	return root;
}

/* Starts a snapshot to a stats client. Returns 0 (sent), -EAGAIN (the rest goes out as the
 * client reads), -EBUSY (the last one has not gone yet: the client does not keep up), or
 * another -errno. */
static int send_stats(struct daemon *d, struct client *c)
{
	struct json_object *root = snapshot(d);
	const char *text = json_object_to_json_string_ext(root, JSON_C_TO_STRING_PLAIN);
	int r = ctlmsg_send_json(c->fd, &c->out, text, strlen(text));

	json_object_put(root);
	return r;
}

static void drop_client(struct daemon *d, int idx)
{
	struct client *c = &d->clients[idx];

	if (c->kind == CLIENT_SHIM) {
		struct json_object *last = stats_vm_json(c->vm, "exited");

		if (d->nexited == MAX_EXITED) {
			json_object_put(d->exited[0]);
			memmove(d->exited, d->exited + 1, (MAX_EXITED - 1) * sizeof(d->exited[0]));
			d->nexited--;
		}
		d->exited[d->nexited++] = last;
		log_info(c->vm->name, "pid %d has gone; VM released", c->vm->pid);
		vm_destroy(c->vm);
	}
	ctlmsg_out_reset(&c->out);
	close(c->fd);
	d->clients[idx] = d->clients[--d->nclients];
}

static void arm_done(struct vm *vm, const struct proto_arm_done *done)
{
	pthread_mutex_lock(&vm->lock);
	if (done->seq != vm->arm_seq) {
		/* The end of an arming of the daemon before us: the fault thread lifts its
		 * flags once it has applied the last REMOVE, which it has read by now. */
		if (vm->stale_arming) {
			__atomic_store_n(&vm->stale_arming_over, true, __ATOMIC_RELEASE);
			(void)!write(vm->wake_efd, &(uint64_t){1}, sizeof(uint64_t));
		}
		pthread_mutex_unlock(&vm->lock);
		return;
	}
	vm->arm_done_seq = done->seq;
	vm->arm_status = done->status;
	vm->arm_pages = done->pages;
	pthread_cond_broadcast(&vm->track_cv);
	vm->ts.arm_rounds++;
	if (done->status && vm->ts.arm_errors++ % 100 == 0)
		log_warn(vm->name, "tracker: QEMU could not arm every range: %s (%llu times)",
			 strerror(-done->status), (unsigned long long)vm->ts.arm_errors);
	pthread_mutex_unlock(&vm->lock);
}

/* Runs the binary now on disk with --version, so that an upgrade never execs into something
 * that cannot start. Returns 0 or -errno with err set. */
static int check_new_binary(const struct daemon *d, char *err, size_t errlen)
{
	pid_t pid = fork();
	int status;

	if (pid == 0) {
		int null = open("/dev/null", O_WRONLY);

		if (null >= 0) {
			dup2(null, 1);
			dup2(null, 2);
		}
		execl(d->exe, d->exe, "--version", (char *)NULL);
		_exit(127);
	}
	if (pid < 0 || waitpid(pid, &status, 0) != pid) {
		err_set(err, errlen, "cannot run %s: %s", d->exe, strerror(errno));
		return -ECHILD;
	}
	if (!WIFEXITED(status) || WEXITSTATUS(status)) {
		err_set(err, errlen, "%s --version failed (status %d): not upgrading", d->exe,
			 WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
		return -ENOEXEC;
	}
	return 0;
}

/* Replaces this daemon with the binary now on disk, keeping every VM: the listening socket and
 * its lock pass through exec, the shims' connections close, and each shim resumes its VM with
 * the new daemon, which adopts it from the state the shim kept (vm_adopt). Faults wait
 * meanwhile, in the kernel. The VMs' threads are stopped first so that nothing is in flight,
 * though adoption would settle it as after a crash. Returns only on failure, with err set. */
static int upgrade(struct daemon *d, char *err, size_t errlen)
{
	char fd_text[16];
	int r = check_new_binary(d, err, errlen);

	if (r)
		return r;
	log_info(NULL, "upgrading: exec %s with %d VM(s); they resume with it", d->exe,
		 running_vms(d));
	for (int i = 0; i < d->nclients; i++)
		if (d->clients[i].kind == CLIENT_SHIM)
			vm_quiesce(d->clients[i].vm);
	snprintf(fd_text, sizeof(fd_text), "%d", d->listen_fd);
	setenv("UFFD_MGR_LISTEN_FD", fd_text, 1);
	snprintf(fd_text, sizeof(fd_text), "%d", d->lock_fd);
	setenv("UFFD_MGR_LOCK_FD", fd_text, 1);
	if (d->systemd_socket)
		setenv("UFFD_MGR_LISTEN_SYSTEMD", "1", 1);
	fcntl(d->listen_fd, F_SETFD, 0);
	fcntl(d->lock_fd, F_SETFD, 0);
	fflush(NULL);
	execv(d->exe, d->argv);
	err_set(err, errlen, "exec %s: %s", d->exe, strerror(errno));
	log_err(NULL, "upgrade failed: %s; exiting so that the VMs resume with a fresh daemon",
		err);
	exit(1);
}

/* Refuses a request unless the peer has right: one log line, the same line to the client.
 * Returns 0 when allowed, else -EPERM. */
static int refuse_unless(struct daemon *d, int fd, enum authz_right right, const char *what)
{
	char err[256] = "cannot read the peer's credentials";
	struct authz_peer peer = {.pid = -1};

	if (!authz_peer(fd, &peer) && !authz_check(&d->az, &peer, right, err, sizeof(err)))
		return 0;
	log_warn(NULL, "%s refused (pid %d): %s", what, peer.pid, err);
	proto_reply(fd, -EPERM, "%s", err);
	return -EPERM;
}

static void handle_upgrade(struct daemon *d, int fd)
{
	char err[512];

	if (refuse_unless(d, fd, AUTHZ_UPGRADE, "upgrade"))
		return;
	if (check_new_binary(d, err, sizeof(err))) {
		log_err(NULL, "upgrade refused: %s", err);
		proto_reply(fd, -ENOEXEC, "%s", err);
		return;
	}
	proto_reply(fd, 0, "uffd-mgrd (pid %d) execs %s with %d VM(s)", getpid(), d->exe,
		    running_vms(d));
	upgrade(d, err, sizeof(err));
}

/* Gives a QEMU that may register an open /dev/userfaultfd: the device's access checks (file
 * mode, libvirt's device cgroup and private /dev) happen at open, which we do for it; the
 * uffd it then makes with USERFAULTFD_IOC_NEW serves its own address space only. The
 * connection stays open for the registration. Returns 0, or -1 to drop the client. */
static int handle_uffd_dev(struct daemon *d, int sock)
{
	int dev, r = refuse_unless(d, sock, AUTHZ_REGISTER, "a userfaultfd");

	if (r)
		return -1;
	dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
	if (dev < 0) {
		proto_reply(sock, -errno, "uffd-mgrd cannot open /dev/userfaultfd: %s",
			    strerror(errno));
		return -1;
	}
	r = proto_reply_fds(sock, 0, 0, &dev, 1, "a /dev/userfaultfd descriptor");
	close(dev);
	return r ? -1 : 0;
}

/* Handles one message from a client (what it may ask: ctlmsg_check). Returns 0, or -1 when
 * the client should be dropped. */
static int handle_client(struct daemon *d, int idx)
{
	struct client *c = &d->clients[idx];
	static union {
		struct proto_hdr hdr;
		struct proto_register reg;
		struct proto_stats_req stats;
		char raw[8192];
	} msg;
	int fds[PROTO_REG_FDS_MAX], nfds = PROTO_REG_FDS_MAX;
	ssize_t n = proto_recv(c->fd, &msg, sizeof(msg), fds, &nfds);
	enum ctlmsg_action act;
	char why[256];

	if (n == -EAGAIN)
		return 0;
	if (n <= 0)
		return -1;
	act = ctlmsg_check(c->kind == CLIENT_SHIM, &msg, (size_t)n, nfds, why, sizeof(why));
	if (act != CTL_REGISTER)
		for (int i = 0; i < nfds; i++)
			close(fds[i]);
	switch (act) {
	case CTL_IGNORE:
		return 0;
	case CTL_ARM_DONE:
		arm_done(c->vm, (const struct proto_arm_done *)&msg);
		return 0;
	case CTL_REGISTER:
		if ((size_t)n < sizeof(msg.reg)) /* an older shim's: one backend */
			memset((char *)&msg.reg + n, 0, sizeof(msg.reg) - (size_t)n);
		handle_register(d, c, &msg.reg, fds, nfds);
		return c->kind == CLIENT_SHIM ? 0 : -1;
	case CTL_UPGRADE:
		handle_upgrade(d, c->fd);
		return -1;
	case CTL_UFFD_DEV:
		return handle_uffd_dev(d, c->fd);
	case CTL_STATS:
	case CTL_WATCH: {
		int r = refuse_unless(d, c->fd, AUTHZ_STATS, "stats");

		if (!r)
			r = send_stats(d, c);
		if ((r && r != -EAGAIN) || (!r && act == CTL_STATS))
			return -1;
		c->kind = CLIENT_WATCH;
		c->close_when_sent = act == CTL_STATS;
		c->interval_ms = msg.stats.interval_ms < 100 ? 100 : msg.stats.interval_ms;
		c->next_ns = act == CTL_STATS ? UINT64_MAX
					      : vm_now_ns() + (uint64_t)c->interval_ms * 1000000;
		return 0;
	}
	case CTL_DROP:
	default:
		log_warn(c->kind == CLIENT_SHIM ? c->vm->name : NULL, "client pid %d: %s; dropped",
			 client_pid(c), why);
		return -1;
	}
}

static void accept_clients(struct daemon *d)
{
	for (;;) {
		/* Non-blocking until it registers: a client that sends nothing, or reads nothing,
		 * never holds up the loop that serves every VM. */
		int fd = accept4(d->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);

		if (fd < 0)
			return;
		if (d->nclients == MAX_CLIENTS) {
			close(fd);
			log_warn(NULL, "too many clients; connection refused");
			continue;
		}
		d->clients[d->nclients++] =
		    (struct client){.fd = fd,
				    .kind = CLIENT_NEW,
				    .deadline_ns = vm_now_ns() + CLIENT_SILENT_S * 1000000000ull};
	}
}

/* Sends due watch snapshots; returns the poll timeout until the next one (ms, -1 none). */
static int tick_watchers(struct daemon *d)
{
	uint64_t now = vm_now_ns(), next = UINT64_MAX;

	for (int i = 0; i < d->nclients; i++) {
		struct client *c = &d->clients[i];

		if (c->kind != CLIENT_WATCH)
			continue;
		if (c->next_ns <= now) {
			int r = send_stats(d, c);

			if (r && r != -EAGAIN) {
				log_warn(NULL, "stats watcher pid %d %s; dropped", client_pid(c),
					 r == -EBUSY ? "does not keep up with its stream"
						     : strerror(-r));
				drop_client(d, i--);
				continue;
			}
			c->next_ns = now + (uint64_t)c->interval_ms * 1000000;
		}
		if (c->next_ns < next)
			next = c->next_ns;
	}
	if (d->embedded && !d->had_vm)
		next = next < d->started_ns + EMBEDDED_IDLE_S * 1000000000ull
			   ? next
			   : d->started_ns + EMBEDDED_IDLE_S * 1000000000ull;
	return next == UINT64_MAX ? -1 : (int)((next > now ? next - now : 0) / 1000000 + 1);
}

/* Runs the planner over the running VMs; returns ms until it is due again. */
static int tick_planner(struct daemon *d)
{
	struct vm *vms[MAX_CLIENTS];
	size_t n = 0;

	for (int i = 0; i < d->nclients; i++)
		if (d->clients[i].kind == CLIENT_SHIM)
			vms[n++] = d->clients[i].vm;
	return planner_tick(d->planner, vms, n);
}

/* On stop, every running guest gets its pages back and QEMU is told to unregister, so the
 * guests run on without the daemon and lose nothing. */
static void release_all(struct daemon *d)
{
	for (int i = d->nclients - 1; i >= 0; i--) {
		struct vm *vm = d->clients[i].vm;
		char err[256];

		if (d->clients[i].kind != CLIENT_SHIM)
			continue;
		if (vm_release(vm, err, sizeof(err)))
			log_err(vm->name, "cannot hand guest RAM back to QEMU: %s", err);
		else
			log_info(vm->name,
				 "every page is back in guest RAM; QEMU (pid %d) runs on "
				 "unmanaged",
				 vm->pid);
		drop_client(d, i);
	}
}

/* Drops a client whose connection ended or broke the protocol, or whose QEMU exited (its
 * socket closes too, but not if it left a child holding a copy): either way it is gone. */
static void handle_pidfd(struct daemon *d, int idx)
{
	drop_client(d, idx);
}

/* Returns true when the daemon should stop. */
static bool handle_signal(struct daemon *d, uint32_t signo)
{
	char err[512];

	if (signo == SIGUSR2) {
		upgrade(d, err, sizeof(err));
		log_err(NULL, "upgrade refused: %s", err);
		return false;
	}
	if (signo == SIGHUP) {
		log_info(NULL, "SIGHUP: nothing to reload (policies are read when a VM starts)");
		return false;
	}
	log_info(NULL, "signal %u: stopping with %d VM(s) running", signo, running_vms(d));
	release_all(d);
	return true;
}

/* Sends more of a pending snapshot when the client has made room, then reads a message.
 * Returns 0, or -1 when the client should be dropped. */
static int serve_client(struct daemon *d, int idx, short revents)
{
	struct client *c = &d->clients[idx];

	if (c->out.text && (revents & (POLLOUT | POLLERR | POLLHUP))) {
		int r = ctlmsg_flush(c->fd, &c->out);

		if ((r && r != -EAGAIN) || (!r && c->close_when_sent))
			return -1;
	}
	return revents & (POLLIN | POLLERR | POLLHUP) ? handle_client(d, idx) : 0;
}

/* Drops the new connections that have asked nothing in CLIENT_SILENT_S; returns the poll
 * timeout until the next one is due (ms, -1 none). */
static int drop_silent(struct daemon *d)
{
	uint64_t now = vm_now_ns(), next = UINT64_MAX;

	for (int i = d->nclients - 1; i >= 0; i--) {
		struct client *c = &d->clients[i];

		if (c->kind != CLIENT_NEW)
			continue;
		if (c->deadline_ns <= now) {
			log_warn(NULL, "client pid %d asked nothing within %d s; dropped",
				 client_pid(c), CLIENT_SILENT_S);
			drop_client(d, i);
		} else if (c->deadline_ns < next) {
			next = c->deadline_ns;
		}
	}
	return next == UINT64_MAX ? -1 : (int)((next - now) / 1000000 + 1);
}

static int min_timeout(int a, int b)
{
	return a < 0 ? b : b < 0 ? a : a < b ? a : b;
}

static int serve(struct daemon *d)
{
	static struct pollfd pfd[2 + 2 * MAX_CLIENTS];
	static int owner[2 * MAX_CLIENTS];
	static bool drop[MAX_CLIENTS];

	for (;;) {
		int timeout = tick_watchers(d), n = 0, plan_ms = tick_planner(d);

		if (d->embedded && ((d->had_vm && !running_vms(d)) ||
				    (!d->had_vm && vm_now_ns() - d->started_ns >
						       EMBEDDED_IDLE_S * 1000000000ull))) {
			log_info(NULL, "embedded daemon: no VM left, exiting");
			return 0;
		}
		pfd[n++] = (struct pollfd){.fd = d->listen_fd, .events = POLLIN};
		pfd[n++] = (struct pollfd){.fd = d->sig_fd, .events = POLLIN};
		for (int i = 0; i < d->nclients; i++) {
			owner[n - 2] = i;
			pfd[n++] = (struct pollfd){
			    .fd = d->clients[i].fd,
			    .events = POLLIN | (d->clients[i].out.text ? POLLOUT : 0)};
			if (d->clients[i].kind == CLIENT_SHIM && d->clients[i].vm->pidfd >= 0) {
				owner[n - 2] = i | 0x10000;
				pfd[n++] = (struct pollfd){.fd = d->clients[i].vm->pidfd,
							   .events = POLLIN};
			}
		}
		timeout = min_timeout(min_timeout(timeout, plan_ms), drop_silent(d));
		/* A VM whose faults nobody serves is seen to within a second: look twice a second. */
		for (int i = 0; i < d->nclients; i++)
			if (d->clients[i].kind == CLIENT_SHIM)
				vm_supervise(d->clients[i].vm);
		if (running_vms(d) && (timeout < 0 || timeout > 500))
			timeout = 500;
		if (poll(pfd, (nfds_t)n, timeout) < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (pfd[1].revents & POLLIN) {
			struct signalfd_siginfo si;

			if (read(d->sig_fd, &si, sizeof(si)) == sizeof(si))
				if (handle_signal(d, si.ssi_signo))
					return 0;
		}
		/* Fair: every ready client gets one message a round, whoever floods. Drops wait
		 * for the end of the round: a drop moves the last client into the dropped one's
		 * place. */
		memset(drop, 0, sizeof(drop));
		for (int k = 2; k < n; k++) {
			int i = owner[k - 2] & 0xffff;

			if (!pfd[k].revents || drop[i])
				continue;
			drop[i] = (owner[k - 2] & 0x10000) || serve_client(d, i, pfd[k].revents) < 0;
		}
		for (int i = d->nclients - 1; i >= 0; i--)
			if (drop[i])
				handle_pidfd(d, i);
		if (pfd[0].revents & POLLIN)
			accept_clients(d);
	}
}

static int setup_signals(void)
{
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGUSR2);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);
	return signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
}

/* Reads the config file (--config FILE, else the default one if it exists) before the
 * options, so that options given on the command line win. Returns 0 or -errno, having said
 * why. */
static int load_config(int argc, char **argv, struct authz_conf *az)
{
	const char *path = NULL;
	char err[512];
	int r;

	authz_defaults(az);
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--config") && i + 1 < argc)
			path = argv[++i];
		else if (!strncmp(argv[i], "--config=", 9))
			path = argv[i] + 9;
	}
	r = authz_load(az, path ? path : AUTHZ_DEFAULT_CONF, !path, err, sizeof(err));
	if (r)
		fprintf(stderr, "uffd-mgrd: %s\n", err);
	return r;
}

static int parse_args(int argc, char **argv, struct daemon *d)
{
	static const struct option opts[] = {
	    {"socket", required_argument, NULL, 's'},
	    {"log", required_argument, NULL, 'l'},
	    {"embedded", no_argument, NULL, 'e'},
	    {"budget", required_argument, NULL, 'b'},
	    {"disk-inflight", required_argument, NULL, 'D'},
	    {"help", no_argument, NULL, 'h'},
	    {"version", no_argument, NULL, 'V'},
	    {"config", required_argument, NULL, 'c'},
	    {"allow-uid", required_argument, NULL, 'A'},
	    {"allow-group", required_argument, NULL, 'A'},
	    {"stats-group", required_argument, NULL, 'A'},
	    {"policy-dir", required_argument, NULL, 'A'},
	    {"trust-root-policy", required_argument, NULL, 'A'},
	    {"metrics", required_argument, NULL, 'M'},
	    {NULL, 0, NULL, 0},
	};
	char err[512];
	int o, idx;

	if (load_config(argc, argv, &d->az))
		return 2;

	d->socket_path =
	    getenv("UFFD_MGR_SOCKET") ? getenv("UFFD_MGR_SOCKET") : PROTO_DEFAULT_SOCKET;
	d->disk_inflight = DISK_INFLIGHT;
	while ((o = getopt_long(argc, argv, "s:l:eh", opts, &idx)) != -1) {
		switch (o) {
		case 'c':
			break; /* read first, by load_config */
		case 'A':
			if (authz_set(&d->az, opts[idx].name, optarg, err, sizeof(err))) {
				fprintf(stderr, "uffd-mgrd: %s\n", err);
				return 2;
			}
			break;
		case 'b':
			if (policy_parse_size(optarg, &d->budget) || d->budget < (64ull << 20)) {
				fprintf(stderr,
					"uffd-mgrd: bad --budget '%s' (a size of at least 64M, e.g. 12G)\n",
					optarg);
				return 2;
			}
			break;
		case 'D':
			if (policy_parse_size(optarg, &d->disk_inflight)) {
				fprintf(stderr,
					"uffd-mgrd: bad --disk-inflight '%s' (a size, e.g. 8M, or 0)\n",
					optarg);
				return 2;
			}
			break;
		case 's':
			d->socket_path = optarg;
			break;
		case 'M': {
			struct sockaddr_storage sa;
			socklen_t salen;

			if (promhttp_parse_addr(optarg, &sa, &salen, err, sizeof(err))) {
				fprintf(stderr, "uffd-mgrd: --metrics: %s\n", err);
				return 2;
			}
			d->metrics_addr = optarg;
			break;
		}
		case 'l':
			if (!freopen(optarg, "a", stderr)) {
				fprintf(stdout, "uffd-mgrd: cannot open log %s\n", optarg);
				return 1;
			}
			setvbuf(stderr, NULL, _IOLBF, 0);
			break;
		case 'e':
			d->embedded = true;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		case 'V':
			printf("uffd-mgrd: control protocol %d, VM state version %d\n", PROTO_VERSION,
			       VMSTATE_VERSION);
			exit(0);
		default:
			fprintf(stderr, "uffd-mgrd: try 'uffd-mgrd --help'\n");
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "uffd-mgrd: unexpected argument '%s'\n", argv[optind]);
		return 2;
	}
	return 0;
}

/* This binary's path, as an upgrade will find the new one: a binary replaced on disk (by
 * rename, as packages do) shows in /proc/self/exe as "PATH (deleted)". */
static int self_path(char *out, size_t len)
{
	ssize_t n = readlink("/proc/self/exe", out, len - 1);
	const char *gone = " (deleted)";
	size_t g = strlen(gone);

	if (n <= 0)
		return -1;
	out[n] = 0;
	if ((size_t)n > g && !strcmp(out + n - g, gone))
		out[n - g] = 0;
	return 0;
}

/* After an upgrade's exec: the listening socket and its lock come from the daemon before.
 * Returns 0 when both did, else -ENOENT (start afresh). */
static int inherit_sockets(struct daemon *d)
{
	const char *l = getenv("UFFD_MGR_LISTEN_FD"), *k = getenv("UFFD_MGR_LOCK_FD");
	int lfd = l ? atoi(l) : -1, kfd = k ? atoi(k) : -1;
	bool systemd = getenv("UFFD_MGR_LISTEN_SYSTEMD") != NULL;

	unsetenv("UFFD_MGR_LISTEN_FD");
	unsetenv("UFFD_MGR_LOCK_FD");
	unsetenv("UFFD_MGR_LISTEN_SYSTEMD");
	if (lfd < 3 || kfd < 3 || fcntl(lfd, F_GETFD) < 0 || fcntl(kfd, F_GETFD) < 0)
		return -ENOENT;
	fcntl(lfd, F_SETFD, FD_CLOEXEC);
	fcntl(kfd, F_SETFD, FD_CLOEXEC);
	fcntl(lfd, F_SETFL, O_NONBLOCK);
	d->listen_fd = lfd;
	d->lock_fd = kfd;
	d->systemd_socket = systemd;
	log_info(NULL, "upgraded: serving on the socket of the daemon before");
	return 0;
}

/* --metrics: the HTTP server reads the stats socket as any client would. Returns 0 or -errno,
 * having said why. */
static int start_metrics(struct daemon *d)
{
	char err[256];
	int r = promhttp_start(d->metrics_addr, promhttp_stats_fetch, (void *)d->socket_path,
			       &d->metrics, err, sizeof(err));

	if (r)
		fprintf(stderr, "uffd-mgrd: --metrics: %s\n", err);
	else
		log_info(NULL, "metrics: serving http://%s/metrics (port %d)", d->metrics_addr,
			 promhttp_port(d->metrics));
	return r;
}

int main(int argc, char **argv)
{
	static struct daemon d;
	bool stale;
	int r = parse_args(argc, argv, &d);

	if (r)
		return r;
	d.started_ns = vm_now_ns();
	if (check_kernel())
		return 1;
	r = planner_create(d.budget, &d.planner);
	if (r) {
		fprintf(stderr, "uffd-mgrd: cannot size the host budget: %s\n", strerror(-r));
		return 1;
	}
	if (diskq_create(d.disk_inflight, &d.diskq)) {
		fprintf(stderr, "uffd-mgrd: out of memory\n");
		return 1;
	}
	d.sig_fd = setup_signals();
	d.argv = argv;
	if (self_path(d.exe, sizeof(d.exe)) < 0) {
		fprintf(stderr, "uffd-mgrd: cannot find its own binary in /proc/self/exe\n");
		return 1;
	}
	stale = !inherit_sockets(&d);
	if (!stale) {
		d.lock_fd = lock_socket(d.socket_path);
		d.listen_fd = d.lock_fd < 0 ? -1 : open_listener(&d, &stale);
	}
	if (d.listen_fd < 0 || d.sig_fd < 0)
		return 1;
	if (stale)
		load_bpf_ahead(&d);
	if (d.metrics_addr && start_metrics(&d)) {
		if (!d.systemd_socket)
			unlink(d.socket_path);
		return 1;
	}
	log_info(NULL, "listening on %s (pid %d%s%s), host budget %llu MiB", d.socket_path,
		 getpid(), d.embedded ? ", embedded" : "",
		 d.systemd_socket ? ", socket from systemd" : "",
		 (unsigned long long)(planner_budget(d.planner) >> 20));
	r = serve(&d);
	while (d.nclients)
		drop_client(&d, d.nclients - 1);
	if (d.bpf_loading)
		pthread_join(d.bpf_thread, NULL);
	tracker_close(d.bpf);
	planner_destroy(d.planner);
	promhttp_stop(d.metrics);
	diskq_destroy(d.diskq);
	for (int i = 0; i < d.nexited; i++)
		json_object_put(d.exited[i]);
	if (!d.systemd_socket)
		unlink(d.socket_path);
	close(d.listen_fd);
	return r ? 1 : 0;
}
