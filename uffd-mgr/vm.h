/* vm: one managed guest: its RAM region, page map, shm tier, fault thread and evictor.
 *
 * Locking: vm->lock guards the page map, the counters and the histogram. The fault thread
 * serves faults with the lock held (the ioctls are short); the evictor holds it only for
 * state changes and does its copies and hole punches without it. */
#ifndef UFFD_VM_H
#define UFFD_VM_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "shmswap/disktier.h"
#include "shmswap/shmpool.h"
#include "shmswap/zpool.h"
#include "uffd-mgr/diskq.h"
#include "uffd-mgr/hist.h"
#include "uffd-mgr/pagemap.h"
#include "uffd-mgr/policy.h"
#include "uffd-mgr/vmstate.h"
#include "predictor/predict.h"
#include "uffd-mgr/wss.h"

struct tracker;
struct qmp;
struct disk_batch;

/* What the planner decided for a VM and what came of it (plan.c). Figures in bytes. */
struct vm_plan_stats {
	bool active; /* the VM takes part (its tracker has a full window) */
	uint64_t demand, critical, share, balloon_target, balloon_actual;
	double confidence;
	uint64_t emergencies;       /* emergency re-plans this VM caused */
	const char *last_emergency; /* static string */
	uint64_t prefetched_pages, prefetch_used, prefetch_unused;
	uint64_t guest_free, guest_available; /* from the balloon's guest stats; 0 = none */
};

/* The planner's own per-VM state; only the control loop touches it. */
struct vm_plan {
	struct pred_state pred;
	bool pred_ready;
	struct qmp *qmp;
	char qmp_path[108];
	char balloon_qom[128]; /* the guest's virtio-balloon (qmp_find_balloon), "" before QMP */
	bool stats_only;       /* QMP for the guest's statistics, never the balloon: the first
				* of several RAM backends (one guest, one balloon) */
	uint64_t qmp_retry_ns;
	bool qmp_warned, stats_on;
	uint64_t last_ns, last_tier_pages, last_swap_in, last_majflt;
	bool guest_prev;
	uint64_t balloon_sent;
	struct vm_plan_stats ps; /* lock */
};

struct vm_stats {
	uint64_t faults_zero;	   /* never-touched or known-zero pages served by ZEROPAGE */
	uint64_t faults_shm;	   /* faults served from the shm tier */
	uint64_t faults_shm_pages; /* pages those faults brought back */
	uint64_t faults_discarded; /* a page we held resident was a hole: discarded by QEMU */
	uint64_t faults_wp;	   /* write-protect faults */
	uint64_t faults_dup;	   /* already present: only woken */
	uint64_t faults_parked;	   /* times a fault had to wait for an eviction in flight */
	uint64_t faults_throttled; /* times a fault waited for the evictor to make room */
	uint64_t fault_errors;
	uint64_t removes, removed_pages;
	uint64_t evict_runs, evict_pages, evict_zero_pages, evict_aborts;
	uint64_t tier_full_events;
	uint64_t faults_disk;	    /* faults served from the disk tier */
	uint64_t faults_disk_pages; /* pages those faults brought back */
	uint64_t disk_read_errors;  /* failed reads: the fault was retried, never served wrong */
	uint64_t demote_runs, demote_pages; /* shm tier -> disk tier */
	uint64_t demote_errors;		    /* failed writes: the pages stayed in the shm tier */
	uint64_t disk_full_events;
	struct hist fault_ns;  /* time from reading a fault to serving it */
	uint64_t bring_back_pages;  /* brought back not for a fault: prefetch, release */
	uint64_t faults_minor; /* sampled pages touched again (uffd minor faults) */
	uint64_t faults_enomem;	       /* retries after ENOMEM: host memory pressure */
	uint64_t faults_stalled;       /* faults that waited past [fault] stall_warn */
	uint64_t fault_max_wait_ns;    /* longest a fault has waited, served or not */
	uint64_t fault_thread_restarts; /* the fault thread stopped and was started again */
	uint64_t evict_wp_errors;      /* protection not lifted after an eviction (writers woken) */
	/* [shm] compress (zshm.c): blobs stored compressed, and raw (incompressible); the pages
	 * they took and the pool bytes they took; blobs found damaged. */
	uint64_t zshm_blobs, zshm_raw_blobs, zshm_pages, zshm_bytes, zshm_errors;
};

