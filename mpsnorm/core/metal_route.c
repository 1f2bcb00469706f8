/*
 * metal_route.c -- how a validated call reaches the Metal backend (see
 * metal_route.h). Plain C99, compiled and tested on every OS; objc/ only
 * moves tensors in and out of MPS and encodes the kernels.
 *
 * In order, a call is refused with MPSNORM_ERR_UNSUPPORTED and a message (the
 * dispatcher may then run it on the CPU) when:
 *  1. Metal cannot hold it:
 *      - float64 data: MPS images hold float32 or float16 feature channels;
 *      - LCN with kernel_width != kernel_height: MPSCNNNormalization.h says
 *        "For now, kernelWidth must be equal to kernelHeight";
 *      - width or height above MPSNORM_METAL_MAX_SIDE = 16384: each image is
 *        one MTLTexture 2D (array) of the image's width and height
 *        (MPSImage.h), and 16384 pixels is the largest texture side of the
 *        macOS GPU families (Apple's Metal feature set tables, not a header);
 *      - more than MPSNORM_METAL_MAX_CHANNELS = 8192 channels: MPSImage.h
 *        stores (C + 3) / 4 channel slices in a texture array and notes that
 *        "many devices can operate on texture arrays of no more than 2048
 *        slices"; 2048 * 4 = 8192.
 *  2. It is small and the engine may choose (AUTO): fewer than
 *     MPSNORM_METAL_MIN_CALL_BYTES bytes of one tensor (the environment
 *     variable of that name, read once, overrides it) run on the CPU, which
 *     finishes them before a command buffer would have come back.
 *  3. The engine's Metal refused its class before, or the class's self-check
 *     failed (metal_selfcheck.h).
 *  4. One image does not fit the device: its texels are more than the
 *     longest buffer the device makes (maxBufferLength), or the textures and
 *     staging buffers of one image are more than half the working set the
 *     device recommends (objc/ splits a batch over as many command buffers as
 *     that bound needs).
 * Everything the route allocates (the per-image gamma/beta gradients) is
 * allocated before the backend runs; when the backend fails nothing has been
 * written. MPS leaves gamma/beta gradients per image; they are summed over
 * the batch in image order with a double accumulator into the caller's
 * float32 vectors.
 */
#include <assert.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "metal_route.h"
#include "metal_selfcheck.h"
#include "validate.h"

#define MPSNORM_METAL_MAX_SIDE 16384
#define MPSNORM_METAL_MAX_CHANNELS 8192

/* ---- small calls ------------------------------------------------------------ */

static uint64_t min_call_bytes = MPSNORM_METAL_MIN_CALL_BYTES;
static pthread_once_t min_call_once = PTHREAD_ONCE_INIT;

static void read_min_call_bytes(void)
{
    const char *setting = getenv("MPSNORM_METAL_MIN_CALL_BYTES");
    char *end;
    if (setting != NULL && *setting != '\0') {
        unsigned long long bytes = strtoull(setting, &end, 10);
        if (*end == '\0')
            min_call_bytes = (uint64_t)bytes;
    }
}

static uint64_t small_call_bytes(void)
{
    pthread_once(&min_call_once, read_min_call_bytes);
    return min_call_bytes;
}

void mpsnorm_metal_route_set_min_call_bytes(uint64_t bytes)
{
    pthread_once(&min_call_once, read_min_call_bytes);
    min_call_bytes = bytes;
}

/* ---- an engine's binding ---------------------------------------------------- */

struct mpsnorm_metal_binding {
    mpsnorm_metal_cache *cache;
    pthread_mutex_t lock; /* guards the refusals */
    struct {
        int refused;
        char reason[MPSNORM_MESSAGE_SIZE];
    } classes[MPSNORM_METAL_CLASS_COUNT];
};

int mpsnorm_metal_binding_create(mpsnorm_metal_binding **binding)
{
    mpsnorm_metal_binding *created = calloc(1, sizeof *created);
    int status;
    *binding = NULL;
    if (created == NULL)
        return MPSNORM_ERR_OUT_OF_MEMORY;
    if (pthread_mutex_init(&created->lock, NULL) != 0) {
        free(created);
        return MPSNORM_ERR_OUT_OF_MEMORY;
    }
    status = mpsnorm_metal_cache_create(&created->cache);
    if (status != MPSNORM_OK) {
        pthread_mutex_destroy(&created->lock);
        free(created);
        return status;
    }
    *binding = created;
    return MPSNORM_OK;
}

void mpsnorm_metal_binding_free(mpsnorm_metal_binding *binding)
{
    if (binding == NULL)
        return;
    mpsnorm_metal_cache_free(binding->cache);
    pthread_mutex_destroy(&binding->lock);
    free(binding);
}

