/* test_qmp: the QMP client (qemu-glue/qmp.c) against a scripted fake QEMU and a real one.
 *
 * The fake is a thread serving a unix socket in a temporary directory; each test hands it a
 * script that plays one side of the conversation byte for byte as QEMU 7.2 does (greeting,
 * "\r\n" line ends, ids echoed). The script cannot use cmocka's asserts (they longjmp on the
 * main thread's stack), so it records the first thing it found wrong and the test checks it
 * after joining. Every wait in the script is bounded and watches a stop pipe, so a failed
 * assertion on the main thread never leaves the thread or a descriptor behind. What it
 * stresses:
 *  - greeting and capabilities (no capability is asked for), a command with arguments that
 *    arrive intact (slashes unescaped), ids that differ from one command to the next, a
 *    close-on-exec socket;
 *  - an error reply: -EREMOTEIO, "<command>: <desc>", and the connection stays usable;
 *  - events before a reply are queued and popped in order, a stale reply in between is
 *    dropped, an event that arrives later is read without blocking, the events sent before
 *    QEMU hangs up are still delivered and then -ENOTCONN; the queue drops the oldest past
 *    QMP_EVENT_QUEUE_MAX;
 *  - messages split across writes (inside strings, numbers and "\r\n"), several in one
 *    write, and a pretty-printed reply spanning lines;
 *  - a server that never greets or never answers: -ETIMEDOUT within the timeout; the late
 *    answer is then dropped, not taken for the next command's;
 *  - a server that closes after the handshake or mid-command and comes back: one reconnect
 *    and one retry, never a second; QEMU gone for good: -ECONNRESET/-EPIPE and a reason; the
 *    number of open descriptors is the same at the end (no leak across reconnects); SIGPIPE
 *    is left at its default, so a send to a closed peer would kill the test;
 *  - a missing socket, a refused connection, a path too long, garbage or a non-QMP object
 *    instead of the greeting, a close before the greeting, capabilities refused;
 *  - the balloon helpers' arguments and the guest-stats mapping (-1 and UINT64_MAX mean not
 *    reported, missing keys too);
 *  - a real qemu-system-x86_64 (TCG, -S) with a virtio-balloon: query-balloon, guest stats
 *    polling, guest-stats with no driver, a balloon target, an error from QEMU, quit and its
 *    SHUTDOWN event; the child is killed in teardown whatever happened. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <json-c/json.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <fcntl.h>

#include "qemu-glue/qmp.h"

#define WAIT_MS	    5000 /* the longest any step of the fake server waits */
#define BALLOON_QOM "/machine/peripheral/uffd-balloon"
#define MIB	    (UINT64_C(1) << 20)
#define GREETING                                                                                   \
	"{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 22, \"minor\": 2, \"major\": 7}, "         \
	"\"package\": \"Debian 1:7.2+dfsg-7+deb12u18+b3\"}, \"capabilities\": [\"oob\"]}}\r\n"

struct fake {
	char dir[64];
	char path[128];
	int lfd;	  /* listening socket; a script playing "QEMU gone" closes it */
	int cfd;	  /* the connection the script is serving */
	int stop[2];	  /* teardown -> script: give up now */
	int note[2];	  /* script -> test: a step is done */
	char rbuf[16384]; /* received from the client, not yet taken as a line */
	size_t rlen;
	void (*script)(struct fake *);
	pthread_t thread;
	bool running;
	char failure[512]; /* the first thing the script found wrong */
	struct qmp *q;	   /* the client under test */
	pid_t qemu;	   /* the real QEMU, if started */
};

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

