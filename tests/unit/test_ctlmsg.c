/* test_ctlmsg: what the daemon makes of a control message (uffd-mgr/ctlmsg.c), and the
 * stats stream.
 *
 * A table of messages (type, length, flags, descriptor count, unterminated strings; from a
 * new connection and from a registered shim) with the action each must get. Then snapshots
 * through a SOCK_SEQPACKET pair: a small one is one PROTO_STATS_JSON as before; one as large
 * as 300 VMs' (2 MiB here) goes out in pieces as the reader makes room, never blocking the
 * sender, and arrives whole and byte-exact; a second snapshot while one is pending is -EBUSY
 * (the reader is behind); a refusal comes back as -EPERM with its line; a stream that lies
 * is -EPROTO. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "uffd-mgr/ctlmsg.h"
#include "uffd-mgr/proto.h"

enum mutation { M_NONE, M_SHORT, M_LONG, M_FLAGS, M_ARMING_ONLY, M_NAME, M_QMP, M_MAGIC, M_ID };

struct check_case {
	const char *name;
	bool shim;
	uint16_t type;
	size_t len; /* 0: the type's own size */
	uint32_t flags;
	int nfds;
	enum mutation mut;
	enum ctlmsg_action want;
};

static const struct check_case cases[] = {
    {"register", false, PROTO_REGISTER, 0, 0, 2, M_NONE, CTL_REGISTER},
    {"resume", false, PROTO_REGISTER, 0, PROTO_REG_RESUME, 4, M_NONE, CTL_REGISTER},
    {"resume with disk", false, PROTO_REGISTER, 0, PROTO_REG_RESUME | PROTO_REG_ARMING, 5,
     M_NONE, CTL_REGISTER},
    {"register, 1 fd", false, PROTO_REGISTER, 0, 0, 1, M_NONE, CTL_DROP},
    {"register, 4 fds", false, PROTO_REGISTER, 0, 0, 4, M_NONE, CTL_DROP},
    {"resume, 2 fds", false, PROTO_REGISTER, 0, PROTO_REG_RESUME, 2, M_NONE, CTL_DROP},
    {"register, short", false, PROTO_REGISTER, 0, 0, 2, M_SHORT, CTL_DROP},
    {"register, long", false, PROTO_REGISTER, 0, 0, 2, M_LONG, CTL_DROP},
    {"register, unknown flag", false, PROTO_REGISTER, 0, 0, 2, M_FLAGS, CTL_DROP},
    {"register, arming without resume", false, PROTO_REGISTER, 0, 0, 2, M_ARMING_ONLY, CTL_DROP},
    {"register, name not terminated", false, PROTO_REGISTER, 0, 0, 2, M_NAME, CTL_DROP},
    {"register, qmp path not terminated", false, PROTO_REGISTER, 0, 0, 2, M_QMP, CTL_DROP},
    {"bad magic", false, PROTO_REGISTER, 0, 0, 2, M_MAGIC, CTL_DROP},
    {"register, backend id not terminated", false, PROTO_REGISTER, 0, 0, 2, M_ID, CTL_DROP},
    {"register of an older shim (no backend)", false, PROTO_REGISTER, PROTO_REGISTER_V2_LEN, 0,
     2, M_NONE, CTL_REGISTER},
    {"resume of an older shim (no backend)", false, PROTO_REGISTER, PROTO_REGISTER_V2_LEN,
     PROTO_REG_RESUME, 4, M_NONE, CTL_REGISTER},
    {"uffd device", false, PROTO_UFFD_DEV, sizeof(struct proto_hdr), 0, 0, M_NONE,
     CTL_UFFD_DEV},
    {"uffd device with a fd", false, PROTO_UFFD_DEV, sizeof(struct proto_hdr), 0, 1, M_NONE,
     CTL_DROP},
    {"shim: uffd device", true, PROTO_UFFD_DEV, sizeof(struct proto_hdr), 0, 0, M_NONE,
     CTL_IGNORE},
    {"stats, header only", false, PROTO_STATS, sizeof(struct proto_hdr), 0, 0, M_NONE, CTL_STATS},
    {"stats", false, PROTO_STATS, sizeof(struct proto_stats_req), 0, 0, M_NONE, CTL_STATS},
    {"stats with a fd", false, PROTO_STATS, sizeof(struct proto_stats_req), 0, 1, M_NONE,
     CTL_DROP},
    {"watch", false, PROTO_STATS_WATCH, sizeof(struct proto_stats_req), 0, 0, M_NONE, CTL_WATCH},
    {"watch, header only", false, PROTO_STATS_WATCH, sizeof(struct proto_hdr), 0, 0, M_NONE,
     CTL_DROP},
    {"upgrade", false, PROTO_UPGRADE, sizeof(struct proto_hdr), 0, 0, M_NONE, CTL_UPGRADE},
    {"upgrade, long", false, PROTO_UPGRADE, 64, 0, 0, M_NONE, CTL_DROP},
    {"reply from a client", false, PROTO_REPLY, sizeof(struct proto_reply), 0, 0, M_NONE,
     CTL_DROP},
    {"type 999", false, 999, sizeof(struct proto_hdr), 0, 0, M_NONE, CTL_DROP},
    {"arm done before registering", false, PROTO_ARM_DONE, sizeof(struct proto_arm_done), 0, 0,
     M_NONE, CTL_DROP},
    {"shim: arm done", true, PROTO_ARM_DONE, sizeof(struct proto_arm_done), 0, 0, M_NONE,
     CTL_ARM_DONE},
    {"shim: arm done with a fd", true, PROTO_ARM_DONE, sizeof(struct proto_arm_done), 0, 1,
     M_NONE, CTL_IGNORE},
    {"shim: second register", true, PROTO_REGISTER, 0, 0, 2, M_NONE, CTL_IGNORE},
    {"shim: garbage", true, PROTO_STATS, 8, 0, 0, M_NONE, CTL_DROP},
};

