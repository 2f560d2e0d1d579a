/* plan: see plan.h. */
#include "uffd-mgr/plan.h"

#include <errno.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>

#include "predictor/predict.h"
#include "qemu-glue/qmp.h"
#include "uffd-mgr/log.h"
#include "uffd-mgr/track.h"
#include "uffd-mgr/vm.h"

#define SAMPLE_NS      1000000000ull
#define QMP_TIMEOUT_MS 300
#define QMP_RETRY_NS   (10 * 1000000000ull)
#define BALLOON_STEP   (8ull << 20) /* smaller moves of the target are not worth a QMP call */
#define WARMUP_EPOCHS  10	    /* a full 10 s working-set window */
#define HORIZON	       3	    /* intervals the plan looks ahead */
#define MIB(x)	       ((unsigned long long)((x) >> 20))

struct planner {
	uint64_t budget;
	uint64_t next_sample_ns, next_plan_ns;
	uint64_t replans, emergencies;
	bool overcommitted;
	uint64_t emergency_logged_ns; /* emergencies are logged at most every 10 s */
	const char *emergency_reason; /* of this tick, NULL: none */
	struct vm *emergency_vm;
};

static uint64_t mem_total(void)
{
	FILE *f = fopen("/proc/meminfo", "r");
	unsigned long long kb = 0;
	char line[128];

	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "MemTotal: %llu kB", &kb) == 1)
			break;
	if (f)
		fclose(f);
	return (uint64_t)kb * 1024;
}

int planner_create(uint64_t budget, struct planner **out)
{
	struct planner *p = calloc(1, sizeof(*p));

	if (!p)
		return -ENOMEM;
	p->budget = budget ? budget : mem_total() / 10 * 8;
	if (!p->budget) {
		free(p);
		return -EIO;
	}
	*out = p;
	return 0;
}

void planner_destroy(struct planner *p)
{
	free(p);
}

uint64_t planner_budget(const struct planner *p)
{
	return p->budget;
}

/* Connects to the VM's QMP socket when it has one, retrying every 10 s, and turns on the
 * balloon's guest statistics. Returns the connection or NULL. */
static struct qmp *vm_qmp(struct vm *vm, uint64_t now)
{
	struct vm_plan *pl = &vm->plan;
	char err[256];

	if (pl->qmp || !pl->qmp_path[0] || now < pl->qmp_retry_ns)
		return pl->qmp;
	if (qmp_open_pid(&pl->qmp, pl->qmp_path, vm->pid, QMP_TIMEOUT_MS, err, sizeof(err))) {
		pl->qmp = NULL;
		pl->qmp_retry_ns = now + QMP_RETRY_NS;
		if (!pl->qmp_warned)
			log_warn(vm->name,
				 "plan: no QMP at %s (%s); no balloon or guest stats until "
				 "it answers",
				 pl->qmp_path, err);
		pl->qmp_warned = true;
		return NULL;
	}
	/* The balloon that is there, whatever its id (libvirt's is balloon0). */
	pl->stats_on =
	    qmp_find_balloon(pl->qmp, pl->balloon_qom, sizeof(pl->balloon_qom), err, sizeof(err)) ==
		0 &&
	    qmp_guest_stats_enable(pl->qmp, pl->balloon_qom, 1, err, sizeof(err)) == 0;
	if (!pl->stats_on)
		log_warn(vm->name, "plan: no guest statistics from the balloon: %s", err);
	log_info(vm->name, "plan: QMP connected at %s", pl->qmp_path);
	return pl->qmp;
}

/* The guest's view, when its balloon reports it: fills the guest_* fields of smp. */
static void guest_sample(struct vm *vm, struct qmp *q, double dt, struct pred_sample *smp)
{
	struct vm_plan *pl = &vm->plan;
	struct qmp_guest_stats gs;
	uint64_t actual = 0;
	char err[256];

	if (qmp_balloon_actual(q, &actual, err, sizeof(err)) == 0) {
		pthread_mutex_lock(&vm->lock);
		pl->ps.balloon_actual = actual;
		pthread_mutex_unlock(&vm->lock);
	}
	if (!pl->stats_on || qmp_guest_stats(q, pl->balloon_qom, &gs, err, sizeof(err)) || !gs.valid)
		return;
	if (gs.total != QMP_STAT_NONE && gs.available != QMP_STAT_NONE) {
		/* With deflate-on-oom the guest counts the balloon's pages as used: they are
		 * ours to give back, not its demand. */
		uint64_t ballooned = actual && actual < vm->length ? vm->length - actual : 0;

		smp->guest_valid = true;
		smp->guest_total = gs.total;
		smp->guest_avail =
		    gs.available + ballooned < gs.total ? gs.available + ballooned : gs.total;
	}
	if (pl->guest_prev && dt > 0 && gs.swap_in != QMP_STAT_NONE &&
	    gs.major_faults != QMP_STAT_NONE) {
		smp->guest_swapin = (double)(gs.swap_in - pl->last_swap_in) / PAGE_SIZE_4K / dt;
		smp->guest_majflt = (double)(gs.major_faults - pl->last_majflt) / dt;
	}
	pl->guest_prev = gs.swap_in != QMP_STAT_NONE && gs.major_faults != QMP_STAT_NONE;
	pl->last_swap_in = gs.swap_in;
	pl->last_majflt = gs.major_faults;
	pthread_mutex_lock(&vm->lock);
	pl->ps.guest_free = gs.free != QMP_STAT_NONE ? gs.free : 0;
	pl->ps.guest_available = gs.available != QMP_STAT_NONE ? gs.available : 0;
	pthread_mutex_unlock(&vm->lock);
}

