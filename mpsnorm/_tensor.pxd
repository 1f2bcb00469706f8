from cpython.buffer cimport Py_buffer
from cpython.ref cimport PyObject
from libc.stdint cimport int64_t
from mpsnorm.libmpsnorm cimport mpsnorm_tensor, mpsnorm_vector

# What keeps a caller's memory alive for one kernel call: a buffer-protocol
# view, or a consumed DLPack capsule (renamed "used_dltensor[_versioned]")
# whose managed tensor's deleter runs on release.
cdef struct Holding:
    Py_buffer view
    bint has_view
    PyObject *capsule    # owned reference, or NULL
    void *managed        # DLManagedTensor* or DLManagedTensorVersioned*
    bint versioned

# A caller's tensor held for the length of one kernel call, and the C
# descriptor of it. Acquire with the GIL; release in a finally block.
cdef struct HeldTensor:
    Holding holding
    bint held
    int ndim             # the Python-visible rank (3 or 4) and shape
    int64_t shape[4]
    mpsnorm_tensor tensor

cdef struct HeldVector:
    Holding holding
    bint held
    mpsnorm_vector vector

cdef enum Layout:
    LAYOUT_NCHW = 0
    LAYOUT_NHWC = 1

# Parses "NCHW" / "NHWC"; ValueError naming `where` otherwise.
cdef Layout parse_layout(object layout, str where) except *
cdef str layout_name(Layout layout)

# Borrows obj's memory (no copy) as a 3-D or 4-D float tensor in `layout`:
# through the buffer protocol when obj exports it, otherwise through DLPack
# (__dlpack__ / __dlpack_device__, CPU tensors only).
# TypeError: neither a buffer nor a DLPack tensor, unsupported dtype,
# non-native byte order.
# ValueError: wrong rank, strides that are not whole elements, not writable
# (when writable is set), a device other than the CPU, a DLPack export the
# producer refuses (e.g. a torch tensor that requires grad).
cdef int hold_tensor(HeldTensor *held, object obj, str name, str where, Layout layout,
                     bint writable) except -1

# Borrows obj as a writable 1-D vector (per-channel gradients), likewise.
cdef int hold_vector(HeldVector *held, object obj, str name, str where) except -1

cdef void release_tensor(HeldTensor *held) noexcept
cdef void release_vector(HeldVector *held) noexcept

# The Python-visible shape of a held tensor, as a tuple.
cdef tuple held_shape(const HeldTensor *held)

# ValueError unless `other` has `reference`'s Python shape and dtype.
cdef int require_like(const HeldTensor *reference, str reference_name,
                      const HeldTensor *other, str other_name, str where) except -1

# Holds a gradient call's inputs dy and x (read-only use) and checks they agree.
cdef int hold_input_pair(HeldTensor *held_dy, object dy, HeldTensor *held_x, object x,
                         str where, Layout layout) except -1

# Holds the output of a call on held_x: `out`, or a new array like x when it
# is None, writable and of x's shape and dtype. Returns the object to return.
cdef object hold_output(HeldTensor *held_out, object out, const HeldTensor *held_x, str where,
                        Layout layout)

# A new C-contiguous NumPy array of the held tensor's shape and dtype (the
# one place mpsnorm imports NumPy).
cdef object new_array_like(const HeldTensor *held, str where)

# A new NumPy vector of `length` elements of the C dtype.
cdef object new_vector(Py_ssize_t length, int dtype, str where)
