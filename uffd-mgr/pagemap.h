/* pagemap: where each 4 KiB page of one guest RAM region lives, and a clock over runs.
 *
 * Not thread-safe: the owner (the VM) serialises access with its own lock. A run is an
 * aligned group of run_pages pages, the unit of eviction.
 *
 * THE LIFE OF A PAGE. One entry per page: a home (state), flags, and the slot in that home's
 * tier. The entries live in the VM's state memfd (vmstate.h) and outlive the daemon; every
 * change below is one 64-bit store, so a daemon killed at any instant leaves each entry in a
 * row of this table. "M" is the guest memfd's page: data or hole.
 *
 *   from                    to                      who, when
 *   NONE/ZERO               RESIDENT                fault: UFFDIO_ZEROPAGE done (or EEXIST)
 *   NONE, no flag           RESIDENT                fault on a neighbour (first-touch block):
 *                                                   one UFFDIO_ZEROPAGE over the block's pages
 *                                                   that are NONE with no flag, and only those
 *                                                   (never RESIDENT, tiered, in flight or ZERO:
 *                                                   a discarded page is ZERO, not NONE)
 *   SHM/DISK                RESIDENT                fault, prefetch, release: UFFDIO_COPY done,
 *                                                   then the slots are freed
 *   SHM, no flag            RESIDENT                read-ahead, prefetch batch: UFFDIO_COPY with
 *                                                   no wake (one wake per batch), slots freed;
 *                                                   a page found present (EEXIST) is the
 *                                                   guest's: RESIDENT, its slot freed unread;
 *                                                   a batch off the fault thread holds
 *                                                   vm.h's event_lock: it never installs
 *                                                   between a REMOVE read and applied
 *   DISK                    DISK+EVICTING           fault, prefetch (many spans in one batch),
 *                                                   release: disk read in flight (lock dropped)
 *   DISK+EVICTING           DISK                    the read failed: retried by a fault later
 *   RESIDENT                RESIDENT+EVICTING       evictor: chosen; then M is write-protected
 *   RESIDENT+EVICTING       SHM+EVICTING / ZERO+EV. evictor: copied to a slot (or all zero),
 *                                                   recorded BEFORE M is punched
 *   SHM/ZERO+EVICTING       SHM / ZERO              evictor commit, after the punch
 *   SHM/ZERO+EVICTING       RESIDENT                evictor commit, the punch failed
 *   SHM                     SHM+EVICTING            demoter: chosen, staged, written to disk
 *   SHM+EVICTING            DISK / SHM              demoter commit: write done / failed
 *   any +EVICTING           +DISCARDED              REMOVE during a move: zero at the commit
 *   SHM/DISK                ZERO                    REMOVE (discard): slots freed
 *  With [shm] compress (a compressed shm tier, PS_ZSHM; see below for its slot field):
 *   RESIDENT+EVICTING       ZSHM+EVICTING / ZERO+EV evictor: the run's non-zero pages stored as
 *                                                   blobs of up to 16 pages, each entry naming
 *                                                   its blob, recorded BEFORE M is punched;
 *                                                   zero pages as above
 *   ZSHM+EVICTING           ZSHM / ZERO / RESIDENT  evictor commit, as for SHM
 *   ZSHM                    RESIDENT                fault, prefetch, release: the blob unpacked
 *                                                   and every page that names it installed (the
 *                                                   faulting page first, then one UFFDIO_COPY
 *                                                   per span), the blob freed last
 *   ZSHM                    ZSHM+EVICTING           demoter: chosen, unpacked into the stage,
 *                                                   written to disk as plain pages
 *   ZSHM+EVICTING           DISK / ZSHM             demoter commit: write done / failed
 *   ZSHM                    ZERO                    REMOVE (discard)
 *  A blob is freed (its grains punched) only once no entry names it: after the last of its
 *  pages has its new home and its flags, whichever transition moved it.
 *   RESIDENT, M a hole      ZERO                    REMOVE after QEMU punched M
 *   RESIDENT, M data        RESIDENT, not evictable REMOVE not the tracker's (a discard's first
 *                           for a while (vm.h,      madvise: its punch may follow); M is looked
 *                           struct vm_discard)      at under the lock, so that no batch fills it
 *                                                   between the look and the change
 *   RESIDENT                RESIDENT+ARMING         tracker: PTE being dropped; the flag is
 *                                                   lifted once the arming has ended (track.c,
 *                                                   end_arming), not by a REMOVE
 *   RESIDENT                RESIDENT+PREFETCHED     prefetch, until seen used or evicted
 *
 * Within a transition the order of stores is part of the contract: the new home is written
 * first, the flags cleared next, and a slot is freed (its memory punched; a disk slot's punch
 * is deferred to the evictor, and the slot is not reused before it) only once no entry
 * names it; a page leaves guest RAM only after its tier copy is recorded, and comes back into
 * guest RAM before its entry stops naming the slot.
 *
 * ADOPTION (pagemap_reconcile), when a new daemon takes over a VM whose daemon died:
 *   M holds data                      -> RESIDENT; a tier copy is dropped. M is what the guest
 *                                        sees (only holes fault), and M never holds bytes older
 *                                        than a tier copy: copies are taken from M under
 *                                        write-protection and M is punched only after.
 *   M a hole, +DISCARDED              -> ZERO: the guest discarded it.
 *   M a hole, SHM/DISK/ZSHM           -> kept: the tier holds the only copy (the punch came
 *                                        after the home was recorded).
 *   M a hole, RESIDENT/ZERO           -> ZERO (a discard, or a zero page evicted).
 *   M a hole, NONE                    -> NONE.
 *   every flag                        -> cleared; the whole range is unprotected and woken;
 *                                        but PF_ARMING stays on a RESIDENT page while the shim
 *                                        still carries out the dead daemon's arming: its
 *                                        REMOVEs are yet to come, and a page evicted before
 *                                        its REMOVE would be taken for discarded. The fault
 *                                        thread lifts what is left once that arming ends.
 * Slots owned by no entry afterwards (copies made but never recorded, a demotion's disk write)
 * are free; so are grains of the compressed tier no kept PS_ZSHM entry names. Every blob an
 * entry names is checked (within the pool, header and algorithm agreeing, the page's index
 * within the blob's pages) and claimed once, by all the entries of its run that name it; an
 * entry of another run naming a claimed blob means the entries are damaged.
 *
 * THE SLOT FIELD (56 bits): for PS_SHM a 4 KiB slot of the shm pool, for PS_DISK a 4 KiB slot of
 * the swap file, for PS_ZSHM a zpool reference (shmswap/zpool.h): the blob's first 256-byte
 * grain (32 bits), its length in grains less one (13), the page's index among the blob's pages
 * (9) and the algorithm (2: raw, lz4, zstd); the blob's exact compressed length is in its
 * header, in the pool. Every page of one blob lies in one run. */
