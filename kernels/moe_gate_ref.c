/*
 * Reference MoE routers. Top-k is k passes of a strict-greater argmax over the
 * experts not yet taken: O(k * E) per token, which for E <= 256 and k <= 8 is
 * cheaper than sorting and makes the tie rule (lower index wins) obvious. Each
 * expert's probability (or biased score) is computed once per token into a stack
 * buffer, not once per pass (8x fewer expf: this runs on the engine thread while the
 * pool waits, ~8 us per token and layer on Qwen3-MoE-mid before).
 */
#include "kernels/moe_gate.h"

#include <math.h>

#include "common/util/status.h"

static int is_taken(const int32_t *idx, int n, int e)
{
    for (int i = 0; i < n; i++)
        if (idx[i] == e)
            return 1;
    return 0;
}

void wd_moe_gate_softmax_topk_ref(const float *logits, int64_t n, int n_experts, int top_k,
                                  int norm_topk_prob, int32_t *topk_idx, float *topk_w)
{
    WD_ASSERT(top_k >= 1 && top_k <= n_experts && n_experts <= WD_MOE_MAX_EXPERTS);
    for (int64_t t = 0; t < n; t++) {
        const float *l = logits + t * n_experts;
        int32_t *idx = topk_idx + t * top_k;
        float *w = topk_w + t * top_k;
        float m = l[0], sum = 0.0f;
        for (int e = 1; e < n_experts; e++)
            m = l[e] > m ? l[e] : m;
        float prob[WD_MOE_MAX_EXPERTS];
        for (int e = 0; e < n_experts; e++) {
            prob[e] = expf(l[e] - m);
            sum += prob[e];
        }
        for (int e = 0; e < n_experts; e++)
            prob[e] /= sum;
        /* Rank on the rounded probabilities, not the logits: two close logits can round
         * to the same probability, and then the lower index must win as in the spec. */
        for (int k = 0; k < top_k; k++) {
            int best = -1;
            float best_p = 0.0f;
            for (int e = 0; e < n_experts; e++) {
                float p = prob[e];
                if (!is_taken(idx, k, e) && (best < 0 || p > best_p)) {
                    best = e;
                    best_p = p;
                }
            }
            idx[k] = best;
            w[k] = best_p;
        }
        if (norm_topk_prob) {
            float s = 0.0f;
            for (int k = 0; k < top_k; k++)
                s += w[k];
            for (int k = 0; k < top_k; k++)
                w[k] /= s;
        }
    }
}

static float sigmoid(float x)
{
    return 1.0f / (1.0f + expf(-x));
}

void wd_moe_gate_sigmoid_grouped_ref(const float *logits, int64_t n, int n_experts, int top_k,
                                     int n_group, int topk_group, const float *bias,
                                     int norm_topk_prob, float routed_scaling_factor,
                                     int32_t *topk_idx, float *topk_w)
{
    WD_ASSERT(n_group >= 1 && n_group <= WD_MOE_MAX_GROUPS && n_experts % n_group == 0);
    WD_ASSERT(n_experts <= WD_MOE_MAX_EXPERTS);
    WD_ASSERT(topk_group >= 1 && topk_group <= n_group);
    int per_group = n_experts / n_group;
    WD_ASSERT(top_k >= 1 && top_k <= topk_group * per_group);

    for (int64_t t = 0; t < n; t++) {
        const float *l = logits + t * n_experts;
        int32_t *idx = topk_idx + t * top_k;
        float *w = topk_w + t * top_k;
        float gscore[WD_MOE_MAX_GROUPS];
        int32_t gsel[WD_MOE_MAX_GROUPS];
        unsigned char gkeep[WD_MOE_MAX_GROUPS] = {0};

        float score[WD_MOE_MAX_EXPERTS];
        for (int e = 0; e < n_experts; e++)
            score[e] = sigmoid(l[e]) + (bias ? bias[e] : 0.0f);
        /* Group score: the sum of the two largest bias-corrected scores in the group. */
        for (int g = 0; g < n_group; g++) {
            float a = -INFINITY, b = -INFINITY;
            for (int e = g * per_group; e < (g + 1) * per_group; e++) {
                float c = score[e];
                if (c > a) {
                    b = a;
                    a = c;
                } else if (c > b) {
                    b = c;
                }
            }
            gscore[g] = per_group >= 2 ? a + b : a;
        }
        for (int k = 0; k < topk_group; k++) {
            int best = -1;
            for (int g = 0; g < n_group; g++)
                if (!is_taken(gsel, k, g) && (best < 0 || gscore[g] > gscore[best]))
                    best = g;
            gsel[k] = best;
            gkeep[best] = 1;
        }

        float best_c = 0.0f;
        for (int k = 0; k < top_k; k++) {
            int best = -1;
            for (int e = 0; e < n_experts; e++) {
                if (!gkeep[e / per_group] || is_taken(idx, k, e))
                    continue;
                float c = score[e];
                if (best < 0 || c > best_c) {
                    best = e;
                    best_c = c;
                }
            }
            idx[k] = best;
            w[k] = sigmoid(l[best]);
        }
        if (norm_topk_prob) {
            float s = 0.0f;
            for (int k = 0; k < top_k; k++)
                s += w[k];
            s += 1e-20f;
            for (int k = 0; k < top_k; k++)
                w[k] /= s;
        }
        for (int k = 0; k < top_k; k++)
            w[k] *= routed_scaling_factor;
    }
}
