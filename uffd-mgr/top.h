/* top: `uffdctl top`, a live full-screen view (ncurses) of every VM the daemon serves: its
 * tiers against their limits, faults per second by kind, fault latency, working set and the
 * planner's targets, one row a VM sorted by resident memory, refreshed every second.
 *
 * uffdctl's own module: it links ncurses, so it stays out of the library that the daemon,
 * the shim and the tests link (Makefile, CTL_SRCS). */
#ifndef UFFD_TOP_H
#define UFFD_TOP_H

struct json_object;

/* Gives one stats snapshot (a new reference), or NULL when the daemon does not answer. */
typedef struct json_object *(*top_fetch_fn)(void *arg);

/* Runs the view until q (or Q, or an interrupt); where names the daemon's socket in its
 * messages. Without a terminal on stdin and stdout, or with no daemon answering at the start,
 * says so in one line on stderr. Returns the exit status: 0 after q, 1 on those errors. */
int top_run(top_fetch_fn fetch, void *arg, const char *where);

#endif
