/*
 * pcb.c - PCB-Merging's formulas (METHODS 12) in float32, in the order
 * METHODS gives them; exp and tanh in double, rounded once, so that every
 * machine and a float64 reference agree. See pcb.h.
 */
#include "pcb.h"
#include "elementary.h"
#include "target_clones.h"

#include <math.h>
#include <string.h>

uint64_t weld_pcb_lo_index(uint64_t m, double clip)
{
	uint64_t i = (uint64_t)floor((double)m * clip);

	return i < m ? i : m - 1;
}

uint64_t weld_pcb_hi_index(uint64_t m, double clip)
{
	double x = (double)m * (1 - clip) - 1;

	/* truncation toward zero: a unit of 1 gives index 0 */
	return x <= 0 ? 0 : (uint64_t)x < m ? (uint64_t)x : m - 1;
}

uint64_t weld_pcb_thr_index(uint64_t m, double ratio)
{
	uint64_t i = (uint64_t)floor((double)m * (1 - ratio));

	return i < m ? i : m - 1;
}

const uint32_t *weld_pcb_sort_keys(uint32_t *keys, size_t n, uint32_t *tmp)
{
	uint32_t *a = keys, *b = tmp;

	for (int shift = 0; n && shift < 32; shift += 8) {
		size_t cnt[256] = { 0 }, pos = 0;

		for (size_t i = 0; i < n; i++)
			cnt[a[i] >> shift & 0xFF]++;
		if (cnt[a[0] >> shift & 0xFF] == n)
			continue;
		for (int d = 0; d < 256; d++) {
			size_t c = cnt[d];

			cnt[d] = pos;
			pos += c;
		}
		for (size_t i = 0; i < n; i++)
			b[cnt[a[i] >> shift & 0xFF]++] = a[i];
		{
			uint32_t *t = a;

			a = b;
			b = t;
		}
	}
	return a;
}

/*
 * A radix select from the high byte down: count the byte, keep the keys of
 * the byte that holds rank k (none dropped when they all share it, as the
 * high bytes of a unit's keys mostly do), and so on; the keys left at the
 * end are all equal to the answer.
 */
/* Ranks this near an end are kept in a small sorted list instead. */
#define NEAR_END 8

/* The k-th smallest (k < NEAR_END) of keys[0..n), or with largest the
 * k-th largest: one pass that keeps the k + 1 best in order. */
static uint32_t kth_near_end(const uint32_t *keys, size_t n, size_t k, bool largest)
{
	uint32_t best[NEAR_END], flip = largest ? 0xFFFFFFFFu : 0;

	/* with largest, the keys' complements: the smallest of those */
	for (size_t q = 0; q <= k; q++)
		best[q] = 0xFFFFFFFFu;
	for (size_t i = 0; i < n; i++) {
		uint32_t x = keys[i] ^ flip;
		size_t q = k;

		if (x >= best[k])
			continue;
		for (; q > 0 && best[q - 1] > x; q--)
			best[q] = best[q - 1];
		best[q] = x;
	}
	return best[k] ^ flip;
}

/* The radix select, byte by byte from the top down to the byte at shift
 * last: the keys left then share every byte above it (and are all equal
 * when last is 0). */
static uint32_t radix_select(uint32_t *keys, size_t n, size_t k, uint32_t *tmp, int last)
{
	uint32_t *a = keys, *b = tmp;

	for (int shift = 24; shift >= last; shift -= 8) {
		size_t cnt[256] = { 0 }, below = 0, m = 0;
		uint32_t d = 0;

		for (size_t i = 0; i < n; i++)
			cnt[a[i] >> shift & 0xFF]++;
		while (below + cnt[d] <= k)
			below += cnt[d++];
		k -= below;
		if (cnt[d] == n)
			continue;
		for (size_t i = 0; i < n; i++) {
			b[m] = a[i];
			m += (a[i] >> shift & 0xFF) == d;
		}
		{
			uint32_t *t = a;

			a = b;
			b = t;
		}
		n = m;
	}
	return a[0];
}

