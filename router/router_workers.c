/*
 * Worker messages: Register (checked against the router's own model before any traffic:
 * protocol version, config.json hash, role), Heartbeat (per-DP-rank load; an unknown
 * instance is told to register again), Drain, TokenChunk and Error (to the request table),
 * and the heartbeat-timeout expiry that drops silent workers. Refusals name the mismatch
 * in both logs (the worker gets it in RegisterRefuse).
 */
#include <stdio.h>
#include <string.h>

#include "common/net/zsock.h"
#include "common/util/log.h"
#include "router/router_internal.h"

static void printable_route(const unsigned char *route, size_t len, char *out, size_t cap)
{
    struct wd_zsock_peer peer;
    peer.len = len <= WD_ZSOCK_PEER_CAP ? len : WD_ZSOCK_PEER_CAP;
    memcpy(peer.id, route, peer.len);
    wd_zsock_peer_str(&peer, out, cap);
}

enum wd_status wd_router_send(struct wd_router *r, int slot, const struct wd_msg *m,
                              struct wd_error *err)
{
    struct wd_worker *wk = wd_workers_at(r->workers, slot);
    if (!wk)
        return wd_error_set(err, WD_ERR_PEER, "worker slot %d is empty", slot);
    return wd_worker_link_send(r->link, wk->route_id, wk->route_id_len, m, err);
}

static void send_to(struct wd_router *r, const unsigned char *route, size_t route_len,
                    const struct wd_msg *m)
{
    struct wd_error err = {0};
    if (wd_worker_link_send(r->link, route, route_len, m, &err) != WD_OK) {
        char who[2 * WD_ZSOCK_PEER_CAP + 3];
        printable_route(route, route_len, who, sizeof(who));
        wd_log(WD_LOG_WARN, "workers", "reply %s to %s not sent: %s", wd_msg_kind_str(m->kind), who,
               err.msg);
    }
}

void wd_router_send_abort_to(struct wd_router *r, const unsigned char *route, size_t route_len,
                             uint64_t request_id)
{
    struct wd_msg m;
    wd_msg_init(&m, WD_MSG_ABORT);
    m.abort.request_id = request_id;
    struct wd_error err = {0};
    if (wd_worker_link_send(r->link, route, route_len, &m, &err) == WD_OK)
        wd_metrics_add(r->m.reg, r->m.aborts, "unknown_request", 1);
}

static void send_error(struct wd_router *r, const unsigned char *route, size_t route_len,
                       enum wd_status code, const char *fmt, const char *arg)
{
    struct wd_msg m;
    wd_msg_init(&m, WD_MSG_ERROR);
    m.error.request_id = 0;
    m.error.code = code;
    snprintf(m.error.message, sizeof(m.error.message), fmt, arg);
    send_to(r, route, route_len, &m);
}

/* Why this worker cannot serve with this router, or NULL. */
static const char *incompatible(struct wd_router *r, const struct wd_msg_register *g, char *why,
                                size_t cap)
{
    const struct wd_msg_fingerprint *fp = &g->fp;
    if (fp->protocol_version != WD_MSG_PROTOCOL_VERSION)
        snprintf(why, cap, "protocol version %u, the router speaks %u", fp->protocol_version,
                 WD_MSG_PROTOCOL_VERSION);
    else if (fp->config_hash != r->model->config_hash)
        snprintf(why, cap,
                 "another model: its config.json hash is %016llx (model '%s'), the router's is "
                 "%016llx (%s): model or vocabulary differ",
                 (unsigned long long)fp->config_hash, fp->model,
                 (unsigned long long)r->model->config_hash, r->model->path);
    else if (g->role != WD_MSG_ROLE_DECODE)
        snprintf(why, cap, "role prefill: this router serves requests on decode workers only");
    else if (g->n_dp_ranks > WD_WORKER_MAX_DP)
        snprintf(why, cap, "%d DP ranks (the router takes at most %d)", g->n_dp_ranks,
                 WD_WORKER_MAX_DP);
    else
        return NULL;
    return why;
}

