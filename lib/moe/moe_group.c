/*
 * moe_group.c - the M-SMoE arithmetic of one merge: how many groups each
 * layer gets (global allocation by usage frequency), which experts form
 * them (the most used found the groups, the others join the most similar
 * founder), and the frequency-weighted mean that merges a group. Pure
 * math on arrays; the unit tests check it against worked examples.
 */
#include "moe.h"

#include <stdlib.h>
#include <string.h>

static int cmp_double_desc(const void *a, const void *b)
{
	const double x = *(const double *)a, y = *(const double *)b;

	return (x < y) - (x > y);
}

int weld_moe_allocate(const double *freq, int n_layers, int n_experts, int groups,
		      bool uniform, int *out, struct weld_error *err)
{
	const size_t total = (size_t)n_layers * (size_t)n_experts;
	double *pool, threshold;

	if (n_layers < 1 || n_experts < 1)
		return weld_fail(err, WELD_ERR_ARG, "no MoE layers");
	if (groups < 1 || groups > n_experts)
		return weld_fail(err, WELD_ERR_ARG,
				 "--groups %d is not between 1 and the %d experts per layer",
				 groups, n_experts);
	if (!freq || uniform) {
		for (int l = 0; l < n_layers; l++)
			out[l] = groups;
		return 0;
	}
	pool = malloc(total * sizeof(*pool));
	if (!pool)
		return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	memcpy(pool, freq, total * sizeof(*pool));
	qsort(pool, total, sizeof(*pool), cmp_double_desc);
	threshold = pool[(size_t)groups * (size_t)n_layers - 1];
	free(pool);
	for (int l = 0; l < n_layers; l++) {
		int c = 0;

		for (int e = 0; e < n_experts; e++)
			c += freq[(size_t)l * (size_t)n_experts + (size_t)e] >= threshold;
		out[l] = c > 0 ? c : 1;
	}
	return 0;
}

int weld_moe_group(const double *freq, const double *sim, int n, int g,
		   int *label, int *dominant, struct weld_error *err)
{
	int *order;

	if (n < 1 || g < 1 || g > n)
		return weld_fail(err, WELD_ERR_ARG, "cannot make %d groups of %d experts", g, n);
	if (g < n && !sim)
		return weld_fail(err, WELD_ERR_ARG, "grouping needs a similarity matrix");
	order = malloc((size_t)n * sizeof(*order));
	if (!order)
		return weld_fail(err, WELD_ERR_NOMEM, "out of memory");

	/* usage order: insertion sort, stable, so equal usage keeps index order */
	for (int i = 0; i < n; i++) {
		const double fi = freq ? freq[i] : 0.0;
		int j = i;

		while (j > 0 && (freq ? freq[order[j - 1]] : 0.0) < fi) {
			order[j] = order[j - 1];
			j--;
		}
		order[j] = i;
	}
	for (int k = 0; k < g; k++) {
		dominant[k] = order[k];
		label[order[k]] = k;
	}
	for (int i = g; i < n; i++) {
		const int e = order[i];
		const double *row = sim + (size_t)e * (size_t)n;
		int best = 0;

		for (int k = 1; k < g; k++)
			if (row[dominant[k]] > row[dominant[best]])
				best = k;
		label[e] = best;
	}
	free(order);
	return 0;
}

void weld_moe_merge_coefs(const double *freq, double uniform_freq,
			  const int *members, int n, float *coef)
{
	double sum = 0.0;

	for (int k = 0; k < n; k++)
		sum += freq ? freq[members[k]] : uniform_freq;
	for (int k = 0; k < n; k++) {
		const double f = freq ? freq[members[k]] : uniform_freq;

		coef[k] = sum > 0.0 ? (float)(f / (sum + WELD_MOE_EPS)) : (float)(1.0 / n);
	}
}

void weld_moe_merge(float *dst, const float *const *src, const float *coef, int n,
		    size_t len)
{
	if (n < 1)
		return;
	for (size_t k = 0; k < len; k++) {
		float acc = coef[0] * src[0][k];

		for (int m = 1; m < n; m++)
			acc += coef[m] * src[m][k];
		dst[k] = acc;
	}
}
