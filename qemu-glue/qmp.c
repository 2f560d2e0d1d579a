/* qmp: QMP client and balloon helpers. See qmp.h.
 *
 * Bytes read from the socket go to a json_tokener that keeps a partly received message
 * between reads, so a message may arrive in any number of pieces and a read may carry
 * several messages; splitting on '\n' instead would break on pretty-printed output. The
 * socket is non-blocking: every wait is a poll() bounded by the caller's deadline. */
#include "qemu-glue/qmp.h"
#include "uffd-mgr/log.h"

#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

struct qmp_event {
	struct qmp_event *next;
	struct json_object *msg; /* the whole event message */
};

struct qmp {
	int fd; /* -1 while disconnected */
	char *path;
	int timeout_ms; /* for the balloon helpers */
	int64_t next_id;
	struct json_tokener *tok;
	char buf[4096]; /* received, not yet given to tok: buf[off..len) */
	size_t off, len;
	size_t msg_bytes; /* given to tok since the last complete message */
	struct qmp_event *head, *tail;
	int nevents;
	pid_t want_pid; /* 0: any; else the process that must be listening at path */
};

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A deadline of -1 means none. */
static int64_t deadline_in(int timeout_ms)
{
	return timeout_ms < 0 ? -1 : now_ms() + timeout_ms;
}

/* Milliseconds to poll() for before the deadline: -1 for none, 0 once it has passed. */
static int left_ms(int64_t deadline)
{
	int64_t left;

	if (deadline < 0)
		return -1;
	left = deadline - now_ms();
	if (left <= 0)
		return 0;
	return left > 60000 ? 60000 : (int)left;
}

/* Waits for events on fd. Returns 0 when ready, -ETIMEDOUT, or -errno. */
static int wait_fd(int fd, short events, int64_t deadline)
{
	struct pollfd p = {.fd = fd, .events = events};
	int n;

	for (;;) {
		int left = left_ms(deadline);

		n = poll(&p, 1, left);
		if (n > 0)
			return 0;
		if (n < 0 && errno != EINTR)
			return -errno;
		if (n == 0 && left == 0)
			return -ETIMEDOUT;
	}
}

/* The socket path is only a name a VM gave, and it may point anywhere by the time we
 * (re)connect: with want_pid set, the listener must be that process (SO_PEERCRED of a
 * connected unix socket names the process that called listen()). Returns 0 or -EACCES. */
static int check_peer_pid(const struct qmp *q, char *err, size_t errlen)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);

	if (!q->want_pid)
		return 0;
	if (getsockopt(q->fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0 || cred.pid != q->want_pid) {
		err_set(err, errlen, "%s: listened on by pid %d, not the VM's pid %d: not its QMP",
			q->path, (int)cred.pid, (int)q->want_pid);
		return -EACCES;
	}
	return 0;
}

/* Connects a non-blocking stream socket to path. A full listen backlog (EAGAIN on unix
 * sockets) is retried until the deadline. Returns the socket or -errno. */
static int sock_connect(const char *path, int64_t deadline)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd, r = 0;

	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	while (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		r = -errno;
		if (r != -EAGAIN)
			break;
		if (left_ms(deadline) == 0) {
			r = -ETIMEDOUT;
			break;
		}
		poll(NULL, 0, 10);
		r = 0;
	}
	if (r == -EINPROGRESS) {
		socklen_t sl = sizeof(r);

		r = wait_fd(fd, POLLOUT, deadline);
		if (!r && getsockopt(fd, SOL_SOCKET, SO_ERROR, &r, &sl) == 0)
			r = -r;
	}
	if (r) {
		close(fd);
		return r;
	}
	return fd;
}

