# Conversion of user-supplied parameter values to C types, with errors naming `where`
# and the value (included by _mpsnorm.pyx). Range rules stay in C (mpsnorm_*_params_check).

cdef double FLOAT32_MAX = 3.4028234663852886e38


cdef bint is_complex(object value):
    """A complex number that is not real (Python's, NumPy's complex scalars)."""
    if isinstance(value, (int, float)):
        return False
    import numbers  # only for values of other types
    return isinstance(value, numbers.Complex) and not isinstance(value, numbers.Real)


# A real number rounded to float32 (TypeError for str, bytes, non-numbers; ValueError for
# finite values float32 cannot hold).
cdef float to_float32(object value, str name, str where) except *:
    # Strings convert with float() and NumPy complex scalars drop their imaginary part: refuse both.
    if isinstance(value, (str, bytes, bytearray)) or is_complex(value):
        raise TypeError(f"{where}: {name} must be a real number, got {value!r}")
    cdef double number
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{where}: {name} must be a real number, got {value!r}") from None
    except OverflowError:
        raise ValueError(f"{where}: {name} must be finite in float32, got {value!r}") from None
    # Values that round to infinity in float32 (abs >= FLT_MAX + half an ulp).
    if isfinite(number) and fabs(number) >= FLOAT32_MAX * (1.0 + 2.0 ** -25):
        raise ValueError(f"{where}: {name} must be finite in float32, got {value!r}")
    return <float>number


# An integer, clamped into int64 so that C's range check reports it (the message of an
# out-of-range value quotes `value` itself).
cdef int64_t to_int64(object value, str name, str where) except *:
    try:
        number = PyNumber_Index(value)
    except TypeError:
        raise TypeError(f"{where}: {name} must be an integer, got {value!r}") from None
    if number > INT64_MAX or number < INT64_MIN:
        raise ValueError(f"{where}: {name} is out of range, got {number}")
    return number


# A sequence of `length` real numbers as packed float32 bytes.
cdef bytes to_float32_bytes(object values, Py_ssize_t length, str name, str where):
    if isinstance(values, (str, bytes, bytearray)):
        raise TypeError(f"{where}: {name} must be a sequence of real numbers, got {values!r}")
    try:
        items = list(values)
    except TypeError:
        raise TypeError(f"{where}: {name} must be a sequence of real numbers, "
                        f"got {type(values).__name__}") from None
    if len(items) != length:
        raise ValueError(f"{where}: {name} must have {length} values (one per channel), "
                         f"got {len(items)}")
    cdef bytearray packed = bytearray(length * sizeof(float))
    cdef float *floats = <float *><char *>packed
    for i, item in enumerate(items):
        floats[i] = to_float32(item, f"{name}[{i}]", where)
    return bytes(packed)
