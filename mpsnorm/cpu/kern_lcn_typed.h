/*
 * kern_lcn_typed.h -- part of the kernel template (kern_lcn.h): the stages
 * of LCN for one compute type (float for float32/float16 data, double for
 * float64): the horizontal passes (through kern_box.h's lines) and the
 * vertical window sums, fused with what consumes them, walked one column
 * vector at a time (LN columns) down a strip of rows, so the running sums
 * stay in registers.
 *
 * Instantiated once per compute type; the includer defines
 *   LT, LV, LN      the compute type, its vector type and lanes
 *   LLD, LST, LBC   vector load, store, broadcast
 *   LFMA            a * b + c (simd.h)
 *   LCLAMP0         max(x, 0) keeping NaN
 *   LPOWER(p, t, b) t^-beta by the job's power kind, LD_OVER_T(p, d, t) d/t
 *   LLOAD           io_load_f or io_load_d: a run of a tensor in the type
 *   LTRANSPOSE      transposes LN vectors of LN lanes in place (simd.h)
 *   LSUFFIX         the names' suffix (f or d)
 * and this file undefines them at its end. It instantiates kern_box.h for LT. It works on lc_state
 * (kern_lcn_state.h).
 *
 * Block scheme (kern_box.h) down the columns: with P = row + a (a the
 * window's rows above, clipped), output row t sums P in [t, t + len);
 * blocks are [m len, (m+1) len). For the rows of block m: out(t) = suf(t) +
 * pre, suf(t) = rows t .. block end (swept once per block, kept in `suf`
 * rows), pre = rows (m+1) len .. t + len - 1 (one more row per t). The
 * stream's block is shared by all columns; the running sums of the next
 * block live in `pre` rows between strips. Rows outside the plane read as a
 * row of zeros: adding +0 to a sum that started at +0 is the same as adding
 * nothing. A walk carries LC_TILE column vectors at once (kern_lcn_state.h).
 *
 * References: window sums of X and X^2 in LT lose the local variance when
 * the local mean is large against the local spread (E[X^2] - M^2 cancels).
 * They are taken of v = X - r instead, r the value of one pixel that lies in
 * every window of a group: the windows whose top-left corners lie in one
 * block (rows [p lh, (p+1) lh) by columns [m lw, (m+1) lw) of the padded
 * plane) all hold the pixel at the block's bottom-right corner, the group's
 * anchor (0 outside the plane, a value every such window holds as padding).
 * For any value r of a window, (r - M)^2 <= N*VAR, so the sums about r
 * cancel at most that much, and in practice about as much as a pixel is
 * from its window's mean. A row's sums serve two row groups (suffixes of
 * its own block's group, prefixes of the group before), so each row is
 * summed about both groups' anchors.
 */
#if !defined(LT) || !defined(LV) || !defined(LN) || !defined(LLD) || !defined(LST) ||          \
    !defined(LBC) || !defined(LFMA) || !defined(LCLAMP0) || !defined(LPOWER) ||                \
    !defined(LD_OVER_T) || !defined(LLOAD) || !defined(LTRANSPOSE) || !defined(LSUFFIX)
#error "kern_lcn_typed.h needs LT, LV, LN, LLD, LST, LBC, LFMA, LCLAMP0, LPOWER, LD_OVER_T, \
LLOAD, LTRANSPOSE, LSUFFIX"
#endif

#include <stdint.h>
#include <string.h>

#include "kern_common.h"
#include "kern_io.h"
#include "kern_lcn_state.h"
#include "simd.h"

#define LCF(name) KCAT(name, LSUFFIX)

/* row sums of lines of LN rows (box_line_in, box_stats, ...: LCF names) */
#define KB_T LT
#define KB_V LV
#define KB_N LN
#define KB_LD LLD
#define KB_ST LST
#define KB_BC LBC
#define KB_FMA LFMA
#define KB_TRANSPOSE LTRANSPOSE
#define KB_SUFFIX LSUFFIX
#include "kern_box.h"

/* The anchors of row group p of set `as` for column groups [m0, m0 + count):
 * dst[m - m0]. An anchor outside the plane is 0 for the statistics (a value
 * every window of the group holds as padding), the nearest pixel of the
 * plane for the adjoint (any value serves there; a near one keeps the sums
 * local). */
