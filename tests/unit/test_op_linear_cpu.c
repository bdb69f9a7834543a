/*
 * wd_linear_cpu (SIMD and portable paths) against wd_linear_ref on random shapes and
 * every weight dtype, with 1 to 4 pool threads; the thread pool on its own; and, with
 * WD_BENCH=1 in the environment, the batch-1 BF16 matvec bandwidth next to memcpy's.
 */
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels/linear.h"
#include "kernels/linear_cpu.h"
#include "kernels/threadpool.h"
#include "tests/unit/wd_test.h"

static uint64_t g_rng = 0x1234567887654321ull;

static uint32_t rnd(void)
{
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return (uint32_t)(g_rng >> 11);
}

static float rndf(void)
{
    return (float)(rnd() % 2000001) / 1000000.0f - 1.0f;
}

/* A random weight of the given dtype; its memory is returned in *mem_p / *scale_p. */
static struct wd_weight make_weight(enum wd_dtype dt, int64_t rows, int64_t cols, int br, int bc,
                                    void **mem_p, float **scale_p)
{
    struct wd_weight w = {.dtype = dt, .rows = rows, .cols = cols};
    size_t n = (size_t)(rows * cols);
    void *mem = malloc(n * wd_dtype_size(dt) + 1);
    for (size_t i = 0; i < n; i++) {
        float v = rndf() * 2.0f;
        if (dt == WD_DTYPE_F32)
            ((float *)mem)[i] = v;
        else if (dt == WD_DTYPE_BF16)
            ((uint16_t *)mem)[i] = wd_f32_to_bf16(v);
        else if (dt == WD_DTYPE_F16)
            ((uint16_t *)mem)[i] = wd_f32_to_f16(v);
        else
            ((uint8_t *)mem)[i] = wd_f32_to_e4m3(v * 100.0f);
    }
    *scale_p = NULL;
    if (dt == WD_DTYPE_F8_E4M3 && br > 0) {
        int64_t nb = ((rows + br - 1) / br) * ((cols + bc - 1) / bc);
        float *s = malloc(sizeof(float) * (size_t)nb);
        for (int64_t i = 0; i < nb; i++)
            s[i] = 0.001f + (float)(rnd() % 1000) * 1e-5f;
        w.scale_inv = s;
        w.block_rows = br;
        w.block_cols = bc;
        *scale_p = s;
    }
    w.data = mem;
    *mem_p = mem;
    return w;
}

/* |got - ref| <= 1e-5 |ref| + 1e-6 sum_c |x_c W_rc|: the reordering of an fp32 sum. */
static int compare(const struct wd_weight *w, const float *x, int64_t n, const float *got,
                   const float *ref, const char *what)
{
    float *row = malloc(sizeof(float) * (size_t)(w->cols + 1));
    int ok = 1;
    for (int64_t r = 0; r < w->rows && ok; r++) {
        wd_weight_row_f32(w, r, row);
        for (int64_t t = 0; t < n; t++) {
            double mag = 0.0;
            for (int64_t c = 0; c < w->cols; c++)
                mag += fabs((double)x[t * w->cols + c] * row[c]);
            double g = got[t * w->rows + r], e = ref[t * w->rows + r];
            if (!(fabs(g - e) <= 1e-5 * fabs(e) + 1e-6 * mag)) {
                wd_test_fail(__FILE__, __LINE__, "%s: y[%lld][%lld] = %.9g, ref %.9g", what,
                             (long long)t, (long long)r, g, e);
                ok = 0;
                break;
            }
        }
    }
    free(row);
    return ok;
}

