/* test_disktier: the disk tier (shmswap/disktier.c), a swap file moved through io_uring.
 *
 * What it stresses, against the real kernel and real file systems:
 *  - open: argument errors name the path, a non-regular file is refused and left alone; the
 *    file is created 0600 (a stale one made so), truncated, sparse, sized to whole slots, and
 *    unlinked on close;
 *  - slots in extents (exact, longest, -ENOSPC), and disktier_free deferring the punch: no
 *    system call at the free, the slots not handed out again until disktier_reclaim (or an
 *    allocation that finds no other room) gave them back, punched so the file's st_blocks
 *    fall when 256 KiB or more or a whole aligned MiB is free, kept otherwise (and punched
 *    when a write meets a full file system);
 *  - merged I/O: segments adjacent both in the file and in memory move as one I/O (a
 *    counting gate sees one acquire), a gap on either side splits them, data byte-exact;
 *  - a gate (disktier_gate) that refuses past 2 segments in flight: 37 segments still move
 *    byte-exact, the ring waits only with nothing of its own in flight, releases all;
 *  - round trips of seeded data, checked byte-exact: one segment, many segments (more than
 *    the ring's depth, of random sizes and places), through registered buffers, through plain
 *    buffers, both mixed in one call, and a segment that crosses the 1 GiB boundary between
 *    two registered buffer pieces (only with 4 GiB of memory available);
 *  - O_DIRECT on a regular file in /var/tmp (when the file system takes it, as a raw open
 *    says), the buffered fallback on ramfs (refuses O_DIRECT; tmpfs takes it since 6.6);
 *  - a full file system: a 1 MiB tmpfs under a 4 MiB swap file is written until -ENOSPC, and
 *    all data of the calls that succeeded reads back exactly; freeing slots gives space back;
 *  - fault injection: every Nth read fails with EIO, every Nth write with ENOSPC; an injected
 *    segment moves nothing (the old file data and the read buffer stay), the segments after
 *    it in the call are not started, counters count it all; bad specs give -EINVAL;
 *  - RLIMIT_MEMLOCK: in a child without CAP_IPC_LOCK/CAP_SYS_RESOURCE, registration lifts the
 *    soft limit to the hard one, and when that is not enough falls back to plain I/O;
 *  - threads: 4 threads, each with its own ring, allocate, write, read back, check and free;
 *  - adoption, as a new daemon takes over a dead one's swap file from a descriptor its shim
 *    kept (a dup of the open tier's): same O_DIRECT mode; data written before reads back after
 *    the claim, claims count and refuse -ERANGE/-EEXIST, claimed slots are never handed out;
 *    settle punches every unclaimed slot (st_blocks, SEEK_DATA) and no claimed one; closing
 *    it leaves the first tier's descriptor alone; a pipe, a directory, a file too small or no slots are refused with a line
 *    naming the path, the descriptor left open.
 * Mounts (tmpfs, ramfs) need root: without them those tests skip, and the program exits 77
 * with the reason when everything else passed. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "shmswap/disktier.h"

#define PG  4096u
#define MiB (1024u * 1024u)

static char skip_reason[256];

struct fix {
	char dir[64];
	char mnt[96];
	char path[128];
	bool mounted;
	struct disktier *d;
};

static uint64_t next_rand(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* Fills npages at buf with bytes that depend on seed and on each page's index. */
static void fill(void *buf, uint32_t npages, uint64_t seed)
{
	uint64_t *w = buf;

	for (uint64_t p = 0; p < npages; p++) {
		uint64_t s = seed * 1000003 + p;

		for (unsigned i = 0; i < PG / 8; i++)
			w[p * PG / 8 + i] = next_rand(&s);
	}
}

static void check(const void *buf, uint32_t npages, uint64_t seed)
{
	void *want = malloc((size_t)npages * PG);

	assert_non_null(want);
	fill(want, npages, seed);
	assert_memory_equal(buf, want, (size_t)npages * PG);
	free(want);
}

static void *map(size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	assert_true(p != MAP_FAILED);
	return p;
}

/* Whether the file system holding dir accepts O_DIRECT, asked without the code under test. */
static bool raw_direct(const char *dir)
{
	char p[160];
	int fd;

	snprintf(p, sizeof(p), "%s/probe-direct", dir);
	fd = open(p, O_RDWR | O_CREAT | O_TRUNC | O_DIRECT, 0600);
	if (fd >= 0)
		close(fd);
	unlink(p);
	return fd >= 0;
}

static int setup(void **state)
{
	struct fix *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	strcpy(f->dir, "/var/tmp/test-disktier.XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->path, sizeof(f->path), "%s/swap", f->dir);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fix *f = *state;

	disktier_close(f->d);
	if (f->mounted)
		umount2(f->mnt, MNT_DETACH);
	if (f->mnt[0])
		rmdir(f->mnt);
	rmdir(f->dir);
	free(f);
	return 0;
}

/* Mounts a file system of type at f->mnt and points f->path into it; false when not allowed. */
static bool mount_fs(struct fix *f, const char *type, const char *opts)
{
	snprintf(f->mnt, sizeof(f->mnt), "%s/mnt", f->dir);
	assert_int_equal(mkdir(f->mnt, 0700), 0);
	if (mount(type, f->mnt, type, 0, opts)) {
		snprintf(skip_reason, sizeof(skip_reason), "SKIP: cannot mount %s (%s): %s", type,
			 opts ? opts : "", strerror(errno));
		printf("%s\n", skip_reason);
		return false;
	}
	f->mounted = true;
	snprintf(f->path, sizeof(f->path), "%s/swap", f->mnt);
	return true;
}

static void open_tier(struct fix *f, uint64_t bytes)
{
	char err[256] = "";
	int ret = disktier_open(f->path, bytes, &f->d, err, sizeof(err));

	if (ret)
		print_error("disktier_open: %s\n", err);
	assert_int_equal(ret, 0);
}

static struct disktier_counters counters(struct disktier *d)
{
	struct disktier_counters c;

	disktier_get_counters(d, &c);
	return c;
}

static void test_open_errors(void **state)
{
	struct fix *f = *state;
	struct disktier *d = NULL;
	char err[256] = "", path[160];

	assert_int_equal(disktier_open(f->path, 4095, &d, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, f->path));
	snprintf(path, sizeof(path), "%s/no/such/dir/swap", f->dir);
	assert_int_equal(disktier_open(path, MiB, &d, err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, path));
	assert_null(strchr(err, '\n'));
	assert_int_equal(disktier_open(f->dir, MiB, &d, err, sizeof(err)), -EISDIR);
	assert_non_null(strstr(err, f->dir));
	assert_int_equal(disktier_open(f->path, 4095, &d, NULL, 0), -EINVAL);
	/* Not a regular file: refused, and left where it is. */
	assert_int_equal(mkfifo(f->path, 0600), 0);
	assert_int_equal(disktier_open(f->path, MiB, &d, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "not a regular file"));
	assert_int_equal(access(f->path, F_OK), 0);
	unlink(f->path);
	assert_null(d);
	disktier_close(NULL);
	disktier_io_destroy(NULL);
}

/* The swap file at the policy's path is truncated: never when the path is a symbolic link, has
 * other names, or belongs to someone else (a typo or a planted link must not cost another
 * file its data). The other file keeps every byte. */
static void test_open_never_follows(void **state)
{
	struct fix *f = *state;
	struct disktier *d = NULL;
	char err[256] = "", victim[200], buf[6] = "";
	int fd;

	snprintf(victim, sizeof(victim), "%s/precious", f->dir);
	fd = open(victim, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "keep!", 5), 5);
	close(fd);
	assert_int_equal(symlink(victim, f->path), 0);
	assert_int_equal(disktier_open(f->path, MiB, &d, err, sizeof(err)), -ELOOP);
	assert_non_null(strstr(err, "symbolic link"));
	unlink(f->path);
	assert_int_equal(link(victim, f->path), 0);
	assert_int_equal(disktier_open(f->path, MiB, &d, err, sizeof(err)), -EMLINK);
	assert_non_null(strstr(err, "hard links"));
	unlink(f->path);
	if (geteuid() == 0) {
		fd = open(f->path, O_WRONLY | O_CREAT, 0600);
		assert_true(fd >= 0 && fchown(fd, 65534, 65534) == 0);
		close(fd);
		assert_int_equal(disktier_open(f->path, MiB, &d, err, sizeof(err)), -EACCES);
		assert_non_null(strstr(err, "another user"));
		unlink(f->path);
	}
	assert_null(d);
	fd = open(victim, O_RDONLY);
	assert_int_equal(read(fd, buf, 5), 5);
	close(fd);
	assert_string_equal(buf, "keep!");
	unlink(victim);
}

