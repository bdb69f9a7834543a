/*
 * Every CUDA op against its _ref op on fixed-seed random inputs, tolerance
 * abs + |ref| * eps, edge shapes included (0 and 1 tokens, sizes off the block and
 * warp sizes, fp8 blocks that do not divide the matrix). Exits 77 (skip) when no
 * CUDA device is visible.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda_ops.h"
#include "kernels/embedding.h"
#include "kernels/linear.h"
#include "kernels/mlp.h"
#include "kernels/moe_gate.h"
#include "kernels/rmsnorm.h"
#include "kernels/rope.h"
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

static float *rand_f32(int64_t n, float scale)
{
    float *p = malloc(sizeof(float) * (size_t)(n > 0 ? n : 1));
    for (int64_t i = 0; i < n; i++)
        p[i] = rndf() * scale;
    return p;
}

/* Device copy of host memory (freed by the caller with wd_cuda_free). */
static void *to_dev(const void *src, size_t bytes)
{
    void *d = NULL;
    WD_EXPECT(wd_cuda_alloc(bytes, &d) == WD_OK);
    WD_EXPECT(wd_cuda_copy_to_device(d, src, bytes) == WD_OK);
    return d;
}

static void from_dev(void *dst, const void *d, size_t bytes)
{
    WD_EXPECT(wd_cuda_stream_sync(NULL) == WD_OK);
    WD_EXPECT(wd_cuda_copy_to_host(dst, d, bytes) == WD_OK);
}

static void test_rmsnorm(void)
{
    int64_t shapes[][2] = {{0, 64}, {1, 1}, {1, 4096}, {5, 33}, {3, 7168}, {17, 257}};
    for (size_t s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++) {
        int64_t n = shapes[s][0], dim = shapes[s][1];
        float *x = rand_f32(n * dim, 3.0f), *g = rand_f32(dim, 1.0f);
        float *ref = malloc(sizeof(float) * (size_t)(n * dim + 1));
        float *got = malloc(sizeof(float) * (size_t)(n * dim + 1));
        wd_rmsnorm_ref(x, g, n, dim, 1e-6f, ref);
        float *dx = to_dev(x, sizeof(float) * (size_t)(n * dim + 1));
        float *dg = to_dev(g, sizeof(float) * (size_t)dim);
        WD_EXPECT(wd_cuda_rmsnorm(dx, dg, n, dim, 1e-6f, dx, NULL) == WD_OK); /* in place */
        from_dev(got, dx, sizeof(float) * (size_t)(n * dim));
        char what[64];
        snprintf(what, sizeof(what), "rmsnorm %lldx%lld", (long long)n, (long long)dim);
        wd_expect_close(what, got, ref, n * dim, 1e-6, 1e-5);
        wd_cuda_free(dx);
        wd_cuda_free(dg);
        free(x);
        free(g);
        free(ref);
        free(got);
    }
}

static void test_silu_mul(void)
{
    int64_t sizes[] = {0, 1, 255, 256, 100003};
    for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
        int64_t n = sizes[s];
        float *g = rand_f32(n, 8.0f), *u = rand_f32(n, 2.0f);
        float *ref = malloc(sizeof(float) * (size_t)(n + 1));
        float *got = malloc(sizeof(float) * (size_t)(n + 1));
        wd_silu_mul_ref(g, u, n, ref);
        float *dg = to_dev(g, sizeof(float) * (size_t)(n + 1));
        float *du = to_dev(u, sizeof(float) * (size_t)(n + 1));
        WD_EXPECT(wd_cuda_silu_mul(dg, du, n, dg, NULL) == WD_OK);
        from_dev(got, dg, sizeof(float) * (size_t)n);
        char what[64];
        snprintf(what, sizeof(what), "silu_mul n=%lld", (long long)n);
        wd_expect_close(what, got, ref, n, 1e-7, 4e-7);
        wd_cuda_free(dg);
        wd_cuda_free(du);
        free(g);
        free(u);
        free(ref);
        free(got);
    }
}

/* A random [rows, cols] weight in dtype dt (fp8 with br x bc block scales); host copies. */
struct host_weight {
    struct wd_weight w;  /* host pointers */
    struct wd_weight dw; /* the same weight in device memory */
    void *data;
    float *scale;
};

