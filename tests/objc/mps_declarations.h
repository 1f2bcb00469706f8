/*
 * mps_declarations.h -- the part of Apple's Foundation, Metal and
 * MetalPerformanceShaders API that objc/ uses, transcribed from Apple's SDK
 * headers so that clang can type-check the .m files of objc/ on a machine without the SDK
 * (tests/test_objc_syntax.py; objc/metal_imports.h includes this file instead
 * of the frameworks when MPSNORM_OBJC_DECLARATIONS is defined).
 *
 * Rules of this file
 *  - Only the members objc/ uses, plus the class/protocol hierarchy they hang
 *    on (conformance lists as Apple declares them; protocols we never call are
 *    declared empty). A selector missing here makes the syntax check fail,
 *    which is the point: add it only after reading it in Apple's header.
 *    Enumerations list only the constants used, with Apple's values.
 *  - Every declaration names the header it was read from. Unless noted, paths
 *    are in MacOSX10.15.sdk/System/Library/Frameworks/ of the public SDK copy
 *    phracker/MacOSX-SDKs (MTLBuffer.h, MTLCommandEncoder.h and MPSKernel.h
 *    were read in the same SDK version from alexey-lysiuk/macos-sdk).
 *  - Selectors, argument and return types, nullability and availability are
 *    Apple's. Availability is written as the macOS clause of Apple's
 *    API_AVAILABLE/MPS_AVAILABLE_STARTING (the only platform mpsnorm builds
 *    the Metal backend for); clang enforces it when the check targets macOS.
 *  - Apple's __nonnull / __nullable are written _Nonnull / _Nullable, what
 *    Darwin's <sys/cdefs.h> defines them as (glibc gives __nonnull another meaning).
 *  - Type definitions that come from the Objective-C runtime or libdispatch
 *    (BOOL, NSUInteger, nil, dispatch_once_t) are those of 64-bit macOS.
 */
#ifndef MPSNORM_TESTS_MPS_DECLARATIONS_H
#define MPSNORM_TESTS_MPS_DECLARATIONS_H

#if !defined(__OBJC__)
#error "mps_declarations.h is Objective-C"
#endif

#include <stddef.h>
#include <stdint.h>

#define MPSDECL_MACOS(version) __attribute__((availability(macos, introduced = version)))
#define MPSDECL_UNAVAILABLE __attribute__((unavailable))

/* ======================================================================== */
/* Objective-C runtime: usr/include/objc/objc.h, objc/NSObject.h            */

/* objc/objc.h: OBJC_BOOL_IS_BOOL is 1 on arm64 macOS, where BOOL is bool. */
typedef _Bool BOOL;
#define YES __objc_yes
#define NO __objc_no
/* objc/objc.h: #define nil __DARWIN_NULL */
#define nil ((id)0)

/* Foundation.framework/Versions/C/Headers/NSObjCRuntime.h (LP64) */
typedef long NSInteger;
typedef unsigned long NSUInteger;
/* CoreFoundation.framework/Versions/A/Headers/CFDate.h */
typedef double CFTimeInterval;

/* Foundation.framework/Versions/C/Headers/NSZone.h */
typedef struct _NSZone NSZone;

#pragma clang assume_nonnull begin

/* MacOSX10.12.sdk/usr/include/objc/NSObject.h */
@protocol NSObject
- (BOOL)respondsToSelector:(SEL)aSelector;
@end

/* MacOSX10.12.sdk/usr/include/objc/NSObject.h */
__attribute__((objc_root_class))
@interface NSObject <NSObject>
+ (instancetype)alloc;
- (instancetype)init __attribute__((objc_designated_initializer));
@end

/* Foundation.framework/Versions/C/Headers/NSObject.h */
@protocol NSCopying
- (id)copyWithZone:(nullable NSZone *)zone;
@end

/* Foundation.framework/Versions/C/Headers/NSObject.h: members not used here. */
@protocol NSMutableCopying
@end
@protocol NSCoding
@end
@protocol NSSecureCoding <NSCoding>
@end

