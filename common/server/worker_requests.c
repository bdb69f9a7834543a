/* Requests in (GenerateRequest, Abort) and tokens out (TokenChunk, Error). */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "common/net/zsock.h"
#include "common/server/worker_internal.h"
#include "common/util/log.h"

enum wd_status wd_worker_send(struct wd_worker *w, const struct wd_msg *m)
{
    struct wd_error err = {0};
    enum wd_status st = wd_zsock_send(w->sock, m, &err);
    if (st != WD_OK)
        wd_log(WD_LOG_WARN, "worker", "cannot send %s to the router: %s", wd_msg_kind_str(m->kind),
               err.msg);
    return st;
}

void wd_worker_send_error(struct wd_worker *w, uint64_t id, enum wd_status code, const char *fmt,
                          ...)
{
    struct wd_msg m;
    wd_msg_init(&m, WD_MSG_ERROR);
    m.error.request_id = id;
    m.error.code = code == WD_OK ? WD_ERR_INVALID : code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m.error.message, sizeof(m.error.message), fmt, ap);
    va_end(ap);
    /* One line: the codec refuses control characters. */
    for (char *p = m.error.message; *p; p++)
        if ((unsigned char)*p < 0x20 && *p != '\t')
            *p = ' ';
    if (!m.error.message[0])
        snprintf(m.error.message, sizeof(m.error.message), "request failed");
    wd_worker_send(w, &m);
}

void wd_worker_req_free(struct wd_worker_req *r)
{
    if (!r)
        return;
    free(r->pages);
    free(r->ids);
    free(r->logprobs);
    free(r->top_ids);
    free(r->top_logprobs);
    free(r);
}

static const char *outcome_of(enum wd_finish_reason f)
{
    switch (f) {
    case WD_FINISH_LENGTH:
    case WD_FINISH_STOP:
        return "finished";
    case WD_FINISH_ABORT:
        return "aborted";
    default:
        return "error";
    }
}

/* Forgets a request (it is no longer live in the engine). */
void wd_worker_req_drop(struct wd_worker *w, struct wd_worker_req *r, const char *outcome)
{
    wd_metrics_add(w->metrics, w->m_requests, outcome, 1);
    for (int i = 0; i < w->n_dirty; i++)
        if (w->dirty[i] == r) {
            w->dirty[i] = w->dirty[--w->n_dirty];
            break;
        }
    wd_u64map_remove(&w->reqs, r->id);
    wd_worker_req_free(r);
}

uint64_t wd_worker_seed(const struct wd_msg_generate *g)
{
    uint64_t seed;
    if (g->sampling.has_seed)
        return g->sampling.seed;
    if (getrandom(&seed, sizeof(seed), 0) != (ssize_t)sizeof(seed))
        seed = (uint64_t)wd_now_us() ^ g->request_id;
    return seed;
}

void wd_worker_params(const struct wd_msg_generate *g, struct wd_request_params *p)
{
    *p = (struct wd_request_params){
        .prompt = g->input_ids,
        .n_prompt = g->n_input_ids,
        .max_new_tokens = g->max_new_tokens,
        .sampling = {.temperature = g->sampling.temperature,
                     .top_p = g->sampling.top_p,
                     .top_k = g->sampling.top_k < 0 ? 0 : g->sampling.top_k,
                     .min_p = g->sampling.min_p},
        .n_stop_ids = g->n_stop_ids,
        .ignore_eos = g->is_ignore_eos,
        .top_logprobs = g->is_return_logprobs ? g->n_top_logprobs : 0,
        .id = g->request_id,
        .seed = wd_worker_seed(g),
    };
    if (g->n_stop_ids > 0)
        memcpy(p->stop_ids, g->stop_ids, (size_t)g->n_stop_ids * sizeof(int32_t));
}

/* Checks a request message against this worker and makes its entry; NULL after an Error
 * went to the router. */
