/*
 * kernels_avx512.c -- the kernels for x86-64 with AVX-512 F/BW/DQ/VL, FMA
 * and F16C (chosen at run time by mpsnorm_kernels_get).
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
#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,f16c"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,f16c,prefer-vector-width=512")
#endif

#define MPSNORM_ISA 3
#define KNAME(x) x##_avx512
#define KTABLE mpsnorm_kernels_avx512
#define KSTRING "avx512"
#include "kernels_impl.h"

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
#else
typedef int mpsnorm_kernels_avx512_unused;
#endif
