/*
 * MoE routers: from router logits to each token's top-k experts and weights.
 *  - Qwen3-MoE: softmax over experts, top-k, optional renormalization.
 *  - DeepSeek-V3 "noaux_tc": sigmoid scores, bias-corrected group-limited
 *    selection, unbiased weights, optional renormalization, routed scaling.
 * Ties pick the lower expert index first. Experts come out in descending
 * order of the score the selection used (HF's DeepSeek router returns them
 * unsorted; compare as sets).
 */
#ifndef WD_KERNELS_MOE_GATE_H
#define WD_KERNELS_MOE_GATE_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Largest n_group the grouped router accepts. */
#define WD_MOE_MAX_GROUPS 64
/* Most routed experts a router takes (the checkpoint config refuses more). */
#define WD_MOE_MAX_EXPERTS 4096

/*
 * Qwen3MoeTopKRouter: p = softmax(logits) in fp32, the top_k largest p, divided by
 * their sum when norm_topk_prob. logits: [n, n_experts] f32; topk_idx, topk_w: [n, top_k].
 * Requires 1 <= top_k <= n_experts <= WD_MOE_MAX_EXPERTS.
 */
void wd_moe_gate_softmax_topk_ref(const float *logits, int64_t n, int n_experts, int top_k,
                                  int norm_topk_prob, int32_t *topk_idx, float *topk_w);

/*
 * DeepseekV3TopkRouter: s = sigmoid(logits); choice = s + bias; a group's score is
 * the sum of its two largest choice values; the topk_group best groups stay; the
 * top_k experts by choice among them are picked; weights are their s (unbiased),
 * divided by (sum + 1e-20) when norm_topk_prob, times routed_scaling_factor.
 * logits: [n, n_experts] f32; bias: [n_experts] f32 or NULL;
 * topk_idx, topk_w: [n, top_k]. Requires n_experts <= WD_MOE_MAX_EXPERTS,
 * n_experts % n_group == 0,
 * 1 <= topk_group <= n_group <= WD_MOE_MAX_GROUPS and
 * top_k <= topk_group * (n_experts / n_group).
 */
void wd_moe_gate_sigmoid_grouped_ref(const float *logits, int64_t n, int n_experts, int top_k,
                                     int n_group, int topk_group, const float *bias,
                                     int norm_topk_prob, float routed_scaling_factor,
                                     int32_t *topk_idx, float *topk_w);

#ifdef __cplusplus
}
#endif

#endif
