/*
 * instance_norm.c -- instance normalization, forward and gradient, on the CPU
 * (the driver: job set-up, rounds, threads; the loops are in kern_instance_norm.h).
 *
 * Per plane (n, c), docs/SPEC.md:
 *   mu = mean(X), var = mean((X - mu)^2), r = 1/sqrt(var + eps),
 *   Y = gamma[c]*(X - mu)*r + beta[c],
 *   dX = gamma[c]*r*(dY - mean(dY) - Xh*mean(dY*Xh)),  Xh = (X - mu)*r,
 *   dbeta[c] = sum over n, pixels of dY, dgamma[c] = sum of dY*Xh.
 *
 * Sums are taken in double about a shift s (v = X - s):
 *   float32/float16: one streaming round, s = the mean of the plane's first
 *     (up to) 64 values: var = mean(v^2) - mean(v)^2 is then accurate to far
 *     better than the float32 tolerance (double sums; mean(v) is small);
 *   float64: two rounds, the first finds mu, the second sums about it
 *     (the corrected two-pass algorithm).
 * then one writing round. Memory per call: O(planes x bands) numbers and
 * O(threads x row chunk) scratch; never a copy of a plane.
 *
 * A plane is cut into bands of a fixed number of rows (shape only). A call
 * with many planes gives each worker whole planes (every round of a plane in
 * one task, while it is in cache); a call with few, large planes runs each
 * round over all bands of all planes in parallel. Both add the band sums of
 * a plane in band order, so the result is the same bits for any thread count.
 */
#include <assert.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "element.h"
#include "kernels.h"
#include "scratch.h"
#include "threads.h"

/* Elements per band (a plane, or an image in channel mode, of at most this
 * many elements is one band). */
#define INSTANCE_NORM_BAND_ELEMENTS ((int64_t)1 << 16)
/* Values averaged for the float32/float16 shift. */
#define INSTANCE_NORM_SHIFT_VALUES 64
/* Arrays and scratch of a small one-worker call, on the caller's stack. */
#define INSTANCE_NORM_LOCAL_DOUBLES 256

typedef struct instance_norm_run {
    mpsnorm_instance_norm_job job;
    const mpsnorm_kernels *kernels;
    const float *gamma, *beta;
    double epsilon;
    double *shift, *part, *coef;
    double *plane_dgamma, *plane_dbeta; /* per plane; NULL for the forward */
    mpsnorm_scratch scratch;
    int round; /* phase mode: the round being run */
} instance_norm_run;

int64_t mpsnorm_instance_norm_scratch_bytes(const mpsnorm_instance_norm_job *job)
{
    int64_t doubles = mpsnorm_size_mad(3, job->run, 0);
    if (job->channel_mode && doubles >= 0)
        doubles = mpsnorm_size_mad(8, job->c, doubles);
    return doubles < 0 ? -1 : mpsnorm_size_mad(doubles, (int64_t)sizeof(double), 0);
}

static int64_t sat_mul(int64_t a, int64_t b)
{
    return b != 0 && a > INT64_MAX / b ? INT64_MAX : a * b;
}

/* Mean of the first INSTANCE_NORM_SHIFT_VALUES values of row 0 of plane p. */
static double plane_shift(const mpsnorm_tensor *x, int64_t plane, int64_t channels)
{
    int64_t n = plane / channels, c = plane % channels, count, i;
    double s = 0.0;
    count = x->shape[3] < INSTANCE_NORM_SHIFT_VALUES ? x->shape[3] : INSTANCE_NORM_SHIFT_VALUES;
    for (i = 0; i < count; ++i)
        s += mpsnorm_element_read(x, mpsnorm_element_offset(x, n, c, 0, i));
    return s / (double)count;
}

/* Adds plane p's band sums (in band order) and, after the last round, turns
 * them into the writer's coefficients. */
