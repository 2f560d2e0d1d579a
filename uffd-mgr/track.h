/* track: the per-VM working-set tracker thread.
 *
 * Every [tracker] interval it (1) collects what the last interval saw: the BPF bitmap in
 * ebpf mode, the minor and missing faults the fault thread recorded in sample mode; (2) turns
 * that into working-set estimates over 1, 10 and 60 intervals, a page-age histogram and an
 * idle figure (vm->ts), and stamps runs with the epoch they were last seen in, which the
 * evictor's age pick reads; (3) arms the next interval: flags the resident pages to observe
 * PF_ARMING and has the shim drop QEMU's page-table entries for them (PROTO_ARM), so their
 * next access is a fault the tracker sees.
 *
 * Arming raises UFFD_EVENT_REMOVE for pages that are not discarded: the flag tells the
 * fault thread so (it keeps them resident and clears the flag), and keeps the evictor off
 * them until then, so a REMOVE of arming never meets a page that has moved to a tier.
 *
 * Functions return 0 or a negative errno. */
#ifndef UFFD_TRACK_H
#define UFFD_TRACK_H

#include <stddef.h>
#include <stdint.h>

struct vm;
struct tracker;
struct qmp;

/* The working-set windows reported, in tracker intervals (vm->ts.wss_pages[i]). */
#define TRACK_WINDOWS 3
extern const unsigned track_windows[TRACK_WINDOWS];

/* Sets vm->track_mode and vm->track_why from the VM's policy and what the host has: bpf is
 * the daemon's BPF tracker or NULL with bpf_err saying why it could not load. ebpf falls back
 * to sample (uffd minor faults, if the kernel has UFFD_FEATURE_MINOR_SHMEM), sample falls
 * back to off. Call before vm_start. Cannot fail. */
void track_choose(struct vm *vm, struct tracker *bpf, const char *bpf_err);

/* The mode's name: "ebpf", "sample" or "off". */
const char *track_mode_name(int mode);

/* Starts the tracker thread when the mode is not off (adds the VM to the BPF tracker in
 * ebpf mode). Returns 0 or -errno. */
int track_start(struct vm *vm);

/* Stops and joins the thread and removes the VM from the BPF tracker. Safe to call twice. */
void track_stop(struct vm *vm);

/* Learns where the VM's guest RAM lies in guest-physical memory from QEMU ("info mtree -f"
 * over the connection q, for the backend the shim named, or the one of the region's size in
 * query-memdev; gpamap.h) and has the BPF tracker map KVM faults through every range of it,
 * below and above 4 GiB; until then only the first 2 GiB are mapped. Only in ebpf mode with
 * kvm:kvm_page_fault attached; a failure is logged and the old mapping stays. Runs once per VM
 * (sets vm->gpa_mapped). Called by the planner once it has a QMP connection of the VM's
 * guest, from the control loop (one thread uses q). */
void track_map_gpa(struct vm *vm, struct qmp *q);

/* Records that the guest touched page (a fault brought it in, or a minor fault on a sampled
 * page) in sample mode; a no-op in the others (BPF sees those faults). Lock held. */
void track_note_access(struct vm *vm, size_t page);

#endif
