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

#ifdef __cplusplus
}
#endif

#endif