static void finish_round(instance_norm_run *run, int64_t plane, int round)
{
    mpsnorm_instance_norm_job *job = &run->job;
    const double count = (double)job->h * (double)job->w;
    const double *part = run->part + plane * job->bands * 4;
    double total[4] = {0.0, 0.0, 0.0, 0.0};
    double mean_v, mu, var, r, g, b, m_out;
    int64_t band;
    int q;

    for (band = 0; band < job->bands; ++band)
        for (q = 0; q < 4; ++q)
            total[q] += part[band * 4 + q];
    mean_v = total[0] / count;
    mu = run->shift[plane] + mean_v;
    if (round + 1 < job->rounds) {
        run->shift[plane] = mu;
        return;
    }
    var = total[1] / count - mean_v * mean_v;
    if (var < 0.0)
        var = 0.0;
    r = 1.0 / sqrt(var + run->epsilon);
    g = run->gamma != NULL ? (double)run->gamma[plane % job->c] : 1.0;
    b = run->beta != NULL ? (double)run->beta[plane % job->c] : 0.0;
    /* the writer subtracts M = mu as stored in its arithmetic's precision */
    m_out = job->dtype == MPSNORM_FLOAT64 ? mu : (double)(float)mu;
    if (!job->gradient) {
        double B = g * r;
        run->coef[plane * 4 + 0] = 0.0;
        run->coef[plane * 4 + 1] = B;
        run->coef[plane * 4 + 2] = b + B * (m_out - mu);
        run->coef[plane * 4 + 3] = m_out;
    } else {
        double m1 = total[2] / count;
        double m2 = total[3] / count - mean_v * m1; /* mean(dY * (X - mu)) */
        double A = g * r, B = -g * r * r * r * m2;
        run->coef[plane * 4 + 0] = A;
        run->coef[plane * 4 + 1] = B;
        run->coef[plane * 4 + 2] = -A * m1 + B * (m_out - mu);
        run->coef[plane * 4 + 3] = m_out;
        if (run->plane_dgamma != NULL) {
            run->plane_dgamma[plane] = r * m2 * count;
            run->plane_dbeta[plane] = total[2];
        }
    }
}

static void finish_owner(instance_norm_run *run, int64_t owner, int round)
{
    int64_t c;
    if (!run->job.channel_mode) {
        finish_round(run, owner, round);
        return;
    }
    for (c = 0; c < run->job.c; ++c)
        finish_round(run, owner * run->job.c + c, round);
}

/* Owner mode: every round of whole planes (images in channel mode). */
static void owner_task(void *context, int64_t first, int64_t last, int worker)
{
    instance_norm_run *run = (instance_norm_run *)context;
    const mpsnorm_instance_norm_job *job = &run->job;
    void *scratch = run->scratch.block[worker];
    int64_t owner, band;
    int round;

    for (owner = first; owner < last; ++owner) {
        for (round = 0; round < job->rounds; ++round) {
            for (band = 0; band < job->bands; ++band)
                run->kernels->instance_norm_reduce(job, owner, band, round, scratch);
            finish_owner(run, owner, round);
        }
        for (band = 0; band < job->bands; ++band)
            run->kernels->instance_norm_write(job, owner, band, scratch);
    }
}

/* Phase mode: one round (or the writing) over units = owner * bands + band. */
static void reduce_task(void *context, int64_t first, int64_t last, int worker)
{
    instance_norm_run *run = (instance_norm_run *)context;
    int64_t unit;
    for (unit = first; unit < last; ++unit)
        run->kernels->instance_norm_reduce(&run->job, unit / run->job.bands, unit % run->job.bands,
                                   run->round, run->scratch.block[worker]);
}

static void write_task(void *context, int64_t first, int64_t last, int worker)
{
    instance_norm_run *run = (instance_norm_run *)context;
    int64_t unit;
    for (unit = first; unit < last; ++unit)
        run->kernels->instance_norm_write(&run->job, unit / run->job.bands, unit % run->job.bands,
                                  run->scratch.block[worker]);
}

