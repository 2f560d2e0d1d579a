/* vm: see vm.h. */
#include "uffd-mgr/vm.h"
#include "qemu-glue/qmp.h"
#include "uffd-mgr/track.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/userfaultfd.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "uffd-mgr/evict.h"
#include "uffd-mgr/fault.h"
#include "uffd-mgr/hooks.h"
#include "uffd-mgr/log.h"
#include "uffd-mgr/proto.h"
#include "uffd-mgr/uffd.h"
#include "uffd-mgr/zshm.h"

/* A fault thread that stops again this soon after a restart is not restarted again. */
#define RESTART_WINDOW_NS (60 * 1000000000ull)
/* How long a QEMU told to stop (SIGTERM) has before it is killed. */
#define KILL_GRACE_NS (5 * 1000000000ull)

uint64_t vm_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

struct timespec vm_deadline_ms(uint32_t ms)
{
	struct timespec t;

	clock_gettime(CLOCK_REALTIME, &t);
	t.tv_sec += ms / 1000;
	t.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (t.tv_nsec >= 1000000000L) {
		t.tv_sec++;
		t.tv_nsec -= 1000000000L;
	}
	return t;
}

uint64_t vm_limit_pages(const struct vm *vm)
{
	uint64_t a = vm->pol.resident_max / PAGE_SIZE_4K, b = vm->resident_target / PAGE_SIZE_4K;

	if (a && b)
		return a < b ? a : b;
	return a ? a : b;
}

bool vm_over_limit(const struct vm *vm)
{
	uint64_t limit = vm_limit_pages(vm);

	return limit && pagemap_count(vm->pm, PS_RESIDENT) > limit;
}

bool vm_must_throttle(const struct vm *vm)
{
	uint64_t limit = vm_limit_pages(vm), run = pagemap_run_pages(vm->pm);
	uint64_t slack = limit / 16 > 8 * run ? limit / 16 : 8 * run;

	return limit && !vm->tier_full && !vm->evict_stop &&
	       pagemap_count(vm->pm, PS_RESIDENT) > limit + slack;
}

/* The most guest RAM one registration may describe, and the end of user space on x86-64
 * with 5-level paging: past them a region is a lie, and sums of them could wrap. */
#define REGION_MAX   (UINT64_C(1) << 46)
#define USER_VA_END  (UINT64_C(1) << 57)

/* What QEMU sends is not trusted: the first descriptor must be a userfaultfd, the region's
 * numbers must not wrap, and the guest memfd must be sealed against shrinking, or QEMU could
 * truncate it under the daemon's mapping and every daemon access past the new end would be a
 * SIGBUS that kills all VMs' daemon. QEMU's memory-backend-memfd seals it (seal=on default). */
static int check_untrusted(const struct proto_register *req, int uffd, int memfd, char *err,
			   size_t errlen)
{
	char link[64], target[64] = "";
	ssize_t n;
	int seals;

	snprintf(link, sizeof(link), "/proc/self/fd/%d", uffd);
	n = readlink(link, target, sizeof(target) - 1);
	target[n > 0 ? n : 0] = 0;
	if (strcmp(target, "anon_inode:[userfaultfd]")) {
		snprintf(err, errlen, "the first descriptor is not a userfaultfd (it is '%s')",
			 target[0] ? target : "unreadable");
		return -EBADF;
	}
	if (req->length > REGION_MAX || req->host_addr >= USER_VA_END - req->length ||
	    req->memfd_offset > (uint64_t)INT64_MAX - req->length) {
		snprintf(err, errlen, "region %#llx+%#llx at memfd offset %#llx is out of bounds",
			 (unsigned long long)req->host_addr, (unsigned long long)req->length,
			 (unsigned long long)req->memfd_offset);
		return -EINVAL;
	}
	seals = fcntl(memfd, F_GET_SEALS);
	if (seals < 0 || !(seals & F_SEAL_SHRINK)) {
		snprintf(err, errlen, "the guest memfd is not sealed against shrinking "
				      "(F_SEAL_SHRINK; QEMU seals it unless seal=off)");
		return -EPERM;
	}
	return 0;
}

/* Checks that the region described by the shim really is the memfd it sent. */
static int check_region(const struct proto_register *req, int uffd, int memfd, char *err,
			size_t errlen)
{
	struct stat sb;
	int r;

	if (!req->length || req->length % PAGE_SIZE_4K || req->host_addr % PAGE_SIZE_4K ||
	    req->memfd_offset % PAGE_SIZE_4K) {
		snprintf(err, errlen, "region is not page aligned");
		return -EINVAL;
	}
	r = check_untrusted(req, uffd, memfd, err, errlen);
	if (r)
		return r;
	if (fstat(memfd, &sb) < 0) {
		snprintf(err, errlen, "cannot stat the guest memfd: %s", strerror(errno));
		return -errno;
	}
	if ((uint64_t)sb.st_size < req->memfd_offset + req->length) {
		snprintf(err, errlen, "guest memfd is %lld bytes, smaller than the region",
			 (long long)sb.st_size);
		return -EINVAL;
	}
	return 0;
}

