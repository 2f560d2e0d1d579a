/* test_vmstate: a VM's state memfd (uffd-mgr/vmstate.c), the part of a VM that outlives the
 * daemon, and the rules a new daemon adopts its page entries by (pagemap_reconcile, the
 * ADOPTION table in pagemap.h).
 *
 * What it checks:
 *  - create: bad geometry refused; the layout the header states (page aligned, room for the
 *    counters and one entry per page), a sealed memfd of exactly that size, all zero;
 *  - create + open: two mappings of one state; entries and counters written through either
 *    read back through the other, on every page; tier sizes come from the state, not from
 *    what the resuming VM asks;
 *  - every refusal of vmstate_open gives its errno and one line of err saying why: another
 *    version (the one before compressed pages too), a shm tier form no daemon makes, another
 *    VM name, another guest size, another counters size, a truncated state
 *    (a sealed memfd shorter than the layout with a valid header, and one shorter than the
 *    header), an unsealed memfd (sealable or not), a pipe, a directory, a file on disk, bad
 *    magic; a refused descriptor stays the caller's, open;
 *  - pagemap_reconcile row by row of the ADOPTION table (compressed pages, PS_ZSHM, too),
 *    each row with and without data in the guest memfd and with the flags a dead daemon can
 *    leave; rows are spread over several
 *    64-bit words of the data bitmap. The count it returns, a second pass changing nothing,
 *    then pagemap_attach over the settled entries: every state, slot and per-state count. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "uffd-mgr/pagemap.h"
#include "uffd-mgr/vmstate.h"

#define PG	  4096u
#define NPAGES	  256u /* 1 MiB of guest */
#define STATS_LEN 200u /* not a page multiple: the entries start on the next page */
#define SEALS	  (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_FUTURE_WRITE | F_SEAL_SEAL)
/* What a forged state needs to be looked at: sealed against resizing, still writable. */
#define FORGE_SEALS (F_SEAL_SHRINK | F_SEAL_GROW)

/* An entry as pagemap.c stores it: state in bits 0-3, flags in 4-7, slot above. */
#define ENT(st, fl, slot) ((uint64_t)(st) | (uint64_t)(fl) << 4 | (uint64_t)(slot) << 8)

static const struct vmstate_geom geom = {
    .vm_name = "vm-a",
    .guest_bytes = NPAGES * PG,
    .run_pages = 16,
    .stats_len = STATS_LEN,
    .shm_slots = 256,
};

static void make_state(struct vmstate *vs)
{
	char err[256] = "";
	int r = vmstate_create(&geom, vs, err, sizeof(err));

	if (r)
		print_error("vmstate_create: %s\n", err);
	assert_int_equal(r, 0);
	assert_non_null(vs->hdr);
}

/* A new memfd of len bytes holding the first len bytes of the state in src (zero past its
 * end), sealed as vmstate seals its own unless sealed is false. */