static void LCF(lc_anchor_row)(const lc_state *st, const lc_anchor_set *as, int64_t p, int64_t m0,
                               int64_t count, LT *dst)
{
    const mpsnorm_lcn_job *job = st->job;
    const mpsnorm_tensor *x = job->whole_x;
    const int64_t row = (p + 1) * st->lh - 1 - as->up;
    /* column of group m: (m + 1) lw - 1 - left, inside the plane for m in [ma, mb) */
    const int64_t ma = kmin(m0 + count, kmax(m0, (as->left + st->lw) / st->lw - 1));
    const int64_t mb = kmax(ma, kmin(m0 + count, (job->w + as->left) / st->lw));
    int64_t m;
    if (as->nearest) {
        const int64_t j = kmin(job->h - 1, kmax(0, row));
        LT first = 0, last = 0;
        LLOAD(x->dtype, x->data, io_offset(x, st->n, st->c, j, 0), x->strides[3], 1, &first);
        LLOAD(x->dtype, x->data, io_offset(x, st->n, st->c, j, job->w - 1), x->strides[3], 1,
              &last);
        for (m = m0; m < ma; ++m)
            dst[m - m0] = first;
        if (mb > ma)
            LLOAD(x->dtype, x->data,
                  io_offset(x, st->n, st->c, j, (ma + 1) * st->lw - 1 - as->left),
                  x->strides[3] * st->lw, mb - ma, dst + (ma - m0));
        for (m = mb; m < m0 + count; ++m)
            dst[m - m0] = last;
        return;
    }
    if (row < 0 || row >= job->h) {
        memset(dst, 0, (size_t)count * sizeof(LT));
        return;
    }
    for (m = m0; m < ma; ++m)
        dst[m - m0] = 0;
    if (mb > ma)
        LLOAD(x->dtype, x->data, io_offset(x, st->n, st->c, row, (ma + 1) * st->lw - 1 - as->left),
              x->strides[3] * st->lw, mb - ma, dst + (ma - m0));
    for (m = mb; m < m0 + count; ++m)
        dst[m - m0] = 0;
}

/* The anchors of row group p of set `as` for the tile's column groups (from
 * as->mlo), from the cache: whole vectors, zero past the last group. */
static const LT *LCF(lc_anchors)(lc_state *st, lc_anchor_set *as, int64_t p)
{
    const int64_t slot = p & (LC_ANCHOR_SLOTS - 1);
    const int64_t count = as->mhi - as->mlo + 1;
    const int64_t mpad = (count + LN - 1) / LN * LN;
    LT *row = (LT *)lc_at(st, as->rows) + slot * st->lay->anchor_pitch;
    if (as->tag[slot] != p) {
        LCF(lc_anchor_row)(st, as, p, as->mlo, count, row);
        memset(row + count, 0, (size_t)(mpad - count) * sizeof(LT));
        as->tag[slot] = p;
    }
    return row;
}

/* Per lane g (row r + g, in row group (r + g + reach) / lh of set `as`) and
 * column group m (from as->mlo): the anchors of the row's own group
 * (own[m*LN + g]) and of the group before (prev, unless NULL), transposed
 * from the groups' anchor rows. */
static void LCF(lc_lane_refs)(lc_state *st, lc_anchor_set *as, int64_t r, int64_t reach, LT *own,
                              LT *prev)
{
    const LT *own_rows[LN], *prev_rows[LN];
    const int64_t count = as->mhi - as->mlo + 1;
    const int64_t mpad = (count + LN - 1) / LN * LN;
    int64_t p = (r + reach) / st->lh, next = (p + 1) * st->lh - reach;
    int g;
    /* the cache keeps LC_ANCHOR_SLOTS > LN + 1 groups: no pointer goes stale */
    own_rows[0] = LCF(lc_anchors)(st, as, p);
    prev_rows[0] = prev != NULL ? LCF(lc_anchors)(st, as, p - 1) : NULL;
    for (g = 1; g < LN; ++g) {
        if (r + g < next) { /* lane g's row is in lane g - 1's group */
            own_rows[g] = own_rows[g - 1];
            prev_rows[g] = prev_rows[g - 1];
            continue;
        }
        p += 1;
        next += st->lh;
        prev_rows[g] = own_rows[g - 1];
        own_rows[g] = LCF(lc_anchors)(st, as, p);
    }
    LCF(box_line_in)(own_rows, 0, mpad, own);
    if (prev != NULL)
        LCF(box_line_in)(prev_rows, 0, mpad, prev);
}

/* X rows [r0, r1): row pointers (in place when direct, else converted into
 * the X ring), then their row sums about the anchors (kern_box.h
 * box_stats) into the rings hxo, hqo, hxp, hqp. Rows hold columns from b0. */
