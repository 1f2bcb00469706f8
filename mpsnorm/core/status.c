/* status.c -- names of status codes, dtypes and backends; the version. */
#include "mpsnorm.h"

const char *mpsnorm_status_string(int status)
{
    switch (status) {
    case MPSNORM_OK: return "ok";
    case MPSNORM_ERR_NULL_POINTER: return "a required pointer is NULL";
    case MPSNORM_ERR_INVALID_PARAMETER: return "invalid parameter";
    case MPSNORM_ERR_BAD_SHAPE: return "bad shape";
    case MPSNORM_ERR_BAD_DTYPE: return "bad dtype";
    case MPSNORM_ERR_BAD_LAYOUT: return "bad memory layout";
    case MPSNORM_ERR_OVERLAP: return "an output overlaps an input or another output";
    case MPSNORM_ERR_OUT_OF_MEMORY: return "out of memory";
    case MPSNORM_ERR_UNSUPPORTED: return "the backend does not support this case";
    case MPSNORM_ERR_BACKEND_UNAVAILABLE: return "the backend is not available";
    case MPSNORM_ERR_BACKEND_FAILURE: return "the backend failed";
    default: return "unknown status";
    }
}

const char *mpsnorm_version(void)
{
    return MPSNORM_VERSION_STRING;
}

size_t mpsnorm_dtype_size(int dtype)
{
    switch (dtype) {
    case MPSNORM_FLOAT32: return 4;
    case MPSNORM_FLOAT16: return 2;
    case MPSNORM_FLOAT64: return 8;
    default: return 0;
    }
}

const char *mpsnorm_backend_name(int backend)
{
    switch (backend) {
    case MPSNORM_BACKEND_AUTO: return "auto";
    case MPSNORM_BACKEND_CPU: return "cpu";
    case MPSNORM_BACKEND_METAL: return "metal";
    default: return "unknown";
    }
}
