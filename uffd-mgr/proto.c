/* proto: framing and fd passing on the control socket. See proto.h. */
#include "uffd-mgr/proto.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define PROTO_MAX_FDS 8

void proto_hdr_init(struct proto_hdr *h, enum proto_type type, size_t len)
{
	memset(h, 0, sizeof(*h));
	h->magic = PROTO_MAGIC;
	h->version = PROTO_VERSION;
	h->type = (uint16_t)type;
	h->len = (uint32_t)len;
}

int proto_hdr_check(const struct proto_hdr *h, size_t got)
{
	if (got < sizeof(*h) || h->magic != PROTO_MAGIC || h->version != PROTO_VERSION)
		return -EPROTO;
	if (h->len != got)
		return -EPROTO;
	return 0;
}

int proto_send(int sock, const void *msg, size_t len, const int *fds, int nfds)
{
	char ctrl[CMSG_SPACE(sizeof(int) * PROTO_MAX_FDS)];
	struct iovec iov = {.iov_base = (void *)msg, .iov_len = len};
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
	ssize_t n;

	if (nfds < 0 || nfds > PROTO_MAX_FDS)
		return -EINVAL;
	/* A SOCK_SEQPACKET message must fit the send buffer whole (default ~208 KiB). */
	if (len > 64 * 1024) {
		int want = (int)len + 4096;

		setsockopt(sock, SOL_SOCKET, SO_SNDBUF, &want, sizeof(want));
	}
	if (nfds > 0) {
		struct cmsghdr *c;

		memset(ctrl, 0, sizeof(ctrl));
		mh.msg_control = ctrl;
		mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
		c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
		memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
	}
	do
		n = sendmsg(sock, &mh, MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	return (size_t)n == len ? 0 : -EIO;
}

/* Takes the descriptors out of the control data: keeps up to cap of them, closes the rest so
 * a misbehaving peer cannot make us leak descriptors. Returns how many were kept. */
static int take_fds(struct msghdr *mh, int *fds, int cap)
{
	int kept = 0;

	for (struct cmsghdr *c = CMSG_FIRSTHDR(mh); c; c = CMSG_NXTHDR(mh, c)) {
		int n, got[PROTO_MAX_FDS];

		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		n = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
		if (n > PROTO_MAX_FDS)
			n = PROTO_MAX_FDS;
		memcpy(got, CMSG_DATA(c), sizeof(int) * n);
		for (int i = 0; i < n; i++) {
			if (kept < cap)
				fds[kept++] = got[i];
			else
				close(got[i]);
		}
	}
	return kept;
}

ssize_t proto_recv(int sock, void *msg, size_t cap, int *fds, int *nfds)
{
	char ctrl[CMSG_SPACE(sizeof(int) * PROTO_MAX_FDS)];
	struct iovec iov = {.iov_base = msg, .iov_len = cap};
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
	int want = nfds ? *nfds : 0;
	ssize_t n;

	mh.msg_control = ctrl;
	mh.msg_controllen = sizeof(ctrl);
	do
		n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	want = take_fds(&mh, fds, want);
	if (nfds)
		*nfds = want;
	if (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) {
		for (int i = 0; i < want; i++)
			close(fds[i]);
		if (nfds)
			*nfds = 0;
		return -EMSGSIZE;
	}
	return n;
}

int proto_connect(const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int s;

	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	strcpy(sa.sun_path, path);
	s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (s < 0)
		return -errno;
	if (connect(s, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int err = -errno;

		close(s);
		return err;
	}
	return s;
}

static int vreply(int sock, int status, uint32_t flags, const int *fds, int nfds,
		  const char *fmt, va_list ap)
{
	struct proto_reply r;

	memset(&r, 0, sizeof(r));
	proto_hdr_init(&r.hdr, PROTO_REPLY, sizeof(r));
	r.status = status;
	r.flags = flags;
	vsnprintf(r.message, sizeof(r.message), fmt, ap);
	return proto_send(sock, &r, sizeof(r), fds, nfds);
}

int proto_reply(int sock, int status, const char *fmt, ...)
{
	va_list ap;
	int r;

	va_start(ap, fmt);
	r = vreply(sock, status, 0, NULL, 0, fmt, ap);
	va_end(ap);
	return r;
}

int proto_reply_flags(int sock, int status, uint32_t flags, const char *fmt, ...)
{
	va_list ap;
	int r;

	va_start(ap, fmt);
	r = vreply(sock, status, flags, NULL, 0, fmt, ap);
	va_end(ap);
	return r;
}

int proto_reply_fds(int sock, int status, uint32_t flags, const int *fds, int nfds,
		    const char *fmt, ...)
{
	va_list ap;
	int r;

	va_start(ap, fmt);
	r = vreply(sock, status, flags, fds, nfds, fmt, ap);
	va_end(ap);
	return r;
}
