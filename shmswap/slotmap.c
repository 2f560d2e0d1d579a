/* slotmap: see slotmap.h. */
#include "shmswap/slotmap.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

struct slotmap {
	uint64_t nslots;
	uint64_t used;
	uint64_t cursor;
	uint64_t *bits;
	pthread_mutex_t lock;
};

static int bit_get(const uint64_t *bits, uint64_t i)
{
	return (bits[i / 64] >> (i % 64)) & 1;
}

static void bits_set(uint64_t *bits, uint64_t first, uint64_t n, int on)
{
	for (uint64_t i = first; i < first + n; i++) {
		if (on)
			bits[i / 64] |= 1ull << (i % 64);
		else
			bits[i / 64] &= ~(1ull << (i % 64));
	}
}

int slotmap_create(uint64_t nslots, struct slotmap **out)
{
	struct slotmap *m;

	if (!nslots)
		return -EINVAL;
	m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	m->nslots = nslots;
	m->bits = calloc((nslots + 63) / 64, sizeof(uint64_t));
	if (!m->bits) {
		free(m);
		return -ENOMEM;
	}
	pthread_mutex_init(&m->lock, NULL);
	*out = m;
	return 0;
}

void slotmap_destroy(struct slotmap *m)
{
	if (!m)
		return;
	pthread_mutex_destroy(&m->lock);
	free(m->bits);
	free(m);
}

/* Length of the free extent starting at i, capped at cap. */
static uint64_t free_len(const struct slotmap *p, uint64_t i, uint64_t cap)
{
	uint64_t n = 0;

	while (i + n < p->nslots && n < cap && !bit_get(p->bits, i + n))
		n++;
	return n;
}

/* Skips whole used words quickly; returns the next free slot at or after i, or nslots. */
static uint64_t next_free(const struct slotmap *p, uint64_t i)
{
	while (i < p->nslots) {
		if ((i % 64) == 0 && p->bits[i / 64] == ~0ull) {
			i += 64;
			continue;
		}
		if (!bit_get(p->bits, i))
			return i;
		i++;
	}
	return p->nslots;
}

int64_t slotmap_alloc(struct slotmap *p, uint32_t want, uint32_t *got)
{
	uint64_t best = 0, best_len = 0, scanned = 0, i;

	if (!want)
		return -EINVAL;
	pthread_mutex_lock(&p->lock);
	i = p->cursor;
	while (scanned < p->nslots && p->used < p->nslots) {
		uint64_t f = next_free(p, i), len;

		if (f >= p->nslots) { /* wrap around to the start */
			scanned += p->nslots - i;
			i = 0;
			continue;
		}
		scanned += f - i;
		len = free_len(p, f, want);
		if (len > best_len) {
			best = f;
			best_len = len;
		}
		if (len == want)
			break;
		scanned += len;
		i = f + len;
	}
	if (!best_len) {
		pthread_mutex_unlock(&p->lock);
		return -ENOSPC;
	}
	bits_set(p->bits, best, best_len, 1);
	p->used += best_len;
	p->cursor = best + best_len;
	if (p->cursor >= p->nslots)
		p->cursor = 0;
	pthread_mutex_unlock(&p->lock);
	*got = (uint32_t)best_len;
	return (int64_t)best;
}

void slotmap_free(struct slotmap *m, uint64_t first, uint32_t n)
{
	pthread_mutex_lock(&m->lock);
	bits_set(m->bits, first, n, 0);
	m->used -= n;
	pthread_mutex_unlock(&m->lock);
}

int slotmap_claim(struct slotmap *m, uint64_t slot)
{
	int r = 0;

	if (slot >= m->nslots)
		return -ERANGE;
	pthread_mutex_lock(&m->lock);
	if (bit_get(m->bits, slot))
		r = -EEXIST;
	else {
		bits_set(m->bits, slot, 1, 1);
		m->used++;
	}
	pthread_mutex_unlock(&m->lock);
	return r;
}

bool slotmap_is_free(struct slotmap *m, uint64_t first, uint64_t n)
{
	bool all;

	if (first > m->nslots || n > m->nslots - first)
		return false;
	pthread_mutex_lock(&m->lock);
	all = free_len(m, first, n) == n;
	pthread_mutex_unlock(&m->lock);
	return all;
}

void slotmap_each_free(struct slotmap *m, void (*fn)(uint64_t first, uint64_t n, void *arg),
		       void *arg)
{
	for (uint64_t i = next_free(m, 0); i < m->nslots; i = next_free(m, i)) {
		uint64_t n = free_len(m, i, m->nslots);

		fn(i, n, arg);
		i += n;
	}
}

uint64_t slotmap_slots(const struct slotmap *m)
{
	return m->nslots;
}

uint64_t slotmap_used(struct slotmap *m)
{
	uint64_t u;

	pthread_mutex_lock(&m->lock);
	u = m->used;
	pthread_mutex_unlock(&m->lock);
	return u;
}