bool weld_pcb_clip_keys(const float *x, size_t n, uint64_t lo, uint64_t hi, uint32_t *klo,
			uint32_t *khi)
{
	uint32_t small[NEAR_END], large[NEAR_END];
	size_t a = (size_t)lo, b = n - 1 - (size_t)hi;

	if (lo >= NEAR_END || n - 1 - hi >= NEAR_END)
		return false;
	/* the a + 1 smallest keys ascending, the b + 1 largest descending */
	for (size_t q = 0; q < NEAR_END; q++) {
		small[q] = 0xFFFFFFFFu;
		large[q] = 0;
	}
	for (size_t i = 0; i < n; i++) {
		uint32_t k = weld_pcb_abs_key(x[i]);
		size_t q;

		if (k < small[a]) {
			for (q = a; q > 0 && small[q - 1] > k; q--)
				small[q] = small[q - 1];
			small[q] = k;
		}
		if (k > large[b]) {
			for (q = b; q > 0 && large[q - 1] < k; q--)
				large[q] = large[q - 1];
			large[q] = k;
		}
	}
	*klo = small[a];
	*khi = large[b];
	return true;
}

uint32_t weld_pcb_kth_key(uint32_t *keys, size_t n, size_t k, uint32_t *tmp)
{
	if (k < NEAR_END)
		return kth_near_end(keys, n, k, false);
	if (n - 1 - k < NEAR_END)
		return kth_near_end(keys, n, n - 1 - k, true);
	return radix_select(keys, n, k, tmp, 0);
}

uint32_t weld_pcb_kth_floor(uint32_t *keys, size_t n, size_t k, uint32_t *tmp)
{
	return radix_select(keys, n, k, tmp, 16) & 0xFFFF0000u;
}

/* The sources added in their order, over blocks small enough that the
 * sums stay near the core between sources. */
WELD_HOT void weld_k_pcb_sum(const float *const *d, size_t n, size_t len, float *restrict sum)
{
	for (size_t b = 0; b < len; b += 2048) {
		size_t e = len - b < 2048 ? len : b + 2048, s = n < 3 ? n : 3;
		const float *restrict x = d[0], *restrict y = d[n > 1], *restrict z = d[s - 1];

		/* the first three sources in one pass, in order: (d0 + d1) + d2 */
		if (s == 3)
			for (size_t j = b; j < e; j++)
				sum[j] = (x[j] + y[j]) + z[j];
		else if (s == 2)
			for (size_t j = b; j < e; j++)
				sum[j] = x[j] + y[j];
		else
			for (size_t j = b; j < e; j++)
				sum[j] = x[j];
		for (; s < n; s++)
			for (size_t j = b; j < e; j++)
				sum[j] += d[s][j];
	}
}

/* min(max(|x|, lo), hi): the clipped magnitude */
static inline float clip_abs(float x, float lo, float hi)
{
	float a = fabsf(x);

	a = a < lo ? lo : a;
	return a > hi ? hi : a;
}

/*
 * float(weld_tanh(x)) of a float x (weld's own tanh: the same bits on every
 * machine). For |x| < 2^-13, tanh(x) = x (1 - x^2/3 + ...) lies within
 * x * 2^-27.5 of x, well inside half the spacing of the floats around x
 * (at least x * 2^-25), so it rounds to x itself, and so does weld_tanh's:
 * no call.
 */
static inline float tanh_f(float x)
{
	return fabsf(x) < 0x1p-13f ? x : (float)weld_tanh((double)x);
}

/*
 * intra = float(weld_exp(n N^2)) of a clipped magnitude a, N = (a - mn) / span.
 * It depends on a alone, and deltas of low-precision models take few
 * distinct magnitudes: a memo by a's bits (0xFFFFFFFF, a negative NaN, is
 * no fabsf result), valid for one (mn, span, n).
 */
static float intra_of(float a, float mn, float span, float fn)
{
	float nn = span > 0 ? (a - mn) / span : 0.0f;

	return (float)weld_exp((double)(fn * (nn * nn)));
}

float weld_pcb_intra(float a, float mn, float span, float fn)
{
	return intra_of(a, mn, span, fn);
}

float weld_pcb_tanh(float p)
{
	return tanh_f(p);
}

void weld_pcb_memo_init(struct weld_pcb_memo *m, struct weld_pcb_memo_entry *e, unsigned bits)
{
	m->key[0] = m->key[1] = m->key[2] = NAN;       /* fits no unit: cleared at first use */
	m->bits = bits;
	m->e = e;
}

