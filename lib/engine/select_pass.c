/*
 * select_pass.c - the statistics passes, which run before APPLY: the top-k
 * threshold of each selection (DESIGN 4.1), dare's L1 sums, slerp's dots.
 *
 * A threshold is the k-th largest magnitude key. A 1/16 sample (sample.h)
 * guesses the range of keys it lies in (whole bins of the high 16 bits,
 * with a margin that shrinks towards the sample's own error when the
 * ranges of all selections would not fit the room); one pass then
 * counts the keys above that range and records those in it, and the
 * recorded keys give the exact threshold and, per chunk and slice, how
 * many elements equal it (APPLY keeps those of lowest position). Only
 * those counts matter, not where in a chunk's slice a key lies: a key that
 * many of the keys recorded hold (a plateau: exact zeros, one unit in the
 * last place of the common weights) is counted instead, as a run entry of
 * the chunk and slice, so that the cost and the room do not depend on how
 * many elements share the threshold. When the keys do not fit the memory
 * set aside for them, the pass stops, a finer histogram of the same sample
 * narrows each range to whole keys, and a pass records them again if they
 * should fit. When the guess misses, or the keys still do not fit,
 * histograms of the high and then the low 16 bits give the threshold, and
 * APPLY is preceded by a COUNT pass.
 * Histograms hold integer counts, so the order of their sums is free.
 */
#include "exec.h"

#include <stdlib.h>
#include <string.h>

/* Entry *i of a recorded list: its key, and in *count how many elements it
 * stands for (a run of a plateau key, or one key); advances *i. */
static inline uint32_t rec_next(const uint32_t *keys, size_t *i, uint64_t *count)
{
	uint32_t w = keys[(*i)++];

	if (!(w & WELD_RUN_FLAG)) {
		*count = 1;
		return w;
	}
	*count = w & ~WELD_RUN_FLAG;
	return keys[(*i)++];
}

/* Keys recorded, not yet offered to weld_plateau_learn, that make it look
 * for plateau keys among them. */
#define LEARN_KEYS 1024

/* Append the keys of vs in selection q's range, except those of the
 * slice's plateau keys, which are counted for the chunk's run entries.
 * Every LEARN_KEYS keys recorded, keys that many of them share become
 * plateau keys. Room is kept for the run entries. */
static void record_keys(struct exec *e, struct slice_ctx *c, size_t q, const float *vs, size_t len)
{
	struct weld_record_range r = { .lo = e->rec.key_lo[q],
				       .width = e->rec.key_hi[q] - e->rec.key_lo[q] };
	size_t n = c->rec_len[q], from = c->rec_unlearned[q], room = len + 2 * WELD_PLATEAUS;
	uint64_t above = 0;

	if (n + room > c->rec_cap[q]) {
		size_t used = 0, cap = c->rec_cap[q] ? 2 * c->rec_cap[q] : room, left;
		uint32_t *nb;

		for (size_t k = 0; k < e->sel_slots; k++)
			used += c->rec_cap[k];
		while (cap < n + room)
			cap *= 2;
		/* the last growth takes what is left, if that is enough */
		left = e->rec.per_slice - (used - c->rec_cap[q]);
		if (cap > left && left >= n + room)
			cap = left;
		if (used - c->rec_cap[q] + cap > e->rec.per_slice ||
		    !(nb = realloc(c->rec_keys[q], cap * sizeof(uint32_t)))) {
			c->rec_overflow = true;
			return;
		}
		c->rec_keys[q] = nb;
		c->rec_cap[q] = cap;
	}
	memcpy(r.plateau, c->rec_plateau[q], sizeof(r.plateau));
	n += weld_record_keys(vs, len, &r, c->rec_keys[q] + n, c->rec_pc[q], &above);
	if (n - from >= LEARN_KEYS) {
		n = from + weld_plateau_learn(c->rec_keys[q] + from, n - from, &r, c->rec_pc[q]);
		memcpy(c->rec_plateau[q], r.plateau, sizeof(r.plateau));
		c->rec_unlearned[q] = n;
	}
	c->rec_len[q] = n;
	c->rec_above[q] += above;
}

/* The end of a chunk: each selection's plateau counts become its run
 * entries (WELD_RUN_FLAG | count, key); record_keys left room for them. */
