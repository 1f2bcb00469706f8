# Backends: which exist here, and engines bound to one of them (included by _mpsnorm.pyx).

cdef dict BACKEND_CODES = {"auto": MPSNORM_BACKEND_AUTO, "cpu": MPSNORM_BACKEND_CPU,
                           "metal": MPSNORM_BACKEND_METAL}


def backends():
    """The backends usable on this machine, preferred first: ("metal", "cpu") or ("cpu",)."""
    return tuple(name for name in ("metal", "cpu")
                 if mpsnorm_backend_available(BACKEND_CODES[name]))


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
