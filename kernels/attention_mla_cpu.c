/* Fast CPU MLA: absorb W_UK, blocked flash pass over the latent cache, lift with W_UV. */
#include "kernels/attention_mla_cpu.h"

#include <string.h>

#include "common/util/status.h"
#include "kernels/attention_cpu.h"
#include "kernels/linear_cpu.h"

enum wd_dtype wd_mla_uk_dtype(const struct wd_weight *kv_b)
{
    return kv_b->dtype == WD_DTYPE_BF16 ? WD_DTYPE_BF16 : WD_DTYPE_F32;
}

/* uk_t[h][c][j] = kv_b[h * (nope + v) + j][c], as f32 or (kv_b BF16) its raw bf16 bits. */
static void transpose(const struct wd_weight *kv_b, int n_heads, int nope_dim, int v_dim,
                      int kv_lora_rank, enum wd_dtype dt, void *uk_t)
{
    float row[WD_MLA_MAX_RANK];
    WD_ASSERT(kv_lora_rank <= WD_MLA_MAX_RANK && kv_b->cols == kv_lora_rank);
    WD_ASSERT(dt == WD_DTYPE_F32 || kv_b->dtype == WD_DTYPE_BF16);
    for (int h = 0; h < n_heads; h++)
        for (int j = 0; j < nope_dim; j++) {
            int64_t r = (int64_t)h * (nope_dim + v_dim) + j;
            size_t at = (size_t)h * (size_t)kv_lora_rank * (size_t)nope_dim + (size_t)j;
            if (dt == WD_DTYPE_BF16) {
                const uint16_t *src = (const uint16_t *)kv_b->data + r * wd_weight_ld(kv_b);
                for (int c = 0; c < kv_lora_rank; c++)
                    ((uint16_t *)uk_t)[at + (size_t)c * (size_t)nope_dim] = src[c];
                continue;
            }
            wd_weight_row_f32(kv_b, r, row);
            for (int c = 0; c < kv_lora_rank; c++)
                ((float *)uk_t)[at + (size_t)c * (size_t)nope_dim] = row[c];
        }
}

void wd_mla_uk_transpose(const struct wd_weight *kv_b, int n_heads, int nope_dim, int v_dim,
                         int kv_lora_rank, float *uk_t)
{
    transpose(kv_b, n_heads, nope_dim, v_dim, kv_lora_rank, WD_DTYPE_F32, uk_t);
}

void wd_mla_uk_transpose_as(const struct wd_weight *kv_b, int n_heads, int nope_dim, int v_dim,
                            int kv_lora_rank, void *uk_t)
{
    transpose(kv_b, n_heads, nope_dim, v_dim, kv_lora_rank, wd_mla_uk_dtype(kv_b), uk_t);
}

int64_t wd_attention_mla_cpu_scratch(int64_t n_tokens, int n_heads, int kv_lora_rank, int rope_dim)
{
    return n_tokens * n_heads * (int64_t)(2 * kv_lora_rank + rope_dim);
}

/* One linear per head over every token, all heads in one pool pass: head h maps
 * x + h * x_head (token rows ldx apart) through w[h] into y + h * y_head (rows ldy apart). */
static void head_linears(const struct wd_weight *w, int n_heads, const float *x, int64_t x_head,
                         int64_t ldx, float *y, int64_t y_head, int64_t ldy, int64_t n,
                         struct wd_threadpool *tp)
{
    struct wd_linear_item items[WD_MLA_MAX_HEADS];
    for (int h = 0; h < n_heads; h++)
        items[h] = (struct wd_linear_item){
            .w = &w[h], .x = x + h * x_head, .n = n, .y = y + h * y_head, .ldx = ldx, .ldy = ldy};
    wd_linear_cpu_many(items, n_heads, tp);
}

