/*
 * quant.h - ggml's tensor types (GGUF files): their names, block sizes,
 * and the kernels that turn blocks into float32 and back. Plain arrays in
 * and out; nothing here knows of files.
 *
 * A type stores its elements in blocks of `block` elements, `bytes` bytes
 * each (F32, F16 and BF16 are blocks of one element). Decoding is
 * block-exact as ggml's reference dequantisers (src/ggml-quants.c
 * dequantize_row_*): the same float operations in the same order, so the
 * values are bit for bit those llama.cpp computes. The Q8_0 and Q4_0
 * encoders reproduce ggml's reference quantisers (quantize_row_*_ref).
 */
#ifndef WELD_QUANT_H
#define WELD_QUANT_H

#include "base.h"

/* ggml's type ids (include/ggml.h), the ones weld reads or names. */
enum weld_ggml_type {
	WELD_GGML_F32 = 0, WELD_GGML_F16 = 1, WELD_GGML_Q4_0 = 2, WELD_GGML_Q4_1 = 3,
	WELD_GGML_Q5_0 = 6, WELD_GGML_Q5_1 = 7, WELD_GGML_Q8_0 = 8, WELD_GGML_Q8_1 = 9,
	WELD_GGML_Q2_K = 10, WELD_GGML_Q3_K = 11, WELD_GGML_Q4_K = 12, WELD_GGML_Q5_K = 13,
	WELD_GGML_Q6_K = 14, WELD_GGML_Q8_K = 15, WELD_GGML_BF16 = 30,
	WELD_GGML_TYPE_COUNT = 43
};

struct weld_ggml_type_info {
	const char *name;       /* "Q4_K" */
	uint32_t block;         /* elements per block */
	uint32_t bytes;         /* bytes per block */
	/* decode nblocks blocks at src into nblocks * block floats at dst;
	 * NULL for a type weld does not decode */
	void (*decode)(const unsigned char *src, float *dst, size_t nblocks);
};

/* The type with ggml id `type`, or NULL when the id is not a ggml type
 * (ids ggml removed included). Types weld cannot decode have decode NULL. */
const struct weld_ggml_type_info *weld_ggml_type(uint32_t type);
/* Its name, or "type <id>" style NULL when unknown. */
const char *weld_ggml_type_name(uint32_t type);
/* The ggml type of an id name ("q8_0", any case), or -1. */
int weld_ggml_type_parse(const char *s);

/* Encode nblocks blocks of 32 floats as ggml's quantize_row_q8_0_ref and
 * quantize_row_q4_0_ref do. */
void weld_quant_q8_0(const float *src, unsigned char *dst, size_t nblocks);
void weld_quant_q4_0(const float *src, unsigned char *dst, size_t nblocks);
/* Encode n floats as `type` (F32, F16, BF16, Q8_0 or Q4_0; n a multiple of
 * its block); -1 for another type. */
int weld_ggml_encode(uint32_t type, const float *src, void *dst, size_t n);

#endif
