/* test_shmpool: the shm tier's slot pool (shmswap/shmpool.c).
 *
 * What it stresses:
 *  - argument checks (a pool too small for one slot, want == 0) and sizes rounded down;
 *  - extents: exactly the number of adjacent slots asked when a free extent holds them (also
 *    past a shorter free extent, and across the wrap of the next-fit cursor), else the
 *    longest free extent, else -ENOSPC; used counts kept exactly;
 *  - the memory: every slot of an extent is writable, holds its bytes until freed, and a
 *    freed slot gives its memory back (mincore sees it gone) and reads zero when reused;
 *  - seeded alloc/free sequences checked step by step against a model of that contract, on
 *    pool sizes around the bitmap's 64-slot words;
 *  - threads: 4 threads allocate, stamp every slot with (thread, serial), check their stamps
 *    and free for a fixed number of rounds with seeded sizes; any slot handed to two owners
 *    at once shows up as a foreign stamp. At the end the pool must be empty;
 *  - adoption, as a new daemon takes over a dead one's pool: the memfd is sealed against
 *    resizing; adopting a descriptor of it gives the same memory (seeded data written in slot
 *    k through the first pool reads back through the adopted one after the claim); claims
 *    count and refuse -ERANGE/-EEXIST, claimed slots are never handed out; settle punches
 *    every unclaimed slot (SEEK_DATA/SEEK_HOLE and st_blocks say so) and no claimed one;
 *    adopt refuses an unsealed memfd, a wrong size, no slots and a pipe, leaving the
 *    descriptor open; destroying the adopted pool closes only its own descriptor. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "shmswap/shmpool.h"

#define SLOT 4096u

static struct shmpool *make(uint64_t bytes)
{
	struct shmpool *p = NULL;

	assert_int_equal(shmpool_create("test-shmpool", bytes, &p), 0);
	assert_non_null(p);
	return p;
}

static int64_t alloc_ok(struct shmpool *p, uint32_t want, uint32_t want_got)
{
	uint32_t got = 0;
	int64_t s = shmpool_alloc(p, want, &got);

	assert_true(s >= 0);
	assert_int_equal(got, want_got);
	return s;
}

/* Whether the pool's page behind slot is in memory (page cache of the pool's memfd). */
static int slot_in_core(struct shmpool *p, uint64_t slot)
{
	unsigned char v = 0;

	assert_int_equal(mincore(shmpool_addr(p, slot), SLOT, &v), 0);
	return v & 1;
}

static void test_create_args(void **state)
{
	struct shmpool *p = NULL;
	uint32_t got = 0;

	assert_int_equal(shmpool_create("x", 0, &p), -EINVAL);
	assert_int_equal(shmpool_create("x", SLOT - 1, &p), -EINVAL);
	assert_null(p);
	shmpool_destroy(NULL);

	p = make(10 * SLOT + 100); /* rounded down */
	assert_int_equal(shmpool_slots(p), 10);
	assert_int_equal(shmpool_used(p), 0);
	assert_int_equal(shmpool_alloc(p, 0, &got), -EINVAL);
	assert_int_equal(shmpool_used(p), 0);
	shmpool_destroy(p);

	p = make(SLOT); /* one slot */
	assert_int_equal(alloc_ok(p, 4, 1), 0);
	assert_int_equal(shmpool_alloc(p, 1, &got), -ENOSPC);
	shmpool_free(p, 0, 1);
	assert_int_equal(alloc_ok(p, 1, 1), 0);
	shmpool_destroy(p);
}

