/*
 * test_writer.c - the safetensors writer (formats/safetensors_writer.c,
 * formats/output_dir.c): what it writes reads back through
 * weld_model_open() with the same bytes; the layout follows the reference
 * writer (dtype rank descending then name, consecutive offsets, header
 * padded with spaces to a multiple of 8); the metadata records XXH3-64 of
 * every tensor; shards and the index follow the Hugging Face names; and
 * whatever fails or is interrupted leaves neither a temporary folder nor an
 * output behind.
 */
#include <stdarg.h>   /* cmocka 1.1.x needs these four before cmocka.h */
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <string.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "weld.h"
#include "write_queue.h"
#include "fixtures.h"

/* ---------------------------------------------------------------- helpers */

/*
 * The temporary folder a writer of dir/base in process pid uses: the
 * ".weld-tmp-XXXXXX" of dir whose owner file names them (caller frees), or
 * NULL.
 */
static char *read_text(const char *path, size_t *len);

static char *tmp_of_pid(const char *dir, const char *base, long pid)
{
	char want[512], *found = NULL;
	DIR *d = opendir(dir);
	struct dirent *de;

	assert_non_null(d);
	snprintf(want, sizeof(want), "weld temporary output\noutput: %s\npid: %ld\n", base, pid);
	while (!found && (de = readdir(d))) {
		char *owner, *text;

		if (strncmp(de->d_name, ".weld-tmp-", 10) || strlen(de->d_name) != 16)
			continue;
		owner = fixture_path(dir, de->d_name);
		found = owner;
		owner = fixture_path(found, "owner");
		text = fixture_exists(owner) ? read_text(owner, NULL) : NULL;
		if (!text || strcmp(text, want) != 0) {
			free(found);
			found = NULL;
		}
		free(text);
		free(owner);
	}
	closedir(d);
	return found;
}

static char *tmp_of(const char *dir, const char *base)
{
	return tmp_of_pid(dir, base, (long)getpid());
}

/* Number of entries in dir (without . and ..); names joined by '|' into
 * list if given. */
static int count_entries(const char *dir, char *list, size_t len)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	int n = 0;

	assert_non_null(d);
	if (list)
		list[0] = 0;
	while ((de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (list && strlen(list) + strlen(de->d_name) + 2 < len) {
			strcat(list, de->d_name);
			strcat(list, "|");
		}
		n++;
	}
	closedir(d);
	return n;
}

static void assert_entries(const char *dir, int want)
{
	char list[1024];
	int n = count_entries(dir, list, sizeof(list));

	if (n != want)
		print_error("'%s' holds %d entries (%s), expected %d\n", dir, n, list, want);
	assert_int_equal(n, want);
}

static char *read_text(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *b;
	long n;

	assert_non_null(f);
	assert_int_equal(fseek(f, 0, SEEK_END), 0);
	n = ftell(f);
	assert_true(n >= 0);
	rewind(f);
	b = malloc((size_t)n + 1);
	assert_non_null(b);
	assert_int_equal(fread(b, 1, (size_t)n, f), (size_t)n);
	b[n] = 0;
	fclose(f);
	if (len)
		*len = (size_t)n;
	return b;
}

/* Parse the safetensors header of path, checking what every file weld
 * writes must satisfy: N a multiple of 8, a compact JSON object that starts
 * at offset 8, then only spaces up to 8 + N, and 8 + N + data = file size. */
static cJSON *read_header(const char *path, uint64_t *data_len)
{
	size_t len, jl;
	char *b = read_text(path, &len);
	uint64_t n = 0;
	const char *end;
	cJSON *root;

	assert_true(len >= 8);
	for (int i = 0; i < 8; i++)
		n |= (uint64_t)(unsigned char)b[i] << (8 * i);
	assert_int_equal(n % 8, 0);
	assert_true(8 + n <= len);
	assert_int_equal(b[8], '{');
	root = cJSON_ParseWithLengthOpts(b + 8, n, &end, 0);
	assert_non_null(root);
	jl = (size_t)(end - (b + 8));
	assert_true(n - jl < 8);
	for (size_t i = 8 + jl; i < 8 + n; i++)
		assert_int_equal(b[i], ' ');
	if (data_len)
		*data_len = len - 8 - n;
	free(b);
	return root;
}

static uint64_t num(const cJSON *o, int i)
{
	const cJSON *v = cJSON_GetArrayItem(o, i);

	assert_true(cJSON_IsNumber(v));
	return (uint64_t)v->valuedouble;
}

/* Deterministic contents for tensor `seed`. */
static void fill(unsigned char *p, size_t n, unsigned seed)
{
	for (size_t k = 0; k < n; k++)
		p[k] = (unsigned char)(seed * 31u + k * 7u + (k >> 8));
}

static size_t tensor_bytes(const struct weld_out_tensor *t)
{
	size_t n = weld_dtype_size(t->dtype);

	for (int d = 0; d < t->ndim; d++)
		n *= (size_t)t->shape[d];
	return n;
}

static weld_writer *open_writer(const char *out, const struct weld_out_tensor *t, size_t n,
				const struct weld_writer_opts *o)
{
	struct weld_error err = { 0 };
	weld_writer *w = NULL;

	if (weld_writer_open(&w, out, t, n, o, &err) != 0)
		print_error("weld_writer_open('%s'): %s\n", out, err.msg);
	assert_non_null(w);
	return w;
}

/* Write every tensor's fill() bytes in two chunks, last tensor first. */
static void write_all(weld_writer *w, const struct weld_out_tensor *t, size_t n)
{
	struct weld_error err = { 0 };

	for (size_t k = n; k-- > 0;) {
		size_t nb = tensor_bytes(&t[k]);
		unsigned char *b = malloc(nb + 1);
		int64_t i = weld_writer_find(w, t[k].name);

		assert_non_null(b);
		assert_true(i >= 0);
		fill(b, nb, (unsigned)k);
		assert_int_equal(weld_writer_write(w, (size_t)i, b, nb / 2, &err), 0);
		assert_int_equal(weld_writer_write(w, (size_t)i, b + nb / 2, nb - nb / 2, &err), 0);
		free(b);
	}
}

static void commit_ok(weld_writer *w)
{
	struct weld_error err = { 0 };

	if (weld_writer_commit(w, &err) != 0)
		print_error("weld_writer_commit: %s\n", err.msg);
	assert_int_equal(err.status, WELD_OK);
}

/* Every tensor of t is in model m with fill()'s bytes. */
static void check_model(const weld_model *m, const struct weld_out_tensor *t, size_t n)
{
	struct weld_error err = { 0 };

	assert_int_equal(weld_model_count(m), n);
	for (size_t k = 0; k < n; k++) {
		int64_t i = weld_model_find(m, t[k].name);
		const struct weld_tensor_info *info;
		size_t nb = tensor_bytes(&t[k]);
		unsigned char *want = malloc(nb + 1), *got = malloc(nb + 1);

		assert_true(i >= 0);
		info = weld_model_tensor(m, (size_t)i);
		assert_int_equal(info->dtype, t[k].dtype);
		assert_int_equal(info->ndim, t[k].ndim);
		for (int d = 0; d < t[k].ndim; d++)
			assert_int_equal(info->shape[d], t[k].shape[d]);
		assert_int_equal(info->nbytes, nb);
		fill(want, nb, (unsigned)k);
		assert_int_equal(weld_model_read(m, (size_t)i, 0, (size_t)info->nelem, got, &err), 0);
		assert_memory_equal(got, want, nb);
		free(want);
		free(got);
	}
}

