/* test_uffd: the userfaultfd wrappers (uffd-mgr/uffd.c), against the real kernel.
 *
 * Each test registers a MAP_SHARED mapping of a fresh memfd (shmem, as guest RAM is) with its
 * own userfaultfd. A "guest" thread touches the mapping and blocks in the kernel; the test
 * thread plays the fault thread: it reads the fault message with read() on the uffd, checks
 * it, and serves it with the wrapper under test. What it stresses:
 *  - uffd_open: the features uffd-mgr needs are granted, the fd is non-blocking, cloexec;
 *  - missing faults served by uffd_zeropage and uffd_copy (one page and a span of pages),
 *    the data visible both in the mapping and in the memfd, a write applied after the copy;
 *  - -EEXIST on a present page, and a copy over a span that runs into a present page giving
 *    a short copy (-EAGAIN) with its progress in *copied, the present page left alone;
 *  - write protection: a writer blocks on a WP fault until uffd_wp(clear, wake); with
 *    wake = false it stays blocked until uffd_wake;
 *  - uffd_wake after the page was filled another way (pwrite on the memfd);
 *  - REMOVE (madvise MADV_DONTNEED): the madvise waits for the event to be read, and while
 *    it is unread the ioctls fail with -EAGAIN; on a shared memfd the data stays;
 *  - unregister, and the ioctls' -EINVAL / -ENOENT argument errors.
 * Skips (77) with the reason when no userfaultfd with those features can be opened. Every
 * wait is bounded (2 s), so a lost wake-up fails instead of hanging. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "uffd-mgr/uffd.h"

#define PG     4096u
#define NPAGES 64

struct fx {
	int uffd, memfd;
	uint8_t *map;
	uint64_t features;
};

static uint64_t addr_of(struct fx *f, size_t page)
{
	return (uint64_t)(uintptr_t)(f->map + page * PG);
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	char err[256];

	if (!f)
		return -1;
	if (uffd_open(&f->uffd, &f->features, err, sizeof(err))) {
		print_error("uffd_open: %s\n", err);
		free(f);
		return -1;
	}
	f->memfd = memfd_create("memory-backend-memfd", MFD_CLOEXEC);
	if (f->memfd < 0 || ftruncate(f->memfd, NPAGES * PG) < 0)
		return -1;
	f->map = mmap(NULL, NPAGES * PG, PROT_READ | PROT_WRITE, MAP_SHARED, f->memfd, 0);
	if (f->map == MAP_FAILED)
		return -1;
	if (uffd_register(f->uffd, addr_of(f, 0), NPAGES * PG))
		return -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	/* Closing the uffd first releases any thread still blocked on a fault. */
	close(f->uffd);
	munmap(f->map, NPAGES * PG);
	close(f->memfd);
	free(f);
	return 0;
}

/* Waits up to 2 s for one message and reads it. */
static void read_msg(struct fx *f, struct uffd_msg *m)
{
	struct pollfd p = {.fd = f->uffd, .events = POLLIN};

	assert_int_equal(poll(&p, 1, 2000), 1);
	assert_int_equal(read(f->uffd, m, sizeof(*m)), (ssize_t)sizeof(*m));
}

static void expect_fault(struct fx *f, size_t page, uint64_t want_flags)
{
	struct uffd_msg m;

	read_msg(f, &m);
	assert_int_equal(m.event, UFFD_EVENT_PAGEFAULT);
	assert_true((m.arg.pagefault.address & ~(uint64_t)(PG - 1)) == addr_of(f, page));
	assert_true((m.arg.pagefault.flags &
		     (UFFD_PAGEFAULT_FLAG_WP | UFFD_PAGEFAULT_FLAG_WRITE)) == want_flags);
}

static void sleep_ms(long ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};

	nanosleep(&ts, NULL);
}

/* ---- a guest thread: one access, then done ---- */

enum { ACC_READ, ACC_WRITE, ACC_MADVISE };

struct access {
	pthread_t tid;
	struct fx *f;
	size_t page, npages;
	int kind;
	uint8_t value; /* written, or what was read */
	int ret;
	atomic_int done;
};

static void *access_main(void *arg)
{
	struct access *a = arg;
	volatile uint8_t *p = a->f->map + a->page * PG + 100;

	switch (a->kind) {
	case ACC_READ:
		a->value = *p;
		break;
	case ACC_WRITE:
		*p = a->value;
		break;
	default:
		a->ret = madvise(a->f->map + a->page * PG, a->npages * PG, MADV_DONTNEED);
		break;
	}
	atomic_store(&a->done, 1);
	return NULL;
}

