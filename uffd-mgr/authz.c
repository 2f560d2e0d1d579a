/* authz: see authz.h. */
#include "uffd-mgr/authz.h"
#include "uffd-mgr/log.h"

#include <ctype.h>
#include <dirent.h>
#include <linux/kcmp.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <ini.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef SO_PEERGROUPS
#define SO_PEERGROUPS 59
#endif

/* A user or group given by name or by number. Returns 0 or -EINVAL. */
static int parse_id(const char *s, bool group, unsigned *out)
{
	char *end;
	unsigned long n;

	if (isdigit((unsigned char)s[0])) {
		errno = 0;
		n = strtoul(s, &end, 10);
		if (*end || errno || n >= (unsigned long)(uid_t)-1)
			return -EINVAL;
		*out = (unsigned)n;
		return 0;
	}
	if (group) {
		struct group *g = getgrnam(s);

		if (!g)
			return -EINVAL;
		*out = g->gr_gid;
	} else {
		struct passwd *pw = getpwnam(s);

		if (!pw)
			return -EINVAL;
		*out = pw->pw_uid;
	}
	return 0;
}

/* Adds a user (allow-uid) or group (allow-group) to the ones that may register. */
static int add_allowed(struct authz_conf *c, const char *v, bool group, char *err, size_t errlen)
{
	int *n = group ? &c->ngid : &c->nuid;
	unsigned id;

	if (parse_id(v, group, &id) || *n == AUTHZ_IDS_MAX) {
		err_set(err, errlen, "allow-%s: '%.64s' is not a %s (name or %s) or too many",
			group ? "group" : "uid", v, group ? "group" : "user", group ? "gid" : "uid");
		return -EINVAL;
	}
	if (group)
		c->allow_gid[(*n)++] = id;
	else
		c->allow_uid[(*n)++] = id;
	return 0;
}

static int set_allow_uid(struct authz_conf *c, const char *v, char *err, size_t errlen)
{
	return add_allowed(c, v, false, err, errlen);
}

static int set_allow_group(struct authz_conf *c, const char *v, char *err, size_t errlen)
{
	return add_allowed(c, v, true, err, errlen);
}

static int set_stats_group(struct authz_conf *c, const char *v, char *err, size_t errlen)
{
	unsigned id;

	if (parse_id(v, true, &id)) {
		err_set(err, errlen, "stats-group: '%.64s' is not a group (name or gid)", v);
		return -EINVAL;
	}
	c->stats_gid = id;
	return 0;
}

static int set_policy_dir(struct authz_conf *c, const char *v, char *err, size_t errlen)
{
	if (v[0] != '/' || strlen(v) >= sizeof(c->policy_dir) - POLICY_NAME_MAX - 8) {
		err_set(err, errlen, "policy-dir: '%.64s' is not an absolute path", v);
		return -EINVAL;
	}
	snprintf(c->policy_dir, sizeof(c->policy_dir), "%s", v);
	return 0;
}

static int set_trust_root(struct authz_conf *c, const char *v, char *err, size_t errlen)
{
	static const char *const yes[] = {"on", "yes", "true", "1"}, *const no[] = {"off", "no",
										  "false", "0"};

	for (size_t i = 0; i < 4; i++) {
		if (!strcmp(v, yes[i]) || !strcmp(v, no[i])) {
			c->trust_root_policy = !strcmp(v, yes[i]);
			return 0;
		}
	}
	err_set(err, errlen, "trust-root-policy: '%.64s' is not on/off/yes/no/true/false/1/0", v);
	return -EINVAL;
}

/* Every setting: the option, the config file key and the help all come from here. */
static const struct authz_key {
	const char *key, *arg, *help;
	int (*set)(struct authz_conf *c, const char *v, char *err, size_t errlen);
} keys[] = {
    {"allow-uid", "USER", "may register VMs and read stats (repeatable; root and the daemon's uid "
			  "always may)", set_allow_uid},
    {"allow-group", "GROUP", "members (primary or supplementary) may register VMs and read "
			     "stats, e.g. libvirt-qemu (repeatable)", set_allow_group},
    {"stats-group", "GROUP", "members may read stats only; the socket is made group-accessible "
			     "to it", set_stats_group},
    {"policy-dir", "DIR", "the operator's VM policies, DIR/NAME.conf (default "
			  AUTHZ_DEFAULT_POLICY_DIR "); a VM's own --policy can only lower them",
     set_policy_dir},
    {"trust-root-policy", "on|off", "take a root QEMU's --policy file as it is, not clamped to "
				    "DIR/NAME.conf (default on: root can write DIR anyway)",
     set_trust_root},
};

#define NKEYS (sizeof(keys) / sizeof(keys[0]))

