#!/usr/bin/python3
"""weld's own exp, log and tanh (lib/common/elementary.h) in NumPy, for ref_rank.py.

Written from the definitions in elementary.h: the same IEEE 754 operations
in double, in the same order (NumPy rounds each one; it never fuses a
multiply and an add), so the bits are weld_exp's, weld_log's and weld_tanh's. The tables of 2^(j/16) and
of log(i/128) are made here from Python's decimal module, as elementary.c
says its entries were.

Run as a program, it checks itself (tests/cli/test_exp.sh): the tables
against elementary.c's, the special values, and the known answers that
tests/unit/test_elementary.c asserts for the C code.
"""

import os
import re
import sys
from decimal import Decimal, getcontext

import numpy as np

N = 16


def tables():
    """hi = 2^(j/16) rounded to double, tail = (2^(j/16) - hi) / hi rounded."""
    getcontext().prec = 60
    ln2 = Decimal(2).ln()
    hi, tail = [], []
    for j in range(N):
        v = (ln2 * j / N).exp()
        h = float(v)
        hi.append(h)
        tail.append(float((v - Decimal(h)) / Decimal(h)))
    return np.array(hi), np.array(tail)


HI, TAIL = tables()
SHIFT = float.fromhex("0x1.8p52")
INVLN2N = float.fromhex("0x1.71547652b82fep+4")
LN2HI = float.fromhex("0x1.62e42fefc0000p-5")
LN2LO = float.fromhex("-0x1.c610ca86c3899p-41")
# 1/i! rounded to double, i = 3..7
C3, C4, C5, C6, C7 = (float.fromhex(h) for h in (
    "0x1.5555555555555p-3", "0x1.5555555555555p-5", "0x1.1111111111111p-7",
    "0x1.6c16c16c16c17p-10", "0x1.a01a01a01a01ap-13"))
U64 = np.uint64


def weld_exp(x):
    """weld_exp of each value of x (float64 array or scalar)."""
    x = np.asarray(x, np.float64)
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        xc = np.where(x < -746.0, -746.0, x)
        xc = np.where(xc > 710.0, 710.0, xc)
        kd = xc * INVLN2N + SHIFT
        m = kd.view(U64) & U64(0xFFFFFFFFFFFFF)
        kd = kd - SHIFT
        r = xc - kd * LN2HI
        r = r - kd * LN2LO
        j = (m & U64(N - 1)).astype(np.intp)
        hi, tail = HI[j], TAIL[j]
        r2 = r * r
        t = ((tail + r) + r2 * (0.5 + r * C3)) + (r2 * r2) * ((C4 + r * C5) + r2 * (C6 + r * C7))
        y = hi + hi * t
        eb = (m >> U64(4)) - (U64(1) << U64(47)) + U64(2048)
        e1b = eb >> U64(1)
        s1 = ((e1b - U64(1)) << U64(52)).view(np.float64)
        s2 = ((eb - e1b - U64(1)) << U64(52)).view(np.float64)
        y = (y * s1) * s2
        return np.where(np.isnan(x), x + x, y)


LOG_FIRST, LOG_N = 96, 97
LOG_LN2HI = float.fromhex("0x1.62e42fefa3800p-1")
LOG_LN2LO = float.fromhex("0x1.ef35793c76730p-45")
# 1/3, 1/6, 1/7 rounded to double
L3, L6, L7 = (float.fromhex(h) for h in (
    "0x1.5555555555555p-2", "0x1.5555555555555p-3", "0x1.2492492492492p-3"))


def log_tables():
    """hi = log(i/128) rounded to double, lo = the rest rounded, i = 96..192."""
    getcontext().prec = 60
    hi, lo = [], []
    for i in range(LOG_FIRST, LOG_FIRST + LOG_N):
        v = (Decimal(i) / 128).ln()
        h = float(v)
        hi.append(h)
        lo.append(float(v - Decimal(h)))
    return np.array(hi), np.array(lo)


LOGHI, LOGLO = log_tables()


def _two_sum(a, b):
    s = a + b
    t = s - a
    return s, (a - (s - t)) + (b - t)


