/*
 * The worker front-end's part of prefill/decode disaggregation.
 *
 * Decode side: a DecodeRequest reserves pages in the engine (a lease that ends at the
 * deadline); when the engine reports them, the worker sends KvTarget (and, the first time
 * it talks to that prefill worker, every attention rank's KvDescriptors) to the prefill
 * worker's bootstrap endpoint over a DEALER of its own. KvDone activates the request in the
 * engine, which then streams tokens as for any request. An abort before KvDone does not
 * free the pages at once: the prefill side may still be writing them, so they stay held
 * until it says KvRelease (or KvDone, or an error), or a quarantine passes.
 *
 * Prefill side: PrefillRequest (from the router) and KvTarget (from the decode worker)
 * meet here by request id, in either order; then the engine prefills into the decode pages.
 * The prefilled token goes as KvDone to the decode worker and to the router, and the pages
 * are released; an error goes to both; an abort ends with KvRelease to the decode worker.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>
#include <zmq.h>

#include "common/server/worker_internal.h"
#include "common/util/log.h"

/* Aborted before its KV landed: how long the decode side keeps the pages for a prefill side
 * that says nothing (dead or stopped): --kv-release-timeout-secs. An abort reaches the
 * prefill ranks only between steps, so this must outlast one prefill step (a long chunk on
 * a slow CPU takes tens of seconds) plus the flush of its puts: reusing pages a put may
 * still land in would corrupt another request. */
static int64_t quarantine_ms(const struct wd_worker *w)
{
    return (int64_t)w->args.kv_release_timeout_secs * 1000;
}
/* A prefill bootstrap endpoint that takes no message for this long fails its requests. */
#define CONNECT_TIMEOUT_MS 5000

struct wd_pd_pending {
    uint64_t id;
    int64_t t_arrival_ms; /* the first half */
    int64_t deadline_ms;  /* 0: none */
    /* PrefillRequest half */
    int has_request;
    int dp;
    struct wd_request_params params;
    int32_t *prompt;
    uint32_t deadline_rel_ms;
    int want_logprobs;
    int64_t t_request_us;
    /* KvTarget half */
    int has_target;
    struct wd_zsock_peer decode_peer;
    int32_t set_index;
    int32_t *pages;
    int n_pages;
    int64_t t_target_us;
    /* Aborted before its KvTarget came: kept (prompt freed) until then, so the decode side
     * gets KvRelease at once instead of waiting out its quarantine; dropped at the limit. */
    int is_aborted;
};

static void pending_free(struct wd_pd_pending *p)
{
    if (p) {
        free(p->prompt);
        free(p->pages);
        free(p);
    }
}

enum wd_status wd_worker_pd_init(struct wd_worker *w, struct wd_error *err)
{
    if (getrandom(&w->descriptors_id, sizeof(w->descriptors_id), 0) !=
            (ssize_t)sizeof(w->descriptors_id) ||
        w->descriptors_id == 0)
        w->descriptors_id = ((uint64_t)wd_now_us() << 16) ^ (uint64_t)getpid() ^ 1;
    WD_CHECK(wd_u64map_init(&w->pending, 256, err));
    w->dp_descs = calloc((size_t)w->n_dp, sizeof(*w->dp_descs));
    w->dp_desc_len = calloc((size_t)w->n_dp, sizeof(*w->dp_desc_len));
    if (!w->dp_descs || !w->dp_desc_len)
        return wd_error_set(err, WD_ERR_NOMEM, "worker: out of memory");
    if (w->role != WD_WORKER_PREFILL || !w->zctx)
        return WD_OK;
    char ep[WD_MSG_NAME_CAP], bound[WD_MSG_NAME_CAP];
    snprintf(ep, sizeof(ep), "tcp://%s:%d", w->args.bootstrap_host, w->args.bootstrap_port);
    WD_CHECK(wd_zsock_router_bind(w->zctx, ep, &w->boot, bound, sizeof(bound), err));
    snprintf(w->bootstrap_endpoint, sizeof(w->bootstrap_endpoint), "%s", bound);
    wd_log(WD_LOG_INFO, "pd", "bootstrap endpoint %s", w->bootstrap_endpoint);
    return WD_OK;
}

void wd_worker_pd_cleanup(struct wd_worker *w)
{
    for (int i = 0; i < w->n_conns; i++)
        wd_zsock_close(w->conns[i].sock);
    free(w->conns);
    wd_zsock_close_linger(w->boot, SHUTDOWN_LINGER_MS);
    for (size_t i = 0; w->pending.slots && i < w->pending.cap; i++)
        pending_free(w->pending.slots[i].value);
    wd_u64map_cleanup(&w->pending);
    for (int d = 0; w->dp_descs && d < w->n_dp; d++)
        free(w->dp_descs[d]);
    free(w->dp_descs);
    free(w->dp_desc_len);
    free(w->sets);
}