static void test_extents_fill_and_full(void **state)
{
	struct shmpool *p = make(100 * SLOT);
	uint32_t got;
	int64_t s;
	uint64_t next = 0;

	/* Fresh pool: extents come out adjacent, in order. */
	for (int i = 0; i < 6; i++) {
		s = alloc_ok(p, 16, 16);
		assert_int_equal(s, (int64_t)next);
		next += 16;
	}
	assert_int_equal(shmpool_used(p), 96);
	/* 4 slots left: the longest free extent comes back. */
	s = alloc_ok(p, 16, 4);
	assert_int_equal(s, 96);
	assert_int_equal(shmpool_used(p), 100);
	got = 12345;
	assert_int_equal(shmpool_alloc(p, 1, &got), -ENOSPC);
	assert_int_equal(shmpool_alloc(p, 16, &got), -ENOSPC);
	assert_int_equal(shmpool_used(p), 100);

	/* Free scattered holes: 3 at 10, 7 at 40, 5 at 70. */
	shmpool_free(p, 10, 3);
	shmpool_free(p, 40, 7);
	shmpool_free(p, 70, 5);
	assert_int_equal(shmpool_used(p), 85);
	/* 5 fit: 5 slots come back, from the first hole that holds them (past the shorter hole
	 * of 3), not a shorter piece of some other hole. */
	s = alloc_ok(p, 5, 5);
	assert_int_equal(s, 40);
	/* 8 fit nowhere: the longest free extent, 5 at 70; then 3 at 10; then 2 at 45. */
	s = alloc_ok(p, 8, 5);
	assert_int_equal(s, 70);
	s = alloc_ok(p, 8, 3);
	assert_int_equal(s, 10);
	s = alloc_ok(p, 8, 2);
	assert_int_equal(s, 45);
	assert_int_equal(shmpool_alloc(p, 1, &got), -ENOSPC);
	assert_int_equal(shmpool_used(p), 100);

	/* Free everything in pieces; used returns to 0. */
	for (uint64_t i = 0; i < 100; i += 10)
		shmpool_free(p, i, 10);
	assert_int_equal(shmpool_used(p), 0);
	s = alloc_ok(p, 100, 100);
	assert_int_equal(s, 0);
	shmpool_destroy(p);
}

/* The next-fit cursor wraps: a free extent before the cursor is found, and an extent that the
 * cursor sits in the middle of is seen at its full length. */
static void test_wrap(void **state)
{
	struct shmpool *p = make(64 * SLOT);
	int64_t s;

	assert_int_equal(alloc_ok(p, 60, 60), 0); /* cursor at 60 */
	shmpool_free(p, 0, 8);
	/* Tail has 4 free, head has 8: exactly 8 exists, before the cursor. */
	s = alloc_ok(p, 8, 8);
	assert_int_equal(s, 0);
	/* Now only the tail (4 at 60) is free. */
	s = alloc_ok(p, 8, 4);
	assert_int_equal(s, 60);
	assert_int_equal(shmpool_used(p), 64);

	/* A hole of 12 at 20, with the cursor moved into its middle. */
	shmpool_free(p, 20, 12);
	assert_int_equal(alloc_ok(p, 2, 2), 20); /* cursor now 22 */
	shmpool_free(p, 20, 2);
	/* From the cursor only 10 free slots follow; the whole 12 lie at 20. */
	s = alloc_ok(p, 12, 12);
	assert_int_equal(s, 20);
	assert_int_equal(shmpool_used(p), 64);
	shmpool_destroy(p);
}

static void test_memory_contents_and_release(void **state)
{
	struct shmpool *p = make(32 * SLOT); /* a and b fill it: a freed slot is reused */
	int64_t a = alloc_ok(p, 16, 16), b = alloc_ok(p, 16, 16);

	assert_int_not_equal(a, b);
	/* Adjacent slots are adjacent memory: one memcpy fills an extent. */
	assert_ptr_equal(shmpool_addr(p, (uint64_t)a + 1),
			 (uint8_t *)shmpool_addr(p, (uint64_t)a) + SLOT);
	for (int i = 0; i < 16; i++) {
		memset(shmpool_addr(p, (uint64_t)a + i), 0xa0 + i, SLOT);
		memset(shmpool_addr(p, (uint64_t)b + i), 0x10 + i, SLOT);
	}
	for (int i = 0; i < 16; i++) {
		const uint8_t *pa = shmpool_addr(p, (uint64_t)a + i);
		const uint8_t *pb = shmpool_addr(p, (uint64_t)b + i);

		for (unsigned k = 0; k < SLOT; k++) {
			assert_int_equal(pa[k], 0xa0 + i);
			assert_int_equal(pb[k], 0x10 + i);
		}
		assert_true(slot_in_core(p, (uint64_t)a + i));
	}
	/* Free half of a: that memory goes back to the host, the other half and b stay. */
	shmpool_free(p, (uint64_t)a, 8);
	for (int i = 0; i < 16; i++) {
		assert_int_equal(slot_in_core(p, (uint64_t)a + i), i >= 8);
		assert_true(slot_in_core(p, (uint64_t)b + i));
		assert_int_equal(*(uint8_t *)shmpool_addr(p, (uint64_t)b + i), 0x10 + i);
	}
	for (int i = 8; i < 16; i++)
		assert_int_equal(*(uint8_t *)shmpool_addr(p, (uint64_t)a + i), 0xa0 + i);
	/* Reused slots read zero. */
	int64_t c = alloc_ok(p, 8, 8);
	assert_int_equal(c, a);
	for (int i = 0; i < 8; i++) {
		const uint64_t *w = shmpool_addr(p, (uint64_t)c + i);

		for (unsigned k = 0; k < SLOT / 8; k++)
			assert_true(w[k] == 0);
	}
	shmpool_destroy(p);
}

