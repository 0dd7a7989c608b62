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
 * Nothing in the header is trusted. The JSON text is pre-scanned for what
 * cJSON would let through but serde_json (the reference) refuses: NUL and
 * control bytes, invalid UTF-8, \u0000 in any string, numbers that are not
 * JSON (01), shape and data_offsets entries that are not written as
 * integers (2.0, 2e0, -0), more than WELD_MAX_TENSORS_PER_FILE entries.
 * Then keys must be unique (at the top level, in __metadata__, and the
 * three fields of a tensor), numbers integers in [0, 2^53), and the data
 * offsets must tile the buffer exactly, in the reference reader's order of
 * checks. Duplicates are found by hash, so a header of many keys is read in
 * linear time.
 */
#include "format.h"
#include "json_scan.h"
#include "name_table.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define ST_MAX_HEADER 100000000ULL
#define ST_MAX_INT 9007199254740992.0 /* 2^53 */
#define ST_MAX_TENSORS WELD_MAX_TENSORS_PER_FILE

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

/*
 * A file the probe refused that is still a safetensors file, damaged: its
 * header length fits in the file (the damage is in the header), or the
 * header starts with '{' (a truncated file, a length over the limit). The
 * first 8 bytes of a text file read as a length of 10^18 or more, and its
 * ninth byte is seldom a '{'.
 */
static bool safetensors_damaged(const unsigned char *head, size_t n, uint64_t size)
{
	uint64_t len = 0;

	if (n < 8)
		return false;
	for (int i = 0; i < 8; i++)
		len |= (uint64_t)head[i] << (8 * i);
	return (len <= ST_MAX_HEADER && len <= size - 8) || (n > 8 && head[8] == '{');
}

/*
 * Reject what serde_json (the reference) rejects but cJSON accepts: bytes
 * below 0x20 other than JSON whitespace outside strings, any control byte
 * inside strings, invalid UTF-8, and a first byte that is not '{' or
 * whitespace.
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
			i += 2;
			continue;
		}
		if (c == '"')
			in_str = !in_str;
		l = weld_utf8_len(h + i, n - i);
		if (!l)
			return weld_fail(err, WELD_ERR_FORMAT,
					 "'%s': header: invalid UTF-8 at offset %zu", path, i + 8);
		i += l;
	}
	return 0;
}

/* ---------------------------------------------------------------- tokens */

/*
 * What cJSON's tree cannot show is checked on the tokens, before parsing:
 * "\u0000" in a string (cJSON would cut the name there), numbers that are
 * not JSON ("01"), shape and data_offsets entries written with a fraction,
 * an exponent or a sign (serde reads them as usize), and the number of
 * entries (checked before anything is allocated for them).
 */
struct token_check {
	const char *path;
	size_t entries;         /* top-level keys: tensors and __metadata__ */
	struct weld_error *err;
};

/* Does the token lie inside the tensor entry path[0] (not __metadata__)? */
static bool in_tensor(const struct weld_json_token *t)
{
	return t->depth >= 2 && !weld_json_key_is(&t->path[0], "__metadata__");
}

/* A string holding \u0000, refused with where it is. */
static int refuse_nul(const struct token_check *c, const struct weld_json_token *t)
{
	const struct weld_json_frame *p = t->path;
	const bool key = t->kind == WELD_JSON_KEY;

	if (t->depth == 1 && key)
		return weld_fail(c->err, WELD_ERR_FORMAT,
				 "'%s': tensor '%.*s': name contains \\u0000", c->path,
				 (int)t->len, t->text);
	if (t->depth == 1 || (t->depth > 2 && !in_tensor(t)))
		return weld_fail(c->err, WELD_ERR_FORMAT, "'%s': %.*s: contains \\u0000",
				 c->path, (int)p[0].key_len, p[0].key);
	if (!in_tensor(t))
		return weld_fail(c->err, WELD_ERR_FORMAT, key
				 ? "'%s': __metadata__: key '%.*s' contains \\u0000"
				 : "'%s': __metadata__.%.*s: value contains \\u0000", c->path,
				 (int)(key ? t->len : p[1].key_len), key ? t->text : p[1].key);
	if (t->depth == 2 && key)
		return weld_fail(c->err, WELD_ERR_FORMAT,
				 "'%s': tensor '%.*s': key '%.*s' contains \\u0000", c->path,
				 (int)p[0].key_len, p[0].key, (int)t->len, t->text);
	return weld_fail(c->err, WELD_ERR_FORMAT, "'%s': tensor '%.*s': %.*s: contains \\u0000",
			 c->path, (int)p[0].key_len, p[0].key, (int)p[1].key_len, p[1].key);
}

/* An element of a tensor's shape or data_offsets must be a non-negative
 * JSON integer: no fraction, exponent, sign or leading zero. */
