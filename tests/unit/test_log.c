/* test_log: log records (uffd-mgr/log.c) in journald's native protocol.
 *
 * Decodes what log_journal_encode writes, field by field, as journald does: a record with and
 * without a VM, a message holding newlines (the binary form with its little-endian length),
 * every buffer size short of the record (-ENOSPC, nothing half-written counted as success);
 * sends one through log_journal_send to a datagram socket of the test's own and decodes what
 * arrives; checks when stderr counts as the journal stream (JOURNAL_STREAM's DEV:INO); and that
 * log_msg falls back to stderr when the journal socket is not there. */
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
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "uffd-mgr/log.h"

#define MAX_FIELDS 8

struct field {
	char key[64];
	char val[2048];
	size_t len;
};

/* Decodes a native-protocol datagram as journald does. Returns the field count or -1. */
static int decode(const char *buf, size_t n, struct field *f)
{
	size_t at = 0;
	int nf = 0;

	while (at < n && nf < MAX_FIELDS) {
		size_t k = strcspn(buf + at, "=\n");
		const char *end;

		if (k >= sizeof(f[nf].key) || at + k >= n)
			return -1;
		memcpy(f[nf].key, buf + at, k);
		f[nf].key[k] = 0;
		at += k;
		if (buf[at] == '=') {
			end = memchr(buf + at + 1, '\n', n - at - 1);
			if (!end)
				return -1;
			f[nf].len = (size_t)(end - (buf + at + 1));
			memcpy(f[nf].val, buf + at + 1, f[nf].len);
			at = (size_t)(end - buf) + 1;
		} else {
			uint64_t len = 0;

			if (at + 9 > n)
				return -1;
			for (int i = 0; i < 8; i++)
				len |= (uint64_t)(unsigned char)buf[at + 1 + i] << (8 * i);
			at += 9;
			if (len >= sizeof(f[nf].val) || at + len + 1 > n || buf[at + len] != '\n')
				return -1;
			f[nf].len = len;
			memcpy(f[nf].val, buf + at, len);
			at += len + 1;
		}
		f[nf].val[f[nf].len] = 0;
		nf++;
	}
	return at == n ? nf : -1;
}

static const char *get(const struct field *f, int nf, const char *key)
{
	for (int i = 0; i < nf; i++)
		if (!strcmp(f[i].key, key))
			return f[i].val;
	return NULL;
}

static void test_fields_with_vm(void **state)
{
	struct field f[MAX_FIELDS];
	char buf[2048];
	int n = log_journal_encode(buf, sizeof(buf), LOG_WARN, "web1", "tier full");
	int nf;

	assert_true(n > 0);
	nf = decode(buf, (size_t)n, f);
	assert_int_equal(nf, 4);
	assert_string_equal(get(f, nf, "MESSAGE"), "warn [web1]: tier full");
	assert_string_equal(get(f, nf, "PRIORITY"), "4");
	assert_string_equal(get(f, nf, "SYSLOG_IDENTIFIER"), "uffd-mgrd");
	assert_string_equal(get(f, nf, "UFFD_VM"), "web1");
}

static void test_fields_host_wide(void **state)
{
	static const struct {
		enum log_level level;
		const char *prio, *word;
	} levels[] = {{LOG_ERR, "3", "error"},
		      {LOG_WARN, "4", "warn"},
		      {LOG_INFO, "6", "info"},
		      {LOG_DEBUG, "7", "debug"}};
	struct field f[MAX_FIELDS];
	char buf[2048], want[64];

	for (size_t i = 0; i < sizeof(levels) / sizeof(levels[0]); i++) {
		int n = log_journal_encode(buf, sizeof(buf), levels[i].level, NULL, "listening");
		int nf = decode(buf, (size_t)n, f);

		assert_int_equal(nf, 3);
		snprintf(want, sizeof(want), "%s: listening", levels[i].word);
		assert_string_equal(get(f, nf, "MESSAGE"), want);
		assert_string_equal(get(f, nf, "PRIORITY"), levels[i].prio);
		assert_null(get(f, nf, "UFFD_VM"));
	}
}

