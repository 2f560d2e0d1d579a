/* stats: see stats.h. Field names are the stats socket's contract with uffdctl and tests. */
#include "uffd-mgr/stats.h"

#include <string.h>

#include "uffd-mgr/track.h"
#include "uffd-mgr/vm.h"

static void add_u64(struct json_object *o, const char *key, uint64_t v)
{
	json_object_object_add(o, key, json_object_new_uint64(v));
}

static struct json_object *faults_json(const struct vm_stats *s)
{
	struct json_object *o = json_object_new_object();

	add_u64(o, "zero", s->faults_zero);
	add_u64(o, "shm", s->faults_shm);
	add_u64(o, "shm_pages", s->faults_shm_pages);
	add_u64(o, "discarded", s->faults_discarded);
	add_u64(o, "wp", s->faults_wp);
	add_u64(o, "dup", s->faults_dup);
	add_u64(o, "parked", s->faults_parked);
	add_u64(o, "throttled", s->faults_throttled);
	add_u64(o, "errors", s->fault_errors);
	add_u64(o, "disk", s->faults_disk);
	add_u64(o, "disk_pages", s->faults_disk_pages);
	add_u64(o, "disk_read_errors", s->disk_read_errors);
	add_u64(o, "minor", s->faults_minor);
	add_u64(o, "bring_back_pages", s->bring_back_pages);
	add_u64(o, "enomem_retries", s->faults_enomem);
	add_u64(o, "stalled", s->faults_stalled);
	add_u64(o, "max_wait_ms", s->fault_max_wait_ns / 1000000);
	return o;
}

/* Paging done ahead of faults, and where the fault thread went to serve them. */
static struct json_object *ahead_json(const struct vm_ahead_stats *a)
{
	struct json_object *o = json_object_new_object();

	add_u64(o, "first_touch_blocks", a->first_touch_blocks);
	add_u64(o, "first_touch_pages", a->first_touch_pages);
	add_u64(o, "readahead_batches", a->readahead_batches);
	add_u64(o, "readahead_pages", a->readahead_pages);
	add_u64(o, "batch_copies", a->batch_copies);
	add_u64(o, "batch_pages", a->batch_pages);
	add_u64(o, "batch_kept", a->batch_kept);
	add_u64(o, "follow_moves", a->follow_moves);
	return o;
}

static struct json_object *evictions_json(const struct vm_stats *s)
{
	struct json_object *o = json_object_new_object();

	add_u64(o, "runs", s->evict_runs);
	add_u64(o, "pages", s->evict_pages);
	add_u64(o, "zero_pages", s->evict_zero_pages);
	add_u64(o, "aborts", s->evict_aborts);
	add_u64(o, "wp_errors", s->evict_wp_errors);
	return o;
}

static struct json_object *latency_json(const struct hist *h)
{
	struct json_object *o = json_object_new_object();

	add_u64(o, "count", h->count);
	json_object_object_add(o, "sum", json_object_new_double(h->sum / 1e3));
	json_object_object_add(o, "p50", json_object_new_double(hist_quantile(h, 0.50) / 1e3));
	json_object_object_add(o, "p99", json_object_new_double(hist_quantile(h, 0.99) / 1e3));
	json_object_object_add(o, "max", json_object_new_double(h->max / 1e3));
	return o;
}

/* What the daemon's disk scheduler did for this VM, per class: grants, bytes, and the
 * requests that waited their turn (how many, how long in all and at most, in ms). */
static struct json_object *diskq_json(struct diskq_client *dq)
{
	static const char *const names[DISKQ_NCLASS] = {"fault", "prefetch", "write"};
	struct json_object *o = json_object_new_object();
	struct diskq_stats st;

	diskq_get_stats(dq, &st);
	for (int i = 0; i < DISKQ_NCLASS; i++) {
		struct json_object *c = json_object_new_object();

		add_u64(c, "grants", st.grants[i]);
		add_u64(c, "bytes", st.bytes[i]);
		add_u64(c, "waits", st.waits[i]);
		json_object_object_add(c, "wait_ms", json_object_new_double(st.wait_ns[i] / 1e6));
		json_object_object_add(c, "wait_max_ms",
				       json_object_new_double(st.wait_max_ns[i] / 1e6));
		json_object_object_add(o, names[i], c);
	}
	return o;
}

