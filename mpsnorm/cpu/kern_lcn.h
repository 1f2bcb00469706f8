/*
 * kern_lcn.h -- part of the kernel template (kernels_impl.h): LCN forward and
 * gradient of a range of output rows of one plane, streamed in strips.
 *
 * docs/SPEC.md, per pixel, N = kw*kh:
 *   M = B(X)/N, VAR = max(B(X^2)/N - M^2, 0), T = delta + alpha*VAR, D = T^-beta
 *   Y  = pm + ps*(X - p0*M)*D
 *   dX = ps*(G - (p0/N)*Badj(G) - (2*alpha*beta/N)*(X*Badj(U) - Badj(U*M)))
 *   G = dY*D, U = dY*(X - p0*M)*D/T
 * B is the window sum, Badj the sum over the mirrored window.
 *
 * Rows flow through stages in strips, each row computed once per call (a
 * call's first rows also compute the halo above them):
 *   X rows -> row sums of X - r and (X - r)^2, r the anchors of
 *   kern_lcn_typed.h (rings hxo, hqo, hxp, hqp)
 *   -> vertical sums (stats_walk) fused with the pixel math
 *   -> G, cU = c2*U and Wb = c1*G - cU*(M - r) -> row sums over the
 *   mirrored window of W = Wb + (s - r)*cU and cU (rings hw, hu), s the
 *   anchors of the mirrored windows' groups: X*Badj(U) - Badj(U*M) is summed
 *   as (X - s)*Badj(U) - Badj(U*(M - s)), both factors local; Badj is
 *   linear, so the terms that multiply nothing share one window sum
 *   -> vertical adjoint sums (adjoint_walk) fused with dX = ..., rounded to
 *   the dtype.
 * Everything runs in float for float32/float16 data and in double for
 * float64. Memory: rings and temporaries of O(strip + window) rows of the
 * plane's width (mpsnorm_lcn_layout), never a whole plane.
 */
#ifndef MPSNORM_CPU_KERN_LCN_H
#define MPSNORM_CPU_KERN_LCN_H

#ifndef KNAME
#error "kern_lcn.h needs KNAME(x), the instruction set's name of a kernel"
#endif

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "kern_common.h"
#include "kern_io.h"
#include "kern_lcn_state.h"
#include "kernels.h"
#include "simd.h"

/* ---- T^-beta -------------------------------------------------------------- */

/* beta 0.5 and 1 through the refined estimates of simd.h, 0.75 as
 * rsqrt(T) * sqrt(rsqrt(T)), every other beta through pow, exact per lane. */
SIMD_INLINE vf power_f(int power, vf t, float beta)
{
    if (power == MPSNORM_POWER_RSQRT)
        return rsqrtvf(t);
    if (power == MPSNORM_POWER_RECIPROCAL)
        return rcpvf(t);
    if (power == MPSNORM_POWER_THREE_QUARTERS) {
        const vf r = rsqrtvf(t);
        return r * sqrtvf(r);
    }
    return powvf(t, beta);
}
SIMD_INLINE vd power_d(int power, vd t, double beta)
{
    if (power == MPSNORM_POWER_RSQRT)
        return bcd(1.0) / sqrtvd(t);
    if (power == MPSNORM_POWER_RECIPROCAL)
        return bcd(1.0) / t;
    if (power == MPSNORM_POWER_THREE_QUARTERS) {
        const vd r = bcd(1.0) / sqrtvd(t);
        return r * sqrtvd(r);
    }
    return powvd(t, beta);
}
/* D/T = T^-(beta+1) from D = T^-beta */
SIMD_INLINE vf d_over_t_f(int power, vf d, vf t)
{
    return power == MPSNORM_POWER_RSQRT ? d * d * d
         : power == MPSNORM_POWER_RECIPROCAL ? d * d
                                              : d / t;
}
SIMD_INLINE vd d_over_t_d(int power, vd d, vd t)
{
    return power == MPSNORM_POWER_RSQRT ? d * d * d
         : power == MPSNORM_POWER_RECIPROCAL ? d * d
                                              : d / t;
}

