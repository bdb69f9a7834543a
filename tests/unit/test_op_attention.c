/*
 * Paged GQA attention and the KV write against HF eager attention with a causal mask.
 * The test builds the paged layout itself: page ids are shuffled across sequences, the
 * page size does not divide the sequence lengths, and unused slots hold NaN so a read
 * through a wrong slot shows up at once.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/util/status.h"
#include "kernels/attention.h"
#include "kernels/attention_cpu.h"
#include "kernels/linear_cpu.h"
#include "tests/unit/wd_fixture.h"
#include "tests/unit/wd_test.h"

#define MAX_SEQS 3
#define PAGE_SIZE 4
#define N_PAGES 16

struct gqa_case {
    int n_seqs, n_heads, n_kv, head_dim;
    float scale;
    int64_t len[MAX_SEQS];
    const float *q[MAX_SEQS], *k[MAX_SEQS], *v[MAX_SEQS], *out[MAX_SEQS];
};

static int load_case(struct wd_fixture *fx, struct gqa_case *c)
{
    c->n_seqs = (int)wd_fixture_param(fx, "n_seqs");
    c->n_heads = (int)wd_fixture_param(fx, "n_heads");
    c->n_kv = (int)wd_fixture_param(fx, "n_kv_heads");
    c->head_dim = (int)wd_fixture_param(fx, "head_dim");
    c->scale = (float)wd_fixture_param(fx, "scale");
    if (c->n_seqs < 1 || c->n_seqs > MAX_SEQS)
        return 0;
    for (int i = 0; i < c->n_seqs; i++) {
        char name[16];
        int64_t shape[4] = {0};
        snprintf(name, sizeof(name), "q%d", i);
        c->q[i] = wd_fixture_tensor(fx, name, WD_DTYPE_F32, shape, NULL);
        c->len[i] = shape[0];
        snprintf(name, sizeof(name), "k%d", i);
        c->k[i] = wd_fixture_f32(fx, name, NULL);
        snprintf(name, sizeof(name), "v%d", i);
        c->v[i] = wd_fixture_f32(fx, name, NULL);
        snprintf(name, sizeof(name), "out%d", i);
        c->out[i] = wd_fixture_f32(fx, name, NULL);
        if (!c->q[i] || !c->k[i] || !c->v[i] || !c->out[i])
            return 0;
    }
    return 1;
}

/* Runs the whole batch either as one prefill of every token, or as `tail` decode-like
 * tokens per sequence (the last `tail` positions) after writing the full KV. */
