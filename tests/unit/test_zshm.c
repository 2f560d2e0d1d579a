/* test_zshm: one managed VM in-process with a compressed shm tier (uffd-mgr/zshm.c, and its
 * use by evict.c, fault.c and vm.c), in the manner of test_vm.c: this process is "QEMU" (a
 * memfd registered with a userfaultfd) and the daemon (vm_create, vm_start: the real fault
 * thread and evictor); test threads are vCPUs. Every page's bytes are a function of (seed,
 * page, generation, word) and of a kind drawn from them: incompressible (random words), zero,
 * a 64-byte pattern repeated, half random, 7/8 random. Every check reads every word.
 *
 * What it stresses:
 *  - evict_run on a run of mixed pages: zero pages dropped (no storage), the others in one
 *    blob that every entry names (same grains, indexes in guest order), compressed, in fewer
 *    grains than their bytes, and the stats say so; holes punched; one read brings back the
 *    whole blob with one fault and frees it; then byte-exact;
 *  - a run of incompressible pages: stored raw, back byte-exact;
 *  - a run of 32 pages: two blobs of 16, a fault brings back only the one holding its page;
 *  - the disk batch (prefetch, read-ahead) unpacks blobs into its stage and installs them;
 *  - discards (punch + MADV_DONTNEED, i.e. UFFD_EVENT_REMOVE) of part of a blob: those pages
 *    read zero, the blob lives on for the rest; discarding its last pages frees it;
 *  - lz4 and zstd (64K runs, and lz4 with 4K runs) under a guest four times its
 *    resident_max with a small shm tier and a disk
 *    tier: the evictor stores blobs and demotes them (unpacked) to disk past the watermark,
 *    faults come back from both tiers, and every page reads back byte-exact; then "one home
 *    per page" (each compressed page's blob unpacks to its bytes; the pool holds exactly the
 *    blobs entries name) and a bring-back of every tiered page (what a release does) leaves
 *    the pool empty and every page exact.
 * Skips (77) with the reason when no userfaultfd with the needed features can be opened. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "shmswap/shmpool.h"
#include "shmswap/zpool.h"
#include "uffd-mgr/evict.h"
#include "uffd-mgr/fault.h"
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
	int memfd;
	uint8_t *map;
	size_t len, npages;
	int shim_uffd;
	struct vm *vm;
	char dir[64];
};

static struct proto_register req;
static struct fx *open_fx;

static void sleep_ms(long ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};

	nanosleep(&ts, NULL);
}

/* Guest RAM of len bytes and a running VM with a compressed shm tier (alg) and, when disk_max
 * is not 0, a disk tier in a scratch directory. */
static void fx_open(struct fx *f, size_t len, uint64_t resident_max, uint64_t shm_max,
		    uint64_t run_size, int alg, uint64_t disk_max)
{
	struct policy pol;
	uint64_t features;
	char err[256];
	int uffd, r;

	memset(f, 0, sizeof(*f));
	f->len = len;
	f->npages = len / PG;
	f->memfd = memfd_create("memory-backend-memfd", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	assert_true(f->memfd >= 0);
	assert_int_equal(ftruncate(f->memfd, (off_t)len), 0);
	assert_int_equal(fcntl(f->memfd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW), 0);
	f->map = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, f->memfd, 0);
	assert_true(f->map != MAP_FAILED);
	r = uffd_open(&uffd, &features, err, sizeof(err));
	if (r) {
		print_message("SKIP: %s\n", err);
		exit(77);
	}
	assert_int_equal(uffd_register(uffd, (uint64_t)(uintptr_t)f->map, len), 0);
	f->shim_uffd = dup(uffd);

	memset(&req, 0, sizeof(req));
	proto_hdr_init(&req.hdr, PROTO_REGISTER, sizeof(req));
	req.host_addr = (uint64_t)(uintptr_t)f->map;
	req.length = len;
	req.pid = getpid();
	req.uffd_features = features;
	snprintf(req.vm_name, sizeof(req.vm_name), "test-zvm");
	snprintf(req.block_name, sizeof(req.block_name), "memory-backend-memfd");

	policy_defaults(&pol);
	pol.resident_max = resident_max;
	pol.shm_max = shm_max;
	pol.run_size = run_size;
	pol.shm_compress = alg;
	if (disk_max) {
		snprintf(f->dir, sizeof(f->dir), "/var/tmp/test-zshm.XXXXXX");
		assert_non_null(mkdtemp(f->dir));
		snprintf(pol.disk_path, sizeof(pol.disk_path), "%s/%%n.swap", f->dir);
		pol.disk_max = disk_max;
	}
	err[0] = 0;
	if (vm_create(&req, uffd, dup(f->memfd), &pol, &f->vm, err, sizeof(err)))
		print_error("vm_create: %s\n", err);
	assert_non_null(f->vm);
	open_fx = f;
	assert_int_equal(vm_start(f->vm), 0);
}

