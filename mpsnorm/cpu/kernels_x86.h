/*
 * kernels_x86.h -- the kernel template compiled for one x86-64 instruction
 * set: included by kernels_avx2.c and kernels_avx512.c, each of which first
 * defines the template's parameters (kernels_impl.h) and
 *   KTARGET_GCC, KTARGET_CLANG   the target attribute string of each compiler
 * Nothing compiled here runs unless mpsnorm_kernels_get chose it at run time.
 */
#if !defined(KTARGET_GCC) || !defined(KTARGET_CLANG)
#error "kernels_x86.h needs KTARGET_GCC and KTARGET_CLANG"
#endif

#include "kernels.h"

#if defined(MPSNORM_X86_KERNELS)
/* system headers first, outside the target region */
#include <immintrin.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define KPRAGMA(text) _Pragma(#text)
#define KPRAGMA_EXPANDED(text) KPRAGMA(text)
#if defined(__clang__)
KPRAGMA_EXPANDED(clang attribute push(__attribute__((target(KTARGET_CLANG))), apply_to = function))
#else
#pragma GCC push_options
KPRAGMA_EXPANDED(GCC target(KTARGET_GCC))
#endif

#include "kernels_impl.h"

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
#undef KPRAGMA
#undef KPRAGMA_EXPANDED
#else
typedef int mpsnorm_kernels_x86_unused; /* ISO C: no empty translation unit */
#endif

#undef KTARGET_GCC
#undef KTARGET_CLANG