struct wd_worker_req *wd_worker_req_new(struct wd_worker *w, const struct wd_msg_generate *g)
{
    if (w->is_draining) {
        /* The router retries a request that streamed nothing on another worker. */
        wd_worker_send_error(w, g->request_id, WD_ERR_PEER, "worker %s is draining",
                             w->instance_id);
        return NULL;
    }
    if (g->dp_rank >= w->n_dp) {
        wd_worker_send_error(w, g->request_id, WD_ERR_INVALID,
                             "dp_rank %d: this worker has %d attention-DP ranks", g->dp_rank,
                             w->n_dp);
        return NULL;
    }
    if (wd_u64map_get(&w->reqs, g->request_id)) {
        wd_worker_send_error(w, g->request_id, WD_ERR_INVALID, "request id %llu is already live",
                             (unsigned long long)g->request_id);
        return NULL;
    }
    if (g->n_stop_ids > WD_MAX_STOP_IDS) {
        wd_worker_send_error(w, g->request_id, WD_ERR_INVALID,
                             "%d stop token ids: at most %d (end-of-sequence ids included)",
                             g->n_stop_ids, WD_MAX_STOP_IDS);
        return NULL;
    }
    struct wd_worker_req *r = calloc(1, sizeof(*r));
    if (!r || wd_u64map_put(&w->reqs, g->request_id, r) != WD_OK) {
        free(r);
        wd_worker_send_error(w, g->request_id, WD_ERR_NOMEM, "worker out of memory");
        return NULL;
    }
    r->id = g->request_id;
    r->dp = g->dp_rank;
    r->n_prompt = g->n_input_ids;
    r->want_logprobs = g->is_return_logprobs;
    r->n_top = g->is_return_logprobs ? g->n_top_logprobs : 0;
    r->deadline_ms = g->deadline_ms;
    return r;
}

void wd_worker_on_generate(struct wd_worker *w, const struct wd_msg_generate *g)
{
    if (w->role == WD_WORKER_PREFILL) {
        wd_worker_send_error(w, g->request_id, WD_ERR_UNSUPPORTED,
                             "prefill worker %s takes PrefillRequests only", w->instance_id);
        return;
    }
    struct wd_worker_req *r = wd_worker_req_new(w, g);
    if (!r)
        return;
    struct wd_request_params p;
    wd_worker_params(g, &p);
    int64_t deadline = g->deadline_ms ? wd_now_ms() + g->deadline_ms : 0;
    struct wd_error err = {0};
    if (wd_engine_host_add(w->host, g->dp_rank, &p, deadline, &err) != WD_OK) {
        wd_u64map_remove(&w->reqs, r->id);
        wd_worker_req_free(r);
        wd_worker_send_error(w, g->request_id, err.status, "%s", err.msg);
    }
}

void wd_worker_on_abort(struct wd_worker *w, uint64_t id)
{
    if (wd_worker_pd_on_abort(w, id))
        return;
    /* Unknown ids are fine: the request may have finished while the abort travelled. */
    if (wd_u64map_get(&w->reqs, id))
        wd_engine_host_abort(w->host, id);
}

/* Appends one token (and its logprobs) to r's pending chunk. */
static int append(struct wd_worker *w, struct wd_worker_req *r, const struct wd_engine_event *ev)
{
    if (r->n == r->cap) {
        int cap = r->cap ? r->cap * 2 : 8;
        int32_t *ids = realloc(r->ids, (size_t)cap * sizeof(int32_t));
        if (ids)
            r->ids = ids;
        float *lps = realloc(r->logprobs, (size_t)cap * sizeof(float));
        if (lps)
            r->logprobs = lps;
        int32_t *tids =
            r->n_top ? realloc(r->top_ids, (size_t)cap * r->n_top * sizeof(int32_t)) : r->top_ids;
        if (tids)
            r->top_ids = tids;
        float *tlps = r->n_top ? realloc(r->top_logprobs, (size_t)cap * r->n_top * sizeof(float))
                               : r->top_logprobs;
        if (tlps)
            r->top_logprobs = tlps;
        if (!ids || !lps || (r->n_top && (!tids || !tlps)))
            return -1;
        r->cap = cap;
    }
    r->ids[r->n] = ev->token;
    r->logprobs[r->n] = ev->logprob;
    for (int k = 0; k < r->n_top; k++) {
        int have = k < ev->n_top;
        r->top_ids[(size_t)r->n * r->n_top + k] = have ? ev->top_ids[k] : 0;
        r->top_logprobs[(size_t)r->n * r->n_top + k] = have ? ev->top_logprobs[k] : -INFINITY;
    }
    r->n++;
    r->n_generated++;
    if (!r->is_dirty) {
        if (w->n_dirty == w->dirty_cap) {
            int cap = w->dirty_cap ? w->dirty_cap * 2 : 64;
            struct wd_worker_req **d = realloc(w->dirty, (size_t)cap * sizeof(*d));
            if (!d)
                return -1;
            w->dirty = d;
            w->dirty_cap = cap;
        }
        w->dirty[w->n_dirty++] = r;
        r->is_dirty = 1;
    }
    return 0;
}

