/*
 * lcn.c -- local contrast normalization, forward and gradient, on the CPU
 * (the driver: job set-up, scratch layout, bands and threads; the loops are
 * in kern_lcn.h, kern_lcn_typed.h and kern_box.h).
 *
 * Tasks are (plane, band) pairs, bands being runs of band_rows output rows
 * fixed by the shape. A worker gets a contiguous range of tasks and streams
 * the consecutive bands of one plane as a single run of rows, so a plane
 * costs one halo per worker; planes wider than LCN_TILE_MIN_WIDTH are run in
 * column tiles, each its own stream, so the scratch does not grow with the
 * width. In channel-interleaved memory (NHWC) a task is instead a group of
 * channels of one band: their rows, with the windows' halo, are staged into
 * planar rows (channel_stage.h), the group's planes run on them, writing
 * their output over their staged X rows, and the output rows are staged
 * back. Every output value is computed by the same operations in the same
 * order wherever the run or tile starts (window sums anchored to the plane),
 * so results are bitwise identical for any thread count and either memory
 * order. Tiny planes (lcn_small.h) are evaluated window by window instead:
 * the streams' fixed cost per plane would dominate them.
 */
#include <assert.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "channel_stage.h"
#include "kernels.h"
#include "lcn_small.h"
#include "scratch.h"
#include "threads.h"

/* A band has at least this many rows, and at least LCN_BAND_ELEMENTS pixels. */
#define LCN_BAND_MIN_ROWS 16
#define LCN_BAND_ELEMENTS ((int64_t)1 << 16)
/* Output rows per strip: at least 32, more for narrow planes. */
#define LCN_STRIP_ROWS 16
#define LCN_STRIP_ELEMENTS 4096
#define LCN_ALIGN 64
/* Planes wider than LCN_TILE_MIN_WIDTH are cut into column tiles of
 * LCN_TILE_COLUMNS output columns, so a worker's rows of scratch stay in its
 * cache whatever the width (each tile recomputes a margin of about three
 * window widths: worth it only when that is small against the tile). */
#define LCN_TILE_MIN_WIDTH 1024
#define LCN_TILE_COLUMNS 512
/* The widest vector of any kernel table (AVX-512). */
#define LCN_VECTOR_BYTES 64
/* Scratch of a small one-worker call, on the caller's stack. */
#define LCN_LOCAL_DOUBLES 2048
/* Channel-interleaved memory: channels per staged group, output rows per
 * band (at least four halos), and the most staging a worker may hold (else
 * the planes read their rows in place, strided). A group's band is staged
 * with its halo rows, which each band computes again: taller bands cost less
 * work and more scratch. Measured on (4,16,256,256) float32 9x9 gradients,
 * one thread: 8 channels by 64 rows ran at 1.2x the planar time with 22% of
 * a tensor in scratch (2 threads), 4 by 96 at 1.3x, 8 by 32 at 1.4x. */
#define LCN_STAGE_CHANNELS 8
#define LCN_STAGE_BAND_ROWS 64
#define LCN_STAGE_MAX_BYTES ((int64_t)4 << 20)

typedef struct lcn_run {
    mpsnorm_lcn_job job;
    mpsnorm_lcn_layout layout;
    const mpsnorm_kernels *kernels;
    mpsnorm_scratch scratch;
    /* staged path (channel-interleaved memory): groups of channels per band,
     * the rows of x and of dy staged beyond a band above and below, and the
     * bytes of the staged rows of x (then of the output) and of dy, in that
     * order after the kernels' scratch */
    int staged;
    int64_t groups;
    int64_t x_above, x_below, dy_above, dy_below;
    size_t stage_x_bytes, stage_dy_bytes;
} lcn_run;

/* offset of the next section of `bytes`, or -1 on overflow */
static int64_t take(int64_t *total, int64_t bytes)
{
    int64_t at = *total;
    if (bytes < 0 || at < 0 || bytes > INT64_MAX - at - LCN_ALIGN) {
        *total = -1;
        return -1;
    }
    *total = (at + bytes + LCN_ALIGN - 1) / LCN_ALIGN * LCN_ALIGN;
    return at;
}

/* rows * pitch * size; mpsnorm_lcn_layout_of has checked that no section
 * exceeds 2^56 bytes (and their sum fits) before calling this */