static void rec_runs(struct exec *e, struct slice_ctx *c)
{
	for (size_t q = 0; q < e->sel_slots; q++) {
		for (int i = 0; i < WELD_PLATEAUS; i++)
			if (c->rec_pc[q][i]) {  /* < a chunk's elements < 2^31 */
				c->rec_keys[q][c->rec_len[q]++] = WELD_RUN_FLAG | (uint32_t)c->rec_pc[q][i];
				c->rec_keys[q][c->rec_len[q]++] = c->rec_plateau[q][i];
				c->rec_pc[q][i] = 0;
			}
		c->rec_unlearned[q] = c->rec_len[q];
	}
}

/* The first selection of source s that counts keys (neither all nor
 * none), or -1: with hist_shared, the others of s take its histogram. */
static int sel_counter(const struct exec *e, const struct weld_job *j, size_t s)
{
	for (int q = 0; q < nsel(e, j); q++) {
		const struct sel_state *st = &e->sel[s * MAX_SEL + (size_t)q];

		if (!st->sel.all && !st->sel.none)
			return q;
	}
	return -1;
}

void weld_exec_tile_stats(struct exec *e, const struct weld_job *j, struct slice_ctx *c,
			  enum pass pass, size_t len)
{
	int ns = nsel(e, j);

	for (size_t s = 0; s < j->nsrc; s++)
		for (int q = 0; q < ns; q++) {
			struct sel_state *st = &e->sel[s * MAX_SEL + (size_t)q];
			const float *vs = c->vals + s * e->tile_elems;
			uint32_t *hist = c->hist + (s * e->hists_per_src + (size_t)q) *
						   WELD_HIST_BINS;

			if (st->sel.all || st->sel.none ||
			    (pass == P_SAMPLE_FINE && e->rec.fine_shift[s * MAX_SEL + (size_t)q] < 0))
				continue;
			if (e->rec.on && !c->rec_overflow)
				record_keys(e, c, s * MAX_SEL + (size_t)q, vs, len);
			if (pass == P_HI && e->rec.on)
				continue;   /* the recorded keys and the count above stand for it */
			if ((pass == P_HI || pass == P_SAMPLE) && q == sel_counter(e, j, s))
				weld_hist_hi(vs, len, hist);
			else if (pass == P_SAMPLE_FINE)
				weld_hist_range(vs, len, e->rec.key_lo[s * MAX_SEL + (size_t)q],
						e->rec.key_hi[s * MAX_SEL + (size_t)q],
						e->rec.fine_shift[s * MAX_SEL + (size_t)q], hist);
			else if (pass == P_LO)
				weld_hist_range(vs, len, st->hi_bin << 16, st->hi_bin << 16 | 0xFFFFu, 0,
						hist);
			else
				c->n_equal[s * MAX_SEL + (size_t)q] +=
					weld_count_equal(vs, len, st->sel.thresh);
		}
}

void weld_exec_rec_clear(struct exec *e)
{
	for (int t = 0; t < e->n_slices; t++) {
		for (size_t q = 0; q < e->sel_slots; q++) {
			free(e->slices[t].rec_keys[q]);
			e->slices[t].rec_keys[q] = NULL;
			e->slices[t].rec_len[q] = e->slices[t].rec_cap[q] = 0;
			e->slices[t].rec_above[q] = 0;
			e->slices[t].rec_unlearned[q] = 0;
			for (int i = 0; i < WELD_PLATEAUS; i++) {
				e->slices[t].rec_plateau[q][i] = WELD_NO_KEY;
				e->slices[t].rec_pc[q][i] = 0;
			}
		}
		e->slices[t].rec_overflow = false;
	}
	e->rec.on = e->rec.overflow = false;
	e->rec.n_chunks = 0;
}

/* Start recording, for each active selection q, the keys
 * key_lo[q]..key_hi[q]. */
static void rec_start(struct exec *e)
{
	weld_exec_rec_clear(e);
	e->rec.on = e->rec.per_slice > 0;
}

/* Where the recorder's tables hold chunk `chunk`, slice t, selection q. */
static uint64_t rec_index(const struct exec *e, uint64_t chunk, int t, size_t q)
{
	return (chunk * (uint64_t)e->n_slices + (uint64_t)t) * e->sel_slots + q;
}

