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

const float *wd_kv_row_f32(const void *cache, enum wd_dtype dtype, int64_t at, int n, float *buf)
{
    if (dtype == WD_DTYPE_F32)
        return (const float *)cache + at;
    WD_ASSERT(dtype == WD_DTYPE_BF16);
    wd_dtype_to_f32(WD_DTYPE_BF16, (const uint16_t *)cache + at, buf, (size_t)n);
    return buf;
}

void wd_attention_gqa_ref(const float *q, int64_t n_tokens, const int32_t *tok_seq,
                          const int32_t *tok_pos, const struct wd_attn_seq *seqs,
                          const void *k_cache, const void *v_cache, enum wd_dtype dtype,
                          int page_size, int n_heads, int n_kv_heads, int head_dim, float scale,
                          float *out)
{
    WD_ASSERT(n_kv_heads > 0 && n_heads % n_kv_heads == 0 && head_dim <= WD_ATTN_MAX_HEAD_DIM);
    int group = n_heads / n_kv_heads;
    int64_t slot_elems = (int64_t)n_kv_heads * head_dim;
    float kbuf[WD_ATTN_MAX_HEAD_DIM], vbuf[WD_ATTN_MAX_HEAD_DIM];

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
                int64_t at = wd_attn_slot(seq, s, page_size) * slot_elems + kv_off;
                float sc =
                    dot(qh, wd_kv_row_f32(k_cache, dtype, at, head_dim, kbuf), head_dim) * scale;
                if (sc > m)
                    m = sc;
            }
            float l = 0.0f;
            memset(oh, 0, sizeof(float) * (size_t)head_dim);
            for (int32_t s = 0; s <= last; s++) {
                int64_t at = wd_attn_slot(seq, s, page_size) * slot_elems + kv_off;
                const float *k = wd_kv_row_f32(k_cache, dtype, at, head_dim, kbuf);
                float p = expf(dot(qh, k, head_dim) * scale - m);
                l += p;
                const float *v = wd_kv_row_f32(v_cache, dtype, at, head_dim, vbuf);
                for (int i = 0; i < head_dim; i++)
                    oh[i] += p * v[i];
            }
            float inv = 1.0f / l;
            for (int i = 0; i < head_dim; i++)
                oh[i] *= inv;
        }
    }
}

/* Stores row n f32 values at element index at of a cache of dtype. */
static void store_row(void *cache, enum wd_dtype dtype, int64_t at, const float *src, int n)
{
    if (dtype == WD_DTYPE_F32) {
        memcpy((float *)cache + at, src, sizeof(float) * (size_t)n);
        return;
    }
    uint16_t *dst = (uint16_t *)cache + at;
    for (int i = 0; i < n; i++)
        dst[i] = wd_f32_to_bf16(src[i]);
}

void wd_kv_write_ref(const float *k, const float *v, int64_t n_tokens, const int32_t *tok_seq,
                     const int32_t *tok_pos, const struct wd_attn_seq *seqs, int page_size,
                     enum wd_dtype dtype, int k_row, int v_row, void *k_cache, void *v_cache)
{
    WD_ASSERT(dtype == WD_DTYPE_F32 || dtype == WD_DTYPE_BF16);
    for (int64_t t = 0; t < n_tokens; t++) {
        int64_t slot = wd_attn_slot(&seqs[tok_seq[t]], tok_pos[t], page_size);
        store_row(k_cache, dtype, slot * k_row, k + t * k_row, k_row);
        if (v && v_cache)
            store_row(v_cache, dtype, slot * v_row, v + t * v_row, v_row);
    }
}
