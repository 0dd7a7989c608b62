/*
 * kernels.c - the per-element formulas of DESIGN section 4.
 *
 * Everything is float32, in source order, with the operations written in
 * the order the formulas give them, and without contraction into fused
 * multiply-adds (-ffp-contract=off), so that the same inputs give the same
 * bits on every machine.
 */
#include "kernels.h"

#include <math.h>
#include <string.h>

WELD_HOT void weld_k_sub(float *v, const float *b, size_t n)
{
	for (size_t j = 0; j < n; j++)
		v[j] -= b[j];
}

static inline float bf16_at(const unsigned char *x, size_t j)
{
	uint16_t h;
	uint32_t u;
	float f;

	memcpy(&h, x + 2 * j, sizeof(h));
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
	h = __builtin_bswap16(h);
#endif
	u = (uint32_t)h << 16;
	memcpy(&f, &u, sizeof(f));
	return f;
}

/* The bits of x[j] and of bf16 x[j]: the exponent all ones is NaN or +-Inf. */
static inline uint32_t f32_bits(const float *x, size_t j)
{
	uint32_t u;

	memcpy(&u, x + j, sizeof(u));
	return u;
}

static inline uint16_t bf16_bits(const unsigned char *x, size_t j)
{
	uint16_t h;

	memcpy(&h, x + 2 * j, sizeof(h));
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
	h = __builtin_bswap16(h);
#endif
	return h;
}

/* Counted in 32-bit lanes over pieces of COUNT_PIECE elements, so that the
 * loops vectorise. */
#define COUNT_PIECE 4096

WELD_HOT size_t weld_k_delta_bf16(const unsigned char *x, const float *b, float *v, size_t n)
{
	size_t c = 0;

	for (size_t i = 0; i < n; i += COUNT_PIECE) {
		size_t m = n - i < COUNT_PIECE ? n - i : COUNT_PIECE;
		const unsigned char *xi = x + 2 * i;
		uint32_t k = 0;

		for (size_t j = 0; j < m; j++) {
			v[i + j] = bf16_at(xi, j) - b[i + j];
			k += (bf16_bits(xi, j) & 0x7f80u) == 0x7f80u;
		}
		c += k;
	}
	return c;
}

WELD_HOT size_t weld_k_count_nonfinite(const float *x, size_t n)
{
	size_t c = 0;

	for (size_t i = 0; i < n; i += COUNT_PIECE) {
		size_t m = n - i < COUNT_PIECE ? n - i : COUNT_PIECE;
		uint32_t k = 0;

		for (size_t j = 0; j < m; j++)
			k += (f32_bits(x + i, j) & 0x7f800000u) == 0x7f800000u;
		c += k;
	}
	return c;
}

WELD_HOT size_t weld_k_count_nonfinite_bf16(const unsigned char *x, size_t n)
{
	size_t c = 0;

	for (size_t i = 0; i < n; i += COUNT_PIECE) {
		size_t m = n - i < COUNT_PIECE ? n - i : COUNT_PIECE;
		uint16_t k = 0;   /* 16-bit lanes: COUNT_PIECE < 65536 */

		for (size_t j = 0; j < m; j++)
			k = (uint16_t)(k + ((bf16_bits(x + 2 * i, j) & 0x7f80u) == 0x7f80u));
		c += k;
	}
	return c;
}

void weld_k_mark_nan(const float *x, size_t n, unsigned char *nan)
{
	for (size_t j = 0; j < n; j++)
		nan[j] |= (f32_bits(x, j) & 0x7fffffffu) > 0x7f800000u;
}

void weld_k_mark_nan_bf16(const unsigned char *x, size_t n, unsigned char *nan)
{
	for (size_t j = 0; j < n; j++)
		nan[j] |= (bf16_bits(x, j) & 0x7fffu) > 0x7f80u;
}

/* v[j] where keep[j] (and not drop[j]), +0 elsewhere: a bit mask, so that
 * the loop vectorises and an inf or NaN that is not kept stays out. */
static inline float masked(float v, bool keep)
{
	uint32_t u;
	float f;

	memcpy(&u, &v, sizeof(u));
	u &= (uint32_t)0 - (uint32_t)keep;
	memcpy(&f, &u, sizeof(f));
	return f;
}

/*
 * |x| summed over a fixed pattern: element j goes to lane j % 8 of its call;
 * each group of 64 elements is summed per lane in float, the groups are
 * added per lane in double, and the lanes in order. Vectorisable, and the
 * same on every machine, because no part of the pattern depends on threads.
 */
