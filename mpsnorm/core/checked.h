/*
 * checked.h -- the checked descriptor of one tensor or vector of a call.
 *
 * validate.c fills one per argument, once per call; every shape and overlap
 * check of the call reads it, and the backends receive it: they may assert
 * what it says instead of re-checking.
 */
#ifndef MPSNORM_CORE_CHECKED_H
#define MPSNORM_CORE_CHECKED_H

#include <stddef.h>
#include <stdint.h>

#include "mpsnorm.h"

typedef struct mpsnorm_checked {
    const char *name;              /* how messages name the argument ("x", "dx", ...) */
    const mpsnorm_tensor *tensor;  /* the caller's tensor, or NULL for a vector */
    const mpsnorm_vector *vector;  /* the caller's vector, or NULL for a tensor */
    size_t item;                   /* bytes per element */
    int64_t count;                 /* elements (product of the shape) */
    /* The bytes the elements span, [low, high); low == high == NULL when the
     * argument is empty or its addresses do not fit the address space. */
    const char *low, *high;
} mpsnorm_checked;

#endif /* MPSNORM_CORE_CHECKED_H */