void authz_defaults(struct authz_conf *c)
{
	memset(c, 0, sizeof(*c));
	c->stats_gid = (gid_t)-1;
	snprintf(c->policy_dir, sizeof(c->policy_dir), "%s", AUTHZ_DEFAULT_POLICY_DIR);
	c->trust_root_policy = true;
	c->self_uid = geteuid();
}

int authz_set(struct authz_conf *c, const char *key, const char *value, char *err,
	      size_t errlen)
{
	for (size_t i = 0; i < NKEYS; i++)
		if (!strcmp(keys[i].key, key))
			return keys[i].set(c, value, err, errlen);
	err_set(err, errlen, "unknown setting '%.64s'", key);
	return -EINVAL;
}

struct load_ctx {
	struct authz_conf *c;
	char msg[256];
	bool failed;
};

static int on_conf_key(void *user, const char *section, const char *name, const char *value)
{
	struct load_ctx *l = user;

	if (l->failed)
		return 0;
	if (section[0]) {
		err_set(l->msg, sizeof(l->msg), "no sections in this file ([%.32s])", section);
		l->failed = true;
		return 0;
	}
	l->failed = authz_set(l->c, name, value, l->msg, sizeof(l->msg)) != 0;
	return !l->failed;
}

int authz_load(struct authz_conf *c, const char *path, bool optional, char *err,
	       size_t errlen)
{
	struct load_ctx l = {.c = c};
	FILE *f = fopen(path, "re");
	int line;

	if (!f) {
		if (optional && errno == ENOENT)
			return 0;
		err_set(err, errlen, "%s: %s", path, strerror(errno));
		return -errno;
	}
	line = ini_parse_file(f, on_conf_key, &l);
	fclose(f);
	if (line) {
		err_set(err, errlen, "%s:%d: %s", path, line, l.failed ? l.msg : "syntax error");
		return -EINVAL;
	}
	return 0;
}

void authz_print_options(FILE *out)
{
	for (size_t i = 0; i < NKEYS; i++)
		fprintf(out, "    --%s %s\n                   %s\n", keys[i].key, keys[i].arg,
			keys[i].help);
}

void authz_socket_mode(const struct authz_conf *c, mode_t *mode, gid_t *gid)
{
	gid_t g = c->stats_gid;
	bool several = false;

	for (int i = 0; i < c->ngid; i++) {
		several |= g != (gid_t)-1 && g != c->allow_gid[i];
		g = c->allow_gid[i];
	}
	*gid = g;
	/* One group: the file's group keeps everyone else out before we ever see them. More
	 * principals than one group can name: anyone may connect, and we decide per message. */
	*mode = c->nuid || several ? 0666 : g != (gid_t)-1 ? 0660 : 0600;
}

