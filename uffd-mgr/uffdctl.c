/* uffdctl: reads uffd-mgrd's stats socket and shows every VM, once or live. */
#include <errno.h>
#include <getopt.h>
#include <json-c/json.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "uffd-mgr/ctlmsg.h"
#include "uffd-mgr/metrics.h"
#include "uffd-mgr/proto.h"
#include "uffd-mgr/top.h"

static void usage(FILE *out)
{
	fprintf(out,
		"NAME\n"
		"    uffdctl - show what uffd-mgrd is doing with each VM's memory\n\n"
		"SYNOPSIS\n"
		"    uffdctl [--socket PATH] stats [--json] [--watch [SECONDS]]\n"
		"    uffdctl [--socket PATH] top\n"
		"    uffdctl [--socket PATH] metrics\n"
		"    uffdctl [--socket PATH] upgrade\n\n"
		"DESCRIPTION\n"
		"    stats   one line per VM (running, then recently exited): guest size, resident\n"
		"            memory against its resident_max, bytes in the shm tier, zero pages,\n"
		"            faults by kind (zero page, shm tier, write-protect), evictions, and\n"
		"            fault service latency p50/p99 in microseconds, the working-set\n"
		"            tracker's mode (ebpf, sample, off) and its working-set estimates over\n"
		"            the last 1 and 10 intervals (seconds by default). --json has all of it,\n"
		"            with the 60-interval window, the page-age histogram and idle memory.\n"
		"    top     a live full-screen view, one row a VM sorted by resident memory and\n"
		"            refreshed every second: resident, shm and disk tier use against\n"
		"            their limits, faults per second by kind (zero page, shm tier, disk\n"
		"            tier, write-protect), fault latency p50/p99 in microseconds, the\n"
		"            working set over 1 and 10 tracker intervals, and the planner's\n"
		"            predicted demand, resident target and balloon target. A row in\n"
		"            bold has a full tier. q quits. Needs a terminal; for scripts use\n"
		"            stats --watch or metrics.\n"
		"    metrics the same snapshot in the Prometheus text format (0.0.4): one\n"
		"            family per figure, named uffd_mgr_*, in bytes and seconds, with\n"
		"            vm=\"NAME\" labels, counters ending in _total (e.g.\n"
		"            uffd_mgr_resident_bytes{vm=\"web1\"}, "
		"uffd_mgr_faults_total{vm=\"web1\",\n"
		"            kind=\"shm\"}). uffd-mgrd --metrics ADDR serves it over HTTP for a\n"
		"            Prometheus server; this command is for a node exporter's textfile\n"
		"            collector or a look by hand. Exited VMs are left out.\n"
		"    upgrade replace the running uffd-mgrd with the binary now at its path (after\n"
		"            a package upgrade), keeping every VM: the daemon checks that the new\n"
		"            binary runs, stops its threads and execs it; each QEMU resumes its VM\n"
		"            with the new daemon. Faults wait meanwhile. Prints how many VMs\n"
		"            resumed and the longest pause a guest saw. Also: kill -USR2 PID.\n\n"
		"OPTIONS\n"
		"    --socket PATH     the daemon's socket (default $UFFD_MGR_SOCKET, else\n"
		"                      %s)\n"
		"    --json            print the daemon's JSON snapshot (one line per snapshot)\n"
		"    --watch [SECONDS] refresh every SECONDS (default 1) until interrupted\n"
		"    -h, --help        this text\n\n"
		"EXIT STATUS\n"
		"    0 ok; 1 no daemon answers or it closed the connection; 2 usage error.\n\n"
		"EXAMPLES\n"
		"    uffdctl stats --watch\n"
		"    uffdctl top\n"
		"    uffdctl metrics | promtool check metrics\n"
		"    uffdctl --socket /tmp/u.sock stats --json | jq '.vms[].faults'\n"
		"    uffdctl upgrade\n",
		PROTO_DEFAULT_SOCKET);
}

static uint64_t get_u64(struct json_object *o, const char *path)
{
	struct json_object *v = metrics_lookup(o, path);

	return v ? (uint64_t)json_object_get_int64(v) : 0;
}

static bool get_bool(struct json_object *o, const char *path)
{
	struct json_object *v = metrics_lookup(o, path);

	return v && json_object_get_boolean(v);
}

static double get_double(struct json_object *o, const char *path)
{
	struct json_object *v = metrics_lookup(o, path);

	return v ? json_object_get_double(v) : 0;
}

