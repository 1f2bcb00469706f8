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

enum {
    MPSNORM_POWER_RSQRT = 0,          /* beta 0.5 */
    MPSNORM_POWER_RECIPROCAL = 1,     /* beta 1 */
    MPSNORM_POWER_THREE_QUARTERS = 2, /* beta 0.75 */
    MPSNORM_POWER_GENERAL = 3
};

/*
 * LCN of a run of output rows of one plane, streamed in strips
 * (kern_lcn.h). Window sums are block sums (kern_box.h): every window sum is
 * made only of that window's values, with blocks anchored at fixed positions
 * of the plane, so a row's result does not depend on the strip, band or
 * thread it was computed in. Everything runs in float for float32 and
 * float16 data and in double for float64; the window statistics are summed
 * about references (kern_lcn_typed.h) so that a large local mean costs no
 * accuracy.
 */
typedef struct mpsnorm_lcn_job {
    const mpsnorm_tensor *x, *dy, *out; /* dy: NULL for the forward */
    const mpsnorm_tensor *whole_x;      /* the caller's x (x may be a staged view of it):
                                           the anchors are read from it */
    int dtype;
    int gradient;
    int stream_out; /* large unit-stride output: written with streaming stores */
    int staged;     /* x, dy and out are planar copies in the worker's scratch (cached) */
    int64_t n, c, h, w;
    int64_t left, right, up, down; /* window: columns [i-left, i+right], rows [j-up, j+down] */
    int64_t band_rows, bands;      /* tasks: bands of output rows (shape only) */
    int64_t tile_columns;          /* output columns per column tile (shape only; >= w: one) */
    double count;                  /* N = kw * kh */
    double alpha, beta, delta, p0, pm, ps;
    int power;
    double d_const; /* delta^-beta, for alpha == 0 */
} mpsnorm_lcn_job;

/*
 * Per-worker scratch of the LCN kernels, in bytes from the block's start
 * (each section 64-byte aligned). Rows are `pitch` elements apart. Rings
 * hold `cap` rows (row r in slot r % cap),
 * temporaries `temp` rows. Elements are of the compute type (tsize bytes:
 * float, or double for float64 data); a position of a line (kern_box.h) is
 * one vector, at most 64 bytes.
 */
typedef struct mpsnorm_lcn_layout {
    int64_t strip;          /* output rows per strip */
    int64_t pitch, cap, temp, vlen, hlen;
    int64_t groups;         /* rows of per-column references: row groups a walk spans */
    int64_t walk_rows;      /* entries of each row table of a vertical walk */
    int64_t line_sums_len;  /* positions of one line of row sums */
    size_t tsize;
    size_t x_rows, x_row_ptrs;                  /* ring of X rows, and the row of each slot */
    size_t sums_x_own, sums_x2_own;             /* rings: row sums of X - r, (X - r)^2 about */
    size_t sums_x_prev, sums_x2_prev;           /* the row's own / the previous group's anchors */
    size_t stat_suffix, stat_prefix;            /* vertical statistics: 2 len rows, 2 rows */
    size_t refs_by_column, cols_inside;         /* groups rows; one row */
    int64_t anchor_pitch;                       /* elements of a row of anchors */
    size_t anchor_set_bytes;                    /* bytes of one set's cached rows */
    size_t anchor_rows, lane_refs;              /* cached rows of anchors (2 sets); per-lane (2) */
    size_t walk_tables, walk_plan;              /* a vertical walk's 4 row tables, its plan */
    size_t dy_rows;                             /* temporaries */
    size_t g_rows, sums_w, sums_u;              /* rings: G, row sums of W and of c2*U */
    size_t u_rows, w_rows;                      /* temporaries: c2*U, W */
    size_t out_rows;                            /* strip rows */
    size_t adj_suffix, adj_prefix;              /* vertical adjoint sums: 2 len rows, 2 rows */
    size_t line, line_suffix, line_sums;        /* row sums: 2 lines, 4 suffix blocks, 4 lines */
    size_t zero_row, discard_row;               /* a zero row and a row written and never read */
    size_t total;
} mpsnorm_lcn_layout;

/* Row groups whose anchors a kernel caches (kern_lcn_state.h). */
#define MPSNORM_LCN_ANCHOR_SLOTS 32

/*
 * A column tile of an LCN job: output columns [c0, c1) and the columns each
 * stage reads and writes for them (kern_lcn.h), for vectors of `lanes`
 * elements. Row sums are taken over whole blocks of the window's width
 * (kern_box.h), so each stage reaches a block and a window beyond the next.
 */
