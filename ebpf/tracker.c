/* tracker: see tracker.h. The loader of tracker.bpf.c, in the style of libbpf-bootstrap: open
 * the skeleton, set its rodata from what the kernel's BTF says, load, attach.
 *
 * Maps: tracker_vms, a hash tgid -> struct tracker_vm (tracker_shared.h), and tracker_bits,
 * one BPF_F_MMAPABLE array of u64 words shared by all VMs that this process maps. Each slot
 * owns a run of words, placed first-fit. The BPF side sets bits with an atomic OR; this side
 * takes them with an atomic exchange. */
#include "ebpf/tracker.h"

#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <linux/membarrier.h>
#include <linux/types.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "ebpf/tracker_shared.h"
#include "tracker.skel.h"

#define BTF_PATH	  "/sys/kernel/btf/vmlinux"
#define PROC_PID_INIT_INO 0xEFFFFFFCu /* the initial pid namespace's inode number */
#define VLOG_SIZE	  (64 * 1024) /* verifier log per program, kept only on failure */
#define NPROGS		  3
#define BITMAP_BYTES	  ((size_t)TRACKER_WORDS * sizeof(uint64_t))

_Static_assert(TRACKER_MAX_RANGES == TRACKER_MAX_GPA, "tracker.h and tracker_shared.h agree");
_Static_assert(sizeof(struct tracker_gpa_range) == sizeof(struct tracker_gpa), "same layout");

struct slot {
	bool used;
	pid_t tgid;
	unsigned unit; /* in the tgid's hash value */
	uint64_t word, nwords;
};

struct tracker {
	struct tracker_bpf *skel;
	uint64_t *bits; /* tracker_bits, mapped */
	unsigned sources;
	pthread_mutex_t lock; /* the slot table and the hash */
	struct slot slots[TRACKER_MAX_VMS];
};

/* libbpf reports through a process-wide callback: while tracker_open runs it keeps the first
 * warning here, for the error message, and prints nothing. */
static char libbpf_msg[256];

static int capture_print(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	if (level != LIBBPF_WARN || libbpf_msg[0])
		return 0;
	vsnprintf(libbpf_msg, sizeof(libbpf_msg), fmt, ap);
	libbpf_msg[strcspn(libbpf_msg, "\n")] = '\0';
	return 0;
}

/* Returns the parameter list of tracepoint tp's probe, after its leading void *, with *n set;
 * NULL when this BTF does not have the tracepoint. The typedef btf_trace_<tp> exists exactly
 * for the tracepoints the kernel (or module) was built with. */
static const struct btf_param *tp_params(const struct btf *btf, const char *tp, int *n)
{
	const struct btf_type *t;
	char name[96];
	__s32 id;

	snprintf(name, sizeof(name), "btf_trace_%s", tp);
	id = btf__find_by_name_kind(btf, name, BTF_KIND_TYPEDEF);
	if (id < 0)
		return NULL;
	t = btf__type_by_id(btf, btf__type_by_id(btf, id)->type);
	if (!t || !btf_is_ptr(t))
		return NULL;
	t = btf__type_by_id(btf, t->type);
	if (!t || !btf_is_func_proto(t) || btf_vlen(t) < 2)
		return NULL;
	*n = btf_vlen(t) - 1;
	return btf_params(t) + 1;
}

/* Decides which programs load and how kvm_page_fault's arguments read, from the kernel's BTF
 * (and kvm's, when kvm is a loaded module). */
