/*
 * lcn.c -- local contrast normalization, forward and gradient, on the CPU.
 *
 * Per plane, in double whatever the storage dtype (SPEC.md):
 *   M = boxsum(X)/N, VAR = max(boxsum(X^2)/N - M^2, 0), T = delta + alpha*VAR,
 *   D = T^-beta, Y = pm + ps*(X - p0*M)*D, N = kw*kh;
 *   dX = ps*(G - (p0/N)*Badj(G) - (2*alpha*beta/N)*(X*Badj(U) - Badj(U*M))),
 *   G = dY*D, U = dY*(X - p0*M)*D/T,
 * where Badj is the box sum over the mirrored window. Each plane is done by
 * one worker start to end, so results do not depend on the thread count.
 */
#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "backend.h"
#include "box_sum.h"
#include "plane_io.h"
#include "scratch.h"
#include "threads.h"

/* How T^-beta is computed: exact special cases for the common betas. */
enum { POWER_RSQRT, POWER_RECIPROCAL, POWER_GENERAL };

typedef struct lcn_job {
    const mpsnorm_tensor *x;
    const mpsnorm_tensor *dy;  /* gradient only */
    const mpsnorm_tensor *out; /* y or dx */
    int64_t channels, h, w, plane;
    int64_t left, right, up, down; /* window: columns [i-left, i+right], rows [j-up, j+down] */
    double count;                  /* N = kw * kh */
    double alpha, beta, delta, p0, pm, ps;
    int power;
    double d_const;                /* T^-beta for alpha == 0 */
    mpsnorm_scratch scratch;
} lcn_job;

static double power_of(int power, double beta, double t)
{
    switch (power) {
    case POWER_RSQRT:
        return 1.0 / sqrt(t);
    case POWER_RECIPROCAL:
        return 1.0 / t;
    default:
        return pow(t, -beta);
    }
}

/* Forward: Y into ym from X in xs, window sums in ms and qs. */
static void lcn_forward_pixels(const lcn_job *job, const double *restrict xs,
                               double *restrict ms, const double *restrict qs)
{
    const int64_t count = job->plane;
    const double n = job->count, alpha = job->alpha, delta = job->delta;
    const double p0 = job->p0, pm = job->pm, ps = job->ps, beta = job->beta;
    int64_t k;

    if (alpha == 0.0) {
        const double d = job->d_const;
        for (k = 0; k < count; ++k) {
            double m = ms[k] / n;
            ms[k] = pm + ps * (xs[k] - p0 * m) * d;
        }
        return;
    }

#define LCN_FORWARD_LOOP(D_OF_T)                                   \
    for (k = 0; k < count; ++k) {                                  \
        double m = ms[k] / n;                                      \
        double var = qs[k] / n - m * m;                            \
        double t, d;                                               \
        if (var < 0.0)                                             \
            var = 0.0;                                             \
        t = delta + alpha * var;                                   \
        d = (D_OF_T);                                              \
        ms[k] = pm + ps * (xs[k] - p0 * m) * d;                    \
    }

    switch (job->power) {
    case POWER_RSQRT:
        LCN_FORWARD_LOOP(1.0 / sqrt(t))
        break;
    case POWER_RECIPROCAL:
        LCN_FORWARD_LOOP(1.0 / t)
        break;
    default:
        LCN_FORWARD_LOOP(pow(t, -beta))
        break;
    }
#undef LCN_FORWARD_LOOP
}

static void lcn_forward_task(void *context, int64_t first, int64_t last, int worker)
{
    const lcn_job *job = (const lcn_job *)context;
    const int64_t plane = job->plane;
    double *xs = job->scratch.block[worker];
    double *ms = xs + plane;
    double *qs = ms + plane;
    double *box = qs + plane;
    int64_t task, k;

    for (task = first; task < last; ++task) {
        int64_t n = task / job->channels, c = task % job->channels;

        mpsnorm_plane_load(job->x, n, c, xs);
        mpsnorm_box_sum(xs, ms, job->h, job->w, job->left, job->right, job->up, job->down, box);
        if (job->alpha != 0.0) {
            for (k = 0; k < plane; ++k)
                qs[k] = xs[k] * xs[k];
            mpsnorm_box_sum(qs, qs, job->h, job->w, job->left, job->right, job->up, job->down,
                            box);
        }
        lcn_forward_pixels(job, xs, ms, qs);
        mpsnorm_plane_store(job->out, n, c, ms);
    }
}

/*
 * Gradient pixel pass (alpha != 0). In: xs = X, gs = dY, ms = boxsum(X),
 * us = boxsum(X^2). Out: gs = G, us = U, ms = U*M.
 */
static void lcn_gradient_pixels(const lcn_job *job, const double *restrict xs,
                                double *restrict gs, double *restrict ms, double *restrict us)
{
    const int64_t count = job->plane;
    const double n = job->count, alpha = job->alpha, delta = job->delta;
    const double p0 = job->p0, beta = job->beta;
    int64_t k;

#define LCN_GRADIENT_LOOP(D_OF_T)                                  \
    for (k = 0; k < count; ++k) {                                  \
        double m = ms[k] / n;                                      \
        double var = us[k] / n - m * m;                            \
        double t, d, dy, u;                                        \
        if (var < 0.0)                                             \
            var = 0.0;                                             \
        t = delta + alpha * var;                                   \
        d = (D_OF_T);                                              \
        dy = gs[k];                                                \
        u = dy * (xs[k] - p0 * m) * d / t;                         \
        gs[k] = dy * d;                                            \
        us[k] = u;                                                 \
        ms[k] = u * m;                                             \
    }

    switch (job->power) {
    case POWER_RSQRT:
        LCN_GRADIENT_LOOP(1.0 / sqrt(t))
        break;
    case POWER_RECIPROCAL:
        LCN_GRADIENT_LOOP(1.0 / t)
        break;
    default:
        LCN_GRADIENT_LOOP(pow(t, -beta))
        break;
    }
#undef LCN_GRADIENT_LOOP
}

