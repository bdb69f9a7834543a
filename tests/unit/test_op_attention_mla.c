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
#include "kernels/linear_cpu.h"
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
    float *scratch =
        malloc(sizeof(float) * (size_t)wd_attention_mla_cpu_scratch(n_q, h, rank, rope));
    float *fast1 = malloc(sizeof(float) * (size_t)orow);
    for (int pass = 0; pass < 2; pass++) {
        wd_attention_mla_cpu(qs, n_q, decode_only ? sseq : tseq, decode_only ? spos : tpos, seqs,
                             cache, WD_DTYPE_F32, PAGE_SIZE, h, rank, nope, rope, vd, &w, uk_t,
                             scale, scratch, fast, pass ? tp : NULL);
        wd_expect_close(what, fast, out, (int64_t)n_q * orow, 1e-5, 1e-5);
    }
    /* Each token alone: the bits it got in the batch. */
    int same = 1;
    for (int i = 0; i < n_q; i++) {
        wd_attention_mla_cpu(qs + (int64_t)i * qrow, 1, (decode_only ? sseq : tseq) + i,
                             (decode_only ? spos : tpos) + i, seqs, cache, WD_DTYPE_F32, PAGE_SIZE,
                             h, rank, nope, rope, vd, &w, uk_t, scale, scratch, fast1, NULL);
        same &= memcmp(fast1, fast + (int64_t)i * orow, sizeof(float) * (size_t)orow) == 0;
    }
    WD_EXPECT_MSG(same, "%s: a token's output depends on its batch", what);
    free(scratch);
    free(fast1);
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

/* Contexts over several key blocks (MLA's latent rows are wide: blocks of 32), a bf16
 * kv_b: the fast path against the reference, and chunked prefill bit-identical to one
 * batch. */
static void test_long(void)
{
    enum { H = 4, RANK = 64, NOPE = 16, ROPE = 8, VD = 24, PS = 8, LEN = 100, N = 2 * LEN };
    enum { SLOTS = 2 * (LEN / PS + 1) * PS };
    int row = RANK + ROPE, qd = NOPE + ROPE;
    uint64_t rng = 7;
    float *cache = malloc(sizeof(float) * (size_t)SLOTS * row);
    float *q = malloc(sizeof(float) * (size_t)N * H * qd);
    float *ref = malloc(sizeof(float) * (size_t)N * H * VD);
    float *all = malloc(sizeof(float) * (size_t)N * H * VD);
    float *part = malloc(sizeof(float) * (size_t)N * H * VD);
    uint16_t *kvb = malloc(sizeof(uint16_t) * (size_t)H * (NOPE + VD) * RANK);
    float *uk_t = malloc(sizeof(float) * (size_t)H * RANK * NOPE);
    float *scratch = malloc(sizeof(float) * (size_t)wd_attention_mla_cpu_scratch(N, H, RANK, ROPE));
    for (int i = 0; i < SLOTS * row; i++) {
        rng = rng * 6364136223846793005ull + 1442695040888963407ull;
        cache[i] = (float)((rng >> 40) % 2001) / 1000.0f - 1.0f;
    }
    for (int i = 0; i < N * H * qd; i++) {
        rng = rng * 6364136223846793005ull + 1442695040888963407ull;
        q[i] = (float)((rng >> 40) % 2001) / 1000.0f - 1.0f;
    }
    for (int i = 0; i < H * (NOPE + VD) * RANK; i++) {
        rng = rng * 6364136223846793005ull + 1442695040888963407ull;
        kvb[i] = wd_f32_to_bf16((float)((rng >> 40) % 2001) / 4000.0f - 0.25f);
    }
    struct wd_weight w = {
        .dtype = WD_DTYPE_BF16, .data = kvb, .rows = H * (NOPE + VD), .cols = RANK};
    wd_mla_uk_transpose(&w, H, NOPE, VD, RANK, uk_t);
    int32_t pages[2][LEN / PS + 1], tseq[N], tpos[N];
    for (int p = 0; p < LEN / PS + 1; p++) { /* sequence 1's pages first, interleaved */
        pages[0][p] = 2 * p + 1;
        pages[1][p] = 2 * p;
    }
    struct wd_attn_seq seqs[2] = {{pages[0], LEN}, {pages[1], LEN}};
    for (int t = 0; t < N; t++) {
        tseq[t] = t / LEN;
        tpos[t] = t % LEN;
    }
    float scale = 0.3f;
    uint16_t *cache16 = malloc(sizeof(uint16_t) * (size_t)SLOTS * row);
    for (int i = 0; i < SLOTS * row; i++)
        cache16[i] = wd_f32_to_bf16(cache[i]);
    for (int ci = 0; ci < 2; ci++) { /* f32 and bf16 latent caches */
        enum wd_dtype dt = ci ? WD_DTYPE_BF16 : WD_DTYPE_F32;
        const void *cp = ci ? (const void *)cache16 : cache;
        wd_attention_mla_ref(q, N, tseq, tpos, seqs, cp, dt, PS, H, RANK, NOPE, ROPE, VD, &w, scale,
                             ref);
        struct wd_threadpool *tp = NULL;
        WD_EXPECT_EQ_INT(wd_threadpool_create(2, &tp), WD_OK);
        wd_attention_mla_cpu(q, N, tseq, tpos, seqs, cp, dt, PS, H, RANK, NOPE, ROPE, VD, &w, uk_t,
                             scale, scratch, all, tp);
        wd_expect_close("mla long", all, ref, (int64_t)N * H * VD, 1e-5, 1e-5);
        for (int t0 = 0; t0 < N; t0 += 29) {
            int c = N - t0 < 29 ? N - t0 : 29;
            wd_attention_mla_cpu(q + (int64_t)t0 * H * qd, c, tseq + t0, tpos + t0, seqs, cp, dt,
                                 PS, H, RANK, NOPE, ROPE, VD, &w, uk_t, scale, scratch,
                                 part + (int64_t)t0 * H * VD, t0 % 2 ? tp : NULL);
        }
        WD_EXPECT_MSG(memcmp(all, part, sizeof(float) * (size_t)N * H * VD) == 0,
                      "%s: chunked MLA differs from one batch", wd_dtype_name(dt));
        wd_threadpool_destroy(tp);
    }
    free(cache16);
    free(cache);
    free(q);
    free(ref);
    free(all);
    free(part);
    free(kvb);
    free(uk_t);
    free(scratch);
}

int main(void)
{
    WD_RUN(test_golden);
    WD_RUN(test_hand);
    WD_RUN(test_long);
    wd_cpu_force_portable(1); /* the same checks on the portable kernels */
    WD_RUN(test_golden);
    WD_RUN(test_long);
    wd_cpu_force_portable(0);
    return wd_test_finish();
}
