/* test_qemuargs: the QEMU command-line checker and rewriter (qemu-glue/qemuargs.c).
 *
 * Table-driven, every row its own cmocka test named after the row:
 *  - accepted command lines, each with the exact argv it must become, the guest RAM size,
 *    the VM name, the QMP socket in use and which of RAM backend, -qmp and balloon it added;
 *  - refused command lines, each with the exact one-line error it must give: among them
 *    every spelling of an O_DIRECT disk (-drive cache=, cache.direct=, aio=native, a child
 *    node's file.cache.direct=, json: file names, -blockdev keyval and JSON, -set drive.)
 *    and the devices that write guest RAM behind the page tables;
 *  - sizes in QEMU's syntax, with their values or the error.
 * Then the build step alone: a comma in the QMP path, no QMP path, a path too long for a
 * unix socket, building twice, and freeing a zeroed or NULL struct. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qemu-glue/qemuargs.h"

#define K (UINT64_C(1) << 10)
#define M (UINT64_C(1) << 20)
#define G (UINT64_C(1) << 30)

#define QPATH "/run/uffd-mgr/vm1.qmp"

/* What uffd-qemu appends. */
#define RAM(sz)                                                                                    \
	"-object", "memory-backend-memfd,id=uffd-ram,size=" sz ",share=on", "-machine",            \
	    "memory-backend=uffd-ram"
#define QMP	"-qmp", "unix:" QPATH ",server=on,wait=off"
#define BALLOON "-device", "virtio-balloon-pci,id=uffd-balloon,deflate-on-oom=on,free-page-reporting=on"

/* Flags of what was added. */
#define ADD_RAM	    1
#define ADD_QMP	    2
#define ADD_BALLOON 4
#define ADD_ALL	    (ADD_RAM | ADD_QMP | ADD_BALLOON)

struct good_case {
	const char *name;
	const char *in[16]; /* NULL-terminated */
	const char *out[24];
	uint64_t ram;
	const char *vm;	 /* -name, or NULL */
	const char *qmp; /* QMP socket in use */
	int added;	 /* ADD_* */
};

