/*
 * plan_masks.c - the jobs of `weld consensus --apply-mask`: rebuild a
 * task-specific model B + m_i . (merged - B) from a consensus output and
 * the TALL masks it saved (DESIGN 4.7). Every float tensor of the base
 * becomes an APPLY_MASK job reading the merged model's tensor and the
 * bit-packed U8 mask `<name>.mask.<task>`; integer tensors are copied.
 */
#include "merge.h"

#include <stdio.h>
#include <string.h>

/* The job of base tensor i: COPY for an integer tensor, else APPLY_MASK. */
static int mask_job(weld_plan *p, int b, int m, int k, size_t i, long task,
		    struct weld_error *err)
{
	const weld_model *base = weld_plan_model(p, b), *merged = weld_plan_model(p, m);
	const weld_model *masks = weld_plan_model(p, k);
	const struct weld_tensor_info *t = weld_model_tensor(base, i), *mt;
	int64_t mi = weld_model_find(merged, t->name);
	struct weld_source src = { .model = m, .tensor = mi, .weight = 1, .density = 1 };
	struct weld_job j = { 0 };
	char name[4096];

	if (mi < 0)
		return weld_fail(err, WELD_ERR_MISMATCH, "tensor '%s': missing from '%s'",
				 t->name, weld_model_path(merged));
	if (weld_model_tensor(merged, (size_t)mi)->nelem != t->nelem)
		return weld_fail(err, WELD_ERR_MISMATCH,
				 "tensor '%s': different sizes in '%s' and '%s'", t->name,
				 weld_model_path(base), weld_model_path(merged));
	j.name = t->name;
	j.ndim = t->ndim;
	memcpy(j.shape, t->shape, sizeof(j.shape));
	j.nelem = t->nelem;
	j.nsrc = 1;
	j.src = &src;
	j.lambda = 1;
	j.mask_model = -1;
	j.mask_tensor = -1;
	j.base_model = -1;
	j.base_tensor = -1;
	if (!weld_dtype_is_float(t->dtype)) {
		j.method = WELD_METHOD_COPY;
		j.dtype = t->dtype;
		return weld_plan_add_job(p, &j, err);
	}
	snprintf(name, sizeof(name), "%s.mask.%ld", t->name, task);
	j.mask_tensor = weld_model_find(masks, name);
	mt = j.mask_tensor >= 0 ? weld_model_tensor(masks, (size_t)j.mask_tensor) : NULL;
	if (!mt)
		return weld_fail(err, WELD_ERR_MISMATCH,
				 "'%s': no mask tensor '%s' (is task %ld in this file?)",
				 weld_model_path(masks), name, task);
	if (mt->dtype != WELD_U8 || mt->nelem != (t->nelem + 7) / 8)
		return weld_fail(err, WELD_ERR_FORMAT,
				 "'%s': tensor '%s': expected %llu U8 bytes for %llu elements",
				 weld_model_path(masks), name, (unsigned long long)((t->nelem + 7) / 8),
				 (unsigned long long)t->nelem);
	j.method = WELD_METHOD_APPLY_MASK;
	j.dtype = weld_plan_opts(p)->dtype >= 0 ? (enum weld_dtype)weld_plan_opts(p)->dtype
		 : weld_model_tensor(merged, (size_t)mi)->dtype;
	j.base_model = b;
	j.base_tensor = (int64_t)i;
	j.mask_model = k;
	return weld_plan_add_job(p, &j, err);
}

int weld_plan_apply_mask(weld_plan *p, const char *base, const char *merged, const char *masks,
			 long task, struct weld_error *err)
{
	int b = weld_plan_add_model(p, base, err), m, k;

	if (b < 0 || (m = weld_plan_add_model(p, merged, err)) < 0 ||
	    (k = weld_plan_add_model(p, masks, err)) < 0)
		return -1;
	for (size_t i = 0; i < weld_model_count(weld_plan_model(p, b)); i++)
		if (mask_job(p, b, m, k, i, task, err) < 0)
			return -1;
	return 0;
}
