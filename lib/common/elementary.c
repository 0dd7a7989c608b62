/*
 * elementary.c - weld's own exp, log and tanh (see elementary.h for their
 * definitions).
 */
#include "elementary.h"
#include "target_clones.h"

#include <math.h>
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

double weld_tanh(double x)
{
	double a = fabs(x), s, t, e;

	if (x != x)
		return x + x;
	if (a < 0x1p-5) {
		s = a * a;
		t = a + a * (s * (-0x1.5555555555555p-2 +
				  s * (0x1.1111111111111p-3 +
				       s * (-0x1.ba1ba1ba1ba1cp-5 + s * 0x1.664f4882c10fap-6))));
	} else {
		e = weld_exp(-2 * a);
		t = (1 - e) / (1 + e);
	}
	return signbit(x) ? -t : t;
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

/*
 * log(i / 128), i = 96..192, as hi = the value rounded to the nearest
 * double and lo = the rest rounded: each from Python's decimal module to 60
 * digits, as tests/ref/ref_exp.py makes them again and checks.
 */
const double weld_log_hi[WELD_LOG_N] = {
	-0x1.269621134db92p-2, -0x1.1bf99635a6b95p-2, -0x1.1178e8227e47cp-2,
	-0x1.07138604d5862p-2, -0x1.f991c6cb3b379p-3, -0x1.e530effe71012p-3,
	-0x1.d1037f2655e7bp-3, -0x1.bd087383bd8adp-3, -0x1.a93ed3c8ad9e3p-3,
	-0x1.95a5adcf7017fp-3, -0x1.823c16551a3c2p-3, -0x1.6f0128b756abcp-3,
	-0x1.5bf406b543db2p-3, -0x1.4913d8333b561p-3, -0x1.365fcb0159016p-3,
	-0x1.23d712a49c202p-3, -0x1.1178e8227e47cp-3, -0x1.fe89139dbd566p-4,
	-0x1.da727638446a2p-4, -0x1.b6ac88dad5b1cp-4, -0x1.9335e5d594989p-4,
	-0x1.700d30aeac0e1p-4, -0x1.4d3115d207eacp-4, -0x1.2aa04a44717a5p-4,
	-0x1.08598b59e3a07p-4, -0x1.ccb73cdddb2ccp-5, -0x1.894aa149fb343p-5,
	-0x1.466aed42de3eap-5, -0x1.0415d89e74444p-5, -0x1.8492528c8cabfp-6,
	-0x1.0205658935847p-6, -0x1.010157588de71p-7, 0.0,
	0x1.fe02a6b106789p-8, 0x1.fc0a8b0fc03e4p-7, 0x1.7b91b07d5b11bp-6,
	0x1.f829b0e783300p-6, 0x1.39e87b9febd60p-5, 0x1.77458f632dcfcp-5,
	0x1.b42dd711971bfp-5, 0x1.f0a30c01162a6p-5, 0x1.16536eea37ae1p-4,
	0x1.341d7961bd1d1p-4, 0x1.51b073f06183fp-4, 0x1.6f0d28ae56b4cp-4,
	0x1.8c345d6319b21p-4, 0x1.a926d3a4ad563p-4, 0x1.c5e548f5bc743p-4,
	0x1.e27076e2af2e6p-4, 0x1.fec9131dbeabbp-4, 0x1.0d77e7cd08e59p-3,
	0x1.1b72ad52f67a0p-3, 0x1.29552f81ff523p-3, 0x1.371fc201e8f74p-3,
	0x1.44d2b6ccb7d1ep-3, 0x1.526e5e3a1b438p-3, 0x1.5ff3070a793d4p-3,
	0x1.6d60fe719d21dp-3, 0x1.7ab890210d909p-3, 0x1.87fa06520c911p-3,
	0x1.9525a9cf456b4p-3, 0x1.a23bc1fe2b563p-3, 0x1.af3c94e80bff3p-3,
	0x1.bc286742d8cd6p-3, 0x1.c8ff7c79a9a22p-3, 0x1.d5c216b4fbb91p-3,
	0x1.e27076e2af2e6p-3, 0x1.ef0adcbdc5936p-3, 0x1.fb9186d5e3e2bp-3,
	0x1.0402594b4d041p-2, 0x1.0a324e27390e3p-2, 0x1.1058bf9ae4ad5p-2,
	0x1.1675cababa60ep-2, 0x1.1c898c16999fbp-2, 0x1.22941fbcf7966p-2,
	0x1.2895a13de86a3p-2, 0x1.2e8e2bae11d31p-2, 0x1.347dd9a987d55p-2,
	0x1.3a64c556945eap-2, 0x1.404308686a7e4p-2, 0x1.4618bc21c5ec2p-2,
	0x1.4be5f957778a1p-2, 0x1.51aad872df82dp-2, 0x1.5767717455a6cp-2,
	0x1.5d1bdbf5809cap-2, 0x1.62c82f2b9c795p-2, 0x1.686c81e9b14afp-2,
	0x1.6e08eaa2ba1e4p-2, 0x1.739d7f6bbd007p-2, 0x1.792a55fdd47a2p-2,
	0x1.7eaf83b82afc3p-2, 0x1.842d1da1e8b17p-2, 0x1.89a3386c1425bp-2,
	0x1.8f11e873662c7p-2, 0x1.947941c2116fbp-2, 0x1.99d958117e08bp-2,
	0x1.9f323ecbf984cp-2,
};
const double weld_log_lo[WELD_LOG_N] = {
	-0x1.e0efadd9db02bp-56, 0x1.12aeb84249223p-57, 0x1.0e63a5f01c691p-57,
	-0x1.cdb16ed4e9138p-56, -0x1.f665066f980a2p-57, -0x1.2276041f43042p-59,
	-0x1.60629242471a2p-57, -0x1.dd355f6a516d7p-60, -0x1.bcafa9de97203p-57,
	-0x1.142c507fb7a3dp-58, 0x1.1232ce70be781p-57, 0x1.8de59c21e166cp-57,
	0x1.1f5b44c0df7e7p-61, 0x1.0d5604930f135p-58, -0x1.7d411a5b944adp-58,
	0x1.6e38161051d69p-57, 0x1.0e63a5f01c691p-58, 0x1.ac9f4215f9393p-58,
	-0x1.401fa71733019p-58, 0x1.0057eed1ca59fp-59, 0x1.478a85704ccb7p-58,
	0x1.72566212cdd05p-61, -0x1.769f42c7842ccp-58, 0x1.d15d38d2fa3f7p-58,
	0x1.dd7009902bf32p-58, 0x1.e48fb0500efd4p-59, -0x1.a8be97660a23dp-60,
	0x1.cdd6f7f4a137ep-59, -0x1.c05cf1d753622p-59, 0x1.d192d0619fa67p-60,
	-0x1.27c8e8416e71fp-60, -0x1.46662d417ced0p-62, 0.0,
	-0x1.e44b7e3711ebfp-67, -0x1.83092c59642a1p-62, -0x1.5b602ace3a510p-60,
	0x1.33e3f04f1ef23p-60, -0x1.5bfa937f551bbp-59, 0x1.18d3ca87b9296p-59,
	-0x1.eb9759c130499p-60, 0x1.85f325c5bbacdp-59, -0x1.79da3e8c22cdap-60,
	-0x1.b599f227becbbp-58, 0x1.a49e39a1a8be4p-58, -0x1.906d99184b992p-58,
	-0x1.4a697ab3424a9p-61, 0x1.942f48aa70ea9p-58, 0x1.5d617ef8161b1p-60,
	-0x1.61578001e0162p-60, -0x1.5746b9981b36cp-58, 0x1.9a5dc5e9030acp-57,
	0x1.483023472cd74p-58, 0x1.301771c407dbfp-57, 0x1.de6cb62af18a0p-58,
	0x1.9f4f6543e1f88p-57, -0x1.746ff8a470d3ap-57, -0x1.bc60efafc6f6ep-58,
	-0x1.caae268ecd179p-57, 0x1.be36b2d6a0608p-59, -0x1.bf7fdbfa08d9ap-57,
	0x1.d904c1d4e2e26p-57, 0x1.93711b07a998cp-59, -0x1.398cff3641985p-58,
	0x1.4fce744870f55p-58, -0x1.4f689f8434012p-57, 0x1.6e443597e4d40p-57,
	-0x1.61578001e0162p-59, 0x1.48637950dc20dp-57, -0x1.caaae64f21acbp-57,
	-0x1.28ec217a5022dp-57, 0x1.7dcfde8061c03p-56, 0x1.89fa0ab4cb31dp-58,
	0x1.ce63eab883717p-61, -0x1.0e5c62aff1c44p-60, -0x1.76f5eb09628afp-56,
	0x1.7ad24c13f040ep-56, -0x1.8f4cdb95ebdf9p-56, -0x1.4dd4c580919f8p-57,
	-0x1.c68651945f97cp-57, -0x1.0bcfb6082ce6dp-56, 0x1.f42decdeccf1dp-56,
	-0x1.259b35b04813dp-57, 0x1.3927ac19f55e3p-59, 0x1.526adb283660cp-56,
	0x1.4236383dc7fe1p-56, 0x1.7b7af915300e5p-57, -0x1.ddea0f7f58e3dp-57,
	-0x1.cfb1b39ca3a0fp-56, -0x1.8c76ceb014b04p-56, 0x1.f057691fe9ed7p-56,
	0x1.92ce979ed2950p-56, 0x1.24ec519784676p-56, -0x1.29639dfbbf0fbp-56,
	0x1.f85da755a61a3p-56, -0x1.16cc8bae0bbe4p-56, -0x1.a2b6889dc3e72p-57,
	-0x1.a92e513217f5cp-59,
};

/* a + b = *s + *err exactly (Knuth's two-sum: six roundings, none lost) */
static void two_sum(double a, double b, double *s, double *err)
{
	double t;

	*s = a + b;
	t = *s - a;
	*err = (a - (*s - t)) + (b - t);
}

double weld_log(double x)
{
	const uint64_t frac = 0xFFFFFFFFFFFFFu;
	double m, c, d, u, uh, ul, ed, s, err, h, err2, p;
	uint64_t b;
	int64_t e = -1023;
	int i;

	if (x != x)
		return x + x;
	if (x < 0)
		return WELD_LOG_NAN;
	if (x == 0)
		return -1.0 / 0.0;
	if (x == 1.0 / 0.0)
		return x;
	if (x < 0x1p-1022) {
		x *= 0x1p54;
		e -= 54;
	}
	memcpy(&b, &x, sizeof(b));
	e += (int64_t)(b >> 52);
	b = (b & frac) | ((uint64_t)1023 << 52);
	memcpy(&m, &b, sizeof(m));
	if (m >= 1.5) {
		m *= 0.5;
		e++;
	}
	i = (int)(m * 128.0 + 0.5);
	c = i * 0x1p-7;
	d = m - c;
	u = d / c;
	/* the rest of the division, exactly: d - u c with u split so that
	 * each part times c (8 bits) is exact */
	memcpy(&b, &u, sizeof(b));
	b &= ~(uint64_t)0xFF;
	memcpy(&uh, &b, sizeof(uh));
	ul = u - uh;
	ed = (double)e;
	two_sum(ed * WELD_LOG_LN2HI, weld_log_hi[i - WELD_LOG_FIRST], &s, &err);
	two_sum(s, u, &h, &err2);
	p = u * u * (-0.5 + u * (0x1.5555555555555p-2 + u * (-0.25 + u * (0.2 +
		u * (-0x1.5555555555555p-3 + u * 0x1.2492492492492p-3)))));
	return h + ((((err2 + err) + (ed * WELD_LOG_LN2LO + weld_log_lo[i - WELD_LOG_FIRST])) +
		     ((d - uh * c) - ul * c) / c) + p);
}
