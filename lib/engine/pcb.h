/*
 * pcb.h - PCB-Merging's per-element formulas (METHODS 12), on plain float
 * arrays, and the order statistics they need: keys that sort like the
 * values, and the k-th smallest of a small array. Nothing here knows about
 * files, tensors or threads.
 */
#ifndef WELD_PCB_H
#define WELD_PCB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>


/* Key of |x| (sorts like |x|), and back. */
static inline uint32_t weld_pcb_abs_key(float x)
{
	uint32_t u;

	memcpy(&u, &x, sizeof(u));
	return u & 0x7FFFFFFFu;
}

/* Key of a signed x (sorts like x, -0 just below +0), and back. */
static inline uint32_t weld_pcb_signed_key(float x)
{
	uint32_t u;

	memcpy(&u, &x, sizeof(u));
	return u & 0x80000000u ? ~u : u | 0x80000000u;
}

/*
 * Key of a beta (sorts like the value; METHODS 12 step 5): every NaN, whatever
 * its sign and payload, takes one key above +inf, that of the positive quiet
 * NaN 0x7FC00000, as a selection ranks a NaN above every value (weld(1),
 * NON-FINITE VALUES). The same on every machine, whatever sign its
 * arithmetic gives a NaN (inf - inf, 0 * inf).
 */
#define WELD_PCB_NAN_KEY 0xFFC00000u

static inline uint32_t weld_pcb_beta_key(float x)
{
	/* no branch: the loops that count keys stay fast */
	uint32_t nan = 0u - (uint32_t)(x != x);

	return (weld_pcb_signed_key(x) & ~nan) | (WELD_PCB_NAN_KEY & nan);
}

static inline float weld_pcb_key_float(uint32_t key, int is_signed)
{
	uint32_t u = !is_signed ? key : key & 0x80000000u ? key & 0x7FFFFFFFu : ~key;
	float f;

	memcpy(&f, &u, sizeof(f));
	return f;
}

/* Index (0-based, ascending) of the clip bounds and the drop threshold in a
 * unit of m elements (METHODS 12 steps 1 and 5: in double, truncated). */
uint64_t weld_pcb_lo_index(uint64_t m, double clip);
uint64_t weld_pcb_hi_index(uint64_t m, double clip);
uint64_t weld_pcb_thr_index(uint64_t m, double ratio);

/* The k-th smallest (0-based) of keys[0..n), which it reorders; tmp holds
 * n keys. A radix select: the same time on plateaus of equal keys. */
uint32_t weld_pcb_kth_key(uint32_t *keys, size_t n, size_t k, uint32_t *tmp);
/* The same with its low 16 bits cleared, at most the k-th smallest: two
 * bytes of the select instead of four. */
uint32_t weld_pcb_kth_floor(uint32_t *keys, size_t n, size_t k, uint32_t *tmp);
/* The lo-th smallest and the hi-th smallest key of |x[0..n)| in one pass,
 * when both ranks lie within 8 of an end (false, and nothing set, if not):
 * the clip bounds of a row. */
bool weld_pcb_clip_keys(const float *x, size_t n, uint64_t lo, uint64_t hi, uint32_t *klo,
			uint32_t *khi);
/* keys[0..n) sorted ascending (a radix sort), in keys or in tmp: the one
 * returned. */
const uint32_t *weld_pcb_sort_keys(uint32_t *keys, size_t n, uint32_t *tmp);

/* sum[j] = d[0][j] + d[1][j] + ... in model order (float32). */
void weld_k_pcb_sum(const float *const *d, size_t n, size_t len, float *sum);
/*
 * intra = exp(n N^2) depends on the clipped magnitude alone: a memo of it
 * by the magnitude's bits, for one unit at a time (it clears itself when
 * the clip bounds or n change), over the caller's 2^bits entries.
 * Keeping one per source and thread across tiles spares most exp calls.
 */
struct weld_pcb_memo_entry {
	uint32_t tag;           /* the magnitude's bits, 0xFFFFFFFF for none */
	float val;
};

struct weld_pcb_memo {
	float key[3];           /* the unit's lowest magnitude, span and n */
	unsigned bits;
	struct weld_pcb_memo_entry *e;      /* 2^bits */
};

void weld_pcb_memo_init(struct weld_pcb_memo *m, struct weld_pcb_memo_entry *e, unsigned bits);

/* beta of one model (steps 1-4): the clipped magnitude's exp(n N^2) times
 * tanh(delta * sum), weld_exp and weld_tanh (elementary.h) in double
 * rounded to float32; and the same at the m positions idx, into
 * beta[0..m), with the memo (NULL: one for the call). */
void weld_k_pcb_beta(const float *d, const float *sum, size_t n, float lo, float hi, size_t len,
		     float *beta);
void weld_k_pcb_beta_at(const float *d, const float *sum, size_t n, float lo, float hi,
			const uint32_t *idx, size_t m, struct weld_pcb_memo *memo, float *beta);

/*
 * Most elements score nothing, and need no exp or tanh to know it: bounds
 * of intra from a polynomial of exp, within 0.4 % (pcb.c), give beta at
 * most up * (delta * sum), and at most 0 where delta * sum is not positive.
 */
#define WELD_PCB_CHORDS 32        /* pieces of [0, 1] in the chord bounds */

