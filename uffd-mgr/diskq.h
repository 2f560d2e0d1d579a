/* diskq: the daemon's disk scheduler, one per daemon, shared by the disk-tier I/O of every VM.
 *
 * Each VM keeps its own swap file and its own rings (one per thread, disktier.h); what they
 * share is the device under the files. diskq decides who may start an I/O next: it holds the
 * bytes in flight on all the daemon's rings under a cap, so that the device's queue stays short
 * and a fault's read never finds megabytes of other VMs' writes queued ahead of it, and when
 * the cap is reached it orders the waiting requests:
 *   1. by class: a fault's read, then a prefetch's or a release's read, then a demotion write,
 *      each class also capped (prefetch at half the cap, writes at a quarter), so a fault's
 *      read always finds room soon, whatever the background I/O; a prefetch or write that
 *      has waited 50 ms goes ahead of the faults (the aged in arrival order), so a steady
 *      stream of faults cannot starve the demotion writes that make room in the shm tier;
 *   2. within a class, by weighted fair queueing over bytes (start-time fair queueing: a
 *      VM's next request is tagged max(class virtual time, the VM's last finish tag), its
 *      finish tag adds bytes / weight; the lowest tag goes first), so each VM gets a share of
 *      the class's bytes in proportion to its weight, and a VM that was idle comes back at the
 *      present, with no credit saved up.
 * A request is never split: one larger than the whole cap goes alone once nothing is in
 * flight. The scheduler holds no I/O itself: the ring's thread starts it once granted
 * (disktier_gate), and releases its bytes when the I/O ends. Thread-safe.
 *
 * Why here, and in this form:
 *  - Not in the kernel: the block layer's own fairness (io.weight, io.latency, BFQ, ioprio)
 *    works per cgroup or per task, and every VM's I/O here comes from one daemon's threads;
 *    it cannot tell a fault's read from a demotion write of the same VM either.
 *  - Not one shared ring or I/O thread for all VMs: the fault thread would then hand its read
 *    to another thread and be woken back (tens of µs across CPUs, DESIGN.md), and one stuck
 *    VM's ring would stall the others. Each thread keeps its own ring and does its own I/O;
 *    only the decision "may I start now" is shared, one mutex and a few compares per I/O.
 *  - Start-time fair queueing rather than deficit round robin: the waiters are threads that
 *    each hold at most one request, so there are no per-VM queues to visit in rounds; a tag
 *    per VM and class gives the same shares by bytes, with no quantum to tune.
 *  - Caps by bytes, not requests: a 2 MiB run and a 4 KiB page cost the device very
 *    differently; the default cap is set from measurements (uffd-mgrd --disk-inflight). */
#ifndef UFFD_DISKQ_H
#define UFFD_DISKQ_H

#include <stdbool.h>
#include <stdint.h>

struct diskq;
struct diskq_client; /* one per VM */

enum diskq_class { DISKQ_FAULT, DISKQ_PREFETCH, DISKQ_WRITE, DISKQ_NCLASS };

/* Per client, since it joined. */
struct diskq_stats {
	uint64_t grants[DISKQ_NCLASS], bytes[DISKQ_NCLASS];
	uint64_t waits[DISKQ_NCLASS];	/* requests that had to wait for their turn */
	uint64_t wait_ns[DISKQ_NCLASS]; /* their time waiting, in all */
	uint64_t wait_max_ns[DISKQ_NCLASS];
};

/* A scheduler letting at most inflight bytes be in flight at once (0: no cap, every request
 * goes at once). Returns 0 or -ENOMEM. */
int diskq_create(uint64_t inflight, struct diskq **out);

/* Accepts NULL. Every client must have left. */
void diskq_destroy(struct diskq *q);

/* A new client of weight (1..10000; out of range is clamped). Returns 0 or -ENOMEM. */
int diskq_join(struct diskq *q, uint32_t weight, struct diskq_client **out);

/* The client leaves; nothing of it may be in flight or waiting. Accepts NULL. */
void diskq_leave(struct diskq_client *c);

/* Asks to start an I/O of bytes in class cls. Returns 0 when granted (release it later with
 * the same figures); with wait false, -EAGAIN when it is not its turn now; with wait true it
 * waits for its turn and returns 0. A caller with I/O of its own in flight must not wait (its
 * own release may be what the turn needs): ask with wait false, reap, then wait. */
int diskq_acquire(struct diskq_client *c, enum diskq_class cls, uint64_t bytes, bool wait);

/* An I/O granted by diskq_acquire ended. Cannot fail. */
void diskq_release(struct diskq_client *c, enum diskq_class cls, uint64_t bytes);

/* Copies the client's counters. Cannot fail. */
void diskq_get_stats(struct diskq_client *c, struct diskq_stats *out);

/* Requests waiting for their turn now. */
unsigned diskq_waiters(struct diskq *q);

/* The cap it was created with. */
uint64_t diskq_inflight_cap(const struct diskq *q);

#endif
