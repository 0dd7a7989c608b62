/*
 * pickle.c - runs a torch.save() data.pkl without executing anything.
 *
 * A pickle is a program for a stack machine: an opcode byte, then its
 * operands (little-endian integers, length-prefixed strings, or two
 * newline-terminated names for GLOBAL). torch.save() (protocol 2) writes a
 * state dict as
 *
 *   \x80 2                                   PROTO
 *   c collections\nOrderedDict\n ) R         the dict: OrderedDict()
 *   (                                        MARK, then per tensor:
 *     X <key>                                  the name
 *     c torch._utils\n_rebuild_tensor_v2\n     the rebuild function
 *     ( ( X 'storage'  c torch\nFloatStorage\n  X '0'  X 'cpu'  K numel t Q
 *         storage_offset  (size...)  (stride...)  requires_grad  hooks t R
 *   u                                        SETITEMS
 *   [} ... b]                                the dict's _metadata, BUILD
 *   .                                        STOP
 *
 * with BINPUT/BINGET memo references for repeated objects. Here GLOBAL
 * resolves names in a fixed table to inert tags; REDUCE "calls" a tag only
 * by building a C record; BINPERSID only accepts storage ids. Every object
 * is allocated from one list against a byte budget proportional to the
 * input, so hostile input cannot make us allocate more than its size
 * justifies, and no code recurses over objects except the final
 * flattening, which visits each dict once and is depth-limited.
 */
#include "pickle.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * Real data.pkl files keep a few dozen values on the stack and a handful of
 * marks (SETITEMS batches hold 2000); these caps only stop hostile files.
 */
#define MAX_STACK 65536
#define MAX_MARKS 1024
#define MAX_DICT_DEPTH 32
#define MAX_GLOBAL_NAME 256
/*
 * Byte budget: fixed part plus this many bytes per input byte (a state
 * dict's objects take about 6 bytes per pickle byte).
 */
#define BUDGET_BASE (16u << 20)
#define BUDGET_PER_BYTE 24u

enum ptype {
	P_NONE, P_BOOL, P_INT, P_FLOAT, P_STR, P_BYTES, P_TUPLE, P_LIST, P_DICT,
	P_GLOBAL, P_STORAGE, P_TENSOR
};

static const char *const type_names[] = {
	"None", "bool", "int", "float", "str", "bytes", "tuple", "list", "dict",
	"global", "storage", "tensor"
};

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

struct pobj;

/* A value on the stack, in the memo or inside a container. */
struct pval {
	unsigned char type;     /* enum ptype */
	union {
		int64_t i;      /* P_BOOL, P_INT; P_GLOBAL: index in globals[] */
		double f;
		size_t storage; /* index in vm.storages */
		struct pobj *o; /* P_STR, P_BYTES, P_TUPLE, P_LIST, P_DICT, P_TENSOR */
	} u;
};

struct ptensor {
	size_t storage;
	enum weld_dtype dtype;
	unsigned esize;
	int ndim;               /* may exceed WELD_MAX_DIMS: refused by name later */
	int64_t offset;
	int64_t shape[WELD_MAX_DIMS];
	int64_t stride[WELD_MAX_DIMS];
};

/*
 * Heap object; `len` counts bytes (strings) or values (containers; a dict
 * holds key, value, key, value...). Tuples and strings are allocated with
 * their contents; lists and dicts grow `items` separately.
 */
struct pobj {
	struct pobj *next;
	unsigned char type;
	bool visited;           /* dicts, during flattening */
	size_t len, cap;
	union {
		char *s;
		struct pval *items;
		struct ptensor *t;
	} u;
};

struct pstorage {
	uint64_t key;
	char text[24];          /* the key as written */
	enum weld_dtype dtype;
	unsigned esize;         /* of the storage class; 1 when untyped */
	bool untyped;
	uint64_t nbytes;
	bool used;
};

struct vm {
	const unsigned char *start, *p, *end;
	size_t op_at;           /* offset of the current opcode */
	struct pval *stack;
	size_t sp, stack_cap;
	size_t *marks;
	size_t nmarks, marks_cap;
	struct pval *memo;
	size_t memo_len, memo_cap;
	struct pobj *objs;
	struct pstorage *storages;
	size_t nstorages, storages_cap;
	size_t *shash;          /* open addressing: storage index + 1, 0 = empty */
	size_t shash_cap;
	size_t used, budget;
	struct weld_error *err;
};

/* ---------------------------------------------------------------- errors */

static int fail(struct vm *vm, const char *fmt, ...) WELD_PRINTF(2, 3);
static int fail(struct vm *vm, const char *fmt, ...)
{
	va_list ap;

	if (vm->err) {
		vm->err->status = WELD_ERR_FORMAT;
		vm->err->sys_errno = 0;
		va_start(ap, fmt);
		vsnprintf(vm->err->msg, sizeof(vm->err->msg), fmt, ap);
		va_end(ap);
	}
	return -1;
}

static int fail_nomem(struct vm *vm)
{
	if (vm->err) {
		vm->err->status = WELD_ERR_NOMEM;
		vm->err->sys_errno = 0;
		snprintf(vm->err->msg, sizeof(vm->err->msg), "out of memory");
	}
	return -1;
}

