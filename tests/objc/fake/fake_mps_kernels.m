/*
 * fake_mps_kernels.m -- the four MPS kernels of mps_declarations.h and their
 * gradient states, for the tests. They compute with mpsnorm's own CPU kernels
 * (through the C ABI with a NULL engine, in the same library): this fake
 * checks the glue in objc/, not Apple's arithmetic.
 *
 * As MPSCNNKernel.h and MPSKernel.h say: properties are read at encode time
 * ("All MPSKernel state has been copied to the command buffer"), the work runs
 * when the GPU runs the committed buffer, and a gradient state made by
 * resultStateForSourceImage:... holds what the gradient needs only once the
 * forward encode that was given it as a destination state has run; a gradient
 * that reads an unfilled state writes garbage (NaN here) and is counted.
 * Shape or count mismatches between the images of an encode raise, as MPS's
 * debug checks would.
 *
 * What each kernel computes is one row of `kernels` below.
 */
#include "fake.h"

#include <float.h>
#include <stdlib.h>
#include <string.h>

#include "mpsnorm.h"

typedef enum fake_kernel_kind {
    FAKE_LCN_FORWARD,
    FAKE_LCN_GRADIENT,
    FAKE_INORM_FORWARD,
    FAKE_INORM_GRADIENT,
} fake_kernel_kind;

/* What an encode copies from its kernel: everything the GPU run needs. */
typedef struct fake_snapshot {
    fake_kernel_kind kind;
    mpsnorm_lcn_params lcn;
    NSUInteger channels; /* instance norm */
    float *gamma, *beta; /* instance norm forward: owned copies */
    float epsilon;
} fake_snapshot;

@class FakeKernelRun;
typedef void (*fake_kernel_function)(FakeKernelRun *run);

static void lcn_forward(FakeKernelRun *run);
static void lcn_gradient(FakeKernelRun *run);
static void inorm_forward(FakeKernelRun *run);
static void inorm_gradient(FakeKernelRun *run);

/* The kernels: name (for messages), whether a gradient, what the GPU runs. */
static const struct {
    const char *name;
    int gradient;
    fake_kernel_function run;
} kernels[] = {
    [FAKE_LCN_FORWARD] = {"MPSCNNLocalContrastNormalization", 0, lcn_forward},
    [FAKE_LCN_GRADIENT] = {"MPSCNNLocalContrastNormalizationGradient", 1, lcn_gradient},
    [FAKE_INORM_FORWARD] = {"MPSCNNInstanceNormalization", 0, inorm_forward},
    [FAKE_INORM_GRADIENT] = {"MPSCNNInstanceNormalizationGradient", 1, inorm_gradient},
};

static float *copy_floats(const float *values, float fill, NSUInteger count)
{
    float *copy = malloc((count > 0 ? count : 1) * sizeof(float));
    if (copy == NULL)
        abort();
    for (NSUInteger i = 0; i < count; i++)
        copy[i] = values != NULL ? values[i] : fill;
    return copy;
}

/* ---- gradient states ------------------------------------------------------ */

@interface MPSNNGradientState ()
- (instancetype)initWithProducer:(fake_kernel_kind)producer;
@property (readonly) fake_kernel_kind producer; /* the forward kernel that made it */
@property (readonly) BOOL filled;               /* by that forward's encode, on the GPU */
/* GPU side: the forward run records what its gradient needs. */
- (void)fillWithSnapshot:(const fake_snapshot *)snapshot;
@property (readonly) const float *gamma; /* instance norm: the forward's gamma */
@property (readonly) float epsilon;
@end

@implementation MPSState
@end

@implementation MPSNNGradientState {
    float *_gamma;
}

- (instancetype)initWithProducer:(fake_kernel_kind)producer
{
    self = [super init];
    _producer = producer;
    fake_count(FAKE_COUNT_gradient_states, 1);
    return self;
}

- (void)dealloc
{
    free(_gamma);
}

