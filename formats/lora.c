/*
 * lora.c - a PEFT LoRA adapter on a base model (METHODS 16).
 *
 * Adapter file layout (adapter_model.safetensors or adapter_model.bin, read
 * as any checkpoint), every name prefixed "base_model.model.":
 *   <module>.lora_A.weight     [r × in]      <module>.lora_B.weight  [out × r]
 *   <module>.lora_embedding_A  [r × vocab]   <module>.lora_embedding_B [dim × r]
 *   <module>.lora_B.bias       [out]         (applied only with lora_bias)
 *   <tensor name>              a modules_to_save tensor, replacing the base's
 * The base tensor of a module is <module>.weight. For W [out × in],
 * W' = W + s·B·A; with fan_in_fan_out (W stored [in × out]) and for
 * embeddings (W [vocab × dim]), W' = W + s·(B·A)ᵀ. s = alpha/r, or
 * alpha/√r with use_rslora. Each element's sum over the rank runs in
 * double, is added to W in double and rounded once to float32 (then to
 * the tensor's dtype). Everything is checked at open: a DoRA magnitude
 * vector, a conv LoRA (A or B not 2-D), a module the base lacks, a rank
 * other than the config's or a shape that does not fit is refused.
 */
#include "format.h"
#include "lora.h"
#include "lora_gemm.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PREFIX "base_model.model."

enum kind { L_NONE, L_DELTA, L_BIAS, L_REPLACE };

/* What the adapter does to one base tensor. */
struct entry {
	enum kind kind;
	int64_t a, b;           /* adapter tensors: A and B, or the bias / replacement in a */
	double scale;
	bool t;                 /* W' = W + s·(B·A)ᵀ */
};

struct weld_lora {
	uint64_t serial;        /* unique in the process (per-thread buffers, below) */
	struct weld_lora_config cfg;
	weld_model *adapter;
	struct entry *e;        /* one per base tensor */
	size_t touched;
	char warning[512];
};

static bool ends_with(const char *s, const char *suf, size_t *stem)
{
	size_t a = strlen(s), b = strlen(suf);

	if (a < b || strcmp(s + a - b, suf) != 0)
		return false;
	*stem = a - b;
	return true;
}

/* Can a delta be added to tensor t (stored plainly, in a dtype weld writes)? */
static bool addable(const struct weld_tensor_info *t)
{
	return !t->quant && (t->dtype == WELD_F64 || t->dtype == WELD_F32 ||
			     t->dtype == WELD_F16 || t->dtype == WELD_BF16);
}

static int afail(const struct weld_lora *l, struct weld_error *err, const char *tensor,
		 const char *fmt, ...) WELD_PRINTF(4, 5);

