/* test_tracker: the eBPF working-set tracker (ebpf/tracker.c, ebpf/tracker.bpf.c), loaded into
 * the real kernel. Needs root (CAP_BPF + CAP_PERFMON); runs in about a second.
 *
 * The tracker sets a page's bit when the tracked process faults on it, so each test makes the
 * faults itself: a fresh MAP_PRIVATE anonymous area (THP off, so one fault is one page) faults
 * on every first touch, and MADV_DONTNEED makes the next touch fault again. Touched pages are
 * a seeded random subset, and every check is exact: the bitmap must equal the touched set, no
 * page missing and none extra. What it checks:
 *  - first touches by this process are seen; a second read finds the bitmap clear; after
 *    MADV_DONTNEED a different subset makes the second window; touches of present pages
 *    are not seen;
 *  - several regions of one process (a NUMA guest's backends), each seen in its own bitmap;
 *  - the region's bounds (a region that is not a multiple of 64 pages, touches beside it);
 *  - a touch from a second thread counts; a forked child touching the same virtual range
 *    (checked to have faulted, by its minor-fault count) does not;
 *  - the kernel faulting on a region page for this process (a read() into it) counts;
 *  - shared memfd re-arming, the daemon's method: touch, MADV_DONTNEED, touch again; with the
 *    mapping registered for uffd write-protect, as QEMU's is, every re-touched page is seen,
 *    reads included (a plain shared mapping maps up to 16 neighbours on a read fault, unseen:
 *    printed, not checked);
 *  - KVM: a tiny guest (its code in an untracked memslot) writes seeded pages of two
 *    guest-physical ranges at different region offsets, over a shared memfd, re-armed with
 *    MADV_DONTNEED between rounds: exactly those pages, whether KVM reports them by
 *    guest-physical address (kvm_page_fault) or, as PVM on this test machine does, as kernel
 *    faults at the host address; which one is printed. Skipped without /dev/kvm or the
 *    tracepoint, or when the KVM reports no faults at all;
 *  - a tracker opened in a new pid namespace tracks by that namespace's pids;
 *  - remove: nothing counts after it, the slot is gone, its space is reused zeroed; the
 *    bitmap space is bounded (-ENOSPC) and argument errors, of tracker_set_ranges too;
 *  - tracker_open's errors, in children: without capabilities (-EPERM, naming CAP_BPF), with
 *    CAP_BPF but not CAP_PERFMON, and with /sys/kernel/btf hidden in a private mount
 *    namespace (-ENOENT, naming the BTF path).
 * Exits 77 with the reason when the host has no BTF or cannot attach tracepoint programs. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/kvm.h>
#include <linux/types.h>
#include <linux/userfaultfd.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ebpf/tracker.h"
#include "ebpf/tracker_shared.h"

#define PG     4096ul
#define NPAGES 1024ul
#define NWORDS (NPAGES / 64)

static struct tracker *trk;

static uint64_t splitmix(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* A seeded subset of npages pages, about one in `one_in`, as a bitmap. */
static void pick(uint64_t seed, unsigned one_in, uint64_t *set, size_t npages)
{
	memset(set, 0, (npages + 63) / 64 * sizeof(*set));
	for (size_t p = 0; p < npages; p++)
		if (splitmix(&seed) % one_in == 0)
			set[p / 64] |= 1ull << (p % 64);
}

static bool has(const uint64_t *set, size_t page)
{
	return set[page / 64] >> (page % 64) & 1;
}