/* Paging done ahead of faults (fault.c): first-touch blocks, read-ahead, proactive batches.
 * Under vm->lock; counted from this daemon's start (not kept in the state). */
struct vm_ahead_stats {
	uint64_t first_touch_blocks; /* first touches that filled a block */
	uint64_t first_touch_pages;  /* untouched pages filled beside the faulting one */
	uint64_t readahead_batches;  /* sequential tier faults that read runs ahead */
	uint64_t readahead_pages;    /* pages those brought back */
	uint64_t batch_copies;	     /* proactive batches: UFFDIO_COPY calls ... */
	uint64_t batch_pages;	     /* ... and the pages they installed */
	uint64_t batch_kept;	     /* pages a batch found present (the guest's own): kept */
	uint64_t follow_moves;	     /* times the fault thread moved to its faulter's CPU */
};

/* The fault thread's own state for read-ahead and placement (fault.c); no lock: only the
 * fault thread touches it. */
#define VM_FOLLOW_CPUS 64 /* CPUs placement counts faults on; faulters past them are not followed */
struct vm_fault_local {
	size_t ra_last_run, ra_next_run; /* the last tier fault's run; the run after the window */
	size_t ra_window;		 /* runs read ahead last time; 0: closed */
	pid_t follow_tid;		 /* the thread whose CPU was last looked up */
	int follow_tid_cpu;		 /* its CPU then; -1: unknown */
	uint64_t follow_looked_ns;
	int follow_cpu;			 /* where the fault thread is pinned; -1: nowhere */
	unsigned follow_seen;		 /* faults counted in this window */
	uint16_t follow_votes[VM_FOLLOW_CPUS];
	uint64_t last_served_ns;	 /* busy-poll only while the VM faults hard */
};

/* A discard as the shim makes it is madvise, punch, madvise (qemu-glue/shim.c). A page still
 * holding data at the first REMOVE must not be evicted before the punch: a tier copy made in
 * between could be brought back (by a batch, or a fault on a neighbour) after the punch, and
 * the second REMOVE would find data, not a hole. So the first REMOVE's range is kept here for
 * a while, and the evictor leaves its pages alone (fault.c records, evict.c reads). */
#define VM_DISCARD_RING	   16
#define VM_DISCARD_HOLD_NS (200 * 1000000ull)
struct vm_discard {
	size_t first, end; /* pages [first, end) */
	uint64_t until_ns;
};

/* What the working-set tracker measured (uffd-mgr/track.c); under vm->lock. */
struct vm_track_stats {
	uint32_t epoch;			     /* observations so far */
	uint64_t wss_pages[3];		     /* over the last track_windows[] intervals */
	uint64_t age_pages[WSS_AGE_BUCKETS]; /* pages in use by age in intervals (wss.h) */
	uint64_t idle_pages;		     /* in use and not seen for 60 intervals, or never */
	uint64_t armed_pages;		     /* observed in the last interval */
	uint64_t arm_rounds, arm_errors, arm_ranges;
	uint64_t arm_ns; /* time the last arming took in QEMU */
	uint64_t regions; /* adaptive regions (ebpf mode's default), 0 in the other modes */
};

