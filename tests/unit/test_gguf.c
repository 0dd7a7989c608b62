/*
 * test_gguf.c - the GGUF reader (formats/gguf.c) and ggml's block types
 * (lib/common/quant.c): a good file read back value by value, one
 * hand-made malformed file per check of the reader (each must fail with
 * WELD_ERR_FORMAT and a message naming the file, the key or tensor, and
 * the field), split sets, and every block type decoded against values
 * worked out from the formulas of reference §1.7, element by element, on
 * blocks with extreme scales and both signs.
 */
#include <stdarg.h>   /* cmocka 1.1.x needs these four before cmocka.h */
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <string.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "weld.h"
#include "gguf.h"
#include "quant.h"
#include "fixtures.h"

/* ---------------------------------------------------------------- building files */

struct buf {
	unsigned char *p;
	size_t n, cap;
};

static void put(struct buf *b, const void *d, size_t n)
{
	if (b->n + n > b->cap) {
		b->cap = (b->n + n) * 2 + 64;
		b->p = realloc(b->p, b->cap);
		assert_non_null(b->p);
	}
	memcpy(b->p + b->n, d, n);
	b->n += n;
}

static void u8(struct buf *b, unsigned v)
{
	unsigned char c = (unsigned char)v;

	put(b, &c, 1);
}

static void u16(struct buf *b, unsigned v)
{
	u8(b, v & 255);
	u8(b, v >> 8 & 255);
}

static void u32(struct buf *b, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		u8(b, v >> (8 * i) & 255);
}

static void u64(struct buf *b, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		u8(b, (unsigned)(v >> (8 * i) & 255));
}

static void str(struct buf *b, const char *s)
{
	u64(b, strlen(s));
	put(b, s, strlen(s));
}

static void pad(struct buf *b, size_t a)
{
	while (b->n % a)
		u8(b, 0);
}

/* "GGUF", version, counts */
static void start(struct buf *b, uint32_t version, uint64_t nt, uint64_t nkv)
{
	put(b, "GGUF", 4);
	u32(b, version);
	u64(b, nt);
	u64(b, nkv);
}

static void kv_u32(struct buf *b, const char *k, uint32_t v)
{
	str(b, k);
	u32(b, WELD_GGUF_U32);
	u32(b, v);
}

static void kv_str(struct buf *b, const char *k, const char *v)
{
	str(b, k);
	u32(b, WELD_GGUF_STRING);
	str(b, v);
}

/* A tensor info: ne in GGUF order. */
static void info(struct buf *b, const char *name, uint32_t nd, const uint64_t *ne,
		 uint32_t type, uint64_t off)
{
	str(b, name);
	u32(b, nd);
	for (uint32_t d = 0; d < nd; d++)
		u64(b, ne[d]);
	u32(b, type);
	u64(b, off);
}

static char *save(const char *dir, const char *name, struct buf *b)
{
	char *p = fixture_write(dir, name, b->p, b->n);

	assert_non_null(p);
	free(b->p);
	memset(b, 0, sizeof(*b));
	return p;
}

static void open_fails(const char *path, const char *field)
{
	struct weld_error err = { 0 };
	weld_model *m = (weld_model *)&err;

	if (weld_model_open(&m, path, &err) != -1)
		print_error("'%s' opened; wanted \"%s\"\n", path, field);
	assert_int_equal(err.status != WELD_OK, 1);
	assert_null(m);
	if (err.status != WELD_ERR_FORMAT || !strstr(err.msg, path) || !strstr(err.msg, field))
		print_error("status %d, message \"%s\"; wanted \"%s\"\n", (int)err.status,
			    err.msg, field);
	assert_int_equal(err.status, WELD_ERR_FORMAT);
	assert_non_null(strstr(err.msg, path));
	assert_non_null(strstr(err.msg, field));
}

static weld_model *open_ok(const char *path)
{
	struct weld_error err = { 0 };
	weld_model *m = NULL;

	if (weld_model_open(&m, path, &err) != 0)
		print_error("weld_model_open('%s'): %s\n", path, err.msg);
	assert_non_null(m);
	return m;
}

/*
 * A good file: three keys, an F32 [2, 32] tensor "a" (values 0..63) and a
 * Q8_0 [1, 64] tensor "b" (two blocks, d = 0.5 and -2, q = j - 16).
 */
