/*
 * Blocked causal attention with an online softmax; see attention_cpu.h.
 *
 * A task is (a block of consecutive tokens, one KV head, a block of the heads that read
 * it). Inside, tokens are taken in runs of the same sequence; for each block of key
 * positions the slot pointers are looked up once, then every (token, head) query of the
 * run scores the block, folds it into its running max / sum / output, and moves on. Per
 * query: scores s_j = (q . k_j) * scale, each dot one 8-lane FMA chain reduced like
 * linear_cpu's; m' = max(m, max_j s_j); p_j = exp(s_j - m'); l = l exp(m - m') + sum_j p_j;
 * o = o exp(m - m') + sum_j p_j v_j (j ascending); finally o / l.
 */
#include "kernels/attention_cpu.h"

#include <math.h>
#include <string.h>

#include "common/util/status.h"
#include "kernels/linear_cpu.h"
#include "kernels/vec_cpu.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define WD_X86 1
#endif

#define MAX_DIM 4096
#define MAX_QUERIES 64         /* queries one task carries through the context */
#define ACC_FLOATS (16 * 1024) /* ... and their output accumulators (64 KiB) */
#define MAX_BLOCK 64
#define BLOCK_FLOATS (16 * 1024) /* a block of widened bf16 keys (or values), 64 KiB */

/* Key positions per block: 64, fewer for wide heads (32 for a 288-wide MLA latent row) so
 * a block stays in L2 while the task's queries use it and a widened bf16 block fits its
 * buffer. A function of the shape alone, never of the batch. */
static int block_len(int dk, int dv)
{
    int w = dk > dv ? dk : dv, bl = MAX_BLOCK;
    while (bl > 1 && bl * w > BLOCK_FLOATS)
        bl /= 2;
    return bl;
}

/* ---- portable kernels ---- */

/* s[j] = dot(q, k[j]) * scale: eight lanes over the columns, then a fixed tree. */
static void scores_portable(const float *q, const float *const *k, int nb, int dk, float scale,
                            float *s)
{
    for (int j = 0; j < nb; j++) {
        float p[8] = {0};
        int c = 0;
        for (; c + 8 <= dk; c += 8)
            for (int i = 0; i < 8; i++)
                p[i] += q[c + i] * k[j][c + i];
        float d = ((p[0] + p[4]) + (p[2] + p[6])) + ((p[1] + p[5]) + (p[3] + p[7]));
        for (; c < dk; c++)
            d += q[c] * k[j][c];
        s[j] = d * scale;
    }
}

/* o = o * corr + sum_j p[j] v[j] (corr 1: o unscaled). */
static void pv_portable(float *o, float corr, const float *p, const float *const *v, int nb, int dv)
{
    if (corr != 1.0f)
        for (int d = 0; d < dv; d++)
            o[d] *= corr;
    for (int j = 0; j < nb; j++)
        for (int d = 0; d < dv; d++)
            o[d] += p[j] * v[j][d];
}

/* ---- AVX2 / FMA kernels ---- */
#ifdef WD_X86
#define WD_AVX2 __attribute__((target("avx2,fma")))

WD_AVX2 static inline float hsum8(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* One key's dot: the chain, the tree, then the dk % 8 tail by fmaf. */
WD_AVX2 static inline float finish_dot(__m256 a, const float *q, const float *k, int c, int dk)
{
    float d = hsum8(a);
    for (; c < dk; c++)
        d = fmaf(q[c], k[c], d);
    return d;
}

/* Four keys at a time (four independent chains hide the FMA latency); a lone key runs
 * the same chain, so a score never depends on which keys share its group. */
WD_AVX2 static void scores_avx2(const float *q, const float *const *k, int nb, int dk, float scale,
                                float *s)
{
    int d8 = dk & ~7, j = 0;
    for (; j + 4 <= nb; j += 4) {
        const float *k0 = k[j], *k1 = k[j + 1], *k2 = k[j + 2], *k3 = k[j + 3];
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        for (int c = 0; c < d8; c += 8) {
            __m256 qv = _mm256_loadu_ps(q + c);
            a0 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k0 + c), a0);
            a1 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k1 + c), a1);
            a2 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k2 + c), a2);
            a3 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k3 + c), a3);
        }
        s[j] = finish_dot(a0, q, k0, d8, dk) * scale;
        s[j + 1] = finish_dot(a1, q, k1, d8, dk) * scale;
        s[j + 2] = finish_dot(a2, q, k2, d8, dk) * scale;
        s[j + 3] = finish_dot(a3, q, k3, d8, dk) * scale;
    }
    for (; j < nb; j++) {
        __m256 a = _mm256_setzero_ps();
        for (int c = 0; c < d8; c += 8)
            a = _mm256_fmadd_ps(_mm256_loadu_ps(q + c), _mm256_loadu_ps(k[j] + c), a);
        s[j] = finish_dot(a, q, k[j], d8, dk) * scale;
    }
}

