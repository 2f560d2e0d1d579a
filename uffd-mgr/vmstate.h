/* vmstate: the part of a VM's state that outlives the daemon.
 *
 * One memfd per VM, created by the daemon at registration and handed to the shim, which keeps
 * it (with the uffd, the guest memfd and the tiers' descriptors) for the life of QEMU. A
 * daemon that starts after a crash, a kill or an upgrade gets it back with the VM's resume and
 * adopts the VM from it. Layout, all offsets page aligned:
 *
 *   [0, 8192)               struct vmstate_hdr: version, the VM's sizes, the tiers' sizes
 *   [stats_off, +stats_len) the VM's counters (struct vm_stats), updated in place
 *   [ent_off, +8*npages)    the page map's entries (pagemap.h), updated in place
 *
 * Nothing else is needed to serve the VM's pages: every other structure (per-run counts, the
 * tiers' slot allocators) is derived from the entries at adoption. The memfd is sealed against
 * shrinking and growing, so QEMU, which holds it, cannot make the daemon's mapping fault; it can
 * Once the daemon has mapped it, the memfd is sealed against writes too (F_SEAL_FUTURE_WRITE):
 * QEMU, which holds it, can neither resize it under the daemon's mapping nor write an entry that
 * would send the daemon outside a tier. A new daemon adopts a copy (vmstate_open), checked
 * before it is trusted, and hands that copy to the shim in place of the old one. */
#ifndef UFFD_VMSTATE_H
#define UFFD_VMSTATE_H

#include <stddef.h>
#include <stdint.h>

#define VMSTATE_MAGIC	0x55464d53u /* "UFMS" */
/* 2: page entries may be PS_ZSHM (a blob of the compressed shm tier, pagemap.h), and the
 * geometry says how the shm tier stores runs. A state of another version is refused. */
#define VMSTATE_VERSION 2

/* What a VM's state is sized for; adoption refuses a state whose sizes differ. */
struct vmstate_geom {
	char vm_name[64];
	uint64_t guest_bytes; /* the registered region */
	uint32_t run_pages;
	uint32_t stats_len; /* sizeof(struct vm_stats) of the daemon that made it */
	uint64_t shm_slots;
	uint64_t disk_slots; /* 0: no disk tier */
	uint32_t shm_compress; /* 0: 4 KiB slots; else the pool is in grains, new blobs use this
				* algorithm (shmswap/zpool.h: ZPOOL_LZ4, ZPOOL_ZSTD) */
	uint32_t reserved;
};

struct vmstate_hdr {
	uint32_t magic;
	uint32_t version;
	struct vmstate_geom geom;
	uint64_t stats_off, ent_off, total_len;
	uint64_t adoptions;		/* daemons that adopted this VM after the first */
	uint64_t created_unix;		/* when the first daemon registered it */
	uint64_t last_pause_ns;		/* the last time faults waited for a daemon */
	uint64_t max_pause_ns;
	char disk_path[4096];		/* the disk tier's file, to unlink when the VM ends */
};

struct vmstate {
	int fd;
	struct vmstate_hdr *hdr; /* the whole mapping starts here */
	void *stats;		 /* hdr->geom.stats_len bytes */
	uint64_t *ent;		 /* one entry per guest page */
};

/* Creates a zeroed state for a VM of geometry g in a new sealed memfd. Returns 0 or -errno
 * with err holding one line. */
int vmstate_create(const struct vmstate_geom *g, struct vmstate *out, char *err, size_t errlen);

/* Copies the state a shim handed back (fd stays the caller's) into a new one of ours, once it
 * has checked it against what the resuming VM says it is (want: name, guest_bytes; stats_len
 * of this daemon). Refuses a state of another version, another VM or other sizes, a truncated
 * or unsealed one: -EPROTO, -EINVAL or -EUCLEAN with err holding one line. Tier sizes and the
 * shm tier's form (shm_compress) come from the state (the tiers were made with them), not from
 * want. The entries are not checked here
 * (pagemap_attach and the tiers' claims do). */
int vmstate_open(int fd, const struct vmstate_geom *want, struct vmstate *out, char *err,
		 size_t errlen);

/* Unmaps and closes. Accepts a state that was never opened (hdr NULL). */
void vmstate_close(struct vmstate *vs);

#endif
