/* evict: see evict.h.
 *
 * The protocol, per run (DESIGN.md, race-free eviction):
 *   1. mark the run's resident pages EVICTING (lock held): faults on them now park;
 *   2. write-protect them in QEMU's mapping: a guest write blocks on a WP fault;
 *   3. copy each page to a shm slot (zero pages get no slot);
 *   4. record the new homes in the page map (lock held), the pages still EVICTING;
 *   5. punch the pages out of the guest memfd;
 *   6. commit (lock held): clear EVICTING, and wake parked faults;
 *   7. drop the protection, waking blocked writers: their retry misses and is served from
 *      the tier, and only then is their write applied.
 * Between 4 and 6 a missing fault parks, so it never sees a hole before its page's home is
 * recorded. A discard racing 3-5 is settled at 6 as a zero page. The home is recorded before
 * the punch so that a daemon killed at any step leaves the page findable: the page map lives in
 * the state memfd, and adoption (pagemap.h) keeps the memfd's copy where the punch had not
 * happened yet and the tier's where it had. */
#include "uffd-mgr/evict.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "uffd-mgr/fault.h"
#include "uffd-mgr/hooks.h"
#include "uffd-mgr/log.h"
#include "uffd-mgr/uffd.h"
#include "uffd-mgr/vm.h"
#include "uffd-mgr/zshm.h"

enum { HOME_KEEP = 0, HOME_ZERO, HOME_SHM, HOME_ZSHM };
#define HOME_UNPUNCHED 0x80 /* recorded, but the punch failed: the page stays resident */

/* How long an ioctl error that may be QEMU unmapping guest RAM on its way out waits for the
 * process to exit before it counts as an error (vm_guest_gone). */
#define GONE_GRACE_MS 500

struct victim {
	size_t first;	 /* first page of the run */
	size_t n;	 /* pages in the run */
	uint8_t *chosen; /* page i of the run is being evicted */
	uint8_t *home;	 /* HOME_* decided for each chosen page */
	uint64_t *slot;
};

static void pause_us(long us)
{
	struct timespec ts = {.tv_sec = 0, .tv_nsec = us * 1000};

	nanosleep(&ts, NULL);
}

/* Runs a uffd ioctl over each span of chosen pages; EAGAIN (a REMOVE queued, which the
 * fault thread will read) is waited out. */
static int for_each_span(struct vm *vm, struct victim *v, const uint8_t *sel, bool protect)
{
	for (size_t i = 0; i < v->n;) {
		size_t j = i;
		int r;

		if (!sel[i]) {
			i++;
			continue;
		}
		while (j < v->n && sel[j])
			j++;
		do {
			r = uffd_wp(vm->uffd, vm_page_addr(vm, v->first + i),
				    (j - i) * PAGE_SIZE_4K, protect, !protect);
			if (r == -EAGAIN)
				pause_us(20);
		} while (r == -EAGAIN && !vm->stopping);
		if (r)
			return r;
		i = j;
	}
	return 0;
}

static size_t choose(struct vm *vm, struct victim *v)
{
	size_t count = 0;

	uint64_t now = vm_now_ns();

	pthread_mutex_lock(&vm->lock);
	for (size_t i = 0; i < v->n; i++) {
		size_t p = v->first + i;

		unsigned fl = pagemap_flags(vm->pm, p);

		if (pagemap_state(vm->pm, p) == PS_RESIDENT && (!fl || fl == PF_PREFETCHED) &&
		    !vm_discard_pending(vm, p, now)) {
			if (fl) /* brought back ahead of time and not used: a wasted prefetch */
				vm->plan.ps.prefetch_unused++;
			pagemap_set_flags(vm->pm, p, PF_EVICTING);
			v->chosen[i] = 1;
			count++;
		}
	}
	pthread_mutex_unlock(&vm->lock);
	return count;
}

