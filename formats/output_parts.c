/*
 * output_parts.c - the parts of an output (output_parts.h): which shards a
 * part holds, its description, and the join.
 *
 * A part's description is hostile input like any file: every field is
 * checked for its type and range, a shard's name must be the one the
 * writer gives its position (so no name reaches outside the part), the
 * plan hash is recomputed, and the index must name only the listed shards.
 * A join checks everything before it makes anything, and builds the output
 * in a temporary folder published at once (output_dir.c): a failure leaves
 * the parts as they were.
 */
#include "output_parts.h"
#include "output_dir.h"
#include "output_guard.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#define MAX_PART_FILE (256ull << 20)
#define MAX_SHARDS 999999u
#define MAX_SIDE 64
/* Exact in a JSON number (a double). */
#define MAX_EXACT (1ull << 53)

size_t weld_part_shards(size_t nshards, unsigned part, unsigned parts, size_t *first)
{
	size_t end;

	if (!parts || part < 1 || part > parts) {
		*first = 0;
		return 0;
	}
	/* nshards <= MAX_SHARDS and parts <= WELD_MAX_PARTS: no overflow */
	*first = (size_t)((unsigned long long)nshards * (part - 1) / parts);
	end = (size_t)((unsigned long long)nshards * part / parts);
	return end - *first;
}

/* ---------------------------------------------------------------- the description */

static void hash_str(XXH3_state_t *h, const char *s)
{
	/* NULL and "" differ: a NUL-terminated string, or one 0xff byte */
	if (s)
		XXH3_64bits_update(h, s, strlen(s) + 1);
	else
		XXH3_64bits_update(h, "\xff", 1);
}

/* The plan hash of an output (see output_parts.h), as 16 hex digits. */
static int plan_hash(const char *version, const char *recipe, const char *index,
		     const struct weld_part_shard *s, size_t ns, char hex[17])
{
	XXH3_state_t *h = XXH3_createState();

	if (!h)
		return -1;
	XXH3_64bits_reset(h);
	hash_str(h, "weld-part 1");
	hash_str(h, version);
	hash_str(h, recipe);
	hash_str(h, index);
	for (size_t k = 0; k < ns; k++) {
		char b[24];

		snprintf(b, sizeof(b), "%llu", (unsigned long long)s[k].bytes);
		hash_str(h, s[k].name);
		hash_str(h, b);
	}
	weld_hex64(XXH3_64bits_digest(h), hex);
	XXH3_freeState(h);
	return 0;
}

static cJSON *string_or_null(const char *s)
{
	return s ? cJSON_CreateString(s) : cJSON_CreateNull();
}

char *weld_part_describe(unsigned part, unsigned parts, const char *recipe, const char *index,
			 const struct weld_part_shard *s, size_t ns)
{
	cJSON *root = cJSON_CreateObject(), *list = NULL;
	char hex[17], *text = NULL;
	bool ok = root != NULL && plan_hash(WELD_VERSION, recipe, index, s, ns, hex) == 0;

	ok = ok && cJSON_AddStringToObject(root, "format", "weld-part") &&
	     cJSON_AddStringToObject(root, "weld_version", WELD_VERSION) &&
	     cJSON_AddNumberToObject(root, "part", part) &&
	     cJSON_AddNumberToObject(root, "parts", parts) &&
	     cJSON_AddStringToObject(root, "plan", hex) &&
	     cJSON_AddItemToObject(root, "recipe", string_or_null(recipe)) &&
	     cJSON_AddItemToObject(root, "index", string_or_null(index)) &&
	     (list = cJSON_AddArrayToObject(root, "shards"));
	for (size_t k = 0; ok && k < ns; k++) {
		cJSON *o = cJSON_CreateObject();

		ok = o && cJSON_AddItemToArray(list, o) &&
		     cJSON_AddStringToObject(o, "name", s[k].name) &&
		     cJSON_AddNumberToObject(o, "bytes", (double)s[k].bytes);
	}
	if (ok)
		text = cJSON_Print(root);
	cJSON_Delete(root);
	if (text) {
		size_t l = strlen(text);
		char *t2 = realloc(text, l + 2);

		if (!t2) {
			free(text);
			return NULL;
		}
		memcpy(t2 + l, "\n", 2);
		text = t2;
	}
	return text;
}

/* ---------------------------------------------------------------- reading a part */

