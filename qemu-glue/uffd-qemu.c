/* uffd-qemu: the launcher operators type instead of qemu-system-x86_64.
 *
 * Loads the VM's policy, rewrites QEMU's command line so that guest RAM is a shared memfd
 * with a QMP socket and a balloon (qemuargs), makes sure a uffd-mgrd answers at the control
 * socket (starting an embedded one for this VM if none does), then sets LD_PRELOAD to the
 * shim and execs QEMU in its own place: QEMU keeps this pid, and its exit status is ours.
 *
 * Every step below returns 0 to go on or the exit status to stop with, having printed why. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "qemu-glue/qemuargs.h"
#include "uffd-mgr/policy.h"
#include "uffd-mgr/proto.h"

#define EXIT_RUNTIME	 1
#define EXIT_USAGE	 2
#define EXIT_CANNOT_EXEC 126
#define EXIT_NOT_FOUND	 127

#define NAME_MAX_LEN   63
#define SUN_PATH_MAX   sizeof(((struct sockaddr_un *)0)->sun_path)
#define DAEMON_WAIT_MS 10000
#define DAEMON_POLL_MS 20
#define SHIM_NAME      "libuffd-shim.so"
#define DAEMON_NAME    "uffd-mgrd"

struct launch {
	/* Command line. */
	const char *policy_path;
	const char *socket_opt;
	const char *name_opt;
	const char *daemon_opt;
	bool no_start;
	bool dry_run;
	bool emulator; /* called as uffd-qemu-system-ARCH: libvirt's <emulator> */
	int qemu_argc; /* QEMU binary and its arguments */
	char **qemu_argv;
	/* Derived. */
	struct policy policy;
	struct qemuargs qa;
	char name[NAME_MAX_LEN + 1];
	const char *name_from; /* where the name came from, for errors */
	char socket[SUN_PATH_MAX];
	char sockdir[SUN_PATH_MAX];
	char qmp[SUN_PATH_MAX];
	char qmp_dir[SUN_PATH_MAX]; /* where the QMP socket goes, when not the socket's dir */
	char policy_found[PATH_MAX];
	char selfdir[PATH_MAX];
	char shim[PATH_MAX + 32]; /* selfdir + a file name */
	char policy_abs[PATH_MAX];
	char daemon[PATH_MAX + 32];
	char log[PATH_MAX + 32];
	char qemu_path[PATH_MAX]; /* the QEMU executable found on PATH */
	char *ld_preload;
};

static void usage_short(FILE *out)
{
	fprintf(out, "usage: uffd-qemu [--policy FILE] [--socket PATH] [--name NAME] "
		     "[--daemon PATH]\n"
		     "                 [--no-start] [--dry-run] [-h|--help] -- "
		     "qemu-system-x86_64 ARGS...\n");
}

