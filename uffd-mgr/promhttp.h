/* promhttp: a small HTTP/1.x server that answers GET /metrics (uffd-mgrd --metrics ADDR), in
 * a thread of its own so that nothing a scraper does can stall the daemon's loop.
 *
 * The thread polls its listening socket and at most PROMHTTP_MAX_CLIENTS connections, all
 * non-blocking; each connection has PROMHTTP_TIMEOUT_S from accept to the last byte of its
 * answer, or it is closed. GET (and HEAD) /metrics gets the body of the fetch function;
 * another path 404, another method 405, a request line or headers past 8 KiB 431, a fetch
 * that fails 503 with the reason. One request per connection (Connection: close).
 *
 * The fetch function runs in the server's thread; the daemon's (promhttp_stats_fetch) asks
 * the daemon's own stats socket for a snapshot, as uffdctl does, so the server never reads
 * the daemon's memory and takes none of its locks. Functions return 0 or -errno. */
#ifndef UFFD_PROMHTTP_H
#define UFFD_PROMHTTP_H

#include <stddef.h>
#include <sys/socket.h>

#define PROMHTTP_MAX_CLIENTS 16
#define PROMHTTP_TIMEOUT_S   5

struct promhttp;

/* Gives the body of one /metrics answer in *body (to free) and *len. Returns 0, or -errno
 * with *body NULL or a one-line reason (to free) for the 503. */
typedef int (*promhttp_fetch_fn)(void *arg, char **body, size_t *len);

/* Parses a listening address: "HOST:PORT", "[IPV6]:PORT", or ":PORT" (every address, IPv6
 * and IPv4); HOST a name or a numeric address, PORT 0 (any free one) to 65535. Returns 0,
 * or -EINVAL with err saying what is wrong. */
int promhttp_parse_addr(const char *text, struct sockaddr_storage *sa, socklen_t *salen, char *err,
			size_t errlen);

/* Listens on addr (as promhttp_parse_addr) and starts the thread. Returns 0 with *out set,
 * or -errno with err set ("cannot listen on ...: Address already in use"). */
int promhttp_start(const char *addr, promhttp_fetch_fn fetch, void *arg, struct promhttp **out,
		   char *err, size_t errlen);

/* The port it listens on (what port 0 became). Cannot fail. */
int promhttp_port(const struct promhttp *h);

/* Stops the thread and closes every connection. Accepts NULL. */
void promhttp_stop(struct promhttp *h);

/* The daemon's fetch: one snapshot from the stats socket at path (a const char *), in the
 * text format (metrics.h). Waits PROMHTTP_TIMEOUT_S at most for the daemon. */
int promhttp_stats_fetch(void *path, char **body, size_t *len);

#endif
