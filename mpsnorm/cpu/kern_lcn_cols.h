/*
 * kern_lcn_cols.h -- part of the kernel template (kern_lcn.h): the vertical
 * window sums of LCN, fused with what consumes them, walked one column
 * vector at a time (LN columns) down a strip of rows, so running sums stay
 * in registers and each input element is read twice at most.
 *
 * Block scheme (kern_box.h) down the columns: with p = row + a, output row t
 * sums p in [t, t + len); blocks are [m len, (m+1) len). For the rows of
 * block m: out(t) = suf(t) + pre, suf(t) = e(t) + ... + e(block end) (swept
 * once per block, kept in `suf` rows), pre = e((m+1) len) + ... + e(t+len-1)
 * (one more row per t). The stream's position (block, pre_p, t) is shared by
 * all columns; the running sums of the next block live in `pre` rows between
 * strips.
 *
 * Included twice by kern_lcn.h: LT float (LN = VF, float32/float16 data) and
 * LT double (LN = VD, float64 data). Window sums of X, X^2 (V1) are always
 * double: NDV = LN / VD double vectors per column step.
 */

#define LCF(name) BOX_CAT(name, LT_SUFFIX)

/* double vectors of stats -> the compute type */
SIMD_INLINE LV LCF(from_d)(const vd *d)
{
#if LT_IS_FLOAT && MPSNORM_SIMD_LEVEL == 3
    __m256 lo = _mm512_cvtpd_ps((__m512d)d[0]), hi = _mm512_cvtpd_ps((__m512d)d[1]);
    return (LV)_mm512_insertf32x8(_mm512_castps256_ps512(lo), hi, 1);
#elif LT_IS_FLOAT && MPSNORM_SIMD_LEVEL == 2
    __m128 lo = _mm256_cvtpd_ps((__m256d)d[0]), hi = _mm256_cvtpd_ps((__m256d)d[1]);
    return (LV)_mm256_insertf128_ps(_mm256_castps128_ps256(lo), hi, 1);
#elif LT_IS_FLOAT && defined(MPSNORM_VECTOR_EXT)
    LV r;
    int k;
    for (k = 0; k < LN; ++k)
        r[k] = (float)d[k / VD][k % VD];
    return r;
#else
    return (LV)d[0];
#endif
}

/*
 * Statistics rows [t_a, t_b) (stream v1 over hx, hq) and the per-pixel math:
 * forward: out rows (Y); gradient: G (ring), U, U*M (temporaries from t_a).
 */
