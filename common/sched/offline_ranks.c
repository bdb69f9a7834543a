/* Offline generation over ranks: launcher, groups, sharded model, lockstep scheduling. */
#include "common/sched/offline_ranks.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "common/comm/comm.h"
#include "common/comm/comm_group.h"
#include "common/comm/launcher.h"
#include "common/ep/ep_buffer.h"
#include "common/ep/ep_moe.h"
#include "common/ep/ep_normal.h"
#include "common/ep/eplb.h"
#include "common/model/expert_move.h"
#include "common/util/log.h"
#include "common/util/metrics.h"

/* DeepEP low-latency mode's tokens per rank per call (SGLang's default for
 * SGLANG_DEEPEP_NUM_MAX_DISPATCH_TOKENS_PER_RANK); larger decode batches use normal mode. */
#define WD_OFFLINE_LL_MAX_TOKENS 128

/* One prompt's outcome as it crosses process boundaries: fixed size, no pointers. */
struct record_head {
    int32_t n_out;
    int32_t finish;
};

struct run {
    const struct wd_offline_config *cfg;
    size_t rec_bytes;      /* head + out[max_new] + logprobs[max_new] */
    unsigned char *shared; /* [n_prompts, rec_bytes], MAP_SHARED before the fork */
};

struct rank_state {
    const struct run *run;
    const struct wd_rank_layout *me;
    struct wd_comm_groups *groups;
    int timeout_ms;
    unsigned char *records; /* [n_prompts, rec_bytes] this rank's view */
    /* --moe-a2a-backend deepep: dispatch/combine over the MoE-EP group's window */
    struct wd_ep_buffer *ep;
    struct wd_ep_moe *ep_moe;
    struct wd_ep_handle *ep_handle;
    struct wd_ep_payload payload;
    uint64_t *req_prompt; /* [n_prompts] request id of each prompt on this rank, 0 = none */
    /* EPLB */
    struct wd_eplb_location *loc, *next; /* current placement, and the one being computed */
    struct wd_eplb_dispatch *dispatch[WD_MODEL_MAX_DP];
    int n_dispatch;
    struct wd_eplb_params params;
    struct wd_expert_recorder *recorder;
    struct wd_transport *move_t;
    struct wd_expert_mover *mover;
    struct wd_model *model;
    long passes; /* forward passes run */
    struct wd_metrics *metrics;
    int m_balance, m_balance_mean, m_rebalances, m_moved, m_passes;
};

static enum wd_status eplb_rebalance(struct rank_state *rs, struct wd_error *err);

static unsigned char *record(const struct run *run, unsigned char *base, int prompt)
{
    return base + (size_t)prompt * run->rec_bytes;
}

static void on_token(void *ctx, const struct wd_request *req, int32_t token, float logprob)
{
    struct rank_state *rs = ctx;
    const struct wd_offline_config *cfg = rs->run->cfg;
    for (int i = 0; i < cfg->n_prompts; i++) {
        if (rs->req_prompt[i] != req->id)
            continue;
        unsigned char *r = record(rs->run, rs->records, i);
        struct record_head *h = (struct record_head *)r;
        int32_t *out = (int32_t *)(r + sizeof(*h));
        float *lp = (float *)(out + cfg->params.max_new_tokens);
        if (token >= 0 && h->n_out < cfg->params.max_new_tokens) {
            out[h->n_out] = token;
            lp[h->n_out++] = logprob;
        }
        h->finish = req->finish;
        return;
    }
}

static enum wd_status rank_all_reduce(void *ctx, enum wd_model_group g, float *buf, size_t n,
                                      struct wd_error *err)
{
    struct rank_state *rs = ctx;
    /* Attention partial sums stay in the attention-TP group; with the all-reduce MoE
     * backend the MoE and split dense layers are summed over the whole TP group. */
    struct wd_comm_group *grp = g == WD_GROUP_ATTN_TP ? rs->groups->attn_tp : rs->groups->tp;
    return wd_coll_all_reduce_f32(grp->coll, buf, n, rs->timeout_ms, err);
}