/* ---- the stages, float and double ----------------------------------------- */

#define LT float
#define LV vf
#define LN VF
#define LLD ldf
#define LST stf
#define LBC bcf
#define LFMA fmavf
#define LCLAMP0 clamp0f
#define LPOWER power_f
#define LD_OVER_T d_over_t_f
#define LLOAD io_load_f
#define LTRANSPOSE tr_regs_f
#define LSUFFIX f
#include "kern_lcn_typed.h"

#define LT double
#define LV vd
#define LN VD
#define LLD ldd
#define LST std_
#define LBC bcd
#define LFMA fmavd
#define LCLAMP0 clamp0d
#define LPOWER power_d
#define LD_OVER_T d_over_t_d
#define LLOAD io_load_d
#define LTRANSPOSE tr_regs_d
#define LSUFFIX d
#include "kern_lcn_typed.h"

/* ---- rows in and out ------------------------------------------------------ */

static lc_ring lc_make_ring(const lc_state *st, size_t offset, size_t esize)
{
    lc_ring ring;
    ring.base = (char *)lc_at(st, offset);
    ring.cap = st->lay->cap;
    ring.row_bytes = (size_t)st->lay->pitch * esize;
    return ring;
}

static void lc_stats_rows(lc_state *st, int64_t r0, int64_t r1)
{
    if (st->job->dtype == MPSNORM_FLOAT64)
        lc_stats_rows_d(st, r0, r1);
    else
        lc_stats_rows_f(st, r0, r1);
}

/* dY rows [r0, r1): used in place when direct, else converted into the dY
 * temporaries (row r at r - r0) for the statistics' columns, zero past the
 * plane's width. */
static void lc_load_dy(lc_state *st, int64_t r0, int64_t r1)
{
    const mpsnorm_lcn_job *job = st->job;
    const mpsnorm_tensor *dy = job->dy;
    const mpsnorm_lcn_tile *tl = &st->tile;
    const size_t es = st->lay->tsize;
    const int64_t hi = kmin(job->w, tl->s_hi);
    int64_t r;
    st->dy_first = r0;
    if (st->direct_dy)
        return;
    for (r = r0; r < r1; ++r) {
        const int64_t off = io_offset(dy, st->n, st->c, r, tl->s_lo);
        if (dy->strides[3] == 1 && r + LC_PREFETCH_ROWS < job->h)
            prefetch_bytes((const char *)dy->data +
                               io_offset(dy, st->n, st->c, r + LC_PREFETCH_ROWS, tl->s_lo) *
                                   (int64_t)io_item_bytes(dy->dtype),
                           (hi - tl->s_lo) * (int64_t)io_item_bytes(dy->dtype));
        char *row = (char *)lc_at(st, st->lay->dy_rows) +
                    (size_t)((r - r0) * st->lay->pitch + (tl->s_lo - tl->b0)) * es;
        if (job->dtype == MPSNORM_FLOAT64)
            io_load_d(dy->dtype, dy->data, off, dy->strides[3], hi - tl->s_lo, (double *)row);
        else
            io_load_f(dy->dtype, dy->data, off, dy->strides[3], hi - tl->s_lo, (float *)row);
        memset(row + (size_t)(hi - tl->s_lo) * es, 0, (size_t)(tl->s_hi - hi) * es);
    }
}

/* Output rows [j0, j1) (from the tile's first column): the rows of a staged
 * output in place, else the output temporaries, stored by lc_store_rows in
 * memory order (a column-vector walk writing a tensor's rows in place is
 * slower: it scatters the writes over many rows at once). */