/* ---- threads ---- */

#define NTHREADS 4
#define ROUNDS	 4000

struct worker {
	struct shmpool *p;
	int id;
	uint64_t rng;
	int errors;
	uint64_t allocs, partial, nospc;
};

static uint64_t xrnd(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 2685821657736338717ull;
}

static void stamp(struct shmpool *p, uint64_t first, uint32_t n, uint64_t tag)
{
	for (uint32_t i = 0; i < n; i++) {
		uint64_t *w = shmpool_addr(p, first + i);

		w[0] = tag;
		w[1] = first + i;
		w[511] = ~tag;
	}
}

static int stamp_ok(struct shmpool *p, uint64_t first, uint32_t n, uint64_t tag)
{
	for (uint32_t i = 0; i < n; i++) {
		const uint64_t *w = shmpool_addr(p, first + i);

		if (w[0] != tag || w[1] != first + i || w[511] != ~tag)
			return 0;
	}
	return 1;
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct {
		int64_t first;
		uint32_t n;
		uint64_t tag;
	} held[8] = {{0}};
	uint64_t serial = 0;

	for (int r = 0; r < ROUNDS; r++) {
		unsigned k = (unsigned)(xrnd(&w->rng) % 8);

		if (held[k].n) {
			if (!stamp_ok(w->p, (uint64_t)held[k].first, held[k].n, held[k].tag))
				w->errors++;
			shmpool_free(w->p, (uint64_t)held[k].first, held[k].n);
			held[k].n = 0;
		} else {
			uint32_t want = 1 + (uint32_t)(xrnd(&w->rng) % 32), got = 0;
			int64_t s = shmpool_alloc(w->p, want, &got);

			if (s == -ENOSPC) {
				w->nospc++;
				continue;
			}
			if (s < 0 || got == 0 || got > want) {
				w->errors++;
				continue;
			}
			w->allocs++;
			w->partial += got < want;
			held[k].first = s;
			held[k].n = got;
			held[k].tag = ((uint64_t)w->id << 48) | ++serial;
			stamp(w->p, (uint64_t)s, got, held[k].tag);
		}
	}
	for (int k = 0; k < 8; k++) {
		if (!held[k].n)
			continue;
		if (!stamp_ok(w->p, (uint64_t)held[k].first, held[k].n, held[k].tag))
			w->errors++;
		shmpool_free(w->p, (uint64_t)held[k].first, held[k].n);
	}
	return NULL;
}

static void test_threads(void **state)
{
	/* Small enough that the threads run it full: on average they hold 4 x 4 x 16.5 slots,
	 * at most 4 x 8 x 32. */
	struct shmpool *p = make(256 * SLOT);
	struct worker w[NTHREADS];
	pthread_t t[NTHREADS];
	uint64_t allocs = 0, partial = 0, nospc = 0;

	for (int i = 0; i < NTHREADS; i++) {
		w[i] = (struct worker){.p = p, .id = i + 1, .rng = 0x9e3779b97f4a7c15ull * (i + 1)};
		assert_int_equal(pthread_create(&t[i], NULL, worker_main, &w[i]), 0);
	}
	for (int i = 0; i < NTHREADS; i++) {
		assert_int_equal(pthread_join(t[i], NULL), 0);
		assert_int_equal(w[i].errors, 0);
		allocs += w[i].allocs;
		partial += w[i].partial;
		nospc += w[i].nospc;
	}
	print_message("allocs %llu, partial %llu, full %llu\n", (unsigned long long)allocs,
		      (unsigned long long)partial, (unsigned long long)nospc);
	assert_true(allocs > 1000);
	assert_true(partial > 0 || nospc > 0); /* the full-pool paths ran */
	assert_int_equal(shmpool_used(p), 0);
	/* After all that, the pool is whole again: one extent of every slot. */
	assert_int_equal(alloc_ok(p, 256, 256), 0);
	shmpool_destroy(p);
}

/* ---- against a model ---- */

/* The longest run of free slots in a model bitmap. */
static uint32_t model_longest(const uint8_t *used, uint64_t n)
{
	uint32_t best = 0, cur = 0;

	for (uint64_t i = 0; i < n; i++) {
		cur = used[i] ? 0 : cur + 1;
		if (cur > best)
			best = cur;
	}
	return best;
}