- (void)fillWithSnapshot:(const fake_snapshot *)snapshot
{
    free(_gamma);
    _gamma = snapshot->gamma != NULL ? copy_floats(snapshot->gamma, 0, snapshot->channels) : NULL;
    _epsilon = snapshot->epsilon;
    _filled = YES;
}

- (const float *)gamma
{
    return _gamma;
}

@end

@interface MPSCNNInstanceNormalizationGradientState ()
- (instancetype)initWithChannels:(NSUInteger)channels;
@end

@implementation MPSCNNInstanceNormalizationGradientState {
    id<MTLBuffer> _gradientForGamma;
    id<MTLBuffer> _gradientForBeta;
}

/* Buffers of C float32 values padded to 16 bytes (or the faults' variants). */
- (instancetype)initWithChannels:(NSUInteger)channels
{
    self = [super initWithProducer:FAKE_INORM_FORWARD];
    if (fake_setting_value(FAKE_gradient_buffer_nil))
        return self;
    NSUInteger length = (channels * sizeof(float) + 15) / 16 * 16;
    if (fake_setting_value(FAKE_gradient_buffer_short))
        length = (channels - 1) * sizeof(float);
    MTLStorageMode mode = (MTLStorageMode)fake_setting_value(FAKE_gradient_buffer_mode);
    _gradientForGamma = fake_buffer(length, mode);
    _gradientForBeta = fake_buffer(length, mode);
    return self;
}

- (id<MTLBuffer>)gradientForGamma
{
    return _gradientForGamma;
}

- (id<MTLBuffer>)gradientForBeta
{
    return _gradientForBeta;
}

@end

/* ---- one encoded image ---------------------------------------------------- */

@interface FakeKernelRun : NSObject <FakeGPUCommand> {
@public
    fake_snapshot _snapshot;
    MPSImage *_primary;     /* forward: source; gradient: source gradient (dy) */
    MPSImage *_secondary;   /* gradient: source image (x) */
    MPSImage *_destination;
    MPSNNGradientState *_state; /* forward: to fill (may be nil); gradient: to read */
}
@end

@implementation FakeKernelRun

- (void)dealloc
{
    free(_snapshot.gamma);
    free(_snapshot.beta);
}

- (void)runOnGPU
{
    kernels[_snapshot.kind].run(self);
}

@end

/* One image of the run as a contiguous 1 x C x H x W tensor (the image's
 * channel format) in new memory, filled from the GPU's copy when `image`. */
static mpsnorm_tensor image_tensor(MPSImage *reference, MPSImage *image)
{
    NSUInteger c = [reference fakeChannels], h = [reference fakeHeight], w = [reference fakeWidth];
    int dtype = [reference fakeFormat] == MPSImageFeatureChannelFormatFloat16 ? MPSNORM_FLOAT16
                                                                              : MPSNORM_FLOAT32;
    mpsnorm_tensor tensor = {NULL, dtype, {1, (int64_t)c, (int64_t)h, (int64_t)w},
                             {(int64_t)(c * h * w), (int64_t)(h * w), (int64_t)w, 1}};
    tensor.data = malloc(c * h * w * mpsnorm_dtype_size(dtype));
    if (tensor.data == NULL)
        abort();
    if (image != nil)
        [image fakeGPURead:tensor.data];
    return tensor;
}

static void check_status(FakeKernelRun *run, int status)
{
    if (status != MPSNORM_OK)
        fake_raise("%s: the CPU kernel returned status %d", kernels[run->_snapshot.kind].name,
                   status);
}

/* A gradient's state must come from the matching forward and be filled. */
static BOOL state_ready(FakeKernelRun *run, fake_kernel_kind producer)
{
    if ([run->_state producer] != producer)
        fake_raise("%s: the gradient state was made by %s", kernels[run->_snapshot.kind].name,
                   kernels[[run->_state producer]].name);
    if ([run->_state filled])
        return YES;
    fake_count(FAKE_COUNT_unfilled_states, 1);
    mpsnorm_tensor garbage = image_tensor(run->_destination, nil);
    memset(garbage.data, 0xff, (size_t)(garbage.shape[1] * garbage.strides[1]) *
                                   mpsnorm_dtype_size(garbage.dtype));
    [run->_destination fakeGPUWrite:garbage.data];
    free(garbage.data);
    return NO;
}