#ifndef UFFD_PAGEMAP_H
#define UFFD_PAGEMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PAGE_SIZE_4K 4096u

enum page_state {
	PS_NONE = 0, /* never touched: zero, nowhere */
	PS_RESIDENT, /* in the guest memfd */
	PS_ZERO,     /* known zero (evicted zero page or discarded), nowhere */
	PS_SHM,	     /* in a shm tier slot */
	PS_DISK,     /* in a disk tier slot */
	PS_ZSHM,     /* in a blob of the compressed shm tier ([shm] compress) */
	PS_NSTATES
};

/* Flags on a page, orthogonal to its state. */
#define PF_EVICTING  0x1 /* being moved to another tier (evicted or demoted): faults wait */
#define PF_DISCARDED 0x2 /* discarded (REMOVE) while evicting: becomes zero at commit */
/* PF_ARMING: the tracker is dropping the page's table entry; not evictable until the whole
 * arming has ended and every REMOVE it raised has been applied (track.c, end_arming lifts it;
 * a REMOVE does not, since it may be a discard's with the arming's own still to come). PF_PREFETCHED: brought back by the planner ahead of
 * faults and not seen used yet. */
#define PF_ARMING     0x4
#define PF_PREFETCHED 0x8

struct pagemap;

/* Creates a map of npages pages, all PS_NONE, in runs of run_pages (a power of two).
 * Returns 0 or -ENOMEM / -EINVAL. */
int pagemap_create(size_t npages, uint32_t run_pages, struct pagemap **out);

/* Builds a map over npages entries the caller keeps (a VM's state memfd, which outlives the
 * daemon), deriving every other field from them; the entries are not freed with the map.
 * Returns 0, -EUCLEAN when an entry holds no valid state, -EINVAL or -ENOMEM. */
int pagemap_attach(uint64_t *ent, size_t npages, uint32_t run_pages, struct pagemap **out);

/* Settles the entries a dead daemon left, before pagemap_attach, by the adoption table above.
 * in_memfd is a bitmap: bit p set when page p holds data in the guest memfd; keep_arming: the
 * shim still runs an arming. Returns the number of entries changed. Cannot fail. */
