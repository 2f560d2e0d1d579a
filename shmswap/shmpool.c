/* shmpool: see shmpool.h. Slots are handed out by a slotmap; memory lives in a memfd. */
#include "shmswap/shmpool.h"

#include <errno.h>
#include <fcntl.h>
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
	uint64_t nslots;
	struct slotmap *slots;
};

static int map_pool(struct shmpool *p)
{
	p->base = mmap(NULL, p->nslots * SLOT_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED,
		       p->fd, 0);
	if (p->base == MAP_FAILED)
		return -errno;
	/* Guest pages have no place in the daemon's core dumps. */
	madvise(p->base, p->nslots * SLOT_SIZE, MADV_DONTDUMP);
	return 0;
}

/* A pool of nslots free slots, not mapped yet, on fd (-1: none yet). NULL when out of memory. */
static struct shmpool *pool_new(uint64_t nslots, int fd)
{
	struct shmpool *p = calloc(1, sizeof(*p));

	if (!p)
		return NULL;
	p->fd = fd;
	p->base = MAP_FAILED;
	p->nslots = nslots;
	if (slotmap_create(nslots, &p->slots)) {
		free(p);
		return NULL;
	}
	return p;
}

int shmpool_create(const char *name, uint64_t bytes, struct shmpool **out)
{
	struct shmpool *p;
	int err;

	if (bytes < SLOT_SIZE)
		return -EINVAL;
	p = pool_new(bytes / SLOT_SIZE, -1);
	if (!p)
		return -ENOMEM;
	p->fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (p->fd < 0 || ftruncate(p->fd, (off_t)(p->nslots * SLOT_SIZE)) < 0 ||
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
	struct shmpool *p;
	struct stat sb;
	int seals = fcntl(fd, F_GET_SEALS), err;

	if (!nslots || seals < 0 || (seals & (F_SEAL_SHRINK | F_SEAL_GROW)) !=
					(F_SEAL_SHRINK | F_SEAL_GROW) ||
	    fstat(fd, &sb) < 0 || (uint64_t)sb.st_size != nslots * SLOT_SIZE)
		return -EINVAL;
	p = pool_new(nslots, fd);
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

static void punch_free(uint64_t first, uint64_t n, void *arg)
{
	struct shmpool *p = arg;

	fallocate(p->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)(first * SLOT_SIZE),
		  (off_t)(n * SLOT_SIZE));
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
		munmap(p->base, p->nslots * SLOT_SIZE);
	if (p->fd >= 0)
		close(p->fd);
	slotmap_destroy(p->slots);
	free(p);
}

int64_t shmpool_alloc(struct shmpool *p, uint32_t want, uint32_t *got)
{
	return slotmap_alloc(p->slots, want, got);
}

void shmpool_free(struct shmpool *p, uint64_t first, uint32_t n)
{
	/* Release the memory before the slots can be reused: a punch after reuse would destroy
	 * the new contents. */
	fallocate(p->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)(first * SLOT_SIZE),
		  (off_t)n * SLOT_SIZE);
	slotmap_free(p->slots, first, n);
}

void *shmpool_addr(struct shmpool *p, uint64_t slot)
{
	return p->base + slot * SLOT_SIZE;
}

uint64_t shmpool_slots(const struct shmpool *p)
{
	return p->nslots;
}

uint64_t shmpool_used(struct shmpool *p)
{
	return slotmap_used(p->slots);
}
