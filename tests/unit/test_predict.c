/* test_predict: the demand predictor, critical amount, emergency check, budget split and plan
 * (predictor/predict.c).
 *
 * What it stresses:
 *  - the shape of the prediction on synthetic series, each judged by what was provisioned for
 *    an interval (the h = 1 demand computed after the previous sample) against what came:
 *    a step up (followed within 2 intervals, overshoot under half the step), a step down
 *    (held, then decaying monotonically to within 10% in a bounded number of intervals), a
 *    ramp (the trend is picked up: the prediction leads the series by a few percent at
 *    most), a one-interval burst (an emergency, then gone; the critical amount does not move;
 *    the demand decays back), square and sine waves of period 20 (covered at least 90% of
 *    the time, the fraction printed) and a noisy constant (high confidence, demand a few
 *    percent above the mean); confidence falling with error and with the horizon;
 *  - the critical amount: percentile of the working set, the guest's own used memory while
 *    its stats are fresh, critical_min, guest RAM, robustness to a glitched sample;
 *  - emergencies: tier fault, guest swap-in and major fault spikes against their EWMAs,
 *    absolute floors, stale guest stats, working set above the allocation, none on a noisy
 *    steady state, the same answer before and after pred_update();
 *  - the budget split: exact cases (enough for all, short, overcommitted floors with
 *    rounding, weights 1:3, caps redistributing, zero and one VM) and, on seeded random
 *    inputs, its invariants: sum <= budget (= budget when the caps allow), floors kept, caps
 *    respected, weighted water-filling fairness, determinism;
 *  - the plan: balloon target clamps, resident target, prefetch bounded by the batch and
 *    zero under host pressure or at the share;
 *  - parameter validation, a sample going back in time, clamps to [0, guest RAM]. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "predictor/predict.h"

#define M   (UINT64_C(1) << 20)
#define G   (UINT64_C(1) << 30)
#define RAM (8 * G)
#define PI  3.14159265358979323846

static uint64_t rng_state;

static uint64_t rnd(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 2685821657736338717ull;
}

/* Uniform in [-1, 1]. */
static double noise(void)
{
	return (double)(rnd() >> 11) / (double)(UINT64_C(1) << 52) - 1.0;
}

/* sin without libm: Taylor series after reduction to [-pi, pi]. */
static double sine(double x)
{
	double term, sum;

	while (x > PI)
		x -= 2 * PI;
	while (x < -PI)
		x += 2 * PI;
	term = sum = x;
	for (int k = 1; k < 14; k++) {
		term *= -x * x / ((2.0 * k) * (2.0 * k + 1));
		sum += term;
	}
	return sum;
}

static struct pred_sample sample(double t, uint64_t wss)
{
	return (struct pred_sample){.t = t, .wss = wss, .resident = wss};
}

static void init(struct pred_state *s)
{
	assert_int_equal(pred_init(s, NULL, RAM), 0);
}

static uint64_t feed(struct pred_state *s, double t, uint64_t wss)
{
	struct pred_sample smp = sample(t, wss);

	assert_int_equal(pred_update(s, &smp), 0);
	return pred_demand(s, 1, NULL);
}

/* Runs a series: pred[i] is the h = 1 demand after obs[i], provisioned for obs[i + 1]. */
static void run(const uint64_t *obs, uint64_t *pred, int n)
{
	struct pred_state s;

	init(&s);
	for (int i = 0; i < n; i++)
		pred[i] = feed(&s, i, obs[i]);
}

/* The fraction of intervals in [from, n - 1) covered by the previous interval's prediction;
 * the mean over-provision and the worst shortfall, relative to what came. */
static double coverage(const uint64_t *obs, const uint64_t *pred, int from, int n, double *over,
		       double *shortfall)
{
	int ok = 0;
	double sum = 0, worst = 0;

	for (int i = from; i < n - 1; i++) {
		double rel = ((double)pred[i] - (double)obs[i + 1]) / (double)obs[i + 1];

		ok += pred[i] >= obs[i + 1];
		sum += rel;
		if (-rel > worst)
			worst = -rel;
	}
	*over = sum / (n - 1 - from);
	*shortfall = worst;
	return (double)ok / (n - 1 - from);
}

