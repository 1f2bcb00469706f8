/*
 * fake_metal.m -- the Metal of mps_declarations.h for the tests: one device
 * with its limits, command queues, command buffers that a fake GPU thread
 * runs after commit, blit encoders (synchronizations, and copies between
 * buffers and texture slices, checked as Metal's validation checks them) and
 * buffers with Metal's storage modes.
 *
 * As MTLCommandBuffer.h says: nothing encoded runs before commit; the GPU (one
 * thread here, running committed buffers in order) completes a buffer later;
 * waitUntilCompleted blocks until then; status and error say how it ended.
 * Managed resources (MTLResource.h) have a CPU and a GPU copy: what the GPU
 * writes reaches the CPU's copy only through a synchronization encoded before
 * commit. Misuse that Metal's validation would stop (encoding into a
 * committed buffer, committing twice, committing or encoding with a blit
 * encoder still open, waiting on an uncommitted buffer) raises NSException.
 */
#include "fake.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- buffers -------------------------------------------------------------- */

@interface FakeMTLBuffer : NSObject <MTLBuffer, FakeManaged>
- (instancetype)initWithLength:(NSUInteger)length mode:(MTLStorageMode)mode;
- (void *)gpuContents;
@end

/* New memory as the GPU leaves it: here NaN in float32 and float16. */
static void *poisoned(NSUInteger length)
{
    void *bytes = malloc(length > 0 ? length : 1);
    if (bytes == NULL)
        abort();
    memset(bytes, 0xff, length);
    return bytes;
}

@implementation FakeMTLBuffer {
    NSUInteger _length;
    MTLStorageMode _mode;
    void *_cpu; /* shared: the one copy; managed: the CPU's; private: NULL */
    void *_gpu; /* managed and private: the GPU's */
}

- (instancetype)initWithLength:(NSUInteger)length mode:(MTLStorageMode)mode
{
    self = [super init];
    _length = length;
    _mode = mode;
    if (mode != MTLStorageModePrivate)
        _cpu = poisoned(length);
    if (mode != MTLStorageModeShared)
        _gpu = poisoned(length);
    return self;
}

- (void)dealloc
{
    free(_cpu);
    free(_gpu);
}

- (NSUInteger)length
{
    return _length;
}

- (MTLStorageMode)storageMode
{
    return _mode;
}

- (void *)contents
{
    return _cpu; /* MTLBuffer.h: NULL for private storage */
}

- (void *)gpuContents
{
    return _mode == MTLStorageModeShared ? _cpu : _gpu;
}

- (void)fakeGPUSynchronize
{
    if (_mode == MTLStorageModeManaged)
        memcpy(_cpu, _gpu, _length);
}

@end

id<MTLBuffer> fake_buffer(NSUInteger length, MTLStorageMode mode)
{
    return [[FakeMTLBuffer alloc] initWithLength:length mode:mode];
}

void *fake_buffer_gpu_contents(id<MTLBuffer> buffer)
{
    return [(FakeMTLBuffer *)buffer gpuContents];
}

/* ---- command buffers ------------------------------------------------------ */

@class FakeMTLBlitCommandEncoder;

@interface FakeMTLCommandBuffer : NSObject <MTLCommandBuffer>
- (void)addCommand:(id<FakeGPUCommand>)command;
- (void)encoderEnded;
- (void)runOnGPU;
@end

/* The fake GPU: one thread running committed command buffers in commit order. */
typedef struct gpu_job {
    void *buffer; /* a retained FakeMTLCommandBuffer */
    struct gpu_job *next;
} gpu_job;

static pthread_mutex_t gpu_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gpu_work = PTHREAD_COND_INITIALIZER;
static pthread_cond_t gpu_idle = PTHREAD_COND_INITIALIZER;
static gpu_job *gpu_first, *gpu_last;
static int gpu_started;
static int gpu_busy; /* the GPU thread holds a buffer */

