/*
 * metal_route.c -- how a validated call reaches the Metal backend (see
 * metal_route.h). Plain C99, compiled and tested on every OS; objc/ only
 * moves the staged batches in and out of MPS.
 *
 * 1. Capability check. Metal refuses, with MPSNORM_ERR_UNSUPPORTED and a
 *    message (the dispatcher may then run the call on the CPU):
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
 * 2. Staging. backend.h batches are contiguous N images in NCHW or NHWC
 *    order. The order is chosen to match as many of the call's tensors as
 *    possible (ties: NCHW); a tensor already contiguous in that order is
 *    passed by pointer (no copy), any other is copied, bit for bit, to or
 *    from a contiguous staging buffer. Every buffer is allocated before the
 *    backend runs, so after it succeeds nothing can fail; when it fails
 *    (including MPSNORM_ERR_UNSUPPORTED from objc/, for what this system's
 *    MPS turns out not to provide) no output has been written.
 * 3. Instance-norm gradient: MPS leaves gamma/beta gradients per image; they
 *    are summed over the batch in image order with a double accumulator into
 *    the caller's float32 vectors.
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

/* ---- layout -------------------------------------------------------------- */

/* 1 if t is exactly a contiguous batch in NCHW (nhwc = 0) or NHWC order.
 * Axes of size 1 never move the address, so their strides do not matter. */
static int is_packed(const mpsnorm_tensor *t, int nhwc)
{
    const int64_t c = t->shape[1], h = t->shape[2], w = t->shape[3];
    const int64_t nchw_strides[4] = {c * h * w, h * w, w, 1};
    const int64_t nhwc_strides[4] = {h * w * c, 1, w * c, c};
    const int64_t *expected = nhwc ? nhwc_strides : nchw_strides;
    for (int axis = 0; axis < 4; axis++)
        if (t->shape[axis] > 1 && t->strides[axis] != expected[axis])
            return 0;
    return 1;
}

/* The staging order matching most of the given tensors (NULLs ignored). */
static int choose_nhwc(const mpsnorm_tensor *const *tensors, int count)
{
    int nchw = 0, nhwc = 0;
    for (int i = 0; i < count; i++) {
        if (tensors[i] == NULL)
            continue;
        nchw += is_packed(tensors[i], 0);
        nhwc += is_packed(tensors[i], 1);
    }
    return nhwc > nchw;
}

/* Logical strides (N, C, H, W) of a contiguous batch in the staging order. */
static void packed_strides(const mpsnorm_tensor *t, int nhwc, int64_t strides[4])
{
    const int64_t c = t->shape[1], h = t->shape[2], w = t->shape[3];
    strides[0] = c * h * w;
    strides[1] = nhwc ? 1 : h * w;
    strides[2] = nhwc ? w * c : w;
    strides[3] = nhwc ? c : 1;
}

/*
 * Copies every element of a (N, C, H, W) tensor between two layouts, bit for
 * bit (elements are moved as 2- or 4-byte integers). Loops run in the staging
 * buffer's memory order: (N, C, H, W) for NCHW, (N, H, W, C) for NHWC.
 */
static void copy_elements(void *dst, const int64_t dst_strides[4], const void *src,
                          const int64_t src_strides[4], const int64_t shape[4], int nhwc,
                          size_t item)
{
    static const int nchw_order[4] = {0, 1, 2, 3};
    static const int nhwc_order[4] = {0, 2, 3, 1};
    const int *order = nhwc ? nhwc_order : nchw_order;
    int64_t extent[4], ds[4], ss[4];
    for (int i = 0; i < 4; i++) {
        extent[i] = shape[order[i]];
        ds[i] = dst_strides[order[i]];
        ss[i] = src_strides[order[i]];
    }
    for (int64_t a = 0; a < extent[0]; a++)
        for (int64_t b = 0; b < extent[1]; b++)
            for (int64_t c = 0; c < extent[2]; c++) {
                int64_t d = a * ds[0] + b * ds[1] + c * ds[2];
                int64_t s = a * ss[0] + b * ss[1] + c * ss[2];
                if (item == 2) {
                    uint16_t *to = dst;
                    const uint16_t *from = src;
                    for (int64_t e = 0; e < extent[3]; e++)
                        to[d + e * ds[3]] = from[s + e * ss[3]];
                } else {
                    uint32_t *to = dst;
                    const uint32_t *from = src;
                    for (int64_t e = 0; e < extent[3]; e++)
                        to[d + e * ds[3]] = from[s + e * ss[3]];
                }
            }
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
    mpsnorm_metal_cache *cache;
    const mpsnorm_lcn_params *lcn;
    const mpsnorm_inorm_params *inorm;
    const mpsnorm_tensor *primary;   /* forward: x; gradient: dy */
    const mpsnorm_tensor *secondary; /* gradient: x; forward: NULL */
    const mpsnorm_tensor *out;
    const mpsnorm_vector *dgamma, *dbeta; /* instance-norm gradient only, may be NULL */
    int may_fall_back;                    /* the engine may run a refused call on the CPU */
    int *notice;                          /* set when message is a notice for the user */
} route_call;

