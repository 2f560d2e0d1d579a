/* predict: see predict.h for the model. Doubles for the smoothing (bytes fit exactly below
 * 2^53), integers with 128-bit intermediates for the split, so that it is exact and
 * deterministic. */
#include "predictor/predict.h"

#include <errno.h>
#include <string.h>

typedef unsigned __int128 u128;

enum fill_to { FILL_DEMAND, FILL_CAP };

void pred_params_default(struct pred_params *p)
{
	*p = (struct pred_params){
	    .alpha_up = 1.0,
	    .alpha_down = 0.15,
	    .beta = 0.2,
	    .err_gain = 0.1,
	    .k = 2.0,
	    .conf_err = 0.1,
	    .warmup = 10,
	    .short_window = 5,
	    .long_window = 60,
	    .critical_pct = 0.1,
	    .rate_gain = 0.1,
	    .spike_ratio = 4.0,
	    .tier_fault_floor = 256, /* 1 MiB/s of 4 KiB pages */
	    .swapin_floor = 64,
	    .majflt_floor = 256, /* file reads fault too: a busy guest has some all the time */
	    .balloon_headroom = 0.1,
	};
}

/* x in (lo, hi], written so that a NaN fails. */
static bool in_range(double x, double lo, double hi)
{
	return x > lo && x <= hi;
}

static bool params_ok(const struct pred_params *p)
{
	return in_range(p->alpha_up, 0, 1) && in_range(p->alpha_down, 0, 1) &&
	       in_range(p->beta, 0, 1) && in_range(p->err_gain, 0, 1) && p->k >= 0 &&
	       p->conf_err > 0 && p->short_window >= 1 && p->short_window <= PRED_HISTORY &&
	       p->long_window >= 1 && p->long_window <= PRED_HISTORY && p->critical_pct >= 0 &&
	       p->critical_pct <= 1 && in_range(p->rate_gain, 0, 1) && p->spike_ratio >= 1 &&
	       p->tier_fault_floor >= 0 && p->swapin_floor >= 0 && p->majflt_floor >= 0 &&
	       p->balloon_headroom >= 0;
}

int pred_init(struct pred_state *s, const struct pred_params *p, uint64_t guest_ram)
{
	struct pred_params def;

	if (!p) {
		pred_params_default(&def);
		p = &def;
	}
	if (!params_ok(p) || !guest_ram)
		return -EINVAL;
	memset(s, 0, sizeof(*s));
	s->p = *p;
	s->guest_ram = guest_ram;
	s->guest_age = UINT64_MAX;
	return 0;
}

static double pos(double x)
{
	return x > 0 ? x : 0; /* also turns a NaN rate into 0 */
}

/* sqrt for x >= 1 by Newton's method from above, so that the library needs no libm. */
static double root(double x)
{
	double y = x;

	for (int i = 0; i < 64; i++) {
		double next = 0.5 * (y + x / y);

		if (next >= y)
			break;
		y = next;
	}
	return y;
}

static uint64_t recent_max(const struct pred_state *s, unsigned window)
{
	uint64_t m = 0;
	unsigned n = window < s->count ? window : s->count;

	for (unsigned i = 1; i <= n; i++) {
		uint64_t v = s->ring[(s->head + PRED_HISTORY - i) % PRED_HISTORY];

		if (v > m)
			m = v;
	}
	return m;
}

/* The model's forecast without headroom, secs ahead of the last sample. */
static double base(const struct pred_state *s, double secs)
{
	double trendy = s->level + secs * s->trend;
	double seen = (double)recent_max(s, s->p.short_window);

	return trendy > seen ? trendy : seen;
}

static double ewma(double avg, double x, double gain)
{
	return avg + gain * (x - avg);
}

/* Folds the previous sample's rates into the baselines, so that they always exclude the
 * newest sample and pred_emergency() may be called before or after pred_update(). */
static void fold_rates(struct pred_state *s)
{
	double g = s->p.rate_gain;

	if (!s->samples)
		return;
	s->tier_ewma = s->rates_init ? ewma(s->tier_ewma, s->tier_last, g) : s->tier_last;
	s->rates_init = true;
	if (!s->guest_last)
		return;
	if (s->guest_init) {
		s->swapin_ewma = ewma(s->swapin_ewma, s->swapin_last, g);
		s->majflt_ewma = ewma(s->majflt_ewma, s->majflt_last, g);
	} else {
		s->swapin_ewma = s->swapin_last;
		s->majflt_ewma = s->majflt_last;
	}
	s->guest_init = true;
}

