/* test_authz: who may do what (uffd-mgr/authz.c).
 *
 * A table of peers (uid, gid, groups) against a configuration with an allowed uid, an allowed
 * group and a stats group, each row with the rights it must and must not get; the settings'
 * parser and config file; the socket mode; and the VM policy lookup in a scratch policy
 * directory: the operator's file, its [vm] owner, a VM's own file clamped to it, a VM's file
 * it could not read itself (as root's 0600 file, a FIFO that would block), and root's file
 * taken as it is with trust-root-policy. Runs as root (the unreadable-file rows need it to
 * mean anything) and skips otherwise. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "uffd-mgr/authz.h"

#define M (UINT64_C(1) << 20)

struct peer_case {
	const char *name;
	struct authz_peer peer;
	bool stats, reg, upgrade;
};

/* The configuration every row runs against: allow-uid 2000, allow-group 3000, stats-group
 * 4000 (self_uid set to 0 as for a root daemon). */
static const struct peer_case peer_cases[] = {
    {"root", {.pid = 1, .uid = 0, .gid = 0}, true, true, true},
    {"allowed uid", {.pid = 2, .uid = 2000, .gid = 2000}, true, true, false},
    {"primary group", {.pid = 3, .uid = 2001, .gid = 3000}, true, true, false},
    {"supplementary group", {.pid = 4, .uid = 2002, .gid = 9, .groups = {7, 3000}, .ngroups = 2},
     true, true, false},
    {"stats group only", {.pid = 5, .uid = 2003, .gid = 4000}, true, false, false},
    {"stats group supplementary", {.pid = 6, .uid = 2004, .gid = 9, .groups = {4000}, .ngroups = 1},
     true, false, false},
    {"stranger", {.pid = 7, .uid = 2005, .gid = 2005, .groups = {5, 6}, .ngroups = 2}, false,
     false, false},
    {"nobody", {.pid = 8, .uid = 65534, .gid = 65534}, false, false, false},
};

static void conf_for_table(struct authz_conf *c)
{
	char err[256];

	authz_defaults(c);
	c->self_uid = 0;
	assert_int_equal(authz_set(c, "allow-uid", "2000", err, sizeof(err)), 0);
	assert_int_equal(authz_set(c, "allow-group", "3000", err, sizeof(err)), 0);
	assert_int_equal(authz_set(c, "stats-group", "4000", err, sizeof(err)), 0);
}

static void test_peer(void **state)
{
	const struct peer_case *pc = *state;
	struct authz_conf c;
	char err[256];

	conf_for_table(&c);
	assert_int_equal(authz_check(&c, &pc->peer, AUTHZ_STATS, err, sizeof(err)),
			 pc->stats ? 0 : -EPERM);
	assert_int_equal(authz_check(&c, &pc->peer, AUTHZ_REGISTER, err, sizeof(err)),
			 pc->reg ? 0 : -EPERM);
	assert_int_equal(authz_check(&c, &pc->peer, AUTHZ_UPGRADE, err, sizeof(err)),
			 pc->upgrade ? 0 : -EPERM);
	if (!pc->reg) /* the refusal names the pid and what it may not do */
		assert_non_null(strstr(err, "may not"));
}

static void test_defaults_only_root_and_self(void **state)
{
	struct authz_conf c;
	struct authz_peer self = {.uid = 1234}, other = {.uid = 1235};
	char err[256];

	authz_defaults(&c);
	c.self_uid = 1234;
	assert_int_equal(authz_check(&c, &self, AUTHZ_REGISTER, err, sizeof(err)), 0);
	assert_int_equal(authz_check(&c, &other, AUTHZ_STATS, err, sizeof(err)), -EPERM);
	assert_string_equal(err, "permission denied: pid 0 (uid 1235, gid 0) may not read stats");
}

static void test_settings(void **state)
{
	struct authz_conf c;
	char err[256], path[] = "/tmp/test_authz_conf.XXXXXX";
	FILE *f;
	int fd;

	authz_defaults(&c);
	assert_int_equal(authz_set(&c, "allow-group", "root", err, sizeof(err)), 0);
	assert_int_equal(c.allow_gid[0], 0);
	assert_int_equal(authz_set(&c, "allow-uid", "no-such-user-here", err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "allow-uid: 'no-such-user-here'"));
	assert_int_equal(authz_set(&c, "policy-dir", "relative", err, sizeof(err)), -EINVAL);
	assert_int_equal(authz_set(&c, "trust-root-policy", "maybe", err, sizeof(err)), -EINVAL);
	assert_int_equal(authz_set(&c, "trust-root-policy", "off", err, sizeof(err)), 0);
	assert_false(c.trust_root_policy);
	assert_int_equal(authz_set(&c, "frobnicate", "1", err, sizeof(err)), -EINVAL);

	assert_int_equal(authz_load(&c, "/nonexistent/uffd.conf", true, err, sizeof(err)), 0);
	assert_int_equal(authz_load(&c, "/nonexistent/uffd.conf", false, err, sizeof(err)), -ENOENT);
	fd = mkstemp(path);
	assert_true(fd >= 0);
	f = fdopen(fd, "w");
	fprintf(f, "# comment\npolicy-dir = /srv/vms\nstats-group = 0\nallow-uid = bogus!\n");
	fclose(f);
	authz_defaults(&c);
	assert_int_equal(authz_load(&c, path, false, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, ":4: allow-uid: 'bogus!'"));
	assert_string_equal(c.policy_dir, "/srv/vms");
	assert_int_equal(c.stats_gid, 0);
	unlink(path);
}

