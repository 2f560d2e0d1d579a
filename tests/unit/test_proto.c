/* test_proto: control socket framing and fd passing (uffd-mgr/proto.c).
 *
 * Everything runs over socketpair(AF_UNIX, SOCK_SEQPACKET) or a listening socket in a
 * temporary directory. What it stresses:
 *  - header checks: each way a header can be wrong gives -EPROTO;
 *  - a registration with two descriptors arrives whole; the descriptors received are new
 *    ones for the same open files (same inode, shared file offset), close-on-exec;
 *  - descriptors are never leaked: more than the receiver takes, a receiver that takes none,
 *    a truncated message, and more descriptors than the protocol's maximum sent by a raw
 *    sendmsg; the count of open descriptors (/proc/self/fd) is checked after each;
 *  - message boundaries survive a truncated receive; orderly close gives 0; a dead peer
 *    gives -EPIPE (and no SIGPIPE); bad descriptor counts give -EINVAL;
 *  - proto_reply formats, truncates at the message field, and carries the status;
 *  - proto_connect: a live listener, a missing path, a path too long, a socket nobody
 *    listens on;
 *  - a message of PROTO_MSG_MAX bytes, the size the daemon and uffdctl agree on, goes
 *    through a socket with default buffer sizes. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "uffd-mgr/proto.h"

static int open_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int n = 0;

	assert_non_null(d);
	while ((e = readdir(d)))
		n += e->d_name[0] != '.';
	closedir(d);
	return n - 1; /* the directory's own descriptor */
}

static void pair(int sv[2])
{
	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
}

static void same_file(int a, int b)
{
	struct stat sa, sb;

	assert_int_not_equal(a, b);
	assert_int_equal(fstat(a, &sa), 0);
	assert_int_equal(fstat(b, &sb), 0);
	assert_true(sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino);
}

static void fill_register(struct proto_register *r)
{
	memset(r, 0, sizeof(*r));
	proto_hdr_init(&r->hdr, PROTO_REGISTER, sizeof(*r));
	r->host_addr = 0x7f0000000000ull;
	r->length = 1ull << 30;
	r->memfd_offset = 4096;
	r->pid = 4242;
	r->uffd_features = 0xabcdef;
	snprintf(r->vm_name, sizeof(r->vm_name), "vm-under-test");
	snprintf(r->block_name, sizeof(r->block_name), "memory-backend-memfd");
	/* A full-length policy path, every byte significant. */
	for (size_t i = 0; i < sizeof(r->policy_path) - 1; i++)
		r->policy_path[i] = (char)('a' + i % 26);
}

static void test_header(void **state)
{
	struct proto_hdr h;

	memset(&h, 0xff, sizeof(h));
	proto_hdr_init(&h, PROTO_STATS, 24);
	assert_int_equal(h.magic, PROTO_MAGIC);
	assert_int_equal(h.version, PROTO_VERSION);
	assert_int_equal(h.type, PROTO_STATS);
	assert_int_equal(h.len, 24);
	assert_int_equal(h.reserved, 0);
	assert_int_equal(proto_hdr_check(&h, 24), 0);

	assert_int_equal(proto_hdr_check(&h, 23), -EPROTO); /* len mismatch */
	assert_int_equal(proto_hdr_check(&h, 25), -EPROTO);
	proto_hdr_init(&h, PROTO_STATS, sizeof(h));
	assert_int_equal(proto_hdr_check(&h, sizeof(h)), 0);
	assert_int_equal(proto_hdr_check(&h, sizeof(h) - 1), -EPROTO); /* short */
	assert_int_equal(proto_hdr_check(&h, 0), -EPROTO);
	h.magic ^= 1;
	assert_int_equal(proto_hdr_check(&h, sizeof(h)), -EPROTO);
	h.magic ^= 1;
	h.version = PROTO_VERSION + 1;
	assert_int_equal(proto_hdr_check(&h, sizeof(h)), -EPROTO);
}

