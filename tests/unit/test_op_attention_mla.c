/*
 * Absorbed MLA over a paged latent cache against a hooked HF DeepseekV3Attention
 * (eager, yarn, rope_interleave): its roped q, its latent (kv_a_layernorm(c_kv) and roped
 * k_pe) and its output before o_proj. kv_b_proj is tested in f32 and bf16.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/util/status.h"
#include "kernels/attention_mla.h"
#include "kernels/attention_mla_cpu.h"
#include "tests/unit/wd_fixture.h"
#include "tests/unit/wd_test.h"

#define PAGE_SIZE 3

static void run(struct wd_fixture *fx, enum wd_dtype kv_b_dtype, int decode_only)
{
    int n_seqs = (int)wd_fixture_param(fx, "n_seqs"), len = (int)wd_fixture_param(fx, "seq_len");
    int h = (int)wd_fixture_param(fx, "n_heads"), rank = (int)wd_fixture_param(fx, "kv_lora_rank");
    int nope = (int)wd_fixture_param(fx, "nope_dim"), rope = (int)wd_fixture_param(fx, "rope_dim");
    int vd = (int)wd_fixture_param(fx, "v_dim");
    float scale = (float)wd_fixture_param(fx, "scale");
    int64_t kvb_n = 0;
    const float *q = wd_fixture_f32(fx, "q", NULL), *lat = wd_fixture_f32(fx, "latent", NULL);
    const float *kvb = wd_fixture_f32(fx, "kv_b", &kvb_n), *want = wd_fixture_f32(fx, "out", NULL);
    if (!q || !lat || !kvb || !want || n_seqs != 2)
        return;
    int row = rank + rope, qrow = h * (nope + rope), orow = h * vd;
    int pages_per_seq = (len + PAGE_SIZE - 1) / PAGE_SIZE, n_pages = 2 * pages_per_seq;
    /* Sequence 0 takes the odd pages from the top, sequence 1 the rest, reversed. */
    int32_t pages[2][8];
    WD_ASSERT(pages_per_seq <= 8);
    for (int p = 0; p < pages_per_seq; p++) {
        pages[0][p] = n_pages - 1 - 2 * p;
        pages[1][p] = 2 * (pages_per_seq - 1 - p);
    }
    struct wd_attn_seq seqs[2] = {{pages[0], len}, {pages[1], len}};
    size_t cache_n = (size_t)n_pages * PAGE_SIZE * row;
    float *cache = malloc(sizeof(float) * cache_n);
    for (size_t i = 0; i < cache_n; i++)
        cache[i] = NAN;
    int32_t tseq[32], tpos[32];
    WD_ASSERT(2 * len <= 32);
    for (int t = 0; t < 2 * len; t++) {
        tseq[t] = t / len;
        tpos[t] = t % len;
    }
    wd_kv_write_ref(lat, NULL, 2 * len, tseq, tpos, seqs, PAGE_SIZE, WD_DTYPE_F32, row, 0, cache,
                    NULL);

    /* kv_b in the requested dtype; the golden used f32, so bf16 gets its own f32 oracle. */
    uint16_t *kvb16 = malloc(sizeof(uint16_t) * (size_t)kvb_n);
    float *kvb_r = malloc(sizeof(float) * (size_t)kvb_n);
    for (int64_t i = 0; i < kvb_n; i++) {
        kvb16[i] = wd_f32_to_bf16(kvb[i]);
        kvb_r[i] = wd_bf16_to_f32(kvb16[i]);
    }
    struct wd_weight w = {
        .dtype = WD_DTYPE_F32, .data = kvb, .rows = (int64_t)h * (nope + vd), .cols = rank};
    struct wd_weight wr = w;
    wr.data = kvb_r;
    if (kv_b_dtype == WD_DTYPE_BF16) {
        w.dtype = WD_DTYPE_BF16;
        w.data = kvb16;
    }

    int n_q = decode_only ? 2 : 2 * len;
    const float *qs = q;
    float qsel[2 * 4 * 64], wsel[2 * 4 * 64];
    int32_t sseq[2] = {0, 1}, spos[2] = {len - 1, len - 1};
    if (decode_only) {
        WD_ASSERT(qrow <= 4 * 64 && orow <= 4 * 64);
        for (int s = 0; s < 2; s++) {
            int64_t t = s * len + len - 1;
            memcpy(qsel + s * qrow, q + t * qrow, sizeof(float) * qrow);
            memcpy(wsel + s * orow, want + t * orow, sizeof(float) * orow);
        }
        qs = qsel;
    }
    float *out = malloc(sizeof(float) * (size_t)n_q * orow);
    wd_attention_mla_ref(qs, n_q, decode_only ? sseq : tseq, decode_only ? spos : tpos, seqs, cache,
                         WD_DTYPE_F32, PAGE_SIZE, h, rank, nope, rope, vd, &w, scale, out);
    char what[64];
    snprintf(what, sizeof(what), "mla %s kv_b %s", decode_only ? "decode" : "prefill",
             wd_dtype_name(kv_b_dtype));
    /* The CPU backend's MLA (transposed W_UK, threads) against the reference. */
    float *uk_t = malloc(sizeof(float) * (size_t)h * rank * nope);
    float *fast = malloc(sizeof(float) * (size_t)n_q * orow);
    wd_mla_uk_transpose(&w, h, nope, vd, rank, uk_t);
    struct wd_threadpool *tp = NULL;
    WD_EXPECT_EQ_INT(wd_threadpool_create(2, &tp), WD_OK);
    for (int pass = 0; pass < 2; pass++) {
        wd_attention_mla_cpu(qs, n_q, decode_only ? sseq : tseq, decode_only ? spos : tpos, seqs,
                             cache, WD_DTYPE_F32, PAGE_SIZE, h, rank, nope, rope, vd, &w, uk_t,
                             scale, fast, pass ? tp : NULL);
        wd_expect_close(what, fast, out, (int64_t)n_q * orow, 1e-5, 1e-5);
    }
    wd_threadpool_destroy(tp);
    free(uk_t);
    free(fast);
    if (kv_b_dtype == WD_DTYPE_F32) {
        wd_expect_close(what, out, decode_only ? wsel : want, (int64_t)n_q * orow, 1e-5, 1e-4);
    } else {
        /* bf16 weights: compare with the same op on the bf16-rounded f32 copy (bit-equal
         * widening), and loosely with the f32 golden. */
        float *ref = malloc(sizeof(float) * (size_t)n_q * orow);
        wd_attention_mla_ref(qs, n_q, decode_only ? sseq : tseq, decode_only ? spos : tpos, seqs,
                             cache, WD_DTYPE_F32, PAGE_SIZE, h, rank, nope, rope, vd, &wr, scale,
                             ref);
        WD_EXPECT(memcmp(ref, out, sizeof(float) * (size_t)n_q * orow) == 0);
        wd_expect_close(what, out, decode_only ? wsel : want, (int64_t)n_q * orow, 0.05, 0.05);
        free(ref);
    }
    free(out);
    free(cache);
    free(kvb16);
    free(kvb_r);
}