/* Ready m for the unit of n sources with clip bounds lo, hi: cleared when
 * it was for another. */
static void memo_use(struct weld_pcb_memo *m, size_t n, float lo, float hi)
{
	/* the clipped magnitudes range from min(lo, hi) to hi */
	float key[3] = { lo < hi ? lo : hi, 0, (float)n };

	key[1] = hi - key[0];
	if (memcmp(key, m->key, sizeof(key)) != 0) {
		memcpy(m->key, key, sizeof(key));
		memset(m->e, 0xFF, ((size_t)1 << m->bits) * sizeof(*m->e));
	}
}

static inline float memo_intra(struct weld_pcb_memo *m, float a)
{
	uint32_t ab, slot;

	memcpy(&ab, &a, sizeof(ab));
	slot = (ab * 0x9E3779B1u) >> (32 - m->bits);
	if (m->e[slot].tag != ab) {
		m->e[slot].tag = ab;
		m->e[slot].val = intra_of(a, m->key[0], m->key[1], m->key[2]);
	}
	return m->e[slot].val;
}

/* A memo of the caller's stack, for one call. */
#define LOCAL_BITS 11

void weld_k_pcb_beta(const float *d, const float *sum, size_t n, float lo, float hi, size_t len,
		     float *beta)
{
	struct weld_pcb_memo_entry e[1u << LOCAL_BITS];
	struct weld_pcb_memo m;

	if (weld_k_pcb_beta_vec(d, sum, n, lo, hi, len, beta))
		return;
	weld_pcb_memo_init(&m, e, LOCAL_BITS);
	memo_use(&m, n, lo, hi);
	for (size_t j = 0; j < len; j++)
		beta[j] = memo_intra(&m, clip_abs(d[j], lo, hi)) * tanh_f(d[j] * sum[j]);
}

void weld_k_pcb_beta_at(const float *d, const float *sum, size_t n, float lo, float hi,
			const uint32_t *idx, size_t m, struct weld_pcb_memo *memo, float *beta)
{
	struct weld_pcb_memo_entry e[1u << LOCAL_BITS];
	struct weld_pcb_memo local;
	unsigned bits = 6;

	if (weld_k_pcb_beta_at_vec(d, sum, n, lo, hi, idx, m, beta))
		return;
	if (!memo) {
		/* room for twice the lookups: clearing it costs what they do */
		while (bits < LOCAL_BITS && ((size_t)1 << bits) < 2 * m)
			bits++;
		weld_pcb_memo_init(&local, e, bits);
		memo = &local;
	}
	memo_use(memo, n, lo, hi);
	for (size_t k = 0; k < m; k++) {
		size_t j = idx[k];

		beta[k] = memo_intra(memo, clip_abs(d[j], lo, hi)) * tanh_f(d[j] * sum[j]);
	}
}

void weld_pcb_bound_init(struct weld_pcb_bound *b, size_t n, float lo, float hi)
{
	b->mn = lo < hi ? lo : hi;
	b->span = hi - b->mn;
	b->fn = (float)n;
	b->inv = b->span > 0 ? 1.0f / b->span : 0.0f;
	b->chords = false;
}

/*
 * Bounds of intra = float(exp(x)) without exp, on vectors. x = n N^2 is
 * computed as intra_of() computes it but for N = (a - mn) * (1 / span), no
 * division: that N is within 3 float roundings of intra_of()'s, so x
 * within 7 (x <= n <= 64: exp(x) moves by a factor within 1 +- 2^-16), and
 * x is in [0, n (1 + 2^-21)]. With t = x log2(e) in float, k = floor(t),
 * f = t - k (exact) and y = f ln 2 in [0, ln 2]: exp(x) = 2^k e^y up to
 * the rounding of t and y (|error of t| <= 189 * 2^-24, a factor within
 * 1 +- 2^-16).
 * Taylor's polynomial of degree 4 is at most e^y (every term positive);
 * adding y^5/48 makes it at least e^y (the remainder is e^z y^5/120 with
 * e^z <= 2). Each polynomial has positive terms: float evaluation moves it
 * by at most 12 roundings, 2^-20. float(exp(x)) is within 2^-23 of exp(x)
 * (weld_exp's error below one double ulp, then one rounding to float). All
 * together stay well inside the margin of 2^-12 the bounds take, so
 *   dn <= intra <= up.
 * A NaN x (infinite deltas) gives [0, +inf]: nothing known.
 */
