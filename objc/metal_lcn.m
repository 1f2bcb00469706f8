/*
 * metal_lcn.m -- local contrast normalization on Metal:
 * MPSCNNLocalContrastNormalization (forward) and
 * MPSCNNLocalContrastNormalizationGradient (gradient), through the call
 * skeleton of metal_run.m, on calls mpsnorm/core/metal_route.c let through
 * (it has already refused what MPS cannot do, e.g. kernel_width != kernel_height).
 *
 * Forward:  x -> encodeBatch -> y.
 * Gradient: the forward kernel makes one gradient state per image
 *           (resultStateForSourceImage:sourceStates:destinationImage:, after
 *           every property is set, as MPSCNNKernel.h requires); with_forward
 *           encodes the forward with those states into MPSTemporaryImages
 *           nobody reads (readCount 0 once written), which fills them; then
 *           the gradient kernel consumes dy (primary / "source gradient"), x
 *           (secondary / "source image") and the states, writing dx. Without
 *           with_forward the gradient runs alone: right only where MPS's state
 *           holds just the kernel's properties, which the self-check decides.
 */
#include "metal_imports.h"

#include "metal_context.h"

typedef struct lcn_call {
    const mpsnorm_lcn_params *params;
    int gradient;
    int with_forward;
} lcn_call;

/* Sets the parameters on a kernel of either class (the same six properties). */
#define SET_LCN_PROPERTIES(kernel, params)                                                      \
    do {                                                                                       \
        [kernel setAlpha:(params)->alpha];                                                     \
        [kernel setBeta:(params)->beta];                                                       \
        [kernel setDelta:(params)->delta];                                                     \
        [kernel setP0:(params)->p0];                                                           \
        [kernel setPm:(params)->pm];                                                           \
        [kernel setPs:(params)->ps];                                                           \
    } while (0)

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
    SET_LCN_PROPERTIES(kernel, params);
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
    SET_LCN_PROPERTIES(kernel, params);
    [kernel setPrimaryEdgeMode:MPSImageEdgeModeZero];   /* dy */
    [kernel setSecondaryEdgeMode:MPSImageEdgeModeZero]; /* x */
    return kernel;
}

#undef SET_LCN_PROPERTIES

static int encode(const mpsnorm_objc_job *job, id<MTLDevice> device,
                  id<MTLCommandBuffer> command_buffer, NSArray<MPSImage *> *sources,
                  NSArray<MPSImage *> *_Nullable inputs, NSArray<MPSImage *> *destinations,
                  char *message, size_t size) MPSNORM_OBJC_NEEDS_MACOS_10_13_4
{
    const lcn_call *call = job->context;
    const mpsnorm_lcn_params *params = call->params;
    MPSCNNLocalContrastNormalization *forward = forward_kernel(job->cache, device, params);
    if (forward == nil)
        return mpsnorm_objc_unsupported(message, size,
                                        "%s: this system's MPS could not make "
                                        "MPSCNNLocalContrastNormalization with a %lld x %lld "
                                        "kernel",
                                        job->name, (long long)params->kernel_width,
                                        (long long)params->kernel_height);
    if (!call->gradient) {
        [forward encodeBatchToCommandBuffer:command_buffer
                               sourceImages:sources
                          destinationImages:destinations];
        return MPSNORM_OK;
    }
    if (inputs == nil)
        return mpsnorm_objc_fail(message, size, "%s: internal error: no source images",
                                 job->name);
    MPSCNNLocalContrastNormalizationGradient *backward =
        gradient_kernel(job->cache, device, params);
    if (backward == nil)
        return mpsnorm_objc_unsupported(message, size,
                                        "%s: this system's MPS could not make "
                                        "MPSCNNLocalContrastNormalizationGradient with a %lld x "
                                        "%lld kernel",
                                        job->name, (long long)params->kernel_width,
                                        (long long)params->kernel_height);
    if (call->with_forward) {
        int status = mpsnorm_objc_require_state_encode(job, forward, message, size);
        if (status != MPSNORM_OK)
            return status;
    }

    /* The forward's results: GPU scratch that nothing reads. Without the forward
     * pass a state still needs a destination image to describe. */
    NSUInteger count = [inputs count];
    NSArray<MPSImage *> *results = destinations;
    if (call->with_forward) {
        MPSImageDescriptor *descriptor = mpsnorm_objc_descriptor(job->batch);
        if (descriptor == nil)
            return mpsnorm_objc_fail(message, size, "%s: could not describe the MPS images",
                                     job->name);
        NSMutableArray<MPSImage *> *scratch = [NSMutableArray arrayWithCapacity:count];
        for (NSUInteger i = 0; i < count; i++)
            [scratch addObject:[MPSTemporaryImage temporaryImageWithCommandBuffer:command_buffer
                                                                  imageDescriptor:descriptor]];
        results = scratch;
    }

    /* One state per image, or the same state for all when the kernel says it
     * is reused across the batch (MPSCNNKernel.h, resultStateForSourceImage:). */
    BOOL shared = [forward isResultStateReusedAcrossBatch];
    NSMutableArray<MPSState *> *states = [NSMutableArray arrayWithCapacity:count];
    MPSState *state = nil;
    for (NSUInteger i = 0; i < count; i++) {
        if (state == nil || !shared)
            state = [forward resultStateForSourceImage:[inputs objectAtIndex:i]
                                          sourceStates:nil
                                      destinationImage:[results objectAtIndex:i]];
        if (state == nil)
            return mpsnorm_objc_unsupported(
                message, size,
                "%s: MPSCNNLocalContrastNormalization returned no gradient state "
                "(resultStateForSourceImage:sourceStates:destinationImage: gave nil on this "
                "system), so the gradient cannot run on Metal",
                job->name);
        [states addObject:state];
    }
    mpsnorm_objc_encode_gradient(command_buffer, call->with_forward ? forward : nil, backward,
                                 sources, inputs, states, results, destinations);
    return MPSNORM_OK;
}

static int run(void *context, char *message, size_t size) MPSNORM_OBJC_NEEDS_MACOS_10_13_4
{
    return mpsnorm_objc_run(context, message, size);
}

static int lcn(mpsnorm_metal_cache *cache, const mpsnorm_lcn_params *params,
               const mpsnorm_metal_batch *batch, int gradient, int with_forward, char *message,
               size_t size)
{
    const char *name = gradient ? "MPSCNNLocalContrastNormalizationGradient"
                                : "MPSCNNLocalContrastNormalization";
    if (@available(macOS 10.13.4, *)) {
        lcn_call call = {params, gradient, with_forward};
        mpsnorm_objc_job job = {name, cache, batch, gradient && with_forward ? 1 : 0, encode,
                                NULL, NULL, &call};
        return mpsnorm_objc_guard(name, run, &job, message, size);
    }
    return mpsnorm_objc_fail_old_macos(name, message, size);
}

int mpsnorm_metal_lcn_forward(mpsnorm_metal_cache *cache, const mpsnorm_lcn_params *params,
                              const mpsnorm_metal_batch *batch, char *message, size_t size)
{
    return lcn(cache, params, batch, 0, 0, message, size);
}

int mpsnorm_metal_lcn_gradient(mpsnorm_metal_cache *cache, const mpsnorm_lcn_params *params,
                               const mpsnorm_metal_batch *batch, int with_forward,
                               char *message, size_t size)
{
    return lcn(cache, params, batch, 1, with_forward, message, size);
}