static bool page_is_zero(const uint8_t *p)
{
	const uint64_t *w = (const uint64_t *)p;

	for (size_t i = 0; i < PAGE_SIZE_4K / 8; i++)
		if (w[i])
			return false;
	return true;
}

/* Step 3 with [shm] compress: zero pages stay zero pages, the others go into one blob (or
 * more, when the pool has no room for one; zshm.c). */
static int copy_out_z(struct vm *vm, struct victim *v)
{
	uint8_t sel[512], stored[512] = {0}; /* run_size is at most 2M = 512 pages */
	int r;

	for (size_t i = 0; i < v->n; i++) {
		sel[i] = v->chosen[i] && !page_is_zero(vm->evict_src + i * PAGE_SIZE_4K);
		if (v->chosen[i] && !sel[i])
			v->home[i] = HOME_ZERO;
	}
	r = zshm_store(vm, vm->evict_src, v->n, sel, stored, v->slot, vm->evict_stage);
	for (size_t i = 0; i < v->n; i++)
		if (stored[i])
			v->home[i] = HOME_ZSHM;
	return r;
}

/* Step 3: gives each chosen page a home and copies it there from the run as read (after the
 * protection, so it is stable; vm.h evict_src says why not through a mapping). Returns 0 or -ENOSPC when the
 * tier filled part-way (pages without a home stay HOME_KEEP). */
static int copy_out(struct vm *vm, struct victim *v)
{
	if (vm->z)
		return copy_out_z(vm, v);
	for (size_t i = 0; i < v->n;) {
		size_t j = i;
		uint32_t got;
		int64_t s;

		if (!v->chosen[i]) {
			i++;
			continue;
		}
		if (page_is_zero(vm->evict_src + i * PAGE_SIZE_4K)) {
			v->home[i++] = HOME_ZERO;
			continue;
		}
		while (j < v->n && v->chosen[j] &&
		       !page_is_zero(vm->evict_src + j * PAGE_SIZE_4K))
			j++;
		s = shmpool_alloc(vm->shm, (uint32_t)(j - i), &got);
		if (s < 0)
			return (int)s;
		memcpy(shmpool_addr(vm->shm, (uint64_t)s), vm->evict_src + i * PAGE_SIZE_4K,
		       (size_t)got * PAGE_SIZE_4K);
		for (uint32_t k = 0; k < got; k++) {
			v->home[i + k] = HOME_SHM;
			v->slot[i + k] = (uint64_t)s + k;
		}
		i += got;
	}
	return 0;
}

/* Step 4: records each new home, so that from here on the page can be found whatever happens
 * to this daemon. The pages stay EVICTING: faults on them park until the commit. */
static void record(struct vm *vm, struct victim *v)
{
	pthread_mutex_lock(&vm->lock);
	for (size_t i = 0; i < v->n; i++) {
		if (v->home[i] == HOME_SHM)
			pagemap_set(vm->pm, v->first + i, PS_SHM, v->slot[i]);
		else if (v->home[i] == HOME_ZSHM)
			pagemap_set(vm->pm, v->first + i, PS_ZSHM, v->slot[i]);
		else if (v->home[i] == HOME_ZERO)
			pagemap_set(vm->pm, v->first + i, PS_ZERO, 0);
	}
	pthread_mutex_unlock(&vm->lock);
}

/* Step 5: punches every page that has a new home out of the guest memfd. A span whose punch
 * fails is marked HOME_UNPUNCHED: the commit puts it back (nothing moved, nothing lost).
 * Returns 0 or the first error. */
static int punch(struct vm *vm, struct victim *v)
{
	int ret = 0;

	for (size_t i = 0; i < v->n;) {
		size_t j = i;

		if (v->home[i] == HOME_KEEP) {
			i++;
			continue;
		}
		while (j < v->n && v->home[j] != HOME_KEEP)
			j++;
		if (fallocate(vm->memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
			      (off_t)(vm->memfd_offset + (v->first + i) * PAGE_SIZE_4K),
			      (off_t)((j - i) * PAGE_SIZE_4K)) < 0) {
			ret = ret ? ret : -errno;
			for (size_t k = i; k < j; k++)
				v->home[k] |= HOME_UNPUNCHED;
		}
		i = j;
	}
	return ret;
}

