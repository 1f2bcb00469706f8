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
 *   X rows -> horizontal sums of X and X^2 in double (rings hx, hq)
 *   -> vertical sums (V1, kern_lcn_cols.h) fused with the pixel math
 *   -> G, U and W = c1*G - c2*U*(M - shift) -> horizontal adjoint sums of W
 *   and U (rings hg, hu); Badj is linear, so the two terms that multiply
 *   nothing share one window sum
 *   -> vertical adjoint sums (V2) fused with dX = ..., rounded to the dtype.
 * Window sums of X and X^2 are in double for every dtype (VAR subtracts two
 * large numbers when the local mean is large against the local spread);
 * everything after them runs in float for float32/float16 data (double for
 * float64). Memory: rings and temporaries of O(strip + window) rows of the
 * plane's width (mpsnorm_lcn_layout), never a whole plane.
 */

/* ---- transposes of VL x VL tiles in registers ----------------------------- */

SIMD_INLINE void tr_regs_f(vf *r)
{
#if MPSNORM_SIMD_LEVEL == 3
    __m512 t[16], s[16];
    int k;
    for (k = 0; k < 8; ++k) {
        t[2 * k] = _mm512_unpacklo_ps((__m512)r[2 * k], (__m512)r[2 * k + 1]);
        t[2 * k + 1] = _mm512_unpackhi_ps((__m512)r[2 * k], (__m512)r[2 * k + 1]);
    }
    /* rows 4q..4q+3: s[4q + k] holds columns k, 4+k, 8+k, 12+k (one per 128-bit lane) */
    for (k = 0; k < 4; ++k) {
        __m512d a = _mm512_castps_pd(t[4 * k]), b = _mm512_castps_pd(t[4 * k + 2]);
        __m512d c = _mm512_castps_pd(t[4 * k + 1]), d = _mm512_castps_pd(t[4 * k + 3]);
        s[4 * k + 0] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, b));
        s[4 * k + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, b));
        s[4 * k + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(c, d));
        s[4 * k + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(c, d));
    }
    for (k = 0; k < 4; ++k) {
        __m512 u0 = _mm512_shuffle_f32x4(s[k], s[4 + k], 0x44);
        __m512 u1 = _mm512_shuffle_f32x4(s[8 + k], s[12 + k], 0x44);
        __m512 u2 = _mm512_shuffle_f32x4(s[k], s[4 + k], 0xee);
        __m512 u3 = _mm512_shuffle_f32x4(s[8 + k], s[12 + k], 0xee);
        r[k] = (vf)_mm512_shuffle_f32x4(u0, u1, 0x88);
        r[4 + k] = (vf)_mm512_shuffle_f32x4(u0, u1, 0xdd);
        r[8 + k] = (vf)_mm512_shuffle_f32x4(u2, u3, 0x88);
        r[12 + k] = (vf)_mm512_shuffle_f32x4(u2, u3, 0xdd);
    }
#elif MPSNORM_SIMD_LEVEL == 2
    __m256 t[8], s[8];
    int k;
    for (k = 0; k < 4; ++k) {
        t[2 * k] = _mm256_unpacklo_ps((__m256)r[2 * k], (__m256)r[2 * k + 1]);
        t[2 * k + 1] = _mm256_unpackhi_ps((__m256)r[2 * k], (__m256)r[2 * k + 1]);
    }
    for (k = 0; k < 2; ++k) {
        __m256d a = _mm256_castps_pd(t[4 * k]), b = _mm256_castps_pd(t[4 * k + 2]);
        __m256d c = _mm256_castps_pd(t[4 * k + 1]), d = _mm256_castps_pd(t[4 * k + 3]);
        s[4 * k + 0] = _mm256_castpd_ps(_mm256_unpacklo_pd(a, b));
        s[4 * k + 1] = _mm256_castpd_ps(_mm256_unpackhi_pd(a, b));
        s[4 * k + 2] = _mm256_castpd_ps(_mm256_unpacklo_pd(c, d));
        s[4 * k + 3] = _mm256_castpd_ps(_mm256_unpackhi_pd(c, d));
    }
    for (k = 0; k < 4; ++k) {
        r[k] = (vf)_mm256_permute2f128_ps(s[k], s[4 + k], 0x20);
        r[4 + k] = (vf)_mm256_permute2f128_ps(s[k], s[4 + k], 0x31);
    }