static void good_file(struct buf *b, uint32_t version)
{
	const uint64_t ne_a[2] = { 32, 2 }, ne_b[2] = { 64, 1 };

	start(b, version, 2, 3);
	kv_str(b, "general.architecture", "llama");
	kv_u32(b, "general.alignment", 32);
	str(b, "tokenizer.ggml.scores");
	u32(b, WELD_GGUF_ARRAY);
	u32(b, WELD_GGUF_F32);
	u64(b, 2);
	u32(b, 0x3f800000);
	u32(b, 0x40000000);
	info(b, "a", 2, ne_a, WELD_GGML_F32, 0);
	info(b, "b", 2, ne_b, WELD_GGML_Q8_0, 256);
	pad(b, 32);
	for (int i = 0; i < 64; i++) {
		float f = (float)i;

		put(b, &f, 4);
	}
	for (int k = 0; k < 2; k++) {
		u16(b, k ? 0xc000 : 0x3800);   /* -2.0, 0.5 */
		for (int j = 0; j < 32; j++)
			u8(b, (unsigned)(j - 16) & 255);
	}
	pad(b, 32);
}

/* ---------------------------------------------------------------- good files */

static void test_reads_a_file(void **state)
{
	struct weld_error err = { 0 };
	struct buf b = { 0 };
	char *p;
	weld_model *m;
	const struct weld_tensor_info *t;
	float v[64];

	good_file(&b, 3);
	p = save(*state, "m.gguf", &b);
	m = open_ok(p);
	assert_string_equal(weld_model_format(m), "gguf");
	assert_int_equal(weld_model_count(m), 2);
	assert_string_equal(weld_model_metadata(m, "general.architecture"), "llama");
	assert_string_equal(weld_model_metadata(m, "tokenizer.ggml.scores"), "[1, 2]");
	t = weld_model_tensor(m, 0);
	assert_string_equal(t->name, "a");
	assert_int_equal(t->ndim, 2);
	assert_int_equal(t->shape[0], 2);   /* PyTorch order */
	assert_int_equal(t->shape[1], 32);
	assert_int_equal(t->dtype, WELD_F32);
	assert_int_equal(t->quant, 0);
	assert_int_equal(t->offset, 256);
	assert_int_equal(weld_model_read_f32(m, 0, 0, 64, v, NULL, &err), 0);
	for (int i = 0; i < 64; i++)
		assert_true(v[i] == (float)i);
	t = weld_model_tensor(m, 1);
	assert_int_equal(t->quant, WELD_GGML_Q8_0);
	assert_int_equal(t->nbytes, 68);
	assert_string_equal(weld_tensor_type_name(t), "Q8_0");
	assert_int_equal(weld_model_read_f32(m, 1, 0, 64, v, NULL, &err), 0);
	for (int j = 0; j < 32; j++) {
		assert_true(v[j] == 0.5f * (float)(j - 16));
		assert_true(v[32 + j] == -2.0f * (float)(j - 16));
	}
	/* a range that cuts blocks gives the same values */
	{
		float w[40];

		assert_int_equal(weld_model_read(m, 1, 13, 40, w, &err), 0);
		assert_memory_equal(w, v + 13, sizeof(w));
	}
	weld_model_close(m);
	free(p);
}

static void test_reads_v2(void **state)
{
	struct buf b = { 0 };
	char *p;
	weld_model *m;

	good_file(&b, 2);
	p = save(*state, "m.gguf", &b);
	m = open_ok(p);
	assert_int_equal(weld_model_count(m), 2);
	weld_model_close(m);
	free(p);
}

static void test_kvs_for_the_writer(void **state)
{
	struct weld_error err = { 0 };
	struct weld_gguf_kv *kv;
	struct buf b = { 0 };
	size_t n;
	char *p;

	good_file(&b, 3);
	p = save(*state, "m.gguf", &b);
	assert_int_equal(weld_gguf_read_kvs(p, &kv, &n, &err), 0);
	assert_int_equal(n, 3);
	assert_string_equal(kv[0].key, "general.architecture");
	assert_int_equal(kv[0].type, WELD_GGUF_STRING);
	assert_int_equal(kv[0].len, 8 + 5);
	assert_memory_equal(kv[0].value + 8, "llama", 5);
	assert_int_equal(kv[2].type, WELD_GGUF_ARRAY);
	assert_int_equal(kv[2].len, 4 + 8 + 8);
	weld_gguf_kvs_free(kv, n);
	free(p);
}

/* ---------------------------------------------------------------- hostile files */

static void bad(const char *dir, struct buf *b, const char *field)
{
	char *p = save(dir, "bad.gguf", b);

	open_fails(p, field);
	free(p);
}

static void test_bad_magic(void **state)
{
	struct weld_error err = { 0 };
	struct weld_gguf_kv *kv;
	struct buf b = { 0 };
	size_t n;
	char *p;

	good_file(&b, 3);
	b.p[3] = 'X';
	p = save(*state, "bad.gguf", &b);
	open_fails(p, "not a safetensors or PyTorch checkpoint");
	assert_int_equal(weld_gguf_read_kvs(p, &kv, &n, &err), -1);
	assert_non_null(strstr(err.msg, "magic: not a GGUF file"));
	free(p);
}