static struct json_object *disk_json(struct vm *vm, const struct vm_stats *s, size_t pages,
				     size_t runs)
{
	struct json_object *o = json_object_new_object();
	struct disktier_counters c;

	json_object_object_add(o, "enabled", json_object_new_boolean(vm->disk != NULL));
	add_u64(o, "bytes", (uint64_t)pages * PAGE_SIZE_4K);
	add_u64(o, "runs", runs);
	add_u64(o, "max", vm->disk ? vm->pol.disk_max : 0);
	add_u64(o, "demote_runs", s->demote_runs);
	add_u64(o, "demote_pages", s->demote_pages);
	add_u64(o, "demote_errors", s->demote_errors);
	add_u64(o, "full_events", s->disk_full_events);
	json_object_object_add(o, "full", json_object_new_boolean(vm->disk_retry_ns > vm_now_ns()));
	memset(&c, 0, sizeof(c));
	if (vm->disk)
		disktier_get_counters(vm->disk, &c);
	add_u64(o, "reads", c.reads);
	add_u64(o, "writes", c.writes);
	add_u64(o, "read_bytes", c.read_bytes);
	add_u64(o, "write_bytes", c.write_bytes);
	add_u64(o, "read_errors", c.read_errors);
	add_u64(o, "write_errors", c.write_errors);
	add_u64(o, "punch_errors", c.punch_errors);
	add_u64(o, "punches", c.punches);
	add_u64(o, "unpunched_slots", c.unpunched);
	if (vm->dq)
		json_object_object_add(o, "queue", diskq_json(vm->dq));
	if (vm->disk)
		json_object_object_add(o, "path", json_object_new_string(disktier_path(vm->disk)));
	return o;
}

static struct json_object *tracker_json(const struct vm *vm, const struct vm_track_stats *t)
{
	static const char *const ages[WSS_AGE_BUCKETS] = {"0",	   "1",	    "2-3", "4-7",  "8-15",
							  "16-31", "32-63", "64+", "never"};
	struct json_object *o = json_object_new_object(), *w = json_object_new_object();
	struct json_object *a = json_object_new_object();
	double sec = vm->pol.track_interval_ms / 1000.0;
	char key[32];

	json_object_object_add(o, "mode", json_object_new_string(track_mode_name(vm->track_mode)));
	json_object_object_add(o, "why", json_object_new_string(vm->track_why));
	add_u64(o, "interval_ms", vm->pol.track_interval_ms);
	json_object_object_add(o, "sampled",
			       json_object_new_boolean(vm->track_mode == POLICY_TRACK_SAMPLE ||
						       vm->pol.track_sample_pages ||
						       vm->pol.track_regions));
	add_u64(o, "epoch", t->epoch);
	for (int i = 0; i < TRACK_WINDOWS; i++) {
		snprintf(key, sizeof(key), "%gs", track_windows[i] * sec);
		add_u64(w, key, t->wss_pages[i] * PAGE_SIZE_4K);
	}
	json_object_object_add(o, "wss_bytes", w);
	for (int i = 0; i < WSS_AGE_BUCKETS; i++)
		add_u64(a, ages[i], t->age_pages[i]);
	json_object_object_add(o, "age_pages", a);
	add_u64(o, "idle_bytes", t->idle_pages * PAGE_SIZE_4K);
	add_u64(o, "armed_pages", t->armed_pages);
	add_u64(o, "arm_ranges", t->arm_ranges);
	add_u64(o, "arm_rounds", t->arm_rounds);
	add_u64(o, "arm_errors", t->arm_errors);
	add_u64(o, "arm_us", t->arm_ns / 1000);
	add_u64(o, "regions", t->regions);
	return o;
}

/* The planner's view of the VM (plan.c). */
static struct json_object *plan_json(const struct vm_plan_stats *ps, uint64_t resident_target)
{
	struct json_object *o = json_object_new_object();

	json_object_object_add(o, "active", json_object_new_boolean(ps->active));
	add_u64(o, "demand", ps->demand);
	json_object_object_add(o, "confidence", json_object_new_double(ps->confidence));
	add_u64(o, "critical", ps->critical);
	add_u64(o, "share", ps->share);
	add_u64(o, "resident_target", resident_target);
	add_u64(o, "balloon_target", ps->balloon_target);
	add_u64(o, "balloon_actual", ps->balloon_actual);
	add_u64(o, "emergencies", ps->emergencies);
	json_object_object_add(
	    o, "last_emergency",
	    json_object_new_string(ps->last_emergency ? ps->last_emergency : ""));
	add_u64(o, "prefetched_pages", ps->prefetched_pages);
	add_u64(o, "prefetch_used", ps->prefetch_used);
	add_u64(o, "prefetch_unused", ps->prefetch_unused);
	add_u64(o, "guest_free", ps->guest_free);
	add_u64(o, "guest_available", ps->guest_available);
	return o;
}

/* How this VM has lived through daemon restarts: adoptions and the pauses they cost. */
static struct json_object *restarts_json(const struct vm *vm)
{
	const struct vmstate_hdr *h = vm->state.hdr;
	struct json_object *o = json_object_new_object();

	add_u64(o, "adoptions", h->adoptions);
	json_object_object_add(o, "adopted", json_object_new_boolean(vm->adopted));
	json_object_object_add(o, "last_pause_ms", json_object_new_double(h->last_pause_ns / 1e6));
	json_object_object_add(o, "max_pause_ms", json_object_new_double(h->max_pause_ns / 1e6));
	return o;
}

/* Who serves the VM's faults: a VM the control loop calls running is shown as what it is
 * when nobody does. why: vm->fault_why, read under the lock. */
static struct json_object *fault_thread_json(struct vm *vm, const struct vm_stats *s,
					     const char *why)
{
	struct json_object *o = json_object_new_object();

	json_object_object_add(o, "alive", json_object_new_boolean(vm_fault_thread_alive(vm)));
	add_u64(o, "restarts", s->fault_thread_restarts);
	json_object_object_add(o, "last_stop", json_object_new_string(why));
	return o;
}