#else
    float m[VF][VF], o[VF][VF];
    int g, k;
    memcpy(m, r, sizeof m);
    for (g = 0; g < VF; ++g)
        for (k = 0; k < VF; ++k)
            o[k][g] = m[g][k];
    memcpy(r, o, sizeof o);
#endif
}

SIMD_INLINE void tr_regs_d(vd *r)
{
#if MPSNORM_SIMD_LEVEL == 3
    __m512d t[8];
    int k;
    for (k = 0; k < 4; ++k) {
        t[2 * k] = _mm512_unpacklo_pd((__m512d)r[2 * k], (__m512d)r[2 * k + 1]);
        t[2 * k + 1] = _mm512_unpackhi_pd((__m512d)r[2 * k], (__m512d)r[2 * k + 1]);
    }
    /* t[0]: columns 0,2,4,6 of rows 0-1 (a 128-bit lane each); t[1]: columns 1,3,5,7 */
    for (k = 0; k < 2; ++k) {
        __m512d u0 = _mm512_shuffle_f64x2(t[k], t[2 + k], 0x44);
        __m512d u1 = _mm512_shuffle_f64x2(t[4 + k], t[6 + k], 0x44);
        __m512d u2 = _mm512_shuffle_f64x2(t[k], t[2 + k], 0xee);
        __m512d u3 = _mm512_shuffle_f64x2(t[4 + k], t[6 + k], 0xee);
        r[k] = (vd)_mm512_shuffle_f64x2(u0, u1, 0x88);
        r[2 + k] = (vd)_mm512_shuffle_f64x2(u0, u1, 0xdd);
        r[4 + k] = (vd)_mm512_shuffle_f64x2(u2, u3, 0x88);
        r[6 + k] = (vd)_mm512_shuffle_f64x2(u2, u3, 0xdd);
    }
#elif MPSNORM_SIMD_LEVEL == 2
    __m256d t0 = _mm256_unpacklo_pd((__m256d)r[0], (__m256d)r[1]);
    __m256d t1 = _mm256_unpackhi_pd((__m256d)r[0], (__m256d)r[1]);
    __m256d t2 = _mm256_unpacklo_pd((__m256d)r[2], (__m256d)r[3]);
    __m256d t3 = _mm256_unpackhi_pd((__m256d)r[2], (__m256d)r[3]);
    r[0] = (vd)_mm256_permute2f128_pd(t0, t2, 0x20);
    r[1] = (vd)_mm256_permute2f128_pd(t1, t3, 0x20);
    r[2] = (vd)_mm256_permute2f128_pd(t0, t2, 0x31);
    r[3] = (vd)_mm256_permute2f128_pd(t1, t3, 0x31);
#else
    double m[VD][VD], o[VD][VD];
    int g, k;
    memcpy(m, r, sizeof m);
    for (g = 0; g < VD; ++g)
        for (k = 0; k < VD; ++k)
            o[k][g] = m[g][k];
    memcpy(r, o, sizeof o);
#endif
}

/* ---- box sums for float and double rows ----------------------------------- */

#define BOX_T float
#define BOX_V vf
#define BOX_N VF
#define BOX_VL VF
#define BOX_LD ldf
#define BOX_LDF ldf
#define BOX_ST stf
#define BOX_BC bcf
#define BOX_SUFFIX f
#define transpose_regs_f(r) tr_regs_f(r)
#include "kern_box.h"
#undef BOX_T
#undef BOX_V
#undef BOX_N
#undef BOX_VL
#undef BOX_LD
#undef BOX_LDF
#undef BOX_ST
#undef BOX_BC
#undef BOX_SUFFIX

#define BOX_T double
#define BOX_V vd
#define BOX_N VD
#define BOX_VL VD
#define BOX_LD ldd
#define BOX_LDF ld_f2d
#define BOX_ST std_
#define BOX_BC bcd
#define BOX_SUFFIX d
#define transpose_regs_d(r) tr_regs_d(r)
#include "kern_box.h"
#undef BOX_T
#undef BOX_V
#undef BOX_N
#undef BOX_VL
#undef BOX_LD
#undef BOX_LDF
#undef BOX_ST
#undef BOX_BC
#undef BOX_SUFFIX

/* ---- one call's state ----------------------------------------------------- */

typedef struct lc_ring {
    void *base;
    int64_t mask; /* cap - 1 */
    size_t row_bytes;
} lc_ring;

/* Position of a vertical stream (see kern_lcn_cols.h). */
typedef struct lc_stream {
    int64_t a, len; /* rows above the pixel (clipped), window rows (clipped) */
    int64_t t;      /* next output row */
    int64_t block;  /* block whose suffix sums are stored, or -1 */
    int64_t pre_p;  /* pre sums hold padded rows [(block + 1) len, pre_p) */
} lc_stream;