static void run(const struct gqa_case *c, int tail, const char *what)
{
    int32_t pages[MAX_SEQS][N_PAGES];
    struct wd_attn_seq seqs[MAX_SEQS];
    /* A fixed shuffle of page ids, dealt to the sequences in turn. */
    int32_t perm[N_PAGES] = {11, 3, 14, 0, 7, 9, 1, 15, 5, 12, 2, 8, 13, 6, 10, 4};
    int next = 0;
    int row = c->n_kv * c->head_dim, qrow = c->n_heads * c->head_dim;
    int64_t n_tok = 0;
    for (int s = 0; s < c->n_seqs; s++) {
        int n_pages = (int)((c->len[s] + PAGE_SIZE - 1) / PAGE_SIZE);
        WD_ASSERT(next + n_pages <= N_PAGES);
        for (int p = 0; p < n_pages; p++)
            pages[s][p] = perm[next++];
        seqs[s].page_table = pages[s];
        seqs[s].n_ctx = (int32_t)c->len[s];
        n_tok += c->len[s];
    }
    size_t cache_elems = (size_t)N_PAGES * PAGE_SIZE * row;
    float *kc = malloc(sizeof(float) * cache_elems), *vc = malloc(sizeof(float) * cache_elems);
    for (size_t i = 0; i < cache_elems; i++)
        kc[i] = vc[i] = NAN;

    /* Write every token's K/V (sequences interleaved token by token: a ragged batch). */
    float *k = calloc((size_t)(n_tok * row), sizeof(float));
    float *v = calloc((size_t)(n_tok * row), sizeof(float));
    float *q = calloc((size_t)(n_tok * qrow), sizeof(float));
    float *want = calloc((size_t)(n_tok * qrow), sizeof(float));
    int32_t *tseq = calloc((size_t)n_tok, sizeof(int32_t));
    int32_t *tpos = calloc((size_t)n_tok, sizeof(int32_t));
    int64_t t = 0;
    for (int64_t p = 0; t < n_tok; p++)
        for (int s = 0; s < c->n_seqs; s++)
            if (p < c->len[s]) {
                memcpy(k + t * row, c->k[s] + p * row, sizeof(float) * (size_t)row);
                memcpy(v + t * row, c->v[s] + p * row, sizeof(float) * (size_t)row);
                tseq[t] = s;
                tpos[t] = (int32_t)p;
                t++;
            }
    wd_kv_write_ref(k, v, n_tok, tseq, tpos, seqs, PAGE_SIZE, WD_DTYPE_F32, row, row, kc, vc);

    /* Select the query tokens: all, or the last `tail` of each sequence. */
    int64_t n_q = 0;
    for (int64_t i = 0; i < n_tok; i++) {
        int s = tseq[i], p = tpos[i];
        if (tail && p < c->len[s] - tail)
            continue;
        memcpy(q + n_q * qrow, c->q[s] + (int64_t)p * qrow, sizeof(float) * (size_t)qrow);
        memcpy(want + n_q * qrow, c->out[s] + (int64_t)p * qrow, sizeof(float) * (size_t)qrow);
        tseq[n_q] = s;
        tpos[n_q] = p;
        n_q++;
    }
    float *out = malloc(sizeof(float) * (size_t)(n_q * qrow));
    wd_attention_gqa_ref(q, n_q, tseq, tpos, seqs, kc, vc, WD_DTYPE_F32, PAGE_SIZE, c->n_heads,
                         c->n_kv, c->head_dim, c->scale, out);
    wd_expect_close(what, out, want, n_q * qrow, 2e-6, 2e-5);
    /* The CPU backend's blocked pass: as close to HF, the same bits on any thread count,
     * and each token alone gives the bits it got in the batch. */
    float *fast = malloc(sizeof(float) * (size_t)(n_q * qrow));
    float *fast1 = malloc(sizeof(float) * (size_t)(n_q * qrow));
    struct wd_threadpool *tp = NULL;
    WD_EXPECT_EQ_INT(wd_threadpool_create(3, &tp), WD_OK);
    wd_attention_gqa_cpu(q, n_q, tseq, tpos, seqs, kc, vc, WD_DTYPE_F32, PAGE_SIZE, c->n_heads,
                         c->n_kv, c->head_dim, c->scale, fast, tp);
    wd_expect_close(what, fast, want, n_q * qrow, 2e-6, 2e-5);
    for (int64_t i = 0; i < n_q; i++)
        wd_attention_gqa_cpu(q + i * qrow, 1, tseq + i, tpos + i, seqs, kc, vc, WD_DTYPE_F32,
                             PAGE_SIZE, c->n_heads, c->n_kv, c->head_dim, c->scale,
                             fast1 + i * qrow, NULL);
    WD_EXPECT_MSG(memcmp(fast, fast1, sizeof(float) * (size_t)(n_q * qrow)) == 0,
                  "%s: a token's attention depends on its batch", what);
    wd_threadpool_destroy(tp);
    free(fast);
    free(fast1);
    free(kc);
    free(vc);
    free(k);
    free(v);
    free(q);
    free(want);
    free(tseq);
    free(tpos);
    free(out);
}

static void test_golden(void)
{
    struct wd_fixture *fx = wd_fixture_load("attn_gqa");
    struct gqa_case c;
    if (fx && load_case(fx, &c)) {
        run(&c, 0, "gqa prefill (all tokens)");
        run(&c, 1, "gqa decode (last token)");
        run(&c, 3, "gqa chunk (last 3)");
    } else {
        WD_EXPECT(!"attn_gqa fixture unusable");
    }
    wd_fixture_free(fx);
}