/* Writes all of buf. Returns 0, -ETIMEDOUT, or -errno (-EPIPE when QEMU has gone). */
static int send_all(int fd, const char *buf, size_t len, int64_t deadline)
{
	while (len) {
		ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);

		if (n < 0) {
			int r = -errno;

			if (r == -EINTR)
				continue;
			if (r != -EAGAIN)
				return r;
			r = wait_fd(fd, POLLOUT, deadline);
			if (r)
				return r;
			continue;
		}
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

static void disconnect(struct qmp *q)
{
	if (q->fd >= 0)
		close(q->fd);
	q->fd = -1;
	json_tokener_reset(q->tok);
	q->off = q->len = 0;
	q->msg_bytes = 0;
}

/* Gives buffered bytes to the tokener until a JSON object completes. Values that are not
 * objects are skipped: QMP never sends them. Returns 1 with *msg set, 0 when the buffer ran
 * out first, -EPROTO for bytes that are not JSON, -EMSGSIZE past QMP_MSG_MAX. */
static int parse_buffered(struct qmp *q, struct json_object **msg)
{
	while (q->off < q->len) {
		size_t n = q->len - q->off, used;
		struct json_object *o = json_tokener_parse_ex(q->tok, q->buf + q->off, (int)n);
		enum json_tokener_error e = json_tokener_get_error(q->tok);

		if (e != json_tokener_success && e != json_tokener_continue)
			return -EPROTO;
		used = e == json_tokener_continue ? n : json_tokener_get_parse_end(q->tok);
		if (used == 0 || used > n) {
			json_object_put(o);
			return -EPROTO; /* would loop forever */
		}
		q->off += used;
		q->msg_bytes += used;
		if (e == json_tokener_continue) {
			if (q->msg_bytes > QMP_MSG_MAX)
				return -EMSGSIZE;
			continue;
		}
		q->msg_bytes = 0;
		if (json_object_is_type(o, json_type_object)) {
			*msg = o;
			return 1;
		}
		json_object_put(o);
	}
	q->off = q->len = 0;
	return 0;
}

/* Reads the next message. Returns 0 with *msg set (caller puts), -ETIMEDOUT, -ECONNRESET
 * when QEMU closed the connection, -EPROTO, -EMSGSIZE, or -errno. */
static int read_msg(struct qmp *q, int64_t deadline, struct json_object **msg)
{
	for (;;) {
		ssize_t n;
		int r = parse_buffered(q, msg);

		if (r)
			return r < 0 ? r : 0;
		if (q->fd < 0)
			return -ENOTCONN;
		n = recv(q->fd, q->buf, sizeof(q->buf), 0);
		if (n > 0) {
			q->off = 0;
			q->len = (size_t)n;
			continue;
		}
		if (n == 0)
			return -ECONNRESET;
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN)
			return -errno;
		r = wait_fd(q->fd, POLLIN, deadline);
		if (r)
			return r;
	}
}

/* Appends an event; past QMP_EVENT_QUEUE_MAX the oldest goes, so a caller that never pops
 * costs bounded memory. Takes the reference on msg. */
static void queue_event(struct qmp *q, struct json_object *msg)
{
	struct qmp_event *ev = calloc(1, sizeof(*ev));

	if (!ev) {
		json_object_put(msg);
		return;
	}
	ev->msg = msg;
	if (q->tail)
		q->tail->next = ev;
	else
		q->head = ev;
	q->tail = ev;
	if (++q->nevents > QMP_EVENT_QUEUE_MAX) {
		struct qmp_event *old = q->head;

		q->head = old->next;
		json_object_put(old->msg);
		free(old);
		q->nevents--;
	}
}

static bool is_event(struct json_object *msg)
{
	struct json_object *v;

	return json_object_object_get_ex(msg, "event", &v) &&
	       json_object_is_type(v, json_type_string);
}

static bool is_reply(struct json_object *msg)
{
	return json_object_object_get_ex(msg, "return", NULL) ||
	       json_object_object_get_ex(msg, "error", NULL);
}

/* A reply is ours when it carries our id. One without an id is taken as ours too: QEMU drops
 * the id only when it could not parse the command, and then no later reply would come. */
static bool reply_matches(struct json_object *msg, int64_t id)
{
	struct json_object *v;

	if (!json_object_object_get_ex(msg, "id", &v))
		return true;
	return json_object_is_type(v, json_type_int) && json_object_get_int64(v) == id;
}

/* Reads until the reply to command id, queueing events and dropping stale replies.
 * Returns 0 with *reply set (caller puts), or as read_msg(). */
static int await_reply(struct qmp *q, int64_t id, int64_t deadline, struct json_object **reply)
{
	for (;;) {
		struct json_object *msg;
		int r = read_msg(q, deadline, &msg);

		if (r)
			return r;
		if (is_event(msg)) {
			queue_event(q, msg);
		} else if (is_reply(msg) && reply_matches(msg, id)) {
			*reply = msg;
			return 0;
		} else {
			json_object_put(msg); /* a stale reply, or a message QMP may add later */
		}
	}
}

