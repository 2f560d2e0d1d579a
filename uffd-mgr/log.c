/* log: see log.h. One fprintf (or one datagram) per record so records from different threads
 * do not interleave. */
#include "uffd-mgr/log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define LOG_IDENT "uffd-mgrd"

static const char *const level_names[] = {"error", "warn", "info", "debug"};
/* syslog(3)'s LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG: journald's PRIORITY. */
static const char *const level_prio[] = {"3", "4", "6", "7"};

bool log_to_journal(void)
{
	const char *js = getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;
	struct stat sb;

	if (!js || sscanf(js, "%llu:%llu", &dev, &ino) != 2 || fstat(STDERR_FILENO, &sb) < 0)
		return false;
	return (unsigned long long)sb.st_dev == dev && (unsigned long long)sb.st_ino == ino;
}

/* Appends one field at *at; returns -ENOSPC when it does not fit. */
static int put_field(char *buf, size_t len, size_t *at, const char *key, const char *val)
{
	size_t k = strlen(key), v = strlen(val);
	bool binary = memchr(val, '\n', v) != NULL;
	size_t need = k + 1 + (binary ? 8 : 0) + v + 1;

	if (len - *at < need)
		return -ENOSPC;
	memcpy(buf + *at, key, k);
	*at += k;
	buf[(*at)++] = binary ? '\n' : '=';
	if (binary) {
		uint64_t le = v;

		/* The length is little-endian on the wire, whatever the host. */
		for (int i = 0; i < 8; i++)
			buf[(*at)++] = (char)(le >> (8 * i));
	}
	memcpy(buf + *at, val, v);
	*at += v;
	buf[(*at)++] = '\n';
	return 0;
}

int log_journal_encode(char *buf, size_t len, enum log_level level, const char *vm,
		       const char *text)
{
	char msg[1200];
	size_t at = 0;

	/* The same words as on stderr, less what journald stamps itself (time, identifier). */
	snprintf(msg, sizeof(msg), "%s%s%s%s: %s", level_names[level], vm ? " [" : "", vm ? vm : "",
		 vm ? "]" : "", text);
	if (put_field(buf, len, &at, "MESSAGE", msg) ||
	    put_field(buf, len, &at, "PRIORITY", level_prio[level]) ||
	    put_field(buf, len, &at, "SYSLOG_IDENTIFIER", LOG_IDENT) ||
	    (vm && put_field(buf, len, &at, "UFFD_VM", vm)))
		return -ENOSPC;
	return (int)at;
}

int log_journal_send(const char *path, enum log_level level, const char *vm, const char *text)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	char buf[2048];
	int fd, r, n = log_journal_encode(buf, sizeof(buf), level, vm, text);

	if (n < 0)
		return n;
	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	strcpy(sa.sun_path, path);
	/* A socket per record keeps this module stateless; records are rare next to faults. */
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	/* Never block a fault thread on a journal that does not keep up. */
	r = sendto(fd, buf, (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL, (struct sockaddr *)&sa,
		   sizeof(sa)) < 0
		? -errno
		: 0;
	close(fd);
	return r;
}

void log_msg(enum log_level level, const char *vm, const char *fmt, ...)
{
	char text[1024];
	struct timespec ts;
	struct tm tm;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	if (log_to_journal() && !log_journal_send(LOG_JOURNAL_SOCKET, level, vm, text))
		return;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	fprintf(stderr, "%02d:%02d:%02d.%03ld uffd-mgrd %s%s%s%s: %s\n", tm.tm_hour, tm.tm_min,
		tm.tm_sec, ts.tv_nsec / 1000000, level_names[level], vm ? " [" : "", vm ? vm : "",
		vm ? "]" : "", text);
}

void err_set(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (!err || !errlen)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}
