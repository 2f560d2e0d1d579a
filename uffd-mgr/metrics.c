/* metrics: see metrics.h. Every family is a row of one of the tables below: the only place a
 * metric is named. The JSON paths are the stats socket's fields (stats.c). */
#include "uffd-mgr/metrics.h"

#include <errno.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PAGE 4096.0
#define MS   1e-3
#define US   1e-6

enum mtype { GAUGE, COUNTER };

/* One series of a family: the value of its extra label (NULL when the family has none; "*"
 * for one series per key of the JSON object at path) and where its value is. */
struct series {
	const char *label_value;
	const char *path;
};

struct family {
	const char *name;
	enum mtype type;
	double scale;	   /* JSON value * scale = the metric, in base units */
	const char *label; /* the extra label's name, or NULL */
	const char *help;
	struct series s[8]; /* up to the first with path NULL */
};

/* The tables read best a family a row or two, which clang-format would spread out. */
/* clang-format off */

/* Daemon-wide families; paths from the snapshot's root. */
static const struct family daemon_families[] = {
    {"uffd_mgr_uptime_seconds", GAUGE, 1, NULL, "Time since the daemon started.",
     {{NULL, "daemon.uptime_s"}}},
    {"uffd_mgr_budget_bytes", GAUGE, 1, NULL,
     "Host RAM all VMs may hold together (--budget), split by the planner.",
     {{NULL, "daemon.plan.budget"}}},
    {"uffd_mgr_replans_total", COUNTER, 1, NULL, "Re-plans of the host budget.",
     {{NULL, "daemon.plan.replans"}}},
    {"uffd_mgr_planner_emergencies_total", COUNTER, 1, NULL,
     "Emergency re-plans, when a VM's faults or swapping spiked.",
     {{NULL, "daemon.plan.emergencies"}}},
    {"uffd_mgr_overcommitted", GAUGE, 1, NULL,
     "1 while the VMs' critical amounts together exceed the budget.",
     {{NULL, "daemon.plan.overcommitted"}}},
};

