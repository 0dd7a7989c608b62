/*
 * dtype.c - safetensors dtypes and the conversions between them and float32.
 *
 * Every merge computes in float32 (DESIGN §3), so each element read is
 * decoded here and each element written is encoded here. The conversions
 * work on bit patterns with integer arithmetic (plus exact small-integer to
 * float conversions): their results do not depend on the rounding mode, on
 * flush-to-zero or on -ffast-math, and decoding then re-encoding a value
 * gives back its bits (a NaN stays a NaN). The bulk functions are the
 * hot path of every merge; most of their kernels are branch-free so that
 * the compiler can vectorise them. Data in files is little-endian.
 */
#include "base.h"
#include "target_clones.h"

#include <string.h>
#include <strings.h>

static const struct {
	const char *name;
	const char *torch;   /* PyTorch's name */
	size_t size;
	bool is_float;
	int rank;
} dtypes[WELD_DTYPE_COUNT] = {
	/*
	 * rank is the position of the dtype in the reference implementation's
	 * enum declaration; its writer sorts by that position, descending
	 * (formats.md §1.5). The gaps belong to dtypes weld does not support.
	 */
	[WELD_F64]     = { "F64",     "float64",       8, true,  19 },
	[WELD_F32]     = { "F32",     "float32",       4, true,  17 },
	[WELD_F16]     = { "F16",     "float16",       2, true,  13 },
	[WELD_BF16]    = { "BF16",    "bfloat16",      2, true,  14 },
	[WELD_F8_E4M3] = { "F8_E4M3", "float8_e4m3fn", 1, true,   7 },
	[WELD_F8_E5M2] = { "F8_E5M2", "float8_e5m2",   1, true,   6 },
	[WELD_I64]     = { "I64",     "int64",         8, false, 20 },
	[WELD_I32]     = { "I32",     "int32",         4, false, 15 },
	[WELD_I16]     = { "I16",     "int16",         2, false, 11 },
	[WELD_I8]      = { "I8",      "int8",          1, false,  5 },
	[WELD_U64]     = { "U64",     "uint64",        8, false, 21 },
	[WELD_U32]     = { "U32",     "uint32",        4, false, 16 },
	[WELD_U16]     = { "U16",     "uint16",        2, false, 12 },
	[WELD_U8]      = { "U8",      "uint8",         1, false,  4 },
	[WELD_BOOL]    = { "BOOL",    "bool",          1, false,  0 },
};

static bool valid(enum weld_dtype t)
{
	return (unsigned)t < WELD_DTYPE_COUNT;
}

const char *weld_dtype_name(enum weld_dtype t)
{
	return valid(t) ? dtypes[t].name : "?";
}

int weld_dtype_parse(const char *s, enum weld_dtype *out)
{
	if (!s)
		return -1;
	for (int i = 0; i < WELD_DTYPE_COUNT; i++) {
		if (strcmp(s, dtypes[i].name) == 0) {
			*out = (enum weld_dtype)i;
			return 0;
		}
	}
	return -1;
}

const char *weld_dtype_torch_name(enum weld_dtype t)
{
	return valid(t) ? dtypes[t].torch : NULL;
}

int weld_dtype_parse_output(const char *s, bool allow_auto, int *out)
{
	static const struct { const char *name; int t; } names[] = {
		{ "bfloat16", WELD_BF16 }, { "bf16", WELD_BF16 },
		{ "float16", WELD_F16 }, { "f16", WELD_F16 }, { "fp16", WELD_F16 }, { "half", WELD_F16 },
		{ "float32", WELD_F32 }, { "f32", WELD_F32 }, { "fp32", WELD_F32 }, { "float", WELD_F32 },
		{ "float64", WELD_F64 }, { "f64", WELD_F64 }, { "double", WELD_F64 },
	};

	if (allow_auto && strcasecmp(s, "auto") == 0) {
		*out = -1;
		return 0;
	}
	if (strncmp(s, "torch.", 6) == 0)
		s += 6;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strcasecmp(s, names[i].name) == 0) {
			*out = names[i].t;
			return 0;
		}
	return -1;
}