def weld_log(x):
    """weld_log of each value of x (float64 array or scalar)."""
    x = np.asarray(x, np.float64)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        sub = x < 2.0 ** -1022
        b = np.where(sub, x * 2.0 ** 54, x).view(U64)
        e = (b >> U64(52)).astype(np.int64) - 1023 - np.where(sub, 54, 0)
        m = ((b & U64(0xFFFFFFFFFFFFF)) | U64(1023 << 52)).view(np.float64)
        big = m >= 1.5
        m = np.where(big, m * 0.5, m)
        e = e + big
        i = np.clip((m * 128.0 + 0.5).astype(np.int64), LOG_FIRST, LOG_FIRST + LOG_N - 1)
        c = i * 2.0 ** -7
        d = m - c
        u = d / c
        uh = (u.view(U64) & ~U64(0xFF)).view(np.float64)
        ul = u - uh
        ed = e.astype(np.float64)
        s, err = _two_sum(ed * LOG_LN2HI, LOGHI[i - LOG_FIRST])
        h, err2 = _two_sum(s, u)
        p = u * u * (-0.5 + u * (L3 + u * (-0.25 + u * (0.2 + u * (-L6 + u * L7)))))
        y = h + ((((err2 + err) + (ed * LOG_LN2LO + LOGLO[i - LOG_FIRST])) + ((d - uh * c) - ul * c) / c) + p)
        y = np.where(x == np.inf, np.inf, y)
        y = np.where(x == 0, -np.inf, y)
        y = np.where(x < 0, np.nan, y)
        return np.where(np.isnan(x), x + x, y)


# tanh's series: -1/3, 2/15, -17/315, 62/2835 rounded to double
T3, T5, T7, T9 = (float.fromhex(h) for h in (
    "-0x1.5555555555555p-2", "0x1.1111111111111p-3", "-0x1.ba1ba1ba1ba1cp-5",
    "0x1.664f4882c10fap-6"))


def weld_tanh(x):
    """weld_tanh of each value of x (float64 array or scalar)."""
    x = np.asarray(x, np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        a = np.abs(x)
        s = a * a
        series = a + a * (s * (T3 + s * (T5 + s * (T7 + s * T9))))
        e = weld_exp(-2 * a)
        t = np.where(a < 2.0 ** -5, series, (1 - e) / (1 + e))
        t = np.where(np.signbit(x), -t, t)
        return np.where(np.isnan(x), x + x, t)


def known_answer_points():
    """The points of test_elementary.c's known answer: u = i * 2654435761
    mod 2^32, v = u 2^-32; by i mod 3: -750 v, -0.1 v, 1420 v - 710."""
    i = np.arange(1 << 20, dtype=U64)
    v = ((i * U64(2654435761)) & U64(0xFFFFFFFF)).astype(np.float64) * 2.0 ** -32
    k = i % U64(3)
    return np.where(k == 0, -750.0 * v, np.where(k == 1, -0.1 * v, 1420.0 * v - 710.0))


def known_answer():
    """The sum of the bits of weld_exp at those points, modulo 2^64."""
    with np.errstate(over="ignore"):
        return int(weld_exp(known_answer_points()).view(U64).sum(dtype=U64))


# the value test_elementary.c asserts
KNOWN_ANSWER = 0x2f9bcfa68db78bb1


def log_known_answer():
    """The sum of the bits of weld_log at test_elementary.c's points, modulo
    2^64: v as above; by i mod 3: 2 v, 1 + (v - 0.5) 2^-5, (v + 0.5)
    2^((i mod 2001) - 1000)."""
    i = np.arange(1 << 20, dtype=U64)
    v = ((i * U64(2654435761)) & U64(0xFFFFFFFF)).astype(np.float64) * 2.0 ** -32
    k = i % U64(3)
    far = np.ldexp(v + 0.5, (i % U64(2001)).astype(np.int64) - 1000)
    x = np.where(k == 0, 2 * v, np.where(k == 1, 1 + (v - 0.5) * 2.0 ** -5, far))
    return int(weld_log(x).view(U64).sum(dtype=U64))


LOG_KNOWN_ANSWER = 0x6cb502d1b0792d78


def tanh_known_answer():
    """The sum of the bits of weld_tanh at test_elementary.c's points,
    modulo 2^64: v as above; by i mod 3: (v - 0.5) 2^-3, (v - 0.5) 50,
    (v + 0.5) 2^((i mod 64) - 60)."""
    i = np.arange(1 << 20, dtype=U64)
    v = ((i * U64(2654435761)) & U64(0xFFFFFFFF)).astype(np.float64) * 2.0 ** -32
    k = i % U64(3)
    far = np.ldexp(v + 0.5, (i % U64(64)).astype(np.int64) - 60)
    x = np.where(k == 0, (v - 0.5) * 2.0 ** -3, np.where(k == 1, (v - 0.5) * 50, far))
    return int(weld_tanh(x).view(U64).sum(dtype=U64))


TANH_KNOWN_ANSWER = 0x89970d46fe8e926b


def _c_tables():
    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, "..", "..", "lib", "common", "elementary.c")) as f:
        src = f.read()
    out = []
    for name, n in (("weld_exp_hi", "WELD_EXP_N"), ("weld_exp_tail", "WELD_EXP_N"),
                    ("weld_log_hi", "WELD_LOG_N"), ("weld_log_lo", "WELD_LOG_N")):
        body = re.search(name + r"\[" + n + r"\] = \{(.*?)\};", src, re.S).group(1)
        out.append([float.fromhex(t) if "x" in t else float(t)
                    for t in re.findall(r"-?0x[0-9a-f.]+p[-+]\d+|-?\d+\.\d+", body)])
    return out


