/*
 * test_safetensors.c - the safetensors reader (formats/safetensors.c) and
 * the model layer above it (formats/model.c): well-formed files of every
 * dtype read back value by value, one hand-made malformed file per rule of
 * formats.md §1.3-1.4 (each must fail with WELD_ERR_FORMAT and a message
 * naming the file and the offending field), and sharded folders whose index
 * and shards agree or disagree.
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
#include <sys/stat.h>
#include <unistd.h>

#include "weld.h"
#include "fixtures.h"

/* ---------------------------------------------------------------- helpers */

/* A safetensors file whose header is hlen bytes at hdr (NUL bytes allowed),
 * followed by dlen bytes of data (zeros when data is NULL). */
static char *write_st(const char *dir, const char *name, const void *hdr, size_t hlen,
		      const void *data, size_t dlen)
{
	unsigned char *b = calloc(1, 8 + hlen + dlen);
	char *p;

	assert_non_null(b);
	for (int i = 0; i < 8; i++)
		b[i] = (unsigned char)((uint64_t)hlen >> (8 * i));
	memcpy(b + 8, hdr, hlen);
	if (data)
		memcpy(b + 8 + hlen, data, dlen);
	p = fixture_write(dir, name, b, 8 + hlen + dlen);
	assert_non_null(p);
	free(b);
	return p;
}

/* Open path, expecting success; returns the model. */
static weld_model *open_ok(const char *path)
{
	struct weld_error err = { 0 };
	weld_model *m = NULL;

	if (weld_model_open(&m, path, &err) != 0)
		print_error("weld_model_open('%s'): %s\n", path, err.msg);
	assert_non_null(m);
	return m;
}

/* Open path, expecting WELD_ERR_FORMAT with a message that names the file
 * (named_path) and contains `field`. */
static void open_fails(const char *path, const char *named_path, const char *field)
{
	struct weld_error err = { 0 };
	weld_model *m = (weld_model *)&err; /* must be reset to NULL */

	assert_int_equal(weld_model_open(&m, path, &err), -1);
	assert_null(m);
	if (err.status != WELD_ERR_FORMAT || !strstr(err.msg, named_path) ||
	    !strstr(err.msg, field))
		print_error("status %d, message \"%s\"; wanted \"%s\" and \"%s\"\n",
			    (int)err.status, err.msg, named_path, field);
	assert_int_equal(err.status, WELD_ERR_FORMAT);
	assert_non_null(strstr(err.msg, named_path));
	assert_non_null(strstr(err.msg, field));
}

/* Write bad.safetensors with the given header (a C string) and dlen zero
 * bytes of data, and expect it to be refused with `field` in the message. */
static void expect_bad_n(const char *dir, const void *hdr, size_t hlen, size_t dlen,
			 const char *field)
{
	char *p = write_st(dir, "bad.safetensors", hdr, hlen, NULL, dlen);

	open_fails(p, p, field);
	free(p);
}

static void expect_bad(const char *dir, const char *hdr, size_t dlen, const char *field)
{
	expect_bad_n(dir, hdr, strlen(hdr), dlen, field);
}

static size_t find(const weld_model *m, const char *name)
{
	int64_t i = weld_model_find(m, name);

	if (i < 0)
		print_error("no tensor '%s'\n", name);
	assert_true(i >= 0);
	return (size_t)i;
}

static void le16(unsigned char *p, uint16_t v)
{
	p[0] = (unsigned char)v;
	p[1] = (unsigned char)(v >> 8);
}

/* ---------------------------------------------------------------- good files */

/*
 * One file with every supported dtype, tensors listed out of offset order
 * in the header, a 0-d tensor and two empty ones (one sharing an offset with
 * a full tensor, one at the very end).
 */