static void check_shape(enum wd_dtype dt, int64_t rows, int64_t cols, int64_t n, int br, int bc,
                        struct wd_threadpool **pools)
{
    void *mem;
    float *scale;
    struct wd_weight w = make_weight(dt, rows, cols, br, bc, &mem, &scale);
    float *x = malloc(sizeof(float) * (size_t)(n * cols + 1));
    float *ref = malloc(sizeof(float) * (size_t)(n * rows + 1));
    float *got = malloc(sizeof(float) * (size_t)(n * rows + 1));
    for (int64_t i = 0; i < n * cols; i++)
        x[i] = rndf();
    wd_linear_ref(&w, x, n, ref);
    char what[128];
    for (int p = 0; p <= 4; p++) {
        for (int portable = 0; portable < 2; portable++) {
            for (int64_t i = 0; i < n * rows + 1; i++)
                got[i] = NAN;
            if (portable)
                wd_linear_cpu_portable(&w, x, n, got, pools[p]);
            else
                wd_linear_cpu(&w, x, n, got, pools[p]);
            snprintf(what, sizeof(what), "%s %lldx%lld n=%lld blk %dx%d threads=%d%s",
                     wd_dtype_name(dt), (long long)rows, (long long)cols, (long long)n, br, bc,
                     wd_threadpool_size(pools[p]), portable ? " portable" : "");
            compare(&w, x, n, got, ref, what);
            WD_EXPECT_MSG(isnan(got[n * rows]), "%s: wrote past y", what);
        }
    }
    free(mem);
    free(scale);
    free(x);
    free(ref);
    free(got);
}

static void test_random_shapes(void)
{
    struct wd_threadpool *pools[5] = {NULL};
    for (int i = 1; i <= 4; i++)
        WD_EXPECT(wd_threadpool_create(i, &pools[i]) == WD_OK);
    enum wd_dtype dts[4] = {WD_DTYPE_F32, WD_DTYPE_BF16, WD_DTYPE_F16, WD_DTYPE_F8_E4M3};
    /* Hand-picked edges first: one row, one column, sizes off every tile and block. */
    int64_t fixed[][3] = {{1, 1, 1},   {1, 7, 3},     {5, 1, 2},     {3, 17, 1},    {4, 512, 1},
                          {9, 513, 2}, {33, 1000, 5}, {130, 300, 1}, {257, 129, 4}, {64, 2048, 1}};
    for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++)
        for (int d = 0; d < 4; d++)
            check_shape(dts[d], fixed[i][0], fixed[i][1], fixed[i][2], 128, 128, pools);
    for (int it = 0; it < 24; it++) {
        enum wd_dtype dt = dts[rnd() % 4];
        int64_t rows = 1 + rnd() % 300, cols = 1 + rnd() % 1200, n = 1 + rnd() % 6;
        int br = 1 + (int)(rnd() % 64), bc = 1 + (int)(rnd() % 200);
        check_shape(dt, rows, cols, n, br, bc, pools);
    }
    /* fp8 without scale_inv and n = 0 (nothing written). */
    check_shape(WD_DTYPE_F8_E4M3, 20, 70, 2, 0, 0, pools);
    void *mem;
    float *scale, sentinel = 3.0f;
    struct wd_weight w = make_weight(WD_DTYPE_BF16, 8, 8, 0, 0, &mem, &scale);
    wd_linear_cpu(&w, NULL, 0, &sentinel, pools[2]);
    WD_EXPECT(sentinel == 3.0f);
    free(mem);
    for (int i = 1; i <= 4; i++)
        wd_threadpool_destroy(pools[i]);
}

/* A token's outputs are bit-identical whether it runs alone or inside any batch, on any
 * number of threads: the matrix-vector and GEMM kernels share one reduction order. Batch
 * sizes cross the micro-kernel's 3 tokens, the direct kernels' limit and the GEMM's token
 * blocks; shapes are off every tile size, K spans several column blocks. */
