/* test_metrics: the Prometheus text format of a stats snapshot (uffd-mgr/metrics.c).
 *
 * What it checks, on snapshots written here as JSON text in the stats socket's shape:
 *  - the exposition's grammar, line by line, on every snapshot: each line is a HELP, a TYPE
 *    or a sample; names match [a-zA-Z_:][a-zA-Z0-9_:]*; every sample's family had its HELP
 *    then its TYPE first; a family's samples are together (a name never comes back after
 *    another family's); counters end in _total; no series appears twice; values are
 *    numbers; label values are quoted and escaped;
 *  - an empty daemon (no VMs): every family still has HELP and TYPE, uffd_mgr_vms is 0 and
 *    no sample carries a vm label;
 *  - a VM's values in base units: pages as bytes, milliseconds and microseconds as seconds,
 *    booleans as 0/1, large integers exact (past 2^53), kinds as a second label, one series
 *    per key of an object (working-set windows), the latency summary (quantiles, _sum,
 *    _count) and the info metric;
 *  - exited VMs left out; fields a snapshot lacks left out, not printed as 0;
 *  - a VM name with a quote, a backslash and a newline comes out escaped;
 *  - a snapshot that is not an object, or has "vms" of the wrong type, still formats. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <ctype.h>
#include <json-c/json.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "uffd-mgr/metrics.h"

/* A running VM with every field metrics.c reads; values chosen to be told apart. */
static const char *const full_vm =
    "{\"name\":\"web1\",\"pid\":4242,\"state\":\"running\",\"failed\":false,"
    "\"fault_thread\":{\"alive\":true,\"restarts\":2},\"uptime_s\":12.5,"
    "\"guest_bytes\":1073741824,\"resident_bytes\":268435456,\"resident_max\":536870912,"
    "\"shm_bytes\":1048576,\"shm_runs\":3,\"shm_max\":2147483648,\"zero_pages\":10,"
    "\"shm_stored_bytes\":524288,\"zshm\":{\"compress\":\"lz4\",\"pages\":256,\"blobs\":33,"
    "\"raw_blobs\":34,\"stored_pages\":35,\"stored_bytes\":36,\"errors\":0},"
    "\"untouched_pages\":20,\"tier_full\":true,\"tier_full_events\":1,"
    "\"restarts\":{\"adoptions\":1,\"adopted\":true,\"last_pause_ms\":1.5,\"max_pause_ms\":250},"
    "\"faults\":{\"zero\":100,\"shm\":200,\"shm_pages\":300,\"discarded\":4,\"wp\":5,\"dup\":6,"
    "\"parked\":7,\"throttled\":8,\"errors\":0,\"disk\":9,\"disk_pages\":11,"
    "\"disk_read_errors\":0,\"minor\":12,\"bring_back_pages\":13,\"enomem_retries\":14,"
    "\"stalled\":15,\"max_wait_ms\":1500},"
    "\"ahead\":{\"first_touch_blocks\":41,\"first_touch_pages\":42,\"readahead_batches\":43,"
    "\"readahead_pages\":44,\"batch_copies\":45,\"batch_pages\":46,\"batch_kept\":47,"
    "\"follow_moves\":48},"
    "\"evictions\":{\"runs\":16,\"pages\":17,\"zero_pages\":18,\"aborts\":19,\"wp_errors\":20},"
    "\"removes\":{\"events\":21,\"pages\":22},"
    "\"disk\":{\"enabled\":true,\"bytes\":4096,\"runs\":1,\"max\":1099511627776,"
    "\"demote_runs\":23,\"demote_pages\":24,\"demote_errors\":0,\"full_events\":0,"
    "\"full\":false,\"reads\":25,\"writes\":26,\"read_bytes\":27,\"write_bytes\":28,"
    "\"read_errors\":0,\"write_errors\":0,\"punch_errors\":0,\"path\":\"/x\"},"
    "\"fault_latency_us\":{\"count\":1000,\"sum\":25000.0,\"p50\":20.0,\"p99\":150.5,"
    "\"max\":900.0},"
    "\"tracker\":{\"mode\":\"ebpf\",\"interval_ms\":500,\"epoch\":3,"
    "\"wss_bytes\":{\"0.5s\":4096,\"5s\":8192,\"30s\":12288},"
    "\"age_pages\":{\"0\":1,\"1\":2,\"2-3\":3,\"4-7\":4,\"8-15\":5,\"16-31\":6,\"32-63\":7,"
    "\"64+\":8,\"never\":9},\"idle_bytes\":40960,\"armed_pages\":1,\"arm_ranges\":1,"
    "\"arm_rounds\":29,\"arm_errors\":0,\"arm_us\":250},"
    "\"plan\":{\"active\":true,\"demand\":300000000,\"confidence\":0.75,\"critical\":1000,"
    "\"share\":2000,\"resident_target\":3000,\"balloon_target\":4000,\"balloon_actual\":5000,"
    "\"emergencies\":30,\"last_emergency\":\"\",\"prefetched_pages\":31,\"prefetch_used\":32,"
    "\"prefetch_unused\":33,\"guest_free\":34,\"guest_available\":35}}";