static void test_reads_every_dtype(void **state)
{
	const char *hdr =
		"{\"u8\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[74,77]},"
		"\"f32\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]},"
		"\"scalar\":{\"dtype\":\"F64\",\"shape\":[],\"data_offsets\":[16,24]},"
		"\"i64\":{\"dtype\":\"I64\",\"shape\":[2],\"data_offsets\":[24,40]},"
		"\"i32\":{\"dtype\":\"I32\",\"shape\":[1],\"data_offsets\":[40,44]},"
		"\"empty\":{\"dtype\":\"F32\",\"shape\":[0,3],\"data_offsets\":[44,44]},"
		"\"f16\":{\"dtype\":\"F16\",\"shape\":[3],\"data_offsets\":[44,50]},"
		"\"bf16\":{\"dtype\":\"BF16\",\"shape\":[3],\"data_offsets\":[50,56]},"
		"\"u16\":{\"dtype\":\"U16\",\"shape\":[1],\"data_offsets\":[56,58]},"
		"\"i16\":{\"dtype\":\"I16\",\"shape\":[1],\"data_offsets\":[58,60]},"
		"\"u32\":{\"dtype\":\"U32\",\"shape\":[1],\"data_offsets\":[60,64]},"
		"\"u64\":{\"dtype\":\"U64\",\"shape\":[1],\"data_offsets\":[64,72]},"
		"\"e4m3\":{\"dtype\":\"F8_E4M3\",\"shape\":[1,1],\"data_offsets\":[72,73]},"
		"\"e5m2\":{\"dtype\":\"F8_E5M2\",\"shape\":[1],\"data_offsets\":[73,74]},"
		"\"i8\":{\"dtype\":\"I8\",\"shape\":[2],\"data_offsets\":[77,79]},"
		"\"bool\":{\"dtype\":\"BOOL\",\"shape\":[2,1],\"data_offsets\":[79,81]},"
		"\"tail\":{\"dtype\":\"BF16\",\"shape\":[5,0],\"data_offsets\":[81,81]}}";
	const float f32[4] = { 1.5f, -2.0f, 3.25f, 0.0f };
	const double f64 = 0.1;
	const int64_t i64[2] = { -5, INT64_MAX };
	const int32_t i32 = -123456;
	unsigned char data[81] = { 0 };
	struct weld_error err = { 0 };
	float out[4];
	unsigned char raw[16];
	weld_model *m;
	const struct weld_tensor_info *t;
	char *p;

	memcpy(data, f32, 16);
	memcpy(data + 16, &f64, 8);
	memcpy(data + 24, i64, 16);
	memcpy(data + 40, &i32, 4);
	le16(data + 44, 0x3C00);        /* 1.0 */
	le16(data + 46, 0xC000);        /* -2.0 */
	le16(data + 48, 0x7C00);        /* +inf */
	le16(data + 50, 0x3FC0);        /* 1.5 */
	le16(data + 52, 0xFF80);        /* -inf */
	le16(data + 54, 0x7FC0);        /* NaN */
	le16(data + 56, 65535);
	le16(data + 58, 0x8000);        /* -32768 */
	memset(data + 60, 0xFF, 4);
	memset(data + 64, 0xAB, 8);
	data[72] = 0x7E;                /* E4M3: 448 */
	data[73] = 0x3C;                /* E5M2: 1.0 */
	data[74] = 1; data[75] = 2; data[76] = 255;
	data[77] = 0x80; data[78] = 0x7F;
	data[79] = 1; data[80] = 0;

	p = write_st(*state, "all.safetensors", hdr, strlen(hdr), data, sizeof(data));
	m = open_ok(p);
	assert_string_equal(weld_model_format(m), "safetensors");
	assert_int_equal(weld_model_file_count(m), 1);
	assert_string_equal(weld_model_file_path(m, 0), p);
	assert_string_equal(weld_model_path(m), p);
	assert_string_equal(weld_model_dir(m), *state);
	assert_int_equal(weld_model_count(m), 17);
	/* sorted by name */
	for (size_t i = 1; i < weld_model_count(m); i++)
		assert_true(strcmp(weld_model_tensor(m, i - 1)->name,
				   weld_model_tensor(m, i)->name) < 0);
	assert_int_equal(weld_model_find(m, "nope"), -1);

	t = weld_model_tensor(m, find(m, "f32"));
	assert_int_equal(t->dtype, WELD_F32);
	assert_int_equal(t->ndim, 2);
	assert_int_equal(t->shape[0], 2);
	assert_int_equal(t->shape[1], 2);
	assert_int_equal(t->nelem, 4);
	assert_int_equal(t->nbytes, 16);
	assert_int_equal(t->offset, 8 + strlen(hdr));
	assert_int_equal(t->stride[0], 2);
	assert_int_equal(t->stride[1], 1);
	assert_true(t->contiguous);
	assert_int_equal(t->file, 0);
	assert_int_equal(weld_model_read_f32(m, find(m, "f32"), 0, 4, out, NULL, &err), 0);
	assert_memory_equal(out, f32, 16);
	/* a range inside the tensor */
	assert_int_equal(weld_model_read_f32(m, find(m, "f32"), 1, 2, out, NULL, &err), 0);
	assert_true(out[0] == -2.0f && out[1] == 3.25f);

	t = weld_model_tensor(m, find(m, "scalar"));
	assert_int_equal(t->ndim, 0);
	assert_int_equal(t->nelem, 1);
	assert_int_equal(t->nbytes, 8);
	assert_int_equal(weld_model_read_f32(m, find(m, "scalar"), 0, 1, out, NULL, &err), 0);
	assert_true(out[0] == 0.1f);

	t = weld_model_tensor(m, find(m, "empty"));
	assert_int_equal(t->ndim, 2);
	assert_int_equal(t->nelem, 0);
	assert_int_equal(t->nbytes, 0);
	assert_int_equal(weld_model_read_f32(m, find(m, "empty"), 0, 0, out, NULL, &err), 0);
	t = weld_model_tensor(m, find(m, "tail"));
	assert_int_equal(t->nelem, 0);
	assert_int_equal(t->shape[0], 5);

	assert_int_equal(weld_model_read_f32(m, find(m, "f16"), 0, 3, out, NULL, &err), 0);
	assert_true(out[0] == 1.0f && out[1] == -2.0f && isinf(out[2]) && out[2] > 0);
	{
		unsigned char scratch[6];

		assert_int_equal(weld_model_read_f32(m, find(m, "bf16"), 0, 3, out, scratch,
						     &err), 0);
	}
	assert_true(out[0] == 1.5f && isinf(out[1]) && out[1] < 0 && isnan(out[2]));
	assert_int_equal(weld_model_read_f32(m, find(m, "e4m3"), 0, 1, out, NULL, &err), 0);
	assert_true(out[0] == 448.0f);
	assert_int_equal(weld_model_read_f32(m, find(m, "e5m2"), 0, 1, out, NULL, &err), 0);
	assert_true(out[0] == 1.0f);

	assert_int_equal(weld_model_read(m, find(m, "i64"), 0, 2, raw, &err), 0);
	assert_memory_equal(raw, i64, 16);
	assert_int_equal(weld_model_read(m, find(m, "i64"), 1, 1, raw, &err), 0);
	assert_memory_equal(raw, &i64[1], 8);
	assert_int_equal(weld_model_read(m, find(m, "i32"), 0, 1, raw, &err), 0);
	assert_memory_equal(raw, &i32, 4);
	assert_int_equal(weld_model_read(m, find(m, "u8"), 0, 3, raw, &err), 0);
	assert_memory_equal(raw, data + 74, 3);
	assert_int_equal(weld_model_read(m, find(m, "i8"), 0, 2, raw, &err), 0);
	assert_memory_equal(raw, data + 77, 2);
	assert_int_equal(weld_model_read(m, find(m, "bool"), 0, 2, raw, &err), 0);
	assert_memory_equal(raw, data + 79, 2);
	assert_int_equal(weld_model_read(m, find(m, "u16"), 0, 1, raw, &err), 0);
	assert_memory_equal(raw, data + 56, 2);
	assert_int_equal(weld_model_read(m, find(m, "i16"), 0, 1, raw, &err), 0);
	assert_memory_equal(raw, data + 58, 2);
	assert_int_equal(weld_model_read(m, find(m, "u32"), 0, 1, raw, &err), 0);
	assert_memory_equal(raw, data + 60, 4);
	assert_int_equal(weld_model_read(m, find(m, "u64"), 0, 1, raw, &err), 0);
	assert_memory_equal(raw, data + 64, 8);
	/* the raw bytes of a float tensor */
	assert_int_equal(weld_model_read(m, find(m, "bf16"), 0, 3, raw, &err), 0);
	assert_memory_equal(raw, data + 50, 6);

	/* integers are not decoded to float */
	assert_int_equal(weld_model_read_f32(m, find(m, "i32"), 0, 1, out, NULL, &err), -1);
	assert_int_equal(err.status, WELD_ERR_ARG);
	assert_non_null(strstr(err.msg, "i32"));
	weld_model_close(m);
	free(p);
}

/* The reference test vector (tensor.rs), opened as a file and as the
 * model.safetensors of a folder. */
static void test_reference_vector_file_and_folder(void **state)
{
	const char *hdr = "{\"test\":{\"dtype\":\"I32\",\"shape\":[2,2],\"data_offsets\":[0,16]}}";
	const int32_t v[4] = { 1, -2, 3, INT32_MIN };
	int32_t got[4];
	struct weld_error err = { 0 };
	char *p = write_st(*state, "model.safetensors", hdr, strlen(hdr), v, 16);
	weld_model *m = open_ok(p);

	assert_int_equal(weld_model_count(m), 1);
	assert_int_equal(weld_model_read(m, 0, 0, 4, got, &err), 0);
	assert_memory_equal(got, v, 16);
	weld_model_close(m);

	m = open_ok(*state);
	assert_string_equal(weld_model_dir(m), *state);
	assert_string_equal(weld_model_file_path(m, 0), p);
	assert_int_equal(weld_model_read(m, 0, 0, 4, got, &err), 0);
	assert_memory_equal(got, v, 16);
	weld_model_close(m);
	free(p);
}

/* Writers pad the header with spaces (ours to a multiple of 8), and serde
 * also accepts other JSON whitespace around the object. */
static void test_header_padded_with_spaces(void **state)
{
	const char *hdr = "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}       ";
	const float v = 2.5f;
	float out = 0;
	struct weld_error err = { 0 };
	char *p = write_st(*state, "pad.safetensors", hdr, strlen(hdr), &v, 4);
	weld_model *m = open_ok(p);

	assert_int_equal(weld_model_tensor(m, 0)->offset, 8 + strlen(hdr));
	assert_int_equal(weld_model_read_f32(m, 0, 0, 1, &out, NULL, &err), 0);
	assert_true(out == 2.5f);
	weld_model_close(m);
	free(p);
}

static void test_leading_and_trailing_whitespace(void **state)
{
	const char *hdr = " \r\n\t{\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]}}\r \t\n";
	const unsigned char v[2] = { 7, 9 };
	unsigned char out[2];
	struct weld_error err = { 0 };
	char *p = write_st(*state, "ws.safetensors", hdr, strlen(hdr), v, 2);
	weld_model *m = open_ok(p);

	assert_int_equal(weld_model_read(m, 0, 0, 2, out, &err), 0);
	assert_memory_equal(out, v, 2);
	weld_model_close(m);
	free(p);

	/* tensor.rs test_whitespace_padded_header: "{}" then whitespace, no tensor */
	p = write_st(*state, "empty.safetensors", "{}\r \t\n", 6, NULL, 0);
	m = open_ok(p);
	assert_int_equal(weld_model_count(m), 0);
	weld_model_close(m);
	free(p);
}

