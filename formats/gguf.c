/*
 * gguf.c - validate a GGUF file (llama.cpp) and register its tensors.
 *
 * Byte layout (little-endian; v2 and v3 are the same, v1 and big-endian
 * files are refused):
 *   "GGUF" | u32 version | i64 tensor_count | i64 kv_count
 *   kv_count pairs:     string key | i32 value type | value
 *       string = u64 length + bytes (no NUL); array = i32 element type +
 *       u64 count + packed elements (no nested arrays)
 *   tensor_count infos: string name | u32 n_dims | i64 ne[n_dims] |
 *                       i32 ggml type | u64 offset (from the data start)
 *   zero padding to general.alignment (default 32), then the data: each
 *   tensor at the running sum of the padded sizes of those before it
 *
 * ne[0] is the contiguous dimension: shapes are reported reversed, in
 * PyTorch's order. Nothing is trusted: every count is bounded by the bytes
 * left in the file and by a fixed cap, every product is overflow-checked,
 * and each refusal names the file, the key or tensor, and the field.
 * Quantised tensors are registered with dtype F32 and their block type in
 * info.quant: the model layer decodes them block by block when they are
 * read (quant.c). A split set (NAME-00001-of-0000N.gguf, split.* keys) is
 * opened from its first file, the others found by name. The magic, the
 * counts and the key/value pairs are read by gguf_kv.c.
 */
#include "format.h"
#include "gguf_impl.h"
#include "name_table.h"
#include "quant.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- tensor infos */

struct info {
	struct weld_tensor_info t;
	char *name;
	uint32_t type;
	uint64_t rel;           /* offset from the data start */
};

/* The weld dtype of a ggml type read as is (not in blocks). */
static int plain_dtype(uint32_t type, enum weld_dtype *dt)
{
	static const struct { uint32_t g; enum weld_dtype d; } map[] = {
		{ 0, WELD_F32 }, { 1, WELD_F16 }, { 30, WELD_BF16 }, { 24, WELD_I8 },
		{ 25, WELD_I16 }, { 26, WELD_I32 }, { 27, WELD_I64 }, { 28, WELD_F64 },
	};

	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
		if (map[i].g == type) {
			*dt = map[i].d;
			return 0;
		}
	return -1;
}

int weld_gguf_tensor_type(const struct weld_tensor_info *t)
{
	if (t->quant)
		return t->quant;
	for (uint32_t g = 0; g < WELD_GGML_TYPE_COUNT; g++) {
		enum weld_dtype d;

		if (plain_dtype(g, &d) == 0 && d == t->dtype)
			return (int)g;
	}
	return -1;
}

/* The type: known, decoded by weld, and the shape a whole number of blocks. */
static int check_type(struct cur *c, struct info *e, const uint64_t ne[GGUF_MAX_DIMS],
		      uint64_t nelem)
{
	const struct weld_ggml_type_info *ti = weld_ggml_type(e->type);
	enum weld_dtype dt = WELD_F32;
	uint64_t nb;

	if (!ti)
		return weld_fail(c->err, WELD_ERR_FORMAT, "'%s': %s: type: unknown ggml type %lu",
				 c->path, c->where, (unsigned long)e->type);
	if (plain_dtype(e->type, &dt) < 0 && !ti->decode)
		return weld_fail(c->err, WELD_ERR_FORMAT,
				 "'%s': %s: type: %s is not supported (weld reads F32 F16 BF16 Q8_0 Q4_0 Q4_1 Q5_0 Q5_1 Q2_K Q3_K Q4_K Q5_K Q6_K)",
				 c->path, c->where, ti->name);
	if (ne[0] % ti->block)
		return weld_fail(c->err, WELD_ERR_FORMAT,
				 "'%s': %s: ne[0]: %llu is not a multiple of the %s block of %lu",
				 c->path, c->where, (unsigned long long)ne[0], ti->name,
				 (unsigned long)ti->block);
	if (!weld_mul_u64(nelem / ti->block, ti->bytes, &nb))
		return weld_fail(c->err, WELD_ERR_FORMAT, "'%s': %s: byte size overflows", c->path,
				 c->where);
	e->t.dtype = dt;
	e->t.quant = ti->block > 1 ? (uint8_t)e->type : 0;
	e->t.nbytes = nb;
	return 0;
}

