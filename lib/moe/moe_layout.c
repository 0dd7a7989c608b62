/*
 * moe_layout.c - the MoE structure of a checkpoint, found from its tensor
 * names, shapes and config.json (read by moe_config.c): which tensors are
 * experts (layer, expert, projection), which are routers, and which are
 * copied through.
 *
 * Detection runs in steps: read config.json, scan the names for layer
 * prefixes and tensor suffixes, fix the suffix order and the three main
 * weights, make the layers, give every tensor its role, then check that
 * every layer is complete and consistent.
 */
#include "moe_impl.h"

#include <ctype.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_EXPERTS WELD_MOE_MAX_EXPERTS

/* The projection names of each naming style: gate (W1), up (W3), down
 * (W2), and gate and up fused in one matrix (gate rows first), if any. */
struct moe_style {
	const char *name;      /* "mixtral", "qwen" */
	const char *block;     /* module holding the experts */
	const char *proj[3];   /* gate, up, down */
	const char *fused;     /* gate_up, or NULL */
};

static const struct moe_style styles[] = {
	{ "mixtral", "block_sparse_moe", { "w1", "w3", "w2" }, NULL },
	{ "qwen", "mlp", { "gate_proj", "up_proj", "down_proj" }, "gate_up_proj" },
};

static char *dup_range(const char *s, size_t n)
{
	char *p = malloc(n + 1);

	if (p) {
		memcpy(p, s, n);
		p[n] = '\0';
	}
	return p;
}

static char *dup_str(const char *s)
{
	return s ? dup_range(s, strlen(s)) : NULL;
}

/*
 * Split "<P><block>.experts.<e>.<suffix>" (P empty or ending in '.'), or
 * a stacked "<P><block>.experts.<suffix>" holding every expert (*expert
 * -1). On success *plen is the length of "<P><block>." and *style the
 * style.
 */
static bool split_expert_name(const char *name, size_t *plen, long *expert,
			      const char **suffix, const struct moe_style **style)
{
	for (const char *p = strstr(name, ".experts."); p; p = strstr(p + 1, ".experts.")) {
		const size_t end = (size_t)(p - name);
		size_t start = end;
		const char *q = p + 9;
		long e = 0;
		int digits = 0;

		while (start > 0 && name[start - 1] != '.')
			start--;
		*style = NULL;
		for (size_t k = 0; k < sizeof(styles) / sizeof(styles[0]); k++)
			if (strlen(styles[k].block) == end - start &&
			    memcmp(name + start, styles[k].block, end - start) == 0)
				*style = &styles[k];
		if (!*style)
			continue;
		while (isdigit((unsigned char)*q) && digits < 9) {
			e = e * 10 + (*q++ - '0');
			digits++;
		}
		if (!digits && isalpha((unsigned char)*q)) {
			*plen = end + 1;
			*expert = -1;
			*suffix = q;
			return true;
		}
		if (!digits || *q != '.' || !q[1])
			continue;
		*plen = end + 1;
		*expert = e;
		*suffix = q + 1;
		return true;
	}
	return false;
}

/* L of "...layers.L." in a prefix, else its last all-digit component, else -1. */
static int layer_index_of(const char *prefix, size_t len)
{
	int last = -1;

	for (size_t k = 0; k < len; ) {
		size_t j = k;
		long v = 0;
		bool digits = true;

		while (j < len && prefix[j] != '.')
			j++;
		if (j == k)
			digits = false;
		for (size_t i = k; i < j && digits; i++) {
			if (!isdigit((unsigned char)prefix[i]) || v > INT_MAX / 10)
				digits = false;
			else
				v = v * 10 + (prefix[i] - '0');
		}
		if (digits) {
			if (k >= 7 && memcmp(prefix + k - 7, "layers.", 7) == 0)
				return (int)v;
			last = (int)v;
		}
		k = j + 1;
	}
	return last;
}

static int find_string(char *const *v, int n, const char *s)
{
	for (int k = 0; k < n; k++)
		if (strcmp(v[k], s) == 0)
			return k;
	return -1;
}

