/*
 * test_metal_route.c -- the C side of the Metal backend, on any OS: the route
 * (mpsnorm/core/metal_route.c), the self-check (metal_selfcheck.c) and the
 * copies into and out of MPS's texel layout (metal_staging.c).
 *
 * It links them with a FAKE objc backend defined here. In its first mode the
 * fake does what objc/ does with a call's tensors -- packs them into texels
 * with metal_staging.c, "computes" known codes (float32) or copies the source
 * (float16) in texel form, and unpacks the result into the destination -- and
 * records what it received. The tests check the texels of every memory form
 * (contiguous, strided, reversed, channel-interleaved, odd orders), float16
 * bits kept exactly, padding channels zero, nothing written outside an
 * output, the batch sum of gamma/beta gradients into strided vectors,
 * refusals (float64, kernel_width != kernel_height, sizes MPS images or the
 * device cannot hold, small calls), and that a failing backend or allocation
 * leaves every output as it was, with the reason in the message.
 *
 * The self-check is tested with the fake computing through the CPU backend,
 * correctly or with a deliberate mistake (the mirrored placement of even
 * windows; the alpha term of the LCN gradient left out; an LCN gradient that
 * is wrong without its forward pass), or answering UNSUPPORTED: verdicts, the
 * fallback and its notice, the error of a Metal-only engine, the engine's
 * memory of refused classes, and that a refused class is never run again.
 *
 * Build: the "metal_route", "checks" and "kernels" groups of mpsnorm/sources.txt
 * with this file (tests/test_metal_route.py does it). Prints "N passed, M failed".
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "metal_route.h"
#include "metal_selfcheck.h"
#include "metal_staging.h"
#include "mpsnorm.h"
#include "validate.h"

/* ---- a tiny test harness ------------------------------------------------- */

static int checks_failed_in_test;