static const struct good_case good_cases[] = {
    {"empty", {NULL}, {RAM("128M"), QMP, BALLOON}, 128 * M, NULL, QPATH, ADD_ALL},
    /* libvirt's default guest RAM: rewritten in place into a shared memfd backend. */
    {"backend_ram_keyval",
     {"-object", "memory-backend-ram,id=pc.ram,size=256M", "-machine", "memory-backend=pc.ram"},
     {"-object", "memory-backend-memfd,id=pc.ram,size=256M,share=on", "-machine",
      "memory-backend=pc.ram", QMP, BALLOON},
     256 * M, NULL, QPATH, ADD_QMP | ADD_BALLOON},
    {"backend_ram_json_libvirt",
     {"-machine", "pc-i440fx-7.2,usb=off,memory-backend=pc.ram", "-m", "256", "-object",
      "{\"qom-type\":\"memory-backend-ram\",\"id\":\"pc.ram\",\"size\":268435456}", "-device",
      "{\"driver\":\"virtio-balloon-pci\",\"id\":\"balloon0\",\"bus\":\"pci.0\"}"},
     {"-machine", "pc-i440fx-7.2,usb=off,memory-backend=pc.ram", "-m", "256", "-object",
      "{\"qom-type\":\"memory-backend-memfd\",\"id\":\"pc.ram\",\"size\":268435456,\"share\":true}",
      "-device", "{\"driver\":\"virtio-balloon-pci\",\"id\":\"balloon0\",\"bus\":\"pci.0\"}",
      QMP},
     256 * M, NULL, QPATH, ADD_QMP},
    {"m_megabytes",
     {"-m", "512"},
     {"-m", "512", RAM("512M"), QMP, BALLOON},
     512 * M,
     NULL,
     QPATH,
     ADD_ALL},
    {"m_size_key",
     {"-m", "size=2G"},
     {"-m", "size=2G", RAM("2G"), QMP, BALLOON},
     2 * G,
     NULL,
     QPATH,
     ADD_ALL},
    {"m_fraction",
     {"-m", "1.5G"},
     {"-m", "1.5G", RAM("1536M"), QMP, BALLOON},
     1536 * M,
     NULL,
     QPATH,
     ADD_ALL},
    {"m_zero_is_default",
     {"-m", "0"},
     {"-m", "0", RAM("128M"), QMP, BALLOON},
     128 * M,
     NULL,
     QPATH,
     ADD_ALL},
    {"m_rounded_to_8k",
     {"-m", "1001K"},
     {"-m", "1001K", RAM("1008K"), QMP, BALLOON},
     1008 * K,
     NULL,
     QPATH,
     ADD_ALL},
    {"m_bytes_rounded",
     {"-m", "512b"},
     {"-m", "512b", RAM("8K"), QMP, BALLOON},
     8 * K,
     NULL,
     QPATH,
     ADD_ALL},
    {"m_hex_megabytes",
     {"-m", "0x10"},
     {"-m", "0x10", RAM("16M"), QMP, BALLOON},
     16 * M,
     NULL,
     QPATH,
     ADD_ALL},
    {"m_last_wins",
     {"-m", "256", "-m", "512"},
     {"-m", "256", "-m", "512", RAM("512M"), QMP, BALLOON},
     512 * M,
     NULL,
     QPATH,
     ADD_ALL},
    {"m_last_key_wins",
     {"-m", "256,size=1G"},
     {"-m", "256,size=1G", RAM("1G"), QMP, BALLOON},
     G,
     NULL,
     QPATH,
     ADD_ALL},
    {"double_dash_spelling",
     {"--m", "256", "--nographic", "--machine", "q35"},
     {"--m", "256", "--nographic", "--machine", "q35", RAM("256M"), QMP, BALLOON},
     256 * M,
     NULL,
     QPATH,
     ADD_ALL},
    {"user_machine_kept",
     {"-machine", "pc,accel=tcg", "-m", "256", "-nographic", "-S"},
     {"-machine", "pc,accel=tcg", "-m", "256", "-nographic", "-S", RAM("256M"), QMP, BALLOON},
     256 * M,
     NULL,
     QPATH,
     ADD_ALL},
    {"M_alias",
     {"-M", "q35", "-enable-kvm", "-cpu", "host"},
     {"-M", "q35", "-enable-kvm", "-cpu", "host", RAM("128M"), QMP, BALLOON},
     128 * M,
     NULL,
     QPATH,
     ADD_ALL},
    {"user_memfd_backend",
     {"-object", "memory-backend-memfd,id=mem0,size=1G,share=on", "-machine",
      "memory-backend=mem0"},
     {"-object", "memory-backend-memfd,id=mem0,size=1G,share=on", "-machine", "memory-backend=mem0",
      QMP, BALLOON},
     G,
     NULL,
     QPATH,
     ADD_QMP | ADD_BALLOON},
    {"user_memfd_backend_before_object",
     {"-machine", "q35,memory-backend=mem0", "-m", "1G", "-object",
      "memory-backend-memfd,id=mem0,size=1073741824,share=yes"},
     {"-machine", "q35,memory-backend=mem0", "-m", "1G", "-object",
      "memory-backend-memfd,id=mem0,size=1073741824,share=yes", QMP, BALLOON},
     G,
     NULL,
     QPATH,
     ADD_QMP | ADD_BALLOON},
    /* QEMU 7.2's memory-backend-memfd defaults to share=on (checked with qom-get). */
    {"user_memfd_share_default",
     {"-object", "memory-backend-memfd,id=mem0,size=256M", "-machine", "memory-backend=mem0"},
     {"-object", "memory-backend-memfd,id=mem0,size=256M", "-machine", "memory-backend=mem0", QMP,
      BALLOON},
     256 * M,
     NULL,
     QPATH,
     ADD_QMP | ADD_BALLOON},
    {"user_memfd_json",
     {"-object",
      "{\"qom-type\":\"memory-backend-memfd\",\"id\":\"mem0\",\"size\":536870912,"
      "\"share\":true}",
      "-machine", "memory-backend=mem0"},
     {"-object",
      "{\"qom-type\":\"memory-backend-memfd\",\"id\":\"mem0\",\"size\":536870912,"
      "\"share\":true}",
      "-machine", "memory-backend=mem0", QMP, BALLOON},
     512 * M,
     NULL,
     QPATH,
     ADD_QMP | ADD_BALLOON},
    {"name_plain",
     {"-name", "web1"},
     {"-name", "web1", RAM("128M"), QMP, BALLOON},
     128 * M,
     "web1",
     QPATH,
     ADD_ALL},
    {"name_guest_key",
     {"-name", "guest=db.2,process=qemu-db,debug-threads=on"},
     {"-name", "guest=db.2,process=qemu-db,debug-threads=on", RAM("128M"), QMP, BALLOON},
     128 * M,
     "db.2",
     QPATH,
     ADD_ALL},
    {"name_escaped_comma",
     {"-name", "a,,b"},
     {"-name", "a,,b", RAM("128M"), QMP, BALLOON},
     128 * M,
     "a,b",
     QPATH,
     ADD_ALL},
    {"qmp_user_unix_server",
     {"-qmp", "unix:/tmp/q.sock,server=on,wait=off"},
     {"-qmp", "unix:/tmp/q.sock,server=on,wait=off", RAM("128M"), BALLOON},
     128 * M,
     NULL,
     "/tmp/q.sock",
     ADD_RAM | ADD_BALLOON},
    {"qmp_user_short_flags",
     {"-qmp", "unix:/tmp/q.sock,server,nowait"},
     {"-qmp", "unix:/tmp/q.sock,server,nowait", RAM("128M"), BALLOON},
     128 * M,
     NULL,
     "/tmp/q.sock",
     ADD_RAM | ADD_BALLOON},
    {"qmp_pretty",
     {"-qmp-pretty", "unix:/tmp/p,,q.sock,server=on"},
     {"-qmp-pretty", "unix:/tmp/p,,q.sock,server=on", RAM("128M"), BALLOON},
     128 * M,
     NULL,
     "/tmp/p,q.sock",
     ADD_RAM | ADD_BALLOON},
    {"qmp_mon_chardev",
     {"-mon", "chardev=c0,mode=control", "-chardev",
      "socket,id=c0,path=/tmp/m.sock,server=on,wait=off"},
     {"-mon", "chardev=c0,mode=control", "-chardev",
      "socket,id=c0,path=/tmp/m.sock,server=on,wait=off", RAM("128M"), BALLOON},
     128 * M,
     NULL,
     "/tmp/m.sock",
     ADD_RAM | ADD_BALLOON},
    {"qmp_chardev_prefix",
     {"-chardev", "socket,id=c1,path=/tmp/c.sock,server=on,wait=off", "-qmp", "chardev:c1"},
     {"-chardev", "socket,id=c1,path=/tmp/c.sock,server=on,wait=off", "-qmp", "chardev:c1",
      RAM("128M"), BALLOON},
     128 * M,
     NULL,
     "/tmp/c.sock",
     ADD_RAM | ADD_BALLOON},
    {"hmp_mon_is_not_qmp",
     {"-chardev", "socket,id=c0,path=/tmp/h.sock,server=on,wait=off", "-mon", "chardev=c0"},
     {"-chardev", "socket,id=c0,path=/tmp/h.sock,server=on,wait=off", "-mon", "chardev=c0",
      RAM("128M"), QMP, BALLOON},
     128 * M,
     NULL,
     QPATH,
     ADD_ALL},
    {"qmp_tcp_gets_a_unix_one_too",
     {"-qmp", "tcp:127.0.0.1:4444,server=on,wait=off"},
     {"-qmp", "tcp:127.0.0.1:4444,server=on,wait=off", RAM("128M"), QMP, BALLOON},
     128 * M,
     NULL,
     QPATH,
     ADD_ALL},
    {"qmp_unix_client_gets_one_too",
     {"-qmp", "unix:/tmp/q.sock"},
     {"-qmp", "unix:/tmp/q.sock", RAM("128M"), QMP, BALLOON},
     128 * M,
     NULL,
     QPATH,
     ADD_ALL},
    {"qmp_stdio_gets_one_too",
     {"-qmp", "stdio"},
     {"-qmp", "stdio", RAM("128M"), QMP, BALLOON},
     128 * M,
     NULL,
     QPATH,
     ADD_ALL},
    /* libvirt's two-node domain: a memory-backend-ram per node, each made a memfd. */
    {"numa_memdev_libvirt",
     {"-m", "512", "-object", "{\"qom-type\":\"memory-backend-ram\",\"id\":\"ram-node0\",\"size\":268435456}",
      "-numa", "node,nodeid=0,cpus=0,memdev=ram-node0", "-object",
      "{\"qom-type\":\"memory-backend-ram\",\"id\":\"ram-node1\",\"size\":268435456}", "-numa",
      "node,nodeid=1,cpus=1,memdev=ram-node1"},
     {"-m", "512", "-object",
      "{\"qom-type\":\"memory-backend-memfd\",\"id\":\"ram-node0\",\"size\":268435456,\"share\":true}",
      "-numa", "node,nodeid=0,cpus=0,memdev=ram-node0", "-object",
      "{\"qom-type\":\"memory-backend-memfd\",\"id\":\"ram-node1\",\"size\":268435456,\"share\":true}",
      "-numa", "node,nodeid=1,cpus=1,memdev=ram-node1", QMP, BALLOON},
     512 * M, NULL, QPATH, ADD_QMP | ADD_BALLOON},
    {"numa_without_memdev",
     {"-M", "pc-i440fx-5.0", "-m", "256", "-smp", "2", "-numa", "node,mem=128M", "-numa",
      "node,mem=128M"},
     {"-M", "pc-i440fx-5.0", "-m", "256", "-smp", "2", "-numa", "node,mem=128M", "-numa",
      "node,mem=128M", RAM("256M"), QMP, BALLOON},
     256 * M,
     NULL,
     QPATH,
     ADD_ALL},
    {"balloon_present",
     {"-device", "virtio-balloon-pci,id=b0,deflate-on-oom=on"},
     {"-device", "virtio-balloon-pci,id=b0,deflate-on-oom=on", RAM("128M"), QMP},
     128 * M,
     NULL,
     QPATH,
     ADD_RAM | ADD_QMP},
    {"balloon_present_json",
     {"-device", "{\"driver\":\"virtio-balloon-pci\",\"id\":\"b0\"}"},
     {"-device", "{\"driver\":\"virtio-balloon-pci\",\"id\":\"b0\"}", RAM("128M"), QMP},
     128 * M,
     NULL,
     QPATH,
     ADD_RAM | ADD_QMP},
    {"microvm_no_pci_balloon",
     {"-M", "microvm"},
     {"-M", "microvm", RAM("128M"), QMP},
     128 * M,
     NULL,
     QPATH,
     ADD_RAM | ADD_QMP},
    {"disk_image_word",
     {"disk.img", "-m", "256"},
     {"disk.img", "-m", "256", RAM("256M"), QMP, BALLOON},
     256 * M,
     NULL,
     QPATH,
     ADD_ALL},
    {"argument_starting_with_dash",
     {"-append", "-m 4G console=ttyS0", "-kernel", "bzImage"},
     {"-append", "-m 4G console=ttyS0", "-kernel", "bzImage", RAM("128M"), QMP, BALLOON},
     128 * M,
     NULL,
     QPATH,
     ADD_ALL},
    {"vhost_kernel_tap_is_fine",
     {"-netdev", "tap,id=n0,vhost=on", "-device", "virtio-net-pci,netdev=n0"},
     {"-netdev", "tap,id=n0,vhost=on", "-device", "virtio-net-pci,netdev=n0", RAM("128M"), QMP,
      BALLOON},
     128 * M,
     NULL,
     QPATH,
     ADD_ALL},
    /* Disks: QEMU's default is cache=writeback (no O_DIRECT), for -drive and the shorthands. */
    {"drive_default_cache",
     {"-drive", "file=vm.qcow2,if=virtio"},
     {"-drive", "file=vm.qcow2,if=virtio", RAM("128M"), QMP, BALLOON},
     128 * M,
     NULL,
     QPATH,
     ADD_ALL},
    {"disk_shorthands_default_cache",
     {"-hda", "a.img", "-cdrom", "b.iso", "-fda", "c.img", "d.img"},
     {"-hda", "a.img", "-cdrom", "b.iso", "-fda", "c.img", "d.img", RAM("128M"), QMP, BALLOON},
     128 * M,
     NULL,
     QPATH,
     ADD_ALL},
    {"drive_buffered_modes",
     {"-drive", "file=a.img,cache=writethrough,aio=io_uring", "-drive",
      "file=b.img,cache=unsafe,aio=threads,cache.direct=off"},
     {"-drive", "file=a.img,cache=writethrough,aio=io_uring", "-drive",
      "file=b.img,cache=unsafe,aio=threads,cache.direct=off", RAM("128M"), QMP, BALLOON},
     128 * M,
     NULL,
     QPATH,
     ADD_ALL},
    /* QEMU: an explicit cache.direct= beats the cache= shorthand (checked with query-block). */
    {"drive_cache_none_but_direct_off",
     {"-drive", "file=a.img,cache=none,cache.direct=off"},
     {"-drive", "file=a.img,cache=none,cache.direct=off", RAM("128M"), QMP, BALLOON},
     128 * M,
     NULL,
     QPATH,
     ADD_ALL},
    {"blockdev_io_uring",
     {"-blockdev", "driver=file,node-name=f0,filename=a.img,aio=io_uring"},
     {"-blockdev", "driver=file,node-name=f0,filename=a.img,aio=io_uring", RAM("128M"), QMP,
      BALLOON},
     128 * M,
     NULL,
     QPATH,
     ADD_ALL},
    {"blockdev_json_buffered",
     {"-blockdev", "{\"driver\":\"qcow2\",\"node-name\":\"d0\",\"file\":{\"driver\":\"file\","
		   "\"filename\":\"a.qcow2\",\"aio\":\"io_uring\",\"cache\":{\"direct\":false}}}"},
     {"-blockdev",
      "{\"driver\":\"qcow2\",\"node-name\":\"d0\",\"file\":{\"driver\":\"file\","
      "\"filename\":\"a.qcow2\",\"aio\":\"io_uring\",\"cache\":{\"direct\":false}}}",
      RAM("128M"), QMP, BALLOON},
     128 * M,
     NULL,
     QPATH,
     ADD_ALL},
    {"set_drive_writeback",
     {"-drive", "file=a.img,id=d0", "-set", "drive.d0.cache=writeback"},
     {"-drive", "file=a.img,id=d0", "-set", "drive.d0.cache=writeback", RAM("128M"), QMP, BALLOON},
     128 * M,
     NULL,
     QPATH,
     ADD_ALL},
    /* Emulated in QEMU: it reads and writes guest RAM through its own (registered) mapping. */
    {"emulated_nvme_and_scsi_hd",
     {"-drive", "file=a.img,if=none,id=d0", "-device", "nvme,serial=s1,drive=d0", "-drive",
      "file=b.img,if=none,id=d1", "-device", "scsi-hd,drive=d1"},
     {"-drive", "file=a.img,if=none,id=d0", "-device", "nvme,serial=s1,drive=d0", "-drive",
      "file=b.img,if=none,id=d1", "-device", "scsi-hd,drive=d1", RAM("128M"), QMP, BALLOON},
     128 * M,
     NULL,
     QPATH,
     ADD_ALL},
    /* Kernel vhost copies with copy_to_user on QEMU's mm: it faults like a vCPU. */
    {"vhost_kernel_vsock_is_fine",
     {"-device", "vhost-vsock-pci,guest-cid=3"},
     {"-device", "vhost-vsock-pci,guest-cid=3", RAM("128M"), QMP, BALLOON},
     128 * M,
     NULL,
     QPATH,
     ADD_ALL},
    {"overcommit_mem_lock_off",
     {"-overcommit", "mem-lock=off,cpu-pm=on"},
     {"-overcommit", "mem-lock=off,cpu-pm=on", RAM("128M"), QMP, BALLOON},
     128 * M,
     NULL,
     QPATH,
     ADD_ALL},
    {"other_memfd_object_kept",
     {"-object", "memory-backend-memfd,id=shm0,size=4M", "-device", "ivshmem-plain,memdev=shm0"},
     {"-object", "memory-backend-memfd,id=shm0,size=4M", "-device", "ivshmem-plain,memdev=shm0",
      RAM("128M"), QMP, BALLOON},
     128 * M,
     NULL,
     QPATH,
     ADD_ALL},
};

