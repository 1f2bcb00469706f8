/*
 * mpsnorm.h -- the C ABI of mpsnorm.
 *
 * Local contrast normalization and instance normalization, forward and
 * gradient, as Apple's Metal Performance Shaders define them
 * (MPSCNNLocalContrastNormalization[Gradient],
 * MPSCNNInstanceNormalization[Gradient]). Two backends implement this one
 * contract: a portable C backend (every machine) and a Metal backend (macOS
 * with a Metal device). The Python package calls exactly these functions.
 *
 * Conventions
 *  - Every function that can fail returns an int status: MPSNORM_OK (0) or a
 *    negative mpsnorm_status. Nothing aborts the process, nothing throws.
 *  - A failing call writes nothing to any output.
 *  - Pointers to descriptors and parameters are borrowed for the duration of
 *    the call only; the library keeps no pointer after it returns.
 *
 * Thread safety
 *  - Every function may be called from any number of threads at once. Calls
 *    may share an engine, parameter structs and input tensors; each call's
 *    outputs must be memory no other running call reads or writes.
 *  - A parameter struct (and the gamma/beta arrays it points to) must not be
 *    modified while a call that was given it is running: the call reads it
 *    for its whole duration. Give each call its own copy to change parameters
 *    concurrently (the Python layer copies them for every call).
 *  - An engine must not be freed while a call uses it.
 *  - mpsnorm_set_num_threads may run concurrently with kernel calls; each call
 *    reads the setting once, when it starts.
 */
#ifndef MPSNORM_H
#define MPSNORM_H

#include <stddef.h>
#include <stdint.h>

#if defined(_WIN32)
#  if defined(MPSNORM_BUILDING)
#    define MPSNORM_API __declspec(dllexport)
#  else
#    define MPSNORM_API __declspec(dllimport)
#  endif
#elif defined(__GNUC__) || defined(__clang__)
#  define MPSNORM_API __attribute__((visibility("default")))
#else
#  define MPSNORM_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

#define MPSNORM_VERSION_MAJOR 0
#define MPSNORM_VERSION_MINOR 2
#define MPSNORM_VERSION_PATCH 0
#define MPSNORM_VERSION_STRING "0.2.0"

/* Largest accepted kernel width or height. */
#define MPSNORM_MAX_KERNEL_SIZE 65535

/* Size of mpsnorm_report.message, including the terminating NUL. */
#define MPSNORM_MESSAGE_SIZE 256

/* ------------------------------------------------------------------------ */
/* Status codes                                                              */

typedef enum mpsnorm_status {
    MPSNORM_OK = 0,
    MPSNORM_ERR_NULL_POINTER = -1,      /* a required pointer was NULL */
    MPSNORM_ERR_INVALID_PARAMETER = -2, /* a parameter is out of range or not finite */
    MPSNORM_ERR_BAD_SHAPE = -3,         /* negative size, shapes that disagree, wrong channel count */
    MPSNORM_ERR_BAD_DTYPE = -4,         /* unknown dtype, or dtypes that disagree */
    MPSNORM_ERR_BAD_LAYOUT = -5,        /* misaligned data or a stride that overflows */
    MPSNORM_ERR_OVERLAP = -6,           /* an output shares memory with an input or another output */
    MPSNORM_ERR_OUT_OF_MEMORY = -7,     /* scratch memory could not be allocated */
    MPSNORM_ERR_UNSUPPORTED = -8,       /* the requested backend cannot run this case */
    MPSNORM_ERR_BACKEND_UNAVAILABLE = -9, /* the requested backend does not exist here */
    MPSNORM_ERR_BACKEND_FAILURE = -10   /* the backend failed while running (message says why) */
} mpsnorm_status;

/* A static, never-NULL English description of a status code. */
MPSNORM_API const char *mpsnorm_status_string(int status);

/* ------------------------------------------------------------------------ */
/* Version                                                                   */

/* MPSNORM_VERSION_STRING of the library actually loaded. */
MPSNORM_API const char *mpsnorm_version(void);

/* ------------------------------------------------------------------------ */
/* Tensors                                                                   */

typedef enum mpsnorm_dtype {
    MPSNORM_FLOAT32 = 0,
    MPSNORM_FLOAT16 = 1, /* IEEE 754 binary16, native byte order */
    MPSNORM_FLOAT64 = 2  /* CPU backend only */
} mpsnorm_dtype;

/* Bytes per element of a dtype; 0 for an unknown dtype. */
MPSNORM_API size_t mpsnorm_dtype_size(int dtype);