int wd_worker_pd_poll_items(struct wd_worker *w, void *items, int cap)
{
    zmq_pollitem_t *it = items;
    int n = 0;
    if (w->boot && n < cap)
        it[n++] = (zmq_pollitem_t){.socket = w->boot, .events = ZMQ_POLLIN};
    for (int i = 0; i < w->n_conns && n < cap; i++)
        it[n++] = (zmq_pollitem_t){.socket = w->conns[i].sock, .events = ZMQ_POLLIN};
    return n;
}

/* A KvDone's transfer, on either side: time, bytes and rate (when the time is not 0). */
static void observe_transfer(struct wd_worker *w, uint64_t bytes, uint32_t transfer_us)
{
    if (w->m_kv_transfer_us < 0)
        return;
    wd_metrics_observe(w->metrics, w->m_kv_transfer_us, NULL, transfer_us / 1e6);
    wd_metrics_add(w->metrics, w->m_kv_bytes, NULL, (double)bytes);
    if (transfer_us > 0)
        wd_metrics_observe(w->metrics, w->m_kv_rate, NULL, (double)bytes / 1e3 / transfer_us);
}

void wd_worker_pd_on_engine_descriptors(struct wd_worker *w, const struct wd_engine_event *ev,
                                        const void *extra)
{
    if (ev->dp_rank < 0 || ev->dp_rank >= w->n_dp || ev->extra <= 0)
        return;
    uint8_t *copy = malloc((size_t)ev->extra);
    if (!copy)
        return;
    memcpy(copy, extra, (size_t)ev->extra);
    free(w->dp_descs[ev->dp_rank]);
    w->dp_descs[ev->dp_rank] = copy;
    w->dp_desc_len[ev->dp_rank] = (size_t)ev->extra;
}

/* ---------------------------------------------------------------- decode side */

static int conn_for(struct wd_worker *w, const struct wd_msg_pd_peer *peer)
{
    for (int i = 0; i < w->n_conns; i++)
        if (strcmp(w->conns[i].endpoint, peer->bootstrap_endpoint) == 0)
            return i;
    struct wd_pd_conn *grown = realloc(w->conns, (size_t)(w->n_conns + 1) * sizeof(*grown));
    if (!grown)
        return -1;
    w->conns = grown;
    struct wd_pd_conn *c = &w->conns[w->n_conns];
    memset(c, 0, sizeof(*c));
    snprintf(c->endpoint, sizeof(c->endpoint), "%s", peer->bootstrap_endpoint);
    snprintf(c->instance_id, sizeof(c->instance_id), "%s", peer->instance_id);
    struct wd_error err = {0};
    if (wd_zsock_dealer_connect(w->zctx, c->endpoint, w->instance_id, &c->sock, &err) != WD_OK) {
        wd_log(WD_LOG_ERROR, "pd", "prefill worker %s at %s: %s", peer->instance_id, c->endpoint,
               err.msg);
        return -1;
    }
    return w->n_conns++;
}

/* Every attention rank's descriptors, as one KvDescriptors. */
static enum wd_status send_descriptors(struct wd_worker *w, struct wd_pd_conn *c)
{
    int n = 0;
    for (int d = 0; d < w->n_dp; d++)
        for (size_t off = 0; w->dp_descs[d] && off + 8 <= w->dp_desc_len[d];) {
            uint32_t len;
            memcpy(&len, w->dp_descs[d] + off + 4, 4);
            off += 8 + len;
            n++;
        }
    if (n == 0)
        return WD_ERR_NOT_FOUND; /* the engine has not published them yet */
    struct wd_msg_kv_desc *ranks = calloc((size_t)n, sizeof(*ranks));
    if (!ranks)
        return WD_ERR_NOMEM;
    int k = 0;
    for (int d = 0; d < w->n_dp; d++)
        for (size_t off = 0; w->dp_descs[d] && off + 8 <= w->dp_desc_len[d];) {
            uint32_t rank, len;
            memcpy(&rank, w->dp_descs[d] + off, 4);
            memcpy(&len, w->dp_descs[d] + off + 4, 4);
            ranks[k++] = (struct wd_msg_kv_desc){.dp_rank = d,
                                                 .attn_tp_rank = (int32_t)rank,
                                                 .len = len,
                                                 .blob = w->dp_descs[d] + off + 8};
            off += 8 + len;
        }
    struct wd_msg m;
    wd_msg_init(&m, WD_MSG_KV_DESCRIPTORS);
    snprintf(m.kv_descriptors.decode_instance_id, sizeof(m.kv_descriptors.decode_instance_id), "%s",
             w->instance_id);
    m.kv_descriptors.descriptors_id = w->descriptors_id;
    m.kv_descriptors.n = n;
    m.kv_descriptors.ranks = ranks;
    struct wd_error err = {0};
    enum wd_status st = wd_zsock_send(c->sock, &m, &err);
    free(ranks);
    return st;
}

