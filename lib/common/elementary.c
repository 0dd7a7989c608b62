/*
 * elementary.c - weld's own exp (see elementary.h for its definition).
 */
#include "elementary.h"
#include "target_clones.h"

#include <string.h>

/*
 * hi = 2^(j/16) rounded to the nearest double, tail = (2^(j/16) - hi) / hi
 * rounded, j = 0..15: each from 2^(j/16) to 60 digits (Python's decimal
 * module: exp(j ln(2) / 16)); tests/ref/ref_exp.py makes them so again,
 * and its test compares them with these.
 */
const double weld_exp_hi[WELD_EXP_N] = {
	0x1p+0, 0x1.0b5586cf9890fp+0, 0x1.172b83c7d517bp+0, 0x1.2387a6e756238p+0,
	0x1.306fe0a31b715p+0, 0x1.3dea64c123422p+0, 0x1.4bfdad5362a27p+0, 0x1.5ab07dd485429p+0,
	0x1.6a09e667f3bcdp+0, 0x1.7a11473eb0187p+0, 0x1.8ace5422aa0dbp+0, 0x1.9c49182a3f090p+0,
	0x1.ae89f995ad3adp+0, 0x1.c199bdd85529cp+0, 0x1.d5818dcfba487p+0, 0x1.ea4afa2a490dap+0,
};
const double weld_exp_tail[WELD_EXP_N] = {
	0.0, 0x1.79aa65d837b6dp-54, -0x1.01b15eaa59348p-55, 0x1.68efde3a8a894p-54,
	0x1.34d754db0abb6p-55, 0x1.59f48a72a4c6dp-55, 0x1.690cebb7aafb0p-56, 0x1.063e1e21c5409p-54,
	-0x1.3b3efbf5e2228p-54, -0x1.b32dcb94da51dp-56, 0x1.db72fc1f0eab4p-55, 0x1.1affc2b91ce27p-56,
	0x1.c1a7792cb3387p-55, 0x1.36eae30af0cb3p-56, 0x1.4a385a63d07a7p-56, -0x1.ff7128fd391f0p-55,
};

double weld_exp(double x)
{
	weld_vexp v = (weld_vexp){ 0 } + x;

	weld_exp_lanes(&v);
	return v[0];
}

WELD_HOT void weld_exp_array(const double *x, double *y, size_t n)
{
	size_t i = 0;

	for (; i + WELD_EXP_LANES <= n; i += WELD_EXP_LANES) {
		weld_vexp v;

		memcpy(&v, x + i, sizeof(v));
		weld_exp_lanes(&v);
		memcpy(y + i, &v, sizeof(v));
	}
	for (; i < n; i++)
		y[i] = weld_exp(x[i]);
}