static void test_versions(void **state)
{
	struct buf b = { 0 };

	good_file(&b, 1);
	bad(*state, &b, "version: GGUF v1 is not supported");
	good_file(&b, 4);
	bad(*state, &b, "version: 4 is not a GGUF version");
	good_file(&b, 0x03000000);
	bad(*state, &b, "big-endian");
}

static void test_huge_counts(void **state)
{
	struct buf b = { 0 };

	start(&b, 3, 1ull << 40, 0);
	bad(*state, &b, "tensor_count: 1099511627776 is over the limit");
	start(&b, 3, 0, 1000);
	bad(*state, &b, "kv_count: 1000 key/value pairs cannot fit");
	start(&b, 3, 0, (uint64_t)-1);
	bad(*state, &b, "kv_count");
}

static void test_huge_string(void **state)
{
	struct buf b = { 0 };

	start(&b, 3, 0, 1);
	u64(&b, 1ull << 40);
	put(&b, "general.name", 12);
	u32(&b, 8);
	bad(*state, &b, "key 0: key: string length 1099511627776 is over the 1 GiB limit");
	start(&b, 3, 0, 1);
	str(&b, "general.name");
	u32(&b, WELD_GGUF_STRING);
	u64(&b, 100);
	put(&b, "abc", 3);
	bad(*state, &b, "key 'general.name': value: string length 100 goes beyond the end");
}

static void test_arrays(void **state)
{
	struct buf b = { 0 };

	start(&b, 3, 0, 1);
	str(&b, "x.nested");
	u32(&b, WELD_GGUF_ARRAY);
	u32(&b, WELD_GGUF_ARRAY);
	u64(&b, 1);
	u32(&b, WELD_GGUF_U8);
	u64(&b, 1);
	u8(&b, 0);
	bad(*state, &b, "key 'x.nested': array element type: nested arrays are not supported");
	start(&b, 3, 0, 1);
	str(&b, "x.big");
	u32(&b, WELD_GGUF_ARRAY);
	u32(&b, WELD_GGUF_U32);
	u64(&b, 1ull << 62);
	bad(*state, &b, "key 'x.big': array count 4611686018427387904 of u32 is over the limit");
	start(&b, 3, 0, 1);
	str(&b, "x.long");
	u32(&b, WELD_GGUF_ARRAY);
	u32(&b, WELD_GGUF_STRING);
	u64(&b, 1000);
	u64(&b, 0);
	bad(*state, &b, "key 'x.long': array count 1000 of string goes beyond the end");
}

static void test_keys(void **state)
{
	struct buf b = { 0 };

	start(&b, 3, 0, 2);
	kv_u32(&b, "a.b", 1);
	kv_u32(&b, "a.b", 2);
	bad(*state, &b, "key 'a.b': duplicate key");
	start(&b, 3, 0, 1);
	kv_u32(&b, "", 1);
	bad(*state, &b, "key 0: empty key");
	start(&b, 3, 0, 1);
	kv_u32(&b, "a\tb", 1);
	bad(*state, &b, "is not printable ASCII");
	start(&b, 3, 0, 1);
	str(&b, "a.t");
	u32(&b, 13);
	bad(*state, &b, "key 'a.t': value type: unknown value type 13");
	start(&b, 3, 0, 1);
	str(&b, "a.bool");
	u32(&b, WELD_GGUF_BOOL);
	u8(&b, 2);
	bad(*state, &b, "key 'a.bool': value: bool byte 0x02 is not 0 or 1");
	start(&b, 3, 0, 1);
	kv_u32(&b, "general.alignment", 24);
	bad(*state, &b, "key 'general.alignment': 24 is not a power of two");
	start(&b, 3, 0, 1);
	kv_str(&b, "general.alignment", "32");
	bad(*state, &b, "key 'general.alignment': type string, expected u32");
}

/* One tensor "t" of nd dims ne and type, at offset off, with `data`
 * bytes of data after the padding. */
static void one_tensor(struct buf *b, const char *name, uint32_t nd, const uint64_t *ne,
		       uint32_t type, uint64_t off, size_t data)
{
	start(b, 3, 1, 0);
	info(b, name, nd, ne, type, off);
	pad(b, 32);
	for (size_t i = 0; i < data; i++)
		u8(b, 0);
}