static void store_channel_sums(const mpsnorm_vector *vector, const double *per_plane,
                               int64_t batch, int64_t channels)
{
    int64_t c, n;
    if (vector == NULL)
        return;
    for (c = 0; c < channels; ++c) {
        double s = 0.0;
        for (n = 0; n < batch; ++n)
            s += per_plane[n * channels + c];
        if (vector->dtype == MPSNORM_FLOAT64)
            ((double *)vector->data)[c * vector->stride] = s;
        else
            ((float *)vector->data)[c * vector->stride] = (float)s;
    }
}

static int instance_norm_main(const mpsnorm_inorm_params *params, const mpsnorm_tensor *dy,
                      const mpsnorm_tensor *x, const mpsnorm_tensor *out,
                      const mpsnorm_vector *dgamma, const mpsnorm_vector *dbeta)
{
    instance_norm_run run;
    mpsnorm_instance_norm_job *job = &run.job;
    const int64_t batch = x->shape[0], channels = x->shape[1];
    int64_t plane, planes, owners, units, per_band, band_elements, arrays, scratch_bytes;
    int64_t work;
    double *memory;
    double local_arrays[INSTANCE_NORM_LOCAL_DOUBLES], local_scratch[INSTANCE_NORM_LOCAL_DOUBLES];
    int workers, threads, round, status;

    memset(&run, 0, sizeof run);
    job->x = x;
    job->dy = dy;
    job->out = out;
    job->dtype = x->dtype;
    job->gradient = dy != NULL;
    job->n = batch;
    job->c = channels;
    job->h = x->shape[2];
    job->w = x->shape[3];
    /* a plane whose bytes do not fit in the address space cannot exist */
    plane = mpsnorm_size_mad(job->h, job->w, 0);
    if (plane < 0 || mpsnorm_size_mad(plane, 8, 0) < 0)
        return MPSNORM_ERR_OUT_OF_MEMORY;
    planes = batch * channels;
    job->channel_mode = channels > 1 && x->strides[1] == 1 && out->strides[1] == 1 &&
                        (dy == NULL || dy->strides[1] == 1);
    {
        int64_t total = mpsnorm_size_mad(plane, batch * channels, 0);
        int64_t unit = job->channel_mode ? channels : 1;
        job->stream_out = total >= 0 && total > MPSNORM_STREAM_BYTES / 8 &&
                          out->strides[3] == unit;
    }
    if (job->channel_mode)
        job->run = channels > MPSNORM_INSTANCE_NORM_CHUNK ? channels : MPSNORM_INSTANCE_NORM_CHUNK;
    else
        job->run = job->w >= MPSNORM_INSTANCE_NORM_CHUNK ? MPSNORM_INSTANCE_NORM_CHUNK
                                                         : (job->w + 15) / 16 * 16;
    band_elements = job->channel_mode ? (INT64_MAX / channels < job->w ? INT64_MAX
                                                                       : job->w * channels)
                                      : job->w;
    job->band_rows = INSTANCE_NORM_BAND_ELEMENTS / band_elements;
    if (job->band_rows < 1)
        job->band_rows = 1;
    if (job->band_rows > job->h)
        job->band_rows = job->h;
    job->bands = (job->h + job->band_rows - 1) / job->band_rows;
    if (job->dtype == MPSNORM_FLOAT64) {
        job->rounds = 2;
        job->quantities[0] = 2;
        job->quantities[1] = job->gradient ? 4 : 2;
    } else {
        job->rounds = 1;
        job->quantities[0] = job->gradient ? 4 : 2;
    }
    run.kernels = mpsnorm_kernels_get();
    run.gamma = params->gamma;
    run.beta = params->beta;
    run.epsilon = (double)params->epsilon;

    /* shift, coef (4), per-plane dgamma/dbeta (2), partials (4 per band) */
    per_band = mpsnorm_size_mad(planes, job->bands, 0);
    arrays = per_band < 0 ? -1 : mpsnorm_size_mad(4, per_band, 0);
    arrays = arrays < 0 ? -1 : mpsnorm_size_mad(7, planes, arrays);
    memory = arrays >= 0 && arrays <= INSTANCE_NORM_LOCAL_DOUBLES ? local_arrays
                                                          : mpsnorm_alloc_doubles(arrays);
    scratch_bytes = mpsnorm_instance_norm_scratch_bytes(job);
    if (memory == NULL || scratch_bytes < 0) {
        if (memory != local_arrays)
            free(memory);
        return MPSNORM_ERR_OUT_OF_MEMORY;
    }
    run.shift = memory;
    run.coef = memory + planes;
    run.plane_dgamma = job->gradient ? memory + 5 * planes : NULL;
    run.plane_dbeta = job->gradient ? memory + 6 * planes : NULL;
    run.part = memory + 7 * planes;
    job->shift = run.shift;
    job->part = run.part;
    job->coef = run.coef;
    for (plane = 0; plane < planes; ++plane)
        run.shift[plane] = job->dtype == MPSNORM_FLOAT64 ? 0.0 : plane_shift(x, plane, channels);

    owners = job->channel_mode ? batch : planes;
    units = owners * job->bands;
    threads = mpsnorm_get_num_threads();
    work = sat_mul(sat_mul(plane, job->gradient ? 6 : 4), job->channel_mode ? channels : 1);
    if (job->bands == 1 || owners >= 4 * (int64_t)threads) {
        workers = mpsnorm_workers_for(owners, work);
        status = mpsnorm_scratch_alloc_local(&run.scratch, workers,
                                             (scratch_bytes + 7) / (int64_t)sizeof(double),
                                             local_scratch, INSTANCE_NORM_LOCAL_DOUBLES);
        if (status != MPSNORM_OK) {
            if (memory != local_arrays)
                free(memory);
            return status;
        }
        mpsnorm_parallel_for(owners, workers, owner_task, &run);
    } else {
        int64_t owner;
        workers = mpsnorm_workers_for(units, work / job->bands + 1);
        status = mpsnorm_scratch_alloc(&run.scratch, workers,
                                       (scratch_bytes + 7) / (int64_t)sizeof(double));
        if (status != MPSNORM_OK) {
            if (memory != local_arrays)
                free(memory);
            return status;
        }
        for (round = 0; round < job->rounds; ++round) {
            run.round = round;
            mpsnorm_parallel_for(units, workers, reduce_task, &run);
            for (owner = 0; owner < owners; ++owner)
                finish_owner(&run, owner, round);
        }
        mpsnorm_parallel_for(units, workers, write_task, &run);
    }
    mpsnorm_scratch_free(&run.scratch);

    if (job->gradient) {
        store_channel_sums(dgamma, run.plane_dgamma, batch, channels);
        store_channel_sums(dbeta, run.plane_dbeta, batch, channels);
    }
    if (memory != local_arrays)
        free(memory);
    return MPSNORM_OK;
}

