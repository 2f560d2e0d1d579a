/* qmp: a client for one QEMU's QMP (QEMU Machine Protocol) unix socket, and the few
 * virtio-balloon commands uffd-mgr needs.
 *
 * QMP is a stream of JSON objects, one per line in QEMU's default output (pretty=on output
 * spans lines; both are parsed). QEMU speaks first with a greeting {"QMP": {...}}; the client
 * must send qmp_capabilities before any other command. Every command carries an "id" that
 * QEMU copies into its reply, so a reply that arrives after its command timed out is known
 * for what it is and dropped. Asynchronous events ({"event": NAME, "data": {...}}) may come
 * at any time, before a reply included; they are queued here, oldest first, until popped.
 *
 * QEMU serves one QMP client per socket at a time: a second client is accepted by the kernel
 * but gets no greeting until the first goes, which shows up here as a timeout.
 *
 * No threads inside: one struct qmp must be used by one thread at a time; the caller
 * serialises. Every read waits in poll() with a timeout; writes never raise SIGPIPE. */
#ifndef UFFD_QMP_H
#define UFFD_QMP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct json_object;
struct qmp;

/* Events kept until popped; when more arrive, the oldest are dropped. */
#define QMP_EVENT_QUEUE_MAX 256
/* The largest message accepted from QEMU: a bound on memory, far above any normal reply. */
#define QMP_MSG_MAX (8 << 20)
/* A guest statistic that the guest has not reported. */
#define QMP_STAT_NONE UINT64_MAX

/* Connects to the QMP unix socket at socket_path, reads QEMU's greeting, sends
 * qmp_capabilities and waits for its return, all within timeout_ms (< 0: no limit). The
 * connection is not retried: a missing socket or a refused connection fails at once.
 * timeout_ms is also the timeout of the balloon helpers below. On success *out is the new
 * connection; on failure *out is NULL and err gets one line naming the socket and the cause.
 * Returns 0, or -ENOENT (no socket), -ECONNREFUSED (nobody listening), -ETIMEDOUT (no
 * greeting or no answer in time), -EPROTO (the peer is not QMP), -ECONNRESET (closed before
 * the handshake ended), -EREMOTEIO (qmp_capabilities refused), -ENAMETOOLONG, -ENOMEM, or
 * another -errno from socket(2)/connect(2). */
int qmp_open(struct qmp **out, const char *socket_path, int timeout_ms, char *err, size_t errlen);

/* As qmp_open, for a QMP socket a VM named: the process listening on it must be pid, at this
 * connect and every reconnect, else -EACCES (err says who listens), so that a VM cannot point
 * the caller at another VM's QMP. */
int qmp_open_pid(struct qmp **out, const char *socket_path, pid_t pid, int timeout_ms,
		 char *err, size_t errlen);

/* Closes the connection and frees queued events. Accepts NULL. Cannot fail. */
void qmp_close(struct qmp *q);

/* Runs one command: sends {"execute": command, "arguments": args, "id": N} and reads until
 * the reply carrying id N, within timeout_ms (< 0: no limit) for the whole call. args may be
 * NULL and is not consumed. Events read meanwhile are queued; replies to earlier, timed-out
 * commands are dropped. If the connection is found broken (QEMU closed it, or it was lost
 * earlier), the call reconnects once, negotiates capabilities again and sends the command
 * once more, so a command may run twice: use it for commands that can. On success *result
 * (if result is not NULL) holds the reply's "return" value, which the caller must
 * json_object_put(); on failure *result is NULL and err gets one line starting with the
 * command's name. Returns 0, -EREMOTEIO (QEMU answered with an error; err is
 * "<command>: <QEMU's desc>"), -ETIMEDOUT, -ECONNRESET or -EPIPE (connection lost and the
 * reconnect or the retry failed), -EPROTO or -EMSGSIZE (QEMU sent something that is not
 * QMP; the connection is dropped and the next call reconnects), -EINVAL, -ENOMEM. */
int qmp_execute(struct qmp *q, const char *command, struct json_object *args,
		struct json_object **result, int timeout_ms, char *err, size_t errlen);

/* Pops the oldest queued event after reading, without blocking, whatever is already waiting
 * on the socket. The event's name is copied to name (truncated to namelen); *data (if data is
 * not NULL) gets its "data" member or NULL when it has none, and the caller must
 * json_object_put() it. Returns 0, -ENOENT when no event is queued, or -ENOTCONN when none
 * is queued and QEMU has closed the connection (the next qmp_execute() reconnects). */
int qmp_next_event(struct qmp *q, char *name, size_t namelen, struct json_object **data);

/* Asks the guest's balloon driver to bring guest RAM to target_bytes ("balloon"). Returns as
 * soon as QEMU accepts the target; the guest moves towards it later, if it has a driver.
 * Returns 0, -EINVAL for a target of 0 or above INT64_MAX, or as qmp_execute(). */
int qmp_balloon_set(struct qmp *q, uint64_t target_bytes, char *err, size_t errlen);

/* Reads the guest RAM size the balloon currently leaves the guest ("query-balloon",
 * "actual"). Returns 0, -EPROTO when the answer has no "actual", or as qmp_execute(). */
int qmp_balloon_actual(struct qmp *q, uint64_t *actual_bytes, char *err, size_t errlen);

/* Finds the guest's virtio-balloon, whatever its id (uffd-qemu's uffd-balloon, libvirt's
 * balloon0, or none: /machine/peripheral-anon), and writes its QOM path into path. Returns 0,
 * -ENOENT when the guest has none, -ENAMETOOLONG, or as qmp_execute(). */
int qmp_find_balloon(struct qmp *q, char *path, size_t pathlen, char *err, size_t errlen);

/* Has the balloon device at balloon_qom_path (e.g. "/machine/peripheral/uffd-balloon") ask
 * the guest for memory statistics every interval_s seconds; 0 stops it. Returns 0, -EINVAL
 * for a negative interval, or as qmp_execute(). */
int qmp_guest_stats_enable(struct qmp *q, const char *balloon_qom_path, int interval_s, char *err,
			   size_t errlen);

/* The guest's last memory statistics report, as the balloon device keeps it. Sizes are in
 * bytes, the other fields are counts since guest boot; each is QMP_STAT_NONE when the guest
 * did not report it. */
struct qmp_guest_stats {
	int64_t last_update;   /* guest report time, seconds since the epoch; 0: never */
	uint64_t free;	       /* stat-free-memory */
	uint64_t available;    /* stat-available-memory */
	uint64_t total;	       /* stat-total-memory */
	uint64_t swap_in;      /* stat-swap-in, bytes */
	uint64_t swap_out;     /* stat-swap-out, bytes */
	uint64_t major_faults; /* stat-major-faults */
	uint64_t minor_faults; /* stat-minor-faults */
	uint64_t disk_caches;  /* stat-disk-caches */
	bool valid;	       /* the guest has reported at least once (last_update != 0) */
};

/* Fills *out from the balloon device at balloon_qom_path ("qom-get" of "guest-stats"). Without
 * a guest driver, or before the first report, the call succeeds with valid false and every
 * statistic QMP_STAT_NONE. Returns 0, -EPROTO when the answer lacks "stats" or
 * "last-update", or as qmp_execute(). */
int qmp_guest_stats(struct qmp *q, const char *balloon_qom_path, struct qmp_guest_stats *out,
		    char *err, size_t errlen);

#endif