size_t weld_dtype_size(enum weld_dtype t)
{
	return valid(t) ? dtypes[t].size : 0;
}

bool weld_dtype_is_float(enum weld_dtype t)
{
	return valid(t) && dtypes[t].is_float;
}

enum weld_dtype weld_dtype_merged(enum weld_dtype t)
{
	if (t == WELD_F64 || t == WELD_F32 || t == WELD_F16 || t == WELD_BF16)
		return t;
	return WELD_BF16;
}

int weld_dtype_write_rank(enum weld_dtype t)
{
	return valid(t) ? dtypes[t].rank : -1;
}

/* ---------------------------------------------------------------- bits */

static inline float from_bits(uint32_t u)
{
	float f;

	memcpy(&f, &u, sizeof(f));
	return f;
}

static inline uint32_t to_bits(float f)
{
	uint32_t u;

	memcpy(&u, &f, sizeof(u));
	return u;
}

/* File bytes are little-endian; on such hosts these are no-ops. */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#define LE16(x) __builtin_bswap16(x)
#define LE32(x) __builtin_bswap32(x)
#define LE64(x) __builtin_bswap64(x)
#else
#define LE16(x) (x)
#define LE32(x) (x)
#define LE64(x) (x)
#endif

/* ---------------------------------------------------------------- element kernels */

/*
 * The kernels below choose between candidate results with masks rather
 * than branches: every candidate is cheap, and straight-line code is what
 * lets the bulk loops run several elements per instruction.
 */
static inline uint32_t mask_if(bool c)
{
	return 0u - (uint32_t)c;
}

static inline uint32_t bits_f16_to_f32(uint32_t h)
{
	const uint32_t sign = (h & 0x8000u) << 16;
	const uint32_t em = h & 0x7fffu;
	/* rebias the exponent from 15 to 127; infinity and NaN keep 255 */
	const uint32_t normal = ((em << 13) + ((127u - 15u) << 23)) |
				(mask_if(em >= 0x7c00u) & 0x7f800000u);
	/*
	 * A subnormal is em * 2^-24. Converting the small integer em to float
	 * is exact, and lowering the exponent by 24 scales it exactly because
	 * the result, at least 2^-24, is a normal float32.
	 */
	const uint32_t sub = to_bits((float)(int32_t)em) - (24u << 23);

	return sign | (normal & mask_if(em >= 0x0400u)) |
	       (sub & mask_if(em - 1u < 0x03ffu));
}

static inline uint32_t bits_e4m3_to_f32(uint32_t b)
{
	const uint32_t sign = (b & 0x80u) << 24;
	const uint32_t em = b & 0x7fu;
	/* rebias the exponent from 7 to 127 */
	const uint32_t normal = (em << 20) + ((127u - 7u) << 23);
	/* subnormals are em * 2^-9, scaled as in bits_f16_to_f32() */
	const uint32_t sub = to_bits((float)(int32_t)em) - (9u << 23);
	const uint32_t u = (normal & mask_if(em >= 0x08u)) | (sub & mask_if(em - 1u < 0x07u));

	/* S.1111.111 is the only NaN: E4M3FN has no infinity */
	return sign | (u & mask_if(em != 0x7fu)) | (0x7fc00000u & mask_if(em == 0x7fu));
}

static inline uint32_t bits_e5m2_to_f32(uint32_t b)
{
	/* E5M2 is the top byte of an IEEE binary16 */
	return bits_f16_to_f32(b << 8);
}

