/*
 * One attempt of a request: where it goes (router/pd_route.h: a decode worker alone, or a
 * prefill + decode pair), the messages that carry it, and the bookkeeping of a pair.
 *
 * A disaggregated attempt sends DecodeRequest to D (D's DP rank; peer: P's instance id,
 * bootstrap endpoint and DP rank) and then PrefillRequest to P (P's DP rank; peer: D's
 * instance id and DP rank), both with the same request id and deadline. D reserves the
 * pages and tells P where to write them; the two meet by request id, in either order. D
 * streams TokenChunks as for a GenerateRequest; P's part ends with its KvDone to the
 * router, whose figures go to the metrics and, when asked, to the answer. Everything
 * here runs on the event loop; the request's state is router_requests.c's to change.
 */
#include <string.h>

#include "common/util/log.h"
#include "router/router_internal.h"

static void fill_generate(struct wd_rreq *rq, struct wd_msg *m, double now)
{
    struct wd_msg_generate *g = &m->generate;
    g->request_id = rq->wire_id;
    g->n_input_ids = rq->n_prompt;
    g->input_ids = rq->prompt;
    g->sampling.temperature = rq->api.temperature;
    g->sampling.top_p = rq->api.top_p;
    g->sampling.top_k = rq->api.top_k;
    g->sampling.min_p = rq->api.min_p;
    g->sampling.has_seed = rq->api.has_seed;
    g->sampling.seed = rq->api.seed;
    g->n_stop_ids = rq->n_stop_ids;
    g->stop_ids = rq->stop_ids;
    g->max_new_tokens = rq->max_tokens;
    g->is_ignore_eos = rq->api.ignore_eos;
    double left_ms = (rq->deadline - now) * 1000.0;
    g->deadline_ms = left_ms < 1 ? 1 : left_ms > 4e9 ? 4000000000u : (uint32_t)left_ms;
    g->dp_rank = rq->dp_rank;
    g->is_return_logprobs = rq->api.logprobs;
    g->n_top_logprobs = rq->api.logprobs ? rq->api.top_logprobs : 0;
}

static void set_peer(struct wd_msg_pd_peer *p, const struct wd_worker *wk, const char *endpoint,
                     int dp_rank)
{
    snprintf(p->instance_id, sizeof(p->instance_id), "%s", wk->name);
    snprintf(p->bootstrap_endpoint, sizeof(p->bootstrap_endpoint), "%s", endpoint);
    p->dp_rank = dp_rank;
}

static int64_t pages_for(const struct wd_worker *wk, int64_t n_tokens)
{
    return (n_tokens + wk->page_size - 1) / wk->page_size;
}

void wd_router_pd_failure(struct wd_router *r, enum wd_pd_failure kind)
{
    wd_metrics_add(r->m.reg, r->m.pd_failures, wd_pd_failure_name(kind), 1);
}

/* Sends m to the worker of slot: 0; -1 (e: 500) for a message the protocol refuses (ours,
 * not the worker's); 1 (e: 502) when the worker cannot be reached. */
static int send_or_explain(struct wd_router *r, struct wd_rreq *rq, int slot,
                           const struct wd_msg *m, struct wd_api_error *e)
{
    struct wd_error err = {0};
    enum wd_status st = wd_router_send(r, slot, m, &err);
    if (st == WD_OK)
        return 0;
    if (st == WD_ERR_INVALID) {
        wd_log(WD_LOG_ERROR, "request", "request %s: %s", rq->resp_id, err.msg);
        wd_api_error_set(e, 500, NULL, "the router built an invalid request: %s", err.msg);
        return -1;
    }
    wd_api_error_set(e, 502, NULL, "could not send the request to worker %s: %s",
                     wd_workers_at(r->workers, slot)->name, err.msg);
    return 1;
}

int wd_router_dispatch_attempt(struct wd_router *r, struct wd_rreq *rq, struct wd_worker_ref excl_p,
                               struct wd_worker_ref excl_d, struct wd_api_error *e,
                               struct wd_worker_ref *unreachable_p, enum wd_rreq_side *side_p)
{
    double now = wd_router_now();
    struct wd_pd_request req = {.ids = rq->prompt,
                                .n_ids = rq->n_prompt,
                                .max_tokens = rq->max_tokens,
                                .exclude_prefill = excl_p,
                                .exclude_decode = excl_d};
    struct wd_pd_choice ch;
    if (wd_pd_route_pick(r->route, r->workers, &req, now, &ch) != 0) {
        int n = wd_workers_count(r->workers, WD_WORKER_DECODE);
        wd_api_error_set(e, 503, NULL,
                         n == 0 ? "no compatible worker is registered"
                                : "no worker can take the request now (%d registered: draining, "
                                  "cooled off after failures, or the one that just failed)",
                         n);
        return -1;
    }
    rq->gen++;
    rq->wire_id = ((uint64_t)rq->gen << WD_RREQ_INDEX_BITS) | (uint64_t)rq->index;
    rq->worker = wd_workers_ref(r->workers, ch.decode.slot);
    rq->dp_rank = ch.decode.rank;
    rq->is_pd = ch.mode == WD_PD_DISAGGREGATED;
    rq->prefill =
        rq->is_pd ? wd_workers_ref(r->workers, ch.prefill.slot) : (struct wd_worker_ref){-1, 0};
    rq->prefill_dp_rank = rq->is_pd ? ch.prefill.rank : 0;
    rq->is_prefill_live = 0;
    memset(&rq->kv, 0, sizeof(rq->kv));
    struct wd_worker *d = wd_workers_at(r->workers, ch.decode.slot);
    struct wd_worker *p = rq->is_pd ? wd_workers_at(r->workers, ch.prefill.slot) : NULL;

