# Caller buffers as C tensor descriptors: borrowed, never copied (included by _mpsnorm.pyx).
#
# An object is taken through the buffer protocol when it exports it (NumPy arrays,
# memoryviews, ...), otherwise through DLPack when it has __dlpack__ (PyTorch tensors, JAX
# arrays, ...): CPU memory only, any strides and byte offset, the read-only flag of versioned
# DLPack honoured. Either way the memory stays held until release_*() (after the C call
# returns). Shapes, dtypes and overlaps between tensors are the C core's to check.

# What keeps a caller's memory alive for one kernel call: a buffer-protocol view, or a
# consumed DLPack capsule (renamed "used_dltensor[_versioned]") whose managed tensor's
# deleter runs on release.
cdef struct Holding:
    Py_buffer view
    bint has_view
    PyObject *capsule    # owned reference, or NULL
    void *managed        # DLManagedTensor* or DLManagedTensorVersioned*
    bint versioned

# A caller's tensor held for the length of one kernel call, and the C descriptor of it.
# Acquire with the GIL; release in a finally block.
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

cdef bint NATIVE_LITTLE = sys.byteorder == "little"

# The logical axis (0 N, 1 C, 2 H, 3 W) held by each axis of a 4-D array, per layout.
cdef int NCHW_AXES[4]
cdef int NHWC_AXES[4]
NCHW_AXES[:] = [0, 1, 2, 3]
NHWC_AXES[:] = [0, 2, 3, 1]

cdef dict DTYPE_NAMES = {MPSNORM_FLOAT32: "float32", MPSNORM_FLOAT16: "float16",
                         MPSNORM_FLOAT64: "float64"}

# Struct-module type codes of the dtypes mpsnorm refuses, to name them in errors.
cdef dict FORMAT_KINDS = {"b": "int", "B": "uint", "h": "int", "H": "uint", "i": "int",
                          "I": "uint", "l": "int", "L": "uint", "q": "int", "Q": "uint",
                          "n": "int", "N": "uint", "?": "bool", "c": "bytes", "s": "bytes",
                          "Zf": "complex", "Zd": "complex", "Zg": "complex", "g": "float"}

# DLDataTypeCode and DLDeviceType values, to name them in errors.
cdef dict DLPACK_KINDS = {kDLInt: "int", kDLUInt: "uint", kDLFloat: "float",
                          kDLBfloat: "bfloat", kDLComplex: "complex", kDLBool: "bool",
                          kDLOpaqueHandle: "opaque"}
cdef dict DLPACK_DEVICES = {1: "cpu", 2: "cuda", 3: "cuda_host", 4: "opencl", 7: "vulkan",
                            8: "metal", 9: "vpi", 10: "rocm", 11: "rocm_host", 12: "ext_dev",
                            13: "cuda_managed", 14: "oneapi", 15: "webgpu", 16: "hexagon",
                            17: "maia"}


# Parses "NCHW" / "NHWC"; ValueError naming `where` otherwise.
cdef Layout parse_layout(object layout, str where) except *:
    if layout == "NCHW":
        return LAYOUT_NCHW
    if layout == "NHWC":
        return LAYOUT_NHWC
    raise ValueError(f"{where}: layout must be 'NCHW' or 'NHWC', got {layout!r}")


cdef str layout_name(Layout layout):
    return "NHWC" if layout == LAYOUT_NHWC else "NCHW"


cdef str unsupported_dtype(str description, str name, str where):
    return (f"{where}: {name} has unsupported dtype {description}; "
            f"expected float32, float16 or float64")


# -- the buffer protocol ------------------------------------------------------------------

cdef str describe_format(str code, Py_ssize_t itemsize):
    kind = FORMAT_KINDS.get(code)
    if kind is None:
        return f"format {code!r}"
    if kind in ("bool", "bytes"):
        return kind
    return f"{kind}{itemsize * 8}"


