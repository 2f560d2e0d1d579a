/* gmem: see gmem.h. */
#include "bench/gmem.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define WORDS (GMEM_PAGE / 8)

static uint64_t mix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

int gmem_map(struct gmem *g, size_t bytes, bool anon)
{
	int flags = anon ? MAP_PRIVATE | MAP_ANONYMOUS : MAP_SHARED;
	void *p;

	*g = (struct gmem){.fd = -1, .npages = bytes / GMEM_PAGE};
	if (!anon) {
		/* The shim recognises guest RAM by this exact memfd name. */
		g->fd = memfd_create("memory-backend-memfd", MFD_CLOEXEC | MFD_ALLOW_SEALING);
		if (g->fd < 0 || ftruncate(g->fd, (off_t)bytes) < 0)
			goto fail;
		/* Sealed as QEMU seals it; uffd-mgrd refuses an unsealed guest memfd. */
		if (fcntl(g->fd, F_ADD_SEALS, F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL) < 0)
			goto fail;
	}
	p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, flags, g->fd, 0);
	if (p == MAP_FAILED)
		goto fail;
	/* 4 KiB pages throughout: uffd-mgrd serves 4 KiB pages, and a transparent huge page would
	 * turn the baselines' 512 first touches into one fault and 511 plain accesses. */
	madvise(p, bytes, MADV_NOHUGEPAGE);
	g->base = p;
	return 0;
fail:
	if (g->fd >= 0)
		close(g->fd);
	g->fd = -1;
	return -errno;
}

void gmem_unmap(struct gmem *g)
{
	if (g->base)
		munmap(g->base, g->npages * GMEM_PAGE);
	if (g->fd >= 0)
		close(g->fd);
	g->base = NULL;
	g->fd = -1;
}

void gmem_fill_page(struct gmem *g, size_t page)
{
	uint64_t *w = (uint64_t *)(g->base + page * GMEM_PAGE);

	memset(w, 0xa5, GMEM_PAGE);
	w[0] = mix(page);
	w[WORDS - 1] = mix(page) ^ 1;
}

bool gmem_check_page(const uint8_t *p, size_t page)
{
	const volatile uint64_t *w = (const volatile uint64_t *)p;

	return w[0] == mix(page) && w[WORDS - 1] == (mix(page) ^ 1);
}

size_t gmem_resident(struct gmem *g, uint8_t *vec)
{
	size_t n = 0;

	if (mincore(g->base, g->npages * GMEM_PAGE, vec) < 0)
		return 0;
	for (size_t i = 0; i < g->npages; i++) {
		vec[i] &= 1;
		n += vec[i];
	}
	return n;
}

static void sleep_ms(long ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};

	nanosleep(&ts, NULL);
}

int gmem_settle(struct gmem *g, size_t max_pages, double timeout_s)
{
	uint8_t *vec = malloc(g->npages);
	uint64_t end = gmem_now_ns() + (uint64_t)(timeout_s * 1e9);
	size_t last = (size_t)-1;
	int still = 0, r = -ETIMEDOUT;

	if (!vec)
		return -ENOMEM;
	while (gmem_now_ns() < end) {
		size_t n = gmem_resident(g, vec);

		still = (n == last) ? still + 1 : 0;
		last = n;
		if (n <= max_pages && still >= 5) {
			r = 0;
			break;
		}
		sleep_ms(20);
	}
	free(vec);
	return r;
}

/* Discards pages [first, first+n) as QEMU does: the punch frees the memfd's pages, and the
 * madvise raises UFFD_EVENT_REMOVE, which returns only once the daemon has read it. */
static void discard_span(struct gmem *g, size_t first, size_t n)
{
	if (g->fd >= 0)
		fallocate(g->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
			  (off_t)(first * GMEM_PAGE), (off_t)(n * GMEM_PAGE));
	madvise(g->base + first * GMEM_PAGE, n * GMEM_PAGE, MADV_DONTNEED);
}

size_t gmem_discard(struct gmem *g, const uint8_t *vec, size_t want)
{
	size_t done = 0, i = 0;

	while (i < g->npages && done < want) {
		size_t j = i;

		if (!vec[i]) {
			i++;
			continue;
		}
		while (j < g->npages && vec[j] && done + (j - i) < want)
			j++;
		discard_span(g, i, j - i);
		done += j - i;
		i = j;
	}
	return done;
}

int gmem_pin(int cpu)
{
	cpu_set_t set;

	if (cpu < 0)
		return 0;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	return sched_setaffinity(0, sizeof(set), &set) ? -errno : 0;
}

uint64_t gmem_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void gmem_shuffle(size_t *a, size_t n, uint64_t seed)
{
	for (size_t i = n; i > 1; i--) {
		size_t j = (size_t)(mix(seed + i) % i), t = a[i - 1];

		a[i - 1] = a[j];
		a[j] = t;
	}
}

void gmem_iota(size_t *a, size_t n)
{
	for (size_t i = 0; i < n; i++)
		a[i] = i;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

double gmem_pct(double *v, size_t n, double pct)
{
	size_t rank;

	if (!n)
		return 0;
	qsort(v, n, sizeof(*v), cmp_double);
	rank = (size_t)(pct / 100.0 * (double)n + 0.999999);
	return v[rank ? rank - 1 : 0];
}

double gmem_mean(const double *v, size_t n)
{
	double s = 0;

	for (size_t i = 0; i < n; i++)
		s += v[i];
	return n ? s / (double)n : 0;
}

int gmem_sync(const char *dir)
{
	char path[4096];
	struct stat sb;
	int fd;

	if (!dir)
		return 0;
	snprintf(path, sizeof(path), "%s/ready", dir);
	fd = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	close(fd);
	snprintf(path, sizeof(path), "%s/go", dir);
	for (int i = 0; i < 30000; i++) { /* 5 minutes: the script may have died */
		if (stat(path, &sb) == 0)
			return 0;
		sleep_ms(10);
	}
	return -ETIMEDOUT;
}