static const char *op_name(int op)
{
	switch (op) {
	case '(': return "MARK";
	case '.': return "STOP";
	case '0': return "POP";
	case '1': return "POP_MARK";
	case '2': return "DUP";
	case 'F': return "FLOAT";
	case 'I': return "INT";
	case 'J': return "BININT";
	case 'K': return "BININT1";
	case 'L': return "LONG";
	case 'M': return "BININT2";
	case 'N': return "NONE";
	case 'P': return "PERSID";
	case 'Q': return "BINPERSID";
	case 'R': return "REDUCE";
	case 'S': return "STRING";
	case 'T': return "BINSTRING";
	case 'U': return "SHORT_BINSTRING";
	case 'V': return "UNICODE";
	case 'X': return "BINUNICODE";
	case 'a': return "APPEND";
	case 'b': return "BUILD";
	case 'c': return "GLOBAL";
	case 'd': return "DICT";
	case '}': return "EMPTY_DICT";
	case 'e': return "APPENDS";
	case 'g': return "GET";
	case 'h': return "BINGET";
	case 'i': return "INST";
	case 'j': return "LONG_BINGET";
	case 'l': return "LIST";
	case ']': return "EMPTY_LIST";
	case 'o': return "OBJ";
	case 'p': return "PUT";
	case 'q': return "BINPUT";
	case 'r': return "LONG_BINPUT";
	case 's': return "SETITEM";
	case 't': return "TUPLE";
	case ')': return "EMPTY_TUPLE";
	case 'u': return "SETITEMS";
	case 'G': return "BINFLOAT";
	case 'B': return "BINBYTES";
	case 'C': return "SHORT_BINBYTES";
	case 0x80: return "PROTO";
	case 0x81: return "NEWOBJ";
	case 0x82: return "EXT1";
	case 0x83: return "EXT2";
	case 0x84: return "EXT4";
	case 0x85: return "TUPLE1";
	case 0x86: return "TUPLE2";
	case 0x87: return "TUPLE3";
	case 0x88: return "NEWTRUE";
	case 0x89: return "NEWFALSE";
	case 0x8a: return "LONG1";
	case 0x8b: return "LONG4";
	case 0x8c: return "SHORT_BINUNICODE";
	case 0x8d: return "BINUNICODE8";
	case 0x8e: return "BINBYTES8";
	case 0x8f: return "EMPTY_SET";
	case 0x90: return "ADDITEMS";
	case 0x91: return "FROZENSET";
	case 0x92: return "NEWOBJ_EX";
	case 0x93: return "STACK_GLOBAL";
	case 0x94: return "MEMOIZE";
	case 0x95: return "FRAME";
	case 0x96: return "BYTEARRAY8";
	case 0x97: return "NEXT_BUFFER";
	case 0x98: return "READONLY_BUFFER";
	default: return NULL;
	}
}

static const char *vtype(const struct pval *v)
{
	return type_names[v->type];
}

/* ---------------------------------------------------------------- memory */

/* Count n bytes against the budget; fail if the input cannot justify them. */
static int reserve(struct vm *vm, size_t n)
{
	if (n > vm->budget - vm->used)
		return fail(vm, "the pickle needs more than %zu bytes of memory, more than "
			    "its size justifies", vm->budget);
	vm->used += n;
	return 0;
}

static struct pobj *new_obj(struct vm *vm, unsigned char type, size_t extra)
{
	struct pobj *o;

	if (extra > SIZE_MAX - sizeof(*o) || reserve(vm, sizeof(*o) + extra) < 0)
		return NULL;
	o = calloc(1, sizeof(*o) + extra);
	if (!o) {
		fail_nomem(vm);
		return NULL;
	}
	o->type = type;
	o->next = vm->objs;
	vm->objs = o;
	return o;
}

/* Grow *arr (of elem-byte items, *cap allocated) to hold at least want. */
static int grow(struct vm *vm, void **arr, size_t *cap, size_t want, size_t elem)
{
	size_t ncap = *cap ? *cap : 8;
	void *p;

	if (want <= *cap)
		return 0;
	while (ncap < want) {
		if (ncap > SIZE_MAX / 2 / elem)
			return fail_nomem(vm);
		ncap *= 2;
	}
	if (reserve(vm, (ncap - *cap) * elem) < 0)
		return -1;
	p = realloc(*arr, ncap * elem);
	if (!p)
		return fail_nomem(vm);
	*arr = p;
	*cap = ncap;
	return 0;
}

static void vm_free(struct vm *vm)
{
	struct pobj *o = vm->objs, *next;

	for (; o; o = next) {
		next = o->next;
		if (o->type == P_LIST || o->type == P_DICT)
			free(o->u.items);
		free(o);
	}
	free(vm->stack);
	free(vm->marks);
	free(vm->memo);
	free(vm->storages);
	free(vm->shash);
}

/* ---------------------------------------------------------------- stack */

static size_t floor_of(const struct vm *vm)
{
	return vm->nmarks ? vm->marks[vm->nmarks - 1] : 0;
}

static int push(struct vm *vm, struct pval v)
{
	if (vm->sp >= MAX_STACK)
		return fail(vm, "stack deeper than %d values at byte %zu", MAX_STACK, vm->op_at);
	if (grow(vm, (void **)&vm->stack, &vm->stack_cap, vm->sp + 1, sizeof(*vm->stack)) < 0)
		return -1;
	vm->stack[vm->sp++] = v;
	return 0;
}

static int push_obj(struct vm *vm, unsigned char type, struct pobj *o)
{
	struct pval v = { .type = type };

	if (!o)
		return -1;
	v.u.o = o;
	return push(vm, v);
}

static int push_int(struct vm *vm, unsigned char type, int64_t i)
{
	struct pval v = { .type = type };

	v.u.i = i;
	return push(vm, v);
}

static int pop(struct vm *vm, struct pval *out, const char *op)
{
	if (vm->sp <= floor_of(vm))
		return fail(vm, "%s at byte %zu: stack is empty", op, vm->op_at);
	*out = vm->stack[--vm->sp];
	return 0;
}

/* The value on top of the stack, or NULL (with err set) if there is none. */
static struct pval *top(struct vm *vm, const char *op)
{
	if (vm->sp <= floor_of(vm)) {
		fail(vm, "%s at byte %zu: stack is empty", op, vm->op_at);
		return NULL;
	}
	return &vm->stack[vm->sp - 1];
}

/* Pop the innermost mark; *start is where the marked values begin. */
static int pop_mark(struct vm *vm, size_t *start, const char *op)
{
	if (!vm->nmarks)
		return fail(vm, "%s at byte %zu: no MARK to match", op, vm->op_at);
	*start = vm->marks[--vm->nmarks];
	return 0;
}

/* ---------------------------------------------------------------- operands */

static int need(struct vm *vm, size_t n, int op)
{
	if ((size_t)(vm->end - vm->p) < n)
		return fail(vm, "pickle is truncated: %s at byte %zu needs %zu bytes, %zu left",
			    op_name(op), vm->op_at, n, (size_t)(vm->end - vm->p));
	return 0;
}

static uint64_t read_le(struct vm *vm, size_t n)
{
	uint64_t v = 0;

	for (size_t i = 0; i < n; i++)
		v |= (uint64_t)vm->p[i] << (8 * i);
	vm->p += n;
	return v;
}