static int64_t rows_bytes(int64_t rows, int64_t pitch, int64_t size)
{
    return rows * pitch * size;
}

/* 1 if the kernels use rows of t in place whatever their vector width
 * (kern_lcn.h lc_direct, for vectors of up to 16 elements); staged tensors
 * are read and written through planar copies with unit column stride. */
static int in_place(const mpsnorm_lcn_job *job, const mpsnorm_tensor *t)
{
    const int wide = job->dtype == MPSNORM_FLOAT64;
    return t != NULL && t->dtype == (wide ? MPSNORM_FLOAT64 : MPSNORM_FLOAT32) &&
           (job->staged || t->strides[3] == 1) && t->shape[3] % 16 == 0;
}

int64_t mpsnorm_lcn_layout_of(const mpsnorm_lcn_job *job, mpsnorm_lcn_layout *lay)
{
    const int grad = job->gradient, squares = job->alpha != 0.0;
    const int64_t ts = job->dtype == MPSNORM_FLOAT64 ? 8 : 4;
    int64_t total = 0, pitch, cap, temp, strip, vlen, hlen, q, g, groups, walk, columns;
    int64_t line_len;

    memset(lay, 0, sizeof *lay);
    if (job->w > INT64_MAX / 4 || job->tile_columns < 1)
        return -1;
    /* the widest tile's buffers, in whole vectors of any table */
    {
        mpsnorm_lcn_tile tile;
        int64_t c0;
        pitch = 16;
        for (c0 = 0; c0 < job->w; c0 += job->tile_columns) {
            const int64_t c1 = job->w - c0 < job->tile_columns ? job->w : c0 + job->tile_columns;
            mpsnorm_lcn_tile_of(job, 16, c0, c1, &tile);
            if (tile.span > pitch)
                pitch = tile.span;
        }
        pitch = (pitch + 15) / 16 * 16;
    }
    vlen = mpsnorm_window_reach(job->up, job->h) + mpsnorm_window_reach(job->down, job->h) + 1;
    hlen = mpsnorm_window_reach(job->left, job->w) +
           mpsnorm_window_reach(job->right, job->w) + 1;
    strip = LCN_STRIP_ELEMENTS / pitch;
    if (strip < LCN_STRIP_ROWS)
        strip = LCN_STRIP_ROWS;
    if (strip > job->h)
        strip = job->h;
    if (vlen > INT64_MAX / 4 - strip)
        return -1;
    cap = strip + 2 * vlen + 2;
    temp = strip + vlen + 1;
    /* every section is at most (cap + 3*vlen + 64) rows of (pitch + hlen) doubles */
    {
        int64_t rows_max = mpsnorm_size_mad(3, vlen, cap + 64);
        int64_t bytes_max = rows_max < 0 ? -1 : mpsnorm_size_mad(rows_max, pitch + hlen, 0);
        if (bytes_max < 0 || bytes_max > ((int64_t)1 << 53))
            return -1;
    }
    /* a walk's rows span (strip + vlen) rows: their row groups, their tables */
    groups = (strip + vlen) / vlen + 2;
    walk = strip + 2 * vlen + 2;
    columns = (pitch - 1) / hlen + 2; /* column groups a tile's row sums span */
    line_len = columns * hlen;        /* >= pitch */
    lay->strip = strip;
    lay->pitch = pitch;
    lay->cap = cap;
    lay->temp = temp;
    lay->vlen = vlen;
    lay->hlen = hlen;
    lay->groups = groups;
    lay->walk_rows = walk;
    lay->line_sums_len = line_len;
    lay->anchor_pitch = (columns + 15) / 16 * 16;
    lay->tsize = (size_t)ts;

    g = grad ? 1 : 0;
    q = squares ? 1 : 0;
#define SECTION(field, bytes) lay->field = (size_t)take(&total, bytes)
    /* rows used in place need no copies: X of float32 (float64) rows in whole
     * vectors of any table; dY and the output of staged planes too */
    SECTION(x_rows, rows_bytes(in_place(job, job->x) ? 0 : cap, pitch, ts));
    SECTION(x_row_ptrs, rows_bytes(cap, 1, (int64_t)sizeof(void *)));
    SECTION(sums_x_own, rows_bytes(cap, pitch, ts));
    SECTION(sums_x2_own, rows_bytes(q * cap, pitch, ts));
    SECTION(sums_x_prev, rows_bytes(cap, pitch, ts));
    SECTION(sums_x2_prev, rows_bytes(q * cap, pitch, ts));
    SECTION(stat_suffix, rows_bytes(2 * vlen, pitch, ts));
    SECTION(stat_prefix, rows_bytes(2, pitch, ts));
    SECTION(refs_by_column, rows_bytes(groups, pitch, ts));
    SECTION(cols_inside, rows_bytes(1, pitch, ts));
    lay->anchor_set_bytes = (size_t)rows_bytes(MPSNORM_LCN_ANCHOR_SLOTS, lay->anchor_pitch, ts);
    SECTION(anchor_rows, 2 * (int64_t)lay->anchor_set_bytes);
    SECTION(lane_refs, rows_bytes(2 * lay->anchor_pitch, 1, LCN_VECTOR_BYTES));
    SECTION(walk_tables, rows_bytes(4 * walk, 1, (int64_t)sizeof(void *)));
    SECTION(walk_plan, rows_bytes(walk, 1, MPSNORM_LCN_PLAN_BYTES));
    SECTION(dy_rows, rows_bytes(job->staged && in_place(job, job->dy) ? 0 : g * temp, pitch, ts));
    SECTION(g_rows, rows_bytes(g * cap, pitch, ts));
    SECTION(sums_w, rows_bytes(g * cap, pitch, ts));
    SECTION(sums_u, rows_bytes(g * q * cap, pitch, ts));
    SECTION(u_rows, rows_bytes(g * q * temp, pitch, ts));
    SECTION(w_rows, rows_bytes(g * temp, pitch, ts));
    SECTION(out_rows, rows_bytes(job->staged && in_place(job, job->out) ? 0 : strip, pitch, ts));
    SECTION(adj_suffix, rows_bytes(g * 2 * vlen, pitch, ts));
    SECTION(adj_prefix, rows_bytes(g * 2, pitch, ts));
    SECTION(line, rows_bytes(2 * pitch, 1, LCN_VECTOR_BYTES));
    SECTION(line_suffix, rows_bytes(4 * hlen, 1, LCN_VECTOR_BYTES));
    SECTION(line_sums, rows_bytes(4 * line_len, 1, LCN_VECTOR_BYTES));
    SECTION(zero_row, rows_bytes(1, pitch, 8));
    SECTION(discard_row, rows_bytes(1, pitch, 8));
#undef SECTION
    if (total < 0)
        return -1;
    lay->total = (size_t)total;
    return total;
}

