/*
 * c_abi_fuzzer.c -- libFuzzer harness of mpsnorm's public C ABI (mpsnorm.h).
 *
 * Each input is decoded into one call: a kernel (LCN forward/gradient, instance norm
 * forward/gradient) or one of the small ABI functions, with parameters, tensor descriptors
 * (dtype, shape, strides: contiguous, NHWC, arbitrary or extreme values) and gamma/beta
 * gradient vectors, whose data pointers are placed by the harness:
 *   - in a buffer of their own, malloc'ed to exactly the span the descriptor claims (so
 *     AddressSanitizer reports any access outside it), possibly one byte off alignment;
 *   - at decoded offsets in one shared arena (so outputs overlap inputs and each other);
 *   - NULL, or a wild pointer for empty tensors (which must never be dereferenced);
 * or, when the span overflows the address space, anywhere (the library must refuse it).
 *
 * After the call the harness checks, with its own model of the header's rules:
 *   - the status is 0 or one of the documented codes; with a report, a failure has a
 *     non-empty NUL-terminated message and backend_used is CPU or METAL;
 *   - a failing call changed no byte of any buffer ("a failing call writes nothing");
 *   - a successful call was valid by the model (dtypes, shapes, channel count, parameter
 *     ranges, alignment, address space, outputs distinct and disjoint from inputs) and
 *     wrote no byte outside the output elements;
 *   - a plainly valid call (contiguous outputs, own buffers) succeeded (or ran out of
 *     memory).
 * Any violation aborts, which libFuzzer reports as a crash with the input saved.
 *
 * Build (fuzz/run.py does this):
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
 *         -Impsnorm/include fuzz/c_abi_fuzzer.c mpsnorm/core/\*.c mpsnorm/cpu/\*.c -lm -pthread
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mpsnorm.h"

#define ARENA_BYTES ((size_t)1 << 18)
#define OWN_LIMIT ((size_t)1 << 20)
#define ENUMERATE_LIMIT ((int64_t)1 << 16)
#define MAX_GAMMA 64

static void fail(const char *what, int status)
{
    fprintf(stderr, "c_abi_fuzzer: %s (status %d: %s)\n", what, status,
            mpsnorm_status_string(status));
    abort();
}

/* A fixed byte pattern, copied (not computed per byte) into every buffer: the harness's own
 * loops would otherwise dominate the run time under coverage instrumentation. */
static unsigned char *pattern(void)
{
    static unsigned char *bytes;
    if (bytes == NULL) {
        bytes = malloc(OWN_LIMIT + 8);
        if (bytes == NULL)
            abort();
        for (size_t i = 0; i < OWN_LIMIT + 8; i++)
            bytes[i] = (unsigned char)(i * 131 + 7);
    }
    return bytes;
}

/* ---- input decoding --------------------------------------------------------------------- */

typedef struct reader {
    const uint8_t *data;
    size_t size, pos;
} reader;

static uint8_t u8(reader *r) { return r->pos < r->size ? r->data[r->pos++] : 0; }

static uint32_t u32(reader *r)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++)
        v = v << 8 | u8(r);
    return v;
}

static uint64_t u64(reader *r) { return (uint64_t)u32(r) << 32 | u32(r); }

/* Sizes and strides: mostly small, sometimes the values that break arithmetic. */
static int64_t extreme(reader *r)
{
    switch (u8(r) % 14) {
    case 0: return -1;
    case 1: return INT64_MIN;
    case 2: return INT64_MAX;
    case 3: return (int64_t)1 << 31;
    case 4: return ((int64_t)1 << 32) + 1;
    case 5: return (int64_t)1 << 62;
    case 6: return MPSNORM_MAX_KERNEL_SIZE;
    case 7: return MPSNORM_MAX_KERNEL_SIZE + 1;
    case 8: return -(int64_t)u8(r);
    case 9: return (int64_t)3037000500; /* just above sqrt(2^63) */
    case 10: return -((int64_t)1 << 62);
    case 11: return ((int64_t)1 << 61) + 7;
    default: return (int64_t)u64(r);
    }
}

static int64_t size_value(reader *r)
{
    uint8_t selector = u8(r);
    return selector < 232 ? selector % 9 : extreme(r);
}

static int64_t stride_value(reader *r)
{
    uint8_t selector = u8(r);
    return selector < 232 ? (int64_t)(selector % 33) - 16 : extreme(r);
}

