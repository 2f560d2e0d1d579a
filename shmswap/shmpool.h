/* shmpool: the shared-memory tier, a pool of 4 KiB slots in its own memfd.
 *
 * Slots are handed out in extents of adjacent slots so that a run of guest pages is stored
 * contiguously and comes back with one UFFDIO_COPY. Freed slots give their memory back to
 * the host (hole punch). Thread-safe: the evictor allocates while fault threads free.
 *
 * A pool can instead be cut into smaller units (grains, for the compressed tier: zpool.h).
 * Every count and number below is then in units, not slots; a page of the memfd is punched
 * once every unit in it is free, under the pool's lock, so that no allocation can land in a
 * page while it is being punched. */
#ifndef UFFD_SHMPOOL_H
#define UFFD_SHMPOOL_H

#include <stddef.h>
#include <stdint.h>

struct shmpool;

/* Creates a pool of bytes/4096 slots in a memfd called name. Returns 0 or -errno
 * (-EINVAL when bytes holds no slot). */
int shmpool_create(const char *name, uint64_t bytes, struct shmpool **out);

/* As shmpool_create, the pool cut into units of unit bytes (a power of two, 64 to 4096).
 * Returns 0 or -errno (-EINVAL for a bad unit). */
int shmpool_create_unit(const char *name, uint64_t bytes, uint32_t unit, struct shmpool **out);

/* Takes over a pool a shim handed back after a daemon restart: fd (taken over on success) is
 * the pool memfd of nslots slots, sealed against resizing; every slot starts free, to be
 * claimed by the page entries that own one (shmpool_claim) before shmpool_settle. Returns 0 or
 * -errno (-EINVAL: not a sealed memfd of that size). */
int shmpool_adopt(int fd, uint64_t nslots, struct shmpool **out);

/* As shmpool_adopt for a pool of nslots 4 KiB pages cut into units of unit bytes. */
int shmpool_adopt_unit(int fd, uint64_t nslots, uint32_t unit, struct shmpool **out);

/* Marks a slot that a page entry owns. Returns 0, -ERANGE or -EEXIST (see slotmap_claim). */
int shmpool_claim(struct shmpool *pool, uint64_t slot);

/* After the claims: releases the memory of every slot nobody owns (a copy the dead daemon made
 * but never recorded). Cannot fail. */
void shmpool_settle(struct shmpool *pool);

/* The pool's memfd, for the shim to keep across daemon restarts. */
int shmpool_fd(const struct shmpool *pool);

/* Unmaps and closes the pool; its contents are gone. Accepts NULL. */
void shmpool_destroy(struct shmpool *pool);

/* Allocates up to want adjacent slots: an extent of exactly want when one exists, else the
 * longest free extent. Returns the first slot with *got set, or -ENOSPC when the pool is full. */
int64_t shmpool_alloc(struct shmpool *pool, uint32_t want, uint32_t *got);

/* Frees n slots from first and releases their memory. Cannot fail. */
void shmpool_free(struct shmpool *pool, uint64_t first, uint32_t n);

/* The pool's mapping of a slot: 4096 bytes (a unit), valid while the slot is allocated. */
void *shmpool_addr(struct shmpool *pool, uint64_t slot);

/* Slots (units) in the pool, and in use. */
uint64_t shmpool_slots(const struct shmpool *pool);
uint64_t shmpool_used(struct shmpool *pool);

/* Bytes of a slot (unit): 4096 unless cut into smaller units. */
uint32_t shmpool_unit(const struct shmpool *pool);

#endif
