# cython: language_level=3, auto_pickle=False
"""mpsnorm's extension module: local contrast and instance normalization
kernels over caller buffers, their backends and the CPU thread count.

One concept per included file:
    _status.pxi        C status codes as Python exceptions
    _parameters.pxi    Python values as C parameter types
    _tensor.pxi        caller buffers held as C tensor descriptors
    _backend.pxi       backends and engines
    _threads.pxi       the CPU backend's thread count
    _kernel.pxi        the kernel base class: one call's sequence, vectorcall
    _lcn.pxi           local contrast normalization and its gradient
    _instance_norm.pxi instance normalization and its gradient
"""
import sys

from cpython.buffer cimport (PyBUF_FORMAT, PyBUF_STRIDES, Py_buffer, PyBuffer_Release,
                             PyObject_CheckBuffer,
                             PyObject_GetBuffer)
from cpython.number cimport PyNumber_Index
from cpython.object cimport PyTypeObject
from cpython.pycapsule cimport PyCapsule_GetPointer, PyCapsule_IsValid, PyCapsule_SetName
from cpython.ref cimport Py_INCREF, Py_XDECREF, PyObject
from cpython.tuple cimport PyTuple_GET_ITEM, PyTuple_GET_SIZE
from libc.math cimport fabs, isfinite
from libc.stdint cimport INT64_MAX, INT64_MIN, int64_t

from mpsnorm._dlpack cimport *
from mpsnorm.libmpsnorm cimport *

include "_status.pxi"
include "_parameters.pxi"
include "_tensor.pxi"
include "_backend.pxi"
include "_threads.pxi"
include "_kernel.pxi"
include "_lcn.pxi"
include "_instance_norm.pxi"

enable_vectorcall((LocalContrastNormalization, LocalContrastNormalizationGradient,
                   InstanceNormalization, InstanceNormalizationGradient))
