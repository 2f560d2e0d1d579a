/* diskq: see diskq.h.
 *
 * Waiters sleep on one condition variable; every release and every grant to a waiter
 * broadcasts, and each waiter checks whether it is now the one to go (the best eligible
 * waiter, and it fits). There are at most a few waiters per VM (its fault thread, its evictor,
 * a release), so the broadcast costs little next to a disk I/O. */
#include "uffd-mgr/diskq.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#define WEIGHT_MAX 10000u
/* Tags are bytes scaled by WEIGHT_MAX / weight: exact for every weight, and 2^64 bytes of tag
 * is centuries of I/O. */

struct waiter {
	struct diskq_client *c;
	enum diskq_class cls;
	uint64_t bytes;
	uint64_t since_ns; /* when it started waiting */
	struct waiter *next;
};

/* A request that has waited this long ranks with the faults' reads: under a steady stream of
 * faults, demotion writes (which make room in the shm tier) and prefetches still go. */
#define AGE_NS (50 * 1000000ull)

struct diskq {
	pthread_mutex_t lock;
	pthread_cond_t cv;
	uint64_t cap, class_cap[DISKQ_NCLASS];
	uint64_t inflight, class_inflight[DISKQ_NCLASS];
	uint64_t vtime[DISKQ_NCLASS]; /* the start tag of the last grant in the class */
	struct waiter *waiters;	      /* in arrival order */
};

struct diskq_client {
	struct diskq *q;
	uint32_t weight;
	uint64_t finish[DISKQ_NCLASS]; /* finish tag of its last grant in each class */
	struct diskq_stats st;
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int diskq_create(uint64_t inflight, struct diskq **out)
{
	struct diskq *q = calloc(1, sizeof(*q));

	if (!q)
		return -ENOMEM;
	pthread_mutex_init(&q->lock, NULL);
	{
		pthread_condattr_t a;

		pthread_condattr_init(&a);
		pthread_condattr_setclock(&a, CLOCK_MONOTONIC); /* wait_turn's timed waits */
		pthread_cond_init(&q->cv, &a);
		pthread_condattr_destroy(&a);
	}
	q->cap = inflight ? inflight : UINT64_MAX;
	q->class_cap[DISKQ_FAULT] = q->cap;
	q->class_cap[DISKQ_PREFETCH] = inflight ? inflight / 2 : UINT64_MAX;
	q->class_cap[DISKQ_WRITE] = inflight ? inflight / 4 : UINT64_MAX;
	*out = q;
	return 0;
}

void diskq_destroy(struct diskq *q)
{
	if (!q)
		return;
	pthread_cond_destroy(&q->cv);
	pthread_mutex_destroy(&q->lock);
	free(q);
}

int diskq_join(struct diskq *q, uint32_t weight, struct diskq_client **out)
{
	struct diskq_client *c = calloc(1, sizeof(*c));

	if (!c)
		return -ENOMEM;
	c->q = q;
	c->weight = weight < 1 ? 1 : weight > WEIGHT_MAX ? WEIGHT_MAX : weight;
	*out = c;
	return 0;
}

void diskq_leave(struct diskq_client *c)
{
	free(c);
}

uint64_t diskq_inflight_cap(const struct diskq *q)
{
	return q->cap == UINT64_MAX ? 0 : q->cap;
}

/* The start tag a request of c in cls would get now. Lock held. */
static uint64_t start_tag(const struct diskq *q, const struct diskq_client *c, enum diskq_class cls)
{
	return c->finish[cls] > q->vtime[cls] ? c->finish[cls] : q->vtime[cls];
}

/* Whether a request of cls may go as far as its class's cap is concerned: a class with nothing
 * in flight always may (a request larger than the cap still goes, alone). Lock held. */
static bool class_room(const struct diskq *q, enum diskq_class cls, uint64_t bytes)
{
	return !q->class_inflight[cls] || q->class_inflight[cls] + bytes <= q->class_cap[cls];
}

/* Whether it fits under the daemon's cap: always when nothing is in flight. Lock held. */
static bool fits(const struct diskq *q, enum diskq_class cls, uint64_t bytes)
{
	return !q->inflight || (q->inflight + bytes <= q->cap && class_room(q, cls, bytes));
}

/* The rank a request goes in: a prefetch or write that has waited AGE_NS goes in RANK_AGED
 * (ahead of the faults, in arrival order among them), else in its class (faults, aged or
 * not, by start tag: their weights hold). */
#define RANK_AGED (-1)
static int rank(const struct waiter *w, uint64_t now)
{
	return w->cls != DISKQ_FAULT && now - w->since_ns > AGE_NS ? RANK_AGED : (int)w->cls;
}

/* Whether waiter w goes before request (c, cls) ranked rc: a lower rank first; among the
 * aged, the one that came first; within a class, the lower start tag, then the one that came
 * first (earlier says whether w is ahead in the list). A strict order: with aged requests
 * ranked as faults but ordered against them by arrival, and faults among themselves by tag,
 * three waiters could each find another before them and none would ever go (seen in
 * many_vms.sh under load: 60 waiters, nothing in flight, for minutes). */
static bool goes_before(const struct diskq *q, const struct waiter *w, const struct diskq_client *c,
			enum diskq_class cls, int rc, bool earlier, uint64_t now)
{
	int rw = rank(w, now);
	uint64_t tw, tc;

