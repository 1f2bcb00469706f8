/*
 * validate.h -- argument checks shared by every backend. Each returns
 * MPSNORM_OK or a status, and on failure writes the reason (which argument,
 * which value) into `message` (`size` bytes, may be 0).
 *
 * A call's tensors and vectors are checked once each into an
 * mpsnorm_checked (checked.h); the comparisons between them read those.
 */
#ifndef MPSNORM_CORE_VALIDATE_H
#define MPSNORM_CORE_VALIDATE_H

#include <stddef.h>

#include "checked.h"
#include "mpsnorm.h"

/* Writes a formatted reason into message and returns status. */
int mpsnorm_fail(int status, char *message, size_t size, const char *format, ...)
#if defined(__GNUC__) || defined(__clang__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;

int mpsnorm_check_lcn_params(const mpsnorm_lcn_params *params, char *message, size_t size);
int mpsnorm_check_instance_norm_params(const mpsnorm_inorm_params *params, char *message,
                                       size_t size);

/*
 * Describes `tensor` into *checked and checks it is well-formed: known dtype,
 * sizes >= 0, element count within 64 bits, and when not empty data non-NULL,
 * aligned and an address range that fits the address space. An output
 * (output != 0) must also not write any element twice. `name` is how
 * messages refer to it. *checked is filled as far as the checks got.
 */
int mpsnorm_check_tensor(mpsnorm_checked *checked, const mpsnorm_tensor *tensor, const char *name,
                         int output, char *message, size_t size);

/* The same for an output vector, which must have `length` elements of `dtype`. */
int mpsnorm_check_output_vector(mpsnorm_checked *checked, const mpsnorm_vector *vector,
                                const char *name, int64_t length, int dtype, char *message,
                                size_t size);

/* Two checked tensors: b has a's shape and dtype. */
int mpsnorm_check_same_shape(const mpsnorm_checked *a, const mpsnorm_checked *b, char *message,
                             size_t size);

/* OVERLAP (naming a first) if the bytes of a and b intersect. */
int mpsnorm_check_disjoint(const mpsnorm_checked *a, const mpsnorm_checked *b, char *message,
                           size_t size);

/* Number of elements (product of the shape) of an unchecked tensor. */
int64_t mpsnorm_tensor_count(const mpsnorm_tensor *tensor);

#endif /* MPSNORM_CORE_VALIDATE_H */