/* The model's all-to-all hook: DeepEP normal or low-latency mode through common/ep. */
static enum wd_status rank_moe_a2a(void *ctx, const float *x, int64_t n, const int32_t *topk_idx,
                                   const float *topk_w, int low_latency,
                                   enum wd_status (*run_expert)(void *ectx, int local_expert,
                                                                const float *x, int n, float *y,
                                                                struct wd_error *err),
                                   void *ectx, float *out, struct wd_error *err)
{
    struct rank_state *rs = ctx;
    struct wd_ep_experts ex = {.run = run_expert, .ctx = ectx};
    struct wd_ep_moe_args a = {.x = x,
                               .n_tokens = (int)n,
                               .topk_idx = topk_idx,
                               .topk_w = topk_w,
                               .dispatch_payload = rs->payload,
                               .combine_payload = WD_EP_PAYLOAD_F32};
    if (low_latency)
        return wd_ep_moe_ll(rs->ep_moe, rs->ep, &a, &ex, out, err);
    return wd_ep_moe_normal(rs->ep_moe, rs->ep, rs->ep_handle, &a, &ex, out, err);
}

/* Row encoding of dispatched tokens: exact fp32 by default on the CPU engine; bf16 or fp8
 * (DeepEP's per-128-channel scales) with WIDEEP_DEEPEP_DISPATCH=bf16|fp8. */
static enum wd_status dispatch_payload(int hidden, struct wd_ep_payload *p, struct wd_error *err)
{
    const char *v = getenv("WIDEEP_DEEPEP_DISPATCH");
    *p = (struct wd_ep_payload){.kind = WD_EP_PAYLOAD_F32, .hidden = hidden};
    if (!v || strcmp(v, "f32") == 0)
        return WD_OK;
    if (strcmp(v, "bf16") == 0) {
        p->kind = WD_EP_PAYLOAD_BF16;
        return WD_OK;
    }
    if (strcmp(v, "fp8") == 0) {
        p->kind = WD_EP_PAYLOAD_FP8;
        p->round_scale = 1;
        return wd_ep_payload_check(p, err);
    }
    return wd_error_set(err, WD_ERR_INVALID, "WIDEEP_DEEPEP_DISPATCH=%s is not f32, bf16 or fp8",
                        v);
}

static struct wd_model_shard shard_of(const struct wd_layout *l, const struct wd_rank_layout *r)
{
    struct wd_model_shard s = {
        .attn_dp_size = l->attn_dp_size,
        .attn_dp_rank = r->attn_dp_rank,
        .attn_tp_size = l->attn_tp_size,
        .attn_tp_rank = r->attn_tp_rank,
        .moe_ep_size = l->moe_ep_size,
        .moe_ep_rank = r->moe_ep_rank,
        .moe_tp_size = l->moe_tp_size,
        .moe_tp_rank = r->moe_tp_rank,
        .dense_tp_size = l->dense_tp_size,
        .dense_tp_rank = l->dense_tp_size > 1 ? r->tp_rank : 0,
    };
    return s;
}

/* Steps this rank's scheduler until no rank of the instance has work left. */
static enum wd_status drive(struct rank_state *rs, struct wd_scheduler *sched, struct wd_error *err)
{
    for (;;) {
        float active = (float)(wd_scheduler_n_running(sched) + wd_scheduler_n_waiting(sched));
        WD_CHECK(wd_coll_all_reduce_f32(rs->groups->tp->coll, &active, 1, rs->timeout_ms, err));
        if (active == 0.0f)
            return WD_OK;
        WD_CHECK(wd_scheduler_step(sched, NULL, err));
        const struct wd_server_args *a = rs->run->cfg->eplb;
        rs->passes++;
        if (rs->mover && a->enable_eplb && a->eplb_rebalance_num_iterations > 0 &&
            rs->passes % a->eplb_rebalance_num_iterations == 0)
            WD_CHECK(eplb_rebalance(rs, err));
    }
}