static float float_value(reader *r)
{
    static const float table[] = {0.0f, 0.5f, 1.0f, 2.0f, -1.0f, 1.0f / 1024.0f, 1e-3f, 0.25f,
                                  3.0f, -0.5f, 1e-5f, 10.0f};
    uint8_t selector = u8(r);
    if (selector < 224)
        return table[selector % (sizeof table / sizeof table[0])];
    uint32_t bits = u32(r); /* anything: NaN, infinities, subnormals, -0 */
    float value;
    memcpy(&value, &bits, sizeof value);
    return value;
}

/* ---- descriptors and their memory --------------------------------------------------------- */

enum { PLACE_OWN, PLACE_ARENA, PLACE_ALIAS, PLACE_NULL };

typedef struct spec {
    int present;           /* 0: NULL descriptor */
    mpsnorm_tensor t;
    int plain;             /* C-contiguous or NHWC strides, own buffer, aligned */
    unsigned char *own;    /* malloc'ed buffer (own placement) */
    size_t own_bytes;
    unsigned char *start, *end; /* the allocation the data lies in (NULL: none) */
} spec;

static size_t item_size(int32_t dtype)
{
    return dtype == MPSNORM_FLOAT32 ? 4 : dtype == MPSNORM_FLOAT16 ? 2 : dtype == MPSNORM_FLOAT64 ? 8 : 0;
}

/* Product of the shape as the header defines it, or -1 (negative size / overflow). */
static int64_t model_count(const mpsnorm_tensor *t)
{
    int64_t count = 1;
    for (int axis = 0; axis < 4; axis++) {
        int64_t extent = t->shape[axis];
        if (extent < 0)
            return -1;
        if (extent != 0 && count > INT64_MAX / extent)
            return -1;
        count *= extent;
    }
    return count;
}

/* Element offsets below / above data, in 128 bits, each axis's reach saturated at 2^100
 * (far beyond any address space), so no sum or product here can overflow. */
static void model_reach(const mpsnorm_tensor *t, __int128 *below, __int128 *above)
{
    const __int128 saturated = (__int128)1 << 100;
    *below = *above = 0;
    for (int axis = 0; axis < 4; axis++) {
        if (t->shape[axis] <= 1)
            continue;
        __int128 reach = (__int128)(t->shape[axis] - 1) * (__int128)t->strides[axis];
        if (reach > saturated)
            reach = saturated;
        if (reach < -saturated)
            reach = -saturated;
        if (reach < 0)
            *below -= reach;
        else
            *above += reach;
    }
}

/* Element offset of (n, c, h, w), for descriptors already known to be addressable. */
static __int128 element_offset(const mpsnorm_tensor *t, int64_t n, int64_t c, int64_t h, int64_t w)
{
    return (__int128)n * t->strides[0] + (__int128)c * t->strides[1] +
           (__int128)h * t->strides[2] + (__int128)w * t->strides[3];
}

/* Whether [data - below*item, data + (above+1)*item) lies in the address space. */
static int model_addressable(const mpsnorm_tensor *t)
{
    size_t item = item_size(t->dtype);
    __int128 below, above;
    model_reach(t, &below, &above);
    __int128 base = (__int128)(uintptr_t)t->data;
    return base - below * (__int128)item >= 0 &&
           base + (above + 1) * (__int128)item - 1 <= (__int128)UINTPTR_MAX;
}

static void decode_strides(reader *r, mpsnorm_tensor *t, int *plain)
{
    int mode = u8(r) % 5;
    int64_t c = t->shape[1], h = t->shape[2], w = t->shape[3];
    *plain = 0;
    if ((mode == 0 || mode == 1) && model_count(t) > 0 && model_count(t) <= ((int64_t)1 << 40)) {
        if (mode == 0) { /* NCHW contiguous */
            t->strides[3] = 1; t->strides[2] = w; t->strides[1] = h * w; t->strides[0] = c * h * w;
        } else {         /* NHWC memory */
            t->strides[1] = 1; t->strides[3] = c; t->strides[2] = w * c; t->strides[0] = h * w * c;
        }
        *plain = 1;
        return;
    }
    if (mode == 2 && model_count(t) > 0 && model_count(t) <= ((int64_t)1 << 40)) {
        /* contiguous, then some axes reversed or padded */
        int64_t step = 1;
        for (int axis = 3; axis >= 0; axis--) {
            uint8_t how = u8(r);
            int64_t pad = 1 + how % 3;
            t->strides[axis] = (how & 0x80) ? -step * pad : step * pad;
            step *= t->shape[axis] * pad;
        }
        return;
    }
    for (int axis = 0; axis < 4; axis++)
        t->strides[axis] = stride_value(r);
}

