/*
 * fp8.h - FP8 E4M3 weights stored with scales (DESIGN 6.2): where each
 * element's scale is, decoding a run of elements, and block-scaled
 * encoding. Plain arrays in and out; nothing here knows of files.
 *
 * A scaled tensor is seen as `slices` matrices of rows x cols (cols = its
 * last dimension, slices = the product of the dimensions before the last
 * two). Its scales form, per slice, a grid of ceil(rows / brows) x
 * ceil(cols / bcols) values, slice after slice: element (s, r, c) has
 * value e4m3(q) * scale[s][r / brows][c / bcols], the product in float32
 * (DeepSeek's weight_dequant, compressed-tensors' W = q * weight_scale).
 * The three layouts are one geometry:
 *   block    brows x bcols from the config (DeepSeek, Qwen3, FineGrainedFP8:
 *            weight_scale_inv [ceil(R/128), ceil(C/128)], with an expert dim);
 *   channel  one scale a row: brows 1, bcols = cols (weight_scale [R, 1]);
 *   tensor   one scale: slices 1, brows = rows, bcols = cols (weight_scale [1]).
 */
#ifndef WELD_FP8_H
#define WELD_FP8_H

#include "base.h"

#define WELD_FP8_MAX 448.0f     /* largest finite E4M3FN value (0x7E) */

enum weld_fp8_layout { WELD_FP8_NONE, WELD_FP8_BLOCK, WELD_FP8_CHANNEL, WELD_FP8_TENSOR };

struct weld_fp8_geom {
	uint64_t slices, rows, cols;
	uint64_t brows, bcols;  /* elements a scale covers, each >= 1 */
};

/* "block", "channel", "tensor" (or "none"). */
const char *weld_fp8_layout_name(enum weld_fp8_layout l);

/* Scale-grid rows and columns of one slice; their product times slices is
 * the number of scales. */
uint64_t weld_fp8_grid_rows(const struct weld_fp8_geom *g);
uint64_t weld_fp8_grid_cols(const struct weld_fp8_geom *g);

/* The scale-grid row (over all slices, 0-based) of flat element j: the
 * scales of elements [a, b) are grid rows row(a) .. row(b - 1). */
uint64_t weld_fp8_scale_row(const struct weld_fp8_geom *g, uint64_t j);

/*
 * Elements [first, first + n): x holds their decoded codes (float32,
 * weld_decode_f32 of F8_E4M3); each is multiplied in place by its scale.
 * scales holds grid rows row0 .. (each weld_fp8_grid_cols() floats), row0
 * = weld_fp8_scale_row(g, first).
 */
void weld_fp8_apply_scales(const struct weld_fp8_geom *g, uint64_t first, size_t n,
			   const float *scales, float *x);

/* float32 to E4M3FN, saturating: clamp to +-448, then round to nearest
 * even (subnormals kept). x must not be NaN. */
uint8_t weld_fp8_encode_sat(float x);

/*
 * One band of a block-scaled tensor: rows x cols values (rows <= the block
 * height) into E4M3 codes q and ceil(cols / bcols) scales, each the amax of
 * its block / 448 (1 for a block of zeros); q = encode_sat(x / scale).
 * Returns the index of the first value that is not finite (nothing is then
 * meaningful), else SIZE_MAX.
 */
size_t weld_fp8_encode_band(const float *x, size_t rows, size_t cols, size_t bcols,
			    uint8_t *q, float *scale_inv);

/*
 * Block-scaled encoding of a tensor that arrives in pieces, in order: the
 * values of one band (the block height of rows of a slice, fewer at the
 * slice's end) are kept until the band is complete, then encoded, and
 * emit() receives its codes and its row of scales. Memory: one band.
 */
struct weld_fp8_stream {
	struct weld_fp8_geom g;
	uint64_t done;          /* elements received */
	float *band;
	size_t fill, cap;       /* elements in band, its size */
	uint8_t *codes;
	float *scales;
};

typedef int (*weld_fp8_emit)(void *ctx, const uint8_t *codes, size_t ncodes,
			     const float *scales, size_t nscales, struct weld_error *err);

/* Feed n values; a value that is not finite fails with a message naming
 * label (the tensor) and the value's flat index. */
int weld_fp8_stream_feed(struct weld_fp8_stream *s, const float *x, size_t n,
			 weld_fp8_emit emit, void *ctx, const char *label,
			 struct weld_error *err);
void weld_fp8_stream_free(struct weld_fp8_stream *s);

#endif
