/*
 * quant.c - ggml's block formats: decoding to float32 and the Q8_0 / Q4_0
 * encoders. Layouts (bytes in storage order, h = fp16, QK_K = 256):
 *
 *   Q4_0  32 el, 18 B: d:h qs[16]          y = (nib - 8) * d
 *   Q4_1  32 el, 20 B: d:h m:h qs[16]      y = nib * d + m
 *   Q5_0  32 el, 22 B: d:h qh[4] qs[16]    y = ((nib | bit << 4) - 16) * d
 *   Q5_1  32 el, 24 B: d:h m:h qh[4] qs[16] y = (nib | bit << 4) * d + m
 *   Q8_0  32 el, 34 B: d:h int8 qs[32]     y = q * d
 *   Q2_K 256 el, 84 B: scales[16] qs[64] d:h dmin:h
 *   Q3_K 256 el, 110 B: hmask[32] qs[64] scales[12] d:h
 *   Q4_K 256 el, 144 B: d:h dmin:h scales[12] qs[128]
 *   Q5_K 256 el, 176 B: d:h dmin:h scales[12] qh[32] qs[128]
 *   Q6_K 256 el, 210 B: ql[128] qh[64] int8 scales[16] d:h
 *
 * In a 32-element block, element j < 16 is the low nibble of qs[j] and
 * element j + 16 its high nibble. Each kernel follows ggml's reference
 * dequantiser operation for operation (the products are formed in the
 * same order), so that the floats agree bit for bit.
 */
#include "quant.h"

#include <ctype.h>
#include <math.h>
#include <string.h>
#include <strings.h>

static float h16(const unsigned char *p)
{
	return weld_f16_to_f32((uint16_t)(p[0] | p[1] << 8));
}

static void put_h16(unsigned char *p, float f)
{
	uint16_t h = weld_f32_to_f16(f);

	p[0] = (unsigned char)h;
	p[1] = (unsigned char)(h >> 8);
}

/* ---------------------------------------------------------------- 32-element blocks */

static void dec_q4_0(const unsigned char *b, float *y, size_t nb)
{
	for (size_t i = 0; i < nb; i++, b += 18, y += 32) {
		const float d = h16(b);

		for (int j = 0; j < 16; j++) {
			y[j] = (float)((b[2 + j] & 15) - 8) * d;
			y[j + 16] = (float)((b[2 + j] >> 4) - 8) * d;
		}
	}
}

static void dec_q4_1(const unsigned char *b, float *y, size_t nb)
{
	for (size_t i = 0; i < nb; i++, b += 20, y += 32) {
		const float d = h16(b), m = h16(b + 2);

		for (int j = 0; j < 16; j++) {
			y[j] = (float)(b[4 + j] & 15) * d + m;
			y[j + 16] = (float)(b[4 + j] >> 4) * d + m;
		}
	}
}

static uint32_t le32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void dec_q5_0(const unsigned char *b, float *y, size_t nb)
{
	for (size_t i = 0; i < nb; i++, b += 22, y += 32) {
		const float d = h16(b);
		const uint32_t qh = le32(b + 2);

		for (int j = 0; j < 16; j++) {
			int x0 = (int)((b[6 + j] & 15) | ((qh >> j) & 1) << 4) - 16;
			int x1 = (int)((b[6 + j] >> 4) | ((qh >> (j + 16)) & 1) << 4) - 16;

			y[j] = (float)x0 * d;
			y[j + 16] = (float)x1 * d;
		}
	}
}

static void dec_q5_1(const unsigned char *b, float *y, size_t nb)
{
	for (size_t i = 0; i < nb; i++, b += 24, y += 32) {
		const float d = h16(b), m = h16(b + 2);
		const uint32_t qh = le32(b + 4);

		for (int j = 0; j < 16; j++) {
			unsigned x0 = (b[8 + j] & 15) | ((qh >> j) & 1) << 4;
			unsigned x1 = (b[8 + j] >> 4) | ((qh >> (j + 16)) & 1) << 4;

			y[j] = (float)x0 * d + m;
			y[j + 16] = (float)x1 * d + m;
		}
	}
}