/* Everything a call allocates; freed in one place. */
typedef struct route_buffers {
    void *primary, *secondary, *destination;
    float *dgamma, *dbeta; /* per image, N*C each */
} route_buffers;

static void free_buffers(route_buffers *buffers)
{
    free(buffers->primary);
    free(buffers->secondary);
    free(buffers->destination);
    free(buffers->dgamma);
    free(buffers->dbeta);
}

static int out_of_memory(route_buffers *buffers, const char *what, char *message, size_t size)
{
    free_buffers(buffers);
    return mpsnorm_fail(MPSNORM_ERR_OUT_OF_MEMORY, message, size,
                        "could not allocate the Metal staging buffer for %s", what);
}

/* A staging buffer of `bytes`, unless t is already packed in the staging order. */
static int stage(void **buffer, const mpsnorm_tensor *t, int nhwc, size_t bytes)
{
    *buffer = NULL;
    if (t == NULL || is_packed(t, nhwc))
        return 1;
    *buffer = malloc(bytes);
    return *buffer != NULL;
}

static int call_backend(const route_call *call, const mpsnorm_metal_batch *batch,
                        route_buffers *buffers, char *message, size_t size)
{
    switch (call->kernel) {
    case LCN_FORWARD:
        return mpsnorm_metal_lcn_forward(call->cache, call->lcn, batch, message, size);
    case LCN_GRADIENT:
        return mpsnorm_metal_lcn_gradient(call->cache, call->lcn, batch, message, size);
    case INORM_FORWARD:
        return mpsnorm_metal_inorm_forward(call->cache, call->inorm, batch, message, size);
    case INORM_GRADIENT:
        return mpsnorm_metal_inorm_gradient(call->cache, call->inorm, batch, buffers->dgamma,
                                            buffers->dbeta, message, size);
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
    if (call->binding == NULL || call->cache == NULL)
        return mpsnorm_fail(MPSNORM_ERR_BACKEND_UNAVAILABLE, message, size,
                            "the engine has no Metal cache");
    const mpsnorm_tensor *x = call->secondary != NULL ? call->secondary : call->primary;
    const mpsnorm_tensor *tensors[3] = {call->primary, call->secondary, call->out};
    const int nhwc = choose_nhwc(tensors, 3);
    const size_t item = mpsnorm_dtype_size(x->dtype);
    const int64_t count = mpsnorm_tensor_count(x);
    const int64_t n = x->shape[0], c = x->shape[1];
    mpsnorm_metal_class cls;
    cls.kernel = (int)call->kernel;
    cls.dtype = x->dtype;
    cls.nhwc = nhwc;
    cls.even_window = call->lcn != NULL && call->lcn->kernel_width % 2 == 0;
    cls.alpha_nonzero = call->lcn != NULL && call->lcn->alpha != 0.0f;
    cls.parameter_gradients = call->dgamma != NULL || call->dbeta != NULL;
    int status = refused_before(call->binding, &cls, message, size);
    if (status == MPSNORM_OK)
        status = mpsnorm_metal_trust(call->cache, &cls, call->lcn, call->inorm, c,
                                     call->may_fall_back, message, size, call->notice);
    if (status != MPSNORM_OK)
        return status;

    route_buffers buffers = {NULL, NULL, NULL, NULL, NULL};
    if ((uint64_t)count > SIZE_MAX / item)
        return out_of_memory(&buffers, "the tensors", message, size);
    const size_t bytes = (size_t)count * item;
    if (!stage(&buffers.primary, call->primary, nhwc, bytes))
        return out_of_memory(&buffers, call->secondary != NULL ? "dy" : "x", message, size);
    if (!stage(&buffers.secondary, call->secondary, nhwc, bytes))
        return out_of_memory(&buffers, "x", message, size);
    if (!stage(&buffers.destination, call->out, nhwc, bytes))
        return out_of_memory(&buffers, call->secondary != NULL ? "dx" : "y", message, size);
    if (call->kernel == INORM_GRADIENT) {
        /* n * c <= count, so n * c * sizeof(float) overflows only with count. */
        if ((uint64_t)(n * c) > SIZE_MAX / sizeof(float))
            return out_of_memory(&buffers, "the gamma/beta gradients", message, size);
        buffers.dgamma = malloc((size_t)(n * c) * sizeof(float));
        buffers.dbeta = malloc((size_t)(n * c) * sizeof(float));
        if (buffers.dgamma == NULL || buffers.dbeta == NULL)
            return out_of_memory(&buffers, "the gamma/beta gradients", message, size);
    }

    int64_t packed[4];
    packed_strides(x, nhwc, packed);
    if (buffers.primary != NULL)
        copy_elements(buffers.primary, packed, call->primary->data, call->primary->strides,
                      x->shape, nhwc, item);
    if (buffers.secondary != NULL)
        copy_elements(buffers.secondary, packed, call->secondary->data, call->secondary->strides,
                      x->shape, nhwc, item);

    mpsnorm_metal_batch batch;
    batch.dtype = x->dtype;
    batch.nhwc = nhwc;
    batch.n = x->shape[0];
    batch.c = x->shape[1];
    batch.h = x->shape[2];
    batch.w = x->shape[3];
    batch.primary = buffers.primary != NULL ? buffers.primary : call->primary->data;
    batch.secondary = call->secondary == NULL ? NULL
                      : buffers.secondary != NULL ? buffers.secondary
                                                  : call->secondary->data;
    batch.destination = buffers.destination != NULL ? buffers.destination : call->out->data;

    status = call_backend(call, &batch, &buffers, message, size);
    if (status == MPSNORM_ERR_UNSUPPORTED) /* what this engine's MPS lacks stays lacking */
        refuse(call->binding, &cls, message);
    if (status != MPSNORM_OK) {
        free_buffers(&buffers);
        return status;
    }
    if (buffers.destination != NULL)
        copy_elements(call->out->data, call->out->strides, buffers.destination, packed, x->shape,
                      nhwc, item);
    if (call->kernel == INORM_GRADIENT) {
        if (call->dgamma != NULL)
            sum_over_batch(call->dgamma, buffers.dgamma, n, c);
        if (call->dbeta != NULL)
            sum_over_batch(call->dbeta, buffers.dbeta, n, c);
    }
    free_buffers(&buffers);
    return MPSNORM_OK;
}

/* ---- entry points -------------------------------------------------------- */

int mpsnorm_metal_route_lcn(mpsnorm_metal_binding *binding, const mpsnorm_lcn_params *params,
                            const mpsnorm_checked *dy, const mpsnorm_checked *x,
                            const mpsnorm_checked *out, int may_fall_back, char *message,
                            size_t size, int *notice)
{
    assert(x->tensor != NULL && x->count > 0 && out->tensor != NULL && out->count == x->count);
    assert(dy == NULL || (dy->tensor != NULL && dy->count == x->count));
    *notice = 0;
    int status = mpsnorm_metal_supports_lcn(params, x->tensor, message, size);
    if (status != MPSNORM_OK)
        return status;
    route_call call = {dy != NULL ? LCN_GRADIENT : LCN_FORWARD, binding,
                       binding != NULL ? binding->cache : NULL, params, NULL,
                       dy != NULL ? dy->tensor : x->tensor, dy != NULL ? x->tensor : NULL,
                       out->tensor, NULL, NULL, may_fall_back, notice};
    return route(&call, message, size);
}

int mpsnorm_metal_route_instance_norm(mpsnorm_metal_binding *binding,
                                      const mpsnorm_inorm_params *params,
                                      const mpsnorm_checked *dy, const mpsnorm_checked *x,
                                      const mpsnorm_checked *out, const mpsnorm_checked *dgamma,
                                      const mpsnorm_checked *dbeta, int may_fall_back,
                                      char *message, size_t size, int *notice)
{
    assert(x->tensor != NULL && x->count > 0 && out->tensor != NULL && out->count == x->count);
    assert(dy == NULL || (dy->tensor != NULL && dy->count == x->count));
    assert(dgamma == NULL || dgamma->vector != NULL);
    assert(dbeta == NULL || dbeta->vector != NULL);
    *notice = 0;
    int status = mpsnorm_metal_supports_inorm(params, x->tensor, message, size);
    if (status != MPSNORM_OK)
        return status;
    const int gradient = dy != NULL;
    route_call call = {gradient ? INORM_GRADIENT : INORM_FORWARD, binding,
                       binding != NULL ? binding->cache : NULL, NULL, params,
                       gradient ? dy->tensor : x->tensor, gradient ? x->tensor : NULL,
                       out->tensor, gradient && dgamma != NULL ? dgamma->vector : NULL,
                       gradient && dbeta != NULL ? dbeta->vector : NULL, may_fall_back, notice};
    return route(&call, message, size);
}