static inline void intra_bounds(float a, float mn, float span, float inv, float fn, float *up,
				float *dn)
{
	float nn = (a - mn) * inv, x, t, k, f, y, q, sc;
	uint32_t bits;

	/* as intra_of() (a product for the quotient); without a branch, so
	 * that loops run on vectors */
	nn = span > 0 ? nn : 0.0f;
	x = fn * (nn * nn);
	t = x * 0x1.715476p+0f;
	t = t < 100.0f ? t : 100.0f;
	/* k = floor(t): t rounded to an integer by adding 2^23, one less if
	 * above t; its bits then hold k + 2^23 (k <= 100) */
	k = t + 0x1p23f;
	k = k - 0x1p23f > t ? k - 1.0f : k;
	memcpy(&bits, &k, sizeof(bits));
	k = k - 0x1p23f;
	f = t - k;
	y = f * 0x1.62e43p-1f;
	bits = (bits - 0x4B000000u + 127) << 23;
	memcpy(&sc, &bits, sizeof(sc));
	q = 1.0f + y * (1.0f + y * (0.5f + y * (1.0f / 6 + y * (1.0f / 24))));
	q = q * sc * (1.0f - 0x1p-12f);
	*dn = x < 100.0f ? q : 0.0f;
	q = 1.0f + y * (1.0f + y * (0.5f + y * (1.0f / 6 + y * (1.0f / 24 + y * (1.0f / 48)))));
	q = q * sc * (1.0f + 0x1p-12f);
	*up = x < 100.0f ? q : INFINITY;
}

/*
 * beta's bounds at one element, from intra's: tanh_f(p) <= p for p > 0,
 * and = p for 0 < p < 2^-13; float rounding is monotonic. So
 *   beta <= float(up * max(p, 0)), and where 0 < p < 2^-13
 *   beta >= float(dn * p) (elsewhere nothing is known: -inf).
 * beta is NaN where p is, or intra (up = +inf: an infinite delta clipped
 * by an infinite bound); a NaN ranks above every value (pcb.h), so there
 * the upper bound is +inf, and every path computes and counts it.
 */
static inline void beta_bounds(float x, float s, float lo, float hi, float mn, float span,
			       float inv, float fn, float *ub, float *lb)
{
	float p = x * s, up, dn, v;

	intra_bounds(clip_abs(x, lo, hi), mn, span, inv, fn, &up, &dn);
	*ub = ((p != p) | (up == INFINITY)) ? INFINITY : up * (p > 0 ? p : 0.0f);
	v = dn * p;
	*lb = ((p > 0) & (p < 0x1p-13f)) ? v : -INFINITY;
}

WELD_HOT static void bounds(const float *restrict d, const float *restrict sum,
			    const struct weld_pcb_bound *b, float lo, float hi, size_t len,
			    float *restrict ub, float *restrict lb)
{
	float mn = b->mn, span = b->span, inv = b->inv, fn = b->fn;

	for (size_t j = 0; j < len; j++)
		beta_bounds(d[j], sum[j], lo, hi, mn, span, inv, fn, &ub[j], &lb[j]);
}

void weld_k_pcb_bounds(const float *d, const float *sum, const struct weld_pcb_bound *b, float lo,
		       float hi, size_t len, float *ub, float *lb)
{
	bounds(d, sum, b, lo, hi, len, ub, lb);
}

/* Elements per block of the flags: they stay in the first-level cache
 * until the positions are picked. */
#define BOUND_BLOCK 1024

/*
 * The flags of a block: need[j] = 1 where beta may exceed cut, 0 elsewhere.
 * No branch, so the loop runs on vectors; most flags are 0.
 */
WELD_HOT static void flags_cut(const float *restrict d, const float *restrict sum,
			       const struct weld_pcb_bound *b, float lo, float hi, float cut,
			       size_t len, unsigned char *restrict need)
{
	float mn = b->mn, span = b->span, inv = b->inv, fn = b->fn;

	for (size_t j = 0; j < len; j++) {
		float ub, lb;

		beta_bounds(d[j], sum[j], lo, hi, mn, span, inv, fn, &ub, &lb);
		need[j] = ub > cut;
	}
}