static void test_open_sparse_truncated_unlinked(void **state)
{
	struct fix *f = *state;
	char junk[PG];
	struct stat st;
	int fd;

	/* A stale file from an earlier run is truncated, not reused. */
	fd = open(f->path, O_WRONLY | O_CREAT, 0644);
	assert_true(fd >= 0);
	memset(junk, 0x5a, sizeof(junk));
	for (int i = 0; i < 64; i++)
		assert_int_equal(write(fd, junk, sizeof(junk)), sizeof(junk));
	close(fd);
	open_tier(f, 10 * PG + 100);
	assert_int_equal(disktier_slots(f->d), 10);
	assert_int_equal(disktier_used(f->d), 0);
	assert_string_equal(disktier_path(f->d), f->path);
	assert_int_equal(disktier_direct(f->d), raw_direct(f->dir));
	/* Nameless at once: no crash leaves guest memory at the path, which is free again. */
	assert_int_equal(stat(f->path, &st), -1);
	assert_int_equal(errno, ENOENT);
	assert_int_equal(fstat(disktier_fd(f->d), &st), 0);
	assert_int_equal(st.st_nlink, 0);
	assert_int_equal(st.st_size, 10 * PG);
	assert_int_equal(st.st_blocks, 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	disktier_close(f->d);
	f->d = NULL;
}

static void test_alloc_extents(void **state)
{
	struct fix *f = *state;
	uint32_t got;

	open_tier(f, 64 * PG);
	assert_int_equal(disktier_alloc(f->d, 0, &got), -EINVAL);
	assert_int_equal(disktier_alloc(f->d, 16, &got), 0);
	assert_int_equal(got, 16);
	assert_int_equal(disktier_alloc(f->d, 16, &got), 16);
	assert_int_equal(got, 16);
	disktier_free(f->d, 0, 16); /* free: 0-15 (not yet reclaimed) and 32-63 */
	assert_int_equal(disktier_used(f->d), 16);
	assert_int_equal(disktier_alloc(f->d, 20, &got), 32);
	assert_int_equal(got, 20);
	/* 0-15 wait for their punch: not handed out while other room is left. */
	assert_int_equal(disktier_alloc(f->d, 20, &got), 52);
	assert_int_equal(got, 12);
	assert_int_equal(counters(f->d).unpunched, 16);
	/* No room left but them: the allocation reclaims them itself. */
	assert_int_equal(disktier_alloc(f->d, 20, &got), 0);
	assert_int_equal(got, 16);
	assert_int_equal(counters(f->d).unpunched, 0);
	assert_int_equal(disktier_alloc(f->d, 1, &got), -ENOSPC);
	assert_int_equal(disktier_used(f->d), 64);
	/* Frees in any order come back as one extent once reclaimed. */
	disktier_free(f->d, 8, 8);
	disktier_free(f->d, 0, 4);
	disktier_free(f->d, 4, 4);
	assert_int_equal(disktier_reclaim(f->d), 16);
	assert_int_equal(disktier_alloc(f->d, 16, &got), 0);
	assert_int_equal(got, 16);
}

/* Writes nsegs segments of random sizes (1..maxpg pages) from random places of src, reads
 * them back into other random places of dst, checks them, frees their slots. src and dst
 * hold room pages each. */
static void round_trip(struct disktier *d, struct disktier_io *io, char *src, char *dst,
		       uint32_t room, unsigned nsegs, uint32_t maxpg, uint64_t seed)
{
	struct disktier_seg *w = calloc(nsegs, sizeof(*w)), *r = calloc(nsegs, sizeof(*r));
	uint64_t rng = seed, used0 = disktier_used(d);
	uint32_t pos = 0;

	assert_true(w && r);
	for (unsigned i = 0; i < nsegs; i++) {
		uint32_t want = (uint32_t)(next_rand(&rng) % maxpg) + 1, got;
		int64_t slot = disktier_alloc(d, want, &got);

		assert_true(slot >= 0);
		assert_true(pos + got <= room);
		w[i] = (struct disktier_seg){(uint64_t)slot, src + (size_t)pos * PG, got};
		fill(w[i].buf, got, seed + i);
		pos += got;
	}
	assert_int_equal(disktier_write(io, w, nsegs), 0);
	/* Read back in another order into other places, so that no segment lands where it was. */
	memset(dst, 0xee, (size_t)room * PG);
	pos = 0;
	for (unsigned i = 0; i < nsegs; i++) {
		unsigned j = nsegs - 1 - i;

		r[i] = (struct disktier_seg){w[j].slot, dst + (size_t)pos * PG, w[j].npages};
		pos += w[j].npages;
	}
	assert_int_equal(disktier_read(io, r, nsegs), 0);
	for (unsigned i = 0; i < nsegs; i++)
		check(r[i].buf, r[i].npages, seed + (nsegs - 1 - i));
	for (unsigned i = 0; i < nsegs; i++)
		disktier_free(d, w[i].slot, w[i].npages);
	assert_int_equal(disktier_used(d), used0);
	free(w);
	free(r);
}

/* Single segments (one page, many pages) and 37 segments through a ring of depth 4, with
 * fixed buffers (src and dst inside the registered region) or without. */
static void round_trips(struct fix *f, bool fixed)
{
	enum { ROOM = 37 * 16 };
	char *mem = map(2 * (size_t)ROOM * PG);
	struct disktier_io *io;
	struct disktier_counters c0, c1;

	c0 = counters(f->d);
	assert_int_equal(
	    disktier_io_create(f->d, fixed ? mem : NULL, 2 * (size_t)ROOM * PG, 4, &io), 0);
	assert_int_equal(disktier_io_fixed(io), fixed);
	round_trip(f->d, io, mem, mem + (size_t)ROOM * PG, ROOM, 1, 1, 1);
	round_trip(f->d, io, mem, mem + (size_t)ROOM * PG, ROOM, 1, 16, 2);
	round_trip(f->d, io, mem, mem + (size_t)ROOM * PG, ROOM, 37, 16, 3);
	c1 = counters(f->d);
	assert_int_equal(c1.writes - c0.writes, 39);
	assert_int_equal(c1.reads - c0.reads, 39);
	assert_int_equal(c1.write_bytes - c0.write_bytes, c1.read_bytes - c0.read_bytes);
	assert_int_equal(c1.write_errors + c1.read_errors, 0);
	disktier_io_destroy(io);
	munmap(mem, 2 * (size_t)ROOM * PG);
}

static void test_direct_round_trips(void **state)
{
	struct fix *f = *state;

	open_tier(f, 4 * MiB);
	if (raw_direct(f->dir))
		assert_true(disktier_direct(f->d));
	else
		printf("note: %s refuses O_DIRECT; the buffered path was tested\n", f->dir);
	round_trips(f, false);
	round_trips(f, true);
}

/* One call mixing segments inside the registered region and outside it. */
static void test_mixed_fixed_and_plain(void **state)
{
	struct fix *f = *state;
	char *in = map(64 * PG), *out = map(64 * PG);
	struct disktier_seg w[8], r[8];
	struct disktier_io *io;
	uint32_t got;

	open_tier(f, MiB);
	assert_int_equal(disktier_io_create(f->d, in, 32 * PG, 2, &io), 0);
	assert_true(disktier_io_fixed(io));
	for (unsigned i = 0; i < 8; i++) {
		/* Even segments inside [in, in+32 pages), odd ones outside or straddling its end.
		 */
		char *at = in + (i % 2 ? 26 + 4 * i : 4 * i) * (size_t)PG;

		w[i] = (struct disktier_seg){(uint64_t)disktier_alloc(f->d, 4, &got), at, 4};
		assert_int_equal(got, 4);
		fill(at, 4, 100 + i);
		r[i] = (struct disktier_seg){
		    w[i].slot, i % 2 ? out + 8 * i * (size_t)PG : in + 4 * i * (size_t)PG, 4};
	}
	assert_int_equal(disktier_write(io, w, 8), 0);
	memset(out, 0, 64 * PG);
	for (unsigned i = 0; i < 8; i += 2)
		memset(in + 4 * i * (size_t)PG, 0, 4 * PG);
	assert_int_equal(disktier_read(io, r, 8), 0);
	for (unsigned i = 0; i < 8; i++)
		check(r[i].buf, 4, 100 + i);
	disktier_io_destroy(io);
	munmap(in, 64 * PG);
	munmap(out, 64 * PG);
}

static uint64_t mem_available(void)
{
	FILE *m = fopen("/proc/meminfo", "r");
	unsigned long long kb = 0;
	char line[128];

	while (m && fgets(line, sizeof(line), m))
		if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1)
			break;
	if (m)
		fclose(m);
	return kb * 1024;
}