static void lc_out_rows(lc_state *st, int64_t j0, int64_t j1, void **rows)
{
    const mpsnorm_tensor *out = st->job->out;
    const size_t es = st->lay->tsize;
    int64_t j;
    for (j = j0; j < j1; ++j)
        rows[j - j0] = st->direct_out
                           ? (char *)out->data +
                                 io_offset(out, st->n, st->c, j, st->tile.b0) * (int64_t)es
                           : (char *)lc_at(st, st->lay->out_rows) +
                                 (size_t)((j - j0) * st->lay->pitch) * es;
}

/* The tile's output columns [c0, c1) of rows [j0, j1) from the temporaries. */
static void lc_store_rows(lc_state *st, int64_t j0, int64_t j1, void *const *rows)
{
    const mpsnorm_tensor *out = st->job->out;
    const mpsnorm_lcn_tile *tl = &st->tile;
    const int64_t m = tl->c1 - tl->c0;
    const size_t skip = (size_t)(tl->c0 - tl->b0) * st->lay->tsize;
    int64_t j;
    if (st->direct_out)
        return;
    for (j = j0; j < j1; ++j) {
        const int64_t off = io_offset(out, st->n, st->c, j, tl->c0);
        const void *src = (const char *)rows[j - j0] + skip;
        if (st->job->stream_out) {
            io_store_stream(out->dtype, out->data, off, m, src, st->dummy);
            continue;
        }
        if (out->dtype == MPSNORM_FLOAT64)
            io_store_d(out->data, off, out->strides[3], m, (const double *)src);
        else
            io_store_f(out->dtype, out->data, off, out->strides[3], m, (const float *)src);
    }
}

/* ---- the two directions --------------------------------------------------- */

#define LC_MAX_STRIP 512 /* LCN_STRIP_ELEMENTS / 16, the smallest pitch */

static void lc_forward(lc_state *st, int64_t j_begin, int64_t j_end)
{
    const mpsnorm_lcn_job *job = st->job;
    const int64_t h = job->h;
    void *rows[LC_MAX_STRIP];
    int64_t x_next = kmax(0, j_begin - st->cu), j0;

    st->stats.block = -1;
    for (j0 = j_begin; j0 < j_end; j0 += st->lay->strip) {
        const int64_t j1 = kmin(j_end, j0 + st->lay->strip);
        const int64_t x_end = kmin(h, j1 + st->cd);
        lc_stats_rows(st, x_next, x_end);
        x_next = x_end;
        lc_out_rows(st, j0, j1, rows);
        if (job->dtype == MPSNORM_FLOAT64)
            stats_walk_d(st, j0, j1, (double *const *)rows);
        else
            stats_walk_f(st, j0, j1, (float *const *)rows);
        lc_store_rows(st, j0, j1, rows);
    }
}

/* alpha = 0: G = dY * delta^-beta, W = c1*G, rows [r0, r1) (dY from r0). */
static void lc_constant_d_rows(lc_state *st, int64_t r0, int64_t r1)
{
    const mpsnorm_lcn_job *job = st->job;
    const mpsnorm_lcn_layout *lay = st->lay;
    const int wide = job->dtype == MPSNORM_FLOAT64;
    const int64_t pitch = lay->pitch, i0 = st->tile.s_lo - st->tile.b0;
    const int64_t i1 = st->tile.s_hi - st->tile.b0;
    int64_t r, i;
    for (r = r0; r < r1; ++r) {
        const size_t wo = (size_t)((r - r0) * pitch) * lay->tsize;
        const char *dyr = lc_dy_row(st, r);
        char *wr = (char *)lc_at(st, lay->w_rows) + wo;
        if (wide) {
            const vd d = bcd(job->d_const), c1 = bcd(job->p0 / job->count);
            double *g = (double *)lc_ring_row(&st->gr, r);
            for (i = i0; i < i1; i += VD) {
                const vd gg = ldd((const double *)dyr + i) * d;
                std_(g + i, gg);
                std_((double *)wr + i, c1 * gg);
            }
        } else {
            const vf d = bcf((float)job->d_const), c1 = bcf((float)(job->p0 / job->count));
            float *g = (float *)lc_ring_row(&st->gr, r);
            for (i = i0; i < i1; i += VF) {
                const vf gg = ldf((const float *)dyr + i) * d;
                stf(g + i, gg);
                stf((float *)wr + i, c1 * gg);
            }
        }
    }
}

