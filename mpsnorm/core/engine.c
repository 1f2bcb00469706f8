/*
 * engine.c -- the dispatcher behind every public kernel entry point:
 * validate (the same checks whatever the backend), then run on the engine's
 * backend, falling back to the CPU for what Metal cannot do.
 */
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "metal_route.h"
#include "validate.h"

struct mpsnorm_engine {
    int32_t requested; /* as asked: AUTO, CPU or METAL */
    int32_t backend;   /* resolved: CPU or METAL */
    mpsnorm_metal_cache *metal;
};

int mpsnorm_backend_available(int backend)
{
    switch (backend) {
    case MPSNORM_BACKEND_CPU: return 1;
    case MPSNORM_BACKEND_METAL: return mpsnorm_metal_device_available();
    default: return 0;
    }
}

int mpsnorm_engine_create(int requested, mpsnorm_engine **engine)
{
    if (engine == NULL)
        return MPSNORM_ERR_NULL_POINTER;
    *engine = NULL;
    int backend;
    switch (requested) {
    case MPSNORM_BACKEND_AUTO:
        backend = mpsnorm_metal_device_available() ? MPSNORM_BACKEND_METAL : MPSNORM_BACKEND_CPU;
        break;
    case MPSNORM_BACKEND_CPU: backend = MPSNORM_BACKEND_CPU; break;
    case MPSNORM_BACKEND_METAL:
        if (!mpsnorm_metal_device_available())
            return MPSNORM_ERR_BACKEND_UNAVAILABLE;
        backend = MPSNORM_BACKEND_METAL;
        break;
    default: return MPSNORM_ERR_INVALID_PARAMETER;
    }
    mpsnorm_engine *created = calloc(1, sizeof *created);
    if (created == NULL)
        return MPSNORM_ERR_OUT_OF_MEMORY;
    created->requested = requested;
    created->backend = backend;
    if (backend == MPSNORM_BACKEND_METAL) {
        int status = mpsnorm_metal_cache_create(&created->metal);
        if (status != MPSNORM_OK) {
            free(created);
            return status;
        }
    }
    *engine = created;
    return MPSNORM_OK;
}

void mpsnorm_engine_free(mpsnorm_engine *engine)
{
    if (engine == NULL)
        return;
    if (engine->metal != NULL)
        mpsnorm_metal_cache_free(engine->metal);
    free(engine);
}

int mpsnorm_engine_backend(const mpsnorm_engine *engine)
{
    return engine == NULL ? MPSNORM_BACKEND_CPU : engine->backend;
}

/* Where a call's report goes when the caller passed none. */
static mpsnorm_report *prepare_report(mpsnorm_report *report, mpsnorm_report *scratch,
                                      const mpsnorm_engine *engine)
{
    if (report == NULL)
        report = scratch;
    report->backend_used = mpsnorm_engine_backend(engine);
    report->message[0] = '\0';
    return report;
}

static int finish(mpsnorm_report *report, int status)
{
    if (status != MPSNORM_OK && report->message[0] == '\0')
        mpsnorm_fail(status, report->message, sizeof report->message, "%s",
                     mpsnorm_status_string(status));
    return status;
}

/* Checks the tensors of a call: inputs well-formed and alike, the output
 * well-formed, alike, and disjoint from every input. dy may be NULL. */
static int check_call_tensors(const mpsnorm_tensor *dy, const mpsnorm_tensor *x,
                              const mpsnorm_tensor *out, const char *out_name, char *message,
                              size_t size)
{
    int status = mpsnorm_check_tensor(x, "x", message, size);
    if (status == MPSNORM_OK && dy != NULL)
        status = mpsnorm_check_tensor(dy, "dy", message, size);
    if (status == MPSNORM_OK && dy != NULL)
        status = mpsnorm_check_same_shape(x, "x", dy, "dy", message, size);
    if (status == MPSNORM_OK)
        status = mpsnorm_check_output_tensor(out, out_name, message, size);
    if (status == MPSNORM_OK)
        status = mpsnorm_check_same_shape(x, "x", out, out_name, message, size);
    if (status != MPSNORM_OK)
        return status;
    const char *out_low, *out_high, *low, *high;
    mpsnorm_tensor_span(out, &out_low, &out_high);
    mpsnorm_tensor_span(x, &low, &high);
    status = mpsnorm_check_disjoint(out_low, out_high, out_name, low, high, "x", message, size);
    if (status == MPSNORM_OK && dy != NULL) {
        mpsnorm_tensor_span(dy, &low, &high);
        status = mpsnorm_check_disjoint(out_low, out_high, out_name, low, high, "dy", message, size);
    }
    return status;
}

