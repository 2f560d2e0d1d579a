/* disktier: see disktier.h. Slots come from a slotmap; I/O goes through one io_uring per thread
 * with the swap file registered (index 0) and optionally one registered buffer region. */
#include "shmswap/disktier.h"

#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "shmswap/slotmap.h"
#include "uffd-mgr/log.h"

#define SLOT_SIZE 4096u
#define PIECE	  (1ull << 30) /* io_uring registers at most 1 GiB per buffer */
#define MAX_IO	  (1u << 30)   /* bytes per SQE, below the kernel's MAX_RW_COUNT (2 GiB - 4 KiB) */

enum { OP_READ, OP_WRITE, NOPS };

struct inject {
	_Atomic uint64_t rule; /* every << 32 | errno, 0 when off */
	_Atomic uint64_t seen; /* segments of this op since the rule was set */
};

struct tally {
	_Atomic uint64_t segs, bytes, errors;
};

/* Freed slots waiting for their punch (disktier_reclaim). */
struct extent {
	uint64_t first;
	uint32_t n;
};

struct disktier {
	int fd;
	bool direct;
	char *path;
	uint64_t nslots;
	struct slotmap *slots;
	struct inject inj[NOPS];
	struct tally count[NOPS];
	_Atomic uint64_t punch_errors, punches;
	pthread_mutex_t freed_lock; /* guards freed */
	/* Keeps allocations out while a reclaim gives slots back and punches a chunk they left
	 * wholly free: a punch after a reuse would destroy the new data. */
	pthread_mutex_t alloc_lock;
	_Atomic bool kept_blocks; /* a free slot may still hold blocks (release did not punch) */
	struct extent *freed;
	size_t nfreed, freed_cap;
	_Atomic uint64_t freed_slots; /* slots in freed */
};

/* One I/O in flight: segments seg..seg+nseg-1, adjacent on disk and in memory, merged into
 * len bytes of which done have moved; gated bytes are held from the io's gate. */
struct op {
	unsigned seg, nseg;
	uint64_t done, len, gated;
	bool write;
};

struct disktier_io {
	struct disktier *d;
	struct io_uring ring;
	bool have_ring;
	bool broken; /* the ring failed with I/O in flight: refuse further I/O */
	unsigned depth;
	char *fixed; /* NULL unless registered */
	size_t fixed_len;
	struct op *ops;
	struct op **free_ops;
	unsigned nfree;
	struct disktier_gate gate; /* acquire NULL: none */
};

/* One disktier_read/disktier_write call. */
struct xfer {
	struct disktier_io *io;
	const struct disktier_seg *segs;
	int op;
	int err;
	uint64_t moved, bytes, failed;
};

/* The sysctl that turns io_uring off, or -1 when it cannot be read (kernels before 6.6). */
static int uring_disabled_sysctl(void)
{
	FILE *f = fopen("/proc/sys/kernel/io_uring_disabled", "re");
	int v = -1;

	if (!f)
		return -1;
	if (fscanf(f, "%d", &v) != 1)
		v = -1;
	fclose(f);
	return v;
}

/* Rings are made per thread later, where no error line can be returned: find out now. */
static int probe_uring(const char *path, char *err, size_t errlen)
{
	struct io_uring ring;
	int ret = io_uring_queue_init(1, &ring, 0), off;

	if (!ret) {
		io_uring_queue_exit(&ring);
		return 0;
	}
	off = uring_disabled_sysctl();
	if (ret == -ENOSYS)
		err_set(err, errlen, "disk tier %s: io_uring is missing from this kernel", path);
	else if (off > 0)
		err_set(err, errlen,
			"disk tier %s: io_uring refused (%s): sysctl kernel.io_uring_disabled = %d",
			path, strerror(-ret), off);
	else
		err_set(err, errlen, "disk tier %s: io_uring_queue_init: %s", path, strerror(-ret));
	return ret;
}

