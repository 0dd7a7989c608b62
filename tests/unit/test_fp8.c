/*
 * test_fp8.c - FP8 E4M3 weights with scales: the saturating encoder's
 * rounding (ties, subnormals, the clamp at 448), block-scaled bands worked
 * by hand, where each element's scale is, and models read through
 * weld_model_read_f32 (partial ranges, checks of hostile scale tensors).
 * Expected values are written out here or come from ldexp(), not from the
 * code under test.
 */
#include <stdarg.h>   /* cmocka 1.1.x needs these four before cmocka.h */
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <string.h>
#include <cmocka.h>
#include "fixtures.h"
#include "fp8.h"
#include "weld.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* E4M3FN by its formula: sign, exponent of bias 7, 3 mantissa bits. */
static float e4m3(uint8_t c)
{
	int e = (c >> 3) & 15, m = c & 7;
	double v = e ? ldexp(1 + m / 8.0, e - 7) : ldexp(m, -9);

	return (float)((c & 0x80) ? -v : v);
}

static void test_encode_rounding(void **state)
{
	(void)state;
	assert_int_equal(weld_fp8_encode_sat(448.0f), 0x7E);
	assert_int_equal(weld_fp8_encode_sat(-448.0f), 0xFE);
	/* saturating: what torch's cast turns into NaN becomes +-448 */
	assert_int_equal(weld_fp8_encode_sat(464.0f), 0x7E);
	assert_int_equal(weld_fp8_encode_sat(464.0001f), 0x7E);
	assert_int_equal(weld_fp8_encode_sat(1e30f), 0x7E);
	assert_int_equal(weld_fp8_encode_sat(-INFINITY), 0xFE);
	/* ties to even: 17 lies between 16 (m 0) and 18 (m 1), 19 between 18
	 * and 20 (m 2) */
	assert_int_equal(weld_fp8_encode_sat(17.0f), 0x58);
	assert_int_equal(weld_fp8_encode_sat(19.0f), 0x5A);
	assert_int_equal(weld_fp8_encode_sat(17.0001f), 0x59);
	/* subnormals: multiples of 2^-9 */
	assert_int_equal(weld_fp8_encode_sat(ldexpf(1, -10)), 0x00);
	assert_int_equal(weld_fp8_encode_sat(ldexpf(3, -10)), 0x02);
	assert_int_equal(weld_fp8_encode_sat(ldexpf(5, -10)), 0x02);
	assert_int_equal(weld_fp8_encode_sat(ldexpf(7, -9)), 0x07);
	/* 7.5 * 2^-9 ties between 0x07 and the smallest normal 0x08 */
	assert_int_equal(weld_fp8_encode_sat(ldexpf(15, -10)), 0x08);
	assert_int_equal(weld_fp8_encode_sat(ldexpf(1, -6)), 0x08);
	assert_int_equal(weld_fp8_encode_sat(ldexpf(1, -12)), 0x00);
	assert_int_equal(weld_fp8_encode_sat(-0.0f), 0x80);
	assert_int_equal(weld_fp8_encode_sat(0.0f), 0x00);
}

/* Every finite code survives decode then encode; the midpoint between two
 * neighbours goes to the even one, and just past it to the upper one. */
static void test_encode_every_code(void **state)
{
	(void)state;
	for (int c = 0; c < 256; c++) {
		if ((c & 0x7F) == 0x7F)
			continue;
		assert_int_equal(weld_fp8_encode_sat(e4m3((uint8_t)c)), c);
		assert_true(weld_e4m3_to_f32((uint8_t)c) == e4m3((uint8_t)c));
		if ((c & 0x7F) < 0x7E) {
			float lo = e4m3((uint8_t)c), hi = e4m3((uint8_t)(c + 1));
			float mid = (float)(((double)lo + hi) / 2);
			uint8_t even = (c % 2 == 0) ? (uint8_t)c : (uint8_t)(c + 1);

			assert_int_equal(weld_fp8_encode_sat(mid), even);
			assert_int_equal(weld_fp8_encode_sat(nextafterf(mid, c & 0x80 ? -1e9f : 1e9f)),
					 c + 1);
		}
	}
}

/* A 2 x 3 band, blocks of 2 columns: amax 4 -> scale 4/448, the values
 * at 112, -224, 56 and 448 times it; the second block is all zero:
 * scale 1, codes 0. */
