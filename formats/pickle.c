/*
 * pickle.c - the machine that runs a torch.save() data.pkl without
 * executing anything: the stack, the memo, containers and the opcode loop.
 * What the allow-listed globals do is pickle_globals.c's.
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
 * justifies, and no code here recurses over objects.
 */
#include "pickle_vm.h"

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
/*
 * Byte budget: fixed part plus this many bytes per input byte (a state
 * dict's objects take about 6 bytes per pickle byte).
 */
#define BUDGET_BASE (16u << 20)
#define BUDGET_PER_BYTE 24u

static const char *const type_names[] = {
	"None", "bool", "int", "float", "str", "bytes", "tuple", "list", "dict",
	"global", "storage", "tensor"
};

/* ---------------------------------------------------------------- errors */

int weld_pk_fail(struct weld_pickle *vm, const char *fmt, ...)
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

int weld_pk_nomem(struct weld_pickle *vm)
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

const char *weld_pickle_type_name(const struct weld_pval *v)
{
	return type_names[v->type];
}

/* ---------------------------------------------------------------- memory */

/* Count n bytes against the budget; fail if the input cannot justify them. */
int weld_pk_reserve(struct weld_pickle *vm, size_t n)
{
	if (n > vm->budget - vm->used)
		return weld_pk_fail(vm, "the pickle needs more than %zu bytes of memory, more "
				    "than its size justifies", vm->budget);
	vm->used += n;
	return 0;
}

struct weld_pobj *weld_pk_new_obj(struct weld_pickle *vm, unsigned char type, size_t extra)
{
	struct weld_pobj *o;

	if (extra > SIZE_MAX - sizeof(*o) || weld_pk_reserve(vm, sizeof(*o) + extra) < 0)
		return NULL;
	o = calloc(1, sizeof(*o) + extra);
	if (!o) {
		weld_pk_nomem(vm);
		return NULL;
	}
	o->type = type;
	o->next = vm->objs;
	vm->objs = o;
	return o;
}

/* Grow *arr (of elem-byte items, *cap allocated) to hold at least want. */
int weld_pk_grow(struct weld_pickle *vm, void **arr, size_t *cap, size_t want, size_t elem)
{
	size_t ncap = *cap ? *cap : 8;
	void *p;

	if (want <= *cap)
		return 0;
	while (ncap < want) {
		if (ncap > SIZE_MAX / 2 / elem)
			return weld_pk_nomem(vm);
		ncap *= 2;
	}
	if (weld_pk_reserve(vm, (ncap - *cap) * elem) < 0)
		return -1;
	p = realloc(*arr, ncap * elem);
	if (!p)
		return weld_pk_nomem(vm);
	*arr = p;
	*cap = ncap;
	return 0;
}

