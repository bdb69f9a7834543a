/*
 * Offline generation over a parallel layout: one process per rank (the launcher),
 * each holding its shard of the model, joined by the layout's groups. Prompts are
 * spread over the attention-DP ranks (prompt i -> DP rank i % attn_dp); within an
 * attention-TP group every rank runs the same scheduler on the same inputs, and the
 * reductions are bit-identical on every rank, so their decisions stay identical
 * without a broadcast. All ranks step in lockstep (an idle DP rank runs empty
 * forwards so MoE collectives complete) until no rank has work. The results come
 * back to the calling process through a shared mapping made before the fork.
 * The layout's world must fit this node (one launcher) or this call is one node's
 * launcher of a multi-node run (--nnodes, --node-rank); only node 0 gets results.
 */
#ifndef WD_SCHED_OFFLINE_RANKS_H
#define WD_SCHED_OFFLINE_RANKS_H

#include <stdint.h>

#include "common/config/server_args.h"
#include "common/layout/layout.h"
#include "common/sched/scheduler.h"

struct wd_offline_config {
    const char *model_path;
    const struct wd_layout *layout;
    struct wd_scheduler_config sched;
    int page_size, max_total_tokens, n_threads;
    struct wd_request_params params; /* template: prompt fields ignored; seed + i per prompt */
    int n_prompts;
    const int32_t *const *prompts; /* [n_prompts][n_ids[i]] */
    const int *n_ids;
    int timeout_ms; /* every collective wait; a rank silent for longer fails the run */
    /* EPLB (--enable-eplb, --ep-num-redundant-experts, --init-expert-location, the recorder
     * and dispatch flags); NULL = experts in contiguous blocks. */
    const struct wd_server_args *eplb;
    const char *metrics_file; /* NULL, or where node 0's rank 0 writes Prometheus text at the end */
};

struct wd_offline_result {
    int32_t *out;    /* [max_new_tokens], caller-allocated */
    float *logprobs; /* [max_new_tokens], caller-allocated */
    int n_out;
    enum wd_finish_reason finish;
};

/* Runs every prompt; fills results[i] on node 0. Errors name the failing rank. */
enum wd_status wd_offline_run_ranks(const struct wd_offline_config *cfg,
                                    struct wd_offline_result *results, struct wd_error *err);

#endif