static const char *vm_state(struct vm *vm, const char *state, bool failed)
{
	if (strcmp(state, "running"))
		return state;
	if (failed)
		return "failed";
	if (atomic_load(&vm->gone))
		return "exiting";
	return vm->threads_started && !vm_fault_thread_alive(vm) ? "unserved" : state;
}

/* [shm] compress: how the shm tier stores runs, and what it took. */
static struct json_object *zshm_json(const struct vm *vm, const struct vm_stats *s,
				     size_t pages)
{
	struct json_object *o = json_object_new_object();
	unsigned alg = vm->state.hdr->geom.shm_compress;

	json_object_object_add(o, "compress",
			       json_object_new_string(alg ? zpool_alg_name(alg) : "off"));
	add_u64(o, "pages", pages);
	add_u64(o, "blobs", s->zshm_blobs);
	add_u64(o, "raw_blobs", s->zshm_raw_blobs);
	add_u64(o, "stored_pages", s->zshm_pages);
	add_u64(o, "stored_bytes", s->zshm_bytes);
	add_u64(o, "errors", s->zshm_errors);
	return o;
}

struct json_object *stats_vm_json(struct vm *vm, const char *state)
{
	char fault_why[sizeof(vm->fault_why)], fail_why[sizeof(vm->fail_why)];
	bool failed;
	struct vm_plan_stats ps;
	uint64_t resident_target;
	struct vm_track_stats ts;
	struct json_object *o = json_object_new_object(), *rm;
	struct vm_stats s;
	struct vm_ahead_stats ahead;
	size_t counts[PS_NSTATES], shm_runs, disk_runs;
	uint64_t shm_used;
	bool full;

	if (!o)
		return NULL;
	pthread_mutex_lock(&vm->lock);
	s = *vm->st;
	ahead = vm->ahead;
	ts = vm->ts;
	ps = vm->plan.ps;
	resident_target = vm->resident_target;
	for (int i = 0; i < PS_NSTATES; i++)
		counts[i] = pagemap_count(vm->pm, (enum page_state)i);
	full = vm->tier_full;
	failed = vm->failed;
	memcpy(fault_why, vm->fault_why, sizeof(fault_why));
	memcpy(fail_why, vm->fail_why, sizeof(fail_why));
	shm_runs = pagemap_runs_with(vm->pm, PS_SHM);
	disk_runs = pagemap_runs_with(vm->pm, PS_DISK);
	pthread_mutex_unlock(&vm->lock);
	shm_used = shmpool_used(vm->shm);

	json_object_object_add(o, "name", json_object_new_string(vm->name));
	json_object_object_add(o, "pid", json_object_new_int(vm->pid));
	json_object_object_add(o, "state", json_object_new_string(vm_state(vm, state, failed)));
	json_object_object_add(o, "failed", json_object_new_boolean(failed));
	json_object_object_add(o, "failed_why", json_object_new_string(fail_why));
	json_object_object_add(o, "fault_thread", fault_thread_json(vm, &s, fault_why));
	json_object_object_add(o, "uptime_s",
			       json_object_new_double((vm_now_ns() - vm->started_ns) / 1e9));
	add_u64(o, "guest_bytes", vm->length);
	add_u64(o, "resident_bytes", counts[PS_RESIDENT] * PAGE_SIZE_4K);
	add_u64(o, "resident_max", vm->pol.resident_max);
	add_u64(o, "shm_bytes", (counts[PS_SHM] + counts[PS_ZSHM]) * PAGE_SIZE_4K);
	add_u64(o, "shm_slots_used", shm_used);
	add_u64(o, "shm_stored_bytes", shm_used * shmpool_unit(vm->shm));
	json_object_object_add(o, "zshm", zshm_json(vm, &s, counts[PS_ZSHM]));
	add_u64(o, "shm_runs", shm_runs);
	add_u64(o, "shm_max", vm->pol.shm_max);
	add_u64(o, "zero_pages", counts[PS_ZERO]);
	add_u64(o, "untouched_pages", counts[PS_NONE]);
	json_object_object_add(o, "restarts", restarts_json(vm));
	json_object_object_add(o, "faults", faults_json(&s));
	json_object_object_add(o, "evictions", evictions_json(&s));
	json_object_object_add(o, "ahead", ahead_json(&ahead));
	add_u64(o, "tier_full_events", s.tier_full_events);
	json_object_object_add(o, "tier_full", json_object_new_boolean(full));
	rm = json_object_new_object();
	add_u64(rm, "events", s.removes);
	add_u64(rm, "pages", s.removed_pages);
	json_object_object_add(o, "removes", rm);
	json_object_object_add(o, "disk", disk_json(vm, &s, counts[PS_DISK], disk_runs));
	json_object_object_add(o, "fault_latency_us", latency_json(&s.fault_ns));
	json_object_object_add(o, "tracker", tracker_json(vm, &ts));
	json_object_object_add(o, "plan", plan_json(&ps, resident_target));
	return o;
}