struct part {
	const char *dir;        /* as given */
	unsigned part, parts;
	char plan[17];
	char *version, *recipe, *index;
	struct weld_part_shard *s;
	char **names;           /* s[k].name, owned */
	size_t ns;
	size_t first, count;    /* the shards this part holds */
	char *side[MAX_SIDE];   /* the copied files it holds, sorted */
	size_t nside;
};

static void part_free(struct part *p)
{
	for (size_t k = 0; k < p->ns; k++)
		free(p->names[k]);
	for (size_t k = 0; k < p->nside; k++)
		free(p->side[k]);
	free(p->names);
	free(p->s);
	free(p->version);
	free(p->recipe);
	free(p->index);
}

static char *path2(const char *dir, const char *name)
{
	size_t n = strlen(dir) + strlen(name) + 2;
	char *p = malloc(n);

	if (p)
		snprintf(p, n, "%s/%s", dir, name);
	return p;
}

/* The name the writer gives shard k of ns. */
static void shard_name(size_t k, size_t ns, char name[64])
{
	if (ns == 1)
		snprintf(name, 64, "model.safetensors");
	else
		snprintf(name, 64, "model-%05zu-of-%05zu.safetensors", k + 1, ns);
}

/* An integer field in [lo, hi]. */
static int get_uint(const struct part *p, const cJSON *root, const char *key, uint64_t lo,
		    uint64_t hi, uint64_t *out, struct weld_error *err)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
	double d;

	if (!cJSON_IsNumber(v))
		return weld_fail(err, WELD_ERR_FORMAT, "'%s/%s': field '%s' is missing or not a number",
				 p->dir, WELD_PART_FILE, key);
	d = v->valuedouble;
	if (!(d >= (double)lo && d <= (double)hi) || d != (double)(uint64_t)d)
		return weld_fail(err, WELD_ERR_FORMAT,
				 "'%s/%s': field '%s' is %g, not an integer in [%llu, %llu]", p->dir,
				 WELD_PART_FILE, key, d, (unsigned long long)lo, (unsigned long long)hi);
	*out = (uint64_t)d;
	return 0;
}

/* A string field (or null when nullable) copied into *out. */
static int get_str(const struct part *p, const cJSON *root, const char *key, bool nullable,
		   char **out, struct weld_error *err)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);

	*out = NULL;
	if (nullable && cJSON_IsNull(v))
		return 0;
	if (!cJSON_IsString(v))
		return weld_fail(err, WELD_ERR_FORMAT, "'%s/%s': field '%s' is missing or not a string%s",
				 p->dir, WELD_PART_FILE, key, nullable ? " or null" : "");
	if (!(*out = strdup(v->valuestring)))
		return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	return 0;
}

/* "shards": every shard of the output, each named as the writer names it. */
static int get_shards(struct part *p, const cJSON *root, struct weld_error *err)
{
	const cJSON *list = cJSON_GetObjectItemCaseSensitive(root, "shards"), *o;
	size_t k = 0;
	int n;

	if (!cJSON_IsArray(list) || (n = cJSON_GetArraySize(list)) < 1 || (unsigned)n > MAX_SHARDS)
		return weld_fail(err, WELD_ERR_FORMAT, "'%s/%s': field 'shards' is not a list of 1 to %u shards",
				 p->dir, WELD_PART_FILE, MAX_SHARDS);
	p->s = calloc((size_t)n, sizeof(*p->s));
	p->names = calloc((size_t)n, sizeof(*p->names));
	if (!p->s || !p->names)
		return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	cJSON_ArrayForEach(o, list) {
		const cJSON *name = cJSON_GetObjectItemCaseSensitive(o, "name");
		const cJSON *bytes = cJSON_GetObjectItemCaseSensitive(o, "bytes");
		char want[64];
		double b;

		shard_name(k, (size_t)n, want);
		if (!cJSON_IsString(name) || strcmp(name->valuestring, want) != 0)
			return weld_fail(err, WELD_ERR_FORMAT,
					 "'%s/%s': shard %zu of 'shards' is not named '%s'", p->dir,
					 WELD_PART_FILE, k + 1, want);
		b = cJSON_IsNumber(bytes) ? bytes->valuedouble : -1;
		if (!(b >= 8 && b < (double)MAX_EXACT) || b != (double)(uint64_t)b)
			return weld_fail(err, WELD_ERR_FORMAT,
					 "'%s/%s': shard '%s': field 'bytes' is not a file size",
					 p->dir, WELD_PART_FILE, want);
		if (!(p->names[k] = strdup(want)))
			return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
		p->s[k].name = p->names[k];
		p->s[k].bytes = (uint64_t)b;
		p->ns = ++k;
	}
	return 0;
}

