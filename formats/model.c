/*
 * model.c - a checkpoint as one set of tensors, whatever its files.
 *
 * weld_model_open() takes a folder or a file. A folder is read in this
 * order of preference: model.safetensors.index.json (shards), a single
 * model.safetensors, pytorch_model.bin.index.json, pytorch_model.bin, then
 * every *.safetensors it holds. Each file's format is chosen from its first
 * bytes, not its name, by the table of formats (registry.c). An index must
 * agree exactly with its shards: every name it lists is in the shard it
 * names, and no shard holds a name it does not list. Tensors are kept
 * sorted by name, and data is read with pread following each tensor's
 * strides, so memory never grows with the model: from the tensor's file,
 * or from the descriptor its parser handed over for data the file cannot
 * serve by range (weld_model_add_source()).
 */
#include "format.h"
#include "fp8.h"
#include "hf_cache.h"
#include "json_scan.h"
#include "lora.h"
#include "name_table.h"
#include "quant.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define INDEX_MAX_BYTES (64u << 20)
#define GATHER_WINDOW (16u << 20)

struct model_file {
	char *path;
	int fd;
	uint64_t size;
};

struct meta_kv {
	char *key, *value;
	int file;
};

/* A descriptor holding data of a file that the file cannot serve by range. */
struct model_source {
	int fd;
	char *label;            /* for messages: "<file path> (inflated entries)" */
};

/* A tensor, and where its bytes are read: its file (source 0) or a source;
 * for FP8 codes with scales, the scale tensor too (its name owned here). */
struct model_tensor {
	struct weld_tensor_info info;
	int source;
	struct weld_tensor_info scale;
	bool is_scale;          /* attached to another tensor: to be dropped */
	bool hidden;            /* to be dropped, name and all */
};

struct weld_model {
	char *path, *dir;
	const char *format;
	struct model_file *files;
	size_t nfiles;
	struct model_source *sources;
	size_t nsources;
	struct model_tensor *t;
	size_t n, cap;
	struct meta_kv *meta;
	size_t nmeta, meta_cap;
	int parsing;            /* file whose header is being parsed */
	struct weld_lora *lora; /* BASE+ADAPTER: the adapter, else NULL */
};

uint64_t weld_model_file_size(const weld_model *m, int file)
{
	return m->files[file].size;
}

int weld_model_file_fd(const weld_model *m, int file)
{
	return m->files[file].fd;
}

size_t weld_model_file_count(const weld_model *m)
{
	return m->nfiles;
}

const char *weld_model_file_path(const weld_model *m, size_t file)
{
	return m->files[file].path;
}

size_t weld_model_count(const weld_model *m)
{
	return m->n;
}

const struct weld_tensor_info *weld_model_tensor(const weld_model *m, size_t i)
{
	return &m->t[i].info;
}

const char *weld_model_path(const weld_model *m)
{
	return m->path;
}

const char *weld_model_warning(const weld_model *m)
{
	return m->lora ? weld_lora_warning(m->lora) : NULL;
}

const char *weld_model_dir(const weld_model *m)
{
	return m->dir;
}

const char *weld_model_format(const weld_model *m)
{
	return m->format;
}

const char *weld_model_metadata(const weld_model *m, const char *key)
{
	for (size_t i = 0; i < m->nmeta; i++)
		if (strcmp(m->meta[i].key, key) == 0)
			return m->meta[i].value;
	return NULL;
}

const char *weld_model_file_metadata(const weld_model *m, size_t file, const char *key)
{
	for (size_t i = 0; i < m->nmeta; i++)
		if (m->meta[i].file == (int)file && strcmp(m->meta[i].key, key) == 0)
			return m->meta[i].value;
	return NULL;
}

size_t weld_model_metadata_count(const weld_model *m)
{
	return m->nmeta;
}

bool weld_model_metadata_at(const weld_model *m, size_t i, const char **key,
			    const char **value, int *file)
{
	if (i >= m->nmeta)
		return false;
	*key = m->meta[i].key;
	*value = m->meta[i].value;
	if (file)
		*file = m->meta[i].file;
	return true;
}

uint64_t weld_tensor_stored_bytes(const struct weld_tensor_info *t, uint64_t n)
{
	const struct weld_ggml_type_info *q = t->quant ? weld_ggml_type(t->quant) : NULL;

	if (t->scaled) {
		/* one byte a code, and about the scales that cover n elements */
		uint64_t per = (uint64_t)t->scale_block[0] * (uint64_t)t->scale_block[1];

		return n + (n + per - 1) / per * weld_dtype_size(t->scale_dtype);
	}
	return q ? n / q->block * q->bytes : n * weld_dtype_size(t->dtype);
}

enum weld_dtype weld_tensor_stored_dtype(const struct weld_tensor_info *t)
{
	return t->scaled ? WELD_F8_E4M3 : t->dtype;
}