static const char *get_str(struct json_object *o, const char *path)
{
	struct json_object *v = metrics_lookup(o, path);

	return v ? json_object_get_string(v) : "?";
}

/* The first two working-set windows (1 and 10 intervals), in MiB; "-" with no tracker. */
static void wss_column(struct json_object *vm, char *buf, size_t len)
{
	struct json_object *w = metrics_lookup(vm, "tracker.wss_bytes");
	uint64_t v[2] = {0, 0};
	int i = 0;

	if (!w || !json_object_is_type(w, json_type_object) ||
	    !strcmp(get_str(vm, "tracker.mode"), "off")) {
		snprintf(buf, len, "-");
		return;
	}
	json_object_object_foreach(w, key, val)
	{
		(void)key;
		if (i < 2)
			v[i++] = (uint64_t)json_object_get_int64(val);
	}
	snprintf(buf, len, "%llu/%llu", (unsigned long long)(v[0] >> 20),
		 (unsigned long long)(v[1] >> 20));
}

static void print_table(struct json_object *root)
{
	struct json_object *vms;
	size_t n = 0;
	int w = 14; /* the VM column: as wide as the longest name (NUMA units are NAME.ID) */

	if (json_object_object_get_ex(root, "vms", &vms))
		n = json_object_array_length(vms);
	for (size_t i = 0; i < n; i++) {
		int len = (int)strlen(get_str(json_object_array_get_idx(vms, i), "name"));

		w = len > w ? len : w;
	}
	printf("%-*s %7s %-7s %6s %16s %6s %6s %7s %26s %15s %14s %-6s %12s\n", w, "VM", "PID",
	       "STATE", "GUEST", "RESIDENT/MAX MiB", "SHM", "DISK", "ZERO",
	       "FAULTS zero/shm/disk/wp", "EVICT/DEMOTE MiB", "LAT us p50/p99", "TRACK",
	       "WSS MiB 1/10");
	if (!json_object_object_get_ex(root, "vms", &vms) || !(n = json_object_array_length(vms))) {
		printf("(no VMs)\n");
		return;
	}
	for (size_t i = 0; i < n; i++) {
		struct json_object *vm = json_object_array_get_idx(vms, i);
		char res[48], faults[96], ev[48], lat[48], wss[48];

		snprintf(res, sizeof(res), "%llu/%llu",
			 (unsigned long long)(get_u64(vm, "resident_bytes") >> 20),
			 (unsigned long long)(get_u64(vm, "resident_max") >> 20));
		snprintf(faults, sizeof(faults), "%llu/%llu/%llu/%llu",
			 (unsigned long long)get_u64(vm, "faults.zero"),
			 (unsigned long long)get_u64(vm, "faults.shm"),
			 (unsigned long long)get_u64(vm, "faults.disk"),
			 (unsigned long long)get_u64(vm, "faults.wp"));
		snprintf(ev, sizeof(ev), "%llu/%llu",
			 (unsigned long long)(get_u64(vm, "evictions.pages") >> 8),
			 (unsigned long long)(get_u64(vm, "disk.demote_pages") >> 8));
		snprintf(lat, sizeof(lat), "%.0f/%.0f", get_double(vm, "fault_latency_us.p50"),
			 get_double(vm, "fault_latency_us.p99"));
		wss_column(vm, wss, sizeof(wss));
		printf("%-*s %7llu %-7s %6llu %16s %6llu %6llu %7llu %26s %15s %14s %-6s %12s"
		       "%s%s%s\n",
		       w, get_str(vm, "name"), (unsigned long long)get_u64(vm, "pid"),
		       get_str(vm, "state"), (unsigned long long)(get_u64(vm, "guest_bytes") >> 20),
		       res, (unsigned long long)(get_u64(vm, "shm_bytes") >> 20),
		       (unsigned long long)(get_u64(vm, "disk.bytes") >> 20),
		       (unsigned long long)get_u64(vm, "zero_pages"), faults, ev, lat,
		       get_str(vm, "tracker.mode"), wss,
		       get_bool(vm, "tier_full") ? "  SHM FULL" : "",
		       get_bool(vm, "disk.full") ? "  DISK FULL" : "",
		       get_u64(vm, "disk.read_errors") + get_u64(vm, "disk.write_errors")
			       ? "  IO ERRORS"
			       : "");
	}
}

