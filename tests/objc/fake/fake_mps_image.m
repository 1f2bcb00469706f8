/*
 * fake_mps_image.m -- MPSImageDescriptor and MPSImage of mps_declarations.h
 * for the tests, storing texels as MPSImage.h describes: feature channels 1
 * and 2 as one R / RG texture, more as slices of 4 channels (RGBA) of a 2D
 * texture array, (C + 3) / 4 slices per image; float16 channels as half bits.
 * So a wrong dataLayout, channel order or image index reads other numbers.
 *
 * Storage is allocated at first use (MPSImage.h: "the texture is not
 * allocated until it is needed"). Storage is managed, as MPSImage's default
 * on macOS: writeBytes reaches both copies, GPU writes only the GPU's, and
 * readBytes reads the CPU's, which holds the GPU's results only after a
 * synchronizeOnCommandBuffer: encoded before commit; otherwise it reads what
 * was there before (poison after allocation) and counts a stale read.
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

- (id)copyWithZone:(NSZone *)zone
{
    (void)zone;
    return [[MPSImageDescriptor alloc] initWithFormat:_format
                                                width:_width
                                               height:_height
                                             channels:_channels];
}

@end

/* ---- images --------------------------------------------------------------- */


@implementation MPSImage {
    MPSImageFeatureChannelFormat _format;
    NSUInteger _width, _height, _channels;
    NSUInteger _slices;        /* texture slices of one image */
    NSUInteger _pixelChannels; /* channels of one texel: 1, 2 or 4 */
    size_t _element;           /* bytes of one channel value */
    size_t _bytes;             /* of the whole texture */
    unsigned char *_gpu;       /* NULL until first use */
    unsigned char *_cpu;
    BOOL _gpuWroteSinceSync;
}

- (instancetype)initWithDevice:(id<MTLDevice>)device
               imageDescriptor:(const MPSImageDescriptor *)imageDescriptor
{
    self = [super init];
    if (fake_image_init_should_fail())
        return nil;
    if (device == nil || imageDescriptor == nil)
        fake_raise("-[MPSImage initWithDevice:imageDescriptor:]: nil argument");
    MPSImageDescriptor *descriptor = (MPSImageDescriptor *)imageDescriptor;
    _format = [descriptor format];
    _width = [descriptor width];
    _height = [descriptor height];
    _channels = [descriptor channels];
    _slices = (_channels + 3) / 4;
    _pixelChannels = _channels <= 2 ? _channels : 4;
    _element = _format == MPSImageFeatureChannelFormatFloat16 ? 2 : 4;
    _bytes = _slices * _height * _width * _pixelChannels * _element;
    fake_count(FAKE_COUNT_images, 1);
    return self;
}

- (void)dealloc
{
    free(_gpu);
    free(_cpu);
}

/* Allocates both copies at first use, poisoned (uninitialized memory). */
- (void)allocateStorage
{
    if (_gpu != NULL)
        return;
    _gpu = malloc(_bytes);
    _cpu = malloc(_bytes);
    if (_gpu == NULL || _cpu == NULL)
        abort();
    memset(_gpu, 0xff, _bytes); /* NaN in float32 and float16 */
    memset(_cpu, 0xff, _bytes);
    fake_count(FAKE_COUNT_textures, 1);
    fake_count(FAKE_COUNT_texture_bytes, (int64_t)_bytes);
}

/* Byte offset of channel c of pixel (y, x) in the texture. */
- (size_t)texelOffsetOfChannel:(NSUInteger)c y:(NSUInteger)y x:(NSUInteger)x
{
    NSUInteger slice = c / 4, lane = c % 4;
    return (((slice * _height + y) * _width + x) * _pixelChannels + lane) * _element;
}