static int eplb_wanted(const struct wd_server_args *a)
{
    return a && (a->enable_eplb || a->ep_num_redundant_experts > 0 ||
                 (a->init_expert_location && strcmp(a->init_expert_location, "trivial") != 0));
}

/* The initial placement and this rank's dispatch tables. With the all-reduce backend a row is
 * routed the same way on every rank: by the table of the DP rank it came from. */
static enum wd_status eplb_setup(struct rank_state *rs, const struct wd_model_config *mc,
                                 struct wd_error *err)
{
    const struct wd_server_args *a = rs->run->cfg->eplb;
    const struct wd_layout *l = rs->run->cfg->layout;
    int E = mc->n_routed_experts, P = E + a->ep_num_redundant_experts;
    WD_CHECK(wd_eplb_algorithm_parse(a->eplb_algorithm ? a->eplb_algorithm : "auto",
                                     &rs->params.algorithm, err));
    rs->params.n_groups = mc->arch == WD_ARCH_DEEPSEEK_V3 ? mc->n_group : 0;
    rs->params.n_nodes = l->nnodes;
    WD_CHECK(wd_eplb_location_create(mc->n_layers, E, P, l->moe_ep_size, &rs->loc, err));
    WD_CHECK(wd_eplb_location_create(mc->n_layers, E, P, l->moe_ep_size, &rs->next, err));
    WD_CHECK(wd_eplb_location_load(rs->loc, a->init_expert_location, &rs->params, err));
    enum wd_eplb_dispatch_algorithm algo = WD_EPLB_DISPATCH_STATIC;
    if (a->ep_dispatch_algorithm)
        WD_CHECK(wd_eplb_dispatch_algorithm_parse(a->ep_dispatch_algorithm, &algo, err));
    int deepep = l->a2a_backend == WD_A2A_DEEPEP;
    rs->n_dispatch = deepep ? 1 : l->attn_dp_size;
    for (int d = 0; d < rs->n_dispatch; d++) {
        int src = deepep ? rs->me->rank : d * l->attn_tp_size;
        struct wd_eplb_dispatch_config dc = {
            .algorithm = algo,
            .ep_rank = l->ranks[src].moe_ep_rank,
            .n_nodes = l->nnodes,
            /* dynamic: ranks that must agree draw from the same stream */
            .seed = 0x5eed + (uint64_t)(deepep ? rs->me->rank : d)};
        WD_CHECK(wd_eplb_dispatch_create(&dc, rs->loc, &rs->dispatch[d], err));
    }
    return WD_OK;
}

/* The expert-distribution recorder (--expert-distribution-recorder-mode; EPLB's input). */
static enum wd_status recorder_setup(struct rank_state *rs, const struct wd_model_config *mc,
                                     struct wd_error *err)
{
    const struct wd_server_args *a = rs->run->cfg->eplb;
    int E = mc->n_routed_experts;
    const char *mode =
        a->expert_distribution_recorder_mode ? a->expert_distribution_recorder_mode : "stat";
    struct wd_expert_recorder_config rc = {
        .n_layers = mc->n_layers,
        .n_experts = E,
        .top_k = mc->num_experts_per_tok,
        .buffer_size =
            a->expert_distribution_recorder_buffer_size > 0
                ? a->expert_distribution_recorder_buffer_size
                : (a->eplb_rebalance_num_iterations > 0 ? a->eplb_rebalance_num_iterations : 1000),
        .max_tokens = 4096};
    WD_CHECK(wd_expert_record_mode_parse(mode, &rc.mode, err));
    return wd_expert_recorder_create(&rc, &rs->recorder, err);
}

