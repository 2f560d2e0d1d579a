/* test_zpool: the compressed shm tier's store (shmswap/zpool.c) and the grained shm pool under
 * it (shmswap/shmpool.c cut into 256-byte units).
 *
 * What it stresses:
 *  - references: every field packs into 56 bits and back, at its bounds;
 *  - byte-exact round trips for lz4 and zstd of runs of 1 to 512 pages whose pages are
 *    incompressible (random), compressible (a repeated pattern), half and half, 7/8 random
 *    and mixed in one run: a run that does not shrink by a quarter is stored raw (no header,
 *    a whole page per page, readable in place), any other compressed; the grains a blob takes
 *    match what zpool_store said;
 *  - with compression off (ZPOOL_RAW) every blob is raw;
 *  - a full pool: -ENOSPC, nothing taken; a fragmented pool refuses a blob longer than any free
 *    extent rather than splitting it;
 *  - the grained pool's memory: freeing a blob gives back exactly the pages left with no
 *    grain in use (a page shared with a live blob keeps its memory and the blob's bytes);
 *  - damage, as a hostile QEMU could write into its own pool: a header whose magic, algorithm
 *    or length disagrees with the ref, an index past the blob's pages, a ref past the pool,
 *    and compressed bytes overwritten with garbage: check and load say -EUCLEAN, never crash
 *    and never write past the buffer;
 *  - adoption: a zpool over an adopted descriptor of the same pool loads every blob after the
 *    claims, refuses a second claim of a blob (-EEXIST) and a damaged one, and settling punches
 *    every page no claimed blob uses. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "shmswap/shmpool.h"
#include "shmswap/zpool.h"

#define PG    4096u
#define WORDS (PG / 8)

static uint64_t mix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

enum kind { K_RANDOM, K_PATTERN, K_HALF, K_SEVEN_EIGHTHS, K_NKINDS };

/* Page p of kind k: random words up to a cut, a 64-byte pattern after it. */
static void fill(uint8_t *dst, size_t p, enum kind k, uint64_t seed)
{
	static const unsigned cut[] = {WORDS, 0, WORDS / 2, WORDS * 7 / 8};
	uint64_t *w = (uint64_t *)dst;

	for (unsigned i = 0; i < WORDS; i++)
		w[i] = mix(seed ^ (p << 20) ^ (i < cut[k] ? i : WORDS + i % 8));
}

static struct shmpool *grained(uint64_t bytes)
{
	struct shmpool *p = NULL;

	assert_int_equal(shmpool_create_unit("test-zpool", bytes, ZPOOL_GRAIN, &p), 0);
	assert_int_equal(shmpool_unit(p), ZPOOL_GRAIN);
	assert_int_equal(shmpool_slots(p), bytes / PG * (PG / ZPOOL_GRAIN));
	return p;
}

static struct zpool *zmake(struct shmpool *p, enum zpool_alg alg)
{
	struct zpool *z = NULL;

	assert_int_equal(zpool_create(p, alg, &z), 0);
	return z;
}

/* Whether the pool memfd's page holding grain g is in memory. */
static int page_in(struct shmpool *p, uint64_t grain)
{
	off_t off = (off_t)(grain * ZPOOL_GRAIN / PG * PG);

	return lseek(shmpool_fd(p), off, SEEK_DATA) == off;
}

