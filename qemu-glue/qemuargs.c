/* qemuargs: checks and rewrites a QEMU 7.2 command line. See qemuargs.h.
 *
 * The scan walks the words once, the way QEMU's own lookup_opt() does: a word that does not
 * start with '-' is a disk image, "-opt" and "--opt" are the same option, and an option that
 * takes an argument takes the next word whatever it looks like. Options whose argument
 * matters are split into key/value pairs (QemuOpts/keyval syntax with ",," for a comma, or
 * JSON where QEMU 7.2 accepts it) and kept until the scan ends, so that cross references
 * (-machine memory-backend=ID to -object id=ID, -mon chardev=ID to -chardev id=ID) can be
 * resolved whatever their order on the command line. */
#include "qemu-glue/qemuargs.h"

#include <errno.h>
#include <json-c/json.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#define DEFAULT_RAM_BYTES (UINT64_C(128) << 20) /* pc and q35 without -m */
#define RAM_ALIGN	  8192			/* QEMU rounds -m up to this */
#define MIB		  (UINT64_C(1) << 20)

enum opt_id {
	O_OTHER,
	O_DAEMONIZE,
	O_CHARDEV,
	O_BLOCKDEV,
	O_DEVICE,
	O_DRIVE,
	O_INCOMING,
	O_MACHINE,
	O_MEM,
	O_MEM_PATH,
	O_MEM_PREALLOC,
	O_MON,
	O_NAME,
	O_NET,
	O_NUMA,
	O_OBJECT,
	O_OVERCOMMIT,
	O_QMP,
	O_READCONFIG,
	O_SET,
};

struct qopt {
	const char *name;
	bool arg; /* takes an argument */
	enum opt_id id;
};

/* QEMU 7.2's options in qemu-system-x86_64: every name in `qemu-system-x86_64 -help`, plus
 * the undocumented -M, -qtest and -qtest-log. Probed against the installed binary: each "A"
 * option answers "-x: requires an argument" when given none, each "N" option lets the next
 * word be parsed as an option. Options of other targets (-g, -prom-env, -semihosting...)
 * are refused by QEMU x86_64 and so are unknown here. */
#define A(n, id)                                                                                   \
	{                                                                                          \
		n, true, id                                                                        \
	}
#define N(n, id)                                                                                   \
	{                                                                                          \
		n, false, id                                                                       \
	}
static const struct qopt qemu_opts[] = {
    A("accel", O_OTHER),
    A("acpitable", O_OTHER),
    A("action", O_OTHER),
    A("add-fd", O_OTHER),
    A("append", O_OTHER),
    N("async-teardown", O_OTHER),
    A("audio", O_OTHER),
    N("audio-help", O_OTHER),
    A("audiodev", O_OTHER),
    A("bios", O_OTHER),
    A("blockdev", O_BLOCKDEV),
    A("boot", O_OTHER),
    A("cdrom", O_OTHER),
    A("chardev", O_CHARDEV),
    A("chroot", O_OTHER),
    A("compat", O_OTHER),
    A("cpu", O_OTHER),
    A("d", O_OTHER),
    A("D", O_OTHER),
    N("daemonize", O_DAEMONIZE),
    A("debugcon", O_OTHER),
    A("device", O_DEVICE),
    A("dfilter", O_OTHER),
    A("display", O_OTHER),
    A("drive", O_DRIVE),
    A("dtb", O_OTHER),
    A("dump-vmstate", O_OTHER),
    A("echr", O_OTHER),
    N("enable-kvm", O_OTHER),
    N("enable-sync-profile", O_OTHER),
    A("fda", O_OTHER),
    A("fdb", O_OTHER),
    A("fsdev", O_OTHER),
    N("full-screen", O_OTHER),
    A("fw_cfg", O_OTHER),
    A("gdb", O_OTHER),
    A("global", O_OTHER),
    N("h", O_OTHER),
    A("hda", O_OTHER),
    A("hdb", O_OTHER),
    A("hdc", O_OTHER),
    A("hdd", O_OTHER),
    N("help", O_OTHER),
    A("icount", O_OTHER),
    A("incoming", O_INCOMING),
    A("initrd", O_OTHER),
    A("iscsi", O_OTHER),
    A("k", O_OTHER),
    A("kernel", O_OTHER),
    A("L", O_OTHER),
    A("loadvm", O_OTHER),
    A("m", O_MEM),
    A("M", O_MACHINE),
    A("machine", O_MACHINE),
    A("mem-path", O_MEM_PATH),
    N("mem-prealloc", O_MEM_PREALLOC),
    A("mon", O_MON),
    A("monitor", O_OTHER),
    A("msg", O_OTHER),
    A("mtdblock", O_OTHER),
    A("name", O_NAME),
    A("net", O_NET),
    A("netdev", O_NET),
    A("nic", O_NET),
    N("no-acpi", O_OTHER),
    N("no-fd-bootchk", O_OTHER),
    N("no-hpet", O_OTHER),
    N("no-reboot", O_OTHER),
    N("no-shutdown", O_OTHER),
    N("no-user-config", O_OTHER),
    N("nodefaults", O_OTHER),
    N("nographic", O_OTHER),
    A("numa", O_NUMA),
    A("object", O_OBJECT),
    N("only-migratable", O_OTHER),
    A("option-rom", O_OTHER),
    A("overcommit", O_OVERCOMMIT),
    A("parallel", O_OTHER),
    A("pflash", O_OTHER),
    A("pidfile", O_OTHER),
    A("plugin", O_OTHER),
    N("portrait", O_OTHER),
    N("preconfig", O_OTHER),
    A("qmp", O_QMP),
    A("qmp-pretty", O_QMP),
    A("qtest", O_OTHER),
    A("qtest-log", O_OTHER),
    A("readconfig", O_READCONFIG),
    A("rotate", O_OTHER),
    A("rtc", O_OTHER),
    A("runas", O_OTHER),
    N("s", O_OTHER),
    N("S", O_OTHER),
    A("sandbox", O_OTHER),
    A("sd", O_OTHER),
    A("seed", O_OTHER),
    A("serial", O_OTHER),
    A("set", O_SET),
    N("singlestep", O_OTHER),
    A("smbios", O_OTHER),
    A("smp", O_OTHER),
    N("snapshot", O_OTHER),
    A("spice", O_OTHER),
    A("tpmdev", O_OTHER),
    A("trace", O_OTHER),
    N("usb", O_OTHER),
    A("usbdevice", O_OTHER),
    A("uuid", O_OTHER),
    N("version", O_OTHER),
    A("vga", O_OTHER),
    A("virtfs", O_OTHER),
    A("vnc", O_OTHER),
    A("watchdog-action", O_OTHER),
    N("win2k-hack", O_OTHER),
    N("xen-attach", O_OTHER),
    A("xen-domid", O_OTHER),
    N("xen-domid-restrict", O_OTHER),
};
#undef A
#undef N

