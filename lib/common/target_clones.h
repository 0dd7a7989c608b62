/*
 * target_clones.h - WELD_HOT marks the loops that carry a merge; WELD_AVX512
 * says whether the AVX-512 kernels are built.
 */
#ifndef WELD_TARGET_CLONES_H
#define WELD_TARGET_CLONES_H

/* Hot loops are compiled for several instruction sets and picked at run
 * time (x86-64-v4 brings AVX-512's 64-bit multiplies to dare's random
 * draws). Only exact operations run in them (no fused multiply-add, no
 * reassociation), so every variant gives the same bits. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_ADDRESS__)
#define WELD_HOT __attribute__((target_clones("arch=x86-64-v4", "avx2", "default")))
#else
#define WELD_HOT
#endif

/* Kernels written for AVX-512 in intrinsics (picked at run time by
 * __builtin_cpu_supports, beside a plain version of each) are compiled
 * by gcc on x86-64. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define WELD_AVX512 1
#else
#define WELD_AVX512 0
#endif

#endif
