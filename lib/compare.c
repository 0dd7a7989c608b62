/*
 * compare.c - whole-tensor measurements that stream: XXH3 of a tensor's
 * bytes and the differences between two tensors. Memory is a fixed 1M
 * elements per buffer whatever the tensor size; sums run in double, block
 * by block in order, so the numbers are the same on every machine.
 */
#include "compare.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#define STEP (1u << 20)

int weld_model_hash(const weld_model *m, size_t i, uint64_t *out, struct weld_error *err)
{
	const struct weld_tensor_info *t = weld_model_tensor(m, i);
	size_t es = weld_dtype_size(t->dtype);
	XXH3_state_t *st = XXH3_createState();
	unsigned char *buf = malloc(STEP * es);
	int r = 0;

	if (!st || !buf) {
		XXH3_freeState(st);
		free(buf);
		return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	}
	XXH3_64bits_reset(st);
	/* a tensor stored in blocks, or FP8 codes with scales: its stored bytes */
	for (uint64_t off = 0; (t->quant || t->scaled) && off < t->nbytes && !r; off += STEP * es) {
		size_t n = t->nbytes - off < STEP * es ? (size_t)(t->nbytes - off) : STEP * es;

		r = weld_model_read_stored(m, i, off, n, buf, err);
		if (!r)
			XXH3_64bits_update(st, buf, n);
	}
	for (uint64_t first = 0; !t->quant && !t->scaled && first < t->nelem && !r; first += STEP) {
		size_t n = t->nelem - first < STEP ? (size_t)(t->nelem - first) : STEP;

		r = weld_model_read(m, i, first, n, buf, err);
		if (!r)
			XXH3_64bits_update(st, buf, n * es);
	}
	*out = XXH3_64bits_digest(st);
	XXH3_freeState(st);
	free(buf);
	return r;
}

int weld_model_hash_scale(const weld_model *m, size_t i, uint64_t *out, struct weld_error *err)
{
	const struct weld_tensor_info *s = weld_model_scale(m, i);
	XXH3_state_t *st = XXH3_createState();
	unsigned char *buf = malloc(STEP);
	int r = 0;

	if (!st || !buf) {
		XXH3_freeState(st);
		free(buf);
		return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	}
	XXH3_64bits_reset(st);
	for (uint64_t off = 0; s && off < s->nbytes && !r; off += STEP) {
		size_t n = s->nbytes - off < STEP ? (size_t)(s->nbytes - off) : STEP;

		r = weld_model_read_scale_stored(m, i, off, n, buf, err);
		if (!r)
			XXH3_64bits_update(st, buf, n);
	}
	*out = XXH3_64bits_digest(st);
	XXH3_freeState(st);
	free(buf);
	return r;
}

int weld_model_compare(const weld_model *a, size_t ia, const weld_model *b, size_t ib,
		       struct weld_diff *out, struct weld_error *err)
{
	const struct weld_tensor_info *ta = weld_model_tensor(a, ia);
	const struct weld_tensor_info *tb = weld_model_tensor(b, ib);
	float *x = malloc(STEP * sizeof(float)), *y = malloc(STEP * sizeof(float));
	double sd = 0, sa = 0, sb = 0, sab = 0, mx = 0;
	bool nan = false;
	int r = 0;

	memset(out, 0, sizeof(*out));
	if (!x || !y) {
		free(x);
		free(y);
		return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	}
	if (ta->nelem != tb->nelem) {
		free(x);
		free(y);
		return weld_fail(err, WELD_ERR_MISMATCH, "tensor '%s': %llu elements against %llu",
				 ta->name, (unsigned long long)ta->nelem,
				 (unsigned long long)tb->nelem);
	}
	for (uint64_t first = 0; first < ta->nelem && !r; first += STEP) {
		size_t n = ta->nelem - first < STEP ? (size_t)(ta->nelem - first) : STEP;

		r = weld_model_read_f32(a, ia, first, n, x, NULL, err);
		if (!r)
			r = weld_model_read_f32(b, ib, first, n, y, NULL, err);
		for (size_t j = 0; j < n && !r; j++) {
			double d = (double)x[j] - (double)y[j];

			if (isnan(d))
				nan = true;
			else if (fabs(d) > mx)
				mx = fabs(d);
			sd += d * d;
			sa += (double)x[j] * x[j];
			sb += (double)y[j] * y[j];
			sab += (double)x[j] * y[j];
			out->n_diff += memcmp(&x[j], &y[j], sizeof(float)) != 0;
		}
	}
	free(x);
	free(y);
	out->max_abs = nan ? NAN : mx;
	out->rms = ta->nelem ? sqrt(sd / (double)ta->nelem) : 0;
	if (sa == 0 && sb == 0)
		out->cosine = 1;
	else if (sa == 0 || sb == 0)
		out->cosine = 0;
	else
		out->cosine = sab / (sqrt(sa) * sqrt(sb));
	return r;
}