/* Foundation.framework/Versions/C/Headers/NSEnumerator.h: members not used here. */
@protocol NSFastEnumeration
@end

/* ======================================================================== */
/* Foundation                                                                */

/* Foundation.framework/Versions/C/Headers/NSString.h */
@interface NSString : NSObject <NSCopying, NSMutableCopying, NSSecureCoding>
@end

/* Foundation.framework/Versions/C/Headers/NSString.h */
@interface NSString (NSStringExtensionMethods)
@property (nullable, readonly) const char *UTF8String __attribute__((objc_returns_inner_pointer));
@end

/* MacOSX11.0.sdk/System/Library/Frameworks/Foundation.framework/Versions/C/Headers/NSError.h */
@interface NSError : NSObject <NSCopying, NSSecureCoding>
@property (readonly, copy) NSString *localizedDescription;
@end

/* Foundation.framework/Versions/C/Headers/NSException.h (not listed in
 * shared/apple_api.txt; read in the header itself) */
__attribute__((__objc_exception__))
@interface NSException : NSObject <NSCopying, NSSecureCoding>
@property (nullable, readonly, copy) NSString *reason;
@end

/* MacOSX10.14.sdk/System/Library/Frameworks/Foundation.framework/Versions/C/Headers/NSArray.h */
@interface NSArray<__covariant ObjectType> : NSObject <NSCopying, NSMutableCopying, NSSecureCoding, NSFastEnumeration>
@property (readonly) NSUInteger count;
- (ObjectType)objectAtIndex:(NSUInteger)index;
@end

/* MacOSX10.14.sdk/System/Library/Frameworks/Foundation.framework/Versions/C/Headers/NSArray.h */
@interface NSMutableArray<ObjectType> : NSArray<ObjectType>
- (void)addObject:(ObjectType)anObject;
@end

/* MacOSX10.14.sdk/System/Library/Frameworks/Foundation.framework/Versions/C/Headers/NSArray.h */
@interface NSMutableArray<ObjectType> (NSMutableArrayCreation)
+ (instancetype)arrayWithCapacity:(NSUInteger)numItems;
@end

#pragma clang assume_nonnull end

/* ======================================================================== */
/* libdispatch: dispatch/once.h (Apple's libdispatch, as published in      */
/* apple/swift-corelibs-libdispatch dispatch/once.h; intptr_t == long on    */
/* 64-bit macOS)                                                              */

#pragma clang assume_nonnull begin
typedef long dispatch_once_t;
void dispatch_once_f(dispatch_once_t *predicate, void *_Nullable context,
                     void (*function)(void *_Nullable));
#pragma clang assume_nonnull end

/* ======================================================================== */
/* Metal                                                                     */

#pragma clang assume_nonnull begin

/* Metal.framework/Versions/A/Headers/MTLResource.h */
typedef enum MTLStorageMode : NSUInteger {
    MTLStorageModeShared = 0,
    MTLStorageModeManaged MPSDECL_MACOS(10.11) = 1,
    MTLStorageModePrivate = 2,
} MTLStorageMode MPSDECL_MACOS(10.11);

/* Metal.framework/Versions/A/Headers/MTLResource.h (MTLResourceStorageModeShift is 4,
 * MTLResourceCPUCacheModeShift 0: both constants are 0) */
typedef enum MTLResourceOptions : NSUInteger {
    MTLResourceCPUCacheModeDefaultCache = 0,
    MTLResourceStorageModeShared MPSDECL_MACOS(10.11) = 0,
} MTLResourceOptions;

/* Metal.framework/Versions/A/Headers/MTLTypes.h */
typedef struct {
    NSUInteger x, y, z;
} MTLOrigin;

/* Metal.framework/Versions/A/Headers/MTLTypes.h */
typedef struct {
    NSUInteger width, height, depth;
} MTLSize;

/* Metal.framework/Versions/A/Headers/MTLCommandBuffer.h */
typedef enum MTLCommandBufferStatus : NSUInteger {
    MTLCommandBufferStatusNotEnqueued = 0,
    MTLCommandBufferStatusEnqueued = 1,
    MTLCommandBufferStatusCommitted = 2,
    MTLCommandBufferStatusScheduled = 3,
    MTLCommandBufferStatusCompleted = 4,
    MTLCommandBufferStatusError = 5,
} MTLCommandBufferStatus MPSDECL_MACOS(10.11);

