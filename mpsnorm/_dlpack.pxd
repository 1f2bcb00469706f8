# The DLPack C structures (dlpack.h, version 1.0), transcribed from the DLPack
# specification, so that Cython code can read the tensor inside a capsule
# returned by __dlpack__. Only what a consumer on the CPU needs is declared.
from libc.stdint cimport int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t

cdef extern from *:
    """
    #ifndef MPSNORM_DLPACK_H
    #define MPSNORM_DLPACK_H
    #include <stdint.h>
    /* dlpack.h v1.0 (Apache-2.0 licensed specification), declarations only. */
    typedef struct { uint32_t major; uint32_t minor; } mpsnorm_DLPackVersion;
    typedef struct { int32_t device_type; int32_t device_id; } mpsnorm_DLDevice;
    typedef struct { uint8_t code; uint8_t bits; uint16_t lanes; } mpsnorm_DLDataType;
    typedef struct {
        void *data;
        mpsnorm_DLDevice device;
        int32_t ndim;
        mpsnorm_DLDataType dtype;
        int64_t *shape;
        int64_t *strides;   /* in elements; NULL: compact row-major */
        uint64_t byte_offset;
    } mpsnorm_DLTensor;
    typedef struct mpsnorm_DLManagedTensor {
        mpsnorm_DLTensor dl_tensor;
        void *manager_ctx;
        void (*deleter)(struct mpsnorm_DLManagedTensor *self);
    } mpsnorm_DLManagedTensor;
    typedef struct mpsnorm_DLManagedTensorVersioned {
        mpsnorm_DLPackVersion version;
        void *manager_ctx;
        void (*deleter)(struct mpsnorm_DLManagedTensorVersioned *self);
        uint64_t flags;
        mpsnorm_DLTensor dl_tensor;
    } mpsnorm_DLManagedTensorVersioned;
    #endif
    """
    ctypedef struct DLPackVersion "mpsnorm_DLPackVersion":
        uint32_t major
        uint32_t minor

    ctypedef struct DLDevice "mpsnorm_DLDevice":
        int32_t device_type
        int32_t device_id

    ctypedef struct DLDataType "mpsnorm_DLDataType":
        uint8_t code
        uint8_t bits
        uint16_t lanes

    ctypedef struct DLTensor "mpsnorm_DLTensor":
        void *data
        DLDevice device
        int32_t ndim
        DLDataType dtype
        int64_t *shape
        int64_t *strides
        uint64_t byte_offset

    ctypedef struct DLManagedTensor "mpsnorm_DLManagedTensor":
        DLTensor dl_tensor
        void *manager_ctx
        void (*deleter)(DLManagedTensor *self) noexcept nogil

    ctypedef struct DLManagedTensorVersioned "mpsnorm_DLManagedTensorVersioned":
        DLPackVersion version
        void *manager_ctx
        void (*deleter)(DLManagedTensorVersioned *self) noexcept nogil
        uint64_t flags
        DLTensor dl_tensor


# DLDeviceType and DLDataTypeCode values used by mpsnorm.
cdef enum:
    kDLCPU = 1
    kDLInt = 0
    kDLUInt = 1
    kDLFloat = 2
    kDLOpaqueHandle = 3
    kDLBfloat = 4
    kDLComplex = 5
    kDLBool = 6
    DLPACK_MAJOR_VERSION = 1
    DLPACK_MINOR_VERSION = 0

# DLManagedTensorVersioned.flags bits.
cdef enum:
    DLPACK_FLAG_BITMASK_READ_ONLY = 1
    DLPACK_FLAG_BITMASK_IS_COPIED = 2
