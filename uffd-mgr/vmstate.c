/* vmstate: see vmstate.h. */
#include "uffd-mgr/vmstate.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "uffd-mgr/log.h"

#define PAGE	  4096ull
#define HDR_LEN  (2 * PAGE)
/* Applied once the daemon has its writable mapping: from then on nobody, QEMU included, can
 * write the state or map it writable, while that mapping goes on working. */
#define SEALS	  (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_FUTURE_WRITE | F_SEAL_SEAL)
#define ALIGN(x) (((x) + PAGE - 1) & ~(PAGE - 1))

_Static_assert(sizeof(struct vmstate_hdr) <= HDR_LEN, "the header fits its pages");

static uint64_t npages_of(const struct vmstate_geom *g)
{
	return g->guest_bytes / PAGE;
}

/* Lays out a state of geometry g in h (offsets and total length). */
static void layout(const struct vmstate_geom *g, struct vmstate_hdr *h)
{
	h->stats_off = HDR_LEN;
	h->ent_off = h->stats_off + ALIGN(g->stats_len);
	h->total_len = h->ent_off + ALIGN(npages_of(g) * sizeof(uint64_t));
}

static int map_state(int fd, uint64_t len, int prot, struct vmstate *out)
{
	void *p = mmap(NULL, len, prot, MAP_SHARED, fd, 0);

	if (p == MAP_FAILED)
		return -errno;
	/* Guest page locations are no business of a core dump. */
	madvise(p, len, MADV_DONTDUMP);
	out->fd = fd;
	out->hdr = p;
	out->stats = (uint8_t *)p + out->hdr->stats_off;
	out->ent = (uint64_t *)((uint8_t *)p + out->hdr->ent_off);
	return 0;
}

int vmstate_create(const struct vmstate_geom *g, struct vmstate *out, char *err, size_t errlen)
{
	struct vmstate_hdr h = {.magic = VMSTATE_MAGIC, .version = VMSTATE_VERSION, .geom = *g};
	char name[96];
	int fd, r;

	if (!g->guest_bytes || g->guest_bytes % PAGE || !g->run_pages) {
		err_set(err, errlen, "state: bad geometry (%llu bytes, run of %u pages)",
			(unsigned long long)g->guest_bytes, g->run_pages);
		return -EINVAL;
	}
	layout(g, &h);
	h.created_unix = (uint64_t)time(NULL);
	snprintf(name, sizeof(name), "uffd-state-%.63s", g->vm_name);
	fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd < 0 || ftruncate(fd, (off_t)h.total_len) < 0 ||
	    pwrite(fd, &h, sizeof(h), 0) != (ssize_t)sizeof(h)) {
		r = -errno;
		err_set(err, errlen, "state: cannot make a %llu-byte memfd: %s",
			(unsigned long long)h.total_len, strerror(-r));
		goto fail;
	}
	r = map_state(fd, h.total_len, PROT_READ | PROT_WRITE, out);
	if (r) {
		err_set(err, errlen, "state: cannot map it: %s", strerror(-r));
		goto fail;
	}
	if (fcntl(fd, F_ADD_SEALS, SEALS) < 0) {
		r = -errno;
		err_set(err, errlen, "state: cannot seal it: %s", strerror(-r));
		vmstate_close(out);
		return r;
	}
	return 0;
fail:
	if (fd >= 0)
		close(fd);
	return r;
}

