/*
 * kern_instance_norm.h -- part of the kernel template (kernels_impl.h): one band of
 * an instance-norm job (see kernels.h for the rounds and coefficients).
 *
 * Sums run in double for every dtype, 16 lanes per quantity (element k of a
 * run of a row goes to lane k % 16), lanes added in a fixed tree: the order
 * depends only on the shape. The writer works in float for float32/float16
 * data (x - M is taken before scaling, so a large mean costs no accuracy)
 * and in double for float64.
 *
 * Scratch (mpsnorm_instance_norm_scratch_bytes): three buffers of job->run doubles,
 * then (channel mode) 8*C doubles of per-channel sums and coefficients.
 */
#ifndef MPSNORM_CPU_KERN_INSTANCE_NORM_H
#define MPSNORM_CPU_KERN_INSTANCE_NORM_H

#ifndef KNAME
#error "kern_instance_norm.h needs KNAME(x), the instruction set's name of a kernel"
#endif

#include <stdint.h>
#include <string.h>

#include "kern_common.h"
#include "kern_io.h"
#include "kernels.h"
#include "simd.h"

#define IN_LANES 16
#define IN_NV (IN_LANES / VD)

static int64_t in_run(const mpsnorm_instance_norm_job *job)
{
    return job->run;
}

/* acc[q][lane] += the band sums of one run of m elements: from double values
 * (in_acc), or from float values widened to double in registers (in_acc_fd);
 * the same sums either way. */
#define IN_ACC(name, T, LOAD)                                                                  \
    static void name(const T *restrict x, const T *restrict d, int64_t m, double s,            \
                     int quantities, double acc[4][IN_LANES])                                  \
    {                                                                                          \
        vd a0[IN_NV], a1[IN_NV], a2[IN_NV], a3[IN_NV];                                         \
        const vd sv = bcd(s);                                                                  \
        int64_t k = 0;                                                                         \
        int v, l;                                                                              \
                                                                                               \
        for (v = 0; v < IN_NV; ++v) {                                                          \
            a0[v] = ldd(&acc[0][v * VD]);                                                      \
            a1[v] = ldd(&acc[1][v * VD]);                                                      \
            a2[v] = ldd(&acc[2][v * VD]);                                                      \
            a3[v] = ldd(&acc[3][v * VD]);                                                      \
        }                                                                                      \
        if (quantities == 4) {                                                                 \
            for (; k + IN_LANES <= m; k += IN_LANES)                                           \
                for (v = 0; v < IN_NV; ++v) {                                                  \
                    vd t = LOAD(x + k + v * VD) - sv;                                          \
                    vd g = LOAD(d + k + v * VD);                                               \
                    a0[v] += t;                                                                \
                    a1[v] += t * t;                                                            \
                    a2[v] += g;                                                                \
                    a3[v] += g * t;                                                            \
                }                                                                              \
        } else {                                                                               \
            for (; k + IN_LANES <= m; k += IN_LANES)                                           \
                for (v = 0; v < IN_NV; ++v) {                                                  \
                    vd t = LOAD(x + k + v * VD) - sv;                                          \
                    a0[v] += t;                                                                \
                    a1[v] += t * t;                                                            \
                }                                                                              \
        }                                                                                      \
        for (v = 0; v < IN_NV; ++v) {                                                          \
            std_(&acc[0][v * VD], a0[v]);                                                      \
            std_(&acc[1][v * VD], a1[v]);                                                      \
            std_(&acc[2][v * VD], a2[v]);                                                      \
            std_(&acc[3][v * VD], a3[v]);                                                      \
        }                                                                                      \
        for (l = 0; k < m; ++k, ++l) {                                                         \
            double t = (double)x[k] - s;                                                       \
            acc[0][l] += t;                                                                    \
            acc[1][l] += t * t;                                                                \
            if (quantities == 4) {                                                             \
                acc[2][l] += (double)d[k];                                                     \
                acc[3][l] += (double)d[k] * t;                                                 \
            }                                                                                  \
        }                                                                                      \
    }

IN_ACC(in_acc, double, ldd)
IN_ACC(in_acc_fd, float, ld_f2d)

/* A run of m elements of t at off in the compute type T: the tensor's own
 * memory when it is a unit-stride run of that type, else loaded into buf. */