static void decode_tensor(reader *r, spec *s, const spec *like)
{
    memset(s, 0, sizeof *s);
    uint8_t how = u8(r);
    s->present = how % 16 != 15;
    if (!s->present)
        return;
    if (like != NULL && like->present && (how & 0x10) == 0) {
        s->t.dtype = like->t.dtype;
        memcpy(s->t.shape, like->t.shape, sizeof s->t.shape);
    } else {
        uint8_t dtype = u8(r);
        s->t.dtype = dtype < 240 ? dtype % 3 : (int32_t)u32(r);
        for (int axis = 0; axis < 4; axis++)
            s->t.shape[axis] = size_value(r);
    }
    decode_strides(r, &s->t, &s->plain);
}

/* Places a descriptor's data. Returns 0 if the call cannot be made safely. */
/* Places descriptor s; earlier[0..nearlier) are placed already (ALIAS puts s's data a few
 * elements from one of theirs, inside the same allocation: overlapping memory). */
static int place(reader *r, spec *s, unsigned char *arena, spec **earlier, int nearlier)
{
    if (!s->present)
        return 1;
    mpsnorm_tensor *t = &s->t;
    uint8_t how = u8(r);
    static const int modes[8] = {PLACE_OWN, PLACE_OWN, PLACE_OWN, PLACE_ARENA, PLACE_ARENA,
                                 PLACE_ALIAS, PLACE_ALIAS, PLACE_NULL};
    int mode = modes[how % 8];
    int misaligned = (how & 0x40) != 0;
    size_t item = item_size(t->dtype);
    int64_t count = model_count(t);
    if (item == 0 || count <= 0) {
        /* unknown dtype or empty or invalid shape: must never be dereferenced */
        t->data = mode == PLACE_NULL ? NULL : (void *)(uintptr_t)(16 * (1 + (how >> 3)));
        s->plain = s->plain && count == 0 && item != 0;
        return 1;
    }
    if (mode == PLACE_NULL) {
        t->data = NULL;
        s->plain = 0;
        return 1;
    }
    __int128 below, above;
    model_reach(t, &below, &above);
    __int128 span = (below + above + 1) * (__int128)item;
    if (span > (__int128)OWN_LIMIT) {
        /* too large to back with memory: the library must refuse it for some reason */
        t->data = arena + 64;
        s->plain = 0;
        return !model_addressable(t) ? 1 : 0;
    }
    size_t low = (size_t)(below * (__int128)item);
    if (mode == PLACE_ALIAS && nearlier > 0) {
        spec *target = earlier[u8(r) % nearlier];
        int64_t delta = (int8_t)u8(r);
        if (target->present && target->start != NULL && target->t.data != NULL) {
            __int128 data = (__int128)(uintptr_t)target->t.data + delta * (__int128)item;
            __int128 first = data - (__int128)low, last = first + span;
            if (first >= (__int128)(uintptr_t)target->start &&
                last <= (__int128)(uintptr_t)target->end) {
                t->data = (void *)(uintptr_t)data;
                s->start = target->start;
                s->end = target->end;
                s->plain = 0;
                return 1;
            }
        }
        mode = PLACE_ARENA;
    }
    if (mode == PLACE_ARENA && (size_t)span + item <= ARENA_BYTES) {
        size_t room = ARENA_BYTES - (size_t)span - item;
        size_t offset = (size_t)u32(r) % (room + 1);
        offset -= offset % item;
        t->data = arena + low + offset + (misaligned ? 1 : 0);
        s->start = arena;
        s->end = arena + ARENA_BYTES;
        s->plain = 0;
        return 1;
    }
    s->own_bytes = (size_t)span + (misaligned ? 1 : 0);
    s->own = malloc(s->own_bytes);
    if (s->own == NULL)
        return 0;
    memcpy(s->own, pattern() + 1, s->own_bytes);
    t->data = s->own + low + (misaligned ? 1 : 0);
    s->start = s->own;
    s->end = s->own + s->own_bytes;
    s->plain = s->plain && !misaligned;
    return 1;
}