/* A new chunk: end the last one, note where its keys start in every list. */
int weld_exec_rec_chunk(struct exec *e)
{
	struct recorder *r = &e->rec;
	size_t per = (size_t)e->n_slices * e->sel_slots;

	for (int t = 0; t < e->n_slices; t++)
		if (!e->slices[t].rec_overflow)
			rec_runs(e, &e->slices[t]);

	if (r->n_chunks == r->chunks_cap) {
		uint64_t cap = r->chunks_cap ? 2 * r->chunks_cap : 64;
		uint64_t *start = realloc(r->chunk_start, cap * per * sizeof(*start));
		uint64_t *eq = start ? realloc(r->chunk_eq, cap * per * sizeof(*eq)) : NULL;

		if (start)
			r->chunk_start = start;
		if (!start || !eq)
			return -1;
		r->chunk_eq = eq;
		r->chunks_cap = cap;
	}
	for (int t = 0; t < e->n_slices; t++)
		for (size_t q = 0; q < e->sel_slots; q++)
			r->chunk_start[rec_index(e, r->n_chunks, t, q)] = e->slices[t].rec_len[q];
	r->n_chunks++;
	return 0;
}

/* Whether some slice ran out of room. */
static bool rec_full(const struct exec *e)
{
	for (int t = 0; t < e->n_slices; t++)
		if (e->slices[t].rec_overflow)
			return true;
	return false;
}

/* Stop recording; true if every list is complete. */
static bool rec_stop(struct exec *e)
{
	bool ok = e->rec.on;

	for (int t = 0; t < e->n_slices; t++) {
		ok = ok && !e->slices[t].rec_overflow;
		if (!e->slices[t].rec_overflow)
			rec_runs(e, &e->slices[t]);
	}
	e->rec.on = false;
	e->rec.overflow = !ok;
	return ok;
}

/*
 * After a recording pass (no histogram): if the k-th largest key of
 * selection q is among the recorded ones, set its bin and the count of
 * keys above that bin, and return true.
 */
static bool rec_locate(struct exec *e, size_t q)
{
	struct sel_state *st = &e->sel[q];
	uint64_t above = 0, n = 0, above2;

	if (e->rec.overflow)
		return false;
	memset(st->hist, 0, WELD_HIST_BINS * sizeof(uint64_t));
	for (int t = 0; t < e->n_slices; t++) {
		const uint32_t *keys = e->slices[t].rec_keys[q];

		above += e->slices[t].rec_above[q];
		for (size_t i = 0; i < e->slices[t].rec_len[q];) {
			uint64_t cnt;
			uint32_t key = rec_next(keys, &i, &cnt);

			st->hist[key >> 16] += cnt;
			n += cnt;
		}
	}
	if (above >= st->k || above + n < st->k)
		return false;
	/* the recorded keys are the range's: no bin above it holds any */
	st->hi_bin = weld_hist_pick_from(st->hist, e->rec.key_hi[q] >> 16, st->k - above, &above2);
	st->n_above = above + above2;
	return true;
}

/* The low-bit histogram of the chosen bin, from the recorded keys. */
static void rec_low_hist(struct exec *e, size_t q)
{
	struct sel_state *st = &e->sel[q];

	memset(st->hist, 0, WELD_HIST_BINS * sizeof(uint64_t));
	for (int t = 0; t < e->n_slices; t++)
		for (size_t i = 0; i < e->slices[t].rec_len[q];) {
			uint64_t cnt;
			uint32_t key = rec_next(e->slices[t].rec_keys[q], &i, &cnt);

			if (key >> 16 == st->hi_bin)
				st->hist[key & 0xFFFF] += cnt;
		}
}

/* The keys of selection q equal to its threshold, per chunk and slice. */
static void rec_count_sel(void *ctx, int item)
{
	struct exec *e = ctx;
	struct recorder *r = &e->rec;
	size_t q = (size_t)item;

	for (uint64_t sq = 0; sq < r->n_chunks; sq++)
		for (int t = 0; t < e->n_slices; t++) {
			uint64_t i = rec_index(e, sq, t, q);
			uint64_t end = sq + 1 < r->n_chunks
				? r->chunk_start[rec_index(e, sq + 1, t, q)]
				: e->slices[t].rec_len[q];
			const struct sel_state *st = &e->sel[q];
			const uint32_t *keys = e->slices[t].rec_keys[q];
			uint64_t cnt = 0;

			if (!st->sel.all && !st->sel.none && keys)
				for (size_t k = (size_t)r->chunk_start[i]; k < end;) {
					uint64_t c;

					cnt += rec_next(keys, &k, &c) == st->sel.thresh ? c : 0;
				}
			r->chunk_eq[i] = cnt;
		}
}