static void *gpu_thread(void *unused)
{
    (void)unused;
    for (;;) {
        pthread_mutex_lock(&gpu_lock);
        while (gpu_first == NULL)
            pthread_cond_wait(&gpu_work, &gpu_lock);
        gpu_job *job = gpu_first;
        gpu_first = job->next;
        if (gpu_first == NULL)
            gpu_last = NULL;
        gpu_busy = 1;
        pthread_mutex_unlock(&gpu_lock);
        @autoreleasepool {
            FakeMTLCommandBuffer *buffer = (__bridge_transfer FakeMTLCommandBuffer *)job->buffer;
            free(job);
            [buffer runOnGPU];
        }
        pthread_mutex_lock(&gpu_lock);
        gpu_busy = 0;
        if (gpu_first == NULL)
            pthread_cond_broadcast(&gpu_idle);
        pthread_mutex_unlock(&gpu_lock);
    }
    return NULL;
}

static void gpu_submit(FakeMTLCommandBuffer *buffer)
{
    gpu_job *job = malloc(sizeof *job);
    if (job == NULL)
        abort();
    job->buffer = (__bridge_retained void *)buffer;
    job->next = NULL;
    pthread_mutex_lock(&gpu_lock);
    if (!gpu_started) {
        pthread_t thread;
        if (pthread_create(&thread, NULL, gpu_thread, NULL) != 0)
            abort();
        pthread_detach(thread);
        gpu_started = 1;
    }
    if (gpu_last != NULL)
        gpu_last->next = job;
    else
        gpu_first = job;
    gpu_last = job;
    pthread_cond_signal(&gpu_work);
    pthread_mutex_unlock(&gpu_lock);
}

/* Returns once the fake GPU has run and released every committed buffer (a
 * buffer holds its commands and their images until then), so that tests can
 * count the objects left alive. */
__attribute__((visibility("default"))) void mpsnorm_fake_metal_wait_idle(void)
{
    pthread_mutex_lock(&gpu_lock);
    while (gpu_busy || gpu_first != NULL)
        pthread_cond_wait(&gpu_idle, &gpu_lock);
    pthread_mutex_unlock(&gpu_lock);
}

@interface FakeMTLBlitCommandEncoder : NSObject <MTLBlitCommandEncoder>
- (instancetype)initWithCommandBuffer:(FakeMTLCommandBuffer *)buffer;
@end

/* A blit copy between a buffer's GPU contents and a texture slice, as the GPU runs it. */
@interface FakeBlitCopy : NSObject <FakeGPUCommand>
- (instancetype)initWithBuffer:(id<MTLBuffer>)buffer
                        offset:(NSUInteger)offset
                   bytesPerRow:(NSUInteger)bytesPerRow
                         image:(MPSImage *)image
                         slice:(NSUInteger)slice
                      toTexels:(BOOL)toTexels;
@end

@implementation FakeBlitCopy {
    id<MTLBuffer> _buffer;
    NSUInteger _offset, _bytesPerRow, _slice;
    MPSImage *_image;
    BOOL _toTexels;
}

- (instancetype)initWithBuffer:(id<MTLBuffer>)buffer
                        offset:(NSUInteger)offset
                   bytesPerRow:(NSUInteger)bytesPerRow
                         image:(MPSImage *)image
                         slice:(NSUInteger)slice
                      toTexels:(BOOL)toTexels
{
    self = [super init];
    _buffer = buffer;
    _offset = offset;
    _bytesPerRow = bytesPerRow;
    _image = image;
    _slice = slice;
    _toTexels = toTexels;
    return self;
}

- (void)runOnGPU
{
    unsigned char *rows = (unsigned char *)fake_buffer_gpu_contents(_buffer) + _offset;
    [_image fakeGPUCopySlice:_slice rows:rows bytesPerRow:_bytesPerRow toTexels:_toTexels];
}

@end

/* A synchronization of a managed resource, as the GPU runs it. */
@interface FakeSynchronization : NSObject <FakeGPUCommand>
- (instancetype)initWithResource:(id<FakeManaged>)resource;
@end

