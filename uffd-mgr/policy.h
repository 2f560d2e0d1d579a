/* policy: one VM's policy file (INI), parsed from a single table of typed keys.
 *
 * The table is the only place a key is defined: the parser, `--help` text and the example
 * policy in examples/ all come from it. */
#ifndef UFFD_POLICY_H
#define UFFD_POLICY_H

#include <stdint.h>
#include <stdio.h>
#include <stddef.h>

#define POLICY_NAME_MAX 64
#define POLICY_PATH_MAX 1024

struct policy {
	char name[POLICY_NAME_MAX]; /* [vm] name; "" = derive from the file name */
	char owner[POLICY_NAME_MAX]; /* [vm] owner: user name or uid; "" = any (authz.h) */
	uint64_t resident_max;      /* [memory] resident_max, bytes; 0 = no limit */
	uint64_t run_size;          /* [memory] run_size, bytes; power of two, 4K..2M */
	uint64_t shm_max;           /* [shm] max, bytes of the shm tier for this VM */
	uint32_t shm_high_pct;      /* [shm] high_watermark, % of max: demotion to disk starts */
	uint32_t shm_low_pct;       /* [shm] low_watermark, % of max: demotion stops */
	int shm_compress;           /* [shm] compress: POLICY_COMPRESS_* */
	char disk_path[POLICY_PATH_MAX]; /* [disk] path; "" = no disk tier; %n = the VM name */
	uint64_t disk_max;          /* [disk] max, bytes of the disk tier */
	uint32_t disk_read_retry_ms; /* [disk] read_retry_max: a failing read fails the VM; 0 = never */
	int fault_cpu;              /* [fault] cpu, CPU for the fault thread; -1 = any,
				     * POLICY_CPU_FOLLOW = the faulting thread's */
	uint32_t busy_poll_us;      /* [fault] busy_poll, µs to spin before sleeping; 0 = off */
	uint64_t first_touch;       /* [fault] first_touch, bytes filled per first touch */
	uint64_t readahead_max;     /* [fault] readahead, bytes; 0 = off */
	uint32_t stall_warn_ms;     /* [fault] stall_warn: report a fault waiting longer; 0 = off */
	int track_mode;             /* [tracker] mode: POLICY_TRACK_* */
	uint32_t track_interval_ms; /* [tracker] interval */
	uint32_t track_sample_pages; /* [tracker] sample_pages; 0 = regions (ebpf), 4096 (sample) */
	uint32_t track_regions;	     /* [tracker] regions; 0 = every resident page (ebpf) */
	uint32_t weight;            /* [memory] weight, in the host budget */
	uint64_t critical_min;      /* [memory] critical_min, bytes */
	int balloon_on;             /* [balloon] enabled: 0 off, 1 on */
	uint64_t balloon_min;       /* [balloon] min, bytes */
	uint64_t balloon_max;       /* [balloon] max, bytes; 0 = guest RAM */
	uint32_t balloon_headroom_pct; /* [balloon] headroom, % of the share */
	int prefetch_on;            /* [prefetch] proactive: 0 off, 1 on */
	uint64_t prefetch_batch;    /* [prefetch] batch, bytes */
};

/* [shm] compress values, in the order the key's choices list them (and zpool.h's algs). */
enum { POLICY_COMPRESS_OFF, POLICY_COMPRESS_LZ4, POLICY_COMPRESS_ZSTD };

#define POLICY_CPU_FOLLOW (-2) /* [fault] cpu = follow */

/* [tracker] mode values, in the order the key's choices list them. */
enum { POLICY_TRACK_EBPF, POLICY_TRACK_SAMPLE, POLICY_TRACK_OFF };

/* Fills *p with the defaults of every key. Cannot fail. */
void policy_defaults(struct policy *p);

/* Parses the policy file at path into *p (starting from the defaults). Returns 0, or a
 * negative errno; on -EINVAL (bad content) err holds one line "path:line: what is wrong",
 * on another error (file unreadable) "path: strerror". */
int policy_load(const char *path, struct policy *p, char *err, size_t errlen);

/* As policy_load, from an open file (left open), parsed over base (NULL: the defaults), so
 * that keys the file does not set keep base's values; label names the file in errors. */
int policy_load_fd(int fd, const char *label, const struct policy *base, struct policy *p,
		   char *err, size_t errlen);

/* Keeps a VM from raising what the operator allows it: p (a policy the VM named, parsed over
 * trusted, the operator's) gets back trusted's value of every key a VM may not choose and of
 * every limit it raised (resident_max, weight, critical_min, shm and disk max, busy_poll,
 * balloon min and max, prefetch; the tracker interval only up). what gets the keys put back,
 * "[memory] weight, ..."; may be NULL. Returns how many. Cannot fail. */
int policy_clamp(const struct policy *trusted, struct policy *p, char *what, size_t len);

/* As policy_load, from text in memory; label stands for the file name in errors. */
int policy_parse_string(const char *text, const char *label, struct policy *p, char *err,
			size_t errlen);

/* Parses a size such as "4096", "64K", "512M", "2G", "1T" (also "64KiB", "64k"), in bytes.
 * Returns 0, or -EINVAL if the text is not a size, -ERANGE if it overflows. */
int policy_parse_size(const char *text, uint64_t *bytes);

/* Expands [disk] path for a VM: %n becomes vm_name, %% a percent sign. Returns 0, or
 * -ENAMETOOLONG when the result does not fit in len bytes. */
int policy_disk_path(const struct policy *p, const char *vm_name, char *out, size_t len);

/* Writes the key reference (section, key, type, default, bounds, help) for `--help`. */
void policy_print_keys(FILE *out);

/* Writes a complete commented example policy with every key at its default. */
void policy_print_example(FILE *out);

#endif