static void test_hand(void)
{
    /* One sequence, 2 positions, head_dim 1, 2 heads sharing 1 KV head; page_size 1 with
     * pages {5, 2}. Scores with q = (1, -1): k = (0, 2) -> softmax over (0, 2) and (0, -2). */
    int32_t pages[2] = {5, 2};
    struct wd_attn_seq seq = {.page_table = pages, .n_ctx = 2};
    float kc[8], vc[8];
    for (int i = 0; i < 8; i++)
        kc[i] = vc[i] = NAN;
    float k[2] = {0.0f, 2.0f}, v[2] = {10.0f, 20.0f};
    int32_t tseq[2] = {0, 0}, tpos[2] = {0, 1};
    wd_kv_write_ref(k, v, 2, tseq, tpos, &seq, 1, WD_DTYPE_F32, 1, 1, kc, vc);
    WD_EXPECT(kc[5] == 0.0f && kc[2] == 2.0f && vc[5] == 10.0f && vc[2] == 20.0f);
    float q[2] = {1.0f, -1.0f}, out[2];
    int32_t dpos = 1;
    wd_attention_gqa_ref(q, 1, tseq, &dpos, &seq, kc, vc, WD_DTYPE_F32, 1, 2, 1, 1, 1.0f, out);
    double p1 = 1.0 / (1.0 + exp(-2.0)), p2 = 1.0 / (1.0 + exp(2.0));
    WD_EXPECT_NEAR(out[0], 10 * (1 - p1) + 20 * p1, 1e-5);
    WD_EXPECT_NEAR(out[1], 10 * (1 - p2) + 20 * p2, 1e-5);
    /* Position 0 sees only itself. */
    wd_attention_gqa_ref(q, 1, tseq, tpos, &seq, kc, vc, WD_DTYPE_F32, 1, 2, 1, 1, 1.0f, out);
    WD_EXPECT(out[0] == 10.0f && out[1] == 10.0f);
    /* n_tokens 0: nothing read or written; MLA-style write without V. */
    wd_attention_gqa_ref(NULL, 0, NULL, NULL, NULL, NULL, NULL, WD_DTYPE_F32, 1, 2, 1, 1, 1.0f,
                         NULL);
    float lat[2] = {7.0f, 8.0f};
    wd_kv_write_ref(lat, NULL, 2, tseq, tpos, &seq, 1, WD_DTYPE_F32, 1, 0, kc, NULL);
    WD_EXPECT(kc[5] == 7.0f && kc[2] == 8.0f);
    /* Large scores stay finite thanks to the max subtraction. */
    float big_k[2] = {1000.0f, 1001.0f};
    wd_kv_write_ref(big_k, v, 2, tseq, tpos, &seq, 1, WD_DTYPE_F32, 1, 1, kc, vc);
    float qq[2] = {1.0f, 1.0f};
    wd_attention_gqa_ref(qq, 1, tseq, &dpos, &seq, kc, vc, WD_DTYPE_F32, 1, 2, 1, 1, 1.0f, out);
    double pe = 1.0 / (1.0 + exp(-1.0));
    WD_EXPECT_NEAR(out[0], 10 * (1 - pe) + 20 * pe, 1e-4);
}

/* Contexts over several key blocks, head sizes off the vector width, two sequences in one
 * ragged batch: the blocked pass against the reference, and a token's bits the same in the
 * whole batch, in chunks of 37 and alone. */
