/* fuzz_proto: libFuzzer target for the control protocol (uffd-mgr/ctlmsg.c).
 *
 * The first byte chooses the descriptor count (0-5) and whether the sender has registered
 * (a shim); the rest is one control message as the daemon would receive it. ctlmsg_check's
 * contract is checked, aborting on a breach: an accepted message has exactly its type's
 * length and descriptor count and every string NUL-terminated inside its field; a drop says
 * why in one printable line. The same bytes, cut into messages at every 0xff byte, then go
 * through a SOCK_SEQPACKET pair to ctlmsg_recv_json (uffdctl's reader), whose result must be
 * an error or a NUL-terminated text no longer than what was sent.
 *
 *   make fuzz FUZZ_SECONDS=20       (every target; build/fuzz/fuzz_proto)
 */
#include <ctype.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "uffd-mgr/ctlmsg.h"
#include "uffd-mgr/proto.h"

static void check(int ok)
{
	if (!ok)
		abort();
}

static void check_action(enum ctlmsg_action a, const union { struct proto_register reg; char raw[8192]; } *m,
			 size_t len, int nfds, bool shim, const char *why)
{
	const struct proto_register *r = &m->reg;

	switch (a) {
	case CTL_REGISTER:
		check(!shim && (len == sizeof(*r) || len == PROTO_REGISTER_V2_LEN) &&
		      r->hdr.type == PROTO_REGISTER);
		check(len != sizeof(*r) || memchr(r->backend.id, 0, sizeof(r->backend.id)));
		check((r->flags & PROTO_REG_RESUME) ? nfds >= 4 && nfds <= 5 : nfds == 2);
		check(memchr(r->vm_name, 0, sizeof(r->vm_name)) && memchr(r->policy_path, 0, sizeof(r->policy_path)) &&
		      memchr(r->qmp_path, 0, sizeof(r->qmp_path)) && memchr(r->block_name, 0, sizeof(r->block_name)));
		break;
	case CTL_WATCH:
		check(!shim && !nfds && len == sizeof(struct proto_stats_req));
		break;
	case CTL_STATS:
		check(!shim && !nfds);
		break;
	case CTL_UPGRADE:
	case CTL_UFFD_DEV:
		check(!shim && !nfds && len == sizeof(struct proto_hdr));
		break;
	case CTL_ARM_DONE:
		check(shim && !nfds && len == sizeof(struct proto_arm_done));
		break;
	case CTL_IGNORE:
		check(shim);
		break;
	case CTL_DROP:
		check(why[0] != 0);
		for (const char *s = why; *s; s++)
			check(isprint((unsigned char)*s));
		break;
	default:
		check(0);
	}
	if (a != CTL_DROP)
		check(proto_hdr_check(&r->hdr, len) == 0);
}

/* Sends the bytes as messages, cut at 0xff, and reads them back as a snapshot. */
static void fuzz_reader(const uint8_t *data, size_t size)
{
	int sv[2];
	size_t start = 0;
	char *text = NULL;
	ssize_t n;

	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK, 0, sv))
		return;
	for (size_t i = 0, msgs = 0; i <= size && msgs < 8; i++) {
		if (i < size && data[i] != 0xff)
			continue;
		if (send(sv[0], data + start, i - start, 0) < 0)
			break;
		msgs++;
		start = i + 1;
	}
	close(sv[0]);
	n = ctlmsg_recv_json(sv[1], &text);
	if (n > 0)
		check(text && strlen(text) == (size_t)n && (size_t)n <= size);
	if (n == -EPERM)
		check(text != NULL);
	free(text);
	close(sv[1]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static union {
		struct proto_register reg;
		char raw[8192];
	} msg;
	char why[256];
	int nfds;
	bool shim;
	size_t len;

	if (size < 1)
		return 0;
	nfds = data[0] % 6;
	shim = data[0] & 0x80;
	len = size - 1 > sizeof(msg) ? sizeof(msg) : size - 1;
	memset(&msg, 0, sizeof(msg));
	memcpy(&msg, data + 1, len);
	check_action(ctlmsg_check(shim, &msg, len, nfds, why, sizeof(why)), (void *)&msg, len, nfds,
		     shim, why);
	fuzz_reader(data + 1, size - 1);
	return 0;
}