/* The weld_xxh3 metadata of a header names exactly the tensors of that
 * file, each with the XXH3-64 of its fill() bytes. */
static void check_hashes(const cJSON *hdr, const struct weld_out_tensor *t, size_t n)
{
	const cJSON *meta = cJSON_GetObjectItemCaseSensitive(hdr, "__metadata__");
	const cJSON *hx = cJSON_GetObjectItemCaseSensitive(meta, "weld_xxh3");
	cJSON *h;
	int listed = 0;

	assert_true(cJSON_IsString(hx));
	h = cJSON_Parse(hx->valuestring);
	assert_true(cJSON_IsObject(h));
	for (size_t k = 0; k < n; k++) {
		const cJSON *e = cJSON_GetObjectItemCaseSensitive(h, t[k].name);
		size_t nb = tensor_bytes(&t[k]);
		unsigned char *b;
		char hex[17];

		if (!cJSON_GetObjectItemCaseSensitive(hdr, t[k].name)) {
			assert_null(e);
			continue;
		}
		b = malloc(nb + 1);
		assert_non_null(b);
		fill(b, nb, (unsigned)k);
		weld_hex64(weld_xxh3(b, nb), hex);
		free(b);
		assert_true(cJSON_IsString(e));
		assert_string_equal(e->valuestring, hex);
		listed++;
	}
	assert_int_equal(cJSON_GetArraySize(h), listed);
	cJSON_Delete(h);
}

#define F(n, dt, nd, ...) { n, dt, nd, { __VA_ARGS__ } }

/* ---------------------------------------------------------------- round trip and layout */

static const struct weld_out_tensor mixed[] = {
	F("b.w", WELD_F32, 2, 2, 3),
	F("a.w", WELD_F32, 1, 4),
	F("emb", WELD_BF16, 2, 3, 2),
	F("ids", WELD_I64, 1, 2),
	F("mask", WELD_U8, 1, 5),
	F("s", WELD_F16, 0, 0),
	F("empty", WELD_F32, 2, 0, 4),
	F("flag", WELD_BOOL, 1, 3),
	F("h", WELD_F64, 1, 1),
	F("q", WELD_I32, 1, 2),
	F("u", WELD_U16, 1, 3),
	F("e4", WELD_F8_E4M3, 1, 2),
};
#define NMIXED (sizeof(mixed) / sizeof(mixed[0]))

static void test_roundtrip_same_bytes(void **state)
{
	struct weld_writer_opts o = { 0 };
	struct weld_error err = { 0 };
	char *out = fixture_path(*state, "out");
	char *file = fixture_path(out, "model.safetensors");
	weld_writer *w = open_writer(out, mixed, NMIXED, &o);
	weld_model *m = NULL;
	float v[6];

	assert_int_equal(weld_writer_shards(w), 1);
	write_all(w, mixed, NMIXED);
	commit_ok(w);
	weld_writer_close(w);
	assert_entries(*state, 1);
	assert_entries(out, 1);   /* model.safetensors, no index, no side files */

	assert_int_equal(weld_model_open(&m, out, &err), 0);
	check_model(m, mixed, NMIXED);
	assert_string_equal(weld_model_metadata(m, "format"), "pt");
	assert_string_equal(weld_model_metadata(m, "weld_version"), WELD_VERSION);
	assert_null(weld_model_metadata(m, "weld_recipe"));
	/* decoded values too */
	{
		unsigned char b[24];

		fill(b, 24, 0);  /* "b.w" is mixed[0] */
		assert_int_equal(weld_model_read_f32(m, (size_t)weld_model_find(m, "b.w"), 0, 6,
						     v, NULL, &err), 0);
		assert_memory_equal(v, b, 24);
	}
	/* weld_model_hash agrees with what the writer recorded */
	for (size_t k = 0; k < NMIXED; k++) {
		uint64_t h;
		size_t nb = tensor_bytes(&mixed[k]);
		unsigned char *b = malloc(nb + 1);

		fill(b, nb, (unsigned)k);
		assert_int_equal(weld_model_hash(m, (size_t)weld_model_find(m, mixed[k].name), &h,
						 &err), 0);
		assert_true(h == weld_xxh3(b, nb));
		free(b);
	}
	weld_model_close(m);
	free(file);
	free(out);
}

/* Order of the reference writer: dtype rank descending (U64 I64 F64 F32 U32
 * I32 BF16 F16 U16 I16 F8_E4M3 F8_E5M2 I8 U8 BOOL), then name; offsets
 * consecutive from 0; __metadata__ first; fields dtype, shape, data_offsets. */
static void test_tensor_order_and_offsets(void **state)
{
	static const char *const order[] = {
		"ids", "h", "a.w", "b.w", "empty", "q", "emb", "s", "u", "e4", "mask", "flag",
	};
	struct weld_writer_opts o = { 0 };
	char *out = fixture_path(*state, "out");
	char *file = fixture_path(out, "model.safetensors");
	weld_writer *w = open_writer(out, mixed, NMIXED, &o);
	uint64_t pos = 0, data_len;
	const cJSON *it;
	cJSON *hdr;
	size_t k = 0;

	write_all(w, mixed, NMIXED);
	commit_ok(w);
	weld_writer_close(w);
	hdr = read_header(file, &data_len);
	it = hdr->child;
	assert_string_equal(it->string, "__metadata__");
	for (it = it->next; it; it = it->next, k++) {
		const cJSON *f = it->child;

		assert_true(k < NMIXED);
		assert_string_equal(it->string, order[k]);
		assert_string_equal(f->string, "dtype");
		assert_string_equal(f->next->string, "shape");
		assert_string_equal(f->next->next->string, "data_offsets");
		assert_null(f->next->next->next);
		assert_int_equal(num(f->next->next, 0), pos);
		pos = num(f->next->next, 1);
		/* wider types first: every offset is a multiple of the element size */
		{
			enum weld_dtype dt;

			assert_int_equal(weld_dtype_parse(f->valuestring, &dt), 0);
			assert_int_equal(num(f->next->next, 0) % weld_dtype_size(dt), 0);
		}
	}
	assert_int_equal(k, NMIXED);
	assert_int_equal(pos, data_len);
	cJSON_Delete(hdr);
	free(file);
	free(out);
}

static void test_header_padding_and_metadata(void **state)
{
	struct weld_writer_opts o = { .recipe_json = "{\"merge_method\":\"ties\"}" };
	char *out = fixture_path(*state, "out");
	char *file = fixture_path(out, "model.safetensors");
	weld_writer *w = open_writer(out, mixed, NMIXED, &o);
	const cJSON *meta;
	cJSON *hdr;
	weld_model *m = NULL;
	struct weld_error err = { 0 };

	write_all(w, mixed, NMIXED);
	commit_ok(w);
	weld_writer_close(w);
	hdr = read_header(file, NULL);   /* checks N % 8 and the space padding */
	meta = cJSON_GetObjectItemCaseSensitive(hdr, "__metadata__");
	assert_true(cJSON_IsObject(meta));
	assert_string_equal(cJSON_GetObjectItemCaseSensitive(meta, "format")->valuestring, "pt");
	assert_string_equal(cJSON_GetObjectItemCaseSensitive(meta, "weld_version")->valuestring,
			    WELD_VERSION);
	assert_string_equal(cJSON_GetObjectItemCaseSensitive(meta, "weld_recipe")->valuestring,
			    "{\"merge_method\":\"ties\"}");
	check_hashes(hdr, mixed, NMIXED);
	cJSON_Delete(hdr);
	assert_int_equal(weld_model_open(&m, file, &err), 0);
	assert_string_equal(weld_model_metadata(m, "weld_recipe"), "{\"merge_method\":\"ties\"}");
	weld_model_close(m);
	free(file);
	free(out);
}

