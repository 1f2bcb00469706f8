/*
 * metal_context.m -- the process-wide Metal context (device + command queue),
 * device availability, the per-engine cache, and the helpers shared by the
 * kernel files (see metal_context.h).
 *
 * The context is created on the first call of mpsnorm_metal_device_available
 * (engine creation or mpsnorm.backends()), never when the library loads:
 * dispatch_once_f runs create_context exactly once per process, and every
 * later reader sees its result.
 */
#include "metal_imports.h"

#include "metal_context.h"

static dispatch_once_t context_once;
static id<MTLDevice> context_device;      /* nil: no device MPS supports */
static id<MTLCommandQueue> context_queue; /* nil: no device, or no queue */

static void create_context(void *unused)
{
    (void)unused;
    @autoreleasepool {
        @try {
            if (@available(macOS 10.13.4, *)) {
                id<MTLDevice> device = MTLCreateSystemDefaultDevice();
                if (device == nil || !MPSSupportsMTLDevice(device))
                    return;
                id<MTLCommandQueue> queue = [device newCommandQueue];
                if (queue == nil)
                    return;
                context_device = device;
                context_queue = queue;
            }
        } @catch (id ignored) {
            /* No usable device: the backend reports itself unavailable. */
            context_device = nil;
            context_queue = nil;
        }
    }
}

static void ensure_context(void)
{
    dispatch_once_f(&context_once, NULL, create_context);
}

id<MTLDevice> mpsnorm_objc_device(void)
{
    ensure_context();
    return context_device;
}

id<MTLCommandQueue> mpsnorm_objc_queue(void)
{
    ensure_context();
    return context_queue;
}

int mpsnorm_metal_device_available(void)
{
    ensure_context();
    return context_device != nil && context_queue != nil;
}

/* ---- per-engine cache ---------------------------------------------------- */

int mpsnorm_metal_cache_create(mpsnorm_metal_cache **cache)
{
    if (cache == NULL)
        return MPSNORM_ERR_NULL_POINTER;
    *cache = NULL;
    if (!mpsnorm_metal_device_available())
        return MPSNORM_ERR_BACKEND_UNAVAILABLE;
    mpsnorm_metal_cache *created = calloc(1, sizeof *created); /* every kernel field nil */
    if (created == NULL)
        return MPSNORM_ERR_OUT_OF_MEMORY;
    if (pthread_mutex_init(&created->lock, NULL) != 0) {
        free(created);
        return MPSNORM_ERR_OUT_OF_MEMORY;
    }
    *cache = created;
    return MPSNORM_OK;
}

void mpsnorm_metal_cache_free(mpsnorm_metal_cache *cache)
{
    if (cache == NULL)
        return;
    @autoreleasepool {
        /* ARC releases what the __strong fields hold; free() would not. */
        cache->lcn_forward = nil;
        cache->lcn_gradient = nil;
        cache->inorm_forward = nil;
        cache->inorm_source = nil;
        cache->inorm_gradient = nil;
    }
    pthread_mutex_destroy(&cache->lock);
    free(cache);
}

void mpsnorm_objc_lock(mpsnorm_metal_cache *cache)
{
    pthread_mutex_lock(&cache->lock);
}

void mpsnorm_objc_unlock(mpsnorm_metal_cache *cache)
{
    pthread_mutex_unlock(&cache->lock);
}

/* ---- failures ------------------------------------------------------------ */

int mpsnorm_objc_fail(char *message, size_t size, const char *format, ...)
{
    if (message != NULL && size > 0) {
        va_list args;
        va_start(args, format);
        vsnprintf(message, size, format, args);
        va_end(args);
    }
    return MPSNORM_ERR_BACKEND_FAILURE;
}

int mpsnorm_objc_unsupported(char *message, size_t size, const char *format, ...)
{
    if (message != NULL && size > 0) {
        va_list args;
        va_start(args, format);
        vsnprintf(message, size, format, args);
        va_end(args);
    }
    return MPSNORM_ERR_UNSUPPORTED;
}

int mpsnorm_objc_fail_old_macos(const char *where, char *message, size_t size)
{
    return mpsnorm_objc_fail(message, size,
                             "%s: the Metal backend needs macOS 10.13.4 or newer "
                             "(MPS gradient and instance normalization kernels)",
                             where);
}

/* UTF-8 text of an NSString, or `fallback` when there is none. */
static const char *text_of(NSString *_Nullable string, const char *fallback)
{
    const char *text = string != nil ? [string UTF8String] : NULL;
    return text != NULL ? text : fallback;
}

