/*
 * simd.h -- the vector vocabulary of the kernel templates (kernels_impl.h).
 *
 * Included once per instruction set, after MPSNORM_SIMD_LEVEL is defined:
 *   3  AVX-512 (F, BW, DQ, VL) + F16C + FMA: 64-byte vectors
 *   2  AVX2 + F16C + FMA: 32-byte vectors
 *   0  portable: 16-byte GNU C vectors (SSE2 on x86-64, NEON on arm64), or
 *      one-lane "vectors" for a compiler without GNU vector extensions.
 *
 * Vectors are GNU C vector extensions (GCC and clang), so plain arithmetic
 * compiles to the instruction set of the including file; only square roots,
 * float16 conversions and transposes need intrinsics, each with a portable
 * fallback. Nothing here changes rounding: +, -, *, / and sqrt are IEEE
 * operations lane by lane, and NaN propagates (no fast-math anywhere).
 */
#ifndef MPSNORM_CPU_SIMD_H
#define MPSNORM_CPU_SIMD_H

#if !defined(MPSNORM_SIMD_LEVEL) || (MPSNORM_SIMD_LEVEL != 0 && MPSNORM_SIMD_LEVEL != 2 && \
                                     MPSNORM_SIMD_LEVEL != 3)
#error "simd.h needs MPSNORM_SIMD_LEVEL: 0 (portable), 2 (AVX2) or 3 (AVX-512)"
#endif

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "half.h"

#if MPSNORM_SIMD_LEVEL >= 2
#include <immintrin.h>
#elif defined(__SSE2__) && (defined(__GNUC__) || defined(__clang__))
#include <emmintrin.h>
#define MPSNORM_SIMD_SSE2 1
#elif defined(__aarch64__) && defined(__ARM_NEON) && (defined(__GNUC__) || defined(__clang__))
#include <arm_neon.h>
#define MPSNORM_SIMD_NEON 1
#endif

#if defined(__GNUC__) || defined(__clang__)
#define MPSNORM_VECTOR_EXT 1
#if MPSNORM_SIMD_LEVEL == 3
#define VBYTES 64
#elif MPSNORM_SIMD_LEVEL == 2
#define VBYTES 32
#else
#define VBYTES 16
#endif
typedef float vf __attribute__((vector_size(VBYTES)));
typedef double vd __attribute__((vector_size(VBYTES)));
typedef float vfh __attribute__((vector_size(VBYTES / 2))); /* VD floats */
typedef int32_t vfi __attribute__((vector_size(VBYTES)));
typedef int64_t vdi __attribute__((vector_size(VBYTES)));
#define VF (VBYTES / 4) /* floats per vector */
#define VD (VBYTES / 8) /* doubles per vector */
#else
typedef float vf;
typedef double vd;
typedef float vfh;
#define VF 1
#define VD 1
#endif

#if defined(__GNUC__) || defined(__clang__)
#define SIMD_INLINE static inline __attribute__((always_inline))
#else
#define SIMD_INLINE static inline
#endif

/* ---- loads, stores, broadcasts (any alignment) --------------------------- */

SIMD_INLINE vf ldf(const float *p)
{
    vf v;
    memcpy(&v, p, sizeof v);
    return v;
}
SIMD_INLINE void stf(float *p, vf v)
{
    memcpy(p, &v, sizeof v);
}
SIMD_INLINE vd ldd(const double *p)
{
    vd v;
    memcpy(&v, p, sizeof v);
    return v;
}
SIMD_INLINE void std_(double *p, vd v)
{
    memcpy(p, &v, sizeof v);
}
SIMD_INLINE vf bcf(float x)
{
    vf v = {0};
    return v + x;
}
SIMD_INLINE vd bcd(double x)
{
    vd v = {0};
    return v + x;
}