static int parse_info(struct cur *c, uint64_t i, struct info *e, struct weld_name_table *names)
{
	uint64_t len, ne[GGUF_MAX_DIMS] = { 1, 1, 1, 1 }, nelem = 1;
	uint32_t nd;
	int r;

	snprintf(c->where, sizeof(c->where), "tensor %llu", (unsigned long long)i);
	if (weld_gguf_take_string(c, &e->name, &len, "name") < 0)
		return -1;
	if (!len || len > GGUF_MAX_NAME || strlen(e->name) != len)
		return weld_fail(c->err, WELD_ERR_FORMAT, "'%s': tensor %llu: name: %s", c->path,
				 (unsigned long long)i, !len ? "empty"
				 : strlen(e->name) != len ? "contains a NUL byte"
				 : "longer than the 63 bytes ggml allows");
	snprintf(c->where, sizeof(c->where), "tensor '%s'", e->name);
	r = weld_name_table_add(names, e->name, (size_t)i, NULL);
	if (r != 0)
		return r < 0 ? weld_fail(c->err, WELD_ERR_NOMEM, "'%s': out of memory", c->path)
			     : weld_fail(c->err, WELD_ERR_FORMAT, "'%s': tensor '%s': duplicate name",
					 c->path, e->name);
	if (weld_gguf_take_u32(c, &nd, "n_dims") < 0)
		return -1;
	if (nd < 1 || nd > GGUF_MAX_DIMS)
		return weld_fail(c->err, WELD_ERR_FORMAT,
				 "'%s': tensor '%s': n_dims: %lu, expected 1 to 4", c->path, e->name,
				 (unsigned long)nd);
	for (uint32_t d = 0; d < nd; d++) {
		char field[16];

		snprintf(field, sizeof(field), "ne[%u]", d);
		if (weld_gguf_take_u64(c, &ne[d], field) < 0)
			return -1;
		if (ne[d] > INT64_MAX)
			return weld_fail(c->err, WELD_ERR_FORMAT, "'%s': tensor '%s': %s: negative",
					 c->path, e->name, field);
		if (!weld_mul_u64(nelem, ne[d], &nelem) || nelem > INT64_MAX)
			return weld_fail(c->err, WELD_ERR_FORMAT,
					 "'%s': tensor '%s': %s: element count overflows", c->path,
					 e->name, field);
	}
	if (weld_gguf_take_u32(c, &e->type, "type") < 0 || check_type(c, e, ne, nelem) < 0 ||
	    weld_gguf_take_u64(c, &e->rel, "offset") < 0)
		return -1;
	e->t.ndim = (int)nd;
	for (uint32_t d = 0; d < nd; d++)
		e->t.shape[d] = (int64_t)ne[nd - 1 - d];
	e->t.nelem = nelem;
	e->t.contiguous = true;
	weld_contiguous_strides(&e->t);
	return 0;
}

/* Offsets are the running sum of padded sizes (as gguf.cpp requires), and
 * every tensor lies inside the file. */
static int check_offsets(struct cur *c, struct info *e, size_t n, uint64_t data_start,
			 uint32_t align)
{
	uint64_t pos = 0;

	for (size_t i = 0; i < n; i++) {
		uint64_t end, pad;

		if (e[i].rel != pos)
			return weld_fail(c->err, WELD_ERR_FORMAT,
					 "'%s': tensor '%s': offset: %llu, expected %llu (%s)", c->path,
					 e[i].name, (unsigned long long)e[i].rel, (unsigned long long)pos,
					 e[i].rel % align ? "not aligned"
					 : e[i].rel < pos ? "overlaps the tensor before it"
					 : "a gap before it");
		if (!weld_add_u64(data_start, pos, &e[i].t.offset) ||
		    !weld_add_u64(e[i].t.offset, e[i].t.nbytes, &end) || end > c->size)
			return weld_fail(c->err, WELD_ERR_FORMAT,
					 "'%s': tensor '%s': data: %llu bytes at offset %llu go beyond the end of the file (%llu bytes)",
					 c->path, e[i].name, (unsigned long long)e[i].t.nbytes,
					 (unsigned long long)e[i].t.offset, (unsigned long long)c->size);
		pad = (e[i].t.nbytes + align - 1) / align * align;
		if (pad < e[i].t.nbytes || !weld_add_u64(pos, pad, &pos))
			return weld_fail(c->err, WELD_ERR_FORMAT,
					 "'%s': tensor '%s': offset: the data size overflows", c->path,
					 e[i].name);
	}
	return 0;
}

