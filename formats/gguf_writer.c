/*
 * gguf_writer.c - write a GGUF v3 model (llama.cpp) from a merge: one file,
 * or a split set of files each holding whole tensors.
 *
 *   "GGUF" | u32 3 | i64 tensor_count (of this file) | i64 kv_count
 *   file 1 (or the one file): the base's key/value pairs, in its order,
 *       verbatim, except general.file_type (set to match),
 *       general.alignment and split.* (dropped: the data is aligned to
 *       32), general.quantization_version (2 when a tensor is
 *       quantised), weld.*; then
 *   split.no (u16, 0-based), split.count (u16), split.tensors.count (i32,
 *       over the set): in every file of a split set; later files hold
 *       these three keys only
 *   file 1: weld.version (string), weld.recipe (string, when there is a
 *       recipe; in a GGUF output its weld.shard_size says whether the
 *       output is split: 0 for one file), weld.xxh3 (array of strings: the
 *       XXH3-64 of each tensor's stored bytes, 16 hex digits, in tensor
 *       order over the set; filled at commit)
 *   tensor infos of this file: the base's tensor order (tensors the base
 *       lacks after, by name), ne = the shape reversed, offsets the
 *       running sum of sizes padded to 32 from this file's data
 *   zero padding to 32, then the data, each tensor padded to 32
 *
 * A split set (--shard-size given): OUT = DIR/STEM.gguf is written as
 * DIR/STEM-00001-of-0000N.gguf ... (llama.cpp's gguf-split names), a file
 * starting a new one when the next tensor would take its data past the
 * shard size (a tensor larger than that has a file of its own). The set
 * is published with output_dir.c's weld_outdir_publish_set().
 *
 * The layout is fixed at open and the files created at their final size, so
 * that tensors can then be written at known offsets from any thread, as
 * the safetensors writer does (model.h). A tensor arrives in its dtype
 * (F32, F16 or BF16 for floats) and is stored in its ggml type: as is,
 * or decoded and re-encoded (quant.c), block by block, the elements of a
 * partial block kept until the next write. The output is published as the
 * file `out` with output_dir.c, like every output. The bytes of each
 * header, and the ggml types, are made in gguf_header.c.
 */
#include "format.h"
#include "gguf_writer_impl.h"
#include "quant.h"

#include <cjson/cJSON.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define ALIGN WELD_GGUF_ALIGNMENT
#define FILE_NAME "model.gguf"
#define MAX_FILES 99999         /* five digits in the names; split.count is u16 */

/* ---------------------------------------------------------------- open */

static int cmp_order(const void *a, const void *b)
{
	const struct gtensor *x = a, *y = b;

	if (x->base_pos != y->base_pos)
		return x->base_pos < y->base_pos ? -1 : 1;
	return strcmp(x->name, y->name);
}

/* The base's tensors in file order: pos[i] for tensor i of the base. */
static int64_t base_position(const weld_model *base, const char *name)
{
	int64_t i = base ? weld_model_find(base, name) : -1;
	const struct weld_tensor_info *t;

	if (i < 0)
		return INT64_MAX;
	t = weld_model_tensor(base, (size_t)i);
	/* file index, then offset: the order of the infos in the files */
	return (int64_t)((uint64_t)t->file << 48 | (t->offset & ((1ull << 48) - 1)));
}

static int add_tensor(struct weld_gguf_writer *w, struct gtensor *g,
		      const struct weld_out_tensor *t, const struct weld_writer_opts *o,
		      struct weld_error *err)
{
	const weld_model *base = o->gguf_base;
	int64_t bi = weld_model_find(base, t->name);
	int type;
	uint64_t ne0 = t->ndim ? (uint64_t)t->shape[t->ndim - 1] : 1, rows;