static void test_refs(void **state)
{
	struct zpool_ref a = {.grain = 0xffffffffull, .grains = 8192, .index = 511, .alg = 2}, b;
	uint64_t v = zpool_ref_pack(&a);

	assert_true(v < (1ull << 56));
	zpool_ref_unpack(v, &b);
	assert_true(b.grain == a.grain && b.grains == a.grains && b.index == a.index &&
		    b.alg == a.alg);
	a = (struct zpool_ref){.grain = 0, .grains = 1, .index = 0, .alg = 0};
	zpool_ref_unpack(zpool_ref_pack(&a), &b);
	assert_true(b.grain == 0 && b.grains == 1 && b.index == 0 && b.alg == 0);
	for (int i = 0; i < 1000; i++) {
		uint64_t r = mix((uint64_t)i);

		a = (struct zpool_ref){.grain = r & 0xffffffff,
				       .grains = (uint32_t)(r >> 32) % 8192 + 1,
				       .index = (uint32_t)(r >> 45) % 512,
				       .alg = (unsigned)(r >> 60) % 3};
		zpool_ref_unpack(zpool_ref_pack(&a), &b);
		assert_true(b.grain == a.grain && b.grains == a.grains && b.index == a.index &&
			    b.alg == a.alg);
	}
	assert_string_equal(zpool_alg_name(ZPOOL_LZ4), "lz4");
	assert_string_equal(zpool_alg_name(ZPOOL_ZSTD), "zstd");
	assert_string_equal(zpool_alg_name(ZPOOL_RAW), "raw");
}

/* Stores n pages of the given kinds (kinds[i % nk]) and loads them back byte for byte. Returns
 * the ref; *raw says whether it was stored raw. */
static struct zpool_ref round_trip(struct zpool *z, uint32_t n, const enum kind *kinds, size_t nk,
				   uint64_t seed, uint8_t *src, uint8_t *dst)
{
	struct zpool_ref ref;
	uint32_t clen;
	int pages;

	for (uint32_t i = 0; i < n; i++)
		fill(src + (size_t)i * PG, i, kinds[i % nk], seed);
	assert_int_equal(zpool_store(z, src, n, &ref, &clen), 0);
	assert_int_equal(ref.index, 0);
	assert_int_equal(ref.grains, (clen + ZPOOL_GRAIN - 1) / ZPOOL_GRAIN);
	if (ref.alg == ZPOOL_RAW)
		assert_int_equal(clen, n * PG);
	else
		assert_true(clen <= n * PG * 3 / 4);
	assert_int_equal(zpool_check(z, &ref), (int)n);
	memset(dst, 0x5a, (size_t)ZPOOL_MAX_PAGES * PG);
	pages = zpool_load(z, &ref, dst, (size_t)ZPOOL_MAX_PAGES * PG);
	assert_int_equal(pages, (int)n);
	assert_memory_equal(src, dst, (size_t)n * PG);
	for (uint32_t i = 0; i < n; i++) {
		struct zpool_ref one = ref;
		const uint8_t *in_place;

		one.index = i;
		in_place = zpool_raw_page(z, &one);
		assert_true(ref.alg == ZPOOL_RAW ? in_place != NULL : in_place == NULL);
		if (in_place)
			assert_memory_equal(in_place, src + (size_t)i * PG, PG);
	}
	return ref;
}

static void alg_round_trips(enum zpool_alg alg)
{
	static const enum kind rnd[] = {K_RANDOM}, pat[] = {K_PATTERN}, half[] = {K_HALF},
			       seven[] = {K_SEVEN_EIGHTHS},
			       mixed[] = {K_RANDOM, K_PATTERN, K_HALF, K_SEVEN_EIGHTHS};
	static const uint32_t sizes[] = {1, 2, 16, 511, 512};
	struct shmpool *p = grained(64u << 20);
	struct zpool *z = zmake(p, alg);
	uint8_t *src = malloc((size_t)ZPOOL_MAX_PAGES * PG), *dst = malloc(ZPOOL_MAX_PAGES * PG);
	struct zpool_ref r;

	assert_true(src && dst);
	for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
		uint32_t n = sizes[s];

		r = round_trip(z, n, rnd, 1, n, src, dst);
		assert_int_equal(r.alg, ZPOOL_RAW); /* incompressible: kept as it is */
		zpool_free(z, &r);
		r = round_trip(z, n, seven, 1, n, src, dst);
		assert_int_equal(r.alg, ZPOOL_RAW); /* saves less than a quarter */
		zpool_free(z, &r);
		r = round_trip(z, n, pat, 1, n, src, dst);
		assert_int_equal(r.alg, alg);
		assert_true(r.grains * ZPOOL_GRAIN <= n * PG / 4 + ZPOOL_GRAIN);
		zpool_free(z, &r);
		r = round_trip(z, n, half, 1, n, src, dst);
		assert_int_equal(r.alg, alg);
		zpool_free(z, &r);
		r = round_trip(z, n, mixed, 4, n, src, dst);
		if (n >= 4) /* 1/4 random, 1/4 nearly: about 40% saved */
			assert_int_equal(r.alg, alg);
		zpool_free(z, &r);
	}
	assert_int_equal(shmpool_used(p), 0);
	free(src);
	free(dst);
	zpool_destroy(z);
	shmpool_destroy(p);
}