/* A little-endian two's complement integer of n <= 8 bytes (LONG1/LONG4). */
static int op_long(struct vm *vm, int op, size_t lenbytes)
{
	uint64_t n, v;

	if (need(vm, lenbytes, op) < 0)
		return -1;
	n = read_le(vm, lenbytes);
	if (lenbytes == 4 && n > INT32_MAX)
		return fail(vm, "%s at byte %zu: negative length", op_name(op), vm->op_at);
	if (n > 8)
		return fail(vm, "%s at byte %zu: integer of %llu bytes is too large",
			    op_name(op), vm->op_at, (unsigned long long)n);
	if (need(vm, (size_t)n, op) < 0)
		return -1;
	v = read_le(vm, (size_t)n);
	if (n > 0 && n < 8 && (v >> (8 * n - 1)) & 1)
		v |= ~(uint64_t)0 << (8 * n);  /* sign-extend */
	return push_int(vm, P_INT, (int64_t)v);
}

/* A string or bytes of n bytes following the opcode; n checked first. */
static int op_string(struct vm *vm, int op, size_t lenbytes, unsigned char type)
{
	uint64_t n;
	struct pobj *o;

	if (need(vm, lenbytes, op) < 0)
		return -1;
	n = read_le(vm, lenbytes);
	if (op == 'T' && n > INT32_MAX)
		return fail(vm, "%s at byte %zu: negative length", op_name(op), vm->op_at);
	if (need(vm, n, op) < 0)
		return -1;
	o = new_obj(vm, type, (size_t)n + 1);
	if (!o)
		return -1;
	o->u.s = (char *)(o + 1);
	memcpy(o->u.s, vm->p, (size_t)n);
	o->u.s[n] = '\0';
	o->len = (size_t)n;
	vm->p += n;
	return push_obj(vm, type, o);
}

/* ---------------------------------------------------------------- memo */

static int memo_put(struct vm *vm, uint64_t idx, int op)
{
	struct pval *v = top(vm, op_name(op));

	if (!v)
		return -1;
	/*
	 * Picklers number memo slots 0, 1, 2...; refusing gaps keeps the memo
	 * no larger than the number of PUTs the input holds.
	 */
	if (idx > vm->memo_len)
		return fail(vm, "memo index %llu at byte %zu skips ahead of the %zu stored objects",
			    (unsigned long long)idx, vm->op_at, vm->memo_len);
	if (idx == vm->memo_len) {
		if (grow(vm, (void **)&vm->memo, &vm->memo_cap, vm->memo_len + 1,
			 sizeof(*vm->memo)) < 0)
			return -1;
		vm->memo_len++;
	}
	vm->memo[idx] = *v;
	return 0;
}

static int memo_get(struct vm *vm, uint64_t idx)
{
	if (idx >= vm->memo_len)
		return fail(vm, "memo index %llu at byte %zu is not set (the memo holds %zu objects)",
			    (unsigned long long)idx, vm->op_at, vm->memo_len);
	return push(vm, vm->memo[idx]);
}

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

static int resolve_global(struct vm *vm, const char *mod, size_t mlen,
			  const char *name, size_t nlen)
{
	char m[MAX_GLOBAL_NAME + 1], n[MAX_GLOBAL_NAME + 1];

	for (size_t i = 0; i < sizeof(globals) / sizeof(globals[0]); i++) {
		const struct global *g = &globals[i];

		if (strlen(g->module) == mlen && !memcmp(g->module, mod, mlen) &&
		    strlen(g->name) == nlen && !memcmp(g->name, name, nlen))
			return push_int(vm, P_GLOBAL, (int64_t)i);
	}
	printable(m, sizeof(m), mod, mlen);
	printable(n, sizeof(n), name, nlen);
	if (!strcmp(m, "torch") && nlen > 7 && !strcmp(n + nlen - 7, "Storage"))
		return fail(vm, "storage type 'torch.%s' is not supported", n);
	if (!strcmp(m, "torch._utils") && !strncmp(n, "_rebuild_", 9))
		return fail(vm, "global 'torch._utils.%s' is not supported: weld reads plain "
			    "dense tensors only", n);
	return fail(vm, "global '%s.%s' is not allowed", m, n);
}

/* GLOBAL: "module\nname\n". */
static int op_global(struct vm *vm)
{
	const unsigned char *line[2];
	size_t len[2];

	for (int k = 0; k < 2; k++) {
		const unsigned char *nl;
		size_t left = (size_t)(vm->end - vm->p);

		nl = memchr(vm->p, '\n', left < MAX_GLOBAL_NAME + 1 ? left : MAX_GLOBAL_NAME + 1);
		if (!nl) {
			if (left <= MAX_GLOBAL_NAME)
				return fail(vm, "pickle is truncated: GLOBAL at byte %zu has no "
					    "end of line", vm->op_at);
			return fail(vm, "GLOBAL at byte %zu: name longer than %d bytes",
				    vm->op_at, MAX_GLOBAL_NAME);
		}
		line[k] = vm->p;
		len[k] = (size_t)(nl - vm->p);
		vm->p = nl + 1;
	}
	return resolve_global(vm, (const char *)line[0], len[0], (const char *)line[1], len[1]);
}

static int op_stack_global(struct vm *vm)
{
	struct pval mod, name;

	if (pop(vm, &name, "STACK_GLOBAL") < 0 || pop(vm, &mod, "STACK_GLOBAL") < 0)
		return -1;
	if (mod.type != P_STR || name.type != P_STR)
		return fail(vm, "STACK_GLOBAL at byte %zu: module and name must be strings",
			    vm->op_at);
	if (mod.u.o->len > MAX_GLOBAL_NAME || name.u.o->len > MAX_GLOBAL_NAME)
		return fail(vm, "STACK_GLOBAL at byte %zu: name longer than %d bytes",
			    vm->op_at, MAX_GLOBAL_NAME);
	return resolve_global(vm, mod.u.o->u.s, mod.u.o->len, name.u.o->u.s, name.u.o->len);
}

static const struct global *global_of(const struct pval *v)
{
	return v->type == P_GLOBAL ? &globals[v->u.i] : NULL;
}

/* ---------------------------------------------------------------- containers */

static int make_tuple(struct vm *vm, size_t start)
{
	size_t n = vm->sp - start;
	struct pobj *o;

	if (n > SIZE_MAX / sizeof(struct pval))
		return fail_nomem(vm);
	o = new_obj(vm, P_TUPLE, n * sizeof(struct pval));
	if (!o)
		return -1;
	o->u.items = (struct pval *)(o + 1);
	o->len = n;
	if (n)
		memcpy(o->u.items, &vm->stack[start], n * sizeof(struct pval));
	vm->sp = start;
	return push_obj(vm, P_TUPLE, o);
}

