from mpsnorm.libmpsnorm cimport mpsnorm_report

# Raises the exception a status code stands for, "<where>: <reason>"; returns
# 0 for MPSNORM_OK.
cdef int check_status(int status, const mpsnorm_report *report, str where) except -1
