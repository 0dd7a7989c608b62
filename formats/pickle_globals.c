/*
 * pickle_globals.c - the only names a pickle may use, and what "calling"
 * them does: GLOBAL and STACK_GLOBAL resolve a module and a name in the
 * fixed table below to an inert tag; BINPERSID accepts only a storage id
 * and records the storage; REDUCE applied to a tag builds a dict (for
 * OrderedDict) or a tensor record (for the rebuild functions), never
 * running anything; BUILD is accepted on a dict only and ignored. See
 * pickle.h for the allow list.
 */
#include "pickle_vm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_GLOBAL_NAME 256

enum gkind {
	G_ORDERED_DICT, G_REBUILD_V2, G_REBUILD_V3, G_REBUILD_PARAM,
	G_STORAGE_CLASS, G_UNTYPED_STORAGE, G_DTYPE
};

/* The allow list. Storage classes and dtypes carry the element type. */
static const struct global {
	const char *module, *name;
	enum gkind kind;
	enum weld_dtype dtype;
	unsigned esize;
} globals[] = {
	{ "collections", "OrderedDict", G_ORDERED_DICT, WELD_U8, 0 },
	{ "torch._utils", "_rebuild_tensor_v2", G_REBUILD_V2, WELD_U8, 0 },
	{ "torch._utils", "_rebuild_tensor_v3", G_REBUILD_V3, WELD_U8, 0 },
	{ "torch._utils", "_rebuild_parameter", G_REBUILD_PARAM, WELD_U8, 0 },
	{ "torch", "DoubleStorage", G_STORAGE_CLASS, WELD_F64, 8 },
	{ "torch", "FloatStorage", G_STORAGE_CLASS, WELD_F32, 4 },
	{ "torch", "HalfStorage", G_STORAGE_CLASS, WELD_F16, 2 },
	{ "torch", "BFloat16Storage", G_STORAGE_CLASS, WELD_BF16, 2 },
	{ "torch", "LongStorage", G_STORAGE_CLASS, WELD_I64, 8 },
	{ "torch", "IntStorage", G_STORAGE_CLASS, WELD_I32, 4 },
	{ "torch", "ShortStorage", G_STORAGE_CLASS, WELD_I16, 2 },
	{ "torch", "CharStorage", G_STORAGE_CLASS, WELD_I8, 1 },
	{ "torch", "ByteStorage", G_STORAGE_CLASS, WELD_U8, 1 },
	{ "torch", "BoolStorage", G_STORAGE_CLASS, WELD_BOOL, 1 },
	{ "torch", "UntypedStorage", G_UNTYPED_STORAGE, WELD_U8, 1 },
	{ "torch.storage", "UntypedStorage", G_UNTYPED_STORAGE, WELD_U8, 1 },
	{ "torch", "float64", G_DTYPE, WELD_F64, 8 },
	{ "torch", "float32", G_DTYPE, WELD_F32, 4 },
	{ "torch", "float16", G_DTYPE, WELD_F16, 2 },
	{ "torch", "bfloat16", G_DTYPE, WELD_BF16, 2 },
	{ "torch", "float8_e4m3fn", G_DTYPE, WELD_F8_E4M3, 1 },
	{ "torch", "float8_e5m2", G_DTYPE, WELD_F8_E5M2, 1 },
	{ "torch", "int64", G_DTYPE, WELD_I64, 8 },
	{ "torch", "int32", G_DTYPE, WELD_I32, 4 },
	{ "torch", "int16", G_DTYPE, WELD_I16, 2 },
	{ "torch", "int8", G_DTYPE, WELD_I8, 1 },
	{ "torch", "uint64", G_DTYPE, WELD_U64, 8 },
	{ "torch", "uint32", G_DTYPE, WELD_U32, 4 },
	{ "torch", "uint16", G_DTYPE, WELD_U16, 2 },
	{ "torch", "uint8", G_DTYPE, WELD_U8, 1 },
	{ "torch", "bool", G_DTYPE, WELD_BOOL, 1 },
};

/* ---------------------------------------------------------------- globals */

/* Copy s[0..n) into buf for a message, with unprintable bytes as '?'. */
static const char *printable(char *buf, size_t size, const char *s, size_t n)
{
	size_t i;

	for (i = 0; i < n && i + 1 < size; i++)
		buf[i] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '?';
	buf[i] = '\0';
	return buf;
}

