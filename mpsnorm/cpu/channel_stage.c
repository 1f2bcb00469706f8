/* channel_stage.c -- planar copies of a few channels of a band of rows (see channel_stage.h). */
#include "channel_stage.h"

#include <stddef.h>
#include <stdint.h>
#if defined(__SSE2__)
#include <xmmintrin.h>
#endif

/* Pixel by pixel: the channels of a pixel are read (or written) side by side
 * and each staged row is written (or read) in order. Eight channels at a time
 * as a fixed-length loop the compiler unrolls. */
#define STAGE_COPY(type, t, stage, planes, to_planes, j_from, j_to)                            \
    do {                                                                                       \
        const int64_t w = (t)->shape[3], s1 = (t)->strides[1], s3 = (t)->strides[3];          \
        const int64_t rows = (stage)->rows, count = (stage)->channels;                         \
        const int64_t pitch = mpsnorm_stage_plane(rows, w);                                    \
        int64_t j, k, i, g;                                                                    \
        for (j = (j_from); j < (j_to); ++j) {                                                  \
            type *row = (type *)(t)->data + (stage)->n * (t)->strides[0] +                     \
                        (stage)->c0 * s1 + ((stage)->r0 + j) * (t)->strides[2];                \
            type *plane = (type *)(planes) + j * w;                                            \
            for (k = 0; k + 8 <= count; k += 8)                                                \
                for (i = 0; i < w; ++i)                                                        \
                    for (g = 0; g < 8; ++g) {                                                  \
                        type *a = plane + (k + g) * pitch + i;                                 \
                        type *b = row + i * s3 + (k + g) * s1;                                 \
                        if (to_planes)                                                         \
                            *a = *b;                                                           \
                        else                                                                   \
                            *b = *a;                                                           \
                    }                                                                          \
            for (; k < count; ++k)                                                             \
                for (i = 0; i < w; ++i) {                                                      \
                    type *a = plane + k * pitch + i, *b = row + i * s3 + k * s1;               \
                    if (to_planes)                                                             \
                        *a = *b;                                                               \
                    else                                                                       \
                        *b = *a;                                                               \
                }                                                                              \
        }                                                                                      \
    } while (0)

int64_t mpsnorm_stage_plane(int64_t rows, int64_t w)
{
    int64_t elements;
    if (rows < 0 || w < 0 || (w != 0 && rows > (INT64_MAX - 24) / w))
        return -1;
    elements = rows * w;
    return elements + 24;
}

static int64_t element_bytes(int dtype)
{
    return dtype == MPSNORM_FLOAT64 ? 8 : dtype == MPSNORM_FLOAT32 ? 4 : 2;
}

#if defined(__SSE2__)
/* 4-byte elements with the channels of a pixel side by side (unit channel
 * stride): 4 x 4 tiles (4 pixels x 4 channels) transposed in registers. The
 * remaining channels and pixels go element by element. */
static int stage_tiles_4(const mpsnorm_tensor *t, const mpsnorm_stage *stage, float *planes,
                         int to_planes, int64_t j_from, int64_t j_to)
{
    const int64_t w = t->shape[3], s3 = t->strides[3];
    const int64_t rows = stage->rows, count = stage->channels;
    const int64_t pitch = mpsnorm_stage_plane(rows, w);
    int64_t j, k, i;
    if (t->strides[1] != 1 || count < 4 || w < 4)
        return 0;
    for (j = j_from; j < j_to; ++j) {
        float *row = (float *)t->data + stage->n * t->strides[0] + stage->c0 +
                     (stage->r0 + j) * t->strides[2];
        float *plane = planes + j * w;
        for (k = 0; k + 4 <= count; k += 4) {
            float *p0 = plane + k * pitch, *p1 = p0 + pitch, *p2 = p1 + pitch, *p3 = p2 + pitch;
            for (i = 0; i + 4 <= w; i += 4) {
                float *px = row + i * s3 + k;
                __m128 a, b, c, d;
                if (to_planes) {
                    a = _mm_loadu_ps(px);
                    b = _mm_loadu_ps(px + s3);
                    c = _mm_loadu_ps(px + 2 * s3);
                    d = _mm_loadu_ps(px + 3 * s3);
                    _MM_TRANSPOSE4_PS(a, b, c, d);
                    _mm_storeu_ps(p0 + i, a);
                    _mm_storeu_ps(p1 + i, b);
                    _mm_storeu_ps(p2 + i, c);
                    _mm_storeu_ps(p3 + i, d);
                } else {
                    a = _mm_loadu_ps(p0 + i);
                    b = _mm_loadu_ps(p1 + i);
                    c = _mm_loadu_ps(p2 + i);
                    d = _mm_loadu_ps(p3 + i);
                    _MM_TRANSPOSE4_PS(a, b, c, d);
                    _mm_storeu_ps(px, a);
                    _mm_storeu_ps(px + s3, b);
                    _mm_storeu_ps(px + 2 * s3, c);
                    _mm_storeu_ps(px + 3 * s3, d);
                }
            }
            for (; i < w; ++i) {
                float *px = row + i * s3 + k;
                int g;
                for (g = 0; g < 4; ++g) {
                    float *at = plane + (k + g) * pitch + i;
                    if (to_planes)
                        *at = px[g];
                    else
                        px[g] = *at;
                }
            }
        }
        for (; k < count; ++k)
            for (i = 0; i < w; ++i) {
                float *at = plane + k * pitch + i, *px = row + i * s3 + k;
                if (to_planes)
                    *at = *px;
                else
                    *px = *at;
            }
    }
    return 1;
}
#endif

/* Rows [r0 + j_from, r0 + j_to) of the staged part, to or from the planes. */
static void stage_copy(const mpsnorm_tensor *t, const mpsnorm_stage *stage, void *planes,
                       int to_planes, int64_t j_from, int64_t j_to)
{
    switch (element_bytes(t->dtype)) {
    case 8:
        STAGE_COPY(uint64_t, t, stage, planes, to_planes, j_from, j_to);
        break;
    case 4:
#if defined(__SSE2__)
        if (stage_tiles_4(t, stage, (float *)planes, to_planes, j_from, j_to))
            break;
#endif
        STAGE_COPY(uint32_t, t, stage, planes, to_planes, j_from, j_to);
        break;
    default:
        STAGE_COPY(uint16_t, t, stage, planes, to_planes, j_from, j_to);
        break;
    }
}

void mpsnorm_stage_in(const mpsnorm_tensor *t, const mpsnorm_stage *stage, void *planes)
{
    stage_copy(t, stage, planes, 1, 0, stage->rows);
}

void mpsnorm_stage_out(const mpsnorm_tensor *t, const mpsnorm_stage *stage, const void *planes,
                       int64_t r_begin, int64_t r_end)
{
    stage_copy(t, stage, (void *)planes, 0, r_begin - stage->r0, r_end - stage->r0);
}

void mpsnorm_stage_view(const mpsnorm_tensor *t, const mpsnorm_stage *stage, void *planes,
                        mpsnorm_tensor *view)
{
    const int64_t w = t->shape[3], item = element_bytes(t->dtype);
    *view = *t;
    view->strides[0] = 0;
    view->strides[1] = mpsnorm_stage_plane(stage->rows, w);
    view->strides[2] = w;
    view->strides[3] = 1;
    /* element (n, c, r, i) at planes + (c - c0) * plane + (r - r0) * w + i: the base sits
     * before `planes` (computed as an integer: only staged elements are ever addressed) */
    view->data = (void *)((uintptr_t)planes -
                          (uintptr_t)((stage->c0 * view->strides[1] + stage->r0 * w) * item));
}