/*
 * A batch of images described logically as (N, C, H, W) with a stride per
 * axis, counted in ELEMENTS (not bytes), any sign. NHWC memory is simply an
 * NCHW descriptor with strides (H*W*C, 1, W*C, C): the kernels never need to
 * know the layout. `data` points at element (0, 0, 0, 0) and must be aligned
 * to the element size. A size may be 0 (an empty tensor).
 */
typedef struct mpsnorm_tensor {
    void *data;
    int32_t dtype;        /* mpsnorm_dtype */
    int64_t shape[4];     /* N, C, H, W */
    int64_t strides[4];   /* element strides of N, C, H, W */
} mpsnorm_tensor;

/*
 * A one-dimensional array of `length` elements, element stride `stride`.
 * Used for per-channel gamma/beta gradients (float32, or float64 for float64
 * inputs).
 */
typedef struct mpsnorm_vector {
    void *data;
    int32_t dtype;        /* mpsnorm_dtype */
    int64_t length;
    int64_t stride;
} mpsnorm_vector;

/* ------------------------------------------------------------------------ */
/* Reports                                                                   */

/*
 * Optional report of a call (pass NULL to ignore). After a kernel call,
 * backend_used says which backend ran it: an engine bound to Metal runs a case Metal
 * cannot (float64, kernel_width != kernel_height) on the CPU, visibly here,
 * unless it was created with MPSNORM_BACKEND_METAL explicitly, in which case
 * the call fails with MPSNORM_ERR_UNSUPPORTED. On error, message says what
 * was wrong (which argument, which value), NUL-terminated. After a successful
 * call message is empty, or holds a notice to show the user once: the Metal
 * self-check of this class of call failed (see "Metal self-check" below), so
 * this call and the later ones of its class run on the CPU.
 */
typedef struct mpsnorm_report {
    int32_t backend_used;                 /* mpsnorm_backend; CPU or METAL */
    char message[MPSNORM_MESSAGE_SIZE];
    /* Where a successful Metal call's time went (0 for a call the CPU ran):
     * the CPU's packing of the tensors into MPS's texel layout and out of it,
     * and the GPU's time on the call's command buffers, summed
     * (GPUEndTime - GPUStartTime of each; 0 before macOS 10.15, which has no
     * such times). */
    double staging_seconds;
    double gpu_seconds;
} mpsnorm_report;

/* ------------------------------------------------------------------------ */
/* Parameters                                                                */

/*
 * Local contrast normalization (both forward and gradient). Values are
 * float32 like MPS's properties. Window of pixel (row j, column i): columns
 * [i - kw/2, i + (kw-1)/2], rows [j - kh/2, j + (kh-1)/2], zero outside
 * (an even window reaches one pixel further up and left: MPS's convention,
 * docs/SPEC.md).
 */
typedef struct mpsnorm_lcn_params {
    int64_t kernel_width;   /* 1 .. MPSNORM_MAX_KERNEL_SIZE */
    int64_t kernel_height;  /* 1 .. MPSNORM_MAX_KERNEL_SIZE */
    float alpha, beta, delta, p0, pm, ps; /* finite */
} mpsnorm_lcn_params;

/*
 * Fills MPS's defaults: alpha 0, beta 0.5, delta 1/1024, p0 1, pm 0, ps 1,
 * with the given kernel size. Returns MPSNORM_ERR_NULL_POINTER for a NULL
 * params, MPSNORM_ERR_INVALID_PARAMETER for a size outside
 * 1..MPSNORM_MAX_KERNEL_SIZE (params are still filled, with that size).
 */
MPSNORM_API int mpsnorm_lcn_params_init(mpsnorm_lcn_params *params,
                                        int64_t kernel_width, int64_t kernel_height);

/* MPSNORM_OK if every field is in range; else the failing status, with the
 * reason in report->message when report is not NULL. */
MPSNORM_API int mpsnorm_lcn_params_check(const mpsnorm_lcn_params *params, mpsnorm_report *report);

/*
 * Instance normalization. `gamma` and `beta` point at `num_channels` float32
 * values each, or are NULL for gamma = 1 / beta = 0. They are borrowed for
 * the duration of a call only. epsilon must be finite and >= 0.
 */
typedef struct mpsnorm_inorm_params {
    int64_t num_channels;   /* >= 1 */
    const float *gamma;     /* NULL: all ones */
    const float *beta;      /* NULL: all zeros (unused by the gradient) */
    float epsilon;
} mpsnorm_inorm_params;

/* Fills num_channels, gamma = beta = NULL, epsilon = 1e-5. */
MPSNORM_API int mpsnorm_inorm_params_init(mpsnorm_inorm_params *params, int64_t num_channels);

