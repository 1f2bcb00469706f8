/*
 * test_c_api.c -- the public C ABI as a C program sees it, without Python:
 * both gradients against central finite differences computed here, every
 * status path (with outputs untouched on failure), zero sizes, and threads
 * sharing one engine and kernel.
 *
 *   cc -std=c99 tests/c/test_c_api.c $(python -m mpsnorm config --cflags --libs) -lm -pthread
 *
 * Prints a line per check and ends with "N passed, M failed".
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mpsnorm.h"

static int passed, failed;

static void check(int condition, const char *what)
{
    if (condition)
        passed++;
    else
        failed++;
    printf("%s: %s\n", condition ? "ok  " : "FAIL", what);
}

static mpsnorm_tensor dense(void *data, int dtype, int64_t n, int64_t c, int64_t h, int64_t w)
{
    mpsnorm_tensor tensor = {data, dtype, {n, c, h, w}, {c * h * w, h * w, w, 1}};
    return tensor;
}

static double uniform(unsigned *state)
{
    *state = *state * 1103515245u + 12345u;
    return ((*state >> 8) & 0xffff) / 65536.0 - 0.5;
}

/* ---- finite differences ------------------------------------------------ */

enum { FN = 2, FC = 2, FH = 5, FW = 6, FCOUNT = FN * FC * FH * FW };
static const double STEP = 1e-6;

static double dot(const double *a, const double *b, int count)
{
    double sum = 0.0;
    for (int i = 0; i < count; i++)
        sum += a[i] * b[i];
    return sum;
}

static double lcn_loss(const mpsnorm_lcn_params *params, const double *dy, double *x)
{
    double y[FCOUNT];
    mpsnorm_tensor xt = dense(x, MPSNORM_FLOAT64, FN, FC, FH, FW);
    mpsnorm_tensor yt = dense(y, MPSNORM_FLOAT64, FN, FC, FH, FW);
    if (mpsnorm_lcn_forward(NULL, params, &xt, &yt, NULL) != MPSNORM_OK)
        return NAN;
    return dot(dy, y, FCOUNT);
}

static double max_relative_error(const double *got, const double *expected, int count)
{
    double error = 0.0, scale = 1e-300;
    for (int i = 0; i < count; i++) {
        error = fmax(error, fabs(got[i] - expected[i]));
        scale = fmax(scale, fabs(expected[i]));
    }
    return error / scale;
}

static void check_lcn_gradient(int kw, int kh, float alpha, float beta, const char *what)
{
    unsigned seed = 7u + (unsigned)kw * 31u + (unsigned)kh;
    double x[FCOUNT], dy[FCOUNT], dx[FCOUNT], expected[FCOUNT];
    for (int i = 0; i < FCOUNT; i++) {
        x[i] = uniform(&seed) * 4.0;
        dy[i] = uniform(&seed);
    }
    mpsnorm_lcn_params params;
    mpsnorm_lcn_params_init(&params, kw, kh);
    params.alpha = alpha;
    params.beta = beta;
    params.p0 = 0.8f;
    params.ps = 1.3f;
    for (int i = 0; i < FCOUNT; i++) {
        double saved = x[i];
        x[i] = saved + STEP;
        double upper = lcn_loss(&params, dy, x);
        x[i] = saved - STEP;
        double lower = lcn_loss(&params, dy, x);
        x[i] = saved;
        expected[i] = (upper - lower) / (2.0 * STEP);
    }
    mpsnorm_tensor xt = dense(x, MPSNORM_FLOAT64, FN, FC, FH, FW);
    mpsnorm_tensor dyt = dense(dy, MPSNORM_FLOAT64, FN, FC, FH, FW);
    mpsnorm_tensor dxt = dense(dx, MPSNORM_FLOAT64, FN, FC, FH, FW);
    int status = mpsnorm_lcn_gradient(NULL, &params, &dyt, &xt, &dxt, NULL);
    double error = max_relative_error(dx, expected, FCOUNT);
    printf("      %s: max relative error %.2e\n", what, error);
    check(status == MPSNORM_OK && error < 1e-6, what);
}