static void fx_close(struct fx *f)
{
	vm_destroy(f->vm);
	munmap(f->map, f->len);
	close(f->memfd);
	close(f->shim_uffd);
	if (f->dir[0])
		rmdir(f->dir);
	open_fx = NULL;
}

static int cleanup(void **state)
{
	if (open_fx)
		fx_close(open_fx);
	return 0;
}

/* ---- page contents ---- */

enum kind { K_RANDOM, K_ZERO, K_PATTERN, K_HALF, K_SEVEN_EIGHTHS, K_NKINDS };

static uint64_t mix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

/* The kind of page p in generation gen: drawn from them, unless forced (k >= 0). */
static enum kind kind_of(uint64_t seed, size_t p, uint32_t gen, int k)
{
	return k >= 0 ? (enum kind)k : (enum kind)(mix(seed ^ (p << 16) ^ gen) % K_NKINDS);
}

static uint64_t word_of(uint64_t seed, size_t p, uint32_t gen, enum kind k, unsigned w)
{
	static const unsigned cut[] = {WORDS, 0, 0, WORDS / 2, WORDS * 7 / 8};

	if (k == K_ZERO)
		return 0;
	return mix(seed ^ (p << 20) ^ ((uint64_t)gen << 44) ^ (w < cut[k] ? w : WORDS + w % 8)) | 1;
}

static void write_page(uint8_t *dst, uint64_t seed, size_t p, uint32_t gen, int k)
{
	uint64_t *w = (uint64_t *)dst;
	enum kind kd = kind_of(seed, p, gen, k);

	for (unsigned i = 0; i < WORDS; i++)
		w[i] = word_of(seed, p, gen, kd, i);
}

static size_t bad_words(const uint8_t *src, uint64_t seed, size_t p, uint32_t gen, int k)
{
	const uint64_t *w = (const uint64_t *)src;
	enum kind kd = kind_of(seed, p, gen, k);
	size_t bad = 0;

	for (unsigned i = 0; i < WORDS; i++)
		bad += w[i] != word_of(seed, p, gen, kd, i);
	return bad;
}

static void verify(struct fx *f, size_t first, size_t n, uint64_t seed, uint32_t gen, int k)
{
	for (size_t p = first; p < first + n; p++) {
		size_t bad = bad_words(f->map + p * PG, seed, p, gen, k);

		if (bad)
			print_error("page %zu: %zu words wrong\n", p, bad);
		assert_int_equal(bad, 0);
	}
}

static void verify_zero(struct fx *f, size_t first, size_t n)
{
	for (size_t p = first; p < first + n; p++)
		for (unsigned i = 0; i < WORDS; i++)
			assert_int_equal(((uint64_t *)(f->map + p * PG))[i], 0);
}

/* ---- looking at the VM ---- */

static void snap(struct fx *f, struct vm_stats *s)
{
	pthread_mutex_lock(&f->vm->lock);
	*s = *f->vm->st;
	pthread_mutex_unlock(&f->vm->lock);
}

static enum page_state state_of(struct fx *f, size_t p)
{
	enum page_state st;

	pthread_mutex_lock(&f->vm->lock);
	st = pagemap_state(f->vm->pm, p);
	pthread_mutex_unlock(&f->vm->lock);
	return st;
}