static enum wd_status send_target(struct wd_worker *w, struct wd_pd_conn *c,
                                  const struct wd_worker_req *r)
{
    struct wd_msg m;
    wd_msg_init(&m, WD_MSG_KV_TARGET);
    m.kv_target.request_id = r->id;
    snprintf(m.kv_target.decode_instance_id, sizeof(m.kv_target.decode_instance_id), "%s",
             w->instance_id);
    m.kv_target.decode_dp_rank = r->dp;
    m.kv_target.n_pages = r->n_pages;
    m.kv_target.page_ids = r->pages;
    m.kv_target.descriptors_id = w->descriptors_id;
    struct wd_error err = {0};
    return wd_zsock_send(c->sock, &m, &err);
}

/* Sends what waits on connection i (descriptors first, then targets); a connection that
 * takes nothing for CONNECT_TIMEOUT_MS fails its requests. */
static void push_conn(struct wd_worker *w, int i)
{
    struct wd_pd_conn *c = &w->conns[i];
    int64_t now = wd_now_ms();
    int waiting = 0, failed = 0;
    if (!c->is_described) {
        enum wd_status st = send_descriptors(w, c);
        if (st == WD_OK)
            c->is_described = 1;
        else
            failed = st == WD_ERR_PEER;
    }
    for (size_t k = 0; k < w->reqs.cap; k++) {
        struct wd_worker_req *r = w->reqs.slots[k].value;
        if (!r || !r->is_pd || r->conn != i || !r->is_target_unsent || !r->pages)
            continue;
        waiting = 1;
        if (!c->is_described || send_target(w, c, r) != WD_OK) {
            failed = 1;
            break;
        }
        r->is_target_unsent = 0;
    }
    if (!failed || !waiting) {
        c->first_fail_ms = 0;
        return;
    }
    if (!c->first_fail_ms)
        c->first_fail_ms = now;
    if (now - c->first_fail_ms < CONNECT_TIMEOUT_MS)
        return;
    wd_log(WD_LOG_ERROR, "pd", "prefill worker %s at %s takes nothing: failing its requests",
           c->instance_id, c->endpoint);
    c->first_fail_ms = 0;
    for (size_t k = 0; k < w->reqs.cap; k++) {
        struct wd_worker_req *r = w->reqs.slots[k].value;
        if (r && r->is_pd && r->conn == i && r->is_target_unsent) {
            r->is_target_unsent = 0;
            wd_worker_send_error(w, r->id, WD_ERR_PEER, "prefill worker %s is unreachable at %s",
                                 c->instance_id, c->endpoint);
            wd_engine_host_abort(w->host, r->id);
            r->is_cancelled = 1; /* nothing was written: the abort frees the pages */
        }
    }
}

void wd_worker_pd_on_decode_request(struct wd_worker *w, const struct wd_msg_generate *g)
{
    if (w->role != WD_WORKER_DECODE) {
        wd_worker_send_error(w, g->request_id, WD_ERR_UNSUPPORTED,
                             "worker %s is not a decode worker", w->instance_id);
        return;
    }
    struct wd_worker_req *r = wd_worker_req_new(w, g);
    if (!r)
        return;
    r->is_pd = 1;
    r->conn = conn_for(w, &g->peer);
    struct wd_error err = {0};
    enum wd_status st =
        r->conn < 0 ? wd_error_set(&err, WD_ERR_PEER, "cannot reach prefill worker %s at %s",
                                   g->peer.instance_id, g->peer.bootstrap_endpoint)
                    : WD_OK;
    if (st == WD_OK) {
        struct wd_request_params p;
        wd_worker_params(g, &p);
        /* The lease: the request's deadline, plus the time a cancelled request's pages stay
         * held for a silent prefill side. */
        int64_t deadline = g->deadline_ms ? wd_now_ms() + g->deadline_ms + quarantine_ms(w) : 0;
        st = wd_engine_host_reserve(w->host, g->dp_rank, &p, deadline, &err);
    }
    if (st != WD_OK) {
        wd_u64map_remove(&w->reqs, r->id);
        wd_worker_req_free(r);
        wd_worker_send_error(w, g->request_id, err.status, "%s", err.msg);
    }
}

static void on_reserved(struct wd_worker *w, struct wd_worker_req *r,
                        const struct wd_engine_event *ev, const void *extra)
{
    free(r->pages);
    r->pages = malloc((size_t)ev->extra * sizeof(int32_t) + 1);
    if (!r->pages) {
        wd_engine_host_abort(w->host, r->id);
        return;
    }
    memcpy(r->pages, extra, (size_t)ev->extra * sizeof(int32_t));
    r->n_pages = ev->extra;
    r->t_reserved_ms = wd_now_ms();
    r->is_target_unsent = 1;
    wd_log(WD_LOG_DEBUG, "pd", "request %llu: %d pages reserved%s", (unsigned long long)r->id,
           r->n_pages, r->is_cancelled ? " (cancelled)" : "");
    if (r->is_cancelled) /* aborted while the reserve was on its way: nobody writes */
        wd_engine_host_abort(w->host, r->id);
    else
        push_conn(w, r->conn);
}

