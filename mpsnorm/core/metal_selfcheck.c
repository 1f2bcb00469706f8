/*
 * metal_selfcheck.c -- the Metal self-check and the fork rule (see
 * metal_selfcheck.h and mpsnorm.h, "Metal self-check").
 *
 * Some of MPS's semantics cannot be settled from Apple's headers (the
 * placement of even windows, whether the LCN gradient is exact when alpha is
 * not 0, the gamma/beta gradients' buffers), and no test machine runs MPS. So
 * before a class of call first runs on Metal, this file runs it on a small
 * input whose planes have a large mean or values of both signs, on Metal and
 * on the CPU backend in float64, and keeps the verdict for the process. The
 * input is deterministic: a verdict never depends on the caller's data.
 */
#define _POSIX_C_SOURCE 200809L /* clock_gettime, pthread_atfork under -std=c99 */

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "half.h"
#include "metal_selfcheck.h"
#include "validate.h"

/* Classes: LCN forward and gradient (dtype x order x window parity x alpha: 16 each),
 * instance-norm forward (dtype x order), gradient (dtype x order x dgamma/dbeta). */
#define LCN_CLASSES 16
#define CLASS_COUNT MPSNORM_METAL_CLASS_COUNT

typedef struct entry {
    pthread_mutex_t lock; /* held while the class is checked and when it is read */
    mpsnorm_metal_check check;
} entry;

static entry table[CLASS_COUNT];
static pthread_once_t table_once = PTHREAD_ONCE_INIT;
static int checks_enabled = 1;
static volatile int forked_child;
static pthread_once_t fork_once = PTHREAD_ONCE_INIT;

/* ---- classes --------------------------------------------------------------- */

int mpsnorm_metal_class_index(const mpsnorm_metal_class *cls)
{
    const int order = (cls->dtype == MPSNORM_FLOAT16) * 2 + (cls->nhwc != 0);
    switch (cls->kernel) {
    case MPSNORM_KERNEL_LCN_FORWARD:
    case MPSNORM_KERNEL_LCN_GRADIENT:
        return (cls->kernel == MPSNORM_KERNEL_LCN_GRADIENT) * LCN_CLASSES +
               (order * 2 + (cls->even_window != 0)) * 2 + (cls->alpha_nonzero != 0);
    case MPSNORM_KERNEL_INORM_FORWARD:
        return 2 * LCN_CLASSES + order;
    default:
        return 2 * LCN_CLASSES + 4 + order * 2 + (cls->parameter_gradients != 0);
    }
}

static mpsnorm_metal_class class_of(int index)
{
    mpsnorm_metal_class cls;
    int order;
    memset(&cls, 0, sizeof cls);
    if (index < 2 * LCN_CLASSES) {
        cls.kernel = index < LCN_CLASSES ? MPSNORM_KERNEL_LCN_FORWARD
                                         : MPSNORM_KERNEL_LCN_GRADIENT;
        index %= LCN_CLASSES;
        cls.alpha_nonzero = index % 2;
        cls.even_window = index / 2 % 2;
        order = index / 4;
    } else if (index < 2 * LCN_CLASSES + 4) {
        cls.kernel = MPSNORM_KERNEL_INORM_FORWARD;
        order = index - 2 * LCN_CLASSES;
    } else {
        index -= 2 * LCN_CLASSES + 4;
        cls.kernel = MPSNORM_KERNEL_INORM_GRADIENT;
        cls.parameter_gradients = index % 2;
        order = index / 2;
    }
    cls.dtype = order / 2 ? MPSNORM_FLOAT16 : MPSNORM_FLOAT32;
    cls.nhwc = order % 2;
    return cls;
}

static void describe(const mpsnorm_metal_class *cls, char *text, size_t size)
{
    static const char *const kernels[] = {"LCN forward", "LCN gradient", "instance-norm forward",
                                          "instance-norm gradient"};
    const char *dtype = cls->dtype == MPSNORM_FLOAT16 ? "float16" : "float32";
    const char *order = cls->nhwc ? "NHWC" : "NCHW";
    if (cls->kernel <= MPSNORM_KERNEL_LCN_GRADIENT)
        snprintf(text, size, "%s, %s, %s, %s window, alpha %s", kernels[cls->kernel], dtype, order,
                 cls->even_window ? "even" : "odd", cls->alpha_nonzero ? "!= 0" : "= 0");
    else if (cls->kernel == MPSNORM_KERNEL_INORM_GRADIENT)
        snprintf(text, size, "%s, %s, %s, %s", kernels[cls->kernel], dtype, order,
                 cls->parameter_gradients ? "with dgamma/dbeta" : "dx only");
    else
        snprintf(text, size, "%s, %s, %s", kernels[cls->kernel], dtype, order);
}

