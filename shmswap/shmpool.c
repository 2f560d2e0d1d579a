/* shmpool: see shmpool.h. Slots are handed out by a slotmap; memory lives in a memfd. */
#include "shmswap/shmpool.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "shmswap/slotmap.h"

#define SLOT_SIZE 4096u
/* QEMU holds the pool's fd across daemon restarts: it must not be able to shrink it under the
 * daemon's mapping (SIGBUS). Punching holes stays allowed. */
#define SEALS (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL)

struct shmpool {
	int fd;
	uint8_t *base;
	uint64_t npages; /* of the memfd */
	uint64_t nslots; /* units */
	uint32_t unit;	 /* bytes of a unit: SLOT_SIZE, or a grain */
	unsigned per_page;
	struct slotmap *slots;
	/* Grained pools: held over allocations and over a free's check-and-punch of the pages it
	 * leaves empty, so that nothing is allocated in a page while it is punched. */
	pthread_mutex_t lock;
};

static int map_pool(struct shmpool *p)
{
	p->base = mmap(NULL, p->npages * SLOT_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED,
		       p->fd, 0);
	if (p->base == MAP_FAILED)
		return -errno;
	/* Guest pages have no place in the daemon's core dumps. */
	madvise(p->base, p->npages * SLOT_SIZE, MADV_DONTDUMP);
	return 0;
}

static bool unit_ok(uint32_t unit)
{
	return unit >= 64 && unit <= SLOT_SIZE && !(unit & (unit - 1));
}

/* A pool of npages pages cut into free units, not mapped yet, on fd (-1: none yet). NULL
 * when out of memory. */
static struct shmpool *pool_new(uint64_t npages, uint32_t unit, int fd)
{
	struct shmpool *p = calloc(1, sizeof(*p));

	if (!p)
		return NULL;
	p->fd = fd;
	p->base = MAP_FAILED;
	p->npages = npages;
	p->unit = unit;
	p->per_page = SLOT_SIZE / unit;
	p->nslots = npages * p->per_page;
	pthread_mutex_init(&p->lock, NULL);
	if (slotmap_create(p->nslots, &p->slots)) {
		pthread_mutex_destroy(&p->lock);
		free(p);
		return NULL;
	}
	return p;
}

int shmpool_create(const char *name, uint64_t bytes, struct shmpool **out)
{
	return shmpool_create_unit(name, bytes, SLOT_SIZE, out);
}

int shmpool_create_unit(const char *name, uint64_t bytes, uint32_t unit, struct shmpool **out)
{
	struct shmpool *p;
	int err;

	if (bytes < SLOT_SIZE || !unit_ok(unit))
		return -EINVAL;
	p = pool_new(bytes / SLOT_SIZE, unit, -1);
	if (!p)
		return -ENOMEM;
	p->fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (p->fd < 0 || ftruncate(p->fd, (off_t)(p->npages * SLOT_SIZE)) < 0 ||
	    fcntl(p->fd, F_ADD_SEALS, SEALS) < 0)
		goto fail_errno;
	err = map_pool(p);
	if (err)
		goto fail;
	*out = p;
	return 0;
fail_errno:
	err = -errno;
fail:
	shmpool_destroy(p);
	return err;
}

int shmpool_adopt(int fd, uint64_t nslots, struct shmpool **out)
{
	return shmpool_adopt_unit(fd, nslots, SLOT_SIZE, out);
}

int shmpool_adopt_unit(int fd, uint64_t nslots, uint32_t unit, struct shmpool **out)
{
	struct shmpool *p;
	struct stat sb;
	int seals = fcntl(fd, F_GET_SEALS), err;

	if (!nslots || !unit_ok(unit) || seals < 0 ||
	    (seals & (F_SEAL_SHRINK | F_SEAL_GROW)) != (F_SEAL_SHRINK | F_SEAL_GROW) ||
	    fstat(fd, &sb) < 0 || (uint64_t)sb.st_size != nslots * SLOT_SIZE)
		return -EINVAL;
	p = pool_new(nslots, unit, fd);
	if (!p)
		return -ENOMEM;
	err = map_pool(p);
	if (err) {
		p->fd = -1; /* still the caller's */
		shmpool_destroy(p);
		return err;
	}
	*out = p;
	return 0;
}

int shmpool_claim(struct shmpool *p, uint64_t slot)
{
	return slotmap_claim(p->slots, slot);
}

/* Gives back the memory of the whole pages among units [first, first + n). */
static void punch_units(struct shmpool *p, uint64_t first, uint64_t n)
{
	uint64_t lo = (first + p->per_page - 1) / p->per_page, hi = (first + n) / p->per_page;

	if (hi > lo)
		fallocate(p->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
			  (off_t)(lo * SLOT_SIZE), (off_t)((hi - lo) * SLOT_SIZE));
}

static void punch_free(uint64_t first, uint64_t n, void *arg)
{
	punch_units(arg, first, n);
}

void shmpool_settle(struct shmpool *p)
{
	slotmap_each_free(p->slots, punch_free, p);
}

int shmpool_fd(const struct shmpool *p)
{
	return p->fd;
}

void shmpool_destroy(struct shmpool *p)
{
	if (!p)
		return;
	if (p->base != MAP_FAILED)
		munmap(p->base, p->npages * SLOT_SIZE);
	if (p->fd >= 0)
		close(p->fd);
	slotmap_destroy(p->slots);
	pthread_mutex_destroy(&p->lock);
	free(p);
}

int64_t shmpool_alloc(struct shmpool *p, uint32_t want, uint32_t *got)
{
	int64_t s;

	if (p->unit == SLOT_SIZE)
		return slotmap_alloc(p->slots, want, got);
	pthread_mutex_lock(&p->lock);
	s = slotmap_alloc(p->slots, want, got);
	pthread_mutex_unlock(&p->lock);
	return s;
}

/* A grained pool's free: the pages wholly inside the range are punched before their units
 * can be reused, as for slots; a page the range shares with other units is punched once it
 * is empty, still under the lock that keeps allocations out of it. */
static void free_units(struct shmpool *p, uint64_t first, uint32_t n)
{
	uint64_t edge[2] = {first / p->per_page, (first + n - 1) / p->per_page};

	pthread_mutex_lock(&p->lock);
	punch_units(p, first, n);
	slotmap_free(p->slots, first, n);
	for (int i = 0; i < 2; i++) {
		if (i && edge[1] == edge[0])
			break;
		if (slotmap_is_free(p->slots, edge[i] * p->per_page, p->per_page))
			punch_units(p, edge[i] * p->per_page, p->per_page);
	}
	pthread_mutex_unlock(&p->lock);
}

void shmpool_free(struct shmpool *p, uint64_t first, uint32_t n)
{
	if (!n)
		return;
	if (p->unit != SLOT_SIZE) {
		free_units(p, first, n);
		return;
	}
	/* Release the memory before the slots can be reused: a punch after reuse would destroy
	 * the new contents. */
	fallocate(p->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)(first * SLOT_SIZE),
		  (off_t)n * SLOT_SIZE);
	slotmap_free(p->slots, first, n);
}

void *shmpool_addr(struct shmpool *p, uint64_t slot)
{
	return p->base + slot * p->unit;
}

uint32_t shmpool_unit(const struct shmpool *p)
{
	return p->unit;
}

uint64_t shmpool_slots(const struct shmpool *p)
{
	return p->nslots;
}

uint64_t shmpool_used(struct shmpool *p)
{
	return slotmap_used(p->slots);
}