@implementation FakeSynchronization {
    id<FakeManaged> _resource;
}

- (instancetype)initWithResource:(id<FakeManaged>)resource
{
    self = [super init];
    _resource = resource;
    return self;
}

- (void)runOnGPU
{
    [_resource fakeGPUSynchronize];
}

@end

id<FakeGPUCommand> fake_synchronization(id<FakeManaged> resource)
{
    return [[FakeSynchronization alloc] initWithResource:resource];
}

/* Host time in seconds, as Metal reports GPUStartTime / GPUEndTime. */
static CFTimeInterval host_seconds(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (CFTimeInterval)now.tv_sec + 1e-9 * (CFTimeInterval)now.tv_nsec;
}

static void pause_ms(int64_t milliseconds)
{
    if (milliseconds <= 0)
        return;
    struct timespec pause = {(time_t)(milliseconds / 1000), (long)(milliseconds % 1000) * 1000000L};
    nanosleep(&pause, NULL);
}

@implementation FakeMTLCommandBuffer {
    pthread_mutex_t _lock;
    pthread_cond_t _done;
    MTLCommandBufferStatus _status;
    NSError *_error;
    NSMutableArray<id<FakeGPUCommand>> *_commands;
    BOOL _encoderOpen;
    int64_t _ordinal; /* commits since the last reset, this one included */
    CFTimeInterval _gpuStart, _gpuEnd; /* host seconds; 0 until the GPU starts / ends it */
}

- (instancetype)init
{
    self = [super init];
    pthread_mutex_init(&_lock, NULL);
    pthread_cond_init(&_done, NULL);
    _status = MTLCommandBufferStatusNotEnqueued;
    _commands = [NSMutableArray arrayWithCapacity:8];
    fake_count(FAKE_COUNT_command_buffers, 1);
    return self;
}

- (void)dealloc
{
    pthread_mutex_destroy(&_lock);
    pthread_cond_destroy(&_done);
}

/* Raises unless the buffer still takes commands (and no encoder is open, when
 * a new one or a kernel encode comes). */
- (void)checkEncodable:(const char *)what
{
    pthread_mutex_lock(&_lock);
    MTLCommandBufferStatus status = _status;
    BOOL open = _encoderOpen;
    pthread_mutex_unlock(&_lock);
    if (status != MTLCommandBufferStatusNotEnqueued)
        fake_raise("%s: the command buffer was already committed", what);
    if (open)
        fake_raise("%s: a blit command encoder of this buffer has not called endEncoding", what);
}

- (void)addCommand:(id<FakeGPUCommand>)command
{
    [self checkEncodable:"encode"];
    [_commands addObject:command];
}

- (void)addBlitCommand:(id<FakeGPUCommand>)command
{
    pthread_mutex_lock(&_lock);
    BOOL committed = _status != MTLCommandBufferStatusNotEnqueued;
    pthread_mutex_unlock(&_lock);
    if (committed)
        fake_raise("blit encode: the command buffer was already committed");
    [_commands addObject:command];
}

- (void)encoderEnded
{
    pthread_mutex_lock(&_lock);
    _encoderOpen = NO;
    pthread_mutex_unlock(&_lock);
}

- (id<MTLBlitCommandEncoder>)blitCommandEncoder
{
    [self checkEncodable:"blitCommandEncoder"];
    if (fake_setting_value(FAKE_no_blit_encoder))
        return nil;
    pthread_mutex_lock(&_lock);
    _encoderOpen = YES;
    pthread_mutex_unlock(&_lock);
    fake_count(FAKE_COUNT_blit_encoders, 1);
    return [[FakeMTLBlitCommandEncoder alloc] initWithCommandBuffer:self];
}