static void start(struct access *a, struct fx *f, int kind, size_t page, uint8_t value)
{
	memset(a, 0, sizeof(*a));
	a->f = f;
	a->kind = kind;
	a->page = page;
	a->npages = 1;
	a->value = value;
	assert_int_equal(pthread_create(&a->tid, NULL, access_main, a), 0);
}

/* Joins, giving the thread up to 2 s to finish. */
static void finish(struct access *a)
{
	for (int i = 0; i < 2000 && !atomic_load(&a->done); i++)
		sleep_ms(1);
	assert_true(atomic_load(&a->done));
	pthread_join(a->tid, NULL);
}

static void fill(uint8_t *buf, size_t len, uint32_t seed)
{
	for (size_t i = 0; i < len; i++)
		buf[i] = (uint8_t)((i * 31 + seed * 17) ^ (i >> 12));
}

/* ---- tests ---- */

static void test_open(void **state)
{
	struct fx *f = *state;
	struct uffd_msg m;

	assert_true((f->features & UFFD_NEEDED_FEATURES) == UFFD_NEEDED_FEATURES);
	assert_true(fcntl(f->uffd, F_GETFL) & O_NONBLOCK);
	assert_true(fcntl(f->uffd, F_GETFD) & FD_CLOEXEC);
	assert_int_equal(read(f->uffd, &m, sizeof(m)), -1);
	assert_int_equal(errno, EAGAIN);
	/* A second uffd cannot register a range that already has one. */
	int other;
	char err[256];
	assert_int_equal(uffd_open(&other, NULL, err, sizeof(err)), 0);
	assert_int_equal(uffd_register(other, addr_of(f, 0), PG), -EBUSY);
	close(other);
}

static void test_missing_zeropage(void **state)
{
	struct fx *f = *state;
	struct access a;
	uint8_t page[PG];

	assert_int_equal(uffd_zeropage(f->uffd, addr_of(f, 1), PG), 0); /* nobody waiting: ok */
	start(&a, f, ACC_READ, 2, 0xee);
	expect_fault(f, 2, 0);
	sleep_ms(20);
	assert_false(atomic_load(&a.done)); /* blocked until served */
	assert_int_equal(uffd_zeropage(f->uffd, addr_of(f, 2), PG), 0);
	finish(&a);
	assert_int_equal(a.value, 0);
	/* The zero page is a real page of the memfd now. */
	assert_int_equal(pread(f->memfd, page, PG, 2 * PG), PG);
	for (unsigned i = 0; i < PG; i++)
		assert_int_equal(page[i], 0);
	assert_int_equal(lseek(f->memfd, 2 * PG, SEEK_DATA), 2 * PG);
}

static void test_missing_copy(void **state)
{
	struct fx *f = *state;
	static uint8_t src[4 * PG], back[4 * PG];
	struct access a;
	uint64_t copied = 1;

	/* One page, for a write fault: the write lands on top of the copied bytes. */
	fill(src, PG, 1);
	start(&a, f, ACC_WRITE, 3, 0x5a);
	expect_fault(f, 3, UFFD_PAGEFAULT_FLAG_WRITE);
	assert_int_equal(uffd_copy(f->uffd, addr_of(f, 3), src, PG, &copied), 0);
	assert_int_equal(copied, PG);
	finish(&a);
	src[100] = 0x5a;
	assert_memory_equal(f->map + 3 * PG, src, PG);

	/* A span of four pages, one copy, for a read fault on its second page. */
	fill(src, sizeof(src), 2);
	start(&a, f, ACC_READ, 9, 0);
	expect_fault(f, 9, 0);
	assert_int_equal(uffd_copy(f->uffd, addr_of(f, 8), src, 4 * PG, &copied), 0);
	assert_int_equal(copied, 4 * PG);
	finish(&a);
	assert_int_equal(a.value, src[PG + 100]);
	assert_memory_equal(f->map + 8 * PG, src, sizeof(src));
	assert_int_equal(pread(f->memfd, back, sizeof(back), 8 * PG), (ssize_t)sizeof(back));
	assert_memory_equal(back, src, sizeof(src));
}

