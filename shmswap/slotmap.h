/* slotmap: an allocator of numbered slots in extents of adjacent slots, shared by the tiers
 * (a run of guest pages is stored in adjacent slots so that it moves with one copy or one
 * I/O). A bitmap searched next-fit from a cursor. Thread-safe. */
#ifndef UFFD_SLOTMAP_H
#define UFFD_SLOTMAP_H

#include <stdbool.h>
#include <stdint.h>

struct slotmap;

/* Creates a map of nslots free slots. Returns 0, -EINVAL (no slot) or -ENOMEM. */
int slotmap_create(uint64_t nslots, struct slotmap **out);
void slotmap_destroy(struct slotmap *m);

/* Takes up to want adjacent slots: an extent of exactly want when one exists, else the
 * longest free extent. Returns the first slot with *got set, or -ENOSPC when none is free. */
int64_t slotmap_alloc(struct slotmap *m, uint32_t want, uint32_t *got);

/* Returns n slots from first. Cannot fail. */
void slotmap_free(struct slotmap *m, uint64_t first, uint32_t n);

/* Marks one slot taken, as a daemon adopting a VM rebuilds the map from the page entries that
 * own slots. Returns 0, -ERANGE past the map, -EEXIST when the slot is taken already (two pages
 * would share it: the entries are damaged). */
int slotmap_claim(struct slotmap *m, uint64_t slot);

/* Whether every slot of [first, first + n) is free. */
bool slotmap_is_free(struct slotmap *m, uint64_t first, uint64_t n);

/* Calls fn(first, n, arg) for each extent of free slots, in order. Not for concurrent use. */
void slotmap_each_free(struct slotmap *m, void (*fn)(uint64_t first, uint64_t n, void *arg),
		       void *arg);

uint64_t slotmap_slots(const struct slotmap *m);
uint64_t slotmap_used(struct slotmap *m);

#endif