int authz_peer(int sock, struct authz_peer *p)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);
	gid_t groups[1024];

	memset(p, 0, sizeof(*p));
	if (getsockopt(sock, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
		return -errno;
	p->pid = cred.pid;
	p->uid = cred.uid;
	p->gid = cred.gid;
	/* The groups as they were at connect(), like the rest: not /proc, whose pid may be
	 * reused by the time we read it. More than we keep: decided without them. */
	len = sizeof(groups);
	if (getsockopt(sock, SOL_SOCKET, SO_PEERGROUPS, groups, &len) == 0) {
		p->ngroups = (int)(len / sizeof(gid_t));
		if (p->ngroups > AUTHZ_GROUPS_MAX)
			p->ngroups = AUTHZ_GROUPS_MAX;
		memcpy(p->groups, groups, (size_t)p->ngroups * sizeof(gid_t));
	}
	return 0;
}

int authz_peer_holds(pid_t pid, int fd)
{
	char dir[64];
	struct dirent *e;
	DIR *d;
	int r = -ESRCH;

	snprintf(dir, sizeof(dir), "/proc/%d/fd", pid);
	d = opendir(dir);
	if (!d)
		return -errno;
	while (r && (e = readdir(d))) {
		char *end;
		long peer_fd = strtol(e->d_name, &end, 10);

		if (*end || end == e->d_name)
			continue;
		long k = syscall(SYS_kcmp, pid, getpid(), KCMP_FILE, peer_fd, fd);

		if (k == 0)
			r = 0;
		else if (k < 0 && errno != EBADF) {
			r = -errno;
			break;
		}
	}
	closedir(d);
	return r;
}

static bool in_group(const struct authz_peer *p, gid_t g)
{
	if (g == (gid_t)-1)
		return false;
	if (p->gid == g)
		return true;
	for (int i = 0; i < p->ngroups; i++)
		if (p->groups[i] == g)
			return true;
	return false;
}

static bool may_register(const struct authz_conf *c, const struct authz_peer *p)
{
	if (p->uid == 0 || p->uid == c->self_uid)
		return true;
	for (int i = 0; i < c->nuid; i++)
		if (c->allow_uid[i] == p->uid)
			return true;
	for (int i = 0; i < c->ngid; i++)
		if (in_group(p, c->allow_gid[i]))
			return true;
	return false;
}

int authz_check(const struct authz_conf *c, const struct authz_peer *peer, enum authz_right r,
		char *err, size_t errlen)
{
	static const char *const what[] = {"read stats", "register VMs", "upgrade the daemon"};
	bool ok = r == AUTHZ_UPGRADE ? peer->uid == 0 || peer->uid == c->self_uid
		  : r == AUTHZ_REGISTER ? may_register(c, peer)
					: may_register(c, peer) || in_group(peer, c->stats_gid);

	if (ok)
		return 0;
	err_set(err, errlen, "permission denied: pid %d (uid %u, gid %u) may not %s", peer->pid,
		peer->uid, peer->gid, what[r]);
	return -EPERM;
}

/* Whether peer could read a file of this owner and mode (the permission bits; ACLs aside). */
static bool peer_may_read(const struct authz_peer *p, const struct stat *sb)
{
	if (p->uid == 0)
		return true;
	if (sb->st_uid == p->uid)
		return sb->st_mode & S_IRUSR;
	if (in_group(p, sb->st_gid))
		return sb->st_mode & S_IRGRP;
	return sb->st_mode & S_IROTH;
}

/* Opens path as the peer would: a root daemon opens it with the peer's file-system ids (for
 * this thread alone: the raw syscalls, not glibc's, which would change every thread), so
 * that a VM cannot make the daemon read a file it could not; either way the file must be a
 * regular file the peer may read. Returns the fd or -errno (-EACCES). */
static int open_as_peer(const struct authz_peer *p, const char *path)
{
	bool as_root = geteuid() == 0 && p->uid != 0;
	gid_t saved[AUTHZ_GROUPS_MAX];
	int nsaved = as_root ? getgroups(AUTHZ_GROUPS_MAX, saved) : 0, fd, e = 0;
	struct stat sb;

	if (nsaved < 0)
		return -errno;
	if (as_root && syscall(SYS_setgroups, p->ngroups, p->groups) < 0)
		return -errno;
	if (as_root) {
		syscall(SYS_setfsgid, p->gid);
		syscall(SYS_setfsuid, p->uid);
	}
	fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	if (fd < 0)
		e = -errno;
	if (as_root) {
		syscall(SYS_setfsuid, 0);
		syscall(SYS_setfsgid, getegid());
		syscall(SYS_setgroups, nsaved, saved);
	}
	if (fd < 0)
		return e;
	if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode) || !peer_may_read(p, &sb)) {
		close(fd);
		return -EACCES;
	}
	return fd;
}

/* Whether peer may take the name a trusted policy's [vm] owner reserves. */
static int check_owner(const struct policy *trusted, const struct authz_peer *peer,
		       const char *vm_name, char *err, size_t errlen)
{
	unsigned owner;

	if (!trusted->owner[0] || peer->uid == 0)
		return 0;
	if (parse_id(trusted->owner, false, &owner)) {
		err_set(err, errlen, "vm '%s': its policy's [vm] owner '%s' is no user here; "
			"refusing everyone but root", vm_name, trusted->owner);
		return -EPERM;
	}
	if (owner != peer->uid) {
		err_set(err, errlen, "permission denied: vm '%s' belongs to uid %u, not pid %d's uid %u",
			vm_name, owner, peer->pid, peer->uid);
		return -EPERM;
	}
	return 0;
}

int authz_vm_policy(const struct authz_conf *c, const struct authz_peer *peer,
		    const char *vm_name, const char *client_path, struct policy *out,
		    char *clamped, size_t clen, char *err, size_t errlen)
{
	struct policy trusted, mine;
	char path[PATH_MAX + POLICY_NAME_MAX + 8];
	int fd, r;

	err_set(clamped, clen, "%s", "");
	policy_defaults(&trusted);
	snprintf(path, sizeof(path), "%s/%s.conf", c->policy_dir, vm_name);
	fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	if (fd < 0 && errno != ENOENT) {
		err_set(err, errlen, "%s: %s", path, strerror(errno));
		return -errno;
	}
	if (fd >= 0) {
		r = policy_load_fd(fd, path, NULL, &trusted, err, errlen);
		close(fd);
		if (r)
			return r;
	}
	r = check_owner(&trusted, peer, vm_name, err, errlen);
	if (r || !client_path[0]) {
		*out = trusted;
		return r;
	}
	if (peer->uid == 0 && c->trust_root_policy)
		return policy_load(client_path, out, err, errlen);
	fd = open_as_peer(peer, client_path);
	if (fd < 0) {
		err_set(err, errlen, "%s: %s (as uid %u)", client_path, strerror(-fd), peer->uid);
		return fd;
	}
	r = policy_load_fd(fd, client_path, &trusted, &mine, err, errlen);
	close(fd);
	if (r)
		return r;
	policy_clamp(&trusted, &mine, clamped, clen);
	*out = mine;
	return 0;
}
