/*
 * The CPU backend's MLA: the math of wd_attention_mla_ref (weight-absorbed, paged
 * latent cache), made fast in three passes over the pool:
 *  1. every head folds q_nope into the latent space with W_UK, used transposed and
 *     dequantized once at load (wd_mla_uk_transpose): a GEMM over the tokens;
 *  2. the blocked flash pass of attention_cpu.h, every head reading the one latent
 *     row of a position as its key ([c_kv | k_pe] against [q_lat | q_pe]) and the
 *     c_kv part as its value;
 *  3. W_UV (rows of kv_b) lifts each head's latent output back: a GEMM again.
 * Every (token, head) is computed the same way whatever the batch holds, so a
 * request's output does not depend on its neighbours.
 */
#ifndef WD_KERNELS_ATTENTION_MLA_CPU_H
#define WD_KERNELS_ATTENTION_MLA_CPU_H

#include <stdint.h>

#include "kernels/attention_mla.h"
#include "kernels/threadpool.h"
#include "kernels/weight.h"

/* Most heads one call takes (a stack array of weight views per head). */
#define WD_MLA_MAX_HEADS 256

/* Fills uk_t [n_heads * kv_lora_rank, nope_dim] f32 with W_UK_h^T of every head h:
 * uk_t[h][c][j] = kv_b[h * (nope + v) + j][c]. */
void wd_mla_uk_transpose(const struct wd_weight *kv_b, int n_heads, int nope_dim, int v_dim,
                         int kv_lora_rank, float *uk_t);

/* The dtype uk_t is kept in for kv_b: BF16 when kv_b is BF16 (the same values, half the
 * bytes a decode step reads, and the same bits out: the linear kernels share one order),
 * F32 (dequantized) otherwise. */
enum wd_dtype wd_mla_uk_dtype(const struct wd_weight *kv_b);

/* wd_mla_uk_transpose into uk_t of dtype wd_mla_uk_dtype(kv_b). */
void wd_mla_uk_transpose_as(const struct wd_weight *kv_b, int n_heads, int nope_dim, int v_dim,
                            int kv_lora_rank, void *uk_t);

/* Floats of scratch wd_attention_mla_cpu needs for n_tokens. */
int64_t wd_attention_mla_cpu_scratch(int64_t n_tokens, int n_heads, int kv_lora_rank, int rope_dim);

/* Same arguments and result as wd_attention_mla_ref, plus uk_t from wd_mla_uk_transpose,
 * scratch [wd_attention_mla_cpu_scratch(...)] f32 and a pool (NULL = this thread). */
void wd_attention_mla_cpu(const float *q, int64_t n_tokens, const int32_t *tok_seq,
                          const int32_t *tok_pos, const struct wd_attn_seq *seqs,
                          const void *latent_cache, enum wd_dtype dtype, int page_size, int n_heads,
                          int kv_lora_rank, int nope_dim, int rope_dim, int v_dim,
                          const struct wd_weight *kv_b, const float *uk_t, float scale,
                          float *scratch, float *out, struct wd_threadpool *tp);

/* The same with uk_t from wd_mla_uk_transpose_as (dtype wd_mla_uk_dtype(kv_b)). */
void wd_attention_mla_cpu_uk(const float *q, int64_t n_tokens, const int32_t *tok_seq,
                             const int32_t *tok_pos, const struct wd_attn_seq *seqs,
                             const void *latent_cache, enum wd_dtype dtype, int page_size,
                             int n_heads, int kv_lora_rank, int nope_dim, int rope_dim, int v_dim,
                             const struct wd_weight *kv_b, const void *uk_t, float scale,
                             float *scratch, float *out, struct wd_threadpool *tp);

#endif
