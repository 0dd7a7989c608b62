/*
 * pickle_vm.h - the inside of the pickle machine, shared by pickle.c (the
 * stack, the memo, containers and the opcode loop) and pickle_globals.c
 * (the allow list: GLOBAL, persistent ids, REDUCE, BUILD). Nothing else
 * includes it: see pickle.h for the interpreter's interface.
 */
#ifndef WELD_PICKLE_VM_H
#define WELD_PICKLE_VM_H

#include "pickle.h"

struct weld_pickle {
	const unsigned char *start, *p, *end;
	size_t op_at;           /* offset of the current opcode */
	struct weld_pval *stack;
	size_t sp, stack_cap;
	size_t *marks;
	size_t nmarks, marks_cap;
	struct weld_pval *memo;
	size_t memo_len, memo_cap;
	struct weld_pobj *objs;
	struct weld_pstorage *storages;
	size_t nstorages, storages_cap;
	size_t *shash;          /* open addressing: storage index + 1, 0 = empty */
	size_t shash_cap;
	size_t used, budget;
	struct weld_pval root;
	struct weld_error *err;
};

/* pickle.c: errors, memory and the stack; each failure fills vm->err and
 * returns -1 (NULL for weld_pk_new_obj and weld_pk_top). */
int weld_pk_fail(struct weld_pickle *vm, const char *fmt, ...) WELD_PRINTF(2, 3);
int weld_pk_nomem(struct weld_pickle *vm);
int weld_pk_reserve(struct weld_pickle *vm, size_t n);
struct weld_pobj *weld_pk_new_obj(struct weld_pickle *vm, unsigned char type, size_t extra);
/* Grow *arr (of elem-byte items, *cap allocated) to hold at least want. */
int weld_pk_grow(struct weld_pickle *vm, void **arr, size_t *cap, size_t want, size_t elem);
int weld_pk_push(struct weld_pickle *vm, struct weld_pval v);
/* Push o as a value of that type; o NULL (a failed allocation) fails. */
int weld_pk_push_obj(struct weld_pickle *vm, unsigned char type, struct weld_pobj *o);
int weld_pk_push_int(struct weld_pickle *vm, unsigned char type, int64_t i);
int weld_pk_pop(struct weld_pickle *vm, struct weld_pval *out, const char *op);
/* The value on top of the stack, or NULL (with err set) if there is none. */
struct weld_pval *weld_pk_top(struct weld_pickle *vm, const char *op);

/* pickle_globals.c: the opcodes that reach the allow list. */
int weld_pk_op_global(struct weld_pickle *vm);         /* GLOBAL */
int weld_pk_op_stack_global(struct weld_pickle *vm);   /* STACK_GLOBAL */
int weld_pk_op_persid(struct weld_pickle *vm);         /* BINPERSID */
int weld_pk_op_reduce(struct weld_pickle *vm);         /* REDUCE */
int weld_pk_op_build(struct weld_pickle *vm);          /* BUILD */

#endif