static int probe_tracepoints(struct tracker *t, char *err, size_t errlen)
{
	struct btf *vmlinux, *kvm = NULL;
	const struct btf_param *p;
	const struct btf *where;
	const struct btf_type *a;
	int n, r = 0;

	vmlinux = btf__load_vmlinux_btf();
	if (!vmlinux) {
		r = -errno;
		snprintf(err, errlen, "cannot read the kernel's BTF at %s: %s", BTF_PATH,
			 strerror(-r));
		return r;
	}
	if (!tp_params(vmlinux, "page_fault_user", &n) || n < 1) {
		snprintf(err, errlen, "kernel lacks the tracepoint exceptions:page_fault_user");
		r = -ENOENT;
		goto out;
	}
	t->sources = TRACKER_SRC_USER;
	if (tp_params(vmlinux, "page_fault_kernel", &n) && n >= 1)
		t->sources |= TRACKER_SRC_KERNEL;

	where = vmlinux;
	p = tp_params(vmlinux, "kvm_page_fault", &n);
	if (!p && access("/sys/kernel/btf/kvm", R_OK) == 0) {
		kvm = btf__load_module_btf("kvm", vmlinux);
		where = kvm;
		p = kvm ? tp_params(kvm, "kvm_page_fault", &n) : NULL;
	}
	if (p && n >= 2) {
		/* (struct kvm_vcpu *, u64 gpa, u64 error_code) or the older (gpa, error_code). */
		a = btf__type_by_id(where, btf__resolve_type(where, p[0].type));
		t->skel->rodata->kvm_has_vcpu = a && btf_is_ptr(a);
		t->sources |= TRACKER_SRC_KVM;
	}
out:
	btf__free(kvm);
	btf__free(vmlinux);
	return r;
}

/* Reads tgids in this process's pid namespace when it is not the initial one, so that the
 * tgid given to tracker_add means what the daemon thinks it means. */
static void set_pidns(struct tracker *t)
{
	struct stat st;

	if (stat("/proc/self/ns/pid", &st) || st.st_ino == PROC_PID_INIT_INO)
		return;
	t->skel->rodata->use_pidns = true;
	t->skel->rodata->pidns_dev = st.st_dev;
	t->skel->rodata->pidns_ino = st.st_ino;
}