/* With WIDEEP_EXPERT_DISTRIBUTION_RECORDER_DIR set (SGLang: SGLANG_EXPERT_DISTRIBUTION_
 * RECORDER_DIR), the recorded routing is written there at the end: by rank 0 when every
 * rank saw every token (all-reduce backend), by every rank when each recorded its own rows. */
static enum wd_status recorder_dump(struct rank_state *rs, struct wd_error *err)
{
    const char *dir = getenv("WIDEEP_EXPERT_DISTRIBUTION_RECORDER_DIR");
    const struct wd_layout *l = rs->run->cfg->layout;
    if (!rs->recorder || !dir || (l->a2a_backend == WD_A2A_NONE && rs->me->rank != 0))
        return WD_OK;
    char path[4096];
    snprintf(path, sizeof(path), "%s/expert_distribution_rank%d.json", dir, rs->me->rank);
    FILE *f = fopen(path, "w");
    if (!f)
        return wd_error_set(err, WD_ERR_IO, "%s: %m", path);
    enum wd_status st = wd_expert_recorder_dump(rs->recorder, f, err);
    if (fclose(f) != 0 && st == WD_OK)
        st = wd_error_set(err, WD_ERR_IO, "%s: %m", path);
    return st;
}

/* Mean over MoE layers of EPLB's balancedness (mean / max GPU load) of a placement. */
static double balancedness(const struct rank_state *rs, const struct wd_eplb_location *loc,
                           const double *counts, int publish)
{
    const struct wd_model_config *c = &rs->model->cfg;
    double sum = 0, load[WD_MODEL_MAX_RANKS];
    int n = 0;
    for (int layer = 0; layer < c->n_layers; layer++) {
        if (!wd_model_config_is_moe_layer(c, layer))
            continue;
        if (wd_eplb_gpu_load(counts + (size_t)layer * loc->n_logical, loc->n_logical,
                             loc->phy2log + (size_t)layer * loc->n_physical, loc->n_physical,
                             loc->n_gpus, load, NULL) != WD_OK)
            continue;
        double b = wd_eplb_balancedness(load, loc->n_gpus);
        sum += b;
        n++;
        if (publish && rs->metrics) {
            char lv[16];
            snprintf(lv, sizeof(lv), "%d", layer);
            wd_metrics_set(rs->metrics, rs->m_balance, lv, b);
        }
        if (publish)
            wd_log(WD_LOG_DEBUG, "eplb", "layer %d balancedness %.3f", layer, b);
    }
    return n ? sum / n : 1.0;
}

/* A rebalance at a safe point (between forward passes, the same pass on every rank):
 * the recorded routing -> a new placement -> expert weights moved between ranks. */
