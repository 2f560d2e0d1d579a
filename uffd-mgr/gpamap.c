/* gpamap: see gpamap.h. */
#include "uffd-mgr/gpamap.h"

#include <errno.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#define JOIN_GAP (1ull << 20) /* see gpamap.h: the window below 1 MiB */
#define NAME_MAX_LEN 128

/* The flat view of the address space "memory": the text from its "FlatView #" line to the
 * next one (or the end). Sets *len. NULL when there is none. */
static const char *memory_view(const char *mtree, size_t *len)
{
	const char *v = mtree, *next, *as;

	while ((v = strstr(v, "FlatView #"))) {
		next = strstr(v + 1, "FlatView #");
		as = strstr(v, " AS \"memory\",");
		if (as && (!next || as < next)) {
			*len = next ? (size_t)(next - v) : strlen(v);
			return v;
		}
		v += 1;
	}
	return NULL;
}

/* One range line: "  start-end (prio P, type): name[ @offset][ ACCEL...]". Returns 1 for a
 * range, 0 for a line that is not one (headers), -EINVAL for a range line it cannot read. */
static int parse_line(const char *line, uint64_t *start, uint64_t *end, char *name,
		      uint64_t *offset)
{
	const char *colon, *at;
	int used = 0;

	if (sscanf(line, " %" SCNx64 "-%" SCNx64 " (prio %*d, %*[^)]):%n", start, end, &used) < 2 ||
	    !used)
		return 0;
	colon = line + used;
	if (sscanf(colon, " %127s", name) != 1 || *end < *start)
		return -EINVAL;
	*offset = 0;
	at = strstr(colon, " @");
	if (at && sscanf(at + 2, "%" SCNx64, offset) != 1)
		return -EINVAL;
	return 1;
}

/* Appends [gpa, gpa + len) -> offset, joining it to the last range when both advance
 * together across a small gap. Returns 0 or -E2BIG. */
static int add_range(struct gpamap_range *out, unsigned max, unsigned *n, uint64_t gpa,
		     uint64_t len, uint64_t offset)
{
	struct gpamap_range *last = *n ? &out[*n - 1] : NULL;

	if (last && gpa >= last->gpa + last->len && gpa - last->gpa == offset - last->offset &&
	    gpa - (last->gpa + last->len) <= JOIN_GAP) {
		last->len = gpa + len - last->gpa;
		return 0;
	}
	if (*n == max)
		return -E2BIG;
	out[(*n)++] = (struct gpamap_range){.gpa = gpa, .len = len, .offset = offset};
	return 0;
}

int gpamap_parse_mtree(const char *mtree, const char *name, uint64_t region_len,
		       struct gpamap_range *out, unsigned max, unsigned *n, char *err,
		       size_t errlen)
{
	char line[512], rname[NAME_MAX_LEN];
	const char *view, *p, *eol, *end;
	uint64_t start, last, offset;
	size_t vlen;
	int r;

	*n = 0;
	if (!mtree || !name || !*name || !region_len || !out || !max) {
		snprintf(err, errlen, "gpamap: bad arguments");
		return -EINVAL;
	}
	view = memory_view(mtree, &vlen);
	if (!view) {
		snprintf(err, errlen, "info mtree -f: no flat view of address space \"memory\"");
		return -ENOENT;
	}
	end = view + vlen;
	for (p = view; p < end; p = eol + 1) {
		eol = memchr(p, '\n', (size_t)(end - p));
		eol = eol ? eol : end;
		snprintf(line, sizeof(line), "%.*s", (int)(eol - p), p);
		r = parse_line(line, &start, &last, rname, &offset);
		if (r < 0) {
			snprintf(err, errlen, "info mtree -f: cannot read '%s'", line);
			return r;
		}
		if (r == 0 || strcmp(rname, name) || offset >= region_len)
			continue;
		/* Ranges come sorted by GPA in a flat view. */
		if (add_range(out, max, n, start,
			      (last - start + 1 < region_len - offset ? last - start + 1
								      : region_len - offset),
			      offset)) {
			snprintf(err, errlen,
				 "info mtree -f: backend %s lies in more guest-physical ranges "
				 "than %u",
				 name, max);
			return -E2BIG;
		}
	}
	if (!*n) {
		snprintf(err, errlen, "info mtree -f: backend %s is not in the address space \"memory\"",
			 name);
		return -ENOENT;
	}
	return 0;
}

int gpamap_to_offset(const struct gpamap_range *r, unsigned n, uint64_t gpa, uint64_t *offset)
{
	for (unsigned i = 0; i < n; i++)
		if (gpa - r[i].gpa < r[i].len) { /* below gpa wraps to a huge difference */
			*offset = r[i].offset + (gpa - r[i].gpa);
			return 0;
		}
	return -ENOENT;
}

int gpamap_pick_backend(struct json_object *memdevs, uint64_t region_len, char *id,
			size_t idlen, char *err, size_t errlen)
{
	struct json_object *m, *v;
	const char *found = NULL;
	size_t n;

	if (!memdevs || !json_object_is_type(memdevs, json_type_array)) {
		snprintf(err, errlen, "query-memdev: the answer is not a list");
		return -EINVAL;
	}
	n = json_object_array_length(memdevs);
	for (size_t i = 0; i < n; i++) {
		m = json_object_array_get_idx(memdevs, i);
		if (!json_object_object_get_ex(m, "size", &v) ||
		    (uint64_t)json_object_get_uint64(v) != region_len ||
		    !json_object_object_get_ex(m, "id", &v) || !json_object_get_string(v))
			continue;
		if (found) {
			snprintf(err, errlen,
				 "query-memdev: backends %s and %s both have the guest RAM's size",
				 found, json_object_get_string(v));
			return -EEXIST;
		}
		found = json_object_get_string(v);
	}
	if (!found) {
		snprintf(err, errlen, "query-memdev: no backend with an id of %" PRIu64 " bytes",
			 region_len);
		return -ENOENT;
	}
	snprintf(id, idlen, "%s", found);
	return 0;
}