static int open_file(struct disktier *d)
{
	/* Never through a symbolic link: a typo or a planted link must not make root truncate
	 * another file. */
	const int flags = O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW;
	struct stat st;

	/* No O_TRUNC: the file may be another live VM's swap (two policies naming one path);
	 * only once we hold its lock is it ours to empty. */
	d->fd = open(d->path, flags | O_DIRECT, 0600);
	d->direct = d->fd >= 0;
	if (d->fd < 0 && errno == EINVAL)
		d->fd = open(d->path, flags, 0600);
	if (d->fd < 0 || fstat(d->fd, &st) < 0)
		return -errno;
	if (!S_ISREG(st.st_mode))
		return -EINVAL; /* a device or fifo: not ours to truncate or unlink */
	if (st.st_nlink != 1)
		return -EMLINK; /* other names for it (hard links): some other file's data */
	if (st.st_uid != geteuid())
		return -EACCES; /* someone else's file */
	if (flock(d->fd, LOCK_EX | LOCK_NB) < 0)
		return errno == EWOULDBLOCK ? -EBUSY : -errno;
	if (ftruncate(d->fd, 0) < 0) /* stale contents of an earlier run mean nothing now */
		return -errno;
	/* A stale file keeps its mode through O_CREAT; it is about to hold guest memory. */
	if (fchmod(d->fd, 0600) < 0)
		return -errno;
	/* Nameless from now on: the file lives as long as a descriptor of it does (ours, the
	 * shim's in QEMU), so no crash of anybody leaves guest memory in a named file, and the
	 * path is free for the next VM that names it. */
	return unlink(d->path) < 0 ? -errno : 0;
}

/* A tier of nslots free slots at path, with no file yet, once io_uring is known to work here.
 * Returns 0 or -errno with err set. */
static int tier_new(const char *path, uint64_t nslots, struct disktier **out, char *err,
		    size_t errlen)
{
	struct disktier *d;
	int ret = probe_uring(path, err, errlen);

	if (ret)
		return ret;
	d = calloc(1, sizeof(*d));
	if (!d || !(d->path = strdup(path))) {
		free(d);
		err_set(err, errlen, "disk tier %s: out of memory", path);
		return -ENOMEM;
	}
	d->fd = -1;
	d->nslots = nslots;
	pthread_mutex_init(&d->freed_lock, NULL);
	pthread_mutex_init(&d->alloc_lock, NULL);
	ret = slotmap_create(nslots, &d->slots);
	if (ret) {
		err_set(err, errlen, "disk tier %s: slot map: %s", path, strerror(-ret));
		disktier_close(d);
		return ret;
	}
	*out = d;
	return 0;
}

int disktier_open(const char *path, uint64_t bytes, struct disktier **out, char *err, size_t errlen)
{
	struct disktier *d;
	int ret;

	if (bytes < SLOT_SIZE) {
		err_set(err, errlen, "disk tier %s: size %llu holds no 4 KiB slot", path,
			(unsigned long long)bytes);
		return -EINVAL;
	}
	ret = tier_new(path, bytes / SLOT_SIZE, &d, err, errlen);
	if (ret)
		return ret;
	ret = open_file(d);
	if (ret) {
		err_set(err, errlen, "disk tier %s: open: %s", path,
			ret == -EINVAL && d->fd >= 0 ? "not a regular file"
			: ret == -EBUSY		     ? "in use by another VM's disk tier (locked)"
			: ret == -ELOOP		     ? "a symbolic link, which is never followed"
			: ret == -EMLINK	     ? "it has other names (hard links); not truncating"
			: ret == -EACCES && d->fd >= 0 ? "owned by another user; not truncating"
						       : strerror(-ret));
		goto fail;
	}
	if (ftruncate(d->fd, (off_t)(d->nslots * SLOT_SIZE)) < 0) {
		ret = -errno;
		err_set(err, errlen, "disk tier %s: ftruncate to %llu bytes: %s", path,
			(unsigned long long)(d->nslots * SLOT_SIZE), strerror(-ret));
		goto fail;
	}
	*out = d;
	return 0;
fail:
	disktier_close(d);
	return ret;
}

int disktier_adopt(int fd, const char *path, uint64_t nslots, struct disktier **out, char *err,
		   size_t errlen)
{
	struct disktier *d;
	struct stat st;
	int fl = fcntl(fd, F_GETFL), ret;

	if (fl < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || !nslots ||
	    (uint64_t)st.st_size < nslots * SLOT_SIZE) {
		err_set(err, errlen, "disk tier %s: the descriptor handed back is not its swap file",
			path);
		return -EINVAL;
	}
	ret = tier_new(path, nslots, &d, err, errlen);
	if (ret)
		return ret;
	d->fd = fd;
	d->direct = fl & O_DIRECT;
	*out = d;
	return 0;
}