static void test_register_with_fds(void **state)
{
	static struct proto_register out, in;
	int sv[2], mfd, pfd[2], fds[2] = {-1, -1}, nfds = 2, before = open_fds();
	char buf[8];

	pair(sv);
	mfd = memfd_create("memory-backend-memfd", MFD_CLOEXEC);
	assert_true(mfd >= 0);
	assert_int_equal(write(mfd, "hello", 5), 5);
	assert_int_equal(pipe(pfd), 0);
	fill_register(&out);
	int send_fds[2] = {mfd, pfd[1]};
	assert_int_equal(proto_send(sv[0], &out, sizeof(out), send_fds, 2), 0);

	memset(&in, 0, sizeof(in));
	assert_int_equal(proto_recv(sv[1], &in, sizeof(in), fds, &nfds), (ssize_t)sizeof(in));
	assert_int_equal(nfds, 2);
	assert_int_equal(proto_hdr_check(&in.hdr, sizeof(in)), 0);
	assert_int_equal(in.hdr.type, PROTO_REGISTER);
	assert_memory_equal(&in, &out, sizeof(in));

	/* The same open files: the memfd shares its offset, the pipe carries bytes. */
	same_file(fds[0], mfd);
	same_file(fds[1], pfd[1]);
	assert_int_equal(lseek(fds[0], 0, SEEK_CUR), 5);
	assert_int_equal(write(fds[1], "xy", 2), 2);
	assert_int_equal(read(pfd[0], buf, sizeof(buf)), 2);
	assert_memory_equal(buf, "xy", 2);
	assert_true(fcntl(fds[0], F_GETFD) & FD_CLOEXEC);
	assert_true(fcntl(fds[1], F_GETFD) & FD_CLOEXEC);

	close(fds[0]);
	close(fds[1]);
	close(mfd);
	close(pfd[0]);
	close(pfd[1]);
	close(sv[0]);
	close(sv[1]);
	assert_int_equal(open_fds(), before);
}

/* Sends a small message with n copies of fd by a raw sendmsg (no limit on n). */
static void raw_send_fds(int sock, int fd, int n)
{
	char ctrl[CMSG_SPACE(sizeof(int) * 16)];
	struct proto_hdr h;
	struct iovec iov = {.iov_base = &h, .iov_len = sizeof(h)};
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
	struct cmsghdr *c;
	int fds[16];

	assert_true(n <= 16);
	for (int i = 0; i < n; i++)
		fds[i] = fd;
	proto_hdr_init(&h, PROTO_REPLY, sizeof(h));
	memset(ctrl, 0, sizeof(ctrl));
	mh.msg_control = ctrl;
	mh.msg_controllen = CMSG_SPACE(sizeof(int) * n);
	c = CMSG_FIRSTHDR(&mh);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int) * n);
	memcpy(CMSG_DATA(c), fds, sizeof(int) * n);
	assert_int_equal(sendmsg(sock, &mh, 0), (ssize_t)sizeof(h));
}

static void test_fds_never_leak(void **state)
{
	struct proto_hdr h;
	int sv[2], mfd, fds[4], nfds, before;

	pair(sv);
	mfd = memfd_create("x", MFD_CLOEXEC);
	assert_true(mfd >= 0);
	before = open_fds();
	proto_hdr_init(&h, PROTO_REPLY, sizeof(h));

	/* Three sent, one taken: two closed by proto_recv. */
	int three[3] = {mfd, mfd, mfd};
	assert_int_equal(proto_send(sv[0], &h, sizeof(h), three, 3), 0);
	nfds = 1;
	assert_int_equal(proto_recv(sv[1], &h, sizeof(h), fds, &nfds), (ssize_t)sizeof(h));
	assert_int_equal(nfds, 1);
	same_file(fds[0], mfd);
	assert_int_equal(open_fds(), before + 1);
	close(fds[0]);
	assert_int_equal(open_fds(), before);

	/* Sent to a receiver that wants none (fds and nfds NULL): all closed. */
	assert_int_equal(proto_send(sv[0], &h, sizeof(h), three, 3), 0);
	assert_int_equal(proto_recv(sv[1], &h, sizeof(h), NULL, NULL), (ssize_t)sizeof(h));
	assert_int_equal(open_fds(), before);
	/* ... or wants zero of them. */
	assert_int_equal(proto_send(sv[0], &h, sizeof(h), three, 3), 0);
	nfds = 0;
	assert_int_equal(proto_recv(sv[1], &h, sizeof(h), fds, &nfds), (ssize_t)sizeof(h));
	assert_int_equal(nfds, 0);
	assert_int_equal(open_fds(), before);

	/* The most the protocol carries, all taken. */
	int four[4] = {mfd, mfd, mfd, mfd};
	assert_int_equal(proto_send(sv[0], &h, sizeof(h), four, 4), 0);
	nfds = 4;
	assert_int_equal(proto_recv(sv[1], &h, sizeof(h), fds, &nfds), (ssize_t)sizeof(h));
	assert_int_equal(nfds, 4);
	for (int i = 0; i < 4; i++) {
		same_file(fds[i], mfd);
		close(fds[i]);
	}
	assert_int_equal(open_fds(), before);

	/* More than the protocol's maximum from a raw peer: refused, nothing leaks. */
	raw_send_fds(sv[0], mfd, 9);
	nfds = 4;
	assert_int_equal(proto_recv(sv[1], &h, sizeof(h), fds, &nfds), -EMSGSIZE);
	assert_int_equal(nfds, 0);
	assert_int_equal(open_fds(), before);

	/* Too many for proto_send: refused before sending. */
	int nine[9] = {mfd, mfd, mfd, mfd, mfd, mfd, mfd, mfd, mfd};
	assert_int_equal(proto_send(sv[0], &h, sizeof(h), nine, 9), -EINVAL);
	assert_int_equal(proto_send(sv[0], &h, sizeof(h), nine, -1), -EINVAL);
	close(mfd);
	close(sv[0]);
	close(sv[1]);
}