static void test_lz4(void **state)
{
	alg_round_trips(ZPOOL_LZ4);
}

static void test_zstd(void **state)
{
	alg_round_trips(ZPOOL_ZSTD);
}

static void test_off_stores_raw(void **state)
{
	static const enum kind pat[] = {K_PATTERN};
	struct shmpool *p = grained(4u << 20);
	struct zpool *z = zmake(p, ZPOOL_RAW), *bad = NULL;
	uint8_t *src = malloc((size_t)ZPOOL_MAX_PAGES * PG), *dst = malloc(ZPOOL_MAX_PAGES * PG);
	struct zpool_ref r = round_trip(z, 8, pat, 1, 3, src, dst);
	struct shmpool *slots = NULL, *odd = NULL;

	assert_int_equal(r.alg, ZPOOL_RAW);
	assert_int_equal(r.grains, 8 * PG / ZPOOL_GRAIN);
	zpool_free(z, &r);
	/* A pool of 4 KiB slots cannot hold blobs; nor is there a fourth algorithm. */
	assert_int_equal(shmpool_create("x", 1 << 20, &slots), 0);
	assert_int_equal(zpool_create(slots, ZPOOL_LZ4, &bad), -EINVAL);
	assert_int_equal(zpool_create(p, (enum zpool_alg)3, &bad), -EINVAL);
	assert_int_equal(shmpool_create_unit("x", 1 << 20, 100, &odd), -EINVAL);
	shmpool_destroy(slots);
	zpool_destroy(NULL);
	free(src);
	free(dst);
	zpool_destroy(z);
	shmpool_destroy(p);
}

static void test_full_and_fragmented(void **state)
{
	static const enum kind rnd[] = {K_RANDOM};
	struct shmpool *p = grained(64 * PG); /* 1024 grains */
	struct zpool *z = zmake(p, ZPOOL_LZ4);
	uint8_t *src = malloc((size_t)ZPOOL_MAX_PAGES * PG), *dst = malloc(ZPOOL_MAX_PAGES * PG);
	struct zpool_ref r[64], big;
	uint32_t clen;

	/* 64 raw one-page blobs fill it; one more has no room and takes nothing. */
	for (int i = 0; i < 64; i++)
		r[i] = round_trip(z, 1, rnd, 1, (uint64_t)i, src, dst);
	assert_int_equal(shmpool_used(p), 1024);
	fill(src, 0, K_RANDOM, 99);
	assert_int_equal(zpool_store(z, src, 1, &big, &clen), -ENOSPC);
	assert_int_equal(shmpool_used(p), 1024);
	/* Every other blob freed: 32 pages free, but no two adjacent. */
	for (int i = 0; i < 64; i += 2)
		zpool_free(z, &r[i]);
	assert_int_equal(shmpool_used(p), 512);
	for (int i = 0; i < 2; i++)
		fill(src + (size_t)i * PG, (size_t)i, K_RANDOM, 7);
	assert_int_equal(zpool_store(z, src, 2, &big, &clen), -ENOSPC);
	assert_int_equal(shmpool_used(p), 512);
	/* The pages of the blobs still there are untouched. */
	for (int i = 1; i < 64; i += 2) {
		fill(src, 0, K_RANDOM, (uint64_t)i);
		assert_int_equal(zpool_load(z, &r[i], dst, PG), 1);
		assert_memory_equal(src, dst, PG);
	}
	/* A load into too small a buffer is refused, not overrun. */
	assert_int_equal(zpool_load(z, &r[1], dst, PG - 1), -EUCLEAN);
	free(src);
	free(dst);
	zpool_destroy(z);
	shmpool_destroy(p);
}

