/*
 * pcb_tails.c - pcb's clip bounds (METHODS 12 step 1): the floor(d rho)-th
 * smallest and the trunc(d (1 - rho) - 1)-th smallest |delta| of a unit,
 * both near an end of the order when rho is small, from one pass.
 *
 * Each thread keeps, per source, the k smallest and the k largest keys it
 * has seen: new keys go into a buffer of 2k while they beat the k-th kept
 * one; a full buffer is sorted and cut back to k. The union over threads
 * holds the unit's k smallest and k largest, whatever the threads saw, so
 * the two keys do not depend on threads or chunks. Almost every key is
 * refused by one comparison per tail, on vectors (16 at a time with
 * AVX-512, else blocks of 256 skipped whole).
 */
#include "exec.h"
#include "pcb.h"
#include "pcb_tails.h"
#include "pcb_window.h"
#include "target_clones.h"

#include <omp.h>
#include <stdlib.h>
#include <string.h>

#define TAIL_MAX (1u << 16)     /* most keys a tail may need */

/* The keys each tail needs for a unit of m elements. */
static uint64_t tail_keys(uint64_t m, double clip)
{
	uint64_t lo = weld_pcb_lo_index(m, clip), hi = weld_pcb_hi_index(m, clip);

	return lo + 1 > m - hi ? lo + 1 : m - hi;
}

uint64_t weld_pcb_tails_bytes(uint64_t m, size_t nsrc, int threads, double clip, uint64_t grant)
{
	uint64_t k = tail_keys(m, clip), bytes;

	if (k > TAIL_MAX)
		return 0;
	/* per thread two tails per source and a buffer; the union, twice */
	bytes = sizeof(struct pcb_tails) +
		(uint64_t)threads * (sizeof(struct pcb_tail_thread) +
				     (2 * nsrc + 1 + 2) * 2 * k * sizeof(uint32_t));
	return bytes <= grant / 16 ? bytes : 0;
}

struct pcb_tails *weld_pcb_tails_new(const struct exec *e, size_t nsrc, uint64_t m, double clip)
{
	struct pcb_tails *t;
	uint64_t lo = weld_pcb_lo_index(m, clip), hi = weld_pcb_hi_index(m, clip);
	uint64_t k = tail_keys(m, clip);

	if (!weld_pcb_tails_bytes(m, nsrc, e->n_threads, clip, e->plan->pcb_grant) ||
	    !(t = calloc(1, sizeof(*t))))
		return NULL;
	t->nsrc = nsrc;
	t->m = m;
	t->lo_rank = lo;
	t->hi_rank = hi;
	t->k = (size_t)k;
	t->cap = 2 * t->k;
	t->n_threads = e->n_threads;
	t->th = calloc((size_t)e->n_threads, sizeof(*t->th));
	/* the union of the threads' tails, and room to sort it */
	t->all = malloc(2 * (size_t)e->n_threads * t->cap * sizeof(uint32_t));
	if (!t->th || !t->all) {
		weld_pcb_tails_free(t);
		return NULL;
	}
	for (int i = 0; i < e->n_threads; i++) {
		struct pcb_tail_thread *h = &t->th[i];

		h->small = malloc(nsrc * t->cap * sizeof(uint32_t));
		h->large = malloc(nsrc * t->cap * sizeof(uint32_t));
		h->tmp = malloc(t->cap * sizeof(uint32_t));
		if (!h->small || !h->large || !h->tmp) {
			weld_pcb_tails_free(t);
			return NULL;
		}
		for (size_t s = 0; s < nsrc; s++) {
			h->below[s] = INT64_MAX;
			h->above[s] = -1;
		}
	}
	return t;
}

void weld_pcb_tails_free(struct pcb_tails *t)
{
	if (!t)
		return;
	for (int i = 0; t->th && i < t->n_threads; i++) {
		free(t->th[i].small);
		free(t->th[i].large);
		free(t->th[i].tmp);
	}
	free(t->th);
	free(t->all);
	free(t);
}

/* Cut a full buffer back to its k smallest (or largest); returns the new
 * bound for keys to be kept. */
static int64_t cut_small(const struct pcb_tails *t, uint32_t *buf, uint32_t *tmp)
{
	const uint32_t *sorted = weld_pcb_sort_keys(buf, t->cap, tmp);

	memmove(buf, sorted, t->k * sizeof(*buf));
	return buf[t->k - 1];
}

static int64_t cut_large(const struct pcb_tails *t, uint32_t *buf, uint32_t *tmp)
{
	const uint32_t *sorted = weld_pcb_sort_keys(buf, t->cap, tmp);

	memmove(buf, sorted + t->cap - t->k, t->k * sizeof(*buf));
	return buf[0];
}

/* Keys per block of the check below. */
#define TAIL_BLOCK 256

/*
 * Whether some key of x[0..n) is below b or at least a (uint32 keys: both
 * bounds made so by the caller), on vectors: after the first tiles of a
 * unit almost no block holds one, and the others are skipped whole.
 */
WELD_HOT static unsigned block_hits(const float *restrict x, size_t n, uint32_t b, uint32_t a)
{
	unsigned any = 0;

	for (size_t i = 0; i < n; i++) {
		uint32_t k = weld_pcb_abs_key(x[i]);

		any |= (k < b) | (k >= a);
	}
	return any;
}