static void test_truncation_keeps_boundaries(void **state)
{
	char big[1000], small[100], next[64];
	int sv[2], mfd, fds[2], nfds = 2, before;
	struct proto_hdr *h = (struct proto_hdr *)big;

	pair(sv);
	mfd = memfd_create("x", MFD_CLOEXEC);
	assert_true(mfd >= 0);
	before = open_fds();
	memset(big, 'b', sizeof(big));
	proto_hdr_init(h, PROTO_STATS_JSON, sizeof(big));
	assert_int_equal(proto_send(sv[0], big, sizeof(big), &mfd, 1), 0);
	memset(next, 'n', sizeof(next));
	proto_hdr_init((struct proto_hdr *)next, PROTO_STATS_JSON, sizeof(next));
	assert_int_equal(proto_send(sv[0], next, sizeof(next), NULL, 0), 0);

	assert_int_equal(proto_recv(sv[1], small, sizeof(small), fds, &nfds), -EMSGSIZE);
	assert_int_equal(nfds, 0);
	assert_int_equal(open_fds(), before); /* the descriptor of the dropped message closed */

	/* The rest of the big message is gone; the next one arrives whole. */
	char got[sizeof(next)];
	nfds = 2;
	assert_int_equal(proto_recv(sv[1], got, sizeof(got), fds, &nfds), (ssize_t)sizeof(next));
	assert_int_equal(nfds, 0);
	assert_memory_equal(got, next, sizeof(next));
	close(mfd);
	close(sv[0]);
	close(sv[1]);
}

static void test_close_and_dead_peer(void **state)
{
	struct proto_hdr h;
	int sv[2], nfds = 0;
	struct sigaction sa = {.sa_handler = SIG_DFL}, old;

	/* SIGPIPE left at its default: a send to a dead peer must not kill the process. */
	sigaction(SIGPIPE, &sa, &old);
	pair(sv);
	proto_hdr_init(&h, PROTO_STATS, sizeof(h));
	close(sv[0]);
	assert_int_equal(proto_recv(sv[1], &h, sizeof(h), NULL, &nfds), 0);
	assert_int_equal(nfds, 0);
	assert_int_equal(proto_send(sv[1], &h, sizeof(h), NULL, 0), -EPIPE);
	close(sv[1]);
	assert_int_equal(proto_send(sv[1], &h, sizeof(h), NULL, 0), -EBADF);
	assert_int_equal(proto_recv(sv[1], &h, sizeof(h), NULL, NULL), -EBADF);
	sigaction(SIGPIPE, &old, NULL);
}

static void test_reply(void **state)
{
	static struct proto_reply r;
	char longtext[2000];
	int sv[2];

	pair(sv);
	assert_int_equal(proto_reply(sv[0], -ENOSPC, "vm %s: %d MiB", "web1", 512), 0);
	memset(&r, 0x55, sizeof(r));
	assert_int_equal(proto_recv(sv[1], &r, sizeof(r), NULL, NULL), (ssize_t)sizeof(r));
	assert_int_equal(proto_hdr_check(&r.hdr, sizeof(r)), 0);
	assert_int_equal(r.hdr.type, PROTO_REPLY);
	assert_int_equal(r.status, -ENOSPC);
	assert_string_equal(r.message, "vm web1: 512 MiB");
	/* The rest of the message field is zero, not stack garbage. */
	for (size_t i = strlen(r.message); i < sizeof(r.message); i++)
		assert_int_equal(r.message[i], 0);

	memset(longtext, 'L', sizeof(longtext) - 1);
	longtext[sizeof(longtext) - 1] = 0;
	assert_int_equal(proto_reply(sv[0], 0, "%s", longtext), 0);
	assert_int_equal(proto_recv(sv[1], &r, sizeof(r), NULL, NULL), (ssize_t)sizeof(r));
	assert_int_equal(r.status, 0);
	assert_int_equal(strlen(r.message), sizeof(r.message) - 1);
	close(sv[0]);
	close(sv[1]);
}