static void test_tensor_infos(void **state)
{
	const uint64_t ne5[5] = { 1, 1, 1, 1, 1 }, ne_over[2] = { 1ull << 32, 1ull << 32 };
	const uint64_t ne_neg[1] = { (uint64_t)-1 }, ne33[1] = { 33 }, ne32[1] = { 32 };
	char name64[65];
	struct buf b = { 0 };

	one_tensor(&b, "t", 5, ne5, WELD_GGML_F32, 0, 4);
	bad(*state, &b, "tensor 't': n_dims: 5, expected 1 to 4");
	one_tensor(&b, "t", 0, ne5, WELD_GGML_F32, 0, 4);
	bad(*state, &b, "tensor 't': n_dims: 0");
	one_tensor(&b, "t", 2, ne_over, WELD_GGML_F32, 0, 0);
	bad(*state, &b, "tensor 't': ne[1]: element count overflows");
	one_tensor(&b, "t", 1, ne_neg, WELD_GGML_F32, 0, 0);
	bad(*state, &b, "tensor 't': ne[0]: negative");
	one_tensor(&b, "t", 1, ne33, WELD_GGML_Q8_0, 0, 64);
	bad(*state, &b, "tensor 't': ne[0]: 33 is not a multiple of the Q8_0 block of 32");
	one_tensor(&b, "t", 1, ne32, 16, 0, 66);
	bad(*state, &b, "tensor 't': type: IQ2_XXS is not supported");
	one_tensor(&b, "t", 1, ne32, 4, 0, 66);
	bad(*state, &b, "tensor 't': type: unknown ggml type 4");
	one_tensor(&b, "t", 1, ne32, 99, 0, 66);
	bad(*state, &b, "tensor 't': type: unknown ggml type 99");
	memset(name64, 'x', 64);
	name64[64] = 0;
	one_tensor(&b, name64, 1, ne32, WELD_GGML_F32, 0, 128);
	bad(*state, &b, "tensor 0: name: longer than the 63 bytes");
	one_tensor(&b, "", 1, ne32, WELD_GGML_F32, 0, 128);
	bad(*state, &b, "tensor 0: name: empty");
	/* truncated data */
	one_tensor(&b, "t", 1, ne32, WELD_GGML_F32, 0, 100);
	bad(*state, &b, "tensor 't': data: 128 bytes at offset 64 go beyond the end of the file");
	/* truncated info */
	start(&b, 3, 1, 0);
	str(&b, "a_tensor_name_long_enough_for_a_whole_info");
	u32(&b, 1);
	bad(*state, &b, "tensor 'a_tensor_name_long_enough_for_a_whole_info': ne[0]: truncated");
}

static void test_offsets(void **state)
{
	const uint64_t ne[1] = { 32 };
	struct buf b = { 0 };

	/* the second tensor misaligned, overlapping, after a gap */
	const uint64_t offs[3] = { 136, 64, 256 };
	const char *why[3] = { "offset: 136, expected 128 (not aligned)",
			       "offset: 64, expected 128 (overlaps the tensor before it)",
			       "offset: 256, expected 128 (a gap before it)" };

	for (int k = 0; k < 3; k++) {
		start(&b, 3, 2, 0);
		info(&b, "a", 1, ne, WELD_GGML_F32, 0);
		info(&b, "b", 1, ne, WELD_GGML_F32, offs[k]);
		pad(&b, 32);
		for (int i = 0; i < 512; i++)
			u8(&b, 0);
		bad(*state, &b, why[k]);
	}
	start(&b, 3, 1, 0);
	info(&b, "a", 1, ne, WELD_GGML_F32, 32);
	pad(&b, 32);
	bad(*state, &b, "tensor 'a': offset: 32, expected 0");
	/* duplicate names */
	start(&b, 3, 2, 0);
	info(&b, "a", 1, ne, WELD_GGML_F32, 0);
	info(&b, "a", 1, ne, WELD_GGML_F32, 128);
	pad(&b, 32);
	for (int i = 0; i < 256; i++)
		u8(&b, 0);
	bad(*state, &b, "tensor 'a': duplicate name");
}

/* ---------------------------------------------------------------- split sets */

static void split_file(struct buf *b, unsigned no, unsigned count, int32_t total,
		       const char *name)
{
	const uint64_t ne[1] = { 32 };

	start(b, 3, 1, 3);
	str(b, "split.no");
	u32(b, WELD_GGUF_U16);
	u16(b, no);
	str(b, "split.count");
	u32(b, WELD_GGUF_U16);
	u16(b, count);
	str(b, "split.tensors.count");
	u32(b, WELD_GGUF_I32);
	u32(b, (uint32_t)total);
	info(b, name, 1, ne, WELD_GGML_F32, 0);
	pad(b, 32);
	for (int i = 0; i < 128; i++)
		u8(b, 0);
}

