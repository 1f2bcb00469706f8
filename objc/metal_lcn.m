/*
 * metal_lcn.m -- local contrast normalization on Metal:
 * MPSCNNLocalContrastNormalization (forward) and
 * MPSCNNLocalContrastNormalizationGradient (gradient), on a batch staged by
 * mpsnorm/core/metal_route.c (which has already refused what MPS cannot do,
 * e.g. kernel_width != kernel_height).
 *
 * Forward:  x images -> encodeBatch -> y images -> y.
 * Gradient: the forward kernel makes one gradient state per image
 *           (resultStateForSourceImage:sourceStates:destinationImage:, after
 *           every property is set, as MPSCNNKernel.h requires), the forward is
 *           encoded with those states, then the gradient kernel consumes
 *           dy (primary / "source gradient"), x (secondary / "source image")
 *           and the states, writing dx.
 */
#include "metal_imports.h"

#include "metal_context.h"

typedef struct lcn_call {
    mpsnorm_metal_cache *cache;
    const mpsnorm_lcn_params *params;
    const mpsnorm_metal_batch *batch;
    int gradient;
} lcn_call;

static const char *lcn_name(const lcn_call *call)
{
    return call->gradient ? "MPSCNNLocalContrastNormalizationGradient"
                          : "MPSCNNLocalContrastNormalization";
}

/* The cached forward kernel for this kernel size, made anew when the size differs. */
static MPSCNNLocalContrastNormalization *_Nullable forward_kernel(mpsnorm_metal_cache *cache,
                                                                  id<MTLDevice> device,
                                                                  const mpsnorm_lcn_params *params)
    MPSNORM_OBJC_NEEDS_MACOS_10_13_4
{
    if (cache->lcn_forward == nil || cache->lcn_forward_size != (NSUInteger)params->kernel_width) {
        cache->lcn_forward = nil;
        cache->lcn_forward_size = 0;
        MPSCNNLocalContrastNormalization *kernel = [[MPSCNNLocalContrastNormalization alloc]
                 initWithDevice:device
                    kernelWidth:(NSUInteger)params->kernel_width
                   kernelHeight:(NSUInteger)params->kernel_height];
        if (kernel == nil)
            return nil;
        cache->lcn_forward = kernel;
        cache->lcn_forward_size = (NSUInteger)params->kernel_width;
    }
    MPSCNNLocalContrastNormalization *kernel = cache->lcn_forward;
    [kernel setAlpha:params->alpha];
    [kernel setBeta:params->beta];
    [kernel setDelta:params->delta];
    [kernel setP0:params->p0];
    [kernel setPm:params->pm];
    [kernel setPs:params->ps];
    [kernel setEdgeMode:MPSImageEdgeModeZero]; /* the documented default, which docs/SPEC.md assumes */
    return kernel;
}

/* The cached gradient kernel for this kernel size, made anew when the size differs. */
static MPSCNNLocalContrastNormalizationGradient *_Nullable gradient_kernel(
    mpsnorm_metal_cache *cache, id<MTLDevice> device, const mpsnorm_lcn_params *params)
    MPSNORM_OBJC_NEEDS_MACOS_10_13_4
{
    if (cache->lcn_gradient == nil || cache->lcn_gradient_size != (NSUInteger)params->kernel_width) {
        cache->lcn_gradient = nil;
        cache->lcn_gradient_size = 0;
        MPSCNNLocalContrastNormalizationGradient *kernel =
            [[MPSCNNLocalContrastNormalizationGradient alloc]
                initWithDevice:device
                   kernelWidth:(NSUInteger)params->kernel_width
                  kernelHeight:(NSUInteger)params->kernel_height];
        if (kernel == nil)
            return nil;
        cache->lcn_gradient = kernel;
        cache->lcn_gradient_size = (NSUInteger)params->kernel_width;
    }
    MPSCNNLocalContrastNormalizationGradient *kernel = cache->lcn_gradient;
    [kernel setAlpha:params->alpha];
    [kernel setBeta:params->beta];
    [kernel setDelta:params->delta];
    [kernel setP0:params->p0];
    [kernel setPm:params->pm];
    [kernel setPs:params->ps];
    [kernel setPrimaryEdgeMode:MPSImageEdgeModeZero];   /* dy */
    [kernel setSecondaryEdgeMode:MPSImageEdgeModeZero]; /* x */
    return kernel;
}

/* Encodes the call into command_buffer; the caller holds the cache lock.
 * sources: x (forward) or dy (gradient); inputs: x (gradient only);
 * forward_results: scratch y images (gradient only). */