static void help(FILE *out)
{
	fprintf(out,
		"NAME\n"
		"    uffd-qemu - run a QEMU guest with its RAM managed by uffd-mgrd\n"
		"\n"
		"SYNOPSIS\n"
		"    uffd-qemu [--policy FILE] [--socket PATH] [--name NAME] [--daemon PATH]\n"
		"              [--no-start] [--dry-run] [-h|--help]\n"
		"              -- qemu-system-x86_64 ARGS...\n"
		"\n"
		"DESCRIPTION\n"
		"    Starts QEMU so that uffd-mgrd owns every page of the guest's RAM through\n"
		"    userfaultfd: it pages cold memory out to a shared-memory tier and to\n"
		"    disk, brings it back on demand, and balloons the guest by its policy.\n"
		"\n"
		"    uffd-qemu checks the policy file and the QEMU command line, refuses\n"
		"    set-ups uffd-mgr cannot manage (each with a one-line reason), adds what\n"
		"    it needs (below), makes sure a uffd-mgrd answers at the control socket,\n"
		"    then replaces itself with QEMU, the uffd shim preloaded. QEMU keeps\n"
		"    uffd-qemu's pid, and QEMU's exit status is uffd-qemu's.\n"
		"\n"
		"    If no uffd-mgrd answers, uffd-qemu starts one for this VM (\"embedded\":\n"
		"    it exits when its last VM has gone) in a session of its own, logging to\n"
		"    <socket dir>/uffd-mgrd-<name>.log, and waits up to 10 s for it.\n"
		"\n"
		"    If the daemon dies, QEMU does not: vCPUs that fault wait until a daemon\n"
		"    answers at the socket again, and the shim then resumes the VM with it\n"
		"    (every page kept). Without --no-start, a shim that finds no daemon for\n"
		"    0.5 s starts one as above.\n"
		"\n"
		"OPTIONS\n"
		"    --policy FILE  the VM's policy (keys below), checked before anything\n"
		"                   else. Without it every key has its default.\n"
		"    --socket PATH  uffd-mgrd's control socket. Default: $UFFD_MGR_SOCKET,\n"
		"                   else %s.\n"
		"                   Its directory is created (0755) if missing; QEMU's QMP\n"
		"                   socket and an embedded daemon's log go there too.\n"
		"    --name NAME    the VM's name, 1 to 63 of A-Z a-z 0-9 . _ -. Default:\n"
		"                   the policy's [vm] name, else QEMU's -name, else the\n"
		"                   policy file's name without its extension, else vm<pid>.\n"
		"    --daemon PATH  the uffd-mgrd to start when none answers. Default:\n"
		"                   ../sbin/uffd-mgrd from uffd-qemu's directory (as\n"
		"                   installed), else uffd-mgrd next to it, else on $PATH.\n"
		"    --no-start     never start a daemon; fail if none answers (and, once\n"
		"                   QEMU runs, wait for one to come back, e.g. by systemd).\n"
		"    --dry-run      print the environment and the QEMU command line, shell-\n"
		"                   quoted, and exit; nothing is started or created.\n"
		"    -h, --help     this text.\n"
		"    --             ends uffd-qemu's options: the QEMU binary and its\n"
		"                   arguments follow.\n"
		"\n"
		"ADDED TO QEMU'S COMMAND LINE\n"
		"    -object memory-backend-memfd,id=uffd-ram,size=SIZE,share=on\n"
		"    -machine memory-backend=uffd-ram\n"
		"        unless the machine's memory-backend is already a memfd backend\n"
		"        with share=on. SIZE is -m's (QEMU's default: 128M); -m and any\n"
		"        -machine of the user's stay as given (QEMU merges -machine).\n"
		"    -qmp unix:<socket dir>/<name>.qmp,server=on,wait=off\n"
		"        unless a -qmp, -qmp-pretty or -mon mode=control listens on a unix\n"
		"        socket already; uffd-mgrd's balloon driver uses it.\n"
		"    -device virtio-balloon-pci,id=uffd-balloon,deflate-on-oom=on,\n"
		"            free-page-reporting=on\n"
		"        unless there is a virtio-balloon, the policy says [balloon]\n"
		"        enabled = off, or the machine has no PCI (microvm, isapc). The guest\n"
		"        reports its free pages, which QEMU discards and uffd-mgrd drops from\n"
		"        its tiers; deflate-on-oom lets the guest take memory back from the\n"
		"        balloon before it would run out.\n"
		"    A -object memory-backend-ram (libvirt's guest RAM when a domain has\n"
		"    no <memoryBacking>) becomes memory-backend-memfd with share=on, same\n"
		"    id, size and other properties.\n"
		"\n"
		"CAPABILITY PROBES\n"
		"    A command line that runs no guest (-machine none, -daemonize, -version,\n"
		"    -help, -device help) goes to QEMU as it is: no daemon, no shim.\n"
		"\n"
		"AS LIBVIRT'S EMULATOR\n"
		"    Called as uffd-qemu-system-ARCH (a link to uffd-qemu, installed by make\n"
		"    install), every argument is QEMU's and qemu-system-ARCH on $PATH runs.\n"
		"    Name it in a domain's <emulator>. The VM's name is the domain's; the\n"
		"    policy is /etc/uffd-mgr/vms/NAME.conf when QEMU's user may read it\n"
		"    (uffd-mgrd reads the same file from its --policy-dir anyway); the QMP\n"
		"    socket goes into libvirt's directory for the domain; the daemon is the\n"
		"    system's at the default socket (never started: libvirt's QEMU is\n"
		"    unprivileged). When QEMU may not open /dev/userfaultfd (libvirt gives it\n"
		"    its own /dev and device cgroup), uffd-mgrd opens it for a QEMU with the\n"
		"    register right. See the README's libvirt section for the host set-up.\n"
		"\n"
		"REFUSED\n"
		"    -mem-path and memory-backend-file (a file backend), hugetlb=on or\n"
		"    prealloc=on on the memfd backend, -m slots=/maxmem= (memory hotplug),\n"
		"    vhost-user and vhost-vdpa devices and netdevs,\n"
		"    vfio devices, -incoming,\n"
		"    -mem-prealloc, -overcommit mem-lock=on, -readconfig, and any option\n"
		"    that neither QEMU 7.2 nor the installed QEMU's -help knows (options of\n"
		"    newer QEMUs that uffd-qemu has no rule for pass as they are).\n"
		"    Devices that write guest RAM by DMA, behind the page tables where an\n"
		"    eviction cannot see the write: disks with O_DIRECT (-drive cache=none,\n"
		"    cache=directsync, cache.direct=on or aio=native, also on a child node\n"
		"    or in -blockdev; use the default cache=writeback, aio=threads or\n"
		"    aio=io_uring), QEMU's nvme block driver, vhost-scsi, scsi-block,\n"
		"    pvrdma and x-pci-proxy-dev. Kernel vhost-net and vhost-vsock are fine.\n"
		"\n"
		"ENVIRONMENT\n"
		"    UFFD_MGR_SOCKET  read: the default control socket.\n"
		"    Set for QEMU:\n"
		"    LD_PRELOAD       %s from ../lib/uffd-mgr (as installed), else\n"
		"                     next to uffd-qemu; then any earlier value\n"
		"    UFFD_MGR_SOCKET  the control socket\n"
		"    UFFD_MGR_VM      the VM's name\n"
		"    UFFD_MGR_POLICY  the policy file's absolute path, or empty\n"
		"    UFFD_MGR_QMP     the QMP socket for uffd-mgrd\n"
		"    UFFD_MGR_BACKENDS  a NUMA guest's RAM backends, id:bytes,... (each is\n"
		"                     registered on its own, as NAME and NAME.ID)\n"
		"\n"
		"EXIT STATUS\n"
		"    QEMU's, once QEMU runs. Before: 0 after --help or --dry-run; 1 on a\n"
		"    run-time error (no daemon, shim missing); 2 on a usage, policy or QEMU\n"
		"    argument error; 126 if QEMU cannot be executed, 127 if it is not found.\n"
		"\n"
		"EXAMPLES\n"
		"    uffd-qemu --policy /etc/uffd-mgr/web1.conf -- qemu-system-x86_64 \\\n"
		"        -machine q35,accel=kvm -m 4G -smp 2 -drive file=web1.qcow2,if=virtio\n"
		"    uffd-qemu --dry-run -- qemu-system-x86_64 -m 512 -nographic \\\n"
		"        -kernel bzImage -append console=ttyS0\n"
		"    uffd-qemu --socket /tmp/uffd/ctl.sock --name t1 --no-start \\\n"
		"        -- qemu-system-x86_64 -m 1G\n"
		"\n",
		PROTO_DEFAULT_SOCKET, SHIM_NAME);
	policy_print_keys(out);
	fprintf(out, "\nSEE ALSO\n    uffd-mgrd(8), uffdctl(1), examples/vm.conf\n");
}

