/* RoPE init and apply against transformers (rope init functions, apply_rotary_pos_emb*). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/rope.h"
#include "tests/unit/wd_fixture.h"
#include "tests/unit/wd_test.h"

static void check_init(const char *name)
{
    struct wd_fixture *fx = wd_fixture_load(name);
    if (!fx)
        return;
    int64_t half = 0;
    const float *want = wd_fixture_f32(fx, "inv_freq", &half);
    int rot_dim = (int)wd_fixture_param(fx, "rot_dim");
    if (want && half == rot_dim / 2) {
        float inv_freq[WD_ROPE_MAX_DIM / 2], scaling = 0.0f;
        wd_rope_init(rot_dim, wd_fixture_param(fx, "theta"), (int)wd_fixture_param(fx, "is_yarn"),
                     wd_fixture_param(fx, "factor"), (int)wd_fixture_param(fx, "original_max_pos"),
                     wd_fixture_param(fx, "beta_fast"), wd_fixture_param(fx, "beta_slow"),
                     wd_fixture_param(fx, "mscale"), wd_fixture_param(fx, "mscale_all_dim"),
                     wd_fixture_param(fx, "attention_factor"),
                     (int)wd_fixture_param(fx, "truncate"), inv_freq, &scaling);
        /* powf vs torch's vectorized pow may differ by an ulp. */
        wd_expect_close(name, inv_freq, want, half, 0.0, 3e-7);
        WD_EXPECT_NEAR(scaling, wd_fixture_param(fx, "attention_scaling"), 1e-7);
    } else {
        WD_EXPECT(want && half == rot_dim / 2);
    }
    wd_fixture_free(fx);
}

static void test_init(void)
{
    check_init("rope_init_default");
    check_init("rope_init_yarn_dsv3");
    check_init("rope_init_yarn_plain");
    check_init("rope_init_yarn_mscale");
    check_init("rope_init_yarn_attn_factor");
}

static void test_mscale(void)
{
    WD_EXPECT_NEAR(wd_yarn_get_mscale(1.0, 1.0), 1.0, 0);
    WD_EXPECT_NEAR(wd_yarn_get_mscale(0.5, 1.0), 1.0, 0);
    WD_EXPECT_NEAR(wd_yarn_get_mscale(40.0, 1.0), 0.1 * log(40.0) + 1.0, 1e-7);
    WD_EXPECT_NEAR(wd_yarn_get_mscale(40.0, 0.707), 0.1 * 0.707 * log(40.0) + 1.0, 1e-7);
    /* The MLA fixture's softmax scale is qk_head_dim^-0.5 * mscale(40, 1)^2 with qk_head_dim 24. */
    struct wd_fixture *fx = wd_fixture_load("attn_mla");
    if (fx) {
        float m = wd_yarn_get_mscale(40.0, 1.0);
        WD_EXPECT_NEAR(powf(24.0f, -0.5f) * m * m, wd_fixture_param(fx, "scale"), 1e-7);
        wd_fixture_free(fx);
    }
}

/* Rotates q and k of a fixture with the given inv_freq; heads are stored at `off` inside a
 * wider row to exercise head_stride and the channel offset, with the rest untouched. */
static void check_apply(struct wd_fixture *fx, const char *what, const float *inv_freq, double atol,
                        double rtol)
{
    int64_t qs[4] = {0}, ks[4] = {0};
    const float *q = wd_fixture_tensor(fx, "q", WD_DTYPE_F32, qs, NULL);
    const float *k = wd_fixture_tensor(fx, "k", WD_DTYPE_F32, ks, NULL);
    const float *q_want = wd_fixture_f32(fx, "q_out", NULL);
    const float *k_want = wd_fixture_f32(fx, "k_out", NULL);
    const int32_t *pos = wd_fixture_i32(fx, "pos", NULL);
    if (!q || !k || !q_want || !k_want || !pos)
        return;
    struct wd_rope rope = {.rot_dim = (int)qs[2],
                           .is_interleaved = (int)wd_fixture_param(fx, "is_interleaved"),
                           .inv_freq = inv_freq,
                           .attention_scaling = (float)wd_fixture_param(fx, "attention_scaling")};
    for (int which = 0; which < 2; which++) {
        const int64_t *s = which ? ks : qs;
        const float *in = which ? k : q, *want = which ? k_want : q_want;
        int64_t t = s[0], h = s[1], d = s[2], stride = d + 24, off = 16;
        float *x = malloc(sizeof(float) * (size_t)(t * h * stride));
        float *got = malloc(sizeof(float) * (size_t)(t * h * d));
        for (int64_t i = 0; i < t * h * stride; i++)
            x[i] = (float)i;
        for (int64_t r = 0; r < t * h; r++)
            memcpy(x + r * stride + off, in + r * d, sizeof(float) * (size_t)d);
        wd_rope_apply_ref(&rope, x, t, (int)h, (int)stride, off, pos);
        int untouched = 1;
        for (int64_t r = 0; r < t * h; r++) {
            memcpy(got + r * d, x + r * stride + off, sizeof(float) * (size_t)d);
            for (int64_t c = 0; c < stride; c++)
                if ((c < off || c >= off + d) && x[r * stride + c] != (float)(r * stride + c))
                    untouched = 0;
        }
        WD_EXPECT_MSG(untouched, "%s: channels outside the rotated range changed", what);
        char label[96];
        snprintf(label, sizeof(label), "%s %s", what, which ? "k" : "q");
        wd_expect_close(label, got, want, t * h * d, atol, rtol);
        free(x);
        free(got);
    }
}