struct vm {
	char name[POLICY_NAME_MAX];
	pid_t pid;
	int pidfd;
	int ctl_sock; /* the shim's connection; owned by the control loop */
	struct policy pol;
	int uffd, memfd;
	uint64_t host_addr, length, memfd_offset;
	/* run_size: the run being evicted, as vm_read_guest read it. The daemon has no mapping
	 * of guest RAM: a read through one fills a hole QEMU has just discarded (shmem allocates
	 * on a read fault), and the guest can then write there unseen by the uffd, until our
	 * punch destroys it. A pread of a hole reads zeros and allocates nothing. */
	uint8_t *evict_src;
	struct pagemap *pm;
	struct shmpool *shm;
	struct zpool *z;			 /* [shm] compress: shm holds blobs; NULL: slots */
	uint8_t *zscratch;			 /* run_size: the demoter's unpacked blob */
	struct disktier *disk;			 /* NULL: no disk tier */
	struct disktier_io *fault_io, *evict_io; /* each used by one thread only */
	struct diskq_client *dq;		 /* the daemon's disk scheduler; NULL: none */
	/* What each ring's reads count as at the scheduler: the fault ring's are a fault's
	 * (DISKQ_FAULT) but while the fault thread reads ahead (fault thread only); the other
	 * rings' are background reads (DISKQ_PREFETCH). */
	struct vm_gate {
		struct diskq_client *dq;
		enum diskq_class read_cls;
	} fault_gate, bg_gate;
	uint8_t *fault_bounce, *evict_stage;	 /* registered with the rings */
	size_t fault_bounce_len, evict_stage_len; /* run_size, at least VM_PREFETCH_STAGE */
	struct disk_batch *fault_batch; /* the fault thread's read-ahead; NULL: no disk tier */
	size_t disk_ra_next;		/* fault thread: the run a sequential reader faults next */
	uint32_t disk_ra_runs;		/* fault thread: its read-ahead window, in runs */
	pthread_mutex_t lock;
	/* Held by the fault thread from reading uffd events until it has applied them, and by a
	 * batch of another thread (fault_prefetch_batch) while it installs pages: the kernel
	 * refuses a copy only while an event is unread, and a copy between a discard's REMOVE
	 * read and applied could refill the hole its punch made meanwhile. Taken before lock. */
	pthread_mutex_t event_lock;
	pthread_cond_t evict_cv;
	pthread_t fault_tid, evict_tid;
	bool threads_started;
	volatile bool stopping;
	volatile bool evict_stop; /* the evictor alone stops (release) */
	bool evict_joined;
	int wake_efd; /* evictor -> fault thread: parked faults may go on */
	int stop_efd;
	bool tier_full;		/* the evictor is stopped by a full tier */
	bool demoting;		/* between the shm watermarks, on the way down */
	uint64_t disk_retry_ns; /* after a full disk, no demotion before this time */
	struct vmstate state;	/* the page entries and counters, outliving the daemon */
	struct vm_stats *st;	/* in state: counters go on across daemon restarts */
	struct vm_ahead_stats ahead; /* lock */
	struct vm_fault_local fl;    /* the fault thread's alone */
	struct vm_discard discards[VM_DISCARD_RING]; /* lock */
	unsigned discard_next;			     /* lock */
	bool adopted;		/* taken over from a daemon that died or was upgraded */
	bool wake_pending;	/* adopted: the fault thread has not yet woken the range (lock) */
	bool stale_arming;	/* adopted while the shim ran the dead daemon's arming (lock) */
	bool stale_arming_over; /* ... and that arming has ended: lift its flags (lock) */
	uint64_t started_ns;
	uint64_t uffd_features; /* granted in QEMU's process */

	/* The working-set tracker (track.c). track_mode is POLICY_TRACK_* as it runs, set once
	 * before the threads start. */
	int track_mode;
	char track_why[192]; /* why this mode: the fallback's reason */
	struct tracker *bpf; /* the daemon's BPF tracker (ebpf mode), not owned */
	char backend_id[64]; /* QEMU's id of this RAM backend, "" when the shim did not say */
	uint32_t backend_index; /* which of the guest's backends (0: the first, or only) */
	bool gpa_mapped;     /* control loop: track_map_gpa has run for this VM */
	int bpf_slot;
	struct wss *wss;	   /* lock */
	struct proto_range *armed; /* ranges armed for the current epoch (tracker thread) */
	size_t narmed;
	uint32_t arm_seq;      /* of the last PROTO_ARM sent */
	uint32_t arm_done_seq; /* of the last PROTO_ARM_DONE received (lock) */
	int uffd_reading;      /* the fault thread has read uffd events not yet applied (atomic) */
	int32_t arm_status;
	uint64_t arm_pages;
	pthread_t track_tid;
	bool track_started;
	volatile bool track_stop;
	pthread_cond_t track_cv;
	struct vm_track_stats ts; /* lock */

