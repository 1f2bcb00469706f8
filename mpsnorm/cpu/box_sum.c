/*
 * box_sum.c -- separable zero-padded box sums in O(1) per pixel.
 *
 * One 1-D pass over a line x[0..n) with window [t - a, t + b]: pad the line
 * into e[0..n+L) with e[s] = x[s - a] (zero outside), L = a + b + 1, so the
 * window of output t is e[t .. t+L-1]. Cut e into blocks [mL, mL+L). Then
 *
 *   out[t] = S[t] + P[t + L]
 *   S[t]   = e[t] + ... + e[end of t's block]       (suffix sum in the block)
 *   P[u]   = e[start of u's block] + ... + e[u - 1]  (prefix sum before u)
 *
 * because t's block ends exactly where (t+L)'s block starts. A window larger
 * than the line is first clipped to a, b <= n - 1, which changes no sum and
 * keeps the padded line under 3n.
 */
#include "box_sum.h"

#include <string.h>

/* Rows handled together by the horizontal pass: their running sums are
 * independent chains, interleaved so they overlap (and vectorize). */
#define ROW_GROUP 4

static int64_t min64(int64_t a, int64_t b)
{
    return a < b ? a : b;
}

int64_t mpsnorm_box_scratch_size(int64_t h, int64_t w)
{
    /* h*w for the row pass output, then ROW_GROUP padded rows (< 3w each)
     * and ROW_GROUP rows of sums; the column pass reuses the padded rows */
    if (h <= 0 || w <= 0)
        return 0;
    if (h > INT64_MAX / w || w > (INT64_MAX - h * w) / (4 * ROW_GROUP))
        return -1;
    return h * w + 4 * ROW_GROUP * w;
}

/*
 * Horizontal pass: every row of in (h x w) into out. Rows go in groups of
 * ROW_GROUP, interleaved in ext (padded rows, (w + L) * ROW_GROUP doubles)
 * and sums (w * ROW_GROUP); lane g of a group is row r + g, and a lane past
 * the last row just sums zeros. Each lane does exactly the additions of a
 * single row, in the same order.
 */
static void box_rows(const double *restrict in, double *restrict out, int64_t h, int64_t w,
                     int64_t a, int64_t b, double *restrict ext, double *restrict sums)
{
    int64_t r, s, t, i;
    int64_t len;
    int g;

    a = min64(a, w - 1);
    b = min64(b, w - 1);
    len = a + b + 1;
    if (len == 1) {
        memcpy(out, in, (size_t)(h * w) * sizeof(double));
        return;
    }

    for (t = 0; t < a * ROW_GROUP; ++t)
        ext[t] = 0.0;
    for (t = (a + w) * ROW_GROUP; t < (w + len) * ROW_GROUP; ++t)
        ext[t] = 0.0;

    for (r = 0; r < h; r += ROW_GROUP) {
        int rows = h - r < ROW_GROUP ? (int)(h - r) : ROW_GROUP;
        double *restrict e = ext + a * ROW_GROUP;

        /* interleave the group's rows into the padded lines */
        for (g = 0; g < ROW_GROUP; ++g) {
            if (g < rows) {
                const double *restrict x = in + (r + g) * w;
                for (i = 0; i < w; ++i)
                    e[i * ROW_GROUP + g] = x[i];
            } else {
                for (i = 0; i < w; ++i)
                    e[i * ROW_GROUP + g] = 0.0;
            }
        }

        /* suffix sums within each block that holds an output position */
        for (s = 0; s < w; s += len) {
            int64_t end = s + len; /* < w + len: inside the padded line */
            int64_t stop = min64(end, w);
            double acc[ROW_GROUP];
            for (g = 0; g < ROW_GROUP; ++g)
                acc[g] = 0.0;
            for (t = end - 1; t >= stop; --t)
                for (g = 0; g < ROW_GROUP; ++g)
                    acc[g] += ext[t * ROW_GROUP + g];
            for (t = stop - 1; t >= s; --t)
                for (g = 0; g < ROW_GROUP; ++g) {
                    acc[g] += ext[t * ROW_GROUP + g];
                    sums[t * ROW_GROUP + g] = acc[g];
                }
        }
        /* prefix sums of the blocks that start at L, 2L, ... < w + L */
        for (s = len; s < w + len; s += len) {
            int64_t end = min64(s + len, w + len);
            double acc[ROW_GROUP];
            for (g = 0; g < ROW_GROUP; ++g)
                acc[g] = ext[s * ROW_GROUP + g];
            for (t = s + 1; t < end; ++t)
                for (g = 0; g < ROW_GROUP; ++g) {
                    sums[(t - len) * ROW_GROUP + g] += acc[g];
                    acc[g] += ext[t * ROW_GROUP + g];
                }
        }

        /* de-interleave */
        for (g = 0; g < rows; ++g) {
            double *restrict o = out + (r + g) * w;
            for (i = 0; i < w; ++i)
                o[i] = sums[i * ROW_GROUP + g];
        }
    }
}

