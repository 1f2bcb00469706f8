from mpsnorm.libmpsnorm cimport mpsnorm_report

# Raises the exception a status code stands for, "<where>: <reason>"; returns
# 0 for MPSNORM_OK.
cdef int check_status(int status, const mpsnorm_report *report, str where) except -1

# The same for a kernel call's status: the message names the outputs by the
# Python keywords (out, out_gamma, out_beta), not by the C ABI's parameter names.
cdef int check_call_status(int status, const mpsnorm_report *report, str where) except -1
