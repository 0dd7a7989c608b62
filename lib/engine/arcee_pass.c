/*
 * arcee_pass.c - arcee_fusion in the streaming engine (METHODS 11).
 *
 * Each row (the last dimension) is whole in one tile, so its KL divergence
 * and its elements' importance are computed in memory. The fence
 * Q(.5) + 1.5 (Q(.75) - Q(.25)) needs three exact quantiles of the
 * importance over the whole tensor (no sampling of values):
 *  - A SAMPLE pass over one super-tile in 16 (sample.h) counts the high
 *    16 bits of the importance keys, and the zeros. Each quantile's rank
 *    is guessed from it, with a margin of four standard errors, and the
 *    whole bins around it become its range.
 *  - A RANGE pass counts the keys below each range and the zeros, and
 *    records the keys inside the ranges (zeros only counted: unchanged
 *    elements can be most of a tensor). When each rank falls inside its
 *    range, the records give its key (hist_pass.c): the sample decides
 *    only which passes run, never a value.
 *  - Otherwise (a guess missed, or the ranges would not fit the record
 *    room) a HI pass counts the high 16 bits of all the keys, a LO pass
 *    the low 16 bits inside the three bins that hold the wanted ranks.
 * Then APPLY: reads in all 2 and the sample, 3 when the ranges do not fit,
 * 4 when a guess misses; a 0-D tensor is the model's value, one read. A
 * row's KL divergence (two softmaxes, a log per element) is the costly
 * part and the same in every read: the first whole read keeps it, one
 * float per row, for the others, within a sixty-fourth of --max-memory (a
 * tensor of more rows computes it in each read).
 */
#include "exec.h"
#include "arcee.h"
#include "hist_pass.h"
#include "target_clones.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

/* The key of +0, the importance of an unchanged element. */
#define ZERO_KEY 0x80000000u

/* The wanted quantiles, as (source, slot) of the histogram tables. */
static const struct { size_t s; int q; double x; } quantile[3] = {
	{ 0, 0, 0.25 }, { 0, 1, 0.5 }, { 1, 0, 0.75 },
};

/* Importance of the tile's len elements (whole rows, the first at flat
 * index g), in scratch. */
static float *tile_importance(struct exec *e, const struct weld_job *j, struct slice_ctx *c,
			      uint64_t g, size_t len)
{
	struct hist_exec *h = e->hs;
	size_t t = (size_t)(c - e->slices), rl = (size_t)row_len(j);
	double *scratch = (double *)(void *)(e->rank_scratch + t * RANK_SCRATCH * e->tile_elems);

	for (size_t r = 0; r < len; r += rl) {
		uint64_t row = (g + r) / rl;
		float k;

		if (h->kl_rows && h->kl_known) {
			k = h->kl[row];
		} else {
			k = weld_k_arcee_kl(c->base + r, c->vals + r, rl, scratch);
			if (h->kl_rows)
				h->kl[row] = k;
		}
		weld_k_arcee_scale(c->base + r, c->vals + r, rl, k, c->scratch + r);
	}
	return c->scratch;
}

/* Room for the rows' kl of job j, if they fit (kl_rows = 0 if not). */
static void kl_room(struct exec *e, const struct weld_job *j)
{
	struct hist_exec *h = e->hs;
	uint64_t rows = j->nelem / row_len(j), cap = e->opts->max_memory / 64 / sizeof(float);

	h->kl_rows = 0;
	h->kl_known = false;
	if (rows > cap)
		return;
	if (rows > h->kl_cap) {
		float *k = realloc(h->kl, (size_t)rows * sizeof(float));

		if (!k)
			return;         /* computed in each read instead */
		h->kl = k;
		h->kl_cap = rows;
	}
	h->kl_rows = rows;
}

/* HI: count the high 16 bits of the importances' keys (taken in lanes, a
 * block at a time, then counted). */
#define BLOCK 16
WELD_HOT static void count_high(const float *imp, size_t len, uint32_t *hh)
{
	uint32_t bin[BLOCK];

	for (size_t i = 0; i < len; i += BLOCK) {
		size_t n = len - i < BLOCK ? len - i : BLOCK;

		for (size_t l = 0; l < n; l++)
			bin[l] = weld_pcb_signed_key(imp[i + l]) >> 16;
		for (size_t l = 0; l < n; l++)
			hh[bin[l]]++;
	}
}

/* LO: count the low 16 bits of the keys in the three quantiles' bins (two
 * may share one), each in its slot's histogram. Few keys fall in them: a
 * test of a block first, in lanes. */