#define N 200
static uint64_t obs[N], pred[N];

static void test_params_and_init(void **state)
{
	struct pred_params p, bad;
	struct pred_state s, copy;
	struct pred_sample smp = sample(10, G);
	double c = 1;

	pred_params_default(&p);
	assert_int_equal(pred_init(&s, &p, RAM), 0);
	assert_int_equal(pred_init(&s, NULL, 0), -EINVAL);
	bad = p;
	bad.alpha_down = 0;
	assert_int_equal(pred_init(&s, &bad, RAM), -EINVAL);
	bad = p;
	bad.beta = 0.0 / 0.0;
	assert_int_equal(pred_init(&s, &bad, RAM), -EINVAL);
	bad = p;
	bad.short_window = PRED_HISTORY + 1;
	assert_int_equal(pred_init(&s, &bad, RAM), -EINVAL);
	bad = p;
	bad.long_window = 0;
	assert_int_equal(pred_init(&s, &bad, RAM), -EINVAL);
	bad = p;
	bad.critical_pct = 1.5;
	assert_int_equal(pred_init(&s, &bad, RAM), -EINVAL);
	bad = p;
	bad.spike_ratio = 0.5;
	assert_int_equal(pred_init(&s, &bad, RAM), -EINVAL);

	/* Nothing known: nothing is taken away. */
	init(&s);
	assert_true(pred_demand(&s, 1, &c) == RAM);
	assert_true(c == 0.0);
	assert_true(pred_critical(&s, 0) == 0);
	assert_true(pred_critical(&s, G) == G);

	/* A sample from the past is refused and changes nothing. */
	assert_int_equal(pred_update(&s, &smp), 0);
	memcpy(&copy, &s, sizeof(s));
	smp.t = 9;
	assert_int_equal(pred_update(&s, &smp), -EINVAL);
	smp.t = 0.0 / 0.0;
	assert_int_equal(pred_update(&s, &smp), -EINVAL);
	assert_memory_equal(&copy, &s, sizeof(s));
	/* The same instant again is accepted (no growth is learnt from it). */
	smp.t = 10;
	assert_int_equal(pred_update(&s, &smp), 0);
}

static void test_clamps(void **state)
{
	struct pred_state s;
	struct pred_sample smp = sample(0, 0);
	double c;

	/* Above guest RAM (e.g. a tracker counting more than the guest has): clamped. */
	init(&s);
	for (int i = 0; i < 20; i++)
		feed(&s, i, RAM + (uint64_t)i * G);
	assert_true(pred_demand(&s, 1, NULL) == RAM);
	assert_true(pred_demand(&s, 50, NULL) == RAM);
	assert_true(pred_critical(&s, 0) == RAM);
	assert_true(pred_critical(&s, 2 * RAM) == RAM);

	/* An idle guest: zero, never negative, and sure of it. */
	init(&s);
	for (int i = 0; i < 20; i++)
		feed(&s, i, 0);
	assert_true(pred_demand(&s, 1, &c) == 0);
	assert_true(c > 0.99);

	/* wss_short counts when it is the larger. */
	init(&s);
	smp.wss = G;
	smp.wss_short = 2 * G;
	assert_int_equal(pred_update(&s, &smp), 0);
	assert_true(pred_demand(&s, 1, NULL) >= 2 * G);
}

static void test_step_up(void **state)
{
	const int step = 40;
	int lag = -1;
	double worst = 0;

	for (int i = 0; i < N; i++)
		obs[i] = i < step ? G : 2 * G;
	run(obs, pred, N);
	assert_true(pred[step - 1] < 2 * G); /* the step itself cannot be foreseen */
	for (int i = step; i < N && lag < 0; i++)
		if (pred[i] >= 2 * G)
			lag = i - step + 1; /* samples it took */
	for (int i = step; i < N; i++) {
		double o = ((double)pred[i] - 2.0 * G) / G;

		assert_true(pred[i] >= 2 * G); /* once followed, never dropped */
		if (o > worst)
			worst = o;
	}
	print_message("step up: followed after %d sample(s), overshoot %.0f%% of the step\n", lag,
		      100 * worst);
	assert_true(lag >= 1 && lag <= 2);
	assert_true(worst < 0.5);
	/* The overshoot is transient: 30 intervals on, within 2% of the new level. */
	assert_true(pred[step + 30] <= 2 * G + 2 * G / 100);
}

