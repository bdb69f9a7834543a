/* The worker front-end's state, shared by its files: worker.c (bring-up, the serving loop,
 * registration, heartbeats, drain, metrics) and worker_requests.c (requests in, tokens
 * out). Internal to common/server. */
#ifndef WD_SERVER_WORKER_INTERNAL_H
#define WD_SERVER_WORKER_INTERNAL_H

#include "common/config/model_config.h"
#include "common/engine/engine_host.h"
#include "common/net/msg.h"
#include "common/server/worker.h"
#include "common/server/worker_http.h"
#include "common/util/metrics.h"
#include "common/util/u64map.h"

/* A request the worker serves: its pending tokens since the last chunk sent. */
struct wd_worker_req {
    uint64_t id;
    int dp;
    int n_prompt;
    int want_logprobs, n_top;
    uint32_t deadline_ms;
    int n, cap;          /* pending tokens */
    int32_t *ids;        /* [cap] */
    float *logprobs;     /* [cap] */
    int32_t *top_ids;    /* [cap * n_top] */
    float *top_logprobs; /* [cap * n_top] */
    int is_dirty;        /* in w->dirty */
    enum wd_finish_reason finish;
    int n_generated;
};

struct wd_worker {
    struct wd_worker_args args;
    enum wd_worker_role role;
    const char *role_name;
    struct wd_model_config mc;
    struct wd_layout *layout;
    struct wd_engine_host_config hc;
    struct wd_engine_host *host;
    int n_dp, context_length;
    char instance_id[WD_MSG_ID_CAP];
    struct wd_msg_fingerprint fp;

    void *zctx, *sock; /* the DEALER to the router */
    int is_registered;
    uint32_t worker_id, hb_interval_ms;
    int64_t next_register_ms, next_heartbeat_ms;
    uint64_t hb_seq;
    int is_refused;

    int is_draining;
    int64_t drain_deadline_ms;
    int is_aborting_all;
    int64_t abort_deadline_ms;

    struct wd_u64map reqs;        /* id -> struct wd_worker_req */
    struct wd_worker_req **dirty; /* requests with tokens to send */
    int n_dirty, dirty_cap;

    struct wd_worker_http *http;
    int metrics_port;
    struct wd_metrics *metrics;
    int m_requests, m_tokens, m_running, m_waiting, m_free, m_total, m_queued, m_draining,
        m_registered, m_registrations;
    int64_t next_publish_ms;
};

/* worker_requests.c */
void wd_worker_on_generate(struct wd_worker *w, const struct wd_msg_generate *g);
void wd_worker_on_abort(struct wd_worker *w, uint64_t id);
void wd_worker_on_event(void *ctx, const struct wd_engine_event *ev, const void *extra);
/* Sends a chunk for every request with new tokens. */
void wd_worker_flush(struct wd_worker *w);
/* Fails every live request with an Error (the worker is going down). */
void wd_worker_fail_all(struct wd_worker *w, enum wd_status code, const char *why);
/* Sends m to the router; logs a failure once per message. */
enum wd_status wd_worker_send(struct wd_worker *w, const struct wd_msg *m);
void wd_worker_send_error(struct wd_worker *w, uint64_t id, enum wd_status code, const char *fmt,
                          ...) __attribute__((format(printf, 4, 5)));
void wd_worker_req_free(struct wd_worker_req *r);

#endif
