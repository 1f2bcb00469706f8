/*
 * kernels_portable.c -- the kernels for any CPU: 16-byte GNU C vectors
 * (SSE2 on x86-64, NEON on arm64), plain C elsewhere.
 */
#define MPSNORM_SIMD_LEVEL 0
#define KNAME(x) x##_portable
#define KTABLE mpsnorm_kernels_portable
#define KSTRING "portable"
#include "kernels_impl.h"
