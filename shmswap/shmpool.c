/* shmpool: see shmpool.h. Slots are handed out by a slotmap; memory lives in a memfd. */
#include "shmswap/shmpool.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "shmswap/slotmap.h"

#define SLOT_SIZE 4096u

struct shmpool {
	int fd;
	uint8_t *base;
	uint64_t nslots;
	struct slotmap *slots;
};

int shmpool_create(const char *name, uint64_t bytes, struct shmpool **out)
{
	struct shmpool *p;
	int err;

	if (bytes < SLOT_SIZE)
		return -EINVAL;
	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->fd = -1;
	p->base = MAP_FAILED;
	p->nslots = bytes / SLOT_SIZE;
	err = slotmap_create(p->nslots, &p->slots);
	if (err)
		goto fail;
	p->fd = memfd_create(name, MFD_CLOEXEC);
	if (p->fd < 0 || ftruncate(p->fd, (off_t)(p->nslots * SLOT_SIZE)) < 0)
		goto fail_errno;
	p->base = mmap(NULL, p->nslots * SLOT_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, p->fd, 0);
	if (p->base == MAP_FAILED)
		goto fail_errno;
	*out = p;
	return 0;
fail_errno:
	err = -errno;
fail:
	shmpool_destroy(p);
	return err;
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
