/*
 * metal_context.h -- what the Objective-C files of objc/ share: the layout of
 * the per-engine cache, the process-wide Metal context, the pool of images and
 * buffers, the skeleton every call runs through, and the small helpers
 * (guarding against Objective-C exceptions, failure messages).
 *
 * Internal to objc/; C code sees only backend.h.
 *
 * Build note: objc/ is compiled with -fobjc-arc-exceptions (setup.py). An
 * NSException thrown by Metal or MPS is caught by mpsnorm_objc_guard; without
 * that flag ARC would not release what the frames the exception unwinds hold
 * (a call's images, buffers and command buffer would leak).
 */
#ifndef MPSNORM_OBJC_METAL_CONTEXT_H
#define MPSNORM_OBJC_METAL_CONTEXT_H

#include "metal_imports.h"

#include "backend.h"
#include "metal_staging.h"

/* Every MPS class and encode call the backend uses, except the LCN forward
 * kernel itself, appeared in macOS 10.13.4 (MPSCNNLocalContrastNormalizationGradient,
 * MPSCNNInstanceNormalization*, encodeBatch...). Functions that use them carry
 * this attribute and are only called inside @available(macOS 10.13.4, *). */
#define MPSNORM_OBJC_NEEDS_MACOS_10_13_4 __attribute__((availability(macos, introduced = 10.13.4)))

#pragma clang assume_nonnull begin

/*
 * Images and buffers kept between calls, so that a call of a shape seen
 * before allocates nothing. An entry holds one retained object (an MPSImage,
 * or a shared MTLBuffer: `length` > 0) while no call uses it; `used` orders
 * entries for eviction, least recently used first, when the pool holds more
 * than `limit` bytes. Guarded by the cache's lock.
 */
typedef struct mpsnorm_objc_pooled {
    void *object;        /* retained (bridged): MPSImage or id<MTLBuffer> */
    int32_t dtype;       /* images: channel format */
    int64_t c, h, w;     /* images: shape */
    uint64_t length;     /* buffers: bytes (0 for an image) */
    uint64_t bytes;      /* what it occupies */
    uint64_t used;       /* the pool's clock when it was given back */
} mpsnorm_objc_pooled;

typedef struct mpsnorm_objc_pool {
    mpsnorm_objc_pooled *items;
    size_t count, capacity;
    uint64_t bytes, limit, clock;
} mpsnorm_objc_pool;

/*
 * The per-engine cache (opaque to C as mpsnorm_metal_cache): the MPS kernel
 * objects made for the parameters the engine last used, and the pool.
 *
 * Thread safety: MPSKernel.h says a kernel object may be used by "only one
 * thread ... at a time" (its properties are mutable) and that at encode time
 * "All MPSKernel state has been copied to the command buffer. MPSKernels may
 * be reused." So a call holds `lock` while it takes images from the pool,
 * looks up or rebuilds the kernels, sets their properties, makes the gradient
 * states and encodes, and while it gives images back; never across
 * commit/waitUntilCompleted, so threads sharing an engine overlap their
 * staging, GPU work and readback but never touch a kernel object at once.
 *
 * The kernel fields are typed `id` (each holds the class named beside it):
 * those classes are macOS 10.13.4 API and a struct field cannot sit inside an
 * @available check. ARC retains them (__strong); mpsnorm_metal_cache_free
 * sets them to nil before freeing the struct.
 */
struct mpsnorm_metal_cache {
    pthread_mutex_t lock;
    __strong id _Nullable lcn_forward;        /* MPSCNNLocalContrastNormalization */
    NSUInteger lcn_forward_size;    /* its kernel width (= height); 0 while lcn_forward is nil */
    __strong id _Nullable lcn_gradient;       /* MPSCNNLocalContrastNormalizationGradient */
    NSUInteger lcn_gradient_size;
    __strong id _Nullable inorm_source;       /* MPSNormInstanceNormalizationSource behind inorm_forward */
    __strong id _Nullable inorm_forward;      /* MPSCNNInstanceNormalization */
    __strong id _Nullable inorm_gradient;     /* MPSCNNInstanceNormalizationGradient */
    mpsnorm_objc_pool pool;
};

