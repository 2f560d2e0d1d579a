/* test_promhttp: the /metrics HTTP server (uffd-mgr/promhttp.c), on a loopback port of its own
 * with a fetch function of this test's (the daemon's fetch is tested by
 * tests/system/metrics.sh against a real daemon).
 *
 * What it checks:
 *  - addresses: HOST:PORT, [IPV6]:PORT, :PORT, names, and the bad ones, each refused with the
 *    forms it accepts;
 *  - GET /metrics gives 200, the exposition content type, a Content-Length equal to the
 *    body's, the body; a query string is ignored; HEAD gives the headers only;
 *  - other paths 404, other methods 405 with Allow, garbage 400, a request past 8 KiB 431, a
 *    fetch that fails 503 with its reason;
 *  - a request that arrives a byte at a time is answered;
 *  - clients that connect and send nothing, or send half a request, or never read a large
 *    answer, do not keep another client from its answer;
 *  - promhttp_stop with connections still open; a second server on the same port is
 *    refused ("Address already in use"). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "uffd-mgr/promhttp.h"

static const char *body_text = "# HELP x y\n# TYPE x gauge\nx 1\n";
static size_t body_size; /* 0: strlen(body_text); else a body of this many 'a's */
static int fetch_error;	 /* what the fetch returns */
static int fetches;

/* Counts a fetch once its body is chosen, so a test that waits for the count may then change
 * what the next one gives. */
static int fetch(void *arg, char **body, size_t *len)
{
	int r = 0;

	(void)arg;
	if (fetch_error) {
		*body = strdup("the daemon is away");
		r = fetch_error;
	} else if (body_size) {
		*body = malloc(body_size);
		memset(*body, 'a', body_size);
		*len = body_size;
	} else {
		*body = strdup(body_text);
		*len = strlen(body_text);
	}
	__atomic_add_fetch(&fetches, 1, __ATOMIC_SEQ_CST);
	return r;
}

static struct promhttp *start(void)
{
	struct promhttp *h = NULL;
	char err[256];

	if (promhttp_start("127.0.0.1:0", fetch, NULL, &h, err, sizeof(err)))
		fail_msg("%s", err);
	assert_true(promhttp_port(h) > 0);
	return h;
}

static int connect_to(struct promhttp *h)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(promhttp_port(h))};
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct timeval tv = {.tv_sec = 20};

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_true(fd >= 0);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)); /* a hang fails, not blocks */
	return fd;
}

/* Everything the server sends until it closes, NUL-terminated (to free). */
static char *read_all(int fd, size_t *len)
{
	size_t cap = 1 << 16, n = 0;
	char *buf = malloc(cap + 1);
	ssize_t r;

	while ((r = recv(fd, buf + n, cap - n, 0)) > 0) {
		n += (size_t)r;
		if (n == cap)
			buf = realloc(buf, (cap *= 2) + 1);
	}
	assert_true(r == 0);
	buf[n] = 0;
	if (len)
		*len = n;
	return buf;
}

/* Sends req on a new connection; returns the whole answer (to free). */
static char *ask(struct promhttp *h, const char *req)
{
	int fd = connect_to(h);
	char *ans;

	assert_int_equal(send(fd, req, strlen(req), MSG_NOSIGNAL), (ssize_t)strlen(req));
	ans = read_all(fd, NULL);
	close(fd);
	return ans;
}

static void assert_status(const char *ans, const char *status)
{
	if (strncmp(ans, status, strlen(status)))
		fail_msg("answer '%.60s', expected '%s'", ans, status);
}

static void test_addresses(void **state)
{
	static const char *const good[] = {"127.0.0.1:9848", "[::1]:9848",    ":9848",
					   "localhost:0",    "0.0.0.0:65535", "[::]:1"};
	static const char *const bad[] = {
	    "",	    "9848",	"127.0.0.1", "127.0.0.1:", ":65536", ":-1",
	    ":98a", "::1:9848", "[::1]",     "[::1:9848",  ": 1"};
	struct sockaddr_storage sa;
	socklen_t len;
	char err[256];

	(void)state;
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		if (promhttp_parse_addr(good[i], &sa, &len, err, sizeof(err)))
			fail_msg("'%s' refused: %s", good[i], err);
	assert_int_equal(promhttp_parse_addr(":9848", &sa, &len, err, sizeof(err)), 0);
	assert_int_equal(sa.ss_family, AF_INET6);
	assert_int_equal(ntohs(((struct sockaddr_in6 *)&sa)->sin6_port), 9848);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = 0;
		if (promhttp_parse_addr(bad[i], &sa, &len, err, sizeof(err)) != -EINVAL)
			fail_msg("'%s' accepted", bad[i]);
		assert_non_null(strstr(err, "bad address"));
	}
	assert_int_equal(promhttp_parse_addr("9848", &sa, &len, err, sizeof(err)), -EINVAL);
	assert_string_equal(err, "bad address '9848' (use HOST:PORT, [IPV6]:PORT or :PORT, e.g. "
				 "127.0.0.1:9848)");
}

