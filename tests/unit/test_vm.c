/* test_vm: one managed VM in-process (uffd-mgr/vm.c, fault.c, evict.c, stats.c).
 *
 * This process plays both sides. As "QEMU" it creates a memfd named memory-backend-memfd,
 * maps it MAP_SHARED and registers the mapping with a userfaultfd; as the daemon it hands
 * both to vm_create and vm_start, which run the real fault thread and evictor. Test threads
 * are the guest's vCPUs: they touch the mapping and fault. Every page's bytes are a function
 * of (seed, page, generation, word), so each check reads back every word of every page.
 * Nothing here may hold vm->lock while touching guest memory (the fault thread needs it).
 *
 * What it stresses:
 *  - patterns: two vCPU threads write and verify all of a 16 MiB guest, three generations,
 *    with resident_max at 2 MiB: the evictor must pull resident back under the limit, the
 *    stats must show evictions and shm faults and no errors; then "one home per page": every
 *    page the map calls resident is data in the memfd, every other page is a hole, every shm
 *    page's slot holds exactly its bytes, and no slot is used twice;
 *  - zero pages: untouched pages read zero, evicted zero pages take no slot and read zero;
 *  - evict_run on one run: zero pages dropped, the rest in adjacent slots, holes punched,
 *    one fault brings back the whole span with one copy;
 *  - the eviction race: a writer keeps per-page counters and a reader checks they never go
 *    back while the test thread evicts the same runs over and over: no write lost, nothing
 *    served stale;
 *  - a discard (fallocate PUNCH_HOLE + MADV_DONTNEED, which gives UFFD_EVENT_REMOVE): the
 *    pages read zero after, their slots are freed, pages outside are untouched; pages only
 *    madvised (no punch) keep their data; resident pages only punched read zero and count
 *    as discarded; and discards racing a thread that evicts the same runs without pause;
 *  - a 1 MiB shm tier under a 16 MiB guest: the evictor reports tier_full (flag, event
 *    count, aborts) and the guest runs on without losing a byte;
 *  - stats_vm_json: every field README.md documents, with the right type and values that
 *    agree with the page map;
 *  - a guest under its resident_max loses no page to the evictor;
 *  - a region at an offset inside a larger memfd: nothing outside it is touched;
 *  - the disk tier's prefetch batch: runs pushed to disk are brought back many at once with
 *    one deep read (adjacent spans merged), byte-exact; the slots they leave are punched by
 *    the evictor later, never on the fault path; the rest, read in order, comes back mostly
 *    by the fault thread's read-ahead, exactly;
 *  - vm_release against a fake shim: every tiered page is back in the memfd before the
 *    shim unregisters, and the evictor stays stopped;
 *  - vm_create's checks and its ownership of the descriptors.
 * Skips (77) with the reason when no userfaultfd with the needed features can be opened. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "shmswap/shmpool.h"
#include "uffd-mgr/evict.h"
#include "uffd-mgr/fault.h"
#include "uffd-mgr/hooks.h"
#include "uffd-mgr/pagemap.h"
#include "uffd-mgr/policy.h"
#include "uffd-mgr/proto.h"
#include "uffd-mgr/stats.h"
#include "uffd-mgr/uffd.h"
#include "uffd-mgr/vm.h"

#define PG    PAGE_SIZE_4K
#define WORDS (PG / 8)
#define KIB   (UINT64_C(1) << 10)
#define MIB   (UINT64_C(1) << 20)

struct fx {
	int memfd;    /* QEMU's own descriptor of guest RAM */
	uint8_t *map; /* QEMU's mapping, registered with the uffd */
	size_t len, npages;
	off_t off;     /* where the region starts in the memfd */
	int shim_uffd; /* the shim's own copy of the uffd (QEMU keeps one) */
	struct vm *vm;
};

static struct proto_register req; /* 4 KiB of policy path: not on the stack */
static struct fx *open_fx;	  /* the fixture to close if a test fails part-way */
static pid_t fx_pid;		  /* "QEMU"'s pid for the next fx_open; 0: this process */
static char fx_disk[128];	  /* the next fx_open's [disk] path; "": no disk tier */
/* [fault] first_touch and readahead for the next fx_open: off (one page per fault, no
 * read-ahead) unless a test turns them on, so that fault counts stay one per page. */
static uint64_t fx_first_touch = 4 * 1024, fx_readahead;

static void sleep_ms(long ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};

	nanosleep(&ts, NULL);
}

static uint64_t now_ms(void)
{
	return vm_now_ns() / 1000000;
}

/* Builds guest RAM (len bytes at offset off of a memfd of off + len + tail bytes), its uffd
 * and a running VM with the given limits. */
static void fx_open_at(struct fx *f, off_t off, size_t len, size_t tail, uint64_t resident_max,
		       uint64_t shm_max, uint64_t run_size)
{
	struct policy pol;
	uint64_t features;
	char err[256];
	int uffd, mfd;

	memset(f, 0, sizeof(*f));
	f->len = len;
	f->npages = len / PG;
	f->off = off;
	f->memfd = memfd_create("memory-backend-memfd", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	assert_true(f->memfd >= 0);
	assert_int_equal(ftruncate(f->memfd, off + (off_t)(len + tail)), 0);
	assert_int_equal(fcntl(f->memfd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW), 0);
	f->map = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, f->memfd, off);
	assert_true(f->map != MAP_FAILED);
	assert_int_equal(uffd_open(&uffd, &features, err, sizeof(err)), 0);
	assert_int_equal(uffd_register(uffd, (uint64_t)(uintptr_t)f->map, len), 0);
	mfd = dup(f->memfd);
	assert_true(mfd >= 0);
	f->shim_uffd = dup(uffd);
	assert_true(f->shim_uffd >= 0);

	memset(&req, 0, sizeof(req));
	proto_hdr_init(&req.hdr, PROTO_REGISTER, sizeof(req));
	req.host_addr = (uint64_t)(uintptr_t)f->map;
	req.length = len;
	req.memfd_offset = (uint64_t)off;
	req.pid = fx_pid ? fx_pid : getpid();
	req.uffd_features = features;
	snprintf(req.vm_name, sizeof(req.vm_name), "test-vm");
	snprintf(req.block_name, sizeof(req.block_name), "memory-backend-memfd");

	policy_defaults(&pol);
	pol.resident_max = resident_max;
	pol.shm_max = shm_max;
	pol.run_size = run_size;
	if (fx_disk[0]) {
		snprintf(pol.disk_path, sizeof(pol.disk_path), "%s", fx_disk);
		pol.disk_max = 64 * MIB;
	}
	pol.first_touch = fx_first_touch;
	pol.readahead_max = fx_readahead;
	err[0] = 0;
	if (vm_create(&req, uffd, mfd, &pol, &f->vm, err, sizeof(err)))
		print_error("vm_create: %s\n", err);
	assert_non_null(f->vm);
	open_fx = f;
	assert_int_equal(vm_start(f->vm), 0);
}

static void fx_open(struct fx *f, size_t len, uint64_t resident_max, uint64_t shm_max,
		    uint64_t run_size)
{
	fx_open_at(f, 0, len, 0, resident_max, shm_max, run_size);
}

static void fx_close(struct fx *f)
{
	fx_first_touch = 4 * KIB;
	fx_readahead = 0;
	vm_destroy(f->vm);
	munmap(f->map, f->len);
	close(f->memfd);
	close(f->shim_uffd);
	open_fx = NULL;
}

/* cmocka teardown: a failed assertion skips the test's own fx_close. */
static int cleanup(void **state)
{
	if (open_fx)
		fx_close(open_fx);
	return 0;
}

/* ---- page patterns ---- */

static uint64_t pat(uint64_t seed, size_t page, uint32_t gen, size_t word)
{
	uint64_t x = seed ^ (page * 0x9e3779b97f4a7c15ull) ^ ((uint64_t)gen << 40) ^
		     (word * 0xbf58476d1ce4e5b9ull);

	x ^= x >> 31;
	x *= 0x94d049bb133111ebull;
	x ^= x >> 29;
	return x | 1; /* never zero: a patterned page is never a zero page */
}

static void write_page(uint8_t *p, uint64_t seed, size_t page, uint32_t gen)
{
	uint64_t *w = (uint64_t *)p;

	for (size_t k = 0; k < WORDS; k++)
		w[k] = pat(seed, page, gen, k);
}

/* Returns the number of words that differ. */
static size_t bad_words(const uint8_t *p, uint64_t seed, size_t page, uint32_t gen)
{
	const uint64_t *w = (const uint64_t *)p;
	size_t bad = 0;

	for (size_t k = 0; k < WORDS; k++)
		bad += w[k] != pat(seed, page, gen, k);
	return bad;
}

static size_t nonzero_words(const uint8_t *p)
{
	const uint64_t *w = (const uint64_t *)p;
	size_t bad = 0;

	for (size_t k = 0; k < WORDS; k++)
		bad += w[k] != 0;
	return bad;
}

static void write_range(struct fx *f, size_t first, size_t n, uint64_t seed, uint32_t gen)
{
	for (size_t p = first; p < first + n; p++)
		write_page(f->map + p * PG, seed, p, gen);
}

static void verify_range(struct fx *f, size_t first, size_t n, uint64_t seed, uint32_t gen)
{
	for (size_t p = first; p < first + n; p++) {
		size_t bad = bad_words(f->map + p * PG, seed, p, gen);

		if (bad)
			print_error("page %zu: %zu words wrong (gen %u)\n", p, bad, gen);
		assert_int_equal(bad, 0);
	}
}

static void verify_zero(struct fx *f, size_t first, size_t n)
{
	for (size_t p = first; p < first + n; p++) {
		size_t bad = nonzero_words(f->map + p * PG);

		if (bad)
			print_error("page %zu: %zu words not zero\n", p, bad);
		assert_int_equal(bad, 0);
	}
}

/* ---- looking at the VM ---- */

static void snap(struct fx *f, struct vm_stats *s)
{
	pthread_mutex_lock(&f->vm->lock);
	*s = *f->vm->st;
	pthread_mutex_unlock(&f->vm->lock);
}

static size_t count(struct fx *f, enum page_state st)
{
	size_t n;

	pthread_mutex_lock(&f->vm->lock);
	n = pagemap_count(f->vm->pm, st);
	pthread_mutex_unlock(&f->vm->lock);
	return n;
}

static enum page_state state_of(struct fx *f, size_t page)
{
	enum page_state st;

	pthread_mutex_lock(&f->vm->lock);
	st = pagemap_state(f->vm->pm, page);
	pthread_mutex_unlock(&f->vm->lock);
	return st;
}

static int has_data(struct fx *f, size_t page)
{
	off_t off = f->off + (off_t)(page * PG);

	return lseek(f->memfd, off, SEEK_DATA) == off;
}

static int resident_under_limit(struct fx *f)
{
	return count(f, PS_RESIDENT) * PG <= f->vm->pol.resident_max;
}

static int wait_for(struct fx *f, int (*cond)(struct fx *), long ms)
{
	uint64_t until = now_ms() + (uint64_t)ms;

	while (!cond(f)) {
		if (now_ms() > until)
			return 0;
		sleep_ms(2);
	}
	return 1;
}

/* One home per page, checked under the VM's lock: pages not being evicted are data in the
 * memfd exactly when resident; shm pages own distinct slots holding their bytes (when gen is
 * known, i.e. >= 0); with no eviction in flight the pool's use equals the shm pages. */