/* Finite values of each dtype, made once and copied: per-element loops in the harness would
 * dominate the run time under coverage instrumentation. */
static const unsigned char *finite_values(size_t item)
{
    static unsigned char *tables[9];
    if (tables[item] == NULL) {
        unsigned char *table = malloc(OWN_LIMIT + 8);
        if (table == NULL)
            abort();
        for (size_t i = 0; i + item <= OWN_LIMIT + 8; i += item) {
            double value = (double)((i / item) % 13) / 8.0 - 0.75;
            float single = (float)value;
            uint16_t half = (uint16_t)(0x3800 + (i / item) % 200); /* 0.5 .. ~0.6 */
            memcpy(table + i, item == 4 ? (void *)&single : item == 8 ? (void *)&value
                                                                      : (void *)&half, item);
        }
        tables[item] = table;
    }
    return tables[item];
}

/* Fills float data with finite values (or leaves the raw pattern, which holds NaNs). */
static void fill_values(const spec *s, int raw)
{
    size_t item = item_size(s->t.dtype);
    if (raw || s->own == NULL || item == 0)
        return;
    memcpy(s->own, finite_values(item) + ((uintptr_t)s->t.data - (uintptr_t)s->own) % item,
           s->own_bytes);
}

/* ---- the model of the header's rules ------------------------------------------------------ */

static int model_tensor_ok(const spec *s)
{
    if (!s->present)
        return 0;
    const mpsnorm_tensor *t = &s->t;
    size_t item = item_size(t->dtype);
    int64_t count = model_count(t);
    if (item == 0 || count < 0)
        return 0;
    if (count == 0)
        return 1;
    if (t->data == NULL || (uintptr_t)t->data % item != 0)
        return 0;
    return model_addressable(t);
}

static void model_span(const mpsnorm_tensor *t, uintptr_t *low, uintptr_t *high)
{
    size_t item = item_size(t->dtype);
    __int128 below, above;
    if (model_count(t) <= 0) {
        *low = *high = 0;
        return;
    }
    model_reach(t, &below, &above);
    *low = (uintptr_t)((__int128)(uintptr_t)t->data - below * (__int128)item);
    *high = (uintptr_t)((__int128)(uintptr_t)t->data + (above + 1) * (__int128)item);
}

static int spans_disjoint(const mpsnorm_tensor *a, const mpsnorm_tensor *b)
{
    uintptr_t la, ha, lb, hb;
    model_span(a, &la, &ha);
    model_span(b, &lb, &hb);
    return la == ha || lb == hb || ha <= lb || hb <= la;
}

