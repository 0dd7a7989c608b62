/*
 * output_format.c - which file format a merge writes (DESIGN 6.1), and
 * what the GGUF writer is told: the model it follows and the type asked
 * for.
 */
#include "exec.h"
#include "gguf.h"
#include "quant.h"

#include <stdio.h>
#include <string.h>

/* Chunks, slices and super-tiles start at multiples of WELD_BLOCK (or of
 * whole rows, and a GGUF row is whole blocks): a chunk never cuts a GGUF
 * block, so block types are read block-aligned (model.c). */
_Static_assert(WELD_BLOCK % 256 == 0, "a chunk is whole blocks of every GGUF type");

/* The model the output follows: the first job's base, else its first
 * source; NULL without jobs. */
static const weld_model *ref_model(const weld_plan *p)
{
	const struct weld_job *j;

	if (!p->njobs)
		return NULL;
	j = &p->jobs[0];
	return p->models[j->base_model >= 0 ? j->base_model : j->src[0].model];
}

static bool is_gguf(const weld_model *m)
{
	return m && strcmp(weld_model_format(m), "gguf") == 0;
}

int weld_plan_output_format(const weld_plan *p, struct weld_error *err)
{
	const weld_model *ref = ref_model(p);
	int f = p->o.format;

	if (f == WELD_FORMAT_AUTO)
		f = is_gguf(ref) ? WELD_FORMAT_GGUF : WELD_FORMAT_SAFETENSORS;
	if (f == WELD_FORMAT_GGUF && !is_gguf(ref))
		return weld_fail(err, WELD_ERR_ARG,
				 "'%s': GGUF output needs GGUF models: from safetensors or PyTorch it "
				 "would need llama.cpp's tensor renaming and Q/K permutation (use "
				 "llama.cpp's convert_hf_to_gguf.py)", ref ? weld_model_path(ref) : "?");
	if (p->o.out_quant && f != WELD_FORMAT_GGUF)
		return weld_fail(err, WELD_ERR_ARG,
				 "--dtype %s is a GGUF type: it needs a GGUF output (GGUF models, "
				 "--format gguf)", p->o.out_quant == WELD_GGML_Q8_0 ? "q8_0" : "q4_0");
	return f;
}

/* The ggml type asked for: --dtype q8_0|q4_0, or a float dtype; -1: auto. */
static int gguf_type(const weld_plan *p)
{
	switch (p->o.dtype) {
	case WELD_F32: return p->o.out_quant ? (int)p->o.out_quant : WELD_GGML_F32;
	case WELD_F16: return WELD_GGML_F16;
	case WELD_BF16: return WELD_GGML_BF16;
	case WELD_F64: return 28;
	default: return -1;
	}
}

bool weld_plan_output_note(const weld_plan *p, char *buf, size_t len)
{
	const weld_model *ref = ref_model(p);

	if (!is_gguf(ref))
		return false;
	if (weld_plan_output_format(p, NULL) == WELD_FORMAT_SAFETENSORS) {
		snprintf(buf, len, "the safetensors output keeps the GGUF tensor names and row "
			 "order of '%s' (not those of a Hugging Face model)", weld_model_path(ref));
		return true;
	}
	if (gguf_type(p) >= 0)
		return false;
	for (size_t i = 0; i < weld_model_count(ref); i++) {
		const struct weld_tensor_info *t = weld_model_tensor(ref, i);
		int bt = weld_gguf_tensor_type(t);

		if (weld_gguf_store_type(t, WELD_F32, -1, t->ndim, 0) == WELD_GGML_F16 &&
		    bt != WELD_GGML_F16) {
			snprintf(buf, len, "'%s' holds %s tensors, which weld does not encode: they are "
				 "written as F16 (llama.cpp's llama-quantize can quantise the output)",
				 weld_model_path(ref), weld_ggml_type_name((uint32_t)bt));
			return true;
		}
	}
	return false;
}

void weld_exec_gguf_opts(const weld_plan *p, struct weld_writer_opts *wo)
{
	if (weld_plan_output_format(p, NULL) != WELD_FORMAT_GGUF)
		return;
	wo->gguf_base = ref_model(p);
	wo->gguf_type = gguf_type(p);
	wo->gguf_split = p->o.shard_size_set ? p->o.shard_size : 0;
}

const char *weld_plan_job_type_name(const weld_plan *p, const struct weld_job *j)
{
	const weld_model *ref = ref_model(p);
	int64_t bi;
	int t;

	if (j->fp8_block[0])
		return weld_dtype_name(WELD_F8_E4M3);
	if (weld_plan_output_format(p, NULL) != WELD_FORMAT_GGUF)
		return weld_dtype_name(j->dtype);
	bi = weld_model_find(ref, j->name);
	t = weld_gguf_store_type(bi >= 0 ? weld_model_tensor(ref, (size_t)bi) : NULL, j->dtype,
				 gguf_type(p), j->ndim,
				 j->ndim ? (uint64_t)j->shape[j->ndim - 1] : 1);
	return t >= 0 ? weld_ggml_type_name((uint32_t)t) : weld_dtype_name(j->dtype);
}