/* Padding for every header length modulo 8: names of growing length. */
static void test_padding_every_length(void **state)
{
	char name[32] = "t";

	for (int len = 1; len <= 16; len++) {
		struct weld_out_tensor t[1] = { F(name, WELD_U8, 1, 1) };
		struct weld_writer_opts o = { .force = true };
		char *out = fixture_path(*state, "out");
		char *file = fixture_path(out, "model.safetensors");
		weld_writer *w;
		weld_model *m = NULL;
		struct weld_error err = { 0 };

		memset(name, 'a' + len, (size_t)len);
		name[len] = 0;
		w = open_writer(out, t, 1, &o);
		write_all(w, t, 1);
		commit_ok(w);
		weld_writer_close(w);
		cJSON_Delete(read_header(file, NULL));
		assert_int_equal(weld_model_open(&m, out, &err), 0);
		check_model(m, t, 1);
		weld_model_close(m);
		free(file);
		free(out);
	}
}

/* Names that JSON must escape survive, in the header and in weld_xxh3. */
static void test_names_needing_escapes(void **state)
{
	static const struct weld_out_tensor t[] = {
		F("quote\"back\\slash", WELD_F32, 1, 2),
		F("tab\there/\xc3\xa9", WELD_F32, 1, 1),
		F("", WELD_U8, 1, 3),
	};
	struct weld_writer_opts o = { 0 };
	char *out = fixture_path(*state, "out");
	char *file = fixture_path(out, "model.safetensors");
	weld_writer *w = open_writer(out, t, 3, &o);
	weld_model *m = NULL;
	struct weld_error err = { 0 };
	cJSON *hdr;

	write_all(w, t, 3);
	commit_ok(w);
	weld_writer_close(w);
	assert_int_equal(weld_model_open(&m, out, &err), 0);
	check_model(m, t, 3);
	weld_model_close(m);
	hdr = read_header(file, NULL);
	check_hashes(hdr, t, 3);
	cJSON_Delete(hdr);
	free(file);
	free(out);
}

/*
 * The header is written without cJSON; its bytes must be those of
 * cJSON_PrintUnformatted() for the same object (what weld wrote before, and
 * what `weld verify` and the tests parse), with names and a recipe that hold
 * every byte JSON escapes.
 */
static char *cjson_header(const cJSON *file_hdr, const char *recipe)
{
	cJSON *root = cJSON_CreateObject(), *meta = cJSON_AddObjectToObject(root, "__metadata__");
	cJSON *hashes = cJSON_Parse(cJSON_GetObjectItemCaseSensitive(
		cJSON_GetObjectItemCaseSensitive(file_hdr, "__metadata__"), "weld_xxh3")->valuestring);
	const cJSON *t;
	char *text, *out;

	assert_non_null(hashes);
	text = cJSON_PrintUnformatted(hashes);
	cJSON_AddStringToObject(meta, "format", "pt");
	cJSON_AddStringToObject(meta, "weld_version", WELD_VERSION);
	if (recipe)
		cJSON_AddStringToObject(meta, "weld_recipe", recipe);
	cJSON_AddStringToObject(meta, "weld_xxh3", text);
	cJSON_ArrayForEach(t, file_hdr) {
		cJSON *o, *shape, *offs;
		const cJSON *d;

		if (!strcmp(t->string, "__metadata__"))
			continue;
		o = cJSON_AddObjectToObject(root, t->string);
		cJSON_AddStringToObject(o, "dtype", cJSON_GetObjectItemCaseSensitive(t, "dtype")->valuestring);
		shape = cJSON_AddArrayToObject(o, "shape");
		cJSON_ArrayForEach(d, cJSON_GetObjectItemCaseSensitive(t, "shape"))
			cJSON_AddItemToArray(shape, cJSON_CreateNumber(d->valuedouble));
		offs = cJSON_AddArrayToObject(o, "data_offsets");
		cJSON_ArrayForEach(d, cJSON_GetObjectItemCaseSensitive(t, "data_offsets"))
			cJSON_AddItemToArray(offs, cJSON_CreateNumber(d->valuedouble));
	}
	out = cJSON_PrintUnformatted(root);
	cJSON_free(text);
	cJSON_Delete(hashes);
	cJSON_Delete(root);
	return out;
}

static void test_header_bytes_as_cjson_prints_them(void **state)
{
	static char all[256], low[40];
	const char *recipe = "{\"m\":\"a\\\"b\",\"p\":\"\\u0001\\n\\t/\xc3\xa9\"}\x7f\x01\x1f";
	struct weld_out_tensor t[] = {
		F(all, WELD_F32, 2, 2, 3), F(low, WELD_BF16, 0), F("plain.weight", WELD_U8, 1, 5),
		F("q\"b\\s/\x7f", WELD_I64, 3, 1, 2, 1),
	};
	struct weld_writer_opts o = { .recipe_json = recipe, .shard_size = 30 };
	char *out = fixture_path(*state, "out");
	weld_writer *w;
	size_t ns;

	for (int c = 1; c < 256; c++)
		all[c - 1] = (char)c;
	for (int c = 1; c < 40; c++)
		low[c - 1] = (char)(c < 32 ? c : 'a' + c - 32);
	w = open_writer(out, t, 4, &o);
	ns = weld_writer_shards(w);
	assert_true(ns > 1);
	write_all(w, t, 4);
	commit_ok(w);
	weld_writer_close(w);
	for (size_t k = 0; k < ns; k++) {
		char name[64], *file, *text, *want;
		size_t len;
		uint64_t n = 0;
		cJSON *hdr;

		snprintf(name, sizeof(name), "model-%05zu-of-%05zu.safetensors", k + 1, ns);
		file = fixture_path(out, name);
		hdr = read_header(file, NULL);
		want = cjson_header(hdr, recipe);
		text = read_text(file, &len);
		for (int i = 0; i < 8; i++)
			n |= (uint64_t)(unsigned char)text[i] << (8 * i);
		assert_int_equal(n, (strlen(want) + 7) / 8 * 8);
		assert_memory_equal(text + 8, want, strlen(want));
		free(text);
		cJSON_free(want);
		cJSON_Delete(hdr);
		free(file);
	}
	free(out);
}

/*
 * A header a reader would refuse is refused at open, before any file is
 * made, naming the output: over 100 MB (names of 1 to 11,000 bytes make
 * some 121 MB), or more tensors than a file may hold.
 */
