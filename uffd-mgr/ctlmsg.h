/* ctlmsg: what a message received on the control socket asks the daemon to do, decided
 * without the daemon (so a fuzzer drives it, tests/fuzz/fuzz_proto.c), and the stats stream.
 *
 * Every message comes from a process that is not trusted: ctlmsg_check is the one place that
 * decides from its type, length, flags and descriptor count whether the daemon looks at it at
 * all; what it accepts has every string NUL-terminated inside its field. */
#ifndef UFFD_CTLMSG_H
#define UFFD_CTLMSG_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* The largest piece of a stats snapshot in one message: SOCK_SEQPACKET messages much larger
 * than this need large contiguous kernel buffers and a send buffer raised past wmem_max. */
#define CTLMSG_CHUNK (60 * 1024)
/* The largest snapshot a reader assembles: ~300 bytes a VM would take 200,000 VMs. */
#define CTLMSG_JSON_MAX (64u << 20)

enum ctlmsg_action {
	CTL_DROP,     /* malformed or not allowed now: close the connection (why says why) */
	CTL_IGNORE,   /* harmless, nothing to do */
	CTL_REGISTER, /* struct proto_register, registration or resume, descriptors counted */
	CTL_STATS,    /* one snapshot */
	CTL_WATCH,    /* struct proto_stats_req: a snapshot every interval_ms */
	CTL_UPGRADE,
	CTL_ARM_DONE, /* struct proto_arm_done, from a registered shim */
	CTL_UFFD_DEV, /* a /dev/userfaultfd descriptor, before registering */
};

/* Decides what msg (len bytes as received, nfds descriptors with it) asks; shim says the
 * connection has registered a VM already. May write into msg (never past len). Returns the
 * action; for CTL_DROP, why gets one line. Cannot fail. */
enum ctlmsg_action ctlmsg_check(bool shim, void *msg, size_t len, int nfds, char *why,
				size_t whylen);

/* A snapshot on its way to one reader: the kernel queues only a few messages per socket
 * (net.unix.max_dgram_qlen), so a large one goes out as the reader makes room. */
struct ctlmsg_out {
	char *text; /* NULL: nothing pending */
	size_t len, off;
};

/* Starts sending the JSON text (len bytes, without its NUL; copied) as a snapshot:
 * PROTO_STATS_PART pieces of at most CTLMSG_CHUNK bytes and a last PROTO_STATS_JSON, as many
 * as the socket takes now without blocking. Returns 0 when all went, -EAGAIN when some is
 * pending (call ctlmsg_flush when the socket is writable), -EBUSY if the last snapshot is
 * still pending (a reader that does not keep up), or another -errno. */
int ctlmsg_send_json(int sock, struct ctlmsg_out *out, const char *text, size_t len);

/* Sends more of a pending snapshot. Returns 0 when nothing is left, -EAGAIN when some still
 * is, or -errno. */
int ctlmsg_flush(int sock, struct ctlmsg_out *out);

/* Forgets a pending snapshot. Accepts one with nothing pending. */
void ctlmsg_out_reset(struct ctlmsg_out *out);

/* Receives one snapshot, reassembled and NUL-terminated, into *text (to free). A refusal
 * (PROTO_REPLY) instead gives -EPERM with *text its message. Returns the text's length,
 * 0 on orderly close, or -errno (-EPROTO for a broken stream, -EMSGSIZE past
 * CTLMSG_JSON_MAX). */
ssize_t ctlmsg_recv_json(int sock, char **text);

#endif