static void init_table(void)
{
    const char *setting = getenv("MPSNORM_METAL_SELFCHECK");
    checks_enabled = !(setting != NULL && strcmp(setting, "0") == 0);
    for (int i = 0; i < CLASS_COUNT; i++) {
        mpsnorm_metal_class cls = class_of(i);
        mpsnorm_metal_check *check = &table[i].check;
        pthread_mutex_init(&table[i].lock, NULL);
        memset(check, 0, sizeof *check);
        check->kernel = cls.kernel;
        check->dtype = cls.dtype;
        check->nhwc = cls.nhwc;
        check->even_window = cls.even_window;
        check->alpha_nonzero = cls.alpha_nonzero;
        check->parameter_gradients = cls.parameter_gradients;
        check->verdict = MPSNORM_METAL_UNCHECKED;
        check->tolerance = cls.dtype == MPSNORM_FLOAT16 ? 1e-2 : 1e-4;
        describe(&cls, check->description, sizeof check->description);
    }
}

static entry *entry_of(const mpsnorm_metal_class *cls)
{
    pthread_once(&table_once, init_table);
    return &table[mpsnorm_metal_class_index(cls)];
}

/* ---- the check ------------------------------------------------------------- */

/* A check's data: inputs (rounded to the dtype) and outputs, in the dtype for
 * Metal and in float64 for the CPU reference, all in the class's order. */
typedef struct sample {
    int64_t n, c, h, w, count;
    void *x, *dy, *out;                 /* the dtype */
    double *x64, *dy64, *out64;         /* the reference's */
    float *dgamma_images, *dbeta_images; /* Metal's per-image parameter gradients */
    double *dgamma64, *dbeta64;
} sample;

static void free_sample(sample *s)
{
    free(s->x), free(s->dy), free(s->out);
    free(s->x64), free(s->dy64), free(s->out64);
    free(s->dgamma_images), free(s->dbeta_images), free(s->dgamma64), free(s->dbeta64);
}

/* Uniform in [-1, 1), the same sequence on every machine. */
static double next_uniform(uint64_t *state)
{
    *state = *state * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(*state >> 11) * (2.0 / 9007199254740992.0) - 1.0;
}

/* Stores value rounded to the dtype at element i of data, and returns the
 * rounded value. */
static double store(void *data, int64_t i, int dtype, double value)
{
    if (dtype == MPSNORM_FLOAT16) {
        uint16_t half = mpsnorm_half_from_double(value);
        ((uint16_t *)data)[i] = half;
        return mpsnorm_half_to_double(half);
    }
    ((float *)data)[i] = (float)value;
    return (double)(float)value;
}

static double load(const void *data, int64_t i, int dtype)
{
    return dtype == MPSNORM_FLOAT16 ? mpsnorm_half_to_double(((const uint16_t *)data)[i])
                                    : (double)((const float *)data)[i];
}

/* Element offset of (n, c, j, i) in the class's order. */
static int64_t offset_of(const sample *s, int nhwc, int64_t n, int64_t c, int64_t j, int64_t i)
{
    return nhwc ? ((n * s->h + j) * s->w + i) * s->c + c : ((n * s->c + c) * s->h + j) * s->w + i;
}