static void dec_q8_0(const unsigned char *b, float *y, size_t nb)
{
	for (size_t i = 0; i < nb; i++, b += 34, y += 32) {
		const float d = h16(b);

		for (int j = 0; j < 32; j++)
			y[j] = (float)(int8_t)b[2 + j] * d;
	}
}

/* ---------------------------------------------------------------- K-quants */

static void dec_q2_k(const unsigned char *b, float *y, size_t nb)
{
	for (size_t i = 0; i < nb; i++, b += 84) {
		const unsigned char *sc = b, *q = b + 16;
		const float d = h16(b + 80), min = h16(b + 82);

		for (int h = 0; h < 2; h++, q += 32)
			for (int k = 0; k < 4; k++)
				for (int half = 0; half < 2; half++) {
					const unsigned s = sc[8 * h + 2 * k + half];
					const float dl = d * (float)(s & 15), ml = min * (float)(s >> 4);

					for (int l = 16 * half; l < 16 * half + 16; l++)
						*y++ = dl * (float)((q[l] >> (2 * k)) & 3) - ml;
				}
	}
}

/* Q3_K's sixteen 6-bit scales, minus 32. */
static void q3_k_scales(const unsigned char *s, int sc[16])
{
	for (int j = 0; j < 16; j++) {
		int lo = j < 8 ? s[j] & 15 : s[j - 8] >> 4;
		int hi = (s[8 + j % 4] >> (2 * (j / 4))) & 3;

		sc[j] = (lo | hi << 4) - 32;
	}
}

static void dec_q3_k(const unsigned char *b, float *y, size_t nb)
{
	for (size_t i = 0; i < nb; i++, b += 110) {
		const unsigned char *hm = b, *q = b + 32;
		const float d = h16(b + 108);
		int sc[16];

		q3_k_scales(b + 96, sc);
		for (int h = 0; h < 2; h++, q += 32)
			for (int k = 0; k < 4; k++) {
				const unsigned bit = 1u << (4 * h + k);

				for (int half = 0; half < 2; half++) {
					const float dl = d * (float)sc[8 * h + 2 * k + half];

					for (int l = 16 * half; l < 16 * half + 16; l++) {
						int v = (q[l] >> (2 * k)) & 3;

						*y++ = dl * (float)(v - (hm[l] & bit ? 0 : 4));
					}
				}
			}
	}
}

/* ggml's get_scale_min_k4: the 6-bit scale and min j (0..7) of Q4_K/Q5_K. */
static void scale_min_k4(int j, const unsigned char *s, unsigned *sc, unsigned *mn)
{
	if (j < 4) {
		*sc = s[j] & 63;
		*mn = s[j + 4] & 63;
	} else {
		*sc = (s[j + 4] & 15) | ((unsigned)(s[j - 4] >> 6) << 4);
		*mn = (unsigned)(s[j + 4] >> 4) | ((unsigned)(s[j] >> 6) << 4);
	}
}

/* Q4_K (qh NULL) and Q5_K: 4 groups of 64, each a low-nibble 32 then a
 * high-nibble 32 with its own scale and min. */
static void dec_k4(const unsigned char *sc12, const unsigned char *qh, const unsigned char *q,
		   float d, float min, float *y)
{
	for (int c = 0; c < 4; c++, q += 32)
		for (int u = 0; u < 2; u++) {
			unsigned s, m;

			scale_min_k4(2 * c + u, sc12, &s, &m);
			const float d1 = d * (float)s, m1 = min * (float)m;

			for (int l = 0; l < 32; l++) {
				unsigned v = u ? q[l] >> 4 : q[l] & 15;

				if (qh && (qh[l] >> (2 * c + u) & 1))
					v += 16;
				*y++ = d1 * (float)v - m1;
			}
		}
}

static void dec_q4_k(const unsigned char *b, float *y, size_t nb)
{
	for (size_t i = 0; i < nb; i++, b += 144, y += 256)
		dec_k4(b + 4, NULL, b + 16, h16(b), h16(b + 2), y);
}

