/*
 * fake_mps_image.m -- MPSImageDescriptor, MPSImage, MPSTemporaryImage and the
 * MTLTexture of an image, of mps_declarations.h, for the tests. Texels are
 * stored as MPSImage.h describes: feature channels 1 and 2 as one R / RG
 * texture, more as slices of 4 channels (RGBA) of a 2D texture array,
 * (C + 3) / 4 slices per image; float16 channels as half bits. So a wrong
 * slice, channel order, image index or bytes-per-row in a blit gives other
 * numbers.
 *
 * A texture is allocated at first use (MPSImage.h: "Creation of the
 * underlying texture may in some cases occur lazily") and poisoned (NaN). The
 * CPU never reads an image here: data moves through blits (fake_metal.m).
 * MPSTemporaryImage follows the header's rules: used on one command buffer
 * only, GPU-only (its texture is not for blits), readCount 1 by default and
 * decremented by each kernel read, reading or writing one at readCount 0 is
 * an error, and one released with a readCount above 0 is what Metal's
 * validation asserts on (counted in temporary_readcount_leaks).
 */
#include "fake.h"

#include <stdlib.h>
#include <string.h>

BOOL MPSSupportsMTLDevice(id<MTLDevice> device)
{
    return device != nil && !fake_setting_value(FAKE_device_unsupported);
}

@implementation MPSKernel

- (id)copyWithZone:(NSZone *)zone
{
    (void)zone;
    fake_raise("the fake MPS kernels are not copied"); /* objc/ never copies one */
}

@end

/* ---- descriptors ---------------------------------------------------------- */

@interface MPSImageDescriptor ()
@property (readonly) MPSImageFeatureChannelFormat format;
@property (readonly) NSUInteger width, height, channels;
- (instancetype)initWithFormat:(MPSImageFeatureChannelFormat)format
                         width:(NSUInteger)width
                        height:(NSUInteger)height
                      channels:(NSUInteger)channels;
@end

@implementation MPSImageDescriptor

- (instancetype)initWithFormat:(MPSImageFeatureChannelFormat)format
                         width:(NSUInteger)width
                        height:(NSUInteger)height
                      channels:(NSUInteger)channels
{
    self = [super init];
    _format = format;
    _width = width;
    _height = height;
    _channels = channels;
    _storageMode = MTLStorageModeManaged; /* MPSImage.h: the default on macOS */
    return self;
}

+ (instancetype)imageDescriptorWithChannelFormat:(MPSImageFeatureChannelFormat)channelFormat
                                           width:(NSUInteger)width
                                          height:(NSUInteger)height
                                 featureChannels:(NSUInteger)featureChannels
{
    if (fake_setting_value(FAKE_descriptor_nil))
        return nil;
    if (channelFormat != MPSImageFeatureChannelFormatFloat16 &&
        channelFormat != MPSImageFeatureChannelFormatFloat32)
        fake_raise("imageDescriptorWithChannelFormat: format %lu is not one the fake models",
                   (unsigned long)channelFormat);
    if (width == 0 || height == 0 || featureChannels == 0)
        fake_raise("imageDescriptorWithChannelFormat: a zero size (%lu x %lu x %lu)",
                   (unsigned long)width, (unsigned long)height, (unsigned long)featureChannels);
    return [[self alloc] initWithFormat:channelFormat
                                  width:width
                                 height:height
                               channels:featureChannels];
}

- (void)setStorageMode:(MTLStorageMode)storageMode
{
    if (storageMode == MTLStorageModeShared) /* MPSImage.h: "not supported on Mac OSX" */
        fake_raise("MPSImageDescriptor: MTLStorageModeShared is not supported on macOS");
    _storageMode = storageMode;
}

- (id)copyWithZone:(NSZone *)zone
{
    (void)zone;
    MPSImageDescriptor *copy = [[MPSImageDescriptor alloc] initWithFormat:_format
                                                                    width:_width
                                                                   height:_height
                                                                 channels:_channels];
    copy->_storageMode = _storageMode;
    return copy;
}

@end

/* ---- images --------------------------------------------------------------- */

