/*
 * metal_context.m -- the process-wide Metal context (device, command queue,
 * the device's limits), device availability, the per-engine cache, and the
 * helpers shared by the kernel files (see metal_context.h).
 *
 * The context is created on the first call of mpsnorm_metal_device_available
 * (engine creation or mpsnorm.backends()), never when the library loads:
 * dispatch_once_f runs create_context exactly once per process, and every
 * later reader sees its result. Once it exists, a forked child process does
 * not use it (metal_selfcheck.h): Metal is not fork-safe.
 */
#include "metal_imports.h"

#include "metal_context.h"
#include "metal_selfcheck.h"

/* MTLDevice.h: maxBufferLength "is at least 256 MB" (the property is macOS 10.14). */
#define MPSNORM_OBJC_MIN_BUFFER_LENGTH ((uint64_t)256 << 20)

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
                mpsnorm_metal_watch_fork();
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
    return mpsnorm_metal_forked() ? nil : context_device;
}

id<MTLCommandQueue> mpsnorm_objc_queue(void)
{
    ensure_context();
    return mpsnorm_metal_forked() ? nil : context_queue;
}

int mpsnorm_metal_device_available(void)
{
    return mpsnorm_objc_device() != nil && mpsnorm_objc_queue() != nil;
}

/* Asked of the device at each call: two properties, and what the device says now. */
int mpsnorm_metal_limits(uint64_t *max_buffer_length, uint64_t *working_set)
{
    *max_buffer_length = *working_set = 0;
    id<MTLDevice> device = mpsnorm_objc_device();
    if (device == nil)
        return MPSNORM_ERR_BACKEND_UNAVAILABLE;
    @autoreleasepool {
        *max_buffer_length = MPSNORM_OBJC_MIN_BUFFER_LENGTH;
        if (@available(macOS 10.14, *))
            *max_buffer_length = [device maxBufferLength];
        *working_set = [device recommendedMaxWorkingSetSize];
        if (*working_set == 0) /* not reported: a conservative bound */
            *working_set = 4 * *max_buffer_length;
    }
    return MPSNORM_OK;
}

/* ---- per-engine cache ---------------------------------------------------- */

int mpsnorm_metal_cache_create(mpsnorm_metal_cache **cache)
{
    if (cache == NULL)
        return MPSNORM_ERR_NULL_POINTER;
    *cache = NULL;
    if (!mpsnorm_metal_device_available())
        return MPSNORM_ERR_BACKEND_UNAVAILABLE;
    mpsnorm_metal_cache *created = calloc(1, sizeof *created); /* every field nil or 0 */
    if (created == NULL)
        return MPSNORM_ERR_OUT_OF_MEMORY;
    if (pthread_mutex_init(&created->lock, NULL) != 0) {
        free(created);
        return MPSNORM_ERR_OUT_OF_MEMORY;
    }
    created->pool.limit = mpsnorm_objc_pool_limit();
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
        mpsnorm_objc_pool_drain(cache);
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

const char *mpsnorm_objc_text(NSString *_Nullable string, const char *fallback)
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
                                     mpsnorm_objc_text([exception reason], "no reason given"));
        } @catch (id other) {
            return mpsnorm_objc_fail(message, size,
                                     "%s: Metal raised an Objective-C exception that is not an "
                                     "NSException",
                                     where);
        }
    }
}