static int copy_state(int src, off_t len, bool sealed)
{
	int fd = memfd_create("test-state-copy", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	char *buf = calloc(1, (size_t)len);
	ssize_t n;

	assert_true(fd >= 0 && buf);
	n = pread(src, buf, (size_t)len, 0);
	assert_true(n > 0);
	assert_int_equal(ftruncate(fd, len), 0);
	assert_int_equal(pwrite(fd, buf, (size_t)len, 0), len);
	if (sealed)
		assert_int_equal(fcntl(fd, F_ADD_SEALS, FORGE_SEALS), 0);
	free(buf);
	return fd;
}

/* vmstate_open(fd, want) must refuse with want_r and an err line containing needle, and
 * leave fd open. */
static void refused(int fd, const struct vmstate_geom *want, int want_r, const char *needle)
{
	struct vmstate vs = {.fd = -1};
	char err[256] = "";
	int r = vmstate_open(fd, want, &vs, err, sizeof(err));

	if (r != want_r || !strstr(err, needle))
		print_error("vmstate_open: %d '%s', expected %d and /%s/\n", r, err, want_r,
			    needle);
	assert_int_equal(r, want_r);
	assert_non_null(strstr(err, needle));
	print_message("refused (%s): %s\n", strerror(-r), err);
	assert_null(strchr(err, '\n'));
	assert_null(vs.hdr);
	assert_true(fcntl(fd, F_GETFD) >= 0);
}

static void test_create_layout(void **state)
{
	struct vmstate vs = {.fd = -1};
	struct vmstate_geom g = geom;
	const struct vmstate_hdr *h;
	char err[256] = "";
	struct stat sb;

	g.guest_bytes = 0;
	assert_int_equal(vmstate_create(&g, &vs, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "geometry"));
	g.guest_bytes = NPAGES * PG + 100;
	assert_int_equal(vmstate_create(&g, &vs, err, sizeof(err)), -EINVAL);
	g = geom;
	g.run_pages = 0;
	assert_int_equal(vmstate_create(&g, &vs, err, sizeof(err)), -EINVAL);
	assert_null(vs.hdr);
	vmstate_close(&vs); /* never opened: nothing to do */

	make_state(&vs);
	h = vs.hdr;
	assert_int_equal(h->magic, VMSTATE_MAGIC);
	assert_int_equal(h->version, VMSTATE_VERSION);
	assert_string_equal(h->geom.vm_name, "vm-a");
	assert_int_equal(h->geom.guest_bytes, NPAGES * PG);
	assert_int_equal(h->geom.stats_len, STATS_LEN);
	assert_int_equal(h->geom.shm_slots, 256);
	assert_true(h->stats_off >= sizeof(*h) && h->stats_off % PG == 0);
	assert_true(h->ent_off >= h->stats_off + STATS_LEN && h->ent_off % PG == 0);
	assert_true(h->total_len >= h->ent_off + NPAGES * 8 && h->total_len % PG == 0);
	assert_ptr_equal(vs.stats, (char *)h + h->stats_off);
	assert_ptr_equal(vs.ent, (uint64_t *)((char *)h + h->ent_off));
	assert_int_equal(fstat(vs.fd, &sb), 0);
	assert_int_equal(sb.st_size, h->total_len);
	assert_int_equal(fcntl(vs.fd, F_GET_SEALS) & SEALS, SEALS);
	assert_int_equal(h->adoptions, 0);
	for (unsigned p = 0; p < NPAGES; p++)
		assert_true(vs.ent[p] == 0);
	for (unsigned i = 0; i < STATS_LEN; i++)
		assert_int_equal(((uint8_t *)vs.stats)[i], 0);
	vmstate_close(&vs);
	assert_null(vs.hdr);
	vmstate_close(&vs); /* twice: still fine */
}

static void test_round_trip(void **state)
{
	struct vmstate a = {.fd = -1}, b = {.fd = -1};
	struct vmstate_geom want = geom;
	char err[256] = "";
	uint64_t word = 1;
	int fd, r;

	make_state(&a);
	for (unsigned p = 0; p < NPAGES; p++)
		a.ent[p] = ENT(p % PS_NSTATES, p % 16, p * 7 + 1);
	for (unsigned i = 0; i < STATS_LEN; i++)
		((uint8_t *)a.stats)[i] = (uint8_t)(i * 3 + 1);
	a.hdr->adoptions = 5;

	/* What QEMU holds is sealed: no write, no writable mapping, through any descriptor. */
	fd = dup(a.fd);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, &word, sizeof(word), a.hdr->ent_off), -1);
	assert_int_equal(errno, EPERM);
	assert_true(mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0) == MAP_FAILED);
	assert_true(a.ent[0] == ENT(0, 0, 1)); /* the daemon's own mapping still writes */

	/* The VM asks with its own tier sizes: the state's are the ones its tiers have. */
	want.shm_slots = 1;
	want.disk_slots = 99;
	want.run_pages = 0;
	r = vmstate_open(fd, &want, &b, err, sizeof(err));
	if (r)
		print_error("vmstate_open: %s\n", err);
	assert_int_equal(r, 0);
	assert_int_not_equal(b.fd, fd); /* a copy of its own, for the shim to keep instead */
	assert_true(fcntl(fd, F_GETFD) >= 0); /* the one handed back is still the caller's */
	assert_int_equal(fcntl(b.fd, F_GET_SEALS) & SEALS, SEALS);
	assert_int_equal(b.hdr->geom.shm_slots, 256);
	assert_int_equal(b.hdr->geom.disk_slots, 0);
	assert_int_equal(b.hdr->adoptions, 5);
	for (unsigned p = 0; p < NPAGES; p++)
		assert_true(b.ent[p] == ENT(p % PS_NSTATES, p % 16, p * 7 + 1));
	for (unsigned i = 0; i < STATS_LEN; i++)
		assert_int_equal(((uint8_t *)b.stats)[i], (uint8_t)(i * 3 + 1));

	/* The copy goes its own way. */
	for (unsigned p = 0; p < NPAGES; p++)
		b.ent[p] = ~(uint64_t)p;
	b.hdr->last_pause_ns = 123456789;
	assert_true(a.ent[1] == ENT(1, 1, 8));
	assert_int_equal(a.hdr->last_pause_ns, 0);

	vmstate_close(&b);
	assert_int_equal(b.fd, -1);
	close(fd);
	vmstate_close(&a);
}