static void check_homes(struct fx *f, uint64_t seed, int gen)
{
	struct vm *vm = f->vm;
	uint64_t nslots = shmpool_slots(vm->shm);
	uint8_t *owner = calloc(nslots, 1);
	size_t evicting = 0, shm = 0, wrong = 0;

	assert_non_null(owner);
	pthread_mutex_lock(&vm->lock);
	for (size_t p = 0; p < f->npages; p++) {
		enum page_state st = pagemap_state(vm->pm, p);

		if (pagemap_flags(vm->pm, p) & PF_EVICTING) {
			evicting++;
			continue;
		}
		if ((st == PS_RESIDENT) != has_data(f, p)) {
			print_error("page %zu: state %d but memfd %s\n", p, st,
				    has_data(f, p) ? "data" : "hole");
			wrong++;
		}
		if (st == PS_SHM) {
			uint64_t s = pagemap_slot(vm->pm, p);

			shm++;
			if (s >= nslots || owner[s]) {
				print_error("page %zu: slot %llu out of range or shared\n", p,
					    (unsigned long long)s);
				wrong++;
				continue;
			}
			owner[s] = 1;
			if (gen >= 0 &&
			    bad_words(shmpool_addr(vm->shm, s), seed, p, (uint32_t)gen)) {
				print_error("page %zu: slot %llu holds wrong bytes\n", p,
					    (unsigned long long)s);
				wrong++;
			}
		}
	}
	if (!evicting && shmpool_used(vm->shm) != shm) {
		print_error("pool uses %llu slots for %zu shm pages\n",
			    (unsigned long long)shmpool_used(vm->shm), shm);
		wrong++;
	}
	pthread_mutex_unlock(&vm->lock);
	free(owner);
	assert_int_equal(wrong, 0);
}

static void print_stats(const char *what, const struct vm_stats *s)
{
	print_message(
	    "%s: faults zero %llu shm %llu (%llu pages) wp %llu dup %llu parked %llu "
	    "discarded %llu errors %llu; evict runs %llu pages %llu zero %llu aborts %llu; "
	    "tier full %llu; removes %llu\n",
	    what, (unsigned long long)s->faults_zero, (unsigned long long)s->faults_shm,
	    (unsigned long long)s->faults_shm_pages, (unsigned long long)s->faults_wp,
	    (unsigned long long)s->faults_dup, (unsigned long long)s->faults_parked,
	    (unsigned long long)s->faults_discarded, (unsigned long long)s->fault_errors,
	    (unsigned long long)s->evict_runs, (unsigned long long)s->evict_pages,
	    (unsigned long long)s->evict_zero_pages, (unsigned long long)s->evict_aborts,
	    (unsigned long long)s->tier_full_events, (unsigned long long)s->removes);
}

/* ---- vCPU threads for the pattern passes ---- */

#define NVCPU 2

struct vcpu {
	pthread_t tid;
	struct fx *f;
	int id;
	uint64_t seed;
	uint32_t gens;
	size_t bad;
};

/* Writes then verifies its share of the pages (every NVCPU-th, so both threads work in the
 * same runs), in a scattered order, once per generation. */
static void *vcpu_main(void *arg)
{
	struct vcpu *c = arg;
	struct fx *f = c->f;
	size_t mine = f->npages / NVCPU;

	for (uint32_t g = 0; g < c->gens; g++) {
		for (size_t i = 0; i < mine; i++) {
			size_t p = ((i * 769 + g * 131) % mine) * NVCPU + (size_t)c->id;

			write_page(f->map + p * PG, c->seed, p, g);
		}
		for (size_t i = 0; i < mine; i++) {
			size_t p = ((i * 1031 + g * 17) % mine) * NVCPU + (size_t)c->id;

			c->bad += bad_words(f->map + p * PG, c->seed, p, g);
		}
	}
	return NULL;
}

static void run_vcpus(struct fx *f, uint64_t seed, uint32_t gens)
{
	struct vcpu c[NVCPU];

	for (int i = 0; i < NVCPU; i++) {
		c[i] = (struct vcpu){.f = f, .id = i, .seed = seed, .gens = gens};
		assert_int_equal(pthread_create(&c[i].tid, NULL, vcpu_main, &c[i]), 0);
	}
	for (int i = 0; i < NVCPU; i++)
		pthread_join(c[i].tid, NULL);
	for (int i = 0; i < NVCPU; i++) {
		if (c[i].bad)
			print_error("vcpu %d: %zu words wrong\n", i, c[i].bad);
		assert_int_equal(c[i].bad, 0);
	}
}

/* ---- tests ---- */

static void test_patterns_under_eviction(void **state)
{
	static struct fx f; /* static: cleanup() may close it after a failed assertion */
	struct vm_stats s;
	const uint64_t seed = 0xfeedface12345678ull;
	const uint32_t gens = 3;

	fx_first_touch = 64 * KIB; /* the defaults: first-touch blocks and read-ahead */
	fx_readahead = MIB;
	fx_open(&f, 16 * MIB, 2 * MIB, 64 * MIB, 64 * KIB);
	run_vcpus(&f, seed, gens);

	/* The evictor brings resident back under the limit once the guest is quiet. */
	if (!wait_for(&f, resident_under_limit, 3000))
		print_error("resident %zu pages, limit %llu\n", count(&f, PS_RESIDENT),
			    (unsigned long long)(f.vm->pol.resident_max / PG));
	assert_true(resident_under_limit(&f));
	assert_int_equal(count(&f, PS_NONE), 0);
	assert_int_equal(count(&f, PS_RESIDENT) + count(&f, PS_SHM) + count(&f, PS_ZERO), f.npages);
	check_homes(&f, seed, (int)gens - 1);

	/* And from the guest's side, every byte once more: most of it now comes from the tier
	 * (whatever the scheduler let the evictor do during the passes). */
	verify_range(&f, 0, f.npages, seed, gens - 1);
	assert_true(wait_for(&f, resident_under_limit, 3000));
	snap(&f, &s);
	print_stats("patterns", &s);
	assert_true(s.evict_runs > 0);
	assert_true(s.evict_pages >= f.npages - 2 * MIB / PG);
	assert_true(s.faults_shm > 0);
	assert_true(s.faults_shm_pages >= s.faults_shm);
	/* every page was first touched once: by its own fault or in its block */
	assert_true(s.faults_zero + f.vm->ahead.first_touch_pages >= f.npages);
	assert_int_equal(s.fault_errors, 0);
	assert_int_equal(s.tier_full_events, 0);
	assert_true(s.fault_ns.count > 0);
	check_homes(&f, seed, (int)gens - 1);
	fx_close(&f);
}

static void test_zero_pages(void **state)
{
	static struct fx f; /* static: cleanup() may close it after a failed assertion */
	struct vm_stats s0, s1;

	fx_open(&f, 4 * MIB, 0, 8 * MIB, 64 * KIB); /* no limit: only evict_run evicts */
	verify_zero(&f, 0, 256);
	snap(&f, &s0);
	assert_int_equal(s0.faults_zero, 256);
	assert_int_equal(count(&f, PS_RESIDENT), 256);
	assert_int_equal(count(&f, PS_NONE), f.npages - 256);

	/* Evicting zero pages takes no slot and punches them out. */
	for (size_t r = 0; r < 256 / 16; r++)
		assert_int_equal(evict_run(f.vm, r * 16), 16);
	snap(&f, &s1);
	assert_int_equal(s1.evict_runs, 16);
	assert_int_equal(s1.evict_pages, 256);
	assert_int_equal(s1.evict_zero_pages, 256);
	assert_int_equal(shmpool_used(f.vm->shm), 0);
	assert_int_equal(count(&f, PS_ZERO), 256);
	assert_int_equal(count(&f, PS_RESIDENT), 0);
	check_homes(&f, 0, -1);

	/* They read zero again, each with one zero-page fault. */
	verify_zero(&f, 0, 256);
	snap(&f, &s1);
	assert_int_equal(s1.faults_zero, 512);
	assert_int_equal(s1.faults_shm, 0);
	assert_int_equal(s1.fault_errors, 0);
	/* Untouched runs: nothing to evict. */
	assert_int_equal(evict_run(f.vm, 512), 0);
	fx_close(&f);
}

static void test_evict_run_direct(void **state)
{
	static struct fx f; /* static: cleanup() may close it after a failed assertion */
	struct vm_stats s;
	const uint64_t seed = 77;
	const size_t run = 2 * 16; /* pages 32-47 */

	fx_open(&f, 4 * MIB, 0, 8 * MIB, 64 * KIB);
	write_range(&f, run, 8, seed, 0);	   /* 32-39 data */
	memset(f.map + (run + 8) * PG, 0, 4 * PG); /* 40-43 zero (written, so resident) */
	write_range(&f, run + 12, 4, seed, 0);	   /* 44-47 data */
	assert_int_equal(count(&f, PS_RESIDENT), 16);

	assert_int_equal(evict_run(f.vm, run), 16);
	snap(&f, &s);
	assert_int_equal(s.evict_runs, 1);
	assert_int_equal(s.evict_pages, 16);
	assert_int_equal(s.evict_zero_pages, 4);
	assert_int_equal(shmpool_used(f.vm->shm), 12);
	pthread_mutex_lock(&f.vm->lock);
	for (size_t i = 0; i < 16; i++) {
		size_t p = run + i;
		int zero = i >= 8 && i < 12;

		assert_int_equal(pagemap_state(f.vm->pm, p), zero ? PS_ZERO : PS_SHM);
		assert_int_equal(pagemap_flags(f.vm->pm, p), 0);
		assert_false(has_data(&f, p));
	}
	/* Runs, not pages: each stretch of data pages sits in adjacent slots. */
	for (size_t i = 1; i < 8; i++)
		assert_true(pagemap_slot(f.vm->pm, run + i) == pagemap_slot(f.vm->pm, run) + i);
	for (size_t i = 13; i < 16; i++)
		assert_true(pagemap_slot(f.vm->pm, run + i) ==
			    pagemap_slot(f.vm->pm, run + 12) + (i - 12));
	pthread_mutex_unlock(&f.vm->lock);
	check_homes(&f, seed, 0);

	/* One read brings back its whole span (32-39) with one copy; 44-47 stay out. */
	assert_int_equal(f.map[(run + 3) * PG + 8], (uint8_t)pat(seed, run + 3, 0, 1));
	snap(&f, &s);
	assert_int_equal(s.faults_shm, 1);
	assert_int_equal(s.faults_shm_pages, 8);
	for (size_t i = 0; i < 8; i++)
		assert_int_equal(state_of(&f, run + i), PS_RESIDENT);
	for (size_t i = 12; i < 16; i++)
		assert_int_equal(state_of(&f, run + i), PS_SHM);
	assert_int_equal(shmpool_used(f.vm->shm), 4);
	verify_range(&f, run, 8, seed, 0);
	verify_zero(&f, run + 8, 4);
	verify_range(&f, run + 12, 4, seed, 0);
	snap(&f, &s);
	assert_int_equal(s.faults_shm, 2);
	assert_int_equal(s.faults_shm_pages, 12);
	assert_int_equal(s.faults_zero, 16 + 4); /* first touch of the run, then 40-43 again */
	assert_int_equal(s.fault_errors, 0);
	assert_int_equal(shmpool_used(f.vm->shm), 0);
	check_homes(&f, seed, 0);
	fx_close(&f);
}

/* ---- the eviction race ---- */

#define RACE_FIRST 64 /* runs 4-7 */
#define RACE_PAGES 64

struct racer {
	struct fx *f;
	atomic_int stop;
	uint64_t counters[RACE_PAGES];
	uint64_t passes, bad, stale, reads;
};

/* Word 0 of each page counts the writes to it, word 256 names the page, word 511 is ~count.
 * The writer checks that each page holds its own last write before the next one. */
static void *race_writer(void *arg)
{
	struct racer *r = arg;

	while (!atomic_load(&r->stop)) {
		for (size_t i = 0; i < RACE_PAGES; i++) {
			volatile uint64_t *w = (uint64_t *)(r->f->map + (RACE_FIRST + i) * PG);
			uint64_t c = r->counters[i];

			if (w[0] != c || w[256] != RACE_FIRST + i || w[511] != ~c)
				r->bad++;
			w[0] = c + 1;
			w[511] = ~(c + 1);
			r->counters[i] = c + 1;
		}
		r->passes++;
	}
	return NULL;
}