static struct zpool_ref ref_of(struct fx *f, size_t p)
{
	struct zpool_ref r;

	pthread_mutex_lock(&f->vm->lock);
	zpool_ref_unpack(pagemap_slot(f->vm->pm, p), &r);
	pthread_mutex_unlock(&f->vm->lock);
	return r;
}

static int has_data(struct fx *f, size_t p)
{
	return lseek(f->memfd, (off_t)(p * PG), SEEK_DATA) == (off_t)(p * PG);
}

static uint64_t removes(struct fx *f)
{
	struct vm_stats s;

	snap(f, &s);
	return s.removes;
}

/* Discards pages [first, first + n) as QEMU does, and waits for the REMOVE to be applied. */
static void discard(struct fx *f, size_t first, size_t n)
{
	uint64_t before = removes(f);

	assert_int_equal(fallocate(f->memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
				   (off_t)(first * PG), (off_t)(n * PG)),
			 0);
	assert_int_equal(madvise(f->map + first * PG, n * PG, MADV_DONTNEED), 0);
	for (int i = 0; i < 1000 && removes(f) == before; i++)
		sleep_ms(2);
	assert_true(removes(f) > before);
}

/* Whether the pool empties within 2 s. A fault's UFFDIO_COPY wakes the vCPU as soon as its
 * page is in, while the fault thread goes on to the blob's other spans, then frees it. */
static bool pool_drains(struct fx *f)
{
	for (int i = 0; i < 1000 && shmpool_used(f->vm->shm); i++)
		sleep_ms(2);
	return shmpool_used(f->vm->shm) == 0;
}

/* One home per page, under the lock: resident pages are data in the memfd, every other page a
 * hole; each compressed page's blob unpacks to its bytes (gen known; kind -1: drawn); with
 * nothing in flight the pool holds exactly the grains of the blobs the entries name. */
static void check_homes(struct fx *f, uint64_t seed, int gen, int kind)
{
	struct vm *vm = f->vm;
	uint8_t *buf = malloc(vm->pol.run_size), *owner = calloc(shmpool_slots(vm->shm), 1);
	uint64_t grains = 0;
	size_t wrong = 0, evicting = 0;

	assert_true(buf && owner);
	pthread_mutex_lock(&vm->lock);
	for (size_t p = 0; p < f->npages; p++) {
		enum page_state st = pagemap_state(vm->pm, p);
		struct zpool_ref r;

		if (pagemap_flags(vm->pm, p) & PF_EVICTING) {
			evicting++;
			continue;
		}
		wrong += (st == PS_RESIDENT) != has_data(f, p);
		assert_true(st != PS_SHM); /* a pool of grains holds blobs only */
		if (st != PS_ZSHM)
			continue;
		zpool_ref_unpack(pagemap_slot(vm->pm, p), &r);
		if (!owner[r.grain]) {
			owner[r.grain] = 1;
			grains += r.grains;
		}
		if (zpool_load(vm->z, &r, buf, vm->pol.run_size) <= (int)r.index ||
		    (gen >= 0 && bad_words(buf + r.index * PG, seed, p, (uint32_t)gen, kind))) {
			print_error("page %zu: its blob does not hold its bytes\n", p);
			wrong++;
		}
	}
	if (!evicting && shmpool_used(vm->shm) != grains) {
		print_error("pool uses %llu grains, the entries name %llu\n",
			    (unsigned long long)shmpool_used(vm->shm), (unsigned long long)grains);
		wrong++;
	}
	pthread_mutex_unlock(&vm->lock);
	free(buf);
	free(owner);
	assert_int_equal(wrong, 0);
}

static uint64_t get_u64(struct json_object *o, const char *a, const char *b)
{
	struct json_object *v;

	assert_true(json_object_object_get_ex(o, a, &v));
	if (b)
		assert_true(json_object_object_get_ex(v, b, &v));
	return (uint64_t)json_object_get_int64(v);
}

