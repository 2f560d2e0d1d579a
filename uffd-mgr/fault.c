/* fault: see fault.h.
 *
 * Order matters: while a REMOVE event is unread every uffd ioctl fails with EAGAIN, and a
 * REMOVE can arrive after a fault it causally precedes. So each pass drains the queue,
 * applies every REMOVE, then serves the faults it holds; an ioctl that says EAGAIN sends it
 * back to draining with the fault kept. A fault on a page the evictor is moving is parked
 * until the evictor signals wake_efd.
 *
 * No fault is ever dropped while the guest lives: ENOMEM from the kernel is host memory
 * pressure, so the fault is parked and retried with a backoff; the queue never takes a message
 * from the kernel it has no room for; a fault parked past [fault] stall_warn is reported with
 * what it waits on; the thread's exit is recorded for the control loop (vm_supervise), which
 * restarts it or stops the VM. Only ESRCH (the guest's address space is gone) ends it. */
#include "uffd-mgr/fault.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "uffd-mgr/hooks.h"
#include "uffd-mgr/log.h"
#include "uffd-mgr/track.h"
#include "uffd-mgr/uffd.h"
#include "uffd-mgr/vm.h"
#include "uffd-mgr/zshm.h"

#define READ_BATCH 64
/* Faults the queue holds room for from the start: more than a guest has vCPUs faulting, so
 * growing it (an allocation that can fail) is rare. */
#define QUEUE_PREALLOC 256
/* After ENOMEM a fault is retried after 1 ms, doubling up to 100 ms. */
#define ENOMEM_BACKOFF_MIN_NS 1000000ull
#define ENOMEM_BACKOFF_MAX_NS 100000000ull
/* Longest a fault waits for the evictor to make room before it is served anyway: the limit
 * slows the guest down, it never stops it (an evictor that cannot keep up must not hang a
 * guest). */
#define THROTTLE_MAX_NS (100 * 1000000ull)

/* What a parked fault waits on, for the watchdog's report. */
enum wait_on { WAIT_NONE, WAIT_MOVE, WAIT_DISK, WAIT_THROTTLE, WAIT_ENOMEM, WAIT_DRAIN };

static const char *const wait_names[] = {
    [WAIT_NONE] = "its turn",
    [WAIT_MOVE] = "its run, which is being evicted, demoted or read from disk",
    [WAIT_DISK] = "a disk read that failed, to be retried",
    [WAIT_THROTTLE] = "the evictor to make room (throttle)",
    [WAIT_ENOMEM] = "host memory (ENOMEM, retried)",
    [WAIT_DRAIN] = "a discard event to be read first",
};

struct pending {
	uint64_t addr;
	uint64_t flags;
	uint64_t read_ns;
	uint64_t retry_ns;     /* after ENOMEM: not tried again before this */
	uint64_t disk_fail_ns; /* its first failed disk read; 0 = none */
	uint32_t enomem_tries;
	uint8_t wait; /* enum wait_on */
	bool throttled;
	bool stall_reported;
};

struct fault_queue {
	struct pending *q;
	size_t n, cap;
};

static int queue_grow(struct fault_queue *fq)
{
	size_t cap = fq->cap ? fq->cap * 2 : QUEUE_PREALLOC;
	struct pending *q = realloc(fq->q, cap * sizeof(*q));

	if (!q)
		return -ENOMEM;
	fq->q = q;
	fq->cap = cap;
	return 0;
}

/* How many messages may be read now: a batch once there is room for one; fewer when memory
 * is short, 0 when the queue is full. Then the rest stays unread in the kernel's queue until
 * parked faults are served: a message is never read without a place to keep it. */
static size_t queue_room(struct fault_queue *fq)
{
	size_t room;

	if (fq->cap - fq->n < READ_BATCH)
		(void)queue_grow(fq);
	room = fq->cap - fq->n;
	return room < READ_BATCH ? room : READ_BATCH;
}

struct holes {
	size_t first;
	uint8_t *is_hole;
};

static void not_hole(size_t first, size_t n, void *arg)
{
	struct holes *h = arg;

	memset(h->is_hole + (first - h->first), 0, n);
}

/* Sets is_hole[i] for each page first_page + i of the range that is a hole in the memfd. */
static void find_holes(struct vm *vm, size_t first_page, size_t npages, uint8_t *is_hole)
{
	struct holes h = {first_page, is_hole};

	memset(is_hole, 1, npages);
	vm_each_data_extent(vm, first_page, npages, not_hole, &h);
}

static void free_slots(struct vm *vm, enum page_state st, uint64_t slot, size_t n)
{
	if (st == PS_SHM)
		shmpool_free(vm->shm, slot, (uint32_t)n);
	else
		disktier_free(vm->disk, slot, (uint32_t)n);
}

/* A discard (MADV_DONTNEED/REMOVE by QEMU): tiered copies are dropped and the pages become
 * zero; a resident page becomes zero only if it really is a hole now; a page being moved
 * (evicted or demoted) is flagged and settled at its commit. QEMU punches a hole and then
 * madvises; the shim turns that into madvise, punch, madvise (see qemu-glue/shim.c), so the
 * first REMOVE drops the tier copies before the punch and no run brought back for a
 * neighbour's fault can put old bytes into a discarded page; the second one, after the punch,
 * finds the resident pages as holes. */
static void apply_remove(struct vm *vm, uint64_t start, uint64_t end)
{
	size_t first, last, n;
	uint8_t *is_hole;
	bool held = false;

	if (end <= vm->host_addr || start >= vm->host_addr + vm->length)
		return;
	if (start < vm->host_addr)
		start = vm->host_addr;
	if (end > vm->host_addr + vm->length)
		end = vm->host_addr + vm->length;
	first = (start - vm->host_addr) / PAGE_SIZE_4K;
	last = (end - vm->host_addr + PAGE_SIZE_4K - 1) / PAGE_SIZE_4K;
	n = last - first;
	is_hole = malloc(n);
	if (!is_hole) {
		log_err(vm->name, "out of memory applying a discard of %zu pages", n);
		return;
	}
	/* The holes are looked for under the lock: a batch (evictor thread) may fill one
	 * between a look without it and the loop below, and a page found a hole but holding
	 * data would be called zero while the guest sees the data. */
	pthread_mutex_lock(&vm->lock);
	find_holes(vm, first, n, is_hole);
	for (size_t i = 0; i < n; i++) {
		size_t p = first + i;
		enum page_state st = pagemap_state(vm->pm, p);

		unsigned fl = pagemap_flags(vm->pm, p);

		/* Data under a madvise that is not the tracker's: a punch may follow. */
		if (st == PS_RESIDENT && !is_hole[i] && !(fl & (PF_ARMING | PF_EVICTING)))
			held = true;

		/* PF_ARMING stays until the arming has ended (track.c, end_arming): this REMOVE
		 * may be a discard's, the arming's own still to come, and a page evicted in
		 * between would take that one for a discard. An armed page is resident and not
		 * evictable, so the hole check below decides, as for any resident page. */
		if (fl & PF_EVICTING) {
			/* the mover settles it at its commit */
			pagemap_set_flags(vm->pm, p, PF_EVICTING | PF_DISCARDED);
		} else if (st == PS_SHM || st == PS_DISK) {
			uint64_t slot = pagemap_slot(vm->pm, p);

			pagemap_set(vm->pm, p, PS_ZERO, 0);
			free_slots(vm, st, slot, 1);
		} else if (st == PS_ZSHM) {
			uint64_t ref = pagemap_slot(vm->pm, p);

			pagemap_set(vm->pm, p, PS_ZERO, 0);
			zshm_put(vm, p, ref);
		} else if (st == PS_RESIDENT && is_hole[i]) {
			pagemap_set(vm->pm, p, PS_ZERO, 0);
		}
	}
	if (held) /* see struct vm_discard */
		vm->discards[vm->discard_next++ % VM_DISCARD_RING] = (struct vm_discard){
		    .first = first, .end = first + n, .until_ns = vm_now_ns() + VM_DISCARD_HOLD_NS};
	vm->st->removes++;
	vm->st->removed_pages += n; /* arming included */
	pthread_mutex_unlock(&vm->lock);
	free(is_hole);
}