/* Keys equal to each threshold, per chunk and slice; then drop the keys. */
static void rec_counts(struct exec *e)
{
	struct recorder *r = &e->rec;

	weld_team_run(e->team, (int)e->sel_slots, rec_count_sel, e);
	r->valid = true;
	r->apply_chunk = 0;
	for (int t = 0; t < e->n_slices; t++)
		for (size_t q = 0; q < e->sel_slots; q++) {
			free(e->slices[t].rec_keys[q]);
			e->slices[t].rec_keys[q] = NULL;
			e->slices[t].rec_len[q] = e->slices[t].rec_cap[q] = 0;
		}
}

/* Instead of a counting pass: each slice's equal elements before it. */
void weld_exec_rec_apply_counts(struct exec *e)
{
	struct recorder *r = &e->rec;
	uint64_t sq = r->apply_chunk++;

	for (size_t q = 0; q < e->sel_slots; q++) {
		uint64_t run = e->sel[q].eq_before;

		for (int t = 0; t < e->n_slices; t++) {
			uint64_t mine = sq < r->n_chunks ? r->chunk_eq[rec_index(e, sq, t, q)] : 0;

			e->slices[t].n_equal[q] = run;
			run += mine;
		}
		e->sel[q].eq_before = run;
	}
}

/* The margin of a guessed rank beyond the sample's statistical error (4
 * standard deviations) is a share of the sample, for units whose sampled
 * super-tiles are not alike; it is halved, up to GUESS_HALVINGS times and
 * then dropped, while the range would hold more keys than its share of
 * the recorder's room. */
#define GUESS_SLACK 0.002
#define GUESS_HALVINGS 4

/* The range of selection q for ranks ks - d .. ks + d of the sample (of ns
 * keys): whole high-bits bins, one more on each side. Returns the keys a
 * unit of `unit` elements should hold in it (plateau keys included). */
static uint64_t guess_range(struct exec *e, size_t q, double ks, double d, uint64_t ns,
			    uint64_t unit)
{
	const uint64_t *h = e->sel[q].hist;
	struct recorder *r = &e->rec;
	uint64_t above, unused, in = 0;
	uint32_t lo, hi;

	r->rank_top[q] = ks - d < 1 ? 1 : (uint64_t)(ks - d);
	r->rank_bottom[q] = ks + d > (double)ns ? ns : (uint64_t)(ks + d) + 1;
	/* one walk down from the top: the bin of rank_top, then (below it,
	 * rank_bottom >= rank_top) the bin of rank_bottom */
	hi = weld_hist_pick(h, r->rank_top[q], &above);
	lo = r->rank_bottom[q] > above
		? weld_hist_pick_from(h, hi, r->rank_bottom[q] - above, &unused) : hi;
	/* the keys above bin hi + 1, when the range takes that bin too */
	r->sample_above[q] = hi < WELD_HIST_BINS - 1 ? above - h[hi + 1] : 0;
	hi += hi < WELD_HIST_BINS - 1;
	lo -= lo > 0;
	r->key_lo[q] = lo << 16;
	r->key_hi[q] = hi << 16 | 0xFFFFu;
	for (uint32_t b = lo; b <= hi; b++)
		in += h[b];
	return (uint64_t)((double)in * (double)unit / (double)ns);
}

/*
 * The range of keys to record for selection q: around the rank of the k-th
 * largest in the sample, widened so that the true threshold is almost
 * always inside (if not, the passes of the fallback give the same result),
 * as far as `share` keys allow (see GUESS_SLACK). rec_refine() may narrow
 * it with SAMPLE_FINE, from the ranks and the count noted here.
 */
static void rec_guess(struct exec *e, size_t q, uint64_t unit, uint64_t share)
{
	struct sel_state *st = &e->sel[q];
	struct recorder *r = &e->rec;
	uint64_t ns = 0;
	double ks;

	for (size_t b = 0; b < WELD_HIST_BINS; b++)
		ns += st->hist[b];
	r->sample_n[q] = 0;
	if (!ns) {
		r->key_lo[q] = 0;
		r->key_hi[q] = UINT32_MAX;
		return;
	}
	r->sample_n[q] = ns;
	ks = (double)st->k * (double)ns / (double)unit;
	for (int i = 0; i <= GUESS_HALVINGS; i++) {
		double slack = i < GUESS_HALVINGS ? GUESS_SLACK / (double)(1 << i) : 0;

		if (guess_range(e, q, ks, 4 * sqrt(ks) + slack * (double)ns + 8, ns, unit) <= share)
			break;
	}
}