/* ---------------------------------------------------------------- the file */


/* weld.xxh3 of the first file (one hex string per tensor, in the order of
 * the file, or of the split set) as the weld_xxh3 object of each file that
 * weld_verify() reads; m holds every tensor of the set. */
static int record_hashes(weld_model *m, struct cur *c, const struct header *h)
{
	size_t n = weld_model_count(m), nf = weld_model_file_count(m);
	int r = 0;

	if (!h->xxh3)
		return 0;
	if (h->nxxh3 != n)
		return weld_fail(c->err, WELD_ERR_FORMAT,
				 "'%s': key 'weld.xxh3': %llu checksums for %zu tensors", c->path,
				 (unsigned long long)h->nxxh3, n);
	for (size_t f = 0; !r && f < nf; f++) {
		cJSON *o = cJSON_CreateObject();
		char *text;

		for (size_t i = 0; o && i < n; i++) {
			const struct weld_tensor_info *t = weld_model_tensor(m, i);

			if ((size_t)t->file == f && !cJSON_AddStringToObject(o, t->name, h->xxh3[i])) {
				cJSON_Delete(o);
				o = NULL;
			}
		}
		text = o ? cJSON_PrintUnformatted(o) : NULL;
		cJSON_Delete(o);
		r = !text ? weld_fail(c->err, WELD_ERR_NOMEM, "'%s': out of memory", c->path)
			  : weld_model_set_file_metadata(m, (int)f, "weld_xxh3", text, c->err);
		free(text);
	}
	return r;
}

static int parse_infos(struct cur *c, const struct header *h, struct info *e)
{
	struct weld_name_table names = { 0 };
	int ret = -1;

	if (weld_name_table_init(&names, (size_t)h->n_tensors) < 0)
		return weld_fail(c->err, WELD_ERR_NOMEM, "'%s': out of memory", c->path);
	for (int64_t i = 0; i < h->n_tensors; i++)
		if (parse_info(c, (uint64_t)i, &e[i], &names) < 0)
			goto out;
	ret = 0;
out:
	weld_name_table_free(&names);
	return ret;
}

static int parse_split(weld_model *m, struct cur *c, const struct header *h);

/* One file of a model: split_no is the split number it must have, or -1
 * for a file opened by the user. */
static int parse_one(weld_model *m, int file, int split_no, struct header *h,
		     struct weld_error *err)
{
	struct cur *c = malloc(sizeof(*c));
	struct info *e = NULL;
	uint64_t data_start;
	int ret = -1;

	memset(h, 0, sizeof(*h));
	if (!c)
		return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	c->fd = weld_model_file_fd(m, file);
	c->path = weld_model_file_path(m, (size_t)file);
	c->size = weld_model_file_size(m, file);
	c->pos = c->boff = 0;
	c->blen = 0;
	c->err = err;
	if (weld_gguf_parse_start(c, h) < 0 || weld_gguf_parse_kvs(c, h, m, NULL) < 0)
		goto out;
	e = calloc((size_t)h->n_tensors + 1, sizeof(*e));
	if (!e) {
		weld_fail(err, WELD_ERR_NOMEM, "'%s': out of memory", c->path);
		goto out;
	}
	if (parse_infos(c, h, e) < 0)
		goto out;
	data_start = (c->pos + h->alignment - 1) / h->alignment * h->alignment;
	if (h->n_tensors && data_start > c->size) {
		snprintf(c->where, sizeof(c->where), "header");
		weld_fail(err, WELD_ERR_FORMAT,
			  "'%s': data: starts at %llu, beyond the end of the file (%llu bytes)",
			  c->path, (unsigned long long)data_start, (unsigned long long)c->size);
		goto out;
	}
	if (check_offsets(c, e, (size_t)h->n_tensors, data_start, h->alignment) < 0)
		goto out;
	if (split_no >= 0 && (!h->split || (int)h->split_no != split_no)) {
		if (h->split)
			weld_fail(err, WELD_ERR_FORMAT, "'%s': key 'split.no': %lu, expected %d",
				  c->path, (unsigned long)h->split_no, split_no);
		else
			weld_fail(err, WELD_ERR_FORMAT, "'%s': key 'split.count': missing, expected "
				  "a file of a split set", c->path);
		goto out;
	}
	for (int64_t i = 0; i < h->n_tensors; i++) {
		e[i].t.name = e[i].name;
		e[i].t.file = file;
		if (weld_model_add_tensor(m, &e[i].t, err) < 0)
			goto out;
	}
	ret = split_no < 0 && h->split && h->split_count > 1 ? parse_split(m, c, h) : 0;
	if (!ret && split_no < 0)
		ret = record_hashes(m, c, h);
out:
	for (int64_t i = 0; e && i < h->n_tensors; i++)
		free(e[i].name);
	free(e);
	free(c);
	return ret;
}