/* Proves that the userfaultfd serves an address space where host_addr maps this memfd: a
 * page with a random tag is placed through the uffd into the first hole of the region, read
 * back through the memfd, and punched out again (a hole is what it was: a never-touched page).
 * A uffd of another address space places it elsewhere or fails. A region with no hole (QEMU's
 * prealloc=on) cannot be probed without changing the guest's bytes, and is taken on the
 * peer check alone. Only for a new VM: a running guest's holes are pages in the tiers. */
static int probe_uffd(const struct proto_register *req, int uffd, int memfd, char *err,
		      size_t errlen)
{
	static char page[PAGE_SIZE_4K] __attribute__((aligned(PAGE_SIZE_4K)));
	off_t base = (off_t)req->memfd_offset, hole = lseek(memfd, base, SEEK_HOLE);
	uint64_t tag[2], seen[2] = {0, 0};
	struct uffdio_copy c;
	int r, tries = 0;

	if (hole < 0 || hole >= base + (off_t)req->length)
		return 0;
	if (getrandom(tag, sizeof(tag), 0) != sizeof(tag))
		return -EIO;
	memcpy(page, tag, sizeof(tag));
	do { /* EAGAIN: an event of QEMU's (a mapping change) is pending; it passes */
		c = (struct uffdio_copy){.dst = req->host_addr + (uint64_t)(hole - base),
					 .src = (uint64_t)(uintptr_t)page,
					 .len = PAGE_SIZE_4K};
		r = ioctl(uffd, UFFDIO_COPY, &c) < 0 ? -errno : 0;
	} while (r == -EAGAIN && ++tries < 200 && !usleep(1000));
	if (!r && pread(memfd, seen, sizeof(seen), hole) != sizeof(seen))
		r = -EIO;
	if (!r)
		fallocate(memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, hole, PAGE_SIZE_4K);
	if (r || memcmp(seen, tag, sizeof(tag))) {
		snprintf(err, errlen,
			 "the userfaultfd does not serve this guest memory at %#llx (%s): it belongs "
			 "to another address space, or the region is not registered",
			 (unsigned long long)c.dst, r ? strerror(-r) : "a page placed there is not "
								       "in the memfd");
		return -EPERM;
	}
	return 0;
}

static int open_pidfd(pid_t pid)
{
	int fd = (int)syscall(SYS_pidfd_open, pid, 0);

	return fd < 0 ? -errno : fd;
}

/* The gates between the VM's rings and the daemon's disk scheduler (diskq.h): a write is a
 * demotion; a read counts as its ring's struct vm_gate says. */
static int gate_acquire(void *arg, bool write, uint64_t bytes, bool wait)
{
	struct vm_gate *g = arg;
	int r = diskq_acquire(g->dq, write ? DISKQ_WRITE : g->read_cls, bytes, wait);

	if (!r && write && hooks_disk_write_delay_us()) /* test builds: a slow disk */
		usleep(hooks_disk_write_delay_us());
	return r;
}

static void gate_release(void *arg, bool write, uint64_t bytes)
{
	struct vm_gate *g = arg;

	diskq_release(g->dq, write ? DISKQ_WRITE : g->read_cls, bytes);
}

/* Puts a ring of the VM behind the daemon's scheduler, if it has joined one. */
static void gate_ring(struct vm *vm, struct disktier_io *io, struct vm_gate *g)
{
	struct disktier_gate dg = {gate_acquire, gate_release, g};

	if (io && vm->dq)
		disktier_io_set_gate(io, &dg);
}

int vm_join_diskq(struct vm *vm, struct diskq *q)
{
	int r;

	if (!vm->disk || !q)
		return 0;
	r = diskq_join(q, vm->pol.weight, &vm->dq);
	if (r)
		return r;
	vm->fault_gate = (struct vm_gate){vm->dq, DISKQ_FAULT};
	vm->bg_gate = (struct vm_gate){vm->dq, DISKQ_PREFETCH};
	gate_ring(vm, vm->fault_io, &vm->fault_gate);
	gate_ring(vm, vm->evict_io, &vm->bg_gate);
	return 0;
}

/* A ring for each thread that does disk I/O, each with its run-sized buffer registered. */
static int open_rings(struct vm *vm, char *err, size_t errlen)
{
	const char *inject = hooks_disk_injection(); /* test builds only */
	int r;

	if (inject && *inject && disktier_set_injection(vm->disk, inject))
		log_warn(vm->name, "ignoring bad UFFD_MGR_INJECT_DISK '%s'", inject);
	r = disktier_io_create(vm->disk, vm->fault_bounce, vm->fault_bounce_len, 32, &vm->fault_io);
	if (!r)
		r = disktier_io_create(vm->disk, vm->evict_stage, vm->evict_stage_len, 32,
				       &vm->evict_io);
	if (r) {
		snprintf(err, errlen, "cannot set up io_uring for the disk tier: %s", strerror(-r));
		return r;
	}
	log_info(vm->name, "disk tier %s: %llu MiB, %s I/O, %s buffers", disktier_path(vm->disk),
		 (unsigned long long)(disktier_slots(vm->disk) >> 8),
		 disktier_direct(vm->disk) ? "direct" : "buffered (no O_DIRECT here)",
		 disktier_io_fixed(vm->fault_io) ? "registered" : "plain");
	return 0;
}