/* Whether an engine bound to Metal may run a refused case on the CPU. */
static int may_fall_back(const mpsnorm_engine *engine)
{
    return engine->requested != MPSNORM_BACKEND_METAL;
}

/* A refused Metal call goes to the CPU: the refusal's reason is dropped,
 * unless it is a notice for the user (mpsnorm.h, mpsnorm_report). */
static void fall_back(mpsnorm_report *report, int notice)
{
    if (!notice)
        report->message[0] = '\0';
    report->backend_used = MPSNORM_BACKEND_CPU;
}

/* A notice stays in the report of a successful call only. */
static int keep_notice(mpsnorm_report *report, int status)
{
    if (status != MPSNORM_OK)
        report->message[0] = '\0';
    return status;
}

static int run_lcn(mpsnorm_engine *engine, const mpsnorm_lcn_params *params,
                   const mpsnorm_tensor *dy, const mpsnorm_tensor *x, const mpsnorm_tensor *out,
                   mpsnorm_report *report)
{
    char *message = report->message;
    size_t size = sizeof report->message;
    int status = mpsnorm_check_lcn_params(params, message, size);
    if (status == MPSNORM_OK)
        status = check_call_tensors(dy, x, out, dy != NULL ? "dx" : "y", message, size);
    if (status != MPSNORM_OK || mpsnorm_tensor_count(x) == 0)
        return status;
    int notice = 0;
    if (mpsnorm_engine_backend(engine) == MPSNORM_BACKEND_METAL) {
        status = mpsnorm_metal_route_lcn(engine->metal, params, dy, x, out,
                                         may_fall_back(engine), message, size, &notice);
        if (status != MPSNORM_ERR_UNSUPPORTED || !may_fall_back(engine))
            return status;
        fall_back(report, notice);
    }
    status = dy != NULL ? mpsnorm_cpu_lcn_gradient(params, dy, x, out)
                        : mpsnorm_cpu_lcn_forward(params, x, out);
    return keep_notice(report, status);
}

int mpsnorm_lcn_forward(mpsnorm_engine *engine, const mpsnorm_lcn_params *params,
                        const mpsnorm_tensor *x, const mpsnorm_tensor *y, mpsnorm_report *report)
{
    mpsnorm_report scratch;
    report = prepare_report(report, &scratch, engine);
    return finish(report, run_lcn(engine, params, NULL, x, y, report));
}

int mpsnorm_lcn_gradient(mpsnorm_engine *engine, const mpsnorm_lcn_params *params,
                         const mpsnorm_tensor *dy, const mpsnorm_tensor *x, const mpsnorm_tensor *dx,
                         mpsnorm_report *report)
{
    mpsnorm_report scratch;
    report = prepare_report(report, &scratch, engine);
    if (dy == NULL)
        return finish(report, mpsnorm_fail(MPSNORM_ERR_NULL_POINTER, report->message,
                                           sizeof report->message, "dy is NULL"));
    return finish(report, run_lcn(engine, params, dy, x, dx, report));
}

/* Checks an optional per-channel gradient output against the call's tensors. */
static int check_channel_output(const mpsnorm_vector *vector, const char *name,
                                const mpsnorm_tensor *dy, const mpsnorm_tensor *x,
                                const mpsnorm_tensor *dx, char *message, size_t size)
{
    if (vector == NULL)
        return MPSNORM_OK;
    int dtype = x->dtype == MPSNORM_FLOAT64 ? MPSNORM_FLOAT64 : MPSNORM_FLOAT32;
    int status = mpsnorm_check_output_vector(vector, name, x->shape[1], dtype, message, size);
    if (status != MPSNORM_OK)
        return status;
    const char *vector_low, *vector_high;
    mpsnorm_vector_span(vector, &vector_low, &vector_high);
    const mpsnorm_tensor *tensors[3] = {dy, x, dx};
    const char *names[3] = {"dy", "x", "dx"};
    for (int i = 0; i < 3 && status == MPSNORM_OK; i++) {
        const char *low, *high;
        mpsnorm_tensor_span(tensors[i], &low, &high);
        status = mpsnorm_check_disjoint(vector_low, vector_high, name, low, high, names[i], message,
                                        size);
    }
    return status;
}

