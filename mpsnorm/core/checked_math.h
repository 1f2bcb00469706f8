/* checked_math.h -- overflow-checked 64-bit products.
 *
 * Size and stride arithmetic runs on every call; a 64-bit division per
 * check costs more than a whole small kernel, so the compilers' overflow
 * builtins are used where they exist, with a division-based fallback. */
#ifndef MPSNORM_CHECKED_MATH_H
#define MPSNORM_CHECKED_MATH_H

#include <stdint.h>

/* *product = a * b; returns 0 (and leaves *product unspecified) on overflow. */
static inline int mpsnorm_mul_u64(uint64_t a, uint64_t b, uint64_t *product)
{
#if defined(__GNUC__) || defined(__clang__)
    return !__builtin_mul_overflow(a, b, product);
#else
    if (b != 0 && a > UINT64_MAX / b)
        return 0;
    *product = a * b;
    return 1;
#endif
}

/* *product = a * b for a, b >= 0; returns 0 on overflow of int64_t. */
static inline int mpsnorm_mul_nonneg_i64(int64_t a, int64_t b, int64_t *product)
{
    uint64_t wide;
    if (!mpsnorm_mul_u64((uint64_t)a, (uint64_t)b, &wide) || wide > (uint64_t)INT64_MAX)
        return 0;
    *product = (int64_t)wide;
    return 1;
}

#endif /* MPSNORM_CHECKED_MATH_H */