- (void)commit
{
    pthread_mutex_lock(&_lock);
    MTLCommandBufferStatus status = _status;
    BOOL open = _encoderOpen;
    if (status == MTLCommandBufferStatusNotEnqueued && !open)
        _status = MTLCommandBufferStatusCommitted;
    pthread_mutex_unlock(&_lock);
    if (status != MTLCommandBufferStatusNotEnqueued)
        fake_raise("commit: the command buffer was already committed");
    if (open)
        fake_raise("commit: a blit command encoder has not called endEncoding");
    fake_count(FAKE_COUNT_commits, 1);
    _ordinal = fake_counter_value(FAKE_COUNT_commits);
    gpu_submit(self);
}

/* On the GPU thread. */
- (void)runOnGPU
{
    NSError *error = nil;
    CFTimeInterval started = host_seconds();
    if (fake_setting_value(FAKE_command_buffer_error) ||
        (fake_setting_value(FAKE_command_buffer_error_at) > 0 &&
         fake_setting_value(FAKE_command_buffer_error_at) == _ordinal)) {
        error = fake_error(fake_string("Internal error during command buffer execution "
                                       "(fake GPU fault: command_buffer_error)"));
    } else {
        @try {
            NSUInteger count = [_commands count];
            for (NSUInteger i = 0; i < count; i++)
                [[_commands objectAtIndex:i] runOnGPU];
        } @catch (NSException *exception) {
            error = fake_error(fake_string("fake GPU: %s", [[exception reason] UTF8String]));
        }
    }
    pause_ms(fake_setting_value(FAKE_gpu_ms));
    for (int64_t held = 0; error == nil && fake_setting_value(FAKE_gpu_hold_ms) > 0; held++) {
        if (held >= fake_setting_value(FAKE_gpu_hold_ms))
            error = fake_error(fake_string("fake GPU: held for %lld ms and never released "
                                           "(gpu_hold_ms)", (long long)held));
        pause_ms(1);
    }
    _commands = nil; /* Metal releases what a buffer held once it completes */
    fake_count(FAKE_COUNT_gpu_buffers_run, 1);
    pthread_mutex_lock(&_lock);
    _gpuStart = started;
    _gpuEnd = host_seconds();
    _error = error;
    _status = error != nil ? MTLCommandBufferStatusError : MTLCommandBufferStatusCompleted;
    pthread_cond_broadcast(&_done);
    pthread_mutex_unlock(&_lock);
}

- (void)waitUntilCompleted
{
    fake_count(FAKE_COUNT_waits, 1);
    pthread_mutex_lock(&_lock);
    MTLCommandBufferStatus status = _status;
    pthread_mutex_unlock(&_lock);
    if (status == MTLCommandBufferStatusNotEnqueued)
        fake_raise("waitUntilCompleted: the command buffer was never committed");
    fake_count(FAKE_COUNT_waiting, 1);
    pthread_mutex_lock(&_lock);
    while (_status != MTLCommandBufferStatusCompleted && _status != MTLCommandBufferStatusError)
        pthread_cond_wait(&_done, &_lock);
    pthread_mutex_unlock(&_lock);
    fake_count(FAKE_COUNT_waiting, -1);
}

- (MTLCommandBufferStatus)status
{
    pthread_mutex_lock(&_lock);
    MTLCommandBufferStatus status = _status;
    pthread_mutex_unlock(&_lock);
    return status;
}

- (CFTimeInterval)GPUStartTime
{
    pthread_mutex_lock(&_lock);
    CFTimeInterval start = _gpuStart;
    pthread_mutex_unlock(&_lock);
    return start;
}

- (CFTimeInterval)GPUEndTime
{
    pthread_mutex_lock(&_lock);
    CFTimeInterval end = _gpuEnd;
    pthread_mutex_unlock(&_lock);
    return end;
}

- (NSError *)error
{
    pthread_mutex_lock(&_lock);
    NSError *error = _error;
    pthread_mutex_unlock(&_lock);
    return error;
}

@end

void fake_encode(id<MTLCommandBuffer> command_buffer, id<FakeGPUCommand> command)
{
    [(FakeMTLCommandBuffer *)command_buffer addCommand:command];
}