static double inorm_loss(const mpsnorm_inorm_params *params, const double *dy, double *x)
{
    double y[FCOUNT];
    mpsnorm_tensor xt = dense(x, MPSNORM_FLOAT64, FN, FC, FH, FW);
    mpsnorm_tensor yt = dense(y, MPSNORM_FLOAT64, FN, FC, FH, FW);
    if (mpsnorm_inorm_forward(NULL, params, &xt, &yt, NULL) != MPSNORM_OK)
        return NAN;
    return dot(dy, y, FCOUNT);
}

static void check_inorm_gradient(void)
{
    unsigned seed = 99u;
    double x[FCOUNT], dy[FCOUNT], dx[FCOUNT], expected[FCOUNT];
    double dgamma[FC], dbeta[FC], expected_dgamma[FC], expected_dbeta[FC];
    float gamma[FC] = {0.75f, 1.25f}, beta[FC] = {0.5f, -0.25f};
    for (int i = 0; i < FCOUNT; i++) {
        x[i] = uniform(&seed) * 3.0 + 1.0;
        dy[i] = uniform(&seed);
    }
    mpsnorm_inorm_params params;
    mpsnorm_inorm_params_init(&params, FC);
    params.gamma = gamma;
    params.beta = beta;
    for (int i = 0; i < FCOUNT; i++) {
        double saved = x[i];
        x[i] = saved + STEP;
        double upper = inorm_loss(&params, dy, x);
        x[i] = saved - STEP;
        double lower = inorm_loss(&params, dy, x);
        x[i] = saved;
        expected[i] = (upper - lower) / (2.0 * STEP);
    }
    /* The forward is affine in gamma and beta: a difference over steps of 1
     * (exact in float32 for these values) is exact. */
    for (int c = 0; c < FC; c++) {
        float *values[2] = {gamma, beta};
        double *targets[2] = {expected_dgamma, expected_dbeta};
        for (int k = 0; k < 2; k++) {
            float saved = values[k][c];
            values[k][c] = saved + 1.0f;
            double upper = inorm_loss(&params, dy, x);
            values[k][c] = saved - 1.0f;
            double lower = inorm_loss(&params, dy, x);
            values[k][c] = saved;
            targets[k][c] = (upper - lower) / 2.0;
        }
    }
    mpsnorm_tensor xt = dense(x, MPSNORM_FLOAT64, FN, FC, FH, FW);
    mpsnorm_tensor dyt = dense(dy, MPSNORM_FLOAT64, FN, FC, FH, FW);
    mpsnorm_tensor dxt = dense(dx, MPSNORM_FLOAT64, FN, FC, FH, FW);
    mpsnorm_vector gv = {dgamma, MPSNORM_FLOAT64, FC, 1}, bv = {dbeta, MPSNORM_FLOAT64, FC, 1};
    int status = mpsnorm_inorm_gradient(NULL, &params, &dyt, &xt, &dxt, &gv, &bv, NULL);
    double error = max_relative_error(dx, expected, FCOUNT);
    double error_gamma = max_relative_error(dgamma, expected_dgamma, FC);
    double error_beta = max_relative_error(dbeta, expected_dbeta, FC);
    printf("      instance norm: max relative error dx %.2e, dgamma %.2e, dbeta %.2e\n", error,
           error_gamma, error_beta);
    check(status == MPSNORM_OK && error < 1e-6, "instance-norm gradient dx vs finite differences");
    check(status == MPSNORM_OK && error_gamma < 1e-9 && error_beta < 1e-9,
          "instance-norm dgamma, dbeta vs finite differences");
}

/* ---- status paths ------------------------------------------------------ */