static int check_dimension(const struct token_check *c, const struct weld_json_token *t)
{
	const struct weld_json_frame *p = t->path;
	enum weld_json_number form = weld_json_number_form(t->text, t->len);
	const char *why = form == WELD_JSON_REAL ? "written with a fraction or an exponent"
		: form == WELD_JSON_NOT_A_NUMBER ? "not a JSON number"
		: t->text[0] == '-' ? "negative" : NULL;

	if (!why)
		return 0;
	return weld_fail(c->err, WELD_ERR_FORMAT,
			 "'%s': tensor '%.*s': %.*s[%zu]: '%.*s' is not an integer (%s)",
			 c->path, (int)p[0].key_len, p[0].key, (int)p[1].key_len, p[1].key,
			 p[2].index, (int)t->len, t->text, why);
}

static int check_number(const struct token_check *c, const struct weld_json_token *t)
{
	const struct weld_json_frame *p = t->path;

	if (t->depth == 3 && in_tensor(t) && !p[2].object &&
	    (weld_json_key_is(&p[1], "shape") || weld_json_key_is(&p[1], "data_offsets")))
		return check_dimension(c, t);
	if (weld_json_number_form(t->text, t->len) != WELD_JSON_NOT_A_NUMBER)
		return 0;
	if (in_tensor(t))
		return weld_fail(c->err, WELD_ERR_FORMAT,
				 "'%s': tensor '%.*s': %.*s: '%.*s' is not a JSON number", c->path,
				 (int)p[0].key_len, p[0].key, (int)p[1].key_len, p[1].key,
				 (int)t->len, t->text);
	return weld_fail(c->err, WELD_ERR_FORMAT,
			 "'%s': header: '%.*s' at offset %zu is not a JSON number", c->path,
			 (int)t->len, t->text, t->offset + 8);
}

static int check_token(void *ctx, const struct weld_json_token *t)
{
	struct token_check *c = ctx;

	if (t->kind == WELD_JSON_KEY && t->depth == 1 && ++c->entries > ST_MAX_TENSORS + 1)
		return weld_fail(c->err, WELD_ERR_FORMAT,
				 "'%s': header: more than %u tensors (the limit of a file)",
				 c->path, ST_MAX_TENSORS);
	if ((t->kind == WELD_JSON_KEY || t->kind == WELD_JSON_STRING) &&
	    weld_json_has_nul(t->text, t->len))
		return refuse_nul(c, t);
	if (t->kind == WELD_JSON_NUMBER)
		return check_number(c, t);
	return 0;
}