static void LCF(lc_stats_rows)(lc_state *st, int64_t r0, int64_t r1)
{
    const mpsnorm_lcn_job *job = st->job;
    const mpsnorm_lcn_layout *lay = st->lay;
    const mpsnorm_lcn_tile *tl = &st->tile;
    const mpsnorm_tensor *x = job->x;
    const int squares = job->alpha != 0.0;
    const int64_t cap = lay->cap, w = job->w, pitch = lay->pitch, b0 = tl->b0;
    const int64_t e_count = (tl->x_hi + LN - 1) / LN * LN - b0;
    const int64_t o0 = tl->stat_mlo * st->lw;
    LT *line = (LT *)lc_at(st, lay->line), *suf = (LT *)lc_at(st, lay->line_suffix);
    LT *own = (LT *)lc_at(st, lay->lane_refs), *prev = own + lay->anchor_pitch * LN;
    LT *outs[4];
    const lc_ring *rings[4] = {&st->hxo, &st->hqo, &st->hxp, &st->hqp};
    int64_t r;
    int q, g;
    for (q = 0; q < 4; ++q)
        outs[q] = (LT *)lc_at(st, lay->line_sums) + (size_t)q * (size_t)(lay->line_sums_len * LN);
    for (r = r0; r < r1; ++r) {
        void *row;
        if (x->strides[3] == 1 && r + LC_PREFETCH_ROWS < job->h)
            prefetch_bytes((const char *)x->data +
                               io_offset(x, st->n, st->c, r + LC_PREFETCH_ROWS, tl->x_lo) *
                                   (int64_t)io_item_bytes(x->dtype),
                           (tl->x_hi - tl->x_lo) * (int64_t)io_item_bytes(x->dtype));
        if (st->direct_x) {
            row = (LT *)x->data + io_offset(x, st->n, st->c, r, b0);
        } else {
            LT *dst = (LT *)lc_ring_row(&st->xr, r);
            memset(dst, 0, (size_t)(tl->x_lo - b0) * sizeof(LT));
            LLOAD(x->dtype, x->data, io_offset(x, st->n, st->c, r, tl->x_lo), x->strides[3],
                  tl->x_hi - tl->x_lo, dst + (tl->x_lo - b0));
            memset(dst + (tl->x_hi - b0), 0, (size_t)(pitch - (tl->x_hi - b0)) * sizeof(LT));
            row = dst;
        }
        st->xptr[r % cap] = row;
    }
    for (r = r0; r < r1; r += LN) {
        const LT *src[LN];
        LT *dst[4][LN];
        for (g = 0; g < LN; ++g) {
            const int real = r + g < r1;
            src[g] = real ? (const LT *)st->xptr[(r + g) % cap] : (const LT *)st->zero;
            for (q = 0; q < 4; ++q)
                dst[q][g] = real && (squares || (q & 1) == 0) ? (LT *)lc_ring_row(rings[q], r + g)
                                                              : (LT *)st->dummy;
        }
        LCF(box_line_in)(src, 0, e_count, line);
        LCF(lc_lane_refs)(st, &st->anchors[LC_STATS], r, st->cu, own, prev);
        if (squares)
            LCF(box_stats)(line, b0, w, st->cl, st->lw, tl->stat_mlo, tl->stat_mhi, own, prev, 1,
                           suf, outs);
        else
            LCF(box_stats)(line, b0, w, st->cl, st->lw, tl->stat_mlo, tl->stat_mhi, own, prev, 0,
                           suf, outs);
        for (q = 0; q < 4; ++q)
            if (squares || (q & 1) == 0)
                LCF(box_line_out)(outs[q] + (tl->s_lo - o0) * LN, tl->s_hi - tl->s_lo, dst[q],
                                  tl->s_lo - b0);
    }
}

/*
 * Row sums over the mirrored window of rows [r0, r1) (temporaries from row
 * `first`), for the tile's outputs: alpha = 0, of W = c1*G into hw; else,
 * with cU = c2*U, Wb = c1*G - cU*(M - r) and r each pixel's statistics
 * anchor, of W = Wb + (s - r)*cU = c1*G - cU*(M - s) about each row's own
 * adjoint group's anchors s (hw), and of cU (hu): kern_box.h box_adjoint.
 */