enum { SN = 1, SC = 2, SH = 4, SW = 4, SCOUNT = SN * SC * SH * SW };
static float sx[SCOUNT], sdy[SCOUNT], sout[SCOUNT + 1], sgamma_out[SC], sbeta_out[SC];
static const float SENTINEL = 7.0f;

static void reset_outputs(void)
{
    for (int i = 0; i < SCOUNT + 1; i++)
        sout[i] = SENTINEL;
    for (int c = 0; c < SC; c++)
        sgamma_out[c] = sbeta_out[c] = SENTINEL;
}

static int outputs_untouched(void)
{
    for (int i = 0; i < SCOUNT + 1; i++)
        if (sout[i] != SENTINEL)
            return 0;
    for (int c = 0; c < SC; c++)
        if (sgamma_out[c] != SENTINEL || sbeta_out[c] != SENTINEL)
            return 0;
    return 1;
}

/* Runs the LCN gradient with the given pieces; expects `expected`, a message,
 * and untouched outputs. */
static void expect_lcn(int expected, const mpsnorm_lcn_params *params, const mpsnorm_tensor *dy,
                       const mpsnorm_tensor *x, const mpsnorm_tensor *dx, const char *what)
{
    mpsnorm_report report;
    reset_outputs();
    int status = mpsnorm_lcn_gradient(NULL, params, dy, x, dx, &report);
    int ok = status == expected && report.message[0] != '\0' && outputs_untouched();
    if (!ok)
        printf("      got %d (%s), message '%s'\n", status, mpsnorm_status_string(status),
               report.message);
    check(ok, what);
}

static void expect_inorm(int expected, const mpsnorm_inorm_params *params,
                         const mpsnorm_tensor *dy, const mpsnorm_tensor *x,
                         const mpsnorm_tensor *dx, const mpsnorm_vector *dgamma,
                         const mpsnorm_vector *dbeta, const char *what)
{
    mpsnorm_report report;
    reset_outputs();
    int status = mpsnorm_inorm_gradient(NULL, params, dy, x, dx, dgamma, dbeta, &report);
    int ok = status == expected && report.message[0] != '\0' && outputs_untouched();
    if (!ok)
        printf("      got %d (%s), message '%s'\n", status, mpsnorm_status_string(status),
               report.message);
    check(ok, what);
}