static int afail(const struct weld_lora *l, struct weld_error *err, const char *tensor,
		 const char *fmt, ...)
{
	char what[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	return weld_fail(err, WELD_ERR_FORMAT, "'%s': tensor '%s': %s",
			 weld_model_path(l->adapter), tensor, what);
}

/* The adapter tensor called PREFIX + module + suffix, or -1. */
static int64_t find_part(const struct weld_lora *l, const char *module, const char *suffix)
{
	char *name = weld_strfmt(PREFIX "%s%s", module, suffix);
	int64_t i = name ? weld_model_find(l->adapter, name) : -1;

	free(name);
	return i;
}

static int check_factor(const struct weld_lora *l, int64_t i, long r, bool is_a,
			struct weld_error *err)
{
	const struct weld_tensor_info *t = weld_model_tensor(l->adapter, (size_t)i);
	char msg[160];

	if (t->ndim >= 3)
		return afail(l, err, t->name, "%s-D factor: convolution LoRA is not supported",
			     t->ndim == 3 ? "3" : t->ndim == 4 ? "4" : "N");
	if (t->ndim != 2 || !weld_dtype_is_float(t->dtype) || t->quant)
		return afail(l, err, t->name, "%s", "expected a 2-D floating matrix");
	if (t->shape[is_a ? 0 : 1] != r) {
		snprintf(msg, sizeof(msg), "rank %lld, but adapter_config.json gives r = %ld for this module",
			 (long long)t->shape[is_a ? 0 : 1], r);
		return afail(l, err, t->name, "%s", msg);
	}
	return 0;
}

/* The base tensor a module changes, checked against the product's shape. */
static int64_t module_target(const struct weld_lora *l, const weld_model *base,
			     const char *module, const struct weld_tensor_info *a,
			     const struct weld_tensor_info *b, bool t, struct weld_error *err)
{
	char *name = weld_strfmt("%s.weight", module);
	int64_t w = name ? weld_model_find(base, name) : -1;
	int64_t rows = t ? a->shape[1] : b->shape[0], cols = t ? b->shape[0] : a->shape[1];
	const struct weld_tensor_info *wi;
	char msg[512];

	if (!name) {
		weld_fail(err, WELD_ERR_NOMEM, "out of memory");
		return -1;
	}
	if (w < 0) {
		snprintf(msg, sizeof(msg), "module '%s': the base model '%s' has no tensor '%s'",
			 module, weld_model_path(base), name);
	} else {
		wi = weld_model_tensor(base, (size_t)w);
		if (wi->ndim != 2 || !addable(wi))
			snprintf(msg, sizeof(msg), "module '%s': base tensor '%s' is not a 2-D F64/F32/F16/BF16 matrix",
				 module, name);
		else if (wi->shape[0] != rows || wi->shape[1] != cols)
			snprintf(msg, sizeof(msg), "module '%s': base tensor '%s' is [%lld, %lld] but the adapter's %s is [%lld, %lld]",
				 module, name, (long long)wi->shape[0], (long long)wi->shape[1],
				 t ? "(B·A)ᵀ" : "B·A", (long long)rows, (long long)cols);
		else if (l->e[w].kind != L_NONE)
			snprintf(msg, sizeof(msg), "module '%s': base tensor '%s' is changed twice",
				 module, name);
		else
			msg[0] = 0;
	}
	free(name);
	if (msg[0]) {
		weld_fail(err, WELD_ERR_MISMATCH, "'%s': %s", weld_model_path(l->adapter), msg);
		return -1;
	}
	return w;
}

/* lora_B.bias of a module: added to <module>.bias when lora_bias is set. */
static int add_bias(struct weld_lora *l, const weld_model *base, const char *module,
		    int64_t rows, double scale, struct weld_error *err)
{
	int64_t bi = find_part(l, module, ".lora_B.bias"), w;
	const struct weld_tensor_info *t, *bt;
	char *name;

	if (bi < 0)
		return 0;
	t = weld_model_tensor(l->adapter, (size_t)bi);
	if (!l->cfg.lora_bias) {
		if (!l->warning[0])
			snprintf(l->warning, sizeof(l->warning),
				 "'%s': tensor '%s' and other lora_B.bias ignored: adapter_config.json does not set lora_bias (PEFT ignores them too)",
				 weld_model_path(l->adapter), t->name);
		return 0;
	}
	if (t->ndim != 1 || t->shape[0] != rows || !weld_dtype_is_float(t->dtype) || t->quant)
		return afail(l, err, t->name, "%s", "expected a 1-D floating vector of lora_B's rows");
	if (!(name = weld_strfmt("%s.bias", module)))
		return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	w = weld_model_find(base, name);
	bt = w >= 0 ? weld_model_tensor(base, (size_t)w) : NULL;
	if (!bt || bt->ndim != 1 || bt->shape[0] != rows || !addable(bt) || l->e[w].kind != L_NONE) {
		weld_fail(err, WELD_ERR_MISMATCH,
			  "'%s': tensor '%s': the base model '%s' has no F64/F32/F16/BF16 [%lld] tensor '%s' to add it to",
			  weld_model_path(l->adapter), t->name, weld_model_path(base),
			  (long long)rows, name);
		free(name);
		return -1;
	}
	free(name);
	l->e[w] = (struct entry){ L_BIAS, bi, -1, scale, false };
	return 0;
}

static int add_module(struct weld_lora *l, const weld_model *base, const char *module,
		      int64_t ai, bool emb, struct weld_error *err)
{
	int64_t bi = find_part(l, module, emb ? ".lora_embedding_B" : ".lora_B.weight"), w;
	const struct weld_tensor_info *a = weld_model_tensor(l->adapter, (size_t)ai), *b;
	bool t = emb || l->cfg.fan_in_fan_out;
	double alpha;
	long r;

	if (bi < 0)
		return afail(l, err, a->name, "no matching %s", emb ? "lora_embedding_B" : "lora_B.weight");
	b = weld_model_tensor(l->adapter, (size_t)bi);
	weld_lora_config_module(&l->cfg, module, &r, &alpha);
	if (check_factor(l, ai, r, true, err) < 0 || check_factor(l, bi, r, false, err) < 0)
		return -1;
	w = module_target(l, base, module, a, b, t, err);
	if (w < 0)
		return -1;
	l->e[w] = (struct entry){ L_DELTA, ai, bi, alpha / (l->cfg.rslora ? sqrt((double)r) : (double)r), t };
	return add_bias(l, base, module, b->shape[0], l->e[w].scale, err);
}

/* Is module listed in modules_to_save (PEFT: the name ends with an entry)? */
static bool saved_module(const struct weld_lora_config *c, const char *module)
{
	size_t n = strlen(module);

	for (size_t i = 0; i < c->nsave; i++) {
		size_t k = strlen(c->save[i]);

		if (k <= n && strcmp(module + n - k, c->save[i]) == 0 &&
		    (k == n || module[n - k - 1] == '.'))
			return true;
	}
	return false;
}

/* A whole tensor of the adapter: a modules_to_save copy of a base tensor. */
static int add_replacement(struct weld_lora *l, const weld_model *base, int64_t i,
			   const char *tname, struct weld_error *err)
{
	const struct weld_tensor_info *t = weld_model_tensor(l->adapter, (size_t)i), *bt;
	int64_t w = weld_model_find(base, tname);
	char *module = strdup(tname), *dot;
	bool listed;

	if (!module)
		return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	if ((dot = strrchr(module, '.')))
		*dot = 0;
	listed = saved_module(&l->cfg, module);
	free(module);
	if (!listed)
		return afail(l, err, t->name, "%s", "not a LoRA factor, and its module is not in modules_to_save");
	if (w < 0)
		return afail(l, err, t->name, "modules_to_save tensor '%s' is not in the base model", tname);
	bt = weld_model_tensor(base, (size_t)w);
	if (bt->ndim != t->ndim || memcmp(bt->shape, t->shape, (size_t)t->ndim * sizeof(t->shape[0])) ||
	    t->quant || l->e[w].kind != L_NONE)
		return afail(l, err, t->name, "modules_to_save tensor '%s' does not match the base tensor's shape", tname);
	l->e[w] = (struct entry){ L_REPLACE, i, -1, 0, false };
	return 0;
}

/* One adapter tensor: a factor A (its module is added), a B or bias (taken
 * with its A), a DoRA or unknown LoRA part (refused), or a whole tensor. */
static int add_tensor(struct weld_lora *l, const weld_model *base, int64_t i,
		      struct weld_error *err)
{
	const char *name = weld_model_tensor(l->adapter, (size_t)i)->name, *rest;
	char *module;
	size_t stem;
	bool emb = false;
	int r;

	if (strncmp(name, PREFIX, strlen(PREFIX)) != 0)
		return afail(l, err, name, "%s", "not a PEFT adapter name (expected '" PREFIX "<module>...')");
	rest = name + strlen(PREFIX);
	if (strstr(rest, "lora_magnitude_vector"))
		return afail(l, err, name, "%s", "DoRA magnitude vector: DoRA adapters are not supported");
	if (ends_with(rest, ".lora_B.weight", &stem) || ends_with(rest, ".lora_B.bias", &stem) ||
	    ends_with(rest, ".lora_embedding_B", &stem)) {
		module = strndup(rest, stem);
		r = !module ? weld_fail(err, WELD_ERR_NOMEM, "out of memory") :
		    find_part(l, module, ends_with(rest, ".lora_embedding_B", &stem) ?
				  ".lora_embedding_A" : ".lora_A.weight") < 0 ?
		    afail(l, err, name, "%s", "no matching lora_A") : 0;
		free(module);
		return r;
	}
	if (!ends_with(rest, ".lora_A.weight", &stem) &&
	    !(emb = ends_with(rest, ".lora_embedding_A", &stem))) {
		if (strstr(rest, "lora_"))
			return afail(l, err, name, "%s", "not a LoRA part weld knows (lora_A/B, lora_embedding_A/B)");
		return add_replacement(l, base, i, rest, err);
	}
	if (!(module = strndup(rest, stem)))
		return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	r = add_module(l, base, module, i, emb, err);
	free(module);
	return r;
}

/* adapter_model.safetensors, else adapter_model.bin, in dir. */
static int open_weights(struct weld_lora *l, const char *dir, struct weld_error *err)
{
	static const char *const names[] = { "adapter_model.safetensors", "adapter_model.bin" };

	for (size_t k = 0; k < 2; k++) {
		char *p = weld_path_join(dir, names[k]);
		int r;

		if (!p)
			return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
		if (access(p, F_OK) == 0) {
			r = weld_model_open(&l->adapter, p, err);
			free(p);
			return r;
		}
		free(p);
	}
	return weld_fail(err, WELD_ERR_FORMAT,
			 "'%s': no adapter_model.safetensors or adapter_model.bin in this folder", dir);
}

static uint64_t serials;

int weld_lora_open(struct weld_lora **out, const weld_model *base, const char *dir,
		   struct weld_error *err)
{
	struct weld_lora *l = calloc(1, sizeof(*l));
	size_t n = weld_model_count(base);

	*out = NULL;
	if (!l || !(l->e = calloc(n ? n : 1, sizeof(*l->e)))) {
		free(l);
		return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	}
	l->serial = __atomic_add_fetch(&serials, 1, __ATOMIC_RELAXED);
	if (weld_lora_config_read(&l->cfg, dir, err) < 0 || open_weights(l, dir, err) < 0)
		goto fail;
	for (size_t i = 0; i < weld_model_count(l->adapter); i++)
		if (add_tensor(l, base, (int64_t)i, err) < 0)
			goto fail;
	for (size_t i = 0; i < n; i++)
		l->touched += l->e[i].kind != L_NONE;
	if (!l->touched) {
		weld_fail(err, WELD_ERR_FORMAT, "'%s': the adapter changes no tensor", dir);
		goto fail;
	}
	*out = l;
	return 0;
fail:
	weld_lora_close(l);
	return -1;
}

void weld_lora_close(struct weld_lora *l)
{
	if (!l)
		return;
	weld_lora_config_free(&l->cfg);
	weld_model_close(l->adapter);
	free(l->e);
	free(l);
}

bool weld_lora_touches(const struct weld_lora *l, size_t i)
{
	return l->e[i].kind != L_NONE;
}

size_t weld_lora_count(const struct weld_lora *l)
{
	return l->touched;
}

const char *weld_lora_warning(const struct weld_lora *l)
{
	return l->warning[0] ? l->warning : NULL;
}

void weld_lora_read_cost(const struct weld_lora *l, const weld_model *base, uint64_t *per_elem,
			 uint64_t *fixed)
{
	*per_elem = 0;
	*fixed = 0;
	for (size_t i = 0; i < weld_model_count(base); i++) {
		const struct weld_tensor_info *w = weld_model_tensor(base, i), *a;
		uint64_t k, cols, f;

		if (l->e[i].kind == L_NONE || l->e[i].kind == L_REPLACE)
			continue;
		/* delta rows in double, float32 values, rows of B (k <= cols) */
		*per_elem = 20;
		if (l->e[i].kind == L_BIAS)
			continue;
		a = weld_model_tensor(l->adapter, (size_t)l->e[i].a);
		k = (uint64_t)a->shape[0];
		cols = (uint64_t)w->shape[1];
		f = 8 * cols * (k + 2) + 16 * k + 64;
		*fixed = f > *fixed ? f : *fixed;
	}
}

const struct weld_tensor_info *weld_lora_replacement(const struct weld_lora *l, size_t i,
						     const char **file)
{
	const struct weld_tensor_info *t;

	if (l->e[i].kind != L_REPLACE)
		return NULL;
	t = weld_model_tensor(l->adapter, (size_t)l->e[i].a);
	*file = weld_model_file_path(l->adapter, (size_t)t->file);
	return t;
}

/* ---------------------------------------------------------------- reading */

/* n elements of adapter tensor i from first, as doubles: F64 as it is;
 * else read as float32 into the upper half of dst, then widened forward
 * (element j is read before double j overwrites it). */
static int read_f64(const weld_model *m, int64_t i, uint64_t first, size_t n, double *dst,
		    struct weld_error *err)
{
	float *f = (float *)(void *)dst + n;

	if (weld_model_tensor(m, (size_t)i)->dtype == WELD_F64 && !weld_model_tensor(m, (size_t)i)->quant)
		return weld_model_read(m, (size_t)i, first, n, dst, err);
	if (weld_model_read_f32(m, (size_t)i, first, n, f, NULL, err) < 0)
		return -1;
	for (size_t j = 0; j < n; j++)
		dst[j] = f[j];
	return 0;
}

/*
 * Each thread that reads keeps its buffers from one read to the next: the
 * delta rows, the rows of the factor a read takes a slice of, float32
 * values, and the whole other factor of the module it read last (keyed by
 * the adapter's serial number and the tensor, so that a later adapter at
 * the same address is never mistaken for it). They stay allocated while
 * the thread lives: one module's worth, which the plan counts
 * (weld_lora_read_cost).
 */
struct workspace {
	uint64_t serial;        /* of the adapter whose factor `whole` holds; 0: none */
	size_t tensor;
	double *whole, *part, *d;
	float *f;
	size_t whole_cap, part_cap, d_cap, f_cap;
};

static _Thread_local struct workspace ws;

static int grow(void **p, size_t *cap, size_t bytes, struct weld_error *err)
{
	void *q;

	if (bytes <= *cap)
		return 0;
	q = realloc(*p, bytes);
	if (!q)
		return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	*p = q;
	*cap = bytes;
	return 0;
}

/* dst holds n base values of dtype dt: replace each w by w + scale·d. */
static int add_delta(enum weld_dtype dt, void *dst, size_t n, const double *d, double scale,
		     struct weld_error *err)
{
	float *f = dst;

	if (dt == WELD_F64) {
		for (size_t j = 0; j < n; j++)
			((double *)dst)[j] += scale * d[j];
		return 0;
	}
	if (dt != WELD_F32) {
		if (grow((void **)&ws.f, &ws.f_cap, n * sizeof(float), err) < 0)
			return -1;
		f = ws.f;
		weld_decode_f32(dt, dst, f, n);
	}
	for (size_t j = 0; j < n; j++)
		f[j] = (float)((double)f[j] + scale * d[j]);
	if (dt != WELD_F32)
		weld_encode_f32(dt, f, dst, n);
	return 0;
}

/* The factor read whole (A, or B when transposed) of tensor i, in ws. */
static int whole_factor(const struct weld_lora *l, size_t i, int64_t t, size_t n,
			struct weld_error *err)
{
	if (ws.serial == l->serial && ws.tensor == i)
		return 0;
	ws.serial = 0;
	if (grow((void **)&ws.whole, &ws.whole_cap, n * sizeof(double), err) < 0 ||
	    read_f64(l->adapter, t, 0, n, ws.whole, err) < 0)
		return -1;
	ws.serial = l->serial;
	ws.tensor = i;
	return 0;
}

/*
 * Rows [r0, r0 + nr) of B·A (or of (B·A)ᵀ) into ws.d [nr × cols]: the
 * rows of B and all of A, or the columns of A and all of B.
 */
static int delta_rows(const struct weld_lora *l, size_t i, uint64_t r0, size_t nr,
		      size_t rows, size_t cols, struct weld_error *err)
{
	const struct entry *e = &l->e[i];
	size_t k = (size_t)weld_model_tensor(l->adapter, (size_t)e->a)->shape[0];

	if (grow((void **)&ws.part, &ws.part_cap, nr * k * sizeof(double), err) < 0 ||
	    grow((void **)&ws.d, &ws.d_cap, nr * cols * sizeof(double), err) < 0)
		return -1;
	if (!e->t) {    /* part = B rows [nr × k], whole = A [k × cols] */
		if (read_f64(l->adapter, e->b, r0 * k, nr * k, ws.part, err) < 0 ||
		    whole_factor(l, i, e->a, k * cols, err) < 0)
			return -1;
		weld_lora_rows(nr, cols, k, ws.part, ws.whole, ws.d);
		return 0;
	}
	/* part = A columns [k × nr], whole = B [cols × k] */
	for (size_t kk = 0; kk < k; kk++)
		if (read_f64(l->adapter, e->a, kk * rows + r0, nr, ws.part + kk * nr, err) < 0)
			return -1;
	if (whole_factor(l, i, e->b, cols * k, err) < 0)
		return -1;
	weld_lora_rows_t(nr, cols, k, ws.part, ws.whole, ws.d);
	return 0;
}

static int read_delta(const struct weld_lora *l, const weld_model *base, size_t i,
		      uint64_t first, size_t n, void *dst, struct weld_error *err)
{
	const struct weld_tensor_info *w = weld_model_tensor(base, i);
	size_t rows = (size_t)w->shape[0], cols = (size_t)w->shape[1];
	uint64_t r0 = first / cols, r1 = (first + n - 1) / cols + 1;

	if (weld_model_read_plain(base, i, first, n, dst, err) < 0 ||
	    delta_rows(l, i, r0, (size_t)(r1 - r0), rows, cols, err) < 0)
		return -1;
	return add_delta(w->dtype, dst, n, ws.d + (first - r0 * cols), l->e[i].scale, err);
}

static int read_bias(const struct weld_lora *l, const weld_model *base, size_t i,
		     uint64_t first, size_t n, void *dst, struct weld_error *err)
{
	if (grow((void **)&ws.d, &ws.d_cap, n * sizeof(double), err) < 0 ||
	    weld_model_read_plain(base, i, first, n, dst, err) < 0 ||
	    read_f64(l->adapter, l->e[i].a, first, n, ws.d, err) < 0)
		return -1;
	return add_delta(weld_model_tensor(base, i)->dtype, dst, n, ws.d, l->e[i].scale, err);
}

int weld_lora_read(const struct weld_lora *l, const weld_model *base, size_t i,
		   uint64_t first, size_t n, void *dst, struct weld_error *err)
{
	if (!n)
		return 0;
	switch (l->e[i].kind) {
	case L_DELTA:
		return read_delta(l, base, i, first, n, dst, err);
	case L_BIAS:
		return read_bias(l, base, i, first, n, dst, err);
	case L_REPLACE:
		return weld_model_read(l->adapter, (size_t)l->e[i].a, first, n, dst, err);
	default:
		return weld_model_read_plain(base, i, first, n, dst, err);
	}
}
