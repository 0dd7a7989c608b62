/*
 * nonfinite.c - an input holding NaN or +-Inf (weld(1), NON-FINITE VALUES).
 *
 * APPLY counts the non-finite values of each input tile it decodes (tiles.c),
 * expert-merge those of each expert it reads. Without --allow-nonfinite the
 * first one found stops the merge; the message then gives the count over the
 * whole tensor, read again here block by block.
 */
#include "exec.h"

#include <stdlib.h>

#define COUNT_BLOCK (1u << 16)

/* Non-finite values of tensor i of model m, as float32 (NaN, +-Inf, and an
 * f64 value beyond float32's range). */
static int count_nonfinite(const weld_model *m, size_t i, uint64_t *out, struct weld_error *err)
{
	const struct weld_tensor_info *t = weld_model_tensor(m, i);
	float *x = malloc(COUNT_BLOCK * sizeof(float));
	void *raw = malloc(COUNT_BLOCK * sizeof(double));
	int ret = -1;

	*out = 0;
	if (!x || !raw) {
		weld_fail(err, WELD_ERR_NOMEM, "out of memory");
		goto out;
	}
	for (uint64_t first = 0; first < t->nelem; first += COUNT_BLOCK) {
		size_t n = t->nelem - first < COUNT_BLOCK ? (size_t)(t->nelem - first) : COUNT_BLOCK;

		if (weld_model_read_f32(m, i, first, n, x, raw, err) < 0)
			goto out;
		*out += weld_k_count_nonfinite(x, n);
	}
	ret = 0;
out:
	free(x);
	free(raw);
	return ret;
}

int weld_nonfinite_error(const weld_model *m, size_t tensor, struct weld_error *err)
{
	const struct weld_tensor_info *t = weld_model_tensor(m, tensor);
	uint64_t n;

	if (count_nonfinite(m, tensor, &n, err) < 0)
		return -1;
	return weld_fail(err, WELD_ERR_FORMAT,
			 "tensor '%s' in '%s' (%s): %llu of its %llu values %s NaN or infinite; "
			 "a merge would spread them (--allow-nonfinite merges them anyway, see weld(1))",
			 t->name, weld_model_path(m), weld_model_file_path(m, (size_t)t->file),
			 (unsigned long long)n, (unsigned long long)t->nelem, n == 1 ? "is" : "are");
}

int weld_exec_nonfinite_error(const struct exec *e, const struct weld_job *j,
			      struct weld_error *err)
{
	/* the first input in input order, whatever chunk found one: the same
	 * message for any -j and --max-memory */
	for (size_t i = j->base_model >= 0 ? 0 : 1; i <= j->nsrc; i++) {
		int model = i ? j->src[i - 1].model : j->base_model;
		size_t tensor = (size_t)(i ? j->src[i - 1].tensor : j->base_tensor);
		uint64_t n;

		if (count_nonfinite(e->plan->models[model], tensor, &n, err) < 0)
			return -1;
		if (n)
			return weld_nonfinite_error(e->plan->models[model], tensor, err);
	}
	return weld_fail(err, WELD_ERR_FORMAT, "tensor '%s': a NaN or infinite value was read, "
			 "then not found again (did an input change during the merge?)", j->name);
}