static void check_status_paths(void)
{
    for (int i = 0; i < SCOUNT; i++) {
        sx[i] = (float)i;
        sdy[i] = 1.0f;
    }
    mpsnorm_lcn_params params;
    mpsnorm_lcn_params_init(&params, 3, 3);
    mpsnorm_tensor x = dense(sx, MPSNORM_FLOAT32, SN, SC, SH, SW);
    mpsnorm_tensor dy = dense(sdy, MPSNORM_FLOAT32, SN, SC, SH, SW);
    mpsnorm_tensor out = dense(sout, MPSNORM_FLOAT32, SN, SC, SH, SW);
    mpsnorm_tensor bad;

    expect_lcn(MPSNORM_ERR_NULL_POINTER, NULL, &dy, &x, &out, "NULL params");
    expect_lcn(MPSNORM_ERR_NULL_POINTER, &params, NULL, &x, &out, "NULL dy");
    expect_lcn(MPSNORM_ERR_NULL_POINTER, &params, &dy, NULL, &out, "NULL x");
    expect_lcn(MPSNORM_ERR_NULL_POINTER, &params, &dy, &x, NULL, "NULL dx");
    bad = x, bad.data = NULL;
    expect_lcn(MPSNORM_ERR_NULL_POINTER, &params, &dy, &bad, &out, "NULL data in a non-empty x");

    mpsnorm_lcn_params bad_params = params;
    bad_params.kernel_width = 0;
    expect_lcn(MPSNORM_ERR_INVALID_PARAMETER, &bad_params, &dy, &x, &out, "kernel_width 0");
    bad_params = params, bad_params.kernel_height = MPSNORM_MAX_KERNEL_SIZE + 1;
    expect_lcn(MPSNORM_ERR_INVALID_PARAMETER, &bad_params, &dy, &x, &out, "kernel_height too large");
    bad_params = params, bad_params.alpha = NAN;
    expect_lcn(MPSNORM_ERR_INVALID_PARAMETER, &bad_params, &dy, &x, &out, "alpha NaN");
    bad_params = params, bad_params.delta = INFINITY;
    expect_lcn(MPSNORM_ERR_INVALID_PARAMETER, &bad_params, &dy, &x, &out, "delta infinite");

    bad = x, bad.dtype = 17;
    expect_lcn(MPSNORM_ERR_BAD_DTYPE, &params, &dy, &bad, &out, "unknown dtype");
    bad = dy, bad.dtype = MPSNORM_FLOAT16;
    expect_lcn(MPSNORM_ERR_BAD_DTYPE, &params, &bad, &x, &out, "dy and x dtypes differ");
    bad = x, bad.shape[2] = -1;
    expect_lcn(MPSNORM_ERR_BAD_SHAPE, &params, &dy, &bad, &out, "negative size");
    bad = dy, bad.shape[3] = SW - 1;
    expect_lcn(MPSNORM_ERR_BAD_SHAPE, &params, &bad, &x, &out, "dy and x shapes differ");
    bad = out, bad.shape[1] = 1;
    expect_lcn(MPSNORM_ERR_BAD_SHAPE, &params, &dy, &x, &bad, "output shape differs");
    bad = x, bad.shape[0] = INT64_MAX / 2;
    expect_lcn(MPSNORM_ERR_BAD_SHAPE, &params, &dy, &bad, &out, "element count overflows");
    bad = x, bad.data = (char *)sx + 1;
    expect_lcn(MPSNORM_ERR_BAD_LAYOUT, &params, &dy, &bad, &out, "misaligned x");
    bad = x, bad.strides[3] = INT64_MAX / 2;
    expect_lcn(MPSNORM_ERR_BAD_LAYOUT, &params, &dy, &bad, &out, "stride beyond the address space");
    bad = out, bad.data = sx;
    expect_lcn(MPSNORM_ERR_OVERLAP, &params, &dy, &x, &bad, "dx is x");
    bad = out, bad.data = sdy + 3;
    expect_lcn(MPSNORM_ERR_OVERLAP, &params, &dy, &x, &bad, "dx overlaps dy partly");
    bad = out, bad.strides[3] = 0;
    expect_lcn(MPSNORM_ERR_OVERLAP, &params, &dy, &x, &bad, "dx writes elements twice");

    /* Inputs may overlap each other: dy = x is fine. */
    reset_outputs();
    check(mpsnorm_lcn_gradient(NULL, &params, &x, &x, &out, NULL) == MPSNORM_OK,
          "dy may alias x");

    mpsnorm_inorm_params inorm;
    mpsnorm_inorm_params_init(&inorm, SC);
    mpsnorm_vector gv = {sgamma_out, MPSNORM_FLOAT32, SC, 1}, bv = {sbeta_out, MPSNORM_FLOAT32, SC, 1};
    mpsnorm_vector badv;
    float bad_gamma[SC] = {1.0f, NAN};
    mpsnorm_inorm_params bad_inorm = inorm;
    bad_inorm.num_channels = SC + 1;
    expect_inorm(MPSNORM_ERR_BAD_SHAPE, &bad_inorm, &dy, &x, &out, &gv, &bv, "channel count differs");
    bad_inorm = inorm, bad_inorm.num_channels = 0;
    expect_inorm(MPSNORM_ERR_INVALID_PARAMETER, &bad_inorm, &dy, &x, &out, &gv, &bv, "num_channels 0");
    bad_inorm = inorm, bad_inorm.epsilon = -1.0f;
    expect_inorm(MPSNORM_ERR_INVALID_PARAMETER, &bad_inorm, &dy, &x, &out, &gv, &bv, "negative epsilon");
    bad_inorm = inorm, bad_inorm.gamma = bad_gamma;
    expect_inorm(MPSNORM_ERR_INVALID_PARAMETER, &bad_inorm, &dy, &x, &out, &gv, &bv, "gamma NaN");
    badv = gv, badv.length = SC + 1;
    expect_inorm(MPSNORM_ERR_BAD_SHAPE, &inorm, &dy, &x, &out, &badv, &bv, "dgamma length");
    badv = gv, badv.dtype = MPSNORM_FLOAT64;
    expect_inorm(MPSNORM_ERR_BAD_DTYPE, &inorm, &dy, &x, &out, &badv, &bv, "dgamma dtype");
    badv = bv, badv.data = sgamma_out;
    expect_inorm(MPSNORM_ERR_OVERLAP, &inorm, &dy, &x, &out, &gv, &badv, "dbeta overlaps dgamma");
    badv = gv, badv.data = sx;
    expect_inorm(MPSNORM_ERR_OVERLAP, &inorm, &dy, &x, &out, &badv, &bv, "dgamma overlaps x");
    badv = gv, badv.stride = 0;
    expect_inorm(MPSNORM_ERR_OVERLAP, &inorm, &dy, &x, &out, &badv, &bv, "dgamma writes twice");

    mpsnorm_engine *engine = (mpsnorm_engine *)&passed; /* must be overwritten */
    int status = mpsnorm_engine_create(99, &engine);
    check(status == MPSNORM_ERR_INVALID_PARAMETER && engine == NULL, "unknown backend code");
    if (!mpsnorm_backend_available(MPSNORM_BACKEND_METAL)) {
        status = mpsnorm_engine_create(MPSNORM_BACKEND_METAL, &engine);
        check(status == MPSNORM_ERR_BACKEND_UNAVAILABLE && engine == NULL,
              "Metal requested where it is absent");
    }
    check(mpsnorm_engine_create(MPSNORM_BACKEND_CPU, NULL) == MPSNORM_ERR_NULL_POINTER,
          "engine_create with NULL result");
    check(mpsnorm_set_num_threads(0) == MPSNORM_ERR_INVALID_PARAMETER, "set_num_threads(0)");
    check(mpsnorm_set_num_threads(1025) == MPSNORM_ERR_INVALID_PARAMETER, "set_num_threads(1025)");
    check(mpsnorm_lcn_params_init(NULL, 3, 3) == MPSNORM_ERR_NULL_POINTER, "params_init(NULL)");

    int codes_named = 1;
    for (int code = MPSNORM_ERR_BACKEND_FAILURE; code <= MPSNORM_OK; code++)
        codes_named &= strcmp(mpsnorm_status_string(code), "unknown status") != 0;
    check(codes_named && mpsnorm_status_string(-1000) != NULL, "every status code has a name");
    check(strcmp(mpsnorm_version(), MPSNORM_VERSION_STRING) == 0, "library version = header version");
}

