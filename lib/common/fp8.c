/*
 * fp8.c - FP8 E4M3 weights with scales: the scale of each element, and
 * block-scaled encoding (amax / 448 per block, saturating RNE).
 */
#include "fp8.h"

#include <math.h>
#include <string.h>

const char *weld_fp8_layout_name(enum weld_fp8_layout l)
{
	switch (l) {
	case WELD_FP8_BLOCK:   return "block";
	case WELD_FP8_CHANNEL: return "channel";
	case WELD_FP8_TENSOR:  return "tensor";
	default:               return "none";
	}
}

uint64_t weld_fp8_grid_rows(const struct weld_fp8_geom *g)
{
	return (g->rows + g->brows - 1) / g->brows;
}

uint64_t weld_fp8_grid_cols(const struct weld_fp8_geom *g)
{
	return (g->cols + g->bcols - 1) / g->bcols;
}

/* Grid row of matrix row `row` (counted over all slices). */
static uint64_t grid_row_of(const struct weld_fp8_geom *g, uint64_t row)
{
	return row / g->rows * weld_fp8_grid_rows(g) + row % g->rows / g->brows;
}

uint64_t weld_fp8_scale_row(const struct weld_fp8_geom *g, uint64_t j)
{
	return grid_row_of(g, j / g->cols);
}

void weld_fp8_apply_scales(const struct weld_fp8_geom *g, uint64_t first, size_t n,
			   const float *scales, float *x)
{
	const uint64_t gc = weld_fp8_grid_cols(g), row0 = weld_fp8_scale_row(g, first);
	const uint64_t end = first + n;
	uint64_t j = first;

	/* runs of elements sharing one scale: a block's columns in one row */
	while (j < end) {
		uint64_t row = j / g->cols, c = j % g->cols, cb = c / g->bcols;
		uint64_t stop = row * g->cols + (cb + 1) * g->bcols;
		const float s = scales[(grid_row_of(g, row) - row0) * gc + cb];

		if (stop > (row + 1) * g->cols)
			stop = (row + 1) * g->cols;
		if (stop > end)
			stop = end;
		for (float *p = x + (j - first), *e = x + (stop - first); p < e; p++)
			*p *= s;
		j = stop;
	}
}

uint8_t weld_fp8_encode_sat(float x)
{
	const uint8_t sign = signbit(x) ? 0x80 : 0;
	float a = fabsf(x);
	uint32_t u;

	if (a > WELD_FP8_MAX)
		a = WELD_FP8_MAX;
	if (a < 0x1p-6f) {
		/* subnormal: a multiple of 2^-9, rounded to nearest even by the
		 * float addition (a * 512 < 8 is exact; 2^23 has ulp 1) */
		float q = (a * 512.0f + 0x1p23f) - 0x1p23f;

		return sign | (uint8_t)q;
	}
	/* normal: keep 3 mantissa bits, ties to even; the carry may step into
	 * the exponent (a <= 448 keeps the result <= 0x7E) */
	memcpy(&u, &a, sizeof(u));
	u = (u + 0x7ffffu + ((u >> 20) & 1u)) >> 20;
	return sign | (uint8_t)(u - (120u << 3));
}

size_t weld_fp8_encode_band(const float *x, size_t rows, size_t cols, size_t bcols,
			    uint8_t *q, float *scale_inv)
{
	for (size_t i = 0; i < rows * cols; i++)
		if (!isfinite(x[i]))
			return i;
	for (size_t c0 = 0, b = 0; c0 < cols; c0 += bcols, b++) {
		size_t c1 = cols - c0 < bcols ? cols : c0 + bcols;
		float amax = 0, s;

		for (size_t r = 0; r < rows; r++)
			for (size_t c = c0; c < c1; c++)
				amax = fabsf(x[r * cols + c]) > amax ? fabsf(x[r * cols + c]) : amax;
		s = amax > 0 ? amax / WELD_FP8_MAX : 1.0f;
		scale_inv[b] = s;
		for (size_t r = 0; r < rows; r++)
			for (size_t c = c0; c < c1; c++)
				q[r * cols + c] = weld_fp8_encode_sat(x[r * cols + c] / s);
	}
	return SIZE_MAX;
}
