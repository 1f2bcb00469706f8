/* validate.c -- argument checks shared by every backend (see validate.h). */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "checked_math.h"
#include "validate.h"

int mpsnorm_fail(int status, char *message, size_t size, const char *format, ...)
{
    if (message != NULL && size > 0) {
        va_list args;
        va_start(args, format);
        vsnprintf(message, size, format, args);
        va_end(args);
    }
    return status;
}

static const char *dtype_name(int dtype)
{
    switch (dtype) {
    case MPSNORM_FLOAT32: return "float32";
    case MPSNORM_FLOAT16: return "float16";
    case MPSNORM_FLOAT64: return "float64";
    default: return "unknown";
    }
}

int mpsnorm_check_lcn_params(const mpsnorm_lcn_params *params, char *message, size_t size)
{
    if (params == NULL)
        return mpsnorm_fail(MPSNORM_ERR_NULL_POINTER, message, size, "params is NULL");
    if (params->kernel_width < 1 || params->kernel_width > MPSNORM_MAX_KERNEL_SIZE)
        return mpsnorm_fail(MPSNORM_ERR_INVALID_PARAMETER, message, size,
                            "kernel_width must be in 1..%d, got %lld", MPSNORM_MAX_KERNEL_SIZE,
                            (long long)params->kernel_width);
    if (params->kernel_height < 1 || params->kernel_height > MPSNORM_MAX_KERNEL_SIZE)
        return mpsnorm_fail(MPSNORM_ERR_INVALID_PARAMETER, message, size,
                            "kernel_height must be in 1..%d, got %lld", MPSNORM_MAX_KERNEL_SIZE,
                            (long long)params->kernel_height);
    const struct { const char *name; float value; } values[] = {
        {"alpha", params->alpha}, {"beta", params->beta}, {"delta", params->delta},
        {"p0", params->p0},       {"pm", params->pm},     {"ps", params->ps},
    };
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++)
        if (!isfinite(values[i].value))
            return mpsnorm_fail(MPSNORM_ERR_INVALID_PARAMETER, message, size,
                                "%s must be finite, got %g", values[i].name, (double)values[i].value);
    return MPSNORM_OK;
}

static int check_channel_values(const float *values, const char *name, int64_t count, char *message,
                                size_t size)
{
    for (int64_t i = 0; values != NULL && i < count; i++)
        if (!isfinite(values[i]))
            return mpsnorm_fail(MPSNORM_ERR_INVALID_PARAMETER, message, size,
                                "%s[%lld] must be finite, got %g", name, (long long)i,
                                (double)values[i]);
    return MPSNORM_OK;
}

int mpsnorm_check_instance_norm_params(const mpsnorm_inorm_params *params, char *message,
                                       size_t size)
{
    if (params == NULL)
        return mpsnorm_fail(MPSNORM_ERR_NULL_POINTER, message, size, "params is NULL");
    if (params->num_channels < 1)
        return mpsnorm_fail(MPSNORM_ERR_INVALID_PARAMETER, message, size,
                            "num_channels must be >= 1, got %lld", (long long)params->num_channels);
    if (!isfinite(params->epsilon) || params->epsilon < 0.0f)
        return mpsnorm_fail(MPSNORM_ERR_INVALID_PARAMETER, message, size,
                            "epsilon must be finite and >= 0, got %g", (double)params->epsilon);
    int status = check_channel_values(params->gamma, "gamma", params->num_channels, message, size);
    if (status == MPSNORM_OK)
        status = check_channel_values(params->beta, "beta", params->num_channels, message, size);
    return status;
}

int mpsnorm_lcn_params_check(const mpsnorm_lcn_params *params, mpsnorm_report *report)
{
    return mpsnorm_check_lcn_params(params, report ? report->message : NULL,
                                    report ? sizeof report->message : 0);
}

int mpsnorm_inorm_params_check(const mpsnorm_inorm_params *params, mpsnorm_report *report)
{
    return mpsnorm_check_instance_norm_params(params, report ? report->message : NULL,
                                              report ? sizeof report->message : 0);
}

