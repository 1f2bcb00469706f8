/*
 * kernels_avx512.c -- the kernels for x86-64 with AVX-512 F/BW/DQ/VL, FMA
 * and F16C (chosen at run time by mpsnorm_kernels_get).
 */
#define MPSNORM_SIMD_LEVEL 3
#define KNAME(x) x##_avx512
#define KTABLE mpsnorm_kernels_avx512
#define KSTRING "avx512"
#define KTARGET_GCC "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,f16c,prefer-vector-width=512"
#define KTARGET_CLANG "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,f16c"
#include "kernels_x86.h"