static int resolve_global(struct weld_pickle *vm, const char *mod, size_t mlen,
			  const char *name, size_t nlen)
{
	char m[MAX_GLOBAL_NAME + 1], n[MAX_GLOBAL_NAME + 1];

	for (size_t i = 0; i < sizeof(globals) / sizeof(globals[0]); i++) {
		const struct global *g = &globals[i];

		if (strlen(g->module) == mlen && !memcmp(g->module, mod, mlen) &&
		    strlen(g->name) == nlen && !memcmp(g->name, name, nlen))
			return weld_pk_push_int(vm, WELD_P_GLOBAL, (int64_t)i);
	}
	printable(m, sizeof(m), mod, mlen);
	printable(n, sizeof(n), name, nlen);
	if (!strcmp(m, "torch") && nlen > 7 && !strcmp(n + nlen - 7, "Storage"))
		return weld_pk_fail(vm, "storage type 'torch.%s' is not supported", n);
	if (!strcmp(m, "torch._utils") && !strncmp(n, "_rebuild_", 9))
		return weld_pk_fail(vm, "global 'torch._utils.%s' is not supported: weld "
				    "reads plain dense tensors only", n);
	return weld_pk_fail(vm, "global '%s.%s' is not allowed", m, n);
}

/* GLOBAL: "module\nname\n". */
int weld_pk_op_global(struct weld_pickle *vm)
{
	const unsigned char *line[2];
	size_t len[2];

	for (int k = 0; k < 2; k++) {
		const unsigned char *nl;
		size_t left = (size_t)(vm->end - vm->p);

		nl = memchr(vm->p, '\n', left < MAX_GLOBAL_NAME + 1 ? left : MAX_GLOBAL_NAME + 1);
		if (!nl) {
			if (left <= MAX_GLOBAL_NAME)
				return weld_pk_fail(vm, "pickle is truncated: GLOBAL at byte "
						    "%zu has no end of line", vm->op_at);
			return weld_pk_fail(vm, "GLOBAL at byte %zu: name longer than %d bytes",
					    vm->op_at, MAX_GLOBAL_NAME);
		}
		line[k] = vm->p;
		len[k] = (size_t)(nl - vm->p);
		vm->p = nl + 1;
	}
	return resolve_global(vm, (const char *)line[0], len[0], (const char *)line[1], len[1]);
}

int weld_pk_op_stack_global(struct weld_pickle *vm)
{
	struct weld_pval mod, name;

	if (weld_pk_pop(vm, &name, "STACK_GLOBAL") < 0 ||
	    weld_pk_pop(vm, &mod, "STACK_GLOBAL") < 0)
		return -1;
	if (mod.type != WELD_P_STR || name.type != WELD_P_STR)
		return weld_pk_fail(vm, "STACK_GLOBAL at byte %zu: module and name must be "
				    "strings", vm->op_at);
	if (mod.u.o->len > MAX_GLOBAL_NAME || name.u.o->len > MAX_GLOBAL_NAME)
		return weld_pk_fail(vm, "STACK_GLOBAL at byte %zu: name longer than %d bytes",
				    vm->op_at, MAX_GLOBAL_NAME);
	return resolve_global(vm, mod.u.o->u.s, mod.u.o->len, name.u.o->u.s, name.u.o->len);
}

static const struct global *global_of(const struct weld_pval *v)
{
	return v->type == WELD_P_GLOBAL ? &globals[v->u.i] : NULL;
}

/* ---------------------------------------------------------------- storages */

static size_t hash_slot(uint64_t key, size_t cap)
{
	key ^= key >> 33;
	key *= 0xff51afd7ed558ccdULL;
	key ^= key >> 33;
	return (size_t)key & (cap - 1);
}

/* Index of the storage with this key, or SIZE_MAX. */
static size_t storage_find(const struct weld_pickle *vm, uint64_t key)
{
	if (!vm->shash_cap)
		return SIZE_MAX;
	for (size_t h = hash_slot(key, vm->shash_cap);; h = (h + 1) & (vm->shash_cap - 1)) {
		size_t e = vm->shash[h];

		if (!e)
			return SIZE_MAX;
		if (vm->storages[e - 1].key == key)
			return e - 1;
	}
}