/* Small blobs share pages: a page goes back to the host only with its last grain. */
static void test_grained_memory(void **state)
{
	static const enum kind pat[] = {K_PATTERN};
	struct shmpool *p = grained(16 * PG);
	struct zpool *z = zmake(p, ZPOOL_LZ4);
	uint8_t *src = malloc((size_t)ZPOOL_MAX_PAGES * PG), *dst = malloc(ZPOOL_MAX_PAGES * PG);
	struct zpool_ref a = round_trip(z, 1, pat, 1, 1, src, dst);
	struct zpool_ref b = round_trip(z, 1, pat, 1, 2, src, dst);

	assert_true(a.grains < PG / ZPOOL_GRAIN);
	assert_int_equal(b.grain, a.grain + a.grains); /* next-fit: b right after a */
	assert_true(page_in(p, a.grain) && a.grain / 16 == b.grain / 16);
	zpool_free(z, &a);
	assert_true(page_in(p, b.grain)); /* b still there: the page keeps its memory */
	fill(src, 0, K_PATTERN, 2);
	assert_int_equal(zpool_load(z, &b, dst, PG), 1);
	assert_memory_equal(src, dst, PG);
	zpool_free(z, &b);
	assert_false(page_in(p, b.grain)); /* its last grain gone: punched */
	assert_int_equal(shmpool_used(p), 0);
	/* A raw blob of 3 pages starting mid-page: its whole inner pages go at once. */
	a = round_trip(z, 1, pat, 1, 3, src, dst);
	static const enum kind rnd[] = {K_RANDOM};
	b = round_trip(z, 3, rnd, 1, 4, src, dst);
	assert_true(b.grain % 16 != 0);
	zpool_free(z, &b);
	assert_true(page_in(p, a.grain));
	assert_false(page_in(p, b.grain + 16));
	assert_false(page_in(p, b.grain + 47));
	zpool_free(z, &a);
	assert_false(page_in(p, a.grain));
	free(src);
	free(dst);
	zpool_destroy(z);
	shmpool_destroy(p);
}

static void test_damage(void **state)
{
	static const enum kind half[] = {K_HALF};
	struct shmpool *p = grained(1u << 20);
	struct zpool *z = zmake(p, ZPOOL_ZSTD);
	uint8_t *src = malloc((size_t)ZPOOL_MAX_PAGES * PG), *dst = malloc(ZPOOL_MAX_PAGES * PG);
	struct zpool_ref r = round_trip(z, 8, half, 1, 5, src, dst), bad;
	uint8_t *blob = shmpool_addr(p, r.grain), save[8];

	memcpy(save, blob, sizeof(save));
	bad = r;
	bad.index = 8; /* past its pages */
	assert_int_equal(zpool_check(z, &bad), -EUCLEAN);
	bad = r;
	bad.alg = ZPOOL_LZ4; /* not what the header says */
	assert_int_equal(zpool_check(z, &bad), -EUCLEAN);
	bad = r;
	bad.grains = r.grains + 1; /* longer than its bytes */
	assert_int_equal(zpool_check(z, &bad), -EUCLEAN);
	bad = r;
	bad.grain = shmpool_slots(p) - 1; /* runs past the pool */
	assert_int_equal(zpool_check(z, &bad), -EUCLEAN);
	bad.alg = 3;
	assert_int_equal(zpool_check(z, &bad), -EUCLEAN);
	blob[7] ^= 0xff; /* magic */
	assert_int_equal(zpool_check(z, &r), -EUCLEAN);
	assert_int_equal(zpool_load(z, &r, dst, (size_t)ZPOOL_MAX_PAGES * PG), -EUCLEAN);
	memcpy(blob, save, sizeof(save));
	assert_int_equal(zpool_check(z, &r), 8);
	/* Garbage where the compressed bytes were: refused, and nothing written past 8 pages. */
	for (uint32_t i = 8; i < r.grains * ZPOOL_GRAIN; i++)
		blob[i] = (uint8_t)mix(i);
	memset(dst, 0x77, (size_t)ZPOOL_MAX_PAGES * PG);
	assert_int_equal(zpool_load(z, &r, dst, (size_t)ZPOOL_MAX_PAGES * PG), -EUCLEAN);
	for (size_t i = 8 * PG; i < (size_t)ZPOOL_MAX_PAGES * PG; i++)
		if (dst[i] != 0x77)
			fail_msg("byte %zu past the blob's pages was written", i);
	free(src);
	free(dst);
	zpool_destroy(z);
	shmpool_destroy(p);
}