/* A reader: a page's counter never goes back (a stale copy served would make it). */
static void *race_reader(void *arg)
{
	struct racer *r = arg;
	uint64_t last[RACE_PAGES] = {0};

	while (!atomic_load(&r->stop)) {
		for (size_t i = RACE_PAGES; i-- > 0;) {
			volatile uint64_t *w = (uint64_t *)(r->f->map + (RACE_FIRST + i) * PG);
			uint64_t c = w[0];

			if (c < last[i] || w[256] != RACE_FIRST + i)
				r->stale++;
			last[i] = c;
			r->reads++;
		}
	}
	return NULL;
}

static void test_eviction_race(void **state)
{
	static struct racer r;
	static struct fx f; /* static: cleanup() may close it after a failed assertion */
	struct vm_stats s;
	pthread_t wt, rt;
	uint64_t moved = 0, rounds = 0, errors = 0, until;

	fx_open(&f, 4 * MIB, 0, 8 * MIB, 64 * KIB);
	memset(&r, 0, sizeof(r));
	r.f = &f;
	for (size_t i = 0; i < RACE_PAGES; i++) {
		uint64_t *w = (uint64_t *)(f.map + (RACE_FIRST + i) * PG);

		w[0] = 0;
		w[256] = RACE_FIRST + i;
		w[511] = ~UINT64_C(0);
	}
	assert_int_equal(pthread_create(&wt, NULL, race_writer, &r), 0);
	assert_int_equal(pthread_create(&rt, NULL, race_reader, &r), 0);
	until = now_ms() + 1000;
	while (now_ms() < until) {
		for (size_t run = RACE_FIRST; run < RACE_FIRST + RACE_PAGES; run += 16) {
			int m = evict_run(f.vm, run);

			if (m < 0)
				errors++;
			else
				moved += (uint64_t)m;
		}
		rounds++;
	}
	atomic_store(&r.stop, 1);
	pthread_join(wt, NULL);
	pthread_join(rt, NULL);
	snap(&f, &s);
	print_stats("race", &s);
	print_message("race: %llu eviction rounds moved %llu pages; writer %llu passes, reader "
		      "%llu reads\n",
		      (unsigned long long)rounds, (unsigned long long)moved,
		      (unsigned long long)r.passes, (unsigned long long)r.reads);
	assert_int_equal(errors, 0);
	assert_int_equal(r.bad, 0);
	assert_int_equal(r.stale, 0);
	assert_true(moved > 0);
	assert_true(r.passes > 10);
	assert_int_equal(s.fault_errors, 0);
	/* The final counters, once more from the guest's side. */
	for (size_t i = 0; i < RACE_PAGES; i++) {
		uint64_t *w = (uint64_t *)(f.map + (RACE_FIRST + i) * PG);

		assert_true(w[0] == r.counters[i] && w[511] == ~r.counters[i]);
	}
	check_homes(&f, 0, -1);
	fx_close(&f);
}

/* ---- the fault path never leaves a vCPU waiting ---- */

/* A vCPU that writes pages [first, first + n) once, one fault each. */
struct writer {
	struct fx *f;
	size_t first, n;
	uint64_t seed;
	uint32_t gen;
	atomic_int done;
};

static void *write_pages(void *arg)
{
	struct writer *w = arg;

	for (size_t p = w->first; p < w->first + w->n; p++)
		write_page(w->f->map + p * PG, w->seed, p, w->gen);
	atomic_store(&w->done, 1);
	return NULL;
}

static int joined_within(pthread_t t, uint32_t ms)
{
	struct timespec deadline = vm_deadline_ms(ms);

	return pthread_timedjoin_np(t, NULL, &deadline) == 0;
}

static int wp_fault_seen(struct fx *f)
{
	struct vm_stats s;

	snap(f, &s);
	return s.faults_wp > 0;
}

/* A writer blocked on an eviction's write-protection is woken even when lifting the
 * protection fails. Made deterministic with the unprotect hook, which also makes the fault
 * thread's own attempt to lift it fail (ENOMEM: the WP fault is parked and retried): the
 * writer blocks on a page the test protected, the run is then evicted, the lift fails, and
 * only evict_run's wake can let the writer go on, to fault its page back from the tier. */
static void test_evict_wakes_writers_when_unprotect_fails(void **state)
{
	static struct fx f; /* static: cleanup() may close it after a failed assertion */
	static struct writer w;
	const uint64_t seed = 91;
	struct vm_stats s;
	pthread_t t;
	int woke;

	fx_open(&f, 1 * MIB, 0, 8 * MIB, 64 * KIB);
	write_range(&f, 0, 16, seed, 0);
	hooks_set_unprotect_fail(true);
	assert_int_equal(
	    uffd_wp(f.shim_uffd, (uint64_t)(uintptr_t)(f.map + 3 * PG), PG, true, false), 0);
	w = (struct writer){.f = &f, .first = 3, .n = 1, .seed = seed, .gen = 1};
	assert_int_equal(pthread_create(&t, NULL, write_pages, &w), 0);
	assert_true(wait_for(&f, wp_fault_seen, 2000));
	sleep_ms(20);
	assert_false(atomic_load(&w.done)); /* blocked on the protection */
	assert_int_equal(evict_run(f.vm, 0), 16);
	woke = joined_within(t, 2000);
	hooks_set_unprotect_fail(false);
	if (!woke) { /* let it go, to fail cleanly */
		uffd_wake(f.shim_uffd, (uint64_t)(uintptr_t)f.map, 16 * PG);
		pthread_join(t, NULL);
	}
	snap(&f, &s);
	print_message("unprotect failed %llu times; %llu wp faults, %llu enomem retries\n",
		      (unsigned long long)s.evict_wp_errors, (unsigned long long)s.faults_wp,
		      (unsigned long long)s.faults_enomem);
	assert_true(woke);
	assert_true(s.evict_wp_errors >= 1);
	verify_range(&f, 0, 3, seed, 0);
	verify_range(&f, 3, 1, seed, 1);
	verify_range(&f, 4, 12, seed, 0);
	assert_int_equal(s.fault_errors, 0);
	fx_close(&f);
}

/* ENOMEM from UFFDIO_ZEROPAGE and UFFDIO_COPY (injected) is host memory pressure: the fault
 * is parked and retried with a backoff until it is served, counted, never an error; the
 * first fault waits out six of them (1 + 2 + ... + 32 ms), longer than stall_warn, so the
 * watchdog reports it and keeps the longest wait. */
static void test_enomem_parks_then_serves(void **state)
{
	static struct fx f; /* static: cleanup() may close it after a failed assertion */
	const uint64_t seed = 17;
	struct vm_stats s;

	fx_open(&f, 1 * MIB, 0, 8 * MIB, 64 * KIB);
	f.vm->pol.stall_warn_ms = 20;
	assert_int_equal(hooks_set("burst:6:1000000", NULL), 0);
	write_range(&f, 0, 16, seed, 0);
	snap(&f, &s);
	print_message("zero pages: %llu enomem retries, %llu stalled, longest wait %llu ms\n",
		      (unsigned long long)s.faults_enomem, (unsigned long long)s.faults_stalled,
		      (unsigned long long)(s.fault_max_wait_ns / 1000000));
	assert_int_equal(s.faults_enomem, 6);
	assert_int_equal(s.faults_zero, 16);
	assert_true(s.faults_stalled >= 1);
	assert_true(s.fault_max_wait_ns >= 50 * 1000000ull);

	assert_int_equal(evict_run(f.vm, 0), 16);
	assert_int_equal(hooks_set("burst:3:1000000", NULL), 0);
	verify_range(&f, 0, 16, seed, 0); /* one UFFDIO_COPY of the run, after 3 ENOMEMs */
	hooks_set(NULL, NULL);
	snap(&f, &s);
	assert_int_equal(s.faults_enomem, 9);
	assert_int_equal(s.faults_shm, 1);
	assert_int_equal(s.fault_errors, 0);
	assert_true(vm_fault_thread_alive(f.vm));
	fx_close(&f);
}

static int fault_thread_dead(struct fx *f)
{
	return !vm_fault_thread_alive(f->vm);
}

static const char *json_state(struct vm *vm)
{
	static char state[32];
	struct json_object *j = stats_vm_json(vm, "running"), *v;

	assert_true(json_object_object_get_ex(j, "state", &v));
	snprintf(state, sizeof(state), "%s", json_object_get_string(v));
	json_object_put(j);
	return state;
}

static int fault_parked(struct fx *f)
{
	struct vm_stats s;

	snap(f, &s);
	return s.faults_parked > 0;
}

static void set_flags(struct fx *f, size_t page, unsigned flags)
{
	pthread_mutex_lock(&f->vm->lock);
	pagemap_set_flags(f->vm->pm, page, flags);
	pthread_mutex_unlock(&f->vm->lock);
}

/* A fault thread that exits (injected after 4 faults) while the guest lives is seen by
 * vm_check at once, shown as unserved, and restarted by vm_supervise. Its vCPUs go on: the
 * one whose fault nobody read yet, and the one whose fault the old thread held parked (on
 * a page flagged as being evicted) and took with it; every byte is right. */
static void test_fault_thread_restart(void **state)
{
	static struct fx f; /* static: cleanup() may close it after a failed assertion */
	static struct writer w, parked;
	const uint64_t seed = 23;
	char why[256];
	struct vm_stats s;
	pthread_t t, tp;

	fx_open(&f, 1 * MIB, 0, 8 * MIB, 64 * KIB);
	set_flags(&f, 100, PF_EVICTING);
	parked = (struct writer){.f = &f, .first = 100, .n = 1, .seed = seed};
	assert_int_equal(pthread_create(&tp, NULL, write_pages, &parked), 0);
	assert_true(wait_for(&f, fault_parked, 2000));
	assert_int_equal(hooks_set(NULL, "4"), 0);
	w = (struct writer){.f = &f, .first = 0, .n = 64, .seed = seed};
	assert_int_equal(pthread_create(&t, NULL, write_pages, &w), 0);
	assert_true(wait_for(&f, fault_thread_dead, 2000));
	assert_int_equal(vm_check(f.vm, why, sizeof(why)), -EPIPE);
	print_message("vm_check: %s\n", why);
	assert_non_null(strstr(why, strerror(ECANCELED)));
	assert_string_equal(json_state(f.vm), "unserved");
	vm_supervise(f.vm);
	assert_true(vm_fault_thread_alive(f.vm));
	assert_int_equal(vm_check(f.vm, why, sizeof(why)), 0);
	assert_true(joined_within(t, 2000));
	set_flags(&f, 100, 0); /* the "eviction" is over: the parked fault may go on */
	assert_int_equal(write(f.vm->wake_efd, &(uint64_t){1}, sizeof(uint64_t)), 8);
	assert_true(joined_within(tp, 2000));
	hooks_set(NULL, NULL);
	verify_range(&f, 0, 64, seed, 0);
	verify_range(&f, 100, 1, seed, 0);
	snap(&f, &s);
	assert_int_equal(s.fault_thread_restarts, 1);
	assert_int_equal(s.fault_errors, 0);
	assert_string_equal(json_state(f.vm), "running");
	fx_close(&f);
}

/* A fault thread that exits again soon after its restart stops the VM: "QEMU" (a child
 * process here) gets SIGTERM, the VM is failed with the reason, and shows so. */
static void test_fault_thread_dies_again_stops_guest(void **state)
{
	static struct fx f; /* static: cleanup() may close it after a failed assertion */
	static struct writer w;
	char why[256];
	pthread_t t;
	pid_t child = fork();
	int status;

	assert_true(child >= 0);
	if (child == 0) {
		pause();
		_exit(0);
	}
	fx_pid = child;
	fx_open(&f, 1 * MIB, 0, 8 * MIB, 64 * KIB);
	fx_pid = 0;
	assert_int_equal(hooks_set(NULL, "2:always"), 0);
	w = (struct writer){.f = &f, .first = 0, .n = 64, .seed = 29};
	assert_int_equal(pthread_create(&t, NULL, write_pages, &w), 0);
	assert_true(wait_for(&f, fault_thread_dead, 2000));
	vm_supervise(f.vm);
	assert_true(wait_for(&f, fault_thread_dead, 2000));
	vm_supervise(f.vm);
	assert_int_equal(waitpid(child, &status, 0), child);
	assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGTERM);
	assert_int_equal(vm_check(f.vm, why, sizeof(why)), -EIO);
	print_message("vm_check: %s\n", why);
	assert_non_null(strstr(why, "after it was restarted"));
	assert_string_equal(json_state(f.vm), "failed");
	assert_int_equal(f.vm->st->fault_thread_restarts, 1);
	hooks_set(NULL, NULL);
	/* Nobody serves the vCPU now: unregistering wakes it to fault on its own. */
	assert_int_equal(uffd_unregister(f.shim_uffd, (uint64_t)(uintptr_t)f.map, f.len), 0);
	assert_true(joined_within(t, 2000));
	verify_range(&f, 0, 64, 29, 0);
	fx_close(&f);
}

