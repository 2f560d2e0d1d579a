/* stats: JSON snapshots of the daemon and its VMs for the stats socket (uffdctl). */
#ifndef UFFD_STATS_H
#define UFFD_STATS_H

#include <json-c/json.h>

struct vm;

/* A snapshot of one VM, taken under its lock; state is "running" or "exited". Returns a new
 * JSON object, or NULL when out of memory. */
struct json_object *stats_vm_json(struct vm *vm, const char *state);

#endif
