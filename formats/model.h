/*
 * model.h - checkpoints on disk: the model reader (any supported format,
 * detected by content) and the model writer (a safetensors folder,
 * published atomically). Depends only on base.h.
 */
#ifndef WELD_MODEL_H
#define WELD_MODEL_H

#include "base.h"

/* The largest config.json weld reads (and copies into an output). */
#define WELD_CONFIG_MAX_BYTES (16u << 20)

/*
 * The most tensors weld reads from one file or writes to one shard: a bound
 * on what a header makes weld allocate (about 1 KB a tensor while it is
 * parsed). The largest real checkpoints hold some 10^5 tensors in all.
 */
#define WELD_MAX_TENSORS_PER_FILE (1u << 19)

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
	/* Non-zero: the data is stored in blocks of this ggml type (quant.h,
	 * a GGUF file) and dtype is F32, what reads deliver; nbytes counts
	 * the stored bytes. */
	uint8_t quant;
	/* Non-zero (enum weld_fp8_layout, fp8.h): F8_E4M3 values with their
	 * scale tensor `scale_name` (DESIGN 6.2); dtype is F32, what reads
	 * deliver (value times scale), nbytes counts the stored codes. The
	 * scale tensor is not listed among the model's tensors. */
	uint8_t scaled;
	enum weld_dtype scale_dtype;
	int64_t scale_block[2]; /* rows, columns one scale covers */
	const char *scale_name; /* borrowed */
};

/*
 * path may also be BASE+ADAPTER when no file or folder has that name: the
 * model BASE with the PEFT LoRA adapter folder ADAPTER applied as it is
 * read (lora.h; DESIGN 6.3). Each side is a path, else a name in the
 * Hugging Face cache (hf_cache.h); the first '+' that splits path into two
 * that exist is taken.
 */
int weld_model_open(weld_model **out, const char *path, struct weld_error *err);
void weld_model_close(weld_model *m);

size_t weld_model_count(const weld_model *m);
const struct weld_tensor_info *weld_model_tensor(const weld_model *m, size_t i);
/* Index of the tensor called name, or -1. */
int64_t weld_model_find(const weld_model *m, const char *name);
const char *weld_model_path(const weld_model *m);   /* as given */
/* Something opening found that the user should hear of (an adapter part
 * that is ignored), or NULL. */
const char *weld_model_warning(const weld_model *m);
/* Folder holding config.json & co (the path itself, or a file's folder). */
const char *weld_model_dir(const weld_model *m);
const char *weld_model_format(const weld_model *m); /* "safetensors", "pytorch", "gguf" */
size_t weld_model_file_count(const weld_model *m);
const char *weld_model_file_path(const weld_model *m, size_t file);
/* A __metadata__ value of the safetensors files (the first file that has
 * the key wins), or NULL. */
const char *weld_model_metadata(const weld_model *m, const char *key);
/* The same for one file of the model. */
const char *weld_model_file_metadata(const weld_model *m, size_t file, const char *key);
/* Metadata entry i (in file order, 0 <= i < count): false past the end.
 * For a GGUF file, every key/value pair, the value shown as text. */
size_t weld_model_metadata_count(const weld_model *m);
bool weld_model_metadata_at(const weld_model *m, size_t i, const char **key,
			    const char **value, int *file);
/* Bytes that n elements of tensor t take in its file (n a multiple of its
 * block when it is stored in blocks, else rounded down; FP8 codes with
 * scales: the codes and the scales that cover as many elements). */
uint64_t weld_tensor_stored_bytes(const struct weld_tensor_info *t, uint64_t n);
/* The dtype a tensor's values were stored in, for the output's "auto"
 * dtype: F8_E4M3 for FP8 codes with scales, else dtype (F32 for a tensor
 * in ggml blocks). */
enum weld_dtype weld_tensor_stored_dtype(const struct weld_tensor_info *t);
/* The type a tensor is stored in: its block type when quant ("Q8_0"),
 * else its dtype's name. */
const char *weld_tensor_type_name(const struct weld_tensor_info *t);

/* Copy the raw little-endian bytes of elements [first, first + n) of tensor
 * i, packed, into dst (n * dtype size bytes); for a tensor stored in
 * blocks (quant), their float32 values. */
int weld_model_read(const weld_model *m, size_t i, uint64_t first, size_t n,
		    void *dst, struct weld_error *err);
/* Same, decoded to float32; integer dtypes are refused. scratch, if not
 * NULL, must hold n * dtype size bytes (else the call allocates). */
int weld_model_read_f32(const weld_model *m, size_t i, uint64_t first, size_t n,
			float *dst, void *scratch, struct weld_error *err);

/* Copy n stored bytes of tensor i from byte off of its data (for a
 * tensor stored in blocks, the blocks as stored). */
