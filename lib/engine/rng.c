/*
 * rng.c - the counter-based random numbers of DESIGN 4.9.
 *
 * Every element's draw depends only on (seed, tensor name, model number,
 * element index), so results do not depend on threads, chunking or the
 * order in which tensors are processed.
 */
#include "merge.h"

#include <math.h>
#include <string.h>
#include <xxhash.h>

#define GOLDEN 0x9E3779B97F4A7C15ULL

uint64_t weld_rng_key(const char *tensor, int model_number, uint64_t seed)
{
	return XXH64(tensor, strlen(tensor), seed) ^ (GOLDEN * (uint64_t)model_number);
}

double weld_rng_uniform(uint64_t key, uint64_t j)
{
	uint64_t z = key + j;

	z += GOLDEN;
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
	z ^= z >> 31;
	return (double)(z >> 11) * 0x1.0p-53;
}

uint64_t weld_rng_threshold(double d)
{
	/* u < d  <=>  (z >> 11) * 2^-53 < d  <=>  (z >> 11) < ceil(d * 2^53):
	 * scaling by a power of two is exact, so is the ceiling, taken in
	 * integers (below 2^53 every conversion is exact; no libm call) */
	double x;
	uint64_t t;

	if (!(d > 0))
		return 0;
	if (d >= 1)
		return 1ULL << 53;
	x = d * 0x1.0p53;
	t = (uint64_t)x;
	return t + ((double)t < x);
}

/* Integer only, so every instruction set gives the same bits; the clones
 * let the compiler use wide multiplies where the processor has them. */
WELD_HOT void weld_rng_keep(uint64_t key, uint64_t first, size_t n, uint64_t thr,
			    unsigned char *keep)
{
	for (size_t j = 0; j < n; j++) {
		uint64_t z = key + first + j + GOLDEN;

		z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
		z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
		z ^= z >> 31;
		keep[j] = (z >> 11) < thr;
	}
}
