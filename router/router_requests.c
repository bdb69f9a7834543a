/*
 * A generation request's life after admission: queue, dispatch (router_dispatch.c: one
 * worker, or a prefill + decode pair), tokens in, text out (whole or streamed), and every
 * way it can end: finished, stopped by a stop string (the decode worker gets an Abort),
 * the client gone (Abort to both workers), the deadline (504 and Abort to both), a worker
 * failing (retried once elsewhere when nothing was streamed yet, else a clear error). A
 * request never hangs: each of these ends it, and the deadline ends the rest.
 *
 * Pairs fail fast: an Error from either worker of a disaggregated request, or either one
 * dropped, sends Abort to the other at once (both free their pages), and the retry goes to
 * a new pair without the failed worker (or to a decode worker alone when no other prefill
 * worker is eligible). A pair whose decode worker finished before the prefill worker's
 * KvDone reached the router holds its answer for that KvDone (WD_PD_KV_DONE_GRACE_SECS at
 * most), so that the transfer's figures reach the metrics and the answer.
 *
 * Re-entrancy: functions that end a request never dispatch queued ones; the entry points
 * called by the loop (chunk, error, client gone, worker failure, deadlines) pump the queue
 * once at their end, so a run of failures cannot recurse.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/util/log.h"
#include "router/router_internal.h"

#define INDEX_MASK ((1u << WD_RREQ_INDEX_BITS) - 1)

/* --- lists --- */

/* A request sits in two lists at once (the queue and its deadline list): each has its own
 * links in the request, picked by `which`. */
enum { IN_QUEUE = 0, IN_LIVE = 1 };

static struct wd_rreq_link *link_of(struct wd_rreq *rq, int which)
{
    return which == IN_QUEUE ? &rq->q : &rq->a;
}

static void list_push(struct wd_rreq_list *l, struct wd_rreq *rq, int which)
{
    struct wd_rreq_link *k = link_of(rq, which);
    k->prev = l->tail;
    k->next = NULL;
    if (l->tail)
        link_of(l->tail, which)->next = rq;
    else
        l->head = rq;
    l->tail = rq;
    l->n++;
}

static void list_unlink(struct wd_rreq_list *l, struct wd_rreq *rq, int which)
{
    struct wd_rreq_link *k = link_of(rq, which);
    if (k->prev)
        link_of(k->prev, which)->next = k->next;
    else
        l->head = k->next;
    if (k->next)
        link_of(k->next, which)->prev = k->prev;
    else
        l->tail = k->prev;
    k->prev = k->next = NULL;
    l->n--;
}

static struct wd_rreq_list *live_list(struct wd_router *r, struct wd_rreq *rq)
{
    return rq->is_health ? &r->health : &r->live;
}

/* Ends the load bookkeeping of a request on a worker that is still the one it was sent to. */
static void left_on(struct wd_router *r, struct wd_worker_ref ref, int rank)
{
    if (wd_workers_get(r->workers, ref))
        wd_workers_left(r->workers, ref.slot, rank);
}

static void update_gauges(struct wd_router *r)
{
    wd_metrics_set(r->m.reg, r->m.running, NULL, r->n_running);
    wd_metrics_set(r->m.reg, r->m.queued, NULL, r->queue.n);
}

/* --- ending a request --- */

/* Releases the slot and everything the request holds; answers nothing. */
static void finish(struct wd_router *r, struct wd_rreq *rq, const char *outcome)
{
    if (rq->state == WD_RREQ_RUNNING) {
        left_on(r, rq->worker, rq->dp_rank);
        wd_router_prefill_end(r, rq);
        if (rq->is_held)
            list_unlink(&r->held, rq, IN_QUEUE);
        r->n_running--;
    } else if (rq->state == WD_RREQ_QUEUED) {
        list_unlink(&r->queue, rq, IN_QUEUE);
    }
    list_unlink(live_list(r, rq), rq, IN_LIVE);
    if (rq->conn)
        wd_http_set_user(rq->conn, NULL);
    if (!rq->is_health)
        wd_metrics_add(r->m.reg, r->m.requests, outcome, 1);
    wd_api_request_cleanup(&rq->api);
    free(rq->prompt);
    if (rq->has_out)
        wd_output_cleanup(&rq->out);
    wd_buf_reset(&rq->sse);
    int index = rq->index;
    uint32_t gen = rq->gen + 1;
    struct wd_buf sse = rq->sse;
    memset(rq, 0, sizeof(*rq));
    rq->index = index;
    rq->gen = gen;
    rq->sse = sse;
    rq->q.next = r->free_slots;
    r->free_slots = rq;
    update_gauges(r);
}