static void test_header_over_the_limits_refused_at_open(void **state)
{
	size_t n = 11000, many = WELD_MAX_TENSORS_PER_FILE + 1;
	char *names = malloc(n + 1), (*small)[12] = malloc(many * sizeof(*small));
	struct weld_out_tensor *t = calloc(many, sizeof(*t));
	struct weld_writer_opts o = { 0 };
	struct weld_error err = { 0 };
	char *out = fixture_path(*state, "out");
	weld_writer *w = (weld_writer *)&err;

	assert_true(names && small && t);
	memset(names, 'n', n);
	names[n] = 0;
	for (size_t i = 0; i < n; i++)
		t[i] = (struct weld_out_tensor)F(names + i, WELD_U8, 1, 1);
	/* the check alone says the same, and makes nothing either */
	assert_int_equal(weld_writer_check(out, t, n, &o, &err), -1);
	assert_non_null(strstr(err.msg, "(11000 tensors), over the 100000000"));
	assert_entries(*state, 0);
	assert_int_equal(weld_writer_open(&w, out, t, n, &o, &err), -1);
	assert_null(w);
	if (!strstr(err.msg, out) || !strstr(err.msg, "over the 100000000"))
		print_error("message: %s\n", err.msg);
	assert_non_null(strstr(err.msg, out));
	assert_non_null(strstr(err.msg, "the header of 'model.safetensors' would be"));
	assert_non_null(strstr(err.msg, "(11000 tensors), over the 100000000"));
	assert_entries(*state, 0);
	/* sharded small enough, it passes the check and is written */
	o.shard_size = 1000;
	assert_int_equal(weld_writer_check(out, t, n, &o, &err), 0);
	assert_entries(*state, 0);
	w = open_writer(out, t, n, &o);
	weld_writer_close(w);
	assert_entries(*state, 0);

	o.shard_size = 0;
	for (size_t i = 0; i < many; i++) {
		snprintf(small[i], sizeof(small[i]), "t%zu", i);
		t[i] = (struct weld_out_tensor)F(small[i], WELD_U8, 1, 1);
	}
	memset(&err, 0, sizeof(err));
	assert_int_equal(weld_writer_open(&w, out, t, many, &o, &err), -1);
	assert_non_null(strstr(err.msg, out));
	assert_non_null(strstr(err.msg, "would hold 524289 tensors, more than the 524288 a file "
				"may hold"));
	assert_entries(*state, 0);
	free(t);
	free(small);
	free(names);
	free(out);
}

static void test_no_tensors(void **state)
{
	struct weld_writer_opts o = { 0 };
	char *out = fixture_path(*state, "out");
	weld_writer *w = open_writer(out, NULL, 0, &o);
	weld_model *m = NULL;
	struct weld_error err = { 0 };

	commit_ok(w);
	weld_writer_close(w);
	assert_int_equal(weld_model_open(&m, out, &err), 0);
	assert_int_equal(weld_model_count(m), 0);
	assert_string_equal(weld_model_metadata(m, "format"), "pt");
	weld_model_close(m);
	free(out);
}

/* A write of zero bytes, before, between or after the data, changes
 * nothing: not the bytes and not the recorded hash. */
static void test_zero_length_writes(void **state)
{
	static const struct weld_out_tensor t[] = { F("a", WELD_F32, 1, 4), F("e", WELD_F32, 1, 0) };
	struct weld_writer_opts o = { 0 };
	struct weld_error err = { 0 };
	char *out = fixture_path(*state, "out");
	char *file = fixture_path(out, "model.safetensors");
	weld_writer *w = open_writer(out, t, 2, &o);
	unsigned char b[16];
	weld_model *m = NULL;
	cJSON *hdr;
	size_t a = (size_t)weld_writer_find(w, "a"), e = (size_t)weld_writer_find(w, "e");

	fill(b, 16, 0);
	assert_int_equal(weld_writer_write(w, a, b, 0, &err), 0);
	assert_int_equal(weld_writer_write(w, a, b, 8, &err), 0);
	assert_int_equal(weld_writer_write(w, a, b + 8, 0, &err), 0);
	assert_int_equal(weld_writer_write(w, a, b + 8, 8, &err), 0);
	assert_int_equal(weld_writer_write(w, a, b, 0, &err), 0);
	assert_int_equal(weld_writer_write(w, e, b, 0, &err), 0);
	assert_int_equal(weld_writer_write(w, e, NULL, 0, &err), 0);
	commit_ok(w);
	weld_writer_close(w);
	hdr = read_header(file, NULL);
	check_hashes(hdr, t, 2);
	cJSON_Delete(hdr);
	assert_int_equal(weld_model_open(&m, out, &err), 0);
	check_model(m, t, 2);
	weld_model_close(m);
	free(file);
	free(out);
}

/* The engine's writer thread: chunks submitted through the ring land in
 * order; a write that fails there (here: more bytes than the tensor has)
 * is reported by a later buffer request and by the drain, and the output
 * is not published. */
static void test_outq_order_and_failure(void **state)
{
	static const struct weld_out_tensor t[] = { F("a", WELD_F32, 1, 64) };
	struct weld_writer_opts o = { 0 };
	struct weld_error err = { 0 };
	char *out = fixture_path(*state, "out");
	weld_writer *w = open_writer(out, t, 1, &o);
	struct weld_outq *q = weld_outq_new(64);
	unsigned char want[256], *b;
	weld_model *m = NULL;
	bool failed = false;

	assert_non_null(q);
	fill(want, sizeof(want), 3);
	/* ten chunks of 16 bytes: more than the ring holds, so it wraps */
	for (int k = 0; k < 10; k++) {
		assert_non_null(b = weld_outq_buffer(q, &err));
		memcpy(b, want + 16 * k, 16);
		assert_int_equal(weld_outq_submit(q, w, 0, 16, &err), 0);
	}
	assert_int_equal(weld_outq_drain(q, &err), 0);
	/* 160 of 256 bytes written; 112 more overflow the tensor */
	assert_non_null(b = weld_outq_buffer(q, &err));
	memcpy(b, want + 160, 64);
	assert_int_equal(weld_outq_submit(q, w, 0, 64, &err), 0);
	assert_non_null(b = weld_outq_buffer(q, &err));
	assert_int_equal(weld_outq_submit(q, w, 0, 48, &err), 0);
	for (int k = 0; k < 8 && !failed; k++)
		failed = !(b = weld_outq_buffer(q, &err)) || weld_outq_submit(q, w, 0, 16, &err) < 0;
	assert_true(weld_outq_drain(q, &err) < 0);
	assert_non_null(strstr(err.msg, "more bytes than its size"));
	weld_outq_free(q);
	weld_writer_close(w);
	assert_int_not_equal(weld_model_open(&m, out, &err), 0);
	{
		/* the same chunks, in order and without the overflow, make the
		 * tensor: the ring kept their order */
		unsigned char got[256];

		w = open_writer(out, t, 1, &o);
		q = weld_outq_new(64);
		assert_non_null(q);
		for (int k = 0; k < 16; k++) {
			assert_non_null(b = weld_outq_buffer(q, &err));
			memcpy(b, want + 16 * k, 16);
			assert_int_equal(weld_outq_submit(q, w, 0, 16, &err), 0);
		}
		assert_int_equal(weld_outq_drain(q, &err), 0);
		weld_outq_free(q);
		commit_ok(w);
		weld_writer_close(w);
		assert_int_equal(weld_model_open(&m, out, &err), 0);
		assert_int_equal(weld_model_read(m, 0, 0, 64, got, &err), 0);
		assert_memory_equal(got, want, sizeof(got));
		weld_model_close(m);
	}
	free(out);
}

