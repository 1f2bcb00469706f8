/*
 * half.h -- IEEE 754 binary16 <-> binary32/binary64 conversion by bit
 * manipulation (no compiler or hardware half support needed).
 *
 *  - mpsnorm_half_to_float: exact (every binary16 value is a float), keeps
 *    the sign of zero, infinities and NaN payloads.
 *  - mpsnorm_half_from_double: correctly rounded (round to nearest, ties to
 *    even) straight from double, so there is no double rounding through
 *    float. Overflow gives +-inf, underflow gives subnormals or +-0, NaN stays
 *    a (quiet) NaN with the top payload bits kept.
 *  - mpsnorm_half_from_float: the same for a float (exact widening first).
 */
#ifndef MPSNORM_CPU_HALF_H
#define MPSNORM_CPU_HALF_H

#include <stdint.h>
#include <string.h>

static inline float mpsnorm_half_to_float(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exponent = (uint32_t)(h >> 10) & 0x1fu;
    uint32_t mantissa = (uint32_t)h & 0x3ffu;
    uint32_t bits;
    float result;

    if (exponent == 0x1fu) {
        /* infinity or NaN: all-ones exponent, payload moved to the top */
        bits = sign | 0x7f800000u | (mantissa << 13);
    } else if (exponent != 0u) {
        /* normal: rebias 15 -> 127 */
        bits = sign | ((exponent + 112u) << 23) | (mantissa << 13);
    } else if (mantissa == 0u) {
        bits = sign; /* +-0 */
    } else {
        /* subnormal half = mantissa * 2^-24, exact in float */
        result = (float)mantissa * 5.9604644775390625e-8f;
        return (h & 0x8000u) != 0u ? -result : result;
    }
    memcpy(&result, &bits, sizeof result);
    return result;
}

static inline double mpsnorm_half_to_double(uint16_t h)
{
    return (double)mpsnorm_half_to_float(h);
}

static inline uint16_t mpsnorm_half_from_double(double value)
{
    uint64_t bits;
    uint16_t sign;
    int64_t exponent;
    uint64_t mantissa;

    memcpy(&bits, &value, sizeof bits);
    sign = (uint16_t)((bits >> 48) & 0x8000u);
    exponent = (int64_t)((bits >> 52) & 0x7ffu);
    mantissa = bits & 0x000fffffffffffffull;

    if (exponent == 0x7ff) {
        if (mantissa == 0u)
            return (uint16_t)(sign | 0x7c00u);
        /* NaN: keep the top payload bits, force quiet so it stays a NaN */
        return (uint16_t)(sign | 0x7e00u | (uint16_t)(mantissa >> 42));
    }
    if (exponent == 0)
        return sign; /* zero or a double subnormal: far below half's range */

    exponent -= 1023; /* unbiased */
    if (exponent > 15)
        return (uint16_t)(sign | 0x7c00u); /* >= 65536: overflow */

    if (exponent >= -14) {
        /* normal half; rounding may carry into the exponent (up to inf) */
        uint64_t kept = mantissa >> 42;
        uint64_t rest = mantissa & ((1ull << 42) - 1u);
        const uint64_t halfway = 1ull << 41;
        uint32_t result = ((uint32_t)(exponent + 15) << 10) | (uint32_t)kept;
        if (rest > halfway || (rest == halfway && (kept & 1u) != 0u))
            result += 1u;
        return (uint16_t)(sign | result);
    }

    if (exponent < -25)
        return sign; /* below half of the smallest subnormal 2^-24 */

    {
        /* subnormal half: value / 2^-24 = significand * 2^(exponent - 28) */
        uint64_t significand = mantissa | (1ull << 52);
        int shift = (int)(28 - exponent); /* 43 .. 53 */
        uint64_t kept = significand >> shift;
        uint64_t rest = significand & ((1ull << shift) - 1u);
        uint64_t halfway = 1ull << (shift - 1);
        uint32_t result = (uint32_t)kept;
        if (rest > halfway || (rest == halfway && (kept & 1u) != 0u))
            result += 1u; /* may become 0x400, the smallest normal: correct */
        return (uint16_t)(sign | result);
    }
}

static inline uint16_t mpsnorm_half_from_float(float value)
{
    return mpsnorm_half_from_double((double)value);
}

#endif /* MPSNORM_CPU_HALF_H */
