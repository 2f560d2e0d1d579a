/* metrics: the daemon's stats snapshot (the JSON that `uffdctl stats --json` prints) in the
 * Prometheus text exposition format, version 0.0.4, for `uffdctl metrics` and the daemon's
 * HTTP /metrics (promhttp.h).
 *
 * Names follow Prometheus' conventions: prefix uffd_mgr_, base units (bytes, seconds; pages
 * are turned into bytes), counters end in _total, one label vm="NAME" per VM, a second label
 * where a family has kinds (faults_total{kind="shm"}). Every family has its HELP and TYPE
 * lines even with no VM, so a scrape always shows the full list. Exited VMs (kept by the
 * daemon for `uffdctl stats`) are left out: their series end when the VM does.
 *
 * A pure function of the snapshot: no daemon, no I/O. */
#ifndef UFFD_METRICS_H
#define UFFD_METRICS_H

#include <stddef.h>

struct json_object;

#define METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/* Formats snap (a snapshot as the stats socket sends it: {"daemon": {...}, "vms": [...]}).
 * Fields it lacks are left out, never guessed. On success *text (to free) holds the
 * exposition, NUL-terminated, and *len its length. Returns 0, or -ENOMEM. */
int metrics_format(struct json_object *snap, char **text, size_t *len);

/* The value at a dotted path of a snapshot's object, e.g. "faults.shm" of a VM's, or NULL
 * when any step is missing (uffdctl's table and top read snapshots through it too). */
struct json_object *metrics_lookup(struct json_object *o, const char *path);

#endif
