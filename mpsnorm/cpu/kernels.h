/*
 * kernels.h -- the inner kernels of the CPU backend, compiled once per
 * instruction set (kernels_avx512.c, kernels_avx2.c, kernels_portable.c from
 * the one template kernels_impl.h) and chosen once at run time
 * (mpsnorm_kernels_get). The drivers (instance_norm.c, lcn.c) own the jobs,
 * the split into tasks and the threads; a kernel does one task of a job.
 *
 * Determinism: every kernel's arithmetic depends only on the job (shape,
 * strides, parameters) and the task, never on which worker runs it or how
 * many there are. One process always uses one instruction set.
 */
#ifndef MPSNORM_CPU_KERNELS_H
#define MPSNORM_CPU_KERNELS_H

#include <stdint.h>

#include "mpsnorm.h"

/* Outputs of at least this many bytes are written with streaming stores. */
#define MPSNORM_STREAM_BYTES ((int64_t)16 << 20)

/* ---- instance norm -------------------------------------------------------- */

/* Elements of a row handled per kernel step (scratch buffer length). */
#define MPSNORM_INSTANCE_NORM_CHUNK 1024

/*
 * A plane is cut into bands of band_rows rows (the last may be shorter); a
 * band's partial sums are combined with the other bands' in band order. In
 * channel mode (every tensor's channel stride is 1, i.e. NHWC-like memory)
 * a task covers all channels of one image band, walking memory in order.
 *
 * Reduction rounds: round r sums, per plane p and band b, over the band's
 * pixels, with v = x - shift[p]:
 *   part[(p*bands + b)*4 + 0..3] = sum v, sum v^2, sum dy, sum dy*v
 * (the last two only when quantities[r] == 4). The writer then computes
 *   out = A*dy + B*(x - M) + C            (gradient)
 *   out = B*(x - M) + C                   (forward)
 * with coef[p*4 + 0..3] = A, B, C, M.
 */
typedef struct mpsnorm_instance_norm_job {
    const mpsnorm_tensor *x, *dy, *out; /* dy: NULL for the forward */
    int dtype;
    int gradient;
    int channel_mode;
    int stream_out; /* large unit-stride output: written with streaming stores */
    int64_t n, c, h, w;
    int64_t band_rows, bands;
    int64_t run; /* elements per scratch buffer (a run of a row, or >= C pixels' channels) */
    int rounds;
    int quantities[2];
    const double *shift; /* per plane */
    double *part;        /* per plane and band, 4 each */
    const double *coef;  /* per plane, 4 each */
} mpsnorm_instance_norm_job;

/* Scratch bytes per worker an instance-norm kernel needs for this job. */
int64_t mpsnorm_instance_norm_scratch_bytes(const mpsnorm_instance_norm_job *job);

/* ---- LCN ------------------------------------------------------------------ */

/* A window's extent on one side (rows above, columns left, ...) clipped to
 * a line of n elements: what lies further is zero padding for every pixel. */
static inline int64_t mpsnorm_window_reach(int64_t extent, int64_t n)
{
    return extent < n - 1 ? extent : n - 1;
}

enum { MPSNORM_POWER_RSQRT = 0, MPSNORM_POWER_RECIPROCAL = 1, MPSNORM_POWER_GENERAL = 2 };

/*
 * LCN of a run of output rows of one plane, streamed in strips
 * (kern_lcn.h). Window sums are block sums (kern_box.h): every window sum is
 * made only of that window's values, with blocks anchored at fixed positions
 * of the plane, so a row's result does not depend on the strip, band or
 * thread it was computed in. Statistics (window sums of X and X^2) are summed
 * in double for every dtype; the rest runs in float for float32 and float16
 * data and in double for float64.
 */
typedef struct mpsnorm_lcn_job {
    const mpsnorm_tensor *x, *dy, *out; /* dy: NULL for the forward */
    const mpsnorm_tensor *shift_x;      /* the caller's x, when x is a staged view of it */
    int dtype;
    int gradient;
    int stream_out; /* large unit-stride output: written with streaming stores */
    int64_t n, c, h, w;
    int64_t left, right, up, down; /* window: columns [i-left, i+right], rows [j-up, j+down] */
    int64_t band_rows, bands;      /* tasks: bands of output rows (shape only) */
    double count;                  /* N = kw * kh */
    double alpha, beta, delta, p0, pm, ps;
    int power;
    double d_const; /* delta^-beta, for alpha == 0 */
} mpsnorm_lcn_job;

/*
 * Per-worker scratch of the LCN kernels, in bytes from the block's start
 * (each section 64-byte aligned). Rows are `pitch` elements apart (zero
 * beyond the plane's width). Rings hold `cap` rows (a power of two; row r
 * in slot r & (cap - 1)), temporaries `temp` rows.
 */
typedef struct mpsnorm_lcn_layout {
    int64_t strip;          /* output rows per strip */
    int64_t pitch, cap, temp, vlen, hlen;
    size_t tsize;           /* bytes of the compute type: 4 (float) or 8 (double) */
    size_t xring, xptr;                     /* X rows (compute type) and row pointers */
    size_t hxring, hqring;                  /* double rings */
    size_t v1suf, v1pre;                    /* 2 quantities, double */
    size_t dyt;                             /* dY rows (compute type) */
    size_t gring, hgring, huring;           /* compute-type rings: G, sums of W, of U */
    size_t ut, umt;                         /* compute-type temporaries: U, W */
    size_t outt;                            /* output rows, strip rows */
    size_t v2suf, v2pre;                    /* 2 quantities, compute type */
    size_t ext, sums1, sums2;               /* horizontal pass */
    size_t zero, dummy;                     /* a zero row and a discarded row */
    size_t total;
} mpsnorm_lcn_layout;

/* Fills the layout of a job; -1 if the size overflows, else the total. */
int64_t mpsnorm_lcn_layout_of(const mpsnorm_lcn_job *job, mpsnorm_lcn_layout *layout);

/* ---- the table ------------------------------------------------------------ */

typedef struct mpsnorm_kernels {
    const char *name;
    /* owner: a plane (n*C + c), or an image n in channel mode */
    void (*instance_norm_reduce)(const mpsnorm_instance_norm_job *job, int64_t owner, int64_t band, int round,
                         void *scratch);
    void (*instance_norm_write)(const mpsnorm_instance_norm_job *job, int64_t owner, int64_t band, void *scratch);
    /* output rows [row_begin, row_end) of plane (n*C + c) */
    void (*lcn_rows)(const mpsnorm_lcn_job *job, const mpsnorm_lcn_layout *layout,
                     int64_t plane, int64_t row_begin, int64_t row_end, void *scratch);
} mpsnorm_kernels;

/* The best table this CPU runs (chosen once; MPSNORM_ISA=portable|avx2|avx512
 * in the environment caps the choice, for testing). */
const mpsnorm_kernels *mpsnorm_kernels_get(void);

/* Makes every later call use `table` (NULL: the automatic choice again).
 * For tests, which run every table this CPU has; not thread-safe with calls. */
void mpsnorm_kernels_force(const mpsnorm_kernels *table);

/* Every table compiled in and runnable here, best first (for tests). */
int mpsnorm_kernels_available(const mpsnorm_kernels **tables, int capacity);

extern const mpsnorm_kernels mpsnorm_kernels_portable;
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define MPSNORM_X86_KERNELS 1
extern const mpsnorm_kernels mpsnorm_kernels_avx2;
extern const mpsnorm_kernels mpsnorm_kernels_avx512;
#endif

#endif /* MPSNORM_CPU_KERNELS_H */