static void test_metadata_read_back(void **state)
{
	const char *hdr =
		"{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
		"\"__metadata__\":{\"format\":\"pt\",\"note\":\"caf\xc3\xa9 \\\"q\\\"\",\"empty\":\"\"}}";
	char *p = write_st(*state, "meta.safetensors", hdr, strlen(hdr), NULL, 1);
	weld_model *m = open_ok(p);

	assert_int_equal(weld_model_count(m), 1);
	assert_string_equal(weld_model_metadata(m, "format"), "pt");
	assert_string_equal(weld_model_metadata(m, "note"), "caf\xc3\xa9 \"q\"");
	assert_string_equal(weld_model_metadata(m, "empty"), "");
	assert_null(weld_model_metadata(m, "missing"));
	assert_string_equal(weld_model_file_metadata(m, 0, "format"), "pt");
	assert_null(weld_model_file_metadata(m, 0, "missing"));
	weld_model_close(m);
	free(p);
}

/* A file with metadata and no tensor at all is valid. */
static void test_no_tensors(void **state)
{
	const char *hdr = "{\"__metadata__\":{\"format\":\"pt\"}}";
	char *p = write_st(*state, "none.safetensors", hdr, strlen(hdr), NULL, 0);
	weld_model *m = open_ok(p);

	assert_int_equal(weld_model_count(m), 0);
	assert_int_equal(weld_model_find(m, "a"), -1);
	assert_string_equal(weld_model_metadata(m, "format"), "pt");
	weld_model_close(m);
	free(p);
}

/* Unknown fields inside a tensor are ignored (serde's default), names may
 * hold escapes and any UTF-8, and several empty tensors may share an offset. */
static void test_lenient_where_the_reference_is(void **state)
{
	const char *hdr =
		"{\"\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[0,0]},"
		"\"z\\u00e9\\n\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[0,0],\"extra\":[1.5,null]},"
		"\"\xe2\x82\xac\":{\"data_offsets\":[0,2],\"shape\":[2],\"dtype\":\"U8\"},"
		"\"e\":{\"dtype\":\"F64\",\"shape\":[0,9007199254740991],\"data_offsets\":[2,2]}}";
	char *p = write_st(*state, "lenient.safetensors", hdr, strlen(hdr), NULL, 2);
	weld_model *m = open_ok(p);

	assert_int_equal(weld_model_count(m), 4);
	assert_int_equal(weld_model_find(m, ""), 0);
	assert_true(weld_model_find(m, "z\xc3\xa9\n") >= 0);
	assert_int_equal(weld_model_tensor(m, find(m, "\xe2\x82\xac"))->nbytes, 2);
	assert_int_equal(weld_model_tensor(m, find(m, "e"))->shape[1], 9007199254740991LL);
	weld_model_close(m);
	free(p);
}

static void test_read_past_the_end_refused(void **state)
{
	const char *hdr = "{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,12]}}";
	struct weld_error err = { 0 };
	float out[8];
	char *p = write_st(*state, "r.safetensors", hdr, strlen(hdr), NULL, 12);
	weld_model *m = open_ok(p);

	assert_int_equal(weld_model_read_f32(m, 0, 0, 3, out, NULL, &err), 0);
	assert_int_equal(weld_model_read_f32(m, 0, 3, 0, out, NULL, &err), 0);
	assert_int_equal(weld_model_read(m, 0, 0, 4, out, &err), -1);
	assert_int_equal(err.status, WELD_ERR_ARG);
	assert_non_null(strstr(err.msg, "'a'"));
	memset(&err, 0, sizeof(err));
	assert_int_equal(weld_model_read(m, 0, 2, 2, out, &err), -1);
	assert_int_equal(err.status, WELD_ERR_ARG);
	memset(&err, 0, sizeof(err));
	assert_int_equal(weld_model_read(m, 0, 4, 0, out, &err), -1);
	assert_int_equal(err.status, WELD_ERR_ARG);
	memset(&err, 0, sizeof(err));
	assert_int_equal(weld_model_read(m, 0, UINT64_MAX, 2, out, &err), -1);
	assert_int_equal(err.status, WELD_ERR_ARG);
	memset(&err, 0, sizeof(err));
	assert_int_equal(weld_model_read(m, 0, 1, SIZE_MAX, out, &err), -1);
	assert_int_equal(err.status, WELD_ERR_ARG);
	memset(&err, 0, sizeof(err));
	assert_int_equal(weld_model_read_f32(m, 0, 1, 3, out, NULL, &err), -1);
	assert_int_equal(err.status, WELD_ERR_ARG);
	weld_model_close(m);
	free(p);
}

/* ---------------------------------------------------------------- malformed files */

#define T(n) "{\"" n "\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}"

static void test_bad_shorter_than_8_bytes(void **state)
{
	char *p = fixture_write(*state, "short.safetensors", "\x02\0\0\0\0", 5);

	assert_non_null(p);
	open_fails(p, p, "5 bytes");
	free(p);
	p = fixture_write(*state, "zero.safetensors", "", 0);
	assert_non_null(p);
	open_fails(p, p, "0 bytes");
	free(p);
}

static void test_bad_header_length_beyond_file(void **state)
{
	unsigned char b[8 + 20] = { 100 };  /* N = 100, file holds 20 bytes after it */
	char *p;

	memcpy(b + 8, "{}                  ", 20);
	p = fixture_write(*state, "bad.safetensors", b, sizeof(b));
	open_fails(p, p, "header length 100");
	free(p);
	/* N so large that 8 + N would wrap */
	memset(b, 0xFF, 8);
	p = fixture_write(*state, "bad.safetensors", b, sizeof(b));
	open_fails(p, p, "header length");
	free(p);
}

static void test_bad_header_over_limit(void **state)
{
	/* 100,000,001 = 0x05F5E101; the limit is checked before the file size */
	unsigned char b[16] = { 0x01, 0xE1, 0xF5, 0x05, 0, 0, 0, 0, '{', '}' };
	char *p = fixture_write(*state, "bad.safetensors", b, sizeof(b));

	open_fails(p, p, "header length 100000001");
	free(p);
}

static void test_bad_empty_header(void **state)
{
	expect_bad(*state, "", 0, "header");
	expect_bad(*state, "    ", 0, "header");
}

static void test_bad_invalid_json(void **state)
{
	expect_bad(*state, "{\"a\":", 0, "header: invalid JSON");
	expect_bad(*state, "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}", 1,
		   "header: invalid JSON");
	expect_bad(*state, "{} {}", 0, "header: invalid JSON");
	expect_bad(*state, "{'a':1}", 0, "header: invalid JSON");
}

static void test_bad_top_level_not_object(void **state)
{
	expect_bad(*state, "[1,2]", 0, "header: not a JSON object");
	expect_bad(*state, "\"x\"", 0, "header: not a JSON object");
	expect_bad(*state, "  7", 0, "header: not a JSON object");
}

static void test_bad_tensor_not_object(void **state)
{
	expect_bad(*state, "{\"a\":[1]}", 0, "tensor 'a': not an object");
}

static void test_bad_unknown_dtype(void **state)
{
	expect_bad(*state, "{\"a\":{\"dtype\":\"F4\",\"shape\":[2],\"data_offsets\":[0,1]}}", 1,
		   "tensor 'a': dtype");
	expect_bad(*state, "{\"a\":{\"dtype\":\"f32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
		   "tensor 'a': dtype");
	expect_bad(*state, "{\"a\":{\"dtype\":7,\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
		   "tensor 'a': dtype");
}

