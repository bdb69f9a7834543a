/*
 * Persistent pthread pool. A job is published under the mutex; its tasks are
 * claimed through one 64-bit atomic that packs (job generation, next index),
 * so a worker that wakes late for an old job can never claim a task of a newer
 * one: its compare-and-swap sees the generation change and it backs off. The
 * caller takes tasks too and then waits for the done counter.
 */
#include "kernels/threadpool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>

/* Spin iterations (each a CPU pause) a worker polls for the next job before it sleeps:
 * about 10-50 us, longer than the gap between two matmuls of one decode step. */
#define SPIN_ITERS 2000

struct wd_threadpool {
    int n_threads;
    int n_workers_started;
    pthread_t *workers;
    pthread_mutex_t mu;
    pthread_cond_t wake;     /* a new job or stop */
    pthread_cond_t finished; /* the last task of a job finished */
    _Atomic uint32_t generation;
    int stop;
    /* The current job; written under mu before generation is bumped. */
    void (*fn)(void *arg, int idx, int n);
    void *arg;
    int n_tasks;
    _Atomic uint64_t claim; /* generation << 32 | next task index */
    _Atomic int n_done;
};

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

/* Claims the next task of job `gen`; -1 when the job has no task left or is over. */
static int claim_task(struct wd_threadpool *tp, uint32_t gen, int n_tasks)
{
    uint64_t cur = atomic_load_explicit(&tp->claim, memory_order_relaxed);
    for (;;) {
        if ((uint32_t)(cur >> 32) != gen || (int)(uint32_t)cur >= n_tasks)
            return -1;
        if (atomic_compare_exchange_weak_explicit(&tp->claim, &cur, cur + 1, memory_order_acq_rel,
                                                  memory_order_relaxed))
            return (int)(uint32_t)cur;
    }
}

static void run_tasks(struct wd_threadpool *tp, uint32_t gen, void (*fn)(void *, int, int),
                      void *arg, int n_tasks)
{
    int idx;
    while ((idx = claim_task(tp, gen, n_tasks)) >= 0) {
        fn(arg, idx, n_tasks);
        if (atomic_fetch_add_explicit(&tp->n_done, 1, memory_order_acq_rel) + 1 == n_tasks) {
            pthread_mutex_lock(&tp->mu);
            pthread_cond_signal(&tp->finished);
            pthread_mutex_unlock(&tp->mu);
        }
    }
}

static void *worker_main(void *p)
{
    struct wd_threadpool *tp = p;
    uint32_t seen = 0;
    for (;;) {
        for (int i = 0; i < SPIN_ITERS; i++) {
            if (atomic_load_explicit(&tp->generation, memory_order_acquire) != seen)
                break;
            cpu_relax();
        }
        pthread_mutex_lock(&tp->mu);
        while (!tp->stop && atomic_load_explicit(&tp->generation, memory_order_relaxed) == seen)
            pthread_cond_wait(&tp->wake, &tp->mu);
        if (tp->stop) {
            pthread_mutex_unlock(&tp->mu);
            return NULL;
        }
        seen = atomic_load_explicit(&tp->generation, memory_order_relaxed);
        void (*fn)(void *, int, int) = tp->fn;
        void *arg = tp->arg;
        int n_tasks = tp->n_tasks;
        pthread_mutex_unlock(&tp->mu);
        run_tasks(tp, seen, fn, arg, n_tasks);
    }
}

enum wd_status wd_threadpool_create(int n_threads, struct wd_threadpool **tp_p)
{
    if (n_threads < 1 || n_threads > 1024)
        return WD_ERR_INVALID;
    struct wd_threadpool *tp = calloc(1, sizeof(*tp));
    if (!tp)
        return WD_ERR_NOMEM;
    tp->n_threads = n_threads;
    tp->workers = calloc((size_t)n_threads, sizeof(pthread_t));
    if (!tp->workers) {
        free(tp);
        return WD_ERR_NOMEM;
    }
    pthread_mutex_init(&tp->mu, NULL);
    pthread_cond_init(&tp->wake, NULL);
    pthread_cond_init(&tp->finished, NULL);
    for (int i = 0; i < n_threads - 1; i++) {
        if (pthread_create(&tp->workers[i], NULL, worker_main, tp) != 0) {
            wd_threadpool_destroy(tp);
            return WD_ERR_NOMEM;
        }
        tp->n_workers_started++;
    }
    *tp_p = tp;
    return WD_OK;
}