/* Take key k into the tails of one source (its buffers and bounds). */
static inline void take(const struct pcb_tails *t, uint32_t *tmp, uint32_t k, uint32_t *small,
			size_t *ns, int64_t *below, uint32_t *large, size_t *nl, int64_t *above)
{
	if (k < *below) {
		small[(*ns)++] = k;
		if (*ns == t->cap) {
			*below = cut_small(t, small, tmp);
			*ns = t->k;
		}
	}
	if (k > *above) {
		large[(*nl)++] = k;
		if (*nl == t->cap) {
			*above = cut_large(t, large, tmp);
			*nl = t->k;
		}
	}
}

#if WELD_AVX512
#include <immintrin.h>

/*
 * The same scan 16 keys at a time: the lanes below *below or above *above
 * as a mask, and only those taken, in order (the bounds move as keys are
 * taken: a lane flagged by an older bound is tested again in take()).
 */
__attribute__((target("avx512f")))
static void scan_avx512(const struct pcb_tails *t, uint32_t *tmp, const float *x, size_t len,
			uint32_t *small, size_t *ns, int64_t *below, uint32_t *large, size_t *nl,
			int64_t *above)
{
	const __m512i absmask = _mm512_set1_epi32(0x7FFFFFFF);

	for (size_t i = 0; i < len; i += 16) {
		__mmask16 lm = len - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (len - i)) - 1);
		__m512i k = _mm512_and_si512(_mm512_maskz_loadu_epi32(lm, x + i), absmask);
		/* keys are below 2^31: both bounds as uint32 */
		uint32_t b = *below > UINT32_MAX ? UINT32_MAX : (uint32_t)*below;
		__mmask16 hit = _mm512_mask_cmplt_epu32_mask(lm, k, _mm512_set1_epi32((int)b)) |
				_mm512_mask_cmpgt_epu32_mask(lm, k, _mm512_set1_epi32((int)(uint32_t)*above));

		for (unsigned h = hit; h; h &= h - 1)
			take(t, tmp, weld_pcb_abs_key(x[i + (size_t)__builtin_ctz(h)]), small, ns, below,
			     large, nl, above);
	}
}

static bool scan_fast(const struct pcb_tails *t, uint32_t *tmp, const float *x, size_t len,
		      uint32_t *small, size_t *ns, int64_t *below, uint32_t *large, size_t *nl,
		      int64_t *above)
{
	if (!__builtin_cpu_supports("avx512f"))
		return false;
	scan_avx512(t, tmp, x, len, small, ns, below, large, nl, above);
	return true;
}
#else
static bool scan_fast(const struct pcb_tails *t, uint32_t *tmp, const float *x, size_t len,
		      uint32_t *small, size_t *ns, int64_t *below, uint32_t *large, size_t *nl,
		      int64_t *above)
{
	(void)t, (void)tmp, (void)x, (void)len, (void)small, (void)ns, (void)below;
	(void)large, (void)nl, (void)above;
	return false;
}
#endif

/* The generic scan: blocks of TAIL_BLOCK keys checked on vectors first
 * and skipped whole when no key can enter a tail. */
static void scan_blocks(const struct pcb_tails *t, uint32_t *tmp, const float *x, size_t len,
			uint32_t *small, size_t *ns, int64_t *below, uint32_t *large, size_t *nl,
			int64_t *above)
{
	for (size_t i0 = 0; i0 < len; i0 += TAIL_BLOCK) {
		size_t n = len - i0 < TAIL_BLOCK ? len - i0 : TAIL_BLOCK;

		/* keys are below 2^31: k < below and k > above as uint32 */
		if (!block_hits(x + i0, n, *below > UINT32_MAX ? UINT32_MAX : (uint32_t)*below,
				(uint32_t)(*above + 1)))
			continue;
		for (size_t i = i0; i < i0 + n; i++)
			take(t, tmp, weld_pcb_abs_key(x[i]), small, ns, below, large, nl, above);
	}
}

void weld_pcb_tails_tile(struct pcb_tails *t, const struct exec *e, const struct slice_ctx *c,
			 size_t len)
{
	struct pcb_tail_thread *h = &t->th[omp_get_thread_num()];

	for (size_t s = 0; s < t->nsrc; s++) {
		const float *x = c->vals + s * e->tile_elems;
		uint32_t *small = h->small + s * t->cap, *large = h->large + s * t->cap;

		if (!scan_fast(t, h->tmp, x, len, small, &h->n_small[s], &h->below[s], large,
			       &h->n_large[s], &h->above[s]))
			scan_blocks(t, h->tmp, x, len, small, &h->n_small[s], &h->below[s], large,
				    &h->n_large[s], &h->above[s]);
	}
}

/* Every thread's keys of one tail of source s, sorted; *n of them. */
static const uint32_t *gather(const struct pcb_tails *t, size_t s, int large, uint32_t *all,
			      size_t *n)
{
	size_t at = 0;

	for (int i = 0; i < t->n_threads; i++) {
		const struct pcb_tail_thread *h = &t->th[i];
		size_t c = large ? h->n_large[s] : h->n_small[s];

		memcpy(all + at, (large ? h->large : h->small) + s * t->cap, c * sizeof(*all));
		at += c;
	}
	*n = at;
	return weld_pcb_sort_keys(all, at, all + (size_t)t->n_threads * t->cap);
}

void weld_pcb_tails_keys(const struct pcb_tails *t, size_t s, uint32_t *lo, uint32_t *hi)
{
	const uint32_t *sorted;
	size_t n;

	sorted = gather(t, s, 0, t->all, &n);
	*lo = sorted[t->lo_rank];
	sorted = gather(t, s, 1, t->all, &n);
	*hi = sorted[n - (t->m - t->hi_rank)];
}
