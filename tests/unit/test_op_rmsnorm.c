/* wd_rmsnorm_ref against HF Qwen3MoeRMSNorm / DeepseekV3RMSNorm goldens, plus edge cases. */
#include <stdlib.h>
#include <string.h>

#include "kernels/rmsnorm.h"
#include "tests/unit/wd_fixture.h"
#include "tests/unit/wd_test.h"

static void check_case(const char *name)
{
    struct wd_fixture *fx = wd_fixture_load(name);
    if (!fx)
        return;
    int64_t shape[4] = {0}, n_gamma = 0;
    const float *x = wd_fixture_tensor(fx, "x", WD_DTYPE_F32, shape, NULL);
    const float *gamma = wd_fixture_f32(fx, "gamma", &n_gamma);
    const float *want = wd_fixture_f32(fx, "y", NULL);
    float eps = (float)wd_fixture_param(fx, "eps");
    if (x && gamma && want) {
        int64_t n = shape[0], dim = shape[1];
        WD_EXPECT_EQ_INT(n_gamma, dim);
        float *y = malloc(sizeof(float) * (size_t)(n * dim));
        wd_rmsnorm_ref(x, gamma, n, dim, eps, y);
        wd_expect_close(name, y, want, n * dim, 1e-6, 2e-6);
        /* In place gives the same bits. */
        float *z = malloc(sizeof(float) * (size_t)(n * dim));
        memcpy(z, x, sizeof(float) * (size_t)(n * dim));
        wd_rmsnorm_ref(z, gamma, n, dim, eps, z);
        WD_EXPECT(memcmp(y, z, sizeof(float) * (size_t)(n * dim)) == 0);
        free(y);
        free(z);
    }
    wd_fixture_free(fx);
}

static void test_golden(void)
{
    check_case("rmsnorm_qwen3");
    check_case("rmsnorm_dsv3");
}

static void test_edges(void)
{
    /* n = 0 touches nothing. */
    float sentinel = 7.0f, g1 = 2.0f;
    wd_rmsnorm_ref(NULL, &g1, 0, 1, 1e-6f, &sentinel);
    WD_EXPECT(sentinel == 7.0f);
    /* dim 1: x / sqrt(x^2 + eps) * g -> sign(x) * g for |x| >> eps. */
    float x = -3.0f, y = 0.0f;
    wd_rmsnorm_ref(&x, &g1, 1, 1, 0.0f, &y);
    WD_EXPECT_NEAR(y, -2.0, 1e-7);
    /* All-zero row: eps keeps it finite (0). */
    float zx[4] = {0}, zg[4] = {1, 1, 1, 1}, zy[4] = {1, 1, 1, 1};
    wd_rmsnorm_ref(zx, zg, 1, 4, 1e-6f, zy);
    for (int i = 0; i < 4; i++)
        WD_EXPECT(zy[i] == 0.0f);
    /* Hand-computed: x = (1, 2, 3, 4), mean square 7.5. */
    float hx[4] = {1, 2, 3, 4}, hy[4];
    wd_rmsnorm_ref(hx, zg, 1, 4, 0.0f, hy);
    for (int i = 0; i < 4; i++)
        WD_EXPECT_NEAR(hy[i], hx[i] / sqrt(7.5), 1e-6);
}

int main(void)
{
    WD_RUN(test_golden);
    WD_RUN(test_edges);
    return wd_test_finish();
}