/* VD floats at p widened to doubles, and back (round to nearest). */
SIMD_INLINE vd ld_f2d(const float *p)
{
#if MPSNORM_SIMD_LEVEL == 3
    return (vd)_mm512_cvtps_pd(_mm256_loadu_ps(p));
#elif MPSNORM_SIMD_LEVEL == 2
    return (vd)_mm256_cvtps_pd(_mm_loadu_ps(p));
#elif defined(MPSNORM_VECTOR_EXT)
    vfh h;
    memcpy(&h, p, sizeof h);
    return __builtin_convertvector(h, vd);
#else
    return (double)*p;
#endif
}
SIMD_INLINE void st_d2f(float *p, vd v)
{
#if MPSNORM_SIMD_LEVEL == 3
    _mm256_storeu_ps(p, _mm512_cvtpd_ps((__m512d)v));
#elif MPSNORM_SIMD_LEVEL == 2
    _mm_storeu_ps(p, _mm256_cvtpd_ps((__m256d)v));
#elif defined(MPSNORM_VECTOR_EXT)
    vfh h = __builtin_convertvector(v, vfh);
    memcpy(p, &h, sizeof h);
#else
    *p = (float)v;
#endif
}

/* Asks for `bytes` from p to be brought towards the caches (L2) ahead of use;
 * nothing where the compiler has no prefetch. */
static inline void prefetch_bytes(const void *p, int64_t bytes)
{
#if defined(__GNUC__) || defined(__clang__)
    int64_t b;
    for (b = 0; b < bytes; b += 64)
        __builtin_prefetch((const char *)p + b, 0, 2);
#else
    (void)p;
    (void)bytes;
#endif
}

/* ---- lane functions ------------------------------------------------------ */

/* max(x, 0) that keeps NaN (a NaN is not < 0). */
SIMD_INLINE vf clamp0f(vf x)
{
#if defined(MPSNORM_VECTOR_EXT)
    vfi negative = x < 0.0f;
    return (vf)((vfi)x & ~negative);
#else
    return x < 0.0f ? 0.0f : x;
#endif
}
SIMD_INLINE vd clamp0d(vd x)
{
#if defined(MPSNORM_VECTOR_EXT)
    vdi negative = x < 0.0;
    return (vd)((vdi)x & ~negative);
#else
    return x < 0.0 ? 0.0 : x;
#endif
}

SIMD_INLINE vf sqrtvf(vf x)
{
#if MPSNORM_SIMD_LEVEL == 3
    return (vf)_mm512_sqrt_ps((__m512)x);
#elif MPSNORM_SIMD_LEVEL == 2
    return (vf)_mm256_sqrt_ps((__m256)x);
#elif defined(MPSNORM_SIMD_SSE2)
    return (vf)_mm_sqrt_ps((__m128)x);
#elif defined(MPSNORM_SIMD_NEON)
    return (vf)vsqrtq_f32((float32x4_t)x);
#elif defined(MPSNORM_VECTOR_EXT)
    int k;
    for (k = 0; k < VF; ++k)
        x[k] = sqrtf(x[k]);
    return x;
#else
    return sqrtf(x);
#endif
}
SIMD_INLINE vd sqrtvd(vd x)
{
#if MPSNORM_SIMD_LEVEL == 3
    return (vd)_mm512_sqrt_pd((__m512d)x);
#elif MPSNORM_SIMD_LEVEL == 2
    return (vd)_mm256_sqrt_pd((__m256d)x);
#elif defined(MPSNORM_SIMD_SSE2)
    return (vd)_mm_sqrt_pd((__m128d)x);
#elif defined(MPSNORM_SIMD_NEON)
    return (vd)vsqrtq_f64((float64x2_t)x);
#elif defined(MPSNORM_VECTOR_EXT)
    int k;
    for (k = 0; k < VD; ++k)
        x[k] = sqrt(x[k]);
    return x;
#else
    return sqrt(x);
#endif
}

/*
 * 1/sqrt(x) and 1/x for float lanes: the hardware estimate refined by one
 * Newton step (about 1 ulp; deterministic) where x is a positive finite
 * number, the exact IEEE operations for every other lane, so special values
 * come out exactly as 1/sqrtf(x) and 1/x give them. For 1/sqrt the refined
 * value is NaN exactly where x is 0, infinite, negative or NaN (inf*0 or
 * NaN inside the step), so one test finds them.
 */