static int check_tokens(const char *h, size_t n, const char *path, struct weld_error *err)
{
	struct token_check c = { .path = path, .err = err };
	int r = weld_json_scan(h, n, check_token, &c);

	if (r == WELD_JSON_TOO_DEEP)
		return weld_fail(err, WELD_ERR_FORMAT,
				 "'%s': header: JSON nested deeper than %d levels", path,
				 WELD_JSON_MAX_DEPTH);
	return r;
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

/* Keys are unique: cJSON keeps duplicates, serde refuses them (or, in a
 * map, keeps the last, where cJSON's lookup finds the first). */
static int parse_metadata(weld_model *m, const cJSON *meta, const char *path,
			  struct weld_error *err)
{
	struct weld_name_table keys;
	const cJSON *kv;
	int ret = -1;

	if (!cJSON_IsObject(meta))
		return weld_fail(err, WELD_ERR_FORMAT,
				 "'%s': __metadata__: not an object of strings", path);
	if (weld_name_table_init(&keys, (size_t)cJSON_GetArraySize(meta)) < 0)
		return weld_fail(err, WELD_ERR_NOMEM, "'%s': out of memory", path);
	cJSON_ArrayForEach(kv, meta) {
		int r = weld_name_table_add(&keys, kv->string, 0, NULL);

		if (r != 0) {
			weld_fail(err, r < 0 ? WELD_ERR_NOMEM : WELD_ERR_FORMAT, r < 0
				  ? "'%s': out of memory" : "'%s': __metadata__.%s: duplicate key",
				  path, kv->string);
			goto out;
		}
		if (!cJSON_IsString(kv)) {
			weld_fail(err, WELD_ERR_FORMAT, "'%s': __metadata__.%s: value is not a string",
				  path, kv->string);
			goto out;
		}
		if (weld_model_set_metadata(m, kv->string, kv->valuestring, err) < 0)
			goto out;
	}
	ret = 0;
out:
	weld_name_table_free(&keys);
	return ret;
}

/*
 * The three fields of a tensor entry, each at most once (serde refuses a
 * duplicate field); other keys are ignored, as serde ignores them.
 */
static int tensor_fields(const cJSON *t, const cJSON *f[3], const char *path,
			 struct weld_error *err)
{
	static const char *const names[3] = { "dtype", "shape", "data_offsets" };
	const cJSON *kv;

	f[0] = f[1] = f[2] = NULL;
	cJSON_ArrayForEach(kv, t) {
		for (int k = 0; k < 3; k++) {
			if (strcmp(kv->string, names[k]) != 0)
				continue;
			if (f[k])
				return weld_fail(err, WELD_ERR_FORMAT,
						 "'%s': tensor '%s': %s: duplicate key", path,
						 t->string, names[k]);
			f[k] = kv;
		}
	}
	return 0;
}

static int parse_tensor(const cJSON *t, struct st_entry *e, const char *path,
			struct weld_error *err)
{
	const char *name = t->string;
	const cJSON *f[3], *dt, *shape, *offs, *d;
	uint64_t nelem = 1, nbytes;
	int ndim = 0;

	if (!cJSON_IsObject(t))
		return weld_fail(err, WELD_ERR_FORMAT, "'%s': tensor '%s': not an object",
				 path, name);
	if (tensor_fields(t, f, path, err) < 0)
		return -1;
	dt = f[0];
	shape = f[1];
	offs = f[2];
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

/* The header text of the file (caller frees *out, NUL-terminated). */
static int read_header(weld_model *m, int file, char **out, uint64_t *hlenp,
		       struct weld_error *err)
{
	const char *path = weld_model_file_path(m, (size_t)file);
	uint64_t fsize = weld_model_file_size(m, file), hlen = 0;
	int fd = weld_model_file_fd(m, file);
	unsigned char lenbuf[8];
	char *h;

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
	if (weld_pread_full(fd, h, hlen, 8, path, err) < 0) {
		free(h);
		return -1;
	}
	h[hlen] = 0;
	*out = h;
	*hlenp = hlen;
	return 0;
}

/*
 * The tensors of the header into e[0 .. *n) and its metadata into the
 * model. Top-level keys are unique (cJSON keeps duplicates, the reference
 * refuses them), found by hash so that the check stays linear.
 */
static int parse_entries(weld_model *m, int file, const cJSON *root, struct st_entry *e,
			 size_t *n, struct weld_error *err)
{
	const char *path = weld_model_file_path(m, (size_t)file);
	struct weld_name_table keys;
	const cJSON *it;
	int ret = -1;

	if (weld_name_table_init(&keys, (size_t)cJSON_GetArraySize(root)) < 0)
		return weld_fail(err, WELD_ERR_NOMEM, "'%s': out of memory", path);
	*n = 0;
	cJSON_ArrayForEach(it, root) {
		bool meta = strcmp(it->string, "__metadata__") == 0;
		int r = weld_name_table_add(&keys, it->string, 0, NULL);

		if (r < 0) {
			weld_fail(err, WELD_ERR_NOMEM, "'%s': out of memory", path);
			goto out;
		}
		if (r > 0) {
			if (meta)
				weld_fail(err, WELD_ERR_FORMAT, "'%s': __metadata__: duplicate key", path);
			else
				weld_fail(err, WELD_ERR_FORMAT, "'%s': tensor '%s': duplicate name",
					  path, it->string);
			goto out;
		}
		if (meta ? parse_metadata(m, it, path, err) < 0
			 : parse_tensor(it, &e[*n], path, err) < 0)
			goto out;
		if (!meta)
			e[(*n)++].info.file = file;
	}
	ret = 0;
out:
	weld_name_table_free(&keys);
	return ret;
}

static int safetensors_parse(weld_model *m, int file, struct weld_error *err)
{
	const char *path = weld_model_file_path(m, (size_t)file);
	uint64_t fsize = weld_model_file_size(m, file), hlen = 0;
	char *h = NULL;
	cJSON *root = NULL;
	struct st_entry *e = NULL;
	size_t n = 0, entries;
	int ret = -1;

	if (read_header(m, file, &h, &hlen, err) < 0)
		return -1;
	if (prescan((unsigned char *)h, hlen, path, err) < 0 ||
	    check_tokens(h, hlen, path, err) < 0)
		goto out;
	root = cJSON_ParseWithLengthOpts(h, hlen + 1, NULL, 1);
	if (!root || !cJSON_IsObject(root)) {
		weld_fail(err, WELD_ERR_FORMAT, "'%s': header: invalid JSON%s", path,
			  root ? " (not an object)" : "");
		goto out;
	}
	entries = (size_t)cJSON_GetArraySize(root);
	e = calloc(entries ? entries : 1, sizeof(*e));
	if (!e) {
		weld_fail(err, WELD_ERR_NOMEM, "'%s': out of memory", path);
		goto out;
	}
	if (parse_entries(m, file, root, e, &n, err) < 0 ||
	    check_layout(e, n, 8 + hlen, fsize, path, err) < 0)
		goto out;
	for (size_t i = 0; i < n; i++)
		if (weld_model_add_tensor(m, &e[i].info, err) < 0)
			goto out;
	ret = 0;
out:
	free(e);
	cJSON_Delete(root);
	free(h);
	return ret;
}

const struct weld_format weld_safetensors_format = {
	.name = "safetensors",
	.probe = safetensors_probe,
	.parse = safetensors_parse,
	.damaged = safetensors_damaged,
};