/* ---- the process-wide context (metal_context.m) ------------------------------ */

/* The Metal device and command queue (created once, on first use); nil when
 * this machine has no device that MPS supports, and in a process forked after
 * they were created (Metal is not fork-safe). */
id<MTLDevice> _Nullable mpsnorm_objc_device(void);
id<MTLCommandQueue> _Nullable mpsnorm_objc_queue(void);

/* Writes a NUL-terminated reason into message and returns
 * MPSNORM_ERR_BACKEND_FAILURE. */
int mpsnorm_objc_fail(char *_Nullable message, size_t size, const char *format, ...)
    __attribute__((format(printf, 3, 4)));

/* Writes the reason and returns MPSNORM_ERR_UNSUPPORTED: for what this
 * system's MPS turns out not to provide (a kernel it cannot make, no gradient
 * state, gamma/beta gradients the CPU cannot read, an encode it lacks).
 * Nothing has been written; the route remembers the class for the engine. */
int mpsnorm_objc_unsupported(char *_Nullable message, size_t size, const char *format, ...)
    __attribute__((format(printf, 3, 4)));

/* The answer of an entry point on a macOS older than 10.13.4. */
int mpsnorm_objc_fail_old_macos(const char *where, char *_Nullable message, size_t size);

/*
 * Runs body(context, message, size) inside @autoreleasepool and @try: an
 * Objective-C exception thrown by Metal or MPS becomes
 * MPSNORM_ERR_BACKEND_FAILURE with the exception's reason in message, so none
 * ever crosses the C ABI.
 */
typedef int (*mpsnorm_objc_body)(void *context, char *_Nullable message, size_t size);
int mpsnorm_objc_guard(const char *where, mpsnorm_objc_body body,
                       void *context, char *_Nullable message, size_t size);

/* UTF-8 text of an NSString, or `fallback` when there is none. */
const char *mpsnorm_objc_text(NSString *_Nullable string, const char *fallback);

/* Locks / unlocks the cache (see struct mpsnorm_metal_cache). */
void mpsnorm_objc_lock(mpsnorm_metal_cache *cache);
void mpsnorm_objc_unlock(mpsnorm_metal_cache *cache);

/* ---- the pool (metal_pool.m) ---------------------------------------------------- */

/* Bytes the pool of a new cache may keep (a quarter of the device's working set). */
uint64_t mpsnorm_objc_pool_limit(void);

/* `count` images of channel format `dtype` and shape c x h x w, private to the
 * GPU, with their textures allocated: idle ones from the pool first. nil with
 * the reason in message when one cannot be made. The caller holds the lock. */
NSMutableArray<MPSImage *> *_Nullable mpsnorm_objc_pool_images(
    mpsnorm_metal_cache *cache, id<MTLDevice> device, int dtype, int64_t c, int64_t h,
    int64_t w, int64_t count, const char *what, char *_Nullable message, size_t size)
    MPSNORM_OBJC_NEEDS_MACOS_10_13_4;

/* A shared (CPU and GPU) buffer of at least `length` bytes, or nil with the
 * reason in message. The caller holds the lock. */
id<MTLBuffer> _Nullable mpsnorm_objc_pool_buffer(mpsnorm_metal_cache *cache,
                                                 id<MTLDevice> device, uint64_t length,
                                                 const char *what, char *_Nullable message,
                                                 size_t size);

/* Gives images (all of the given format and shape) / a buffer back for later
 * calls. The caller holds the lock. */
void mpsnorm_objc_pool_give_images(mpsnorm_metal_cache *cache, NSArray<MPSImage *> *images,
                                   int dtype, int64_t c, int64_t h, int64_t w)
    MPSNORM_OBJC_NEEDS_MACOS_10_13_4;
void mpsnorm_objc_pool_give_buffer(mpsnorm_metal_cache *cache, id<MTLBuffer> buffer);