#define IN_VIEW(name, T, DTYPE, LOAD)                                                          \
    static const T *name(const mpsnorm_tensor *t, int64_t off, int64_t stride, int64_t m,      \
                         T *buf)                                                               \
    {                                                                                          \
        if (t->dtype == DTYPE && stride == 1)                                                  \
            return (const T *)t->data + off;                                                   \
        LOAD(t->dtype, t->data, off, stride, m, buf);                                          \
        return buf;                                                                            \
    }

IN_VIEW(in_view_f, float, MPSNORM_FLOAT32, io_load_f) /* float32/float16 tensors */
IN_VIEW(in_view_d, double, MPSNORM_FLOAT64, io_load_d)

static double in_lanes_total(double *a)
{
    int width, l;
    for (width = IN_LANES / 2; width >= 1; width /= 2)
        for (l = 0; l < width; ++l)
            a[l] += a[l + width];
    return a[0];
}

/* Channel mode: per-channel sums over `pixels` pixels of C channels each,
 * from double values (in_acc_channels) or from float values widened exactly
 * as they are loaded (in_acc_channels_f): the same sums either way. */
#define IN_ACC_CHANNELS(name, T, LOAD)                                                         \
    static void name(const T *restrict x, const T *restrict d, int64_t pixels,                 \
                     int64_t channels, const double *restrict shift, int quantities,           \
                     double *restrict acc)                                                     \
    {                                                                                          \
        double *restrict s0 = acc, *restrict s1 = acc + channels;                              \
        double *restrict s2 = acc + 2 * channels, *restrict s3 = acc + 3 * channels;           \
        int64_t c = 0, p;                                                                      \
        for (; c + VD <= channels; c += VD) {                                                  \
            vd a0 = ldd(s0 + c), a1 = ldd(s1 + c), a2 = ldd(s2 + c), a3 = ldd(s3 + c);         \
            const vd sv = ldd(shift + c);                                                      \
            if (quantities == 4) {                                                             \
                for (p = 0; p < pixels; ++p) {                                                 \
                    vd t = LOAD(x + p * channels + c) - sv;                                    \
                    vd g = LOAD(d + p * channels + c);                                         \
                    a0 += t;                                                                   \
                    a1 += t * t;                                                               \
                    a2 += g;                                                                   \
                    a3 += g * t;                                                               \
                }                                                                              \
            } else {                                                                           \
                for (p = 0; p < pixels; ++p) {                                                 \
                    vd t = LOAD(x + p * channels + c) - sv;                                    \
                    a0 += t;                                                                   \
                    a1 += t * t;                                                               \
                }                                                                              \
            }                                                                                  \
            std_(s0 + c, a0);                                                                  \
            std_(s1 + c, a1);                                                                  \
            std_(s2 + c, a2);                                                                  \
            std_(s3 + c, a3);                                                                  \
        }                                                                                      \
        for (; c < channels; ++c)                                                              \
            for (p = 0; p < pixels; ++p) {                                                     \
                double t = (double)x[p * channels + c] - shift[c];                             \
                s0[c] += t;                                                                    \
                s1[c] += t * t;                                                                \
                if (quantities == 4) {                                                         \
                    s2[c] += (double)d[p * channels + c];                                      \
                    s3[c] += (double)d[p * channels + c] * t;                                  \
                }                                                                              \
            }                                                                                  \
    }

IN_ACC_CHANNELS(in_acc_channels, double, ldd)
IN_ACC_CHANNELS(in_acc_channels_f, float, ld_f2d)

/* Loads `pixels` pixels (all channels) of row j from column i into buf. */
#define IN_LOAD_PIXELS(name, T, LOAD)                                                          \
    static void name(const mpsnorm_tensor *t, int64_t n, int64_t j, int64_t i, int64_t pixels, \
                     int64_t channels, T *buf)                                                 \
    {                                                                                          \
        int64_t p;                                                                             \
        if (t->strides[3] == channels) {                                                       \
            LOAD(t->dtype, t->data, io_offset(t, n, 0, j, i), 1, pixels * channels, buf);      \
            return;                                                                            \
        }                                                                                      \
        for (p = 0; p < pixels; ++p)                                                           \
            LOAD(t->dtype, t->data, io_offset(t, n, 0, j, i + p), 1, channels,                 \
                 buf + p * channels);                                                          \
    }

IN_LOAD_PIXELS(in_load_pixels_d, double, io_load_d)
IN_LOAD_PIXELS(in_load_pixels_f, float, io_load_f)

/* `pixels` pixels (all channels) of row j from column i as floats: in place
 * when the tensor holds them so (float32, pixels side by side), else loaded
 * into buf. */
