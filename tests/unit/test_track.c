/* test_track: how the daemon picks a working-set tracker (uffd-mgr/track.c, track_choose).
 *
 * What it stresses:
 *  - with BPF really unavailable (a child process drops CAP_BPF, CAP_PERFMON and
 *    CAP_SYS_ADMIN, then asks ebpf/tracker to load): the load fails with a one-line reason,
 *    and a VM whose policy says ebpf falls back to uffd minor-fault sampling with a message
 *    that names the fallback and carries that reason; without UFFD_FEATURE_MINOR_SHMEM it
 *    falls back to off and says that too;
 *  - with BPF available (this process, root): ebpf mode;
 *  - policy sample and off are taken as they are (sample needs the minor feature). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <linux/capability.h>
#include <linux/userfaultfd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ebpf/tracker.h"
#include "uffd-mgr/track.h"
#include "uffd-mgr/vm.h"

static struct vm *vm_with(int mode, uint64_t features)
{
	struct vm *vm = calloc(1, sizeof(*vm));

	assert_non_null(vm);
	policy_defaults(&vm->pol);
	vm->pol.track_mode = mode;
	vm->uffd_features = features;
	snprintf(vm->name, sizeof(vm->name), "t");
	return vm;
}

static int drop_bpf_caps(void)
{
	struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3};
	struct __user_cap_data_struct d[2];

	if (syscall(SYS_capget, &h, d))
		return -1;
	for (int i = 0; i < 2; i++) {
		uint32_t drop = i == 0 ? 1u << CAP_SYS_ADMIN
				       : (1u << (CAP_BPF - 32)) | (1u << (CAP_PERFMON - 32));

		d[i].effective &= ~drop;
		d[i].permitted &= ~drop;
		d[i].inheritable &= ~drop;
	}
	return (int)syscall(SYS_capset, &h, d);
}

/* In a child without the capabilities: the load fails, and the choice falls back. The child
 * reports through its exit status and prints the messages for the log. */
static void test_fallback_without_bpf(void **state)
{
	pid_t pid = fork();
	int status;

	assert_true(pid >= 0);
	if (pid == 0) {
		struct tracker *t = NULL;
		char err[160] = "";
		struct vm *vm;
		int r;

		setvbuf(stdout, NULL, _IONBF, 0);
		if (drop_bpf_caps())
			_exit(10);
		r = tracker_open(&t, err, sizeof(err));
		if (r == 0) {
			tracker_close(t);
			_exit(11);
		}
		printf("  tracker_open without CAP_BPF: %s\n", err);
		vm = vm_with(POLICY_TRACK_EBPF, UFFD_FEATURE_MINOR_SHMEM);
		track_choose(vm, NULL, err);
		printf("  daemon says: tracker: %s (%s)\n", track_mode_name(vm->track_mode),
		       vm->track_why);
		if (vm->track_mode != POLICY_TRACK_SAMPLE)
			_exit(12);
		if (strncmp(vm->track_why, "ebpf unavailable: ", 18) ||
		    !strstr(vm->track_why, err) || !strstr(vm->track_why, "minor faults") ||
		    !err[0] || strchr(err, '\n'))
			_exit(13);
		free(vm);
		vm = vm_with(POLICY_TRACK_EBPF, 0);
		track_choose(vm, NULL, err);
		printf("  and without minor faults: tracker: %s (%s)\n",
		       track_mode_name(vm->track_mode), vm->track_why);
		if (vm->track_mode != POLICY_TRACK_OFF || !strstr(vm->track_why, "tracker off"))
			_exit(14);
		free(vm);
		_exit(0);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

static void test_ebpf_when_available(void **state)
{
	struct tracker *t = NULL;
	char err[160] = "";
	struct vm *vm;

	assert_int_equal(tracker_open(&t, err, sizeof(err)), 0);
	vm = vm_with(POLICY_TRACK_EBPF, UFFD_FEATURE_MINOR_SHMEM);
	track_choose(vm, t, "");
	assert_int_equal(vm->track_mode, POLICY_TRACK_EBPF);
	assert_ptr_equal(vm->bpf, t);
	free(vm);
	tracker_close(t);
}

static void test_policy_modes(void **state)
{
	struct vm *vm = vm_with(POLICY_TRACK_SAMPLE, UFFD_FEATURE_MINOR_SHMEM);

	track_choose(vm, NULL, "");
	assert_int_equal(vm->track_mode, POLICY_TRACK_SAMPLE);
	free(vm);
	vm = vm_with(POLICY_TRACK_SAMPLE, 0);
	track_choose(vm, NULL, "");
	assert_int_equal(vm->track_mode, POLICY_TRACK_OFF);
	assert_non_null(strstr(vm->track_why, "MINOR_SHMEM"));
	free(vm);
	vm = vm_with(POLICY_TRACK_OFF, UFFD_FEATURE_MINOR_SHMEM);
	track_choose(vm, (struct tracker *)0x1, "");
	assert_int_equal(vm->track_mode, POLICY_TRACK_OFF);
	assert_string_equal(vm->track_why, "off by policy");
	free(vm);
	assert_string_equal(track_mode_name(POLICY_TRACK_EBPF), "ebpf");
	assert_string_equal(track_mode_name(POLICY_TRACK_SAMPLE), "sample");
	assert_string_equal(track_mode_name(POLICY_TRACK_OFF), "off");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_fallback_without_bpf),
	    cmocka_unit_test(test_ebpf_when_available),
	    cmocka_unit_test(test_policy_modes),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
