/* The Qwen3 softmax router and the DeepSeek-V3 grouped sigmoid router against HF, plus ties. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/moe_gate.h"
#include "tests/unit/wd_fixture.h"
#include "tests/unit/wd_test.h"

/* Sorts each token's (idx, w) pairs by idx so that unordered results compare. */
static void sort_by_idx(int32_t *idx, float *w, int64_t n, int k)
{
    for (int64_t t = 0; t < n; t++)
        for (int i = 1; i < k; i++)
            for (int j = i; j > 0 && idx[t * k + j - 1] > idx[t * k + j]; j--) {
                int32_t ti = idx[t * k + j];
                float tw = w[t * k + j];
                idx[t * k + j] = idx[t * k + j - 1];
                w[t * k + j] = w[t * k + j - 1];
                idx[t * k + j - 1] = ti;
                w[t * k + j - 1] = tw;
            }
}

static void check_case(const char *name, int is_grouped)
{
    struct wd_fixture *fx = wd_fixture_load(name);
    if (!fx)
        return;
    int64_t ls[4] = {0};
    const float *logits = wd_fixture_tensor(fx, "logits", WD_DTYPE_F32, ls, NULL);
    const int32_t *want_idx = wd_fixture_i32(fx, "topk_idx", NULL);
    const float *want_w = wd_fixture_f32(fx, "topk_w", NULL);
    int e = (int)wd_fixture_param(fx, "n_experts"), k = (int)wd_fixture_param(fx, "top_k");
    int norm = (int)wd_fixture_param(fx, "norm_topk_prob");
    if (logits && want_idx && want_w && ls[1] == e) {
        int64_t n = ls[0];
        int32_t *idx = malloc(sizeof(int32_t) * (size_t)(n * k));
        int32_t *widx = malloc(sizeof(int32_t) * (size_t)(n * k));
        float *w = malloc(sizeof(float) * (size_t)(n * k));
        float *ww = malloc(sizeof(float) * (size_t)(n * k));
        memcpy(widx, want_idx, sizeof(int32_t) * (size_t)(n * k));
        memcpy(ww, want_w, sizeof(float) * (size_t)(n * k));
        if (is_grouped) {
            const float *bias = wd_fixture_f32(fx, "bias", NULL);
            wd_moe_gate_sigmoid_grouped_ref(logits, n, e, k, (int)wd_fixture_param(fx, "n_group"),
                                            (int)wd_fixture_param(fx, "topk_group"), bias, norm,
                                            (float)wd_fixture_param(fx, "routed_scaling_factor"),
                                            idx, w);
            /* HF returns them unsorted: compare as sets. */
            sort_by_idx(idx, w, n, k);
            sort_by_idx(widx, ww, n, k);
        } else {
            wd_moe_gate_softmax_topk_ref(logits, n, e, k, norm, idx, w);
        }
        int same = memcmp(idx, widx, sizeof(int32_t) * (size_t)(n * k)) == 0;
        WD_EXPECT_MSG(same, "%s: expert choice differs from HF", name);
        wd_expect_close(name, w, ww, n * k, 1e-7, 2e-6);
        free(idx);
        free(widx);
        free(w);
        free(ww);
    } else {
        WD_EXPECT_MSG(0, "%s: fixture unusable", name);
    }
    wd_fixture_free(fx);
}

static void test_golden(void)
{
    check_case("gate_qwen3_norm", 0);
    check_case("gate_qwen3_128", 0);
    check_case("gate_dsv3_small", 1);
    check_case("gate_dsv3_full", 1);
}

static void test_softmax_ties_and_edges(void)
{
    /* Equal logits: the lower index wins each tie; with norm the weights are 1/k. */
    float l[6] = {1, 3, 3, 0, 3, 1};
    int32_t idx[3];
    float w[3];
    wd_moe_gate_softmax_topk_ref(l, 1, 6, 3, 1, idx, w);
    WD_EXPECT(idx[0] == 1 && idx[1] == 2 && idx[2] == 4);
    for (int i = 0; i < 3; i++)
        WD_EXPECT_NEAR(w[i], 1.0 / 3.0, 1e-7);
    /* Without norm: the raw softmax values. */
    wd_moe_gate_softmax_topk_ref(l, 1, 6, 2, 0, idx, w);
    double z = 2 * exp(-2.0) + 3 + exp(-3.0);
    WD_EXPECT(idx[0] == 1 && idx[1] == 2);
    WD_EXPECT_NEAR(w[0], 1.0 / z, 1e-7);
    /* top_k = E returns every expert in order; one expert gives weight 1; n = 0 writes nothing. */
    float l2[3] = {0.5f, -1.0f, 2.0f};
    int32_t idx3[3];
    float w3[3];
    wd_moe_gate_softmax_topk_ref(l2, 1, 3, 3, 1, idx3, w3);
    WD_EXPECT(idx3[0] == 2 && idx3[1] == 0 && idx3[2] == 1);
    WD_EXPECT_NEAR(w3[0] + w3[1] + w3[2], 1.0, 1e-6);
    float one = 4.0f;
    wd_moe_gate_softmax_topk_ref(&one, 1, 1, 1, 0, idx3, w3);
    WD_EXPECT(idx3[0] == 0 && w3[0] == 1.0f);
    wd_moe_gate_softmax_topk_ref(NULL, 0, 8, 2, 1, NULL, NULL);
}