/* Opens the VM's disk tier, named by its policy. */
static int open_disk(struct vm *vm, char *err, size_t errlen)
{
	char path[POLICY_PATH_MAX];
	int r;

	if (policy_disk_path(&vm->pol, vm->name, path, sizeof(path))) {
		snprintf(err, errlen, "[disk] path is too long once %%n is expanded");
		return -ENAMETOOLONG;
	}
	r = disktier_open(path, vm->pol.disk_max, &vm->disk, err, errlen);
	if (!r)
		snprintf(vm->state.hdr->disk_path, sizeof(vm->state.hdr->disk_path), "%s", path);
	return r;
}

/* The geometry of this VM's state, from its registration and policy. */
static void state_geom(const struct vm *vm, struct vmstate_geom *g)
{
	memset(g, 0, sizeof(*g));
	snprintf(g->vm_name, sizeof(g->vm_name), "%s", vm->name);
	g->guest_bytes = vm->length;
	g->run_pages = (uint32_t)(vm->pol.run_size / PAGE_SIZE_4K);
	g->stats_len = sizeof(struct vm_stats);
	g->shm_slots = vm->pol.shm_max / PAGE_SIZE_4K;
	g->disk_slots = vm->pol.disk_path[0] ? vm->pol.disk_max / PAGE_SIZE_4K : 0;
	g->shm_compress = (uint32_t)vm->pol.shm_compress;
}

/* [shm] compress: the store of blobs over the pool, and the demoter's scratch to unpack one. */
static int open_zpool(struct vm *vm, char *err, size_t errlen)
{
	int r = zpool_create(vm->shm, (enum zpool_alg)vm->state.hdr->geom.shm_compress, &vm->z);

	vm->zscratch = r ? NULL : aligned_alloc(PAGE_SIZE_4K, vm->pol.run_size);
	if (!r && !vm->zscratch)
		r = -ENOMEM;
	if (r)
		snprintf(err, errlen, "cannot set up the compressed shm tier: %s", strerror(-r));
	return r;
}

/* The shm tier as the state's geometry says: 4 KiB slots, or grains for blobs. */
static int create_shm(struct vm *vm, char *err, size_t errlen)
{
	char poolname[96];
	int r;

	snprintf(poolname, sizeof(poolname), "uffd-shm-%s", vm->name);
	r = vm->pol.shm_compress
		? shmpool_create_unit(poolname, vm->pol.shm_max, ZPOOL_GRAIN, &vm->shm)
		: shmpool_create(poolname, vm->pol.shm_max, &vm->shm);
	if (r) {
		snprintf(err, errlen, "cannot create the shm tier (%llu bytes): %s",
			 (unsigned long long)vm->pol.shm_max, strerror(-r));
		return r;
	}
	return vm->pol.shm_compress ? open_zpool(vm, err, errlen) : 0;
}

/* What create and adopt share after the state and tiers exist: buffers, rings, watches. */
static int vm_finish(struct vm *vm, char *err, size_t errlen)
{
	int r;

	vm->st = vm->state.stats;
	r = pagemap_attach(vm->state.ent, vm->length / PAGE_SIZE_4K,
			   vm->state.hdr->geom.run_pages, &vm->pm);
	if (r) {
		snprintf(err, errlen, "cannot build the page map: %s", strerror(-r));
		return r;
	}
	vm->evict_stage_len =
	    vm->pol.run_size > VM_PREFETCH_STAGE ? vm->pol.run_size : VM_PREFETCH_STAGE;
	vm->fault_bounce_len = vm->disk ? vm->evict_stage_len : vm->pol.run_size;
	vm->disk_ra_next = SIZE_MAX;
	vm->fault_bounce = aligned_alloc(PAGE_SIZE_4K, vm->fault_bounce_len);
	vm->evict_stage = aligned_alloc(PAGE_SIZE_4K, vm->evict_stage_len);
	vm->evict_src = aligned_alloc(PAGE_SIZE_4K, vm->pol.run_size);
	if (vm->disk && !(vm->fault_batch = calloc(1, sizeof(*vm->fault_batch))))
		return -ENOMEM;
	if (!vm->fault_bounce || !vm->evict_stage || !vm->evict_src)
		return -ENOMEM;
	if (vm->disk) {
		r = open_rings(vm, err, errlen);
		if (r)
			return r;
	}
	vm->pidfd = open_pidfd(vm->pid);
	vm->wake_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	vm->stop_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (vm->pidfd < 0 || vm->wake_efd < 0 || vm->stop_efd < 0) {
		snprintf(err, errlen, "cannot watch pid %d: %s", vm->pid, strerror(errno));
		return -ESRCH;
	}
	return 0;
}