/* UNSUPPORTED with the reason if this engine's Metal refused the class before. */
static int refused_before(mpsnorm_metal_binding *binding, const mpsnorm_metal_class *cls,
                          char *message, size_t size)
{
    const int index = mpsnorm_metal_class_index(cls);
    int status = MPSNORM_OK;
    pthread_mutex_lock(&binding->lock);
    if (binding->classes[index].refused)
        status = mpsnorm_fail(MPSNORM_ERR_UNSUPPORTED, message, size, "%s",
                              binding->classes[index].reason);
    pthread_mutex_unlock(&binding->lock);
    return status;
}

static void refuse(mpsnorm_metal_binding *binding, const mpsnorm_metal_class *cls,
                   const char *reason)
{
    const int index = mpsnorm_metal_class_index(cls);
    pthread_mutex_lock(&binding->lock);
    binding->classes[index].refused = 1;
    snprintf(binding->classes[index].reason, sizeof binding->classes[index].reason, "%s", reason);
    pthread_mutex_unlock(&binding->lock);
}

/* ---- capability ---------------------------------------------------------- */

static int check_data(const mpsnorm_tensor *x, const char *kernel, char *message, size_t size)
{
    if (x->dtype == MPSNORM_FLOAT64)
        return mpsnorm_fail(MPSNORM_ERR_UNSUPPORTED, message, size,
                            "%s: float64 is not supported on Metal (MPS images hold float32 "
                            "or float16 channels); use float32/float16 or the CPU backend",
                            kernel);
    if (x->dtype != MPSNORM_FLOAT32 && x->dtype != MPSNORM_FLOAT16)
        return mpsnorm_fail(MPSNORM_ERR_UNSUPPORTED, message, size,
                            "%s: dtype %d is not supported on Metal", kernel, (int)x->dtype);
    if (x->shape[3] > MPSNORM_METAL_MAX_SIDE || x->shape[2] > MPSNORM_METAL_MAX_SIDE)
        return mpsnorm_fail(MPSNORM_ERR_UNSUPPORTED, message, size,
                            "%s: images of %lld x %lld pixels (height x width) exceed %d, the "
                            "largest Metal texture side on macOS GPUs",
                            kernel, (long long)x->shape[2], (long long)x->shape[3],
                            MPSNORM_METAL_MAX_SIDE);
    if (x->shape[1] > MPSNORM_METAL_MAX_CHANNELS)
        return mpsnorm_fail(MPSNORM_ERR_UNSUPPORTED, message, size,
                            "%s: %lld channels exceed %d, the most an MPSImage holds in 2048 "
                            "texture array slices of 4 channels",
                            kernel, (long long)x->shape[1], MPSNORM_METAL_MAX_CHANNELS);
    return MPSNORM_OK;
}

int mpsnorm_metal_supports_lcn(const mpsnorm_lcn_params *params, const mpsnorm_tensor *x,
                               char *message, size_t size)
{
    int status = check_data(x, "MPSCNNLocalContrastNormalization", message, size);
    if (status != MPSNORM_OK)
        return status;
    if (params->kernel_width != params->kernel_height)
        return mpsnorm_fail(MPSNORM_ERR_UNSUPPORTED, message, size,
                            "MPSCNNLocalContrastNormalization: kernel_width (%lld) != "
                            "kernel_height (%lld); MPS requires them equal (MPSCNNNormalization.h: "
                            "\"For now, kernelWidth must be equal to kernelHeight\")",
                            (long long)params->kernel_width, (long long)params->kernel_height);
    return MPSNORM_OK;
}

int mpsnorm_metal_supports_inorm(const mpsnorm_inorm_params *params, const mpsnorm_tensor *x,
                                 char *message, size_t size)
{
    (void)params;
    return check_data(x, "MPSCNNInstanceNormalization", message, size);
}

/* ---- one routed call ----------------------------------------------------- */

typedef enum route_kernel {
    LCN_FORWARD = MPSNORM_KERNEL_LCN_FORWARD,
    LCN_GRADIENT = MPSNORM_KERNEL_LCN_GRADIENT,
    INORM_FORWARD = MPSNORM_KERNEL_INORM_FORWARD,
    INORM_GRADIENT = MPSNORM_KERNEL_INORM_GRADIENT
} route_kernel;

typedef struct route_call {
    route_kernel kernel;
    mpsnorm_metal_binding *binding;
    const mpsnorm_lcn_params *lcn;
    const mpsnorm_inorm_params *inorm;
    mpsnorm_metal_batch batch;
    const mpsnorm_vector *dgamma, *dbeta; /* instance-norm gradient only, may be NULL */
    int may_fall_back;                    /* the engine may run a refused call on the CPU */
    int *notice;                          /* set when message is a notice for the user */
} route_call;

