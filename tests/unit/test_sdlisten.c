/* test_sdlisten: taking the socket systemd passes (uffd-mgr/sdlisten.c).
 *
 * Puts a socket of the test's own at fd 3 with LISTEN_PID and LISTEN_FDS set as systemd sets
 * them, and checks a table of set-ups: the right socket is taken (close-on-exec, non-blocking,
 * the variables unset); variables meant for another pid, or none, leave it alone; a socket of
 * the wrong type, one not listening, one bound elsewhere (another path, the abstract
 * namespace), two sockets or no socket at all are refused with a reason. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "uffd-mgr/sdlisten.h"

enum kind { SEQ_LISTEN, SEQ_ABSTRACT, SEQ_NOT_LISTENING, STREAM_LISTEN, PIPE, OTHER_PATH };

struct sd_case {
	const char *name;
	enum kind kind;
	int pid_delta; /* LISTEN_PID = getpid() + this */
	const char *fds;
	int want;	 /* SDLISTEN_FD or -errno */
	const char *why; /* a word of the reason */
};

static const struct sd_case cases[] = {
    {"taken", SEQ_LISTEN, 0, "1", SDLISTEN_FD, NULL},
    {"another pid's", SEQ_LISTEN, 1, "1", -ENOENT, NULL},
    {"none passed", SEQ_LISTEN, 0, "0", -ENOENT, NULL},
    {"two", SEQ_LISTEN, 0, "2", -EINVAL, "2 sockets"},
    {"stream", STREAM_LISTEN, 0, "1", -EPROTOTYPE, "ListenSequentialPacket"},
    {"not listening", SEQ_NOT_LISTENING, 0, "1", -EPROTOTYPE, "ListenSequentialPacket"},
    {"abstract", SEQ_ABSTRACT, 0, "1", -EADDRNOTAVAIL, "--socket"},
    {"elsewhere", OTHER_PATH, 0, "1", -EADDRNOTAVAIL, "--socket"},
    {"pipe", PIPE, 0, "1", -ENOTSOCK, "not a socket"},
};

/* Makes the case's descriptor and puts it at fd 3. */
static void make_fd(enum kind kind, const char *path, const char *other)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd, p[2];

	if (kind == PIPE) {
		assert_int_equal(pipe(p), 0);
		close(p[1]);
		fd = p[0];
	} else {
		fd = socket(AF_UNIX, kind == STREAM_LISTEN ? SOCK_STREAM : SOCK_SEQPACKET, 0);
		assert_true(fd >= 0);
		strcpy(sa.sun_path, kind == OTHER_PATH ? other : path);
		unlink(sa.sun_path);
		if (kind == SEQ_ABSTRACT)
			sa.sun_path[0] = 0; /* the same name, in the abstract namespace */
		assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
		if (kind != SEQ_NOT_LISTENING)
			assert_int_equal(listen(fd, 4), 0);
	}
	if (fd != SDLISTEN_FD) {
		assert_int_equal(dup2(fd, SDLISTEN_FD), SDLISTEN_FD);
		close(fd);
	}
}

static void test_table(void **state)
{
	char dir[] = "/tmp/test_sdlisten.XXXXXX", path[128], other[128], pid[32], err[256];

	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/uffd-mgr.sock", dir);
	snprintf(other, sizeof(other), "%s/other.sock", dir);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct sd_case *c = &cases[i];
		int r;

		make_fd(c->kind, path, other);
		snprintf(pid, sizeof(pid), "%d", getpid() + c->pid_delta);
		setenv("LISTEN_PID", pid, 1);
		setenv("LISTEN_FDS", c->fds, 1);
		setenv("LISTEN_FDNAMES", "uffd-mgrd.socket", 1);
		err[0] = 0;
		r = sdlisten_take(path, err, sizeof(err));
		print_message("%s: %d %s\n", c->name, r, err);
		assert_int_equal(r, c->want);
		if (c->why)
			assert_non_null(strstr(err, c->why));
		/* Only the variables meant for us are ours to unset. */
		assert_true((getenv("LISTEN_PID") == NULL) == (c->pid_delta == 0));
		if (r == SDLISTEN_FD) {
			assert_true(fcntl(r, F_GETFD) & FD_CLOEXEC);
			assert_true(fcntl(r, F_GETFL) & O_NONBLOCK);
			assert_null(getenv("LISTEN_FDS"));
			assert_null(getenv("LISTEN_FDNAMES"));
		}
		close(SDLISTEN_FD);
	}
	unsetenv("LISTEN_PID");
	unsetenv("LISTEN_FDS");
	unsetenv("LISTEN_FDNAMES");
	assert_int_equal(sdlisten_take(path, err, sizeof(err)), -ENOENT);
	unlink(path);
	unlink(other);
	rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_table),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