static enum wd_status eplb_rebalance(struct rank_state *rs, struct wd_error *err)
{
    const struct wd_layout *l = rs->run->cfg->layout;
    const struct wd_model_config *c = &rs->model->cfg;
    size_t n = (size_t)c->n_layers * (size_t)c->n_routed_experts;
    double *counts = malloc(n * sizeof(double));
    float *sum = malloc(n * sizeof(float));
    enum wd_status st =
        counts && sum ? WD_OK : wd_error_set(err, WD_ERR_NOMEM, "eplb: out of memory");
    if (st == WD_OK) {
        wd_expert_recorder_counts(rs->recorder, counts);
        /* With the all-to-all backend each rank recorded the rows it dispatched: sum them. */
        if (l->a2a_backend == WD_A2A_DEEPEP) {
            for (size_t i = 0; i < n; i++)
                sum[i] = (float)counts[i];
            st = wd_coll_all_reduce_f32(rs->groups->tp->coll, sum, n, rs->timeout_ms, err);
            for (size_t i = 0; st == WD_OK && i < n; i++)
                counts[i] = sum[i];
        }
    }
    double before = st == WD_OK ? balancedness(rs, rs->loc, counts, 0) : 0;
    for (int layer = 0; st == WD_OK && layer < c->n_layers; layer++)
        wd_eplb_location_copy_layer(rs->next, rs->loc, layer);
    if (st == WD_OK)
        st = wd_eplb_location_rebalance(rs->next, counts, &rs->params, err);
    int moved = 0;
    for (int layer = 0; st == WD_OK && layer < c->n_layers; layer++) {
        if (!wd_model_config_is_moe_layer(c, layer)) {
            wd_eplb_location_copy_layer(rs->next, rs->loc, layer); /* dense: nothing moves */
            continue;
        }
        int k = 0;
        st = wd_expert_mover_layer(rs->mover, rs->model->experts_store, layer,
                                   rs->loc->phy2log + (size_t)layer * rs->loc->n_physical,
                                   rs->next->phy2log + (size_t)layer * rs->next->n_physical,
                                   rs->loc->n_physical, &k, err);
        moved += k;
    }
    if (st == WD_OK) {
        for (int layer = 0; layer < c->n_layers; layer++)
            wd_eplb_location_copy_layer(rs->loc, rs->next, layer);
        for (int d = 0; d < rs->n_dispatch; d++)
            wd_eplb_dispatch_refresh(rs->dispatch[d]);
        double after = balancedness(rs, rs->loc, counts, 1);
        if (rs->metrics) {
            wd_metrics_set(rs->metrics, rs->m_balance_mean, NULL, after);
            wd_metrics_add(rs->metrics, rs->m_rebalances, NULL, 1);
            wd_metrics_add(rs->metrics, rs->m_moved, NULL, moved);
        }
        wd_log(WD_LOG_INFO, "eplb",
               "rebalanced after %ld passes: balancedness %.3f -> %.3f (mean/max GPU load over "
               "MoE layers), %d expert blobs received",
               rs->passes, before, after, moved);
    }
    free(counts);
    free(sum);
    return st;
}

/* Rank 0 keeps the run's metrics (EPLB balancedness per layer, rebalances, moves). */
static enum wd_status metrics_setup(struct rank_state *rs, struct wd_error *err)
{
    if (!rs->run->cfg->metrics_file || rs->me->rank != 0)
        return WD_OK;
    WD_CHECK(wd_metrics_create(&rs->metrics, err));
    struct wd_metrics *m = rs->metrics;
    rs->m_balance = wd_metrics_register(m, "wideep_eplb_balancedness",
                                        "mean/max GPU load of a MoE layer's expert placement under "
                                        "the recorded routing (1 = balanced)",
                                        WD_METRIC_GAUGE, "layer", NULL, 0);
    rs->m_balance_mean = wd_metrics_register(m, "wideep_eplb_balancedness_mean",
                                             "wideep_eplb_balancedness averaged over MoE layers",
                                             WD_METRIC_GAUGE, NULL, NULL, 0);
    rs->m_rebalances =
        wd_metrics_register(m, "wideep_eplb_rebalances_total", "EPLB rebalances done",
                            WD_METRIC_COUNTER, NULL, NULL, 0);
    rs->m_moved = wd_metrics_register(m, "wideep_eplb_expert_moves_total",
                                      "expert weight blobs rank 0 received in rebalances",
                                      WD_METRIC_COUNTER, NULL, NULL, 0);
    rs->m_passes = wd_metrics_register(m, "wideep_forward_passes_total", "forward passes run",
                                       WD_METRIC_COUNTER, NULL, NULL, 0);
    if (rs->m_balance < 0 || rs->m_balance_mean < 0 || rs->m_rebalances < 0 || rs->m_moved < 0 ||
        rs->m_passes < 0)
        return wd_error_set(err, WD_ERR_INVALID, "metrics: cannot register the families");
    return WD_OK;
}