static void LCF(lc_adjoint_rows)(lc_state *st, int64_t r0, int64_t r1, int64_t first)
{
    const mpsnorm_lcn_job *job = st->job;
    const mpsnorm_lcn_layout *lay = st->lay;
    const mpsnorm_lcn_tile *tl = &st->tile;
    const int full = job->alpha != 0.0;
    const int64_t pitch = lay->pitch, b0 = tl->b0, o0 = tl->adj_mlo * st->lw;
    const int64_t count = tl->s_hi - tl->s_lo;
    const LT *wrows = (const LT *)lc_at(st, lay->w_rows);
    const LT *urows = (const LT *)lc_at(st, lay->u_rows);
    LT *la = (LT *)lc_at(st, lay->line), *lb = la + pitch * LN;
    LT *suf = (LT *)lc_at(st, lay->line_suffix);
    LT *own = (LT *)lc_at(st, lay->lane_refs), *stat = own + lay->anchor_pitch * LN;
    LT *outs[2];
    int64_t r;
    int g;
    outs[0] = (LT *)lc_at(st, lay->line_sums);
    outs[1] = outs[0] + lay->line_sums_len * LN;
    for (r = r0; r < r1; r += LN) {
        const LT *sa[LN], *sb[LN];
        LT *da[LN], *db[LN];
        for (g = 0; g < LN; ++g) {
            const int real = r + g < r1;
            sa[g] = real ? wrows + (r + g - first) * pitch : (const LT *)st->zero;
            sb[g] = real && full ? urows + (r + g - first) * pitch : (const LT *)st->zero;
            da[g] = real ? (LT *)lc_ring_row(&st->hw, r + g) : (LT *)st->dummy;
            db[g] = real && full ? (LT *)lc_ring_row(&st->hu, r + g) : (LT *)st->dummy;
        }
        /* W and cU hold the statistics' columns [s_lo, s_hi) */
        LCF(box_line_in)(sa, tl->s_lo - b0, count, la);
        if (full) {
            LCF(box_line_in)(sb, tl->s_lo - b0, count, lb);
            /* the rows' own adjoint groups; their statistics groups as outputs */
            LCF(lc_lane_refs)(st, &st->anchors[LC_ADJOINT], r, st->cd, own, NULL);
            LCF(lc_lane_refs)(st, &st->anchors[LC_STATS], r, 0, stat, NULL);
            LCF(box_adjoint)(la, lb, tl->s_lo, job->w, st->cr, st->lw, tl->adj_mlo, tl->adj_mhi,
                             own, stat, tl->stat_mlo, suf, outs);
        } else {
            LCF(box_sums2)(la, la, tl->s_lo, job->w, st->cr, st->lw, tl->adj_mlo, tl->adj_mhi, suf,
                           outs[0], outs[1]);
        }
        LCF(box_line_out)(outs[0] + (tl->out_lo - o0) * LN, tl->out_hi - tl->out_lo, da,
                          tl->out_lo - b0);
        if (full)
            LCF(box_line_out)(outs[1] + (tl->out_lo - o0) * LN, tl->out_hi - tl->out_lo, db,
                              tl->out_lo - b0);
    }
}

/* The anchors of output row groups [g0, g1] of set `as`, one per column of
 * [lo, hi) (output column q in column group q / lw): row k of the
 * references holds group g0 + k's. */
static void LCF(lc_expand_refs)(lc_state *st, lc_anchor_set *as, int64_t g0, int64_t g1,
                                int64_t lo, int64_t hi)
{
    const int64_t pitch = st->lay->pitch, b0 = st->tile.b0;
    LT *rexp = (LT *)lc_at(st, st->lay->refs_by_column);
    int64_t p, i, m;
    for (p = g0; p <= g1; ++p) {
        LT *row = rexp + (p - g0) * pitch;
        const LT *a = LCF(lc_anchors)(st, as, p);
        for (i = lo, m = lo / st->lw; i < hi; ++m) {
            const int64_t end = kmin(hi, (m + 1) * st->lw);
            for (; i < end; ++i)
                row[i - b0] = a[m - as->mlo];
        }
    }
}

/* The constants of a vertical walk. */
typedef struct LCF(lc_walk) {
    const lc_row_plan *plan;  /* per output row, from t_a */
    LT *suf1, *suf2;          /* suffix sums of the current block: len rows each */
    LT *pre1, *pre2;          /* prefix sums carried between strips: one row each */
    const LT *const *tab1;    /* suffixes sum these rows (padded row P at P - t_a) */
    const LT *const *tab2;
    const LT *const *pre_tab1; /* prefixes sum these */
    const LT *const *pre_tab2;
    const LT *cin;
    int64_t t_a, t_b, len, pitch;
    int64_t col_lo, col_hi; /* columns walked (buffer columns, whole vectors) */
    int two; /* a second quantity is summed */
    LV inv, count, p0, pm, ps, alpha, delta, psd, c1, c2;
    LT beta;
} LCF(lc_walk);

