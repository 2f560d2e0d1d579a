/* top: see top.h. Each second: a snapshot, rows built from it (rates against the rows of the
 * second before, matched by VM name and pid), sorted, drawn; then keys until the next one. */
#include "uffd-mgr/top.h"
#include "uffd-mgr/metrics.h"

#include <curses.h>
#include <json-c/json.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define REFRESH_MS 1000

/* Fault kinds shown per second, with their snapshot fields. */
static const char *const kinds[][2] = {
    {"zero", "faults.zero"}, {"shm", "faults.shm"}, {"disk", "faults.disk"}, {"wp", "faults.wp"}};
#define NKINDS (sizeof(kinds) / sizeof(kinds[0]))

struct vmrow {
	char name[64], state[16];
	long long pid;
	uint64_t res, res_max, shm, shm_max, disk, disk_max;
	uint64_t faults[NKINDS];
	double rate[NKINDS];
	bool rated; /* rate[] holds a value (the VM was in the snapshot before too) */
	double p50, p99;
	bool tracked;
	uint64_t wss[2]; /* working set over 1 and 10 intervals */
	uint64_t demand, target, balloon;
	bool full; /* a tier is full */
};

struct view {
	struct vmrow *rows, *prev;
	size_t n, nprev;
	uint64_t t_ns, prev_ns;
	int exited;
	char head[200];
	char err[200]; /* why the last refresh failed; "" when it did not */
};

static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
	(void)sig;
	interrupted = 1;
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t u64(struct json_object *o, const char *path)
{
	struct json_object *v = metrics_lookup(o, path);

	return v ? json_object_get_uint64(v) : 0;
}

static double dbl(struct json_object *o, const char *path)
{
	struct json_object *v = metrics_lookup(o, path);

	return v ? json_object_get_double(v) : 0;
}

static const char *str(struct json_object *o, const char *path)
{
	struct json_object *v = metrics_lookup(o, path);

	return v && json_object_get_string(v) ? json_object_get_string(v) : "?";
}

static void fill_row(struct vmrow *r, struct json_object *vm)
{
	struct json_object *w = metrics_lookup(vm, "tracker.wss_bytes");
	int i = 0;

	memset(r, 0, sizeof(*r));
	snprintf(r->name, sizeof(r->name), "%s", str(vm, "name"));
	snprintf(r->state, sizeof(r->state), "%s", str(vm, "state"));
	r->pid = (long long)u64(vm, "pid");
	r->res = u64(vm, "resident_bytes");
	r->res_max = u64(vm, "resident_max");
	r->shm = u64(vm, "shm_bytes");
	r->shm_max = u64(vm, "shm_max");
	r->disk = u64(vm, "disk.bytes");
	r->disk_max = u64(vm, "disk.max");
	for (size_t k = 0; k < NKINDS; k++)
		r->faults[k] = u64(vm, kinds[k][1]);
	r->p50 = dbl(vm, "fault_latency_us.p50");
	r->p99 = dbl(vm, "fault_latency_us.p99");
	r->tracked =
	    w && json_object_is_type(w, json_type_object) && strcmp(str(vm, "tracker.mode"), "off");
	if (r->tracked) {
		json_object_object_foreach(w, key, val)
		{
			(void)key;
			if (i < 2)
				r->wss[i++] = json_object_get_uint64(val);
		}
	}
	r->demand = u64(vm, "plan.demand");
	r->target = u64(vm, "plan.resident_target");
	r->balloon = u64(vm, "plan.balloon_target");
	r->full = json_object_get_boolean(metrics_lookup(vm, "tier_full")) ||
		  json_object_get_boolean(metrics_lookup(vm, "disk.full"));
}

/* Faults per second since the snapshot before, for the VMs that were in it. */
static void compute_rates(struct view *v)
{
	double dt = (v->t_ns - v->prev_ns) / 1e9;

	for (size_t i = 0; i < v->n; i++) {
		struct vmrow *r = &v->rows[i];

		for (size_t j = 0; j < v->nprev && dt > 0; j++) {
			const struct vmrow *p = &v->prev[j];

			if (strcmp(p->name, r->name) || p->pid != r->pid)
				continue;
			for (size_t k = 0; k < NKINDS; k++)
				r->rate[k] = r->faults[k] >= p->faults[k]
						 ? (r->faults[k] - p->faults[k]) / dt
						 : 0;
			r->rated = true;
		}
	}
}

static int by_resident(const void *a, const void *b)
{
	const struct vmrow *x = a, *y = b;

	if (x->res != y->res)
		return x->res < y->res ? 1 : -1;
	return strcmp(x->name, y->name);
}