static int make_sample(sample *s, const mpsnorm_metal_class *cls, int64_t channels)
{
    const int gradient = cls->kernel == MPSNORM_KERNEL_LCN_GRADIENT ||
                         cls->kernel == MPSNORM_KERNEL_INORM_GRADIENT;
    const int lcn = cls->kernel <= MPSNORM_KERNEL_LCN_GRADIENT;
    const size_t item = mpsnorm_dtype_size(cls->dtype);
    uint64_t state = 0x6d70736e6f726dull; /* fixed: the verdict never depends on the caller */
    memset(s, 0, sizeof *s);
    s->n = 2;
    s->c = lcn ? 5 : channels; /* 5 channels: two texture slices, the second partial */
    s->h = lcn ? 11 : 7;
    s->w = lcn ? 13 : 9;
    s->count = s->n * s->c * s->h * s->w;
    s->x = malloc((size_t)s->count * item);
    s->out = malloc((size_t)s->count * item);
    s->x64 = malloc((size_t)s->count * sizeof(double));
    s->out64 = malloc((size_t)s->count * sizeof(double));
    if (gradient) {
        s->dy = malloc((size_t)s->count * item);
        s->dy64 = malloc((size_t)s->count * sizeof(double));
    }
    if (cls->kernel == MPSNORM_KERNEL_INORM_GRADIENT) {
        s->dgamma_images = malloc((size_t)(s->n * s->c) * sizeof(float));
        s->dbeta_images = malloc((size_t)(s->n * s->c) * sizeof(float));
        s->dgamma64 = malloc((size_t)s->c * sizeof(double));
        s->dbeta64 = malloc((size_t)s->c * sizeof(double));
    }
    if (s->x == NULL || s->out == NULL || s->x64 == NULL || s->out64 == NULL ||
        (gradient && (s->dy == NULL || s->dy64 == NULL)) ||
        (cls->kernel == MPSNORM_KERNEL_INORM_GRADIENT &&
         (s->dgamma_images == NULL || s->dbeta_images == NULL || s->dgamma64 == NULL ||
          s->dbeta64 == NULL)))
        return 0;
    /* every other plane has a large mean (cancellation in the variance), the
     * others values of both signs; dy has both signs */
    for (int64_t n = 0; n < s->n; n++)
        for (int64_t c = 0; c < s->c; c++) {
            const int large = (n * s->c + c) % 2 == 0;
            const double mean = large ? 40.0 : 0.5, spread = large ? 4.0 : 3.0;
            for (int64_t j = 0; j < s->h; j++)
                for (int64_t i = 0; i < s->w; i++) {
                    const int64_t at = offset_of(s, cls->nhwc, n, c, j, i);
                    s->x64[at] = store(s->x, at, cls->dtype, mean + spread * next_uniform(&state));
                    if (gradient)
                        s->dy64[at] = store(s->dy, at, cls->dtype, next_uniform(&state));
                }
        }
    return 1;
}

static mpsnorm_tensor describe_tensor(const sample *s, int nhwc, void *data, int dtype)
{
    mpsnorm_tensor t;
    t.data = data;
    t.dtype = dtype;
    t.shape[0] = s->n, t.shape[1] = s->c, t.shape[2] = s->h, t.shape[3] = s->w;
    t.strides[0] = s->c * s->h * s->w;
    t.strides[1] = nhwc ? 1 : s->h * s->w;
    t.strides[2] = nhwc ? s->w * s->c : s->w;
    t.strides[3] = nhwc ? s->c : 1;
    return t;
}

/* The CPU backend in float64 on the rounded inputs (well-formed by construction:
 * the descriptors are checked only to describe them as the backend expects). */
static int reference(const mpsnorm_metal_class *cls, const mpsnorm_lcn_params *lcn,
                     const mpsnorm_inorm_params *inorm, sample *s)
{
    const mpsnorm_tensor x = describe_tensor(s, cls->nhwc, s->x64, MPSNORM_FLOAT64);
    const mpsnorm_tensor dy = describe_tensor(s, cls->nhwc, s->dy64, MPSNORM_FLOAT64);
    const mpsnorm_tensor out = describe_tensor(s, cls->nhwc, s->out64, MPSNORM_FLOAT64);
    const mpsnorm_vector dgamma = {s->dgamma64, MPSNORM_FLOAT64, s->c, 1};
    const mpsnorm_vector dbeta = {s->dbeta64, MPSNORM_FLOAT64, s->c, 1};
    mpsnorm_checked cx, cdy, cout, cdgamma, cdbeta;
    char ignored[MPSNORM_MESSAGE_SIZE];
    mpsnorm_check_tensor(&cx, &x, "x", 0, ignored, sizeof ignored);
    mpsnorm_check_tensor(&cout, &out, "out", 1, ignored, sizeof ignored);
    if (s->dy64 != NULL)
        mpsnorm_check_tensor(&cdy, &dy, "dy", 0, ignored, sizeof ignored);
    switch (cls->kernel) {
    case MPSNORM_KERNEL_LCN_FORWARD: return mpsnorm_cpu_lcn_forward(lcn, &cx, &cout);
    case MPSNORM_KERNEL_LCN_GRADIENT: return mpsnorm_cpu_lcn_gradient(lcn, &cdy, &cx, &cout);
    case MPSNORM_KERNEL_INORM_FORWARD: return mpsnorm_cpu_instance_norm_forward(inorm, &cx, &cout);
    default:
        mpsnorm_check_output_vector(&cdgamma, &dgamma, "dgamma", s->c, MPSNORM_FLOAT64, ignored,
                                    sizeof ignored);
        mpsnorm_check_output_vector(&cdbeta, &dbeta, "dbeta", s->c, MPSNORM_FLOAT64, ignored,
                                    sizeof ignored);
        return mpsnorm_cpu_instance_norm_gradient(inorm, &cdy, &cx, &cout, &cdgamma, &cdbeta);
    }
}