@protocol MTLCommandQueue;
@protocol MTLCommandBuffer;
@protocol MTLBlitCommandEncoder;
@protocol MTLBuffer;

/* Metal.framework/Versions/A/Headers/MTLDevice.h */
MPSDECL_MACOS(10.11)
@protocol MTLDevice <NSObject>
- (nullable id<MTLCommandQueue>)newCommandQueue;
- (nullable id<MTLBuffer>)newBufferWithLength:(NSUInteger)length
                                      options:(MTLResourceOptions)options;
@property (readonly) uint64_t recommendedMaxWorkingSetSize MPSDECL_MACOS(10.12);
@property (readonly) NSUInteger maxBufferLength MPSDECL_MACOS(10.14);
@end

/* Metal.framework/Versions/A/Headers/MTLDevice.h (MTL_EXTERN ... NS_RETURNS_RETAINED) */
extern id<MTLDevice> _Nullable MTLCreateSystemDefaultDevice(void) MPSDECL_MACOS(10.11)
    __attribute__((ns_returns_retained));

/* Metal.framework/Versions/A/Headers/MTLResource.h */
MPSDECL_MACOS(10.11)
@protocol MTLResource <NSObject>
@property (readonly) MTLStorageMode storageMode MPSDECL_MACOS(10.11);
@end

/* Metal.framework/Versions/A/Headers/MTLBuffer.h */
MPSDECL_MACOS(10.11)
@protocol MTLBuffer <MTLResource>
@property (readonly) NSUInteger length;
- (void *)contents __attribute__((objc_returns_inner_pointer));
@end

/* Metal.framework/Versions/A/Headers/MTLTexture.h: members not used here. */
MPSDECL_MACOS(10.11)
@protocol MTLTexture <MTLResource>
@end

/* Metal.framework/Versions/A/Headers/MTLCommandEncoder.h */
MPSDECL_MACOS(10.11)
@protocol MTLCommandEncoder <NSObject>
- (void)endEncoding;
@end

/* Metal.framework/Versions/A/Headers/MTLBlitCommandEncoder.h */
MPSDECL_MACOS(10.11)
@protocol MTLBlitCommandEncoder <MTLCommandEncoder>
- (void)synchronizeResource:(id<MTLResource>)resource MPSDECL_MACOS(10.11);
- (void)copyFromBuffer:(id<MTLBuffer>)sourceBuffer
           sourceOffset:(NSUInteger)sourceOffset
      sourceBytesPerRow:(NSUInteger)sourceBytesPerRow
    sourceBytesPerImage:(NSUInteger)sourceBytesPerImage
             sourceSize:(MTLSize)sourceSize
              toTexture:(id<MTLTexture>)destinationTexture
       destinationSlice:(NSUInteger)destinationSlice
       destinationLevel:(NSUInteger)destinationLevel
      destinationOrigin:(MTLOrigin)destinationOrigin;
- (void)copyFromTexture:(id<MTLTexture>)sourceTexture
                 sourceSlice:(NSUInteger)sourceSlice
                 sourceLevel:(NSUInteger)sourceLevel
                sourceOrigin:(MTLOrigin)sourceOrigin
                  sourceSize:(MTLSize)sourceSize
                    toBuffer:(id<MTLBuffer>)destinationBuffer
           destinationOffset:(NSUInteger)destinationOffset
      destinationBytesPerRow:(NSUInteger)destinationBytesPerRow
    destinationBytesPerImage:(NSUInteger)destinationBytesPerImage;
@end

/* Metal.framework/Versions/A/Headers/MTLCommandQueue.h */
MPSDECL_MACOS(10.11)
@protocol MTLCommandQueue <NSObject>
- (nullable id<MTLCommandBuffer>)commandBuffer;
@end