/* A message from a prefill worker over connection i. */
static void on_prefill_msg(struct wd_worker *w, int i, const struct wd_msg *m)
{
    uint64_t id = m->kind == WD_MSG_KV_DONE      ? m->kv_done.request_id
                  : m->kind == WD_MSG_KV_RELEASE ? m->kv_release.request_id
                  : m->kind == WD_MSG_ERROR      ? m->error.request_id
                                                 : 0;
    struct wd_worker_req *r = wd_u64map_get(&w->reqs, id);
    wd_log(WD_LOG_DEBUG, "pd", "request %llu: %s from prefill worker %s%s", (unsigned long long)id,
           wd_msg_kind_str(m->kind), w->conns[i].instance_id,
           !r                ? " (not here)"
           : r->is_cancelled ? " (cancelled)"
                             : "");
    if (!r || !r->is_pd || r->conn != i) {
        if (m->kind == WD_MSG_ERROR && id == 0)
            wd_log(WD_LOG_WARN, "pd", "prefill worker %s: %s", w->conns[i].instance_id,
                   m->error.message);
        return;
    }
    struct wd_error err = {0};
    switch (m->kind) {
    case WD_MSG_KV_DONE:
        if (r->is_cancelled || r->is_activated) {
            wd_engine_host_abort(w->host, id); /* the writes are over: free */
            break;
        }
        r->is_activated = 1;
        observe_transfer(w, m->kv_done.kv_bytes, m->kv_done.transfer_us);
        if (wd_engine_host_activate(w->host, id, m->kv_done.first_token, m->kv_done.logprob,
                                    &err) != WD_OK) {
            wd_worker_send_error(w, id, err.status, "%s", err.msg);
            wd_engine_host_abort(w->host, id);
        }
        break;
    case WD_MSG_KV_RELEASE:
        /* The prefill side aborted it (the router's abort or its deadline; the router hears
         * of both from there) and writes nothing more. It may get here before the router's
         * abort does: end it now, quietly, or the pages would wait out the quarantine. */
        if (!r->is_activated) {
            r->is_cancelled = 1;
            wd_engine_host_abort(w->host, id);
        }
        break;
    case WD_MSG_ERROR:
        if (w->m_kv_failures >= 0)
            wd_metrics_add(w->metrics, w->m_kv_failures, "prefill_error", 1);
        if (!r->is_cancelled)
            wd_worker_send_error(w, id, m->error.code, "prefill worker %s: %s",
                                 w->conns[i].instance_id, m->error.message);
        r->is_cancelled = 1;
        wd_engine_host_abort(w->host, id);
        break;
    default:
        break;
    }
}

/* ---------------------------------------------------------------- prefill side */

static struct wd_pd_pending *pending_get(struct wd_worker *w, uint64_t id)
{
    struct wd_pd_pending *p = wd_u64map_get(&w->pending, id);
    if (p)
        return p;
    p = calloc(1, sizeof(*p));
    if (!p || wd_u64map_put(&w->pending, id, p) != WD_OK) {
        free(p);
        return NULL;
    }
    p->id = id;
    p->t_arrival_ms = wd_now_ms();
    return p;
}

static void pending_drop(struct wd_worker *w, struct wd_pd_pending *p)
{
    wd_u64map_remove(&w->pending, p->id);
    pending_free(p);
}

static void send_boot(struct wd_worker *w, const struct wd_zsock_peer *to, const struct wd_msg *m)
{
    struct wd_error err = {0};
    if (wd_zsock_send_to(w->boot, to, m, &err) != WD_OK)
        wd_log(WD_LOG_WARN, "pd", "cannot send %s to a decode worker: %s", wd_msg_kind_str(m->kind),
               err.msg);
}

static void boot_error(struct wd_worker *w, const struct wd_zsock_peer *to, uint64_t id,
                       enum wd_status code, const char *msg)
{
    struct wd_msg m;
    wd_msg_init(&m, WD_MSG_ERROR);
    m.error.request_id = id;
    m.error.code = code;
    snprintf(m.error.message, sizeof(m.error.message), "%s", msg);
    send_boot(w, to, &m);
}

static void boot_release(struct wd_worker *w, const struct wd_zsock_peer *to, uint64_t id)
{
    wd_log(WD_LOG_DEBUG, "pd", "request %llu: KvRelease to the decode worker",
           (unsigned long long)id);
    struct wd_msg m;
    wd_msg_init(&m, WD_MSG_KV_RELEASE);
    m.kv_release.request_id = id;
    send_boot(w, to, &m);
}