/* What stats_vm_json says of the compressed tier (README.md, Stats): its form, the guest bytes
 * it holds and the pool bytes they take, the blobs. */
static void stats_check(struct fx *f, const char *alg, uint64_t pages, uint64_t grains)
{
	struct json_object *j = stats_vm_json(f->vm, "running"), *z, *v;

	assert_non_null(j);
	assert_true(json_object_object_get_ex(j, "zshm", &z));
	assert_true(json_object_object_get_ex(z, "compress", &v));
	assert_string_equal(json_object_get_string(v), alg);
	assert_int_equal(get_u64(j, "shm_bytes", NULL), pages * PG);
	assert_int_equal(get_u64(j, "shm_slots_used", NULL), grains);
	assert_int_equal(get_u64(j, "shm_stored_bytes", NULL), grains * ZPOOL_GRAIN);
	assert_int_equal(get_u64(j, "zshm", "pages"), pages);
	assert_int_equal(get_u64(j, "zshm", "blobs"), 1);
	assert_int_equal(get_u64(j, "zshm", "raw_blobs"), 0);
	assert_int_equal(get_u64(j, "zshm", "stored_pages"), pages);
	assert_int_equal(get_u64(j, "zshm", "stored_bytes"), grains * ZPOOL_GRAIN);
	assert_int_equal(get_u64(j, "zshm", "errors"), 0);
	json_object_put(j);
}

/* ---- tests ---- */

static void test_evict_run_mixed(void **state)
{
	static struct fx f;
	static const int kinds[16] = {
	    K_RANDOM,  K_RANDOM,  K_RANDOM,  K_RANDOM,	K_ZERO, K_ZERO, K_ZERO, K_ZERO,
	    K_PATTERN, K_PATTERN, K_PATTERN, K_PATTERN, K_HALF, K_HALF, K_HALF, K_HALF};
	const uint64_t seed = 11;
	const size_t run = 32;
	struct vm_stats s;
	struct zpool_ref r0;

	fx_open(&f, 4 * MIB, 0, 8 * MIB, 64 * KIB, POLICY_COMPRESS_LZ4, 0);
	for (size_t i = 0; i < 16; i++)
		write_page(f.map + (run + i) * PG, seed, run + i, 1, kinds[i]);
	assert_int_equal(evict_run(f.vm, run), 16);
	snap(&f, &s);
	assert_int_equal(s.evict_pages, 16);
	assert_int_equal(s.evict_zero_pages, 4);
	assert_int_equal(s.zshm_blobs, 1);
	assert_int_equal(s.zshm_raw_blobs, 0);
	assert_int_equal(s.zshm_pages, 12);
	r0 = ref_of(&f, run);
	assert_int_equal(r0.alg, ZPOOL_LZ4);
	assert_true(r0.grains * ZPOOL_GRAIN < 12 * PG * 3 / 4);
	assert_int_equal(shmpool_used(f.vm->shm), r0.grains);
	for (size_t i = 0, idx = 0; i < 16; i++) {
		struct zpool_ref r = ref_of(&f, run + i);

		assert_false(has_data(&f, run + i));
		if (kinds[i] == K_ZERO) {
			assert_int_equal(state_of(&f, run + i), PS_ZERO);
			continue;
		}
		assert_int_equal(state_of(&f, run + i), PS_ZSHM);
		assert_true(r.grain == r0.grain && r.grains == r0.grains && r.alg == r0.alg);
		assert_int_equal(r.index, idx++);
	}
	check_homes(&f, seed, -1, -1);
	stats_check(&f, "lz4", 12, r0.grains);

	/* One fault brings back every page of the blob and frees it. */
	assert_int_equal(bad_words(f.map + (run + 9) * PG, seed, run + 9, 1, K_PATTERN), 0);
	assert_true(pool_drains(&f));
	snap(&f, &s);
	assert_int_equal(s.faults_shm, 1);
	assert_int_equal(s.faults_shm_pages, 12);
	for (size_t i = 0; i < 16; i++)
		assert_int_equal(state_of(&f, run + i), kinds[i] == K_ZERO ? PS_ZERO : PS_RESIDENT);
	for (size_t i = 0; i < 16; i++) {
		if (kinds[i] == K_ZERO)
			verify_zero(&f, run + i, 1);
		else
			verify(&f, run + i, 1, seed, 1, kinds[i]);
	}
	snap(&f, &s);
	assert_int_equal(s.faults_shm, 1);
	assert_int_equal(s.fault_errors, 0);
	fx_close(&f);
}

