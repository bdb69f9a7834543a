/*
 * wd_model: a loaded checkpoint (Qwen3-MoE or DeepSeek-V3) and its forward pass.
 *
 * The model owns the memory-mapped safetensors, the bound weight views (in the
 * checkpoint dtype; FP8 with block scales), small vectors converted to fp32
 * once (norms, router bias), and the activation workspace sized at creation
 * for at most max_batch_tokens tokens per forward. wd_model_forward runs one
 * ragged batch over a paged KV pool: the layer sequence is written once for
 * both architectures (common/model/forward.c); the attention kind (GQA or MLA)
 * and the MLP kind (dense or MoE) are chosen per layer from the config.
 * One model is driven by one thread at a time (the scheduler's).
 */
#ifndef WD_MODEL_H
#define WD_MODEL_H

#include <stdint.h>

#include "common/config/model_config.h"
#include "common/ep/eplb_dispatch.h"
#include "common/ep/eplb_location.h"
#include "common/ep/expert_recorder.h"
#include "common/model/expert_store.h"
#include "common/kv/kv_pool.h"
#include "common/model/safetensors.h"
#include "common/util/arena.h"
#include "common/util/status.h"
#include "kernels/attention.h"
#include "kernels/backend.h"
#include "kernels/rope.h"
#include "kernels/threadpool.h"
#include "kernels/weight.h"

/* Which part of the model this rank holds (all sizes 0 or 1 = the whole model).
 * Attention heads split attn_tp ways (KV heads too when there are enough, else each rank
 * keeps the one its query heads use); routed experts split in contiguous blocks of
 * E / moe_ep per rank, each expert's intermediate dimension split moe_tp ways; dense MLP
 * layers and shared experts split dense_tp ways. Embedding, router and LM head are whole.
 * With DP attention (attn_dp > 1) the MoE layers, and dense layers split over more than one
 * rank, see the tokens of every DP rank: the forward gathers them over the group, runs the
 * layer on all of them and keeps its own rows, and a DP rank with no work still runs an
 * empty forward so the others' collectives complete. */
struct wd_model_shard {
    int attn_dp_size, attn_dp_rank; /* DP attention: each DP rank runs its own batch */
    int attn_tp_size, attn_tp_rank;
    int moe_ep_size, moe_ep_rank;
    int moe_tp_size, moe_tp_rank;
    int dense_tp_size, dense_tp_rank;
};

/* Most attention-DP ranks of one instance (the gathers size a small array by it). */
#define WD_MODEL_MAX_DP 1024
/* Most ranks of one instance (the DeepEP mode vote has one slot per rank). */
#define WD_MODEL_MAX_RANKS 4096

/* The groups whose partial sums the forward pass reduces. */
enum wd_model_group {
    WD_GROUP_ATTN_TP = 0, /* ranks splitting one batch's attention heads */
    WD_GROUP_MOE,         /* ranks splitting the experts (the TP group: every DP rank) */
    WD_GROUP_DENSE,       /* ranks splitting the dense MLP / shared experts */
};

/* How a sharded forward talks to the other ranks: the hook sums buf [n] over the group's
 * ranks in place, bit-identically on each. Unused (NULL) for a whole model. */
struct wd_model_comm {
    void *ctx;
    enum wd_status (*all_reduce)(void *ctx, enum wd_model_group group, float *buf, size_t n,
                                 struct wd_error *err);
    /* DeepEP-style all-to-all (NULL: the all-reduce backend). out [n, H] = sum_k w[i,k] *
     * Expert_{idx[i,k]}(x[i]) over the MoE-EP group: the rows travel to the ranks holding
     * their experts, which call run_expert for each of their local experts, and come back.
     * low_latency picks DeepEP's low-latency mode (decode) over normal mode (prefill); every
     * rank of the group gets the same value for the same call. Collective. */
    enum wd_status (*moe_a2a)(void *ctx, const float *x, int64_t n, const int32_t *topk_idx,
                              const float *topk_w, int low_latency,
                              enum wd_status (*run_expert)(void *ectx, int local_expert,
                                                           const float *x, int n, float *y,
                                                           struct wd_error *err),
                              void *ectx, float *out, struct wd_error *err);
    int deepep_mode;   /* 0 auto (low latency for decode batches), 1 normal, 2 low latency */
    int ll_max_tokens; /* low-latency mode's tokens per rank per call (DeepEP's M) */
};

