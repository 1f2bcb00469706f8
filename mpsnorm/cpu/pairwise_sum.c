/*
 * pairwise_sum.c -- see pairwise_sum.h.
 */
#include "pairwise_sum.h"

#define PAIRWISE_BLOCK 128

/* For n > PAIRWISE_BLOCK: about n/2 rounded up to a whole number of blocks,
 * so the leaves are full blocks; always 0 < result < n. */
static int64_t split_point(int64_t n)
{
    int64_t half = n / 2;
    return (half + PAIRWISE_BLOCK - 1) / PAIRWISE_BLOCK * PAIRWISE_BLOCK;
}

/*
 * One template for the three reductions: TERM(k) is the k-th summand.
 * Leaves of <= PAIRWISE_BLOCK elements use 8 running partial sums.
 */
#define PAIRWISE_LEAF(NAME, PARAMS, TERM)                                   \
    static double NAME PARAMS                                               \
    {                                                                       \
        double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0;                      \
        double s4 = 0.0, s5 = 0.0, s6 = 0.0, s7 = 0.0;                      \
        int64_t k = 0;                                                      \
        for (; k + 8 <= n; k += 8) {                                        \
            s0 += TERM(k);                                                  \
            s1 += TERM(k + 1);                                              \
            s2 += TERM(k + 2);                                              \
            s3 += TERM(k + 3);                                              \
            s4 += TERM(k + 4);                                              \
            s5 += TERM(k + 5);                                              \
            s6 += TERM(k + 6);                                              \
            s7 += TERM(k + 7);                                              \
        }                                                                   \
        for (; k < n; ++k)                                                  \
            s0 += TERM(k);                                                  \
        return ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7));           \
    }

#define TERM_SUM(k) (x[(k)])
#define TERM_DOT(k) (x[(k)] * y[(k)])
#define TERM_SUMSQ(k) ((x[(k)] - shift) * (x[(k)] - shift))

PAIRWISE_LEAF(leaf_sum, (const double *x, int64_t n), TERM_SUM)
PAIRWISE_LEAF(leaf_dot, (const double *x, const double *y, int64_t n), TERM_DOT)
PAIRWISE_LEAF(leaf_sumsq, (const double *x, double shift, int64_t n), TERM_SUMSQ)

double mpsnorm_pairwise_sum(const double *x, int64_t n)
{
    int64_t m;
    if (n <= PAIRWISE_BLOCK)
        return leaf_sum(x, n);
    m = split_point(n);
    return mpsnorm_pairwise_sum(x, m) + mpsnorm_pairwise_sum(x + m, n - m);
}

double mpsnorm_pairwise_dot(const double *x, const double *y, int64_t n)
{
    int64_t m;
    if (n <= PAIRWISE_BLOCK)
        return leaf_dot(x, y, n);
    m = split_point(n);
    return mpsnorm_pairwise_dot(x, y, m) + mpsnorm_pairwise_dot(x + m, y + m, n - m);
}

double mpsnorm_pairwise_sumsq(const double *x, double shift, int64_t n)
{
    int64_t m;
    if (n <= PAIRWISE_BLOCK)
        return leaf_sumsq(x, shift, n);
    m = split_point(n);
    return mpsnorm_pairwise_sumsq(x, shift, m) + mpsnorm_pairwise_sumsq(x + m, shift, n - m);
}