/* Abort to both workers of the attempt (the prefill side while it is live). */
static void send_abort(struct wd_router *r, struct wd_rreq *rq, const char *reason)
{
    if (rq->state != WD_RREQ_RUNNING)
        return;
    wd_router_abort_side(r, rq, WD_SIDE_DECODE, reason);
    wd_router_abort_side(r, rq, WD_SIDE_PREFILL, reason);
}

static void resp_ctx(struct wd_router *r, struct wd_rreq *rq, struct wd_api_response_ctx *cx,
                     struct wd_api_kv_stats *kv)
{
    cx->req = &rq->api;
    cx->tok = r->model->tok;
    cx->id = rq->resp_id;
    cx->model = r->model->served_name;
    cx->created = rq->created;
    cx->prompt_tokens = rq->n_prompt;
    cx->cached_tokens = 0;
    cx->e2e_latency = wd_router_now() - rq->t_arrival;
    cx->kv = NULL;
    if (rq->api.kind == WD_API_GENERATE && rq->api.return_kv_transfer_stats) {
        wd_router_kv_stats(r, rq, kv);
        cx->kv = kv;
    }
}

/* Answers the client with an error (an SSE error event once the stream began), ends rq. */
static void fail(struct wd_router *r, struct wd_rreq *rq, const struct wd_api_error *e,
                 const char *outcome)
{
    if (rq->conn && rq->is_http_streaming) {
        wd_buf_reset(&rq->sse);
        if (wd_api_response_stream_error(e, &rq->sse) == WD_OK)
            wd_http_stream_write(rq->conn, rq->sse.p, rq->sse.len);
        wd_http_set_user(rq->conn, NULL);
        wd_http_stream_end(rq->conn);
    } else if (rq->conn) {
        struct wd_api_error he = *e;
        if (rq->is_health)
            wd_api_error_set(&he, 503, NULL, "health check failed: %s", e->message);
        wd_router_respond_error(rq->conn, &he, e->status == 503 ? r->args.retry_after_secs : 0);
    }
    rq->conn = NULL;
    finish(r, rq, outcome);
}

/* Sends whatever stream events the output has gained. */
static enum wd_status flush_stream(struct wd_router *r, struct wd_rreq *rq)
{
    struct wd_api_response_ctx cx;
    struct wd_api_kv_stats kv;
    resp_ctx(r, rq, &cx, &kv);
    wd_buf_reset(&rq->sse);
    WD_CHECK(wd_api_response_stream(&cx, &rq->out, &rq->ss, &rq->sse));
    if (rq->sse.len == 0)
        return WD_OK;
    if (!rq->is_http_streaming) {
        WD_CHECK(wd_http_stream_start(rq->conn, "text/event-stream"));
        rq->is_http_streaming = 1;
    }
    return wd_http_stream_write(rq->conn, rq->sse.p, rq->sse.len);
}

/* The output is finished: the answer goes out and the request ends (a pair whose prefill
 * worker's KvDone has not come yet waits for it in r->held first). */
static void complete(struct wd_router *r, struct wd_rreq *rq)
{
    double now = wd_router_now();
    if (rq->is_prefill_live) {
        rq->is_held = 1;
        rq->held_until = now + WD_PD_KV_DONE_GRACE_SECS;
        list_push(&r->held, rq, IN_QUEUE);
        return;
    }
    wd_workers_success(r->workers, rq->worker.slot);
    if (rq->is_health) {
        wd_http_set_user(rq->conn, NULL);
        wd_http_respond_text(rq->conn, 200, "text/plain", "OK", 2);
        rq->conn = NULL;
        finish(r, rq, "success");
        return;
    }
    enum wd_status st = WD_OK;
    if (rq->api.is_stream) {
        st = flush_stream(r, rq);
        if (st == WD_OK) {
            wd_http_set_user(rq->conn, NULL);
            wd_http_stream_end(rq->conn);
        }
    } else {
        struct wd_api_response_ctx cx;
        struct wd_api_kv_stats kv;
        resp_ctx(r, rq, &cx, &kv);
        wd_buf_reset(&rq->sse);
        st = wd_api_response_full(&cx, &rq->out, &rq->sse);
        if (st == WD_OK) {
            wd_http_set_user(rq->conn, NULL);
            wd_http_respond_text(rq->conn, 200, "application/json", rq->sse.p, rq->sse.len);
        }
    }
    if (st != WD_OK) {
        struct wd_api_error e;
        wd_api_error_set(&e, 500, NULL, "the router could not build the answer (out of memory)");
        fail(r, rq, &e, "router_error");
        return;
    }
    rq->conn = NULL;
    wd_metrics_observe(r->m.reg, r->m.e2e, NULL, now - rq->t_arrival);
    finish(r, rq, "success");
}

