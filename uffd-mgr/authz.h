/* authz: who may do what on the control socket, and which policy a VM runs with.
 *
 * Decided per connection from the peer's kernel credentials (SO_PEERCRED, SO_PEERGROUPS),
 * never from what a message says. Rights, from least to most:
 *   stats     read snapshots: the register right, or the stats group (--stats-group);
 *   register  register or resume a VM: root, the daemon's uid, --allow-uid, --allow-group;
 *   upgrade   exec a new daemon: root or the daemon's uid only.
 * A VM's policy is the operator's file POLICY_DIR/NAME.conf (the defaults when there is none);
 * a policy file the VM's QEMU names can only lower it (policy_clamp), except for root with
 * trust_root_policy. A trusted file's [vm] owner says whose QEMU may take that name.
 *
 * The settings come from options and from a config file with the same keys (one table). */
#ifndef UFFD_AUTHZ_H
#define UFFD_AUTHZ_H

#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <sys/types.h>

#include "uffd-mgr/policy.h"

#define AUTHZ_IDS_MAX	 32
#define AUTHZ_GROUPS_MAX 64
#define AUTHZ_DEFAULT_CONF "/etc/uffd-mgr/uffd-mgrd.conf"
#define AUTHZ_DEFAULT_POLICY_DIR "/etc/uffd-mgr/vms"

struct authz_conf {
	uid_t allow_uid[AUTHZ_IDS_MAX];
	int nuid;
	gid_t allow_gid[AUTHZ_IDS_MAX];
	int ngid;
	gid_t stats_gid; /* (gid_t)-1: no stats group */
	char policy_dir[PATH_MAX];
	bool trust_root_policy; /* a root peer's own policy file is taken as it is */
	uid_t self_uid;		/* the daemon's euid */
};

struct authz_peer {
	pid_t pid;
	uid_t uid;
	gid_t gid;
	gid_t groups[AUTHZ_GROUPS_MAX];
	int ngroups;
};

enum authz_right { AUTHZ_STATS, AUTHZ_REGISTER, AUTHZ_UPGRADE };

/* Fills *c with the defaults: root and the daemon's uid register, no stats group, the policy
 * directory AUTHZ_DEFAULT_POLICY_DIR, root's policy files trusted. Cannot fail. */
void authz_defaults(struct authz_conf *c);

/* Sets one setting by its key (the long option's name: allow-uid, allow-group, stats-group,
 * policy-dir, trust-root-policy); users and groups by name or number, repeatable ones add.
 * Returns 0, or -EINVAL with err holding one line. */
int authz_set(struct authz_conf *c, const char *key, const char *value, char *err,
	      size_t errlen);

/* Reads a config file of "key = value" lines with authz_set's keys ('#' comments). A missing
 * file is not an error when optional. Returns 0 or -errno with err "path:line: what". */
int authz_load(struct authz_conf *c, const char *path, bool optional, char *err,
	       size_t errlen);

/* Writes the settings' help, one block per key, for --help. */
void authz_print_options(FILE *out);

/* The control socket's mode and group (gid (gid_t)-1: leave it): 0600 when only root and
 * the daemon's uid may connect, 0660 and that group when one group names everyone else, 0666
 * when no single group does (allow-uid, or several groups); access is decided per message
 * either way. Cannot fail. */
void authz_socket_mode(const struct authz_conf *c, mode_t *mode, gid_t *gid);

/* Reads the credentials of the process at the other end of sock. Returns 0 or -errno. */
int authz_peer(int sock, struct authz_peer *p);

/* Whether the peer process holds the open file our descriptor fd refers to (kcmp over its
 * descriptors): a userfaultfd sent by a QEMU must be one that QEMU holds, not a neighbour's it
 * was passed. Returns 0, -ESRCH when it holds no such file, or -errno when its descriptors
 * cannot be compared (kcmp needs ptrace read access to the peer). */
int authz_peer_holds(pid_t pid, int fd);

/* Whether peer has right. Returns 0, or -EPERM with err naming the peer and what it lacks. */
int authz_check(const struct authz_conf *c, const struct authz_peer *peer, enum authz_right r,
		char *err, size_t errlen);

/* The policy VM vm_name runs with, for peer: the operator's POLICY_DIR/NAME.conf (defaults if
 * absent), whose [vm] owner must match the peer (or the peer is root); then client_path, if
 * not "", read with the peer's rights and clamped to the operator's (policy_clamp), or taken
 * as it is for root with trust_root_policy. clamped gets the keys put back ("" if none).
 * Returns 0, or -EPERM/-EINVAL/-errno with err holding one line. */
int authz_vm_policy(const struct authz_conf *c, const struct authz_peer *peer,
		    const char *vm_name, const char *client_path, struct policy *out,
		    char *clamped, size_t clen, char *err, size_t errlen);

#endif