/* Both halves are here: the request runs, its KV going to the decode pages. */
static void start_pending(struct wd_worker *w, struct wd_pd_pending *p)
{
    struct wd_msg_generate g = {.request_id = p->id,
                                .n_input_ids = p->params.n_prompt,
                                .input_ids = p->prompt,
                                .max_new_tokens = p->params.max_new_tokens,
                                .dp_rank = p->dp,
                                .deadline_ms = p->deadline_rel_ms,
                                .is_return_logprobs = p->want_logprobs,
                                .n_top_logprobs = p->params.top_logprobs};
    struct wd_worker_req *r = wd_worker_req_new(w, &g);
    if (!r) {
        boot_error(w, &p->decode_peer, p->id, WD_ERR_PEER, "the prefill worker refused it");
        pending_drop(w, p);
        return;
    }
    r->is_pd = 1;
    r->decode_peer = p->decode_peer;
    int64_t wait = p->t_target_us > p->t_request_us ? p->t_target_us - p->t_request_us : 0;
    r->wait_target_us = wait > UINT32_MAX ? UINT32_MAX : (uint32_t)wait;
    if (w->m_kv_wait_us >= 0)
        wd_metrics_observe(w->metrics, w->m_kv_wait_us, NULL, r->wait_target_us / 1e6);
    struct wd_engine_pd_target t = {.peer = p->set_index, .pages = p->pages, .n_pages = p->n_pages};
    struct wd_error err = {0};
    p->params.prompt = p->prompt;
    if (wd_engine_host_add_pd(w->host, p->dp, &p->params, p->deadline_ms, &t, &err) != WD_OK) {
        wd_worker_send_error(w, p->id, err.status, "%s", err.msg);
        boot_error(w, &p->decode_peer, p->id, err.status, err.msg);
        wd_u64map_remove(&w->reqs, r->id);
        wd_worker_req_free(r);
    }
    pending_drop(w, p);
}

void wd_worker_pd_on_prefill_request(struct wd_worker *w, const struct wd_msg_generate *g)
{
    if (w->role != WD_WORKER_PREFILL) {
        wd_worker_send_error(w, g->request_id, WD_ERR_UNSUPPORTED,
                             "worker %s is not a prefill worker", w->instance_id);
        return;
    }
    if (w->is_draining || g->dp_rank >= w->n_dp || g->n_stop_ids > WD_MAX_STOP_IDS ||
        wd_u64map_get(&w->reqs, g->request_id)) {
        /* The same checks as a whole request, with the same answers. */
        struct wd_worker_req *r = wd_worker_req_new(w, g);
        if (r) {
            wd_u64map_remove(&w->reqs, r->id);
            wd_worker_req_free(r);
        }
        return;
    }
    wd_log(WD_LOG_DEBUG, "pd", "request %llu: PrefillRequest", (unsigned long long)g->request_id);
    struct wd_pd_pending *p = pending_get(w, g->request_id);
    if (p && p->is_aborted) { /* an id used again: the old request's marker goes */
        pending_drop(w, p);
        p = pending_get(w, g->request_id);
    }
    if (!p || p->has_request) {
        wd_worker_send_error(w, g->request_id, p ? WD_ERR_INVALID : WD_ERR_NOMEM,
                             p ? "request id already pending" : "worker out of memory");
        return;
    }
    p->prompt = malloc((size_t)g->n_input_ids * sizeof(int32_t));
    if (!p->prompt) {
        pending_drop(w, p);
        wd_worker_send_error(w, g->request_id, WD_ERR_NOMEM, "worker out of memory");
        return;
    }
    memcpy(p->prompt, g->input_ids, (size_t)g->n_input_ids * sizeof(int32_t));
    wd_worker_params(g, &p->params);
    p->params.prompt = p->prompt;
    p->dp = g->dp_rank;
    p->deadline_rel_ms = g->deadline_ms;
    p->deadline_ms = g->deadline_ms ? wd_now_ms() + g->deadline_ms : 0;
    p->want_logprobs = g->is_return_logprobs;
    p->t_request_us = wd_now_us();
    p->has_request = 1;
    if (p->has_target)
        start_pending(w, p);
}

/* The peer set (engine index) of a decode DP group, defined from KvDescriptors. */
static struct wd_pd_set *find_set(struct wd_worker *w, const char *decode_id, uint64_t desc_id,
                                  int dp)
{
    for (int i = 0; i < w->n_sets; i++)
        if (w->sets[i].dp_rank == dp && w->sets[i].descriptors_id == desc_id &&
            strcmp(w->sets[i].decode_id, decode_id) == 0)
            return &w->sets[i];
    return NULL;
}

