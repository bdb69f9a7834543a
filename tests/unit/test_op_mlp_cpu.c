/*
 * The CPU backend's element-wise helpers (vec_cpu) and grouped SwiGLU MLP (mlp_cpu):
 * against libm / HF fixtures / wd_mlp_ref within tolerance, and bit-identical for a row
 * whatever its group, its batch, its place in the array and the thread count.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/mlp.h"
#include "kernels/mlp_cpu.h"
#include "kernels/vec_cpu.h"
#include "kernels/linear_cpu.h"
#include "tests/unit/wd_fixture.h"
#include "tests/unit/wd_test.h"

static uint64_t g_rng = 0x9e3779b97f4a7c15ull;

static float rndf(void)
{
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return (float)((g_rng >> 11) % 2000001) / 1000000.0f - 1.0f;
}

static void test_vec(void)
{
    enum { N = 203 };
    float g[N], u[N], out[N], part[N], s[N];
    for (int i = 0; i < N; i++) {
        g[i] = rndf() * 12.0f;
        u[i] = rndf();
    }
    wd_vec_silu_mul(g, u, N, out);
    int close = 1;
    for (int i = 0; i < N; i++) {
        double want = g[i] / (1.0 + exp(-(double)g[i])) * u[i];
        close &= fabs(out[i] - want) <= 1e-6 * fabs(want) + 1e-7;
    }
    WD_EXPECT_MSG(close, "silu_mul off libm");
    /* Any sub-range (other vector boundaries, other padding) gives the same bits. */
    for (int off = 1; off < 9; off++) {
        wd_vec_silu_mul(g + off, u + off, N - off - 3, part);
        WD_EXPECT(memcmp(part, out + off, sizeof(float) * (size_t)(N - off - 3)) == 0);
    }
    memcpy(part, g, sizeof(g));
    wd_vec_silu_mul(part, u, N, part); /* in place over gate */
    WD_EXPECT(memcmp(part, out, sizeof(out)) == 0);
    float hg[3] = {0.0f, 30.0f, -100.0f}, hu[3] = {5.0f, 2.0f, 3.0f}, ho[3];
    wd_vec_silu_mul(hg, hu, 3, ho);
    WD_EXPECT(ho[0] == 0.0f);
    WD_EXPECT_NEAR(ho[1], 60.0, 1e-4);
    WD_EXPECT(fabsf(ho[2]) < 1e-30f && !isnan(ho[2]));

    for (int n = 1; n <= 19; n += 6) {
        double want_sum = 0;
        for (int i = 0; i < n; i++)
            s[i] = rndf() * 30.0f;
        memcpy(part, s, sizeof(float) * (size_t)n);
        float sum = wd_vec_exp_sum(s, n, 2.5f);
        close = 1;
        for (int i = 0; i < n; i++) {
            double e = exp((double)(part[i] - 2.5f)); /* the op subtracts in float */
            want_sum += e;
            close &= fabs(s[i] - e) <= 1e-6 * e && s[i] == wd_vec_exp(part[i] - 2.5f);
        }
        WD_EXPECT_MSG(close && fabs(sum - want_sum) <= 1e-5 * want_sum, "exp_sum n=%d", n);
    }
    WD_EXPECT(wd_vec_exp(0.0f) == 1.0f);
    WD_EXPECT(wd_vec_exp(-200.0f) < 1e-37f);
}

static void test_mlp_fixture(void)
{
    struct wd_mlp_fixture m;
    if (!wd_fixture_mlp(&m))
        return;
    float *tmp = malloc(sizeof(float) * (size_t)(2 * m.n * m.inter));
    float *y = malloc(sizeof(float) * (size_t)(m.n * m.hidden));
    struct wd_mlp_group g = {
        .gate = &m.gate, .up = &m.up, .down = &m.down, .x = m.x, .n = m.n, .tmp = tmp, .y = y};
    wd_mlp_cpu(&g, 1, NULL);
    wd_expect_close("mlp_cpu bf16", y, m.want, m.n * m.hidden, 1e-5, 1e-5);
    free(tmp);
    free(y);
    wd_fixture_free(m.fx);
}