SIMD_INLINE vf rsqrtvf(vf x)
{
#if MPSNORM_SIMD_LEVEL == 3
    const __m512 v = (__m512)x;
    __m512 y = _mm512_rsqrt14_ps(v);
    __m512 hx = _mm512_mul_ps(v, _mm512_set1_ps(0.5f));
    __m512 r = _mm512_mul_ps(y, _mm512_fnmadd_ps(_mm512_mul_ps(hx, y), y, _mm512_set1_ps(1.5f)));
    __mmask16 bad = _mm512_cmp_ps_mask(r, r, _CMP_UNORD_Q);
    if (bad != 0)
        r = _mm512_mask_blend_ps(bad, r, _mm512_div_ps(_mm512_set1_ps(1.0f), _mm512_sqrt_ps(v)));
    return (vf)r;
#elif MPSNORM_SIMD_LEVEL == 2
    const __m256 v = (__m256)x;
    __m256 y = _mm256_rsqrt_ps(v);
    __m256 hx = _mm256_mul_ps(v, _mm256_set1_ps(0.5f));
    __m256 r = _mm256_mul_ps(y, _mm256_fnmadd_ps(_mm256_mul_ps(hx, y), y, _mm256_set1_ps(1.5f)));
    /* the AVX2 estimate flushes subnormal x to 0: NaN above, so exact too */
    __m256 bad = _mm256_cmp_ps(r, r, _CMP_UNORD_Q);
    if (_mm256_movemask_ps(bad) != 0)
        r = _mm256_blendv_ps(r, _mm256_div_ps(_mm256_set1_ps(1.0f), _mm256_sqrt_ps(v)), bad);
    return (vf)r;
#else
    return bcf(1.0f) / sqrtvf(x);
#endif
}

SIMD_INLINE vf rcpvf(vf x)
{
#if MPSNORM_SIMD_LEVEL == 3
    const __m512 v = (__m512)x;
    __m512 y = _mm512_rcp14_ps(v);
    __m512 r = _mm512_mul_ps(y, _mm512_fnmadd_ps(v, y, _mm512_set1_ps(2.0f)));
    __mmask16 ok = _mm512_cmp_ps_mask(_mm512_abs_ps(v), _mm512_set1_ps(1.17549435e-38f),
                                      _CMP_GE_OQ) &
                   _mm512_cmp_ps_mask(_mm512_abs_ps(v), _mm512_set1_ps(1.70141173e+38f),
                                      _CMP_LE_OQ);
    if (ok != 0xffff)
        r = _mm512_mask_blend_ps(ok, _mm512_div_ps(_mm512_set1_ps(1.0f), v), r);
    return (vf)r;
#elif MPSNORM_SIMD_LEVEL == 2
    const __m256 v = (__m256)x;
    const __m256 a = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), v);
    __m256 y = _mm256_rcp_ps(v);
    __m256 r = _mm256_mul_ps(y, _mm256_fnmadd_ps(v, y, _mm256_set1_ps(2.0f)));
    __m256 ok = _mm256_and_ps(_mm256_cmp_ps(a, _mm256_set1_ps(1.17549435e-38f), _CMP_GE_OQ),
                              _mm256_cmp_ps(a, _mm256_set1_ps(1.70141173e+38f), _CMP_LE_OQ));
    if (_mm256_movemask_ps(ok) != 0xff)
        r = _mm256_blendv_ps(_mm256_div_ps(_mm256_set1_ps(1.0f), v), r, ok);
    return (vf)r;
#else
    return bcf(1.0f) / x;
#endif
}

/* x^-beta lane by lane (the general-beta path; beta 0.5 and 1 never get here). */
SIMD_INLINE vf powvf(vf x, float beta)
{
#if defined(MPSNORM_VECTOR_EXT)
    int k;
    for (k = 0; k < VF; ++k)
        x[k] = powf(x[k], -beta);
    return x;
#else
    return powf(x, -beta);
#endif
}
SIMD_INLINE vd powvd(vd x, double beta)
{
#if defined(MPSNORM_VECTOR_EXT)
    int k;
    for (k = 0; k < VD; ++k)
        x[k] = pow(x[k], -beta);
    return x;
#else
    return pow(x, -beta);
#endif
}

/* a * b + c, rounded once where the instruction set fuses it (AVX2, AVX-512), else
 * the two IEEE operations: either way the same in every caller of one table. */