static void test_step_down(void **state)
{
	const int step = 40;
	int within = -1;

	for (int i = 0; i < N; i++)
		obs[i] = i < step ? 2 * G : G;
	run(obs, pred, N);
	/* Held for a while: a fall is not believed at once. */
	for (int i = step; i < step + 4; i++)
		assert_true(pred[i] >= 2 * G);
	for (int i = step; i < N; i++) {
		assert_true(pred[i] >= G);
		assert_true(pred[i] <= pred[i - 1]); /* monotonic decay, no bounce */
		if (within < 0 && pred[i] <= G + G / 10)
			within = i - step + 1;
	}
	print_message("step down: within 10%% of the new level after %d samples\n", within);
	assert_true(within > 5 && within <= 25);
	assert_true(pred[N - 1] <= G + G / 100);
}

static void test_ramp(void **state)
{
	const int from = 20;
	double worst = 0, mean = 0;

	for (int i = 0; i < N; i++)
		obs[i] = G + (uint64_t)i * 16 * M; /* to 4.1 GiB */
	run(obs, pred, N);
	for (int i = from; i < N - 1; i++) {
		double e = ((double)pred[i] - (double)obs[i + 1]) / (double)obs[i + 1];

		assert_true(pred[i] >= obs[i + 1]); /* leads */
		if (e > worst)
			worst = e;
		mean += e / (N - 1 - from);
	}
	print_message("ramp: leads by %.2f%% on average, at most %.2f%%\n", 100 * mean,
		      100 * worst);
	assert_true(worst < 0.05);
	assert_true(mean < 0.01);
}

static void test_burst(void **state)
{
	struct pred_state s;
	struct pred_sample smp;
	const char *why;
	int i, back = -1;

	init(&s);
	for (i = 0; i < 60; i++) {
		smp = sample(i, G);
		smp.tier_faults = 20 + 10 * noise();
		assert_false(pred_emergency(&s, &smp, G + G / 2, &why));
		assert_string_equal(why, "none");
		assert_int_equal(pred_update(&s, &smp), 0);
	}
	assert_true(pred_critical(&s, 0) == G);
	/* One interval of a 3 GiB working set with a storm of tier faults. */
	smp = sample(i, 3 * G);
	smp.tier_faults = 5000;
	assert_true(pred_emergency(&s, &smp, G + G / 2, &why));
	assert_string_equal(why, "tier fault spike");
	assert_int_equal(pred_update(&s, &smp), 0);
	assert_true(pred_emergency(&s, &smp, G + G / 2, &why)); /* after the update too */
	assert_string_equal(why, "tier fault spike");
	assert_true(pred_demand(&s, 1, NULL) >= 3 * G);
	/* Without the faults, the working set alone is an emergency for an allocation of 1.5 G. */
	smp.tier_faults = 0;
	assert_true(pred_emergency(&s, &smp, G + G / 2, &why));
	assert_string_equal(why, "working set above allocation");
	for (i++; i < N; i++) {
		smp = sample(i, G);
		smp.tier_faults = 20;
		assert_false(pred_emergency(&s, &smp, G + G / 2, NULL));
		assert_int_equal(pred_update(&s, &smp), 0);
		assert_true(pred_critical(&s, 0) == G); /* the burst never reaches the floor */
		if (back < 0 && pred_demand(&s, 1, NULL) <= G + G / 10)
			back = i - 60;
	}
	print_message("burst: demand back within 10%% after %d samples\n", back);
	assert_true(back > 0 && back <= 30);
}

/* A square wave misses only its rising edges (1 in 20), which no forecast can see coming
 * (short by what the slow fall has not released yet); a sine rises for 10 intervals by up to
 * 10% each, and the trend, floored at 0 through the fall, needs a few of them to catch up:
 * short by less than 10% on 3-4 intervals a period. */
