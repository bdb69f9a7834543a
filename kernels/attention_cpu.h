/*
 * The CPU backend's attention: one blocked, flash-style pass over the paged KV
 * cache for GQA (Qwen3) and, through the same core, MLA's latent attention
 * (kernels/attention_mla_cpu.c).
 *
 * Each query walks its context in fixed blocks of positions [0, B), [B, 2B), ...
 * with an online softmax (running max and sum, the output rescaled when the max
 * grows), so nothing of size context is materialized and a block of keys and
 * values, once loaded, serves every query of a task: the heads sharing a KV head
 * and a run of consecutive tokens of the same sequence. B depends only on the
 * head size, and every query's arithmetic is the same whichever task or thread
 * runs it: a token's output does not depend on its batch or on chunked prefill. A bf16
 * cache is widened block by block (exactly), so it costs no extra rounding.
 * Results equal wd_attention_gqa_ref up to fp32 rounding (exp is kernels/vec_cpu's).
 */
#ifndef WD_KERNELS_ATTENTION_CPU_H
#define WD_KERNELS_ATTENTION_CPU_H

#include <stdint.h>

#include "kernels/attention.h"
#include "kernels/threadpool.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A causal attention problem in strided form: query (t, h) is q + t * q_tok + h * q_head
 * [dk]; the key and value of KV head g at cache slot s are k + s * slot + g * kv_head [dk]
 * and v + s * slot + g * kv_head [dv]; head h reads KV head h / group; the output (t, h)
 * is out + t * o_tok + h * o_head [dv]. Keys and values may overlap (MLA: one latent row). */
struct wd_flash_args {
    const float *q;
    int64_t q_tok, q_head;
    const void *k, *v;   /* in dtype; k == v: one row holds both (MLA: v at the row's start) */
    enum wd_dtype dtype; /* F32, or BF16 (a block's rows are widened once per task) */
    int64_t slot, kv_head;
    int dk, dv, n_heads, group;
    const int32_t *tok_seq, *tok_pos; /* [n_tokens], as in wd_attention_gqa_ref */
    const struct wd_attn_seq *seqs;
    int page_size;
    float scale; /* multiplies q . k */
    float *out;
    int64_t o_tok, o_head;
    int64_t n_tokens;
};

/* Runs the problem on the pool (tp may be NULL). dk, dv <= 4096; no allocation. */
void wd_flash_attention_cpu(const struct wd_flash_args *a, struct wd_threadpool *tp);

/* Same arguments and result as wd_attention_gqa_ref, plus a pool (NULL = this thread). */
void wd_attention_gqa_cpu(const float *q, int64_t n_tokens, const int32_t *tok_seq,
                          const int32_t *tok_pos, const struct wd_attn_seq *seqs,
                          const void *k_cache, const void *v_cache, enum wd_dtype dtype,
                          int page_size, int n_heads, int n_kv_heads, int head_dim, float scale,
                          float *out, struct wd_threadpool *tp);

#ifdef __cplusplus
}
#endif

#endif