/* The reasons of the disk refusals. */
#define DIRECT_WHY                                                                                 \
	"O_DIRECT reads land in guest RAM by DMA behind the page tables, so an eviction racing "   \
	"one could lose the data"
#define USE_CACHE      "; use cache=writeback (the default) or cache=writethrough"
#define USE_DIRECT_OFF "; use cache.direct=off (the default)"
#define USE_AIO	       "; use aio=threads (the default) or aio=io_uring"
#define NVME_WHY                                                                                   \
	"QEMU's userspace nvme driver maps all guest RAM for the device's DMA, behind the page "   \
	"tables; use the host's nvme block device (/dev/nvmeXnY)"

struct bad_case {
	const char *name;
	const char *in[16];
	const char *err;
};

static const struct bad_case bad_cases[] = {
    {"unknown_option", {"-m", "256", "-foo"}, "unknown QEMU option '-foo'"},
    {"unknown_double_dash", {"--foo", "x"}, "unknown QEMU option '--foo'"},
    {"other_target_option", {"-semihosting"}, "unknown QEMU option '-semihosting'"},
    {"removed_option", {"-no-kvm"}, "unknown QEMU option '-no-kvm'"},
    {"bare_double_dash", {"--"}, "unknown QEMU option '--'"},
    {"triple_dash", {"---m", "1G"}, "unknown QEMU option '---m'"},
    {"missing_argument", {"-nographic", "-m"}, "QEMU option '-m' needs an argument"},
    {"missing_argument_double_dash", {"--name"}, "QEMU option '--name' needs an argument"},
    {"mem_path",
     {"-m", "1G", "-mem-path", "/dev/hugepages"},
     "-mem-path is not supported: it backs guest RAM with a file; uffd-mgr needs a shared "
     "memfd (uffd-qemu adds one)"},
    {"mem_prealloc",
     {"--mem-prealloc"},
     "-mem-prealloc is not supported: it would fault in all guest RAM at start, leaving "
     "nothing for uffd-mgrd to page on demand"},
    {"incoming",
     {"-incoming", "defer"},
     "-incoming is not supported: incoming (post-copy) migration registers guest RAM with "
     "userfaultfd itself"},
    {"daemonize",
     {"-daemonize"},
     "-daemonize is not supported: uffd-qemu must stay the QEMU process (the shim and "
     "uffd-mgrd follow that process)"},
    {"readconfig",
     {"-readconfig", "vm.cfg"},
     "-readconfig is not supported: uffd-qemu cannot check the guest RAM set-up inside a "
     "config file; give those options on the command line"},
    {"backend_file",
     {"-object", "memory-backend-file,id=m,size=1G,mem-path=/dev/shm/x,share=on"},
     "-object memory-backend-file is not supported: guest RAM must be a shared memfd, not a "
     "file (use memory-backend-memfd,share=on)"},
    {"backend_ram_share",
     {"-object", "memory-backend-ram,id=m,size=1G,share=on", "-machine", "memory-backend=m"},
     "-object memory-backend-ram,id=m: share= is not supported: uffd-qemu makes it a shared "
     "memfd backend"},
    {"memfd_hugetlb",
     {"-object", "memory-backend-memfd,id=m,size=1G,share=on,hugetlb=on", "-machine",
      "memory-backend=m"},
     "-object memory-backend-memfd,id=m: hugetlb=on is not supported: uffd-mgr pages guest RAM "
     "in 4 KiB pages"},
    {"memfd_prealloc",
     {"-object", "memory-backend-memfd,id=m,size=1G,prealloc=on"},
     "-object memory-backend-memfd,id=m: prealloc=on is not supported: it would fault in all "
     "guest RAM at start, leaving nothing to page on demand"},
    {"memfd_share_off",
     {"-object", "memory-backend-memfd,id=m,size=1G,share=off", "-machine", "memory-backend=m"},
     "-object memory-backend-memfd,id=m has share=off: uffd-mgr needs share=on, so that "
     "uffd-mgrd maps the same memory as QEMU"},
    {"memfd_share_false_json",
     {"-machine", "memory-backend=m", "-object",
      "{\"qom-type\":\"memory-backend-memfd\",\"id\":\"m\",\"size\":1073741824,"
      "\"share\":false}"},
     "-object memory-backend-memfd,id=m has share=off: uffd-mgr needs share=on, so that "
     "uffd-mgrd maps the same memory as QEMU"},
    {"memfd_share_garbage",
     {"-object", "memory-backend-memfd,id=m,size=1G,share=maybe"},
     "-object memory-backend-memfd,id=m: share=maybe is not on or off"},
    {"memfd_no_size",
     {"-object", "memory-backend-memfd,id=m,share=on", "-machine", "memory-backend=m"},
     "-object memory-backend-memfd,id=m: needs a valid size="},
    {"memfd_size_mismatch",
     {"-m", "512", "-object", "memory-backend-memfd,id=m,size=1G,share=on", "-machine",
      "memory-backend=m"},
     "-m 512 does not match size=1G of memory backend 'm'"},
    {"machine_backend_missing",
     {"-machine", "pc,memory-backend=nope"},
     "-machine memory-backend=nope: there is no -object with id=nope"},
    {"machine_backend_not_memory",
     {"-object", "secret,id=s0,data=x", "-machine", "memory-backend=s0"},
     "-machine memory-backend=s0: 's0' is a secret; guest RAM must be a memory-backend-memfd "
     "with share=on"},
    {"reserved_id",
     {"-object", "memory-backend-memfd,id=uffd-ram,size=1G"},
     "-object id=uffd-ram: that id is reserved for the guest RAM uffd-qemu adds"},
    {"m_slots",
     {"-m", "1G,slots=2,maxmem=4G"},
     "-m 1G,slots=2,maxmem=4G: memory hotplug (slots=, maxmem=) is not supported: hot-plugged "
     "memory would be guest RAM outside the managed memfd"},
    {"m_maxmem_alone",
     {"-m", "1G", "-m", "maxmem=2G"},
     "-m maxmem=2G: memory hotplug (slots=, maxmem=) is not supported: hot-plugged memory "
     "would be guest RAM outside the managed memfd"},
    {"m_bad_size", {"-m", "lots"}, "-m: invalid size 'lots'"},
    {"m_bad_suffix", {"-m", "1Mb"}, "-m: invalid size '1Mb'"},
    {"m_negative", {"-m", "-1"}, "-m: invalid size '-1'"},
    {"numa_memdev_missing",
     {"-object", "memory-backend-memfd,id=n0,size=1G", "-numa", "node,memdev=n0", "-numa",
      "node,memdev=n1"},
     "-numa node,memdev=n1: there is no -object with id=n1"},
    {"numa_memdev_private",
     {"-object", "memory-backend-memfd,id=n0,size=1G,share=off", "-numa", "node,memdev=n0"},
     "-object memory-backend-memfd,id=n0 has share=off: uffd-mgr needs share=on, so that "
     "uffd-mgrd maps the same memory as QEMU"},
    {"numa_m_mismatch",
     {"-m", "3G", "-object", "memory-backend-memfd,id=n0,size=1G", "-numa", "node,memdev=n0"},
     "-m 3G does not match the 1024 MiB of the NUMA nodes' memdevs"},
    {"vhost_user_device",
     {"-chardev", "socket,id=vfs,path=/tmp/vfs.sock", "-device",
      "vhost-user-fs-pci,chardev=vfs,tag=fs"},
     "-device vhost-user-fs-pci is not supported: a vhost-user backend writes guest RAM "
     "outside QEMU's registered mapping"},
    {"vhost_user_device_json",
     {"-device", "{\"driver\":\"vhost-user-blk-pci\",\"chardev\":\"c\"}"},
     "-device vhost-user-blk-pci is not supported: a vhost-user backend writes guest RAM "
     "outside QEMU's registered mapping"},
    {"vhost_user_netdev",
     {"-chardev", "socket,id=c,path=/tmp/vu.sock", "-netdev", "vhost-user,id=n,chardev=c"},
     "-netdev vhost-user is not supported: a vhost-user backend writes guest RAM outside "
     "QEMU's registered mapping"},
    {"vhost_user_netdev_type_key",
     {"-netdev", "type=vhost-user,id=n,chardev=c"},
     "-netdev vhost-user is not supported: a vhost-user backend writes guest RAM outside "
     "QEMU's registered mapping"},
    {"vhost_user_nic",
     {"-nic", "vhost-user,chardev=c"},
     "-nic vhost-user is not supported: a vhost-user backend writes guest RAM outside QEMU's "
     "registered mapping"},
    {"vhost_vdpa_netdev",
     {"-netdev", "vhost-vdpa,id=v,vhostdev=/dev/vhost-vdpa-0"},
     "-netdev vhost-vdpa is not supported: a vDPA device writes guest RAM by DMA outside "
     "QEMU's registered mapping"},
    {"vfio_device",
     {"-device", "vfio-pci,host=01:00.0"},
     "-device vfio-pci is not supported: device assignment pins guest RAM and writes it by DMA "
     "outside QEMU's registered mapping"},
    {"vhost_scsi",
     {"-device", "vhost-scsi-pci,wwpn=naa.5001405df3e54061"},
     "-device vhost-scsi-pci is not supported: the kernel's vhost-scsi pins guest RAM for its "
     "SCSI target, which writes it by DMA outside QEMU's registered mapping; use "
     "virtio-scsi-pci with scsi-hd"},
    {"scsi_block",
     {"-drive", "file=/dev/sdb,if=none,id=d0,format=raw", "-device", "scsi-block,drive=d0"},
     "-device scsi-block is not supported: its SG_IO requests pin guest RAM and the host disk "
     "writes it by DMA outside QEMU's registered mapping; use scsi-hd"},
    {"pvrdma",
     {"-device", "pvrdma,ibdev=mlx5_0,netdev=eth0"},
     "-device pvrdma is not supported: it registers guest RAM with the host's RDMA device, "
     "which writes it by DMA outside QEMU's registered mapping"},
    {"pci_proxy_dev",
     {"-device", "x-pci-proxy-dev,id=lsi0,fd=4"},
     "-device x-pci-proxy-dev is not supported: the remote device process writes guest RAM "
     "through its own mapping, outside QEMU's registered one"},
    /* O_DIRECT disks, in every spelling QEMU 7.2 takes. */
    {"drive_cache_none",
     {"-drive", "file=x.img,cache=none"},
     "-drive file=x.img,cache=none: cache=none means O_DIRECT, and " DIRECT_WHY USE_CACHE},
    {"drive_cache_off",
     {"-drive", "file=x.img,if=virtio,cache=off"},
     "-drive file=x.img,if=virtio,cache=off: cache=off means O_DIRECT, and " DIRECT_WHY USE_CACHE},
    {"drive_cache_directsync",
     {"-drive", "file=x.img,cache=writeback,cache=directsync"},
     "-drive file=x.img,cache=writeback,cache=directsync: cache=directsync means O_DIRECT, "
     "and " DIRECT_WHY USE_CACHE},
    {"drive_cache_direct_on",
     {"-drive", "file=x.img,cache=writeback,cache.direct=on"},
     "-drive file=x.img,cache=writeback,cache.direct=on: cache.direct=on means O_DIRECT, "
     "and " DIRECT_WHY USE_DIRECT_OFF},
    {"drive_cache_direct_bare_flag",
     {"-drive", "file=x.img,cache.direct"},
     "-drive file=x.img,cache.direct: cache.direct=on means O_DIRECT, and " DIRECT_WHY
	 USE_DIRECT_OFF},
    {"drive_child_cache_direct",
     {"-drive", "driver=raw,file.driver=file,file.filename=x.img,file.cache.direct=yes"},
     "-drive driver=raw,file.driver=file,file.filename=x.img,file.cache.direct=yes: "
     "file.cache.direct=yes means O_DIRECT, and " DIRECT_WHY USE_DIRECT_OFF},
    {"drive_aio_native",
     {"-drive", "file=x.img,aio=native"},
     "-drive file=x.img,aio=native: aio=native needs O_DIRECT, and " DIRECT_WHY USE_AIO},
    {"drive_json_filename",
     {"-drive", "file=json:{\"driver\":\"raw\",,\"file\":{\"driver\":\"file\",,\"filename\":"
		"\"x.img\",,\"cache\":{\"direct\":true}}},if=none,id=d0"},
     "-drive file=json:{\"driver\":\"raw\",,\"file\":{\"driver\":\"file\",,\"filename\":"
     "\"x.img\",,\"cache\":{\"direct\":true}}},if=none,id=d0: file.cache.direct=on means "
     "O_DIRECT, and " DIRECT_WHY USE_DIRECT_OFF},
    {"set_drive_cache_none",
     {"-drive", "file=x.img,id=d0", "-set", "drive.d0.cache=none"},
     "-set drive.d0.cache=none: cache=none means O_DIRECT, and " DIRECT_WHY USE_CACHE},
    {"blockdev_cache_direct",
     {"-blockdev", "driver=file,node-name=f0,filename=x.img,cache.direct=on"},
     "-blockdev driver=file,node-name=f0,filename=x.img,cache.direct=on: cache.direct=on "
     "means O_DIRECT, and " DIRECT_WHY USE_DIRECT_OFF},
    {"blockdev_aio_native",
     {"-blockdev", "driver=host_device,node-name=h0,filename=/dev/sdb,aio=native"},
     "-blockdev driver=host_device,node-name=h0,filename=/dev/sdb,aio=native: aio=native "
     "needs O_DIRECT, and " DIRECT_WHY USE_AIO},
    {"blockdev_json_cache_direct",
     {"-blockdev", "{\"driver\":\"file\",\"node-name\":\"f0\",\"filename\":\"x.img\","
		   "\"cache\":{\"direct\":true}}"},
     "-blockdev {\"driver\":\"file\",\"node-name\":\"f0\",\"filename\":\"x.img\",\"cache\":"
     "{\"direct\":true}}: cache.direct=on means O_DIRECT, and " DIRECT_WHY USE_DIRECT_OFF},
    {"blockdev_json_child_aio_native",
     {"-blockdev", "{\"driver\":\"qcow2\",\"node-name\":\"q0\",\"file\":{\"driver\":\"file\","
		   "\"filename\":\"x.qcow2\",\"aio\":\"native\"}}"},
     "-blockdev {\"driver\":\"qcow2\",\"node-name\":\"q0\",\"file\":{\"driver\":\"file\","
     "\"filename\":\"x.qcow2\",\"aio\":\"native\"}}: file.aio=native needs O_DIRECT, "
     "and " DIRECT_WHY USE_AIO},
    {"blockdev_nvme_driver",
     {"-blockdev", "driver=nvme,node-name=n0,device=0000:01:00.0,namespace=1"},
     "-blockdev driver=nvme,node-name=n0,device=0000:01:00.0,namespace=1: " NVME_WHY},
    {"drive_nvme_filename",
     {"-drive", "file=nvme://0000:01:00.0/1,if=virtio"},
     "-drive file=nvme://0000:01:00.0/1,if=virtio: " NVME_WHY},
    {"overcommit_mem_lock",
     {"-overcommit", "mem-lock=on"},
     "-overcommit mem-lock=on is not supported: it locks all guest RAM in host memory, so no "
     "page could ever be evicted"},
    {"object_bad_json",
     {"-object", "{\"qom-type\":"},
     "-object: invalid JSON: unexpected end of data"},
    {"json_trailing_text", {"-device", "{} x"}, "-device: invalid JSON: text after the JSON value"},
    {"json_not_an_object", {"-netdev", "{[1]}"}, NULL},
    {"json_two_values",
     {"-object", "{\"a\":1} [1]"},
     "-object: invalid JSON: text after the JSON value"},
    {"json_number", {"-device", "{1}"}, NULL},
};