static void test_golden(void)
{
    struct wd_fixture *fx = wd_fixture_load("attn_mla");
    if (!fx)
        return;
    run(fx, WD_DTYPE_F32, 0);
    run(fx, WD_DTYPE_F32, 1);
    run(fx, WD_DTYPE_BF16, 0);
    wd_fixture_free(fx);
}

static void test_hand(void)
{
    /* One head, rank 2, nope 1, rope 1, v 1; kv_b rows: W_UK = (1, 0), W_UV = (0, 1).
     * Position 0 only: the output is W_UV c_kv(0) whatever the score. */
    float kvb[4] = {1, 0, 0, 1};
    struct wd_weight w = {.dtype = WD_DTYPE_F32, .data = kvb, .rows = 2, .cols = 2};
    int32_t page = 0, seq0 = 0, pos0 = 0, pos1 = 1;
    struct wd_attn_seq seq = {.page_table = &page, .n_ctx = 2};
    float cache[6] = {3, 4, 0.5f, /* pos 1: */ 1, -2, 1};
    float q[2] = {2.0f, 1.0f}, out = 0;
    wd_attention_mla_ref(q, 1, &seq0, &pos0, &seq, cache, WD_DTYPE_F32, 4, 1, 2, 1, 1, 1, &w, 1.0f,
                         &out);
    WD_EXPECT_NEAR(out, 4.0, 1e-6);
    /* Two positions: scores 2*3 + 1*0.5 = 6.5 and 2*1 + 1*1 = 3. */
    wd_attention_mla_ref(q, 1, &seq0, &pos1, &seq, cache, WD_DTYPE_F32, 4, 1, 2, 1, 1, 1, &w, 1.0f,
                         &out);
    double p0 = 1.0 / (1.0 + exp(3.0 - 6.5));
    WD_EXPECT_NEAR(out, 4.0 * p0 + (-2.0) * (1.0 - p0), 1e-5);
    wd_attention_mla_ref(NULL, 0, NULL, NULL, NULL, NULL, WD_DTYPE_F32, 4, 1, 2, 1, 1, 1, &w, 1.0f,
                         NULL);
}

int main(void)
{
    WD_RUN(test_golden);
    WD_RUN(test_hand);
    return wd_test_finish();
}
