/*
 * A generation request's life after admission: queue, dispatch to a (worker, DP rank),
 * tokens in, text out (whole or streamed), and every way it can end: finished, stopped by
 * a stop string (the worker gets an Abort), the client gone (Abort), the deadline (504 and
 * Abort), the worker failing (retried once elsewhere when nothing was streamed yet, else a
 * clear error). A request never hangs: each of these ends it, and the deadline ends the
 * rest.
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
        wd_workers_left(r->workers, rq->worker.slot, rq->dp_rank);
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

static void send_abort(struct wd_router *r, struct wd_rreq *rq, const char *reason)
{
    if (rq->state != WD_RREQ_RUNNING)
        return;
    struct wd_msg m;
    wd_msg_init(&m, WD_MSG_ABORT);
    m.abort.request_id = rq->wire_id;
    struct wd_error err = {0};
    if (wd_router_send(r, rq->worker.slot, &m, &err) == WD_OK)
        wd_metrics_add(r->m.reg, r->m.aborts, reason, 1);
    else
        wd_log(WD_LOG_DEBUG, "request", "abort of %llx (%s) not sent: %s",
               (unsigned long long)rq->wire_id, reason, err.msg);
}

static void resp_ctx(struct wd_router *r, struct wd_rreq *rq, struct wd_api_response_ctx *cx)
{
    cx->req = &rq->api;
    cx->tok = r->model->tok;
    cx->id = rq->resp_id;
    cx->model = r->model->served_name;
    cx->created = rq->created;
    cx->prompt_tokens = rq->n_prompt;
    cx->cached_tokens = 0;
    cx->e2e_latency = wd_router_now() - rq->t_arrival;
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
    resp_ctx(r, rq, &cx);
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

/* The output is finished: the answer goes out and the request ends. */
static void complete(struct wd_router *r, struct wd_rreq *rq)
{
    double now = wd_router_now();
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
        resp_ctx(r, rq, &cx);
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

/* --- dispatch --- */

static void fill_generate(struct wd_router *r, struct wd_rreq *rq, struct wd_msg *m, double now)
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
    (void)r;
}

