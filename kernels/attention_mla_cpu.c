/* Fast CPU MLA: one task per (token, head), two-pass softmax over the latent cache. */
#include "kernels/attention_mla_cpu.h"

#include <math.h>
#include <string.h>

#include "common/util/status.h"
#include "kernels/linear_cpu.h"

void wd_mla_uk_transpose(const struct wd_weight *kv_b, int n_heads, int nope_dim, int v_dim,
                         int kv_lora_rank, float *uk_t)
{
    float row[WD_MLA_MAX_RANK];
    WD_ASSERT(kv_lora_rank <= WD_MLA_MAX_RANK && kv_b->cols == kv_lora_rank);
    for (int h = 0; h < n_heads; h++)
        for (int j = 0; j < nope_dim; j++) {
            wd_weight_row_f32(kv_b, (int64_t)h * (nope_dim + v_dim) + j, row);
            float *dst = uk_t + (size_t)h * (size_t)kv_lora_rank * (size_t)nope_dim + j;
            for (int c = 0; c < kv_lora_rank; c++)
                dst[(size_t)c * (size_t)nope_dim] = row[c];
        }
}

/* Eight independent partial sums: vectorizes on any SIMD width, and the order is fixed. */
static float dot(const float *a, const float *b, int n)
{
    float p[8] = {0};
    int i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++)
            p[k] += a[i + k] * b[i + k];
    float s = ((p[0] + p[1]) + (p[2] + p[3])) + ((p[4] + p[5]) + (p[6] + p[7]));
    for (; i < n; i++)
        s += a[i] * b[i];
    return s;
}

struct mla_job {
    const float *q;
    const int32_t *tok_seq, *tok_pos;
    const struct wd_attn_seq *seqs;
    const void *cache;
    enum wd_dtype dtype;
    int page_size, n_heads, lora, nope, rope, v;
    const struct wd_weight *kv_b;
    const float *uk_t;
    float scale;
    float *out;
    int64_t n_pairs;
};

static void mla_pair(const struct mla_job *j, int64_t pair)
{
    float q_lat[WD_MLA_MAX_RANK], o_lat[WD_MLA_MAX_RANK], buf[WD_MLA_MAX_RANK + 1024];
    int64_t t = pair / j->n_heads;
    int h = (int)(pair % j->n_heads), row = j->lora + j->rope;
    const struct wd_attn_seq *seq = &j->seqs[j->tok_seq[t]];
    int32_t last = j->tok_pos[t];
    const float *q_nope = j->q + (t * j->n_heads + h) * (int64_t)(j->nope + j->rope);
    const float *q_pe = q_nope + j->nope;

    /* q_lat = W_UK_h^T q_nope: rows of uk_t are latent channels. */
    struct wd_weight uk = {.dtype = WD_DTYPE_F32,
                           .data = j->uk_t + (size_t)h * (size_t)j->lora * (size_t)j->nope,
                           .rows = j->lora,
                           .cols = j->nope};
    wd_linear_cpu(&uk, q_nope, 1, q_lat, NULL);

    float m = -INFINITY;
    for (int32_t s = 0; s <= last; s++) {
        const float *lat =
            wd_kv_row_f32(j->cache, j->dtype, wd_attn_slot(seq, s, j->page_size) * row, row, buf);
        float sc = (dot(q_lat, lat, j->lora) + dot(q_pe, lat + j->lora, j->rope)) * j->scale;
        m = sc > m ? sc : m;
    }
    float l = 0.0f;
    memset(o_lat, 0, sizeof(float) * (size_t)j->lora);
    for (int32_t s = 0; s <= last; s++) {
        const float *lat =
            wd_kv_row_f32(j->cache, j->dtype, wd_attn_slot(seq, s, j->page_size) * row, row, buf);
        float sc = (dot(q_lat, lat, j->lora) + dot(q_pe, lat + j->lora, j->rope)) * j->scale;
        float p = expf(sc - m);
        l += p;
        for (int c = 0; c < j->lora; c++)
            o_lat[c] += p * lat[c];
    }
    float inv = 1.0f / l;
    for (int c = 0; c < j->lora; c++)
        o_lat[c] *= inv;
    struct wd_weight uv =
        wd_weight_slice_rows(j->kv_b, (int64_t)h * (j->nope + j->v) + j->nope, j->v);
    wd_linear_cpu(&uv, o_lat, 1, j->out + (t * j->n_heads + h) * (int64_t)j->v, NULL);
}

static void mla_task(void *arg, int idx, int n_tasks)
{
    const struct mla_job *j = arg;
    int64_t per = (j->n_pairs + n_tasks - 1) / n_tasks;
    int64_t begin = per * idx, end = begin + per < j->n_pairs ? begin + per : j->n_pairs;
    for (int64_t p = begin; p < end; p++)
        mla_pair(j, p);
}

void wd_attention_mla_cpu(const float *q, int64_t n_tokens, const int32_t *tok_seq,
                          const int32_t *tok_pos, const struct wd_attn_seq *seqs,
                          const void *latent_cache, enum wd_dtype dtype, int page_size, int n_heads,
                          int kv_lora_rank, int nope_dim, int rope_dim, int v_dim,
                          const struct wd_weight *kv_b, const float *uk_t, float scale, float *out,
                          struct wd_threadpool *tp)
{
    WD_ASSERT(kv_lora_rank <= WD_MLA_MAX_RANK && rope_dim <= 1024);
    struct mla_job job = {.q = q,
                          .tok_seq = tok_seq,
                          .tok_pos = tok_pos,
                          .seqs = seqs,
                          .cache = latent_cache,
                          .dtype = dtype,
                          .page_size = page_size,
                          .n_heads = n_heads,
                          .lora = kv_lora_rank,
                          .nope = nope_dim,
                          .rope = rope_dim,
                          .v = v_dim,
                          .kv_b = kv_b,
                          .uk_t = uk_t,
                          .scale = scale,
                          .out = out,
                          .n_pairs = n_tokens * n_heads};
    if (job.n_pairs <= 0)
        return;
    int n_tasks = tp ? wd_threadpool_size(tp) * 4 : 1;
    if (n_tasks > job.n_pairs)
        n_tasks = (int)job.n_pairs;
    wd_threadpool_run(tp, mla_task, &job, n_tasks);
}
