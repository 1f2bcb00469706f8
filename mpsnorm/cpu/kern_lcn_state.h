/*
 * kern_lcn_state.h -- part of the kernel template (kernels_impl.h): the
 * state of one LCN kernel call (kern_lcn.h) and the row tables its vertical
 * walks (kern_lcn_typed.h) read, the same for every compute type.
 */
#ifndef MPSNORM_CPU_KERN_LCN_STATE_H
#define MPSNORM_CPU_KERN_LCN_STATE_H

#include <stddef.h>
#include <stdint.h>

#include "kern_io.h"
#include "kernels.h"

#ifndef MPSNORM_SIMD_LEVEL
#error "kern_lcn_state.h needs MPSNORM_SIMD_LEVEL (simd.h)"
#endif

/* Rows r of a ring in slot r % cap. */
typedef struct lc_ring {
    char *base;
    int64_t cap;
    size_t row_bytes;
} lc_ring;

/* Position of a vertical stream (kern_lcn_typed.h): the block whose suffix
 * sums are stored, or -1; the prefix sums then hold padded rows from the
 * next block's start up to the last output row's window. */
typedef struct lc_stream {
    int64_t block;
} lc_stream;

/* Column vectors a vertical walk carries at once: the running sums of a few
 * vectors in registers, the per-row work shared by them. */
/* Rows of X and dY read ahead of use: their first touch of memory overlaps
 * the work on the rows before (about three strips). */
#define LC_PREFETCH_ROWS 48

/* Row groups whose anchors are cached: more than a line's rows span (kern_lcn_typed.h). */
#define LC_ANCHOR_SLOTS MPSNORM_LCN_ANCHOR_SLOTS

#if MPSNORM_SIMD_LEVEL == 3
#define LC_TILE 4
#else
#define LC_TILE 2
#endif

/* What a vertical walk does at output row t (kern_lcn_typed.h). */
enum {
    LC_ADD = 0,  /* the prefix gains row t + len - 1 */
    LC_BLOCK = 1 /* t is the walk's first row in its block: the block's suffix sums
                    (from its end down to t), and the prefix up to t + len - 1 */
};

/* What the statistics walk writes (stats_tile's MODE). */
enum { LC_FORWARD = 0, LC_FORWARD_PLAIN = 1 /* alpha = 0 */, LC_GRADIENT = 2 };

typedef struct lc_row_plan {
    const char *x, *dy;     /* X and dY rows of output row t */
    char *g, *u, *w, *out;  /* G ring row, U and W temporaries, the output row */
    const char *refs;       /* per column, the anchor of t's row group */
    const char *add1, *add2; /* LC_ADD: the rows the prefix gains */
    int64_t suffix;         /* element offset of t's suffix sums: (t % len) * pitch */
    double rows_in;         /* rows of t's window inside the plane */
    int kind;
} lc_row_plan;

/* the layout's room for it (C99: no static assertions) */
typedef char lc_row_plan_fits[sizeof(lc_row_plan) <= MPSNORM_LCN_PLAN_BYTES ? 1 : -1];

/* The anchors of one kind of window group (kern_lcn_typed.h): group (p, m)
 * is anchored at row (p+1) lh - 1 - up and column (m+1) lw - 1 - left. */
typedef struct lc_anchor_set {
    int64_t up, left;
    int nearest;                 /* outside the plane: the nearest pixel (else 0) */
    int64_t mlo, mhi;            /* the tile's column groups */
    size_t rows;                 /* the cached rows: offset in the scratch */
    int64_t tag[LC_ANCHOR_SLOTS]; /* the row group cached in each slot, or -2 */
} lc_anchor_set;

/* The statistics' groups (windows of outputs), and the adjoint's (mirrored
 * windows of outputs). */
enum { LC_STATS = 0, LC_ADJOINT = 1 };

typedef struct lc_state {
    const mpsnorm_lcn_job *job;
    const mpsnorm_lcn_layout *lay;
    char *base;
    int64_t n, c;           /* the plane */
    int64_t cu, cd, cl, cr; /* window reach up, down, left, right, clipped to the plane */
    int64_t lh, lw;         /* window height and width, clipped */
    mpsnorm_lcn_tile tile;  /* the column tile: row buffers hold columns [b0, b0 + pitch) */
    int direct_x, direct_dy, direct_out; /* rows used in place in the tensors */
    /* rings: X; row sums of (X - r) and (X - r)^2 about each row's own group's
     * anchors (o) and about the group before's (p); G; row sums over the
     * mirrored window of W about each row's own adjoint group's anchors, and
     * of c2*U */
    lc_ring xr, hxo, hqo, hxp, hqp, gr, hw, hu;
    void **xptr;            /* xptr[r % cap]: X row r (compute type) */
    lc_stream stats, adjoint; /* the two vertical walks */
    int64_t dy_first;       /* the dY temporaries hold rows from dy_first */
    /* per vertical walk over rows [t_a, t_b): tab[k][P - t_a] the rows it sums
     * (padded row P; a zero row outside the plane), plan[t - t_a] the rest */
    const void **tab[4];
    lc_row_plan *plan;
    lc_anchor_set anchors[2]; /* LC_STATS, LC_ADJOINT */
    const void *zero;
    void *dummy;
} lc_state;

