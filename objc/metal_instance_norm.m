/*
 * metal_instance_norm.m -- instance normalization on Metal:
 * MPSCNNInstanceNormalization (forward, gamma/beta from a data source) and
 * MPSCNNInstanceNormalizationGradient, on a batch staged by
 * mpsnorm/core/metal_route.c.
 *
 * Forward:  x images -> encodeBatch -> y images -> y.
 * Gradient: the forward kernel makes one MPSCNNInstanceNormalizationGradientState
 *           per image and is encoded with them (writing scratch y images);
 *           the gradient kernel then consumes dy, x and the states, writes
 *           dx, and leaves each image's gamma/beta gradients in its state's
 *           gradientForGamma / gradientForBeta buffers, which are copied out
 *           per image (metal_route.c sums them over the batch).
 */
#include "metal_imports.h"

#include "metal_context.h"

/* ---- data source --------------------------------------------------------- */

/* values, or `fill` everywhere when values is NULL, into a new array. */
static float *copy_channels(const float *_Nullable values, float fill, NSUInteger count)
{
    float *copy = malloc(count * sizeof(float));
    if (copy == NULL)
        return NULL;
    if (values != NULL)
        memcpy(copy, values, count * sizeof(float));
    else
        for (NSUInteger i = 0; i < count; i++)
            copy[i] = fill;
    return copy;
}

/* held[0..count) equals values, or is `fill` everywhere when values is NULL (bitwise). */
static BOOL same_channels(const float *held, const float *_Nullable values, float fill,
                          NSUInteger count)
{
    if (values != NULL)
        return memcmp(held, values, count * sizeof(float)) == 0;
    for (NSUInteger i = 0; i < count; i++)
        if (memcmp(&held[i], &fill, sizeof(float)) != 0)
            return NO;
    return YES;
}

/*
 * MPSCNNInstanceNormalizationDataSource owning copies of gamma and beta
 * (ones / zeros when the caller gave none), so the kernel never points at
 * caller memory after a call returns.
 */
MPSNORM_OBJC_NEEDS_MACOS_10_13_4
@interface MPSNormInstanceNormalizationSource : NSObject <MPSCNNInstanceNormalizationDataSource>
- (nullable instancetype)initWithChannels:(NSUInteger)channels
                                    gamma:(const float *_Nullable)gamma
                                     beta:(const float *_Nullable)beta
                                  epsilon:(float)epsilon;
/* YES if this source holds exactly these values (bit for bit; NULL gamma
 * means ones, NULL beta zeros). */
- (BOOL)holdsChannels:(NSUInteger)channels
                gamma:(const float *_Nullable)gamma
                 beta:(const float *_Nullable)beta;
@end

@implementation MPSNormInstanceNormalizationSource {
    NSUInteger _channels;
    float *_gamma;
    float *_beta;
    float _epsilon;
}

- (instancetype)initWithChannels:(NSUInteger)channels
                           gamma:(const float *)gamma
                            beta:(const float *)beta
                         epsilon:(float)epsilon
{
    self = [super init];
    if (self == nil)
        return nil;
    _channels = channels;
    _epsilon = epsilon;
    _gamma = copy_channels(gamma, 1.0f, channels);
    _beta = copy_channels(beta, 0.0f, channels);
    if (_gamma == NULL || _beta == NULL)
        return nil; /* dealloc frees whichever was made */
    return self;
}

- (void)dealloc
{
    free(_gamma);
    free(_beta);
}

- (BOOL)holdsChannels:(NSUInteger)channels gamma:(const float *)gamma beta:(const float *)beta
{
    return channels == _channels && same_channels(_gamma, gamma, 1.0f, channels) &&
           same_channels(_beta, beta, 0.0f, channels);
}

- (float *)gamma
{
    return _gamma;
}

- (float *)beta
{
    return _beta;
}

- (NSUInteger)numberOfFeatureChannels
{
    return _channels;
}

- (NSString *)label
{
    return @"mpsnorm instance normalization";
}

/* Optional in the protocol; the kernel's epsilon property is also set
 * explicitly before every encode. */
- (float)epsilon
{
    return _epsilon;
}

