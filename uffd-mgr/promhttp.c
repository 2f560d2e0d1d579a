/* promhttp: see promhttp.h. One thread, one poll loop; every socket non-blocking. */
#include "uffd-mgr/promhttp.h"

#include <errno.h>
#include <json-c/json.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "uffd-mgr/ctlmsg.h"
#include "uffd-mgr/log.h"
#include "uffd-mgr/metrics.h"
#include "uffd-mgr/proto.h"

#define REQ_MAX 8192

struct conn {
	int fd;
	uint64_t deadline_ns;
	char in[REQ_MAX];
	size_t inlen;
	char *out; /* the answer, once the request is read; NULL before */
	size_t outlen, outoff;
};

struct promhttp {
	int listen_fd, stop_fd, port;
	pthread_t thread;
	promhttp_fetch_fn fetch;
	void *arg;
	struct conn c[PROMHTTP_MAX_CLIENTS];
	int n;
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Splits "HOST:PORT", "[V6]:PORT" or ":PORT" into host (empty for every address) and port. */
static int split_addr(const char *text, char *host, size_t hlen, long *port, char *err,
		      size_t errlen)
{
	const char *colon = strrchr(text, ':'), *h = text;
	size_t n;
	char *end;

	if (!colon || !colon[1])
		goto bad;
	n = (size_t)(colon - text);
	if (text[0] == '[') {
		if (n < 2 || text[n - 1] != ']')
			goto bad;
		h = text + 1;
		n -= 2;
	} else if (memchr(text, ':', n)) {
		goto bad; /* an IPv6 address needs its brackets */
	}
	if (n >= hlen)
		goto bad;
	memcpy(host, h, n);
	host[n] = 0;
	errno = 0;
	*port = strtol(colon + 1, &end, 10);
	if (errno || *end || *port < 0 || *port > 65535 || !(colon[1] >= '0' && colon[1] <= '9'))
		goto bad;
	return 0;
bad:
	err_set(err, errlen,
		"bad address '%s' (use HOST:PORT, [IPV6]:PORT or :PORT, e.g. 127.0.0.1:9848)",
		text);
	return -EINVAL;
}

int promhttp_parse_addr(const char *text, struct sockaddr_storage *sa, socklen_t *salen, char *err,
			size_t errlen)
{
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *ai;
	char host[256];
	long port;
	int r = split_addr(text, host, sizeof(host), &port, err, errlen);

	if (r)
		return r;
	memset(sa, 0, sizeof(*sa));
	if (!host[0]) { /* every address: IPv6 with IPv4 mapped (promhttp_start falls back) */
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)sa;

		s6->sin6_family = AF_INET6;
		s6->sin6_addr = in6addr_any;
		s6->sin6_port = htons((uint16_t)port);
		*salen = sizeof(*s6);
		return 0;
	}
	r = getaddrinfo(host, NULL, &hints, &ai);
	if (r) {
		err_set(err, errlen, "bad address '%s': %s", text, gai_strerror(r));
		return -EINVAL;
	}
	memcpy(sa, ai->ai_addr, ai->ai_addrlen);
	*salen = ai->ai_addrlen;
	freeaddrinfo(ai);
	if (sa->ss_family == AF_INET6)
		((struct sockaddr_in6 *)sa)->sin6_port = htons((uint16_t)port);
	else
		((struct sockaddr_in *)sa)->sin_port = htons((uint16_t)port);
	return 0;
}

/* A listening socket on sa; an IPv6 wildcard also takes IPv4, or becomes 0.0.0.0 on a host
 * without IPv6. Returns the fd or -errno. */