static void take_rates(struct pred_state *s, const struct pred_sample *smp)
{
	s->tier_last = pos(smp->tier_faults);
	s->guest_last = smp->guest_valid;
	if (smp->guest_valid) {
		s->swapin_last = pos(smp->guest_swapin);
		s->majflt_last = pos(smp->guest_majflt);
		s->guest_used =
		    smp->guest_total > smp->guest_avail ? smp->guest_total - smp->guest_avail : 0;
		s->guest_age = 0;
	} else if (s->guest_age != UINT64_MAX) {
		s->guest_age++;
	}
}

static uint64_t obs_of(const struct pred_sample *smp)
{
	return smp->wss > smp->wss_short ? smp->wss : smp->wss_short;
}

/* Level and trend (predict.h). The errors are measured against what was provisioned for
 * this sample, base(dt), before the sample moves anything. */
static void smooth(struct pred_state *s, double obs, double dt)
{
	const struct pred_params *p = &s->p;
	double err = obs - base(s, dt);
	double prev = s->level;

	s->up_err = ewma(s->up_err, pos(err), p->err_gain);
	s->abs_err = ewma(s->abs_err, err < 0 ? -err : err, p->err_gain);
	s->level += (obs >= s->level ? p->alpha_up : p->alpha_down) * (obs - s->level);
	if (dt <= 0)
		return; /* same instant twice: no growth rate to learn */
	s->trend = pos(p->beta * (s->level - prev) / dt + (1 - p->beta) * s->trend);
	s->interval = s->interval > 0 ? ewma(s->interval, dt, p->rate_gain) : dt;
}

int pred_update(struct pred_state *s, const struct pred_sample *smp)
{
	double obs = (double)obs_of(smp);

	if (smp->t != smp->t || (s->samples && smp->t < s->t_last))
		return -EINVAL;
	fold_rates(s);
	take_rates(s, smp);
	if (s->samples)
		smooth(s, obs, smp->t - s->t_last);
	else
		s->level = obs;
	s->t_last = smp->t;
	s->resident = smp->resident;
	s->ring[s->head] = obs_of(smp);
	s->head = (s->head + 1) % PRED_HISTORY;
	if (s->count < PRED_HISTORY)
		s->count++;
	s->samples++;
	return 0;
}

static uint64_t clamp_ram(const struct pred_state *s, double bytes)
{
	if (!(bytes > 0))
		return 0;
	if (bytes >= (double)s->guest_ram)
		return s->guest_ram;
	return (uint64_t)bytes;
}

uint64_t pred_demand(const struct pred_state *s, unsigned horizon, double *confidence)
{
	double h = horizon ? horizon : 1, r = root(h), rel, x, c;

	if (!s->samples) {
		if (confidence)
			*confidence = 0;
		return s->guest_ram;
	}
	if (confidence) {
		rel = s->abs_err / (s->level > 1 ? s->level : 1);
		x = rel * r / s->p.conf_err;
		c = 1 / (1 + x * x);
		if (s->samples < s->p.warmup)
			c *= (double)s->samples / s->p.warmup;
		*confidence = c;
	}
	return clamp_ram(s, base(s, h * s->interval) + s->p.k * s->up_err * r);
}

uint64_t pred_critical(const struct pred_state *s, uint64_t critical_min)
{
	uint64_t v[PRED_HISTORY], c = critical_min;
	unsigned n = s->p.long_window < s->count ? s->p.long_window : s->count;

	for (unsigned i = 0; i < n; i++) { /* insertion sort: at most 64 values */
		uint64_t x = s->ring[(s->head + PRED_HISTORY - 1 - i) % PRED_HISTORY];
		unsigned j = i;

		for (; j > 0 && v[j - 1] > x; j--)
			v[j] = v[j - 1];
		v[j] = x;
	}
	if (n && v[(unsigned)(s->p.critical_pct * (n - 1))] > c)
		c = v[(unsigned)(s->p.critical_pct * (n - 1))];
	if (s->guest_age < s->p.long_window && s->guest_used > c)
		c = s->guest_used;
	return c < s->guest_ram ? c : s->guest_ram;
}

static bool spike(double rate, double baseline, double ratio, double floor)
{
	rate = pos(rate);
	return rate > floor && rate > ratio * baseline;
}

bool pred_emergency(const struct pred_state *s, const struct pred_sample *smp, uint64_t alloc,
		    const char **reason)
{
	const struct pred_params *p = &s->p;
	const char *why = NULL;

	if (spike(smp->tier_faults, s->tier_ewma, p->spike_ratio, p->tier_fault_floor))
		why = "tier fault spike";
	else if (smp->guest_valid &&
		 spike(smp->guest_swapin, s->swapin_ewma, p->spike_ratio, p->swapin_floor))
		why = "guest swap-in spike";
	else if (smp->guest_valid &&
		 spike(smp->guest_majflt, s->majflt_ewma, p->spike_ratio, p->majflt_floor))
		why = "guest major fault spike";
	else if (obs_of(smp) > alloc)
		why = "working set above allocation";
	if (reason)
		*reason = why ? why : "none";
	return why != NULL;
}

