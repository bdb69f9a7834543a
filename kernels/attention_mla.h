/*
 * DeepSeek multi-head latent attention (MLA), weight-absorbed, over a paged
 * latent cache.
 *
 * The latent cache holds per layer [n_slots, kv_lora_rank + rope_dim] f32: the
 * first kv_lora_rank values are kv_a_layernorm(c_kv), the rest k_pe after RoPE
 * (same slot rule as attention.h). With W_UK_h = rows [h*(nope+v), h*(nope+v)+nope)
 * and W_UV_h = rows [h*(nope+v)+nope, (h+1)*(nope+v)) of kv_b_proj, head h scores
 * position s as (q_nope_h . W_UK_h c_kv(s) + q_pe_h . k_pe(s)) * scale and outputs
 * sum_s p(s) W_UV_h c_kv(s). The op computes it absorbed: q_nope_h^T W_UK_h is a
 * kv_lora_rank vector dotted with every c_kv(s), and W_UV_h is applied once to
 * sum_s p(s) c_kv(s). That equals HF's expanded form up to fp32 rounding while
 * never materializing per-head keys or values.
 */
#ifndef WD_KERNELS_ATTENTION_MLA_H
#define WD_KERNELS_ATTENTION_MLA_H

#include <stdint.h>

#include "kernels/attention.h"
#include "kernels/weight.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Largest kv_lora_rank the reference accepts (it keeps two rank vectors on the stack). */
#define WD_MLA_MAX_RANK 2048

/*
 * q: [n_tokens, n_heads, nope_dim + rope_dim] f32, q_nope then q_pe (already roped);
 * tok_seq, tok_pos, seqs: as in wd_attention_gqa_ref;
 * latent_cache: [n_slots, kv_lora_rank + rope_dim] in dtype (F32 or BF16);
 * kv_b: [n_heads * (nope_dim + v_dim), kv_lora_rank] any weight dtype;
 * out: [n_tokens, n_heads, v_dim] f32. kv_lora_rank <= WD_MLA_MAX_RANK. No allocation.
 */
void wd_attention_mla_ref(const float *q, int64_t n_tokens, const int32_t *tok_seq,
                          const int32_t *tok_pos, const struct wd_attn_seq *seqs,
                          const void *latent_cache, enum wd_dtype dtype, int page_size, int n_heads,
                          int kv_lora_rank, int nope_dim, int rope_dim, int v_dim,
                          const struct wd_weight *kv_b, float scale, float *out);

#ifdef __cplusplus
}
#endif

#endif