static void test_refusals(void **state)
{
	struct vmstate a = {.fd = -1};
	struct vmstate_geom want;
	uint32_t v, good;
	int fd, pipefd[2];
	char path[] = "/var/tmp/test-vmstate.XXXXXX";

	make_state(&a);
	/* A forged state: as the daemon made it, but writable (a real one is sealed). */
	fd = copy_state(a.fd, (off_t)a.hdr->total_len, true);

	/* Another version. */
	good = a.hdr->version;
	v = VMSTATE_VERSION + 1;
	assert_int_equal(pwrite(fd, &v, sizeof(v), offsetof(struct vmstate_hdr, version)), 4);
	refused(fd, &geom, -EPROTO, "version");
	/* The version before compressed pages (1): its daemon cannot read PS_ZSHM entries and
	 * this one reads another geometry; refused both ways. */
	v = 1;
	assert_int_equal(VMSTATE_VERSION, 2);
	assert_int_equal(pwrite(fd, &v, sizeof(v), offsetof(struct vmstate_hdr, version)), 4);
	refused(fd, &geom, -EPROTO, "version 1");
	assert_int_equal(pwrite(fd, &good, sizeof(good), offsetof(struct vmstate_hdr, version)), 4);
	/* A shm tier form no daemon makes. */
	v = 3;
	assert_int_equal(pwrite(fd, &v, sizeof(v),
			       offsetof(struct vmstate_hdr, geom.shm_compress)), 4);
	refused(fd, &geom, -EUCLEAN, "shm compress 3");
	v = 0;
	assert_int_equal(pwrite(fd, &v, sizeof(v),
			       offsetof(struct vmstate_hdr, geom.shm_compress)), 4);

	/* Bad magic. */
	good = a.hdr->magic;
	v = 0x12345678;
	assert_int_equal(pwrite(fd, &v, sizeof(v), offsetof(struct vmstate_hdr, magic)), 4);
	refused(fd, &geom, -EPROTO, "not a uffd-mgr VM state");
	assert_int_equal(pwrite(fd, &good, sizeof(good), offsetof(struct vmstate_hdr, magic)), 4);

	/* Another VM's state, by name and by size. */
	want = geom;
	snprintf(want.vm_name, sizeof(want.vm_name), "vm-b");
	refused(fd, &want, -EINVAL, "of vm 'vm-a'");
	want = geom;
	want.guest_bytes = 2 * NPAGES * PG;
	refused(fd, &want, -EINVAL, "not of this one (2 MiB)");

	/* Counters of another daemon's size. */
	want = geom;
	want.stats_len = STATS_LEN + 8;
	refused(fd, &want, -EPROTO, "counters");
	close(fd);

	/* Truncated: a valid header in a sealed memfd shorter than the layout, or than the
	 * header itself. */
	fd = copy_state(a.fd, (off_t)a.hdr->total_len - PG, true);
	refused(fd, &geom, -EUCLEAN, "truncated");
	close(fd);
	fd = copy_state(a.fd, 100, true);
	refused(fd, &geom, -EUCLEAN, "truncated");
	close(fd);

	/* Whole and valid, but not sealed: QEMU could shrink it under our mapping. */
	fd = copy_state(a.fd, (off_t)a.hdr->total_len, false);
	refused(fd, &geom, -EINVAL, "not sealed");
	close(fd);
	fd = memfd_create("test-state-nosealing", MFD_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, (off_t)a.hdr->total_len), 0);
	assert_int_equal(pwrite(fd, a.hdr, sizeof(*a.hdr), 0), sizeof(*a.hdr));
	refused(fd, &geom, -EINVAL, "not sealed");
	close(fd);

	/* Not a memfd at all. */
	assert_int_equal(pipe(pipefd), 0);
	refused(pipefd[0], &geom, -EINVAL, "not a memfd");
	close(pipefd[0]);
	close(pipefd[1]);
	fd = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	assert_true(fd >= 0);
	refused(fd, &geom, -EINVAL, "not a memfd");
	close(fd);
	fd = mkstemp(path);
	assert_true(fd >= 0);
	unlink(path);
	assert_int_equal(pwrite(fd, a.hdr, a.hdr->total_len, 0), (ssize_t)a.hdr->total_len);
	refused(fd, &geom, -EINVAL, "sealed");
	close(fd);

	/* After all that, the state itself opens. */
	{
		struct vmstate b = {.fd = -1};
		char err[256] = "";

		fd = dup(a.fd);
		assert_int_equal(vmstate_open(fd, &geom, &b, err, sizeof(err)), 0);
		vmstate_close(&b);
	}
	vmstate_close(&a);
}