/* SAMPLE_FINE for selection q: bins of 2^shift keys, as few as cover its
 * range in 65536 bins. */
static void rec_fine_start(struct exec *e, size_t q)
{
	struct recorder *r = &e->rec;
	uint64_t width = (uint64_t)r->key_hi[q] - r->key_lo[q] + 1;
	int shift = 0;

	while (width > (uint64_t)WELD_HIST_BINS << shift)
		shift++;
	r->fine_shift[q] = shift;
	memset(e->sel[q].hist, 0, WELD_HIST_BINS * sizeof(uint64_t));
}

/* The keys the fine bins b..t of selection q stand for in a unit of
 * `unit` elements (plateau keys among them included: a bin holds many). */
static uint64_t fine_expect(const struct exec *e, size_t q, uint32_t b, uint32_t t, uint64_t unit)
{
	uint64_t in = 0;

	for (uint32_t i = b; i <= t; i++)
		in += e->sel[q].hist[i];
	return e->rec.sample_n[q] ? (uint64_t)((double)in * (double)unit /
					       (double)e->rec.sample_n[q]) : 0;
}

/* After SAMPLE_FINE: the range of selection q narrowed to the fine bins of
 * the sample's ranks it must hold, one more on each side; returns the keys
 * to expect in it. */
static uint64_t rec_refine(struct exec *e, size_t q, uint64_t unit)
{
	struct recorder *r = &e->rec;
	const uint64_t *h = e->sel[q].hist;
	uint64_t ab = r->sample_above[q], unused, lo, hi, expect;
	uint64_t top = r->rank_top[q] > ab ? r->rank_top[q] - ab : 1;
	uint32_t bt = weld_hist_pick(h, top, &unused);
	uint32_t bb = weld_hist_pick(h, r->rank_bottom[q] > ab ? r->rank_bottom[q] - ab : 1,
				     &unused);
	int sh = r->fine_shift[q];

	bt += bt < WELD_HIST_BINS - 1;
	bb -= bb > 0;
	expect = fine_expect(e, q, bb, bt, unit);
	lo = r->key_lo[q] + ((uint64_t)bb << sh);
	hi = r->key_lo[q] + ((uint64_t)(bt + 1) << sh) - 1;
	r->key_hi[q] = hi < r->key_hi[q] ? (uint32_t)hi : r->key_hi[q];
	r->key_lo[q] = (uint32_t)lo;
	r->fine_shift[q] = -1;
	return expect;
}

static void hist_zero(struct exec *e, const struct weld_job *j)
{
	if (e->hist_used)
		for (int t = 0; t < e->n_threads; t++)
			memset(e->thread_hist[t], 0,
			       j->nsrc * e->hists_per_src * WELD_HIST_BINS * sizeof(uint32_t));
	e->hist_used = false;
	e->hist_pending = 0;
}

/* Add the threads' histograms to the totals (integer sums: any order). */
void weld_exec_hist_merge(struct exec *e, const struct weld_job *j)
{
	for (size_t q = 0; e->hist_used && q < j->nsrc * MAX_SEL; q++) {
		struct sel_state *st = &e->sel[q];
		size_t s = q / MAX_SEL, k = q % MAX_SEL;

		if (st->sel.all || st->sel.none || (int)k >= nsel(e, j))
			continue;
		if (e->hist_shared)
			k = (size_t)sel_counter(e, j, s);
		for (int t = 0; t < e->n_threads; t++) {
			const uint32_t *h =
				e->thread_hist[t] + (s * e->hists_per_src + k) * WELD_HIST_BINS;

			for (size_t b = 0; b < WELD_HIST_BINS; b++)
				st->hist[b] += h[b];
		}
	}
	hist_zero(e, j);
}