static void test_grouped_by_hand(void)
{
    /* 8 experts in 4 groups of 2; keep 2 groups, pick 2 experts. Bias steers the choice
     * but the weights stay unbiased: expert 7 has the highest sigmoid, but its group is
     * weak once biased, so it is not chosen. */
    float l[8] = {0.0f, 0.0f, 1.0f, -1.0f, 0.5f, 0.5f, -2.0f, 3.0f};
    float bias[8] = {0.1f, 0.1f, 0, 0, 0.2f, -0.1f, -2.0f, -2.0f};
    int32_t idx[2];
    float w[2];
    wd_moe_gate_sigmoid_grouped_ref(l, 1, 8, 2, 4, 2, bias, 0, 1.0f, idx, w);
    /* s: .5 .5 .731 .269 .622 .622 .119 .953; choice: .6 .6 .731 .269 .822 .522 -1.88 -1.05;
     * groups: 1.2, 1.0, 1.344, -2.93 -> keep groups 2 and 0 -> experts 4 (.822), then 0 and 1
     * tie at .6 and the lower index wins. */
    WD_EXPECT(idx[0] == 4 && idx[1] == 0);
    WD_EXPECT_NEAR(w[0], 1.0 / (1.0 + exp(-0.5)), 1e-6);
    WD_EXPECT_NEAR(w[1], 0.5, 1e-6);
    /* Normalized and scaled, no bias: groups 2 (1.244) and 3 (1.072) win; expert 7, then
     * the 4/5 tie goes to 4. */
    wd_moe_gate_sigmoid_grouped_ref(l, 1, 8, 2, 4, 2, NULL, 1, 2.5f, idx, w);
    WD_EXPECT(idx[0] == 7 && idx[1] == 4);
    WD_EXPECT_NEAR(w[0] + w[1], 2.5, 1e-6);
    WD_EXPECT_NEAR(w[0] / w[1], (1.0 + exp(-0.5)) / (1.0 + exp(-3.0)), 1e-6);
    /* One expert per group (group score = that expert) and one group kept. */
    wd_moe_gate_sigmoid_grouped_ref(l, 1, 8, 1, 8, 1, NULL, 1, 1.0f, idx, w);
    WD_EXPECT(idx[0] == 7 && fabsf(w[0] - 1.0f) < 1e-6f);
    /* Experts that no token picks are simply absent; n = 0 writes nothing. */
    wd_moe_gate_sigmoid_grouped_ref(NULL, 0, 8, 2, 4, 2, NULL, 1, 1.0f, NULL, NULL);
}

/* A router far wider than today's models (1100 experts; the scores of every expert sit
 * in one per-token buffer): the same choice as a sort of well-separated logits. */
static void test_wide_router(void)
{
    enum { E = 1100, K = 8 };
    float *l = malloc(sizeof(float) * E);
    int32_t idx[K];
    float w[K];
    for (int e = 0; e < E; e++)
        l[e] = (float)((e * 7919) % E) * 0.01f; /* a permutation of 0.00 .. 10.99 */
    /* The K largest: the experts whose permuted value is E-1, E-2, ... */
    int32_t want[K];
    for (int k = 0; k < K; k++)
        for (int e = 0; e < E; e++)
            if ((e * 7919) % E == E - 1 - k)
                want[k] = e;
    wd_moe_gate_softmax_topk_ref(l, 1, E, K, 1, idx, w);
    double z = 0;
    for (int k = 0; k < K; k++)
        z += exp(-0.01 * k);
    for (int k = 0; k < K; k++) {
        WD_EXPECT_MSG(idx[k] == want[k], "softmax pick %d: %d, want %d", k, idx[k], want[k]);
        WD_EXPECT_NEAR(w[k], exp(-0.01 * k) / z, 1e-5);
    }
    wd_moe_gate_sigmoid_grouped_ref(l, 1, E, K, 50, 50, NULL, 0, 1.0f, idx, w);
    for (int k = 0; k < K; k++) {
        WD_EXPECT_MSG(idx[k] == want[k], "sigmoid pick %d: %d, want %d", k, idx[k], want[k]);
        WD_EXPECT_NEAR(w[k], 1.0 / (1.0 + exp(-(E - 1 - k) * 0.01)), 1e-5);
    }
    free(l);
}

int main(void)
{
    WD_RUN(test_golden);
    WD_RUN(test_softmax_ties_and_edges);
    WD_RUN(test_grouped_by_hand);
    WD_RUN(test_wide_router);
    return wd_test_finish();
}