static inline uint16_t bits_f32_to_bf16(uint32_t u)
{
	/*
	 * A NaN must not be rounded like a number: a signalling NaN with only
	 * low payload bits would become infinity. Every NaN is written as the
	 * one canonical NaN (see WELD_NAN_F32). Rounding carries into the
	 * exponent where it should, up to infinity for values at or past the
	 * top tie.
	 */
	const uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;

	return (uint16_t)((u & 0x7fffffffu) > 0x7f800000u ? WELD_NAN_F32 >> 16 : rounded);
}

/*
 * Unlike the kernels above, this one branches: the subnormal case needs a
 * shift by a per-element amount, which x86 before AVX2 cannot vectorise,
 * and as straight-line masked code it ran five times slower than with
 * branches, which merged weights (nearly all in the normal range) predict
 * well.
 */
static inline uint16_t bits_f32_to_f16(uint32_t u)
{
	const uint32_t sign = (u >> 16) & 0x8000u;
	const uint32_t a = u & 0x7fffffffu;
	uint32_t e, shift, m, q, rem, half;

	/* 2^-14 <= |x| < 65520: rebias from 127 to 15, round away 13 bits */
	if (a >= 0x38800000u && a < 0x477ff000u) {
		const uint32_t r = a - ((127u - 15u) << 23);

		return (uint16_t)(sign | ((r + 0x0fffu + ((r >> 13) & 1u)) >> 13));
	}
	if (a > 0x7f800000u)
		return 0x7e00u;                         /* the canonical NaN */
	/* 65520 is the tie between 65504 and 2^16: it rounds up to infinity */
	if (a >= 0x477ff000u)
		return (uint16_t)(sign | 0x7c00u);
	/* 2^-25 itself is a tie that goes to the even 0 */
	if (a <= 0x33000000u)
		return (uint16_t)sign;
	/*
	 * The result is a multiple of 2^-24: the significand with its hidden
	 * bit, shifted right by 126 - exponent (14 to 24), rounded to even.
	 */
	e = a >> 23;
	shift = 126u - e;
	m = (a & 0x7fffffu) | 0x800000u;
	q = m >> shift;
	rem = m & ((1u << shift) - 1u);
	half = 1u << (shift - 1u);
	q += (rem > half) | ((rem == half) & q & 1u);
	return (uint16_t)(sign | q);
}

static inline uint32_t bits_f64_to_f32(uint64_t d)
{
	const uint32_t sign = (uint32_t)(d >> 32) & 0x80000000u;
	const uint64_t a = d & 0x7fffffffffffffffull;
	const uint32_t e = (uint32_t)(a >> 52);
	uint64_t m, r, rem, half;
	uint32_t shift;

	if (a > 0x7ff0000000000000ull)
		return sign | 0x7fc00000u | (uint32_t)((a >> 29) & 0x3fffffu);
	if (e > 896u) {
		/* rebias from 1023 to 127, then round away 29 mantissa bits */
		r = a - (896ull << 52);
		r = (r + 0xfffffffull + ((r >> 29) & 1u)) >> 29;
		/* a carry into exponent 255 is exactly infinity */
		return sign | (r >= 0x7f800000ull ? 0x7f800000u : (uint32_t)r);
	}
	/*
	 * The result is below 2^-126, a multiple of 2^-149: the significand
	 * shifted right by 926 - exponent. Below 2^-150 (exponent 873) that is
	 * less than half a unit, so zero.
	 */
	if (e < 873u)
		return sign;
	m = (a & 0xfffffffffffffull) | (1ull << 52);
	shift = 926u - e;
	r = m >> shift;
	rem = m & ((1ull << shift) - 1u);
	half = 1ull << (shift - 1u);
	r += (rem > half) || (rem == half && (r & 1u));
	return sign | (uint32_t)r;
}