static void test_eexist_and_partial(void **state)
{
	struct fx *f = *state;
	static uint8_t src[4 * PG], mine[PG];
	uint64_t copied = 12345;

	/* Page 12 holds data already (written through the memfd, so no fault involved). */
	memset(mine, 0xc3, sizeof(mine));
	assert_int_equal(pwrite(f->memfd, mine, PG, 12 * PG), PG);
	assert_int_equal(uffd_zeropage(f->uffd, addr_of(f, 12), PG), -EEXIST);
	assert_int_equal(uffd_copy(f->uffd, addr_of(f, 12), src, PG, &copied), -EEXIST);
	assert_int_equal(copied, 0);

	/* A copy over 10-13 stops at 12: two pages of progress, reported as a short copy
	 * (-EAGAIN); going on from 12 then says -EEXIST with no progress. */
	fill(src, sizeof(src), 3);
	copied = 12345;
	assert_int_equal(uffd_copy(f->uffd, addr_of(f, 10), src, 4 * PG, &copied), -EAGAIN);
	assert_int_equal(copied, 2 * PG);
	copied = 12345;
	assert_int_equal(uffd_copy(f->uffd, addr_of(f, 12), src + 2 * PG, 2 * PG, &copied),
			 -EEXIST);
	assert_int_equal(copied, 0);
	assert_memory_equal(f->map + 10 * PG, src, 2 * PG);
	assert_memory_equal(f->map + 12 * PG, mine, PG); /* left alone */
	/* Page 13 was not reached: still missing. */
	assert_int_equal(lseek(f->memfd, 13 * PG, SEEK_DATA), -1);
	assert_int_equal(uffd_copy(f->uffd, addr_of(f, 13), src + 3 * PG, PG, &copied), 0);
	assert_memory_equal(f->map + 13 * PG, src + 3 * PG, PG);
}

static void present(struct fx *f, size_t page, uint8_t v)
{
	uint8_t buf[PG];

	memset(buf, v, sizeof(buf));
	assert_int_equal(pwrite(f->memfd, buf, PG, (off_t)(page * PG)), PG);
	assert_int_equal(f->map[page * PG], v); /* mapped now, no uffd fault */
}

static void test_wp_blocks_writer(void **state)
{
	struct fx *f = *state;
	struct access a;

	present(f, 20, 0x11);
	assert_int_equal(uffd_wp(f->uffd, addr_of(f, 20), PG, true, false), 0);
	assert_int_equal(f->map[20 * PG], 0x11); /* reads go on */
	start(&a, f, ACC_WRITE, 20, 0x22);
	expect_fault(f, 20, UFFD_PAGEFAULT_FLAG_WP | UFFD_PAGEFAULT_FLAG_WRITE);
	sleep_ms(50);
	assert_false(atomic_load(&a.done));
	assert_int_equal(f->map[20 * PG + 100], 0x11);
	assert_int_equal(uffd_wp(f->uffd, addr_of(f, 20), PG, false, true), 0);
	finish(&a);
	assert_int_equal(f->map[20 * PG + 100], 0x22);

	/* Protection on a page that is only in the memfd (not mapped) still catches a write. */
	uint8_t buf[PG];
	memset(buf, 0x33, sizeof(buf));
	assert_int_equal(pwrite(f->memfd, buf, PG, 21 * PG), PG);
	assert_int_equal(uffd_wp(f->uffd, addr_of(f, 21), PG, true, false), 0);
	start(&a, f, ACC_WRITE, 21, 0x44);
	expect_fault(f, 21, UFFD_PAGEFAULT_FLAG_WP | UFFD_PAGEFAULT_FLAG_WRITE);
	assert_int_equal(uffd_wp(f->uffd, addr_of(f, 21), PG, false, true), 0);
	finish(&a);
	assert_int_equal(f->map[21 * PG + 100], 0x44);
	assert_int_equal(f->map[21 * PG], 0x33);
}

static void test_wp_clear_without_wake(void **state)
{
	struct fx *f = *state;
	struct access a;

	present(f, 24, 0x10);
	assert_int_equal(uffd_wp(f->uffd, addr_of(f, 24), PG, true, false), 0);
	start(&a, f, ACC_WRITE, 24, 0x20);
	expect_fault(f, 24, UFFD_PAGEFAULT_FLAG_WP | UFFD_PAGEFAULT_FLAG_WRITE);
	assert_int_equal(uffd_wp(f->uffd, addr_of(f, 24), PG, false, false), 0);
	sleep_ms(50);
	assert_false(atomic_load(&a.done)); /* cleared, but not woken */
	assert_int_equal(uffd_wake(f->uffd, addr_of(f, 24), PG), 0);
	finish(&a);
	assert_int_equal(f->map[24 * PG + 100], 0x20);
}