SIMD_INLINE vf fmavf(vf a, vf b, vf c)
{
#if MPSNORM_SIMD_LEVEL == 3
    return (vf)_mm512_fmadd_ps((__m512)a, (__m512)b, (__m512)c);
#elif MPSNORM_SIMD_LEVEL == 2
    return (vf)_mm256_fmadd_ps((__m256)a, (__m256)b, (__m256)c);
#else
    return a * b + c;
#endif
}
SIMD_INLINE vd fmavd(vd a, vd b, vd c)
{
#if MPSNORM_SIMD_LEVEL == 3
    return (vd)_mm512_fmadd_pd((__m512d)a, (__m512d)b, (__m512d)c);
#elif MPSNORM_SIMD_LEVEL == 2
    return (vd)_mm256_fmadd_pd((__m256d)a, (__m256d)b, (__m256d)c);
#else
    return a * b + c;
#endif
}

/* ---- transposes of VF x VF (VD x VD) tiles in registers: r[k][g] = r[g][k] -- */

SIMD_INLINE void tr_regs_f(vf *r)
{
#if MPSNORM_SIMD_LEVEL == 3
    __m512 t[16], s[16];
    int k;
    for (k = 0; k < 8; ++k) {
        t[2 * k] = _mm512_unpacklo_ps((__m512)r[2 * k], (__m512)r[2 * k + 1]);
        t[2 * k + 1] = _mm512_unpackhi_ps((__m512)r[2 * k], (__m512)r[2 * k + 1]);
    }
    /* rows 4q..4q+3: s[4q + k] holds columns k, 4+k, 8+k, 12+k (one per 128-bit lane) */
    for (k = 0; k < 4; ++k) {
        __m512d a = _mm512_castps_pd(t[4 * k]), b = _mm512_castps_pd(t[4 * k + 2]);
        __m512d c = _mm512_castps_pd(t[4 * k + 1]), d = _mm512_castps_pd(t[4 * k + 3]);
        s[4 * k + 0] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, b));
        s[4 * k + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, b));
        s[4 * k + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(c, d));
        s[4 * k + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(c, d));
    }
    for (k = 0; k < 4; ++k) {
        __m512 u0 = _mm512_shuffle_f32x4(s[k], s[4 + k], 0x44);
        __m512 u1 = _mm512_shuffle_f32x4(s[8 + k], s[12 + k], 0x44);
        __m512 u2 = _mm512_shuffle_f32x4(s[k], s[4 + k], 0xee);
        __m512 u3 = _mm512_shuffle_f32x4(s[8 + k], s[12 + k], 0xee);
        r[k] = (vf)_mm512_shuffle_f32x4(u0, u1, 0x88);
        r[4 + k] = (vf)_mm512_shuffle_f32x4(u0, u1, 0xdd);
        r[8 + k] = (vf)_mm512_shuffle_f32x4(u2, u3, 0x88);
        r[12 + k] = (vf)_mm512_shuffle_f32x4(u2, u3, 0xdd);
    }
#elif MPSNORM_SIMD_LEVEL == 2
    __m256 t[8], s[8];
    int k;
    for (k = 0; k < 4; ++k) {
        t[2 * k] = _mm256_unpacklo_ps((__m256)r[2 * k], (__m256)r[2 * k + 1]);
        t[2 * k + 1] = _mm256_unpackhi_ps((__m256)r[2 * k], (__m256)r[2 * k + 1]);
    }
    for (k = 0; k < 2; ++k) {
        __m256d a = _mm256_castps_pd(t[4 * k]), b = _mm256_castps_pd(t[4 * k + 2]);
        __m256d c = _mm256_castps_pd(t[4 * k + 1]), d = _mm256_castps_pd(t[4 * k + 3]);
        s[4 * k + 0] = _mm256_castpd_ps(_mm256_unpacklo_pd(a, b));
        s[4 * k + 1] = _mm256_castpd_ps(_mm256_unpackhi_pd(a, b));
        s[4 * k + 2] = _mm256_castpd_ps(_mm256_unpacklo_pd(c, d));
        s[4 * k + 3] = _mm256_castpd_ps(_mm256_unpackhi_pd(c, d));
    }
    for (k = 0; k < 4; ++k) {
        r[k] = (vf)_mm256_permute2f128_ps(s[k], s[4 + k], 0x20);
        r[4 + k] = (vf)_mm256_permute2f128_ps(s[k], s[4 + k], 0x31);
    }