static void on_register(struct wd_router *r, const unsigned char *route, size_t route_len,
                        const struct wd_msg_register *g)
{
    char why[WD_MSG_TEXT_CAP];
    if (incompatible(r, g, why, sizeof(why))) {
        wd_log(WD_LOG_WARN, "workers", "refused worker %s: %s", g->instance_id, why);
        struct wd_msg m;
        wd_msg_init(&m, WD_MSG_REGISTER_REFUSE);
        snprintf(m.reg_refuse.reason, sizeof(m.reg_refuse.reason), "%s", why);
        send_to(r, route, route_len, &m);
        wd_metrics_add(r->m.reg, r->m.registrations, "refused", 1);
        return;
    }
    int old = wd_workers_find_instance(r->workers, g->instance_id);
    if (old >= 0) {
        /* Registered again (it restarted, or missed our ack): its old requests are lost. */
        wd_log(WD_LOG_INFO, "workers", "worker %s registers again; failing over its requests",
               g->instance_id);
        wd_router_fail_worker_requests(r, old, "the worker registered again (restarted)");
        wd_workers_remove(r->workers, old);
        wd_metrics_add(r->m.reg, r->m.worker_drops, "reregister", 1);
    }
    int64_t pages = g->dp[0].n_pages;
    for (int i = 1; i < g->n_dp_ranks; i++)
        pages = g->dp[i].n_pages < pages ? g->dp[i].n_pages : pages;
    struct wd_worker_info info = {.role = WD_WORKER_DECODE,
                                  .name = g->instance_id,
                                  .route_id = route,
                                  .route_id_len = route_len,
                                  .n_dp = g->n_dp_ranks,
                                  .page_size = g->fp.page_size,
                                  .pages_per_rank = pages};
    struct wd_error err = {0};
    int slot;
    if (wd_workers_add(r->workers, &info, wd_router_now(), &slot, &err) != WD_OK) {
        wd_log(WD_LOG_WARN, "workers", "refused worker %s: %s", g->instance_id, err.msg);
        struct wd_msg m;
        wd_msg_init(&m, WD_MSG_REGISTER_REFUSE);
        snprintf(m.reg_refuse.reason, sizeof(m.reg_refuse.reason), "%s", err.msg);
        send_to(r, route, route_len, &m);
        wd_metrics_add(r->m.reg, r->m.registrations, "refused", 1);
        return;
    }
    struct wd_msg m;
    wd_msg_init(&m, WD_MSG_REGISTER_ACK);
    m.reg_ack.worker_id = ++r->next_worker_id;
    m.reg_ack.heartbeat_interval_ms = (uint32_t)r->args.heartbeat_interval_ms;
    m.reg_ack.heartbeat_timeout_ms = (uint32_t)r->args.heartbeat_timeout_ms;
    send_to(r, route, route_len, &m);
    wd_metrics_add(r->m.reg, r->m.registrations, "accepted", 1);
    wd_metrics_set(r->m.reg, r->m.workers, "decode",
                   wd_workers_count(r->workers, WD_WORKER_DECODE));
    wd_log(WD_LOG_INFO, "workers",
           "worker %s registered: decode, %d DP rank(s), %lld KV pages of %d tokens per rank, "
           "tp %d dp %d ep %d, model %s, context %d",
           g->instance_id, g->n_dp_ranks, (long long)pages, g->fp.page_size, g->fp.parallel.tp,
           g->fp.parallel.dp, g->fp.parallel.ep, g->fp.model, g->context_len);
    wd_router_pump(r);
}

static void on_heartbeat(struct wd_router *r, const unsigned char *route, size_t route_len,
                         const struct wd_msg_heartbeat *hb)
{
    int slot = wd_workers_find_instance(r->workers, hb->instance_id);
    if (slot < 0) {
        /* A router that restarted does not know it: "register again". */
        send_error(r, route, route_len, WD_ERR_NOT_FOUND, "unknown instance %s: register again",
                   hb->instance_id);
        return;
    }
    double now = wd_router_now();
    struct wd_worker *wk = wd_workers_at(r->workers, slot);
    wd_workers_touch(r->workers, slot, route, route_len, now);
    int n = hb->n_dp_ranks < wk->n_dp ? hb->n_dp_ranks : wk->n_dp;
    for (int i = 0; i < n; i++)
        wd_workers_heartbeat(r->workers, slot, i, hb->dp[i].n_free_pages, hb->dp[i].n_running,
                             hb->dp[i].n_waiting, hb->dp[i].n_queued_prefill_tokens, now);
    if (hb->is_draining && !wk->is_draining)
        wd_log(WD_LOG_INFO, "workers", "worker %s is draining: no new requests go to it", wk->name);
    wk->is_draining = hb->is_draining;
}