/* ---- Sizes ---- */

struct size_case {
	const char *text;
	uint64_t unit;
	int ret;
	uint64_t bytes;
};

static const struct size_case size_cases[] = {
    {"0", 1, 0, 0},
    {"4096", 1, 0, 4096},
    {"512", M, 0, 512 * M},
    {"64k", 1, 0, 64 * K},
    {"64K", 1, 0, 64 * K},
    {"2G", 1, 0, 2 * G},
    {"1.5G", 1, 0, 1536 * M},
    {"1.5", M, 0, 1536 * K},
    {"0.5K", 1, 0, 512},
    {"0x1000", 1, 0, 4096},
    {"0x10", M, 0, 16 * M},
    {"512b", M, 0, 512},
    {"1T", 1, 0, 1024 * G},
    {"1E", 1, 0, UINT64_C(1) << 60},
    {"", 1, -EINVAL, 0},
    {"-1", 1, -EINVAL, 0},
    {"1.5", 1, -EINVAL, 0},
    {"1e3", 1, -EINVAL, 0},
    {"1.5e3K", 1, -EINVAL, 0},
    {"0x1.8G", 1, -EINVAL, 0},
    {"1Q", 1, -EINVAL, 0},
    {"1KB", 1, -EINVAL, 0},
    {"1 K", 1, -EINVAL, 0},
    {"K", 1, -EINVAL, 0},
    {"16E", 1, -ERANGE, 0},
    {"18446744073709551616", 1, -ERANGE, 0},
};