/* Byte offset of channel c of pixel (y, x) in caller memory of this layout. */
- (size_t)callerOffsetOfChannel:(NSUInteger)c
                              y:(NSUInteger)y
                              x:(NSUInteger)x
                         layout:(MPSDataLayout)layout
{
    if (layout == MPSDataLayoutHeightxWidthxFeatureChannels)
        return ((y * _width + x) * _channels + c) * _element;
    return ((c * _height + y) * _width + x) * _element;
}

- (void)checkLayout:(MPSDataLayout)layout index:(NSUInteger)imageIndex what:(const char *)what
{
    if (layout != MPSDataLayoutHeightxWidthxFeatureChannels &&
        layout != MPSDataLayoutFeatureChannelsxHeightxWidth)
        fake_raise("-[MPSImage %s]: unknown dataLayout %lu", what, (unsigned long)layout);
    if (imageIndex != 0) /* numberOfImages is 1 for every image the fake makes */
        fake_raise("-[MPSImage %s]: imageIndex %lu of an image of 1 image", what,
                   (unsigned long)imageIndex);
}

/* Copies between texels and memory in `layout` (to_texels: which way). */
- (void)copyTexels:(unsigned char *)texels
            memory:(unsigned char *)memory
            layout:(MPSDataLayout)layout
         toTexels:(BOOL)to_texels
{
    for (NSUInteger c = 0; c < _channels; c++)
        for (NSUInteger y = 0; y < _height; y++)
            for (NSUInteger x = 0; x < _width; x++) {
                unsigned char *texel = texels + [self texelOffsetOfChannel:c y:y x:x];
                unsigned char *value = memory + [self callerOffsetOfChannel:c y:y x:x layout:layout];
                if (to_texels)
                    memcpy(texel, value, _element);
                else
                    memcpy(value, texel, _element);
            }
}

- (void)writeBytes:(const void *)dataBytes
        dataLayout:(MPSDataLayout)dataLayout
        imageIndex:(NSUInteger)imageIndex
{
    [self checkLayout:dataLayout index:imageIndex what:"writeBytes:dataLayout:imageIndex:"];
    [self allocateStorage];
    /* a CPU write of a managed texture reaches the GPU's copy too */
    [self copyTexels:_cpu memory:(unsigned char *)dataBytes layout:dataLayout toTexels:YES];
    memcpy(_gpu, _cpu, _bytes);
    _gpuWroteSinceSync = NO;
    fake_count(FAKE_COUNT_bytes_written, (int64_t)(_channels * _height * _width * _element));
}

- (void)readBytes:(void *)dataBytes
       dataLayout:(MPSDataLayout)dataLayout
       imageIndex:(NSUInteger)imageIndex
{
    [self checkLayout:dataLayout index:imageIndex what:"readBytes:dataLayout:imageIndex:"];
    [self allocateStorage];
    if (_gpuWroteSinceSync)
        fake_count(FAKE_COUNT_stale_reads, 1);
    [self copyTexels:_cpu memory:dataBytes layout:dataLayout toTexels:NO];
    fake_count(FAKE_COUNT_bytes_read, (int64_t)(_channels * _height * _width * _element));
}

- (void)synchronizeOnCommandBuffer:(id<MTLCommandBuffer>)commandBuffer
{
    fake_count(FAKE_COUNT_image_synchronizations, 1);
    fake_encode(commandBuffer, fake_synchronization(self));
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

- (void)fakeGPURead:(void *)planes
{
    [self allocateStorage];
    [self copyTexels:_gpu
              memory:planes
              layout:MPSDataLayoutFeatureChannelsxHeightxWidth
            toTexels:NO];
}

- (void)fakeGPUWrite:(const void *)planes
{
    [self allocateStorage];
    [self copyTexels:_gpu
              memory:(unsigned char *)planes
              layout:MPSDataLayoutFeatureChannelsxHeightxWidth
            toTexels:YES];
    _gpuWroteSinceSync = YES;
}

- (void)fakeGPUSynchronize
{
    [self allocateStorage];
    memcpy(_cpu, _gpu, _bytes);
    _gpuWroteSinceSync = NO;
}

@end
