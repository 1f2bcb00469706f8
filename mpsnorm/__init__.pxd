# `cimport mpsnorm` gives Cython code the whole C ABI (see libmpsnorm.pxd);
# every function may be called inside `with nogil:`.
from mpsnorm.libmpsnorm cimport *