/* Registered buffers are split in 1 GiB pieces; a segment across the boundary of two pieces
 * must still move (cut in two SQEs). Registering pins the whole region, hence the memory
 * condition. */
static void test_fixed_piece_boundary(void **state)
{
	struct fix *f = *state;
	const size_t len = (1ull << 30) + 64 * PG;
	char *mem;
	struct disktier_io *io;
	struct disktier_seg w, r;
	uint32_t got;

	if (mem_available() < (4ull << 30)) {
		printf("note: less than 4 GiB available, piece boundary not tested\n");
		skip();
	}
	mem = map(len);
	madvise(mem, len, MADV_HUGEPAGE); /* registration populates it: fewer, larger faults */
	open_tier(f, MiB);
	assert_int_equal(disktier_io_create(f->d, mem, len, 4, &io), 0);
	if (!disktier_io_fixed(io)) {
		printf("note: RLIMIT_MEMLOCK does not cover 1 GiB, piece boundary not tested\n");
		disktier_io_destroy(io);
		munmap(mem, len);
		skip();
	}
	w = (struct disktier_seg){(uint64_t)disktier_alloc(f->d, 16, &got),
				  mem + (1ull << 30) - 5 * PG, 16};
	assert_int_equal(got, 16);
	fill(w.buf, 16, 77);
	assert_int_equal(disktier_write(io, &w, 1), 0);
	r = (struct disktier_seg){w.slot, mem + (1ull << 30) - 11 * PG, 16};
	memset(r.buf, 0, 16 * PG);
	assert_int_equal(disktier_read(io, &r, 1), 0);
	check(r.buf, 16, 77);
	disktier_io_destroy(io);
	munmap(mem, len);
}

static void test_free_punches(void **state)
{
	struct fix *f = *state;
	char *buf = map(256 * PG), *want;
	struct disktier_io *io;
	struct disktier_seg s;
	struct stat before, after;
	uint32_t got;

	open_tier(f, 4 * MiB);
	assert_int_equal(disktier_io_create(f->d, NULL, 0, 8, &io), 0);
	s = (struct disktier_seg){(uint64_t)disktier_alloc(f->d, 256, &got), buf, 256};
	assert_int_equal(got, 256);
	fill(buf, 256, 5);
	assert_int_equal(disktier_write(io, &s, 1), 0);
	assert_int_equal(fstat(disktier_fd(f->d), &before), 0);
	assert_true(before.st_blocks >= 256 * PG / 512);
	disktier_free(f->d, s.slot, 128);
	/* Deferred: the free itself makes no system call; the reclaim punches. */
	assert_int_equal(fstat(disktier_fd(f->d), &after), 0);
	assert_int_equal(after.st_blocks, before.st_blocks);
	assert_int_equal(disktier_used(f->d), 128);
	assert_int_equal(disktier_reclaim(f->d), 128);
	assert_int_equal(fstat(disktier_fd(f->d), &after), 0);
	assert_true(after.st_blocks <= before.st_blocks - 128 * PG / 512);
	/* The other half is untouched. */
	s = (struct disktier_seg){s.slot + 128, buf, 128};
	memset(buf, 0, 256 * PG);
	assert_int_equal(disktier_read(io, &s, 1), 0);
	want = malloc(256 * PG);
	assert_non_null(want);
	fill(want, 256, 5);
	assert_memory_equal(buf, want + 128 * PG, 128 * PG);
	free(want);
	disktier_free(f->d, s.slot, 128);
	assert_int_equal(disktier_reclaim(f->d), 128);
	assert_int_equal(fstat(disktier_fd(f->d), &after), 0);
	assert_int_equal(after.st_blocks, 0);
	assert_int_equal(disktier_used(f->d), 0);
	disktier_io_destroy(io);
	munmap(buf, 256 * PG);
}