/*
 * The same with a window: an element whose beta surely exceeds above and
 * cannot exceed top is not needed but counted (the return value).
 */
WELD_HOT static uint32_t flags_window(const float *restrict d, const float *restrict sum,
				      const struct weld_pcb_bound *b, float lo, float hi,
				      float cut, float above, float top, size_t len,
				      unsigned char *restrict need, unsigned char *restrict inb)
{
	float mn = b->mn, span = b->span, inv = b->inv, fn = b->fn;
	uint32_t na = 0;

	for (size_t j = 0; j < len; j++) {
		float ub, lb;
		unsigned in, over;

		beta_bounds(d[j], sum[j], lo, hi, mn, span, inv, fn, &ub, &lb);
		in = ub > cut;
		/* lb > above implies in (above > cut), and NaNs compare false */
		over = (lb > above) & (ub <= top) & (above > cut);
		need[j] = (unsigned char)(in - over);
		inb[j] = (unsigned char)in;
		na += over;
	}
	return na;
}

/* The positions j0 + j of the set flags of need[0..n), ascending, into
 * idx; returns how many. No branch: about one in ten is picked. */
static size_t pick_generic(const unsigned char *need, size_t n, size_t j0, uint32_t *idx)
{
	size_t m = 0;

	for (size_t j = 0; j < n; j++) {
		idx[m] = (uint32_t)(j0 + j);
		m += need[j];
	}
	return m;
}

#if WELD_AVX512
#include <immintrin.h>

/* 16 flags at a time: the positions of the set ones compressed into a
 * register and all 16 lanes stored (idx has room: no more are picked than
 * looked at, and fewer than n remain). */
__attribute__((target("avx512f,popcnt")))
static size_t pick_avx512(const unsigned char *need, size_t n, size_t j0, uint32_t *idx)
{
	const __m512i zero = _mm512_setzero_si512(), step = _mm512_set1_epi32(16);
	__m512i pos = _mm512_add_epi32(_mm512_set1_epi32((int)j0),
				       _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,
							 13, 14, 15));
	size_t m = 0, j = 0;

	for (; j + 16 <= n; j += 16) {
		__m512i f = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(const void *)
								 (need + j)));
		__mmask16 k = _mm512_cmpneq_epi32_mask(f, zero);

		/* no branch: whether any is set is a coin toss */
		_mm512_storeu_si512(idx + m, _mm512_maskz_compress_epi32(k, pos));
		m += (size_t)__builtin_popcount(k);
		pos = _mm512_add_epi32(pos, step);
	}
	return m + pick_generic(need + j, n - j, j0 + j, idx + m);
}

static size_t pick(const unsigned char *need, size_t n, size_t j0, uint32_t *idx)
{
	/* positions fit int32 lanes: units are below 2^32, tiles far below */
	if (__builtin_cpu_supports("avx512f") && j0 + n < (1u << 31))
		return pick_avx512(need, n, j0, idx);
	return pick_generic(need, n, j0, idx);
}
#else
static size_t pick(const unsigned char *need, size_t n, size_t j0, uint32_t *idx)
{
	return pick_generic(need, n, j0, idx);
}
#endif

/* The flags f[0..n) as bits, bit j % 64 of word j / 64. */
static void pack_generic(const unsigned char *f, size_t n, uint64_t *bits)
{
	for (size_t w = 0; w * 64 < n; w++) {
		uint64_t v = 0;

		for (size_t k = 0; k < 64 && w * 64 + k < n; k++)
			v |= (uint64_t)f[w * 64 + k] << k;
		bits[w] = v;
	}
}

#if WELD_AVX512
__attribute__((target("avx512f,avx512bw")))
static void pack_avx512(const unsigned char *f, size_t n, uint64_t *bits)
{
	size_t w = 0;

	for (; (w + 1) * 64 <= n; w++)
		bits[w] = _mm512_test_epi8_mask(_mm512_loadu_si512((const void *)(f + w * 64)),
						_mm512_set1_epi8(1));
	if (w * 64 < n)
		pack_generic(f + w * 64, n - w * 64, bits + w);
}