static void dec_q5_k(const unsigned char *b, float *y, size_t nb)
{
	for (size_t i = 0; i < nb; i++, b += 176, y += 256)
		dec_k4(b + 4, b + 16, b + 48, h16(b), h16(b + 2), y);
}

static void dec_q6_k(const unsigned char *b, float *y, size_t nb)
{
	for (size_t i = 0; i < nb; i++, b += 210) {
		const unsigned char *ql = b, *qh = b + 128;
		const int8_t *sc = (const int8_t *)(b + 192);
		const float d = h16(b + 208);

		for (int h = 0; h < 2; h++, y += 128, ql += 64, qh += 32, sc += 8)
			for (int l = 0; l < 32; l++) {
				const int is = l / 16;
				const int q1 = ((ql[l] & 15) | ((qh[l] >> 0) & 3) << 4) - 32;
				const int q2 = ((ql[l + 32] & 15) | ((qh[l] >> 2) & 3) << 4) - 32;
				const int q3 = ((ql[l] >> 4) | ((qh[l] >> 4) & 3) << 4) - 32;
				const int q4 = ((ql[l + 32] >> 4) | ((qh[l] >> 6) & 3) << 4) - 32;

				y[l] = d * (float)sc[is] * (float)q1;
				y[l + 32] = d * (float)sc[is + 2] * (float)q2;
				y[l + 64] = d * (float)sc[is + 4] * (float)q3;
				y[l + 96] = d * (float)sc[is + 6] * (float)q4;
			}
	}
}

/* ---------------------------------------------------------------- plain floats */

static void dec_f32(const unsigned char *b, float *y, size_t n)
{
	weld_decode_f32(WELD_F32, b, y, n);
}

static void dec_f16(const unsigned char *b, float *y, size_t n)
{
	weld_decode_f32(WELD_F16, b, y, n);
}

static void dec_bf16(const unsigned char *b, float *y, size_t n)
{
	weld_decode_f32(WELD_BF16, b, y, n);
}

/* ---------------------------------------------------------------- the table */

static const struct weld_ggml_type_info types[WELD_GGML_TYPE_COUNT] = {
	[0] = { "F32", 1, 4, dec_f32 },
	[1] = { "F16", 1, 2, dec_f16 },
	[2] = { "Q4_0", 32, 18, dec_q4_0 },
	[3] = { "Q4_1", 32, 20, dec_q4_1 },
	[6] = { "Q5_0", 32, 22, dec_q5_0 },
	[7] = { "Q5_1", 32, 24, dec_q5_1 },
	[8] = { "Q8_0", 32, 34, dec_q8_0 },
	[9] = { "Q8_1", 32, 36, NULL },
	[10] = { "Q2_K", 256, 84, dec_q2_k },
	[11] = { "Q3_K", 256, 110, dec_q3_k },
	[12] = { "Q4_K", 256, 144, dec_q4_k },
	[13] = { "Q5_K", 256, 176, dec_q5_k },
	[14] = { "Q6_K", 256, 210, dec_q6_k },
	[15] = { "Q8_K", 256, 292, NULL },
	[16] = { "IQ2_XXS", 256, 66, NULL },
	[17] = { "IQ2_XS", 256, 74, NULL },
	[18] = { "IQ3_XXS", 256, 98, NULL },
	[19] = { "IQ1_S", 256, 50, NULL },
	[20] = { "IQ4_NL", 32, 18, NULL },
	[21] = { "IQ3_S", 256, 110, NULL },
	[22] = { "IQ2_S", 256, 82, NULL },
	[23] = { "IQ4_XS", 256, 136, NULL },
	[24] = { "I8", 1, 1, NULL },
	[25] = { "I16", 1, 2, NULL },
	[26] = { "I32", 1, 4, NULL },
	[27] = { "I64", 1, 8, NULL },
	[28] = { "F64", 1, 8, NULL },
	[29] = { "IQ1_M", 256, 56, NULL },
	[30] = { "BF16", 1, 2, dec_bf16 },
	[34] = { "TQ1_0", 256, 54, NULL },
	[35] = { "TQ2_0", 256, 66, NULL },
	[39] = { "MXFP4", 32, 17, NULL },
	[40] = { "NVFP4", 64, 36, NULL },
	[41] = { "Q1_0", 128, 18, NULL },
	[42] = { "Q2_0", 64, 18, NULL },
};

