/* zpool: see zpool.h. */
#include "shmswap/zpool.h"

#include <errno.h>
#include <lz4.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#define PAGE	  4096u
#define HDR_MAGIC 0xc7u
/* zstd's level: most of its capacity comes with level 1 already; higher ones cost the evictor
 * time on every run it stores. */
#define ZSTD_LEVEL 1
#define DCTX_KEEP  4 /* zstd decompression contexts kept for reuse: one per thread that loads */

#define REF_GRAIN_BITS	32
#define REF_GRAINS_BITS 13
#define REF_INDEX_BITS	9
#define REF_ALG_BITS	2
_Static_assert(REF_GRAIN_BITS + REF_GRAINS_BITS + REF_INDEX_BITS + REF_ALG_BITS <= 56,
	       "a ref fits the slot field of a page entry");
_Static_assert(ZPOOL_MAX_PAGES <= 1u << REF_INDEX_BITS, "an index names every page of a run");
_Static_assert((PAGE / ZPOOL_GRAIN) * ZPOOL_MAX_PAGES <= 1u << REF_GRAINS_BITS,
	       "a raw blob of a whole run fits the length field");

/* In front of a compressed blob. Raw blobs have none: their length says their pages. */
struct zhdr {
	uint32_t clen; /* compressed bytes after the header */
	uint16_t npages;
	uint8_t alg;
	uint8_t magic;
};

struct zpool {
	struct shmpool *pool;
	unsigned alg;
	/* The evictor's compression state, under clock. */
	pthread_mutex_t clock;
	void *lz4_state;
	ZSTD_CCtx *cctx;
	uint8_t *cbuf; /* compressed output: at most 3/4 of a run is kept */
	/* zstd decompression contexts, taken by a load and given back (creating one per fault
	 * would cost more than the decompression). */
	pthread_mutex_t dlock;
	ZSTD_DCtx *dfree[DCTX_KEEP];
	unsigned ndfree;
};

uint64_t zpool_ref_pack(const struct zpool_ref *r)
{
	uint64_t v = r->grain & ((1ull << REF_GRAIN_BITS) - 1);

	v |= (uint64_t)((r->grains - 1) & ((1u << REF_GRAINS_BITS) - 1)) << REF_GRAIN_BITS;
	v |= (uint64_t)(r->index & ((1u << REF_INDEX_BITS) - 1))
	     << (REF_GRAIN_BITS + REF_GRAINS_BITS);
	v |= (uint64_t)(r->alg & ((1u << REF_ALG_BITS) - 1))
	     << (REF_GRAIN_BITS + REF_GRAINS_BITS + REF_INDEX_BITS);
	return v;
}

void zpool_ref_unpack(uint64_t v, struct zpool_ref *r)
{
	r->grain = v & ((1ull << REF_GRAIN_BITS) - 1);
	v >>= REF_GRAIN_BITS;
	r->grains = (uint32_t)(v & ((1u << REF_GRAINS_BITS) - 1)) + 1;
	v >>= REF_GRAINS_BITS;
	r->index = (uint32_t)(v & ((1u << REF_INDEX_BITS) - 1));
	v >>= REF_INDEX_BITS;
	r->alg = (unsigned)(v & ((1u << REF_ALG_BITS) - 1));
}

const char *zpool_alg_name(unsigned alg)
{
	return alg == ZPOOL_LZ4 ? "lz4" : alg == ZPOOL_ZSTD ? "zstd" : "raw";
}

int zpool_create(struct shmpool *pool, enum zpool_alg alg, struct zpool **out)
{
	struct zpool *z;

	if (shmpool_unit(pool) != ZPOOL_GRAIN || (unsigned)alg > ZPOOL_ZSTD)
		return -EINVAL;
	z = calloc(1, sizeof(*z));
	if (!z)
		return -ENOMEM;
	z->pool = pool;
	z->alg = alg;
	pthread_mutex_init(&z->clock, NULL);
	pthread_mutex_init(&z->dlock, NULL);
	z->cbuf = malloc(ZPOOL_MAX_PAGES * PAGE);
	if (alg == ZPOOL_LZ4)
		z->lz4_state = malloc((size_t)LZ4_sizeofState());
	if (alg == ZPOOL_ZSTD)
		z->cctx = ZSTD_createCCtx();
	if (!z->cbuf || (alg == ZPOOL_LZ4 && !z->lz4_state) || (alg == ZPOOL_ZSTD && !z->cctx)) {
		zpool_destroy(z);
		return -ENOMEM;
	}
	*out = z;
	return 0;
}