static void test_check(void **state)
{
	const struct check_case *c = *state;
	static union {
		struct proto_register reg;
		char raw[8192];
	} msg;
	size_t len = c->len ? c->len : c->type == PROTO_REGISTER ? sizeof(msg.reg) : 16;
	char why[256];
	enum ctlmsg_action got;

	memset(&msg, 0, sizeof(msg));
	if (c->mut == M_SHORT)
		len -= 8;
	if (c->mut == M_LONG)
		len += 8;
	proto_hdr_init(&msg.reg.hdr, (enum proto_type)c->type, len);
	msg.reg.flags = c->flags | (c->mut == M_FLAGS ? 0x100u : 0) |
			(c->mut == M_ARMING_ONLY ? PROTO_REG_ARMING : 0);
	strcpy(msg.reg.vm_name, "web");
	if (c->mut == M_NAME)
		memset(msg.reg.vm_name, 'a', sizeof(msg.reg.vm_name));
	if (c->mut == M_QMP)
		memset(msg.reg.qmp_path, '/', sizeof(msg.reg.qmp_path));
	if (c->mut == M_MAGIC)
		msg.reg.hdr.magic ^= 1;
	if (c->mut == M_ID)
		memset(msg.reg.backend.id, 'n', sizeof(msg.reg.backend.id));
	got = ctlmsg_check(c->shim, &msg, len, c->nfds, why, sizeof(why));
	if (got != c->want)
		fail_msg("%s: action %d, expected %d (%s)", c->name, got, c->want, why);
	if (got == CTL_DROP) {
		assert_true(why[0]);
		print_message("%-36s %s\n", c->name, why);
	}
}

static char *text_of(size_t len)
{
	char *t = malloc(len + 1);

	for (size_t i = 0; i < len; i++)
		t[i] = (char)('a' + (i * 7 + i / 4099) % 26);
	t[len] = 0;
	return t;
}

static void pair(int sv[2])
{
	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
	assert_int_equal(fcntl(sv[0], F_SETFL, O_NONBLOCK), 0);
}

static void test_small_snapshot_one_message(void **state)
{
	struct ctlmsg_out out = {0};
	char buf[256];
	int sv[2];

	pair(sv);
	assert_int_equal(ctlmsg_send_json(sv[0], &out, "{\"vms\": []}", 11), 0);
	assert_null(out.text);
	assert_int_equal(recv(sv[1], buf, sizeof(buf), 0), sizeof(struct proto_hdr) + 12);
	assert_int_equal(((struct proto_hdr *)buf)->type, PROTO_STATS_JSON);
	assert_string_equal(buf + sizeof(struct proto_hdr), "{\"vms\": []}");
	close(sv[0]);
	close(sv[1]);
}

/* The reader takes one message each time the sender is told the socket is full: the
 * snapshot goes out in as many rounds as it needs, never blocking the sender. */
