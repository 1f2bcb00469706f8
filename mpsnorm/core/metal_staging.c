/*
 * metal_staging.c -- tensors to and from the texel layout of MPSImage
 * textures (see metal_staging.h).
 *
 * Work is split into tasks of a band of rows of one image (staging_task),
 * spread over the CPU backend's threads. A task moves one row of texels at a
 * time, from (or to) the rows of that slice's channels. Values move as 2- or
 * 4-byte integers, bit for bit.
 */
#include "metal_staging.h"

#include <string.h>

#include "threads.h"

/* Byte order, for building float16 texels as 64-bit words (big-endian
 * machines take the general loop). */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define STAGING_LITTLE_ENDIAN 1
#else
#define STAGING_LITTLE_ENDIAN 0
#endif

/* Rows of a task: enough work to pay for a thread, few enough for balance. */
#define STAGING_BAND_ROWS 64

typedef struct staging_job {
    const mpsnorm_tensor *tensor;
    const mpsnorm_texel_layout *layout;
    int64_t first, bands;
    char *staging;
    int pack;        /* 1: tensor -> staging; 0: staging -> tensor */
    int pixel_major; /* each pixel's channels contiguous, in whole texels of 4 */
} staging_job;

int mpsnorm_texel_layout_of(const mpsnorm_tensor *t, int64_t components,
                            mpsnorm_texel_layout *layout)
{
    memset(layout, 0, sizeof *layout);
    if (!(components == 1 || components == 2 || components == 4) ||
        (components != 4 && components < t->shape[1]))
        return MPSNORM_ERR_INVALID_PARAMETER;
    layout->c = t->shape[1];
    layout->h = t->shape[2];
    layout->w = t->shape[3];
    layout->components = components;
    layout->slices = (layout->c + components - 1) / components;
    layout->item = mpsnorm_dtype_size(t->dtype);
    layout->row_bytes = (size_t)(layout->w * components) * layout->item;
    layout->slice_bytes = (size_t)layout->h * layout->row_bytes;
    layout->image_bytes = (size_t)layout->slices * layout->slice_bytes;
    return MPSNORM_OK;
}

/* Four float16 channel rows <-> a row of texels, a texel built or split as
 * one 64-bit word (little-endian: channel 0 in the low bits), which
 * vectorizes where a 2-byte interleave does not. */
static void staging_row16x4(uint16_t *restrict texels, uint16_t *restrict a,
                            uint16_t *restrict b, uint16_t *restrict c, uint16_t *restrict d,
                            int64_t w, int pack)
{
    if (pack)
        for (int64_t i = 0; i < w; ++i) {
            const uint64_t texel = (uint64_t)a[i] | (uint64_t)b[i] << 16 |
                                   (uint64_t)c[i] << 32 | (uint64_t)d[i] << 48;
            memcpy(texels + 4 * i, &texel, sizeof texel);
        }
    else
        for (int64_t i = 0; i < w; ++i) {
            uint64_t texel;
            memcpy(&texel, texels + 4 * i, sizeof texel);
            a[i] = (uint16_t)texel;
            b[i] = (uint16_t)(texel >> 16);
            c[i] = (uint16_t)(texel >> 32);
            d[i] = (uint16_t)(texel >> 48);
        }
}

/*
 * One row of one slice: texel row `texels` <-> the `comps` channel rows
 * `channel[k]` (NULL: a padding channel), whose pixels lie `step` elements
 * apart. Two forms: four planes of contiguous rows interleaved, which the
 * compiler vectorizes (NCHW), and the general loop for every other stride.
 */
#define STAGING_ROW(type, name)                                                                 \
    static void name(type *restrict texels, type *const channel[4], int64_t comps, int64_t w,  \
                     int64_t step, int pack)                                                   \
    {                                                                                          \
        const int full = comps == 4 && channel[3] != NULL;                                     \
        if (full && step == 1) {                                                               \
            type *restrict a = channel[0], *restrict b = channel[1];                           \
            type *restrict c = channel[2], *restrict d = channel[3];                           \
            if (sizeof(type) == 2 && STAGING_LITTLE_ENDIAN) { /* a texel: one 64-bit word */   \
                staging_row16x4((uint16_t *)texels, (uint16_t *)a, (uint16_t *)b,              \
                                (uint16_t *)c, (uint16_t *)d, w, pack);                        \
                return;                                                                        \
            }                                                                                  \
            if (pack)                                                                          \
                for (int64_t i = 0; i < w; ++i) {                                              \
                    texels[4 * i] = a[i];                                                      \
                    texels[4 * i + 1] = b[i];                                                  \
                    texels[4 * i + 2] = c[i];                                                  \
                    texels[4 * i + 3] = d[i];                                                  \
                }                                                                              \
            else                                                                               \
                for (int64_t i = 0; i < w; ++i) {                                              \
                    a[i] = texels[4 * i];                                                      \
                    b[i] = texels[4 * i + 1];                                                  \
                    c[i] = texels[4 * i + 2];                                                  \
                    d[i] = texels[4 * i + 3];                                                  \
                }                                                                              \
            return;                                                                            \
        }                                                                                      \
        for (int64_t k = 0; k < comps; ++k) {                                                  \
            type *plane = channel[k];                                                          \
            if (plane == NULL) { /* padding: zero going in, skipped coming out */              \
                if (pack)                                                                      \
                    for (int64_t i = 0; i < w; ++i)                                            \
                        texels[i * comps + k] = 0;                                             \
            } else if (pack) {                                                                 \
                for (int64_t i = 0; i < w; ++i)                                                \
                    texels[i * comps + k] = plane[i * step];                                   \
            } else {                                                                           \
                for (int64_t i = 0; i < w; ++i)                                                \
                    plane[i * step] = texels[i * comps + k];                                   \
            }                                                                                  \
        }                                                                                      \
    }