/* One "key=value" of an option argument; val is NULL for a bare word ("server"). */
struct kv {
	char *key;
	char *val;
};

struct kvlist {
	struct kv *v;
	int n;
};

struct memobj { /* an -object; the memory fields only for memory-backend-memfd */
	const char *type;
	const char *id;
	const char *size;
	int share; /* 1, 0, or -1 when not given (memfd's default is on) */
};

struct chardev {
	const char *id;
	const char *backend;
	const char *path;
	int server;
	int abstract;
};

/* Everything the scan gathers. Strings point into the kvlists, freed together at the end. */
struct scan {
	char *err;
	size_t errlen;
	struct kvlist *lists;
	int nlists;
	struct memobj *objs;
	int nobjs;
	struct chardev *chrs;
	int nchrs;
	const char **qmps; /* -qmp/-qmp-pretty arguments, as given */
	int nqmps;
	const char **mons; /* chardev ids of -mon ...,mode=control */
	int nmons;
	const char *mem_size; /* the last -m size */
	const char *machine_type;
	const char *machine_ram; /* -machine memory-backend= */
	const char *name;
	bool balloon;
	const char *balloon_id;
	const char **numa_memdevs; /* -numa node,memdev= ids */
	int nnuma;
	int word;	     /* index of the argument being scanned */
	const struct qemuargs_known *known; /* the installed QEMU's options, or NULL */
	struct qopt learned;		    /* what lookup_opt found in known */
	struct qemuargs *qa; /* where rewrites of the user's words go */
};

