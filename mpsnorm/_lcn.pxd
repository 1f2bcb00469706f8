# Layouts of the local contrast normalization extension types, so that other
# Cython code can cimport them (e.g. read `params` or `engine` directly).
from mpsnorm._backend cimport Engine
from mpsnorm._tensor cimport Layout
from mpsnorm.libmpsnorm cimport mpsnorm_lcn_params


cdef class _LocalContrastKernel:
    cdef mpsnorm_lcn_params params
    cdef Engine engine
    cdef Layout _layout
    cdef object _last_backend
    cdef str _where          # the class name that messages start with, set by __init__

    cdef int _require_engine(self) except -1
    cdef int _set(self, str name, object value) except -1


cdef class LocalContrastNormalization(_LocalContrastKernel):
    pass


cdef class LocalContrastNormalizationGradient(_LocalContrastKernel):
    pass