/* Seeded alloc/free sequences on pools whose size is and is not a multiple of 64 (the
 * bitmap's word), checked step by step against the contract: want slots when some free
 * extent holds them, else the longest free extent, -ENOSPC only when nothing is free, and
 * only free slots handed out. */
static void test_random_vs_model(void **state)
{
	static const uint64_t sizes[] = {1, 63, 64, 65, 130, 200, 1024};
	uint64_t rng = 0xabcdef12345ull;

	for (size_t si = 0; si < sizeof(sizes) / sizeof(sizes[0]); si++) {
		uint64_t n = sizes[si];
		struct shmpool *p = make(n * SLOT);
		uint8_t *used = calloc(n, 1);
		struct {
			uint64_t first;
			uint32_t n;
		} held[64];
		int nheld = 0;
		uint64_t nused = 0;

		assert_non_null(used);
		for (int step = 0; step < 20000; step++) {
			if (nheld && (nheld == 64 || xrnd(&rng) % 2)) {
				int k = (int)(xrnd(&rng) % (uint64_t)nheld);

				shmpool_free(p, held[k].first, held[k].n);
				memset(used + held[k].first, 0, held[k].n);
				nused -= held[k].n;
				held[k] = held[--nheld];
			} else {
				uint32_t want = 1 + (uint32_t)(xrnd(&rng) % (n < 40 ? n : 40));
				uint32_t longest = model_longest(used, n), got = 0;
				int64_t s = shmpool_alloc(p, want, &got);

				if (!longest) {
					assert_int_equal(s, -ENOSPC);
					continue;
				}
				if (s < 0)
					print_error(
					    "pool %llu: alloc(%u) = %lld with %u free in a row\n",
					    (unsigned long long)n, want, (long long)s, longest);
				assert_true(s >= 0);
				assert_int_equal(got, want <= longest ? want : longest);
				assert_true((uint64_t)s + got <= n);
				for (uint32_t i = 0; i < got; i++) {
					assert_int_equal(used[s + i], 0);
					used[s + i] = 1;
				}
				nused += got;
				held[nheld].first = (uint64_t)s;
				held[nheld].n = got;
				nheld++;
			}
			assert_int_equal(shmpool_used(p), nused);
		}
		free(used);
		shmpool_destroy(p);
	}
}

/* ---- adoption ---- */

static void fill_slot(void *at, uint64_t seed)
{
	uint64_t *w = at;

	for (unsigned i = 0; i < SLOT / 8; i++)
		w[i] = xrnd(&seed) ^ i;
}

static void check_slot(const void *at, uint64_t seed)
{
	const uint64_t *w = at;

	for (unsigned i = 0; i < SLOT / 8; i++)
		if (w[i] != (xrnd(&seed) ^ i))
			fail_msg("word %u of the slot differs", i);
}

/* Whether the pool memfd holds data (not a hole) at slot. */
static int slot_has_data(int fd, uint64_t slot)
{
	off_t at = (off_t)(slot * SLOT), d = lseek(fd, at, SEEK_DATA);

	return d == at;
}

