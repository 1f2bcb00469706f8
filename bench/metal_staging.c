/*
 * metal_staging.c -- the Metal backend's staging (mpsnorm/core/metal_staging.h)
 * as a small shared library for bench/test_metal_staging.py, which times it
 * beside memcpy of the same bytes. Staging is plain C, so it is measured here
 * on any machine; the GPU side of a Metal call is not.
 */
#include <string.h>

#include "metal_staging.h"

/* Packs (pack = 1) a tensor into staging in the texel layout of 4 channels a
 * texel, or unpacks (pack = 0) staging into it. Returns the staging bytes, or
 * 0 for a layout it cannot describe. */
size_t staging_bench_run(void *data, int dtype, const int64_t *shape, const int64_t *strides,
                         void *staging, int pack)
{
    mpsnorm_tensor tensor;
    mpsnorm_texel_layout layout;
    tensor.data = data;
    tensor.dtype = dtype;
    memcpy(tensor.shape, shape, sizeof tensor.shape);
    memcpy(tensor.strides, strides, sizeof tensor.strides);
    if (mpsnorm_texel_layout_of(&tensor, 4, &layout) != MPSNORM_OK)
        return 0;
    if (pack)
        mpsnorm_metal_pack(&tensor, 0, shape[0], &layout, staging);
    else
        mpsnorm_metal_unpack(staging, 0, shape[0], &layout, &tensor);
    return layout.image_bytes * (size_t)shape[0];
}

/* memcpy of the same bytes, the bound staging is measured against. */
void staging_bench_copy(void *destination, const void *source, size_t bytes)
{
    memcpy(destination, source, bytes);
}