/* Metal.framework/Versions/A/Headers/MTLCommandBuffer.h */
MPSDECL_MACOS(10.11)
@protocol MTLCommandBuffer <NSObject>
- (void)commit;
- (void)waitUntilCompleted;
@property (readonly) MTLCommandBufferStatus status;
@property (nullable, readonly) NSError *error;
- (nullable id<MTLBlitCommandEncoder>)blitCommandEncoder;
@property (readonly) CFTimeInterval GPUStartTime MPSDECL_MACOS(10.15);
@property (readonly) CFTimeInterval GPUEndTime MPSDECL_MACOS(10.15);
@end

#pragma clang assume_nonnull end

/* ======================================================================== */
/* MetalPerformanceShaders. MPS headers annotate nullability one by one     */
/* (no NS_ASSUME_NONNULL), and so does this section.                        */

/* MetalPerformanceShaders.framework/Frameworks/MPSCore.framework/Versions/A/Headers/MPSCoreTypes.h */
typedef enum MPSImageEdgeMode : NSUInteger {
    MPSImageEdgeModeZero MPSDECL_MACOS(10.13) = 0,
} MPSImageEdgeMode;

/* MetalPerformanceShaders.framework/Frameworks/MPSCore.framework/Versions/A/Headers/MPSCoreTypes.h */
typedef enum MPSImageFeatureChannelFormat : NSUInteger {
    MPSImageFeatureChannelFormatFloat16 MPSDECL_MACOS(10.13) = 3,
    MPSImageFeatureChannelFormatFloat32 MPSDECL_MACOS(10.13) = 4,
} MPSImageFeatureChannelFormat;

/* MetalPerformanceShaders.framework/Frameworks/MPSCore.framework/Versions/A/Headers/MPSKernel.h
 * (members not used here) */
MPSDECL_MACOS(10.13)
@interface MPSKernel : NSObject <NSCopying, NSSecureCoding>
@end

/* MetalPerformanceShaders.framework/Frameworks/MPSCore.framework/Versions/A/Headers/MPSImage.h */
MPSDECL_MACOS(10.13)
@interface MPSImageDescriptor : NSObject <NSCopying>
/* Default: MTLStorageModeManaged on macOS ("MTLStorageModeShared not supported") */
@property (readwrite, nonatomic) MTLStorageMode storageMode;
+ (_Nonnull instancetype)imageDescriptorWithChannelFormat:(MPSImageFeatureChannelFormat)channelFormat
                                                     width:(NSUInteger)width
                                                    height:(NSUInteger)height
                                           featureChannels:(NSUInteger)featureChannels;
@end

/* MetalPerformanceShaders.framework/Frameworks/MPSCore.framework/Versions/A/Headers/MPSImage.h */
MPSDECL_MACOS(10.13)
@interface MPSImage : NSObject
/* "Number of bytes from the first byte of one pixel to the first byte of the
 * next pixel in storage order. (Includes padding.)" */
@property (readonly, nonatomic) size_t pixelSize;
/* A 2D texture if numberOfImages is 1 and there are no more than 4 feature
 * channels, else a 2D texture array; allocated when first asked for. */
@property (readonly, nonnull, nonatomic) id<MTLTexture> texture;
- (nonnull instancetype)initWithDevice:(nonnull id<MTLDevice>)device
                       imageDescriptor:(const MPSImageDescriptor *_Nonnull)imageDescriptor;
@end

/* MetalPerformanceShaders.framework/Frameworks/MPSCore.framework/Versions/A/Headers/MPSImage.h */
MPSDECL_MACOS(10.13)
@interface MPSTemporaryImage : MPSImage
+ (nonnull instancetype)temporaryImageWithCommandBuffer:(nonnull id<MTLCommandBuffer>)commandBuffer
                                        imageDescriptor:(const MPSImageDescriptor *_Nonnull)imageDescriptor;
@property (readwrite, nonatomic) NSUInteger readCount;
@end

/* MetalPerformanceShaders.framework/Frameworks/MPSCore.framework/Versions/A/Headers/MPSImage.h */
typedef NSArray<MPSImage *> MPSImageBatch;

