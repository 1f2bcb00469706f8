/*
 * instance_norm.c -- instance normalization, forward and gradient, on the CPU.
 *
 * Per plane (n, c), in double whatever the storage dtype (SPEC.md):
 *   mu = mean(X), var = mean((X - mu)^2) (two passes), r = 1/sqrt(var + eps),
 *   Xh = (X - mu)*r, Y = gamma[c]*Xh + beta[c];
 *   dX = gamma[c]*r*(dY - mean(dY) - Xh*mean(dY*Xh)),
 *   dbeta[c] = sum over n, pixels of dY, dgamma[c] = sum of dY*Xh.
 * Sums are pairwise. Each plane is done by one worker, and the per-plane
 * partial sums of dgamma/dbeta are added over n in a fixed order afterwards,
 * so results do not depend on the thread count.
 */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "backend.h"
#include "pairwise_sum.h"
#include "plane_io.h"
#include "scratch.h"
#include "threads.h"

typedef struct inorm_job {
    const mpsnorm_tensor *x;
    const mpsnorm_tensor *dy;  /* gradient only */
    const mpsnorm_tensor *out; /* y or dx */
    const float *gamma;        /* NULL: ones */
    const float *beta;         /* NULL: zeros */
    double epsilon;
    int64_t channels, plane;
    double *dgamma_part;       /* N*C per-plane sums, or NULL */
    double *dbeta_part;
    mpsnorm_scratch scratch;
} inorm_job;

/* mean and r = 1/sqrt(var + eps) of a plane, variance in a second pass */
static void plane_moments(const double *xs, int64_t count, double epsilon, double *mean,
                          double *r)
{
    const double n = (double)count;
    double mu = mpsnorm_pairwise_sum(xs, count) / n;
    double var = mpsnorm_pairwise_sumsq(xs, mu, count) / n;
    *mean = mu;
    *r = 1.0 / sqrt(var + epsilon);
}

static void inorm_forward_task(void *context, int64_t first, int64_t last, int worker)
{
    const inorm_job *job = (const inorm_job *)context;
    const int64_t plane = job->plane;
    double *xs = job->scratch.block[worker];
    int64_t task, k;

    for (task = first; task < last; ++task) {
        int64_t n = task / job->channels, c = task % job->channels;
        double g = job->gamma != NULL ? (double)job->gamma[c] : 1.0;
        double b = job->beta != NULL ? (double)job->beta[c] : 0.0;
        double mu, r;

        mpsnorm_plane_load(job->x, n, c, xs);
        plane_moments(xs, plane, job->epsilon, &mu, &r);
        for (k = 0; k < plane; ++k)
            xs[k] = g * ((xs[k] - mu) * r) + b;
        mpsnorm_plane_store(job->out, n, c, xs);
    }
}

static void inorm_gradient_task(void *context, int64_t first, int64_t last, int worker)
{
    const inorm_job *job = (const inorm_job *)context;
    const int64_t plane = job->plane;
    const double count = (double)plane;
    double *xs = job->scratch.block[worker];
    double *ds = xs + plane;
    int64_t task, k;

    for (task = first; task < last; ++task) {
        int64_t n = task / job->channels, c = task % job->channels;
        double g = job->gamma != NULL ? (double)job->gamma[c] : 1.0;
        double mu, r, sum_dy, sum_dy_xh, mean_dy, mean_dy_xh, scale;

        mpsnorm_plane_load(job->x, n, c, xs);
        mpsnorm_plane_load(job->dy, n, c, ds);
        plane_moments(xs, plane, job->epsilon, &mu, &r);
        for (k = 0; k < plane; ++k)
            xs[k] = (xs[k] - mu) * r; /* Xh */
        sum_dy = mpsnorm_pairwise_sum(ds, plane);
        sum_dy_xh = mpsnorm_pairwise_dot(ds, xs, plane);
        mean_dy = sum_dy / count;
        mean_dy_xh = sum_dy_xh / count;
        scale = g * r;
        for (k = 0; k < plane; ++k)
            xs[k] = scale * (ds[k] - mean_dy - xs[k] * mean_dy_xh);
        mpsnorm_plane_store(job->out, n, c, xs);
        if (job->dgamma_part != NULL) {
            job->dgamma_part[task] = sum_dy_xh;
            job->dbeta_part[task] = sum_dy;
        }
    }
}