static void test_batch_invariance(void)
{
    struct wd_threadpool *tp = NULL;
    WD_EXPECT_EQ_INT(wd_threadpool_create(3, &tp), WD_OK);
    enum wd_dtype dts[4] = {WD_DTYPE_F32, WD_DTYPE_BF16, WD_DTYPE_F16, WD_DTYPE_F8_E4M3};
    /* n <= 12 with BF16/F16 weights runs the direct (unstaged) kernels: 2 rows x token
     * groups of 4, 3, 2, 1, a lone last row; 13 is the first staged batch. */
    int64_t shapes[][3] = {{37, 1029, 200}, {64, 96, 7},    {13, 2050, 4},
                           {300, 515, 100}, {29, 1037, 12}, {15, 531, 13}};
    for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++)
        for (int d = 0; d < 4; d++)
            for (int portable = 0; portable < 2; portable++) {
                int64_t rows = shapes[i][0], cols = shapes[i][1], n = shapes[i][2];
                void *mem;
                float *scale;
                struct wd_weight w = make_weight(dts[d], rows, cols, 128, 128, &mem, &scale);
                float *x = malloc(sizeof(float) * (size_t)(n * cols));
                float *all = malloc(sizeof(float) * (size_t)(n * rows));
                float *one = malloc(sizeof(float) * (size_t)rows);
                for (int64_t j = 0; j < n * cols; j++)
                    x[j] = rndf();
                if (portable)
                    wd_linear_cpu_portable(&w, x, n, all, tp);
                else
                    wd_linear_cpu(&w, x, n, all, tp);
                int same = 1;
                for (int64_t t = 0; t < n; t++) {
                    if (portable)
                        wd_linear_cpu_portable(&w, x + t * cols, 1, one, NULL);
                    else
                        wd_linear_cpu(&w, x + t * cols, 1, one, NULL);
                    same &= memcmp(one, all + t * rows, sizeof(float) * (size_t)rows) == 0;
                }
                /* A batch that starts at an odd token: other triples, other blocks. */
                if (n > 2) {
                    if (portable)
                        wd_linear_cpu_portable(&w, x + cols, n - 2, all, NULL);
                    else
                        wd_linear_cpu(&w, x + cols, n - 2, all, NULL);
                    for (int64_t t = 1; t + 1 < n; t++) {
                        if (portable)
                            wd_linear_cpu_portable(&w, x + t * cols, 1, one, tp);
                        else
                            wd_linear_cpu(&w, x + t * cols, 1, one, tp);
                        same &=
                            memcmp(one, all + (t - 1) * rows, sizeof(float) * (size_t)rows) == 0;
                    }
                }
                WD_EXPECT_MSG(same, "%s %lldx%lld n=%lld%s: a token's outputs depend on its batch",
                              wd_dtype_name(dts[d]), (long long)rows, (long long)cols, (long long)n,
                              portable ? " portable" : "");
                free(mem);
                free(scale);
                free(x);
                free(all);
                free(one);
            }
    wd_threadpool_destroy(tp);
}

/* wd_threadpool_guided_split: the tasks tile [0, total) in order, on gran boundaries, none
 * below min_units but the last, none longer than the one before, within the task cap. */
static void test_guided_split(void)
{
    int64_t totals[] = {1, 7, 8, 100, 4096, 151936, 1 << 24};
    int64_t bounds[WD_GUIDED_MAX_TASKS + 1];
    for (size_t i = 0; i < sizeof(totals) / sizeof(totals[0]); i++)
        for (int threads = 1; threads <= 64; threads *= 4)
            for (int64_t gran = 1; gran <= 8; gran *= 2) {
                int64_t total = totals[i], min_units = 3 * gran + 1;
                int n = wd_threadpool_guided_split(total, threads, gran, min_units, bounds);
                /* The cap is never what ends the split (its last task would be long). */
                int ok = n >= 1 && n < WD_GUIDED_MAX_TASKS - 1 && bounds[0] == 0 &&
                         bounds[n] == total && (threads > 1 || n == 1);
                for (int k = 0; ok && k < n; k++) {
                    int64_t size = bounds[k + 1] - bounds[k];
                    ok &= size > 0 && (k == n - 1 || (size % gran == 0 && size >= min_units));
                    ok &= k == 0 || k == n - 1 || size <= bounds[k] - bounds[k - 1];
                }
                WD_EXPECT_MSG(ok, "total %lld, %d threads, gran %lld: %d tasks not a guided split",
                              (long long)total, threads, (long long)gran, n);
            }
    WD_EXPECT(wd_threadpool_guided_split(0, 2, 4, 4, bounds) == 0);
}

/* wd_linear_cpu_many: every item the same bits as its own wd_linear_cpu call, on 1 to 3
 * threads, with more items than one pass takes, an empty item and mixed dtypes and sizes. */