static void on_drain(struct wd_router *r, const struct wd_msg_drain *d)
{
    int slot = wd_workers_find_instance(r->workers, d->instance_id);
    struct wd_worker *wk = wd_workers_at(r->workers, slot);
    if (!wk)
        return;
    if (!wk->is_draining)
        wd_log(WD_LOG_INFO, "workers", "worker %s is draining: no new requests go to it", wk->name);
    wk->is_draining = 1;
}

void wd_router_on_worker_message(struct wd_router *r, const unsigned char *route, size_t route_len,
                                 struct wd_msg *m)
{
    switch (m->kind) {
    case WD_MSG_TOKEN_CHUNK:
        wd_router_on_chunk(r, route, route_len, &m->chunk);
        break;
    case WD_MSG_HEARTBEAT:
        on_heartbeat(r, route, route_len, &m->heartbeat);
        break;
    case WD_MSG_REGISTER:
        on_register(r, route, route_len, &m->reg);
        break;
    case WD_MSG_DRAIN:
        on_drain(r, &m->drain);
        break;
    case WD_MSG_ERROR:
        if (m->error.request_id != 0) {
            wd_router_on_request_error(r, route, route_len, &m->error);
        } else {
            char who[2 * WD_ZSOCK_PEER_CAP + 3];
            printable_route(route, route_len, who, sizeof(who));
            wd_log(WD_LOG_WARN, "workers", "worker %s reports: %s (%s)", who, m->error.message,
                   wd_status_str(m->error.code));
        }
        break;
    default: {
        char who[2 * WD_ZSOCK_PEER_CAP + 3];
        printable_route(route, route_len, who, sizeof(who));
        wd_log(WD_LOG_WARN, "workers", "unexpected %s from %s: dropped", wd_msg_kind_str(m->kind),
               who);
        send_error(r, route, route_len, WD_ERR_INVALID, "the router does not take %s",
                   wd_msg_kind_str(m->kind));
    }
    }
}

void wd_router_on_bad_frame(struct wd_router *r, const unsigned char *route, size_t route_len,
                            const struct wd_error *err)
{
    /* common/net answered the sender and logged the line; the router counts it. */
    (void)route, (void)route_len, (void)err;
    wd_metrics_add(r->m.reg, r->m.bad_frames, NULL, 1);
}

void wd_router_expire_workers(struct wd_router *r, double now)
{
    double limit = r->args.heartbeat_timeout_ms / 1000.0;
    for (int s = 0; s < WD_WORKERS_MAX; s++) {
        struct wd_worker *wk = wd_workers_at(r->workers, s);
        if (!wk || now - wk->last_seen <= limit)
            continue;
        wd_log(WD_LOG_WARN, "workers", "worker %s dropped: nothing from it for %.0f ms", wk->name,
               (now - wk->last_seen) * 1000.0);
        char reason[160];
        snprintf(reason, sizeof(reason), "worker %s stopped responding", wk->name);
        wd_router_fail_worker_requests(r, s, reason);
        wd_workers_remove(r->workers, s);
        wd_metrics_add(r->m.reg, r->m.worker_drops, "heartbeat", 1);
        wd_metrics_set(r->m.reg, r->m.workers, "decode",
                       wd_workers_count(r->workers, WD_WORKER_DECODE));
    }
}

void wd_router_update_worker_gauges(struct wd_router *r)
{
    for (int s = 0; s < WD_WORKERS_MAX; s++) {
        const struct wd_worker *wk = wd_workers_at_const(r->workers, s);
        if (!wk)
            continue;
        for (int i = 0; i < wk->n_dp; i++) {
            char label[160];
            snprintf(label, sizeof(label), "%s/dp%d", wk->name, i);
            wd_metrics_set(r->m.reg, r->m.worker_load, label,
                           (double)wd_worker_rank_load(&wk->ranks[i]));
            wd_metrics_set(r->m.reg, r->m.worker_free_pages, label,
                           (double)wk->ranks[i].free_pages);
        }
    }
    wd_metrics_set(r->m.reg, r->m.workers, "decode",
                   wd_workers_count(r->workers, WD_WORKER_DECODE));
}