static void test_connect(void **state)
{
	char dir[] = "/tmp/test_proto.XXXXXX", path[200], longpath[200];
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct proto_hdr h;
	int ls, c, a;

	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/ctl.sock", dir);
	strcpy(sa.sun_path, path);
	ls = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	assert_true(ls >= 0);
	assert_int_equal(bind(ls, (struct sockaddr *)&sa, sizeof(sa)), 0);

	/* Bound but not listening. */
	assert_int_equal(proto_connect(path), -ECONNREFUSED);

	assert_int_equal(listen(ls, 4), 0);
	c = proto_connect(path);
	assert_true(c >= 0);
	assert_true(fcntl(c, F_GETFD) & FD_CLOEXEC);
	a = accept(ls, NULL, NULL);
	assert_true(a >= 0);
	proto_hdr_init(&h, PROTO_STATS, sizeof(h));
	assert_int_equal(proto_send(c, &h, sizeof(h), NULL, 0), 0);
	memset(&h, 0, sizeof(h));
	assert_int_equal(proto_recv(a, &h, sizeof(h), NULL, NULL), (ssize_t)sizeof(h));
	assert_int_equal(proto_hdr_check(&h, sizeof(h)), 0);
	int type = 0;
	socklen_t tl = sizeof(type);
	assert_int_equal(getsockopt(c, SOL_SOCKET, SO_TYPE, &type, &tl), 0);
	assert_int_equal(type, SOCK_SEQPACKET);
	close(a);
	close(c);

	snprintf(longpath, sizeof(longpath), "%s/no-such.sock", dir);
	assert_int_equal(proto_connect(longpath), -ENOENT);
	memset(longpath, 'p', sizeof(longpath) - 1);
	longpath[0] = '/';
	longpath[sizeof(longpath) - 1] = 0;
	assert_int_equal(proto_connect(longpath), -ENAMETOOLONG);
	/* The longest path that fits (107 bytes) is accepted up to the connect itself. */
	longpath[sizeof(sa.sun_path) - 1] = 0;
	assert_int_equal(proto_connect(longpath), -ENOENT);

	close(ls);
	unlink(path);
	rmdir(dir);
}

/* The daemon sends stats snapshots up to PROTO_MSG_MAX and uffdctl reads that much: a message
 * of that size must go through an ordinary socket (default buffer sizes). */
static void test_max_message(void **state)
{
	static char out[PROTO_MSG_MAX], in[PROTO_MSG_MAX];
	int sv[2], r;

	pair(sv);
	for (size_t i = 0; i < PROTO_MSG_MAX; i++)
		out[i] = (char)(i * 7 + 1);
	proto_hdr_init((struct proto_hdr *)out, PROTO_STATS_JSON, PROTO_MSG_MAX);
	r = proto_send(sv[0], out, PROTO_MSG_MAX, NULL, 0);
	if (r)
		print_error("proto_send of a PROTO_MSG_MAX (%d byte) message: %s\n", PROTO_MSG_MAX,
			    strerror(-r));
	assert_int_equal(r, 0);
	assert_int_equal(proto_recv(sv[1], in, PROTO_MSG_MAX, NULL, NULL), PROTO_MSG_MAX);
	assert_memory_equal(in, out, PROTO_MSG_MAX);
	close(sv[0]);
	close(sv[1]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_header),
	    cmocka_unit_test(test_register_with_fds),
	    cmocka_unit_test(test_fds_never_leak),
	    cmocka_unit_test(test_truncation_keeps_boundaries),
	    cmocka_unit_test(test_close_and_dead_peer),
	    cmocka_unit_test(test_reply),
	    cmocka_unit_test(test_connect),
	    cmocka_unit_test(test_max_message),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