static void test_many(void)
{
    enum { N_ITEMS = 11 };
    enum wd_dtype dts[4] = {WD_DTYPE_F32, WD_DTYPE_BF16, WD_DTYPE_F16, WD_DTYPE_F8_E4M3};
    struct wd_weight w[N_ITEMS];
    struct wd_linear_item items[N_ITEMS];
    void *mem[N_ITEMS];
    float *scale[N_ITEMS], *x[N_ITEMS], *want[N_ITEMS], *got[N_ITEMS];
    for (int i = 0; i < N_ITEMS; i++) {
        int64_t rows = 1 + rnd() % 700, cols = 1 + rnd() % 300, n = i == 4 ? 0 : 1 + i % 5;
        w[i] = make_weight(dts[i % 4], rows, cols, 16, 32, &mem[i], &scale[i]);
        x[i] = malloc(sizeof(float) * (size_t)(n * cols + 1));
        want[i] = malloc(sizeof(float) * (size_t)(n * rows + 1));
        got[i] = malloc(sizeof(float) * (size_t)(n * rows + 1));
        for (int64_t k = 0; k < n * cols; k++)
            x[i][k] = rndf();
        wd_linear_cpu(&w[i], x[i], n, want[i], NULL);
        items[i] = (struct wd_linear_item){.w = &w[i], .x = x[i], .n = n, .y = got[i]};
    }
    for (int threads = 1; threads <= 3; threads++) {
        struct wd_threadpool *tp = NULL;
        WD_EXPECT(wd_threadpool_create(threads, &tp) == WD_OK);
        for (int i = 0; i < N_ITEMS; i++)
            for (int64_t k = 0; k < items[i].n * w[i].rows; k++)
                got[i][k] = NAN;
        wd_linear_cpu_many(items, N_ITEMS, tp);
        for (int i = 0; i < N_ITEMS; i++)
            WD_EXPECT_MSG(
                memcmp(got[i], want[i], sizeof(float) * (size_t)(items[i].n * w[i].rows)) == 0,
                "item %d (%s, %lld x %lld, n=%lld) on %d threads differs", i,
                wd_dtype_name(w[i].dtype), (long long)w[i].rows, (long long)w[i].cols,
                (long long)items[i].n, threads);
        wd_threadpool_destroy(tp);
    }
    for (int i = 0; i < N_ITEMS; i++) {
        free(mem[i]);
        free(scale[i]);
        free(x[i]);
        free(want[i]);
        free(got[i]);
    }
}

/* Strided rows and a caller-made row split give the same bits as the plain op. */
static void test_strided_rows(void)
{
    enum wd_dtype dts[4] = {WD_DTYPE_F32, WD_DTYPE_BF16, WD_DTYPE_F16, WD_DTYPE_F8_E4M3};
    for (int d = 0; d < 4; d++)
        for (int64_t n = 1; n <= 7; n += 3) {
            int64_t rows = 45, cols = 77, ldx = 90, ldy = 50;
            void *mem;
            float *scale;
            struct wd_weight w = make_weight(dts[d], rows, cols, 16, 32, &mem, &scale);
            float *x = malloc(sizeof(float) * (size_t)(n * ldx));
            float *xc = malloc(sizeof(float) * (size_t)(n * cols));
            float *want = malloc(sizeof(float) * (size_t)(n * rows));
            float *got = malloc(sizeof(float) * (size_t)(n * ldy));
            for (int64_t i = 0; i < n * ldx; i++)
                x[i] = rndf();
            for (int64_t t = 0; t < n; t++)
                memcpy(xc + t * cols, x + t * ldx, sizeof(float) * (size_t)cols);
            wd_linear_cpu(&w, xc, n, want, NULL);
            for (int split = 0; split < 2; split++) {
                for (int64_t i = 0; i < n * ldy; i++)
                    got[i] = NAN;
                if (split) { /* rows [0, 13) [13, 40) [40, 45): off every tile size */
                    wd_linear_cpu_rows(&w, x, ldx, n, got, ldy, 0, 13);
                    wd_linear_cpu_rows(&w, x, ldx, n, got, ldy, 13, 40);
                    wd_linear_cpu_rows(&w, x, ldx, n, got, ldy, 40, 45);
                } else {
                    wd_linear_cpu_strided(&w, x, ldx, n, got, ldy, NULL);
                }
                int same = 1;
                for (int64_t t = 0; t < n; t++) {
                    same &=
                        memcmp(got + t * ldy, want + t * rows, sizeof(float) * (size_t)rows) == 0;
                    for (int64_t r = rows; r < ldy; r++)
                        same &= isnan(got[t * ldy + r]);
                }
                WD_EXPECT_MSG(same, "%s n=%lld %s differs from wd_linear_cpu",
                              wd_dtype_name(dts[d]), (long long)n, split ? "row split" : "strided");
            }
            free(mem);
            free(scale);
            free(x);
            free(xc);
            free(want);
            free(got);
        }
}