/* Reads uffd-qemu's options. Returns 0, -1 after --help, or an exit status. */
static int parse_cli(struct launch *l, int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"policy", required_argument, NULL, 'p'}, {"socket", required_argument, NULL, 's'},
	    {"name", required_argument, NULL, 'n'},   {"daemon", required_argument, NULL, 'd'},
	    {"no-start", no_argument, NULL, 'N'},     {"dry-run", no_argument, NULL, 'D'},
	    {"help", no_argument, NULL, 'h'},	      {NULL, 0, NULL, 0},
	};
	int c;

	opterr = 0; /* our own messages, below */
	while ((c = getopt_long(argc, argv, "+:h", longopts, NULL)) != -1) {
		switch (c) {
		case 'p':
			l->policy_path = optarg;
			break;
		case 's':
			l->socket_opt = optarg;
			break;
		case 'n':
			l->name_opt = optarg;
			break;
		case 'd':
			l->daemon_opt = optarg;
			break;
		case 'N':
			l->no_start = true;
			break;
		case 'D':
			l->dry_run = true;
			break;
		case 'h':
			help(stdout);
			return -1;
		case ':':
			fprintf(stderr, "uffd-qemu: option '%s' needs an argument\n",
				argv[optind - 1]);
			usage_short(stderr);
			return EXIT_USAGE;
		default:
			fprintf(stderr, "uffd-qemu: unknown option '%s'\n", argv[optind - 1]);
			usage_short(stderr);
			return EXIT_USAGE;
		}
	}
	l->qemu_argc = argc - optind;
	l->qemu_argv = argv + optind;
	if (l->qemu_argc == 0) {
		fprintf(stderr, "uffd-qemu: no QEMU command after '--'\n");
		usage_short(stderr);
		return EXIT_USAGE;
	}
	return 0;
}

static int load_policy(struct launch *l)
{
	char err[512];

	if (!l->policy_path) {
		policy_defaults(&l->policy);
		return 0;
	}
	if (policy_load(l->policy_path, &l->policy, err, sizeof(err))) {
		fprintf(stderr, "uffd-qemu: %s\n", err);
		return EXIT_USAGE;
	}
	if (!realpath(l->policy_path, l->policy_abs)) {
		fprintf(stderr, "uffd-qemu: %s: %s\n", l->policy_path, strerror(errno));
		return EXIT_USAGE;
	}
	return 0;
}

static int find_exec(const char *name, char *out, size_t len);

/* The output of `QEMU -help` (malloc'd, NUL-terminated), or NULL. */
static char *qemu_help(const char *qemu)
{
	char path[PATH_MAX], *text = NULL;
	size_t len = 0, cap = 0;
	int pipefd[2], status;
	pid_t pid;

	if (find_exec(qemu, path, sizeof(path)) || pipe2(pipefd, O_CLOEXEC))
		return NULL;
	pid = fork();
	if (pid == 0) {
		char *argv[] = {path, "-help", NULL};

		dup2(pipefd[1], 1);
		execv(path, argv);
		_exit(127);
	}
	close(pipefd[1]);
	for (ssize_t n = 1; pid > 0 && n > 0 && cap < (1u << 20);) {
		char *more = len + 4096 + 1 > cap ? realloc(text, cap = cap * 2 + 8192) : text;

		if (!more)
			break;
		text = more;
		n = read(pipefd[0], text + len, cap - len - 1);
		len += n > 0 ? (size_t)n : 0;
	}
	close(pipefd[0]);
	if (pid > 0)
		waitpid(pid, &status, 0);
	if (text)
		text[len] = 0;
	return text;
}

