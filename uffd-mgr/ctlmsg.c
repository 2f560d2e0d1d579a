/* ctlmsg: see ctlmsg.h. */
#include "uffd-mgr/ctlmsg.h"
#include "uffd-mgr/log.h"
#include "uffd-mgr/proto.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

/* Whether a char array field holds a NUL. */
#define TERMINATED(f) (memchr((f), 0, sizeof(f)) != NULL)

static enum ctlmsg_action check_register(const struct proto_register *r, size_t len, int nfds,
					 char *why, size_t whylen)
{
	bool resume = r->flags & PROTO_REG_RESUME;

	if (len != sizeof(*r) && len != PROTO_REGISTER_V2_LEN) { /* an older shim's */
		err_set(why, whylen, "registration of %zu bytes, not %zu", len, sizeof(*r));
		return CTL_DROP;
	}
	if (r->flags & ~(PROTO_REG_RESUME | PROTO_REG_ARMING) ||
	    (!resume && (r->flags & PROTO_REG_ARMING))) {
		err_set(why, whylen, "registration with unknown flags %#x", r->flags);
		return CTL_DROP;
	}
	if (resume ? nfds < 4 || nfds > PROTO_REG_FDS_MAX : nfds != 2) {
		err_set(why, whylen, "%s with %d descriptors, not %s", resume ? "resume" : "registration",
			nfds, resume ? "4 or 5" : "2");
		return CTL_DROP;
	}
	if (!TERMINATED(r->vm_name) || !TERMINATED(r->block_name) ||
	    !TERMINATED(r->policy_path) || !TERMINATED(r->qmp_path) ||
	    (len == sizeof(*r) && !TERMINATED(r->backend.id))) {
		err_set(why, whylen, "registration with a name or path that is not NUL-terminated");
		return CTL_DROP;
	}
	return CTL_REGISTER;
}

enum ctlmsg_action ctlmsg_check(bool shim, void *msg, size_t len, int nfds, char *why,
				size_t whylen)
{
	const struct proto_hdr *h = msg;

	err_set(why, whylen, "%s", "");
	if (proto_hdr_check(h, len)) {
		err_set(why, whylen, "not a control message of this protocol (%zu bytes)", len);
		return CTL_DROP;
	}
	if (shim) /* after registering, a shim only answers armings; anything else is ignored */
		return h->type == PROTO_ARM_DONE && len == sizeof(struct proto_arm_done) && !nfds
			   ? CTL_ARM_DONE
			   : CTL_IGNORE;
	if (h->type != PROTO_REGISTER && nfds) {
		err_set(why, whylen, "message type %u with %d descriptors", h->type, nfds);
		return CTL_DROP;
	}
	switch (h->type) {
	case PROTO_REGISTER:
		return check_register(msg, len, nfds, why, whylen);
	case PROTO_STATS:
		if (len == sizeof(*h) || len == sizeof(struct proto_stats_req))
			return CTL_STATS;
		break;
	case PROTO_STATS_WATCH:
		if (len == sizeof(struct proto_stats_req))
			return CTL_WATCH;
		break;
	case PROTO_UPGRADE:
		if (len == sizeof(*h))
			return CTL_UPGRADE;
		break;
	case PROTO_UFFD_DEV:
		if (len == sizeof(*h))
			return CTL_UFFD_DEV;
		break;
	default:
		err_set(why, whylen, "unexpected control message type %u", h->type);
		return CTL_DROP;
	}
	err_set(why, whylen, "message type %u of %zu bytes", h->type, len);
	return CTL_DROP;
}

void ctlmsg_out_reset(struct ctlmsg_out *out)
{
	free(out->text);
	*out = (struct ctlmsg_out){0};
}

int ctlmsg_flush(int sock, struct ctlmsg_out *out)
{
	static char msg[sizeof(struct proto_hdr) + CTLMSG_CHUNK + 1];

	while (out->text) {
		size_t n = out->len - out->off > CTLMSG_CHUNK ? CTLMSG_CHUNK : out->len - out->off;
		bool last = out->off + n == out->len;
		size_t size = sizeof(struct proto_hdr) + n + last; /* the last carries the NUL */
		ssize_t r;

		proto_hdr_init((struct proto_hdr *)msg, last ? PROTO_STATS_JSON : PROTO_STATS_PART,
			       size);
		memcpy(msg + sizeof(struct proto_hdr), out->text + out->off, n);
		msg[sizeof(struct proto_hdr) + n] = 0;
		r = send(sock, msg, size, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return errno == EAGAIN ? -EAGAIN : -errno;
		if ((size_t)r != size)
			return -EIO;
		out->off += n;
		if (last)
			ctlmsg_out_reset(out);
	}
	return 0;
}

int ctlmsg_send_json(int sock, struct ctlmsg_out *out, const char *text, size_t len)
{
	if (out->text)
		return -EBUSY;
	if (len > CTLMSG_JSON_MAX)
		return -EMSGSIZE;
	out->text = malloc(len + 1);
	if (!out->text)
		return -ENOMEM;
	memcpy(out->text, text, len + 1);
	out->text[len] = 0;
	out->len = len;
	out->off = 0;
	return ctlmsg_flush(sock, out);
}

ssize_t ctlmsg_recv_json(int sock, char **text)
{
	static char msg[sizeof(struct proto_hdr) + CTLMSG_CHUNK + 1];
	const struct proto_hdr *h = (const struct proto_hdr *)msg;
	size_t have = 0, cap = 0;
	char *buf = NULL;

	*text = NULL;
	for (;;) {
		ssize_t n = proto_recv(sock, msg, sizeof(msg), NULL, NULL);
		size_t body;
		char *grown;

		if (n <= 0 || proto_hdr_check(h, (size_t)n)) {
			free(buf);
			return n < 0 ? n : n == 0 && !have ? 0 : -EPROTO;
		}
		body = (size_t)n - sizeof(*h);
		if (h->type == PROTO_REPLY && !have && (size_t)n == sizeof(struct proto_reply)) {
			struct proto_reply *rep = (struct proto_reply *)msg;

			rep->message[sizeof(rep->message) - 1] = 0;
			*text = strdup(rep->message);
			return -EPERM;
		}
		if (h->type != PROTO_STATS_PART && h->type != PROTO_STATS_JSON) {
			free(buf);
			return -EPROTO;
		}
		if (have + body + 1 > CTLMSG_JSON_MAX) {
			free(buf);
			return -EMSGSIZE;
		}
		if (have + body + 1 > cap) {
			cap = (have + body + 1) * 2;
			grown = realloc(buf, cap);
			if (!grown) {
				free(buf);
				return -ENOMEM;
			}
			buf = grown;
		}
		memcpy(buf + have, msg + sizeof(*h), body);
		have += body;
		if (h->type == PROTO_STATS_JSON) {
			/* The last piece carries the NUL: the text is what comes before it. */
			buf[have] = 0;
			*text = buf;
			return (ssize_t)strlen(buf);
		}
	}
}