static void test_encode_band(void **state)
{
	const float x[6] = { 1, -2, 0, 0.5f, 4, 0 };
	uint8_t q[6];
	float s[2];

	(void)state;
	assert_true(weld_fp8_encode_band(x, 2, 3, 2, q, s) == SIZE_MAX);
	assert_true(s[0] == 4.0f / 448.0f);
	assert_true(s[1] == 1.0f);
	assert_int_equal(q[0], 0x6E);   /* 112 = 1.75 * 2^6 */
	assert_int_equal(q[1], 0xF6);   /* -224 */
	assert_int_equal(q[2], 0x00);
	assert_int_equal(q[3], 0x66);   /* 56 */
	assert_int_equal(q[4], 0x7E);   /* 448 */
	assert_int_equal(q[5], 0x00);
}

static void test_encode_band_refuses_nonfinite(void **state)
{
	float x[4] = { 1, 2, 3, 4 };
	uint8_t q[4];
	float s[1];

	(void)state;
	x[2] = NAN;
	assert_int_equal(weld_fp8_encode_band(x, 2, 2, 2, q, s), 2);
	x[2] = INFINITY;
	assert_int_equal(weld_fp8_encode_band(x, 2, 2, 2, q, s), 2);
}

/* Two slices of 5 x 6 in blocks of 2 x 4: a grid of 3 x 2 a slice. Every
 * range's scales, applied, equal the per-element rule. */
static void test_apply_scales(void **state)
{
	const struct weld_fp8_geom g = { .slices = 2, .rows = 5, .cols = 6, .brows = 2, .bcols = 4 };
	float sc[12], x[60];

	(void)state;
	assert_int_equal(weld_fp8_grid_rows(&g), 3);
	assert_int_equal(weld_fp8_grid_cols(&g), 2);
	for (int k = 0; k < 12; k++)
		sc[k] = (float)(k + 1);
	for (uint64_t first = 0; first < 60; first++)
		for (uint64_t n = 1; first + n <= 60; n++) {
			uint64_t r0 = weld_fp8_scale_row(&g, first);

			for (uint64_t k = 0; k < n; k++)
				x[k] = 1.0f;
			weld_fp8_apply_scales(&g, first, n, sc + r0 * 2, x);
			for (uint64_t k = 0; k < n; k++) {
				uint64_t j = first + k, s = j / 30, r = j % 30 / 6, c = j % 6;

				assert_true(x[k] == sc[(s * 3 + r / 2) * 2 + c / 4]);
			}
		}
}

/* What a stream emits, gathered. */
struct sink {
	uint8_t codes[256];
	float scales[64];
	size_t nc, ns, calls;
};

static int gather(void *ctx, const uint8_t *codes, size_t ncodes, const float *scales,
		  size_t nscales, struct weld_error *err)
{
	struct sink *k = ctx;

	(void)err;
	memcpy(k->codes + k->nc, codes, ncodes);
	memcpy(k->scales + k->ns, scales, nscales * sizeof(float));
	k->nc += ncodes;
	k->ns += nscales;
	k->calls++;
	return 0;
}

/* Two slices of 5 x 6 in blocks of 2 x 4, fed in pieces of every size:
 * bands of 2, 2 and 1 rows a slice (6 calls), and the same codes and
 * scales as each band encoded whole. */
static void test_stream_bands(void **state)
{
	float x[60];
	struct sink want = { 0 };
	struct weld_error err = { 0 };

	(void)state;
	for (int k = 0; k < 60; k++)
		x[k] = (float)((k * 37) % 23) - 11.5f + (float)k / 64;
	for (size_t s = 0, at = 0; s < 2; s++)
		for (size_t r = 0; r < 5; r += 2) {
			size_t rows = r + 2 <= 5 ? 2 : 1;

			weld_fp8_encode_band(x + at, rows, 6, 4, want.codes + at, want.scales + want.ns);
			at += rows * 6;
			want.ns += 2;
		}
	for (size_t piece = 1; piece <= 60; piece++) {
		struct weld_fp8_stream st = { .g = { .slices = 2, .rows = 5, .cols = 6,
						     .brows = 2, .bcols = 4 } };
		struct sink got = { 0 };

		for (size_t at = 0; at < 60; at += piece)
			assert_int_equal(weld_fp8_stream_feed(&st, x + at, at + piece <= 60 ? piece : 60 - at,
							      gather, &got, "t", &err), 0);
		weld_fp8_stream_free(&st);
		assert_int_equal(got.calls, 6);
		assert_int_equal(got.nc, 60);
		assert_int_equal(got.ns, 12);
		assert_memory_equal(got.codes, want.codes, 60);
		assert_memory_equal(got.scales, want.scales, 12 * sizeof(float));
	}
}

