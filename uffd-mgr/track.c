/* track: see track.h. */
#include "uffd-mgr/track.h"

#include <errno.h>
#include <json-c/json.h>
#include <linux/userfaultfd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ebpf/tracker.h"
#include "qemu-glue/qmp.h"
#include "uffd-mgr/gpamap.h"
#include "uffd-mgr/log.h"
#include "uffd-mgr/proto.h"
#include "uffd-mgr/regions.h"
#include "uffd-mgr/vm.h"

#define SAMPLE_DEFAULT_PAGES 4096
#define GPA_QMP_TIMEOUT_MS   2000
#define BUSY_FAULTS	     1000 /* per interval: see plan_regions */
#define BUSY_RANGES	     16
const unsigned track_windows[TRACK_WINDOWS] = {1, 10, 60};

const char *track_mode_name(int mode)
{
	return mode == POLICY_TRACK_EBPF ? "ebpf" : mode == POLICY_TRACK_SAMPLE ? "sample" : "off";
}

void track_choose(struct vm *vm, struct tracker *bpf, const char *bpf_err)
{
	bool minor = vm->uffd_features & UFFD_FEATURE_MINOR_SHMEM;
	int want = vm->pol.track_mode;

	vm->track_why[0] = 0;
	vm->bpf = bpf;
	if (want == POLICY_TRACK_EBPF && bpf) {
		vm->track_mode = POLICY_TRACK_EBPF;
		snprintf(vm->track_why, sizeof(vm->track_why), "BPF on the page-fault tracepoints");
		return;
	}
	if (want == POLICY_TRACK_OFF) {
		vm->track_mode = POLICY_TRACK_OFF;
		snprintf(vm->track_why, sizeof(vm->track_why), "off by policy");
		return;
	}
	vm->track_mode = minor ? POLICY_TRACK_SAMPLE : POLICY_TRACK_OFF;
	snprintf(vm->track_why, sizeof(vm->track_why), "%s%s%s%s",
		 want == POLICY_TRACK_EBPF ? "ebpf unavailable: " : "",
		 want == POLICY_TRACK_EBPF ? (bpf_err && *bpf_err ? bpf_err : "not loaded") : "",
		 want == POLICY_TRACK_EBPF ? "; " : "",
		 minor ? "sampling with userfaultfd minor faults"
		       : "no UFFD_FEATURE_MINOR_SHMEM for sampling either: tracker off");
}

void track_note_access(struct vm *vm, size_t page)
{
	if (vm->track_mode != POLICY_TRACK_SAMPLE || !vm->wss)
		return;
	wss_mark(vm->wss, page, pagemap_epoch(vm->pm));
	pagemap_mark_seen(vm->pm, page);
}

static bool exact(const struct vm *vm)
{
	return vm->track_mode == POLICY_TRACK_EBPF && vm->pol.track_sample_pages == 0 &&
	       vm->pol.track_regions == 0;
}

/* The default of mode ebpf: adaptive regions (regions.h). */
static bool by_regions(const struct vm *vm)
{
	return vm->track_mode == POLICY_TRACK_EBPF && vm->pol.track_sample_pages == 0 &&
	       vm->pol.track_regions != 0;
}

/* Adds the range [first, first + n) to the arming list and flags its pages. Lock held. */
static int arm_add(struct vm *vm, size_t first, size_t n, size_t *cap)
{
	if (vm->narmed == *cap) {
		size_t c = *cap ? *cap * 2 : 256;
		struct proto_range *a = realloc(vm->armed, c * sizeof(*a));

		if (!a)
			return -ENOMEM;
		vm->armed = a;
		*cap = c;
	}
	vm->armed[vm->narmed++] = (struct proto_range){.first_page = first, .npages = n};
	for (size_t p = first; p < first + n; p++)
		pagemap_set_flags(vm->pm, p, pagemap_flags(vm->pm, p) | PF_ARMING);
	return 0;
}

