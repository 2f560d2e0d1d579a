/* test_diskq: the daemon's disk scheduler (uffd-mgr/diskq.c), with threads standing in for
 * the rings of several VMs. No I/O: a grant is held for a moment and released.
 *
 * What it checks:
 *  - no cap: every request goes at once;
 *  - the cap: a request past it is refused without waiting (-EAGAIN), one larger than the cap
 *    goes alone once nothing is in flight;
 *  - classes: writes get at most a quarter of the cap and prefetch reads half; a fault's read
 *    goes past a write waiting for room, and with both waiting the read is granted first;
 *  - weights: two clients that always have a request waiting (a thread per request, each
 *    grant released only once its client's next request waits, so the order is the tags'
 *    alone) share one I/O at a time 1:3 for weights 100:300, 1:1 for equal weights;
 *  - a client that was idle while another was granted 5000 times comes back at the present:
 *    the two alternate from then on, no burst of saved-up credit;
 *  - the bytes in flight never pass the cap, under 6 threads of mixed classes. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <unistd.h>

#include "uffd-mgr/diskq.h"

#define UNIT 4096u

static void test_no_cap(void **state)
{
	struct diskq *q;
	struct diskq_client *c;

	assert_int_equal(diskq_create(0, &q), 0);
	assert_int_equal(diskq_inflight_cap(q), 0);
	assert_int_equal(diskq_join(q, 100, &c), 0);
	for (int i = 0; i < 1000; i++)
		assert_int_equal(diskq_acquire(c, i % DISKQ_NCLASS, 1u << 20, false), 0);
	for (int i = 0; i < 1000; i++)
		diskq_release(c, i % DISKQ_NCLASS, 1u << 20);
	diskq_leave(c);
	diskq_destroy(q);
}

static void test_caps(void **state)
{
	struct diskq *q;
	struct diskq_client *a, *b;

	assert_int_equal(diskq_create(16 * UNIT, &q), 0);
	assert_int_equal(diskq_join(q, 100, &a), 0);
	assert_int_equal(diskq_join(q, 100, &b), 0);
	/* Writes: a quarter of the cap. */
	for (int i = 0; i < 4; i++)
		assert_int_equal(diskq_acquire(a, DISKQ_WRITE, UNIT, false), 0);
	assert_int_equal(diskq_acquire(b, DISKQ_WRITE, UNIT, false), -EAGAIN);
	/* Prefetch: half. */
	for (int i = 0; i < 8; i++)
		assert_int_equal(diskq_acquire(b, DISKQ_PREFETCH, UNIT, false), 0);
	assert_int_equal(diskq_acquire(a, DISKQ_PREFETCH, UNIT, false), -EAGAIN);
	/* Faults: the rest of the cap, and no more. */
	for (int i = 0; i < 4; i++)
		assert_int_equal(diskq_acquire(a, DISKQ_FAULT, UNIT, false), 0);
	assert_int_equal(diskq_acquire(b, DISKQ_FAULT, UNIT, false), -EAGAIN);
	diskq_release(a, DISKQ_WRITE, UNIT);
	/* A write ended: a fault's read takes its room, and the cap is full again. */
	assert_int_equal(diskq_acquire(b, DISKQ_FAULT, UNIT, false), 0);
	assert_int_equal(diskq_acquire(b, DISKQ_WRITE, UNIT, false), -EAGAIN);
	for (int i = 0; i < 3; i++)
		diskq_release(a, DISKQ_WRITE, UNIT);
	for (int i = 0; i < 8; i++)
		diskq_release(b, DISKQ_PREFETCH, UNIT);
	for (int i = 0; i < 4; i++)
		diskq_release(a, DISKQ_FAULT, UNIT);
	diskq_release(b, DISKQ_FAULT, UNIT);
	/* Larger than the cap: alone, once nothing is in flight. */
	assert_int_equal(diskq_acquire(a, DISKQ_FAULT, 64 * UNIT, false), 0);
	assert_int_equal(diskq_acquire(b, DISKQ_FAULT, UNIT, false), -EAGAIN);
	diskq_release(a, DISKQ_FAULT, 64 * UNIT);
	assert_int_equal(diskq_acquire(b, DISKQ_WRITE, 64 * UNIT, false), 0);
	diskq_release(b, DISKQ_WRITE, 64 * UNIT);
	diskq_leave(a);
	diskq_leave(b);
	diskq_destroy(q);
}

struct req {
	struct diskq_client *c;
	enum diskq_class cls;
	uint64_t bytes;
	atomic_int *order; /* the grant's place */
	int place;
};

static void *acquire_thread(void *arg)
{
	struct req *r = arg;

	assert_int_equal(diskq_acquire(r->c, r->cls, r->bytes, true), 0);
	r->place = atomic_fetch_add(r->order, 1);
	return NULL;
}

static void wait_waiters(struct diskq *q, unsigned n)
{
	while (diskq_waiters(q) < n)
		usleep(100);
}