cdef inline int native_float_format(const char *format, Py_ssize_t itemsize) noexcept:
    """The dtype of a native-order "f", "e" or "d" format (optionally prefixed "@", "=" or
    the native byte-order mark), read without making Python strings; -1 for anything else."""
    cdef char code
    if format == NULL:
        return -1
    if format[0] == c"@" or format[0] == c"=" or format[0] == (c"<" if NATIVE_LITTLE else c">"):
        format += 1
    code = format[0]
    if code == 0 or format[1] != 0:
        return -1
    if code == c"f" and itemsize == 4:
        return MPSNORM_FLOAT32
    if code == c"e" and itemsize == 2:
        return MPSNORM_FLOAT16
    if code == c"d" and itemsize == 8:
        return MPSNORM_FLOAT64
    return -1


cdef int parse_format(const char *format, Py_ssize_t itemsize, str name, str where) except -1:
    cdef int dtype = native_float_format(format, itemsize)
    if dtype >= 0:
        return dtype
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
    raise TypeError(unsupported_dtype(describe_format(code, itemsize), name, where))


cdef extern from "Python.h":
    # PyObject_GetBuffer with its error left pending, for get_buffer to translate.
    int try_get_buffer "PyObject_GetBuffer"(object obj, Py_buffer *view, int flags) noexcept


cdef int pending_error() except -1:
    return -1  # re-raises the exception already set


cdef int get_buffer(Holding *holding, object obj, str name, str where, bint writable) except -1:
    if try_get_buffer(obj, &holding.view, PyBUF_STRIDES | PyBUF_FORMAT) < 0:
        try:
            pending_error()
        except TypeError:
            raise TypeError(f"{where}: {name} must support the buffer protocol or DLPack (a "
                            f"NumPy array, memoryview, torch tensor, ...), got "
                            f"{type(obj).__name__}") from None
        except BufferError as error:
            raise ValueError(f"{where}: {name} cannot be used as a strided buffer: "
                             f"{error}") from None
        except ValueError as error:  # NumPy, for dtypes it cannot export (datetime64, ...)
            raise TypeError(f"{where}: {name} has a dtype that cannot be used as a buffer: "
                            f"{error}") from None
    holding.has_view = True
    if writable and holding.view.readonly:
        raise ValueError(f"{where}: {name} is read-only")
    return 0


# -- DLPack -------------------------------------------------------------------------------

cdef str describe_type(object obj):
    """"torch.Tensor", "numpy.ndarray", ...: the type of a DLPack producer, for messages."""
    cls = type(obj)
    module = getattr(cls, "__module__", None)
    if not module or module == "builtins":
        return cls.__qualname__
    return f"{module.partition('.')[0]}.{cls.__qualname__}"


cdef str describe_device(object device_type, object device_id):
    label = DLPACK_DEVICES.get(device_type, "unknown")
    return f"{label}:{device_id} (DLPack device type {device_type})"


cdef int check_dlpack_device(object obj, str name, str where) except -1:
    typename = describe_type(obj)
    try:
        method = obj.__dlpack_device__
    except AttributeError:
        raise TypeError(f"{where}: {name} ({typename}) has __dlpack__ but no "
                        f"__dlpack_device__") from None
    try:
        device = method()
    except (BufferError, RuntimeError, ValueError, TypeError) as error:
        raise ValueError(f"{where}: {name} ({typename}) cannot say its DLPack device: "
                         f"{error}") from error
    try:
        device_type, device_id = device
        device_type = int(device_type)
    except (TypeError, ValueError):
        raise TypeError(f"{where}: {name}.__dlpack_device__() must return (device_type, "
                        f"device_id), got {device!r}") from None
    if device_type != kDLCPU:
        raise ValueError(f"{where}: {name} ({typename}) is on device "
                         f"{describe_device(device_type, device_id)}; mpsnorm reads CPU memory "
                         f"only: copy it to the CPU first (a torch tensor: {name}.cpu())")
    return 0


cdef object export_dlpack(object obj, str name, str where):
    """The capsule of obj.__dlpack__(): versioned (DLPack >= 1.0, no copy) where the
    producer supports it, the legacy capsule otherwise."""
    typename = describe_type(obj)
    if getattr(obj, "requires_grad", False) is True:
        # torch refuses to export such a tensor; say what to do instead.
        raise ValueError(f"{where}: {name} is a {typename} that requires grad, which mpsnorm "
                         f"cannot take (DLPack does not export it): pass {name}.detach(), or "
                         f"use the autograd layers of mpsnorm.torch")
    is_neg = getattr(obj, "is_neg", None)
    if callable(is_neg) and is_neg() is True:
        # torch exports such a lazily negated view without its negation.
        raise ValueError(f"{where}: {name} is a {typename} with its negative bit set (a lazy "
                         f"negation that DLPack does not carry): pass {name}.resolve_neg()")
    try:
        try:
            return obj.__dlpack__(max_version=(DLPACK_MAJOR_VERSION, DLPACK_MINOR_VERSION),
                                  copy=False)
        except TypeError:
            # A producer that predates DLPack 1.0 (no max_version / copy keywords).
            return obj.__dlpack__()
    except (BufferError, RuntimeError, ValueError, TypeError) as error:
        raise ValueError(f"{where}: {name} ({typename}) cannot be exported through DLPack: "
                         f"{error}") from error


