/* disktier: the disk tier, a swap file of 4 KiB slots written and read through io_uring.
 *
 * Slot s is the 4096 bytes at file offset s * 4096. Slots are handed out in extents of adjacent
 * slots (a slotmap) so that a run of guest pages moves with one I/O. The tier itself (slots,
 * injection, counters) is thread-safe; I/O goes through a struct disktier_io, one per thread.
 * Every buffer, length and fixed region is 4 KiB aligned. Destroy every disktier_io of a tier
 * before closing the tier. */
#ifndef UFFD_DISKTIER_H
#define UFFD_DISKTIER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct disktier;
struct disktier_io; /* one per thread: its own ring; a ring is not shared between threads */
struct disktier_seg {
	uint64_t slot;
	void *buf;
	uint32_t npages;
}; /* npages at slot <-> buf */

/* Creates (0600) the swap file at path, unlinks it at once (it lives as long as a descriptor
 * of it: no crash leaves guest memory in a named file), sized (sparse) for bytes/4096 slots,
 * opened O_DIRECT. A path that is a symbolic link, has other names or belongs to another uid
 * is refused (-ELOOP, -EMLINK, -EACCES), never truncated; where the file system refuses O_DIRECT (EINVAL: ramfs,
 * tmpfs before Linux 6.6) it falls back to buffered I/O and disktier_direct() says so. Also
 * checks that this process may use io_uring. Returns 0 or -errno (-EINVAL when bytes holds no
 * slot) with err holding one line naming the path. */
int disktier_open(const char *path, uint64_t bytes, struct disktier **out, char *err,
		  size_t errlen);

/* Takes over a swap file a shim handed back after a daemon restart: fd (taken over on success)
 * is the file the tier at path had open (O_DIRECT or not, and its lock, as they were), sized
 * for nslots slots; every slot starts free, to be claimed by the page entries that own one
 * (disktier_claim) before disktier_settle. Returns 0 or -errno with err holding one line. */
int disktier_adopt(int fd, const char *path, uint64_t nslots, struct disktier **out, char *err,
		   size_t errlen);

/* Marks a slot that a page entry owns. Returns 0, -ERANGE or -EEXIST (see slotmap_claim). */
int disktier_claim(struct disktier *d, uint64_t slot);

/* After the claims: gives back the disk space of every slot nobody owns. Cannot fail. */
void disktier_settle(struct disktier *d);

/* The swap file's descriptor, for the shim to keep across daemon restarts. */
int disktier_fd(const struct disktier *d);

/* Closes the tier's descriptor of the swap file (nameless: it is gone with the last one).
 * Accepts NULL. */
void disktier_close(struct disktier *d);

/* Takes up to want adjacent slots: an extent of exactly want when one exists, else the longest
 * free extent. Returns the first slot with *got set, -ENOSPC when none is free, -EINVAL for
 * want == 0. */
int64_t disktier_alloc(struct disktier *d, uint32_t want, uint32_t *got);

/* Returns n slots from first. Cheap enough for the fault path: no system call; the slots wait
 * for disktier_reclaim (or an allocation that finds no room) and only then are they handed out
 * again. Cannot fail. No I/O to these slots may be in flight. Thread-safe. */
void disktier_free(struct disktier *d, uint64_t first, uint32_t n);

/* Makes every slot freed since the last call allocatable again, adjacent ones together, and
 * gives disk space back: an extent of 256 KiB or more is punched, and so is each aligned MiB
 * of the file left wholly free (smaller scattered extents are not: each punch holds the file's
 * inode lock against the faults' reads; a file system without hole punching keeps it all).
 * Call it off the fault path (the evictor does, each round). Returns the slots reclaimed.
 * Cannot fail (a failed punch is counted). */
uint64_t disktier_reclaim(struct disktier *d);

uint64_t disktier_slots(const struct disktier *d);
/* Slots holding data: freed slots count as free at once, though not yet reclaimed. */
uint64_t disktier_used(struct disktier *d);
/* True when the file is opened O_DIRECT, false on the buffered fallback. */
bool disktier_direct(const struct disktier *d);
const char *disktier_path(const struct disktier *d);