WELD_HOT static void count_low(const struct hist_exec *h, const float *imp, size_t len,
			       uint32_t *hh)
{
	uint32_t bin[3];
	size_t slot[3], i = 0;

	for (int w = 0; w < 3; w++) {
		bin[w] = h->bin[quantile[w].s][quantile[w].q];
		slot[w] = (quantile[w].s * 2 + (size_t)quantile[w].q) * WELD_HP_BINS;
	}
	while (i < len) {
		size_t n = len - i < BLOCK ? len - i : BLOCK;
		uint32_t hit = 0;

		for (size_t l = 0; l < n; l++) {
			uint32_t k = weld_pcb_signed_key(imp[i + l]) >> 16;

			hit |= ((uint32_t)(k == bin[0]) | (uint32_t)(k == bin[1]) |
				(uint32_t)(k == bin[2])) << l;
		}
		for (; hit; hit &= hit - 1) {
			uint32_t k = weld_pcb_signed_key(imp[i + (size_t)__builtin_ctz(hit)]);

			for (int w = 0; w < 3; w++)
				hh[slot[w] + (k & 0xFFFF)] += k >> 16 == bin[w];
		}
		i += n;
	}
}

/* SAMPLE: count_high and the zeros. */
static void count_sample(struct exec *e, const float *imp, size_t len)
{
	uint64_t z = 0;

	count_high(imp, len, weld_exec_hist_mine(e));
	for (size_t i = 0; i < len; i++)
		z += weld_pcb_signed_key(imp[i]) == ZERO_KEY;
	e->hs->thread_count[omp_get_thread_num()] += z;
}

/* Whether key k lies in one of the three ranges [lo[w], lo[w] + span[w]]
 * (a zero is counted, not recorded). */
static inline uint32_t in_ranges(const uint32_t *lo, const uint32_t *span, uint32_t k)
{
	return ((uint32_t)(k - lo[0] <= span[0]) | (uint32_t)(k - lo[1] <= span[1]) |
		(uint32_t)(k - lo[2] <= span[2])) &
	       (uint32_t)(k != ZERO_KEY);
}

/* The range pass's counts over elements i0..len, one at a time: the keys
 * below each range and the zeros into under, those inside the ranges into
 * list from n; returns how many are listed. */
static size_t ranges_generic(const float *imp, size_t i0, size_t len, const uint32_t *lo,
			     const uint32_t *span, uint64_t *under, uint32_t *list, size_t n)
{
	for (size_t i = i0; i < len; i++) {
		uint32_t k = weld_pcb_signed_key(imp[i]);

		for (int w = 0; w < 3; w++)
			under[w] += k < lo[w];
		under[3] += k == ZERO_KEY;
		list[n] = k;
		n += in_ranges(lo, span, k);
	}
	return n;
}

#if WELD_AVX512 && !defined(__SANITIZE_ADDRESS__)
#include <immintrin.h>

/* Sixteen at a time: the counts in lanes, the listed keys compressed into
 * a register and all 16 lanes stored (list has room: no more are listed
 * than looked at). */
__attribute__((target("avx512f,popcnt")))
static size_t ranges_avx512(const float *imp, size_t len, const uint32_t *lo,
			    const uint32_t *span, uint64_t *under, uint32_t *list)
{
	const __m512i top = _mm512_set1_epi32((int)ZERO_KEY), one = _mm512_set1_epi32(1);
	const __m512i l0 = _mm512_set1_epi32((int)lo[0]), l1 = _mm512_set1_epi32((int)lo[1]);
	const __m512i l2 = _mm512_set1_epi32((int)lo[2]), s0 = _mm512_set1_epi32((int)span[0]);
	const __m512i s1 = _mm512_set1_epi32((int)span[1]), s2 = _mm512_set1_epi32((int)span[2]);
	__m512i c0 = _mm512_setzero_si512(), c1 = c0, c2 = c0, c3 = c0;
	size_t i = 0, n = 0;

	for (; i + 16 <= len; i += 16) {
		__m512i u = _mm512_loadu_si512((const void *)(imp + i));
		__m512i sg = _mm512_srai_epi32(u, 31);
		/* weld_pcb_signed_key */
		__m512i k = _mm512_or_si512(_mm512_xor_si512(u, sg), _mm512_andnot_si512(sg, top));
		__mmask16 z = _mm512_cmpeq_epi32_mask(k, top), in;

		c0 = _mm512_mask_add_epi32(c0, _mm512_cmplt_epu32_mask(k, l0), c0, one);
		c1 = _mm512_mask_add_epi32(c1, _mm512_cmplt_epu32_mask(k, l1), c1, one);
		c2 = _mm512_mask_add_epi32(c2, _mm512_cmplt_epu32_mask(k, l2), c2, one);
		c3 = _mm512_mask_add_epi32(c3, z, c3, one);
		in = _mm512_cmple_epu32_mask(_mm512_sub_epi32(k, l0), s0) |
		     _mm512_cmple_epu32_mask(_mm512_sub_epi32(k, l1), s1) |
		     _mm512_cmple_epu32_mask(_mm512_sub_epi32(k, l2), s2);
		in &= (__mmask16)~z;
		_mm512_storeu_si512(list + n, _mm512_maskz_compress_epi32(in, k));
		n += (size_t)__builtin_popcount(in);
	}
	under[0] += (uint64_t)_mm512_reduce_add_epi32(c0);
	under[1] += (uint64_t)_mm512_reduce_add_epi32(c1);
	under[2] += (uint64_t)_mm512_reduce_add_epi32(c2);
	under[3] += (uint64_t)_mm512_reduce_add_epi32(c3);
	return ranges_generic(imp, i, len, lo, span, under, list, n);
}
#endif

