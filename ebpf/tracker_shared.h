/* tracker_shared: the map layout that tracker.bpf.c (kernel side) and tracker.c (loader)
 * share. Not part of the user-space interface: that is tracker.h.
 *
 * Include after the __u32/__u64 types are defined (vmlinux.h in BPF, <linux/types.h> in
 * user space). */
#ifndef UFFD_TRACKER_SHARED_H
#define UFFD_TRACKER_SHARED_H

#define TRACKER_PAGE_SHIFT 12
/* Bitmap words shared by all tracked VMs: 256 Ki words = 2 MiB = 16 Mi pages = 64 GiB of
 * guest RAM. A multiple of the page size, as a BPF_F_MMAPABLE array must be. */
#define TRACKER_WORDS	(256u * 1024u)
#define TRACKER_MAX_VMS 256u /* entries in the tgid -> VM hash */
#define TRACKER_MAX_GPA 4u   /* guest-physical ranges per unit */
#define TRACKER_MAX_UNITS 4u /* guest-RAM mappings per process */

/* Guest-physical [gpa, gpa + len) is region bytes [offset, offset + len). */
struct tracker_gpa {
	__u64 gpa, len, offset;
};

/* One guest-RAM mapping of a tracked process (a NUMA guest has one per node). A fault by the
 * process at host virtual address a in [start, start + npages pages) sets bit
 * (a - start) / 4096 of the bitmap that begins at word `word` of the shared array; so does a
 * KVM fault at a guest-physical address inside one of the first nranges ranges. npages 0: the
 * unit is free. The loader guarantees word + npages / 64 fits in TRACKER_WORDS; the BPF side
 * checks again because the verifier cannot know it. */
struct tracker_unit {
	__u64 start;
	__u64 npages;
	__u64 word;
	__u32 nranges;
	__u32 pad;
	struct tracker_gpa gpa[TRACKER_MAX_GPA];
};

/* The value of the tgid-keyed hash: the process's units. */
struct tracker_vm {
	struct tracker_unit unit[TRACKER_MAX_UNITS];
};

#endif
