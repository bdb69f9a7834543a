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
#include "common/util/log.h"

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
};

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
    }
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
    struct wd_ep_config ec = {0};
    size_t ep_window = 0;
    int deepep = l->a2a_backend == WD_A2A_DEEPEP;
    if (st == WD_OK && deepep) {
        ec = (struct wd_ep_config){.n_ranks = l->moe_ep_size,
                                   .hidden = mc.hidden_size,
                                   .top_k = mc.num_experts_per_tok,
                                   .n_experts = mc.n_routed_experts,
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
