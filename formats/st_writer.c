/*
 * st_writer.c - write a Hugging Face safetensors folder, atomically.
 *
 * The whole layout is fixed at open: tensors sorted as the reference writer
 * sorts them (wider dtypes first, then by name), split greedily into shards
 * of at most shard_size bytes, each shard's header laid out with a
 * placeholder hash per tensor. Files are created at their final size, and
 * data is then written at known offsets, from any thread, one thread per
 * tensor at a time. Commit rewrites each header with the real XXH3-64 values
 * (same length, so no data moves), writes the index and the copied config
 * files, fsyncs everything, and renames the temporary folder into place.
 */
#include "format.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#define MAX_HEADER 100000000ULL
#define MAX_LIVE 4
#define COPY_BUF (1u << 20)

/* Files copied from the source model when present, besides config.json. */
static const char *const copy_names[] = {
	"generation_config.json", "tokenizer.json", "tokenizer_config.json",
	"special_tokens_map.json", "tokenizer.model", "vocab.json", "merges.txt",
	"added_tokens.json", "chat_template.json", "chat_template.jinja",
	"preprocessor_config.json",
};
#define NCOPY (sizeof(copy_names) / sizeof(copy_names[0]))

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
	char *out, *tmp, *old;
	struct out_tensor *t;
	size_t n;
	struct shard *s;
	size_t ns;
	struct weld_writer_opts opts;
	char *recipe, *copy_from, *torch_dtype, *extra_name, *extra_data;
	/* every path the temporary folder may hold, for the signal handler */
	char **paths;
	size_t npaths;
	struct out_tensor **names;  /* the tensors in name order, for find */
	bool committed;
};

static weld_writer *volatile live[MAX_LIVE];

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

/* a + sep + b, malloc'd. */
static char *join3(const char *a, const char *sep, const char *b)
{
	size_t la = strlen(a), ls = strlen(sep), lb = strlen(b);
	char *p = malloc(la + ls + lb + 1);

	if (p) {
		memcpy(p, a, la);
		memcpy(p + la, sep, ls);
		memcpy(p + la + ls, b, lb + 1);
	}
	return p;
}

static void remove_tmp(weld_writer *w)
{
	for (size_t i = 0; i < w->npaths; i++)
		unlink(w->paths[i]);
	if (w->tmp)
		rmdir(w->tmp);
}

void weld_writer_cleanup_on_signal(void)
{
	for (int i = 0; i < MAX_LIVE; i++) {
		weld_writer *w = live[i];

		if (!w)
			continue;
		for (size_t k = 0; k < w->npaths; k++)
			unlink(w->paths[k]);
		rmdir(w->tmp);
	}
}

