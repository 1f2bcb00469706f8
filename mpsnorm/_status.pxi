# The one translation of C status codes into Python exceptions (included by _mpsnorm.pyx).


class MPSNormError(RuntimeError):
    """A backend failed while running a kernel (for example a Metal command
    buffer that did not complete). Bad arguments raise ValueError or
    TypeError instead."""
    __module__ = "mpsnorm.errors"  # where it is documented and re-exported


class MPSNormWarning(UserWarning):
    """Something the user should know although the call succeeded: the Metal
    self-check of a class of call failed, so that class runs on the CPU."""
    __module__ = "mpsnorm.errors"


# A successful call's report may carry a notice (mpsnorm.h, mpsnorm_report): shown once.
cdef int warn_notice(const mpsnorm_report *report, str where) except -1:
    import warnings
    cdef const char *text = report.message
    warnings.warn(f"{where}: {text.decode('utf-8', 'replace')}", MPSNormWarning, stacklevel=3)
    return 0


cdef object exception_class(int status):
    if status == MPSNORM_ERR_OUT_OF_MEMORY:
        return MemoryError
    if status == MPSNORM_ERR_BACKEND_FAILURE:
        return MPSNormError
    if status in (MPSNORM_ERR_NULL_POINTER, MPSNORM_ERR_INVALID_PARAMETER, MPSNORM_ERR_BAD_SHAPE,
                  MPSNORM_ERR_BAD_DTYPE, MPSNORM_ERR_BAD_LAYOUT, MPSNORM_ERR_OVERLAP,
                  MPSNORM_ERR_UNSUPPORTED, MPSNORM_ERR_BACKEND_UNAVAILABLE):
        return ValueError
    return MPSNormError


cdef str reason_of(int status, const mpsnorm_report *report):
    cdef const char *text
    reason = None
    if report != NULL and report.message[0] != 0:
        text = report.message
        reason = text.decode("utf-8", "replace")
    return reason or mpsnorm_status_string(status).decode("ascii")


# Raises the exception a status code stands for, "<where>: <reason>"; returns 0 for MPSNORM_OK.
cdef int check_status(int status, const mpsnorm_report *report, str where) except -1:
    if status == MPSNORM_OK:
        return 0
    raise exception_class(status)(f"{where}: {reason_of(status, report)}")


# The C ABI's names of a call's outputs, and the keywords a Python call gives them.
cdef dict PYTHON_NAMES = {"dx": "out", "y": "out", "dgamma": "out_gamma", "dbeta": "out_beta"}


# The same for a kernel call's status: the message names the outputs by the Python
# keywords (out, out_gamma, out_beta), not by the C ABI's parameter names.
cdef int check_call_status(int status, const mpsnorm_report *report, str where) except -1:
    if status == MPSNORM_OK:
        return 0
    # C messages name an argument as a word followed by a space ("dx overlaps x in memory")
    words = [PYTHON_NAMES.get(word, word) for word in reason_of(status, report).split(" ")]
    raise exception_class(status)(f"{where}: {' '.join(words)}")
