/*
 * wd_engine: one rank's whole state (communication groups, DeepEP buffers, EPLB, its model
 * shard, its KV pool, its scheduler) and the step loop that drives it. wideep-generate,
 * wideep-prefill and wideep-decode all run this same code inside the rank processes their
 * launcher forks; none of them owns model, comm, EP or scheduling code of its own.
 *
 * Each loop iteration is one step boundary: the leader rank of every attention-DP group
 * takes the commands its front-end queued (new requests, aborts, the decode/prefill
 * verbs) from its link and broadcasts them inside its attention-TP group, so every rank
 * of the group applies the same commands to the same scheduler; then all ranks vote
 * (any work left? stop?) and, when some rank has work, step their schedulers in lockstep
 * (an idle DP rank runs an empty forward so the MoE collectives complete). Tokens leave
 * through the leader's link every step. World = 1 runs exactly this, with every group of
 * one rank.
 *
 * Threading: one thread per rank. Errors from a peer or a collective end the loop with a
 * status naming the rank; the launcher then tears the instance down.
 */
#ifndef WD_ENGINE_ENGINE_H
#define WD_ENGINE_ENGINE_H

#include "common/comm/launcher.h"
#include "common/config/server_args.h"
#include "common/engine/engine_link.h"
#include "common/layout/layout.h"
#include "common/sched/scheduler.h"

/* DeepEP low-latency mode's tokens per rank per call (SGLang's default for
 * SGLANG_DEEPEP_NUM_MAX_DISPATCH_TOKENS_PER_RANK). */
#define WD_ENGINE_LL_MAX_TOKENS 128

struct wd_engine_config {
    const char *model_path;
    const struct wd_layout *layout;
    const struct wd_server_args *sargs; /* EPLB, recorder, --dist-init-token; NULL = none */
    struct wd_scheduler_config sched;   /* lockstep and the low-latency cap are set here */
    int page_size;
    int max_total_tokens; /* KV pool of each attention-DP rank, in tokens */
    enum wd_dtype kv_dtype;
    int n_threads;            /* CPU threads per rank; 0 = all */
    int is_weights_mapped;    /* 1: no huge-page copy of the weights (wd_model_options) */
    int timeout_ms;           /* every collective wait; a rank silent for longer fails the run */
    int max_prompt_tokens;    /* sizes the forward when chunked prefill is off */
    int idle_wait_ms;         /* how long an idle leader sleeps waiting for commands */
    const char *metrics_file; /* rank 0 writes its Prometheus text here at the end; NULL */
    const char *role;         /* log identity: "generate", "decode", "prefill" */
    int kv_transfer;          /* disaggregated serving: every attention rank registers its KV
                                 region for UCX transfer (common/net/kv_transfer.h) */
};

struct wd_engine;

/* Builds rank ri->rank's engine inside its rank process: groups, EP buffers, EPLB, the model
 * shard, KV pool and scheduler. link is this rank's link when it leads an attention-DP group
 * on this node (attention-TP rank 0), else NULL (borrowed). */
enum wd_status wd_engine_create(const struct wd_engine_config *cfg, const struct wd_rank_info *ri,
                                struct wd_engine_link *link, struct wd_engine **e_p,
                                struct wd_error *err);
/* Runs the step loop until a leader's front-end asks to stop (what is left is aborted) or,
 * with exit-when-idle, until no rank has work. */
enum wd_status wd_engine_run(struct wd_engine *e, struct wd_error *err);
/* Frees everything (after an error too: collective teardown is skipped then, the launcher
 * reaps the instance). NULL-safe. */
void wd_engine_destroy(struct wd_engine *e);

/* The scheduler limits the engine derives from cfg for this layout: the low-latency cap on
 * tokens per forward, lockstep for DP attention. */
void wd_engine_sched_config(const struct wd_engine_config *cfg, struct wd_scheduler_config *sc);

/* rank_main for wd_launcher_start: ctx is a struct wd_engine_rank_ctx whose links[d] is the
 * link of attention-DP group d when its leader runs on this node. */
struct wd_engine_rank_ctx {
    const struct wd_engine_config *cfg;
    struct wd_engine_link **links; /* [attn_dp_size] */
};
int wd_engine_rank_main(void *ctx, const struct wd_rank_info *ri);

#endif
