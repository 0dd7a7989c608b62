/*
 * safetensors_writer.c - write a Hugging Face safetensors model: the
 * layout of its shards, their headers, the tensor data and the XXH3-64 of
 * each tensor. The folder itself (temporary, then published) is
 * output_dir.c's.
 *
 * The whole layout is fixed at open: tensors sorted as the reference writer
 * sorts them (wider dtypes first, then by name), split greedily into shards
 * of at most shard_size bytes, each shard's header laid out with a
 * placeholder hash per tensor. Files are created at their final size, and
 * data is then written at known offsets, from any thread, one thread per
 * tensor at a time. Commit rewrites each header with the real XXH3-64 values
 * (same length, so no data moves), writes the index and the copied config
 * files, fsyncs everything, and renames the temporary folder into place.
 *
 *   shard:  u64 LE N | N bytes of JSON header, space-padded to a multiple
 *           of 8 | tensor data in write order, packed
 *   header: {"__metadata__": {"format": "pt", "weld_version": ...,
 *           ["weld_recipe": ...,] "weld_xxh3": "{name: hex, ...}"},
 *           name: {"dtype", "shape", "data_offsets": [begin, end]}, ...}
 */
#include "format.h"
#include "output_dir.h"

#include <cjson/cJSON.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>

#define MAX_HEADER 100000000ULL

struct out_tensor {
	char *name;
	enum weld_dtype dtype;
	int ndim;
	int64_t shape[WELD_MAX_DIMS];
	uint64_t nbytes;
	size_t shard;
	uint64_t begin;     /* offset in the shard's data buffer */
	uint64_t written;
	XXH3_state_t *xxh;
	uint64_t hash;
	bool done;
};

struct shard {
	char *path;         /* inside the temporary folder */
	char *name;
	int fd;
	uint64_t header_len;/* padded JSON length, N */
	uint64_t data_len;
	size_t first, count;/* range in the sorted tensor array */
};

struct weld_writer {
	struct weld_outdir dir;
	struct out_tensor *t;
	size_t n;
	struct shard *s;
	size_t ns;
	struct weld_writer_opts opts;
	char *recipe, *copy_from, *torch_dtype, *extra_name, *extra_data;
	struct out_tensor **names;  /* the tensors in name order, for find */
};

static char *xstrdup(const char *s)
{
	size_t n;
	char *p;

	if (!s)
		return NULL;
	n = strlen(s) + 1;
	p = malloc(n);
	if (p)
		memcpy(p, s, n);
	return p;
}

static int cmp_write_order(const void *a, const void *b)
{
	const struct out_tensor *x = a, *y = b;
	int rx = weld_dtype_write_rank(x->dtype), ry = weld_dtype_write_rank(y->dtype);

	if (rx != ry)
		return rx > ry ? -1 : 1;
	return strcmp(x->name, y->name);
}

/* The header JSON of shard k, with real hashes once `final`. */
static char *shard_header(const weld_writer *w, size_t k, bool final)
{
	const struct shard *s = &w->s[k];
	cJSON *root = cJSON_CreateObject(), *meta = cJSON_CreateObject();
	cJSON *hashes = cJSON_CreateObject();
	char *hashes_text, *out = NULL;
	bool ok = root && meta && hashes;

	if (ok) {
		cJSON_AddItemToObject(root, "__metadata__", meta);
		meta = NULL;
	}
	for (size_t i = s->first; ok && i < s->first + s->count; i++) {
		char hex[17] = "0000000000000000";

		if (final)
			weld_hex64(w->t[i].hash, hex);
		ok = cJSON_AddStringToObject(hashes, w->t[i].name, hex) != NULL;
	}
	hashes_text = ok ? cJSON_PrintUnformatted(hashes) : NULL;
	if (ok && hashes_text) {
		cJSON *m = cJSON_GetObjectItemCaseSensitive(root, "__metadata__");

		ok = cJSON_AddStringToObject(m, "format", "pt") &&
		     cJSON_AddStringToObject(m, "weld_version", WELD_VERSION) &&
		     (!w->recipe || cJSON_AddStringToObject(m, "weld_recipe", w->recipe)) &&
		     cJSON_AddStringToObject(m, "weld_xxh3", hashes_text);
	} else {
		ok = false;
	}
	for (size_t i = s->first; ok && i < s->first + s->count; i++) {
		const struct out_tensor *t = &w->t[i];
		cJSON *o = cJSON_CreateObject(), *shape = cJSON_CreateArray();
		cJSON *offs = cJSON_CreateArray();

		ok = o && shape && offs;
		if (ok) {
			cJSON_AddItemToObject(root, t->name, o);
			cJSON_AddStringToObject(o, "dtype", weld_dtype_name(t->dtype));
			cJSON_AddItemToObject(o, "shape", shape);
			cJSON_AddItemToObject(o, "data_offsets", offs);
			for (int d = 0; d < t->ndim; d++)
				cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)t->shape[d]));
			cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)t->begin));
			cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)(t->begin + t->nbytes)));
		} else {
			cJSON_Delete(o);
			cJSON_Delete(shape);
			cJSON_Delete(offs);
		}
	}
	if (ok)
		out = cJSON_PrintUnformatted(root);
	cJSON_free(hashes_text);
	cJSON_Delete(hashes);
	cJSON_Delete(meta);
	cJSON_Delete(root);
	return out;
}

