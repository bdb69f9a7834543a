/*
 * wd_threadpool: a small persistent pool of pthreads for the CPU backend's
 * data-parallel ops (split rows of a matmul, heads of attention, ...).
 *
 * wd_threadpool_run hands out task indices 0..n_tasks-1 to the pool's threads
 * and to the calling thread, and returns when every task has finished. Workers
 * spin briefly after a job before sleeping, so back-to-back runs in a decode
 * step do not pay a futex wake-up each. One run at a time per pool: the pool is
 * owned by one engine thread and must not be shared by concurrent callers.
 */
#ifndef WD_KERNELS_THREADPOOL_H
#define WD_KERNELS_THREADPOOL_H

#include <stdint.h>

#include "common/util/status.h"

#ifdef __cplusplus
extern "C" {
#endif

struct wd_threadpool;

/* Starts n_threads - 1 workers (the caller of wd_threadpool_run is the n-th thread).
 * Returns WD_ERR_INVALID for n_threads < 1 or > 1024, WD_ERR_NOMEM when memory or a
 * thread cannot be had (everything started is stopped again). */
enum wd_status wd_threadpool_create(int n_threads, struct wd_threadpool **tp_p);

/* Stops and joins the workers; NULL-safe. No run may be in progress. */
void wd_threadpool_destroy(struct wd_threadpool *tp);

/* Threads that execute tasks, the caller included; 1 for a NULL pool. */
int wd_threadpool_size(const struct wd_threadpool *tp);

/* Calls fn(arg, idx, n_tasks) once for every idx in [0, n_tasks), spread over the
 * pool, and returns when all calls have returned. tp == NULL runs them inline in order.
 * fn must not call wd_threadpool_run on the same pool. */
void wd_threadpool_run(struct wd_threadpool *tp, void (*fn)(void *arg, int idx, int n), void *arg,
                       int n_tasks);

/* Most tasks wd_threadpool_guided_split makes. */
#define WD_GUIDED_MAX_TASKS 256

/* Splits [0, total) into tasks for n_threads that claim them in order: each task takes
 * 1 / (2 n_threads) of what is left (a multiple of gran units, at least min_units), so the
 * first tasks are long (few restarts of a memory stream) and the last ones short (the
 * threads finish together). Writes bounds[0..n] (bounds[0] = 0, bounds[n] = total, at most
 * WD_GUIDED_MAX_TASKS + 1 entries) and returns the task count n (0 when total <= 0). */
int wd_threadpool_guided_split(int64_t total, int n_threads, int64_t gran, int64_t min_units,
                               int64_t *bounds);

#ifdef __cplusplus
}
#endif

#endif