int mpsnorm_cpu_instance_norm_forward(const mpsnorm_inorm_params *params,
                                      const mpsnorm_checked *x, const mpsnorm_checked *y)
{
    assert(x->tensor != NULL && x->count > 0 && y->tensor != NULL && y->count == x->count);
    return instance_norm_main(params, NULL, x->tensor, y->tensor, NULL, NULL);
}

int mpsnorm_cpu_instance_norm_gradient(const mpsnorm_inorm_params *params,
                                       const mpsnorm_checked *dy, const mpsnorm_checked *x,
                                       const mpsnorm_checked *dx, const mpsnorm_checked *dgamma,
                                       const mpsnorm_checked *dbeta)
{
    assert(x->tensor != NULL && x->count > 0 && dx->tensor != NULL && dx->count == x->count);
    assert(dy->tensor != NULL && dy->count == x->count);
    assert(dgamma == NULL || (dgamma->vector != NULL && dgamma->count == x->tensor->shape[1]));
    assert(dbeta == NULL || (dbeta->vector != NULL && dbeta->count == x->tensor->shape[1]));
    return instance_norm_main(params, dy->tensor, x->tensor, dx->tensor,
                      dgamma != NULL ? dgamma->vector : NULL, dbeta != NULL ? dbeta->vector : NULL);
}