static const float *in_view_pixels_f(const mpsnorm_tensor *t, int64_t n, int64_t j, int64_t i,
                                     int64_t pixels, int64_t channels, float *buf)
{
    if (t->dtype == MPSNORM_FLOAT32 && t->strides[3] == channels)
        return (const float *)t->data + io_offset(t, n, 0, j, i);
    in_load_pixels_f(t, n, j, i, pixels, channels, buf);
    return buf;
}

static void in_reduce_channels(const mpsnorm_instance_norm_job *job, int64_t image, int64_t band,
                               int round, double *scratch)
{
    const int64_t channels = job->c, run = in_run(job);
    const int64_t j0 = band * job->band_rows, j1 = kmin(job->h, j0 + job->band_rows);
    const int64_t chunk = run / channels; /* >= 1 pixel */
    const int quantities = job->quantities[round];
    double *xb = scratch, *db = scratch + run, *acc = scratch + 3 * run;
    const double *shift = job->shift + image * channels;
    int64_t j, i, c, q;

    memset(acc, 0, (size_t)(4 * channels) * sizeof(double));
    for (j = j0; j < j1; ++j)
        for (i = 0; i < job->w; i += chunk) {
            int64_t pixels = kmin(chunk, job->w - i);
            if (job->dtype == MPSNORM_FLOAT64) {
                in_load_pixels_d(job->x, image, j, i, pixels, channels, xb);
                if (quantities == 4)
                    in_load_pixels_d(job->dy, image, j, i, pixels, channels, db);
                in_acc_channels(xb, db, pixels, channels, shift, quantities, acc);
            } else {
                const float *xf = in_view_pixels_f(job->x, image, j, i, pixels, channels,
                                                   (float *)xb);
                const float *df = quantities == 4
                                      ? in_view_pixels_f(job->dy, image, j, i, pixels, channels,
                                                         (float *)db)
                                      : NULL;
                in_acc_channels_f(xf, df, pixels, channels, shift, quantities, acc);
            }
        }
    for (c = 0; c < channels; ++c) {
        double *out = job->part + ((image * channels + c) * job->bands + band) * 4;
        for (q = 0; q < 4; ++q)
            out[q] = q < quantities ? acc[q * channels + c] : 0.0;
    }
}

static void KNAME(instance_norm_reduce)(const mpsnorm_instance_norm_job *job, int64_t owner,
                                        int64_t band, int round, void *scratch_bytes)
{
    double *scratch = (double *)scratch_bytes;
    const int64_t run = in_run(job);
    int64_t plane = owner, n, c, j, j0, j1, i;
    const int quantities = job->quantities[round];
    double acc[4][IN_LANES];
    double *xb = scratch, *db = scratch + run, *out;
    double s;
    int q;

    if (job->channel_mode) {
        in_reduce_channels(job, owner, band, round, scratch);
        return;
    }
    n = plane / job->c;
    c = plane % job->c;
    j0 = band * job->band_rows;
    j1 = kmin(job->h, j0 + job->band_rows);
    s = job->shift[plane];
    memset(acc, 0, sizeof acc);
    for (j = j0; j < j1; ++j)
        for (i = 0; i < job->w; i += run) {
            int64_t m = kmin(run, job->w - i);
            int64_t ox = io_offset(job->x, n, c, j, i);
            int64_t od = quantities == 4 ? io_offset(job->dy, n, c, j, i) : 0;
            if (job->dtype == MPSNORM_FLOAT64) {
                const double *xv = in_view_d(job->x, ox, job->x->strides[3], m, xb);
                const double *dv = quantities == 4
                                       ? in_view_d(job->dy, od, job->dy->strides[3], m, db)
                                       : NULL;
                in_acc(xv, dv, m, s, quantities, acc);
            } else {
                const float *xv = in_view_f(job->x, ox, job->x->strides[3], m, (float *)xb);
                const float *dv = quantities == 4 ? in_view_f(job->dy, od, job->dy->strides[3],
                                                              m, (float *)db)
                                                  : NULL;
                in_acc_fd(xv, dv, m, s, quantities, acc);
            }
        }
    out = job->part + (plane * job->bands + band) * 4;
    for (q = 0; q < 4; ++q)
        out[q] = q < quantities ? in_lanes_total(acc[q]) : 0.0;
}

/* o = A*d + B*(x - M) + C (d == NULL: forward, no A term), m elements, with
 * one coefficient set (in_apply_*) or per-channel coefficient vectors over
 * `pixels` pixels of `channels` channels (in_apply_channels_*). */
