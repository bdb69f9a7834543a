/*
 * get_dispatch_layout: one pass over the tokens; each token's row of
 * is_token_in_rank doubles as the "already counted for this rank" mark, so the
 * per-rank count is deduplicated without a second array.
 */
#include "common/ep/ep_layout.h"

#include <string.h>

enum wd_status wd_ep_get_dispatch_layout(const int32_t *topk_idx, int64_t n_tokens, int top_k,
                                         int n_experts, int n_ranks, int ranks_per_node,
                                         int32_t *num_tokens_per_rank, int32_t *num_tokens_per_node,
                                         int32_t *num_tokens_per_expert, uint8_t *is_token_in_rank,
                                         struct wd_error *err)
{
    if (n_ranks < 1 || n_experts < 1 || n_experts % n_ranks != 0)
        return wd_error_set(err, WD_ERR_INVALID,
                            "ep layout: %d experts do not split evenly over %d ranks", n_experts,
                            n_ranks);
    if (n_tokens < 0 || top_k < 0 || (n_tokens > 0 && top_k > 0 && !topk_idx))
        return wd_error_set(err, WD_ERR_INVALID, "ep layout: %lld tokens, top_k %d",
                            (long long)n_tokens, top_k);
    if (num_tokens_per_node && (ranks_per_node < 1 || n_ranks % ranks_per_node != 0))
        return wd_error_set(err, WD_ERR_INVALID,
                            "ep layout: %d ranks per node does not divide %d ranks", ranks_per_node,
                            n_ranks);
    int n_local = n_experts / n_ranks;
    int n_nodes = num_tokens_per_node ? n_ranks / ranks_per_node : 0;
    memset(num_tokens_per_rank, 0, (size_t)n_ranks * sizeof(int32_t));
    memset(num_tokens_per_expert, 0, (size_t)n_experts * sizeof(int32_t));
    if (num_tokens_per_node)
        memset(num_tokens_per_node, 0, (size_t)n_nodes * sizeof(int32_t));
    for (int64_t i = 0; i < n_tokens; i++) {
        uint8_t *in_rank = is_token_in_rank + i * n_ranks;
        memset(in_rank, 0, (size_t)n_ranks);
        for (int k = 0; k < top_k; k++) {
            int32_t e = topk_idx[i * top_k + k];
            if (e == -1)
                continue;
            if (e < -1 || e >= n_experts)
                return wd_error_set(err, WD_ERR_INVALID,
                                    "ep layout: token %lld slot %d selects expert %d (want -1 or "
                                    "0..%d)",
                                    (long long)i, k, e, n_experts - 1);
            num_tokens_per_expert[e]++;
            int r = e / n_local;
            if (!in_rank[r]) {
                in_rank[r] = 1;
                num_tokens_per_rank[r]++;
            }
        }
        for (int n = 0; n < n_nodes; n++) {
            for (int j = n * ranks_per_node; j < (n + 1) * ranks_per_node; j++) {
                if (in_rank[j]) {
                    num_tokens_per_node[n]++;
                    break;
                }
            }
        }
    }
    return WD_OK;
}