/* A view of a 1 x C x H x W tensor turned by 180 degrees in H and W: computing
 * on it places an even window one pixel down and right instead of up and left. */
static mpsnorm_tensor turned(mpsnorm_tensor t)
{
    const size_t item = mpsnorm_dtype_size(t.dtype);
    t.data = (char *)t.data + (size_t)((t.shape[2] - 1) * t.strides[2] +
                                       (t.shape[3] - 1) * t.strides[3]) * item;
    t.strides[2] = -t.strides[2];
    t.strides[3] = -t.strides[3];
    return t;
}

/* The fake's LCN mistakes, when a test asks for them: its answer as a view. */
static mpsnorm_tensor lcn_view(const FakeKernelRun *run, mpsnorm_tensor t)
{
    if (fake_setting_value(FAKE_lcn_even_mirrored) && run->_snapshot.lcn.kernel_width % 2 == 0)
        return turned(t);
    return t;
}

static void lcn_forward(FakeKernelRun *run)
{
    mpsnorm_tensor x = image_tensor(run->_primary, run->_primary);
    mpsnorm_tensor y = image_tensor(run->_primary, nil);
    mpsnorm_tensor x_view = lcn_view(run, x), y_view = lcn_view(run, y);
    int status = mpsnorm_lcn_forward(NULL, &run->_snapshot.lcn, &x_view, &y_view, NULL);
    if (status == MPSNORM_OK) {
        [run->_destination fakeGPUWrite:y.data];
        [run->_state fillWithSnapshot:&run->_snapshot];
    }
    free(x.data);
    free(y.data);
    check_status(run, status);
}

static void lcn_gradient(FakeKernelRun *run)
{
    if (!state_ready(run, FAKE_LCN_FORWARD))
        return;
    mpsnorm_tensor dy = image_tensor(run->_primary, run->_primary);
    mpsnorm_tensor x = image_tensor(run->_primary, run->_secondary);
    mpsnorm_tensor dx = image_tensor(run->_primary, nil);
    mpsnorm_tensor dy_view = lcn_view(run, dy), x_view = lcn_view(run, x);
    mpsnorm_tensor dx_view = lcn_view(run, dx);
    mpsnorm_lcn_params params = run->_snapshot.lcn;
    if (fake_setting_value(FAKE_lcn_gradient_without_alpha))
        params.alpha = 0.0f;
    int status = mpsnorm_lcn_gradient(NULL, &params, &dy_view, &x_view, &dx_view, NULL);
    if (status == MPSNORM_OK)
        [run->_destination fakeGPUWrite:dx.data];
    free(dy.data);
    free(x.data);
    free(dx.data);
    check_status(run, status);
}

static void inorm_forward(FakeKernelRun *run)
{
    const fake_snapshot *snapshot = &run->_snapshot;
    mpsnorm_inorm_params params = {(int64_t)snapshot->channels, snapshot->gamma, snapshot->beta,
                                   snapshot->epsilon};
    mpsnorm_tensor x = image_tensor(run->_primary, run->_primary);
    mpsnorm_tensor y = image_tensor(run->_primary, nil);
    int status = mpsnorm_inorm_forward(NULL, &params, &x, &y, NULL);
    if (status == MPSNORM_OK) {
        [run->_destination fakeGPUWrite:y.data];
        [run->_state fillWithSnapshot:snapshot];
    }
    free(x.data);
    free(y.data);
    check_status(run, status);
}

/* Writes C float32 values into a gradient buffer's GPU copy, as many as fit. */
static void store_channel_values(id<MTLBuffer> buffer, const float *values, NSUInteger channels)
{
    if (buffer == nil)
        return;
    size_t bytes = channels * sizeof(float);
    memcpy(fake_buffer_gpu_contents(buffer), values, bytes < [buffer length] ? bytes : [buffer length]);
}