#define LANES 8
#define GROUP 64
typedef float lanes_t __attribute__((vector_size(LANES * sizeof(float))));

static void lanes_add(double *acc, const lanes_t *v)
{
	for (int l = 0; l < LANES; l++)
		acc[l] += (*v)[l];
}

static double lanes_total(const double *acc)
{
	double t = 0;

	for (int l = 0; l < LANES; l++)
		t += acc[l];
	return t;
}

static void lanes_load(lanes_t *v, const float *x, size_t avail)
{
	if (avail >= LANES) {
		memcpy(v, x, sizeof(*v));
	} else {
		for (size_t l = 0; l < LANES; l++)
			(*v)[l] = l < avail ? x[l] : 0.0f;
	}
}

/*
 * keep[0..m) from bits (bit j % 8 of byte j / 8), or into them, eight at a
 * time with multiplications where bytes sit in memory little-end first:
 * spreading b * 0x0101.. & 0x8040201008040201 puts bit k in byte k, and
 * (x * 0x0102040810204080) >> 56 gathers the low bit of each byte back.
 */
static void bits_to_keep(const unsigned char *bits, size_t m, unsigned char *keep)
{
	size_t j = 0;

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	for (; j + 8 <= m; j += 8) {
		uint64_t x = bits[j / 8] * 0x0101010101010101ull & 0x8040201008040201ull;

		x = (x + 0x7F7F7F7F7F7F7F7Full) >> 7 & 0x0101010101010101ull;
		memcpy(keep + j, &x, 8);
	}
#endif
	for (; j < m; j++)
		keep[j] = bits[j / 8] >> (j % 8) & 1;
}

static void keep_to_bits(const unsigned char *keep, size_t m, unsigned char *bits)
{
	size_t j = 0;

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	for (; j + 8 <= m; j += 8) {
		uint64_t x;

		memcpy(&x, keep + j, 8);
		bits[j / 8] = (unsigned char)(x * 0x0102040810204080ull >> 56);
	}
#endif
	for (; j < m; j += 8) {
		unsigned char b = 0;

		for (size_t k = 0; k < 8 && j + k < m; k++)
			b |= (unsigned char)(keep[j + k] << k);
		bits[j / 8] = b;
	}
}

WELD_HOT void weld_k_dare_drop(float *v, size_t n, uint64_t key, uint64_t first, double density,
			       float factor, double sums[2], unsigned char *bits, bool known)
{
	uint64_t thr = weld_rng_threshold(density);
	unsigned char keep[1024];
	float kx[1024];
	double all[LANES] = { 0 }, kept[LANES] = { 0 };

	for (size_t a = 0; a < n; a += sizeof(keep)) {
		size_t m = n - a < sizeof(keep) ? n - a : sizeof(keep);
		float *x = v + a;

		if (bits && known) {
			bits_to_keep(bits + a / 8, m, keep);
		} else {
			weld_rng_keep(key, first + a, m, thr, keep);
			if (bits)
				keep_to_bits(keep, m, bits + a / 8);
		}
		if (sums) {
			for (size_t j = 0; j < m; j++)
				kx[j] = masked(x[j], keep[j]);
			for (size_t g = 0; g < m; g += GROUP) {
				lanes_t sa = { 0 }, sk = { 0 };

				for (size_t j = g; j < g + GROUP && j < m; j += LANES) {
					lanes_t xa, xk;

					lanes_load(&xa, x + j, m - j);
					lanes_load(&xk, kx + j, m - j);

					for (int l = 0; l < LANES; l++) {
						xa[l] = fabsf(xa[l]);
						xk[l] = fabsf(xk[l]);
					}
					sa += xa;
					sk += xk;
				}
				lanes_add(all, &sa);
				lanes_add(kept, &sk);
			}
		}
		for (size_t j = 0; j < m; j++)
			x[j] = masked(x[j] * factor, keep[j]);
	}
	if (sums) {
		sums[0] = lanes_total(all);
		sums[1] = lanes_total(kept);
	}
}

void weld_k_dare_row_l1(float *v, size_t n, uint64_t key, uint64_t first, double density)
{
	double s[2];
	float f;

	weld_k_dare_drop(v, n, key, first, density, 1.0f, s, NULL, false);
	f = s[0] < 1e-7 || s[1] < 1e-7 ? 1.0f : (float)(s[0] / s[1]);
	for (size_t j = 0; j < n; j++)
		v[j] *= f;
}