cdef DLTensor *dlpack_tensor(const Holding *holding) noexcept:
    if holding.versioned:
        return &(<DLManagedTensorVersioned *>holding.managed).dl_tensor
    return &(<DLManagedTensor *>holding.managed).dl_tensor


cdef int get_dlpack(Holding *holding, object obj, str name, str where, bint writable) except -1:
    cdef DLManagedTensorVersioned *versioned
    cdef DLTensor *dl
    cdef void *managed
    cdef bint is_versioned
    check_dlpack_device(obj, name, where)
    capsule = export_dlpack(obj, name, where)
    # Renaming the capsule "used_..." makes its managed tensor ours (the capsule's
    # destructor then leaves it alone): release_holding() calls its deleter.
    if PyCapsule_IsValid(capsule, "dltensor_versioned"):
        is_versioned = True
        managed = PyCapsule_GetPointer(capsule, "dltensor_versioned")
        PyCapsule_SetName(capsule, "used_dltensor_versioned")
    elif PyCapsule_IsValid(capsule, "dltensor"):
        is_versioned = False
        managed = PyCapsule_GetPointer(capsule, "dltensor")
        PyCapsule_SetName(capsule, "used_dltensor")
    else:
        raise TypeError(f"{where}: {name}.__dlpack__() returned {type(capsule).__name__}, "
                        f"not an unused DLPack capsule")
    Py_INCREF(capsule)
    holding.capsule = <PyObject *>capsule
    holding.managed = managed
    holding.versioned = is_versioned
    if holding.versioned:
        versioned = <DLManagedTensorVersioned *>holding.managed
        if versioned.version.major != DLPACK_MAJOR_VERSION:
            raise ValueError(f"{where}: {name} ({describe_type(obj)}) was exported with DLPack "
                             f"{versioned.version.major}.{versioned.version.minor}; mpsnorm "
                             f"reads DLPack 1.x")
        if writable and versioned.flags & DLPACK_FLAG_BITMASK_READ_ONLY:
            raise ValueError(f"{where}: {name} is read-only")
        if writable and versioned.flags & DLPACK_FLAG_BITMASK_IS_COPIED:
            raise ValueError(f"{where}: {name} ({describe_type(obj)}) exported a copy through "
                             f"DLPack; results written there would be lost")
    dl = dlpack_tensor(holding)
    if dl.device.device_type != kDLCPU:
        raise ValueError(f"{where}: {name} ({describe_type(obj)}) is on device "
                         f"{describe_device(dl.device.device_type, dl.device.device_id)}; "
                         f"mpsnorm reads CPU memory only")
    return 0


cdef str describe_dlpack_dtype(const DLDataType *dtype):
    kind = DLPACK_KINDS.get(dtype.code)
    if kind is None:
        text = f"DLPack type code {dtype.code} of {dtype.bits} bits"
    elif kind == "bool":
        text = "bool"
    else:
        text = f"{kind}{dtype.bits}"
    return text if dtype.lanes == 1 else f"{text}x{dtype.lanes}"


cdef int parse_dlpack_dtype(const DLDataType *dtype, str name, str where) except -1:
    if dtype.code == kDLFloat and dtype.lanes == 1:
        if dtype.bits == 32:
            return MPSNORM_FLOAT32
        if dtype.bits == 16:
            return MPSNORM_FLOAT16
        if dtype.bits == 64:
            return MPSNORM_FLOAT64
    raise TypeError(unsupported_dtype(describe_dlpack_dtype(dtype), name, where))


# -- either kind of holding, seen as a strided array ----------------------------------------

