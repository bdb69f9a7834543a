/* Top-k logprobs and the finiteness check against a sort-everything oracle. */
#include <math.h>
#include <stdlib.h>

#include "kernels/logprobs.h"
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

int main(void)
{
    WD_RUN(test_topk_vs_sort);
    WD_RUN(test_finite);
    return wd_test_finish();
}
