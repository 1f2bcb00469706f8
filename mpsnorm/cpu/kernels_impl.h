/*
 * kernels_impl.h -- the kernel template: included by kernels_portable.c,
 * kernels_avx2.c and kernels_avx512.c, each of which first defines
 *   MPSNORM_SIMD_LEVEL  0 (portable), 2 (AVX2) or 3 (AVX-512), see simd.h
 *   KNAME(x)         the instruction set's name for a kernel function
 *   KTABLE           the name of the table it exports
 * and compiles everything below for its instruction set.
 */
#if !defined(MPSNORM_SIMD_LEVEL) || !defined(KNAME) || !defined(KTABLE) || !defined(KSTRING)
#error "kernels_impl.h needs MPSNORM_SIMD_LEVEL, KNAME(x), KTABLE and KSTRING"
#endif
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "kernels.h"
#include "simd.h"

#include "kern_io.h"
#include "kern_instance_norm.h"
#include "kern_lcn.h"

const mpsnorm_kernels KTABLE = {
    KSTRING,
    KNAME(instance_norm_reduce),
    KNAME(instance_norm_write),
    KNAME(lcn_rows),
};