static void LCF(v1_pixels)(lc_state *st, int64_t t_a, int64_t t_b, LT *const *out_rows)
{
    const mpsnorm_lcn_job *job = st->job;
    const mpsnorm_lcn_layout *lay = st->lay;
    const int64_t P = lay->pitch, len = st->v1.len, a = st->v1.a, h = job->h, w = job->w;
    const int squares = job->alpha != 0.0, grad = job->gradient;
    const double *hx = st->hx.base, *hq = st->hq.base;
    const int64_t hmask = st->hx.mask;
    double *sufx = (double *)lc_at(st, lay->v1suf), *sufq = sufx + len * P;
    double *prex = (double *)lc_at(st, lay->v1pre), *preq = prex + P;
    const vd inv = bcd(1.0 / job->count), p0 = bcd(job->p0), shift = bcd(st->shift);
    const LT pm = (LT)job->pm, ps = (LT)job->ps, alpha = (LT)job->alpha, delta = (LT)job->delta;
    const LT beta = (LT)job->beta, dconst = (LT)job->d_const;
    const int power = job->power;
    const LV c1 = LBC((LT)(job->p0 / job->count));
    const LV c2 = LBC((LT)(2.0 * job->alpha * job->beta / job->count));
    LT *urows = (LT *)lc_at(st, lay->ut), *umrows = (LT *)lc_at(st, lay->umt);
    int64_t i, last_block = st->v1.block, last_pre = st->v1.pre_p;
    int k;

    for (i = 0; i < w; i += LN) {
        vd px[NDV], pq[NDV];
        int64_t block = st->v1.block, pp = st->v1.pre_p, t = t_a;
        for (k = 0; k < NDV; ++k) {
            px[k] = ldd(prex + i + k * VD);
            pq[k] = ldd(preq + i + k * VD);
        }
        while (t < t_b) {
            const int64_t m = t / len, start = m * len;
            const int64_t seg_end = t_b < start + len ? t_b : start + len;
            if (m != block) {
                /* suffix sums of block m, from its end down to t */
                vd ax[NDV], aq[NDV];
                int64_t p;
                for (k = 0; k < NDV; ++k)
                    ax[k] = aq[k] = bcd(0.0);
                for (p = start + len - 1; p >= t; --p) {
                    const int64_t r = p - a;
                    if (r >= 0 && r < h) {
                        const int64_t o = (r & hmask) * P + i;
                        for (k = 0; k < NDV; ++k)
                            ax[k] += ldd(hx + o + k * VD);
                        if (squares)
                            for (k = 0; k < NDV; ++k)
                                aq[k] += ldd(hq + o + k * VD);
                    }
                    for (k = 0; k < NDV; ++k) {
                        std_(sufx + (p - start) * P + i + k * VD, ax[k]);
                        if (squares)
                            std_(sufq + (p - start) * P + i + k * VD, aq[k]);
                    }
                }
                block = m;
                pp = start + len;
                for (k = 0; k < NDV; ++k)
                    px[k] = pq[k] = bcd(0.0);
            }
            for (; t < seg_end; ++t) {
                vd sx[NDV], sq[NDV], md[NDV];
                LV mv, var, av, d;
                const LT *xrow = LCF(xrow)(st, t) + i;
                while (pp <= t + len - 1) {
                    const int64_t r = pp - a;
                    if (r >= 0 && r < h) {
                        const int64_t o = (r & hmask) * P + i;
                        for (k = 0; k < NDV; ++k)
                            px[k] += ldd(hx + o + k * VD);
                        if (squares)
                            for (k = 0; k < NDV; ++k)
                                pq[k] += ldd(hq + o + k * VD);
                    }
                    ++pp;
                }
                for (k = 0; k < NDV; ++k) {
                    sx[k] = ldd(sufx + (t - start) * P + i + k * VD) + px[k];
                    md[k] = sx[k] * inv;
                }
                /* a = X - p0*M in double (X is exact in double) */
                for (k = 0; k < NDV; ++k)
                    sx[k] = LT_LDD(xrow + k * VD) - p0 * md[k];
                av = LCF(from_d)(sx);
                for (k = 0; k < NDV; ++k)
                    sx[k] = md[k] - shift;
                mv = LCF(from_d)(sx); /* M - shift */
                if (squares) {
                    for (k = 0; k < NDV; ++k) {
                        sq[k] = ldd(sufq + (t - start) * P + i + k * VD) + pq[k];
                        sq[k] = clamp0d(sq[k] * inv - md[k] * md[k]);
                    }
                    var = LCF(from_d)(sq);
                    {
                        LV tt = LBC(delta) + LBC(alpha) * var;
                        d = LCF(power)(power, tt, beta);
                        if (grad) {
                            const LT *dyrow = LCF(dyrow)(st, t, t_a) + i;
                            LV gy = LLD(dyrow);
                            LV uu = gy * av * LCF(d_over_t)(power, d, tt);
                            LV gg = gy * d;
                            LST(LCF(grow)(st, t) + i, gg);
                            LST(urows + (t - t_a) * P + i, uu);
                            /* W = c1*G - c2*U*(M - shift): one adjoint sum for both */
                            LST(umrows + (t - t_a) * P + i, c1 * gg - c2 * (uu * mv));
                        } else {
                            LST(out_rows[t - t_a] + i, LBC(pm) + LBC(ps) * av * d);
                        }
                    }
                } else {
                    /* alpha = 0: D = delta^-beta (the gradient never gets here) */
                    LST(out_rows[t - t_a] + i, LBC(pm) + LBC(ps * dconst) * av);
                }
            }
        }
        for (k = 0; k < NDV; ++k) {
            std_(prex + i + k * VD, px[k]);
            std_(preq + i + k * VD, pq[k]);
        }
        last_block = block;
        last_pre = pp;
    }
    st->v1.block = last_block;
    st->v1.pre_p = last_pre;
    st->v1.t = t_b;
}