/* ramfs refuses O_DIRECT (and hole punching): the tier must fall back to buffered I/O. */
static void test_buffered_fallback(void **state)
{
	struct fix *f = *state;
	uint32_t got;
	int64_t slot;

	if (!mount_fs(f, "ramfs", "mode=0700"))
		skip();
	open_tier(f, 2 * MiB);
	assert_false(disktier_direct(f->d));
	round_trips(f, false);
	round_trips(f, true);
	/* Punching is not supported there: free must still return the slots. */
	slot = disktier_alloc(f->d, 3, &got);
	assert_true(slot >= 0);
	disktier_free(f->d, (uint64_t)slot, got);
	assert_int_equal(disktier_used(f->d), 0);
}

/* tmpfs: before Linux 6.6 it refused O_DIRECT, since then it takes it; either way the tier
 * says what it got and moves data. */
static void test_tmpfs(void **state)
{
	struct fix *f = *state;

	if (!mount_fs(f, "tmpfs", "size=8m,mode=0700"))
		skip();
	open_tier(f, 2 * MiB);
	assert_int_equal(disktier_direct(f->d), raw_direct(f->mnt));
	printf("note: tmpfs %s O_DIRECT\n", disktier_direct(f->d) ? "takes" : "refuses");
	round_trips(f, false);
	round_trips(f, true);
}

/* Scattered small frees (a random fault frees one slot) go back without a punch: each punch
 * holds the file's inode lock against the faults' O_DIRECT reads. The aligned MiB around them
 * is punched once it is wholly free, an extent of 256 KiB or more at once. */
static void test_small_frees_keep_blocks(void **state)
{
	struct fix *f = *state;
	char *buf = map(256 * PG);
	struct disktier_io *io;
	struct disktier_seg s;
	struct stat before, after;
	uint64_t punches;
	uint32_t got;

	open_tier(f, 4 * MiB);
	assert_int_equal(disktier_io_create(f->d, NULL, 0, 8, &io), 0);
	s = (struct disktier_seg){(uint64_t)disktier_alloc(f->d, 256, &got), buf, 256};
	assert_int_equal(s.slot, 0);
	assert_int_equal(got, 256);
	fill(buf, 256, 7);
	assert_int_equal(disktier_write(io, &s, 1), 0);
	assert_int_equal(fstat(disktier_fd(f->d), &before), 0);
	punches = counters(f->d).punches;
	for (uint64_t k = 0; k < 32; k += 2)
		disktier_free(f->d, k, 1);
	assert_int_equal(disktier_reclaim(f->d), 16);
	assert_int_equal(counters(f->d).punches, punches);
	assert_int_equal(fstat(disktier_fd(f->d), &after), 0);
	assert_int_equal(after.st_blocks, before.st_blocks);
	assert_int_equal(disktier_used(f->d), 240);
	/* The rest of the MiB: the odd slots one by one, 32-255 as one extent. */
	for (uint64_t k = 1; k < 32; k += 2)
		disktier_free(f->d, k, 1);
	disktier_free(f->d, 32, 224);
	assert_int_equal(disktier_reclaim(f->d), 16 + 224);
	assert_int_equal(fstat(disktier_fd(f->d), &after), 0);
	assert_int_equal(after.st_blocks, 0);
	assert_int_equal(disktier_used(f->d), 0);
	disktier_io_destroy(io);
	munmap(buf, 256 * PG);
}

/* A 4 MiB swap file on a 1 MiB tmpfs: calls of 4 segments of 8 pages each are written until
 * one fails; it must fail with -ENOSPC, and every segment of the calls that succeeded must
 * read back exactly. Freeing slots then gives the space back. */
static void test_full_fs(void **state)
{
	enum { SEG = 8, PER = 4, MAXCALLS = 4 * MiB / PG / SEG / PER };
	struct fix *f = *state;
	char *mem = map(PER * SEG * PG);
	struct disktier_seg segs[MAXCALLS][PER];
	struct disktier_counters c;
	struct disktier_io *io;
	unsigned ok = 0;
	int ret = 0;
	uint32_t got;

	if (!mount_fs(f, "tmpfs", "size=1m,mode=0700"))
		skip();
	open_tier(f, 4 * MiB);
	assert_int_equal(disktier_io_create(f->d, mem, PER * SEG * PG, 4, &io), 0);
	while (ok < MAXCALLS) {
		for (unsigned i = 0; i < PER; i++) {
			segs[ok][i] = (struct disktier_seg){
			    (uint64_t)disktier_alloc(f->d, SEG, &got), mem + i * SEG * PG, SEG};
			assert_int_equal(got, SEG);
			fill(segs[ok][i].buf, SEG, ok * PER + i);
		}
		ret = disktier_write(io, segs[ok], PER);
		if (ret)
			break;
		ok++;
	}
	assert_int_equal(ret, -ENOSPC);
	assert_true(ok > 0 && ok < MAXCALLS);
	c = counters(f->d);
	assert_true(c.write_errors >= 1);
	assert_true(c.writes >= ok * PER);
	for (unsigned k = 0; k < ok; k++) {
		for (unsigned i = 0; i < PER; i++) {
			struct disktier_seg r = segs[k][i];

			memset(r.buf, 0, SEG * PG);
			assert_int_equal(disktier_read(io, &r, 1), 0);
			check(r.buf, SEG, k * PER + i);
		}
	}
	/* Freeing hands the file system its space back: 32 slots are kept at the free, and
	 * punched when the write meets -ENOSPC, which then goes through. */
	for (unsigned i = 0; i < PER; i++)
		disktier_free(f->d, segs[0][i].slot, SEG);
	assert_int_equal(disktier_reclaim(f->d), PER * SEG);
	for (unsigned i = 0; i < PER; i++)
		fill(segs[ok][i].buf, SEG, 9000 + i);
	assert_int_equal(disktier_write(io, segs[ok], PER), 0);
	for (unsigned i = 0; i < PER; i++) {
		memset(segs[ok][i].buf, 0, SEG * PG);
		assert_int_equal(disktier_read(io, &segs[ok][i], 1), 0);
		check(segs[ok][i].buf, SEG, 9000 + i);
	}
	disktier_io_destroy(io);
	munmap(mem, PER * SEG * PG);
}

