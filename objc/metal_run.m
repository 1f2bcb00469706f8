/*
 * metal_run.m -- the skeleton every Metal call runs through (see
 * mpsnorm_objc_job in metal_context.h): chunks of images that fit the device,
 * staging through shared buffers and blits, one command buffer a chunk, and
 * the destination written only once every chunk has completed.
 *
 * Data path of a chunk, each tensor copied once on the CPU and once on the GPU:
 *   caller's tensor --pack (CPU threads)--> shared buffer --blit--> private textures
 *   kernels (MPS)
 *   private textures --blit--> shared buffer --unpack (CPU threads)--> caller's tensor
 * Shared buffers need no synchronization (MTLResource.h: shared storage is
 * coherent once the command buffer completes) and private textures are never
 * read by the CPU, so a call makes no synchronization at all.
 */
#include "metal_imports.h"

#include "metal_context.h"

MPSImageDescriptor *mpsnorm_objc_descriptor(const mpsnorm_metal_batch *batch)
{
    const mpsnorm_tensor *t = batch->destination;
    MPSImageFeatureChannelFormat format = t->dtype == MPSNORM_FLOAT16
                                              ? MPSImageFeatureChannelFormatFloat16
                                              : MPSImageFeatureChannelFormatFloat32;
    return [MPSImageDescriptor imageDescriptorWithChannelFormat:format
                                                          width:(NSUInteger)t->shape[3]
                                                         height:(NSUInteger)t->shape[2]
                                                featureChannels:(NSUInteger)t->shape[1]];
}

int mpsnorm_objc_require_state_encode(const mpsnorm_objc_job *job, MPSCNNKernel *forward,
                                      char *message, size_t size)
{
    SEL encode_with_states =
        @selector(encodeBatchToCommandBuffer:sourceImages:destinationStates:destinationImages:);
    if ([forward respondsToSelector:encode_with_states])
        return MPSNORM_OK;
    return mpsnorm_objc_unsupported(message, size,
                                    "%s: this system's MPS lacks encodeBatchToCommandBuffer:"
                                    "sourceImages:destinationStates:destinationImages:",
                                    job->name);
}

void mpsnorm_objc_encode_gradient(id<MTLCommandBuffer> command_buffer, MPSCNNKernel *forward,
                                  MPSCNNGradientKernel *backward, NSArray<MPSImage *> *sources,
                                  NSArray<MPSImage *> *inputs, NSArray<MPSState *> *states,
                                  NSArray<MPSImage *> *results, NSArray<MPSImage *> *destinations)
{
    if (forward != nil && results != nil) {
        [forward encodeBatchToCommandBuffer:command_buffer
                               sourceImages:inputs
                          destinationStates:states
                          destinationImages:results];
        NSUInteger count = [results count];
        for (NSUInteger i = 0; i < count; i++) /* written, never read: back to MPS's heap */
            [(MPSTemporaryImage *)[results objectAtIndex:i] setReadCount:0];
    }
    [backward encodeBatchToCommandBuffer:command_buffer
                         sourceGradients:sources
                            sourceImages:inputs
                          gradientStates:states
                    destinationGradients:destinations];
}

/* Seconds on a monotonic clock, for the call's timing. */
static double seconds_now(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)now.tv_sec + 1e-9 * (double)now.tv_nsec;
}

/* What one call shares between its chunks. */
typedef struct run_state {
    const mpsnorm_objc_job *job;
    id<MTLDevice> device;
    id<MTLCommandQueue> queue;
    mpsnorm_texel_layout layout;
    int inputs; /* tensors going in: 1 (forward) or 2 (gradient) */
    int known_layout;
} run_state;

/* The texel layout of the images, from their pixel size (MPSImage.h: 4 channels a
 * texel, fewer for an image of 1 or 2 channels). UNSUPPORTED for another. */