/* MetalPerformanceShaders.framework/Frameworks/MPSCore.framework/Versions/A/Headers/MPSState.h
 * (members not used here) */
MPSDECL_MACOS(10.13)
@interface MPSState : NSObject
@end

/* MetalPerformanceShaders.framework/Frameworks/MPSCore.framework/Versions/A/Headers/MPSState.h */
typedef NSArray<MPSState *> MPSStateBatch;

/* MetalPerformanceShaders.framework/Frameworks/MPSNeuralNetwork.framework/Versions/A/Headers/MPSNNGradientState.h */
MPSDECL_MACOS(10.13.4)
@interface MPSNNGradientState : MPSState
@end

/* MetalPerformanceShaders.framework/Frameworks/MPSNeuralNetwork.framework/Versions/A/Headers/MPSCNNKernel.h */
MPSDECL_MACOS(10.13)
@interface MPSCNNKernel : MPSKernel
@property (readwrite, nonatomic) MPSImageEdgeMode edgeMode;
- (void)encodeBatchToCommandBuffer:(nonnull id<MTLCommandBuffer>)commandBuffer
                      sourceImages:(MPSImageBatch *_Nonnull)sourceImages
                 destinationImages:(MPSImageBatch *_Nonnull)destinationImages
    MPSDECL_MACOS(10.13.4);
- (void)encodeBatchToCommandBuffer:(nonnull id<MTLCommandBuffer>)commandBuffer
                      sourceImages:(MPSImageBatch *_Nonnull)sourceImages
                 destinationStates:(MPSStateBatch *_Nullable)destinationStates
                 destinationImages:(MPSImageBatch *_Nonnull)destinationImages
    MPSDECL_MACOS(10.13.4);
- (MPSState *_Nullable)resultStateForSourceImage:(MPSImage *_Nonnull)sourceImage
                                     sourceStates:(NSArray<MPSState *> *_Nullable)sourceStates
                                 destinationImage:(MPSImage *_Nonnull)destinationImage
    MPSDECL_MACOS(10.13.4);
- (BOOL)isResultStateReusedAcrossBatch MPSDECL_MACOS(10.13.4);
@end

/* MetalPerformanceShaders.framework/Frameworks/MPSNeuralNetwork.framework/Versions/A/Headers/MPSCNNKernel.h */
MPSDECL_MACOS(10.13)
@interface MPSCNNBinaryKernel : MPSKernel
@property (readwrite, nonatomic) MPSImageEdgeMode primaryEdgeMode;
@property (readwrite, nonatomic) MPSImageEdgeMode secondaryEdgeMode;
@end

/* MetalPerformanceShaders.framework/Frameworks/MPSNeuralNetwork.framework/Versions/A/Headers/MPSCNNKernel.h */
MPSDECL_MACOS(10.13.4)
@interface MPSCNNGradientKernel : MPSCNNBinaryKernel
- (nonnull instancetype)initWithDevice:(nonnull id<MTLDevice>)device
    __attribute__((objc_designated_initializer));
- (void)encodeBatchToCommandBuffer:(_Nonnull id<MTLCommandBuffer>)commandBuffer
                   sourceGradients:(MPSImageBatch *_Nonnull)sourceGradients
                      sourceImages:(MPSImageBatch *_Nonnull)sourceImages
                    gradientStates:(MPSStateBatch *_Nonnull)gradientStates
              destinationGradients:(MPSImageBatch *_Nonnull)destinationGradients;
@end

/* MetalPerformanceShaders.framework/Frameworks/MPSNeuralNetwork.framework/Versions/A/Headers/MPSCNNNormalization.h */
MPSDECL_MACOS(10.13)
@interface MPSCNNLocalContrastNormalization : MPSCNNKernel
@property (readwrite, nonatomic) float alpha;
@property (readwrite, nonatomic) float beta;
@property (readwrite, nonatomic) float delta;
@property (readwrite, nonatomic) float p0;
@property (readwrite, nonatomic) float pm;
@property (readwrite, nonatomic) float ps;
- (nonnull instancetype)initWithDevice:(nonnull id<MTLDevice>)device
                           kernelWidth:(NSUInteger)kernelWidth
                          kernelHeight:(NSUInteger)kernelHeight
    __attribute__((objc_designated_initializer));