/* Sends one command with a fresh id and waits for its reply. Returns 0 with *reply set
 * (caller puts), -ENOMEM, or as send_all() and read_msg(). */
static int transact(struct qmp *q, const char *command, struct json_object *args, int64_t deadline,
		    struct json_object **reply)
{
	struct json_object *cmd = json_object_new_object();
	int64_t id = q->next_id++;
	const char *text;
	char *line = NULL;
	int r = -ENOMEM;

	if (!cmd)
		return -ENOMEM;
	if (json_object_object_add(cmd, "execute", json_object_new_string(command)))
		goto put_cmd;
	if (args && json_object_object_add(cmd, "arguments", json_object_get(args)))
		goto put_cmd;
	if (json_object_object_add(cmd, "id", json_object_new_int64(id)))
		goto put_cmd;
	text = json_object_to_json_string_ext(cmd, JSON_C_TO_STRING_PLAIN |
						       JSON_C_TO_STRING_NOSLASHESCAPE);
	if (!text || asprintf(&line, "%s\n", text) < 0)
		goto put_cmd;
	r = send_all(q->fd, line, strlen(line), deadline);
	if (!r)
		r = await_reply(q, id, deadline, reply);
	free(line);
put_cmd:
	json_object_put(cmd);
	return r;
}

/* Fills err from an {"error": {"class", "desc"}} reply. */
static void remote_err(struct json_object *reply, const char *command, char *err, size_t errlen)
{
	struct json_object *e, *desc;

	if (json_object_object_get_ex(reply, "error", &e) &&
	    json_object_object_get_ex(e, "desc", &desc))
		err_set(err, errlen, "%s: %s", command, json_object_get_string(desc));
	else
		err_set(err, errlen, "%s: QEMU answered with an error", command);
}

/* Says why no greeting came. */
static void greeting_err(const char *path, int r, char *err, size_t errlen)
{
	switch (r) {
	case -ETIMEDOUT:
		err_set(err, errlen,
			"%s: no QMP greeting in time (another client connected? QEMU serves one "
			"at a time)",
			path);
		break;
	case -ECONNRESET:
		err_set(err, errlen, "%s: closed before the QMP greeting", path);
		break;
	case -EPROTO:
		err_set(err, errlen, "%s: not QMP: the greeting is not {\"QMP\": ...}", path);
		break;
	default:
		err_set(err, errlen, "%s: reading the greeting: %s", path, strerror(-r));
	}
}

/* Connects and negotiates: greeting, then qmp_capabilities. Returns 0 or a negative errno
 * as qmp_open() documents, with err naming the socket and the cause. */
static int handshake(struct qmp *q, int64_t deadline, char *err, size_t errlen)
{
	struct json_object *msg = NULL, *reply = NULL;
	int r;

	disconnect(q);
	r = sock_connect(q->path, deadline);
	if (r < 0) {
		if (r == -ENOENT)
			err_set(err, errlen, "%s: no such socket (is QEMU running?)", q->path);
		else if (r == -ECONNREFUSED)
			err_set(err, errlen, "%s: connection refused (QEMU gone?)", q->path);
		else
			err_set(err, errlen, "%s: connect: %s", q->path, strerror(-r));
		return r;
	}
	q->fd = r;
	r = check_peer_pid(q, err, errlen);
	if (r) {
		disconnect(q);
		return r;
	}
	r = read_msg(q, deadline, &msg);
	if ((!r && !json_object_object_get_ex(msg, "QMP", NULL)) || r == -EMSGSIZE)
		r = -EPROTO;
	json_object_put(msg);
	if (r) {
		greeting_err(q->path, r, err, errlen);
		goto fail;
	}
	r = transact(q, "qmp_capabilities", NULL, deadline, &reply);
	if (!r && !json_object_object_get_ex(reply, "return", NULL)) {
		remote_err(reply, q->path, err, errlen);
		r = -EREMOTEIO;
	} else if (r == -ETIMEDOUT) {
		err_set(err, errlen, "%s: no answer to qmp_capabilities in time", q->path);
	} else if (r) {
		err_set(err, errlen, "%s: qmp_capabilities: %s", q->path, strerror(-r));
	}
	json_object_put(reply);
	if (!r)
		return 0;
fail:
	disconnect(q);
	return r;
}