/* Experts of random rows (some empty) in one call, against wd_mlp_ref per expert and
 * against each row run alone on one thread. */
static void test_groups(void)
{
    enum { E = 5, H = 72, I = 40 };
    int64_t counts[E] = {3, 0, 1, 8, 5};
    enum wd_dtype dts[2] = {WD_DTYPE_BF16, WD_DTYPE_F32};
    for (int d = 0; d < 2; d++) {
        size_t es = wd_dtype_size(dts[d]);
        unsigned char *mem = malloc((size_t)E * 3 * H * I * es);
        for (size_t i = 0; i < (size_t)E * 3 * H * I; i++) {
            float v = rndf() * 0.3f;
            if (dts[d] == WD_DTYPE_BF16)
                ((uint16_t *)mem)[i] = wd_f32_to_bf16(v);
            else
                ((float *)mem)[i] = v;
        }
        struct wd_weight w[E][3];
        int64_t total = 0;
        for (int e = 0; e < E; e++) {
            for (int k = 0; k < 3; k++)
                w[e][k] = (struct wd_weight){.dtype = dts[d],
                                             .data = mem + ((size_t)e * 3 + k) * H * I * es,
                                             .rows = k == 2 ? H : I,
                                             .cols = k == 2 ? I : H};
            total += counts[e];
        }
        float *x = malloc(sizeof(float) * (size_t)(total * H));
        float *y = malloc(sizeof(float) * (size_t)(total * H));
        float *ref = malloc(sizeof(float) * (size_t)(total * H));
        float *tmp = malloc(sizeof(float) * (size_t)(total * 2 * I));
        for (int64_t i = 0; i < total * H; i++)
            x[i] = rndf();
        struct wd_mlp_group g[E];
        int64_t row = 0;
        for (int e = 0; e < E; e++) {
            g[e] = (struct wd_mlp_group){.gate = &w[e][0],
                                         .up = &w[e][1],
                                         .down = &w[e][2],
                                         .x = x + row * H,
                                         .n = counts[e],
                                         .tmp = tmp + row * 2 * I,
                                         .y = y + row * H};
            wd_mlp_ref(&w[e][0], &w[e][1], &w[e][2], x + row * H, counts[e], tmp + row * 2 * I,
                       ref + row * H);
            row += counts[e];
        }
        for (int threads = 1; threads <= 3; threads++) {
            struct wd_threadpool *tp = NULL;
            WD_EXPECT_EQ_INT(wd_threadpool_create(threads, &tp), WD_OK);
            wd_mlp_cpu(g, E, tp);
            wd_expect_close("mlp_cpu groups", y, ref, total * H, 1e-5, 1e-5);
            int same = 1;
            row = 0;
            for (int e = 0; e < E; e++)
                for (int64_t t = 0; t < counts[e]; t++, row++) {
                    float one[H], one_tmp[2 * I];
                    struct wd_mlp_group g1 = g[e];
                    g1.x = x + row * H;
                    g1.n = 1;
                    g1.tmp = one_tmp;
                    g1.y = one;
                    wd_mlp_cpu(&g1, 1, NULL);
                    same &= memcmp(one, y + row * H, sizeof(one)) == 0;
                }
            WD_EXPECT_MSG(same, "%s, %d threads: a row's output depends on its group",
                          wd_dtype_name(dts[d]), threads);
            wd_threadpool_destroy(tp);
        }
        wd_mlp_cpu(g, 0, NULL);
        free(mem);
        free(x);
        free(y);
        free(ref);
        free(tmp);
    }
}

int main(void)
{
    WD_RUN(test_vec);
    WD_RUN(test_mlp_fixture);
    WD_RUN(test_groups);
    wd_cpu_force_portable(1); /* the same checks on the portable kernels */
    WD_RUN(test_vec);
    WD_RUN(test_mlp_fixture);
    WD_RUN(test_groups);
    wd_cpu_force_portable(0);
    return wd_test_finish();
}