static const char *const daemon_part =
    "\"daemon\":{\"pid\":1,\"socket\":\"/run/x\",\"uptime_s\":100.25,"
    "\"plan\":{\"budget\":17179869184,\"replans\":7,\"emergencies\":2,\"overcommitted\":false}}";

/* Formats the snapshot in json text; fails the test if it does not parse or format. */
static char *format(const char *json)
{
	struct json_object *snap = json_tokener_parse(json);
	char *text = NULL;
	size_t len = 0;

	assert_non_null(snap);
	assert_int_equal(metrics_format(snap, &text, &len), 0);
	assert_non_null(text);
	assert_int_equal(strlen(text), len);
	json_object_put(snap);
	return text;
}

static char *format_vms(const char *vms)
{
	char *json, *text;

	assert_true(asprintf(&json, "{%s,\"vms\":[%s]}", daemon_part, vms) > 0);
	text = format(json);
	free(json);
	return text;
}

/* Whether text has the line exactly. */
static bool has_line(const char *text, const char *line)
{
	size_t n = strlen(line);

	for (const char *p = text; (p = strstr(p, line)); p++)
		if ((p == text || p[-1] == '\n') && p[n] == '\n')
			return true;
	return false;
}

#define assert_line(text, line)                                                                    \
	do {                                                                                       \
		if (!has_line(text, line))                                                         \
			fail_msg("no line '%s' in:\n%s", line, text);                              \
	} while (0)

/* ---- The grammar check, applied to every output ---- */

#define MAX_FAM 128
#define MAX_SER 1024

struct seen {
	char fam[MAX_FAM][96]; /* in order of their HELP lines */
	bool typed[MAX_FAM];
	char type[MAX_FAM][16];
	int nfam;
	char *series[MAX_SER];
	int nser;
};

static size_t name_len(const char *s)
{
	size_t n = 0;

	if (!(isalpha((unsigned char)s[0]) || s[0] == '_' || s[0] == ':'))
		return 0;
	while (isalnum((unsigned char)s[n]) || s[n] == '_' || s[n] == ':')
		n++;
	return n;
}

/* The family a sample name belongs to: itself, or a summary's base for _sum/_count. */
static int family_of(struct seen *s, const char *name, size_t n)
{
	for (int i = s->nfam - 1; i >= 0; i--) {
		size_t f = strlen(s->fam[i]);

		if (f == n && !strncmp(name, s->fam[i], n))
			return i;
		if (!strcmp(s->type[i], "summary") && n > f && !strncmp(name, s->fam[i], f) &&
		    (!strncmp(name + f, "_sum", n - f) || !strncmp(name + f, "_count", n - f)) &&
		    (n - f == 4 || n - f == 6))
			return i;
	}
	return -1;
}

/* Checks the labels at p ("{a=\"v\",...}"); returns the text after them. */
static const char *check_labels(const char *p)
{
	if (*p != '{')
		return p;
	p++;
	while (*p != '}') {
		size_t n = name_len(p);

		assert_true(n > 0);
		p += n;
		assert_int_equal(*p++, '=');
		assert_int_equal(*p++, '"');
		while (*p != '"') {
			assert_true(*p && *p != '\n');
			if (*p == '\\') {
				p++;
				assert_true(*p == '\\' || *p == '"' || *p == 'n');
			}
			p++;
		}
		p++;
		if (*p == ',')
			p++;
		else
			assert_int_equal(*p, '}');
	}
	return p + 1;
}