/* Builds everything but the threads for a new VM; on failure frees what it made. */
static int vm_build(struct vm *vm, char *err, size_t errlen)
{
	struct vmstate_geom g;
	int r;

	state_geom(vm, &g);
	r = vmstate_create(&g, &vm->state, err, errlen);
	if (r)
		return r;
	r = create_shm(vm, err, errlen);
	if (r)
		return r;
	if (vm->pol.disk_path[0]) {
		r = open_disk(vm, err, errlen);
		if (r)
			return r;
	}
	return vm_finish(vm, err, errlen);
}

/* Fills a VM from its registration; no resources yet. */
static struct vm *vm_new(const struct proto_register *req, const struct policy *pol)
{
	struct vm *vm = calloc(1, sizeof(*vm));

	if (!vm)
		return NULL;
	snprintf(vm->name, sizeof(vm->name), "%s", req->vm_name);
	snprintf(vm->plan.qmp_path, sizeof(vm->plan.qmp_path), "%.*s",
		 (int)sizeof(req->qmp_path) - 1, req->qmp_path);
	vm->pid = req->pid;
	vm->pol = *pol;
	vm->host_addr = req->host_addr;
	vm->length = req->length;
	vm->memfd_offset = req->memfd_offset;
	vm->uffd_features = req->uffd_features;
	vm->track_mode = POLICY_TRACK_OFF; /* until track_choose */
	vm->uffd = vm->memfd = -1;
	vm->state.fd = -1;
	vm->pidfd = vm->wake_efd = vm->stop_efd = vm->ctl_sock = -1;
	vm->started_ns = vm_now_ns();
	pthread_mutex_init(&vm->lock, NULL);
	pthread_mutex_init(&vm->event_lock, NULL);
	pthread_cond_init(&vm->evict_cv, NULL);
	pthread_cond_init(&vm->track_cv, NULL);
	return vm;
}

int vm_create(const struct proto_register *req, int uffd, int memfd, const struct policy *pol,
	      struct vm **out, char *err, size_t errlen)
{
	struct vm *vm;
	int r = check_region(req, uffd, memfd, err, errlen);

	if (!r)
		r = probe_uffd(req, uffd, memfd, err, errlen);
	if (r)
		return r;
	vm = vm_new(req, pol);
	if (!vm)
		return -ENOMEM;
	vm->memfd = memfd;
	r = vm_build(vm, err, errlen);
	if (r) {
		vm->memfd = -1; /* still the caller's on failure */
		vm_destroy(vm);
		return r;
	}
	vm->uffd = uffd;
	*out = vm;
	return 0;
}

void vm_each_data_extent(const struct vm *vm, size_t from, size_t npages,
			 void (*fn)(size_t first, size_t n, void *arg), void *arg)
{
	off_t base = (off_t)(vm->memfd_offset + from * PAGE_SIZE_4K);
	off_t end = base + (off_t)(npages * PAGE_SIZE_4K), pos = base;

	while (pos < end) {
		off_t data = lseek(vm->memfd, pos, SEEK_DATA), hole;

		if (data < 0 || data >= end)
			break;
		hole = lseek(vm->memfd, data, SEEK_HOLE);
		if (hole < 0 || hole > end)
			hole = end;
		fn(from + (size_t)((data - base) / PAGE_SIZE_4K),
		   (size_t)((hole - data + PAGE_SIZE_4K - 1) / PAGE_SIZE_4K), arg);
		pos = hole;
	}
}

int vm_read_guest(const struct vm *vm, size_t first, size_t n, void *buf)
{
	off_t pos = (off_t)(vm->memfd_offset + first * PAGE_SIZE_4K);
	size_t want = n * PAGE_SIZE_4K, got = 0;

	while (got < want) {
		ssize_t r = pread(vm->memfd, (uint8_t *)buf + got, want - got, pos + (off_t)got);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0)
			return -EIO;
		got += (size_t)r;
	}
	return 0;
}

static void set_bits(size_t first, size_t n, void *arg)
{
	uint64_t *bits = arg;

	for (size_t p = first; p < first + n; p++)
		bits[p / 64] |= 1ull << (p % 64);
}

/* A bitmap with bit p set for each page of the region holding data in the guest memfd.
 * NULL when out of memory. */
static uint64_t *memfd_data_bitmap(const struct vm *vm)
{
	size_t npages = vm->length / PAGE_SIZE_4K;
	uint64_t *bits = calloc((npages + 63) / 64, sizeof(uint64_t));

	if (bits)
		vm_each_data_extent(vm, 0, npages, set_bits, bits);
	return bits;
}

/* Rebuilds the tiers' allocators from the page entries; refuses entries no daemon could have
 * written (a slot out of range, two pages on one slot, a blob that is not whole). */