static void check_zero_sizes(void)
{
    float gamma_out[3] = {SENTINEL, SENTINEL, SENTINEL}, beta_out[3] = {SENTINEL, SENTINEL, SENTINEL};
    mpsnorm_tensor empty = {NULL, MPSNORM_FLOAT32, {0, 3, 4, 4}, {48, 16, 4, 1}};
    mpsnorm_vector gv = {gamma_out, MPSNORM_FLOAT32, 3, 1}, bv = {beta_out, MPSNORM_FLOAT32, 3, 1};
    mpsnorm_inorm_params inorm;
    mpsnorm_inorm_params_init(&inorm, 3);
    int status = mpsnorm_inorm_gradient(NULL, &inorm, &empty, &empty, &empty, &gv, &bv, NULL);
    check(status == MPSNORM_OK && gamma_out[0] == 0.0f && gamma_out[2] == 0.0f &&
          beta_out[1] == 0.0f, "empty batch: OK, zero dgamma/dbeta");
    mpsnorm_lcn_params lcn;
    mpsnorm_lcn_params_init(&lcn, 3, 3);
    empty.shape[0] = 1, empty.shape[2] = 0;
    check(mpsnorm_lcn_gradient(NULL, &lcn, &empty, &empty, &empty, NULL) == MPSNORM_OK,
          "empty plane: OK");
}