static enum wd_msg_finish msg_finish(enum wd_finish_reason f)
{
    switch (f) {
    case WD_FINISH_LENGTH:
        return WD_MSG_FINISH_LENGTH;
    case WD_FINISH_STOP:
        return WD_MSG_FINISH_STOP;
    case WD_FINISH_NONE:
        return WD_MSG_FINISH_NONE;
    default:
        return WD_MSG_FINISH_ABORT;
    }
}

/* Sends r's pending tokens (with its finish when it has one). On a failed send nobody will
 * read the rest: the request is aborted in the engine. */
static void send_chunk(struct wd_worker *w, struct wd_worker_req *r)
{
    struct wd_msg m;
    wd_msg_init(&m, WD_MSG_TOKEN_CHUNK);
    struct wd_msg_token_chunk *c = &m.chunk;
    c->request_id = r->id;
    c->n_tokens = r->n;
    c->token_ids = r->ids;
    c->logprobs = r->want_logprobs && r->n ? r->logprobs : NULL;
    c->n_top = r->want_logprobs && r->n ? r->n_top : 0;
    c->top_ids = c->n_top ? r->top_ids : NULL;
    c->top_logprobs = c->n_top ? r->top_logprobs : NULL;
    c->finish = msg_finish(r->finish);
    c->n_prompt_tokens = r->n_prompt;
    c->matched_stop = r->finish == WD_FINISH_STOP && r->n > 0 ? r->ids[r->n - 1] : -1;
    char dp[16];
    snprintf(dp, sizeof(dp), "%d", r->dp);
    wd_metrics_add(w->metrics, w->m_tokens, dp, r->n);
    enum wd_status st = wd_worker_send(w, &m);
    r->n = 0;
    r->is_dirty = 0;
    if (st != WD_OK && r->finish == WD_FINISH_NONE)
        wd_engine_host_abort(w->host, r->id);
}

void wd_worker_flush(struct wd_worker *w)
{
    while (w->n_dirty > 0) {
        struct wd_worker_req *r = w->dirty[--w->n_dirty];
        send_chunk(w, r);
    }
}

void wd_worker_on_event(void *ctx, const struct wd_engine_event *ev, const void *extra)
{
    struct wd_worker *w = ctx;
    if (ev->kind == WD_ENGINE_EV_DESCRIPTORS) {
        wd_worker_pd_on_engine_descriptors(w, ev, extra);
        return;
    }
    if (ev->kind == WD_ENGINE_EV_PEER_READY) {
        wd_worker_pd_on_engine_peer_ready(w, ev);
        return;
    }
    struct wd_worker_req *r = wd_u64map_get(&w->reqs, ev->id);
    if (!r)
        return;
    if (r->is_pd && wd_worker_pd_on_event(w, r, ev, extra))
        return;
    if (ev->kind == WD_ENGINE_EV_ERROR) {
        wd_worker_send_error(w, r->id, (enum wd_status)ev->status, "%.*s", ev->extra,
                             (const char *)extra);
        wd_worker_req_drop(w, r, "error");
        return;
    }
    if (ev->kind != WD_ENGINE_EV_TOKEN)
        return;
    if (ev->token >= 0 && append(w, r, ev) != 0) {
        wd_engine_host_abort(w->host, r->id);
        wd_worker_send_error(w, r->id, WD_ERR_NOMEM, "worker out of memory");
        wd_worker_req_drop(w, r, "error");
        return;
    }
    if (ev->finish == WD_FINISH_NONE)
        return;
    if (ev->finish == WD_FINISH_ABORT && ev->status == WD_ERR_TIMEOUT) {
        wd_worker_send_error(w, r->id, WD_ERR_TIMEOUT,
                             "deadline of %u ms passed on the worker after %d tokens",
                             r->deadline_ms, r->n_generated);
        wd_worker_req_drop(w, r, "timeout");
        return;
    }
    r->finish = (enum wd_finish_reason)ev->finish;
    send_chunk(w, r);
    wd_worker_req_drop(w, r, outcome_of(r->finish));
}

void wd_worker_fail_all(struct wd_worker *w, enum wd_status code, const char *why)
{
    for (size_t i = 0; i < w->reqs.cap; i++) {
        struct wd_worker_req *r = w->reqs.slots[i].value;
        if (!r)
            continue;
        wd_worker_send_error(w, r->id, code, "%s", why);
        wd_worker_req_drop(w, r, "error");
        i = (size_t)-1; /* the map shifted: rescan (rare, shutdown only) */
    }
    wd_worker_pd_fail_pending(w, why);
}
