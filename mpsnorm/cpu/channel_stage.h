/*
 * channel_stage.h -- planar copies of a few channels of a band of rows.
 *
 * In channel-interleaved memory (NHWC) the row of one channel is a gather at
 * stride C: a cache line per pixel, and an element loop. A kernel that works
 * a plane at a time instead copies the band of rows it needs, for a group of
 * channels, into planar rows once (reading memory in order), runs every plane
 * of the group on those rows, and copies its output rows back the same way.
 *
 * Staged rows are laid out channel by channel: element (channel c0 + k,
 * row r0 + j, column i) at k * mpsnorm_stage_plane(rows, w) + j * w + i, in
 * the tensor's dtype.
 */
#ifndef MPSNORM_CPU_CHANNEL_STAGE_H
#define MPSNORM_CPU_CHANNEL_STAGE_H

#include <stdint.h>

#include "mpsnorm.h"

typedef struct mpsnorm_stage {
    int64_t n, c0, channels; /* image n, channels [c0, c0 + channels) */
    int64_t r0, rows;        /* rows [r0, r0 + rows) */
} mpsnorm_stage;

/* Elements from one staged channel to the next: rows * w and a little more,
 * so that the channels' rows, copied side by side, do not fall on the same
 * cache sets (rows * w is often a multiple of 4 KiB). -1 on overflow. */
int64_t mpsnorm_stage_plane(int64_t rows, int64_t w);

/* Copies the staged part of t into `planes` (channels * mpsnorm_stage_plane
 * elements). */
void mpsnorm_stage_in(const mpsnorm_tensor *t, const mpsnorm_stage *stage, void *planes);

/* Copies rows [r_begin, r_end) (inside the staged rows) of `planes` back
 * into t. */
void mpsnorm_stage_out(const mpsnorm_tensor *t, const mpsnorm_stage *stage, const void *planes,
                       int64_t r_begin, int64_t r_end);

/* A descriptor that addresses the staged elements by their (n, c, r, i) in t,
 * for code written against t: same dtype and shape, unit column stride. Only
 * the staged elements may be read or written through it. */
void mpsnorm_stage_view(const mpsnorm_tensor *t, const mpsnorm_stage *stage, void *planes,
                        mpsnorm_tensor *view);

#endif /* MPSNORM_CPU_CHANNEL_STAGE_H */
