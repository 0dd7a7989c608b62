/*
 * fp8.c - FP8 E4M3 weights with scales: the scale of each element, and
 * block-scaled encoding (amax / 448 per block, saturating RNE).
 */
#include "fp8.h"

#include <math.h>
#include <stdlib.h>
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

/* Elements of the band that starts at element s->done. */
static size_t band_len(const struct weld_fp8_stream *s)
{
	uint64_t r = s->done / s->g.cols % s->g.rows, rows = s->g.rows - r;

	return (size_t)((rows < s->g.brows ? rows : s->g.brows) * s->g.cols);
}

int weld_fp8_stream_feed(struct weld_fp8_stream *s, const float *x, size_t n,
			 weld_fp8_emit emit, void *ctx, const char *label,
			 struct weld_error *err)
{
	const size_t gc = (size_t)weld_fp8_grid_cols(&s->g);

	if (!s->band) {
		s->cap = (size_t)(s->g.brows * s->g.cols);
		s->band = malloc(s->cap * sizeof(float));
		s->codes = malloc(s->cap);
		s->scales = malloc(gc * sizeof(float));
		if (!s->band || !s->codes || !s->scales)
			return weld_fail(err, WELD_ERR_NOMEM, "out of memory");
	}
	while (n) {
		size_t want = band_len(s), take = want - s->fill < n ? want - s->fill : n;
		size_t bad;

		memcpy(s->band + s->fill, x, take * sizeof(float));
		s->fill += take;
		x += take;
		n -= take;
		if (s->fill < want)
			break;
		bad = weld_fp8_encode_band(s->band, want / s->g.cols, (size_t)s->g.cols,
					   (size_t)s->g.bcols, s->codes, s->scales);
		if (bad != SIZE_MAX)
			return weld_fail(err, WELD_ERR_ARG,
					 "%s: value %llu is %s: FP8 cannot hold it", label,
					 (unsigned long long)(s->done + bad),
					 isnan(s->band[bad]) ? "NaN" : "infinite");
		if (emit(ctx, s->codes, want, s->scales, gc, err) < 0)
			return -1;
		s->done += want;
		s->fill = 0;
	}
	return 0;
}

void weld_fp8_stream_free(struct weld_fp8_stream *s)
{
	free(s->band);
	free(s->codes);
	free(s->scales);
	s->band = NULL;
	s->codes = NULL;
	s->scales = NULL;
}
