/*
 * base.h - the layer every other part of weld stands on: errors, dtypes
 * and their conversions, hashing, sizes, overflow-checked arithmetic and
 * the few file helpers (join a path, read a small file, pread all of a
 * range). It depends on nothing but libc and xxHash.
 *
 * Rules that hold for the whole library (lib/, formats/):
 *  - the library never prints and never exits: every failure returns -1
 *    (or NULL) and fills a caller-provided struct weld_error;
 *  - strings returned by accessors are borrowed from their handle and stay
 *    valid until the handle is closed; buffers passed in are the caller's;
 *  - every close/free function accepts NULL.
 */
#ifndef WELD_BASE_H
#define WELD_BASE_H

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
/* An output dtype as users write it: bf16, bfloat16, f16, float16, fp16,
 * half, f32, float32, fp32, float, f64, float64, double, any case, with or
 * without "torch."; "auto" gives -1 when allow_auto. 0, or -1 unknown. */
int weld_dtype_parse_output(const char *s, bool allow_auto, int *out);
/* PyTorch's name of a floating dtype ("bfloat16"), or NULL for others. */
const char *weld_dtype_torch_name(enum weld_dtype t);
size_t weld_dtype_size(enum weld_dtype t);         /* bytes per element */
bool weld_dtype_is_float(enum weld_dtype t);       /* merged (F*) or copied */
/* Order of the safetensors reference writer: larger rank first. */
int weld_dtype_write_rank(enum weld_dtype t);

/* Element conversions. Decoding is exact (F64 rounds to nearest even);
 * encoding supports F64, F32, F16, BF16 with round-to-nearest-even and f16
 * overflow to +-inf. Every NaN is encoded as the canonical one, positive and
 * quiet with no payload (WELD_NAN_F32 and its F64/F16/BF16 forms 0x7ff8...0,
 * 0x7e00, 0x7fc0): the sign and payload of a NaN made by arithmetic depend on
 * the processor and on the compiler's operand order, the output must not.
 * Neither touches the floating-point environment; both are safe to call
 * from several threads. */
#define WELD_NAN_F32 0x7fc00000u
void weld_decode_f32(enum weld_dtype t, const void *src, float *dst, size_t n);
int weld_encode_f32(enum weld_dtype t, const float *src, void *dst, size_t n);
/* The dtype a merged float tensor stored as t is written in when no output
 * dtype is asked: t itself when weld_encode_f32 writes it, else BF16
 * (8-bit floats, quantised GGUF blocks). */
enum weld_dtype weld_dtype_merged(enum weld_dtype t);

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

/* A new string from a printf format (the caller frees it), or NULL when
 * out of memory. */
char *weld_strfmt(const char *fmt, ...) WELD_PRINTF(1, 2);

/* Length of the UTF-8 sequence at p (at most n bytes), or 0 if it is not
 * valid UTF-8 (overlong forms and surrogates included). */
size_t weld_utf8_len(const unsigned char *p, size_t n);
/* Is the NUL-terminated s valid UTF-8? */
bool weld_utf8_valid(const char *s);

/* Overflow-checked helpers: return false on overflow. */
static inline bool weld_mul_u64(uint64_t a, uint64_t b, uint64_t *out)
{
	return !__builtin_mul_overflow(a, b, out);
}
static inline bool weld_add_u64(uint64_t a, uint64_t b, uint64_t *out)
{
	return !__builtin_add_overflow(a, b, out);
}

/* ---------------------------------------------------------------- files */

/* "dir/name" in a new string (caller frees), or NULL when out of memory. */
char *weld_path_join(const char *dir, const char *name);

/*
 * Open the regular file at path for reading; *size, if not NULL, gets its
 * size. Anything else (a folder, a FIFO, a device, a socket) is refused with
 * an error naming it and what it is, without blocking: the kind is checked
 * with stat() first, and the file is then opened with O_NONBLOCK and checked
 * again with fstat() (it may have changed in between), O_NONBLOCK being
 * cleared before the descriptor is returned. Returns the descriptor, or -1
 * (an open that fails keeps its errno in err->sys_errno).
 */
int weld_open_regular(const char *path, uint64_t *size, struct weld_error *err);

/* The whole of the regular file at path, NUL-terminated (caller frees
 * *out; *len, if not NULL, gets its length). A file larger than max bytes,
 * or one that is not a regular file (weld_open_regular()), is refused with
 * an error naming it. */
int weld_read_small_file(const char *path, uint64_t max, char **out, size_t *len,
			 struct weld_error *err);

/* pread exactly n bytes at off, or fail naming the file. */
int weld_pread_full(int fd, void *buf, size_t n, uint64_t off, const char *path,
		    struct weld_error *err);

#endif