/* The verifier's verdict is the last line of its log that is not a statistic. */
static const char *verifier_verdict(char *log)
{
	const char *best = "no log";
	char *line, *save = NULL;

	for (line = strtok_r(log, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
		if (strncmp(line, "processed ", 10) && strncmp(line, "verification time", 17))
			best = line;
	return best;
}

static int load_error(struct tracker *t, char *logs[NPROGS], int r, char *err, size_t errlen)
{
	struct bpf_program *prog;
	int i = 0;

	if (r == -EPERM) {
		snprintf(err, errlen,
			 "not permitted to load BPF tracing programs: needs CAP_BPF "
			 "and CAP_PERFMON, or CAP_SYS_ADMIN");
		return r;
	}
	bpf_object__for_each_program(prog, t->skel->obj)
	{
		if (i < NPROGS && logs[i][0]) {
			const char *why = verifier_verdict(logs[i]);

			/* libbpf turns a CO-RE relocation it could not resolve into a call to a
			 * bogus helper; its own warning says which field was missing. */
			if (strstr(why, "unknown#195896080") && libbpf_msg[0])
				why = libbpf_msg;
			snprintf(err, errlen, "the verifier refused BPF program %s: %s",
				 bpf_program__name(prog), why);
			return r;
		}
		i++;
	}
	snprintf(err, errlen, "cannot load the BPF programs: %s%s%s", strerror(-r),
		 libbpf_msg[0] ? ": " : "", libbpf_msg);
	return r;
}

/* Attaches prog into *link. A missing optional tracepoint drops its source flag. */
static int attach(struct tracker *t, struct bpf_program *prog, struct bpf_link **link, unsigned src,
		  const char *tp, char *err, size_t errlen)
{
	int r;

	if (!(t->sources & src))
		return 0;
	*link = bpf_program__attach(prog);
	if (*link)
		return 0;
	r = -errno;
	if (r == -ENOENT && src != TRACKER_SRC_USER) {
		t->sources &= ~src;
		return 0;
	}
	if (r == -ENOENT)
		snprintf(err, errlen, "kernel lacks the tracepoint %s", tp);
	else if (r == -EPERM)
		snprintf(err, errlen, "not permitted to attach to %s: needs CAP_PERFMON", tp);
	else
		snprintf(err, errlen, "cannot attach to %s: %s", tp, strerror(-r));
	return r;
}

int tracker_open(struct tracker **out, char *err, size_t errlen)
{
	libbpf_print_fn_t old_print;
	char *logs[NPROGS] = {0};
	struct bpf_program *prog;
	struct tracker *t;
	int r, i;

	if (access(BTF_PATH, R_OK)) {
		r = -errno;
		snprintf(err, errlen, "no BTF at %s: %s (the kernel needs CONFIG_DEBUG_INFO_BTF)",
			 BTF_PATH, strerror(-r));
		return r;
	}
	t = calloc(1, sizeof(*t));
	if (!t) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	pthread_mutex_init(&t->lock, NULL);
	t->bits = MAP_FAILED;
	libbpf_msg[0] = '\0';
	old_print = libbpf_set_print(capture_print);

	t->skel = tracker_bpf__open();
	if (!t->skel) {
		r = -errno;
		snprintf(err, errlen, "cannot open the BPF object: %s", libbpf_msg);
		goto fail;
	}
	r = probe_tracepoints(t, err, errlen);
	if (r)
		goto fail;
	set_pidns(t);
	bpf_program__set_autoload(t->skel->progs.on_kernel_fault,
				  !!(t->sources & TRACKER_SRC_KERNEL));
	bpf_program__set_autoload(t->skel->progs.on_kvm_fault, !!(t->sources & TRACKER_SRC_KVM));

	/* A log buffer per program: libbpf fills it only when the load fails. */
	i = 0;
	bpf_object__for_each_program(prog, t->skel->obj)
	{
		if (i == NPROGS)
			break;
		logs[i] = calloc(1, VLOG_SIZE);
		if (!logs[i]) {
			r = -ENOMEM;
			snprintf(err, errlen, "out of memory");
			goto fail;
		}
		bpf_program__set_log_buf(prog, logs[i++], VLOG_SIZE);
	}
	r = tracker_bpf__load(t->skel);
	if (r) {
		r = load_error(t, logs, r, err, errlen);
		goto fail;
	}
	t->bits = mmap(NULL, BITMAP_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED,
		       bpf_map__fd(t->skel->maps.tracker_bits), 0);
	if (t->bits == MAP_FAILED) {
		r = -errno;
		snprintf(err, errlen, "cannot map the access bitmap: %s", strerror(-r));
		goto fail;
	}
	r = attach(t, t->skel->progs.on_user_fault, &t->skel->links.on_user_fault, TRACKER_SRC_USER,
		   "exceptions:page_fault_user", err, errlen);
	if (!r)
		r = attach(t, t->skel->progs.on_kernel_fault, &t->skel->links.on_kernel_fault,
			   TRACKER_SRC_KERNEL, "exceptions:page_fault_kernel", err, errlen);
	if (!r)
		r = attach(t, t->skel->progs.on_kvm_fault, &t->skel->links.on_kvm_fault,
			   TRACKER_SRC_KVM, "kvm:kvm_page_fault", err, errlen);
	if (r)
		goto fail;
	for (i = 0; i < NPROGS; i++)
		free(logs[i]);
	libbpf_set_print(old_print);
	*out = t;
	return 0;
fail:
	for (i = 0; i < NPROGS; i++)
		free(logs[i]);
	libbpf_set_print(old_print);
	tracker_close(t);
	return r;
}

void tracker_close(struct tracker *t)
{
	if (!t)
		return;
	if (t->bits != MAP_FAILED)
		munmap(t->bits, BITMAP_BYTES);
	tracker_bpf__destroy(t->skel);
	pthread_mutex_destroy(&t->lock);
	free(t);
}

unsigned tracker_sources(const struct tracker *t)
{
	return t->sources;
}

static bool overlaps(const struct tracker *t, uint64_t word, uint64_t n)
{
	for (unsigned i = 0; i < TRACKER_MAX_VMS; i++) {
		const struct slot *s = &t->slots[i];

		if (s->used && word < s->word + s->nwords && s->word < word + n)
			return true;
	}
	return false;
}

/* First fit: the lowest free run of n words starts at 0 or right after a used run. */
static int64_t first_fit(const struct tracker *t, uint64_t n)
{
	uint64_t best = UINT64_MAX, c;

	for (int i = -1; i < (int)TRACKER_MAX_VMS; i++) {
		if (i >= 0 && !t->slots[i].used)
			continue;
		c = i < 0 ? 0 : t->slots[i].word + t->slots[i].nwords;
		if (c < best && c + n <= TRACKER_WORDS && !overlaps(t, c, n))
			best = c;
	}
	return best == UINT64_MAX ? -ENOSPC : (int64_t)best;
}

static int check_ranges(const struct tracker_gpa_range *ranges, unsigned nranges, uint64_t len)
{
	if (nranges > TRACKER_MAX_RANGES || (nranges && !ranges))
		return -EINVAL;
	for (unsigned i = 0; i < nranges; i++) {
		const struct tracker_gpa_range *g = &ranges[i];

		if (!g->len || g->offset > len || g->len > len - g->offset ||
		    g->gpa + g->len < g->gpa)
			return -EINVAL;
	}
	return 0;
}

/* The tgid's units as the hash holds them, or none. Lock held. */
static void units_of(struct tracker *t, pid_t tgid, struct tracker_vm *vm)
{
	__u32 key = (__u32)tgid;

	if (bpf_map_lookup_elem(bpf_map__fd(t->skel->maps.tracker_vms), &key, vm))
		memset(vm, 0, sizeof(*vm));
}

/* Writes the tgid's units back: the hash swaps the value whole (RCU), so a BPF program sees
 * the old units or the new ones, never half of each; no units left deletes the entry. */
static int units_store(struct tracker *t, pid_t tgid, const struct tracker_vm *vm)
{
	__u32 key = (__u32)tgid;

	for (unsigned i = 0; i < TRACKER_MAX_UNITS; i++)
		if (vm->unit[i].npages)
			return bpf_map_update_elem(bpf_map__fd(t->skel->maps.tracker_vms), &key, vm,
						   BPF_ANY)
				   ? -errno
				   : 0;
	bpf_map_delete_elem(bpf_map__fd(t->skel->maps.tracker_vms), &key);
	return 0;
}

/* A free unit of vm for [start, start + len), or -EEXIST (it overlaps one) / -ENOSPC. */
static int free_unit(const struct tracker_vm *vm, uint64_t start, uint64_t len)
{
	int free = -ENOSPC;

	for (unsigned i = 0; i < TRACKER_MAX_UNITS; i++) {
		const struct tracker_unit *u = &vm->unit[i];

		if (!u->npages) {
			free = free < 0 ? (int)i : free;
			continue;
		}
		if (start < u->start + (u->npages << TRACKER_PAGE_SHIFT) && u->start < start + len)
			return -EEXIST;
	}
	return free;
}

int tracker_add(struct tracker *t, pid_t tgid, uint64_t start, uint64_t npages,
		const struct tracker_gpa_range *ranges, unsigned nranges, int *slot)
{
	struct tracker_unit u = {.start = start, .npages = npages, .nranges = nranges};
	uint64_t nwords = (npages + 63) / 64, len = npages << TRACKER_PAGE_SHIFT;
	struct tracker_vm vm;
	int64_t word;
	int r, s, ui;

	if (tgid <= 0 || !npages || start & ((1u << TRACKER_PAGE_SHIFT) - 1))
		return -EINVAL;
	if (nwords > TRACKER_WORDS)
		return -ENOSPC;
	if (start + len < start || check_ranges(ranges, nranges, len))
		return -EINVAL;
	if (nranges)
		memcpy(u.gpa, ranges, nranges * sizeof(*ranges));

	pthread_mutex_lock(&t->lock);
	for (s = 0; s < (int)TRACKER_MAX_VMS && t->slots[s].used; s++)
		;
	r = -ENOSPC;
	if (s == (int)TRACKER_MAX_VMS)
		goto out;
	units_of(t, tgid, &vm);
	ui = r = free_unit(&vm, start, len);
	if (r < 0)
		goto out;
	word = first_fit(t, nwords);
	r = (int)word;
	if (word < 0)
		goto out;
	/* The run is zero: fresh, or cleared by tracker_remove after the last writer left. */
	u.word = (uint64_t)word;
	vm.unit[ui] = u;
	r = units_store(t, tgid, &vm);
	if (r)
		goto out;
	t->slots[s] = (struct slot){
	    .used = true, .tgid = tgid, .unit = (unsigned)ui, .word = u.word, .nwords = nwords};
	*slot = s;
out:
	pthread_mutex_unlock(&t->lock);
	return r;
}

int tracker_set_ranges(struct tracker *t, int slot, const struct tracker_gpa_range *ranges,
		       unsigned nranges)
{
	struct tracker_unit *u;
	struct tracker_vm vm;
	int r;

	if (slot < 0 || slot >= (int)TRACKER_MAX_VMS)
		return -ENOENT;
	pthread_mutex_lock(&t->lock);
	r = -ENOENT;
	if (!t->slots[slot].used)
		goto out;
	units_of(t, t->slots[slot].tgid, &vm);
	u = &vm.unit[t->slots[slot].unit];
	r = check_ranges(ranges, nranges, u->npages << TRACKER_PAGE_SHIFT);
	if (r)
		goto out;
	memset(u->gpa, 0, sizeof(u->gpa));
	if (nranges)
		memcpy(u->gpa, ranges, nranges * sizeof(*ranges));
	u->nranges = nranges;
	r = units_store(t, t->slots[slot].tgid, &vm);
out:
	pthread_mutex_unlock(&t->lock);
	return r;
}

/* BPF programs run inside an RCU read-side section, and membarrier(MEMBARRIER_CMD_GLOBAL) is
 * synchronize_rcu() on a multi-CPU machine: when it returns, every program that could have
 * read a deleted hash entry has finished. Where it does not wait (nohz_full refuses it; one
 * CPU skips it), sleep far longer than a program runs. */
static void wait_for_readers(void)
{
	if (syscall(__NR_membarrier, MEMBARRIER_CMD_GLOBAL, 0, 0) < 0 ||
	    sysconf(_SC_NPROCESSORS_ONLN) < 2)
		usleep(20 * 1000);
}

int tracker_remove(struct tracker *t, int slot)
{
	struct tracker_vm vm;
	struct slot *s;

	if (slot < 0 || slot >= (int)TRACKER_MAX_VMS)
		return -ENOENT;
	pthread_mutex_lock(&t->lock);
	s = &t->slots[slot];
	if (!s->used) {
		pthread_mutex_unlock(&t->lock);
		return -ENOENT;
	}
	units_of(t, s->tgid, &vm);
	memset(&vm.unit[s->unit], 0, sizeof(vm.unit[s->unit]));
	units_store(t, s->tgid, &vm);
	wait_for_readers();
	for (uint64_t i = 0; i < s->nwords; i++)
		__atomic_store_n(&t->bits[s->word + i], 0, __ATOMIC_RELAXED);
	s->used = false;
	pthread_mutex_unlock(&t->lock);
	return 0;
}

int tracker_read_clear(struct tracker *t, int slot, uint64_t *bits, size_t nwords)
{
	const struct slot *s;
	uint64_t *w, v;
	int r = 0;

	if (slot < 0 || slot >= (int)TRACKER_MAX_VMS)
		return -ENOENT;
	pthread_mutex_lock(&t->lock);
	s = &t->slots[slot];
	if (!s->used) {
		r = -ENOENT;
		goto out;
	}
	if (nwords < s->nwords) {
		r = -EINVAL;
		goto out;
	}
	for (uint64_t i = 0; i < s->nwords; i++) {
		w = &t->bits[s->word + i];
		/* Exchange only words with bits: a plain load keeps idle lines clean. */
		v = __atomic_load_n(w, __ATOMIC_RELAXED);
		if (v)
			v = __atomic_exchange_n(w, 0, __ATOMIC_ACQ_REL);
		bits[i] = v;
	}
	memset(bits + s->nwords, 0, (nwords - s->nwords) * sizeof(*bits));
out:
	pthread_mutex_unlock(&t->lock);
	return r;
}