/* MPSNORM_OK if every field is in range (gamma/beta values must be finite);
 * else the failing status, with the reason in report->message if given. */
MPSNORM_API int mpsnorm_inorm_params_check(const mpsnorm_inorm_params *params, mpsnorm_report *report);

/* ------------------------------------------------------------------------ */
/* Backends and engines                                                      */

typedef enum mpsnorm_backend {
    MPSNORM_BACKEND_AUTO = 0,  /* Metal where available, else CPU */
    MPSNORM_BACKEND_CPU = 1,
    MPSNORM_BACKEND_METAL = 2
} mpsnorm_backend;

/* "auto", "cpu", "metal"; "unknown" for anything else. */
MPSNORM_API const char *mpsnorm_backend_name(int backend);

/*
 * 1 if the backend can run on this machine now, else 0. CPU is always
 * available; Metal needs a macOS build and a device MPS supports (the first
 * query creates the Metal device; later queries are cheap).
 */
MPSNORM_API int mpsnorm_backend_available(int backend);

/*
 * An engine binds kernels to one backend and holds that backend's cached
 * state (on Metal: the MPS kernel objects for the parameters last used).
 * One engine may be shared by any number of threads. Passing NULL as the
 * engine to a kernel means the CPU backend.
 *
 * mpsnorm_engine_create: `requested` AUTO resolves to Metal when available,
 * else CPU. Errors: NULL_POINTER, INVALID_PARAMETER (unknown backend),
 * BACKEND_UNAVAILABLE (METAL requested where it is absent), OUT_OF_MEMORY.
 * On error *engine is set to NULL.
 */
typedef struct mpsnorm_engine mpsnorm_engine;
MPSNORM_API int mpsnorm_engine_create(int requested, mpsnorm_engine **engine);
/* Frees an engine; NULL is accepted. No call may be using it. */
MPSNORM_API void mpsnorm_engine_free(mpsnorm_engine *engine);
/* The resolved backend (CPU or METAL); CPU for a NULL engine. */
MPSNORM_API int mpsnorm_engine_backend(const mpsnorm_engine *engine);


/* ------------------------------------------------------------------------ */
/* Metal self-check                                                          */

/*
 * Before the Metal backend runs a class of call for the first time in a
 * process, it runs that class once on a small deterministic input, on Metal
 * and on the CPU backend (in float64), and compares the two within
 * docs/SPEC.md's tolerance for the dtype. A class is: the kernel, the dtype,
 * the memory order of the batch Metal receives (NCHW or NHWC), for LCN
 * whether the window is even and whether alpha is 0, and for the
 * instance-norm gradient whether dgamma/dbeta are requested. The check uses
 * the parameters of the first call of its class.
 *  - PASSED: the class runs on Metal.
 *  - FAILED: an AUTO engine runs the class on the CPU from then on (the call
 *    that ran the check carries a notice in report->message); a METAL engine
 *    fails the call with MPSNORM_ERR_BACKEND_FAILURE and the same words.
 *  - UNSUPPORTED: this system's MPS cannot run the class (e.g. it gives no
 *    gradient state): AUTO runs it on the CPU, METAL fails with
 *    MPSNORM_ERR_UNSUPPORTED, without staging the batch for Metal again.
 * MPSNORM_METAL_SELFCHECK=0 in the environment (read once) skips the checks:
 * every class is TRUSTED (MPS is trusted without a check). Verdicts last for
 * the process; a process forked from one that created the Metal device does
 * not use Metal (Metal is not fork-safe): there the backend is unavailable.
 */
typedef enum mpsnorm_kernel {
    MPSNORM_KERNEL_LCN_FORWARD = 0,
    MPSNORM_KERNEL_LCN_GRADIENT = 1,
    MPSNORM_KERNEL_INORM_FORWARD = 2,
    MPSNORM_KERNEL_INORM_GRADIENT = 3
} mpsnorm_kernel;

typedef enum mpsnorm_metal_verdict {
    MPSNORM_METAL_UNCHECKED = 0,
    MPSNORM_METAL_PASSED = 1,
    MPSNORM_METAL_FAILED = 2,
    MPSNORM_METAL_UNSUPPORTED = 3,
    MPSNORM_METAL_TRUSTED = 4
} mpsnorm_metal_verdict;