/* Checks the header read from a handed-back state against what the VM says it is. */
static int check_hdr(const struct vmstate_hdr *h, const struct vmstate_geom *want, off_t size,
		     char *err, size_t errlen)
{
	struct vmstate_hdr expect = {.geom = h->geom};

	if (h->magic != VMSTATE_MAGIC) {
		err_set(err, errlen, "state memfd is not a uffd-mgr VM state (magic %#x)", h->magic);
		return -EPROTO;
	}
	if (h->version != VMSTATE_VERSION) {
		err_set(err, errlen,
			"state is version %u, this uffd-mgrd reads version %u: run the uffd-mgrd "
			"that made it",
			h->version, VMSTATE_VERSION);
		return -EPROTO;
	}
	if (strncmp(h->geom.vm_name, want->vm_name, sizeof(h->geom.vm_name)) ||
	    h->geom.guest_bytes != want->guest_bytes) {
		err_set(err, errlen, "state is of vm '%.63s' (%llu MiB), not of this one (%llu MiB)",
			h->geom.vm_name, (unsigned long long)(h->geom.guest_bytes >> 20),
			(unsigned long long)(want->guest_bytes >> 20));
		return -EINVAL;
	}
	if (h->geom.stats_len != want->stats_len) {
		err_set(err, errlen, "state keeps %u bytes of counters, this uffd-mgrd %u",
			h->geom.stats_len, want->stats_len);
		return -EPROTO;
	}
	if (!h->geom.run_pages || (h->geom.run_pages & (h->geom.run_pages - 1)) ||
	    h->geom.run_pages > 512 || h->geom.guest_bytes % PAGE || h->geom.shm_compress > 2) {
		err_set(err, errlen, "state header is damaged (run of %u pages, shm compress %u)",
			h->geom.run_pages, h->geom.shm_compress);
		return -EUCLEAN;
	}
	layout(&h->geom, &expect);
	if (h->stats_off != expect.stats_off || h->ent_off != expect.ent_off ||
	    h->total_len != expect.total_len || (uint64_t)size < expect.total_len) {
		err_set(err, errlen, "state is truncated or damaged (%lld bytes, %llu expected)",
			(long long)size, (unsigned long long)expect.total_len);
		return -EUCLEAN;
	}
	return 0;
}

int vmstate_open(int fd, const struct vmstate_geom *want, struct vmstate *out, char *err,
		 size_t errlen)
{
	struct vmstate_hdr h;
	struct vmstate old;
	struct stat sb;
	int seals, r;

	if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode)) {
		err_set(err, errlen, "state descriptor is not a memfd");
		return -EINVAL;
	}
	seals = fcntl(fd, F_GET_SEALS);
	if (seals < 0 || (seals & (F_SEAL_SHRINK | F_SEAL_GROW)) != (F_SEAL_SHRINK | F_SEAL_GROW)) {
		err_set(err, errlen, "state memfd is not sealed against resizing");
		return -EINVAL;
	}
	if (sb.st_size < (off_t)sizeof(h) || pread(fd, &h, sizeof(h), 0) != (ssize_t)sizeof(h)) {
		err_set(err, errlen, "state is truncated (%lld bytes)", (long long)sb.st_size);
		return -EUCLEAN;
	}
	h.geom.vm_name[sizeof(h.geom.vm_name) - 1] = 0;
	r = check_hdr(&h, want, sb.st_size, err, errlen);
	if (r)
		return r;
	r = map_state(fd, h.total_len, PROT_READ, &old);
	if (r) {
		err_set(err, errlen, "state: cannot map it: %s", strerror(-r));
		return r;
	}
	/* A copy of our own: the one handed back is sealed against writing (or, forged, could
	 * change under us while we check it); the shim gets the copy to keep instead. */
	r = vmstate_create(&h.geom, out, err, errlen);
	if (!r) {
		struct vmstate_hdr fresh = *out->hdr;

		memcpy(out->hdr, old.hdr, h.total_len);
		/* the layout as checked, whatever a writer of the old one did meanwhile */
		out->hdr->magic = fresh.magic;
		out->hdr->version = fresh.version;
		out->hdr->geom = fresh.geom;
		out->hdr->stats_off = fresh.stats_off;
		out->hdr->ent_off = fresh.ent_off;
		out->hdr->total_len = fresh.total_len;
	}
	munmap(old.hdr, h.total_len);
	return r;
}

void vmstate_close(struct vmstate *vs)
{
	if (!vs->hdr)
		return;
	munmap(vs->hdr, vs->hdr->total_len);
	close(vs->fd);
	vs->hdr = NULL;
	vs->fd = -1;
}
