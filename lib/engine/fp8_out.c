/*
 * fp8_out.c - what an output of FP8 inputs with scales says of itself
 * (DESIGN 6.2): written decoded, its config.json loses the
 * quantization_config that described the inputs.
 */
#include "exec.h"

#include <cjson/cJSON.h>

const struct weld_job *weld_plan_decodes_fp8(const weld_plan *p)
{
	for (size_t i = 0; i < p->njobs; i++) {
		const struct weld_job *j = &p->jobs[i];
		int m = j->base_model >= 0 ? j->base_model : j->nsrc ? j->src[0].model : -1;
		int64_t t = j->base_model >= 0 ? j->base_tensor : j->nsrc ? j->src[0].tensor : -1;

		if (m >= 0 && t >= 0 && weld_model_tensor(p->models[m], (size_t)t)->scaled &&
		    j->dtype != WELD_F8_E4M3)
			return j;
	}
	return NULL;
}

int weld_fp8_edit_config(void *ctx, void *cjson_root, struct weld_error *err)
{
	const weld_plan *p = ctx;

	if (p->o.edit_config && p->o.edit_config(p->o.edit_config_ctx, cjson_root, err) < 0)
		return -1;
	cJSON_DeleteItemFromObjectCaseSensitive(cjson_root, "quantization_config");
	return 0;
}