/* ---- discards ---- */

static int one_remove_seen(struct fx *f)
{
	struct vm_stats s;

	snap(f, &s);
	return s.removes >= 1;
}

static int two_removes_seen(struct fx *f)
{
	struct vm_stats s;

	snap(f, &s);
	return s.removes >= 2;
}

static void test_discard(void **state)
{
	static struct fx f; /* static: cleanup() may close it after a failed assertion */
	struct vm_stats s;
	const uint64_t seed = 0xd15c4;

	fx_open(&f, 4 * MIB, 0, 8 * MIB, 64 * KIB);
	write_range(&f, 0, 128, seed, 0);
	for (size_t run = 32; run < 64; run += 16)
		assert_int_equal(evict_run(f.vm, run), 16);
	assert_int_equal(shmpool_used(f.vm->shm), 32);

	/* QEMU's discard of pages 24-55: resident 24-31, in the tier 32-55. */
	assert_int_equal(
	    fallocate(f.memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 24 * PG, 32 * PG), 0);
	assert_int_equal(madvise(f.map + 24 * PG, 32 * PG, MADV_DONTNEED), 0);
	assert_true(wait_for(&f, one_remove_seen, 2000));
	snap(&f, &s);
	assert_int_equal(s.removes, 1);
	assert_int_equal(s.removed_pages, 32);
	for (size_t p = 24; p < 56; p++)
		assert_int_equal(state_of(&f, p), PS_ZERO);
	assert_int_equal(shmpool_used(f.vm->shm), 8); /* 56-63 still there */
	check_homes(&f, seed, 0);

	/* Discarded pages read zero; the rest is intact. */
	verify_zero(&f, 24, 32);
	verify_range(&f, 0, 24, seed, 0);
	verify_range(&f, 56, 128 - 56, seed, 0);

	/* Only madvised (no punch): a shared memfd keeps the data, and so does the VM. */
	assert_int_equal(madvise(f.map + 100 * PG, 4 * PG, MADV_DONTNEED), 0);
	assert_true(wait_for(&f, two_removes_seen, 2000));
	for (size_t p = 100; p < 104; p++)
		assert_int_equal(state_of(&f, p), PS_RESIDENT);
	verify_range(&f, 96, 12, seed, 0);

	/* Only punched (no madvise yet): QEMU's mapping faults on the hole, which the VM
	 * serves as a zero page and counts as discarded. */
	assert_int_equal(
	    fallocate(f.memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 110 * PG, 2 * PG), 0);
	verify_zero(&f, 110, 2);
	verify_range(&f, 108, 2, seed, 0);
	verify_range(&f, 112, 2, seed, 0);
	snap(&f, &s);
	assert_int_equal(s.faults_discarded, 2);
	assert_int_equal(state_of(&f, 110), PS_RESIDENT);
	print_stats("discard", &s);
	assert_int_equal(s.fault_errors, 0);
	check_homes(&f, seed, 0);
	fx_close(&f);
}

/* A discard caught in an eviction: QEMU has punched page 5 of the run the evictor is moving, and
 * its REMOVE is not read yet. The evictor must read the hole as zeros, not fill it: a page it
 * put there (a read through a mapping of the memfd allocates one) could be written by the guest
 * without a fault, and the evictor's punch would then destroy what the guest wrote (a loss
 * test_discard_race saw in run 14 of its churn, one run in 50 under load). */
static int hole_at_copy = -1;

static void look_at_page_5(struct vm *vm, size_t first)
{
	off_t data = lseek(vm->memfd, (off_t)((first + 5) * PG), SEEK_DATA);

	hole_at_copy = data != (off_t)((first + 5) * PG);
}

static void test_evict_keeps_discarded_hole(void **state)
{
	static struct fx f;
	const uint64_t seed = 0xe501e;

	fx_open(&f, 1 * MIB, 0, 2 * MIB, 64 * KIB);
	write_range(&f, 0, 32, seed, 1);
	assert_int_equal(fallocate(f.memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 5 * PG, PG),
			 0);
	hooks_set_evict_copied(look_at_page_5);
	assert_int_equal(evict_run(f.vm, 0), 16);
	hooks_set_evict_copied(NULL);
	assert_int_equal(hole_at_copy, 1);
	assert_int_equal(state_of(&f, 5), PS_ZERO); /* read as zeros: a zero page */
	verify_zero(&f, 5, 1);
	verify_range(&f, 0, 5, seed, 1);
	verify_range(&f, 6, 26, seed, 1);
	check_homes(&f, seed, 1);
	fx_close(&f);
}

/* A discard that meets the tracker's arming: the discard's REMOVE comes first, the guest
 * writes the page again, and the arming's own REMOVE comes after. PF_ARMING must stay on
 * until the arming has ended, or the evictor could move the page out in between and the
 * arming's REMOVE would then be taken for a discard of it: the bytes written after the
 * discard lost, the page read as zeros (seen once in shm_compress.sh). */
static void test_discard_during_arming(void **state)
{
	static struct fx f;
	const uint64_t seed = 0xa4a4;
	unsigned fl;

	fx_open(&f, 4 * MIB, 0, 8 * MIB, 64 * KIB);
	write_range(&f, 0, 32, seed, 0);
	/* The tracker arms run 16-31 (track.c, arm_add). */
	pthread_mutex_lock(&f.vm->lock);
	for (size_t p = 16; p < 32; p++)
		pagemap_set_flags(f.vm->pm, p, pagemap_flags(f.vm->pm, p) | PF_ARMING);
	pthread_mutex_unlock(&f.vm->lock);
	/* QEMU discards page 20: the shim's madvise, then the punch. */
	assert_int_equal(madvise(f.map + 20 * PG, PG, MADV_DONTNEED), 0);
	assert_int_equal(
	    fallocate(f.memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 20 * PG, PG), 0);
	assert_true(wait_for(&f, one_remove_seen, 2000));
	pthread_mutex_lock(&f.vm->lock);
	fl = pagemap_flags(f.vm->pm, 20);
	pthread_mutex_unlock(&f.vm->lock);
	assert_true(fl & PF_ARMING); /* not evictable yet */
	/* The guest writes it again; then the arming reaches the run, and ends. */
	write_range(&f, 20, 1, seed, 1);
	assert_int_equal(madvise(f.map + 16 * PG, 16 * PG, MADV_DONTNEED), 0);
	assert_true(wait_for(&f, two_removes_seen, 2000));
	for (size_t p = 16; p < 32; p++)
		assert_int_equal(state_of(&f, p), PS_RESIDENT);
	pthread_mutex_lock(&f.vm->lock);
	for (size_t p = 16; p < 32; p++) /* as end_arming does */
		pagemap_set_flags(f.vm->pm, p, pagemap_flags(f.vm->pm, p) & ~PF_ARMING);
	pthread_mutex_unlock(&f.vm->lock);
	assert_int_equal(evict_run(f.vm, 16), 16);
	verify_range(&f, 16, 4, seed, 0);
	verify_range(&f, 20, 1, seed, 1);
	verify_range(&f, 21, 11, seed, 0);
	fx_close(&f);
}

/* Discards racing evictions: a thread evicts runs 8-15 over and over while the test thread
 * rewrites them, discards a seeded sub-range and checks it reads zero and the rest does not
 * change. Discards land before, during and after an eviction of the same pages. */
struct churn {
	struct fx *f;
	atomic_int stop;
	uint64_t moved, errors;
};

static void *churn_main(void *arg)
{
	struct churn *c = arg;

	while (!atomic_load(&c->stop)) {
		for (size_t run = 128; run < 256; run += 16) {
			int m = evict_run(c->f->vm, run);

			if (m < 0)
				c->errors++;
			else
				c->moved += (uint64_t)m;
		}
	}
	return NULL;
}

/* One round of a discard race: the guest writes pages 128-255 (generation gen), then QEMU
 * discards a random range of them: punch, then madvise; with shim_order, madvise first too, as
 * the shim turns it (qemu-glue/shim.c). Discarded pages must read zero, the others gen's bytes.
 * Returns the words wrong; says where, and what the page holds instead. */
static size_t discard_round(struct fx *f, uint64_t seed, uint64_t *rng, uint32_t gen,
			    bool shim_order)
{
	size_t first, n, bad = 0;

	*rng ^= *rng << 13;
	*rng ^= *rng >> 7;
	*rng ^= *rng << 17;
	first = 128 + *rng % 120;
	n = 1 + (*rng >> 20) % (256 - first);
	write_range(f, 128, 128, seed, gen);
	if (shim_order)
		assert_int_equal(madvise(f->map + first * PG, n * PG, MADV_DONTNEED), 0);
	assert_int_equal(fallocate(f->memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
				   (off_t)(first * PG), (off_t)(n * PG)),
			 0);
	assert_int_equal(madvise(f->map + first * PG, n * PG, MADV_DONTNEED), 0);
	for (size_t p = 128; p < 256; p++) {
		const uint8_t *pg = f->map + p * PG;
		size_t w = p >= first && p < first + n ? nonzero_words(pg)
						       : bad_words(pg, seed, p, gen);
		uint32_t had = 0;

		if (!w)
			continue;
		for (uint32_t g = gen; g > 0 && !had; g--)
			had = bad_words(pg, seed, p, g) ? 0 : g;
		print_error("round %u: page %zu (discarded %zu-%zu): %zu words wrong; %zu nonzero, "
			    "holds gen %u; state %d\n",
			    gen, p, first, first + n - 1, w, nonzero_words(pg), had,
			    (int)state_of(f, p));
		bad += w;
	}
	return bad;
}

static void test_discard_race(void **state)
{
	static struct fx f;
	static struct churn c;
	struct vm_stats s;
	pthread_t t;
	uint64_t seed = 0xd1d1, rng = 0x2545f4914f6cdd1dull, until;
	uint32_t gen = 0;
	size_t bad = 0;

	fx_open(&f, 4 * MIB, 0, 8 * MIB, 64 * KIB);
	memset(&c, 0, sizeof(c));
	c.f = &f;
	assert_int_equal(pthread_create(&t, NULL, churn_main, &c), 0);
	until = now_ms() + 700;
	while (now_ms() < until && !bad)
		bad = discard_round(&f, seed, &rng, ++gen, false);
	atomic_store(&c.stop, 1);
	pthread_join(t, NULL);
	snap(&f, &s);
	print_stats("discard race", &s);
	print_message("discard race: %u rounds, %llu pages evicted\n", gen,
		      (unsigned long long)c.moved);
	assert_int_equal(bad, 0);
	assert_int_equal(c.errors, 0);
	assert_true(c.moved > 0);
	assert_int_equal(s.fault_errors, 0);
	assert_int_equal(s.removes, gen);
	check_homes(&f, 0, -1);
	fx_close(&f);
}

/* ---- tier full ---- */

static int tier_full_now(struct fx *f)
{
	int full;

	pthread_mutex_lock(&f->vm->lock);
	full = f->vm->tier_full;
	pthread_mutex_unlock(&f->vm->lock);
	return full;
}