static void inorm_gradient(FakeKernelRun *run)
{
    if (!state_ready(run, FAKE_INORM_FORWARD))
        return;
    MPSCNNInstanceNormalizationGradientState *state =
        (MPSCNNInstanceNormalizationGradientState *)run->_state;
    NSUInteger channels = [run->_primary fakeChannels];
    mpsnorm_inorm_params params = {(int64_t)channels, [state gamma], NULL, [state epsilon]};
    mpsnorm_tensor dy = image_tensor(run->_primary, run->_primary);
    mpsnorm_tensor x = image_tensor(run->_primary, run->_secondary);
    mpsnorm_tensor dx = image_tensor(run->_primary, nil);
    float *dgamma = copy_floats(NULL, 0, channels), *dbeta = copy_floats(NULL, 0, channels);
    mpsnorm_vector dgamma_vector = {dgamma, MPSNORM_FLOAT32, (int64_t)channels, 1};
    mpsnorm_vector dbeta_vector = {dbeta, MPSNORM_FLOAT32, (int64_t)channels, 1};
    int status = mpsnorm_inorm_gradient(NULL, &params, &dy, &x, &dx, &dgamma_vector,
                                        &dbeta_vector, NULL);
    if (status == MPSNORM_OK) {
        [run->_destination fakeGPUWrite:dx.data];
        store_channel_values([state gradientForGamma], dgamma, channels);
        store_channel_values([state gradientForBeta], dbeta, channels);
    }
    free(dy.data);
    free(x.data);
    free(dx.data);
    free(dgamma);
    free(dbeta);
    check_status(run, status);
}

/* ---- encoding ------------------------------------------------------------- */

static void check_same_image_shape(MPSImage *a, MPSImage *b, const char *kernel)
{
    if ([a fakeWidth] != [b fakeWidth] || [a fakeHeight] != [b fakeHeight] ||
        [a fakeChannels] != [b fakeChannels] || [a fakeFormat] != [b fakeFormat])
        fake_raise("%s: images of different sizes or formats in one encode (%lux%lux%lu vs "
                   "%lux%lux%lu)",
                   kernel, (unsigned long)[a fakeChannels], (unsigned long)[a fakeHeight],
                   (unsigned long)[a fakeWidth], (unsigned long)[b fakeChannels],
                   (unsigned long)[b fakeHeight], (unsigned long)[b fakeWidth]);
}

static void check_count(NSArray *array, NSUInteger count, const char *what, const char *kernel)
{
    if (array != nil && [array count] != count)
        fake_raise("%s: %lu %s for %lu images", kernel, (unsigned long)[array count], what,
                   (unsigned long)count);
}

/* Encodes one run per image of a batch; `snapshot` is copied into each. */
static void encode_batch(id<MTLCommandBuffer> command_buffer, const fake_snapshot *snapshot,
                         NSArray<MPSImage *> *primaries, NSArray<MPSImage *> *_Nullable secondaries,
                         NSArray<MPSState *> *_Nullable states, NSArray<MPSImage *> *destinations)
{
    const char *name = kernels[snapshot->kind].name;
    if (fake_setting_value(FAKE_encode_throws))
        fake_raise("%s: encode failed (fake fault encode_throws)", name);
    NSUInteger count = [primaries count];
    check_count(secondaries, count, "source images", name);
    check_count(states, count, "states", name);
    check_count(destinations, count, "destination images", name);
    if (kernels[snapshot->kind].gradient && (secondaries == nil || states == nil))
        fake_raise("%s: a gradient encode needs source images and gradient states", name);
    for (NSUInteger i = 0; i < count; i++) {
        FakeKernelRun *run = [[FakeKernelRun alloc] init];
        run->_snapshot = *snapshot;
        run->_snapshot.gamma = snapshot->gamma ? copy_floats(snapshot->gamma, 0, snapshot->channels)
                                               : NULL;
        run->_snapshot.beta = snapshot->beta ? copy_floats(snapshot->beta, 0, snapshot->channels)
                                             : NULL;
        run->_primary = [primaries objectAtIndex:i];
        run->_secondary = secondaries != nil ? [secondaries objectAtIndex:i] : nil;
        run->_destination = [destinations objectAtIndex:i];
        run->_state = states != nil ? (MPSNNGradientState *)[states objectAtIndex:i] : nil;
        check_same_image_shape(run->_primary, run->_destination, name);
        if (run->_secondary != nil)
            check_same_image_shape(run->_primary, run->_secondary, name);
        [run->_primary fakeUseOn:command_buffer read:YES];
        if (run->_secondary != nil)
            [run->_secondary fakeUseOn:command_buffer read:YES];
        [run->_destination fakeUseOn:command_buffer read:NO];
        fake_count(FAKE_COUNT_encodes, 1);
        fake_encode(command_buffer, run);
    }
}

