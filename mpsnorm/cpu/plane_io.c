/*
 * plane_io.c -- strided load/store of one plane with dtype conversion.
 *
 * The dtype switch is outside the loops, and a row whose W stride is 1 gets
 * a plain contiguous loop the compiler can vectorize.
 */
#include "plane_io.h"

#include "half.h"

/* Element offset of (n, c, 0, 0); the dispatcher checked it cannot overflow. */
static int64_t plane_offset(const mpsnorm_tensor *t, int64_t n, int64_t c)
{
    return n * t->strides[0] + c * t->strides[1];
}

void mpsnorm_plane_load(const mpsnorm_tensor *tensor, int64_t n, int64_t c, double *dst)
{
    const int64_t h = tensor->shape[2];
    const int64_t w = tensor->shape[3];
    const int64_t sh = tensor->strides[2];
    const int64_t sw = tensor->strides[3];
    const int64_t base = plane_offset(tensor, n, c);
    int64_t j, i;

    switch (tensor->dtype) {
    case MPSNORM_FLOAT64: {
        const double *p = (const double *)tensor->data + base;
        for (j = 0; j < h; ++j) {
            const double *row = p + j * sh;
            double *out = dst + j * w;
            if (sw == 1)
                for (i = 0; i < w; ++i)
                    out[i] = row[i];
            else
                for (i = 0; i < w; ++i)
                    out[i] = row[i * sw];
        }
        break;
    }
    case MPSNORM_FLOAT32: {
        const float *p = (const float *)tensor->data + base;
        for (j = 0; j < h; ++j) {
            const float *row = p + j * sh;
            double *out = dst + j * w;
            if (sw == 1)
                for (i = 0; i < w; ++i)
                    out[i] = (double)row[i];
            else
                for (i = 0; i < w; ++i)
                    out[i] = (double)row[i * sw];
        }
        break;
    }
    default: { /* MPSNORM_FLOAT16 */
        const uint16_t *p = (const uint16_t *)tensor->data + base;
        for (j = 0; j < h; ++j) {
            const uint16_t *row = p + j * sh;
            double *out = dst + j * w;
            if (sw == 1)
                for (i = 0; i < w; ++i)
                    out[i] = (double)mpsnorm_half_to_float(row[i]);
            else
                for (i = 0; i < w; ++i)
                    out[i] = (double)mpsnorm_half_to_float(row[i * sw]);
        }
        break;
    }
    }
}

void mpsnorm_plane_store(const mpsnorm_tensor *tensor, int64_t n, int64_t c, const double *src)
{
    const int64_t h = tensor->shape[2];
    const int64_t w = tensor->shape[3];
    const int64_t sh = tensor->strides[2];
    const int64_t sw = tensor->strides[3];
    const int64_t base = plane_offset(tensor, n, c);
    int64_t j, i;

    switch (tensor->dtype) {
    case MPSNORM_FLOAT64: {
        double *p = (double *)tensor->data + base;
        for (j = 0; j < h; ++j) {
            double *row = p + j * sh;
            const double *in = src + j * w;
            if (sw == 1)
                for (i = 0; i < w; ++i)
                    row[i] = in[i];
            else
                for (i = 0; i < w; ++i)
                    row[i * sw] = in[i];
        }
        break;
    }
    case MPSNORM_FLOAT32: {
        float *p = (float *)tensor->data + base;
        for (j = 0; j < h; ++j) {
            float *row = p + j * sh;
            const double *in = src + j * w;
            if (sw == 1)
                for (i = 0; i < w; ++i)
                    row[i] = (float)in[i];
            else
                for (i = 0; i < w; ++i)
                    row[i * sw] = (float)in[i];
        }
        break;
    }
    default: { /* MPSNORM_FLOAT16 */
        uint16_t *p = (uint16_t *)tensor->data + base;
        for (j = 0; j < h; ++j) {
            uint16_t *row = p + j * sh;
            const double *in = src + j * w;
            if (sw == 1)
                for (i = 0; i < w; ++i)
                    row[i] = mpsnorm_half_from_double(in[i]);
            else
                for (i = 0; i < w; ++i)
                    row[i * sw] = mpsnorm_half_from_double(in[i]);
        }
        break;
    }
    }
}