static int storage_add(struct weld_pickle *vm, const struct weld_pstorage *s)
{
	if (weld_pk_grow(vm, (void **)&vm->storages, &vm->storages_cap, vm->nstorages + 1,
		 sizeof(*vm->storages)) < 0)
		return -1;
	vm->storages[vm->nstorages++] = *s;
	if (vm->nstorages * 2 > vm->shash_cap) {
		size_t ncap = vm->shash_cap ? vm->shash_cap * 2 : 64;
		size_t *h;

		if (ncap > SIZE_MAX / sizeof(*h) || weld_pk_reserve(vm, ncap * sizeof(*h)) < 0)
			return -1;
		h = calloc(ncap, sizeof(*h));
		if (!h)
			return weld_pk_nomem(vm);
		free(vm->shash);
		vm->shash = h;
		vm->shash_cap = ncap;
		for (size_t i = 0; i < vm->nstorages; i++) {
			size_t k = hash_slot(vm->storages[i].key, ncap);

			while (h[k])
				k = (k + 1) & (ncap - 1);
			h[k] = i + 1;
		}
	} else {
		size_t k = hash_slot(s->key, vm->shash_cap);

		while (vm->shash[k])
			k = (k + 1) & (vm->shash_cap - 1);
		vm->shash[k] = vm->nstorages;
	}
	return 0;
}

/* BINPERSID: ('storage', <storage class>, '<key>', location, numel). */
int weld_pk_op_persid(struct weld_pickle *vm)
{
	struct weld_pval pid, v = { .type = WELD_P_STORAGE };
	const struct weld_pval *it;
	const struct global *g;
	const struct weld_pobj *key;
	struct weld_pstorage s = { 0 };
	uint64_t numel;
	size_t found;

	if (weld_pk_pop(vm, &pid, "BINPERSID") < 0)
		return -1;
	if (pid.type != WELD_P_TUPLE || pid.u.o->len != 5)
		return weld_pk_fail(vm, "BINPERSID at byte %zu: persistent id is not a "
				    "5-tuple ('storage', type, key, location, numel)",
				    vm->op_at);
	it = pid.u.o->u.items;
	if (it[0].type != WELD_P_STR || strcmp(it[0].u.o->u.s, "storage") ||
	    it[0].u.o->len != 7)
		return weld_pk_fail(vm, "BINPERSID at byte %zu: persistent id is not a storage",
				    vm->op_at);
	g = global_of(&it[1]);
	if (!g || (g->kind != G_STORAGE_CLASS && g->kind != G_UNTYPED_STORAGE))
		return weld_pk_fail(vm, "BINPERSID at byte %zu: storage type is a %s, not a "
				    "storage class", vm->op_at, weld_pickle_type_name(&it[1]));
	if (it[2].type != WELD_P_STR)
		return weld_pk_fail(vm, "BINPERSID at byte %zu: storage key is a %s, not a "
				    "string", vm->op_at, weld_pickle_type_name(&it[2]));
	key = it[2].u.o;
	/* Canonical decimal only, so that one number names one zip record. */
	if (key->len == 0 || key->len > 19 || (key->len > 1 && key->u.s[0] == '0'))
		goto bad_key;
	for (size_t i = 0; i < key->len; i++) {
		if (key->u.s[i] < '0' || key->u.s[i] > '9')
			goto bad_key;
		s.key = s.key * 10 + (uint64_t)(key->u.s[i] - '0');
	}
	memcpy(s.text, key->u.s, key->len + 1);
	if (it[3].type != WELD_P_STR)
		return weld_pk_fail(vm, "storage '%s': location is a %s, not a string", s.text,
				    weld_pickle_type_name(&it[3]));
	if (it[4].type != WELD_P_INT || it[4].u.i < 0)
		return weld_pk_fail(vm, "storage '%s': numel is not a non-negative integer",
				    s.text);
	numel = (uint64_t)it[4].u.i;
	if (__builtin_mul_overflow(numel, (uint64_t)g->esize, &s.nbytes))
		return weld_pk_fail(vm, "storage '%s': numel %llu overflows", s.text,
				    (unsigned long long)numel);
	s.dtype = g->dtype;
	s.esize = g->esize;
	s.untyped = g->kind == G_UNTYPED_STORAGE;
	found = storage_find(vm, s.key);
	if (found != SIZE_MAX) {
		const struct weld_pstorage *o = &vm->storages[found];

		if (o->dtype != s.dtype || o->untyped != s.untyped || o->nbytes != s.nbytes)
			return weld_pk_fail(vm, "storage '%s' is declared twice with "
					    "different types or sizes", s.text);
		v.u.storage = found;
	} else {
		if (storage_add(vm, &s) < 0)
			return -1;
		v.u.storage = vm->nstorages - 1;
	}
	return weld_pk_push(vm, v);

bad_key:
	{
		char buf[32];

		return weld_pk_fail(vm, "BINPERSID at byte %zu: storage key '%s' is not a "
				    "decimal number", vm->op_at,
				    printable(buf, sizeof(buf), key->u.s, key->len));
	}
}