static void check_apply_case(const char *name)
{
    struct wd_fixture *fx = wd_fixture_load(name);
    if (!fx)
        return;
    int64_t half = 0;
    const float *hf_inv = wd_fixture_f32(fx, "inv_freq", &half);
    if (hf_inv) {
        char what[96];
        /* With HF's own inv_freq only cos/sin rounding differs. */
        snprintf(what, sizeof(what), "%s (hf inv_freq)", name);
        check_apply(fx, what, hf_inv, 2e-6, 2e-6);
        /* With our init: an ulp in inv_freq moves the angle by up to pos * ulp (pos 40000 in the
         * fixture), so the tolerance is looser but still far below any layout mistake. */
        float mine[WD_ROPE_MAX_DIM / 2], sc;
        int is_yarn = strstr(name, "dsv3") != NULL;
        if (is_yarn)
            wd_rope_init((int)half * 2, 10000.0, 1, 40.0, 4096, 32, 1, 1.0,
                         strstr(name, "interleave") ? 1.0 : 0.0, 0.0, 1, mine, &sc);
        else
            wd_rope_init((int)half * 2, 1000000.0, 0, 0, 0, 0, 0, 0, 0, 0, 1, mine, &sc);
        WD_EXPECT_NEAR(sc, wd_fixture_param(fx, "attention_scaling"), 1e-7);
        snprintf(what, sizeof(what), "%s (our inv_freq)", name);
        check_apply(fx, what, mine, 2e-3, 0.0);
    }
    wd_fixture_free(fx);
}

static void test_apply(void)
{
    check_apply_case("rope_qwen3");
    check_apply_case("rope_dsv3_interleave");
    check_apply_case("rope_dsv3_half");
}

static void test_hand(void)
{
    /* rot_dim 2 at position 1 with inv_freq 1: a plain 1-radian rotation of (1, 0). */
    float inv = 1.0f, x[2] = {1.0f, 0.0f};
    int32_t pos = 1;
    struct wd_rope rope = {
        .rot_dim = 2, .is_interleaved = 0, .inv_freq = &inv, .attention_scaling = 1.0f};
    wd_rope_apply_ref(&rope, x, 1, 1, 2, 0, &pos);
    WD_EXPECT_NEAR(x[0], cos(1.0), 1e-7);
    WD_EXPECT_NEAR(x[1], sin(1.0), 1e-7);
    /* Interleaved rot_dim 4: pairs (0,1),(2,3) -> output (r0a, r1a, r0b, r1b). */
    float inv2[2] = {1.0f, 0.5f}, y[4] = {1, 2, 3, 4};
    rope.rot_dim = 4;
    rope.is_interleaved = 1;
    rope.inv_freq = inv2;
    pos = 2;
    wd_rope_apply_ref(&rope, y, 1, 1, 4, 0, &pos);
    double c0 = cos(2.0), s0 = sin(2.0), c1 = cos(1.0), s1 = sin(1.0);
    WD_EXPECT_NEAR(y[0], 1 * c0 - 2 * s0, 1e-6);
    WD_EXPECT_NEAR(y[1], 3 * c1 - 4 * s1, 1e-6);
    WD_EXPECT_NEAR(y[2], 2 * c0 + 1 * s0, 1e-6);
    WD_EXPECT_NEAR(y[3], 4 * c1 + 3 * s1, 1e-6);
    /* Position 0 is the identity (scaling 1); n_tokens 0 touches nothing. */
    float z[4] = {1, 2, 3, 4};
    pos = 0;
    rope.is_interleaved = 0;
    wd_rope_apply_ref(&rope, z, 1, 1, 4, 0, &pos);
    WD_EXPECT(z[0] == 1 && z[1] == 2 && z[2] == 3 && z[3] == 4);
    wd_rope_apply_ref(&rope, NULL, 0, 1, 4, 0, NULL);
}

int main(void)
{
    WD_RUN(test_init);
    WD_RUN(test_mscale);
    WD_RUN(test_apply);
    WD_RUN(test_hand);
    return wd_test_finish();
}
