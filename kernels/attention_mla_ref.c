/*
 * Reference absorbed MLA. Per (token, head): fold q_nope into the latent space
 * through W_UK, score every cached position with one latent dot plus one rope
 * dot, softmax in two passes (max, then exp-weighted latent sum), and lift the
 * averaged latent back through W_UV.
 */
#include "kernels/attention_mla.h"

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

void wd_attention_mla_ref(const float *q, int64_t n_tokens, const int32_t *tok_seq,
                          const int32_t *tok_pos, const struct wd_attn_seq *seqs,
                          const void *latent_cache, enum wd_dtype dtype, int page_size, int n_heads,
                          int kv_lora_rank, int nope_dim, int rope_dim, int v_dim,
                          const struct wd_weight *kv_b, float scale, float *out)
{
    float q_lat[WD_MLA_MAX_RANK], o_lat[WD_MLA_MAX_RANK], buf[WD_MLA_MAX_RANK + 1024];
    int q_dim = nope_dim + rope_dim, row_elems = kv_lora_rank + rope_dim;
    WD_ASSERT(kv_lora_rank <= WD_MLA_MAX_RANK && rope_dim <= 1024);
    WD_ASSERT(kv_b->rows == (int64_t)n_heads * (nope_dim + v_dim) && kv_b->cols == kv_lora_rank);

    for (int64_t t = 0; t < n_tokens; t++) {
        const struct wd_attn_seq *seq = &seqs[tok_seq[t]];
        int32_t last = tok_pos[t];
        WD_ASSERT(last >= 0 && last < seq->n_ctx);
        for (int h = 0; h < n_heads; h++) {
            const float *q_nope = q + (t * n_heads + h) * (int64_t)q_dim;
            const float *q_pe = q_nope + nope_dim;
            int64_t uk_row = (int64_t)h * (nope_dim + v_dim), uv_row = uk_row + nope_dim;

            /* q_lat = W_UK_h^T q_nope: what q_nope becomes in the latent space. */
            memset(q_lat, 0, sizeof(float) * (size_t)kv_lora_rank);
            for (int j = 0; j < nope_dim; j++)
                for (int c = 0; c < kv_lora_rank; c++)
                    q_lat[c] += q_nope[j] * wd_weight_get(kv_b, uk_row + j, c);

            float m = -INFINITY;
            for (int32_t s = 0; s <= last; s++) {
                const float *lat =
                    wd_kv_row_f32(latent_cache, dtype, wd_attn_slot(seq, s, page_size) * row_elems,
                                  row_elems, buf);
                float sc =
                    (dot(q_lat, lat, kv_lora_rank) + dot(q_pe, lat + kv_lora_rank, rope_dim)) *
                    scale;
                if (sc > m)
                    m = sc;
            }
            float l = 0.0f;
            memset(o_lat, 0, sizeof(float) * (size_t)kv_lora_rank);
            for (int32_t s = 0; s <= last; s++) {
                const float *lat =
                    wd_kv_row_f32(latent_cache, dtype, wd_attn_slot(seq, s, page_size) * row_elems,
                                  row_elems, buf);
                float sc =
                    (dot(q_lat, lat, kv_lora_rank) + dot(q_pe, lat + kv_lora_rank, rope_dim)) *
                    scale;
                float p = expf(sc - m);
                l += p;
                for (int c = 0; c < kv_lora_rank; c++)
                    o_lat[c] += p * lat[c];
            }

            float *oh = out + (t * n_heads + h) * (int64_t)v_dim;
            float inv = 1.0f / l;
            for (int j = 0; j < v_dim; j++) {
                float acc = 0.0f;
                for (int c = 0; c < kv_lora_rank; c++)
                    acc += wd_weight_get(kv_b, uv_row + j, c) * o_lat[c];
                oh[j] = acc * inv;
            }
        }
    }
}
