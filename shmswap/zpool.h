/* zpool: the shm tier's compressed form ([shm] compress = lz4 | zstd).
 *
 * The evictor stores the pages it takes from one run as a blob (or a few, of up to 16 pages
 * each: uffd-mgr/zshm.c), in adjacent grains (256 bytes) of a shm pool cut into grains
 * (shmpool_create_unit): compressed, behind an 8-byte
 * header that gives the exact compressed length, the algorithm and the page count; or, when
 * compression would not save a quarter of the bytes, raw (the pages as they are, no header),
 * so that incompressible data costs nothing to bring back but the copy. Zero pages never get
 * here: the evictor keeps them as zero pages.
 *
 * A page of a blob is named by a reference of 56 bits, kept in its page entry (pagemap.h,
 * PS_ZSHM), which outlives the daemon: the blob's first grain (32 bits: a pool of up to 1 TiB),
 * its length in grains less one (13 bits), the page's index among the blob's pages (9 bits:
 * up to 512, a 2 MiB run), and how the blob is stored (2 bits: ZPOOL_RAW, _LZ4, _ZSTD). Every
 * page of a blob names the same grains; the blob is freed once no page entry names it.
 *
 * Thread-safe: the evictor stores while fault threads load and free. */
#ifndef UFFD_ZPOOL_H
#define UFFD_ZPOOL_H

#include <stddef.h>
#include <stdint.h>

#include "shmswap/shmpool.h"

#define ZPOOL_GRAIN	256u
#define ZPOOL_MAX_PAGES 512u

enum zpool_alg { ZPOOL_RAW = 0, ZPOOL_LZ4 = 1, ZPOOL_ZSTD = 2 };

struct zpool_ref {
	uint64_t grain;	 /* the blob's first grain */
	uint32_t grains; /* its length in grains, 1 to 8192 */
	uint32_t index;	 /* this page's place among the blob's pages, in guest order */
	unsigned alg;	 /* enum zpool_alg */
};

/* The 56-bit form kept in a page entry, and back. Cannot fail (unpack takes any value; a ref
 * that names no blob is refused by zpool_check). */
uint64_t zpool_ref_pack(const struct zpool_ref *r);
void zpool_ref_unpack(uint64_t v, struct zpool_ref *r);

struct zpool;

/* A compressed store over pool, which must be cut into ZPOOL_GRAIN units and outlive it. alg
 * is what new blobs use (ZPOOL_RAW: none, every blob raw). Returns 0, -EINVAL (pool not in
 * grains, bad alg) or -ENOMEM. */
int zpool_create(struct shmpool *pool, enum zpool_alg alg, struct zpool **out);

/* Accepts NULL. Blobs stay in the pool. */
void zpool_destroy(struct zpool *z);

/* Stores npages (1 to ZPOOL_MAX_PAGES) pages from src as one blob, compressed when that saves
 * at least a quarter, raw otherwise. Sets *ref (index 0) and, when clen is not NULL, *clen to
 * the bytes it takes (header included). Returns 0, -ENOSPC (no free extent of the grains it
 * needs: the caller can store fewer pages at a time), or -EINVAL. */
int zpool_store(struct zpool *z, const void *src, uint32_t npages, struct zpool_ref *ref,
		uint32_t *clen);

/* Pages in the blob ref names, from its header (compressed) or its length (raw). Returns
 * 1..ZPOOL_MAX_PAGES, or -EUCLEAN when the blob or the ref is damaged (ref out of the pool,
 * header that does not match, index past the pages). */
int zpool_check(struct zpool *z, const struct zpool_ref *ref);

/* Unpacks the whole blob into dst (dstlen bytes, room for its pages). Returns its pages, or
 * -EUCLEAN when it is damaged (then dst holds nothing to trust). */
int zpool_load(struct zpool *z, const struct zpool_ref *ref, void *dst, size_t dstlen);

/* A raw blob's page in the pool, to be copied from directly; NULL when the blob is not raw. */
const void *zpool_raw_page(struct zpool *z, const struct zpool_ref *ref);

/* Frees the blob's grains. Cannot fail. */
void zpool_free(struct zpool *z, const struct zpool_ref *ref);

/* Marks the blob's grains taken, as an adopting daemon rebuilds the pool from the page
 * entries: once per blob. Returns 0, -EUCLEAN (zpool_check refuses it) or -EEXIST (a grain is
 * taken already: two blobs overlap). */
int zpool_claim(struct zpool *z, const struct zpool_ref *ref);

/* "raw", "lz4", "zstd". */
const char *zpool_alg_name(unsigned alg);

#endif