/* ---- threads ----------------------------------------------------------- */

enum { TN = 2, TC = 4, TH = 33, TW = 41, TCOUNT = TN * TC * TH * TW, THREADS = 6, CALLS = 20 };
static float tx[TCOUNT], tdy[TCOUNT], serial[TCOUNT];
static mpsnorm_engine *shared_engine;
static mpsnorm_lcn_params shared_params;

static void *call_repeatedly(void *argument)
{
    float *dx = malloc(sizeof(float) * TCOUNT);
    long mismatches = dx == NULL;
    mpsnorm_tensor xt = dense(tx, MPSNORM_FLOAT32, TN, TC, TH, TW);
    mpsnorm_tensor dyt = dense(tdy, MPSNORM_FLOAT32, TN, TC, TH, TW);
    for (int call = 0; dx != NULL && call < CALLS; call++) {
        mpsnorm_tensor dxt = dense(dx, MPSNORM_FLOAT32, TN, TC, TH, TW);
        if (mpsnorm_lcn_gradient(shared_engine, &shared_params, &dyt, &xt, &dxt, NULL) != MPSNORM_OK ||
            memcmp(dx, serial, sizeof serial) != 0)
            mismatches++;
    }
    free(dx);
    *(long *)argument = mismatches;
    return NULL;
}

static void check_threads(void)
{
    unsigned seed = 5u;
    for (int i = 0; i < TCOUNT; i++) {
        tx[i] = (float)uniform(&seed);
        tdy[i] = (float)uniform(&seed);
    }
    mpsnorm_lcn_params_init(&shared_params, 5, 5);
    shared_params.alpha = 1.0f;
    mpsnorm_engine_create(MPSNORM_BACKEND_AUTO, &shared_engine);
    mpsnorm_tensor xt = dense(tx, MPSNORM_FLOAT32, TN, TC, TH, TW);
    mpsnorm_tensor dyt = dense(tdy, MPSNORM_FLOAT32, TN, TC, TH, TW);
    mpsnorm_tensor st = dense(serial, MPSNORM_FLOAT32, TN, TC, TH, TW);
    int status = mpsnorm_lcn_gradient(shared_engine, &shared_params, &dyt, &xt, &st, NULL);
    pthread_t threads[THREADS];
    long mismatches[THREADS];
    int started = 0;
    for (int t = 0; t < THREADS; t++)
        started += pthread_create(&threads[t], NULL, call_repeatedly, &mismatches[t]) == 0;
    long total = 0;
    for (int t = 0; t < started; t++) {
        pthread_join(threads[t], NULL);
        total += mismatches[t];
    }
    printf("      %d threads x %d calls on one engine: %ld mismatches\n", started, CALLS, total);
    check(status == MPSNORM_OK && started == THREADS && total == 0,
          "concurrent calls on a shared engine equal the serial result bit for bit");
    mpsnorm_engine_free(shared_engine);
}

int main(void)
{
    check_lcn_gradient(3, 3, 1.0f, 0.5f, "LCN gradient 3x3 vs finite differences");
    check_lcn_gradient(4, 2, 0.7f, 0.75f, "LCN gradient 4x2 vs finite differences");
    check_lcn_gradient(9, 9, 1.0f, 1.0f, "LCN gradient 9x9 (beyond the image) vs finite differences");
    check_inorm_gradient();
    check_status_paths();
    check_zero_sizes();
    check_threads();
    printf("%d passed, %d failed\n", passed, failed);
    return failed != 0;
}
