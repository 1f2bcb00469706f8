/*
 * box_sum.h -- zero-padded box sums of a contiguous H x W plane of doubles.
 *
 *   out(j, i) = sum of in(r, q) over rows r in [j - up, j + down] and
 *               columns q in [i - left, i + right], pixels outside the plane
 *               reading as 0.
 *
 * O(1) per pixel whatever the window: separable (rows, then columns), each
 * 1-D pass cuts the padded line into blocks of the window length L and adds
 * a within-block suffix sum and a within-block prefix sum. Every window sum is
 * therefore a sum of exactly the window's own elements -- no subtraction of
 * running totals, so no cancellation and a non-finite value only reaches the
 * windows that contain it.
 */
#ifndef MPSNORM_CPU_BOX_SUM_H
#define MPSNORM_CPU_BOX_SUM_H

#include <stdint.h>

/* Doubles of scratch mpsnorm_box_sum needs for an h x w plane, or -1 if that
 * count overflows int64. */
int64_t mpsnorm_box_scratch_size(int64_t h, int64_t w);

/* out may equal in (in-place); scratch must not overlap either. Window
 * extents are >= 0 and may be larger than the plane. */
void mpsnorm_box_sum(const double *in, double *out, int64_t h, int64_t w, int64_t left,
                     int64_t right, int64_t up, int64_t down, double *scratch);

#endif /* MPSNORM_CPU_BOX_SUM_H */