/*
 * Adjoint sums of output rows [t_a, t_b) (stream v2 over hg = sums of
 * W = c1*G - c2*U*(M - shift), and hu = sums of U) and
 * dX = ps*(G - Badj(W) - c2*(X - shift)*Badj(U)) into out rows.
 */
static void LCF(v2_combine)(lc_state *st, int64_t t_a, int64_t t_b, LT *const *out_rows)
{
    const mpsnorm_lcn_job *job = st->job;
    const mpsnorm_lcn_layout *lay = st->lay;
    const int64_t P = lay->pitch, len = st->v2.len, a = st->v2.a, h = job->h, w = job->w;
    const int full = job->alpha != 0.0;
    const LT *hg = (const LT *)st->hg.base, *hu = (const LT *)st->hu.base;
    const int64_t hmask = st->hg.mask;
    LT *sufg = (LT *)lc_at(st, lay->v2suf), *sufu = sufg + len * P;
    LT *preg = (LT *)lc_at(st, lay->v2pre), *preu = preg + P;
    const LV ps = LBC((LT)job->ps);
    const LV c2 = LBC((LT)(2.0 * job->alpha * job->beta / job->count));
    const LV shift = LBC((LT)st->shift);
    int64_t i, last_block = st->v2.block, last_pre = st->v2.pre_p;

    for (i = 0; i < w; i += LN) {
        LV pg = LLD(preg + i), pu = LLD(preu + i);
        int64_t block = st->v2.block, pp = st->v2.pre_p, t = t_a;
        while (t < t_b) {
            const int64_t m = t / len, start = m * len;
            const int64_t seg_end = t_b < start + len ? t_b : start + len;
            if (m != block) {
                LV ag = LBC(0), au = LBC(0);
                int64_t p;
                for (p = start + len - 1; p >= t; --p) {
                    const int64_t r = p - a;
                    if (r >= 0 && r < h) {
                        const int64_t o = (r & hmask) * P + i;
                        ag += LLD(hg + o);
                        if (full)
                            au += LLD(hu + o);
                    }
                    LST(sufg + (p - start) * P + i, ag);
                    if (full)
                        LST(sufu + (p - start) * P + i, au);
                }
                block = m;
                pp = start + len;
                pg = pu = LBC(0);
            }
            for (; t < seg_end; ++t) {
                const int64_t so = (t - start) * P + i;
                LV res;
                while (pp <= t + len - 1) {
                    const int64_t r = pp - a;
                    if (r >= 0 && r < h) {
                        const int64_t o = (r & hmask) * P + i;
                        pg += LLD(hg + o);
                        if (full)
                            pu += LLD(hu + o);
                    }
                    ++pp;
                }
                res = LLD(LCF(grow)(st, t) + i) - (LLD(sufg + so) + pg);
                if (full)
                    res -= c2 * ((LLD(LCF(xrow)(st, t) + i) - shift) * (LLD(sufu + so) + pu));
                LST(out_rows[t - t_a] + i, ps * res);
            }
        }
        LST(preg + i, pg);
        LST(preu + i, pu);
        last_block = block;
        last_pre = pp;
    }
    st->v2.block = last_block;
    st->v2.pre_p = last_pre;
    st->v2.t = t_b;
}
