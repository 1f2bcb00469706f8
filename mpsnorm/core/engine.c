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
    mpsnorm_metal_binding *metal;
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
        int status = mpsnorm_metal_binding_create(&created->metal);
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
    mpsnorm_metal_binding_free(engine->metal);
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
    report->staging_seconds = report->gpu_seconds = 0.0;
    return report;
}

static int finish(mpsnorm_report *report, int status)
{
    if (status != MPSNORM_OK && report->message[0] == '\0')
        mpsnorm_fail(status, report->message, sizeof report->message, "%s",
                     mpsnorm_status_string(status));
    return status;
}

/* A call's arguments, each checked once. dy, dgamma and dbeta are NULL where
 * the call has none. */
typedef struct call_arguments {
    mpsnorm_checked dy_checked, x_checked, out_checked, dgamma_checked, dbeta_checked;
    const mpsnorm_checked *dy, *x, *out, *dgamma, *dbeta;
} call_arguments;

/* Checks the tensors of a call into *args: inputs well-formed and alike, the
 * output well-formed, alike, and disjoint from every input. dy may be NULL. */
static int check_call_tensors(call_arguments *args, const mpsnorm_tensor *dy,
                              const mpsnorm_tensor *x, const mpsnorm_tensor *out,
                              const char *out_name, char *message, size_t size)
{
    args->x = &args->x_checked;
    args->out = &args->out_checked;
    args->dy = dy != NULL ? &args->dy_checked : NULL;
    args->dgamma = args->dbeta = NULL;
    int status = mpsnorm_check_tensor(&args->x_checked, x, "x", 0, message, size);
    if (status == MPSNORM_OK && dy != NULL)
        status = mpsnorm_check_tensor(&args->dy_checked, dy, "dy", 0, message, size);
    if (status == MPSNORM_OK && dy != NULL)
        status = mpsnorm_check_same_shape(args->x, args->dy, message, size);
    if (status == MPSNORM_OK)
        status = mpsnorm_check_tensor(&args->out_checked, out, out_name, 1, message, size);
    if (status == MPSNORM_OK)
        status = mpsnorm_check_same_shape(args->x, args->out, message, size);
    if (status == MPSNORM_OK)
        status = mpsnorm_check_disjoint(args->out, args->x, message, size);
    if (status == MPSNORM_OK && dy != NULL)
        status = mpsnorm_check_disjoint(args->out, args->dy, message, size);
    return status;
}

/* Whether an engine bound to Metal may run a refused case on the CPU. */
static int may_fall_back(const mpsnorm_engine *engine)
{
    return engine->requested != MPSNORM_BACKEND_METAL;
}

/* After a Metal attempt that returned `status`: 1 if the call goes on to the CPU
 * (Metal refused a case the engine may hand over; the report then says so, and keeps
 * the refusal's reason only when it is a notice for the user: mpsnorm.h,
 * mpsnorm_report), 0 if `status` is the call's result. */
static int falls_back(const mpsnorm_engine *engine, int status, int notice,
                      mpsnorm_report *report)
{
    if (status != MPSNORM_ERR_UNSUPPORTED || !may_fall_back(engine))
        return 0;
    if (!notice)
        report->message[0] = '\0';
    report->backend_used = MPSNORM_BACKEND_CPU;
    return 1;
}