/* TUPLE1..3: the n values on top of the stack. */
static int op_tuple_n(struct vm *vm, size_t n, const char *op)
{
	if (vm->sp - floor_of(vm) < n)
		return fail(vm, "%s at byte %zu: stack holds fewer than %zu values", op,
			    vm->op_at, n);
	return make_tuple(vm, vm->sp - n);
}

static int append_values(struct vm *vm, struct pobj *o, const struct pval *v, size_t n)
{
	if (!n)
		return 0;
	if (grow(vm, (void **)&o->u.items, &o->cap, o->len + n, sizeof(struct pval)) < 0)
		return -1;
	memcpy(o->u.items + o->len, v, n * sizeof(struct pval));
	o->len += n;
	return 0;
}

/*
 * SETITEM, SETITEMS, APPEND, APPENDS: values[start, sp) go into the
 * container just below them.
 */
static int fill_container(struct vm *vm, size_t start, unsigned char type, const char *op)
{
	struct pval *c;
	size_t n = vm->sp - start;

	if (start <= floor_of(vm))
		return fail(vm, "%s at byte %zu: no container on the stack", op, vm->op_at);
	c = &vm->stack[start - 1];
	if (c->type != type)
		return fail(vm, "%s at byte %zu on a %s: only a %s can take items", op,
			    vm->op_at, vtype(c), type_names[type]);
	if (type == P_DICT && n % 2)
		return fail(vm, "%s at byte %zu: odd number of values for key/value pairs",
			    op, vm->op_at);
	if (append_values(vm, c->u.o, &vm->stack[start], n) < 0)
		return -1;
	vm->sp = start;
	return 0;
}