void weld_exec_sel_reset(struct exec *e, const struct weld_job *j, uint64_t unit)
{
	for (size_t s = 0; s < e->max_src; s++)
		for (int q = 0; q < MAX_SEL; q++) {
			struct sel_state *st = &e->sel[s * MAX_SEL + (size_t)q];

			memset(&st->sel, 0, sizeof(st->sel));
			st->eq_before = 0;
			if (s >= j->nsrc || q >= nsel(e, j)) {
				st->sel.none = true;
				continue;
			}
			st->k = unit_k(e, j, s, q, unit);
			st->sel.none = st->k == 0;
			st->sel.all = st->k >= unit;
			if (!st->sel.all && !st->sel.none)
				memset(st->hist, 0, WELD_HIST_BINS * sizeof(uint64_t));
		}
}

/* After HI: each selection's bin. After LO: the exact threshold and how
 * many of the elements equal to it are kept. */
static void sel_pick(struct exec *e, const struct weld_job *j, bool low)
{
	for (size_t s = 0; s < j->nsrc; s++)
		for (int q = 0; q < nsel(e, j); q++) {
			struct sel_state *st = &e->sel[s * MAX_SEL + (size_t)q];
			uint64_t above;
			uint32_t lo;

			if (st->sel.all || st->sel.none)
				continue;
			if (!low) {
				st->hi_bin = weld_hist_pick(st->hist, st->k, &st->n_above);
				/* the same totals now count the low bits */
				memset(st->hist, 0, WELD_HIST_BINS * sizeof(uint64_t));
				continue;
			}
			lo = weld_hist_pick(st->hist, st->k - st->n_above, &above);
			st->sel.thresh = st->hi_bin << 16 | lo;
			st->sel.keep_equal = st->k - st->n_above - above;
		}
}

bool weld_exec_sel_active(const struct exec *e, const struct weld_job *j)
{
	for (size_t q = 0; q < j->nsrc * MAX_SEL; q++)
		if (!e->sel[q].sel.all && !e->sel[q].sel.none)
			return true;
	(void)j;
	return false;
}

/* A COUNT pass is needed only when some elements equal to a threshold are
 * kept and others are not. */
bool weld_exec_sel_partial(const struct exec *e, const struct weld_job *j)
{
	for (size_t q = 0; q < j->nsrc * MAX_SEL; q++) {
		const struct sel_state *st = &e->sel[q];

		if (!st->sel.all && !st->sel.none &&
		    st->sel.keep_equal < st->hist[st->sel.thresh & 0xFFFF])
			return true;
	}
	return false;
}

int weld_exec_over_chunks(struct exec *e, const struct weld_job *j, enum pass pass,
			  enum drop_mode mode, struct weld_error *err)
{
	if (pass == P_HI || pass == P_LO || sample_pass(pass))
		hist_zero(e, j);
	for (uint64_t first = 0; first < j->nelem; first += e->chunk_elems) {
		uint64_t n = j->nelem - first < e->chunk_elems ? j->nelem - first : e->chunk_elems;

		if (pass == P_HI && e->rec.on && rec_full(e))
			break;  /* the recorded keys are of no use */
		if (weld_exec_run_chunk(e, j, first, n, pass, mode, err) < 0)
			return -1;
		weld_exec_progress(e, j, sample_pass(pass) ? n / SAMPLE_STRIDE : n);
		if (pass == P_L1)
			for (uint64_t b = 0; b < (n + WELD_BLOCK - 1) / WELD_BLOCK; b++)
				for (size_t s = 0; s < j->nsrc; s++) {
					const double *sums =
						e->block_sums + (b * e->max_src + s) * 2;

					e->l1_all[s] += sums[0];
					e->l1_kept[s] += sums[1];
				}
		if (pass == P_SLERP)
			for (uint64_t b = 0; b < (n + WELD_BLOCK - 1) / WELD_BLOCK; b++)
				for (int k = 0; k < 3; k++)
					slerp_totals(e)[k] += e->block_sums[b * 3 + (size_t)k];
	}
	if (pass == P_HI || pass == P_LO || sample_pass(pass))
		weld_exec_hist_merge(e, j);
	return 0;
}

/* dare's rescale factor when it needs no L1 pass. */
void weld_exec_set_factors(struct exec *e, const struct weld_job *j)
{
	for (size_t s = 0; s < j->nsrc; s++)
		e->factor[s] = e->opts->rescale == WELD_RESCALE_INVERSE
			? (float)(1.0 / j->src[s].density) : 1.0f;
}