static void test_incompressible_run(void **state)
{
	static struct fx f;
	const uint64_t seed = 12;
	struct vm_stats s;
	struct zpool_ref r;

	fx_open(&f, 4 * MIB, 0, 8 * MIB, 64 * KIB, POLICY_COMPRESS_ZSTD, 0);
	for (size_t p = 64; p < 80; p++)
		write_page(f.map + p * PG, seed, p, 1, p % 2 ? K_RANDOM : K_SEVEN_EIGHTHS);
	assert_int_equal(evict_run(f.vm, 64), 16);
	r = ref_of(&f, 70);
	assert_int_equal(r.alg, ZPOOL_RAW);
	assert_int_equal(r.grains, 16 * PG / ZPOOL_GRAIN);
	snap(&f, &s);
	assert_int_equal(s.zshm_raw_blobs, 1);
	check_homes(&f, seed, -1, -1);
	for (size_t p = 64; p < 80; p++)
		assert_int_equal(
		    bad_words(f.map + p * PG, seed, p, 1, p % 2 ? K_RANDOM : K_SEVEN_EIGHTHS), 0);
	assert_true(pool_drains(&f));
	snap(&f, &s);
	assert_int_equal(s.faults_shm, 1);
	assert_int_equal(s.faults_shm_pages, 16);
	fx_close(&f);
}

static void test_discard_part_of_blob(void **state)
{
	static struct fx f;
	const uint64_t seed = 13;

	fx_open(&f, 4 * MIB, 0, 8 * MIB, 64 * KIB, POLICY_COMPRESS_LZ4, 0);
	for (size_t p = 0; p < 32; p++)
		write_page(f.map + p * PG, seed, p, 1, K_HALF);
	assert_int_equal(evict_run(f.vm, 0), 16);
	assert_int_equal(evict_run(f.vm, 16), 16);
	uint64_t both = shmpool_used(f.vm->shm), one = ref_of(&f, 0).grains;

	/* Pages 4-7 of the first blob go: the blob stays for the other twelve. */
	discard(&f, 4, 4);
	for (size_t p = 4; p < 8; p++)
		assert_int_equal(state_of(&f, p), PS_ZERO);
	assert_int_equal(shmpool_used(f.vm->shm), both);
	check_homes(&f, seed, 1, K_HALF);
	/* Every page of the second blob goes: it is freed by the discard alone. */
	discard(&f, 16, 16);
	assert_int_equal(shmpool_used(f.vm->shm), one);
	check_homes(&f, seed, 1, K_HALF);
	verify_zero(&f, 4, 4);
	verify_zero(&f, 16, 16);
	verify(&f, 0, 4, seed, 1, K_HALF);
	verify(&f, 8, 8, seed, 1, K_HALF);
	assert_true(pool_drains(&f));
	fx_close(&f);
}

/* A run larger than a blob (128K: 32 pages) is stored as blobs of 16 pages; a fault brings
 * back the blob holding its page, not the whole run. */