static void on_descriptors(struct wd_worker *w, const struct wd_msg_kv_descriptors *d)
{
    int64_t t_us = wd_now_us();
    int n_engine_dp = 0; /* the DP ranks wd_engine_host_pd_peer feeds, each reports ready */
    for (int dp = 0; dp < w->n_dp; dp++)
        n_engine_dp += wd_engine_host_has_dp(w->host, dp);
    int max_dp = -1;
    for (int32_t i = 0; i < d->n; i++)
        max_dp = d->ranks[i].dp_rank > max_dp ? d->ranks[i].dp_rank : max_dp;
    for (int dp = 0; dp <= max_dp; dp++) {
        if (find_set(w, d->decode_instance_id, d->descriptors_id, dp))
            continue;
        size_t len = 0;
        for (int32_t i = 0; i < d->n; i++)
            if (d->ranks[i].dp_rank == dp)
                len += 8 + d->ranks[i].len;
        if (len == 0)
            continue;
        uint8_t *tail = malloc(len), *q = tail;
        struct wd_pd_set *grown = realloc(w->sets, (size_t)(w->n_sets + 1) * sizeof(*grown));
        if (!tail || !grown) {
            free(tail);
            if (grown)
                w->sets = grown;
            continue;
        }
        w->sets = grown;
        for (int32_t i = 0; i < d->n; i++) {
            if (d->ranks[i].dp_rank != dp)
                continue;
            uint32_t rank = (uint32_t)d->ranks[i].attn_tp_rank, l = d->ranks[i].len;
            memcpy(q, &rank, 4);
            memcpy(q + 4, &l, 4);
            memcpy(q + 8, d->ranks[i].blob, l);
            q += 8 + l;
        }
        struct wd_pd_set *s = &w->sets[w->n_sets];
        memset(s, 0, sizeof(*s));
        snprintf(s->decode_id, sizeof(s->decode_id), "%s", d->decode_instance_id);
        s->descriptors_id = d->descriptors_id;
        s->dp_rank = dp;
        s->index = w->n_sets + 1;
        s->t_setup_us = t_us;
        s->n_setup_wait = n_engine_dp;
        struct wd_error err = {0};
        if (wd_engine_host_pd_peer(w->host, s->index, tail, len, &err) == WD_OK)
            w->n_sets++;
        else
            wd_log(WD_LOG_ERROR, "pd", "decode %s DP rank %d: %s", d->decode_instance_id, dp,
                   err.msg);
        free(tail);
    }
}

void wd_worker_pd_on_engine_peer_ready(struct wd_worker *w, const struct wd_engine_event *ev)
{
    struct wd_pd_set *s = NULL;
    for (int i = 0; i < w->n_sets && !s; i++)
        s = w->sets[i].index == ev->pd_peer ? &w->sets[i] : NULL;
    if (!s || s->n_setup_wait <= 0)
        return;
    s->is_setup_failed |= ev->status != WD_OK;
    if (--s->n_setup_wait > 0)
        return;
    double secs = (double)(wd_now_us() - s->t_setup_us) / 1e6;
    wd_log(WD_LOG_DEBUG, "pd", "decode %s DP rank %d: pair set up in %.3f s%s", s->decode_id,
           s->dp_rank, secs, s->is_setup_failed ? " (failed)" : "");
    if (s->is_setup_failed)
        wd_metrics_add(w->metrics, w->m_kv_failures, "pair_setup", 1);
    else
        wd_metrics_observe(w->metrics, w->m_kv_pair_setup, NULL, secs);
}

static void on_target(struct wd_worker *w, const struct wd_zsock_peer *from,
                      const struct wd_msg_kv_target *t)
{
    wd_log(WD_LOG_DEBUG, "pd", "request %llu: KvTarget from %s", (unsigned long long)t->request_id,
           t->decode_instance_id);
    struct wd_pd_set *s = find_set(w, t->decode_instance_id, t->descriptors_id, t->decode_dp_rank);
    if (!s) {
        boot_error(w, from, t->request_id, WD_ERR_INVALID,
                   "KvTarget for a decode DP group whose KvDescriptors never came");
        return;
    }
    if (wd_u64map_get(&w->reqs, t->request_id))
        return; /* a duplicate of a running request */
    struct wd_pd_pending *p = pending_get(w, t->request_id);
    if (p && p->is_aborted) { /* the router aborted it first: nothing will be written */
        boot_release(w, from, t->request_id);
        pending_drop(w, p);
        return;
    }
    if (!p || p->has_target) {
        boot_error(w, from, t->request_id, WD_ERR_INVALID, "duplicate KvTarget");
        return;
    }
    if (w->is_draining && !p->has_request) { /* its PrefillRequest would be refused now */
        boot_release(w, from, t->request_id);
        pending_drop(w, p);
        return;
    }
    p->pages = malloc((size_t)t->n_pages * sizeof(int32_t));
    if (!p->pages) {
        boot_error(w, from, t->request_id, WD_ERR_NOMEM, "prefill worker out of memory");
        pending_drop(w, p);
        return;
    }
    memcpy(p->pages, t->page_ids, (size_t)t->n_pages * sizeof(int32_t));
    p->n_pages = t->n_pages;
    p->set_index = s->index;
    p->decode_peer = *from;
    p->t_target_us = wd_now_us();
    p->has_target = 1;
    if (p->has_request)
        start_pending(w, p);
}