/* Serves a missing fault with a zero page. Lock held. */
static int serve_zero(struct vm *vm, size_t page, enum page_state st)
{
	int r = uffd_zeropage(vm->uffd, vm_page_addr(vm, page), PAGE_SIZE_4K);

	if (r == -EEXIST) { /* a duplicate: someone served it already */
		vm->st->faults_dup++;
		r = uffd_wake(vm->uffd, vm_page_addr(vm, page), PAGE_SIZE_4K);
		if (st != PS_RESIDENT)
			pagemap_set(vm->pm, page, PS_RESIDENT, 0);
		return r;
	}
	if (r)
		return r;
	if (st == PS_RESIDENT)
		vm->st->faults_discarded++;
	else
		vm->st->faults_zero++;
	pagemap_set(vm->pm, page, PS_RESIDENT, 0);
	pagemap_touch(vm->pm, page);
	return 0;
}

/* Whether page has never been touched: no home, nothing in flight, not discarded (a discarded
 * page is PS_ZERO). Only such pages may be filled ahead of the guest. Lock held. */
static bool untouched(const struct vm *vm, size_t page)
{
	return pagemap_state(vm->pm, page) == PS_NONE && !pagemap_flags(vm->pm, page);
}

/* Fills the untouched pages of [from, to) with zero pages, one UFFDIO_ZEROPAGE per span of
 * them, waking nobody (no thread waits on a page that was untouched until now but the one
 * whose fault is being served). Lock held. Returns the pages filled. */
static size_t fill_untouched(struct vm *vm, size_t from, size_t to)
{
	size_t filled = 0;

	for (size_t p = from, q; p < to; p = q) {
		uint64_t done = 0;

		for (q = p; q < to && untouched(vm, q); q++)
			;
		if (q > p)
			(void)uffd_zeropage_range(vm->uffd, vm_page_addr(vm, p),
						  (q - p) * PAGE_SIZE_4K, false, &done);
		for (size_t i = 0; i < done / PAGE_SIZE_4K; i++)
			pagemap_set(vm->pm, p + i, PS_RESIDENT, 0);
		filled += done / PAGE_SIZE_4K;
		q += q == p || done < (q - p) * PAGE_SIZE_4K; /* past a page that is not ours */
	}
	return filled;
}

/* Pages filled or read ahead of demand (first-touch blocks, read-ahead) may add now: up to a
 * little past the limit (the evictor's slack), so that they never throttle the guest's own
 * faults; the evictor makes room for them like for any fault. Lock held. */
static size_t ahead_room(const struct vm *vm)
{
	uint64_t limit = vm_limit_pages(vm), res = pagemap_count(vm->pm, PS_RESIDENT), cap;

	if (!limit)
		return SIZE_MAX;
	cap = limit + limit / 32;
	return res < cap ? (size_t)(cap - res) : 0;
}

/* Serves a fault on a never-touched page by filling the aligned block of [fault] first_touch
 * around it over its untouched pages (pagemap.h: NONE -> RESIDENT, "first-touch block"):
 * one UFFDIO_ZEROPAGE over the span of untouched pages that holds page (which wakes its
 * thread), then one per other span, when the block fits under the VM's limit. The kernel
 * never zeroes a present page (it stops with EEXIST), and only untouched pages are asked
 * for, so nothing the guest wrote, nothing tiered, nothing in flight and nothing discarded
 * is filled. Under a limit a block may go a little past it (ahead_room): a guest growing at its
 * limit (a full guest's allocator handing out pages) then faults once per block too, which
 * took scene 10's memstress grow phase from 1.2-1.3 s to 0.52-0.54 s; the evictor makes the
 * room, and a block the guest never used goes as zero pages. A fill cut short before page
 * leaves it to serve_zero. Lock held. */
static int serve_first_touch(struct vm *vm, size_t page)
{
	size_t bp = vm->pol.first_touch / PAGE_SIZE_4K, lo = page, hi = page + 1, b0, b1, got;
	uint64_t done;
	int r;

	b0 = page - page % bp;
	/* Only a guest growing its memory in address order is filled ahead: the page before
	 * the block has been touched. A first touch out of the blue fills its page alone, so
	 * that scattered first touches do not fill the limit with zeros nobody asked for. */
	if (bp <= 1 || b0 == 0 || untouched(vm, b0 - 1) || ahead_room(vm) < bp)
		return serve_zero(vm, page, PS_NONE);
	b1 = b0 + bp < pagemap_npages(vm->pm) ? b0 + bp : pagemap_npages(vm->pm);
	while (lo > b0 && untouched(vm, lo - 1))
		lo--;
	while (hi < b1 && untouched(vm, hi))
		hi++;
	r = uffd_zeropage_range(vm->uffd, vm_page_addr(vm, lo), (hi - lo) * PAGE_SIZE_4K, true,
				&done);
	got = done / PAGE_SIZE_4K;
	for (size_t i = 0; i < got; i++)
		pagemap_set(vm->pm, lo + i, PS_RESIDENT, 0);
	if (page >= lo + got)
		return !got && r != -EEXIST ? r : serve_zero(vm, page, PS_NONE);
	got += fill_untouched(vm, b0, lo) + fill_untouched(vm, hi, b1);
	pagemap_touch(vm->pm, page);
	vm->st->faults_zero++;
	vm->ahead.first_touch_blocks += got > 1;
	vm->ahead.first_touch_pages += got - 1;
	return 0;
}

/* Installs the span [first, first+n) of tier st from src with one UFFDIO_COPY and frees its
 * slots. Lock held. Returns 0, -EAGAIN after partial progress, or -errno. */
static int install_span(struct vm *vm, enum page_state st, size_t first, size_t n, const void *src,
			bool demand)
{
	uint64_t slot = pagemap_slot(vm->pm, first), copied = 0;
	size_t done;
	int r;

	r = uffd_copy(vm->uffd, vm_page_addr(vm, first), src, n * PAGE_SIZE_4K, &copied);
	done = copied / PAGE_SIZE_4K;
	for (size_t i = 0; i < done; i++)
		pagemap_set(vm->pm, first + i, PS_RESIDENT, 0);
	if (done) {
		free_slots(vm, st, slot, done);
		pagemap_touch(vm->pm, first);
	}
	if (!demand) /* brought back ahead of faults (prefetch) or for a release */
		vm->st->bring_back_pages += done;
	else if (st == PS_SHM)
		vm->st->faults_shm_pages += done;
	else
		vm->st->faults_disk_pages += done;
	if (r == -EEXIST) {
		/* The kernel holds a page where our map says tier: nothing but QEMU can have put
		 * it there, so it is newer than our copy. Keep it, and say so. */
		size_t p = first + done;

		log_warn(vm->name, "page %#zx present while its home is a tier; keeping it", p);
		free_slots(vm, st, pagemap_slot(vm->pm, p), 1);
		pagemap_set(vm->pm, p, PS_RESIDENT, 0);
		uffd_wake(vm->uffd, vm_page_addr(vm, p), PAGE_SIZE_4K);
		return -EAGAIN;
	}
	return r;
}

