# Backends: which exist here, and engines bound to one of them (included by _mpsnorm.pyx).

cdef dict BACKEND_CODES = {"auto": MPSNORM_BACKEND_AUTO, "cpu": MPSNORM_BACKEND_CPU,
                           "metal": MPSNORM_BACKEND_METAL}


def backends():
    """The backends usable on this machine, preferred first: ("metal", "cpu") or ("cpu",)."""
    return tuple(name for name in ("metal", "cpu")
                 if mpsnorm_backend_available(BACKEND_CODES[name]))


cdef dict KERNEL_NAMES = {MPSNORM_KERNEL_LCN_FORWARD: "lcn_forward",
                         MPSNORM_KERNEL_LCN_GRADIENT: "lcn_gradient",
                         MPSNORM_KERNEL_INORM_FORWARD: "instance_norm_forward",
                         MPSNORM_KERNEL_INORM_GRADIENT: "instance_norm_gradient"}
cdef tuple VERDICT_NAMES = ("unchecked", "passed", "failed", "unsupported", "trusted")


cdef dict check_as_dict(const mpsnorm_metal_check *check):
    return {"kernel": KERNEL_NAMES[check.kernel],
            "dtype": "float16" if check.dtype == MPSNORM_FLOAT16 else "float32",
            "layout": "NHWC" if check.nhwc else "NCHW",
            "even_window": bool(check.even_window), "alpha_nonzero": bool(check.alpha_nonzero),
            "parameter_gradients": bool(check.parameter_gradients),
            "description": check.description.decode("ascii"),
            "verdict": VERDICT_NAMES[check.verdict],
            "gradient_alone": bool(check.gradient_alone), "error": check.error,
            "tolerance": check.tolerance, "seconds": check.seconds,
            "message": check.message.decode("utf-8", "replace")}


def metal_report(check_all=False):
    """The Metal self-check's verdicts so far, one dict per class of call that has one
    (kernel, dtype, layout, even_window, alpha_nonzero, parameter_gradients, description,
    verdict: "passed" / "failed" / "unsupported" / "trusted", error, tolerance, seconds,
    message). check_all=True first checks every class not checked yet, with representative
    parameters, where Metal exists. Where there is no Metal backend the list is empty."""
    cdef mpsnorm_metal_check check
    cdef int index
    result = []
    for index in range(mpsnorm_metal_check_count()):
        if check_all and mpsnorm_backend_available(MPSNORM_BACKEND_METAL):
            status = mpsnorm_metal_check_run(index, &check)
            if status != MPSNORM_OK and status != MPSNORM_ERR_BACKEND_UNAVAILABLE:
                raise exception_class(status)(
                    f"metal_report: the check of {check.description.decode('ascii')} could "
                    f"not run: {check.message.decode('utf-8', 'replace')}")
        else:
            mpsnorm_metal_check_get(index, &check)
        if check.verdict != MPSNORM_METAL_UNCHECKED:
            result.append(check_as_dict(&check))
    return result


def library_version():
    """The version of the C library this module runs."""
    return mpsnorm_version().decode("ascii")


# "cpu" / "metal" for a C backend code.
cdef str backend_name(int backend):
    # The two names as constants: a kernel call records one, and decoding costs a new str.
    if backend == MPSNORM_BACKEND_CPU:
        return "cpu"
    if backend == MPSNORM_BACKEND_METAL:
        return "metal"
    return mpsnorm_backend_name(backend).decode("ascii")


cdef class Engine:
    def __dealloc__(self):
        if self.ptr != NULL:
            mpsnorm_engine_free(self.ptr)
            self.ptr = NULL


# An engine for a backend named "auto", "cpu" or "metal"; ValueError naming `where` for an
# unknown or unusable name.
cdef Engine create_engine(object backend, str where):
    cdef mpsnorm_engine *engine = NULL
    code = BACKEND_CODES.get(backend) if isinstance(backend, str) else None
    if code is None:
        raise ValueError(f"{where}: backend must be 'auto', 'cpu' or 'metal', got {backend!r}")
    status = mpsnorm_engine_create(code, &engine)
    if status == MPSNORM_ERR_BACKEND_UNAVAILABLE:
        raise ValueError(f"{where}: backend {backend!r} is not available here; usable "
                         f"backends: {backends()}")
    check_status(status, NULL, where)
    cdef Engine handle = Engine.__new__(Engine)
    handle.ptr = engine
    return handle