void zpool_destroy(struct zpool *z)
{
	if (!z)
		return;
	for (unsigned i = 0; i < z->ndfree; i++)
		ZSTD_freeDCtx(z->dfree[i]);
	ZSTD_freeCCtx(z->cctx);
	free(z->lz4_state);
	free(z->cbuf);
	pthread_mutex_destroy(&z->clock);
	pthread_mutex_destroy(&z->dlock);
	free(z);
}

/* Compresses len bytes of src into z->cbuf, at most cap bytes. Returns the compressed length,
 * or 0 when it does not fit (the data is not worth compressing). clock held. */
static size_t compress(struct zpool *z, const void *src, size_t len, size_t cap)
{
	size_t n;

	if (z->alg == ZPOOL_LZ4)
		return (size_t)LZ4_compress_fast_extState(z->lz4_state, src, (char *)z->cbuf,
							  (int)len, (int)cap, 1);
	if (z->alg != ZPOOL_ZSTD)
		return 0;
	n = ZSTD_compressCCtx(z->cctx, z->cbuf, cap, src, len, ZSTD_LEVEL);
	return ZSTD_isError(n) ? 0 : n;
}

/* Takes exactly n adjacent grains, or none. Returns the first, or -ENOSPC. */
static int64_t take_grains(struct zpool *z, uint32_t n)
{
	uint32_t got;
	int64_t g = shmpool_alloc(z->pool, n, &got);

	if (g >= 0 && got < n) {
		shmpool_free(z->pool, (uint64_t)g, got);
		g = -ENOSPC;
	}
	return g;
}

int zpool_store(struct zpool *z, const void *src, uint32_t npages, struct zpool_ref *ref,
		uint32_t *clen)
{
	size_t len = (size_t)npages * PAGE, cap = len * 3 / 4 - sizeof(struct zhdr), c;
	uint32_t bytes;
	int64_t g;

	if (!npages || npages > ZPOOL_MAX_PAGES)
		return -EINVAL;
	pthread_mutex_lock(&z->clock);
	c = compress(z, src, len, cap);
	bytes = c ? (uint32_t)(c + sizeof(struct zhdr)) : (uint32_t)len;
	*ref = (struct zpool_ref){.grains = (bytes + ZPOOL_GRAIN - 1) / ZPOOL_GRAIN,
				  .alg = c ? z->alg : ZPOOL_RAW};
	g = take_grains(z, ref->grains);
	if (g >= 0) {
		uint8_t *dst = shmpool_addr(z->pool, (uint64_t)g);

		ref->grain = (uint64_t)g;
		if (c) {
			struct zhdr h = {.clen = (uint32_t)c,
					 .npages = (uint16_t)npages,
					 .alg = (uint8_t)z->alg,
					 .magic = HDR_MAGIC};

			memcpy(dst, &h, sizeof(h));
			memcpy(dst + sizeof(h), z->cbuf, c);
		} else {
			memcpy(dst, src, len);
		}
	}
	pthread_mutex_unlock(&z->clock);
	if (clen)
		*clen = bytes;
	return g < 0 ? (int)g : 0;
}

/* The header of a compressed blob, checked against its ref; NULL when they disagree. */
static const struct zhdr *header(struct zpool *z, const struct zpool_ref *ref, struct zhdr *h)
{
	memcpy(h, shmpool_addr(z->pool, ref->grain), sizeof(*h));
	if (h->magic != HDR_MAGIC || h->alg != ref->alg || !h->npages ||
	    h->npages > ZPOOL_MAX_PAGES ||
	    (uint64_t)h->clen + sizeof(*h) > (uint64_t)ref->grains * ZPOOL_GRAIN ||
	    (uint64_t)h->clen + sizeof(*h) <= (uint64_t)(ref->grains - 1) * ZPOOL_GRAIN)
		return NULL;
	return h;
}