- (nonnull instancetype)initWithDevice:(nonnull id<MTLDevice>)device MPSDECL_UNAVAILABLE;
@end

/* MetalPerformanceShaders.framework/Frameworks/MPSNeuralNetwork.framework/Versions/A/Headers/MPSCNNNormalization.h */
MPSDECL_MACOS(10.13.4)
@interface MPSCNNLocalContrastNormalizationGradient : MPSCNNGradientKernel
@property (readwrite, nonatomic) float alpha;
@property (readwrite, nonatomic) float beta;
@property (readwrite, nonatomic) float delta;
@property (readwrite, nonatomic) float p0;
@property (readwrite, nonatomic) float pm;
@property (readwrite, nonatomic) float ps;
- (nonnull instancetype)initWithDevice:(nonnull id<MTLDevice>)device
                           kernelWidth:(NSUInteger)kernelWidth
                          kernelHeight:(NSUInteger)kernelHeight
    __attribute__((objc_designated_initializer));
@end

@class MPSCNNInstanceNormalization;

/* MetalPerformanceShaders.framework/Frameworks/MPSNeuralNetwork.framework/Versions/A/Headers/MPSCNNInstanceNormalization.h */
MPSDECL_MACOS(10.13.4)
@interface MPSCNNInstanceNormalizationGradientState : MPSNNGradientState
@property (readonly, nonatomic) _Nonnull id<MTLBuffer> gradientForGamma;
@property (readonly, nonatomic) _Nonnull id<MTLBuffer> gradientForBeta;
@end

/* MetalPerformanceShaders.framework/Frameworks/MPSNeuralNetwork.framework/Versions/A/Headers/MPSCNNInstanceNormalization.h
 * (MPS_CLASS_AVAILABLE_STARTING(macos(10.13.4), ...) on the protocol) */
MPSDECL_MACOS(10.13.4)
@protocol MPSCNNInstanceNormalizationDataSource <NSObject, NSCopying>
@required
- (float *_Nullable)gamma;
- (float *_Nullable)beta;
@property (readonly, nonatomic) NSUInteger numberOfFeatureChannels;
- (NSString *_Nullable)label;
@optional
- (float)epsilon;
@end

/* MetalPerformanceShaders.framework/Frameworks/MPSNeuralNetwork.framework/Versions/A/Headers/MPSCNNInstanceNormalization.h */
MPSDECL_MACOS(10.13.4)
@interface MPSCNNInstanceNormalization : MPSCNNKernel
@property (readwrite, nonatomic) float epsilon;
- (nonnull instancetype)initWithDevice:(nonnull id<MTLDevice>)device
                            dataSource:(nonnull id<MPSCNNInstanceNormalizationDataSource>)dataSource
    __attribute__((objc_designated_initializer));
- (nonnull instancetype)initWithDevice:(nonnull id<MTLDevice>)device MPSDECL_UNAVAILABLE;
- (MPSCNNInstanceNormalizationGradientState *_Nullable)
    resultStateForSourceImage:(MPSImage *_Nonnull)sourceImage
                 sourceStates:(NSArray<MPSState *> *_Nullable)sourceStates
             destinationImage:(MPSImage *_Nonnull)destinationImage;
@end

/* MetalPerformanceShaders.framework/Frameworks/MPSNeuralNetwork.framework/Versions/A/Headers/MPSCNNInstanceNormalization.h */
MPSDECL_MACOS(10.13.4)
@interface MPSCNNInstanceNormalizationGradient : MPSCNNGradientKernel
@end

/* MacOSX11.0.sdk/System/Library/Frameworks/MetalPerformanceShaders.framework/Versions/A/Headers/MetalPerformanceShaders.h */
BOOL MPSSupportsMTLDevice(_Nullable id<MTLDevice> device) MPSDECL_MACOS(10.13);

#endif /* MPSNORM_TESTS_MPS_DECLARATIONS_H */