static void test_bad_missing_dtype(void **state)
{
	expect_bad(*state, "{\"a\":{\"shape\":[1],\"data_offsets\":[0,1]}}", 1,
		   "tensor 'a': dtype: missing");
}

static void test_bad_missing_shape(void **state)
{
	expect_bad(*state, "{\"a\":{\"dtype\":\"U8\",\"data_offsets\":[0,1]}}", 1,
		   "tensor 'a': shape: missing");
	expect_bad(*state, "{\"a\":{\"dtype\":\"U8\",\"shape\":1,\"data_offsets\":[0,1]}}", 1,
		   "tensor 'a': shape");
}

static void test_bad_missing_data_offsets(void **state)
{
	expect_bad(*state, "{\"a\":{\"dtype\":\"U8\",\"shape\":[1]}}", 0,
		   "tensor 'a': data_offsets: missing");
	expect_bad(*state, "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0]}}", 1,
		   "tensor 'a': data_offsets");
	expect_bad(*state, "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1,1]}}", 1,
		   "tensor 'a': data_offsets");
	expect_bad(*state, "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[\"0\",\"1\"]}}",
		   1, "tensor 'a': data_offsets");
	expect_bad(*state, "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[-1,0]}}", 1,
		   "tensor 'a': data_offsets");
	expect_bad(*state, "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1.5]}}", 1,
		   "tensor 'a': data_offsets");
}

static void test_bad_shape_negative(void **state)
{
	expect_bad(*state, "{\"a\":{\"dtype\":\"U8\",\"shape\":[-1],\"data_offsets\":[0,0]}}", 0,
		   "tensor 'a': shape[0]");
	expect_bad(*state, "{\"a\":{\"dtype\":\"U8\",\"shape\":[2,-0.5],\"data_offsets\":[0,0]}}", 0,
		   "tensor 'a': shape[1]");
}

static void test_bad_shape_fractional(void **state)
{
	expect_bad(*state, "{\"a\":{\"dtype\":\"U8\",\"shape\":[1.5],\"data_offsets\":[0,1]}}", 1,
		   "tensor 'a': shape[0]");
	expect_bad(*state, "{\"a\":{\"dtype\":\"U8\",\"shape\":[\"2\"],\"data_offsets\":[0,2]}}", 2,
		   "tensor 'a': shape[0]");
	expect_bad(*state, "{\"a\":{\"dtype\":\"U8\",\"shape\":[null],\"data_offsets\":[0,0]}}", 0,
		   "tensor 'a': shape[0]");
}

/* cJSON reads numbers as doubles: 2^53 + 1 would silently become 2^53. */
static void test_bad_shape_beyond_2_53(void **state)
{
	expect_bad(*state,
		   "{\"a\":{\"dtype\":\"U8\",\"shape\":[0,9007199254740993],\"data_offsets\":[0,0]}}",
		   0, "tensor 'a': shape[1]");
	expect_bad(*state,
		   "{\"a\":{\"dtype\":\"U8\",\"shape\":[0,9007199254740992],\"data_offsets\":[0,0]}}",
		   0, "tensor 'a': shape[1]");
	expect_bad(*state,
		   "{\"a\":{\"dtype\":\"U8\",\"shape\":[0,1e300],\"data_offsets\":[0,0]}}",
		   0, "tensor 'a': shape[1]");
	expect_bad(*state,
		   "{\"a\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[9007199254740993,9007199254740993]}}",
		   0, "tensor 'a': data_offsets");
}

static void test_bad_shape_too_many_dims(void **state)
{
	expect_bad(*state,
		   "{\"a\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,1]}}",
		   1, "tensor 'a': shape: more than 8 dimensions");
}

static void test_bad_offsets_outside_data(void **state)
{
	expect_bad(*state, "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 8,
		   "data_offsets");
	expect_bad(*state,
		   "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[9007199254740990,9007199254740991]}}",
		   1, "tensor 'a': data_offsets");
}

static void test_bad_end_before_begin(void **state)
{
	expect_bad(*state, "{\"a\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[1,0]}}", 1,
		   "tensor 'a': data_offsets: end 0 before begin 1");
}

static void test_bad_overlapping_tensors(void **state)
{
	expect_bad(*state,
		   "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
		   "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
		   12, "tensor 'b': data_offsets");
	/* the same span twice */
	expect_bad(*state,
		   "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
		   "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
		   8, "data_offsets");
	/* an empty tensor inside another one */
	expect_bad(*state,
		   "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
		   "\"e\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,4]}}",
		   8, "tensor 'e': data_offsets");
}

static void test_bad_gap(void **state)
{
	expect_bad(*state,
		   "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
		   "\"b\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[2,3]}}",
		   3, "tensor 'b': data_offsets: begins at 2, expected 1");
	/* the first tensor must start at 0 */
	expect_bad(*state, "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}", 2,
		   "tensor 'a': data_offsets: begins at 1, expected 0");
}

static void test_bad_trailing_bytes(void **state)
{
	expect_bad(*state, T("a"), 2, "data_offsets: tensors cover 1 bytes of data, but the file holds 2");
	expect_bad(*state, "{}", 1, "data_offsets");
}

static void test_bad_span_not_shape_times_dtype(void **state)
{
	expect_bad(*state, "{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8,
		   "tensor 'a': data_offsets: span of 8 bytes, but shape x dtype needs 12");
	expect_bad(*state, "{\"a\":{\"dtype\":\"BF16\",\"shape\":[],\"data_offsets\":[0,0]}}", 0,
		   "tensor 'a': data_offsets: span of 0 bytes");
}

static void test_bad_shape_product_overflow(void **state)
{
	/* tensor.rs test: ValidationOverflow */
	expect_bad(*state,
		   "{\"test\":{\"dtype\":\"I32\",\"shape\":[2,18446744073709551614],\"data_offsets\":[0,16]}}",
		   16, "tensor 'test': shape");
	expect_bad(*state,
		   "{\"a\":{\"dtype\":\"U8\",\"shape\":[4294967296,4294967296,4294967296],\"data_offsets\":[0,0]}}",
		   0, "tensor 'a': shape: element count overflows");
	/* an element count that fits, but not its size in bytes */
	expect_bad(*state,
		   "{\"a\":{\"dtype\":\"F64\",\"shape\":[1073741824,1073741824,8],\"data_offsets\":[0,0]}}",
		   0, "tensor 'a': shape: byte size overflows");
	/* a zero dim after the overflow does not rescue it */
	expect_bad(*state,
		   "{\"a\":{\"dtype\":\"U8\",\"shape\":[4294967296,4294967296,4294967296,0],\"data_offsets\":[0,0]}}",
		   0, "tensor 'a': shape");
}

static void test_bad_duplicate_names(void **state)
{
	expect_bad(*state,
		   "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
		   "\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}",
		   2, "tensor 'a': duplicate name");
	/* equal after unescaping */
	expect_bad(*state,
		   "{\"ab\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
		   "\"a\\u0062\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}",
		   2, "tensor 'ab': duplicate name");
}

static void test_bad_duplicate_metadata(void **state)
{
	expect_bad(*state,
		   "{\"__metadata__\":{\"format\":\"pt\"}," "\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
		   "\"__metadata__\":{\"format\":\"tf\"}}",
		   1, "__metadata__: duplicate key");
}

static void test_bad_metadata_not_strings(void **state)
{
	expect_bad(*state, "{\"__metadata__\":{\"format\":\"pt\",\"n\":1}}", 0,
		   "__metadata__.n: value is not a string");
	expect_bad(*state, "{\"__metadata__\":{\"o\":{\"x\":\"y\"}}}", 0, "__metadata__.o");
	expect_bad(*state, "{\"__metadata__\":{\"z\":null}}", 0, "__metadata__.z");
	expect_bad(*state, "{\"__metadata__\":\"pt\"}", 0, "__metadata__");
	expect_bad(*state, "{\"__metadata__\":[\"pt\"]}", 0, "__metadata__");
}

