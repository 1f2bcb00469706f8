/*
 * threads.c -- the process-wide thread setting and the pthread split of
 * tasks over workers (see threads.h).
 *
 * Threads are created per call and joined before returning; worker 0 runs on
 * the calling thread. Nothing here allocates per task, and a failure to start
 * a thread (or to allocate the bookkeeping) only means its range runs on the
 * calling thread: the work is always complete.
 */
#if defined(__linux__) && !defined(_GNU_SOURCE)
#define _GNU_SOURCE /* sched_getaffinity, CPU_COUNT */
#endif

#include "threads.h"

#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

#if defined(__linux__)
#include <sched.h>
#endif

#include "mpsnorm.h"

#define MPSNORM_MAX_THREADS 1024
/* Below this many elementary operations in a whole call, one thread. */
#define MPSNORM_THREAD_MIN_WORK ((int64_t)1 << 15)

/* 0 = not yet known: the default is computed on first use. */
static int g_num_threads = 0;

#if defined(__GNUC__) || defined(__clang__)
static int load_setting(void)
{
    return __atomic_load_n(&g_num_threads, __ATOMIC_ACQUIRE);
}
static void store_setting(int n)
{
    __atomic_store_n(&g_num_threads, n, __ATOMIC_RELEASE);
}
static void store_default(int n)
{
    int expected = 0;
    /* keep a value mpsnorm_set_num_threads stored meanwhile */
    (void)__atomic_compare_exchange_n(&g_num_threads, &expected, n, 0, __ATOMIC_ACQ_REL,
                                      __ATOMIC_ACQUIRE);
}
#else
static pthread_mutex_t g_setting_lock = PTHREAD_MUTEX_INITIALIZER;
static int load_setting(void)
{
    int n;
    pthread_mutex_lock(&g_setting_lock);
    n = g_num_threads;
    pthread_mutex_unlock(&g_setting_lock);
    return n;
}
static void store_setting(int n)
{
    pthread_mutex_lock(&g_setting_lock);
    g_num_threads = n;
    pthread_mutex_unlock(&g_setting_lock);
}
static void store_default(int n)
{
    pthread_mutex_lock(&g_setting_lock);
    if (g_num_threads == 0)
        g_num_threads = n;
    pthread_mutex_unlock(&g_setting_lock);
}
#endif

/* CPUs this process may run on, clamped to 1 .. MPSNORM_MAX_THREADS. */
static int default_thread_count(void)
{
    long count = 0;

#if defined(__linux__) && defined(CPU_COUNT)
    {
        cpu_set_t set;
        CPU_ZERO(&set);
        if (sched_getaffinity(0, sizeof set, &set) == 0) {
            count = CPU_COUNT(&set);
        }
#if defined(CPU_ALLOC)
        else {
            /* more CPUs than a cpu_set_t holds: ask with a larger set */
            const size_t cpus = 8192;
            cpu_set_t *big = CPU_ALLOC(cpus);
            if (big != NULL) {
                size_t size = CPU_ALLOC_SIZE(cpus);
                CPU_ZERO_S(size, big);
                if (sched_getaffinity(0, size, big) == 0)
                    count = CPU_COUNT_S(size, big);
                CPU_FREE(big);
            }
        }
#endif
    }
#endif
#if defined(_SC_NPROCESSORS_ONLN)
    if (count < 1)
        count = sysconf(_SC_NPROCESSORS_ONLN);
#endif
    if (count < 1)
        count = 1;
    if (count > MPSNORM_MAX_THREADS)
        count = MPSNORM_MAX_THREADS;
    return (int)count;
}

int mpsnorm_set_num_threads(int n)
{
    if (n < 1 || n > MPSNORM_MAX_THREADS)
        return MPSNORM_ERR_INVALID_PARAMETER;
    store_setting(n);
    return MPSNORM_OK;
}

int mpsnorm_get_num_threads(void)
{
    int n = load_setting();
    if (n == 0) {
        store_default(default_thread_count());
        n = load_setting();
    }
    return n;
}

int mpsnorm_workers_for(int64_t tasks, int64_t work_per_task)
{
    int setting;

    if (tasks <= 1)
        return 1;
    if (work_per_task < 1)
        work_per_task = 1;
    /* both factors below 2^15 means the product cannot overflow */
    if (tasks < MPSNORM_THREAD_MIN_WORK && work_per_task < MPSNORM_THREAD_MIN_WORK &&
        tasks * work_per_task < MPSNORM_THREAD_MIN_WORK)
        return 1;
    setting = mpsnorm_get_num_threads();
    return tasks < (int64_t)setting ? (int)tasks : setting;
}

typedef struct worker_job {
    mpsnorm_task_fn fn;
    void *context;
    int64_t first, last;
    int worker;
    int started;
    pthread_t thread;
} worker_job;

static void *worker_main(void *arg)
{
    worker_job *job = (worker_job *)arg;
    job->fn(job->context, job->first, job->last, job->worker);
    return NULL;
}

/* Range of worker w: the tasks split as evenly as possible, in order. */
static void worker_range(int64_t tasks, int workers, int w, int64_t *first, int64_t *last)
{
    int64_t share = tasks / workers;
    int64_t extra = tasks % workers;
    *first = (int64_t)w * share + (w < extra ? (int64_t)w : extra);
    *last = *first + share + (w < extra ? 1 : 0);
}

void mpsnorm_parallel_for(int64_t tasks, int workers, mpsnorm_task_fn fn, void *context)
{
    worker_job *jobs;
    int64_t first, last;
    int w;

    if (tasks <= 0)
        return;
    if (workers < 1)
        workers = 1;
    if ((int64_t)workers > tasks)
        workers = (int)tasks;
    if (workers == 1) {
        fn(context, 0, tasks, 0);
        return;
    }

    jobs = (worker_job *)calloc((size_t)workers, sizeof *jobs);
    if (jobs == NULL) {
        /* no bookkeeping: every range on this thread, still with its own worker index */
        for (w = 0; w < workers; ++w) {
            worker_range(tasks, workers, w, &first, &last);
            fn(context, first, last, w);
        }
        return;
    }

    for (w = 1; w < workers; ++w) {
        worker_job *job = &jobs[w];
        job->fn = fn;
        job->context = context;
        job->worker = w;
        worker_range(tasks, workers, w, &job->first, &job->last);
        job->started = pthread_create(&job->thread, NULL, worker_main, job) == 0;
    }

    worker_range(tasks, workers, 0, &first, &last);
    fn(context, first, last, 0);

    /* ranges whose thread could not start run here, after worker 0 */
    for (w = 1; w < workers; ++w)
        if (!jobs[w].started)
            fn(context, jobs[w].first, jobs[w].last, w);

    for (w = 1; w < workers; ++w)
        if (jobs[w].started)
            pthread_join(jobs[w].thread, NULL);

    free(jobs);
}