/* A held answer goes out (its KvDone came, or it will not come). */
static void release(struct wd_router *r, struct wd_rreq *rq)
{
    list_unlink(&r->held, rq, IN_QUEUE);
    rq->is_held = 0;
    wd_router_prefill_end(r, rq);
    complete(r, rq);
}

/* --- dispatch --- */

static const struct wd_worker_ref no_worker = {-1, 0};

/* Dispatches rq (a first try, or a retry without the excluded workers); on failure answers
 * and ends it. A worker that cannot be reached is left out once more. */
static void dispatch(struct wd_router *r, struct wd_rreq *rq, struct wd_worker_ref excl_p,
                     struct wd_worker_ref excl_d)
{
    struct wd_api_error e;
    struct wd_worker_ref bad;
    enum wd_rreq_side side;
    int rc = wd_router_dispatch_attempt(r, rq, excl_p, excl_d, &e, &bad, &side);
    if (rc == 1) {
        wd_log(WD_LOG_WARN, "request", "%s", e.message);
        if (wd_workers_get(r->workers, bad))
            wd_workers_failure(r->workers, bad.slot, r->args.worker_fail_threshold,
                               r->args.worker_cooloff_secs, wd_router_now());
        if (side == WD_SIDE_PREFILL)
            excl_p = bad;
        else
            excl_d = bad;
        rc = wd_router_dispatch_attempt(r, rq, excl_p, excl_d, &e, &bad, &side);
    }
    if (rc != 0) {
        fail(r, rq, &e,
             e.status == 503   ? "no_worker"
             : e.status == 500 ? "router_error"
                               : "worker_error");
        return;
    }
    if (rq->state == WD_RREQ_QUEUED)
        list_unlink(&r->queue, rq, IN_QUEUE);
    if (rq->n_attempts == 0) {
        rq->t_dispatch = rq->t_attempt;
        if (!rq->is_health)
            wd_metrics_observe(r->m.reg, r->m.queue_time, NULL, rq->t_attempt - rq->t_arrival);
        wd_metrics_add(r->m.reg, r->m.prompt_tokens, NULL, rq->n_prompt);
    }
    rq->n_attempts++;
    rq->state = WD_RREQ_RUNNING;
    r->n_running++;
    update_gauges(r);
}

void wd_router_pump(struct wd_router *r)
{
    if (r->is_stopping)
        return;
    while (r->queue.head && r->n_running < r->args.max_concurrent_requests)
        dispatch(r, r->queue.head, no_worker, no_worker);
}

static int any_eligible(struct wd_router *r, double now)
{
    for (int s = 0; s < WD_WORKERS_MAX; s++) {
        const struct wd_worker *wk = wd_workers_at_const(r->workers, s);
        if (wk && wk->role == WD_WORKER_DECODE && wd_worker_is_eligible(wk, now))
            return 1;
    }
    return 0;
}

static void add_stop_id(struct wd_rreq *rq, int32_t id)
{
    for (int i = 0; i < rq->n_stop_ids; i++)
        if (rq->stop_ids[i] == id)
            return;
    rq->stop_ids[rq->n_stop_ids++] = id;
}

