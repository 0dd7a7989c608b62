/*
 * state_dict.c - from the values a data.pkl built (pickle.h) to the named
 * tensors of a state dict (state_dict.h): find the dict that holds the
 * weights, join nested keys with '.', and check each tensor's view
 * (size, stride, storage_offset) against the storage it reads, with every
 * sum and product overflow-checked. The walk visits each dict once and is
 * depth-limited; what it allocates is counted against the pickle's budget.
 */
#include "pickle.h"
#include "state_dict.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DICT_DEPTH 32

struct collect {
	struct weld_state_dict *out;
	size_t cap;
	struct weld_pickle *pk;
	struct weld_error *err;
	char name[WELD_SD_MAX_NAME + 1];
};

/* A malformed state dict: fill c->err (WELD_ERR_FORMAT) and return -1. */
static int bad(struct collect *c, const char *fmt, ...) WELD_PRINTF(2, 3);
static int bad(struct collect *c, const char *fmt, ...)
{
	va_list ap;

	if (c->err) {
		c->err->status = WELD_ERR_FORMAT;
		c->err->sys_errno = 0;
		va_start(ap, fmt);
		vsnprintf(c->err->msg, sizeof(c->err->msg), fmt, ap);
		va_end(ap);
	}
	return -1;
}

static int nomem(struct collect *c)
{
	return weld_fail(c->err, WELD_ERR_NOMEM, "out of memory");
}

/* Valid UTF-8 without NUL (a tensor name ends up in JSON and C strings). */
static bool valid_utf8(const unsigned char *s, size_t n)
{
	for (size_t i = 0, l; i < n; i += l)
		if (!s[i] || !(l = weld_utf8_len(s + i, n - i)))
			return false;
	return true;
}

/* Check t's view against its storage and fill out (name set by caller). */
static int check_view(struct collect *c, const char *name, const struct weld_ptensor *t,
		      struct weld_sd_tensor *out)
{
	const struct weld_pstorage *st = weld_pickle_storage(c->pk, t->storage);
	uint64_t nelem = 1, last, end, expect = 1;

	if (t->ndim > WELD_MAX_DIMS)
		return bad(c, "tensor '%s': size: more than %d dimensions", name,
			   WELD_MAX_DIMS);
	if (t->offset < 0)
		return bad(c, "tensor '%s': storage_offset %lld is negative", name,
			   (long long)t->offset);
	out->ndim = t->ndim;
	out->dtype = t->dtype;
	out->storage = t->storage;
	out->storage_offset = (uint64_t)t->offset;
	last = (uint64_t)t->offset;
	for (int k = 0; k < t->ndim; k++) {
		if (t->shape[k] < 0)
			return bad(c, "tensor '%s': size[%d] is negative (%lld)", name, k,
				   (long long)t->shape[k]);
		if (t->stride[k] < 0)
			return bad(c, "tensor '%s': stride[%d] is negative (%lld); weld reads "
				   "non-negative strides only", name, k,
				   (long long)t->stride[k]);
		if (t->shape[k] == 0)
			nelem = 0;
		out->shape[k] = t->shape[k];
		out->stride[k] = t->stride[k];
	}
	for (int k = 0; k < t->ndim && nelem; k++)
		if (__builtin_mul_overflow(nelem, (uint64_t)t->shape[k], &nelem) ||
		    nelem > INT64_MAX)
			return bad(c, "tensor '%s': size: element count overflows", name);
	out->nelem = nelem;
	if (__builtin_mul_overflow(nelem, (uint64_t)t->esize, &out->nbytes))
		return bad(c, "tensor '%s': size: byte count overflows", name);
	if (__builtin_mul_overflow((uint64_t)t->offset, (uint64_t)t->esize, &out->byte_offset))
		return bad(c, "tensor '%s': storage_offset %lld overflows", name,
			   (long long)t->offset);
	if (nelem == 0) {
		/* Nothing is read, but element 0's offset must still be in the storage. */
		if (out->byte_offset > st->nbytes)
			return bad(c, "tensor '%s': storage_offset %lld is past the end of "
				   "storage '%s' (%llu bytes)", name, (long long)t->offset,
				   st->text, (unsigned long long)st->nbytes);
		out->contiguous = true;
		return 0;
	}
	for (int k = 0; k < t->ndim; k++) {
		uint64_t step;

		if (__builtin_mul_overflow((uint64_t)(t->shape[k] - 1), (uint64_t)t->stride[k],
					   &step) ||
		    __builtin_add_overflow(last, step, &last))
			return bad(c, "tensor '%s': stride: reachable element index overflows",
				   name);
	}
	if (__builtin_add_overflow(last, 1, &end) ||
	    __builtin_mul_overflow(end, (uint64_t)t->esize, &end) || end > st->nbytes)
		return bad(c, "tensor '%s': view reaches element %llu of storage '%s', which "
			   "holds %llu elements", name, (unsigned long long)last, st->text,
			   (unsigned long long)(st->nbytes / t->esize));
	out->contiguous = true;
	for (int k = t->ndim - 1; k >= 0; k--) {
		if (t->shape[k] != 1 && (uint64_t)t->stride[k] != expect)
			out->contiguous = false;
		expect *= (uint64_t)t->shape[k];  /* <= nelem: no overflow */
	}
	return 0;
}