/* Samples one VM and feeds its predictor; notes an emergency in p. */
static void sample_vm(struct planner *p, struct vm *vm, uint64_t now)
{
	struct vm_plan *pl = &vm->plan;
	struct pred_sample smp = {.t = now / 1e9};
	uint64_t tier_pages, alloc;
	double dt = pl->last_ns ? (now - pl->last_ns) / 1e9 : 0;
	bool active;
	struct qmp *q;
	const char *why;

	pthread_mutex_lock(&vm->lock);
	smp.resident = pagemap_count(vm->pm, PS_RESIDENT) * PAGE_SIZE_4K;
	if (vm->track_mode == POLICY_TRACK_OFF) {
		smp.wss = smp.resident;
		active = true;
	} else {
		smp.wss = vm->ts.wss_pages[1] * PAGE_SIZE_4K;
		smp.wss_short = vm->ts.wss_pages[0] * PAGE_SIZE_4K;
		active = vm->ts.epoch >= WARMUP_EPOCHS;
	}
	tier_pages = vm->st->faults_shm_pages + vm->st->faults_disk_pages;
	alloc = pl->ps.share ? pl->ps.share : vm->length;
	pthread_mutex_unlock(&vm->lock);
	if (dt > 0)
		smp.tier_faults = (double)(tier_pages - pl->last_tier_pages) / dt;
	pl->last_tier_pages = tier_pages;
	pl->last_ns = now;
	q = vm->pol.balloon_on || pl->stats_only ? vm_qmp(vm, now) : NULL;
	if (q)
		guest_sample(vm, q, dt, &smp);
	if (!active)
		return;
	if (!pl->pred_ready) {
		pl->pred_ready = pred_init(&pl->pred, NULL, vm->length) == 0;
		if (!pl->pred_ready)
			return;
	}
	if (pl->ps.share && pred_emergency(&pl->pred, &smp, alloc, &why) && !p->emergency_reason) {
		p->emergency_reason = why;
		p->emergency_vm = vm;
	}
	pred_update(&pl->pred, &smp);
}

/* Sends the balloon target when it moved enough. */
static void send_balloon(struct vm *vm, uint64_t target)
{
	struct vm_plan *pl = &vm->plan;
	char err[256];
	uint64_t d =
	    target > pl->balloon_sent ? target - pl->balloon_sent : pl->balloon_sent - target;

	if (!pl->qmp || (pl->balloon_sent && d < BALLOON_STEP))
		return;
	/* A lost connection is qmp's to mend: every call reconnects once before it fails. */
	if (qmp_balloon_set(pl->qmp, target, err, sizeof(err))) {
		log_warn(vm->name, "plan: balloon target %llu MiB not sent: %s", MIB(target), err);
		return;
	}
	pl->balloon_sent = target;
}