static int learn_layout(run_state *run, MPSImage *image, char *message, size_t size)
    MPSNORM_OBJC_NEEDS_MACOS_10_13_4
{
    const mpsnorm_tensor *t = run->job->batch->destination;
    const size_t item = mpsnorm_dtype_size(t->dtype), pixel = [image pixelSize];
    if (pixel % item != 0 ||
        mpsnorm_texel_layout_of(t, (int64_t)(pixel / item), &run->layout) != MPSNORM_OK)
        return mpsnorm_objc_unsupported(
            message, size,
            "%s: MPS stores images of %lld channels in texels of %zu bytes, a layout mpsnorm "
            "does not know",
            run->job->name, (long long)t->shape[1], pixel);
    run->known_layout = 1;
    return MPSNORM_OK;
}

/* Images in a chunk: the chunk's textures and buffers take at most half the
 * working set, and each buffer at most the longest the device makes (counted
 * with 4 channels a texel, the most MPS uses). */
static int64_t chunk_images(const run_state *run)
{
    uint64_t max_buffer = 0, working_set = 0;
    const mpsnorm_tensor *t = run->job->batch->destination;
    mpsnorm_texel_layout widest;
    mpsnorm_texel_layout_of(t, 4, &widest);
    const uint64_t image = widest.image_bytes;
    const int64_t n = t->shape[0];
    mpsnorm_metal_limits(&max_buffer, &working_set);
    /* textures: inputs, output, scratch; buffers: inputs, output */
    const uint64_t per_image = image * (uint64_t)(2 * (run->inputs + 1) + run->job->scratch_images);
    uint64_t fit = per_image > 0 ? working_set / 2 / per_image : (uint64_t)n;
    if (image > 0 && fit > max_buffer / (image * (uint64_t)run->inputs))
        fit = max_buffer / (image * (uint64_t)run->inputs);
    return fit < 1 ? 1 : fit < (uint64_t)n ? (int64_t)fit : n;
}

/* One blit per image and slice between a buffer (images from `offset`) and textures. */
static void copy_textures(id<MTLBlitCommandEncoder> blit, id<MTLBuffer> buffer, size_t offset,
                          NSArray<MPSImage *> *images, const mpsnorm_texel_layout *lay,
                          int into_textures) MPSNORM_OBJC_NEEDS_MACOS_10_13_4
{
    const MTLSize region = {(NSUInteger)lay->w, (NSUInteger)lay->h, 1};
    const MTLOrigin origin = {0, 0, 0};
    /* bytes between the images of an array texture; 0 for a plain 2D texture */
    const NSUInteger per_slice = lay->slices > 1 ? (NSUInteger)lay->slice_bytes : 0;
    NSUInteger count = [images count];
    for (NSUInteger i = 0; i < count; i++) {
        id<MTLTexture> texture = [[images objectAtIndex:i] texture];
        for (int64_t s = 0; s < lay->slices; s++) {
            NSUInteger at = (NSUInteger)(offset + i * lay->image_bytes + (size_t)s * lay->slice_bytes);
            if (into_textures)
                [blit copyFromBuffer:buffer
                           sourceOffset:at
                      sourceBytesPerRow:(NSUInteger)lay->row_bytes
                    sourceBytesPerImage:per_slice
                             sourceSize:region
                              toTexture:texture
                       destinationSlice:(NSUInteger)s
                       destinationLevel:0
                      destinationOrigin:origin];
            else
                [blit copyFromTexture:texture
                                 sourceSlice:(NSUInteger)s
                                 sourceLevel:0
                                sourceOrigin:origin
                                  sourceSize:region
                                    toBuffer:buffer
                           destinationOffset:at
                      destinationBytesPerRow:(NSUInteger)lay->row_bytes
                    destinationBytesPerImage:per_slice];
        }
    }
}

/* What a chunk holds from the pool, given back in one place. */
typedef struct chunk_resources {
    NSMutableArray<MPSImage *> *_Nullable sources, *_Nullable inputs, *_Nullable destinations;
    id<MTLBuffer> _Nullable upload, download;
} chunk_resources;