/* The MTLTexture of an image: its storage, seen by blits. */
@interface FakeMTLTexture : NSObject <MTLTexture>
- (instancetype)initWithImage:(MPSImage *)image;
@property (readonly) MPSImage *image;
- (BOOL)fakeIsTexture;
@end

@interface MPSImage ()
- (instancetype)initWithDescriptor:(const MPSImageDescriptor *)imageDescriptor;
- (void)countAllocation;
@end

@implementation MPSImage {
    MPSImageFeatureChannelFormat _format;
    MTLStorageMode _mode;
    NSUInteger _width, _height, _channels;
    NSUInteger _slices;        /* texture slices of one image */
    NSUInteger _pixelChannels; /* channels of one texel: 1, 2 or 4 */
    size_t _element;           /* bytes of one channel value */
    size_t _bytes;             /* of the whole texture */
    unsigned char *_texels;    /* the GPU's; NULL until first use */
}

- (instancetype)initWithDescriptor:(const MPSImageDescriptor *)imageDescriptor
{
    self = [super init];
    MPSImageDescriptor *descriptor = (MPSImageDescriptor *)imageDescriptor;
    _format = [descriptor format];
    _mode = [descriptor storageMode];
    _width = [descriptor width];
    _height = [descriptor height];
    _channels = [descriptor channels];
    _slices = (_channels + 3) / 4;
    _pixelChannels = _channels <= 2 ? _channels : 4;
    _element = _format == MPSImageFeatureChannelFormatFloat16 ? 2 : 4;
    _bytes = _slices * _height * _width * _pixelChannels * _element;
    return self;
}

- (instancetype)initWithDevice:(id<MTLDevice>)device
               imageDescriptor:(const MPSImageDescriptor *)imageDescriptor
{
    if (fake_image_init_should_fail())
        return nil;
    if (device == nil || imageDescriptor == nil)
        fake_raise("-[MPSImage initWithDevice:imageDescriptor:]: nil argument");
    self = [self initWithDescriptor:imageDescriptor];
    fake_count(FAKE_COUNT_images, 1);
    return self;
}

- (void)dealloc
{
    free(_texels);
}

/* Allocates the texels at first use, poisoned (uninitialized memory). */
- (void)allocateStorage
{
    if (_texels != NULL)
        return;
    _texels = malloc(_bytes);
    if (_texels == NULL)
        abort();
    memset(_texels, 0xff, _bytes); /* NaN in float32 and float16 */
    [self countAllocation];
}

- (void)countAllocation
{
    fake_count(FAKE_COUNT_textures, 1);
    fake_count(FAKE_COUNT_texture_bytes, (int64_t)_bytes);
}

- (size_t)pixelSize
{
    return _pixelChannels * _element;
}

- (id<MTLTexture>)texture
{
    if (fake_setting_value(FAKE_texture_nil))
        return (id<MTLTexture>)nil; /* declared nonnull; an allocation that failed */
    [self allocateStorage];
    return [[FakeMTLTexture alloc] initWithImage:self];
}

/* Byte offset of channel c of pixel (y, x) in the texture. */
- (size_t)texelOffsetOfChannel:(NSUInteger)c y:(NSUInteger)y x:(NSUInteger)x
{
    NSUInteger slice = c / 4, lane = c % 4;
    return (((slice * _height + y) * _width + x) * _pixelChannels + lane) * _element;
}

/* Copies between texels and planes (C x H x W of the channel format). */
- (void)copyTexelsWithPlanes:(unsigned char *)planes toTexels:(BOOL)to_texels
{
    for (NSUInteger c = 0; c < _channels; c++)
        for (NSUInteger y = 0; y < _height; y++)
            for (NSUInteger x = 0; x < _width; x++) {
                unsigned char *texel = _texels + [self texelOffsetOfChannel:c y:y x:x];
                unsigned char *value = planes + ((c * _height + y) * _width + x) * _element;
                if (to_texels)
                    memcpy(texel, value, _element);
                else
                    memcpy(value, texel, _element);
            }
}

@end

@implementation MPSImage (FakeGPU)

- (NSUInteger)fakeWidth
{
    return _width;
}

