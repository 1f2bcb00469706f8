/*
 * kernels_avx2.c -- the kernels for x86-64 with AVX2, FMA and F16C
 * (chosen at run time by mpsnorm_kernels_get; nothing here runs elsewhere).
 */
#define MPSNORM_SIMD_LEVEL 2
#define KNAME(x) x##_avx2
#define KTABLE mpsnorm_kernels_avx2
#define KSTRING "avx2"
#define KTARGET_GCC "avx2,fma,f16c"
#define KTARGET_CLANG "avx2,fma,f16c"
#include "kernels_x86.h"