/* A newline in a value cannot go as KEY=value: it takes the binary form. */
static void test_newline_binary(void **state)
{
	const char *text = "line one\nline two=still two\n";
	struct field f[MAX_FIELDS];
	char buf[2048], want[128];
	int n = log_journal_encode(buf, sizeof(buf), LOG_ERR, "vm-2", text);
	int nf = decode(buf, (size_t)n, f);

	assert_int_equal(nf, 4);
	snprintf(want, sizeof(want), "error [vm-2]: %s", text);
	assert_string_equal(get(f, nf, "MESSAGE"), want);
	assert_int_equal(f[0].len, strlen(want));
	assert_memory_equal(buf, "MESSAGE\n", 8);
	assert_string_equal(get(f, nf, "UFFD_VM"), "vm-2");
}

static void test_nospc(void **state)
{
	char buf[2048];
	int full = log_journal_encode(buf, sizeof(buf), LOG_INFO, "web1", "a\nb");

	assert_true(full > 0);
	for (int len = 0; len < full; len++)
		assert_int_equal(log_journal_encode(buf, (size_t)len, LOG_INFO, "web1", "a\nb"),
				 -ENOSPC);
	assert_int_equal(log_journal_encode(buf, (size_t)full, LOG_INFO, "web1", "a\nb"), full);
}

static void test_send(void **state)
{
	char dir[] = "/tmp/test_log.XXXXXX", path[128], buf[4096];
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct field f[MAX_FIELDS];
	int fd, nf;
	ssize_t n;

	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/socket", dir);
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_DGRAM, 0);
	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(log_journal_send(path, LOG_INFO, "db.3", "registered pid 7"), 0);
	n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
	assert_true(n > 0);
	nf = decode(buf, (size_t)n, f);
	assert_int_equal(nf, 4);
	assert_string_equal(get(f, nf, "MESSAGE"), "info [db.3]: registered pid 7");
	assert_string_equal(get(f, nf, "UFFD_VM"), "db.3");
	close(fd);
	unlink(path);
	/* Nobody listening: an error for the caller to fall back on, not a hang. */
	assert_true(log_journal_send(path, LOG_INFO, NULL, "x") < 0);
	rmdir(dir);
}

static void set_stream(dev_t dev, ino_t ino)
{
	char v[64];

	snprintf(v, sizeof(v), "%llu:%llu", (unsigned long long)dev, (unsigned long long)ino);
	setenv("JOURNAL_STREAM", v, 1);
}

/* stderr is a file of the test's; JOURNAL_STREAM names it, or something else. */
static void test_to_journal(void **state)
{
	char path[] = "/tmp/test_log.err.XXXXXX";
	int saved = dup(STDERR_FILENO), fd = mkstemp(path);
	struct stat sb;

	assert_true(fd >= 0 && saved >= 0);
	assert_int_equal(fstat(fd, &sb), 0);
	dup2(fd, STDERR_FILENO);
	unsetenv("JOURNAL_STREAM");
	assert_false(log_to_journal());
	set_stream(sb.st_dev, sb.st_ino);
	assert_true(log_to_journal());
	set_stream(sb.st_dev, sb.st_ino + 1);
	assert_false(log_to_journal());
	setenv("JOURNAL_STREAM", "garbage", 1);
	assert_false(log_to_journal());

	/* With no journal listening the record still goes out, on stderr. */
	if (access(LOG_JOURNAL_SOCKET, F_OK) != 0) {
		char line[256] = "";
		FILE *in;

		set_stream(sb.st_dev, sb.st_ino);
		log_msg(LOG_WARN, "web1", "fallback %d", 42);
		fflush(stderr);
		in = fopen(path, "r");
		assert_non_null(in);
		assert_non_null(fgets(line, sizeof(line), in));
		fclose(in);
		assert_non_null(strstr(line, "uffd-mgrd warn [web1]: fallback 42"));
	}
	unsetenv("JOURNAL_STREAM");
	dup2(saved, STDERR_FILENO);
	close(saved);
	close(fd);
	unlink(path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_fields_with_vm), cmocka_unit_test(test_fields_host_wide),
	    cmocka_unit_test(test_newline_binary), cmocka_unit_test(test_nospc),
	    cmocka_unit_test(test_send),	   cmocka_unit_test(test_to_journal),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