	if (rw != rc)
		return rw < rc;
	if (rw == RANK_AGED)
		return earlier;
	tw = start_tag(q, w->c, w->cls);
	tc = start_tag(q, c, cls);
	return tw < tc || (tw == tc && earlier);
}

/* Whether (c, cls, bytes) may go now: it fits, and no waiter that its class's cap lets go
 * comes before it. me is the request's own waiter, NULL for one that does not wait (it comes
 * after every waiter). A waiter held only by its own class's cap does not hold up the others
 * (a fault's read never waits for a write's turn). Lock held. */
static bool my_turn(const struct diskq *q, const struct diskq_client *c, enum diskq_class cls,
		    uint64_t bytes, const struct waiter *me)
{
	bool earlier = true; /* until the walk passes me */
	uint64_t now = q->waiters ? now_ns() : 0;
	int rc = me ? rank(me, now) : (int)cls;

	if (!fits(q, cls, bytes))
		return false;
	for (const struct waiter *w = q->waiters; w; w = w->next) {
		if (w == me) {
			earlier = false;
			continue;
		}
		if (class_room(q, w->cls, w->bytes) && goes_before(q, w, c, cls, rc, earlier, now))
			return false;
	}
	return true;
}

/* Books a grant. Lock held. */
static void grant(struct diskq *q, struct diskq_client *c, enum diskq_class cls, uint64_t bytes)
{
	uint64_t start = start_tag(q, c, cls);

	q->vtime[cls] = start;
	c->finish[cls] = start + bytes * (WEIGHT_MAX / c->weight);
	q->inflight += bytes;
	q->class_inflight[cls] += bytes;
	c->st.grants[cls]++;
	c->st.bytes[cls] += bytes;
}

static void unlink_waiter(struct diskq *q, struct waiter *me)
{
	for (struct waiter **pp = &q->waiters; *pp; pp = &(*pp)->next) {
		if (*pp == me) {
			*pp = me->next;
			return;
		}
	}
}

/* Queues me at the end and sleeps until it is my turn. Lock held. */
static void wait_turn(struct diskq *q, struct waiter *me)
{
	struct waiter **pp = &q->waiters;
	uint64_t t0 = now_ns(), waited;
	struct diskq_stats *st = &me->c->st;

	while (*pp)
		pp = &(*pp)->next;
	me->since_ns = t0;
	*pp = me;
	/* Timed: a waiter's rank changes with age alone, with no release to wake it. */
	while (!my_turn(q, me->c, me->cls, me->bytes, me)) {
		struct timespec until;

		clock_gettime(CLOCK_MONOTONIC, &until);
		until.tv_nsec += 10 * 1000000L;
		if (until.tv_nsec >= 1000000000L) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&q->cv, &q->lock, &until);
	}
	unlink_waiter(q, me);
	waited = now_ns() - t0;
	st->waits[me->cls]++;
	st->wait_ns[me->cls] += waited;
	if (waited > st->wait_max_ns[me->cls])
		st->wait_max_ns[me->cls] = waited;
}

int diskq_acquire(struct diskq_client *c, enum diskq_class cls, uint64_t bytes, bool wait)
{
	struct diskq *q = c->q;
	int r = 0;

	pthread_mutex_lock(&q->lock);
	if (!my_turn(q, c, cls, bytes, NULL)) {
		struct waiter me = {.c = c, .cls = cls, .bytes = bytes};

		if (!wait) {
			r = -EAGAIN;
			goto out;
		}
		wait_turn(q, &me);
	}
	grant(q, c, cls, bytes);
	/* The next waiter may fit too. */
	if (q->waiters)
		pthread_cond_broadcast(&q->cv);
out:
	pthread_mutex_unlock(&q->lock);
	return r;
}

void diskq_release(struct diskq_client *c, enum diskq_class cls, uint64_t bytes)
{
	struct diskq *q = c->q;

	pthread_mutex_lock(&q->lock);
	q->inflight -= bytes < q->inflight ? bytes : q->inflight;
	q->class_inflight[cls] -= bytes < q->class_inflight[cls] ? bytes : q->class_inflight[cls];
	if (q->waiters)
		pthread_cond_broadcast(&q->cv);
	pthread_mutex_unlock(&q->lock);
}

void diskq_get_stats(struct diskq_client *c, struct diskq_stats *out)
{
	pthread_mutex_lock(&c->q->lock);
	*out = c->st;
	pthread_mutex_unlock(&c->q->lock);
}

unsigned diskq_waiters(struct diskq *q)
{
	unsigned n = 0;

	pthread_mutex_lock(&q->lock);
	for (const struct waiter *w = q->waiters; w; w = w->next)
		n++;
	pthread_mutex_unlock(&q->lock);
	return n;
}