/* Brings back the whole span of adjacent slots around page with one UFFDIO_COPY. Lock held. */
static int serve_shm(struct vm *vm, size_t page, bool demand)
{
	size_t first, n;
	int r;

	pagemap_tier_span(vm->pm, page, PS_SHM, &first, &n);
	r = install_span(vm, PS_SHM, first, n, shmpool_addr(vm->shm, pagemap_slot(vm->pm, first)),
			 demand);
	if (r == 0 && demand)
		vm->st->faults_shm++;
	return r;
}

/* ---- Batches: read-ahead and proactive regrowth ---- */

/* Whether page is a shm page that can be brought back now, holding slot. Lock held. */
static bool batch_member(const struct vm *vm, size_t page, uint64_t slot)
{
	return pagemap_state(vm->pm, page) == PS_SHM && !pagemap_flags(vm->pm, page) &&
	       pagemap_slot(vm->pm, page) == slot;
}

/* Copies the shm span [first, first+n) (adjacent slots) into guest RAM without waking
 * anyone, as many pages as the kernel takes per call; a page already present is the guest's
 * own, newer than our copy (nothing else can fill a page whose home is a tier): it is kept
 * and its slot freed, and the copy goes on past it. Adds the pages installed to *installed.
 * Lock held. Returns 0, or -errno when a call failed (the pages before it are installed and
 * recorded). */
static int copy_span_nowake(struct vm *vm, size_t first, size_t n, long *installed)
{
	size_t i = 0;

	while (i < n) {
		uint64_t slot = pagemap_slot(vm->pm, first + i), done;
		size_t got;
		int r = uffd_copy_range(vm->uffd, vm_page_addr(vm, first + i), shmpool_addr(vm->shm, slot),
					(n - i) * PAGE_SIZE_4K, false, &done);

		got = done / PAGE_SIZE_4K;
		for (size_t k = 0; k < got; k++)
			pagemap_set(vm->pm, first + i + k, PS_RESIDENT, 0);
		if (got)
			shmpool_free(vm->shm, slot, (uint32_t)got);
		*installed += (long)got;
		vm->ahead.batch_pages += got;
		vm->ahead.batch_copies++;
		i += got;
		if (r == -EEXIST) {
			slot = pagemap_slot(vm->pm, first + i);
			pagemap_set(vm->pm, first + i, PS_RESIDENT, 0);
			shmpool_free(vm->shm, slot, 1);
			vm->ahead.batch_kept++;
			i++;
		} else if (r && !(r == -EAGAIN && got)) {
			return r; /* -EAGAIN with nothing done: a discard to read first */
		}
	}
	return 0;
}

/* Brings the shm pages of [first, first + n) back into guest RAM: each span of adjacent slots
 * with UFFDIO_COPY calls that wake nobody, then one wake over the range. Pages in another
 * home or in flight are left alone, so no batch brings back a page discarded meanwhile (a
 * discard makes it PS_ZERO, or flags it while it moves) or writes over one the guest has
 * (resident; and the kernel refuses a present page). Each run brought back is touched: it
 * is about to be used, and must not be the evictor's next victim. Lock held. Returns the
 * pages installed, or -errno when none were. */
static long install_shm_range(struct vm *vm, size_t first, size_t n)
{
	size_t rp = pagemap_run_pages(vm->pm), p = first;
	long installed = 0;
	int r = 0;

	while (p < first + n && !r) {
		size_t q = p + 1;

		if (!batch_member(vm, p, pagemap_slot(vm->pm, p))) {
			p++;
			continue;
		}
		while (q < first + n && batch_member(vm, q, pagemap_slot(vm->pm, p) + (q - p)))
			q++;
		r = copy_span_nowake(vm, p, q - p, &installed);
		for (size_t run = p / rp; run * rp < q; run++)
			pagemap_touch(vm->pm, run * rp);
		p = q;
	}
	if (installed)
		uffd_wake(vm->uffd, vm_page_addr(vm, first), n * PAGE_SIZE_4K);
	return installed ? installed : r;
}

/* After a demand fault served from the shm tier at page: when it follows on from the last
 * one (the run after it, or the run after the last window), the window of runs read ahead
 * doubles, up to [fault] readahead, and that many runs after page's come back in one batch;
 * a fault out of order closes the window. As the kernel's swap read-ahead, but in runs, and
 * only over shm pages (the disk tier reads its own way). Lock held. */
static void read_ahead(struct vm *vm, size_t page)
{
	struct vm_fault_local *fl = &vm->fl;
	size_t rp = pagemap_run_pages(vm->pm), run = page / rp, max, from, n;
	long got;

	max = (size_t)(vm->pol.readahead_max / PAGE_SIZE_4K / rp);
	if (!max || run < fl->ra_last_run + 1 || run > fl->ra_next_run ||
	    fl->ra_next_run == 0) {
		fl->ra_window = 0;
		fl->ra_last_run = run;
		fl->ra_next_run = run + 1;
		return;
	}
	fl->ra_window = fl->ra_window ? fl->ra_window * 2 : 1;
	if (fl->ra_window > max)
		fl->ra_window = max;
	from = (run + 1) * rp;
	n = fl->ra_window * rp;
	if (n > ahead_room(vm))
		n = ahead_room(vm) / rp * rp;
	if (from >= pagemap_npages(vm->pm))
		n = 0;
	else if (from + n > pagemap_npages(vm->pm))
		n = pagemap_npages(vm->pm) - from;
	fl->ra_last_run = run;
	fl->ra_next_run = run + 1 + n / rp;
	if (!n)
		return;
	got = install_shm_range(vm, from, n);
	if (got > 0) {
		vm->ahead.readahead_batches++;
		vm->ahead.readahead_pages += (uint64_t)got;
	}
}

static void flag_span(struct vm *vm, size_t first, size_t n, unsigned flags)
{
	for (size_t i = 0; i < n; i++)
		pagemap_set_flags(vm->pm, first + i, flags);
}

/* Clears the in-flight flags of a disk span. A page discarded meanwhile (possible only when a
 * release reads on the main thread while the fault thread applies a REMOVE) becomes zero and
 * its slot is freed. Returns whether there was one. Lock held. */
static bool settle_discards(struct vm *vm, size_t first, size_t n)
{
	bool any = false;

	for (size_t i = 0; i < n; i++) {
		size_t p = first + i;

		if (pagemap_flags(vm->pm, p) & PF_DISCARDED) {
			uint64_t slot = pagemap_slot(vm->pm, p);

			pagemap_set(vm->pm, p, PS_ZERO, 0);
			pagemap_set_flags(vm->pm, p, 0);
			disktier_free(vm->disk, slot, 1);
			any = true;
		}
		pagemap_set_flags(vm->pm, p, 0);
	}
	return any;
}

/* A failed disk read: reported (rate-limited) and the fault parked for a retry. When the
 * reads of one fault keep failing past [disk] read_retry_max the VM fails: vm_supervise stops
 * its QEMU, with this reason, rather than leave a vCPU waiting for ever. fail_ns holds the
 * fault's first failure (NULL: no bound). Lock held. Returns -EBUSY. */
