/*
 * kernels_avx2.c -- the kernels for x86-64 with AVX2, FMA and F16C
 * (chosen at run time by mpsnorm_kernels_get; nothing here runs elsewhere).
 */
#include "kernels.h"

#if defined(MPSNORM_X86_KERNELS)
/* system headers first, outside the target region */
#include <immintrin.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")
#endif

#define MPSNORM_ISA 2
#define KNAME(x) x##_avx2
#define KTABLE mpsnorm_kernels_avx2
#define KSTRING "avx2"
#include "kernels_impl.h"

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
#else
typedef int mpsnorm_kernels_avx2_unused; /* ISO C: no empty translation unit */
#endif