static enum wd_status metrics_write(struct rank_state *rs, struct wd_error *err)
{
    if (!rs->metrics)
        return WD_OK;
    wd_metrics_add(rs->metrics, rs->m_passes, NULL, (double)rs->passes);
    char *text = wd_metrics_render(rs->metrics);
    if (!text)
        return wd_error_set(err, WD_ERR_NOMEM, "metrics: out of memory");
    const char *path = rs->run->cfg->metrics_file;
    FILE *f = fopen(path, "w");
    enum wd_status st = WD_OK;
    if (!f || fputs(text, f) < 0)
        st = wd_error_set(err, WD_ERR_IO, "--metrics-file %s: %m", path);
    if (f && fclose(f) != 0 && st == WD_OK)
        st = wd_error_set(err, WD_ERR_IO, "--metrics-file %s: %m", path);
    free(text);
    return st;
}

static enum wd_status rank_run(struct rank_state *rs, const struct wd_rank_info *ri,
                               struct wd_error *err)
{
    const struct run *run = rs->run;
    const struct wd_offline_config *cfg = run->cfg;
    const struct wd_layout *l = cfg->layout;
    struct wd_comm *comm = NULL;
    struct wd_model *model = NULL;
    struct wd_kv_pool *kv = NULL;
    struct wd_scheduler *sched = NULL;
    int max_prompt = 1;
    for (int i = 0; i < cfg->n_prompts; i++)
        if (cfg->n_ids[i] > max_prompt)
            max_prompt = cfg->n_ids[i];
    struct wd_model_options mopt = {.n_threads = cfg->n_threads,
                                    .shard = shard_of(l, rs->me),
                                    .comm = {.ctx = rs, .all_reduce = rank_all_reduce}};
    struct wd_scheduler_config sc = cfg->sched;
    sc.lockstep = l->attn_dp_size > 1;
    wd_scheduler_model_limits(&sc, max_prompt, &mopt.max_batch_tokens, &mopt.max_logit_rows);
    /* Collective windows sized so one layer's hidden states go through in a few pieces. */
    size_t piece = (size_t)1 << 20;