static void fmt_uptime(double s, char *buf, size_t len)
{
	unsigned long t = (unsigned long)s;

	if (t >= 86400)
		snprintf(buf, len, "%lud%02luh", t / 86400, t % 86400 / 3600);
	else if (t >= 3600)
		snprintf(buf, len, "%luh%02lum", t / 3600, t % 3600 / 60);
	else
		snprintf(buf, len, "%lum%02lus", t / 60, t % 60);
}

/* Takes a new snapshot into the view: the old rows become the ones rates are taken against.
 * Returns 0, or -1 when out of memory. */
static int load(struct view *v, struct json_object *snap)
{
	struct json_object *vms = metrics_lookup(snap, "vms");
	size_t n =
	    vms && json_object_is_type(vms, json_type_array) ? json_object_array_length(vms) : 0;
	struct vmrow *rows = calloc(n ? n : 1, sizeof(*rows));
	char up[32];

	if (!rows)
		return -1;
	free(v->prev);
	v->prev = v->rows;
	v->nprev = v->n;
	v->prev_ns = v->t_ns;
	v->rows = rows;
	v->n = 0;
	v->exited = 0;
	v->t_ns = now_ns();
	for (size_t i = 0; i < n; i++) {
		struct json_object *vm = json_object_array_get_idx(vms, i);

		if (!strcmp(str(vm, "state"), "exited"))
			v->exited++;
		else
			fill_row(&v->rows[v->n++], vm);
	}
	compute_rates(v);
	qsort(v->rows, v->n, sizeof(*v->rows), by_resident);
	fmt_uptime(dbl(snap, "daemon.uptime_s"), up, sizeof(up));
	snprintf(v->head, sizeof(v->head), "uffd-mgrd pid %llu, up %s, %zu VM%s running, %d exited",
		 (unsigned long long)u64(snap, "daemon.pid"), up, v->n, v->n == 1 ? "" : "s",
		 v->exited);
	return 0;
}

/* Bytes in 4 characters or so: 0, 812K, 1.5G, 12G. */
static const char *fmt_bytes(uint64_t b, char *buf, size_t len)
{
	static const char units[] = "KMGTP";
	double x = (double)b;
	int u = -1;

	if (b < 1024) {
		snprintf(buf, len, "%llu", (unsigned long long)b);
		return buf;
	}
	while (x >= 1024 && u < 4) {
		x /= 1024;
		u++;
	}
	snprintf(buf, len, x < 9.95 ? "%.1f%c" : "%.0f%c", x, units[u]);
	return buf;
}

/* "used/max" for a tier; "used/-" when it has no limit, "-" when it has no such tier. */
static const char *fmt_tier(uint64_t used, uint64_t max, bool exists, char *buf, size_t len)
{
	char a[16], b[16];

	if (!exists)
		snprintf(buf, len, "-");
	else
		snprintf(buf, len, "%s/%s", fmt_bytes(used, a, sizeof(a)),
			 max ? fmt_bytes(max, b, sizeof(b)) : "-");
	return buf;
}

static void fmt_rate(const struct vmrow *r, size_t k, char *buf, size_t len)
{
	if (!r->rated)
		snprintf(buf, len, "-");
	else
		snprintf(buf, len, "%.0f", r->rate[k]);
}

/* One VM's line, as wide as it comes (the caller cuts it to the screen). */
static void format_row(const struct vmrow *r, char *line, size_t len)
{
	char res[24], shm[24], disk[24], rate[NKINDS][16], w1[16], w10[16], d[16], t[16], b[16];

	fmt_tier(r->res, r->res_max, true, res, sizeof(res));
	fmt_tier(r->shm, r->shm_max, true, shm, sizeof(shm));
	fmt_tier(r->disk, r->disk_max, r->disk_max > 0, disk, sizeof(disk));
	for (size_t k = 0; k < NKINDS; k++)
		fmt_rate(r, k, rate[k], sizeof(rate[k]));
	if (r->tracked) {
		fmt_bytes(r->wss[0], w1, sizeof(w1));
		fmt_bytes(r->wss[1], w10, sizeof(w10));
	} else {
		snprintf(w1, sizeof(w1), "-");
		snprintf(w10, sizeof(w10), "-");
	}
	snprintf(line, len,
		 "%-14.14s %-8.8s %11s %11s %11s %7s %7s %7s %7s %7.0f %7.0f %6s %6s %6s %6s %6s",
		 r->name, r->state, res, shm, disk, rate[0], rate[1], rate[2], rate[3], r->p50,
		 r->p99, w1, w10, fmt_bytes(r->demand, d, sizeof(d)),
		 r->target ? fmt_bytes(r->target, t, sizeof(t)) : "-",
		 r->balloon ? fmt_bytes(r->balloon, b, sizeof(b)) : "-");
}