/* Step 6. Returns the pages moved out of guest RAM. */
static int commit(struct vm *vm, struct victim *v, bool tier_full)
{
	int moved = 0, zero = 0;
	uint64_t one = 1;

	pthread_mutex_lock(&vm->lock);
	for (size_t i = 0; i < v->n; i++) {
		size_t p = v->first + i;
		bool discarded;

		if (!v->chosen[i])
			continue;
		discarded = pagemap_flags(vm->pm, p) & PF_DISCARDED;
		/* The final home first, the flags next, the slot freed last: the entry outlives
		 * us and must name a slot only while it holds the page (pagemap.h). */
		if (v->home[i] & HOME_UNPUNCHED) /* the memfd holds whatever a discard left */
			pagemap_set(vm->pm, p, PS_RESIDENT, 0);
		else if (v->home[i] != HOME_KEEP && (discarded || v->home[i] == HOME_ZERO))
			pagemap_set(vm->pm, p, PS_ZERO, 0);
		pagemap_set_flags(vm->pm, p, 0);
		if ((v->home[i] & ~HOME_UNPUNCHED) == HOME_SHM &&
		    (discarded || v->home[i] & HOME_UNPUNCHED))
			shmpool_free(vm->shm, v->slot[i], 1);
		if ((v->home[i] & ~HOME_UNPUNCHED) == HOME_ZSHM &&
		    (discarded || v->home[i] & HOME_UNPUNCHED))
			zshm_put(vm, p, v->slot[i]); /* freed with the last page leaving it */
		if (v->home[i] == HOME_KEEP || v->home[i] & HOME_UNPUNCHED)
			continue; /* still resident */
		zero += discarded || v->home[i] == HOME_ZERO;
		moved++;
	}
	vm->st->evict_runs++;
	vm->st->evict_pages += (uint64_t)moved;
	vm->st->evict_zero_pages += (uint64_t)zero;
	/* A full shm tier stops eviction only when demotion cannot make room: with a disk tier
	 * that has room it is the normal trigger for demotion. */
	if (tier_full)
		vm->st->evict_aborts++;
	tier_full = tier_full && (!vm->disk || vm_now_ns() < vm->disk_retry_ns);
	if (tier_full && !vm->tier_full && vm->st->tier_full_events++ % 100 == 0)
		log_warn(vm->name,
			 "shm tier full (%llu MiB)%s: eviction paused, the guest runs on "
			 "past resident_max (%llu times so far)",
			 (unsigned long long)(vm->pol.shm_max >> 20),
			 vm->disk ? " and the disk tier cannot take more" : "",
			 (unsigned long long)vm->st->tier_full_events);
	vm->tier_full = tier_full;
	pthread_mutex_unlock(&vm->lock);
	(void)!write(vm->wake_efd, &one, sizeof(one));
	return moved;
}

/* Lifting the protection failed: the writers blocked on the run are woken all the same, so
 * none waits for ever (one that meets protection still on faults again, and serve_wp lifts
 * it). Said once per 1000, and not at all once the guest has gone (QEMU unmaps its RAM on the
 * way out, and every ioctl fails from then on). */
static void unprotect_failed(struct vm *vm, struct victim *v, int err)
{
	uint64_t n;

	uffd_wake(vm->uffd, vm_page_addr(vm, v->first), v->n * PAGE_SIZE_4K);
	if (vm_guest_gone(vm, err, GONE_GRACE_MS))
		return;
	pthread_mutex_lock(&vm->lock);
	n = vm->st->evict_wp_errors++;
	pthread_mutex_unlock(&vm->lock);
	if (n % 1000 == 0)
		log_err(vm->name,
			"cannot lift write-protection on run %#zx: %s; its writers were woken "
			"(%llu times so far)",
			v->first, strerror(-err), (unsigned long long)n + 1);
}

