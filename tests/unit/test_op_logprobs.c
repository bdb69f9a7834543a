/* Top-k logprobs and the finiteness check against a sort-everything oracle. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/logprobs.h"
#include "kernels/logprobs_cpu.h"
#include "kernels/sampling.h"
#include "tests/unit/wd_test.h"

static const float *g_x;

static int by_rank(const void *a, const void *b)
{
    int32_t i = *(const int32_t *)a, j = *(const int32_t *)b;
    if (g_x[i] != g_x[j])
        return g_x[i] > g_x[j] ? -1 : 1;
    return i < j ? -1 : 1;
}

static void test_topk_vs_sort(void)
{
    int vocab = 3000;
    float *x = malloc(sizeof(float) * (size_t)vocab);
    int32_t *order = malloc(sizeof(int32_t) * (size_t)vocab);
    uint64_t seed = 7;
    for (int trial = 0; trial < 20; trial++) {
        for (int i = 0; i < vocab; i++) {
            /* Coarse values force ties, which must rank the lower id first. */
            x[i] = (float)(wd_splitmix64(&seed) % 50) * 0.25f - 6.0f;
            order[i] = i;
        }
        g_x = x;
        qsort(order, (size_t)vocab, sizeof(int32_t), by_rank);
        double m = -INFINITY, s = 0;
        for (int i = 0; i < vocab; i++)
            m = x[i] > m ? x[i] : m;
        for (int i = 0; i < vocab; i++)
            s += exp(x[i] - m);
        int k = 1 + trial;
        int32_t ids[21];
        float lps[21];
        wd_logprobs_top_ref(x, vocab, k, ids, lps);
        for (int j = 0; j < k; j++) {
            WD_EXPECT_EQ_INT(ids[j], order[j]);
            WD_EXPECT_NEAR(lps[j], x[order[j]] - m - log(s), 1e-5);
        }
    }
    /* k larger than the vocabulary: all of it, ranked. */
    float small[3] = {0.5f, 2.0f, -1.0f};
    int32_t ids[5];
    float lps[5];
    wd_logprobs_top_ref(small, 3, 5, ids, lps);
    WD_EXPECT(ids[0] == 1 && ids[1] == 0 && ids[2] == 2);
    free(x);
    free(order);
}

static void test_finite(void)
{
    float x[4] = {1, -2, 3e38f, -3e38f};
    WD_EXPECT(wd_logits_finite_ref(x, 4));
    x[2] = NAN;
    WD_EXPECT(!wd_logits_finite_ref(x, 4));
    x[2] = INFINITY;
    WD_EXPECT(!wd_logits_finite_ref(x, 4));
    x[2] = -INFINITY;
    WD_EXPECT(!wd_logits_finite_ref(x, 4));
}

/* The threaded log-sum-exp: close to the reference's single sum, and the same bits on any
 * number of threads and for a row alone or among others. Vocabularies off the chunk size. */
static void test_logsumexp_cpu(void)
{
    int vocabs[] = {1, 7, 8191, 8192, 8193, 40000, 129280};
    struct wd_threadpool *pools[4] = {NULL};
    for (int i = 1; i <= 3; i++)
        WD_EXPECT_EQ_INT(wd_threadpool_create(i, &pools[i]), WD_OK);
    uint64_t seed = 11;
    for (size_t v = 0; v < sizeof(vocabs) / sizeof(vocabs[0]); v++) {
        int vocab = vocabs[v], n = 3;
        float *x = malloc(sizeof(float) * (size_t)(n * vocab));
        double *part = malloc(sizeof(double) * (size_t)(n * wd_logsumexp_cpu_parts(vocab)));
        double lse[3], again[3], one;
        for (int i = 0; i < n * vocab; i++)
            x[i] = (float)(wd_splitmix64(&seed) % 100000) * 4e-4f - 20.0f;
        wd_logsumexp_cpu(x, n, vocab, part, lse, NULL);
        for (int r = 0; r < n; r++) {
            double ref = wd_logsumexp_ref(x + (size_t)r * vocab, vocab);
            WD_EXPECT_MSG(fabs(lse[r] - ref) <= 1e-12 * fabs(ref) + 1e-12,
                          "vocab %d row %d: lse %.17g, ref %.17g", vocab, r, lse[r], ref);
        }
        for (int p = 1; p <= 3; p++) {
            wd_logsumexp_cpu(x, n, vocab, part, again, pools[p]);
            WD_EXPECT_MSG(memcmp(lse, again, sizeof(lse)) == 0, "vocab %d: %d threads differ",
                          vocab, p);
            wd_logsumexp_cpu(x + (size_t)vocab, 1, vocab, part, &one, pools[p]);
            WD_EXPECT_MSG(one == lse[1], "vocab %d: a row alone differs", vocab);
        }
        free(x);
        free(part);
    }
    for (int i = 1; i <= 3; i++)
        wd_threadpool_destroy(pools[i]);
}

int main(void)
{
    WD_RUN(test_logsumexp_cpu);
    WD_RUN(test_topk_vs_sort);
    WD_RUN(test_finite);
    return wd_test_finish();
}