static void l1_factors(struct exec *e, const struct weld_job *j)
{
	for (size_t s = 0; s < j->nsrc; s++) {
		double a = e->l1_all[s], k = e->l1_kept[s];

		e->factor[s] = a < 1e-7 || k < 1e-7 ? 1.0f : (float)(a / k);
	}
}

/* One statistics pass over every job of the unit. */
static int stats_pass(struct exec *e, const struct weld_job *const *jobs, size_t nj,
		      enum pass pass, struct weld_error *err)
{
	e->sample_at = 0;
	for (size_t i = 0; i < nj; i++) {
		weld_exec_set_keys(e, jobs[i]);
		if (weld_exec_over_chunks(e, jobs[i], pass, DROP_RESCALE, err) < 0)
			return -1;
		e->sample_at += jobs[i]->nelem;
	}
	e->sample_at = 0;
	return 0;
}

/* dare --rescale l1: the L1 pass over the unit, then each source's rescale
 * factor from its sums; any other method's factors need no pass. */
static int unit_factors(struct exec *e, const struct weld_job *const *jobs, size_t nj,
			struct weld_error *err)
{
	const struct weld_job *j0 = jobs[0];

	if (!needs_l1(e, j0)) {
		weld_exec_set_factors(e, j0);
		return 0;
	}
	memset(e->l1_all, 0, e->max_src * sizeof(double));
	memset(e->l1_kept, 0, e->max_src * sizeof(double));
	/* one tensor whose draws fit: keep them for the apply pass */
	if (nj == 1 && e->draw_bits && j0->nelem <= 8 * e->plan->drop_stride)
		e->draws = DRAWS_STORE;
	for (size_t i = 0; i < nj; i++) {
		weld_exec_set_keys(e, jobs[i]);
		if (weld_exec_over_chunks(e, jobs[i], P_L1, DROP_PLAIN, err) < 0)
			return -1;
	}
	if (e->draws == DRAWS_STORE)
		e->draws = DRAWS_KNOWN;
	l1_factors(e, j0);
	return 0;
}

/* Team items: rec_locate, then rec_low_hist, of each active selection. */
static void locate_sel(void *ctx, int item)
{
	struct exec *e = ctx;
	struct sel_state *st = &e->sel[item];

	st->located = st->sel.all || st->sel.none || rec_locate(e, (size_t)item);
}

static void low_hist_sel(void *ctx, int item)
{
	struct exec *e = ctx;

	if (!e->sel[item].sel.all && !e->sel[item].sel.none)
		rec_low_hist(e, (size_t)item);
}

/* A slice's room for keys beyond a tile of every active selection (with
 * its run entries), which it needs at least; 0 if it has not that much:
 * then recording cannot work. */
static size_t rec_room(const struct exec *e)
{
	size_t active = 0, least;

	for (size_t q = 0; q < e->sel_slots; q++)
		active += !e->sel[q].sel.all && !e->sel[q].sel.none;
	least = active * (e->tile_elems + 2 * WELD_PLATEAUS);
	return e->rec.per_slice > least ? e->rec.per_slice - least : 0;
}

/* One pass that counts the keys above each range and records those in it;
 * it stops at the first slice out of room (the keys are then of no use). */
static int record_pass(struct exec *e, const struct weld_job *const *jobs, size_t nj,
		       struct weld_error *err)
{
	rec_start(e);
	for (size_t i = 0; i < nj && !rec_full(e); i++) {
		weld_exec_set_keys(e, jobs[i]);
		if (weld_exec_over_chunks(e, jobs[i], P_HI, DROP_RESCALE, err) < 0)
			return -1;
	}
	rec_stop(e);
	return 0;
}

/*
 * The thresholds from recorded keys: a sample guesses each range (whole
 * bins), one pass records it. If the keys do not fit, SAMPLE_FINE narrows
 * each range to whole keys and, when the keys the sample finds in them
 * should fit, a pass records them again. If a guess missed,
 * or the keys still do not fit, a HI pass picks the bins and a LO pass
 * records them. The recorded keys then give the counts APPLY needs.
 */