static void check_wave(const char *name, int from, double min_cov, double max_short)
{
	double over, shortfall, cov;

	run(obs, pred, N);
	cov = coverage(obs, pred, from, N, &over, &shortfall);
	print_message("%s: covered %.1f%% of intervals, mean over-provision %.1f%%, worst "
		      "shortfall %.1f%%\n",
		      name, 100 * cov, 100 * over, 100 * shortfall);
	assert_true(cov >= min_cov);
	assert_true(over < 0.6);
	assert_true(shortfall < max_short);
}

static void test_periodic(void **state)
{
	for (int i = 0; i < N; i++)
		obs[i] = (i % 20) < 10 ? G : 2 * G;
	check_wave("square wave, period 20", 40, 0.9, 0.5);
	for (int i = 0; i < N; i++)
		obs[i] = (uint64_t)(1.5 * G + 0.5 * G * sine(2 * PI * i / 20));
	check_wave("sine, period 20", 40, 0.75, 0.1);
	rng_state = 42;
	for (int i = 0; i < N; i++)
		obs[i] = (uint64_t)(1.5 * G + 0.5 * G * sine(2 * PI * i / 20) + 0.03 * G * noise());
	check_wave("noisy sine, period 20", 40, 0.75, 0.15);
}

static void test_noisy_constant(void **state)
{
	struct pred_state s;
	double c, c4, cov, over, shortfall;
	uint64_t d, crit;

	rng_state = 7;
	for (int i = 0; i < N; i++)
		obs[i] = (uint64_t)(G + 0.03 * G * noise()); /* 1 GiB +- 3% */
	run(obs, pred, N);
	init(&s);
	for (int i = 0; i < N; i++)
		feed(&s, i, obs[i]);
	d = pred_demand(&s, 1, &c);
	pred_demand(&s, 4, &c4);
	crit = pred_critical(&s, 0);
	cov = coverage(obs, pred, 50, N, &over, &shortfall);
	print_message("noisy constant (+-3%%): demand %.1f%% above the mean, confidence %.2f "
		      "(h=4: %.2f), covered %.1f%% (short by %.1f%% at worst), critical %.1f%% "
		      "of the mean\n",
		      100.0 * ((double)d - G) / G, c, c4, 100 * cov, 100 * shortfall,
		      100.0 * (double)crit / G);
	assert_true(d >= G + G / 100);
	assert_true(d <= G + 10 * G / 100);
	assert_true(c >= 0.8);
	assert_true(c4 < c);
	/* A new high beyond the recent ones is short by a little (at most the noise). */
	assert_true(cov >= 0.8);
	assert_true(shortfall <= 0.06);
	assert_true(crit >= G - 3 * G / 100 && crit <= G);

	/* +-30% noise: much less confident. */
	init(&s);
	for (int i = 0; i < N; i++)
		feed(&s, i, (uint64_t)(G + 0.3 * G * noise()));
	pred_demand(&s, 1, &c);
	print_message("noisy constant (+-30%%): confidence %.2f\n", c);
	assert_true(c < 0.5);

	/* Confidence grows over the warm-up and drops after a surprise. */
	init(&s);
	feed(&s, 0, G);
	pred_demand(&s, 1, &c);
	assert_true(c <= 0.1 + 1e-9);
	for (int i = 1; i < 40; i++)
		feed(&s, i, G);
	pred_demand(&s, 1, &c);
	assert_true(c > 0.99);
	feed(&s, 40, 2 * G);
	pred_demand(&s, 1, &c4);
	assert_true(c4 < 0.9 * c);
}