/* Gives every active VM its share of what the inactive ones leave of the budget. */
static void replan(struct planner *p, struct vm *const *vms, size_t n)
{
	struct pred_vm *in = calloc(n ? n : 1, sizeof(*in));
	uint64_t *share = calloc(n ? n : 1, sizeof(*share)), budget = p->budget;
	size_t *idx = calloc(n ? n : 1, sizeof(*idx)), m = 0;
	double *conf = calloc(n ? n : 1, sizeof(*conf));
	bool over;

	if (!in || !share || !idx || !conf)
		goto out;
	for (size_t i = 0; i < n; i++) {
		struct vm *vm = vms[i];

		if (!vm->plan.pred_ready) {
			uint64_t res = pagemap_count(vm->pm, PS_RESIDENT) * PAGE_SIZE_4K;

			budget = budget > res ? budget - res : 0;
			continue;
		}
		in[m] = (struct pred_vm){
		    .guest_ram = vm->length,
		    .demand = pred_demand(&vm->plan.pred, HORIZON, &conf[m]),
		    .critical = pred_critical(&vm->plan.pred, vm->pol.critical_min),
		    .min = vm->pol.critical_min,
		    .max = vm->pol.balloon_max,
		    .weight = vm->pol.weight,
		};
		idx[m++] = i;
	}
	over = pred_split(in, m, budget, share);
	if (over && !p->overcommitted)
		log_warn(NULL,
			 "plan: the critical amounts of the VMs exceed the budget of %llu MiB; "
			 "each VM gets less than its floor until demand falls",
			 MIB(budget));
	else if (!over && p->overcommitted)
		log_info(NULL, "plan: the budget covers every VM's critical amount again");
	p->overcommitted = over;
	p->replans++;
	for (size_t k = 0; k < m; k++) {
		struct vm *vm = vms[idx[k]];
		struct pred_plan out;
		struct pred_plan_in pin = {
		    .share = share[k],
		    .balloon_min = vm->pol.balloon_on ? vm->pol.balloon_min : 0,
		    .batch = vm->pol.prefetch_batch,
		    .horizon = HORIZON,
		    .host_pressure = p->emergency_reason != NULL || p->overcommitted,
		};
		struct vm_plan_stats *ps = &vm->plan.ps;
		bool moved;

		pred_plan(&vm->plan.pred, &pin, &out);
		pthread_mutex_lock(&vm->lock);
		moved = ps->share > share[k] + BALLOON_STEP || ps->share + BALLOON_STEP < share[k];
		ps->active = true;
		ps->demand = in[k].demand;
		ps->critical = in[k].critical;
		ps->confidence = conf[k];
		ps->share = share[k];
		ps->balloon_target = vm->pol.balloon_on ? out.balloon_target : 0;
		vm->resident_target = out.resident_target;
		vm->prefetch_want = vm->pol.prefetch_on ? out.prefetch / PAGE_SIZE_4K : 0;
		pthread_cond_signal(&vm->evict_cv);
		pthread_mutex_unlock(&vm->lock);
		if (moved)
			log_info(
			    vm->name,
			    "plan: demand %llu MiB (confidence %.2f), critical %llu MiB, share "
			    "%llu MiB, balloon %llu MiB, prefetch %llu MiB",
			    MIB(in[k].demand), conf[k], MIB(in[k].critical), MIB(share[k]),
			    MIB(ps->balloon_target), MIB(out.prefetch));
		if (vm->pol.balloon_on)
			send_balloon(vm, out.balloon_target);
	}
out:
	free(in);
	free(share);
	free(idx);
	free(conf);
}

/* Has the tracker of each VM learn its guest-physical map once, over the QMP connection of
 * its guest: its own, or for a NUMA guest's other backends (no QMP of their own) the first
 * backend's, the VM with the same pid. */
static void map_gpa(struct vm *const *vms, size_t n)
{
	for (size_t i = 0; i < n; i++)
		for (size_t j = 0; j < n && !vms[i]->gpa_mapped && vms[i]->track_started; j++)
			if (vms[j]->pid == vms[i]->pid && vms[j]->plan.qmp)
				track_map_gpa(vms[i], vms[j]->plan.qmp);
}

int planner_tick(struct planner *p, struct vm *const *vms, size_t n)
{
	uint64_t now = vm_now_ns();

	if (now >= p->next_sample_ns) {
		p->emergency_reason = NULL;
		for (size_t i = 0; i < n; i++)
			sample_vm(p, vms[i], now);
		map_gpa(vms, n);
		p->next_sample_ns = now + SAMPLE_NS;
		if (p->emergency_reason) {
			p->emergencies++;
			pthread_mutex_lock(&p->emergency_vm->lock);
			p->emergency_vm->plan.ps.emergencies++;
			p->emergency_vm->plan.ps.last_emergency = p->emergency_reason;
			pthread_mutex_unlock(&p->emergency_vm->lock);
			if (now >= p->emergency_logged_ns) {
				log_info(p->emergency_vm->name,
					 "plan: emergency re-plan: %s (%llu emergencies so far)",
					 p->emergency_reason, (unsigned long long)p->emergencies);
				p->emergency_logged_ns = now + 10 * SAMPLE_NS;
			}
		}
		if (p->emergency_reason || now >= p->next_plan_ns) {
			replan(p, vms, n);
			p->next_plan_ns = now + PLAN_PERIOD_S * SAMPLE_NS;
		}
	}
	now = vm_now_ns();
	return p->next_sample_ns > now ? (int)((p->next_sample_ns - now) / 1000000) + 1 : 0;
}

struct json_object *planner_json(const struct planner *p)
{
	struct json_object *o = json_object_new_object();

	json_object_object_add(o, "budget", json_object_new_int64((int64_t)p->budget));
	json_object_object_add(o, "replans", json_object_new_int64((int64_t)p->replans));
	json_object_object_add(o, "emergencies", json_object_new_int64((int64_t)p->emergencies));
	json_object_object_add(o, "overcommitted", json_object_new_boolean(p->overcommitted));
	return o;
}