/* EPLB placement (borrowed; loc NULL = experts in contiguous blocks, no replicas). The rank
 * holds physical slots [ep_rank * P / ep, ...) of loc (P = loc->n_physical) and owns their
 * weights (an expert store), which a rebalance overwrites. Routing maps each row's logical
 * experts to physical slots with dispatch[source] (one table per attention-DP rank with the
 * all-reduce backend, where every rank must pick the same replica for a row; one, the rank's
 * own, with the all-to-all backend). */
struct wd_model_eplb {
    const struct wd_eplb_location *loc;
    struct wd_eplb_dispatch *const *dispatch;
    int n_dispatch;
};

struct wd_forward_batch;

/* Called by the forward after layer `layer` wrote the batch's KV rows into the pool, before
 * the next layer runs (a prefill server starts sending that layer's pages while the rest of
 * the forward computes). Runs on the forward's thread; must not call back into the model. */
struct wd_model_layer_hook {
    void (*fn)(void *ctx, int layer, const struct wd_forward_batch *batch);
    void *ctx;
};

struct wd_model_options {
    int max_batch_tokens; /* most tokens in one forward (>= chunked prefill size + batch) */
    int max_logit_rows;   /* most rows of logits one forward returns */
    int n_threads;        /* CPU threads for the linear layers; 0 = online CPUs */
    struct wd_model_shard shard;
    struct wd_model_comm comm;
    /* Borrowed, may be NULL: every forward pass reports its routing here (EPLB input). */
    struct wd_expert_recorder *recorder;
    struct wd_model_eplb eplb;
    struct wd_model_layer_hook layer_hook; /* optional */
    /* 1: the forward streams the weights from the checkpoint's mapping. 0 (default): from
     * one huge-page copy made at load (faster decode on CPU, the weights' size in RAM). */
    int is_weights_mapped;
};

struct wd_attn_weights {
    /* Qwen3 (GQA) */
    struct wd_weight q_proj, k_proj, v_proj; /* [heads*hd, H], [kv*hd, H], [kv*hd, H] */
    float *q_norm, *k_norm;                  /* [head_dim] */
    /* DeepSeek-V3 (MLA) */
    struct wd_weight q_a_proj, q_b_proj; /* q_proj (above) when q_lora_rank == 0 */
    float *q_a_norm;                     /* [q_lora_rank] */
    struct wd_weight kv_a_proj;          /* [kv_lora_rank + rope, H] */
    float *kv_a_norm;                    /* [kv_lora_rank] */
    struct wd_weight kv_b_proj;          /* [heads*(nope+v), kv_lora_rank] */
    void *uk_t; /* [heads * kv_lora_rank, nope] W_UK transposed, wd_mla_uk_dtype (CPU MLA) */
    struct wd_weight o_proj; /* [H, heads*v] */
};

struct wd_mlp_weights {
    struct wd_weight gate, up, down; /* [I, H], [I, H], [H, I] */
};

struct wd_layer_weights {
    float *input_norm, *post_attn_norm; /* [H] */
    struct wd_attn_weights attn;
    int is_moe;
    struct wd_mlp_weights dense;    /* dense MLP layers */
    struct wd_weight router;        /* [E, H] */
    float *router_bias;             /* [E] DeepSeek e_score_correction_bias, else NULL */
    struct wd_mlp_weights *experts; /* [E_local]: experts [expert_begin, expert_end) */
    int has_shared;
    struct wd_mlp_weights shared; /* DeepSeek shared experts (fused: I = moe_I * n_shared) */
};

struct wd_model_workspace;