static void test_critical(void **state)
{
	struct pred_state s;
	struct pred_sample smp;
	int i;

	init(&s);
	for (i = 0; i < 60; i++)
		feed(&s, i, G + (uint64_t)(i % 10) * 10 * M); /* 1 GiB .. +90 MiB */
	assert_true(pred_critical(&s, 0) == G);		      /* 10th percentile of 60 values */
	/* One glitched sample of 0 does not drop it; a spike does not raise it. */
	feed(&s, i++, 0);
	feed(&s, i++, 7 * G);
	assert_true(pred_critical(&s, 0) == G);
	assert_true(pred_critical(&s, 2 * G) == 2 * G);
	/* The guest says it uses 1.5 GiB that it cannot drop. */
	smp = sample(i++, G);
	smp.guest_valid = true;
	smp.guest_total = 4 * G;
	smp.guest_avail = 4 * G - (G + G / 2);
	assert_int_equal(pred_update(&s, &smp), 0);
	assert_true(pred_critical(&s, 0) == G + G / 2);
	assert_true(pred_critical(&s, 2 * G) == 2 * G);
	/* Still believed while fresh (within long_window samples), forgotten after. */
	for (int j = 0; j < 59; j++)
		feed(&s, i++, G);
	assert_true(pred_critical(&s, 0) == G + G / 2);
	feed(&s, i++, G);
	assert_true(pred_critical(&s, 0) == G);
	/* available > total (a racy poll) counts as nothing used. */
	smp = sample(i++, G);
	smp.guest_valid = true;
	smp.guest_total = G;
	smp.guest_avail = 2 * G;
	assert_int_equal(pred_update(&s, &smp), 0);
	assert_true(pred_critical(&s, 0) == G);
}

static struct pred_sample steady(double t, double tier, double swapin, double majflt)
{
	struct pred_sample smp = sample(t, G);

	smp.tier_faults = tier;
	smp.guest_valid = true;
	smp.guest_total = 4 * G;
	smp.guest_avail = 2 * G;
	smp.guest_swapin = swapin;
	smp.guest_majflt = majflt;
	return smp;
}

/* 100 noisy steady samples, no emergency on any of them. */
static void warm(struct pred_state *s)
{
	const char *why;

	init(s);
	rng_state = 99;
	for (int i = 0; i < 100; i++) {
		struct pred_sample smp =
		    steady(i, 300 + 100 * noise(), 20 + 10 * noise(), 150 + 50 * noise());

		assert_int_equal(pred_update(s, &smp), 0);
		/* The first sample has no baseline: only the floors judge it. */
		if (i && pred_emergency(s, &smp, 2 * G, &why))
			fail_msg("steady state: emergency \"%s\" at %d", why, i);
	}
}

static void test_emergency(void **state)
{
	struct pred_state s;
	struct pred_sample smp;
	const char *why;

	warm(&s);
	smp = steady(100, 3000, 20, 150);
	assert_true(pred_emergency(&s, &smp, 2 * G, &why));
	assert_string_equal(why, "tier fault spike");
	smp = steady(100, 1000, 20, 150); /* above the floor, under 4x the EWMA (~300) */
	assert_false(pred_emergency(&s, &smp, 2 * G, NULL));
	smp = steady(100, 300, 500, 150);
	assert_true(pred_emergency(&s, &smp, 2 * G, &why));
	assert_string_equal(why, "guest swap-in spike");
	smp.guest_valid = false; /* stale guest stats are not looked at */
	assert_false(pred_emergency(&s, &smp, 2 * G, &why));
	assert_string_equal(why, "none");
	smp = steady(100, 300, 20, 2000);
	assert_true(pred_emergency(&s, &smp, 2 * G, &why));
	assert_string_equal(why, "guest major fault spike");
	smp = steady(100, 300, 20, 150);
	smp.wss = 2 * G + 1;
	assert_true(pred_emergency(&s, &smp, 2 * G, &why));
	assert_string_equal(why, "working set above allocation");
	smp.wss = 2 * G;
	assert_false(pred_emergency(&s, &smp, 2 * G, &why));

	/* The spike is judged against the baseline before it, also once folded in; after a
	 * sustained rise the baseline catches up and the emergency ends. */
	smp = steady(100, 3000, 20, 150);
	assert_int_equal(pred_update(&s, &smp), 0);
	assert_true(pred_emergency(&s, &smp, 2 * G, &why));
	for (int i = 101; i < 140; i++) {
		smp = steady(i, 3000, 20, 150);
		assert_int_equal(pred_update(&s, &smp), 0);
	}
	assert_false(pred_emergency(&s, &smp, 2 * G, &why));

	/* From nothing: a rate below its absolute floor is never a spike, one above it is. */
	init(&s);
	smp = steady(0, 0, 0, 0);
	assert_int_equal(pred_update(&s, &smp), 0);
	smp = steady(1, 200, 50, 200);
	assert_false(pred_emergency(&s, &smp, 2 * G, &why));
	smp = steady(1, 300, 50, 200);
	assert_true(pred_emergency(&s, &smp, 2 * G, &why));
	assert_string_equal(why, "tier fault spike");
	smp = steady(1, 0, 0, 0);
	smp.tier_faults = -5; /* garbage in: counts as 0 */
	assert_false(pred_emergency(&s, &smp, 2 * G, NULL));
}

