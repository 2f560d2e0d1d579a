/* test_gpamap: guest-physical ranges of the managed backend, from QEMU's "info mtree -f" and
 * query-memdev (uffd-mgr/gpamap.c), and the GPA -> region offset mapping the BPF program on
 * kvm:kvm_page_fault applies.
 *
 * This host has no KVM: no test here or elsewhere sees a real kvm_page_fault, so these cases
 * are the proof of the mapping. The texts are in the format QEMU 7.2 (Debian 12) prints
 * (softmmu/memory.c, mtree_print_flatview): start-end inclusive, "(prio P, type)", the leaf
 * region's name (a memory backend's is its id), "@offset" into it, then the accelerator.
 *
 * What it stresses:
 *  - pc with 4 GiB: 3 GiB below 4 GiB around the legacy window (joined into one range),
 *    1 GiB above 4 GiB at offset 3 GiB; every GPA of RAM maps, the PCI hole and the window's
 *    own devices do not cut the join, GPAs past RAM map nowhere;
 *  - q35 with 8 GiB: 2 GiB below, 6 GiB above 4 GiB at offset 2 GiB;
 *  - a small guest (all below 4 GiB) is one range;
 *  - two NUMA backends: each one's ranges, by its own id;
 *  - only the flat view of address space "memory" counts (SMM and I/O views come first);
 *  - a backend not mapped, a malformed line, too many ranges: errors with one line;
 *  - query-memdev: the backend of the region's size, none, two of that size. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <json-c/json.h>
#include <stdio.h>
#include <string.h>

#include "uffd-mgr/gpamap.h"

#define GiB (1ull << 30)
#define MiB (1ull << 20)

static const char io_and_smm[] =
    "FlatView #0\n"
    " AS \"I/O\", root: io\n"
    " Root memory region: io\n"
    "  0000000000000000-0000000000000007 (prio 0, i/o): dma-chan\n"
    "  0000000000000cf8-0000000000000cfb (prio 0, i/o): pci-conf-idx\n"
    "\n"
    "FlatView #1\n"
    " AS \"cpu-smm-0\", root: mem-container-smram\n"
    " Root memory region: mem-container-smram\n"
    "  0000000000000000-000000000009ffff (prio 0, ram): uffd-ram KVM\n"
    "  00000000000a0000-00000000000bffff (prio 1, ram): smram @0000000000000000 KVM\n"
    "\n";

static const char pc_4g[] =
    "FlatView #2\n"
    " AS \"memory\", root: system\n"
    " AS \"cpu-memory-0\", root: system\n"
    " Root memory region: system\n"
    "  0000000000000000-000000000009ffff (prio 0, ram): uffd-ram KVM\n"
    "  00000000000a0000-00000000000bffff (prio 1, i/o): vga-lowmem\n"
    "  00000000000c0000-00000000000dffff (prio 1, rom): pc.rom KVM\n"
    "  00000000000e0000-00000000000fffff (prio 1, rom): isa-bios KVM\n"
    "  0000000000100000-00000000bfffffff (prio 0, ram): uffd-ram @0000000000100000 KVM\n"
    "  00000000fd000000-00000000fdffffff (prio 1, ram): vga.vram KVM\n"
    "  00000000fec00000-00000000fec00fff (prio 0, i/o): kvm-ioapic\n"
    "  00000000fffc0000-00000000ffffffff (prio 0, rom): pc.bios KVM\n"
    "  0000000100000000-000000013fffffff (prio 0, ram): uffd-ram @00000000c0000000 KVM\n"
    "\n"
    "FlatView #3\n"
    " AS \"piix3-ide\", root: bus master container\n"
    " Root memory region: (none)\n"
    " No rendered FlatView\n";

static const char q35_8g[] =
    "FlatView #0\n"
    " AS \"memory\", root: system\n"
    " Root memory region: system\n"
    "  0000000000000000-000000000009ffff (prio 0, ram): vm-mem KVM\n"
    "  00000000000a0000-00000000000bffff (prio 1, i/o): vga-lowmem\n"
    "  00000000000c0000-00000000000dffff (prio 1, rom): pc.rom KVM\n"
    "  00000000000e0000-00000000000fffff (prio 1, rom): isa-bios KVM\n"
    "  0000000000100000-000000007fffffff (prio 0, ram): vm-mem @0000000000100000 KVM\n"
    "  00000000b0000000-00000000bfffffff (prio 0, i/o): pcie-mmcfg-mmio\n"
    "  0000000100000000-000000027fffffff (prio 0, ram): vm-mem @0000000080000000 KVM\n";

static const char small[] =
    "FlatView #0\n"
    " AS \"memory\", root: system\n"
    " Root memory region: system\n"
    "  0000000000000000-000000000009ffff (prio 0, ram): uffd-ram\n"
    "  00000000000a0000-00000000000bffff (prio 1, i/o): vga-lowmem\n"
    "  00000000000c0000-00000000000fffff (prio 0, rom): uffd-ram @00000000000c0000\n"
    "  0000000000100000-000000001fffffff (prio 0, ram): uffd-ram @0000000000100000\n";

static const char numa[] =
    "FlatView #0\n"
    " AS \"memory\", root: system\n"
    " Root memory region: system\n"
    "  0000000000000000-000000000009ffff (prio 0, ram): node0 KVM\n"
    "  0000000000100000-000000007fffffff (prio 0, ram): node0 @0000000000100000 KVM\n"
    "  0000000080000000-00000000bfffffff (prio 0, ram): node1 KVM\n"
    "  0000000100000000-000000013fffffff (prio 0, ram): node1 @0000000040000000 KVM\n";

static void parse(const char *text, const char *name, uint64_t len, struct gpamap_range *r,
		  unsigned *n)
{
	char err[256] = "";
	int rc = gpamap_parse_mtree(text, name, len, r, 4, n, err, sizeof(err));

	if (rc)
		fail_msg("%s: %s", name, err);
}

static void expect_map(const struct gpamap_range *r, unsigned n, uint64_t gpa, int64_t want)
{
	uint64_t off = 0;
	int rc = gpamap_to_offset(r, n, gpa, &off);

	if (want < 0) {
		assert_int_equal(rc, -ENOENT);
		return;
	}
	assert_int_equal(rc, 0);
	assert_true(off == (uint64_t)want);
}

static void test_pc(void **state)
{
	char text[4096];
	struct gpamap_range r[4];
	unsigned n;

	snprintf(text, sizeof(text), "%s%s", io_and_smm, pc_4g);
	parse(text, "uffd-ram", 4 * GiB, r, &n);
	assert_int_equal(n, 2);
	assert_true(r[0].gpa == 0 && r[0].len == 3 * GiB && r[0].offset == 0);
	assert_true(r[1].gpa == 4 * GiB && r[1].len == GiB && r[1].offset == 3 * GiB);
	expect_map(r, n, 0x1000, 0x1000);
	expect_map(r, n, 2 * GiB + 5, 2 * GiB + 5); /* past the old 2 GiB limit */
	expect_map(r, n, 3 * GiB - 1, 3 * GiB - 1);
	expect_map(r, n, 3 * GiB, -1);		      /* the PCI hole */
	expect_map(r, n, 4 * GiB, 3 * GiB);	      /* above 4 GiB */
	expect_map(r, n, 5 * GiB - 4096, 4 * GiB - 4096);
	expect_map(r, n, 5 * GiB, -1); /* past RAM */
}