static void lc_gradient(lc_state *st, int64_t j_begin, int64_t j_end)
{
    const mpsnorm_lcn_job *job = st->job;
    const mpsnorm_lcn_layout *lay = st->lay;
    const int64_t h = job->h;
    const int full = job->alpha != 0.0, wide = job->dtype == MPSNORM_FLOAT64;
    void *rows[LC_MAX_STRIP];
    /* the adjoint's window is mirrored: down rows above, up rows below */
    int64_t s_next = kmax(0, j_begin - st->cd);
    int64_t x_next = kmax(0, s_next - st->cu), j0;

    st->stats.block = st->adjoint.block = -1;
    for (j0 = j_begin; j0 < j_end; j0 += lay->strip) {
        const int64_t j1 = kmin(j_end, j0 + lay->strip);
        const int64_t s_end = kmin(h, j1 + st->cu);

        /* rows [s_next, s_end): G, U, W and their row sums over the mirrored window */
        lc_load_dy(st, s_next, s_end);
        if (full) {
            const int64_t x_end = kmin(h, s_end + st->cd);
            lc_stats_rows(st, x_next, x_end);
            x_next = x_end;
            if (wide)
                stats_walk_d(st, s_next, s_end, NULL);
            else
                stats_walk_f(st, s_next, s_end, NULL);
        } else {
            lc_constant_d_rows(st, s_next, s_end);
        }
        if (wide)
            lc_adjoint_rows_d(st, s_next, s_end, s_next);
        else
            lc_adjoint_rows_f(st, s_next, s_end, s_next);
        s_next = s_end;

        /* output rows [j0, j1) */
        lc_out_rows(st, j0, j1, rows);
        if (wide)
            adjoint_walk_d(st, j0, j1, (double *const *)rows);
        else
            adjoint_walk_f(st, j0, j1, (float *const *)rows);
        lc_store_rows(st, j0, j1, rows);
    }
}

/* 1 if rows of t can be used in place: the compute type's dtype, unit
 * stride and whole vectors (so no column past the row is ever touched). */
static int lc_direct(const mpsnorm_tensor *t, int wide)
{
    const int64_t lanes = wide ? VD : VF;
    return t != NULL && t->dtype == (wide ? MPSNORM_FLOAT64 : MPSNORM_FLOAT32) &&
           t->strides[3] == 1 && t->shape[3] % lanes == 0;
}