static void test_adopt(void **state)
{
	enum { N = 64 };
	static const uint64_t claimed[] = {0, 5, 6, 7, 40, 63};
	struct shmpool *p = make(N * SLOT), *q = NULL;
	struct stat before, after;
	uint32_t got;
	int fd, fd1 = shmpool_fd(p);

	assert_int_equal(fcntl(fd1, F_GET_SEALS) & (F_SEAL_SHRINK | F_SEAL_GROW),
			 F_SEAL_SHRINK | F_SEAL_GROW);
	assert_int_equal(ftruncate(fd1, N * SLOT / 2), -1); /* QEMU cannot shrink it */
	/* The dead daemon's pool: every slot written, only some recorded in page entries. */
	assert_int_equal(alloc_ok(p, N, N), 0);
	for (uint64_t k = 0; k < N; k++)
		fill_slot(shmpool_addr(p, k), 1000 + k);
	assert_int_equal(fstat(fd1, &before), 0);
	assert_true(before.st_blocks >= N * SLOT / 512);

	fd = dup(fd1);
	assert_true(fd >= 0);
	assert_int_equal(shmpool_adopt(fd, N, &q), 0);
	assert_int_equal(shmpool_fd(q), fd);
	assert_int_equal(shmpool_slots(q), N);
	assert_int_equal(shmpool_used(q), 0);
	for (size_t i = 0; i < sizeof(claimed) / sizeof(claimed[0]); i++)
		assert_int_equal(shmpool_claim(q, claimed[i]), 0);
	assert_int_equal(shmpool_claim(q, 5), -EEXIST);
	assert_int_equal(shmpool_claim(q, N), -ERANGE);
	assert_int_equal(shmpool_used(q), 6);
	for (size_t i = 0; i < sizeof(claimed) / sizeof(claimed[0]); i++)
		check_slot(shmpool_addr(q, claimed[i]), 1000 + claimed[i]);

	/* Settle: every slot nobody claimed gives its memory back, the claimed keep theirs.
	 * The holes are looked at before any read: reading a shmem hole through a shared
	 * mapping fills it with a new zero page. */
	shmpool_settle(q);
	for (uint64_t k = 0, i = 0; k < N; k++) {
		int is_claimed = i < sizeof(claimed) / sizeof(claimed[0]) && claimed[i] == k;

		assert_int_equal(slot_has_data(fd, k), is_claimed);
		i += is_claimed;
	}
	assert_int_equal(lseek(fd, 1 * SLOT, SEEK_HOLE), 1 * SLOT);
	assert_int_equal(lseek(fd, 8 * SLOT, SEEK_DATA), 40 * SLOT);
	assert_int_equal(fstat(fd, &after), 0);
	assert_true(after.st_blocks <= 6 * SLOT / 512);
	for (uint64_t k = 0, i = 0; k < N; k++) {
		if (i < sizeof(claimed) / sizeof(claimed[0]) && claimed[i] == k) {
			check_slot(shmpool_addr(q, k), 1000 + k);
			check_slot(shmpool_addr(p, k), 1000 + k);
			i++;
		} else {
			assert_int_equal(*(uint64_t *)shmpool_addr(q, k), 0);
		}
	}
	assert_int_equal(shmpool_used(q), 6); /* settling frees memory, not slots */

	/* The adopted pool hands out only the unclaimed slots. */
	for (;;) {
		int64_t s = shmpool_alloc(q, 16, &got);

		if (s == -ENOSPC)
			break;
		assert_true(s >= 0);
		for (uint64_t k = (uint64_t)s; k < (uint64_t)s + got; k++)
			for (size_t i = 0; i < sizeof(claimed) / sizeof(claimed[0]); i++)
				assert_true(k != claimed[i]);
	}
	assert_int_equal(shmpool_used(q), N);

	/* Its end closes its descriptor only: the first pool's memory is still there. */
	shmpool_destroy(q);
	assert_int_equal(fcntl(fd, F_GETFD), -1);
	check_slot(shmpool_addr(p, 63), 1000 + 63);
	shmpool_destroy(p);
}

static void test_adopt_refusals(void **state)
{
	struct shmpool *p = make(32 * SLOT), *q = NULL;
	int fd, pipefd[2];

	/* Not the size the state says. */
	assert_int_equal(shmpool_adopt(shmpool_fd(p), 31, &q), -EINVAL);
	assert_int_equal(shmpool_adopt(shmpool_fd(p), 33, &q), -EINVAL);
	assert_int_equal(shmpool_adopt(shmpool_fd(p), 0, &q), -EINVAL);
	assert_null(q);
	assert_true(fcntl(shmpool_fd(p), F_GETFD) >= 0);

	/* Unsealed: QEMU could shrink it under the daemon's mapping. */
	fd = memfd_create("test-unsealed", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, 32 * SLOT), 0);
	assert_int_equal(shmpool_adopt(fd, 32, &q), -EINVAL);
	assert_int_equal(fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK), 0); /* half sealed: still no */
	assert_int_equal(shmpool_adopt(fd, 32, &q), -EINVAL);
	assert_true(fcntl(fd, F_GETFD) >= 0);
	close(fd);
	fd = memfd_create("test-unsealable", MFD_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, 32 * SLOT), 0);
	assert_int_equal(shmpool_adopt(fd, 32, &q), -EINVAL);
	close(fd);

	/* Not a memfd. */
	assert_int_equal(pipe(pipefd), 0);
	assert_int_equal(shmpool_adopt(pipefd[0], 1, &q), -EINVAL);
	assert_true(fcntl(pipefd[0], F_GETFD) >= 0);
	close(pipefd[0]);
	close(pipefd[1]);
	assert_null(q);
	shmpool_destroy(p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_create_args),
	    cmocka_unit_test(test_extents_fill_and_full),
	    cmocka_unit_test(test_wrap),
	    cmocka_unit_test(test_memory_contents_and_release),
	    cmocka_unit_test(test_random_vs_model),
	    cmocka_unit_test(test_threads),
	    cmocka_unit_test(test_adopt),
	    cmocka_unit_test(test_adopt_refusals),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