cdef int acquire(Holding *holding, object obj, str name, str where, bint writable) except -1:
    """Fills `holding`; on error the caller releases it."""
    holding.has_view = False
    holding.capsule = NULL
    holding.managed = NULL
    holding.versioned = False
    if PyObject_CheckBuffer(obj) or not hasattr(obj, "__dlpack__"):
        return get_buffer(holding, obj, name, where, writable)
    return get_dlpack(holding, obj, name, where, writable)


cdef void release_holding(Holding *holding) noexcept:
    cdef DLManagedTensorVersioned *versioned
    cdef DLManagedTensor *legacy
    if holding.has_view:
        PyBuffer_Release(&holding.view)
        holding.has_view = False
    if holding.managed != NULL:
        if holding.versioned:
            versioned = <DLManagedTensorVersioned *>holding.managed
            if versioned.deleter != NULL:
                versioned.deleter(versioned)
        else:
            legacy = <DLManagedTensor *>holding.managed
            if legacy.deleter != NULL:
                legacy.deleter(legacy)
        holding.managed = NULL
    if holding.capsule != NULL:
        Py_XDECREF(holding.capsule)
        holding.capsule = NULL


cdef int holding_dtype(const Holding *holding, str name, str where) except -1:
    if holding.has_view:
        return parse_format(holding.view.format, holding.view.itemsize, name, where)
    return parse_dlpack_dtype(&dlpack_tensor(holding).dtype, name, where)


cdef int holding_ndim(const Holding *holding) noexcept:
    if holding.has_view:
        return holding.view.ndim
    return dlpack_tensor(holding).ndim


cdef int64_t holding_extent(const Holding *holding, int axis) noexcept:
    if holding.has_view:
        return holding.view.shape[axis]
    return dlpack_tensor(holding).shape[axis]


cdef void *holding_data(const Holding *holding) noexcept:
    cdef DLTensor *dl
    if holding.has_view:
        return holding.view.buf
    dl = dlpack_tensor(holding)
    return <void *>(<char *>dl.data + dl.byte_offset)


cdef int64_t holding_stride(const Holding *holding, int axis, str name, str where) except? -1:
    """The stride of `axis` in elements."""
    cdef Py_ssize_t stride
    cdef int shift
    cdef DLTensor *dl
    cdef int64_t compact = 1
    cdef int later
    if holding.has_view:
        if holding.view.strides == NULL:  # allowed for C-contiguous exporters (ctypes)
            for later in range(axis + 1, holding.view.ndim):
                compact *= holding.view.shape[later]
            return compact
        stride = holding.view.strides[axis]
        # The dtype is known by now: 2-, 4- or 8-byte elements, so a shift divides.
        shift = 1 if holding.view.itemsize == 2 else 2 if holding.view.itemsize == 4 else 3
        if stride & ((<Py_ssize_t>1 << shift) - 1):
            raise ValueError(f"{where}: {name} has stride {stride} bytes on axis {axis}, "
                             f"not a multiple of its {holding.view.itemsize}-byte elements")
        return stride >> shift
    dl = dlpack_tensor(holding)
    if dl.strides != NULL:
        return dl.strides[axis]
    for later in range(axis + 1, dl.ndim):  # NULL strides: compact row-major
        compact *= dl.shape[later]
    return compact


cdef tuple holding_shape(const Holding *holding):
    return tuple([holding_extent(holding, i) for i in range(holding_ndim(holding))])


# -- tensors and vectors ------------------------------------------------------------------

cdef int describe_tensor(HeldTensor *held, str name, str where, Layout layout) except -1:
    cdef Holding *holding = &held.holding
    cdef mpsnorm_tensor *tensor = &held.tensor
    cdef int ndim = holding_ndim(holding)
    cdef int first = ndim - 3  # 0 for a single image, 1 for a batch
    cdef int axis
    cdef int logical
    # The dtype first: a bytes object is a 1-D buffer, refused for its type.
    tensor.dtype = holding_dtype(holding, name, where)
    if ndim != 3 and ndim != 4:
        expected = layout_name(layout)
        raise ValueError(f"{where}: {name} must be 4-D ({expected[0]}, {expected[1]}, "
                         f"{expected[2]}, {expected[3]}) or a 3-D single image, got "
                         f"{ndim}-D with shape {holding_shape(holding)}")
    held.ndim = ndim
    tensor.data = holding_data(holding)
    tensor.shape[0] = 1
    tensor.strides[0] = 0
    # Python axes, in order, hold these logical axes (0 N, 1 C, 2 H, 3 W).
    cdef const int *order = &NCHW_AXES[0]
    if layout == LAYOUT_NHWC:
        order = &NHWC_AXES[0]
    for axis in range(ndim):
        logical = order[axis + 1 - first]
        held.shape[axis] = holding_extent(holding, axis)
        tensor.shape[logical] = held.shape[axis]
        tensor.strides[logical] = holding_stride(holding, axis, name, where)
    return 0