    /* DeepEP buffers: the expert count and shapes come from config.json. */
    struct wd_model_config mc;
    enum wd_status st = wd_model_config_load(cfg->model_path, &mc, err);
    if (st == WD_OK)
        st = metrics_setup(rs, err);
    if (st == WD_OK && eplb_wanted(cfg->eplb)) {
        st = eplb_setup(rs, &mc, err);
        mopt.eplb = (struct wd_model_eplb){
            .loc = rs->loc, .dispatch = rs->dispatch, .n_dispatch = rs->n_dispatch};
    }
    if (st == WD_OK && cfg->eplb &&
        (cfg->eplb->expert_distribution_recorder_mode || eplb_wanted(cfg->eplb))) {
        st = recorder_setup(rs, &mc, err);
        mopt.recorder = rs->recorder;
    }
    struct wd_ep_config ec = {0};
    size_t ep_window = 0;
    int deepep = l->a2a_backend == WD_A2A_DEEPEP;
    if (st == WD_OK && deepep) {
        ec = (struct wd_ep_config){.n_ranks = l->moe_ep_size,
                                   .hidden = mc.hidden_size,
                                   .top_k = mc.num_experts_per_tok,
                                   .n_experts = rs->loc ? rs->loc->n_physical : mc.n_routed_experts,
                                   .max_tokens = mopt.max_batch_tokens,
                                   .ll_max_tokens = WD_OFFLINE_LL_MAX_TOKENS,
                                   .max_payload = WD_EP_PAYLOAD_F32,
                                   .timeout_ms = rs->timeout_ms};
        st = dispatch_payload(mc.hidden_size, &rs->payload, err);
        if (st == WD_OK)
            st = wd_ep_config_check(&ec, err);
        ep_window = wd_ep_window_bytes(&ec);
        mopt.comm.moe_a2a = rank_moe_a2a;
        mopt.comm.deepep_mode = (int)l->deepep_mode;
        mopt.comm.ll_max_tokens = WD_OFFLINE_LL_MAX_TOKENS;
    }
    if (st == WD_OK)
        st = wd_comm_create(ri, &comm, err);
    if (st == WD_OK)
        st = wd_comm_groups_create(comm, l, piece, ep_window, &rs->groups, err);
    if (st == WD_OK && deepep)
        st = wd_ep_buffer_create(&ec, rs->groups->ep, &rs->ep, err);
    if (st == WD_OK && deepep)
        st = wd_ep_moe_create(rs->ep, &rs->ep_moe, err);
    if (st == WD_OK && deepep)
        st = wd_ep_handle_create(rs->ep, &rs->ep_handle, err);
    if (st == WD_OK)
        st = wd_model_create(cfg->model_path, &mopt, &model, err);
    rs->model = model;
    /* Expert moves run over their own window on this rank's MoE-EP group. */
    if (st == WD_OK && rs->loc && model->experts_store) {
        char name[32];
        snprintf(name, sizeof(name), "eplb%d", rs->me->moe_tp_rank);
        const int *members = wd_group_set_members(&l->moe_ep_groups, rs->me->moe_tp_rank);
        st = wd_comm_transport_create(
            comm, name, members, l->moe_ep_size,
            wd_expert_move_window_bytes(l->moe_ep_size, model->experts_store->blob_bytes),
            &rs->move_t, err);
        if (st == WD_OK)
            st = wd_expert_mover_create(rs->move_t, model->experts_store, rs->timeout_ms,
                                        &rs->mover, err);
    }
    if (st == WD_OK) {
        struct wd_kv_pool_config kc = {.n_layers = model->cfg.n_layers,
                                       .page_size = cfg->page_size};
        wd_model_kv_geometry(model, &kc.k_row, &kc.v_row);
        kc.n_pages = (cfg->max_total_tokens + cfg->page_size - 1) / cfg->page_size;
        st = wd_kv_pool_create(&kc, &kv, err);
    }
    if (st == WD_OK)
        st = wd_scheduler_create(&sc, model, kv, on_token, rs, &sched, err);
    for (int i = 0; st == WD_OK && i < cfg->n_prompts; i++) {
        if (i % l->attn_dp_size != rs->me->attn_dp_rank)
            continue;
        struct wd_request_params p = cfg->params;
        p.prompt = cfg->prompts[i];
        p.n_prompt = cfg->n_ids[i];
        p.seed = cfg->params.seed + (uint64_t)i;
        st = wd_scheduler_add(sched, &p, &rs->req_prompt[i], err);
        if (st != WD_OK)
            wd_error_prefix(err, "prompt %d", i);
    }
    if (st == WD_OK)
        st = drive(rs, sched, err);
    if (st == WD_OK)
        st = recorder_dump(rs, err);
    if (st == WD_OK)
        st = metrics_write(rs, err);
    /* Every prompt's record from the first rank of its DP group, gathered to rank 0. */
    if (st == WD_OK) {
        size_t bytes = (size_t)cfg->n_prompts * run->rec_bytes;
        if (rs->me->attn_tp_rank != 0)
            memset(rs->records, 0, bytes);
        unsigned char *all = malloc(bytes * (size_t)l->world_size);
        if (!all)
            st = wd_error_set(err, WD_ERR_NOMEM, "offline: out of memory");
        if (st == WD_OK)
            st = wd_coll_all_gather(rs->groups->tp->coll, rs->records, bytes, all, rs->timeout_ms,
                                    err);
        if (st == WD_OK && rs->me->rank == 0)
            for (int i = 0; i < cfg->n_prompts; i++) {
                int leader = (i % l->attn_dp_size) * l->attn_tp_size;
                memcpy(record(run, run->shared, i), record(run, all + (size_t)leader * bytes, i),
                       run->rec_bytes);
            }
        free(all);
    }
    wd_scheduler_destroy(sched);
    wd_kv_pool_destroy(kv);
    wd_model_destroy(model);
    wd_metrics_destroy(rs->metrics);
    wd_expert_mover_destroy(rs->mover);
    if (st == WD_OK)
        wd_transport_destroy(rs->move_t);
    for (int d = 0; d < rs->n_dispatch; d++)
        wd_eplb_dispatch_destroy(rs->dispatch[d]);
    wd_expert_recorder_destroy(rs->recorder);
    wd_eplb_location_destroy(rs->loc);
    wd_eplb_location_destroy(rs->next);
    wd_ep_handle_destroy(rs->ep_handle);
    wd_ep_moe_destroy(rs->ep_moe);
    wd_ep_buffer_destroy(rs->ep);
    if (st == WD_OK) {
        wd_comm_groups_destroy(rs->groups);
        wd_comm_destroy(comm);
    }
    /* After an error the groups may be mid-round: leave them to process exit, which the
     * launcher turns into a clean shutdown of every rank. */
    return st;
}