static int cmp_name_ptr(const void *a, const void *b)
{
	return strcmp((*(struct out_tensor *const *)a)->name,
		      (*(struct out_tensor *const *)b)->name);
}

/* The tensors in name order (caller frees), or NULL. */
static struct out_tensor **by_name(const weld_writer *w)
{
	struct out_tensor **p = malloc((w->n ? w->n : 1) * sizeof(*p));

	if (!p)
		return NULL;
	for (size_t i = 0; i < w->n; i++)
		p[i] = &w->t[i];
	qsort(p, w->n, sizeof(*p), cmp_name_ptr);
	return p;
}

static int validate_tensors(const struct weld_out_tensor *t, size_t n,
			    struct weld_error *err)
{
	for (size_t i = 0; i < n; i++) {
		uint64_t ne = 1;

		if (strcmp(t[i].name, "__metadata__") == 0)
			return weld_fail(err, WELD_ERR_ARG, "tensor name '__metadata__' is reserved");
		if (t[i].ndim < 0 || t[i].ndim > WELD_MAX_DIMS)
			return weld_fail(err, WELD_ERR_ARG, "tensor '%s': bad rank %d",
					 t[i].name, t[i].ndim);
		for (int d = 0; d < t[i].ndim; d++)
			if (t[i].shape[d] < 0 || !weld_mul_u64(ne, (uint64_t)t[i].shape[d], &ne))
				return weld_fail(err, WELD_ERR_ARG, "tensor '%s': bad shape",
						 t[i].name);
		if (!weld_mul_u64(ne, weld_dtype_size(t[i].dtype), &ne))
			return weld_fail(err, WELD_ERR_ARG, "tensor '%s': too large", t[i].name);
	}
	return 0;
}

/* Greedy split in write order: a new shard when the next tensor would
 * push the current one past shard_size; a larger tensor gets its own. */
static int plan_shards(weld_writer *w, struct weld_error *err)
{
	uint64_t cur = 0;

	w->s = calloc(w->n ? w->n : 1, sizeof(*w->s));
	if (!w->s)
		return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	w->ns = 1;
	for (size_t i = 0; i < w->n; i++) {
		struct out_tensor *t = &w->t[i];
		struct shard *s = &w->s[w->ns - 1];

		if (w->opts.shard_size && !w->opts.single_file && s->count &&
		    cur + t->nbytes > w->opts.shard_size) {
			s = &w->s[w->ns++];
			s->first = i;
			cur = 0;
		}
		t->shard = (size_t)(s - w->s);
		t->begin = cur;
		cur += t->nbytes;
		s->count++;
		s->data_len = cur;
	}
	for (size_t k = 0; k < w->ns; k++) {
		char name[64];
		char *h;

		if (w->ns == 1)
			snprintf(name, sizeof(name), "model.safetensors");
		else
			snprintf(name, sizeof(name), "model-%05zu-of-%05zu.safetensors", k + 1, w->ns);
		w->s[k].name = xstrdup(name);
		w->s[k].path = weld_outdir_path(&w->dir, name);
		w->s[k].fd = -1;
		h = shard_header(w, k, false);
		if (!w->s[k].name || !w->s[k].path || !h) {
			free(h);
			return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
		}
		w->s[k].header_len = (strlen(h) + 7) / 8 * 8;
		free(h);
		if (w->s[k].header_len > MAX_HEADER)
			return weld_fail(err, WELD_ERR_ARG,
					 "shard '%s': header of %llu bytes is over the 100 MB limit",
					 name, (unsigned long long)w->s[k].header_len);
	}
	return 0;
}

/* Fill w->t from the caller's tensors, in write order, names unique. */
static int add_tensors(weld_writer *w, const struct weld_out_tensor *t, size_t n,
		       struct weld_error *err)
{
	struct out_tensor **ord;