static int rewrite_args(struct launch *l)
{
	char err[512];
	int r = qemuargs_parse(&l->qa, l->qemu_argc - 1, l->qemu_argv + 1, err, sizeof(err));

	/* An option QEMU 7.2 did not have: ask the installed QEMU which options it has. */
	if (r && !strncmp(err, "unknown QEMU option", strlen("unknown QEMU option"))) {
		struct qemuargs_known known;
		char *help = qemu_help(l->qemu_argv[0]);

		if (help && !qemuargs_learn(help, &known)) {
			qemuargs_free(&l->qa);
			r = qemuargs_parse_known(&l->qa, &known, l->qemu_argc - 1, l->qemu_argv + 1,
						 err, sizeof(err));
			qemuargs_known_free(&known);
		}
		free(help);
	}
	if (r) {
		fprintf(stderr, "uffd-qemu: %s\n", err);
		return EXIT_USAGE;
	}
	if (!l->policy.balloon_on) /* [balloon] enabled = off: no device to drive */
		l->qa.balloon_added = false;
	return 0;
}

static bool valid_name(const char *s)
{
	size_t n = strlen(s);

	return n >= 1 && n <= NAME_MAX_LEN &&
	       strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") == n;
}

/* The policy file's name without directory and extension ("/etc/vms/web1.conf": "web1"). */
static void policy_base_name(const char *path, char *out, size_t len)
{
	const char *base = strrchr(path, '/');
	char *dot;

	snprintf(out, len, "%s", base ? base + 1 : path);
	dot = strrchr(out, '.');
	if (dot && dot != out)
		*dot = '\0';
}

/* --name, the policy's name, QEMU's -name, the policy file's name, vm<pid>: the first set. */
static int pick_name(struct launch *l)
{
	char buf[PATH_MAX];

	if (l->name_opt) {
		snprintf(buf, sizeof(buf), "%s", l->name_opt);
		l->name_from = "--name";
	} else if (l->policy.name[0]) {
		snprintf(buf, sizeof(buf), "%s", l->policy.name);
		l->name_from = "the policy's [vm] name";
	} else if (l->qa.name) {
		snprintf(buf, sizeof(buf), "%s", l->qa.name);
		l->name_from = "QEMU's -name";
	} else if (l->policy_path) {
		policy_base_name(l->policy_path, buf, sizeof(buf));
		l->name_from = "the policy file's name";
	} else {
		snprintf(buf, sizeof(buf), "vm%d", (int)getpid());
		l->name_from = "the process id";
	}
	if (!valid_name(buf)) {
		fprintf(stderr,
			"uffd-qemu: VM name '%s' (from %s) must be 1 to 63 characters of "
			"A-Z a-z 0-9 . _ - (choose one with --name)\n",
			buf, l->name_from);
		return EXIT_USAGE;
	}
	snprintf(l->name, sizeof(l->name), "%s", buf);
	return 0;
}

