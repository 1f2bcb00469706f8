/*
 * kern_box.h -- part of the kernel template (kernels_impl.h): window ("box")
 * sums along rows, for KB_N rows at a time, in O(1) per element.
 *
 * Instantiated once per element type; the includer defines
 *   KB_T          element type (float or double)
 *   KB_V          its vector type, KB_N lanes
 *   KB_N          lanes of KB_V: the rows summed at once
 *   KB_LD, KB_ST  vector load and store (any alignment)
 *   KB_BC         broadcast of one KB_T
 *   KB_FMA        a * b + c (simd.h: fused where the instruction set has it)
 *   KB_TRANSPOSE  transposes KB_N vectors of KB_N lanes in place
 *   KB_SUFFIX     the names' suffix (f or d)
 * and this file undefines them at its end.
 *
 * Lines: KB_N rows are transposed into one interleaved line, vector k of the
 * line holding column k of each row (lane g = row g), so a row's running sum
 * is one lane of one vector chain.
 *
 * The block scheme: with the window of output i at columns [i - cl, i - cl +
 * L) (cl its reach to the left, L its length, both clipped to the row), the
 * outputs are cut into blocks [m L, (m+1) L) and
 *
 *   out(i) = S(i) + P(i),  S(i) = the window's columns up to the end of block m,
 *                          P(i) = the window's columns in the next block,
 *
 * S summed from the block's end down, P from the next block's start up. A sum
 * is made only of its window's values (no running total is subtracted: no
 * cancellation, and a NaN or infinity reaches only the windows holding it);
 * blocks are anchored at fixed columns of the plane and every sum is taken in
 * a fixed order, so an output never depends on where a strip, band or tile
 * starts. Columns outside the row are absent: they add nothing.
 */
#if !defined(KB_T) || !defined(KB_V) || !defined(KB_N) || !defined(KB_LD) || !defined(KB_ST) || \
    !defined(KB_BC) || !defined(KB_FMA) || !defined(KB_TRANSPOSE) || !defined(KB_SUFFIX)
#error "kern_box.h needs KB_T, KB_V, KB_N, KB_LD, KB_ST, KB_BC, KB_FMA, KB_TRANSPOSE, KB_SUFFIX"
#endif

#include <stdint.h>

#include "kern_common.h"
#include "simd.h"

#define KB(name) KCAT(name, KB_SUFFIX)

/* line[k][g] = rows[g][col0 + k] for k < count (a multiple of KB_N). */
static void KB(box_line_in)(const KB_T *const *rows, int64_t col0, int64_t count,
                            KB_T *restrict line)
{
    KB_V r[KB_N];
    int64_t k;
    int g;
    for (k = 0; k < count; k += KB_N) {
        for (g = 0; g < KB_N; ++g)
            r[g] = KB_LD(rows[g] + col0 + k);
        KB_TRANSPOSE(r);
        for (g = 0; g < KB_N; ++g)
            KB_ST(line + (k + g) * KB_N, r[g]);
    }
}

/* rows[g][col0 + k] = line[k][g] for k < count (a multiple of KB_N). */
static void KB(box_line_out)(const KB_T *restrict line, int64_t count, KB_T *const *rows,
                             int64_t col0)
{
    KB_V r[KB_N];
    int64_t k;
    int g;
    for (k = 0; k < count; k += KB_N) {
        for (g = 0; g < KB_N; ++g)
            r[g] = KB_LD(line + (k + g) * KB_N);
        KB_TRANSPOSE(r);
        for (g = 0; g < KB_N; ++g)
            KB_ST(rows[g] + col0 + k, r[g]);
    }
}

/*
 * The loops of block m of a sweep (every sweep below): with base = m*L and
 * end = base + L, the suffixes from the block's end down (output i adds
 * column i - cl where that is inside the row), then RESET(), the prefixes
 * from the block's start up (output i is stored, then the next block's
 * column i + L - cl is added, where inside the row). STEP(col) adds a
 * column to the running sums, SUFFIX(i) and OUT(i) store output i's.
 */
#define KB_BLOCK(STEP, SUFFIX, OUT, RESET)                                                     \
    do {                                                                                       \
        const int64_t s_hi_ = kmax(base, kmin(end, cl + w));                                   \
        const int64_t s_lo_ = kmin(s_hi_, kmax(base, cl));                                     \
        const int64_t p_lo_ = kmin(end, kmax(base, cl - L));                                   \
        const int64_t p_hi_ = kmax(p_lo_, kmin(end, cl - L + w));                              \
        int64_t i_;                                                                            \
        for (i_ = end - 1; i_ >= s_hi_; --i_)                                                  \
            SUFFIX(i_);                                                                        \
        for (; i_ >= s_lo_; --i_) {                                                            \
            STEP(i_ - cl);                                                                     \
            SUFFIX(i_);                                                                        \
        }                                                                                      \
        for (; i_ >= base; --i_)                                                               \
            SUFFIX(i_);                                                                        \
        RESET();                                                                               \
        for (i_ = base; i_ < p_lo_; ++i_)                                                      \
            OUT(i_);                                                                           \
        for (; i_ < p_hi_; ++i_) {                                                             \
            OUT(i_);                                                                           \
            STEP(i_ + L - cl);                                                                 \
        }                                                                                      \
        for (; i_ < end; ++i_)                                                                 \
            OUT(i_);                                                                           \
    } while (0)