@implementation FakeMTLBlitCommandEncoder {
    FakeMTLCommandBuffer *_buffer; /* nil once ended */
}

- (instancetype)initWithCommandBuffer:(FakeMTLCommandBuffer *)buffer
{
    self = [super init];
    _buffer = buffer;
    return self;
}

/* A copy between a buffer and one texture slice, as the GPU runs it. */
- (void)copyBetween:(id<MTLBuffer>)buffer
             offset:(NSUInteger)offset
        bytesPerRow:(NSUInteger)bytesPerRow
      bytesPerImage:(NSUInteger)bytesPerImage
               size:(MTLSize)size
            texture:(id<MTLTexture>)texture
              slice:(NSUInteger)slice
              level:(NSUInteger)level
             origin:(MTLOrigin)origin
           toTexels:(BOOL)toTexels
{
    const char *what = toTexels ? "copyFromBuffer:...toTexture:" : "copyFromTexture:...toBuffer:";
    if (_buffer == nil)
        fake_raise("%s after endEncoding", what);
    MPSImage *image = fake_texture_image(texture);
    const NSUInteger pixel = [image pixelSize], row = size.width * pixel;
    if (level != 0 || origin.x != 0 || origin.y != 0 || origin.z != 0 || size.depth != 1 ||
        size.width != [image fakeWidth] || size.height != [image fakeHeight])
        fake_raise("%s: the fake copies whole slices only (level 0, origin 0, depth 1)", what);
    if (slice >= [image fakeSlices])
        fake_raise("%s: slice %lu of a texture of %lu", what, (unsigned long)slice,
                   (unsigned long)[image fakeSlices]);
    if (bytesPerRow < row || bytesPerRow % pixel != 0 || offset % pixel != 0)
        fake_raise("%s: bytesPerRow %lu or offset %lu for rows of %lu bytes of %lu-byte pixels",
                   what, (unsigned long)bytesPerRow, (unsigned long)offset, (unsigned long)row,
                   (unsigned long)pixel);
    /* 0 for a 2D texture; the bytes of a whole slice at least for an array */
    if ([image fakeSlices] == 1 ? bytesPerImage != 0 : bytesPerImage < bytesPerRow * size.height)
        fake_raise("%s: bytesPerImage %lu for a texture of %lu slice(s)", what,
                   (unsigned long)bytesPerImage, (unsigned long)[image fakeSlices]);
    if (offset + bytesPerRow * (size.height - 1) + row > [buffer length])
        fake_raise("%s: %lu bytes from offset %lu do not fit a buffer of %lu", what,
                   (unsigned long)(bytesPerRow * size.height), (unsigned long)offset,
                   (unsigned long)[buffer length]);
    fake_count(FAKE_COUNT_blit_copies, 1);
    fake_count(toTexels ? FAKE_COUNT_bytes_uploaded : FAKE_COUNT_bytes_downloaded,
               (int64_t)(row * size.height));
    [_buffer addBlitCommand:[[FakeBlitCopy alloc] initWithBuffer:buffer
                                                          offset:offset
                                                     bytesPerRow:bytesPerRow
                                                           image:image
                                                           slice:slice
                                                        toTexels:toTexels]];
}

- (void)copyFromBuffer:(id<MTLBuffer>)sourceBuffer
           sourceOffset:(NSUInteger)sourceOffset
      sourceBytesPerRow:(NSUInteger)sourceBytesPerRow
    sourceBytesPerImage:(NSUInteger)sourceBytesPerImage
             sourceSize:(MTLSize)sourceSize
              toTexture:(id<MTLTexture>)destinationTexture
       destinationSlice:(NSUInteger)destinationSlice
       destinationLevel:(NSUInteger)destinationLevel
      destinationOrigin:(MTLOrigin)destinationOrigin
{
    [self copyBetween:sourceBuffer
               offset:sourceOffset
          bytesPerRow:sourceBytesPerRow
        bytesPerImage:sourceBytesPerImage
                 size:sourceSize
              texture:destinationTexture
                slice:destinationSlice
                level:destinationLevel
               origin:destinationOrigin
             toTexels:YES];
}

