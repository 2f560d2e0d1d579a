/* proto: the control socket protocol between the shim (in QEMU), uffdctl and uffd-mgrd.
 *
 * One SOCK_SEQPACKET Unix socket. Every message starts with struct proto_hdr. A shim's
 * connection stays open for the life of its QEMU; its close tells the daemon the VM is gone
 * (the daemon also watches a pidfd). The daemon's close tells the shim the daemon is gone: it
 * reconnects and sends the registration again marked PROTO_REG_RESUME, with the descriptors
 * that the first reply handed it, and a new daemon adopts the VM (vm.h, vm_adopt).
 *
 * Compatibility: QEMUs started under one daemon resume under the next after an upgrade, so a
 * later version may only add message types and append fields (checked by length). */
#ifndef UFFD_PROTO_H
#define UFFD_PROTO_H

#include <stdint.h>
#include <stddef.h>
#include <sys/types.h>

#define PROTO_MAGIC	     0x55464d31u /* "UFM1" */
#define PROTO_VERSION	     2
#define PROTO_DEFAULT_SOCKET "/run/uffd-mgr/uffd-mgr.sock"
#define PROTO_MSG_MAX	     (256 * 1024)

enum proto_type {
	PROTO_REGISTER = 1,    /* shim -> daemon, with fds {uffd, memfd}; answered by PROTO_REPLY */
	PROTO_REPLY = 2,       /* daemon -> client: status + one-line message */
	PROTO_STATS = 3,       /* uffdctl -> daemon: one JSON snapshot (PROTO_STATS_JSON) */
	PROTO_STATS_WATCH = 4, /* uffdctl -> daemon: a snapshot now and every interval_ms */
	PROTO_STATS_JSON = 5,  /* daemon -> uffdctl: hdr + NUL-terminated JSON text */
	PROTO_RELEASE = 6,     /* daemon -> shim: every page is back in guest RAM; unregister
				* the region and answer with PROTO_REPLY. QEMU runs on unmanaged. */
	PROTO_ARM = 7,	       /* daemon -> shim: drop QEMU's page-table entries for these
				* ranges (MADV_DONTNEED), so the next access faults and the
				* tracker sees it; answered with PROTO_ARM_DONE */
	PROTO_ARM_DONE = 8,    /* shim -> daemon: struct proto_arm_done */
	PROTO_UPGRADE = 9,     /* uffdctl -> daemon: exec the uffd-mgrd binary now on disk,
				* keeping every VM; answered by PROTO_REPLY before the exec */
	PROTO_STATS_PART = 10, /* daemon -> uffdctl: a piece of a snapshot too large for one
				* message; the pieces and the PROTO_STATS_JSON that ends them
				* make up the text (ctlmsg.h) */
	PROTO_UFFD_DEV = 11,   /* shim -> daemon, before PROTO_REGISTER on the same connection:
				* a descriptor of /dev/userfaultfd, answered by PROTO_REPLY
				* carrying it. For a QEMU that may not open the device itself
				* (libvirt's: its own /dev and device cgroup, an unprivileged
				* uid); the uffd it makes from it is still its own address
				* space's. Needs the register right. */
};

struct proto_hdr {
	uint32_t magic;
	uint16_t version;
	uint16_t type;
	uint32_t len; /* whole message, header included */
	uint32_t reserved;
};