const char *weld_tensor_type_name(const struct weld_tensor_info *t)
{
	const char *q = t->quant ? weld_ggml_type_name(t->quant) : NULL;

	if (t->scaled)
		return weld_dtype_name(WELD_F8_E4M3);
	return q ? q : weld_dtype_name(t->dtype);
}

int weld_model_set_metadata(weld_model *m, const char *key, const char *value,
			    struct weld_error *err)
{
	return weld_model_set_file_metadata(m, m->parsing, key, value, err);
}

int weld_model_set_file_metadata(weld_model *m, int file, const char *key, const char *value,
				 struct weld_error *err)
{
	struct meta_kv *nm = m->meta;

	if (m->nmeta == m->meta_cap) {
		size_t cap = m->meta_cap ? 2 * m->meta_cap : 16;

		nm = realloc(m->meta, cap * sizeof(*nm));
		if (!nm)
			return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
		m->meta = nm;
		m->meta_cap = cap;
	}
	nm[m->nmeta].file = file;
	nm[m->nmeta].key = strdup(key);
	nm[m->nmeta].value = strdup(value);
	if (!nm[m->nmeta].key || !nm[m->nmeta].value) {
		free(nm[m->nmeta].key);
		free(nm[m->nmeta].value);
		return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	}
	m->nmeta++;
	return 0;
}

int weld_model_add_source(weld_model *m, int file, int fd, struct weld_error *err)
{
	struct model_source *s = realloc(m->sources, (m->nsources + 1) * sizeof(*s));
	const char *path = m->files[file].path;
	size_t len = strlen(path) + sizeof(" (inflated entries)");

	if (!s) {
		close(fd);
		return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	}
	m->sources = s;
	s[m->nsources].fd = fd;
	s[m->nsources].label = malloc(len);
	if (!s[m->nsources].label) {
		close(fd);
		return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	}
	snprintf(s[m->nsources].label, len, "%s (inflated entries)", path);
	return (int)++m->nsources;
}

int weld_model_add_tensor_in(weld_model *m, const struct weld_tensor_info *info, int source,
			     struct weld_error *err)
{
	if (m->n == m->cap) {
		size_t cap = m->cap ? 2 * m->cap : 64;
		struct model_tensor *t = realloc(m->t, cap * sizeof(*t));

		if (!t)
			return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
		m->t = t;
		m->cap = cap;
	}
	memset(&m->t[m->n], 0, sizeof(m->t[m->n]));
	m->t[m->n].info = *info;
	m->t[m->n].source = source;
	m->t[m->n].info.name = strdup(info->name);
	if (!m->t[m->n].info.name)
		return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	m->n++;
	return 0;
}

int weld_model_add_tensor(weld_model *m, const struct weld_tensor_info *info,
			  struct weld_error *err)
{
	return weld_model_add_tensor_in(m, info, 0, err);
}

static int add_file(weld_model *m, const char *path, struct weld_error *err)
{
	struct model_file *f;
	uint64_t size;
	int fd;

	f = realloc(m->files, (m->nfiles + 1) * sizeof(*f));
	if (!f)
		return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	m->files = f;
	fd = weld_open_regular(path, &size, err);
	if (fd < 0)
		return -1;
	f[m->nfiles].path = strdup(path);
	f[m->nfiles].fd = fd;
	f[m->nfiles].size = size;
	if (!f[m->nfiles].path) {
		close(fd);
		return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	}
	return (int)m->nfiles++;
}

int weld_model_add_file(weld_model *m, const char *path, struct weld_error *err)
{
	int file = add_file(m, path, err);

	if (file >= 0)
		m->parsing = file;
	return file;
}