void wd_worker_pd_fail_pending(struct wd_worker *w, const char *why)
{
    for (size_t k = 0; k < w->pending.cap; k++) {
        struct wd_pd_pending *p = w->pending.slots[k].value;
        if (!p)
            continue;
        if (p->has_target)
            boot_release(w, &p->decode_peer, p->id);
        if (p->has_request)
            wd_worker_send_error(w, p->id, WD_ERR_PEER, "%s", why);
        pending_drop(w, p);
        k = (size_t)-1; /* the map shifted */
    }
}

void wd_worker_pd_on_drain(struct wd_worker *w)
{
    for (size_t k = 0; k < w->pending.cap; k++) {
        struct wd_pd_pending *p = w->pending.slots[k].value;
        if (!p || p->has_request || !p->has_target)
            continue;
        boot_release(w, &p->decode_peer, p->id);
        pending_drop(w, p);
        k = (size_t)-1; /* the map shifted */
    }
}

int wd_worker_pd_n_waiting(const struct wd_worker *w, int dp)
{
    int n = 0;
    for (size_t k = 0; k < w->pending.cap; k++) {
        const struct wd_pd_pending *p = w->pending.slots[k].value;
        n += p && !p->is_aborted && (dp < 0 || p->dp == dp);
    }
    return n;
}

/* ---------------------------------------------------------------- both */

int wd_worker_pd_on_abort(struct wd_worker *w, uint64_t id)
{
    struct wd_pd_pending *p = wd_u64map_get(&w->pending, id);
    struct wd_worker_req *r = wd_u64map_get(&w->reqs, id);
    wd_log(WD_LOG_DEBUG, "pd", "request %llu: Abort (%s)", (unsigned long long)id,
           p   ? (p->has_target ? "pending with its KvTarget" : "pending")
           : r ? "running"
               : "unknown");
    if (p) { /* prefill: never started, nothing was written */
        if (p->has_target) {
            boot_release(w, &p->decode_peer, id);
            pending_drop(w, p);
        } else if (!p->is_aborted) {
            /* The KvTarget may still be on its way (the decode side reserves first). */
            free(p->prompt);
            p->prompt = NULL;
            p->has_request = 0;
            p->is_aborted = 1;
            p->deadline_ms = 0;
            p->t_arrival_ms = wd_now_ms();
        }
        return 1;
    }
    if (!r || !r->is_pd)
        return 0;
    if (w->role == WD_WORKER_DECODE && !r->is_activated) {
        /* The prefill side may be writing: keep the pages until it says so. */
        if (!r->is_cancelled) {
            r->is_cancelled = 1;
            r->cancel_deadline_ms = wd_now_ms() + quarantine_ms(w);
        }
        if (!r->pages) /* not reserved yet: on_reserved aborts */
            return 1;
        if (r->is_target_unsent)
            wd_engine_host_abort(w->host, id); /* the target never left: nobody writes */
        return 1;
    }
    wd_engine_host_abort(w->host, id);
    return 1;
}

