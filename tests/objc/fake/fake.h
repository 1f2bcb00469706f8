/*
 * fake.h -- what the files of the fake Foundation/Metal/MPS share (test-only;
 * tests/objc/README.md). The public side of every fake class is exactly its
 * declaration in tests/objc/mps_declarations.h; what the fakes add for each
 * other is declared here, prefixed "fake", and objc/ never sees it.
 */
#ifndef MPSNORM_FAKE_H
#define MPSNORM_FAKE_H

#include "mps_declarations.h"

#include <stdint.h>

#include "fake_table.h"

/* ---- settings and counters (fake_control.c) ------------------------------ */

#define FAKE_SETTING_ENUM(name, value, doc) FAKE_##name,
typedef enum fake_setting { FAKE_SETTINGS(FAKE_SETTING_ENUM) FAKE_SETTING_COUNT } fake_setting;
#undef FAKE_SETTING_ENUM

#define FAKE_COUNTER_ENUM(name, kind, doc) FAKE_COUNT_##name,
typedef enum fake_counter { FAKE_COUNTERS(FAKE_COUNTER_ENUM) FAKE_COUNTER_COUNT } fake_counter;
#undef FAKE_COUNTER_ENUM

int64_t fake_setting_value(int setting); /* a fake_setting */
void fake_count(int counter, int64_t delta); /* a fake_counter */
int64_t fake_counter_value(int counter);      /* its value now */
/* 1 when this MPSImage init is the one image_init_fails_at names. */
int fake_image_init_should_fail(void);

#pragma clang assume_nonnull begin

/* ---- Objective-C runtime (by hand: <objc/runtime.h> redefines BOOL and nil) */

id class_createInstance(Class cls, size_t extra_bytes) __attribute__((ns_returns_retained));
id _Nullable object_dispose(id object);
BOOL class_respondsToSelector(Class cls, SEL selector);
BOOL sel_isEqual(SEL a, SEL b);
Class object_getClass(id object);
const char *class_getName(Class cls);

/* ---- Foundation extras ---------------------------------------------------- */

/* A new string with printf-style text. */
NSString *fake_string(const char *format, ...) __attribute__((format(printf, 1, 2)));
/* Raises an NSException with the printf-style reason. */
void fake_raise(const char *format, ...) __attribute__((format(printf, 1, 2), noreturn));
NSError *fake_error(NSString *description);

/* ---- Metal extras ---------------------------------------------------------- */

/* Work encoded into a command buffer; the fake GPU runs it after commit. */
@protocol FakeGPUCommand <NSObject>
- (void)runOnGPU;
@end

/* The command buffer an encode was given, checked to be the fake's and open
 * for encoding (Metal asserts otherwise; the fake raises). */
void fake_encode(id<MTLCommandBuffer> command_buffer, id<FakeGPUCommand> command);

/* A managed resource: a CPU and a GPU copy. */
@protocol FakeManaged <NSObject>
/* GPU side: makes the CPU's copy equal to the GPU's (a synchronization). */
- (void)fakeGPUSynchronize;
@end

/* The command that synchronizes a managed resource when the GPU runs it. */
id<FakeGPUCommand> fake_synchronization(id<FakeManaged> resource);

/* A new MTLBuffer of `length` bytes in `mode`, its contents poisoned. */
id<MTLBuffer> fake_buffer(NSUInteger length, MTLStorageMode mode);
/* The GPU's copy of a fake buffer (the CPU's for shared storage). */
void *fake_buffer_gpu_contents(id<MTLBuffer> buffer);

/* ---- MPS extras ------------------------------------------------------------ */

@interface MPSImage (FakeGPU)
@property (readonly) NSUInteger fakeWidth, fakeHeight, fakeChannels, fakeSlices;
@property (readonly) MPSImageFeatureChannelFormat fakeFormat;
@property (readonly) MTLStorageMode fakeStorageMode;
/* GPU side: the image's texels as one contiguous C x H x W plane set of its
 * channel format's elements (float or half bits), in and out. */
- (void)fakeGPURead:(void *)planes;
- (void)fakeGPUWrite:(const void *)planes;
/* GPU side: a blit's copy between a slice and `rows` (height rows of width
 * texels each, bytesPerRow apart). */
- (void)fakeGPUCopySlice:(NSUInteger)slice
                    rows:(unsigned char *)rows
             bytesPerRow:(NSUInteger)bytesPerRow
                toTexels:(BOOL)toTexels;
/* An encode reads (a source) or writes the image on a command buffer: a
 * temporary image checks and counts its readCount. */
- (void)fakeUseOn:(id<MTLCommandBuffer>)commandBuffer read:(BOOL)read;
@end

/* The image whose texture this is (raises for a texture the fake did not make). */
MPSImage *fake_texture_image(id<MTLTexture> texture);

#pragma clang assume_nonnull end

#endif /* MPSNORM_FAKE_H */