typedef struct lc_state {
    const mpsnorm_lcn_job *job;
    const mpsnorm_lcn_layout *lay;
    char *base;
    int64_t n, c;       /* the plane */
    int64_t cv_u, cv_d; /* vertical extents clipped to the plane */
    int direct_x, direct_dy, direct_out; /* rows used in place in the tensors */
    lc_ring xr, hx, hq, gr, hg, hu;
    void **xptr;        /* xptr[r & mask]: X row r (compute type) */
    lc_stream v1, v2;
    double shift;       /* per plane: X*Badj(U) - Badj(U*M) is summed as
                           (X - shift)*Badj(U) - Badj(U*(M - shift)) */
    const void *zero;
    void *dummy;
} lc_state;

static void *lc_at(const lc_state *st, size_t offset)
{
    return st->base + offset;
}

static lc_ring lc_make_ring(const lc_state *st, size_t offset, size_t esize)
{
    lc_ring ring;
    ring.base = st->base + offset;
    ring.mask = st->lay->cap - 1;
    ring.row_bytes = (size_t)st->lay->pitch * esize;
    return ring;
}

static void *lc_ring_row_v(const lc_ring *ring, int64_t r)
{
    return (char *)ring->base + (size_t)(r & ring->mask) * ring->row_bytes;
}

static void lc_stream_init(lc_stream *s, int64_t above, int64_t below, int64_t h, int64_t first)
{
    s->a = bx_clip(above, h);
    s->len = s->a + bx_clip(below, h) + 1;
    s->t = first;
    s->block = -1;
    s->pre_p = 0;
}

/* D = T^-beta by the job's power; D/T from D */
SIMD_INLINE vf power_f(int power, vf t, float beta)
{
    return power == MPSNORM_POWER_RSQRT ? rsqrtvf(t)
         : power == MPSNORM_POWER_RECIPROCAL ? rcpvf(t)
                                              : powvf(t, beta);
}
SIMD_INLINE vd power_d(int power, vd t, double beta)
{
    return power == MPSNORM_POWER_RSQRT ? bcd(1.0) / sqrtvd(t)
         : power == MPSNORM_POWER_RECIPROCAL ? bcd(1.0) / t
                                              : powvd(t, beta);
}
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

/* ---- rows in and out ------------------------------------------------------ */

/* X rows [r0, r1): row pointers (in place when direct, else converted into
 * the X ring), then their horizontal window sums of X (and X^2) into hx (hq). */
static void lc_stats_rows(lc_state *st, int64_t r0, int64_t r1)
{
    const mpsnorm_lcn_job *job = st->job;
    const mpsnorm_tensor *x = job->x;
    const int squares = job->alpha != 0.0, wide = job->dtype == MPSNORM_FLOAT64;
    const int64_t mask = st->lay->cap - 1;
    int64_t r;
    for (r = r0; r < r1; ++r) {
        const int64_t off = io_offset(x, st->n, st->c, r, 0);
        void *row;
        if (st->direct_x) {
            row = (char *)x->data + off * (int64_t)(wide ? sizeof(double) : sizeof(float));
        } else {
            row = lc_ring_row_v(&st->xr, r);
            if (wide)
                io_load_d(x->dtype, x->data, off, x->strides[3], job->w, (double *)row);
            else
                io_load_f(x->dtype, x->data, off, x->strides[3], job->w, (float *)row);
        }
        st->xptr[r & mask] = row;
    }
    for (r = r0; r < r1; r += VD) {
        const void *src[VD];
        double *o1[VD], *o2[VD];
        int g;
        for (g = 0; g < VD; ++g) {
            const int real = r + g < r1;
            src[g] = real ? st->xptr[(r + g) & mask] : st->zero;
            o1[g] = real ? (double *)lc_ring_row_v(&st->hx, r + g) : (double *)st->dummy;
            o2[g] = real && squares ? (double *)lc_ring_row_v(&st->hq, r + g)
                                    : (double *)st->dummy;
        }
        hpass_d(wide ? (const double *const *)src : NULL,
                wide ? NULL : (const float *const *)src, o1, squares ? o2 : NULL, job->w,
                job->left, job->right, (double *)lc_at(st, st->lay->ext),
                (double *)lc_at(st, st->lay->sums1), (double *)lc_at(st, st->lay->sums2));
    }
}

