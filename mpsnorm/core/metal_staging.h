/*
 * metal_staging.h -- tensors to and from the texel layout of MPSImage
 * textures, in one parallel pass each way. Plain C, tested everywhere.
 *
 * MPSImage.h: an image of C feature channels is a texture (an array of
 * slices when it needs more than one) whose texels hold 4 consecutive
 * channels each: slice s, texel (j, i) holds channels 4s .. 4s+3 of pixel
 * (j, i); the channels past C in the last slice are padding, which "should
 * not contain NaNs or Infs". A texture of an image with fewer channels may
 * use fewer components a texel (its pixel size says how many). The Metal
 * backend copies a caller's tensor, whatever its strides, straight into a
 * buffer in this layout (padding zeroed), which the GPU then copies into the
 * textures, and back the same way: one copy per tensor on the CPU.
 */
#ifndef MPSNORM_CORE_METAL_STAGING_H
#define MPSNORM_CORE_METAL_STAGING_H

#include <stddef.h>
#include <stdint.h>

#include "mpsnorm.h"

typedef struct mpsnorm_texel_layout {
    int64_t c, h, w;      /* channels and size of one image */
    int64_t components;   /* channels a texel holds: 1, 2 or 4 */
    int64_t slices;       /* texture slices an image takes */
    size_t item;          /* bytes of a channel value: 4 (float32) or 2 (float16) */
    size_t row_bytes;     /* one row of texels of one slice */
    size_t slice_bytes;   /* one slice of one image */
    size_t image_bytes;   /* every slice of one image */
} mpsnorm_texel_layout;

/*
 * The layout of the images of tensor t (dtype float32 or float16) in textures
 * of `components` channels a texel. MPSNORM_OK, or INVALID_PARAMETER when
 * components is not 1, 2 or 4, or is smaller than C while not 4.
 */
int mpsnorm_texel_layout_of(const mpsnorm_tensor *t, int64_t components,
                            mpsnorm_texel_layout *layout);

/* Images [first, first + count) of t into staging (image `first` at offset 0,
 * slices in order), padding channels zero. Runs on the CPU backend's threads. */
void mpsnorm_metal_pack(const mpsnorm_tensor *t, int64_t first, int64_t count,
                        const mpsnorm_texel_layout *layout, void *staging);

/* The reverse: staging into images [first, first + count) of t. */
void mpsnorm_metal_unpack(const void *staging, int64_t first, int64_t count,
                          const mpsnorm_texel_layout *layout, const mpsnorm_tensor *t);

#endif /* MPSNORM_CORE_METAL_STAGING_H */
