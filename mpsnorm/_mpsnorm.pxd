# The C layouts of mpsnorm's extension types, for `cimport` (e.g. read a
# kernel's `params` or `engine` directly):
#     from mpsnorm._mpsnorm cimport LocalContrastNormalizationGradient
from libc.stdint cimport int64_t
from mpsnorm.libmpsnorm cimport mpsnorm_engine, mpsnorm_lcn_params


cdef enum Layout:
    LAYOUT_NCHW = 0
    LAYOUT_NHWC = 1


# What a kernel object computes; fixes its call's arguments and C entry point.
cdef enum Operation:
    LCN_FORWARD
    LCN_GRADIENT
    INSTANCE_NORM_FORWARD
    INSTANCE_NORM_GRADIENT


cdef class Engine:
    """Owns one C engine. A kernel object holds one, and every call holds its
    own reference while it runs, so replacing an object's engine (a second
    __init__) never frees one a running call uses."""
    cdef mpsnorm_engine *ptr


cdef class _Kernel:
    # The instance's vectorcall entry (PEP 590), set by __init__: calls skip
    # the argument tuple and keyword dict of tp_call (NULL: they take it).
    cdef void *_vectorcall
    cdef Engine engine
    cdef Layout _layout
    cdef object _last_backend
    cdef double _last_staging_seconds, _last_gpu_seconds
    cdef str _where          # the class name that messages start with, set by __init__

    cdef void _bind(self, str where, Layout layout, Engine engine) noexcept
    cdef Operation _operation(self) noexcept
    cdef object _call(self, object dy, object x, object out, object out_gamma, object out_beta)


cdef class _LocalContrastKernel(_Kernel):
    cdef mpsnorm_lcn_params params


cdef class LocalContrastNormalization(_LocalContrastKernel):
    cdef Operation _operation(self) noexcept


cdef class LocalContrastNormalizationGradient(_LocalContrastKernel):
    cdef Operation _operation(self) noexcept


cdef class _InstanceNormKernel(_Kernel):
    cdef int64_t num_channels_value
    cdef float epsilon_value
    # Immutable float32 bytes, or None for the default; a call keeps its own
    # reference, so replacing them never frees memory a running call reads.
    cdef bytes gamma_bytes
    cdef bytes beta_bytes


cdef class InstanceNormalization(_InstanceNormKernel):
    cdef Operation _operation(self) noexcept


cdef class InstanceNormalizationGradient(_InstanceNormKernel):
    cdef Operation _operation(self) noexcept