/* Horizontal adjoint sums of rows [r0, r1) of one quantity (from a ring, or
 * from temporary rows starting at row temp_first) into the ring `to`. */
static void lc_adjoint_rows(lc_state *st, const lc_ring *from_ring, const void *from_temp,
                            int64_t temp_first, const lc_ring *to, int64_t r0, int64_t r1)
{
    const mpsnorm_lcn_job *job = st->job;
    const size_t row_bytes = to->row_bytes;
    void *ext = lc_at(st, st->lay->ext), *s1 = lc_at(st, st->lay->sums1);
    void *s2 = lc_at(st, st->lay->sums2);
    int64_t r;
    if (job->dtype == MPSNORM_FLOAT64) {
        for (r = r0; r < r1; r += VD) {
            const double *src[VD];
            double *o1[VD];
            int g;
            for (g = 0; g < VD; ++g) {
                const int real = r + g < r1;
                src[g] = !real ? (const double *)st->zero
                       : from_ring != NULL
                           ? (const double *)lc_ring_row_v(from_ring, r + g)
                           : (const double *)((const char *)from_temp +
                                              (size_t)(r + g - temp_first) * row_bytes);
                o1[g] = real ? (double *)lc_ring_row_v(to, r + g) : (double *)st->dummy;
            }
            hpass_d(src, NULL, o1, NULL, job->w, job->right, job->left, (double *)ext,
                    (double *)s1, (double *)s2);
        }
    } else {
        for (r = r0; r < r1; r += VF) {
            const float *src[VF];
            float *o1[VF];
            int g;
            for (g = 0; g < VF; ++g) {
                const int real = r + g < r1;
                src[g] = !real ? (const float *)st->zero
                       : from_ring != NULL
                           ? (const float *)lc_ring_row_v(from_ring, r + g)
                           : (const float *)((const char *)from_temp +
                                             (size_t)(r + g - temp_first) * row_bytes);
                o1[g] = real ? (float *)lc_ring_row_v(to, r + g) : (float *)st->dummy;
            }
            hpass_f(src, NULL, o1, NULL, job->w, job->right, job->left, (float *)ext,
                    (float *)s1, (float *)s2);
        }
    }
}

/* dY rows [r0, r1): in place when direct, else converted into the dY
 * temporaries (row r at r - r0). */
static void lc_load_dy(lc_state *st, int64_t r0, int64_t r1)
{
    const mpsnorm_lcn_job *job = st->job;
    const mpsnorm_tensor *dy = job->dy;
    int64_t r;
    if (st->direct_dy)
        return;
    for (r = r0; r < r1; ++r) {
        const int64_t off = io_offset(dy, st->n, st->c, r, 0);
        void *row = (char *)lc_at(st, st->lay->dyt) + (size_t)(r - r0) * st->lay->pitch *
                                                          st->lay->tsize;
        if (job->dtype == MPSNORM_FLOAT64)
            io_load_d(dy->dtype, dy->data, off, dy->strides[3], job->w, (double *)row);
        else
            io_load_f(dy->dtype, dy->data, off, dy->strides[3], job->w, (float *)row);
    }
}

/* Output row pointers for rows [j0, j1): the tensor's rows when direct, else
 * the output temporaries (stored by lc_store_rows). */
static void lc_out_rows(lc_state *st, int64_t j0, int64_t j1, void **rows)
{
    const mpsnorm_tensor *out = st->job->out;
    const size_t es = st->lay->tsize;
    int64_t j;
    for (j = j0; j < j1; ++j)
        rows[j - j0] = st->direct_out
                           ? (char *)out->data + io_offset(out, st->n, st->c, j, 0) * (int64_t)es
                           : (char *)lc_at(st, st->lay->outt) +
                                 (size_t)(j - j0) * st->lay->pitch * es;
}

static void lc_store_rows(lc_state *st, int64_t j0, int64_t j1, void *const *rows)
{
    const mpsnorm_tensor *out = st->job->out;
    int64_t j;
    if (st->direct_out)
        return;
    for (j = j0; j < j1; ++j) {
        const int64_t off = io_offset(out, st->n, st->c, j, 0);
        if (st->job->stream_out) {
            io_store_stream(out->dtype, out->data, off, st->job->w, rows[j - j0], st->dummy);
            continue;
        }
        if (out->dtype == MPSNORM_FLOAT64)
            io_store_d(out->data, off, out->strides[3], st->job->w, (const double *)rows[j - j0]);
        else
            io_store_f(out->dtype, out->data, off, out->strides[3], st->job->w,
                       (const float *)rows[j - j0]);
    }
}