int mpsnorm_objc_guard(const char *where, mpsnorm_objc_body body, void *context, char *message,
                       size_t size)
{
    @autoreleasepool {
        @try {
            return body(context, message, size);
        } @catch (NSException *exception) {
            return mpsnorm_objc_fail(message, size, "%s: Metal raised an exception: %s", where,
                                     text_of([exception reason], "no reason given"));
        } @catch (id other) {
            return mpsnorm_objc_fail(message, size,
                                     "%s: Metal raised an Objective-C exception that is not an "
                                     "NSException",
                                     where);
        }
    }
}

/* ---- images -------------------------------------------------------------- */

static MPSDataLayout data_layout(const mpsnorm_metal_batch *batch)
{
    return batch->nhwc ? MPSDataLayoutHeightxWidthxFeatureChannels
                       : MPSDataLayoutFeatureChannelsxHeightxWidth;
}

/* Bytes from image n to image n + 1 in a staged batch (backend.h: image n
 * starts at element n*C*H*W). */
static size_t image_bytes(const mpsnorm_metal_batch *batch)
{
    return (size_t)batch->c * (size_t)batch->h * (size_t)batch->w *
           mpsnorm_dtype_size(batch->dtype);
}

NSMutableArray<MPSImage *> *mpsnorm_objc_images(id<MTLDevice> device,
                                                const mpsnorm_metal_batch *batch,
                                                const void *data, const char *what,
                                                char *message, size_t size)
{
    MPSImageFeatureChannelFormat format = batch->dtype == MPSNORM_FLOAT16
                                              ? MPSImageFeatureChannelFormatFloat16
                                              : MPSImageFeatureChannelFormatFloat32;
    MPSImageDescriptor *descriptor =
        [MPSImageDescriptor imageDescriptorWithChannelFormat:format
                                                       width:(NSUInteger)batch->w
                                                      height:(NSUInteger)batch->h
                                             featureChannels:(NSUInteger)batch->c];
    NSMutableArray<MPSImage *> *images = [NSMutableArray arrayWithCapacity:(NSUInteger)batch->n];
    if (descriptor == nil || images == nil) {
        mpsnorm_objc_fail(message, size, "%s: could not describe the MPS images", what);
        return nil;
    }
    const char *source = data;
    size_t stride = image_bytes(batch);
    for (int64_t n = 0; n < batch->n; n++) {
        MPSImage *image = [[MPSImage alloc] initWithDevice:device imageDescriptor:descriptor];
        if (image == nil) {
            mpsnorm_objc_fail(message, size, "%s: could not create MPSImage %lld of %lld", what,
                              (long long)n, (long long)batch->n);
            return nil;
        }
        if (source != NULL)
            [image writeBytes:source + (size_t)n * stride dataLayout:data_layout(batch) imageIndex:0];
        [images addObject:image];
    }
    return images;
}

void mpsnorm_objc_synchronize(NSArray<MPSImage *> *images, id<MTLCommandBuffer> command_buffer)
{
    NSUInteger count = [images count];
    for (NSUInteger i = 0; i < count; i++)
        [[images objectAtIndex:i] synchronizeOnCommandBuffer:command_buffer];
}

void mpsnorm_objc_download(NSArray<MPSImage *> *images, const mpsnorm_metal_batch *batch,
                           void *data)
{
    char *destination = data;
    size_t stride = image_bytes(batch);
    NSUInteger count = [images count];
    for (NSUInteger i = 0; i < count; i++)
        [[images objectAtIndex:i] readBytes:destination + (size_t)i * stride
                                 dataLayout:data_layout(batch)
                                 imageIndex:0];
}

/* ---- command buffers ----------------------------------------------------- */

id<MTLCommandBuffer> mpsnorm_objc_command_buffer(const char *what, char *message, size_t size)
{
    id<MTLCommandQueue> queue = mpsnorm_objc_queue();
    id<MTLCommandBuffer> command_buffer = queue != nil ? [queue commandBuffer] : nil;
    if (command_buffer == nil)
        mpsnorm_objc_fail(message, size, "%s: could not create a Metal command buffer", what);
    return command_buffer;
}

int mpsnorm_objc_commit_and_wait(id<MTLCommandBuffer> command_buffer, const char *what,
                                 char *message, size_t size)
{
    [command_buffer commit];
    [command_buffer waitUntilCompleted];
    MTLCommandBufferStatus status = [command_buffer status];
    if (status == MTLCommandBufferStatusCompleted)
        return MPSNORM_OK;
    NSError *error = [command_buffer error];
    return mpsnorm_objc_fail(message, size,
                             "%s: the Metal command buffer did not complete (status %lu): %s",
                             what, (unsigned long)status,
                             text_of(error != nil ? [error localizedDescription] : nil,
                                     "Metal reported no error"));
}