/* One segment per call: every 3rd write fails with ENOSPC, every 2nd read with EIO, and a
 * failed segment moves nothing. */
static void test_injection_single(void **state)
{
	struct fix *f = *state;
	char *buf = map(2 * PG);
	struct disktier_counters c;
	struct disktier_io *io;
	struct disktier_seg s;

	open_tier(f, 16 * PG);
	assert_int_equal(disktier_io_create(f->d, NULL, 0, 4, &io), 0);
	for (unsigned i = 0; i < 9; i++) { /* old data everywhere, no injection yet */
		s = (struct disktier_seg){i, buf, 1};
		fill(buf, 1, 1000 + i);
		assert_int_equal(disktier_write(io, &s, 1), 0);
	}
	assert_int_equal(disktier_set_injection(f->d, "write:3:ENOSPC,read:2:EIO"), 0);
	for (unsigned i = 0; i < 9; i++) {
		s = (struct disktier_seg){i, buf, 1};
		fill(buf, 1, 2000 + i);
		assert_int_equal(disktier_write(io, &s, 1), i % 3 == 2 ? -ENOSPC : 0);
	}
	c = counters(f->d);
	assert_int_equal(c.writes, 9 + 6);
	assert_int_equal(c.write_errors, 3);
	assert_int_equal(c.write_bytes, (9 + 6) * PG);
	for (unsigned i = 0; i < 9; i++) {
		s = (struct disktier_seg){i, buf, 1};
		memset(buf, 0xaa, PG);
		if (i % 2 == 1) {
			char aa[PG];

			assert_int_equal(disktier_read(io, &s, 1), -EIO);
			memset(aa, 0xaa, PG);
			assert_memory_equal(buf, aa, PG);
		} else {
			assert_int_equal(disktier_read(io, &s, 1), 0);
			check(buf, 1, (i % 3 == 2 ? 1000 : 2000) + i);
		}
	}
	c = counters(f->d);
	assert_int_equal(c.reads, 5);
	assert_int_equal(c.read_errors, 4);
	assert_int_equal(c.read_bytes, 5 * PG);
	/* Off again: the writes that failed held their old data all along. */
	assert_int_equal(disktier_set_injection(f->d, ""), 0);
	for (unsigned i = 0; i < 9; i++) {
		s = (struct disktier_seg){i, buf, 1};
		assert_int_equal(disktier_read(io, &s, 1), 0);
		check(buf, 1, (i % 3 == 2 ? 1000 : 2000) + i);
	}
	disktier_io_destroy(io);
	munmap(buf, 2 * PG);
}

/* Several segments per call: the injected one fails, those before it complete, those after
 * it are not started. */
static void test_injection_batch(void **state)
{
	struct fix *f = *state;
	char *buf = map(6 * PG);
	struct disktier_counters c0, c;
	struct disktier_seg s[6];
	struct disktier_io *io;

	open_tier(f, 16 * PG);
	assert_int_equal(disktier_io_create(f->d, buf, 6 * PG, 2, &io), 0);
	for (unsigned i = 0; i < 6; i++) {
		s[i] = (struct disktier_seg){i, buf + i * PG, 1};
		fill(s[i].buf, 1, 10 + i);
	}
	assert_int_equal(disktier_write(io, s, 6), 0);
	c0 = counters(f->d);
	assert_int_equal(disktier_set_injection(f->d, "write:2:EIO"), 0);
	for (unsigned i = 0; i < 6; i++)
		fill(s[i].buf, 1, 20 + i);
	assert_int_equal(disktier_write(io, s, 6), -EIO);
	c = counters(f->d);
	assert_int_equal(c.writes - c0.writes, 1);
	assert_int_equal(c.write_errors - c0.write_errors, 1);
	assert_int_equal(disktier_set_injection(f->d, "read:3:EIO"), 0);
	memset(buf, 0xaa, 6 * PG);
	assert_int_equal(disktier_read(io, s, 6), -EIO); /* 1, 2 in flight; 3 fails; 4-6 never */
	check(s[0].buf, 1, 20);
	check(s[1].buf, 1, 11);
	for (unsigned i = 2; i < 6; i++)
		for (unsigned b = 0; b < PG; b++)
			assert_int_equal(((unsigned char *)s[i].buf)[b], 0xaa);
	c = counters(f->d);
	assert_int_equal(c.reads - c0.reads, 2);
	assert_int_equal(c.read_errors - c0.read_errors, 1);
	disktier_io_destroy(io);
	munmap(buf, 6 * PG);
}

static void test_bad_specs(void **state)
{
	static const char *const bad[] = {"read",
					  "read:",
					  "read:1",
					  "read:1:",
					  "read::EIO",
					  "read:0:EIO",
					  "read:-1:EIO",
					  "read:+1:EIO",
					  "read: 1:EIO",
					  "read:x:EIO",
					  "read:1x:EIO",
					  "read:1:EPERM",
					  "read:1:eio",
					  "read:1:EIOX",
					  "READ:1:EIO",
					  "reads:1:EIO",
					  "erase:1:EIO",
					  " read:1:EIO",
					  "read:1:EIO ",
					  "read:1:EIO,",
					  ",",
					  ",read:1:EIO",
					  "read:1:EIO,,write:1:EIO",
					  "read:1:EIO:2",
					  "read:4294967296:EIO",
					  "read:99999999999999999999999:EIO",
					  "read:1:EIO,read:2:EIO",
					  "write:1:ENOSPC,write:1:ENOSPC"};
	struct fix *f = *state;
	char *buf = map(PG);
	struct disktier_io *io;
	struct disktier_seg s = {0, NULL, 1};

	s.buf = buf;
	open_tier(f, 4 * PG);
	assert_int_equal(disktier_set_injection(f->d, NULL), -EINVAL);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (disktier_set_injection(f->d, bad[i]) != -EINVAL)
			fail_msg("spec '%s' was accepted", bad[i]);
	}
	assert_int_equal(disktier_set_injection(f->d, ""), 0);
	assert_int_equal(disktier_set_injection(f->d, "read:4294967295:EIO"), 0);
	assert_int_equal(disktier_set_injection(f->d, "write:5:ENOSPC,read:3:EIO"), 0);
	/* A bad spec leaves the one in place: every write fails. */
	assert_int_equal(disktier_set_injection(f->d, "write:1:EIO"), 0);
	assert_int_equal(disktier_set_injection(f->d, "write:1:EIO,bogus"), -EINVAL);
	assert_int_equal(disktier_io_create(f->d, NULL, 0, 1, &io), 0);
	assert_int_equal(disktier_write(io, &s, 1), -EIO);
	assert_int_equal(disktier_write(io, &s, 1), -EIO);
	assert_int_equal(disktier_set_injection(f->d, ""), 0);
	assert_int_equal(disktier_write(io, &s, 1), 0);
	disktier_io_destroy(io);
	munmap(buf, PG);
}