static void test_split_sets(void **state)
{
	struct buf b = { 0 };
	char *p1, *p2;
	weld_model *m;

	split_file(&b, 0, 2, 2, "a");
	p1 = save(*state, "m-00001-of-00002.gguf", &b);
	{
		struct weld_error err = { 0 };
		weld_model *m0 = NULL;

		/* the missing second file is named */
		assert_int_equal(weld_model_open(&m0, p1, &err), -1);
		assert_non_null(strstr(err.msg, "m-00002-of-00002.gguf"));
	}
	split_file(&b, 1, 2, 2, "b");
	p2 = save(*state, "m-00002-of-00002.gguf", &b);
	m = open_ok(p1);
	assert_int_equal(weld_model_count(m), 2);
	assert_int_equal(weld_model_file_count(m), 2);
	weld_model_close(m);
	open_fails(p2, "split.no': 1: this is not the first file");
	free(p2);
	split_file(&b, 1, 2, 2, "a");
	p2 = save(*state, "m-00002-of-00002.gguf", &b);
	open_fails(p1, "tensor 'a': present in both");
	free(p2);
	split_file(&b, 1, 2, 3, "b");
	p2 = save(*state, "m-00002-of-00002.gguf", &b);
	split_file(&b, 0, 2, 3, "a");
	free(save(*state, "m-00001-of-00002.gguf", &b));
	open_fails(p1, "split.tensors.count': 3, but the 2 files hold 2 tensors");
	split_file(&b, 0, 2, 2, "b");
	free(save(*state, "m-00001-of-00002.gguf", &b));
	split_file(&b, 0, 2, 2, "c");
	free(save(*state, "m-00002-of-00002.gguf", &b));
	{
		struct weld_error err = { 0 };
		weld_model *m0 = NULL;

		assert_int_equal(weld_model_open(&m0, p1, &err), -1);
		assert_non_null(strstr(err.msg, p2));
		assert_non_null(strstr(err.msg, "key 'split.no': 0, expected 1"));
	}
	free(p1);
	free(p2);
}

/* ---------------------------------------------------------------- block types */

static float h(const unsigned char *p)
{
	return weld_f16_to_f32((uint16_t)(p[0] | p[1] << 8));
}

/* The value of element e of a block, from reference §1.7's formulas. */
static float formula(uint32_t type, const unsigned char *x, int e)
{
	int l, k, hh, s;

	switch (type) {
	case WELD_GGML_Q4_0:
		return (float)(((e < 16 ? x[2 + e] : x[2 + e - 16] >> 4) & 15) - 8) * h(x);
	case WELD_GGML_Q4_1:
		return (float)((e < 16 ? x[4 + e] : x[4 + e - 16] >> 4) & 15) * h(x) + h(x + 2);
	case WELD_GGML_Q5_0: case WELD_GGML_Q5_1: {
		int one = type == WELD_GGML_Q5_1, q0 = 6 + 2 * one;
		uint32_t H = (uint32_t)x[q0 - 4] | (uint32_t)x[q0 - 3] << 8 |
			     (uint32_t)x[q0 - 2] << 16 | (uint32_t)x[q0 - 1] << 24;
		int q = ((e < 16 ? x[q0 + e] : x[q0 + e - 16] >> 4) & 15) | (int)((H >> e) & 1) << 4;

		return one ? (float)q * h(x) + h(x + 2) : (float)(q - 16) * h(x);
	}
	case WELD_GGML_Q8_0:
		return (float)(int8_t)x[2 + e] * h(x);
	case WELD_GGML_Q2_K:
		hh = e / 128, k = e % 128 / 32, l = e % 32;
		s = x[8 * hh + 2 * k + l / 16];
		return h(x + 80) * (float)(s & 15) * (float)((x[16 + 32 * hh + l] >> (2 * k)) & 3) -
		       h(x + 82) * (float)(s >> 4);
	case WELD_GGML_Q3_K: {
		const unsigned char *sc = x + 96;
		int j, lo, hi, q;

		hh = e / 128, k = e % 128 / 32, l = e % 32;
		j = 8 * hh + 2 * k + l / 16;
		lo = j < 8 ? sc[j] & 15 : sc[j - 8] >> 4;
		hi = (sc[8 + j % 4] >> (2 * (j / 4))) & 3;
		q = (x[32 + 32 * hh + l] >> (2 * k)) & 3;
		if (!(x[l] >> (4 * hh + k) & 1))
			q -= 4;
		return h(x + 108) * (float)((lo | hi << 4) - 32) * (float)q;
	}
	case WELD_GGML_Q4_K: case WELD_GGML_Q5_K: {
		const unsigned char *sc = x + 4;
		int five = type == WELD_GGML_Q5_K, c = e / 64, u = e % 64 / 32, j = 2 * c + u;
		int scj, mnj, q;

		l = e % 32;
		if (j < 4) {
			scj = sc[j] & 63;
			mnj = sc[j + 4] & 63;
		} else {
			scj = (sc[j + 4] & 15) | (sc[j - 4] >> 6) << 4;
			mnj = (sc[j + 4] >> 4) | (sc[j] >> 6) << 4;
		}
		q = (x[16 + 32 * five + 32 * c + l] >> (4 * u)) & 15;
		if (five)
			q += 16 * (x[16 + l] >> j & 1);
		return h(x) * (float)scj * (float)q - h(x + 2) * (float)mnj;
	}
	case WELD_GGML_Q6_K: {
		int low, high;

		hh = e / 128, k = e % 128 / 32, l = e % 32;
		low = (x[64 * hh + l + 32 * (k % 2)] >> (4 * (k / 2))) & 15;
		high = (x[128 + 32 * hh + l] >> (2 * k)) & 3;
		return h(x + 208) * (float)(int8_t)x[192 + 8 * hh + l / 16 + 2 * k] *
		       (float)((low | high << 4) - 32);
	}
	}
	fail();
	return 0;
}