/* ---------------------------------------------------------------- REDUCE and BUILD */

static bool is_empty_dict(const struct weld_pval *v)
{
	return v->type == WELD_P_DICT && v->u.o->len == 0;
}

/* Read an int tuple (size or stride) into out[0..WELD_MAX_DIMS). */
static int int_tuple(struct weld_pickle *vm, const struct weld_pval *v, int64_t *out, size_t *n,
		     const char *what, const char *fn)
{
	if (v->type != WELD_P_TUPLE)
		return weld_pk_fail(vm, "%s at byte %zu: %s is a %s, not a tuple", fn,
				    vm->op_at, what, weld_pickle_type_name(v));
	*n = v->u.o->len;
	for (size_t i = 0; i < *n; i++) {
		const struct weld_pval *e = &v->u.o->u.items[i];

		if (e->type != WELD_P_INT)
			return weld_pk_fail(vm, "%s at byte %zu: %s[%zu] is a %s, not an int",
					    fn, vm->op_at, what, i, weld_pickle_type_name(e));
		if (i < WELD_MAX_DIMS)
			out[i] = e->u.i;
	}
	return 0;
}

/*
 * _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad,
 *                    backward_hooks[, metadata])
 * _rebuild_tensor_v3(storage, storage_offset, size, stride, requires_grad,
 *                    backward_hooks, dtype[, metadata])
 * The view itself is checked later, when its name is known.
 */
static int rebuild_tensor(struct weld_pickle *vm, const struct weld_pobj *args, bool v3)
{
	const char *fn = v3 ? "_rebuild_tensor_v3" : "_rebuild_tensor_v2";
	const struct weld_pval *a = args->u.items;
	size_t base = v3 ? 7 : 6, nsize, nstride;
	const struct weld_pstorage *st;
	struct weld_pobj *o;
	struct weld_ptensor *t;

	if (args->len != base && args->len != base + 1)
		return weld_pk_fail(vm, "%s at byte %zu: %zu arguments, expected %zu or %zu",
				    fn, vm->op_at, args->len, base, base + 1);
	if (a[0].type != WELD_P_STORAGE)
		return weld_pk_fail(vm, "%s at byte %zu: first argument is a %s, not a storage",
				    fn, vm->op_at, weld_pickle_type_name(&a[0]));
	if (a[1].type != WELD_P_INT)
		return weld_pk_fail(vm, "%s at byte %zu: storage_offset is a %s, not an int",
				    fn, vm->op_at, weld_pickle_type_name(&a[1]));
	if (a[4].type != WELD_P_BOOL)
		return weld_pk_fail(vm, "%s at byte %zu: requires_grad is a %s, not a bool", fn,
				    vm->op_at, weld_pickle_type_name(&a[4]));
	if (!is_empty_dict(&a[5]))
		return weld_pk_fail(vm, "%s at byte %zu: backward hooks are not supported", fn,
				    vm->op_at);
	if (args->len == base + 1 && !is_empty_dict(&a[base]))
		return weld_pk_fail(vm, "%s at byte %zu: tensor metadata (conjugate or "
				    "negative bit) is not supported", fn, vm->op_at);
	o = weld_pk_new_obj(vm, WELD_P_TENSOR, sizeof(*t));
	if (!o)
		return -1;
	t = o->u.t = (struct weld_ptensor *)(o + 1);
	if (int_tuple(vm, &a[2], t->shape, &nsize, "size", fn) < 0 ||
	    int_tuple(vm, &a[3], t->stride, &nstride, "stride", fn) < 0)
		return -1;
	if (nsize != nstride)
		return weld_pk_fail(vm, "%s at byte %zu: size has %zu dimensions but stride "
				    "%zu", fn, vm->op_at, nsize, nstride);
	st = &vm->storages[a[0].u.storage];
	t->storage = a[0].u.storage;
	t->ndim = nsize > WELD_MAX_DIMS ? WELD_MAX_DIMS + 1 : (int)nsize;
	t->offset = a[1].u.i;
	t->dtype = st->dtype;
	t->esize = st->esize;
	if (v3) {
		const struct global *g = global_of(&a[6]);

		if (!g || g->kind != G_DTYPE)
			return weld_pk_fail(vm, "%s at byte %zu: dtype is a %s, not a torch "
					    "dtype", fn, vm->op_at,
					    weld_pickle_type_name(&a[6]));
		if (!st->untyped && st->dtype != g->dtype)
			return weld_pk_fail(vm, "%s at byte %zu: dtype torch.%s does not "
					    "match storage '%s'", fn, vm->op_at, g->name,
					    st->text);
		t->dtype = g->dtype;
		t->esize = g->esize;
	}
	return weld_pk_push_obj(vm, WELD_P_TENSOR, o);
}