size_t pagemap_reconcile(uint64_t *ent, size_t npages, const uint64_t *in_memfd,
			 bool keep_arming);

/* Bytes of entry storage a map of npages pages needs (pagemap_attach). */
static inline size_t pagemap_entry_bytes(size_t npages)
{
	return npages * sizeof(uint64_t);
}

void pagemap_destroy(struct pagemap *pm);

size_t pagemap_npages(const struct pagemap *pm);
uint32_t pagemap_run_pages(const struct pagemap *pm);
/* Resident pages of the run holding page (0 past the end). O(1). */
size_t pagemap_run_resident(const struct pagemap *pm, size_t page);
enum page_state pagemap_state(const struct pagemap *pm, size_t page);
uint64_t pagemap_slot(const struct pagemap *pm, size_t page);
unsigned pagemap_flags(const struct pagemap *pm, size_t page);
void pagemap_set_flags(struct pagemap *pm, size_t page, unsigned flags);

/* Moves a page to a state (slot is kept only for tier states). Keeps the per-state counts
 * and the per-run resident counts. Cannot fail. */
void pagemap_set(struct pagemap *pm, size_t page, enum page_state st, uint64_t slot);

/* Pages currently in a state. O(1). */
size_t pagemap_count(const struct pagemap *pm, enum page_state st);

/* Marks the run holding page as recently faulted in (the clock's reference bit), and seen
 * in the current epoch. */
void pagemap_touch(struct pagemap *pm, size_t page);

/* The tracker's clock: epoch e is its e-th observation (0 = never seen). Runs record the
 * last epoch any of their pages was seen in. */
void pagemap_set_epoch(struct pagemap *pm, uint32_t epoch);
uint32_t pagemap_epoch(const struct pagemap *pm);
void pagemap_mark_seen(struct pagemap *pm, size_t page);
uint32_t pagemap_run_seen(const struct pagemap *pm, size_t page);

/* The picks below read queues kept in order as pages change state, not the whole map: each
 * costs O(log r) for r runs in its queue, and a run's queues are updated in O(log r) when it
 * starts or stops holding pages of a state, starts or stops having pages in flight, or is
 * first seen in an epoch. Runs with a page in flight (PF_EVICTING or PF_ARMING) are in no
 * queue, and are back where their age puts them once the last such flag clears. */

/* Picks a victim run by age: the run last seen longest ago; among runs of one age, the one
 * that went round a pick (or came back into RAM) longest ago, then the lowest address. The
 * run picked goes behind its peers, so a run that is not evicted after all does not come
 * round again first. Skips runs with no resident page or a page in flight. Returns 0 with
 * *first_page set, or -ENOENT when no run qualifies. */
int pagemap_age_pick(struct pagemap *pm, size_t *first_page);

/* Picks the next victim run with the clock, over the same queue as pagemap_age_pick (its head
 * is the hand): skips (and clears) runs referenced since they were last passed, sending them
 * behind their peers. Without a tracker every run has the same age, so this is a clock over
 * the resident runs in the order they came into RAM or were last passed. At most two sweeps
 * of the resident runs. Returns 0 with *first_page set, or -ENOENT when no run qualifies. */
int pagemap_clock_pick(struct pagemap *pm, size_t *first_page);

/* Picks the next run with pages in the shm tier and none in flight, for demotion to disk, in
 * the victims' order: the run last seen longest ago, then the one picked (evicted) longest
 * ago; the run picked goes behind its peers. Returns 0 with *first_page set, or -ENOENT. */
int pagemap_demote_pick(struct pagemap *pm, size_t *first_page);

/* The run with tiered pages (shm or disk) and none in flight that was seen most recently
 * (the lowest address among equals): the prefetcher's next. O(1). Returns 0 with
 * *first_page set, or -ENOENT. */
int pagemap_hot_tiered_pick(const struct pagemap *pm, size_t *first_page);

/* Runs that hold at least one page in state st (resident, shm or disk; 0 for the others;
 * PS_SHM and PS_ZSHM both count the runs with shm pages of either form). O(1). */
size_t pagemap_runs_with(const struct pagemap *pm, enum page_state st);

/* For tests and benchmarks only: the runs visited so far by picks and by the upkeep of their
 * queues (one per run looked at or heap level moved). */
size_t pagemap_debug_steps(const struct pagemap *pm);

/* The longest span around page, inside its run, of pages in state st, not in flight, whose
 * slots are consecutive (slot of first + i). Sets *first and *count. page must be in state st. */
void pagemap_tier_span(const struct pagemap *pm, size_t page, enum page_state st, size_t *first,
		       size_t *count);

#endif