static int claim_slots(struct vm *vm, char *err, size_t errlen)
{
	size_t bad;

	if (pagemap_count(vm->pm, PS_ZSHM) && (!vm->z || zshm_claim_all(vm, &bad))) {
		snprintf(err, errlen, "state is damaged: page %#zx names a compressed blob that %s",
			 vm->z ? bad : (size_t)0,
			 vm->z ? "is not whole or is shared" : "the shm tier cannot hold");
		return -EUCLEAN;
	}
	for (size_t p = 0; p < pagemap_npages(vm->pm); p++) {
		enum page_state st = pagemap_state(vm->pm, p);
		uint64_t slot = pagemap_slot(vm->pm, p);
		int r = 0;

		if (st == PS_SHM) /* a pool of grains holds blobs only */
			r = vm->z ? -ERANGE : shmpool_claim(vm->shm, slot);
		else if (st == PS_DISK)
			r = vm->disk ? disktier_claim(vm->disk, slot) : -ERANGE;
		if (r) {
			snprintf(err, errlen, "state is damaged: page %#zx %s %s slot %llu", p,
				 r == -EEXIST ? "shares" : "names a missing",
				 st == PS_SHM ? "shm" : "disk", (unsigned long long)slot);
			return -EUCLEAN;
		}
	}
	shmpool_settle(vm->shm);
	if (vm->disk)
		disktier_settle(vm->disk);
	return 0;
}

/* Adopts the tiers whose descriptors the shim kept, sized as the state says. */
static int adopt_tiers(struct vm *vm, const int *fds, int nfds, char *err, size_t errlen)
{
	const struct vmstate_geom *g = &vm->state.hdr->geom;
	int r = g->shm_compress ? shmpool_adopt_unit(fds[3], g->shm_slots, ZPOOL_GRAIN, &vm->shm)
				: shmpool_adopt(fds[3], g->shm_slots, &vm->shm);

	if (r) {
		snprintf(err, errlen, "the shm tier handed back is not the state's (%llu slots): %s",
			 (unsigned long long)g->shm_slots, strerror(-r));
		return r;
	}
	if (g->shm_compress != (uint32_t)vm->pol.shm_compress)
		log_info(vm->name,
			 "keeps [shm] compress = %s, as its shm tier was made; the policy's %s "
			 "applies when the VM starts again",
			 g->shm_compress ? zpool_alg_name(g->shm_compress) : "off",
			 vm->pol.shm_compress ? zpool_alg_name((unsigned)vm->pol.shm_compress)
					      : "off");
	if (g->shm_compress) {
		r = open_zpool(vm, err, errlen);
		if (r)
			return r;
	}
	if (!g->disk_slots)
		return 0;
	if (nfds < 5) {
		snprintf(err, errlen, "the state has a disk tier but no swap file was handed back");
		return -EPROTO;
	}
	vm->state.hdr->disk_path[sizeof(vm->state.hdr->disk_path) - 1] = 0;
	return disktier_adopt(fds[4], vm->state.hdr->disk_path, g->disk_slots, &vm->disk, err,
			      errlen);
}

/* The state comes back from QEMU, which could have written anything into it: its tiers may
 * not be larger than the policy now allows, and its swap file must be the one the policy
 * names, since the VM's end unlinks that path. */
static int check_adopted_limits(const struct vm *vm, char *err, size_t errlen)
{
	const struct vmstate_geom *g = &vm->state.hdr->geom;
	char path[POLICY_PATH_MAX];

	if (g->shm_slots > vm->pol.shm_max / PAGE_SIZE_4K ||
	    g->disk_slots > (vm->pol.disk_path[0] ? vm->pol.disk_max / PAGE_SIZE_4K : 0)) {
		snprintf(err, errlen, "state's tiers (%llu shm, %llu disk slots) exceed the policy's",
			 (unsigned long long)g->shm_slots, (unsigned long long)g->disk_slots);
		return -EPERM;
	}
	if (g->disk_slots && (policy_disk_path(&vm->pol, vm->name, path, sizeof(path)) ||
			      strncmp(path, vm->state.hdr->disk_path,
				      sizeof(vm->state.hdr->disk_path)))) {
		snprintf(err, errlen, "state's disk tier path is not the one the policy names");
		return -EPERM;
	}
	return 0;
}

/* Everything vm_adopt builds; on failure the caller frees it (fds still its own). */
static int adopt_build(struct vm *vm, const int *fds, int nfds, char *err, size_t errlen)
{
	struct vmstate_geom want;
	uint64_t *in_memfd;
	size_t changed;
	int r;

	state_geom(vm, &want);
	r = vmstate_open(fds[2], &want, &vm->state, err, errlen);
	if (!r)
		r = check_adopted_limits(vm, err, errlen);
	if (r)
		return r;
	r = adopt_tiers(vm, fds, nfds, err, errlen);
	if (r)
		return r;
	in_memfd = memfd_data_bitmap(vm);
	if (!in_memfd)
		return -ENOMEM;
	changed = pagemap_reconcile(vm->state.ent, vm->length / PAGE_SIZE_4K, in_memfd,
				    vm->stale_arming);
	free(in_memfd);
	r = vm_finish(vm, err, errlen);
	if (!r)
		r = claim_slots(vm, err, errlen);
	if (r)
		return r;
	/* A disk slot freed here may have been the target of an io_uring write the dead daemon
	 * left in flight; it cannot land after we reuse the slot: a dying task waits for its
	 * io_uring requests before its files are released (do_exit cancels them first), and we
	 * hold the socket lock its files held (main.c, lock_socket). */
	vm->state.hdr->adoptions++;
	log_info(vm->name,
		 "adopted (%llu times so far): %zu pages resident, %zu in shm (%zu compressed), "
		 "%zu on disk; %zu entries settled from the moves in flight",
		 (unsigned long long)vm->state.hdr->adoptions, pagemap_count(vm->pm, PS_RESIDENT),
		 pagemap_count(vm->pm, PS_SHM) + pagemap_count(vm->pm, PS_ZSHM),
		 pagemap_count(vm->pm, PS_ZSHM), pagemap_count(vm->pm, PS_DISK), changed);
	return 0;
}

