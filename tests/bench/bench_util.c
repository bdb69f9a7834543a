/* Baselines for wideep-bench: the same machine, the same run, the same threads. */
#include "tests/bench/bench_util.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define WD_X86 1
#endif

double wd_bench_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Part idx of n of a buffer of `bytes`, in whole pages: its length (0: none), start in *begin_p. */
static size_t part_of(size_t bytes, int idx, int n, size_t *begin_p)
{
    size_t per = (bytes / (size_t)n + 4095) & ~(size_t)4095;
    size_t begin = per * (size_t)idx;
    *begin_p = begin;
    if (begin >= bytes)
        return 0;
    return bytes - begin < per ? bytes - begin : per;
}

/* Best of three runs of fn over the pool's threads (one part each), in seconds. */
static double best_of_3(struct wd_threadpool *tp, int n_threads, void (*fn)(void *, int, int),
                        void *job)
{
    double best = 1e30;
    for (int rep = 0; rep < 3; rep++) {
        double t0 = wd_bench_now();
        if (tp && n_threads > 1)
            wd_threadpool_run(tp, fn, job, n_threads);
        else
            fn(job, 0, 1);
        double dt = wd_bench_now() - t0;
        if (dt < best)
            best = dt;
    }
    return best;
}

struct copy_job {
    unsigned char *dst;
    const unsigned char *src;
    size_t bytes;
};

static void copy_part(void *arg, int idx, int n)
{
    struct copy_job *j = arg;
    size_t begin, len = part_of(j->bytes, idx, n, &begin);
    if (len)
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
    double best = best_of_3(tp, n_threads, copy_part, &job);
    free(a);
    free(b);
    return (double)bytes / best / 1e9;
}

struct read_job {
    const unsigned char *src;
    size_t bytes;
    int is_avx2;
    uint64_t sink[64]; /* one slot per task, so the reduction cannot be optimized away */
};

/* XOR of 64-bit words with eight independent accumulators: as many loads in flight as the
 * core allows and no dependency chain longer than one cycle per load. */
static uint64_t read_portable(const uint64_t *p, size_t n)
{
    uint64_t a[8] = {0};
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++)
            a[k] ^= p[i + k];
    for (; i < n; i++)
        a[0] ^= p[i];
    return a[0] ^ a[1] ^ a[2] ^ a[3] ^ a[4] ^ a[5] ^ a[6] ^ a[7];
}

#ifdef WD_X86
/* The same with 256-bit loads, 128 bytes per iteration (two cache lines). */
__attribute__((target("avx2"))) static uint64_t read_avx2(const uint64_t *p, size_t n)
{
    __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        a0 = _mm256_xor_si256(a0, _mm256_loadu_si256((const __m256i *)(p + i)));
        a1 = _mm256_xor_si256(a1, _mm256_loadu_si256((const __m256i *)(p + i + 4)));
        a2 = _mm256_xor_si256(a2, _mm256_loadu_si256((const __m256i *)(p + i + 8)));
        a3 = _mm256_xor_si256(a3, _mm256_loadu_si256((const __m256i *)(p + i + 12)));
    }
    __m256i a = _mm256_xor_si256(_mm256_xor_si256(a0, a1), _mm256_xor_si256(a2, a3));
    uint64_t out[4];
    _mm256_storeu_si256((__m256i *)out, a);
    return out[0] ^ out[1] ^ out[2] ^ out[3] ^ read_portable(p + i, n - i);
}
#endif

static void read_part(void *arg, int idx, int n)
{
    struct read_job *j = arg;
    size_t begin, len = part_of(j->bytes, idx, n, &begin);
    if (!len)
        return;
    const uint64_t *p = (const uint64_t *)(j->src + begin);
#ifdef WD_X86
    if (j->is_avx2) {
        j->sink[idx % 64] ^= read_avx2(p, len / 8);
        return;
    }
#endif
    j->sink[idx % 64] ^= read_portable(p, len / 8);
}

double wd_bench_read_gbs(size_t bytes, struct wd_threadpool *tp, int n_threads)
{
    /* 2 MiB-aligned and advised MADV_HUGEPAGE, as the model's weights are (model_weights.c):
     * the baseline is the best read this machine gives, not a 4 KiB-page one. */
    size_t len = (bytes + (2u << 20) - 1) & ~(size_t)((2u << 20) - 1);
    unsigned char *a = aligned_alloc(2u << 20, len);
    if (!a)
        return 0;
    (void)madvise(a, len, MADV_HUGEPAGE);
    memset(a, 1, bytes); /* fault every page in before timing */
    struct read_job job = {.src = a, .bytes = bytes & ~(size_t)7};
#ifdef WD_X86
    job.is_avx2 = __builtin_cpu_supports("avx2");
#endif
    double best = best_of_3(tp, n_threads, read_part, &job);
    free(a);
    return (double)job.bytes / best / 1e9;
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
