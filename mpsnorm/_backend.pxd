from mpsnorm.libmpsnorm cimport mpsnorm_engine

# An engine for a backend named "auto", "cpu" or "metal"; ValueError naming
# `where` for an unknown or unusable name.
cdef mpsnorm_engine *create_engine(object backend, str where) except NULL

# "cpu" / "metal" for a C backend code.
cdef str backend_name(int backend)