int disktier_claim(struct disktier *d, uint64_t slot)
{
	return slotmap_claim(d->slots, slot);
}

int disktier_fd(const struct disktier *d)
{
	return d->fd;
}

void disktier_close(struct disktier *d)
{
	if (!d)
		return;
	if (d->fd >= 0)
		close(d->fd);
	slotmap_destroy(d->slots);
	pthread_mutex_destroy(&d->freed_lock);
	pthread_mutex_destroy(&d->alloc_lock);
	free(d->freed);
	free(d->path);
	free(d);
}

/* Which freed extents are punched. A punch is a file system transaction that holds the file's
 * inode lock, and every O_DIRECT read of the tier waits for it: punching each slot a random
 * fault freed cost a disk fault 45 µs of its p50 here (139 against 87 µs). So an extent of at
 * least PUNCH_MIN_SLOTS is punched as it is given back; a smaller one is given back as it is
 * (its blocks stay allocated in this VM's own unlinked file, and are written over when reused),
 * and the aligned chunk of PUNCH_CHUNK_SLOTS around it is punched once it is wholly free. So
 * the file holds blocks only in chunks that still hold a page: at most 1 MiB per such chunk. */
#define PUNCH_MIN_SLOTS	  64u  /* 256 KiB */
#define PUNCH_CHUNK_SLOTS 256u /* 1 MiB */

/* Punches the file range of n slots from first. EOPNOTSUPP (ramfs) only means the space stays
 * allocated until the file is closed; any other failure is counted. */
static void punch(struct disktier *d, uint64_t first, uint64_t n)
{
	if (fallocate(d->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)(first * SLOT_SIZE),
		      (off_t)(n * SLOT_SIZE)) < 0 &&
	    errno != EOPNOTSUPP)
		atomic_fetch_add(&d->punch_errors, 1);
	atomic_fetch_add_explicit(&d->punches, 1, memory_order_relaxed);
}

/* Gives n freed slots from first back to the allocator, punched as the comment above says.
 * alloc_lock held. */
static void release(struct disktier *d, uint64_t first, uint64_t n)
{
	uint64_t edge[2] = {first / PUNCH_CHUNK_SLOTS, (first + n - 1) / PUNCH_CHUNK_SLOTS};

	if (n >= PUNCH_MIN_SLOTS)
		punch(d, first, n); /* before the slots can be reused */
	else
		atomic_store(&d->kept_blocks, true);
	for (uint64_t f = first, left = n; left;) {
		uint32_t k = left > UINT32_MAX ? UINT32_MAX : (uint32_t)left;

		slotmap_free(d->slots, f, k);
		f += k;
		left -= k;
	}
	/* The chunks at either end may now be wholly free, with blocks kept by earlier releases
	 * (the chunks between them were punched with the extent). */
	for (int i = 0; i < 2; i++) {
		uint64_t cf = edge[i] * PUNCH_CHUNK_SLOTS;
		uint64_t cn = cf + PUNCH_CHUNK_SLOTS > d->nslots ? d->nslots - cf : PUNCH_CHUNK_SLOTS;

		if (i && edge[1] == edge[0])
			break;
		if (n >= PUNCH_MIN_SLOTS && first <= cf && first + n >= cf + cn)
			continue; /* punched with the extent */
		if (slotmap_is_free(d->slots, cf, cn))
			punch(d, cf, cn);
	}
}

static int extent_cmp(const void *a, const void *b)
{
	const struct extent *x = a, *y = b;

	return x->first < y->first ? -1 : x->first > y->first;
}

