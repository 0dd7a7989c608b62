/*
 * moe_similarity.c - how alike the experts of a layer are, for grouping:
 * M-SMoE's (cos + 1) / 2 of either the router rows (--similarity router)
 * or the experts' concatenated weights (--similarity weight, streamed in
 * chunks). The sums run in blocks of WELD_MOE_BLOCK in a fixed order, so
 * the result does not depend on the chunk size or the thread count.
 */
#include "moe_impl.h"

#include <math.h>
#include <stdlib.h>

/*
 * sum_k a[k] b[k] added to *acc block by block (see WELD_MOE_BLOCK); within
 * a block four partial sums keep the adds independent.
 */
static void dot_blocked_add(double *acc, const float *a, const float *b, size_t len)
{
	double s = *acc;

	for (size_t k0 = 0; k0 < len; k0 += WELD_MOE_BLOCK) {
		const size_t k1 = len - k0 < WELD_MOE_BLOCK ? len : k0 + WELD_MOE_BLOCK;
		double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0;
		size_t k = k0;

		for (; k + 4 <= k1; k += 4) {
			s0 += (double)a[k] * (double)b[k];
			s1 += (double)a[k + 1] * (double)b[k + 1];
			s2 += (double)a[k + 2] * (double)b[k + 2];
			s3 += (double)a[k + 3] * (double)b[k + 3];
		}
		for (; k < k1; k++)
			s0 += (double)a[k] * (double)b[k];
		s += (s0 + s1) + (s2 + s3);
	}
	*acc = s;
}

void weld_moe_gram_update(double *gram, int n, const float *const *x, size_t len)
{
	#pragma omp parallel for schedule(dynamic, 1)
	for (int i = 0; i < n; i++)
		for (int j = i; j < n; j++)
			dot_blocked_add(&gram[(size_t)i * (size_t)n + (size_t)j], x[i], x[j], len);
}

void weld_moe_gram_similarity(const double *gram, int n, double *sim)
{
	for (int i = 0; i < n; i++) {
		const double ni = fmax(sqrt(gram[(size_t)i * (size_t)n + (size_t)i]), WELD_MOE_EPS);

		sim[(size_t)i * (size_t)n + (size_t)i] = 1.0;
		for (int j = i + 1; j < n; j++) {
			const double nj = fmax(sqrt(gram[(size_t)j * (size_t)n + (size_t)j]),
					       WELD_MOE_EPS);
			const double c = gram[(size_t)i * (size_t)n + (size_t)j] / (ni * nj);
			const double s = (c + 1.0) / 2.0;

			sim[(size_t)i * (size_t)n + (size_t)j] = s;
			sim[(size_t)j * (size_t)n + (size_t)i] = s;
		}
	}
}

int weld_moe_row_similarity(const float *rows, int n, size_t dim, double *sim,
			    struct weld_error *err)
{
	const float **x = malloc((size_t)n * sizeof(*x));
	double *gram = calloc((size_t)n * (size_t)n, sizeof(*gram));

	if (!x || !gram) {
		free(x);
		free(gram);
		return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	}
	for (int i = 0; i < n; i++)
		x[i] = rows + (size_t)i * dim;
	weld_moe_gram_update(gram, n, x, dim);
	weld_moe_gram_similarity(gram, n, sim);
	free(x);
	free(gram);
	return 0;
}

/* Elements per expert read at a time: the budget's share, at most this
 * (the experts' chunks then stay in cache between reading and the Gram
 * update); the sums do not depend on it. */
#define SIM_CHUNK ((uint64_t)1 << 16)

/* Cosine similarity of the experts' concatenated weights, streamed. */
int weld_moe_weight_similarity(const weld_model *m, const struct weld_moe_layout *lo, int l,
			       uint64_t budget, double *sim, struct weld_error *err)
{
	const int e_n = lo->n_experts;
	uint64_t chunk = budget / ((uint64_t)e_n * sizeof(float) + 8);
	uint64_t largest = 0;
	double *gram = NULL;
	float *data = NULL;
	const float **x = NULL;
	void *scratch = NULL;
	int ret = -1;

	for (int s = 0; s < lo->n_suffix; s++) {
		const uint64_t ne = lo->layers[l].slice[s];

		if (ne > largest)
			largest = ne;
	}
	if (chunk > SIM_CHUNK)
		chunk = SIM_CHUNK;
	chunk -= chunk % WELD_MOE_BLOCK;
	if (chunk < WELD_MOE_BLOCK)
		chunk = WELD_MOE_BLOCK;
	if (chunk > largest)
		chunk = largest + (WELD_MOE_BLOCK - largest % WELD_MOE_BLOCK) % WELD_MOE_BLOCK;
	gram = calloc((size_t)e_n * (size_t)e_n, sizeof(*gram));
	data = malloc((size_t)chunk * (size_t)e_n * sizeof(*data));
	x = malloc((size_t)e_n * sizeof(*x));
	scratch = malloc((size_t)chunk * 8);
	if (!gram || !data || !x || !scratch) {
		weld_fail(err, WELD_ERR_NOMEM, "weight similarity: out of memory");
		goto out;
	}
	for (int e = 0; e < e_n; e++)
		x[e] = data + (size_t)e * (size_t)chunk;
	for (int s = 0; s < lo->n_suffix; s++) {
		const uint64_t ne = lo->layers[l].slice[s];

		for (uint64_t off = 0; off < ne; off += chunk) {
			const size_t len = (size_t)(ne - off < chunk ? ne - off : chunk);

			for (int e = 0; e < e_n; e++)
				if (weld_model_read_f32(m, weld_moe_tensor_of(lo, l, e, s),
							weld_moe_first_of(lo, l, e, s) + off, len,
							data + (size_t)e * (size_t)chunk, scratch, err) < 0)
					goto out;
			weld_moe_gram_update(gram, e_n, x, len);
		}
	}
	for (int e = 0; e < e_n; e++) {
		if (!isfinite(gram[(size_t)e * (size_t)e_n + (size_t)e])) {
			weld_fail(err, WELD_ERR_FORMAT,
				  "layer %d: expert %d has non-finite weights (or their norm overflows)",
				  lo->layers[l].index, e);
			goto out;
		}
	}
	weld_moe_gram_similarity(gram, e_n, sim);
	ret = 0;
out:
	free(gram);
	free(data);
	free(x);
	free(scratch);
	return ret;
}

int weld_moe_router_similarity(const weld_model *m, const struct weld_moe_layout *lo, int l,
			       double *sim, struct weld_error *err)
{
	const struct weld_moe_layer *ly = &lo->layers[l];
	const size_t len = (size_t)lo->n_experts * (size_t)lo->hidden;
	float *rows;
	int ret = -1;

	if (ly->router < 0)
		return weld_fail(err, WELD_ERR_FORMAT,
				 "layer %d: no router '%sgate.weight' for --similarity router "
				 "(use --similarity weight, or similarities in --stats)",
				 ly->index, ly->prefix);
	rows = malloc(len * sizeof(*rows));
	if (!rows)
		return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	if (weld_model_read_f32(m, (size_t)ly->router, 0, len, rows, NULL, err) < 0)
		goto out;
	for (size_t k = 0; k < len; k++) {
		if (!isfinite(rows[k])) {
			weld_fail(err, WELD_ERR_FORMAT, "router '%sgate.weight': value %zu is not finite",
				  ly->prefix, k);
			goto out;
		}
	}
	ret = weld_moe_row_similarity(rows, lo->n_experts, (size_t)lo->hidden, sim, err);
out:
	free(rows);
	return ret;
}

