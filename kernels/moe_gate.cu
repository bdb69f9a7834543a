/*
 * CUDA MoE routers: one thread per token running exactly the reference algorithm
 * (k passes of a strict-greater argmax, so ties go to the lower index). Routing is
 * a few thousand operations per token, small next to the expert matmuls.
 */
#include "kernels/cuda_check.h"
#include "kernels/cuda_ops.h"
#include "kernels/moe_gate.h"

static __device__ bool is_taken(const int32_t *idx, int n, int e)
{
    for (int i = 0; i < n; i++)
        if (idx[i] == e)
            return true;
    return false;
}

static __global__ void softmax_topk_kernel(const float *logits, int64_t n, int n_experts, int top_k,
                                           int norm, int32_t *topk_idx, float *topk_w)
{
    int64_t t = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= n)
        return;
    const float *l = logits + t * n_experts;
    int32_t idx[WD_CUDA_GATE_MAX_TOPK];
    float w[WD_CUDA_GATE_MAX_TOPK];
    float m = l[0], sum = 0.0f;
    for (int e = 1; e < n_experts; e++)
        m = l[e] > m ? l[e] : m;
    for (int e = 0; e < n_experts; e++)
        sum += expf(l[e] - m);
    for (int k = 0; k < top_k; k++) {
        int best = -1;
        float best_p = 0.0f;
        for (int e = 0; e < n_experts; e++) {
            float p = expf(l[e] - m) / sum;
            if (!is_taken(idx, k, e) && (best < 0 || p > best_p)) {
                best = e;
                best_p = p;
            }
        }
        idx[k] = best;
        w[k] = best_p;
    }
    float s = 0.0f;
    for (int k = 0; k < top_k; k++)
        s += w[k];
    for (int k = 0; k < top_k; k++) {
        topk_idx[t * top_k + k] = idx[k];
        topk_w[t * top_k + k] = norm ? w[k] / s : w[k];
    }
}

static __device__ float sigmoid(float x)
{
    return 1.0f / (1.0f + expf(-x));
}

static __global__ void sigmoid_grouped_kernel(const float *logits, int64_t n, int n_experts,
                                              int top_k, int n_group, int topk_group,
                                              const float *bias, int norm, float scaling,
                                              int32_t *topk_idx, float *topk_w)
{
    int64_t t = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= n)
        return;
    const float *l = logits + t * n_experts;
    int per_group = n_experts / n_group;
    float gscore[WD_MOE_MAX_GROUPS];
    int32_t gsel[WD_MOE_MAX_GROUPS], idx[WD_CUDA_GATE_MAX_TOPK];
    bool gkeep[WD_MOE_MAX_GROUPS];
    float w[WD_CUDA_GATE_MAX_TOPK];
    for (int g = 0; g < n_group; g++) {
        float a = -INFINITY, b = -INFINITY;
        for (int e = g * per_group; e < (g + 1) * per_group; e++) {
            float c = sigmoid(l[e]) + (bias ? bias[e] : 0.0f);
            if (c > a) {
                b = a;
                a = c;
            } else if (c > b) {
                b = c;
            }
        }
        gscore[g] = per_group >= 2 ? a + b : a;
        gkeep[g] = false;
    }
    for (int k = 0; k < topk_group; k++) {
        int best = -1;
        for (int g = 0; g < n_group; g++)
            if (!is_taken(gsel, k, g) && (best < 0 || gscore[g] > gscore[best]))
                best = g;
        gsel[k] = best;
        gkeep[best] = true;
    }
    float best_c = 0.0f;
    for (int k = 0; k < top_k; k++) {
        int best = -1;
        for (int e = 0; e < n_experts; e++) {
            if (!gkeep[e / per_group] || is_taken(idx, k, e))
                continue;
            float c = sigmoid(l[e]) + (bias ? bias[e] : 0.0f);
            if (best < 0 || c > best_c) {
                best = e;
                best_c = c;
            }
        }
        idx[k] = best;
        w[k] = sigmoid(l[best]);
    }
    float s = 0.0f;
    for (int k = 0; k < top_k; k++)
        s += w[k];
    s += 1e-20f;
    for (int k = 0; k < top_k; k++) {
        topk_idx[t * top_k + k] = idx[k];
        topk_w[t * top_k + k] = (norm ? w[k] / s : w[k]) * scaling;
    }
}

extern "C" enum wd_status wd_cuda_moe_gate_softmax_topk(const float *d_logits, int64_t n,
                                                        int n_experts, int top_k,
                                                        int norm_topk_prob, int32_t *d_idx,
                                                        float *d_w, void *stream)
{
    if (n <= 0)
        return WD_OK;
    if (top_k < 1 || top_k > n_experts || top_k > WD_CUDA_GATE_MAX_TOPK ||
        n_experts > WD_CUDA_GATE_MAX_EXPERTS)
        return WD_ERR_INVALID;
    softmax_topk_kernel<<<(unsigned)((n + 127) / 128), 128, 0, (cudaStream_t)stream>>>(
        d_logits, n, n_experts, top_k, norm_topk_prob, d_idx, d_w);
    WD_CUDA_CHECK(cudaGetLastError());
    return WD_OK;
}

extern "C" enum wd_status wd_cuda_moe_gate_sigmoid_grouped(const float *d_logits, int64_t n,
                                                           int n_experts, int top_k, int n_group,
                                                           int topk_group, const float *d_bias,
                                                           int norm_topk_prob,
                                                           float routed_scaling_factor,
                                                           int32_t *d_idx, float *d_w, void *stream)
{
    if (n <= 0)
        return WD_OK;
    if (n_group < 1 || n_group > WD_MOE_MAX_GROUPS || n_experts % n_group || topk_group < 1 ||
        topk_group > n_group || top_k < 1 || top_k > WD_CUDA_GATE_MAX_TOPK ||
        top_k > topk_group * (n_experts / n_group) || n_experts > WD_CUDA_GATE_MAX_EXPERTS)
        return WD_ERR_INVALID;
    sigmoid_grouped_kernel<<<(unsigned)((n + 127) / 128), 128, 0, (cudaStream_t)stream>>>(
        d_logits, n, n_experts, top_k, n_group, topk_group, d_bias, norm_topk_prob,
        routed_scaling_factor, d_idx, d_w);
    WD_CUDA_CHECK(cudaGetLastError());
    return WD_OK;
}