void wd_router_admit(struct wd_router *r, struct wd_http_conn *c, struct wd_api_request *api,
                     int32_t *prompt, int n_prompt, int max_tokens, int is_health)
{
    double now = wd_router_now();
    struct wd_api_error e;
    int is_full = !is_health && r->n_running >= r->args.max_concurrent_requests &&
                  r->queue.n >= r->args.queue_size;
    if (r->is_stopping || !any_eligible(r, now) || is_full || !r->free_slots) {
        if (r->is_stopping) {
            wd_api_error_set(&e, 503, NULL, "the router is shutting down");
        } else if (is_full || (r->free_slots == NULL && any_eligible(r, now))) {
            wd_api_error_set(&e, 429, NULL,
                             "the router is at capacity (%d running, %d queued): retry later",
                             r->n_running, r->queue.n);
            wd_api_error_code(&e, "rate_limit_exceeded");
        } else {
            int n = wd_workers_count(r->workers, WD_WORKER_DECODE);
            wd_api_error_set(&e, 503, NULL,
                             n == 0 ? "no compatible worker is registered"
                                    : "none of the %d registered workers can take requests now "
                                      "(draining or cooled off)",
                             n);
        }
        free(prompt);
        wd_api_request_cleanup(api);
        if (!is_health)
            wd_metrics_add(r->m.reg, r->m.requests, e.status == 429 ? "rejected" : "no_worker", 1);
        wd_router_respond_error(c, &e, r->args.retry_after_secs);
        return;
    }
    struct wd_rreq *rq = r->free_slots;
    r->free_slots = rq->q.next;
    rq->q.next = NULL;
    rq->api = *api;
    memset(api, 0, sizeof(*api));
    rq->conn = c;
    rq->prompt = prompt;
    rq->n_prompt = n_prompt;
    rq->max_tokens = max_tokens;
    rq->is_health = is_health;
    rq->t_arrival = now;
    rq->deadline = now + (is_health ? WD_HEALTH_TIMEOUT_SECS : r->args.request_timeout_secs);
    rq->created = (long long)time(NULL);
    rq->worker.slot = -1;
    if (!rq->api.ignore_eos)
        for (int i = 0; i < r->model->n_eos; i++)
            add_stop_id(rq, r->model->eos[i]);
    for (int i = 0; i < rq->api.n_stop_ids; i++)
        add_stop_id(rq, rq->api.stop_ids[i]);
    const char *prefix = rq->api.kind == WD_API_CHAT ? "chatcmpl-" : "cmpl-";
    if (rq->api.kind == WD_API_GENERATE && rq->api.rid)
        snprintf(rq->resp_id, sizeof(rq->resp_id), "%s", rq->api.rid);
    else
        snprintf(rq->resp_id, sizeof(rq->resp_id), "%s%016llx%016llx", prefix,
                 (unsigned long long)r->boot_nonce, (unsigned long long)r->n_admitted);
    r->n_admitted++;
    struct wd_output_config oc = {.tok = r->model->tok,
                                  .skip_special_tokens = rq->api.skip_special_tokens,
                                  .stop = rq->api.stop,
                                  .stop_len = rq->api.stop_len,
                                  .n_stop = rq->api.n_stop,
                                  .stop_ids = rq->stop_ids,
                                  .n_stop_ids = rq->n_stop_ids,
                                  .no_stop_trim = rq->api.no_stop_trim,
                                  .logprobs = rq->api.logprobs,
                                  .top_logprobs = rq->api.logprobs ? rq->api.top_logprobs : 0};
    list_push(live_list(r, rq), rq, IN_LIVE);
    rq->state = WD_RREQ_QUEUED; /* until dispatched; not yet in the queue list */
    list_push(&r->queue, rq, IN_QUEUE);
    wd_http_defer(c);
    wd_http_set_user(c, rq);
    if (wd_output_init(&rq->out, &oc) != WD_OK) {
        wd_api_error_set(&e, 500, NULL, "out of memory");
        fail(r, rq, &e, "router_error");
        return;
    }
    rq->has_out = 1;
    if (is_health || r->n_running < r->args.max_concurrent_requests)
        dispatch(r, rq, no_worker, no_worker);
    else
        update_gauges(r);
}

/* --- events --- */

static int route_is(struct wd_router *r, struct wd_worker_ref ref, const unsigned char *route,
                    size_t route_len)
{
    const struct wd_worker *wk = wd_workers_get(r->workers, ref);
    return wk && wk->route_id_len == route_len && memcmp(wk->route_id, route, route_len) == 0;
}

/* The running request wire_id names, when the sender is one of its workers (*side_p: which);
 * only they may speak for it. */