static void test_stream_refuses_nonfinite(void **state)
{
	struct weld_fp8_stream st = { .g = { .slices = 1, .rows = 2, .cols = 2, .brows = 2, .bcols = 2 } };
	const float x[4] = { 1, 2, INFINITY, 4 };
	struct weld_error err = { 0 };
	struct sink got = { 0 };

	(void)state;
	assert_int_equal(weld_fp8_stream_feed(&st, x, 4, gather, &got, "tensor 'w'", &err), -1);
	assert_string_equal(err.msg, "tensor 'w': value 2 is infinite: FP8 cannot hold it");
	weld_fp8_stream_free(&st);
}

/* ------------------------------------------------------------ models */

/* A model folder: config.json (NULL: none) and one safetensors file of
 * weight "w" F8_E4M3 [3, 5] with codes 0x38 + k (1.0 and up), and its
 * scale tensor (header text given) after it. */
static char *write_model(const char *dir, const char *config, const char *scale_hdr,
			 const void *scale, size_t scale_len)
{
	unsigned char data[15 + 64];
	char hdr[512];

	for (int k = 0; k < 15; k++)
		data[k] = (uint8_t)(0x38 + k);
	if (scale_len)
		memcpy(data + 15, scale, scale_len);
	snprintf(hdr, sizeof(hdr),
		 "{\"w\":{\"dtype\":\"F8_E4M3\",\"shape\":[3,5],\"data_offsets\":[0,15]}%s}",
		 scale_hdr);
	if (config) {
		free(fixture_write(dir, "config.json", config, strlen(config)));
	} else {
		char *p = fixture_path(dir, "config.json");

		unlink(p);
		free(p);
	}
	return fixture_safetensors(dir, "model.safetensors", hdr, data, 15 + scale_len);
}

static const char *block_config =
	"{\"quantization_config\":{\"quant_method\":\"fp8\",\"weight_block_size\":[2,4]}}";

static void test_model_block_scales(void **state)
{
	const float s[4] = { 2, 3, 5, 7 };  /* grid [2, 2] */
	struct weld_error err = { 0 };
	const struct weld_tensor_info *t;
	weld_model *m;
	float out[15];

	free(write_model(*state, block_config,
			 ",\"w_scale_inv\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[15,31]}",
			 s, sizeof(s)));
	assert_int_equal(weld_model_open(&m, *state, &err), 0);
	assert_int_equal(weld_model_count(m), 1);       /* the scale is not listed */
	t = weld_model_tensor(m, 0);
	assert_int_equal(t->scaled, WELD_FP8_BLOCK);
	assert_int_equal(t->dtype, WELD_F32);
	assert_int_equal(t->scale_block[0], 2);
	assert_int_equal(t->scale_block[1], 4);
	assert_string_equal(t->scale_name, "w_scale_inv");
	assert_string_equal(weld_tensor_type_name(t), "F8_E4M3");
	assert_int_equal(weld_tensor_stored_dtype(t), WELD_F8_E4M3);
	for (uint64_t first = 0; first < 15; first++)
		for (size_t n = 1; first + n <= 15; n++) {
			assert_int_equal(weld_model_read_f32(m, 0, first, n, out, NULL, &err), 0);
			for (size_t k = 0; k < n; k++) {
				uint64_t j = first + k, r = j / 5, c = j % 5;

				assert_true(out[k] == e4m3((uint8_t)(0x38 + j)) * s[r / 2 * 2 + c / 4]);
			}
		}
	weld_model_close(m);
}

/* BF16 scales, and the default block of 128 without a config */
static void test_model_bf16_scale_no_config(void **state)
{
	const uint16_t s = 0x4040;      /* 3.0 */
	struct weld_error err = { 0 };
	weld_model *m;
	float out[15];

	free(write_model(*state, NULL,
			 ",\"w_scale_inv\":{\"dtype\":\"BF16\",\"shape\":[1,1],\"data_offsets\":[15,17]}",
			 &s, sizeof(s)));
	assert_int_equal(weld_model_open(&m, *state, &err), 0);
	assert_int_equal(weld_model_tensor(m, 0)->scale_block[0], 128);
	assert_int_equal(weld_model_read_f32(m, 0, 0, 15, out, NULL, &err), 0);
	for (int k = 0; k < 15; k++)
		assert_true(out[k] == e4m3((uint8_t)(0x38 + k)) * 3.0f);
	weld_model_close(m);
}

/* compressed-tensors: one scale a row */
static void test_model_channel_scales(void **state)
{
	const float s[3] = { 2, 0.5f, 4 };
	struct weld_error err = { 0 };
	weld_model *m;
	float out[15];

	free(write_model(*state,
			 "{\"quantization_config\":{\"quant_method\":\"compressed-tensors\","
			 "\"format\":\"float-quantized\"}}",
			 ",\"w_scale\":{\"dtype\":\"F32\",\"shape\":[3,1],\"data_offsets\":[15,27]}",
			 s, sizeof(s)));
	assert_int_equal(weld_model_open(&m, *state, &err), 0);
	assert_int_equal(weld_model_tensor(m, 0)->scaled, WELD_FP8_CHANNEL);
	assert_int_equal(weld_model_read_f32(m, 0, 0, 15, out, NULL, &err), 0);
	for (int k = 0; k < 15; k++)
		assert_true(out[k] == e4m3((uint8_t)(0x38 + k)) * s[k / 5]);
	weld_model_close(m);
}

