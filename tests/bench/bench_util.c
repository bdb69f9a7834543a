/* Baselines for wideep-bench: the same machine, the same run, the same threads. */
#include "tests/bench/bench_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

double wd_bench_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

struct copy_job {
    unsigned char *dst;
    const unsigned char *src;
    size_t bytes;
};

static void copy_part(void *arg, int idx, int n)
{
    struct copy_job *j = arg;
    size_t per = (j->bytes / (size_t)n + 4095) & ~(size_t)4095;
    size_t begin = per * (size_t)idx;
    if (begin >= j->bytes)
        return;
    size_t len = j->bytes - begin < per ? j->bytes - begin : per;
    memcpy(j->dst + begin, j->src + begin, len);
}

double wd_bench_memcpy_gbs(size_t bytes, struct wd_threadpool *tp, int n_threads)
{
    unsigned char *a = malloc(bytes), *b = malloc(bytes);
    if (!a || !b) {
        free(a);
        free(b);
        return 0;
    }
    memset(a, 1, bytes);
    memset(b, 2, bytes); /* fault every page in before timing */
    struct copy_job job = {.dst = b, .src = a, .bytes = bytes};
    double best = 1e30;
    for (int rep = 0; rep < 3; rep++) {
        double t0 = wd_bench_now();
        if (tp && n_threads > 1)
            wd_threadpool_run(tp, copy_part, &job, n_threads);
        else
            copy_part(&job, 0, 1);
        double dt = wd_bench_now() - t0;
        if (dt < best)
            best = dt;
    }
    free(a);
    free(b);
    return (double)bytes / best / 1e9;
}

const char *wd_bench_human(double bytes, char *buf, size_t cap)
{
    if (bytes >= 1e6)
        snprintf(buf, cap, "%.1f MB", bytes / 1e6);
    else
        snprintf(buf, cap, "%.1f KB", bytes / 1e3);
    return buf;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

double wd_bench_median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof(double), cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}