- (id)copyWithZone:(NSZone *)zone
{
    (void)zone;
    return [[MPSNormInstanceNormalizationSource alloc] initWithChannels:_channels
                                                                  gamma:_gamma
                                                                   beta:_beta
                                                                epsilon:_epsilon];
}

@end

/* ---- kernels ------------------------------------------------------------- */

typedef struct inorm_call {
    mpsnorm_metal_cache *cache;
    const mpsnorm_inorm_params *params;
    const mpsnorm_metal_batch *batch;
    float *dgamma_per_image; /* gradient only: N*C, image-major */
    float *dbeta_per_image;
    int gradient;
} inorm_call;

static const char *inorm_name(const inorm_call *call)
{
    return call->gradient ? "MPSCNNInstanceNormalizationGradient" : "MPSCNNInstanceNormalization";
}

/* The cached forward kernel when it holds these channel values, else a new
 * one; its epsilon is set to params->epsilon either way. */
static MPSCNNInstanceNormalization *_Nullable forward_kernel(mpsnorm_metal_cache *cache,
                                                             id<MTLDevice> device,
                                                             const mpsnorm_inorm_params *params)
    MPSNORM_OBJC_NEEDS_MACOS_10_13_4
{
    NSUInteger channels = (NSUInteger)params->num_channels;
    MPSNormInstanceNormalizationSource *source = cache->inorm_source;
    if (cache->inorm_forward == nil || source == nil ||
        ![source holdsChannels:channels gamma:params->gamma beta:params->beta]) {
        cache->inorm_forward = nil;
        cache->inorm_source = nil;
        source = [[MPSNormInstanceNormalizationSource alloc] initWithChannels:channels
                                                                        gamma:params->gamma
                                                                         beta:params->beta
                                                                      epsilon:params->epsilon];
        if (source == nil)
            return nil;
        MPSCNNInstanceNormalization *kernel =
            [[MPSCNNInstanceNormalization alloc] initWithDevice:device dataSource:source];
        if (kernel == nil)
            return nil;
        cache->inorm_source = source;
        cache->inorm_forward = kernel;
    }
    MPSCNNInstanceNormalization *kernel = cache->inorm_forward;
    [kernel setEpsilon:params->epsilon]; /* MPS documents no default: always set */
    return kernel;
}

static MPSCNNInstanceNormalizationGradient *_Nullable gradient_kernel(mpsnorm_metal_cache *cache,
                                                                      id<MTLDevice> device)
    MPSNORM_OBJC_NEEDS_MACOS_10_13_4
{
    if (cache->inorm_gradient == nil)
        cache->inorm_gradient = [[MPSCNNInstanceNormalizationGradient alloc] initWithDevice:device];
    return cache->inorm_gradient;
}

/* Encodes the call; the caller holds the cache lock. sources: x (forward) or
 * dy (gradient); inputs: x, forward_results: scratch y (gradient only).
 * Fills `states` (gradient only) with the per-image gradient states. */
