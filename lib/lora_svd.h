/*
 * lora_svd.h - the truncated SVD of one weight delta, as LoRA factors
 * (METHODS 17). Plain arrays, row-major, double; LAPACK (dgesdd) and BLAS
 * do the work. Nothing here knows of files or models.
 *
 * For Δ [m × n] = U·Σ·Vᵀ, rank ρ = min(max_rank, min(m, n)), then, when
 * eps > 0, ρ = min(ρ, #{σ > eps}). distribute: A = diag(√σ)·Vᵀ [ρ × n],
 * B = U·diag(√σ) [m × ρ]; otherwise A = diag(σ)·Vᵀ, B = U, so that
 * B·A is the rank-ρ truncation of Δ either way.
 */
#ifndef WELD_LORA_SVD_H
#define WELD_LORA_SVD_H

#include "base.h"

struct weld_lora_factors {
	size_t rank;            /* ρ (0: nothing to write) */
	double *a, *b;          /* [ρ × n] and [m × ρ], malloc'd (NULL when ρ = 0) */
	double rel_err;         /* ‖Δ − B·A‖_F / ‖Δ‖_F (0 for Δ = 0) */
	double lapack_seconds;  /* time spent in LAPACK and BLAS */
};

struct weld_lora_svd_opts {
	size_t max_rank;
	double eps;             /* sv_epsilon: keep σ > eps (0: keep all ρ) */
	bool distribute;
	/* randomized range finder instead of the exact SVD: sketch of
	 * max_rank + oversample columns, power_iters subspace iterations */
	bool fast;
	size_t oversample;
	unsigned power_iters;
	uint64_t seed;          /* of the Gaussian test matrix */
};

/* Bytes weld_lora_svd(m, n, o) allocates at most, the factors it returns
 * included (not delta, which is the caller's), or UINT64_MAX if a
 * dimension is too large. */
uint64_t weld_lora_svd_bytes(size_t m, size_t n, const struct weld_lora_svd_opts *o);

/* Factors of delta [m × n] (overwritten). */
int weld_lora_svd(double *delta, size_t m, size_t n, const struct weld_lora_svd_opts *o,
		  struct weld_lora_factors *out, struct weld_error *err);
void weld_lora_factors_free(struct weld_lora_factors *f);

#endif
