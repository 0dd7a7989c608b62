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

/* The ggml type the GGUF writer stores a tensor in (DESIGN 6.1): base is
 * the base's tensor of that name (or NULL), dtype what the merge writes,
 * requested a ggml type asked for (--dtype) or -1 for auto. Tensors of one
 * dimension stay F32 when a type is asked for, and any tensor whose rows
 * are not whole blocks; auto keeps the base's type when weld encodes it
 * (F32 F16 BF16 Q8_0 Q4_0) and gives F16 otherwise. -1: a dtype GGUF
 * cannot hold. */
int weld_gguf_store_type(const struct weld_tensor_info *base, enum weld_dtype dtype,
			 int requested, int ndim, uint64_t ne0);

/* The GGUF writer behind weld_writer_open() when opts->gguf_base is set
 * (the same calling sequence, see model.h). */
struct weld_gguf_writer;
int weld_gguf_writer_open(struct weld_gguf_writer **w, const char *path,
			  const struct weld_out_tensor *t, size_t n,
			  const struct weld_writer_opts *opts, struct weld_error *err);
/* The files a GGUF output OUT of these tensors is written as, when opts
 * makes it a split set: *paths (n paths beside OUT, caller frees each and
 * the array); *n = 0 when the output is the one file OUT. */
int weld_gguf_set_paths(const char *out, const struct weld_out_tensor *t, size_t n,
			const struct weld_writer_opts *opts, char ***paths, size_t *np,
			struct weld_error *err);
int64_t weld_gguf_writer_find(struct weld_gguf_writer *w, const char *name);
int weld_gguf_writer_write(struct weld_gguf_writer *w, size_t i, const void *data, size_t len,
			   struct weld_error *err);
int weld_gguf_writer_commit(struct weld_gguf_writer *w, struct weld_error *err);
void weld_gguf_writer_close(struct weld_gguf_writer *w);

#endif