static int cmp_str_ptr(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int cmp_layer(const void *a, const void *b)
{
	const struct weld_moe_layer *x = a, *y = b;

	return (x->index > y->index) - (x->index < y->index);
}

/* The error for a checkpoint without recognised expert tensors. */
static int no_experts_error(const struct weld_tensor_info *const *t, size_t n,
			    const char *model_type, struct weld_error *err)
{
	const char *example = NULL;
	size_t found = 0;
	char type[160] = "";

	for (size_t i = 0; i < n; i++) {
		if (strstr(t[i]->name, ".experts.") || strstr(t[i]->name, ".experts_")) {
			if (!example)
				example = t[i]->name;
			found++;
		}
	}
	if (model_type)
		snprintf(type, sizeof(type), " (config.json model_type '%.100s')", model_type);
	if (example)
		return weld_fail(err, WELD_ERR_FORMAT,
				 "unrecognised MoE layout%s: no expert tensors matching "
				 "'...block_sparse_moe.experts.E.w1...' or '...mlp.experts.E.gate_proj...'; "
				 "found %zu other expert tensors among %zu, e.g. '%s' "
				 "(differently named experts are not supported)",
				 type, found, n, example);
	return weld_fail(err, WELD_ERR_FORMAT,
			 "not a recognised MoE checkpoint%s: no expert tensors matching "
			 "'...block_sparse_moe.experts.E.w1...' or '...mlp.experts.E.gate_proj...'; "
			 "found 0 expert tensors among %zu", type, n);
}

/* The shape of one expert's matrix in tensor x (x's own shape, or without
 * the leading expert dimension when the experts are stacked): its ndim. */
static int mat_dims(const struct weld_moe_layout *lo, const struct weld_tensor_info *x,
		    int64_t *dims)
{
	const int skip = lo->stacked ? 1 : 0;

	for (int k = skip; k < x->ndim; k++)
		dims[k - skip] = x->ndim > k ? x->shape[k] : 0;
	return x->ndim - skip;
}

/* The FFN of a layer from its main weights: [F, H], [F, H] and [H, F], or
 * with gate and up fused [2F, H] and [H, F]; sets ly->ffn and lo->hidden. */
static int check_ffn(struct weld_moe_layout *lo, struct weld_moe_layer *ly,
		     const struct weld_tensor_info *const *t, struct weld_error *err)
{
	const struct weld_tensor_info *g = t[ly->tensor[lo->gate_suffix]];
	const struct weld_tensor_info *u = t[ly->tensor[lo->up_suffix]];
	const struct weld_tensor_info *d = t[ly->tensor[lo->down_suffix]];
	int64_t gs[WELD_MAX_DIMS], us[WELD_MAX_DIMS], ds[WELD_MAX_DIMS];
	const int gn = mat_dims(lo, g, gs), un = mat_dims(lo, u, us), dn = mat_dims(lo, d, ds);
	const int64_t rows = lo->fused ? 2 * ds[1] : ds[1];

	if (gn != 2 || un != 2 || dn != 2 || gs[0] != rows || gs[1] != ds[0] ||
	    us[0] != gs[0] || us[1] != gs[1] || ds[1] < 1)
		return weld_fail(err, WELD_ERR_FORMAT,
				 "layer %d: expert shapes do not form an FFN: '%s' %dD, '%s' %dD%s%s "
				 "(expected %s%s)", ly->index, g->name, g->ndim,
				 d->name, d->ndim, lo->fused ? "" : ", up ", lo->fused ? "" : u->name,
				 lo->fused ? "gate_up [2F, H] and down [H, F]" : "[F, H], [F, H], [H, F]",
				 lo->stacked ? " after the leading expert dimension" : "");
	ly->ffn = ds[1];
	if (lo->hidden == 0)
		lo->hidden = ds[0];
	else if (lo->hidden != ds[0])
		return weld_fail(err, WELD_ERR_FORMAT,
				 "layer %d: hidden size %" PRId64 " differs from %" PRId64 " in layer %d",
				 ly->index, ds[0], lo->hidden, lo->layers[0].index);
	return 0;
}

/* Tensor x of suffix s against the first expert's (first): the same shape,
 * floating, E experts when stacked, and the FFN width where --align
 * permutes it. */
static int check_expert_tensor(const struct weld_moe_layout *lo, const struct weld_moe_layer *ly,
			       int s, const struct weld_tensor_info *x,
			       const struct weld_tensor_info *first, struct weld_error *err)
{
	int64_t dims[WELD_MAX_DIMS];
	const int nd = mat_dims(lo, x, dims);
	bool same = x->ndim == first->ndim;

	for (int k = 0; same && k < x->ndim; k++)
		same = x->shape[k] == first->shape[k];
	if (!same)
		return weld_fail(err, WELD_ERR_MISMATCH, "tensor '%s': shape differs from '%s'",
				 x->name, first->name);
	if (!weld_dtype_is_float(x->dtype))
		return weld_fail(err, WELD_ERR_FORMAT,
				 "tensor '%s': dtype %s cannot be merged (expert tensors must be floating)",
				 x->name, weld_dtype_name(x->dtype));
	if (lo->stacked && (x->ndim < 2 || x->shape[0] != lo->n_experts))
		return weld_fail(err, WELD_ERR_FORMAT,
				 "tensor '%s': first dimension %" PRId64 " is not the %d experts of the model",
				 x->name, x->ndim ? x->shape[0] : 0, lo->n_experts);
	if (lo->axis[s] == WELD_MOE_AXIS_ROWS && (nd < 1 || dims[0] != ly->ffn))
		return weld_fail(err, WELD_ERR_FORMAT,
				 "tensor '%s': %s dimension is not the FFN width %" PRId64,
				 x->name, lo->stacked ? "second" : "first", ly->ffn);
	if (lo->axis[s] == WELD_MOE_AXIS_HALVES && (nd < 1 || dims[0] != 2 * ly->ffn))
		return weld_fail(err, WELD_ERR_FORMAT,
				 "tensor '%s': %s dimension is not twice the FFN width %" PRId64 " (gate and up)",
				 x->name, lo->stacked ? "second" : "first", ly->ffn);
	if (lo->axis[s] == WELD_MOE_AXIS_COLS && (nd < 2 || dims[1] != ly->ffn))
		return weld_fail(err, WELD_ERR_FORMAT,
				 "tensor '%s': %s dimension is not the FFN width %" PRId64,
				 x->name, lo->stacked ? "third" : "second", ly->ffn);
	return 0;
}

/* Shapes, dtypes and the alignment axis of every expert tensor of a layer,
 * and the size of each expert's matrices (ly->slice, ly->rows). */
static int check_layer_tensors(struct weld_moe_layout *lo, struct weld_moe_layer *ly,
			       const struct weld_tensor_info *const *t, struct weld_error *err)
{
	const int ns = lo->n_suffix;

	if (check_ffn(lo, ly, t, err) < 0)
		return -1;
	for (int s = 0; s < ns; s++) {
		const struct weld_tensor_info *first = t[ly->tensor[s]];
		int64_t dims[WELD_MAX_DIMS];

		for (int e = 0; e < lo->n_experts; e++)
			if (check_expert_tensor(lo, ly, s, t[ly->tensor[(size_t)e * (size_t)ns + (size_t)s]],
						first, err) < 0)
				return -1;
		ly->slice[s] = lo->stacked ? first->nelem / (uint64_t)lo->n_experts : first->nelem;
		ly->rows[s] = mat_dims(lo, first, dims) >= 1 && dims[0] > 0 ? dims[0] : 1;
	}
	return 0;
}

/* A distinct "<P><block>." prefix of expert tensors: one MoE layer. */
struct moe_prefix {
	char *prefix;      /* owned until its layer takes it */
	size_t len;
	int max_expert;
};

/* What the scan of the tensor names finds. */
struct name_scan {
	struct moe_prefix *pre;
	int npre, cap;
	const struct moe_style *style;
	const char *example;   /* the last expert tensor seen, for messages */
	const char *per, *stacked;  /* a per-expert and a stacked tensor seen */
};

static void scan_release(struct name_scan *sc)
{
	for (int k = 0; k < sc->npre; k++)
		free(sc->pre[k].prefix);
	free(sc->pre);
}

/* The suffix of an expert tensor must start with one of the style's three
 * projections ("w1.weight", "gate_proj.weight_scale_inv", ...). */
static int check_projection(const struct moe_style *st, const char *suffix, const char *name,
			    struct weld_error *err)
{
	const size_t pl = strcspn(suffix, ".");

	for (int p = 0; p < 4; p++) {
		const char *proj = p < 3 ? st->proj[p] : st->fused;

		if (proj && strlen(proj) == pl && memcmp(suffix, proj, pl) == 0)
			return 0;
	}
	return weld_fail(err, WELD_ERR_FORMAT,
			 "tensor '%s': unknown expert tensor '%s' (expected %s, %s or %s%s%s)",
			 name, suffix, st->proj[0], st->proj[1], st->proj[2],
			 st->fused ? ", or fused " : "", st->fused ? st->fused : "");
}

/* Quantisation scales of an expert ("gate_proj.weight_scale_inv",
 * "down_proj_scales_inv", "...weight_scale", "...input_scale") are not
 * weights to merge: the model reader decodes them with their weights when
 * it knows the format, and then never lists them. Listed, they are
 * refused: merging raw 8-bit values and their scales apart is wrong. */
static int check_not_scale(const char *suffix, const char *name, struct weld_error *err)
{
	if (!strstr(suffix, "_scale") && !strstr(suffix, ".scale"))
		return 0;
	return weld_fail(err, WELD_ERR_FORMAT,
			 "tensor '%s': expert weights stored with scales (FP8 or another quantisation) "
			 "that this model reader does not decode; expert-merge merges decoded weights "
			 "only (convert the checkpoint to BF16 first)", name);
}

/* Index of the prefix name[0..plen) in the scan, added if new; -1 if out
 * of memory. */
static int add_prefix(struct name_scan *sc, const char *name, size_t plen)
{
	int k;

	for (k = 0; k < sc->npre; k++)
		if (sc->pre[k].len == plen && memcmp(sc->pre[k].prefix, name, plen) == 0)
			return k;
	if (sc->npre == sc->cap) {
		int nc = sc->cap ? 2 * sc->cap : 16;
		struct moe_prefix *np = realloc(sc->pre, (size_t)nc * sizeof(*np));

		if (!np)
			return -1;
		sc->pre = np;
		sc->cap = nc;
	}
	sc->pre[k].prefix = dup_range(name, plen);
	sc->pre[k].len = plen;
	sc->pre[k].max_expert = -1;
	if (!sc->pre[k].prefix)
		return -1;
	sc->npre++;
	return k;
}

/* Add suffix to lo->suffix unless it is there; -1 if out of memory. */
static int add_suffix(struct weld_moe_layout *lo, const char *suffix)
{
	char **ns;

	if (find_string(lo->suffix, lo->n_suffix, suffix) >= 0)
		return 0;
	ns = realloc(lo->suffix, (size_t)(lo->n_suffix + 1) * sizeof(*ns));
	if (!ns)
		return -1;
	lo->suffix = ns;
	if (!(lo->suffix[lo->n_suffix] = dup_str(suffix)))
		return -1;
	lo->n_suffix++;
	return 0;
}

/* Step 1: the layer prefixes, the tensor suffixes and the highest expert
 * index of each layer, from the names alone; one naming style only. */
static int scan_names(struct name_scan *sc, struct weld_moe_layout *lo,
		      const struct weld_tensor_info *const *t, size_t n, struct weld_error *err)
{
	for (size_t i = 0; i < n; i++) {
		const struct moe_style *st;
		const char *suffix;
		size_t plen;
		long e;
		int k;

		if (!split_expert_name(t[i]->name, &plen, &e, &suffix, &st))
			continue;
		if (sc->style && st != sc->style)
			return weld_fail(err, WELD_ERR_FORMAT,
					 "tensor '%s': mixes '%s.experts' with '%s.experts' (in '%s')",
					 t[i]->name, st->block, sc->style->block, sc->example);
		sc->style = st;
		sc->example = t[i]->name;
		if (e >= MAX_EXPERTS)
			return weld_fail(err, WELD_ERR_FORMAT,
					 "tensor '%s': expert index %ld is too large", t[i]->name, e);
		/* "experts.01." would be taken for "experts.1.": two tensors, one slot */
		if (e >= 0 && suffix - (t[i]->name + plen + 8) > 2 && t[i]->name[plen + 8] == '0')
			return weld_fail(err, WELD_ERR_FORMAT,
					 "tensor '%s': expert index '%.*s' has a leading zero (the same number as expert %ld)",
					 t[i]->name, (int)(suffix - (t[i]->name + plen + 8) - 1),
					 t[i]->name + plen + 8, e);
		if (check_projection(st, suffix, t[i]->name, err) < 0 ||
		    check_not_scale(suffix, t[i]->name, err) < 0)
			return -1;
		if (e < 0 && (t[i]->ndim < 2 || t[i]->shape[0] < 1 || t[i]->shape[0] > MAX_EXPERTS))
			return weld_fail(err, WELD_ERR_FORMAT,
					 "tensor '%s': stacked experts need a shape [E, ...] with 1 <= E <= %d, not %dD [%" PRId64 ", ...]",
					 t[i]->name, MAX_EXPERTS, t[i]->ndim, t[i]->ndim ? t[i]->shape[0] : 0);
		*(e < 0 ? &sc->stacked : &sc->per) = t[i]->name;
		if (sc->per && sc->stacked)
			return weld_fail(err, WELD_ERR_FORMAT,
					 "tensor '%s': stacked experts ('%s') mixed with per-expert tensors ('%s')",
					 t[i]->name, sc->stacked, sc->per);
		if (e < 0)
			e = (long)t[i]->shape[0] - 1;
		if ((k = add_prefix(sc, t[i]->name, plen)) < 0)
			return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
		if (e > sc->pre[k].max_expert)
			sc->pre[k].max_expert = (int)e;
		if (add_suffix(lo, suffix) < 0)
			return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	}
	if (sc->npre <= 0)
		return no_experts_error(t, n, lo->cfg.model_type, err);
	lo->style = sc->style->name;
	lo->stacked = sc->stacked != NULL;
	return 0;
}

/* Index of projection proj's main weight among the suffixes: "<proj>.weight"
 * (per expert), or "<proj>" (stacked); -1 if absent. */
static int find_main(const struct weld_moe_layout *lo, const char *proj)
{
	char want[64];

	snprintf(want, sizeof(want), lo->stacked ? "%s" : "%s.weight", proj);
	return find_string(lo->suffix, lo->n_suffix, want);
}

/*
 * Step 2: suffixes sorted by name, the main weights required (gate, up and
 * down, or fused gate_up and down), and the --align axis of each suffix:
 * the down projection's weight is permuted by columns, its other tensors
 * not at all, fused gate_up tensors in both halves of their rows, every
 * other tensor by rows. first_prefix names the layer in the message.
 */
static int set_suffixes(struct weld_moe_layout *lo, const struct moe_style *style,
			const char *first_prefix, struct weld_error *err)
{
	int *main_idx[3] = { &lo->gate_suffix, &lo->up_suffix, &lo->down_suffix };
	const int fused = style->fused ? find_main(lo, style->fused) : -1;

	qsort(lo->suffix, (size_t)lo->n_suffix, sizeof(*lo->suffix), cmp_str_ptr);
	lo->axis = malloc((size_t)lo->n_suffix * sizeof(*lo->axis));
	if (!lo->axis)
		return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	lo->fused = fused >= 0;
	for (int p = 0; p < 3; p++) {
		if (lo->fused && p < 2) {
			if (find_main(lo, style->proj[p]) >= 0)
				return weld_fail(err, WELD_ERR_FORMAT,
						 "'%sexperts': both fused '%s' and separate '%s' tensors",
						 first_prefix, style->fused, style->proj[p]);
			*main_idx[p] = find_main(lo, style->fused);
			continue;
		}
		*main_idx[p] = find_main(lo, style->proj[p]);
		if (*main_idx[p] < 0)
			return weld_fail(err, WELD_ERR_FORMAT, "no '%sexperts.%s%s%s' tensors in '%s' MoE",
					 first_prefix, lo->stacked ? "" : "0.", style->proj[p],
					 lo->stacked ? "" : ".weight", style->name);
	}
	for (int s = 0; s < lo->n_suffix; s++) {
		const size_t pl = strcspn(lo->suffix[s], ".");

		if (strncmp(lo->suffix[s], style->proj[2], pl) == 0 &&
		    strlen(style->proj[2]) == pl)
			lo->axis[s] = s == lo->down_suffix ? WELD_MOE_AXIS_COLS : WELD_MOE_AXIS_NONE;
		else if (lo->fused && strncmp(lo->suffix[s], style->fused, pl) == 0 &&
			 strlen(style->fused) == pl)
			lo->axis[s] = WELD_MOE_AXIS_HALVES;
		else
			lo->axis[s] = WELD_MOE_AXIS_ROWS;
	}
	return 0;
}

/*
 * Step 3: one layer per prefix (taking over its string), E = the highest
 * expert index + 1 of any layer, each layer's tensor table empty
 * (SIZE_MAX), sorted by layer index; two prefixes may not share an index.
 */
static int make_layers(struct weld_moe_layout *lo, struct name_scan *sc, struct weld_error *err)
{
	const int npre = sc->npre;

	lo->n_experts = 0;
	for (int k = 0; k < npre; k++)
		if (sc->pre[k].max_expert + 1 > lo->n_experts)
			lo->n_experts = sc->pre[k].max_expert + 1;
	lo->n_layers = npre;
	/* npre >= 1 (scan_names() refuses a model without experts), which the
	 * compiler cannot see from here */
	lo->layers = calloc(npre > 0 ? (size_t)npre : 1, sizeof(*lo->layers));
	if (!lo->layers)
		return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	for (int k = 0; k < npre; k++) {
		struct weld_moe_layer *ly = &lo->layers[k];
		const size_t cells = (size_t)lo->n_experts * (size_t)lo->n_suffix;

		ly->prefix = sc->pre[k].prefix;
		sc->pre[k].prefix = NULL;
		ly->index = layer_index_of(ly->prefix, sc->pre[k].len);
		ly->router = -1;
		if (ly->index < 0)
			return weld_fail(err, WELD_ERR_FORMAT,
					 "'%sexperts': cannot tell which layer this is", ly->prefix);
		ly->tensor = malloc(cells * sizeof(*ly->tensor));
		ly->slice = calloc((size_t)lo->n_suffix, sizeof(*ly->slice));
		ly->rows = calloc((size_t)lo->n_suffix, sizeof(*ly->rows));
		if (!ly->tensor || !ly->slice || !ly->rows)
			return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
		for (size_t c = 0; c < cells; c++)
			ly->tensor[c] = SIZE_MAX;
	}
	qsort(lo->layers, (size_t)npre, sizeof(*lo->layers), cmp_layer);
	for (int k = 1; k < npre; k++)
		if (lo->layers[k].index == lo->layers[k - 1].index)
			return weld_fail(err, WELD_ERR_FORMAT,
					 "'%sexperts' and '%sexperts' both look like layer %d",
					 lo->layers[k - 1].prefix, lo->layers[k].prefix,
					 lo->layers[k].index);
	return 0;
}

/* The role of tensor i: an expert (entered in its layer's table), a
 * router ("<prefix>gate.*"), or other. */
static void set_role(struct weld_moe_layout *lo, size_t i, const char *name)
{
	struct weld_moe_tensor_role *r = &lo->roles[i];
	const struct moe_style *st;
	const char *suffix;
	size_t plen;
	long e;

	r->role = WELD_MOE_OTHER;
	r->layer = r->expert = r->suffix = -1;
	if (split_expert_name(name, &plen, &e, &suffix, &st)) {
		int l;

		for (l = 0; l < lo->n_layers; l++)
			if (strlen(lo->layers[l].prefix) == plen &&
			    memcmp(lo->layers[l].prefix, name, plen) == 0)
				break;
		r->role = WELD_MOE_EXPERT;
		r->layer = l;
		r->expert = (int)e;
		r->suffix = find_string(lo->suffix, lo->n_suffix, suffix);
		/* a stacked tensor holds every expert (its E is checked later) */
		for (int x = e < 0 ? 0 : (int)e; x < (e < 0 ? lo->n_experts : (int)e + 1); x++)
			lo->layers[l].tensor[(size_t)x * (size_t)lo->n_suffix + (size_t)r->suffix] = i;
		return;
	}
	for (int l = 0; l < lo->n_layers; l++) {
		const struct weld_moe_layer *ly = &lo->layers[l];
		const size_t pl = strlen(ly->prefix);

		if (strncmp(name, ly->prefix, pl) != 0 || strncmp(name + pl, "gate.", 5) != 0)
			continue;
		r->role = WELD_MOE_ROUTER;
		r->layer = l;
		if (strcmp(name + pl, "gate.weight") == 0)
			lo->layers[l].router = (int64_t)i;
		break;
	}
}

/* Step 4: the role of every tensor. */
static int assign_roles(struct weld_moe_layout *lo, const struct weld_tensor_info *const *t,
			size_t n, struct weld_error *err)
{
	lo->n_tensors = n;
	lo->roles = calloc(n ? n : 1, sizeof(*lo->roles));
	if (!lo->roles)
		return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	for (size_t i = 0; i < n; i++)
		set_role(lo, i, t[i]->name);
	return 0;
}

/* One layer: every expert has every suffix, the shapes form an FFN, and
 * the router weight is a floating [E, H] matrix. */
static int check_layer(struct weld_moe_layout *lo, struct weld_moe_layer *ly,
		       const struct weld_tensor_info *const *t, struct weld_error *err)
{
	for (int e = 0; e < lo->n_experts; e++)
		for (int s = 0; s < lo->n_suffix; s++)
			if (ly->tensor[(size_t)e * (size_t)lo->n_suffix + (size_t)s] == SIZE_MAX)
				return weld_fail(err, WELD_ERR_FORMAT,
						 "layer %d: missing '%sexperts.%d.%s' (the model has %d experts per layer)",
						 ly->index, ly->prefix, e, lo->suffix[s], lo->n_experts);
	if (check_layer_tensors(lo, ly, t, err) < 0)
		return -1;
	if (ly->router >= 0 && (t[ly->router]->ndim != 2 ||
				t[ly->router]->shape[1] != lo->hidden ||
				!weld_dtype_is_float(t[ly->router]->dtype)))
		return weld_fail(err, WELD_ERR_FORMAT,
				 "router '%s': expected a floating [%d, %" PRId64 "] matrix",
				 t[ly->router]->name, lo->n_experts, lo->hidden);
	return 0;
}

/* Step 5: every layer checked, every router tensor has a row per expert,
 * and config.json agrees (moe_config.c). */
static int check_layers(struct weld_moe_layout *lo, const struct weld_tensor_info *const *t,
			size_t n, struct weld_error *err)
{
	for (int l = 0; l < lo->n_layers; l++)
		if (check_layer(lo, &lo->layers[l], t, err) < 0)
			return -1;
	for (size_t i = 0; i < n; i++)
		if (lo->roles[i].role == WELD_MOE_ROUTER &&
		    (t[i]->ndim < 1 || t[i]->shape[0] != lo->n_experts))
			return weld_fail(err, WELD_ERR_FORMAT,
					 "router '%s': first dimension %" PRId64 ", expected the %d experts",
					 t[i]->name, t[i]->ndim ? t[i]->shape[0] : 0, lo->n_experts);
	return weld_moe_config_check(&lo->cfg, lo->n_experts, lo->layers[0].index, err);
}

int weld_moe_layout_detect(struct weld_moe_layout *lo,
			   const struct weld_tensor_info *const *t, size_t n,
			   const char *config, size_t config_len,
			   struct weld_error *err)
{
	struct name_scan sc = { 0 };
	int ret = -1;

	memset(lo, 0, sizeof(*lo));
	if (weld_moe_config_parse(&lo->cfg, config, config_len, err) < 0 ||
	    scan_names(&sc, lo, t, n, err) < 0 ||
	    set_suffixes(lo, sc.style, sc.pre[0].prefix, err) < 0 ||
	    make_layers(lo, &sc, err) < 0 ||
	    assign_roles(lo, t, n, err) < 0 ||
	    check_layers(lo, t, n, err) < 0)
		weld_moe_layout_release(lo);
	else
		ret = 0;
	scan_release(&sc);
	return ret;
}

void weld_moe_layout_release(struct weld_moe_layout *lo)
{
	if (!lo)
		return;
	for (int s = 0; s < lo->n_suffix; s++)
		free(lo->suffix[s]);
	free(lo->suffix);
	free(lo->axis);
	if (lo->layers)
		for (int l = 0; l < lo->n_layers; l++) {
			free(lo->layers[l].prefix);
			free(lo->layers[l].tensor);
			free(lo->layers[l].slice);
			free(lo->layers[l].rows);
		}
	free(lo->layers);
	free(lo->roles);
	weld_moe_config_release(&lo->cfg);
	memset(lo, 0, sizeof(*lo));
}