static int encode(const inorm_call *call, id<MTLDevice> device,
                  id<MTLCommandBuffer> command_buffer, NSArray<MPSImage *> *sources,
                  NSArray<MPSImage *> *_Nullable inputs,
                  NSArray<MPSImage *> *_Nullable forward_results,
                  NSArray<MPSImage *> *destinations,
                  NSMutableArray<MPSCNNInstanceNormalizationGradientState *> *_Nullable states,
                  char *message, size_t size) MPSNORM_OBJC_NEEDS_MACOS_10_13_4
{
    MPSCNNInstanceNormalization *forward = forward_kernel(call->cache, device, call->params);
    if (forward == nil)
        return mpsnorm_objc_fail(message, size,
                                 "%s: could not create MPSCNNInstanceNormalization for %lld "
                                 "channels",
                                 inorm_name(call), (long long)call->params->num_channels);
    if (!call->gradient) {
        [forward encodeBatchToCommandBuffer:command_buffer
                               sourceImages:sources
                          destinationImages:destinations];
        return MPSNORM_OK;
    }
    if (inputs == nil || forward_results == nil || states == nil)
        return mpsnorm_objc_fail(message, size, "%s: internal error: no forward images",
                                 inorm_name(call));
    MPSCNNInstanceNormalizationGradient *backward = gradient_kernel(call->cache, device);
    if (backward == nil)
        return mpsnorm_objc_fail(message, size,
                                 "%s: could not create MPSCNNInstanceNormalizationGradient",
                                 inorm_name(call));

    /* One state per image: each carries that image's gamma/beta gradients. */
    NSUInteger count = [inputs count];
    for (NSUInteger i = 0; i < count; i++) {
        MPSCNNInstanceNormalizationGradientState *state =
            [forward resultStateForSourceImage:[inputs objectAtIndex:i]
                                  sourceStates:nil
                              destinationImage:[forward_results objectAtIndex:i]];
        if (state == nil)
            return mpsnorm_objc_unsupported(
                message, size,
                "%s: MPSCNNInstanceNormalization returned no gradient state "
                "(resultStateForSourceImage:sourceStates:destinationImage: gave nil on this "
                "system), so the gradient cannot run on Metal",
                inorm_name(call));
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

/*
 * Checks that every state's gradientForGamma / gradientForBeta buffer can be
 * read by the CPU as C floats, and encodes the blit synchronization that
 * managed buffers need before the CPU reads what the GPU wrote (MTLResource.h,
 * MTLStorageModeManaged). Apple's header does not say the element type or
 * the storage mode of these buffers, so both are checked, not assumed.
 */
static int prepare_parameter_gradients(
    const inorm_call *call, NSArray<MPSCNNInstanceNormalizationGradientState *> *states,
    id<MTLCommandBuffer> command_buffer, char *message, size_t size)
    MPSNORM_OBJC_NEEDS_MACOS_10_13_4
{
    NSUInteger needed = (NSUInteger)call->batch->c * sizeof(float);
    NSUInteger count = [states count];
    id<MTLBlitCommandEncoder> blit = nil;
    for (NSUInteger i = 0; i < count; i++) {
        MPSCNNInstanceNormalizationGradientState *state = [states objectAtIndex:i];
        id<MTLBuffer> buffers[2] = {[state gradientForGamma], [state gradientForBeta]};
        const char *names[2] = {"gradientForGamma", "gradientForBeta"};
        for (int k = 0; k < 2; k++) {
            id<MTLBuffer> buffer = buffers[k];
            if (buffer == nil)
                return mpsnorm_objc_fail(message, size,
                                         "%s: the gradient state of image %lu has no %s buffer",
                                         inorm_name(call), (unsigned long)i, names[k]);
            if ([buffer length] < needed)
                return mpsnorm_objc_unsupported(
                    message, size,
                    "%s: %s of image %lu holds %lu bytes, fewer than %lu (C = %lld floats); "
                    "cannot read the gamma/beta gradients on this system",
                    inorm_name(call), names[k], (unsigned long)i, (unsigned long)[buffer length],
                    (unsigned long)needed, (long long)call->batch->c);
            MTLStorageMode mode = [buffer storageMode];
            if (mode == MTLStorageModePrivate)
                return mpsnorm_objc_unsupported(
                    message, size,
                    "%s: %s of image %lu is GPU-private (MTLStorageModePrivate); the CPU "
                    "cannot read the gamma/beta gradients on this system",
                    inorm_name(call), names[k], (unsigned long)i);
            if (mode == MTLStorageModeManaged) {
                if (blit == nil)
                    blit = [command_buffer blitCommandEncoder];
                if (blit == nil)
                    return mpsnorm_objc_fail(message, size,
                                             "%s: could not create a blit encoder to synchronize "
                                             "the gamma/beta gradients",
                                             inorm_name(call));
                [blit synchronizeResource:buffer];
            }
        }
    }
    if (blit != nil)
        [blit endEncoding];
    return MPSNORM_OK;
}

/* After completion: image i's gradients -> row i of the per-image arrays. */
static void copy_parameter_gradients(const inorm_call *call,
                                     NSArray<MPSCNNInstanceNormalizationGradientState *> *states)
    MPSNORM_OBJC_NEEDS_MACOS_10_13_4
{
    size_t row = (size_t)call->batch->c;
    NSUInteger count = [states count];
    for (NSUInteger i = 0; i < count; i++) {
        MPSCNNInstanceNormalizationGradientState *state = [states objectAtIndex:i];
        memcpy(call->dgamma_per_image + (size_t)i * row, [[state gradientForGamma] contents],
               row * sizeof(float));
        memcpy(call->dbeta_per_image + (size_t)i * row, [[state gradientForBeta] contents],
               row * sizeof(float));
    }
}

static int run(void *context, char *message, size_t size) MPSNORM_OBJC_NEEDS_MACOS_10_13_4
{
    const inorm_call *call = context;
    const mpsnorm_metal_batch *batch = call->batch;
    const char *what = inorm_name(call);
    id<MTLDevice> device = mpsnorm_objc_device();
    if (call->cache == NULL || device == nil)
        return mpsnorm_objc_fail(message, size, "%s: no Metal device or engine cache", what);
    if (call->gradient && (call->dgamma_per_image == NULL || call->dbeta_per_image == NULL))
        return mpsnorm_objc_fail(message, size, "%s: no storage for the gamma/beta gradients",
                                 what);

    NSMutableArray<MPSImage *> *sources =
        mpsnorm_objc_images(device, batch, batch->primary, what, message, size);
    if (sources == nil)
        return MPSNORM_ERR_BACKEND_FAILURE;
    NSMutableArray<MPSImage *> *inputs = nil, *forward_results = nil;
    NSMutableArray<MPSCNNInstanceNormalizationGradientState *> *states = nil;
    if (call->gradient) {
        inputs = mpsnorm_objc_images(device, batch, batch->secondary, what, message, size);
        if (inputs == nil)
            return MPSNORM_ERR_BACKEND_FAILURE;
        forward_results = mpsnorm_objc_images(device, batch, NULL, what, message, size);
        if (forward_results == nil)
            return MPSNORM_ERR_BACKEND_FAILURE;
        states = [NSMutableArray arrayWithCapacity:(NSUInteger)batch->n];
        if (states == nil)
            return mpsnorm_objc_fail(message, size, "%s: out of memory", what);
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
                        destinations, states, message, size);
    } @finally {
        mpsnorm_objc_unlock(call->cache);
    }
    if (status != MPSNORM_OK)
        return status;
    if (call->gradient) {
        status = prepare_parameter_gradients(call, states, command_buffer, message, size);
        if (status != MPSNORM_OK)
            return status;
    }

    mpsnorm_objc_synchronize(destinations, command_buffer);
    status = mpsnorm_objc_commit_and_wait(command_buffer, what, message, size);
    if (status != MPSNORM_OK)
        return status;
    mpsnorm_objc_download(destinations, batch, batch->destination);
    if (call->gradient)
        copy_parameter_gradients(call, states);
    return MPSNORM_OK;
}

int mpsnorm_metal_inorm_forward(mpsnorm_metal_cache *cache, const mpsnorm_inorm_params *params,
                                const mpsnorm_metal_batch *batch, char *message, size_t size)
{
    if (@available(macOS 10.13.4, *)) {
        inorm_call call = {cache, params, batch, NULL, NULL, 0};
        return mpsnorm_objc_guard("MPSCNNInstanceNormalization", run, &call, message, size);
    }
    return mpsnorm_objc_fail_old_macos("MPSCNNInstanceNormalization", message, size);
}

int mpsnorm_metal_inorm_gradient(mpsnorm_metal_cache *cache, const mpsnorm_inorm_params *params,
                                 const mpsnorm_metal_batch *batch, float *dgamma_per_image,
                                 float *dbeta_per_image, char *message, size_t size)
{
    if (@available(macOS 10.13.4, *)) {
        inorm_call call = {cache, params, batch, dgamma_per_image, dbeta_per_image, 1};
        return mpsnorm_objc_guard("MPSCNNInstanceNormalizationGradient", run, &call, message,
                                  size);
    }
    return mpsnorm_objc_fail_old_macos("MPSCNNInstanceNormalizationGradient", message, size);
}