struct count_job {
    _Atomic int *hits;
    _Atomic int calls;
};

static void count_task(void *arg, int idx, int n)
{
    struct count_job *j = arg;
    atomic_fetch_add(&j->hits[idx], 1);
    atomic_fetch_add(&j->calls, 1);
    (void)n;
}

/* Tensor-parallel views: a row slice then a column slice at offsets off every block size,
 * against a dense f32 copy of the same sub-matrix dequantized from the full weight. */
static void test_slices(void)
{
    struct wd_threadpool *tp = NULL;
    WD_EXPECT_EQ_INT(wd_threadpool_create(2, &tp), WD_OK);
    enum wd_dtype dts[] = {WD_DTYPE_F32, WD_DTYPE_BF16, WD_DTYPE_F16, WD_DTYPE_F8_E4M3};
    for (int d = 0; d < 4; d++) {
        void *mem;
        float *scale;
        struct wd_weight w = make_weight(dts[d], 70, 90, 16, 32, &mem, &scale);
        int64_t r0 = 13, nr = 37, c0 = 21, nc = 45, n = 3;
        struct wd_weight rs = wd_weight_slice_rows(&w, r0, nr);
        struct wd_weight v = wd_weight_slice_cols(&rs, c0, nc);
        float *dense = malloc(sizeof(float) * (size_t)(nr * nc));
        for (int64_t r = 0; r < nr; r++)
            for (int64_t c = 0; c < nc; c++)
                dense[r * nc + c] = wd_weight_get(&w, r0 + r, c0 + c);
        struct wd_weight dw = {.dtype = WD_DTYPE_F32, .data = dense, .rows = nr, .cols = nc};
        float x[3 * 45], ref[3 * 37], got[3 * 37], got_ref[3 * 37];
        for (int i = 0; i < 3 * 45; i++)
            x[i] = rndf();
        wd_linear_ref(&dw, x, n, ref);
        wd_linear_ref(&v, x, n, got_ref);
        wd_linear_cpu(&v, x, n, got, tp);
        char what[64];
        snprintf(what, sizeof(what), "%s slice", wd_dtype_name(dts[d]));
        compare(&dw, x, n, got, ref, what);
        compare(&dw, x, n, got_ref, ref, what);
        free(dense);
        free(mem);
        free(scale);
    }
    wd_threadpool_destroy(tp);
}

