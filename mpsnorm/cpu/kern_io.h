/*
 * kern_io.h -- part of the kernel template (kernels_impl.h): a run of m
 * elements of a tensor (element offset off, element stride `stride`) to and
 * from a contiguous float or double buffer. Unit strides get vector loops
 * (float16 through F16C where the instruction set has it); float32 at stride
 * 2 (every other element: a common view) a loop the compiler vectorizes with
 * its constant stride; other strides an element loop. Widening is exact;
 * narrowing rounds to nearest even.
 */
#ifndef MPSNORM_CPU_KERN_IO_H
#define MPSNORM_CPU_KERN_IO_H

#include <stdint.h>
#include <string.h>

#include "element.h"
#include "kernels.h"
#include "simd.h"

static void io_load_d(int dtype, const void *data, int64_t off, int64_t stride, int64_t m,
                      double *restrict dst)
{
    int64_t k = 0;
    switch (dtype) {
    case MPSNORM_FLOAT64: {
        const double *p = (const double *)data + off;
        if (stride == 1)
            memcpy(dst, p, (size_t)m * sizeof(double));
        else
            for (; k < m; ++k)
                dst[k] = p[k * stride];
        break;
    }
    case MPSNORM_FLOAT32: {
        const float *p = (const float *)data + off;
        if (stride == 1) {
            for (; k + VD <= m; k += VD)
                std_(dst + k, ld_f2d(p + k));
            for (; k < m; ++k)
                dst[k] = (double)p[k];
        } else if (stride == 2) {
            for (; k < m; ++k)
                dst[k] = (double)p[2 * k];
        } else {
            for (; k < m; ++k)
                dst[k] = (double)p[k * stride];
        }
        break;
    }
    default: {
        const uint16_t *p = (const uint16_t *)data + off;
        if (stride == 1) {
            float tmp[VF];
            for (; k + VF <= m; k += VF) {
                stf(tmp, ld_h2f(p + k));
                std_(dst + k, ld_f2d(tmp));
#if VF > 1
                std_(dst + k + VD, ld_f2d(tmp + VD));
#endif
            }
            for (; k < m; ++k)
                dst[k] = (double)mpsnorm_half_to_float(p[k]);
        } else {
            for (; k < m; ++k)
                dst[k] = (double)mpsnorm_half_to_float(p[k * stride]);
        }
        break;
    }
    }
}

/* float32 or float16 only */
static void io_load_f(int dtype, const void *data, int64_t off, int64_t stride, int64_t m,
                      float *restrict dst)
{
    int64_t k = 0;
    if (dtype == MPSNORM_FLOAT32) {
        const float *p = (const float *)data + off;
        if (stride == 1)
            memcpy(dst, p, (size_t)m * sizeof(float));
        else if (stride == 2)
            for (; k < m; ++k)
                dst[k] = p[2 * k];
        else
            for (; k < m; ++k)
                dst[k] = p[k * stride];
    } else {
        const uint16_t *p = (const uint16_t *)data + off;
        if (stride == 1) {
            for (; k + VF <= m; k += VF)
                stf(dst + k, ld_h2f(p + k));
            for (; k < m; ++k)
                dst[k] = mpsnorm_half_to_float(p[k]);
        } else {
            for (; k < m; ++k)
                dst[k] = mpsnorm_half_to_float(p[k * stride]);
        }
    }
}

/* float32 or float16 only */
static void io_store_f(int dtype, void *data, int64_t off, int64_t stride, int64_t m,
                       const float *restrict src)
{
    int64_t k = 0;
    if (dtype == MPSNORM_FLOAT32) {
        float *p = (float *)data + off;
        if (stride == 1)
            memcpy(p, src, (size_t)m * sizeof(float));
        else if (stride == 2)
            for (; k < m; ++k)
                p[2 * k] = src[k];
        else
            for (; k < m; ++k)
                p[k * stride] = src[k];
    } else {
        uint16_t *p = (uint16_t *)data + off;
        if (stride == 1) {
            for (; k + VF <= m; k += VF)
                st_f2h(p + k, ldf(src + k));
            for (; k < m; ++k)
                p[k] = mpsnorm_half_from_float(src[k]);
        } else {
            for (; k < m; ++k)
                p[k * stride] = mpsnorm_half_from_float(src[k]);
        }
    }
}

/* float64 only */
static void io_store_d(void *data, int64_t off, int64_t stride, int64_t m,
                       const double *restrict src)
{
    double *p = (double *)data + off;
    int64_t k;
    if (stride == 1)
        memcpy(p, src, (size_t)m * sizeof(double));
    else
        for (k = 0; k < m; ++k)
            p[k * stride] = src[k];
}

/* Bytes of one element of a dtype. */
static inline int64_t io_item_bytes(int dtype)
{
    return dtype == MPSNORM_FLOAT64 ? 8 : dtype == MPSNORM_FLOAT32 ? 4 : 2;
}

/* Element offset of (n, c, j, i) (element.h). */
static inline int64_t io_offset(const mpsnorm_tensor *t, int64_t n, int64_t c, int64_t j,
                                int64_t i)
{
    return mpsnorm_element_offset(t, n, c, j, i);
}

/*
 * Copies `bytes` to memory that will not be read again soon: non-temporal
 * (streaming) stores for the 64-byte aligned middle where the instruction set
 * has them, so writing a large output costs no read of its old contents.
 * A task that used it ends with io_stream_fence().
 */
static void io_copy_stream(void *dst, const void *src, size_t bytes)
{
#if MPSNORM_SIMD_LEVEL >= 2
    char *d = (char *)dst;
    const char *s = (const char *)src;
    size_t head = (size_t)((64 - ((uintptr_t)d & 63)) & 63);
    if (head > bytes || ((uintptr_t)d & 1) != 0) {
        memcpy(d, s, bytes);
        return;
    }
    memcpy(d, s, head);
    d += head;
    s += head;
    bytes -= head;
    for (; bytes >= 64; bytes -= 64, d += 64, s += 64) {
#if MPSNORM_SIMD_LEVEL == 3
        _mm512_stream_si512((void *)d, _mm512_loadu_si512((const void *)s));
#else
        _mm256_stream_si256((__m256i *)(void *)d,
                            _mm256_loadu_si256((const __m256i *)(const void *)s));
        _mm256_stream_si256((__m256i *)(void *)(d + 32),
                            _mm256_loadu_si256((const __m256i *)(const void *)(s + 32)));
#endif
    }
    memcpy(d, s, bytes);
#else
    memcpy(dst, src, bytes);
#endif
}

static void io_stream_fence(void)
{
#if MPSNORM_SIMD_LEVEL >= 2
    _mm_sfence();
#endif
}

/* io_store_f / io_store_d through streaming stores (unit stride only). */
static void io_store_stream(int dtype, void *data, int64_t off, int64_t m, const void *src,
                            void *tmp)
{
    if (dtype == MPSNORM_FLOAT64) {
        io_copy_stream((double *)data + off, src, (size_t)m * sizeof(double));
    } else if (dtype == MPSNORM_FLOAT32) {
        io_copy_stream((float *)data + off, src, (size_t)m * sizeof(float));
    } else {
        io_store_f(MPSNORM_FLOAT16, tmp, 0, 1, m, (const float *)src);
        io_copy_stream((uint16_t *)data + off, tmp, (size_t)m * sizeof(uint16_t));
    }
}

#endif /* MPSNORM_CPU_KERN_IO_H */