typedef struct mpsnorm_metal_check {
    /* the class */
    int32_t kernel;              /* mpsnorm_kernel */
    int32_t dtype;               /* MPSNORM_FLOAT32 or MPSNORM_FLOAT16 */
    int32_t nhwc;                /* 1: channel-interleaved batch */
    int32_t even_window;         /* LCN only, else 0 */
    int32_t alpha_nonzero;       /* LCN only, else 0 */
    int32_t parameter_gradients; /* instance-norm gradient only, else 0 */
    /* what is known of it */
    int32_t verdict;             /* mpsnorm_metal_verdict */
    int32_t gradient_alone;      /* LCN gradient PASSED without its forward pass (MPS's state
                                    holds only properties): the class's calls skip the forward */
    double error;                /* PASSED/FAILED: largest |Metal - CPU| / scale */
    double tolerance;            /* docs/SPEC.md's for the dtype */
    double seconds;              /* how long the check took */
    char description[96];        /* e.g. "LCN gradient, float16, NHWC, even window, alpha != 0" */
    char message[MPSNORM_MESSAGE_SIZE]; /* FAILED/UNSUPPORTED: why */
} mpsnorm_metal_check;

/* Number of classes (indices 0 .. count-1, every class of the list above). */
MPSNORM_API int mpsnorm_metal_check_count(void);

/* What is known of class `index` so far. INVALID_PARAMETER for a bad index,
 * NULL_POINTER for a NULL check. */
MPSNORM_API int mpsnorm_metal_check_get(int index, mpsnorm_metal_check *check);

/*
 * Checks class `index` now, with representative parameters (a 3x3 or 4x4
 * window, alpha 1 or 0, MPS's other defaults; gamma/beta of mixed signs),
 * unless its verdict is already known, and fills *check. Returns MPSNORM_OK
 * whatever the verdict; BACKEND_UNAVAILABLE where there is no Metal backend;
 * another status when the check could not run (check->message says why).
 */
MPSNORM_API int mpsnorm_metal_check_run(int index, mpsnorm_metal_check *check);

/* ------------------------------------------------------------------------ */
/* Threads (CPU backend)                                                     */

/*
 * Number of threads a CPU kernel call splits its planes over. Default: the
 * number of CPUs this process may run on. Results are bitwise identical for
 * every thread count. The setting is process-wide and read once at the start
 * of each call. Errors: INVALID_PARAMETER for n < 1 or n > 1024.
 */
MPSNORM_API int mpsnorm_set_num_threads(int n);
MPSNORM_API int mpsnorm_get_num_threads(void);

/* ------------------------------------------------------------------------ */
/* Kernels                                                                   */
/*
 * Common rules: all tensors of one call have the same shape and dtype;
 * outputs must not overlap inputs or each other (judged by the address range
 * each descriptor spans); data must be aligned to the element size. Inputs
 * may overlap each other. Errors: NULL_POINTER, INVALID_PARAMETER,
 * BAD_SHAPE, BAD_DTYPE, BAD_LAYOUT, OVERLAP, OUT_OF_MEMORY, UNSUPPORTED,
 * BACKEND_FAILURE (Metal only).
 */

/* y = LCN(x). */
MPSNORM_API int mpsnorm_lcn_forward(mpsnorm_engine *engine, const mpsnorm_lcn_params *params,
                                    const mpsnorm_tensor *x, const mpsnorm_tensor *y,
                                    mpsnorm_report *report);

/* dx = (dLCN/dx)^T dy, the exact derivative of mpsnorm_lcn_forward at x. */
MPSNORM_API int mpsnorm_lcn_gradient(mpsnorm_engine *engine, const mpsnorm_lcn_params *params,
                                     const mpsnorm_tensor *dy, const mpsnorm_tensor *x,
                                     const mpsnorm_tensor *dx, mpsnorm_report *report);

/* y = gamma[c] * (x - mean) / sqrt(var + epsilon) + beta[c], per plane.
 * x's channel count must equal params->num_channels. */
MPSNORM_API int mpsnorm_inorm_forward(mpsnorm_engine *engine, const mpsnorm_inorm_params *params,
                                      const mpsnorm_tensor *x, const mpsnorm_tensor *y,
                                      mpsnorm_report *report);

/*
 * dx, and optionally dgamma[c] = sum(dy * xhat), dbeta[c] = sum(dy) over the
 * batch and pixels (either may be NULL). dgamma/dbeta have length C and dtype
 * FLOAT64 for FLOAT64 inputs, else FLOAT32.
 */
MPSNORM_API int mpsnorm_inorm_gradient(mpsnorm_engine *engine, const mpsnorm_inorm_params *params,
                                       const mpsnorm_tensor *dy, const mpsnorm_tensor *x,
                                       const mpsnorm_tensor *dx, const mpsnorm_vector *dgamma,
                                       const mpsnorm_vector *dbeta, mpsnorm_report *report);

#ifdef __cplusplus
}
#endif

#endif /* MPSNORM_H */