static int show(const char *text, bool json, bool watch)
{
	struct json_object *root;

	if (json) {
		printf("%s\n", text);
		fflush(stdout);
		return 0;
	}
	root = json_tokener_parse(text);
	if (!root) {
		fprintf(stderr, "uffdctl: the daemon sent text that is not JSON\n");
		return 1;
	}
	if (watch && isatty(STDOUT_FILENO))
		printf("\033[H\033[2J");
	print_table(root);
	fflush(stdout);
	json_object_put(root);
	return 0;
}

static int run_stats(const char *path, bool json, double watch_s)
{
	struct proto_stats_req req;
	int sock = proto_connect(path), r;

	if (sock < 0) {
		fprintf(stderr, "uffdctl: no uffd-mgrd answers at %s: %s\n", path, strerror(-sock));
		return 1;
	}
	memset(&req, 0, sizeof(req));
	proto_hdr_init(&req.hdr, watch_s > 0 ? PROTO_STATS_WATCH : PROTO_STATS, sizeof(req));
	req.interval_ms = (uint32_t)(watch_s * 1000);
	r = proto_send(sock, &req, sizeof(req), NULL, 0);
	while (!r) {
		char *text;
		ssize_t n = ctlmsg_recv_json(sock, &text);

		if (n == -EPERM) {
			fprintf(stderr, "uffdctl: refused: %s\n", text ? text : "?");
			free(text);
			r = 1;
			break;
		}
		if (n <= 0) {
			r = n == 0 && watch_s <= 0 ? 0 : 1;
			if (r)
				fprintf(stderr, "uffdctl: the daemon closed the connection\n");
			break;
		}
		r = show(text, json, watch_s > 0);
		free(text);
		if (watch_s <= 0)
			break;
	}
	close(sock);
	return r;
}

/* One stats snapshot, parsed; NULL when no daemon answers. */
static struct json_object *snapshot(const char *path)
{
	struct proto_stats_req req = {0};
	struct json_object *o = NULL;
	int sock = proto_connect(path);
	char *text = NULL;

	if (sock < 0)
		return NULL;
	proto_hdr_init(&req.hdr, PROTO_STATS, sizeof(req));
	if (!proto_send(sock, &req, sizeof(req), NULL, 0) && ctlmsg_recv_json(sock, &text) > 0)
		o = json_tokener_parse(text);
	free(text);
	close(sock);
	return o;
}

/* uffdctl metrics: one snapshot in the Prometheus text format (metrics.h). */
static int run_metrics(const char *path)
{
	struct proto_stats_req req = {0};
	struct json_object *snap = NULL;
	char *text = NULL, *out = NULL;
	int sock = proto_connect(path), r = 1;
	ssize_t n = -EPROTO;
	size_t len;

	if (sock < 0) {
		fprintf(stderr, "uffdctl: no uffd-mgrd answers at %s: %s\n", path, strerror(-sock));
		return 1;
	}
	proto_hdr_init(&req.hdr, PROTO_STATS, sizeof(req));
	if (!proto_send(sock, &req, sizeof(req), NULL, 0))
		n = ctlmsg_recv_json(sock, &text);
	close(sock);
	if (n == -EPERM)
		fprintf(stderr, "uffdctl: refused: %s\n", text ? text : "?");
	else if (n <= 0)
		fprintf(stderr, "uffdctl: the daemon closed the connection\n");
	else if (!(snap = json_tokener_parse(text)))
		fprintf(stderr, "uffdctl: the daemon sent text that is not JSON\n");
	else if (metrics_format(snap, &out, &len))
		fprintf(stderr, "uffdctl: out of memory\n");
	else
		r = fwrite(out, 1, len, stdout) == len && fflush(stdout) == 0 ? 0 : 1;
	json_object_put(snap);
	free(text);
	free(out);
	return r;
}

static struct json_object *fetch_snapshot(void *path)
{
	return snapshot(path);
}

/* Running VMs in a snapshot, and how many of them a daemon adopted since t_s seconds ago
 * (those whose daemon's uptime is under t_s); also the longest pause among those. */
static int count_resumed(struct json_object *snap, int *running, double *max_pause_ms)
{
	struct json_object *vms = metrics_lookup(snap, "vms");
	int resumed = 0;

	*running = 0;
	*max_pause_ms = 0;
	for (size_t i = 0; vms && i < json_object_array_length(vms); i++) {
		struct json_object *vm = json_object_array_get_idx(vms, i), *st = metrics_lookup(vm, "state");
		struct json_object *adopted = metrics_lookup(vm, "restarts.adopted");
		struct json_object *pause = metrics_lookup(vm, "restarts.last_pause_ms");

		if (!st || strcmp(json_object_get_string(st), "running"))
			continue;
		(*running)++;
		if (adopted && json_object_get_boolean(adopted)) {
			resumed++;
			if (pause && json_object_get_double(pause) > *max_pause_ms)
				*max_pause_ms = json_object_get_double(pause);
		}
	}
	return resumed;
}