- (NSUInteger)fakeHeight
{
    return _height;
}

- (NSUInteger)fakeChannels
{
    return _channels;
}

- (MPSImageFeatureChannelFormat)fakeFormat
{
    return _format;
}

- (MTLStorageMode)fakeStorageMode
{
    return _mode;
}

- (NSUInteger)fakeSlices
{
    return _slices;
}

- (void)fakeGPURead:(void *)planes
{
    [self allocateStorage];
    [self copyTexelsWithPlanes:planes toTexels:NO];
}

- (void)fakeGPUWrite:(const void *)planes
{
    [self allocateStorage];
    [self copyTexelsWithPlanes:(unsigned char *)planes toTexels:YES];
}

- (void)fakeUseOn:(id<MTLCommandBuffer>)commandBuffer read:(BOOL)read
{
    (void)commandBuffer, (void)read; /* only temporary images keep count */
}

- (void)fakeGPUCopySlice:(NSUInteger)slice
                    rows:(unsigned char *)rows
             bytesPerRow:(NSUInteger)bytesPerRow
                toTexels:(BOOL)toTexels
{
    [self allocateStorage];
    const size_t row = _width * _pixelChannels * _element;
    for (NSUInteger y = 0; y < _height; y++) {
        unsigned char *texels = _texels + (slice * _height + y) * row;
        if (toTexels)
            memcpy(texels, rows + y * bytesPerRow, row);
        else
            memcpy(rows + y * bytesPerRow, texels, row);
    }
}

@end

@implementation FakeMTLTexture

- (instancetype)initWithImage:(MPSImage *)image
{
    self = [super init];
    _image = image;
    return self;
}

- (MTLStorageMode)storageMode
{
    return [_image fakeStorageMode];
}

- (BOOL)fakeIsTexture
{
    return YES;
}

@end

MPSImage *fake_texture_image(id<MTLTexture> texture)
{
    if (![texture respondsToSelector:@selector(fakeIsTexture)])
        fake_raise("a blit was given a texture the fake did not make");
    return [(FakeMTLTexture *)texture image];
}

/* ---- temporary images ------------------------------------------------------ */

@implementation MPSTemporaryImage {
    __unsafe_unretained id<MTLCommandBuffer> _commandBuffer; /* compared, never used */
}

+ (instancetype)temporaryImageWithCommandBuffer:(id<MTLCommandBuffer>)commandBuffer
                                imageDescriptor:(const MPSImageDescriptor *)imageDescriptor
{
    if (commandBuffer == nil || imageDescriptor == nil)
        fake_raise("+[MPSTemporaryImage temporaryImageWithCommandBuffer:imageDescriptor:]: nil "
                   "argument");
    MPSTemporaryImage *image = [[self alloc] initWithDescriptor:imageDescriptor];
    image->_commandBuffer = commandBuffer;
    image->_readCount = 1; /* MPSImage.h: "By default, the readCount is initialized to 1" */
    fake_count(FAKE_COUNT_temporary_images, 1);
    return image;
}

- (void)dealloc
{
    if (_readCount > 0)
        fake_count(FAKE_COUNT_temporary_readcount_leaks, 1);
}

- (void)countAllocation
{
    /* MPS's heap, not a texture allocation */
}

- (void)setReadCount:(NSUInteger)readCount
{
    if (_readCount == 0) /* MPSImage.h: "it is an error to change the readCount once it is zero" */
        fake_raise("MPSTemporaryImage: readCount changed after it reached 0");
    _readCount = readCount;
}

- (id<MTLTexture>)texture
{
    fake_raise("MPSTemporaryImage: its texture is not for blits here (heap memory, fences)");
}

- (void)fakeUseOn:(id<MTLCommandBuffer>)commandBuffer read:(BOOL)read
{
    if (_commandBuffer != commandBuffer)
        fake_raise("MPSTemporaryImage used on another command buffer than its own");
    if (_readCount == 0)
        fake_raise("MPSTemporaryImage %s with a readCount of 0", read ? "read" : "written");
    if (read) /* MPSImage.h: "each time a MPSTemporaryImage is read ... decremented" */
        _readCount--;
}

@end
