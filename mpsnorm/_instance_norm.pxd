# Layouts of the instance normalization extension types, for cimport.
from libc.stdint cimport int64_t

from mpsnorm._backend cimport Engine
from mpsnorm._tensor cimport Layout
from mpsnorm.libmpsnorm cimport mpsnorm_inorm_params


cdef class _InstanceNormKernel:
    cdef int64_t num_channels_value
    cdef float epsilon_value
    # Immutable float32 bytes, or None for the default; a call keeps its own
    # reference, so replacing them never frees memory a running call reads.
    cdef bytes gamma_bytes
    cdef bytes beta_bytes
    cdef Engine engine
    cdef Layout _layout
    cdef object _last_backend
    cdef str _where          # the class name that messages start with, set by __init__

    cdef int _setup(self, num_channels, gamma, beta, epsilon, layout, backend) except -1
    cdef bytes _channel_values(self, values, str name, int64_t count)
    cdef int _require_engine(self) except -1
    cdef mpsnorm_inorm_params _params(self, bytes gamma_bytes, bytes beta_bytes)
    cdef int _check_and_store(self, bytes gamma_bytes, bytes beta_bytes, float epsilon) except -1
    cdef object _as_array(self, bytes values, float default, str name)


cdef class InstanceNormalization(_InstanceNormKernel):
    pass


cdef class InstanceNormalizationGradient(_InstanceNormKernel):
    pass
