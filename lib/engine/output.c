/*
 * output.c - what the engine writes: the output and --save-masks writers,
 * each tile's encoding into the output chunk, the tensors copied rather
 * than merged, and each chunk's consensus masks. Output chunks go to the
 * writer thread of write_queue.c; masks are written directly.
 */
#include "exec.h"
#include "gguf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#endif

/*
 * Encode a tile into the output chunk. The chunk's lines were last read by
 * the writer thread, on another core: ordinary stores would first fetch
 * each line back (a fifth of the time of a consensus merge went there), so
 * the tile is encoded in cache and streamed out with non-temporal stores.
 */
void weld_exec_encode_tile(enum weld_dtype t, const float *src, unsigned char *dst, size_t len)
{
#if defined(__x86_64__) && defined(__GNUC__)
	_Alignas(64) unsigned char tmp[WELD_BLOCK * 8];
	size_t bytes = len * weld_dtype_size(t);

	if (bytes <= sizeof(tmp) && (uintptr_t)dst % 16 == 0) {
		size_t i = 0;

		weld_encode_f32(t, src, tmp, len);
		for (; i + 16 <= bytes; i += 16)
			_mm_stream_si128((__m128i *)(void *)(dst + i),
					 _mm_load_si128((const __m128i *)(const void *)(tmp + i)));
		memcpy(dst + i, tmp + i, bytes - i);
		return;
	}
#endif
	weld_encode_f32(t, src, dst, len);
}

/* --save-masks: one file of U8 tensors "<name>.mask.<i>", the bit-packed
 * TALL masks of each consensus job's sources. */
static int open_mask_writer(struct exec *e, struct weld_error *err)
{
	weld_plan *p = e->plan;
	size_t nm = 0, k = 0;
	struct weld_out_tensor *t;
	struct weld_writer_opts mo = { 0 };
	char **names;
	int r;

	for (size_t i = 0; i < p->njobs; i++)
		if (p->jobs[i].method == WELD_METHOD_CONSENSUS)
			nm += p->jobs[i].nsrc;
	t = calloc(nm + 1, sizeof(*t));
	names = calloc(nm + 1, sizeof(*names));
	if (!t || !names) {
		free(t);
		free(names);
		return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	}
	for (size_t i = 0; i < p->njobs; i++) {
		const struct weld_job *j = &p->jobs[i];

		if (j->method != WELD_METHOD_CONSENSUS)
			continue;
		for (size_t s = 0; s < j->nsrc; s++, k++) {
			size_t len = strlen(j->name) + 32;

			if (!(names[k] = malloc(len)))
				break;
			snprintf(names[k], len, "%s.mask.%zu", j->name, s + 1);
			t[k].name = names[k];
			t[k].dtype = WELD_U8;
			t[k].ndim = 1;
			t[k].shape[0] = (int64_t)((j->nelem + 7) / 8);
		}
	}
	mo.force = p->o.force;
	mo.recipe_json = p->o.recipe_json;
	mo.single_file = true;
	r = k == nm ? weld_writer_open(&e->mask_writer, p->o.masks_out, t, nm, &mo, err)
		    : weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	for (size_t i = 0; i < nm; i++)
		free(names[i]);
	free(names);
	free(t);
	return r;
}

/* The output's tensors (one per job) and writer options; NULL if out of
 * memory. The caller frees the list. */
static struct weld_out_tensor *output_layout(const weld_plan *p, struct weld_writer_opts *wo)
{
	/* the tensors, then their FP8 blocks (one allocation) */
	struct weld_out_tensor *t = calloc(p->njobs + 1, sizeof(*t) + sizeof(int64_t[2]));
	int64_t (*blk)[2] = t ? (void *)(t + p->njobs + 1) : NULL;
	const struct weld_job *ref = NULL;

	if (!t)
		return NULL;
	for (size_t i = 0; i < p->njobs; i++) {
		const struct weld_job *j = &p->jobs[i];

		t[i].name = j->name;
		t[i].dtype = j->fp8_block[0] ? WELD_F8_E4M3 : j->dtype;
		t[i].ndim = j->ndim;
		memcpy(t[i].shape, j->shape, sizeof(t[i].shape));
		memcpy(blk[i], j->fp8_block, sizeof(blk[i]));
		if (!ref && weld_dtype_is_float(j->dtype) && !j->fp8_block[0])
			ref = j;
	}
	memset(wo, 0, sizeof(*wo));
	wo->shard_size = p->o.shard_size;
	wo->force = p->o.force;
	wo->recipe_json = p->o.recipe_json;
	wo->edit_config = p->o.edit_config;
	wo->edit_config_ctx = p->o.edit_config_ctx;
	if (weld_plan_decodes_fp8(p)) {
		/* the plan's own edit, then quantization_config removed */
		wo->edit_config = weld_fp8_edit_config;
		wo->edit_config_ctx = (void *)p;
	}
	wo->copy_from = weld_plan_config_dir(p);
	wo->torch_dtype = ref ? weld_dtype_torch_name(ref->dtype) : NULL;
	wo->part = p->o.part;
	wo->parts = p->o.parts;
	wo->fp8_block = (const int64_t (*)[2])blk;
	weld_exec_gguf_opts(p, wo);
	return t;
}