	if (strlen(t->name) > 63 || !t->name[0])
		return weld_fail(err, WELD_ERR_ARG,
				 "'%s': tensor '%s': a GGUF name is 1 to 63 bytes", w->out, t->name);
	if (t->ndim > 4)
		return weld_fail(err, WELD_ERR_ARG, "'%s': tensor '%s': %d dimensions, GGUF holds 4",
				 w->out, t->name, t->ndim);
	type = weld_gguf_store_type(bi >= 0 ? weld_model_tensor(base, (size_t)bi) : NULL,
				    t->dtype, o->gguf_type, t->ndim, ne0);
	if (type < 0)
		return weld_fail(err, WELD_ERR_ARG, "'%s': tensor '%s': dtype %s cannot be stored in GGUF",
				 w->out, t->name, weld_dtype_name(t->dtype));
	g->name = strdup(t->name);
	if (!g->name)
		return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	g->dtype = t->dtype;
	g->type = (uint32_t)type;
	g->ndim = t->ndim ? t->ndim : 1;
	g->ne[0] = 1;
	g->nelem = 1;
	for (int d = 0; d < t->ndim; d++) {
		g->ne[d] = (uint64_t)t->shape[t->ndim - 1 - d];
		if (!weld_mul_u64(g->nelem, g->ne[d], &g->nelem))
			return weld_fail(err, WELD_ERR_ARG, "'%s': tensor '%s': too large", w->out,
					 t->name);
	}
	rows = g->nelem / weld_ggml_type(g->type)->block;
	if (!weld_mul_u64(rows, weld_ggml_type(g->type)->bytes, &g->nbytes))
		return weld_fail(err, WELD_ERR_ARG, "'%s': tensor '%s': too large", w->out, t->name);
	g->base_pos = base_position(base, t->name);
	w->quantised |= weld_ggml_type(g->type)->block > 1;
	return 0;
}

/* Cut the tensors (in order) into files of at most `split` data bytes
 * (0: one file); each file's tensors get offsets from its data start. */
static int cut_files(struct weld_gguf_writer *w, uint64_t split, struct weld_error *err)
{
	uint64_t pos = 0;

	w->f = calloc(w->n ? w->n : 1, sizeof(*w->f));
	if (!w->f)
		return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	w->nf = 1;
	for (size_t i = 0; i < w->n; i++) {
		uint64_t sz = (w->t[i].nbytes + ALIGN - 1) / ALIGN * ALIGN;
		struct gfile *f = &w->f[w->nf - 1];

		if (split && f->count && (pos + sz < pos || pos + sz > split)) {
			f = &w->f[w->nf++];
			f->first = i;
			pos = 0;
		}
		w->t[i].file = w->nf - 1;
		w->t[i].offset = pos;
		f->count++;
		pos += sz;
	}
	for (size_t k = 0; k < w->nf; k++)
		w->f[k].fd = -1;
	if (w->nf > MAX_FILES)
		return weld_fail(err, WELD_ERR_ARG,
				 "'%s': --shard-size cuts the output into %zu files; a GGUF split "
				 "set holds at most %d", w->out, w->nf, MAX_FILES);
	return 0;
}

static int lay_out(struct weld_gguf_writer *w, const struct weld_out_tensor *t, size_t n,
		   const struct weld_writer_opts *o, struct weld_error *err)
{
	w->t = calloc(n ? n : 1, sizeof(*w->t));
	if (!w->t || weld_name_table_init(&w->names, n) < 0)
		return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	w->n = n;
	for (size_t i = 0; i < n; i++)
		if (add_tensor(w, &w->t[i], &t[i], o, err) < 0)
			return -1;
	if (o->gguf_split && n > INT32_MAX)
		return weld_fail(err, WELD_ERR_ARG, "'%s': %zu tensors; a GGUF split set holds at "
				 "most %d", w->out, n, INT32_MAX);
	qsort(w->t, n, sizeof(*w->t), cmp_order);
	for (size_t i = 0; i < n; i++)
		switch (weld_name_table_add(&w->names, w->t[i].name, i, NULL)) {
		case 1:
			return weld_fail(err, WELD_ERR_ARG, "'%s': tensor '%s': written twice", w->out,
					 w->t[i].name);
		case -1:
			return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
		}
	w->split = o->gguf_split > 0;
	if (cut_files(w, o->gguf_split, err) < 0)
		return -1;
	w->file_type = weld_gguf_file_type(w->t, n);
	for (size_t k = 0; k < w->nf; k++) {
		struct gfile *f = &w->f[k];
		struct gguf_out count = { NULL, 0 };
		uint64_t end = 0;

		weld_gguf_header(w, k, &count, false);
		f->header_len = count.len;
		f->data_start = (count.len + ALIGN - 1) / ALIGN * ALIGN;
		if (f->count) {
			const struct gtensor *l = &w->t[f->first + f->count - 1];

			end = l->offset + (l->nbytes + ALIGN - 1) / ALIGN * ALIGN;
		}
		f->total = f->data_start + end;
	}
	return 0;
}

