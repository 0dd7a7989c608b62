/*
 * gguf_writer_impl.h - the GGUF writer's inside, shared by gguf_writer.c
 * (layout, data, commit) and gguf_header.c (the ggml types of stored
 * tensors and the bytes of each file's header).
 */
#ifndef WELD_GGUF_WRITER_IMPL_H
#define WELD_GGUF_WRITER_IMPL_H

#include "gguf.h"
#include "name_table.h"
#include "output_dir.h"

#include <xxhash.h>

struct gtensor {
	char *name;
	enum weld_dtype dtype;          /* what writes bring */
	uint32_t type;                  /* what is stored */
	int ndim;
	uint64_t ne[WELD_MAX_DIMS];     /* GGUF order */
	uint64_t nelem, nbytes, offset; /* offset from its file's data start */
	size_t file;                    /* its file in a split set, else 0 */
	uint64_t in_done;               /* elements received */
	uint64_t out_done;              /* bytes stored */
	float pend[256];                /* elements of a partial block */
	size_t npend;
	XXH3_state_t *xxh;
	uint64_t hash;
	int64_t base_pos;               /* position in the base's file order */
};

struct gfile {
	char *name, *path, *label;      /* in the set, in content, in messages */
	int fd;
	size_t first, count;            /* its tensors in t */
	uint64_t header_len, data_start, total;
};

struct weld_gguf_writer {
	struct weld_outdir dir;
	const char *out;
	struct gfile *f;
	size_t nf;
	bool split;                     /* a set, with split.* keys */
	struct gtensor *t;
	size_t n;
	struct weld_name_table names;   /* name -> index in t, for find */
	struct weld_gguf_kv *kv;        /* the base's pairs */
	size_t nkv;
	char *recipe;
	uint32_t file_type;
	bool quantised;
};

/* Header bytes: written to p, or only counted when p is NULL. */
struct gguf_out {
	unsigned char *p;
	uint64_t len;
};

/* The ggml type of a dtype written as is, or -1. */
int weld_gguf_dtype_type(enum weld_dtype d);
/* llama.cpp's llama_ftype for the commonest stored type of the n tensors
 * t of two or more dimensions. */
uint32_t weld_gguf_file_type(const struct gtensor *t, size_t n);
/* The header of file `file` of w into o; final: with the tensors'
 * hashes (zeros before, of the same length). */
void weld_gguf_header(const struct weld_gguf_writer *w, size_t file, struct gguf_out *o,
		      bool final);

#endif