static int inorm_setup(inorm_job *job, const mpsnorm_inorm_params *params,
                       const mpsnorm_tensor *dy, const mpsnorm_tensor *x,
                       const mpsnorm_tensor *out)
{
    job->x = x;
    job->dy = dy;
    job->out = out;
    job->gamma = params->gamma;
    job->beta = params->beta;
    job->epsilon = (double)params->epsilon;
    job->channels = x->shape[1];
    job->plane = mpsnorm_size_mad(x->shape[2], x->shape[3], 0);
    job->dgamma_part = NULL;
    job->dbeta_part = NULL;
    job->scratch.workers = 0;
    job->scratch.block = NULL;
    return job->plane < 0 ? MPSNORM_ERR_OUT_OF_MEMORY : MPSNORM_OK;
}

static int64_t work_of(int64_t plane, int64_t ops_per_pixel)
{
    return plane > INT64_MAX / ops_per_pixel ? INT64_MAX : plane * ops_per_pixel;
}

int mpsnorm_cpu_inorm_forward(const mpsnorm_inorm_params *params, const mpsnorm_tensor *x,
                              const mpsnorm_tensor *y)
{
    inorm_job job;
    int64_t tasks = x->shape[0] * x->shape[1];
    int workers, status;

    status = inorm_setup(&job, params, NULL, x, y);
    if (status != MPSNORM_OK)
        return status;
    workers = mpsnorm_workers_for(tasks, work_of(job.plane, 6));
    status = mpsnorm_scratch_alloc(&job.scratch, workers, job.plane);
    if (status != MPSNORM_OK)
        return status;
    mpsnorm_parallel_for(tasks, workers, inorm_forward_task, &job);
    mpsnorm_scratch_free(&job.scratch);
    return MPSNORM_OK;
}

/* Sum of part[n*C + c] over n, in order of n. */
static double batch_sum(const double *part, int64_t batch, int64_t channels, int64_t c)
{
    double s = 0.0;
    int64_t n;
    for (n = 0; n < batch; ++n)
        s += part[n * channels + c];
    return s;
}

static void store_channel_sums(const mpsnorm_vector *vector, const double *part, int64_t batch,
                               int64_t channels)
{
    int64_t c;
    if (vector == NULL)
        return;
    for (c = 0; c < channels; ++c) {
        double s = batch_sum(part, batch, channels, c);
        if (vector->dtype == MPSNORM_FLOAT64)
            ((double *)vector->data)[c * vector->stride] = s;
        else
            ((float *)vector->data)[c * vector->stride] = (float)s;
    }
}

int mpsnorm_cpu_inorm_gradient(const mpsnorm_inorm_params *params, const mpsnorm_tensor *dy,
                               const mpsnorm_tensor *x, const mpsnorm_tensor *dx,
                               const mpsnorm_vector *dgamma, const mpsnorm_vector *dbeta)
{
    inorm_job job;
    const int64_t batch = x->shape[0], channels = x->shape[1];
    int64_t tasks = batch * channels;
    int64_t per_worker;
    double *parts = NULL;
    int workers, status;

    status = inorm_setup(&job, params, dy, x, dx);
    if (status != MPSNORM_OK)
        return status;
    per_worker = mpsnorm_size_mad(2, job.plane, 0);
    if (per_worker < 0)
        return MPSNORM_ERR_OUT_OF_MEMORY;
    if (dgamma != NULL || dbeta != NULL) {
        parts = mpsnorm_alloc_doubles(mpsnorm_size_mad(2, tasks, 0));
        if (parts == NULL)
            return MPSNORM_ERR_OUT_OF_MEMORY;
        job.dgamma_part = parts;
        job.dbeta_part = parts + tasks;
    }
    workers = mpsnorm_workers_for(tasks, work_of(job.plane, 10));
    status = mpsnorm_scratch_alloc(&job.scratch, workers, per_worker);
    if (status != MPSNORM_OK) {
        free(parts);
        return status;
    }

    mpsnorm_parallel_for(tasks, workers, inorm_gradient_task, &job);
    mpsnorm_scratch_free(&job.scratch);

    if (parts != NULL) {
        store_channel_sums(dgamma, job.dgamma_part, batch, channels);
        store_channel_sums(dbeta, job.dbeta_part, batch, channels);
        free(parts);
    }
    return MPSNORM_OK;
}