static struct wd_rreq *lookup(struct wd_router *r, uint64_t wire_id, const unsigned char *route,
                              size_t route_len, enum wd_rreq_side *side_p)
{
    uint32_t index = (uint32_t)(wire_id & INDEX_MASK);
    if (index >= (uint32_t)r->n_slots)
        return NULL;
    struct wd_rreq *rq = &r->slots[index];
    if (rq->state != WD_RREQ_RUNNING || rq->wire_id != wire_id)
        return NULL;
    if (route_is(r, rq->worker, route, route_len))
        *side_p = WD_SIDE_DECODE;
    else if (rq->is_pd && route_is(r, rq->prefill, route, route_len))
        *side_p = WD_SIDE_PREFILL;
    else
        return NULL;
    return rq;
}

static enum wd_rreq_side other_side(enum wd_rreq_side side)
{
    return side == WD_SIDE_PREFILL ? WD_SIDE_DECODE : WD_SIDE_PREFILL;
}

/* The attempt failed on one side: the other side of a pair is aborted at once; then a retry
 * on a new pair (or worker) without the failed one when nothing was streamed, else a clear
 * error. kind is the pair failure to count (disaggregated requests only). */
static void attempt_failed(struct wd_router *r, struct wd_rreq *rq, enum wd_rreq_side side,
                           const char *reason, int counts_against_worker, enum wd_pd_failure kind)
{
    struct wd_worker_ref failed = side == WD_SIDE_PREFILL ? rq->prefill : rq->worker;
    struct wd_worker *wk = wd_workers_get(r->workers, failed);
    const char *name = wk ? wk->name : "?";
    int is_pd = rq->is_pd;
    if (is_pd) {
        wd_router_pd_failure(r, kind);
        wd_router_abort_side(r, rq, other_side(side), "pair_failed");
        wd_router_prefill_end(r, rq);
    }
    left_on(r, rq->worker, rq->dp_rank);
    r->n_running--;
    rq->state = WD_RREQ_FREE; /* between attempts: in no list but live */
    if (counts_against_worker && wk &&
        wd_workers_failure(r->workers, failed.slot, r->args.worker_fail_threshold,
                           r->args.worker_cooloff_secs, wd_router_now())) {
        wd_log(WD_LOG_WARN, "workers", "worker %s cooled off for %d s after %d failed requests",
               name, r->args.worker_cooloff_secs, r->args.worker_fail_threshold);
        wd_metrics_add(r->m.reg, r->m.worker_cooloffs, NULL, 1);
    }
    const char *role = !is_pd ? "" : side == WD_SIDE_PREFILL ? "prefill " : "decode ";
    if (rq->out.n == 0 && !rq->is_http_streaming && rq->n_attempts < 2 && rq->conn) {
        wd_log(WD_LOG_INFO, "request", "request %s: %sworker %s failed (%s); retrying %s",
               rq->resp_id, role, name, reason, is_pd ? "on a new pair" : "elsewhere");
        wd_metrics_add(r->m.reg, r->m.retries, NULL, 1);
        dispatch(r, rq, side == WD_SIDE_PREFILL ? failed : no_worker,
                 side == WD_SIDE_DECODE ? failed : no_worker);
        return;
    }
    struct wd_api_error e;
    wd_api_error_set(&e, 502, NULL, "the %sworker serving this request failed: %s", role, reason);
    fail(r, rq, &e, "worker_error");
}

