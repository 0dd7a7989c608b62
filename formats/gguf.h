/*
 * gguf.h - what the GGUF writer (and tests) take from a GGUF file beyond
 * its tensors: the metadata key/value pairs as stored, for copying
 * verbatim into an output. The reader itself is a row of the format table
 * (format.h, weld_gguf_format).
 */
#ifndef WELD_GGUF_H
#define WELD_GGUF_H

#include "model.h"

/* GGUF value types (the spec's gguf_type). */
enum weld_gguf_vtype {
	WELD_GGUF_U8, WELD_GGUF_I8, WELD_GGUF_U16, WELD_GGUF_I16, WELD_GGUF_U32,
	WELD_GGUF_I32, WELD_GGUF_F32, WELD_GGUF_BOOL, WELD_GGUF_STRING, WELD_GGUF_ARRAY,
	WELD_GGUF_U64, WELD_GGUF_I64, WELD_GGUF_F64, WELD_GGUF_VTYPE_COUNT
};

/* Default and written alignment of tensor data. */
#define WELD_GGUF_ALIGNMENT 32

struct weld_gguf_kv {
	char *key;
	uint32_t type;          /* enum weld_gguf_vtype */
	unsigned char *value;   /* the value's bytes as stored, after its type */
	size_t len;
};

/* The key/value pairs of the GGUF file at path, in file order, checked as
 * the reader checks them. Free with weld_gguf_kvs_free(). */
int weld_gguf_read_kvs(const char *path, struct weld_gguf_kv **kv, size_t *n,
		       struct weld_error *err);
void weld_gguf_kvs_free(struct weld_gguf_kv *kv, size_t n);

/* The ggml type a tensor is stored in, as a GGUF file records it: its
 * block type when quantised (t->quant), else the type of its dtype; -1 for
 * a dtype GGUF cannot hold. */
int weld_gguf_tensor_type(const struct weld_tensor_info *t);

#endif