static void set_live(weld_writer *w, weld_writer *value)
{
	for (int i = 0; i < MAX_LIVE; i++)
		if (live[i] == (value ? NULL : w)) {
			live[i] = value;
			return;
		}
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
		w->s[k].path = join3(w->tmp, "/", name);
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

static int add_path(weld_writer *w, const char *name, struct weld_error *err)
{
	char *p = join3(w->tmp, "/", name);

	if (!p)
		return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	w->paths[w->npaths++] = p;
	return 0;
}

int weld_writer_open(weld_writer **out, const char *dir,
		     const struct weld_out_tensor *t, size_t n,
		     const struct weld_writer_opts *opts, struct weld_error *err)
{
	weld_writer *w;
	struct stat st;
	char pid[32];

	*out = NULL;
	if (!opts->force && lstat(dir, &st) == 0)
		return weld_fail(err, WELD_ERR_EXISTS,
				 "'%s' already exists; not overwritten (use -f to replace it)", dir);
	if (validate_tensors(t, n, err) < 0)
		return -1;
	w = calloc(1, sizeof(*w));
	if (!w)
		return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	w->opts = *opts;
	w->recipe = xstrdup(opts->recipe_json);
	w->copy_from = xstrdup(opts->copy_from);
	w->torch_dtype = xstrdup(opts->torch_dtype);
	w->extra_name = xstrdup(opts->extra_name);
	w->extra_data = xstrdup(opts->extra_data);
	snprintf(pid, sizeof(pid), "%ld", (long)getpid());
	w->out = xstrdup(dir);
	if (!w->out)
		goto nomem;
	/* "out/" names the folder "out": the temporary folder and the folder
	 * moved aside are its siblings, never inside it. */
	for (size_t l = strlen(w->out); l > 1 && w->out[l - 1] == '/'; l--)
		w->out[l - 1] = 0;
	w->tmp = join3(w->out, ".weld-tmp-", pid);
	w->t = calloc(n ? n : 1, sizeof(*w->t));
	w->n = n;
	if (!w->tmp || !w->t)
		goto nomem;
	for (size_t i = 0; i < n; i++) {
		struct out_tensor *o = &w->t[i];

		o->name = xstrdup(t[i].name);
		if (!o->name)
			goto nomem;
		o->dtype = t[i].dtype;
		o->ndim = t[i].ndim;
		o->nbytes = weld_dtype_size(t[i].dtype);
		for (int d = 0; d < t[i].ndim; d++) {
			o->shape[d] = t[i].shape[d];
			o->nbytes *= (uint64_t)t[i].shape[d];
		}
	}
	qsort(w->t, n, sizeof(*w->t), cmp_write_order);
	{
		struct out_tensor **ord = by_name(w);
		const char *dup = NULL;

		if (!ord)
			goto nomem;
		w->names = ord;
		for (size_t i = 1; i < n && !dup; i++)
			if (strcmp(ord[i - 1]->name, ord[i]->name) == 0)
				dup = ord[i]->name;
		if (dup) {
			weld_fail(err, WELD_ERR_ARG, "tensor '%s': written twice", dup);
			weld_writer_close(w);
			return -1;
		}
	}
	if (plan_shards(w, err) < 0) {
		weld_writer_close(w);
		return -1;
	}
	w->paths = calloc(w->ns + NCOPY + 4, sizeof(*w->paths));
	if (!w->paths)
		goto nomem;
	for (size_t k = 0; k < w->ns; k++)
		if (add_path(w, w->s[k].name, err) < 0)
			goto fail;
	if (add_path(w, "model.safetensors.index.json", err) < 0 ||
	    add_path(w, "config.json", err) < 0 ||
	    (w->extra_name && add_path(w, w->extra_name, err) < 0))
		goto fail;
	for (size_t k = 0; k < NCOPY; k++)
		if (add_path(w, copy_names[k], err) < 0)
			goto fail;
	if (mkdir(w->tmp, 0755) < 0) {
		weld_fail_errno(err, "cannot create '%s'", w->tmp);
		free(w->tmp);
		w->tmp = NULL;	/* not ours: never remove it */
		goto fail;
	}
	set_live(w, w);
	for (size_t k = 0; k < w->ns; k++) {
		struct shard *s = &w->s[k];

		s->fd = open(s->path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
		if (s->fd < 0) {
			weld_fail_errno(err, "cannot create '%s'", s->path);
			goto fail;
		}
		if (ftruncate(s->fd, (off_t)(8 + s->header_len + s->data_len)) < 0) {
			weld_fail_errno(err, "cannot size '%s'", s->path);
			goto fail;
		}
	}
	*out = w;
	return 0;
nomem:
	weld_fail(err, WELD_ERR_NOMEM, "out of memory");
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

static int pwrite_full(int fd, const void *buf, size_t n, uint64_t off,
		       const char *path, struct weld_error *err)
{
	const char *p = buf;

	while (n) {
		ssize_t r = pwrite(fd, p, n, (off_t)off);

		if (r < 0) {
			if (errno == EINTR)
				continue;
			return weld_fail_errno(err, "write to '%s' failed", path);
		}
		p += r;
		n -= (size_t)r;
		off += (uint64_t)r;
	}
	return 0;
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
	if (pwrite_full(s->fd, data, len, off, s->path, err) < 0)
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

static int write_file(const char *path, const char *text, struct weld_error *err)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	int r;

	if (fd < 0)
		return weld_fail_errno(err, "cannot create '%s'", path);
	r = pwrite_full(fd, text, strlen(text), 0, path, err);
	if (!r && fsync(fd) < 0)
		r = weld_fail_errno(err, "fsync of '%s' failed", path);
	if (close(fd) < 0 && !r)
		r = weld_fail_errno(err, "close of '%s' failed", path);
	return r;
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
	path = join3(w->tmp, "/", "model.safetensors.index.json");
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
	r = write_file(path, text, err);
	free(text);
	free(path);
	return r;
}

static int copy_file(const char *from, const char *to, struct weld_error *err)
{
	int in = open(from, O_RDONLY | O_CLOEXEC), out = -1, r = 0;
	char *buf = NULL;
	uint64_t off = 0;

	if (in < 0)
		return weld_fail_errno(err, "cannot open '%s'", from);
	out = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	buf = malloc(COPY_BUF);
	if (out < 0 || !buf) {
		r = out < 0 ? weld_fail_errno(err, "cannot create '%s'", to)
			    : weld_fail(err, WELD_ERR_NOMEM, "out of memory");
		goto out;
	}
	for (;;) {
		ssize_t got = read(in, buf, COPY_BUF);

		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0) {
			r = weld_fail_errno(err, "read of '%s' failed", from);
			break;
		}
		if (got == 0)
			break;
		if ((r = pwrite_full(out, buf, (size_t)got, off, to, err)) < 0)
			break;
		off += (uint64_t)got;
	}
	if (!r && fsync(out) < 0)
		r = weld_fail_errno(err, "fsync of '%s' failed", to);
out:
	free(buf);
	if (out >= 0 && close(out) < 0 && !r)
		r = weld_fail_errno(err, "close of '%s' failed", to);
	close(in);
	return r;
}

static int write_config(weld_writer *w, const char *src, struct weld_error *err)
{
	char *text = NULL, *outp = NULL, *dst = join3(w->tmp, "/", "config.json");
	cJSON *root = NULL;
	int r = -1, fd;
	struct stat st;

	if (!dst)
		return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	fd = open(src, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0 || st.st_size > (16 << 20)) {
		weld_fail(err, WELD_ERR_FORMAT, "'%s': cannot read (or larger than 16 MB)", src);
		goto out;
	}
	text = malloc((size_t)st.st_size + 1);
	if (!text) {
		weld_fail(err, WELD_ERR_NOMEM, "out of memory");
		goto out;
	}
	if (weld_pread_full(fd, text, (size_t)st.st_size, 0, src, err) < 0)
		goto out;
	text[st.st_size] = 0;
	root = cJSON_Parse(text);
	if (!cJSON_IsObject(root)) {
		weld_fail(err, WELD_ERR_FORMAT, "'%s': not a JSON object", src);
		goto out;
	}
	if (w->torch_dtype) {
		cJSON_DeleteItemFromObjectCaseSensitive(root, "torch_dtype");
		cJSON_AddStringToObject(root, "torch_dtype", w->torch_dtype);
	}
	if (w->opts.edit_config && w->opts.edit_config(w->opts.edit_config_ctx, root, err) < 0)
		goto out;
	outp = cJSON_Print(root);
	if (!outp) {
		weld_fail(err, WELD_ERR_NOMEM, "out of memory");
		goto out;
	}
	{
		size_t l = strlen(outp);
		char *t2 = realloc(outp, l + 2);

		if (t2) {
			outp = t2;
			memcpy(outp + l, "\n", 2);
		}
	}
	r = write_file(dst, outp, err);
out:
	if (fd >= 0)
		close(fd);
	cJSON_Delete(root);
	free(outp);
	free(text);
	free(dst);
	return r;
}

static int copy_side_files(weld_writer *w, struct weld_error *err)
{
	struct stat st;
	char *src;
	int r = 0;

	if (!w->copy_from)
		return 0;
	src = join3(w->copy_from, "/", "config.json");
	if (!src)
		return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	if (stat(src, &st) == 0)
		r = write_config(w, src, err);
	free(src);
	for (size_t k = 0; !r && k < NCOPY; k++) {
		char *from = join3(w->copy_from, "/", copy_names[k]);
		char *to = join3(w->tmp, "/", copy_names[k]);

		if (!from || !to)
			r = weld_fail(err, WELD_ERR_NOMEM, "out of memory");
		else if (stat(from, &st) == 0 && S_ISREG(st.st_mode))
			r = copy_file(from, to, err);
		free(from);
		free(to);
	}
	return r;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *f)
{
	(void)st; (void)flag; (void)f;
	return remove(path);
}

/* rm -rf of the folder weld replaced (with -f). */
static void remove_old(const char *dir)
{
	nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static int fsync_dir(const char *path, struct weld_error *err)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int r = 0;

	if (fd < 0)
		return weld_fail_errno(err, "cannot open folder '%s'", path);
	if (fsync(fd) < 0)
		r = weld_fail_errno(err, "fsync of folder '%s' failed", path);
	close(fd);
	return r;
}

static int publish(weld_writer *w, struct weld_error *err)
{
	struct stat st;
	char *parent, *slash;
	int r;

	if (lstat(w->out, &st) == 0) {
		if (!w->opts.force)
			return weld_fail(err, WELD_ERR_EXISTS,
					 "'%s' already exists; not overwritten (use -f to replace it)",
					 w->out);
		w->old = join3(w->out, ".weld-old-", strrchr(w->tmp, '-') + 1);
		if (!w->old)
			return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
		if (rename(w->out, w->old) < 0)
			return weld_fail_errno(err, "cannot move '%s' aside", w->out);
	}
	if (rename(w->tmp, w->out) < 0) {
		r = weld_fail_errno(err, "cannot rename '%s' to '%s'", w->tmp, w->out);
		if (w->old)
			rename(w->old, w->out);
		return r;
	}
	w->committed = true;
	set_live(w, NULL);
	if (w->old) {
		if (S_ISDIR(st.st_mode))
			remove_old(w->old);
		else
			unlink(w->old);
	}
	parent = xstrdup(w->out);
	if (!parent)
		return 0;
	slash = strrchr(parent, '/');
	if (slash == parent)
		slash[1] = 0;
	else if (slash)
		*slash = 0;
	else
		strcpy(parent, ".");
	r = fsync_dir(parent, err);
	free(parent);
	return r;
}

/* single_file: move the one shard to the output path, drop the folder. */
static int publish_file(weld_writer *w, struct weld_error *err)
{
	struct stat st;

	if (!w->opts.force && lstat(w->out, &st) == 0)
		return weld_fail(err, WELD_ERR_EXISTS,
				 "'%s' already exists; not overwritten (use -f to replace it)",
				 w->out);
	if (rename(w->s[0].path, w->out) < 0)
		return weld_fail_errno(err, "cannot rename '%s' to '%s'", w->s[0].path, w->out);
	w->committed = true;
	set_live(w, NULL);
	rmdir(w->tmp);
	return 0;
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
		r = pwrite_full(s->fd, buf, 8 + s->header_len, 0, s->path, err);
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
		return publish_file(w, err);
	if (w->ns > 1 && write_index(w, err) < 0)
		return -1;
	if (copy_side_files(w, err) < 0)
		return -1;
	if (w->extra_name) {
		char *p = join3(w->tmp, "/", w->extra_name);
		int r = p ? write_file(p, w->extra_data ? w->extra_data : "", err)
			  : weld_fail(err, WELD_ERR_NOMEM, "out of memory");

		free(p);
		if (r < 0)
			return -1;
	}
	if (fsync_dir(w->tmp, err) < 0)
		return -1;
	return publish(w, err);
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
	if (!w->committed && w->tmp)
		remove_tmp(w);
	set_live(w, NULL);
	for (size_t i = 0; i < w->n; i++) {
		free(w->t[i].name);
		if (w->t[i].xxh)
			XXH3_freeState(w->t[i].xxh);
	}
	for (size_t i = 0; i < w->npaths; i++)
		free(w->paths[i]);
	free(w->paths);
	free(w->names);
	free(w->s);
	free(w->t);
	free(w->out);
	free(w->tmp);
	free(w->old);
	free(w->recipe);
	free(w->copy_from);
	free(w->torch_dtype);
	free(w->extra_name);
	free(w->extra_data);
	free(w);
}
