/*
 * select_row.c - top-k of one row after another (--scope row), from a guess.
 *
 * The rows of a tensor are alike, so the threshold of the last row is a
 * good guess of the next one's. One vectorised scan
 * (weld_window_keys) counts the row's keys above a window of keys around
 * the guess and gathers those inside it, the guess itself counted rather
 * than gathered; when the k-th largest key falls in the window, it is the
 * guess, or a radix select over the few keys gathered finds it. Otherwise
 * the row's first digit is counted in full (weld_topk_count) and selected
 * from as weld_topk_select does. Either way the result is exact, the same
 * as weld_topk_select's: the guess only decides how fast it comes.
 * The window doubles after a miss, and narrows while it gathers more keys
 * than the rows' differences call for.
 */
#include "select.h"

#include <math.h>

/* The window of a first guess: 2^18 keys on each side, 1/32 of an octave. */
#define FIRST_WIDTH (1u << 18)
#define KEY_MAX 0x7FFFFFFFu

/* How many of the m < 2^32 keys are above key. */
WELD_HOT static uint64_t keys_above(const uint32_t *keys, size_t m, uint32_t key)
{
	uint32_t c = 0;

	for (size_t j = 0; j < m; j++)
		c += keys[j] > key;
	return c;
}

/*
 * The keys a window should gather: from row to row, the rank of a key
 * varies by about sqrt(k (n - k) / n) (a binomial's deviation), and the
 * window is to hold the k-th largest key with room for six of those on
 * each side.
 */
static size_t enough(size_t n, uint64_t k)
{
	return 16 + (size_t)(12 * sqrt((double)k * (double)(n - k) / (double)n));
}

/* How many low bits the keys in [lo, hi] may differ in. */
static int window_bits(uint32_t lo, uint32_t hi)
{
	return lo == hi ? 0 : 32 - __builtin_clz(lo ^ hi);
}

/*
 * The selection of k (0 < k < n) from h's window; false when the k-th
 * largest key lies outside it. *held: the keys gathered.
 */
static bool select_near(const float *x, size_t n, uint64_t k, const struct weld_topk_hint *h,
			uint32_t *scratch, struct weld_topk *out, size_t *held)
{
	uint64_t top = (uint64_t)h->key + h->width, eq = 0, above = 0, need, gt;
	uint32_t lo = h->key > h->width ? h->key - h->width : 0;
	uint32_t hi = (uint32_t)(top < KEY_MAX ? top : KEY_MAX);
	size_t m;

	m = weld_window_keys(x, n, lo, hi, h->key, scratch, &eq, &above);
	*held = m;
	if (above >= k)
		return false;
	/* rank need among the window's keys: those above the guess, the
	 * guess's own, then those below it */
	need = k - above;
	gt = keys_above(scratch, m, h->key);
	if (need > gt && need <= gt + eq) {
		memset(out, 0, sizeof(*out));
		out->thresh = h->key;
		out->keep_equal = need - gt;
		return true;
	}
	if (need > gt)
		need -= eq;
	if (need > m)
		return false;
	weld_topk_narrow(scratch, m, need, window_bits(lo, hi), out);
	return true;
}

void weld_topk_select_row(struct weld_topk_row *row, uint64_t k, struct weld_topk_hint *h,
			  struct weld_topk *out)
{
	size_t held;

	if (k == 0 || k >= row->n) {
		weld_topk_select_counted(row->x, row->n, k, NULL, row->scratch, out);
		return;
	}
	if (h->set && select_near(row->x, row->n, k, h, row->scratch, out, &held)) {
		if (held > enough(row->n, k))
			h->width -= h->width / 8;
		h->key = out->thresh;
		return;
	}
	h->width = !h->set ? FIRST_WIDTH : h->width < KEY_MAX / 2 ? 2 * h->width + 1 : KEY_MAX;
	h->set = true;
	if (!row->counted) {
		weld_topk_count(row->x, row->n, &row->counts);
		row->counted = true;
	}
	weld_topk_select_counted(row->x, row->n, k, &row->counts, row->scratch, out);
	h->key = out->thresh;
}