	/* The planner (plan.c): its state is the control loop's; what it decided is under the
	 * lock, for the evictor, the prefetcher and stats. */
	struct vm_plan plan;
	uint64_t resident_target; /* bytes, the planner's limit; 0 = none (lock) */
	uint64_t prefetch_want;   /* pages the planner wants brought back ahead (lock) */

	/* Supervision (vm_check, vm_supervise). The fault thread clears fault_alive as it
	 * exits, after writing fault_why; the control loop restarts it or stops the VM. */
	atomic_bool fault_alive;
	bool fault_joined;	   /* control loop: fault_tid is joined, not to be joined again */
	char fault_why[128];	   /* why the fault thread last stopped (lock) */
	uint64_t fault_exit_ns;	   /* when (lock) */
	uint64_t fault_restart_ns; /* control loop: when it was last restarted */
	atomic_bool gone;	   /* the guest's memory is gone: uffd errors are expected */
	bool failed;		   /* the VM cannot go on: its QEMU is stopped (lock) */
	char fail_why[256];	   /* why (lock) */
	uint64_t kill_ns;	   /* control loop: SIGKILL due then if QEMU still runs; 0 */
	bool killed;		   /* control loop: SIGKILL sent */
};

/* Bytes of disk reads the evictor's prefetch, and the fault thread's read-ahead, keep in
 * flight at once, at least: the buffers they read into, registered (pinned) with their rings. */
#define VM_PREFETCH_STAGE (1u << 20)

struct proto_register;
struct proto_range;

/* Builds a VM from a registration (taking ownership of uffd and memfd on success). Returns 0
 * or -errno with err holding one line for the client. */
int vm_create(const struct proto_register *req, int uffd, int memfd, const struct policy *pol,
	      struct vm **out, char *err, size_t errlen);

/* Takes over a VM whose daemon died or was upgraded, from what its shim kept: fds are {uffd,
 * guest memfd, state memfd, shm pool memfd[, disk tier file]}. Checks the state against the
 * registration, settles what was in flight (pagemap.h, ADOPTION) and rebuilds the tiers'
 * allocators from the page entries; vm_start then wakes every fault the dead daemon had read.
 * Takes ownership of fds[0] and fds[1] on success (as vm_create); the others stay the caller's
 * (the VM keeps copies). Returns 0 or -errno with err holding one line; on
 * failure the guest is untouched. */
int vm_adopt(const struct proto_register *req, const int *fds, int nfds,
	     const struct policy *pol, struct vm **out, char *err, size_t errlen);

/* The descriptors the shim must keep so that the VM outlives this daemon: the state memfd,
 * the shm pool memfd and, with a disk tier, its file. Returns how many it put in fds[3]. */
int vm_keep_fds(const struct vm *vm, int fds[3]);

/* Puts the VM's disk-tier I/O behind the daemon's disk scheduler q, with the VM's [memory]
 * weight; before vm_start. Nothing to do without a disk tier or a scheduler. Returns 0 or
 * -ENOMEM (the VM then runs ungated). */
int vm_join_diskq(struct vm *vm, struct diskq *q);

/* Starts the fault thread and the evictor (the tracker is started apart, track_start, once
 * the shim has its reply: the tracker talks to the shim). Returns 0 or -errno. */
int vm_start(struct vm *vm);

/* Hands the region back to QEMU for good: stops the evictor, brings every tiered page back
 * into guest RAM, then asks the shim (over vm->ctl_sock) to unregister it, so QEMU runs on
 * unmanaged with every byte. Returns 0 or -errno with err set; on failure pages may still be
 * tiered and the VM must stay served. */
int vm_release(struct vm *vm, char *err, size_t errlen);