    struct wd_msg m;
    wd_msg_init(&m, rq->is_pd ? WD_MSG_DECODE_REQUEST : WD_MSG_GENERATE);
    fill_generate(rq, &m, now);
    if (p)
        set_peer(&m.generate.peer, p, p->bootstrap, rq->prefill_dp_rank);
    int rc = send_or_explain(r, rq, ch.decode.slot, &m, e);
    if (rc != 0) {
        *unreachable_p = rq->worker;
        *side_p = WD_SIDE_DECODE;
        if (rc == 1 && p)
            wd_router_pd_failure(r, WD_PD_DECODE_LOST);
        return rc;
    }
    if (p) {
        m.kind = WD_MSG_PREFILL_REQUEST;
        m.generate.dp_rank = rq->prefill_dp_rank;
        set_peer(&m.generate.peer, d, "", rq->dp_rank);
        rc = send_or_explain(r, rq, ch.prefill.slot, &m, e);
        if (rc != 0) {
            /* D has it and reserves pages for a prefill that will never come. */
            wd_router_abort_side(r, rq, WD_SIDE_DECODE, "pair_failed");
            *unreachable_p = rq->prefill;
            *side_p = WD_SIDE_PREFILL;
            if (rc == 1)
                wd_router_pd_failure(r, WD_PD_PREFILL_LOST);
            return rc;
        }
        wd_workers_placed(r->workers, ch.prefill.slot, rq->prefill_dp_rank,
                          pages_for(p, rq->n_prompt));
        rq->is_prefill_live = 1;
    }
    wd_workers_placed(r->workers, ch.decode.slot, rq->dp_rank,
                      pages_for(d, (int64_t)rq->n_prompt + rq->max_tokens));
    rq->t_attempt = now;
    wd_metrics_add(r->m.reg, r->m.pd_requests, wd_pd_mode_name(ch.mode), 1);
    if (p)
        wd_log(WD_LOG_DEBUG, "request", "request %s (%llx): prefill %s dp%d, decode %s dp%d",
               rq->resp_id, (unsigned long long)rq->wire_id, p->name, rq->prefill_dp_rank, d->name,
               rq->dp_rank);
    return 0;
}

void wd_router_prefill_end(struct wd_router *r, struct wd_rreq *rq)
{
    if (!rq->is_prefill_live)
        return;
    rq->is_prefill_live = 0;
    if (wd_workers_get(r->workers, rq->prefill))
        wd_workers_left(r->workers, rq->prefill.slot, rq->prefill_dp_rank);
}

void wd_router_abort_side(struct wd_router *r, struct wd_rreq *rq, enum wd_rreq_side side,
                          const char *reason)
{
    struct wd_worker_ref ref = rq->worker;
    if (side == WD_SIDE_PREFILL) {
        if (!rq->is_prefill_live)
            return;
        ref = rq->prefill;
        wd_router_prefill_end(r, rq);
    }
    if (!wd_workers_get(r->workers, ref))
        return; /* gone: nothing to stop there */
    struct wd_msg m;
    wd_msg_init(&m, WD_MSG_ABORT);
    m.abort.request_id = rq->wire_id;
    struct wd_error err = {0};
    if (wd_router_send(r, ref.slot, &m, &err) == WD_OK)
        wd_metrics_add(r->m.reg, r->m.aborts, reason, 1);
    else
        wd_log(WD_LOG_DEBUG, "request", "abort of %llx (%s) not sent: %s",
               (unsigned long long)rq->wire_id, reason, err.msg);
}

void wd_router_kv_done_record(struct wd_router *r, struct wd_rreq *rq,
                              const struct wd_msg_kv_done *kd)
{
    double now = wd_router_now();
    struct wd_rreq_kv *kv = &rq->kv;
    kv->has_done = 1;
    kv->bytes = kd->kv_bytes;
    kv->transfer_us = kd->transfer_us;
    kv->wait_target_us = kd->wait_target_us;
    kv->prefill_secs = now - rq->t_attempt;
    wd_workers_success(r->workers, rq->prefill.slot);
    wd_router_prefill_end(r, rq);
    if (rq->is_health)
        return;
    struct wd_router_metrics *m = &r->m;
    double secs = kd->transfer_us / 1e6;
    wd_metrics_observe(m->reg, m->kv_transfer_time, NULL, secs);
    wd_metrics_observe(m->reg, m->kv_transfer_bytes, NULL, (double)kd->kv_bytes);
    if (kd->transfer_us > 0)
        wd_metrics_observe(m->reg, m->kv_transfer_rate, NULL, (double)kd->kv_bytes / 1e9 / secs);
    wd_metrics_observe(m->reg, m->kv_wait_target, NULL, kd->wait_target_us / 1e6);
    wd_metrics_observe(m->reg, m->pd_prefill_time, NULL, kv->prefill_secs);
}

void wd_router_kv_stats(struct wd_router *r, const struct wd_rreq *rq, struct wd_api_kv_stats *s)
{
    memset(s, 0, sizeof(*s));
    s->is_disaggregated = rq->is_pd;
    if (!rq->is_pd)
        return;
    const struct wd_worker *p = wd_workers_get(r->workers, rq->prefill);
    const struct wd_worker *d = wd_workers_get(r->workers, rq->worker);
    s->prefill_worker = p ? p->name : NULL;
    s->decode_worker = d ? d->name : NULL;
    s->prefill_dp_rank = rq->prefill_dp_rank;
    s->decode_dp_rank = rq->dp_rank;
    s->has_done = rq->kv.has_done;
    s->kv_bytes = rq->kv.bytes;
    s->transfer_secs = rq->kv.transfer_us / 1e6;
    s->wait_target_secs = rq->kv.wait_target_us / 1e6;
    s->prefill_secs = rq->kv.prefill_secs;
}
