/*
 * plane_io.h -- move one (n, c) plane of a tensor between its storage (any
 * dtype, any element strides, negative too) and a contiguous row-major
 * H x W scratch plane of doubles.
 */
#ifndef MPSNORM_CPU_PLANE_IO_H
#define MPSNORM_CPU_PLANE_IO_H

#include <stdint.h>

#include "mpsnorm.h"

/* dst[j*W + i] = tensor(n, c, j, i), widened exactly to double. */
void mpsnorm_plane_load(const mpsnorm_tensor *tensor, int64_t n, int64_t c, double *dst);

/* tensor(n, c, j, i) = src[j*W + i], rounded to the tensor's dtype
 * (round to nearest even). */
void mpsnorm_plane_store(const mpsnorm_tensor *tensor, int64_t n, int64_t c, const double *src);

#endif /* MPSNORM_CPU_PLANE_IO_H */