static int disk_read_failed(struct vm *vm, size_t page, size_t n, uint64_t slot, int err,
			    uint64_t *fail_ns)
{
	uint64_t now = vm_now_ns(), bound = (uint64_t)vm->pol.disk_read_retry_ms * 1000000;

	if (vm->st->disk_read_errors++ % 1000 == 0)
		log_err(vm->name,
			"disk read of page %#zx (%zu pages at slot %llu of %s) failed: %s; "
			"the fault waits and is retried (%llu failures so far)",
			page, n, (unsigned long long)slot, disktier_path(vm->disk), strerror(-err),
			(unsigned long long)vm->st->disk_read_errors);
	if (!fail_ns)
		return -EBUSY;
	if (!*fail_ns)
		*fail_ns = now;
	if (bound && !vm->failed && now - *fail_ns >= bound) {
		vm->failed = true;
		snprintf(vm->fail_why, sizeof(vm->fail_why),
			 "disk read of page %#zx from %s keeps failing (%s) for %llu ms", page,
			 disktier_path(vm->disk), strerror(-err),
			 (unsigned long long)((now - *fail_ns) / 1000000));
	}
	return -EBUSY;
}

/* Reads the span of adjacent disk slots around page with one I/O into the bounce buffer and
 * installs it with one UFFDIO_COPY. A failed read is reported and the fault parked for a
 * retry (disk_read_failed): never answered with bytes we did not read.
 *
 * Called with the lock held; drops it for the read, so the evictor is not held up by disk
 * latency. The span is flagged in flight meanwhile: other faults on it park, and a release
 * waits. The evictor and the demoter move only resident and shm pages; a discard can only
 * come in when the reader is not the fault thread (a release), and is settled here. */
static int serve_disk(struct vm *vm, struct disktier_io *io, void *bounce, size_t page, bool demand,
		      uint64_t *fail_ns)
{
	struct disktier_seg seg;
	size_t first, n;
	int r;

	pagemap_tier_span(vm->pm, page, PS_DISK, &first, &n);
	seg = (struct disktier_seg){
	    .slot = pagemap_slot(vm->pm, first), .buf = bounce, .npages = (uint32_t)n};
	flag_span(vm, first, n, PF_EVICTING);
	pthread_mutex_unlock(&vm->lock);
	r = disktier_read(io, &seg, 1);
	pthread_mutex_lock(&vm->lock);
	if (settle_discards(vm, first, n))
		return -EAGAIN; /* the rest is read again: the span has changed */
	if (r)
		return disk_read_failed(vm, page, n, seg.slot, r, fail_ns);
	r = install_span(vm, PS_DISK, first, n, bounce, demand);
	if (r == 0 && demand)
		vm->st->faults_disk++;
	return r;
}

/* Adds the tiered pages of the run at first to batch b: shm pages are brought back at once
 * (a copy from memory; a compressed blob is unpacked into this run's part of the stage, whose
 * disk reads come later), disk spans are flagged in flight and queued for fault_batch_read, at
 * their guest offset in the stage so that spans adjacent both in the guest and on disk merge
 * into one read. Lock held. Returns 0, or -ENOSPC (nothing added) when the run's disk spans
 * (or a blob) do not fit in what is left of the stage. */
int fault_batch_add_run(struct vm *vm, struct disk_batch *b, size_t first)
{
	size_t run = pagemap_run_pages(vm->pm), end = first + run, need = 0, z = 0;

	if (end > pagemap_npages(vm->pm))
		end = pagemap_npages(vm->pm);
	for (size_t p = first; p < end; p++) {
		need += pagemap_state(vm->pm, p) == PS_DISK;
		z += pagemap_state(vm->pm, p) == PS_ZSHM;
	}
	if (need && (b->used + (end - first) > b->stage_pages || b->nsegs + need > FAULT_BATCH_SEGS))
		return -ENOSPC;
	if (z && b->used + run > b->stage_pages)
		return -ENOSPC;
	for (size_t p = first; p < end;) {
		size_t sf, n;

		if (pagemap_flags(vm->pm, p) & PF_EVICTING) {
			p++;
			continue;
		}
		if (pagemap_state(vm->pm, p) == PS_SHM) {
			serve_shm(vm, p, false); /* failed: the fault path does it */
			p++;
			continue;
		}
		if (pagemap_state(vm->pm, p) == PS_ZSHM) {
			zshm_serve(vm, b->stage + b->used * PAGE_SIZE_4K, p, false);
			p++;
			continue;
		}
		if (pagemap_state(vm->pm, p) != PS_DISK) {
			p++;
			continue;
		}
		pagemap_tier_span(vm->pm, p, PS_DISK, &sf, &n);
		b->segs[b->nsegs] = (struct disktier_seg){
		    .slot = pagemap_slot(vm->pm, sf),
		    .buf = b->stage + (b->used + (sf - first)) * PAGE_SIZE_4K,
		    .npages = (uint32_t)n};
		b->first[b->nsegs++] = sf;
		flag_span(vm, sf, n, PF_EVICTING);
		p = sf + n;
	}
	if (need)
		b->used += end - first;
	return 0;
}

/* Reads every span of the batch with one deep disktier_read (up to the ring's depth in
 * flight, adjacent ones merged), then installs each as a fault would; the span holding
 * b->demand_page counts as the fault's. A failed read leaves every span on disk (a fault reads
 * it when it is needed); a span discarded meanwhile is settled. Called with the lock held;
 * drops it for the read. gate: not the fault thread, which then installs holding event_lock
 * too (vm.h), taken after the read; the caller drops it. Returns 0, the read's -errno, or
 * install_span's error for the demand span. */
static int batch_read_locked(struct vm *vm, struct disktier_io *io, struct disk_batch *b,
			     bool gate)
{
	int r = 0, rd = 0;

	if (b->nsegs) {
		pthread_mutex_unlock(&vm->lock);
		rd = disktier_read(io, b->segs, b->nsegs);
		if (gate) /* another thread's batch: installs with no REMOVE half-applied (vm.h) */
			pthread_mutex_lock(&vm->event_lock);
		pthread_mutex_lock(&vm->lock);
	}
	for (unsigned i = 0; i < b->nsegs; i++) {
		size_t n = b->segs[i].npages, f = b->first[i];
		bool demand = b->demand_page >= f && b->demand_page < f + n;
		int ri;

		if (settle_discards(vm, f, n) || rd) {
			if (demand && !rd)
				r = -EAGAIN; /* the span changed: the fault tries again */
			continue; /* its pages are zero or still on disk, flags cleared */
		}
		ri = install_span(vm, PS_DISK, f, n, b->segs[i].buf, demand);
		if (demand) {
			r = ri;
			vm->st->faults_disk += !ri;
		}
	}
	b->nsegs = 0;
	b->used = 0;
	return rd ? rd : r;
}

int fault_batch_read(struct vm *vm, struct disktier_io *io, struct disk_batch *b)
{
	unsigned nsegs = b->nsegs;
	uint64_t one = 1;
	int r;

	b->demand_page = SIZE_MAX;
	pthread_mutex_lock(&vm->lock);
	r = batch_read_locked(vm, io, b, true);
	if (r && vm->st->disk_read_errors++ % 1000 == 0)
		log_err(vm->name, "prefetch read of %u spans from %s failed: %s; they stay on disk",
			nsegs, disktier_path(vm->disk), strerror(-r));
	pthread_mutex_unlock(&vm->lock);
	if (nsegs)
		pthread_mutex_unlock(&vm->event_lock);
	if (nsegs) /* faults parked on these spans go on */
		(void)!write(vm->wake_efd, &one, sizeof(one));
	return r;
}