static void vm_free(struct weld_pickle *vm)
{
	struct weld_pobj *o = vm->objs, *next;

	for (; o; o = next) {
		next = o->next;
		if (o->type == WELD_P_LIST || o->type == WELD_P_DICT)
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

static size_t floor_of(const struct weld_pickle *vm)
{
	return vm->nmarks ? vm->marks[vm->nmarks - 1] : 0;
}

int weld_pk_push(struct weld_pickle *vm, struct weld_pval v)
{
	if (vm->sp >= MAX_STACK)
		return weld_pk_fail(vm, "stack deeper than %d values at byte %zu", MAX_STACK,
				    vm->op_at);
	if (weld_pk_grow(vm, (void **)&vm->stack, &vm->stack_cap, vm->sp + 1,
			 sizeof(*vm->stack)) < 0)
		return -1;
	vm->stack[vm->sp++] = v;
	return 0;
}

int weld_pk_push_obj(struct weld_pickle *vm, unsigned char type, struct weld_pobj *o)
{
	struct weld_pval v = { .type = type };

	if (!o)
		return -1;
	v.u.o = o;
	return weld_pk_push(vm, v);
}

int weld_pk_push_int(struct weld_pickle *vm, unsigned char type, int64_t i)
{
	struct weld_pval v = { .type = type };

	v.u.i = i;
	return weld_pk_push(vm, v);
}

int weld_pk_pop(struct weld_pickle *vm, struct weld_pval *out, const char *op)
{
	if (vm->sp <= floor_of(vm))
		return weld_pk_fail(vm, "%s at byte %zu: stack is empty", op, vm->op_at);
	*out = vm->stack[--vm->sp];
	return 0;
}

/* The value on top of the stack, or NULL (with err set) if there is none. */
struct weld_pval *weld_pk_top(struct weld_pickle *vm, const char *op)
{
	if (vm->sp <= floor_of(vm)) {
		weld_pk_fail(vm, "%s at byte %zu: stack is empty", op, vm->op_at);
		return NULL;
	}
	return &vm->stack[vm->sp - 1];
}

/* Pop the innermost mark; *start is where the marked values begin. */
static int pop_mark(struct weld_pickle *vm, size_t *start, const char *op)
{
	if (!vm->nmarks)
		return weld_pk_fail(vm, "%s at byte %zu: no MARK to match", op, vm->op_at);
	*start = vm->marks[--vm->nmarks];
	return 0;
}

/* ---------------------------------------------------------------- operands */

static int need(struct weld_pickle *vm, size_t n, int op)
{
	if ((size_t)(vm->end - vm->p) < n)
		return weld_pk_fail(vm, "pickle is truncated: %s at byte %zu needs %zu bytes, "
				    "%zu left", op_name(op), vm->op_at, n,
				    (size_t)(vm->end - vm->p));
	return 0;
}

static uint64_t read_le(struct weld_pickle *vm, size_t n)
{
	uint64_t v = 0;

	for (size_t i = 0; i < n; i++)
		v |= (uint64_t)vm->p[i] << (8 * i);
	vm->p += n;
	return v;
}

/* A little-endian two's complement integer of n <= 8 bytes (LONG1/LONG4). */
static int op_long(struct weld_pickle *vm, int op, size_t lenbytes)
{
	uint64_t n, v;

	if (need(vm, lenbytes, op) < 0)
		return -1;
	n = read_le(vm, lenbytes);
	if (lenbytes == 4 && n > INT32_MAX)
		return weld_pk_fail(vm, "%s at byte %zu: negative length", op_name(op),
				    vm->op_at);
	if (n > 8)
		return weld_pk_fail(vm, "%s at byte %zu: integer of %llu bytes is too large",
				    op_name(op), vm->op_at, (unsigned long long)n);
	if (need(vm, (size_t)n, op) < 0)
		return -1;
	v = read_le(vm, (size_t)n);
	if (n > 0 && n < 8 && (v >> (8 * n - 1)) & 1)
		v |= ~(uint64_t)0 << (8 * n);  /* sign-extend */
	return weld_pk_push_int(vm, WELD_P_INT, (int64_t)v);
}

/* A string or bytes of n bytes following the opcode; n checked first. */
static int op_string(struct weld_pickle *vm, int op, size_t lenbytes, unsigned char type)
{
	uint64_t n;
	struct weld_pobj *o;

	if (need(vm, lenbytes, op) < 0)
		return -1;
	n = read_le(vm, lenbytes);
	if (op == 'T' && n > INT32_MAX)
		return weld_pk_fail(vm, "%s at byte %zu: negative length", op_name(op),
				    vm->op_at);
	if (need(vm, n, op) < 0)
		return -1;
	o = weld_pk_new_obj(vm, type, (size_t)n + 1);
	if (!o)
		return -1;
	o->u.s = (char *)(o + 1);
	memcpy(o->u.s, vm->p, (size_t)n);
	o->u.s[n] = '\0';
	o->len = (size_t)n;
	vm->p += n;
	return weld_pk_push_obj(vm, type, o);
}

/* ---------------------------------------------------------------- memo */

static int memo_put(struct weld_pickle *vm, uint64_t idx, int op)
{
	struct weld_pval *v = weld_pk_top(vm, op_name(op));

	if (!v)
		return -1;
	/*
	 * Picklers number memo slots 0, 1, 2...; refusing gaps keeps the memo
	 * no larger than the number of PUTs the input holds.
	 */
	if (idx > vm->memo_len)
		return weld_pk_fail(vm, "memo index %llu at byte %zu skips ahead of the %zu "
				    "stored objects", (unsigned long long)idx, vm->op_at,
				    vm->memo_len);
	if (idx == vm->memo_len) {
		if (weld_pk_grow(vm, (void **)&vm->memo, &vm->memo_cap, vm->memo_len + 1,
			 sizeof(*vm->memo)) < 0)
			return -1;
		vm->memo_len++;
	}
	vm->memo[idx] = *v;
	return 0;
}

static int memo_get(struct weld_pickle *vm, uint64_t idx)
{
	if (idx >= vm->memo_len)
		return weld_pk_fail(vm, "memo index %llu at byte %zu is not set (the memo "
				    "holds %zu objects)", (unsigned long long)idx, vm->op_at,
				    vm->memo_len);
	return weld_pk_push(vm, vm->memo[idx]);
}

/* ---------------------------------------------------------------- containers */

static int make_tuple(struct weld_pickle *vm, size_t start)
{
	size_t n = vm->sp - start;
	struct weld_pobj *o;

	if (n > SIZE_MAX / sizeof(struct weld_pval))
		return weld_pk_nomem(vm);
	o = weld_pk_new_obj(vm, WELD_P_TUPLE, n * sizeof(struct weld_pval));
	if (!o)
		return -1;
	o->u.items = (struct weld_pval *)(o + 1);
	o->len = n;
	if (n)
		memcpy(o->u.items, &vm->stack[start], n * sizeof(struct weld_pval));
	vm->sp = start;
	return weld_pk_push_obj(vm, WELD_P_TUPLE, o);
}

/* TUPLE1..3: the n values on top of the stack. */
static int op_tuple_n(struct weld_pickle *vm, size_t n, const char *op)
{
	if (vm->sp - floor_of(vm) < n)
		return weld_pk_fail(vm, "%s at byte %zu: stack holds fewer than %zu values", op,
				    vm->op_at, n);
	return make_tuple(vm, vm->sp - n);
}

static int append_values(struct weld_pickle *vm, struct weld_pobj *o,
			 const struct weld_pval *v, size_t n)
{
	if (!n)
		return 0;
	if (weld_pk_grow(vm, (void **)&o->u.items, &o->cap, o->len + n,
			 sizeof(struct weld_pval)) < 0)
		return -1;
	memcpy(o->u.items + o->len, v, n * sizeof(struct weld_pval));
	o->len += n;
	return 0;
}

/*
 * SETITEM, SETITEMS, APPEND, APPENDS: values[start, sp) go into the
 * container just below them.
 */
static int fill_container(struct weld_pickle *vm, size_t start, unsigned char type,
			  const char *op)
{
	struct weld_pval *c;
	size_t n = vm->sp - start;

	if (start <= floor_of(vm))
		return weld_pk_fail(vm, "%s at byte %zu: no container on the stack", op,
				    vm->op_at);
	c = &vm->stack[start - 1];
	if (c->type != type)
		return weld_pk_fail(vm, "%s at byte %zu on a %s: only a %s can take items", op,
				    vm->op_at, weld_pickle_type_name(c), type_names[type]);
	if (type == WELD_P_DICT && n % 2)
		return weld_pk_fail(vm, "%s at byte %zu: odd number of values for key/value "
				    "pairs", op, vm->op_at);
	if (append_values(vm, c->u.o, &vm->stack[start], n) < 0)
		return -1;
	vm->sp = start;
	return 0;
}

static int op_fill(struct weld_pickle *vm, int op)
{
	size_t start = 0;
	unsigned char type = (op == 's' || op == 'u') ? WELD_P_DICT : WELD_P_LIST;

	if (op == 's' || op == 'a') {
		size_t need_n = op == 's' ? 2 : 1;

		if (vm->sp - floor_of(vm) < need_n)
			return weld_pk_fail(vm, "%s at byte %zu: stack holds fewer than %zu "
					    "values", op_name(op), vm->op_at, need_n);
		start = vm->sp - need_n;
	} else if (pop_mark(vm, &start, op_name(op)) < 0) {
		return -1;
	}
	return fill_container(vm, start, type, op_name(op));
}

/* ---------------------------------------------------------------- the loop */

static int refuse(struct weld_pickle *vm, int op)
{
	const char *name = op_name(op);

	if (name)
		return weld_pk_fail(vm, "opcode %s (0x%02x) at byte %zu is not allowed", name,
				    op, vm->op_at);
	return weld_pk_fail(vm, "unknown opcode 0x%02x at byte %zu", op, vm->op_at);
}

/* PROTO, FRAME, STOP: the framing of the pickle. */
static int op_proto(struct weld_pickle *vm)
{
	if (need(vm, 1, 0x80) < 0)
		return -1;
	if (*vm->p < 2 || *vm->p > 5)
		return weld_pk_fail(vm, "pickle protocol %d is not supported", *vm->p);
	vm->p++;
	return 0;
}

/* FRAME only groups opcodes: its length is checked, then ignored. */
static int op_frame(struct weld_pickle *vm)
{
	if (need(vm, 8, 0x95) < 0)
		return -1;
	if (read_le(vm, 8) > (uint64_t)(vm->end - vm->p))
		return weld_pk_fail(vm, "pickle is truncated: FRAME at byte %zu is longer "
				    "than the rest of the file", vm->op_at);
	return 0;
}

static int op_stop(struct weld_pickle *vm)
{
	if (vm->nmarks || vm->sp != 1)
		return weld_pk_fail(vm, "STOP at byte %zu with %zu values and %zu marks "
				    "on the stack", vm->op_at, vm->sp, vm->nmarks);
	if (vm->p != vm->end)
		return weld_pk_fail(vm, "%zu bytes after STOP", (size_t)(vm->end - vm->p));
	vm->root = vm->stack[0];
	return 0;
}

static int op_mark(struct weld_pickle *vm)
{
	if (vm->nmarks >= MAX_MARKS)
		return weld_pk_fail(vm, "more than %d nested MARKs at byte %zu", MAX_MARKS,
				    vm->op_at);
	if (weld_pk_grow(vm, (void **)&vm->marks, &vm->marks_cap, vm->nmarks + 1,
			 sizeof(*vm->marks)) < 0)
		return -1;
	vm->marks[vm->nmarks++] = vm->sp;
	return 0;
}

/* BINFLOAT: a big-endian double. */
static int op_binfloat(struct weld_pickle *vm)
{
	struct weld_pval v = { .type = WELD_P_FLOAT };
	uint64_t bits = 0;

	if (need(vm, 8, 'G') < 0)
		return -1;
	for (int i = 0; i < 8; i++)
		bits = bits << 8 | vm->p[i];
	vm->p += 8;
	memcpy(&v.u.f, &bits, sizeof(v.u.f));
	return weld_pk_push(vm, v);
}

/* The opcodes that push one value made of their operands; others are refused. */
static int op_value(struct weld_pickle *vm, int op)
{
	switch (op) {
	case 'N':
		return weld_pk_push_int(vm, WELD_P_NONE, 0);
	case 0x88: case 0x89: /* NEWTRUE, NEWFALSE */
		return weld_pk_push_int(vm, WELD_P_BOOL, op == 0x88);
	case 'K': case 'M': /* BININT1, BININT2 */
		if (need(vm, op == 'K' ? 1 : 2, op) < 0)
			return -1;
		return weld_pk_push_int(vm, WELD_P_INT, (int64_t)read_le(vm, op == 'K' ? 1 : 2));
	case 'J': /* BININT: signed 32 bits */
		if (need(vm, 4, op) < 0)
			return -1;
		return weld_pk_push_int(vm, WELD_P_INT, (int32_t)(uint32_t)read_le(vm, 4));
	case 0x8a: case 0x8b: /* LONG1, LONG4 */
		return op_long(vm, op, op == 0x8a ? 1 : 4);
	case 'G':
		return op_binfloat(vm);
	case 'X': case 'T':
		return op_string(vm, op, 4, WELD_P_STR);
	case 0x8c: case 'U': /* SHORT_BINUNICODE, SHORT_BINSTRING */
		return op_string(vm, op, 1, WELD_P_STR);
	case 0x8d: /* BINUNICODE8 */
		return op_string(vm, op, 8, WELD_P_STR);
	case 'C': case 'B': case 0x8e: /* SHORT_BINBYTES, BINBYTES, BINBYTES8 */
		return op_string(vm, op, op == 'C' ? 1 : op == 'B' ? 4 : 8, WELD_P_BYTES);
	case '}':
		return weld_pk_push_obj(vm, WELD_P_DICT, weld_pk_new_obj(vm, WELD_P_DICT, 0));
	case ']':
		return weld_pk_push_obj(vm, WELD_P_LIST, weld_pk_new_obj(vm, WELD_P_LIST, 0));
	case ')':
		return make_tuple(vm, vm->sp);
	default:
		return refuse(vm, op);
	}
}

/* One opcode but STOP: framing, marks, containers, the memo, the allow list. */
static int step(struct weld_pickle *vm, int op)
{
	size_t start = 0;

	switch (op) {
	case 0x80:
		return op_proto(vm);
	case 0x95:
		return op_frame(vm);
	case '(':
		return op_mark(vm);
	case '0': /* POP */
		if (vm->sp > floor_of(vm)) {
			vm->sp--;
			return 0;
		}
		return pop_mark(vm, &start, "POP");
	case '1': /* POP_MARK */
		if (pop_mark(vm, &start, "POP_MARK") < 0)
			return -1;
		vm->sp = start;
		return 0;
	case 't':
		if (pop_mark(vm, &start, "TUPLE") < 0)
			return -1;
		return make_tuple(vm, start);
	case 0x85: case 0x86: case 0x87: /* TUPLE1..3 */
		return op_tuple_n(vm, (size_t)(op - 0x84), op_name(op));
	case 's': case 'u': case 'a': case 'e':
		return op_fill(vm, op);
	case 'q': case 'r': /* BINPUT, LONG_BINPUT */
		if (need(vm, op == 'q' ? 1 : 4, op) < 0)
			return -1;
		return memo_put(vm, read_le(vm, op == 'q' ? 1 : 4), op);
	case 0x94: /* MEMOIZE */
		return memo_put(vm, vm->memo_len, op);
	case 'h': case 'j': /* BINGET, LONG_BINGET */
		if (need(vm, op == 'h' ? 1 : 4, op) < 0)
			return -1;
		return memo_get(vm, read_le(vm, op == 'h' ? 1 : 4));
	case 'c':
		return weld_pk_op_global(vm);
	case 0x93:
		return weld_pk_op_stack_global(vm);
	case 'R':
		return weld_pk_op_reduce(vm);
	case 'b':
		return weld_pk_op_build(vm);
	case 'Q':
		return weld_pk_op_persid(vm);
	default:
		return op_value(vm, op);
	}
}

/* Run until STOP; vm->root is then the single value left on the stack. */
static int run(struct weld_pickle *vm)
{
	while (vm->p < vm->end) {
		int op = *vm->p;

		vm->op_at = (size_t)(vm->p - vm->start);
		vm->p++;
		if (op == '.')
			return op_stop(vm);
		if (step(vm, op) < 0)
			return -1;
	}
	return weld_pk_fail(vm, "pickle is truncated: no STOP opcode");
}

/* ---------------------------------------------------------------- API */

int weld_pickle_run(const unsigned char *buf, size_t len, struct weld_pickle **out,
		    struct weld_error *err)
{
	struct weld_pickle *vm = calloc(1, sizeof(*vm));

	*out = NULL;
	if (!vm)
		return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	vm->start = vm->p = buf;
	vm->end = buf + len;
	vm->err = err;
	vm->root.type = WELD_P_NONE;
	vm->budget = len > (SIZE_MAX - BUDGET_BASE) / BUDGET_PER_BYTE ? SIZE_MAX
		: BUDGET_BASE + BUDGET_PER_BYTE * len;
	if (run(vm) < 0) {
		weld_pickle_free(vm);
		return -1;
	}
	*out = vm;
	return 0;
}

struct weld_pval weld_pickle_root(const struct weld_pickle *pk)
{
	return pk->root;
}

size_t weld_pickle_storage_count(const struct weld_pickle *pk)
{
	return pk->nstorages;
}

const struct weld_pstorage *weld_pickle_storage(const struct weld_pickle *pk, size_t i)
{
	return &pk->storages[i];
}

int weld_pickle_reserve(struct weld_pickle *pk, size_t n, struct weld_error *err)
{
	pk->err = err;
	return weld_pk_reserve(pk, n);
}

void weld_pickle_free(struct weld_pickle *pk)
{
	if (!pk)
		return;
	vm_free(pk);
	free(pk);
}