int weld_plan_check_output(const weld_plan *p, const char *out, struct weld_error *err)
{
	struct weld_writer_opts wo;
	struct weld_out_tensor *t = output_layout(p, &wo);
	int r;

	if (!t)
		return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	r = weld_plan_check_fp8(p, err) < 0 ? -1 : weld_writer_check(out, t, p->njobs, &wo, err);
	free(t);
	return r;
}

int weld_plan_output_set(const weld_plan *p, const char *out, char ***paths, size_t *n,
			 struct weld_error *err)
{
	struct weld_writer_opts wo;
	struct weld_out_tensor *t;
	int r;

	*paths = NULL;
	*n = 0;
	if (weld_plan_output_format(p, NULL) != WELD_FORMAT_GGUF)
		return 0;
	if (!(t = output_layout(p, &wo)))
		return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	r = weld_gguf_set_paths(out, t, p->njobs, &wo, paths, n, err);
	free(t);
	return r;
}

int weld_exec_open_writers(struct exec *e, const char *out, struct weld_error *err)
{
	weld_plan *p = e->plan;
	struct weld_writer_opts wo;
	struct weld_out_tensor *t = output_layout(p, &wo);
	int r;

	if (!t)
		return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	if (weld_plan_decodes_fp8(p))
		weld_plan_warn(p, "FP8 weights with scales are written as %s; quantization_config is "
			       "removed from config.json",
			       weld_dtype_name(weld_plan_decodes_fp8(p)->dtype));
	r = weld_writer_open(&e->writer, out, t, p->njobs, &wo, err);
	free(t);
	if (r < 0 || !p->o.masks_out)
		return r;
	return open_mask_writer(e, err);
}

int weld_exec_write_masks(struct exec *e, const struct weld_job *j, uint64_t n,
			  struct weld_error *err)
{
	char name[4096];

	for (size_t s = 0; s < j->nsrc; s++) {
		int64_t wi;

		snprintf(name, sizeof(name), "%s.mask.%zu", j->name, s + 1);
		wi = weld_writer_find(e->mask_writer, name);
		if (weld_writer_write(e->mask_writer, (size_t)wi, e->mask_bits + s * e->mask_stride,
				      (size_t)((n + 7) / 8), err) < 0)
			return -1;
	}
	return 0;
}

/* A job that is copied, not merged: the first source's tensor chunk by
 * chunk, converted when the output dtype differs; a warning when another
 * model's copy of the same integer tensor differs. */
int weld_exec_copy_job(struct exec *e, const struct weld_job *j, struct weld_error *err)
{
	const struct weld_source *s = &j->src[0];
	const weld_model *m = e->plan->models[s->model];
	enum weld_dtype in = src_info(e, s)->dtype;
	size_t es = weld_dtype_size(in), oes = weld_dtype_size(j->dtype);
	int64_t wi = weld_writer_find(e->writer, j->name);
	uint64_t step = e->chunk_elems;
	unsigned char *other = NULL;
	bool differs = false;
	float *f = NULL;
	int r = -1;

	if (j->nsrc > 1 && !(other = malloc(step * es)))
		return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	if (in != j->dtype && !(f = malloc(step * sizeof(float)))) {
		free(other);
		return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	}
	for (uint64_t first = 0; first < j->nelem; first += step) {
		uint64_t n = j->nelem - first < step ? j->nelem - first : step;

		if (!(e->out_chunk = weld_outq_buffer(e->queue, err)))
			goto out;
		if (in == j->dtype) {
			if (weld_model_read(m, (size_t)s->tensor, first, (size_t)n, e->out_chunk,
					    err) < 0)
				goto out;
			/* integer tensors: warn if another model's copy differs */
			for (size_t k = 1; k < j->nsrc && !differs; k++) {
				const struct weld_source *sk = &j->src[k];
				const struct weld_tensor_info *o = src_info(e, sk);

				if (o->dtype != in || o->nelem != j->nelem) {
					differs = true;
					break;
				}
				if (weld_model_read(e->plan->models[sk->model], (size_t)sk->tensor,
						    first, (size_t)n, other, err) < 0)
					goto out;
				differs = memcmp(e->out_chunk, other, (size_t)(n * es)) != 0;
			}
		} else {
			if (weld_model_read_f32(m, (size_t)s->tensor, first, (size_t)n, f,
						e->out_chunk, err) < 0)
				goto out;
			weld_encode_f32(j->dtype, f, e->out_chunk, (size_t)n);
		}
		if (weld_outq_submit(e->queue, e->writer, (size_t)wi, (size_t)(n * oes), err) < 0)
			goto out;
		weld_exec_progress(e, j, n);
	}
	if (differs)
		weld_plan_warn(e->plan,
			       "tensor '%s': %s tensor differs between models; copied from '%s'",
			       j->name, weld_dtype_name(in), weld_model_path(m));
	r = 0;
out:
	free(other);
	free(f);
	return r;
}