/* How many runs a disk fault on page reads at once: 1 for a fault off the sequence, else
 * twice the last window (up to what the bounce buffer holds, and the room under the limit),
 * like the kernel's swap read-ahead but in runs: the runs after a sequential reader's fault
 * are resident before it gets there. Fault thread only. Lock held. */
static size_t readahead_runs(struct vm *vm, size_t page)
{
	size_t run = pagemap_run_pages(vm->pm), max = vm->fault_bounce_len / PAGE_SIZE_4K / run;
	uint64_t limit = vm_limit_pages(vm), resident = pagemap_count(vm->pm, PS_RESIDENT);
	size_t want;

	if (page / run != vm->disk_ra_next) {
		vm->disk_ra_runs = 1;
		return 1;
	}
	want = vm->disk_ra_runs * 2;
	if (want > max)
		want = max;
	/* Only into room under the limit (a VM regrowing after the planner raised its target):
	 * at the limit every run read ahead costs an eviction, which is what a paging guest is
	 * short of already (measured: read-ahead at the limit doubled the disk reads, half of
	 * them evicted again unread, and made faults wait on the throttle). */
	while (want > 1 && limit && resident + want * run > limit)
		want /= 2;
	vm->disk_ra_runs = (uint32_t)want;
	return want;
}

/* A disk fault with read-ahead: the fault is served first, alone (its span read as a fault's
 * read and installed, which wakes the vCPU); then the next runs that have pages in a tier (up
 * to want runs in all, through the fault's bounce buffer) are read with one deep read as
 * background reads (diskq: after other VMs' faults) and installed. Lock held, dropped for the
 * reads. Returns as serve_disk, for the fault; a failed read-ahead leaves its runs on disk. */
static int serve_disk_ahead(struct vm *vm, struct disktier_io *io, size_t page, size_t want,
			    uint64_t *fail_ns)
{
	struct disk_batch *b = vm->fault_batch;
	size_t run = pagemap_run_pages(vm->pm), r0 = page / run * run, last = r0;
	int r = serve_disk(vm, io, vm->fault_bounce, page, true, fail_ns);

	vm->disk_ra_next = r0 / run + 1;
	if (r)
		return r;
	b->stage = vm->fault_bounce;
	b->stage_pages = vm->fault_bounce_len / PAGE_SIZE_4K;
	b->demand_page = SIZE_MAX;
	for (size_t k = 1, p = r0 + run; k < want && p < pagemap_npages(vm->pm); k++, p += run) {
		if (pagemap_state(vm->pm, p) != PS_DISK && pagemap_state(vm->pm, p) != PS_SHM &&
		    pagemap_state(vm->pm, p) != PS_ZSHM)
			break; /* resident or never touched: the sequence ends here */
		if (fault_batch_add_run(vm, b, p))
			break;
		last = p;
	}
	vm->disk_ra_next = last / run + 1;
	vm->fault_gate.read_cls = DISKQ_PREFETCH;
	batch_read_locked(vm, io, b, false);
	vm->fault_gate.read_cls = DISKQ_FAULT;
	return 0;
}

int fault_bring_back(struct vm *vm, struct disktier_io *io, void *bounce, size_t page)
{
	int r = 0;

	pthread_mutex_lock(&vm->lock);
	if (pagemap_flags(vm->pm, page) & PF_EVICTING)
		r = -EBUSY;
	else if (pagemap_state(vm->pm, page) == PS_SHM)
		r = serve_shm(vm, page, false);
	else if (pagemap_state(vm->pm, page) == PS_ZSHM)
		r = zshm_serve(vm, bounce, page, false);
	else if (pagemap_state(vm->pm, page) == PS_DISK)
		r = serve_disk(vm, io, bounce, page, false, NULL);
	pthread_mutex_unlock(&vm->lock);
	return r;
}

/* Whether any page of the run at first is in the (uncompressed) shm tier. Lock held. */
static bool run_shm(const struct vm *vm, size_t first, size_t n)
{
	for (size_t p = first; p < first + n; p++)
		if (pagemap_state(vm->pm, p) == PS_SHM)
			return true;
	return false;
}

/* The range a shm prefetch batch covers: the hottest tiered run, grown over the adjacent
 * runs of the same age that hold shm pages, up to max_pages. Lock held. Returns 0 or
 * -ENOENT. */
static int batch_range(const struct vm *vm, size_t max_pages, size_t *first, size_t *n)
{
	size_t rp = pagemap_run_pages(vm->pm), np = pagemap_npages(vm->pm), lo, hi;
	uint32_t age;

	if (pagemap_hot_tiered_pick(vm->pm, &lo))
		return -ENOENT;
	age = pagemap_run_seen(vm->pm, lo);
	hi = lo + rp < np ? lo + rp : np;
	while (hi < np && hi - lo + rp <= max_pages && pagemap_run_seen(vm->pm, hi) == age &&
	       run_shm(vm, hi, hi + rp < np ? rp : np - hi))
		hi = hi + rp < np ? hi + rp : np;
	while (lo >= rp && hi - lo + rp <= max_pages && pagemap_run_seen(vm->pm, lo - rp) == age &&
	       run_shm(vm, lo - rp, rp))
		lo -= rp;
	*first = lo;
	*n = hi - lo;
	return 0;
}

/* Flags the pages of [first, first + n) that were tiered (was[i]) and are resident now with
 * nothing in flight as brought back ahead. Lock held. Returns how many. */
static size_t flag_prefetched(struct vm *vm, size_t first, size_t n, const uint8_t *was)
{
	size_t got = 0;

	for (size_t i = 0; i < n; i++)
		if (was[i] && pagemap_state(vm->pm, first + i) == PS_RESIDENT &&
		    !pagemap_flags(vm->pm, first + i)) {
			pagemap_set_flags(vm->pm, first + i, PF_PREFETCHED);
			got++;
		}
	return got;
}

long fault_prefetch_batch(struct vm *vm, size_t max_pages)
{
	uint8_t *was = malloc(max_pages ? max_pages : 1);
	size_t first, n, got = 0;
	long r;

	if (!was)
		return -ENOMEM;
	pthread_mutex_lock(&vm->event_lock); /* no REMOVE read and not yet applied: vm.h */
	pthread_mutex_lock(&vm->lock);
	r = batch_range(vm, max_pages, &first, &n);
	if (!r) {
		for (size_t i = 0; i < n; i++)
			was[i] = pagemap_state(vm->pm, first + i) == PS_SHM;
		/* Only PS_SHM pages: compressed and disk pages are the disk batch's
		 * (fault_batch_add_run), which the caller runs after this. */
		r = install_shm_range(vm, first, n);
		if (r > 0)
			vm->st->bring_back_pages += (uint64_t)r;
		got = flag_prefetched(vm, first, n, was);
	}
	pthread_mutex_unlock(&vm->lock);
	pthread_mutex_unlock(&vm->event_lock);
	free(was);
	return got ? (long)got : (r < 0 ? r : 0);
}

/* A sampled page touched again: note it, and map the page that is still in the memfd. A page
 * gone meanwhile (discarded) faults again as missing once woken. Lock held. */