/* with_forward: for the LCN gradient, see backend.h. */
static int on_metal(mpsnorm_metal_cache *cache, const mpsnorm_metal_class *cls,
                    const mpsnorm_lcn_params *lcn, const mpsnorm_inorm_params *inorm,
                    sample *s, int with_forward, char *message, size_t size)
{
    const int gradient = s->dy != NULL;
    const mpsnorm_tensor x = describe_tensor(s, cls->nhwc, s->x, cls->dtype);
    const mpsnorm_tensor dy = describe_tensor(s, cls->nhwc, s->dy, cls->dtype);
    const mpsnorm_tensor out = describe_tensor(s, cls->nhwc, s->out, cls->dtype);
    mpsnorm_metal_timing timing; /* the check's own, not the call's */
    mpsnorm_metal_batch batch;
    batch.primary = gradient ? &dy : &x;
    batch.secondary = gradient ? &x : NULL;
    batch.destination = &out;
    batch.timing = &timing;
    switch (cls->kernel) {
    case MPSNORM_KERNEL_LCN_FORWARD:
        return mpsnorm_metal_lcn_forward(cache, lcn, &batch, message, size);
    case MPSNORM_KERNEL_LCN_GRADIENT:
        return mpsnorm_metal_lcn_gradient(cache, lcn, &batch, with_forward, message, size);
    case MPSNORM_KERNEL_INORM_FORWARD:
        return mpsnorm_metal_inorm_forward(cache, inorm, &batch, message, size);
    default:
        return mpsnorm_metal_inorm_gradient(cache, inorm, &batch, s->dgamma_images,
                                            s->dbeta_images, message, size);
    }
}

static double largest_magnitude(const double *values, int64_t count)
{
    double largest = 0.0;
    for (int64_t i = 0; i < count; i++)
        largest = fabs(values[i]) > largest ? fabs(values[i]) : largest;
    return largest;
}

/* max |got - want| / max(max |want|, floor); infinity for a NaN anywhere. */
static double relative_error(const double *got, const double *want, int64_t count, double floor)
{
    const double scale = fmax(largest_magnitude(want, count), floor);
    double error = 0.0;
    for (int64_t i = 0; i < count; i++) {
        const double e = fabs(got[i] - want[i]);
        if (isnan(e))
            return INFINITY;
        error = e > error ? e : error;
    }
    return scale > 0.0 ? error / scale : error;
}

/* Metal's outputs against the reference (docs/SPEC.md's scale: the larger of
 * the reference and the input, dy for gradients), the worst of them. */
static double compare(const mpsnorm_metal_class *cls, const sample *s)
{
    const int gradient = s->dy != NULL;
    const double floor = largest_magnitude(gradient ? s->dy64 : s->x64, s->count);
    double *got = malloc((size_t)s->count * sizeof(double));
    double error;
    if (got == NULL)
        return NAN;
    for (int64_t i = 0; i < s->count; i++)
        got[i] = load(s->out, i, cls->dtype);
    error = relative_error(got, s->out64, s->count, floor);
    if (cls->parameter_gradients) {
        /* the per-image values summed over the batch, in image order */
        for (int k = 0; k < 2; k++) {
            const float *images = k == 0 ? s->dgamma_images : s->dbeta_images;
            for (int64_t c = 0; c < s->c; c++) {
                double sum = 0.0;
                for (int64_t n = 0; n < s->n; n++)
                    sum += (double)images[n * s->c + c];
                got[c] = sum;
            }
            error = fmax(error, relative_error(got, k == 0 ? s->dgamma64 : s->dbeta64, s->c,
                                               floor));
        }
    }
    free(got);
    return error;
}

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/*
 * Checks the class of e (whose lock the caller holds) and records the verdict.
 * Returns MPSNORM_OK once a verdict is recorded, or the status of a failure
 * that leaves the class unchecked (no memory; Metal failed to run). The LCN
 * gradient is first run without its forward pass: where MPS's gradient state
 * holds only the kernel's properties that is right, and the class's calls
 * then skip the forward; otherwise it is checked again with the forward.
 */