/*
 * The window statistics of one line: for the outputs of blocks [mlo, mhi],
 * with v = x - ref (ref: a value per block and lane), the window sums of v
 * and (squares) of v*v, once with the references `own` and once with `prev`
 * (the two row groups a row's sums serve, kern_lcn.h; KB_N lanes a block).
 * Line e holds columns [e0, ...), out[q] outputs [mlo*L, ...): q = 0, 1 the
 * sums of v and v*v about own, q = 2, 3 about prev. suf: 4 * L vectors.
 */
SIMD_INLINE void KB(box_stats)(const KB_T *restrict e, int64_t e0, int64_t w, int64_t cl, int64_t L,
                               int64_t mlo, int64_t mhi, const KB_T *own, const KB_T *prev,
                               int squares, KB_T *restrict suf, KB_T *const *out)
{
    const int64_t o0 = mlo * L;
    KB_T *so = suf, *sq = suf + L * KB_N, *sp = suf + 2 * L * KB_N, *sr = suf + 3 * L * KB_N;
    int64_t m;
/* v about both references, into the four running sums */
#define KB_STEP(col)                                                                           \
    do {                                                                                       \
        const KB_V v_ = KB_LD(e + ((col) - e0) * KB_N), vo_ = v_ - ro, vp_ = v_ - rp;          \
        xo += vo_;                                                                             \
        xp += vp_;                                                                             \
        if (squares) {                                                                         \
            qo = KB_FMA(vo_, vo_, qo);                                                         \
            qp = KB_FMA(vp_, vp_, qp);                                                         \
        }                                                                                      \
    } while (0)
#define KB_SUF_AT(i)                                                                           \
    do {                                                                                       \
        const int64_t k_ = ((i) - base) * KB_N;                                                \
        KB_ST(so + k_, xo);                                                                    \
        KB_ST(sp + k_, xp);                                                                    \
        if (squares) {                                                                         \
            KB_ST(sq + k_, qo);                                                                \
            KB_ST(sr + k_, qp);                                                                \
        }                                                                                      \
    } while (0)
#define KB_OUT_AT(i)                                                                              \
    do {                                                                                       \
        const int64_t k_ = ((i) - base) * KB_N;                                                \
        KB_ST(ox + k_, KB_LD(so + k_) + xo);                                                   \
        KB_ST(px + k_, KB_LD(sp + k_) + xp);                                                   \
        if (squares) {                                                                         \
            KB_ST(oq + k_, KB_LD(sq + k_) + qo);                                               \
            KB_ST(pq + k_, KB_LD(sr + k_) + qp);                                               \
        }                                                                                      \
    } while (0)
#define KB_RESET() (xo = qo = xp = qp = KB_BC(0))
    for (m = mlo; m <= mhi; ++m) {
        const KB_V ro = KB_LD(own + (m - mlo) * KB_N), rp = KB_LD(prev + (m - mlo) * KB_N);
        const int64_t base = m * L, end = base + L;
        KB_T *ox = out[0] + (base - o0) * KB_N, *oq = out[1] + (base - o0) * KB_N;
        KB_T *px = out[2] + (base - o0) * KB_N, *pq = out[3] + (base - o0) * KB_N;
        KB_V xo = KB_BC(0), qo = KB_BC(0), xp = KB_BC(0), qp = KB_BC(0);
        KB_BLOCK(KB_STEP, KB_SUF_AT, KB_OUT_AT, KB_RESET);
    }
#undef KB_STEP
#undef KB_SUF_AT
#undef KB_OUT_AT
#undef KB_RESET
}

/*
 * Window sums of two lines a and b (no reference; columns outside the row
 * absent), for the outputs of blocks [mlo, mhi], into oa and ob (outputs
 * [mlo*L, ...)). suf: 2 * L vectors.
 */