static uint8_t *map_area(size_t npages)
{
	uint8_t *a =
	    mmap(NULL, npages * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	assert_true(a != MAP_FAILED);
	/* With THP one fault would map 512 pages and hide the other 511 touches. */
	assert_int_equal(madvise(a, npages * PG, MADV_NOHUGEPAGE), 0);
	return a;
}

static void touch(uint8_t *area, const uint64_t *set, size_t npages)
{
	for (size_t p = 0; p < npages; p++)
		if (has(set, p))
			((volatile uint8_t *)area)[p * PG + 17] = (uint8_t)p;
}

static void drop(uint8_t *area, size_t npages)
{
	assert_int_equal(madvise(area, npages * PG, MADV_DONTNEED), 0);
}

/* Reads and clears the slot's bitmap and checks it equals want, naming the first difference. */
static void expect_bits(int slot, const uint64_t *want, size_t nwords)
{
	uint64_t got[NWORDS * 2];
	size_t missing = 0, extra = 0, first = SIZE_MAX;

	assert_true(nwords <= NWORDS * 2);
	assert_int_equal(tracker_read_clear(trk, slot, got, nwords), 0);
	for (size_t w = 0; w < nwords; w++) {
		uint64_t m = want[w] & ~got[w], x = got[w] & ~want[w];

		missing += (size_t)__builtin_popcountll(m);
		extra += (size_t)__builtin_popcountll(x);
		if ((m | x) && first == SIZE_MAX)
			first = w * 64 + (size_t)__builtin_ctzll(m | x);
	}
	if (missing || extra)
		fail_msg("bitmap: %zu pages missing, %zu extra; first difference at page %zu",
			 missing, extra, first);
}

static void expect_clear(int slot, size_t nwords)
{
	uint64_t zero[NWORDS * 2] = {0};

	expect_bits(slot, zero, nwords);
}

/* ---- this process's own faults ---- */

static void test_user_faults(void **state)
{
	uint64_t a[NWORDS], b[NWORDS];
	uint8_t *area = map_area(NPAGES);
	int slot;

	assert_int_equal(tracker_add(trk, getpid(), (uintptr_t)area, NPAGES, NULL, 0, &slot), 0);
	expect_clear(slot, NWORDS);

	pick(1, 3, a, NPAGES);
	touch(area, a, NPAGES);
	expect_bits(slot, a, NWORDS);
	expect_clear(slot, NWORDS);

	/* Present pages do not fault: touching them again is not seen. */
	touch(area, a, NPAGES);
	expect_clear(slot, NWORDS);

	/* The second window: drop the mappings, touch a different subset. */
	drop(area, NPAGES);
	pick(2, 4, b, NPAGES);
	assert_memory_not_equal(a, b, sizeof(a));
	touch(area, b, NPAGES);
	expect_bits(slot, b, NWORDS);
	expect_clear(slot, NWORDS);

	assert_int_equal(tracker_remove(trk, slot), 0);
	munmap(area, NPAGES * PG);
}

/* A process with several regions (a NUMA guest's backends): each fault lands in its own
 * region's bitmap; a region overlapping one already tracked is refused, a fifth is one too
 * many; removing one leaves the others tracked. */
static void test_units(void **state)
{
	uint64_t a[NWORDS], b[NWORDS];
	uint8_t *area[TRACKER_MAX_UNITS + 1];
	int slot[TRACKER_MAX_UNITS + 1], extra;

	for (unsigned i = 0; i <= TRACKER_MAX_UNITS; i++)
		area[i] = map_area(NPAGES);
	for (unsigned i = 0; i < TRACKER_MAX_UNITS; i++)
		assert_int_equal(tracker_add(trk, getpid(), (uintptr_t)area[i], NPAGES, NULL, 0,
					     &slot[i]),
				 0);
	assert_int_equal(tracker_add(trk, getpid(), (uintptr_t)(area[1] + PG), 1, NULL, 0, &extra),
			 -EEXIST);
	assert_int_equal(tracker_add(trk, getpid(), (uintptr_t)area[TRACKER_MAX_UNITS], NPAGES,
				     NULL, 0, &extra),
			 -ENOSPC);
	pick(11, 3, a, NPAGES);
	pick(12, 5, b, NPAGES);
	touch(area[0], a, NPAGES);
	touch(area[2], b, NPAGES);
	expect_bits(slot[0], a, NWORDS);
	expect_clear(slot[1], NWORDS);
	expect_bits(slot[2], b, NWORDS);
	expect_clear(slot[3], NWORDS);

	assert_int_equal(tracker_remove(trk, slot[0]), 0);
	drop(area[2], NPAGES);
	touch(area[0], b, NPAGES); /* present: not seen, and its slot is gone anyway */
	touch(area[2], a, NPAGES);
	expect_bits(slot[2], a, NWORDS);
	assert_int_equal(tracker_read_clear(trk, slot[0], a, NWORDS), -ENOENT);
	for (unsigned i = 1; i < TRACKER_MAX_UNITS; i++)
		assert_int_equal(tracker_remove(trk, slot[i]), 0);
	for (unsigned i = 0; i <= TRACKER_MAX_UNITS; i++)
		munmap(area[i], NPAGES * PG);
}

/* A 1000-page region (not a multiple of 64) at page 8 of the area: touches on the pages beside
 * it are not seen, and the last word's bits past the region stay zero. */
static void test_bounds(void **state)
{
	const size_t off = 8, n = 1000, nw = (n + 63) / 64;
	uint64_t want[NWORDS] = {0}, all[NWORDS];
	uint8_t *area = map_area(NPAGES);
	int slot;

	assert_int_equal(
	    tracker_add(trk, getpid(), (uintptr_t)(area + off * PG), n, NULL, 0, &slot), 0);
	memset(all, 0xff, sizeof(all));
	touch(area, all, NPAGES);
	for (size_t p = 0; p < n; p++)
		want[p / 64] |= 1ull << (p % 64);
	expect_bits(slot, want, nw);
	/* A bigger buffer gets zeros past the region; a smaller one is refused. */
	expect_clear(slot, NWORDS);
	assert_int_equal(tracker_read_clear(trk, slot, all, nw - 1), -EINVAL);

	assert_int_equal(tracker_remove(trk, slot), 0);
	munmap(area, NPAGES * PG);
}

struct toucher {
	uint8_t *area;
	const uint64_t *set;
};

static void *toucher_main(void *arg)
{
	struct toucher *t = arg;

	for (size_t p = 0; p < NPAGES; p++)
		if (has(t->set, p))
			((volatile uint8_t *)t->area)[p * PG] = 1;
	return NULL;
}

static void test_thread(void **state)
{
	uint64_t set[NWORDS];
	uint8_t *area = map_area(NPAGES);
	struct toucher arg = {area, set};
	pthread_t tid;
	int slot;

	assert_int_equal(tracker_add(trk, getpid(), (uintptr_t)area, NPAGES, NULL, 0, &slot), 0);
	pick(3, 5, set, NPAGES);
	assert_int_equal(pthread_create(&tid, NULL, toucher_main, &arg), 0);
	assert_int_equal(pthread_join(tid, NULL), 0);
	expect_bits(slot, set, NWORDS);

	assert_int_equal(tracker_remove(trk, slot), 0);
	munmap(area, NPAGES * PG);
}

/* A child touches every page of the same virtual range. It reports through its exit status
 * whether it really faulted on them (minor faults >= NPAGES), so that "not seen" means
 * something. */
static void test_other_process(void **state)
{
	uint64_t all[NWORDS];
	uint8_t *area = map_area(NPAGES);
	int slot, status;
	pid_t pid;

	assert_int_equal(tracker_add(trk, getpid(), (uintptr_t)area, NPAGES, NULL, 0, &slot), 0);
	memset(all, 0xff, sizeof(all));
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct rusage before, after;

		getrusage(RUSAGE_SELF, &before);
		for (size_t p = 0; p < NPAGES; p++)
			((volatile uint8_t *)area)[p * PG] = 2;
		getrusage(RUSAGE_SELF, &after);
		_exit(after.ru_minflt - before.ru_minflt >= (long)NPAGES ? 0 : 3);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	expect_clear(slot, NWORDS);

	/* The area is still untouched here: the parent's own touches are all seen. */
	touch(area, all, NPAGES);
	expect_bits(slot, all, NWORDS);

	assert_int_equal(tracker_remove(trk, slot), 0);
	munmap(area, NPAGES * PG);
}

/* The kernel copying into a region page for this process (copy_to_user in read()) faults in
 * kernel mode: exceptions:page_fault_kernel. */
static void test_kernel_fault(void **state)
{
	uint64_t want[NWORDS] = {0};
	uint8_t *area = map_area(NPAGES);
	int slot, p[2];

	if (!(tracker_sources(trk) & TRACKER_SRC_KERNEL))
		skip();
	assert_int_equal(tracker_add(trk, getpid(), (uintptr_t)area, NPAGES, NULL, 0, &slot), 0);
	assert_int_equal(pipe(p), 0);
	assert_int_equal(write(p[1], "xy", 2), 2);
	assert_int_equal(read(p[0], area + 300 * PG + 5, 2), 2);
	want[300 / 64] = 1ull << (300 % 64);
	expect_bits(slot, want, NWORDS);
	close(p[0]);
	close(p[1]);

	assert_int_equal(tracker_remove(trk, slot), 0);
	munmap(area, NPAGES * PG);
}

/* ---- shared memfd: the daemon's arming method ---- */

#define SHM_PAGES 256ul

/* A userfaultfd with the WP registration QEMU's guest-RAM mapping has (no REMOVE events, so
 * MADV_DONTNEED does not wait for a reader). Returns -1 when the kernel cannot. */
static int uffd_wp_register(uint8_t *map, size_t len)
{
	struct uffdio_api api = {.api = UFFD_API, .features = UFFD_FEATURE_WP_HUGETLBFS_SHMEM};
	struct uffdio_register reg = {.range = {(uintptr_t)map, len},
				      .mode = UFFDIO_REGISTER_MODE_WP};
	int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);

	if (fd < 0)
		return -1;
	if (ioctl(fd, UFFDIO_API, &api) || ioctl(fd, UFFDIO_REGISTER, &reg)) {
		close(fd);
		return -1;
	}
	return fd;
}