/* The cap is full with a fault's read; a write waits, then a fault's read: at the release
 * the read goes first, though it came last. */
static void test_reads_before_writes(void **state)
{
	struct diskq *q;
	struct diskq_client *hold, *heavy, *light;
	atomic_int order = 0;
	struct req w, r;
	pthread_t tw, tr;

	assert_int_equal(diskq_create(8 * UNIT, &q), 0);
	assert_int_equal(diskq_join(q, 100, &hold), 0);
	assert_int_equal(diskq_join(q, 10000, &heavy), 0);
	assert_int_equal(diskq_join(q, 1, &light), 0);
	assert_int_equal(diskq_acquire(hold, DISKQ_FAULT, 8 * UNIT, false), 0);
	w = (struct req){heavy, DISKQ_WRITE, UNIT, &order, -1};
	r = (struct req){light, DISKQ_FAULT, 8 * UNIT, &order, -1};
	pthread_create(&tw, NULL, acquire_thread, &w);
	wait_waiters(q, 1);
	pthread_create(&tr, NULL, acquire_thread, &r);
	wait_waiters(q, 2);
	diskq_release(hold, DISKQ_FAULT, 8 * UNIT);
	pthread_join(tr, NULL);
	assert_int_equal(r.place, 0);
	/* The read holds the whole cap: the write waits for it. */
	usleep(1000);
	assert_int_equal(atomic_load(&order), 1);
	diskq_release(light, DISKQ_FAULT, 8 * UNIT);
	pthread_join(tw, NULL);
	assert_int_equal(w.place, 1);
	diskq_release(heavy, DISKQ_WRITE, UNIT);
	/* A write held by its class's cap does not hold up a read. */
	assert_int_equal(diskq_acquire(hold, DISKQ_WRITE, 2 * UNIT, false), 0);
	w = (struct req){heavy, DISKQ_WRITE, UNIT, &order, -1};
	pthread_create(&tw, NULL, acquire_thread, &w);
	wait_waiters(q, 1);
	assert_int_equal(diskq_acquire(light, DISKQ_FAULT, UNIT, false), 0);
	diskq_release(light, DISKQ_FAULT, UNIT);
	diskq_release(hold, DISKQ_WRITE, 2 * UNIT);
	pthread_join(tw, NULL);
	diskq_release(heavy, DISKQ_WRITE, UNIT);
	diskq_leave(hold);
	diskq_leave(heavy);
	diskq_leave(light);
	diskq_destroy(q);
}

struct looper {
	struct diskq_client *c;
	enum diskq_class cls;
	atomic_bool *stop;
	atomic_uint_fast64_t *inflight;
	uint64_t cap, grants;
	bool over;
};

/* Acquires, holds a moment, releases, until told to stop; notes any moment past the cap. */
static void *loop_thread(void *arg)
{
	struct looper *l = arg;

	while (!atomic_load(l->stop)) {
		uint64_t now;

		assert_int_equal(diskq_acquire(l->c, l->cls, UNIT, true), 0);
		now = atomic_fetch_add(l->inflight, UNIT) + UNIT;
		if (now > l->cap)
			l->over = true;
		l->grants++;
		for (volatile int i = 0; i < 2000; i++)
			;
		atomic_fetch_sub(l->inflight, UNIT);
		diskq_release(l->c, l->cls, UNIT);
	}
	return NULL;
}

/* Runs n backlogged loopers of the given weights and classes until total grants are done. */
static void run_loopers(struct diskq *q, int n, const uint32_t *weight, const enum diskq_class *cls,
			uint64_t cap, uint64_t total, uint64_t *grants)
{
	struct looper l[8];
	pthread_t t[8];
	atomic_bool stop = false;
	atomic_uint_fast64_t inflight = 0;
	uint64_t sum;

	for (int i = 0; i < n; i++) {
		l[i] = (struct looper){
		    .cls = cls[i], .stop = &stop, .inflight = &inflight, .cap = cap};
		assert_int_equal(diskq_join(q, weight[i], &l[i].c), 0);
		pthread_create(&t[i], NULL, loop_thread, &l[i]);
	}
	/* total grants, and one at least for each (on a loaded host a thread may not have run
	 * yet when the others are done), for at most 20 s */
	for (int ms = 0; ms < 20000; ms++) {
		bool each = true;

		usleep(1000);
		sum = 0;
		for (int i = 0; i < n; i++) {
			uint64_t g = __atomic_load_n(&l[i].grants, __ATOMIC_RELAXED);

			sum += g;
			each &= g > 0;
		}
		if (sum >= total && each)
			break;
	}
	atomic_store(&stop, true);
	for (int i = 0; i < n; i++) {
		pthread_join(t[i], NULL);
		assert_false(l[i].over);
		grants[i] = l[i].grants;
		diskq_leave(l[i].c);
	}
}