/* Releases everything the pool holds (when the engine is freed). */
void mpsnorm_objc_pool_drain(mpsnorm_metal_cache *cache);

/* ---- one call (metal_run.m) ----------------------------------------------------- */

/*
 * What a kernel file gives the skeleton: its tensors, and the steps that are
 * its own. The skeleton splits the batch into chunks of images that fit the
 * device's working set, and for each: takes images and buffers from the pool,
 * packs the inputs (metal_staging.h, on the CPU backend's threads) into a
 * shared buffer, encodes one blit copying them into the textures, calls
 * `encode` (under the lock), encodes one blit copying the outputs into a
 * shared buffer (and whatever `download` adds to it), commits, waits, checks,
 * calls `finish`, and gives the images back. Once every chunk has completed,
 * it unpacks the outputs into the destination tensor: a failing call writes
 * nothing.
 */
typedef struct mpsnorm_objc_job mpsnorm_objc_job;
struct mpsnorm_objc_job {
    const char *name; /* the MPS kernel, for messages */
    mpsnorm_metal_cache *cache;
    const mpsnorm_metal_batch *batch;
    int scratch_images; /* images a chunk's encode makes per image (MPSTemporaryImages) */
    /* Encodes the kernels of a chunk: sources (x, or dy for a gradient), inputs (x;
     * gradients only), destinations. The caller holds the lock. */
    int (*encode)(const mpsnorm_objc_job *job, id<MTLDevice> device,
                  id<MTLCommandBuffer> command_buffer, NSArray<MPSImage *> *sources,
                  NSArray<MPSImage *> *_Nullable inputs, NSArray<MPSImage *> *destinations,
                  char *_Nullable message, size_t size);
    /* Optional: encodes into the download blit what the CPU must read besides the
     * outputs; an error status stops the call before it is committed. */
    int (*download)(const mpsnorm_objc_job *job, id<MTLBlitCommandEncoder> blit,
                    char *_Nullable message, size_t size);
    /* Optional: after a chunk's command buffer completed, for images
     * [first, first + count) of the batch. */
    void (*finish)(const mpsnorm_objc_job *job, int64_t first, int64_t count);
    void *_Nullable context; /* the kernel file's own */
};

int mpsnorm_objc_run(const mpsnorm_objc_job *job, char *_Nullable message, size_t size)
    MPSNORM_OBJC_NEEDS_MACOS_10_13_4;

/* MPSNORM_OK if `forward` can encode a batch that fills gradient states
 * (MPSCNNKernel.h marks that encode "added in .5 support update"), else
 * UNSUPPORTED with the reason. */
int mpsnorm_objc_require_state_encode(const mpsnorm_objc_job *job, MPSCNNKernel *forward,
                                      char *_Nullable message, size_t size)
    MPSNORM_OBJC_NEEDS_MACOS_10_13_4;

/* Encodes a gradient: `forward` (when not nil) from `inputs` into `results`,
 * MPSTemporaryImages nobody reads, filling `states`; then `backward` from
 * `sources` (dy), `inputs` (x) and the states into `destinations`. */
void mpsnorm_objc_encode_gradient(id<MTLCommandBuffer> command_buffer,
                                  MPSCNNKernel *_Nullable forward, MPSCNNGradientKernel *backward,
                                  NSArray<MPSImage *> *sources, NSArray<MPSImage *> *inputs,
                                  NSArray<MPSState *> *states,
                                  NSArray<MPSImage *> *_Nullable results,
                                  NSArray<MPSImage *> *destinations)
    MPSNORM_OBJC_NEEDS_MACOS_10_13_4;

/* An MPSImageDescriptor of the batch's channel format and image shape. */
MPSImageDescriptor *_Nullable mpsnorm_objc_descriptor(const mpsnorm_metal_batch *batch)
    MPSNORM_OBJC_NEEDS_MACOS_10_13_4;

#pragma clang assume_nonnull end

#endif /* MPSNORM_OBJC_METAL_CONTEXT_H */