/* ---- Row runners ---- */

static int count(const char *const *words)
{
	int n = 0;

	while (words[n])
		n++;
	return n;
}

static void test_good(void **state)
{
	const struct good_case *c = *state;
	struct qemuargs qa;
	char err[512];
	int n_out = count(c->out);

	assert_int_equal(qemuargs_parse(&qa, count(c->in), (char *const *)c->in, err, sizeof(err)),
			 0);
	assert_string_equal(err, "");
	assert_int_equal(qemuargs_build(&qa, QPATH), 0);
	for (int i = 0; i < n_out && i < qa.argc; i++)
		assert_string_equal(qa.argv[i], c->out[i]);
	assert_int_equal(qa.argc, n_out);
	assert_null(qa.argv[qa.argc]);
	assert_int_equal(qa.ram_bytes, c->ram);
	if (c->vm)
		assert_string_equal(qa.name, c->vm);
	else
		assert_null(qa.name);
	assert_string_equal(qa.qmp_path, c->qmp);
	assert_int_equal(qa.ram_added, !!(c->added & ADD_RAM));
	assert_int_equal(qa.qmp_added, !!(c->added & ADD_QMP));
	assert_int_equal(qa.balloon_added, !!(c->added & ADD_BALLOON));
	qemuargs_free(&qa);
}

