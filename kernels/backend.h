/*
 * wd_backend: the op table the forward pass calls (ggml's backend pattern), so the model
 * code is written once and a device backend plugs in by filling the same table. Each op
 * has the contract of the reference op it is named after (kernels/<op>.h); activations
 * are fp32 [rows, width] buffers the backend can address (host memory for the CPU
 * backend). The KV cache of one layer is passed as a wd_kv_layer view so the cache dtype
 * (fp32 or bf16) is the backend's business, not the model's.
 *
 * The CPU backend (wd_backend_cpu) runs the reference ops, with the threaded fast paths
 * (kernels/linear_cpu.h, mlp_cpu.h, attention_cpu.h, attention_mla_cpu.h, vec_cpu.h) where
 * they exist. It owns nothing: its context is the model's thread pool.
 */
#ifndef WD_KERNELS_BACKEND_H
#define WD_KERNELS_BACKEND_H

#include <stdint.h>

#include "kernels/attention.h"
#include "kernels/dtype.h"
#include "kernels/linear.h"
#include "kernels/mlp.h"
#include "kernels/rope.h"
#include "kernels/threadpool.h"
#include "kernels/weight.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One layer of a paged KV cache: slot = page_id * page_size + offset. */
struct wd_kv_layer {
    void *k;             /* [n_slots, k_row] K rows, or the MLA latent rows */
    void *v;             /* [n_slots, v_row] V rows; NULL for MLA */
    enum wd_dtype dtype; /* WD_DTYPE_F32 or WD_DTYPE_BF16 */
    int page_size;
    int k_row, v_row; /* elements per slot */
};

/* The tokens of one ragged batch as attention sees them (see kernels/attention.h). */
struct wd_attn_batch {
    int64_t n_tokens;
    const int32_t *tok_seq; /* [n_tokens] */
    const int32_t *tok_pos; /* [n_tokens] */
    const struct wd_attn_seq *seqs;
};

/* MLA's shapes and weights (DeepSeek-V3), see kernels/attention_mla_cpu.h. */
struct wd_mla_args {
    int n_heads, kv_lora_rank, nope_dim, rope_dim, v_dim;
    const struct wd_weight *kv_b; /* [heads * (nope + v), kv_lora_rank] */
    const void *uk_t; /* [heads * kv_lora_rank, nope] W_UK transposed (wd_mla_uk_dtype) */
    float scale;
    /* CPU: [wd_attention_mla_cpu_scratch(n_tokens, ...)] f32 the op may use (absorbed queries,
     * latent outputs); a backend with its own buffers ignores it. */
    float *scratch;
};

struct wd_backend_ops {
    void (*embedding)(void *ctx, const struct wd_weight *table, const int32_t *ids, int64_t n,
                      float *out);
    void (*linear)(void *ctx, const struct wd_weight *w, const float *x, int64_t n, float *y);
    /* Several independent linears (kernels/linear.h), e.g. the projections of one input,
     * scheduled together. */
    void (*linear_many)(void *ctx, const struct wd_linear_item *items, int n_items);
    void (*rmsnorm)(void *ctx, const float *x, const float *gamma, int64_t n, int64_t dim,
                    float eps, float *y);
    void (*rope)(void *ctx, const struct wd_rope *rope, float *x, int64_t n, int n_heads,
                 int head_stride, int off, const int32_t *pos);
    void (*silu_mul)(void *ctx, const float *gate, const float *up, int64_t n, float *out);
    /* Every group's y = down(silu(gate x) * up x) (kernels/mlp.h): a MoE layer's experts in
     * one call, so a backend can schedule them together. */
    void (*mlp)(void *ctx, const struct wd_mlp_group *groups, int n_groups);
    /* x[i] += y[i] */
    void (*add)(void *ctx, float *x, const float *y, int64_t n);
    /* Writes each token's K (and V) row, [n_tokens, k_row] / [n_tokens, v_row] f32, into its
     * slot of kv, converting to the cache dtype. v is NULL for MLA. */
    void (*kv_write)(void *ctx, const float *k, const float *v, const struct wd_attn_batch *b,
                     const struct wd_kv_layer *kv);
    void (*attention_gqa)(void *ctx, const float *q, const struct wd_attn_batch *b,
                          const struct wd_kv_layer *kv, int n_heads, int n_kv_heads, int head_dim,
                          float scale, float *out);
    void (*attention_mla)(void *ctx, const float *q, const struct wd_attn_batch *b,
                          const struct wd_kv_layer *kv, const struct wd_mla_args *a, float *out);
    void (*moe_gate_softmax_topk)(void *ctx, const float *logits, int64_t n, int n_experts,
                                  int top_k, int norm_topk_prob, int32_t *topk_idx, float *topk_w);
    void (*moe_gate_sigmoid_grouped)(void *ctx, const float *logits, int64_t n, int n_experts,
                                     int top_k, int n_group, int topk_group, const float *bias,
                                     int norm_topk_prob, float routed_scaling_factor,
                                     int32_t *topk_idx, float *topk_w);
};

struct wd_backend {
    const char *name; /* "cpu" */
    const struct wd_backend_ops *ops;
    void *ctx;
};

/* The CPU backend over a thread pool (borrowed; NULL runs single-threaded). */
void wd_backend_cpu_init(struct wd_backend *be, struct wd_threadpool *tp);

#ifdef __cplusplus
}
#endif

#endif