/* At the walk's first row t of a block, for K column vectors from column i:
 * the block's suffix sums from its end down to t, and the prefix sums up to
 * row t + len - 1 (into pre1, pre2). TWO: the second quantity too. */
SIMD_INLINE void LCF(lc_block_start)(const LCF(lc_walk) *wk, int64_t t, int64_t i, const int K,
                                     const int TWO)
{
    const int64_t len = wk->len, P = wk->pitch, t_a = wk->t_a, start = t / len * len;
    LV a1[LC_TILE], a2[LC_TILE];
    int64_t p;
    int k;
    for (k = 0; k < K; ++k)
        a1[k] = a2[k] = LBC(0);
    for (p = start + len - 1; p >= t; --p) {
        const LT *h1 = wk->tab1[p - t_a] + i, *h2 = wk->tab2[p - t_a] + i;
        LT *o1 = wk->suf1 + (p - start) * P + i, *o2 = wk->suf2 + (p - start) * P + i;
        for (k = 0; k < K; ++k) {
            a1[k] += LLD(h1 + k * LN);
            LST(o1 + k * LN, a1[k]);
            if (TWO) {
                a2[k] += LLD(h2 + k * LN);
                LST(o2 + k * LN, a2[k]);
            }
        }
    }
    for (k = 0; k < K; ++k)
        a1[k] = a2[k] = LBC(0);
    for (p = start + len; p < t + len; ++p) {
        const LT *h1 = wk->pre_tab1[p - t_a] + i, *h2 = wk->pre_tab2[p - t_a] + i;
        for (k = 0; k < K; ++k) {
            a1[k] += LLD(h1 + k * LN);
            if (TWO)
                a2[k] += LLD(h2 + k * LN);
        }
    }
    for (k = 0; k < K; ++k) {
        LST(wk->pre1 + i + k * LN, a1[k]);
        LST(wk->pre2 + i + k * LN, a2[k]);
    }
}

/* lc_block_start once per (K, TWO), called once a block: kept out of line */
static void LCF(lc_block_start_tile2)(const LCF(lc_walk) *wk, int64_t t, int64_t i)
{
    LCF(lc_block_start)(wk, t, i, LC_TILE, 1);
}
static void LCF(lc_block_start_tile1)(const LCF(lc_walk) *wk, int64_t t, int64_t i)
{
    LCF(lc_block_start)(wk, t, i, LC_TILE, 0);
}
static void LCF(lc_block_start_one2)(const LCF(lc_walk) *wk, int64_t t, int64_t i)
{
    LCF(lc_block_start)(wk, t, i, 1, 1);
}
static void LCF(lc_block_start_one1)(const LCF(lc_walk) *wk, int64_t t, int64_t i)
{
    LCF(lc_block_start)(wk, t, i, 1, 0);
}
#define LC_BLOCK_START(wk, t, i, K, TWO)                                                       \
    ((K) == 1 ? ((TWO) ? LCF(lc_block_start_one2)(wk, t, i) : LCF(lc_block_start_one1)(wk, t, i)) \
              : ((TWO) ? LCF(lc_block_start_tile2)(wk, t, i)                                    \
                       : LCF(lc_block_start_tile1)(wk, t, i)))

/* Output row t of a walk, for K column vectors from column i: at the walk's
 * first row of a block, the block's suffix sums and the prefix sums so far
 * (into p1, p2), else the prefix sums gain row t + len - 1. */
SIMD_INLINE void LCF(lc_walk_advance)(const LCF(lc_walk) *wk, const lc_row_plan *rp, int64_t t,
                                      int64_t i, const int K, const int TWO, LV *p1, LV *p2)
{
    int k;
    if (rp->kind == LC_BLOCK) {
        LC_BLOCK_START(wk, t, i, K, TWO);
        for (k = 0; k < K; ++k) {
            p1[k] = LLD(wk->pre1 + i + k * LN);
            p2[k] = LLD(wk->pre2 + i + k * LN);
        }
    } else {
        const LT *h1 = (const LT *)rp->add1 + i, *h2 = (const LT *)rp->add2 + i;
        for (k = 0; k < K; ++k) {
            p1[k] += LLD(h1 + k * LN);
            if (TWO)
                p2[k] += LLD(h2 + k * LN);
        }
    }
}

