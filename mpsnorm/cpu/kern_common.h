/*
 * kern_common.h -- the vocabulary every part of the kernel template
 * (kernels_impl.h) shares besides the vector one (simd.h): integer helpers
 * and name pasting for the parts instantiated once per element type.
 */
#ifndef MPSNORM_CPU_KERN_COMMON_H
#define MPSNORM_CPU_KERN_COMMON_H

#include <stdint.h>

static inline int64_t kmin(int64_t a, int64_t b)
{
    return a < b ? a : b;
}

static inline int64_t kmax(int64_t a, int64_t b)
{
    return a > b ? a : b;
}

/* name_suffix, with the suffix a macro (f or d) expanded first */
#define KCAT(name, suffix) KCAT_EXPANDED(name, suffix)
#define KCAT_EXPANDED(name, suffix) name##_##suffix

#endif /* MPSNORM_CPU_KERN_COMMON_H */