static void test_bad_nul_and_control_bytes(void **state)
{
	static const char nul_pad[] = "{}\0\0\0\0\0\0";
	static const char ctl_pad[] = "{}\x0b\x01";
	static const char nul_name[] = "{\"a\0b\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}";
	static const char nul_lead[] = "\0{}";

	expect_bad_n(*state, nul_pad, sizeof(nul_pad) - 1, 0, "header: control byte 0x00");
	expect_bad_n(*state, ctl_pad, sizeof(ctl_pad) - 1, 0, "header: control byte 0x0b");
	expect_bad_n(*state, nul_name, sizeof(nul_name) - 1, 1, "header: control byte 0x00");
	expect_bad_n(*state, nul_lead, sizeof(nul_lead) - 1, 0, "header");
	/* a raw TAB or newline inside a string */
	expect_bad(*state, T("a\tb"), 1, "header: control byte 0x09");
	expect_bad(*state, "{\"__metadata__\":{\"k\":\"line\nbreak\"}}", 0,
		   "header: control byte 0x0a");
	/* between tokens */
	expect_bad(*state, "{\x1f}", 0, "header: control byte 0x1f");
}

static void test_bad_invalid_utf8(void **state)
{
	expect_bad(*state, T("\xff"), 1, "header: invalid UTF-8");
	expect_bad(*state, T("\xc0\xaf"), 1, "header: invalid UTF-8");         /* overlong '/' */
	expect_bad(*state, T("\xe0\x80\xaf"), 1, "header: invalid UTF-8");     /* overlong */
	expect_bad(*state, T("\xed\xa0\x80"), 1, "header: invalid UTF-8");     /* surrogate */
	expect_bad(*state, T("\xf4\x90\x80\x80"), 1, "header: invalid UTF-8"); /* > U+10FFFF */
	expect_bad(*state, T("\xe2\x82"), 1, "header: invalid UTF-8");         /* truncated */
	expect_bad(*state, T("\x80"), 1, "header: invalid UTF-8");             /* lone continuation */
	expect_bad(*state, "{}  \xc3", 0, "header: invalid UTF-8");           /* cut at the end */
	expect_bad(*state, "{}  \xa0", 0, "header");                           /* in the padding */
}

static void test_bad_u0000_escape(void **state)
{
	/* cJSON would truncate "a\u0000b" to "a": each place is named */
	expect_bad(*state, T("a\\u0000b"), 1, "tensor 'a\\u0000b': name contains \\u0000");
	expect_bad(*state, "{\"__metadata__\":{\"k\":\"\\u0000\"}}", 0,
		   "__metadata__.k: value contains \\u0000");
	expect_bad(*state, "{\"__metadata__\":{\"k\\u0000\":\"v\"}}", 0,
		   "__metadata__: key 'k\\u0000' contains \\u0000");
	expect_bad(*state, "{\"a\":{\"dtype\":\"U8\\u0000\",\"shape\":[1],\"data_offsets\":[0,1]}}",
		   1, "tensor 'a': dtype: contains \\u0000");
	expect_bad(*state, "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1],"
		   "\"x\\u0000\":1}}", 1, "tensor 'a': key 'x\\u0000' contains \\u0000");
	/* an escaped backslash followed by "u0000" is no NUL */
	{
		char *p = write_st(*state, "ok.safetensors", T("a\\\\u0000"),
				   strlen(T("a\\\\u0000")), NULL, 1);
		weld_model *m = open_ok(p);

		assert_true(weld_model_find(m, "a\\u0000") >= 0);
		weld_model_close(m);
		free(p);
	}
}

/* serde reads dtype, shape and data_offsets into a struct: a second copy of
 * one of them is an error (other keys are ignored, duplicates included). */
static void test_bad_duplicate_field_in_tensor(void **state)
{
	expect_bad(*state, "{\"a\":{\"dtype\":\"U8\",\"dtype\":\"F32\",\"shape\":[1],"
		   "\"data_offsets\":[0,1]}}", 1, "tensor 'a': dtype: duplicate key");
	expect_bad(*state, "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"shape\":[4],"
		   "\"data_offsets\":[0,1]}}", 1, "tensor 'a': shape: duplicate key");
	expect_bad(*state, "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1],"
		   "\"data_offsets\":[0,1]}}", 1, "tensor 'a': data_offsets: duplicate key");
	{
		const char *hdr = "{\"a\":{\"dtype\":\"U8\",\"x\":1,\"shape\":[1],\"x\":2,"
				  "\"data_offsets\":[0,1]}}";
		char *p = write_st(*state, "ok.safetensors", hdr, strlen(hdr), NULL, 1);

		weld_model_close(open_ok(p));
		free(p);
	}
}

/* A shape or data_offsets entry is a usize to serde: a JSON integer, not
 * 2.0, 2e0 or -0, which cJSON reads as the same double. */
static void test_bad_shape_not_written_as_integer(void **state)
{
	expect_bad(*state, "{\"a\":{\"dtype\":\"U8\",\"shape\":[2.0],\"data_offsets\":[0,2]}}", 2,
		   "tensor 'a': shape[0]: '2.0' is not an integer (written with a fraction");
	expect_bad(*state, "{\"a\":{\"dtype\":\"U8\",\"shape\":[1,2e0],\"data_offsets\":[0,2]}}", 2,
		   "tensor 'a': shape[1]: '2e0' is not an integer");
	expect_bad(*state, "{\"a\":{\"dtype\":\"U8\",\"shape\":[2E+0],\"data_offsets\":[0,2]}}", 2,
		   "tensor 'a': shape[0]: '2E+0'");
	expect_bad(*state, "{\"a\":{\"dtype\":\"U8\",\"shape\":[-0],\"data_offsets\":[0,0]}}", 0,
		   "tensor 'a': shape[0]: '-0' is not an integer (negative)");
	expect_bad(*state, "{\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2.0]}}", 2,
		   "tensor 'a': data_offsets[1]: '2.0' is not an integer");
	expect_bad(*state, "{\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0e5,2]}}", 2,
		   "tensor 'a': data_offsets[0]: '0e5'");
}

/* JSON has no leading zeros: serde refuses "01" wherever it stands. */
static void test_bad_number_with_leading_zero(void **state)
{
	expect_bad(*state, "{\"a\":{\"dtype\":\"U8\",\"shape\":[01],\"data_offsets\":[0,1]}}", 1,
		   "tensor 'a': shape[0]: '01' is not an integer (not a JSON number)");
	expect_bad(*state, "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[00,1]}}", 1,
		   "tensor 'a': data_offsets[0]: '00'");
	expect_bad(*state, "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1],"
		   "\"extra\":[007]}}", 1, "tensor 'a': extra: '007' is not a JSON number");
	expect_bad(*state, "{\"__metadata__\":{\"k\":\"v\"},\"x\":-01}", 0,
		   "header: '-01' at offset 38 is not a JSON number");
}

/* Each top-level key is checked against the limit before anything is
 * built for it. */
static void test_bad_too_many_tensors(void **state)
{
	size_t n = WELD_MAX_TENSORS_PER_FILE + 1, len = 0;
	char *hdr = malloc(16 * n + 64), msg[64];

	assert_non_null(hdr);
	len += (size_t)sprintf(hdr, "{\"__metadata__\":{}");
	for (size_t i = 0; i < n; i++)
		len += (size_t)sprintf(hdr + len, ",\"t%zu\":0", i);
	hdr[len++] = '}';
	snprintf(msg, sizeof(msg), "header: more than %u tensors", WELD_MAX_TENSORS_PER_FILE);
	expect_bad_n(*state, hdr, len, 0, msg);
	free(hdr);
}