/*
 * Statistics of output rows [t_a, t_b) (stream stats; suffixes from the rows'
 * sums about their own group's anchors, prefixes from their sums about the
 * group before's) and the pixel math, for K column vectors from column i.
 * With r the window's anchor, S1, S2 the window sums of (x - r) and
 * (x - r)^2 over its pixels in the plane and npad its pixels outside it
 * (each x = 0):
 *   M - r = (S1 - npad*r)/N,  VAR = max((S2 + npad*r^2)/N - (M - r)^2, 0)
 *   A = X - p0*M = (X - p0*r) - p0*(M - r)
 * forward: out rows (Y); gradient: G (ring), U, W (temporaries from t_a).
 * MODE and POWER are constants where it is inlined.
 */
SIMD_INLINE void LCF(stats_tile)(const LCF(lc_walk) *wk, int64_t i, const int K, const int MODE,
                                 const int POWER)
{
    const int64_t t_a = wk->t_a, t_b = wk->t_b;
    const int two = MODE != LC_FORWARD_PLAIN;
    LV px[LC_TILE], pq[LC_TILE], ci[LC_TILE];
    int64_t t;
    int k;
    for (k = 0; k < K; ++k) {
        ci[k] = LLD(wk->cin + i + k * LN);
        px[k] = LLD(wk->pre1 + i + k * LN);
        pq[k] = LLD(wk->pre2 + i + k * LN);
    }
    for (t = t_a; t < t_b; ++t) {
        const lc_row_plan *rp = wk->plan + (t - t_a);
        const LT *s1, *s2, *xrow = (const LT *)rp->x + i, *rrow = (const LT *)rp->refs + i;
        LV rin;
        LCF(lc_walk_advance)(wk, rp, t, i, K, two, px, pq);
        s1 = wk->suf1 + rp->suffix + i;
        s2 = wk->suf2 + rp->suffix + i;
        rin = LBC((LT)rp->rows_in);
#if defined(__GNUC__) || defined(__clang__)
#pragma GCC unroll 4
#endif
        for (k = 0; k < K; ++k) {
            const LV r = LLD(rrow + k * LN), xv = LLD(xrow + k * LN);
            const LV npad = wk->count - rin * ci[k];
            const LV md = LFMA(-npad, r, LLD(s1 + k * LN) + px[k]) * wk->inv; /* M - r */
            const LV av = LFMA(-wk->p0, r, xv) - wk->p0 * md;
            if (MODE == LC_FORWARD_PLAIN) {
                /* alpha = 0: D = delta^-beta */
                LST((LT *)rp->out + i + k * LN, wk->pm + wk->psd * av);
            } else {
                const LV s2v = LLD(s2 + k * LN) + pq[k];
                const LV var = LCLAMP0(LFMA(-md, md, LFMA(npad, r * r, s2v) * wk->inv));
                const LV tt = LFMA(wk->alpha, var, wk->delta);
                const LV d = LPOWER(POWER, tt, wk->beta);
                if (MODE == LC_GRADIENT) {
                    const LV gy = LLD((const LT *)rp->dy + i + k * LN);
                    const LV uu = gy * av * LD_OVER_T(POWER, d, tt);
                    const LV gg = gy * d;
                    const LV cu = wk->c2 * uu;
                    LST((LT *)rp->g + i + k * LN, gg);
                    LST((LT *)rp->u + i + k * LN, cu);
                    /* Wb = c1*G - cU*(M - r): the adjoint's sums add (s - r)*cU */
                    LST((LT *)rp->w + i + k * LN, wk->c1 * gg - cu * md);
                } else {
                    LST((LT *)rp->out + i + k * LN, wk->pm + wk->ps * av * d);
                }
            }
        }
    }
    for (k = 0; k < K; ++k) {
        LST(wk->pre1 + i + k * LN, px[k]);
        LST(wk->pre2 + i + k * LN, pq[k]);
    }
}

#define LC_TILES(fn, ...)                                                                      \
    do {                                                                                       \
        int64_t i_;                                                                            \
        for (i_ = wk.col_lo; i_ + LC_TILE * LN <= wk.col_hi; i_ += LC_TILE * LN)               \
            fn(&wk, i_, LC_TILE, __VA_ARGS__);                                                 \
        for (; i_ < wk.col_hi; i_ += LN)                                                       \
            fn(&wk, i_, 1, __VA_ARGS__);                                                       \
    } while (0)