int vm_adopt(const struct proto_register *req, const int *fds, int nfds,
	     const struct policy *pol, struct vm **out, char *err, size_t errlen)
{
	int kept[5] = {fds[0], fds[1], fds[2], -1, -1}; /* the state is copied, not kept */
	struct vm *vm;
	int r;

	if (nfds < 4 || nfds > 5) {
		snprintf(err, errlen, "a resume must carry the uffd, guest memfd, state and shm tier");
		return -EPROTO;
	}
	r = check_region(req, fds[0], fds[1], err, errlen);
	if (r)
		return r;
	vm = vm_new(req, pol);
	if (!vm)
		return -ENOMEM;
	/* Our own copies of what the shim keeps: whatever happens here, its descriptors stay
	 * its own, and a refused resume leaves nothing changed behind. */
	for (int i = 3; i < nfds; i++)
		if ((kept[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, 3)) < 0)
			r = -errno;
	vm->memfd = fds[1];
	vm->adopted = vm->wake_pending = true;
	vm->stale_arming = req->flags & PROTO_REG_ARMING;
	/* Answers to the dead daemon's armings may still come: ours must not share their
	 * sequence numbers. */
	vm->arm_seq = vm->arm_done_seq = 0x80000000u ^ (uint32_t)vm_now_ns();
	if (!r)
		r = adopt_build(vm, kept, nfds, err, errlen);
	if (r) {
		vm->memfd = -1; /* still the caller's */
		if (!vm->shm && kept[3] >= 0)
			close(kept[3]);
		if (!vm->disk && kept[4] >= 0)
			close(kept[4]);
		vm_destroy(vm);
		return r;
	}
	vm->uffd = fds[0];
	*out = vm;
	return 0;
}

int vm_keep_fds(const struct vm *vm, int fds[3])
{
	int n = 0;

	fds[n++] = vm->state.fd;
	fds[n++] = shmpool_fd(vm->shm);
	if (vm->disk)
		fds[n++] = disktier_fd(vm->disk);
	return n;
}

/* Starts (or starts again) the fault thread. Returns 0 or -errno. */
static int start_fault_thread(struct vm *vm)
{
	int r;

	atomic_store(&vm->fault_alive, true);
	r = pthread_create(&vm->fault_tid, NULL, fault_thread_main, vm);
	/* Not true again on success: a thread that already exited has stored false. */
	if (r)
		atomic_store(&vm->fault_alive, false);
	vm->fault_joined = r != 0;
	return -r;
}

int vm_start(struct vm *vm)
{
	int r = start_fault_thread(vm);

	if (r)
		return r;
	r = pthread_create(&vm->evict_tid, NULL, evict_thread_main, vm);
	if (r) {
		vm->stopping = true;
		(void)!write(vm->stop_efd, &(uint64_t){1}, sizeof(uint64_t));
		pthread_join(vm->fault_tid, NULL);
		return -r;
	}
	vm->threads_started = true;
	return 0;
}

/* Brings every tiered page back, with a ring of its own for the disk tier (the fault
 * thread's ring is the fault thread's alone). */
static int bring_back_all(struct vm *vm)
{
	struct disktier_io *io = NULL;
	uint8_t *bounce = aligned_alloc(PAGE_SIZE_4K, vm->pol.run_size);
	int r = bounce ? 0 : -ENOMEM;

	if (!r && vm->disk)
		r = disktier_io_create(vm->disk, bounce, vm->pol.run_size, 8, &io);
	gate_ring(vm, io, &vm->bg_gate);
	for (size_t p = 0; !r && p < pagemap_npages(vm->pm); p++) {
		int tries = 0;

		/* ENOMEM is the host short of memory for a moment: wait, as for a busy page. */
		while ((r = fault_bring_back(vm, io, bounce, p)) == -EAGAIN || r == -EBUSY ||
		       r == -ENOMEM) {
			if (++tries > 100000) {
				r = -ETIMEDOUT;
				break;
			}
			usleep(50);
		}
	}
	disktier_io_destroy(io);
	free(bounce);
	return r;
}

static int ask_shim_to_release(struct vm *vm)
{
	struct proto_hdr h;
	struct proto_reply rep;
	struct pollfd pfd = {.fd = vm->ctl_sock, .events = POLLIN};
	ssize_t n;
	int r;

	proto_hdr_init(&h, PROTO_RELEASE, sizeof(h));
	r = proto_send(vm->ctl_sock, &h, sizeof(h), NULL, 0);
	if (r)
		return r;
	/* The tracker's last arming may still answer first: skip it. */
	for (int tries = 0; tries < 16; tries++) {
		if (poll(&pfd, 1, 10000) <= 0)
			return -ETIMEDOUT;
		n = proto_recv(vm->ctl_sock, &rep, sizeof(rep), NULL, NULL);
		if (n > 0 && proto_hdr_check(&rep.hdr, (size_t)n) == 0 &&
		    rep.hdr.type == PROTO_ARM_DONE)
			continue;
		if (n != (ssize_t)sizeof(rep) || proto_hdr_check(&rep.hdr, (size_t)n))
			return -EPROTO;
		return rep.status;
	}
	return -EPROTO;
}