/* Two clients of weights wa and wb, each with exactly one request waiting at every step
 * (a thread per request; the grant of one is released only once its client's next request
 * waits), one I/O at a time: steps grants in all, *ga and *gb each's. Deterministic: the
 * order depends on the tags alone, not on how the threads are scheduled. Before, the first
 * client is granted warm times on its own while the second is idle. */
static void backlogged(uint32_t wa, uint32_t wb, int warm, int steps, int *ga, int *gb)
{
	struct diskq *q;
	struct diskq_client *c[2], *hold;
	atomic_int order = 0;
	struct req r[2];
	pthread_t t[2];
	int got[2] = {0, 0};

	assert_int_equal(diskq_create(UNIT, &q), 0);
	assert_int_equal(diskq_join(q, wa, &c[0]), 0);
	assert_int_equal(diskq_join(q, wb, &c[1]), 0);
	assert_int_equal(diskq_join(q, 100, &hold), 0);
	for (int i = 0; i < warm; i++) {
		assert_int_equal(diskq_acquire(c[0], DISKQ_FAULT, UNIT, false), 0);
		diskq_release(c[0], DISKQ_FAULT, UNIT);
	}
	assert_int_equal(diskq_acquire(hold, DISKQ_FAULT, UNIT, false), 0);
	for (int i = 0; i < 2; i++) {
		r[i] = (struct req){c[i], DISKQ_FAULT, UNIT, &order, -1};
		pthread_create(&t[i], NULL, acquire_thread, &r[i]);
	}
	wait_waiters(q, 2);
	diskq_release(hold, DISKQ_FAULT, UNIT);
	for (int step = 0; step < steps; step++) {
		int win = -1;

		while (win < 0) {
			for (int i = 0; i < 2 && win < 0; i++)
				if (__atomic_load_n(&r[i].place, __ATOMIC_ACQUIRE) == step)
					win = i;
			if (win < 0)
				usleep(50);
		}
		pthread_join(t[win], NULL);
		got[win]++;
		r[win] = (struct req){c[win], DISKQ_FAULT, UNIT, &order, -1};
		pthread_create(&t[win], NULL, acquire_thread, &r[win]);
		wait_waiters(q, 2);
		diskq_release(c[win], DISKQ_FAULT, UNIT);
	}
	/* One more grant is on its way: take it and let the last request go too. */
	for (int k = 0; k < 2; k++) {
		int i = -1;

		while (i < 0) {
			for (int j = 0; j < 2 && i < 0; j++)
				if (__atomic_load_n(&r[j].place, __ATOMIC_ACQUIRE) == steps + k)
					i = j;
			if (i < 0)
				usleep(50);
		}
		pthread_join(t[i], NULL);
		diskq_release(c[i], DISKQ_FAULT, UNIT);
	}
	*ga = got[0];
	*gb = got[1];
	diskq_leave(c[0]);
	diskq_leave(c[1]);
	diskq_leave(hold);
	diskq_destroy(q);
}

/* One I/O at a time: backlogged clients share it by weight. */
static void test_weights(void **state)
{
	int a, b;

	backlogged(100, 300, 0, 400, &a, &b);
	print_message("weights 100:300 got %d:%d grants\n", a, b);
	assert_true(a >= 98 && a <= 102 && a + b == 400);
	backlogged(200, 200, 0, 400, &a, &b);
	print_message("weights 200:200 got %d:%d grants\n", a, b);
	assert_true(a >= 199 && a <= 201);
	backlogged(1, 10000, 0, 400, &a, &b);
	print_message("weights 1:10000 got %d:%d grants\n", a, b);
	assert_true(a <= 2);
}

/* A client idle while another was granted thousands of times comes back at the present:
 * from then on they alternate; it gets no long run on credit saved while idle. */
static void test_no_saved_credit(void **state)
{
	int a, b;

	backlogged(100, 100, 5000, 20, &a, &b);
	print_message("after 5000 grants alone, equal weights got %d:%d\n", a, b);
	assert_true(a >= 9 && a <= 11);
}

/* Six threads of all classes on a cap of 4 units: never past the cap, and every class gets
 * grants. */
static void test_mixed_never_over(void **state)
{
	const enum diskq_class cls[6] = {DISKQ_FAULT,	 DISKQ_FAULT, DISKQ_PREFETCH,
					 DISKQ_PREFETCH, DISKQ_WRITE, DISKQ_WRITE};
	const uint32_t w[6] = {100, 50, 100, 1000, 100, 10000};
	struct diskq *q;
	uint64_t g[6];

	assert_int_equal(diskq_create(4 * UNIT, &q), 0);
	run_loopers(q, 6, w, cls, 4 * UNIT, 20000, g);
	for (int i = 0; i < 6; i++)
		assert_true(g[i] > 0);
	diskq_destroy(q);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_no_cap),
	    cmocka_unit_test(test_caps),
	    cmocka_unit_test(test_reads_before_writes),
	    cmocka_unit_test(test_weights),
	    cmocka_unit_test(test_no_saved_credit),
	    cmocka_unit_test(test_mixed_never_over),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
