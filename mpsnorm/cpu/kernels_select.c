/*
 * kernels_select.c -- which compiled kernel table this process uses.
 *
 * x86-64 (GCC or clang): AVX-512 (F, BW, DQ, VL) if the CPU and OS have it,
 * else AVX2 + FMA + F16C, else the portable table; elsewhere the portable
 * table. Decided once per process, so results never mix instruction sets.
 * MPSNORM_ISA=portable|avx2|avx512 in the environment caps the choice.
 */
#include "kernels.h"

#include <stdlib.h>
#include <string.h>

#if defined(MPSNORM_X86_KERNELS)
#include <cpuid.h>

/* F16C: CPUID leaf 1, ECX bit 29 (every AVX2 CPU has it; checked anyway) */
static int has_f16c(void)
{
    unsigned a, b, c, d;
    return __get_cpuid(1, &a, &b, &c, &d) && (c & (1u << 29)) != 0;
}
#endif

static int rank_of(const mpsnorm_kernels *table)
{
#if defined(MPSNORM_X86_KERNELS)
    if (table == &mpsnorm_kernels_avx512)
        return 3;
    if (table == &mpsnorm_kernels_avx2)
        return 2;
#endif
    (void)table;
    return 0;
}

int mpsnorm_kernels_available(const mpsnorm_kernels **tables, int capacity)
{
    int count = 0;
#if defined(MPSNORM_X86_KERNELS)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
        __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && has_f16c() &&
        count < capacity)
        tables[count++] = &mpsnorm_kernels_avx512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
        has_f16c() && count < capacity)
        tables[count++] = &mpsnorm_kernels_avx2;
#endif
    if (count < capacity)
        tables[count++] = &mpsnorm_kernels_portable;
    return count;
}

static const mpsnorm_kernels *choose(void)
{
    const mpsnorm_kernels *tables[4];
    const char *cap = getenv("MPSNORM_ISA");
    int limit = 3, count, k;

    if (cap != NULL) {
        if (strcmp(cap, "portable") == 0)
            limit = 0;
        else if (strcmp(cap, "avx2") == 0)
            limit = 2;
    }
    count = mpsnorm_kernels_available(tables, 4);
    for (k = 0; k < count; ++k)
        if (rank_of(tables[k]) <= limit)
            return tables[k];
    return &mpsnorm_kernels_portable;
}

static const mpsnorm_kernels *g_table = NULL;

const mpsnorm_kernels *mpsnorm_kernels_get(void)
{
#if defined(__GNUC__) || defined(__clang__)
    const mpsnorm_kernels *table = __atomic_load_n(&g_table, __ATOMIC_ACQUIRE);
    if (table == NULL) {
        table = choose(); /* the same answer in every thread: a race only repeats it */
        __atomic_store_n(&g_table, table, __ATOMIC_RELEASE);
    }
    return table;
#else
    if (g_table == NULL)
        g_table = choose();
    return g_table;
#endif
}

void mpsnorm_kernels_force(const mpsnorm_kernels *table)
{
#if defined(__GNUC__) || defined(__clang__)
    __atomic_store_n(&g_table, table, __ATOMIC_RELEASE);
#else
    g_table = table;
#endif
}
