/* zshm: see zshm.h. */
#include "uffd-mgr/zshm.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "uffd-mgr/log.h"
#include "uffd-mgr/uffd.h"
#include "uffd-mgr/vm.h"

/* Most pages in one blob: a fault unpacks the whole blob holding its page, so this bounds
 * what it costs (64 KiB: about 17 µs of lz4 here) whatever the run size; larger blobs would
 * compress only a few percent better. */
#define BLOB_PAGES 16

/* The first and one past the last page of page's run. */
static void run_bounds(const struct vm *vm, size_t page, size_t *lo, size_t *hi)
{
	size_t rp = pagemap_run_pages(vm->pm);

	*lo = page - page % rp;
	*hi = *lo + rp < pagemap_npages(vm->pm) ? *lo + rp : pagemap_npages(vm->pm);
}

/* Whether page's entry names the blob whose first grain is grain. */
static bool names(const struct vm *vm, size_t page, uint64_t grain)
{
	struct zpool_ref r;

	if (pagemap_state(vm->pm, page) != PS_ZSHM)
		return false;
	zpool_ref_unpack(pagemap_slot(vm->pm, page), &r);
	return r.grain == grain;
}

/* Books what zshm_store stored. */
static void count_stored(struct vm *vm, uint64_t blobs, uint64_t raw, uint64_t pages,
			 uint64_t bytes)
{
	pthread_mutex_lock(&vm->lock);
	vm->st->zshm_blobs += blobs;
	vm->st->zshm_raw_blobs += raw;
	vm->st->zshm_pages += pages;
	vm->st->zshm_bytes += bytes;
	pthread_mutex_unlock(&vm->lock);
}

int zshm_store(struct vm *vm, const uint8_t *src, size_t n, const uint8_t *sel, uint8_t *stored,
	       uint64_t *ref, uint8_t *stage)
{
	uint32_t idx[ZPOOL_MAX_PAGES], total = 0, at = 0, k;
	uint64_t blobs = 0, raw = 0, bytes = 0;
	int r = 0;

	for (size_t i = 0; i < n && total < ZPOOL_MAX_PAGES; i++) {
		if (!sel[i])
			continue;
		memcpy(stage + (size_t)total * PAGE_SIZE_4K, src + i * PAGE_SIZE_4K, PAGE_SIZE_4K);
		idx[total++] = (uint32_t)i;
	}
	/* Blobs of up to BLOB_PAGES; when no extent of the pool holds one, halves until one does.
	 */
	for (k = total < BLOB_PAGES ? total : BLOB_PAGES; at < total;) {
		struct zpool_ref zr;
		uint32_t len;

		if (k > total - at)
			k = total - at;
		r = zpool_store(vm->z, stage + (size_t)at * PAGE_SIZE_4K, k, &zr, &len);
		if (r == -ENOSPC && k > 1) {
			k /= 2;
			continue;
		}
		if (r)
			break;
		for (uint32_t j = 0; j < k; j++) {
			zr.index = j;
			ref[idx[at + j]] = zpool_ref_pack(&zr);
			stored[idx[at + j]] = 1;
		}
		blobs++;
		raw += zr.alg == ZPOOL_RAW;
		bytes += (uint64_t)zr.grains * ZPOOL_GRAIN;
		at += k;
	}
	count_stored(vm, blobs, raw, at, bytes);
	return at < total ? -ENOSPC : 0;
}

void zshm_put(struct vm *vm, size_t page, uint64_t ref)
{
	struct zpool_ref r;
	size_t lo, hi;

	zpool_ref_unpack(ref, &r);
	run_bounds(vm, page, &lo, &hi);
	for (size_t p = lo; p < hi; p++)
		if (names(vm, p, r.grain))
			return;
	zpool_free(vm->z, &r);
}

/* A blob that cannot be unpacked: the only copy of its pages is gone. The VM fails (its QEMU is
 * stopped by vm_supervise) rather than have a vCPU wait for ever or read wrong bytes. */
static int damaged(struct vm *vm, size_t page, const struct zpool_ref *r)
{
	if (vm->st->zshm_errors++ % 1000 == 0)
		log_err(vm->name,
			"the compressed copy of page %#zx (%s blob at grain %llu, %u grains) is "
			"damaged; the VM cannot go on",
			page, zpool_alg_name(r->alg), (unsigned long long)r->grain, r->grains);
	if (!vm->failed) {
		vm->failed = true;
		snprintf(vm->fail_why, sizeof(vm->fail_why),
			 "the compressed copy of page %#zx in the shm tier is damaged", page);
	}
	return -EIO;
}

/* Installs the pages [p, p + n) of the blob (indexes from the first one's) from src with one
 * UFFDIO_COPY. Returns the pages installed (entries set resident) in *done, and 0 or -errno. */
static int install(struct vm *vm, size_t p, size_t n, const void *src, size_t *done)
{
	uint64_t copied = 0;
	int r = uffd_copy(vm->uffd, vm_page_addr(vm, p), src, n * PAGE_SIZE_4K, &copied);

	*done = copied / PAGE_SIZE_4K;
	for (size_t i = 0; i < *done; i++)
		pagemap_set(vm->pm, p + i, PS_RESIDENT, 0);
	if (r == -EEXIST) {
		/* Only QEMU can have put a page there while our map says tier: it is newer than
		 * our copy. Keep it, as the plain shm tier does. */
		log_warn(vm->name, "page %#zx present while its home is a tier; keeping it",
			 p + *done);
		pagemap_set(vm->pm, p + *done, PS_RESIDENT, 0);
		uffd_wake(vm->uffd, vm_page_addr(vm, p + *done), PAGE_SIZE_4K);
		r = -EAGAIN;
	}
	return r;
}