int evict_run(struct vm *vm, size_t first_page)
{
	struct victim v = {.first = first_page, .n = pagemap_run_pages(vm->pm)};
	int r, moved = 0;
	bool full = false;

	if (v.first + v.n > pagemap_npages(vm->pm))
		v.n = pagemap_npages(vm->pm) - v.first;
	v.chosen = calloc(v.n, 1);
	v.home = calloc(v.n, 1);
	v.slot = calloc(v.n, sizeof(*v.slot));
	if (!v.chosen || !v.home || !v.slot) {
		r = -ENOMEM;
		goto out;
	}
	if (!choose(vm, &v)) {
		r = 0;
		goto out;
	}
	r = for_each_span(vm, &v, v.chosen, true);
	if (r) /* nothing copied yet: every page keeps its home */
		goto settle;
	r = vm_read_guest(vm, v.first, v.n, vm->evict_src);
	if (r) { /* nothing copied: every page keeps its home */
		log_err(vm->name, "reading run at page %#zx from the guest memfd failed: %s",
			v.first, strerror(-r));
		goto settle;
	}
	r = copy_out(vm, &v);
	full = (r == -ENOSPC);
	hooks_evict_copied(vm, v.first);
	record(vm, &v);
	r = punch(vm, &v);
	if (r)
		log_err(vm->name, "punching run at page %#zx failed: %s; its pages stay resident",
			v.first, strerror(-r));
settle:
	moved = commit(vm, &v, full);
	r = for_each_span(vm, &v, v.chosen, false);
	if (r)
		unprotect_failed(vm, &v, r);
	r = full && !moved ? -ENOSPC : moved;
out:
	free(v.chosen);
	free(v.home);
	free(v.slot);
	return r;
}

/* ---- Demotion: shm tier -> disk tier ----
 *
 * The run's shm pages are flagged EVICTING (faults on them park), staged in guest order into
 * the registered staging buffer, and written to adjacent disk slots, as one I/O where the
 * disk allocator gives one extent. Only once the write completed are the new homes committed
 * and the shm slots freed; a failed write frees the disk slots and leaves every page where
 * it was. A discard during the write is settled at the commit as a zero page. */

struct demotion {
	size_t first, n;
	uint8_t chosen[512]; /* run_size is at most 2M = 512 pages */
	uint8_t z[512];	     /* the page was PS_ZSHM: shm_slot is its blob's reference */
	uint64_t shm_slot[512];
	uint64_t disk_slot[512];
	struct disktier_seg segs[512];
	unsigned nsegs;
	size_t count;
};

/* A compressed page goes to disk unpacked: the disk tier keeps its one slot per page, so a
 * disk fault stays one read and one copy, and a 4 KiB page would take a 4 KiB disk block
 * compressed or not. Returns false (the page is left where it is) when its blob is damaged;
 * the fault that meets it fails the VM with the page's name. Lock held. */
static bool demote_stage_z(struct vm *vm, struct demotion *d, size_t i, uint64_t *cached)
{
	d->z[i] = 1;
	if (!zshm_copy_page(vm, d->shm_slot[i], vm->evict_stage + d->count * PAGE_SIZE_4K,
			    vm->zscratch, cached))
		return true;
	vm->st->demote_errors++;
	log_err(vm->name, "page %#zx: its compressed copy is damaged; not demoted", d->first + i);
	return false;
}

