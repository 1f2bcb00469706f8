/*
 * lcn_small.c -- LCN of tiny planes, each output from its own window's values
 * in double (docs/SPEC.md's formulas, term by term).
 *
 * Per plane: the window statistics of every pixel (the variance about the
 * window's mean, padding zeros included, which equals B(X^2)/N - M^2 without
 * its cancellation), then the output, or G = dY*D and U = dY*A*D/T and the
 * adjoint sums dX = ps*(G - (p0/N)*Badj(G) - (2*alpha*beta/N)*Badj(U*(X - M)))
 * with X taken at the output pixel. A NaN or infinity reaches exactly the
 * windows that hold it, as in the streamed kernels.
 */
#include "lcn_small.h"

#include <math.h>
#include <stdint.h>

#include "element.h"

/* Window terms a small job may sum per plane (every pixel's clipped window). */
#define LCN_SMALL_TERMS 512

static int64_t extent_in(int64_t before, int64_t after, int64_t n)
{
    const int64_t length = before + after + 1;
    return length < n ? length : n;
}

int mpsnorm_lcn_small_fits(const mpsnorm_lcn_job *job)
{
    const int64_t pixels = job->h * job->w;
    if (job->h > MPSNORM_LCN_SMALL_PIXELS || job->w > MPSNORM_LCN_SMALL_PIXELS ||
        pixels > MPSNORM_LCN_SMALL_PIXELS)
        return 0;
    return pixels * extent_in(job->up, job->down, job->h) *
               extent_in(job->left, job->right, job->w) <=
           LCN_SMALL_TERMS;
}

/* [lo, hi] of a window [p - before, p + after] clipped to [0, n). */
static void clip(int64_t p, int64_t before, int64_t after, int64_t n, int64_t *lo, int64_t *hi)
{
    *lo = p - before > 0 ? p - before : 0;
    *hi = p + after < n - 1 ? p + after : n - 1;
}

/* t^-beta, the common betas without pow */
static double power(const mpsnorm_lcn_job *job, double t)
{
    switch (job->power) {
    case MPSNORM_POWER_RSQRT:
        return 1.0 / sqrt(t);
    case MPSNORM_POWER_RECIPROCAL:
        return 1.0 / t;
    default:
        return pow(t, -job->beta);
    }
}

static void small_plane(const mpsnorm_lcn_job *job, int64_t plane, double d_delta)
{
    enum { P = MPSNORM_LCN_SMALL_PIXELS };
    const int64_t n = plane / job->c, c = plane % job->c, h = job->h, w = job->w;
    const double count = job->count, inv_count = 1.0 / count;
    double x[P], dy[P], mean[P], g[P], u[P];
    int64_t j, i, a, b, a0, a1, b0, b1;

    for (j = 0; j < h; ++j)
        for (i = 0; i < w; ++i) {
            const mpsnorm_tensor *tx = job->x, *tdy = job->dy;
            x[j * w + i] = mpsnorm_element_read(tx, mpsnorm_element_offset(tx, n, c, j, i));
            dy[j * w + i] =
                job->gradient ? mpsnorm_element_read(tdy, mpsnorm_element_offset(tdy, n, c, j, i))
                              : 0.0;
        }
    for (j = 0; j < h; ++j)
        for (i = 0; i < w; ++i) {
            const int64_t q = j * w + i;
            double sum = 0.0, m, t = job->delta, d, centred;
            clip(j, job->up, job->down, h, &a0, &a1);
            clip(i, job->left, job->right, w, &b0, &b1);
            for (a = a0; a <= a1; ++a)
                for (b = b0; b <= b1; ++b)
                    sum += x[a * w + b];
            m = sum * inv_count;
            if (job->alpha != 0.0) {
                /* padding pixels are zeros of the window: each adds m^2 */
                double squares = (count - (double)((a1 - a0 + 1) * (b1 - b0 + 1))) * m * m;
                double var;
                for (a = a0; a <= a1; ++a)
                    for (b = b0; b <= b1; ++b)
                        squares += (x[a * w + b] - m) * (x[a * w + b] - m);
                var = squares * inv_count;
                var = var < 0.0 ? 0.0 : var; /* keeps NaN */
                t = job->delta + job->alpha * var;
            }
            d = job->alpha == 0.0 ? d_delta : power(job, t);
            centred = x[q] - job->p0 * m;
            if (!job->gradient) {
                mpsnorm_element_write(job->out, mpsnorm_element_offset(job->out, n, c, j, i),
                                      job->pm + job->ps * centred * d);
                continue;
            }
            mean[q] = m;
            g[q] = dy[q] * d;
            u[q] = dy[q] * centred * (job->power == MPSNORM_POWER_RSQRT ? d * d * d : d / t);
        }
    if (!job->gradient)
        return;
    for (j = 0; j < h; ++j)
        for (i = 0; i < w; ++i) {
            const int64_t q = j * w + i;
            double sum_g = 0.0, sum_u = 0.0, dx;
            /* the outputs whose window holds (j, i): rows [j - down, j + up] */
            clip(j, job->down, job->up, h, &a0, &a1);
            clip(i, job->right, job->left, w, &b0, &b1);
            for (a = a0; a <= a1; ++a)
                for (b = b0; b <= b1; ++b)
                    sum_g += g[a * w + b];
            dx = g[q] - job->p0 * inv_count * sum_g;
            if (job->alpha != 0.0) {
                for (a = a0; a <= a1; ++a)
                    for (b = b0; b <= b1; ++b)
                        sum_u += u[a * w + b] * (x[q] - mean[a * w + b]);
                dx -= 2.0 * job->alpha * job->beta * inv_count * sum_u;
            }
            mpsnorm_element_write(job->out, mpsnorm_element_offset(job->out, n, c, j, i),
                                  job->ps * dx);
        }
}

void mpsnorm_lcn_small_planes(const mpsnorm_lcn_job *job, int64_t first, int64_t last)
{
    const double d_delta = power(job, job->delta); /* D where alpha is 0 */
    int64_t plane;
    for (plane = first; plane < last; ++plane)
        small_plane(job, plane, d_delta);
}