static void test_bad(void **state)
{
	const struct bad_case *c = *state;
	struct qemuargs qa;
	char err[512];

	assert_int_equal(qemuargs_parse(&qa, count(c->in), (char *const *)c->in, err, sizeof(err)),
			 -EINVAL);
	if (c->err)
		assert_string_equal(err, c->err);
	else
		assert_non_null(strstr(err, ": invalid JSON: ")); /* json-c's own words follow */
	assert_null(strchr(err, '\n'));
	qemuargs_free(&qa);
}

static void test_size(void **state)
{
	const struct size_case *c = *state;
	uint64_t bytes = 0xdead;

	assert_int_equal(qemuargs_parse_size(c->text, c->unit, &bytes), c->ret);
	if (!c->ret)
		assert_int_equal(bytes, c->bytes);
}

/* ---- The build step on its own ---- */

static void parse_empty(struct qemuargs *qa)
{
	char *none[] = {NULL};
	char err[256];

	assert_int_equal(qemuargs_parse(qa, 0, none, err, sizeof(err)), 0);
}

static void test_build_comma_in_qmp_path(void **state)
{
	struct qemuargs qa;

	parse_empty(&qa);
	assert_int_equal(qemuargs_build(&qa, "/tmp/a,b.qmp"), 0);
	assert_string_equal(qa.argv[5], "unix:/tmp/a,,b.qmp,server=on,wait=off");
	assert_string_equal(qa.qmp_path, "/tmp/a,b.qmp");
	qemuargs_free(&qa);
}