/* A header of many metadata keys is read in linear time, and a
 * duplicate key among them is found and named. */
static void test_metadata_many_keys_one_duplicate(void **state)
{
	size_t n = 200000, len = 0;
	char *hdr = malloc(32 * n + 128);
	char *p;
	weld_model *m;

	assert_non_null(hdr);
	len += (size_t)sprintf(hdr, "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
			       "\"__metadata__\":{");
	for (size_t i = 0; i < n; i++)
		len += (size_t)sprintf(hdr + len, "%s\"key%zu\":\"v%zu\"", i ? "," : "", i, i);
	memcpy(hdr + len, "}}", 3);
	p = write_st(*state, "many.safetensors", hdr, len + 2, NULL, 1);
	m = open_ok(p);
	assert_string_equal(weld_model_metadata(m, "key0"), "v0");
	assert_string_equal(weld_model_metadata(m, "key199999"), "v199999");
	assert_string_equal(weld_model_file_metadata(m, 0, "key123456"), "v123456");
	weld_model_close(m);
	free(p);
	/* the same, with key77777 given a second time at the end */
	len += (size_t)sprintf(hdr + len, ",\"key77777\":\"again\"}}");
	expect_bad_n(*state, hdr, len, 1, "__metadata__.key77777: duplicate key");
	free(hdr);
}

static void test_bad_bom(void **state)
{
	expect_bad(*state, "\xef\xbb\xbf{}", 0, "header: not a JSON object (first byte 0xef)");
	expect_bad(*state, "\xef\xbb\xbf" T("a"), 1, "header: not a JSON object");
}

/* ---------------------------------------------------------------- sharded folders */

#define SHARD1 "model-00001-of-00002.safetensors"
#define SHARD2 "model-00002-of-00002.safetensors"

/* Shard 1 holds a (F32 [2]) and b (U8 [3]); shard 2 holds c (BF16 [1]). */
static void write_two_shards(const char *dir)
{
	const char *h1 = "{\"__metadata__\":{\"format\":\"pt\",\"which\":\"one\"},"
			 "\"b\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[8,11]},"
			 "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
	const char *h2 = "{\"__metadata__\":{\"which\":\"two\",\"only2\":\"x\"},"
			 "\"c\":{\"dtype\":\"BF16\",\"shape\":[1],\"data_offsets\":[0,2]}}";
	const float a[2] = { -1.0f, 0.5f };
	unsigned char d1[11], d2[2];

	memcpy(d1, a, 8);
	d1[8] = 10; d1[9] = 20; d1[10] = 30;
	le16(d2, 0x4040); /* 3.0 */
	free(write_st(dir, SHARD1, h1, strlen(h1), d1, sizeof(d1)));
	free(write_st(dir, SHARD2, h2, strlen(h2), d2, sizeof(d2)));
}

static void write_index(const char *dir, const char *json)
{
	free(fixture_write(dir, "model.safetensors.index.json", json, strlen(json)));
}

static void test_sharded_index_reads_as_one_model(void **state)
{
	struct weld_error err = { 0 };
	float f[2];
	unsigned char u[3];
	weld_model *m;

	write_two_shards(*state);
	write_index(*state, "{\"metadata\":{\"total_size\":13,\"mergekit_version\":\"0.1\"},"
			    "\"weight_map\":{\"a\":\"" SHARD1 "\",\"b\":\"" SHARD1 "\","
			    "\"c\":\"" SHARD2 "\"}}");
	/* a stray single-file model beside the index is ignored */
	free(write_st(*state, "model.safetensors", T("zzz"), strlen(T("zzz")), NULL, 1));
	m = open_ok(*state);
	assert_string_equal(weld_model_format(m), "safetensors");
	assert_int_equal(weld_model_file_count(m), 2);
	assert_int_equal(weld_model_count(m), 3);
	assert_int_equal(weld_model_find(m, "zzz"), -1);
	assert_string_equal(weld_model_tensor(m, 0)->name, "a");
	assert_string_equal(weld_model_tensor(m, 2)->name, "c");
	assert_non_null(strstr(weld_model_file_path(m, (size_t)weld_model_tensor(m, 0)->file),
			       SHARD1));
	assert_non_null(strstr(weld_model_file_path(m, (size_t)weld_model_tensor(m, 2)->file),
			       SHARD2));
	assert_int_equal(weld_model_read_f32(m, 0, 0, 2, f, NULL, &err), 0);
	assert_true(f[0] == -1.0f && f[1] == 0.5f);
	assert_int_equal(weld_model_read(m, 1, 0, 3, u, &err), 0);
	assert_true(u[0] == 10 && u[1] == 20 && u[2] == 30);
	assert_int_equal(weld_model_read_f32(m, 2, 0, 1, f, NULL, &err), 0);
	assert_true(f[0] == 3.0f);
	/* metadata: the first file that has the key wins */
	assert_string_equal(weld_model_metadata(m, "which"), "one");
	assert_string_equal(weld_model_metadata(m, "only2"), "x");
	weld_model_close(m);
}

static void test_sharded_index_names_missing_tensor(void **state)
{
	char *idx = fixture_path(*state, "model.safetensors.index.json");

	write_two_shards(*state);
	write_index(*state, "{\"weight_map\":{\"a\":\"" SHARD1 "\",\"b\":\"" SHARD1 "\","
			    "\"c\":\"" SHARD2 "\",\"d\":\"" SHARD2 "\"}}");
	open_fails(*state, idx, "weight_map.d: tensor not found in shard '" SHARD2 "'");
	free(idx);
}

static void test_sharded_shard_holds_unlisted_tensor(void **state)
{
	char *idx = fixture_path(*state, "model.safetensors.index.json");

	write_two_shards(*state);
	write_index(*state, "{\"weight_map\":{\"a\":\"" SHARD1 "\",\"c\":\"" SHARD2 "\"}}");
	open_fails(*state, idx, "tensor 'b': in shard '" SHARD1 "' but not in the index");
	free(idx);
}

static void test_sharded_index_names_wrong_shard(void **state)
{
	char *idx = fixture_path(*state, "model.safetensors.index.json");

	write_two_shards(*state);
	write_index(*state, "{\"weight_map\":{\"a\":\"" SHARD1 "\",\"b\":\"" SHARD2 "\","
			    "\"c\":\"" SHARD2 "\"}}");
	open_fails(*state, idx, "tensor 'b': weight_map says '" SHARD2 "' but it is in '" SHARD1 "'");
	free(idx);
}

static void test_sharded_weight_map_path_refused(void **state)
{
	char *idx = fixture_path(*state, "model.safetensors.index.json");
	char *sub = fixture_path(*state, "sub");

	assert_int_equal(mkdir(sub, 0755), 0);
	write_two_shards(sub);
	write_index(*state, "{\"weight_map\":{\"a\":\"sub/" SHARD1 "\"}}");
	open_fails(*state, idx, "weight_map.a: shard must be a file name");
	write_index(*state, "{\"weight_map\":{\"a\":\"../x.safetensors\"}}");
	open_fails(*state, idx, "weight_map.a");
	write_index(*state, "{\"weight_map\":{\"a\":\"/etc/passwd\"}}");
	open_fails(*state, idx, "weight_map.a");
	write_index(*state, "{\"weight_map\":{\"a\":\"..\"}}");
	open_fails(*state, idx, "weight_map.a");
	write_index(*state, "{\"weight_map\":{\"a\":\"\"}}");
	open_fails(*state, idx, "weight_map.a");
	write_index(*state, "{\"weight_map\":{\"a\":3}}");
	open_fails(*state, idx, "weight_map.a");
	free(idx);
	free(sub);
}