def self_test():
    fails = 0

    def check(ok, what):
        nonlocal fails
        print("%s - ref_exp: %s" % ("ok" if ok else "not ok", what))
        fails += not ok

    chi, ctail, clhi, cllo = _c_tables()
    check(chi == list(HI) and ctail == list(TAIL), "elementary.c's tables are 2^(j/16) and its tails")
    check(clhi == list(LOGHI) and cllo == list(LOGLO), "elementary.c's tables are log(i/128) and its rests")
    sp = weld_exp(np.array([0.0, -0.0, -np.inf, np.inf, -745.0, -745.2, 710.0, 1.0, np.nan]))
    check(list(sp[:7]) == [1.0, 1.0, 0.0, np.inf, 2.0 ** -1074, 0.0, np.inf]
          and sp[7] == float.fromhex("0x1.5bf0a8b145769p+1") and np.isnan(sp[8]),
          "special values")
    got = known_answer()
    check(got == KNOWN_ANSWER, "known answer 0x%016x (test_elementary.c: 0x%016x)"
          % (got, KNOWN_ANSWER))
    sp = weld_log(np.array([1.0, 0.0, -0.0, np.inf, -1.0, np.nan, 2.0, 2.0 ** -1074,
                            1 + 2.0 ** -52]))
    check(list(sp[:4]) == [0.0, -np.inf, -np.inf, np.inf] and np.isnan(sp[4]) and np.isnan(sp[5])
          and list(sp[6:]) == [float.fromhex(h) for h in (
              "0x1.62e42fefa39efp-1", "-0x1.74385446d71c3p+9", "0x1.fffffffffffffp-53")],
          "log's special values")
    got = log_known_answer()
    check(got == LOG_KNOWN_ANSWER, "log's known answer 0x%016x (test_elementary.c: 0x%016x)"
          % (got, LOG_KNOWN_ANSWER))
    sp = weld_tanh(np.array([0.0, -0.0, np.inf, -np.inf, 400.0, 2.0 ** -1074, -1e-300, np.nan]))
    check(list(sp[:7]) == [0.0, -0.0, 1.0, -1.0, 1.0, 2.0 ** -1074, -1e-300]
          and np.signbit(sp[1]) and np.isnan(sp[7]), "tanh's special values")
    got = tanh_known_answer()
    check(got == TANH_KNOWN_ANSWER, "tanh's known answer 0x%016x (test_elementary.c: 0x%016x)"
          % (got, TANH_KNOWN_ANSWER))
    print("%d passed, %d failed" % (8 - fails, fails))
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(self_test())