static int serve_minor(struct vm *vm, size_t page)
{
	int r = uffd_continue(vm->uffd, vm_page_addr(vm, page), PAGE_SIZE_4K);

	vm->st->faults_minor++;
	track_note_access(vm, page);
	if (r == -EEXIST || r == -EFAULT || r == -ENOENT)
		return uffd_wake(vm->uffd, vm_page_addr(vm, page), PAGE_SIZE_4K);
	return r;
}

static int serve_wp(struct vm *vm, size_t page)
{
	/* Protection left on a resident page nobody is evicting (an aborted eviction):
	 * lift it. Otherwise the evictor lifts it, and wakes the writer, once the page's
	 * new home is recorded. */
	if (pagemap_state(vm->pm, page) == PS_RESIDENT &&
	    !(pagemap_flags(vm->pm, page) & PF_EVICTING))
		return uffd_wp(vm->uffd, vm_page_addr(vm, page), PAGE_SIZE_4K, false, true);
	return 0;
}

/* Books a fault just served. Lock held. */
static void note_served(struct vm *vm, const struct pending *f, size_t page)
{
	uint64_t waited = vm_now_ns() - f->read_ns;

	if (!(f->flags & (UFFD_PAGEFAULT_FLAG_WP | UFFD_PAGEFAULT_FLAG_MINOR)))
		track_note_access(vm, page);
	hist_add(&vm->st->fault_ns, waited);
	if (waited > vm->st->fault_max_wait_ns)
		vm->st->fault_max_wait_ns = waited;
	if (vm_over_limit(vm))
		pthread_cond_signal(&vm->evict_cv);
}

/* Returns 0 when served, -EBUSY when parked (f->wait says on what), -EAGAIN to drain first,
 * -ENOMEM to retry later, other -errno on failure. */
static int serve(struct vm *vm, struct pending *f)
{
	size_t page = (f->addr - vm->host_addr) / PAGE_SIZE_4K;
	enum page_state st;
	int r;

	if (f->addr < vm->host_addr || f->addr >= vm->host_addr + vm->length)
		return -EFAULT;
	if (f->retry_ns > vm_now_ns())
		return -EBUSY; /* backing off after ENOMEM */
	pthread_mutex_lock(&vm->lock);
	st = pagemap_state(vm->pm, page);
	if (f->flags & UFFD_PAGEFAULT_FLAG_WP) {
		vm->st->faults_wp++;
		r = serve_wp(vm, page);
	} else if (pagemap_flags(vm->pm, page) & PF_EVICTING) {
		vm->st->faults_parked++;
		f->wait = WAIT_MOVE;
		r = -EBUSY;
	} else if (st != PS_RESIDENT && vm_must_throttle(vm) &&
		   vm_now_ns() - f->read_ns < THROTTLE_MAX_NS) {
		if (!f->throttled)
			vm->st->faults_throttled++;
		f->throttled = true;
		f->wait = WAIT_THROTTLE;
		pthread_cond_signal(&vm->evict_cv);
		r = -EBUSY;
	} else if ((f->flags & UFFD_PAGEFAULT_FLAG_MINOR) && st == PS_RESIDENT) {
		r = serve_minor(vm, page);
	} else if (st == PS_SHM) {
		r = serve_shm(vm, page, true);
		if (r == 0)
			read_ahead(vm, page);
	} else if (st == PS_ZSHM) {
		r = zshm_serve(vm, vm->fault_bounce, page, true);
	} else if (st == PS_DISK) {
		size_t ra = vm->fault_batch ? readahead_runs(vm, page) : 1;

		if (ra > 1) {
			r = serve_disk_ahead(vm, vm->fault_io, page, ra, &f->disk_fail_ns);
		} else {
			r = serve_disk(vm, vm->fault_io, vm->fault_bounce, page, true,
				       &f->disk_fail_ns);
			vm->disk_ra_next = page / pagemap_run_pages(vm->pm) + 1;
		}
		if (r == -EBUSY)
			f->wait = WAIT_DISK;
	} else if (st == PS_NONE && !pagemap_flags(vm->pm, page)) {
		r = serve_first_touch(vm, page);
	} else {
		r = serve_zero(vm, page, st);
	}
	if (r == 0)
		note_served(vm, f, page);
	pthread_mutex_unlock(&vm->lock);
	return r;
}

/* ---- Placement: [fault] cpu = follow ----
 *
 * A fault costs a round trip between the faulting thread and this one: on one CPU the
 * faulting thread blocks and this one runs in its place (about 10 µs here); across CPUs each
 * way is a wake-up by IPI (about 50 µs). So the thread follows the thread whose faults it
 * serves: the kernel names it in the fault message (UFFD_FEATURE_THREAD_ID), and says where
 * it runs (its affinity when that is one CPU, else the CPU it last ran on, read from /proc
 * at most every FOLLOW_LOOKUP_NS per thread). Faults vote for their thread's CPU; every
 * FOLLOW_WINDOW faults the thread moves to the CPU of a majority, if any, so that vCPUs
 * faulting on several CPUs at once do not make it move on every fault. */
#define FOLLOW_WINDOW	 32
#define FOLLOW_FIRST	 4		/* the first window: follow soon after start */
#define FOLLOW_LOOKUP_NS 5000000ull	/* a thread's CPU is looked up again after 5 ms */
#define HARD_FAULTING_NS 1000000ull	/* busy-poll only within 1 ms of the last fault */