static void give_back(const run_state *run, chunk_resources *held)
    MPSNORM_OBJC_NEEDS_MACOS_10_13_4
{
    const mpsnorm_tensor *t = run->job->batch->destination;
    mpsnorm_metal_cache *cache = run->job->cache;
    NSMutableArray<MPSImage *> *arrays[3] = {held->sources, held->inputs, held->destinations};
    mpsnorm_objc_lock(cache);
    for (int k = 0; k < 3; k++)
        if (arrays[k] != nil)
            mpsnorm_objc_pool_give_images(cache, arrays[k], t->dtype, t->shape[1], t->shape[2],
                                          t->shape[3]);
    if (held->upload != nil)
        mpsnorm_objc_pool_give_buffer(cache, held->upload);
    if (held->download != nil)
        mpsnorm_objc_pool_give_buffer(cache, held->download);
    mpsnorm_objc_unlock(cache);
    held->sources = held->inputs = held->destinations = nil;
    held->upload = held->download = nil;
}

/* Takes a chunk's images and buffers (learning the texel layout from the first
 * image, for the first chunk). */
static int take(run_state *run, chunk_resources *held, int64_t count, char *message, size_t size)
    MPSNORM_OBJC_NEEDS_MACOS_10_13_4
{
    const mpsnorm_objc_job *job = run->job;
    const mpsnorm_tensor *t = job->batch->destination;
    int status = MPSNORM_OK;
    mpsnorm_objc_lock(job->cache);
    @try {
        NSMutableArray<MPSImage *> *__strong *arrays[3] = {&held->sources, &held->inputs,
                                                            &held->destinations};
        for (int k = 0; k < 3 && status == MPSNORM_OK; k++) {
            if (k == 1 && run->inputs == 1)
                continue;
            *arrays[k] = mpsnorm_objc_pool_images(job->cache, run->device, t->dtype, t->shape[1],
                                                  t->shape[2], t->shape[3], count, job->name,
                                                  message, size);
            if (*arrays[k] == nil)
                status = MPSNORM_ERR_BACKEND_FAILURE;
        }
        if (status == MPSNORM_OK && !run->known_layout)
            status = learn_layout(run, [held->sources objectAtIndex:0], message, size);
        if (status == MPSNORM_OK) {
            const uint64_t image = run->layout.image_bytes;
            held->upload = mpsnorm_objc_pool_buffer(job->cache, run->device,
                                                    image * (uint64_t)(count * run->inputs),
                                                    job->name, message, size);
            held->download = held->upload == nil ? nil
                                                 : mpsnorm_objc_pool_buffer(
                                                       job->cache, run->device,
                                                       image * (uint64_t)count, job->name,
                                                       message, size);
            if (held->download == nil)
                status = MPSNORM_ERR_BACKEND_FAILURE;
        }
    } @finally {
        mpsnorm_objc_unlock(job->cache);
    }
    return status;
}

