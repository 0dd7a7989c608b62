/*
 * pickle.h - a pickle interpreter that executes nothing: the machine
 * (pickle.c) and the globals it allows (pickle_globals.c).
 *
 * What the interpreter accepts (everything else is refused, naming the
 * opcode or the global):
 *  - the opcodes torch.save() emits with protocol 2, plus those of protocols
 *    3-5 a state dict can contain (FRAME, MEMOIZE, SHORT_BINUNICODE,
 *    BINUNICODE8, STACK_GLOBAL, the BINBYTES family);
 *  - the globals collections.OrderedDict, torch._utils._rebuild_tensor_v2,
 *    torch._utils._rebuild_tensor_v3, torch._utils._rebuild_parameter, the
 *    typed storage classes torch.{Double,Float,Half,BFloat16,Long,Int,Short,
 *    Char,Byte,Bool}Storage, torch(.storage).UntypedStorage (bytes, used
 *    with _rebuild_tensor_v3) and the torch dtypes _rebuild_tensor_v3 names
 *    (torch.storage._TypedStorage/TypedStorage never appear in a zip
 *    checkpoint's persistent ids, which name the classes above, so they
 *    are refused like any other global);
 *  - persistent ids ('storage', <storage class>, '<decimal key>', location,
 *    numel); the location is ignored.
 *
 * A run leaves the values the pickle built: the root (the one value STOP
 * finds on the stack) and what it reaches: strings, containers, and the
 * tensors the rebuild functions "made", each only a record of the
 * arguments they were called with; plus the storages the persistent ids
 * named. The arguments' types are checked, their meaning is not: whether
 * a tensor's view fits its storage is the caller's to check (state_dict.c).
 * Every object is counted against a byte budget proportional to the input,
 * which the caller may draw on too (weld_pickle_reserve()).
 */
#ifndef WELD_PICKLE_H
#define WELD_PICKLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base.h"

enum weld_ptype {
	WELD_P_NONE, WELD_P_BOOL, WELD_P_INT, WELD_P_FLOAT, WELD_P_STR, WELD_P_BYTES,
	WELD_P_TUPLE, WELD_P_LIST, WELD_P_DICT, WELD_P_GLOBAL, WELD_P_STORAGE, WELD_P_TENSOR
};

struct weld_pobj;

/* A value on the stack, in the memo or inside a container. */
struct weld_pval {
	unsigned char type;     /* enum weld_ptype */
	union {
		int64_t i;      /* BOOL, INT; GLOBAL: a row of pickle_globals.c's table */
		double f;
		size_t storage; /* STORAGE: index in the run's storages */
		struct weld_pobj *o; /* STR, BYTES, TUPLE, LIST, DICT, TENSOR */
	} u;
};

/* What _rebuild_tensor_v2/v3 was called with: a view, not checked yet. */
struct weld_ptensor {
	size_t storage;         /* index in the run's storages */
	enum weld_dtype dtype;
	unsigned esize;
	int ndim;               /* may exceed WELD_MAX_DIMS: refused by name later */
	int64_t offset;         /* storage_offset, in elements */
	int64_t shape[WELD_MAX_DIMS];
	int64_t stride[WELD_MAX_DIMS];
};

/*
 * Heap object; `len` counts bytes (strings) or values (containers; a dict
 * holds key, value, key, value...). Tuples and strings are allocated with
 * their contents; lists and dicts grow `items` separately.
 */
struct weld_pobj {
	struct weld_pobj *next;
	unsigned char type;
	bool visited;           /* false after a run: free for the caller's walk */
	size_t len, cap;
	union {
		char *s;        /* NUL-terminated (len bytes before the NUL) */
		struct weld_pval *items;
		struct weld_ptensor *t;
	} u;
};

/* A storage named by a persistent id. */
struct weld_pstorage {
	uint64_t key;
	char text[24];          /* the key as written: canonical decimal */
	enum weld_dtype dtype;
	unsigned esize;         /* of the storage class; 1 when untyped */
	bool untyped;
	uint64_t nbytes;        /* numel x esize, checked */
};

/* A machine that ran a pickle: it owns every value the run built. */
struct weld_pickle;

/*
 * Run the pickle buf[0..len) until STOP. On success *out is the machine
 * (free with weld_pickle_free()); on failure it is NULL and err is filled
 * (WELD_ERR_FORMAT or WELD_ERR_NOMEM; the message names the opcode and its
 * byte offset, not the file: the caller adds it).
 */
int weld_pickle_run(const unsigned char *buf, size_t len, struct weld_pickle **out,
		    struct weld_error *err);
/* The value STOP left (borrowed from pk). */
struct weld_pval weld_pickle_root(const struct weld_pickle *pk);
size_t weld_pickle_storage_count(const struct weld_pickle *pk);
const struct weld_pstorage *weld_pickle_storage(const struct weld_pickle *pk, size_t i);
/* Count n more bytes against the run's budget; fails (WELD_ERR_FORMAT,
 * "more than its size justifies") when the input cannot justify them. */
int weld_pickle_reserve(struct weld_pickle *pk, size_t n, struct weld_error *err);
/* "None", "int", "dict", ... for messages. */
const char *weld_pickle_type_name(const struct weld_pval *v);
void weld_pickle_free(struct weld_pickle *pk);

#endif
