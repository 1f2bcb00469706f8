/*
 * metal_context.h -- what the Objective-C files of objc/ share: the layout of
 * the per-engine cache, the process-wide Metal context, and the few helpers
 * every entry point uses (guarding against Objective-C exceptions, failure
 * messages, MPSImage upload/download, running a command buffer).
 *
 * Internal to objc/; C code sees only backend.h.
 */
#ifndef MPSNORM_OBJC_METAL_CONTEXT_H
#define MPSNORM_OBJC_METAL_CONTEXT_H

#include "metal_imports.h"

#include "backend.h"

/* Every MPS class and encode call the backend uses, except the LCN forward
 * kernel itself, appeared in macOS 10.13.4 (MPSCNNLocalContrastNormalizationGradient,
 * MPSCNNInstanceNormalization*, encodeBatch..., synchronizeOnCommandBuffer:).
 * Functions that use them carry this attribute and are only called inside
 * @available(macOS 10.13.4, *). */
#define MPSNORM_OBJC_NEEDS_MACOS_10_13_4 __attribute__((availability(macos, introduced = 10.13.4)))

#pragma clang assume_nonnull begin

/*
 * The per-engine cache (opaque to C as mpsnorm_metal_cache). It holds the MPS
 * kernel objects made for the parameters an engine last used, so repeated
 * calls with the same kernel size / channel values skip kernel creation.
 *
 * Thread safety: MPSKernel.h says a kernel object may be used by "only one
 * thread ... at a time" (its properties are mutable) and that at encode time
 * "All MPSKernel state has been copied to the command buffer. MPSKernels may
 * be reused." So every call holds `lock` while it looks up or rebuilds the
 * kernels, sets their properties, makes the gradient states and encodes;
 * it releases the lock before commit/waitUntilCompleted, so threads sharing
 * an engine overlap their uploads, GPU work and downloads but never touch a
 * kernel object at the same time.
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
};

/* The process-wide Metal device and command queue (created once, on first
 * use); nil when this machine has no device that MPS supports. */
id<MTLDevice> _Nullable mpsnorm_objc_device(void);
id<MTLCommandQueue> _Nullable mpsnorm_objc_queue(void);

/* Writes a NUL-terminated reason into message and returns
 * MPSNORM_ERR_BACKEND_FAILURE. */
int mpsnorm_objc_fail(char *_Nullable message, size_t size, const char *format, ...)
    __attribute__((format(printf, 3, 4)));

/* Writes the reason and returns MPSNORM_ERR_UNSUPPORTED: for what this
 * system's MPS turns out not to provide (a nil gradient state, gamma/beta
 * gradients the CPU cannot read). Nothing has been written; the dispatcher
 * runs the call on the CPU unless Metal was requested explicitly. */
int mpsnorm_objc_unsupported(char *_Nullable message, size_t size, const char *format, ...)
    __attribute__((format(printf, 3, 4)));

/* The answer of an entry point on a macOS older than 10.13.4. */
int mpsnorm_objc_fail_old_macos(const char *where, char *_Nullable message, size_t size);

/*
 * Runs body(context, message, size) inside @autoreleasepool and @try: an
 * Objective-C exception thrown by Metal or MPS becomes
 * MPSNORM_ERR_BACKEND_FAILURE with the exception's reason in message, so none
 * ever crosses the C ABI. objc/ is compiled with -fobjc-arc-exceptions
 * (setup.py): without it ARC would leave every object of the frames the
 * exception unwinds (a call's images, buffers, states) retained forever.
 */
typedef int (*mpsnorm_objc_body)(void *context, char *_Nullable message, size_t size);
int mpsnorm_objc_guard(const char *where, mpsnorm_objc_body body,
                       void *context, char *_Nullable message, size_t size);

/*
 * One MPSImage (numberOfImages 1) per image of the batch, with the batch's
 * channel format (float32 or float16) and size; each is filled from image n
 * of `data` (NCHW or NHWC per batch->nhwc) when data is not NULL. Returns nil
 * with the reason in message when an image cannot be made.
 */
NSMutableArray<MPSImage *> *_Nullable mpsnorm_objc_images(
    id<MTLDevice> device, const mpsnorm_metal_batch *batch,
    const void *_Nullable data, const char *what, char *_Nullable message, size_t size)
    MPSNORM_OBJC_NEEDS_MACOS_10_13_4;

/* Encodes synchronizeOnCommandBuffer: for each image, so that the CPU can
 * read what the GPU wrote into these (managed) images once the buffer completes. */
void mpsnorm_objc_synchronize(NSArray<MPSImage *> *images,
                              id<MTLCommandBuffer> command_buffer)
    MPSNORM_OBJC_NEEDS_MACOS_10_13_4;

/* Reads every image back into `data` (image n at its place in the batch). */
void mpsnorm_objc_download(NSArray<MPSImage *> *images,
                           const mpsnorm_metal_batch *batch, void *data)
    MPSNORM_OBJC_NEEDS_MACOS_10_13_4;

/* A new command buffer on the process-wide queue, or nil with the reason in message. */
id<MTLCommandBuffer> _Nullable mpsnorm_objc_command_buffer(const char *what,
                                                           char *_Nullable message, size_t size);

/* Commits the command buffer, waits for it, and returns MPSNORM_OK if its
 * status is MTLCommandBufferStatusCompleted; otherwise
 * MPSNORM_ERR_BACKEND_FAILURE with the buffer's error.localizedDescription. */
int mpsnorm_objc_commit_and_wait(id<MTLCommandBuffer> command_buffer,
                                 const char *what, char *_Nullable message, size_t size);

/* Locks / unlocks the cache (see struct mpsnorm_metal_cache). */
void mpsnorm_objc_lock(mpsnorm_metal_cache *cache);
void mpsnorm_objc_unlock(mpsnorm_metal_cache *cache);

#pragma clang assume_nonnull end

#endif /* MPSNORM_OBJC_METAL_CONTEXT_H */