struct wd_model {
    struct wd_model_config cfg;
    struct wd_model_options opt;
    struct wd_safetensors *st;
    struct wd_weight embed;   /* [vocab, H] */
    struct wd_weight lm_head; /* [vocab, H] (the embedding when tied) */
    float *final_norm;        /* [H] */
    struct wd_layer_weights *layers;
    float *inv_freq; /* [rot_dim / 2] */
    struct wd_rope rope;
    float attn_scale; /* softmax scale, YaRN mscale included */
    int qk_head_dim;  /* per-head q/k width: head_dim, or nope + rope for MLA */
    int v_head_dim;
    struct wd_model_shard shard;  /* normalized: every size >= 1 */
    int n_heads;                  /* attention heads on this rank */
    int n_kv_heads;               /* GQA KV heads on this rank */
    int expert_begin, expert_end; /* routed experts (physical slots with EPLB) of this rank */
    struct wd_expert_store *experts_store; /* EPLB: the owned weights of those slots */
    struct wd_arena *arena; /* converted small vectors, FP8 scales, realigned tensors */
    struct wd_threadpool *tp;
    struct wd_backend be; /* the ops the forward calls (CPU: over tp) */
    struct wd_model_workspace *ws;
    void *weights_map; /* the huge-page copy of the streamed weights (NULL: none) */
    size_t weights_map_len;
};

/* One ragged batch: token t belongs to sequence tok_seq[t] at position tok_pos[t].
 * seqs[s].n_ctx counts the KV entries of s after this batch (its KV rows for the batch's
 * tokens are written by the forward); seqs[s].page_table must cover n_ctx slots. */
struct wd_forward_batch {
    int64_t n_tokens;
    const int32_t *ids;     /* [n_tokens] */
    const int32_t *tok_seq; /* [n_tokens] */
    const int32_t *tok_pos; /* [n_tokens] */
    int n_seqs;
    const struct wd_attn_seq *seqs; /* [n_seqs] */
    int n_logits;
    const int32_t *logit_rows; /* [n_logits] token indices whose logits are wanted */
    int is_decode;             /* every token is a decode step (no prompt chunk) */
    const uint64_t *seq_ids;   /* [n_seqs] the caller's id of each sequence, or NULL (the
                                  layer hook uses it to find a sequence's transfer) */
};

/* Loads config.json and the safetensors of model_dir, checks every tensor's shape, binds
 * the weights and allocates the workspace. Errors name the file or tensor at fault. */
enum wd_status wd_model_create(const char *model_dir, const struct wd_model_options *opt,
                               struct wd_model **model_p, struct wd_error *err);
/* The same from a parsed config and an opened checkpoint; takes ownership of st (closed on
 * error too). Used by wideep-bench's random models, which live in memory. */
enum wd_status wd_model_create_from(const struct wd_model_config *cfg, struct wd_safetensors *st,
                                    const struct wd_model_options *opt, struct wd_model **model_p,
                                    struct wd_error *err);
void wd_model_destroy(struct wd_model *model);

/* Reports every tensor a checkpoint of this config must hold (name and shape, FP8 scales
 * excluded), in binding order. The one list of names: loading and the benchmark's random
 * models both follow it. */
typedef void (*wd_model_tensor_fn)(void *ctx, const char *name, int n_dims, const int64_t *shape);
enum wd_status wd_model_list_tensors(const struct wd_model_config *cfg, wd_model_tensor_fn fn,
                                     void *ctx, struct wd_error *err);

/* KV pool geometry for this model on this rank: elements per slot of K (the latent for MLA)
 * and of V (0 for MLA), and the heads a row holds (GQA KV heads; 1 for MLA). */
void wd_model_kv_geometry(const struct wd_model *model, int *k_row_p, int *v_row_p);
/* Fills the model-dependent fields of a KV pool config (layers, rows, heads). */
struct wd_kv_pool_config;
void wd_model_kv_pool_config(const struct wd_model *model, struct wd_kv_pool_config *cfg);

/* Runs the batch and writes logits [n_logits, vocab] f32. Token ids must be < vocab and
 * n_tokens <= max_batch_tokens, n_logits <= max_logit_rows (checked: WD_ERR_INVALID). */
enum wd_status wd_model_forward(struct wd_model *model, struct wd_kv_pool *kv,
                                const struct wd_forward_batch *batch, float *logits,
                                struct wd_error *err);

#endif