static void test_tier_full(void **state)
{
	static struct fx f; /* static: cleanup() may close it after a failed assertion */
	struct vm_stats s;
	const uint64_t seed = 0x7135;
	struct json_object *j, *v;

	fx_open(&f, 16 * MIB, 2 * MIB, 1 * MIB, 64 * KIB);
	run_vcpus(&f, seed, 2);
	assert_true(wait_for(&f, tier_full_now, 2000));
	snap(&f, &s);
	print_stats("tier full", &s);
	assert_true(s.tier_full_events >= 1);
	assert_true(s.evict_aborts >= 1);
	assert_true(s.evict_pages > 0);
	assert_int_equal(s.fault_errors, 0);
	assert_true(shmpool_used(f.vm->shm) <= shmpool_slots(f.vm->shm));
	/* The guest runs on over its limit rather than lose anything. */
	assert_true(count(&f, PS_RESIDENT) * PG > 2 * MIB);
	j = stats_vm_json(f.vm, "running");
	assert_non_null(j);
	assert_true(json_object_object_get_ex(j, "tier_full", &v));
	assert_true(json_object_get_boolean(v));
	json_object_put(j);
	check_homes(&f, seed, 1);
	verify_range(&f, 0, f.npages, seed, 1);
	fx_close(&f);
}

/* ---- stats ---- */

static uint64_t get_u64(struct json_object *o, const char *key, const char *sub)
{
	struct json_object *v;

	if (!json_object_object_get_ex(o, key, &v))
		print_error("stats: no field %s\n", key);
	assert_true(json_object_object_get_ex(o, key, &v));
	if (sub) {
		struct json_object *w;

		if (!json_object_object_get_ex(v, sub, &w))
			print_error("stats: no field %s.%s\n", key, sub);
		assert_true(json_object_object_get_ex(v, sub, &w));
		v = w;
	}
	assert_true(json_object_is_type(v, json_type_int));
	return json_object_get_uint64(v);
}

static double get_double(struct json_object *o, const char *key, const char *sub)
{
	struct json_object *v;

	assert_true(json_object_object_get_ex(o, key, &v));
	if (sub)
		assert_true(json_object_object_get_ex(v, sub, &v));
	assert_true(json_object_is_type(v, json_type_double) ||
		    json_object_is_type(v, json_type_int));
	return json_object_get_double(v);
}

static const char *const ahead_keys[] = {
    "first_touch_blocks", "first_touch_pages", "readahead_batches", "readahead_pages",
    "batch_copies",	  "batch_pages",       "batch_kept",	    "follow_moves",
};

static void test_stats_json(void **state)
{
	static const char *const fault_keys[] = {
	    "zero",   "shm",	"shm_pages",	  "discarded", "wp",	     "dup",
	    "parked", "errors", "enomem_retries", "stalled",   "max_wait_ms"};
	static const char *const evict_keys[] = {"runs", "pages", "zero_pages", "aborts",
						 "wp_errors"};
	static struct fx f; /* static: cleanup() may close it after a failed assertion */
	struct vm_stats s;
	struct json_object *j, *v;
	const uint64_t seed = 5;

	fx_open(&f, 4 * MIB, 1 * MIB, 8 * MIB, 64 * KIB);
	write_range(&f, 0, 512, seed, 0);
	verify_zero(&f, 600, 10);
	assert_true(wait_for(&f, resident_under_limit, 3000));
	verify_range(&f, 0, 512, seed, 0); /* half of it from the tier */
	assert_true(wait_for(&f, resident_under_limit, 3000));

	/* Quiet the VM's counters for a consistent picture: hold the lock across both. */
	pthread_mutex_lock(&f.vm->lock);
	s = *f.vm->st;
	size_t res = pagemap_count(f.vm->pm, PS_RESIDENT), shm = pagemap_count(f.vm->pm, PS_SHM);
	size_t zero = pagemap_count(f.vm->pm, PS_ZERO), none = pagemap_count(f.vm->pm, PS_NONE);
	pthread_mutex_unlock(&f.vm->lock);
	j = stats_vm_json(f.vm, "running");
	assert_non_null(j);
	print_message("%s\n", json_object_to_json_string_ext(j, JSON_C_TO_STRING_PLAIN));

	assert_true(json_object_object_get_ex(j, "name", &v));
	assert_string_equal(json_object_get_string(v), "test-vm");
	assert_true(json_object_object_get_ex(j, "state", &v));
	assert_string_equal(json_object_get_string(v), "running");
	assert_true(json_object_object_get_ex(j, "pid", &v));
	assert_int_equal(json_object_get_int(v), getpid());
	assert_true(get_double(j, "uptime_s", NULL) >= 0);
	assert_int_equal(get_u64(j, "guest_bytes", NULL), 4 * MIB);
	assert_int_equal(get_u64(j, "resident_max", NULL), 1 * MIB);
	assert_int_equal(get_u64(j, "shm_max", NULL), 8 * MIB);
	/* The evictor may have moved on since: the sizes must still add up to the guest. */
	uint64_t rb = get_u64(j, "resident_bytes", NULL), sb = get_u64(j, "shm_bytes", NULL);
	uint64_t zp = get_u64(j, "zero_pages", NULL), up = get_u64(j, "untouched_pages", NULL);
	assert_int_equal(rb + sb + (zp + up) * PG, 4 * MIB);
	assert_int_equal(up, none);
	assert_true(rb <= 1 * MIB);
	assert_true(sb > 0);
	/* Slots: one per shm page, plus at most the run the evictor may be moving now. */
	uint64_t used = get_u64(j, "shm_slots_used", NULL);
	assert_true(used >= sb / PG && used <= sb / PG + 16);
	print_message("at snapshot: resident %zu shm %zu zero %zu\n", res, shm, zero);
	for (size_t i = 0; i < sizeof(fault_keys) / sizeof(fault_keys[0]); i++)
		(void)get_u64(j, "faults", fault_keys[i]);
	for (size_t i = 0; i < sizeof(evict_keys) / sizeof(evict_keys[0]); i++)
		(void)get_u64(j, "evictions", evict_keys[i]);
	for (size_t i = 0; i < sizeof(ahead_keys) / sizeof(ahead_keys[0]); i++)
		(void)get_u64(j, "ahead", ahead_keys[i]);
	assert_int_equal(get_u64(j, "fault_thread", "restarts"), 0);
	assert_true(json_object_object_get_ex(j, "fault_thread", &v));
	assert_true(json_object_object_get_ex(v, "alive", &v));
	assert_true(json_object_get_boolean(v));
	assert_true(json_object_object_get_ex(j, "failed", &v));
	assert_false(json_object_get_boolean(v));
	assert_string_equal(json_state(f.vm), "running");
	assert_true(get_u64(j, "faults", "zero") >= s.faults_zero);
	assert_true(get_u64(j, "faults", "zero") >= 522);
	assert_true(get_u64(j, "faults", "shm") >= s.faults_shm);
	assert_true(get_u64(j, "faults", "shm") > 0);
	assert_true(get_u64(j, "evictions", "pages") >= s.evict_pages);
	assert_true(get_u64(j, "evictions", "pages") > 0);
	assert_int_equal(get_u64(j, "faults", "errors"), 0);
	assert_int_equal(get_u64(j, "tier_full_events", NULL), 0);
	assert_true(json_object_object_get_ex(j, "tier_full", &v));
	assert_true(json_object_is_type(v, json_type_boolean));
	assert_false(json_object_get_boolean(v));
	(void)get_u64(j, "removes", "events");
	(void)get_u64(j, "removes", "pages");
	assert_true(get_u64(j, "fault_latency_us", "count") > 0);
	double p50 = get_double(j, "fault_latency_us", "p50");
	double p99 = get_double(j, "fault_latency_us", "p99");
	double mx = get_double(j, "fault_latency_us", "max");
	assert_true(p50 > 0 && p50 <= p99 && p99 <= mx);
	assert_true(mx < 10e6); /* microseconds, not nanoseconds: no fault took 10 s */
	json_object_put(j);

	j = stats_vm_json(f.vm, "exited");
	assert_true(json_object_object_get_ex(j, "state", &v));
	assert_string_equal(json_object_get_string(v), "exited");
	json_object_put(j);
	fx_close(&f);
}

/* ---- limits and offsets ---- */

/* A guest that stays under its resident_max keeps all its pages: the evictor starts only
 * when resident goes over the limit (vm_over_limit), and nothing is evicted while it is not. */
static void test_no_eviction_under_limit(void **state)
{
	static struct fx f; /* static: cleanup() may close it after a failed assertion */
	struct vm_stats s;
	const uint64_t seed = 0x11;
	const size_t pages = 480; /* limit 512 pages; 94% of it */

	fx_open(&f, 4 * MIB, 2 * MIB, 8 * MIB, 64 * KIB);
	write_range(&f, 0, pages, seed, 0);
	assert_int_equal(count(&f, PS_RESIDENT), pages);
	sleep_ms(350); /* several of the evictor's 100 ms wake-ups */
	snap(&f, &s);
	print_stats("under limit", &s);
	if (s.evict_runs)
		print_error("%llu pages evicted from a guest %zu pages under its limit of %llu\n",
			    (unsigned long long)s.evict_pages,
			    (size_t)(f.vm->pol.resident_max / PG) - pages,
			    (unsigned long long)(f.vm->pol.resident_max / PG));
	assert_int_equal(s.evict_runs, 0);
	assert_int_equal(count(&f, PS_RESIDENT), pages);
	verify_range(&f, 0, pages, seed, 0);
	fx_close(&f);
}

/* The region starts 1 MiB into the memfd, with 1 MiB after it: evictions punch, discards
 * look for holes, and the daemon's mapping reads, at the region's offset, never outside. */
static void test_memfd_offset(void **state)
{
	static uint8_t head[MIB], tail[MIB], back[MIB];
	static struct fx f; /* static: cleanup() may close it after a failed assertion */
	struct vm_stats s;
	const uint64_t seed = 0x0ff5e7;

	fx_open_at(&f, MIB, 2 * MIB, MIB, 0, 4 * MIB, 64 * KIB);
	memset(head, 0xaa, sizeof(head));
	memset(tail, 0xbb, sizeof(tail));
	assert_int_equal(pwrite(f.memfd, head, MIB, 0), MIB);
	assert_int_equal(pwrite(f.memfd, tail, MIB, 3 * MIB), MIB);

	write_range(&f, 0, 512, seed, 0);
	for (size_t run = 0; run < 512; run += 16)
		assert_int_equal(evict_run(f.vm, run), 16);
	check_homes(&f, seed, 0);
	/* A discard of pages 0-31. */
	assert_int_equal(
	    fallocate(f.memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, MIB, 32 * PG), 0);
	assert_int_equal(madvise(f.map, 32 * PG, MADV_DONTNEED), 0);
	assert_true(wait_for(&f, one_remove_seen, 2000));
	verify_zero(&f, 0, 32);
	verify_range(&f, 32, 512 - 32, seed, 0);
	snap(&f, &s);
	assert_int_equal(s.fault_errors, 0);
	assert_int_equal(s.evict_pages, 512);

	/* Outside the region, the memfd holds exactly what was put there. */
	assert_int_equal(pread(f.memfd, back, MIB, 0), MIB);
	assert_memory_equal(back, head, MIB);
	assert_int_equal(pread(f.memfd, back, MIB, 3 * MIB), MIB);
	assert_memory_equal(back, tail, MIB);
	fx_close(&f);
}

/* ---- release ---- */

/* The shim's side of a release: answer PROTO_RELEASE by unregistering guest RAM. */
struct fake_shim {
	struct fx *f;
	int sock;
	int got_release, unregister_ret;
};

static void *fake_shim_main(void *arg)
{
	struct fake_shim *sh = arg;
	struct proto_hdr h;
	ssize_t n = proto_recv(sh->sock, &h, sizeof(h), NULL, NULL);

	if (n == (ssize_t)sizeof(h) && !proto_hdr_check(&h, (size_t)n) && h.type == PROTO_RELEASE) {
		sh->got_release = 1;
		sh->unregister_ret =
		    uffd_unregister(sh->f->shim_uffd, (uint64_t)(uintptr_t)sh->f->map, sh->f->len);
		proto_reply(sh->sock, sh->unregister_ret, "released");
	}
	return NULL;
}