static void test_bad_args(void **state)
{
	struct fix *f = *state;
	char *buf = map(4 * PG);
	struct disktier_counters c0, c1;
	struct disktier_io *io;
	struct disktier_seg bad[] = {
	    {0, buf, 0},	  /* empty */
	    {0, buf + 512, 1},	  /* unaligned buffer */
	    {8, buf, 1},	  /* past the end */
	    {7, buf, 2},	  /* runs past the end */
	    {UINT64_MAX, buf, 1}, /* far past the end */
	};
	struct disktier_seg two[2] = {{0, buf, 1}, {8, buf, 1}};

	open_tier(f, 8 * PG);
	assert_int_equal(disktier_io_create(f->d, NULL, 0, 0, &io), -EINVAL);
	assert_int_equal(disktier_io_create(f->d, buf + 512, PG, 4, &io), -EINVAL);
	assert_int_equal(disktier_io_create(f->d, buf, 100, 4, &io), -EINVAL);
	assert_int_equal(disktier_io_create(f->d, buf, 0, 4, &io), -EINVAL);
	assert_int_equal(disktier_io_create(f->d, NULL, 0, 4, &io), 0);
	c0 = counters(f->d);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(disktier_write(io, &bad[i], 1), -EINVAL);
		assert_int_equal(disktier_read(io, &bad[i], 1), -EINVAL);
	}
	/* Nothing at all moves when one segment of a call is bad. */
	fill(buf, 1, 3);
	assert_int_equal(disktier_write(io, two, 2), -EINVAL);
	c1 = counters(f->d);
	assert_memory_equal(&c0, &c1, sizeof(c0));
	assert_int_equal(disktier_write(io, two, 0), 0);
	assert_int_equal(disktier_read(io, two, 1), 0);
	for (unsigned b = 0; b < PG; b++)
		assert_int_equal(buf[b], 0); /* the write of two[0] never happened */
	disktier_io_destroy(io);
	munmap(buf, 4 * PG);
}

/* Drops CAP_IPC_LOCK and CAP_SYS_RESOURCE so that RLIMIT_MEMLOCK binds this process. */
static int drop_caps(void)
{
	struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
	struct __user_cap_data_struct d[2];
	const int caps[] = {CAP_IPC_LOCK, CAP_SYS_RESOURCE};

	if (syscall(SYS_capget, &h, d))
		return -1;
	for (int i = 0; i < 2; i++) {
		uint32_t bit = 1u << (caps[i] % 32);

		d[caps[i] / 32].effective &= ~bit;
		d[caps[i] / 32].permitted &= ~bit;
		d[caps[i] / 32].inheritable &= ~bit;
	}
	return (int)syscall(SYS_capset, &h, d);
}

/* In a child: memlock limits soft/hard, then a ring with a 1 MiB fixed region; exits 0 when
 * disktier_io_fixed() is want_fixed and a round trip through the region works. */
static int memlock_child(struct disktier *d, rlim_t soft, rlim_t hard, bool want_fixed)
{
	const size_t len = MiB;
	struct rlimit rl = {soft, hard};
	char *mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	struct disktier_io *io;
	struct disktier_seg s = {0, NULL, 16};
	uint64_t *w;

	if (mem == MAP_FAILED || setrlimit(RLIMIT_MEMLOCK, &rl) || drop_caps())
		return 2;
	if (disktier_io_create(d, mem, len, 4, &io))
		return 3;
	if (disktier_io_fixed(io) != want_fixed)
		return 4;
	s.buf = mem + len / 2;
	w = s.buf;
	for (unsigned i = 0; i < 16 * PG / 8; i++)
		w[i] = i * 31 + 7;
	if (disktier_write(io, &s, 1))
		return 5;
	memset(s.buf, 0, 16 * PG);
	if (disktier_read(io, &s, 1))
		return 6;
	for (unsigned i = 0; i < 16 * PG / 8; i++)
		if (w[i] != i * 31 + 7)
			return 7;
	disktier_io_destroy(io);
	return 0;
}

static void run_memlock_child(struct disktier *d, rlim_t soft, rlim_t hard, bool want_fixed)
{
	pid_t pid = fork();
	int status;

	assert_true(pid >= 0);
	if (!pid)
		_exit(memlock_child(d, soft, hard, want_fixed));
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	if (WEXITSTATUS(status))
		fail_msg("memlock child (soft %llu, hard %llu) failed at step %d",
			 (unsigned long long)soft, (unsigned long long)hard, WEXITSTATUS(status));
}

/* Recent kernels (seen on 6.18) charge the ring's own memory to the same limit, and a ring's
 * teardown (and its uncharging) is asynchronous: the child that is to fall back runs first, with a
 * limit that holds its ring but not its buffers. */
static void test_memlock(void **state)
{
	struct fix *f = *state;
	struct rlimit rl;

	open_tier(f, MiB);
	assert_int_equal(getrlimit(RLIMIT_MEMLOCK, &rl), 0);
	/* Both too low for the buffers and no capability to raise them: plain I/O. */
	run_memlock_child(f->d, 256 * 1024, 256 * 1024, false);
	/* Soft limit too low, hard limit enough: lifted to the hard limit, registered. The hard
	 * limit can only go up with CAP_SYS_RESOURCE, so take the one there is. */
	if (rl.rlim_max >= 4 * MiB)
		run_memlock_child(f->d, 64 * 1024, rl.rlim_max, true);
	else
		printf(
		    "note: RLIMIT_MEMLOCK hard limit %llu too low to test lifting the soft one\n",
		    (unsigned long long)rl.rlim_max);
}

struct worker {
	struct disktier *d;
	uint64_t seed;
	bool fixed;
	unsigned segs;
	int failed;
};