#define CHECK(cond, ...)                                                          \
    do {                                                                          \
        if (!(cond)) {                                                            \
            checks_failed_in_test++;                                              \
            fprintf(stderr, "  check failed at %s:%d: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                         \
            fprintf(stderr, "\n");                                                \
        }                                                                         \
    } while (0)

enum { SENTINEL = 0xA5 };

/* ---- tensors ------------------------------------------------------------- */

typedef enum form { NCHW, NHWC, STRIDED, REVERSED, ODD } form;
static const char *const FORM_NAMES[] = {"NCHW", "NHWC", "strided", "reversed", "odd"};

/* A tensor over its own allocation, every byte of which starts as `fill`
 * (so elements outside the tensor, e.g. the gaps of STRIDED, are sentinels). */
typedef struct buffer {
    mpsnorm_tensor t;
    unsigned char *base;
    size_t bytes;
} buffer;

static size_t item_size(int dtype)
{
    return mpsnorm_dtype_size(dtype);
}

static buffer make(form f, int dtype, int64_t n, int64_t c, int64_t h, int64_t w, unsigned char fill)
{
    buffer b;
    size_t item = item_size(dtype);
    int64_t count = n * c * h * w;
    int64_t offset = 0;
    memset(&b, 0, sizeof b);
    b.t.dtype = dtype;
    b.t.shape[0] = n, b.t.shape[1] = c, b.t.shape[2] = h, b.t.shape[3] = w;
    int64_t *s = b.t.strides;
    switch (f) {
    case NCHW: s[0] = c * h * w, s[1] = h * w, s[2] = w, s[3] = 1; break;
    case NHWC: s[0] = h * w * c, s[1] = 1, s[2] = w * c, s[3] = c; break;
    case STRIDED: /* every other element of an NCHW buffer twice as long */
        s[0] = 2 * c * h * w, s[1] = 2 * h * w, s[2] = 2 * w, s[3] = 2;
        count *= 2;
        break;
    case REVERSED: /* NHWC with every axis reversed */
        s[0] = -h * w * c, s[1] = -1, s[2] = -w * c, s[3] = -c;
        offset = count - 1;
        break;
    case ODD: /* (N, W, H, C) memory order: neither NCHW nor NHWC */
        s[0] = w * h * c, s[1] = 1, s[2] = c, s[3] = h * c;
        break;
    }
    b.bytes = (size_t)count * item;
    b.base = malloc(b.bytes);
    memset(b.base, fill, b.bytes);
    b.t.data = b.base + (size_t)offset * item;
    return b;
}

static void release(buffer *b)
{
    free(b->base);
    b->base = NULL;
}

static int64_t offset_of(const mpsnorm_tensor *t, int64_t n, int64_t c, int64_t h, int64_t w)
{
    return n * t->strides[0] + c * t->strides[1] + h * t->strides[2] + w * t->strides[3];
}

/* The bits of element (n, c, h, w): 2 or 4 bytes. */
static uint32_t get_bits(const mpsnorm_tensor *t, int64_t n, int64_t c, int64_t h, int64_t w)
{
    if (t->dtype == MPSNORM_FLOAT16)
        return ((const uint16_t *)t->data)[offset_of(t, n, c, h, w)];
    return ((const uint32_t *)t->data)[offset_of(t, n, c, h, w)];
}

static float get32(const mpsnorm_tensor *t, int64_t n, int64_t c, int64_t h, int64_t w)
{
    return ((const float *)t->data)[offset_of(t, n, c, h, w)];
}

/* Logical value (n, c, h, w) of the inputs: distinct, exact in float32. */
static float input_value(int64_t n, int64_t c, int64_t h, int64_t w)
{
    return 0.5f + (float)(n * 1000 + c * 100 + h * 10 + w);
}

/* float16 bit patterns that a numeric conversion would not keep as they are:
 * NaN payloads, signed zero, infinities, subnormals. */
static const uint16_t SPECIAL_HALF[] = {0x7e01, 0x7c01, 0xfe55, 0x8000, 0x0000, 0x7c00,
                                        0xfc00, 0x0001, 0x83ff, 0x3c00, 0xbbff, 0x7bff};

static uint16_t input_half(int64_t n, int64_t c, int64_t h, int64_t w)
{
    int64_t k = ((n * 7 + c) * 5 + h) * 3 + w;
    return (uint16_t)(SPECIAL_HALF[k % 12] ^ (((k / 12) & 7) << 1));
}

static void fill_input(buffer *b, int salt)
{
    const mpsnorm_tensor *t = &b->t;
    for (int64_t n = 0; n < t->shape[0]; n++)
        for (int64_t c = 0; c < t->shape[1]; c++)
            for (int64_t h = 0; h < t->shape[2]; h++)
                for (int64_t w = 0; w < t->shape[3]; w++) {
                    int64_t at = offset_of(t, n, c, h, w);
                    if (t->dtype == MPSNORM_FLOAT16)
                        ((uint16_t *)t->data)[at] = (uint16_t)(input_half(n, c, h, w) ^ salt);
                    else
                        ((float *)t->data)[at] = input_value(n, c, h, w) + (float)salt;
                }
}

/* The value the fake writes at (n, c, h, w) for float32 (exact in float32). */
static float code(int64_t n, int64_t c, int64_t h, int64_t w)
{
    return (float)(n * 1000000 + c * 10000 + h * 100 + w);
}

/* out holds the fake's float32 codes at every logical element. */
static int holds_codes(const mpsnorm_tensor *out)
{
    for (int64_t n = 0; n < out->shape[0]; n++)
        for (int64_t c = 0; c < out->shape[1]; c++)
            for (int64_t h = 0; h < out->shape[2]; h++)
                for (int64_t w = 0; w < out->shape[3]; w++)
                    if (get32(out, n, c, h, w) != code(n, c, h, w))
                        return 0;
    return 1;
}

/* b and a hold the same bits at every logical element. */
static int same_elements(const mpsnorm_tensor *a, const mpsnorm_tensor *b)
{
    for (int64_t n = 0; n < a->shape[0]; n++)
        for (int64_t c = 0; c < a->shape[1]; c++)
            for (int64_t h = 0; h < a->shape[2]; h++)
                for (int64_t w = 0; w < a->shape[3]; w++)
                    if (get_bits(a, n, c, h, w) != get_bits(b, n, c, h, w))
                        return 0;
    return 1;
}

/* out's bytes outside its elements are still `fill` (nothing written out of place). */
static int gaps_untouched(const buffer *b, unsigned char fill)
{
    const mpsnorm_tensor *t = &b->t;
    size_t item = item_size(t->dtype);
    unsigned char *mask = calloc(b->bytes, 1);
    for (int64_t n = 0; n < t->shape[0]; n++)
        for (int64_t c = 0; c < t->shape[1]; c++)
            for (int64_t h = 0; h < t->shape[2]; h++)
                for (int64_t w = 0; w < t->shape[3]; w++) {
                    size_t at = (size_t)(((const unsigned char *)t->data - b->base) +
                                         offset_of(t, n, c, h, w) * (int64_t)item);
                    memset(mask + at, 1, item);
                }
    int ok = 1;
    for (size_t i = 0; i < b->bytes; i++)
        if (!mask[i] && b->base[i] != fill)
            ok = 0;
    free(mask);
    return ok;
}

static int all_bytes(const buffer *b, unsigned char fill)
{
    for (size_t i = 0; i < b->bytes; i++)
        if (b->base[i] != fill)
            return 0;
    return 1;
}

/* ---- texels ---------------------------------------------------------------- */

/* Texel (slice s, row h, column w, component k) of image n of a staging buffer. */
static uint32_t texel_bits(const void *staging, const mpsnorm_texel_layout *lay, int64_t n,
                           int64_t s, int64_t h, int64_t w, int64_t k)
{
    const size_t at = (size_t)n * lay->image_bytes + (size_t)s * lay->slice_bytes +
                      (size_t)h * lay->row_bytes + (size_t)(w * lay->components + k) * lay->item;
    if (lay->item == 2) {
        uint16_t bits;
        memcpy(&bits, (const char *)staging + at, 2);
        return bits;
    }
    uint32_t bits;
    memcpy(&bits, (const char *)staging + at, 4);
    return bits;
}

/* Every texel holds its channel of t (MPSImage.h: slice s holds channels
 * s*components ..), the padding channels zero. */
static int texels_hold(const void *staging, const mpsnorm_texel_layout *lay,
                       const mpsnorm_tensor *t)
{
    for (int64_t n = 0; n < t->shape[0]; n++)
        for (int64_t s = 0; s < lay->slices; s++)
            for (int64_t h = 0; h < lay->h; h++)
                for (int64_t w = 0; w < lay->w; w++)
                    for (int64_t k = 0; k < lay->components; k++) {
                        int64_t c = s * lay->components + k;
                        uint32_t want = c < lay->c ? get_bits(t, n, c, h, w) : 0;
                        if (texel_bits(staging, lay, n, s, h, w, k) != want)
                            return 0;
                    }
    return 1;
}

/* ---- the fake backend ---------------------------------------------------- */

enum fake_kind { FAKE_NONE, FAKE_LCN_FORWARD, FAKE_LCN_GRADIENT, FAKE_INORM_FORWARD, FAKE_INORM_GRADIENT };

/* What the fake writes: codes (below), or the CPU backend's results, right or
 * wrong (NEEDS_FORWARD: an LCN gradient encoded without its forward pass reads
 * an empty state and writes NaN, as the objc fake's does). */
enum fake_answer { ANSWER_CODES, ANSWER_CPU, ANSWER_MIRRORED_EVEN, ANSWER_NO_ALPHA_GRADIENT,
                   ANSWER_NEEDS_FORWARD, ANSWER_UNSUPPORTED };

static struct {
    int calls;
    int fail;                    /* the next calls fail with BACKEND_FAILURE */
    enum fake_answer answer;
    enum fake_kind kind;
    mpsnorm_metal_batch batch;   /* as received */
    const void *params;          /* as received */
    int with_forward;            /* as received (LCN gradient) */
    mpsnorm_texel_layout layout; /* of the packed inputs */
    unsigned char *primary;      /* the inputs as packed into texels */
    unsigned char *secondary;
    uint64_t max_buffer, working_set; /* the device's limits */
} fake;

static const char FAKE_MESSAGE[] = "fake Metal failure: the device was lost";

static void fake_reset(void)
{
    free(fake.primary);
    free(fake.secondary);
    memset(&fake, 0, sizeof fake);
    fake.max_buffer = (uint64_t)1 << 40;
    fake.working_set = (uint64_t)1 << 42;
}

/* Checked as an input: tests hand the route and the fake outputs an output
 * check would refuse (zero strides), to reach their own paths. */
static mpsnorm_checked checked_tensor(const mpsnorm_tensor *tensor, const char *name)
{
    mpsnorm_checked checked;
    char ignored[MPSNORM_MESSAGE_SIZE];
    mpsnorm_check_tensor(&checked, tensor, name, 0, ignored, sizeof ignored);
    return checked;
}

/* A view of t turned by 180 degrees in H and W. */
static mpsnorm_tensor turned(const mpsnorm_tensor *t)
{
    mpsnorm_tensor view = *t;
    view.data = (char *)t->data + (t->shape[2] - 1) * t->strides[2] * (int64_t)item_size(t->dtype) +
                (t->shape[3] - 1) * t->strides[3] * (int64_t)item_size(t->dtype);
    view.strides[2] = -t->strides[2];
    view.strides[3] = -t->strides[3];
    return view;
}

/* Image n of t as a batch of one. */
static mpsnorm_tensor image_of(const mpsnorm_tensor *t, int64_t n)
{
    mpsnorm_tensor view = *t;
    view.shape[0] = 1;
    view.data = (char *)t->data + n * t->strides[0] * (int64_t)item_size(t->dtype);
    return view;
}

/*
 * The CPU backend's answer, or a wrong one: ANSWER_MIRRORED_EVEN computes even
 * windows on the images turned by 180 degrees (the window reaching down and
 * right), ANSWER_NO_ALPHA_GRADIENT the LCN gradient without its alpha term.
 */
static int compute(enum fake_kind kind, const void *params, const mpsnorm_metal_batch *b,
                   float *dgamma_per_image, float *dbeta_per_image, char *message, size_t size)
{
    if (fake.answer == ANSWER_UNSUPPORTED) {
        snprintf(message, size, "fake MPS: no gradient state on this system");
        return MPSNORM_ERR_UNSUPPORTED;
    }
    if (kind == FAKE_LCN_FORWARD || kind == FAKE_LCN_GRADIENT) {
        mpsnorm_lcn_params p = *(const mpsnorm_lcn_params *)params;
        int mirrored = fake.answer == ANSWER_MIRRORED_EVEN && p.kernel_width % 2 == 0;
        const mpsnorm_tensor *x_in = kind == FAKE_LCN_FORWARD ? b->primary : b->secondary;
        mpsnorm_tensor x = mirrored ? turned(x_in) : *x_in;
        mpsnorm_tensor out = mirrored ? turned(b->destination) : *b->destination;
        mpsnorm_checked cx = checked_tensor(&x, "x"), cout = checked_tensor(&out, "out");
        if (kind == FAKE_LCN_FORWARD)
            return mpsnorm_cpu_lcn_forward(&p, &cx, &cout);
        mpsnorm_tensor dy = mirrored ? turned(b->primary) : *b->primary;
        mpsnorm_checked cdy = checked_tensor(&dy, "dy");
        if (fake.answer == ANSWER_NO_ALPHA_GRADIENT)
            p.alpha = 0.0f;
        if (fake.answer == ANSWER_NEEDS_FORWARD && !fake.with_forward)
            p.delta = 1e30f; /* an empty state: something else than the gradient */
        return mpsnorm_cpu_lcn_gradient(&p, &cdy, &cx, &cout);
    }
    const mpsnorm_inorm_params *p = params;
    if (kind == FAKE_INORM_FORWARD) {
        mpsnorm_checked cx = checked_tensor(b->primary, "x");
        mpsnorm_checked cy = checked_tensor(b->destination, "y");
        return mpsnorm_cpu_instance_norm_forward(p, &cx, &cy);
    }
    /* one image at a time: MPS keeps each image's gamma/beta gradients */
    const int64_t channels = b->primary->shape[1];
    for (int64_t n = 0; n < b->primary->shape[0]; n++) {
        mpsnorm_tensor dy = image_of(b->primary, n), x = image_of(b->secondary, n);
        mpsnorm_tensor dx = image_of(b->destination, n);
        mpsnorm_vector dgamma = {dgamma_per_image + n * channels, MPSNORM_FLOAT32, channels, 1};
        mpsnorm_vector dbeta = {dbeta_per_image + n * channels, MPSNORM_FLOAT32, channels, 1};
        mpsnorm_checked cdy = checked_tensor(&dy, "dy"), cx = checked_tensor(&x, "x");
        mpsnorm_checked cdx = checked_tensor(&dx, "dx"), cdgamma, cdbeta;
        char ignored[MPSNORM_MESSAGE_SIZE];
        mpsnorm_check_output_vector(&cdgamma, &dgamma, "dgamma", channels, MPSNORM_FLOAT32,
                                    ignored, sizeof ignored);
        mpsnorm_check_output_vector(&cdbeta, &dbeta, "dbeta", channels, MPSNORM_FLOAT32, ignored,
                                    sizeof ignored);
        int status = mpsnorm_cpu_instance_norm_gradient(p, &cdy, &cx, &cdx, &cdgamma, &cdbeta);
        if (status != MPSNORM_OK)
            return status;
    }
    return MPSNORM_OK;
}

/* What objc/ does with the tensors, with codes for a kernel: pack the inputs
 * into texels, write the output in texels, unpack it. */
static int fake_run(enum fake_kind kind, const void *params, const mpsnorm_metal_batch *b,
                    float *dgamma_per_image, float *dbeta_per_image, char *message, size_t size)
{
    fake.calls++;
    fake.kind = kind;
    fake.batch = *b;
    b->timing->staging_seconds = 0.25; /* what objc/ measures, failed or not */
    b->timing->gpu_seconds = 0.5;
    fake.params = params;
    mpsnorm_texel_layout_of(b->primary, 4, &fake.layout);
    const int64_t n = b->primary->shape[0];
    const size_t bytes = (size_t)n * fake.layout.image_bytes;
    free(fake.primary);
    free(fake.secondary);
    fake.primary = malloc(bytes);
    fake.secondary = b->secondary != NULL ? malloc(bytes) : NULL;
    mpsnorm_metal_pack(b->primary, 0, n, &fake.layout, fake.primary);
    if (b->secondary != NULL)
        mpsnorm_metal_pack(b->secondary, 0, n, &fake.layout, fake.secondary);
    if (fake.fail) {
        snprintf(message, size, "%s", FAKE_MESSAGE);
        return MPSNORM_ERR_BACKEND_FAILURE;
    }
    if (fake.answer != ANSWER_CODES)
        return compute(kind, params, b, dgamma_per_image, dbeta_per_image, message, size);
    unsigned char *out = malloc(bytes);
    if (b->destination->dtype == MPSNORM_FLOAT16) {
        memcpy(out, fake.primary, bytes); /* float16: the result is the source's bits */
    } else {
        memset(out, 0, bytes);
        for (int64_t i = 0; i < n; i++)
            for (int64_t s = 0; s < fake.layout.slices; s++)
                for (int64_t h = 0; h < fake.layout.h; h++)
                    for (int64_t w = 0; w < fake.layout.w; w++)
                        for (int64_t k = 0; k < 4 && s * 4 + k < fake.layout.c; k++) {
                            float value = code(i, s * 4 + k, h, w);
                            memcpy(out + (size_t)i * fake.layout.image_bytes +
                                       (size_t)s * fake.layout.slice_bytes +
                                       (size_t)h * fake.layout.row_bytes + (size_t)(w * 4 + k) * 4,
                                   &value, 4);
                        }
    }
    mpsnorm_metal_unpack(out, 0, n, &fake.layout, b->destination);
    free(out);
    if (kind == FAKE_INORM_GRADIENT) /* dgamma = 0.25 * (n + 1) + c, dbeta = 10 * n + c + 0.5 */
        for (int64_t i = 0; i < n; i++)
            for (int64_t c = 0; c < fake.layout.c; c++) {
                dgamma_per_image[i * fake.layout.c + c] = 0.25f * (float)(i + 1) + (float)c;
                dbeta_per_image[i * fake.layout.c + c] = (float)(10 * i + c) + 0.5f;
            }
    return MPSNORM_OK;
}

int mpsnorm_metal_lcn_forward(mpsnorm_metal_cache *cache, const mpsnorm_lcn_params *params,
                              const mpsnorm_metal_batch *batch, char *message, size_t size)
{
    (void)cache;
    return fake_run(FAKE_LCN_FORWARD, params, batch, NULL, NULL, message, size);
}

int mpsnorm_metal_lcn_gradient(mpsnorm_metal_cache *cache, const mpsnorm_lcn_params *params,
                               const mpsnorm_metal_batch *batch, int with_forward,
                               char *message, size_t size)
{
    (void)cache;
    fake.with_forward = with_forward;
    return fake_run(FAKE_LCN_GRADIENT, params, batch, NULL, NULL, message, size);
}

int mpsnorm_metal_inorm_forward(mpsnorm_metal_cache *cache, const mpsnorm_inorm_params *params,
                                const mpsnorm_metal_batch *batch, char *message, size_t size)
{
    (void)cache;
    return fake_run(FAKE_INORM_FORWARD, params, batch, NULL, NULL, message, size);
}

int mpsnorm_metal_inorm_gradient(mpsnorm_metal_cache *cache, const mpsnorm_inorm_params *params,
                                 const mpsnorm_metal_batch *batch, float *dgamma_per_image,
                                 float *dbeta_per_image, char *message, size_t size)
{
    (void)cache;
    return fake_run(FAKE_INORM_GRADIENT, params, batch, dgamma_per_image, dbeta_per_image,
                    message, size);
}

int mpsnorm_metal_limits(uint64_t *max_buffer_length, uint64_t *working_set)
{
    *max_buffer_length = fake.max_buffer;
    *working_set = fake.working_set;
    return MPSNORM_OK;
}

int mpsnorm_metal_device_available(void) { return 1; }
int mpsnorm_metal_cache_create(mpsnorm_metal_cache **cache)
{
    *cache = (mpsnorm_metal_cache *)&fake; /* the route only passes the pointer on */
    return MPSNORM_OK;
}
void mpsnorm_metal_cache_free(mpsnorm_metal_cache *cache) { (void)cache; }

/* ---- the route's entry points, on descriptors checked as the dispatcher does */

/* The Metal binding of an engine, made anew for each test (refusals are per engine). */
static mpsnorm_metal_binding *ENGINE;

/* The route of an engine that may fall back to the CPU (may_fall_back = 1), or not,
 * whether the route's message is a notice for the user, and the call's timing. */
static int may_fall_back = 1, notice;
static mpsnorm_metal_timing timing;

static int route_lcn(mpsnorm_metal_binding *binding, const mpsnorm_lcn_params *params,
                     const mpsnorm_tensor *dy, const mpsnorm_tensor *x, const mpsnorm_tensor *out,
                     char *message, size_t size)
{
    mpsnorm_checked cdy, cx = checked_tensor(x, "x"), cout = checked_tensor(out, "out");
    if (dy != NULL)
        cdy = checked_tensor(dy, "dy");
    return mpsnorm_metal_route_lcn(binding, params, dy != NULL ? &cdy : NULL, &cx, &cout,
                                   may_fall_back, &timing, message, size, &notice);
}

static int route_instance_norm(mpsnorm_metal_binding *binding,
                               const mpsnorm_inorm_params *params,
                               const mpsnorm_tensor *dy, const mpsnorm_tensor *x,
                               const mpsnorm_tensor *out, const mpsnorm_vector *dgamma,
                               const mpsnorm_vector *dbeta, char *message, size_t size)
{
    mpsnorm_checked cdy, cx = checked_tensor(x, "x"), cout = checked_tensor(out, "out");
    mpsnorm_checked cdgamma, cdbeta;
    char ignored[MPSNORM_MESSAGE_SIZE];
    if (dy != NULL)
        cdy = checked_tensor(dy, "dy");
    if (dgamma != NULL)
        mpsnorm_check_output_vector(&cdgamma, dgamma, "dgamma", dgamma->length, dgamma->dtype,
                                    ignored, sizeof ignored);
    if (dbeta != NULL)
        mpsnorm_check_output_vector(&cdbeta, dbeta, "dbeta", dbeta->length, dbeta->dtype, ignored,
                                    sizeof ignored);
    return mpsnorm_metal_route_instance_norm(binding, params, dy != NULL ? &cdy : NULL, &cx, &cout,
                                             dgamma != NULL ? &cdgamma : NULL,
                                             dbeta != NULL ? &cdbeta : NULL, may_fall_back,
                                             &timing, message, size, &notice);
}

static mpsnorm_lcn_params lcn_params(int64_t kw, int64_t kh)
{
    mpsnorm_lcn_params p;
    memset(&p, 0, sizeof p);
    p.kernel_width = kw;
    p.kernel_height = kh;
    p.alpha = 1.0f, p.beta = 0.5f, p.delta = 1.0f / 1024.0f, p.p0 = 1.0f, p.pm = 0.0f, p.ps = 1.0f;
    return p;
}

static mpsnorm_inorm_params inorm_params(int64_t c)
{
    mpsnorm_inorm_params p;
    memset(&p, 0, sizeof p);
    p.num_channels = c;
    p.epsilon = 1e-5f;
    return p;
}

/* ---- staging --------------------------------------------------------------- */

/* Every memory form into texels and back into every form: texels as MPSImage.h
 * stores them, padding zero, bits kept (float16 NaN payloads, signed zeros,
 * subnormals), nothing written outside the output; 67 rows: two bands of rows. */
static void test_staging_round_trips(void)
{
    const int dtypes[2] = {MPSNORM_FLOAT32, MPSNORM_FLOAT16};
    const int64_t channel_counts[4] = {1, 2, 5, 8};
    for (int d = 0; d < 2; d++)
        for (int k = 0; k < 4; k++)
            for (int components = 1; components <= 4; components *= 2) {
                const int64_t c = channel_counts[k];
                if (components != 4 && components < c)
                    continue;
                for (int fx = NCHW; fx <= ODD; fx++) {
                    buffer x = make((form)fx, dtypes[d], 2, c, 67, 5, 0);
                    fill_input(&x, 0);
                    mpsnorm_texel_layout lay;
                    CHECK(mpsnorm_texel_layout_of(&x.t, components, &lay) == MPSNORM_OK,
                          "layout of %d channels in %d components", (int)c, components);
                    CHECK(lay.slices == (c + components - 1) / components, "slices");
                    unsigned char *staging = malloc(2 * lay.image_bytes);
                    memset(staging, SENTINEL, 2 * lay.image_bytes);
                    mpsnorm_metal_pack(&x.t, 0, 2, &lay, staging);
                    CHECK(texels_hold(staging, &lay, &x.t), "%s, %d channels, %d components: texels",
                          FORM_NAMES[fx], (int)c, components);
                    for (int fy = NCHW; fy <= ODD; fy++) {
                        buffer y = make((form)fy, dtypes[d], 2, c, 67, 5, SENTINEL);
                        mpsnorm_metal_unpack(staging, 0, 2, &lay, &y.t);
                        CHECK(same_elements(&x.t, &y.t), "%s -> texels -> %s: elements",
                              FORM_NAMES[fx], FORM_NAMES[fy]);
                        CHECK(gaps_untouched(&y, SENTINEL), "%s: gaps", FORM_NAMES[fy]);
                        release(&y);
                    }
                    /* images [1, 2) alone: image 1 at the staging buffer's start */
                    for (int fy = NCHW; fy <= NHWC; fy++) {
                        buffer y = make((form)fy, dtypes[d], 2, c, 67, 5, SENTINEL);
                        mpsnorm_metal_unpack(staging + lay.image_bytes, 1, 1, &lay, &y.t);
                        mpsnorm_tensor first = image_of(&y.t, 0), second = image_of(&y.t, 1);
                        mpsnorm_tensor x1 = image_of(&x.t, 1);
                        CHECK(same_elements(&second, &x1), "image 1 of 2 unpacked alone (%s)",
                              FORM_NAMES[fy]);
                        CHECK(get_bits(&first, 0, 0, 0, 0) ==
                                  (dtypes[d] == MPSNORM_FLOAT16 ? 0xA5A5u : 0xA5A5A5A5u),
                              "image 0 untouched (%s)", FORM_NAMES[fy]);
                        release(&y);
                    }
                    free(staging);
                    release(&x);
                }
            }
    buffer x = make(NCHW, MPSNORM_FLOAT32, 1, 3, 2, 2, 0);
    mpsnorm_texel_layout lay;
    CHECK(mpsnorm_texel_layout_of(&x.t, 2, &lay) == MPSNORM_ERR_INVALID_PARAMETER,
          "3 channels do not fit RG texels");
    CHECK(mpsnorm_texel_layout_of(&x.t, 3, &lay) == MPSNORM_ERR_INVALID_PARAMETER,
          "3 components is no pixel format");
    release(&x);
}

/* ---- the route ------------------------------------------------------------- */

/* Forward LCN for every input/output form and both dtypes: the backend gets
 * the caller's tensors, packs them right and writes the output in place. */
static void test_lcn_forward_forms(void)
{
    const int dtypes[2] = {MPSNORM_FLOAT32, MPSNORM_FLOAT16};
    for (int d = 0; d < 2; d++)
        for (int fx = NCHW; fx <= ODD; fx++)
            for (int fy = NCHW; fy <= ODD; fy++) {
                int dtype = dtypes[d];
                buffer x = make((form)fx, dtype, 2, 3, 4, 5, 0);
                buffer y = make((form)fy, dtype, 2, 3, 4, 5, SENTINEL);
                fill_input(&x, 0);
                mpsnorm_lcn_params p = lcn_params(3, 3);
                char message[MPSNORM_MESSAGE_SIZE] = "";
                fake_reset();
                int status = route_lcn(ENGINE, &p, NULL, &x.t, &y.t, message, sizeof message);
                const char *what = FORM_NAMES[fx], *out_what = FORM_NAMES[fy];
                CHECK(status == MPSNORM_OK, "x %s y %s: status %d (%s)", what, out_what, status,
                      message);
                CHECK(fake.calls == 1 && fake.kind == FAKE_LCN_FORWARD, "x %s y %s", what, out_what);
                CHECK(fake.params == &p, "params passed through");
                const mpsnorm_metal_batch *b = &fake.batch;
                CHECK(b->primary == &x.t && b->destination == &y.t && b->secondary == NULL,
                      "the caller's tensors, no copies");
                CHECK(texels_hold(fake.primary, &fake.layout, &x.t), "x %s: texels", what);
                if (dtype == MPSNORM_FLOAT32)
                    CHECK(holds_codes(&y.t), "x %s y %s: y", what, out_what);
                else
                    CHECK(same_elements(&x.t, &y.t), "x %s y %s: float16 bits", what, out_what);
                CHECK(gaps_untouched(&y, SENTINEL), "y %s: bytes outside y written", out_what);
                release(&x);
                release(&y);
            }
}

/* LCN gradient: dy is the primary (source gradient), x the secondary. */
static void test_lcn_gradient_roles(void)
{
    const form forms[3] = {NHWC, STRIDED, NCHW};
    for (int i = 0; i < 3; i++) {
        buffer dy = make(NHWC, MPSNORM_FLOAT32, 3, 2, 3, 4, 0);
        buffer x = make(forms[i], MPSNORM_FLOAT32, 3, 2, 3, 4, 0);
        buffer dx = make(REVERSED, MPSNORM_FLOAT32, 3, 2, 3, 4, SENTINEL);
        fill_input(&dy, 7);
        fill_input(&x, 0);
        mpsnorm_lcn_params p = lcn_params(4, 4);
        char message[MPSNORM_MESSAGE_SIZE] = "";
        fake_reset();
        int status = route_lcn(ENGINE, &p, &dy.t, &x.t, &dx.t, message, sizeof message);
        CHECK(status == MPSNORM_OK, "status %d (%s)", status, message);
        CHECK(fake.kind == FAKE_LCN_GRADIENT, "gradient kernel called");
        CHECK(fake.with_forward == 1, "trusted MPS: the forward fills the states");
        const mpsnorm_metal_batch *b = &fake.batch;
        CHECK(b->primary == &dy.t && b->secondary == &x.t && b->destination == &dx.t, "roles");
        CHECK(texels_hold(fake.primary, &fake.layout, &dy.t), "primary holds dy");
        CHECK(texels_hold(fake.secondary, &fake.layout, &x.t), "secondary holds x (%s)",
              FORM_NAMES[forms[i]]);
        CHECK(holds_codes(&dx.t), "dx");
        release(&dy);
        release(&x);
        release(&dx);
    }
}

/* Per-image gamma/beta gradients summed over the batch into strided float32 vectors. */
static void test_inorm_gradient_sums(void)
{
    enum { N = 5, C = 4 };
    buffer dy = make(NCHW, MPSNORM_FLOAT32, N, C, 3, 2, 0);
    buffer x = make(NCHW, MPSNORM_FLOAT32, N, C, 3, 2, 0);
    buffer dx = make(ODD, MPSNORM_FLOAT32, N, C, 3, 2, SENTINEL);
    fill_input(&dy, 1);
    fill_input(&x, 0);
    float gamma_store[2 * C + 1], beta_store[C + 2];
    for (int i = 0; i < 2 * C + 1; i++)
        gamma_store[i] = -1.0f;
    for (int i = 0; i < C + 2; i++)
        beta_store[i] = -1.0f;
    mpsnorm_vector dgamma = {gamma_store, MPSNORM_FLOAT32, C, 2};       /* every other float */
    mpsnorm_vector dbeta = {beta_store + C, MPSNORM_FLOAT32, C, -1};   /* reversed */
    mpsnorm_inorm_params p = inorm_params(C);
    char message[MPSNORM_MESSAGE_SIZE] = "";
    fake_reset();
    int status = route_instance_norm(ENGINE, &p, &dy.t, &x.t, &dx.t, &dgamma, &dbeta,
                                     message, sizeof message);
    CHECK(status == MPSNORM_OK, "status %d (%s)", status, message);
    CHECK(fake.kind == FAKE_INORM_GRADIENT, "gradient kernel called");
    CHECK(fake.batch.primary == &dy.t && fake.batch.secondary == &x.t, "dy and x");
    CHECK(holds_codes(&dx.t) && gaps_untouched(&dx, SENTINEL), "dx");
    for (int c = 0; c < C; c++) {
        /* sum_n 0.25 (n + 1) + c  and  sum_n 10 n + c + 0.5 */
        float want_gamma = 0.25f * (float)(N * (N + 1) / 2) + (float)(N * c);
        float want_beta = (float)(10 * N * (N - 1) / 2 + N * c) + 0.5f * (float)N;
        CHECK(gamma_store[2 * c] == want_gamma, "dgamma[%d] = %g, want %g", c,
              (double)gamma_store[2 * c], (double)want_gamma);
        CHECK(gamma_store[2 * c + 1] == -1.0f, "dgamma gap %d written", c);
        CHECK(beta_store[C - c] == want_beta, "dbeta[%d] = %g, want %g", c,
              (double)beta_store[C - c], (double)want_beta);
    }
    CHECK(beta_store[0] == -1.0f && beta_store[C + 1] == -1.0f, "dbeta neighbours written");

    /* Either vector may be NULL. */
    for (int i = 0; i < C + 2; i++)
        beta_store[i] = -1.0f;
    fake_reset();
    status = route_instance_norm(ENGINE, &p, &dy.t, &x.t, &dx.t, NULL, &dbeta, message,
                                 sizeof message);
    CHECK(status == MPSNORM_OK, "dgamma NULL: status %d (%s)", status, message);
    CHECK(beta_store[C] == (float)(10 * N * (N - 1) / 2) + 0.5f * (float)N,
          "dbeta[0] with dgamma NULL: %g", (double)beta_store[C]);
    release(&dy);
    release(&x);
    release(&dx);
}

/* Refusals: nothing is called, nothing written, the reason comes back. */
static void test_refusals(void)
{
    char message[MPSNORM_MESSAGE_SIZE];

    buffer x64 = make(NCHW, MPSNORM_FLOAT64, 1, 2, 3, 3, 0);
    buffer y64 = make(NCHW, MPSNORM_FLOAT64, 1, 2, 3, 3, SENTINEL);
    mpsnorm_lcn_params p = lcn_params(3, 3);
    fake_reset();
    message[0] = '\0';
    int status = route_lcn(ENGINE, &p, NULL, &x64.t, &y64.t, message, sizeof message);
    CHECK(status == MPSNORM_ERR_UNSUPPORTED, "float64 LCN: status %d", status);
    CHECK(strstr(message, "float64") != NULL, "message: %s", message);
    CHECK(fake.calls == 0 && all_bytes(&y64, SENTINEL), "float64 LCN: nothing run or written");

    mpsnorm_inorm_params ip = inorm_params(2);
    float store[2] = {-1.0f, -1.0f};
    mpsnorm_vector dgamma = {store, MPSNORM_FLOAT32, 2, 1};
    fake_reset();
    message[0] = '\0';
    status = route_instance_norm(ENGINE, &ip, &x64.t, &x64.t, &y64.t, &dgamma, NULL, message,
                                 sizeof message);
    CHECK(status == MPSNORM_ERR_UNSUPPORTED, "float64 instance norm: status %d", status);
    CHECK(strstr(message, "float64") != NULL, "message: %s", message);
    CHECK(fake.calls == 0 && all_bytes(&y64, SENTINEL) && store[0] == -1.0f && store[1] == -1.0f,
          "float64 instance norm: nothing run or written");
    release(&x64);
    release(&y64);

    buffer x = make(NCHW, MPSNORM_FLOAT32, 1, 2, 6, 6, 0);
    buffer y = make(NCHW, MPSNORM_FLOAT32, 1, 2, 6, 6, SENTINEL);
    p = lcn_params(3, 5);
    fake_reset();
    message[0] = '\0';
    status = route_lcn(ENGINE, &p, NULL, &x.t, &y.t, message, sizeof message);
    CHECK(status == MPSNORM_ERR_UNSUPPORTED, "3x5 LCN: status %d", status);
    CHECK(strstr(message, "kernelWidth must be equal to kernelHeight") != NULL, "message: %s", message);
    CHECK(fake.calls == 0 && all_bytes(&y, SENTINEL), "3x5: nothing run or written");
    status = mpsnorm_metal_supports_lcn(&p, &x.t, message, sizeof message);
    CHECK(status == MPSNORM_ERR_UNSUPPORTED, "supports_lcn 3x5: %d", status);
    p = lcn_params(5, 5);
    CHECK(mpsnorm_metal_supports_lcn(&p, &x.t, message, sizeof message) == MPSNORM_OK, "5x5 float32");
    CHECK(mpsnorm_metal_supports_inorm(&ip, &x.t, message, sizeof message) == MPSNORM_OK, "inorm float32");

    /* The device's limits: one image of 1 slice x 6 x 6 float32 RGBA texels = 576
     * bytes; an LCN forward needs 4 such (two textures, two staging buffers). */
    p = lcn_params(3, 3);
    fake_reset();
    fake.max_buffer = 575;
    status = route_lcn(ENGINE, &p, NULL, &x.t, &y.t, message, sizeof message);
    CHECK(status == MPSNORM_ERR_UNSUPPORTED && strstr(message, "maxBufferLength") != NULL,
          "image over maxBufferLength: status %d (%s)", status, message);
    fake_reset();
    fake.working_set = 2 * 4 * 576 - 1;
    status = route_lcn(ENGINE, &p, NULL, &x.t, &y.t, message, sizeof message);
    CHECK(status == MPSNORM_ERR_UNSUPPORTED &&
              strstr(message, "recommendedMaxWorkingSetSize") != NULL,
          "image over half the working set: status %d (%s)", status, message);
    CHECK(fake.calls == 0 && all_bytes(&y, SENTINEL), "too large: nothing run or written");
    fake_reset();
    fake.max_buffer = 576;
    fake.working_set = 2 * 4 * 576;
    status = route_lcn(ENGINE, &p, NULL, &x.t, &y.t, message, sizeof message);
    CHECK(status == MPSNORM_OK && fake.calls == 1, "at the limits: status %d (%s)", status,
          message);
    release(&x);
    release(&y);

    /* Sizes an MPS image cannot hold (only the shape is read). */
    mpsnorm_tensor big;
    memset(&big, 0, sizeof big);
    big.dtype = MPSNORM_FLOAT16;
    int64_t shapes[4][4] = {{1, 1, 1, 16385}, {1, 1, 16385, 1}, {1, 8193, 1, 1}, {1, 8192, 16384, 16384}};
    int expected[4] = {MPSNORM_ERR_UNSUPPORTED, MPSNORM_ERR_UNSUPPORTED, MPSNORM_ERR_UNSUPPORTED, MPSNORM_OK};
    for (int i = 0; i < 4; i++) {
        memcpy(big.shape, shapes[i], sizeof big.shape);
        message[0] = '\0';
        status = mpsnorm_metal_supports_inorm(&ip, &big, message, sizeof message);
        CHECK(status == expected[i], "shape %d: status %d (%s)", i, status, message);
        status = mpsnorm_metal_supports_lcn(&p, &big, message, sizeof message);
        CHECK(status == expected[i], "LCN shape %d: status %d (%s)", i, status, message);
    }
}

/* A small call goes to the CPU when the engine may choose, not when it is Metal's. */
static void test_small_calls(void)
{
    buffer x = make(NCHW, MPSNORM_FLOAT32, 1, 4, 8, 8, 0); /* 1 KiB */
    buffer y = make(NCHW, MPSNORM_FLOAT32, 1, 4, 8, 8, SENTINEL);
    fill_input(&x, 0);
    mpsnorm_lcn_params p = lcn_params(3, 3);
    char message[MPSNORM_MESSAGE_SIZE] = "";
    fake_reset();
    mpsnorm_metal_route_set_min_call_bytes(1024 + 1);
    int status = route_lcn(ENGINE, &p, NULL, &x.t, &y.t, message, sizeof message);
    CHECK(status == MPSNORM_ERR_UNSUPPORTED && notice == 0 &&
              strstr(message, "runs faster on the CPU") != NULL,
          "small, AUTO: status %d (%s)", status, message);
    CHECK(fake.calls == 0 && all_bytes(&y, SENTINEL), "nothing staged or written");
    may_fall_back = 0;
    status = route_lcn(ENGINE, &p, NULL, &x.t, &y.t, message, sizeof message);
    CHECK(status == MPSNORM_OK && fake.calls == 1, "small, METAL: status %d", status);
    may_fall_back = 1;
    mpsnorm_metal_route_set_min_call_bytes(1024);
    status = route_lcn(ENGINE, &p, NULL, &x.t, &y.t, message, sizeof message);
    CHECK(status == MPSNORM_OK && fake.calls == 2, "at the threshold, AUTO: status %d", status);
    release(&x);
    release(&y);
}

/* A failing backend: the output and the vectors untouched, its message returned,
 * no timing; a successful call carries the backend's timing. */
static void test_backend_failure(void)
{
    buffer dy = make(NCHW, MPSNORM_FLOAT32, 2, 3, 4, 4, 0);
    buffer x = make(NCHW, MPSNORM_FLOAT32, 2, 3, 4, 4, 0);
    buffer dx = make(STRIDED, MPSNORM_FLOAT32, 2, 3, 4, 4, SENTINEL);
    fill_input(&dy, 1);
    fill_input(&x, 0);
    float store[3] = {-1.0f, -1.0f, -1.0f};
    mpsnorm_vector dgamma = {store, MPSNORM_FLOAT32, 3, 1};
    mpsnorm_inorm_params ip = inorm_params(3);
    mpsnorm_lcn_params p = lcn_params(3, 3);
    char message[MPSNORM_MESSAGE_SIZE] = "";
    fake_reset();
    fake.fail = 1;
    int status = route_instance_norm(ENGINE, &ip, &dy.t, &x.t, &dx.t, &dgamma, NULL, message,
                                     sizeof message);
    CHECK(status == MPSNORM_ERR_BACKEND_FAILURE, "status %d", status);
    CHECK(strcmp(message, FAKE_MESSAGE) == 0, "message: %s", message);
    CHECK(all_bytes(&dx, SENTINEL), "dx untouched");
    CHECK(timing.staging_seconds == 0.0 && timing.gpu_seconds == 0.0,
          "a failed call's timing: %g, %g", timing.staging_seconds, timing.gpu_seconds);
    CHECK(store[0] == -1.0f && store[1] == -1.0f && store[2] == -1.0f, "dgamma untouched");

    fake_reset();
    fake.fail = 1;
    message[0] = '\0';
    status = route_lcn(ENGINE, &p, NULL, &x.t, &dx.t, message, sizeof message);
    CHECK(status == MPSNORM_ERR_BACKEND_FAILURE && strcmp(message, FAKE_MESSAGE) == 0,
          "LCN forward: status %d, message %s", status, message);
    CHECK(all_bytes(&dx, SENTINEL), "y untouched");
    /* a failure is no refusal: the next call runs on Metal */
    fake.fail = 0;
    status = route_lcn(ENGINE, &p, NULL, &x.t, &dx.t, message, sizeof message);
    CHECK(status == MPSNORM_OK && fake.calls == 2, "after a failure: status %d", status);
    CHECK(timing.staging_seconds == 0.25 && timing.gpu_seconds == 0.5,
          "the backend's timing: %g, %g", timing.staging_seconds, timing.gpu_seconds);
    /* refused before the backend: no timing left from the call before */
    mpsnorm_lcn_params unequal = lcn_params(3, 5);
    status = route_lcn(ENGINE, &unequal, NULL, &x.t, &dx.t, message, sizeof message);
    CHECK(status == MPSNORM_ERR_UNSUPPORTED && timing.staging_seconds == 0.0 &&
              timing.gpu_seconds == 0.0,
          "a refused call: status %d, timing %g, %g", status, timing.staging_seconds,
          timing.gpu_seconds);
    release(&dy);
    release(&x);
    release(&dx);
}

/* Per-image gamma/beta gradients that cannot be had: OUT_OF_MEMORY, nothing run. */
static void test_out_of_memory(void)
{
    /* Inputs with zero strides may be huge; 2^42 images' gradients cannot be. */
    float dy_store = 1.0f, x_store = 2.0f, dx_store = 7.0f, dgamma_store[4] = {-1, -1, -1, -1};
    mpsnorm_tensor dy = {&dy_store, MPSNORM_FLOAT32, {(int64_t)1 << 42, 4, 1, 1}, {0, 0, 0, 0}};
    mpsnorm_tensor x = dy, dx = dy;
    x.data = &x_store;
    dx.data = &dx_store;
    mpsnorm_vector dgamma = {dgamma_store, MPSNORM_FLOAT32, 4, 1};
    mpsnorm_inorm_params p = inorm_params(4);
    char message[MPSNORM_MESSAGE_SIZE] = "";
    fake_reset();
    int status = route_instance_norm(ENGINE, &p, &dy, &x, &dx, &dgamma, NULL, message,
                                     sizeof message);
    CHECK(status == MPSNORM_ERR_OUT_OF_MEMORY, "status %d (%s)", status, message);
    CHECK(strstr(message, "gamma/beta") != NULL, "message: %s", message);
    CHECK(fake.calls == 0 && dx_store == 7.0f && dgamma_store[0] == -1.0f,
          "nothing run or written");
}

static void test_no_cache(void)
{
    buffer x = make(NCHW, MPSNORM_FLOAT32, 1, 1, 2, 2, 0);
    buffer y = make(NCHW, MPSNORM_FLOAT32, 1, 1, 2, 2, SENTINEL);
    mpsnorm_lcn_params p = lcn_params(1, 1);
    char message[MPSNORM_MESSAGE_SIZE] = "";
    fake_reset();
    int status = route_lcn(NULL, &p, NULL, &x.t, &y.t, message, sizeof message);
    CHECK(status == MPSNORM_ERR_BACKEND_UNAVAILABLE, "status %d", status);
    CHECK(fake.calls == 0 && all_bytes(&y, SENTINEL), "nothing run or written");
    release(&x);
    release(&y);
}

/* ---- the self-check -------------------------------------------------------- */

/* The verdict of the class (kernel, float32/float16, order, even, alpha != 0, dgamma/dbeta). */
static mpsnorm_metal_check verdict_of(int kernel, int dtype, int nhwc, int even, int alpha,
                                      int parameter_gradients)
{
    mpsnorm_metal_check check;
    memset(&check, 0, sizeof check);
    check.verdict = -1;
    for (int i = 0; i < mpsnorm_metal_check_count(); i++) {
        mpsnorm_metal_check candidate;
        mpsnorm_metal_check_get(i, &candidate);
        if (candidate.kernel == kernel && candidate.dtype == dtype && candidate.nhwc == nhwc &&
            candidate.even_window == even && candidate.alpha_nonzero == alpha &&
            candidate.parameter_gradients == parameter_gradients)
            return candidate;
    }
    return check;
}

/* Whether out holds the CPU backend's LCN forward of x (bit for bit). */
static int holds_cpu_forward(const mpsnorm_lcn_params *p, const buffer *x, const buffer *out)
{
    buffer want = make(NCHW, MPSNORM_FLOAT32, x->t.shape[0], x->t.shape[1], x->t.shape[2],
                       x->t.shape[3], 0);
    mpsnorm_checked cx = checked_tensor(&x->t, "x"), cwant = checked_tensor(&want.t, "y");
    int same = mpsnorm_cpu_lcn_forward(p, &cx, &cwant) == MPSNORM_OK &&
               memcmp(want.base, out->base, want.bytes) == 0;
    release(&want);
    return same;
}

/* A class whose Metal answer is right passes and runs on Metal; one whose answer is
 * wrong fails once, with a notice, and is never staged for Metal again. */
static void test_selfcheck_catches_the_mirrored_even_window(void)
{
    buffer x = make(NCHW, MPSNORM_FLOAT32, 2, 3, 6, 7, 0);
    buffer y = make(NCHW, MPSNORM_FLOAT32, 2, 3, 6, 7, SENTINEL);
    fill_input(&x, 0);
    mpsnorm_lcn_params odd = lcn_params(3, 3), even = lcn_params(2, 2);
    char message[MPSNORM_MESSAGE_SIZE] = "";
    mpsnorm_metal_selfcheck_reset(1);
    fake_reset();
    fake.answer = ANSWER_MIRRORED_EVEN;

    int status = route_lcn(ENGINE, &odd, NULL, &x.t, &y.t, message, sizeof message);
    CHECK(status == MPSNORM_OK && notice == 0, "odd window: status %d (%s)", status, message);
    CHECK(fake.calls == 2, "the self-check and the call ran on Metal: %d calls", fake.calls);
    CHECK(holds_cpu_forward(&odd, &x, &y), "y is Metal's (here the CPU's) answer");
    mpsnorm_metal_check v = verdict_of(MPSNORM_KERNEL_LCN_FORWARD, MPSNORM_FLOAT32, 0, 0, 1, 0);
    CHECK(v.verdict == MPSNORM_METAL_PASSED && v.error < 1e-6 && v.tolerance == 1e-4,
          "odd verdict %d, error %g", v.verdict, v.error);
    status = route_lcn(ENGINE, &odd, NULL, &x.t, &y.t, message, sizeof message);
    CHECK(status == MPSNORM_OK && fake.calls == 3, "checked once: %d calls", fake.calls);

    memset(y.base, SENTINEL, y.bytes);
    fake.calls = 0;
    status = route_lcn(ENGINE, &even, NULL, &x.t, &y.t, message, sizeof message);
    CHECK(status == MPSNORM_ERR_UNSUPPORTED && notice == 1, "even window: status %d notice %d",
          status, notice);
    CHECK(strstr(message, "self-check of LCN forward, float32, NCHW, even window, alpha != 0 "
                          "failed") != NULL && strstr(message, "from now on") != NULL,
          "notice: %s", message);
    CHECK(fake.calls == 1 && all_bytes(&y, SENTINEL), "only the self-check ran; y untouched");
    v = verdict_of(MPSNORM_KERNEL_LCN_FORWARD, MPSNORM_FLOAT32, 0, 1, 1, 0);
    CHECK(v.verdict == MPSNORM_METAL_FAILED && v.error > 1e-2, "even verdict %d, error %g",
          v.verdict, v.error);
    status = route_lcn(ENGINE, &even, NULL, &x.t, &y.t, message, sizeof message);
    CHECK(status == MPSNORM_ERR_UNSUPPORTED && notice == 0 && fake.calls == 1,
          "later calls fall back silently, nothing staged: status %d notice %d calls %d", status,
          notice, fake.calls);
    may_fall_back = 0;
    status = route_lcn(ENGINE, &even, NULL, &x.t, &y.t, message, sizeof message);
    may_fall_back = 1;
    CHECK(status == MPSNORM_ERR_BACKEND_FAILURE && strstr(message, "self-check") != NULL &&
              strstr(message, "from now on") == NULL,
          "Metal-only engine: status %d (%s)", status, message);
    CHECK(fake.calls == 1 && all_bytes(&y, SENTINEL), "nothing run or written");
    release(&x);
    release(&y);
}

/* The LCN gradient without its alpha term is caught where alpha != 0, and only there. */
static void test_selfcheck_catches_the_alpha_term(void)
{
    buffer dy = make(NHWC, MPSNORM_FLOAT16, 2, 5, 4, 6, 0);
    buffer x = make(NHWC, MPSNORM_FLOAT16, 2, 5, 4, 6, 0);
    buffer dx = make(NHWC, MPSNORM_FLOAT16, 2, 5, 4, 6, SENTINEL);
    for (int64_t i = 0; i < 2 * 5 * 4 * 6; i++) {
        ((uint16_t *)dy.base)[i] = (uint16_t)(0x3000 + (i * 37) % 0x0c00); /* 0.125 .. 1 */
        ((uint16_t *)x.base)[i] = (uint16_t)(0x4000 + (i * 53) % 0x0c00);  /* 2 .. 16 */
    }
    mpsnorm_lcn_params p = lcn_params(3, 3);
    char message[MPSNORM_MESSAGE_SIZE] = "";
    p.alpha = 0.0f;
    mpsnorm_metal_selfcheck_reset(1);
    fake_reset();
    fake.answer = ANSWER_NO_ALPHA_GRADIENT;
    int status = route_lcn(ENGINE, &p, &dy.t, &x.t, &dx.t, message, sizeof message);
    CHECK(status == MPSNORM_OK, "alpha = 0: status %d (%s)", status, message);
    p.alpha = 1.0f;
    status = route_lcn(ENGINE, &p, &dy.t, &x.t, &dx.t, message, sizeof message);
    CHECK(status == MPSNORM_ERR_UNSUPPORTED && notice == 1 &&
              strstr(message, "LCN gradient, float16, NHWC, odd window, alpha != 0") != NULL,
          "alpha = 1: status %d (%s)", status, message);
    CHECK(verdict_of(MPSNORM_KERNEL_LCN_GRADIENT, MPSNORM_FLOAT16, 1, 0, 0, 0).verdict ==
              MPSNORM_METAL_PASSED &&
          verdict_of(MPSNORM_KERNEL_LCN_GRADIENT, MPSNORM_FLOAT16, 1, 0, 1, 0).verdict ==
              MPSNORM_METAL_FAILED, "verdicts");
    release(&dy);
    release(&x);
    release(&dx);
}

/* The LCN gradient runs without its forward pass where the self-check found that
 * right, and with it where the gradient needs the states the forward fills. */
static void test_selfcheck_decides_the_forward_pass(void)
{
    buffer dy = make(NCHW, MPSNORM_FLOAT32, 2, 3, 6, 7, 0);
    buffer x = make(NCHW, MPSNORM_FLOAT32, 2, 3, 6, 7, 0);
    buffer dx = make(NCHW, MPSNORM_FLOAT32, 2, 3, 6, 7, SENTINEL);
    fill_input(&dy, 3);
    fill_input(&x, 0);
    mpsnorm_lcn_params p = lcn_params(3, 3);
    char message[MPSNORM_MESSAGE_SIZE] = "";
    for (int needs_forward = 0; needs_forward < 2; needs_forward++) {
        mpsnorm_metal_selfcheck_reset(1);
        fake_reset();
        fake.answer = needs_forward ? ANSWER_NEEDS_FORWARD : ANSWER_CPU;
        int status = route_lcn(ENGINE, &p, &dy.t, &x.t, &dx.t, message, sizeof message);
        CHECK(status == MPSNORM_OK && notice == 0, "status %d (%s)", status, message);
        mpsnorm_metal_check v = verdict_of(MPSNORM_KERNEL_LCN_GRADIENT, MPSNORM_FLOAT32, 0, 0,
                                           1, 0);
        CHECK(v.verdict == MPSNORM_METAL_PASSED && v.gradient_alone == !needs_forward,
              "needs_forward %d: verdict %d, alone %d", needs_forward, v.verdict,
              v.gradient_alone);
        CHECK(fake.with_forward == needs_forward, "needs_forward %d: the call's forward pass %d",
              needs_forward, fake.with_forward);
        CHECK(fake.calls == (needs_forward ? 3 : 2), "the check's runs and the call: %d",
              fake.calls);
    }
    release(&dy);
    release(&x);
    release(&dx);
}

/* Instance norm with dgamma/dbeta: the per-image values, summed, pass; UNSUPPORTED is a
 * verdict too, found by the check (for the process) or by a call (for the engine),
 * after which nothing is staged. */
static void test_selfcheck_unsupported_is_remembered(void)
{
    buffer dy = make(NCHW, MPSNORM_FLOAT32, 3, 4, 5, 6, 0);
    buffer x = make(NCHW, MPSNORM_FLOAT32, 3, 4, 5, 6, 0);
    buffer dx = make(NCHW, MPSNORM_FLOAT32, 3, 4, 5, 6, SENTINEL);
    fill_input(&dy, 1);
    fill_input(&x, 0);
    float gamma_store[4], beta_store[4];
    mpsnorm_vector dgamma = {gamma_store, MPSNORM_FLOAT32, 4, 1};
    mpsnorm_vector dbeta = {beta_store, MPSNORM_FLOAT32, 4, 1};
    mpsnorm_inorm_params p = inorm_params(4);
    char message[MPSNORM_MESSAGE_SIZE] = "";
    mpsnorm_metal_selfcheck_reset(1);
    fake_reset();
    fake.answer = ANSWER_CPU;
    int status = route_instance_norm(ENGINE, &p, &dy.t, &x.t, &dx.t, &dgamma, &dbeta, message,
                                     sizeof message);
    CHECK(status == MPSNORM_OK && fake.calls == 2, "status %d (%s), %d calls", status, message,
          fake.calls);
    mpsnorm_metal_check v = verdict_of(MPSNORM_KERNEL_INORM_GRADIENT, MPSNORM_FLOAT32, 0, 0, 0, 1);
    CHECK(v.verdict == MPSNORM_METAL_PASSED && v.error < 1e-5, "verdict %d error %g", v.verdict,
          v.error);

    fake.answer = ANSWER_UNSUPPORTED;
    fake.calls = 0;
    status = route_instance_norm(ENGINE, &p, NULL, &x.t, &dx.t, NULL, NULL, message, sizeof message);
    CHECK(status == MPSNORM_ERR_UNSUPPORTED && notice == 0 && strstr(message, "fake MPS") != NULL,
          "found by the check: status %d (%s)", status, message);
    status = route_instance_norm(ENGINE, &p, NULL, &x.t, &dx.t, NULL, NULL, message, sizeof message);
    CHECK(status == MPSNORM_ERR_UNSUPPORTED && fake.calls == 1, "not asked again: %d calls",
          fake.calls);
    CHECK(verdict_of(MPSNORM_KERNEL_INORM_FORWARD, MPSNORM_FLOAT32, 0, 0, 0, 0).verdict ==
              MPSNORM_METAL_UNSUPPORTED, "forward verdict");

    mpsnorm_metal_selfcheck_reset(0); /* MPSNORM_METAL_SELFCHECK=0: trusted, found by a call */
    fake.calls = 0;
    status = route_instance_norm(ENGINE, &p, &dy.t, &x.t, &dx.t, NULL, NULL, message, sizeof message);
    CHECK(status == MPSNORM_ERR_UNSUPPORTED && fake.calls == 1, "the call: status %d, %d calls",
          status, fake.calls);
    status = route_instance_norm(ENGINE, &p, &dy.t, &x.t, &dx.t, NULL, NULL, message, sizeof message);
    CHECK(status == MPSNORM_ERR_UNSUPPORTED && fake.calls == 1 &&
              strstr(message, "fake MPS") != NULL,
          "the next call is refused before staging: %d calls (%s)", fake.calls, message);
    mpsnorm_metal_binding *other;
    CHECK(mpsnorm_metal_binding_create(&other) == MPSNORM_OK, "another engine");
    fake.answer = ANSWER_CPU;
    status = route_instance_norm(other, &p, &dy.t, &x.t, &dx.t, NULL, NULL, message,
                                 sizeof message);
    CHECK(status == MPSNORM_OK && fake.calls == 2, "another engine asks Metal again: %d (%s)",
          status, message);
    mpsnorm_metal_binding_free(other);
    status = route_instance_norm(ENGINE, &p, NULL, &x.t, &dx.t, NULL, NULL, message, sizeof message);
    CHECK(status == MPSNORM_OK && fake.calls == 3, "another class, trusted without a check");
    CHECK(verdict_of(MPSNORM_KERNEL_INORM_FORWARD, MPSNORM_FLOAT32, 0, 0, 0, 0).verdict ==
              MPSNORM_METAL_TRUSTED, "trusted verdict");
    release(&dy);
    release(&x);
    release(&dx);
}

int main(void)
{
    static const struct {
        const char *name;
        void (*run)(void);
    } tests[] = {
        {"staging_round_trips", test_staging_round_trips},
        {"lcn_forward_forms", test_lcn_forward_forms},
        {"lcn_gradient_roles", test_lcn_gradient_roles},
        {"inorm_gradient_sums", test_inorm_gradient_sums},
        {"refusals", test_refusals},
        {"small_calls", test_small_calls},
        {"backend_failure", test_backend_failure},
        {"out_of_memory", test_out_of_memory},
        {"no_cache", test_no_cache},
        {"selfcheck_catches_the_mirrored_even_window",
         test_selfcheck_catches_the_mirrored_even_window},
        {"selfcheck_catches_the_alpha_term", test_selfcheck_catches_the_alpha_term},
        {"selfcheck_decides_the_forward_pass", test_selfcheck_decides_the_forward_pass},
        {"selfcheck_unsupported_is_remembered", test_selfcheck_unsupported_is_remembered},
    };
    int passed = 0, failed = 0;
    for (size_t i = 0; i < sizeof tests / sizeof tests[0]; i++) {
        checks_failed_in_test = 0;
        mpsnorm_metal_selfcheck_reset(0); /* the fake's codes are trusted, unless a test checks */
        mpsnorm_metal_route_set_min_call_bytes(0); /* the tests' tensors are small */
        may_fall_back = 1;
        fake_reset();
        if (mpsnorm_metal_binding_create(&ENGINE) != MPSNORM_OK)
            return 2;
        tests[i].run();
        mpsnorm_metal_binding_free(ENGINE);
        if (checks_failed_in_test == 0) {
            passed++;
            printf("ok   %s\n", tests[i].name);
        } else {
            failed++;
            printf("FAIL %s (%d checks)\n", tests[i].name, checks_failed_in_test);
        }
    }
    fake_reset();
    printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
