/* gpamap: where a guest-RAM backend lies in the guest-physical address space, learned from
 * QEMU, so that the eBPF tracker can map a KVM fault (kvm:kvm_page_fault reports a GPA) to a
 * page of the region the daemon manages.
 *
 * QEMU 7.2 (Debian 12) has no QMP command that returns guest-physical ranges as data: the
 * memory map is only printed, by the HMP command "info mtree -f" (run over QMP through
 * human-monitor-command). Its flat view of the address space "memory" lists each range the
 * guest sees, leaf regions only, one per line:
 *
 *   FlatView #0
 *    AS "memory", root: system
 *    Root memory region: system
 *     0000000000000000-000000000009ffff (prio 0, ram): uffd-ram KVM
 *     0000000000100000-000000007fffffff (prio 0, ram): uffd-ram @0000000000100000 KVM
 *     0000000100000000-000000017fffffff (prio 0, ram): uffd-ram @0000000080000000 KVM
 *
 * start-end (end inclusive), then the region's name (a memory backend's region is named after
 * the backend's id) and, when the range does not start at the region's start, "@offset" into
 * the region: which is the offset into the backend's memfd mapping, the daemon's region. So on
 * pc and q35 the RAM below 4 GiB (up to the PCI hole) and above 4 GiB both appear, whatever
 * the machine's split, and a guest with several backends (NUMA nodes) lists each under its
 * own id. Which backend is the managed one comes from QMP's query-memdev ("id", "size"): the
 * backend whose size is the registered region's length.
 *
 * Functions return 0 or a negative errno; err gets one line saying what was wrong. */
#ifndef UFFD_GPAMAP_H
#define UFFD_GPAMAP_H

#include <stddef.h>
#include <stdint.h>

struct json_object;

/* Guest-physical [gpa, gpa + len) is the backend's bytes [offset, offset + len). */
struct gpamap_range {
	uint64_t gpa, len, offset;
};

/* Reads the ranges of the backend named name from the text of "info mtree -f" (the flat view
 * of address space "memory" only), keeping those inside [0, region_len). Ranges whose GPA and
 * offset advance together are joined across gaps of up to 1 MiB (the legacy VGA and BIOS
 * window below 1 MiB shadows RAM that is the backend's own), so pc and q35 give two ranges.
 * Writes at most max to out, sorted by GPA, and sets *n. Returns 0, -ENOENT (no range of that
 * name in the flat view of "memory"), -E2BIG (more than max ranges), -EINVAL (bad arguments or
 * a malformed line in that flat view). */
int gpamap_parse_mtree(const char *mtree, const char *name, uint64_t region_len,
		       struct gpamap_range *out, unsigned max, unsigned *n, char *err,
		       size_t errlen);

/* The backend offset that guest-physical address gpa falls on, through n ranges (as the BPF
 * program on kvm:kvm_page_fault maps it, ebpf/tracker.bpf.c). Returns 0 with *offset set, or
 * -ENOENT when gpa is in none of them. */
int gpamap_to_offset(const struct gpamap_range *r, unsigned n, uint64_t gpa, uint64_t *offset);

/* The id of the backend of size region_len in the reply to query-memdev (an array of
 * objects with "id" and "size"), copied to id (idlen bytes). Returns 0, -ENOENT (none of that
 * size, or only backends without an id), -EEXIST (more than one of that size: ambiguous),
 * -EINVAL (not an array). */
int gpamap_pick_backend(struct json_object *memdevs, uint64_t region_len, char *id,
			size_t idlen, char *err, size_t errlen);

#endif