static void draw(const struct view *v, const char *where)
{
	char line[512], clock[16];
	time_t now = time(NULL);

	erase();
	strftime(clock, sizeof(clock), "%H:%M:%S", localtime(&now));
	attron(A_BOLD);
	mvaddnstr(0, 0, v->head[0] ? v->head : "uffd-mgrd", COLS);
	attroff(A_BOLD);
	if (COLS > 10)
		mvaddstr(0, COLS - 9, clock);
	snprintf(line, sizeof(line), "%s   q: quit   sorted by resident   every %d s", where,
		 REFRESH_MS / 1000);
	mvaddnstr(1, 0, line, COLS);
	if (v->err[0]) {
		attron(A_BOLD);
		mvaddnstr(2, 0, v->err, COLS);
		attroff(A_BOLD);
	}
	snprintf(line, sizeof(line),
		 "%-14s %-8s %11s %11s %11s %7s %7s %7s %7s %7s %7s %6s %6s %6s %6s %6s", "VM",
		 "STATE", "RESIDENT", "SHM", "DISK", "ZERO/s", "SHM/s", "DISK/s", "WP/s", "P50us",
		 "P99us", "WSS1", "WSS10", "DEMAND", "TARGET", "BALLN");
	attron(A_REVERSE);
	mvaddnstr(3, 0, line, COLS);
	for (int x = (int)strlen(line); x < COLS; x++)
		addch(' ');
	attroff(A_REVERSE);
	if (!v->n)
		mvaddnstr(4, 0, "(no VMs)", COLS);
	for (size_t i = 0; i < v->n && (int)i + 4 < LINES; i++) {
		format_row(&v->rows[i], line, sizeof(line));
		if (v->rows[i].full)
			attron(A_BOLD);
		mvaddnstr((int)i + 4, 0, line, COLS);
		attroff(A_BOLD);
	}
	refresh();
}

/* Refreshes every REFRESH_MS until q; keys are read in between. */
static void loop(struct view *v, top_fetch_fn fetch, void *arg, const char *where)
{
	uint64_t next = now_ns() + REFRESH_MS * 1000000ull;

	draw(v, where);
	while (!interrupted) {
		int ch;

		if (now_ns() >= next) {
			struct json_object *snap = fetch(arg);

			if (!snap)
				snprintf(v->err, sizeof(v->err),
					 "no uffd-mgrd answers at %s; showing the last figures",
					 where);
			else if (load(v, snap))
				snprintf(v->err, sizeof(v->err), "out of memory");
			else
				v->err[0] = 0;
			json_object_put(snap);
			next = now_ns() + REFRESH_MS * 1000000ull;
			draw(v, where);
		}
		timeout((int)((next - now_ns()) / 1000000) + 1);
		ch = getch();
		if (ch == 'q' || ch == 'Q' || ch == 3 /* ^C in raw mode */)
			break;
		if (ch == KEY_RESIZE || ch == 12 /* ^L */)
			draw(v, where);
	}
}

int top_run(top_fetch_fn fetch, void *arg, const char *where)
{
	struct sigaction sa = {.sa_handler = on_signal};
	struct json_object *first;
	struct view v = {0};
	SCREEN *scr;

	if (!isatty(STDIN_FILENO) || !isatty(STDOUT_FILENO)) {
		fprintf(stderr, "uffdctl: top needs a terminal on stdin and stdout (for a script: "
				"'uffdctl stats --watch' or 'uffdctl metrics')\n");
		return 1;
	}
	first = fetch(arg);
	if (!first) {
		fprintf(stderr, "uffdctl: no uffd-mgrd answers at %s\n", where);
		return 1;
	}
	scr = newterm(NULL, stdout, stdin);
	if (!scr) {
		json_object_put(first);
		fprintf(stderr, "uffdctl: top cannot drive the terminal (TERM=%s)\n",
			getenv("TERM") ? getenv("TERM") : "");
		return 1;
	}
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	raw();
	noecho();
	curs_set(0);
	keypad(stdscr, TRUE);
	load(&v, first);
	json_object_put(first);
	loop(&v, fetch, arg, where);
	endwin();
	delscreen(scr);
	free(v.rows);
	free(v.prev);
	return 0;
}