#define IN_APPLY(name, T, V, N, LD, ST, BC)                                                    \
    static void name(const T *restrict x, const T *restrict d, T *restrict o, int64_t m, T a,  \
                     T b, T cc, T mu)                                                          \
    {                                                                                          \
        const V av = BC(a), bv = BC(b), cv = BC(cc), mv = BC(mu);                              \
        int64_t k = 0;                                                                         \
        if (d != NULL) {                                                                       \
            for (; k + N <= m; k += N)                                                         \
                ST(o + k, av * LD(d + k) + bv * (LD(x + k) - mv) + cv);                        \
            for (; k < m; ++k)                                                                 \
                o[k] = a * d[k] + b * (x[k] - mu) + cc;                                        \
        } else {                                                                               \
            for (; k + N <= m; k += N)                                                         \
                ST(o + k, bv * (LD(x + k) - mv) + cv);                                         \
            for (; k < m; ++k)                                                                 \
                o[k] = b * (x[k] - mu) + cc;                                                   \
        }                                                                                      \
    }

#define IN_APPLY_CHANNELS(name, T, N, LD, ST)                                                  \
    static void name(const T *restrict x, const T *restrict d, T *restrict o, int64_t pixels,  \
                     int64_t channels, const T *restrict coef)                                 \
    {                                                                                          \
        const T *A = coef, *B = coef + channels, *C = coef + 2 * channels;                     \
        const T *M = coef + 3 * channels;                                                      \
        int64_t p, c;                                                                          \
        for (p = 0; p < pixels; ++p) {                                                         \
            const T *xp = x + p * channels, *dp = d != NULL ? d + p * channels : NULL;         \
            T *op = o + p * channels;                                                          \
            c = 0;                                                                             \
            if (dp != NULL) {                                                                  \
                for (; c + N <= channels; c += N)                                              \
                    ST(op + c, LD(A + c) * LD(dp + c) +                                        \
                                   LD(B + c) * (LD(xp + c) - LD(M + c)) + LD(C + c));          \
                for (; c < channels; ++c)                                                      \
                    op[c] = A[c] * dp[c] + B[c] * (xp[c] - M[c]) + C[c];                       \
            } else {                                                                           \
                for (; c + N <= channels; c += N)                                              \
                    ST(op + c, LD(B + c) * (LD(xp + c) - LD(M + c)) + LD(C + c));              \
                for (; c < channels; ++c)                                                      \
                    op[c] = B[c] * (xp[c] - M[c]) + C[c];                                      \
            }                                                                                  \
        }                                                                                      \
    }

IN_APPLY(in_apply_f, float, vf, VF, ldf, stf, bcf)
IN_APPLY(in_apply_d, double, vd, VD, ldd, std_, bcd)
IN_APPLY_CHANNELS(in_apply_channels_f, float, VF, ldf, stf)
IN_APPLY_CHANNELS(in_apply_channels_d, double, VD, ldd, std_)

static void in_store_pixels(const mpsnorm_tensor *t, int64_t n, int64_t j, int64_t i,
                            int64_t pixels, int64_t channels, const void *buf, int stream,
                            void *tmp)
{
    const int64_t sw = t->strides[3];
    int64_t p;
    const int64_t runs = sw == channels ? 1 : pixels;
    const int64_t len = sw == channels ? pixels * channels : channels;
    if (stream && runs == 1) {
        io_store_stream(t->dtype, t->data, io_offset(t, n, 0, j, i), len, buf, tmp);
        return;
    }
    for (p = 0; p < runs; ++p) {
        int64_t off = io_offset(t, n, 0, j, i + p);
        if (t->dtype == MPSNORM_FLOAT64)
            io_store_d(t->data, off, 1, len, (const double *)buf + p * channels);
        else
            io_store_f(t->dtype, t->data, off, 1, len, (const float *)buf + p * channels);
    }
}