	w->t = calloc(n ? n : 1, sizeof(*w->t));
	if (!w->t)
		return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	w->n = n;
	for (size_t i = 0; i < n; i++) {
		struct out_tensor *o = &w->t[i];

		o->name = xstrdup(t[i].name);
		if (!o->name)
			return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
		o->dtype = t[i].dtype;
		o->ndim = t[i].ndim;
		o->nbytes = weld_dtype_size(t[i].dtype);
		for (int d = 0; d < t[i].ndim; d++) {
			o->shape[d] = t[i].shape[d];
			o->nbytes *= (uint64_t)t[i].shape[d];
		}
	}
	qsort(w->t, n, sizeof(*w->t), cmp_write_order);
	ord = by_name(w);
	if (!ord)
		return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	w->names = ord;
	for (size_t i = 1; i < n; i++)
		if (strcmp(ord[i - 1]->name, ord[i]->name) == 0)
			return weld_fail(err, WELD_ERR_ARG, "tensor '%s': written twice",
					 ord[i]->name);
	return 0;
}

/* Name every file of the output, create the temporary folder and the shards. */
static int create_files(weld_writer *w, struct weld_error *err)
{
	for (size_t k = 0; k < w->ns; k++)
		if (weld_outdir_add(&w->dir, w->s[k].name, err) < 0)
			return -1;
	if (weld_outdir_add(&w->dir, "model.safetensors.index.json", err) < 0 ||
	    (w->extra_name && weld_outdir_add(&w->dir, w->extra_name, err) < 0) ||
	    weld_outdir_add_side_files(&w->dir, err) < 0 ||
	    weld_outdir_create(&w->dir, err) < 0)
		return -1;
	for (size_t k = 0; k < w->ns; k++) {
		struct shard *s = &w->s[k];

		s->fd = open(s->path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
		if (s->fd < 0)
			return weld_fail_errno(err, "cannot create '%s'", s->path);
		if (ftruncate(s->fd, (off_t)(8 + s->header_len + s->data_len)) < 0)
			return weld_fail_errno(err, "cannot size '%s'", s->path);
	}
	return 0;
}

int weld_writer_open(weld_writer **out, const char *dir,
		     const struct weld_out_tensor *t, size_t n,
		     const struct weld_writer_opts *opts, struct weld_error *err)
{
	weld_writer *w;

	*out = NULL;
	w = calloc(1, sizeof(*w));
	if (!w)
		return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	if (weld_outdir_init(&w->dir, dir, opts->force, err) < 0 ||
	    validate_tensors(t, n, err) < 0)
		goto fail;
	w->opts = *opts;
	w->recipe = xstrdup(opts->recipe_json);
	w->copy_from = xstrdup(opts->copy_from);
	w->torch_dtype = xstrdup(opts->torch_dtype);
	w->extra_name = xstrdup(opts->extra_name);
	w->extra_data = xstrdup(opts->extra_data);
	if (add_tensors(w, t, n, err) < 0 || plan_shards(w, err) < 0 ||
	    create_files(w, err) < 0)
		goto fail;
	*out = w;
	return 0;
fail:
	weld_writer_close(w);
	return -1;
}

int64_t weld_writer_find(const weld_writer *w, const char *name)
{
	size_t lo = 0, hi = w->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(w->names[mid]->name, name);

		if (c == 0)
			return w->names[mid] - w->t;
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -1;
}

size_t weld_writer_shards(const weld_writer *w)
{
	return w->ns;
}

int weld_writer_write(weld_writer *w, size_t i, const void *data, size_t len,
		      struct weld_error *err)
{
	struct out_tensor *t = &w->t[i];
	struct shard *s = &w->s[t->shard];
	uint64_t off;

	if (len > t->nbytes - t->written)
		return weld_fail(err, WELD_ERR_ARG, "tensor '%s': more bytes than its size",
				 t->name);
	/* Nothing to do; and on a finished tensor, a new hash state would
	 * replace its hash with the hash of no bytes. */
	if (!len)
		return 0;
	if (!t->xxh) {
		t->xxh = XXH3_createState();
		if (!t->xxh)
			return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
		XXH3_64bits_reset(t->xxh);
	}
	off = 8 + s->header_len + t->begin + t->written;
	if (weld_pwrite_full(s->fd, data, len, off, s->path, err) < 0)
		return -1;
#ifdef SYNC_FILE_RANGE_WRITE
	/* start writing back now, so that commit's fsync has little left to
	 * wait for; a hint only, its failure is commit's to report */
	(void)sync_file_range(s->fd, (off_t)off, (off_t)len, SYNC_FILE_RANGE_WRITE);
#endif
	XXH3_64bits_update(t->xxh, data, len);
	t->written += len;
	if (t->written == t->nbytes) {
		t->hash = XXH3_64bits_digest(t->xxh);
		XXH3_freeState(t->xxh);
		t->xxh = NULL;
		t->done = true;
	}
	return 0;
}

static int write_index(weld_writer *w, struct weld_error *err)
{
	cJSON *root = cJSON_CreateObject(), *meta, *map;
	uint64_t total = 0;
	char *text, *path;
	int r;

	if (!root)
		return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	meta = cJSON_AddObjectToObject(root, "metadata");
	map = cJSON_AddObjectToObject(root, "weight_map");
	for (size_t i = 0; i < w->n; i++)
		total += w->t[i].nbytes;
	cJSON_AddNumberToObject(meta, "total_size", (double)total);
	/* weight_map sorted by name, as transformers writes it */
	{
		struct out_tensor **ord = by_name(w);

		if (!ord) {
			cJSON_Delete(root);
			return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
		}
		for (size_t i = 0; i < w->n; i++)
			cJSON_AddStringToObject(map, ord[i]->name, w->s[ord[i]->shard].name);
		free(ord);
	}
	text = cJSON_Print(root);
	cJSON_Delete(root);
	path = weld_outdir_path(&w->dir, "model.safetensors.index.json");
	if (!text || !path) {
		free(text);
		free(path);
		return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	}
	{
		size_t l = strlen(text);
		char *t2 = realloc(text, l + 2);

		if (t2) {
			text = t2;
			memcpy(text + l, "\n", 2);
		}
	}
	r = weld_write_text_file(path, text, err);
	free(text);
	free(path);
	return r;
}

int weld_writer_commit(weld_writer *w, struct weld_error *err)
{
	for (size_t i = 0; i < w->n; i++)
		if (!w->t[i].done && w->t[i].nbytes) {
			return weld_fail(err, WELD_ERR_ARG,
					 "tensor '%s': %llu of %llu bytes written", w->t[i].name,
					 (unsigned long long)w->t[i].written,
					 (unsigned long long)w->t[i].nbytes);
		} else if (!w->t[i].nbytes) {
			w->t[i].hash = XXH3_64bits("", 0);
		}
	for (size_t k = 0; k < w->ns; k++) {
		struct shard *s = &w->s[k];
		char *h = shard_header(w, k, true);
		unsigned char *buf;
		size_t hl;
		int r;

		if (!h)
			return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
		hl = strlen(h);
		buf = malloc(8 + s->header_len);
		if (!buf || (hl + 7) / 8 * 8 != s->header_len) {
			free(h);
			free(buf);
			return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
		}
		for (int b = 0; b < 8; b++)
			buf[b] = (unsigned char)(s->header_len >> (8 * b));
		memcpy(buf + 8, h, hl);
		memset(buf + 8 + hl, ' ', s->header_len - hl);
		free(h);
		r = weld_pwrite_full(s->fd, buf, 8 + s->header_len, 0, s->path, err);
		free(buf);
		if (r < 0)
			return -1;
		if (fsync(s->fd) < 0)
			return weld_fail_errno(err, "fsync of '%s' failed", s->path);
		if (close(s->fd) < 0) {
			s->fd = -1;
			return weld_fail_errno(err, "close of '%s' failed", s->path);
		}
		s->fd = -1;
	}
	if (w->opts.single_file)
		return weld_outdir_publish_file(&w->dir, w->s[0].path, err);
	if (w->ns > 1 && write_index(w, err) < 0)
		return -1;
	if (weld_outdir_copy_side_files(&w->dir, w->copy_from, w->torch_dtype,
					w->opts.edit_config, w->opts.edit_config_ctx, err) < 0)
		return -1;
	if (w->extra_name) {
		char *p = weld_outdir_path(&w->dir, w->extra_name);
		int r = p ? weld_write_text_file(p, w->extra_data ? w->extra_data : "", err)
			  : weld_fail(err, WELD_ERR_NOMEM, "out of memory");

		free(p);
		if (r < 0)
			return -1;
	}
	return weld_outdir_publish(&w->dir, err);
}

void weld_writer_close(weld_writer *w)
{
	if (!w)
		return;
	for (size_t k = 0; k < w->ns; k++) {
		if (w->s[k].fd >= 0)
			close(w->s[k].fd);
		free(w->s[k].path);
		free(w->s[k].name);
	}
	weld_outdir_release(&w->dir);
	for (size_t i = 0; i < w->n; i++) {
		free(w->t[i].name);
		if (w->t[i].xxh)
			XXH3_freeState(w->t[i].xxh);
	}
	free(w->names);
	free(w->s);
	free(w->t);
	free(w->recipe);
	free(w->copy_from);
	free(w->torch_dtype);
	free(w->extra_name);
	free(w->extra_data);
	free(w);
}