static uint64_t min_u64(uint64_t a, uint64_t b)
{
	return a < b ? a : b;
}

static uint64_t max_u64(uint64_t a, uint64_t b)
{
	return a > b ? a : b;
}

static uint64_t cap_of(const struct pred_vm *v)
{
	return v->max ? min_u64(v->max, v->guest_ram) : v->guest_ram;
}

static uint64_t floor_of(const struct pred_vm *v)
{
	return min_u64(max_u64(v->critical, v->min), cap_of(v));
}

static uint64_t target_of(const struct pred_vm *v, enum fill_to to)
{
	if (to == FILL_CAP)
		return cap_of(v);
	return min_u64(max_u64(v->demand, floor_of(v)), cap_of(v));
}

static uint64_t weight_of(const struct pred_vm *v)
{
	return v->weight ? v->weight : 1;
}

/* Gives the remainder (< the number of VMs) one byte each from the lowest index, to VMs
 * below their target. */
static void spread_bytes(const struct pred_vm *vm, size_t n, uint64_t rem, enum fill_to to,
			 uint64_t *share)
{
	for (size_t i = 0; i < n && rem; i++) {
		if (share[i] < target_of(&vm[i], to)) {
			share[i]++;
			rem--;
		}
	}
}

/* Weighted water-filling of avail bytes towards each VM's target. Each round either caps
 * every VM whose need fits in its proportional part (the water level only rises as capped
 * VMs hand back the rest, so they stay capped) or, when none does, gives out everything in
 * proportion. At most n + 1 rounds. Returns the bytes no VM could take. */
static uint64_t fill(const struct pred_vm *vm, size_t n, uint64_t avail, enum fill_to to,
		     uint64_t *share)
{
	for (;;) {
		u128 w = 0;
		uint64_t took = 0, given = 0;

		for (size_t i = 0; i < n; i++)
			if (share[i] < target_of(&vm[i], to))
				w += weight_of(&vm[i]);
		if (!w || !avail)
			return avail;
		for (size_t i = 0; i < n; i++) {
			uint64_t t = target_of(&vm[i], to), need = t - share[i];

			if (share[i] < t && (u128)need * w <= (u128)avail * weight_of(&vm[i])) {
				share[i] = t;
				took += need;
			}
		}
		if (took) {
			avail -= took;
			continue;
		}
		for (size_t i = 0; i < n; i++) {
			if (share[i] < target_of(&vm[i], to)) {
				uint64_t g = (uint64_t)((u128)avail * weight_of(&vm[i]) / w);

				share[i] += g;
				given += g;
			}
		}
		spread_bytes(vm, n, avail - given, to, share);
		return 0;
	}
}

bool pred_split(const struct pred_vm *vm, size_t n, uint64_t budget, uint64_t *share)
{
	u128 floors = 0;
	uint64_t given = 0, left;

	for (size_t i = 0; i < n; i++)
		floors += floor_of(&vm[i]);
	if (floors > budget) {
		for (size_t i = 0; i < n; i++) {
			share[i] = (uint64_t)((u128)floor_of(&vm[i]) * budget / floors);
			given += share[i];
		}
		/* Each share is below its floor (budget < floors), so the floor is a bound. */
		for (size_t i = 0; i < n && given < budget; i++) {
			if (share[i] < floor_of(&vm[i])) {
				share[i]++;
				given++;
			}
		}
		return true;
	}
	for (size_t i = 0; i < n; i++)
		share[i] = floor_of(&vm[i]);
	left = budget - (uint64_t)floors;
	left = fill(vm, n, left, FILL_DEMAND, share);
	fill(vm, n, left, FILL_CAP, share);
	return false;
}

void pred_plan(const struct pred_state *s, const struct pred_plan_in *in, struct pred_plan *out)
{
	uint64_t share = min_u64(in->share, s->guest_ram), want;
	double h = in->horizon ? in->horizon : 1;

	out->resident_target = share;
	out->balloon_target = clamp_ram(s, (double)share * (1 + s->p.balloon_headroom));
	out->balloon_target = max_u64(out->balloon_target, min_u64(in->balloon_min, s->guest_ram));
	out->prefetch = 0;
	if (in->host_pressure || !s->samples)
		return;
	want = min_u64(clamp_ram(s, base(s, h * s->interval)), share);
	if (want > s->resident)
		out->prefetch = min_u64(want - s->resident, in->batch);
}