static void test_long(void)
{
    enum { PS = 16, PAGES = 40 };
    int lens[2] = {300, 130}, dims[2] = {72, 20};
    uint64_t rng = 99;
    for (int ci = 0; ci < 4; ci++) { /* head sizes x cache dtypes (f32, bf16) */
        int hd = dims[ci / 2], nh = 8, nkv = 2, row = nkv * hd, qrow = nh * hd;
        int32_t pages[2][PAGES / 2];
        struct wd_attn_seq seqs[2];
        for (int s = 0; s < 2; s++) {
            for (int p = 0; p < PAGES / 2; p++)
                pages[s][p] = (p * 7 + s * 3) % (PAGES / 2) * 2 + s; /* shuffled, interleaved */
            seqs[s].page_table = pages[s];
            seqs[s].n_ctx = lens[s];
        }
        int n = lens[0] + lens[1];
        float *kc = malloc(sizeof(float) * (size_t)PAGES * PS * row);
        float *vc = malloc(sizeof(float) * (size_t)PAGES * PS * row);
        float *q = malloc(sizeof(float) * (size_t)n * qrow);
        float *ref = malloc(sizeof(float) * (size_t)n * qrow);
        float *all = malloc(sizeof(float) * (size_t)n * qrow);
        float *part = malloc(sizeof(float) * (size_t)n * qrow);
        int32_t *tseq = malloc(sizeof(int32_t) * (size_t)n),
                *tpos = malloc(sizeof(int32_t) * (size_t)n);
        for (int i = 0; i < PAGES * PS * row; i++) {
            rng = rng * 6364136223846793005ull + 1442695040888963407ull;
            kc[i] = (float)((rng >> 40) % 2001) / 500.0f - 2.0f;
            vc[i] = (float)((rng >> 20) % 2001) / 1000.0f - 1.0f;
        }
        enum wd_dtype dt = ci % 2 ? WD_DTYPE_BF16 : WD_DTYPE_F32;
        uint16_t *kb = malloc(sizeof(uint16_t) * (size_t)PAGES * PS * row);
        uint16_t *vb = malloc(sizeof(uint16_t) * (size_t)PAGES * PS * row);
        for (int i = 0; i < PAGES * PS * row; i++) {
            kb[i] = wd_f32_to_bf16(kc[i]);
            vb[i] = wd_f32_to_bf16(vc[i]);
        }
        const void *kp = dt == WD_DTYPE_F32 ? (const void *)kc : kb;
        const void *vp = dt == WD_DTYPE_F32 ? (const void *)vc : vb;
        for (int i = 0; i < n * qrow; i++) {
            rng = rng * 6364136223846793005ull + 1442695040888963407ull;
            q[i] = (float)((rng >> 40) % 2001) / 1000.0f - 1.0f;
        }
        for (int t = 0; t < n; t++) { /* sequence 0's tokens, then sequence 1's */
            tseq[t] = t < lens[0] ? 0 : 1;
            tpos[t] = t < lens[0] ? t : t - lens[0];
        }
        float scale = 1.0f / sqrtf((float)hd);
        wd_attention_gqa_ref(q, n, tseq, tpos, seqs, kp, vp, dt, PS, nh, nkv, hd, scale, ref);
        struct wd_threadpool *tp = NULL;
        WD_EXPECT_EQ_INT(wd_threadpool_create(2, &tp), WD_OK);
        wd_attention_gqa_cpu(q, n, tseq, tpos, seqs, kp, vp, dt, PS, nh, nkv, hd, scale, all, tp);
        wd_expect_close("gqa long", all, ref, (int64_t)n * qrow, 1e-6, 1e-5);
        for (int t0 = 0; t0 < n; t0 += 37) {
            int c = n - t0 < 37 ? n - t0 : 37;
            wd_attention_gqa_cpu(q + (int64_t)t0 * qrow, c, tseq + t0, tpos + t0, seqs, kp, vp, dt,
                                 PS, nh, nkv, hd, scale, part + (int64_t)t0 * qrow,
                                 t0 % 2 ? tp : NULL);
        }
        WD_EXPECT_MSG(memcmp(all, part, sizeof(float) * (size_t)n * qrow) == 0,
                      "head_dim %d %s: chunked attention differs", hd, wd_dtype_name(dt));
        int t = lens[0] - 1;
        wd_attention_gqa_cpu(q + (int64_t)t * qrow, 1, tseq + t, tpos + t, seqs, kp, vp, dt, PS, nh,
                             nkv, hd, scale, part, NULL);
        WD_EXPECT(memcmp(part, all + (int64_t)t * qrow, sizeof(float) * (size_t)qrow) == 0);
        wd_threadpool_destroy(tp);
        free(kc);
        free(vc);
        free(kb);
        free(vb);
        free(q);
        free(ref);
        free(all);
        free(part);
        free(tseq);
        free(tpos);
    }
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