static void test_q35(void **state)
{
	struct gpamap_range r[4];
	unsigned n;

	parse(q35_8g, "vm-mem", 8 * GiB, r, &n);
	assert_int_equal(n, 2);
	assert_true(r[0].gpa == 0 && r[0].len == 2 * GiB && r[0].offset == 0);
	assert_true(r[1].gpa == 4 * GiB && r[1].len == 6 * GiB && r[1].offset == 2 * GiB);
	expect_map(r, n, 0xb0000000, -1); /* MMCONFIG */
	expect_map(r, n, 10 * GiB - 1, 8 * GiB - 1);
	expect_map(r, n, 10 * GiB, -1);
}

static void test_small_and_numa(void **state)
{
	struct gpamap_range r[4];
	unsigned n;

	parse(small, "uffd-ram", 512 * MiB, r, &n);
	assert_int_equal(n, 1);
	assert_true(r[0].gpa == 0 && r[0].len == 512 * MiB && r[0].offset == 0);

	parse(numa, "node0", 2 * GiB, r, &n);
	assert_int_equal(n, 1);
	assert_true(r[0].gpa == 0 && r[0].len == 2 * GiB);
	parse(numa, "node1", 2 * GiB, r, &n);
	assert_int_equal(n, 2);
	assert_true(r[0].gpa == 2 * GiB && r[0].len == GiB && r[0].offset == 0);
	assert_true(r[1].gpa == 4 * GiB && r[1].len == GiB && r[1].offset == GiB);
	expect_map(r, n, 2 * GiB + 7, 7);
	expect_map(r, n, 4 * GiB + 7, GiB + 7);
	expect_map(r, n, 0x1000, -1); /* node0's */
}