static size_t demote_choose(struct vm *vm, struct demotion *d)
{
	uint64_t cached = 0;

	d->count = 0;
	pthread_mutex_lock(&vm->lock);
	for (size_t i = 0; i < d->n; i++) {
		size_t p = d->first + i;
		enum page_state st = pagemap_state(vm->pm, p);

		d->chosen[i] = (st == PS_SHM || st == PS_ZSHM) && !pagemap_flags(vm->pm, p);
		if (!d->chosen[i])
			continue;
		d->shm_slot[i] = pagemap_slot(vm->pm, p);
		if (st == PS_ZSHM && !demote_stage_z(vm, d, i, &cached)) {
			d->chosen[i] = 0;
			continue;
		}
		pagemap_set_flags(vm->pm, p, PF_EVICTING);
		if (st == PS_SHM)
			memcpy(vm->evict_stage + d->count * PAGE_SIZE_4K,
			       shmpool_addr(vm->shm, d->shm_slot[i]), PAGE_SIZE_4K);
		d->count++;
	}
	pthread_mutex_unlock(&vm->lock);
	return d->count;
}

/* Gives the chosen pages adjacent disk slots, in as few extents as the allocator allows. */
static int demote_alloc(struct vm *vm, struct demotion *d)
{
	size_t placed = 0;

	d->nsegs = 0;
	while (placed < d->count) {
		uint32_t got;
		int64_t s = disktier_alloc(vm->disk, (uint32_t)(d->count - placed), &got);

		if (s < 0) {
			for (unsigned k = 0; k < d->nsegs; k++)
				disktier_free(vm->disk, d->segs[k].slot, d->segs[k].npages);
			d->nsegs = 0;
			return (int)s;
		}
		d->segs[d->nsegs++] =
		    (struct disktier_seg){.slot = (uint64_t)s,
					  .buf = vm->evict_stage + placed * PAGE_SIZE_4K,
					  .npages = got};
		placed += got;
	}
	for (size_t i = 0, k = 0, in_seg = 0; i < d->n; i++) {
		if (!d->chosen[i])
			continue;
		d->disk_slot[i] = d->segs[k].slot + in_seg;
		if (++in_seg == d->segs[k].npages) {
			k++;
			in_seg = 0;
		}
	}
	return 0;
}

/* Settles the pages: moved to disk when moved, else back to plain shm pages. */
static void demote_commit(struct vm *vm, struct demotion *d, bool moved)
{
	uint64_t one = 1;

	pthread_mutex_lock(&vm->lock);
	for (size_t i = 0; i < d->n; i++) {
		size_t p = d->first + i;
		bool discarded;

		if (!d->chosen[i])
			continue;
		discarded = pagemap_flags(vm->pm, p) & PF_DISCARDED;
		/* The new home first, then the flags, then the old slot: a daemon killed in
		 * between leaves an entry naming a slot that still holds the page. */
		if (discarded)
			pagemap_set(vm->pm, p, PS_ZERO, 0);
		else if (moved)
			pagemap_set(vm->pm, p, PS_DISK, d->disk_slot[i]);
		pagemap_set_flags(vm->pm, p, 0);
		if ((discarded || moved) && d->z[i])
			zshm_put(vm, p, d->shm_slot[i]); /* freed with the last page leaving it */
		else if (discarded || moved)
			shmpool_free(vm->shm, d->shm_slot[i], 1);
		if (discarded && moved)
			disktier_free(vm->disk, d->disk_slot[i], 1);
	}
	if (moved) {
		vm->st->demote_runs++;
		vm->st->demote_pages += d->count;
	}
	pthread_mutex_unlock(&vm->lock);
	(void)!write(vm->wake_efd, &one, sizeof(one));
}

static void disk_full(struct vm *vm, int err)
{
	pthread_mutex_lock(&vm->lock);
	if (!vm->disk_retry_ns && vm->st->disk_full_events++ % 100 == 0)
		log_warn(vm->name, "disk tier %s full (%s): demotion paused (%llu times so far)",
			 disktier_path(vm->disk), strerror(-err),
			 (unsigned long long)vm->st->disk_full_events);
	vm->disk_retry_ns = vm_now_ns() + 1000000000ull;
	pthread_mutex_unlock(&vm->lock);
}

