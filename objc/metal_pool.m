/*
 * metal_pool.m -- the images and shared buffers an engine keeps between calls
 * (see metal_context.h), so that a call of a shape seen before allocates no
 * texture and no buffer.
 *
 * Images are private to the GPU (MPSImageDescriptor storageMode): the CPU
 * never reads them, data moves in and out through blits to and from shared
 * buffers, so no synchronization of managed memory is ever needed. A texture
 * is allocated when the image is made (MPSImage.h allocates it lazily, and a
 * nil texture is an allocation that failed), not in the middle of a call.
 */
#include "metal_imports.h"

#include "metal_context.h"

/* The most the pool keeps without a device to ask: 256 MiB. */
#define MPSNORM_OBJC_POOL_BYTES ((uint64_t)256 << 20)

uint64_t mpsnorm_objc_pool_limit(void)
{
    uint64_t max_buffer, working_set;
    if (mpsnorm_metal_limits(&max_buffer, &working_set) != MPSNORM_OK)
        return MPSNORM_OBJC_POOL_BYTES;
    return working_set / 4;
}

static id take_entry(mpsnorm_objc_pool *pool, size_t index)
{
    id object = (__bridge_transfer id)pool->items[index].object;
    pool->bytes -= pool->items[index].bytes;
    pool->items[index] = pool->items[--pool->count];
    return object;
}

/* Keeps an object; evicts the least recently used entries while the pool holds
 * more than its limit (the newest entry too, when it alone is over it). */
static void keep(mpsnorm_objc_pool *pool, id object, const mpsnorm_objc_pooled *entry)
{
    if (pool->count == pool->capacity) {
        size_t capacity = pool->capacity > 0 ? 2 * pool->capacity : 16;
        mpsnorm_objc_pooled *items = realloc(pool->items, capacity * sizeof *items);
        if (items == NULL)
            return; /* not kept: ARC releases it */
        pool->items = items;
        pool->capacity = capacity;
    }
    mpsnorm_objc_pooled *kept = &pool->items[pool->count++];
    *kept = *entry;
    kept->object = (__bridge_retained void *)object;
    kept->used = ++pool->clock;
    pool->bytes += kept->bytes;
    while (pool->bytes > pool->limit && pool->count > 0) {
        size_t oldest = 0;
        for (size_t i = 1; i < pool->count; i++)
            if (pool->items[i].used < pool->items[oldest].used)
                oldest = i;
        (void)take_entry(pool, oldest);
    }
}

static uint64_t image_bytes(int dtype, int64_t c, int64_t h, int64_t w)
{
    return (uint64_t)((c + 3) / 4) * 4 * (uint64_t)h * (uint64_t)w * mpsnorm_dtype_size(dtype);
}

NSMutableArray<MPSImage *> *mpsnorm_objc_pool_images(mpsnorm_metal_cache *cache,
                                                    id<MTLDevice> device, int dtype, int64_t c,
                                                    int64_t h, int64_t w, int64_t count,
                                                    const char *what, char *message, size_t size)
{
    mpsnorm_objc_pool *pool = &cache->pool;
    NSMutableArray<MPSImage *> *images = [NSMutableArray arrayWithCapacity:(NSUInteger)count];
    MPSImageDescriptor *descriptor = nil;
    for (size_t i = 0; i < pool->count && (int64_t)[images count] < count;) {
        const mpsnorm_objc_pooled *entry = &pool->items[i];
        if (entry->length == 0 && entry->dtype == dtype && entry->c == c && entry->h == h &&
            entry->w == w)
            [images addObject:take_entry(pool, i)]; /* the entry at i is now another */
        else
            i++;
    }
    while ((int64_t)[images count] < count) {
        if (descriptor == nil) {
            MPSImageFeatureChannelFormat format = dtype == MPSNORM_FLOAT16
                                                      ? MPSImageFeatureChannelFormatFloat16
                                                      : MPSImageFeatureChannelFormatFloat32;
            descriptor = [MPSImageDescriptor imageDescriptorWithChannelFormat:format
                                                                        width:(NSUInteger)w
                                                                       height:(NSUInteger)h
                                                              featureChannels:(NSUInteger)c];
            if (descriptor == nil) {
                mpsnorm_objc_pool_give_images(cache, images, dtype, c, h, w);
                mpsnorm_objc_fail(message, size, "%s: could not describe the MPS images", what);
                return nil;
            }
            [descriptor setStorageMode:MTLStorageModePrivate];
        }
        MPSImage *image = [[MPSImage alloc] initWithDevice:device imageDescriptor:descriptor];
        /* nonnull by its declaration, yet checked: an allocation may still fail */
        if (image == nil || [image texture] == nil) {
            mpsnorm_objc_pool_give_images(cache, images, dtype, c, h, w);
            mpsnorm_objc_fail(message, size,
                              "%s: could not allocate the texture of an MPS image of %lld x "
                              "%lld x %lld (channels x height x width)",
                              what, (long long)c, (long long)h, (long long)w);
            return nil;
        }
        [images addObject:image];
    }
    return images;
}

id<MTLBuffer> mpsnorm_objc_pool_buffer(mpsnorm_metal_cache *cache, id<MTLDevice> device,
                                       uint64_t length, const char *what, char *message,
                                       size_t size)
{
    mpsnorm_objc_pool *pool = &cache->pool;
    size_t best = pool->count;
    /* the smallest idle buffer that holds it, if it wastes no more than it holds */
    for (size_t i = 0; i < pool->count; i++) {
        const mpsnorm_objc_pooled *entry = &pool->items[i];
        if (entry->length >= length && entry->length <= 2 * length &&
            (best == pool->count || entry->length < pool->items[best].length))
            best = i;
    }
    if (best < pool->count)
        return take_entry(pool, best);
    id<MTLBuffer> buffer = [device newBufferWithLength:(NSUInteger)length
                                               options:MTLResourceStorageModeShared];
    if (buffer == nil)
        mpsnorm_objc_fail(message, size, "%s: could not allocate a shared buffer of %llu bytes",
                          what, (unsigned long long)length);
    return buffer;
}

void mpsnorm_objc_pool_give_images(mpsnorm_metal_cache *cache, NSArray<MPSImage *> *images,
                                   int dtype, int64_t c, int64_t h, int64_t w)
{
    mpsnorm_objc_pooled entry;
    memset(&entry, 0, sizeof entry);
    entry.dtype = dtype;
    entry.c = c, entry.h = h, entry.w = w;
    entry.bytes = image_bytes(dtype, c, h, w);
    NSUInteger count = [images count];
    for (NSUInteger i = 0; i < count; i++)
        keep(&cache->pool, [images objectAtIndex:i], &entry);
}

void mpsnorm_objc_pool_give_buffer(mpsnorm_metal_cache *cache, id<MTLBuffer> buffer)
{
    mpsnorm_objc_pooled entry;
    memset(&entry, 0, sizeof entry);
    entry.length = entry.bytes = [buffer length];
    keep(&cache->pool, buffer, &entry);
}

void mpsnorm_objc_pool_drain(mpsnorm_metal_cache *cache)
{
    mpsnorm_objc_pool *pool = &cache->pool;
    while (pool->count > 0)
        (void)take_entry(pool, pool->count - 1);
    free(pool->items);
    pool->items = NULL;
    pool->capacity = 0;
}