static void test_sharded_bad_index(void **state)
{
	char *idx = fixture_path(*state, "model.safetensors.index.json");
	struct weld_error err = { 0 };
	weld_model *m = NULL;

	write_two_shards(*state);
	write_index(*state, "{\"weight_map\":");
	open_fails(*state, idx, "invalid JSON");
	write_index(*state, "{\"metadata\":{}}");
	open_fails(*state, idx, "weight_map");
	write_index(*state, "{\"weight_map\":[]}");
	open_fails(*state, idx, "weight_map");
	/* a shard that is not there: an I/O error naming it */
	write_index(*state, "{\"weight_map\":{\"a\":\"model-00009-of-00009.safetensors\"}}");
	assert_int_equal(weld_model_open(&m, *state, &err), -1);
	assert_null(m);
	assert_int_equal(err.status, WELD_ERR_IO);
	assert_non_null(strstr(err.msg, "model-00009-of-00009.safetensors"));
	free(idx);
}

/* A malformed shard is reported with the shard's own path. */
static void test_sharded_bad_shard(void **state)
{
	char *s2 = fixture_path(*state, SHARD2);

	write_two_shards(*state);
	free(write_st(*state, SHARD2, "{\"c\":{}}", 8, NULL, 0));
	write_index(*state, "{\"weight_map\":{\"a\":\"" SHARD1 "\",\"b\":\"" SHARD1 "\","
			    "\"c\":\"" SHARD2 "\"}}");
	open_fails(*state, s2, "tensor 'c': dtype: missing");
	free(s2);
}

/* cJSON would cut a name at "\u0000": the index would then name another
 * shard or tensor than it says. */
static void test_sharded_index_nul_in_names(void **state)
{
	char *idx = fixture_path(*state, "model.safetensors.index.json");

	write_two_shards(*state);
	write_index(*state, "{\"weight_map\":{\"a\":\"" SHARD1 "\\u0000x\",\"b\":\"" SHARD1
			    "\",\"c\":\"" SHARD2 "\"}}");
	open_fails(*state, idx, "weight_map.a: shard name contains \\u0000");
	write_index(*state, "{\"weight_map\":{\"a\":\"" SHARD1 "\",\"b\\u0000zz\":\"" SHARD1
			    "\",\"b\":\"" SHARD1 "\",\"c\":\"" SHARD2 "\"}}");
	open_fails(*state, idx, "weight_map: tensor name 'b\\u0000zz' contains \\u0000");
	write_index(*state, "{\"metadata\":{\"note\":\"\\u0000\"},\"weight_map\":{}}");
	open_fails(*state, idx, "metadata: contains \\u0000");
	free(idx);
}

static void test_sharded_index_duplicate_name(void **state)
{
	char *idx = fixture_path(*state, "model.safetensors.index.json");

	write_two_shards(*state);
	write_index(*state, "{\"weight_map\":{\"a\":\"" SHARD1 "\",\"b\":\"" SHARD1 "\","
			    "\"c\":\"" SHARD2 "\",\"a\":\"" SHARD1 "\"}}");
	open_fails(*state, idx, "weight_map.a: duplicate name");
	free(idx);
}

/* 100,000 tensors in two shards: the index and the shards are matched by
 * hash (linear), and a disagreement is still named. */
static void test_sharded_index_many_tensors(void **state)
{
	size_t n = 100000, half = n / 2;
	char *h[2], *map = malloc(64 * n + 64), *idx = fixture_path(*state,
		"model.safetensors.index.json");
	size_t hl[2] = { 0, 0 }, ml = 0;
	weld_model *m;

	assert_non_null(map);
	for (int k = 0; k < 2; k++) {
		h[k] = malloc(80 * half + 16);
		assert_non_null(h[k]);
		h[k][hl[k]++] = '{';
	}
	ml += (size_t)sprintf(map, "{\"weight_map\":{");
	for (size_t i = 0; i < n; i++) {
		int k = i >= half;
		size_t j = i - (size_t)k * half;

		hl[k] += (size_t)sprintf(h[k] + hl[k], "%s\"t%zu\":{\"dtype\":\"U8\",\"shape\":[1],"
					 "\"data_offsets\":[%zu,%zu]}", j ? "," : "", i, j, j + 1);
		ml += (size_t)sprintf(map + ml, "%s\"t%zu\":\"%s\"", i ? "," : "", i,
				      k ? SHARD2 : SHARD1);
	}
	for (int k = 0; k < 2; k++) {
		h[k][hl[k]++] = '}';
		free(write_st(*state, k ? SHARD2 : SHARD1, h[k], hl[k], NULL, half));
	}
	memcpy(map + ml, "}}", 3);
	write_index(*state, map);
	m = open_ok(*state);
	assert_int_equal(weld_model_count(m), n);
	assert_int_equal(weld_model_tensor(m, find(m, "t99999"))->offset, 8 + hl[1] + half - 1);
	weld_model_close(m);
	/* the last name of the map is not in any shard */
	memcpy(map + ml, ",\"t100000\":\"" SHARD2 "\"}}", sizeof(",\"t100000\":\"" SHARD2 "\"}}"));
	write_index(*state, map);
	open_fails(*state, idx, "weight_map.t100000: tensor not found in shard '" SHARD2 "'");
	for (int k = 0; k < 2; k++)
		free(h[k]);
	free(map);
	free(idx);
}

static void test_folder_without_index(void **state)
{
	struct weld_error err = { 0 };
	unsigned char u[3];
	weld_model *m;

	/* the names need not follow the HF pattern */
	free(write_st(*state, "first.safetensors", T("x"), strlen(T("x")), "\x05", 1));
	write_two_shards(*state);
	free(fixture_write(*state, "notes.txt", "hello", 5));
	m = open_ok(*state);
	assert_int_equal(weld_model_file_count(m), 3);
	assert_int_equal(weld_model_count(m), 4);
	assert_int_equal(weld_model_read(m, find(m, "b"), 0, 3, u, &err), 0);
	assert_true(u[0] == 10 && u[2] == 30);
	assert_int_equal(weld_model_read(m, find(m, "x"), 0, 1, u, &err), 0);
	assert_int_equal(u[0], 5);
	weld_model_close(m);
}

static void test_folder_tensor_in_two_files(void **state)
{
	free(write_st(*state, "one.safetensors", T("w"), strlen(T("w")), NULL, 1));
	free(write_st(*state, "two.safetensors", T("w"), strlen(T("w")), NULL, 1));
	open_fails(*state, *state, "tensor 'w': present in both");
}

static void test_empty_folder(void **state)
{
	open_fails(*state, *state, "no model.safetensors");
	free(fixture_write(*state, "config.json", "{}", 2));
	open_fails(*state, *state, "no model.safetensors");
}

/* ---------------------------------------------------------------- what is not a model file */

/* Open path, expecting an I/O error whose message holds path and `why`. */
static void open_fails_io(const char *path, const char *named_path, const char *why)
{
	struct weld_error err = { 0 };
	weld_model *m = (weld_model *)&err;

	assert_int_equal(weld_model_open(&m, path, &err), -1);
	assert_null(m);
	if (err.status != WELD_ERR_IO || !strstr(err.msg, named_path) || !strstr(err.msg, why))
		print_error("status %d, message \"%s\"; wanted \"%s\" and \"%s\"\n",
			    (int)err.status, err.msg, named_path, why);
	assert_int_equal(err.status, WELD_ERR_IO);
	assert_non_null(strstr(err.msg, named_path));
	assert_non_null(strstr(err.msg, why));
}

/*
 * A FIFO in place of a model file, a shard or an index is refused at once
 * (opening one for reading would wait for a writer forever); the alarm
 * turns such a wait into a failure of the test.
 */
