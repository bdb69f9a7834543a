/*
 * Sampler: greedy ties, logprobs, each filter on hand-made logits, determinism per seed,
 * and the empirical distribution over many seeded draws against the filtered softmax
 * (fixed seed, so the check is deterministic and cannot flake).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/sampling.h"
#include "tests/unit/wd_test.h"

#define V 8

static float g_f[2 * V];
static int32_t g_i[V];

static double log_softmax(const float *l, int n, int i)
{
    double m = l[0], s = 0;
    for (int j = 1; j < n; j++)
        m = l[j] > m ? l[j] : m;
    for (int j = 0; j < n; j++)
        s += exp(l[j] - m);
    return l[i] - m - log(s);
}

static void test_greedy(void)
{
    float l[V] = {0.5f, 2.0f, -1.0f, 2.0f, 1.0f, 0.0f, 2.0f, -3.0f};
    struct wd_sampling_params p = {.temperature = 0.0f, .top_k = 0, .top_p = 1.0f, .min_p = 0.0f};
    uint64_t rng[4], before[4];
    wd_rng_seed(rng, 7);
    memcpy(before, rng, sizeof(rng));
    float lp = 0.0f;
    int32_t tok = wd_sample_ref(l, V, &p, rng, g_f, g_i, &lp);
    WD_EXPECT_EQ_INT(tok, 1); /* tie between 1, 3 and 6: lowest id */
    WD_EXPECT_NEAR(lp, log_softmax(l, V, 1), 1e-6);
    WD_EXPECT(memcmp(rng, before, sizeof(rng)) == 0); /* greedy draws nothing */
    float one = -5.0f;
    WD_EXPECT_EQ_INT(wd_sample_ref(&one, 1, &p, rng, g_f, g_i, &lp), 0);
    WD_EXPECT_NEAR(lp, 0.0, 1e-7);
    /* Temperature sampling of a one-token vocabulary. */
    p.temperature = 0.7f;
    WD_EXPECT_EQ_INT(wd_sample_ref(&one, 1, &p, rng, g_f, g_i, NULL), 0);
}

/* Temperatures below WD_SAMPLING_GREEDY_EPS are greedy: 1e-40 made logits / T overflow to
 * +-inf (every draw NaN, the last token id), 1e-7 drew among tied maxima. */
static void test_tiny_temperature_is_greedy(void)
{
    float l[V] = {0.5f, 2.0f, -1.0f, 2.0f, 1.0f, 0.0f, 2.0f, -3.0f};
    const float tiny[] = {1e-40f, 1e-30f, 1e-7f, 0.99e-6f, -0.0f, NAN};
    uint64_t rng[4], before[4];
    wd_rng_seed(rng, 11);
    memcpy(before, rng, sizeof(rng));
    for (size_t k = 0; k < sizeof(tiny) / sizeof(tiny[0]); k++) {
        struct wd_sampling_params p = {.temperature = tiny[k], .top_p = 1.0f};
        for (int i = 0; i < 20; i++)
            WD_EXPECT_MSG(wd_sample_ref(l, V, &p, rng, g_f, g_i, NULL) == 1, "T=%g", tiny[k]);
        p.top_k = 3; /* the filtered path too */
        p.top_p = 0.5f;
        WD_EXPECT_MSG(wd_sample_ref(l, V, &p, rng, g_f, g_i, NULL) == 1, "T=%g top_k", tiny[k]);
    }
    WD_EXPECT(memcmp(rng, before, sizeof(rng)) == 0); /* greedy draws nothing */
    /* At the threshold it samples: one draw, among the tied maxima only. */
    struct wd_sampling_params p = {.temperature = WD_SAMPLING_GREEDY_EPS, .top_p = 1.0f};
    int32_t tok = wd_sample_ref(l, V, &p, rng, g_f, g_i, NULL);
    WD_EXPECT(tok == 1 || tok == 3 || tok == 6);
    WD_EXPECT(memcmp(rng, before, sizeof(rng)) != 0);
}

static void test_filters_keep_one(void)
{
    float l[V] = {1.0f, 0.0f, 4.0f, 2.0f, -1.0f, 3.9f, 0.5f, 0.0f};
    uint64_t rng[4];
    wd_rng_seed(rng, 123);
    /* top_k 1 always returns the argmax; logprob is still of the raw logits. */
    struct wd_sampling_params p = {.temperature = 1.5f, .top_k = 1, .top_p = 1.0f, .min_p = 0.0f};
    for (int i = 0; i < 50; i++) {
        float lp;
        WD_EXPECT_EQ_INT(wd_sample_ref(l, V, &p, rng, g_f, g_i, &lp), 2);
        WD_EXPECT_NEAR(lp, log_softmax(l, V, 2), 1e-6);
    }
    /* top_p smaller than the top probability keeps exactly one token. */
    p.top_k = 0;
    p.top_p = 0.01f;
    for (int i = 0; i < 50; i++)
        WD_EXPECT_EQ_INT(wd_sample_ref(l, V, &p, rng, g_f, g_i, NULL), 2);
    /* min_p close to 1 keeps the max only (3.9 is e^-0.1 = 0.905 of the max at T = 1). */
    p.temperature = 1.0f;
    p.top_p = 1.0f;
    p.min_p = 0.95f;
    for (int i = 0; i < 50; i++)
        WD_EXPECT_EQ_INT(wd_sample_ref(l, V, &p, rng, g_f, g_i, NULL), 2);
    /* min_p 0.9 keeps 2 and 5 and nothing else. */
    p.min_p = 0.9f;
    int seen[V] = {0};
    for (int i = 0; i < 200; i++)
        seen[wd_sample_ref(l, V, &p, rng, g_f, g_i, NULL)]++;
    WD_EXPECT(seen[2] > 0 && seen[5] > 0 && seen[2] + seen[5] == 200);
}