const struct weld_ggml_type_info *weld_ggml_type(uint32_t type)
{
	return type < WELD_GGML_TYPE_COUNT && types[type].name ? &types[type] : NULL;
}

const char *weld_ggml_type_name(uint32_t type)
{
	const struct weld_ggml_type_info *t = weld_ggml_type(type);

	return t ? t->name : NULL;
}

int weld_ggml_type_parse(const char *s)
{
	for (uint32_t i = 0; i < WELD_GGML_TYPE_COUNT; i++)
		if (types[i].name && strcasecmp(s, types[i].name) == 0)
			return (int)i;
	return -1;
}

/* ---------------------------------------------------------------- encoders */

/*
 * A float's conversion to int8 as an x86 build of ggml does it (truncation;
 * a NaN or a value out of range gives 0x80000000, whose low byte is 0),
 * without the undefined behaviour of a C cast out of range. Finite inputs
 * never leave the range.
 */
static int to_i8(float v)
{
	if (!(v > -129.0f && v < 128.0f))
		return 0;
	return (int8_t)(int)v;
}

/* C's roundf (half away from zero) of v, as an int8 the way to_i8() gives
 * it: the truncation, then a step when the fraction, exact in float for
 * |v| < 2^23, is at least one half. roundf itself is a library call. */
static int round_i8(float v)
{
	int i;
	float fr;

	if (!(v > -129.0f && v < 128.0f))
		return 0;
	i = (int)v;
	fr = v - (float)i;
	i += (fr >= 0.5f) - (fr <= -0.5f);
	return (int8_t)i;
}

void weld_quant_q8_0(const float *x, unsigned char *b, size_t nb)
{
	for (size_t i = 0; i < nb; i++, x += 32, b += 34) {
		float amax = 0.0f, d, id;

		for (int j = 0; j < 32; j++)
			amax = amax > fabsf(x[j]) ? amax : fabsf(x[j]);
		d = amax / 127;
		id = d != 0.0f ? 1.0f / d : 0.0f;
		put_h16(b, d);
		for (int j = 0; j < 32; j++)
			b[2 + j] = (unsigned char)round_i8(x[j] * id);
	}
}

void weld_quant_q4_0(const float *x, unsigned char *b, size_t nb)
{
	for (size_t i = 0; i < nb; i++, x += 32, b += 18) {
		float amax = 0.0f, max = 0.0f, d, id;

		for (int j = 0; j < 32; j++)
			if (amax < fabsf(x[j])) {
				amax = fabsf(x[j]);
				max = x[j];
			}
		d = max / -8;
		id = d != 0.0f ? 1.0f / d : 0.0f;
		put_h16(b, d);
		for (int j = 0; j < 16; j++) {
			/* ggml's expression, contracted to one fused multiply-add
			 * as its builds compile it (and gguf-py emulates it) */
			int q0 = to_i8(fmaf(x[j], id, 8.5f));
			int q1 = to_i8(fmaf(x[j + 16], id, 8.5f));

			q0 = q0 < 15 ? q0 : 15;
			q1 = q1 < 15 ? q1 : 15;
			b[2 + j] = (unsigned char)(q0 | q1 << 4);
		}
	}
}

int weld_ggml_encode(uint32_t type, const float *src, void *dst, size_t n)
{
	switch (type) {
	case WELD_GGML_F32: return weld_encode_f32(WELD_F32, src, dst, n);
	case WELD_GGML_F16: return weld_encode_f32(WELD_F16, src, dst, n);
	case WELD_GGML_BF16: return weld_encode_f32(WELD_BF16, src, dst, n);
	case WELD_GGML_Q8_0: weld_quant_q8_0(src, dst, n / 32); return 0;
	case WELD_GGML_Q4_0: weld_quant_q4_0(src, dst, n / 32); return 0;
	default: return -1;
	}
}