static int dispatch_once(struct wd_router *r, struct wd_rreq *rq, struct wd_worker_ref exclude,
                         struct wd_api_error *e)
{
    double now = wd_router_now();
    struct wd_route_ctx ctx = {.ids = rq->prompt,
                               .n_ids = rq->n_prompt,
                               .n_tokens = rq->n_prompt + rq->max_tokens,
                               .exclude = exclude};
    struct wd_policy_pick pick;
    if (wd_policy_pick(r->policy, r->workers, WD_WORKER_DECODE, &ctx, now, &pick) != 0) {
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
    rq->dp_rank = pick.rank;
    rq->worker = wd_workers_ref(r->workers, pick.slot);
    struct wd_msg m;
    wd_msg_init(&m, WD_MSG_GENERATE);
    fill_generate(r, rq, &m, now);
    struct wd_error err = {0};
    enum wd_status st = wd_router_send(r, pick.slot, &m, &err);
    if (st == WD_ERR_INVALID) { /* a message the protocol refuses: ours, not the worker's */
        wd_log(WD_LOG_ERROR, "request", "request %s: %s", rq->resp_id, err.msg);
        wd_api_error_set(e, 500, NULL, "the router built an invalid request: %s", err.msg);
        return -1;
    }
    if (st != WD_OK) {
        wd_api_error_set(e, 502, NULL, "could not send the request to worker %s: %s",
                         wd_workers_at(r->workers, pick.slot)->name, err.msg);
        return 1; /* that worker is unreachable: another may do */
    }
    struct wd_worker *wk = wd_workers_at(r->workers, pick.slot);
    int64_t pages = ((int64_t)ctx.n_tokens + wk->page_size - 1) / wk->page_size;
    wd_workers_placed(r->workers, pick.slot, pick.rank, pages);
    if (rq->state == WD_RREQ_QUEUED)
        list_unlink(&r->queue, rq, IN_QUEUE);
    if (rq->n_attempts == 0) {
        rq->t_dispatch = now;
        if (!rq->is_health)
            wd_metrics_observe(r->m.reg, r->m.queue_time, NULL, now - rq->t_arrival);
        wd_metrics_add(r->m.reg, r->m.prompt_tokens, NULL, rq->n_prompt);
    }
    rq->n_attempts++;
    rq->state = WD_RREQ_RUNNING;
    r->n_running++;
    update_gauges(r);
    return 0;
}

/* Dispatches rq (a first try or a retry away from `exclude`); on failure answers and ends
 * it. A worker that cannot be reached is skipped once. */
static void dispatch(struct wd_router *r, struct wd_rreq *rq, struct wd_worker_ref exclude)
{
    struct wd_api_error e;
    int rc = dispatch_once(r, rq, exclude, &e);
    if (rc == 1) {
        wd_log(WD_LOG_WARN, "request", "%s", e.message);
        wd_workers_failure(r->workers, rq->worker.slot, r->args.worker_fail_threshold,
                           r->args.worker_cooloff_secs, wd_router_now());
        rc = dispatch_once(r, rq, rq->worker, &e);
    }
    if (rc != 0)
        fail(r, rq, &e,
             e.status == 503   ? "no_worker"
             : e.status == 500 ? "router_error"
                               : "worker_error");
}

void wd_router_pump(struct wd_router *r)
{
    if (r->is_stopping)
        return;
    while (r->queue.head && r->n_running < r->args.max_concurrent_requests)
        dispatch(r, r->queue.head, (struct wd_worker_ref){-1, 0});
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
        dispatch(r, rq, (struct wd_worker_ref){-1, 0});
    else
        update_gauges(r);
}

/* --- events --- */

static struct wd_rreq *lookup(struct wd_router *r, uint64_t wire_id, const unsigned char *route,
                              size_t route_len)
{
    uint32_t index = (uint32_t)(wire_id & INDEX_MASK);
    if (index >= (uint32_t)r->n_slots)
        return NULL;
    struct wd_rreq *rq = &r->slots[index];
    if (rq->state != WD_RREQ_RUNNING || rq->wire_id != wire_id)
        return NULL;
    /* Only the worker serving it may speak for it. */
    struct wd_worker *wk = wd_workers_get(r->workers, rq->worker);
    if (!wk || wk->route_id_len != route_len || memcmp(wk->route_id, route, route_len) != 0)
        return NULL;
    return rq;
}

/* The attempt on rq's worker failed: retry elsewhere when nothing was streamed, else fail. */
static void attempt_failed(struct wd_router *r, struct wd_rreq *rq, const char *reason,
                           int counts_against_worker)
{
    struct wd_worker_ref failed = rq->worker;
    struct wd_worker *wk = wd_workers_get(r->workers, failed);
    const char *name = wk ? wk->name : "?";
    wd_workers_left(r->workers, failed.slot, rq->dp_rank);
    r->n_running--;
    rq->state = WD_RREQ_FREE; /* between attempts: in no list but live */
    if (counts_against_worker && wk &&
        wd_workers_failure(r->workers, failed.slot, r->args.worker_fail_threshold,
                           r->args.worker_cooloff_secs, wd_router_now())) {
        wd_log(WD_LOG_WARN, "workers", "worker %s cooled off for %d s after %d failed requests",
               name, r->args.worker_cooloff_secs, r->args.worker_fail_threshold);
        wd_metrics_add(r->m.reg, r->m.worker_cooloffs, NULL, 1);
    }
    if (rq->out.n == 0 && !rq->is_http_streaming && rq->n_attempts < 2 && rq->conn) {
        wd_log(WD_LOG_INFO, "request", "request %s: worker %s failed (%s); retrying elsewhere",
               rq->resp_id, name, reason);
        wd_metrics_add(r->m.reg, r->m.retries, NULL, 1);
        dispatch(r, rq, failed);
        return;
    }
    struct wd_api_error e;
    wd_api_error_set(&e, 502, NULL, "the worker serving this request failed: %s", reason);
    fail(r, rq, &e, "worker_error");
}

void wd_router_on_chunk(struct wd_router *r, const unsigned char *route, size_t route_len,
                        const struct wd_msg_token_chunk *ch)
{
    struct wd_rreq *rq = lookup(r, ch->request_id, route, route_len);
    if (!rq) {
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
        attempt_failed(r, rq, "the worker aborted it", 0);
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
        if (wf == WD_OUTPUT_RUNNING)
            send_abort(r, rq, "stop"); /* a stop string: the worker would go on */
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
    struct wd_rreq *rq = lookup(r, we->request_id, route, route_len);
    if (!rq)
        return;
    struct wd_api_error e;
    switch (we->code) {
    case WD_ERR_INVALID:
    case WD_ERR_UNSUPPORTED:
        wd_api_error_set(&e, 400, NULL, "the worker refused the request: %s", we->message);
        fail(r, rq, &e, "bad_request");
        break;
    case WD_ERR_TIMEOUT:
        wd_api_error_set(&e, 504, NULL, "the worker hit the deadline: %s", we->message);
        fail(r, rq, &e, "timeout");
        break;
    case WD_ERR_NOMEM:
        attempt_failed(r, rq, we->message, 0); /* full, not broken */
        break;
    default:
        attempt_failed(r, rq, we->message, 1);
        break;
    }
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
            if (rq->state == WD_RREQ_RUNNING && rq->worker.slot == slot)
                attempt_failed(r, rq, reason, 1);
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

double wd_router_check_deadlines(struct wd_router *r, double now)
{
    double a = expire_list(r, &r->live, now);
    double b = expire_list(r, &r->health, now);
    wd_router_pump(r);
    return a < b ? a : b;
}