struct weld_pcb_bound {
	float mn, span, fn;     /* N = (a - mn) / span, intra = exp(fn N^2) */
	float inv;              /* 1 / span, 0 if span is 0 (the bounds' N) */
	/* with chords, on piece i of N (pcb.c): exp(fn (i/32)^2), the rise to
	 * the next piece's, and the slope of the tangent there (per piece) */
	bool chords;
	float at[WELD_PCB_CHORDS], rise[WELD_PCB_CHORDS], slope[WELD_PCB_CHORDS];
};

/* The statistics of one model over one unit. */
struct weld_pcb_unit {
	float lo, hi;           /* clip bounds of |delta| */
	float thr, top;         /* drop threshold and largest of beta */
	struct weld_pcb_bound bound;    /* of beta, from lo and hi */
};

void weld_pcb_bound_init(struct weld_pcb_bound *b, size_t n, float lo, float hi);
/* The chords of b, for a unit's window pass: cheaper bounds where the
 * processor has AVX-512 (not set for more than 16 sources). */
void weld_pcb_bound_chords(struct weld_pcb_bound *b);
/* ub[j] >= beta_j >= lb[j] (lb = -inf where nothing is known: outside
 * 0 < delta * sum < 2^-13). */
void weld_k_pcb_bounds(const float *d, const float *sum, const struct weld_pcb_bound *b, float lo,
		       float hi, size_t len, float *ub, float *lb);
/* The positions j < len where beta may exceed cut > 0 (all of them if cut
 * is not positive), ascending, into idx; returns how many. tmp is unused. */
size_t weld_k_pcb_candidates(const float *d, const float *sum, const struct weld_pcb_bound *b,
			     float lo, float hi, float cut, size_t len, float *tmp, uint32_t *idx);
/* The same with a window above cut: positions j where beta may exceed cut,
 * except those where it surely exceeds above and cannot exceed top (a
 * largest beta known so far); those are counted in *n_above. in_bits (NULL:
 * none) gets bit j set where beta may exceed cut, the window's or not
 * (words of 64 bits, len rounded up). */
size_t weld_k_pcb_window_candidates(const float *d, const float *sum,
				    const struct weld_pcb_bound *b, float lo, float hi, float cut,
				    float above, float top, size_t len, uint32_t *idx,
				    uint64_t *n_above, uint64_t *in_bits);
/* The same from b's chords (pcb_chords.c), or SIZE_MAX (nothing done)
 * where they are not set, cut is not positive or the processor lacks
 * AVX-512. */
size_t weld_k_pcb_window_chords(const float *d, const float *sum, const struct weld_pcb_bound *b,
				float lo, float hi, float cut, float above, float top, size_t len,
				uint32_t *idx, uint64_t *n_above, uint64_t *in_bits);
/* Step 5 for one model: sc[j] = (beta_j - thr)/(top - thr) where beta_j >
 * thr, else 0 (and 0 everywhere when top = thr); from delta, or from beta.
 * in_bits (NULL: none) has a bit set at least where beta may exceed thr
 * (weld_k_pcb_window_candidates' for a cut <= thr): beta is then computed
 * there, and no bound is taken. */
void weld_k_pcb_scores(const float *d, const float *sum, size_t n, const struct weld_pcb_unit *u,
		       const struct weld_pcb_bound *b, size_t len, struct weld_pcb_memo *memo,
		       const uint64_t *in_bits, float *tmp, uint32_t *idx, float *sc);
/* The same from in_bits (not NULL) with exp on vectors (pcb_scores.c);
 * false, nothing done, where the processor lacks AVX-512 or n > 16. */
bool weld_k_pcb_scores_flags(const float *d, const float *sum, size_t n,
			     const struct weld_pcb_unit *u, size_t len, const uint64_t *in_bits,
			     float *tmp, float *sc);
/* weld_k_pcb_beta() and weld_k_pcb_beta_at() on vectors, the same bits
 * (pcb_scores.c; no memo); false,
 * nothing done, where the processor lacks AVX-512 or n > 16. */
bool weld_k_pcb_beta_vec(const float *d, const float *sum, size_t n, float lo, float hi,
			 size_t len, float *beta);
bool weld_k_pcb_beta_at_vec(const float *d, const float *sum, size_t n, float lo, float hi,
			    const uint32_t *idx, size_t m, float *beta);
/* intra (step 2) of a clipped magnitude a, and tanh (step 3) of p, as
 * beta takes them (float(exp(n N^2)) with N = (a - mn) / span, 0 when
 * span is not positive; p itself where |p| < 2^-13). */
float weld_pcb_intra(float a, float mn, float span, float fn);
float weld_pcb_tanh(float p);
void weld_k_pcb_beta_scores(const float *beta, const struct weld_pcb_unit *u, size_t len,
			    float *sc);
/* Step 6: out = base + lambda * sum_i w_i clip(d_i) sc_i / max(sum_i sc_i,
 * 1e-12), summed in model order; num and den hold len floats. */
void weld_k_pcb_mix(const float *const *d, const float *const *sc, size_t n,
		    const struct weld_pcb_unit *u, const float *w, const float *base, float lambda,
		    size_t len, float *restrict num, float *restrict den, float *restrict out);

#endif