static void test_determinism(void)
{
    float l[V] = {0.1f, 0.2f, 0.3f, 0.4f, 0.5f, 0.6f, 0.7f, 0.8f};
    struct wd_sampling_params p = {.temperature = 1.0f, .top_k = 5, .top_p = 0.9f, .min_p = 0.01f};
    uint64_t a[4], b[4], c[4];
    wd_rng_seed(a, 2024);
    wd_rng_seed(b, 2024);
    wd_rng_seed(c, 2025);
    int same = 1, differs = 0;
    for (int i = 0; i < 100; i++) {
        int32_t ta = wd_sample_ref(l, V, &p, a, g_f, g_i, NULL);
        int32_t tb = wd_sample_ref(l, V, &p, b, g_f, g_i, NULL);
        int32_t tc = wd_sample_ref(l, V, &p, c, g_f, g_i, NULL);
        same &= ta == tb;
        differs |= ta != tc;
    }
    WD_EXPECT(same);
    WD_EXPECT(differs);
    /* splitmix64 seeding and xoshiro256** output are pinned (first outputs of seed 0). */
    uint64_t r[4];
    wd_rng_seed(r, 0);
    WD_EXPECT(r[0] == 0xe220a8397b1dcdafull);
    uint64_t x[4] = {1, 2, 3, 4}; /* xoshiro256** reference vector */
    WD_EXPECT(wd_rng_next(x) == 11520u);
    WD_EXPECT(wd_rng_next(x) == 0u);
    WD_EXPECT(wd_rng_next(x) == 1509978240u);
    double u = wd_rng_uniform(r);
    WD_EXPECT(u >= 0.0 && u < 1.0);
}

/* Draws many samples and checks each token's frequency against the expected probability
 * within 5 standard deviations (plus zero for filtered-out tokens). */
static void check_distribution(const float *l, const struct wd_sampling_params *p,
                               const double *want, const char *what)
{
    enum { N = 40000 };
    uint64_t rng[4];
    wd_rng_seed(rng, 99);
    int count[V] = {0};
    for (int i = 0; i < N; i++)
        count[wd_sample_ref(l, V, p, rng, g_f, g_i, NULL)]++;
    for (int j = 0; j < V; j++) {
        double f = (double)count[j] / N, sd = sqrt(want[j] * (1 - want[j]) / N);
        if (want[j] == 0.0)
            WD_EXPECT_MSG(count[j] == 0, "%s: token %d filtered but drawn %d times", what, j,
                          count[j]);
        else
            WD_EXPECT_MSG(fabs(f - want[j]) <= 5 * sd + 1e-9, "%s: token %d freq %.4f want %.4f",
                          what, j, f, want[j]);
    }
}

static void test_distribution(void)
{
    float l[V] = {1.0f, 2.0f, 0.0f, 3.0f, -1.0f, 2.5f, 1.5f, -0.5f};
    double want[V], m = 3.0, s = 0;
    /* Plain softmax at T = 0.8. */
    struct wd_sampling_params p = {.temperature = 0.8f, .top_k = 0, .top_p = 1.0f, .min_p = 0.0f};
    for (int j = 0; j < V; j++)
        s += want[j] = exp((l[j] - m) / 0.8);
    for (int j = 0; j < V; j++)
        want[j] /= s;
    check_distribution(l, &p, want, "softmax T=0.8");

    /* top_k 3 at T = 1: tokens 3, 5, 1 renormalized. */
    p.temperature = 1.0f;
    p.top_k = 3;
    memset(want, 0, sizeof(want));
    s = exp(0.0) + exp(-0.5) + exp(-1.0);
    want[3] = 1.0 / s;
    want[5] = exp(-0.5) / s;
    want[1] = exp(-1.0) / s;
    check_distribution(l, &p, want, "top_k 3");

    /* top_p: full-softmax p sorted: 3 (.368), 5 (.223), 1 (.135), 6 (.082), 0 (.050) ...
     * top_p 0.7: cumulative before 1 is .591 < .7, before 6 is .727 >= .7 -> {3, 5, 1}. */
    p.top_k = 0;
    p.top_p = 0.7f;
    check_distribution(l, &p, want, "top_p 0.7");
    /* min_p 0.3 on the same: keep p >= 0.3 * p_max -> exp(-1) = .368 >= .3: {3, 5, 1} again;
     * min_p 0.4 drops token 1. */
    p.top_p = 1.0f;
    p.min_p = 0.3f;
    check_distribution(l, &p, want, "min_p 0.3");
    p.min_p = 0.4f;
    memset(want, 0, sizeof(want));
    s = 1.0 + exp(-0.5);
    want[3] = 1.0 / s;
    want[5] = exp(-0.5) / s;
    check_distribution(l, &p, want, "min_p 0.4");
}

int main(void)
{
    WD_RUN(test_greedy);
    WD_RUN(test_tiny_temperature_is_greedy);
    WD_RUN(test_filters_keep_one);
    WD_RUN(test_determinism);
    WD_RUN(test_distribution);
    return wd_test_finish();
}
