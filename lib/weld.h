/*
 * weld.h - the public interface of weld's library: errors, dtypes, hashing,
 * the model reader, the model writer and the merge engine.
 *
 * Rules that hold for the whole interface:
 *  - the library never prints and never exits: every failure returns -1
 *    (or NULL) and fills a caller-provided struct weld_error;
 *  - strings returned by accessors are borrowed from their handle and stay
 *    valid until the handle is closed; buffers passed in are the caller's;
 *  - every close/free function accepts NULL.
 */
#ifndef WELD_H
#define WELD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WELD_VERSION "0.1.0"
#define WELD_MAX_DIMS 8

#if defined(__GNUC__)
#define WELD_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define WELD_PRINTF(f, a)
#endif

/* ---------------------------------------------------------------- errors */

enum weld_status {
	WELD_OK = 0,
	WELD_ERR_IO,          /* see sys_errno */
	WELD_ERR_FORMAT,      /* malformed or unsupported file */
	WELD_ERR_MISMATCH,    /* inputs disagree on names, shapes or dtypes */
	WELD_ERR_NOMEM,
	WELD_ERR_ARG,         /* invalid argument or parameter */
	WELD_ERR_EXISTS,      /* output exists and force was not given */
	WELD_ERR_INTERRUPTED, /* a signal asked us to stop */
};

struct weld_error {
	enum weld_status status;
	int sys_errno;  /* errno at the failure point, 0 if none */
	char msg[1024]; /* "'a/model.safetensors': tensor 'x': data_offsets: ..." */
};

/* Fill *err (may be NULL) and return -1, so that callers can write
 * `return weld_fail(err, WELD_ERR_FORMAT, "...")`. */
int weld_fail(struct weld_error *err, enum weld_status st, const char *fmt, ...)
	WELD_PRINTF(3, 4);
/* Same, with WELD_ERR_IO, errno saved and ": strerror(errno)" appended. */
int weld_fail_errno(struct weld_error *err, const char *fmt, ...) WELD_PRINTF(2, 3);

/* ---------------------------------------------------------------- dtypes */

enum weld_dtype {
	WELD_F64, WELD_F32, WELD_F16, WELD_BF16, WELD_F8_E4M3, WELD_F8_E5M2,
	WELD_I64, WELD_I32, WELD_I16, WELD_I8,
	WELD_U64, WELD_U32, WELD_U16, WELD_U8, WELD_BOOL,
	WELD_DTYPE_COUNT
};

const char *weld_dtype_name(enum weld_dtype t);    /* "BF16" */
int weld_dtype_parse(const char *s, enum weld_dtype *out); /* 0, or -1 unknown */
size_t weld_dtype_size(enum weld_dtype t);         /* bytes per element */
bool weld_dtype_is_float(enum weld_dtype t);       /* merged (F*) or copied */
/* Order of the safetensors reference writer: larger rank first. */
int weld_dtype_write_rank(enum weld_dtype t);

/* Element conversions. Decoding is exact (F64 rounds to nearest even);
 * encoding supports F64, F32, F16, BF16 with round-to-nearest-even, NaN kept
 * NaN and f16 overflow to +-inf. Neither touches the floating-point
 * environment; both are safe to call from several threads. */
void weld_decode_f32(enum weld_dtype t, const void *src, float *dst, size_t n);
int weld_encode_f32(enum weld_dtype t, const float *src, void *dst, size_t n);

float weld_bf16_to_f32(uint16_t h);
uint16_t weld_f32_to_bf16(float f);
float weld_f16_to_f32(uint16_t h);
uint16_t weld_f32_to_f16(float f);
float weld_e4m3_to_f32(uint8_t b);
float weld_e5m2_to_f32(uint8_t b);
float weld_f64_to_f32(double d);

/* ---------------------------------------------------------------- small utilities */

/* XXH3-64 of a buffer, as 16 lowercase hex digits in out[17]. */
uint64_t weld_xxh3(const void *p, size_t n);
void weld_hex64(uint64_t h, char out[17]);

/* Parse "5G", "512M", "1.5G", "1000", "2Gi" into bytes. K/M/G/T are decimal
 * (10^3...) like Hugging Face; Ki/Mi/Gi/Ti are binary. Returns 0 or -1. */
int weld_parse_size(const char *s, uint64_t *out);
/* "1.23 GB" style, decimal units. */
void weld_format_size(uint64_t n, char *buf, size_t len);

/* ---------------------------------------------------------------- model reader */

/*
 * A weld_model is one checkpoint: a folder (safetensors, sharded or not, or
 * a PyTorch .bin set) or a single file, detected by content. Opening parses
 * and validates every header; tensor data is read later with pread, never
 * mapped or loaded whole. Reading is thread-safe: several threads may call
 * weld_model_read*() on one model at once.
 */
typedef struct weld_model weld_model;

struct weld_tensor_info {
	const char *name;       /* borrowed */
	enum weld_dtype dtype;
	int ndim;
	int64_t shape[WELD_MAX_DIMS];
	uint64_t nelem;         /* product of shape, checked */
	uint64_t nbytes;        /* nelem * dtype size, checked */
	int file;               /* index of the file holding the data */
	uint64_t offset;        /* absolute file offset of element 0 */
	int64_t stride[WELD_MAX_DIMS]; /* in elements */
	bool contiguous;        /* C order, no gaps */
};