/* RANGE: the keys below each range (thread_below) and the zeros
 * (thread_count) into the thread's counts, the keys inside the ranges
 * into list (len of room), then the room for the tile's records taken at
 * once. */
static void record_ranges(struct exec *e, const float *imp, size_t len, uint32_t *list)
{
	struct hist_exec *h = e->hs;
	int th = omp_get_thread_num();
	uint64_t under[4] = { 0 };      /* below each range, and the zeros */
	size_t cap = (size_t)(e->plan->rec_bytes / 4), n, at;
	uint32_t lo[3], span[3];

	for (int w = 0; w < 3; w++) {
		lo[w] = h->range_lo[w];
		span[w] = h->range_hi[w] - lo[w];
	}
#if WELD_AVX512 && !defined(__SANITIZE_ADDRESS__)
	/* a tile's counts per lane stay below 2^31; the sanitizer build runs
	 * the plain loop, which compare_builds.sh then checks against this */
	if (__builtin_cpu_supports("avx512f") && len < (1ull << 35))
		n = ranges_avx512(imp, len, lo, span, under, list);
	else
#endif
		n = ranges_generic(imp, 0, len, lo, span, under, list, 0);
	for (int w = 0; w < 3; w++)
		h->thread_below[WELD_HP_RANGES * th + w] += under[w];
	h->thread_count[th] += under[3];
	if (!n)
		return;
#pragma omp atomic capture
	{
		at = h->eq_n;
		h->eq_n += n;
	}
	if (at < cap)
		memcpy(h->eq_rec + at, list, (n < cap - at ? n : cap - at) * sizeof(*list));
}

void weld_exec_arcee_tile(struct exec *e, const struct weld_job *j, struct slice_ctx *c,
			  uint64_t g, size_t len, enum pass pass)
{
	const float *imp = tile_importance(e, j, c, g, len);

	switch (pass) {
	case P_ARCEE_SAMPLE:
		count_sample(e, imp, len);
		return;
	case P_ARCEE_RANGE:
		record_ranges(e, imp, len, (uint32_t *)(void *)c->out);
		return;
	case P_ARCEE_HI:
		count_high(imp, len, weld_exec_hist_mine(e));
		return;
	default:
		count_low(e->hs, imp, len, weld_exec_hist_mine(e));
		return;
	}
}

void weld_exec_arcee_apply(struct exec *e, const struct weld_job *j, struct slice_ctx *c,
			   uint64_t first, uint64_t g, size_t len)
{
	if (j->ndim == 0) {
		/* METHODS 11: a 0-D tensor is the model's */
		for (size_t i = 0; i < len; i++)
			c->out[i] = c->vals[i];
	} else {
		weld_k_arcee_apply(c->base, c->vals, tile_importance(e, j, c, g, len), e->hs->fence,
				   len, c->out);
	}
	weld_exec_put_tile(e, j, c, first, g, len);
}

/* The wanted rank of quantile w (0-based, ascending, over m elements). */
static uint64_t rank_of(int w, uint64_t m)
{
	return (uint64_t)floor(quantile[w].x * (double)(m - 1));
}

/* From the sample's totals (ns keys, zs zeros, f elements per sampled
 * one): quantile w's range, and the records it is expected to add. */
static double guess_range(struct exec *e, int w, uint64_t ns, uint64_t zs, double f,
			  uint64_t m)
{
	struct hist_exec *h = e->hs;
	double rank = (double)rank_of(w, m) / f, p = rank / (double)ns, in;
	uint32_t lo, hi;

	p = p < 0 ? 0 : p > 1 ? 1 : p;
	in = (double)weld_exec_hist_bins_around(e, rank, 4 * sqrt((double)ns * p * (1 - p)) + 16,
						&lo, &hi);
	if (lo <= ZERO_KEY >> 16 && ZERO_KEY >> 16 <= hi)
		in -= (double)zs;       /* zeros are counted, not recorded */
	h->range_lo[w] = lo << 16;
	h->range_hi[w] = hi << 16 | 0xFFFF;
	return in * f;
}