/* Makes path absolute against the current directory: QEMU may -chroot or change directory. */
static int absolute(const char *path, char *out, size_t len)
{
	char cwd[PATH_MAX];
	int n;

	if (path[0] == '/')
		n = snprintf(out, len, "%s", path);
	else if (!getcwd(cwd, sizeof(cwd)))
		return -errno;
	else
		n = snprintf(out, len, "%s/%s", cwd, path);
	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

static int pick_socket(struct launch *l)
{
	const char *env = getenv("UFFD_MGR_SOCKET");
	const char *path = l->socket_opt ? l->socket_opt : env && *env ? env : PROTO_DEFAULT_SOCKET;
	char *slash;
	int ret = absolute(path, l->socket, sizeof(l->socket));

	if (ret) {
		fprintf(stderr,
			"uffd-qemu: socket path %s: %s (a unix socket path has at most %zu "
			"bytes)\n",
			path, strerror(-ret), SUN_PATH_MAX - 1);
		return EXIT_USAGE;
	}
	snprintf(l->sockdir, sizeof(l->sockdir), "%s", l->socket);
	slash = strrchr(l->sockdir, '/');
	slash[slash == l->sockdir ? 1 : 0] = '\0';
	snprintf(l->log, sizeof(l->log), "%s/uffd-mgrd-%s.log",
		 strcmp(l->sockdir, "/") ? l->sockdir : "", l->name);
	return 0;
}

static int build_args(struct launch *l)
{
	const char *dir = l->qmp_dir[0] ? l->qmp_dir : strcmp(l->sockdir, "/") ? l->sockdir : "";
	int n = snprintf(l->qmp, sizeof(l->qmp), "%s/%s.qmp", dir, l->name);
	int ret = n < 0 || (size_t)n >= sizeof(l->qmp) ? -ENAMETOOLONG : 0;

	if (!ret)
		ret = qemuargs_build(&l->qa, l->qmp);
	if (ret == -ENAMETOOLONG) {
		fprintf(stderr,
			"uffd-qemu: QMP socket path %s/%s.qmp is too long for a unix socket "
			"(at most %zu bytes); use a shorter --socket directory or --name\n",
			dir, l->name, SUN_PATH_MAX - 1);
		return EXIT_USAGE;
	}
	if (ret) {
		fprintf(stderr, "uffd-qemu: rewriting QEMU's arguments: %s\n", strerror(-ret));
		return EXIT_RUNTIME;
	}
	snprintf(l->qmp, sizeof(l->qmp), "%s", l->qa.qmp_path ? l->qa.qmp_path : "");
	return 0;
}

/* Where the shim and the daemon are, relative to this executable's directory: as installed
 * (make install, the package), then beside it (the build tree). */
static const char *const shim_dirs[] = {"/../lib/uffd-mgr", ""};
static const char *const daemon_dirs[] = {"/../sbin", ""};

/* Writes the first of dirs (relative to selfdir) holding name with the access mode into
 * out[PATH_MAX], resolved (no "..", for LD_PRELOAD and the dry run); returns 0 or the -errno
 * of the last try. */
static int find_beside(const char *selfdir, const char *const *dirs, size_t ndirs, const char *name,
		       int mode, char *out)
{
	char path[PATH_MAX + 64];
	int r = -ENOENT;

	for (size_t i = 0; i < ndirs; i++) {
		snprintf(path, sizeof(path), "%s%s/%s", selfdir, dirs[i], name);
		if (!access(path, mode) && realpath(path, out))
			return 0;
		r = -errno;
	}
	return r;
}

/* Finds the directory of this executable (a link to it resolved) and the shim. */
static int find_shim(struct launch *l)
{
	ssize_t n = readlink("/proc/self/exe", l->selfdir, sizeof(l->selfdir) - 1);
	int r;

	if (n < 0) {
		fprintf(stderr, "uffd-qemu: cannot read /proc/self/exe: %s\n", strerror(errno));
		return EXIT_RUNTIME;
	}
	l->selfdir[n] = '\0';
	*strrchr(l->selfdir, '/') = '\0';
	r = find_beside(l->selfdir, shim_dirs, 2, SHIM_NAME, R_OK, l->shim);
	if (r) {
		fprintf(stderr,
			"uffd-qemu: the shim %s is missing from %s/../lib/uffd-mgr and %s (%s); "
			"it is installed with uffd-qemu\n",
			SHIM_NAME, l->selfdir, l->selfdir, strerror(-r));
		return EXIT_RUNTIME;
	}
	return 0;
}

/* --daemon, else the installed uffd-mgrd (../sbin) or the one next to uffd-qemu, else
 * uffd-mgrd for execvp to find on PATH. */
static void pick_daemon(struct launch *l)
{
	if (l->daemon_opt) {
		snprintf(l->daemon, sizeof(l->daemon), "%s", l->daemon_opt);
		return;
	}
	if (find_beside(l->selfdir, daemon_dirs, 2, DAEMON_NAME, X_OK, l->daemon))
		snprintf(l->daemon, sizeof(l->daemon), "%s", DAEMON_NAME);
}

static int make_preload(struct launch *l)
{
	const char *old = getenv("LD_PRELOAD");

	if (asprintf(&l->ld_preload, "%s%s%s", l->shim, old && *old ? ":" : "", old ? old : "") <
	    0) {
		l->ld_preload = NULL;
		fprintf(stderr, "uffd-qemu: out of memory\n");
		return EXIT_RUNTIME;
	}
	return 0;
}

/* ---- --dry-run ---- */

/* Writes s as one shell word: bare when that is safe, else in single quotes. */
static void put_quoted(FILE *out, const char *s)
{
	static const char safe[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
				   "0123456789_@%+=:,./-";

	if (*s && strspn(s, safe) == strlen(s)) {
		fputs(s, out);
		return;
	}
	fputc('\'', out);
	for (; *s; s++) {
		if (*s == '\'')
			fputs("'\\''", out);
		else
			fputc(*s, out);
	}
	fputc('\'', out);
}

static void put_env(FILE *out, const char *key, const char *val)
{
	fprintf(out, "%s=", key);
	put_quoted(out, val);
	fputs(" \\\n", out);
}

/* Lists what qemuargs added, for the dry run's header. */
static void describe_added(const struct qemuargs *qa, char *buf, size_t len)
{
	const char *parts[] = {qa->ram_added ? "memfd RAM backend (share=on)" : NULL,
			       qa->qmp_added ? "QMP socket" : NULL,
			       qa->balloon_added ? "virtio-balloon" : NULL};
	size_t used = 0;

	snprintf(buf, len, "nothing");
	for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++) {
		if (parts[i])
			used +=
			    snprintf(buf + used, len - used, "%s%s", used ? ", " : "", parts[i]);
	}
}

static void print_dry_run(const struct launch *l, FILE *out)
{
	char added[128];

	describe_added(&l->qa, added, sizeof(added));
	fprintf(out, "# uffd-qemu --dry-run: VM %s (name from %s), guest RAM %llu MiB\n", l->name,
		l->name_from, (unsigned long long)(l->qa.ram_bytes >> 20));
	fprintf(out, "# added: %s\n", added);
	if (l->no_start)
		fprintf(out, "# daemon: not contacted; fails if none answers at %s (--no-start)\n",
			l->socket);
	else
		fprintf(out,
			"# daemon: not contacted; if none answers at %s, starts\n#   %s "
			"--socket %s --embedded >>%s\n",
			l->socket, l->daemon, l->socket, l->log);
	put_env(out, "LD_PRELOAD", l->ld_preload);
	put_env(out, "UFFD_MGR_SOCKET", l->socket);
	put_env(out, "UFFD_MGR_VM", l->name);
	put_env(out, "UFFD_MGR_POLICY", l->policy_abs);
	put_env(out, "UFFD_MGR_QMP", l->qmp);
	if (l->qa.backends)
		put_env(out, "UFFD_MGR_BACKENDS", l->qa.backends);
	put_quoted(out, l->qemu_argv[0]);
	for (int i = 0; i < l->qa.argc; i++) {
		fputc(' ', out);
		put_quoted(out, l->qa.argv[i]);
	}
	fputc('\n', out);
}

/* ---- The QEMU executable ---- */

/* Finds name as execvp would. Returns 0 with the path in out, or -ENOENT / -EACCES. */
static int find_exec(const char *name, char *out, size_t len)
{
	const char *path = getenv("PATH");
	struct stat st;
	int err = -ENOENT;

	if (strchr(name, '/')) {
		snprintf(out, len, "%s", name);
		return access(out, X_OK) ? -errno : 0;
	}
	if (!path)
		path = "/usr/local/bin:/usr/bin:/bin";
	for (const char *p = path;; p++) {
		size_t n = strcspn(p, ":");

		snprintf(out, len, "%.*s/%s", n ? (int)n : 1, n ? p : ".", name);
		if (!stat(out, &st) && S_ISREG(st.st_mode)) {
			if (!access(out, X_OK))
				return 0;
			err = -EACCES;
		}
		p += n;
		if (!*p)
			return err;
	}
}

static int find_qemu(struct launch *l)
{
	int ret = find_exec(l->qemu_argv[0], l->qemu_path, sizeof(l->qemu_path));

	if (!ret)
		return 0;
	fprintf(stderr, "uffd-qemu: cannot run '%s': %s\n", l->qemu_argv[0], strerror(-ret));
	return ret == -ENOENT ? EXIT_NOT_FOUND : EXIT_CANNOT_EXEC;
}

/* ---- The daemon ---- */

/* Creates dir and its missing parents, mode 0755. Returns 0 or -errno. */
static int mkdir_p(const char *dir)
{
	char buf[PATH_MAX];

	snprintf(buf, sizeof(buf), "%s", dir);
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(buf, 0755) && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(buf, 0755) && errno != EEXIST)
		return -errno;
	return 0;
}

