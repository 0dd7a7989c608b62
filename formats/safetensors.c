/*
 * safetensors.c - validate a safetensors header and register its tensors.
 *
 * Byte layout:
 *   offset 0      u64 little-endian N, the header length (<= 100,000,000)
 *   offset 8      N bytes of UTF-8 JSON: {"__metadata__": {str: str},
 *                 "name": {"dtype": "BF16", "shape": [..], "data_offsets": [b, e]}, ...}
 *   offset 8 + N  the data buffer; offsets are relative to it, e is one past
 *   file size     exactly 8 + N + the last e (no holes, no trailing bytes)
 *
 * Nothing in the header is trusted: the JSON text is pre-scanned for what
 * cJSON would let through (NUL and control bytes, invalid UTF-8, \u0000 in
 * names), numbers must be integers in [0, 2^53), and the data offsets must
 * tile the buffer exactly, in the reference reader's order of checks.
 */
#include "format.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define ST_MAX_HEADER 100000000ULL
#define ST_MAX_INT 9007199254740992.0 /* 2^53 */

static bool safetensors_probe(const unsigned char *head, size_t n)
{
	uint64_t len = 0;

	if (n < 9)
		return false;
	for (int i = 0; i < 8; i++)
		len |= (uint64_t)head[i] << (8 * i);
	if (len == 0 || len > ST_MAX_HEADER)
		return false;
	return head[8] == '{' || head[8] == ' ' || head[8] == '\t' ||
	       head[8] == '\n' || head[8] == '\r';
}