#else
    float m[VF][VF], o[VF][VF];
    int g, k;
    memcpy(m, r, sizeof m);
    for (g = 0; g < VF; ++g)
        for (k = 0; k < VF; ++k)
            o[k][g] = m[g][k];
    memcpy(r, o, sizeof o);
#endif
}

SIMD_INLINE void tr_regs_d(vd *r)
{
#if MPSNORM_SIMD_LEVEL == 3
    __m512d t[8];
    int k;
    for (k = 0; k < 4; ++k) {
        t[2 * k] = _mm512_unpacklo_pd((__m512d)r[2 * k], (__m512d)r[2 * k + 1]);
        t[2 * k + 1] = _mm512_unpackhi_pd((__m512d)r[2 * k], (__m512d)r[2 * k + 1]);
    }
    /* t[0]: columns 0,2,4,6 of rows 0-1 (a 128-bit lane each); t[1]: columns 1,3,5,7 */
    for (k = 0; k < 2; ++k) {
        __m512d u0 = _mm512_shuffle_f64x2(t[k], t[2 + k], 0x44);
        __m512d u1 = _mm512_shuffle_f64x2(t[4 + k], t[6 + k], 0x44);
        __m512d u2 = _mm512_shuffle_f64x2(t[k], t[2 + k], 0xee);
        __m512d u3 = _mm512_shuffle_f64x2(t[4 + k], t[6 + k], 0xee);
        r[k] = (vd)_mm512_shuffle_f64x2(u0, u1, 0x88);
        r[2 + k] = (vd)_mm512_shuffle_f64x2(u0, u1, 0xdd);
        r[4 + k] = (vd)_mm512_shuffle_f64x2(u2, u3, 0x88);
        r[6 + k] = (vd)_mm512_shuffle_f64x2(u2, u3, 0xdd);
    }
#elif MPSNORM_SIMD_LEVEL == 2
    __m256d t0 = _mm256_unpacklo_pd((__m256d)r[0], (__m256d)r[1]);
    __m256d t1 = _mm256_unpackhi_pd((__m256d)r[0], (__m256d)r[1]);
    __m256d t2 = _mm256_unpacklo_pd((__m256d)r[2], (__m256d)r[3]);
    __m256d t3 = _mm256_unpackhi_pd((__m256d)r[2], (__m256d)r[3]);
    r[0] = (vd)_mm256_permute2f128_pd(t0, t2, 0x20);
    r[1] = (vd)_mm256_permute2f128_pd(t1, t3, 0x20);
    r[2] = (vd)_mm256_permute2f128_pd(t0, t2, 0x31);
    r[3] = (vd)_mm256_permute2f128_pd(t1, t3, 0x31);
#else
    double m[VD][VD], o[VD][VD];
    int g, k;
    memcpy(m, r, sizeof m);
    for (g = 0; g < VD; ++g)
        for (k = 0; k < VD; ++k)
            o[k][g] = m[g][k];
    memcpy(r, o, sizeof o);
#endif
}

/* ---- float16: VF halves <-> VF floats ------------------------------------ */

SIMD_INLINE vf ld_h2f(const uint16_t *p)
{
#if MPSNORM_SIMD_LEVEL == 3
    return (vf)_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(const void *)p));
#elif MPSNORM_SIMD_LEVEL == 2
    return (vf)_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)p));
#elif defined(MPSNORM_VECTOR_EXT)
    vf v;
    int k;
    for (k = 0; k < VF; ++k)
        v[k] = mpsnorm_half_to_float(p[k]);
    return v;
#else
    return mpsnorm_half_to_float(*p);
#endif
}
SIMD_INLINE void st_f2h(uint16_t *p, vf v)
{
#if MPSNORM_SIMD_LEVEL == 3
    _mm256_storeu_si256((__m256i *)(void *)p,
                        _mm512_cvtps_ph((__m512)v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
#elif MPSNORM_SIMD_LEVEL == 2
    _mm_storeu_si128((__m128i *)(void *)p, _mm256_cvtps_ph((__m256)v, _MM_FROUND_TO_NEAREST_INT));
#elif defined(MPSNORM_VECTOR_EXT)
    int k;
    for (k = 0; k < VF; ++k)
        p[k] = mpsnorm_half_from_float(v[k]);
#else
    *p = mpsnorm_half_from_float(v);
#endif
}

#endif /* MPSNORM_CPU_SIMD_H */