uint64_t disktier_reclaim(struct disktier *d)
{
	struct extent *e;
	size_t n;
	uint64_t total = 0;

	pthread_mutex_lock(&d->freed_lock);
	e = d->freed;
	n = d->nfreed;
	d->freed = NULL;
	d->nfreed = d->freed_cap = 0;
	pthread_mutex_unlock(&d->freed_lock);
	if (!n)
		return 0;
	/* Sorted, adjacent extents go back together: one punch for what many faults freed. */
	qsort(e, n, sizeof(*e), extent_cmp);
	pthread_mutex_lock(&d->alloc_lock);
	for (size_t i = 0; i < n;) {
		uint64_t first = e[i].first, len = e[i].n;

		for (i++; i < n && e[i].first == first + len; i++)
			len += e[i].n;
		release(d, first, len);
		total += len;
	}
	pthread_mutex_unlock(&d->alloc_lock);
	atomic_fetch_sub(&d->freed_slots, total);
	free(e);
	return total;
}

int64_t disktier_alloc(struct disktier *d, uint32_t want, uint32_t *got)
{
	int64_t s;

	pthread_mutex_lock(&d->alloc_lock);
	s = slotmap_alloc(d->slots, want, got);
	pthread_mutex_unlock(&d->alloc_lock);
	/* Slots freed but not yet given back are free space too: reclaim them rather than fail. */
	if (s == -ENOSPC && disktier_reclaim(d)) {
		pthread_mutex_lock(&d->alloc_lock);
		s = slotmap_alloc(d->slots, want, got);
		pthread_mutex_unlock(&d->alloc_lock);
	}
	return s;
}

/* Appends an extent to the freed list, merged with the last one when adjacent. Returns false
 * when the list cannot grow. Lock held. */
static bool note_freed(struct disktier *d, uint64_t first, uint32_t n)
{
	struct extent *last = d->nfreed ? &d->freed[d->nfreed - 1] : NULL;

	if (last && last->first + last->n == first && last->n <= UINT32_MAX - n) {
		last->n += n;
		return true;
	}
	if (last && first + n == last->first && last->n <= UINT32_MAX - n) {
		last->first = first;
		last->n += n;
		return true;
	}
	if (d->nfreed == d->freed_cap) {
		size_t cap = d->freed_cap ? d->freed_cap * 2 : 64;
		struct extent *e = realloc(d->freed, cap * sizeof(*e));

		if (!e)
			return false;
		d->freed = e;
		d->freed_cap = cap;
	}
	d->freed[d->nfreed++] = (struct extent){first, n};
	return true;
}

void disktier_free(struct disktier *d, uint64_t first, uint32_t n)
{
	bool noted;

	/* No punch here: this is called on the fault path, under the VM's lock, and a punch is a
	 * file system transaction. The slots stay taken until disktier_reclaim gives them back. */
	pthread_mutex_lock(&d->freed_lock);
	noted = note_freed(d, first, n);
	pthread_mutex_unlock(&d->freed_lock);
	if (noted)
		atomic_fetch_add(&d->freed_slots, n);
	else { /* out of memory: give them back now rather than lose them */
		pthread_mutex_lock(&d->alloc_lock);
		release(d, first, n);
		pthread_mutex_unlock(&d->alloc_lock);
	}
}

uint64_t disktier_slots(const struct disktier *d)
{
	return d->nslots;
}

uint64_t disktier_used(struct disktier *d)
{
	uint64_t freed = atomic_load(&d->freed_slots), used = slotmap_used(d->slots);

	return used > freed ? used - freed : 0;
}

bool disktier_direct(const struct disktier *d)
{
	return d->direct;
}

const char *disktier_path(const struct disktier *d)
{
	return d->path;
}

/* Registered buffers are charged to RLIMIT_MEMLOCK unless the process has CAP_IPC_LOCK. Lift
 * the limit for the whole process (needs CAP_SYS_RESOURCE), else raise the soft limit to the
 * hard one. Returns 0 when the limit went up. */
static int raise_memlock(void)
{
	struct rlimit rl = {RLIM_INFINITY, RLIM_INFINITY};

	if (!setrlimit(RLIMIT_MEMLOCK, &rl))
		return 0;
	if (getrlimit(RLIMIT_MEMLOCK, &rl) || rl.rlim_cur == rl.rlim_max)
		return -EPERM;
	rl.rlim_cur = rl.rlim_max;
	return setrlimit(RLIMIT_MEMLOCK, &rl) ? -errno : 0;
}