static int fail(struct scan *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int fail(struct scan *s, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(s->err, s->errlen, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

/* Grows *arr (of *n elements of size sz) by one zeroed element. Returns it, or NULL. */
static void *grow(void *arr, int *n, size_t sz)
{
	char *p = realloc(*(void **)arr, (size_t)(*n + 1) * sz);

	if (!p)
		return NULL;
	*(void **)arr = p;
	memset(p + (size_t)*n * sz, 0, sz);
	return p + (size_t)(*n)++ * sz;
}

/* An option of ours (checked, maybe rewritten), else one the installed QEMU lists in its
 * -help (passed as it is: a QEMU newer than 7.2 has options we have never seen), else NULL. */
static const struct qopt *lookup_opt(struct scan *s, const char *word)
{
	const char *name = word + 1;

	if (*name == '-')
		name++;
	for (size_t i = 0; i < sizeof(qemu_opts) / sizeof(qemu_opts[0]); i++)
		if (!strcmp(qemu_opts[i].name, name))
			return &qemu_opts[i];
	for (int i = 0; s->known && i < s->known->n; i++)
		if (!strcmp(s->known->opt[i].name, name)) {
			s->learned = (struct qopt){s->known->opt[i].name, s->known->opt[i].arg,
						   O_OTHER};
			return &s->learned;
		}
	return NULL;
}

int qemuargs_learn(const char *help, struct qemuargs_known *k)
{
	memset(k, 0, sizeof(*k));
	for (const char *line = help; line && *line; line = strchr(line, '\n'), line += !!line) {
		size_t len = strcspn(line, " \n");
		/* "-opt arg   what": one space before an argument; "-opt     what": none. */
		bool arg = line[len] == ' ' && line[len + 1] != ' ' && line[len + 1] != '\n' &&
			   line[len + 1] && strncmp(line + len, " or ", 4);

		if (line[0] != '-' || len < 2)
			continue;
		for (const char *n = line; n < line + len;) { /* "-fda/-fdb" */
			size_t nl = strcspn(n, "/ \n");
			struct qemuargs_known_opt *o;

			if (n[0] == '-' && nl > 1 && nl < sizeof(o->name) &&
			    (o = grow(&k->opt, &k->n, sizeof(*o)))) {
				snprintf(o->name, sizeof(o->name), "%.*s", (int)(nl - 1), n + 1);
				o->arg = arg;
			} else if (n[0] == '-' && nl > 1 && nl < sizeof(o->name)) {
				qemuargs_known_free(k);
				return -ENOMEM;
			}
			n += nl + (n[nl] == '/');
		}
	}
	return k->n ? 0 : -ENOENT;
}

void qemuargs_known_free(struct qemuargs_known *k)
{
	free(k->opt);
	memset(k, 0, sizeof(*k));
}

/* ---- Option arguments: QemuOpts/keyval text or JSON, into a kvlist ---- */

static void kvlist_free(struct kvlist *l)
{
	for (int i = 0; i < l->n; i++) {
		free(l->v[i].key);
		free(l->v[i].val);
	}
	free(l->v);
	l->v = NULL;
	l->n = 0;
}

static int kv_add(struct kvlist *l, char *key, char *val)
{
	struct kv *kv = grow(&l->v, &l->n, sizeof(*kv));

	if (!kv || !key) {
		free(key);
		free(val);
		return -ENOMEM;
	}
	kv->key = key;
	kv->val = val;
	return 0;
}

/* Copies a value from *p up to a single ',' (",," is a literal comma) and moves *p past it. */
static char *read_value(const char **p)
{
	const char *s = *p;
	char *out = malloc(strlen(s) + 1), *o = out;

	if (!out)
		return NULL;
	while (*s) {
		if (*s == ',' && s[1] != ',')
			break;
		if (*s == ',')
			s++;
		*o++ = *s++;
	}
	*o = '\0';
	*p = *s ? s + 1 : s;
	return out;
}

/* Splits "implied-value,key=value,flag,..." the way QemuOpts and keyval do. */
static int parse_keyval(struct kvlist *l, const char *text, const char *implied)
{
	const char *p = text;
	int ret = 0;

	for (bool first = true; *p && !ret; first = false) {
		size_t len = strcspn(p, "=,");
		char *key, *val;

		if (p[len] == '=') {
			key = strndup(p, len);
			p += len + 1;
			val = read_value(&p);
			if (!val) {
				free(key);
				return -ENOMEM;
			}
		} else {
			val = read_value(&p);
			key = first && implied ? strdup(implied) : val;
			if (key == val)
				val = NULL;
		}
		ret = kv_add(l, key, val);
	}
	return ret;
}

static char *json_value_text(struct json_object *v)
{
	switch (json_object_get_type(v)) {
	case json_type_boolean:
		return strdup(json_object_get_boolean(v) ? "on" : "off");
	case json_type_string:
		return strdup(json_object_get_string(v));
	default:
		return strdup(json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN));
	}
}

/* Parses text as exactly one JSON value. Returns it, or NULL with *why saying what is wrong. */
static struct json_object *json_parse_all(const char *text, const char **why)
{
	struct json_tokener *tok = json_tokener_new();
	struct json_object *obj = NULL;
	size_t len = strlen(text), end;

	*why = "out of memory";
	if (!tok)
		return NULL;
	obj = json_tokener_parse_ex(tok, text, (int)len);
	if (json_tokener_get_error(tok) == json_tokener_continue)
		*why = "unexpected end of data";
	else if (!obj)
		*why = json_tokener_error_desc(json_tokener_get_error(tok));
	end = json_tokener_get_parse_end(tok);
	if (obj && text[end + strspn(text + end, " \t\r\n")]) {
		*why = "text after the JSON value";
		json_object_put(obj);
		obj = NULL;
	}
	json_tokener_free(tok);
	return obj;
}

/* Adds the members of a JSON object, nested objects flattened to dotted keys the way keyval
 * spells them ({"file": {"aio": "native"}} gives file.aio=native). */
static int add_json_members(struct kvlist *l, const char *prefix, struct json_object *obj)
{
	json_object_object_foreach(obj, key, val)
	{
		bool nested = json_object_is_type(val, json_type_object);
		char *name;
		int ret;

		if (asprintf(&name, "%s%s%s", prefix, key, nested ? "." : "") < 0)
			return -ENOMEM;
		if (nested) {
			ret = add_json_members(l, name, val);
			free(name);
		} else {
			ret = kv_add(l, name, json_value_text(val));
		}
		if (ret)
			return ret;
	}
	return 0;
}

/* Takes the members of a JSON object ({"qom-type": ..., "size": 1073741824}). */
static int parse_json(struct scan *s, struct kvlist *l, const char *opt, const char *text)
{
	const char *why;
	struct json_object *obj = json_parse_all(text, &why);
	int ret;

	if (!obj || !json_object_is_type(obj, json_type_object))
		ret = fail(s, "-%s: invalid JSON: %s", opt, obj ? "not an object" : why);
	else
		ret = add_json_members(l, "", obj);
	json_object_put(obj);
	return ret;
}

/* Parses an option argument into a new list kept in s. Returns it, or NULL with *ret set. */
static struct kvlist *parse_arg(struct scan *s, const char *opt, const char *text,
				const char *implied, bool json, int *ret)
{
	struct kvlist *l = grow(&s->lists, &s->nlists, sizeof(*l));

	if (!l) {
		*ret = -ENOMEM;
		return NULL;
	}
	if (json && text[0] == '{') /* as QEMU tells JSON from key=value */
		*ret = parse_json(s, l, opt, text);
	else
		*ret = parse_keyval(l, text, implied);
	return *ret ? NULL : l;
}

/* The last value of key; a bare "key" reads as "on" and a bare "nokey" as "off". */
static const char *kv_get(const struct kvlist *l, const char *key)
{
	const char *found = NULL;

	for (int i = 0; i < l->n; i++) {
		const struct kv *kv = &l->v[i];

		if (kv->val && !strcmp(kv->key, key))
			found = kv->val;
		else if (!kv->val && !strcmp(kv->key, key))
			found = "on";
		else if (!kv->val && !strncmp(kv->key, "no", 2) && !strcmp(kv->key + 2, key))
			found = "off";
	}
	return found;
}

/* Reads a boolean as QEMU does: 1, 0, -1 for NULL, -2 when it is not a boolean. */
static int text_bool(const char *v)
{
	static const char *const yes[] = {"on", "yes", "true", "y"};
	static const char *const no[] = {"off", "no", "false", "n"};

	if (!v)
		return -1;
	for (int i = 0; i < 4; i++) {
		if (!strcmp(v, yes[i]))
			return 1;
		if (!strcmp(v, no[i]))
			return 0;
	}
	return -2;
}

/* Reads a boolean property: 1, 0, -1 when absent, -2 when it is not a boolean. */
static int kv_bool(const struct kvlist *l, const char *key)
{
	return text_bool(kv_get(l, key));
}

static bool prefixed(const char *s, const char *prefix)
{
	return s && !strncmp(s, prefix, strlen(prefix));
}

static bool same(const char *a, const char *b)
{
	return a && b && !strcmp(a, b);
}

/* ---- Sizes ---- */

static uint64_t suffix_mul(char c)
{
	static const char suffixes[] = "BKMGTPE";
	const char *p = c ? strchr(suffixes, c & ~0x20) : NULL;

	return p ? UINT64_C(1) << (10 * (p - suffixes)) : 0;
}

/* Follows QEMU's qemu_strtosz(): decimal with an optional fraction, or hex without one. */
int qemuargs_parse_size(const char *text, uint64_t def_unit, uint64_t *bytes)
{
	const char *p = text;
	char *end;
	double frac = 0;
	uint64_t val, mul;
	int base = 10;

	if (strchr(text, '-'))
		return -EINVAL;
	if (text[0] == '0' && (text[1] == 'x' || text[1] == 'X'))
		base = 16;
	errno = 0;
	val = strtoull(p, &end, base);
	if (errno || end == p)
		return errno == ERANGE ? -ERANGE : -EINVAL;
	if (*end == '.' && base == 10) {
		p = end;
		frac = strtod(p, &end);
		if (end == p || memchr(p, 'e', end - p) || memchr(p, 'E', end - p))
			return -EINVAL;
	}
	mul = suffix_mul(*end);
	if (mul)
		end++;
	else
		mul = def_unit;
	if (*end || (mul == 1 && frac != 0))
		return -EINVAL;
	if (val > (UINT64_MAX - 1023) / mul)
		return -ERANGE;
	*bytes = val * mul + (uint64_t)(frac * (double)mul);
	return 0;
}

/* Writes bytes as QEMU reads it back, in the largest unit that divides it exactly. */
static void format_size(char *buf, size_t len, uint64_t bytes)
{
	static const char units[] = "KMGT";
	int u = -1;

	while (u < 3 && bytes && !(bytes % (UINT64_C(1) << (10 * (u + 2)))))
		u++;
	if (u < 0)
		snprintf(buf, len, "%llu", (unsigned long long)bytes);
	else
		snprintf(buf, len, "%llu%c", (unsigned long long)(bytes >> (10 * (u + 1))),
			 units[u]);
}

/* ---- One handler per option that matters; each returns 0 or -errno ---- */

static int on_mem(struct scan *s, const char *arg)
{
	int ret;
	struct kvlist *l = parse_arg(s, "m", arg, "size", false, &ret);

	if (!l)
		return ret;
	if (kv_get(l, "slots") || kv_get(l, "maxmem"))
		return fail(s,
			    "-m %s: memory hotplug (slots=, maxmem=) is not supported: "
			    "hot-plugged memory would be guest RAM outside the managed memfd",
			    arg);
	if (kv_get(l, "size"))
		s->mem_size = kv_get(l, "size");
	return 0;
}

static int on_machine(struct scan *s, const char *arg)
{
	int ret;
	struct kvlist *l = parse_arg(s, "machine", arg, "type", false, &ret);

	if (!l)
		return ret;
	if (kv_get(l, "type"))
		s->machine_type = kv_get(l, "type");
	if (kv_get(l, "memory-backend"))
		s->machine_ram = kv_get(l, "memory-backend");
	return 0;
}

static int check_memfd(struct scan *s, struct kvlist *l, struct memobj *o)
{
	const char *id = o->id ? o->id : "";

	o->share = kv_bool(l, "share");
	if (o->share == -2)
		return fail(s, "-object memory-backend-memfd,id=%s: share=%s is not on or off", id,
			    kv_get(l, "share"));
	if (kv_bool(l, "hugetlb") == 1)
		return fail(s,
			    "-object memory-backend-memfd,id=%s: hugetlb=on is not supported: "
			    "uffd-mgr pages guest RAM in 4 KiB pages",
			    id);
	if (kv_bool(l, "prealloc") == 1)
		return fail(s,
			    "-object memory-backend-memfd,id=%s: prealloc=on is not supported: "
			    "it would fault in all guest RAM at start, leaving nothing to page "
			    "on demand",
			    id);
	o->size = kv_get(l, "size");
	return 0;
}

/* libvirt gives a domain without <memoryBacking> a private memory-backend-ram, which the
 * daemon cannot map: it becomes a shared memfd backend of the same id, size and other
 * properties (the guest sees the same RAM). The word is replaced at build time. */
static int ram_to_memfd(struct scan *s, const char *arg, struct kvlist *l, struct memobj *o)
{
	struct qemuargs_rewrite *rw;
	char *word = NULL;

	if (kv_get(l, "share"))
		return fail(s, "-object memory-backend-ram,id=%s: share= is not supported: "
			       "uffd-qemu makes it a shared memfd backend",
			       o->id ? o->id : "");
	if (arg[0] == '{') {
		struct json_object *j = json_tokener_parse(arg);

		if (!j)
			return -ENOMEM;
		json_object_object_add(j, "qom-type", json_object_new_string("memory-backend-memfd"));
		json_object_object_add(j, "share", json_object_new_boolean(1));
		word = strdup(json_object_to_json_string_ext(j, JSON_C_TO_STRING_PLAIN));
		json_object_put(j);
	} else {
		const char *t = strstr(arg, "memory-backend-ram");

		if (asprintf(&word, "%.*smemory-backend-memfd%s,share=on", (int)(t - arg), arg,
			     t + strlen("memory-backend-ram")) < 0)
			word = NULL;
	}
	rw = word ? grow(&s->qa->rewrites, &s->qa->nrewrites, sizeof(*rw)) : NULL;
	if (!rw) {
		free(word);
		return -ENOMEM;
	}
	*rw = (struct qemuargs_rewrite){.word = s->word, .text = word};
	s->qa->ram_converted = true;
	o->type = "memory-backend-memfd";
	o->share = 1;
	o->size = kv_get(l, "size");
	return check_memfd(s, l, o);
}

static int on_object(struct scan *s, const char *arg)
{
	int ret;
	struct kvlist *l = parse_arg(s, "object", arg, "qom-type", true, &ret);
	struct memobj *o;

	if (!l)
		return ret;
	o = grow(&s->objs, &s->nobjs, sizeof(*o));
	if (!o)
		return -ENOMEM;
	o->type = kv_get(l, "qom-type");
	o->id = kv_get(l, "id");
	if (same(o->type, "memory-backend-file"))
		return fail(s, "-object memory-backend-file is not supported: guest RAM must be a "
			       "shared memfd, not a file (use memory-backend-memfd,share=on)");
	if (same(o->type, "memory-backend-ram"))
		return ram_to_memfd(s, arg, l, o);
	if (same(o->type, "memory-backend-memfd"))
		return check_memfd(s, l, o);
	return 0;
}

static int on_numa(struct scan *s, const char *arg)
{
	int ret;
	struct kvlist *l = parse_arg(s, "numa", arg, "type", false, &ret);

	if (!l)
		return ret;
	if (same(kv_get(l, "type"), "node") && kv_get(l, "memdev")) {
		const char **m = grow(&s->numa_memdevs, &s->nnuma, sizeof(*m));

		if (!m)
			return -ENOMEM;
		*m = kv_get(l, "memdev");
	}
	return 0;
}

/* Devices whose backend writes guest RAM other than through QEMU's registered mapping: by DMA
 * into pages it pinned, or through a mapping of its own. Such a write can land in a page
 * being evicted after it was copied out, or in one already punched, and be lost. Kernel
 * vhost (vhost-net, vhost-vsock) is not here: its worker copies with copy_to_user on QEMU's
 * own mm, so it faults through the userfaultfd like a vCPU (see README, "Devices and guest
 * RAM"). */
static const struct refused_dev {
	const char *prefix; /* of the -device driver name */
	const char *why;
} refused_devs[] = {
    {"vhost-user", "a vhost-user backend writes guest RAM outside QEMU's registered mapping"},
    {"vhost-vdpa", "a vDPA device writes guest RAM by DMA outside QEMU's registered mapping"},
    {"vhost-scsi",
     "the kernel's vhost-scsi pins guest RAM for its SCSI target, which writes it by DMA "
     "outside QEMU's registered mapping; use virtio-scsi-pci with scsi-hd"},
    {"vfio", "device assignment pins guest RAM and writes it by DMA outside QEMU's registered "
	     "mapping"},
    {"scsi-block", "its SG_IO requests pin guest RAM and the host disk writes it by DMA outside "
		   "QEMU's registered mapping; use scsi-hd"},
    {"pvrdma", "it registers guest RAM with the host's RDMA device, which writes it by DMA "
	       "outside QEMU's registered mapping"},
    {"x-pci-proxy-dev", "the remote device process writes guest RAM through its own mapping, "
			"outside QEMU's registered one"},
};

static int on_device(struct scan *s, const char *arg)
{
	int ret;
	struct kvlist *l = parse_arg(s, "device", arg, "driver", true, &ret);
	const char *drv;

	if (!l)
		return ret;
	drv = kv_get(l, "driver");
	for (size_t i = 0; i < sizeof(refused_devs) / sizeof(refused_devs[0]); i++)
		if (prefixed(drv, refused_devs[i].prefix))
			return fail(s, "-device %s is not supported: %s", drv, refused_devs[i].why);
	if (prefixed(drv, "virtio-balloon")) {
		s->balloon = true;
		s->balloon_id = kv_get(l, "id");
	}
	return 0;
}

/* ---- Disks: O_DIRECT and drivers that hand guest RAM to a device ----
 *
 * With O_DIRECT the kernel pins the guest pages of a read and the disk writes them by DMA,
 * behind the page tables, so write protection does not stop it. An eviction that copies and
 * punches such a page while the read is in flight keeps the stale copy, and the guest later
 * reads that instead of the data. QEMU's default, cache=writeback, reads through the page
 * cache: the kernel's copy into guest RAM faults through the userfaultfd like a vCPU. */

#define DIRECT_WHY                                                                                 \
	"O_DIRECT reads land in guest RAM by DMA behind the page tables, so an eviction racing "   \
	"one could lose the data"

/* Whether key is name, or a child node's name: "file.aio" and "file.cache.direct" are the
 * protocol node's aio and cache.direct under a format node. */
static bool key_is(const char *key, const char *name)
{
	size_t k = strlen(key), n = strlen(name);

	return k >= n && !strcmp(key + k - n, name) && (k == n || key[k - n - 1] == '.');
}

/* -drive's cache= shorthand; an explicit cache.direct= takes precedence, as in QEMU. */
static int check_cache_mode(struct scan *s, const char *opt, const char *arg,
			    const struct kvlist *l)
{
	const char *mode = kv_get(l, "cache");

	if (kv_get(l, "cache.direct") ||
	    !(same(mode, "none") || same(mode, "off") || same(mode, "directsync")))
		return 0;
	return fail(s,
		    "-%s %s: cache=%s means O_DIRECT, and " DIRECT_WHY
		    "; use cache=writeback (the default) or cache=writethrough",
		    opt, arg, mode);
}

/* Checks the options of one block node and its children (-drive, -blockdev, -set drive.). */
static int check_disk(struct scan *s, const char *opt, const char *arg, const struct kvlist *l)
{
	for (int i = 0; i < l->n; i++) {
		const char *key = l->v[i].key, *val = kv_get(l, key);

		if (key_is(key, "cache.direct") && text_bool(val) == 1)
			return fail(s,
				    "-%s %s: %s=%s means O_DIRECT, and " DIRECT_WHY
				    "; use cache.direct=off (the default)",
				    opt, arg, key, val);
		if (key_is(key, "aio") && same(val, "native"))
			return fail(s,
				    "-%s %s: %s=native needs O_DIRECT, and " DIRECT_WHY
				    "; use aio=threads (the default) or aio=io_uring",
				    opt, arg, key);
		if ((key_is(key, "driver") && same(val, "nvme")) ||
		    ((key_is(key, "file") || key_is(key, "filename")) && prefixed(val, "nvme:")))
			return fail(
			    s,
			    "-%s %s: QEMU's userspace nvme driver maps all guest RAM for the "
			    "device's DMA, behind the page tables; use the host's nvme block "
			    "device (/dev/nvmeXnY)",
			    opt, arg);
	}
	return check_cache_mode(s, opt, arg, l);
}

static int on_drive(struct scan *s, const char *arg)
{
	int ret;
	struct kvlist *l = parse_arg(s, "drive", arg, NULL, false, &ret);
	const char *file;

	if (!l)
		return ret;
	file = kv_get(l, "file");
	/* "file=json:{...}" gives the node's options in JSON, as QEMU's json: pseudo-protocol. */
	if (prefixed(file, "json:")) {
		ret = parse_json(s, l, "drive", file + strlen("json:"));
		if (ret)
			return ret;
	}
	return check_disk(s, "drive", arg, l);
}

static int on_blockdev(struct scan *s, const char *arg)
{
	int ret;
	struct kvlist *l = parse_arg(s, "blockdev", arg, NULL, true, &ret);

	return l ? check_disk(s, "blockdev", arg, l) : ret;
}

/* -set drive.ID.KEY=VALUE changes a -drive's options; VALUE is taken whole (no comma rules). */
static int on_set(struct scan *s, const char *arg)
{
	const char *key = prefixed(arg, "drive.") ? strchr(arg + strlen("drive."), '.') : NULL;
	const char *eq = key ? strchr(key, '=') : NULL;
	struct kvlist *l;
	char *val;
	int ret;

	if (!eq)
		return 0; /* not a drive's, or malformed: QEMU says so */
	l = grow(&s->lists, &s->nlists, sizeof(*l));
	val = strdup(eq + 1);
	if (!l || !val) {
		free(val);
		return -ENOMEM;
	}
	ret = kv_add(l, strndup(key + 1, (size_t)(eq - key - 1)), val);
	return ret ? ret : check_disk(s, "set", arg, l);
}

/* -netdev, -nic and -net: the backend type comes first. */
static int on_net(struct scan *s, const char *opt, const char *arg)
{
	int ret;
	struct kvlist *l = parse_arg(s, opt, arg, "type", true, &ret);
	const char *type;

	if (!l)
		return ret;
	type = kv_get(l, "type");
	if (same(type, "vhost-user"))
		return fail(s,
			    "-%s vhost-user is not supported: a vhost-user backend writes guest "
			    "RAM outside QEMU's registered mapping",
			    opt);
	if (same(type, "vhost-vdpa"))
		return fail(s,
			    "-%s vhost-vdpa is not supported: a vDPA device writes guest RAM by "
			    "DMA outside QEMU's registered mapping",
			    opt);
	return 0;
}

static int on_chardev(struct scan *s, const char *arg)
{
	int ret;
	struct kvlist *l = parse_arg(s, "chardev", arg, "backend", false, &ret);
	struct chardev *c;

	if (!l)
		return ret;
	c = grow(&s->chrs, &s->nchrs, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->id = kv_get(l, "id");
	c->backend = kv_get(l, "backend");
	c->path = kv_get(l, "path");
	c->server = kv_bool(l, "server");
	c->abstract = kv_bool(l, "abstract");
	return 0;
}

static int on_mon(struct scan *s, const char *arg)
{
	int ret;
	struct kvlist *l = parse_arg(s, "mon", arg, "chardev", false, &ret);
	const char **m;

	if (!l)
		return ret;
	if (!same(kv_get(l, "mode"), "control") || !kv_get(l, "chardev"))
		return 0;
	m = grow(&s->mons, &s->nmons, sizeof(*m));
	if (!m)
		return -ENOMEM;
	*m = kv_get(l, "chardev");
	return 0;
}

static int on_qmp(struct scan *s, const char *arg)
{
	const char **q = grow(&s->qmps, &s->nqmps, sizeof(*q));

	if (!q)
		return -ENOMEM;
	*q = arg;
	return 0;
}

static int on_name(struct scan *s, const char *arg)
{
	int ret;
	struct kvlist *l = parse_arg(s, "name", arg, "guest", false, &ret);

	if (!l)
		return ret;
	if (kv_get(l, "guest"))
		s->name = kv_get(l, "guest");
	return 0;
}

static int on_overcommit(struct scan *s, const char *arg)
{
	int ret;
	struct kvlist *l = parse_arg(s, "overcommit", arg, NULL, false, &ret);

	if (!l)
		return ret;
	if (kv_bool(l, "mem-lock") == 1)
		return fail(s,
			    "-overcommit mem-lock=on is not supported: it locks all guest RAM in "
			    "host memory, so no page could ever be evicted");
	return 0;
}

static int on_option(struct scan *s, const struct qopt *o, const char *arg)
{
	switch (o->id) {
	case O_MEM:
		return on_mem(s, arg);
	case O_MACHINE:
		return on_machine(s, arg);
	case O_OBJECT:
		return on_object(s, arg);
	case O_NUMA:
		return on_numa(s, arg);
	case O_DEVICE:
		return on_device(s, arg);
	case O_DRIVE:
		return on_drive(s, arg);
	case O_BLOCKDEV:
		return on_blockdev(s, arg);
	case O_SET:
		return on_set(s, arg);
	case O_NET:
		return on_net(s, o->name, arg);
	case O_CHARDEV:
		return on_chardev(s, arg);
	case O_MON:
		return on_mon(s, arg);
	case O_QMP:
		return on_qmp(s, arg);
	case O_NAME:
		return on_name(s, arg);
	case O_OVERCOMMIT:
		return on_overcommit(s, arg);
	case O_MEM_PATH:
		return fail(s,
			    "-mem-path is not supported: it backs guest RAM with a file; uffd-mgr "
			    "needs a shared memfd (uffd-qemu adds one)");
	case O_MEM_PREALLOC:
		return fail(s, "-mem-prealloc is not supported: it would fault in all guest RAM at "
			       "start, leaving nothing for uffd-mgrd to page on demand");
	case O_INCOMING:
		return fail(s, "-incoming is not supported: incoming (post-copy) migration "
			       "registers guest RAM with userfaultfd itself");
	case O_DAEMONIZE:
		return fail(s, "-daemonize is not supported: uffd-qemu must stay the QEMU process "
			       "(the shim and uffd-mgrd follow that process)");
	case O_READCONFIG:
		return fail(s, "-readconfig is not supported: uffd-qemu cannot check the guest RAM "
			       "set-up inside a config file; give those options on the command "
			       "line");
	default:
		return 0;
	}
}

static int scan_words(struct scan *s, int argc, char *const argv[])
{
	for (int i = 0; i < argc; i++) {
		const struct qopt *o;
		int ret;

		if (argv[i][0] != '-')
			continue; /* a disk image, as QEMU reads a bare word */
		o = lookup_opt(s, argv[i]);
		if (!o)
			return fail(s, "unknown QEMU option '%s'%s", argv[i],
				    s->known ? " (the installed QEMU's -help does not list it)" : "");
		if (!o->arg)
			ret = on_option(s, o, NULL);
		else if (i + 1 >= argc)
			return fail(s, "QEMU option '%s' needs an argument", argv[i]);
		else {
			s->word = ++i;
			ret = on_option(s, o, argv[i]);
		}
		if (ret)
			return ret;
	}
	return 0;
}

/* ---- After the scan: resolve cross references ---- */

static const struct memobj *find_obj(const struct scan *s, const char *id)
{
	for (int i = s->nobjs - 1; i >= 0; i--)
		if (same(s->objs[i].id, id))
			return &s->objs[i];
	return NULL;
}

static const struct chardev *find_chardev(const struct scan *s, const char *id)
{
	for (int i = s->nchrs - 1; i >= 0; i--)
		if (same(s->chrs[i].id, id))
			return &s->chrs[i];
	return NULL;
}

/* The -m size in bytes as QEMU sets it (0 means the default), or 0 when there is no -m. */
static int mem_bytes(struct scan *s, uint64_t *bytes)
{
	*bytes = 0;
	if (!s->mem_size)
		return 0;
	if (qemuargs_parse_size(s->mem_size, MIB, bytes) || *bytes > UINT64_MAX - RAM_ALIGN)
		return fail(s, "-m: invalid size '%s'", s->mem_size);
	if (*bytes == 0)
		*bytes = DEFAULT_RAM_BYTES;
	*bytes = (*bytes + RAM_ALIGN - 1) / RAM_ALIGN * RAM_ALIGN;
	return 0;
}

/* A backend of guest RAM that the user named (opt says where: "-machine memory-backend" or
 * "-numa node,memdev"): a shared memfd backend with a size. */
static int check_backend(struct scan *s, const char *opt, const char *id, uint64_t *size)
{
	const struct memobj *o = find_obj(s, id);

	if (!o)
		return fail(s, "%s=%s: there is no -object with id=%s", opt, id, id);
	if (!same(o->type, "memory-backend-memfd"))
		return fail(s,
			    "%s=%s: '%s' is a %s; guest RAM must be a "
			    "memory-backend-memfd with share=on",
			    opt, id, id, o->type ? o->type : "(no type)");
	if (o->share == 0)
		return fail(s,
			    "-object memory-backend-memfd,id=%s has share=off: uffd-mgr needs "
			    "share=on, so that uffd-mgrd maps the same memory as QEMU",
			    id);
	if (!o->size || qemuargs_parse_size(o->size, 1, size) || !*size)
		return fail(s, "-object memory-backend-memfd,id=%s: needs a valid size=", id);
	return 0;
}

/* A NUMA guest: each node's memdev is a backend of its own, registered on its own by the
 * shim, which learns them (in the order QEMU creates them: the -object order) from
 * qa->backends. -m must be their sum. */
static int check_numa_ram(struct scan *s, struct qemuargs *qa, uint64_t m)
{
	uint64_t total = 0;
	char *list = NULL;

	for (int i = 0; i < s->nobjs; i++) {
		bool used = false;
		uint64_t size;
		char *more;
		int ret;

		for (int k = 0; k < s->nnuma; k++)
			used |= same(s->numa_memdevs[k], s->objs[i].id);
		if (!used)
			continue;
		ret = check_backend(s, "-numa node,memdev", s->objs[i].id, &size);
		if (ret) {
			free(list);
			return ret;
		}
		total += size;
		if (asprintf(&more, "%s%s%s:%llu", list ? list : "", list ? "," : "",
			     s->objs[i].id, (unsigned long long)size) < 0)
			more = NULL;
		free(list);
		if (!(list = more))
			return -ENOMEM;
	}
	for (int k = 0; k < s->nnuma; k++)
		if (!find_obj(s, s->numa_memdevs[k])) {
			free(list);
			return fail(s, "-numa node,memdev=%s: there is no -object with id=%s",
				    s->numa_memdevs[k], s->numa_memdevs[k]);
		}
	if (m && m != total) {
		free(list);
		return fail(s, "-m %s does not match the %llu MiB of the NUMA nodes' memdevs",
			    s->mem_size, (unsigned long long)(total >> 20));
	}
	qa->ram_bytes = total;
	qa->backends = list;
	return 0;
}

static int check_user_ram(struct scan *s, struct qemuargs *qa, uint64_t m)
{
	const char *id = s->machine_ram;
	const struct memobj *o = find_obj(s, id);
	uint64_t size;
	int ret = check_backend(s, "-machine memory-backend", id, &size);

	if (ret)
		return ret;
	if (m && m != size)
		return fail(s, "-m %s does not match size=%s of memory backend '%s'", s->mem_size,
			    o->size, id);
	qa->ram_bytes = size;
	return 0;
}

static int resolve_ram(struct scan *s, struct qemuargs *qa)
{
	uint64_t m;
	int ret = mem_bytes(s, &m);

	if (ret)
		return ret;
	if (s->nnuma && s->machine_ram)
		return fail(s, "-numa node,memdev= with -machine memory-backend=: give one or "
			       "the other");
	if (s->nnuma)
		return check_numa_ram(s, qa, m);
	if (s->machine_ram)
		return check_user_ram(s, qa, m);
	if (find_obj(s, QEMUARGS_RAM_ID))
		return fail(s,
			    "-object id=%s: that id is reserved for the guest RAM uffd-qemu adds",
			    QEMUARGS_RAM_ID);
	qa->ram_added = true;
	qa->ram_bytes = m ? m : DEFAULT_RAM_BYTES;
	return 0;
}

/* The path of a unix server socket that the chardev listens on, or NULL. */
static const char *chardev_unix_server(const struct chardev *c)
{
	if (!c || !same(c->backend, "socket") || !c->path || c->path[0] == '\0')
		return NULL;
	return c->server == 1 && c->abstract != 1 ? c->path : NULL;
}

/* -qmp takes QEMU's legacy chardev syntax: "unix:PATH[,server=on,...]", "chardev:ID", ... */
static int qmp_arg_path(struct scan *s, const char *arg, const char **path)
{
	struct chardev c = {.backend = "socket"};
	struct kvlist *l;
	int ret = 0;

	*path = NULL;
	if (prefixed(arg, "chardev:")) {
		*path = chardev_unix_server(find_chardev(s, arg + strlen("chardev:")));
		return 0;
	}
	if (!prefixed(arg, "unix:"))
		return 0;
	l = parse_arg(s, "qmp", arg + strlen("unix:"), "path", false, &ret);
	if (!l)
		return ret;
	c.path = kv_get(l, "path");
	c.server = kv_bool(l, "server");
	c.abstract = kv_bool(l, "abstract");
	*path = chardev_unix_server(&c);
	return 0;
}

static int resolve_qmp(struct scan *s, struct qemuargs *qa)
{
	const char *path = NULL;
	int ret = 0;

	for (int i = 0; i < s->nqmps && !path && !ret; i++)
		ret = qmp_arg_path(s, s->qmps[i], &path);
	for (int i = 0; i < s->nmons && !path; i++)
		path = chardev_unix_server(find_chardev(s, s->mons[i]));
	if (ret || !path)
		return ret;
	qa->qmp_path = strdup(path);
	return qa->qmp_path ? 0 : -ENOMEM;
}

/* Machines without a PCI bus cannot take virtio-balloon-pci. */
static bool machine_has_pci(const char *type)
{
	return !same(type, "microvm") && !same(type, "isapc") && !same(type, "none") &&
	       !prefixed(type, "x-remote");
}

static int resolve(struct scan *s, struct qemuargs *qa)
{
	int ret = resolve_ram(s, qa);

	if (!ret)
		ret = resolve_qmp(s, qa);
	if (ret)
		return ret;
	qa->balloon_added = !s->balloon && machine_has_pci(s->machine_type);
	if (s->balloon_id && !(qa->balloon_id = strdup(s->balloon_id)))
		return -ENOMEM;
	if (s->name) {
		qa->name = strdup(s->name);
		if (!qa->name)
			return -ENOMEM;
	}
	return 0;
}

static void scan_free(struct scan *s)
{
	for (int i = 0; i < s->nlists; i++)
		kvlist_free(&s->lists[i]);
	free(s->lists);
	free(s->objs);
	free(s->chrs);
	free(s->qmps);
	free(s->mons);
	free(s->numa_memdevs);
}

int qemuargs_parse(struct qemuargs *qa, int argc, char *const argv[], char *err, size_t errlen)
{
	return qemuargs_parse_known(qa, NULL, argc, argv, err, errlen);
}

int qemuargs_parse_known(struct qemuargs *qa, const struct qemuargs_known *known, int argc,
			 char *const argv[], char *err, size_t errlen)
{
	struct scan s = {.err = err, .errlen = errlen, .qa = qa, .known = known};
	int ret;

	memset(qa, 0, sizeof(*qa));
	if (errlen)
		err[0] = '\0';
	qa->in_argc = argc;
	qa->in_argv = argv;
	ret = scan_words(&s, argc, argv);
	if (!ret)
		ret = resolve(&s, qa);
	if (ret == -ENOMEM && errlen)
		snprintf(err, errlen, "out of memory");
	scan_free(&s);
	return ret;
}

/* ---- Building the new argument list ---- */

static int push(struct qemuargs *qa, char *word)
{
	char **w;

	if (!word)
		return -ENOMEM;
	w = realloc(qa->argv, (size_t)(qa->argc + 2) * sizeof(*w));
	if (!w) {
		free(word);
		return -ENOMEM;
	}
	qa->argv = w;
	w[qa->argc++] = word;
	w[qa->argc] = NULL;
	return 0;
}

static int push_fmt(struct qemuargs *qa, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int push_fmt(struct qemuargs *qa, const char *fmt, ...)
{
	va_list ap;
	char *word;
	int n;

	va_start(ap, fmt);
	n = vasprintf(&word, fmt, ap);
	va_end(ap);
	return push(qa, n < 0 ? NULL : word);
}

/* Doubles every comma, QEMU's escape inside an option value. */
static char *escape_commas(const char *s)
{
	char *out = malloc(2 * strlen(s) + 1), *o = out;

	if (!out)
		return NULL;
	for (; *s; s++) {
		*o++ = *s;
		if (*s == ',')
			*o++ = ',';
	}
	*o = '\0';
	return out;
}

static int push_ram(struct qemuargs *qa)
{
	char size[32];
	int ret;

	format_size(size, sizeof(size), qa->ram_bytes);
	ret = push(qa, strdup("-object"));
	if (!ret)
		ret = push_fmt(qa, "memory-backend-memfd,id=%s,size=%s,share=on", QEMUARGS_RAM_ID,
			       size);
	if (!ret)
		ret = push(qa, strdup("-machine"));
	if (!ret)
		ret = push_fmt(qa, "memory-backend=%s", QEMUARGS_RAM_ID);
	return ret;
}

static int push_qmp(struct qemuargs *qa, const char *path)
{
	char *esc = escape_commas(path);
	int ret = -ENOMEM;

	if (!esc)
		goto out;
	qa->qmp_path = strdup(path);
	if (!qa->qmp_path)
		goto out;
	qa->qmp_added = true;
	ret = push(qa, strdup("-qmp"));
	if (!ret)
		ret = push_fmt(qa, "unix:%s,server=on,wait=off", esc);
out:
	free(esc);
	return ret;
}

static int push_additions(struct qemuargs *qa, const char *qmp_path)
{
	int ret = 0;

	if (qa->ram_added)
		ret = push_ram(qa);
	if (!ret && !qa->qmp_path && qmp_path)
		ret = push_qmp(qa, qmp_path);
	if (!ret && qa->balloon_added) {
		ret = push(qa, strdup("-device"));
		if (!ret)
			ret = push_fmt(qa,
				       "virtio-balloon-pci,id=%s,deflate-on-oom=on,"
				       "free-page-reporting=on",
				       QEMUARGS_BALLOON_ID);
	}
	return ret;
}

int qemuargs_build(struct qemuargs *qa, const char *qmp_path)
{
	int ret = 0;

	if (qa->argv)
		return -EINVAL;
	if (qmp_path && strlen(qmp_path) >= sizeof(((struct sockaddr_un *)0)->sun_path))
		return -ENAMETOOLONG;
	for (int i = 0; i < qa->in_argc && !ret; i++) {
		const char *word = qa->in_argv[i];

		for (int k = 0; k < qa->nrewrites; k++)
			if (qa->rewrites[k].word == i)
				word = qa->rewrites[k].text;
		ret = push(qa, strdup(word));
	}
	if (!ret)
		ret = push_additions(qa, qmp_path);
	if (!ret && !qa->argv) {
		qa->argv = calloc(1, sizeof(*qa->argv)); /* nothing to pass: just the NULL */
		ret = qa->argv ? 0 : -ENOMEM;
	}
	return ret;
}

void qemuargs_free(struct qemuargs *qa)
{
	if (!qa)
		return;
	for (int i = 0; i < qa->argc; i++)
		free(qa->argv[i]);
	free(qa->argv);
	free(qa->name);
	free(qa->qmp_path);
	free(qa->balloon_id);
	free(qa->backends);
	for (int k = 0; k < qa->nrewrites; k++)
		free(qa->rewrites[k].text);
	free(qa->rewrites);
	memset(qa, 0, sizeof(*qa));
}