/* Returns 1 if a daemon answers at the socket, 0 if nothing listens there, or -errno. */
static int daemon_answers(const struct launch *l)
{
	int fd = proto_connect(l->socket);

	if (fd >= 0) {
		close(fd);
		return 1;
	}
	return fd == -ENOENT || fd == -ECONNREFUSED ? 0 : fd;
}

static void __attribute__((noreturn)) daemon_child(const struct launch *l, int logfd)
{
	char *argv[] = {(char *)l->daemon, "--socket", (char *)l->socket, "--embedded", NULL};
	int nullfd = open("/dev/null", O_RDONLY | O_CLOEXEC);

	setsid();
	if (nullfd < 0 || dup2(nullfd, 0) < 0 || dup2(logfd, 1) < 0 || dup2(logfd, 2) < 0)
		_exit(EXIT_NOT_FOUND);
	execvp(argv[0], argv);
	fprintf(stderr, "uffd-qemu: cannot run '%s': %s\n", argv[0], strerror(errno));
	_exit(EXIT_NOT_FOUND);
}

static int spawn_daemon(const struct launch *l, pid_t *pid)
{
	int logfd = open(l->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	time_t now = time(NULL);

	if (logfd < 0) {
		fprintf(stderr, "uffd-qemu: cannot open the daemon log %s: %s\n", l->log,
			strerror(errno));
		return EXIT_RUNTIME;
	}
	dprintf(logfd, "uffd-qemu: starting %s --socket %s --embedded for VM %s at %s", l->daemon,
		l->socket, l->name, ctime(&now));
	*pid = fork();
	if (*pid == 0)
		daemon_child(l, logfd);
	close(logfd);
	if (*pid < 0) {
		fprintf(stderr, "uffd-qemu: fork: %s\n", strerror(errno));
		return EXIT_RUNTIME;
	}
	return 0;
}

/* Stops a daemon we started that never answered: SIGTERM, a second's grace, SIGKILL; and
 * reaps it, so that no zombie is left behind. */
static void stop_child(pid_t pid)
{
	const struct timespec tick = {0, DAEMON_POLL_MS * 1000000L};

	kill(pid, SIGTERM);
	for (int waited = 0; waited < 1000; waited += DAEMON_POLL_MS) {
		if (waitpid(pid, NULL, WNOHANG) == pid)
			return;
		nanosleep(&tick, NULL);
	}
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
}

/* Polls the socket until the daemon we started answers, exits, or the time is up. */
static int wait_daemon(const struct launch *l, pid_t pid)
{
	const struct timespec tick = {0, DAEMON_POLL_MS * 1000000L};
	int status;

	for (int waited = 0; waited <= DAEMON_WAIT_MS; waited += DAEMON_POLL_MS) {
		if (daemon_answers(l) == 1)
			return 0;
		if (waitpid(pid, &status, WNOHANG) == pid) {
			fprintf(stderr,
				"uffd-qemu: daemon did not start (it exited with status %d); "
				"see %s\n",
				WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status),
				l->log);
			return EXIT_RUNTIME;
		}
		nanosleep(&tick, NULL);
	}
	stop_child(pid);
	fprintf(stderr, "uffd-qemu: daemon did not start; see %s\n", l->log);
	return EXIT_RUNTIME;
}