/* Open one file and hand it to the format its first bytes select. */
static int parse_file(weld_model *m, const char *path, struct weld_error *err)
{
	unsigned char head[64];
	const struct weld_format *f;
	size_t got;
	int file = add_file(m, path, err);

	if (file < 0)
		return -1;
	m->parsing = file;
	got = m->files[file].size < sizeof(head) ? (size_t)m->files[file].size : sizeof(head);
	if (weld_pread_full(m->files[file].fd, head, got, 0, path, err) < 0)
		return -1;
	f = weld_format_detect(head, got, m->files[file].size, path, err);
	if (!f)
		return -1;
	if (m->format && strcmp(m->format, f->name) != 0)
		m->format = "mixed";
	else
		m->format = f->name;
	return f->parse(m, file, err);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

struct index_scan {
	const char *index;
	struct weld_error *err;
};

/* A string of the index holding "\u0000", which cJSON would cut short. */
static int index_nul(void *ctx, const struct weld_json_token *t)
{
	const struct index_scan *c = ctx;
	const struct weld_json_frame *p = t->path;
	bool in_map = t->depth == 2 && weld_json_key_is(&p[0], "weight_map");

	if ((t->kind != WELD_JSON_KEY && t->kind != WELD_JSON_STRING) ||
	    !weld_json_has_nul(t->text, t->len))
		return 0;
	if (in_map && t->kind == WELD_JSON_KEY)
		return weld_fail(c->err, WELD_ERR_FORMAT,
				 "'%s': weight_map: tensor name '%.*s' contains \\u0000", c->index,
				 (int)t->len, t->text);
	if (in_map)
		return weld_fail(c->err, WELD_ERR_FORMAT,
				 "'%s': weight_map.%.*s: shard name contains \\u0000", c->index,
				 (int)p[1].key_len, p[1].key);
	if (t->depth && p[0].key)
		return weld_fail(c->err, WELD_ERR_FORMAT, "'%s': %.*s: contains \\u0000",
				 c->index, (int)p[0].key_len, p[0].key);
	return weld_fail(c->err, WELD_ERR_FORMAT, "'%s': a string contains \\u0000", c->index);
}

/* The index's weight_map (borrowed from *root, which the caller deletes). */
static const cJSON *index_map(const char *index, const char *text, cJSON **root,
			      struct weld_error *err)
{
	struct index_scan c = { index, err };
	const cJSON *map;

	if (weld_json_scan(text, strlen(text), index_nul, &c) == -1)
		return NULL;
	*root = cJSON_Parse(text);
	map = *root ? cJSON_GetObjectItemCaseSensitive(*root, "weight_map") : NULL;
	if (!cJSON_IsObject(map)) {
		weld_fail(err, WELD_ERR_FORMAT, "'%s': %s", index,
			  *root ? "weight_map: missing or not an object" : "invalid JSON");
		return NULL;
	}
	return map;
}

/* The shard names of the map, each a file of the index's folder, into
 * shards[0 .. *ns) (borrowed from the map), sorted. */
static int index_shards(const char *index, const cJSON *map, const char **shards,
			size_t *ns, struct weld_error *err)
{
	const cJSON *e;

	*ns = 0;
	cJSON_ArrayForEach(e, map) {
		const char *s = cJSON_IsString(e) ? e->valuestring : NULL;

		if (!s || !*s || strchr(s, '/') || strcmp(s, "..") == 0)
			return weld_fail(err, WELD_ERR_FORMAT,
					 "'%s': weight_map.%s: shard must be a file name in the same folder",
					 index, e->string);
		shards[(*ns)++] = s;
	}
	qsort(shards, *ns, sizeof(*shards), cmp_str);
	return 0;
}

/*
 * Shards hold exactly what the index lists, where it lists it: every
 * tensor is found in the map by hash, and every name of the map must have
 * been found once. entries[k] is the map's k-th item.
 */
static int index_agrees(weld_model *m, const char *index, const cJSON **entries, size_t nmap,
			struct weld_name_table *names, struct weld_error *err)
{
	bool *seen = calloc(nmap ? nmap : 1, sizeof(*seen));
	int ret = -1;

	if (!seen)
		return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	for (size_t i = 0; i < m->n; i++) {
		const struct weld_tensor_info *t = &m->t[i].info;
		const char *fp = m->files[t->file].path, *base = strrchr(fp, '/');
		size_t k;

		base = base ? base + 1 : fp;
		if (!weld_name_table_find(names, t->name, &k)) {
			weld_fail(err, WELD_ERR_FORMAT,
				  "'%s': tensor '%s': in shard '%s' but not in the index's weight_map",
				  index, t->name, base);
			goto out;
		}
		if (strcmp(entries[k]->valuestring, base) != 0) {
			weld_fail(err, WELD_ERR_FORMAT,
				  "'%s': tensor '%s': weight_map says '%s' but it is in '%s'",
				  index, t->name, entries[k]->valuestring, base);
			goto out;
		}
		seen[k] = true;
	}
	for (size_t k = 0; k < nmap; k++)
		if (!seen[k]) {
			weld_fail(err, WELD_ERR_FORMAT,
				  "'%s': weight_map.%s: tensor not found in shard '%s'",
				  index, entries[k]->string, entries[k]->valuestring);
			goto out;
		}
	ret = 0;
out:
	free(seen);
	return ret;
}

/* The map's items in order, and its names in a table (duplicates refused). */
static int index_names(const char *index, const cJSON *map, const cJSON **entries,
		       struct weld_name_table *names, struct weld_error *err)
{
	const cJSON *e;
	size_t k = 0;

	cJSON_ArrayForEach(e, map) {
		int r = weld_name_table_add(names, e->string, k, NULL);

		if (r < 0)
			return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
		if (r > 0)
			return weld_fail(err, WELD_ERR_FORMAT, "'%s': weight_map.%s: duplicate name",
					 index, e->string);
		entries[k++] = e;
	}
	return 0;
}

/*
 * A sharded checkpoint: parse the index, open each shard once (in name
 * order), then check that the index and the shards agree both ways.
 */
static int open_index(weld_model *m, const char *index, struct weld_error *err)
{
	char *text = NULL;
	const char **shards = NULL;
	const cJSON **entries = NULL;
	struct weld_name_table names = { 0 };
	cJSON *root = NULL;
	const cJSON *map;
	size_t ns = 0, nmap;
	int ret = -1;

	if (weld_read_small_file(index, INDEX_MAX_BYTES, &text, NULL, err) < 0)
		return -1;
	map = index_map(index, text, &root, err);
	if (!map)
		goto out;
	nmap = (size_t)cJSON_GetArraySize(map);
	shards = calloc(nmap ? nmap : 1, sizeof(*shards));
	entries = calloc(nmap ? nmap : 1, sizeof(*entries));
	if (!shards || !entries || weld_name_table_init(&names, nmap) < 0) {
		weld_fail(err, WELD_ERR_NOMEM, "out of memory");
		goto out;
	}
	if (index_shards(index, map, shards, &ns, err) < 0 ||
	    index_names(index, map, entries, &names, err) < 0)
		goto out;
	for (size_t i = 0; i < ns; i++) {
		char *p;
		int r;

		if (i && strcmp(shards[i], shards[i - 1]) == 0)
			continue;
		p = weld_path_join(m->dir, shards[i]);
		if (!p) {
			weld_fail(err, WELD_ERR_NOMEM, "out of memory");
			goto out;
		}
		r = parse_file(m, p, err);
		free(p);
		if (r < 0)
			goto out;
	}
	m->format = m->format ? m->format : "safetensors";
	ret = index_agrees(m, index, entries, nmap, &names, err);
out:
	weld_name_table_free(&names);
	cJSON_Delete(root);
	free(entries);
	free(shards);
	free(text);
	return ret;
}

static int has_suffix(const char *s, const char *suf)
{
	size_t a = strlen(s), b = strlen(suf);

	return a >= b && strcmp(s + a - b, suf) == 0;
}

/*
 * Is dir/name a regular file (1), absent (0), or there but not readable as
 * one (-1, err says why: a folder, a FIFO, a symbolic link loop or to
 * nothing, the errno)? *pathp gets dir/name (caller frees).
 */
static int folder_entry(const char *dir, const char *name, char **pathp,
			struct weld_error *err)
{
	char *p = weld_path_join(dir, name);
	struct stat st;

	*pathp = p;
	if (!p)
		return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	if (lstat(p, &st) < 0)
		return errno == ENOENT ? 0 : weld_fail_errno(err, "cannot open '%s'", p);
	if (stat(p, &st) < 0) {
		if (errno == ENOENT)
			return weld_fail(err, WELD_ERR_IO, "'%s' is a symbolic link to a file that "
					 "does not exist", p);
		return weld_fail_errno(err, "cannot open '%s'", p);
	}
	if (!S_ISREG(st.st_mode)) {
		int fd = weld_open_regular(p, NULL, err);  /* refused: says what it is */

		if (fd < 0)
			return -1;
		close(fd);      /* it became a regular file meanwhile */
	}
	return 1;
}

/* The first of the preferred names the folder holds, opened: 1 if one was
 * there (r its result), 0 if none. */
static int open_preferred(weld_model *m, int *r, struct weld_error *err)
{
	static const char *const names[] = {
		"model.safetensors.index.json", "model.safetensors",
		"pytorch_model.bin.index.json", "pytorch_model.bin",
	};

	for (size_t k = 0; k < sizeof(names) / sizeof(names[0]); k++) {
		char *p;
		int there = folder_entry(m->dir, names[k], &p, err);

		if (there != 0) {
			*r = there < 0 ? -1 : k % 2 ? parse_file(m, p, err) : open_index(m, p, err);
			free(p);
			return 1;
		}
		free(p);
	}
	return 0;
}

/* The names of the folder's *.safetensors files, each a regular file
 * (anything else of that name is refused with its cause), sorted. */
static int list_safetensors(weld_model *m, char ***namesp, size_t *nn, struct weld_error *err)
{
	char **names = NULL;
	DIR *d = opendir(m->dir);
	struct dirent *de;
	int ret = -1;

	*nn = 0;
	if (!d)
		return weld_fail_errno(err, "cannot open folder '%s'", m->dir);
	while ((de = readdir(d))) {
		char **nn2, *p;
		int there;

		if (!has_suffix(de->d_name, ".safetensors"))
			continue;
		there = folder_entry(m->dir, de->d_name, &p, err);
		free(p);
		if (there <= 0)
			goto out;
		nn2 = realloc(names, (*nn + 1) * sizeof(*names));
		if (!nn2 || !(nn2[*nn] = strdup(de->d_name))) {
			names = nn2 ? nn2 : names;
			weld_fail(err, WELD_ERR_NOMEM, "out of memory");
			goto out;
		}
		names = nn2;
		(*nn)++;
	}
	if (*nn)
		qsort(names, *nn, sizeof(*names), cmp_str);
	ret = 0;
out:
	closedir(d);
	*namesp = names;
	return ret;
}

static int open_folder(weld_model *m, struct weld_error *err)
{
	char **names = NULL;
	size_t nn = 0;
	int ret = -1;

	if (open_preferred(m, &ret, err))
		return ret;
	if (list_safetensors(m, &names, &nn, err) < 0)
		goto out;
	if (!nn) {
		weld_fail(err, WELD_ERR_FORMAT,
			  "'%s': no model.safetensors, model.safetensors.index.json, pytorch_model.bin[.index.json] or *.safetensors in this folder",
			  m->dir);
		goto out;
	}
	for (size_t i = 0; i < nn; i++) {
		char *p = weld_path_join(m->dir, names[i]);
		int r = p ? parse_file(m, p, err) : weld_fail(err, WELD_ERR_NOMEM, "out of memory");

		free(p);
		if (r < 0)
			goto out;
	}
	ret = 0;
out:
	for (size_t i = 0; i < nn; i++)
		free(names[i]);
	free(names);
	return ret;
}

static int cmp_tensor(const void *a, const void *b)
{
	return strcmp(((const struct model_tensor *)a)->info.name,
		      ((const struct model_tensor *)b)->info.name);
}

/* One side of BASE+ADAPTER: an existing path, else a Hugging Face cache
 * name; NULL if neither. */
static char *resolve_side(const char *spec)
{
	struct weld_error ignored;
	char *found = NULL;

	if (*spec && access(spec, F_OK) == 0)
		return strdup(spec);
	if (weld_hf_is_name(spec) && weld_hf_snapshot(spec, &found, &ignored) < 0)
		return NULL;
	return found;
}

/* The base model, with the adapter applied (modules_to_save tensors take
 * the adapter's tensor info; reads of changed tensors go to lora.c). */
static int attach_adapter(weld_model *m, const char *spec, const char *dir,
			  struct weld_error *err)
{
	char *p = strdup(spec);
	int adapter_file = -1;

	if (!p)
		return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	free(m->path);
	m->path = p;
	if (weld_lora_open(&m->lora, m, dir, err) < 0)
		return -1;
	for (size_t i = 0; i < m->n; i++) {
		const char *file, *name = m->t[i].info.name;
		const struct weld_tensor_info *r = weld_lora_replacement(m->lora, i, &file);

		if (!r)
			continue;
		if (adapter_file < 0 && (adapter_file = add_file(m, file, err)) < 0)
			return -1;
		m->t[i].info = *r;
		m->t[i].info.name = name;
		m->t[i].info.file = adapter_file;
	}
	return 0;
}

static int open_with_adapter(weld_model **out, const char *spec, struct weld_error *err)
{
	for (const char *plus = strchr(spec, '+'); plus; plus = strchr(plus + 1, '+')) {
		char *left = strndup(spec, (size_t)(plus - spec));
		char *base = left ? resolve_side(left) : NULL, *dir = resolve_side(plus + 1);
		int r = -1;

		free(left);
		if (base && dir && weld_model_open(out, base, err) == 0) {
			r = attach_adapter(*out, spec, dir, err);
			if (r < 0) {
				weld_model_close(*out);
				*out = NULL;
			}
		}
		if (base && dir) {
			free(base);
			free(dir);
			return r;
		}
		free(base);
		free(dir);
	}
	return weld_fail(err, WELD_ERR_ARG,
			 "cannot open model '%s': no such file or folder, and no '+' splits it into a BASE and an ADAPTER that exist (locally or in the Hugging Face cache)",
			 spec);
}

int weld_model_open(weld_model **out, const char *path, struct weld_error *err)
{
	weld_model *m;
	struct stat st;
	int r;

	*out = NULL;
	if (stat(path, &st) < 0 && errno == ENOENT && strchr(path, '+'))
		return open_with_adapter(out, path, err);
	if (stat(path, &st) < 0)
		return weld_fail_errno(err, "cannot open model '%s'", path);
	m = calloc(1, sizeof(*m));
	if (!m)
		return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	m->path = strdup(path);
	if (S_ISDIR(st.st_mode)) {
		m->dir = strdup(path);
	} else {
		char *tmp = strdup(path);

		m->dir = tmp ? strdup(dirname(tmp)) : NULL;
		free(tmp);
	}
	if (!m->path || !m->dir) {
		weld_model_close(m);
		return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	}
	r = S_ISDIR(st.st_mode) ? open_folder(m, err) : parse_file(m, path, err);
	if (r < 0) {
		weld_model_close(m);
		return -1;
	}
	if (m->n > 1)	/* m->t is NULL when the model has no tensor */
		qsort(m->t, m->n, sizeof(*m->t), cmp_tensor);
	for (size_t i = 1; i < m->n; i++)
		if (strcmp(m->t[i - 1].info.name, m->t[i].info.name) == 0) {
			weld_fail(err, WELD_ERR_FORMAT,
				  "'%s': tensor '%s': present in both '%s' and '%s'", path,
				  m->t[i].info.name, m->files[m->t[i - 1].info.file].path,
				  m->files[m->t[i].info.file].path);
			weld_model_close(m);
			return -1;
		}
	if (weld_fp8_pair_scales(m, err) < 0) {
		weld_model_close(m);
		return -1;
	}
	*out = m;
	return 0;
}

void weld_model_close(weld_model *m)
{
	if (!m)
		return;
	weld_lora_close(m->lora);
	for (size_t i = 0; i < m->nfiles; i++) {
		close(m->files[i].fd);
		free(m->files[i].path);
	}
	for (size_t i = 0; i < m->nsources; i++) {
		close(m->sources[i].fd);
		free(m->sources[i].label);
	}
	for (size_t i = 0; i < m->n; i++) {
		if (!m->t[i].is_scale)
			free((char *)m->t[i].info.name);
		if (m->t[i].info.scaled)
			free((char *)m->t[i].scale.name);
	}
	for (size_t i = 0; i < m->nmeta; i++) {
		free(m->meta[i].key);
		free(m->meta[i].value);
	}
	free(m->meta);
	free(m->sources);
	free(m->files);
	free(m->t);
	free(m->path);
	free(m->dir);
	free(m);
}

int64_t weld_model_find(const weld_model *m, const char *name)
{
	size_t lo = 0, hi = m->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(m->t[mid].info.name, name);

		if (c == 0)
			return (int64_t)mid;
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -1;
}

/* Byte offset (from element 0) of the flat C-order index j of a view. */
static uint64_t view_offset(const struct weld_tensor_info *t, uint64_t j)
{
	uint64_t off = 0;

	for (int d = t->ndim - 1; d >= 0; d--) {
		uint64_t dim = (uint64_t)t->shape[d];

		off += (j % dim) * (uint64_t)t->stride[d];
		j /= dim;
	}
	return off * weld_dtype_size(t->dtype);
}

/*
 * A non-contiguous view (a transposed tensor saved by torch): gather the
 * requested elements window by window, so that memory stays bounded and
 * each window of the storage is read once per call.
 */
static int read_strided(int fd, const char *path, const struct weld_tensor_info *t,
			uint64_t first, size_t n, unsigned char *dst,
			struct weld_error *err)
{
	size_t es = weld_dtype_size(t->dtype);
	uint64_t lo = UINT64_MAX, hi = 0;
	unsigned char *win;
	int ret = 0;

	for (size_t k = 0; k < n; k++) {
		uint64_t o = view_offset(t, first + k);

		lo = o < lo ? o : lo;
		hi = o > hi ? o : hi;
	}
	hi += es;
	win = malloc(GATHER_WINDOW);
	if (!win)
		return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	for (uint64_t ws = lo; ws < hi && !ret; ws += GATHER_WINDOW - es) {
		uint64_t we = hi - ws < GATHER_WINDOW ? hi : ws + GATHER_WINDOW;

		ret = weld_pread_full(fd, win, (size_t)(we - ws), t->offset + ws, path, err);
		for (size_t k = 0; k < n && !ret; k++) {
			uint64_t o = view_offset(t, first + k);

			if (o >= ws && o + es <= we)
				memcpy(dst + k * es, win + (o - ws), es);
		}
	}
	free(win);
	return ret;
}

/*
 * Elements [first, first + n) of a tensor stored in blocks, decoded to
 * float32. Whole blocks (what the engine asks for: its chunks are block
 * multiples) are read into the tail of dst and decoded forward, each block
 * copied out before its floats are written (the floats of block k end
 * before the stored bytes of block k + 1 begin, as a block of B floats
 * takes more room than its stored bytes). A range that cuts a block is
 * read through a bounded buffer.
 */
static int read_blocks(int fd, const char *path, const struct weld_tensor_info *t,
		       uint64_t first, size_t n, float *dst, struct weld_error *err)
{
	const struct weld_ggml_type_info *q = weld_ggml_type(t->quant);
	const uint64_t B = q->block, S = q->bytes, fb = first / B;
	const uint64_t nb = (first + n + B - 1) / B - fb;
	unsigned char blk[512];
	unsigned char *raw, *tmp;
	float *f;
	int r = 0;

	if (first % B == 0 && n % B == 0) {
		raw = (unsigned char *)dst + n * sizeof(float) - nb * S;
		if (weld_pread_full(fd, raw, (size_t)(nb * S), t->offset + fb * S, path, err) < 0)
			return -1;
		for (uint64_t k = 0; k < nb; k++) {
			memcpy(blk, raw + k * S, (size_t)S);
			q->decode(blk, dst + k * B, 1);
		}
		return 0;
	}
	tmp = malloc((size_t)(S + B * sizeof(float)));
	if (!tmp)
		return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	f = (float *)(void *)tmp;
	raw = tmp + B * sizeof(float);
	for (uint64_t k = 0; k < nb && !r; k++) {
		uint64_t lo = (fb + k) * B, a = lo > first ? lo : first;
		uint64_t b = lo + B < first + n ? lo + B : first + n;

		r = weld_pread_full(fd, raw, (size_t)S, t->offset + (fb + k) * S, path, err);
		if (!r) {
			q->decode(raw, f, 1);
			memcpy(dst + (a - first), f + (a - lo), (size_t)(b - a) * sizeof(float));
		}
	}
	free(tmp);
	return r;
}

int weld_model_attach_scale(weld_model *m, size_t w, size_t s,
			    const struct weld_tensor_info *how, struct weld_error *err)
{
	struct model_tensor *tw = &m->t[w], *ts = &m->t[s];

	if (!ts->info.contiguous || ts->source || !tw->info.contiguous || tw->source)
		return weld_fail(err, WELD_ERR_FORMAT,
				 "'%s': tensor '%s': FP8 codes and scales must be stored contiguously",
				 m->files[tw->info.file].path, tw->info.name);
	tw->scale = ts->info;
	ts->is_scale = true;
	tw->info.dtype = WELD_F32;
	tw->info.scaled = how->scaled;
	tw->info.scale_dtype = how->scale_dtype;
	tw->info.scale_block[0] = how->scale_block[0];
	tw->info.scale_block[1] = how->scale_block[1];
	tw->info.scale_name = tw->scale.name;
	return 0;
}

void weld_model_hide_tensor(weld_model *m, size_t i)
{
	m->t[i].hidden = true;
}

void weld_model_drop_scales(weld_model *m)
{
	size_t k = 0;

	for (size_t i = 0; i < m->n; i++) {
		if (m->t[i].hidden && !m->t[i].is_scale)
			free((char *)m->t[i].info.name);
		if (!m->t[i].is_scale && !m->t[i].hidden)
			m->t[k++] = m->t[i];
	}
	m->n = k;
}

/* Is scale value k of the range starting at grid element `at` finite?
 * Else an error naming the scale tensor and the element's index. */
static int check_scales(const weld_model *m, const struct weld_tensor_info *s,
			const float *v, size_t n, uint64_t at, struct weld_error *err)
{
	char idx[160];

	for (size_t k = 0; k < n; k++) {
		uint64_t j = at + k;
		size_t o = sizeof(idx);

		if (isfinite(v[k]))
			continue;
		idx[--o] = 0;
		for (int d = s->ndim - 1; d >= 0 && o > 24; d--) {
			uint64_t dim = s->shape[d] ? (uint64_t)s->shape[d] : 1;
			char part[24];
			int len = snprintf(part, sizeof(part), "[%llu]",
					   (unsigned long long)(j % dim));

			o -= (size_t)len;
			memcpy(idx + o, part, (size_t)len);
			j /= dim;
		}
		return weld_fail(err, WELD_ERR_FORMAT,
				 "'%s': tensor '%s': value%s is %s: scales must be finite",
				 m->files[s->file].path, s->name, idx + o, isnan(v[k]) ? "NaN" : "infinite");
	}
	return 0;
}

/*
 * Elements [first, first + n) of FP8 codes with scales, as float32: the
 * codes are read into the tail of dst and decoded in place, then the
 * scale rows the range needs (and only those) are read, checked and
 * applied.
 */
static int read_scaled(const weld_model *m, const struct model_tensor *mt, uint64_t first,
		       size_t n, float *dst, struct weld_error *err)
{
	const struct weld_tensor_info *t = &mt->info, *s = &mt->scale;
	const size_t ses = weld_dtype_size(s->dtype);
	struct weld_fp8_geom g;
	uint64_t g0, gc, ns;
	unsigned char *raw = (unsigned char *)dst + n * (sizeof(float) - 1);
	float *sc;
	int r = -1;

	weld_fp8_geom_of(t, &g);
	if (weld_pread_full(m->files[t->file].fd, raw, n, t->offset + first,
			    m->files[t->file].path, err) < 0)
		return -1;
	weld_decode_f32(WELD_F8_E4M3, raw, dst, n);
	g0 = weld_fp8_scale_row(&g, first);
	gc = weld_fp8_grid_cols(&g);
	ns = (weld_fp8_scale_row(&g, first + n - 1) - g0 + 1) * gc;
	sc = malloc((size_t)ns * sizeof(float));
	if (!sc)
		return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	raw = (unsigned char *)sc + ns * (sizeof(float) - ses);
	if (weld_pread_full(m->files[s->file].fd, raw, (size_t)(ns * ses),
			    s->offset + g0 * gc * ses, m->files[s->file].path, err) < 0)
		goto out;
	weld_decode_f32(s->dtype, raw, sc, (size_t)ns);
	if (check_scales(m, s, sc, (size_t)ns, g0 * gc, err) < 0)
		goto out;
	weld_fp8_apply_scales(&g, first, n, sc, dst);
	r = 0;
out:
	free(sc);
	return r;
}

const struct weld_tensor_info *weld_model_scale(const weld_model *m, size_t i)
{
	return m->t[i].info.scaled ? &m->t[i].scale : NULL;
}

int weld_model_read_scale_stored(const weld_model *m, size_t i, uint64_t off, size_t n,
				 void *dst, struct weld_error *err)
{
	const struct weld_tensor_info *s = weld_model_scale(m, i);

	if (!s)
		return weld_fail(err, WELD_ERR_ARG, "tensor '%s': no scales", m->t[i].info.name);
	if (off > s->nbytes || n > s->nbytes - off)
		return weld_fail(err, WELD_ERR_ARG, "tensor '%s': read past its %llu bytes",
				 s->name, (unsigned long long)s->nbytes);
	return n ? weld_pread_full(m->files[s->file].fd, dst, n, s->offset + off,
				   m->files[s->file].path, err) : 0;
}

int weld_model_read_stored(const weld_model *m, size_t i, uint64_t off, size_t n, void *dst,
			   struct weld_error *err)
{
	const struct weld_tensor_info *t = &m->t[i].info;
	int fd = m->files[t->file].fd, source = m->t[i].source;
	const char *path = m->files[t->file].path;
	size_t es = weld_dtype_size(t->dtype);

	if (m->lora && weld_lora_touches(m->lora, i) && !t->quant && off % es == 0 && n % es == 0)
		return weld_model_read(m, i, off / es, n / es, dst, err);
	if (!t->contiguous)
		return weld_fail(err, WELD_ERR_ARG, "tensor '%s': not stored contiguously", t->name);
	if (off > t->nbytes || n > t->nbytes - off)
		return weld_fail(err, WELD_ERR_ARG, "tensor '%s': read past its %llu bytes",
				 t->name, (unsigned long long)t->nbytes);
	if (source) {
		fd = m->sources[source - 1].fd;
		path = m->sources[source - 1].label;
	}
	return n ? weld_pread_full(fd, dst, n, t->offset + off, path, err) : 0;
}

int weld_model_read(const weld_model *m, size_t i, uint64_t first, size_t n,
		    void *dst, struct weld_error *err)
{
	const struct weld_tensor_info *t = &m->t[i].info;

	if (!m->lora || !weld_lora_touches(m->lora, i))
		return weld_model_read_plain(m, i, first, n, dst, err);
	if (first > t->nelem || n > t->nelem - first)
		return weld_fail(err, WELD_ERR_ARG, "tensor '%s': read past its %llu elements",
				 t->name, (unsigned long long)t->nelem);
	return weld_lora_read(m->lora, m, i, first, n, dst, err);
}

void weld_model_read_cost(const weld_model *m, uint64_t *per_elem, uint64_t *fixed)
{
	*per_elem = *fixed = 0;
	if (m->lora)
		weld_lora_read_cost(m->lora, m, per_elem, fixed);
}

int weld_model_read_plain(const weld_model *m, size_t i, uint64_t first, size_t n,
			  void *dst, struct weld_error *err)
{
	const struct weld_tensor_info *t = &m->t[i].info;
	size_t es = weld_dtype_size(t->dtype);
	int fd = m->files[t->file].fd, source = m->t[i].source;
	const char *path = m->files[t->file].path;

	if (first > t->nelem || n > t->nelem - first)
		return weld_fail(err, WELD_ERR_ARG, "tensor '%s': read past its %llu elements",
				 t->name, (unsigned long long)t->nelem);
	if (!n)
		return 0;
	if (source) {
		fd = m->sources[source - 1].fd;
		path = m->sources[source - 1].label;
	}
	if (t->quant)
		return read_blocks(fd, path, t, first, n, dst, err);
	if (t->scaled)
		return read_scaled(m, &m->t[i], first, n, dst, err);
	if (!t->contiguous)
		return read_strided(fd, path, t, first, n, dst, err);
	return weld_pread_full(fd, dst, n * es, t->offset + first * es, path, err);
}

int weld_model_read_f32(const weld_model *m, size_t i, uint64_t first, size_t n,
			float *dst, void *scratch, struct weld_error *err)
{
	const struct weld_tensor_info *t = &m->t[i].info;
	void *buf = scratch;
	int r;

	if (!weld_dtype_is_float(t->dtype))
		return weld_fail(err, WELD_ERR_ARG, "tensor '%s': dtype %s is not a float type",
				 t->name, weld_dtype_name(t->dtype));
	if (t->dtype == WELD_F32)
		return weld_model_read(m, i, first, n, dst, err);
	if (!buf && !(buf = malloc(n * weld_dtype_size(t->dtype) + 1)))
		return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	r = weld_model_read(m, i, first, n, buf, err);
	if (!r)
		weld_decode_f32(t->dtype, buf, dst, n);
	if (buf != scratch)
		free(buf);
	return r;
}