/* Different tensors may be written from different threads at once. */
static void test_parallel_writes(void **state)
{
	enum { N = 48 };
	struct weld_out_tensor t[N];
	char names[N][24];
	struct weld_writer_opts o = { .shard_size = 4000 };
	char *out = fixture_path(*state, "out");
	weld_writer *w;
	weld_model *m = NULL;
	struct weld_error err = { 0 };
	int failed = 0;

	for (int k = 0; k < N; k++) {
		snprintf(names[k], sizeof(names[k]), "layer.%02d", k);
		t[k] = (struct weld_out_tensor){ names[k], k % 3 ? WELD_F32 : WELD_BF16, 2,
						 { 7 + k, 13 } };
	}
	w = open_writer(out, t, N, &o);
	assert_true(weld_writer_shards(w) > 1);
	assert_int_equal(weld_writer_find(w, "absent"), -1);
#pragma omp parallel for schedule(dynamic, 1) reduction(+:failed)
	for (int k = 0; k < N; k++) {
		struct weld_error e = { 0 };
		size_t nb = tensor_bytes(&t[k]), step = 5;
		unsigned char *b = malloc(nb);
		size_t i = (size_t)weld_writer_find(w, t[k].name);

		fill(b, nb, (unsigned)k);
		for (size_t off = 0; off < nb && !failed; off += step)
			failed += weld_writer_write(w, i, b + off, nb - off < step ? nb - off : step,
						    &e) != 0;
		free(b);
	}
	assert_int_equal(failed, 0);
	commit_ok(w);
	weld_writer_close(w);
	assert_int_equal(weld_model_open(&m, out, &err), 0);
	check_model(m, t, N);
	weld_model_close(m);
	free(out);
}

/* ---------------------------------------------------------------- shards */

static void test_sharding_hf_names_and_index(void **state)
{
	/* write order: a b c (F32, 16 bytes each), then big, d, e (U8) */
	static const struct weld_out_tensor t[] = {
		F("e", WELD_U8, 1, 4),
		F("big", WELD_U8, 1, 20),
		F("c", WELD_F32, 1, 4),
		F("a", WELD_F32, 1, 4),
		F("d", WELD_U8, 1, 4),
		F("b", WELD_F32, 1, 4),
	};
	static const char *const shard_of[][2] = {
		{ "a", "model-00001-of-00005.safetensors" },
		{ "b", "model-00002-of-00005.safetensors" },
		{ "big", "model-00004-of-00005.safetensors" },
		{ "c", "model-00003-of-00005.safetensors" },
		{ "d", "model-00005-of-00005.safetensors" },
		{ "e", "model-00005-of-00005.safetensors" },
	};
	struct weld_writer_opts o = { .shard_size = 16 };
	struct weld_error err = { 0 };
	char *out = fixture_path(*state, "out");
	char *idx = fixture_path(out, "model.safetensors.index.json");
	weld_writer *w = open_writer(out, t, 6, &o);
	const cJSON *map, *it;
	cJSON *root;
	char *text;
	size_t k = 0;
	weld_model *m = NULL;

	assert_int_equal(weld_writer_shards(w), 5);
	write_all(w, t, 6);
	commit_ok(w);
	weld_writer_close(w);
	assert_entries(out, 6);

	text = read_text(idx, NULL);
	assert_int_equal(text[strlen(text) - 1], '\n');
	root = cJSON_Parse(text);
	free(text);
	assert_non_null(root);
	it = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(root, "metadata"),
					     "total_size");
	assert_true(cJSON_IsNumber(it));
	assert_int_equal(it->valuedouble, 76);   /* data bytes, no headers */
	map = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
	assert_int_equal(cJSON_GetArraySize(map), 6);
	for (it = map->child; it; it = it->next, k++) {
		assert_string_equal(it->string, shard_of[k][0]);     /* sorted by name */
		assert_string_equal(it->valuestring, shard_of[k][1]);
	}
	cJSON_Delete(root);

	/* each shard is a complete safetensors file holding its own tensors */
	for (k = 0; k < 6; k++) {
		char *p = fixture_path(out, shard_of[k][1]);
		cJSON *hdr = read_header(p, NULL);

		assert_non_null(cJSON_GetObjectItemCaseSensitive(hdr, shard_of[k][0]));
		check_hashes(hdr, t, 6);
		cJSON_Delete(hdr);
		free(p);
	}
	assert_int_equal(weld_model_open(&m, out, &err), 0);
	assert_int_equal(weld_model_file_count(m), 5);
	check_model(m, t, 6);
	weld_model_close(m);
	free(idx);
	free(out);
}

static void test_shard_size_zero_is_one_file(void **state)
{
	struct weld_writer_opts o = { .shard_size = 0 };
	char *out = fixture_path(*state, "out");
	char *file = fixture_path(out, "model.safetensors");
	weld_writer *w = open_writer(out, mixed, NMIXED, &o);
	weld_model *m = NULL;
	struct weld_error err = { 0 };

	assert_int_equal(weld_writer_shards(w), 1);
	write_all(w, mixed, NMIXED);
	commit_ok(w);
	weld_writer_close(w);
	assert_entries(out, 1);
	assert_true(fixture_exists(file));
	assert_int_equal(weld_model_open(&m, out, &err), 0);
	check_model(m, mixed, NMIXED);
	weld_model_close(m);

	/* a shard size above the total is one file too, named without a suffix */
	o.shard_size = 1000000;
	o.force = true;
	w = open_writer(out, mixed, NMIXED, &o);
	assert_int_equal(weld_writer_shards(w), 1);
	write_all(w, mixed, NMIXED);
	commit_ok(w);
	weld_writer_close(w);
	assert_entries(out, 1);
	assert_true(fixture_exists(file));
	free(file);
	free(out);
}

static void test_single_file_mode(void **state)
{
	struct weld_writer_opts o = { .single_file = true, .shard_size = 8,
				      .copy_from = *state };
	struct weld_error err = { 0 };
	char *out = fixture_path(*state, "merged.safetensors");
	weld_writer *w;
	weld_model *m = NULL;
	struct stat st;

	free(fixture_write(*state, "config.json", "{}", 2));
	w = open_writer(out, mixed, NMIXED, &o);
	assert_int_equal(weld_writer_shards(w), 1);
	write_all(w, mixed, NMIXED);
	commit_ok(w);
	weld_writer_close(w);
	assert_int_equal(stat(out, &st), 0);
	assert_true(S_ISREG(st.st_mode));
	assert_entries(*state, 2);       /* config.json and the output */
	cJSON_Delete(read_header(out, NULL));
	assert_int_equal(weld_model_open(&m, out, &err), 0);
	check_model(m, mixed, NMIXED);
	weld_model_close(m);

	/* an existing file: refused, then replaced with force */
	o.force = false;
	assert_int_equal(weld_writer_open(&w, out, mixed, 1, &o, &err), -1);
	assert_null(w);
	assert_int_equal(err.status, WELD_ERR_EXISTS);
	o.force = true;
	w = open_writer(out, mixed, 1, &o);
	write_all(w, mixed, 1);
	commit_ok(w);
	weld_writer_close(w);
	assert_entries(*state, 2);
	assert_int_equal(weld_model_open(&m, out, &err), 0);
	check_model(m, mixed, 1);
	weld_model_close(m);
	free(out);
}

/* "-o out/" as shells complete it: the same folder as "out". */
static void test_output_with_trailing_slash(void **state)
{
	struct weld_writer_opts o = { 0 };
	struct weld_error err = { 0 };
	char *out = fixture_path(*state, "out");
	char *slash = fixture_path(*state, "out//");
	weld_writer *w = open_writer(slash, mixed, 2, &o);
	weld_model *m = NULL;

	write_all(w, mixed, 2);
	commit_ok(w);
	weld_writer_close(w);
	assert_entries(*state, 1);
	assert_int_equal(weld_model_open(&m, out, &err), 0);
	check_model(m, mixed, 2);
	weld_model_close(m);

	/* existing: refused, then replaced with force */
	assert_int_equal(weld_writer_open(&w, slash, mixed, 2, &o, &err), -1);
	assert_int_equal(err.status, WELD_ERR_EXISTS);
	o.force = true;
	w = open_writer(slash, mixed, 3, &o);
	write_all(w, mixed, 3);
	commit_ok(w);
	weld_writer_close(w);
	assert_entries(*state, 1);
	assert_int_equal(weld_model_open(&m, out, &err), 0);
	check_model(m, mixed, 3);
	weld_model_close(m);
	free(slash);
	free(out);
}