static int rank_main(void *ctx, const struct wd_rank_info *ri)
{
    const struct run *run = ctx;
    const struct wd_offline_config *cfg = run->cfg;
    struct rank_state rs = {
        .run = run, .me = &cfg->layout->ranks[ri->rank], .timeout_ms = cfg->timeout_ms};
    wd_log_set_identity("generate", rs.me->prefix);
    struct wd_error err = {0};
    rs.records = calloc((size_t)cfg->n_prompts, run->rec_bytes);
    rs.req_prompt = calloc((size_t)cfg->n_prompts, sizeof(uint64_t));
    enum wd_status st = rs.records && rs.req_prompt
                            ? rank_run(&rs, ri, &err)
                            : wd_error_set(&err, WD_ERR_NOMEM, "offline: out of memory");
    free(rs.records);
    free(rs.req_prompt);
    if (st != WD_OK) {
        wd_log(WD_LOG_ERROR, "generate", "%s", err.msg);
        wd_rank_report(ri, &err);
        return 1;
    }
    return 0;
}

enum wd_status wd_offline_run_ranks(const struct wd_offline_config *cfg,
                                    struct wd_offline_result *results, struct wd_error *err)
{
    struct run run = {.cfg = cfg};
    run.rec_bytes = sizeof(struct record_head) +
                    (size_t)cfg->params.max_new_tokens * (sizeof(int32_t) + sizeof(float));
    size_t bytes = (size_t)cfg->n_prompts * run.rec_bytes;
    run.shared =
        mmap(NULL, bytes ? bytes : 1, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (run.shared == MAP_FAILED)
        return wd_error_set(err, WD_ERR_NOMEM, "offline: cannot map %zu bytes of results", bytes);
    struct wd_launch_config lc;
    wd_launch_config_init(&lc);
    wd_launch_config_from_layout(&lc, cfg->layout);
    if (cfg->timeout_ms > 0)
        lc.timeout_ms = cfg->timeout_ms;
    enum wd_status st = wd_launcher_run(&lc, rank_main, &run, err);
    if (st == WD_OK && cfg->layout->node_rank == 0)
        for (int i = 0; i < cfg->n_prompts; i++) {
            const unsigned char *r = record(&run, run.shared, i);
            const struct record_head *h = (const struct record_head *)r;
            const int32_t *out = (const int32_t *)(r + sizeof(*h));
            const float *lp = (const float *)(out + cfg->params.max_new_tokens);
            results[i].n_out = h->n_out;
            results[i].finish = (enum wd_finish_reason)h->finish;
            memcpy(results[i].out, out, (size_t)h->n_out * sizeof(int32_t));
            memcpy(results[i].logprobs, lp, (size_t)h->n_out * sizeof(float));
        }
    munmap(run.shared, bytes ? bytes : 1);
    return st;
}