/* vm_release hands the region back: every tiered page is back in the memfd before the shim
 * unregisters, so QEMU, unmanaged from then on, reads every byte from the memfd itself. */
static void test_release(void **state)
{
	static struct fx f; /* static: cleanup() may close it after a failed assertion */
	static struct fake_shim sh;
	struct vm_stats s0, s1;
	const uint64_t seed = 0x2e1ea5e;
	pthread_t t;
	char err[256] = "";
	int sv[2];

	fx_open(&f, 4 * MIB, 1 * MIB, 8 * MIB, 64 * KIB);
	write_range(&f, 0, 768, seed, 0); /* 3 MiB: 2 MiB or more go to the tier */
	assert_true(wait_for(&f, resident_under_limit, 3000));
	assert_true(count(&f, PS_SHM) > 0);
	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
	f.vm->ctl_sock = sv[0];
	sh = (struct fake_shim){.f = &f, .sock = sv[1]};
	assert_int_equal(pthread_create(&t, NULL, fake_shim_main, &sh), 0);

	int r = vm_release(f.vm, err, sizeof(err));
	pthread_join(t, NULL);
	if (r)
		print_error("vm_release: %s\n", err);
	assert_int_equal(r, 0);
	assert_true(sh.got_release);
	assert_int_equal(sh.unregister_ret, 0);
	assert_int_equal(count(&f, PS_SHM), 0);
	assert_int_equal(shmpool_used(f.vm->shm), 0);
	check_homes(&f, seed, 0);

	/* Unregistered now: these reads never reach the VM; a page left in a hole reads zero. */
	snap(&f, &s0);
	verify_range(&f, 0, 768, seed, 0);
	verify_zero(&f, 768, 32);
	/* The evictor has stopped for good, though resident is now over the limit. */
	sleep_ms(250);
	snap(&f, &s1);
	assert_true(s1.evict_runs == s0.evict_runs);
	assert_true(s1.faults_zero == s0.faults_zero && s1.faults_shm == s0.faults_shm);
	assert_int_equal(s1.fault_errors, 0);
	close(sv[0]);
	close(sv[1]);
	f.vm->ctl_sock = -1;
	fx_close(&f);
}

/* ---- the disk tier: prefetch in one deep batch ---- */

static int gate_count_acquire(void *arg, bool write, uint64_t bytes, bool wait)
{
	(*(unsigned *)arg)++;
	return 0;
}

static void gate_count_release(void *arg, bool write, uint64_t bytes)
{
}

static int no_disk_in_flight(struct fx *f)
{
	struct vm *vm = f->vm;
	size_t flagged = 0;

	pthread_mutex_lock(&vm->lock);
	for (size_t p = 0; p < f->npages; p++)
		flagged += !!(pagemap_flags(vm->pm, p) & PF_EVICTING);
	pthread_mutex_unlock(&vm->lock);
	return !flagged && count(f, PS_DISK) > f->npages / 2;
}

static int disk_all_punched(struct fx *f)
{
	struct disktier_counters c;

	disktier_get_counters(f->vm->disk, &c);
	return c.unpunched == 0;
}

/* An 8 MiB guest with runs of run pages, 1 MiB resident, a 1 MiB shm tier and its swap file
 * in a new directory made from the template dir: written whole (seed, generation 0), so that
 * most of it goes to disk; then its limit is lifted, so that nothing is evicted again, and
 * every disk write has ended. */
static void fx_open_pushed_to_disk(struct fx *f, char *dir, uint64_t seed, size_t run)
{
	assert_non_null(mkdtemp(dir));
	snprintf(fx_disk, sizeof(fx_disk), "%s/%%n.swap", dir);
	fx_open(f, 8 * MIB, 1 * MIB, 1 * MIB, run * PG);
	fx_disk[0] = 0;
	assert_non_null(f->vm->disk);
	write_range(f, 0, f->npages, seed, 0);
	assert_true(wait_for(f, resident_under_limit, 5000));
	pthread_mutex_lock(&f->vm->lock);
	f->vm->pol.resident_max = 0;
	pthread_mutex_unlock(&f->vm->lock);
	assert_true(wait_for(f, no_disk_in_flight, 5000));
}

/* An 8 MiB guest with 1 MiB resident and a 1 MiB shm tier pushes most of its pages to disk;
 * then, its limit lifted, the runs on disk are brought back as the prefetcher does: many runs
 * added to one batch (their disk spans flagged in flight at their guest offsets in a 1 MiB
 * stage) and read with one call through a ring of depth 32, spans adjacent both on disk and
 * in the guest merged (a counting gate sees fewer I/Os than spans). Every page of those runs
 * is resident afterwards with its bytes; the slots they left wait for the evictor's punch
 * (unpunched), which comes off the fault path; the rest of the guest faults back exactly. */
static void test_disk_prefetch_batch(void **state)
{
	static struct fx f; /* static: cleanup() may close it after a failed assertion */
	static struct disk_batch b;
	const uint64_t seed = 0xd15c;
	char dir[] = "/var/tmp/test-vm-disk.XXXXXX";
	struct disktier_counters c;
	struct disktier_io *io;
	unsigned ios = 0;
	struct disktier_gate g = {gate_count_acquire, gate_count_release, &ios};
	static size_t firsts[256];
	size_t run = 4, first_run, runs = 0, tiered = 0;
	uint8_t *stage = aligned_alloc(PG, MIB);

	assert_non_null(stage);
	fx_open_pushed_to_disk(&f, dir, seed, run);

	assert_int_equal(disktier_io_create(f.vm->disk, stage, MIB, 32, &io), 0);
	disktier_io_set_gate(io, &g);
	b.stage = stage;
	b.stage_pages = MIB / PG;
	pthread_mutex_lock(&f.vm->lock);
	for (first_run = 0; first_run < f.npages; first_run += run)
		if (pagemap_state(f.vm->pm, first_run) == PS_DISK)
			break;
	for (size_t p = first_run; p < f.npages; p += run) {
		size_t n = 0;

		for (size_t i = 0; i < run; i++)
			n += pagemap_state(f.vm->pm, p + i) == PS_DISK;
		if (!n)
			continue;
		if (runs == 256 || fault_batch_add_run(f.vm, &b, p))
			break; /* the stage is full */
		firsts[runs++] = p;
		tiered += n;
	}
	pthread_mutex_unlock(&f.vm->lock);
	print_message("batch: %zu runs, %zu pages, %u spans\n", runs, tiered, b.nsegs);
	assert_true(runs >= 32);
	{
		unsigned spans = b.nsegs;

		assert_int_equal(fault_batch_read(f.vm, io, &b), 0);
		print_message("read with %u I/Os for %u spans\n", ios, spans);
		assert_true(ios >= 1 && ios <= spans);
	}
	assert_int_equal(b.nsegs, 0);
	disktier_get_counters(f.vm->disk, &c);
	assert_int_equal(c.read_errors, 0);
	/* Every page the batch covered is back, with its bytes, and none is left in flight. */
	pthread_mutex_lock(&f.vm->lock);
	for (size_t k = 0; k < runs; k++) {
		for (size_t i = 0; i < run; i++) {
			size_t p = firsts[k] + i;

			assert_int_equal(pagemap_state(f.vm->pm, p), PS_RESIDENT);
			assert_int_equal(pagemap_flags(f.vm->pm, p) & PF_EVICTING, 0);
		}
	}
	pthread_mutex_unlock(&f.vm->lock);
	for (size_t k = 0; k < runs; k++)
		verify_range(&f, firsts[k], run, seed, 0);
	/* The slots they left are punched by the evictor, off the fault path. */
	assert_true(wait_for(&f, disk_all_punched, 3000));
	disktier_get_counters(f.vm->disk, &c);
	assert_true(c.punches > 0);
	assert_int_equal(disktier_used(f.vm->disk), count(&f, PS_DISK));
	/* The rest faults back from disk, byte-exact; read in order with room under no limit,
	 * most of it comes by the fault thread's read-ahead, not by faults of its own. */
	{
		struct vm_stats s0, s1;
		size_t on_disk = count(&f, PS_DISK);

		snap(&f, &s0);
		verify_range(&f, 0, f.npages, seed, 0);
		snap(&f, &s1);
		print_message("%zu pages on disk: %llu faulted back, %llu read ahead\n", on_disk,
			      (unsigned long long)(s1.faults_disk_pages - s0.faults_disk_pages),
			      (unsigned long long)(s1.bring_back_pages - s0.bring_back_pages));
		assert_true(s1.bring_back_pages - s0.bring_back_pages > on_disk / 2);
		assert_int_equal(count(&f, PS_DISK), 0);
	}
	check_homes(&f, seed, 0);
	disktier_io_destroy(io);
	fx_close(&f);
	free(stage);
	rmdir(dir);
}

static int prefetch_done(struct fx *f)
{
	int done;

	pthread_mutex_lock(&f->vm->lock);
	done = f->vm->prefetch_want == 0;
	pthread_mutex_unlock(&f->vm->lock);
	return done;
}

/* The evictor thread's prefetch round with both tiers: an 8 MiB guest pushed out to a 1 MiB
 * shm tier and disk, its limit then lifted and the planner's want set to the whole guest.
 * The shm runs come back in shm batches (fault_prefetch_batch: copies with no wake), the disk
 * runs in the disk batch (fault_batch_add_run, one deep read, with the shm pages of runs it
 * takes that the shm batch did not); every tiered page is back,
 * flagged prefetched, byte-exact, with no fault on the way. */
static void test_prefetch_round_tiers(void **state)
{
	static struct fx f; /* static: cleanup() may close it after a failed assertion */
	const uint64_t seed = 0x9f3;
	char dir[] = "/var/tmp/test-vm-disk.XXXXXX";
	struct disktier_counters c0, c1;
	size_t shm, disk, run = 4;
	uint64_t prefetched, by_shm, copies;
	struct vm_stats s0, s1;

	fx_open_pushed_to_disk(&f, dir, seed, run);
	shm = count(&f, PS_SHM);
	disk = count(&f, PS_DISK);
	print_message("tiered: %zu pages in shm, %zu on disk\n", shm, disk);
	assert_true(shm > 0 && disk > 0);
	disktier_get_counters(f.vm->disk, &c0);
	snap(&f, &s0);

	pthread_mutex_lock(&f.vm->lock);
	f.vm->prefetch_want = f.npages;
	pthread_cond_signal(&f.vm->evict_cv);
	pthread_mutex_unlock(&f.vm->lock);
	assert_true(wait_for(&f, prefetch_done, 10000));

	assert_int_equal(count(&f, PS_SHM), 0);
	assert_int_equal(count(&f, PS_DISK), 0);
	disktier_get_counters(f.vm->disk, &c1);
	pthread_mutex_lock(&f.vm->lock); /* no assertion under it: cleanup() takes it */
	prefetched = f.vm->plan.ps.prefetched_pages;
	by_shm = f.vm->ahead.batch_pages;
	copies = f.vm->ahead.batch_copies;
	pthread_mutex_unlock(&f.vm->lock);
	print_message("prefetched %llu pages: %llu by shm batches in %llu copies, %llu disk "
		      "reads\n",
		      (unsigned long long)prefetched, (unsigned long long)by_shm,
		      (unsigned long long)copies, (unsigned long long)(c1.reads - c0.reads));
	assert_int_equal(prefetched, shm + disk);
	/* Shm pages of runs that also hold disk pages may come back with the disk batch. */
	assert_true(by_shm > 0 && by_shm <= shm);
	assert_true(c1.reads > c0.reads);
	snap(&f, &s1);
	verify_range(&f, 0, f.npages, seed, 0);
	assert_int_equal(s1.faults_shm, s0.faults_shm);
	assert_int_equal(s1.faults_disk, s0.faults_disk);
	assert_int_equal(f.vm->st->fault_errors, 0);
	fx_close(&f);
	rmdir(dir);
}

/* ---- vm_create ---- */

