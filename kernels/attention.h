/*
 * Causal grouped-query attention over a paged KV cache, and the KV write.
 *
 * The KV pool (owned by the engine) stores, per layer, K and V as
 * [n_slots, n_kv_heads, head_dim] in the cache dtype (fp32, or bf16 to halve the
 * memory; rows are widened to fp32 as they are read), slot = page_id * page_size + offset in
 * page. A sequence's pages are listed in order in its page table, so position
 * p of a sequence lives in slot page_table[p / page_size] * page_size +
 * p % page_size. A batch is ragged: every token names its sequence and
 * position, so prefill chunks and decode steps of many sequences share a call.
 */
#ifndef WD_KERNELS_ATTENTION_H
#define WD_KERNELS_ATTENTION_H

#include <stdint.h>

#include "kernels/dtype.h"

#ifdef __cplusplus
extern "C" {
#endif

struct wd_attn_seq {
    const int32_t *page_table; /* [ceil(n_ctx / page_size)] page ids of this sequence in order */
    int32_t n_ctx;             /* KV entries already written, this batch's new tokens included */
};

/* Slot of position `pos` of a sequence. */
static inline int64_t wd_attn_slot(const struct wd_attn_seq *seq, int32_t pos, int page_size)
{
    return (int64_t)seq->page_table[pos / page_size] * page_size + pos % page_size;
}

/* Row n elements of a cache of dtype (F32 or BF16) starting at element index `at`, as fp32:
 * a pointer into the cache for F32, else widened into buf [n] and buf returned. */
const float *wd_kv_row_f32(const void *cache, enum wd_dtype dtype, int64_t at, int n, float *buf);

/*
 * out[t][h] = softmax_s(scale * q[t][h] . K[s][h / group]) . V[s][h / group] over the
 * positions s = 0..tok_pos[t] of sequence tok_seq[t] (group = n_heads / n_kv_heads).
 * q: [n_tokens, n_heads, head_dim] f32; tok_seq, tok_pos: [n_tokens] i32 with
 * tok_pos[t] < seqs[tok_seq[t]].n_ctx; k_cache, v_cache: [n_slots, n_kv_heads, head_dim] in
 * dtype (F32 or BF16); out: [n_tokens, n_heads, head_dim] f32 (must not alias q). Softmax
 * in fp32 with the max subtracted. head_dim <= WD_ATTN_MAX_HEAD_DIM. No allocation.
 */
#define WD_ATTN_MAX_HEAD_DIM 1024
void wd_attention_gqa_ref(const float *q, int64_t n_tokens, const int32_t *tok_seq,
                          const int32_t *tok_pos, const struct wd_attn_seq *seqs,
                          const void *k_cache, const void *v_cache, enum wd_dtype dtype,
                          int page_size, int n_heads, int n_kv_heads, int head_dim, float scale,
                          float *out);

/*
 * Copies each token's new K (and V) row into its slot, rounding to the cache dtype.
 * k: [n_tokens, k_row] f32 (n_kv_heads * head_dim for GQA, or the latent width for MLA);
 * v: [n_tokens, v_row] f32; k_cache: [n_slots, k_row], v_cache: [n_slots, v_row] in dtype
 * (F32 or BF16). v and v_cache may both be NULL (MLA keeps one latent cache).
 */
void wd_kv_write_ref(const float *k, const float *v, int64_t n_tokens, const int32_t *tok_seq,
                     const int32_t *tok_pos, const struct wd_attn_seq *seqs, int page_size,
                     enum wd_dtype dtype, int k_row, int v_row, void *k_cache, void *v_cache);

#ifdef __cplusplus
}
#endif

#endif