/* Opening fails (or, for scale values, reading does) with text in the
 * message. */
static void refused(const char *dir, bool at_read, const char *text)
{
	struct weld_error err = { 0 };
	weld_model *m = NULL;
	float out[15];

	if (!at_read) {
		assert_int_equal(weld_model_open(&m, dir, &err), -1);
	} else {
		assert_int_equal(weld_model_open(&m, dir, &err), 0);
		assert_int_equal(weld_model_read_f32(m, 0, 0, 15, out, NULL, &err), -1);
		weld_model_close(m);
	}
	if (!strstr(err.msg, text))
		fail_msg("message '%s' lacks '%s'", err.msg, text);
}

static void test_hostile_scales(void **state)
{
	const float s4[4] = { 1, 1, INFINITY, 1 };
	const float s6[6] = { 1, 1, 1, 1, 1, 1 };
	const float s1 = NAN;
	const int8_t i8[4] = { 1, 1, 1, 1 };

	free(write_model(*state, block_config,
			 ",\"w_scale_inv\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[15,39]}",
			 s6, sizeof(s6)));
	refused(*state, false, "tensor 'w_scale_inv': shape: [2, 3], but blocks of [2, 4]");
	free(write_model(*state, block_config,
			 ",\"w_scale_inv\":{\"dtype\":\"I8\",\"shape\":[2,2],\"data_offsets\":[15,19]}",
			 i8, sizeof(i8)));
	refused(*state, false, "tensor 'w_scale_inv': dtype: I8");
	free(write_model(*state, block_config, "", NULL, 0));
	refused(*state, false, "tensor 'w': F8_E4M3 weight without its scale tensor 'w_scale_inv'");
	free(write_model(*state, block_config,
			 ",\"w_scale_inv\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[15,31]}",
			 s4, sizeof(s4)));
	refused(*state, true, "tensor 'w_scale_inv': value[1][0] is infinite");
	free(write_model(*state, NULL,
			 ",\"w_scale\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[15,19]}",
			 &s1, sizeof(s1)));
	refused(*state, true, "tensor 'w_scale': value[0] is NaN");
	free(write_model(*state,
			 "{\"quantization_config\":{\"quant_method\":\"fp8\",\"weight_block_size\":[0,4]}}",
			 ",\"w_scale_inv\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[15,31]}",
			 s4, sizeof(s4)));
	refused(*state, false, "quantization_config.weight_block_size: must be two positive integers");
	free(write_model(*state, NULL,
			 ",\"v.weight_scale_inv\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[15,19]}",
			 &s1, sizeof(s1)));
	refused(*state, false, "tensor 'v.weight_scale_inv': a scale without its F8_E4M3 weight 'v.weight'");
}

/* Plain F8_E4M3 without scales or a quantisation config stays what it was. */
static void test_plain_fp8_unchanged(void **state)
{
	struct weld_error err = { 0 };
	weld_model *m;

	free(write_model(*state, "{}", "", NULL, 0));
	assert_int_equal(weld_model_open(&m, *state, &err), 0);
	assert_int_equal(weld_model_tensor(m, 0)->dtype, WELD_F8_E4M3);
	assert_int_equal(weld_model_tensor(m, 0)->scaled, 0);
	weld_model_close(m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_encode_rounding),
		cmocka_unit_test(test_encode_every_code),
		cmocka_unit_test(test_encode_band),
		cmocka_unit_test(test_encode_band_refuses_nonfinite),
		cmocka_unit_test(test_apply_scales),
		cmocka_unit_test(test_stream_bands),
		cmocka_unit_test(test_stream_refuses_nonfinite),
		cmocka_unit_test_setup_teardown(test_model_block_scales, fixture_setup_dir,
						fixture_teardown_dir),
		cmocka_unit_test_setup_teardown(test_model_bf16_scale_no_config, fixture_setup_dir,
						fixture_teardown_dir),
		cmocka_unit_test_setup_teardown(test_model_channel_scales, fixture_setup_dir,
						fixture_teardown_dir),
		cmocka_unit_test_setup_teardown(test_hostile_scales, fixture_setup_dir,
						fixture_teardown_dir),
		cmocka_unit_test_setup_teardown(test_plain_fp8_unchanged, fixture_setup_dir,
						fixture_teardown_dir),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