static int register_fixed(struct disktier_io *io, char *fixed, size_t len)
{
	size_t n = (len + PIECE - 1) / PIECE;
	struct iovec *iov = calloc(n, sizeof(*iov));
	int ret;

	if (!iov)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		iov[i].iov_base = fixed + i * PIECE;
		iov[i].iov_len = len - i * PIECE < PIECE ? len - i * PIECE : PIECE;
	}
	ret = io_uring_register_buffers(&io->ring, iov, (unsigned)n);
	if (ret == -ENOMEM && !raise_memlock())
		ret = io_uring_register_buffers(&io->ring, iov, (unsigned)n);
	free(iov);
	if (!ret) {
		io->fixed = fixed;
		io->fixed_len = len;
	}
	return ret;
}

static int init_ring(struct disktier_io *io, unsigned depth)
{
	struct io_uring_params p = {.flags = IORING_SETUP_COOP_TASKRUN};
	int ret;

	/* COOP_TASKRUN (5.19) spares an IPI per completion: this thread always waits in
	 * io_uring_enter for its completions anyway. */
	ret = io_uring_queue_init_params(depth, &io->ring, &p);
	if (ret == -EINVAL) {
		memset(&p, 0, sizeof(p));
		ret = io_uring_queue_init_params(depth, &io->ring, &p);
	}
	/* Recent kernels (seen on 6.18) charge the rings themselves to RLIMIT_MEMLOCK too. */
	if (ret == -ENOMEM && !raise_memlock()) {
		unsigned flags = p.flags;

		memset(&p, 0, sizeof(p));
		p.flags = flags;
		ret = io_uring_queue_init_params(depth, &io->ring, &p);
	}
	io->have_ring = !ret;
	return ret;
}

int disktier_io_create(struct disktier *d, void *fixed, size_t fixed_len, unsigned depth,
		       struct disktier_io **out)
{
	struct disktier_io *io;
	int ret;

	if (!depth ||
	    (fixed && (!fixed_len || (uintptr_t)fixed % SLOT_SIZE || fixed_len % SLOT_SIZE)))
		return -EINVAL;
	io = calloc(1, sizeof(*io));
	if (!io)
		return -ENOMEM;
	io->d = d;
	io->depth = depth;
	io->ops = calloc(depth, sizeof(*io->ops));
	io->free_ops = calloc(depth, sizeof(*io->free_ops));
	ret = -ENOMEM;
	if (!io->ops || !io->free_ops)
		goto fail;
	for (unsigned i = 0; i < depth; i++)
		io->free_ops[io->nfree++] = &io->ops[i];
	ret = init_ring(io, depth);
	if (ret)
		goto fail;
	ret = io_uring_register_files(&io->ring, &d->fd, 1);
	if (ret)
		goto fail;
	if (fixed)
		register_fixed(io, fixed, fixed_len); /* failure: plain READ/WRITE */
	*out = io;
	return 0;
fail:
	disktier_io_destroy(io);
	return ret;
}

void disktier_io_destroy(struct disktier_io *io)
{
	if (!io)
		return;
	if (io->have_ring)
		io_uring_queue_exit(&io->ring);
	free(io->free_ops);
	free(io->ops);
	free(io);
}

bool disktier_io_fixed(const struct disktier_io *io)
{
	return io->fixed != NULL;
}

void disktier_io_set_gate(struct disktier_io *io, const struct disktier_gate *gate)
{
	io->gate = gate ? *gate : (struct disktier_gate){0};
}

static int check_segs(const struct disktier *d, const struct disktier_seg *segs, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		const struct disktier_seg *s = &segs[i];

		if (!s->npages || (uintptr_t)s->buf % SLOT_SIZE || s->slot >= d->nslots ||
		    s->npages > d->nslots - s->slot)
			return -EINVAL;
	}
	return 0;
}

/* Returns the injected -errno for the next segment of op, or 0. */
static int injected(struct disktier *d, int op)
{
	uint64_t rule = atomic_load_explicit(&d->inj[op].rule, memory_order_relaxed);
	uint32_t every = (uint32_t)(rule >> 32);
	uint64_t n;

	if (!every)
		return 0;
	n = atomic_fetch_add_explicit(&d->inj[op].seen, 1, memory_order_relaxed) + 1;
	return n % every ? 0 : -(int)(uint32_t)rule;
}