/* o = o * corr + sum_j p[j] v[j], 64 output columns (8 registers) at a time. The loops
 * over the 8 registers are unrolled by pragma: rolled, GCC keeps a[] on the stack and
 * every FMA waits on a store and a reload (decode attention ran 3x slower). */
WD_AVX2 static void pv_avx2(float *o, float corr, const float *p, const float *const *v, int nb,
                            int dv)
{
    int d = 0;
    __m256 cv = _mm256_set1_ps(corr);
    for (; d + 64 <= dv; d += 64) {
        __m256 a[8];
#pragma GCC unroll 8
        for (int i = 0; i < 8; i++) {
            a[i] = _mm256_loadu_ps(o + d + 8 * i);
            if (corr != 1.0f)
                a[i] = _mm256_mul_ps(a[i], cv);
        }
        for (int j = 0; j < nb; j++) {
            __m256 pj = _mm256_set1_ps(p[j]);
            const float *vj = v[j] + d;
#pragma GCC unroll 8
            for (int i = 0; i < 8; i++)
                a[i] = _mm256_fmadd_ps(pj, _mm256_loadu_ps(vj + 8 * i), a[i]);
        }
#pragma GCC unroll 8
        for (int i = 0; i < 8; i++)
            _mm256_storeu_ps(o + d + 8 * i, a[i]);
    }
    for (; d + 8 <= dv; d += 8) {
        __m256 a = _mm256_loadu_ps(o + d);
        if (corr != 1.0f)
            a = _mm256_mul_ps(a, cv);
        for (int j = 0; j < nb; j++)
            a = _mm256_fmadd_ps(_mm256_set1_ps(p[j]), _mm256_loadu_ps(v[j] + d), a);
        _mm256_storeu_ps(o + d, a);
    }
    for (; d < dv; d++) {
        float a = corr != 1.0f ? o[d] * corr : o[d];
        for (int j = 0; j < nb; j++)
            a = fmaf(p[j], v[j][d], a);
        o[d] = a;
    }
}
#endif /* WD_X86 */

struct flash_job {
    const struct wd_flash_args *a;
    int64_t qb;    /* tokens per task */
    int hb;        /* heads per task */
    int n_hblocks; /* head blocks per KV head */
    int64_t n_tblocks;
    int n_kv;
    int is_avx2;
};

/* Folds key block [b0, b0 + nb) into one query's state. */
static void fold_block(const struct flash_job *j, const float *qv, const float *const *kp,
                       const float *const *vp, int nb, float *m, float *l, float *o)
{
    const struct wd_flash_args *a = j->a;
    float s[MAX_BLOCK];
#ifdef WD_X86
    if (j->is_avx2)
        scores_avx2(qv, kp, nb, a->dk, a->scale, s);
    else
#endif
        scores_portable(qv, kp, nb, a->dk, a->scale, s);
    float bm = s[0];
    for (int i = 1; i < nb; i++)
        bm = s[i] > bm ? s[i] : bm;
    float mn = bm > *m ? bm : *m;
    float corr = *m == -INFINITY ? 0.0f : *m == mn ? 1.0f : wd_vec_exp(*m - mn);
    float psum = wd_vec_exp_sum(s, nb, mn);
    *l = *l * corr + psum;
    *m = mn;
#ifdef WD_X86
    if (j->is_avx2) {
        pv_avx2(o, corr, s, vp, nb, a->dv);
        return;
    }
#endif
    pv_portable(o, corr, s, vp, nb, a->dv);
}