/* 1 when the channels of a pixel lie closer together than the pixels of a row
 * (NHWC-like memory): a class of call of its own for the self-check, since
 * objc/ packs such tensors differently. */
static int channel_interleaved(const mpsnorm_tensor *t)
{
    return t->shape[1] > 1 && llabs(t->strides[1]) < llabs(t->strides[3]);
}

/* Bytes of the textures of one image (4 channels a texel, the most MPS uses). */
static uint64_t texel_bytes(const mpsnorm_tensor *t)
{
    return (uint64_t)((t->shape[1] + 3) / 4) * 4 * (uint64_t)t->shape[2] *
           (uint64_t)t->shape[3] * mpsnorm_dtype_size(t->dtype);
}

/* UNSUPPORTED unless one image of the call fits the device (see the top). */
static int check_fits(const route_call *call, char *message, size_t size)
{
    uint64_t max_buffer = 0, working_set = 0;
    const mpsnorm_tensor *x = call->batch.destination;
    /* per image: its inputs and output as textures and as staging, and a
     * forward result inside a gradient */
    const uint64_t tensors = call->batch.secondary != NULL ? 3 : 2;
    const uint64_t image = texel_bytes(x);
    const uint64_t needed = image * (2 * tensors + (call->batch.secondary != NULL));
    int status = mpsnorm_metal_limits(&max_buffer, &working_set);
    if (status != MPSNORM_OK)
        return mpsnorm_fail(status, message, size, "the Metal device's limits are unknown");
    if (image > max_buffer)
        return mpsnorm_fail(MPSNORM_ERR_UNSUPPORTED, message, size,
                            "one image takes %llu bytes of texels, more than the %llu bytes of "
                            "the longest buffer this Metal device makes (maxBufferLength)",
                            (unsigned long long)image, (unsigned long long)max_buffer);
    if (needed > working_set / 2)
        return mpsnorm_fail(MPSNORM_ERR_UNSUPPORTED, message, size,
                            "one image needs %llu bytes of textures and buffers on the GPU, more "
                            "than half the %llu bytes this Metal device recommends using at "
                            "once (recommendedMaxWorkingSetSize)",
                            (unsigned long long)needed, (unsigned long long)working_set);
    return MPSNORM_OK;
}

static int call_backend(const route_call *call, int with_forward, float *dgamma_images,
                        float *dbeta_images, char *message, size_t size)
{
    mpsnorm_metal_cache *cache = call->binding->cache;
    switch (call->kernel) {
    case LCN_FORWARD:
        return mpsnorm_metal_lcn_forward(cache, call->lcn, &call->batch, message, size);
    case LCN_GRADIENT:
        return mpsnorm_metal_lcn_gradient(cache, call->lcn, &call->batch, with_forward, message,
                                          size);
    case INORM_FORWARD:
        return mpsnorm_metal_inorm_forward(cache, call->inorm, &call->batch, message, size);
    case INORM_GRADIENT:
        return mpsnorm_metal_inorm_gradient(cache, call->inorm, &call->batch, dgamma_images,
                                            dbeta_images, message, size);
    }
    return mpsnorm_fail(MPSNORM_ERR_BACKEND_FAILURE, message, size, "unknown Metal kernel");
}

/* vector[c] = sum over n of per_image[n*C + c], images in order, in double. */
static void sum_over_batch(const mpsnorm_vector *vector, const float *per_image, int64_t n,
                           int64_t c)
{
    float *data = (float *)vector->data;
    for (int64_t channel = 0; channel < c; channel++) {
        double sum = 0.0;
        for (int64_t image = 0; image < n; image++)
            sum += (double)per_image[image * c + channel];
        data[channel * vector->stride] = (float)sum;
    }
}