static int check_class(entry *e, mpsnorm_metal_cache *cache, const mpsnorm_metal_class *cls,
                       const mpsnorm_lcn_params *lcn, const mpsnorm_inorm_params *inorm,
                       int64_t channels, char *message, size_t size)
{
    mpsnorm_metal_check *check = &e->check;
    const double started = now();
    sample s;
    int status;
    if (!make_sample(&s, cls, channels)) {
        free_sample(&s);
        return mpsnorm_fail(MPSNORM_ERR_OUT_OF_MEMORY, message, size,
                            "could not allocate the Metal self-check of %s", check->description);
    }
    status = reference(cls, lcn, inorm, &s);
    check->gradient_alone = 0;
    if (status == MPSNORM_OK && cls->kernel == MPSNORM_KERNEL_LCN_GRADIENT &&
        on_metal(cache, cls, lcn, inorm, &s, 0, message, size) == MPSNORM_OK) {
        check->error = compare(cls, &s);
        check->gradient_alone = check->error <= check->tolerance;
    }
    if (status == MPSNORM_OK && !check->gradient_alone) {
        status = on_metal(cache, cls, lcn, inorm, &s, 1, message, size);
        if (status == MPSNORM_OK)
            check->error = compare(cls, &s);
    }
    check->seconds = now() - started;
    if (status == MPSNORM_ERR_UNSUPPORTED) {
        check->verdict = MPSNORM_METAL_UNSUPPORTED;
        snprintf(check->message, sizeof check->message, "%s", message);
        status = MPSNORM_OK;
    } else if (status == MPSNORM_OK) {
        if (check->error <= check->tolerance) {
            check->verdict = MPSNORM_METAL_PASSED;
        } else {
            check->verdict = MPSNORM_METAL_FAILED;
            snprintf(check->message, sizeof check->message,
                     "the Metal self-check of %s failed: Metal and the CPU backend differ by "
                     "%.2g of the data's scale, docs/SPEC.md allows %.0e",
                     check->description, check->error, check->tolerance);
        }
    }
    free_sample(&s);
    return status;
}

/* ---- the verdicts ---------------------------------------------------------- */

int mpsnorm_metal_trust(mpsnorm_metal_cache *cache, const mpsnorm_metal_class *cls,
                        const mpsnorm_lcn_params *lcn, const mpsnorm_inorm_params *inorm,
                        int64_t channels, int may_fall_back, char *message, size_t size,
                        int *notice, int *with_forward)
{
    entry *e;
    int status = MPSNORM_OK, ran = 0, verdict;
    char reason[MPSNORM_MESSAGE_SIZE];
    *notice = 0;
    *with_forward = 1;
    if (mpsnorm_metal_forked())
        return mpsnorm_fail(MPSNORM_ERR_UNSUPPORTED, message, size,
                            "Metal is not used in a process forked from one that created the "
                            "Metal device (Metal is not fork-safe)");
    e = entry_of(cls);
    pthread_mutex_lock(&e->lock);
    if (e->check.verdict == MPSNORM_METAL_UNCHECKED) {
        if (checks_enabled) {
            status = check_class(e, cache, cls, lcn, inorm, channels, message, size);
            ran = 1;
        } else {
            e->check.verdict = MPSNORM_METAL_TRUSTED;
        }
    }
    verdict = e->check.verdict;
    *with_forward = !e->check.gradient_alone;
    snprintf(reason, sizeof reason, "%s", e->check.message);
    pthread_mutex_unlock(&e->lock);
    if (status != MPSNORM_OK)
        return status;
    switch (verdict) {
    case MPSNORM_METAL_UNSUPPORTED:
        return mpsnorm_fail(MPSNORM_ERR_UNSUPPORTED, message, size, "%s", reason);
    case MPSNORM_METAL_FAILED:
        if (!may_fall_back)
            return mpsnorm_fail(MPSNORM_ERR_BACKEND_FAILURE, message, size, "%s", reason);
        *notice = ran;
        return mpsnorm_fail(MPSNORM_ERR_UNSUPPORTED, message, size,
                            ran ? "%s; calls of this class run on the CPU from now on" : "%s",
                            reason);
    default:
        return MPSNORM_OK;
    }
}