- (void)copyFromTexture:(id<MTLTexture>)sourceTexture
                 sourceSlice:(NSUInteger)sourceSlice
                 sourceLevel:(NSUInteger)sourceLevel
                sourceOrigin:(MTLOrigin)sourceOrigin
                  sourceSize:(MTLSize)sourceSize
                    toBuffer:(id<MTLBuffer>)destinationBuffer
           destinationOffset:(NSUInteger)destinationOffset
      destinationBytesPerRow:(NSUInteger)destinationBytesPerRow
    destinationBytesPerImage:(NSUInteger)destinationBytesPerImage
{
    [self copyBetween:destinationBuffer
               offset:destinationOffset
          bytesPerRow:destinationBytesPerRow
        bytesPerImage:destinationBytesPerImage
                 size:sourceSize
              texture:sourceTexture
                slice:sourceSlice
                level:sourceLevel
               origin:sourceOrigin
             toTexels:NO];
}

- (void)synchronizeResource:(id<MTLResource>)resource
{
    if (_buffer == nil)
        fake_raise("synchronizeResource: after endEncoding");
    if ([resource storageMode] != MTLStorageModeManaged)
        fake_raise("synchronizeResource: the resource's storage mode is not managed");
    fake_count(FAKE_COUNT_buffer_synchronizations, 1);
    [_buffer addBlitCommand:fake_synchronization((FakeMTLBuffer *)resource)];
}

- (void)endEncoding
{
    if (_buffer == nil)
        fake_raise("endEncoding called twice");
    [_buffer encoderEnded];
    _buffer = nil;
}

@end

/* ---- queues and the device ------------------------------------------------ */

@interface FakeMTLCommandQueue : NSObject <MTLCommandQueue>
@end

@implementation FakeMTLCommandQueue

- (id<MTLCommandBuffer>)commandBuffer
{
    if (fake_setting_value(FAKE_no_command_buffer))
        return nil;
    return [[FakeMTLCommandBuffer alloc] init];
}

@end

@interface FakeMTLDevice : NSObject <MTLDevice>
@end

@implementation FakeMTLDevice

- (id<MTLCommandQueue>)newCommandQueue
{
    if (fake_setting_value(FAKE_no_command_queue))
        return nil;
    return [[FakeMTLCommandQueue alloc] init];
}

- (id<MTLBuffer>)newBufferWithLength:(NSUInteger)length options:(MTLResourceOptions)options
{
    if (options != MTLResourceStorageModeShared)
        fake_raise("newBufferWithLength:options: the fake makes shared buffers only (%lu)",
                   (unsigned long)options);
    if (fake_setting_value(FAKE_no_shared_buffer))
        return nil;
    if (length > [self maxBufferLength])
        fake_raise("newBufferWithLength: %lu bytes exceed maxBufferLength", (unsigned long)length);
    fake_count(FAKE_COUNT_buffers, 1);
    fake_count(FAKE_COUNT_buffer_bytes, (int64_t)length);
    return fake_buffer(length, MTLStorageModeShared);
}

- (NSUInteger)maxBufferLength
{
    return (NSUInteger)fake_setting_value(FAKE_max_buffer_length);
}

- (uint64_t)recommendedMaxWorkingSetSize
{
    return (uint64_t)fake_setting_value(FAKE_working_set);
}

@end

id<MTLDevice> MTLCreateSystemDefaultDevice(void)
{
    if (fake_setting_value(FAKE_no_device))
        return nil;
    if (fake_setting_value(FAKE_device_throws))
        fake_raise("MTLCreateSystemDefaultDevice: no device (fake fault device_throws)");
    fake_count(FAKE_COUNT_devices, 1);
    return [[FakeMTLDevice alloc] init];
}