/* One row of the ADOPTION table: an entry as a dead daemon left it, whether the guest memfd
 * holds the page, and what adoption must make of it. */
struct row {
	uint64_t before;
	bool data;
	uint64_t after;
};

static const struct row rows[] = {
    /* M holds data -> RESIDENT, any tier copy dropped, flags cleared. */
    {ENT(PS_NONE, 0, 0), true, ENT(PS_RESIDENT, 0, 0)},
    {ENT(PS_RESIDENT, 0, 0), true, ENT(PS_RESIDENT, 0, 0)},
    {ENT(PS_RESIDENT, PF_PREFETCHED, 0), true, ENT(PS_RESIDENT, 0, 0)},
    {ENT(PS_RESIDENT, PF_ARMING, 0), true, ENT(PS_RESIDENT, 0, 0)},
    {ENT(PS_RESIDENT, PF_EVICTING, 0), true, ENT(PS_RESIDENT, 0, 0)},
    {ENT(PS_ZERO, 0, 0), true, ENT(PS_RESIDENT, 0, 0)},
    {ENT(PS_ZERO, PF_EVICTING, 0), true, ENT(PS_RESIDENT, 0, 0)},
    {ENT(PS_SHM, 0, 5), true, ENT(PS_RESIDENT, 0, 0)},
    {ENT(PS_SHM, PF_EVICTING, 6), true, ENT(PS_RESIDENT, 0, 0)},
    {ENT(PS_SHM, PF_EVICTING | PF_DISCARDED, 7), true, ENT(PS_RESIDENT, 0, 0)},
    {ENT(PS_DISK, 0, 9), true, ENT(PS_RESIDENT, 0, 0)},
    {ENT(PS_DISK, PF_EVICTING, 10), true, ENT(PS_RESIDENT, 0, 0)},
    {ENT(PS_ZSHM, 0, 0x123456789abcull), true, ENT(PS_RESIDENT, 0, 0)},
    {ENT(PS_ZSHM, PF_EVICTING, 0x23), true, ENT(PS_RESIDENT, 0, 0)},
    /* M a hole, +DISCARDED -> ZERO, whatever the home. */
    {ENT(PS_ZSHM, PF_EVICTING | PF_DISCARDED, 0x45), false, ENT(PS_ZERO, 0, 0)},
    {ENT(PS_SHM, PF_EVICTING | PF_DISCARDED, 17), false, ENT(PS_ZERO, 0, 0)},
    {ENT(PS_DISK, PF_EVICTING | PF_DISCARDED, 18), false, ENT(PS_ZERO, 0, 0)},
    {ENT(PS_ZERO, PF_EVICTING | PF_DISCARDED, 0), false, ENT(PS_ZERO, 0, 0)},
    {ENT(PS_RESIDENT, PF_EVICTING | PF_DISCARDED, 0), false, ENT(PS_ZERO, 0, 0)},
    {ENT(PS_SHM, PF_DISCARDED, 19), false, ENT(PS_ZERO, 0, 0)},
    /* M a hole, SHM/DISK -> kept, with the slot: the tier holds the only copy. */
    {ENT(PS_SHM, 0, 11), false, ENT(PS_SHM, 0, 11)},
    {ENT(PS_SHM, PF_EVICTING, 12), false, ENT(PS_SHM, 0, 12)},
    {ENT(PS_SHM, PF_PREFETCHED, 0), false, ENT(PS_SHM, 0, 0)},
    {ENT(PS_DISK, 0, 13), false, ENT(PS_DISK, 0, 13)},
    {ENT(PS_DISK, PF_EVICTING, 14), false, ENT(PS_DISK, 0, 14)},
    {ENT(PS_DISK, 0, (1ull << 56) - 1), false, ENT(PS_DISK, 0, (1ull << 56) - 1)},
    /* ... and a compressed page keeps its blob's reference whole. */
    {ENT(PS_ZSHM, 0, (1ull << 56) - 1), false, ENT(PS_ZSHM, 0, (1ull << 56) - 1)},
    {ENT(PS_ZSHM, PF_EVICTING, 0xabcdef0123ull), false, ENT(PS_ZSHM, 0, 0xabcdef0123ull)},
    /* M a hole, RESIDENT/ZERO -> ZERO. */
    {ENT(PS_RESIDENT, 0, 0), false, ENT(PS_ZERO, 0, 0)},
    {ENT(PS_RESIDENT, PF_ARMING, 0), false, ENT(PS_ZERO, 0, 0)},
    {ENT(PS_RESIDENT, PF_EVICTING, 0), false, ENT(PS_ZERO, 0, 0)},
    {ENT(PS_RESIDENT, PF_PREFETCHED, 0), false, ENT(PS_ZERO, 0, 0)},
    {ENT(PS_ZERO, 0, 0), false, ENT(PS_ZERO, 0, 0)},
    {ENT(PS_ZERO, PF_EVICTING, 0), false, ENT(PS_ZERO, 0, 0)},
    /* M a hole, NONE -> NONE. */
    {ENT(PS_NONE, 0, 0), false, ENT(PS_NONE, 0, 0)},
    {ENT(PS_NONE, PF_ARMING, 0), false, ENT(PS_NONE, 0, 0)},
};