static void test_errors(void **state)
{
	struct gpamap_range r[4];
	char err[256];
	unsigned n;

	/* The SMM view maps uffd-ram, but it is not the address space "memory". */
	assert_int_equal(gpamap_parse_mtree(io_and_smm, "uffd-ram", GiB, r, 4, &n, err,
					    sizeof(err)),
			 -ENOENT);
	printf("  %s\n", err);
	assert_int_equal(gpamap_parse_mtree(pc_4g, "other", 4 * GiB, r, 4, &n, err, sizeof(err)),
			 -ENOENT);
	printf("  %s\n", err);
	assert_non_null(strstr(err, "other"));
	assert_int_equal(gpamap_parse_mtree(pc_4g, "uffd-ram", 4 * GiB, r, 1, &n, err,
					    sizeof(err)),
			 -E2BIG);
	printf("  %s\n", err);
	assert_int_equal(gpamap_parse_mtree("FlatView #0\n AS \"memory\", root: system\n"
					    "  00000000000a0000-00000000000bffff (prio 1, i/o):\n",
					    "uffd-ram", GiB, r, 4, &n, err, sizeof(err)),
			 -EINVAL);
	printf("  %s\n", err);
	assert_int_equal(gpamap_parse_mtree(NULL, "x", 1, r, 4, &n, err, sizeof(err)), -EINVAL);
}

static void test_pick_backend(void **state)
{
	struct json_object *m;
	char id[64], err[256];

	m = json_tokener_parse("[{\"id\": \"pc.ram-x\", \"size\": 1048576, \"share\": false},"
			       " {\"id\": \"uffd-ram\", \"size\": 4294967296, \"share\": true}]");
	assert_int_equal(gpamap_pick_backend(m, 4 * GiB, id, sizeof(id), err, sizeof(err)), 0);
	assert_string_equal(id, "uffd-ram");
	assert_int_equal(gpamap_pick_backend(m, 2 * GiB, id, sizeof(id), err, sizeof(err)),
			 -ENOENT);
	printf("  %s\n", err);
	json_object_put(m);
	m = json_tokener_parse("[{\"id\": \"a\", \"size\": 1024}, {\"id\": \"b\", \"size\": 1024}]");
	assert_int_equal(gpamap_pick_backend(m, 1024, id, sizeof(id), err, sizeof(err)),
			 -EEXIST);
	printf("  %s\n", err);
	json_object_put(m);
	m = json_tokener_parse("{\"id\": \"a\"}");
	assert_int_equal(gpamap_pick_backend(m, 1024, id, sizeof(id), err, sizeof(err)),
			 -EINVAL);
	json_object_put(m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_pc),
	    cmocka_unit_test(test_q35),
	    cmocka_unit_test(test_small_and_numa),
	    cmocka_unit_test(test_errors),
	    cmocka_unit_test(test_pick_backend),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