/* The op with uk_t of dtype uk_dt. */
static void mla_run(const float *q, int64_t n_tokens, const int32_t *tok_seq,
                    const int32_t *tok_pos, const struct wd_attn_seq *seqs,
                    const void *latent_cache, enum wd_dtype dtype, int page_size, int n_heads,
                    int kv_lora_rank, int nope_dim, int rope_dim, int v_dim,
                    const struct wd_weight *kv_b, const void *uk_t, enum wd_dtype uk_dt,
                    float scale, float *scratch, float *out, struct wd_threadpool *tp)
{
    int lora = kv_lora_rank, row = lora + rope_dim, qd = nope_dim + rope_dim;
    WD_ASSERT(lora <= WD_MLA_MAX_RANK && n_heads <= WD_MLA_MAX_HEADS);
    WD_ASSERT(kv_b->rows == (int64_t)n_heads * (nope_dim + v_dim) && kv_b->cols == lora);
    if (n_tokens <= 0)
        return;
    float *q_abs = scratch;                            /* [n, heads, lora + rope] */
    float *o_lat = scratch + n_tokens * n_heads * row; /* [n, heads, lora] */
    struct wd_weight w[WD_MLA_MAX_HEADS];

    /* 1. q_abs = [W_UK_h^T q_nope | q_pe]: rows of uk_t's head block are latent channels. */
    for (int h = 0; h < n_heads; h++)
        w[h] = (struct wd_weight){.dtype = uk_dt,
                                  .data = (const char *)uk_t + (size_t)h * (size_t)lora *
                                                                   (size_t)nope_dim *
                                                                   wd_dtype_size(uk_dt),
                                  .rows = lora,
                                  .cols = nope_dim};
    head_linears(w, n_heads, q, qd, (int64_t)n_heads * qd, q_abs, row, (int64_t)n_heads * row,
                 n_tokens, tp);
    for (int64_t t = 0; t < n_tokens; t++)
        for (int h = 0; h < n_heads; h++)
            memcpy(q_abs + (t * n_heads + h) * row + lora, q + (t * n_heads + h) * qd + nope_dim,
                   sizeof(float) * (size_t)rope_dim);

    /* 2. One KV "head" shared by all heads: the latent row is the key, its c_kv the value. */
    struct wd_flash_args fa = {.q = q_abs,
                               .q_tok = (int64_t)n_heads * row,
                               .q_head = row,
                               .k = latent_cache,
                               .v = latent_cache,
                               .dtype = dtype,
                               .slot = row,
                               .kv_head = 0,
                               .dk = row,
                               .dv = lora,
                               .n_heads = n_heads,
                               .group = n_heads,
                               .tok_seq = tok_seq,
                               .tok_pos = tok_pos,
                               .seqs = seqs,
                               .page_size = page_size,
                               .scale = scale,
                               .out = o_lat,
                               .o_tok = (int64_t)n_heads * lora,
                               .o_head = lora,
                               .n_tokens = n_tokens};
    wd_flash_attention_cpu(&fa, tp);

    /* 3. out_h = W_UV_h o_lat_h. */
    for (int h = 0; h < n_heads; h++)
        w[h] = wd_weight_slice_rows(kv_b, (int64_t)h * (nope_dim + v_dim) + nope_dim, v_dim);
    head_linears(w, n_heads, o_lat, lora, (int64_t)n_heads * lora, out, v_dim,
                 (int64_t)n_heads * v_dim, n_tokens, tp);
}

void wd_attention_mla_cpu(const float *q, int64_t n_tokens, const int32_t *tok_seq,
                          const int32_t *tok_pos, const struct wd_attn_seq *seqs,
                          const void *latent_cache, enum wd_dtype dtype, int page_size, int n_heads,
                          int kv_lora_rank, int nope_dim, int rope_dim, int v_dim,
                          const struct wd_weight *kv_b, const float *uk_t, float scale,
                          float *scratch, float *out, struct wd_threadpool *tp)
{
    mla_run(q, n_tokens, tok_seq, tok_pos, seqs, latent_cache, dtype, page_size, n_heads,
            kv_lora_rank, nope_dim, rope_dim, v_dim, kv_b, uk_t, WD_DTYPE_F32, scale, scratch, out,
            tp);
}

void wd_attention_mla_cpu_uk(const float *q, int64_t n_tokens, const int32_t *tok_seq,
                             const int32_t *tok_pos, const struct wd_attn_seq *seqs,
                             const void *latent_cache, enum wd_dtype dtype, int page_size,
                             int n_heads, int kv_lora_rank, int nope_dim, int rope_dim, int v_dim,
                             const struct wd_weight *kv_b, const void *uk_t, float scale,
                             float *scratch, float *out, struct wd_threadpool *tp)
{
    mla_run(q, n_tokens, tok_seq, tok_pos, seqs, latent_cache, dtype, page_size, n_heads,
            kv_lora_rank, nope_dim, rope_dim, v_dim, kv_b, uk_t, wd_mla_uk_dtype(kv_b), scale,
            scratch, out, tp);
}