int zpool_check(struct zpool *z, const struct zpool_ref *ref)
{
	struct zhdr h;
	uint32_t per_page = PAGE / ZPOOL_GRAIN, pages;

	if (ref->grain >= shmpool_slots(z->pool) ||
	    ref->grains > shmpool_slots(z->pool) - ref->grain || ref->alg > ZPOOL_ZSTD)
		return -EUCLEAN;
	if (ref->alg == ZPOOL_RAW) {
		if (ref->grains % per_page)
			return -EUCLEAN;
		pages = ref->grains / per_page;
	} else {
		if (!header(z, ref, &h))
			return -EUCLEAN;
		pages = h.npages;
	}
	return ref->index < pages ? (int)pages : -EUCLEAN;
}

static ZSTD_DCtx *dctx_get(struct zpool *z)
{
	ZSTD_DCtx *d = NULL;

	pthread_mutex_lock(&z->dlock);
	if (z->ndfree)
		d = z->dfree[--z->ndfree];
	pthread_mutex_unlock(&z->dlock);
	return d ? d : ZSTD_createDCtx();
}

static void dctx_put(struct zpool *z, ZSTD_DCtx *d)
{
	pthread_mutex_lock(&z->dlock);
	if (z->ndfree < DCTX_KEEP) {
		z->dfree[z->ndfree++] = d;
		d = NULL;
	}
	pthread_mutex_unlock(&z->dlock);
	ZSTD_freeDCtx(d);
}

/* Decompresses the blob after its header h into dst. Returns 0 or -EUCLEAN. */
static int decompress(struct zpool *z, const struct zpool_ref *ref, const struct zhdr *h, void *dst)
{
	const char *src = (const char *)shmpool_addr(z->pool, ref->grain) + sizeof(*h);
	size_t want = (size_t)h->npages * PAGE, n;
	ZSTD_DCtx *d;

	if (h->alg == ZPOOL_LZ4)
		return LZ4_decompress_safe(src, dst, (int)h->clen, (int)want) == (int)want
			   ? 0
			   : -EUCLEAN;
	d = dctx_get(z);
	if (!d)
		return -ENOMEM;
	n = ZSTD_decompressDCtx(d, dst, want, src, h->clen);
	dctx_put(z, d);
	return !ZSTD_isError(n) && n == want ? 0 : -EUCLEAN;
}

int zpool_load(struct zpool *z, const struct zpool_ref *ref, void *dst, size_t dstlen)
{
	int pages = zpool_check(z, ref), r;
	struct zhdr h;

	if (pages < 0)
		return pages;
	if ((size_t)pages * PAGE > dstlen)
		return -EUCLEAN;
	if (ref->alg == ZPOOL_RAW) {
		memcpy(dst, shmpool_addr(z->pool, ref->grain), (size_t)pages * PAGE);
		return pages;
	}
	header(z, ref, &h);
	r = decompress(z, ref, &h, dst);
	return r ? r : pages;
}

const void *zpool_raw_page(struct zpool *z, const struct zpool_ref *ref)
{
	if (ref->alg != ZPOOL_RAW)
		return NULL;
	return (const uint8_t *)shmpool_addr(z->pool, ref->grain) + (size_t)ref->index * PAGE;
}

void zpool_free(struct zpool *z, const struct zpool_ref *ref)
{
	shmpool_free(z->pool, ref->grain, ref->grains);
}

int zpool_claim(struct zpool *z, const struct zpool_ref *ref)
{
	if (zpool_check(z, ref) < 0)
		return -EUCLEAN;
	for (uint32_t i = 0; i < ref->grains; i++) {
		int r = shmpool_claim(z->pool, ref->grain + i);

		if (r)
			return r == -ERANGE ? -EUCLEAN : r;
	}
	return 0;
}