/* --- budget split --- */

static struct pred_vm vmc(uint64_t ram, uint64_t demand, uint64_t critical, uint64_t min,
			  uint64_t max, uint32_t weight)
{
	return (struct pred_vm){ram, demand, critical, min, max, weight};
}

static uint64_t sum(const uint64_t *v, size_t n)
{
	uint64_t t = 0;

	for (size_t i = 0; i < n; i++)
		t += v[i];
	return t;
}

static void test_split_exact(void **state)
{
	struct pred_vm vm[3];
	uint64_t sh[3];

	/* Zero VMs: nothing to write. */
	assert_false(pred_split(NULL, 0, 10 * G, NULL));

	/* One VM: everything up to its guest RAM, or the whole budget. */
	vm[0] = vmc(4 * G, 2 * G, G, 0, 0, 1);
	assert_false(pred_split(vm, 1, 5 * G, sh));
	assert_true(sh[0] == 4 * G);
	assert_false(pred_split(vm, 1, 3 * G, sh));
	assert_true(sh[0] == 3 * G);

	/* Enough for all: demands met, the rest evenly up to the caps. */
	vm[0] = vmc(8 * G, 2 * G, G, 0, 0, 1);
	vm[1] = vmc(8 * G, 3 * G, G, 0, 0, 1);
	vm[2] = vmc(8 * G, 4 * G, G, 0, 0, 1);
	assert_false(pred_split(vm, 3, 15 * G, sh));
	assert_true(sh[0] == 4 * G && sh[1] == 5 * G && sh[2] == 6 * G);
	assert_false(pred_split(vm, 3, 30 * G, sh));
	assert_true(sh[0] == 8 * G && sh[1] == 8 * G && sh[2] == 8 * G);

	/* Short: floors (critical 1 G, min 1.5 G for the second), then demand by weight. */
	vm[0] = vmc(8 * G, 3 * G, G, 0, 0, 1);
	vm[1] = vmc(8 * G, 5 * G, G, G + G / 2, 0, 1);
	assert_false(pred_split(vm, 2, 4 * G + G / 2, sh));
	assert_true(sh[0] == 2 * G && sh[1] == 2 * G + G / 2);
	/* Weights 1:3 share the shortage 1:3. */
	vm[0].weight = 1;
	vm[1].weight = 3;
	assert_false(pred_split(vm, 2, 4 * G + G / 2, sh));
	assert_true(sh[0] == G + G / 2 && sh[1] == 3 * G);
	/* A VM that needs less than its part gives the rest to the other. */
	vm[0] = vmc(8 * G, G + G / 4, G, 0, 0, 1);
	vm[1] = vmc(8 * G, 5 * G, G, 0, 0, 1);
	assert_false(pred_split(vm, 2, 4 * G, sh));
	assert_true(sh[0] == G + G / 4 && sh[1] == 2 * G + 3 * G / 4);

	/* Leftover by weight 1:3, then the max of the second caps it and the rest flows back. */
	vm[0] = vmc(8 * G, G, G, 0, 0, 1);
	vm[1] = vmc(8 * G, G, G, 0, 0, 3);
	assert_false(pred_split(vm, 2, 6 * G, sh));
	assert_true(sh[0] == 2 * G && sh[1] == 4 * G);
	vm[1].max = 3 * G;
	assert_false(pred_split(vm, 2, 6 * G, sh));
	assert_true(sh[0] == 3 * G && sh[1] == 3 * G);
	vm[0].max = 2 * G; /* both capped: the budget is not all given */
	assert_false(pred_split(vm, 2, 6 * G, sh));
	assert_true(sh[0] == 2 * G && sh[1] == 3 * G);

	/* A floor above the cap (min or critical above max, or guest RAM) is cut to the cap;
	 * so is a demand. */
	vm[0] = vmc(2 * G, 9 * G, 3 * G, 0, 0, 1);
	vm[1] = vmc(8 * G, G, G, 5 * G, 4 * G, 1);
	assert_false(pred_split(vm, 2, 7 * G, sh));
	assert_true(sh[0] == 2 * G && sh[1] == 4 * G);

	/* Overcommitted floors: scaled in proportion, reported. */
	vm[0] = vmc(8 * G, 4 * G, 2 * G, 0, 0, 1);
	vm[1] = vmc(8 * G, 7 * G, 6 * G, 0, 0, 5);
	assert_true(pred_split(vm, 2, 4 * G, sh));
	assert_true(sh[0] == G && sh[1] == 3 * G);
	/* Rounding bytes go to the lowest indexes; the sum is the budget. */
	vm[0] = vmc(8 * G, 4, 1, 0, 0, 1);
	vm[1] = vmc(8 * G, 4, 1, 0, 0, 1);
	vm[2] = vmc(8 * G, 4, 1, 0, 0, 1);
	assert_true(pred_split(vm, 3, 2, sh));
	assert_true(sh[0] == 1 && sh[1] == 1 && sh[2] == 0);
	/* Short on demand with rounding: 10 bytes by 1:1:1 over floors of 0. */
	vm[0] = vmc(8 * G, 100, 0, 0, 0, 1);
	vm[1] = vmc(8 * G, 100, 0, 0, 0, 1);
	vm[2] = vmc(8 * G, 100, 0, 0, 0, 0); /* weight 0 counts as 1 */
	assert_false(pred_split(vm, 3, 10, sh));
	assert_true(sh[0] == 4 && sh[1] == 3 && sh[2] == 3);
	assert_true(sum(sh, 3) == 10);
}

