# cython: language_level=3
"""Caller buffers as C tensor descriptors: borrowed, never copied."""
import sys

from cpython.buffer cimport (PyBUF_FORMAT, PyBUF_STRIDES, PyObject_GetBuffer,
                             PyBuffer_Release)
from libc.stdint cimport int64_t
from libc.string cimport memset

from mpsnorm.libmpsnorm cimport *

cdef bint NATIVE_LITTLE = sys.byteorder == "little"

cdef dict DTYPE_NAMES = {MPSNORM_FLOAT32: "float32", MPSNORM_FLOAT16: "float16",
                         MPSNORM_FLOAT64: "float64"}

# Struct-module type codes of the dtypes mpsnorm refuses, to name them in errors.
cdef dict FORMAT_KINDS = {"b": "int", "B": "uint", "h": "int", "H": "uint", "i": "int",
                          "I": "uint", "l": "int", "L": "uint", "q": "int", "Q": "uint",
                          "n": "int", "N": "uint", "?": "bool", "c": "bytes", "s": "bytes",
                          "Zf": "complex", "Zd": "complex", "Zg": "complex", "g": "float"}


cdef Layout parse_layout(object layout, str where) except *:
    if layout == "NCHW":
        return LAYOUT_NCHW
    if layout == "NHWC":
        return LAYOUT_NHWC
    raise ValueError(f"{where}: layout must be 'NCHW' or 'NHWC', got {layout!r}")


cdef str layout_name(Layout layout):
    return "NHWC" if layout == LAYOUT_NHWC else "NCHW"


cdef str describe_format(str code, Py_ssize_t itemsize):
    kind = FORMAT_KINDS.get(code)
    if kind is None:
        return f"format {code!r}"
    if kind in ("bool", "bytes"):
        return kind
    return f"{kind}{itemsize * 8}"


cdef int parse_dtype(const char *format, Py_ssize_t itemsize, str name, str where) except -1:
    code = format.decode("ascii", "replace") if format != NULL else "B"
    order = ""
    if code and code[0] in "@=<>!":
        order, code = code[0], code[1:]
    if (order in (">", "!") and NATIVE_LITTLE) or (order == "<" and not NATIVE_LITTLE):
        raise TypeError(f"{where}: {name} has non-native byte order ({order}{code}); "
                        f"byte-swap it first")
    if code == "f" and itemsize == 4:
        return MPSNORM_FLOAT32
    if code == "e" and itemsize == 2:
        return MPSNORM_FLOAT16
    if code == "d" and itemsize == 8:
        return MPSNORM_FLOAT64
    raise TypeError(f"{where}: {name} has unsupported dtype {describe_format(code, itemsize)}; "
                    f"expected float32, float16 or float64")


cdef int get_buffer(Py_buffer *view, object obj, str name, str where, bint writable) except -1:
    try:
        PyObject_GetBuffer(obj, view, PyBUF_STRIDES | PyBUF_FORMAT)
    except TypeError:
        raise TypeError(f"{where}: {name} must support the buffer protocol (a NumPy array, "
                        f"memoryview, ...), got {type(obj).__name__}") from None
    except BufferError as error:
        raise ValueError(f"{where}: {name} cannot be used as a strided buffer: {error}") from None
    if writable and view.readonly:
        PyBuffer_Release(view)
        raise ValueError(f"{where}: {name} is read-only")
    return 0


cdef int64_t element_stride(const Py_buffer *view, int axis, str name, str where) except? -1:
    cdef Py_ssize_t stride = view.strides[axis]
    if stride % view.itemsize != 0:
        raise ValueError(f"{where}: {name} has stride {stride} bytes on axis {axis}, "
                         f"not a multiple of its {view.itemsize}-byte elements")
    return stride // view.itemsize


cdef tuple view_shape(const Py_buffer *view):
    return tuple([view.shape[i] for i in range(view.ndim)])


cdef int describe_tensor(HeldTensor *held, str name, str where, Layout layout) except -1:
    cdef Py_buffer *view = &held.view
    cdef mpsnorm_tensor *tensor = &held.tensor
    cdef int first = view.ndim - 3  # 0 for a single image, 1 for a batch
    cdef int axis
    cdef int logical
    # The dtype first: a bytes object is a 1-D buffer, refused for its type.
    tensor.dtype = parse_dtype(view.format, view.itemsize, name, where)
    if view.ndim != 3 and view.ndim != 4:
        expected = layout_name(layout)
        raise ValueError(f"{where}: {name} must be 4-D ({expected[0]}, {expected[1]}, "
                         f"{expected[2]}, {expected[3]}) or a 3-D single image, got "
                         f"{view.ndim}-D with shape {view_shape(view)}")
    tensor.data = view.buf
    tensor.shape[0] = 1
    tensor.strides[0] = 0
    # Python axes, in order, hold these logical axes (0 N, 1 C, 2 H, 3 W).
    order = (0, 2, 3, 1) if layout == LAYOUT_NHWC else (0, 1, 2, 3)
    for axis in range(view.ndim):
        logical = order[axis + 1 - first]
        tensor.shape[logical] = view.shape[axis]
        tensor.strides[logical] = element_stride(view, axis, name, where)
    return 0


cdef int hold_tensor(HeldTensor *held, object obj, str name, str where, Layout layout,
                     bint writable) except -1:
    memset(held, 0, sizeof(HeldTensor))
    get_buffer(&held.view, obj, name, where, writable)
    held.held = True
    try:
        describe_tensor(held, name, where, layout)
    except BaseException:
        release_tensor(held)
        raise
    return 0


cdef int hold_vector(HeldVector *held, object obj, str name, str where) except -1:
    memset(held, 0, sizeof(HeldVector))
    get_buffer(&held.view, obj, name, where, True)
    held.held = True
    try:
        held.vector.dtype = parse_dtype(held.view.format, held.view.itemsize, name, where)
        if held.view.ndim != 1:
            raise ValueError(f"{where}: {name} must be 1-D, got shape {view_shape(&held.view)}")
        held.vector.data = held.view.buf
        held.vector.length = held.view.shape[0]
        held.vector.stride = element_stride(&held.view, 0, name, where)
    except BaseException:
        release_vector(held)
        raise
    return 0


cdef void release_tensor(HeldTensor *held) noexcept:
    if held.held:
        PyBuffer_Release(&held.view)
        held.held = False


cdef void release_vector(HeldVector *held) noexcept:
    if held.held:
        PyBuffer_Release(&held.view)
        held.held = False


cdef tuple held_shape(const HeldTensor *held):
    return view_shape(&held.view)


cdef int require_like(const HeldTensor *reference, str reference_name,
                      const HeldTensor *other, str other_name, str where) except -1:
    reference_shape = held_shape(reference)
    other_shape = held_shape(other)
    if other_shape != reference_shape:
        raise ValueError(f"{where}: {other_name} has shape {other_shape} but {reference_name} "
                         f"has shape {reference_shape}")
    if other.tensor.dtype != reference.tensor.dtype:
        raise ValueError(f"{where}: {other_name} has dtype {DTYPE_NAMES[other.tensor.dtype]} "
                         f"but {reference_name} has dtype {DTYPE_NAMES[reference.tensor.dtype]}")
    return 0


cdef object new_array_like(const HeldTensor *held):
    import numpy
    return numpy.empty(held_shape(held), dtype=DTYPE_NAMES[held.tensor.dtype])


cdef object new_vector(Py_ssize_t length, int dtype):
    import numpy
    return numpy.empty((length,), dtype=DTYPE_NAMES[dtype])
