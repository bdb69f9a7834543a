/*
 * The parallel layout of one server instance, as SGLang builds it: which global rank
 * does attention TP or DP, which ranks form the MoE expert-parallel (EP) and MoE
 * tensor-parallel (TP) groups, and the per-rank indices and log prefix.
 *
 * wd_layout_create validates the layout flags (with SGLang's error texts where SGLang has
 * them) and enumerates every group, so rank processes, collectives and dispatch all read
 * one answer. The layout is a plain value owned by the caller: built once at start-up,
 * read-only afterwards, safe to share between threads. It creates no processes and opens
 * no connections; the launcher and transports do that from it.
 */
#ifndef WD_LAYOUT_LAYOUT_H
#define WD_LAYOUT_LAYOUT_H

#include "common/util/status.h"

/* Upper bound on ranks in one instance: keeps a typo (--tp 10000000) from allocating. */
#define WD_LAYOUT_MAX_WORLD 4096

enum wd_a2a_backend { WD_A2A_NONE = 0, WD_A2A_DEEPEP };
enum wd_deepep_mode { WD_DEEPEP_AUTO = 0, WD_DEEPEP_NORMAL, WD_DEEPEP_LOW_LATENCY };

/* The layout flags as given on the command line (before SGLang's adjustments). */
struct wd_parallel_args {
    int tp_size, dp_size, ep_size;
    int pp_size; /* must be 1: wideep has no pipeline parallelism (other values refused) */
    int nnodes, node_rank;
    int enable_dp_attention; /* bool */
    int moe_dense_tp_size;   /* 0 = unset (SGLang's None) or 1 */
    enum wd_a2a_backend a2a_backend;
    enum wd_deepep_mode deepep_mode;
    char dist_init_addr[256]; /* "host:port" or "[v6addr]:port"; "" = not given */
};

/* Model shapes the layout must divide. Any field 0 skips its guard. */
struct wd_layout_model_dims {
    int num_experts;           /* routed (logical) experts per MoE layer */
    int num_redundant_experts; /* --ep-num-redundant-experts: extra physical slots per layer */
    int moe_intermediate_size; /* one routed expert's intermediate size */
    int weight_block_size_n;   /* block-FP8 weight scale block along the output dim (128) */
    int num_attention_heads;
    int num_key_value_heads;
    int intermediate_size; /* dense MLP layers; 0 when the model has none */
};

/* One rank's place in every group. Group index of each kind: attention TP group =
 * attn_dp_rank, MoE-EP group = moe_tp_rank, MoE-TP group = moe_ep_rank. */
struct wd_rank_layout {
    int rank; /* global rank = tp_rank (pp_size 1) */
    int tp_rank;
    int attn_tp_rank, attn_dp_rank;
    int moe_ep_rank; /* tp_rank / (tp_size / ep_size) */
    int moe_tp_rank; /* tp_rank % moe_tp_size */
    int node_rank;   /* node that runs this rank */
    int local_rank;  /* index of the rank within its node (its device) */
    char prefix[32]; /* SGLang's log prefix without the leading space: "DP1 TP2 EP2",
                         "TP0 EP0"; TP only when tp_size > 1, EP only when ep_size > 1,
                         DP only with DP attention; "" for a single rank */
};

/* Groups of one kind, all the same size: group g is ranks[g * group_size ...]. */
struct wd_group_set {
    int n_groups, group_size;
    int *ranks; /* [n_groups, group_size] global ranks, ascending inside a group */
};

struct wd_layout {
    int world_size; /* tp_size * pp_size */
    int tp_size, pp_size;
    int dp_size;             /* as given */
    int enable_dp_attention; /* after SGLang's rule: dp_size 1 turns it off */
    int attn_tp_size;        /* tp_size / attn_dp_size */
    int attn_dp_size;        /* dp_size with DP attention, else 1 */
    int ep_size;             /* after --moe-a2a-backend deepep forced it to tp_size */
    int moe_ep_size;         /* = ep_size */
    int moe_tp_size;         /* tp_size / ep_size */
    int moe_dense_tp_size;   /* 0 = None, or 1 */
    int dense_tp_size;       /* TP width of dense MLP layers: 1 with --moe-dense-tp-size 1,
                                else tp_size (tokens gathered over the TP group) */
    enum wd_a2a_backend a2a_backend;
    enum wd_deepep_mode deepep_mode;
    int nnodes, node_rank;
    int ranks_per_node;            /* world_size / nnodes; node n runs [n * rpn, (n + 1) * rpn) */
    char dist_init_host[256];      /* parsed --dist-init-addr ("" when not given) */
    int dist_init_port;            /* 0 when not given */
    struct wd_group_set tp_groups; /* 1 group of tp_size */
    struct wd_group_set attn_tp_groups; /* attn_dp_size contiguous groups of attn_tp_size */
    struct wd_group_set moe_ep_groups;  /* moe_tp_size groups of ep_size, stride moe_tp_size */
    struct wd_group_set moe_tp_groups;  /* ep_size contiguous groups of moe_tp_size */
    struct wd_rank_layout *ranks;       /* [world_size] */
};

/* Fills args with SGLang's defaults: every size 1, one node, backend none, mode auto. */
void wd_parallel_args_init(struct wd_parallel_args *args);

/* Validates args (and, when dims is non-NULL, that the model's shapes divide the layout)
 * and builds the layout. SGLang's adjustments are applied first: dp_size 1 turns DP
 * attention off; --moe-a2a-backend deepep sets ep_size = tp_size and logs it (warn).
 * Errors (one line, SGLang's words where it has them): WD_ERR_INVALID for a layout that
 * does not divide or a bad node/address flag, WD_ERR_UNSUPPORTED for pipeline parallelism
 * and for data-parallel replicas without DP attention. *layout_p is written only on
 * success; free it with wd_layout_destroy. */
enum wd_status wd_layout_create(const struct wd_parallel_args *args,
                                const struct wd_layout_model_dims *dims,
                                struct wd_layout **layout_p, struct wd_error *err);
/* NULL-safe. */
void wd_layout_destroy(struct wd_layout *layout);

/* Members of group g of a set: pointer to group_size ranks. g must be < n_groups. */
const int *wd_group_set_members(const struct wd_group_set *set, int g);

/* The layout as one JSON object (keys: world_size, tp_size, attn_tp_size, attn_dp_size,
 * moe_ep_size, moe_tp_size, tp_groups, attn_tp_groups, moe_ep_groups, moe_tp_groups as
 * lists of rank lists, and ranks: one object per rank with rank, tp_rank, attn_tp_rank,
 * attn_dp_rank, moe_ep_rank, moe_tp_rank, prefix). *json_p is malloc'ed, one line with no
 * trailing newline; the caller frees it. WD_ERR_NOMEM on allocation failure. */
enum wd_status wd_layout_to_json(const struct wd_layout *layout, char **json_p,
                                 struct wd_error *err);

/* Shape guards for a model read from config.json: routed experts, expert and dense
 * intermediate sizes (dense only when some layer is dense), heads, and the FP8 block. */
struct wd_model_config;
void wd_layout_dims_from_model_config(const struct wd_model_config *cfg, int num_redundant_experts,
                                      struct wd_layout_model_dims *dims);

/* The --print-layout front end for a binary: parses argv (the layout and EPLB flags,
 * --print-layout itself, and an optional --model-path whose config.json adds the shape
 * guards without loading weights), prints the layout JSON on stdout and returns 0.
 * A bad flag returns 2 and an invalid layout 1, with "<argv[0]>: <error>" on stderr. */
int wd_layout_print_main(int argc, char **argv);

#endif
