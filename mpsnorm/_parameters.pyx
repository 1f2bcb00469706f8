# cython: language_level=3
"""Conversion of user-supplied parameter values to C types."""
import array
import math
import numbers
import operator

from libc.stdint cimport INT64_MAX, INT64_MIN, int64_t

cdef double FLOAT32_MAX = 3.4028234663852886e38


cdef float to_float32(object value, str name, str where) except *:
    # Strings convert with float() and NumPy complex scalars drop their imaginary part: refuse both.
    if isinstance(value, (str, bytes, bytearray)) or (
            isinstance(value, numbers.Complex) and not isinstance(value, numbers.Real)):
        raise TypeError(f"{where}: {name} must be a real number, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{where}: {name} must be a real number, got {value!r}") from None
    except OverflowError:
        raise ValueError(f"{where}: {name} must be finite in float32, got {value!r}") from None
    # Values that round to infinity in float32 (abs >= FLT_MAX + half an ulp).
    if math.isfinite(number) and abs(number) >= FLOAT32_MAX * (1.0 + 2.0 ** -25):
        raise ValueError(f"{where}: {name} must be finite in float32, got {value!r}")
    return <float>number


cdef int64_t to_int64(object value, str name, str where) except *:
    try:
        number = operator.index(value)
    except TypeError:
        raise TypeError(f"{where}: {name} must be an integer, got {value!r}") from None
    if number > INT64_MAX or number < INT64_MIN:
        raise ValueError(f"{where}: {name} is out of range, got {number}")
    return number


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
    packed = array.array("f", [to_float32(item, f"{name}[{i}]", where)
                               for i, item in enumerate(items)])
    return packed.tobytes()
