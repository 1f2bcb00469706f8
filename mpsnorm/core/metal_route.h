/*
 * metal_route.h -- how a validated call reaches the Metal backend: the
 * capability check (what MPS cannot do runs on the CPU), small calls, the
 * engine's refusals and the self-check, the device's size limits, and the
 * batch sum of the per-image gamma/beta gradients. Plain C, built and tested
 * everywhere.
 */
#ifndef MPSNORM_CORE_METAL_ROUTE_H
#define MPSNORM_CORE_METAL_ROUTE_H

#include "backend.h"

/*
 * Under an AUTO engine, calls whose tensors hold fewer bytes than this run on
 * the CPU backend. A Metal call costs a command buffer's round trip (commit,
 * GPU scheduling, wait) plus staging whatever its size; this is the size at
 * which the CPU backend's time passes that fixed cost (README, "Metal
 * backend", says how it was set and how to tune it with the bench on a Mac).
 * An engine created for METAL runs every call it can on Metal.
 */
#define MPSNORM_METAL_MIN_CALL_BYTES ((uint64_t)256 << 10)

/* For tests: the size below which AUTO engines run calls on the CPU
 * (MPSNORM_METAL_MIN_CALL_BYTES, or the environment variable of that name). */
void mpsnorm_metal_route_set_min_call_bytes(uint64_t bytes);

/*
 * MPSNORM_OK if Metal can run this LCN case, else MPSNORM_ERR_UNSUPPORTED
 * with the reason in message (float64 data; kernel_width != kernel_height,
 * which MPS documents as required to be equal).
 */
int mpsnorm_metal_supports_lcn(const mpsnorm_lcn_params *params, const mpsnorm_tensor *x,
                               char *message, size_t size);
/* Same for instance normalization (float64 data). */
int mpsnorm_metal_supports_inorm(const mpsnorm_inorm_params *params, const mpsnorm_tensor *x,
                                 char *message, size_t size);

/*
 * What an engine bound to Metal keeps: the objc backend's cache (its MPS
 * kernels) and the classes of call (metal_selfcheck.h) that this engine's
 * Metal said it cannot run, which are then refused at once, before anything
 * is staged for the GPU. create: MPSNORM_OK or the status of the cache's
 * creation (BACKEND_UNAVAILABLE, OUT_OF_MEMORY).
 */
typedef struct mpsnorm_metal_binding mpsnorm_metal_binding;
int mpsnorm_metal_binding_create(mpsnorm_metal_binding **binding);
void mpsnorm_metal_binding_free(mpsnorm_metal_binding *binding);

/*
 * Run a validated, non-empty call on Metal, its arguments as validate.c
 * checked them. dy is NULL for the forward; dgamma / dbeta may be NULL.
 * Returns MPSNORM_ERR_UNSUPPORTED (nothing written) when the capability
 * check, the class's self-check verdict (metal_selfcheck.h) or the engine's
 * earlier refusal refuses the case, so the dispatcher may fall back to the CPU when may_fall_back is set;
 * *notice is then 1 when message holds a notice for the user (the class
 * failed its self-check on this call), to keep after the CPU has run it.
 * *timing: where a successful call's time went (zero otherwise).
 */
int mpsnorm_metal_route_lcn(mpsnorm_metal_binding *binding, const mpsnorm_lcn_params *params,
                            const mpsnorm_checked *dy, const mpsnorm_checked *x,
                            const mpsnorm_checked *out, int may_fall_back,
                            mpsnorm_metal_timing *timing, char *message, size_t size,
                            int *notice);
int mpsnorm_metal_route_instance_norm(mpsnorm_metal_binding *binding,
                                      const mpsnorm_inorm_params *params,
                                      const mpsnorm_checked *dy, const mpsnorm_checked *x,
                                      const mpsnorm_checked *out, const mpsnorm_checked *dgamma,
                                      const mpsnorm_checked *dbeta, int may_fall_back,
                                      mpsnorm_metal_timing *timing, char *message, size_t size,
                                      int *notice);

#endif /* MPSNORM_CORE_METAL_ROUTE_H */