static void test_adopt(void **state)
{
	static const enum kind kinds[] = {K_PATTERN, K_RANDOM, K_HALF};
	struct shmpool *p = grained(256 * PG), *q = NULL;
	struct zpool *z = zmake(p, ZPOOL_LZ4), *zq;
	uint8_t *src = malloc((size_t)ZPOOL_MAX_PAGES * PG), *dst = malloc(ZPOOL_MAX_PAGES * PG);
	struct zpool_ref r[12];
	int fd;

	for (int i = 0; i < 12; i++)
		r[i] =
		    round_trip(z, (uint32_t)(i % 5 + 1), &kinds[i % 3], 1, (uint64_t)i, src, dst);
	fd = dup(shmpool_fd(p));
	assert_int_equal(shmpool_adopt_unit(fd, 256, ZPOOL_GRAIN, &q), 0);
	assert_int_equal(shmpool_used(q), 0);
	zq = zmake(q, ZPOOL_LZ4);
	/* The dead daemon's blobs 0-9 are named by entries; 10 and 11 are not. */
	for (int i = 0; i < 10; i++)
		assert_int_equal(zpool_claim(zq, &r[i]), 0);
	assert_int_equal(zpool_claim(zq, &r[3]), -EEXIST);
	struct zpool_ref bad = r[11];
	assert_int_equal(bad.alg, ZPOOL_LZ4);
	bad.alg = ZPOOL_ZSTD; /* an entry that says zstd for an lz4 blob: refused */
	assert_int_equal(zpool_claim(zq, &bad), -EUCLEAN);
	shmpool_settle(q);
	for (int i = 0; i < 12; i++) {
		uint32_t n = (uint32_t)(i % 5 + 1);

		if (i >= 10) { /* settled: the pages only they used are gone */
			uint64_t first = (r[i].grain + 15) / 16,
				 last = (r[i].grain + r[i].grains) / 16;

			for (uint64_t pg = first; pg < last; pg++)
				assert_false(page_in(q, pg * 16));
			continue;
		}
		for (uint32_t k = 0; k < n; k++)
			fill(src + (size_t)k * PG, k, kinds[i % 3], (uint64_t)i);
		assert_int_equal(zpool_load(zq, &r[i], dst, (size_t)ZPOOL_MAX_PAGES * PG), (int)n);
		assert_memory_equal(src, dst, (size_t)n * PG);
	}
	zpool_destroy(zq);
	shmpool_destroy(q);
	zpool_destroy(z);
	shmpool_destroy(p);
	free(src);
	free(dst);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_refs),
	    cmocka_unit_test(test_lz4),
	    cmocka_unit_test(test_zstd),
	    cmocka_unit_test(test_off_stores_raw),
	    cmocka_unit_test(test_full_and_fragmented),
	    cmocka_unit_test(test_grained_memory),
	    cmocka_unit_test(test_damage),
	    cmocka_unit_test(test_adopt),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
