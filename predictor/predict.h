/* predict: per-VM memory demand prediction, the critical amount, emergency detection, the
 * host budget split and the per-VM plan (balloon target, resident target, prefetch).
 *
 * Pure computation: no I/O, no clock, no threads, no allocation, no libm. The planner feeds
 * one sample per VM per interval (default 1 s) and re-plans; time comes in the samples. A
 * struct pred_state is owned by one caller, who serialises.
 *
 * The demand model (iBalloon-style prediction, made asymmetric because being short of memory
 * costs far more than holding a little extra):
 *  - obs = max(wss, wss_short) of each sample.
 *  - level: a rise is believed at once (level += alpha_up * (obs - level), alpha_up = 1 by
 *    default); a fall only slowly (level += alpha_down * (obs - level), 0.15: half-life ~4
 *    intervals). The level never takes the trend in a fall, so it cannot creep upwards while
 *    demand is flat.
 *  - trend: Holt's second equation, trend = beta * growth + (1 - beta) * trend, in bytes per
 *    second, floored at zero: growth is extrapolated (a ramp is led, not followed), a fall
 *    never is (it is handled by the slow level alone).
 *  - base(h) = max(level + h * interval * trend, max of obs over the last short_window
 *    samples): whatever was seen a few intervals ago is still provisioned.
 *  - headroom = k * up_err * sqrt(h), up_err an EWMA of the one-step under-prediction
 *    max(obs - base(1), 0). Only under-prediction counts: an over-prediction costs idle memory
 *    which the slow fall already accepts, and counting it would slow the fall further.
 *  - demand(h) = base(h) + headroom, clamped to [0, guest RAM].
 *  - confidence = 1 / (1 + (rel_err * sqrt(h) / conf_err)^2), rel_err the EWMA of the
 *    absolute one-step error |obs - base(1)| over the level, scaled down while fewer than
 *    warmup samples have been seen. 0.5 when the typical error is conf_err (10%).
 *
 * Critical amount (CAGMA: the floor below which the guest starts to page):
 * max(critical_min, the critical_pct (10th) percentile of obs over the last long_window (60)
 * samples, the guest's own total - available when its stats were valid within long_window),
 * clamped to guest RAM. A low percentile, not the minimum, so that one glitched low sample
 * does not drop the floor; not the mean, so that a burst does not raise it. */
#ifndef UFFD_PREDICT_H
#define UFFD_PREDICT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PRED_HISTORY 64 /* samples kept in the state's ring: the longest window */

struct pred_params {
	double alpha_up;	 /* level gain on a rise, (0, 1]; 1 = believed at once */
	double alpha_down;	 /* level gain on a fall, (0, 1]: the slow release */
	double beta;		 /* trend gain, (0, 1] */
	double err_gain;	 /* gain of the error EWMAs (headroom, confidence), (0, 1] */
	double k;		 /* headroom in units of the under-prediction EWMA, >= 0 */
	double conf_err;	 /* relative error at which the confidence is 0.5, > 0 */
	unsigned warmup;	 /* samples before the confidence may reach 1 */
	unsigned short_window;	 /* samples: demand is never below their max, 1..PRED_HISTORY */
	unsigned long_window;	 /* samples the critical amount looks at, 1..PRED_HISTORY */
	double critical_pct;	 /* percentile of obs taken as the critical amount, [0, 1] */
	double rate_gain;	 /* gain of the fault and swap rate EWMAs, (0, 1] */
	double spike_ratio;	 /* a rate above spike_ratio x its EWMA is a spike, >= 1 */
	double tier_fault_floor; /* pages/s: tier faults below this are never an emergency */
	double swapin_floor;	 /* pages/s: likewise the guest's swap-in */
	double majflt_floor;	 /* faults/s: likewise the guest's major faults */
	double balloon_headroom; /* fraction of the share the guest keeps on top of it, >= 0 */
};

/* One interval's measurements of one VM. Rates are per second; negative ones count as 0. */
struct pred_sample {
	double t;	      /* seconds, any monotonic origin */
	uint64_t wss;	      /* bytes, the tracker's working set over its long (10 s) window */
	uint64_t wss_short;   /* bytes, over its short (1 s) window; 0 = not measured */
	uint64_t resident;    /* bytes of guest RAM resident in host RAM now */
	double tier_faults;   /* pages/s brought back on demand from the shm and disk tiers */
	bool guest_valid;     /* the guest_* fields come from a fresh guest-stats poll */
	uint64_t guest_total; /* bytes, the guest's MemTotal */
	uint64_t guest_avail; /* bytes, the guest's MemAvailable */
	double guest_swapin;  /* pages/s the guest swapped in */
	double guest_majflt;  /* major faults/s in the guest */
};