static int listen_tcp(struct sockaddr_storage *sa, socklen_t salen)
{
	int fd = socket(sa->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), one = 1;
	int zero = 0, r;

	if (fd < 0 && errno == EAFNOSUPPORT && sa->ss_family == AF_INET6 &&
	    IN6_IS_ADDR_UNSPECIFIED(&((struct sockaddr_in6 *)sa)->sin6_addr)) {
		struct sockaddr_in v4 = {.sin_family = AF_INET,
					 .sin_port = ((struct sockaddr_in6 *)sa)->sin6_port};

		memcpy(sa, &v4, sizeof(v4));
		salen = sizeof(v4);
		fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	}
	if (fd < 0)
		return -errno;
	/* Rebinding at once after an upgrade's exec or a restart, past TIME_WAIT. */
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (sa->ss_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
	if (bind(fd, (struct sockaddr *)sa, salen) < 0 || listen(fd, 64) < 0) {
		r = -errno;
		close(fd);
		return r;
	}
	return fd;
}

/* Puts a complete answer in c->out: status line, headers, and body unless head. */
static void answer(struct conn *c, const char *status, const char *type, const char *body,
		   size_t len, bool head)
{
	char hdr[256];
	int h =
	    snprintf(hdr, sizeof(hdr),
		     "HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
		     "%sConnection: close\r\n\r\n",
		     status, type, len, !strncmp(status, "405", 3) ? "Allow: GET, HEAD\r\n" : "");

	c->out = malloc((size_t)h + len);
	if (!c->out) { /* nothing to say it with: the close says it */
		c->outlen = 0;
		return;
	}
	memcpy(c->out, hdr, (size_t)h);
	if (!head)
		memcpy(c->out + h, body, len);
	c->outlen = (size_t)h + (head ? 0 : len);
	c->outoff = 0;
}

static void answer_text(struct conn *c, const char *status, const char *text, bool head)
{
	answer(c, status, "text/plain; charset=utf-8", text, strlen(text), head);
}

/* Answers the request in c->in (complete: its headers have ended). */
static void handle_request(struct promhttp *h, struct conn *c)
{
	char method[16], target[1024];
	char *body = NULL, line[320];
	size_t len = 0;
	bool head;
	int r;

	c->in[c->inlen] = 0;
	if (sscanf(c->in, "%15s %1023s HTTP/%*d.%*d", method, target) != 2) {
		answer_text(c, "400 Bad Request", "not an HTTP request\n", false);
		return;
	}
	head = !strcmp(method, "HEAD");
	target[strcspn(target, "?#")] = 0; /* a scraper's query string means nothing here */
	if (strcmp(method, "GET") && !head)
		answer_text(c, "405 Method Not Allowed", "only GET and HEAD\n", false);
	else if (strcmp(target, "/metrics"))
		answer_text(c, "404 Not Found", "uffd-mgrd serves /metrics only\n", head);
	else if ((r = h->fetch(h->arg, &body, &len)) == 0)
		answer(c, "200 OK", METRICS_CONTENT_TYPE, body, len, head);
	else {
		snprintf(line, sizeof(line), "no metrics: %s\n", body ? body : strerror(-r));
		answer_text(c, "503 Service Unavailable", line, head);
	}
	free(body);
}

/* Reads what the client sent; answers once its headers have ended. Returns false when the
 * connection is over. */
static bool read_request(struct promhttp *h, struct conn *c)
{
	ssize_t n = recv(c->fd, c->in + c->inlen, sizeof(c->in) - 1 - c->inlen, MSG_DONTWAIT);

	if (n < 0)
		return errno == EAGAIN || errno == EINTR;
	if (n == 0)
		return false;
	c->inlen += (size_t)n;
	c->in[c->inlen] = 0;
	if (strstr(c->in, "\r\n\r\n") || strstr(c->in, "\n\n"))
		handle_request(h, c);
	else if (c->inlen == sizeof(c->in) - 1)
		answer_text(c, "431 Request Header Fields Too Large", "request too large\n", false);
	return !c->out || c->outlen;
}

/* Sends more of the answer. Returns false when the connection is over (all sent, or not). */
static bool write_answer(struct conn *c)
{
	ssize_t n =
	    send(c->fd, c->out + c->outoff, c->outlen - c->outoff, MSG_DONTWAIT | MSG_NOSIGNAL);

	if (n < 0)
		return errno == EAGAIN || errno == EINTR;
	c->outoff += (size_t)n;
	return c->outoff < c->outlen;
}

static void drop(struct promhttp *h, int i)
{
	close(h->c[i].fd);
	free(h->c[i].out);
	h->c[i] = h->c[--h->n];
}

static void accept_conns(struct promhttp *h)
{
	while (h->n < PROMHTTP_MAX_CLIENTS) {
		int fd = accept4(h->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0)
			return;
		h->c[h->n].fd = fd;
		h->c[h->n].deadline_ns = now_ns() + PROMHTTP_TIMEOUT_S * 1000000000ull;
		h->c[h->n].inlen = 0;
		h->c[h->n].out = NULL;
		h->c[h->n].outlen = h->c[h->n].outoff = 0;
		h->n++;
	}
}

/* Serves the ready connections (pfd[2..]) and drops those done or past their deadline;
 * returns the poll timeout until the next deadline (ms, -1 none). */
static int serve_conns(struct promhttp *h, const struct pollfd *pfd, int npfd)
{
	uint64_t now = now_ns(), next = UINT64_MAX;

	for (int i = npfd - 3; i >= 0; i--) {
		struct conn *c = &h->c[i];
		short re = pfd[i + 2].revents;
		bool open = true;

		if (re & (POLLERR | POLLNVAL))
			open = false;
		else if (c->out && (re & POLLOUT))
			open = write_answer(c);
		else if (!c->out && (re & (POLLIN | POLLHUP)))
			open = read_request(h, c);
		if (!open || now >= c->deadline_ns)
			drop(h, i);
	}
	for (int i = 0; i < h->n; i++)
		if (h->c[i].deadline_ns < next)
			next = h->c[i].deadline_ns;
	return next == UINT64_MAX ? -1 : (int)((next > now ? next - now : 0) / 1000000 + 1);
}

static void *serve(void *arg)
{
	struct promhttp *h = arg;
	struct pollfd pfd[2 + PROMHTTP_MAX_CLIENTS];
	int timeout = -1;

	for (;;) {
		int n = 2;

		pfd[0] = (struct pollfd){.fd = h->stop_fd, .events = POLLIN};
		/* Full: new connections wait in the backlog, not in our memory. */
		pfd[1] = (struct pollfd){.fd = h->n < PROMHTTP_MAX_CLIENTS ? h->listen_fd : -1,
					 .events = POLLIN};
		for (int i = 0; i < h->n; i++)
			pfd[n++] = (struct pollfd){.fd = h->c[i].fd,
						   .events = h->c[i].out ? POLLOUT : POLLIN};
		if (poll(pfd, (nfds_t)n, timeout) < 0 && errno != EINTR)
			break;
		if (pfd[0].revents)
			break;
		timeout = serve_conns(h, pfd, n);
		if (pfd[1].revents & POLLIN) {
			accept_conns(h);
			timeout = timeout < 0 || timeout > PROMHTTP_TIMEOUT_S * 1000
				      ? PROMHTTP_TIMEOUT_S * 1000
				      : timeout;
		}
	}
	return NULL;
}

int promhttp_start(const char *addr, promhttp_fetch_fn fetch, void *arg, struct promhttp **out,
		   char *err, size_t errlen)
{
	struct sockaddr_storage sa;
	socklen_t salen;
	struct promhttp *h;
	int r = promhttp_parse_addr(addr, &sa, &salen, err, errlen);

	if (r)
		return r;
	h = calloc(1, sizeof(*h));
	if (!h)
		return -ENOMEM;
	h->fetch = fetch;
	h->arg = arg;
	h->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	h->listen_fd = listen_tcp(&sa, salen);
	if (h->listen_fd < 0) {
		r = h->listen_fd;
		err_set(err, errlen, "cannot listen on %s: %s", addr, strerror(-r));
		goto fail;
	}
	salen = sizeof(sa);
	getsockname(h->listen_fd, (struct sockaddr *)&sa, &salen);
	h->port = ntohs(sa.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&sa)->sin6_port
						 : ((struct sockaddr_in *)&sa)->sin_port);
	r = h->stop_fd < 0 ? -errno : -pthread_create(&h->thread, NULL, serve, h);
	if (r) {
		err_set(err, errlen, "cannot start the metrics server: %s", strerror(-r));
		goto fail;
	}
	*out = h;
	return 0;
fail:
	if (h->listen_fd >= 0)
		close(h->listen_fd);
	if (h->stop_fd >= 0)
		close(h->stop_fd);
	free(h);
	return r;
}