static void LCF(lc_walk_init)(const lc_state *st, LCF(lc_walk) *wk, int64_t t_a, int64_t t_b,
                              size_t suffix, size_t prefix, int two)
{
    memset(wk, 0, sizeof *wk);
    wk->plan = st->plan;
    wk->len = st->lh;
    wk->pitch = st->lay->pitch;
    wk->t_a = t_a;
    wk->t_b = t_b;
    wk->suf1 = (LT *)lc_at(st, suffix);
    wk->suf2 = wk->suf1 + wk->len * wk->pitch;
    wk->pre1 = (LT *)lc_at(st, prefix);
    wk->pre2 = wk->pre1 + wk->pitch;
    wk->tab1 = (const LT *const *)st->tab[0];
    wk->tab2 = (const LT *const *)st->tab[1];
    wk->pre_tab1 = (const LT *const *)st->tab[2];
    wk->pre_tab2 = (const LT *const *)st->tab[3];
    wk->two = two;
}

static void LCF(stats_walk)(lc_state *st, int64_t t_a, int64_t t_b, LT *const *out_rows)
{
    const mpsnorm_lcn_job *job = st->job;
    const mpsnorm_lcn_layout *lay = st->lay;
    const lc_ring *suffix[2] = {&st->hxo, &st->hqo}, *prefix[2] = {&st->hxp, &st->hqp};
    const int squares = job->alpha != 0.0;
    LCF(lc_walk) wk;

    LCF(lc_walk_init)(st, &wk, t_a, t_b, lay->stat_suffix, lay->stat_prefix, squares);
    wk.col_lo = st->tile.s_lo - st->tile.b0;
    wk.col_hi = st->tile.s_hi - st->tile.b0;
    wk.cin = (const LT *)lc_at(st, lay->cols_inside);
    wk.inv = LBC((LT)(1.0 / job->count));
    wk.count = LBC((LT)job->count);
    wk.p0 = LBC((LT)job->p0);
    wk.pm = LBC((LT)job->pm);
    wk.ps = LBC((LT)job->ps);
    wk.alpha = LBC((LT)job->alpha);
    wk.delta = LBC((LT)job->delta);
    wk.psd = LBC((LT)(job->ps * job->d_const));
    wk.beta = (LT)job->beta;
    wk.c1 = LBC((LT)(job->p0 / job->count));
    wk.c2 = LBC((LT)(2.0 * job->alpha * job->beta / job->count));

    if (!squares) {
        suffix[1] = prefix[1] = NULL;
    }
    LCF(lc_expand_refs)(st, &st->anchors[LC_STATS], t_a / st->lh, (t_b - 1) / st->lh,
                        st->tile.s_lo, st->tile.s_hi);
    lc_plan_walk(st, t_a, t_b, st->cu, suffix, prefix, st->stats.block,
                 (const char *)lc_at(st, lay->refs_by_column), job->gradient,
                 (void *const *)out_rows);
/* the tiles with MODE, and the job's power as a constant */
#define LC_STATS_TILES(MODE)                                                                   \
    do {                                                                                       \
        switch (job->power) {                                                                  \
        case MPSNORM_POWER_RSQRT:                                                              \
            LC_TILES(LCF(stats_tile), MODE, MPSNORM_POWER_RSQRT);                              \
            break;                                                                             \
        case MPSNORM_POWER_RECIPROCAL:                                                         \
            LC_TILES(LCF(stats_tile), MODE, MPSNORM_POWER_RECIPROCAL);                         \
            break;                                                                             \
        case MPSNORM_POWER_THREE_QUARTERS:                                                     \
            LC_TILES(LCF(stats_tile), MODE, MPSNORM_POWER_THREE_QUARTERS);                     \
            break;                                                                             \
        default:                                                                               \
            LC_TILES(LCF(stats_tile), MODE, MPSNORM_POWER_GENERAL);                            \
            break;                                                                             \
        }                                                                                      \
    } while (0)
    if (!squares)
        LC_TILES(LCF(stats_tile), LC_FORWARD_PLAIN, MPSNORM_POWER_GENERAL);
    else if (job->gradient)
        LC_STATS_TILES(LC_GRADIENT);
    else
        LC_STATS_TILES(LC_FORWARD);
#undef LC_STATS_TILES
    st->stats.block = (t_b - 1) / st->lh;
}

