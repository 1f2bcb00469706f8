/*
 * kern_box.h -- part of the kernel template (kernels_impl.h): zero-padded
 * window ("box") sums in O(1) per element, for float and double rows.
 *
 * Both directions use the block scheme: the padded line e (e[s] = x[s - a],
 * zero outside) is cut into blocks [mL, mL+L) of the window length L, and the
 * window of output t, e[t .. t+L-1], is split at the block boundary inside it:
 *
 *   out[t] = S[t] + P[t+L],  S[t] = e[t] + ... + e[end of t's block]
 *                            P[u] = e[start of u's block] + ... + e[u-1]
 *
 * so every window sum is made only of that window's values (no running
 * total is subtracted: no cancellation, and a NaN or infinity reaches only
 * the windows that contain it). Blocks are anchored at fixed positions of the
 * plane, and each sum is accumulated in a fixed order, so an output does not
 * depend on which strip, band or thread computed it.
 *
 *  - Horizontal (along a row): VL rows at a time, transposed into an
 *    interleaved line (lane g = row g), so the running sums of VL rows are
 *    one vector chain; transposes use shuffles on AVX2/AVX-512.
 *  - Vertical (down a column): kern_lcn_cols.h, a stream over rows walked
 *    one column vector at a time, fused with what consumes the sums.
 *
 * Instantiated twice (BOX_T float / double) by kern_lcn.h.
 */

#ifndef KERN_BOX_COMMON
#define KERN_BOX_COMMON

static int64_t bx_min(int64_t a, int64_t b)
{
    return a < b ? a : b;
}

static int64_t bx_max(int64_t a, int64_t b)
{
    return a > b ? a : b;
}

/* Clip a window extent to a line of n: rows beyond it are zero anyway. */
static int64_t bx_clip(int64_t extent, int64_t n)
{
    return extent < n - 1 ? extent : n - 1;
}

#endif /* KERN_BOX_COMMON */

#define BXF(name) BOX_CAT(name, BOX_SUFFIX)
#define BOX_CAT(a, b) BOX_CAT2(a, b)
#define BOX_CAT2(a, b) a##_##b

/* ---- transposes: VL x VL tiles ------------------------------------------- */

/*
 * dst[k][g] = src[g][k] for g, k < BOX_VL: src row g is src[g] + src_off,
 * dst row k is dst + k * dst_stride (or dst[k] + dst_off for the scatter
 * form). BOX_VL = lanes of one BOX_V.
 */
SIMD_INLINE void BXF(transpose_in)(const BOX_T *const *src, int64_t src_off, BOX_T *dst,
                              int64_t dst_stride)
{
    BOX_V r[BOX_VL];
    int g;
    for (g = 0; g < BOX_VL; ++g)
        r[g] = BOX_LD(src[g] + src_off);
    BXF(transpose_regs)(r);
    for (g = 0; g < BOX_VL; ++g)
        BOX_ST(dst + g * dst_stride, r[g]);
}

/* transpose_in from float rows, widened (BOX_LDF loads BOX_VL floats as a BOX_V) */
SIMD_INLINE void BXF(transpose_in_f)(const float *const *src, int64_t src_off, BOX_T *dst,
                                     int64_t dst_stride)
{
    BOX_V r[BOX_VL];
    int g;
    for (g = 0; g < BOX_VL; ++g)
        r[g] = BOX_LDF(src[g] + src_off);
    BXF(transpose_regs)(r);
    for (g = 0; g < BOX_VL; ++g)
        BOX_ST(dst + g * dst_stride, r[g]);
}

SIMD_INLINE void BXF(transpose_out)(const BOX_T *src, int64_t src_stride, BOX_T *const *dst,
                               int64_t dst_off)
{
    BOX_V r[BOX_VL];
    int g;
    for (g = 0; g < BOX_VL; ++g)
        r[g] = BOX_LD(src + g * src_stride);
    BXF(transpose_regs)(r);
    for (g = 0; g < BOX_VL; ++g)
        BOX_ST(dst[g] + dst_off, r[g]);
}

/* ---- horizontal pass ------------------------------------------------------ */

/*
 * For BOX_VL rows src[g] (w elements each): out1[g][i] = window sum of
 * src[g] over columns [i - a, i + b] (zero padded), and, if out2 != NULL,
 * out2[g][i] = the same of src[g]^2. ext: (w + len) * BOX_VL elements;
 * sums1, sums2: w * BOX_VL each.
 */