static int start_daemon(const struct launch *l)
{
	pid_t pid;
	int ret = spawn_daemon(l, &pid);

	if (!ret)
		ret = wait_daemon(l, pid);
	if (!ret)
		fprintf(stderr, "uffd-qemu: started uffd-mgrd (pid %d) for VM %s, log %s\n",
			(int)pid, l->name, l->log);
	return ret;
}

/* Makes sure a daemon answers. The socket directory stays locked meanwhile, so that two
 * uffd-qemu started together do not both start a daemon on the same socket. */
static int ensure_daemon(const struct launch *l)
{
	int dirfd = open(l->sockdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int up, ret = 0;

	if (dirfd >= 0)
		flock(dirfd, LOCK_EX);
	up = daemon_answers(l);
	if (up < 0) {
		fprintf(stderr, "uffd-qemu: cannot connect to %s: %s\n", l->socket, strerror(-up));
		ret = EXIT_RUNTIME;
	} else if (!up && l->no_start) {
		fprintf(stderr,
			"uffd-qemu: no uffd-mgrd answers at %s (start one with 'uffd-mgrd --socket "
			"%s', or drop --no-start)\n",
			l->socket, l->socket);
		ret = EXIT_RUNTIME;
	} else if (!up) {
		ret = start_daemon(l);
	}
	if (dirfd >= 0)
		close(dirfd);
	return ret;
}

static int prepare_socket_dir(const struct launch *l)
{
	int ret = mkdir_p(l->sockdir);

	if (ret)
		fprintf(stderr, "uffd-qemu: cannot create %s: %s\n", l->sockdir, strerror(-ret));
	return ret ? EXIT_RUNTIME : 0;
}

/* ---- Exec ---- */

static int exec_qemu(const struct launch *l)
{
	char **argv = calloc((size_t)l->qa.argc + 2, sizeof(*argv));

	if (!argv || setenv("LD_PRELOAD", l->ld_preload, 1) ||
	    setenv("UFFD_MGR_SOCKET", l->socket, 1) || setenv("UFFD_MGR_VM", l->name, 1) ||
	    setenv("UFFD_MGR_POLICY", l->policy_abs, 1) || setenv("UFFD_MGR_QMP", l->qmp, 1)) {
		fprintf(stderr, "uffd-qemu: out of memory\n");
		free(argv);
		return EXIT_RUNTIME;
	}
	/* The shim starts a daemon again if this one dies and none comes back (embedded). */
	if (!l->no_start && (setenv("UFFD_MGR_DAEMON", l->daemon, 1) ||
			     setenv("UFFD_MGR_DAEMON_LOG", l->log, 1))) {
		fprintf(stderr, "uffd-qemu: out of memory\n");
		free(argv);
		return EXIT_RUNTIME;
	}
	if (l->qa.backends && setenv("UFFD_MGR_BACKENDS", l->qa.backends, 1)) {
		fprintf(stderr, "uffd-qemu: out of memory\n");
		free(argv);
		return EXIT_RUNTIME;
	}
	argv[0] = l->qemu_argv[0];
	memcpy(argv + 1, l->qa.argv, (size_t)l->qa.argc * sizeof(*argv));
	execv(l->qemu_path, argv);
	fprintf(stderr, "uffd-qemu: cannot run '%s': %s\n", l->qemu_argv[0], strerror(errno));
	free(argv);
	return errno == ENOENT ? EXIT_NOT_FOUND : EXIT_CANNOT_EXEC;
}

/* ---- As libvirt's emulator ----
 *
 * Installed as a link uffd-qemu-system-ARCH -> uffd-qemu, named in a domain's <emulator>:
 * every argument is QEMU's, the QEMU run is qemu-system-ARCH on PATH, the daemon is the
 * system's (libvirt's QEMU is unprivileged and sandboxed: it cannot start one), the policy is
 * the operator's /etc/uffd-mgr/vms/NAME.conf by the domain's name, and the QMP socket goes
 * into libvirt's own directory for the domain, the one QEMU may write. */

#define EMULATOR_PREFIX "uffd-qemu-system-"
#define EMULATOR_POLICY_DIR "/etc/uffd-mgr/vms"

/* libvirt's capability probes (-machine none, -daemonize) and QEMU's help and version
 * queries run no guest: they go to QEMU as they are, with no daemon and no shim. */
static bool is_probe(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		const char *w = argv[i], *next = i + 1 < argc ? argv[i + 1] : "";

		if (w[0] == '-' && w[1] == '-')
			w++;
		if (!strcmp(w, "-daemonize") || !strcmp(w, "-version") || !strcmp(w, "-help") ||
		    !strcmp(w, "-h"))
			return true;
		if ((!strcmp(w, "-machine") || !strcmp(w, "-M")) &&
		    (!strncmp(next, "none", 4) || strstr(next, "type=none")) &&
		    (next[4] == 0 || next[4] == ',' || strstr(next, "type=none")))
			return true;
		if (w[0] == '-' && (!strcmp(next, "help") || !strcmp(next, "?")))
			return true;
	}
	return false;
}

