/* sdlisten: see sdlisten.h. */
#include "uffd-mgr/sdlisten.h"

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "uffd-mgr/log.h"

/* Parses a decimal environment variable; -1 when absent or not a number. */
static long env_num(const char *key)
{
	const char *s = getenv(key);
	char *end;
	long v;

	if (!s || !*s)
		return -1;
	errno = 0;
	v = strtol(s, &end, 10);
	return errno || *end || v < 0 ? -1 : v;
}

static int sockopt(int fd, int opt, int *val)
{
	socklen_t len = sizeof(*val);

	return getsockopt(fd, SOL_SOCKET, opt, val, &len) < 0 ? -errno : 0;
}

/* Checks that fd is a listening AF_UNIX SOCK_SEQPACKET socket bound to path. */
static int check_socket(int fd, const char *path, char *err, size_t errlen)
{
	struct sockaddr_un sa;
	socklen_t len = sizeof(sa);
	int domain, type, listening;

	if (sockopt(fd, SO_DOMAIN, &domain) || sockopt(fd, SO_TYPE, &type) ||
	    sockopt(fd, SO_ACCEPTCONN, &listening)) {
		err_set(err, errlen, "systemd passed fd %d, which is not a socket", fd);
		return -ENOTSOCK;
	}
	if (domain != AF_UNIX || type != SOCK_SEQPACKET || !listening) {
		err_set(err, errlen,
			"systemd passed a socket that is not a listening unix seqpacket socket "
			"(the unit must say ListenSequentialPacket=%s)",
			path);
		return -EPROTOTYPE;
	}
	memset(&sa, 0, sizeof(sa));
	if (getsockname(fd, (struct sockaddr *)&sa, &len) < 0)
		return -errno;
	if (len <= offsetof(struct sockaddr_un, sun_path) ||
	    strncmp(sa.sun_path, path, sizeof(sa.sun_path))) {
		bool abstract = len > offsetof(struct sockaddr_un, sun_path) && !sa.sun_path[0];

		err_set(err, errlen, "systemd passed a socket bound to %s%.*s, but --socket is %s",
			abstract ? "@" : "", (int)sizeof(sa.sun_path) - 1, sa.sun_path + abstract,
			path);
		return -EADDRNOTAVAIL;
	}
	return 0;
}

int sdlisten_take(const char *path, char *err, size_t errlen)
{
	long pid = env_num("LISTEN_PID"), n = env_num("LISTEN_FDS");
	int r;

	/* Set for another process (a parent's, inherited): not ours, leave it alone. */
	if (pid != (long)getpid() || n < 0)
		return -ENOENT;
	unsetenv("LISTEN_PID");
	unsetenv("LISTEN_FDS");
	unsetenv("LISTEN_FDNAMES");
	if (n == 0)
		return -ENOENT;
	if (n != 1) {
		err_set(err, errlen, "systemd passed %ld sockets; uffd-mgrd serves one (%s)", n,
			path);
		return -EINVAL;
	}
	r = check_socket(SDLISTEN_FD, path, err, errlen);
	if (r)
		return r;
	if (fcntl(SDLISTEN_FD, F_SETFD, FD_CLOEXEC) < 0 ||
	    fcntl(SDLISTEN_FD, F_SETFL, fcntl(SDLISTEN_FD, F_GETFL) | O_NONBLOCK) < 0)
		return -errno;
	return SDLISTEN_FD;
}