static void test_large_snapshot(void **state)
{
	size_t len = 2u << 20;
	struct ctlmsg_out out = {0};
	char *t = text_of(len), *got = malloc(len + 1);
	char msg[sizeof(struct proto_hdr) + CTLMSG_CHUNK + 1];
	size_t have = 0;
	int sv[2], r, rounds = 0;

	pair(sv);
	r = ctlmsg_send_json(sv[0], &out, t, len);
	assert_int_equal(r, -EAGAIN);
	/* A second snapshot while the first is pending: the reader is behind. */
	assert_int_equal(ctlmsg_send_json(sv[0], &out, t, len), -EBUSY);
	for (;;) {
		ssize_t n = recv(sv[1], msg, sizeof(msg), 0);
		const struct proto_hdr *h = (const struct proto_hdr *)msg;

		assert_true(n > (ssize_t)sizeof(*h));
		assert_int_equal(proto_hdr_check(h, (size_t)n), 0);
		memcpy(got + have, msg + sizeof(*h), (size_t)n - sizeof(*h));
		have += (size_t)n - sizeof(*h);
		if (h->type == PROTO_STATS_JSON)
			break;
		assert_int_equal(h->type, PROTO_STATS_PART);
		if (r == -EAGAIN) {
			r = ctlmsg_flush(sv[0], &out);
			rounds++;
		}
	}
	assert_int_equal(r, 0);
	assert_null(out.text);
	assert_int_equal(have, len + 1);
	assert_memory_equal(got, t, len + 1);
	print_message("2 MiB in %d flushes\n", rounds);
	close(sv[0]);
	close(sv[1]);
	free(got);
	free(t);
}

/* ctlmsg_recv_json on the other end of a sender flushed as room appears. */
static void test_recv_reassembles(void **state)
{
	size_t len = 1u << 20;
	struct ctlmsg_out out = {0};
	char *t = text_of(len), *got = NULL;
	int sv[2];

	pair(sv);
	if (fork() == 0) {
		int r = ctlmsg_send_json(sv[0], &out, t, len);

		while (r == -EAGAIN) {
			usleep(1000);
			r = ctlmsg_flush(sv[0], &out);
		}
		_exit(r ? 1 : 0);
	}
	close(sv[0]);
	assert_int_equal(ctlmsg_recv_json(sv[1], &got), (ssize_t)len);
	assert_memory_equal(got, t, len + 1);
	free(got);
	free(t);
	close(sv[1]);
}

static void test_refusal_and_lies(void **state)
{
	struct proto_hdr h;
	char *got = NULL;
	int sv[2];

	pair(sv);
	assert_int_equal(proto_reply(sv[0], -EPERM, "permission denied: pid 1 may not read stats"),
			 0);
	assert_int_equal(ctlmsg_recv_json(sv[1], &got), -EPERM);
	assert_string_equal(got, "permission denied: pid 1 may not read stats");
	free(got);
	proto_hdr_init(&h, PROTO_STATS_PART, sizeof(h));
	assert_int_equal(send(sv[0], &h, sizeof(h), 0), sizeof(h));
	proto_hdr_init(&h, PROTO_ARM, sizeof(h));
	assert_int_equal(send(sv[0], &h, sizeof(h), 0), sizeof(h));
	assert_int_equal(ctlmsg_recv_json(sv[1], &got), -EPROTO);
	assert_null(got);
	close(sv[0]);
	assert_int_equal(ctlmsg_recv_json(sv[1], &got), 0);
	close(sv[1]);
}

int main(void)
{
	struct CMUnitTest tests[sizeof(cases) / sizeof(cases[0]) + 4];
	size_t n = 0;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		tests[n++] = (struct CMUnitTest){
		    .name = cases[i].name, .test_func = test_check, .initial_state = (void *)&cases[i]};
	tests[n++] = (struct CMUnitTest)cmocka_unit_test(test_small_snapshot_one_message);
	tests[n++] = (struct CMUnitTest)cmocka_unit_test(test_large_snapshot);
	tests[n++] = (struct CMUnitTest)cmocka_unit_test(test_recv_reassembles);
	tests[n++] = (struct CMUnitTest)cmocka_unit_test(test_refusal_and_lies);
	return _cmocka_run_group_tests("ctlmsg", tests, n, NULL, NULL) ? 1 : 0;
}