static inline uint64_t bits_f32_to_f64(uint32_t u)
{
	const uint64_t sign = (uint64_t)(u & 0x80000000u) << 32;
	const uint32_t a = u & 0x7fffffffu;
	double x;
	uint64_t b;

	if (a > 0x7f800000u)
		return 0x7ff8000000000000ull;           /* the canonical NaN */
	if (a == 0x7f800000u)
		return sign | 0x7ff0000000000000ull;
	if (a >= 0x00800000u)
		return sign | (((uint64_t)a << 29) + ((uint64_t)(1023 - 127) << 52));
	if (a == 0)
		return sign;
	/* a subnormal is a * 2^-149; as in bits_f16_to_f32(), exactly */
	x = (double)(int32_t)a;
	memcpy(&b, &x, sizeof(b));
	return sign | (b - (149ull << 52));
}

/* ---------------------------------------------------------------- public scalar API */

float weld_bf16_to_f32(uint16_t h)
{
	return from_bits((uint32_t)h << 16);
}

uint16_t weld_f32_to_bf16(float f)
{
	return bits_f32_to_bf16(to_bits(f));
}

float weld_f16_to_f32(uint16_t h)
{
	return from_bits(bits_f16_to_f32(h));
}

uint16_t weld_f32_to_f16(float f)
{
	return bits_f32_to_f16(to_bits(f));
}

float weld_e4m3_to_f32(uint8_t b)
{
	return from_bits(bits_e4m3_to_f32(b));
}

float weld_e5m2_to_f32(uint8_t b)
{
	return from_bits(bits_e5m2_to_f32(b));
}

float weld_f64_to_f32(double d)
{
	uint64_t u;

	memcpy(&u, &d, sizeof(u));
	return from_bits(bits_f64_to_f32(u));
}

/* ---------------------------------------------------------------- bulk */

/*
 * Buffers may have any alignment, so elements travel through memcpy. Each
 * block is read whole before it is written, which keeps in-place use
 * correct: decoding from a narrower source placed at the tail of the float
 * buffer, or encoding into the start of the buffer being encoded. Blocks of
 * a fixed count are what lets GCC vectorise at -O2, where it refuses loops
 * that would need a scalar epilogue or an aliasing check.
 */
#define BLOCK 16

static inline uint32_t dec_bf16(uint16_t h)
{
	return (uint32_t)LE16(h) << 16;
}

static inline uint32_t dec_f16(uint16_t h)
{
	return bits_f16_to_f32(LE16(h));
}

static inline uint32_t dec_f64(uint64_t d)
{
	return bits_f64_to_f32(LE64(d));
}

static inline uint32_t dec_e4m3(uint8_t b)
{
	return bits_e4m3_to_f32(b);
}

static inline uint32_t dec_e5m2(uint8_t b)
{
	return bits_e5m2_to_f32(b);
}

static inline uint32_t dec_f32(uint32_t u)
{
	return LE32(u);
}

static inline uint16_t enc_bf16(uint32_t u)
{
	return LE16(bits_f32_to_bf16(u));
}

static inline uint16_t enc_f16(uint32_t u)
{
	return LE16(bits_f32_to_f16(u));
}

static inline uint64_t enc_f64(uint32_t u)
{
	return LE64(bits_f32_to_f64(u));
}

static inline uint32_t enc_f32(uint32_t u)
{
	return LE32((u & 0x7fffffffu) > 0x7f800000u ? WELD_NAN_F32 : u);
}

/* decode_NAME(src bytes, dst floats, n) from an element kernel dec_NAME */
#define DEFINE_DECODE(name, in_t)                                             \
	static void decode_##name(const unsigned char *s, float *dst, size_t n) \
	{                                                                     \
		size_t i = 0;                                                 \
		for (; i + BLOCK <= n; i += BLOCK) {                          \
			in_t in[BLOCK];                                       \
			uint32_t out[BLOCK];                                  \
			memcpy(in, s + i * sizeof(in_t), sizeof(in));         \
			for (size_t k = 0; k < BLOCK; k++)                    \
				out[k] = dec_##name(in[k]);                   \
			memcpy(dst + i, out, sizeof(out));                    \
		}                                                             \
		for (; i < n; i++) {                                          \
			in_t x;                                               \
			uint32_t u;                                           \
			memcpy(&x, s + i * sizeof(in_t), sizeof(x));          \
			u = dec_##name(x);                                    \
			memcpy(dst + i, &u, sizeof(u));                       \
		}                                                             \
	}