static void in_write_channels(const mpsnorm_instance_norm_job *job, int64_t image, int64_t band,
                              double *scratch)
{
    const int64_t channels = job->c, run = in_run(job);
    const int64_t j0 = band * job->band_rows, j1 = kmin(job->h, j0 + job->band_rows);
    const int64_t chunk = run / channels;
    const int wide = job->dtype == MPSNORM_FLOAT64;
    double *xb = scratch, *db = scratch + run, *ob = scratch + 2 * run;
    double *coef = scratch + 3 * run + 4 * channels;
    float *coef_f = (float *)coef;
    int64_t j, i, c, q;

    for (q = 0; q < 4; ++q)
        for (c = 0; c < channels; ++c) {
            double v = job->coef[(image * channels + c) * 4 + q];
            if (wide)
                coef[q * channels + c] = v;
            else
                coef_f[q * channels + c] = (float)v;
        }
    for (j = j0; j < j1; ++j)
        for (i = 0; i < job->w; i += chunk) {
            int64_t pixels = kmin(chunk, job->w - i);
            if (wide) {
                in_load_pixels_d(job->x, image, j, i, pixels, channels, xb);
                if (job->gradient)
                    in_load_pixels_d(job->dy, image, j, i, pixels, channels, db);
                in_apply_channels_d(xb, job->gradient ? db : NULL, ob, pixels, channels, coef);
            } else {
                const float *xf = in_view_pixels_f(job->x, image, j, i, pixels, channels,
                                                   (float *)xb);
                const float *df = job->gradient
                                      ? in_view_pixels_f(job->dy, image, j, i, pixels, channels,
                                                         (float *)db)
                                      : NULL;
                in_apply_channels_f(xf, df, (float *)ob, pixels, channels, coef_f);
            }
            in_store_pixels(job->out, image, j, i, pixels, channels, ob, job->stream_out, xb);
        }
}

static void KNAME(instance_norm_write)(const mpsnorm_instance_norm_job *job, int64_t owner,
                                       int64_t band, void *scratch_bytes)
{
    double *scratch = (double *)scratch_bytes;
    const int64_t run = in_run(job);
    int64_t plane = owner, n, c, j, j0, j1, i;
    const double *k4;
    const mpsnorm_tensor *x = job->x, *dy = job->dy, *out = job->out;

    if (job->channel_mode) {
        in_write_channels(job, owner, band, scratch);
        if (job->stream_out)
            io_stream_fence();
        return;
    }
    n = plane / job->c;
    c = plane % job->c;
    j0 = band * job->band_rows;
    j1 = kmin(job->h, j0 + job->band_rows);
    k4 = job->coef + plane * 4;
    for (j = j0; j < j1; ++j)
        for (i = 0; i < job->w; i += run) {
            int64_t m = kmin(run, job->w - i);
            int64_t ox = io_offset(x, n, c, j, i), oo = io_offset(out, n, c, j, i);
            if (job->dtype == MPSNORM_FLOAT64) {
                double *xb = scratch, *db = scratch + run, *ob = scratch + 2 * run;
                io_load_d(x->dtype, x->data, ox, x->strides[3], m, xb);
                if (job->gradient)
                    io_load_d(dy->dtype, dy->data, io_offset(dy, n, c, j, i), dy->strides[3], m,
                              db);
                in_apply_d(xb, job->gradient ? db : NULL, ob, m, k4[0], k4[1], k4[2], k4[3]);
                if (job->stream_out)
                    io_store_stream(MPSNORM_FLOAT64, out->data, oo, m, ob, NULL);
                else
                    io_store_d(out->data, oo, out->strides[3], m, ob);
            } else {
                /* float32 rows are written in place unless streamed */
                const int direct = !job->stream_out && out->dtype == MPSNORM_FLOAT32 &&
                                   out->strides[3] == 1;
                float *of = direct ? (float *)out->data + oo : (float *)(scratch + 2 * run);
                const float *xv = in_view_f(x, ox, x->strides[3], m, (float *)scratch);
                const float *dv = job->gradient ? in_view_f(dy, io_offset(dy, n, c, j, i),
                                                            dy->strides[3], m,
                                                            (float *)(scratch + run))
                                                : NULL;
                in_apply_f(xv, dv, of, m, (float)k4[0], (float)k4[1], (float)k4[2],
                           (float)k4[3]);
                if (job->stream_out) /* scratch: the float16 narrowing's buffer */
                    io_store_stream(out->dtype, out->data, oo, m, of, scratch);
                else if (!direct)
                    io_store_f(out->dtype, out->data, oo, out->strides[3], m, of);
            }
        }
    if (job->stream_out)
        io_stream_fence();
}

#undef IN_LANES
#undef IN_NV
#undef IN_ACC
#undef IN_VIEW
#undef IN_ACC_CHANNELS
#undef IN_LOAD_PIXELS
#undef IN_APPLY
#undef IN_APPLY_CHANNELS

#endif /* MPSNORM_CPU_KERN_INSTANCE_NORM_H */
