/*
 * metal_unavailable.c -- the Metal backend where there is none (any build
 * that is not macOS): no device, so engines resolve to the CPU and an
 * explicit request for Metal is refused with BACKEND_UNAVAILABLE.
 */
#include <stdio.h>

#include "backend.h"

static int unavailable(char *message, size_t size)
{
    if (message != NULL && size > 0)
        snprintf(message, size, "mpsnorm was built without the Metal backend");
    return MPSNORM_ERR_BACKEND_UNAVAILABLE;
}

int mpsnorm_metal_device_available(void)
{
    return 0;
}

int mpsnorm_metal_limits(uint64_t *max_buffer_length, uint64_t *working_set)
{
    *max_buffer_length = *working_set = 0;
    return MPSNORM_ERR_BACKEND_UNAVAILABLE;
}

int mpsnorm_metal_cache_create(mpsnorm_metal_cache **cache)
{
    if (cache != NULL)
        *cache = NULL;
    return MPSNORM_ERR_BACKEND_UNAVAILABLE;
}

void mpsnorm_metal_cache_free(mpsnorm_metal_cache *cache)
{
    (void)cache;
}

int mpsnorm_metal_lcn_forward(mpsnorm_metal_cache *cache, const mpsnorm_lcn_params *params,
                              const mpsnorm_metal_batch *batch, char *message, size_t size)
{
    (void)cache, (void)params, (void)batch;
    return unavailable(message, size);
}

int mpsnorm_metal_lcn_gradient(mpsnorm_metal_cache *cache, const mpsnorm_lcn_params *params,
                               const mpsnorm_metal_batch *batch, int with_forward,
                               char *message, size_t size)
{
    (void)cache, (void)params, (void)batch, (void)with_forward;
    return unavailable(message, size);
}

int mpsnorm_metal_inorm_forward(mpsnorm_metal_cache *cache, const mpsnorm_inorm_params *params,
                                const mpsnorm_metal_batch *batch, char *message, size_t size)
{
    (void)cache, (void)params, (void)batch;
    return unavailable(message, size);
}

int mpsnorm_metal_inorm_gradient(mpsnorm_metal_cache *cache, const mpsnorm_inorm_params *params,
                                 const mpsnorm_metal_batch *batch, float *dgamma_per_image,
                                 float *dbeta_per_image, char *message, size_t size)
{
    (void)cache, (void)params, (void)batch, (void)dgamma_per_image, (void)dbeta_per_image;
    return unavailable(message, size);
}