static void test_socket_mode(void **state)
{
	struct authz_conf c;
	char err[256];
	mode_t mode;
	gid_t gid;

	authz_defaults(&c);
	authz_socket_mode(&c, &mode, &gid);
	assert_int_equal(mode, 0600);
	assert_int_equal(gid, (gid_t)-1);
	authz_set(&c, "stats-group", "50", err, sizeof(err));
	authz_socket_mode(&c, &mode, &gid);
	assert_int_equal(mode, 0660);
	assert_int_equal(gid, 50);
	authz_set(&c, "allow-group", "50", err, sizeof(err));
	authz_socket_mode(&c, &mode, &gid);
	assert_int_equal(mode, 0660);
	authz_set(&c, "allow-group", "51", err, sizeof(err));
	authz_socket_mode(&c, &mode, &gid);
	assert_int_equal(mode, 0666);
}

static char dir[] = "/tmp/test_authz_vms.XXXXXX";

static void write_file(const char *name, const char *text, mode_t mode)
{
	char path[256];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	assert_int_equal(chmod(path, mode), 0);
}

static int vm_policy(const struct authz_conf *c, uid_t uid, const char *vm, const char *mine,
		     struct policy *p, char *err)
{
	struct authz_peer peer = {.pid = 42, .uid = uid, .gid = uid};
	char path[256] = "", clamped[256];

	if (mine)
		snprintf(path, sizeof(path), "%s/%s", dir, mine);
	return authz_vm_policy(c, &peer, vm, path, p, clamped, sizeof(clamped), err, 256);
}

static void test_vm_policy(void **state)
{
	struct authz_conf c;
	struct policy p;
	char err[256], fifo[256];

	if (geteuid() != 0)
		skip();
	assert_non_null(mkdtemp(dir));
	assert_int_equal(chmod(dir, 0755), 0);
	authz_defaults(&c);
	authz_set(&c, "policy-dir", dir, err, sizeof(err));
	write_file("web.conf", "[vm]\nowner = 2000\n[memory]\nresident_max = 1G\nweight = 100\n",
		   0644);
	write_file("big.conf", "[memory]\nresident_max = 8G\nweight = 10000\n[shm]\nmax = 64M\n",
		   0644);
	write_file("secret.conf", "[memory]\nresident_max = 8G\n", 0600);

	/* No operator's file: the defaults; the VM's own file lowers them only. */
	assert_int_equal(vm_policy(&c, 2001, "anon", NULL, &p, err), 0);
	assert_int_equal(p.weight, 100);
	assert_int_equal(vm_policy(&c, 2001, "anon", "big.conf", &p, err), 0);
	assert_int_equal(p.resident_max, 8 * 1024 * M); /* default 0: no limit, so 8G lowers */
	assert_int_equal(p.weight, 100);
	assert_int_equal(p.shm_max, 64 * M);
	/* The operator's file reserves the name for its owner (and root). */
	assert_int_equal(vm_policy(&c, 2001, "web", NULL, &p, err), -EPERM);
	assert_non_null(strstr(err, "vm 'web' belongs to uid 2000, not pid 42's uid 2001"));
	assert_int_equal(vm_policy(&c, 2000, "web", "big.conf", &p, err), 0);
	assert_int_equal(p.resident_max, 1024 * M);
	assert_int_equal(p.weight, 100);
	assert_int_equal(vm_policy(&c, 0, "web", NULL, &p, err), 0);
	/* A file the peer could not read: refused, its text never quoted. */
	assert_int_equal(vm_policy(&c, 2001, "anon", "secret.conf", &p, err), -EACCES);
	assert_null(strstr(err, "8G"));
	snprintf(fifo, sizeof(fifo), "%s/fifo.conf", dir);
	assert_int_equal(mkfifo(fifo, 0666), 0);
	assert_int_equal(vm_policy(&c, 2001, "anon", "fifo.conf", &p, err), -EACCES);
	/* Root's own file as it is, unless trust-root-policy is off. */
	assert_int_equal(vm_policy(&c, 0, "web", "big.conf", &p, err), 0);
	assert_int_equal(p.weight, 10000);
	authz_set(&c, "trust-root-policy", "off", err, sizeof(err));
	assert_int_equal(vm_policy(&c, 0, "web", "big.conf", &p, err), 0);
	assert_int_equal(p.weight, 100);
	/* A broken operator's file refuses the VM, naming the file. */
	write_file("broken.conf", "[memory]\nweight = lots\n", 0644);
	assert_int_equal(vm_policy(&c, 0, "broken", NULL, &p, err), -EINVAL);
	assert_non_null(strstr(err, "broken.conf:2:"));
}

static int cleanup_dir(void **state)
{
	char cmd[300];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (dir[strlen(dir) - 1] != 'X')
		(void)!system(cmd);
	return 0;
}

int main(void)
{
	struct CMUnitTest tests[sizeof(peer_cases) / sizeof(peer_cases[0]) + 4];
	size_t n = 0;

	for (size_t i = 0; i < sizeof(peer_cases) / sizeof(peer_cases[0]); i++)
		tests[n++] = (struct CMUnitTest){.name = peer_cases[i].name,
						 .test_func = test_peer,
						 .initial_state = (void *)&peer_cases[i]};
	tests[n++] = (struct CMUnitTest)cmocka_unit_test(test_defaults_only_root_and_self);
	tests[n++] = (struct CMUnitTest)cmocka_unit_test(test_settings);
	tests[n++] = (struct CMUnitTest)cmocka_unit_test(test_socket_mode);
	tests[n++] = (struct CMUnitTest)cmocka_unit_test_teardown(test_vm_policy, cleanup_dir);
	return _cmocka_run_group_tests("authz", tests, n, NULL, NULL) ? 1 : 0;
}