/* ---- the fused vertical loops, float and double --------------------------- */

static const void *lc_xrow_v(const lc_state *st, int64_t t)
{
    return st->xptr[t & (st->lay->cap - 1)];
}

/* dY row t; temporaries start at row `first` */
static const void *lc_dyrow_v(const lc_state *st, int64_t t, int64_t first)
{
    const mpsnorm_tensor *dy = st->job->dy;
    if (st->direct_dy)
        return (const char *)dy->data +
               io_offset(dy, st->n, st->c, t, 0) * (int64_t)st->lay->tsize;
    return (const char *)lc_at(st, st->lay->dyt) +
           (size_t)((t - first) * st->lay->pitch) * st->lay->tsize;
}

#define xrow_f(st, t) ((const float *)lc_xrow_v(st, t))
#define xrow_d(st, t) ((const double *)lc_xrow_v(st, t))
#define dyrow_f(st, t, first) ((const float *)lc_dyrow_v(st, t, first))
#define dyrow_d(st, t, first) ((const double *)lc_dyrow_v(st, t, first))
#define grow_f(st, t) ((float *)lc_ring_row_v(&(st)->gr, t))
#define grow_d(st, t) ((double *)lc_ring_row_v(&(st)->gr, t))

#define LT float
#define LV vf
#define LN VF
#define NDV (VF / VD)
#define LLD ldf
#define LST stf
#define LBC bcf
#define LT_LDD ld_f2d
#define LT_IS_FLOAT 1
#define LT_SUFFIX f
#include "kern_lcn_cols.h"
#undef LT
#undef LV
#undef LN
#undef NDV
#undef LLD
#undef LST
#undef LBC
#undef LT_LDD
#undef LT_IS_FLOAT
#undef LT_SUFFIX

#define LT double
#define LV vd
#define LN VD
#define NDV 1
#define LLD ldd
#define LST std_
#define LBC bcd
#define LT_LDD ldd
#define LT_IS_FLOAT 0
#define LT_SUFFIX d
#include "kern_lcn_cols.h"
#undef LT
#undef LV
#undef LN
#undef NDV
#undef LLD
#undef LST
#undef LBC
#undef LT_LDD
#undef LT_IS_FLOAT
#undef LT_SUFFIX

/* ---- the two directions --------------------------------------------------- */

#define LC_MAX_STRIP 512 /* LCN_STRIP_ELEMENTS / 16, the smallest pitch */

static void lc_forward(lc_state *st, int64_t j_begin, int64_t j_end)
{
    const mpsnorm_lcn_job *job = st->job;
    const int64_t h = job->h;
    void *rows[LC_MAX_STRIP];
    int64_t x_next = bx_max(0, j_begin - st->cv_u), j0;

    lc_stream_init(&st->v1, job->up, job->down, h, j_begin);
    for (j0 = j_begin; j0 < j_end; j0 += st->lay->strip) {
        const int64_t j1 = bx_min(j_end, j0 + st->lay->strip);
        const int64_t x_end = bx_min(h, j1 + st->cv_d);
        lc_stats_rows(st, x_next, x_end);
        x_next = x_end;
        lc_out_rows(st, j0, j1, rows);
        if (job->dtype == MPSNORM_FLOAT64)
            v1_pixels_d(st, j0, j1, (double *const *)rows);
        else
            v1_pixels_f(st, j0, j1, (float *const *)rows);
        lc_store_rows(st, j0, j1, rows);
    }
}