@interface MPSCNNKernel ()
/* What an encode copies from this kernel (each kernel class fills it). */
- (void)takeSnapshot:(fake_snapshot *)snapshot;
@end

@implementation MPSCNNKernel

- (void)takeSnapshot:(fake_snapshot *)snapshot
{
    (void)snapshot;
    fake_raise("MPSCNNKernel is abstract");
}

- (void)encodeBatchToCommandBuffer:(id<MTLCommandBuffer>)commandBuffer
                      sourceImages:(MPSImageBatch *)sourceImages
                 destinationImages:(MPSImageBatch *)destinationImages
{
    [self encodeBatchToCommandBuffer:commandBuffer
                        sourceImages:sourceImages
                   destinationStates:nil
                   destinationImages:destinationImages];
}

- (void)encodeBatchToCommandBuffer:(id<MTLCommandBuffer>)commandBuffer
                      sourceImages:(MPSImageBatch *)sourceImages
                 destinationStates:(MPSStateBatch *)destinationStates
                 destinationImages:(MPSImageBatch *)destinationImages
{
    fake_snapshot snapshot;
    memset(&snapshot, 0, sizeof snapshot);
    [self takeSnapshot:&snapshot];
    encode_batch(commandBuffer, &snapshot, sourceImages, nil, destinationStates,
                 destinationImages);
}

/* MPSCNNKernel.h's base answer, as reported for current systems: a gradient
 * state holding this kernel's properties. */
- (MPSState *)resultStateForSourceImage:(MPSImage *)sourceImage
                           sourceStates:(NSArray<MPSState *> *)sourceStates
                       destinationImage:(MPSImage *)destinationImage
{
    (void)sourceImage, (void)sourceStates, (void)destinationImage;
    if (fake_setting_value(FAKE_result_state_nil))
        return nil;
    fake_snapshot snapshot;
    memset(&snapshot, 0, sizeof snapshot);
    [self takeSnapshot:&snapshot];
    MPSNNGradientState *state = [[MPSNNGradientState alloc] initWithProducer:snapshot.kind];
    if (snapshot.kind == FAKE_LCN_FORWARD && fake_setting_value(FAKE_lcn_state_holds_properties))
        [state fillWithSnapshot:&snapshot]; /* what disassembly of recent MPS reports */
    return state;
}

- (BOOL)isResultStateReusedAcrossBatch
{
    return fake_setting_value(FAKE_result_state_shared) != 0;
}

- (BOOL)respondsToSelector:(SEL)aSelector
{
    SEL with_states =
        @selector(encodeBatchToCommandBuffer:sourceImages:destinationStates:destinationImages:);
    if (fake_setting_value(FAKE_no_batch_states_encode) && sel_isEqual(aSelector, with_states))
        return NO; /* an MPS before the .5 support update of 10.13.4 */
    return [super respondsToSelector:aSelector];
}

@end