/* The index, when there is one, names exactly the listed shards. */
static int check_index(const struct part *p, struct weld_error *err)
{
	cJSON *root, *map, *v;
	char *seen;
	int r = 0;

	if (!p->index != (p->ns == 1))
		return weld_fail(err, WELD_ERR_FORMAT, "'%s/%s': field 'index' is %s for %zu shards",
				 p->dir, WELD_PART_FILE, p->index ? "set" : "null", p->ns);
	if (!p->index)
		return 0;
	root = cJSON_Parse(p->index);
	map = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
	seen = calloc(p->ns, 1);
	if (!seen) {
		cJSON_Delete(root);
		return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	}
	if (!cJSON_IsObject(map)) {
		r = weld_fail(err, WELD_ERR_FORMAT, "'%s/%s': field 'index' has no 'weight_map' object",
			      p->dir, WELD_PART_FILE);
		map = NULL;
	}
	cJSON_ArrayForEach(v, map) {
		unsigned long k;
		char *end;

		/* model-KKKKK-of-NNNNN.safetensors with KKKKK in 1..ns */
		if (!cJSON_IsString(v) || strncmp(v->valuestring, "model-", 6) != 0 ||
		    (k = strtoul(v->valuestring + 6, &end, 10)) < 1 || k > p->ns ||
		    strcmp(v->valuestring, p->names[k - 1]) != 0) {
			r = weld_fail(err, WELD_ERR_FORMAT,
				      "'%s/%s': the index puts tensor '%s' in a file that is not a shard",
				      p->dir, WELD_PART_FILE, v->string ? v->string : "");
			break;
		}
		seen[k - 1] = 1;
	}
	for (size_t k = 0; !r && k < p->ns; k++)
		if (!seen[k])
			r = weld_fail(err, WELD_ERR_FORMAT, "'%s/%s': the index names no tensor of '%s'",
				      p->dir, WELD_PART_FILE, p->names[k]);
	free(seen);
	cJSON_Delete(root);
	return r;
}