/* The registered buffer holding all of [buf, buf+len) of op, with *n cut at its end for the
 * piece at at; -1 when the op's memory is not wholly inside the fixed region. */
static int fixed_index(const struct disktier_io *io, const char *buf, uint64_t len, char *at,
		       unsigned *n)
{
	uintptr_t base = (uintptr_t)io->fixed, b = (uintptr_t)buf;
	uint64_t pos, piece_end;
	int idx;

	if (!io->fixed || b < base || b - base > io->fixed_len || len > io->fixed_len - (b - base))
		return -1;
	pos = (uintptr_t)at - base;
	idx = (int)(pos / PIECE);
	piece_end = (uint64_t)(idx + 1) * PIECE;
	if (pos + *n > piece_end)
		*n = (unsigned)(piece_end - pos);
	return idx;
}

/* Queues the rest of op, or the part of it one SQE can take. */
static void queue_rest(struct xfer *x, struct op *op)
{
	const struct disktier_seg *s = &x->segs[op->seg];
	struct io_uring *ring = &x->io->ring;
	uint64_t left = op->len - op->done;
	uint64_t off = s->slot * SLOT_SIZE + op->done;
	char *at = (char *)s->buf + op->done;
	unsigned len = left > MAX_IO ? MAX_IO : (unsigned)left;
	int idx = fixed_index(x->io, s->buf, op->len, at, &len);
	struct io_uring_sqe *sqe;

	/* Every op holds at most one SQE, queued or in the kernel, and the SQ has at least depth
	 * entries, so this loop never turns: it only guards against a broken invariant. */
	while (!(sqe = io_uring_get_sqe(ring)))
		io_uring_submit(ring);
	if (idx >= 0 && x->op == OP_WRITE)
		io_uring_prep_write_fixed(sqe, 0, at, len, off, idx);
	else if (idx >= 0)
		io_uring_prep_read_fixed(sqe, 0, at, len, off, idx);
	else if (x->op == OP_WRITE)
		io_uring_prep_write(sqe, 0, at, len, off);
	else
		io_uring_prep_read(sqe, 0, at, len, off);
	sqe->flags |= IOSQE_FIXED_FILE;
	io_uring_sqe_set_data(sqe, op);
}

static void seg_failed(struct xfer *x, unsigned nseg, int err)
{
	x->failed += nseg;
	if (!x->err)
		x->err = err;
}

/* How many segments from i on move as one I/O: those that follow each other both in the file
 * and in memory, up to what one SQE takes. Under fault injection none merge, so that the
 * injected Nth segment is the Nth the caller gave. */
static unsigned mergeable(const struct xfer *x, unsigned i, unsigned nsegs, uint64_t *len)
{
	const struct disktier_seg *s = x->segs;
	unsigned j = i + 1;

	*len = (uint64_t)s[i].npages * SLOT_SIZE;
	if (atomic_load_explicit(&x->io->d->inj[x->op].rule, memory_order_relaxed))
		return 1;
	while (j < nsegs && s[j].slot == s[j - 1].slot + s[j - 1].npages &&
	       (char *)s[j].buf == (char *)s[j - 1].buf + (size_t)s[j - 1].npages * SLOT_SIZE &&
	       *len + (uint64_t)s[j].npages * SLOT_SIZE <= MAX_IO) {
		*len += (uint64_t)s[j].npages * SLOT_SIZE;
		j++;
	}
	return j - i;
}

/* Starts the I/O of segment *next (and of those merged with it), advancing *next. Returns 1
 * when it is in flight, 0 when it failed at once, -EAGAIN when the gate says not now (only
 * when busy: with I/O of ours in flight, the gate does not make us wait). */