static void lcn_gradient_task(void *context, int64_t first, int64_t last, int worker)
{
    const lcn_job *job = (const lcn_job *)context;
    const int64_t plane = job->plane, h = job->h, w = job->w;
    /* mirrored window of the adjoint: left and right (up and down) swapped */
    const int64_t al = job->right, ar = job->left, au = job->down, ad = job->up;
    const double ps = job->ps, c1 = job->p0 / job->count;
    const double c2 = 2.0 * job->alpha * job->beta / job->count;
    double *xs = job->scratch.block[worker];
    double *gs = xs + plane;
    double *ms = gs + plane;
    double *us = ms + plane;
    double *box = us + plane;
    int64_t task, k;

    for (task = first; task < last; ++task) {
        int64_t n = task / job->channels, c = task % job->channels;

        mpsnorm_plane_load(job->dy, n, c, gs);

        if (job->alpha == 0.0) {
            /* T = delta everywhere: only the mean term remains, X is not
             * needed at all (the U terms are skipped, as SPEC allows) */
            const double d = job->d_const;
            for (k = 0; k < plane; ++k)
                gs[k] = gs[k] * d;
            mpsnorm_box_sum(gs, us, h, w, al, ar, au, ad, box);
            for (k = 0; k < plane; ++k)
                us[k] = ps * (gs[k] - c1 * us[k]);
            mpsnorm_plane_store(job->out, n, c, us);
            continue;
        }

        mpsnorm_plane_load(job->x, n, c, xs);
        mpsnorm_box_sum(xs, ms, h, w, job->left, job->right, job->up, job->down, box);
        for (k = 0; k < plane; ++k)
            us[k] = xs[k] * xs[k];
        mpsnorm_box_sum(us, us, h, w, job->left, job->right, job->up, job->down, box);
        lcn_gradient_pixels(job, xs, gs, ms, us);

        mpsnorm_box_sum(us, us, h, w, al, ar, au, ad, box); /* Badj(U) */
        mpsnorm_box_sum(ms, ms, h, w, al, ar, au, ad, box); /* Badj(U*M) */
        for (k = 0; k < plane; ++k)
            ms[k] = xs[k] * us[k] - ms[k];
        mpsnorm_box_sum(gs, us, h, w, al, ar, au, ad, box); /* Badj(G) */
        for (k = 0; k < plane; ++k)
            us[k] = ps * (gs[k] - c1 * us[k] - c2 * ms[k]);
        mpsnorm_plane_store(job->out, n, c, us);
    }
}

/* Shared set-up of both directions; planes_needed counts the H x W buffers. */
static int lcn_run(const mpsnorm_lcn_params *params, const mpsnorm_tensor *dy,
                   const mpsnorm_tensor *x, const mpsnorm_tensor *out, int64_t planes_needed,
                   int64_t ops_per_pixel, mpsnorm_task_fn fn)
{
    lcn_job job;
    int64_t tasks, box_size, per_worker, work;
    int workers, status;

    job.x = x;
    job.dy = dy;
    job.out = out;
    job.channels = x->shape[1];
    job.h = x->shape[2];
    job.w = x->shape[3];
    job.plane = mpsnorm_size_mad(job.h, job.w, 0);
    if (job.plane < 0)
        return MPSNORM_ERR_OUT_OF_MEMORY;
    job.left = (params->kernel_width - 1) / 2;
    job.right = params->kernel_width / 2;
    job.up = (params->kernel_height - 1) / 2;
    job.down = params->kernel_height / 2;
    job.count = (double)params->kernel_width * (double)params->kernel_height;
    job.alpha = (double)params->alpha;
    job.beta = (double)params->beta;
    job.delta = (double)params->delta;
    job.p0 = (double)params->p0;
    job.pm = (double)params->pm;
    job.ps = (double)params->ps;
    job.power = job.beta == 0.5 ? POWER_RSQRT
              : job.beta == 1.0 ? POWER_RECIPROCAL
                                : POWER_GENERAL;
    job.d_const = power_of(job.power, job.beta, job.delta);

    box_size = mpsnorm_box_scratch_size(job.h, job.w);
    per_worker = box_size < 0 ? -1 : mpsnorm_size_mad(planes_needed, job.plane, box_size);
    if (per_worker < 0)
        return MPSNORM_ERR_OUT_OF_MEMORY;

    tasks = x->shape[0] * x->shape[1];
    work = job.plane > INT64_MAX / ops_per_pixel ? INT64_MAX : job.plane * ops_per_pixel;
    workers = mpsnorm_workers_for(tasks, work);
    status = mpsnorm_scratch_alloc(&job.scratch, workers, per_worker);
    if (status != MPSNORM_OK)
        return status;

    mpsnorm_parallel_for(tasks, workers, fn, &job);
    mpsnorm_scratch_free(&job.scratch);
    return MPSNORM_OK;
}

int mpsnorm_cpu_lcn_forward(const mpsnorm_lcn_params *params, const mpsnorm_tensor *x,
                            const mpsnorm_tensor *y)
{
    /* X, window sum of X, window sum of X^2 */
    return lcn_run(params, NULL, x, y, 3, 16, lcn_forward_task);
}

int mpsnorm_cpu_lcn_gradient(const mpsnorm_lcn_params *params, const mpsnorm_tensor *dy,
                             const mpsnorm_tensor *x, const mpsnorm_tensor *dx)
{
    /* X, G, M / U*M, U */
    return lcn_run(params, dy, x, dx, 4, 40, lcn_gradient_task);
}
