/*
 * pairwise_sum.h -- deterministic pairwise summation of double arrays.
 *
 * Blocks of up to 128 elements are summed with 8 interleaved accumulators
 * (vectorizable), and blocks are combined pairwise, so the rounding error
 * grows like log(n) rather than n. The order depends only on n: the same
 * input gives the same bits every time.
 */
#ifndef MPSNORM_CPU_PAIRWISE_SUM_H
#define MPSNORM_CPU_PAIRWISE_SUM_H

#include <stdint.h>

/* sum of x[k] */
double mpsnorm_pairwise_sum(const double *x, int64_t n);
/* sum of x[k] * y[k] */
double mpsnorm_pairwise_dot(const double *x, const double *y, int64_t n);
/* sum of (x[k] - shift)^2 */
double mpsnorm_pairwise_sumsq(const double *x, double shift, int64_t n);

#endif /* MPSNORM_CPU_PAIRWISE_SUM_H */