void weld_k_dots(const float *b, const float *x, size_t n, double out[3])
{
	double bb[LANES] = { 0 }, xx[LANES] = { 0 }, bx[LANES] = { 0 };

	for (size_t g = 0; g < n; g += GROUP) {
		lanes_t sbb = { 0 }, sxx = { 0 }, sbx = { 0 };

		for (size_t j = g; j < g + GROUP && j < n; j += LANES) {
			lanes_t p, q;

			lanes_load(&p, b + j, n - j);
			lanes_load(&q, x + j, n - j);

			sbb += p * p;
			sxx += q * q;
			sbx += p * q;
		}
		lanes_add(bb, &sbb);
		lanes_add(xx, &sxx);
		lanes_add(bx, &sbx);
	}
	out[0] = lanes_total(bb);
	out[1] = lanes_total(xx);
	out[2] = lanes_total(bx);
}

void weld_k_slerp_coeffs(double n0sq, double n1sq, double dot, double t,
			 double *s0, double *s1)
{
	const double eps = 1e-8;
	double n0 = sqrt(n0sq), n1 = sqrt(n1sq), d, th, sn;

	d = dot / ((n0 > eps ? n0 : 1) * (n1 > eps ? n1 : 1));
	if (fabs(d) > 0.9995) {
		*s0 = 1 - t;
		*s1 = t;
		return;
	}
	th = acos(d);
	sn = sin(th);
	*s0 = sin(th - th * t) / sn;
	*s1 = sin(th * t) / sn;
}

/* The helpers below are inlined so that each instruction-set clone of
 * weld_k_combine gets its own copy (a call would run the baseline one). */
#define INLINE static inline __attribute__((always_inline))

/* p[j] = w * (kept ? v[o + j] : 0) for source s, j < len. */
INLINE void weighted_kept(const struct weld_combine_args *a, size_t s, size_t o, size_t len,
			  float *p)
{
	const float *v = a->v[s] + o;
	const unsigned char *k = a->keep && a->keep[s] ? a->keep[s] + o : NULL;
	const unsigned char *d = a->drop && a->drop[s] ? a->drop[s] + o : NULL;
	float w = a->w[s];

	if (k && d)
		for (size_t j = 0; j < len; j++)
			p[j] = w * masked(v[j], k[j] & !d[j]);
	else if (k)
		for (size_t j = 0; j < len; j++)
			p[j] = w * masked(v[j], k[j]);
	else
		for (size_t j = 0; j < len; j++)
			p[j] = w * v[j];
}

/* Elements the TIES election takes at a time: its sums and every source's
 * kept values stay in the first-level cache. */
#define TIES_BLOCK 512

/* ties_tile on elements [o, o + m) of the tile, m <= TIES_BLOCK; p holds
 * n * m floats. */
INLINE void ties_block(const struct weld_combine_args *a, size_t o, size_t m, bool normalize,
		       float *tau, float *p)
{
	float sum[TIES_BLOCK], cnt[TIES_BLOCK], den[TIES_BLOCK];

	for (size_t j = 0; j < m; j++)
		sum[j] = cnt[j] = tau[j] = den[j] = 0;
	for (size_t s = 0; s < a->n; s++) {
		float *ps = p + s * m;

		weighted_kept(a, s, o, m, ps);
		/* the election counts signs, or adds the values */
		if (a->sign_count)
			for (size_t j = 0; j < m; j++)
				cnt[j] += (float)(ps[j] > 0) - (float)(ps[j] < 0);
		else
			for (size_t j = 0; j < m; j++)
				sum[j] += ps[j];
	}
	if (a->sign_count)
		for (size_t j = 0; j < m; j++)
			sum[j] = cnt[j] >= 0 ? 1.0f : -1.0f;
	else
		for (size_t j = 0; j < m; j++)
			sum[j] = sum[j] >= 0 ? 1.0f : -1.0f;
	for (size_t s = 0; s < a->n; s++) {
		const float *ps = p + s * m;
		float w = a->w[s];

		for (size_t j = 0; j < m; j++) {
			bool agree = sum[j] * ps[j] > 0;

			tau[j] += agree ? ps[j] : 0.0f;
			den[j] += agree ? w : 0.0f;
		}
	}
	if (normalize)
		for (size_t j = 0; j < m; j++) {
			float d = den[j] == 0 ? 1.0f : den[j];

			tau[j] = tau[j] / d;
		}
}