/* Tokens [ra, rb) of one sequence, heads [h0, h0 + nh) of KV head g. */
static void flash_run(const struct flash_job *j, int64_t ra, int64_t rb, int g, int h0, int nh,
                      float *m, float *l, float *acc, float *kbuf, float *vbuf)
{
    const struct wd_flash_args *a = j->a;
    const struct wd_attn_seq *seq = &a->seqs[a->tok_seq[ra]];
    int nq = (int)(rb - ra) * nh, bl = block_len(a->dk, a->dv);
    int32_t max_last = 0;
    for (int64_t t = ra; t < rb; t++) {
        WD_ASSERT(a->tok_pos[t] >= 0 && a->tok_pos[t] < seq->n_ctx);
        max_last = a->tok_pos[t] > max_last ? a->tok_pos[t] : max_last;
    }
    for (int i = 0; i < nq; i++) {
        m[i] = -INFINITY;
        l[i] = 0.0f;
    }
    memset(acc, 0, sizeof(float) * (size_t)nq * (size_t)a->dv);
    const float *kp[MAX_BLOCK], *vp[MAX_BLOCK];
    for (int32_t b0 = 0; b0 <= max_last; b0 += bl) {
        int nbm = max_last + 1 - b0 < bl ? max_last + 1 - b0 : bl;
        /* wd_attn_slot's page and offset, stepped instead of divided per position. */
        int32_t page = b0 / a->page_size, in_page = b0 % a->page_size;
        for (int i = 0; i < nbm; i++) {
            int64_t at = ((int64_t)seq->page_table[page] * a->page_size + in_page) * a->slot +
                         g * a->kv_head;
            if (++in_page == a->page_size) {
                in_page = 0;
                page++;
            }
            if (a->dtype == WD_DTYPE_F32) {
                kp[i] = (const float *)a->k + at;
                vp[i] = (const float *)a->v + at;
                continue;
            }
            kp[i] = wd_kv_row_f32(a->k, a->dtype, at, a->dk, kbuf + (int64_t)i * a->dk);
            vp[i] = a->v == a->k
                        ? kp[i]
                        : wd_kv_row_f32(a->v, a->dtype, at, a->dv, vbuf + (int64_t)i * a->dv);
        }
        for (int64_t t = ra; t < rb; t++) {
            int32_t last = a->tok_pos[t];
            if (last < b0)
                continue;
            int nb = last + 1 - b0 < bl ? last + 1 - b0 : bl;
            for (int h = h0; h < h0 + nh; h++) {
                int qi = (int)(t - ra) * nh + (h - h0);
                fold_block(j, a->q + t * a->q_tok + h * a->q_head, kp, vp, nb, &m[qi], &l[qi],
                           acc + (int64_t)qi * a->dv);
            }
        }
    }
    for (int64_t t = ra; t < rb; t++)
        for (int h = h0; h < h0 + nh; h++) {
            int qi = (int)(t - ra) * nh + (h - h0);
            const float *o = acc + (int64_t)qi * a->dv;
            float *dst = a->out + t * a->o_tok + h * a->o_head, inv = 1.0f / l[qi];
            for (int d = 0; d < a->dv; d++)
                dst[d] = o[d] * inv;
        }
}

