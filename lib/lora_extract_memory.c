/*
 * lora_extract_memory.c - extract-lora's memory bound, computed from the
 * headers before any data is read: each matrix's delta in double, its
 * SVD's arrays and workspace and the read buffers, plus every module's
 * factors, kept until written. The bound decides how many matrices are
 * decomposed at once.
 */
#include "lora_extract_impl.h"

#include <omp.h>
#include <string.h>

struct weld_lora_svd_opts weld_extract_svd_opts(const struct ctx *c, const char *name)
{
	return (struct weld_lora_svd_opts){
		.max_rank = c->o->max_rank, .eps = c->o->sv_epsilon,
		.distribute = c->o->distribute_scale, .fast = c->o->fast,
		.oversample = c->o->oversample, .power_iters = c->o->power_iters,
		.seed = weld_xxh3(name, strlen(name)),
	};
}

static uint64_t sat_add(uint64_t a, uint64_t b)
{
	return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

size_t weld_extract_read_step(uint64_t nelem)
{
	return nelem < STEP ? (size_t)nelem : STEP;
}

/* What one read_delta() call of nelem elements allocates: two float
 * buffers, a model's conversion buffer, and what a BASE+ADAPTER model
 * computes per read. */
static uint64_t read_bytes(const struct ctx *c, uint64_t nelem)
{
	uint64_t pe[2], pf[2];

	weld_model_read_cost(c->ft, &pe[0], &pf[0]);
	weld_model_read_cost(c->base, &pe[1], &pf[1]);
	return (uint64_t)weld_extract_read_step(nelem) * (2 * sizeof(float) + sizeof(double) + pe[0] + pe[1]) +
	       pf[0] + pf[1];
}

/* Memory of decomposing entry i: delta, reads, SVD, encoding; UINT64_MAX
 * if too large. Sets the entry's rows and cols. */
static uint64_t job_bytes(const struct ctx *c, size_t i)
{
	struct xent *e = &c->e[i];
	const struct weld_tensor_info *t = weld_model_tensor(c->ft, i);
	struct weld_lora_svd_opts so = weld_extract_svd_opts(c, t->name);
	uint64_t svd, rank = c->o->max_rank;
	bool tr = e->role == R_EMBED;

	e->rows = tr ? t->shape[1] : t->shape[0];
	e->cols = tr ? t->shape[0] : t->shape[1];
	svd = weld_lora_svd_bytes((size_t)e->rows, (size_t)e->cols, &so);
	if (svd == UINT64_MAX || t->nelem > UINT64_MAX / 16 || rank > UINT32_MAX)
		return UINT64_MAX;
	/* the float32 copy of a factor that encode() makes */
	rank *= (uint64_t)(e->rows > e->cols ? e->rows : e->cols) * sizeof(float);
	return sat_add(sat_add(svd, 8 * t->nelem + read_bytes(c, t->nelem)), rank);
}

/* Bytes of an entry's output tensors, kept from its SVD to the writer. */
static uint64_t kept_bytes(const struct ctx *c, size_t i)
{
	const struct xent *e = &c->e[i];
	uint64_t es = weld_dtype_size(e->dt), k = (uint64_t)(e->rows < e->cols ? e->rows : e->cols);

	if (e->role == R_BIAS)
		return es * weld_model_tensor(c->ft, i)->nelem;
	k = c->o->max_rank < k ? c->o->max_rank : k;
	return es * k * (uint64_t)(e->rows + e->cols);
}

/*
 * The plan's bound: fixed + the kept factors + in_flight matrices, each
 * counted at the largest one's size; in_flight = min(threads, matrices,
 * what the budget holds). A budget without room for one is an error.
 */
int weld_extract_plan_memory(struct ctx *c)
{
	uint64_t kept = 0, largest = 0, bias = 0, fixed, room;
	size_t big = 0, jobs = 0, want;

	for (size_t i = 0; i < c->n; i++) {
		const struct weld_tensor_info *t = weld_model_tensor(c->ft, i);
		uint64_t b;

		if (c->e[i].role == R_BIAS) {
			kept = sat_add(kept, kept_bytes(c, i));
			b = sat_add(8 * t->nelem, read_bytes(c, t->nelem));
			bias = b > bias ? b : bias;
			continue;
		}
		if (c->e[i].role != R_LINEAR && c->e[i].role != R_EMBED)
			continue;
		if ((b = job_bytes(c, i)) == UINT64_MAX)
			return weld_fail(c->err, WELD_ERR_ARG,
					 "tensor '%s': %lld x %lld is too large to decompose (LAPACK's dimensions are 32-bit)",
					 t->name, (long long)t->shape[0], (long long)t->shape[1]);
		kept = sat_add(kept, kept_bytes(c, i));
		jobs++;
		if (b > largest) {
			largest = b;
			big = i;
		}
	}
	/* the copy buffer of a saved tensor, or a bias delta, after the SVDs */
	fixed = EXTRACT_RESERVE + (bias > (uint64_t)STEP * 8 ? bias : (uint64_t)STEP * 8);
	fixed = sat_add(fixed, kept);
	if (!jobs) {
		c->threads = 1;
		c->st->memory = fixed;
		return 0;
	}
	if (c->o->max_memory < sat_add(fixed, largest)) {
		const struct weld_tensor_info *t = weld_model_tensor(c->ft, big);

		return weld_fail(c->err, WELD_ERR_ARG,
				 "--max-memory %llu is too small: tensor '%s' (its %lld x %lld delta is decomposed whole, in double) needs at least %llu bytes",
				 (unsigned long long)c->o->max_memory, t->name, (long long)t->shape[0],
				 (long long)t->shape[1], (unsigned long long)sat_add(fixed, largest));
	}
	room = (c->o->max_memory - fixed) / largest;
	want = c->o->threads > 0 ? (size_t)c->o->threads : (size_t)omp_get_max_threads();
	want = want < jobs ? want : jobs;
	c->threads = (int)(room < want ? room : want);
	c->st->in_flight = (size_t)c->threads;
	c->st->memory = fixed + (uint64_t)c->threads * largest;
	return 0;
}

