/*
 * lcn_small.h -- LCN forward and gradient of tiny planes, evaluated window by
 * window in double (lcn_small.c).
 *
 * The streamed kernels (kern_lcn.h) pay a fixed cost per plane (row groups
 * of a vector's lanes, anchors, transposes) that dominates planes of a few
 * dozen pixels: a whole (1,1,4,4) 3x3 gradient call from C took 1.5 us
 * streamed and 0.55 us here. The choice depends only on the plane's and the
 * window's shape, so a result still does not depend on threads or memory
 * order.
 */
#ifndef MPSNORM_CPU_LCN_SMALL_H
#define MPSNORM_CPU_LCN_SMALL_H

#include <stdint.h>

#include "kernels.h"

/* Planes of at most this many pixels may be small ones. */
#define MPSNORM_LCN_SMALL_PIXELS 64

/* Whether the job's planes are small: few pixels and few window terms. */
int mpsnorm_lcn_small_fits(const mpsnorm_lcn_job *job);

/* Planes [first, last) (plane = n * C + c) of a job that fits. */
void mpsnorm_lcn_small_planes(const mpsnorm_lcn_job *job, int64_t first, int64_t last);

#endif /* MPSNORM_CPU_LCN_SMALL_H */