static void flash_task(void *arg, int idx, int n_tasks)
{
    const struct flash_job *j = arg;
    const struct wd_flash_args *a = j->a;
    float m[MAX_QUERIES], l[MAX_QUERIES], acc[ACC_FLOATS], kbuf[BLOCK_FLOATS], vbuf[BLOCK_FLOATS];
    int per_tb = j->n_kv * j->n_hblocks;
    /* Last token blocks first: in a prefill they have the longest contexts. */
    int64_t tb = j->n_tblocks - 1 - idx / per_tb;
    int g = idx % per_tb / j->n_hblocks, hblk = idx % j->n_hblocks;
    int h0 = g * a->group + hblk * j->hb;
    int nh = a->group - hblk * j->hb < j->hb ? a->group - hblk * j->hb : j->hb;
    int64_t t0 = tb * j->qb, t1 = t0 + j->qb < a->n_tokens ? t0 + j->qb : a->n_tokens;
    for (int64_t ra = t0; ra < t1;) {
        int64_t rb = ra + 1;
        while (rb < t1 && a->tok_seq[rb] == a->tok_seq[ra])
            rb++;
        flash_run(j, ra, rb, g, h0, nh, m, l, acc, kbuf, vbuf);
        ra = rb;
    }
    (void)n_tasks;
}

void wd_flash_attention_cpu(const struct wd_flash_args *a, struct wd_threadpool *tp)
{
    WD_ASSERT(a->dk > 0 && a->dk <= MAX_DIM && a->dv > 0 && a->dv <= MAX_DIM);
    WD_ASSERT(a->group > 0 && a->n_heads % a->group == 0);
    WD_ASSERT(a->dtype == WD_DTYPE_F32 || a->dtype == WD_DTYPE_BF16);
    if (a->n_tokens <= 0)
        return;
    struct flash_job j = {
        .a = a, .n_kv = a->n_heads / a->group, .is_avx2 = wd_linear_cpu_has_avx2()};
    /* Queries per task: as many as the accumulators hold, heads of one KV head first. */
    int q = ACC_FLOATS / a->dv < MAX_QUERIES ? ACC_FLOATS / a->dv : MAX_QUERIES;
    q = q < 1 ? 1 : q;
    j.hb = a->group < q ? a->group : q;
    j.qb = q / j.hb > 0 ? q / j.hb : 1;
    /* Fewer queries per task until every thread has a few tasks (decode, short batches);
     * which queries share a task never changes their results. Tokens are split first;
     * heads only until every thread has one task, as each head block reads its KV head's
     * whole context again (in a long decode, that read costs more than the heads' math). */
    int threads = wd_threadpool_size(tp), want = threads * 4;
    for (;;) {
        j.n_tblocks = (a->n_tokens + j.qb - 1) / j.qb;
        j.n_hblocks = (a->group + j.hb - 1) / j.hb;
        int64_t tasks = j.n_tblocks * j.n_kv * j.n_hblocks;
        if (tasks >= want)
            break;
        if (j.qb > 1)
            j.qb = (j.qb + 1) / 2;
        else if (j.hb > 1 && tasks < threads)
            j.hb = (j.hb + 1) / 2;
        else
            break;
    }
    wd_threadpool_run(tp, flash_task, &j, (int)(j.n_tblocks * j.n_kv * j.n_hblocks));
}

void wd_attention_gqa_cpu(const float *q, int64_t n_tokens, const int32_t *tok_seq,
                          const int32_t *tok_pos, const struct wd_attn_seq *seqs,
                          const void *k_cache, const void *v_cache, enum wd_dtype dtype,
                          int page_size, int n_heads, int n_kv_heads, int head_dim, float scale,
                          float *out, struct wd_threadpool *tp)
{
    WD_ASSERT(n_kv_heads > 0 && n_heads % n_kv_heads == 0);
    struct wd_flash_args a = {.q = q,
                              .q_tok = (int64_t)n_heads * head_dim,
                              .q_head = head_dim,
                              .k = k_cache,
                              .v = v_cache,
                              .dtype = dtype,
                              .slot = (int64_t)n_kv_heads * head_dim,
                              .kv_head = head_dim,
                              .dk = head_dim,
                              .dv = head_dim,
                              .n_heads = n_heads,
                              .group = n_heads / n_kv_heads,
                              .tok_seq = tok_seq,
                              .tok_pos = tok_pos,
                              .seqs = seqs,
                              .page_size = page_size,
                              .scale = scale,
                              .out = out,
                              .o_tok = (int64_t)n_heads * head_dim,
                              .o_head = head_dim,
                              .n_tokens = n_tokens};
    wd_flash_attention_cpu(&a, tp);
}