static bool armable(const struct vm *vm, size_t p)
{
	unsigned fl = pagemap_flags(vm->pm, p);

	return pagemap_state(vm->pm, p) == PS_RESIDENT && (!fl || fl == PF_PREFETCHED);
}

/* Adds the armable spans of pages [lo, hi). Returns pages added. Lock held. */
static size_t arm_spans(struct vm *vm, size_t lo, size_t hi, size_t *cap)
{
	size_t added = 0;

	for (size_t p = lo; p < hi && vm->narmed < PROTO_ARM_MAX;) {
		size_t q = p;

		while (q < hi && armable(vm, q))
			q++;
		if (q > p && arm_add(vm, p, q - p, cap) == 0)
			added += q - p;
		p = q + (q == p);
	}
	return added;
}

static uint64_t rng_next(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static int by_first_page(const void *a, const void *b)
{
	const struct proto_range *x = a, *y = b;

	return x->first_page < y->first_page ? -1 : x->first_page > y->first_page;
}

/* Sorts the ranges and joins adjacent ones: each range costs QEMU one madvise and the
 * daemon one REMOVE round trip. */
static void merge_ranges(struct vm *vm)
{
	size_t out = 0;

	qsort(vm->armed, vm->narmed, sizeof(*vm->armed), by_first_page);
	for (size_t i = 0; i < vm->narmed; i++) {
		if (out && vm->armed[out - 1].first_page + vm->armed[out - 1].npages ==
			       vm->armed[i].first_page)
			vm->armed[out - 1].npages += vm->armed[i].npages;
		else
			vm->armed[out++] = vm->armed[i];
	}
	vm->narmed = out;
}

/* Chooses what the next interval observes: every armable page, or whole runs picked at
 * random until the sample is full. Lock held. Returns pages chosen. */
static size_t plan_arming(struct vm *vm, uint64_t *rng, size_t *cap)
{
	size_t npages = pagemap_npages(vm->pm), run = pagemap_run_pages(vm->pm);
	size_t nruns = (npages + run - 1) / run, want, chosen = 0;

	vm->narmed = 0;
	if (exact(vm))
		return arm_spans(vm, 0, npages, cap);
	want = vm->pol.track_sample_pages ? vm->pol.track_sample_pages : SAMPLE_DEFAULT_PAGES;
	for (size_t tries = 0; chosen < want && tries < 4 * nruns && vm->narmed < PROTO_ARM_MAX;
	     tries++) {
		size_t r = rng_next(rng) % nruns,
		       hi = (r + 1) * run < npages ? (r + 1) * run : npages;

		chosen += arm_spans(vm, r * run, hi, cap);
	}
	merge_ranges(vm);
	return chosen;
}

/* The regions sampler's view of the page map. armable is called from plan_regions, lock
 * held; resident and hot take the lock themselves, so that the end of an interval holds it for
 * one region at a time (a bounded share of the map), never for a walk of the whole map. */
static bool rg_armable(void *ctx, size_t p)
{
	const struct vm *vm = ctx;

	return pagemap_state(vm->pm, p) == PS_RESIDENT && !pagemap_flags(vm->pm, p);
}

static size_t rg_resident(void *ctx, size_t first, size_t n)
{
	struct vm *vm = ctx;
	size_t run = pagemap_run_pages(vm->pm), c = 0, p = first, end = first + n;

	pthread_mutex_lock(&vm->lock);
	for (; p < end && p % run; p++)
		c += pagemap_state(vm->pm, p) == PS_RESIDENT;
	for (; p + run <= end; p += run)
		c += pagemap_run_resident(vm->pm, p);
	for (; p < end; p++)
		c += pagemap_state(vm->pm, p) == PS_RESIDENT;
	pthread_mutex_unlock(&vm->lock);
	return c;
}

/* A region found used: its resident runs are seen this epoch, for the evictor's age order
 * (the region is the tracker's grain). Runs in a tier are left alone: marking them would
 * send the prefetcher after pages nobody asked for. */
static void rg_hot(void *ctx, size_t first, size_t n)
{
	struct vm *vm = ctx;
	size_t run = pagemap_run_pages(vm->pm);

	pthread_mutex_lock(&vm->lock);
	for (size_t p = first; p < first + n; p = (p / run + 1) * run)
		if (pagemap_run_resident(vm->pm, p))
			pagemap_mark_seen(vm->pm, p);
	pthread_mutex_unlock(&vm->lock);
}

static const struct regions_ops rg_ops = {.armable = rg_armable, .resident = rg_resident};

/* Missing faults the fault thread has served so far. Lock held. */
static uint64_t faults_served(const struct vm *vm)
{
	return vm->st->faults_zero + vm->st->faults_shm + vm->st->faults_disk;
}

/* Chooses the regions' samples and flags those to arm: one range each, joined where they
 * touch. O(regions). Lock held. Returns pages chosen.
 *
 * Every range's REMOVE stalls the VM's faults until QEMU's arming thread runs again (the
 * uffd ioctls fail with EAGAIN meanwhile), a few ms on a loaded host. A VM that faulted more
 * than BUSY_FAULTS times in the last interval is busy bringing pages in, which the tracker sees
 * anyway: it arms at most BUSY_RANGES regions, in turn; the others hold their last verdict. */
static size_t plan_regions(struct vm *vm, struct regions *rg, size_t *pages, size_t *cap,
			   uint64_t *last_faults)
{
	size_t max = regions_count(rg) < PROTO_ARM_MAX ? regions_count(rg) : PROTO_ARM_MAX, n,
	       chosen = 0;
	uint64_t f = faults_served(vm);

	if (f - *last_faults > BUSY_FAULTS && max > BUSY_RANGES)
		max = BUSY_RANGES;
	*last_faults = f;
	n = regions_plan(rg, &rg_ops, vm, pages, max);

	vm->narmed = 0;
	for (size_t i = 0; i < n; i++)
		chosen += arm_add(vm, pages[i], 1, cap) == 0;
	merge_ranges(vm);
	return chosen;
}

/* Ends a regions epoch. The bitmap walk (1 bit per page) and the regions' own work run
 * without the lock; each page seen takes it briefly. An epoch whose arming failed or came
 * too late (observed false) gives no estimate: it would read every region as unused. */
static void end_regions(struct vm *vm, struct regions *rg, const uint64_t *bits, bool observed)
{
	size_t npages = pagemap_npages(vm->pm);
	struct vm_track_stats *ts = &vm->ts;
	uint32_t e = pagemap_epoch(vm->pm);
	double est;

	/* Only this thread touches the wss in ebpf mode (track_note_access is for sample). */
	wss_mark_bits(vm->wss, bits, e);
	for (size_t w = 0; w * 64 < npages; w++) {
		if (!bits[w])
			continue;
		pthread_mutex_lock(&vm->lock);
		for (uint64_t b = bits[w]; b; b &= b - 1) {
			size_t p = w * 64 + (size_t)__builtin_ctzll(b);

			if (p >= npages)
				break;
			pagemap_mark_seen(vm->pm, p);
			if (pagemap_flags(vm->pm, p) & PF_PREFETCHED) {
				/* brought back ahead of time, and now used */
				pagemap_set_flags(vm->pm, p,
						  pagemap_flags(vm->pm, p) & ~PF_PREFETCHED);
				vm->plan.ps.prefetch_used++;
			}
		}
		pthread_mutex_unlock(&vm->lock);
	}
	est = regions_end(rg, bits, &rg_ops, vm, rg_hot);
	pthread_mutex_lock(&vm->lock);
	if (observed)
		wss_push_estimate(vm->wss, est);
	for (int i = 0; i < TRACK_WINDOWS; i++)
		ts->wss_pages[i] = (uint64_t)(wss_sample_window(vm->wss, track_windows[i]) + 0.5);
	memset(ts->age_pages, 0, sizeof(ts->age_pages));
	regions_ages(rg, ts->age_pages);
	ts->idle_pages =
	    ts->age_pages[WSS_AGE_BUCKETS - 2] + ts->age_pages[WSS_AGE_BUCKETS - 1];
	ts->regions = regions_count(rg);
	ts->epoch = e;
	pthread_mutex_unlock(&vm->lock);
}

/* Ends the epoch: folds in what it saw and refreshes the estimates. Lock held. */
static void end_epoch(struct vm *vm, const uint64_t *bits, size_t armed_pages, size_t population)
{
	uint32_t e = pagemap_epoch(vm->pm);
	size_t npages = pagemap_npages(vm->pm), seen_sample = 0, seen_all;
	struct vm_track_stats *ts = &vm->ts;

	if (bits) {
		wss_mark_bits(vm->wss, bits, e);
		for (size_t w = 0; w * 64 < npages; w++)
			for (uint64_t b = bits[w]; b; b &= b - 1)
				pagemap_mark_seen(vm->pm, w * 64 + (size_t)__builtin_ctzll(b));
	}
	seen_all = wss_seen_in(vm->wss, 0, npages, e);
	for (size_t i = 0; i < vm->narmed; i++)
		seen_sample +=
		    wss_seen_in(vm->wss, vm->armed[i].first_page, vm->armed[i].npages, e);
	wss_sample_end(vm->wss, armed_pages, seen_sample, population, seen_all - seen_sample);
	for (int i = 0; i < TRACK_WINDOWS; i++)
		ts->wss_pages[i] =
		    exact(vm) ? wss_seen_since(vm->wss,
					       e >= track_windows[i] ? e - track_windows[i] + 1 : 1)
			      : (uint64_t)(wss_sample_window(vm->wss, track_windows[i]) + 0.5);
	memset(ts->age_pages, 0, sizeof(ts->age_pages));
	ts->idle_pages = 0;
	for (size_t p = 0; p < npages; p++) {
		enum page_state st = pagemap_state(vm->pm, p);
		unsigned b;

		if (st != PS_RESIDENT && st != PS_SHM && st != PS_DISK && st != PS_ZSHM)
			continue;
		b = wss_age_bucket(wss_last_seen(vm->wss, p), e);
		if (b == 0 && (pagemap_flags(vm->pm, p) & PF_PREFETCHED)) {
			/* brought back ahead of time, and now used */
			pagemap_set_flags(vm->pm, p, pagemap_flags(vm->pm, p) & ~PF_PREFETCHED);
			vm->plan.ps.prefetch_used++;
		}
		ts->age_pages[b]++;
		ts->idle_pages += b >= WSS_AGE_BUCKETS - 2;
	}
	ts->epoch = e;
}

static int send_arm(struct vm *vm, struct proto_arm *msg)
{
	size_t len = sizeof(*msg) + vm->narmed * sizeof(msg->range[0]);

	proto_hdr_init(&msg->hdr, PROTO_ARM, (uint32_t)len);
	msg->nranges = (uint32_t)vm->narmed;
	msg->seq = ++vm->arm_seq;
	memcpy(msg->range, vm->armed, vm->narmed * sizeof(msg->range[0]));
	return proto_send(vm->ctl_sock, msg, len, NULL, 0);
}

/* Sleeps until the monotonic deadline (ns), or until told to stop. Epochs are anchored to a
 * fixed clock, so the time an arming takes does not stretch them. */
static void wait_until(struct vm *vm, uint64_t deadline)
{
	uint64_t now = vm_now_ns();

	if (deadline <= now)
		return;
	struct timespec until = vm_deadline_ms((uint32_t)((deadline - now) / 1000000));

	pthread_mutex_lock(&vm->lock);
	while (!vm->track_stop && !vm->stopping &&
	       pthread_cond_timedwait(&vm->track_cv, &vm->lock, &until) != ETIMEDOUT)
		;
	pthread_mutex_unlock(&vm->lock);
}

/* Lifts PF_ARMING from every page of the last arming. Lock held. */
static void clear_armed(struct vm *vm)
{
	for (size_t i = 0; i < vm->narmed; i++)
		for (size_t p = 0; p < vm->armed[i].npages; p++)
			if (pagemap_flags(vm->pm, vm->armed[i].first_page + p) & PF_ARMING)
				pagemap_set_flags(
				    vm->pm, vm->armed[i].first_page + p,
				    pagemap_flags(vm->pm, vm->armed[i].first_page + p) &
					~PF_ARMING);
}

/* The arming has ended in QEMU: each of its madvises returned once the fault thread had read
 * its REMOVE. Once the fault thread has also applied what it read, PF_ARMING is lifted from
 * every page of the arming (a REMOVE does not lift it: it may have been a discard's). Waits
 * without the lock, which applying takes; at most 1 s (a fault thread that is gone). */
static void end_arming(struct vm *vm)
{
	for (int i = 0; i < 20000 && __atomic_load_n(&vm->uffd_reading, __ATOMIC_SEQ_CST); i++)
		usleep(50);
	pthread_mutex_lock(&vm->lock);
	clear_armed(vm);
	pthread_mutex_unlock(&vm->lock);
}

/* Waits for the shim to answer the arming just sent, so the interval measured starts once
 * the pages are armed. An arming the shim did not carry out at all raised no REMOVE: its
 * flags are lifted here. Returns false while an arming is still unanswered. */
static bool wait_armed(struct vm *vm)
{
	struct timespec until = vm_deadline_ms(vm->pol.track_interval_ms);
	uint64_t t0 = vm_now_ns();
	bool done;

	pthread_mutex_lock(&vm->lock);
	while (vm->arm_done_seq != vm->arm_seq && !vm->track_stop && !vm->stopping &&
	       pthread_cond_timedwait(&vm->track_cv, &vm->lock, &until) != ETIMEDOUT)
		;
	done = vm->arm_done_seq == vm->arm_seq;
	vm->ts.arm_ns = vm_now_ns() - t0;
	pthread_mutex_unlock(&vm->lock);
	if (done)
		end_arming(vm);
	return done;
}

static void *track_main(void *arg)
{
	struct vm *vm = arg;
	size_t npages = pagemap_npages(vm->pm), nwords = (npages + 63) / 64, cap = 0;
	uint64_t *bits = calloc(nwords, sizeof(*bits)), rng = 0x9e3779b97f4a7c15ull ^ vm->pid;
	struct proto_arm *msg = malloc(sizeof(*msg) + PROTO_ARM_MAX * sizeof(msg->range[0]));
	size_t armed = 0, population = 0, *pages = NULL;
	uint64_t last_faults = 0;
	struct regions *rg = NULL;

	if (by_regions(vm) &&
	    (regions_create(npages, vm->pol.track_regions, rng, &rg) ||
	     !(pages = calloc(PROTO_ARM_MAX, sizeof(*pages))))) {
		log_err(vm->name, "tracker: out of memory; working set not measured");
		goto out;
	}
	if (!bits || !msg) {
		log_err(vm->name, "tracker: out of memory; working set not measured");
		goto out;
	}
	uint64_t interval = (uint64_t)vm->pol.track_interval_ms * 1000000, deadline;

	pthread_mutex_lock(&vm->lock);
	pagemap_set_epoch(vm->pm, 1);
	pthread_mutex_unlock(&vm->lock);
	deadline = vm_now_ns();
	/* An adopted VM's faults have just waited for a daemon: its first arming (a REMOVE for
	 * every range, during which the uffd ioctls say EAGAIN) waits an interval more. */
	if (vm->adopted) {
		deadline += interval;
		wait_until(vm, deadline);
	}
	while (!vm->track_stop && !vm->stopping) {
		bool observed = true;
		int r;

		deadline += interval;
		if (deadline < vm_now_ns()) /* fell behind (a slow arming): start afresh */
			deadline = vm_now_ns() + interval;

		if (vm->arm_done_seq != vm->arm_seq && !wait_armed(vm))
			continue; /* the previous arming is still running in QEMU */
		pthread_mutex_lock(&vm->lock);
		population = pagemap_count(vm->pm, PS_RESIDENT);
		armed = rg ? plan_regions(vm, rg, pages, &cap, &last_faults)
			   : plan_arming(vm, &rng, &cap);
		vm->ts.armed_pages = armed;
		vm->ts.arm_ranges = vm->narmed;
		pthread_mutex_unlock(&vm->lock);
		if (vm->narmed) {
			r = send_arm(vm, msg);
			if (r && r != -EPIPE)
				log_warn(vm->name, "tracker: cannot ask QEMU to arm: %s",
					 strerror(-r));
			if (r) {
				pthread_mutex_lock(&vm->lock);
				vm->arm_done_seq = vm->arm_seq;
				clear_armed(vm);
				pthread_mutex_unlock(&vm->lock);
			}
			/* Samples not armed in time would read as unused: observe nothing. */
			if ((r || !wait_armed(vm) || (vm->arm_status && !vm->arm_pages)) && rg) {
				regions_arm_failed(rg);
				observed = false;
			}
		}
		wait_until(vm, deadline);
		if (vm->track_stop || vm->stopping)
			break;
		if (vm->track_mode == POLICY_TRACK_EBPF &&
		    tracker_read_clear(vm->bpf, vm->bpf_slot, bits, nwords))
			memset(bits, 0, nwords * sizeof(*bits));
		if (rg) {
			end_regions(vm, rg, bits, observed);
			pthread_mutex_lock(&vm->lock);
			pagemap_set_epoch(vm->pm, pagemap_epoch(vm->pm) + 1);
			pthread_mutex_unlock(&vm->lock);
			continue;
		}
		pthread_mutex_lock(&vm->lock);
		end_epoch(vm, vm->track_mode == POLICY_TRACK_EBPF ? bits : NULL, armed, population);
		pagemap_set_epoch(vm->pm, pagemap_epoch(vm->pm) + 1);
		pthread_mutex_unlock(&vm->lock);
	}
out:
	regions_destroy(rg);
	free(pages);
	free(bits);
	free(msg);
	return NULL;
}

int track_start(struct vm *vm)
{
	struct wss *w;
	int r;

	if (vm->track_mode == POLICY_TRACK_EBPF && !vm->bpf)
		vm->track_mode = POLICY_TRACK_OFF;
	if (vm->track_mode == POLICY_TRACK_OFF)
		return 0;
	r = wss_create(pagemap_npages(vm->pm), &w);
	if (r)
		return r;
	pthread_mutex_lock(&vm->lock); /* the fault thread already runs */
	vm->wss = w;
	pthread_mutex_unlock(&vm->lock);
	if (vm->track_mode == POLICY_TRACK_EBPF) {
		/* Under KVM the vCPUs fault by guest-physical address. On x86 pc and q35 machines
		 * guest RAM starts at GPA 0 and its first 2 GiB always lie below the PCI hole:
		 * that much is mapped until track_map_gpa has asked QEMU where the rest lies. A
		 * NUMA guest's other backends lie elsewhere: none until then. */
		struct tracker_gpa_range low = {
		    .gpa = 0,
		    .len = vm->length < (2ull << 30) ? vm->length : (2ull << 30),
		    .offset = 0,
		};

		r = tracker_add(vm->bpf, vm->pid, vm->host_addr, pagemap_npages(vm->pm), &low,
				vm->backend_index == 0, &vm->bpf_slot);
		if (r) {
			log_warn(vm->name,
				 "tracker: cannot add pid %d to the BPF tracker: %s; "
				 "tracker off",
				 vm->pid, strerror(-r));
			vm->track_mode = POLICY_TRACK_OFF;
			return 0;
		}
	}
	r = pthread_create(&vm->track_tid, NULL, track_main, vm);
	if (r) {
		if (vm->track_mode == POLICY_TRACK_EBPF)
			tracker_remove(vm->bpf, vm->bpf_slot);
		return -r;
	}
	vm->track_started = true;
	return 0;
}

void track_stop(struct vm *vm)
{
	if (!vm->track_started)
		return;
	pthread_mutex_lock(&vm->lock);
	vm->track_stop = true;
	pthread_cond_broadcast(&vm->track_cv);
	pthread_mutex_unlock(&vm->lock);
	pthread_join(vm->track_tid, NULL);
	vm->track_started = false;
	if (vm->track_mode == POLICY_TRACK_EBPF)
		tracker_remove(vm->bpf, vm->bpf_slot);
}

/* The backend's ranges from QEMU into ranges (room for TRACKER_MAX_RANGES); sets *n. */
static int learn_gpa(struct vm *vm, struct qmp *q, struct tracker_gpa_range *ranges,
		     unsigned *n, char *err, size_t errlen)
{
	struct gpamap_range g[TRACKER_MAX_RANGES];
	struct json_object *res = NULL, *args;
	char id[128];
	int r;

	/* The shim names the backend (uffd-qemu lists them); else the one of the region's size. */
	snprintf(id, sizeof(id), "%s", vm->backend_id);
	if (!id[0]) {
		r = qmp_execute(q, "query-memdev", NULL, &res, GPA_QMP_TIMEOUT_MS, err, errlen);
		if (!r)
			r = gpamap_pick_backend(res, vm->length, id, sizeof(id), err, errlen);
		json_object_put(res);
		res = NULL;
		if (r)
			return r;
	}
	args = json_object_new_object();
	json_object_object_add(args, "command-line", json_object_new_string("info mtree -f"));
	r = qmp_execute(q, "human-monitor-command", args, &res, GPA_QMP_TIMEOUT_MS, err, errlen);
	json_object_put(args);
	if (!r)
		r = gpamap_parse_mtree(json_object_get_string(res), id, vm->length, g,
				       TRACKER_MAX_RANGES, n, err, errlen);
	json_object_put(res);
	for (unsigned i = 0; !r && i < *n; i++)
		ranges[i] = (struct tracker_gpa_range){g[i].gpa, g[i].len, g[i].offset};
	return r;
}

void track_map_gpa(struct vm *vm, struct qmp *q)
{
	struct tracker_gpa_range ranges[TRACKER_MAX_RANGES];
	char err[256] = "", list[256] = "";
	unsigned n = 0;
	size_t at = 0;
	int r;

	vm->gpa_mapped = true; /* once: a failure is logged, and the first 2 GiB stay mapped */
	if (vm->track_mode != POLICY_TRACK_EBPF || !vm->track_started || !vm->bpf ||
	    !(tracker_sources(vm->bpf) & TRACKER_SRC_KVM))
		return;
	r = learn_gpa(vm, q, ranges, &n, err, sizeof(err));
	if (!r)
		r = tracker_set_ranges(vm->bpf, vm->bpf_slot, ranges, n);
	if (r) {
		log_warn(vm->name, "tracker: KVM faults stay mapped for the first 2 GiB only: %s",
			 err[0] ? err : strerror(-r));
		return;
	}
	for (unsigned i = 0; i < n && at < sizeof(list); i++)
		at += (size_t)snprintf(list + at, sizeof(list) - at, "%s%#llx+%#llx@%#llx",
				       i ? ", " : "", (unsigned long long)ranges[i].gpa,
				       (unsigned long long)ranges[i].len,
				       (unsigned long long)ranges[i].offset);
	log_info(vm->name, "tracker: KVM faults mapped through guest-physical %s", list);
}
