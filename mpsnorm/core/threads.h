/*
 * threads.h -- the CPU backend's split of work over pthreads.
 *
 * Work is split into tasks (planes, or groups of planes); each task is done
 * by exactly one thread, start to end, so results never depend on how many
 * threads ran. The thread count is process-wide (mpsnorm_set_num_threads).
 */
#ifndef MPSNORM_CORE_THREADS_H
#define MPSNORM_CORE_THREADS_H

#include <stdint.h>

/* Does tasks [first, last) on worker `worker` (0 .. workers-1). */
typedef void (*mpsnorm_task_fn)(void *context, int64_t first, int64_t last, int worker);

/*
 * How many workers a call with `tasks` tasks of about `work_per_task`
 * elementary operations each should use: never more than the thread setting
 * or the task count, and 1 when the whole job is too small to pay for
 * starting a thread. Always >= 1.
 */
int mpsnorm_workers_for(int64_t tasks, int64_t work_per_task);

/*
 * Runs fn over [0, tasks) split into `workers` contiguous ranges, worker 0 on
 * the calling thread, and returns when all are done. A range whose thread
 * cannot be started runs on the calling thread instead, so the work is
 * always complete.
 */
void mpsnorm_parallel_for(int64_t tasks, int workers, mpsnorm_task_fn fn, void *context);

#endif /* MPSNORM_CORE_THREADS_H */