/* Demotes one run. Returns the pages moved, -ENOENT when the shm tier holds no run that can
 * move, or -errno (-ENOSPC: the disk tier is full). */
static int demote_run(struct vm *vm)
{
	struct demotion *d = calloc(1, sizeof(*d));
	int r;

	if (!d)
		return -ENOMEM;
	pthread_mutex_lock(&vm->lock);
	r = pagemap_demote_pick(vm->pm, &d->first);
	pthread_mutex_unlock(&vm->lock);
	if (r)
		goto out;
	d->n = pagemap_run_pages(vm->pm);
	if (d->first + d->n > pagemap_npages(vm->pm))
		d->n = pagemap_npages(vm->pm) - d->first;
	if (!demote_choose(vm, d))
		goto out; /* r == 0: nothing movable in this run right now */
	r = demote_alloc(vm, d);
	if (!r) {
		r = disktier_write(vm->evict_io, d->segs, d->nsegs);
		for (unsigned k = 0; r && k < d->nsegs; k++)
			disktier_free(vm->disk, d->segs[k].slot, d->segs[k].npages);
	}
	if (r && r != -ENOSPC) {
		pthread_mutex_lock(&vm->lock);
		vm->st->demote_errors++;
		pthread_mutex_unlock(&vm->lock);
		log_err(vm->name, "writing run %#zx to the disk tier failed: %s; it stays in shm",
			d->first, strerror(-r));
	}
	demote_commit(vm, d, r == 0);
	r = r ? r : (int)d->count;
out:
	free(d);
	return r;
}

/* Demotes the coldest shm runs once the shm tier passes its high watermark, down to its low
 * watermark. A full disk pauses demotion for a second. */
static void demote_round(struct vm *vm, bool force)
{
	uint64_t slots, high, low;

	if (!vm->disk || vm_now_ns() < vm->disk_retry_ns)
		return;
	slots = shmpool_slots(vm->shm);
	high = slots * vm->pol.shm_high_pct / 100;
	low = slots * vm->pol.shm_low_pct / 100;
	if (!force && !vm->demoting && shmpool_used(vm->shm) < high)
		return;
	vm->demoting = true;
	while (!vm->stopping && !vm->evict_stop && shmpool_used(vm->shm) > low) {
		int r = demote_run(vm);

		if (r == -ENOSPC) {
			disk_full(vm, r);
			return;
		}
		if (r == -ENOENT || r < 0)
			break;
		vm->disk_retry_ns = 0;
	}
	vm->demoting = false;
}

/* Evicts until resident is a little under the limit (the slack batches the work), or the
 * clock finds nothing, or the tier is full. */
static void evict_round(struct vm *vm)
{
	while (!vm->stopping && !vm->evict_stop && !atomic_load(&vm->gone)) {
		uint64_t limit, slack, low;
		size_t first;
		int r;

		pthread_mutex_lock(&vm->lock);
		/* The planner may move the limit while we work: read it each time. */
		limit = vm_limit_pages(vm);
		slack = limit / 32 > 4ull * pagemap_run_pages(vm->pm)
			    ? limit / 32
			    : 4ull * pagemap_run_pages(vm->pm);
		low = limit > slack ? limit - slack : 0;
		if (!limit || pagemap_count(vm->pm, PS_RESIDENT) <= low)
			r = -EALREADY;
		else
			r = vm->track_mode == POLICY_TRACK_OFF ? pagemap_clock_pick(vm->pm, &first)
							       : pagemap_age_pick(vm->pm, &first);
		pthread_mutex_unlock(&vm->lock);
		if (r)
			return;
		r = evict_run(vm, first);
		if (r == -ENOSPC) {
			uint64_t before = shmpool_used(vm->shm);

			demote_round(vm, true); /* make room in shm, then go on */
			if (shmpool_used(vm->shm) < before)
				continue;
			pause_us(100000);
			return;
		}
		if (r < 0 && vm_guest_gone(vm, r, GONE_GRACE_MS))
			return;
		if (r < 0)
			log_err(vm->name, "eviction of run %#zx failed: %s", first, strerror(-r));
	}
}

