/* One rank's engine: bring-up from the server args, the step loop, commands and events. */
#include <stdlib.h>
#include <string.h>

#include "common/engine/engine_internal.h"
#include "common/util/log.h"

/* Flags the leader broadcasts with its commands. */
enum { STEP_STOP = 1, STEP_EXIT_IDLE = 2 };

static enum wd_status rank_all_reduce(void *ctx, enum wd_model_group g, float *buf, size_t n,
                                      struct wd_error *err)
{
    struct wd_engine *e = ctx;
    /* Attention partial sums stay in the attention-TP group; with the all-reduce MoE
     * backend the MoE and split dense layers are summed over the whole TP group. */
    struct wd_comm_group *grp = g == WD_GROUP_ATTN_TP ? e->groups->attn_tp : e->groups->tp;
    return wd_coll_all_reduce_f32(grp->coll, buf, n, e->timeout_ms, err);
}

/* The model's all-to-all hook: DeepEP normal or low-latency mode through common/ep. */
static enum wd_status rank_moe_a2a(void *ctx, const float *x, int64_t n, const int32_t *topk_idx,
                                   const float *topk_w, int low_latency,
                                   enum wd_status (*run_expert)(void *ectx, int local_expert,
                                                                const float *x, int n, float *y,
                                                                struct wd_error *err),
                                   void *ectx, float *out, struct wd_error *err)
{
    struct wd_engine *e = ctx;
    struct wd_ep_experts ex = {.run = run_expert, .ctx = ectx};
    struct wd_ep_moe_args a = {.x = x,
                               .n_tokens = (int)n,
                               .topk_idx = topk_idx,
                               .topk_w = topk_w,
                               .dispatch_payload = e->payload,
                               .combine_payload = WD_EP_PAYLOAD_F32};
    if (low_latency)
        return wd_ep_moe_ll(e->ep_moe, e->ep, &a, &ex, out, err);
    return wd_ep_moe_normal(e->ep_moe, e->ep, e->ep_handle, &a, &ex, out, err);
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

void wd_engine_sched_config(const struct wd_engine_config *cfg, struct wd_scheduler_config *sc)
{
    const struct wd_layout *l = cfg->layout;
    *sc = cfg->sched;
    sc->lockstep = l->attn_dp_size > 1;
    /* DeepEP low-latency mode carries at most WD_ENGINE_LL_MAX_TOKENS rows per rank per call
     * and each attention-TP rank dispatches every attn_tp-th row: cap the forward (prefill
     * chunks included) so no rank ever dispatches more, instead of failing long prompts. */
    if (l->a2a_backend == WD_A2A_DEEPEP && l->deepep_mode == WD_DEEPEP_LOW_LATENCY) {
        int cap = WD_ENGINE_LL_MAX_TOKENS * l->attn_tp_size;
        if (sc->max_forward_tokens == 0 || sc->max_forward_tokens > cap)
            sc->max_forward_tokens = cap;
    }
}

/* ---- events (leader only) ---- */

void wd_engine_push_event(struct wd_engine *e, const struct wd_engine_event *ev, const void *extra,
                          size_t extra_len)
{
    if (!e->is_leader)
        return;
    if (wd_engine_link_push_event(e->link, ev, extra, extra_len) != WD_OK)
        wd_log(WD_LOG_ERROR, "engine", "event of %zu bytes for request %llu does not fit the ring",
               sizeof(*ev) + extra_len, (unsigned long long)ev->id);
    e->events_pushed++;
}

void wd_engine_event_error(struct wd_engine *e, uint64_t id, enum wd_status status, const char *msg)
{
    if (!e->is_leader)
        return;
    struct wd_engine_event ev = {.kind = WD_ENGINE_EV_ERROR,
                                 .id = id,
                                 .dp_rank = e->me->attn_dp_rank,
                                 .token = -1,
                                 .finish = WD_FINISH_ERROR,
                                 .status = status};
    size_t len = strlen(msg);
    ev.extra = (int32_t)len;
    ev.bytes = (uint32_t)(sizeof(ev) + len);
    wd_engine_push_event(e, &ev, msg, len);
}

void wd_engine_token_event(const struct wd_engine *e, const struct wd_request *req, int32_t token,
                           float logprob, struct wd_engine_event *ev)
{
    *ev = (struct wd_engine_event){.kind = WD_ENGINE_EV_TOKEN,
                                   .bytes = sizeof(*ev),
                                   .id = req->id,
                                   .dp_rank = e->me->attn_dp_rank,
                                   .token = token,
                                   .logprob = logprob,
                                   .finish = req->finish,
                                   .is_prefilled = req->state == WD_REQ_PREFILLED,
                                   .n_prompt = req->params.n_prompt,
                                   .n_generated = wd_request_n_generated(req)};
    if (token >= 0 && req->params.top_logprobs > 0) {
        ev->n_top = req->params.top_logprobs;
        memcpy(ev->top_ids, req->top_ids, sizeof(ev->top_ids));
        memcpy(ev->top_logprobs, req->top_logprobs, sizeof(ev->top_logprobs));
    }
}

/* The scheduler's token callback: every rank of the group sees it, the leader reports it. */
static void on_token(void *ctx, const struct wd_request *req, int32_t token, float logprob)
{
    struct wd_engine *e = ctx;
    /* A disaggregated prefill reports after its transfer is flushed (end of the step). */
    if (wd_engine_pd_defer(e, req, token, logprob))
        return;
    if (req->finish != WD_FINISH_NONE)
        wd_engine_pd_forget(e, req->id);
    if (!e->is_leader)
        return;
    if (req->finish == WD_FINISH_ERROR) {
        wd_engine_event_error(e, req->id, WD_ERR_INVALID,
                              req->error ? req->error : "request failed");
        return;
    }
    struct wd_engine_event ev;
    wd_engine_token_event(e, req, token, logprob, &ev);
    wd_engine_push_event(e, &ev, NULL, 0);
}

/* ---- commands ---- */

/* Applies one checked command to the scheduler; refusals become error events. */
static void apply_cmd(struct wd_engine *e, const struct wd_engine_cmd *c, const int32_t *prompt)
{
    struct wd_error err = {0};
    struct wd_request_params p;
    uint64_t id = 0;
    enum wd_status st = WD_OK;
    switch (c->kind) {
    case WD_ENGINE_CMD_ADD:
        wd_engine_cmd_to_params(c, prompt, &p);
        /* A disaggregated prefill: its transfer target first, so a refusal adds nothing. */
        if (c->pd_peer)
            st = wd_engine_pd_track(e, c->id, c->pd_peer, prompt + c->n_prompt, c->n_remote_pages,
                                    &err);
        if (st == WD_OK)
            st = wd_scheduler_add(e->sched, &p, &id, &err);
        if (st != WD_OK && c->pd_peer)
            wd_engine_pd_forget(e, c->id);
        break;
    case WD_ENGINE_CMD_RESERVE:
        wd_engine_cmd_to_params(c, prompt, &p);
        st = wd_scheduler_reserve(e->sched, &p, &id, &err);
        if (st == WD_OK && e->is_leader) {
            const struct wd_request *r = wd_scheduler_find(e->sched, id);
            struct wd_engine_event ev = {.kind = WD_ENGINE_EV_RESERVED,
                                         .id = id,
                                         .dp_rank = e->me->attn_dp_rank,
                                         .token = -1,
                                         .n_prompt = r->params.n_prompt,
                                         .extra = r->n_pages};
            ev.bytes = (uint32_t)(sizeof(ev) + (size_t)r->n_pages * sizeof(int32_t));
            wd_engine_push_event(e, &ev, r->pages, (size_t)r->n_pages * sizeof(int32_t));
        }
        break;
    case WD_ENGINE_CMD_ACTIVATE:
        st = wd_scheduler_activate(e->sched, c->id, c->first_token, c->first_logprob, &err);
        break;
    case WD_ENGINE_CMD_ABORT:
        /* No page is freed while a put may still read it. Unknown is fine: the request may
         * have finished while the abort was on its way. */
        wd_engine_pd_before_free(e, c->id);
        wd_scheduler_abort(e->sched, c->id);
        break;
    case WD_ENGINE_CMD_RELEASE:
        if (wd_scheduler_release(e->sched, c->id) != WD_OK)
            wd_log(WD_LOG_DEBUG, "engine", "release of request %llu: not held",
                   (unsigned long long)c->id);
        wd_engine_pd_forget(e, c->id);
        break;
    case WD_ENGINE_CMD_PD_PEER:
        wd_engine_pd_define_peer(e, c, (const uint8_t *)prompt);
        break;
    }
    if (st != WD_OK)
        wd_engine_event_error(e, c->id, st, err.msg);
}

/* Leader: pops queued commands into e->cmds while they fit; returns the bytes taken. */
static size_t take_cmds(struct wd_engine *e)
{
    size_t len = 0;
    for (;;) {
        size_t next = wd_engine_link_peek_cmd(e->link);
        if (next == 0)
            break;
        size_t rec = 8 + ((next + 7) & ~(size_t)7); /* u64 length, record, padding */
        if (rec > e->cmds_cap) {
            /* Cannot happen with a well-behaved front-end (it checks sizes); drop it loudly
             * rather than wedge the ring. */
            uint8_t *tmp = malloc(next);
            if (tmp) {
                wd_engine_link_pop_cmd(e->link, tmp, next);
                free(tmp);
            }
            wd_log(WD_LOG_ERROR, "engine", "dropped a command of %zu bytes (buffer %zu)", next,
                   e->cmds_cap);
            continue;
        }
        if (len + rec > e->cmds_cap)
            break;
        uint64_t n = next;
        memcpy(e->cmds + len, &n, 8);
        wd_engine_link_pop_cmd(e->link, e->cmds + len + 8, next);
        len += rec;
    }
    return len;
}

/* Every rank of the group: runs the commands in e->cmds[0, len). */
static void apply_cmds(struct wd_engine *e, size_t len)
{
    struct wd_error err = {0};
    for (size_t off = 0; off + 8 <= len;) {
        uint64_t n;
        memcpy(&n, e->cmds + off, 8);
        const uint8_t *rec = e->cmds + off + 8;
        off += 8 + ((n + 7) & ~(uint64_t)7);
        if (off > len || wd_engine_cmd_check(rec, (size_t)n, &err) != WD_OK) {
            wd_log(WD_LOG_ERROR, "engine", "bad command record: %s", err.msg);
            return;
        }
        struct wd_engine_cmd c;
        memcpy(&c, rec, sizeof(c));
        /* The prompt follows the head; its alignment is the record's (8 bytes). */
        apply_cmd(e, &c, (const int32_t *)(rec + sizeof(c)));
    }
}

/* The leader's commands and flags of this step, on every rank of the attention-TP group. */
static enum wd_status exchange_cmds(struct wd_engine *e, int idle, int *flags_p,
                                    struct wd_error *err)
{
    uint64_t hdr[2] = {0, 0};
    if (e->is_leader) {
        wd_engine_link_wait_cmd(e->link, idle ? e->cfg.idle_wait_ms : 0);
        /* Flags before commands: everything queued before exit-when-idle was set is then
         * visible in the ring, so exiting never drops a command. */
        int stop = wd_engine_link_stop_requested(e->link);
        int exit_idle = wd_engine_link_exit_when_idle(e->link);
        hdr[0] = take_cmds(e);
        hdr[1] =
            (uint64_t)((stop ? STEP_STOP : 0) |
                       (exit_idle && wd_engine_link_peek_cmd(e->link) == 0 ? STEP_EXIT_IDLE : 0));
    }
    if (e->layout->attn_tp_size > 1) {
        struct wd_coll *c = e->groups->attn_tp->coll;
        WD_CHECK(wd_coll_broadcast(c, 0, hdr, sizeof(hdr), e->timeout_ms, err));
        if (hdr[0] > e->cmds_cap)
            return wd_error_set(err, WD_ERR_PEER, "engine: leader sent %llu command bytes",
                                (unsigned long long)hdr[0]);
        if (hdr[0] > 0)
            WD_CHECK(wd_coll_broadcast(c, 0, e->cmds, (size_t)hdr[0], e->timeout_ms, err));
    }
    apply_cmds(e, (size_t)hdr[0]);
    *flags_p = (int)hdr[1];
    return WD_OK;
}

static void publish_stats(struct wd_engine *e)
{
    if (!e->is_leader)
        return;
    struct wd_scheduler_stats s;
    wd_scheduler_stats(e->sched, &s);
    struct wd_engine_stats st = {.ready = 1,
                                 .running = s.n_running,
                                 .waiting = s.n_waiting,
                                 .reserved = s.n_reserved,
                                 .prefilled = s.n_prefilled,
                                 .free_pages = s.free_pages,
                                 .total_pages = s.total_pages,
                                 .queued_prefill_tokens = s.queued_prefill_tokens,
                                 .steps = e->steps,
                                 .forwards = (uint64_t)e->passes};
    wd_engine_link_publish_stats(e->link, &st);
    if (e->events_pushed) {
        wd_engine_link_notify(e->link);
        e->events_pushed = 0;
    }
}

enum wd_status wd_engine_run(struct wd_engine *e, struct wd_error *err)
{
    int idle = 0;
    enum wd_status st = WD_OK;
    for (;;) {
        int flags = 0;
        e->steps++;
        st = exchange_cmds(e, idle, &flags, err);
        if (st != WD_OK)
            break;
        int active = wd_scheduler_n_running(e->sched) + wd_scheduler_n_waiting(e->sched);
        /* One vote over every rank: work left anywhere, a stop anywhere, leaders done. */
        float vote[3] = {(float)active, (flags & STEP_STOP) ? 1.0f : 0.0f,
                         e->is_leader && (flags & STEP_EXIT_IDLE) ? 1.0f : 0.0f};
        st = wd_coll_all_reduce_f32(e->groups->tp->coll, vote, 3, e->timeout_ms, err);
        if (st != WD_OK)
            break;
        if (vote[1] > 0)
            break;
        if (vote[0] == 0) {
            if (vote[2] >= (float)e->layout->attn_dp_size)
                break;
            idle = 1;
            publish_stats(e);
            continue;
        }
        idle = 0;
        st = wd_scheduler_step(e->sched, NULL, err);
        if (st == WD_OK)
            st = wd_engine_pd_after_step(e, err);
        if (st == WD_OK) {
            e->passes++;
            st = wd_engine_eplb_after_pass(e, err);
        }
        if (st != WD_OK)
            break;
        publish_stats(e);
    }
    if (st != WD_OK)
        e->is_broken = 1;
    else
        st = wd_engine_recorder_dump(e, err);
    if (st == WD_OK)
        st = wd_engine_metrics_write(e, err);
    /* Whatever is left is aborted; the front-end hears about each request. */
    wd_scheduler_destroy(e->sched);
    e->sched = NULL;
    if (e->is_leader)
        wd_engine_link_notify(e->link);
    return st;
}

static enum wd_status engine_build(struct wd_engine *e, struct wd_error *err)
{
    const struct wd_engine_config *cfg = &e->cfg;
    const struct wd_layout *l = e->layout;
    struct wd_scheduler_config sc;
    wd_engine_sched_config(cfg, &sc);
    struct wd_model_options mopt = {.n_threads = cfg->n_threads,
                                    .is_weights_mapped = cfg->is_weights_mapped,
                                    .shard = shard_of(l, e->me),
                                    .comm = {.ctx = e, .all_reduce = rank_all_reduce}};
    if (cfg->kv_transfer)
        mopt.layer_hook = (struct wd_model_layer_hook){.fn = wd_engine_pd_layer_hook, .ctx = e};
    wd_scheduler_model_limits(&sc, cfg->max_prompt_tokens > 0 ? cfg->max_prompt_tokens : 1,
                              &mopt.max_batch_tokens, &mopt.max_logit_rows);
    /* Collective windows sized so one layer's hidden states go through in a few pieces. */
    size_t piece = (size_t)1 << 20;

    /* DeepEP buffers: the expert count and shapes come from config.json. */
    struct wd_model_config mc;
    WD_CHECK(wd_model_config_load(cfg->model_path, &mc, err));
    WD_CHECK(wd_engine_metrics_setup(e, err));
    if (wd_engine_eplb_wanted(cfg->sargs)) {
        WD_CHECK(wd_engine_eplb_setup(e, &mc, err));
        mopt.eplb = (struct wd_model_eplb){
            .loc = e->loc, .dispatch = e->dispatch, .n_dispatch = e->n_dispatch};
    }
    if (cfg->sargs &&
        (cfg->sargs->expert_distribution_recorder_mode || wd_engine_eplb_wanted(cfg->sargs))) {
        WD_CHECK(wd_engine_recorder_setup(e, &mc, err));
        mopt.recorder = e->recorder;
    }
    struct wd_ep_config ec = {0};
    size_t ep_window = 0;
    int deepep = l->a2a_backend == WD_A2A_DEEPEP;
    if (deepep) {
        ec = (struct wd_ep_config){.n_ranks = l->moe_ep_size,
                                   .hidden = mc.hidden_size,
                                   .top_k = mc.num_experts_per_tok,
                                   .n_experts = e->loc ? e->loc->n_physical : mc.n_routed_experts,
                                   .max_tokens = mopt.max_batch_tokens,
                                   .ll_max_tokens = WD_ENGINE_LL_MAX_TOKENS,
                                   .max_payload = WD_EP_PAYLOAD_F32,
                                   .timeout_ms = e->timeout_ms};
        WD_CHECK(dispatch_payload(mc.hidden_size, &e->payload, err));
        WD_CHECK(wd_ep_config_check(&ec, err));
        ep_window = wd_ep_window_bytes(&ec);
        mopt.comm.moe_a2a = rank_moe_a2a;
        mopt.comm.deepep_mode = (int)l->deepep_mode;
        mopt.comm.ll_max_tokens = WD_ENGINE_LL_MAX_TOKENS;
    }
    WD_CHECK(wd_comm_create(&e->ri, &e->comm, err));
    WD_CHECK(wd_comm_groups_create(e->comm, l, piece, ep_window, &e->groups, err));
    if (deepep) {
        WD_CHECK(wd_ep_buffer_create(&ec, e->groups->ep, &e->ep, err));
        WD_CHECK(wd_ep_moe_create(e->ep, &e->ep_moe, err));
        WD_CHECK(wd_ep_handle_create(e->ep, &e->ep_handle, err));
    }
    WD_CHECK(wd_model_create(cfg->model_path, &mopt, &e->model, err));
    WD_CHECK(wd_engine_mover_setup(e, err));
    struct wd_kv_pool_config kc = {.page_size = cfg->page_size, .dtype = cfg->kv_dtype};
    wd_model_kv_pool_config(e->model, &kc);
    kc.n_pages = (cfg->max_total_tokens + cfg->page_size - 1) / cfg->page_size;
    WD_CHECK(wd_kv_pool_create(&kc, &e->kv, err));
    WD_CHECK(wd_scheduler_create(&sc, e->model, e->kv, on_token, e, &e->sched, err));
    if (cfg->kv_transfer)
        WD_CHECK(wd_engine_pd_create(e, err));
    /* Room for the largest command (a prompt as long as the context) and a batch of
     * small ones. */
    e->cmds_cap = sizeof(struct wd_engine_cmd) + 16 + (size_t)sc.context_length * sizeof(int32_t);
    if (e->cmds_cap < ((size_t)1 << 20))
        e->cmds_cap = (size_t)1 << 20;
    e->cmds = malloc(e->cmds_cap);
    if (!e->cmds)
        return wd_error_set(err, WD_ERR_NOMEM, "engine: out of memory");
    return WD_OK;
}

enum wd_status wd_engine_create(const struct wd_engine_config *cfg, const struct wd_rank_info *ri,
                                struct wd_engine_link *link, struct wd_engine **e_p,
                                struct wd_error *err)
{
    struct wd_engine *e = calloc(1, sizeof(*e));
    if (!e)
        return wd_error_set(err, WD_ERR_NOMEM, "engine: out of memory");
    e->cfg = *cfg;
    e->layout = cfg->layout;
    e->me = &cfg->layout->ranks[ri->rank];
    e->ri = *ri;
    e->timeout_ms = cfg->timeout_ms;
    e->is_leader = e->me->attn_tp_rank == 0;
    e->link = link;
    WD_ASSERT(!e->is_leader || link);
    enum wd_status st = engine_build(e, err);
    if (st != WD_OK) {
        e->is_broken = 1;
        wd_engine_destroy(e);
        return st;
    }
    if (e->is_leader)
        publish_stats(e); /* ready */
    *e_p = e;
    return WD_OK;
}

void wd_engine_destroy(struct wd_engine *e)
{
    if (!e)
        return;
    if (e->is_broken && e->comm)
        wd_comm_mark_failed(e->comm);
    wd_scheduler_destroy(e->sched);
    wd_engine_pd_destroy(e); /* before the KV region it registered */
    wd_kv_pool_destroy(e->kv);
    wd_model_destroy(e->model);
    wd_engine_eplb_destroy(e);
    wd_ep_handle_destroy(e->ep_handle);
    wd_ep_moe_destroy(e->ep_moe);
    wd_ep_buffer_destroy(e->ep);
    /* After an error the groups may be mid-round: nothing waits for the peers (the launcher
     * turns this rank's exit into a shutdown of every rank); memory is released all the
     * same. */
    wd_comm_groups_destroy(e->groups);
    wd_comm_destroy(e->comm);
    free(e->cmds);
    free(e);
}

int wd_engine_rank_main(void *ctx, const struct wd_rank_info *ri)
{
    const struct wd_engine_rank_ctx *rc = ctx;
    const struct wd_rank_layout *me = &rc->cfg->layout->ranks[ri->rank];
    wd_log_set_identity(rc->cfg->role ? rc->cfg->role : "engine", me->prefix);
    struct wd_error err = {0};
    struct wd_engine *e = NULL;
    struct wd_engine_link *link = me->attn_tp_rank == 0 ? rc->links[me->attn_dp_rank] : NULL;
    enum wd_status st = wd_engine_create(rc->cfg, ri, link, &e, &err);
    if (st == WD_OK)
        st = wd_engine_run(e, &err);
    wd_engine_destroy(e);
    if (st != WD_OK) {
        wd_log(WD_LOG_ERROR, "engine", "%s", err.msg);
        wd_rank_report(ri, &err);
        return 1;
    }
    return 0;
}