static void test_build_without_qmp_path(void **state)
{
	static const char *const want[] = {RAM("128M"), BALLOON, NULL};
	struct qemuargs qa;

	parse_empty(&qa);
	assert_int_equal(qemuargs_build(&qa, NULL), 0);
	assert_int_equal(qa.argc, count(want));
	for (int i = 0; want[i]; i++)
		assert_string_equal(qa.argv[i], want[i]);
	assert_false(qa.qmp_added);
	assert_null(qa.qmp_path);
	qemuargs_free(&qa);
}

static void test_build_nothing_to_add(void **state)
{
	char *in[] = {"-M",	  "microvm",
		      "-qmp",	  "unix:/q,server=on",
		      "-object",  "memory-backend-memfd,id=m,size=1G",
		      "-machine", "memory-backend=m",
		      NULL};
	struct qemuargs qa;
	char err[256];

	assert_int_equal(qemuargs_parse(&qa, 8, in, err, sizeof(err)), 0);
	assert_int_equal(qemuargs_build(&qa, QPATH), 0);
	assert_int_equal(qa.argc, 8);
	for (int i = 0; i < 8; i++) {
		assert_string_equal(qa.argv[i], in[i]);
		assert_ptr_not_equal(qa.argv[i], in[i]); /* copies, freed by qemuargs_free */
	}
	assert_null(qa.argv[8]);
	qemuargs_free(&qa);
}