static void lc_gradient(lc_state *st, int64_t j_begin, int64_t j_end)
{
    const mpsnorm_lcn_job *job = st->job;
    const mpsnorm_lcn_layout *lay = st->lay;
    const int64_t h = job->h, w = job->w;
    const int full = job->alpha != 0.0, wide = job->dtype == MPSNORM_FLOAT64;
    void *rows[LC_MAX_STRIP];
    /* the adjoint's window is mirrored: down rows above, up rows below */
    int64_t s_next = bx_max(0, j_begin - st->cv_d);
    int64_t x_next = bx_max(0, s_next - st->cv_u), j0;

    lc_stream_init(&st->v1, job->up, job->down, h, s_next);
    lc_stream_init(&st->v2, job->down, job->up, h, j_begin);
    for (j0 = j_begin; j0 < j_end; j0 += lay->strip) {
        const int64_t j1 = bx_min(j_end, j0 + lay->strip);
        const int64_t s_end = bx_min(h, j1 + st->cv_u);
        int64_t r;

        /* rows [s_next, s_end): G, U, U*M and their horizontal adjoint sums */
        lc_load_dy(st, s_next, s_end);
        if (full) {
            const int64_t x_end = bx_min(h, s_end + st->cv_d);
            lc_stats_rows(st, x_next, x_end);
            x_next = x_end;
            if (wide)
                v1_pixels_d(st, s_next, s_end, NULL);
            else
                v1_pixels_f(st, s_next, s_end, NULL);
        } else {
            /* alpha = 0: G = dY * delta^-beta, W = c1*G */
            for (r = s_next; r < s_end; ++r) {
                int64_t i = 0;
                const size_t wo = (size_t)(r - s_next) * (size_t)lay->pitch * lay->tsize;
                if (wide) {
                    const double *dyr = dyrow_d(st, r, s_next);
                    double *g = (double *)lc_ring_row_v(&st->gr, r);
                    double *wr = (double *)((char *)lc_at(st, lay->umt) + wo);
                    const double c1 = job->p0 / job->count;
                    for (; i < w; ++i) {
                        g[i] = dyr[i] * job->d_const;
                        wr[i] = c1 * g[i];
                    }
                } else {
                    const float *dyr = dyrow_f(st, r, s_next);
                    float *g = (float *)lc_ring_row_v(&st->gr, r);
                    float *wr = (float *)((char *)lc_at(st, lay->umt) + wo);
                    const vf d = bcf((float)job->d_const), c1 = bcf((float)(job->p0 / job->count));
                    for (; i + VF <= w; i += VF) {
                        vf gg = ldf(dyr + i) * d;
                        stf(g + i, gg);
                        stf(wr + i, c1 * gg);
                    }
                    for (; i < w; ++i) {
                        g[i] = dyr[i] * (float)job->d_const;
                        wr[i] = (float)(job->p0 / job->count) * g[i];
                    }
                }
            }
        }
        lc_adjoint_rows(st, NULL, lc_at(st, lay->umt), s_next, &st->hg, s_next, s_end);
        if (full)
            lc_adjoint_rows(st, NULL, lc_at(st, lay->ut), s_next, &st->hu, s_next, s_end);
        s_next = s_end;

        /* output rows [j0, j1) */
        lc_out_rows(st, j0, j1, rows);
        if (wide)
            v2_combine_d(st, j0, j1, (double *const *)rows);
        else
            v2_combine_f(st, j0, j1, (float *const *)rows);
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
    st.job = job;
    st.lay = lay;
    st.base = (char *)scratch;
    st.n = plane / job->c;
    st.c = plane % job->c;
    st.cv_u = bx_clip(job->up, job->h);
    st.cv_d = bx_clip(job->down, job->h);
    st.direct_x = lc_direct(job->x, wide);
    /* dY and the output are walked a column vector at a time: staged through
     * rows read and written in memory order (the prefetchers follow those) */
    st.direct_dy = 0;
    st.direct_out = 0;
    st.xr = lc_make_ring(&st, lay->xring, ts);
    st.hx = lc_make_ring(&st, lay->hxring, sizeof(double));
    st.hq = lc_make_ring(&st, lay->hqring, sizeof(double));
    st.gr = lc_make_ring(&st, lay->gring, ts);
    st.hg = lc_make_ring(&st, lay->hgring, ts);
    st.hu = lc_make_ring(&st, lay->huring, ts);
    st.xptr = (void **)lc_at(&st, lay->xptr);
    st.zero = lc_at(&st, lay->zero);
    st.dummy = lc_at(&st, lay->dummy);
    {
        /* the mean of the plane's first (up to) 64 values: the shift depends
         * on the plane only, whatever rows this call does */
        double first[64], sum = 0.0;
        const int64_t m = job->w < 64 ? job->w : 64;
        int64_t i;
        io_load_d(job->shift_x->dtype, job->shift_x->data,
                  io_offset(job->shift_x, st.n, st.c, 0, 0), job->shift_x->strides[3], m, first);
        for (i = 0; i < m; ++i)
            sum += first[i];
        st.shift = sum / (double)m;
        if (!wide)
            st.shift = (double)(float)st.shift;
        if (!isfinite(st.shift))
            st.shift = 0.0; /* non-finite values reach only their windows */
    }
    if (job->gradient)
        lc_gradient(&st, row_begin, row_end);
    else
        lc_forward(&st, row_begin, row_end);
    if (job->stream_out)
        io_stream_fence();
}