/* uffdctl upgrade: asks the daemon to exec its successor, then waits (30 s at most) until the
 * successor serves every VM that was running. */
static int run_upgrade(const char *path)
{
	struct json_object *before = snapshot(path), *after = NULL;
	struct proto_hdr h;
	struct proto_reply rep;
	int sock, want = 0, running = 0, resumed = 0;
	double pause_ms = 0;
	ssize_t n;

	if (!before) {
		fprintf(stderr, "uffdctl: no uffd-mgrd answers at %s\n", path);
		return 1;
	}
	count_resumed(before, &want, &pause_ms);
	json_object_put(before);
	sock = proto_connect(path);
	proto_hdr_init(&h, PROTO_UPGRADE, sizeof(h));
	if (sock < 0 || proto_send(sock, &h, sizeof(h), NULL, 0) ||
	    (n = proto_recv(sock, &rep, sizeof(rep), NULL, NULL)) != (ssize_t)sizeof(rep) ||
	    proto_hdr_check(&rep.hdr, (size_t)n)) {
		fprintf(stderr, "uffdctl: the daemon at %s did not answer the upgrade\n", path);
		return 1;
	}
	close(sock);
	rep.message[sizeof(rep.message) - 1] = 0;
	if (rep.status) {
		fprintf(stderr, "uffdctl: upgrade refused: %s\n", rep.message);
		return 1;
	}
	printf("uffdctl: %s\n", rep.message);
	for (int tries = 0; tries < 300; tries++) {
		usleep(100000);
		json_object_put(after);
		after = snapshot(path);
		if (after && metrics_lookup(after, "daemon.uptime_s") &&
		    json_object_get_double(metrics_lookup(after, "daemon.uptime_s")) < 0.1 * (tries + 1) + 1 &&
		    (resumed = count_resumed(after, &running, &pause_ms)) >= want)
			break;
	}
	json_object_put(after);
	if (resumed < want) {
		fprintf(stderr, "uffdctl: after 30 s, %d of %d VM(s) have resumed with the new daemon\n",
			resumed, want);
		return 1;
	}
	printf("uffdctl: upgraded: %d VM(s) resumed, longest pause %.1f ms\n", resumed, pause_ms);
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"socket", required_argument, NULL, 's'}, {"json", no_argument, NULL, 'j'},
		{"watch", optional_argument, NULL, 'w'},  {"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	const char *path = getenv("UFFD_MGR_SOCKET") ? getenv("UFFD_MGR_SOCKET")
						       : PROTO_DEFAULT_SOCKET;
	bool json = false;
	double watch = 0;
	int o;

	while ((o = getopt_long(argc, argv, "s:jw::h", opts, NULL)) != -1) {
		switch (o) {
		case 's':
			path = optarg;
			break;
		case 'j':
			json = true;
			break;
		case 'w':
			if (!optarg && optind < argc && argv[optind][0] >= '0' &&
			    argv[optind][0] <= '9')
				optarg = argv[optind++];
			watch = optarg ? atof(optarg) : 1.0;
			if (watch < 0.1) {
				fprintf(stderr, "uffdctl: --watch needs at least 0.1 seconds\n");
				return 2;
			}
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			fprintf(stderr, "uffdctl: try 'uffdctl --help'\n");
			return 2;
		}
	}
	if (optind >= argc || (strcmp(argv[optind], "stats") && strcmp(argv[optind], "upgrade") &&
			       strcmp(argv[optind], "metrics") && strcmp(argv[optind], "top"))) {
		fprintf(stderr,
			"uffdctl: %s (the commands are 'stats', 'top', 'metrics' and 'upgrade')\n",
			optind < argc ? "unknown command" : "missing command");
		return 2;
	}
	if (optind + 1 < argc) {
		fprintf(stderr, "uffdctl: unexpected argument '%s'\n", argv[optind + 1]);
		return 2;
	}
	if (!strcmp(argv[optind], "upgrade"))
		return run_upgrade(path);
	if (!strcmp(argv[optind], "metrics"))
		return run_metrics(path);
	if (!strcmp(argv[optind], "top"))
		return top_run(fetch_snapshot, (void *)path, path);
	return run_stats(path, json, watch);
}