static void check_sample(struct seen *s, const char *line)
{
	size_t n = name_len(line);
	const char *end = check_labels(line + n);
	char *num_end;
	int f = family_of(s, line, n);

	assert_true(n > 0);
	if (f < 0 || f != s->nfam - 1 || !s->typed[f])
		fail_msg("sample '%s' outside its family's HELP/TYPE block", line);
	assert_int_equal(*end, ' ');
	strtod(end + 1, &num_end);
	if (num_end == end + 1 || *num_end)
		fail_msg("sample '%s' has no numeric value", line);
	for (int i = 0; i < s->nser; i++)
		if (!strncmp(s->series[i], line, (size_t)(end - line)) &&
		    s->series[i][end - line] == 0)
			fail_msg("series '%.*s' twice", (int)(end - line), line);
	assert_true(s->nser < MAX_SER);
	s->series[s->nser++] = strndup(line, (size_t)(end - line));
}

static void check_comment(struct seen *s, const char *line)
{
	char name[96], type[16];

	if (!strncmp(line, "# HELP ", 7)) {
		assert_int_equal(sscanf(line + 7, "%95s", name), 1);
		assert_true(name_len(name) == strlen(name));
		for (int i = 0; i < s->nfam; i++)
			if (!strcmp(s->fam[i], name))
				fail_msg("family %s comes back after another", name);
		assert_true(s->nfam < MAX_FAM);
		strcpy(s->fam[s->nfam], name);
		s->typed[s->nfam++] = false;
		assert_non_null(strchr(line + 7, ' ')); /* a help text follows the name */
		return;
	}
	assert_int_equal(strncmp(line, "# TYPE ", 7), 0);
	assert_int_equal(sscanf(line + 7, "%95s %15s", name, type), 2);
	assert_true(s->nfam > 0 && !strcmp(s->fam[s->nfam - 1], name) && !s->typed[s->nfam - 1]);
	assert_true(!strcmp(type, "counter") || !strcmp(type, "gauge") || !strcmp(type, "summary"));
	if (!strcmp(type, "counter") && strcmp(name + strlen(name) - 6, "_total"))
		fail_msg("counter %s does not end in _total", name);
	if (strcmp(type, "counter") && strlen(name) > 6 &&
	    !strcmp(name + strlen(name) - 6, "_total"))
		fail_msg("%s %s ends in _total", type, name);
	strcpy(s->type[s->nfam - 1], type);
	s->typed[s->nfam - 1] = true;
}

/* Checks the whole text; returns how many families it has. */
static int check_grammar(const char *text)
{
	static struct seen s;
	char *copy = strdup(text), *save = NULL;
	int nfam;

	assert_true(text[0] && text[strlen(text) - 1] == '\n');
	memset(&s, 0, sizeof(s));
	for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		if (line[0] == '#')
			check_comment(&s, line);
		else
			check_sample(&s, line);
	}
	for (int i = 0; i < s.nfam; i++)
		if (!s.typed[i])
			fail_msg("family %s has no TYPE", s.fam[i]);
	for (int i = 0; i < s.nser; i++)
		free(s.series[i]);
	free(copy);
	nfam = s.nfam;
	return nfam;
}

/* ---- Tests ---- */

static int families_with_vm; /* set by test_full_vm: families when one VM is shown */

static void test_empty_daemon(void **state)
{
	char *text;
	int nfam;

	(void)state;
	text = format_vms("");
	nfam = check_grammar(text);
	assert_true(nfam > 60);
	assert_line(text, "uffd_mgr_vms 0");
	assert_line(text, "# TYPE uffd_mgr_resident_bytes gauge");
	assert_line(text, "# TYPE uffd_mgr_faults_total counter");
	assert_line(text, "# TYPE uffd_mgr_fault_latency_seconds summary");
	assert_null(strstr(text, "vm=\""));
	assert_line(text, "uffd_mgr_uptime_seconds 100.25");
	assert_line(text, "uffd_mgr_budget_bytes 17179869184");
	assert_line(text, "uffd_mgr_replans_total 7");
	assert_line(text, "uffd_mgr_overcommitted 0");
	free(text);
}