static int add_tensor(struct collect *c, const struct weld_ptensor *t)
{
	struct weld_state_dict *r = c->out;
	struct weld_sd_tensor *e;
	size_t nlen = strlen(c->name);

	if (r->ntensors == c->cap) {
		size_t ncap = c->cap ? c->cap * 2 : 16;
		void *p;

		if (ncap > SIZE_MAX / sizeof(*e) ||
		    weld_pickle_reserve(c->pk, (ncap - c->cap) * sizeof(*e), c->err) < 0)
			return -1;
		p = realloc(r->tensors, ncap * sizeof(*e));
		if (!p)
			return nomem(c);
		r->tensors = p;
		c->cap = ncap;
	}
	e = &r->tensors[r->ntensors];
	memset(e, 0, sizeof(*e));
	if (check_view(c, c->name, t, e) < 0)
		return -1;
	if (weld_pickle_reserve(c->pk, nlen + 1, c->err) < 0)
		return -1;
	e->name = malloc(nlen + 1);
	if (!e->name)
		return nomem(c);
	memcpy(e->name, c->name, nlen + 1);
	r->ntensors++;
	r->storages[t->storage].used = true;
	return 0;
}

/* Walk dict d, whose keys are appended to c->name (nlen bytes so far). */
static int collect_dict(struct collect *c, struct weld_pobj *d, size_t nlen, int depth)
{
	const char *label = nlen ? c->name : "(root)";

	if (depth > MAX_DICT_DEPTH)
		return bad(c, "dict '%s': dicts nested deeper than %d levels", label,
			   MAX_DICT_DEPTH);
	/*
	 * Each dict once: a dict reachable twice (or from itself) would make the
	 * flattened names repeat or grow without end.
	 */
	if (d->visited)
		return bad(c, "dict '%s': the same dict appears twice in the state dict",
			   label);
	d->visited = true;
	for (size_t i = 0; i + 1 < d->len; i += 2) {
		const struct weld_pval *k = &d->u.items[i], *v = &d->u.items[i + 1];
		size_t len = nlen;

		if (k->type != WELD_P_STR)
			return bad(c, "dict '%s': key %zu is a %s, not a string", label, i / 2,
				   weld_pickle_type_name(k));
		if (!k->u.o->len)
			return bad(c, "dict '%s': key %zu is empty", label, i / 2);
		if (!valid_utf8((const unsigned char *)k->u.o->u.s, k->u.o->len))
			return bad(c, "dict '%s': key %zu is not valid UTF-8 or contains NUL",
				   label, i / 2);
		if (k->u.o->len + (nlen ? 1 : 0) > WELD_SD_MAX_NAME - nlen)
			return bad(c, "dict '%s': key %zu makes a tensor name longer than %d "
				   "bytes", label, i / 2, WELD_SD_MAX_NAME);
		if (nlen)
			c->name[len++] = '.';
		memcpy(c->name + len, k->u.o->u.s, k->u.o->len);
		len += k->u.o->len;
		c->name[len] = '\0';
		if (v->type == WELD_P_TENSOR) {
			if (add_tensor(c, v->u.o->u.t) < 0)
				return -1;
		} else if (v->type == WELD_P_DICT) {
			if (collect_dict(c, v->u.o, len, depth + 1) < 0)
				return -1;
		} else {
			return bad(c, "key '%s': value is a %s, not a tensor", c->name,
				   weld_pickle_type_name(v));
		}
		c->name[nlen] = '\0';
	}
	return 0;
}