# Borrows obj's memory (no copy) as a 3-D or 4-D float tensor in `layout`: through the
# buffer protocol when obj exports it, otherwise through DLPack (__dlpack__ /
# __dlpack_device__, CPU tensors only).
# TypeError: neither a buffer nor a DLPack tensor, unsupported dtype, non-native byte order.
# ValueError: wrong rank, strides that are not whole elements, not writable (when writable
# is set), a device other than the CPU, a DLPack export the producer refuses (e.g. a torch
# tensor that requires grad).
# On error as on success, release_tensor() releases what was held.
cdef int hold_tensor(HeldTensor *held, object obj, str name, str where, Layout layout,
                     bint writable) except -1:
    held.held = True
    acquire(&held.holding, obj, name, where, writable)
    return describe_tensor(held, name, where, layout)


# Borrows obj as a writable 1-D vector (per-channel gradients), likewise.
# On error as on success, release_vector() releases what was held.
cdef int hold_vector(HeldVector *held, object obj, str name, str where) except -1:
    cdef Holding *holding = &held.holding
    held.held = True
    acquire(holding, obj, name, where, True)
    held.vector.dtype = holding_dtype(holding, name, where)
    if holding_ndim(holding) != 1:
        raise ValueError(f"{where}: {name} must be 1-D, got shape {holding_shape(holding)}")
    held.vector.data = holding_data(holding)
    held.vector.length = holding_extent(holding, 0)
    held.vector.stride = holding_stride(holding, 0, name, where)
    return 0


cdef void release_tensor(HeldTensor *held) noexcept:
    if held.held:
        release_holding(&held.holding)
        held.held = False


cdef void release_vector(HeldVector *held) noexcept:
    if held.held:
        release_holding(&held.holding)
        held.held = False


cdef tuple held_shape(const HeldTensor *held):
    return tuple([held.shape[i] for i in range(held.ndim)])


cdef bint same_shape_and_dtype(const HeldTensor *a, const HeldTensor *b) noexcept:
    if a.ndim != b.ndim or a.tensor.dtype != b.tensor.dtype:
        return False
    for axis in range(a.ndim):
        if a.shape[axis] != b.shape[axis]:
            return False
    return True


# ValueError unless `other` has `reference`'s Python shape and dtype.
cdef int require_like(const HeldTensor *reference, str reference_name,
                      const HeldTensor *other, str other_name, str where) except -1:
    if same_shape_and_dtype(reference, other):
        return 0
    reference_shape = held_shape(reference)
    other_shape = held_shape(other)
    if other_shape != reference_shape:
        raise ValueError(f"{where}: {other_name} has shape {other_shape} but {reference_name} "
                         f"has shape {reference_shape}")
    raise ValueError(f"{where}: {other_name} has dtype {DTYPE_NAMES[other.tensor.dtype]} "
                     f"but {reference_name} has dtype {DTYPE_NAMES[reference.tensor.dtype]}")


# A new C-contiguous NumPy array (the one place mpsnorm imports NumPy).
cdef object new_array(tuple shape, int dtype, str where):
    import numpy
    try:
        return numpy.empty(shape, dtype=DTYPE_NAMES[dtype])
    except MemoryError as error:
        raise MemoryError(f"{where}: cannot allocate an output of shape {shape} "
                          f"({DTYPE_NAMES[dtype]}): {error}") from None


cdef object new_array_like(const HeldTensor *held, str where):
    return new_array(held_shape(held), held.tensor.dtype, where)


cdef object new_vector(Py_ssize_t length, int dtype, str where):
    return new_array((length,), dtype, where)