int promhttp_port(const struct promhttp *h)
{
	return h->port;
}

void promhttp_stop(struct promhttp *h)
{
	if (!h)
		return;
	(void)!write(h->stop_fd, &(uint64_t){1}, sizeof(uint64_t));
	pthread_join(h->thread, NULL);
	while (h->n)
		drop(h, h->n - 1);
	close(h->listen_fd);
	close(h->stop_fd);
	free(h);
}

/* *body gets a one-line reason, for the 503. Returns r. */
static int reason(char **body, int r, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	if (vasprintf(body, fmt, ap) < 0)
		*body = NULL;
	va_end(ap);
	return r;
}

int promhttp_stats_fetch(void *arg, char **body, size_t *len)
{
	const char *path = arg;
	struct timeval tv = {.tv_sec = PROMHTTP_TIMEOUT_S};
	struct proto_stats_req req = {0};
	struct json_object *snap;
	char *text = NULL;
	int sock = proto_connect(path), r;
	ssize_t n;

	*body = NULL;
	if (sock < 0)
		return reason(body, sock, "no uffd-mgrd answers at %s: %s", path, strerror(-sock));
	/* A daemon that does not answer in time costs this scrape, never the next ones. */
	setsockopt(sock, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(sock, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	proto_hdr_init(&req.hdr, PROTO_STATS, sizeof(req));
	r = proto_send(sock, &req, sizeof(req), NULL, 0);
	/* The daemon's only caller of ctlmsg_recv_json (which keeps a static buffer). */
	n = r ? r : ctlmsg_recv_json(sock, &text);
	close(sock);
	if (n == -EPERM) {
		r = reason(body, -EPERM, "refused: %s", text ? text : "?");
		free(text);
		return r;
	}
	if (n <= 0) {
		free(text);
		return reason(body, n ? (int)n : -EPROTO,
			      "the stats socket %s sent no snapshot: %s", path,
			      n ? strerror((int)-n) : "closed");
	}
	snap = json_tokener_parse(text);
	free(text);
	if (!snap)
		return reason(body, -EPROTO, "the stats socket %s sent text that is not JSON",
			      path);
	r = metrics_format(snap, body, len);
	json_object_put(snap);
	return r;
}
