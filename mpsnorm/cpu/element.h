/*
 * element.h -- where an element of a tensor is, one element as a double, and
 * a double rounded once (to nearest even) into one: for the loops that go
 * element by element (instance norm's small reductions, LCN's tiny planes)
 * and the kernels' row offsets (kern_io.h).
 */
#ifndef MPSNORM_CPU_ELEMENT_H
#define MPSNORM_CPU_ELEMENT_H

#include <stdint.h>

#include "half.h"
#include "mpsnorm.h"

/* Element offset of (n, c, j, i) in t. */
static inline int64_t mpsnorm_element_offset(const mpsnorm_tensor *t, int64_t n, int64_t c,
                                             int64_t j, int64_t i)
{
    return n * t->strides[0] + c * t->strides[1] + j * t->strides[2] + i * t->strides[3];
}

/* The element at `offset` of t, widened exactly to double. */
static inline double mpsnorm_element_read(const mpsnorm_tensor *t, int64_t offset)
{
    switch (t->dtype) {
    case MPSNORM_FLOAT64:
        return ((const double *)t->data)[offset];
    case MPSNORM_FLOAT32:
        return (double)((const float *)t->data)[offset];
    default:
        return mpsnorm_half_to_double(((const uint16_t *)t->data)[offset]);
    }
}

/* value rounded once to t's dtype, at `offset` of t. */
static inline void mpsnorm_element_write(const mpsnorm_tensor *t, int64_t offset, double value)
{
    switch (t->dtype) {
    case MPSNORM_FLOAT64:
        ((double *)t->data)[offset] = value;
        break;
    case MPSNORM_FLOAT32:
        ((float *)t->data)[offset] = (float)value;
        break;
    default:
        ((uint16_t *)t->data)[offset] = mpsnorm_half_from_double(value);
        break;
    }
}

#endif /* MPSNORM_CPU_ELEMENT_H */
