/*
 * fp8_out.c - outputs of FP8 models with scales (DESIGN 6.2). Written
 * decoded (--dtype auto, bf16, ...), their config.json loses the
 * quantization_config that described the inputs. With --dtype fp8, every
 * tensor that is block-scaled FP8 (weight_scale_inv) in the reference
 * model is written so again, in the same block size (the writer encodes,
 * model.h), and the reference's config.json is kept as it is.
 */
#include "exec.h"
#include "fp8.h"

#include <cjson/cJSON.h>
#include <string.h>

/* The tensor a job takes its layout from: the base's, else the first
 * source's; NULL if none. */
static const struct weld_tensor_info *job_ref(const weld_plan *p, const struct weld_job *j)
{
	int m = j->base_model >= 0 ? j->base_model : j->nsrc ? j->src[0].model : -1;
	int64_t t = j->base_model >= 0 ? j->base_tensor : j->nsrc ? j->src[0].tensor : -1;

	return m >= 0 && t >= 0 ? weld_model_tensor(p->models[m], (size_t)t) : NULL;
}

static bool block_scaled(const struct weld_tensor_info *t)
{
	const char *suf = "_scale_inv";
	size_t a, b = strlen(suf);

	if (!t || t->scaled != WELD_FP8_BLOCK)
		return false;
	a = strlen(t->scale_name);
	return a >= b && strcmp(t->scale_name + a - b, suf) == 0;
}

bool weld_plan_fp8_job(const weld_plan *p, struct weld_job *j, const struct weld_tensor_info *ref)
{
	if (p->o.dtype != WELD_F8_E4M3 || !block_scaled(ref) || !weld_dtype_is_float(j->dtype))
		return false;
	j->dtype = WELD_F32;
	j->fp8_block[0] = ref->scale_block[0];
	j->fp8_block[1] = ref->scale_block[1];
	return true;
}

uint64_t weld_job_stored_bytes(const struct weld_job *j)
{
	uint64_t rows, cols, grid;

	if (!j->fp8_block[0])
		return j->nelem * weld_dtype_size(j->dtype);
	rows = (uint64_t)j->shape[j->ndim - 2];
	cols = (uint64_t)j->shape[j->ndim - 1];
	grid = (rows + (uint64_t)j->fp8_block[0] - 1) / (uint64_t)j->fp8_block[0] *
	       ((cols + (uint64_t)j->fp8_block[1] - 1) / (uint64_t)j->fp8_block[1]);
	return j->nelem + (rows && cols ? j->nelem / (rows * cols) * grid * sizeof(float) : 0);
}

uint64_t weld_plan_fp8_band_bytes(const weld_plan *p)
{
	uint64_t most = 0;

	for (size_t i = 0; i < p->njobs; i++) {
		const struct weld_job *j = &p->jobs[i];
		uint64_t cols, b;

		if (!j->fp8_block[0])
			continue;
		cols = (uint64_t)j->shape[j->ndim - 1];
		b = (uint64_t)j->fp8_block[0] * cols * (sizeof(float) + 1) +
		    (cols / (uint64_t)j->fp8_block[1] + 1) * sizeof(float);
		most = b > most ? b : most;
	}
	return most;
}

const struct weld_job *weld_plan_decodes_fp8(const weld_plan *p)
{
	for (size_t i = 0; i < p->njobs; i++) {
		const struct weld_job *j = &p->jobs[i];
		const struct weld_tensor_info *t = job_ref(p, j);

		if (t && t->scaled && !j->fp8_block[0])
			return j;
	}
	return NULL;
}

int weld_plan_check_fp8(const weld_plan *p, struct weld_error *err)
{
	bool any = false;

	if (p->o.dtype != WELD_F8_E4M3)
		return 0;
	for (size_t i = 0; i < p->njobs && !any; i++)
		any = p->jobs[i].fp8_block[0] != 0;
	if (!any)
		return weld_fail(err, WELD_ERR_ARG,
				 "--dtype fp8 writes FP8 in the block size of a block-scaled FP8 model "
				 "(weight_scale_inv), and '%s' has no such weight",
				 weld_model_path(p->models[p->jobs ? (p->jobs[0].base_model >= 0
								      ? p->jobs[0].base_model
								      : p->jobs[0].src[0].model) : 0]));
	if (weld_plan_output_format(p, NULL) == WELD_FORMAT_GGUF)
		return weld_fail(err, WELD_ERR_ARG, "--dtype fp8 is for a safetensors output");
	return 0;
}

int weld_fp8_edit_config(void *ctx, void *cjson_root, struct weld_error *err)
{
	const weld_plan *p = ctx;

	if (p->o.edit_config && p->o.edit_config(p->o.edit_config_ctx, cjson_root, err) < 0)
		return -1;
	cJSON_DeleteItemFromObjectCaseSensitive(cjson_root, "quantization_config");
	return 0;
}