/*
 * Adjoint sums of output rows [t_a, t_b) (stream adjoint over the row sums of
 * W = c1*G - c2*U*(M - s) and of cU = c2*U, s the anchors of the rows'
 * adjoint groups) and dX = ps*(G - Badj(W) - (X - s)*Badj(cU)) into out
 * rows: the suffix part of Badj(cU) is about the anchors of the output's
 * group, the prefix part about the next group's, as the sums of W are
 * (per pixel, W + (X - s)*cU = c1*G + cU*(X - M) whatever s). For K column
 * vectors from column i; FULL (alpha != 0) a constant where it is inlined.
 */
SIMD_INLINE void LCF(adjoint_tile)(const LCF(lc_walk) *wk, int64_t i, const int K, const int FULL)
{
    const int64_t t_a = wk->t_a, t_b = wk->t_b;
    LV pg[LC_TILE], pu[LC_TILE];
    int64_t t;
    int k;
    for (k = 0; k < K; ++k) {
        pg[k] = LLD(wk->pre1 + i + k * LN);
        pu[k] = LLD(wk->pre2 + i + k * LN);
    }
    for (t = t_a; t < t_b; ++t) {
        const lc_row_plan *rp = wk->plan + (t - t_a);
        const LT *grow = (const LT *)rp->g + i, *xrow = (const LT *)rp->x + i;
        const LT *srow = (const LT *)rp->refs + i, *snext = srow + wk->pitch;
        LT *orow = (LT *)rp->out + i;
        const LT *s1, *s2;
        LCF(lc_walk_advance)(wk, rp, t, i, K, FULL, pg, pu);
        s1 = wk->suf1 + rp->suffix + i;
        s2 = wk->suf2 + rp->suffix + i;
#if defined(__GNUC__) || defined(__clang__)
#pragma GCC unroll 4
#endif
        for (k = 0; k < K; ++k) {
            LV res = LLD(grow + k * LN) - (LLD(s1 + k * LN) + pg[k]);
            if (FULL) { /* the sums are of cU = c2*U, each part about its rows' anchors */
                const LV xv = LLD(xrow + k * LN);
                res -= (xv - LLD(srow + k * LN)) * LLD(s2 + k * LN) +
                       (xv - LLD(snext + k * LN)) * pu[k];
            }
            LST(orow + k * LN, wk->ps * res);
        }
    }
    for (k = 0; k < K; ++k) {
        LST(wk->pre1 + i + k * LN, pg[k]);
        LST(wk->pre2 + i + k * LN, pu[k]);
    }
}

static void LCF(adjoint_walk)(lc_state *st, int64_t t_a, int64_t t_b, LT *const *out_rows)
{
    const mpsnorm_lcn_job *job = st->job;
    const mpsnorm_lcn_layout *lay = st->lay;
    const int full = job->alpha != 0.0;
    const lc_ring *sums[2] = {&st->hw, full ? &st->hu : NULL};
    LCF(lc_walk) wk;

    LCF(lc_walk_init)(st, &wk, t_a, t_b, lay->adj_suffix, lay->adj_prefix, full);
    wk.col_lo = st->tile.out_lo - st->tile.b0;
    wk.col_hi = st->tile.out_hi - st->tile.b0;
    wk.ps = LBC((LT)job->ps);
    wk.c2 = LBC((LT)(2.0 * job->alpha * job->beta / job->count));
    if (full)
        LCF(lc_expand_refs)(st, &st->anchors[LC_ADJOINT], t_a / st->lh, (t_b - 1) / st->lh + 1,
                            st->tile.out_lo, st->tile.out_hi);
    lc_plan_walk(st, t_a, t_b, st->cd, sums, sums, st->adjoint.block,
                 full ? (const char *)lc_at(st, lay->refs_by_column) : NULL, 0,
                 (void *const *)out_rows);
    if (full)
        LC_TILES(LCF(adjoint_tile), 1);
    else
        LC_TILES(LCF(adjoint_tile), 0);
    st->adjoint.block = (t_b - 1) / st->lh;
}

#undef LC_TILES
#undef LC_BLOCK_START
#undef LCF
#undef LT
#undef LV
#undef LN
#undef LLD
#undef LST
#undef LBC
#undef LFMA
#undef LCLAMP0
#undef LPOWER
#undef LD_OVER_T
#undef LLOAD
#undef LTRANSPOSE
#undef LSUFFIX
