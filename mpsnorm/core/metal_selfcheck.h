/*
 * metal_selfcheck.h -- whether a class of call may run on Metal (mpsnorm.h,
 * "Metal self-check"): each class is run once per process on a small input on
 * Metal and on the CPU backend in float64, and the verdict is kept. Also the
 * fork rule: a child of a process that created the Metal device never uses it.
 * Plain C; metal_route.c asks before every Metal call.
 */
#ifndef MPSNORM_CORE_METAL_SELFCHECK_H
#define MPSNORM_CORE_METAL_SELFCHECK_H

#include "backend.h"

/* Classes of call: 16 LCN forward, 16 LCN gradient, 4 instance-norm forward, 8 gradient. */
#define MPSNORM_METAL_CLASS_COUNT 44

/* The class of a call (mpsnorm_metal_check's first fields). */
typedef struct mpsnorm_metal_class {
    int kernel;              /* mpsnorm_kernel */
    int dtype;               /* MPSNORM_FLOAT32 or MPSNORM_FLOAT16 */
    int nhwc;
    int even_window;         /* LCN */
    int alpha_nonzero;       /* LCN */
    int parameter_gradients; /* instance-norm gradient */
} mpsnorm_metal_class;

/*
 * May a call of this class run on Metal? Checks the class first if it has no
 * verdict yet, with the call's parameters (lcn for LCN, inorm for instance
 * norm; channels: the call's channel count). Returns
 *  - MPSNORM_OK: run it on Metal;
 *  - MPSNORM_ERR_UNSUPPORTED: run it on the CPU if the engine may fall back
 *    (the reason in message; *notice = 1 when the message is a notice to show
 *    the user, i.e. this call found the class FAILED), else refuse it;
 *  - MPSNORM_ERR_BACKEND_FAILURE: the class FAILED and the engine may not
 *    fall back; or the check itself could not run on Metal;
 *  - MPSNORM_ERR_OUT_OF_MEMORY: the check's buffers could not be allocated.
 * *with_forward: for the LCN gradient, whether its calls must encode the
 * forward pass that fills the gradient states (backend.h): 0 only where the
 * check found the gradient right without it.
 */
int mpsnorm_metal_trust(mpsnorm_metal_cache *cache, const mpsnorm_metal_class *cls,
                        const mpsnorm_lcn_params *lcn, const mpsnorm_inorm_params *inorm,
                        int64_t channels, int may_fall_back, char *message, size_t size,
                        int *notice, int *with_forward);

/* 0 .. MPSNORM_METAL_CLASS_COUNT - 1 */
int mpsnorm_metal_class_index(const mpsnorm_metal_class *cls);

/* Called when the Metal device is created: from then on a forked child
 * process reports Metal unavailable. */
void mpsnorm_metal_watch_fork(void);

/* 1 in a child forked after the Metal device was created, else 0. */
int mpsnorm_metal_forked(void);

/* For the C tests: forgets every verdict; enabled = 0 trusts every class
 * (as MPSNORM_METAL_SELFCHECK=0 does). Not thread-safe with calls. */
void mpsnorm_metal_selfcheck_reset(int enabled);

#endif /* MPSNORM_CORE_METAL_SELFCHECK_H */