static void test_full_vm(void **state)
{
	char *text;

	(void)state;
	text = format_vms(full_vm);
	families_with_vm = check_grammar(text);
	assert_line(text, "uffd_mgr_vms 1");
	assert_line(text, "uffd_mgr_vm_info{vm=\"web1\",pid=\"4242\",state=\"running\","
			  "tracker=\"ebpf\"} 1");
	assert_line(text, "uffd_mgr_resident_bytes{vm=\"web1\"} 268435456");
	assert_line(text, "uffd_mgr_resident_max_bytes{vm=\"web1\"} 536870912");
	assert_line(text, "uffd_mgr_disk_max_bytes{vm=\"web1\"} 1099511627776");
	assert_line(text, "uffd_mgr_zero_bytes{vm=\"web1\"} 40960");
	assert_line(text, "uffd_mgr_shm_full{vm=\"web1\"} 1");
	assert_line(text, "uffd_mgr_disk_full{vm=\"web1\"} 0");
	assert_line(text, "uffd_mgr_faults_total{vm=\"web1\",kind=\"zero\"} 100");
	assert_line(text, "uffd_mgr_faults_total{vm=\"web1\",kind=\"disk\"} 9");
	assert_line(text, "uffd_mgr_faults_total{vm=\"web1\",kind=\"minor\"} 12");
	assert_line(text, "uffd_mgr_fault_in_bytes_total{vm=\"web1\",tier=\"shm\"} 1228800");
	assert_line(text, "uffd_mgr_fault_max_wait_seconds{vm=\"web1\"} 1.5");
	assert_line(text, "uffd_mgr_evictions_total{vm=\"web1\"} 16");
	assert_line(text, "uffd_mgr_evicted_bytes_total{vm=\"web1\"} 69632");
	assert_line(text, "uffd_mgr_eviction_errors_total{vm=\"web1\",kind=\"abort\"} 19");
	assert_line(text, "uffd_mgr_restart_pause_seconds{vm=\"web1\",which=\"max\"} 0.25");
	assert_line(text, "uffd_mgr_tracker_interval_seconds{vm=\"web1\"} 0.5");
	assert_line(text, "uffd_mgr_tracker_arm_seconds{vm=\"web1\"} 0.00025");
	assert_line(text, "uffd_mgr_working_set_bytes{vm=\"web1\",window=\"0.5s\"} 4096");
	assert_line(text, "uffd_mgr_working_set_bytes{vm=\"web1\",window=\"30s\"} 12288");
	assert_line(text, "uffd_mgr_page_age_bytes{vm=\"web1\",age=\"64+\"} 32768");
	assert_line(text, "uffd_mgr_plan_confidence_ratio{vm=\"web1\"} 0.75");
	assert_line(text, "uffd_mgr_plan_target_bytes{vm=\"web1\",target=\"resident\"} 3000");
	assert_line(text, "uffd_mgr_plan_target_bytes{vm=\"web1\",target=\"balloon\"} 4000");
	assert_line(text, "uffd_mgr_fault_latency_seconds{vm=\"web1\",quantile=\"0.5\"} 2e-05");
	assert_line(text,
		    "uffd_mgr_fault_latency_seconds{vm=\"web1\",quantile=\"0.99\"} 0.0001505");
	assert_line(text, "uffd_mgr_fault_latency_seconds_sum{vm=\"web1\"} 0.025");
	assert_line(text, "uffd_mgr_fault_latency_seconds_count{vm=\"web1\"} 1000");
	assert_line(text, "uffd_mgr_fault_latency_max_seconds{vm=\"web1\"} 0.0009");
	free(text);
}

/* Counters past 2^53 (where a double loses units) come out exact. */
static void test_large_integers(void **state)
{
	char *text;

	(void)state;
	text = format_vms("{\"name\":\"big\",\"state\":\"running\",\"resident_bytes\":"
			  "18446744073709551615,\"faults\":{\"zero\":9007199254740993},"
			  "\"evictions\":{\"pages\":4503599627370495}}");
	check_grammar(text);
	assert_line(text, "uffd_mgr_resident_bytes{vm=\"big\"} 18446744073709551615");
	assert_line(text, "uffd_mgr_faults_total{vm=\"big\",kind=\"zero\"} 9007199254740993");
	assert_line(text, "uffd_mgr_evicted_bytes_total{vm=\"big\"} 18446744073709547520");
	free(text);
}