static void test_wake_after_external_fill(void **state)
{
	struct fx *f = *state;
	struct access a;
	uint8_t buf[PG];

	start(&a, f, ACC_READ, 30, 0);
	expect_fault(f, 30, 0);
	memset(buf, 0x77, sizeof(buf));
	assert_int_equal(pwrite(f->memfd, buf, PG, 30 * PG), PG);
	sleep_ms(50);
	assert_false(atomic_load(&a.done)); /* the page is there, but nobody woke the thread */
	assert_int_equal(uffd_wake(f->uffd, addr_of(f, 30), PG), 0);
	finish(&a);
	assert_int_equal(a.value, 0x77);
}

static void test_remove_event(void **state)
{
	struct fx *f = *state;
	struct access a;
	struct uffd_msg m;
	struct pollfd p = {.fd = f->uffd, .events = POLLIN};
	uint64_t copied;
	static uint8_t src[PG];

	for (size_t pg = 40; pg < 44; pg++)
		present(f, pg, (uint8_t)pg);
	memset(&a, 0, sizeof(a));
	a.f = f;
	a.kind = ACC_MADVISE;
	a.page = 40;
	a.npages = 4;
	assert_int_equal(pthread_create(&a.tid, NULL, access_main, &a), 0);
	assert_int_equal(poll(&p, 1, 2000), 1);
	sleep_ms(20);
	assert_false(atomic_load(&a.done)); /* madvise waits for the event to be read */

	/* While the event is unread, every ioctl that changes the mapping says EAGAIN. */
	assert_int_equal(uffd_zeropage(f->uffd, addr_of(f, 50), PG), -EAGAIN);
	assert_int_equal(uffd_copy(f->uffd, addr_of(f, 51), src, PG, &copied), -EAGAIN);
	assert_int_equal(copied, 0);
	assert_int_equal(uffd_wp(f->uffd, addr_of(f, 40), PG, true, false), -EAGAIN);

	assert_int_equal(read(f->uffd, &m, sizeof(m)), (ssize_t)sizeof(m));
	assert_int_equal(m.event, UFFD_EVENT_REMOVE);
	assert_true(m.arg.remove.start == addr_of(f, 40));
	assert_true(m.arg.remove.end == addr_of(f, 44));
	finish(&a);
	assert_int_equal(a.ret, 0);

	/* Now they work again. */
	assert_int_equal(uffd_zeropage(f->uffd, addr_of(f, 50), PG), 0);
	/* A shared memfd keeps its data across MADV_DONTNEED: reads map it back, no fault. */
	for (size_t pg = 40; pg < 44; pg++)
		assert_int_equal(f->map[pg * PG + 5], (uint8_t)pg);
	assert_int_equal(read(f->uffd, &m, sizeof(m)), -1);
	assert_int_equal(errno, EAGAIN);
}

static void test_unregister_and_errors(void **state)
{
	struct fx *f = *state;
	uint64_t copied = 99;
	static uint8_t src[PG];

	assert_int_equal(uffd_zeropage(f->uffd, addr_of(f, 1) + 1, PG), -EINVAL);
	assert_int_equal(uffd_zeropage(f->uffd, addr_of(f, 1), PG - 1), -EINVAL);
	assert_int_equal(uffd_copy(f->uffd, addr_of(f, 1), src, 100, &copied), -EINVAL);
	assert_int_equal(copied, 0);
	assert_int_equal(uffd_register(f->uffd, addr_of(f, 0) + 1, PG), -EINVAL);
	assert_int_equal(uffd_wp(f->uffd, addr_of(f, 0), 100, true, false), -EINVAL);

	/* The last 8 pages leave the registration: faults there are the kernel's own. */
	assert_int_equal(uffd_unregister(f->uffd, addr_of(f, 56), 8 * PG), 0);
	assert_int_equal(f->map[60 * PG], 0);
	f->map[61 * PG] = 9;
	assert_int_equal(f->map[61 * PG], 9);
	assert_int_equal(uffd_zeropage(f->uffd, addr_of(f, 62), PG), -ENOENT);
	assert_int_equal(read(f->uffd, src, sizeof(struct uffd_msg)), -1);
	assert_int_equal(errno, EAGAIN);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_open, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_missing_zeropage, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_missing_copy, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_eexist_and_partial, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_wp_blocks_writer, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_wp_clear_without_wake, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_wake_after_external_fill, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_remove_event, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_unregister_and_errors, setup, teardown),
	};
	char err[256];
	int fd;

	if (uffd_open(&fd, NULL, err, sizeof(err))) {
		printf("SKIP: %s\n", err);
		return 77;
	}
	close(fd);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
