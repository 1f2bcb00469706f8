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
 * The Metal device's limits (MTLDevice.h): the longest buffer it makes and
 * the memory it can use at once without degrading (recommendedMaxWorkingSetSize).
 * MPSNORM_OK, or BACKEND_UNAVAILABLE where there is no device.
 */
int mpsnorm_metal_limits(uint64_t *max_buffer_length, uint64_t *working_set);

/*
 * A call as the Metal backend receives it: validated tensors of one shape
 * (N, C, H, W), float32 or float16, any strides (objc/ copies them into and
 * out of MPS's texel layout itself, metal_staging.h). The destination is
 * written only when the whole call has succeeded.
 */
typedef struct mpsnorm_metal_timing {
    double staging_seconds; /* packing and unpacking on the CPU */
    double gpu_seconds;     /* the command buffers on the GPU (0: not reported) */
} mpsnorm_metal_timing;

typedef struct mpsnorm_metal_batch {
    const mpsnorm_tensor *primary;     /* forward: x; gradient: dy */
    const mpsnorm_tensor *secondary;   /* gradient: x; forward: NULL */
    const mpsnorm_tensor *destination; /* forward: y; gradient: dx */
    mpsnorm_metal_timing *timing;      /* where the call's time went; not NULL */
} mpsnorm_metal_batch;

/*
 * On failure each writes a NUL-terminated reason into message (size bytes).
 * MPSNORM_ERR_UNSUPPORTED means this system's MPS cannot run the class of
 * call at all (the route then refuses the class for the engine).
 */
int mpsnorm_metal_lcn_forward(mpsnorm_metal_cache *cache, const mpsnorm_lcn_params *params,
                              const mpsnorm_metal_batch *batch, char *message, size_t size);
/* with_forward: encode the forward pass that fills the gradient states first
 * (0: the gradient alone, for an MPS whose LCN state holds only properties). */
int mpsnorm_metal_lcn_gradient(mpsnorm_metal_cache *cache, const mpsnorm_lcn_params *params,
                               const mpsnorm_metal_batch *batch, int with_forward,
                               char *message, size_t size);
int mpsnorm_metal_inorm_forward(mpsnorm_metal_cache *cache, const mpsnorm_inorm_params *params,
                                const mpsnorm_metal_batch *batch, char *message, size_t size);
/* dgamma_per_image / dbeta_per_image: N*C floats each, image-major; the
 * dispatcher sums them over the batch. */
int mpsnorm_metal_inorm_gradient(mpsnorm_metal_cache *cache, const mpsnorm_inorm_params *params,
                                 const mpsnorm_metal_batch *batch, float *dgamma_per_image,
                                 float *dbeta_per_image, char *message, size_t size);

#endif /* MPSNORM_CORE_BACKEND_H */