/* ---------------------------------------------------------------- existing outputs, failures */

static void test_existing_output_refused_then_forced(void **state)
{
	struct weld_writer_opts o = { 0 };
	struct weld_error err = { 0 };
	char *out = fixture_path(*state, "out");
	char *marker = fixture_path(out, "old.txt");
	weld_writer *w = (weld_writer *)&err;
	weld_model *m = NULL;

	assert_int_equal(mkdir(out, 0755), 0);
	free(fixture_write(out, "old.txt", "old", 3));
	assert_int_equal(weld_writer_open(&w, out, mixed, NMIXED, &o, &err), -1);
	assert_null(w);
	assert_int_equal(err.status, WELD_ERR_EXISTS);
	assert_non_null(strstr(err.msg, out));
	assert_true(fixture_exists(marker));
	assert_entries(*state, 1);

	o.force = true;
	w = open_writer(out, mixed, NMIXED, &o);
	write_all(w, mixed, NMIXED);
	/* the old output stays until the new one is complete */
	assert_true(fixture_exists(marker));
	commit_ok(w);
	weld_writer_close(w);
	assert_false(fixture_exists(marker));
	assert_entries(*state, 1);       /* no .weld-old-*, no .weld-tmp-* */
	assert_int_equal(weld_model_open(&m, out, &err), 0);
	check_model(m, mixed, NMIXED);
	weld_model_close(m);

	/* an existing plain file in place of the folder is replaced as well */
	fixture_rmtree(out);
	free(fixture_write(*state, "out", "x", 1));
	w = open_writer(out, mixed, 2, &o);
	write_all(w, mixed, 2);
	commit_ok(w);
	weld_writer_close(w);
	assert_entries(*state, 1);
	assert_int_equal(weld_model_open(&m, out, &err), 0);
	check_model(m, mixed, 2);
	weld_model_close(m);
	free(marker);
	free(out);
}

static void test_close_without_commit_leaves_nothing(void **state)
{
	struct weld_writer_opts o = { .shard_size = 16 };
	struct weld_error err = { 0 };
	char *out = fixture_path(*state, "out");
	weld_writer *w = open_writer(out, mixed, NMIXED, &o);
	char *tmp = tmp_of(*state, "out");
	unsigned char b[4] = { 1, 2, 3, 4 };

	assert_true(weld_writer_shards(w) > 1);
	assert_non_null(tmp);
	assert_true(fixture_exists(tmp));
	assert_int_equal(weld_writer_write(w, (size_t)weld_writer_find(w, "a.w"), b, 4, &err), 0);
	weld_writer_close(w);
	assert_false(fixture_exists(tmp));
	assert_false(fixture_exists(out));
	assert_entries(*state, 0);

	/* all data written, still no commit */
	w = open_writer(out, mixed, NMIXED, &o);
	write_all(w, mixed, NMIXED);
	weld_writer_close(w);
	assert_entries(*state, 0);
	weld_writer_close(NULL);
	free(tmp);
	free(out);
}

static void test_commit_incomplete_fails(void **state)
{
	static const struct weld_out_tensor t[] = {
		F("a", WELD_F32, 1, 4), F("b", WELD_BF16, 1, 4), F("c", WELD_U8, 1, 2),
	};
	struct weld_writer_opts o = { 0 };
	struct weld_error err = { 0 };
	char *out = fixture_path(*state, "out");
	weld_writer *w = open_writer(out, t, 3, &o);
	unsigned char b[16] = { 0 };

	assert_int_equal(weld_writer_write(w, (size_t)weld_writer_find(w, "a"), b, 16, &err), 0);
	assert_int_equal(weld_writer_write(w, (size_t)weld_writer_find(w, "b"), b, 7, &err), 0);
	assert_int_equal(weld_writer_commit(w, &err), -1);
	assert_int_equal(err.status, WELD_ERR_ARG);
	assert_non_null(strstr(err.msg, "'b'"));
	assert_non_null(strstr(err.msg, "7 of 8"));
	weld_writer_close(w);
	assert_entries(*state, 0);

	/* a tensor never written at all */
	w = open_writer(out, t, 3, &o);
	assert_int_equal(weld_writer_write(w, (size_t)weld_writer_find(w, "a"), b, 16, &err), 0);
	assert_int_equal(weld_writer_write(w, (size_t)weld_writer_find(w, "b"), b, 8, &err), 0);
	memset(&err, 0, sizeof(err));
	assert_int_equal(weld_writer_commit(w, &err), -1);
	assert_non_null(strstr(err.msg, "'c'"));
	weld_writer_close(w);
	assert_entries(*state, 0);
	free(out);
}

static void test_write_more_than_tensor_fails(void **state)
{
	static const struct weld_out_tensor t[] = { F("a", WELD_F32, 1, 2), F("b", WELD_U8, 1, 3) };
	struct weld_writer_opts o = { 0 };
	struct weld_error err = { 0 };
	char *out = fixture_path(*state, "out");
	weld_writer *w = open_writer(out, t, 2, &o);
	unsigned char b[16];
	size_t a = (size_t)weld_writer_find(w, "a");
	weld_model *m = NULL;

	fill(b, 16, 0);
	assert_int_equal(weld_writer_write(w, a, b, 9, &err), -1);
	assert_int_equal(err.status, WELD_ERR_ARG);
	assert_non_null(strstr(err.msg, "'a'"));
	assert_int_equal(weld_writer_write(w, a, b, 5, &err), 0);
	memset(&err, 0, sizeof(err));
	assert_int_equal(weld_writer_write(w, a, b + 5, 4, &err), -1);
	assert_int_equal(err.status, WELD_ERR_ARG);
	assert_int_equal(weld_writer_write(w, a, b + 5, 3, &err), 0);
	assert_int_equal(weld_writer_write(w, a, b, 1, &err), -1);
	fill(b, 3, 1);
	assert_int_equal(weld_writer_write(w, (size_t)weld_writer_find(w, "b"), b, 3, &err), 0);
	commit_ok(w);
	weld_writer_close(w);
	/* the refused writes left no trace in the data */
	assert_int_equal(weld_model_open(&m, out, &err), 0);
	check_model(m, t, 2);
	weld_model_close(m);
	free(out);
}

static void test_reserved_and_duplicate_names_refused(void **state)
{
	static const struct weld_out_tensor meta[] = {
		F("a", WELD_F32, 1, 2), F("__metadata__", WELD_U8, 1, 1),
	};
	static const struct weld_out_tensor dup[] = {
		F("x", WELD_F32, 1, 2), F("y", WELD_U8, 1, 1), F("x", WELD_BF16, 1, 2),
	};
	static const struct weld_out_tensor neg[] = { F("n", WELD_F32, 2, 2, -1) };
	static const struct weld_out_tensor rank[] = { F("r", WELD_F32, 9, 1) };
	static const struct weld_out_tensor huge[] = {
		F("h", WELD_F64, 3, 1LL << 30, 1LL << 30, 1LL << 3),
	};
	struct weld_writer_opts o = { 0 };
	struct weld_error err = { 0 };
	char *out = fixture_path(*state, "out");
	weld_writer *w = (weld_writer *)&err;

	assert_int_equal(weld_writer_open(&w, out, meta, 2, &o, &err), -1);
	assert_null(w);
	assert_int_equal(err.status, WELD_ERR_ARG);
	assert_non_null(strstr(err.msg, "__metadata__"));
	assert_int_equal(weld_writer_open(&w, out, dup, 3, &o, &err), -1);
	assert_null(w);
	assert_int_equal(err.status, WELD_ERR_ARG);
	assert_non_null(strstr(err.msg, "'x'"));
	assert_int_equal(weld_writer_open(&w, out, neg, 1, &o, &err), -1);
	assert_non_null(strstr(err.msg, "'n'"));
	assert_int_equal(weld_writer_open(&w, out, rank, 1, &o, &err), -1);
	assert_non_null(strstr(err.msg, "'r'"));
	assert_int_equal(weld_writer_open(&w, out, huge, 1, &o, &err), -1);
	assert_non_null(strstr(err.msg, "'h'"));
	assert_entries(*state, 0);
	free(out);
}