/*
 * TIES election and disjoint merge of the kept values: tau[j]. Block by
 * block, and in a block source by source (so the loops vectorise); for
 * each element the additions still happen in source order. scratch: n *
 * len floats.
 */
INLINE void ties_tile(const struct weld_combine_args *a, size_t len, bool normalize,
		      float *tau, float *scratch)
{
	for (size_t o = 0; o < len; o += TIES_BLOCK) {
		size_t m = len - o < TIES_BLOCK ? len - o : TIES_BLOCK;

		ties_block(a, o, m, normalize, tau + o, scratch);
	}
}

/* acc[j] = sum over sources of w * kept value, in source order. */
INLINE void weighted_sum(const struct weld_combine_args *a, size_t len, float *acc)
{
	for (size_t j = 0; j < len; j++)
		acc[j] = 0;
	for (size_t s = 0; s < a->n; s++) {
		const float *v = a->v[s];
		float w = a->w[s];
		const unsigned char *k = a->keep ? a->keep[s] : NULL;
		const unsigned char *d = a->drop ? a->drop[s] : NULL;

		/* the kept values go straight into the sums, with the same
		 * roundings as weighted_kept's p[j] then acc[j] += p[j] */
		if (k && d) {
			for (size_t j = 0; j < len; j++)
				acc[j] += w * masked(v[j], k[j] & !d[j]);
		} else if (k) {
			for (size_t j = 0; j < len; j++)
				acc[j] += w * masked(v[j], k[j]);
		} else {
			/* (weighted_kept ignores a drop without a keep) */
			for (size_t j = 0; j < len; j++)
				acc[j] += w * v[j];
		}
	}
}

/*
 * consensus on elements [o, o + m) of the tile, m <= TIES_BLOCK: tau (the
 * TIES vector, or the weighted sum of every delta), then the TALL mask of
 * each source, how many agree, and the output, while the block's deltas
 * are still in the first-level cache. p holds n * m floats.
 */
INLINE void consensus_block(const struct weld_combine_args *a, size_t o, size_t m, float *out,
			    float *p)
{
	float acc[TIES_BLOCK];
	int32_t cnt[TIES_BLOCK];        /* how many masks are true */

	if (a->ties) {
		ties_block(a, o, m, false, acc, p);
	} else {
		/* the roundings of weighted_sum: w * v, then the sum */
		for (size_t j = 0; j < m; j++)
			acc[j] = 0;
		for (size_t s = 0; s < a->n; s++) {
			const float *v = a->v[s] + o;
			float w = a->w[s];

			for (size_t j = 0; j < m; j++)
				acc[j] += w * v[j];
		}
	}
	for (size_t j = 0; j < m; j++)
		cnt[j] = 0;
	for (size_t s = 0; s < a->n; s++) {
		const float *d = a->v[s] + o;
		float ml = a->mask_lambda[s];

		for (size_t j = 0; j < m; j++)
			cnt[j] += fabsf(d[j]) > ml * fabsf(acc[j] - d[j]);
		if (!a->maskbits)
			continue;
		for (size_t j = 0; j < m; j++)
			if (fabsf(d[j]) > ml * fabsf(acc[j] - d[j])) {
				uint64_t bit = a->bitpos + o + j;

				a->maskbits[s * a->maskstride + bit / 8] |= (unsigned char)(1u << (bit % 8));
			}
	}
	for (size_t j = 0; j < m; j++)
		out[o + j] = a->base[o + j] + a->lambda * (cnt[j] >= a->k ? acc[j] : 0.0f);
}

/* Sixteen lanes of floats and their masks (0 or -1) for consensus_ta. */
typedef float vf16 __attribute__((vector_size(16 * sizeof(float))));
typedef int32_t vi16 __attribute__((vector_size(16 * sizeof(int32_t))));

/* |x| of each lane: the sign bit cleared. */
#define VF16_ABS(x) ((vf16)((vi16)(x) & 0x7FFFFFFF))

/*
 * consensus from task arithmetic without saved masks, sixteen elements at
 * a time with tau and the count in registers: the same operations, in the
 * same order per element, as consensus_block. Returns how many elements it
 * did (a multiple of 32).
 */
