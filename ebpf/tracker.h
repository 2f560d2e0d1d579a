/* tracker: the eBPF working-set tracker. BPF programs on the page-fault tracepoints set one
 * bit per 4 KiB page of a VM's guest-RAM region when that VM's QEMU faults on it; user space
 * reads and clears the bits each interval. A page is seen only when it faults: to observe a
 * page again, drop its page-table entries (MADV_DONTNEED on QEMU's shared mapping) first.
 *
 * Sources: exceptions:page_fault_user (QEMU's threads in user mode: TCG, device emulation),
 * exceptions:page_fault_kernel (the kernel faulting on a user address for QEMU, as in a read()
 * into guest RAM) and kvm:kvm_page_fault (vCPUs under KVM with EPT/NPT, by guest-physical
 * address). Accesses through get_user_pages (KVM's own mapping of guest RAM, O_DIRECT, vhost)
 * raise no fault and are not seen.
 *
 * Functions return 0 or a negative errno. Thread-safe. */
#ifndef UFFD_TRACKER_H
#define UFFD_TRACKER_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct tracker;

/* Guest-physical [gpa, gpa + len) is the region's bytes [offset, offset + len). */
struct tracker_gpa_range {
	uint64_t gpa, len, offset;
};

#define TRACKER_MAX_RANGES 4

/* What an open tracker sees, for tracker_sources(). */
#define TRACKER_SRC_USER   1u /* exceptions:page_fault_user */
#define TRACKER_SRC_KERNEL 2u /* exceptions:page_fault_kernel */
#define TRACKER_SRC_KVM	   4u /* kvm:kvm_page_fault */

/* Loads and attaches the BPF programs: page_fault_user always, page_fault_kernel and
 * kvm_page_fault when the kernel has them (kvm's when its module is loaded at this moment).
 * One per daemon: it installs a libbpf print callback while it runs. Needs CAP_BPF and
 * CAP_PERFMON (or CAP_SYS_ADMIN). On failure err names the missing piece in one line: no BTF
 * at /sys/kernel/btf/vmlinux (-ENOENT), not permitted (-EPERM), a program the verifier refused
 * (its last log line), a required tracepoint missing (-ENOENT). */
int tracker_open(struct tracker **out, char *err, size_t errlen);

/* Detaches and unloads. NULL is fine. */
void tracker_close(struct tracker *t);

/* TRACKER_SRC_* flags of the attached programs, for the daemon's start-up line. */
unsigned tracker_sources(const struct tracker *t);

/* Starts tracking faults by process tgid (as this process's pid namespace numbers it) inside
 * [start, start + npages * 4096): a bitmap of npages bits, zero at first. A process may have
 * up to TRACKER_MAX_UNITS (4) such regions, each its own slot: a NUMA guest maps one per node.
 * KVM faults are mapped through the nranges (at most TRACKER_MAX_RANGES, may be 0)
 * guest-physical ranges, each inside the region. Bitmap space is shared by all slots (TRACKER_WORDS in tracker_shared.h: 64 GiB of
 * guest RAM in all). Sets *slot. Returns -EINVAL (unaligned start, npages 0, a range outside
 * the region), -EEXIST (tgid already tracks a region overlapping this one), -ENOSPC (no
 * bitmap space or slot left, or the tgid has TRACKER_MAX_UNITS regions). */
int tracker_add(struct tracker *t, pid_t tgid, uint64_t start, uint64_t npages,
		const struct tracker_gpa_range *ranges, unsigned nranges, int *slot);

/* Replaces the slot's guest-physical ranges (as tracker_add takes them), for KVM faults, once
 * they are known. A BPF program running meanwhile uses the old ranges or the new ones.
 * Returns -EINVAL (a range outside the region, too many), -ENOENT (no slot). */
int tracker_set_ranges(struct tracker *t, int slot, const struct tracker_gpa_range *ranges,
		       unsigned nranges);

/* Stops tracking the slot and frees its bitmap space. When it returns, no BPF program still
 * running can set a bit in that space (it waits for an RCU grace period). -ENOENT: no slot. */
int tracker_remove(struct tracker *t, int slot);

/* Copies the slot's bitmap into bits (nwords 64-bit words; bit i of word w is page w * 64 + i;
 * words past the region are zeroed) and clears it, word by word with an atomic exchange so a
 * bit set concurrently is never lost: it is in this copy or stays for the next one.
 * -EINVAL: nwords < (npages + 63) / 64. -ENOENT: no slot. */
int tracker_read_clear(struct tracker *t, int slot, uint64_t *bits, size_t nwords);

#endif