void wd_threadpool_destroy(struct wd_threadpool *tp)
{
    if (!tp)
        return;
    pthread_mutex_lock(&tp->mu);
    tp->stop = 1;
    pthread_cond_broadcast(&tp->wake);
    pthread_mutex_unlock(&tp->mu);
    for (int i = 0; i < tp->n_workers_started; i++)
        pthread_join(tp->workers[i], NULL);
    pthread_cond_destroy(&tp->finished);
    pthread_cond_destroy(&tp->wake);
    pthread_mutex_destroy(&tp->mu);
    free(tp->workers);
    free(tp);
}

int wd_threadpool_size(const struct wd_threadpool *tp)
{
    return tp ? tp->n_threads : 1;
}

void wd_threadpool_run(struct wd_threadpool *tp, void (*fn)(void *arg, int idx, int n), void *arg,
                       int n_tasks)
{
    if (n_tasks <= 0)
        return;
    if (!tp || tp->n_threads == 1 || n_tasks == 1) {
        for (int i = 0; i < n_tasks; i++)
            fn(arg, i, n_tasks);
        return;
    }
    pthread_mutex_lock(&tp->mu);
    uint32_t gen = atomic_load_explicit(&tp->generation, memory_order_relaxed) + 1;
    if (gen == 0) /* 0 is every worker's initial "seen" value */
        gen = 1;
    tp->fn = fn;
    tp->arg = arg;
    tp->n_tasks = n_tasks;
    atomic_store_explicit(&tp->n_done, 0, memory_order_relaxed);
    atomic_store_explicit(&tp->claim, (uint64_t)gen << 32, memory_order_release);
    atomic_store_explicit(&tp->generation, gen, memory_order_release);
    pthread_cond_broadcast(&tp->wake);
    pthread_mutex_unlock(&tp->mu);

    run_tasks(tp, gen, fn, arg, n_tasks);

    for (int i = 0; i < SPIN_ITERS; i++) {
        if (atomic_load_explicit(&tp->n_done, memory_order_acquire) == n_tasks)
            return;
        cpu_relax();
    }
    pthread_mutex_lock(&tp->mu);
    while (atomic_load_explicit(&tp->n_done, memory_order_acquire) != n_tasks)
        pthread_cond_wait(&tp->finished, &tp->mu);
    pthread_mutex_unlock(&tp->mu);
}

int wd_threadpool_guided_split(int64_t total, int n_threads, int64_t gran, int64_t min_units,
                               int64_t *bounds)
{
    if (total <= 0)
        return 0;
    if (gran < 1)
        gran = 1;
    /* A floor of total / 128 keeps the count within the cap (the geometric part ends at
     * 2 n_threads floors, and the tail has at most 2 n_threads or 128 tasks of a floor). */
    if (min_units < total / (WD_GUIDED_MAX_TASKS / 2))
        min_units = total / (WD_GUIDED_MAX_TASKS / 2);
    min_units = (min_units < gran ? gran : min_units + gran - 1) / gran * gran;
    int64_t done = 0, div = 2 * (int64_t)(n_threads < 1 ? 1 : n_threads);
    int n = 0;
    bounds[0] = 0;
    while (done < total) {
        int64_t left = total - done;
        int64_t size = n_threads <= 1 ? left : (left / div + gran - 1) / gran * gran;
        if (size < min_units)
            size = min_units;
        if (size > left || n == WD_GUIDED_MAX_TASKS - 1)
            size = left;
        done += size;
        bounds[++n] = done;
    }
    return n;
}