static inline void *lc_at(const lc_state *st, size_t offset)
{
    return st->base + offset;
}

static inline void *lc_ring_row(const lc_ring *ring, int64_t r)
{
    return ring->base + (size_t)(r % ring->cap) * ring->row_bytes;
}

/* dY row t from the tile's first column: in the tensor, or in the temporaries
 * (from row dy_first). */
static inline const char *lc_dy_row(const lc_state *st, int64_t t)
{
    const mpsnorm_tensor *dy = st->job->dy;
    if (st->direct_dy)
        return (const char *)dy->data +
               io_offset(dy, st->n, st->c, t, st->tile.b0) * (int64_t)st->lay->tsize;
    return (const char *)lc_at(st, st->lay->dy_rows) +
           (size_t)((t - st->dy_first) * st->lay->pitch) * st->lay->tsize;
}

/* Rows of the window of output row t inside the plane (up/down unclipped). */
static inline double lc_rows_in(const mpsnorm_lcn_job *job, int64_t t)
{
    const int64_t top = t - job->up > 0 ? t - job->up : 0;
    const int64_t bottom = t + job->down < job->h - 1 ? t + job->down : job->h - 1;
    return (double)(bottom - top + 1);
}

/*
 * The tables and plan of a walk over output rows [t_a, t_b): it sums padded
 * rows [t_a, t_b + lh - 1) (image row = padded - reach) of `suffix` (two
 * rings) down from each block's end and of `prefix` up from the next
 * block's start; `block` is the block whose sums the walk starts with.
 * refs: per-column anchors of the row groups from t_a's (NULL: none);
 * with_dy: the walk reads dY (the gradient's statistics walk);
 * out_rows: the output rows (NULL: the gradient's temporaries).
 */
static void lc_plan_walk(lc_state *st, int64_t t_a, int64_t t_b, int64_t reach,
                         const lc_ring *const *suffix, const lc_ring *const *prefix, int64_t block,
                         const char *refs, int with_dy, void *const *out_rows)
{
    const mpsnorm_lcn_job *job = st->job;
    const mpsnorm_lcn_layout *lay = st->lay;
    const int64_t len = st->lh, cap = lay->cap, g0 = t_a / len;
    const size_t row_bytes = (size_t)lay->pitch * lay->tsize;
    int64_t p, t;
    int k;
    for (p = t_a; p < t_b + len - 1; ++p) {
        const int64_t r = p - reach;
        const int inside = r >= 0 && r < job->h;
        for (k = 0; k < 4; ++k) {
            const lc_ring *ring = k < 2 ? suffix[k] : prefix[k - 2];
            st->tab[k][p - t_a] = inside && ring != NULL ? lc_ring_row(ring, r) : st->zero;
        }
    }
    for (t = t_a; t < t_b; ++t) {
        lc_row_plan *rp = st->plan + (t - t_a);
        const size_t temp = (size_t)(t - t_a) * row_bytes;
        rp->x = (const char *)st->xptr[t % cap];
        rp->dy = with_dy ? lc_dy_row(st, t) : (const char *)st->zero;
        rp->g = job->gradient ? (char *)lc_ring_row(&st->gr, t) : (char *)st->dummy;
        rp->u = (char *)lc_at(st, lay->u_rows) + temp;
        rp->w = (char *)lc_at(st, lay->w_rows) + temp;
        rp->out = out_rows != NULL ? (char *)out_rows[t - t_a] : (char *)st->dummy;
        rp->refs = refs != NULL ? refs + (size_t)(t / len - g0) * row_bytes
                                : (const char *)st->zero;
        rp->add1 = (const char *)st->tab[2][t + len - 1 - t_a];
        rp->add2 = (const char *)st->tab[3][t + len - 1 - t_a];
        rp->suffix = (t % len) * lay->pitch;
        rp->rows_in = lc_rows_in(job, t);
        rp->kind = t % len == 0 || (t == t_a && t / len != block) ? LC_BLOCK : LC_ADD;
    }
}

#endif /* MPSNORM_CPU_KERN_LCN_STATE_H */