/* What tests force (mpsnorm_lcn_tile_force, mpsnorm_lcn_small_force): the
 * tile width, or 0; whether tiny planes may go window by window. */
static int64_t g_tile_columns = 0;
static int64_t g_small_planes = 1;

static void set_forced(int64_t *setting, int64_t value)
{
#if defined(__GNUC__) || defined(__clang__)
    __atomic_store_n(setting, value, __ATOMIC_RELEASE);
#else
    *setting = value;
#endif
}

static int64_t forced(const int64_t *setting)
{
#if defined(__GNUC__) || defined(__clang__)
    return __atomic_load_n(setting, __ATOMIC_ACQUIRE);
#else
    return *setting;
#endif
}

void mpsnorm_lcn_tile_force(int64_t columns)
{
    set_forced(&g_tile_columns, columns > 0 ? columns : 0);
}

void mpsnorm_lcn_small_force(int enabled)
{
    set_forced(&g_small_planes, enabled != 0);
}

static void *aligned_block(void *block)
{
    return (void *)(((uintptr_t)block + LCN_ALIGN - 1) & ~(uintptr_t)(LCN_ALIGN - 1));
}

/* Staged tasks: (image, band, group of channels), in that order. */
static void lcn_staged_task(const lcn_run *run, int64_t task, void *scratch)
{
    const mpsnorm_lcn_job *job = &run->job;
    const int64_t group = task % run->groups, band = task / run->groups % job->bands;
    const int64_t row_begin = band * job->band_rows;
    const int64_t row_end = row_begin + job->band_rows < job->h ? row_begin + job->band_rows
                                                                : job->h;
    char *planes = (char *)scratch + run->layout.total;
    void *x_rows = planes, *dy_rows = planes + run->stage_x_bytes;
    mpsnorm_tensor x_view, dy_view, out_view;
    mpsnorm_lcn_job staged = *job;
    mpsnorm_stage in, in_dy;
    int64_t c;

    in.n = task / run->groups / job->bands;
    in.c0 = group * LCN_STAGE_CHANNELS;
    in.channels = job->c - in.c0 < LCN_STAGE_CHANNELS ? job->c - in.c0 : LCN_STAGE_CHANNELS;
    in_dy = in;
    in.r0 = row_begin > run->x_above ? row_begin - run->x_above : 0;
    in.rows = (row_end + run->x_below < job->h ? row_end + run->x_below : job->h) - in.r0;
    in_dy.r0 = row_begin > run->dy_above ? row_begin - run->dy_above : 0;
    in_dy.rows = (row_end + run->dy_below < job->h ? row_end + run->dy_below : job->h) - in_dy.r0;
    mpsnorm_stage_in(job->x, &in, x_rows);
    mpsnorm_stage_view(job->x, &in, x_rows, &x_view);
    staged.x = &x_view;
    if (job->dy != NULL) {
        mpsnorm_stage_in(job->dy, &in_dy, dy_rows);
        mpsnorm_stage_view(job->dy, &in_dy, dy_rows, &dy_view);
        staged.dy = &dy_view;
    }
    /* the output rows of a plane overwrite its staged X rows: a row of X is
     * read for the last time by the step that writes the row's output */
    mpsnorm_stage_view(job->out, &in, x_rows, &out_view);
    staged.out = &out_view;
    staged.stream_out = 0;
    staged.staged = 1;
    for (c = in.c0; c < in.c0 + in.channels; ++c)
        run->kernels->lcn_rows(&staged, &run->layout, in.n * job->c + c, row_begin, row_end,
                               scratch);
    mpsnorm_stage_out(job->out, &in, x_rows, row_begin, row_end);
}