void mpsnorm_metal_selfcheck_reset(int enabled)
{
    pthread_once(&table_once, init_table);
    for (int i = 0; i < CLASS_COUNT; i++) {
        table[i].check.verdict = MPSNORM_METAL_UNCHECKED;
        table[i].check.gradient_alone = 0;
        table[i].check.error = 0.0;
        table[i].check.seconds = 0.0;
        table[i].check.message[0] = '\0';
    }
    checks_enabled = enabled;
}

/* ---- fork ------------------------------------------------------------------ */

static void after_fork_in_child(void)
{
    forked_child = 1;
    /* a lock a parent's thread held at the fork stays held in the child:
     * make the verdicts readable there */
    for (int i = 0; i < CLASS_COUNT; i++)
        pthread_mutex_init(&table[i].lock, NULL);
}

static void register_fork_handler(void)
{
    pthread_once(&table_once, init_table);
    pthread_atfork(NULL, NULL, after_fork_in_child);
}

void mpsnorm_metal_watch_fork(void)
{
    pthread_once(&fork_once, register_fork_handler);
}

int mpsnorm_metal_forked(void)
{
    return forked_child;
}

/* ---- the public inquiry functions ------------------------------------------ */

int mpsnorm_metal_check_count(void)
{
    return CLASS_COUNT;
}

int mpsnorm_metal_check_get(int index, mpsnorm_metal_check *check)
{
    if (check == NULL)
        return MPSNORM_ERR_NULL_POINTER;
    if (index < 0 || index >= CLASS_COUNT)
        return MPSNORM_ERR_INVALID_PARAMETER;
    pthread_once(&table_once, init_table);
    pthread_mutex_lock(&table[index].lock);
    *check = table[index].check;
    pthread_mutex_unlock(&table[index].lock);
    return MPSNORM_OK;
}

int mpsnorm_metal_check_run(int index, mpsnorm_metal_check *check)
{
    static const float gamma[5] = {1.5f, -0.75f, 0.3f, 2.0f, 0.5f};
    static const float beta[5] = {0.25f, -1.0f, 0.0f, 0.5f, 3.0f};
    mpsnorm_metal_class cls;
    mpsnorm_lcn_params lcn;
    mpsnorm_inorm_params inorm;
    mpsnorm_metal_cache *cache = NULL;
    char message[MPSNORM_MESSAGE_SIZE] = "could not create the Metal kernel cache";
    int status, notice, with_forward;
    if (check == NULL)
        return MPSNORM_ERR_NULL_POINTER;
    if (index < 0 || index >= CLASS_COUNT)
        return MPSNORM_ERR_INVALID_PARAMETER;
    if (!mpsnorm_metal_device_available() || mpsnorm_metal_forked())
        return MPSNORM_ERR_BACKEND_UNAVAILABLE;
    cls = class_of(index);
    mpsnorm_lcn_params_init(&lcn, cls.even_window ? 4 : 3, cls.even_window ? 4 : 3);
    lcn.alpha = cls.alpha_nonzero ? 1.0f : 0.0f;
    mpsnorm_inorm_params_init(&inorm, 5);
    inorm.gamma = gamma;
    inorm.beta = beta;
    status = mpsnorm_metal_cache_create(&cache);
    if (status == MPSNORM_OK) {
        /* the verdict is recorded whatever it is; only a failure to run matters here */
        status = mpsnorm_metal_trust(cache, &cls, &lcn, &inorm, 5, 1, message, sizeof message,
                                     &notice, &with_forward);
        if (status == MPSNORM_ERR_UNSUPPORTED)
            status = MPSNORM_OK;
        mpsnorm_metal_cache_free(cache);
    }
    mpsnorm_metal_check_get(index, check);
    if (status != MPSNORM_OK) /* the check could not run: say why */
        snprintf(check->message, sizeof check->message, "%s", message);
    return status;
}