#define NVM 12

static uint64_t rnd_size(void)
{
	switch (rnd() % 4) {
	case 0:
		return 0;
	case 1:
		return rnd() % (16 * G);
	default:
		return (rnd() % 64) * 256 * M;
	}
}

/* Weighted water-filling: among VMs not at their target, the extra per unit of weight is
 * equal (to rounding); a VM at its target got no more per unit of weight than the others. */
static void check_fair(const struct pred_vm *vm, const uint64_t *base, const uint64_t *tgt,
		       const uint64_t *sh, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		for (size_t j = 0; j < n; j++) {
			uint64_t wi = vm[i].weight ? vm[i].weight : 1;
			uint64_t wj = vm[j].weight ? vm[j].weight : 1;
			double ei = (double)(sh[i] - base[i]) / (double)wi;
			double ej = (double)(sh[j] - base[j]) / (double)wj;

			if (sh[i] < tgt[i])
				assert_true(ej <= ei + 1.0 + 1e-6 * ei);
		}
	}
}

static void test_split_random(void **state)
{
	struct pred_vm vm[NVM];
	uint64_t sh[NVM], again[NVM], fl[NVM], cap[NVM], dem[NVM];

	rng_state = 2024;
	for (int round = 0; round < 20000; round++) {
		size_t n = 1 + rnd() % NVM;
		uint64_t budget = rnd() % (64 * G), sfl = 0, sdem = 0, scap = 0, s;
		bool over;

		for (size_t i = 0; i < n; i++) {
			vm[i] = vmc(1 + rnd_size(), rnd_size(), rnd_size(), rnd_size(), rnd_size(),
				    (uint32_t)(rnd() % 5));
			cap[i] =
			    vm[i].max && vm[i].max < vm[i].guest_ram ? vm[i].max : vm[i].guest_ram;
			fl[i] = vm[i].critical > vm[i].min ? vm[i].critical : vm[i].min;
			fl[i] = fl[i] < cap[i] ? fl[i] : cap[i];
			dem[i] = vm[i].demand > fl[i] ? vm[i].demand : fl[i];
			dem[i] = dem[i] < cap[i] ? dem[i] : cap[i];
			sfl += fl[i];
			sdem += dem[i];
			scap += cap[i];
		}
		over = pred_split(vm, n, budget, sh);
		assert_true(pred_split(vm, n, budget, again) == over);
		assert_memory_equal(sh, again, n * sizeof(sh[0]));
		s = sum(sh, n);
		assert_true(s <= budget);
		assert_true(over == (sfl > budget));
		for (size_t i = 0; i < n; i++)
			assert_true(sh[i] <= cap[i]);
		if (over) {
			assert_true(s == budget);
			for (size_t i = 0; i < n; i++)
				assert_true(sh[i] <= fl[i]);
			/* In proportion to the floors: between the two roundings. */
			for (size_t i = 0; i < n; i++)
				assert_true((double)sh[i] >=
					    (double)fl[i] * (double)budget / (double)sfl - 1.001);
			continue;
		}
		for (size_t i = 0; i < n; i++)
			assert_true(sh[i] >= fl[i]);
		if (scap >= budget)
			assert_true(s == budget);
		else
			assert_memory_equal(sh, cap, n * sizeof(sh[0]));
		if (sdem > budget) {
			check_fair(vm, fl, dem, sh, n);
		} else {
			for (size_t i = 0; i < n; i++)
				assert_true(sh[i] >= dem[i]);
			check_fair(vm, dem, cap, sh, n);
		}
	}
}