/* ---------------------------------------------------------------- side files */

struct edit_ctx {
	int calls;
	bool fail;
};

static int edit_experts(void *ctx, void *cjson_root, struct weld_error *err)
{
	struct edit_ctx *c = ctx;
	cJSON *root = cjson_root;

	c->calls++;
	if (c->fail)
		return weld_fail(err, WELD_ERR_ARG, "edit_config: refused on purpose");
	cJSON_DeleteItemFromObjectCaseSensitive(root, "num_local_experts");
	cJSON_AddNumberToObject(root, "num_local_experts", 4);
	return 0;
}

static void test_config_copied_and_edited(void **state)
{
	static const char tok[] = "{\"model\":{\"vocab\":{\"a\":0}}}\n\x01binary";
	static const char cfg_in[] =
		"{\"architectures\":[\"MixtralForCausalLM\"],\"torch_dtype\":\"float32\","
		"\"num_local_experts\":8,\"hidden_size\":64}";
	char *src = fixture_path(*state, "src"), *out = fixture_path(*state, "out");
	char *cfg_path = fixture_path(out, "config.json"), *tok_path = fixture_path(out, "tokenizer.json");
	struct edit_ctx ctx = { 0, false };
	struct weld_writer_opts o = {
		.copy_from = src, .torch_dtype = "bfloat16",
		.edit_config = edit_experts, .edit_config_ctx = &ctx,
		.extra_name = "expert_groups.json", .extra_data = "{\"0\":[0,0,1]}\n",
	};
	weld_writer *w;
	cJSON *cfg;
	char *text;
	size_t len;

	assert_int_equal(mkdir(src, 0755), 0);
	free(fixture_write(src, "config.json", cfg_in, strlen(cfg_in)));
	free(fixture_write(src, "tokenizer.json", tok, sizeof(tok) - 1));
	free(fixture_write(src, "notes.txt", "not copied", 10));
	free(fixture_write(src, "model.safetensors", "not copied", 10));
	w = open_writer(out, mixed, NMIXED, &o);
	write_all(w, mixed, NMIXED);
	commit_ok(w);
	weld_writer_close(w);
	assert_int_equal(ctx.calls, 1);
	assert_entries(out, 4);  /* model.safetensors config.json tokenizer.json expert_groups.json */

	text = read_text(cfg_path, NULL);
	cfg = cJSON_Parse(text);
	free(text);
	assert_non_null(cfg);
	assert_string_equal(cJSON_GetObjectItemCaseSensitive(cfg, "torch_dtype")->valuestring,
			    "bfloat16");
	assert_int_equal(cJSON_GetObjectItemCaseSensitive(cfg, "num_local_experts")->valuedouble, 4);
	assert_int_equal(cJSON_GetObjectItemCaseSensitive(cfg, "hidden_size")->valuedouble, 64);
	assert_string_equal(cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(cfg,
					"architectures"), 0)->valuestring, "MixtralForCausalLM");
	cJSON_Delete(cfg);
	text = read_text(tok_path, &len);
	assert_int_equal(len, sizeof(tok) - 1);
	assert_memory_equal(text, tok, len);
	free(text);
	{
		char *p = fixture_path(out, "expert_groups.json");

		text = read_text(p, NULL);
		assert_string_equal(text, "{\"0\":[0,0,1]}\n");
		free(text);
		free(p);
	}

	/* a failing edit_config fails the commit and leaves nothing */
	{
		struct weld_error err = { 0 };
		char *out2 = fixture_path(*state, "out2");

		ctx.fail = true;
		w = open_writer(out2, mixed, NMIXED, &o);
		write_all(w, mixed, NMIXED);
		assert_int_equal(weld_writer_commit(w, &err), -1);
		assert_non_null(strstr(err.msg, "refused on purpose"));
		weld_writer_close(w);
		assert_false(fixture_exists(out2));
		assert_entries(*state, 2);   /* src, out */
		free(out2);
	}
	/* without torch_dtype, the config keeps its own */
	{
		struct weld_writer_opts o2 = { .copy_from = src, .force = true };

		w = open_writer(out, mixed, 1, &o2);
		write_all(w, mixed, 1);
		commit_ok(w);
		weld_writer_close(w);
		text = read_text(cfg_path, NULL);
		assert_non_null(strstr(text, "float32"));
		free(text);
	}
	free(cfg_path);
	free(tok_path);
	free(src);
	free(out);
}

/* A FIFO as the source's config.json is refused, naming it, rather than
 * waited on; a FIFO tokenizer file is not a file to copy. */
static void test_side_file_fifo_refused(void **state)
{
	char *src = fixture_path(*state, "src"), *out = fixture_path(*state, "out");
	char *cfg = fixture_path(src, "config.json"), *tok = fixture_path(src, "tokenizer.json");
	struct weld_writer_opts o = { .copy_from = src };
	struct weld_error err = { 0 };
	weld_writer *w;

	alarm(20);
	assert_int_equal(mkdir(src, 0755), 0);
	assert_int_equal(mkfifo(cfg, 0644), 0);
	w = open_writer(out, mixed, 1, &o);
	write_all(w, mixed, 1);
	assert_int_equal(weld_writer_commit(w, &err), -1);
	if (!strstr(err.msg, cfg) || !strstr(err.msg, "is a FIFO"))
		print_error("message: %s\n", err.msg);
	assert_non_null(strstr(err.msg, "is a FIFO, not a regular file"));
	assert_non_null(strstr(err.msg, cfg));
	weld_writer_close(w);
	assert_false(fixture_exists(out));
	assert_entries(*state, 1);      /* src */
	assert_int_equal(unlink(cfg), 0);
	assert_int_equal(mkfifo(tok, 0644), 0);
	w = open_writer(out, mixed, 1, &o);
	write_all(w, mixed, 1);
	commit_ok(w);
	weld_writer_close(w);
	assert_entries(out, 1);         /* model.safetensors */
	alarm(0);
	free(tok);
	free(cfg);
	free(out);
	free(src);
}

/* ---------------------------------------------------------------- temporary folders */

/*
 * The temporary folder's name is short and new whatever the output is
 * called: an output name of 255 bytes is written, two writers of one output
 * in one process do not collide, and nothing is left after the commit.
 */