/* Parse and check the description of part dir. */
static int read_description(struct part *p, struct weld_error *err)
{
	char *path = path2(p->dir, WELD_PART_FILE), *text = NULL, *plan = NULL, *fmt = NULL;
	char hex[17];
	size_t len = 0;
	cJSON *root = NULL;
	struct stat st;
	uint64_t v;
	int r = -1;

	if (!path)
		return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	if (stat(p->dir, &st) < 0) {
		weld_fail_errno(err, "cannot read the part '%s'", p->dir);
		goto out;
	}
	if (!S_ISDIR(st.st_mode)) {
		weld_fail(err, WELD_ERR_FORMAT, "'%s' is not a folder (a part is a folder OUT.part-I-of-N)",
			  p->dir);
		goto out;
	}
	if (weld_read_small_file(path, MAX_PART_FILE, &text, &len, err) < 0) {
		if (err && err->sys_errno == ENOENT)
			weld_fail(err, WELD_ERR_FORMAT,
				  "'%s' is not a part of a weld merge (no %s: write parts with --part I/N)",
				  p->dir, WELD_PART_FILE);
		goto out;
	}
	root = cJSON_ParseWithLength(text, len);
	if (!cJSON_IsObject(root)) {
		weld_fail(err, WELD_ERR_FORMAT, "'%s': not a JSON object", path);
		goto out;
	}
	if (get_str(p, root, "format", false, &fmt, err) < 0)
		goto out;
	if (strcmp(fmt, "weld-part") != 0) {
		weld_fail(err, WELD_ERR_FORMAT, "'%s': field 'format' is not \"weld-part\"", path);
		goto out;
	}
	if (get_uint(p, root, "parts", 1, WELD_MAX_PARTS, &v, err) < 0)
		goto out;
	p->parts = (unsigned)v;
	if (get_uint(p, root, "part", 1, p->parts, &v, err) < 0)
		goto out;
	p->part = (unsigned)v;
	if (get_str(p, root, "weld_version", false, &p->version, err) < 0 ||
	    get_str(p, root, "plan", false, &plan, err) < 0 ||
	    get_str(p, root, "recipe", true, &p->recipe, err) < 0 ||
	    get_str(p, root, "index", true, &p->index, err) < 0 ||
	    get_shards(p, root, err) < 0 || check_index(p, err) < 0)
		goto out;
	if (plan_hash(p->version, p->recipe, p->index, p->s, p->ns, hex) < 0) {
		weld_fail(err, WELD_ERR_NOMEM, "out of memory");
		goto out;
	}
	if (strcmp(plan, hex) != 0) {
		weld_fail(err, WELD_ERR_FORMAT,
			  "'%s': field 'plan' is '%s' but its fields hash to '%s' (the file was changed)",
			  path, plan, hex);
		goto out;
	}
	memcpy(p->plan, hex, sizeof(hex));
	p->count = weld_part_shards(p->ns, p->part, p->parts, &p->first);
	r = 0;
out:
	cJSON_Delete(root);
	free(fmt);
	free(plan);
	free(text);
	free(path);
	return r;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool is_side_file(const char *name)
{
	size_t n = strlen(name);

	return weld_is_model_folder_file(name) && strcmp(name, WELD_PART_FILE) != 0 &&
	       !(n >= 12 && strcmp(name + n - 12, ".safetensors") == 0) &&
	       !(n >= 23 && strcmp(name + n - 23, ".safetensors.index.json") == 0);
}

/* Is name one of this part's shards? Its index, else -1. */
static long own_shard(const struct part *p, const char *name)
{
	for (size_t k = p->first; k < p->first + p->count; k++)
		if (strcmp(name, p->names[k]) == 0)
			return (long)k;
	return -1;
}

/* The folder holds this part's shards at their sizes, its description and
 * copied files (listed in p->side), and nothing else. */
static int check_files(struct part *p, struct weld_error *err)
{
	DIR *d = opendir(p->dir);
	struct dirent *e;
	char *seen = calloc(p->count + 1, 1);
	int r = 0;

	if (!d || !seen) {
		free(seen);
		if (d)
			closedir(d);
		return d ? weld_fail(err, WELD_ERR_NOMEM, "out of memory")
			 : weld_fail_errno(err, "cannot read the folder '%s'", p->dir);
	}
	while (r == 0 && (e = readdir(d))) {
		char *path;
		struct stat st;
		long k;

		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..") ||
		    !strcmp(e->d_name, WELD_PART_FILE))
			continue;
		k = own_shard(p, e->d_name);
		if (k < 0 && !is_side_file(e->d_name)) {
			r = weld_fail(err, WELD_ERR_FORMAT, "'%s' holds '%s', which is not a file of part %u of %u",
				      p->dir, e->d_name, p->part, p->parts);
			break;
		}
		if (!(path = path2(p->dir, e->d_name))) {
			r = weld_fail(err, WELD_ERR_NOMEM, "out of memory");
			break;
		}
		if (lstat(path, &st) < 0)
			r = weld_fail_errno(err, "cannot stat '%s'", path);
		else if (!S_ISREG(st.st_mode))
			r = weld_fail(err, WELD_ERR_FORMAT, "'%s' is not a regular file", path);
		else if (k >= 0 && (uint64_t)st.st_size != p->s[k].bytes)
			r = weld_fail(err, WELD_ERR_FORMAT, "'%s' is %llu bytes, but its part says %llu (incomplete or changed)",
				      path, (unsigned long long)st.st_size,
				      (unsigned long long)p->s[k].bytes);
		else if (k >= 0)
			seen[(size_t)k - p->first] = 1;
		else if (p->nside == MAX_SIDE)
			r = weld_fail(err, WELD_ERR_FORMAT, "'%s' holds more than %d copied files", p->dir,
				      MAX_SIDE);
		else if (!(p->side[p->nside++] = strdup(e->d_name)))
			r = weld_fail(err, WELD_ERR_NOMEM, "out of memory");
		free(path);
	}
	closedir(d);
	for (size_t k = 0; !r && k < p->count; k++)
		if (!seen[k])
			r = weld_fail(err, WELD_ERR_FORMAT, "'%s': shard '%s' of part %u of %u is missing",
				      p->dir, p->names[p->first + k], p->part, p->parts);
	free(seen);
	qsort(p->side, p->nside, sizeof(*p->side), cmp_str);
	return r;
}

/* ---------------------------------------------------------------- the join */