#define NROWS  (sizeof(rows) / sizeof(rows[0]))
#define SPREAD 7 /* rows every 7 pages: over several words of the bitmap */
#define RPAGES (NROWS * SPREAD + 3)

static void test_reconcile_rows(void **state)
{
	uint64_t ent[RPAGES] = {0}, bits[(RPAGES + 63) / 64] = {0};
	size_t want_changed = 0, want_count[PS_NSTATES] = {0};
	struct pagemap *pm = NULL;

	/* Pages between the rows: never touched, holes in M. */
	for (size_t i = 0; i < NROWS; i++) {
		size_t p = i * SPREAD + 2;

		ent[p] = rows[i].before;
		if (rows[i].data)
			bits[p / 64] |= 1ull << (p % 64);
		want_changed += rows[i].before != rows[i].after;
	}
	assert_int_equal(pagemap_reconcile(ent, RPAGES, bits, false), want_changed);
	for (size_t p = 0; p < RPAGES; p++) {
		uint64_t want = (p % SPREAD == 2 && p / SPREAD < NROWS) ? rows[p / SPREAD].after
									: ENT(PS_NONE, 0, 0);

		if (ent[p] != want)
			print_error("page %zu (row %zu): %#llx, expected %#llx\n", p, p / SPREAD,
				    (unsigned long long)ent[p], (unsigned long long)want);
		assert_true(ent[p] == want);
		want_count[want & 0xf]++;
	}
	/* Settled entries are settled: a second pass changes nothing. */
	assert_int_equal(pagemap_reconcile(ent, RPAGES, bits, false), 0);

	/* The map a new daemon builds over them. */
	assert_int_equal(pagemap_attach(ent, RPAGES, 4, &pm), 0);
	for (int s = 0; s < PS_NSTATES; s++)
		assert_int_equal(pagemap_count(pm, (enum page_state)s), want_count[s]);
	assert_int_equal(pagemap_count(pm, PS_RESIDENT), 14);
	assert_int_equal(pagemap_count(pm, PS_SHM), 3);
	assert_int_equal(pagemap_count(pm, PS_DISK), 3);
	assert_int_equal(pagemap_count(pm, PS_ZSHM), 2);
	for (size_t i = 0; i < NROWS; i++) {
		size_t p = i * SPREAD + 2;

		assert_int_equal(pagemap_state(pm, p), rows[i].after & 0xf);
		assert_int_equal(pagemap_flags(pm, p), 0);
		if (pagemap_state(pm, p) == PS_SHM || pagemap_state(pm, p) == PS_DISK ||
		    pagemap_state(pm, p) == PS_ZSHM)
			assert_true(pagemap_slot(pm, p) == rows[i].after >> 8);
	}
	pagemap_destroy(pm);
	assert_true(ent[2] == rows[0].after); /* the entries are the caller's, not freed */
}

