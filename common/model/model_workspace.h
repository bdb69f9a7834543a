/*
 * The activation workspace of a wd_model: every buffer one forward needs,
 * sized once from the config and max_batch_tokens (T) and carved from a single
 * allocation, so the forward pass never allocates. Internal to common/model.
 */
#ifndef WD_MODEL_WORKSPACE_H
#define WD_MODEL_WORKSPACE_H

#include <stdint.h>

#include "common/util/status.h"

struct wd_model;

struct wd_model_workspace {
    void *block;       /* the one allocation everything below points into */
    float *x;          /* [T, H] residual stream */
    float *h;          /* [T, H] normed input of a sub-layer */
    float *out;        /* [T, H] sub-layer output */
    float *q;          /* [T, heads * qk_head_dim] */
    float *q_a;        /* [T, q_lora_rank] (MLA with q compression) */
    float *k;          /* [T, kv_heads * head_dim] (GQA) or [T, kv_lora + rope] latent (MLA) */
    float *v;          /* [T, kv_heads * head_dim] (GQA) */
    float *attn;       /* [T, heads * v_head_dim] */
    float *mla;        /* [T, heads, 2 * kv_lora + rope] CPU MLA scratch (absorbed q, latent out) */
    float *router;     /* [T, E] router logits */
    int32_t *topk_idx; /* [T, top_k] */
    float *topk_w;     /* [T, top_k] */
    int32_t *e_count;  /* [E + 1] assignments per expert, then prefix offsets */
    int32_t *e_token;  /* [T * top_k] token of each assignment, grouped by expert */
    float *e_weight;   /* [T * top_k] routing weight of each assignment */
    float *e_in;       /* [T, H] gathered rows for one expert */
    float *e_out;      /* [T, H] expert output rows */
    float *mlp_tmp;    /* [T, 2 * I_max] gate and up activations */
    float *sel;        /* [max_logit_rows, H] rows whose logits are wanted */
    /* MoE / dense buffers hold G = T * attn_dp rows: with DP attention the tokens of every
     * DP rank are gathered there (G = T otherwise). router..mlp_tmp above are G-sized. */
    float *g_h;        /* [G, H] gathered layer inputs */
    float *g_out;      /* [G, H] gathered layer outputs */
    int32_t *a2a_idx;  /* [T, top_k] routing of the rows this rank dispatches (DeepEP) */
    int32_t *phys_idx; /* [G, top_k] EPLB: the physical slots the rows are routed to */
    float *a2a_w;      /* [T, top_k] */
    float *mode_vote;  /* [1 + WD_MODEL_MAX_RANKS] the forward's mode agreement */
    int low_latency;   /* this forward's DeepEP mode, agreed by every rank */
};

enum wd_status wd_model_workspace_create(const struct wd_model *model,
                                         struct wd_model_workspace **ws_p, struct wd_error *err);
void wd_model_workspace_destroy(struct wd_model_workspace *ws);

#endif