static int route(const route_call *call, char *message, size_t size)
{
    if (call->binding == NULL || call->binding->cache == NULL)
        return mpsnorm_fail(MPSNORM_ERR_BACKEND_UNAVAILABLE, message, size,
                            "the engine has no Metal cache");
    const mpsnorm_tensor *x = call->batch.secondary != NULL ? call->batch.secondary
                                                            : call->batch.primary;
    const int64_t n = x->shape[0], c = x->shape[1];
    const uint64_t bytes = (uint64_t)mpsnorm_tensor_count(x) * mpsnorm_dtype_size(x->dtype);
    if (call->may_fall_back && bytes < small_call_bytes())
        return mpsnorm_fail(MPSNORM_ERR_UNSUPPORTED, message, size,
                            "a call of %llu bytes a tensor runs faster on the CPU",
                            (unsigned long long)bytes);

    mpsnorm_metal_class cls;
    cls.kernel = (int)call->kernel;
    cls.dtype = x->dtype;
    cls.nhwc = channel_interleaved(x);
    cls.even_window = call->lcn != NULL && call->lcn->kernel_width % 2 == 0;
    cls.alpha_nonzero = call->lcn != NULL && call->lcn->alpha != 0.0f;
    cls.parameter_gradients = call->dgamma != NULL || call->dbeta != NULL;
    int with_forward = 1;
    int status = refused_before(call->binding, &cls, message, size);
    if (status == MPSNORM_OK)
        status = mpsnorm_metal_trust(call->binding->cache, &cls, call->lcn, call->inorm, c,
                                     call->may_fall_back, message, size, call->notice,
                                     &with_forward);
    if (status == MPSNORM_OK)
        status = check_fits(call, message, size);
    if (status != MPSNORM_OK)
        return status;

    float *dgamma = NULL, *dbeta = NULL; /* per image, N*C each */
    if (call->kernel == INORM_GRADIENT) {
        /* n * c <= the tensor's count, whose bytes the address space holds */
        dgamma = malloc((size_t)(n * c) * sizeof(float));
        dbeta = malloc((size_t)(n * c) * sizeof(float));
        if (dgamma == NULL || dbeta == NULL) {
            free(dgamma);
            free(dbeta);
            return mpsnorm_fail(MPSNORM_ERR_OUT_OF_MEMORY, message, size,
                                "could not allocate the per-image gamma/beta gradients of the "
                                "Metal call");
        }
    }
    status = call_backend(call, with_forward, dgamma, dbeta, message, size);
    if (status == MPSNORM_ERR_UNSUPPORTED) /* what this engine's MPS lacks stays lacking */
        refuse(call->binding, &cls, message);
    if (status != MPSNORM_OK)
        call->batch.timing->staging_seconds = call->batch.timing->gpu_seconds = 0.0;
    if (status == MPSNORM_OK && call->kernel == INORM_GRADIENT) {
        if (call->dgamma != NULL)
            sum_over_batch(call->dgamma, dgamma, n, c);
        if (call->dbeta != NULL)
            sum_over_batch(call->dbeta, dbeta, n, c);
    }
    free(dgamma);
    free(dbeta);
    return status;
}

/* ---- entry points -------------------------------------------------------- */

int mpsnorm_metal_route_lcn(mpsnorm_metal_binding *binding, const mpsnorm_lcn_params *params,
                            const mpsnorm_checked *dy, const mpsnorm_checked *x,
                            const mpsnorm_checked *out, int may_fall_back,
                            mpsnorm_metal_timing *timing, char *message, size_t size,
                            int *notice)
{
    assert(x->tensor != NULL && x->count > 0 && out->tensor != NULL && out->count == x->count);
    assert(dy == NULL || (dy->tensor != NULL && dy->count == x->count));
    *notice = 0;
    timing->staging_seconds = timing->gpu_seconds = 0.0;
    int status = mpsnorm_metal_supports_lcn(params, x->tensor, message, size);
    if (status != MPSNORM_OK)
        return status;
    route_call call = {dy != NULL ? LCN_GRADIENT : LCN_FORWARD, binding, params, NULL,
                       {dy != NULL ? dy->tensor : x->tensor, dy != NULL ? x->tensor : NULL,
                        out->tensor, timing},
                       NULL, NULL, may_fall_back, notice};
    return route(&call, message, size);
}

int mpsnorm_metal_route_instance_norm(mpsnorm_metal_binding *binding,
                                      const mpsnorm_inorm_params *params,
                                      const mpsnorm_checked *dy, const mpsnorm_checked *x,
                                      const mpsnorm_checked *out, const mpsnorm_checked *dgamma,
                                      const mpsnorm_checked *dbeta, int may_fall_back,
                                      mpsnorm_metal_timing *timing, char *message, size_t size,
                                      int *notice)
{
    assert(x->tensor != NULL && x->count > 0 && out->tensor != NULL && out->count == x->count);
    assert(dy == NULL || (dy->tensor != NULL && dy->count == x->count));
    assert(dgamma == NULL || dgamma->vector != NULL);
    assert(dbeta == NULL || dbeta->vector != NULL);
    *notice = 0;
    timing->staging_seconds = timing->gpu_seconds = 0.0;
    int status = mpsnorm_metal_supports_inorm(params, x->tensor, message, size);
    if (status != MPSNORM_OK)
        return status;
    const int gradient = dy != NULL;
    route_call call = {gradient ? INORM_GRADIENT : INORM_FORWARD, binding, NULL, params,
                       {gradient ? dy->tensor : x->tensor, gradient ? x->tensor : NULL,
                        out->tensor, timing},
                       gradient && dgamma != NULL ? dgamma->vector : NULL,
                       gradient && dbeta != NULL ? dbeta->vector : NULL, may_fall_back, notice};
    return route(&call, message, size);
}