/* The next span of the run's pages from *p that name the blob at grain with consecutive
 * indexes, none in flight: sets *first, *n and the first one's reference. false: none left. */
static bool next_span(struct vm *vm, size_t *p, size_t hi, uint64_t grain, size_t *first, size_t *n,
		      struct zpool_ref *r)
{
	for (; *p < hi; (*p)++) {
		struct zpool_ref q;

		if (!names(vm, *p, grain) || (pagemap_flags(vm->pm, *p) & PF_EVICTING))
			continue;
		zpool_ref_unpack(pagemap_slot(vm->pm, *p), r);
		*first = (*p)++;
		for (*n = 1;
		     *p < hi && names(vm, *p, grain) && !(pagemap_flags(vm->pm, *p) & PF_EVICTING);
		     (*p)++, (*n)++) {
			zpool_ref_unpack(pagemap_slot(vm->pm, *p), &q);
			if (q.index != r->index + *n)
				break;
		}
		return true;
	}
	return false;
}

/* Where the bytes of the page whose reference is s are: in the pool for a raw blob, else in
 * bounce, where the blob was unpacked. */
static const void *source(struct vm *vm, const struct zpool_ref *s, const void *bounce)
{
	return s->alg == ZPOOL_RAW ? zpool_raw_page(vm->z, s)
				   : (const uint8_t *)bounce + (size_t)s->index * PAGE_SIZE_4K;
}

int zshm_serve(struct vm *vm, void *bounce, size_t page, bool demand)
{
	uint64_t ref = pagemap_slot(vm->pm, page), total = 0;
	struct zpool_ref r, s;
	size_t lo, hi, p, first, n, done;
	int pages = 0, err = 0;

	zpool_ref_unpack(ref, &r);
	if (r.alg != ZPOOL_RAW)
		pages = zpool_load(vm->z, &r, bounce, vm->pol.run_size);
	else
		pages = zpool_check(vm->z, &r);
	if (pages < 0)
		return damaged(vm, page, &r);
	/* The faulting page first, on its own: its UFFDIO_COPY wakes the vCPU, which then runs
	 * while the blob's other pages go in. */
	err = install(vm, page, 1, source(vm, &r, bounce), &done);
	total = done;
	run_bounds(vm, page, &lo, &hi);
	for (p = lo; !err && next_span(vm, &p, hi, r.grain, &first, &n, &s); total += done) {
		if (s.index + n > (size_t)pages)
			return damaged(vm, first, &s);
		err = install(vm, first, n, source(vm, &s, bounce), &done);
	}
	if (total)
		pagemap_touch(vm->pm, page);
	if (!demand)
		vm->st->bring_back_pages += total;
	else
		vm->st->faults_shm_pages += total;
	if (!err && demand)
		vm->st->faults_shm++;
	zshm_put(vm, page, ref);
	return err;
}

int zshm_copy_page(struct vm *vm, uint64_t ref, void *dst, void *scratch, uint64_t *cached)
{
	struct zpool_ref r;
	const void *src;

	zpool_ref_unpack(ref, &r);
	if (zpool_check(vm->z, &r) < 0)
		return -EUCLEAN;
	src = zpool_raw_page(vm->z, &r);
	if (!src) {
		if (*cached != r.grain + 1) {
			*cached = 0;
			if (zpool_load(vm->z, &r, scratch, vm->pol.run_size) < 0)
				return -EUCLEAN;
			*cached = r.grain + 1;
		}
		src = (const uint8_t *)scratch + (size_t)r.index * PAGE_SIZE_4K;
	}
	memcpy(dst, src, PAGE_SIZE_4K);
	return 0;
}

/* Claims the blobs the entries of the run [lo, hi) name, once each. seen: room for a run's
 * blobs. Returns 0, or -EUCLEAN with *bad_page set. */
static int claim_run(struct vm *vm, size_t lo, size_t hi, struct zpool_ref *seen, size_t *bad)
{
	size_t nseen = 0;

	for (size_t p = lo; p < hi; p++) {
		struct zpool_ref r;
		size_t k;

		if (pagemap_state(vm->pm, p) != PS_ZSHM)
			continue;
		zpool_ref_unpack(pagemap_slot(vm->pm, p), &r);
		for (k = 0; k < nseen && seen[k].grain != r.grain; k++)
			;
		if (k < nseen ? seen[k].grains != r.grains || seen[k].alg != r.alg ||
				    zpool_check(vm->z, &r) < 0
			      : zpool_claim(vm->z, &r) != 0) {
			*bad = p;
			return -EUCLEAN;
		}
		if (k == nseen)
			seen[nseen++] = r;
	}
	return 0;
}

int zshm_claim_all(struct vm *vm, size_t *bad_page)
{
	size_t rp = pagemap_run_pages(vm->pm), np = pagemap_npages(vm->pm);
	struct zpool_ref *seen = calloc(rp, sizeof(*seen));
	int r = seen ? 0 : -ENOMEM;

	for (size_t lo = 0; !r && lo < np; lo += rp)
		r = claim_run(vm, lo, lo + rp < np ? lo + rp : np, seen, bad_page);
	free(seen);
	return r;
}