/* Per-VM families; paths from one element of "vms". */
static const struct family vm_families[] = {
    {"uffd_mgr_vm_uptime_seconds", GAUGE, 1, NULL, "Time since the VM registered.",
     {{NULL, "uptime_s"}}},
    {"uffd_mgr_vm_failed", GAUGE, 1, NULL, "1 when the VM could not go on and was stopped.",
     {{NULL, "failed"}}},
    {"uffd_mgr_fault_thread_up", GAUGE, 1, NULL, "1 while a thread serves the VM's faults.",
     {{NULL, "fault_thread.alive"}}},
    {"uffd_mgr_fault_thread_restarts_total", COUNTER, 1, NULL,
     "Times the VM's fault thread stopped and was restarted.", {{NULL, "fault_thread.restarts"}}},
    {"uffd_mgr_guest_bytes", GAUGE, 1, NULL, "Guest RAM managed for the VM.",
     {{NULL, "guest_bytes"}}},
    {"uffd_mgr_resident_bytes", GAUGE, 1, NULL, "Guest RAM resident in host memory.",
     {{NULL, "resident_bytes"}}},
    {"uffd_mgr_resident_max_bytes", GAUGE, 1, NULL,
     "The policy's resident_max (0: no limit).", {{NULL, "resident_max"}}},
    {"uffd_mgr_shm_bytes", GAUGE, 1, NULL, "Guest RAM held in the shared-memory tier.",
     {{NULL, "shm_bytes"}}},
    {"uffd_mgr_shm_max_bytes", GAUGE, 1, NULL, "The policy's [shm] max.", {{NULL, "shm_max"}}},
    {"uffd_mgr_shm_stored_bytes", GAUGE, 1, NULL,
     "Bytes of the shm tier's pool in use: with [shm] compress, the blobs that hold shm_bytes.",
     {{NULL, "shm_stored_bytes"}}},
    {"uffd_mgr_zshm_blobs_total", COUNTER, 1, "form",
     "Blobs the compressed shm tier stored: all of them, and those kept raw (incompressible).",
     {{"all", "zshm.blobs"}, {"raw", "zshm.raw_blobs"}}},
    {"uffd_mgr_zshm_stored_in_bytes_total", COUNTER, PAGE, NULL,
     "Guest RAM the compressed shm tier has stored.", {{NULL, "zshm.stored_pages"}}},
    {"uffd_mgr_zshm_stored_out_bytes_total", COUNTER, 1, NULL,
     "Pool bytes the compressed shm tier's blobs took.", {{NULL, "zshm.stored_bytes"}}},
    {"uffd_mgr_zshm_errors_total", COUNTER, 1, NULL,
     "Compressed blobs found damaged (the VM failed rather than serve wrong bytes).",
     {{NULL, "zshm.errors"}}},
    {"uffd_mgr_shm_runs", GAUGE, 1, NULL, "Runs of adjacent pages in the shm tier.",
     {{NULL, "shm_runs"}}},
    {"uffd_mgr_shm_full", GAUGE, 1, NULL, "1 while the shm tier is full.", {{NULL, "tier_full"}}},
    {"uffd_mgr_shm_full_events_total", COUNTER, 1, NULL, "Times the shm tier filled up.",
     {{NULL, "tier_full_events"}}},
    {"uffd_mgr_disk_enabled", GAUGE, 1, NULL, "1 when the VM has a disk tier.",
     {{NULL, "disk.enabled"}}},
    {"uffd_mgr_disk_bytes", GAUGE, 1, NULL, "Guest RAM held in the disk tier.",
     {{NULL, "disk.bytes"}}},
    {"uffd_mgr_disk_max_bytes", GAUGE, 1, NULL, "The policy's [disk] max (0: no disk tier).",
     {{NULL, "disk.max"}}},
    {"uffd_mgr_disk_runs", GAUGE, 1, NULL, "Runs of adjacent pages in the disk tier.",
     {{NULL, "disk.runs"}}},
    {"uffd_mgr_disk_full", GAUGE, 1, NULL, "1 while the disk tier is full.",
     {{NULL, "disk.full"}}},
    {"uffd_mgr_disk_full_events_total", COUNTER, 1, NULL, "Times the disk tier filled up.",
     {{NULL, "disk.full_events"}}},
    {"uffd_mgr_zero_bytes", GAUGE, PAGE, NULL, "Guest RAM known to be zero (held nowhere).",
     {{NULL, "zero_pages"}}},
    {"uffd_mgr_untouched_bytes", GAUGE, PAGE, NULL, "Guest RAM never touched yet.",
     {{NULL, "untouched_pages"}}},
    {"uffd_mgr_faults_total", COUNTER, 1, "kind",
     "Page faults served, by kind: zero page, shm tier, disk tier, write-protect, discarded "
     "page, sampled minor fault, duplicate (only woken).",
     {{"zero", "faults.zero"},
      {"shm", "faults.shm"},
      {"disk", "faults.disk"},
      {"wp", "faults.wp"},
      {"discarded", "faults.discarded"},
      {"minor", "faults.minor"},
      {"dup", "faults.dup"}}},
    {"uffd_mgr_fault_in_bytes_total", COUNTER, PAGE, "tier",
     "Guest RAM brought back by faults, by the tier it came from.",
     {{"shm", "faults.shm_pages"}, {"disk", "faults.disk_pages"}}},
    {"uffd_mgr_bring_back_bytes_total", COUNTER, PAGE, NULL,
     "Guest RAM brought back ahead of a fault (prefetch, release).",
     {{NULL, "faults.bring_back_pages"}}},
    {"uffd_mgr_ahead_total", COUNTER, 1, "kind",
     "Paging ahead of faults: first touches that filled their block, shm-tier faults that "
     "read ahead, UFFDIO_COPY calls of read-ahead and prefetch batches.",
     {{"first_touch_block", "ahead.first_touch_blocks"},
      {"readahead", "ahead.readahead_batches"},
      {"batch_copy", "ahead.batch_copies"}}},
    {"uffd_mgr_ahead_bytes_total", COUNTER, PAGE, "kind",
     "Guest RAM installed ahead of faults: zero pages of first-touch blocks, shm pages read "
     "ahead, shm pages of read-ahead and prefetch batches, and pages a batch found present "
     "(kept, their tier copy dropped).",
     {{"first_touch", "ahead.first_touch_pages"},
      {"readahead", "ahead.readahead_pages"},
      {"batch", "ahead.batch_pages"},
      {"kept", "ahead.batch_kept"}}},
    {"uffd_mgr_fault_thread_moves_total", COUNTER, 1, NULL,
     "Times the fault thread moved to the CPU its faults come from ([fault] cpu = follow).",
     {{NULL, "ahead.follow_moves"}}},
    {"uffd_mgr_fault_waits_total", COUNTER, 1, "reason",
     "Times a fault had to wait: for an eviction in flight (parked), for the evictor to make "
     "room (throttled), after ENOMEM (enomem).",
     {{"parked", "faults.parked"},
      {"throttled", "faults.throttled"},
      {"enomem", "faults.enomem_retries"}}},
    {"uffd_mgr_fault_errors_total", COUNTER, 1, NULL, "Faults that could not be served.",
     {{NULL, "faults.errors"}}},
    {"uffd_mgr_faults_stalled_total", COUNTER, 1, NULL,
     "Faults that waited longer than the policy's stall_warn.", {{NULL, "faults.stalled"}}},
    {"uffd_mgr_fault_max_wait_seconds", GAUGE, MS, NULL, "The longest a fault has waited.",
     {{NULL, "faults.max_wait_ms"}}},
    {"uffd_mgr_fault_latency_max_seconds", GAUGE, US, NULL,
     "The longest time from reading a fault to serving it.", {{NULL, "fault_latency_us.max"}}},
    {"uffd_mgr_evictions_total", COUNTER, 1, NULL,
     "Runs evicted from resident memory to the shm tier.", {{NULL, "evictions.runs"}}},
    {"uffd_mgr_evicted_bytes_total", COUNTER, PAGE, NULL, "Guest RAM evicted.",
     {{NULL, "evictions.pages"}}},
    {"uffd_mgr_evicted_zero_bytes_total", COUNTER, PAGE, NULL,
     "Evicted guest RAM found to be zero (stored nowhere).", {{NULL, "evictions.zero_pages"}}},
    {"uffd_mgr_eviction_errors_total", COUNTER, 1, "kind",
     "Evictions given up: aborted (the guest touched the run), write-protect errors.",
     {{"abort", "evictions.aborts"}, {"wp", "evictions.wp_errors"}}},
    {"uffd_mgr_demotions_total", COUNTER, 1, NULL, "Runs moved from the shm tier to disk.",
     {{NULL, "disk.demote_runs"}}},
    {"uffd_mgr_demoted_bytes_total", COUNTER, PAGE, NULL,
     "Guest RAM moved from the shm tier to disk.", {{NULL, "disk.demote_pages"}}},
    {"uffd_mgr_demote_errors_total", COUNTER, 1, NULL,
     "Failed demotions (the pages stayed in the shm tier).", {{NULL, "disk.demote_errors"}}},
    {"uffd_mgr_disk_ops_total", COUNTER, 1, "op", "Disk tier I/O operations.",
     {{"read", "disk.reads"}, {"write", "disk.writes"}}},
    {"uffd_mgr_disk_io_bytes_total", COUNTER, 1, "op", "Disk tier I/O.",
     {{"read", "disk.read_bytes"}, {"write", "disk.write_bytes"}}},
    {"uffd_mgr_disk_errors_total", COUNTER, 1, "op", "Failed disk tier operations.",
     {{"read", "disk.read_errors"},
      {"write", "disk.write_errors"},
      {"punch", "disk.punch_errors"}}},
    {"uffd_mgr_removes_total", COUNTER, 1, NULL,
     "Discards by QEMU (UFFD_EVENT_REMOVE): balloon, free page reporting.",
     {{NULL, "removes.events"}}},
    {"uffd_mgr_removed_bytes_total", COUNTER, PAGE, NULL, "Guest RAM discarded by QEMU.",
     {{NULL, "removes.pages"}}},
    {"uffd_mgr_adoptions_total", COUNTER, 1, NULL,
     "Times a restarted or upgraded daemon adopted the VM.", {{NULL, "restarts.adoptions"}}},
    {"uffd_mgr_restart_pause_seconds", GAUGE, MS, "which",
     "How long the guest's faults waited for a daemon across a restart: the last and the "
     "longest.",
     {{"last", "restarts.last_pause_ms"}, {"max", "restarts.max_pause_ms"}}},
    {"uffd_mgr_tracker_interval_seconds", GAUGE, MS, NULL,
     "The working-set tracker's interval.", {{NULL, "tracker.interval_ms"}}},
    {"uffd_mgr_working_set_bytes", GAUGE, 1, "window",
     "Guest RAM touched over the last 1, 10 and 60 tracker intervals.",
     {{"*", "tracker.wss_bytes"}}},
    {"uffd_mgr_page_age_bytes", GAUGE, PAGE, "age",
     "Guest RAM in use by the number of tracker intervals since it was last touched.",
     {{"*", "tracker.age_pages"}}},
    {"uffd_mgr_idle_bytes", GAUGE, 1, NULL,
     "Guest RAM in use and not touched for 60 intervals, or never.",
     {{NULL, "tracker.idle_bytes"}}},
    {"uffd_mgr_tracker_rounds_total", COUNTER, 1, NULL, "Tracker arming rounds in QEMU.",
     {{NULL, "tracker.arm_rounds"}}},
    {"uffd_mgr_tracker_errors_total", COUNTER, 1, NULL, "Tracker armings QEMU could not do.",
     {{NULL, "tracker.arm_errors"}}},
    {"uffd_mgr_tracker_arm_seconds", GAUGE, US, NULL, "Time the last arming took in QEMU.",
     {{NULL, "tracker.arm_us"}}},
    {"uffd_mgr_plan_active", GAUGE, 1, NULL, "1 when the VM takes part in the plan.",
     {{NULL, "plan.active"}}},
    {"uffd_mgr_plan_demand_bytes", GAUGE, 1, NULL, "The VM's predicted demand.",
     {{NULL, "plan.demand"}}},
    {"uffd_mgr_plan_confidence_ratio", GAUGE, 1, NULL, "Confidence in the predicted demand (0-1).",
     {{NULL, "plan.confidence"}}},
    {"uffd_mgr_plan_critical_bytes", GAUGE, 1, NULL, "The VM's critical amount.",
     {{NULL, "plan.critical"}}},
    {"uffd_mgr_plan_share_bytes", GAUGE, 1, NULL, "The VM's share of the host budget.",
     {{NULL, "plan.share"}}},
    {"uffd_mgr_plan_target_bytes", GAUGE, 1, "target",
     "The planner's targets: resident memory, balloon size (0: none).",
     {{"resident", "plan.resident_target"}, {"balloon", "plan.balloon_target"}}},
    {"uffd_mgr_balloon_actual_bytes", GAUGE, 1, NULL, "Guest RAM as the balloon reports it.",
     {{NULL, "plan.balloon_actual"}}},
    {"uffd_mgr_plan_emergencies_total", COUNTER, 1, NULL, "Emergency re-plans the VM caused.",
     {{NULL, "plan.emergencies"}}},
    {"uffd_mgr_prefetched_bytes_total", COUNTER, PAGE, NULL,
     "Guest RAM brought back ahead of demand by the planner.",
     {{NULL, "plan.prefetched_pages"}}},
    {"uffd_mgr_prefetch_pages_total", COUNTER, 1, "outcome",
     "Prefetched pages the guest then used, or that were evicted unused.",
     {{"used", "plan.prefetch_used"}, {"unused", "plan.prefetch_unused"}}},
    {"uffd_mgr_guest_memory_bytes", GAUGE, 1, "kind",
     "The guest's own statistics through the balloon (0: none).",
     {{"free", "plan.guest_free"}, {"available", "plan.guest_available"}}},
};