static void BXF(hpass)(const BOX_T *const *src, const float *const *srcf, BOX_T *const *out1,
                       BOX_T *const *out2, int64_t w, int64_t a, int64_t b,
                       BOX_T *restrict ext, BOX_T *restrict sums1, BOX_T *restrict sums2)
{
    const int64_t left = bx_clip(a, w), len = left + bx_clip(b, w) + 1;
    BOX_T *e = ext + left * BOX_VL;
    int64_t i, s, t;
    int g;

    /* interleave: e[i*VL + g] = src[g][i] */
    if (srcf != NULL) {
        for (i = 0; i + BOX_VL <= w; i += BOX_VL)
            BXF(transpose_in_f)(srcf, i, e + i * BOX_VL, BOX_VL);
        for (; i < w; ++i)
            for (g = 0; g < BOX_VL; ++g)
                e[i * BOX_VL + g] = (BOX_T)srcf[g][i];
    } else {
        for (i = 0; i + BOX_VL <= w; i += BOX_VL)
            BXF(transpose_in)(src, i, e + i * BOX_VL, BOX_VL);
        for (; i < w; ++i)
            for (g = 0; g < BOX_VL; ++g)
                e[i * BOX_VL + g] = src[g][i];
    }
    memset(ext, 0, (size_t)(left * BOX_VL) * sizeof(BOX_T));
    memset(ext + (left + w) * BOX_VL, 0, (size_t)((len - 1 - left) * BOX_VL) * sizeof(BOX_T));

    if (len == 1) {
        memcpy(sums1, ext, (size_t)(w * BOX_VL) * sizeof(BOX_T));
        if (out2 != NULL)
            for (i = 0; i < w; ++i) {
                BOX_V v = BOX_LD(ext + i * BOX_VL);
                BOX_ST(sums2 + i * BOX_VL, v * v);
            }
    } else {
        /* suffix sums within each block that holds an output position */
        for (s = 0; s < w; s += len) {
            const int64_t end = s + len, stop = bx_min(end, w);
            BOX_V acc = BOX_BC(0), acc2 = BOX_BC(0);
            for (t = end - 1; t >= stop; --t) {
                BOX_V v = BOX_LD(ext + t * BOX_VL);
                acc += v;
                acc2 += v * v;
            }
            if (out2 != NULL) {
                for (t = stop - 1; t >= s; --t) {
                    BOX_V v = BOX_LD(ext + t * BOX_VL);
                    acc += v;
                    acc2 += v * v;
                    BOX_ST(sums1 + t * BOX_VL, acc);
                    BOX_ST(sums2 + t * BOX_VL, acc2);
                }
            } else {
                for (t = stop - 1; t >= s; --t) {
                    acc += BOX_LD(ext + t * BOX_VL);
                    BOX_ST(sums1 + t * BOX_VL, acc);
                }
            }
        }
        /* prefix sums of the blocks starting at len, 2 len, ... < w + len */
        for (s = len; s < w + len; s += len) {
            const int64_t end = bx_min(s + len, w + len);
            BOX_V v = BOX_LD(ext + s * BOX_VL);
            BOX_V acc = v, acc2 = v * v;
            if (out2 != NULL) {
                for (t = s + 1; t < end; ++t) {
                    BOX_T *o1 = sums1 + (t - len) * BOX_VL, *o2 = sums2 + (t - len) * BOX_VL;
                    BOX_ST(o1, BOX_LD(o1) + acc);
                    BOX_ST(o2, BOX_LD(o2) + acc2);
                    v = BOX_LD(ext + t * BOX_VL);
                    acc += v;
                    acc2 += v * v;
                }
            } else {
                for (t = s + 1; t < end; ++t) {
                    BOX_T *o1 = sums1 + (t - len) * BOX_VL;
                    BOX_ST(o1, BOX_LD(o1) + acc);
                    acc += BOX_LD(ext + t * BOX_VL);
                }
            }
        }
    }

    /* de-interleave */
    for (i = 0; i + BOX_VL <= w; i += BOX_VL) {
        BXF(transpose_out)(sums1 + i * BOX_VL, BOX_VL, out1, i);
        if (out2 != NULL)
            BXF(transpose_out)(sums2 + i * BOX_VL, BOX_VL, out2, i);
    }
    for (; i < w; ++i)
        for (g = 0; g < BOX_VL; ++g) {
            out1[g][i] = sums1[i * BOX_VL + g];
            if (out2 != NULL)
                out2[g][i] = sums2[i * BOX_VL + g];
        }
}