static void test_build_long_qmp_path(void **state)
{
	char path[200];
	struct qemuargs qa;

	memset(path, 'a', sizeof(path) - 1);
	path[0] = '/';
	path[sizeof(path) - 1] = '\0';
	parse_empty(&qa);
	assert_int_equal(qemuargs_build(&qa, path), -ENAMETOOLONG);
	qemuargs_free(&qa);
}

static void test_build_twice(void **state)
{
	struct qemuargs qa;

	parse_empty(&qa);
	assert_int_equal(qemuargs_build(&qa, QPATH), 0);
	assert_int_equal(qemuargs_build(&qa, QPATH), -EINVAL);
	qemuargs_free(&qa);
}

/* A NUMA guest's backends reach the shim by id and size, in -object order. */
static void test_numa_backends(void **state)
{
	static const char *const in[] = {
	    "-object", "memory-backend-memfd,id=b,size=64M", "-object",
	    "memory-backend-ram,id=a,size=128M", "-numa", "node,memdev=a", "-numa", "node,memdev=b"};
	struct qemuargs qa;
	char err[512];

	(void)state;
	assert_int_equal(qemuargs_parse(&qa, 8, (char *const *)in, err, sizeof(err)), 0);
	assert_string_equal(qa.backends, "b:67108864,a:134217728");
	assert_int_equal(qa.ram_bytes, 192 * M);
	assert_false(qa.ram_added);
	assert_true(qa.ram_converted);
	qemuargs_free(&qa);
}

/* A newer QEMU's options, learned from its -help, pass through as they are; ours are still
 * checked. The text mimics QEMU's layout: one space before an argument, several before a
 * description. */
static void test_learned_options(void **state)
{
	static const char help[] =
	    "QEMU emulator version 10.0.0\n"
	    "usage: qemu-system-x86_64 [options] [disk_image]\n\n"
	    "-h or -help     display this help and exit\n"
	    "-run-with [async-teardown=on|off][,chroot=dir][user=username|uid:gid]\n"
	    "                Set miscellaneous QEMU process lifecycle options:\n"
	    "-fda/-fdb file  use 'file' as floppy disk 0/1 image\n"
	    "-no-frobnicate  a switch without argument\n"
	    "-mem-path FILE  provide backing storage for guest RAM\n";
	static const char *const in[] = {"-run-with", "chroot=/x", "-no-frobnicate", "-m", "64"};
	static const char *const bad[] = {"-mem-path", "/dev/hugepages"};
	struct qemuargs_known k;
	struct qemuargs qa;
	char err[512];

	(void)state;
	assert_int_equal(qemuargs_learn(help, &k), 0);
	assert_int_equal(qemuargs_parse(&qa, 5, (char *const *)in, err, sizeof(err)), -EINVAL);
	assert_string_equal(err, "unknown QEMU option '-run-with'");
	qemuargs_free(&qa);
	assert_int_equal(qemuargs_parse_known(&qa, &k, 5, (char *const *)in, err, sizeof(err)), 0);
	assert_int_equal(qa.ram_bytes, 64 * M);
	qemuargs_free(&qa);
	assert_int_equal(qemuargs_parse_known(&qa, &k, 2, (char *const *)bad, err, sizeof(err)),
			 -EINVAL);
	assert_non_null(strstr(err, "-mem-path is not supported"));
	qemuargs_free(&qa);
	for (int i = 0; i < k.n; i++)
		if (!strcmp(k.opt[i].name, "fdb") || !strcmp(k.opt[i].name, "run-with"))
			assert_true(k.opt[i].arg);
		else if (!strcmp(k.opt[i].name, "no-frobnicate"))
			assert_false(k.opt[i].arg);
	qemuargs_known_free(&k);
	assert_int_equal(qemuargs_learn("no options here\n", &k), -ENOENT);
}

static void test_free_zeroed_and_null(void **state)
{
	struct qemuargs qa;

	memset(&qa, 0, sizeof(qa));
	qemuargs_free(&qa);
	qemuargs_free(NULL);
}

#define N_ELEMS(a) (sizeof(a) / sizeof((a)[0]))

int main(void)
{
	static const struct CMUnitTest single[] = {
	    cmocka_unit_test(test_build_comma_in_qmp_path),
	    cmocka_unit_test(test_build_without_qmp_path),
	    cmocka_unit_test(test_build_nothing_to_add),
	    cmocka_unit_test(test_build_long_qmp_path),
	    cmocka_unit_test(test_build_twice),
	    cmocka_unit_test(test_numa_backends),
	    cmocka_unit_test(test_learned_options),
	    cmocka_unit_test(test_free_zeroed_and_null),
	};
	size_t max =
	    N_ELEMS(good_cases) + N_ELEMS(bad_cases) + N_ELEMS(size_cases) + N_ELEMS(single);
	struct CMUnitTest *tests = calloc(max, sizeof(*tests));
	char(*names)[64] = calloc(N_ELEMS(size_cases), sizeof(*names));
	size_t n = 0;
	int failed;

	if (!tests || !names)
		return 1;
	for (size_t i = 0; i < N_ELEMS(good_cases); i++)
		tests[n++] = (struct CMUnitTest){.name = good_cases[i].name,
						 .test_func = test_good,
						 .initial_state = (void *)&good_cases[i]};
	for (size_t i = 0; i < N_ELEMS(bad_cases); i++)
		tests[n++] = (struct CMUnitTest){.name = bad_cases[i].name,
						 .test_func = test_bad,
						 .initial_state = (void *)&bad_cases[i]};
	for (size_t i = 0; i < N_ELEMS(size_cases); i++) {
		snprintf(names[i], sizeof(names[i]), "size '%s' unit %llu", size_cases[i].text,
			 (unsigned long long)size_cases[i].unit);
		tests[n++] = (struct CMUnitTest){.name = names[i],
						 .test_func = test_size,
						 .initial_state = (void *)&size_cases[i]};
	}
	for (size_t i = 0; i < N_ELEMS(single); i++)
		tests[n++] = single[i];
	failed = _cmocka_run_group_tests("qemuargs", tests, n, NULL, NULL);
	free(tests);
	free(names);
	return failed ? 1 : 0;
}