/* A call Metal ran: its timing in the report when it succeeded. */
static int keep_timing(mpsnorm_report *report, const mpsnorm_metal_timing *timing, int status)
{
    if (status == MPSNORM_OK) {
        report->staging_seconds = timing->staging_seconds;
        report->gpu_seconds = timing->gpu_seconds;
    }
    return status;
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
    call_arguments args;
    int status = mpsnorm_check_lcn_params(params, message, size);
    if (status == MPSNORM_OK)
        status = check_call_tensors(&args, dy, x, out, dy != NULL ? "dx" : "y", message, size);
    if (status != MPSNORM_OK || args.x->count == 0)
        return status;
    int notice = 0;
    if (mpsnorm_engine_backend(engine) == MPSNORM_BACKEND_METAL) {
        mpsnorm_metal_timing timing;
        status = mpsnorm_metal_route_lcn(engine->metal, params, args.dy, args.x, args.out,
                                         may_fall_back(engine), &timing, message, size, &notice);
        if (!falls_back(engine, status, notice, report))
            return keep_timing(report, &timing, status);
    }
    status = dy != NULL ? mpsnorm_cpu_lcn_gradient(params, args.dy, args.x, args.out)
                        : mpsnorm_cpu_lcn_forward(params, args.x, args.out);
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

/* Checks an optional per-channel gradient output of the call into *checked:
 * one value per channel, disjoint from every tensor of the call. */
static int check_channel_output(call_arguments *args, mpsnorm_checked *checked,
                                const mpsnorm_vector *vector, const char *name,
                                const mpsnorm_checked **slot, char *message, size_t size)
{
    if (vector == NULL)
        return MPSNORM_OK;
    *slot = checked;
    const mpsnorm_tensor *x = args->x->tensor;
    int dtype = x->dtype == MPSNORM_FLOAT64 ? MPSNORM_FLOAT64 : MPSNORM_FLOAT32;
    int status = mpsnorm_check_output_vector(checked, vector, name, x->shape[1], dtype, message,
                                             size);
    const mpsnorm_checked *tensors[3] = {args->dy, args->x, args->out};
    for (int i = 0; i < 3 && status == MPSNORM_OK; i++)
        if (tensors[i] != NULL)
            status = mpsnorm_check_disjoint(checked, tensors[i], message, size);
    return status;
}

static void fill_zero(const mpsnorm_checked *checked)
{
    if (checked == NULL)
        return;
    const mpsnorm_vector *vector = checked->vector;
    for (int64_t i = 0; i < vector->length; i++) {
        if (vector->dtype == MPSNORM_FLOAT64)
            ((double *)vector->data)[i * vector->stride] = 0.0;
        else
            ((float *)vector->data)[i * vector->stride] = 0.0f;
    }
}

static int check_channels(const mpsnorm_inorm_params *params, const mpsnorm_checked *checked,
                          char *message, size_t size)
{
    const mpsnorm_tensor *x = checked->tensor;
    if (x->shape[1] != params->num_channels)
        return mpsnorm_fail(MPSNORM_ERR_BAD_SHAPE, message, size,
                            "x has %lld channels but num_channels is %lld",
                            (long long)x->shape[1], (long long)params->num_channels);
    return MPSNORM_OK;
}

static int run_instance_norm(mpsnorm_engine *engine, const mpsnorm_inorm_params *params,
                             const mpsnorm_tensor *dy, const mpsnorm_tensor *x,
                             const mpsnorm_tensor *out, const mpsnorm_vector *dgamma,
                             const mpsnorm_vector *dbeta, mpsnorm_report *report)
{
    char *message = report->message;
    size_t size = sizeof report->message;
    call_arguments args;
    int status = mpsnorm_check_instance_norm_params(params, message, size);
    if (status == MPSNORM_OK)
        status = check_call_tensors(&args, dy, x, out, dy != NULL ? "dx" : "y", message, size);
    if (status == MPSNORM_OK)
        status = check_channels(params, args.x, message, size);
    if (status == MPSNORM_OK)
        status = check_channel_output(&args, &args.dgamma_checked, dgamma, "dgamma", &args.dgamma,
                                      message, size);
    if (status == MPSNORM_OK)
        status = check_channel_output(&args, &args.dbeta_checked, dbeta, "dbeta", &args.dbeta,
                                      message, size);
    if (status == MPSNORM_OK && args.dgamma != NULL && args.dbeta != NULL)
        status = mpsnorm_check_disjoint(args.dgamma, args.dbeta, message, size);
    if (status != MPSNORM_OK)
        return status;
    if (args.x->count == 0) {
        fill_zero(args.dgamma);
        fill_zero(args.dbeta);
        return MPSNORM_OK;
    }
    int notice = 0;
    if (mpsnorm_engine_backend(engine) == MPSNORM_BACKEND_METAL) {
        mpsnorm_metal_timing timing;
        status = mpsnorm_metal_route_instance_norm(engine->metal, params, args.dy, args.x,
                                                   args.out, args.dgamma, args.dbeta,
                                                   may_fall_back(engine), &timing, message, size,
                                                   &notice);
        if (!falls_back(engine, status, notice, report))
            return keep_timing(report, &timing, status);
    }
    status = dy != NULL ? mpsnorm_cpu_instance_norm_gradient(params, args.dy, args.x, args.out,
                                                             args.dgamma, args.dbeta)
                        : mpsnorm_cpu_instance_norm_forward(params, args.x, args.out);
    return keep_notice(report, status);
}

int mpsnorm_inorm_forward(mpsnorm_engine *engine, const mpsnorm_inorm_params *params,
                          const mpsnorm_tensor *x, const mpsnorm_tensor *y, mpsnorm_report *report)
{
    mpsnorm_report scratch;
    report = prepare_report(report, &scratch, engine);
    return finish(report, run_instance_norm(engine, params, NULL, x, y, NULL, NULL, report));
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
    return finish(report, run_instance_norm(engine, params, dy, x, dx, dgamma, dbeta, report));
}