static void make_weight(struct host_weight *hw, enum wd_dtype dt, int64_t rows, int64_t cols,
                        int br, int bc)
{
    size_t n = (size_t)(rows * cols), bytes = n * wd_dtype_size(dt);
    memset(hw, 0, sizeof(*hw));
    hw->data = malloc(bytes + 1);
    for (size_t i = 0; i < n; i++) {
        float v = rndf();
        if (dt == WD_DTYPE_F32)
            ((float *)hw->data)[i] = v;
        else if (dt == WD_DTYPE_F16)
            ((uint16_t *)hw->data)[i] = wd_f32_to_f16(v);
        else if (dt == WD_DTYPE_BF16)
            ((uint16_t *)hw->data)[i] = wd_f32_to_bf16(v);
        else
            ((uint8_t *)hw->data)[i] = wd_f32_to_e4m3(v * 300.0f);
    }
    hw->w = (struct wd_weight){.dtype = dt, .data = hw->data, .rows = rows, .cols = cols};
    hw->dw = hw->w;
    hw->dw.data = to_dev(hw->data, bytes + 1);
    if (dt == WD_DTYPE_F8_E4M3) {
        int64_t nb = ((rows + br - 1) / br) * ((cols + bc - 1) / bc);
        hw->scale = rand_f32(nb, 0.01f);
        hw->w.scale_inv = hw->scale;
        hw->w.block_rows = hw->dw.block_rows = br;
        hw->w.block_cols = hw->dw.block_cols = bc;
        hw->dw.scale_inv = to_dev(hw->scale, sizeof(float) * (size_t)nb);
    }
}

static void free_weight(struct host_weight *hw)
{
    wd_cuda_free((void *)hw->dw.data);
    wd_cuda_free((void *)hw->dw.scale_inv);
    free(hw->data);
    free(hw->scale);
}

static const enum wd_dtype g_dtypes[4] = {WD_DTYPE_F32, WD_DTYPE_F16, WD_DTYPE_BF16,
                                          WD_DTYPE_F8_E4M3};

static void test_embedding(void)
{
    for (int d = 0; d < 4; d++) {
        struct host_weight hw;
        make_weight(&hw, g_dtypes[d], 301, 77, 128, 32);
        int32_t ids[6] = {0, 300, 5, 5, 128, 127};
        for (int64_t n = 0; n <= 6; n += 3) {
            float ref[6 * 77], got[6 * 77];
            wd_embedding_ref(&hw.w, ids, n, ref);
            int32_t *dids = to_dev(ids, sizeof(ids));
            float *dout = NULL;
            WD_EXPECT(wd_cuda_alloc(sizeof(got), (void **)&dout) == WD_OK);
            WD_EXPECT(wd_cuda_embedding(&hw.dw, dids, n, dout, NULL) == WD_OK);
            from_dev(got, dout, sizeof(float) * (size_t)(n * 77));
            WD_EXPECT_MSG(memcmp(got, ref, sizeof(float) * (size_t)(n * 77)) == 0,
                          "embedding %s n=%lld not bit-exact", wd_dtype_name(g_dtypes[d]),
                          (long long)n);
            wd_cuda_free(dids);
            wd_cuda_free(dout);
        }
        free_weight(&hw);
    }
}