static void test_get_metrics(void **state)
{
	struct promhttp *h = start();
	char *ans, want[128];

	(void)state;
	ans = ask(h, "GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: text/plain\r\n\r\n");
	assert_status(ans, "HTTP/1.1 200 OK\r\n");
	assert_non_null(
	    strstr(ans, "\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"));
	snprintf(want, sizeof(want), "\r\nContent-Length: %zu\r\n", strlen(body_text));
	assert_non_null(strstr(ans, want));
	assert_string_equal(strstr(ans, "\r\n\r\n") + 4, body_text);
	free(ans);
	ans = ask(h, "GET /metrics?x=1 HTTP/1.0\n\n");
	assert_status(ans, "HTTP/1.1 200 OK\r\n");
	free(ans);
	ans = ask(h, "HEAD /metrics HTTP/1.1\r\n\r\n");
	assert_status(ans, "HTTP/1.1 200 OK\r\n");
	assert_non_null(strstr(ans, want)); /* the length GET would have */
	assert_string_equal(strstr(ans, "\r\n\r\n") + 4, "");
	free(ans);
	promhttp_stop(h);
}

static void test_errors(void **state)
{
	struct promhttp *h = start();
	char *ans, *big;

	(void)state;
	ans = ask(h, "GET / HTTP/1.1\r\n\r\n");
	assert_status(ans, "HTTP/1.1 404 Not Found\r\n");
	free(ans);
	ans = ask(h, "GET /metrics/x HTTP/1.1\r\n\r\n");
	assert_status(ans, "HTTP/1.1 404 Not Found\r\n");
	free(ans);
	ans = ask(h, "POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
	assert_status(ans, "HTTP/1.1 405 Method Not Allowed\r\n");
	assert_non_null(strstr(ans, "\r\nAllow: GET, HEAD\r\n"));
	free(ans);
	ans = ask(h, "hello\r\n\r\n");
	assert_status(ans, "HTTP/1.1 400 Bad Request\r\n");
	free(ans);
	/* 8191 bytes, all read before the answer: no unread data for the close to reset. */
	big = malloc(8192);
	memset(big, 'x', 8191);
	memcpy(big, "GET /metrics HTTP/1.1\r\nX: ", 26);
	big[8191] = 0;
	ans = ask(h, big);
	assert_status(ans, "HTTP/1.1 431 ");
	free(ans);
	free(big);
	fetch_error = -ECONNREFUSED;
	ans = ask(h, "GET /metrics HTTP/1.1\r\n\r\n");
	fetch_error = 0;
	assert_status(ans, "HTTP/1.1 503 Service Unavailable\r\n");
	assert_string_equal(strstr(ans, "\r\n\r\n") + 4, "no metrics: the daemon is away\n");
	free(ans);
	promhttp_stop(h);
}

static void test_byte_at_a_time(void **state)
{
	const char *req = "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";
	struct promhttp *h = start();
	int fd = connect_to(h);
	char *ans;

	(void)state;
	for (size_t i = 0; req[i]; i++) {
		assert_int_equal(send(fd, req + i, 1, MSG_NOSIGNAL), 1);
		usleep(1000);
	}
	ans = read_all(fd, NULL);
	assert_status(ans, "HTTP/1.1 200 OK\r\n");
	free(ans);
	close(fd);
	promhttp_stop(h);
}

/* Idle and stuck clients hold their own connections only. */
static void test_stuck_clients(void **state)
{
	struct promhttp *h = start();
	int idle = connect_to(h), half = connect_to(h), deaf = connect_to(h), rcvbuf = 4096, before;
	char *ans;

	(void)state;
	assert_int_equal(send(half, "GET /met", 8, MSG_NOSIGNAL), 8);
	/* deaf asks for 64 MiB and reads none of it: the server must not wait for it to read. */
	setsockopt(deaf, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
	body_size = 64u << 20;
	before = __atomic_load_n(&fetches, __ATOMIC_SEQ_CST);
	assert_int_equal(send(deaf, "GET /metrics HTTP/1.1\r\n\r\n", 25, MSG_NOSIGNAL), 25);
	while (__atomic_load_n(&fetches, __ATOMIC_SEQ_CST) == before)
		usleep(1000);
	body_size = 0;
	ans = ask(h, "GET /metrics HTTP/1.1\r\n\r\n");
	assert_status(ans, "HTTP/1.1 200 OK\r\n");
	assert_string_equal(strstr(ans, "\r\n\r\n") + 4, body_text);
	free(ans);
	promhttp_stop(h); /* with idle, half and deaf still open */
	close(idle);
	close(half);
	close(deaf);
}

static void test_port_in_use(void **state)
{
	struct promhttp *h = start(), *h2 = NULL;
	char addr[64], err[256] = "";

	(void)state;
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", promhttp_port(h));
	assert_int_equal(promhttp_start(addr, fetch, NULL, &h2, err, sizeof(err)), -EADDRINUSE);
	assert_null(h2);
	assert_non_null(strstr(err, "cannot listen on 127.0.0.1:"));
	assert_non_null(strstr(err, "Address already in use"));
	promhttp_stop(h);
	promhttp_stop(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_addresses),	  cmocka_unit_test(test_get_metrics),
	    cmocka_unit_test(test_errors),	  cmocka_unit_test(test_byte_at_a_time),
	    cmocka_unit_test(test_stuck_clients), cmocka_unit_test(test_port_in_use),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