/* encode_NAME(src floats, dst bytes, n) from an element kernel enc_NAME */
#define DEFINE_ENCODE(name, out_t)                                            \
	static void encode_##name(const float *src, unsigned char *d, size_t n) \
	{                                                                     \
		size_t i = 0;                                                 \
		for (; i + BLOCK <= n; i += BLOCK) {                          \
			uint32_t in[BLOCK];                                   \
			out_t out[BLOCK];                                     \
			memcpy(in, src + i, sizeof(in));                      \
			for (size_t k = 0; k < BLOCK; k++)                    \
				out[k] = enc_##name(in[k]);                   \
			memcpy(d + i * sizeof(out_t), out, sizeof(out));      \
		}                                                             \
		for (; i < n; i++) {                                          \
			uint32_t u;                                           \
			out_t x;                                              \
			memcpy(&u, src + i, sizeof(u));                       \
			x = enc_##name(u);                                    \
			memcpy(d + i * sizeof(out_t), &x, sizeof(x));         \
		}                                                             \
	}

DEFINE_DECODE(f32, uint32_t)
DEFINE_DECODE(f16, uint16_t)
DEFINE_DECODE(f64, uint64_t)
DEFINE_DECODE(e4m3, uint8_t)
DEFINE_DECODE(e5m2, uint8_t)

DEFINE_ENCODE(f32, uint32_t)
DEFINE_ENCODE(f64, uint64_t)

/* bf16, the usual dtype of a merge: plain loops in hot clones, which the
 * wider instruction sets vectorise better than the blocks above. */
WELD_HOT static void decode_bf16(const unsigned char *s, float *dst, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		uint16_t x;
		uint32_t u;

		memcpy(&x, s + 2 * i, sizeof(x));
		u = dec_bf16(x);
		memcpy(dst + i, &u, sizeof(u));
	}
}

WELD_HOT static void encode_bf16(const float *src, unsigned char *d, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		uint32_t u;
		uint16_t x;

		memcpy(&u, src + i, sizeof(u));
		x = enc_bf16(u);
		memcpy(d + 2 * i, &x, sizeof(x));
	}
}

/* Plain loop: blocks only slow down a kernel that does not vectorise. */
static void encode_f16(const float *src, unsigned char *d, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		uint32_t u;
		uint16_t h;

		memcpy(&u, src + i, sizeof(u));
		h = enc_f16(u);
		memcpy(d + 2 * i, &h, sizeof(h));
	}
}

void weld_decode_f32(enum weld_dtype t, const void *src, float *dst, size_t n)
{
	switch (t) {
	case WELD_F32:     decode_f32(src, dst, n); break;
	case WELD_BF16:    decode_bf16(src, dst, n); break;
	case WELD_F16:     decode_f16(src, dst, n); break;
	case WELD_F64:     decode_f64(src, dst, n); break;
	case WELD_F8_E4M3: decode_e4m3(src, dst, n); break;
	case WELD_F8_E5M2: decode_e5m2(src, dst, n); break;
	default:
		/* integer dtypes are copied, never decoded: leave dst alone */
		break;
	}
}

int weld_encode_f32(enum weld_dtype t, const float *src, void *dst, size_t n)
{
	switch (t) {
	case WELD_F32:  encode_f32(src, dst, n); return 0;
	case WELD_BF16: encode_bf16(src, dst, n); return 0;
	case WELD_F16:  encode_f16(src, dst, n); return 0;
	case WELD_F64:  encode_f64(src, dst, n); return 0;
	default:        return -1;
	}
}
