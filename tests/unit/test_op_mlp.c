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
    struct wd_fixture *fx = wd_fixture_load("mlp_bf16");
    if (!fx)
        return;
    int64_t gs[4] = {0}, xs[4] = {0};
    const void *gate = wd_fixture_tensor(fx, "gate", WD_DTYPE_BF16, gs, NULL);
    const void *up = wd_fixture_tensor(fx, "up", WD_DTYPE_BF16, NULL, NULL);
    const void *down = wd_fixture_tensor(fx, "down", WD_DTYPE_BF16, NULL, NULL);
    const float *x = wd_fixture_tensor(fx, "x", WD_DTYPE_F32, xs, NULL);
    const float *want = wd_fixture_f32(fx, "y", NULL);
    if (gate && up && down && x && want) {
        int64_t inter = gs[0], hidden = gs[1], n = xs[0];
        struct wd_weight wg = {.dtype = WD_DTYPE_BF16, .data = gate, .rows = inter, .cols = hidden};
        struct wd_weight wu = wg,
                         wdn = {
                             .dtype = WD_DTYPE_BF16, .data = down, .rows = hidden, .cols = inter};
        wu.data = up;
        float *scratch = malloc(sizeof(float) * (size_t)(2 * n * inter));
        float *y = malloc(sizeof(float) * (size_t)(n * hidden));
        wd_mlp_ref(&wg, &wu, &wdn, x, n, scratch, y);
        wd_expect_close("mlp bf16 3 tokens", y, want, n * hidden, 1e-5, 1e-5);
        /* One token alone gives the same row as in the batch; y may alias x. */
        float *x1 = malloc(sizeof(float) * (size_t)hidden);
        memcpy(x1, x + hidden, sizeof(float) * (size_t)hidden);
        wd_mlp_ref(&wg, &wu, &wdn, x1, 1, scratch, x1);
        WD_EXPECT(memcmp(x1, y + hidden, sizeof(float) * (size_t)hidden) == 0);
        wd_mlp_ref(&wg, &wu, &wdn, NULL, 0, scratch, NULL);
        free(scratch);
        free(y);
        free(x1);
    }
    wd_fixture_free(fx);
}

int main(void)
{
    WD_RUN(test_silu_mul);
    WD_RUN(test_mlp);
    return wd_test_finish();
}