int vm_release(struct vm *vm, char *err, size_t errlen)
{
	int r;

	track_stop(vm);
	pthread_mutex_lock(&vm->lock);
	vm->evict_stop = true;
	pthread_cond_broadcast(&vm->evict_cv);
	pthread_mutex_unlock(&vm->lock);
	if (vm->threads_started && !vm->evict_joined) {
		pthread_join(vm->evict_tid, NULL);
		vm->evict_joined = true;
	}
	r = bring_back_all(vm);
	if (r) {
		snprintf(err, errlen, "cannot bring tiered pages back: %s", strerror(-r));
		return r;
	}
	r = ask_shim_to_release(vm);
	if (r)
		snprintf(err, errlen, "the shim did not unregister guest RAM: %s", strerror(-r));
	return r;
}

/* Joins t within ms milliseconds; false when it is still running. */
static bool join_within(pthread_t t, uint32_t ms)
{
	struct timespec until = vm_deadline_ms(ms);

	return pthread_timedjoin_np(t, NULL, &until) == 0;
}

void vm_quiesce(struct vm *vm)
{
	bool joined = true;

	track_stop(vm);
	if (!vm->threads_started)
		return;
	/* The evictor first, its run finished while faults are still served; then the fault
	 * thread, from when on the guest's faults wait for our successor. Past the bounds the
	 * exec goes on anyway: adoption settles a move in flight. */
	pthread_mutex_lock(&vm->lock);
	vm->evict_stop = true;
	pthread_cond_broadcast(&vm->evict_cv);
	pthread_mutex_unlock(&vm->lock);
	if (!vm->evict_joined)
		joined = vm->evict_joined = join_within(vm->evict_tid, 1000);
	pthread_mutex_lock(&vm->lock);
	vm->stopping = true;
	pthread_mutex_unlock(&vm->lock);
	(void)!write(vm->stop_efd, &(uint64_t){1}, sizeof(uint64_t));
	if (!join_within(vm->fault_tid, 1000) || !joined)
		log_warn(vm->name, "a thread did not stop within 1 s; its move is settled on adoption");
	vm->threads_started = false;
}

static void close_fd(int fd)
{
	if (fd >= 0)
		close(fd);
}

void vm_destroy(struct vm *vm)
{
	if (!vm)
		return;
	track_stop(vm);
	if (vm->threads_started) {
		pthread_mutex_lock(&vm->lock);
		vm->stopping = true;
		pthread_cond_broadcast(&vm->evict_cv);
		pthread_mutex_unlock(&vm->lock);
		(void)!write(vm->stop_efd, &(uint64_t){1}, sizeof(uint64_t));
		if (!vm->fault_joined)
			pthread_join(vm->fault_tid, NULL);
		if (!vm->evict_joined)
			pthread_join(vm->evict_tid, NULL);
	}
	free(vm->evict_src);
	disktier_io_destroy(vm->fault_io);
	disktier_io_destroy(vm->evict_io);
	diskq_leave(vm->dq); /* no ring of the VM is left to hold a share */
	disktier_close(vm->disk);
	free(vm->fault_bounce);
	free(vm->fault_batch);
	free(vm->evict_stage);
	free(vm->zscratch);
	zpool_destroy(vm->z);
	shmpool_destroy(vm->shm);
	pagemap_destroy(vm->pm);
	vmstate_close(&vm->state);
	wss_destroy(vm->wss);
	qmp_close(vm->plan.qmp);
	free(vm->armed);
	close_fd(vm->uffd);
	close_fd(vm->memfd);
	close_fd(vm->pidfd);
	close_fd(vm->wake_efd);
	close_fd(vm->stop_efd);
	pthread_cond_destroy(&vm->evict_cv);
	pthread_cond_destroy(&vm->track_cv);
	pthread_mutex_destroy(&vm->lock);
	pthread_mutex_destroy(&vm->event_lock);
	free(vm);
}

/* ---- Supervision ---- */

/* Whether the VM's process has exited, waiting up to timeout_ms for it. */
static bool process_exited(struct vm *vm, int timeout_ms)
{
	struct pollfd p = {.fd = vm->pidfd, .events = POLLIN};

	return vm->pidfd >= 0 && poll(&p, 1, timeout_ms) > 0;
}

bool vm_guest_gone(struct vm *vm, int err, int grace_ms)
{
	if (atomic_load(&vm->gone))
		return true;
	if (err != -ESRCH && err != -ENOENT && err != -EINVAL && err != -EFAULT)
		return false;
	if (err != -ESRCH && !process_exited(vm, grace_ms))
		return false;
	if (!atomic_exchange(&vm->gone, true))
		log_info(vm->name, "guest gone (pid %d): its memory is no longer served", vm->pid);
	return true;
}