/* Picks the next runs to prefetch into b, hottest first, while the planner wants pages and
 * the VM stays under its limit with them; their first pages go to firsts, and was[k * run + i]
 * says whether page i of the k-th was tiered. Stops at a run whose tiered pages are all in
 * the (uncompressed) shm tier: those are the shm batch's (fault_prefetch_batch). Lock held.
 * Returns how many runs. */
static size_t prefetch_pick(struct vm *vm, struct disk_batch *b, size_t *firsts, uint8_t *was,
			    size_t max_runs)
{
	size_t run = pagemap_run_pages(vm->pm), k = 0, tiered = 0, first;
	uint64_t limit = vm_limit_pages(vm);

	while (k < max_runs && tiered < vm->prefetch_want &&
	       (!limit || pagemap_count(vm->pm, PS_RESIDENT) + tiered + run <= limit) &&
	       !pagemap_hot_tiered_pick(vm->pm, &first)) {
		uint8_t *w = was + k * run;
		size_t n = 0, other = 0;

		if (k && first == firsts[k - 1])
			break; /* nothing of it could move: it is still the hottest */
		for (size_t i = 0; i < run; i++) {
			enum page_state st = first + i < pagemap_npages(vm->pm)
						 ? pagemap_state(vm->pm, first + i)
						 : PS_NONE;

			w[i] = st == PS_SHM || st == PS_DISK || st == PS_ZSHM;
			n += w[i];
			other += st == PS_DISK || st == PS_ZSHM;
		}
		if (!other)
			break; /* shm only: the next shm batch takes it */
		if (fault_batch_add_run(vm, b, first))
			break; /* the stage is full: read what it holds first */
		firsts[k++] = first;
		tiered += n;
	}
	return k;
}

/* Reads the disk batch b of k runs (prefetch_pick) and flags what came back. Returns the
 * pages brought back. */
static uint64_t prefetch_disk(struct vm *vm, struct disk_batch *b, const size_t *firsts,
			      const uint8_t *was, size_t k)
{
	size_t run = pagemap_run_pages(vm->pm);
	uint64_t got = 0;

	fault_batch_read(vm, vm->evict_io, b);
	pthread_mutex_lock(&vm->lock);
	for (size_t j = 0; j < k; j++) {
		for (size_t i = 0; i < run; i++) {
			size_t p = firsts[j] + i;

			if (was[j * run + i] && pagemap_state(vm->pm, p) == PS_RESIDENT &&
			    !pagemap_flags(vm->pm, p)) {
				pagemap_set_flags(vm->pm, p, PF_PREFETCHED);
				got++;
			}
		}
	}
	pthread_mutex_unlock(&vm->lock);
	return got;
}

/* Brings tiered runs back ahead of faults while the planner asks for pages (prefetch_want)
 * and the VM stays under its limit: the runs seen most recently first, in batches: shm spans
 * of up to PREFETCH_CHUNK (fault_prefetch_batch: adjacent runs of the same age, copies that
 * wake nobody, one wake per batch), then compressed and disk runs, disk spans of many runs
 * with one deep read through this thread's ring (fault_batch_add_run, fault_batch_read). The
 * planner zeroes prefetch_want when pressure returns. */