static void test_rope(void)
{
    struct {
        int rot_dim, interleaved, yarn, n_heads, stride, off;
        int64_t n_tokens;
    } cases[] = {{64, 0, 0, 4, 64, 0, 7}, {64, 1, 1, 3, 192, 128, 5}, {128, 0, 1, 2, 136, 8, 1},
                 {2, 1, 0, 1, 2, 0, 3},   {64, 1, 1, 1, 576, 512, 0}, {96, 0, 0, 5, 100, 2, 9}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        float inv_freq[WD_ROPE_MAX_DIM / 2], scaling;
        wd_rope_init(cases[i].rot_dim, cases[i].yarn ? 10000.0 : 1000000.0, cases[i].yarn, 40.0,
                     4096, 32, 1, 1.0, 0.0, 0.0, 1, inv_freq, &scaling);
        int64_t n = cases[i].n_tokens * cases[i].n_heads * cases[i].stride;
        int32_t pos[16];
        for (int t = 0; t < 16; t++)
            pos[t] = t * t * 97 % 5000;
        float *x = rand_f32(n, 2.0f), *got = malloc(sizeof(float) * (size_t)(n + 1));
        float *dx = to_dev(x, sizeof(float) * (size_t)(n + 1));
        int32_t *dpos = to_dev(pos, sizeof(pos));
        float *dinv = to_dev(inv_freq, sizeof(float) * (size_t)(cases[i].rot_dim / 2));
        struct wd_rope rope = {.rot_dim = cases[i].rot_dim,
                               .is_interleaved = cases[i].interleaved,
                               .inv_freq = inv_freq,
                               .attention_scaling = scaling};
        struct wd_rope drope = rope;
        drope.inv_freq = dinv;
        WD_EXPECT(wd_cuda_rope_apply(&drope, dx, cases[i].n_tokens, cases[i].n_heads,
                                     cases[i].stride, cases[i].off, dpos, NULL) == WD_OK);
        wd_rope_apply_ref(&rope, x, cases[i].n_tokens, cases[i].n_heads, cases[i].stride,
                          cases[i].off, pos);
        from_dev(got, dx, sizeof(float) * (size_t)n);
        char what[96];
        snprintf(what, sizeof(what), "rope rot=%d il=%d yarn=%d t=%lld", cases[i].rot_dim,
                 cases[i].interleaved, cases[i].yarn, (long long)cases[i].n_tokens);
        /* cosf/sinf on the GPU are within 2 ulp of the CPU's. */
        wd_expect_close(what, got, x, n, 2e-6, 2e-6);
        wd_cuda_free(dx);
        wd_cuda_free(dpos);
        wd_cuda_free(dinv);
        free(x);
        free(got);
    }
}

