/*
 * The CPU backend's MLA: the math of wd_attention_mla_ref (weight-absorbed, paged
 * latent cache), made fast. W_UK is used transposed and dequantized once at load
 * (wd_mla_uk_transpose), so folding q_nope into the latent space is a plain
 * matrix-vector product instead of a strided walk over kv_b; the (token, head)
 * pairs run in parallel on the thread pool; W_UV goes through wd_linear_cpu.
 * Every (token, head) is computed the same way whatever the batch holds, so a
 * request's output does not depend on its neighbours.
 */
#ifndef WD_KERNELS_ATTENTION_MLA_CPU_H
#define WD_KERNELS_ATTENTION_MLA_CPU_H

#include <stdint.h>

#include "kernels/attention_mla.h"
#include "kernels/threadpool.h"
#include "kernels/weight.h"

/* Fills uk_t [n_heads * kv_lora_rank, nope_dim] f32 with W_UK_h^T of every head h:
 * uk_t[h][c][j] = kv_b[h * (nope + v) + j][c]. */
void wd_mla_uk_transpose(const struct wd_weight *kv_b, int n_heads, int nope_dim, int v_dim,
                         int kv_lora_rank, float *uk_t);

/* Same arguments and result as wd_attention_mla_ref, plus uk_t from wd_mla_uk_transpose
 * and a pool (NULL = this thread). */
void wd_attention_mla_cpu(const float *q, int64_t n_tokens, const int32_t *tok_seq,
                          const int32_t *tok_pos, const struct wd_attn_seq *seqs,
                          const void *latent_cache, enum wd_dtype dtype, int page_size, int n_heads,
                          int kv_lora_rank, int nope_dim, int rope_dim, int v_dim,
                          const struct wd_weight *kv_b, const float *uk_t, float scale, float *out,
                          struct wd_threadpool *tp);

#endif
