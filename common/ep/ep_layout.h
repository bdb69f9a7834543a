/*
 * get_dispatch_layout (SPEC-EP section 2): from each token's top-k expert ids
 * to the per-rank and per-expert counts and the token -> rank routing mask that
 * normal-mode dispatch is built on. A pure function of topk_idx, run on one
 * rank's tokens; no communication. Experts live in contiguous blocks: expert e
 * is on rank e / (n_experts / n_ranks).
 */
#ifndef WD_EP_LAYOUT_H
#define WD_EP_LAYOUT_H

#include <stdint.h>

#include "common/util/status.h"

/*
 * Counts, for the n_tokens tokens of this rank:
 *  - num_tokens_per_rank[j]: tokens with at least one selected expert on rank j (a token
 *    picking three experts of rank j counts once);
 *  - num_tokens_per_node[n] (optional, NULL to skip): tokens with at least one selected
 *    expert on some rank of node n = j / ranks_per_node (DeepEP's num_tokens_per_rdma_rank;
 *    ranks_per_node must divide n_ranks, DeepEP's is 8);
 *  - num_tokens_per_expert[e]: (token, slot) pairs with topk_idx == e;
 *  - is_token_in_rank[i, j]: 1 iff some slot of token i selects an expert of rank j.
 * topk_idx: [n_tokens, top_k] global expert ids, -1 = the slot selects nothing.
 * num_tokens_per_rank: [n_ranks]; num_tokens_per_node: [n_ranks / ranks_per_node];
 * num_tokens_per_expert: [n_experts]; is_token_in_rank: [n_tokens, n_ranks] 0/1.
 * WD_ERR_INVALID (outputs unspecified) for n_experts % n_ranks != 0, an id outside
 * [-1, n_experts) (the message names token and slot) or bad sizes.
 */
enum wd_status wd_ep_get_dispatch_layout(const int32_t *topk_idx, int64_t n_tokens, int top_k,
                                         int n_experts, int n_ranks, int ranks_per_node,
                                         int32_t *num_tokens_per_rank, int32_t *num_tokens_per_node,
                                         int32_t *num_tokens_per_expert, uint8_t *is_token_in_rank,
                                         struct wd_error *err);

#endif