static void test_shmem_rearm(void **state)
{
	uint64_t all[SHM_PAGES / 64], set[SHM_PAGES / 64], one[SHM_PAGES / 64] = {0};
	uint64_t got[SHM_PAGES / 64];
	int memfd = memfd_create("guest-ram", MFD_CLOEXEC), slot, uffd, seen = 0;
	uint8_t *map;

	assert_true(memfd >= 0);
	assert_int_equal(ftruncate(memfd, SHM_PAGES * PG), 0);
	map = mmap(NULL, SHM_PAGES * PG, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
	assert_true(map != MAP_FAILED);
	assert_int_equal(tracker_add(trk, getpid(), (uintptr_t)map, SHM_PAGES, NULL, 0, &slot), 0);
	memset(all, 0xff, sizeof(all));
	touch(map, all, SHM_PAGES);
	expect_bits(slot, all, SHM_PAGES / 64);

	/* A plain shared mapping: a read fault after MADV_DONTNEED is seen, but it maps the
	 * resident neighbours in its fault-around window, whose reads then go unseen. */
	drop(map, SHM_PAGES);
	(void)((volatile uint8_t *)map)[100 * PG];
	one[100 / 64] = 1ull << (100 % 64);
	expect_bits(slot, one, SHM_PAGES / 64);
	for (size_t p = 0; p < SHM_PAGES; p++)
		(void)((volatile uint8_t *)map)[p * PG];
	assert_int_equal(tracker_read_clear(trk, slot, got, SHM_PAGES / 64), 0);
	for (size_t w = 0; w < SHM_PAGES / 64; w++)
		seen += __builtin_popcountll(got[w]);
	print_message("plain shared mapping: reading all %lu pages after one read saw %d faults "
		      "(fault-around)\n",
		      SHM_PAGES - 1, seen);

	/* Registered for uffd-wp, as QEMU's mapping is: no fault-around, every page is seen,
	 * for reads and for writes. The data stays in the memfd. */
	uffd = uffd_wp_register(map, SHM_PAGES * PG);
	if (uffd < 0) {
		print_message("no uffd-wp on shmem here: the registered case is not checked\n");
	} else {
		for (int round = 0; round < 2; round++) {
			drop(map, SHM_PAGES);
			pick(10 + round, 3, set, SHM_PAGES);
			for (size_t p = 0; p < SHM_PAGES; p++) {
				if (!has(set, p))
					continue;
				if (round == 0)
					assert_int_equal(((volatile uint8_t *)map)[p * PG + 17],
							 (uint8_t)p);
				else
					((volatile uint8_t *)map)[p * PG + 1] = 1;
			}
			expect_bits(slot, set, SHM_PAGES / 64);
		}
		close(uffd);
	}
	assert_int_equal(tracker_remove(trk, slot), 0);
	munmap(map, SHM_PAGES * PG);
	close(memfd);
}

/* ---- KVM: guest-physical faults ---- */

/* Guest-physical layout: two ranges of the tracked region, one at a different region offset,
 * and an untracked memslot with the code (+0), the value to write (+0x7fc) and the address
 * list (+0x800). */
#define RANGE1_GPA 0x100000ul /* region page 512 */
#define RANGE_PG   128ul
#define GUEST_CODE 0x200000ul

struct kvm_fx {
	int kvm, vm, vcpu;
	struct kvm_run *run;
	uint8_t *code;
};

/* Writes the byte at GUEST_CODE + 0x7fc to each address of the list at GUEST_CODE + 0x800
 * (ending with ~0), then halts. */
static const uint8_t guest_code[] = {
    0x8b, 0x1d, 0xfc, 0x07, 0x20, 0x00, /* mov ebx, [GUEST_CODE + 0x7fc] */
    0xbe, 0x00, 0x08, 0x20, 0x00,	/* mov esi, GUEST_CODE + 0x800 */
    0xad,				/* 1: lodsd */
    0x83, 0xf8, 0xff,			/* cmp eax, -1 */
    0x74, 0x04,				/* je 2f */
    0x88, 0x18,				/* mov [eax], bl */
    0xeb, 0xf6,				/* jmp 1b */
    0xf4,				/* 2: hlt */
};

/* A one-vCPU VM in 32-bit protected mode with flat segments and no paging. Returns NULL or why
 * it cannot. */
static const char *kvm_setup(struct kvm_fx *k, uint8_t *area)
{
	struct kvm_userspace_memory_region m0 = {0, 0, 0, RANGE_PG * PG, (uintptr_t)area};
	struct kvm_userspace_memory_region m1 = {1, 0, RANGE1_GPA, RANGE_PG * PG,
						 (uintptr_t)(area + 512 * PG)};
	struct kvm_userspace_memory_region m2 = {2, 0, GUEST_CODE, PG, 0};
	struct kvm_segment seg = {.base = 0,
				  .limit = 0xffffffff,
				  .selector = 8,
				  .type = 11,
				  .present = 1,
				  .s = 1,
				  .db = 1,
				  .g = 1};
	struct kvm_sregs sregs;
	int size;

	k->kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (k->kvm < 0)
		return "no /dev/kvm";
	k->vm = ioctl(k->kvm, KVM_CREATE_VM, 0);
	if (k->vm < 0)
		return "KVM_CREATE_VM failed";
	k->code = mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	assert_true(k->code != MAP_FAILED);
	memcpy(k->code, guest_code, sizeof(guest_code));
	m2.userspace_addr = (uintptr_t)k->code;
	if (ioctl(k->vm, KVM_SET_USER_MEMORY_REGION, &m0) ||
	    ioctl(k->vm, KVM_SET_USER_MEMORY_REGION, &m1) ||
	    ioctl(k->vm, KVM_SET_USER_MEMORY_REGION, &m2))
		return "KVM_SET_USER_MEMORY_REGION failed";
	k->vcpu = ioctl(k->vm, KVM_CREATE_VCPU, 0);
	size = ioctl(k->kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (k->vcpu < 0 || size <= 0)
		return "KVM_CREATE_VCPU failed";
	k->run = mmap(NULL, (size_t)size, PROT_READ | PROT_WRITE, MAP_SHARED, k->vcpu, 0);
	if (k->run == MAP_FAILED || ioctl(k->vcpu, KVM_GET_SREGS, &sregs))
		return "cannot map the vCPU";
	sregs.cs = seg;
	seg.type = 3;
	seg.selector = 16;
	sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss = seg;
	sregs.cr0 |= 1;
	if (ioctl(k->vcpu, KVM_SET_SREGS, &sregs))
		return "cannot set the vCPU's registers";
	return NULL;
}

static void kvm_teardown(struct kvm_fx *k)
{
	if (k->vcpu >= 0)
		close(k->vcpu);
	if (k->vm >= 0)
		close(k->vm);
	if (k->kvm >= 0)
		close(k->kvm);
	if (k->code && k->code != MAP_FAILED)
		munmap(k->code, PG);
}

/* One guest run that writes a seeded subset of both ranges' pages; *want gets the region pages
 * (page p of range r is region page r * 512 + p). Checks the guest's writes landed; returns
 * the number of bits the tracker reported, with got holding them. */
static int kvm_round(struct kvm_fx *k, uint8_t *area, int slot, uint64_t seed, uint64_t *want,
		     uint64_t *got)
{
	struct kvm_regs regs = {.rip = GUEST_CODE, .rflags = 2};
	uint32_t *list = (uint32_t *)(k->code + 0x800);
	uint64_t set[2 * RANGE_PG / 64];
	size_t n = 0;
	int bits = 0;

	memset(want, 0, NWORDS * sizeof(*want));
	pick(seed, 4, set, 2 * RANGE_PG);
	for (size_t i = 0; i < 2 * RANGE_PG; i++) {
		size_t r = i / RANGE_PG, p = i % RANGE_PG, page = r * 512 + p;

		if (!has(set, i))
			continue;
		list[n++] = (uint32_t)((r ? RANGE1_GPA : 0) + p * PG + 40);
		want[page / 64] |= 1ull << (page % 64);
	}
	list[n] = ~0u;
	k->code[0x7fc] = (uint8_t)(seed + 1); /* a new value each round: this round's writes */
	assert_int_equal(ioctl(k->vcpu, KVM_SET_REGS, &regs), 0);
	assert_int_equal(ioctl(k->vcpu, KVM_RUN, 0), 0);
	assert_int_equal(k->run->exit_reason, KVM_EXIT_HLT);
	/* Read the bits before looking at the pages: this process's reads would fault too. */
	assert_int_equal(tracker_read_clear(trk, slot, got, NWORDS), 0);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(
		    area[list[i] >= RANGE1_GPA ? list[i] - RANGE1_GPA + 512 * PG : list[i]],
		    (uint8_t)(seed + 1));
	for (size_t w = 0; w < NWORDS; w++)
		bits += __builtin_popcountll(got[w]);
	return bits;
}

static const struct tracker_gpa_range kvm_ranges[] = {
    {0, RANGE_PG *PG, 0},
    {RANGE1_GPA, RANGE_PG *PG, 512 * PG},
};

/* Guest RAM is a shared memfd, as QEMU's is; the area is its mapping in this "QEMU". */
static uint8_t *guest_ram(int *memfd)
{
	uint8_t *map;

	*memfd = memfd_create("guest-ram", MFD_CLOEXEC);
	assert_true(*memfd >= 0);
	assert_int_equal(ftruncate(*memfd, NPAGES * PG), 0);
	map = mmap(NULL, NPAGES * PG, PROT_READ | PROT_WRITE, MAP_SHARED, *memfd, 0);
	assert_true(map != MAP_FAILED);
	return map;
}

static void kvm_skip_unless_usable(struct kvm_fx *k, uint8_t *area)
{
	const char *why = NULL;

	if (!(tracker_sources(trk) & TRACKER_SRC_KVM))
		why = "no kvm:kvm_page_fault tracepoint";
	else
		why = kvm_setup(k, area);
	if (why) {
		print_message("SKIP: kvm test: %s\n", why);
		kvm_teardown(k);
		skip();
	}
}

/* A vCPU's first access to a page after arming is seen in one of two ways, and either must
 * give exactly the guest's pages at their region offsets: kvm:kvm_page_fault by guest-physical
 * address (EPT/NPT), or, where KVM touches guest RAM from the host kernel (this test machine's
 * PVM), exceptions:page_fault_kernel at the host address. A first round tracked without
 * guest-physical ranges tells them apart: only the second way sees anything there. */
static void test_kvm(void **state)
{
	struct kvm_fx k = {-1, -1, -1, NULL, NULL};
	uint64_t want[NWORDS], got[NWORDS], zero[NWORDS] = {0};
	int memfd, slot, host_path;
	uint8_t *area = guest_ram(&memfd);

	kvm_skip_unless_usable(&k, area);

	assert_int_equal(tracker_add(trk, getpid(), (uintptr_t)area, NPAGES, NULL, 0, &slot), 0);
	host_path = kvm_round(&k, area, slot, 0, want, got);
	if (host_path)
		assert_memory_equal(got, want, sizeof(got));
	else
		assert_memory_equal(got, zero, sizeof(got));
	assert_int_equal(tracker_remove(trk, slot), 0);

	/* With the ranges, after arming (the pages stay in the memfd; KVM's own mappings go with
	 * QEMU's through the MMU notifier). */
	assert_int_equal(tracker_add(trk, getpid(), (uintptr_t)area, NPAGES, kvm_ranges, 2, &slot),
			 0);
	for (uint64_t round = 1; round <= 2; round++) {
		drop(area, NPAGES);
		if (!kvm_round(&k, area, slot, 2 * round, want, got) && round == 1) {
			print_message(
			    "SKIP: kvm test: this KVM reported no faults for the guest\n");
			tracker_remove(trk, slot);
			kvm_teardown(&k);
			skip();
		}
		assert_memory_equal(got, want, sizeof(got));
	}
	print_message("vCPU faults seen %s\n",
		      host_path ? "as kernel faults at the host address (kvm_page_fault silent)"
				: "by kvm_page_fault, by guest-physical address");

	assert_int_equal(tracker_remove(trk, slot), 0);
	kvm_teardown(&k);
	munmap(area, NPAGES * PG);
	close(memfd);
}

/* ---- pid namespaces ---- */

/* In a grandchild that is pid 1 of a new pid namespace: open a tracker, track "pid 1", touch.
 * Exit status: 0 exact, 1 wrong bits, 2 a call failed. */
static int pidns_grandchild(void)
{
	uint64_t set[NWORDS], got[NWORDS];
	struct tracker *t;
	uint8_t *area;
	char err[256];
	int slot;

	if (getpid() != 1 || tracker_open(&t, err, sizeof(err)))
		return 2;
	area = mmap(NULL, NPAGES * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (area == MAP_FAILED || madvise(area, NPAGES * PG, MADV_NOHUGEPAGE) ||
	    tracker_add(t, 1, (uintptr_t)area, NPAGES, NULL, 0, &slot))
		return 2;
	pick(5, 3, set, NPAGES);
	for (size_t p = 0; p < NPAGES; p++)
		if (has(set, p))
			((volatile uint8_t *)area)[p * PG] = 1;
	if (tracker_read_clear(t, slot, got, NWORDS))
		return 2;
	tracker_close(t);
	return memcmp(set, got, sizeof(set)) ? 1 : 0;
}

static void test_pidns(void **state)
{
	int status;
	pid_t pid = fork();

	assert_true(pid >= 0);
	if (pid == 0) {
		pid_t g;

		if (unshare(CLONE_NEWPID))
			_exit(4);
		g = fork();
		if (g == 0)
			_exit(pidns_grandchild());
		if (g < 0 || waitpid(g, &status, 0) != g || !WIFEXITED(status))
			_exit(5);
		_exit(WEXITSTATUS(status));
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	if (WEXITSTATUS(status) == 4) {
		print_message("SKIP: pidns test: cannot unshare a pid namespace\n");
		skip();
	}
	assert_int_equal(WEXITSTATUS(status), 0);
}

/* ---- slots: remove, reuse, space, arguments ---- */

static void test_remove(void **state)
{
	uint64_t set[NWORDS], got[NWORDS];
	uint8_t *area = map_area(NPAGES);
	int slot, again;

	assert_int_equal(tracker_add(trk, getpid(), (uintptr_t)area, NPAGES, NULL, 0, &slot), 0);
	pick(4, 2, set, NPAGES);
	touch(area, set, NPAGES);
	/* Removed with bits still set: they must not reach the next owner of the space. */
	assert_int_equal(tracker_remove(trk, slot), 0);
	assert_int_equal(tracker_read_clear(trk, slot, got, NWORDS), -ENOENT);
	assert_int_equal(tracker_remove(trk, slot), -ENOENT);
	assert_int_equal(tracker_remove(trk, -1), -ENOENT);
	assert_int_equal(tracker_remove(trk, 100000), -ENOENT);

	/* Not tracked: faults are not counted anywhere. */
	drop(area, NPAGES);
	touch(area, set, NPAGES);

	assert_int_equal(tracker_add(trk, getpid(), (uintptr_t)area, NPAGES, NULL, 0, &again), 0);
	expect_clear(again, NWORDS);
	drop(area, NPAGES);
	touch(area, set, NPAGES);
	expect_bits(again, set, NWORDS);
	assert_int_equal(tracker_remove(trk, again), 0);
	munmap(area, NPAGES * PG);
}

/* Fake tgids far above any running process; their regions are never touched. */
#define FAKE_TGID 4190000
#define FAKE_ADDR 0x100000000000ul

static void test_space(void **state)
{
	const uint64_t half = TRACKER_WORDS / 2 * 64ull;
	uint64_t set[NWORDS];
	uint8_t *area = map_area(NPAGES);
	int s1, s2, s3, mine;

	/* Two halves fill the bitmap: nothing else fits until one goes. */
	assert_int_equal(tracker_add(trk, FAKE_TGID, FAKE_ADDR, half, NULL, 0, &s1), 0);
	assert_int_equal(tracker_add(trk, FAKE_TGID + 1, FAKE_ADDR, half, NULL, 0, &s2), 0);
	assert_int_equal(tracker_add(trk, getpid(), (uintptr_t)area, NPAGES, NULL, 0, &mine),
			 -ENOSPC);
	assert_int_equal(tracker_remove(trk, s1), 0);
	assert_int_equal(tracker_add(trk, getpid(), (uintptr_t)area, NPAGES, NULL, 0, &mine), 0);
	/* What is left of the first half: one word short of it does not fit any more. */
	assert_int_equal(tracker_add(trk, FAKE_TGID + 2, FAKE_ADDR, half, NULL, 0, &s3), -ENOSPC);
	assert_int_equal(tracker_add(trk, FAKE_TGID + 2, FAKE_ADDR, half - NPAGES, NULL, 0, &s3),
			 0);

	/* Neighbours do not disturb each other. */
	pick(6, 2, set, NPAGES);
	touch(area, set, NPAGES);
	expect_bits(mine, set, NWORDS);

	assert_int_equal(tracker_remove(trk, s2), 0);
	assert_int_equal(tracker_remove(trk, s3), 0);
	assert_int_equal(tracker_remove(trk, mine), 0);
	munmap(area, NPAGES * PG);
}

static void test_bad_args(void **state)
{
	struct tracker_gpa_range r[TRACKER_MAX_RANGES + 1] = {{0, PG, 0}};
	const uint64_t len = 16 * PG;
	uint64_t bits[1];
	int slot, s2;

	assert_int_equal(tracker_add(trk, 0, FAKE_ADDR, 16, NULL, 0, &slot), -EINVAL);
	assert_int_equal(tracker_add(trk, FAKE_TGID, FAKE_ADDR + 1, 16, NULL, 0, &slot), -EINVAL);
	assert_int_equal(tracker_add(trk, FAKE_TGID, FAKE_ADDR, 0, NULL, 0, &slot), -EINVAL);
	assert_int_equal(tracker_add(trk, FAKE_TGID, ~0ul & ~(PG - 1), 16, NULL, 0, &slot),
			 -EINVAL);
	assert_int_equal(
	    tracker_add(trk, FAKE_TGID, FAKE_ADDR, TRACKER_WORDS * 64ull + 1, NULL, 0, &slot),
	    -ENOSPC);
	assert_int_equal(tracker_add(trk, FAKE_TGID, FAKE_ADDR, 16, NULL, 1, &slot), -EINVAL);
	assert_int_equal(
	    tracker_add(trk, FAKE_TGID, FAKE_ADDR, 16, r, TRACKER_MAX_RANGES + 1, &slot), -EINVAL);
	r[0] = (struct tracker_gpa_range){0, len + PG, 0}; /* longer than the region */
	assert_int_equal(tracker_add(trk, FAKE_TGID, FAKE_ADDR, 16, r, 1, &slot), -EINVAL);
	r[0] = (struct tracker_gpa_range){0, PG, len}; /* starts past its end */
	assert_int_equal(tracker_add(trk, FAKE_TGID, FAKE_ADDR, 16, r, 1, &slot), -EINVAL);
	r[0] = (struct tracker_gpa_range){~0ul - 10, PG, 0}; /* guest-physical wraps */
	assert_int_equal(tracker_add(trk, FAKE_TGID, FAKE_ADDR, 16, r, 1, &slot), -EINVAL);
	r[0] = (struct tracker_gpa_range){0, 0, 0}; /* empty */
	assert_int_equal(tracker_add(trk, FAKE_TGID, FAKE_ADDR, 16, r, 1, &slot), -EINVAL);

	/* Exactly the region, four ranges: fine. A second slot for the same tgid is not. */
	for (int i = 0; i < 4; i++)
		r[i] = (struct tracker_gpa_range){0x100000000ull * (uint64_t)i, 4 * PG,
						  4 * PG * (uint64_t)i};
	assert_int_equal(tracker_add(trk, FAKE_TGID, FAKE_ADDR, 16, r, 4, &slot), 0);
	assert_int_equal(tracker_add(trk, FAKE_TGID, FAKE_ADDR, 16, NULL, 0, &s2), -EEXIST);
	/* Ranges learned later (track_map_gpa): checked as tracker_add checks them. */
	assert_int_equal(tracker_set_ranges(trk, slot, r, 2), 0);
	assert_int_equal(tracker_set_ranges(trk, slot, NULL, 0), 0);
	assert_int_equal(tracker_set_ranges(trk, slot, r, TRACKER_MAX_RANGES + 1), -EINVAL);
	r[4] = (struct tracker_gpa_range){0, len + PG, 0};
	assert_int_equal(tracker_set_ranges(trk, slot, &r[4], 1), -EINVAL);
	assert_int_equal(tracker_set_ranges(trk, TRACKER_MAX_VMS - 1, r, 1), -ENOENT);
	assert_int_equal(tracker_set_ranges(trk, -1, r, 1), -ENOENT);
	assert_int_equal(tracker_read_clear(trk, slot, bits, 0), -EINVAL);
	assert_int_equal(tracker_read_clear(trk, slot, bits, 1), 0);
	assert_int_equal(bits[0], 0);
	assert_int_equal(tracker_remove(trk, slot), 0);
}

/* ---- tracker_open's errors, each in a child that reports through a pipe ---- */

struct open_result {
	int ret;
	char err[256];
};

/* Keeps only the capabilities in keep (a mask over caps 32..63: CAP_PERFMON, CAP_BPF). */
static int drop_caps(uint32_t keep_high)
{
	struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
	struct __user_cap_data_struct d[2] = {{0, 0, 0}, {keep_high, keep_high, 0}};

	return (int)syscall(SYS_capset, &h, d);
}

enum { HIDE_NOTHING, HIDE_BTF };

static struct open_result open_in_child(int keep_caps, uint32_t keep_high, int hide)
{
	struct open_result res = {0};
	int p[2], status;
	pid_t pid;

	assert_int_equal(pipe(p), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct tracker *t = NULL;

		res.ret = 1000;
		if (hide == HIDE_BTF &&
		    (unshare(CLONE_NEWNS) || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) ||
		     mount("none", "/sys/kernel/btf", "tmpfs", 0, NULL)))
			snprintf(res.err, sizeof(res.err), "cannot hide /sys/kernel/btf: %s",
				 strerror(errno));
		else if (!keep_caps && drop_caps(keep_high))
			snprintf(res.err, sizeof(res.err), "capset: %s", strerror(errno));
		else
			res.ret = tracker_open(&t, res.err, sizeof(res.err));
		tracker_close(t);
		_exit(write(p[1], &res, sizeof(res)) == sizeof(res) ? 0 : 1);
	}
	close(p[1]);
	assert_int_equal(read(p[0], &res, sizeof(res)), (ssize_t)sizeof(res));
	close(p[0]);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	print_message("tracker_open: %d: %s\n", res.ret, res.err);
	return res;
}

static void test_open_errors(void **state)
{
	const uint32_t bpf = 1u << (CAP_BPF - 32), perfmon = 1u << (CAP_PERFMON - 32);
	struct open_result r;

	/* No capabilities at all: the maps cannot be created. */
	r = open_in_child(0, 0, HIDE_NOTHING);
	assert_int_equal(r.ret, -EPERM);
	assert_non_null(strstr(r.err, "CAP_BPF"));
	assert_non_null(strstr(r.err, "CAP_PERFMON"));
	assert_null(strchr(r.err, '\n'));

	/* CAP_BPF alone: maps are fine, tracing programs need CAP_PERFMON. */
	r = open_in_child(0, bpf, HIDE_NOTHING);
	assert_int_equal(r.ret, -EPERM);
	assert_non_null(strstr(r.err, "CAP_PERFMON"));

	/* Both: it works without CAP_SYS_ADMIN. */
	r = open_in_child(0, bpf | perfmon, HIDE_NOTHING);
	assert_int_equal(r.ret, 0);

	r = open_in_child(1, 0, HIDE_BTF);
	assert_int_equal(r.ret, -ENOENT);
	assert_non_null(strstr(r.err, "no BTF at /sys/kernel/btf/vmlinux"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_user_faults),
	    cmocka_unit_test(test_units),	 cmocka_unit_test(test_bounds),
	    cmocka_unit_test(test_thread),	 cmocka_unit_test(test_other_process),
	    cmocka_unit_test(test_kernel_fault), cmocka_unit_test(test_shmem_rearm),
	    cmocka_unit_test(test_kvm),		 cmocka_unit_test(test_pidns),
	    cmocka_unit_test(test_remove),	 cmocka_unit_test(test_space),
	    cmocka_unit_test(test_bad_args),	 cmocka_unit_test(test_open_errors),
	};
	char err[256];
	int r, failed;

	r = tracker_open(&trk, err, sizeof(err));
	if (r == -ENOENT || (r == -EPERM && geteuid() != 0)) {
		printf("SKIP: %s%s\n", err, r == -EPERM ? " (run as root)" : "");
		return 77;
	}
	if (r) {
		printf("tracker_open: %s\n", err);
		return 1;
	}
	printf("tracker sources: %s%s%s\n", tracker_sources(trk) & TRACKER_SRC_USER ? "user " : "",
	       tracker_sources(trk) & TRACKER_SRC_KERNEL ? "kernel " : "",
	       tracker_sources(trk) & TRACKER_SRC_KVM ? "kvm" : "");
	failed = cmocka_run_group_tests(tests, NULL, NULL);
	tracker_close(trk);
	return failed ? 1 : 0;
}