static int encode(const lcn_call *call, id<MTLDevice> device, id<MTLCommandBuffer> command_buffer,
                  NSArray<MPSImage *> *sources, NSArray<MPSImage *> *_Nullable inputs,
                  NSArray<MPSImage *> *_Nullable forward_results,
                  NSArray<MPSImage *> *destinations, char *message, size_t size)
    MPSNORM_OBJC_NEEDS_MACOS_10_13_4
{
    MPSCNNLocalContrastNormalization *forward = forward_kernel(call->cache, device, call->params);
    if (forward == nil)
        return mpsnorm_objc_fail(message, size,
                                 "%s: could not create MPSCNNLocalContrastNormalization with a "
                                 "%lld x %lld kernel",
                                 lcn_name(call), (long long)call->params->kernel_width,
                                 (long long)call->params->kernel_height);
    if (!call->gradient) {
        [forward encodeBatchToCommandBuffer:command_buffer
                               sourceImages:sources
                          destinationImages:destinations];
        return MPSNORM_OK;
    }
    if (inputs == nil || forward_results == nil)
        return mpsnorm_objc_fail(message, size, "%s: internal error: no forward images",
                                 lcn_name(call));
    MPSCNNLocalContrastNormalizationGradient *backward =
        gradient_kernel(call->cache, device, call->params);
    if (backward == nil)
        return mpsnorm_objc_fail(message, size,
                                 "%s: could not create MPSCNNLocalContrastNormalizationGradient "
                                 "with a %lld x %lld kernel",
                                 lcn_name(call), (long long)call->params->kernel_width,
                                 (long long)call->params->kernel_height);

    /* One state per image, or the same state for all when the kernel says it
     * is reused across the batch (MPSCNNKernel.h, resultStateForSourceImage:). */
    BOOL shared = [forward isResultStateReusedAcrossBatch];
    NSUInteger count = [inputs count];
    NSMutableArray<MPSState *> *states = [NSMutableArray arrayWithCapacity:count];
    MPSState *state = nil;
    for (NSUInteger i = 0; i < count; i++) {
        if (state == nil || !shared)
            state = [forward resultStateForSourceImage:[inputs objectAtIndex:i]
                                          sourceStates:nil
                                      destinationImage:[forward_results objectAtIndex:i]];
        if (state == nil)
            return mpsnorm_objc_unsupported(
                message, size,
                "%s: MPSCNNLocalContrastNormalization returned no gradient state "
                "(resultStateForSourceImage:sourceStates:destinationImage: gave nil on this "
                "system), so the gradient cannot run on Metal",
                lcn_name(call));
        [states addObject:state];
    }
    [forward encodeBatchToCommandBuffer:command_buffer
                           sourceImages:inputs
                      destinationStates:states
                      destinationImages:forward_results];
    [backward encodeBatchToCommandBuffer:command_buffer
                         sourceGradients:sources
                            sourceImages:inputs
                          gradientStates:states
                    destinationGradients:destinations];
    return MPSNORM_OK;
}

static int run(void *context, char *message, size_t size) MPSNORM_OBJC_NEEDS_MACOS_10_13_4
{
    const lcn_call *call = context;
    const mpsnorm_metal_batch *batch = call->batch;
    const char *what = lcn_name(call);
    id<MTLDevice> device = mpsnorm_objc_device();
    if (call->cache == NULL || device == nil)
        return mpsnorm_objc_fail(message, size, "%s: no Metal device or engine cache", what);

    NSMutableArray<MPSImage *> *sources =
        mpsnorm_objc_images(device, batch, batch->primary, what, message, size);
    if (sources == nil)
        return MPSNORM_ERR_BACKEND_FAILURE;
    NSMutableArray<MPSImage *> *inputs = nil, *forward_results = nil;
    if (call->gradient) {
        inputs = mpsnorm_objc_images(device, batch, batch->secondary, what, message, size);
        if (inputs == nil)
            return MPSNORM_ERR_BACKEND_FAILURE;
        forward_results = mpsnorm_objc_images(device, batch, NULL, what, message, size);
        if (forward_results == nil)
            return MPSNORM_ERR_BACKEND_FAILURE;
    }
    NSMutableArray<MPSImage *> *destinations =
        mpsnorm_objc_images(device, batch, NULL, what, message, size);
    if (destinations == nil)
        return MPSNORM_ERR_BACKEND_FAILURE;
    id<MTLCommandBuffer> command_buffer = mpsnorm_objc_command_buffer(what, message, size);
    if (command_buffer == nil)
        return MPSNORM_ERR_BACKEND_FAILURE;

    int status = MPSNORM_ERR_BACKEND_FAILURE;
    mpsnorm_objc_lock(call->cache);
    @try {
        status = encode(call, device, command_buffer, sources, inputs, forward_results,
                        destinations, message, size);
    } @finally {
        mpsnorm_objc_unlock(call->cache);
    }
    if (status != MPSNORM_OK)
        return status;

    mpsnorm_objc_synchronize(destinations, command_buffer);
    status = mpsnorm_objc_commit_and_wait(command_buffer, what, message, size);
    if (status != MPSNORM_OK)
        return status;
    mpsnorm_objc_download(destinations, batch, batch->destination);
    return MPSNORM_OK;
}

int mpsnorm_metal_lcn_forward(mpsnorm_metal_cache *cache, const mpsnorm_lcn_params *params,
                              const mpsnorm_metal_batch *batch, char *message, size_t size)
{
    if (@available(macOS 10.13.4, *)) {
        lcn_call call = {cache, params, batch, 0};
        return mpsnorm_objc_guard("MPSCNNLocalContrastNormalization", run, &call, message, size);
    }
    return mpsnorm_objc_fail_old_macos("MPSCNNLocalContrastNormalization", message, size);
}

int mpsnorm_metal_lcn_gradient(mpsnorm_metal_cache *cache, const mpsnorm_lcn_params *params,
                               const mpsnorm_metal_batch *batch, char *message, size_t size)
{
    if (@available(macOS 10.13.4, *)) {
        lcn_call call = {cache, params, batch, 1};
        return mpsnorm_objc_guard("MPSCNNLocalContrastNormalizationGradient", run, &call,
                                  message, size);
    }
    return mpsnorm_objc_fail_old_macos("MPSCNNLocalContrastNormalizationGradient", message, size);
}