/* ---------------------------------------------------------------- split sets */

/* The prefix of a first split file "PREFIX-00001-of-0000N.gguf", or -1. */
static int split_prefix(const char *path, uint32_t count, size_t *plen)
{
	char tail[40];
	size_t n = strlen(path), t;

	t = (size_t)snprintf(tail, sizeof(tail), "-%05u-of-%05u.gguf", 1u, (unsigned)count);
	if (n < t || strcmp(path + n - t, tail) != 0)
		return -1;
	*plen = n - t;
	return 0;
}

static int parse_split(weld_model *m, struct cur *c, const struct header *h)
{
	const char *first = c->path;
	uint64_t total = (uint64_t)h->n_tensors;
	size_t plen;

	if (h->split_no != 0)
		return weld_fail(c->err, WELD_ERR_FORMAT,
				 "'%s': key 'split.no': %lu: this is not the first file of its split set; give the file named -00001-of-%05lu.gguf",
				 first, (unsigned long)h->split_no, (unsigned long)h->split_count);
	if (split_prefix(first, h->split_count, &plen) < 0)
		return weld_fail(c->err, WELD_ERR_FORMAT,
				 "'%s': key 'split.count': %lu files, but the name does not end in -00001-of-%05lu.gguf",
				 first, (unsigned long)h->split_count, (unsigned long)h->split_count);
	for (uint32_t k = 1; k < h->split_count; k++) {
		struct header hk;
		char *p = malloc(plen + 40);
		int file, r;

		if (!p)
			return weld_fail(c->err, WELD_ERR_NOMEM, "out of memory");
		memcpy(p, first, plen);
		snprintf(p + plen, 40, "-%05u-of-%05u.gguf", k + 1, (unsigned)h->split_count);
		file = weld_model_add_file(m, p, c->err);
		free(p);
		if (file < 0)
			return -1;
		r = parse_one(m, file, (int)k, &hk, c->err);
		if (!r && (hk.split_count != h->split_count))
			r = weld_fail(c->err, WELD_ERR_FORMAT,
				      "'%s': key 'split.count': %lu, but the first file says %lu",
				      weld_model_file_path(m, (size_t)file),
				      (unsigned long)hk.split_count, (unsigned long)h->split_count);
		total += (uint64_t)hk.n_tensors;
		weld_gguf_header_free(&hk);
		if (r < 0)
			return -1;
	}
	if (h->split_tensors >= 0 && total != (uint64_t)h->split_tensors)
		return weld_fail(c->err, WELD_ERR_FORMAT,
				 "'%s': key 'split.tensors.count': %lld, but the %lu files hold %llu tensors",
				 first, (long long)h->split_tensors, (unsigned long)h->split_count,
				 (unsigned long long)total);
	return 0;
}

static int gguf_parse(weld_model *m, int file, struct weld_error *err)
{
	struct header h;
	int r = parse_one(m, file, -1, &h, err);

	weld_gguf_header_free(&h);
	return r;
}

static bool gguf_probe(const unsigned char *head, size_t n)
{
	return n >= 4 && memcmp(head, "GGUF", 4) == 0;
}

const struct weld_format weld_gguf_format = {
	.name = "gguf",
	.probe = gguf_probe,
	.parse = gguf_parse,
	.damaged = NULL,
};
