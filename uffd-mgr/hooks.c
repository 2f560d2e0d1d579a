/* hooks: see hooks.h. Everything here exists only in test builds. */
#include "uffd-mgr/hooks.h"

#ifdef UFFD_MGR_TEST_HOOKS

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "uffd-mgr/log.h"

struct hook_cfg {
	uint64_t fail, every; /* ENOMEM: `fail` calls of every `every` fail; every 0 = off */
	bool burst;	      /* the first `fail` of each `every` (else the last one) */
	uint64_t exit_after;  /* faults a fault thread serves before it exits; 0 = off */
	bool exit_always;     /* every fault thread, not only the first */
};

static struct hook_cfg cfg;
static atomic_uint_fast64_t enomem_calls;
static atomic_bool exit_fired;
static atomic_bool unprotect_fail;
static pthread_once_t env_once = PTHREAD_ONCE_INIT;

/* Parses a decimal count of at least 1 ending at one of the bytes of `ends`. */
static int parse_count(const char **s, const char *ends, uint64_t *out)
{
	char *end;
	unsigned long long v = strtoull(*s, &end, 10);

	if (end == *s || v == 0 || !strchr(ends, *end))
		return -EINVAL;
	*out = v;
	*s = end;
	return 0;
}

static int parse_enomem(const char *s, struct hook_cfg *c)
{
	if (!s || !*s)
		return 0;
	if (strncmp(s, "burst:", 6)) {
		c->fail = 1;
		return parse_count(&s, "", &c->every);
	}
	s += 6;
	c->burst = true;
	c->every = 1000;
	if (parse_count(&s, ":", &c->fail))
		return -EINVAL;
	if (*s == ':' && (s++, parse_count(&s, "", &c->every)))
		return -EINVAL;
	return c->fail <= c->every ? 0 : -EINVAL;
}

static int parse_exit(const char *s, struct hook_cfg *c)
{
	if (!s || !*s)
		return 0;
	if (parse_count(&s, ":", &c->exit_after))
		return -EINVAL;
	c->exit_always = !strcmp(s, ":always");
	return *s && !c->exit_always ? -EINVAL : 0;
}

static int apply(const char *enomem, const char *fault_exit)
{
	struct hook_cfg c = {0};

	if (parse_enomem(enomem, &c) || parse_exit(fault_exit, &c))
		return -EINVAL;
	cfg = c;
	atomic_store(&enomem_calls, 0);
	atomic_store(&exit_fired, false);
	return 0;
}

static void read_env(void)
{
	const char *e = getenv("UFFD_MGR_INJECT_ENOMEM"), *x = getenv("UFFD_MGR_INJECT_FAULT_EXIT");

	if (apply(e, x))
		log_warn(NULL,
			 "ignoring bad UFFD_MGR_INJECT_ENOMEM '%s' or "
			 "UFFD_MGR_INJECT_FAULT_EXIT '%s'",
			 e ? e : "", x ? x : "");
	else if ((e && *e) || (x && *x))
		log_warn(NULL,
			 "test hooks on: UFFD_MGR_INJECT_ENOMEM='%s' "
			 "UFFD_MGR_INJECT_FAULT_EXIT='%s'",
			 e ? e : "", x ? x : "");
}

int hooks_set(const char *enomem, const char *fault_exit)
{
	pthread_once(&env_once, read_env); /* so that it cannot override this later */
	return apply(enomem, fault_exit);
}

bool hooks_enomem(void)
{
	uint64_t n;

	pthread_once(&env_once, read_env);
	if (!cfg.every)
		return false;
	n = atomic_fetch_add(&enomem_calls, 1);
	return cfg.burst ? n % cfg.every < cfg.fail : (n + 1) % cfg.every == 0;
}

bool hooks_fault_exit(uint64_t served)
{
	pthread_once(&env_once, read_env);
	if (!cfg.exit_after || served < cfg.exit_after)
		return false;
	return cfg.exit_always || !atomic_exchange(&exit_fired, true);
}

bool hooks_unprotect_fail(void)
{
	return atomic_load(&unprotect_fail);
}

void hooks_set_unprotect_fail(bool on)
{
	atomic_store(&unprotect_fail, on);
}

const char *hooks_disk_injection(void)
{
	return getenv("UFFD_MGR_INJECT_DISK");
}

uint32_t hooks_disk_write_delay_us(void)
{
	const char *s = getenv("UFFD_MGR_INJECT_DISK_WRITE_DELAY_US");
	unsigned long v = s ? strtoul(s, NULL, 10) : 0;

	return v > 1000000 ? 1000000 : (uint32_t)v;
}

static void (*_Atomic evict_copied_fn)(struct vm *vm, size_t first);

void hooks_evict_copied(struct vm *vm, size_t first)
{
	void (*fn)(struct vm *, size_t) = evict_copied_fn;

	if (fn)
		fn(vm, first);
}

void hooks_set_evict_copied(void (*fn)(struct vm *vm, size_t first))
{
	evict_copied_fn = fn;
}

#endif
