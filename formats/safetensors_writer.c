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
 * Part I of N of an output (--part) has the same layout, but creates and
 * writes only its own shards (output_parts.h), and a description of the
 * part in place of the index.
 *
 *   shard:  u64 LE N | N bytes of JSON header, space-padded to a multiple
 *           of 8 | tensor data in write order, packed
 *   header: {"__metadata__": {"format": "pt", "weld_version": ...,
 *           ["weld_recipe": ...,] "weld_xxh3": "{name: hex, ...}"},
 *           name: {"dtype", "shape", "data_offsets": [begin, end]}, ...}
 */
#include "format.h"
#include "fp8.h"
#include "gguf.h"
#include "output_dir.h"
#include "output_parts.h"

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
	int64_t fp8_block[2];   /* block-scaled FP8: see model.h */
	size_t scale;           /* ... the index of its _scale_inv tensor */
	struct weld_fp8_stream *fp8;
};

struct shard {
	char *path;         /* inside the temporary folder */
	char *label;        /* what messages call it: "<out>/<name>", or <out> */
	char *name;
	int fd;
	uint64_t header_len;/* padded JSON length, N */
	uint64_t data_len;
	size_t first, count;/* range in the sorted tensor array */
	bool mine;          /* written by this part (every shard without --part) */
};

