/*
 * metal_instance_norm.m -- instance normalization on Metal:
 * MPSCNNInstanceNormalization (forward, gamma/beta from a data source) and
 * MPSCNNInstanceNormalizationGradient, through the call skeleton of
 * metal_run.m, on calls mpsnorm/core/metal_route.c let through.
 *
 * Forward:  x -> encodeBatch -> y.
 * Gradient: the forward kernel makes one MPSCNNInstanceNormalizationGradientState
 *           per image and is encoded with them, writing MPSTemporaryImages
 *           nobody reads (readCount 0 once written): the states then hold
 *           each image's statistics. The gradient kernel consumes dy, x and
 *           the states, writes dx, and leaves each image's gamma/beta gradients
 *           in its state's gradientForGamma / gradientForBeta buffers, which
 *           are copied out per image after completion (metal_route.c sums
 *           them over the batch).
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
    const mpsnorm_inorm_params *params;
    float *dgamma_per_image; /* gradient only: N*C, image-major */
    float *dbeta_per_image;
    int gradient;
    /* gradient: the chunk's MPSCNNInstanceNormalizationGradientStates (a macOS
     * 10.13.4 class, which a struct field cannot name), read by download and finish */
    __strong NSMutableArray *_Nullable states;
} inorm_call;

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

static int encode(const mpsnorm_objc_job *job, id<MTLDevice> device,
                  id<MTLCommandBuffer> command_buffer, NSArray<MPSImage *> *sources,
                  NSArray<MPSImage *> *_Nullable inputs, NSArray<MPSImage *> *destinations,
                  char *message, size_t size) MPSNORM_OBJC_NEEDS_MACOS_10_13_4
{
    inorm_call *call = job->context;
    MPSCNNInstanceNormalization *forward = forward_kernel(job->cache, device, call->params);
    if (forward == nil)
        return mpsnorm_objc_unsupported(message, size,
                                        "%s: this system's MPS could not make "
                                        "MPSCNNInstanceNormalization for %lld channels",
                                        job->name, (long long)call->params->num_channels);
    if (!call->gradient) {
        [forward encodeBatchToCommandBuffer:command_buffer
                               sourceImages:sources
                          destinationImages:destinations];
        return MPSNORM_OK;
    }
    if (inputs == nil)
        return mpsnorm_objc_fail(message, size, "%s: internal error: no source images",
                                 job->name);
    MPSCNNInstanceNormalizationGradient *backward = gradient_kernel(job->cache, device);
    if (backward == nil)
        return mpsnorm_objc_unsupported(message, size,
                                        "%s: this system's MPS could not make "
                                        "MPSCNNInstanceNormalizationGradient",
                                        job->name);
    int status = mpsnorm_objc_require_state_encode(job, forward, message, size);
    if (status != MPSNORM_OK)
        return status;
    MPSImageDescriptor *descriptor = mpsnorm_objc_descriptor(job->batch);
    if (descriptor == nil)
        return mpsnorm_objc_fail(message, size, "%s: could not describe the MPS images",
                                 job->name);

    /* One state per image: each carries that image's statistics and, after the
     * gradient, its gamma/beta gradients. */
    NSUInteger count = [inputs count];
    NSMutableArray<MPSImage *> *results = [NSMutableArray arrayWithCapacity:count];
    NSMutableArray<MPSCNNInstanceNormalizationGradientState *> *states =
        [NSMutableArray arrayWithCapacity:count];
    for (NSUInteger i = 0; i < count; i++) {
        MPSTemporaryImage *result = [MPSTemporaryImage temporaryImageWithCommandBuffer:command_buffer
                                                                       imageDescriptor:descriptor];
        MPSCNNInstanceNormalizationGradientState *state =
            [forward resultStateForSourceImage:[inputs objectAtIndex:i]
                                  sourceStates:nil
                              destinationImage:result];
        if (state == nil) {
            [result setReadCount:0];
            for (NSUInteger k = 0; k < i; k++)
                [(MPSTemporaryImage *)[results objectAtIndex:k] setReadCount:0];
            return mpsnorm_objc_unsupported(
                message, size,
                "%s: MPSCNNInstanceNormalization returned no gradient state "
                "(resultStateForSourceImage:sourceStates:destinationImage: gave nil on this "
                "system), so the gradient cannot run on Metal",
                job->name);
        }
        [results addObject:result];
        [states addObject:state];
    }
    mpsnorm_objc_encode_gradient(command_buffer, forward, backward, sources, inputs, states,
                                 results, destinations);
    call->states = states;
    return MPSNORM_OK;
}

/*
 * Checks that every state's gradientForGamma / gradientForBeta buffer can be
 * read by the CPU as C floats, and encodes into the download blit the
 * synchronization that managed buffers need before the CPU reads what the
 * GPU wrote (MTLResource.h, MTLStorageModeManaged). Apple's header does not
 * say the element type or the storage mode of these buffers, so both are
 * checked, not assumed.
 */