static void test_large_run_in_blobs(void **state)
{
	static struct fx f;
	const uint64_t seed = 14;
	struct zpool_ref a, b;
	struct vm_stats s;

	fx_open(&f, 4 * MIB, 0, 8 * MIB, 128 * KIB, POLICY_COMPRESS_LZ4, 0);
	for (size_t p = 64; p < 96; p++)
		write_page(f.map + p * PG, seed, p, 1, K_HALF);
	assert_int_equal(evict_run(f.vm, 64), 32);
	a = ref_of(&f, 64);
	b = ref_of(&f, 80);
	assert_true(a.grain != b.grain);
	for (size_t i = 0; i < 16; i++) {
		assert_true(ref_of(&f, 64 + i).grain == a.grain && ref_of(&f, 64 + i).index == i);
		assert_true(ref_of(&f, 80 + i).grain == b.grain && ref_of(&f, 80 + i).index == i);
	}
	check_homes(&f, seed, 1, K_HALF);
	verify(&f, 85, 1, seed, 1, K_HALF);
	for (int i = 0; i < 1000 && shmpool_used(f.vm->shm) != a.grains; i++)
		sleep_ms(2);
	assert_int_equal(shmpool_used(f.vm->shm), a.grains);
	snap(&f, &s);
	assert_int_equal(s.faults_shm_pages, 16);
	for (size_t i = 0; i < 16; i++)
		assert_int_equal(state_of(&f, 64 + i), PS_ZSHM);
	verify(&f, 64, 32, seed, 1, K_HALF);
	assert_true(pool_drains(&f));
	fx_close(&f);
}

/* The disk batch (prefetch, read-ahead: fault_batch_add_run) brings compressed runs back
 * too, unpacked into each run's part of the stage: a stage of two runs takes two, refuses a
 * third, and every page comes back exact, the blobs freed. */
static void test_batch_brings_back_blobs(void **state)
{
	static struct fx f;
	static struct disk_batch b;
	static uint8_t stage[2 * 64 * KIB];
	const uint64_t seed = 15;

	fx_open(&f, 4 * MIB, 0, 8 * MIB, 64 * KIB, POLICY_COMPRESS_ZSTD, 0);
	for (size_t p = 0; p < 48; p++)
		write_page(f.map + p * PG, seed, p, 1, -1);
	for (size_t r = 0; r < 48; r += 16)
		assert_int_equal(evict_run(f.vm, r), 16);
	b = (struct disk_batch){
	    .stage = stage, .stage_pages = 2 * 16, .used = 16, .demand_page = SIZE_MAX};
	pthread_mutex_lock(&f.vm->lock);
	assert_int_equal(fault_batch_add_run(f.vm, &b, 0), 0);
	assert_int_equal(fault_batch_add_run(f.vm, &b, 16), 0);
	b.used = 17; /* a run's room no longer there */
	assert_int_equal(fault_batch_add_run(f.vm, &b, 32), -ENOSPC);
	for (size_t p = 0; p < 48; p++) {
		enum page_state st = pagemap_state(f.vm->pm, p);

		assert_true(p < 32 ? st == PS_RESIDENT || st == PS_ZERO : st != PS_RESIDENT);
	}
	pthread_mutex_unlock(&f.vm->lock);
	assert_int_equal(b.nsegs, 0);
	verify(&f, 0, 48, seed, 1, -1);
	assert_true(pool_drains(&f));
	fx_close(&f);
}

/* vCPUs: each writes then verifies its half of the pages, for gens generations. */
struct vcpu {
	pthread_t tid;
	struct fx *f;
	int id;
	uint64_t seed;
	uint32_t gens;
	size_t bad;
};

static void *vcpu_main(void *arg)
{
	struct vcpu *c = arg;
	size_t mine = c->f->npages / 2;

	for (uint32_t g = 1; g <= c->gens; g++) {
		for (size_t i = 0; i < mine; i++) {
			size_t p = ((i * 769 + g * 131) % mine) * 2 + (size_t)c->id;

			write_page(c->f->map + p * PG, c->seed, p, g, -1);
		}
		for (size_t i = 0; i < mine; i++) {
			size_t p = ((i * 1031 + g * 17) % mine) * 2 + (size_t)c->id;

			c->bad += bad_words(c->f->map + p * PG, c->seed, p, g, -1);
		}
	}
	return NULL;
}