static int op_fill(struct vm *vm, int op)
{
	size_t start = 0;
	unsigned char type = (op == 's' || op == 'u') ? P_DICT : P_LIST;

	if (op == 's' || op == 'a') {
		size_t need_n = op == 's' ? 2 : 1;

		if (vm->sp - floor_of(vm) < need_n)
			return fail(vm, "%s at byte %zu: stack holds fewer than %zu values",
				    op_name(op), vm->op_at, need_n);
		start = vm->sp - need_n;
	} else if (pop_mark(vm, &start, op_name(op)) < 0) {
		return -1;
	}
	return fill_container(vm, start, type, op_name(op));
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
static size_t storage_find(const struct vm *vm, uint64_t key)
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

static int storage_add(struct vm *vm, const struct pstorage *s)
{
	if (grow(vm, (void **)&vm->storages, &vm->storages_cap, vm->nstorages + 1,
		 sizeof(*vm->storages)) < 0)
		return -1;
	vm->storages[vm->nstorages++] = *s;
	if (vm->nstorages * 2 > vm->shash_cap) {
		size_t ncap = vm->shash_cap ? vm->shash_cap * 2 : 64;
		size_t *h;

		if (ncap > SIZE_MAX / sizeof(*h) || reserve(vm, ncap * sizeof(*h)) < 0)
			return -1;
		h = calloc(ncap, sizeof(*h));
		if (!h)
			return fail_nomem(vm);
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
static int op_persid(struct vm *vm)
{
	struct pval pid, v = { .type = P_STORAGE };
	const struct pval *it;
	const struct global *g;
	const struct pobj *key;
	struct pstorage s = { 0 };
	uint64_t numel;
	size_t found;

	if (pop(vm, &pid, "BINPERSID") < 0)
		return -1;
	if (pid.type != P_TUPLE || pid.u.o->len != 5)
		return fail(vm, "BINPERSID at byte %zu: persistent id is not a 5-tuple "
			    "('storage', type, key, location, numel)", vm->op_at);
	it = pid.u.o->u.items;
	if (it[0].type != P_STR || strcmp(it[0].u.o->u.s, "storage") ||
	    it[0].u.o->len != 7)
		return fail(vm, "BINPERSID at byte %zu: persistent id is not a storage",
			    vm->op_at);
	g = global_of(&it[1]);
	if (!g || (g->kind != G_STORAGE_CLASS && g->kind != G_UNTYPED_STORAGE))
		return fail(vm, "BINPERSID at byte %zu: storage type is a %s, not a storage class",
			    vm->op_at, vtype(&it[1]));
	if (it[2].type != P_STR)
		return fail(vm, "BINPERSID at byte %zu: storage key is a %s, not a string",
			    vm->op_at, vtype(&it[2]));
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
	if (it[3].type != P_STR)
		return fail(vm, "storage '%s': location is a %s, not a string", s.text,
			    vtype(&it[3]));
	if (it[4].type != P_INT || it[4].u.i < 0)
		return fail(vm, "storage '%s': numel is not a non-negative integer", s.text);
	numel = (uint64_t)it[4].u.i;
	if (__builtin_mul_overflow(numel, (uint64_t)g->esize, &s.nbytes))
		return fail(vm, "storage '%s': numel %llu overflows", s.text,
			    (unsigned long long)numel);
	s.dtype = g->dtype;
	s.esize = g->esize;
	s.untyped = g->kind == G_UNTYPED_STORAGE;
	found = storage_find(vm, s.key);
	if (found != SIZE_MAX) {
		const struct pstorage *o = &vm->storages[found];

		if (o->dtype != s.dtype || o->untyped != s.untyped || o->nbytes != s.nbytes)
			return fail(vm, "storage '%s' is declared twice with different types "
				    "or sizes", s.text);
		v.u.storage = found;
	} else {
		if (storage_add(vm, &s) < 0)
			return -1;
		v.u.storage = vm->nstorages - 1;
	}
	return push(vm, v);

bad_key:
	{
		char buf[32];

		return fail(vm, "BINPERSID at byte %zu: storage key '%s' is not a decimal number",
			    vm->op_at, printable(buf, sizeof(buf), key->u.s, key->len));
	}
}

/* ---------------------------------------------------------------- REDUCE */

static bool is_empty_dict(const struct pval *v)
{
	return v->type == P_DICT && v->u.o->len == 0;
}

/* Read an int tuple (size or stride) into out[0..WELD_MAX_DIMS). */
static int int_tuple(struct vm *vm, const struct pval *v, int64_t *out, size_t *n,
		     const char *what, const char *fn)
{
	if (v->type != P_TUPLE)
		return fail(vm, "%s at byte %zu: %s is a %s, not a tuple", fn, vm->op_at, what,
			    vtype(v));
	*n = v->u.o->len;
	for (size_t i = 0; i < *n; i++) {
		const struct pval *e = &v->u.o->u.items[i];

		if (e->type != P_INT)
			return fail(vm, "%s at byte %zu: %s[%zu] is a %s, not an int", fn,
				    vm->op_at, what, i, vtype(e));
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
static int rebuild_tensor(struct vm *vm, const struct pobj *args, bool v3)
{
	const char *fn = v3 ? "_rebuild_tensor_v3" : "_rebuild_tensor_v2";
	const struct pval *a = args->u.items;
	size_t base = v3 ? 7 : 6, nsize, nstride;
	const struct pstorage *st;
	struct pobj *o;
	struct ptensor *t;

	if (args->len != base && args->len != base + 1)
		return fail(vm, "%s at byte %zu: %zu arguments, expected %zu or %zu", fn,
			    vm->op_at, args->len, base, base + 1);
	if (a[0].type != P_STORAGE)
		return fail(vm, "%s at byte %zu: first argument is a %s, not a storage", fn,
			    vm->op_at, vtype(&a[0]));
	if (a[1].type != P_INT)
		return fail(vm, "%s at byte %zu: storage_offset is a %s, not an int", fn,
			    vm->op_at, vtype(&a[1]));
	if (a[4].type != P_BOOL)
		return fail(vm, "%s at byte %zu: requires_grad is a %s, not a bool", fn,
			    vm->op_at, vtype(&a[4]));
	if (!is_empty_dict(&a[5]))
		return fail(vm, "%s at byte %zu: backward hooks are not supported", fn,
			    vm->op_at);
	if (args->len == base + 1 && !is_empty_dict(&a[base]))
		return fail(vm, "%s at byte %zu: tensor metadata (conjugate or negative "
			    "bit) is not supported", fn, vm->op_at);
	o = new_obj(vm, P_TENSOR, sizeof(*t));
	if (!o)
		return -1;
	t = o->u.t = (struct ptensor *)(o + 1);
	if (int_tuple(vm, &a[2], t->shape, &nsize, "size", fn) < 0 ||
	    int_tuple(vm, &a[3], t->stride, &nstride, "stride", fn) < 0)
		return -1;
	if (nsize != nstride)
		return fail(vm, "%s at byte %zu: size has %zu dimensions but stride %zu", fn,
			    vm->op_at, nsize, nstride);
	st = &vm->storages[a[0].u.storage];
	t->storage = a[0].u.storage;
	t->ndim = nsize > WELD_MAX_DIMS ? WELD_MAX_DIMS + 1 : (int)nsize;
	t->offset = a[1].u.i;
	t->dtype = st->dtype;
	t->esize = st->esize;
	if (v3) {
		const struct global *g = global_of(&a[6]);

		if (!g || g->kind != G_DTYPE)
			return fail(vm, "%s at byte %zu: dtype is a %s, not a torch dtype", fn,
				    vm->op_at, vtype(&a[6]));
		if (!st->untyped && st->dtype != g->dtype)
			return fail(vm, "%s at byte %zu: dtype torch.%s does not match storage "
				    "'%s'", fn, vm->op_at, g->name, st->text);
		t->dtype = g->dtype;
		t->esize = g->esize;
	}
	return push_obj(vm, P_TENSOR, o);
}

static int op_reduce(struct vm *vm)
{
	struct pval args, fn;
	const struct global *g;

	if (pop(vm, &args, "REDUCE") < 0 || pop(vm, &fn, "REDUCE") < 0)
		return -1;
	g = global_of(&fn);
	if (!g)
		return fail(vm, "REDUCE at byte %zu on a %s: only allow-listed globals can be "
			    "called", vm->op_at, vtype(&fn));
	if (args.type != P_TUPLE)
		return fail(vm, "REDUCE at byte %zu: arguments of '%s.%s' are a %s, not a tuple",
			    vm->op_at, g->module, g->name, vtype(&args));
	switch (g->kind) {
	case G_ORDERED_DICT:
		if (args.u.o->len)
			return fail(vm, "REDUCE at byte %zu: collections.OrderedDict called with "
				    "arguments", vm->op_at);
		return push_obj(vm, P_DICT, new_obj(vm, P_DICT, 0));
	case G_REBUILD_V2:
	case G_REBUILD_V3:
		return rebuild_tensor(vm, args.u.o, g->kind == G_REBUILD_V3);
	case G_REBUILD_PARAM: {
		/* _rebuild_parameter(data, requires_grad, backward_hooks) */
		const struct pval *a = args.u.o->u.items;

		if (args.u.o->len != 3 || a[0].type != P_TENSOR || a[1].type != P_BOOL)
			return fail(vm, "REDUCE at byte %zu: _rebuild_parameter expects "
				    "(tensor, bool, hooks)", vm->op_at);
		if (!is_empty_dict(&a[2]))
			return fail(vm, "_rebuild_parameter at byte %zu: backward hooks are "
				    "not supported", vm->op_at);
		return push(vm, a[0]);
	}
	case G_STORAGE_CLASS:
	case G_UNTYPED_STORAGE:
	case G_DTYPE:
		break;
	}
	return fail(vm, "REDUCE at byte %zu: calling '%s.%s' is not allowed", vm->op_at,
		    g->module, g->name);
}

static int op_build(struct vm *vm)
{
	struct pval state, *obj;

	if (pop(vm, &state, "BUILD") < 0 || !(obj = top(vm, "BUILD")))
		return -1;
	/* An OrderedDict's state only sets its _metadata attribute: ignored. */
	if (obj->type != P_DICT)
		return fail(vm, "BUILD at byte %zu on a %s is not allowed", vm->op_at,
			    vtype(obj));
	return 0;
}

/* ---------------------------------------------------------------- the loop */

static int refuse(struct vm *vm, int op)
{
	const char *name = op_name(op);

	if (name)
		return fail(vm, "opcode %s (0x%02x) at byte %zu is not allowed", name, op,
			    vm->op_at);
	return fail(vm, "unknown opcode 0x%02x at byte %zu", op, vm->op_at);
}

/* Run until STOP; *root is the single value left on the stack. */
static int run(struct vm *vm, struct pval *root)
{
	while (vm->p < vm->end) {
		int op = *vm->p;
		struct pval v;
		size_t start = 0;

		vm->op_at = (size_t)(vm->p - vm->start);
		vm->p++;
		switch (op) {
		case 0x80: /* PROTO */
			if (need(vm, 1, op) < 0)
				return -1;
			if (*vm->p < 2 || *vm->p > 5)
				return fail(vm, "pickle protocol %d is not supported", *vm->p);
			vm->p++;
			break;
		case 0x95: /* FRAME: only groups opcodes */
			if (need(vm, 8, op) < 0)
				return -1;
			if (read_le(vm, 8) > (uint64_t)(vm->end - vm->p))
				return fail(vm, "pickle is truncated: FRAME at byte %zu is longer "
					    "than the rest of the file", vm->op_at);
			break;
		case '.': /* STOP */
			if (vm->nmarks || vm->sp != 1)
				return fail(vm, "STOP at byte %zu with %zu values and %zu marks "
					    "on the stack", vm->op_at, vm->sp, vm->nmarks);
			if (vm->p != vm->end)
				return fail(vm, "%zu bytes after STOP", (size_t)(vm->end - vm->p));
			*root = vm->stack[0];
			return 0;
		case '(': /* MARK */
			if (vm->nmarks >= MAX_MARKS)
				return fail(vm, "more than %d nested MARKs at byte %zu", MAX_MARKS,
					    vm->op_at);
			if (grow(vm, (void **)&vm->marks, &vm->marks_cap, vm->nmarks + 1,
				 sizeof(*vm->marks)) < 0)
				return -1;
			vm->marks[vm->nmarks++] = vm->sp;
			break;
		case '0': /* POP */
			if (vm->sp > floor_of(vm))
				vm->sp--;
			else if (pop_mark(vm, &start, "POP") < 0)
				return -1;
			break;
		case '1': /* POP_MARK */
			if (pop_mark(vm, &start, "POP_MARK") < 0)
				return -1;
			vm->sp = start;
			break;
		case 'N':
			if (push_int(vm, P_NONE, 0) < 0)
				return -1;
			break;
		case 0x88: case 0x89: /* NEWTRUE, NEWFALSE */
			if (push_int(vm, P_BOOL, op == 0x88) < 0)
				return -1;
			break;
		case 'K': case 'M': /* BININT1, BININT2 */
			if (need(vm, op == 'K' ? 1 : 2, op) < 0 ||
			    push_int(vm, P_INT, (int64_t)read_le(vm, op == 'K' ? 1 : 2)) < 0)
				return -1;
			break;
		case 'J': /* BININT: signed 32 bits */
			if (need(vm, 4, op) < 0 ||
			    push_int(vm, P_INT, (int32_t)(uint32_t)read_le(vm, 4)) < 0)
				return -1;
			break;
		case 0x8a: case 0x8b: /* LONG1, LONG4 */
			if (op_long(vm, op, op == 0x8a ? 1 : 4) < 0)
				return -1;
			break;
		case 'G': { /* BINFLOAT: big-endian double */
			uint64_t bits = 0;

			if (need(vm, 8, op) < 0)
				return -1;
			for (int i = 0; i < 8; i++)
				bits = bits << 8 | vm->p[i];
			vm->p += 8;
			v.type = P_FLOAT;
			memcpy(&v.u.f, &bits, sizeof(v.u.f));
			if (push(vm, v) < 0)
				return -1;
			break;
		}
		case 'X': case 'T':
			if (op_string(vm, op, 4, P_STR) < 0)
				return -1;
			break;
		case 0x8c: case 'U': /* SHORT_BINUNICODE, SHORT_BINSTRING */
			if (op_string(vm, op, 1, P_STR) < 0)
				return -1;
			break;
		case 0x8d: /* BINUNICODE8 */
			if (op_string(vm, op, 8, P_STR) < 0)
				return -1;
			break;
		case 'C': case 'B': case 0x8e: /* SHORT_BINBYTES, BINBYTES, BINBYTES8 */
			if (op_string(vm, op, op == 'C' ? 1 : op == 'B' ? 4 : 8, P_BYTES) < 0)
				return -1;
			break;
		case '}':
			if (push_obj(vm, P_DICT, new_obj(vm, P_DICT, 0)) < 0)
				return -1;
			break;
		case ']':
			if (push_obj(vm, P_LIST, new_obj(vm, P_LIST, 0)) < 0)
				return -1;
			break;
		case ')':
			if (make_tuple(vm, vm->sp) < 0)
				return -1;
			break;
		case 't':
			if (pop_mark(vm, &start, "TUPLE") < 0 || make_tuple(vm, start) < 0)
				return -1;
			break;
		case 0x85: case 0x86: case 0x87: /* TUPLE1..3 */
			if (op_tuple_n(vm, (size_t)(op - 0x84), op_name(op)) < 0)
				return -1;
			break;
		case 's': case 'u': case 'a': case 'e':
			if (op_fill(vm, op) < 0)
				return -1;
			break;
		case 'q':
			if (need(vm, 1, op) < 0 || memo_put(vm, read_le(vm, 1), op) < 0)
				return -1;
			break;
		case 'r':
			if (need(vm, 4, op) < 0 || memo_put(vm, read_le(vm, 4), op) < 0)
				return -1;
			break;
		case 0x94: /* MEMOIZE */
			if (memo_put(vm, vm->memo_len, op) < 0)
				return -1;
			break;
		case 'h':
			if (need(vm, 1, op) < 0 || memo_get(vm, read_le(vm, 1)) < 0)
				return -1;
			break;
		case 'j':
			if (need(vm, 4, op) < 0 || memo_get(vm, read_le(vm, 4)) < 0)
				return -1;
			break;
		case 'c':
			if (op_global(vm) < 0)
				return -1;
			break;
		case 0x93:
			if (op_stack_global(vm) < 0)
				return -1;
			break;
		case 'R':
			if (op_reduce(vm) < 0)
				return -1;
			break;
		case 'b':
			if (op_build(vm) < 0)
				return -1;
			break;
		case 'Q':
			if (op_persid(vm) < 0)
				return -1;
			break;
		default:
			return refuse(vm, op);
		}
	}
	return fail(vm, "pickle is truncated: no STOP opcode");
}

/* ---------------------------------------------------------------- flattening */

struct collect {
	struct weld_pickle_result *out;
	size_t cap;
	char name[WELD_PICKLE_MAX_NAME + 1];
};

static bool valid_utf8(const unsigned char *s, size_t n)
{
	size_t i = 0;

	while (i < n) {
		unsigned c = s[i], len, min;
		uint32_t cp;

		if (c < 0x80) {
			if (!c)
				return false;
			i++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf) {
			len = 2; cp = c & 0x1f; min = 0x80;
		} else if (c >= 0xe0 && c <= 0xef) {
			len = 3; cp = c & 0x0f; min = 0x800;
		} else if (c >= 0xf0 && c <= 0xf4) {
			len = 4; cp = c & 0x07; min = 0x10000;
		} else {
			return false;
		}
		if (n - i < len)
			return false;
		for (unsigned k = 1; k < len; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return false;
			cp = cp << 6 | (s[i + k] & 0x3f);
		}
		if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		i += len;
	}
	return true;
}

/* Check t's view against its storage and fill out (name set by caller). */
static int check_view(struct vm *vm, const char *name, const struct ptensor *t,
		      struct weld_pickle_tensor *out)
{
	const struct pstorage *st = &vm->storages[t->storage];
	uint64_t nelem = 1, last, end, expect = 1;

	if (t->ndim > WELD_MAX_DIMS)
		return fail(vm, "tensor '%s': size: more than %d dimensions", name,
			    WELD_MAX_DIMS);
	if (t->offset < 0)
		return fail(vm, "tensor '%s': storage_offset %lld is negative", name,
			    (long long)t->offset);
	out->ndim = t->ndim;
	out->dtype = t->dtype;
	out->storage = t->storage;
	out->storage_offset = (uint64_t)t->offset;
	last = (uint64_t)t->offset;
	for (int k = 0; k < t->ndim; k++) {
		if (t->shape[k] < 0)
			return fail(vm, "tensor '%s': size[%d] is negative (%lld)", name, k,
				    (long long)t->shape[k]);
		if (t->stride[k] < 0)
			return fail(vm, "tensor '%s': stride[%d] is negative (%lld); weld reads "
				    "non-negative strides only", name, k, (long long)t->stride[k]);
		if (t->shape[k] == 0)
			nelem = 0;
		out->shape[k] = t->shape[k];
		out->stride[k] = t->stride[k];
	}
	for (int k = 0; k < t->ndim && nelem; k++)
		if (__builtin_mul_overflow(nelem, (uint64_t)t->shape[k], &nelem) ||
		    nelem > INT64_MAX)
			return fail(vm, "tensor '%s': size: element count overflows", name);
	out->nelem = nelem;
	if (__builtin_mul_overflow(nelem, (uint64_t)t->esize, &out->nbytes))
		return fail(vm, "tensor '%s': size: byte count overflows", name);
	if (__builtin_mul_overflow((uint64_t)t->offset, (uint64_t)t->esize, &out->byte_offset))
		return fail(vm, "tensor '%s': storage_offset %lld overflows", name,
			    (long long)t->offset);
	if (nelem == 0) {
		/* Nothing is read, but element 0's offset must still be in the storage. */
		if (out->byte_offset > st->nbytes)
			return fail(vm, "tensor '%s': storage_offset %lld is past the end of "
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
			return fail(vm, "tensor '%s': stride: reachable element index overflows",
				    name);
	}
	if (__builtin_add_overflow(last, 1, &end) ||
	    __builtin_mul_overflow(end, (uint64_t)t->esize, &end) || end > st->nbytes)
		return fail(vm, "tensor '%s': view reaches element %llu of storage '%s', "
			    "which holds %llu elements", name, (unsigned long long)last, st->text,
			    (unsigned long long)(st->nbytes / t->esize));
	out->contiguous = true;
	for (int k = t->ndim - 1; k >= 0; k--) {
		if (t->shape[k] != 1 && (uint64_t)t->stride[k] != expect)
			out->contiguous = false;
		expect *= (uint64_t)t->shape[k];  /* <= nelem: no overflow */
	}
	return 0;
}

static int add_tensor(struct vm *vm, struct collect *c, const struct ptensor *t)
{
	struct weld_pickle_result *r = c->out;
	struct weld_pickle_tensor *e;
	size_t nlen = strlen(c->name);

	if (r->ntensors == c->cap) {
		size_t ncap = c->cap ? c->cap * 2 : 16;
		void *p;

		if (ncap > SIZE_MAX / sizeof(*e) ||
		    reserve(vm, (ncap - c->cap) * sizeof(*e)) < 0)
			return -1;
		p = realloc(r->tensors, ncap * sizeof(*e));
		if (!p)
			return fail_nomem(vm);
		r->tensors = p;
		c->cap = ncap;
	}
	e = &r->tensors[r->ntensors];
	memset(e, 0, sizeof(*e));
	if (check_view(vm, c->name, t, e) < 0)
		return -1;
	if (reserve(vm, nlen + 1) < 0)
		return -1;
	e->name = malloc(nlen + 1);
	if (!e->name)
		return fail_nomem(vm);
	memcpy(e->name, c->name, nlen + 1);
	r->ntensors++;
	vm->storages[t->storage].used = true;
	return 0;
}

/* Walk dict d, whose keys are appended to c->name (nlen bytes so far). */
static int collect_dict(struct vm *vm, struct collect *c, struct pobj *d, size_t nlen,
			int depth)
{
	const char *label = nlen ? c->name : "(root)";

	if (depth > MAX_DICT_DEPTH)
		return fail(vm, "dict '%s': dicts nested deeper than %d levels", label,
			    MAX_DICT_DEPTH);
	/*
	 * Each dict once: a dict reachable twice (or from itself) would make the
	 * flattened names repeat or grow without end.
	 */
	if (d->visited)
		return fail(vm, "dict '%s': the same dict appears twice in the state dict",
			    label);
	d->visited = true;
	for (size_t i = 0; i + 1 < d->len; i += 2) {
		const struct pval *k = &d->u.items[i], *v = &d->u.items[i + 1];
		size_t len = nlen;

		if (k->type != P_STR)
			return fail(vm, "dict '%s': key %zu is a %s, not a string", label,
				    i / 2, vtype(k));
		if (!k->u.o->len)
			return fail(vm, "dict '%s': key %zu is empty", label, i / 2);
		if (!valid_utf8((const unsigned char *)k->u.o->u.s, k->u.o->len))
			return fail(vm, "dict '%s': key %zu is not valid UTF-8 or contains NUL",
				    label, i / 2);
		if (k->u.o->len + (nlen ? 1 : 0) > WELD_PICKLE_MAX_NAME - nlen)
			return fail(vm, "dict '%s': key %zu makes a tensor name longer than %d "
				    "bytes", label, i / 2, WELD_PICKLE_MAX_NAME);
		if (nlen)
			c->name[len++] = '.';
		memcpy(c->name + len, k->u.o->u.s, k->u.o->len);
		len += k->u.o->len;
		c->name[len] = '\0';
		if (v->type == P_TENSOR) {
			if (add_tensor(vm, c, v->u.o->u.t) < 0)
				return -1;
		} else if (v->type == P_DICT) {
			if (collect_dict(vm, c, v->u.o, len, depth + 1) < 0)
				return -1;
		} else {
			return fail(vm, "key '%s': value is a %s, not a tensor", c->name, vtype(v));
		}
		c->name[nlen] = '\0';
	}
	return 0;
}

static const struct pval *dict_get(const struct pobj *d, const char *key)
{
	for (size_t i = 0; i + 1 < d->len; i += 2) {
		const struct pval *k = &d->u.items[i];

		if (k->type == P_STR && k->u.o->len == strlen(key) && !strcmp(k->u.o->u.s, key))
			return &d->u.items[i + 1];
	}
	return NULL;
}

/*
 * The dict holding the weights: the root, or its 'state_dict' / 'model'
 * entry when the root holds no tensor itself (a training checkpoint).
 */
static struct pobj *weights_dict(struct pobj *root)
{
	static const char *const wrappers[] = { "state_dict", "model" };

	for (size_t i = 1; i < root->len; i += 2)
		if (root->u.items[i].type == P_TENSOR)
			return root;
	for (size_t w = 0; w < 2; w++) {
		const struct pval *v = dict_get(root, wrappers[w]);

		if (v && v->type == P_DICT)
			return v->u.o;
	}
	return root;
}

static int cmp_names(const void *a, const void *b)
{
	const struct weld_pickle_tensor *const *x = a, *const *y = b;

	return strcmp((*x)->name, (*y)->name);
}

static int check_unique(struct vm *vm, struct weld_pickle_result *r)
{
	const struct weld_pickle_tensor **v;
	int ret = 0;

	if (r->ntensors < 2)
		return 0;
	if (reserve(vm, r->ntensors * sizeof(*v)) < 0)
		return -1;
	v = malloc(r->ntensors * sizeof(*v));
	if (!v)
		return fail_nomem(vm);
	for (size_t i = 0; i < r->ntensors; i++)
		v[i] = &r->tensors[i];
	qsort(v, r->ntensors, sizeof(*v), cmp_names);
	for (size_t i = 1; i < r->ntensors; i++) {
		if (!strcmp(v[i - 1]->name, v[i]->name)) {
			ret = fail(vm, "tensor '%s' appears twice in the state dict", v[i]->name);
			break;
		}
	}
	free(v);
	return ret;
}

static int export_storages(struct vm *vm, struct weld_pickle_result *r)
{
	if (!vm->nstorages)
		return 0;
	r->storages = calloc(vm->nstorages, sizeof(*r->storages));
	if (!r->storages)
		return fail_nomem(vm);
	r->nstorages = vm->nstorages;
	for (size_t i = 0; i < vm->nstorages; i++) {
		const struct pstorage *s = &vm->storages[i];
		struct weld_pickle_storage *o = &r->storages[i];

		o->key = strdup(s->text);
		if (!o->key)
			return fail_nomem(vm);
		o->dtype = s->dtype;
		o->nbytes = s->nbytes;
		o->used = s->used;
	}
	return 0;
}

/* ---------------------------------------------------------------- API */

int weld_pickle_load(const unsigned char *buf, size_t len,
		     struct weld_pickle_result *out, struct weld_error *err)
{
	struct vm vm = { 0 };
	struct collect *c = NULL;
	struct pval root = { .type = P_NONE };
	int ret = -1;

	memset(out, 0, sizeof(*out));
	vm.start = vm.p = buf;
	vm.end = buf + len;
	vm.err = err;
	vm.budget = len > (SIZE_MAX - BUDGET_BASE) / BUDGET_PER_BYTE ? SIZE_MAX
		: BUDGET_BASE + BUDGET_PER_BYTE * len;
	if (run(&vm, &root) < 0)
		goto out;
	if (root.type != P_DICT) {
		fail(&vm, "the pickle holds a %s, not a dict of tensors", vtype(&root));
		goto out;
	}
	c = calloc(1, sizeof(*c));
	if (!c) {
		fail_nomem(&vm);
		goto out;
	}
	c->out = out;
	if (collect_dict(&vm, c, weights_dict(root.u.o), 0, 0) < 0 ||
	    check_unique(&vm, out) < 0 || export_storages(&vm, out) < 0)
		goto out;
	ret = 0;
out:
	if (ret)
		weld_pickle_result_free(out);
	free(c);
	vm_free(&vm);
	return ret;
}

void weld_pickle_result_free(struct weld_pickle_result *r)
{
	if (!r)
		return;
	for (size_t i = 0; i < r->ntensors; i++)
		free(r->tensors[i].name);
	for (size_t i = 0; i < r->nstorages; i++)
		free(r->storages[i].key);
	free(r->tensors);
	free(r->storages);
	memset(r, 0, sizeof(*r));
}

/*
 * Legacy files open with the pickle of a magic number:
 * \x80 <proto> [\x95 <8-byte frame length>] \x8a \x0a <10 bytes LE>.
 */
bool weld_torch_legacy_probe(const unsigned char *head, size_t n)
{
	static const unsigned char magic[10] = {
		0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19
	};
	size_t i = 2;

	if (n < 2 || head[0] != 0x80 || head[1] < 2 || head[1] > 5)
		return false;
	if (n > i && head[i] == 0x95)
		i += 9;
	return n >= i + 12 && head[i] == 0x8a && head[i + 1] == 10 &&
	       !memcmp(head + i + 2, magic, sizeof(magic));
}