int64_t mpsnorm_tensor_count(const mpsnorm_tensor *tensor)
{
    int64_t count = 1;
    for (int axis = 0; axis < 4; axis++)
        count *= tensor->shape[axis];
    return count;
}

static uint64_t magnitude(int64_t value)
{
    return value < 0 ? (uint64_t)0 - (uint64_t)value : (uint64_t)value;
}

/* Element offsets of the lowest (<= 0) and highest (>= 0) element, relative
 * to data, for a non-empty tensor; 0 if they do not fit the address space. */
static int offset_bounds(const mpsnorm_tensor *tensor, size_t item, uint64_t *below, uint64_t *above)
{
    const uint64_t limit = (uint64_t)INT64_MAX >> (item == 8 ? 3 : item == 4 ? 2 : 1);
    uint64_t low = 0, high = 0;
    for (int axis = 0; axis < 4; axis++) {
        uint64_t steps = (uint64_t)(tensor->shape[axis] - 1);
        uint64_t stride = magnitude(tensor->strides[axis]);
        uint64_t reach;
        if (steps == 0 || stride == 0)
            continue;
        if (!mpsnorm_mul_u64(steps, stride, &reach) || reach > limit)
            return 0;
        uint64_t *side = tensor->strides[axis] < 0 ? &low : &high;
        if (*side > limit - reach)
            return 0;
        *side += reach;
    }
    if (low > limit - high)
        return 0;
    uintptr_t base = (uintptr_t)tensor->data;
    if (base < low * item || UINTPTR_MAX - base < (high + 1) * item)
        return 0;
    *below = low;
    *above = high;
    return 1;
}

/* Sufficient condition for distinct addresses: taken by increasing |stride|,
 * each axis steps past everything the smaller axes reach. Runs on a tensor
 * whose offsets passed offset_bounds, so the reach cannot overflow. */
static int check_distinct(const mpsnorm_tensor *tensor, const char *name, char *message,
                          size_t size)
{
    int order[4], used = 0;
    for (int axis = 0; axis < 4; axis++)
        if (tensor->shape[axis] > 1)
            order[used++] = axis;
    for (int i = 1; i < used; i++)
        for (int j = i; j > 0 && magnitude(tensor->strides[order[j]]) <
                                     magnitude(tensor->strides[order[j - 1]]); j--) {
            int swap = order[j];
            order[j] = order[j - 1];
            order[j - 1] = swap;
        }
    uint64_t reach = 0;
    for (int i = 0; i < used; i++) {
        int axis = order[i];
        uint64_t stride = magnitude(tensor->strides[axis]);
        if (stride <= reach)
            return mpsnorm_fail(MPSNORM_ERR_OVERLAP, message, size,
                                "%s would write some elements more than once (stride %lld on axis %d)",
                                name, (long long)tensor->strides[axis], axis);
        reach += (uint64_t)(tensor->shape[axis] - 1) * stride;
    }
    return MPSNORM_OK;
}

/* The checks of mpsnorm_check_tensor on `tensor`, which is checked->tensor or
 * a vector seen as a (length, 1, 1, 1) tensor. */
static int check_layout(mpsnorm_checked *checked, const mpsnorm_tensor *tensor, int output,
                        char *message, size_t size)
{
    const char *name = checked->name;
    checked->item = mpsnorm_dtype_size(tensor->dtype);
    if (checked->item == 0)
        return mpsnorm_fail(MPSNORM_ERR_BAD_DTYPE, message, size, "%s has unknown dtype %d", name,
                            (int)tensor->dtype);
    int64_t count = 1;
    for (int axis = 0; axis < 4; axis++) {
        int64_t extent = tensor->shape[axis];
        if (extent < 0)
            return mpsnorm_fail(MPSNORM_ERR_BAD_SHAPE, message, size,
                                "%s has negative size %lld on axis %d", name, (long long)extent, axis);
        if (!mpsnorm_mul_nonneg_i64(count, extent, &count))
            return mpsnorm_fail(MPSNORM_ERR_BAD_SHAPE, message, size,
                                "%s has more elements than fit in 64 bits", name);
    }
    checked->count = count;
    if (count == 0)
        return MPSNORM_OK;
    if (tensor->data == NULL)
        return mpsnorm_fail(MPSNORM_ERR_NULL_POINTER, message, size, "%s data is NULL", name);
    if ((uintptr_t)tensor->data % checked->item != 0)
        return mpsnorm_fail(MPSNORM_ERR_BAD_LAYOUT, message, size,
                            "%s data is not aligned to its %zu-byte elements", name, checked->item);
    uint64_t below, above;
    if (!offset_bounds(tensor, checked->item, &below, &above))
        return mpsnorm_fail(MPSNORM_ERR_BAD_LAYOUT, message, size,
                            "%s strides reach outside the address space", name);
    checked->low = (const char *)tensor->data - below * checked->item;
    checked->high = (const char *)tensor->data + (above + 1) * checked->item;
    return output ? check_distinct(tensor, name, message, size) : MPSNORM_OK;
}