struct proto_register {
	struct proto_hdr hdr;
	uint64_t host_addr; /* guest RAM mapping in QEMU */
	uint64_t length;
	uint64_t memfd_offset;
	int32_t pid;
	uint32_t flags;		/* PROTO_REG_* */
	uint64_t uffd_features; /* what UFFDIO_API granted in QEMU's process */
	char vm_name[64];
	char block_name[64]; /* memfd name, e.g. "memory-backend-memfd" */
	char policy_path[4096];
	char qmp_path[108];   /* QEMU's QMP socket (uffd-qemu adds one); "" = none */
	uint64_t paused_ns;   /* with PROTO_REG_RESUME: how long the shim was without a daemon */
	/* From here on, absent in a registration of a shim before it (PROTO_REGISTER_V2_LEN:
	 * read as zeros): which of the guest's RAM backends this is (a NUMA guest has one per
	 * node); the VM is the set of its backends' registrations under one name. */
	struct proto_backend {
		uint32_t index;	      /* 0 for the first (or only) backend */
		uint32_t count;	      /* backends of the guest; 0 or 1: just this one */
		uint64_t total_bytes; /* guest RAM of all of them */
		char id[64];	      /* QEMU's id of the backend, e.g. "ram-node1" */
	} backend;
};

/* A registration from a shim before struct proto_backend (live upgrade from it). */
#define PROTO_REGISTER_V2_LEN offsetof(struct proto_register, backend)

/* A registration carries {uffd, memfd}; a resume {uffd, memfd, state, shm pool[, disk file]},
 * the descriptors of the first reply (vm_keep_fds), so the new daemon finds every page. */
#define PROTO_REG_RESUME 1u
/* With RESUME: the shim is still carrying out an arming of the daemon before; its REMOVEs are
 * yet to come and must not be taken for discards (the pages keep PF_ARMING until it ends). */
#define PROTO_REG_ARMING 2u
#define PROTO_REG_FDS_MAX 5

/* Flags of a registration's reply: what the shim must do before QEMU goes on. A reply that
 * accepts a registration carries the descriptors the shim must keep for a resume (up to 3). */
#define PROTO_REPLY_MINOR 1u /* register guest RAM for MINOR faults too (sampling tracker) */

struct proto_reply {
	struct proto_hdr hdr;
	int32_t status; /* 0 or a negative errno */
	uint32_t flags; /* PROTO_REPLY_* */
	char message[512];
};

/* A range of guest RAM, in pages from the start of the registered region. */
struct proto_range {
	uint64_t first_page;
	uint64_t npages;
};

#define PROTO_ARM_MAX 8192 /* ranges in one PROTO_ARM */

struct proto_arm {
	struct proto_hdr hdr;
	uint32_t nranges;
	uint32_t seq;
	struct proto_range range[]; /* nranges of them */
};

struct proto_arm_done {
	struct proto_hdr hdr;
	uint32_t seq;
	int32_t status; /* 0, or the first madvise error */
	uint64_t pages; /* pages whose entries were dropped */
};

struct proto_stats_req {
	struct proto_hdr hdr;
	uint32_t interval_ms;
	uint32_t reserved;
};

/* Fills a header for a message of the given type and total length. Cannot fail. */
void proto_hdr_init(struct proto_hdr *h, enum proto_type type, size_t len);

/* Checks magic, version and that h->len == got. Returns 0 or -EPROTO. */
int proto_hdr_check(const struct proto_hdr *h, size_t got);

/* Sends one message with up to nfds file descriptors (SCM_RIGHTS). Returns 0 or -errno. */
int proto_send(int sock, const void *msg, size_t len, const int *fds, int nfds);

/* Receives one message of at most cap bytes; up to *nfds descriptors land in fds and *nfds
 * is set to how many came (extra ones are closed). Returns the length, 0 on orderly close,
 * or -errno (-EMSGSIZE when the message was truncated). */
ssize_t proto_recv(int sock, void *msg, size_t cap, int *fds, int *nfds);

/* Connects a SOCK_SEQPACKET client to path. Returns the socket or -errno. */
int proto_connect(const char *path);

/* Sends a reply with status and a printf-style message. Returns 0 or -errno. */
int proto_reply(int sock, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* As proto_reply, with PROTO_REPLY_* flags. */
int proto_reply_flags(int sock, int status, uint32_t flags, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* As proto_reply_flags, with nfds descriptors. */
int proto_reply_fds(int sock, int status, uint32_t flags, const int *fds, int nfds,
		    const char *fmt, ...) __attribute__((format(printf, 6, 7)));

#endif