/* Stops the VM's threads before this daemon execs its successor: waits (a bounded time) for
 * the evictor to finish its run and the fault thread to leave its loop, without bringing any
 * page back; the successor adopts the VM. Cannot fail. */
void vm_quiesce(struct vm *vm);

/* Stops and joins the threads, then frees everything. Accepts NULL. */
void vm_destroy(struct vm *vm);

/* Guest address of a page, and the page of a guest address. */
static inline uint64_t vm_page_addr(const struct vm *vm, size_t page)
{
	return vm->host_addr + (uint64_t)page * PAGE_SIZE_4K;
}

/* The resident limit in pages: the smaller of the policy's resident_max and the planner's
 * target, 0 when neither is set. Lock held. */
uint64_t vm_limit_pages(const struct vm *vm);

/* Whether the evictor should be working now (resident over the policy's limit). Lock held. */
bool vm_over_limit(const struct vm *vm);

/* Whether a fault that adds a resident page must wait for the evictor: resident is past the
 * limit by more than the evictor's batch, and the evictor can still make room (it is running
 * and the tier is not full), so the guest is slowed rather than let past its limit. Lock
 * held. */
bool vm_must_throttle(const struct vm *vm);

/* Whether page is in a range a discard has madvised and may yet punch (struct vm_discard):
 * not to be evicted now. Lock held. */
static inline bool vm_discard_pending(const struct vm *vm, size_t page, uint64_t now)
{
	for (unsigned i = 0; i < VM_DISCARD_RING; i++)
		if (page >= vm->discards[i].first && page < vm->discards[i].end &&
		    now < vm->discards[i].until_ns)
			return true;
	return false;
}

/* Calls fn(first, n, arg) for each extent of pages [first, first + n) of the region's pages
 * [from, from + npages) that hold data in the guest memfd (SEEK_DATA walks extents, not pages,
 * and never fills a hole). Cannot fail: an lseek error ends the walk. */
void vm_each_data_extent(const struct vm *vm, size_t from, size_t npages,
			 void (*fn)(size_t first, size_t n, void *arg), void *arg);

/* Reads the region's pages [first, first + n) from the guest memfd into buf. A hole reads as
 * zeros and stays a hole. Returns 0 or -errno (-EIO on a short read). */
int vm_read_guest(const struct vm *vm, size_t first, size_t n, void *buf);

uint64_t vm_now_ns(void);

/* The CLOCK_REALTIME time ms milliseconds from now, as pthread_cond_timedwait() takes it (the
 * VM's condition variables use the default clock). Cannot fail. */
struct timespec vm_deadline_ms(uint32_t ms);

/* The fault thread's last act: records why it stops (err: 0 when asked to, else -errno) for
 * vm_check. Cannot fail. */
void vm_fault_thread_exited(struct vm *vm, int err);

/* Whether the VM's fault thread is running. */
bool vm_fault_thread_alive(struct vm *vm);

/* The VM's health: 0 while its faults are served; -ESRCH when the guest has gone (its exit is
 * on the way); -EPIPE when the fault thread has stopped while the guest lives; -EIO when the
 * VM has failed (vm->failed). why gets one line on every error. */
int vm_check(struct vm *vm, char *why, size_t len);

/* Acts on vm_check, from the control loop at least once a second: a stopped fault thread is
 * restarted (once: a second stop within a minute, or a failed restart, stops the VM); a VM
 * that cannot go on has its QEMU stopped, SIGTERM then SIGKILL after a grace, with one log
 * line. Cannot fail. */
void vm_supervise(struct vm *vm);

/* Whether err, from a uffd ioctl on the VM, is the guest going away rather than a fault of
 * ours: ESRCH (its address space is gone), or ENOENT, EINVAL or EFAULT (its mapping is gone)
 * once its process has exited, waiting up to grace_ms for that (QEMU unmaps guest RAM on its
 * way out). Then the VM is marked gone and "guest gone" logged, once; callers say nothing
 * more. */
bool vm_guest_gone(struct vm *vm, int err, int grace_ms);

#endif