static void test_exited_left_out(void **state)
{
	char *text, *vms;

	(void)state;
	assert_true(asprintf(&vms,
			     "{\"name\":\"web1\",\"state\":\"exited\",\"resident_bytes\":1},%s,"
			     "{\"name\":\"web1\",\"state\":\"exited\",\"resident_bytes\":2}",
			     full_vm) > 0);
	text = format_vms(vms);
	check_grammar(text); /* also: no series twice */
	assert_line(text, "uffd_mgr_vms 1");
	assert_line(text, "uffd_mgr_resident_bytes{vm=\"web1\"} 268435456");
	free(text);
	free(vms);
}

/* Fields the snapshot lacks give no sample; wrong types give none either. */
static void test_missing_fields(void **state)
{
	char *text;

	(void)state;
	text = format_vms("{\"name\":\"bare\",\"state\":\"running\",\"resident_bytes\":4096,"
			  "\"faults\":{\"shm\":\"many\"},\"tracker\":{\"wss_bytes\":[1,2]}}");
	check_grammar(text);
	assert_line(text, "uffd_mgr_resident_bytes{vm=\"bare\"} 4096");
	assert_line(text,
		    "uffd_mgr_vm_info{vm=\"bare\",pid=\"0\",state=\"running\",tracker=\"\"} 1");
	assert_null(strstr(text, "uffd_mgr_shm_bytes{"));
	assert_null(strstr(text, "uffd_mgr_faults_total{"));
	assert_null(strstr(text, "uffd_mgr_working_set_bytes{"));
	assert_null(strstr(text, "uffd_mgr_fault_latency_seconds{"));
	free(text);
}

static void test_escaping(void **state)
{
	char *text;

	(void)state;
	text = format_vms("{\"name\":\"a\\\"b\\\\c\\nd\",\"state\":\"run\\\"ning\","
			  "\"resident_bytes\":1}");
	check_grammar(text);
	assert_line(text, "uffd_mgr_resident_bytes{vm=\"a\\\"b\\\\c\\nd\"} 1");
	assert_non_null(strstr(text, "state=\"run\\\"ning\""));
	free(text);
}

static void test_odd_snapshots(void **state)
{
	static const char *const odd[] = {"[]", "{}", "{\"vms\":{}}", "{\"vms\":[1,\"x\",{}]}",
					  "{\"daemon\":7,\"vms\":null}"};
	int nfam = 0;

	(void)state;
	for (size_t i = 0; i < sizeof(odd) / sizeof(odd[0]); i++) {
		char *text = format(odd[i]);
		int n = check_grammar(text);

		assert_true(nfam == 0 || n == nfam); /* the same families, whatever the input */
		nfam = n;
		assert_line(text, "uffd_mgr_vms 0");
		assert_null(strstr(text, "uffd_mgr_uptime_seconds 0"));
		free(text);
	}
}

/* Every family of the full VM has at least one sample for it: the table's paths are all in
 * the snapshot's shape. (tests/system/metrics.sh checks the same against the real daemon.) */
static void test_every_family_has_a_sample(void **state)
{
	char *text = format_vms(full_vm), *copy = strdup(text), *save = NULL;
	char name[96];

	(void)state;
	for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char want[128];

		if (sscanf(line, "# TYPE %95s", name) != 1)
			continue;
		snprintf(want, sizeof(want), "\n%s{vm=\"web1\"", name);
		if (!strstr(text, want)) {
			snprintf(want, sizeof(want), "\n%s ", name); /* daemon-wide: no labels */
			if (!strstr(text, want))
				fail_msg("family %s has no sample for the VM", name);
		}
	}
	assert_true(families_with_vm == 0 || families_with_vm == check_grammar(text));
	free(copy);
	free(text);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_empty_daemon),   cmocka_unit_test(test_full_vm),
	    cmocka_unit_test(test_large_integers), cmocka_unit_test(test_exited_left_out),
	    cmocka_unit_test(test_missing_fields), cmocka_unit_test(test_escaping),
	    cmocka_unit_test(test_odd_snapshots),  cmocka_unit_test(test_every_family_has_a_sample),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