#define PREFETCH_CHUNK (4u << 20) /* per batch: the fault thread waits for the lock meanwhile */
static void prefetch_round(struct vm *vm)
{
	size_t run = pagemap_run_pages(vm->pm);
	size_t max_runs = vm->evict_stage_len / PAGE_SIZE_4K / run;
	struct disk_batch *b = calloc(1, sizeof(*b));
	size_t *firsts = calloc(max_runs, sizeof(*firsts));
	uint8_t *was = calloc(max_runs, run);

	if (!b || !firsts || !was)
		goto out;
	b->stage = vm->evict_stage;
	b->stage_pages = vm->evict_stage_len / PAGE_SIZE_4K;
	while (!vm->stopping && !vm->evict_stop) {
		uint64_t limit, want, room, got = 0;
		long shm;
		size_t k;

		pthread_mutex_lock(&vm->lock);
		limit = vm_limit_pages(vm);
		want = vm->prefetch_want;
		room = limit ? limit - (pagemap_count(vm->pm, PS_RESIDENT) < limit
					    ? pagemap_count(vm->pm, PS_RESIDENT)
					    : limit)
			     : UINT64_MAX;
		if (!want || room < run) {
			vm->prefetch_want = 0;
			pthread_mutex_unlock(&vm->lock);
			break;
		}
		pthread_mutex_unlock(&vm->lock);
		want = want < room ? want : room;
		want = want < PREFETCH_CHUNK / PAGE_SIZE_4K ? want : PREFETCH_CHUNK / PAGE_SIZE_4K;
		shm = fault_prefetch_batch(vm, want > run ? (size_t)want : run);
		if (shm > 0)
			got += (uint64_t)shm;
		pthread_mutex_lock(&vm->event_lock); /* its shm copies: see vm.h */
		pthread_mutex_lock(&vm->lock);
		vm->prefetch_want = vm->prefetch_want > got ? vm->prefetch_want - got : 0;
		k = vm->prefetch_want ? prefetch_pick(vm, b, firsts, was, max_runs) : 0;
		pthread_mutex_unlock(&vm->lock);
		pthread_mutex_unlock(&vm->event_lock);
		if (k)
			got += prefetch_disk(vm, b, firsts, was, k);
		pthread_mutex_lock(&vm->lock);
		vm->plan.ps.prefetched_pages += got;
		if (k) {
			uint64_t d = got - (shm > 0 ? (uint64_t)shm : 0);

			vm->prefetch_want = vm->prefetch_want > d ? vm->prefetch_want - d : 0;
		}
		if (!got) /* nothing moved (in flight, failing, or nothing tiered): next plan */
			vm->prefetch_want = 0;
		pthread_mutex_unlock(&vm->lock);
	}
out:
	free(b);
	free(firsts);
	free(was);
}

void *evict_thread_main(void *arg)
{
	struct vm *vm = arg;

	/* An adopted VM: the fault thread first lifts every protection the dead daemon left;
	 * one of ours must not be among them. */
	pthread_mutex_lock(&vm->lock);
	while (vm->wake_pending && !vm->stopping) {
		struct timespec until = vm_deadline_ms(100);

		pthread_cond_timedwait(&vm->evict_cv, &vm->lock, &until);
	}
	pthread_mutex_unlock(&vm->lock);

	while (!vm->stopping && !vm->evict_stop) {
		struct timespec until = vm_deadline_ms(100);
		bool over;

		pthread_mutex_lock(&vm->lock);
		if (!vm->stopping && !vm->evict_stop && !vm_over_limit(vm) && !vm->prefetch_want)
			pthread_cond_timedwait(&vm->evict_cv, &vm->lock, &until);
		over = vm_over_limit(vm);
		pthread_mutex_unlock(&vm->lock);
		/* Start only past the limit; evict_round then goes down to its low mark, so a
		 * working set between the two is left alone. */
		if (over)
			evict_round(vm);
		demote_round(vm, false);
		if (!over)
			prefetch_round(vm);
		/* The disk space of slots the fault path freed comes back here, off its path. */
		if (vm->disk)
			disktier_reclaim(vm->disk);
	}
	return NULL;
}
