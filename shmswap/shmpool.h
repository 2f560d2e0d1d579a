/* shmpool: the shared-memory tier, a pool of 4 KiB slots in its own memfd.
 *
 * Slots are handed out in extents of adjacent slots so that a run of guest pages is stored
 * contiguously and comes back with one UFFDIO_COPY. Freed slots give their memory back to
 * the host (hole punch). Thread-safe: the evictor allocates while fault threads free. */
#ifndef UFFD_SHMPOOL_H
#define UFFD_SHMPOOL_H

#include <stddef.h>
#include <stdint.h>

struct shmpool;

/* Creates a pool of bytes/4096 slots in a memfd called name. Returns 0 or -errno
 * (-EINVAL when bytes holds no slot). */
int shmpool_create(const char *name, uint64_t bytes, struct shmpool **out);

/* Unmaps and closes the pool; its contents are gone. Accepts NULL. */
void shmpool_destroy(struct shmpool *pool);

/* Allocates up to want adjacent slots: an extent of exactly want when one exists, else the
 * longest free extent. Returns the first slot with *got set, or -ENOSPC when the pool is full. */
int64_t shmpool_alloc(struct shmpool *pool, uint32_t want, uint32_t *got);

/* Frees n slots from first and releases their memory. Cannot fail. */
void shmpool_free(struct shmpool *pool, uint64_t first, uint32_t n);

/* The pool's mapping of a slot: 4096 bytes, valid while the slot is allocated. */
void *shmpool_addr(struct shmpool *pool, uint64_t slot);

uint64_t shmpool_slots(const struct shmpool *pool);
uint64_t shmpool_used(struct shmpool *pool);

#endif