static void test_plan(void **state)
{
	struct pred_state s;
	struct pred_sample smp;
	struct pred_plan out;
	struct pred_plan_in in = {.share = 2 * G, .batch = 64 * M, .horizon = 1};

	init(&s);
	/* Before any sample: targets from the share, no prefetch. */
	pred_plan(&s, &in, &out);
	assert_true(out.resident_target == 2 * G);
	assert_true(out.prefetch == 0);
	for (int i = 0; i < 30; i++) {
		smp = sample(i, G);
		smp.resident = G / 2; /* half the working set is out in the tiers */
		assert_int_equal(pred_update(&s, &smp), 0);
	}
	pred_plan(&s, &in, &out);
	assert_true(out.resident_target == 2 * G);
	assert_true(out.balloon_target == 2 * G + (uint64_t)(0.1 * 2 * G));
	assert_true(out.prefetch == 64 * M); /* bounded by the batch */
	in.batch = 4 * G;
	pred_plan(&s, &in, &out);
	assert_true(out.prefetch == G / 2); /* the expected demand, without headroom */
	in.host_pressure = true;
	pred_plan(&s, &in, &out);
	assert_true(out.prefetch == 0);
	in.host_pressure = false;
	in.share = G / 2; /* the VM holds its share already */
	pred_plan(&s, &in, &out);
	assert_true(out.prefetch == 0);
	assert_true(out.resident_target == G / 2);
	in.share = 3 * G / 4; /* room for a quarter more */
	pred_plan(&s, &in, &out);
	assert_true(out.prefetch == G / 4);

	/* Balloon target clamps: to guest RAM, up to balloon_min, balloon_min above RAM. */
	in.share = RAM - G / 2;
	pred_plan(&s, &in, &out);
	assert_true(out.balloon_target == RAM);
	in.share = 2 * RAM;
	pred_plan(&s, &in, &out);
	assert_true(out.balloon_target == RAM && out.resident_target == RAM);
	in.share = G;
	in.balloon_min = 3 * G;
	pred_plan(&s, &in, &out);
	assert_true(out.balloon_target == 3 * G);
	in.balloon_min = 2 * RAM;
	pred_plan(&s, &in, &out);
	assert_true(out.balloon_target == RAM);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_params_and_init),
	    cmocka_unit_test(test_clamps),
	    cmocka_unit_test(test_step_up),
	    cmocka_unit_test(test_step_down),
	    cmocka_unit_test(test_ramp),
	    cmocka_unit_test(test_burst),
	    cmocka_unit_test(test_periodic),
	    cmocka_unit_test(test_noisy_constant),
	    cmocka_unit_test(test_critical),
	    cmocka_unit_test(test_emergency),
	    cmocka_unit_test(test_split_exact),
	    cmocka_unit_test(test_split_random),
	    cmocka_unit_test(test_plan),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