/* Runs QEMU as it was asked, unmanaged. Returns only on failure, with an exit status. */
static int exec_probe(char **argv)
{
	char path[PATH_MAX];
	int r = find_exec(argv[0], path, sizeof(path));

	fflush(NULL);
	if (!r)
		execv(path, argv);
	fprintf(stderr, "uffd-qemu: cannot run '%s': %s\n", argv[0], strerror(r ? -r : errno));
	return r == -ENOENT ? EXIT_NOT_FOUND : EXIT_CANNOT_EXEC;
}

/* The domain's name from -name (guest=NAME,... or NAME,...), or "" */
static void emulator_name(int argc, char **argv, char *out, size_t len)
{
	out[0] = 0;
	for (int i = 1; i + 1 < argc; i++) {
		const char *v = argv[i + 1];

		if (strcmp(argv[i], "-name"))
			continue;
		if (!strncmp(v, "guest=", 6))
			v += 6;
		snprintf(out, len, "%.*s", (int)strcspn(v, ","), v);
	}
}

/* libvirt's directory for the domain (/var/lib/libvirt/qemu/domain-N-NAME), which its QEMU
 * may write: the directory of the master key secret libvirt passes every QEMU. */
static void emulator_qmp_dir(int argc, char **argv, char *out, size_t len)
{
	for (int i = 1; i + 1 < argc; i++) {
		const char *file = strstr(argv[i + 1], "master-key.aes");
		const char *start = strstr(argv[i + 1], "\"file\":\"");

		if (strcmp(argv[i], "-object") || !file)
			continue;
		start = start ? start + strlen("\"file\":\"") : strstr(argv[i + 1], "file=");
		if (start && start[0] == 'f')
			start += strlen("file=");
		if (start && file > start + 1 && file[-1] == '/')
			snprintf(out, len, "%.*s", (int)(file - 1 - start), start);
	}
}

/* Turns a call as uffd-qemu-system-ARCH into uffd-qemu's launch of qemu-system-ARCH.
 * Returns 1 when it is not such a call, 0 when set up, or an exit status. */
static int emulator_setup(struct launch *l, int argc, char **argv)
{
	const char *base = strrchr(argv[0], '/') ? strrchr(argv[0], '/') + 1 : argv[0];
	static char qemu[64];
	char name[NAME_MAX_LEN + 2];

	if (strncmp(base, EMULATOR_PREFIX, strlen(EMULATOR_PREFIX)))
		return 1;
	snprintf(qemu, sizeof(qemu), "qemu-system-%s", base + strlen(EMULATOR_PREFIX));
	argv[0] = qemu;
	if (is_probe(argc, argv))
		return exec_probe(argv);
	l->emulator = true;
	l->no_start = true;
	l->qemu_argc = argc;
	l->qemu_argv = argv;
	emulator_name(argc, argv, name, sizeof(name));
	snprintf(l->policy_found, sizeof(l->policy_found), "%s/%s.conf", EMULATOR_POLICY_DIR,
		 name);
	if (name[0] && !strchr(name, '/') && access(l->policy_found, R_OK) == 0)
		l->policy_path = l->policy_found;
	emulator_qmp_dir(argc, argv, l->qmp_dir, sizeof(l->qmp_dir));
	return 0;
}

int main(int argc, char **argv)
{
	struct launch l = {0};
	int ret = emulator_setup(&l, argc, argv);

	if (ret == 1) {
		ret = parse_cli(&l, argc, argv);
		if (!ret && !l.dry_run && is_probe(l.qemu_argc, l.qemu_argv))
			ret = exec_probe(l.qemu_argv);
	}
	if (ret)
		goto out;
	if ((ret = load_policy(&l)) || (ret = rewrite_args(&l)) || (ret = pick_name(&l)) ||
	    (ret = pick_socket(&l)) || (ret = build_args(&l)) || (ret = find_shim(&l)) ||
	    (ret = make_preload(&l)))
		goto out;
	pick_daemon(&l);
	if (l.dry_run) {
		print_dry_run(&l, stdout);
		goto out;
	}
	if ((ret = find_qemu(&l)) || (ret = prepare_socket_dir(&l)) || (ret = ensure_daemon(&l)))
		goto out;
	fflush(NULL);
	ret = exec_qemu(&l);
out:
	qemuargs_free(&l.qa);
	free(l.ld_preload);
	return ret < 0 ? 0 : ret;
}