@implementation MPSCNNBinaryKernel
@end

@interface MPSCNNGradientKernel ()
- (void)takeSnapshot:(fake_snapshot *)snapshot;
@end

@implementation MPSCNNGradientKernel

- (instancetype)initWithDevice:(id<MTLDevice>)device
{
    self = [super init];
    if (device == nil)
        fake_raise("-[MPSCNNGradientKernel initWithDevice:]: nil device");
    return self;
}

- (void)takeSnapshot:(fake_snapshot *)snapshot
{
    (void)snapshot;
    fake_raise("MPSCNNGradientKernel is abstract");
}

- (void)encodeBatchToCommandBuffer:(id<MTLCommandBuffer>)commandBuffer
                   sourceGradients:(MPSImageBatch *)sourceGradients
                      sourceImages:(MPSImageBatch *)sourceImages
                    gradientStates:(MPSStateBatch *)gradientStates
              destinationGradients:(MPSImageBatch *)destinationGradients
{
    fake_snapshot snapshot;
    memset(&snapshot, 0, sizeof snapshot);
    [self takeSnapshot:&snapshot];
    encode_batch(commandBuffer, &snapshot, sourceGradients, sourceImages, gradientStates,
                 destinationGradients);
}

@end

/* ---- local contrast normalization ----------------------------------------- */

static mpsnorm_lcn_params lcn_defaults(NSUInteger kernelWidth, NSUInteger kernelHeight)
{
    if (kernelWidth != kernelHeight) /* MPSCNNNormalization.h: "must be equal" */
        fake_raise("LCN kernel %lu x %lu: kernelWidth must be equal to kernelHeight",
                   (unsigned long)kernelWidth, (unsigned long)kernelHeight);
    mpsnorm_lcn_params params;
    mpsnorm_lcn_params_init(&params, (int64_t)kernelWidth, (int64_t)kernelHeight);
    return params;
}

/* The six float properties every LCN kernel has, in a params struct. */
#define FAKE_LCN_PROPERTIES                                                                    \
    -(float)alpha { return _params.alpha; }                                                   \
    -(void)setAlpha : (float)value { _params.alpha = value; }                                 \
    -(float)beta { return _params.beta; }                                                     \
    -(void)setBeta : (float)value { _params.beta = value; }                                   \
    -(float)delta { return _params.delta; }                                                   \
    -(void)setDelta : (float)value { _params.delta = value; }                                 \
    -(float)p0 { return _params.p0; }                                                         \
    -(void)setP0 : (float)value { _params.p0 = value; }                                       \
    -(float)pm { return _params.pm; }                                                         \
    -(void)setPm : (float)value { _params.pm = value; }                                       \
    -(float)ps { return _params.ps; }                                                         \
    -(void)setPs : (float)value { _params.ps = value; }

@implementation MPSCNNLocalContrastNormalization {
    mpsnorm_lcn_params _params;
}

- (instancetype)initWithDevice:(id<MTLDevice>)device
                   kernelWidth:(NSUInteger)kernelWidth
                  kernelHeight:(NSUInteger)kernelHeight
{
    self = [super init];
    if (fake_setting_value(FAKE_lcn_forward_init_nil))
        return nil;
    if (device == nil)
        fake_raise("-[MPSCNNLocalContrastNormalization initWithDevice:...]: nil device");
    _params = lcn_defaults(kernelWidth, kernelHeight);
    fake_count(FAKE_COUNT_kernels, 1);
    return self;
}

FAKE_LCN_PROPERTIES

- (void)takeSnapshot:(fake_snapshot *)snapshot
{
    snapshot->kind = FAKE_LCN_FORWARD;
    snapshot->lcn = _params;
}

@end

@implementation MPSCNNLocalContrastNormalizationGradient {
    mpsnorm_lcn_params _params;
}

