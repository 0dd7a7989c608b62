/*
 * gguf_impl.h - the GGUF reader's inside, shared by gguf_kv.c (the
 * cursor over a file's header and its key/value pairs) and gguf.c (the
 * tensor infos, the data layout, split sets).
 */
#ifndef WELD_GGUF_IMPL_H
#define WELD_GGUF_IMPL_H

#include "gguf.h"

#define GGUF_MAX_NAME 63                /* GGML_MAX_NAME - 1 */
#define GGUF_MAX_DIMS 4
#define CUR_BUF (1u << 16)

/* A buffered cursor over the header; every read is bounded by the file. */
struct cur {
	int fd;
	const char *path;
	uint64_t size, pos;
	uint64_t boff;          /* file offset of buf[0] */
	size_t blen;
	struct weld_error *err;
	char where[160];        /* "key 'general.name'", for messages */
	unsigned char buf[CUR_BUF];
};

/* What a key tells the parser beyond its text. */
struct header {
	uint32_t version, alignment;
	int64_t n_tensors, n_kv;
	bool split;                     /* split.count present */
	uint32_t split_no, split_count;
	int64_t split_tensors;
	char **xxh3;                    /* weld.xxh3 strings, in tensor order */
	uint64_t nxxh3;
};

/* n bytes, a u32, a u64, a string (a new NUL-terminated copy, *lenp its
 * length) at the cursor; a read past the end of the file fails naming
 * c->where and the field. */
int weld_gguf_take(struct cur *c, void *dst, uint64_t n, const char *field);
int weld_gguf_take_u32(struct cur *c, uint32_t *v, const char *field);
int weld_gguf_take_u64(struct cur *c, uint64_t *v, const char *field);
int weld_gguf_take_string(struct cur *c, char **out, uint64_t *lenp, const char *field);

/* Magic, version and the two counts, checked, into h. */
int weld_gguf_parse_start(struct cur *c, struct header *h);
/* Every key/value pair, checked: shown as text into the model's metadata
 * when m is not NULL, their stored bytes into kv[] when kv is not NULL. */
int weld_gguf_parse_kvs(struct cur *c, struct header *h, weld_model *m, struct weld_gguf_kv *kv);
void weld_gguf_header_free(struct header *h);

#endif
