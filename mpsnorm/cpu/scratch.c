/*
 * scratch.c -- overflow-safe allocation of per-worker scratch.
 */
#include "scratch.h"
#include "checked_math.h"

#include <stdint.h>
#include <stdlib.h>

#include "mpsnorm.h"

int64_t mpsnorm_size_mad(int64_t a, int64_t b, int64_t c)
{
    if (a < 0 || b < 0 || c < 0)
        return -1;
    int64_t product;
    if (!mpsnorm_mul_nonneg_i64(a, b, &product) || product > INT64_MAX - c)
        return -1;
    return product + c;
}

double *mpsnorm_alloc_doubles(int64_t count)
{
    if (count < 0 || (uint64_t)count > (uint64_t)(SIZE_MAX / sizeof(double)))
        return NULL;
    if (count == 0)
        count = 1;
    return (double *)malloc((size_t)count * sizeof(double));
}

int mpsnorm_scratch_alloc_local(mpsnorm_scratch *scratch, int workers, int64_t doubles,
                                double *local, int64_t local_doubles)
{
    int w;

    scratch->workers = 0;
    scratch->block = NULL;
    scratch->single = NULL;
    scratch->borrowed = 0;
    if (workers < 1 || doubles < 0)
        return MPSNORM_ERR_OUT_OF_MEMORY;
    if (workers == 1) {
        scratch->block = &scratch->single;
        scratch->workers = 1;
        if (local != NULL && doubles <= local_doubles) {
            scratch->single = local;
            scratch->borrowed = 1;
            return MPSNORM_OK;
        }
        scratch->single = mpsnorm_alloc_doubles(doubles);
        if (scratch->single == NULL) {
            mpsnorm_scratch_free(scratch);
            return MPSNORM_ERR_OUT_OF_MEMORY;
        }
        return MPSNORM_OK;
    }
    scratch->block = (double **)calloc((size_t)workers, sizeof(double *));
    if (scratch->block == NULL)
        return MPSNORM_ERR_OUT_OF_MEMORY;
    scratch->workers = workers;
    for (w = 0; w < workers; ++w) {
        scratch->block[w] = mpsnorm_alloc_doubles(doubles);
        if (scratch->block[w] == NULL) {
            mpsnorm_scratch_free(scratch);
            return MPSNORM_ERR_OUT_OF_MEMORY;
        }
    }
    return MPSNORM_OK;
}

int mpsnorm_scratch_alloc(mpsnorm_scratch *scratch, int workers, int64_t doubles)
{
    return mpsnorm_scratch_alloc_local(scratch, workers, doubles, NULL, 0);
}

void mpsnorm_scratch_free(mpsnorm_scratch *scratch)
{
    int w;

    if (scratch->block != NULL) {
        for (w = 0; w < scratch->workers; ++w)
            if (!(w == 0 && scratch->borrowed))
                free(scratch->block[w]);
        if (scratch->block != &scratch->single)
            free(scratch->block);
    }
    scratch->workers = 0;
    scratch->block = NULL;
    scratch->single = NULL;
    scratch->borrowed = 0;
}
