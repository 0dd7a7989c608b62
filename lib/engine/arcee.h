/*
 * arcee.h - arcee_fusion's per-row formulas (METHODS 11) on plain arrays:
 * the KL divergence of a row's softmaxes, the importance of each element,
 * and the choice between the base and the model. No files, no threads.
 */
#ifndef WELD_ARCEE_H
#define WELD_ARCEE_H

#include <stddef.h>

/*
 * imp[j] = |b[j] - a[j]| * float(kl) for one row of w elements, kl =
 * sum_j p_j log(p_j / q_j), p = softmax(b) + 1e-8, q = softmax(a) + 1e-8;
 * softmaxes (weld_exp(x - max x), elementary.h) and kl (the C library's
 * log) in double, summed in row order. scratch holds 2 * w doubles.
 */
void weld_k_arcee_importance(const float *a, const float *b, size_t w, double *scratch,
			     float *imp);
/* The two halves of it: float(kl) of the row, and imp[j] = |b[j] - a[j]| * k. */
float weld_k_arcee_kl(const float *a, const float *b, size_t w, double *scratch);
void weld_k_arcee_scale(const float *a, const float *b, size_t w, float k, float *imp);
/* out[j] = a[j] + (b[j] - a[j]) * m, m = 1 where imp[j] >= fence (in
 * double), else 0. */
void weld_k_arcee_apply(const float *a, const float *b, const float *imp, double fence,
			size_t len, float *out);

#endif