int qmp_open(struct qmp **out, const char *socket_path, int timeout_ms, char *err, size_t errlen)
{
	return qmp_open_pid(out, socket_path, 0, timeout_ms, err, errlen);
}

int qmp_open_pid(struct qmp **out, const char *socket_path, pid_t pid, int timeout_ms,
		 char *err, size_t errlen)
{
	struct qmp *q = calloc(1, sizeof(*q));
	int r = -ENOMEM;

	*out = NULL;
	if (!q)
		goto fail;
	q->fd = -1;
	q->next_id = 1;
	q->timeout_ms = timeout_ms;
	q->want_pid = pid;
	q->path = strdup(socket_path);
	q->tok = json_tokener_new();
	if (!q->path || !q->tok)
		goto fail;
	r = handshake(q, deadline_in(timeout_ms), err, errlen);
	if (r)
		goto fail_close;
	*out = q;
	return 0;
fail:
	err_set(err, errlen, "%s: out of memory", socket_path);
fail_close:
	qmp_close(q);
	return r;
}

void qmp_close(struct qmp *q)
{
	if (!q)
		return;
	if (q->fd >= 0)
		close(q->fd);
	while (q->head) {
		struct qmp_event *ev = q->head;

		q->head = ev->next;
		json_object_put(ev->msg);
		free(ev);
	}
	if (q->tok)
		json_tokener_free(q->tok);
	free(q->path);
	free(q);
}

static bool is_broken(int r)
{
	return r == -ECONNRESET || r == -EPIPE || r == -ENOTCONN;
}

/* transact() with one reconnect and one retry when the connection turns out broken.
 * Returns as transact(); after a failed reconnect, the error that broke the connection. */
static int transact_retry(struct qmp *q, const char *command, struct json_object *args,
			  int64_t deadline, struct json_object **reply, char *err, size_t errlen)
{
	char why[256];
	int r = q->fd < 0 ? -ENOTCONN : transact(q, command, args, deadline, reply);
	int h;

	if (!is_broken(r))
		return r;
	h = handshake(q, deadline, why, sizeof(why));
	if (h) {
		if (r == -ENOTCONN)
			r = -ECONNRESET;
		err_set(err, errlen, "%s: connection lost (%s); reconnect failed: %s", command,
			strerror(-r), why);
		return r;
	}
	r = transact(q, command, args, deadline, reply);
	if (r == -ENOTCONN)
		r = -ECONNRESET;
	if (is_broken(r)) {
		disconnect(q);
		err_set(err, errlen, "%s: connection lost again after reconnecting (%s)", command,
			strerror(-r));
	}
	return r;
}

int qmp_execute(struct qmp *q, const char *command, struct json_object *args,
		struct json_object **result, int timeout_ms, char *err, size_t errlen)
{
	struct json_object *reply = NULL, *ret;
	int r;

	if (result)
		*result = NULL;
	if (!q || !command || !*command) {
		err_set(err, errlen, "qmp_execute: no connection or no command");
		return -EINVAL;
	}
	r = transact_retry(q, command, args, deadline_in(timeout_ms), &reply, err, errlen);
	if (r == -ETIMEDOUT) {
		err_set(err, errlen, "%s: no reply within %d ms", command, timeout_ms);
	} else if (r == -EPROTO || r == -EMSGSIZE) {
		disconnect(q);
		err_set(err, errlen, "%s: %s from QEMU; connection dropped", command,
			r == -EPROTO ? "malformed JSON" : "oversized message");
	} else if (r == -ENOMEM) {
		err_set(err, errlen, "%s: out of memory", command);
	} else if (r && !is_broken(r)) {
		err_set(err, errlen, "%s: %s", command, strerror(-r));
	}
	if (r)
		return r;
	if (!json_object_object_get_ex(reply, "return", &ret)) {
		remote_err(reply, command, err, errlen);
		json_object_put(reply);
		return -EREMOTEIO;
	}
	if (result)
		*result = json_object_get(ret);
	json_object_put(reply);
	return 0;
}

