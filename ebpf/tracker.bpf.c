// SPDX-License-Identifier: GPL-2.0
/* tracker.bpf.c: the kernel side of the working-set tracker. Raw tracepoint programs on the
 * page-fault tracepoints set one bit per faulting guest page in a bitmap that user space
 * mmaps, reads and clears (tracker.c). Nothing goes to user space per fault.
 *
 * Raw tracepoints rather than classic ones: they attach by name through bpf(), so they work
 * where tracefs is not mounted (classic tracepoint attach reads the event id from tracefs).
 * They run for every fault on the host, so the common path is one hash lookup that misses. */
#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include "ebpf/tracker_shared.h"

char LICENSE[] SEC("license") = "GPL";

/* Set by the loader before load. */
/* kvm:kvm_page_fault is (vcpu, gpa, error_code) since Linux 6.5, (gpa, error_code) before. */
const volatile bool kvm_has_vcpu = false;
/* When the daemon is not in the initial pid namespace, tgids are read in its namespace. */
const volatile bool use_pidns = false;
const volatile __u64 pidns_dev = 0;
const volatile __u64 pidns_ino = 0;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, TRACKER_MAX_VMS);
	__type(key, __u32); /* tgid */
	__type(value, struct tracker_vm);
} tracker_vms SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, TRACKER_WORDS);
	__type(key, __u32);
	__type(value, __u64);
} tracker_bits SEC(".maps");

static __always_inline struct tracker_vm *current_vm(void)
{
	struct bpf_pidns_info ns;
	__u32 tgid;

	if (use_pidns) {
		if (bpf_get_ns_current_pid_tgid(pidns_dev, pidns_ino, &ns, sizeof(ns)))
			return NULL;
		tgid = ns.tgid;
	} else {
		tgid = bpf_get_current_pid_tgid() >> 32;
	}
	return bpf_map_lookup_elem(&tracker_vms, &tgid);
}

/* Sets the bit of unit byte offset off. Reads first so that a hot page does not bounce the
 * cache line between CPUs; the atomic OR never loses a bit user space is exchanging. */
static __always_inline void mark(const struct tracker_unit *u, __u64 off)
{
	__u64 page = off >> TRACKER_PAGE_SHIFT, bit, *word;
	__u32 idx;

	if (page >= u->npages)
		return;
	if (u->word + (page >> 6) >= TRACKER_WORDS)
		return;
	idx = u->word + (page >> 6);
	word = bpf_map_lookup_elem(&tracker_bits, &idx);
	if (!word)
		return;
	bit = 1ULL << (page & 63);
	if (!(*word & bit))
		__sync_fetch_and_or(word, bit);
}

static __always_inline int on_host_fault(__u64 address)
{
	struct tracker_vm *vm = current_vm();
	__u32 i;

	if (!vm)
		return 0;
	for (i = 0; i < TRACKER_MAX_UNITS; i++) {
		const struct tracker_unit *u = &vm->unit[i];

		/* below start wraps to a huge offset; a free unit has npages 0 */
		if (address - u->start < u->npages << TRACKER_PAGE_SHIFT) {
			mark(u, address - u->start);
			break;
		}
	}
	return 0;
}

/* A fault raised in user mode: TCG and QEMU's own accesses to guest RAM. */
SEC("raw_tp/page_fault_user")
int BPF_PROG(on_user_fault, unsigned long address)
{
	return on_host_fault(address);
}

/* A fault the kernel takes on a user address for the process (copy_to_user in a read() into
 * guest RAM, for example). Kernel faults on kernel addresses miss the range. */
SEC("raw_tp/page_fault_kernel")
int BPF_PROG(on_kernel_fault, unsigned long address)
{
	return on_host_fault(address);
}

/* The unit and offset of a guest-physical address; 0 when found. */
static __always_inline int gpa_mark(const struct tracker_unit *u, __u64 gpa)
{
	__u64 d;
	__u32 j;

	for (j = 0; j < TRACKER_MAX_GPA; j++) {
		if (j >= u->nranges)
			break;
		d = gpa - u->gpa[j].gpa;
		if (d < u->gpa[j].len) {
			mark(u, u->gpa[j].offset + d);
			return 1;
		}
	}
	return 0;
}

/* A vCPU's access to guest RAM that KVM had not mapped: an EPT/NPT violation, by
 * guest-physical address. Under shadow paging the same tracepoint reports guest-virtual
 * addresses; those are told apart by the MMU role and skipped. */
SEC("raw_tp/kvm_page_fault")
int BPF_PROG(on_kvm_fault, __u64 arg0, __u64 arg1)
{
	struct tracker_vm *vm;
	struct kvm_mmu *mmu;
	__u64 gpa = arg0;
	__u32 i;

	vm = current_vm();
	if (!vm)
		return 0;
	if (kvm_has_vcpu) {
		struct kvm_vcpu *vcpu = (struct kvm_vcpu *)arg0;

		mmu = BPF_CORE_READ(vcpu, arch.mmu);
		if (!mmu || !BPF_CORE_READ_BITFIELD_PROBED(&mmu->root_role, direct))
			return 0;
		gpa = arg1;
	}
	for (i = 0; i < TRACKER_MAX_UNITS; i++)
		if (gpa_mark(&vm->unit[i], gpa))
			break;
	return 0;
}
