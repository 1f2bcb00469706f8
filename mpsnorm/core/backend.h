/*
 * backend.h -- what the dispatcher (engine.c) calls in each backend.
 *
 * Everything here runs after validation (validate.c), which hands each
 * tensor and vector over as its checked descriptor (checked.h): shapes and
 * dtypes agree, outputs overlap nothing, parameters are in range, and no
 * size is zero. Backends assert this rather than check it again. They return
 * MPSNORM_OK or an error status; on error they have written nothing to any
 * output.
 */
#ifndef MPSNORM_CORE_BACKEND_H
#define MPSNORM_CORE_BACKEND_H

#include "checked.h"
#include "mpsnorm.h"

/* ---- portable C backend (mpsnorm/cpu/) ---------------------------------- */

int mpsnorm_cpu_lcn_forward(const mpsnorm_lcn_params *params, const mpsnorm_checked *x,
                            const mpsnorm_checked *y);
int mpsnorm_cpu_lcn_gradient(const mpsnorm_lcn_params *params, const mpsnorm_checked *dy,
                             const mpsnorm_checked *x, const mpsnorm_checked *dx);
int mpsnorm_cpu_instance_norm_forward(const mpsnorm_inorm_params *params,
                                      const mpsnorm_checked *x, const mpsnorm_checked *y);
/* dgamma / dbeta (checked vectors) may be NULL. */
int mpsnorm_cpu_instance_norm_gradient(const mpsnorm_inorm_params *params,
                                       const mpsnorm_checked *dy, const mpsnorm_checked *x,
                                       const mpsnorm_checked *dx, const mpsnorm_checked *dgamma,
                                       const mpsnorm_checked *dbeta);

/* ---- Metal backend (objc/ on macOS, metal_unavailable.c elsewhere) ------- */

/* 1 if a Metal device that MPS supports exists (created lazily, once). */
int mpsnorm_metal_device_available(void);

/* Per-engine cache of MPS kernel objects; opaque to C. */
typedef struct mpsnorm_metal_cache mpsnorm_metal_cache;
int mpsnorm_metal_cache_create(mpsnorm_metal_cache **cache);
void mpsnorm_metal_cache_free(mpsnorm_metal_cache *cache);

/*
 * A batch staged for Metal: N images, each C x H x W, contiguous, image n at
 * element offset n*C*H*W. nhwc = 0: channel planes of H x W
 * (MPSDataLayoutFeatureChannelsxHeightxWidth); nhwc = 1: pixels of C
 * interleaved channels (MPSDataLayoutHeightxWidthxFeatureChannels).
 * dtype is MPSNORM_FLOAT32 or MPSNORM_FLOAT16.
 */
typedef struct mpsnorm_metal_batch {
    int32_t dtype;
    int32_t nhwc;
    int64_t n, c, h, w;
    const void *primary;    /* forward: x; gradient: dy */
    const void *secondary;  /* gradient: x; forward: NULL */
    void *destination;      /* forward: y; gradient: dx */
} mpsnorm_metal_batch;

/* On failure each writes a NUL-terminated reason into message (size bytes). */
int mpsnorm_metal_lcn_forward(mpsnorm_metal_cache *cache, const mpsnorm_lcn_params *params,
                              const mpsnorm_metal_batch *batch, char *message, size_t size);
int mpsnorm_metal_lcn_gradient(mpsnorm_metal_cache *cache, const mpsnorm_lcn_params *params,
                               const mpsnorm_metal_batch *batch, char *message, size_t size);
int mpsnorm_metal_inorm_forward(mpsnorm_metal_cache *cache, const mpsnorm_inorm_params *params,
                                const mpsnorm_metal_batch *batch, char *message, size_t size);
/* dgamma_per_image / dbeta_per_image: N*C floats each, image-major; the
 * dispatcher sums them over the batch. */
int mpsnorm_metal_inorm_gradient(mpsnorm_metal_cache *cache, const mpsnorm_inorm_params *params,
                                 const mpsnorm_metal_batch *batch, float *dgamma_per_image,
                                 float *dbeta_per_image, char *message, size_t size);

#endif /* MPSNORM_CORE_BACKEND_H */