static void *worker_main(void *arg)
{
	enum { ROOM = 8 * 16, ROUNDS = 40 };
	struct worker *w = arg;
	char *mem =
	    mmap(NULL, 2 * ROOM * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	char *want = malloc(ROOM * PG);
	struct disktier_io *io = NULL;
	uint64_t rng = w->seed;

	if (mem == MAP_FAILED || !want ||
	    disktier_io_create(w->d, w->fixed ? mem : NULL, 2 * ROOM * PG, 4, &io)) {
		w->failed = 1;
		return NULL;
	}
	for (unsigned round = 0; round < ROUNDS && !w->failed; round++) {
		struct disktier_seg s[8], r[8];
		unsigned n = (unsigned)(next_rand(&rng) % 8) + 1, k = 0, pos = 0;

		for (unsigned i = 0; i < n; i++) {
			uint32_t got;
			int64_t slot =
			    disktier_alloc(w->d, (uint32_t)(next_rand(&rng) % 16) + 1, &got);

			if (slot < 0)
				break;
			s[k] = (struct disktier_seg){(uint64_t)slot, mem + pos * PG, got};
			r[k] = (struct disktier_seg){(uint64_t)slot, mem + (ROOM + pos) * PG, got};
			fill(s[k].buf, got, w->seed ^ (round * 8 + k));
			pos += got;
			k++;
		}
		memcpy(want, mem, pos * PG);
		if (disktier_write(io, s, k) || disktier_read(io, r, k) ||
		    memcmp(want, mem + ROOM * PG, pos * PG))
			w->failed = 2;
		for (unsigned i = 0; i < k; i++)
			disktier_free(w->d, s[i].slot, s[i].npages);
		w->segs += k;
	}
	disktier_io_destroy(io);
	munmap(mem, 2 * ROOM * PG);
	free(want);
	return NULL;
}

static void test_threads(void **state)
{
	enum { NT = 4 };
	struct fix *f = *state;
	struct worker w[NT];
	pthread_t t[NT];
	struct disktier_counters c;
	unsigned segs = 0;

	/* Smaller than 4 threads' worst case, so that allocation sometimes comes up short. */
	open_tier(f, 256 * PG);
	for (int i = 0; i < NT; i++) {
		w[i] = (struct worker){.d = f->d, .seed = 0x1234567ull * (i + 1), .fixed = i % 2};
		assert_int_equal(pthread_create(&t[i], NULL, worker_main, &w[i]), 0);
	}
	for (int i = 0; i < NT; i++) {
		assert_int_equal(pthread_join(t[i], NULL), 0);
		assert_int_equal(w[i].failed, 0);
		segs += w[i].segs;
	}
	c = counters(f->d);
	assert_int_equal(c.writes, segs);
	assert_int_equal(c.reads, segs);
	assert_int_equal(c.read_bytes, c.write_bytes);
	assert_int_equal(c.read_errors + c.write_errors, 0);
	assert_int_equal(disktier_used(f->d), 0);
}

/* ---- adoption ---- */

/* Adopts a dup of the open tier's descriptor, as a shim hands it back. */
static struct disktier *adopt_dup(struct fix *f, uint64_t nslots)
{
	struct disktier *a = NULL;
	char err[256] = "";
	int fd = dup(disktier_fd(f->d)), ret;

	assert_true(fd >= 0);
	ret = disktier_adopt(fd, f->path, nslots, &a, err, sizeof(err));
	if (ret)
		print_error("disktier_adopt: %s\n", err);
	assert_int_equal(ret, 0);
	assert_int_equal(disktier_fd(a), fd);
	return a;
}

static void test_adopt(void **state)
{
	enum { N = 64 };
	struct fix *f = *state;
	char *buf = map(N * PG);
	struct disktier_io *io;
	struct disktier_seg s;
	struct disktier *a;
	struct stat before, after;
	uint32_t got;

	/* The dead daemon's tier: 16 pages at 0 recorded in page entries, 16 at 16 written
	 * (a demotion in flight) but never recorded. */
	open_tier(f, N * PG);
	assert_int_equal(disktier_io_create(f->d, NULL, 0, 4, &io), 0);
	assert_int_equal(disktier_alloc(f->d, 32, &got), 0);
	assert_int_equal(got, 32);
	fill(buf, 32, 21);
	s = (struct disktier_seg){0, buf, 32};
	assert_int_equal(disktier_write(io, &s, 1), 0);
	disktier_io_destroy(io);
	assert_int_equal(fstat(disktier_fd(f->d), &before), 0);
	assert_true(before.st_blocks >= 32 * PG / 512);

	a = adopt_dup(f, N);
	assert_int_equal(disktier_slots(a), N);
	assert_int_equal(disktier_used(a), 0);
	assert_int_equal(disktier_direct(a), disktier_direct(f->d));
	assert_string_equal(disktier_path(a), f->path);
	for (uint64_t k = 0; k < 16; k++)
		assert_int_equal(disktier_claim(a, k), 0);
	assert_int_equal(disktier_claim(a, 3), -EEXIST);
	assert_int_equal(disktier_claim(a, N), -ERANGE);
	assert_int_equal(disktier_used(a), 16);

	disktier_settle(a);
	assert_int_equal(fstat(disktier_fd(f->d), &after), 0);
	assert_true(after.st_blocks <= before.st_blocks - 16 * PG / 512);
	assert_true(after.st_blocks >= 16 * PG / 512);
	assert_int_equal(lseek(disktier_fd(a), 0, SEEK_DATA), 0);
	assert_true(lseek(disktier_fd(a), 16 * PG, SEEK_DATA) < 0 && errno == ENXIO);

	/* Through the adopted tier: the claimed slots hold their data, the settled read zero. */
	assert_int_equal(disktier_io_create(a, NULL, 0, 4, &io), 0);
	memset(buf, 0xee, N * PG);
	s = (struct disktier_seg){0, buf, 32};
	assert_int_equal(disktier_read(io, &s, 1), 0);
	check(buf, 16, 21);
	for (size_t i = 16 * PG; i < 32 * PG; i++)
		if (buf[i])
			fail_msg("byte %zu of an unclaimed slot is %#x after settle", i,
				 (unsigned char)buf[i]);
	/* It hands out only the unclaimed slots. */
	assert_int_equal(disktier_alloc(a, N, &got), 16);
	assert_int_equal(got, N - 16);
	assert_int_equal(disktier_alloc(a, 1, &got), -ENOSPC);
	disktier_io_destroy(io);

	/* Its end leaves the first tier's descriptor, and so the file, alone. */
	disktier_close(a);
	assert_true(fcntl(disktier_fd(f->d), F_GETFD) >= 0);
	assert_int_equal(fstat(disktier_fd(f->d), &after), 0);
	munmap(buf, N * PG);
}

static void refused_adopt(int fd, const char *path, uint64_t nslots)
{
	struct disktier *a = NULL;
	char err[256] = "";

	assert_int_equal(disktier_adopt(fd, path, nslots, &a, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, path));
	assert_null(strchr(err, '\n'));
	assert_null(a);
	assert_true(fcntl(fd, F_GETFD) >= 0);
}

static void test_adopt_refusals(void **state)
{
	struct fix *f = *state;
	int pipefd[2], fd;

	open_tier(f, 64 * PG);
	refused_adopt(disktier_fd(f->d), f->path, 65); /* too small for the state's slots */
	refused_adopt(disktier_fd(f->d), f->path, 0);
	assert_int_equal(pipe(pipefd), 0);
	refused_adopt(pipefd[0], f->path, 1);
	close(pipefd[0]);
	close(pipefd[1]);
	fd = open(f->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	assert_true(fd >= 0);
	refused_adopt(fd, f->path, 1);
	close(fd);
	/* A refused adoption leaves the tier's file alone. */
	assert_true(fcntl(disktier_fd(f->d), F_GETFD) >= 0);
}


/* A gate for the tests: counts what it is asked, grants at most cap bytes in flight and says
 * -EAGAIN past it, and checks the ring's side of the contract: waiting only with nothing of
 * its own in flight, releasing exactly what it acquired. */
struct test_gate {
	uint64_t cap, inflight, acquires, waits, refusals, bytes[2];
	bool bad;
};

static int tg_acquire(void *arg, bool write, uint64_t bytes, bool wait)
{
	struct test_gate *g = arg;

	g->acquires++;
	if (wait) {
		g->waits++;
		if (g->inflight) /* would wait for ever on its own share */
			g->bad = true;
	} else if (g->inflight + bytes > g->cap) {
		g->refusals++;
		return -EAGAIN;
	}
	g->inflight += bytes;
	g->bytes[write] += bytes;
	return 0;
}

static void tg_release(void *arg, bool write, uint64_t bytes)
{
	struct test_gate *g = arg;

	if (bytes > g->inflight || bytes > g->bytes[write])
		g->bad = true;
	g->inflight -= bytes;
}

/* Segments adjacent on disk and in memory move as one I/O (the gate sees one acquire);
 * a gap on either side splits them; the data is exact either way. */
static void test_merged(void **state)
{
	struct fix *f = *state;
	char *mem = map(80 * PG);
	struct test_gate g = {.cap = UINT64_MAX};
	struct disktier_gate gate = {tg_acquire, tg_release, &g};
	struct disktier_seg w[8], r[8];
	struct disktier_counters c0, c1;
	struct disktier_io *io;
	uint32_t got;
	int64_t base;

	open_tier(f, 4 * MiB);
	assert_int_equal(disktier_io_create(f->d, mem, 80 * PG, 8, &io), 0);
	disktier_io_set_gate(io, &gate);
	base = disktier_alloc(f->d, 32, &got);
	assert_int_equal(got, 32);
	/* 8 segments of 4 pages, adjacent in the file and in memory: one write. */
	for (unsigned i = 0; i < 8; i++) {
		w[i] = (struct disktier_seg){(uint64_t)base + i * 4, mem + i * 4 * PG, 4};
		fill(w[i].buf, 4, 300 + i);
	}
	c0 = counters(f->d);
	assert_int_equal(disktier_write(io, w, 8), 0);
	assert_int_equal(g.acquires, 1);
	assert_int_equal(g.bytes[1], 32 * PG);
	/* Read back into 32..: 0-3 adjacent in memory, a page of gap before 4 and before 6:
	 * three reads. */
	memset(mem + 32 * PG, 0, 48 * PG);
	for (unsigned i = 0; i < 8; i++)
		r[i] = (struct disktier_seg){w[i].slot, mem + (32 + i * 4 + (i >= 4) + (i >= 6)) * PG,
					     4};
	g.acquires = 0;
	assert_int_equal(disktier_read(io, r, 8), 0);
	assert_int_equal(g.acquires, 3);
	for (unsigned i = 0; i < 8; i++)
		check(r[i].buf, 4, 300 + i);
	/* A gap in the file splits them too. */
	r[0] = (struct disktier_seg){w[0].slot, mem + 32 * PG, 4};
	r[1] = (struct disktier_seg){w[2].slot, mem + 36 * PG, 4};
	g.acquires = 0;
	assert_int_equal(disktier_read(io, r, 2), 0);
	assert_int_equal(g.acquires, 2);
	check(r[1].buf, 4, 302);
	c1 = counters(f->d);
	/* Counters still count segments. */
	assert_int_equal(c1.writes - c0.writes, 8);
	assert_int_equal(c1.reads - c0.reads, 10);
	assert_int_equal(g.inflight, 0);
	assert_false(g.bad);
	disktier_io_destroy(io);
	munmap(mem, 80 * PG);
}

/* A gate that holds the ring to 2 segments in flight: 37 segments of random sizes still move
 * byte-exact through a ring of depth 8, the ring waits at the gate only with nothing of its
 * own in flight, and every byte acquired is released. */
static void test_gate_backpressure(void **state)
{
	struct fix *f = *state;
	enum { ROOM = 37 * 16 };
	char *mem = map(2 * (size_t)ROOM * PG);
	struct test_gate g = {.cap = 2 * 16 * PG};
	struct disktier_gate gate = {tg_acquire, tg_release, &g};
	struct disktier_io *io;

	open_tier(f, 8 * MiB);
	assert_int_equal(disktier_io_create(f->d, NULL, 0, 8, &io), 0);
	disktier_io_set_gate(io, &gate);
	round_trip(f->d, io, mem, mem + (size_t)ROOM * PG, ROOM, 37, 16, 41);
	assert_true(g.refusals > 0);
	assert_true(g.waits > 0);
	assert_int_equal(g.inflight, 0);
	assert_int_equal(g.bytes[0], g.bytes[1]);
	assert_false(g.bad);
	disktier_io_destroy(io);
	munmap(mem, 2 * (size_t)ROOM * PG);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
	    T(test_open_errors),
	    T(test_open_never_follows),
	    T(test_open_sparse_truncated_unlinked),
	    T(test_alloc_extents),
	    T(test_direct_round_trips),
	    T(test_mixed_fixed_and_plain),
	    T(test_fixed_piece_boundary),
	    T(test_free_punches),
	    T(test_small_frees_keep_blocks),
	    T(test_merged),
	    T(test_gate_backpressure),
	    T(test_buffered_fallback),
	    T(test_tmpfs),
	    T(test_full_fs),
	    T(test_injection_single),
	    T(test_injection_batch),
	    T(test_bad_specs),
	    T(test_bad_args),
	    T(test_memlock),
	    T(test_threads),
	    T(test_adopt),
	    T(test_adopt_refusals),
	};
	struct disktier *d = NULL;
	char err[256], dir[] = "/var/tmp/test-disktier.XXXXXX", path[64];
	int failed, ret;

	/* io_uring itself is the feature: without it everything would fail for the same reason. */
	if (!mkdtemp(dir))
		return 1;
	snprintf(path, sizeof(path), "%s/swap", dir);
	ret = disktier_open(path, PG, &d, err, sizeof(err));
	if (!ret)
		disktier_close(d);
	rmdir(dir);
	if (ret == -EPERM || ret == -ENOSYS) {
		printf("SKIP: %s\n", err);
		return 77;
	}
	if (ret) {
		printf("disktier_open: %s\n", err);
		return 1;
	}
	failed = cmocka_run_group_tests(tests, NULL, NULL);
	if (!failed && skip_reason[0]) {
		printf("%s\n", skip_reason);
		return 77;
	}
	return failed;
}