/* STEM-0000k-of-0000N.gguf for file k of a set whose output is OUT =
 * DIR/STEM.gguf (or DIR/STEM), in a new string. */
static char *set_name(const char *base, size_t k, size_t n)
{
	size_t l = strlen(base);
	char *s;

	if (l > 5 && !strcmp(base + l - 5, ".gguf"))
		l -= 5;
	s = malloc(l + 32);
	if (s)
		snprintf(s, l + 32, "%.*s-%05zu-of-%05zu.gguf", (int)l, base, k + 1, n);
	return s;
}

/* Name every file: its name in the set, its path, its label. */
static int name_files(struct weld_gguf_writer *w, struct weld_error *err)
{
	for (size_t k = 0; k < w->nf; k++) {
		struct gfile *f = &w->f[k];

		f->name = w->split ? set_name(w->dir.base, k, w->nf) : strdup(FILE_NAME);
		if (!f->name)
			return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
		if (strlen(f->name) > NAME_MAX)
			return weld_fail(err, WELD_ERR_ARG, "'%s': the name is longer than %d bytes",
					 f->name, NAME_MAX);
		f->path = weld_outdir_path(&w->dir, f->name);
		f->label = w->split ? weld_outdir_label(&w->dir, f->name) : strdup(w->out);
		if (!f->path || !f->label)
			return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
		if (weld_outdir_add(&w->dir, f->name, err) < 0)
			return -1;
	}
	return 0;
}