/*
 * Lane helpers of the vertical pass: elementwise over n contiguous doubles,
 * unrolled by 4 so even -O2 (GCC's very cheap vectorizer cost model) turns
 * the body into SIMD code.
 */
static void lanes_add(double *restrict acc, const double *restrict x, int64_t n)
{
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        acc[i] += x[i];
        acc[i + 1] += x[i + 1];
        acc[i + 2] += x[i + 2];
        acc[i + 3] += x[i + 3];
    }
    for (; i < n; ++i)
        acc[i] += x[i];
}

/* acc += x; o = acc */
static void lanes_add_store(double *restrict acc, const double *restrict x, double *restrict o,
                            int64_t n)
{
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        o[i] = acc[i] += x[i];
        o[i + 1] = acc[i + 1] += x[i + 1];
        o[i + 2] = acc[i + 2] += x[i + 2];
        o[i + 3] = acc[i + 3] += x[i + 3];
    }
    for (; i < n; ++i)
        o[i] = acc[i] += x[i];
}

/* o += acc; acc += x (x may be NULL: padding rows add nothing) */
static void lanes_prefix_step(double *restrict o, double *restrict acc, const double *restrict x,
                              int64_t n)
{
    int64_t i = 0;
    if (x == NULL) {
        lanes_add(o, acc, n);
        return;
    }
    for (; i + 4 <= n; i += 4) {
        o[i] += acc[i];
        o[i + 1] += acc[i + 1];
        o[i + 2] += acc[i + 2];
        o[i + 3] += acc[i + 3];
        acc[i] += x[i];
        acc[i + 1] += x[i + 1];
        acc[i + 2] += x[i + 2];
        acc[i + 3] += x[i + 3];
    }
    for (; i < n; ++i) {
        o[i] += acc[i];
        acc[i] += x[i];
    }
}

/*
 * Vertical pass: the same block scheme with whole rows of w lanes as the
 * elements; padded row t is row t - a of in when a <= t < a + h, else zero.
 * acc holds w doubles. out must not overlap in.
 */
static void box_cols(const double *restrict in, double *restrict out, int64_t h, int64_t w,
                     int64_t a, int64_t b, double *restrict acc)
{
    const size_t row_bytes = (size_t)w * sizeof(double);
    int64_t s, t;
    int64_t len;

    a = min64(a, h - 1);
    b = min64(b, h - 1);
    len = a + b + 1;
    if (len == 1) {
        memcpy(out, in, (size_t)h * row_bytes);
        return;
    }

    /* suffix sums within each block that holds an output row */
    for (s = 0; s < h; s += len) {
        /* rows of the block at or past a + h are padding: start below them */
        int64_t top = min64(s + len, a + h) - 1;
        int first = 1;
        for (t = top; t >= s; --t) {
            const double *x = in + (t - a) * w;
            double *o = out + t * w;
            if (t < a) {
                /* padding above the plane: the output is the sum so far */
                if (first)
                    memset(o, 0, row_bytes);
                else
                    memcpy(o, acc, row_bytes);
            } else if (first) {
                memcpy(acc, x, row_bytes);
                if (t < h)
                    memcpy(o, x, row_bytes);
            } else if (t < h) {
                lanes_add_store(acc, x, o, w);
            } else {
                lanes_add(acc, x, w); /* below the outputs: only accumulate */
            }
            first = 0;
        }
    }

    /* prefix sums of the blocks starting at L, 2L, ... < h + L, added to the
     * output L rows up; padded row t >= L > a, so it is real while t < a + h */
    for (s = len; s < h + len; s += len) {
        int64_t end = min64(s + len, h + len);
        if (s >= a + h)
            break; /* this block and all later ones are padding: add nothing */
        memcpy(acc, in + (s - a) * w, row_bytes);
        for (t = s + 1; t < end; ++t)
            lanes_prefix_step(out + (t - len) * w, acc, t < a + h ? in + (t - a) * w : NULL, w);
    }
}

void mpsnorm_box_sum(const double *in, double *out, int64_t h, int64_t w, int64_t left,
                     int64_t right, int64_t up, int64_t down, double *scratch)
{
    double *rows = scratch;                               /* h * w */
    double *ext = scratch + h * w;                        /* <= 3w * ROW_GROUP */
    double *sums = ext + 3 * w * ROW_GROUP;               /* w * ROW_GROUP */

    box_rows(in, rows, h, w, left, right, ext, sums);
    box_cols(rows, out, h, w, up, down, ext);
}
