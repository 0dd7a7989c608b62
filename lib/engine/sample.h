/*
 * sample.h - which super-tiles the top-k sample takes (the SAMPLE and
 * SAMPLE_FINE passes of select_pass.c; private to lib/engine).
 *
 * The sample is one super-tile in SAMPLE_STRIDE of a unit, the super-tiles
 * numbered along the unit (with --scope model, the merged tensors one after
 * the other): in each group of SAMPLE_STRIDE consecutive super-tiles, the
 * one at a position that a hash of the group's number picks, and in the
 * first group the first (a unit of one super-tile is sampled whole). Each
 * super-tile but the first is so taken with probability 1/SAMPLE_STRIDE
 * whatever its place, and data that repeat with a period of about a
 * multiple of the stride (tensors cut from one pool of numbers, rows of a
 * fixed pattern) are not sampled at one phase only, as they are by every
 * SAMPLE_STRIDE-th super-tile. Where the sample errs, the selection costs
 * more passes, never other bytes.
 */
#ifndef WELD_SAMPLE_H
#define WELD_SAMPLE_H

#include <stdbool.h>
#include <stdint.h>

#define SAMPLE_STRIDE 16

/* Whether the sample takes super-tile i of its unit. */
static inline bool sample_takes(uint64_t i)
{
	uint64_t g = i / SAMPLE_STRIDE, h = g;

	if (!g)
		return i == 0;
	h ^= h >> 33;
	h *= 0xFF51AFD7ED558CCDull;
	h ^= h >> 33;
	return i % SAMPLE_STRIDE == h % SAMPLE_STRIDE;
}

#endif
