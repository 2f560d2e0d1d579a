/* fuzz_policy: libFuzzer target for the policy parser (uffd-mgr/policy.c).
 *
 * Feeds arbitrary bytes (cut at the first NUL, as a C string would be) to
 * policy_parse_string() and checks its contract, aborting on a breach: the return is 0 or
 * -EINVAL; an error is one printable line starting with the label; a policy that parses
 * has every field within its key's bounds and a NUL-terminated name. The input also goes
 * to policy_parse_size(), whose result must not depend on anything past the text.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -I. \
 *       tests/fuzz/fuzz_policy.c uffd-mgr/policy.c -linih -o build/fuzz_policy
 *   ./build/fuzz_policy -max_total_time=60 [corpus folder, e.g. seeded with examples/]
 */
#include <ctype.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "uffd-mgr/policy.h"

#define LABEL "fuzz.conf"

static void check(int ok)
{
	if (!ok)
		abort();
}

static void check_error(const char *err)
{
	const char *s;

	check(!strncmp(err, LABEL ":", strlen(LABEL ":")));
	for (s = err; *s; s++)
		check(isprint((unsigned char)*s));
}

static void check_policy(const struct policy *p)
{
	uint64_t run = p->run_size;

	check(memchr(p->name, '\0', sizeof(p->name)) != NULL);
	check(
	    strspn(p->name, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") ==
	    strlen(p->name));
	check(p->resident_max == 0 || p->resident_max >= (1u << 20));
	check(run >= 4096 && run <= (2u << 20) && !(run & (run - 1)));
	check(p->resident_max == 0 || p->resident_max >= run);
	check(p->shm_max >= (1u << 20) && p->shm_max <= (UINT64_C(1) << 40) && p->shm_max >= run);
	check(p->fault_cpu >= POLICY_CPU_FOLLOW && p->fault_cpu <= 4095); /* follow, any, or a CPU */
	check(p->busy_poll_us <= 1000);
	check(p->stall_warn_ms == 0 || (p->stall_warn_ms >= 10 && p->stall_warn_ms <= 3600000));
	check(p->disk_read_retry_ms == 0 ||
	      (p->disk_read_retry_ms >= 100 && p->disk_read_retry_ms <= 3600000));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = malloc(size + 1), err[256];
	struct policy p;
	uint64_t bytes;
	int ret;

	if (!text)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';

	memset(err, 'x', sizeof(err));
	ret = policy_parse_string(text, LABEL, &p, err, sizeof(err));
	check(ret == 0 || ret == -EINVAL);
	check(memchr(err, '\0', sizeof(err)) != NULL);
	if (ret == 0) {
		check(err[0] == '\0');
		check_policy(&p);
	} else {
		check_error(err);
	}

	ret = policy_parse_size(text, &bytes);
	check(ret == 0 || ret == -EINVAL || ret == -ERANGE);
	free(text);
	return 0;
}