static void lcn_task(void *context, int64_t first, int64_t last, int worker)
{
    const lcn_run *run = (const lcn_run *)context;
    const mpsnorm_lcn_job *job = &run->job;
    void *scratch = aligned_block(run->scratch.block[worker]);
    int64_t task = first;

    if (run->staged) {
        for (; task < last; ++task)
            lcn_staged_task(run, task, scratch);
        return;
    }

    while (task < last) {
        /* the consecutive bands of one plane in this range, as one run of rows */
        const int64_t plane = task / job->bands;
        const int64_t band0 = task % job->bands;
        int64_t band1 = band0 + (last - task);
        int64_t row_end;
        if (band1 > job->bands)
            band1 = job->bands;
        row_end = band1 * job->band_rows;
        if (row_end > job->h)
            row_end = job->h;
        run->kernels->lcn_rows(job, &run->layout, plane, band0 * job->band_rows, row_end,
                               scratch);
        task += band1 - band0;
    }
}

static void lcn_small_task(void *context, int64_t first, int64_t last, int worker)
{
    (void)worker;
    mpsnorm_lcn_small_planes((const mpsnorm_lcn_job *)context, first, last);
}

static int lcn_main(const mpsnorm_lcn_params *params, const mpsnorm_tensor *dy,
                    const mpsnorm_tensor *x, const mpsnorm_tensor *out)
{
    lcn_run run;
    mpsnorm_lcn_job *job = &run.job;
    double local[LCN_LOCAL_DOUBLES]; /* the scratch of a small call */
    int64_t plane, tasks, bytes, work;
    int workers, status;

    memset(&run, 0, sizeof run);
    job->x = x;
    job->whole_x = x;
    job->dy = dy;
    job->out = out;
    job->dtype = x->dtype;
    job->gradient = dy != NULL;
    job->n = x->shape[0];
    job->c = x->shape[1];
    job->h = x->shape[2];
    job->w = x->shape[3];
    /* a plane whose bytes do not fit in the address space cannot exist */
    plane = mpsnorm_size_mad(job->h, job->w, 0);
    if (plane < 0 || mpsnorm_size_mad(plane, 8, 0) < 0)
        return MPSNORM_ERR_OUT_OF_MEMORY;
    {
        int64_t total = mpsnorm_size_mad(plane, job->n * job->c, 0);
        job->stream_out = total >= 0 && total > MPSNORM_STREAM_BYTES / 8 && out->strides[3] == 1;
    }
    /* docs/SPEC.md: an even window reaches one pixel further up and left */
    job->left = params->kernel_width / 2;
    job->right = (params->kernel_width - 1) / 2;
    job->up = params->kernel_height / 2;
    job->down = (params->kernel_height - 1) / 2;
    job->count = (double)params->kernel_width * (double)params->kernel_height;
    /* A 1x1 window's variance is 0 whatever X is, so T = delta and the gradient has no
     * alpha term: its two halves, X*Badj(U) and Badj(U*M), are equal and may be large
     * (U grows as delta shrinks), and subtracting them would cost float32 its accuracy. */
    job->alpha = job->count == 1.0 ? 0.0 : (double)params->alpha;
    job->beta = (double)params->beta;
    job->delta = (double)params->delta;
    job->p0 = (double)params->p0;
    job->pm = (double)params->pm;
    job->ps = (double)params->ps;
    job->power = job->beta == 0.5 ? MPSNORM_POWER_RSQRT
               : job->beta == 1.0 ? MPSNORM_POWER_RECIPROCAL
                                  : MPSNORM_POWER_GENERAL;
    job->d_const = job->power == MPSNORM_POWER_RSQRT        ? 1.0 / sqrt(job->delta)
                 : job->power == MPSNORM_POWER_RECIPROCAL ? 1.0 / job->delta
                                                            : pow(job->delta, -job->beta);
    if (job->dtype != MPSNORM_FLOAT64) /* the float path's constant, as it computes it */
        job->d_const = job->power == MPSNORM_POWER_RSQRT ? 1.0f / sqrtf((float)job->delta)
                     : job->power == MPSNORM_POWER_RECIPROCAL
                         ? 1.0f / (float)job->delta
                         : powf((float)job->delta, -(float)job->beta);
    /* tiny planes: no streams, no scratch */
    if (forced(&g_small_planes) && mpsnorm_lcn_small_fits(job)) {
        const int64_t planes = job->n * job->c, pixels = job->h * job->w;
        const int64_t window = job->count < (double)pixels ? (int64_t)job->count : pixels;
        workers = mpsnorm_workers_for(planes, pixels * window * 4);
        mpsnorm_parallel_for(planes, workers, lcn_small_task, job);
        return MPSNORM_OK;
    }
    run.staged = job->c > 1 && llabs(x->strides[1]) < llabs(x->strides[3]);
    if (run.staged) {
        /* the rows a band reads beyond itself (kern_lcn.h): the forward X over
         * its window; the gradient dY over the mirrored window of the band
         * (down rows above, up below) and X over those rows' windows */
        const int64_t up = mpsnorm_window_reach(job->up, job->h);
        const int64_t down = mpsnorm_window_reach(job->down, job->h);
        const int64_t reach = up + down, min_rows = 4 * reach;
        const int64_t rows = LCN_STAGE_BAND_ROWS > min_rows ? LCN_STAGE_BAND_ROWS : min_rows;
        const int64_t band = rows < job->h ? rows : job->h;
        const int64_t group = job->c < LCN_STAGE_CHANNELS ? job->c : LCN_STAGE_CHANNELS;
        const int64_t item = job->dtype == MPSNORM_FLOAT64 ? 8
                           : job->dtype == MPSNORM_FLOAT32 ? 4 : 2;
        int64_t x_bytes, dy_bytes;
        run.dy_above = job->gradient ? down : 0;
        run.dy_below = job->gradient ? up : 0;
        run.x_above = job->gradient ? reach : up;
        run.x_below = job->gradient ? reach : down;
        /* reach < 2 * MPSNORM_MAX_KERNEL_SIZE: no overflow in band + reach */
        x_bytes = mpsnorm_size_mad(
            mpsnorm_size_mad(mpsnorm_stage_plane(band + run.x_above + run.x_below, job->w), group,
                             0),
            item, 0);
        dy_bytes = job->gradient
                       ? mpsnorm_size_mad(
                             mpsnorm_size_mad(mpsnorm_stage_plane(band + reach, job->w), group, 0),
                             item, 0)
                       : 0;
        run.staged = x_bytes >= 0 && dy_bytes >= 0 && x_bytes <= LCN_STAGE_MAX_BYTES / 2 &&
                     dy_bytes <= LCN_STAGE_MAX_BYTES / 2;
        if (run.staged) {
            job->band_rows = rows;
            run.groups = (job->c + LCN_STAGE_CHANNELS - 1) / LCN_STAGE_CHANNELS;
            run.stage_x_bytes = (size_t)(x_bytes + LCN_ALIGN - 1) / LCN_ALIGN * LCN_ALIGN;
            run.stage_dy_bytes = (size_t)(dy_bytes + LCN_ALIGN - 1) / LCN_ALIGN * LCN_ALIGN;
        }
    }
    job->staged = run.staged; /* for the layout; the kernels see it on staged views */
    if (!run.staged) {
        job->band_rows = (LCN_BAND_ELEMENTS + job->w - 1) / job->w;
        if (job->band_rows < LCN_BAND_MIN_ROWS)
            job->band_rows = LCN_BAND_MIN_ROWS;
    }
    if (job->band_rows > job->h)
        job->band_rows = job->h;
    job->bands = (job->h + job->band_rows - 1) / job->band_rows;
    job->tile_columns = job->w;
    if (!run.staged) { /* staged planes write their output over their X rows: one tile */
        const int64_t reach = mpsnorm_window_reach(job->left, job->w) +
                              mpsnorm_window_reach(job->right, job->w) + 1;
        const int64_t tile = forced(&g_tile_columns);
        if (tile > 0)
            job->tile_columns = (tile + 15) / 16 * 16;
        else if (job->w > LCN_TILE_MIN_WIDTH && reach <= LCN_TILE_COLUMNS / 8)
            job->tile_columns = LCN_TILE_COLUMNS;
    }

    bytes = mpsnorm_lcn_layout_of(job, &run.layout);
    if (bytes < 0 || bytes > INT64_MAX - LCN_ALIGN - (int64_t)LCN_STAGE_MAX_BYTES)
        return MPSNORM_ERR_OUT_OF_MEMORY;
    bytes += (int64_t)(run.stage_x_bytes + run.stage_dy_bytes);
    run.kernels = mpsnorm_kernels_get();

    tasks = run.staged ? job->n * job->bands * run.groups : job->n * job->c * job->bands;
    work = job->band_rows > INT64_MAX / job->w ? INT64_MAX : job->band_rows * job->w;
    work = work > INT64_MAX / 40 ? INT64_MAX : work * (job->gradient ? 40 : 16);
    if (run.staged) /* a staged task runs a group of planes */
        work = work > INT64_MAX / LCN_STAGE_CHANNELS ? INT64_MAX : work * LCN_STAGE_CHANNELS;
    workers = mpsnorm_workers_for(tasks, work);
    status = mpsnorm_scratch_alloc_local(&run.scratch, workers,
                                         (bytes + LCN_ALIGN + 7) / (int64_t)sizeof(double),
                                         local, LCN_LOCAL_DOUBLES);
    if (status != MPSNORM_OK)
        return status;
    mpsnorm_parallel_for(tasks, workers, lcn_task, &run);
    mpsnorm_scratch_free(&run.scratch);
    return MPSNORM_OK;
}

int mpsnorm_cpu_lcn_forward(const mpsnorm_lcn_params *params, const mpsnorm_checked *x,
                            const mpsnorm_checked *y)
{
    assert(x->tensor != NULL && x->count > 0 && y->tensor != NULL && y->count == x->count);
    return lcn_main(params, NULL, x->tensor, y->tensor);
}

int mpsnorm_cpu_lcn_gradient(const mpsnorm_lcn_params *params, const mpsnorm_checked *dy,
                             const mpsnorm_checked *x, const mpsnorm_checked *dx)
{
    assert(x->tensor != NULL && x->count > 0 && dx->tensor != NULL && dx->count == x->count);
    assert(dy->tensor != NULL && dy->count == x->count);
    return lcn_main(params, dy->tensor, x->tensor, dx->tensor);
}
