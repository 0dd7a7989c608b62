/*
 * sce.h - sce's per-element formulas (METHODS 5) on plain float arrays:
 * the variance across models, the selection mask, and the sign-erased,
 * energy-weighted combination. Nothing here knows about files or threads.
 */
#ifndef WELD_SCE_H
#define WELD_SCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* v[j] = sum_i (t_i[j] - mean[j])^2 / n, mean = (sum_i t_i[j]) / n; float32,
 * sums in model order. */
void weld_k_sce_var(const float *const *t, size_t n, size_t len, float *v);
/*
 * keep[j] for the top-k selection of the variances v (keys of v compared
 * with thr): every key above thr, and of those equal to it the first
 * keep_equal in position order, *run counting the equal ones seen so far
 * (it advances). keep_all / keep_none override.
 */
void weld_k_sce_mask(const float *v, size_t len, uint32_t thr, uint64_t keep_equal,
		     uint64_t *run, bool keep_all, bool keep_none, unsigned char *keep);
/*
 * The same selection when the equal keys kept are known by position:
 * keep[j] = key > thr, or key = thr and first + j < cut (first is the flat
 * index of v[0]).
 */
void weld_k_sce_mask_cut(const float *v, size_t len, uint32_t thr, uint64_t first, uint64_t cut,
			 unsigned char *keep);
/* sq[j] = t[j]^2 where keep[j], else 0. */
void weld_k_sce_square(const float *t, const unsigned char *keep, size_t len, float *sq);
/*
 * out = base + sum_i a_i m_i t_i / max(sum_i a_i m_i, 1e-6), t_i zeroed
 * where !keep, m_i = [sign(t_i) = s], s = +1 where sum_i t_i >= 0 else -1.
 */
void weld_k_sce_combine(const float *const *t, const unsigned char *keep, size_t n,
			const float *a, const float *base, size_t len, float *out);

#endif