/* Encodes, commits and waits for one chunk; its output stays in held->download. */
static int run_chunk(run_state *run, chunk_resources *held, int64_t first, int64_t count,
                     char *message, size_t size) MPSNORM_OBJC_NEEDS_MACOS_10_13_4
{
    const mpsnorm_objc_job *job = run->job;
    const mpsnorm_metal_batch *batch = job->batch;
    const size_t image = run->layout.image_bytes;
    char *upload = [held->upload contents];
    const double packing = seconds_now();
    mpsnorm_metal_pack(batch->primary, first, count, &run->layout, upload);
    if (batch->secondary != NULL)
        mpsnorm_metal_pack(batch->secondary, first, count, &run->layout,
                           upload + (size_t)count * image);
    batch->timing->staging_seconds += seconds_now() - packing;

    id<MTLCommandBuffer> command_buffer = [run->queue commandBuffer];
    if (command_buffer == nil)
        return mpsnorm_objc_fail(message, size, "%s: could not create a Metal command buffer",
                                 job->name);
    id<MTLBlitCommandEncoder> blit = [command_buffer blitCommandEncoder];
    if (blit == nil)
        return mpsnorm_objc_fail(message, size, "%s: could not create a blit encoder",
                                 job->name);
    copy_textures(blit, held->upload, 0, held->sources, &run->layout, 1);
    if (held->inputs != nil)
        copy_textures(blit, held->upload, (size_t)count * image, held->inputs, &run->layout, 1);
    [blit endEncoding];

    int status = MPSNORM_ERR_BACKEND_FAILURE;
    mpsnorm_objc_lock(job->cache);
    @try {
        status = job->encode(job, run->device, command_buffer, held->sources, held->inputs,
                             held->destinations, message, size);
    } @finally {
        mpsnorm_objc_unlock(job->cache);
    }
    if (status != MPSNORM_OK)
        return status;

    blit = [command_buffer blitCommandEncoder];
    if (blit == nil)
        return mpsnorm_objc_fail(message, size, "%s: could not create a blit encoder",
                                 job->name);
    copy_textures(blit, held->download, 0, held->destinations, &run->layout, 0);
    if (job->download != NULL)
        status = job->download(job, blit, message, size);
    [blit endEncoding]; /* on every path: an open encoder is an error to Metal */
    if (status != MPSNORM_OK)
        return status;

    [command_buffer commit];
    [command_buffer waitUntilCompleted];
    MTLCommandBufferStatus done = [command_buffer status];
    if (done != MTLCommandBufferStatusCompleted) {
        NSError *error = [command_buffer error];
        return mpsnorm_objc_fail(message, size,
                                 "%s: the Metal command buffer did not complete (status %lu): %s",
                                 job->name, (unsigned long)done,
                                 mpsnorm_objc_text(error != nil ? [error localizedDescription]
                                                                : nil,
                                                   "Metal reported no error"));
    }
    if (@available(macOS 10.15, *))
        batch->timing->gpu_seconds += [command_buffer GPUEndTime] - [command_buffer GPUStartTime];
    if (job->finish != NULL)
        job->finish(job, first, count);
    return MPSNORM_OK;
}

int mpsnorm_objc_run(const mpsnorm_objc_job *job, char *message, size_t size)
{
    run_state run = {job, mpsnorm_objc_device(), mpsnorm_objc_queue(), {0, 0, 0, 0, 0, 0, 0, 0, 0},
                     job->batch->secondary != NULL ? 2 : 1, 0};
    if (job->cache == NULL || run.device == nil || run.queue == nil)
        return mpsnorm_objc_fail(message, size, "%s: no Metal device or engine cache", job->name);
    const int64_t n = job->batch->destination->shape[0];

    /* outputs of the chunks done, kept until every chunk is */
    NSMutableArray<id<MTLBuffer>> *outputs = [NSMutableArray arrayWithCapacity:1];
    const int64_t chunk = chunk_images(&run);
    int64_t first = 0;
    int status = MPSNORM_OK;
    while (first < n && status == MPSNORM_OK) {
        chunk_resources held = {nil, nil, nil, nil, nil};
        const int64_t count = n - first < chunk ? n - first : chunk;
        status = take(&run, &held, count, message, size);
        if (status == MPSNORM_OK)
            status = run_chunk(&run, &held, first, count, message, size);
        if (status == MPSNORM_OK) {
            [outputs addObject:held.download];
            held.download = nil; /* kept until every chunk is done */
            first += count;
        }
        give_back(&run, &held);
    }
    if (status == MPSNORM_OK) {
        const double unpacking = seconds_now();
        int64_t at = 0;
        NSUInteger chunks = [outputs count];
        for (NSUInteger i = 0; i < chunks; i++) {
            int64_t count = n - at < chunk ? n - at : chunk;
            mpsnorm_metal_unpack([[outputs objectAtIndex:i] contents], at, count, &run.layout,
                                 job->batch->destination);
            at += count;
        }
        job->batch->timing->staging_seconds += seconds_now() - unpacking;
    }
    mpsnorm_objc_lock(job->cache);
    NSUInteger chunks = [outputs count];
    for (NSUInteger i = 0; i < chunks; i++)
        mpsnorm_objc_pool_give_buffer(job->cache, [outputs objectAtIndex:i]);
    mpsnorm_objc_unlock(job->cache);
    return status;
}