/* The same bytes in the files a and b? */
static int same_bytes(const char *a, const char *b, bool *same, struct weld_error *err)
{
	char *x = NULL, *y = NULL;
	size_t lx = 0, ly = 0;
	int r = -1;

	if (weld_read_small_file(a, MAX_PART_FILE, &x, &lx, err) == 0 &&
	    weld_read_small_file(b, MAX_PART_FILE, &y, &ly, err) == 0) {
		*same = lx == ly && memcmp(x, y, lx) == 0;
		r = 0;
	}
	free(x);
	free(y);
	return r;
}

/* Part q holds the copied files of part 1 (p1), with the same bytes. */
static int check_side_files(const struct part *p1, const struct part *q, struct weld_error *err)
{
	for (size_t k = 0; k < p1->nside || k < q->nside; k++) {
		const char *name = k < p1->nside ? p1->side[k] : q->side[k];
		char *a, *b;
		bool same = false;
		int r;

		if (k >= p1->nside || k >= q->nside || strcmp(p1->side[k], q->side[k]) != 0)
			return weld_fail(err, WELD_ERR_MISMATCH,
					 "'%s' and '%s' do not hold the same copied files ('%s')",
					 p1->dir, q->dir, name);
		a = path2(p1->dir, name);
		b = path2(q->dir, name);
		r = a && b ? same_bytes(a, b, &same, err)
			   : weld_fail(err, WELD_ERR_NOMEM, "out of memory");
		if (r == 0 && !same)
			r = weld_fail(err, WELD_ERR_MISMATCH, "'%s' and '%s' differ", a, b);
		free(a);
		free(b);
		if (r < 0)
			return -1;
	}
	return 0;
}

/* The parts agree on one plan, and are 1..N once each: by[i] = part i + 1. */
static int check_set(struct part *p, size_t n, struct part **by, struct weld_error *err)
{
	unsigned parts = p[0].parts;

	if (n != parts) {
		size_t shown = 0;
		char list[256] = "";

		for (size_t i = 0; i < n; i++)
			if (p[i].parts == parts)
				by[p[i].part - 1] = &p[i];
		for (unsigned i = 0; i < parts && shown < 8; i++)
			if (!by[i]) {
				size_t l = strlen(list);

				snprintf(list + l, sizeof(list) - l, "%s%u", shown++ ? ", " : "", i + 1);
			}
		return weld_fail(err, WELD_ERR_ARG, "%zu parts given, but '%s' is part %u of %u%s%s",
				 n, p[0].dir, p[0].part, parts, shown ? ": missing part " : "",
				 list);
	}
	for (size_t i = 0; i < n; i++) {
		if (p[i].parts != parts)
			return weld_fail(err, WELD_ERR_MISMATCH, "'%s' is part %u of %u, but '%s' is part %u of %u",
					 p[i].dir, p[i].part, p[i].parts, p[0].dir, p[0].part, parts);
		if (strcmp(p[i].plan, p[0].plan) != 0)
			return weld_fail(err, WELD_ERR_MISMATCH,
					 "'%s' and '%s' are parts of different merges (plan %s, plan %s)",
					 p[0].dir, p[i].dir, p[0].plan, p[i].plan);
		if (by[p[i].part - 1])
			return weld_fail(err, WELD_ERR_ARG, "'%s' and '%s' are both part %u of %u",
					 by[p[i].part - 1]->dir, p[i].dir, p[i].part, parts);
		by[p[i].part - 1] = &p[i];
	}
	return 0;
}

/* Put the file `from` into the output as `name`: a hard link, else a copy. */
static int place(struct weld_outdir *d, const char *from, const char *name, size_t *copied,
		 struct weld_error *err)
{
	char *to = weld_outdir_path(d, name), *label = weld_outdir_label(d, name);
	int r = 0;

	if (!to || !label)
		r = weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	else if (link(from, to) < 0) {
		if (errno == EXDEV || errno == EPERM || errno == EMLINK || errno == ENOTSUP) {
			r = weld_copy_file(from, to, label, err);
			++*copied;
		} else {
			r = weld_fail_errno(err, "cannot link '%s' to '%s'", from, label);
		}
	}
	free(to);
	free(label);
	return r;
}

/* Build the output from the checked parts by[0..N) and publish it. */
static int build(struct part **by, unsigned parts, const char *out, bool force,
		 struct weld_join_result *res, struct weld_error *err)
{
	struct weld_outdir d = { 0 };
	const struct part *p1 = by[0];
	int r = -1;

