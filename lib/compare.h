/*
 * compare.h - element-wise comparison of two tensors (weld diff).
 */
#ifndef WELD_COMPARE_H
#define WELD_COMPARE_H

#include "model.h"

/* Element-wise comparison of two float tensors of the same size. */
struct weld_diff {
	double max_abs;     /* largest |a - b| (NaN if either holds a NaN there) */
	double rms;         /* sqrt(mean((a - b)^2)) */
	double cosine;      /* a.b / (|a| |b|); 1 if both are zero, 0 if one is */
	uint64_t n_diff;    /* elements whose bits differ after decoding */
};
int weld_model_compare(const weld_model *a, size_t ia, const weld_model *b, size_t ib,
		       struct weld_diff *out, struct weld_error *err);

#endif