static void pack(const unsigned char *f, size_t n, uint64_t *bits)
{
	if (__builtin_cpu_supports("avx512bw"))
		pack_avx512(f, n, bits);
	else
		pack_generic(f, n, bits);
}
#else
static void pack(const unsigned char *f, size_t n, uint64_t *bits)
{
	pack_generic(f, n, bits);
}
#endif

size_t weld_k_pcb_candidates(const float *d, const float *sum, const struct weld_pcb_bound *b,
			     float lo, float hi, float cut, size_t len, float *tmp, uint32_t *idx)
{
	unsigned char need[BOUND_BLOCK];
	size_t m = 0;

	(void)tmp;
	if (!(cut > 0)) {
		for (size_t j = 0; j < len; j++)
			idx[j] = (uint32_t)j;
		return len;
	}
	for (size_t j0 = 0; j0 < len; j0 += BOUND_BLOCK) {
		size_t n = len - j0 < BOUND_BLOCK ? len - j0 : BOUND_BLOCK;

		flags_cut(d + j0, sum + j0, b, lo, hi, cut, n, need);
		m += pick(need, n, j0, idx + m);
	}
	return m;
}

size_t weld_k_pcb_window_candidates(const float *d, const float *sum,
				    const struct weld_pcb_bound *b, float lo, float hi, float cut,
				    float above, float top, size_t len, uint32_t *idx,
				    uint64_t *n_above, uint64_t *in_bits)
{
	unsigned char need[BOUND_BLOCK], inb[BOUND_BLOCK];
	size_t m = weld_k_pcb_window_chords(d, sum, b, lo, hi, cut, above, top, len, idx, n_above,
					    in_bits);
	uint64_t na = 0;

	if (m != SIZE_MAX)
		return m;
	m = 0;
	if (!(cut > 0)) {
		/* every element may exceed cut */
		if (in_bits)
			for (size_t w = 0; w * 64 < len; w++)
				in_bits[w] = ~UINT64_C(0);
		return weld_k_pcb_candidates(d, sum, b, lo, hi, cut, len, NULL, idx);
	}
	for (size_t j0 = 0; j0 < len; j0 += BOUND_BLOCK) {
		size_t n = len - j0 < BOUND_BLOCK ? len - j0 : BOUND_BLOCK;

		na += flags_window(d + j0, sum + j0, b, lo, hi, cut, above, top, n, need, inb);
		m += pick(need, n, j0, idx + m);
		if (in_bits)
			pack(inb, n, in_bits + j0 / 64);
	}
	*n_above += na;
	return m;
}

/* The scores of the elements whose bit is set in in_bits, straight from
 * the bits (sc cleared by the caller): beta as weld_k_pcb_beta_at() takes
 * it, no positions kept. */
static void scores_bits(const float *d, const float *sum, size_t n, const struct weld_pcb_unit *u,
			size_t len, struct weld_pcb_memo *memo, const uint64_t *in_bits, float *sc)
{
	struct weld_pcb_memo_entry e[1u << LOCAL_BITS];
	struct weld_pcb_memo local;
	float lo = u->lo, hi = u->hi, thr = u->thr, span = u->top - u->thr;

	if (!memo) {
		weld_pcb_memo_init(&local, e, LOCAL_BITS);
		memo = &local;
	}
	memo_use(memo, n, lo, hi);
	for (size_t w = 0; w * 64 < len; w++) {
		uint64_t v = in_bits[w];

		if (len - w * 64 < 64)
			v &= (UINT64_C(1) << (len - w * 64)) - 1;
		for (; v; v &= v - 1) {
			size_t j = w * 64 + (size_t)__builtin_ctzll(v);
			float beta = memo_intra(memo, clip_abs(d[j], lo, hi)) * tanh_f(d[j] * sum[j]);

			if (beta > thr)
				sc[j] = (beta - thr) / span;
		}
	}
}