static int start_seg(struct xfer *x, unsigned *next, unsigned nsegs, bool busy)
{
	struct disktier_io *io = x->io;
	uint64_t len;
	unsigned n = mergeable(x, *next, nsegs, &len);
	bool write = x->op == OP_WRITE;
	struct op *op;
	int err;

	if (io->gate.acquire && io->gate.acquire(io->gate.arg, write, len, !busy))
		return -EAGAIN;
	err = injected(io->d, x->op); /* after the gate: asked once per segment */
	if (err) {
		if (io->gate.acquire)
			io->gate.release(io->gate.arg, write, len);
		seg_failed(x, 1, err);
		(*next)++;
		return 0;
	}
	op = io->free_ops[--io->nfree];
	*op = (struct op){.seg = *next, .nseg = n, .len = len, .write = write};
	op->gated = io->gate.acquire ? len : 0;
	*next += n;
	queue_rest(x, op);
	return 1;
}

static void ungate(struct disktier_io *io, struct op *op)
{
	if (op->gated)
		io->gate.release(io->gate.arg, op->write, op->gated);
	op->gated = 0;
}

/* Accounts a completion. Returns true when its op is finished (moved or failed), false when
 * the rest of a short transfer was queued. */
static bool complete(struct xfer *x, struct op *op, int res)
{
	if (res > 0) {
		op->done += (unsigned)res;
		x->bytes += (unsigned)res;
		if (op->done < op->len) {
			queue_rest(x, op);
			return false;
		}
		x->moved += op->nseg;
	} else {
		/* 0 is no progress: an end of file, which a file sized to its slots lacks. */
		seg_failed(x, op->nseg, res < 0 ? res : -EIO);
	}
	ungate(x->io, op);
	x->io->free_ops[x->io->nfree++] = op;
	return true;
}

/* Submits what is queued and waits for one completion, then accounts every completion there
 * is. Returns the number of ops finished, or -errno when the ring itself failed. */
static int submit_and_reap(struct xfer *x)
{
	struct io_uring *ring = &x->io->ring;
	struct io_uring_cqe *cqe;
	int ret = io_uring_submit_and_wait(ring, 1), done = 0;

	/* EINTR: a signal; EAGAIN/EBUSY: the kernel is short of requests or has completions to
	 * flush: reaping what is there and coming back is the cure for each. */
	if (ret < 0 && ret != -EINTR && ret != -EAGAIN && ret != -EBUSY)
		return ret;
	while (!io_uring_peek_cqe(ring, &cqe)) {
		struct op *op = io_uring_cqe_get_data(cqe);
		int res = cqe->res;

		io_uring_cqe_seen(ring, cqe);
		done += complete(x, op, res);
	}
	return done;
}

static void account(struct disktier *d, const struct xfer *x)
{
	struct tally *t = &d->count[x->op];

	atomic_fetch_add_explicit(&t->segs, x->moved, memory_order_relaxed);
	atomic_fetch_add_explicit(&t->bytes, x->bytes, memory_order_relaxed);
	atomic_fetch_add_explicit(&t->errors, x->failed, memory_order_relaxed);
}

static int transfer(struct disktier_io *io, const struct disktier_seg *segs, unsigned nsegs, int op)
{
	struct xfer x = {.io = io, .segs = segs, .op = op};
	unsigned next = 0, inflight = 0;
	int ret;

	if (io->broken)
		return -EIO;
	ret = check_segs(io->d, segs, nsegs);
	if (ret)
		return ret;
	while (next < nsegs || inflight) {
		while (!x.err && next < nsegs && inflight < io->depth) {
			int r = start_seg(&x, &next, nsegs, inflight > 0);

			if (r < 0) /* the gate: reap ours first, which frees our share */
				break;
			inflight += (unsigned)r;
		}
		if (!inflight)
			break;
		ret = submit_and_reap(&x);
		if (ret < 0) {
			/* io_uring_enter failed outright with I/O in flight that may still land in
			 * the caller's buffers: this ring can no longer keep its contract. Its
			 * share of the gate goes back: nothing of it will be reaped. */
			io->broken = true;
			seg_failed(&x, 1, ret);
			for (unsigned i = 0; i < io->depth; i++)
				ungate(io, &io->ops[i]);
			break;
		}
		inflight -= (unsigned)ret;
	}
	account(io->d, &x);
	return x.err;
}

static void punch_extent(uint64_t first, uint64_t n, void *arg)
{
	punch(arg, first, n);
}

/* The file system is full: punches every free slot, the blocks release() kept included.
 * Returns whether there were such blocks (a write may now find room). */