static void test_create_checks_and_ownership(void **state)
{
	struct policy pol;
	struct vm *vm = NULL;
	char err[256];
	int uffd, mfd = memfd_create("memory-backend-memfd", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	uint64_t features;
	void *mem;

	vm_destroy(NULL);
	assert_true(mfd >= 0);
	assert_int_equal(ftruncate(mfd, 1 * MIB), 0);
	assert_int_equal(uffd_open(&uffd, &features, err, sizeof(err)), 0);
	policy_defaults(&pol);
	memset(&req, 0, sizeof(req));
	proto_hdr_init(&req.hdr, PROTO_REGISTER, sizeof(req));
	req.host_addr = 0x7f0000000000ull;
	req.pid = getpid();
	req.length = 1 * MIB;
	snprintf(req.vm_name, sizeof(req.vm_name), "bad");

	/* QEMU is not trusted: an unsealed memfd, a uffd that is not one, sums that wrap. */
	assert_int_equal(vm_create(&req, uffd, mfd, &pol, &vm, err, sizeof(err)), -EPERM);
	print_message("unsealed: %s\n", err);
	assert_non_null(strstr(err, "not sealed against shrinking"));
	assert_int_equal(fcntl(mfd, F_ADD_SEALS, F_SEAL_SHRINK), 0);
	assert_int_equal(vm_create(&req, mfd, mfd, &pol, &vm, err, sizeof(err)), -EBADF);
	print_message("not a uffd: %s\n", err);
	assert_non_null(strstr(err, "not a userfaultfd (it is '/memfd:memory-backend-memfd"));
	req.host_addr = UINT64_MAX - 4095; /* + length wraps */
	assert_int_equal(vm_create(&req, uffd, mfd, &pol, &vm, err, sizeof(err)), -EINVAL);
	print_message("wraps: %s\n", err);
	req.host_addr = 0x7f0000000000ull;
	req.memfd_offset = UINT64_MAX - 4095;
	assert_int_equal(vm_create(&req, uffd, mfd, &pol, &vm, err, sizeof(err)), -EINVAL);
	req.memfd_offset = 0;
	req.length = UINT64_C(1) << 50;
	assert_int_equal(vm_create(&req, uffd, mfd, &pol, &vm, err, sizeof(err)), -EINVAL);
	policy_defaults(&pol);
	memset(&req, 0, sizeof(req));
	proto_hdr_init(&req.hdr, PROTO_REGISTER, sizeof(req));
	req.host_addr = 0x7f0000000000ull;
	req.pid = getpid();
	snprintf(req.vm_name, sizeof(req.vm_name), "bad");

	req.length = 1 * MIB + 100; /* not page aligned */
	err[0] = 0;
	assert_int_equal(vm_create(&req, uffd, mfd, &pol, &vm, err, sizeof(err)), -EINVAL);
	assert_true(err[0]);
	print_message("unaligned: %s\n", err);
	req.length = 2 * MIB; /* larger than the memfd */
	err[0] = 0;
	assert_int_equal(vm_create(&req, uffd, mfd, &pol, &vm, err, sizeof(err)), -EINVAL);
	assert_true(err[0]);
	print_message("too large: %s\n", err);
	req.length = 1 * MIB;
	req.memfd_offset = 4096; /* offset + length past the end */
	assert_int_equal(vm_create(&req, uffd, mfd, &pol, &vm, err, sizeof(err)), -EINVAL);
	req.memfd_offset = 0;
	/* A uffd that serves nothing at the region's address: the daemon's probe page cannot
	 * be placed, and nothing of the memfd changed. */
	assert_int_equal(vm_create(&req, uffd, mfd, &pol, &vm, err, sizeof(err)), -EPERM);
	print_message("unregistered: %s\n", err);
	assert_non_null(strstr(err, "does not serve this guest memory"));
	assert_int_equal(lseek(mfd, 0, SEEK_DATA), -1);
	mem = mmap(NULL, 1 * MIB, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
	assert_true(mem != MAP_FAILED);
	assert_int_equal(uffd_register(uffd, (uint64_t)(uintptr_t)mem, 1 * MIB), 0);
	req.host_addr = (uint64_t)(uintptr_t)mem;
	req.pid = 0x3ffffff0; /* no such process */
	err[0] = 0;
	assert_true(vm_create(&req, uffd, mfd, &pol, &vm, err, sizeof(err)) < 0);
	assert_true(err[0]);
	print_message("no pid: %s\n", err);
	assert_null(vm);
	/* Every failure left the descriptors with the caller. */
	assert_true(fcntl(uffd, F_GETFD) >= 0);
	assert_true(fcntl(mfd, F_GETFD) >= 0);

	/* Success takes them: vm_destroy closes both (no threads started). */
	req.pid = getpid();
	assert_int_equal(vm_create(&req, uffd, mfd, &pol, &vm, err, sizeof(err)), 0);
	assert_non_null(vm);
	assert_string_equal(vm->name, "bad");
	assert_int_equal(lseek(mfd, 0, SEEK_DATA), -1); /* the probe page is punched again */
	assert_int_equal(pagemap_npages(vm->pm), 256);
	assert_int_equal(shmpool_slots(vm->shm), pol.shm_max / PG);
	vm_destroy(vm);
	assert_int_equal(fcntl(uffd, F_GETFD), -1);
	assert_int_equal(fcntl(mfd, F_GETFD), -1);
	munmap(mem, 1 * MIB);
}

/* ---- paging ahead of faults: first-touch blocks, read-ahead, proactive batches ---- */

static void set_first_touch(struct fx *f, uint64_t bytes)
{
	pthread_mutex_lock(&f->vm->lock);
	f->vm->pol.first_touch = bytes;
	pthread_mutex_unlock(&f->vm->lock);
}

/* QEMU's discard as the shim turns it (qemu-glue/shim.c): madvise, punch, madvise. The first
 * REMOVE drops the tier copies before the hole exists; a punch first would let a batch bring
 * a tiered page's old bytes back between the punch and the REMOVE (a batch, like a fault on a
 * neighbour, cannot see a punch on a page it holds in a tier). */
static void discard(struct fx *f, size_t first, size_t n)
{
	assert_int_equal(madvise(f->map + first * PG, n * PG, MADV_DONTNEED), 0);
	assert_int_equal(fallocate(f->memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
				   (off_t)(first * PG), (off_t)(n * PG)),
			 0);
	assert_int_equal(madvise(f->map + first * PG, n * PG, MADV_DONTNEED), 0);
}

/* A first touch fills its block only over untouched pages: in a block (run 2, pages 32-47)
 * that holds a tiered page, a page the guest wrote (resident), a discarded page and untouched
 * ones, a write to an untouched page fills exactly the untouched pages, and every other page
 * keeps its home and its bytes. Blocks are filled only for a guest growing in address order
 * (the page before the block in use), and not more than a little past a limit (1/32 of it). */
static void test_first_touch_block(void **state)
{
	static struct fx f; /* static: cleanup() may close it after a failed assertion */
	const uint64_t seed = 0xf1257;
	const size_t b = 32;
	size_t untouched = 0, resident;

	fx_open(&f, 4 * MIB, 0, 8 * MIB, 64 * KIB);
	write_range(&f, b - 1, 1, seed, 0); /* the block before is in use: growing upward */
	write_range(&f, b + 1, 1, seed, 0);
	write_range(&f, b + 5, 1, seed, 0);
	assert_int_equal(evict_run(f.vm, b), 2); /* 33 and 37 to the tier */
	write_range(&f, b + 9, 1, seed, 1);	 /* 41 resident, the guest's */
	discard(&f, b + 5, 1);			 /* 37 discarded: zero */
	assert_true(wait_for(&f, one_remove_seen, 2000));
	assert_int_equal(state_of(&f, b + 1), PS_SHM);
	assert_int_equal(state_of(&f, b + 5), PS_ZERO);
	assert_int_equal(state_of(&f, b + 9), PS_RESIDENT);

	set_first_touch(&f, 64 * KIB);
	write_range(&f, b + 12, 1, seed, 2);
	for (size_t i = 0; i < 16; i++) {
		enum page_state st = state_of(&f, b + i);

		if (i == 1)
			assert_int_equal(st, PS_SHM);
		else if (i == 5)
			assert_int_equal(st, PS_ZERO);
		else
			assert_int_equal(st, PS_RESIDENT);
		untouched += i != 1 && i != 5 && i != 9 && i != 12;
	}
	assert_int_equal(f.vm->ahead.first_touch_blocks, 1);
	assert_int_equal(f.vm->ahead.first_touch_pages, untouched);
	verify_range(&f, b + 1, 1, seed, 0);
	verify_zero(&f, b + 5, 1);
	verify_range(&f, b + 9, 1, seed, 1);
	verify_range(&f, b + 12, 1, seed, 2);
	verify_zero(&f, b + 13, 3);
	verify_zero(&f, b, 1);
	assert_int_equal(f.vm->ahead.first_touch_blocks, 1); /* the reads were no faults */

	/* A first touch with the page before its block untouched fills its page alone. */
	write_range(&f, 128 + 3, 1, seed, 0);
	assert_int_equal(state_of(&f, 128 + 4), PS_NONE);
	assert_int_equal(f.vm->ahead.first_touch_blocks, 1);

	/* Under a limit with room for a block a little past it: still a block. */
	resident = count(&f, PS_RESIDENT);
	pthread_mutex_lock(&f.vm->lock);
	f.vm->pol.resident_max = (resident + 16) * PG; /* room for one block */
	pthread_mutex_unlock(&f.vm->lock);
	write_range(&f, 47, 2, seed, 0); /* 48: the block 48-63 */
	assert_int_equal(state_of(&f, 49), PS_RESIDENT);
	assert_int_equal(f.vm->ahead.first_touch_blocks, 2);
	/* With no room for one: one page per fault. */
	write_range(&f, 63, 2, seed, 0);
	assert_int_equal(state_of(&f, 65), PS_NONE);
	assert_int_equal(f.vm->ahead.first_touch_blocks, 2);
	check_homes(&f, 0, -1);
	fx_close(&f);
}

/* First touches racing: four vCPUs write the pages of the same blocks (page p is thread
 * p % 4's), each page right after its first touch, while the evictor runs under a limit of a
 * quarter of the guest (so blocks filled ahead and never written are evicted as zero, and
 * some pages written are evicted before their neighbours are touched). Every word of every
 * page is checked afterwards: a block filled over a page a neighbour had just written would
 * show as zeros. */
#define FT_THREADS 4

struct ft_vcpu {
	pthread_t tid;
	struct fx *f;
	int id;
	uint64_t seed;
};

static void *ft_main(void *arg)
{
	struct ft_vcpu *c = arg;

	for (size_t p = (size_t)c->id; p < c->f->npages; p += FT_THREADS)
		write_page(c->f->map + p * PG, c->seed, p, 0);
	return NULL;
}

static void test_first_touch_race(void **state)
{
	static struct fx f;
	struct ft_vcpu c[FT_THREADS];
	const uint64_t seed = 0xb10c;

	fx_first_touch = 64 * KIB;
	fx_open(&f, 16 * MIB, 4 * MIB, 64 * MIB, 64 * KIB);
	/* The last page of every block first, from the top down (each filled alone: the page
	 * before it is untouched then), so that every block after the first is one a guest
	 * growing upward fills whichever thread touches it first: blocks are filled however
	 * the threads are scheduled (one thread alone at first would otherwise find the page
	 * before each block untouched). */
	for (size_t b = f.npages / 16; b-- > 0;)
		write_page(f.map + (b * 16 + 15) * PG, seed, b * 16 + 15, 0);
	for (int i = 0; i < FT_THREADS; i++) {
		c[i] = (struct ft_vcpu){.f = &f, .id = i, .seed = seed};
		assert_int_equal(pthread_create(&c[i].tid, NULL, ft_main, &c[i]), 0);
	}
	for (int i = 0; i < FT_THREADS; i++)
		pthread_join(c[i].tid, NULL);
	verify_range(&f, 0, f.npages, seed, 0);
	print_message("first touch race: %llu blocks filled %llu pages ahead\n",
		      (unsigned long long)f.vm->ahead.first_touch_blocks,
		      (unsigned long long)f.vm->ahead.first_touch_pages);
	assert_true(f.vm->ahead.first_touch_blocks > 0);
	assert_int_equal(f.vm->st->fault_errors, 0);
	check_homes(&f, seed, 0);
	fx_close(&f);
}

/* Sequential faults through the shm tier read ahead: 8 MiB written, evicted, then read in
 * address order with a window up to 1 MiB: far fewer faults than runs, every byte right;
 * three runs discarded while tiered read zero though windows cover them, and a run the guest
 * rewrote while tiered keeps the new bytes. */
static void test_readahead(void **state)
{
	static struct fx f;
	const uint64_t seed = 0x7eada;
	const size_t n = 2048, runs = n / 16;
	struct vm_stats s;

	fx_readahead = MIB;
	fx_open(&f, 16 * MIB, 0, 64 * MIB, 64 * KIB);
	write_range(&f, 0, n, seed, 0);
	for (size_t r = 0; r < runs; r++)
		assert_int_equal(evict_run(f.vm, r * 16), 16);
	discard(&f, 40 * 16, 3 * 16);
	assert_true(wait_for(&f, one_remove_seen, 2000));
	for (size_t p = 40 * 16; p < 43 * 16; p++)
		assert_int_equal(state_of(&f, p), PS_ZERO);
	write_range(&f, 70 * 16, 16, seed, 1); /* back by its own fault, then rewritten */
	for (size_t p = 0; p < n; p++) {
		size_t bad = p >= 40 * 16 && p < 43 * 16 ? nonzero_words(f.map + p * PG)
			     : p >= 70 * 16 && p < 71 * 16 ? bad_words(f.map + p * PG, seed, p, 1)
							     : bad_words(f.map + p * PG, seed, p, 0);

		if (bad)
			print_error("page %zu: %zu words wrong\n", p, bad);
		assert_int_equal(bad, 0);
	}
	snap(&f, &s);
	print_message("readahead: %llu shm faults for %zu runs; %llu batches read %llu pages "
		      "ahead\n",
		      (unsigned long long)s.faults_shm, runs,
		      (unsigned long long)f.vm->ahead.readahead_batches,
		      (unsigned long long)f.vm->ahead.readahead_pages);
	assert_true(f.vm->ahead.readahead_pages > n / 2);
	assert_true(s.faults_shm < runs / 4);
	assert_int_equal(s.fault_errors, 0);
	assert_int_equal(shmpool_used(f.vm->shm), 0);
	check_homes(&f, 0, -1);
	fx_close(&f);
}

/* A proactive batch brings tiered runs back, hottest first, in few copies and one wake:
 * every page flagged as prefetched and right; pages discarded while tiered stay zero; a page
 * the guest rewrote after it came back by its own fault keeps its bytes. */
static void test_prefetch_batch(void **state)
{
	static struct fx f;
	const uint64_t seed = 0xba7c4;
	const size_t n = 1024;
	long got, total = 0;

	fx_open(&f, 8 * MIB, 0, 64 * MIB, 64 * KIB);
	write_range(&f, 0, n, seed, 0);
	for (size_t r = 0; r < n / 16; r++)
		assert_int_equal(evict_run(f.vm, r * 16), 16);
	discard(&f, 100, 20);
	assert_true(wait_for(&f, one_remove_seen, 2000));
	write_range(&f, 300, 1, seed, 1);
	while ((got = fault_prefetch_batch(f.vm, 256)) > 0)
		total += got;
	assert_int_equal(got, -ENOENT); /* nothing tiered is left */
	print_message("prefetch: %ld pages in %llu copies\n", total,
		      (unsigned long long)f.vm->ahead.batch_copies);
	assert_int_equal(total, (long)(n - 20 - 16)); /* 300's span came back by its fault */
	assert_true(f.vm->ahead.batch_copies * 16 <= (uint64_t)total);
	pthread_mutex_lock(&f.vm->lock);
	for (size_t p = 0; p < n; p++) {
		bool zero = p >= 100 && p < 120, own = p >= 288 && p < 304;

		assert_int_equal(pagemap_state(f.vm->pm, p), zero ? PS_ZERO : PS_RESIDENT);
		assert_int_equal(pagemap_flags(f.vm->pm, p), zero || own ? 0 : PF_PREFETCHED);
	}
	pthread_mutex_unlock(&f.vm->lock);
	verify_range(&f, 0, 100, seed, 0);
	verify_zero(&f, 100, 20);
	verify_range(&f, 120, 300 - 120, seed, 0);
	verify_range(&f, 300, 1, seed, 1);
	verify_range(&f, 301, n - 301, seed, 0);
	assert_int_equal(shmpool_used(f.vm->shm), 0);
	check_homes(&f, 0, -1);
	fx_close(&f);
}

/* Batches racing the guest: a thread evicts runs 4-7 and brings them back with proactive
 * batches, over and over, while a writer keeps per-page counters in them and a reader checks
 * the counters never go back (the race of test_eviction_race, with batches in place of
 * faults: a batch that wrote over a page the guest had would show as a counter gone back). */
struct batcher {
	struct fx *f;
	atomic_int stop;
	size_t first, n; /* the runs it churns */
	uint64_t moved, back, errors;
};

static void *batch_churn(void *arg)
{
	struct batcher *b = arg;

	while (!atomic_load(&b->stop)) {
		for (size_t run = b->first; run < b->first + b->n; run += 16) {
			int m = evict_run(b->f->vm, run);

			if (m < 0)
				b->errors++;
			else
				b->moved += (uint64_t)m;
		}
		for (long got; (got = fault_prefetch_batch(b->f->vm, 64)) > 0;)
			b->back += (uint64_t)got;
	}
	return NULL;
}

static void test_batch_race(void **state)
{
	static struct racer r;
	static struct batcher b;
	static struct fx f;
	pthread_t wt, rt, bt;

	fx_readahead = MIB;
	fx_open(&f, 4 * MIB, 0, 8 * MIB, 64 * KIB);
	memset(&r, 0, sizeof(r));
	memset(&b, 0, sizeof(b));
	r.f = b.f = &f;
	b.first = RACE_FIRST;
	b.n = RACE_PAGES;
	for (size_t i = 0; i < RACE_PAGES; i++) {
		uint64_t *w = (uint64_t *)(f.map + (RACE_FIRST + i) * PG);

		w[0] = 0;
		w[256] = RACE_FIRST + i;
		w[511] = ~UINT64_C(0);
	}
	assert_int_equal(pthread_create(&wt, NULL, race_writer, &r), 0);
	assert_int_equal(pthread_create(&rt, NULL, race_reader, &r), 0);
	assert_int_equal(pthread_create(&bt, NULL, batch_churn, &b), 0);
	sleep_ms(1000);
	atomic_store(&r.stop, 1);
	atomic_store(&b.stop, 1);
	pthread_join(wt, NULL);
	pthread_join(rt, NULL);
	pthread_join(bt, NULL);
	print_message("batch race: %llu pages evicted, %llu back by batches (%llu kept: the "
		      "guest's); writer %llu passes, reader %llu reads\n",
		      (unsigned long long)b.moved, (unsigned long long)b.back,
		      (unsigned long long)f.vm->ahead.batch_kept, (unsigned long long)r.passes,
		      (unsigned long long)r.reads);
	assert_int_equal(b.errors, 0);
	assert_int_equal(r.bad, 0);
	assert_int_equal(r.stale, 0);
	assert_true(b.moved > 0 && b.back > 0);
	assert_int_equal(f.vm->st->fault_errors, 0);
	for (size_t i = 0; i < RACE_PAGES; i++) {
		uint64_t *w = (uint64_t *)(f.map + (RACE_FIRST + i) * PG);

		assert_true(w[0] == r.counters[i] && w[511] == ~r.counters[i]);
	}
	check_homes(&f, 0, -1);
	fx_close(&f);
}

/* Discards racing batches and read-ahead: a thread evicts runs 8-15 and brings them back
 * with batches, over and over, while the test thread rewrites them, discards a seeded
 * sub-range and reads them all in address order (read-ahead windows over the discarded
 * pages): discarded pages read zero, the rest its last bytes (test_discard_race's check). */
static void test_discard_batch_race(void **state)
{
	static struct batcher b;
	static struct fx f;
	uint64_t seed = 0xd1ba, rng = 0x9e3779b97f4a7c15ull, until;
	uint32_t gen = 0;
	size_t bad = 0;
	pthread_t t;

	fx_readahead = MIB;
	fx_first_touch = 64 * KIB;
	fx_open(&f, 4 * MIB, 0, 8 * MIB, 64 * KIB);
	memset(&b, 0, sizeof(b));
	b.f = &f;
	b.first = 128;
	b.n = 128;
	assert_int_equal(pthread_create(&t, NULL, batch_churn, &b), 0);
	until = now_ms() + 700;
	while (now_ms() < until && !bad)
		bad = discard_round(&f, seed, &rng, ++gen, true);
	atomic_store(&b.stop, 1);
	pthread_join(t, NULL);
	print_message("discard batch race: %u rounds, %llu pages evicted, %llu back by batches, "
		      "%llu read ahead\n",
		      gen, (unsigned long long)b.moved, (unsigned long long)b.back,
		      (unsigned long long)f.vm->ahead.readahead_pages);
	assert_int_equal(bad, 0);
	assert_int_equal(b.errors, 0);
	assert_true(b.moved > 0);
	assert_int_equal(f.vm->st->fault_errors, 0);
	check_homes(&f, 0, -1);
	fx_close(&f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_teardown(test_create_checks_and_ownership, cleanup),
	    cmocka_unit_test_teardown(test_zero_pages, cleanup),
	    cmocka_unit_test_teardown(test_evict_run_direct, cleanup),
	    cmocka_unit_test_teardown(test_eviction_race, cleanup),
	    cmocka_unit_test_teardown(test_evict_wakes_writers_when_unprotect_fails, cleanup),
	    cmocka_unit_test_teardown(test_enomem_parks_then_serves, cleanup),
	    cmocka_unit_test_teardown(test_fault_thread_restart, cleanup),
	    cmocka_unit_test_teardown(test_fault_thread_dies_again_stops_guest, cleanup),
	    cmocka_unit_test_teardown(test_discard, cleanup),
	    cmocka_unit_test_teardown(test_evict_keeps_discarded_hole, cleanup),
	    cmocka_unit_test_teardown(test_discard_during_arming, cleanup),
	    cmocka_unit_test_teardown(test_discard_race, cleanup),
	    cmocka_unit_test_teardown(test_patterns_under_eviction, cleanup),
	    cmocka_unit_test_teardown(test_tier_full, cleanup),
	    cmocka_unit_test_teardown(test_stats_json, cleanup),
	    cmocka_unit_test_teardown(test_no_eviction_under_limit, cleanup),
	    cmocka_unit_test_teardown(test_memfd_offset, cleanup),
	    cmocka_unit_test_teardown(test_release, cleanup),
	    cmocka_unit_test_teardown(test_disk_prefetch_batch, cleanup),
	    cmocka_unit_test_teardown(test_prefetch_round_tiers, cleanup),
	    cmocka_unit_test_teardown(test_first_touch_block, cleanup),
	    cmocka_unit_test_teardown(test_first_touch_race, cleanup),
	    cmocka_unit_test_teardown(test_readahead, cleanup),
	    cmocka_unit_test_teardown(test_prefetch_batch, cleanup),
	    cmocka_unit_test_teardown(test_batch_race, cleanup),
	    cmocka_unit_test_teardown(test_discard_batch_race, cleanup),
	};
	char err[256];
	int fd;

	if (uffd_open(&fd, NULL, err, sizeof(err))) {
		printf("SKIP: %s\n", err);
		return 77;
	}
	close(fd);
	/* TEST_FILTER=test_discard_race runs that test alone: for loops that chase a race */
	if (getenv("TEST_FILTER"))
		cmocka_set_test_filter(getenv("TEST_FILTER"));
	return cmocka_run_group_tests(tests, NULL, NULL);
}
