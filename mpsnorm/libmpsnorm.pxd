# The C ABI of mpsnorm (include/mpsnorm.h), for Cython. Every function here
# may be called without the GIL: `from mpsnorm.libmpsnorm cimport *`.
from libc.stdint cimport int32_t, int64_t

cdef extern from "mpsnorm.h" nogil:
    enum:
        MPSNORM_VERSION_MAJOR
        MPSNORM_VERSION_MINOR
        MPSNORM_VERSION_PATCH
        MPSNORM_MAX_KERNEL_SIZE
        MPSNORM_MESSAGE_SIZE
    const char *MPSNORM_VERSION_STRING

    ctypedef enum mpsnorm_status:
        MPSNORM_OK
        MPSNORM_ERR_NULL_POINTER
        MPSNORM_ERR_INVALID_PARAMETER
        MPSNORM_ERR_BAD_SHAPE
        MPSNORM_ERR_BAD_DTYPE
        MPSNORM_ERR_BAD_LAYOUT
        MPSNORM_ERR_OVERLAP
        MPSNORM_ERR_OUT_OF_MEMORY
        MPSNORM_ERR_UNSUPPORTED
        MPSNORM_ERR_BACKEND_UNAVAILABLE
        MPSNORM_ERR_BACKEND_FAILURE

    ctypedef enum mpsnorm_dtype:
        MPSNORM_FLOAT32
        MPSNORM_FLOAT16
        MPSNORM_FLOAT64

    ctypedef enum mpsnorm_backend:
        MPSNORM_BACKEND_AUTO
        MPSNORM_BACKEND_CPU
        MPSNORM_BACKEND_METAL

    ctypedef struct mpsnorm_tensor:
        void *data
        int32_t dtype
        int64_t shape[4]
        int64_t strides[4]

    ctypedef struct mpsnorm_vector:
        void *data
        int32_t dtype
        int64_t length
        int64_t stride

    ctypedef struct mpsnorm_report:
        int32_t backend_used
        char message[256]
        double staging_seconds
        double gpu_seconds

    ctypedef struct mpsnorm_lcn_params:
        int64_t kernel_width
        int64_t kernel_height
        float alpha
        float beta
        float delta
        float p0
        float pm
        float ps

    ctypedef struct mpsnorm_inorm_params:
        int64_t num_channels
        const float *gamma
        const float *beta
        float epsilon

    ctypedef struct mpsnorm_engine:
        pass

    const char *mpsnorm_status_string(int status)
    const char *mpsnorm_version()
    size_t mpsnorm_dtype_size(int dtype)

    int mpsnorm_lcn_params_init(mpsnorm_lcn_params *params, int64_t kernel_width,
                                int64_t kernel_height)
    int mpsnorm_lcn_params_check(const mpsnorm_lcn_params *params, mpsnorm_report *report)
    int mpsnorm_inorm_params_init(mpsnorm_inorm_params *params, int64_t num_channels)
    int mpsnorm_inorm_params_check(const mpsnorm_inorm_params *params, mpsnorm_report *report)

    const char *mpsnorm_backend_name(int backend)
    int mpsnorm_backend_available(int backend)
    int mpsnorm_engine_create(int requested, mpsnorm_engine **engine)
    void mpsnorm_engine_free(mpsnorm_engine *engine)
    int mpsnorm_engine_backend(const mpsnorm_engine *engine)

    int mpsnorm_set_num_threads(int n)
    int mpsnorm_get_num_threads()

    ctypedef enum mpsnorm_kernel:
        MPSNORM_KERNEL_LCN_FORWARD
        MPSNORM_KERNEL_LCN_GRADIENT
        MPSNORM_KERNEL_INORM_FORWARD
        MPSNORM_KERNEL_INORM_GRADIENT

    ctypedef enum mpsnorm_metal_verdict:
        MPSNORM_METAL_UNCHECKED
        MPSNORM_METAL_PASSED
        MPSNORM_METAL_FAILED
        MPSNORM_METAL_UNSUPPORTED
        MPSNORM_METAL_TRUSTED

    ctypedef struct mpsnorm_metal_check:
        int32_t kernel
        int32_t dtype
        int32_t nhwc
        int32_t even_window
        int32_t alpha_nonzero
        int32_t parameter_gradients
        int32_t verdict
        int32_t gradient_alone
        double error
        double tolerance
        double seconds
        char description[96]
        char message[256]

    int mpsnorm_metal_check_count()
    int mpsnorm_metal_check_get(int index, mpsnorm_metal_check *check)
    int mpsnorm_metal_check_run(int index, mpsnorm_metal_check *check)

    int mpsnorm_lcn_forward(mpsnorm_engine *engine, const mpsnorm_lcn_params *params,
                            const mpsnorm_tensor *x, const mpsnorm_tensor *y,
                            mpsnorm_report *report)
    int mpsnorm_lcn_gradient(mpsnorm_engine *engine, const mpsnorm_lcn_params *params,
                             const mpsnorm_tensor *dy, const mpsnorm_tensor *x,
                             const mpsnorm_tensor *dx, mpsnorm_report *report)
    int mpsnorm_inorm_forward(mpsnorm_engine *engine, const mpsnorm_inorm_params *params,
                              const mpsnorm_tensor *x, const mpsnorm_tensor *y,
                              mpsnorm_report *report)
    int mpsnorm_inorm_gradient(mpsnorm_engine *engine, const mpsnorm_inorm_params *params,
                               const mpsnorm_tensor *dy, const mpsnorm_tensor *x,
                               const mpsnorm_tensor *dx, const mpsnorm_vector *dgamma,
                               const mpsnorm_vector *dbeta, mpsnorm_report *report)