int wd_worker_pd_on_event(struct wd_worker *w, struct wd_worker_req *r,
                          const struct wd_engine_event *ev, const void *extra)
{
    if (w->role == WD_WORKER_DECODE) {
        if (ev->kind == WD_ENGINE_EV_RESERVED) {
            on_reserved(w, r, ev, extra);
            return 1;
        }
        if (r->is_cancelled && ev->kind == WD_ENGINE_EV_TOKEN && ev->finish != WD_FINISH_NONE) {
            wd_worker_req_drop(w, r, "aborted"); /* the router already ended it */
            return 1;
        }
        if (ev->kind == WD_ENGINE_EV_TOKEN && ev->finish == WD_FINISH_ABORT && !r->is_activated)
            wd_metrics_add(w->metrics, w->m_kv_failures, "lease_expired", 1);
        return 0; /* tokens stream as for any request */
    }
    /* prefill side */
    if (ev->kind == WD_ENGINE_EV_TOKEN && ev->is_prefilled) {
        struct wd_msg m;
        wd_msg_init(&m, WD_MSG_KV_DONE);
        struct wd_msg_kv_done *d = &m.kv_done;
        d->request_id = r->id;
        d->first_token = ev->token;
        d->logprob = ev->logprob;
        d->n_top = ev->n_top;
        memcpy(d->top_ids, ev->top_ids, sizeof(d->top_ids));
        memcpy(d->top_logprobs, ev->top_logprobs, sizeof(d->top_logprobs));
        d->n_prompt_tokens = ev->n_prompt;
        d->kv_bytes = ev->kv_bytes;
        d->transfer_us = ev->transfer_us;
        d->wait_target_us = r->wait_target_us;
        wd_log(WD_LOG_DEBUG, "pd", "request %llu: prefilled, KvDone", (unsigned long long)r->id);
        send_boot(w, &r->decode_peer, &m);
        wd_worker_send(w, &m); /* the router: this prefill is done */
        observe_transfer(w, ev->kv_bytes, ev->transfer_us);
        struct wd_error err = {0};
        wd_engine_host_release(w->host, r->id, &err);
        wd_worker_req_drop(w, r, "finished");
        return 1;
    }
    if (ev->kind == WD_ENGINE_EV_ERROR) {
        char msg[WD_MSG_TEXT_CAP];
        snprintf(msg, sizeof(msg), "%.*s", ev->extra, (const char *)extra);
        boot_error(w, &r->decode_peer, r->id, (enum wd_status)ev->status, msg);
        wd_metrics_add(w->metrics, w->m_kv_failures, "transfer", 1);
        return 0; /* and the router hears it as for any request */
    }
    if (ev->kind == WD_ENGINE_EV_TOKEN && ev->finish != WD_FINISH_NONE) {
        /* Aborted (router, deadline): the engine flushed its puts before freeing. */
        boot_release(w, &r->decode_peer, r->id);
        if (ev->status == WD_ERR_TIMEOUT)
            wd_worker_send_error(w, r->id, WD_ERR_TIMEOUT, "deadline passed during prefill");
        wd_worker_req_drop(w, r, ev->status == WD_ERR_TIMEOUT ? "timeout" : "aborted");
        return 1;
    }
    return 1; /* a prefill worker streams nothing else */
}

void wd_worker_pd_service(struct wd_worker *w)
{
    struct wd_error err = {0};
    /* Decode: messages from prefill workers, sends that wait, quarantines that ended. */
    for (int i = 0; i < w->n_conns; i++) {
        for (;;) {
            struct wd_msg m;
            if (wd_zsock_recv(w->conns[i].sock, 0, &m, &err) != WD_OK)
                break;
            on_prefill_msg(w, i, &m);
            wd_msg_free(&m);
        }
        push_conn(w, i);
    }
    int64_t now = wd_now_ms();
    for (size_t k = 0; w->role == WD_WORKER_DECODE && k < w->reqs.cap; k++) {
        struct wd_worker_req *r = w->reqs.slots[k].value;
        if (r && r->is_cancelled && !r->is_activated && r->pages && now >= r->cancel_deadline_ms &&
            r->cancel_deadline_ms) {
            r->cancel_deadline_ms = 0;
            wd_log(WD_LOG_WARN, "pd", "request %llu: the prefill side never released its pages",
                   (unsigned long long)r->id);
            wd_engine_host_abort(w->host, r->id);
        }
    }
    /* Prefill: messages from decode workers; halves that waited past their deadline. */
    while (w->boot) {
        struct wd_msg m;
        struct wd_zsock_peer from;
        if (wd_zsock_recv_from(w->boot, 0, &from, &m, &err) != WD_OK)
            break;
        if (m.kind == WD_MSG_KV_DESCRIPTORS)
            on_descriptors(w, &m.kv_descriptors);
        else if (m.kind == WD_MSG_KV_TARGET)
            on_target(w, &from, &m.kv_target);
        else
            boot_error(w, &from, 0, WD_ERR_UNSUPPORTED,
                       "the bootstrap endpoint takes KvTarget "
                       "and KvDescriptors only");
        wd_msg_free(&m);
    }
    for (size_t k = 0; k < w->pending.cap; k++) {
        struct wd_pd_pending *p = w->pending.slots[k].value;
        /* The half that came alone waits until the deadline (or a minute without one). */
        int64_t limit = p ? (p->deadline_ms ? p->deadline_ms : p->t_arrival_ms + 60000) : 0;
        if (!p || now < limit)
            continue;
        if (p->is_aborted) {
            pending_drop(w, p); /* no KvTarget ever came: nobody waits */
            k = (size_t)-1;
            continue;
        }
        if (p->has_request)
            wd_worker_send_error(w, p->id, WD_ERR_TIMEOUT,
                                 "the decode side's KvTarget did not come before the deadline");
        if (p->has_target)
            boot_error(w, &p->decode_peer, p->id, WD_ERR_TIMEOUT,
                       "the PrefillRequest did not come before the deadline");
        pending_drop(w, p);
        k = (size_t)-1; /* the map shifted */
    }
}