static int compare_offsets(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* 1: distinct element addresses; 0: some repeat; -1: too many to enumerate. */
static int model_distinct(const mpsnorm_tensor *t)
{
    int64_t count = model_count(t);
    if (count <= 1)
        return 1;
    if (count > ENUMERATE_LIMIT)
        return -1;
    int64_t *offsets = malloc((size_t)count * sizeof *offsets);
    if (offsets == NULL)
        return -1;
    int64_t k = 0;
    for (int64_t n = 0; n < t->shape[0]; n++)
        for (int64_t c = 0; c < t->shape[1]; c++)
            for (int64_t h = 0; h < t->shape[2]; h++)
                for (int64_t w = 0; w < t->shape[3]; w++)
                    offsets[k++] = (int64_t)element_offset(t, n, c, h, w);
    qsort(offsets, (size_t)count, sizeof *offsets, compare_offsets);
    int distinct = 1;
    for (int64_t i = 1; i < count && distinct; i++)
        distinct = offsets[i] != offsets[i - 1];
    free(offsets);
    return distinct;
}

static int same_shape(const mpsnorm_tensor *a, const mpsnorm_tensor *b)
{
    return a->dtype == b->dtype && memcmp(a->shape, b->shape, sizeof a->shape) == 0;
}

/* Copies the bytes of every element of an output (when enumerable) from the region into
 * `expected`, the region's snapshot: afterwards the two must be equal. */
static void take_output(const mpsnorm_tensor *t, const unsigned char *base, unsigned char *expected,
                        size_t bytes)
{
    uintptr_t low = (uintptr_t)base;
    int64_t count = model_count(t);
    size_t item = item_size(t->dtype);
    if (count <= 0 || count > ENUMERATE_LIMIT || item == 0)
        return;
    for (int64_t n = 0; n < t->shape[0]; n++)
        for (int64_t c = 0; c < t->shape[1]; c++)
            for (int64_t h = 0; h < t->shape[2]; h++)
                for (int64_t w = 0; w < t->shape[3]; w++) {
                    __int128 e = element_offset(t, n, c, h, w) * (__int128)item;
                    uintptr_t address = (uintptr_t)((__int128)(uintptr_t)t->data + e);
                    if (address >= low && address - low + item <= bytes)
                        memcpy(expected + (address - low), base + (address - low), item);
                }
}

/* ---- the one call --------------------------------------------------------------------- */

typedef struct region {
    unsigned char *base;
    size_t bytes;
    unsigned char *before; /* snapshot; on success, output elements copied in */
} region;

static void small_functions(reader *r)
{
    int code = (int)u32(r);
    const char *text = mpsnorm_status_string(code);
    if (text == NULL || strlen(text) == 0)
        fail("status string is empty", code);
    text = mpsnorm_backend_name(code);
    if (text == NULL)
        fail("backend name is NULL", code);
    (void)mpsnorm_dtype_size(code);
    (void)mpsnorm_backend_available(code);
    mpsnorm_engine *engine = (mpsnorm_engine *)1;
    int status = mpsnorm_engine_create(code, &engine);
    if (status != MPSNORM_OK && engine != NULL)
        fail("engine_create failed but left *engine set", status);
    mpsnorm_engine_free(engine);
    mpsnorm_lcn_params lcn;
    int64_t kw = size_value(r), kh = size_value(r);
    status = mpsnorm_lcn_params_init(&lcn, kw, kh);
    int in_range = kw >= 1 && kw <= MPSNORM_MAX_KERNEL_SIZE && kh >= 1 && kh <= MPSNORM_MAX_KERNEL_SIZE;
    if ((status == MPSNORM_OK) != in_range)
        fail("lcn_params_init range check", status);
    if (mpsnorm_lcn_params_init(NULL, 3, 3) != MPSNORM_ERR_NULL_POINTER)
        fail("lcn_params_init(NULL)", 0);
    mpsnorm_report report;
    lcn.alpha = float_value(r);
    status = mpsnorm_lcn_params_check(&lcn, u8(r) & 1 ? &report : NULL);
    if (status == MPSNORM_OK && (!in_range || !isfinite(lcn.alpha)))
        fail("lcn_params_check accepted bad parameters", status);
    int threads = (int)(u8(r) % 5) - 1;
    status = mpsnorm_set_num_threads(threads);
    if ((status == MPSNORM_OK) != (threads >= 1))
        fail("set_num_threads range check", status);
    if (mpsnorm_get_num_threads() < 1)
        fail("get_num_threads < 1", 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    reader r = {data, size, 0};
    uint8_t op = u8(&r), flags = u8(&r);
    if (op % 5 == 4) {
        small_functions(&r);
        return 0;
    }
    int kind = op % 4; /* 0 lcn fwd, 1 lcn grad, 2 inorm fwd, 3 inorm grad */
    int gradient = kind == 1 || kind == 3;
    int inorm = kind >= 2;

    /* parameters */
    mpsnorm_lcn_params lcn;
    mpsnorm_inorm_params in;
    float gamma[MAX_GAMMA], beta[MAX_GAMMA];
    int params_ok;
    if (!inorm) {
        int64_t kw = u8(&r) < 240 ? 1 + size_value(&r) % 8 : extreme(&r);
        int64_t kh = u8(&r) < 240 ? 1 + size_value(&r) % 8 : extreme(&r);
        mpsnorm_lcn_params_init(&lcn, kw, kh);
        float *fields[6] = {&lcn.alpha, &lcn.beta, &lcn.delta, &lcn.p0, &lcn.pm, &lcn.ps};
        for (int i = 0; i < 6; i++)
            if (u8(&r) & 1)
                *fields[i] = float_value(&r);
        params_ok = kw >= 1 && kw <= MPSNORM_MAX_KERNEL_SIZE && kh >= 1 &&
                    kh <= MPSNORM_MAX_KERNEL_SIZE;
        for (int i = 0; i < 6; i++)
            params_ok = params_ok && isfinite(*fields[i]);
    } else {
        int64_t channels = size_value(&r);
        mpsnorm_inorm_params_init(&in, channels);
        if (u8(&r) & 1)
            in.epsilon = float_value(&r);
        uint8_t which = u8(&r);
        for (int i = 0; i < MAX_GAMMA; i++) {
            gamma[i] = (which & 4) ? float_value(&r) : 1.0f + 0.125f * (float)(i % 5);
            beta[i] = (which & 8) ? float_value(&r) : 0.25f * (float)(i % 3);
        }
        /* gamma/beta hold MAX_GAMMA values: only passed for channel counts that fit */
        int fits = channels >= 0 && channels <= MAX_GAMMA;
        in.gamma = (which & 1) && fits ? gamma : NULL;
        in.beta = (which & 2) && fits ? beta : NULL;
        params_ok = channels >= 1 && isfinite(in.epsilon) && in.epsilon >= 0.0f;
        for (int64_t i = 0; params_ok && (in.gamma || in.beta) && i < channels; i++)
            params_ok = (in.gamma == NULL || isfinite(in.gamma[i])) &&
                        (in.beta == NULL || isfinite(in.beta[i]));
    }
    int params_null = (flags & 0x4) && (u8(&r) % 8 == 0);

    /* tensors */
    spec x, dy, out;
    decode_tensor(&r, &x, NULL);
    if (gradient)
        decode_tensor(&r, &dy, &x);
    else
        memset(&dy, 0, sizeof dy);
    decode_tensor(&r, &out, &x);

    /* gamma/beta gradient vectors (instance-norm gradient) */
    spec vectors[2];
    memset(vectors, 0, sizeof vectors);
    for (int v = 0; v < 2 && kind == 3; v++) {
        uint8_t how = u8(&r);
        if (how % 4 == 0)
            continue; /* NULL: not wanted */
        vectors[v].present = 1;
        mpsnorm_tensor *t = &vectors[v].t;
        t->dtype = (how & 0x10) ? (int32_t)(u8(&r) % 4)
                                : (x.t.dtype == MPSNORM_FLOAT64 ? MPSNORM_FLOAT64 : MPSNORM_FLOAT32);
        t->shape[0] = (how & 0x20) ? size_value(&r) : x.t.shape[1];
        t->shape[1] = t->shape[2] = t->shape[3] = 1;
        t->strides[0] = (how & 0x40) ? stride_value(&r) : 1;
        t->strides[1] = t->strides[2] = t->strides[3] = 1;
        vectors[v].plain = t->strides[0] != 0;
    }

    unsigned char *arena = malloc(ARENA_BYTES);
    if (arena == NULL)
        return 0;
    memcpy(arena, pattern(), ARENA_BYTES);
    spec *all[5] = {&x, &dy, &out, &vectors[0], &vectors[1]};
    int callable = 1;
    for (int i = 0; i < 5; i++)
        callable = callable && place(&r, all[i], arena, all, i);
    int raw = (flags & 0x8) != 0;
    for (int i = 0; i < 5; i++)
        fill_values(all[i], raw);
    if (flags & 0x20)
        mpsnorm_set_num_threads(1 + u8(&r) % 3);

    mpsnorm_engine *engine = NULL;
    if ((flags & 0x3) == 1)
        mpsnorm_engine_create(MPSNORM_BACKEND_CPU, &engine);
    else if ((flags & 0x3) == 2)
        mpsnorm_engine_create(MPSNORM_BACKEND_AUTO, &engine);

    /* snapshots of every byte the call could reach */
    region regions[6];
    int nregions = 0;
    regions[nregions++] = (region){arena, ARENA_BYTES, NULL};
    for (int i = 0; i < 5; i++)
        if (all[i]->own != NULL)
            regions[nregions++] = (region){all[i]->own, all[i]->own_bytes, NULL};
    for (int i = 0; i < nregions && callable; i++) {
        regions[i].before = malloc(regions[i].bytes);
        if (regions[i].before == NULL)
            callable = 0;
        else
            memcpy(regions[i].before, regions[i].base, regions[i].bytes);
    }

    if (callable) {
        mpsnorm_report report;
        memset(&report, 0x5a, sizeof report);
        mpsnorm_report *report_ptr = (flags & 0x10) ? NULL : &report;
        const mpsnorm_tensor *xp = x.present ? &x.t : NULL, *dyp = dy.present ? &dy.t : NULL,
                             *outp = out.present ? &out.t : NULL;
        mpsnorm_vector vec[2];
        const mpsnorm_vector *vecp[2] = {NULL, NULL};
        for (int v = 0; v < 2; v++)
            if (vectors[v].present) {
                vec[v] = (mpsnorm_vector){vectors[v].t.data, vectors[v].t.dtype,
                                          vectors[v].t.shape[0], vectors[v].t.strides[0]};
                vecp[v] = &vec[v];
            }
        int status;
        switch (kind) {
        case 0:
            status = mpsnorm_lcn_forward(engine, params_null ? NULL : &lcn, xp, outp, report_ptr);
            break;
        case 1:
            status = mpsnorm_lcn_gradient(engine, params_null ? NULL : &lcn, dyp, xp, outp,
                                          report_ptr);
            break;
        case 2:
            status = mpsnorm_inorm_forward(engine, params_null ? NULL : &in, xp, outp, report_ptr);
            break;
        default:
            status = mpsnorm_inorm_gradient(engine, params_null ? NULL : &in, dyp, xp, outp,
                                            vecp[0], vecp[1], report_ptr);
            break;
        }

        if (status > 0 || status < MPSNORM_ERR_BACKEND_FAILURE)
            fail("status outside the documented codes", status);
        if (report_ptr != NULL) {
            if (memchr(report.message, '\0', sizeof report.message) == NULL)
                fail("report message is not NUL-terminated", status);
            if (status != MPSNORM_OK && report.message[0] == '\0')
                fail("failure without a message", status);
            if (report.backend_used != MPSNORM_BACKEND_CPU &&
                report.backend_used != MPSNORM_BACKEND_METAL)
                fail("backend_used is neither CPU nor METAL", status);
        }

        /* the model */
        int valid = !params_null && params_ok && model_tensor_ok(&x) && model_tensor_ok(&out);
        int plain = x.plain && out.plain && (!gradient || dy.plain);
        if (valid && gradient)
            valid = model_tensor_ok(&dy) && same_shape(&x.t, &dy.t);
        if (valid)
            valid = same_shape(&x.t, &out.t) && spans_disjoint(&out.t, &x.t) &&
                    (!gradient || spans_disjoint(&out.t, &dy.t));
        int distinct = valid ? model_distinct(&out.t) : 1;
        if (distinct == 0)
            valid = 0;
        if (valid && inorm && x.t.shape[1] != in.num_channels)
            valid = 0;
        for (int v = 0; v < 2 && valid; v++) {
            if (!vectors[v].present)
                continue;
            const mpsnorm_tensor *t = &vectors[v].t;
            int want = x.t.dtype == MPSNORM_FLOAT64 ? MPSNORM_FLOAT64 : MPSNORM_FLOAT32;
            valid = t->dtype == want && t->shape[0] == x.t.shape[1] && model_tensor_ok(&vectors[v]) &&
                    (t->shape[0] <= 1 || t->strides[0] != 0) && spans_disjoint(t, &x.t) &&
                    spans_disjoint(t, &out.t) && (!gradient || spans_disjoint(t, &dy.t));
            plain = plain && vectors[v].plain;
        }
        if (valid && vectors[0].present && vectors[1].present)
            valid = spans_disjoint(&vectors[0].t, &vectors[1].t);

        if (status == MPSNORM_OK && !valid)
            fail("accepted a call the header's rules forbid", status);
        if (status != MPSNORM_OK && status != MPSNORM_ERR_OUT_OF_MEMORY && valid && plain &&
            distinct == 1)
            fail("refused a plainly valid call", status);

        /* memory: nothing changed on failure; only output elements on success */
        int checkable = status != MPSNORM_OK || model_count(&out.t) <= ENUMERATE_LIMIT;
        for (int i = 0; i < nregions && checkable; i++) {
            if (status == MPSNORM_OK) {
                take_output(&out.t, regions[i].base, regions[i].before, regions[i].bytes);
                for (int v = 0; v < 2; v++)
                    if (vectors[v].present)
                        take_output(&vectors[v].t, regions[i].base, regions[i].before,
                                    regions[i].bytes);
            }
            if (memcmp(regions[i].base, regions[i].before, regions[i].bytes) != 0)
                fail(status == MPSNORM_OK ? "wrote outside the output elements"
                                          : "a failing call changed memory", status);
        }
    }

    mpsnorm_engine_free(engine);
    for (int i = 0; i < nregions; i++)
        free(regions[i].before);
    for (int i = 0; i < 5; i++)
        free(all[i]->own);
    free(arena);
    return 0;
}
