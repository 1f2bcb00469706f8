/*
 * validate.h -- argument checks shared by every backend. Each returns
 * MPSNORM_OK or a status, and on failure writes the reason (which argument,
 * which value) into `message` (`size` bytes, may be 0).
 */
#ifndef MPSNORM_CORE_VALIDATE_H
#define MPSNORM_CORE_VALIDATE_H

#include <stddef.h>

#include "mpsnorm.h"

/* Writes a formatted reason into message and returns status. */
int mpsnorm_fail(int status, char *message, size_t size, const char *format, ...)
#if defined(__GNUC__) || defined(__clang__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;

int mpsnorm_check_lcn_params(const mpsnorm_lcn_params *params, char *message, size_t size);
int mpsnorm_check_inorm_params(const mpsnorm_inorm_params *params, char *message, size_t size);

/* A well-formed tensor: known dtype, sizes >= 0, aligned, address range
 * representable; `name` is how the message refers to it. */
int mpsnorm_check_tensor(const mpsnorm_tensor *tensor, const char *name, char *message, size_t size);

/* An output tensor additionally must not write any element twice. */
int mpsnorm_check_output_tensor(const mpsnorm_tensor *tensor, const char *name, char *message,
                                size_t size);

/* b has a's shape and dtype. */
int mpsnorm_check_same_shape(const mpsnorm_tensor *a, const char *name_a, const mpsnorm_tensor *b,
                             const char *name_b, char *message, size_t size);

/* A well-formed output vector of `length` elements of `dtype`. */
int mpsnorm_check_output_vector(const mpsnorm_vector *vector, const char *name, int64_t length,
                                int dtype, char *message, size_t size);

/* The address range [*low, *high) a tensor or vector spans; low == high when empty. */
void mpsnorm_tensor_span(const mpsnorm_tensor *tensor, const char **low, const char **high);
void mpsnorm_vector_span(const mpsnorm_vector *vector, const char **low, const char **high);

/* OVERLAP if the two spans intersect. */
int mpsnorm_check_disjoint(const char *low_a, const char *high_a, const char *name_a,
                           const char *low_b, const char *high_b, const char *name_b,
                           char *message, size_t size);

/* Number of elements (product of the shape). */
int64_t mpsnorm_tensor_count(const mpsnorm_tensor *tensor);

#endif /* MPSNORM_CORE_VALIDATE_H */