/* Where a block type keeps its fp16 scales. */
static void scales_of(uint32_t type, int off[2], int *n)
{
	switch (type) {
	case WELD_GGML_Q4_1: case WELD_GGML_Q5_1: case WELD_GGML_Q4_K: case WELD_GGML_Q5_K:
		off[0] = 0, off[1] = 2, *n = 2; break;
	case WELD_GGML_Q2_K: off[0] = 80, off[1] = 82, *n = 2; break;
	case WELD_GGML_Q3_K: off[0] = 108, *n = 1; break;
	case WELD_GGML_Q6_K: off[0] = 208, *n = 1; break;
	default: off[0] = 0, *n = 1; break;
	}
}

static void test_block_types(void **state)
{
	static const uint32_t types[] = {
		WELD_GGML_Q4_0, WELD_GGML_Q4_1, WELD_GGML_Q5_0, WELD_GGML_Q5_1, WELD_GGML_Q8_0,
		WELD_GGML_Q2_K, WELD_GGML_Q3_K, WELD_GGML_Q4_K, WELD_GGML_Q5_K, WELD_GGML_Q6_K,
	};
	/* largest, -largest, smallest subnormal, -1, 0 */
	static const uint16_t scale[] = { 0x7bff, 0xfbff, 0x0001, 0xbc00, 0x0000, 0x3555 };
	uint64_t rng = 88172645463325252ull;

	(void)state;
	for (size_t ti = 0; ti < sizeof(types) / sizeof(types[0]); ti++) {
		const struct weld_ggml_type_info *q = weld_ggml_type(types[ti]);
		const size_t nb = 3;
		unsigned char *x = malloc(nb * q->bytes);
		float *y = malloc(nb * q->block * sizeof(float));
		int off[2], ns;

		assert_non_null(q->decode);
		scales_of(types[ti], off, &ns);
		for (int round = 0; round < 4; round++) {
			for (size_t i = 0; i < nb * q->bytes; i++) {
				rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
				/* all ones, all zeros, then random bits */
				x[i] = round == 0 ? 0xff : round == 1 ? 0 : (unsigned char)rng;
			}
			for (size_t k = 0; k < nb; k++)
				for (int s = 0; s < ns; s++) {
					uint16_t v = scale[(k + (size_t)s + (size_t)round) % 6];

					x[k * q->bytes + (size_t)off[s]] = (unsigned char)v;
					x[k * q->bytes + (size_t)off[s] + 1] = (unsigned char)(v >> 8);
				}
			q->decode(x, y, nb);
			for (size_t k = 0; k < nb; k++)
				for (uint32_t e = 0; e < q->block; e++) {
					float want = formula(types[ti], x + k * q->bytes, (int)e);
					float got = y[k * q->block + e];

					if (memcmp(&want, &got, 4) != 0)
						print_error("%s block %zu element %u: %g, want %g\n",
							    q->name, k, e, (double)got, (double)want);
					assert_memory_equal(&want, &got, 4);
				}
		}
		free(x);
		free(y);
	}
}

/* Hand-worked values: Q4_K with d = 1, dmin = 0.5, scale/min j = (j+1, j). */
static void test_q4_k_by_hand(void **state)
{
	unsigned char x[144] = { 0 };
	float y[256];

	(void)state;
	x[1] = 0x3c;            /* d = 1 */
	x[3] = 0x38;            /* dmin = 0.5 */
	for (int j = 0; j < 4; j++) {
		x[4 + j] = (unsigned char)(j + 1);      /* sc j */
		x[8 + j] = (unsigned char)j;            /* mn j */
		x[12 + j] = (unsigned char)((j + 5) | (j + 4) << 4);  /* sc/mn j + 4, low bits */
	}
	x[16] = 0x3a;   /* element 0: nib 10; element 32: nib 3 */
	weld_ggml_type(WELD_GGML_Q4_K)->decode(x, y, 1);
	assert_true(y[0] == 1.0f * 1 * 10 - 0.5f * 0);     /* sc0 = 1, mn0 = 0 */
	assert_true(y[32] == 1.0f * 2 * 3 - 0.5f * 1);     /* sc1 = 2, mn1 = 1 */
	assert_true(y[1] == 0.0f);
	assert_true(y[64] == -0.5f * 2);                   /* nib 0, mn2 = 2 */
	assert_true(y[192 + 32] == -0.5f * 7);             /* j = 7: mn = 7 */
}