/* Every page in data, then every page a hole: one rule for all, over a whole state. */
/* While the shim still runs the dead daemon's arming, PF_ARMING stays on the pages that hold
 * data (their REMOVE is yet to come), and on nothing else. */
static void test_reconcile_keeps_arming(void **state)
{
	uint64_t ent[4] = {ENT(PS_RESIDENT, PF_ARMING, 0), ENT(PS_RESIDENT, PF_ARMING, 0),
			   ENT(PS_SHM, PF_EVICTING, 7), ENT(PS_RESIDENT, PF_ARMING | PF_PREFETCHED, 0)};
	uint64_t bits[1] = {1u | 4u | 8u}; /* pages 0, 2 and 3 hold data */

	(void)state;
	assert_int_equal(pagemap_reconcile(ent, 4, bits, true), 3);
	assert_true(ent[0] == ENT(PS_RESIDENT, PF_ARMING, 0));
	assert_true(ent[1] == ENT(PS_ZERO, 0, 0));
	assert_true(ent[2] == ENT(PS_RESIDENT, 0, 0));
	assert_true(ent[3] == ENT(PS_RESIDENT, PF_ARMING, 0));
}

static void test_reconcile_whole_state(void **state)
{
	struct vmstate vs = {.fd = -1};
	uint64_t bits[NPAGES / 64];
	struct pagemap *pm = NULL;

	make_state(&vs);
	for (unsigned p = 0; p < NPAGES; p++)
		vs.ent[p] = ENT(PS_SHM, PF_EVICTING, p);
	memset(bits, 0xff, sizeof(bits));
	assert_int_equal(pagemap_reconcile(vs.ent, NPAGES, bits, false), NPAGES);
	assert_int_equal(pagemap_attach(vs.ent, NPAGES, geom.run_pages, &pm), 0);
	assert_int_equal(pagemap_count(pm, PS_RESIDENT), NPAGES);
	pagemap_destroy(pm);

	for (unsigned p = 0; p < NPAGES; p++)
		vs.ent[p] = p % 2 ? ENT(PS_DISK, PF_EVICTING, p) : ENT(PS_RESIDENT, PF_EVICTING, 0);
	memset(bits, 0, sizeof(bits));
	assert_int_equal(pagemap_reconcile(vs.ent, NPAGES, bits, false), NPAGES);
	assert_int_equal(pagemap_attach(vs.ent, NPAGES, geom.run_pages, &pm), 0);
	assert_int_equal(pagemap_count(pm, PS_DISK), NPAGES / 2);
	assert_int_equal(pagemap_count(pm, PS_ZERO), NPAGES / 2);
	assert_int_equal(pagemap_count(pm, PS_RESIDENT), 0);
	pagemap_destroy(pm);

	/* An entry no daemon writes: reconcile leaves it, attach refuses it. */
	vs.ent[3] = ENT(PS_NSTATES + 2, 0, 0);
	assert_int_equal(pagemap_reconcile(vs.ent, NPAGES, bits, false), 0);
	assert_int_equal(pagemap_attach(vs.ent, NPAGES, geom.run_pages, &pm), -EUCLEAN);
	vmstate_close(&vs);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_create_layout),
	    cmocka_unit_test(test_round_trip),
	    cmocka_unit_test(test_refusals),
	    cmocka_unit_test(test_reconcile_rows),
	    cmocka_unit_test(test_reconcile_keeps_arming),
	    cmocka_unit_test(test_reconcile_whole_state),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
