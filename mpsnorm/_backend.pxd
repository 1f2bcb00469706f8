from mpsnorm.libmpsnorm cimport mpsnorm_engine


cdef class Engine:
    """Owns one C engine. A kernel object holds one, and every call holds its
    own reference while it runs, so replacing an object's engine (a second
    __init__) never frees one a running call uses."""
    cdef mpsnorm_engine *ptr


# An engine for a backend named "auto", "cpu" or "metal"; ValueError naming
# `where` for an unknown or unusable name.
cdef Engine create_engine(object backend, str where)

# "cpu" / "metal" for a C backend code.
cdef str backend_name(int backend)