/* ---------------------------------------------------------------- encoders */

static void test_q8_0_q4_0_encoders(void **state)
{
	float x[64], y[64];
	unsigned char b8[68], b4[36];

	(void)state;
	for (int i = 0; i < 32; i++) {
		x[i] = (float)i / 4 - 3.9f;
		x[32 + i] = i == 7 ? -100.0f : (float)(i % 5) * 1e-3f;
	}
	weld_quant_q8_0(x, b8, 2);
	/* amax 3.85 / 127, q = round(x / d) */
	assert_int_equal(b8[0] | b8[1] << 8, weld_f32_to_f16(3.9f / 127));
	assert_int_equal((int8_t)b8[2], -127);
	assert_int_equal((int8_t)b8[2 + 31], (int)roundf((31.0f / 4 - 3.9f) * (1.0f / (3.9f / 127))));
	assert_int_equal((int8_t)b8[34 + 2 + 7], -127);
	weld_ggml_type(WELD_GGML_Q8_0)->decode(b8, y, 2);
	for (int i = 0; i < 64; i++)
		assert_true(fabsf(y[i] - x[i]) <= (i < 32 ? 3.9f : 100.0f) / 127 / 2 * 1.01f);
	weld_quant_q4_0(x, b4, 2);
	/* the largest |x| is -3.9: d = 3.9 / 8, it decodes to q = 0 */
	assert_int_equal(b4[0] | b4[1] << 8, weld_f32_to_f16(-3.9f / -8));
	assert_int_equal(b4[2] & 15, 0);
	weld_ggml_type(WELD_GGML_Q4_0)->decode(b4, y, 2);
	for (int i = 0; i < 64; i++)
		assert_true(fabsf(y[i] - x[i]) <= (i < 32 ? 3.9f : 100.0f) / 8 * 1.01f);
	/* all zeros: d = 0, q = 8 (Q4_0) and 0 (Q8_0) */
	memset(x, 0, sizeof(x));
	weld_quant_q4_0(x, b4, 1);
	weld_quant_q8_0(x, b8, 1);
	assert_int_equal(b4[0] | b4[1] << 8, 0x8000);  /* -0, as ggml stores it */
	assert_int_equal(b4[2], 0x88);
	assert_int_equal(b8[2], 0);
}

/* Q8_0 rounds as C's roundf: d = 1 (amax 127), so q = roundf(x), checked
 * on every quarter in [-127, 127] and on the floats next to each half. */
static void test_q8_0_rounding(void **state)
{
	float x[32], v[4096];
	unsigned char b[34];
	size_t nv = 0;

	(void)state;
	for (int i = -508; i <= 508; i++) {
		float q = (float)i / 4;

		v[nv++] = q;
		if (i % 4 == 2 || i % 4 == -2) {     /* a half */
			v[nv++] = nextafterf(q, 0.0f);
			v[nv++] = nextafterf(q, q * 2);
		}
	}
	for (size_t k = 0; k < nv; k += 31) {
		x[0] = 127.0f;
		for (int j = 1; j < 32; j++)
			x[j] = k + (size_t)j - 1 < nv ? v[k + (size_t)j - 1] : 0.0f;
		weld_quant_q8_0(x, b, 1);
		assert_int_equal(b[0] | b[1] << 8, 0x3c00);
		for (int j = 0; j < 32; j++)
			if ((int8_t)b[2 + j] != (int)roundf(x[j]))
				fail_msg("%.9g gives %d, roundf %g", (double)x[j], (int8_t)b[2 + j],
					 (double)roundf(x[j]));
	}
}

/* ---------------------------------------------------------------- writer */