static void KNAME(lcn_rows)(const mpsnorm_lcn_job *job, const mpsnorm_lcn_layout *lay,
                            int64_t plane, int64_t row_begin, int64_t row_end, void *scratch)
{
    const int wide = job->dtype == MPSNORM_FLOAT64;
    const size_t ts = lay->tsize;
    lc_state st;
    int64_t c0;
    int k;
    st.job = job;
    st.lay = lay;
    st.base = (char *)scratch;
    st.n = plane / job->c;
    st.c = plane % job->c;
    st.cu = mpsnorm_window_reach(job->up, job->h);
    st.cd = mpsnorm_window_reach(job->down, job->h);
    st.cl = mpsnorm_window_reach(job->left, job->w);
    st.cr = mpsnorm_window_reach(job->right, job->w);
    st.lh = st.cu + st.cd + 1;
    st.lw = st.cl + st.cr + 1;
    st.direct_x = lc_direct(job->x, wide);
    /* dY and the output are walked a column vector at a time: read and
     * written through temporaries in memory order, which the prefetchers
     * follow, unless they are staged copies already in the cache */
    st.direct_dy = job->staged && lc_direct(job->dy, wide);
    st.direct_out = job->staged && lc_direct(job->out, wide);
    st.xr = lc_make_ring(&st, lay->x_rows, ts);
    st.hxo = lc_make_ring(&st, lay->sums_x_own, ts);
    st.hqo = lc_make_ring(&st, lay->sums_x2_own, ts);
    st.hxp = lc_make_ring(&st, lay->sums_x_prev, ts);
    st.hqp = lc_make_ring(&st, lay->sums_x2_prev, ts);
    st.gr = lc_make_ring(&st, lay->g_rows, ts);
    st.hw = lc_make_ring(&st, lay->sums_w, ts);
    st.hu = lc_make_ring(&st, lay->sums_u, ts);
    /* statistics groups: windows of outputs, reaching up and left; adjoint
     * groups: mirrored windows, reaching down and right */
    st.anchors[LC_STATS].up = st.cu;
    st.anchors[LC_STATS].left = st.cl;
    st.anchors[LC_STATS].rows = lay->anchor_rows;
    st.anchors[LC_STATS].nearest = 0;
    st.anchors[LC_ADJOINT].up = st.cd;
    st.anchors[LC_ADJOINT].left = st.cr;
    st.anchors[LC_ADJOINT].rows = lay->anchor_rows + lay->anchor_set_bytes;
    st.anchors[LC_ADJOINT].nearest = 1;
    st.xptr = (void **)lc_at(&st, lay->x_row_ptrs);
    for (k = 0; k < 4; ++k)
        st.tab[k] = (const void **)lc_at(&st, lay->walk_tables) +
                    (size_t)k * (size_t)lay->walk_rows;
    st.plan = (lc_row_plan *)lc_at(&st, lay->walk_plan);
    st.dy_first = row_begin;
    st.zero = lc_at(&st, lay->zero_row);
    st.dummy = lc_at(&st, lay->discard_row);
    memset(lc_at(&st, lay->zero_row), 0, (size_t)lay->pitch * 8);
    for (k = 0; k < lay->cap; ++k)
        st.xptr[k] = lc_at(&st, lay->zero_row); /* alpha = 0 gradients read no X */
    for (c0 = 0; c0 < job->w; c0 += job->tile_columns) {
        const int64_t c1 = kmin(job->w, c0 + job->tile_columns);
        char *cin = (char *)lc_at(&st, lay->cols_inside);
        int64_t i;
        mpsnorm_lcn_tile_of(job, wide ? VD : VF, c0, c1, &st.tile);
        st.anchors[LC_STATS].mlo = st.tile.stat_mlo;
        st.anchors[LC_STATS].mhi = st.tile.stat_mhi;
        st.anchors[LC_ADJOINT].mlo = st.tile.adj_mlo;
        st.anchors[LC_ADJOINT].mhi = st.tile.adj_mhi;
        for (k = 0; k < LC_ANCHOR_SLOTS; ++k) /* no row group: groups are >= -1 */
            st.anchors[LC_STATS].tag[k] = st.anchors[LC_ADJOINT].tag[k] = -2;
        /* per column, the window's columns inside the plane */
        for (i = 0; i < lay->pitch; ++i) {
            const int64_t col = st.tile.b0 + i;
            const int64_t lo = col - job->left > 0 ? col - job->left : 0;
            const int64_t hi = col + job->right < job->w - 1 ? col + job->right : job->w - 1;
            if (wide)
                ((double *)cin)[i] = (double)(hi - lo + 1);
            else
                ((float *)cin)[i] = (float)(hi - lo + 1);
        }
        if (job->gradient)
            lc_gradient(&st, row_begin, row_end);
        else
            lc_forward(&st, row_begin, row_end);
    }
    if (job->stream_out)
        io_stream_fence();
}

#undef LC_MAX_STRIP

#endif /* MPSNORM_CPU_KERN_LCN_H */