void wd_router_on_chunk(struct wd_router *r, const unsigned char *route, size_t route_len,
                        const struct wd_msg_token_chunk *ch)
{
    enum wd_rreq_side side;
    struct wd_rreq *rq = lookup(r, ch->request_id, route, route_len, &side);
    if (rq && rq->is_held)
        return; /* finished here; the decode worker's last words after a stop string */
    if (!rq || side != WD_SIDE_DECODE) {
        /* Ended here (aborted, timed out, retried) or issued by a router before a restart:
         * the worker is still generating for nobody, so tell it to stop (an Abort of a
         * request it already dropped is a no-op there). */
        wd_log(WD_LOG_DEBUG, "request", "token chunk for %llx: no such running request",
               (unsigned long long)ch->request_id);
        if (ch->finish == WD_MSG_FINISH_NONE)
            wd_router_send_abort_to(r, route, route_len, ch->request_id);
        return;
    }
    if (ch->finish == WD_MSG_FINISH_ABORT) {
        attempt_failed(r, rq, WD_SIDE_DECODE, "the worker aborted it", 0, WD_PD_DECODE_ERROR);
        wd_router_pump(r);
        return;
    }
    double now = wd_router_now();
    if (ch->n_tokens > 0) {
        if (rq->t_first == 0) {
            rq->t_first = now;
            if (!rq->is_health)
                wd_metrics_observe(r->m.reg, r->m.ttft, NULL, now - rq->t_arrival);
        } else if (!rq->is_health) {
            double gap = (now - rq->t_last) / ch->n_tokens;
            for (int i = 0; i < ch->n_tokens; i++)
                wd_metrics_observe(r->m.reg, r->m.itl, NULL, gap);
        }
        rq->t_last = now;
    }
    enum wd_output_finish wf = ch->finish == WD_MSG_FINISH_LENGTH ? WD_OUTPUT_LENGTH
                               : ch->finish == WD_MSG_FINISH_STOP ? WD_OUTPUT_STOP_TOKEN
                                                                  : WD_OUTPUT_RUNNING;
    int n_before = rq->out.n;
    enum wd_status st = wd_output_push(&rq->out, ch->token_ids, ch->logprobs, ch->top_ids,
                                       ch->top_logprobs, ch->n_top, ch->n_tokens, wf);
    wd_metrics_add(r->m.reg, r->m.generation_tokens, NULL, rq->out.n - n_before);
    if (st == WD_OK && wd_output_is_finished(&rq->out)) {
        if (wf == WD_OUTPUT_RUNNING) /* a stop string: the decode worker would go on */
            wd_router_abort_side(r, rq, WD_SIDE_DECODE, "stop");
        complete(r, rq);
    } else if (st == WD_OK && rq->api.is_stream) {
        st = flush_stream(r, rq);
    }
    if (st != WD_OK) {
        struct wd_api_error e;
        wd_api_error_set(&e, 500, NULL, "the router ran out of memory for this request");
        send_abort(r, rq, "router_error");
        fail(r, rq, &e, "router_error");
    }
    wd_router_pump(r);
}

void wd_router_on_request_error(struct wd_router *r, const unsigned char *route, size_t route_len,
                                const struct wd_msg_error *we)
{
    enum wd_rreq_side side;
    struct wd_rreq *rq = lookup(r, we->request_id, route, route_len, &side);
    if (!rq)
        return;
    if (side == WD_SIDE_PREFILL && !rq->is_prefill_live) {
        wd_log(WD_LOG_DEBUG, "request", "request %s: prefill worker error after its part: %s",
               rq->resp_id, we->message);
        return;
    }
    if (rq->is_held) { /* the answer is complete: only the prefill side's figures are missing */
        if (side == WD_SIDE_PREFILL)
            release(r, rq);
        wd_router_pump(r);
        return;
    }
    enum wd_pd_failure kind = side == WD_SIDE_PREFILL ? WD_PD_PREFILL_ERROR : WD_PD_DECODE_ERROR;
    struct wd_api_error e;
    switch (we->code) {
    case WD_ERR_INVALID:
    case WD_ERR_UNSUPPORTED:
    case WD_ERR_TIMEOUT:
        if (rq->is_pd) {
            wd_router_pd_failure(r, we->code == WD_ERR_TIMEOUT ? WD_PD_TIMEOUT : kind);
            wd_router_abort_side(r, rq, other_side(side), "pair_failed");
        }
        if (we->code == WD_ERR_TIMEOUT) {
            wd_api_error_set(&e, 504, NULL, "the worker hit the deadline: %s", we->message);
            fail(r, rq, &e, "timeout");
        } else {
            wd_api_error_set(&e, 400, NULL, "the worker refused the request: %s", we->message);
            fail(r, rq, &e, "bad_request");
        }
        break;
    case WD_ERR_NOMEM:
        attempt_failed(r, rq, side, we->message, 0, kind); /* full, not broken */
        break;
    default:
        attempt_failed(r, rq, side, we->message, 1, kind);
        break;
    }
    wd_router_pump(r);
}