INLINE size_t consensus_ta(const struct weld_combine_args *a, size_t len, float *out)
{
	const vf16 zero = { 0 };
	size_t o = 0;

	for (; o + 32 <= len; o += 32) {
		vf16 acc0 = zero, acc1 = zero, d0, d1, b0, b1;
		vi16 cnt0 = { 0 }, cnt1 = { 0 };

		for (size_t s = 0; s < a->n; s++) {
			memcpy(&d0, a->v[s] + o, sizeof(d0));
			memcpy(&d1, a->v[s] + o + 16, sizeof(d1));
			acc0 += a->w[s] * d0;
			acc1 += a->w[s] * d1;
		}
		for (size_t s = 0; s < a->n; s++) {
			float ml = a->mask_lambda[s];

			memcpy(&d0, a->v[s] + o, sizeof(d0));
			memcpy(&d1, a->v[s] + o + 16, sizeof(d1));
			cnt0 -= VF16_ABS(d0) > ml * VF16_ABS(acc0 - d0);
			cnt1 -= VF16_ABS(d1) > ml * VF16_ABS(acc1 - d1);
		}
		memcpy(&b0, a->base + o, sizeof(b0));
		memcpy(&b1, a->base + o + 16, sizeof(b1));
		b0 += a->lambda * (vf16)((vi16)acc0 & (cnt0 >= a->k));
		b1 += a->lambda * (vf16)((vi16)acc1 & (cnt1 >= a->k));
		memcpy(out + o, &b0, sizeof(b0));
		memcpy(out + o + 16, &b1, sizeof(b1));
	}
	return o;
}

INLINE void consensus_tile(const struct weld_combine_args *a, size_t len, float *out,
			   float *scratch)
{
	size_t o = !a->ties && !a->maskbits ? consensus_ta(a, len, out) : 0;

	for (; o < len; o += TIES_BLOCK) {
		size_t m = len - o < TIES_BLOCK ? len - o : TIES_BLOCK;

		consensus_block(a, o, m, out, scratch);
	}
}

WELD_HOT void weld_k_combine(const struct weld_combine_args *a, size_t len, float *out, float *scratch)
{
	float sw = 0, *acc = scratch + (3 + a->n) * len;

	for (size_t s = 0; s < a->n; s++)
		sw += a->w[s];
	switch (a->method) {
	case WELD_METHOD_AVERAGE:
		weighted_sum(a, len, out);
		if (a->normalize)
			for (size_t j = 0; j < len; j++)
				out[j] = out[j] / sw;
		return;
	case WELD_METHOD_SLERP: {
		float s0 = (float)a->s0, s1 = (float)a->s1;

		for (size_t j = 0; j < len; j++)
			out[j] = s0 * a->base[j] + s1 * a->v[0][j];
		return;
	}
	case WELD_METHOD_CONSENSUS:
		consensus_tile(a, len, out, scratch);
		return;
	case WELD_METHOD_NEARSWAP:
		weld_k_nearswap(a->base, a->v[0], len, a->t, out);
		return;
	case WELD_METHOD_RAM:
		weld_k_ram(a->base, a->v, a->n, len, a->epsilon, a->coef, out);
		return;
	case WELD_METHOD_MODEL_STOCK:
		weld_k_model_stock(a->base, a->v, a->n, len, a->coef[0], out);
		return;
	case WELD_METHOD_NUSLERP:
		if (a->ncols)
			weld_k_nuslerp_cols(a->base, a->v[0], a->v[1], len, a->coef, a->ncols, a->col0, out);
		else
			weld_k_nuslerp(a->base, a->v[0], a->v[1], len, a->coef, out);
		return;
	case WELD_METHOD_MULTISLERP:
	case WELD_METHOD_KARCHER:
		if (a->n == 1)  /* one input: itself */
			memcpy(out, a->v[0], len * sizeof(*out));
		else
			weld_k_lincomb(a->base, a->v, a->n, len, a->coef, out);
		return;
	case WELD_METHOD_TSV_M:
	case WELD_METHOD_ISO_C:
	case WELD_METHOD_ISO_CTS:
		/* tensors that are not decomposed: the mean of the weighted task
		 * vectors (METHODS 13) */
		weighted_sum(a, len, acc);
		for (size_t j = 0; j < len; j++)
			out[j] = a->base[j] + a->lambda * (acc[j] / (float)a->n);
		return;
	default:
		if (a->ties) {
			ties_tile(a, len, a->normalize, acc, scratch);
		} else {
			weighted_sum(a, len, acc);
			if (a->normalize && fabsf(sw) >= 1e-8f)
				for (size_t j = 0; j < len; j++)
					acc[j] = acc[j] / sw;
		}
		for (size_t j = 0; j < len; j++)
			out[j] = a->base[j] + a->lambda * acc[j];
		return;
	}
}