static bool give_back_kept(struct disktier *d)
{
	if (!atomic_exchange(&d->kept_blocks, false))
		return false;
	pthread_mutex_lock(&d->alloc_lock);
	slotmap_each_free(d->slots, punch_extent, d);
	pthread_mutex_unlock(&d->alloc_lock);
	return true;
}

void disktier_settle(struct disktier *d)
{
	slotmap_each_free(d->slots, punch_extent, d);
}

int disktier_write(struct disktier_io *io, const struct disktier_seg *segs, unsigned nsegs)
{
	int r = transfer(io, segs, nsegs, OP_WRITE);

	/* Once more, whole (the same bytes to the same slots), when freed blocks were kept. */
	if (r == -ENOSPC && give_back_kept(io->d))
		r = transfer(io, segs, nsegs, OP_WRITE);
	return r;
}

int disktier_read(struct disktier_io *io, const struct disktier_seg *segs, unsigned nsegs)
{
	return transfer(io, segs, nsegs, OP_READ);
}

static const struct {
	const char *name;
	int op;
} inject_ops[] = {{"read", OP_READ}, {"write", OP_WRITE}};

static const struct {
	const char *name;
	int err;
} inject_errs[] = {{"EIO", EIO}, {"ENOSPC", ENOSPC}};

/* Returns p past word when p starts with it, else NULL. */
static const char *match(const char *p, const char *word)
{
	size_t n = strlen(word);

	return strncmp(p, word, n) ? NULL : p + n;
}

/* Parses one "OP:N:ERR" at *p into op and rule, leaving *p after it. Returns 0 or -EINVAL. */
static int parse_rule(const char **p, int *op, uint64_t *rule)
{
	const char *s = *p, *e = NULL;
	unsigned long long every;
	char *end;
	size_t i;

	for (i = 0; i < sizeof(inject_ops) / sizeof(inject_ops[0]) && !e; i++) {
		if ((e = match(s, inject_ops[i].name)) && *e == ':')
			*op = inject_ops[i].op;
		else
			e = NULL;
	}
	if (!e || e[1] < '0' || e[1] > '9')
		return -EINVAL;
	errno = 0;
	every = strtoull(e + 1, &end, 10);
	if (errno || !every || every > UINT32_MAX || *end != ':')
		return -EINVAL;
	for (i = 0, e = NULL; i < sizeof(inject_errs) / sizeof(inject_errs[0]) && !e; i++) {
		if ((e = match(end + 1, inject_errs[i].name)) && (*e == ',' || !*e))
			*rule = every << 32 | (uint32_t)inject_errs[i].err;
		else
			e = NULL;
	}
	if (!e)
		return -EINVAL;
	*p = e;
	return 0;
}

int disktier_set_injection(struct disktier *d, const char *spec)
{
	uint64_t rule[NOPS] = {0};
	const char *p = spec;

	if (!spec)
		return -EINVAL;
	while (*p) {
		uint64_t r;
		int op, ret = parse_rule(&p, &op, &r);

		if (ret || rule[op])
			return -EINVAL;
		rule[op] = r;
		if (*p == ',' && !*++p)
			return -EINVAL; /* a trailing comma */
	}
	for (int op = 0; op < NOPS; op++) {
		atomic_store(&d->inj[op].rule, 0);
		atomic_store(&d->inj[op].seen, 0);
		atomic_store(&d->inj[op].rule, rule[op]);
	}
	return 0;
}

void disktier_get_counters(struct disktier *d, struct disktier_counters *out)
{
	out->reads = atomic_load(&d->count[OP_READ].segs);
	out->writes = atomic_load(&d->count[OP_WRITE].segs);
	out->read_bytes = atomic_load(&d->count[OP_READ].bytes);
	out->write_bytes = atomic_load(&d->count[OP_WRITE].bytes);
	out->read_errors = atomic_load(&d->count[OP_READ].errors);
	out->write_errors = atomic_load(&d->count[OP_WRITE].errors);
	out->punch_errors = atomic_load(&d->punch_errors);
	out->punches = atomic_load(&d->punches);
	out->unpunched = atomic_load(&d->freed_slots);
}