/* clang-format on */

struct json_object *metrics_lookup(struct json_object *o, const char *path)
{
	const char *dot;
	char key[64];

	while (o && (dot = strchr(path, '.'))) {
		snprintf(key, sizeof(key), "%.*s", (int)(dot - path), path);
		if (!json_object_object_get_ex(o, key, &o))
			return NULL;
		path = dot + 1;
	}
	return o && json_object_object_get_ex(o, path, &o) ? o : NULL;
}

/* Writes s with the escapes of a label value (in_label) or a HELP text: backslash and
 * newline always, the double quote in a label value. */
static void put_escaped(FILE *f, const char *s, bool in_label)
{
	for (; *s; s++) {
		if (*s == '\\')
			fputs("\\\\", f);
		else if (*s == '\n')
			fputs("\\n", f);
		else if (*s == '"' && in_label)
			fputs("\\\"", f);
		else
			fputc(*s, f);
	}
}

/* Writes a sample's value: integers exactly (scaled by a whole factor), the rest as the
 * shortest decimal that reads back the same double. Returns false for a value that is no
 * number (the sample is then left out). */
static bool format_value(struct json_object *v, double scale, char *buf, size_t len)
{
	switch (json_object_get_type(v)) {
	case json_type_boolean:
		snprintf(buf, len, "%d", json_object_get_boolean(v) ? 1 : 0);
		return true;
	case json_type_int:
		if (scale == 1 || scale == PAGE) {
			snprintf(buf, len, "%" PRIu64, json_object_get_uint64(v) * (uint64_t)scale);
			return true;
		}
		/* fall through */
	case json_type_double:
		snprintf(buf, len, "%.15g", json_object_get_double(v) * scale);
		return true;
	default:
		return false;
	}
}

