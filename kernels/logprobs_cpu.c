/*
 * Threaded log-sum-exp over fixed column chunks (see logprobs_cpu.h). Two pool passes over
 * (row, chunk) tasks: chunk maxima, then chunk sums of exp(x - row max); the row's maxima
 * and sums are combined serially in chunk order.
 */
#include "kernels/logprobs_cpu.h"

#include <math.h>

#include "kernels/vec_cpu.h"

/* Columns per chunk: 16 chunks of a 129k vocabulary, 8 tasks per thread on 2 threads. */
#define CHUNK 8192

struct lse_job {
    const float *logits;
    int vocab;
    int64_t n_parts;
    double *part;      /* [n, n_parts]: chunk maxima (pass 1), then chunk sums (pass 2) */
    const double *max; /* [n] row maxima (pass 2) */
};

static void chunk_range(const struct lse_job *j, int idx, const float **x_p, int *len_p)
{
    int64_t r = idx / j->n_parts, c = idx % j->n_parts;
    int64_t begin = c * CHUNK, end = begin + CHUNK < j->vocab ? begin + CHUNK : j->vocab;
    *x_p = j->logits + r * j->vocab + begin;
    *len_p = (int)(end - begin);
}

static void max_task(void *arg, int idx, int n_tasks)
{
    struct lse_job *j = arg;
    const float *x;
    int len;
    chunk_range(j, idx, &x, &len);
    j->part[idx] = wd_vec_max(x, len);
    (void)n_tasks;
}

static void sum_task(void *arg, int idx, int n_tasks)
{
    struct lse_job *j = arg;
    const float *x;
    int len;
    chunk_range(j, idx, &x, &len);
    j->part[idx] = wd_vec_exp_sum_f64(x, len, (float)j->max[idx / j->n_parts]);
    (void)n_tasks;
}

int64_t wd_logsumexp_cpu_parts(int vocab)
{
    return vocab > 0 ? (vocab + CHUNK - 1) / CHUNK : 1;
}

void wd_logsumexp_cpu(const float *logits, int64_t n, int vocab, double *part, double *lse,
                      struct wd_threadpool *tp)
{
    if (n <= 0 || vocab <= 0)
        return;
    struct lse_job j = {.logits = logits,
                        .vocab = vocab,
                        .n_parts = wd_logsumexp_cpu_parts(vocab),
                        .part = part,
                        .max = lse};
    int n_tasks = (int)(n * j.n_parts);
    wd_threadpool_run(tp, max_task, &j, n_tasks);
    for (int64_t r = 0; r < n; r++) { /* lse[] holds the row maxima until pass 2 is done */
        double m = part[r * j.n_parts];
        for (int64_t c = 1; c < j.n_parts; c++)
            m = part[r * j.n_parts + c] > m ? part[r * j.n_parts + c] : m;
        lse[r] = m;
    }
    wd_threadpool_run(tp, sum_task, &j, n_tasks);
    for (int64_t r = 0; r < n; r++) {
        double s = 0.0;
        for (int64_t c = 0; c < j.n_parts; c++)
            s += part[r * j.n_parts + c];
        lse[r] = (double)(float)lse[r] + log(s);
    }
}