static const struct weld_pval *dict_get(const struct weld_pobj *d, const char *key)
{
	for (size_t i = 0; i + 1 < d->len; i += 2) {
		const struct weld_pval *k = &d->u.items[i];

		if (k->type == WELD_P_STR && k->u.o->len == strlen(key) &&
		    !strcmp(k->u.o->u.s, key))
			return &d->u.items[i + 1];
	}
	return NULL;
}

/*
 * The dict holding the weights: the root, or its 'state_dict' / 'model'
 * entry when the root holds no tensor itself (a training checkpoint).
 */
static struct weld_pobj *weights_dict(struct weld_pobj *root)
{
	static const char *const wrappers[] = { "state_dict", "model" };

	for (size_t i = 1; i < root->len; i += 2)
		if (root->u.items[i].type == WELD_P_TENSOR)
			return root;
	for (size_t w = 0; w < 2; w++) {
		const struct weld_pval *v = dict_get(root, wrappers[w]);

		if (v && v->type == WELD_P_DICT)
			return v->u.o;
	}
	return root;
}

static int cmp_names(const void *a, const void *b)
{
	const struct weld_sd_tensor *const *x = a, *const *y = b;

	return strcmp((*x)->name, (*y)->name);
}

static int check_unique(struct collect *c, struct weld_state_dict *r)
{
	const struct weld_sd_tensor **v;
	int ret = 0;

	if (r->ntensors < 2)
		return 0;
	if (weld_pickle_reserve(c->pk, r->ntensors * sizeof(*v), c->err) < 0)
		return -1;
	v = malloc(r->ntensors * sizeof(*v));
	if (!v)
		return nomem(c);
	for (size_t i = 0; i < r->ntensors; i++)
		v[i] = &r->tensors[i];
	qsort(v, r->ntensors, sizeof(*v), cmp_names);
	for (size_t i = 1; i < r->ntensors; i++) {
		if (!strcmp(v[i - 1]->name, v[i]->name)) {
			ret = bad(c, "tensor '%s' appears twice in the state dict", v[i]->name);
			break;
		}
	}
	free(v);
	return ret;
}

/* The storages of the run, none used yet. */
static int export_storages(struct collect *c, struct weld_state_dict *r)
{
	size_t n = weld_pickle_storage_count(c->pk);

	if (!n)
		return 0;
	r->storages = calloc(n, sizeof(*r->storages));
	if (!r->storages)
		return nomem(c);
	r->nstorages = n;
	for (size_t i = 0; i < n; i++) {
		const struct weld_pstorage *s = weld_pickle_storage(c->pk, i);
		struct weld_sd_storage *o = &r->storages[i];

		o->key = strdup(s->text);
		if (!o->key)
			return nomem(c);
		o->dtype = s->dtype;
		o->nbytes = s->nbytes;
	}
	return 0;
}

/* ---------------------------------------------------------------- API */

int weld_state_dict_load(const unsigned char *buf, size_t len,
			 struct weld_state_dict *out, struct weld_error *err)
{
	struct collect *c = NULL;
	struct weld_pickle *pk = NULL;
	struct weld_pval root;
	int ret = -1;

	memset(out, 0, sizeof(*out));
	if (weld_pickle_run(buf, len, &pk, err) < 0)
		goto out;
	root = weld_pickle_root(pk);
	if (root.type != WELD_P_DICT) {
		weld_fail(err, WELD_ERR_FORMAT, "the pickle holds a %s, not a dict of tensors",
			  weld_pickle_type_name(&root));
		goto out;
	}
	c = calloc(1, sizeof(*c));
	if (!c) {
		weld_fail(err, WELD_ERR_NOMEM, "out of memory");
		goto out;
	}
	c->out = out;
	c->pk = pk;
	c->err = err;
	if (export_storages(c, out) < 0 || collect_dict(c, weights_dict(root.u.o), 0, 0) < 0 ||
	    check_unique(c, out) < 0)
		goto out;
	ret = 0;
out:
	if (ret)
		weld_state_dict_free(out);
	free(c);
	weld_pickle_free(pk);
	return ret;
}

void weld_state_dict_free(struct weld_state_dict *sd)
{
	if (!sd)
		return;
	for (size_t i = 0; i < sd->ntensors; i++)
		free(sd->tensors[i].name);
	for (size_t i = 0; i < sd->nstorages; i++)
		free(sd->storages[i].key);
	free(sd->tensors);
	free(sd->storages);
	memset(sd, 0, sizeof(*sd));
}