static void put_head(FILE *f, const char *name, const char *type, const char *help)
{
	fprintf(f, "# HELP %s ", name);
	put_escaped(f, help, false);
	fprintf(f, "\n# TYPE %s %s\n", name, type);
}

/* One sample: name{vm="...",label="lv"} value; vm and label may be NULL. */
static void put_sample(FILE *f, const char *name, const char *vm, const char *label, const char *lv,
		       const char *value)
{
	fputs(name, f);
	if (vm || label)
		fputc('{', f);
	if (vm) {
		fputs("vm=\"", f);
		put_escaped(f, vm, true);
		fputc('"', f);
	}
	if (label) {
		fprintf(f, "%s%s=\"", vm ? "," : "", label);
		put_escaped(f, lv, true);
		fputc('"', f);
	}
	fprintf(f, "%s %s\n", vm || label ? "}" : "", value);
}

/* The samples of one family for one object (a VM, vm its name; or the root, vm NULL). */
static void put_series(FILE *f, const struct family *fam, struct json_object *o, const char *vm)
{
	char value[64];

	for (const struct series *s = fam->s; s < fam->s + 8 && s->path; s++) {
		struct json_object *v = metrics_lookup(o, s->path);

		if (!v)
			continue;
		if (s->label_value && !strcmp(s->label_value, "*")) {
			if (!json_object_is_type(v, json_type_object))
				continue;
			json_object_object_foreach(v, key, val)
			{
				if (format_value(val, fam->scale, value, sizeof(value)))
					put_sample(f, fam->name, vm, fam->label, key, value);
			}
		} else if (format_value(v, fam->scale, value, sizeof(value))) {
			put_sample(f, fam->name, vm, fam->label, s->label_value, value);
		}
	}
}