int weld_model_read_stored(const weld_model *m, size_t i, uint64_t off, size_t n, void *dst,
			   struct weld_error *err);

/* Memory a read of the model may allocate beyond its destination: 0 for
 * a checkpoint on disk; with a LoRA adapter, *per_elem bytes per element
 * read plus *fixed bytes per read. */
void weld_model_read_cost(const weld_model *m, uint64_t *per_elem, uint64_t *fixed);

/* XXH3-64 of tensor i's packed bytes (what a weld output records); for
 * FP8 codes with scales, of its codes. */
int weld_model_hash(const weld_model *m, size_t i, uint64_t *out, struct weld_error *err);

/* The scale tensor of FP8 tensor i (its name, dtype, shape, file, ...),
 * or NULL when i has none; and n of its stored bytes from byte off. */
const struct weld_tensor_info *weld_model_scale(const weld_model *m, size_t i);
int weld_model_read_scale_stored(const weld_model *m, size_t i, uint64_t off, size_t n,
				 void *dst, struct weld_error *err);
/* XXH3-64 of the bytes of tensor i's scale tensor. */
int weld_model_hash_scale(const weld_model *m, size_t i, uint64_t *out, struct weld_error *err);

/* ---------------------------------------------------------------- model writer */

/*
 * The writer lays out every shard and header before any data is written, so
 * that tensor data can then be written at known offsets in any tensor order,
 * from several threads (one thread per tensor at a time; within a tensor the
 * bytes must come in order, because the XXH3 of each tensor is computed as
 * it streams). Work happens in a temporary folder ".weld-tmp-XXXXXX" in the
 * output's parent folder (output_dir.h); weld_writer_commit() fills the
 * final headers, fsyncs, and renames the output into place.
 * weld_writer_close() without a commit removes the temporary folder.
 * Temporary folders that a killed run left for the same output are removed
 * by the next weld_writer_open() of that output.
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
	/* The name of the file when the output is one file in a folder
	 * (at most 63 bytes), or NULL: model.safetensors. */
	const char *file_name;
	/* Extra file to write in the output folder (name, contents), or NULL. */
	const char *extra_name;
	const char *extra_data;
	/* Write only part `part` (1-based) of `parts` of the shards, and a
	 * description of the part instead of the index (output_parts.h);
	 * parts = 0: the whole output. */
	unsigned part, parts;
	/* Write one GGUF file at `dir` instead (gguf.h): the GGUF model whose
	 * keys, tensor order and tensor types it follows; NULL: safetensors.
	 * gguf_type: the ggml type asked for, or -1 (auto). shard_size,
	 * copy_from and the config options are ignored. */
	const weld_model *gguf_base;
	int gguf_type;
	/* A GGUF output: cut it into a split set of files of at most this
	 * many data bytes (gguf_writer.c); 0: one file. */
	uint64_t gguf_split;
	/* NULL, or one {rows, cols} per tensor: non-zero, tensor i (dtype
	 * F8_E4M3, 2 or more dimensions) is block-scaled FP8 in blocks of that
	 * size (DESIGN 6.2). Its writes bring float32; the writer encodes them
	 * a band of blocks at a time (scale = amax / 448) and writes the scales
	 * as the tensor `<name>_scale_inv`, F32 [..., ceil(R/b0), ceil(C/b1)],
	 * which it adds to the layout. Not with parts or GGUF. */
	const int64_t (*fp8_block)[2];
};

int weld_writer_open(weld_writer **out, const char *dir,
		     const struct weld_out_tensor *t, size_t n,
		     const struct weld_writer_opts *opts, struct weld_error *err);
/* The checks weld_writer_open makes of a layout before it touches the disk
 * (names, shapes, shards, each header's size and tensor count), alone:
 * 0 if the output could be written, else -1 with the error open would give. */
int weld_writer_check(const char *dir, const struct weld_out_tensor *t, size_t n,
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
/* Does this writer write tensor i (false: it lies in another part's shard)? */
bool weld_writer_holds(const weld_writer *w, size_t i);

/*
 * For SIGINT/SIGTERM handlers; async-signal-safe, from any thread. Returns
 * true after removing the temporary folder of every writer that is open:
 * the handler should then end the process as the signal would. Returns
 * false, removing nothing, while an output is being published or once one
 * is published and no other is under construction: the merge has
 * succeeded (or the publication fails and raises the signal again), and the
 * handler should just return. The signal is then kept: see below.
 */
bool weld_writer_cleanup_on_signal(int sig);
/* The signal weld_writer_cleanup_on_signal() kept rather than acted on (0:
 * none), forgotten once read. A signal still kept when a new output begins
 * is raised again then. */
int weld_writer_take_deferred_signal(void);

#endif
