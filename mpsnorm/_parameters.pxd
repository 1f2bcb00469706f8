from libc.stdint cimport int64_t

# Python values to the C parameter types, with errors naming `where` and the
# value. Range rules stay in C (mpsnorm_*_params_check).

# A real number rounded to float32 (TypeError for str, bytes, non-numbers;
# ValueError for finite values float32 cannot hold).
cdef float to_float32(object value, str name, str where) except *

# An integer, clamped into int64 so that C's range check reports it (the
# message of an out-of-range value quotes `value` itself).
cdef int64_t to_int64(object value, str name, str where) except *

# A sequence of `length` real numbers as packed float32 bytes.
cdef bytes to_float32_bytes(object values, Py_ssize_t length, str name, str where)