static void clear(mpsnorm_checked *checked, const char *name)
{
    checked->name = name;
    checked->tensor = NULL;
    checked->vector = NULL;
    checked->item = 0;
    checked->count = 0;
    checked->low = checked->high = NULL;
}

int mpsnorm_check_tensor(mpsnorm_checked *checked, const mpsnorm_tensor *tensor, const char *name,
                         int output, char *message, size_t size)
{
    clear(checked, name);
    if (tensor == NULL)
        return mpsnorm_fail(MPSNORM_ERR_NULL_POINTER, message, size, "%s is NULL", name);
    checked->tensor = tensor;
    return check_layout(checked, tensor, output, message, size);
}

int mpsnorm_check_output_vector(mpsnorm_checked *checked, const mpsnorm_vector *vector,
                                const char *name, int64_t length, int dtype, char *message,
                                size_t size)
{
    clear(checked, name);
    if (vector == NULL)
        return mpsnorm_fail(MPSNORM_ERR_NULL_POINTER, message, size, "%s is NULL", name);
    checked->vector = vector;
    if (vector->dtype != dtype)
        return mpsnorm_fail(MPSNORM_ERR_BAD_DTYPE, message, size, "%s must be %s, got %s", name,
                            dtype_name(dtype), dtype_name(vector->dtype));
    if (vector->length != length)
        return mpsnorm_fail(MPSNORM_ERR_BAD_SHAPE, message, size,
                            "%s must have length %lld, got %lld", name, (long long)length,
                            (long long)vector->length);
    const mpsnorm_tensor as_tensor = {vector->data, vector->dtype, {length, 1, 1, 1},
                                      {vector->stride, 1, 1, 1}};
    return check_layout(checked, &as_tensor, 1, message, size);
}

int mpsnorm_check_same_shape(const mpsnorm_checked *a, const mpsnorm_checked *b, char *message,
                             size_t size)
{
    const mpsnorm_tensor *ta = a->tensor, *tb = b->tensor;
    for (int axis = 0; axis < 4; axis++)
        if (ta->shape[axis] != tb->shape[axis])
            return mpsnorm_fail(MPSNORM_ERR_BAD_SHAPE, message, size,
                                "%s has shape (%lld, %lld, %lld, %lld) but %s has shape "
                                "(%lld, %lld, %lld, %lld)",
                                b->name, (long long)tb->shape[0], (long long)tb->shape[1],
                                (long long)tb->shape[2], (long long)tb->shape[3], a->name,
                                (long long)ta->shape[0], (long long)ta->shape[1],
                                (long long)ta->shape[2], (long long)ta->shape[3]);
    if (ta->dtype != tb->dtype)
        return mpsnorm_fail(MPSNORM_ERR_BAD_DTYPE, message, size, "%s is %s but %s is %s", b->name,
                            dtype_name(tb->dtype), a->name, dtype_name(ta->dtype));
    return MPSNORM_OK;
}

int mpsnorm_check_disjoint(const mpsnorm_checked *a, const mpsnorm_checked *b, char *message,
                           size_t size)
{
    if (a->low == a->high || b->low == b->high)
        return MPSNORM_OK;
    if (a->low < b->high && b->low < a->high)
        return mpsnorm_fail(MPSNORM_ERR_OVERLAP, message, size, "%s overlaps %s in memory", a->name,
                            b->name);
    return MPSNORM_OK;
}
