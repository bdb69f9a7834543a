/*
 * Reference paged GQA attention. Two passes over the context per (token, head):
 * the first finds the score maximum, the second accumulates exp(score - max)
 * weighted V rows straight into the output row. Recomputing the dot products
 * costs time but needs no score buffer, so the op never allocates.
 */
#include "kernels/attention.h"

#include <math.h>
#include <string.h>

#include "common/util/status.h"

static float dot(const float *a, const float *b, int n)
{
    float acc = 0.0f;
    for (int i = 0; i < n; i++)
        acc += a[i] * b[i];
    return acc;
}

void wd_attention_gqa_ref(const float *q, int64_t n_tokens, const int32_t *tok_seq,
                          const int32_t *tok_pos, const struct wd_attn_seq *seqs,
                          const float *k_cache, const float *v_cache, int page_size, int n_heads,
                          int n_kv_heads, int head_dim, float scale, float *out)
{
    WD_ASSERT(n_kv_heads > 0 && n_heads % n_kv_heads == 0);
    int group = n_heads / n_kv_heads;
    int64_t slot_elems = (int64_t)n_kv_heads * head_dim;

    for (int64_t t = 0; t < n_tokens; t++) {
        const struct wd_attn_seq *seq = &seqs[tok_seq[t]];
        int32_t last = tok_pos[t];
        WD_ASSERT(last >= 0 && last < seq->n_ctx);
        for (int h = 0; h < n_heads; h++) {
            const float *qh = q + (t * n_heads + h) * (int64_t)head_dim;
            float *oh = out + (t * n_heads + h) * (int64_t)head_dim;
            int64_t kv_off = (int64_t)(h / group) * head_dim;

            float m = -INFINITY;
            for (int32_t s = 0; s <= last; s++) {
                const float *k = k_cache + wd_attn_slot(seq, s, page_size) * slot_elems + kv_off;
                float sc = dot(qh, k, head_dim) * scale;
                if (sc > m)
                    m = sc;
            }
            float l = 0.0f;
            memset(oh, 0, sizeof(float) * (size_t)head_dim);
            for (int32_t s = 0; s <= last; s++) {
                int64_t base = wd_attn_slot(seq, s, page_size) * slot_elems + kv_off;
                float p = expf(dot(qh, k_cache + base, head_dim) * scale - m);
                l += p;
                const float *v = v_cache + base;
                for (int i = 0; i < head_dim; i++)
                    oh[i] += p * v[i];
            }
            float inv = 1.0f / l;
            for (int i = 0; i < head_dim; i++)
                oh[i] *= inv;
        }
    }
}

void wd_kv_write_ref(const float *k, const float *v, int64_t n_tokens, const int32_t *tok_seq,
                     const int32_t *tok_pos, const struct wd_attn_seq *seqs, int page_size,
                     int row_elems, float *k_cache, float *v_cache)
{
    size_t bytes = sizeof(float) * (size_t)row_elems;
    for (int64_t t = 0; t < n_tokens; t++) {
        int64_t slot = wd_attn_slot(&seqs[tok_seq[t]], tok_pos[t], page_size);
        memcpy(k_cache + slot * row_elems, k + t * row_elems, bytes);
        if (v && v_cache)
            memcpy(v_cache + slot * row_elems, v + t * row_elems, bytes);
    }
}