static int download(const mpsnorm_objc_job *job, id<MTLBlitCommandEncoder> blit, char *message,
                    size_t size) MPSNORM_OBJC_NEEDS_MACOS_10_13_4
{
    const inorm_call *call = job->context;
    NSUInteger needed = (NSUInteger)job->batch->destination->shape[1] * sizeof(float);
    NSUInteger count = [call->states count];
    for (NSUInteger i = 0; i < count; i++) {
        MPSCNNInstanceNormalizationGradientState *state = [call->states objectAtIndex:i];
        id<MTLBuffer> buffers[2] = {[state gradientForGamma], [state gradientForBeta]};
        const char *names[2] = {"gradientForGamma", "gradientForBeta"};
        for (int k = 0; k < 2; k++) {
            id<MTLBuffer> buffer = buffers[k];
            if (buffer == nil)
                return mpsnorm_objc_fail(message, size,
                                         "%s: the gradient state of image %lu has no %s buffer",
                                         job->name, (unsigned long)i, names[k]);
            if ([buffer length] < needed)
                return mpsnorm_objc_unsupported(
                    message, size,
                    "%s: %s of image %lu holds %lu bytes, fewer than %lu (C = %lld floats); "
                    "cannot read the gamma/beta gradients on this system",
                    job->name, names[k], (unsigned long)i, (unsigned long)[buffer length],
                    (unsigned long)needed, (long long)job->batch->destination->shape[1]);
            MTLStorageMode mode = [buffer storageMode];
            if (mode == MTLStorageModePrivate)
                return mpsnorm_objc_unsupported(
                    message, size,
                    "%s: %s of image %lu is GPU-private (MTLStorageModePrivate); the CPU "
                    "cannot read the gamma/beta gradients on this system",
                    job->name, names[k], (unsigned long)i);
            if (mode == MTLStorageModeManaged)
                [blit synchronizeResource:buffer];
        }
    }
    return MPSNORM_OK;
}

/* After completion: image i's gradients -> row first + i of the per-image arrays. */
static void finish(const mpsnorm_objc_job *job, int64_t first, int64_t count)
    MPSNORM_OBJC_NEEDS_MACOS_10_13_4
{
    const inorm_call *call = job->context;
    size_t row = (size_t)job->batch->destination->shape[1];
    for (int64_t i = 0; i < count; i++) {
        MPSCNNInstanceNormalizationGradientState *state =
            [call->states objectAtIndex:(NSUInteger)i];
        memcpy(call->dgamma_per_image + (size_t)(first + i) * row,
               [[state gradientForGamma] contents], row * sizeof(float));
        memcpy(call->dbeta_per_image + (size_t)(first + i) * row,
               [[state gradientForBeta] contents], row * sizeof(float));
    }
}

static int run(void *context, char *message, size_t size) MPSNORM_OBJC_NEEDS_MACOS_10_13_4
{
    return mpsnorm_objc_run(context, message, size);
}

static int instance_norm(mpsnorm_metal_cache *cache, const mpsnorm_inorm_params *params,
                         const mpsnorm_metal_batch *batch, float *_Nullable dgamma_per_image,
                         float *_Nullable dbeta_per_image, char *message, size_t size)
{
    const int gradient = dgamma_per_image != NULL;
    const char *name = gradient ? "MPSCNNInstanceNormalizationGradient"
                                : "MPSCNNInstanceNormalization";
    if (@available(macOS 10.13.4, *)) {
        inorm_call call = {params, dgamma_per_image, dbeta_per_image, gradient, nil};
        mpsnorm_objc_job job = {name, cache, batch, gradient, encode,
                                gradient ? download : NULL, gradient ? finish : NULL, &call};
        return mpsnorm_objc_guard(name, run, &job, message, size);
    }
    return mpsnorm_objc_fail_old_macos(name, message, size);
}

int mpsnorm_metal_inorm_forward(mpsnorm_metal_cache *cache, const mpsnorm_inorm_params *params,
                                const mpsnorm_metal_batch *batch, char *message, size_t size)
{
    return instance_norm(cache, params, batch, NULL, NULL, message, size);
}

int mpsnorm_metal_inorm_gradient(mpsnorm_metal_cache *cache, const mpsnorm_inorm_params *params,
                                 const mpsnorm_metal_batch *batch, float *dgamma_per_image,
                                 float *dbeta_per_image, char *message, size_t size)
{
    if (dgamma_per_image == NULL || dbeta_per_image == NULL)
        return mpsnorm_objc_fail(message, size,
                                 "MPSCNNInstanceNormalizationGradient: no storage for the "
                                 "gamma/beta gradients");
    return instance_norm(cache, params, batch, dgamma_per_image, dbeta_per_image, message, size);
}