int weld_model_open(weld_model **out, const char *path, struct weld_error *err);
void weld_model_close(weld_model *m);

size_t weld_model_count(const weld_model *m);
const struct weld_tensor_info *weld_model_tensor(const weld_model *m, size_t i);
/* Index of the tensor called name, or -1. */
int64_t weld_model_find(const weld_model *m, const char *name);
const char *weld_model_path(const weld_model *m);   /* as given */
/* Folder holding config.json & co (the path itself, or a file's folder). */
const char *weld_model_dir(const weld_model *m);
const char *weld_model_format(const weld_model *m); /* "safetensors", "pytorch" */
size_t weld_model_file_count(const weld_model *m);
const char *weld_model_file_path(const weld_model *m, size_t file);
/* A __metadata__ value of the safetensors files (the first file that has
 * the key wins), or NULL. */
const char *weld_model_metadata(const weld_model *m, const char *key);
/* The same for one file of the model. */
const char *weld_model_file_metadata(const weld_model *m, size_t file, const char *key);

/* Copy the raw little-endian bytes of elements [first, first + n) of tensor
 * i, packed, into dst (n * dtype size bytes). */
int weld_model_read(const weld_model *m, size_t i, uint64_t first, size_t n,
		    void *dst, struct weld_error *err);
/* Same, decoded to float32; integer dtypes are refused. scratch, if not
 * NULL, must hold n * dtype size bytes (else the call allocates). */
int weld_model_read_f32(const weld_model *m, size_t i, uint64_t first, size_t n,
			float *dst, void *scratch, struct weld_error *err);

/* XXH3-64 of tensor i's packed bytes (what a weld output records). */
int weld_model_hash(const weld_model *m, size_t i, uint64_t *out, struct weld_error *err);

/* Element-wise comparison of two float tensors of the same size. */
struct weld_diff {
	double max_abs;     /* largest |a - b| (NaN if either holds a NaN there) */
	double rms;         /* sqrt(mean((a - b)^2)) */
	double cosine;      /* a.b / (|a| |b|); 1 if both are zero, 0 if one is */
	uint64_t n_diff;    /* elements whose bits differ after decoding */
};
int weld_model_compare(const weld_model *a, size_t ia, const weld_model *b, size_t ib,
		       struct weld_diff *out, struct weld_error *err);

/* ---------------------------------------------------------------- model writer */

/*
 * The writer lays out every shard and header before any data is written, so
 * that tensor data can then be written at known offsets in any tensor order,
 * from several threads (one thread per tensor at a time; within a tensor the
 * bytes must come in order, because the XXH3 of each tensor is computed as
 * it streams). Work happens in "<out>.weld-tmp-<pid>" beside the output;
 * weld_writer_commit() fills the final headers, fsyncs, and renames it into
 * place. weld_writer_close() without a commit removes the temporary folder.
 */
typedef struct weld_writer weld_writer;

struct weld_out_tensor {
	const char *name;       /* copied by the writer */
	enum weld_dtype dtype;
	int ndim;
	int64_t shape[WELD_MAX_DIMS];
};

struct weld_writer_opts {
	uint64_t shard_size;    /* largest shard in bytes; 0 = one file */
	bool force;             /* replace an existing output */
	const char *recipe_json;/* stored as __metadata__.weld_recipe, or NULL */
	const char *copy_from;  /* folder to copy config/tokenizer files from, or NULL */
	const char *torch_dtype;/* torch_dtype to set in the copied config.json, or NULL */
	/* If set, called on the parsed config.json before it is written (e.g. to
	 * change num_local_experts); return -1 and fill err to fail. */
	int (*edit_config)(void *ctx, void *cjson_root, struct weld_error *err);
	void *edit_config_ctx;
	/* Write one .safetensors file at `dir` instead of a folder (no index,
	 * no side files); shard_size is ignored. */
	bool single_file;
	/* Extra file to write in the output folder (name, contents), or NULL. */
	const char *extra_name;
	const char *extra_data;
};

int weld_writer_open(weld_writer **out, const char *dir,
		     const struct weld_out_tensor *t, size_t n,
		     const struct weld_writer_opts *opts, struct weld_error *err);
/* Index of a tensor in the writer, by name, or -1. */
int64_t weld_writer_find(const weld_writer *w, const char *name);
/* Append len bytes to tensor i (its bytes so far + len must not exceed its size). */
int weld_writer_write(weld_writer *w, size_t i, const void *data, size_t len,
		      struct weld_error *err);
int weld_writer_commit(weld_writer *w, struct weld_error *err);
void weld_writer_close(weld_writer *w);
/* Number of shards the layout uses. */
size_t weld_writer_shards(const weld_writer *w);

/* Async-signal-safe: remove the temporary folder of every writer that is
 * open. Meant for SIGINT/SIGTERM handlers. */
void weld_writer_cleanup_on_signal(void);

#include "merge.h"

#endif