/* Queues the events already waiting on the socket; drops the connection if QEMU closed it
 * or sent garbage, so that the next qmp_execute() reconnects. */
static void drain(struct qmp *q)
{
	struct json_object *msg;
	int r;

	if (q->fd < 0)
		return;
	while (!(r = read_msg(q, 0, &msg))) {
		if (is_event(msg))
			queue_event(q, msg);
		else
			json_object_put(msg);
	}
	if (r != -ETIMEDOUT)
		disconnect(q);
}

int qmp_next_event(struct qmp *q, char *name, size_t namelen, struct json_object **data)
{
	struct qmp_event *ev;
	struct json_object *v;

	if (data)
		*data = NULL;
	drain(q);
	ev = q->head;
	if (!ev)
		return q->fd < 0 ? -ENOTCONN : -ENOENT;
	q->head = ev->next;
	if (!q->head)
		q->tail = NULL;
	q->nevents--;
	json_object_object_get_ex(ev->msg, "event", &v);
	if (name && namelen)
		snprintf(name, namelen, "%s", json_object_get_string(v));
	if (data && json_object_object_get_ex(ev->msg, "data", &v))
		*data = json_object_get(v);
	json_object_put(ev->msg);
	free(ev);
	return 0;
}

/* Builds {"path": path, "property": property} and, when value is not NULL, "value": value
 * (taking the reference on value). Returns the object or NULL for lack of memory. */
static struct json_object *qom_args(const char *path, const char *property,
				    struct json_object *value)
{
	struct json_object *a = json_object_new_object();

	if (!a || json_object_object_add(a, "path", json_object_new_string(path)) ||
	    json_object_object_add(a, "property", json_object_new_string(property)) ||
	    (value && json_object_object_add(a, "value", value))) {
		json_object_put(a);
		return NULL;
	}
	return a;
}

int qmp_find_balloon(struct qmp *q, char *path, size_t pathlen, char *err, size_t errlen)
{
	static const char *const parents[] = {"/machine/peripheral", "/machine/peripheral-anon"};
	int r = -ENOENT;

	for (size_t i = 0; i < sizeof(parents) / sizeof(parents[0]) && r == -ENOENT; i++) {
		struct json_object *args = json_object_new_object(), *res = NULL;
		size_t n;

		if (!args || json_object_object_add(args, "path",
						    json_object_new_string(parents[i]))) {
			json_object_put(args);
			err_set(err, errlen, "qom-list: out of memory");
			return -ENOMEM;
		}
		r = qmp_execute(q, "qom-list", args, &res, q->timeout_ms, err, errlen);
		json_object_put(args);
		if (r)
			return r;
		r = -ENOENT;
		n = json_object_is_type(res, json_type_array) ? json_object_array_length(res) : 0;
		for (size_t k = 0; k < n && r == -ENOENT; k++) {
			struct json_object *e = json_object_array_get_idx(res, k), *name, *type;

			if (json_object_object_get_ex(e, "name", &name) &&
			    json_object_object_get_ex(e, "type", &type) &&
			    !strncmp(json_object_get_string(type), "child<virtio-balloon",
				     strlen("child<virtio-balloon")))
				r = snprintf(path, pathlen, "%s/%s", parents[i],
					     json_object_get_string(name)) < (int)pathlen
					? 0
					: -ENAMETOOLONG;
		}
		json_object_put(res);
	}
	if (r == -ENOENT)
		err_set(err, errlen, "the guest has no virtio-balloon device");
	return r;
}

int qmp_balloon_set(struct qmp *q, uint64_t target_bytes, char *err, size_t errlen)
{
	struct json_object *args;
	int r;

	/* QEMU takes an int and refuses 0 with a confusing "expects a size". */
	if (target_bytes == 0 || target_bytes > INT64_MAX) {
		err_set(err, errlen, "balloon: target %llu out of range",
			(unsigned long long)target_bytes);
		return -EINVAL;
	}
	args = json_object_new_object();
	if (!args ||
	    json_object_object_add(args, "value", json_object_new_int64((int64_t)target_bytes))) {
		json_object_put(args);
		err_set(err, errlen, "balloon: out of memory");
		return -ENOMEM;
	}
	r = qmp_execute(q, "balloon", args, NULL, q->timeout_ms, err, errlen);
	json_object_put(args);
	return r;
}

