/* The worker front-end's state, shared by its files: worker.c (bring-up, the serving loop,
 * registration, heartbeats, drain, metrics) and worker_requests.c (requests in, tokens
 * out). Internal to common/server. */
#ifndef WD_SERVER_WORKER_INTERNAL_H
#define WD_SERVER_WORKER_INTERNAL_H

#include "common/config/model_config.h"
#include "common/engine/engine_host.h"
#include "common/net/msg.h"
#include "common/net/zsock.h"
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
    /* Disaggregation. Decode side: the pair's prefill connection, the reserved pages (the
     * KvTarget), whether KV landed, a cancel waiting for the prefill side to stop writing.
     * Prefill side: the decode worker to notify. */
    int is_pd;
    int conn;       /* decode: index into w->conns */
    int32_t *pages; /* decode: [n_pages] reserved */
    int n_pages;
    int is_target_unsent; /* decode: KvTarget not sent yet (connection not up) */
    int is_activated;     /* decode: KvDone came, tokens flow */
    int is_cancelled;     /* decode: aborted before activation, pages held until release */
    int64_t cancel_deadline_ms;
    int64_t t_reserved_ms;            /* decode: pages reserved (pair setup, wait for KV) */
    struct wd_zsock_peer decode_peer; /* prefill: the decode worker's routing id */
    uint32_t wait_target_us;          /* prefill: request arrival to target */
};

/* A decode worker's connection to one prefill worker's bootstrap endpoint (a DEALER whose
 * routing id is the decode worker's instance id). */
struct wd_pd_conn {
    char endpoint[WD_MSG_NAME_CAP];
    char instance_id[WD_MSG_ID_CAP]; /* the prefill worker */
    void *sock;
    int is_described;      /* our KvDescriptors went out on it */
    int64_t first_fail_ms; /* sends failing since (0: none) */
};

/* Prefill side: a request waiting for its other half (PrefillRequest or KvTarget). */
struct wd_pd_pending;
/* Prefill side: one decode DP group's KV regions, connected under an engine peer index. */
struct wd_pd_set {
    char decode_id[WD_MSG_ID_CAP];
    uint64_t descriptors_id;
    int dp_rank;
    int32_t index;
    int64_t t_setup_us; /* KvDescriptors received */
    int n_setup_wait;   /* DP ranks yet to report the set ready (EV_PEER_READY) */
    int is_setup_failed;
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
    int64_t drain_settle_ms; /* not before: requests the router sent before it knew */
    int is_aborting_all;
    int64_t abort_deadline_ms;

    struct wd_u64map reqs;        /* id -> struct wd_worker_req */
    struct wd_worker_req **dirty; /* requests with tokens to send */
    int n_dirty, dirty_cap;

    /* disaggregation (worker_pd.c) */
    uint64_t descriptors_id; /* random per process: a restart makes a new pair */
    uint8_t **dp_descs;      /* decode: [n_dp] descriptor records from the engine */
    size_t *dp_desc_len;     /* [n_dp] */
    void *boot;              /* prefill: the bootstrap ROUTER */
    char bootstrap_endpoint[WD_MSG_NAME_CAP];
    struct wd_pd_conn *conns; /* decode: [n_conns] */
    int n_conns;
    struct wd_u64map pending; /* prefill: id -> struct wd_pd_pending */
    struct wd_pd_set *sets;   /* prefill: [n_sets] */
    int n_sets;
    int m_kv_transfer_us, m_kv_bytes, m_kv_failures, m_kv_wait_us, m_kv_pair_setup, m_kv_rate;

    struct wd_worker_http *http;
    int metrics_port;
    struct wd_metrics *metrics;
    int m_requests, m_tokens, m_running, m_waiting, m_free, m_total, m_queued, m_draining,
        m_registered, m_registrations;
    int64_t next_publish_ms;
};

/* worker_pd.c */
enum wd_status wd_worker_pd_init(struct wd_worker *w, struct wd_error *err);
void wd_worker_pd_cleanup(struct wd_worker *w);
/* How long a closing worker lets its last messages (errors, releases) leave. */
#define SHUTDOWN_LINGER_MS 500
/* Prefill: every half-arrived request (PrefillRequest or KvTarget alone, or an aborted
 * marker) is answered, the router with an error and the decode side with KvRelease (nothing
 * was written), and dropped: at shutdown and when the engine fails. */
void wd_worker_pd_fail_pending(struct wd_worker *w, const char *why);
/* Prefill: requests of DP rank dp (every rank when dp < 0) of which one half came (aborted
 * markers not counted): waiting for the decode side's pages, and in flight for the drain. */
int wd_worker_pd_n_waiting(const struct wd_worker *w, int dp);
/* Prefill, when a drain begins: KvTargets whose PrefillRequest has not come are answered
 * with KvRelease (that request would be refused now), so the decode side frees its pages
 * at once and the drain does not wait for them. */
void wd_worker_pd_on_drain(struct wd_worker *w);
/* Sockets the serving loop polls for the pairs (written to items; returns the count). */
int wd_worker_pd_poll_items(struct wd_worker *w, void *items, int cap);
/* Every loop pass: bootstrap messages, retried sends, cancel and pending timers. */
void wd_worker_pd_service(struct wd_worker *w);
void wd_worker_pd_on_decode_request(struct wd_worker *w, const struct wd_msg_generate *g);
void wd_worker_pd_on_prefill_request(struct wd_worker *w, const struct wd_msg_generate *g);
/* 1 when the abort concerned a disaggregated request (handled here). */
int wd_worker_pd_on_abort(struct wd_worker *w, uint64_t id);
/* 1 when the event is the pairs' business (consumed here). */
int wd_worker_pd_on_event(struct wd_worker *w, struct wd_worker_req *r,
                          const struct wd_engine_event *ev, const void *extra);
void wd_worker_pd_on_engine_descriptors(struct wd_worker *w, const struct wd_engine_event *ev,
                                        const void *extra);
/* Prefill: a DP rank has the peer set ready (EV_PEER_READY); the pair-setup time. */
void wd_worker_pd_on_engine_peer_ready(struct wd_worker *w, const struct wd_engine_event *ev);
/* Request bookkeeping shared with worker_requests.c. */
struct wd_worker_req *wd_worker_req_new(struct wd_worker *w, const struct wd_msg_generate *g);
void wd_worker_req_drop(struct wd_worker *w, struct wd_worker_req *r, const char *outcome);
/* Seed for a request without one. */
uint64_t wd_worker_seed(const struct wd_msg_generate *g);
/* The engine params of a request message (prompt and stop ids borrowed from g). */
void wd_worker_params(const struct wd_msg_generate *g, struct wd_request_params *p);

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