/* Create every file at its final size. */
static int create_files(struct weld_gguf_writer *w, struct weld_error *err)
{
	for (size_t k = 0; k < w->nf; k++) {
		struct gfile *f = &w->f[k];

		f->fd = open(f->path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
		if (f->fd < 0)
			return weld_fail_errno(err, "cannot create '%s'", f->label);
		if (ftruncate(f->fd, (off_t)f->total) < 0)
			return weld_fail_errno(err, "cannot make '%s' %llu bytes long", f->label,
					       (unsigned long long)f->total);
	}
	return 0;
}

/*
 * The recipe a GGUF output stores says how it was written: its
 * weld.shard_size is the size the set was cut at, 0 for one file (the
 * default of a GGUF output), so that running it again gives the same
 * files. A recipe without one (convert's) is stored as it is.
 */
static int stored_recipe(struct weld_gguf_writer *w, const char *json, uint64_t split,
			 struct weld_error *err)
{
	cJSON *root = cJSON_Parse(json);
	cJSON *weld = cJSON_GetObjectItemCaseSensitive(root, "weld");
	cJSON *ss = cJSON_GetObjectItemCaseSensitive(weld, "shard_size");

	if (!root || !cJSON_IsNumber(ss) || ss->valuedouble == (double)split)
		w->recipe = strdup(json);
	else if (cJSON_SetNumberValue(ss, (double)split), 1)
		w->recipe = cJSON_PrintUnformatted(root);
	cJSON_Delete(root);
	return w->recipe ? 0 : weld_fail(err, WELD_ERR_NOMEM, "out of memory");
}

int weld_gguf_writer_open(struct weld_gguf_writer **out, const char *path,
			  const struct weld_out_tensor *t, size_t n,
			  const struct weld_writer_opts *o, struct weld_error *err)
{
	struct weld_gguf_writer *w = calloc(1, sizeof(*w));
	const weld_model *base = o->gguf_base;

	*out = NULL;
	if (!w)
		return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	w->out = path;
	w->dir.owner_fd = -1;
	if (o->recipe_json && stored_recipe(w, o->recipe_json, o->gguf_split, err) < 0)
		goto fail;
	if (weld_gguf_read_kvs(weld_model_file_path(base, 0), &w->kv, &w->nkv, err) < 0 ||
	    lay_out(w, t, n, o, err) < 0)
		goto fail;
	if ((w->split ? weld_outdir_init_set(&w->dir, path, o->force, err)
		      : weld_outdir_init(&w->dir, path, o->force, true, err)) < 0)
		goto fail;
	w->out = w->dir.out;
	if (name_files(w, err) < 0 || weld_outdir_create(&w->dir, err) < 0 ||
	    create_files(w, err) < 0)
		goto fail;
	*out = w;
	return 0;
fail:
	weld_gguf_writer_close(w);
	return -1;
}

int weld_gguf_set_paths(const char *out, const struct weld_out_tensor *t, size_t n,
			const struct weld_writer_opts *o, char ***paths, size_t *np,
			struct weld_error *err)
{
	struct weld_gguf_writer *w = calloc(1, sizeof(*w));
	const char *slash = strrchr(out, '/');
	int r = -1;

	*paths = NULL;
	*np = 0;
	if (!w)
		return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	w->out = out;
	w->dir.owner_fd = -1;
	if (lay_out(w, t, n, o, err) < 0)
		goto out;
	r = 0;
	if (!w->split)
		goto out;
	if (!(*paths = calloc(w->nf, sizeof(**paths)))) {
		r = weld_fail(err, WELD_ERR_NOMEM, "out of memory");
		goto out;
	}
	for (size_t k = 0; k < w->nf; k++, ++*np) {
		char *name = set_name(slash ? slash + 1 : out, k, w->nf);
		char *dir = slash ? strndup(out, (size_t)(slash - out) + (slash == out)) : NULL;

		(*paths)[k] = !name ? NULL : !slash ? strdup(name) : dir ? weld_path_join(dir, name)
										 : NULL;
		free(name);
		free(dir);
		if (!(*paths)[k]) {
			r = weld_fail(err, WELD_ERR_NOMEM, "out of memory");
			goto out;
		}
	}
out:
	weld_gguf_writer_close(w);
	return r;
}

int64_t weld_gguf_writer_find(struct weld_gguf_writer *w, const char *name)
{
	size_t i;

	return weld_name_table_find(&w->names, name, &i) ? (int64_t)i : -1;
}

/* ---------------------------------------------------------------- data */

/* Store len bytes of t's data, hashing them. */
static int store(struct weld_gguf_writer *w, struct gtensor *t, const void *data, size_t len,
		 struct weld_error *err)
{
	if (!len)
		return 0;
	if (!t->xxh) {
		if (!(t->xxh = XXH3_createState()))
			return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
		XXH3_64bits_reset(t->xxh);
	}
	const struct gfile *f = &w->f[t->file];

	if (weld_pwrite_full(f->fd, data, len, f->data_start + t->offset + t->out_done, f->label,
			     err) < 0)
		return -1;
	XXH3_64bits_update(t->xxh, data, len);
	t->out_done += len;
	return 0;
}

/* Elements converted per step: the writer's own buffers stay this small
 * whatever the chunk a write brings (a multiple of every block). */
#define STEP 65536

/* Encode n floats (whole blocks) of t and store them; buf holds the
 * encoded bytes of STEP floats. */
static int encode(struct weld_gguf_writer *w, struct gtensor *t, const float *f, size_t n,
		  unsigned char *buf, struct weld_error *err)
{
	const struct weld_ggml_type_info *q = weld_ggml_type(t->type);

	for (size_t k = 0; k < n; k += STEP) {
		size_t m = n - k < STEP ? n - k : STEP;

		weld_ggml_encode(t->type, f + k, buf, m);
		if (store(w, t, buf, m / q->block * q->bytes, err) < 0)
			return -1;
	}
	return 0;
}

/* Elements arriving in another type than the stored one: decoded, and
 * encoded in whole blocks, STEP at a time; the rest of a block waits in
 * t->pend. */
static int convert(struct weld_gguf_writer *w, struct gtensor *t, const unsigned char *p,
		   size_t n, unsigned char *buf, float *f, struct weld_error *err)
{
	const size_t B = weld_ggml_type(t->type)->block, es = weld_dtype_size(t->dtype);

	if (t->npend) {
		size_t k = B - t->npend < n ? B - t->npend : n;

		weld_decode_f32(t->dtype, p, t->pend + t->npend, k);
		t->npend += k;
		p += k * es;
		n -= k;
		if (t->npend < B)
			return 0;
		t->npend = 0;
		if (encode(w, t, t->pend, B, buf, err) < 0)
			return -1;
	}
	while (n >= B) {
		size_t m = n / B * B < STEP ? n / B * B : STEP;
		const float *src = f;

		/* float32 data in place is encoded from where it is */
		if (t->dtype == WELD_F32 && (uintptr_t)p % _Alignof(float) == 0)
			src = (const float *)(const void *)p;
		else
			weld_decode_f32(t->dtype, p, f, m);
		if (encode(w, t, src, m, buf, err) < 0)
			return -1;
		p += m * es;
		n -= m;
	}
	weld_decode_f32(t->dtype, p, t->pend, n);
	t->npend = n;
	return 0;
}

int weld_gguf_writer_write(struct weld_gguf_writer *w, size_t i, const void *data, size_t len,
			   struct weld_error *err)
{
	struct gtensor *t = &w->t[i];
	size_t es = weld_dtype_size(t->dtype), n = len / es;
	unsigned char *buf;
	int r;

	if (len % es || n > t->nelem - t->in_done)
		return weld_fail(err, WELD_ERR_ARG, "'%s': tensor '%s': more bytes than its size",
				 w->out, t->name);
	t->in_done += n;
	if (weld_gguf_dtype_type(t->dtype) == (int)t->type)
		return store(w, t, data, len, err);
	/* encoded bytes of STEP floats: at most 4 per element (F32) */
	buf = malloc(STEP * sizeof(float) * 2);
	if (!buf)
		return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	r = convert(w, t, data, n, buf, (float *)(void *)(buf + STEP * sizeof(float)), err);
	free(buf);
	return r;
}

/* ---------------------------------------------------------------- commit */

/* Write file k's final header, fsync and close it. */
static int finish_file(struct weld_gguf_writer *w, size_t k, struct weld_error *err)
{
	struct gfile *f = &w->f[k];
	struct gguf_out o = { NULL, 0 };
	int r;

	o.p = calloc(1, (size_t)f->data_start);
	if (!o.p)
		return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	weld_gguf_header(w, k, &o, true);
	r = o.len == f->header_len ? weld_pwrite_full(f->fd, o.p, (size_t)f->data_start, 0,
						      f->label, err)
				   : weld_fail(err, WELD_ERR_ARG, "'%s': the header changed length",
					       f->label);
	free(o.p);
	if (r < 0)
		return -1;
	if (fsync(f->fd) < 0)
		return weld_fail_errno(err, "fsync of '%s' failed", f->label);
	r = close(f->fd);
	f->fd = -1;
	if (r < 0)
		return weld_fail_errno(err, "close of '%s' failed", f->label);
	return 0;
}

int weld_gguf_writer_commit(struct weld_gguf_writer *w, struct weld_error *err)
{
	for (size_t i = 0; i < w->n; i++) {
		struct gtensor *t = &w->t[i];

		if (t->in_done != t->nelem || t->out_done != t->nbytes || t->npend)
			return weld_fail(err, WELD_ERR_ARG,
					 "'%s': tensor '%s': %llu of %llu elements written", w->out,
					 t->name, (unsigned long long)t->in_done,
					 (unsigned long long)t->nelem);
		t->hash = t->xxh ? XXH3_64bits_digest(t->xxh) : XXH3_64bits("", 0);
	}
	for (size_t k = 0; k < w->nf; k++)
		if (finish_file(w, k, err) < 0)
			return -1;
	if (w->split)
		return weld_outdir_publish_set(&w->dir, err);
	return weld_outdir_publish(&w->dir, w->f[0].path, err);
}

void weld_gguf_writer_close(struct weld_gguf_writer *w)
{
	if (!w)
		return;
	for (size_t k = 0; w->f && k < w->nf; k++) {
		if (w->f[k].fd >= 0)
			close(w->f[k].fd);
		free(w->f[k].name);
		free(w->f[k].path);
		free(w->f[k].label);
	}
	free(w->f);
	weld_outdir_release(&w->dir);
	for (size_t i = 0; i < w->n; i++) {
		free(w->t[i].name);
		if (w->t[i].xxh)
			XXH3_freeState(w->t[i].xxh);
	}
	weld_gguf_kvs_free(w->kv, w->nkv);
	weld_name_table_free(&w->names);
	free(w->t);
	free(w->recipe);
	free(w);
}
