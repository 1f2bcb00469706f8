/*
 * scratch.h -- per-worker scratch memory of the CPU kernels.
 *
 * One block of doubles per worker, allocated for the whole call before any
 * output is written, with overflow-checked sizes.
 */
#ifndef MPSNORM_CPU_SCRATCH_H
#define MPSNORM_CPU_SCRATCH_H

#include <stdint.h>

typedef struct mpsnorm_scratch {
    int workers;
    double **block; /* block[w]: the doubles of worker w */
    double *single; /* the pointer array of a one-worker call */
    int borrowed;   /* block[0] is the caller's buffer */
} mpsnorm_scratch;

/*
 * Allocates `workers` blocks of `doubles` each. MPSNORM_OK, or
 * MPSNORM_ERR_OUT_OF_MEMORY (size overflow or malloc failure) with nothing
 * left allocated. `doubles` < 0 means the size computation overflowed.
 */
int mpsnorm_scratch_alloc(mpsnorm_scratch *scratch, int workers, int64_t doubles);

/* The same, but a one-worker call that fits in the caller's `local` buffer
 * (local_doubles long, may be NULL) uses it: no allocation for small calls. */
int mpsnorm_scratch_alloc_local(mpsnorm_scratch *scratch, int workers, int64_t doubles,
                                double *local, int64_t local_doubles);
void mpsnorm_scratch_free(mpsnorm_scratch *scratch);

/* a*b + c for sizes >= 0, or -1 if any input is < 0 or the result overflows. */
int64_t mpsnorm_size_mad(int64_t a, int64_t b, int64_t c);

/* malloc of `count` doubles (count >= 0), NULL on overflow or failure;
 * never malloc(0). */
double *mpsnorm_alloc_doubles(int64_t count);

#endif /* MPSNORM_CPU_SCRATCH_H */