STAGING_ROW(uint16_t, staging_row16)
STAGING_ROW(uint32_t, staging_row32)

#undef STAGING_ROW

/* Row j of slice s of image n. */
#define STAGING_ROW_OF(type, row_fn)                                                           \
    do {                                                                                       \
        const int64_t *st = t->strides, comps = lay->components, w = lay->w;                   \
        type *texels = (type *)(job->staging + (size_t)((n - job->first) * lay->slices + s) * \
                                                   lay->slice_bytes) + j * w * comps;          \
        type *image = (type *)t->data + n * st[0];                                             \
        type *channel[4] = {NULL, NULL, NULL, NULL};                                           \
        for (int64_t k = 0; k < comps; ++k)                                                    \
            if (s * comps + k < lay->c)                                                        \
                channel[k] = image + (s * comps + k) * st[1] + j * st[2];                      \
        row_fn(texels, channel, comps, w, st[3], job->pack);                                   \
    } while (0)

static void staging_row(const staging_job *job, int64_t n, int64_t s, int64_t j)
{
    const mpsnorm_texel_layout *lay = job->layout;
    const mpsnorm_tensor *t = job->tensor;
    if (lay->item == 2)
        STAGING_ROW_OF(uint16_t, staging_row16);
    else
        STAGING_ROW_OF(uint32_t, staging_row32);
}

#undef STAGING_ROW_OF

/* Row j of every slice of image n where each pixel's channels are contiguous
 * and fill whole texels (NHWC, C a multiple of 4): pixel by pixel, its texels
 * go to (or come from) every slice, so the row is read once, in order. */
#define STAGING_PIXELS(type)                                                                   \
    do {                                                                                       \
        const int64_t *st = t->strides, w = lay->w, slices = lay->slices;                      \
        type *texels = (type *)(job->staging + (size_t)((n - job->first) * slices) *          \
                                                   lay->slice_bytes) + j * w * 4;              \
        type *pixels = (type *)t->data + n * st[0] + j * st[2];                                \
        const size_t slice = lay->slice_bytes / sizeof(type);                                  \
        for (int64_t i = 0; i < w; ++i)                                                        \
            for (int64_t s = 0; s < slices; ++s) {                                             \
                type *texel = texels + (size_t)s * slice + 4 * i;                              \
                type *pixel = pixels + i * st[3] + 4 * s;                                      \
                if (job->pack)                                                                 \
                    memcpy(texel, pixel, 4 * sizeof(type));                                    \
                else                                                                           \
                    memcpy(pixel, texel, 4 * sizeof(type));                                    \
            }                                                                                  \
    } while (0)

static void staging_pixels(const staging_job *job, int64_t n, int64_t j)
{
    const mpsnorm_texel_layout *lay = job->layout;
    const mpsnorm_tensor *t = job->tensor;
    if (lay->item == 2)
        STAGING_PIXELS(uint16_t);
    else
        STAGING_PIXELS(uint32_t);
}

#undef STAGING_PIXELS

/*
 * A task is a band of rows of one image: of one slice (each channel's plane is
 * read alone), or of every slice pixel by pixel (staging_pixels).
 */
static void staging_task(void *context, int64_t begin, int64_t end, int worker)
{
    const staging_job *job = context;
    const mpsnorm_texel_layout *lay = job->layout;
    const int64_t slices = job->pixel_major ? 1 : lay->slices;
    (void)worker;
    for (int64_t task = begin; task < end; ++task) {
        const int64_t band = task % job->bands, s = task / job->bands % slices;
        const int64_t n = job->first + task / job->bands / slices;
        const int64_t j0 = band * STAGING_BAND_ROWS;
        const int64_t j1 = j0 + STAGING_BAND_ROWS < lay->h ? j0 + STAGING_BAND_ROWS : lay->h;
        for (int64_t j = j0; j < j1; ++j) {
            if (job->pixel_major)
                staging_pixels(job, n, j);
            else
                staging_row(job, n, s, j);
        }
    }
}

static void run(const mpsnorm_tensor *t, int64_t first, int64_t count,
                const mpsnorm_texel_layout *layout, char *staging, int pack)
{
    staging_job job;
    int64_t tasks;
    job.tensor = t;
    job.layout = layout;
    job.first = first;
    job.bands = (layout->h + STAGING_BAND_ROWS - 1) / STAGING_BAND_ROWS;
    job.staging = staging;
    job.pack = pack;
    job.pixel_major = layout->components == 4 && layout->c % 4 == 0 && t->strides[1] == 1;
    tasks = count * (job.pixel_major ? 1 : layout->slices) * job.bands;
    if (tasks <= 0)
        return;
    const size_t task_bytes = (job.pixel_major ? layout->image_bytes : layout->slice_bytes) /
                              (size_t)job.bands;
    mpsnorm_parallel_for(tasks, mpsnorm_workers_for(tasks, (int64_t)task_bytes), staging_task,
                         &job);
}

void mpsnorm_metal_pack(const mpsnorm_tensor *t, int64_t first, int64_t count,
                        const mpsnorm_texel_layout *layout, void *staging)
{
    run(t, first, count, layout, staging, 1);
}

void mpsnorm_metal_unpack(const void *staging, int64_t first, int64_t count,
                          const mpsnorm_texel_layout *layout, const mpsnorm_tensor *t)
{
    run(t, first, count, layout, (char *)staging, 0);
}