static void under_pressure(int alg, uint64_t run_size)
{
	static struct fx f;
	struct vcpu c[2];
	const uint64_t seed = 0x5eed + (uint64_t)alg;
	const uint32_t gens = 2;
	struct vm_stats s;

	/* 8 MiB of guest, 2 MiB resident, 1 MiB of shm: most of it goes on to disk. */
	fx_open(&f, 8 * MIB, 2 * MIB, 1 * MIB, run_size, alg, 64 * MIB);
	for (int i = 0; i < 2; i++) {
		c[i] = (struct vcpu){.f = &f, .id = i, .seed = seed, .gens = gens};
		assert_int_equal(pthread_create(&c[i].tid, NULL, vcpu_main, &c[i]), 0);
	}
	for (int i = 0; i < 2; i++) {
		pthread_join(c[i].tid, NULL);
		assert_int_equal(c[i].bad, 0);
	}
	verify(&f, 0, f.npages, seed, gens, -1);
	snap(&f, &s);
	print_message("%s run %lluK: blobs %llu (raw %llu) pages %llu bytes %llu; demoted %llu; "
		      "faults shm %llu (%llu pages) disk %llu; errors %llu\n",
		      zpool_alg_name((unsigned)alg), (unsigned long long)(run_size >> 10),
		      (unsigned long long)s.zshm_blobs, (unsigned long long)s.zshm_raw_blobs,
		      (unsigned long long)s.zshm_pages, (unsigned long long)s.zshm_bytes,
		      (unsigned long long)s.demote_pages, (unsigned long long)s.faults_shm,
		      (unsigned long long)s.faults_shm_pages, (unsigned long long)s.faults_disk,
		      (unsigned long long)s.fault_errors);
	assert_true(s.zshm_blobs > 0);
	assert_true(s.zshm_raw_blobs > 0);
	assert_true(s.zshm_bytes < s.zshm_pages * PG);
	assert_true(s.demote_pages > 0);
	assert_true(s.faults_shm > 0);
	assert_true(s.faults_disk > 0);
	assert_int_equal(s.fault_errors, 0);
	assert_int_equal(s.zshm_errors, 0);
	assert_int_equal(s.demote_errors, 0);

	/* Quiet the evictor (a release does so first), then check the homes and bring every
	 * tiered page back as a release does. */
	pthread_mutex_lock(&f.vm->lock);
	f.vm->evict_stop = true;
	pthread_cond_broadcast(&f.vm->evict_cv);
	pthread_mutex_unlock(&f.vm->lock);
	pthread_join(f.vm->evict_tid, NULL);
	f.vm->evict_joined = true;
	check_homes(&f, seed, gens, -1);
	for (size_t p = 0; p < f.npages; p++) {
		int r;

		while ((r = fault_bring_back(f.vm, f.vm->evict_io, f.vm->evict_stage, p)) ==
			   -EAGAIN ||
		       r == -EBUSY)
			sleep_ms(1);
		assert_int_equal(r, 0);
	}
	assert_int_equal(shmpool_used(f.vm->shm), 0);
	assert_int_equal(pagemap_count(f.vm->pm, PS_ZSHM), 0);
	assert_int_equal(pagemap_count(f.vm->pm, PS_DISK), 0);
	verify(&f, 0, f.npages, seed, gens, -1);
	fx_close(&f);
}

static void test_lz4_under_pressure(void **state)
{
	under_pressure(POLICY_COMPRESS_LZ4, 64 * KIB);
}

static void test_zstd_under_pressure(void **state)
{
	under_pressure(POLICY_COMPRESS_ZSTD, 64 * KIB);
}

static void test_lz4_page_runs_under_pressure(void **state)
{
	under_pressure(POLICY_COMPRESS_LZ4, 4 * KIB);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_teardown(test_evict_run_mixed, cleanup),
	    cmocka_unit_test_teardown(test_incompressible_run, cleanup),
	    cmocka_unit_test_teardown(test_discard_part_of_blob, cleanup),
	    cmocka_unit_test_teardown(test_large_run_in_blobs, cleanup),
	    cmocka_unit_test_teardown(test_batch_brings_back_blobs, cleanup),
	    cmocka_unit_test_teardown(test_lz4_under_pressure, cleanup),
	    cmocka_unit_test_teardown(test_zstd_under_pressure, cleanup),
	    cmocka_unit_test_teardown(test_lz4_page_runs_under_pressure, cleanup),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