- (instancetype)initWithDevice:(id<MTLDevice>)device
                   kernelWidth:(NSUInteger)kernelWidth
                  kernelHeight:(NSUInteger)kernelHeight
{
    self = [super initWithDevice:device];
    if (fake_setting_value(FAKE_lcn_gradient_init_nil))
        return nil;
    _params = lcn_defaults(kernelWidth, kernelHeight);
    fake_count(FAKE_COUNT_kernels, 1);
    return self;
}

FAKE_LCN_PROPERTIES

- (void)takeSnapshot:(fake_snapshot *)snapshot
{
    snapshot->kind = FAKE_LCN_GRADIENT;
    snapshot->lcn = _params;
}

@end

#undef FAKE_LCN_PROPERTIES

/* ---- instance normalization ----------------------------------------------- */

@implementation MPSCNNInstanceNormalization {
    NSUInteger _channels;
    float *_gamma, *_beta; /* copied from the data source at init */
}

- (instancetype)initWithDevice:(id<MTLDevice>)device
                    dataSource:(id<MPSCNNInstanceNormalizationDataSource>)dataSource
{
    self = [super init];
    if (fake_setting_value(FAKE_inorm_forward_init_nil))
        return nil;
    if (device == nil || dataSource == nil)
        fake_raise("-[MPSCNNInstanceNormalization initWithDevice:dataSource:]: nil argument");
    /* The kernel keeps its own copy of the data source (NSCopying, which the
     * protocol requires), and reads gamma and beta from it once. */
    id<MPSCNNInstanceNormalizationDataSource> copy = [dataSource copyWithZone:NULL];
    if (copy == nil)
        fake_raise("MPSCNNInstanceNormalization: the data source's copyWithZone: returned nil");
    _channels = [copy numberOfFeatureChannels];
    if (_channels == 0 || _channels != [dataSource numberOfFeatureChannels])
        fake_raise("MPSCNNInstanceNormalization: the data source's copy has %lu channels",
                   (unsigned long)_channels);
    _gamma = copy_floats([copy gamma], 1.0f, _channels);
    _beta = copy_floats([copy beta], 0.0f, _channels);
    (void)[copy label];
    _epsilon = class_respondsToSelector(object_getClass(copy), @selector(epsilon)) ? [copy epsilon]
                                                                                  : FLT_MIN;
    fake_count(FAKE_COUNT_kernels, 1);
    return self;
}

- (void)dealloc
{
    free(_gamma);
    free(_beta);
}

- (void)takeSnapshot:(fake_snapshot *)snapshot
{
    snapshot->kind = FAKE_INORM_FORWARD;
    snapshot->channels = _channels;
    snapshot->gamma = _gamma; /* copied by the encode */
    snapshot->beta = _beta;
    snapshot->epsilon = _epsilon;
}

- (MPSCNNInstanceNormalizationGradientState *)resultStateForSourceImage:(MPSImage *)sourceImage
                                                            sourceStates:(NSArray<MPSState *> *)sourceStates
                                                        destinationImage:(MPSImage *)destinationImage
{
    (void)sourceStates;
    if (fake_setting_value(FAKE_result_state_nil))
        return nil;
    check_same_image_shape(sourceImage, destinationImage, "MPSCNNInstanceNormalization");
    if ([sourceImage fakeChannels] != _channels)
        fake_raise("MPSCNNInstanceNormalization: an image of %lu channels for a kernel of %lu",
                   (unsigned long)[sourceImage fakeChannels], (unsigned long)_channels);
    return [[MPSCNNInstanceNormalizationGradientState alloc] initWithChannels:_channels];
}

@end

@implementation MPSCNNInstanceNormalizationGradient

- (instancetype)initWithDevice:(id<MTLDevice>)device
{
    self = [super initWithDevice:device];
    if (fake_setting_value(FAKE_inorm_gradient_init_nil))
        return nil;
    fake_count(FAKE_COUNT_kernels, 1);
    return self;
}

- (void)takeSnapshot:(fake_snapshot *)snapshot
{
    snapshot->kind = FAKE_INORM_GRADIENT; /* everything else comes from the states */
}

@end