static void KB(box_sums2)(const KB_T *restrict a, const KB_T *restrict b, int64_t e0, int64_t w,
                          int64_t cl, int64_t L, int64_t mlo, int64_t mhi, KB_T *restrict suf,
                          KB_T *restrict oa, KB_T *restrict ob)
{
    const int64_t o0 = mlo * L;
    KB_T *fa = suf, *fb = suf + L * KB_N;
    int64_t m;
#define KB_STEP(col)                                                                           \
    do {                                                                                       \
        sa += KB_LD(a + ((col) - e0) * KB_N);                                                  \
        sb += KB_LD(b + ((col) - e0) * KB_N);                                                  \
    } while (0)
#define KB_SUF_AT(i)                                                                           \
    do {                                                                                       \
        KB_ST(fa + ((i) - base) * KB_N, sa);                                                   \
        KB_ST(fb + ((i) - base) * KB_N, sb);                                                   \
    } while (0)
#define KB_OUT_AT(i)                                                                              \
    do {                                                                                       \
        const int64_t k_ = ((i) - base) * KB_N;                                                \
        KB_ST(ta + k_, KB_LD(fa + k_) + sa);                                                   \
        KB_ST(tb + k_, KB_LD(fb + k_) + sb);                                                   \
    } while (0)
#define KB_RESET() (sa = sb = KB_BC(0))
    for (m = mlo; m <= mhi; ++m) {
        const int64_t base = m * L, end = base + L;
        KB_T *ta = oa + (base - o0) * KB_N, *tb = ob + (base - o0) * KB_N;
        KB_V sa = KB_BC(0), sb = KB_BC(0);
        KB_BLOCK(KB_STEP, KB_SUF_AT, KB_OUT_AT, KB_RESET);
    }
#undef KB_STEP
#undef KB_SUF_AT
#undef KB_OUT_AT
#undef KB_RESET
}

/*
 * The row sums over the mirrored window of the gradient (kern_lcn.h): with
 * lines wb and cu, the window sums of W = wb + (s - r)*cu about the adjoint
 * anchors s (a value per block and lane: own[(m - mlo)*N + g]; r the
 * statistics' anchor of the column's group, stat[(col / L - smlo)*N + g])
 * and of cu, for the outputs of blocks [mlo, mhi]: out[0] W, out[1] cu.
 * Columns outside the row are absent. suf: 2 * L vectors.
 */
static void KB(box_adjoint)(const KB_T *restrict wb, const KB_T *restrict cu, int64_t e0,
                            int64_t w, int64_t cl, int64_t L, int64_t mlo, int64_t mhi,
                            const KB_T *own, const KB_T *stat, int64_t smlo, KB_T *restrict suf,
                            KB_T *const *out)
{
    const int64_t o0 = mlo * L;
    KB_T *fo = suf, *fu = suf + L * KB_N;
    int64_t m;
/* (s - r) is fixed over a statistics group's columns [g_lo, g_lo + L) */
#define KB_STEP(col)                                                                           \
    do {                                                                                       \
        const int64_t c_ = (col), k_ = (c_ - e0) * KB_N;                                       \
        KB_V uv_;                                                                              \
        if (c_ < g_lo || c_ >= g_lo + L) {                                                     \
            g_lo = c_ / L * L;                                                                 \
            d = s_ref - KB_LD(stat + (c_ / L - smlo) * KB_N);                                  \
        }                                                                                      \
        uv_ = KB_LD(cu + k_);                                                                  \
        so += KB_FMA(d, uv_, KB_LD(wb + k_));                                                  \
        su += uv_;                                                                             \
    } while (0)
#define KB_SUF_AT(i)                                                                           \
    do {                                                                                       \
        const int64_t k_ = ((i) - base) * KB_N;                                                \
        KB_ST(fo + k_, so);                                                                    \
        KB_ST(fu + k_, su);                                                                    \
    } while (0)
#define KB_OUT_AT(i)                                                                              \
    do {                                                                                       \
        const int64_t k_ = ((i) - base) * KB_N;                                                \
        KB_ST(to + k_, KB_LD(fo + k_) + so);                                                   \
        KB_ST(tu + k_, KB_LD(fu + k_) + su);                                                   \
    } while (0)
#define KB_RESET() (so = su = KB_BC(0))
    for (m = mlo; m <= mhi; ++m) {
        const KB_V s_ref = KB_LD(own + (m - mlo) * KB_N);
        const int64_t base = m * L, end = base + L;
        KB_T *to = out[0] + (base - o0) * KB_N, *tu = out[1] + (base - o0) * KB_N;
        KB_V so = KB_BC(0), su = KB_BC(0), d = KB_BC(0);
        int64_t g_lo = -L - 1; /* no group yet: the first column sets one */
        KB_BLOCK(KB_STEP, KB_SUF_AT, KB_OUT_AT, KB_RESET);
    }
#undef KB_STEP
#undef KB_SUF_AT
#undef KB_OUT_AT
#undef KB_RESET
}

#undef KB_BLOCK
#undef KB
#undef KB_T
#undef KB_V
#undef KB_N
#undef KB_LD
#undef KB_ST
#undef KB_BC
#undef KB_FMA
#undef KB_TRANSPOSE
#undef KB_SUFFIX