static void fill_zero(const mpsnorm_vector *vector)
{
    if (vector == NULL)
        return;
    for (int64_t i = 0; i < vector->length; i++) {
        if (vector->dtype == MPSNORM_FLOAT64)
            ((double *)vector->data)[i * vector->stride] = 0.0;
        else
            ((float *)vector->data)[i * vector->stride] = 0.0f;
    }
}

static int check_channels(const mpsnorm_inorm_params *params, const mpsnorm_tensor *x,
                          char *message, size_t size)
{
    if (x->shape[1] != params->num_channels)
        return mpsnorm_fail(MPSNORM_ERR_BAD_SHAPE, message, size,
                            "x has %lld channels but num_channels is %lld",
                            (long long)x->shape[1], (long long)params->num_channels);
    return MPSNORM_OK;
}

static int run_inorm(mpsnorm_engine *engine, const mpsnorm_inorm_params *params,
                     const mpsnorm_tensor *dy, const mpsnorm_tensor *x, const mpsnorm_tensor *out,
                     const mpsnorm_vector *dgamma, const mpsnorm_vector *dbeta,
                     mpsnorm_report *report)
{
    char *message = report->message;
    size_t size = sizeof report->message;
    int status = mpsnorm_check_inorm_params(params, message, size);
    if (status == MPSNORM_OK)
        status = check_call_tensors(dy, x, out, dy != NULL ? "dx" : "y", message, size);
    if (status == MPSNORM_OK)
        status = check_channels(params, x, message, size);
    if (status == MPSNORM_OK)
        status = check_channel_output(dgamma, "dgamma", dy, x, out, message, size);
    if (status == MPSNORM_OK)
        status = check_channel_output(dbeta, "dbeta", dy, x, out, message, size);
    if (status == MPSNORM_OK && dgamma != NULL && dbeta != NULL) {
        const char *low_a, *high_a, *low_b, *high_b;
        mpsnorm_vector_span(dgamma, &low_a, &high_a);
        mpsnorm_vector_span(dbeta, &low_b, &high_b);
        status = mpsnorm_check_disjoint(low_a, high_a, "dgamma", low_b, high_b, "dbeta", message,
                                        size);
    }
    if (status != MPSNORM_OK)
        return status;
    if (mpsnorm_tensor_count(x) == 0) {
        fill_zero(dgamma);
        fill_zero(dbeta);
        return MPSNORM_OK;
    }
    int notice = 0;
    if (mpsnorm_engine_backend(engine) == MPSNORM_BACKEND_METAL) {
        status = mpsnorm_metal_route_inorm(engine->metal, params, dy, x, out, dgamma, dbeta,
                                           may_fall_back(engine), message, size, &notice);
        if (status != MPSNORM_ERR_UNSUPPORTED || !may_fall_back(engine))
            return status;
        fall_back(report, notice);
    }
    status = dy != NULL ? mpsnorm_cpu_inorm_gradient(params, dy, x, out, dgamma, dbeta)
                        : mpsnorm_cpu_inorm_forward(params, x, out);
    return keep_notice(report, status);
}

int mpsnorm_inorm_forward(mpsnorm_engine *engine, const mpsnorm_inorm_params *params,
                          const mpsnorm_tensor *x, const mpsnorm_tensor *y, mpsnorm_report *report)
{
    mpsnorm_report scratch;
    report = prepare_report(report, &scratch, engine);
    return finish(report, run_inorm(engine, params, NULL, x, y, NULL, NULL, report));
}

int mpsnorm_inorm_gradient(mpsnorm_engine *engine, const mpsnorm_inorm_params *params,
                           const mpsnorm_tensor *dy, const mpsnorm_tensor *x,
                           const mpsnorm_tensor *dx, const mpsnorm_vector *dgamma,
                           const mpsnorm_vector *dbeta, mpsnorm_report *report)
{
    mpsnorm_report scratch;
    report = prepare_report(report, &scratch, engine);
    if (dy == NULL)
        return finish(report, mpsnorm_fail(MPSNORM_ERR_NULL_POINTER, report->message,
                                           sizeof report->message, "dy is NULL"));
    return finish(report, run_inorm(engine, params, dy, x, dx, dgamma, dbeta, report));
}