void vm_fault_thread_exited(struct vm *vm, int err)
{
	pthread_mutex_lock(&vm->lock);
	snprintf(vm->fault_why, sizeof(vm->fault_why), "%s",
		 !err		 ? "asked to stop"
		 : err == -ESRCH ? "the guest's memory is gone"
				 : strerror(-err));
	vm->fault_exit_ns = vm_now_ns();
	pthread_mutex_unlock(&vm->lock);
	atomic_store(&vm->fault_alive, false);
}

bool vm_fault_thread_alive(struct vm *vm)
{
	return atomic_load(&vm->fault_alive);
}

int vm_check(struct vm *vm, char *why, size_t len)
{
	int r = 0;

	pthread_mutex_lock(&vm->lock);
	if (vm->failed) {
		err_set(why, len, "%s", vm->fail_why);
		r = -EIO;
	} else if (vm->threads_started && !vm->stopping && !vm_fault_thread_alive(vm)) {
		bool gone = atomic_load(&vm->gone) || process_exited(vm, 0);

		r = gone ? -ESRCH : -EPIPE;
		if (gone)
			err_set(why, len, "the guest has gone");
		else
			err_set(why, len, "the fault thread stopped (%s)", vm->fault_why);
	}
	pthread_mutex_unlock(&vm->lock);
	return r;
}

/* Starts the stopped fault thread again, unless it was already restarted within
 * RESTART_WINDOW_NS. Returns 0, or -EPIPE with why extended to say why not. */
static int restart_fault_thread(struct vm *vm, char *why, size_t len)
{
	uint64_t now = vm_now_ns(), lived, n;
	char stopped[256];
	int r;

	if (!vm->fault_joined)
		pthread_join(vm->fault_tid,
			     NULL); /* it has returned: fault_alive is its last act */
	vm->fault_joined = true;
	err_set(stopped, sizeof(stopped), "%s", why);
	pthread_mutex_lock(&vm->lock);
	lived = vm->fault_exit_ns - vm->fault_restart_ns;
	pthread_mutex_unlock(&vm->lock);
	if (vm->fault_restart_ns && lived < RESTART_WINDOW_NS) {
		err_set(why, len, "%s again, %llu ms after it was restarted", stopped,
			(unsigned long long)(lived / 1000000));
		return -EPIPE;
	}
	r = start_fault_thread(vm);
	if (r) {
		err_set(why, len, "%s and cannot be restarted: %s", stopped, strerror(-r));
		return -EPIPE;
	}
	/* The faults the old thread had read but not served are gone with it: wake every
	 * waiting thread of the guest, so each one's access is retried and faults again. */
	uffd_wake(vm->uffd, vm->host_addr, vm->length);
	vm->fault_restart_ns = now;
	pthread_mutex_lock(&vm->lock);
	n = ++vm->st->fault_thread_restarts;
	pthread_mutex_unlock(&vm->lock);
	log_warn(vm->name, "%s; restarted it (%llu restarts)", stopped, (unsigned long long)n);
	return 0;
}

static int signal_guest(struct vm *vm, int sig)
{
	return syscall(SYS_pidfd_send_signal, vm->pidfd, sig, NULL, 0) < 0 ? -errno : 0;
}

/* Marks the VM failed and stops its QEMU: nothing else may show it running while nobody
 * serves its faults. Failed and logged before the signal, so that whoever sees QEMU die
 * finds both. */
static void stop_guest(struct vm *vm, const char *why)
{
	int r;

	pthread_mutex_lock(&vm->lock);
	if (!vm->failed)
		snprintf(vm->fail_why, sizeof(vm->fail_why), "%s", why);
	vm->failed = true;
	pthread_mutex_unlock(&vm->lock);
	vm->kill_ns = vm_now_ns() + KILL_GRACE_NS;
	log_err(vm->name, "stopping QEMU (pid %d): %s", vm->pid, why);
	r = signal_guest(vm, SIGTERM);
	if (r)
		log_err(vm->name, "cannot send SIGTERM to QEMU (pid %d): %s", vm->pid,
			strerror(-r));
}

/* SIGKILL for a QEMU still running KILL_GRACE_NS after its SIGTERM. */
static void kill_guest(struct vm *vm)
{
	if (vm->killed || vm_now_ns() < vm->kill_ns || process_exited(vm, 0))
		return;
	vm->killed = true;
	log_warn(vm->name, "QEMU (pid %d) still runs %llu s after SIGTERM: SIGKILL", vm->pid,
		 (unsigned long long)(KILL_GRACE_NS / 1000000000ull));
	signal_guest(vm, SIGKILL);
}

void vm_supervise(struct vm *vm)
{
	char why[256];
	int r;

	if (vm->kill_ns) {
		kill_guest(vm);
		return;
	}
	r = vm_check(vm, why, sizeof(why));
	if (r == -EPIPE)
		r = restart_fault_thread(vm, why, sizeof(why));
	if (r == -EPIPE || r == -EIO)
		stop_guest(vm, why);
}