void wd_router_on_kv_done(struct wd_router *r, const unsigned char *route, size_t route_len,
                          const struct wd_msg_kv_done *kd)
{
    enum wd_rreq_side side;
    struct wd_rreq *rq = lookup(r, kd->request_id, route, route_len, &side);
    if (!rq || side != WD_SIDE_PREFILL || !rq->is_prefill_live) {
        /* Retried, aborted or ended here: the transfer went to pages already freed. */
        wd_log(WD_LOG_DEBUG, "request", "kv done for %llx: no such prefill in flight",
               (unsigned long long)kd->request_id);
        return;
    }
    wd_router_kv_done_record(r, rq, kd);
    if (rq->is_held)
        release(r, rq);
    wd_router_pump(r);
}

void wd_router_client_gone(struct wd_router *r, struct wd_rreq *rq)
{
    rq->conn = NULL;
    send_abort(r, rq, "client");
    finish(r, rq, "client_gone");
    wd_router_pump(r);
}

void wd_router_fail_worker_requests(struct wd_router *r, int slot, const char *reason)
{
    struct wd_rreq_list *lists[2] = {&r->live, &r->health};
    for (int l = 0; l < 2; l++) {
        struct wd_rreq *next;
        for (struct wd_rreq *rq = lists[l]->head; rq; rq = next) {
            next = rq->a.next;
            if (rq->state != WD_RREQ_RUNNING)
                continue;
            int is_d = rq->worker.slot == slot && wd_workers_get(r->workers, rq->worker);
            int is_p = rq->is_prefill_live && rq->prefill.slot == slot &&
                       wd_workers_get(r->workers, rq->prefill);
            if (rq->is_held && (is_d || is_p))
                release(r, rq); /* the answer is complete */
            else if (is_d)
                attempt_failed(r, rq, WD_SIDE_DECODE, reason, 1, WD_PD_DECODE_LOST);
            else if (is_p)
                attempt_failed(r, rq, WD_SIDE_PREFILL, reason, 1, WD_PD_PREFILL_LOST);
        }
    }
    wd_router_pump(r);
}

void wd_router_fail_all(struct wd_router *r, const char *why)
{
    struct wd_api_error e;
    wd_api_error_set(&e, 503, NULL, "%s", why);
    struct wd_rreq_list *lists[2] = {&r->live, &r->health};
    for (int l = 0; l < 2; l++)
        while (lists[l]->head) {
            struct wd_rreq *rq = lists[l]->head;
            send_abort(r, rq, "shutdown");
            fail(r, rq, &e, "shutdown");
        }
}

static double expire_list(struct wd_router *r, struct wd_rreq_list *l, double now)
{
    while (l->head && l->head->deadline <= now) {
        struct wd_rreq *rq = l->head;
        if (rq->is_held) {
            release(r, rq); /* complete but for the KvDone's figures */
            continue;
        }
        if (rq->is_pd && rq->state == WD_RREQ_RUNNING)
            wd_router_pd_failure(r, WD_PD_TIMEOUT);
        struct wd_api_error e;
        wd_api_error_set(&e, 504, NULL, "the request did not finish within %d s",
                         rq->is_health ? (int)WD_HEALTH_TIMEOUT_SECS
                                       : r->args.request_timeout_secs);
        wd_log(WD_LOG_INFO, "request", "request %s: deadline passed (%d tokens so far)",
               rq->resp_id, rq->out.n);
        send_abort(r, rq, "deadline");
        fail(r, rq, &e, "timeout");
    }
    return l->head ? l->head->deadline - now : 1.0;
}

/* Held answers whose KvDone did not come within the grace go out without its figures. */
static double expire_held(struct wd_router *r, double now)
{
    while (r->held.head && r->held.head->held_until <= now) {
        struct wd_rreq *rq = r->held.head;
        wd_log(WD_LOG_INFO, "request",
               "request %s: no KvDone from its prefill worker %.1f s after the answer; answering "
               "without the transfer's figures",
               rq->resp_id, WD_PD_KV_DONE_GRACE_SECS);
        release(r, rq);
    }
    return r->held.head ? r->held.head->held_until - now : 1.0;
}

double wd_router_check_deadlines(struct wd_router *r, double now)
{
    double a = expire_list(r, &r->live, now);
    double b = expire_list(r, &r->health, now);
    double c = expire_held(r, now);
    wd_router_pump(r);
    a = a < b ? a : b;
    return a < c ? a : c;
}