/* Length of the UTF-8 sequence at p (max n bytes), or 0 if invalid. */
static size_t utf8_len(const unsigned char *p, size_t n)
{
	unsigned c = p[0];
	size_t len;
	uint32_t cp;

	if (c < 0x80)
		return 1;
	if (c >= 0xC2 && c <= 0xDF)
		len = 2, cp = c & 0x1F;
	else if (c >= 0xE0 && c <= 0xEF)
		len = 3, cp = c & 0x0F;
	else if (c >= 0xF0 && c <= 0xF4)
		len = 4, cp = c & 0x07;
	else
		return 0;
	if (len > n)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((p[i] & 0xC0) != 0x80)
			return 0;
		cp = (cp << 6) | (p[i] & 0x3F);
	}
	if ((len == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ||
	    (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
		return 0;
	return len;
}

/*
 * Reject what serde_json (the reference) rejects but cJSON accepts: bytes
 * below 0x20 other than JSON whitespace outside strings, any control byte
 * inside strings, invalid UTF-8, a first byte that is not '{' or
 * whitespace, and "\u0000" escapes (cJSON would truncate the name there).
 */
static int prescan(const unsigned char *h, size_t n, const char *path,
		   struct weld_error *err)
{
	bool in_str = false;
	size_t i = 0;

	while (i < n && (h[i] == ' ' || h[i] == '\t' || h[i] == '\n' || h[i] == '\r'))
		i++;
	if (i == n || h[i] != '{')
		return weld_fail(err, WELD_ERR_FORMAT,
				 "'%s': header: not a JSON object (first byte 0x%02x)",
				 path, i < n ? h[i] : 0);
	for (; i < n;) {
		unsigned c = h[i];
		size_t l;

		if (c < 0x20 && (in_str || (c != '\t' && c != '\n' && c != '\r')))
			return weld_fail(err, WELD_ERR_FORMAT,
					 "'%s': header: control byte 0x%02x at offset %zu",
					 path, c, i + 8);
		if (in_str && c == '\\') {
			if (i + 1 < n && h[i + 1] == 'u' && i + 6 <= n &&
			    memcmp(h + i + 2, "0000", 4) == 0)
				return weld_fail(err, WELD_ERR_FORMAT,
						 "'%s': header: string contains \\u0000 at offset %zu",
						 path, i + 8);
			i += 2;
			continue;
		}
		if (c == '"')
			in_str = !in_str;
		l = utf8_len(h + i, n - i);
		if (!l)
			return weld_fail(err, WELD_ERR_FORMAT,
					 "'%s': header: invalid UTF-8 at offset %zu", path, i + 8);
		i += l;
	}
	return 0;
}

/*
 * A JSON number that is an integer in [0, 2^53). cJSON keeps only the
 * double, and 2^53 + 1 rounds to 2^53: 2^53 itself is refused, so that a
 * value that was not exact cannot pass.
 */
static bool json_u64(const cJSON *v, uint64_t *out)
{
	double d;

	if (!cJSON_IsNumber(v))
		return false;
	d = v->valuedouble;
	if (!(d >= 0 && d < ST_MAX_INT) || floor(d) != d)
		return false;
	*out = (uint64_t)d;
	return true;
}

struct st_entry {
	struct weld_tensor_info info;
	uint64_t begin, end;
};

static int cmp_offsets(const void *a, const void *b)
{
	const struct st_entry *x = a, *y = b;

	if (x->begin != y->begin)
		return x->begin < y->begin ? -1 : 1;
	if (x->end != y->end)
		return x->end < y->end ? -1 : 1;
	return 0;
}

static int cmp_names(const void *a, const void *b)
{
	const struct st_entry *x = *(const struct st_entry *const *)a;
	const struct st_entry *y = *(const struct st_entry *const *)b;

	return strcmp(x->info.name, y->info.name);
}

static int parse_metadata(weld_model *m, const cJSON *meta, const char *path,
			  struct weld_error *err)
{
	const cJSON *kv;

	if (!cJSON_IsObject(meta))
		return weld_fail(err, WELD_ERR_FORMAT,
				 "'%s': __metadata__: not an object of strings", path);
	cJSON_ArrayForEach(kv, meta) {
		if (!cJSON_IsString(kv))
			return weld_fail(err, WELD_ERR_FORMAT,
					 "'%s': __metadata__.%s: value is not a string",
					 path, kv->string);
		if (weld_model_set_metadata(m, kv->string, kv->valuestring, err) < 0)
			return -1;
	}
	return 0;
}

static int parse_tensor(const cJSON *t, struct st_entry *e, const char *path,
			struct weld_error *err)
{
	const char *name = t->string;
	const cJSON *dt, *shape, *offs, *d;
	uint64_t nelem = 1, nbytes;
	int ndim = 0;

	if (!cJSON_IsObject(t))
		return weld_fail(err, WELD_ERR_FORMAT, "'%s': tensor '%s': not an object",
				 path, name);
	dt = cJSON_GetObjectItemCaseSensitive(t, "dtype");
	shape = cJSON_GetObjectItemCaseSensitive(t, "shape");
	offs = cJSON_GetObjectItemCaseSensitive(t, "data_offsets");
	if (!cJSON_IsString(dt))
		return weld_fail(err, WELD_ERR_FORMAT, "'%s': tensor '%s': dtype: %s",
				 path, name, dt ? "not a string" : "missing");
	if (weld_dtype_parse(dt->valuestring, &e->info.dtype) < 0)
		return weld_fail(err, WELD_ERR_FORMAT,
				 "'%s': tensor '%s': dtype: unknown or unsupported dtype '%s'",
				 path, name, dt->valuestring);
	if (!cJSON_IsArray(shape))
		return weld_fail(err, WELD_ERR_FORMAT, "'%s': tensor '%s': shape: %s",
				 path, name, shape ? "not an array" : "missing");
	cJSON_ArrayForEach(d, shape) {
		uint64_t v;

		if (ndim == WELD_MAX_DIMS)
			return weld_fail(err, WELD_ERR_FORMAT,
					 "'%s': tensor '%s': shape: more than %d dimensions",
					 path, name, WELD_MAX_DIMS);
		if (!json_u64(d, &v) || v > INT64_MAX)
			return weld_fail(err, WELD_ERR_FORMAT,
					 "'%s': tensor '%s': shape[%d]: not an integer in [0, 2^53)",
					 path, name, ndim);
		if (!weld_mul_u64(nelem, v, &nelem))
			return weld_fail(err, WELD_ERR_FORMAT,
					 "'%s': tensor '%s': shape: element count overflows",
					 path, name);
		e->info.shape[ndim++] = (int64_t)v;
	}
	if (!weld_mul_u64(nelem, weld_dtype_size(e->info.dtype), &nbytes))
		return weld_fail(err, WELD_ERR_FORMAT,
				 "'%s': tensor '%s': shape: byte size overflows", path, name);
	if (!cJSON_IsArray(offs) || cJSON_GetArraySize(offs) != 2 ||
	    !json_u64(cJSON_GetArrayItem(offs, 0), &e->begin) ||
	    !json_u64(cJSON_GetArrayItem(offs, 1), &e->end))
		return weld_fail(err, WELD_ERR_FORMAT,
				 "'%s': tensor '%s': data_offsets: %s", path, name,
				 offs ? "not two integers in [0, 2^53)" : "missing");
	e->info.name = name;
	e->info.ndim = ndim;
	e->info.nelem = nelem;
	e->info.nbytes = nbytes;
	e->info.contiguous = true;
	weld_contiguous_strides(&e->info);
	return 0;
}

/* Offsets must tile the data buffer: sorted by (begin, end), each tensor
 * starts where the previous ended, and its span equals its byte size. */
static int check_layout(struct st_entry *e, size_t n, uint64_t data_start,
			uint64_t fsize, const char *path, struct weld_error *err)
{
	uint64_t pos = 0, total;

	qsort(e, n, sizeof(*e), cmp_offsets);
	for (size_t i = 0; i < n; i++) {
		const char *name = e[i].info.name;

		if (e[i].end < e[i].begin)
			return weld_fail(err, WELD_ERR_FORMAT,
					 "'%s': tensor '%s': data_offsets: end %llu before begin %llu",
					 path, name, (unsigned long long)e[i].end,
					 (unsigned long long)e[i].begin);
		if (e[i].begin != pos)
			return weld_fail(err, WELD_ERR_FORMAT,
					 "'%s': tensor '%s': data_offsets: begins at %llu, expected %llu (%s)",
					 path, name, (unsigned long long)e[i].begin,
					 (unsigned long long)pos,
					 e[i].begin < pos ? "overlaps the previous tensor" : "gap before it");
		if (e[i].end - e[i].begin != e[i].info.nbytes)
			return weld_fail(err, WELD_ERR_FORMAT,
					 "'%s': tensor '%s': data_offsets: span of %llu bytes, but shape x dtype needs %llu",
					 path, name, (unsigned long long)(e[i].end - e[i].begin),
					 (unsigned long long)e[i].info.nbytes);
		pos = e[i].end;
	}
	if (!weld_add_u64(data_start, pos, &total) || total != fsize)
		return weld_fail(err, WELD_ERR_FORMAT,
				 "'%s': data_offsets: tensors cover %llu bytes of data, but the file holds %llu",
				 path, (unsigned long long)pos,
				 (unsigned long long)(fsize - data_start));
	for (size_t i = 0; i < n; i++)
		e[i].info.offset = data_start + e[i].begin;
	return 0;
}

static int safetensors_parse(weld_model *m, int file, struct weld_error *err)
{
	const char *path = weld_model_file_path(m, (size_t)file);
	uint64_t fsize = weld_model_file_size(m, file), hlen = 0;
	int fd = weld_model_file_fd(m, file);
	unsigned char lenbuf[8];
	char *h = NULL;
	cJSON *root = NULL;
	const cJSON *it;
	struct st_entry *e = NULL;
	struct st_entry **byname = NULL;
	size_t n = 0, cap;
	int ret = -1;

	if (fsize < 8)
		return weld_fail(err, WELD_ERR_FORMAT,
				 "'%s': file is %llu bytes, too short for a safetensors header",
				 path, (unsigned long long)fsize);
	if (weld_pread_full(fd, lenbuf, 8, 0, path, err) < 0)
		return -1;
	for (int i = 0; i < 8; i++)
		hlen |= (uint64_t)lenbuf[i] << (8 * i);
	if (hlen > ST_MAX_HEADER)
		return weld_fail(err, WELD_ERR_FORMAT,
				 "'%s': header length %llu is over the 100000000-byte limit",
				 path, (unsigned long long)hlen);
	if (hlen > fsize - 8)
		return weld_fail(err, WELD_ERR_FORMAT,
				 "'%s': header length %llu goes beyond the end of the file (%llu bytes)",
				 path, (unsigned long long)hlen, (unsigned long long)fsize);
	h = malloc(hlen + 1);
	if (!h)
		return weld_fail(err, WELD_ERR_NOMEM, "'%s': out of memory for the header", path);
	if (weld_pread_full(fd, h, hlen, 8, path, err) < 0)
		goto out;
	h[hlen] = 0;
	if (prescan((unsigned char *)h, hlen, path, err) < 0)
		goto out;
	root = cJSON_ParseWithLengthOpts(h, hlen + 1, NULL, 1);
	if (!root || !cJSON_IsObject(root)) {
		weld_fail(err, WELD_ERR_FORMAT, "'%s': header: invalid JSON%s", path,
			  root ? " (not an object)" : "");
		goto out;
	}
	cap = (size_t)cJSON_GetArraySize(root);
	e = calloc(cap ? cap : 1, sizeof(*e));
	byname = calloc(cap ? cap : 1, sizeof(*byname));
	if (!e || !byname) {
		weld_fail(err, WELD_ERR_NOMEM, "'%s': out of memory", path);
		goto out;
	}
	cJSON_ArrayForEach(it, root) {
		if (strcmp(it->string, "__metadata__") == 0) {
			if (parse_metadata(m, it, path, err) < 0)
				goto out;
			continue;
		}
		if (parse_tensor(it, &e[n], path, err) < 0)
			goto out;
		e[n].info.file = file;
		n++;
	}
	/* cJSON keeps duplicate keys; the reference rejects them. */
	for (size_t i = 0; i < n; i++)
		byname[i] = &e[i];
	qsort(byname, n, sizeof(*byname), cmp_names);
	for (size_t i = 1; i < n; i++)
		if (strcmp(byname[i - 1]->info.name, byname[i]->info.name) == 0) {
			weld_fail(err, WELD_ERR_FORMAT, "'%s': tensor '%s': duplicate name",
				  path, byname[i]->info.name);
			goto out;
		}
	{
		int seen_meta = 0;

		cJSON_ArrayForEach(it, root)
			seen_meta += strcmp(it->string, "__metadata__") == 0;
		if (seen_meta > 1) {
			weld_fail(err, WELD_ERR_FORMAT, "'%s': __metadata__: duplicate key", path);
			goto out;
		}
	}
	if (check_layout(e, n, 8 + hlen, fsize, path, err) < 0)
		goto out;
	for (size_t i = 0; i < n; i++)
		if (weld_model_add_tensor(m, &e[i].info, err) < 0)
			goto out;
	ret = 0;
out:
	free(byname);
	free(e);
	cJSON_Delete(root);
	free(h);
	return ret;
}

/* Also every file of 8+ bytes no other probe claims: see registry.c. */
const struct weld_format weld_safetensors_format = {
	.name = "safetensors",
	.probe = safetensors_probe,
	.parse = safetensors_parse,
	.claims_rest = 8,
};