struct weld_writer {
	const char *out;            /* the output, for messages: dir.out once made */
	struct weld_outdir dir;
	struct out_tensor *t;
	size_t n;
	struct shard *s;
	size_t ns;
	struct weld_writer_opts opts;
	char *recipe, *copy_from, *torch_dtype, *extra_name, *extra_data;
	struct out_tensor **names;  /* the tensors in name order, for find */
	struct weld_gguf_writer *gguf;  /* a GGUF output: everything goes there */
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

/* ---------------------------------------------------------------- shard headers */

/*
 * A shard's header is written here rather than through cJSON, so that its
 * length is known at open without building it, and so that writing a
 * header of many tensors costs one buffer, not a tree. The text is what
 * cJSON_PrintUnformatted() gives for the same object (the tests compare
 * the two): strings escaped as cJSON escapes them, integers in decimal.
 * A pass with a NULL buffer only counts.
 */
struct text {
	char *buf;          /* NULL: count only */
	size_t len;
};

static void put(struct text *t, const char *s, size_t n)
{
	if (t->buf)
		memcpy(t->buf + t->len, s, n);
	t->len += n;
}

/* Byte c of a string escaped as cJSON does into e; its length (1 to 6). */
static size_t escape_byte(unsigned char c, char e[7])
{
	static const char short_form[] = "\"\"\\\\\bb\ff\nn\rr\tt";

	for (size_t k = 0; short_form[k]; k += 2)
		if (c == (unsigned char)short_form[k]) {
			e[0] = '\\';
			e[1] = short_form[k + 1];
			return 2;
		}
	if (c < 0x20) {
		snprintf(e, 7, "\\u%04x", c);
		return 6;
	}
	e[0] = (char)c;
	return 1;
}

/* Does byte c stand for itself in a JSON string? */
static bool plain_byte(unsigned char c)
{
	return c >= 0x20 && c != '"' && c != '\\';
}

/* s[0..n) escaped `times` times: the text of a JSON string (without its
 * quotes) inside times - 1 levels of JSON strings. Runs of plain bytes are
 * copied whole, whatever the level. */
static void put_escaped(struct text *t, const char *s, size_t n, int times)
{
	size_t i = 0;

	while (i < n) {
		size_t j = i;
		char e[7];

		while (j < n && (!times || plain_byte((unsigned char)s[j])))
			j++;
		put(t, s + i, j - i);
		if (j == n)
			break;
		put_escaped(t, e, escape_byte((unsigned char)s[j], e), times - 1);
		i = j + 1;
	}
}

/* JSON text at `level` strings deep (its own bytes escaped level times). */
static void put_json(struct text *t, const char *s, int level)
{
	put_escaped(t, s, strlen(s), level);
}

/* The JSON string s, at `level` strings deep. */
static void put_string(struct text *t, const char *s, int level)
{
	put_json(t, "\"", level);
	put_escaped(t, s, strlen(s), level + 1);
	put_json(t, "\"", level);
}

static void put_u64(struct text *t, uint64_t v)
{
	char d[24];

	put(t, d, (size_t)snprintf(d, sizeof(d), "%llu", (unsigned long long)v));
}

/* "weld_xxh3": the JSON object {name: hex, ...} of the shard, as a string. */
static void put_hashes(struct text *t, const weld_writer *w, const struct shard *s, bool final)
{
	put_json(t, "\"{", 0);
	for (size_t i = s->first; i < s->first + s->count; i++) {
		char hex[17] = "0000000000000000";

		if (final)
			weld_hex64(w->t[i].hash, hex);
		if (i > s->first)
			put_json(t, ",", 1);
		put_string(t, w->t[i].name, 1);
		put_json(t, ":", 1);
		put_string(t, hex, 1);
	}
	put_json(t, "}\"", 0);
}

static void put_tensor(struct text *t, const struct out_tensor *o)
{
	put_json(t, ",", 0);
	put_string(t, o->name, 0);
	put_json(t, ":{\"dtype\":", 0);
	put_string(t, weld_dtype_name(o->dtype), 0);
	put_json(t, ",\"shape\":[", 0);
	for (int d = 0; d < o->ndim; d++) {
		if (d)
			put_json(t, ",", 0);
		put_u64(t, (uint64_t)o->shape[d]);
	}
	put_json(t, "],\"data_offsets\":[", 0);
	put_u64(t, o->begin);
	put_json(t, ",", 0);
	put_u64(t, o->begin + o->nbytes);
	put_json(t, "]}", 0);
}

/* The header JSON of shard k (unpadded) into t, with real hashes once
 * `final`. */
static void shard_header(const weld_writer *w, size_t k, bool final, struct text *t)
{
	const struct shard *s = &w->s[k];

	put_json(t, "{\"__metadata__\":{\"format\":\"pt\",\"weld_version\":", 0);
	put_string(t, WELD_VERSION, 0);
	if (w->recipe) {
		put_json(t, ",\"weld_recipe\":", 0);
		put_string(t, w->recipe, 0);
	}
	put_json(t, ",\"weld_xxh3\":", 0);
	put_hashes(t, w, s, final);
	put_json(t, "}", 0);
	for (size_t i = s->first; i < s->first + s->count; i++)
		put_tensor(t, &w->t[i]);
	put_json(t, "}", 0);
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

/* The caller's tensors make a valid header (out names the output). */
static int validate_tensors(const char *out, const struct weld_out_tensor *t, size_t n,
			    struct weld_error *err)
{
	for (size_t i = 0; i < n; i++) {
		uint64_t ne = 1;

		if (strcmp(t[i].name, "__metadata__") == 0)
			return weld_fail(err, WELD_ERR_ARG,
					 "'%s': tensor name '__metadata__' is reserved", out);
		if (t[i].ndim < 0 || t[i].ndim > WELD_MAX_DIMS)
			return weld_fail(err, WELD_ERR_ARG, "'%s': tensor '%s': bad rank %d",
					 out, t[i].name, t[i].ndim);
		for (int d = 0; d < t[i].ndim; d++)
			if (t[i].shape[d] < 0 || !weld_mul_u64(ne, (uint64_t)t[i].shape[d], &ne))
				return weld_fail(err, WELD_ERR_ARG, "'%s': tensor '%s': bad shape",
						 out, t[i].name);
		if (!weld_mul_u64(ne, weld_dtype_size(t[i].dtype), &ne))
			return weld_fail(err, WELD_ERR_ARG, "'%s': tensor '%s': too large", out,
					 t[i].name);
	}
	return 0;
}

/*
 * The padded length of shard k's header, counted without building it, and
 * refused at once when a reader would refuse the file: a header over 100
 * MB, or more tensors than a file may hold.
 */
static int size_header(weld_writer *w, size_t k, struct weld_error *err)
{
	struct shard *s = &w->s[k];
	struct text t = { NULL, 0 };
	const bool one = w->opts.single_file;
	const char *split = one ? "" : " (split the output into smaller shards)";

	if (s->count > WELD_MAX_TENSORS_PER_FILE)
		return weld_fail(err, WELD_ERR_ARG, "'%s': %s%s%s would hold %zu tensors, more than "
				 "the %u a file may hold%s", w->out, one ? "it" : "'",
				 one ? "" : s->name, one ? "" : "'", s->count,
				 WELD_MAX_TENSORS_PER_FILE, split);
	shard_header(w, k, false, &t);
	s->header_len = (t.len + 7) / 8 * 8;
	if (s->header_len > MAX_HEADER)
		return weld_fail(err, WELD_ERR_ARG, "'%s': the header of %s%s%s would be %llu "
				 "bytes (%zu tensors), over the 100000000 a reader accepts%s",
				 w->out, one ? "the file" : "'", one ? "" : s->name,
				 one ? "" : "'", (unsigned long long)s->header_len, s->count, split);
	return 0;
}

/* Which shards this writer writes: all, or those of its part. */
static int mark_part(weld_writer *w, struct weld_error *err)
{
	size_t first = 0, count = w->ns;

	if (w->opts.parts) {
		if (w->opts.single_file || w->opts.parts > WELD_MAX_PARTS || w->opts.part < 1 ||
		    w->opts.part > w->opts.parts)
			return weld_fail(err, WELD_ERR_ARG, "'%s': cannot write part %u of %u",
					 w->out, w->opts.part, w->opts.parts);
		count = weld_part_shards(w->ns, w->opts.part, w->opts.parts, &first);
	}
	for (size_t k = first; k < first + count; k++)
		w->s[k].mine = true;
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
	for (size_t k = 0; k < w->ns; k++)
		w->s[k].fd = -1;
	for (size_t k = 0; k < w->ns; k++) {
		char name[64];

		if (w->ns == 1)
			snprintf(name, sizeof(name), "%s",
				 w->opts.file_name ? w->opts.file_name : "model.safetensors");
		else
			snprintf(name, sizeof(name), "model-%05zu-of-%05zu.safetensors", k + 1, w->ns);
		w->s[k].name = xstrdup(name);
		if (!w->s[k].name)
			return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
		if (size_header(w, k, err) < 0)
			return -1;
	}
	return mark_part(w, err);
}

/* Fill w->t from the caller's tensors, in write order, names unique. */
/* ---------------------------------------------------------------- FP8 */

static char *scale_name(const char *name)
{
	size_t len = strlen(name);
	char *s = malloc(len + sizeof("_scale_inv"));

	if (s) {
		memcpy(s, name, len);
		memcpy(s + len, "_scale_inv", sizeof("_scale_inv"));
	}
	return s;
}

/*
 * The layout t[0 .. n) with a _scale_inv tensor after it for each
 * block-scaled FP8 tensor, into *out (the caller frees it and the names of
 * entries n and on), *nout its length, and each one's block in (*blk)[i]
 * (the caller frees it; zeros for the others).
 */
static int with_scales(const char *dir, const struct weld_out_tensor *t, size_t n,
		       const struct weld_writer_opts *opts, struct weld_out_tensor **out,
		       size_t *nout, int64_t (**blk)[2], struct weld_error *err)
{
	size_t k = n;
	struct weld_out_tensor *o = malloc((2 * n + 1) * sizeof(*o));

	*out = o;
	*nout = n;
	*blk = calloc(2 * n + 1, sizeof(**blk));
	if (!o || !*blk)
		return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	if (n)
		memcpy(o, t, n * sizeof(*o));
	for (size_t i = 0; opts->fp8_block && i < n; i++) {
		const struct weld_out_tensor *x = &t[i];
		const int64_t *b = opts->fp8_block[i];
		struct weld_out_tensor *s = &o[k];

		if (!b[0])
			continue;
		(*blk)[i][0] = b[0];
		(*blk)[i][1] = b[1];
		if (x->dtype != WELD_F8_E4M3 || x->ndim < 2 || b[0] < 1 || b[1] < 1)
			return weld_fail(err, WELD_ERR_ARG,
					 "'%s': tensor '%s': block-scaled FP8 needs dtype F8_E4M3, 2 or "
					 "more dimensions and a positive block", dir, x->name);
		if (opts->parts)
			return weld_fail(err, WELD_ERR_ARG,
					 "'%s': FP8 output is not written in parts (--part): a "
					 "weight and its scales may lie in different parts' shards", dir);
		*s = *x;
		s->dtype = WELD_F32;
		s->shape[x->ndim - 2] = (x->shape[x->ndim - 2] + b[0] - 1) / b[0];
		s->shape[x->ndim - 1] = (x->shape[x->ndim - 1] + b[1] - 1) / b[1];
		if (!(s->name = scale_name(x->name)))
			return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
		*nout = ++k;
	}
	return 0;
}

static void free_with_scales(struct weld_out_tensor *o, size_t n, size_t nout,
			     int64_t (*blk)[2])
{
	for (size_t i = n; o && i < nout; i++)
		free((char *)o[i].name);
	free(o);
	free(blk);
}

/* Each FP8 tensor's scale tensor, by name. */
static int find_scales(weld_writer *w, struct weld_error *err)
{
	for (size_t i = 0; i < w->n; i++) {
		char *name;
		int64_t k;

		if (!w->t[i].fp8_block[0])
			continue;
		if (!(name = scale_name(w->t[i].name)))
			return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
		k = weld_writer_find(w, name);
		free(name);
		if (k < 0)
			return weld_fail(err, WELD_ERR_ARG, "'%s': tensor '%s': no scale tensor",
					 w->out, w->t[i].name);
		w->t[i].scale = (size_t)k;
	}
	return 0;
}

static int add_tensors(weld_writer *w, const struct weld_out_tensor *t, size_t n,
		       const int64_t (*blk)[2], struct weld_error *err)
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
		o->fp8_block[0] = blk[i][0];
		o->fp8_block[1] = blk[i][1];
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
			return weld_fail(err, WELD_ERR_ARG, "'%s': tensor '%s': written twice",
					 w->out, ord[i]->name);
	return find_scales(w, err);
}

/* Name every file of the output, create the folder it is written in and
 * the shards. */
static int create_files(weld_writer *w, struct weld_error *err)
{
	for (size_t k = 0; k < w->ns; k++) {
		struct shard *s = &w->s[k];

		s->path = weld_outdir_path(&w->dir, s->name);
		s->label = weld_outdir_label(&w->dir, s->name);
		if (!s->path || !s->label)
			return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
		if (s->mine && weld_outdir_add(&w->dir, s->name, err) < 0)
			return -1;
	}
	if (weld_outdir_add(&w->dir, w->opts.parts ? WELD_PART_FILE
						   : "model.safetensors.index.json", err) < 0 ||
	    (w->extra_name && weld_outdir_add(&w->dir, w->extra_name, err) < 0) ||
	    weld_outdir_add_side_files(&w->dir, err) < 0 ||
	    weld_outdir_create(&w->dir, err) < 0)
		return -1;
	for (size_t k = 0; k < w->ns; k++) {
		struct shard *s = &w->s[k];

		if (!s->mine)
			continue;
		s->fd = open(s->path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
		if (s->fd < 0)
			return weld_fail_errno(err, "cannot create '%s'", s->label);
		if (ftruncate(s->fd, (off_t)(8 + s->header_len + s->data_len)) < 0)
			return weld_fail_errno(err, "cannot make '%s' %llu bytes long", s->label,
					       (unsigned long long)(8 + s->header_len + s->data_len));
	}
	return 0;
}

int weld_writer_open(weld_writer **out, const char *dir,
		     const struct weld_out_tensor *t, size_t n,
		     const struct weld_writer_opts *opts, struct weld_error *err)
{
	struct weld_out_tensor *all = NULL;
	int64_t (*blk)[2] = NULL;
	size_t nall = 0;
	weld_writer *w;

	*out = NULL;
	w = calloc(1, sizeof(*w));
	if (!w)
		return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	w->out = dir;
	w->dir.owner_fd = -1;
	w->opts = *opts;
	if (opts->gguf_base) {
		if (weld_gguf_writer_open(&w->gguf, dir, t, n, opts, err) < 0)
			goto fail;
		*out = w;
		return 0;
	}
	w->recipe = xstrdup(opts->recipe_json);
	w->copy_from = xstrdup(opts->copy_from);
	w->torch_dtype = xstrdup(opts->torch_dtype);
	w->extra_name = xstrdup(opts->extra_name);
	w->extra_data = xstrdup(opts->extra_data);
	/* the layout is checked before anything is made on disk */
	if (with_scales(dir, t, n, opts, &all, &nall, &blk, err) < 0 ||
	    validate_tensors(dir, all, nall, err) < 0 ||
	    add_tensors(w, all, nall, (const int64_t (*)[2])blk, err) < 0 ||
	    plan_shards(w, err) < 0 ||
	    weld_outdir_init(&w->dir, dir, opts->force, opts->single_file, err) < 0)
		goto fail;
	w->out = w->dir.out;
	if (create_files(w, err) < 0)
		goto fail;
	free_with_scales(all, n, nall, blk);
	*out = w;
	return 0;
fail:
	free_with_scales(all, n, nall, blk);
	weld_writer_close(w);
	return -1;
}

int weld_writer_check(const char *dir, const struct weld_out_tensor *t, size_t n,
		      const struct weld_writer_opts *opts, struct weld_error *err)
{
	struct weld_out_tensor *all = NULL;
	int64_t (*blk)[2] = NULL;
	size_t nall = 0;
	weld_writer *w;
	int r;

	if (opts->gguf_base)    /* one GGUF file: its writer checks its layout at open */
		return 0;
	if (!(w = calloc(1, sizeof(*w))))
		return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	w->out = dir;
	w->dir.owner_fd = -1;
	w->opts = *opts;
	w->recipe = xstrdup(opts->recipe_json);
	if (opts->recipe_json && !w->recipe)
		r = weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	else
		r = with_scales(dir, t, n, opts, &all, &nall, &blk, err) < 0 ||
		    validate_tensors(dir, all, nall, err) < 0 ||
		    add_tensors(w, all, nall, (const int64_t (*)[2])blk, err) < 0 || plan_shards(w, err) < 0 ? -1 : 0;
	free_with_scales(all, n, nall, blk);
	weld_writer_close(w);
	return r;
}

int64_t weld_writer_find(const weld_writer *w, const char *name)
{
	size_t lo = 0, hi = w->n;

	if (w->gguf)
		return weld_gguf_writer_find(w->gguf, name);
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
	if (w->gguf)
		return 1;
	return w->ns;
}

bool weld_writer_holds(const weld_writer *w, size_t i)
{
	return w->gguf || w->s[w->t[i].shard].mine;
}

/* Append len stored bytes to tensor i. */
static int write_raw(weld_writer *w, size_t i, const void *data, size_t len,
		     struct weld_error *err)
{
	struct out_tensor *t = &w->t[i];
	struct shard *s = &w->s[t->shard];
	uint64_t off;

	if (!s->mine)
		return weld_fail(err, WELD_ERR_ARG, "'%s': tensor '%s' is not in part %u of %u",
				 w->out, t->name, w->opts.part, w->opts.parts);
	if (len > t->nbytes - t->written)
		return weld_fail(err, WELD_ERR_ARG, "'%s': tensor '%s': more bytes than its size",
				 w->out, t->name);
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
	if (weld_pwrite_full(s->fd, data, len, off, s->label, err) < 0)
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

struct fp8_sink {
	weld_writer *w;
	size_t i;
};

/* A band of codes to the tensor, its scales to its _scale_inv tensor. */
static int fp8_emit(void *ctx, const uint8_t *codes, size_t ncodes, const float *scales,
		    size_t nscales, struct weld_error *err)
{
	struct fp8_sink *k = ctx;

	if (write_raw(k->w, k->i, codes, ncodes, err) < 0)
		return -1;
	return write_raw(k->w, k->w->t[k->i].scale, scales, nscales * sizeof(float), err);
}

/* float32 values of block-scaled FP8 tensor i, encoded a band at a time. */
static int write_fp8(weld_writer *w, size_t i, const void *data, size_t len,
		     struct weld_error *err)
{
	struct out_tensor *t = &w->t[i];
	struct fp8_sink sink = { w, i };
	char label[512];
	int r;

	if (len % sizeof(float))
		return weld_fail(err, WELD_ERR_ARG, "'%s': tensor '%s': FP8 values come as float32",
				 w->out, t->name);
	if (!t->fp8) {
		struct weld_fp8_geom *g;

		if (!(t->fp8 = calloc(1, sizeof(*t->fp8))))
			return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
		g = &t->fp8->g;
		g->cols = (uint64_t)t->shape[t->ndim - 1];
		g->rows = (uint64_t)t->shape[t->ndim - 2];
		g->slices = g->rows && g->cols ? t->nbytes / (g->rows * g->cols) : 0;
		g->brows = (uint64_t)t->fp8_block[0];
		g->bcols = (uint64_t)t->fp8_block[1];
	}
	snprintf(label, sizeof(label), "'%s': tensor '%s'", w->out, t->name);
	r = weld_fp8_stream_feed(t->fp8, data, len / sizeof(float), fp8_emit, &sink, label, err);
	if (r < 0 || t->done) {
		weld_fp8_stream_free(t->fp8);
		free(t->fp8);
		t->fp8 = NULL;
	}
	return r;
}

int weld_writer_write(weld_writer *w, size_t i, const void *data, size_t len,
		      struct weld_error *err)
{
	if (w->gguf)
		return weld_gguf_writer_write(w->gguf, i, data, len, err);
	if (w->t[i].fp8_block[0])
		return write_fp8(w, i, data, len, err);
	return write_raw(w, i, data, len, err);
}

/* Shard k's header with the real hashes, padded with spaces, at offset 0. */
static int write_header(weld_writer *w, size_t k, struct weld_error *err)
{
	struct shard *s = &w->s[k];
	struct text t = { NULL, 0 };
	unsigned char *buf;
	int r;

	/* the hashes have a fixed width: the length counted at open holds */
	shard_header(w, k, true, &t);
	if ((t.len + 7) / 8 * 8 != s->header_len)
		return weld_fail(err, WELD_ERR_ARG, "'%s': the header of '%s' changed length",
				 w->out, s->name);
	buf = malloc(8 + s->header_len);
	if (!buf)
		return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	for (int b = 0; b < 8; b++)
		buf[b] = (unsigned char)(s->header_len >> (8 * b));
	t.buf = (char *)buf + 8;
	t.len = 0;
	shard_header(w, k, true, &t);
	memset(buf + 8 + t.len, ' ', s->header_len - t.len);
	r = weld_pwrite_full(s->fd, buf, 8 + s->header_len, 0, s->label, err);
	free(buf);
	return r;
}

/* A text file of the output folder. */
static int write_output_file(weld_writer *w, const char *name, const char *text,
			     struct weld_error *err)
{
	char *path = weld_outdir_path(&w->dir, name), *label = weld_outdir_label(&w->dir, name);
	int r = path && label ? weld_write_text_file(path, label, text, err)
		: weld_fail(err, WELD_ERR_NOMEM, "out of memory");

	free(label);
	free(path);
	return r;
}

/* The text of model.safetensors.index.json (caller frees), or NULL. */
static char *index_text(const weld_writer *w)
{
	cJSON *root = cJSON_CreateObject(), *meta, *map;
	uint64_t total = 0;
	char *text;

	if (!root)
		return NULL;
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
			return NULL;
		}
		for (size_t i = 0; i < w->n; i++)
			cJSON_AddStringToObject(map, ord[i]->name, w->s[ord[i]->shard].name);
		free(ord);
	}
	text = cJSON_Print(root);
	cJSON_Delete(root);
	if (text) {
		size_t l = strlen(text);
		char *t2 = realloc(text, l + 2);

		if (t2) {
			text = t2;
			memcpy(text + l, "\n", 2);
		}
	}
	return text;
}

static int write_index(weld_writer *w, struct weld_error *err)
{
	char *text = index_text(w);
	int r = text ? write_output_file(w, "model.safetensors.index.json", text, err)
		     : weld_fail(err, WELD_ERR_NOMEM, "out of memory");

	free(text);
	return r;
}

/* WELD_PART_FILE: the part, the index and every shard's size. */
static int write_part(weld_writer *w, struct weld_error *err)
{
	struct weld_part_shard *ps = calloc(w->ns, sizeof(*ps));
	char *index = w->ns > 1 ? index_text(w) : NULL, *text = NULL;
	int r;

	for (size_t k = 0; ps && k < w->ns; k++) {
		ps[k].name = w->s[k].name;
		ps[k].bytes = 8 + w->s[k].header_len + w->s[k].data_len;
	}
	if (ps && (index || w->ns == 1))
		text = weld_part_describe(w->opts.part, w->opts.parts, w->recipe, index, ps, w->ns);
	r = text ? write_output_file(w, WELD_PART_FILE, text, err)
		 : weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	free(text);
	free(index);
	free(ps);
	return r;
}

int weld_writer_commit(weld_writer *w, struct weld_error *err)
{
	if (w->gguf)
		return weld_gguf_writer_commit(w->gguf, err);
	for (size_t i = 0; i < w->n; i++)
		if (!w->s[w->t[i].shard].mine) {
			continue;
		} else if (!w->t[i].done && w->t[i].nbytes) {
			return weld_fail(err, WELD_ERR_ARG,
					 "'%s': tensor '%s': %llu of %llu bytes written", w->out,
					 w->t[i].name,
					 (unsigned long long)w->t[i].written,
					 (unsigned long long)w->t[i].nbytes);
		} else if (!w->t[i].nbytes) {
			w->t[i].hash = XXH3_64bits("", 0);
		}
	for (size_t k = 0; k < w->ns; k++) {
		struct shard *s = &w->s[k];

		if (!s->mine)
			continue;
		if (write_header(w, k, err) < 0)
			return -1;
		if (fsync(s->fd) < 0)
			return weld_fail_errno(err, "fsync of '%s' failed", s->label);
		if (close(s->fd) < 0) {
			s->fd = -1;
			return weld_fail_errno(err, "close of '%s' failed", s->label);
		}
		s->fd = -1;
	}
	if (w->opts.single_file)
		return weld_outdir_publish(&w->dir, w->s[0].path, err);
	if (w->opts.parts ? write_part(w, err) < 0 : w->ns > 1 && write_index(w, err) < 0)
		return -1;
	if (weld_outdir_copy_side_files(&w->dir, w->copy_from, w->torch_dtype,
					w->opts.edit_config, w->opts.edit_config_ctx, err) < 0)
		return -1;
	if (w->extra_name &&
	    write_output_file(w, w->extra_name, w->extra_data ? w->extra_data : "", err) < 0)
		return -1;
	return weld_outdir_publish(&w->dir, NULL, err);
}

void weld_writer_close(weld_writer *w)
{
	if (!w)
		return;
	weld_gguf_writer_close(w->gguf);
	for (size_t k = 0; k < w->ns; k++) {
		if (w->s[k].fd >= 0)
			close(w->s[k].fd);
		free(w->s[k].path);
		free(w->s[k].label);
		free(w->s[k].name);
	}
	weld_outdir_release(&w->dir);
	for (size_t i = 0; i < w->n; i++) {
		free(w->t[i].name);
		if (w->t[i].xxh)
			XXH3_freeState(w->t[i].xxh);
		if (w->t[i].fp8)
			weld_fp8_stream_free(w->t[i].fp8);
		free(w->t[i].fp8);
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