static void test_linear(void)
{
    struct {
        int64_t rows, cols, n;
        int br, bc;
    } cases[] = {{1, 1, 1, 128, 128},     {7, 33, 0, 128, 128}, {64, 96, 1, 128, 128},
                 {300, 260, 3, 128, 128}, {50, 70, 9, 16, 32},  {129, 1000, 17, 64, 100},
                 {4096, 512, 2, 128, 128}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        for (int d = 0; d < 4; d++) {
            struct host_weight hw;
            int64_t rows = cases[i].rows, cols = cases[i].cols, n = cases[i].n;
            make_weight(&hw, g_dtypes[d], rows, cols, cases[i].br, cases[i].bc);
            float *x = rand_f32(n * cols, 1.0f);
            float *ref = malloc(sizeof(float) * (size_t)(n * rows + 1));
            float *got = malloc(sizeof(float) * (size_t)(n * rows + 1));
            wd_linear_ref(&hw.w, x, n, ref);
            float *dx = to_dev(x, sizeof(float) * (size_t)(n * cols + 1)), *dy = NULL;
            WD_EXPECT(wd_cuda_alloc(sizeof(float) * (size_t)(n * rows + 1), (void **)&dy) == WD_OK);
            WD_EXPECT(wd_cuda_linear(&hw.dw, dx, n, dy, NULL) == WD_OK);
            from_dev(got, dy, sizeof(float) * (size_t)(n * rows));
            char what[96];
            snprintf(what, sizeof(what), "linear %s %lldx%lld n=%lld", wd_dtype_name(g_dtypes[d]),
                     (long long)rows, (long long)cols, (long long)n);
            /* Different fp32 summation order over cols terms of magnitude <= |scale|. */
            double mag = g_dtypes[d] == WD_DTYPE_F8_E4M3 ? 3.0 : 1.0;
            wd_expect_close(what, got, ref, n * rows, 2e-6 * mag * sqrt((double)cols), 1e-5);
            wd_cuda_free(dx);
            wd_cuda_free(dy);
            free(x);
            free(ref);
            free(got);
            free_weight(&hw);
        }
}

static void test_gates(void)
{
    struct {
        int64_t n;
        int e, k, n_group, topk_group;
    } cases[] = {{0, 8, 2, 4, 2},     {1, 16, 4, 4, 2}, {37, 128, 8, 8, 4},
                 {200, 256, 8, 8, 4}, {5, 64, 6, 1, 1}, {9, 32, 1, 32, 3}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int64_t n = cases[i].n;
        int e = cases[i].e, k = cases[i].k;
        float *l = rand_f32(n * e, 4.0f), *bias = rand_f32(e, 0.2f);
        if (n > 0) /* ties: the lower index must win on both sides */
            l[1] = l[0];
        int32_t *idx_ref = malloc(sizeof(int32_t) * (size_t)(n * k + 1));
        int32_t *idx_got = malloc(sizeof(int32_t) * (size_t)(n * k + 1));
        float *w_ref = malloc(sizeof(float) * (size_t)(n * k + 1));
        float *w_got = malloc(sizeof(float) * (size_t)(n * k + 1));
        float *dl = to_dev(l, sizeof(float) * (size_t)(n * e + 1));
        float *db = to_dev(bias, sizeof(float) * (size_t)e);
        int32_t *didx = NULL;
        float *dw = NULL;
        WD_EXPECT(wd_cuda_alloc(sizeof(int32_t) * (size_t)(n * k + 1), (void **)&didx) == WD_OK);
        WD_EXPECT(wd_cuda_alloc(sizeof(float) * (size_t)(n * k + 1), (void **)&dw) == WD_OK);
        for (int grouped = 0; grouped < 2; grouped++) {
            char what[96];
            if (grouped) {
                wd_moe_gate_sigmoid_grouped_ref(l, n, e, k, cases[i].n_group, cases[i].topk_group,
                                                bias, 1, 2.5f, idx_ref, w_ref);
                WD_EXPECT(wd_cuda_moe_gate_sigmoid_grouped(dl, n, e, k, cases[i].n_group,
                                                           cases[i].topk_group, db, 1, 2.5f, didx,
                                                           dw, NULL) == WD_OK);
            } else {
                wd_moe_gate_softmax_topk_ref(l, n, e, k, i % 2, idx_ref, w_ref);
                WD_EXPECT(wd_cuda_moe_gate_softmax_topk(dl, n, e, k, i % 2, didx, dw, NULL) ==
                          WD_OK);
            }
            from_dev(idx_got, didx, sizeof(int32_t) * (size_t)(n * k));
            from_dev(w_got, dw, sizeof(float) * (size_t)(n * k));
            snprintf(what, sizeof(what), "%s gate n=%lld E=%d k=%d",
                     grouped ? "sigmoid" : "softmax", (long long)n, e, k);
            WD_EXPECT_MSG(memcmp(idx_got, idx_ref, sizeof(int32_t) * (size_t)(n * k)) == 0,
                          "%s: expert choice differs", what);
            wd_expect_close(what, w_got, w_ref, n * k, 1e-7, 1e-6);
        }
        wd_cuda_free(dl);
        wd_cuda_free(db);
        wd_cuda_free(didx);
        wd_cuda_free(dw);
        free(l);
        free(bias);
        free(idx_ref);
        free(idx_got);
        free(w_ref);
        free(w_got);
    }
}

static void test_bad_args(void)
{
    WD_EXPECT(wd_cuda_moe_gate_softmax_topk(NULL, 1, 8, 9, 1, NULL, NULL, NULL) == WD_ERR_INVALID);
    WD_EXPECT(wd_cuda_moe_gate_sigmoid_grouped(NULL, 1, 10, 2, 4, 2, NULL, 1, 1.0f, NULL, NULL,
                                               NULL) == WD_ERR_INVALID);
    struct wd_rope rope = {.rot_dim = 64};
    WD_EXPECT(wd_cuda_rope_apply(&rope, NULL, 1, 1, 32, 0, NULL, NULL) == WD_ERR_INVALID);
}

int main(void)
{
    int n_dev = 0;
    if (wd_cuda_device_count(&n_dev) != WD_OK || n_dev == 0) {
        printf("skip: no CUDA device visible\n");
        return 77;
    }
    WD_RUN(test_rmsnorm);
    WD_RUN(test_silu_mul);
    WD_RUN(test_embedding);
    WD_RUN(test_rope);
    WD_RUN(test_linear);
    WD_RUN(test_gates);
    WD_RUN(test_bad_args);
    return wd_test_finish();
}