static void test_temporary_folder_short_and_unique(void **state)
{
	struct weld_writer_opts o = { 0 };
	struct weld_error err = { 0 };
	char name[257], *out, *tmp, *owner, *text, want[400];
	weld_writer *w, *w2;
	weld_model *m = NULL;

	memset(name, 'n', 255);
	name[255] = 0;
	out = fixture_path(*state, name);
	w = open_writer(out, mixed, NMIXED, &o);
	tmp = tmp_of(*state, name);
	assert_non_null(tmp);
	assert_int_equal(strlen(tmp), strlen(*state) + 1 + 16);
	owner = fixture_path(tmp, "owner");
	text = read_text(owner, NULL);
	snprintf(want, sizeof(want), "weld temporary output\noutput: %s\npid: %ld\n", name,
		 (long)getpid());
	assert_string_equal(text, want);
	free(text);
	free(owner);
	/* a second writer of the same output, in the same process */
	o.force = true;
	w2 = open_writer(out, mixed, 1, &o);
	assert_entries(*state, 2);
	weld_writer_close(w2);
	assert_entries(*state, 1);
	write_all(w, mixed, NMIXED);
	commit_ok(w);
	weld_writer_close(w);
	assert_false(fixture_exists(tmp));
	assert_entries(*state, 1);
	assert_int_equal(weld_model_open(&m, out, &err), 0);
	check_model(m, mixed, NMIXED);
	weld_model_close(m);
	free(tmp);
	free(out);
	/* a name no file system holds */
	name[255] = 'n';
	name[256] = 0;
	out = fixture_path(*state, name);
	w = (weld_writer *)&err;
	assert_int_equal(weld_writer_open(&w, out, mixed, 1, &o, &err), -1);
	assert_null(w);
	assert_non_null(strstr(err.msg, "the name is longer than 255 bytes"));
	assert_entries(*state, 1);
	free(out);
}

/* A temporary folder for the output, made by hand: an owner file with the
 * given text (unlocked), and a file in new/. */
static char *fake_tmp(const char *dir, const char *suffix, const char *owner_text)
{
	char name[32], *tmp, *sub;

	snprintf(name, sizeof(name), ".weld-tmp-%s", suffix);
	tmp = fixture_path(dir, name);
	assert_int_equal(mkdir(tmp, 0700), 0);
	if (owner_text)
		free(fixture_write(tmp, "owner", owner_text, strlen(owner_text)));
	sub = fixture_path(tmp, "new");
	assert_int_equal(mkdir(sub, 0755), 0);
	free(fixture_write(sub, "model.safetensors", "partial", 7));
	free(sub);
	return tmp;
}

/*
 * A run killed with SIGKILL leaves its temporary folder; the next run for
 * the same output removes it, and only it: not the folder of another
 * output, of a run still alive (its owner file is locked), one without an
 * owner file, or a symbolic link.
 */
static void test_stale_folder_of_killed_run_removed(void **state)
{
	struct weld_writer_opts o = { 0 };
	char *out = fixture_path(*state, "out"), *killed, *other, *bare, *link, *target, *alive;
	weld_writer *w, *w_alive;
	pid_t pid = fork();
	int status;

	assert_true(pid >= 0);
	if (pid == 0) {
		struct weld_error err = { 0 };
		weld_writer *wc = NULL;

		if (weld_writer_open(&wc, out, mixed, NMIXED, &o, &err) == 0)
			raise(SIGKILL);
		_exit(1);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
	killed = tmp_of_pid(*state, "out", (long)pid);
	assert_non_null(killed);
	other = fake_tmp(*state, "other1", "weld temporary output\noutput: other\npid: 1\n");
	bare = fake_tmp(*state, "bare00", NULL);
	target = fixture_tmpdir();
	free(fake_tmp(target, "target", "weld temporary output\noutput: out\npid: 1\n"));
	link = fixture_path(*state, ".weld-tmp-link00");
	{
		char *t = fixture_path(target, ".weld-tmp-target");

		assert_int_equal(symlink(t, link), 0);
		free(t);
	}
	o.force = true;
	assert_true(fixture_exists(killed));
	w_alive = open_writer(out, mixed, 1, &o);
	assert_false(fixture_exists(killed));
	alive = tmp_of(*state, "out");
	assert_non_null(alive);
	/* a second run while the first is alive: its owner file is locked */
	w = open_writer(out, mixed, NMIXED, &o);
	assert_true(fixture_exists(alive));
	assert_true(fixture_exists(other));
	assert_true(fixture_exists(bare));
	{
		char *t = fixture_path(target, ".weld-tmp-target/new/model.safetensors");

		assert_true(fixture_exists(t));
		free(t);
	}
	weld_writer_close(w);
	weld_writer_close(w_alive);
	assert_false(fixture_exists(alive));
	fixture_rmtree(target);
	free(target);
	free(link);
	free(bare);
	free(other);
	free(alive);
	free(killed);
	free(out);
}

/* ---------------------------------------------------------------- signals */

static void test_cleanup_on_signal_removes_tmp(void **state)
{
	struct weld_writer_opts o = { .shard_size = 16 };
	struct weld_error err = { 0 };
	char *out = fixture_path(*state, "out"), *out2 = fixture_path(*state, "other");
	char *done = fixture_path(*state, "done");
	char *tmp, *tmp2;
	weld_writer *w, *w2, *w3;
	unsigned char b[8] = { 0 };

	/* a writer that finished before the signal is not touched */
	w3 = open_writer(done, mixed, NMIXED, &o);
	write_all(w3, mixed, NMIXED);
	commit_ok(w3);

	w = open_writer(out, mixed, NMIXED, &o);
	w2 = open_writer(out2, mixed, 1, &o);
	tmp = tmp_of(*state, "out");
	tmp2 = tmp_of(*state, "other");
	assert_int_equal(weld_writer_write(w, (size_t)weld_writer_find(w, "ids"), b, 8, &err), 0);
	assert_true(tmp && fixture_exists(tmp));
	assert_true(tmp2 && fixture_exists(tmp2));
	assert_true(weld_writer_cleanup_on_signal(SIGINT));
	assert_false(fixture_exists(tmp));
	assert_false(fixture_exists(tmp2));
	assert_false(fixture_exists(out));
	assert_entries(*state, 1);   /* done */
	/* closing afterwards is still safe */
	weld_writer_close(w);
	weld_writer_close(w2);
	weld_writer_close(w3);
	assert_entries(*state, 1);
	free(tmp);
	free(tmp2);
	free(done);
	free(out2);
	free(out);
}

int main(void)
{
#define D(f) cmocka_unit_test_setup_teardown(f, fixture_setup_dir, fixture_teardown_dir)
	const struct CMUnitTest tests[] = {
		D(test_roundtrip_same_bytes),
		D(test_tensor_order_and_offsets),
		D(test_header_padding_and_metadata),
		D(test_padding_every_length),
		D(test_names_needing_escapes),
		D(test_header_bytes_as_cjson_prints_them),
		D(test_header_over_the_limits_refused_at_open),
		D(test_no_tensors),
		D(test_zero_length_writes),
		D(test_parallel_writes),
		D(test_outq_order_and_failure),
		D(test_sharding_hf_names_and_index),
		D(test_shard_size_zero_is_one_file),
		D(test_single_file_mode),
		D(test_output_with_trailing_slash),
		D(test_existing_output_refused_then_forced),
		D(test_close_without_commit_leaves_nothing),
		D(test_commit_incomplete_fails),
		D(test_write_more_than_tensor_fails),
		D(test_reserved_and_duplicate_names_refused),
		D(test_config_copied_and_edited),
		D(test_side_file_fifo_refused),
		D(test_cleanup_on_signal_removes_tmp),
		D(test_temporary_folder_short_and_unique),
		D(test_stale_folder_of_killed_run_removed),
	};
#undef D
	return cmocka_run_group_tests_name("writer", tests, NULL, NULL);
}