typedef struct mpsnorm_lcn_tile {
    int64_t c0, c1;
    int64_t out_lo, out_hi;   /* c0, c1 rounded out to whole vectors */
    int64_t adj_mlo, adj_mhi; /* gradient: the blocks of the mirrored window's row sums */
    int64_t mid_lo, mid_hi;   /* gradient: the columns of W and U those read */
    int64_t s_lo, s_hi;       /* the statistics' columns, whole vectors */
    int64_t stat_mlo, stat_mhi; /* their blocks */
    int64_t x_lo, x_hi;       /* the columns of X those read */
    int64_t b0, span;         /* row buffers hold columns [b0, b0 + span) */
} mpsnorm_lcn_tile;

static inline int64_t mpsnorm_floor_to(int64_t v, int64_t a)
{
    return v / a * a; /* v >= 0 */
}

static inline int64_t mpsnorm_ceil_to(int64_t v, int64_t a)
{
    return (v + a - 1) / a * a;
}

/* The blocks [*mlo, *mhi] of row sums (kern_box.h) that hold outputs [lo,
 * hi) of a window reaching `reach` columns to the left, `len` long, and the
 * columns [*in_lo, *in_hi) of a row of w they read. */
static inline void mpsnorm_lcn_blocks_of(int64_t lo, int64_t hi, int64_t len, int64_t reach,
                                         int64_t w, int64_t *mlo, int64_t *mhi, int64_t *in_lo,
                                         int64_t *in_hi)
{
    const int64_t first = lo / len * len - reach, last = (hi - 1) / len * len + 2 * len - reach;
    *mlo = lo / len;
    *mhi = (hi - 1) / len;
    *in_lo = first > 0 ? first : 0;
    *in_hi = last < w ? last : w;
}

static inline void mpsnorm_lcn_tile_of(const mpsnorm_lcn_job *job, int64_t lanes, int64_t c0,
                                       int64_t c1, mpsnorm_lcn_tile *t)
{
    const int64_t cl = mpsnorm_window_reach(job->left, job->w);
    const int64_t cr = mpsnorm_window_reach(job->right, job->w);
    const int64_t len = cl + cr + 1;
    int64_t hi;
    t->c0 = c0;
    t->c1 = c1;
    t->out_lo = mpsnorm_floor_to(c0, lanes);
    t->out_hi = mpsnorm_ceil_to(c1, lanes);
    if (job->gradient) {
        /* output q sums W and U over columns [q - cr, q + cl] */
        mpsnorm_lcn_blocks_of(t->out_lo, t->out_hi, len, cr, job->w, &t->adj_mlo, &t->adj_mhi,
                              &t->mid_lo, &t->mid_hi);
        t->s_lo = mpsnorm_floor_to(t->mid_lo, lanes);
        t->s_hi = mpsnorm_ceil_to(t->mid_hi, lanes);
    } else {
        t->adj_mlo = t->adj_mhi = 0;
        t->mid_lo = t->mid_hi = 0;
        t->s_lo = t->out_lo;
        t->s_hi = t->out_hi;
    }
    /* output i sums X over columns [i - cl, i + cr] */
    mpsnorm_lcn_blocks_of(t->s_lo, t->s_hi, len, cl, job->w, &t->stat_mlo, &t->stat_mhi,
                          &t->x_lo, &t->x_hi);
    t->b0 = mpsnorm_floor_to(t->x_lo, lanes);
    hi = mpsnorm_ceil_to(t->x_hi, lanes);
    t->span = (hi > t->s_hi ? hi : t->s_hi) - t->b0;
}

/* Makes every later LCN call use column tiles of `columns` (0: the automatic
 * choice). For tests, which check that tiles do not change a bit; not
 * thread-safe with calls. */
void mpsnorm_lcn_tile_force(int64_t columns);

/* With 0, every later LCN call streams its planes however small (1: tiny
 * planes go window by window, lcn_small.h). For tests, which run the kernels
 * both ways; not thread-safe with calls. */
void mpsnorm_lcn_small_force(int enabled);

/* Bytes of one row of a vertical walk's plan (kern_lcn_state.h) at most. */
#define MPSNORM_LCN_PLAN_BYTES 128

/* Fills the layout of a job; -1 if the size overflows, else the total. */
int64_t mpsnorm_lcn_layout_of(const mpsnorm_lcn_job *job, mpsnorm_lcn_layout *layout);

/* ---- the table ------------------------------------------------------------ */

typedef struct mpsnorm_kernels {
    const char *name;
    /* owner: a plane (n*C + c), or an image n in channel mode */
    void (*instance_norm_reduce)(const mpsnorm_instance_norm_job *job, int64_t owner,
                                 int64_t band, int round, void *scratch);
    void (*instance_norm_write)(const mpsnorm_instance_norm_job *job, int64_t owner, int64_t band,
                                void *scratch);
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