static const char *vm_name(struct json_object *vm)
{
	struct json_object *n = metrics_lookup(vm, "name");

	return n ? json_object_get_string(n) : NULL;
}

/* The VMs a scrape shows: every one with a name that has not exited. */
static bool shown(struct json_object *vm)
{
	struct json_object *st = metrics_lookup(vm, "state");

	return vm_name(vm) && !(st && !strcmp(json_object_get_string(st), "exited"));
}

static void put_vm_family(FILE *f, const struct family *fam, struct json_object *vms)
{
	put_head(f, fam->name, fam->type == COUNTER ? "counter" : "gauge", fam->help);
	for (size_t i = 0; vms && i < json_object_array_length(vms); i++) {
		struct json_object *vm = json_object_array_get_idx(vms, i);

		if (shown(vm))
			put_series(f, fam, vm, vm_name(vm));
	}
}

/* uffd_mgr_vm_info: the VM's identity and state as labels, value 1. */
static void put_info(FILE *f, struct json_object *vms)
{
	put_head(f, "uffd_mgr_vm_info", "gauge",
		 "Each managed VM: its QEMU's pid, its state (running, failed, unserved, "
		 "exiting) and its tracker's mode (ebpf, sample, off); always 1.");
	for (size_t i = 0; vms && i < json_object_array_length(vms); i++) {
		struct json_object *vm = json_object_array_get_idx(vms, i), *pid;
		const char *st = "", *mode = "";
		struct json_object *v;

		if (!shown(vm))
			continue;
		pid = metrics_lookup(vm, "pid");
		if ((v = metrics_lookup(vm, "state")))
			st = json_object_get_string(v);
		if ((v = metrics_lookup(vm, "tracker.mode")))
			mode = json_object_get_string(v);
		fputs("uffd_mgr_vm_info{vm=\"", f);
		put_escaped(f, vm_name(vm), true);
		fprintf(f, "\",pid=\"%" PRId64 "\",state=\"", pid ? json_object_get_int64(pid) : 0);
		put_escaped(f, st, true);
		fputs("\",tracker=\"", f);
		put_escaped(f, mode, true);
		fputs("\"} 1\n", f);
	}
}