	d.owner_fd = -1;
	if (weld_outdir_init(&d, out, force, false, err) < 0)
		goto out;
	for (size_t k = 0; k < p1->ns; k++)
		if (weld_outdir_add(&d, p1->names[k], err) < 0)
			goto out;
	for (size_t k = 0; k < p1->nside; k++)
		if (weld_outdir_add(&d, p1->side[k], err) < 0)
			goto out;
	if (weld_outdir_add(&d, "model.safetensors.index.json", err) < 0 ||
	    weld_outdir_create(&d, err) < 0)
		goto out;
	for (unsigned i = 0; i < parts; i++)
		for (size_t k = by[i]->first; k < by[i]->first + by[i]->count; k++) {
			char *from = path2(by[i]->dir, by[i]->names[k]);
			int q = from ? place(&d, from, by[i]->names[k], &res->copied, err)
				     : weld_fail(err, WELD_ERR_NOMEM, "out of memory");

			free(from);
			if (q < 0)
				goto out;
			res->bytes += by[i]->s[k].bytes;
		}
	for (size_t k = 0; k < p1->nside; k++) {
		char *from = path2(p1->dir, p1->side[k]);
		int q = from ? place(&d, from, p1->side[k], &res->copied, err)
			     : weld_fail(err, WELD_ERR_NOMEM, "out of memory");

		free(from);
		if (q < 0)
			goto out;
	}
	if (p1->index) {
		char *path = weld_outdir_path(&d, "model.safetensors.index.json");
		char *label = weld_outdir_label(&d, "model.safetensors.index.json");
		int q = path && label ? weld_write_text_file(path, label, p1->index, err)
				      : weld_fail(err, WELD_ERR_NOMEM, "out of memory");

		free(path);
		free(label);
		if (q < 0)
			goto out;
	}
	res->shards = p1->ns;
	r = weld_outdir_publish(&d, NULL, err);
out:
	weld_outdir_release(&d);
	return r;
}

/* Remove what part p held (its files are in the output now), then the
 * folder; false if something is left. */
static bool remove_part(const struct part *p)
{
	bool ok = true;

	for (size_t k = p->first; k < p->first + p->count + p->nside + 1; k++) {
		const char *name = k < p->first + p->count ? p->names[k]
				 : k < p->first + p->count + p->nside ? p->side[k - p->first - p->count]
				 : WELD_PART_FILE;
		char *path = path2(p->dir, name);

		ok = path && unlink(path) == 0 && ok;
		free(path);
	}
	return rmdir(p->dir) == 0 && ok;
}

int weld_part_check(const char *dir, struct weld_part_info *info, struct weld_error *err)
{
	struct part p = { 0 };
	int r;

	memset(info, 0, sizeof(*info));
	p.dir = dir;
	r = read_description(&p, err) < 0 || check_files(&p, err) < 0 ? -1 : 0;
	if (r == 0) {
		info->part = p.part;
		info->parts = p.parts;
		info->shards = p.ns;
		info->held = p.count;
	}
	part_free(&p);
	return r;
}

int weld_parts_join(const char *const *dirs, size_t n, const char *out,
		    const struct weld_join_opts *o, struct weld_join_result *res,
		    struct weld_error *err)
{
	struct part *p = calloc(n + 1, sizeof(*p));
	struct part **by = NULL;
	int r = -1;

	memset(res, 0, sizeof(*res));
	if (!p)
		return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	if (!n || n > WELD_MAX_PARTS) {
		weld_fail(err, WELD_ERR_ARG, "expected 1 to %u parts, got %zu", WELD_MAX_PARTS, n);
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		p[i].dir = dirs[i];
		if (read_description(&p[i], err) < 0 || check_files(&p[i], err) < 0)
			goto out;
	}
	if (!(by = calloc(p[0].parts, sizeof(*by)))) {
		weld_fail(err, WELD_ERR_NOMEM, "out of memory");
		goto out;
	}
	if (check_set(p, n, by, err) < 0)
		goto out;
	for (unsigned i = 1; i < p[0].parts; i++)
		if (check_side_files(by[0], by[i], err) < 0)
			goto out;
	if (build(by, p[0].parts, out, o->force, res, err) < 0)
		goto out;
	res->parts = p[0].parts;
	for (unsigned i = 0; !o->keep_parts && i < p[0].parts; i++)
		if (!remove_part(by[i]) && !res->left)
			res->left = by[i]->dir;
	r = 0;
out:
	for (size_t i = 0; i < n; i++)
		part_free(&p[i]);
	free(by);
	free(p);
	return r;
}