/* Everything one VM's predictor remembers. Fixed size (~0.8 KiB), no pointers: copyable. */
struct pred_state {
	struct pred_params p;
	uint64_t guest_ram;
	uint64_t ring[PRED_HISTORY]; /* obs, newest at head - 1 */
	unsigned head, count;	     /* count saturates at PRED_HISTORY */
	uint64_t samples;	     /* all samples seen */
	double t_last, interval;     /* last sample's time; EWMA of the interval, seconds */
	double level, trend;	     /* bytes; bytes per second, >= 0 */
	double up_err, abs_err;	     /* EWMAs of under-prediction and |error|, bytes */
	uint64_t resident;	     /* last sample's */
	double tier_ewma, swapin_ewma, majflt_ewma; /* rates up to the sample before the last */
	double tier_last, swapin_last, majflt_last; /* last sample's, folded in by the next */
	bool rates_init;			    /* tier_ewma holds a value */
	bool guest_init;			    /* swapin_ewma and majflt_ewma do */
	bool guest_last;			    /* the last sample had guest stats */
	uint64_t guest_used;			    /* total - available at the last valid stats */
	uint64_t guest_age;			    /* samples since then; UINT64_MAX = never */
};

/* Fills *p with the defaults (see the struct's comments and the model above). Cannot fail. */
void pred_params_default(struct pred_params *p);

/* Starts a VM's predictor with params p (NULL = defaults) for a guest of guest_ram bytes.
 * Returns 0, or -EINVAL (a parameter out of its range, guest_ram 0) leaving *s untouched. */
int pred_init(struct pred_state *s, const struct pred_params *p, uint64_t guest_ram);

/* Folds in the next sample. Returns 0, or -EINVAL when its time is not a number or earlier
 * than the last sample's; the sample is then ignored. */
int pred_update(struct pred_state *s, const struct pred_sample *smp);

/* The bytes to provision for the next horizon intervals (0 counts as 1), headroom included,
 * in [0, guest RAM]; *confidence (may be NULL) in [0, 1]. Before any sample: guest RAM with
 * confidence 0 (nothing is known, so nothing is taken away). Cannot fail. */
uint64_t pred_demand(const struct pred_state *s, unsigned horizon, double *confidence);

/* The critical amount in bytes (model above), at least critical_min, at most guest RAM.
 * Cannot fail. */
uint64_t pred_critical(const struct pred_state *s, uint64_t critical_min);

/* Whether the planner should re-plan now rather than at the next interval, for sample smp
 * (the newest; pred_update may have seen it or not, the baselines exclude it either way) and
 * the VM's current allocation alloc (its share) in bytes. Checks, in this order: tier faults,
 * guest swap-in, guest major faults above max(floor, spike_ratio x EWMA) (guest ones only
 * when guest_valid); then a working set (max(wss, wss_short)) above alloc. The last holds as
 * long as it is true, so a VM kept short by the budget re-plans every interval: cheap, pure.
 * *reason (may be NULL) is set to a static string for the log ("none" when false). Cannot
 * fail. */
bool pred_emergency(const struct pred_state *s, const struct pred_sample *smp, uint64_t alloc,
		    const char **reason);

/* One VM's input to the budget split, in bytes. */
struct pred_vm {
	uint64_t guest_ram;
	uint64_t demand;   /* pred_demand() */
	uint64_t critical; /* pred_critical() */
	uint64_t min;	   /* policy minimum (the balloon minimum); 0 = none */
	uint64_t max;	   /* policy maximum; 0 = guest RAM */
	uint32_t weight;   /* share of a shortage or a surplus; 0 counts as 1 */
};

/* Splits budget bytes of host RAM between n VMs into share[i] (bytes, not rounded to pages).
 * With cap = min(max, guest_ram) and floor = min(max(critical, min), cap):
 *  1. every VM gets its floor; if the floors alone exceed the budget they are all scaled by
 *     budget / sum(floors) instead, and nothing else is given;
 *  2. then up to min(max(demand, floor), cap), by weighted water-filling when short (each VM
 *     gets the same amount per unit of weight, none more than it asked, what a capped VM does
 *     not take goes to the others);
 *  3. what is left goes out the same way, up to each VM's cap.
 * Deterministic (integer arithmetic, rounding bytes go to the lowest indexes); the sum of the
 * shares never exceeds the budget, and equals it whenever the caps allow; no share exceeds
 * its cap. Returns true when the floors had to be scaled (overcommit: some VMs are below
 * their critical amount, the daemon should say so), false otherwise. Cannot fail. */
bool pred_split(const struct pred_vm *vm, size_t n, uint64_t budget, uint64_t *share);

/* The planner's input for one VM, next to its state. */
struct pred_plan_in {
	uint64_t share;	      /* pred_split()'s share */
	uint64_t balloon_min; /* bytes the balloon must leave the guest; 0 = none */
	uint64_t batch;	      /* most bytes one plan may prefetch */
	unsigned horizon;     /* intervals, as for pred_demand() */
	bool host_pressure;   /* the host is in an emergency: no prefetch anywhere */
};

struct pred_plan {
	uint64_t balloon_target;  /* bytes the guest should keep: share plus balloon_headroom,
				     clamped to [balloon_min, guest RAM] */
	uint64_t resident_target; /* bytes the evictor keeps resident: the share */
	uint64_t prefetch;	  /* bytes to bring back now, ahead of faults */
};

/* Derives the VM's plan from its share. Prefetch is min(expected demand, share) - resident
 * (the last sample's), at most batch, where the expected demand is base(horizon) of the
 * model, without headroom: the headroom is a reservation against surprises, not pages known
 * to be wanted. Zero when the host is under pressure or the VM already holds its share.
 * Cannot fail. */
void pred_plan(const struct pred_state *s, const struct pred_plan_in *in, struct pred_plan *out);

#endif