int qmp_balloon_actual(struct qmp *q, uint64_t *actual_bytes, char *err, size_t errlen)
{
	struct json_object *res, *v;
	int r = qmp_execute(q, "query-balloon", NULL, &res, q->timeout_ms, err, errlen);

	if (r)
		return r;
	if (!json_object_object_get_ex(res, "actual", &v) ||
	    !json_object_is_type(v, json_type_int) || json_object_get_int64(v) < 0) {
		err_set(err, errlen, "query-balloon: no \"actual\" in the answer");
		r = -EPROTO;
	} else {
		*actual_bytes = json_object_get_uint64(v);
	}
	json_object_put(res);
	return r;
}

int qmp_guest_stats_enable(struct qmp *q, const char *balloon_qom_path, int interval_s, char *err,
			   size_t errlen)
{
	struct json_object *args;
	int r;

	if (interval_s < 0) {
		err_set(err, errlen, "qom-set: negative stats interval %d", interval_s);
		return -EINVAL;
	}
	args = qom_args(balloon_qom_path, "guest-stats-polling-interval",
			json_object_new_int(interval_s));
	if (!args) {
		err_set(err, errlen, "qom-set: out of memory");
		return -ENOMEM;
	}
	r = qmp_execute(q, "qom-set", args, NULL, q->timeout_ms, err, errlen);
	json_object_put(args);
	return r;
}

static const struct {
	const char *key;
	size_t offset;
} stat_keys[] = {
    {"stat-free-memory", offsetof(struct qmp_guest_stats, free)},
    {"stat-available-memory", offsetof(struct qmp_guest_stats, available)},
    {"stat-total-memory", offsetof(struct qmp_guest_stats, total)},
    {"stat-swap-in", offsetof(struct qmp_guest_stats, swap_in)},
    {"stat-swap-out", offsetof(struct qmp_guest_stats, swap_out)},
    {"stat-major-faults", offsetof(struct qmp_guest_stats, major_faults)},
    {"stat-minor-faults", offsetof(struct qmp_guest_stats, minor_faults)},
    {"stat-disk-caches", offsetof(struct qmp_guest_stats, disk_caches)},
};

/* QEMU keeps unreported statistics as (uint64_t)-1 and prints them as 18446744073709551615;
 * a -1 is taken the same way in case another version prints them signed. */
static uint64_t stat_value(struct json_object *stats, const char *key)
{
	struct json_object *v;

	if (!json_object_object_get_ex(stats, key, &v) || !json_object_is_type(v, json_type_int))
		return QMP_STAT_NONE;
	if (json_object_get_int64(v) < 0)
		return QMP_STAT_NONE;
	return json_object_get_uint64(v);
}

int qmp_guest_stats(struct qmp *q, const char *balloon_qom_path, struct qmp_guest_stats *out,
		    char *err, size_t errlen)
{
	struct json_object *args, *res, *stats, *last;
	int r;

	args = qom_args(balloon_qom_path, "guest-stats", NULL);
	if (!args) {
		err_set(err, errlen, "qom-get: out of memory");
		return -ENOMEM;
	}
	r = qmp_execute(q, "qom-get", args, &res, q->timeout_ms, err, errlen);
	json_object_put(args);
	if (r)
		return r;
	if (!json_object_object_get_ex(res, "stats", &stats) ||
	    !json_object_is_type(stats, json_type_object) ||
	    !json_object_object_get_ex(res, "last-update", &last) ||
	    !json_object_is_type(last, json_type_int)) {
		err_set(err, errlen, "qom-get: %s guest-stats lacks \"stats\" or \"last-update\"",
			balloon_qom_path);
		json_object_put(res);
		return -EPROTO;
	}
	memset(out, 0, sizeof(*out));
	out->last_update = json_object_get_int64(last);
	out->valid = out->last_update != 0;
	for (size_t i = 0; i < sizeof(stat_keys) / sizeof(stat_keys[0]); i++)
		*(uint64_t *)((char *)out + stat_keys[i].offset) =
		    stat_value(stats, stat_keys[i].key);
	json_object_put(res);
	return 0;
}