static void test_threadpool(void)
{
    struct wd_threadpool *tp = NULL;
    WD_EXPECT(wd_threadpool_create(0, &tp) == WD_ERR_INVALID);
    WD_EXPECT(wd_threadpool_create(3, &tp) == WD_OK);
    WD_EXPECT_EQ_INT(wd_threadpool_size(tp), 3);
    WD_EXPECT_EQ_INT(wd_threadpool_size(NULL), 1);
    _Atomic int hits[97];
    int ok = 1;
    /* Many back-to-back runs of varying size: every index exactly once per run. */
    for (int run = 0; run < 3000; run++) {
        int n = 1 + run % 97;
        for (int i = 0; i < n; i++)
            atomic_store(&hits[i], 0);
        struct count_job j = {.hits = hits};
        atomic_store(&j.calls, 0);
        wd_threadpool_run(tp, count_task, &j, n);
        ok &= atomic_load(&j.calls) == n;
        for (int i = 0; i < n; i++)
            ok &= atomic_load(&hits[i]) == 1;
    }
    WD_EXPECT(ok);
    struct count_job j = {.hits = hits};
    atomic_store(&j.calls, 0);
    wd_threadpool_run(tp, count_task, &j, 0);
    wd_threadpool_run(NULL, count_task, &j, 5);
    WD_EXPECT_EQ_INT(atomic_load(&j.calls), 5);
    wd_threadpool_destroy(tp);
    wd_threadpool_destroy(NULL);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void bench(void)
{
    if (!getenv("WD_BENCH")) {
        printf("  (set WD_BENCH=1 for the bandwidth figures)\n");
        return;
    }
    enum { R = 4096, C = 4096, REPS = 40 };
    void *mem;
    float *scale;
    struct wd_weight w = make_weight(WD_DTYPE_BF16, R, C, 0, 0, &mem, &scale);
    float *x = malloc(sizeof(float) * C), *y = malloc(sizeof(float) * R);
    for (int i = 0; i < C; i++)
        x[i] = rndf();
    double bytes = (double)R * C * 2;
    printf("  avx2 kernels: %s\n", wd_linear_cpu_has_avx2() ? "yes" : "no");
    void *dst = malloc((size_t)bytes);
    memcpy(dst, mem, (size_t)bytes);
    double best = 1e9;
    for (int i = 0; i < REPS; i++) {
        double t0 = now_s();
        memcpy(dst, mem, (size_t)bytes);
        double dt = now_s() - t0;
        best = dt < best ? dt : best;
    }
    /* memcpy reads and writes: count both for the bus figure, report the read rate too. */
    printf("  memcpy 32 MiB: %.1f GB/s read (%.1f GB/s read+write)\n", bytes / best / 1e9,
           2 * bytes / best / 1e9);
    for (int threads = 1; threads <= 2; threads++) {
        struct wd_threadpool *tp = NULL;
        wd_threadpool_create(threads, &tp);
        for (int portable = 0; portable < 2; portable++) {
            best = 1e9;
            for (int i = 0; i < REPS; i++) {
                double t0 = now_s();
                if (portable)
                    wd_linear_cpu_portable(&w, x, 1, y, tp);
                else
                    wd_linear_cpu(&w, x, 1, y, tp);
                double dt = now_s() - t0;
                best = dt < best ? dt : best;
            }
            printf("  bf16 4096x4096 matvec, %d thread%s%s: %.2f ms, %.1f GB/s\n", threads,
                   threads > 1 ? "s" : "", portable ? " (portable)" : "", best * 1e3,
                   bytes / best / 1e9);
        }
        for (int n = 8; n <= 64; n *= 8) {
            float *xs = malloc(sizeof(float) * (size_t)C * n);
            float *ys = malloc(sizeof(float) * (size_t)R * n);
            for (int i = 0; i < C * n; i++)
                xs[i] = rndf();
            best = 1e9;
            for (int i = 0; i < 5; i++) {
                double t0 = now_s();
                wd_linear_cpu(&w, xs, n, ys, tp);
                double dt = now_s() - t0;
                best = dt < best ? dt : best;
            }
            printf("  bf16 4096x4096 x %d tokens, %d thread%s: %.2f ms, %.1f GFLOP/s\n", n, threads,
                   threads > 1 ? "s" : "", best * 1e3, 2.0 * R * C * n / best / 1e9);
            free(xs);
            free(ys);
        }
        wd_threadpool_destroy(tp);
    }
    best = 1e9;
    float *yr = malloc(sizeof(float) * R);
    double t0 = now_s();
    wd_linear_ref(&w, x, 1, yr);
    printf("  bf16 4096x4096 matvec, wd_linear_ref: %.2f ms\n", (now_s() - t0) * 1e3);
    free(yr);
    free(dst);
    free(mem);
    free(x);
    free(y);
}

int main(void)
{
    WD_RUN(test_threadpool);
    WD_RUN(test_slices);
    WD_RUN(test_random_shapes);
    WD_RUN(test_batch_invariance);
    WD_RUN(test_strided_rows);
    WD_RUN(test_guided_split);
    WD_RUN(test_many);
    WD_RUN(bench);
    return wd_test_finish();
}
