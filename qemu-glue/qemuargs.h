/* qemuargs: checks and rewrites a QEMU 7.2 (x86_64) command line for uffd-mgr.
 *
 * Guest RAM must be one shared memfd that the daemon can map, QEMU needs a QMP socket the
 * daemon can reach, and a balloon device for the balloon driver. qemuargs_parse() reads the
 * arguments (after the QEMU binary name), refuses what uffd-mgr cannot manage and learns the
 * RAM size, the VM name and any QMP socket; qemuargs_build() then produces the argument list
 * to exec: the user's words unchanged, followed by what had to be added:
 *
 *   -object memory-backend-memfd,id=uffd-ram,size=SIZE,share=on
 *   -machine memory-backend=uffd-ram        (QEMU merges repeated -machine options)
 *   -qmp unix:PATH,server=on,wait=off       (when no usable QMP unix socket is given)
 *   -device virtio-balloon-pci,id=uffd-balloon   (when there is no virtio-balloon)
 * except that a -object memory-backend-ram (libvirt's default guest RAM) is rewritten in
 * place into a shared memory-backend-memfd of the same id and properties.
 *
 * Two steps because the QMP path depends on the VM name, which the caller may take from the
 * parsed -name. */
#ifndef UFFD_QEMUARGS_H
#define UFFD_QEMUARGS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define QEMUARGS_RAM_ID	    "uffd-ram"
#define QEMUARGS_BALLOON_ID "uffd-balloon"

struct qemuargs {
	/* Filled by qemuargs_parse(). */
	uint64_t ram_bytes; /* guest RAM, as QEMU will size it (rounded up to 8 KiB) */
	char *name;	    /* -name guest=NAME, or NULL */
	char *qmp_path;	    /* the user's QMP unix server socket, or NULL (then built) */
	bool ram_added;	    /* the memfd backend is added (the user had none) */
	bool balloon_added; /* a virtio-balloon device is added */
	char *balloon_id;   /* the user's virtio-balloon's id (libvirt's balloon0), or NULL */
	bool ram_converted; /* a memory-backend-ram became a shared memfd backend */
	char *backends;	    /* a NUMA guest's RAM backends, "id:bytes,..." in the order QEMU
			     * creates them (for the shim: UFFD_MGR_BACKENDS); NULL: one */
	/* Filled by qemuargs_build(). */
	bool qmp_added; /* -qmp was added; qmp_path is then the path given to build */
	int argc;	/* words in argv, without the final NULL */
	char **argv;	/* the arguments to pass after the QEMU binary name, NULL-terminated */
	/* Private. */
	struct qemuargs_rewrite {
		int word;   /* index in the user's arguments */
		char *text; /* what replaces it */
	} *rewrites;
	int nrewrites;
	int in_argc;
	char *const *in_argv;
};

/* Checks argv[0..argc-1], QEMU's arguments after the binary name, and fills *qa (which must
 * stay paired with qemuargs_free() whatever the result). argv must live until
 * qemuargs_build(), which copies it. Returns 0; -EINVAL for a command line that is malformed
 * or cannot be supported, with one line in err naming the option and the reason; -ENOMEM. */
int qemuargs_parse(struct qemuargs *qa, int argc, char *const argv[], char *err, size_t errlen);

/* The options an installed QEMU lists in its -help: the names uffd-qemu does not know
 * itself are passed through as they are (QEMU version independence). */
struct qemuargs_known {
	struct qemuargs_known_opt {
		char name[32]; /* without the dash */
		bool arg;      /* takes an argument */
	} *opt;
	int n;
};

/* Learns them from the text of `qemu-system-ARCH -help`. Returns 0, -ENOENT when the text
 * lists no option, or -ENOMEM. Free with qemuargs_known_free(). */
int qemuargs_learn(const char *help, struct qemuargs_known *k);
void qemuargs_known_free(struct qemuargs_known *k);

/* qemuargs_parse, where an option not of QEMU 7.2 is accepted when known lists it. */
int qemuargs_parse_known(struct qemuargs *qa, const struct qemuargs_known *known, int argc,
			 char *const argv[], char *err, size_t errlen);

/* Builds qa->argv from a parsed *qa. qmp_path is the unix socket for the -qmp to add when
 * the user gave no usable one (NULL: add none). Returns 0, -ENAMETOOLONG if qmp_path does
 * not fit a unix socket address, -EINVAL if already built, or -ENOMEM. */
int qemuargs_build(struct qemuargs *qa, const char *qmp_path);

/* Releases everything *qa holds and zeroes it. Accepts a zeroed or NULL qa. */
void qemuargs_free(struct qemuargs *qa);

/* Parses a size the way QEMU does ("512", "64K", "1.5G", "0x1000"; bytes unless suffixed;
 * suffixes B K M G T P E, any case). def_unit multiplies a suffix-less number (1 for bytes,
 * 1 << 20 for -m's megabytes). Returns 0, or -EINVAL / -ERANGE. */
int qemuargs_parse_size(const char *text, uint64_t def_unit, uint64_t *bytes);

#endif