/* The CPU thread tid of the guest's process runs on, or -1 when it cannot be told. */
static int thread_cpu(const struct vm *vm, pid_t tid)
{
	char path[64], buf[1024], *p;
	cpu_set_t set;
	int cpu = -1, fd;
	ssize_t n;

	if (sched_getaffinity(tid, sizeof(set), &set) == 0 && CPU_COUNT(&set) == 1)
		for (int c = 0; c < CPU_SETSIZE; c++)
			if (CPU_ISSET(c, &set))
				return c;
	snprintf(path, sizeof(path), "/proc/%d/task/%d/stat", (int)vm->pid, (int)tid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1; /* not the guest's thread (another pid namespace), or gone */
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = 0;
	/* Field 39 (processor), counted after the command name's closing parenthesis. */
	p = strrchr(buf, ')');
	for (int field = 2; p && field < 39; field++)
		p = strchr(p + 1, ' ');
	if (p && sscanf(p + 1, "%d", &cpu) != 1)
		cpu = -1;
	return cpu;
}

/* Moves this thread to cpu. Returns 0 or -errno. */
static int move_to(struct vm *vm, int cpu)
{
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	if (sched_setaffinity(0, sizeof(set), &set))
		return -errno;
	vm->fl.follow_cpu = cpu;
	pthread_mutex_lock(&vm->lock);
	vm->ahead.follow_moves++;
	pthread_mutex_unlock(&vm->lock);
	return 0;
}

/* Notes where thread tid (0: the kernel did not say) runs; with cpu = follow, counts its
 * fault toward that CPU, and at the end of a window moves to the CPU most faults came from
 * when they are a majority. */
static void follow(struct vm *vm, pid_t tid)
{
	struct vm_fault_local *fl = &vm->fl;
	uint64_t now;
	unsigned best = 0, window = fl->follow_cpu < 0 ? FOLLOW_FIRST : FOLLOW_WINDOW;

	/* busy_poll needs the faulter's CPU too, to keep off it */
	if ((vm->pol.fault_cpu != POLICY_CPU_FOLLOW && !vm->pol.busy_poll_us) || !tid)
		return;
	now = vm_now_ns();
	if (tid != fl->follow_tid || now - fl->follow_looked_ns > FOLLOW_LOOKUP_NS) {
		fl->follow_tid = tid;
		fl->follow_tid_cpu = thread_cpu(vm, tid);
		fl->follow_looked_ns = now;
	}
	if (vm->pol.fault_cpu != POLICY_CPU_FOLLOW || fl->follow_tid_cpu < 0 ||
	    fl->follow_tid_cpu >= VM_FOLLOW_CPUS)
		return;
	fl->follow_votes[fl->follow_tid_cpu]++;
	if (++fl->follow_seen < window)
		return;
	for (unsigned c = 1; c < VM_FOLLOW_CPUS; c++)
		if (fl->follow_votes[c] > fl->follow_votes[best])
			best = c;
	if (2 * fl->follow_votes[best] > fl->follow_seen && (int)best != fl->follow_cpu &&
	    move_to(vm, (int)best) && fl->follow_cpu < 0)
		log_warn(vm->name, "cannot move the fault thread to CPU %u", best);
	memset(fl->follow_votes, 0, sizeof(fl->follow_votes));
	fl->follow_seen = 0;
}

/* Reads every queued event the queue has room for; applies REMOVEs at once and queues
 * faults. Returns 0, or -ESRCH/-EBADF when the uffd is unusable. */
static int drain(struct vm *vm, struct fault_queue *fq)
{
	struct uffd_msg msgs[READ_BATCH];

	for (;;) {
		size_t room = queue_room(fq);
		ssize_t n;
		uint64_t now;

		if (!room)
			return 0;
		/* Set while events read are not yet applied: an arming's end waits for it to
		 * clear (track.c), so that its REMOVEs, read before the shim said it was over,
		 * have been applied when PF_ARMING is lifted. */
		pthread_mutex_lock(&vm->event_lock); /* see vm.h */
		__atomic_store_n(&vm->uffd_reading, 1, __ATOMIC_SEQ_CST);
		n = read(vm->uffd, msgs, room * sizeof(msgs[0]));
		now = vm_now_ns();

		if (n <= 0) {
			int err = errno;

			__atomic_store_n(&vm->uffd_reading, 0, __ATOMIC_SEQ_CST);
			pthread_mutex_unlock(&vm->event_lock);
			if (n < 0)
				return (err == EAGAIN || err == EINTR) ? 0 : -err;
			return -ESRCH;
		}
		for (size_t i = 0; i < (size_t)n / sizeof(msgs[0]); i++) {
			struct uffd_msg *m = &msgs[i];

			switch (m->event) {
			case UFFD_EVENT_PAGEFAULT: /* room was made before the read */
				fq->q[fq->n++] = (struct pending){
				    .addr =
					m->arg.pagefault.address & ~(uint64_t)(PAGE_SIZE_4K - 1),
				    .flags = m->arg.pagefault.flags,
				    .read_ns = now,
				};
				follow(vm, (pid_t)m->arg.pagefault.feat.ptid);
				break;
			case UFFD_EVENT_REMOVE:
				apply_remove(vm, m->arg.remove.start, m->arg.remove.end);
				break;
			default:
				log_warn(vm->name, "unexpected uffd event %u", m->event);
				break;
			}
		}
		__atomic_store_n(&vm->uffd_reading, 0, __ATOMIC_SEQ_CST);
		pthread_mutex_unlock(&vm->event_lock);
		/* A short read emptied the queue: the next read would only say EAGAIN, a system
		 * call per fault. Anything that came since wakes the poll, and a REMOVE makes an
		 * ioctl say EAGAIN, which brings the thread back here first. */
		if ((size_t)n < room * sizeof(msgs[0]))
			return 0;
	}
}

/* Host memory pressure: the fault waits, 1 ms doubling to 100 ms, and is tried again; it is
 * counted and logged (rate-limited), never dropped. */
static void park_enomem(struct vm *vm, struct pending *f)
{
	unsigned shift = f->enomem_tries < 7 ? f->enomem_tries : 7;
	uint64_t backoff = ENOMEM_BACKOFF_MIN_NS << shift, n;

	f->enomem_tries++;
	f->retry_ns =
	    vm_now_ns() + (backoff < ENOMEM_BACKOFF_MAX_NS ? backoff : ENOMEM_BACKOFF_MAX_NS);
	f->wait = WAIT_ENOMEM;
	pthread_mutex_lock(&vm->lock);
	n = ++vm->st->faults_enomem;
	pthread_mutex_unlock(&vm->lock);
	if (n % 1000 == 1)
		log_warn(vm->name,
			 "host out of memory serving page %#llx; the fault waits and is retried "
			 "(%llu times so far)",
			 (unsigned long long)((f->addr - vm->host_addr) / PAGE_SIZE_4K),
			 (unsigned long long)n);
}

/* A fault that cannot be served: an error, counted and logged, unless the guest has gone. */
static void fault_failed(struct vm *vm, const struct pending *f, int err)
{
	if (vm_guest_gone(vm, err, 0))
		return;
	pthread_mutex_lock(&vm->lock);
	vm->st->fault_errors++;
	pthread_mutex_unlock(&vm->lock);
	log_err(vm->name, "fault at %#llx not served: %s", (unsigned long long)f->addr,
		strerror(-err));
}

/* Serves what it can from the queue, keeping parked faults in order; adds the faults served
 * to *served. Returns 0, -EAGAIN (drain and come back), or -ESRCH (the guest has gone). */
static int serve_queue(struct vm *vm, struct fault_queue *fq, uint64_t *served)
{
	size_t keep = 0, i;
	int ret = 0;

	for (i = 0; i < fq->n; i++) {
		struct pending *f = &fq->q[i];
		int r = serve(vm, f);

		if (r == -ENOMEM) {
			park_enomem(vm, f);
			r = -EBUSY;
		}
		if (r == -EBUSY) {
			fq->q[keep++] = *f;
			continue;
		}
		if (r == -EAGAIN || r == -ESRCH) {
			if (r == -EAGAIN)
				f->wait = WAIT_DRAIN;
			ret = r;
			break;
		}
		if (r == -ENOENT) /* the range is no longer registered (released): make sure the
				   * thread is awake; it faults on its own now */
			uffd_wake(vm->uffd, f->addr, PAGE_SIZE_4K);
		else if (r)
			fault_failed(vm, f, r);
		else
			(*served)++;
		if (!r)
			vm->fl.last_served_ns = vm_now_ns();
	}
	memmove(fq->q + keep, fq->q + i, (fq->n - i) * sizeof(*fq->q));
	fq->n = keep + (fq->n - i);
	return ret;
}

static void pin_to_cpu(struct vm *vm)
{
	cpu_set_t set;

	vm->fl.follow_cpu = -1;
	vm->fl.follow_tid_cpu = -1;
	if (vm->pol.fault_cpu < 0)
		return;
	CPU_ZERO(&set);
	CPU_SET(vm->pol.fault_cpu, &set);
	if (pthread_setaffinity_np(pthread_self(), sizeof(set), &set))
		log_warn(vm->name, "cannot pin the fault thread to CPU %d", vm->pol.fault_cpu);
}

/* Spins for up to busy_poll µs waiting for an event before the caller sleeps in poll():
 * a sleeping thread woken from another CPU costs tens of µs per fault. Only while the VM
 * faults hard, and never on the CPU of the thread that faulted last: there the spin would
 * keep that very thread from running, and sleeping costs little. */
static void busy_poll(struct vm *vm)
{
	uint64_t now = vm_now_ns(), until = now + (uint64_t)vm->pol.busy_poll_us * 1000;
	struct pollfd p = {.fd = vm->uffd, .events = POLLIN};

	if (now - vm->fl.last_served_ns > HARD_FAULTING_NS ||
	    (vm->fl.follow_tid_cpu >= 0 && sched_getcpu() == vm->fl.follow_tid_cpu))
		return;
	while (vm_now_ns() < until)
		if (poll(&p, 1, 0) > 0)
			return;
}

/* The ioctls say EAGAIN from the moment a madvise raises its REMOVE until the madvising thread,
 * woken by our read, has finished with it (the kernel's mmap_changing); the queue can be empty
 * meanwhile. Spinning on it would take the CPU from that very thread (an arming of thousands of
 * ranges stalled faults for seconds so): yield, then sleep a little. */
static void eagain_backoff(unsigned again)
{
	if (again < 4)
		sched_yield();
	else
		usleep(again < 64 ? 20 : 200);
}

/* A VM taken over from a daemon that died: the faults it had read wait in the kernel for a
 * wake that will never come, and the runs it was evicting may still be write-protected. Lift
 * every protection and wake the whole range; an access that still misses faults again, to
 * us. A queued REMOVE makes the ioctls fail with EAGAIN until read, hence the drain. The
 * evictor waits for this (wake_pending): a protection of its own would be lifted here. */
static int wake_all(struct vm *vm, struct fault_queue *fq)
{
	int r;

	for (unsigned again = 0;; again++) {
		r = drain(vm, fq);
		if (!r)
			r = uffd_wp(vm->uffd, vm->host_addr, vm->length, false, true);
		if (r != -EAGAIN || vm->stopping)
			break;
		eagain_backoff(again);
	}
	if (!r)
		r = uffd_wake(vm->uffd, vm->host_addr, vm->length);
	pthread_mutex_lock(&vm->lock);
	vm->wake_pending = false;
	pthread_cond_broadcast(&vm->evict_cv);
	pthread_mutex_unlock(&vm->lock);
	if (r)
		log_err(vm->name, "cannot wake the faults the daemon before read: %s",
			strerror(-r));
	return r;
}

/* The dead daemon's arming has ended (vm->stale_arming_over): every REMOVE it raised was read
 * by this thread before the shim said so, and applied in the same drain, so what PF_ARMING
 * is left belongs to pages whose REMOVE never came. Lock held. */
static void lift_stale_arming(struct vm *vm)
{
	size_t lifted = 0;

	for (size_t p = 0; p < pagemap_npages(vm->pm); p++) {
		unsigned fl = pagemap_flags(vm->pm, p);

		if (fl & PF_ARMING) {
			pagemap_set_flags(vm->pm, p, fl & ~PF_ARMING);
			lifted++;
		}
	}
	vm->stale_arming = vm->stale_arming_over = false;
	log_info(vm->name, "the arming in flight at adoption has ended (%zu pages left armed)",
		 lifted);
}

/* Reports, once each, the faults parked longer than [fault] stall_warn, with what they wait
 * on, and keeps the longest wait seen. Runs on the fault thread itself, which wakes every
 * 5 ms while faults are parked; takes the lock only to count. */
static void watchdog(struct vm *vm, struct fault_queue *fq)
{
	uint64_t now = vm_now_ns(), bound = (uint64_t)vm->pol.stall_warn_ms * 1000000, oldest = 0;
	uint64_t stalled = 0;

	for (size_t i = 0; i < fq->n; i++) {
		struct pending *f = &fq->q[i];
		uint64_t waited = now - f->read_ns;

		if (waited > oldest)
			oldest = waited;
		if (!bound || waited < bound || f->stall_reported)
			continue;
		f->stall_reported = true;
		stalled++;
		log_warn(vm->name, "fault on page %#llx has waited %llu ms for %s",
			 (unsigned long long)((f->addr - vm->host_addr) / PAGE_SIZE_4K),
			 (unsigned long long)(waited / 1000000), wait_names[f->wait]);
	}
	/* This thread is the only writer of fault_max_wait_ns: it may read it unlocked. */
	if (!stalled && oldest <= vm->st->fault_max_wait_ns)
		return;
	pthread_mutex_lock(&vm->lock);
	vm->st->faults_stalled += stalled;
	if (oldest > vm->st->fault_max_wait_ns)
		vm->st->fault_max_wait_ns = oldest;
	pthread_mutex_unlock(&vm->lock);
}

/* Sleeps until there is work: an event to read (while the queue has room for it), a wake-up
 * from the evictor, a stop; with faults parked, 5 ms at most (a missed wake-up, a backoff
 * ending, the watchdog). Returns 0 or -errno when the uffd cannot be waited on. */
static int wait_for_work(struct vm *vm, const struct fault_queue *fq)
{
	struct pollfd pfd[3] = {
	    {.fd = vm->uffd, .events = fq->n < fq->cap ? POLLIN : 0},
	    {.fd = vm->wake_efd, .events = POLLIN},
	    {.fd = vm->stop_efd, .events = POLLIN},
	};
	uint64_t v;

	if (vm->pol.busy_poll_us)
		busy_poll(vm);
	if (poll(pfd, 3, fq->n ? 5 : -1) < 0 && errno != EINTR)
		return -errno;
	if (pfd[1].revents & POLLIN)
		(void)!read(vm->wake_efd, &v, sizeof(v));
	return pfd[0].revents & (POLLERR | POLLHUP) ? -EPIPE : 0;
}

/* Drains and serves until nothing more can be done now. Returns 0 or a fatal -errno. */
static int serve_events(struct vm *vm, struct fault_queue *fq, uint64_t *served)
{
	int r;

	for (unsigned again = 0;; again++) {
		r = drain(vm, fq);
		if (!r)
			r = serve_queue(vm, fq, served);
		if (r != -EAGAIN || vm->stopping || fq->n >= fq->cap)
			break;
		eagain_backoff(again);
	}
	return r == -EAGAIN ? 0 : r; /* a full queue: poll, then go on */
}

void *fault_thread_main(void *arg)
{
	struct vm *vm = arg;
	struct fault_queue fq = {0};
	uint64_t served = 0;
	int r = queue_grow(&fq);

	pin_to_cpu(vm);
	if (!r && vm->wake_pending)
		wake_all(vm, &fq);
	while (!r && !vm->stopping) {
		r = wait_for_work(vm, &fq);
		if (!r)
			r = serve_events(vm, &fq, &served);
		/* Once per adoption at most: look without the lock, which every fault takes. */
		if (__atomic_load_n(&vm->stale_arming_over, __ATOMIC_ACQUIRE)) {
			pthread_mutex_lock(&vm->lock);
			if (vm->stale_arming_over)
				lift_stale_arming(vm);
			pthread_mutex_unlock(&vm->lock);
		}
		watchdog(vm, &fq);
		if (!r && hooks_fault_exit(served))
			r = -ECANCELED; /* tests: a fault thread that dies */
	}
	if (r && !vm->stopping && !vm_guest_gone(vm, r, 0))
		log_err(vm->name, "fault thread stops: %s", strerror(-r));
	free(fq.q);
	vm_fault_thread_exited(vm, vm->stopping ? 0 : r);
	return NULL;
}
