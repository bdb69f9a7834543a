/*
 * The CPU backend: the reference ops and the threaded fast paths behind the backend
 * table. The KV cache is fp32 or bf16; attention reads bf16 rows widened to fp32 (exact),
 * and kv_write rounds fp32 to bf16 (nearest even), which is where the bf16 cache's only
 * error comes from.
 */
#include "kernels/backend.h"

#include "common/util/status.h"
#include "kernels/attention_cpu.h"
#include "kernels/attention_mla_cpu.h"
#include "kernels/embedding.h"
#include "kernels/linear_cpu.h"
#include "kernels/mlp_cpu.h"
#include "kernels/moe_gate.h"
#include "kernels/rmsnorm.h"
#include "kernels/vec_cpu.h"

static void cpu_embedding(void *ctx, const struct wd_weight *table, const int32_t *ids, int64_t n,
                          float *out)
{
    wd_embedding_ref(table, ids, n, out);
}

static void cpu_linear(void *ctx, const struct wd_weight *w, const float *x, int64_t n, float *y)
{
    wd_linear_cpu(w, x, n, y, ctx);
}

static void cpu_linear_many(void *ctx, const struct wd_linear_item *items, int n_items)
{
    wd_linear_cpu_many(items, n_items, ctx);
}

static void cpu_rmsnorm(void *ctx, const float *x, const float *gamma, int64_t n, int64_t dim,
                        float eps, float *y)
{
    wd_rmsnorm_ref(x, gamma, n, dim, eps, y);
}

static void cpu_rope(void *ctx, const struct wd_rope *rope, float *x, int64_t n, int n_heads,
                     int head_stride, int off, const int32_t *pos)
{
    wd_rope_apply_ref(rope, x, n, n_heads, head_stride, off, pos);
}

static void cpu_silu_mul(void *ctx, const float *gate, const float *up, int64_t n, float *out)
{
    wd_vec_silu_mul(gate, up, n, out);
}

static void cpu_mlp(void *ctx, const struct wd_mlp_group *groups, int n_groups)
{
    wd_mlp_cpu(groups, n_groups, ctx);
}

static void cpu_add(void *ctx, float *x, const float *y, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        x[i] += y[i];
}

static void cpu_kv_write(void *ctx, const float *k, const float *v, const struct wd_attn_batch *b,
                         const struct wd_kv_layer *kv)
{
    wd_kv_write_ref(k, v, b->n_tokens, b->tok_seq, b->tok_pos, b->seqs, kv->page_size, kv->dtype,
                    kv->k_row, kv->v_row, kv->k, kv->v);
}

static void cpu_attention_gqa(void *ctx, const float *q, const struct wd_attn_batch *b,
                              const struct wd_kv_layer *kv, int n_heads, int n_kv_heads,
                              int head_dim, float scale, float *out)
{
    wd_attention_gqa_cpu(q, b->n_tokens, b->tok_seq, b->tok_pos, b->seqs, kv->k, kv->v, kv->dtype,
                         kv->page_size, n_heads, n_kv_heads, head_dim, scale, out, ctx);
}

static void cpu_attention_mla(void *ctx, const float *q, const struct wd_attn_batch *b,
                              const struct wd_kv_layer *kv, const struct wd_mla_args *a, float *out)
{
    wd_attention_mla_cpu_uk(q, b->n_tokens, b->tok_seq, b->tok_pos, b->seqs, kv->k, kv->dtype,
                            kv->page_size, a->n_heads, a->kv_lora_rank, a->nope_dim, a->rope_dim,
                            a->v_dim, a->kv_b, a->uk_t, a->scale, a->scratch, out, ctx);
}

static void cpu_gate_softmax(void *ctx, const float *logits, int64_t n, int n_experts, int top_k,
                             int norm_topk_prob, int32_t *topk_idx, float *topk_w)
{
    wd_moe_gate_softmax_topk_ref(logits, n, n_experts, top_k, norm_topk_prob, topk_idx, topk_w);
}

static void cpu_gate_sigmoid(void *ctx, const float *logits, int64_t n, int n_experts, int top_k,
                             int n_group, int topk_group, const float *bias, int norm_topk_prob,
                             float routed_scaling_factor, int32_t *topk_idx, float *topk_w)
{
    wd_moe_gate_sigmoid_grouped_ref(logits, n, n_experts, top_k, n_group, topk_group, bias,
                                    norm_topk_prob, routed_scaling_factor, topk_idx, topk_w);
}

static const struct wd_backend_ops cpu_ops = {
    .embedding = cpu_embedding,
    .linear = cpu_linear,
    .linear_many = cpu_linear_many,
    .rmsnorm = cpu_rmsnorm,
    .rope = cpu_rope,
    .silu_mul = cpu_silu_mul,
    .mlp = cpu_mlp,
    .add = cpu_add,
    .kv_write = cpu_kv_write,
    .attention_gqa = cpu_attention_gqa,
    .attention_mla = cpu_attention_mla,
    .moe_gate_softmax_topk = cpu_gate_softmax,
    .moe_gate_sigmoid_grouped = cpu_gate_sigmoid,
};

void wd_backend_cpu_init(struct wd_backend *be, struct wd_threadpool *tp)
{
    be->name = "cpu";
    be->ops = &cpu_ops;
    be->ctx = tp;
}