static int select_recorded(struct exec *e, const struct weld_job *const *jobs, size_t nj,
			   uint64_t unit, struct weld_error *err)
{
	const struct weld_job *j0 = jobs[0];
	bool covered = true;
	uint64_t share;
	size_t active = 0;

	/* a sample of the unit guesses where each threshold lies; each range
	 * should take at most an equal share of half the room (slices fill it
	 * unevenly, and lists grow by steps) */
	if (stats_pass(e, jobs, nj, P_SAMPLE, err) < 0)
		return -1;
	for (size_t q = 0; q < e->sel_slots; q++)
		active += !e->sel[q].sel.all && !e->sel[q].sel.none;
	share = active ? rec_room(e) / 2 * (uint64_t)e->n_slices / active : 0;
	for (size_t q = 0; q < e->sel_slots; q++) {
		e->rec.fine_shift[q] = -1;
		if (!e->sel[q].sel.all && !e->sel[q].sel.none)
			rec_guess(e, q, unit, share);   /* the passes below clear hist first */
	}
	if (record_pass(e, jobs, nj, err) < 0)
		return -1;
	if (e->rec.overflow) {
		uint64_t expect = 0;

		for (size_t q = 0; q < e->sel_slots; q++)
			if (!e->sel[q].sel.all && !e->sel[q].sel.none)
				rec_fine_start(e, q);
		if (stats_pass(e, jobs, nj, P_SAMPLE_FINE, err) < 0)
			return -1;
		for (size_t q = 0; q < e->sel_slots; q++)
			if (e->rec.fine_shift[q] >= 0) {
				expect += rec_refine(e, q, unit);
				memset(e->sel[q].hist, 0, WELD_HIST_BINS * sizeof(uint64_t));
			}
		/* again if the narrower ranges should fit in a quarter of the
		 * room (slices fill it unevenly, a small sample guesses
		 * roughly); else the fallback below */
		if (expect <= rec_room(e) / 4 * (uint64_t)e->n_slices &&
		    record_pass(e, jobs, nj, err) < 0)
			return -1;
	}
	/* selections are independent: one thread each */
	weld_team_run(e->team, (int)e->sel_slots, locate_sel, e);
	for (size_t q = 0; q < e->sel_slots; q++)
		covered = covered && e->sel[q].located;
	if (covered) {
		weld_team_run(e->team, (int)e->sel_slots, low_hist_sel, e);
	} else {
		/* the guess missed: count the high bits, then record just the
		 * chosen bins while counting their low bits */
		weld_exec_rec_clear(e);
		for (size_t q = 0; q < e->sel_slots; q++)
			if (!e->sel[q].sel.all && !e->sel[q].sel.none)
				memset(e->sel[q].hist, 0, WELD_HIST_BINS * sizeof(uint64_t));
		if (stats_pass(e, jobs, nj, P_HI, err) < 0)
			return -1;
		sel_pick(e, j0, false);
		for (size_t q = 0; q < e->sel_slots; q++) {
			e->rec.key_lo[q] = e->sel[q].hi_bin << 16;
			e->rec.key_hi[q] = e->sel[q].hi_bin << 16 | 0xFFFFu;
		}
		rec_start(e);
		if (stats_pass(e, jobs, nj, P_LO, err) < 0)
			return -1;
		rec_stop(e);
	}
	sel_pick(e, j0, true);
	if (!e->rec.overflow)
		rec_counts(e);
	else
		weld_exec_rec_clear(e);
	return 0;
}

/* The thresholds from histograms alone: a HI pass, then a LO pass. */
static int select_histograms(struct exec *e, const struct weld_job *const *jobs, size_t nj,
			     struct weld_error *err)
{
	for (int low = 0; low < 2; low++) {
		if (stats_pass(e, jobs, nj, low ? P_LO : P_HI, err) < 0)
			return -1;
		sel_pick(e, jobs[0], low);
	}
	return 0;
}

/* The statistics of one unit. With --scope model, `jobs` are all merged
 * jobs (in name order) and the unit is their union. */
int weld_exec_unit_stats(struct exec *e, const struct weld_job *const *jobs, size_t nj,
			 struct weld_error *err)
{
	const struct weld_job *j0 = jobs[0];
	uint64_t unit = 0;

	for (size_t i = 0; i < nj; i++)
		unit += jobs[i]->nelem;
	if (unit_factors(e, jobs, nj, err) < 0)
		return -1;
	weld_exec_sel_reset(e, j0, unit);
	e->rec.valid = false;
	if (!weld_exec_sel_active(e, j0))
		return 0;
	if (rec_room(e))
		return select_recorded(e, jobs, nj, unit, err);
	return select_histograms(e, jobs, nj, err);
}
