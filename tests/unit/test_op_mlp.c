/* silu-mul and the SwiGLU MLP against HF (ACT2FN silu, Qwen3MoeMLP with bf16 weights). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/mlp.h"
#include "tests/unit/wd_fixture.h"
#include "tests/unit/wd_test.h"

static void test_silu_mul(void)
{
    struct wd_fixture *fx = wd_fixture_load("silu_mul");
    if (!fx)
        return;
    int64_t n = 0;
    const float *g = wd_fixture_f32(fx, "gate", &n), *u = wd_fixture_f32(fx, "up", NULL);
    const float *want = wd_fixture_f32(fx, "out", NULL);
    if (g && u && want) {
        float *out = malloc(sizeof(float) * (size_t)n);
        wd_silu_mul_ref(g, u, n, out);
        wd_expect_close("silu_mul", out, want, n, 1e-7, 1e-6);
        /* In place over gate. */
        float *gg = malloc(sizeof(float) * (size_t)n);
        memcpy(gg, g, sizeof(float) * (size_t)n);
        wd_silu_mul_ref(gg, u, n, gg);
        WD_EXPECT(memcmp(gg, out, sizeof(float) * (size_t)n) == 0);
        free(out);
        free(gg);
    }
    wd_fixture_free(fx);
    /* Hand values: silu(0) = 0, silu(large) ~ x, silu(-large) ~ 0 without NaN. */
    float hg[3] = {0.0f, 30.0f, -100.0f}, hu[3] = {5.0f, 2.0f, 3.0f}, ho[3];
    wd_silu_mul_ref(hg, hu, 3, ho);
    WD_EXPECT(ho[0] == 0.0f);
    WD_EXPECT_NEAR(ho[1], 60.0, 1e-4);
    WD_EXPECT(fabsf(ho[2]) < 1e-30f && !isnan(ho[2]));
    wd_silu_mul_ref(NULL, NULL, 0, NULL);
}

static void test_mlp(void)
{
    struct wd_mlp_fixture m;
    if (!wd_fixture_mlp(&m))
        return;
    int64_t n = m.n, hidden = m.hidden, inter = m.inter;
    float *scratch = malloc(sizeof(float) * (size_t)(2 * n * inter));
    float *y = malloc(sizeof(float) * (size_t)(n * hidden));
    wd_mlp_ref(&m.gate, &m.up, &m.down, m.x, n, scratch, y);
    wd_expect_close("mlp bf16 3 tokens", y, m.want, n * hidden, 1e-5, 1e-5);
    /* One token alone gives the same row as in the batch; y may alias x. */
    float *x1 = malloc(sizeof(float) * (size_t)hidden);
    memcpy(x1, m.x + hidden, sizeof(float) * (size_t)hidden);
    wd_mlp_ref(&m.gate, &m.up, &m.down, x1, 1, scratch, x1);
    WD_EXPECT(memcmp(x1, y + hidden, sizeof(float) * (size_t)hidden) == 0);
    wd_mlp_ref(&m.gate, &m.up, &m.down, NULL, 0, scratch, NULL);
    free(scratch);
    free(y);
    free(x1);
    wd_fixture_free(m.fx);
}

int main(void)
{
    WD_RUN(test_silu_mul);
    WD_RUN(test_mlp);
    return wd_test_finish();
}