/* uffd_mgr_fault_latency_seconds: a summary of the time from reading a fault to serving it
 * (p50 and p99 from the daemon's histogram, which overstates by at most 12.5%). */
static void put_latency(FILE *f, struct json_object *vms)
{
	static const char *const q[][2] = {{"0.5", "fault_latency_us.p50"},
					   {"0.99", "fault_latency_us.p99"}};
	const char *name = "uffd_mgr_fault_latency_seconds";
	char value[64];

	put_head(f, name, "summary",
		 "Time from reading a fault to serving it (quantiles at most 12.5% above).");
	for (size_t i = 0; vms && i < json_object_array_length(vms); i++) {
		struct json_object *vm = json_object_array_get_idx(vms, i), *v;

		if (!shown(vm))
			continue;
		for (size_t k = 0; k < 2; k++)
			if ((v = metrics_lookup(vm, q[k][1])) && format_value(v, US, value, sizeof(value)))
				put_sample(f, name, vm_name(vm), "quantile", q[k][0], value);
		if ((v = metrics_lookup(vm, "fault_latency_us.sum")) &&
		    format_value(v, US, value, sizeof(value)))
			put_sample(f, "uffd_mgr_fault_latency_seconds_sum", vm_name(vm), NULL, NULL,
				   value);
		if ((v = metrics_lookup(vm, "fault_latency_us.count")) &&
		    format_value(v, 1, value, sizeof(value)))
			put_sample(f, "uffd_mgr_fault_latency_seconds_count", vm_name(vm), NULL,
				   NULL, value);
	}
}

int metrics_format(struct json_object *snap, char **text, size_t *len)
{
	struct json_object *vms = metrics_lookup(snap, "vms");
	char count[32];
	size_t n = 0;
	FILE *f;
	int bad;

	*text = NULL;
	f = open_memstream(text, len);
	if (!f)
		return -ENOMEM;
	if (vms && !json_object_is_type(vms, json_type_array))
		vms = NULL;
	for (size_t i = 0; i < sizeof(daemon_families) / sizeof(daemon_families[0]); i++) {
		const struct family *fam = &daemon_families[i];

		put_head(f, fam->name, fam->type == COUNTER ? "counter" : "gauge", fam->help);
		put_series(f, fam, snap, NULL);
	}
	for (size_t i = 0; vms && i < json_object_array_length(vms); i++)
		n += shown(json_object_array_get_idx(vms, i));
	put_head(f, "uffd_mgr_vms", "gauge", "VMs the daemon manages.");
	snprintf(count, sizeof(count), "%zu", n);
	put_sample(f, "uffd_mgr_vms", NULL, NULL, NULL, count);
	put_info(f, vms);
	for (size_t i = 0; i < sizeof(vm_families) / sizeof(vm_families[0]); i++)
		put_vm_family(f, &vm_families[i], vms);
	put_latency(f, vms);
	bad = ferror(f);
	if (fclose(f) || bad) {
		free(*text);
		*text = NULL;
		return -ENOMEM;
	}
	return 0;
}