void weld_k_pcb_scores(const float *d, const float *sum, size_t n, const struct weld_pcb_unit *u,
		       const struct weld_pcb_bound *b, size_t len, struct weld_pcb_memo *memo,
		       const uint64_t *in_bits, float *tmp, uint32_t *idx, float *sc)
{
	size_t m;

	/* top = thr: nothing scores (METHODS 12) */
	if (u->top == u->thr) {
		memset(sc, 0, len * sizeof(*sc));
		return;
	}
	if (in_bits && weld_k_pcb_scores_flags(d, sum, n, u, len, in_bits, tmp, sc))
		return;
	memset(sc, 0, len * sizeof(*sc));
	if (in_bits) {
		scores_bits(d, sum, n, u, len, memo, in_bits, sc);
		return;
	}
	m = weld_k_pcb_candidates(d, sum, b, u->lo, u->hi, u->thr, len, tmp, idx);
	weld_k_pcb_beta_at(d, sum, n, u->lo, u->hi, idx, m, memo, tmp);
	for (size_t k = 0; k < m; k++)
		if (tmp[k] > u->thr)
			sc[idx[k]] = (tmp[k] - u->thr) / (u->top - u->thr);
}

WELD_HOT void weld_k_pcb_beta_scores(const float *beta, const struct weld_pcb_unit *u, size_t len,
				     float *sc)
{
	float thr = u->thr, span = u->top - u->thr;

	if (u->top == u->thr) {
		memset(sc, 0, len * sizeof(*sc));
		return;
	}
	/* every quotient, then the select: on vectors (beta and sc may be
	 * the same array) */
	for (size_t j = 0; j < len; j++) {
		float v = (beta[j] - thr) / span;

		sc[j] = beta[j] > thr ? v : 0.0f;
	}
}

/* The clipped delta with its sign, 0 where delta is 0. */
static inline float clip_signed(float x, float lo, float hi)
{
	float a = clip_abs(x, lo, hi);

	return x > 0 ? a : x < 0 ? -a : 0.0f;
}

/* Step 6's sums over the first k <= 3 models at element j, in model
 * order: the numerator's terms (w clip(delta)) score and the scores. The
 * models past k repeat the first's pointers and are not added (a select,
 * so that the loop stays on vectors). */
static inline void mix_first(const float *const *x, const float *const *c,
			     const struct weld_pcb_unit *u, const float *w, size_t k, size_t j,
			     float *nm, float *dn)
{
	float a = (w[0] * clip_signed(x[0][j], u[0].lo, u[0].hi)) * c[0][j], b = c[0][j];
	float a1 = a + (w[1] * clip_signed(x[1][j], u[1].lo, u[1].hi)) * c[1][j];
	float b1 = b + c[1][j];

	a = k > 1 ? a1 : a;
	b = k > 1 ? b1 : b;
	a1 = a + (w[2] * clip_signed(x[2][j], u[2].lo, u[2].hi)) * c[2][j];
	b1 = b + c[2][j];
	*nm = k > 2 ? a1 : a;
	*dn = k > 2 ? b1 : b;
}

WELD_HOT void weld_k_pcb_mix(const float *const *d, const float *const *sc, size_t n,
			     const struct weld_pcb_unit *u, const float *w, const float *base,
			     float lambda, size_t len, float *restrict num, float *restrict den,
			     float *restrict out)
{
	size_t k = n < 3 ? n : 3;
	/* the first three models in one pass (as the sum's kernel) */
	const float *x[3] = { d[0], d[k > 1], d[k - 1] }, *c[3] = { sc[0], sc[k > 1], sc[k - 1] };
	const struct weld_pcb_unit v[3] = { u[0], u[k > 1], u[k - 1] };
	const float wv[3] = { w[0], w[k > 1], w[k - 1] };

	if (n == k) {
		for (size_t j = 0; j < len; j++) {
			float nm, dn;

			mix_first(x, c, v, wv, k, j, &nm, &dn);
			out[j] = base[j] + lambda * (nm / (dn > 1e-12f ? dn : 1e-12f));
		}
		return;
	}
	for (size_t j = 0; j < len; j++)
		mix_first(x, c, v, wv, k, j, &num[j], &den[j]);
	for (size_t s = k; s < n; s++) {
		const float *restrict xs = d[s], *restrict cs = sc[s];
		float lo = u[s].lo, hi = u[s].hi, ws = w[s];

		for (size_t j = 0; j < len; j++) {
			num[j] = num[j] + (ws * clip_signed(xs[j], lo, hi)) * cs[j];
			den[j] = den[j] + cs[j];
		}
	}
	for (size_t j = 0; j < len; j++)
		out[j] = base[j] + lambda * (num[j] / (den[j] > 1e-12f ? den[j] : 1e-12f));
}
