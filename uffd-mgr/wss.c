/* wss: see wss.h. */
#include "uffd-mgr/wss.h"

#include <errno.h>
#include <stdlib.h>

struct wss {
	size_t npages;
	uint32_t *last_seen;
	double est[WSS_HISTORY]; /* ring of sampled estimates */
	unsigned nest, head;
};

int wss_create(size_t npages, struct wss **out)
{
	struct wss *w = calloc(1, sizeof(*w));

	if (!w)
		return -ENOMEM;
	w->npages = npages;
	w->last_seen = calloc(npages ? npages : 1, sizeof(*w->last_seen));
	if (!w->last_seen) {
		free(w);
		return -ENOMEM;
	}
	*out = w;
	return 0;
}

void wss_destroy(struct wss *w)
{
	if (!w)
		return;
	free(w->last_seen);
	free(w);
}

void wss_mark(struct wss *w, size_t page, uint32_t epoch)
{
	if (page < w->npages && w->last_seen[page] < epoch)
		w->last_seen[page] = epoch;
}

size_t wss_mark_bits(struct wss *w, const uint64_t *bits, uint32_t epoch)
{
	size_t n = 0;

	for (size_t word = 0; word * 64 < w->npages; word++) {
		uint64_t b = bits[word];

		while (b) {
			size_t page = word * 64 + (size_t)__builtin_ctzll(b);

			b &= b - 1;
			if (page < w->npages) {
				wss_mark(w, page, epoch);
				n++;
			}
		}
	}
	return n;
}

uint32_t wss_last_seen(const struct wss *w, size_t page)
{
	return page < w->npages ? w->last_seen[page] : 0;
}

size_t wss_seen_since(const struct wss *w, uint32_t since)
{
	size_t n = 0;

	if (!since)
		since = 1; /* 0 means never seen */
	for (size_t p = 0; p < w->npages; p++)
		n += w->last_seen[p] >= since;
	return n;
}

size_t wss_seen_in(const struct wss *w, size_t first, size_t n, uint32_t epoch)
{
	size_t seen = 0;

	for (size_t p = first; p < first + n && p < w->npages; p++)
		seen += w->last_seen[p] == epoch;
	return seen;
}

void wss_push_estimate(struct wss *w, double est)
{
	w->est[w->head] = est;
	w->head = (w->head + 1) % WSS_HISTORY;
	if (w->nest < WSS_HISTORY)
		w->nest++;
}

double wss_sample_end(struct wss *w, size_t observed, size_t accessed, size_t population,
		      size_t outside)
{
	double est = (double)outside;

	if (observed)
		est += (double)accessed / (double)observed * (double)population;
	wss_push_estimate(w, est);
	return est;
}

double wss_sample_window(const struct wss *w, unsigned window)
{
	double sum = 0;
	unsigned n = window < w->nest ? window : w->nest;

	for (unsigned i = 0; i < n; i++)
		sum += w->est[(w->head + WSS_HISTORY - 1 - i) % WSS_HISTORY];
	return n ? sum / n : 0;
}

unsigned wss_age_bucket(uint32_t seen, uint32_t now)
{
	uint32_t age;
	unsigned b = 1;

	if (!seen)
		return WSS_AGE_BUCKETS - 1;
	age = now > seen ? now - seen : 0;
	if (!age)
		return 0;
	while (b < WSS_AGE_BUCKETS - 2 && age >= (1u << b))
		b++;
	return b;
}