/* Every socket open in the process is close-on-exec (the fixture's and the fake's are). */
static void sockets_cloexec(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	struct stat st;
	int n = 0;

	assert_non_null(d);
	while ((e = readdir(d))) {
		int fd = atoi(e->d_name);

		if (e->d_name[0] == '.' || fd == dirfd(d) || fstat(fd, &st) ||
		    !S_ISSOCK(st.st_mode))
			continue;
		assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
		n++;
	}
	closedir(d);
	assert_true(n >= 2); /* at least the listener and the client */
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- the fake server's side; runs on its own thread, never asserts ---- */

static bool srv_fail(struct fake *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static bool srv_fail(struct fake *f, const char *fmt, ...)
{
	va_list ap;

	if (!f->failure[0]) {
		va_start(ap, fmt);
		vsnprintf(f->failure, sizeof(f->failure), fmt, ap);
		va_end(ap);
	}
	return false;
}

/* Waits up to ms for fd; false on timeout or when teardown asks the script to stop. */
static bool srv_poll(struct fake *f, int fd, short events, int ms)
{
	struct pollfd p[2] = {{.fd = fd, .events = events}, {.fd = f->stop[0], .events = POLLIN}};

	if (poll(p, 2, ms) <= 0 || p[1].revents)
		return false;
	return p[0].revents != 0;
}

static void srv_hangup(struct fake *f)
{
	if (f->cfd >= 0)
		close(f->cfd);
	f->cfd = -1;
	f->rlen = 0;
}

static bool srv_accept(struct fake *f)
{
	srv_hangup(f);
	if (!srv_poll(f, f->lfd, POLLIN, WAIT_MS))
		return srv_fail(f, "no client connected");
	f->cfd = accept4(f->lfd, NULL, NULL, SOCK_CLOEXEC);
	if (f->cfd < 0)
		return srv_fail(f, "accept: %s", strerror(errno));
	return true;
}

static bool srv_send(struct fake *f, const char *text)
{
	size_t len = strlen(text);

	while (len) {
		ssize_t n = send(f->cfd, text, len, MSG_NOSIGNAL);

		if (n <= 0)
			return srv_fail(f, "send: %s", n ? strerror(errno) : "nothing sent");
		text += n;
		len -= (size_t)n;
	}
	return true;
}

static bool srv_sendf(struct fake *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static bool srv_sendf(struct fake *f, const char *fmt, ...)
{
	char buf[8192];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	return srv_send(f, buf);
}

/* Sends text in pieces cut at the given offsets, pausing between them so that each piece is
 * a read of its own on the client. */
static bool srv_send_split(struct fake *f, const char *text, const size_t *cuts, int ncuts)
{
	size_t from = 0;
	char piece[4096];

	for (int i = 0; i <= ncuts; i++) {
		size_t to = i < ncuts ? cuts[i] : strlen(text);

		snprintf(piece, sizeof(piece), "%.*s", (int)(to - from), text + from);
		if (!srv_send(f, piece))
			return false;
		from = to;
		usleep(20000);
	}
	return true;
}

/* Reads one command line from the client and parses it (caller puts *cmd). */
static bool srv_read(struct fake *f, struct json_object **cmd)
{
	char *nl;

	while (!(nl = memchr(f->rbuf, '\n', f->rlen))) {
		ssize_t n;

		if (f->rlen == sizeof(f->rbuf))
			return srv_fail(f, "command line too long");
		if (!srv_poll(f, f->cfd, POLLIN, WAIT_MS))
			return srv_fail(f, "no command from the client");
		n = recv(f->cfd, f->rbuf + f->rlen, sizeof(f->rbuf) - f->rlen, 0);
		if (n <= 0)
			return srv_fail(f, "client closed while a command was expected");
		f->rlen += (size_t)n;
	}
	*nl = 0;
	if (strstr(f->rbuf, "\\/"))
		return srv_fail(f, "slashes escaped in \"%s\"", f->rbuf);
	*cmd = json_tokener_parse(f->rbuf);
	f->rlen -= (size_t)(nl + 1 - f->rbuf);
	memmove(f->rbuf, nl + 1, f->rlen);
	if (!json_object_is_type(*cmd, json_type_object)) {
		json_object_put(*cmd);
		return srv_fail(f, "a command that is not a JSON object");
	}
	return true;
}

/* Reads a command, checks it is name, and copies its id (as JSON text) to id. When args is
 * not NULL, *args gets the command's arguments (caller puts); else it must have none. */
static bool srv_expect(struct fake *f, const char *name, char *id, size_t idlen,
		       struct json_object **args)
{
	struct json_object *cmd = NULL, *v, *a = NULL;
	bool ok = true;

	if (!srv_read(f, &cmd))
		return false;
	if (!json_object_object_get_ex(cmd, "execute", &v) ||
	    strcmp(json_object_get_string(v), name))
		ok = srv_fail(f, "expected %s, got %s", name, json_object_to_json_string(cmd));
	else if (!json_object_object_get_ex(cmd, "id", &v))
		ok = srv_fail(f, "%s sent without an id", name);
	else
		snprintf(id, idlen, "%s", json_object_to_json_string(v));
	json_object_object_get_ex(cmd, "arguments", &a);
	if (ok && !args && a)
		ok = srv_fail(f, "%s: unexpected arguments", name);
	if (ok && args)
		*args = json_object_get(a);
	json_object_put(cmd);
	return ok;
}

static bool srv_reply(struct fake *f, const char *id, const char *ret)
{
	return srv_sendf(f, "{\"return\": %s, \"id\": %s}\r\n", ret, id);
}

/* Accepts a client and plays QEMU's side of the handshake. */
static bool srv_handshake(struct fake *f)
{
	char id[64];

	return srv_accept(f) && srv_send(f, GREETING) &&
	       srv_expect(f, "qmp_capabilities", id, sizeof(id), NULL) && srv_reply(f, id, "{}");
}

/* Waits until the client closes the connection, failing on anything it sends meanwhile. */
static void srv_wait_close(struct fake *f)
{
	char c;

	if (f->cfd < 0)
		return;
	if (!srv_poll(f, f->cfd, POLLIN, WAIT_MS)) {
		srv_fail(f, "client did not close");
		return;
	}
	if (recv(f->cfd, &c, 1, 0) > 0)
		srv_fail(f, "client sent more than expected");
	srv_hangup(f);
}

/* Checks that no client connects within ms. */
static bool srv_no_client(struct fake *f, int ms)
{
	if (srv_poll(f, f->lfd, POLLIN, ms))
		return srv_fail(f, "an unexpected connection");
	return true;
}

static void srv_note(struct fake *f)
{
	if (write(f->note[1], "n", 1) != 1)
		srv_fail(f, "note: %s", strerror(errno));
}

static bool arg_is(struct json_object *args, const char *key, const char *want)
{
	struct json_object *v;

	return json_object_object_get_ex(args, key, &v) && !strcmp(json_object_get_string(v), want);
}

static void *srv_main(void *arg)
{
	struct fake *f = arg;

	f->script(f);
	srv_hangup(f);
	return NULL;
}

/* ---- the test's side ---- */

static int setup(void **state)
{
	struct fake *f = calloc(1, sizeof(*f));
	struct sockaddr_un sa = {.sun_family = AF_UNIX};

	if (!f)
		return -1;
	*state = f;
	f->lfd = f->cfd = -1;
	f->stop[0] = f->stop[1] = f->note[0] = f->note[1] = -1;
	snprintf(f->dir, sizeof(f->dir), "/tmp/test_qmp.XXXXXX");
	if (!mkdtemp(f->dir))
		return -1;
	snprintf(f->path, sizeof(f->path), "%s/q.sock", f->dir);
	strcpy(sa.sun_path, f->path);
	if (pipe2(f->stop, O_CLOEXEC) || pipe2(f->note, O_CLOEXEC))
		return -1;
	f->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (f->lfd < 0 || bind(f->lfd, (struct sockaddr *)&sa, sizeof(sa)) || listen(f->lfd, 4))
		return -1;
	return 0;
}

static void rm_dir(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	char p[PATH_MAX];

	if (!d)
		return;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
		unlink(p);
	}
	closedir(d);
	rmdir(dir);
}

static int teardown(void **state)
{
	struct fake *f = *state;

	if (!f)
		return 0;
	qmp_close(f->q);
	if (f->running) {
		if (write(f->stop[1], "s", 1) != 1)
			perror("stop");
		pthread_join(f->thread, NULL);
	}
	if (f->qemu > 0) {
		kill(f->qemu, SIGKILL);
		waitpid(f->qemu, NULL, 0);
	}
	for (int i = 0; i < 2; i++) {
		if (f->stop[i] >= 0)
			close(f->stop[i]);
		if (f->note[i] >= 0)
			close(f->note[i]);
	}
	if (f->lfd >= 0)
		close(f->lfd);
	if (f->dir[0])
		rm_dir(f->dir);
	free(f);
	return 0;
}

static void serve(struct fake *f, void (*script)(struct fake *))
{
	f->script = script;
	assert_int_equal(pthread_create(&f->thread, NULL, srv_main, f), 0);
	f->running = true;
}

/* Closes the client, lets the script end, and fails the test with what the script found. */
static void finish(struct fake *f)
{
	qmp_close(f->q);
	f->q = NULL;
	pthread_join(f->thread, NULL);
	f->running = false;
	if (f->failure[0])
		fail_msg("fake server: %s", f->failure);
}

static void wait_note(struct fake *f)
{
	struct pollfd p = {.fd = f->note[0], .events = POLLIN};
	char c;

	assert_int_equal(poll(&p, 1, WAIT_MS), 1);
	assert_int_equal(read(f->note[0], &c, 1), 1);
}

static void open_ok(struct fake *f, int timeout_ms)
{
	char err[256] = "";
	int r = qmp_open(&f->q, f->path, timeout_ms, err, sizeof(err));

	if (r)
		fail_msg("qmp_open: %d %s (fake server: %s)", r, err, f->failure);
	assert_non_null(f->q);
}

static int64_t get_int(struct json_object *o, const char *key)
{
	struct json_object *v;

	assert_true(json_object_object_get_ex(o, key, &v));
	return json_object_get_int64(v);
}

static const char *get_str(struct json_object *o, const char *key)
{
	struct json_object *v;

	assert_true(json_object_object_get_ex(o, key, &v));
	return json_object_get_string(v);
}

/* Pops the next event, which must be called name; returns its data (caller puts). */
static struct json_object *pop(struct fake *f, const char *name)
{
	struct json_object *data = (void *)1;
	char got[64];

	assert_int_equal(qmp_next_event(f->q, got, sizeof(got), &data), 0);
	assert_string_equal(got, name);
	return data;
}

/* ---- greeting, capabilities, a command ---- */

static void script_command(struct fake *f)
{
	struct json_object *args;
	char id[64], id2[64];

	if (!srv_handshake(f) || !srv_expect(f, "qom-get", id, sizeof(id), &args))
		return;
	if (!arg_is(args, "path", BALLOON_QOM) || !arg_is(args, "property", "guest-stats"))
		srv_fail(f, "qom-get arguments: %s", json_object_to_json_string(args));
	json_object_put(args);
	if (!srv_reply(f, id, "{\"answer\": 42, \"path\": \"/a/b\"}"))
		return;
	if (!srv_expect(f, "query-status", id2, sizeof(id2), NULL))
		return;
	if (!strcmp(id, id2))
		srv_fail(f, "two commands with the same id %s", id);
	srv_reply(f, id2, "{\"status\": \"prelaunch\", \"running\": false}");
	srv_wait_close(f);
}

static void test_command(void **state)
{
	struct fake *f = *state;
	struct json_object *args = json_object_new_object(), *res = (void *)1;
	char err[256] = "";
	int before = open_fds();

	qmp_close(NULL);
	serve(f, script_command);
	open_ok(f, 2000);
	sockets_cloexec();
	json_object_object_add(args, "path", json_object_new_string(BALLOON_QOM));
	json_object_object_add(args, "property", json_object_new_string("guest-stats"));
	assert_int_equal(qmp_execute(f->q, "qom-get", args, &res, 2000, err, sizeof(err)), 0);
	assert_non_null(res);
	assert_int_equal(get_int(res, "answer"), 42);
	assert_string_equal(get_str(res, "path"), "/a/b");
	json_object_put(res);
	/* args was not consumed: still ours, intact. */
	assert_string_equal(get_str(args, "property"), "guest-stats");
	json_object_put(args);
	assert_int_equal(qmp_execute(f->q, "query-status", NULL, NULL, 2000, err, sizeof(err)), 0);
	assert_int_equal(qmp_next_event(f->q, err, sizeof(err), NULL), -ENOENT);
	finish(f);
	assert_int_equal(open_fds(), before);
}

/* ---- an error reply ---- */

static void script_error(struct fake *f)
{
	char id[64];

	if (!srv_handshake(f) || !srv_expect(f, "nope", id, sizeof(id), NULL))
		return;
	srv_sendf(f,
		  "{\"id\": %s, \"error\": {\"class\": \"CommandNotFound\", \"desc\": \"The "
		  "command nope has not been found\"}}\r\n",
		  id);
	if (srv_expect(f, "query-balloon", id, sizeof(id), NULL))
		srv_reply(f, id, "{\"actual\": 1073741824}");
	srv_wait_close(f);
}

static void test_error_reply(void **state)
{
	struct fake *f = *state;
	struct json_object *res = (void *)1;
	uint64_t actual = 0;
	char err[256] = "";

	serve(f, script_error);
	open_ok(f, 2000);
	assert_int_equal(qmp_execute(f->q, "nope", NULL, &res, 2000, err, sizeof(err)), -EREMOTEIO);
	assert_null(res);
	assert_string_equal(err, "nope: The command nope has not been found");
	/* The connection is still good. */
	assert_int_equal(qmp_balloon_actual(f->q, &actual, err, sizeof(err)), 0);
	assert_int_equal(actual, 1024 * MIB);
	finish(f);
}

/* ---- events ---- */

static void script_events(struct fake *f)
{
	char id[64];

	if (!srv_handshake(f) || !srv_expect(f, "cont", id, sizeof(id), NULL))
		return;
	srv_send(f,
		 "{\"timestamp\": {\"seconds\": 1, \"microseconds\": 2}, \"event\": \"STOP\"}\r\n");
	srv_send(f, "{\"event\": \"BALLOON_CHANGE\", \"data\": {\"actual\": 1}, "
		    "\"timestamp\": {\"seconds\": 1, \"microseconds\": 3}}\r\n");
	srv_send(f, "{\"return\": {\"stale\": true}, \"id\": 999999}\r\n");
	srv_send(f, "{\"event\": \"RESUME\", \"timestamp\": {\"seconds\": 1, \"microseconds\": "
		    "4}}\r\n");
	srv_reply(f, id, "{}");
	if (!srv_expect(f, "query-status", id, sizeof(id), NULL))
		return;
	srv_reply(f, id, "{\"status\": \"running\"}");
	usleep(50000);
	/* Unsolicited, after the reply: read by qmp_next_event itself. */
	srv_send(f, "{\"event\": \"RTC_CHANGE\", \"data\": {\"offset\": 3}}\r\n");
	usleep(50000);
	srv_send(f, "{\"event\": \"SHUTDOWN\", \"data\": {\"guest\": true}}\r\n");
	srv_hangup(f);
}

/* Polls qmp_next_event until it returns something other than -ENOENT. */
static int next_event_wait(struct fake *f, char *name, size_t namelen, struct json_object **data)
{
	int64_t end = now_ms() + 2000;
	int r;

	while ((r = qmp_next_event(f->q, name, namelen, data)) == -ENOENT && now_ms() < end)
		usleep(5000);
	return r;
}

static void test_events_in_order(void **state)
{
	struct fake *f = *state;
	struct json_object *data;
	char name[64], err[256] = "";

	serve(f, script_events);
	open_ok(f, 2000);
	assert_int_equal(qmp_execute(f->q, "cont", NULL, NULL, 2000, err, sizeof(err)), 0);
	assert_null(pop(f, "STOP"));
	data = pop(f, "BALLOON_CHANGE");
	assert_int_equal(get_int(data, "actual"), 1);
	json_object_put(data);
	assert_null(pop(f, "RESUME"));
	assert_int_equal(qmp_next_event(f->q, name, sizeof(name), NULL), -ENOENT);

	assert_int_equal(qmp_execute(f->q, "query-status", NULL, NULL, 2000, err, sizeof(err)), 0);
	assert_int_equal(next_event_wait(f, name, sizeof(name), &data), 0);
	assert_string_equal(name, "RTC_CHANGE");
	assert_int_equal(get_int(data, "offset"), 3);
	json_object_put(data);
	/* The last event before the hang-up still comes, then the connection is reported
	 * gone; a short name buffer truncates. */
	assert_int_equal(next_event_wait(f, name, 5, NULL), 0);
	assert_string_equal(name, "SHUT");
	assert_int_equal(next_event_wait(f, name, sizeof(name), NULL), -ENOTCONN);
	finish(f);
}

static void script_flood(struct fake *f)
{
	char id[64];

	if (!srv_handshake(f) || !srv_expect(f, "cont", id, sizeof(id), NULL))
		return;
	for (int i = 0; i < QMP_EVENT_QUEUE_MAX + 10; i++)
		if (!srv_sendf(f, "{\"event\": \"E\", \"data\": {\"n\": %d}}\r\n", i))
			return;
	srv_reply(f, id, "{}");
	srv_wait_close(f);
}

static void test_event_queue_bounded(void **state)
{
	struct fake *f = *state;
	struct json_object *data;
	char name[64], err[256] = "";
	int n = 0;

	serve(f, script_flood);
	open_ok(f, 2000);
	assert_int_equal(qmp_execute(f->q, "cont", NULL, NULL, 2000, err, sizeof(err)), 0);
	while (qmp_next_event(f->q, name, sizeof(name), &data) == 0) {
		/* The oldest ten were dropped; the rest come in order. */
		assert_int_equal(get_int(data, "n"), n + 10);
		json_object_put(data);
		n++;
	}
	assert_int_equal(n, QMP_EVENT_QUEUE_MAX);
	finish(f);
}

/* ---- framing ---- */

static void script_framing(struct fake *f)
{
	static const char pretty[] = "{\n    \"return\": {\n        \"actual\": 536870912\n    },\n"
				     "    \"id\": %s\n}\r\n";
	/* Cut inside a key, a number, a string, and between "\r" and "\n". */
	size_t greet_cuts[] = {3, (size_t)(strstr(GREETING, "22") - GREETING) + 1,
			       (size_t)(strstr(GREETING, "Debian") - GREETING) + 3,
			       sizeof(GREETING) - 2};
	char id[64], text[512];

	if (!srv_accept(f) || !srv_send_split(f, GREETING, greet_cuts, 4))
		return;
	if (!srv_expect(f, "qmp_capabilities", id, sizeof(id), NULL))
		return;
	/* One byte, then the rest cut between the id and the brace and inside "\r\n". */
	snprintf(text, sizeof(text), "{\"return\": {}, \"id\": %s}\r\n", id);
	size_t reply_cuts[] = {1, 5, strlen(text) - 3, strlen(text) - 1};
	if (!srv_send_split(f, text, reply_cuts, 4))
		return;
	/* An event and the reply in one write. */
	if (!srv_expect(f, "query-status", id, sizeof(id), NULL))
		return;
	srv_sendf(f,
		  "{\"event\": \"STOP\"}\r\n{\"return\": {\"status\": \"paused\"}, \"id\": %s}\r\n",
		  id);
	/* A pretty-printed reply over several lines and two writes. */
	if (!srv_expect(f, "query-balloon", id, sizeof(id), NULL))
		return;
	snprintf(text, sizeof(text), pretty, id);
	size_t pretty_cuts[] = {20};
	if (!srv_send_split(f, text, pretty_cuts, 1))
		return;
	/* A stale reply, the right one and half an event in one write, then the rest. */
	if (!srv_expect(f, "query-name", id, sizeof(id), NULL))
		return;
	srv_sendf(f,
		  "{\"return\": {\"name\": \"stale\"}, \"id\": 424242}\r\n"
		  "{\"return\": {\"name\": \"vm1\"}, \"id\": %s}\r\n{\"event\": \"RES",
		  id);
	usleep(50000);
	srv_send(f, "UME\"}\r\n");
	srv_wait_close(f);
}

static void test_split_and_coalesced(void **state)
{
	struct fake *f = *state;
	struct json_object *res;
	uint64_t actual = 0;
	char name[64], err[256] = "";

	serve(f, script_framing);
	open_ok(f, 2000);
	assert_int_equal(qmp_execute(f->q, "query-status", NULL, &res, 2000, err, sizeof(err)), 0);
	assert_string_equal(get_str(res, "status"), "paused");
	json_object_put(res);
	assert_null(pop(f, "STOP"));
	assert_int_equal(qmp_balloon_actual(f->q, &actual, err, sizeof(err)), 0);
	assert_int_equal(actual, 512 * MIB);
	assert_int_equal(qmp_execute(f->q, "query-name", NULL, &res, 2000, err, sizeof(err)), 0);
	assert_string_equal(get_str(res, "name"), "vm1");
	json_object_put(res);
	assert_int_equal(next_event_wait(f, name, sizeof(name), NULL), 0);
	assert_string_equal(name, "RESUME");
	finish(f);
}

/* ---- timeouts ---- */

static void script_silent(struct fake *f)
{
	char id[64], late[64];

	if (!srv_handshake(f) || !srv_expect(f, "query-status", late, sizeof(late), NULL))
		return;
	/* No answer until the client, having given up, asks something else. */
	if (!srv_expect(f, "query-balloon", id, sizeof(id), NULL))
		return;
	srv_reply(f, late, "{\"actual\": 1}");
	srv_reply(f, id, "{\"actual\": 268435456}");
	srv_wait_close(f);
	/* Then a server that accepts and never greets. */
	if (srv_accept(f))
		srv_wait_close(f);
}

static void test_never_answers(void **state)
{
	struct fake *f = *state;
	struct json_object *res = (void *)1;
	uint64_t actual = 0;
	char err[256] = "";
	int64_t t0;

	serve(f, script_silent);
	open_ok(f, 2000);
	t0 = now_ms();
	assert_int_equal(qmp_execute(f->q, "query-status", NULL, &res, 300, err, sizeof(err)),
			 -ETIMEDOUT);
	assert_in_range(now_ms() - t0, 300, 1000);
	assert_null(res);
	assert_string_equal(err, "query-status: no reply within 300 ms");
	/* The late reply to query-status is not taken for this one. */
	assert_int_equal(qmp_balloon_actual(f->q, &actual, err, sizeof(err)), 0);
	assert_int_equal(actual, 256 * MIB);
	qmp_close(f->q);
	f->q = NULL;

	t0 = now_ms();
	assert_int_equal(qmp_open(&f->q, f->path, 300, err, sizeof(err)), -ETIMEDOUT);
	assert_in_range(now_ms() - t0, 300, 1000);
	assert_null(f->q);
	assert_non_null(strstr(err, f->path));
	assert_non_null(strstr(err, "no QMP greeting"));
	finish(f);
}

/* ---- reconnecting ---- */

static void script_reconnect(struct fake *f)
{
	char id[64];

	/* Closes right after the handshake, comes back. */
	if (!srv_handshake(f))
		return;
	srv_hangup(f);
	if (!srv_handshake(f) || !srv_expect(f, "query-status", id, sizeof(id), NULL) ||
	    !srv_reply(f, id, "{\"status\": \"running\"}"))
		return;
	/* Dies in the middle of a command, comes back. */
	if (!srv_expect(f, "query-balloon", id, sizeof(id), NULL))
		return;
	srv_hangup(f);
	if (!srv_handshake(f) || !srv_expect(f, "query-balloon", id, sizeof(id), NULL) ||
	    !srv_reply(f, id, "{\"actual\": 134217728}"))
		return;
	/* Dies in the middle of a command, twice: the client must retry once only. */
	if (!srv_expect(f, "cont", id, sizeof(id), NULL))
		return;
	srv_hangup(f);
	if (!srv_handshake(f) || !srv_expect(f, "cont", id, sizeof(id), NULL))
		return;
	srv_hangup(f);
	if (!srv_no_client(f, 300))
		return;
	/* Gone for good: nothing listens on the socket any more. */
	close(f->lfd);
	f->lfd = -1;
	srv_note(f);
}

static void test_reconnect(void **state)
{
	struct fake *f = *state;
	struct json_object *res;
	uint64_t actual = 0;
	char err[256] = "";
	int before = open_fds(), r;

	serve(f, script_reconnect);
	open_ok(f, 2000);
	assert_int_equal(qmp_execute(f->q, "query-status", NULL, &res, 2000, err, sizeof(err)), 0);
	assert_string_equal(get_str(res, "status"), "running");
	json_object_put(res);
	assert_int_equal(qmp_balloon_actual(f->q, &actual, err, sizeof(err)), 0);
	assert_int_equal(actual, 128 * MIB);

	r = qmp_execute(f->q, "cont", NULL, NULL, 2000, err, sizeof(err));
	assert_true(r == -ECONNRESET || r == -EPIPE);
	assert_non_null(strstr(err, "cont: connection lost again"));

	wait_note(f);
	r = qmp_execute(f->q, "query-status", NULL, NULL, 2000, err, sizeof(err));
	assert_true(r == -ECONNRESET || r == -EPIPE);
	assert_non_null(strstr(err, "query-status: connection lost"));
	assert_non_null(strstr(err, "refused"));
	finish(f);
	assert_int_equal(open_fds(), before - 1); /* the listener is gone too */
}

/* ---- failures to open ---- */

static void test_missing_socket(void **state)
{
	struct fake *f = *state;
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	char path[200], err[256] = "";
	struct qmp *q = (void *)1;
	int s;

	snprintf(path, sizeof(path), "%s/nope.sock", f->dir);
	assert_int_equal(qmp_open(&q, path, 1000, err, sizeof(err)), -ENOENT);
	assert_null(q);
	assert_non_null(strstr(err, path));
	assert_non_null(strstr(err, "no such socket"));

	/* Bound, nobody listening: what QEMU leaves behind when it is killed. */
	snprintf(path, sizeof(path), "%s/dead.sock", f->dir);
	strcpy(sa.sun_path, path);
	s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_int_equal(bind(s, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(qmp_open(&q, path, 1000, err, sizeof(err)), -ECONNREFUSED);
	assert_non_null(strstr(err, "refused"));
	close(s);

	memset(path, 'p', sizeof(path) - 1);
	path[0] = '/';
	path[sizeof(path) - 1] = 0;
	assert_int_equal(qmp_open(&q, path, 1000, err, sizeof(err)), -ENAMETOOLONG);
	assert_null(q);
	/* err may be NULL. */
	assert_int_equal(qmp_open(&q, path, 1000, NULL, 0), -ENAMETOOLONG);
}

static void script_not_qmp(struct fake *f)
{
	char id[64];

	if (srv_accept(f) && srv_send(f, "SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n"))
		srv_wait_close(f);
	if (srv_accept(f) && srv_send(f, "{\"hello\": \"world\"}\r\n"))
		srv_wait_close(f);
	if (srv_accept(f))
		srv_hangup(f);
	if (srv_accept(f) && srv_send(f, GREETING) &&
	    srv_expect(f, "qmp_capabilities", id, sizeof(id), NULL) &&
	    srv_sendf(f,
		      "{\"id\": %s, \"error\": {\"class\": \"GenericError\", \"desc\": "
		      "\"Capabilities negotiation is already complete\"}}\r\n",
		      id))
		srv_wait_close(f);
}

static void test_not_qmp(void **state)
{
	struct fake *f = *state;
	char err[256] = "";

	serve(f, script_not_qmp);
	assert_int_equal(qmp_open(&f->q, f->path, 1000, err, sizeof(err)), -EPROTO);
	assert_null(f->q);
	assert_non_null(strstr(err, "not QMP"));
	assert_int_equal(qmp_open(&f->q, f->path, 1000, err, sizeof(err)), -EPROTO);
	assert_non_null(strstr(err, "not QMP"));
	assert_int_equal(qmp_open(&f->q, f->path, 1000, err, sizeof(err)), -ECONNRESET);
	assert_non_null(strstr(err, "closed before the QMP greeting"));
	assert_int_equal(qmp_open(&f->q, f->path, 1000, err, sizeof(err)), -EREMOTEIO);
	assert_non_null(strstr(err, "Capabilities negotiation is already complete"));
	assert_null(f->q);
	finish(f);
}

/* A VM names its QMP socket: with the VM's pid given, a socket another process listens on
 * (here: this process, not the pid asked for) is refused before a byte is read from it. */
static void script_pid(struct fake *f)
{
	if (srv_accept(f)) /* the refused connection */
		srv_hangup(f);
	if (srv_handshake(f))
		srv_wait_close(f);
}

static void test_peer_pid(void **state)
{
	struct fake *f = *state;
	char err[256] = "";

	serve(f, script_pid);
	assert_int_equal(qmp_open_pid(&f->q, f->path, 1, 1000, err, sizeof(err)), -EACCES);
	assert_null(f->q);
	assert_non_null(strstr(err, "not the VM's pid 1: not its QMP"));
	assert_int_equal(qmp_open_pid(&f->q, f->path, getpid(), 1000, err, sizeof(err)), 0);
	assert_non_null(f->q);
	finish(f);
}

/* ---- balloon helpers against the fake ---- */

static void script_balloon(struct fake *f)
{
	struct json_object *args = NULL, *v;
	char id[64];

	if (!srv_handshake(f) || !srv_expect(f, "qom-set", id, sizeof(id), &args))
		return;
	if (!arg_is(args, "path", BALLOON_QOM) ||
	    !arg_is(args, "property", "guest-stats-polling-interval") ||
	    !json_object_object_get_ex(args, "value", &v) || json_object_get_int(v) != 5)
		srv_fail(f, "qom-set arguments: %s", json_object_to_json_string(args));
	json_object_put(args);
	srv_reply(f, id, "{}");
	if (!srv_expect(f, "qom-get", id, sizeof(id), &args))
		return;
	if (!arg_is(args, "path", BALLOON_QOM) || !arg_is(args, "property", "guest-stats"))
		srv_fail(f, "qom-get arguments: %s", json_object_to_json_string(args));
	json_object_put(args);
	srv_reply(f, id,
		  "{\"stats\": {\"stat-free-memory\": 1048576, \"stat-total-memory\": "
		  "4294967296, \"stat-swap-in\": -1, \"stat-available-memory\": "
		  "18446744073709551615, \"stat-major-faults\": 0, \"stat-minor-faults\": 12345, "
		  "\"stat-htlb-pgalloc\": 7}, \"last-update\": 1700000000}");
	if (!srv_expect(f, "balloon", id, sizeof(id), &args))
		return;
	if (!json_object_object_get_ex(args, "value", &v) ||
	    json_object_get_int64(v) != (int64_t)(512 * MIB))
		srv_fail(f, "balloon arguments: %s", json_object_to_json_string(args));
	json_object_put(args);
	srv_reply(f, id, "{}");
	args = NULL;
	if (srv_expect(f, "qom-get", id, sizeof(id), &args))
		srv_reply(f, id, "{\"last-update\": 0}");
	json_object_put(args);
	if (srv_expect(f, "query-balloon", id, sizeof(id), NULL))
		srv_reply(f, id, "{}");
	srv_wait_close(f);
}

static void test_balloon_helpers(void **state)
{
	struct fake *f = *state;
	struct qmp_guest_stats st;
	uint64_t actual = 7;
	char err[256] = "";

	serve(f, script_balloon);
	open_ok(f, 2000);
	/* Refused here, never sent (the script would see them). */
	assert_int_equal(qmp_balloon_set(f->q, 0, err, sizeof(err)), -EINVAL);
	assert_int_equal(qmp_balloon_set(f->q, UINT64_MAX, err, sizeof(err)), -EINVAL);
	assert_int_equal(qmp_guest_stats_enable(f->q, BALLOON_QOM, -1, err, sizeof(err)), -EINVAL);

	assert_int_equal(qmp_guest_stats_enable(f->q, BALLOON_QOM, 5, err, sizeof(err)), 0);
	memset(&st, 0x5a, sizeof(st));
	assert_int_equal(qmp_guest_stats(f->q, BALLOON_QOM, &st, err, sizeof(err)), 0);
	assert_true(st.valid);
	assert_int_equal(st.last_update, 1700000000);
	assert_int_equal(st.free, MIB);
	assert_int_equal(st.total, 4096 * MIB);
	assert_int_equal(st.swap_in, QMP_STAT_NONE);   /* -1 */
	assert_int_equal(st.available, QMP_STAT_NONE); /* (uint64_t)-1 */
	assert_int_equal(st.swap_out, QMP_STAT_NONE);  /* missing */
	assert_int_equal(st.disk_caches, QMP_STAT_NONE);
	assert_int_equal(st.major_faults, 0);
	assert_int_equal(st.minor_faults, 12345);

	assert_int_equal(qmp_balloon_set(f->q, 512 * MIB, err, sizeof(err)), 0);
	assert_int_equal(qmp_guest_stats(f->q, BALLOON_QOM, &st, err, sizeof(err)), -EPROTO);
	assert_non_null(strstr(err, "lacks"));
	assert_int_equal(qmp_balloon_actual(f->q, &actual, err, sizeof(err)), -EPROTO);
	assert_int_equal(actual, 7);
	finish(f);
}

/* ---- a real QEMU ---- */

static bool have_qemu(void)
{
	const char *path = getenv("PATH");
	char buf[PATH_MAX];

	for (const char *p = path; p && *p;) {
		size_t n = strcspn(p, ":");

		snprintf(buf, sizeof(buf), "%.*s/qemu-system-x86_64", (int)n, p);
		if (access(buf, X_OK) == 0)
			return true;
		p += n + (p[n] == ':');
	}
	return false;
}

static void start_qemu(struct fake *f)
{
	char qmp[200], log[200];
	pid_t pid;

	snprintf(qmp, sizeof(qmp), "unix:%s/q.sock,server=on,wait=off", f->dir);
	snprintf(log, sizeof(log), "%s/qemu.log", f->dir);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);

		/* Dies with the test, whatever kills the test. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		dup2(fd, 1);
		dup2(fd, 2);
		execlp("qemu-system-x86_64", "qemu-system-x86_64", "-M", "pc", "-accel", "tcg",
		       "-S", "-nodefaults", "-display", "none", "-m", "128", "-device",
		       "virtio-balloon-pci,id=uffd-balloon", "-qmp", qmp, (char *)NULL);
		_exit(127);
	}
	f->qemu = pid;
}

/* Waits for QEMU's socket and connects; QEMU may still be between bind and listen. */
static void connect_qemu(struct fake *f)
{
	int64_t end = now_ms() + 8000;
	char err[256] = "";
	int r, status;

	for (;;) {
		r = qmp_open(&f->q, f->path, 3000, err, sizeof(err));
		if (r != -ENOENT && r != -ECONNREFUSED)
			break;
		if (waitpid(f->qemu, &status, WNOHANG) == f->qemu) {
			f->qemu = 0;
			fail_msg("QEMU exited early (status %#x); see %s/qemu.log", status, f->dir);
		}
		if (now_ms() > end)
			break;
		usleep(20000);
	}
	if (r)
		fail_msg("qmp_open to a real QEMU: %d %s", r, err);
}

static void test_real_qemu(void **state)
{
	struct fake *f = *state;
	struct json_object *args, *res, *data;
	struct qmp_guest_stats st;
	uint64_t actual = 0;
	char err[256] = "", name[64];
	int status = 0;
	int64_t end;

	if (!have_qemu()) {
		print_message("qemu-system-x86_64 not in PATH: skipped\n");
		skip();
	}
	/* The fixture's listener is in the way of QEMU's own. */
	close(f->lfd);
	f->lfd = -1;
	unlink(f->path);
	start_qemu(f);
	connect_qemu(f);

	assert_int_equal(qmp_balloon_actual(f->q, &actual, err, sizeof(err)), 0);
	assert_int_equal(actual, 128 * MIB);

	assert_int_equal(qmp_guest_stats_enable(f->q, BALLOON_QOM, 2, err, sizeof(err)), 0);
	args = json_object_new_object();
	json_object_object_add(args, "path", json_object_new_string(BALLOON_QOM));
	json_object_object_add(args, "property",
			       json_object_new_string("guest-stats-polling-interval"));
	assert_int_equal(qmp_execute(f->q, "qom-get", args, &res, 3000, err, sizeof(err)), 0);
	assert_int_equal(json_object_get_int(res), 2);
	json_object_put(res);
	json_object_put(args);

	/* No guest driver (the guest never ran): a valid answer, nothing reported. */
	memset(&st, 0x5a, sizeof(st));
	assert_int_equal(qmp_guest_stats(f->q, BALLOON_QOM, &st, err, sizeof(err)), 0);
	assert_false(st.valid);
	assert_int_equal(st.last_update, 0);
	assert_int_equal(st.free, QMP_STAT_NONE);
	assert_int_equal(st.available, QMP_STAT_NONE);
	assert_int_equal(st.total, QMP_STAT_NONE);
	assert_int_equal(st.swap_in, QMP_STAT_NONE);
	assert_int_equal(st.swap_out, QMP_STAT_NONE);
	assert_int_equal(st.major_faults, QMP_STAT_NONE);
	assert_int_equal(st.minor_faults, QMP_STAT_NONE);
	assert_int_equal(st.disk_caches, QMP_STAT_NONE);

	assert_int_equal(qmp_guest_stats(f->q, "/machine/peripheral/nope", &st, err, sizeof(err)),
			 -EREMOTEIO);
	assert_string_equal(err, "qom-get: Device '/machine/peripheral/nope' not found");

	/* Accepted; the stopped guest will not move towards it. */
	assert_int_equal(qmp_balloon_set(f->q, 64 * MIB, err, sizeof(err)), 0);

	assert_int_equal(qmp_execute(f->q, "quit", NULL, NULL, 3000, err, sizeof(err)), 0);
	/* QEMU sends SHUTDOWN before quit's return. */
	data = pop(f, "SHUTDOWN");
	assert_string_equal(get_str(data, "reason"), "host-qmp-quit");
	json_object_put(data);

	end = now_ms() + 5000;
	while (waitpid(f->qemu, &status, WNOHANG) == 0 && now_ms() < end)
		usleep(10000);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	f->qemu = 0;
	assert_int_equal(next_event_wait(f, name, sizeof(name), NULL), -ENOTCONN);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_command, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_error_reply, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_events_in_order, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_event_queue_bounded, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_split_and_coalesced, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_never_answers, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_reconnect, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_missing_socket, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_not_qmp, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_peer_pid, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_balloon_helpers, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_real_qemu, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