static void test_store_types(void **state)
{
	struct weld_tensor_info q4k = { .dtype = WELD_F32, .quant = WELD_GGML_Q4_K, .ndim = 2 };
	struct weld_tensor_info q8 = { .dtype = WELD_F32, .quant = WELD_GGML_Q8_0, .ndim = 2 };
	struct weld_tensor_info bf = { .dtype = WELD_BF16, .ndim = 2 };

	(void)state;
	assert_int_equal(weld_gguf_store_type(&q4k, WELD_F32, -1, 2, 256), WELD_GGML_F16);
	assert_int_equal(weld_gguf_store_type(&q8, WELD_F32, -1, 2, 64), WELD_GGML_Q8_0);
	assert_int_equal(weld_gguf_store_type(&bf, WELD_BF16, -1, 2, 64), WELD_GGML_BF16);
	assert_int_equal(weld_gguf_store_type(&q8, WELD_F32, WELD_GGML_Q4_0, 2, 64), WELD_GGML_Q4_0);
	/* 1-D stays F32 when a type is asked for; rows that are not whole blocks too */
	assert_int_equal(weld_gguf_store_type(&q8, WELD_F32, WELD_GGML_Q8_0, 1, 64), WELD_GGML_F32);
	assert_int_equal(weld_gguf_store_type(NULL, WELD_F32, WELD_GGML_Q8_0, 2, 48), WELD_GGML_F32);
	assert_int_equal(weld_gguf_store_type(NULL, WELD_I32, -1, 1, 3), 26);
	assert_int_equal(weld_gguf_store_type(NULL, WELD_U8, -1, 1, 3), -1);
}

/* Writes that cut blocks: the writer keeps the partial block. */
static void test_writer_in_pieces(void **state)
{
	struct weld_error err = { 0 };
	struct buf b = { 0 };
	struct weld_out_tensor t[2] = {
		{ .name = "b", .dtype = WELD_F32, .ndim = 2, .shape = { 2, 64 } },
		{ .name = "a", .dtype = WELD_F32, .ndim = 1, .shape = { 32 } },
	};
	struct weld_writer_opts o = { .gguf_type = WELD_GGML_Q8_0 };
	weld_writer *w;
	weld_model *m, *out;
	float x[128], y[128];
	unsigned char q[136];
	char *p, *op = fixture_path(*state, "out.gguf");

	good_file(&b, 3);
	p = save(*state, "m.gguf", &b);
	m = open_ok(p);
	o.gguf_base = m;
	for (int i = 0; i < 128; i++)
		x[i] = (float)((i * 37) % 101) / 7 - 7;
	if (weld_writer_open(&w, op, t, 2, &o, &err) < 0)
		print_error("%s\n", err.msg);
	assert_non_null(w);
	for (size_t k = 0; k < 128; k += 5)
		assert_int_equal(weld_writer_write(w, (size_t)weld_writer_find(w, "b"), x + k,
						   (k + 5 <= 128 ? 5 : 128 - k) * 4, &err), 0);
	assert_int_equal(weld_writer_write(w, (size_t)weld_writer_find(w, "a"), x, 128, &err), 0);
	if (weld_writer_commit(w, &err) < 0)
		print_error("%s\n", err.msg);
	assert_int_equal(err.status, WELD_OK);
	weld_writer_close(w);
	out = open_ok(op);
	/* the base's order: a before b; a is 1-D, F32 */
	assert_true(weld_model_tensor(out, 0)->offset < weld_model_tensor(out, 1)->offset);
	assert_int_equal(weld_model_tensor(out, 0)->quant, 0);
	assert_int_equal(weld_model_tensor(out, 1)->quant, WELD_GGML_Q8_0);
	assert_int_equal(weld_model_read_stored(out, 1, 0, 136, q, &err), 0);
	{
		unsigned char want[136];

		weld_quant_q8_0(x, want, 4);
		assert_memory_equal(q, want, 136);
	}
	assert_int_equal(weld_model_read_f32(out, 0, 0, 32, y, NULL, &err), 0);
	assert_memory_equal(x, y, 128);
	assert_int_equal(weld_verify(out, NULL, NULL, NULL), 0);
	assert_string_equal(weld_model_metadata(out, "general.architecture"), "llama");
	assert_string_equal(weld_model_metadata(out, "general.file_type"), "7");
	weld_model_close(out);
	weld_model_close(m);
	free(op);
	free(p);
}

int main(void)
{
#define D(f) cmocka_unit_test_setup_teardown(f, fixture_setup_dir, fixture_teardown_dir)
	const struct CMUnitTest tests[] = {
		D(test_reads_a_file),
		D(test_reads_v2),
		D(test_kvs_for_the_writer),
		D(test_bad_magic),
		D(test_versions),
		D(test_huge_counts),
		D(test_huge_string),
		D(test_arrays),
		D(test_keys),
		D(test_tensor_infos),
		D(test_offsets),
		D(test_split_sets),
		cmocka_unit_test(test_block_types),
		cmocka_unit_test(test_q4_k_by_hand),
		cmocka_unit_test(test_q8_0_q4_0_encoders),
		cmocka_unit_test(test_q8_0_rounding),
		cmocka_unit_test(test_store_types),
		D(test_writer_in_pieces),
	};

	return cmocka_run_group_tests_name("gguf", tests, NULL, NULL);
}