/* Quantile w's key from the RANGE pass's records, when its rank fell in
 * its range (else false): the records inside the range with the zeros
 * among them, when the range holds +0. */
static bool key_in_range(struct exec *e, int w, uint64_t m, const uint64_t *below,
			 uint64_t zeros, uint32_t *key)
{
	struct hist_exec *h = e->hs;
	uint32_t lo = h->range_lo[w], hi = h->range_hi[w];
	uint64_t r = rank_of(w, m), in = 0, under = 0, nz, eqb, eq;

	for (size_t i = 0; i < h->eq_n; i++) {
		in += h->eq_rec[i] >= lo && h->eq_rec[i] <= hi;
		under += h->eq_rec[i] >= lo && h->eq_rec[i] < ZERO_KEY;
	}
	nz = lo <= ZERO_KEY && ZERO_KEY <= hi ? zeros : 0;
	if (r < below[w] || r - below[w] >= in + nz)
		return false;
	r -= below[w];
	if (nz && r >= under && r < under + nz) {
		*key = ZERO_KEY;
		return true;
	}
	if (nz && r >= under)
		r -= nz;
	*key = weld_exec_hist_key_at(e, h->eq_rec, 1, h->eq_n, lo, hi, r, &eqb, &eq);
	return true;
}

/*
 * The three quantiles' keys by the sample's ranges (see the top of the
 * file): *done false when the ranges would not fit the record room, or a
 * rank fell outside its range.
 */
static int keys_in_ranges(struct exec *e, const struct weld_job *j, uint32_t *key, bool *done,
			  struct weld_error *err)
{
	struct hist_exec *h = e->hs;
	uint64_t m = j->nelem, ns, zs, below[3] = { 0 }, zeros = 0;
	size_t cap = (size_t)(e->plan->rec_bytes / 4);
	double f, want = 0;

	*done = false;
	if (weld_exec_hist_sample(e, j, P_ARCEE_SAMPLE, &ns, &zs, err) < 0)
		return -1;
	if (!ns || !weld_exec_hist_records(e))
		return 0;
	f = (double)m / (double)ns;
	for (int w = 0; w < 3; w++)
		want += guess_range(e, w, ns, zs, f, m);
	if (want * 1.25 + 1024 > (double)cap)
		return 0;
	h->eq_n = 0;
	if (weld_exec_hist_pass(e, &j, 1, P_ARCEE_RANGE, err) < 0)
		return -1;
	h->kl_known = h->kl_rows > 0;
	for (int t = 0; t < e->n_threads; t++) {
		for (int w = 0; w < 3; w++)
			below[w] += h->thread_below[WELD_HP_RANGES * t + w];
		zeros += h->thread_count[t];
	}
	if (h->eq_n > cap)
		return 0;
	for (int w = 0; w < 3; w++)
		if (!key_in_range(e, w, m, below, zeros, &key[w]))
			return 0;
	*done = true;
	return 0;
}

/* The three quantiles' keys by a HI and a LO pass. */
static int keys_by_histograms(struct exec *e, const struct weld_job *j, uint32_t *key,
			      struct weld_error *err)
{
	struct hist_exec *h = e->hs;

	for (int w = 0; w < 3; w++)
		h->rank[quantile[w].s][quantile[w].q] = rank_of(w, j->nelem);
	if (weld_exec_hist_pass(e, &j, 1, P_ARCEE_HI, err) < 0)
		return -1;
	h->kl_known = h->kl_rows > 0;
	for (int w = 0; w < 3; w++)
		weld_exec_hist_pick_bin(e, 0, quantile[w].s, quantile[w].q);
	if (weld_exec_hist_pass(e, &j, 1, P_ARCEE_LO, err) < 0)
		return -1;
	for (int w = 0; w < 3; w++)
		key[w] = weld_exec_hist_pick_key(e, quantile[w].s, quantile[w].q);
	return 0;
}

int weld_exec_arcee_unit(struct exec *e, const struct weld_job *j, struct weld_error *err)
{
	struct hist_exec *h = e->hs;
	uint32_t key[3];
	double q[3];
	bool done;

	h->kl_rows = 0;
	if (j->ndim == 0 || !j->nelem)
		return 0;
	kl_room(e, j);
	if (keys_in_ranges(e, j, key, &done, err) < 0 ||
	    (!done && keys_by_histograms(e, j, key, err) < 0))
		return -1;
	for (int w = 0; w < 3; w++)
		q[w] = weld_pcb_key_float(key[w], 1);
	h->fence = q[1] + 1.5 * (q[2] - q[0]);
	return 0;
}