int weld_pk_op_reduce(struct weld_pickle *vm)
{
	struct weld_pval args, fn;
	const struct global *g;

	if (weld_pk_pop(vm, &args, "REDUCE") < 0 || weld_pk_pop(vm, &fn, "REDUCE") < 0)
		return -1;
	g = global_of(&fn);
	if (!g)
		return weld_pk_fail(vm, "REDUCE at byte %zu on a %s: only allow-listed "
				    "globals can be called", vm->op_at,
				    weld_pickle_type_name(&fn));
	if (args.type != WELD_P_TUPLE)
		return weld_pk_fail(vm, "REDUCE at byte %zu: arguments of '%s.%s' are a %s, "
				    "not a tuple", vm->op_at, g->module, g->name,
				    weld_pickle_type_name(&args));
	switch (g->kind) {
	case G_ORDERED_DICT:
		if (args.u.o->len)
			return weld_pk_fail(vm, "REDUCE at byte %zu: collections.OrderedDict "
					    "called with arguments", vm->op_at);
		return weld_pk_push_obj(vm, WELD_P_DICT, weld_pk_new_obj(vm, WELD_P_DICT, 0));
	case G_REBUILD_V2:
	case G_REBUILD_V3:
		return rebuild_tensor(vm, args.u.o, g->kind == G_REBUILD_V3);
	case G_REBUILD_PARAM: {
		/* _rebuild_parameter(data, requires_grad, backward_hooks) */
		const struct weld_pval *a = args.u.o->u.items;

		if (args.u.o->len != 3 || a[0].type != WELD_P_TENSOR || a[1].type != WELD_P_BOOL)
			return weld_pk_fail(vm, "REDUCE at byte %zu: _rebuild_parameter "
					    "expects (tensor, bool, hooks)", vm->op_at);
		if (!is_empty_dict(&a[2]))
			return weld_pk_fail(vm, "_rebuild_parameter at byte %zu: backward "
					    "hooks are not supported", vm->op_at);
		return weld_pk_push(vm, a[0]);
	}
	case G_STORAGE_CLASS:
	case G_UNTYPED_STORAGE:
	case G_DTYPE:
		break;
	}
	return weld_pk_fail(vm, "REDUCE at byte %zu: calling '%s.%s' is not allowed", vm->op_at,
			    g->module, g->name);
}

int weld_pk_op_build(struct weld_pickle *vm)
{
	struct weld_pval state, *obj;

	if (weld_pk_pop(vm, &state, "BUILD") < 0 || !(obj = weld_pk_top(vm, "BUILD")))
		return -1;
	/* An OrderedDict's state only sets its _metadata attribute: ignored. */
	if (obj->type != WELD_P_DICT)
		return weld_pk_fail(vm, "BUILD at byte %zu on a %s is not allowed", vm->op_at,
				    weld_pickle_type_name(obj));
	return 0;
}