/* A ring of depth entries for the calling thread, with the tier's file registered and, when
 * fixed is not NULL, [fixed, fixed+fixed_len) registered as buffers (pieces of at most 1 GiB) so
 * that I/O to or from that memory uses READ_FIXED/WRITE_FIXED; other buffers use plain
 * READ/WRITE. Registration pins and populates the whole region: give it memory the daemon owns
 * (a staging buffer), never a mapping of a memfd whose pages get punched. When registration
 * fails (RLIMIT_MEMLOCK even after trying to lift it for the process), the ring still works
 * with plain READ/WRITE and disktier_io_fixed() says so. Returns 0 or -errno (-EINVAL for
 * depth 0 or an unaligned region; what io_uring_queue_init returns, e.g. -EPERM when
 * kernel.io_uring_disabled forbids it). */
int disktier_io_create(struct disktier *d, void *fixed, size_t fixed_len, unsigned depth,
		       struct disktier_io **out);

/* Tears down the ring. No I/O is in flight between calls. Accepts NULL. */
void disktier_io_destroy(struct disktier_io *io);

/* True when the fixed region asked for is registered. */
bool disktier_io_fixed(const struct disktier_io *io);

/* Who may start I/O when: a ring with a gate asks acquire before each I/O of bytes it starts
 * (write: a write, else a read) and calls release with the same figures once that I/O ended.
 * acquire returns 0 (go on) or, only when wait is false, -EAGAIN (not now): the ring then
 * reaps its own completions first, and asks with wait true once it has nothing in flight, so
 * a ring never waits at the gate while it holds a share of it. */
struct disktier_gate {
	int (*acquire)(void *arg, bool write, uint64_t bytes, bool wait);
	void (*release)(void *arg, bool write, uint64_t bytes);
	void *arg;
};

/* Puts io behind gate (copied; NULL: no gate). Not while I/O of io is in flight. */
void disktier_io_set_gate(struct disktier_io *io, const struct disktier_gate *gate);

/* Writes/reads every segment: up to depth I/Os are in flight at once (all in one batch when
 * nsegs <= depth), segments that follow each other both in the file and in memory move as one
 * I/O (merged; not while fault injection is on), a short transfer is continued, a segment over
 * 1 GiB moves in 1 GiB pieces.
 * After the first failing segment no further segment is started; those in flight complete.
 * Returns 0 when every byte moved, else the first -errno seen (-ENOSPC when the file system is
 * full, -EIO), or -EINVAL, before any I/O, for a segment that is empty, unaligned or outside
 * the file. Never returns before all its I/O completed. */
int disktier_write(struct disktier_io *io, const struct disktier_seg *segs, unsigned nsegs);
int disktier_read(struct disktier_io *io, const struct disktier_seg *segs, unsigned nsegs);

/* Fault injection for tests: spec is "" (none) or comma-separated "OP:N:ERR" with OP
 * read|write (each at most once), N>0 meaning every Nth such segment fails (counted over all
 * rings of the tier from this call on), ERR one of EIO|ENOSPC, e.g.
 * "write:5:ENOSPC,read:3:EIO". An injected failure behaves exactly like a real one (nothing is
 * transferred for that segment). Returns 0, or -EINVAL for a bad spec and leaves the previous
 * injection in place. Thread-safe. */
int disktier_set_injection(struct disktier *d, const char *spec);

/* Counters since open: reads/writes count segments moved completely, read_bytes/write_bytes
 * every byte moved (also the part of a segment that later failed), read_errors/write_errors
 * failed segments (injected or real). */
struct disktier_counters {
	uint64_t reads, writes, read_bytes, write_bytes, read_errors, write_errors;
	uint64_t punch_errors; /* freed slots whose disk space could not be given back */
	uint64_t punches;      /* fallocate calls that gave freed slots' space back */
	uint64_t unpunched;    /* slots freed, waiting for disktier_reclaim */
};
void disktier_get_counters(struct disktier *d, struct disktier_counters *out);

#endif