static void test_fifo_refused(void **state)
{
	char *fifo = fixture_path(*state, "pipe.safetensors");
	char *sub = fixture_path(*state, "sub"), *inner, *shard;

	alarm(20);
	assert_int_equal(mkfifo(fifo, 0644), 0);
	open_fails_io(fifo, fifo, "is a FIFO, not a regular file");
	/* the only *.safetensors of a folder */
	open_fails_io(*state, fifo, "is a FIFO");
	/* model.safetensors of a folder */
	assert_int_equal(mkdir(sub, 0755), 0);
	inner = fixture_path(sub, "model.safetensors");
	assert_int_equal(mkfifo(inner, 0644), 0);
	open_fails_io(sub, inner, "is a FIFO");
	assert_int_equal(unlink(inner), 0);
	/* a shard named by the index, and the index itself */
	write_two_shards(sub);
	shard = fixture_path(sub, SHARD2);
	assert_int_equal(unlink(shard), 0);
	assert_int_equal(mkfifo(shard, 0644), 0);
	write_index(sub, "{\"weight_map\":{\"a\":\"" SHARD1 "\",\"b\":\"" SHARD1 "\","
			 "\"c\":\"" SHARD2 "\"}}");
	open_fails_io(sub, shard, "is a FIFO");
	free(inner);
	inner = fixture_path(sub, "model.safetensors.index.json");
	assert_int_equal(unlink(inner), 0);
	assert_int_equal(mkfifo(inner, 0644), 0);
	open_fails_io(sub, inner, "is a FIFO");
	/* a device */
	open_fails_io("/dev/zero", "/dev/zero", "is a character device, not a regular file");
	alarm(0);
	free(shard);
	free(inner);
	free(sub);
	free(fifo);
}

/* A folder's model.safetensors that cannot be read as a file is reported
 * with its cause, not as "no model.safetensors". */
static void test_folder_entry_not_a_file(void **state)
{
	char *p = fixture_path(*state, "model.safetensors");
	char *idx = fixture_path(*state, "model.safetensors.index.json");
	char *x = fixture_path(*state, "x.safetensors");

	assert_int_equal(mkdir(p, 0755), 0);
	open_fails_io(*state, p, "is a folder, not a regular file");
	assert_int_equal(rmdir(p), 0);
	assert_int_equal(symlink("model.safetensors", p), 0);          /* a loop */
	open_fails_io(*state, p, "Too many levels of symbolic links");
	assert_int_equal(unlink(p), 0);
	assert_int_equal(symlink("gone.safetensors", p), 0);
	open_fails_io(*state, p, "is a symbolic link to a file that does not exist");
	assert_int_equal(unlink(p), 0);
	assert_int_equal(mkdir(idx, 0755), 0);
	open_fails_io(*state, idx, "is a folder");
	assert_int_equal(rmdir(idx), 0);
	/* a folder among the *.safetensors of a folder without index */
	free(write_st(*state, "a.safetensors", T("a"), strlen(T("a")), NULL, 1));
	assert_int_equal(mkdir(x, 0755), 0);
	open_fails_io(*state, x, "is a folder");
	free(x);
	free(idx);
	free(p);
}

/*
 * A file is a damaged safetensors file only if it looks like one: a text
 * file or a config.json given as a model is not a checkpoint, while a
 * truncated safetensors file still gets the safetensors message.
 */
static void test_not_a_checkpoint_by_content(void **state)
{
	static const char passwd[] = "root:x:0:0:root:/root:/bin/bash\n"
				     "daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n";
	static const char config[] = "{\n  \"architectures\": [\"LlamaForCausalLM\"],\n"
				     "  \"hidden_size\": 4096\n}\n";
	char *p = fixture_write(*state, "passwd", passwd, sizeof(passwd) - 1);
	char *c = fixture_write(*state, "config.json", config, sizeof(config) - 1);
	char *t;
	char msg[64];

	snprintf(msg, sizeof(msg), "not a safetensors or PyTorch checkpoint (%zu bytes)",
		 sizeof(passwd) - 1);
	open_fails(p, p, msg);
	open_fails(c, c, "not a safetensors or PyTorch checkpoint");
	/* a safetensors file cut inside its header */
	t = write_st(*state, "cut.safetensors", T("a"), strlen(T("a")), NULL, 1);
	assert_int_equal(truncate(t, 20), 0);
	open_fails(t, t, "header length 53 goes beyond the end of the file (20 bytes)");
	free(t);
	free(c);
	free(p);
}

static void test_missing_path(void **state)
{
	struct weld_error err = { 0 };
	weld_model *m = (weld_model *)&err;
	char *p = fixture_path(*state, "nothing-here");

	assert_int_equal(weld_model_open(&m, p, &err), -1);
	assert_null(m);
	assert_int_equal(err.status, WELD_ERR_IO);
	assert_non_null(strstr(err.msg, p));
	free(p);
}

int main(void)
{
#define D(f) cmocka_unit_test_setup_teardown(f, fixture_setup_dir, fixture_teardown_dir)
	const struct CMUnitTest tests[] = {
		D(test_reads_every_dtype),
		D(test_reference_vector_file_and_folder),
		D(test_header_padded_with_spaces),
		D(test_leading_and_trailing_whitespace),
		D(test_metadata_read_back),
		D(test_no_tensors),
		D(test_lenient_where_the_reference_is),
		D(test_read_past_the_end_refused),
		D(test_bad_shorter_than_8_bytes),
		D(test_bad_header_length_beyond_file),
		D(test_bad_header_over_limit),
		D(test_bad_empty_header),
		D(test_bad_invalid_json),
		D(test_bad_top_level_not_object),
		D(test_bad_tensor_not_object),
		D(test_bad_unknown_dtype),
		D(test_bad_missing_dtype),
		D(test_bad_missing_shape),
		D(test_bad_missing_data_offsets),
		D(test_bad_shape_negative),
		D(test_bad_shape_fractional),
		D(test_bad_shape_beyond_2_53),
		D(test_bad_shape_too_many_dims),
		D(test_bad_offsets_outside_data),
		D(test_bad_end_before_begin),
		D(test_bad_overlapping_tensors),
		D(test_bad_gap),
		D(test_bad_trailing_bytes),
		D(test_bad_span_not_shape_times_dtype),
		D(test_bad_shape_product_overflow),
		D(test_bad_duplicate_names),
		D(test_bad_duplicate_metadata),
		D(test_bad_metadata_not_strings),
		D(test_bad_nul_and_control_bytes),
		D(test_bad_invalid_utf8),
		D(test_bad_u0000_escape),
		D(test_bad_duplicate_field_in_tensor),
		D(test_bad_shape_not_written_as_integer),
		D(test_bad_number_with_leading_zero),
		D(test_bad_too_many_tensors),
		D(test_metadata_many_keys_one_duplicate),
		D(test_bad_bom),
		D(test_sharded_index_reads_as_one_model),
		D(test_sharded_index_names_missing_tensor),
		D(test_sharded_shard_holds_unlisted_tensor),
		D(test_sharded_index_names_wrong_shard),
		D(test_sharded_weight_map_path_refused),
		D(test_sharded_bad_index),
		D(test_sharded_bad_shard),
		D(test_sharded_index_nul_in_names),
		D(test_sharded_index_duplicate_name),
		D(test_sharded_index_many_tensors),
		D(test_folder_without_index),
		D(test_folder_tensor_in_two_files),
		D(test_empty_folder),
		D(test_missing_path),
		D(test_fifo_refused),
		D(test_folder_entry_not_a_file),
		D(test_not_a_checkpoint_by_content),
	};
#undef D
	return cmocka_run_group_tests_name("safetensors", tests, NULL, NULL);
}
