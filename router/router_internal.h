/*
 * The router's state and the functions its files share (internal to router/).
 *
 *   router.c           create / destroy, the event loop, timers
 *   router_http.c      HTTP routing, auth, the generation endpoints' admission
 *   router_info.c      the GET endpoints (models, health, metrics, info, workers)
 *   router_requests.c  a request's life: dispatch, tokens, finish, retry, deadline, abort
 *   router_workers.c   worker messages: registration, heartbeats, drain, expiry
 *
 * Everything runs on the event loop thread; nothing here is locked.
 */
#ifndef WD_ROUTER_INTERNAL_H
#define WD_ROUTER_INTERNAL_H

#include <signal.h>
#include <stdint.h>

#include "common/net/msg.h"
#include "router/api_request.h"
#include "router/api_response.h"
#include "router/http.h"
#include "router/model.h"
#include "router/output.h"
#include "router/policy.h"
#include "router/router.h"
#include "router/router_args.h"
#include "router/router_metrics.h"
#include "router/worker_link.h"
#include "router/workers.h"

#define WD_RREQ_INDEX_BITS 21 /* request slots per router: up to 2M */
#define WD_HEALTH_TIMEOUT_SECS 20.0

enum wd_rreq_state { WD_RREQ_FREE = 0, WD_RREQ_QUEUED, WD_RREQ_RUNNING };

struct wd_rreq;
struct wd_rreq_link {
    struct wd_rreq *prev, *next;
};

/* One generation request from admission to its answer. Slots are preallocated and reused;
 * the wire id ((gen << INDEX_BITS) | index) changes on every dispatch, so a chunk from an
 * attempt that was retried or aborted no longer finds its request. */
struct wd_rreq {
    int index;
    uint32_t gen;
    enum wd_rreq_state state;
    uint64_t wire_id;
    struct wd_http_conn *conn; /* NULL once the client is gone or answered */
    struct wd_api_request api;
    int32_t *prompt; /* [n_prompt] */
    int n_prompt;
    int max_tokens;
    int32_t stop_ids[WD_API_MAX_STOP_IDS + WD_ROUTER_MAX_EOS]; /* sent to the worker */
    int n_stop_ids;
    struct wd_output out;
    int has_out;
    struct wd_api_stream_state ss;
    int is_http_streaming; /* the 200 and the first events went out */
    struct wd_buf sse;     /* stream events being built */
    struct wd_worker_ref worker;
    int dp_rank;
    int n_attempts;
    int is_health; /* /health_generate's probe */
    double t_arrival, t_dispatch, t_first, t_last, deadline;
    long long created; /* unix seconds for "created" */
    char resp_id[64];
    struct wd_rreq_link q; /* waiting queue (free slots: q.next) */
    struct wd_rreq_link a; /* live requests in deadline order (one list per kind) */
};

struct wd_rreq_list {
    struct wd_rreq *head, *tail;
    int n;
};

struct wd_router {
    struct wd_router_args args;
    struct wd_router_model *model;
    struct wd_http *http;
    struct wd_worker_link *link;
    struct wd_workers *workers;
    struct wd_policy *policy; /* decode workers (a prefill policy joins it in PD) */
    struct wd_router_metrics m;
    struct wd_rreq *slots; /* [n_slots] */
    int n_slots;
    struct wd_rreq *free_slots; /* linked through q.next */
    struct wd_rreq_list queue;  /* QUEUED, by arrival */
    struct wd_rreq_list live;   /* QUEUED and RUNNING user requests, by arrival = deadline */
    struct wd_rreq_list health; /* /health_generate probes (their own shorter deadline) */
    int n_running;
    int wake_fd;
    volatile sig_atomic_t is_stopping;
    uint64_t boot_nonce; /* makes response ids unique across restarts */
    uint32_t next_worker_id;
    uint64_t n_admitted; /* numbers response ids */
    double t_start;
    double next_expiry_check;
};

double wd_router_now(void);

/* router_http.c */
int wd_router_http_precheck(void *ctx, const struct wd_http_request *req,
                            struct wd_http_response *resp);
void wd_router_http_request(void *ctx, struct wd_http_conn *c, const struct wd_http_request *req);
void wd_router_http_gone(void *ctx, void *user);
/* Answers c with an OpenAI-shaped error (and Retry-After for 429). */
void wd_router_respond_error(struct wd_http_conn *c, const struct wd_api_error *e,
                             int retry_after_secs);

/* router_info.c: answers a GET endpoint; 0 when the path is not one of them. */
int wd_router_info(struct wd_router *r, struct wd_http_conn *c, const char *path);
void wd_router_health_generate(struct wd_router *r, struct wd_http_conn *c);

/* router_requests.c */
/* Admits a parsed and tokenized request: dispatch, queue, or answer 429 / 503. Takes
 * ownership of *api and prompt. */
void wd_router_admit(struct wd_router *r, struct wd_http_conn *c, struct wd_api_request *api,
                     int32_t *prompt, int n_prompt, int max_tokens, int is_health);
void wd_router_on_chunk(struct wd_router *r, const unsigned char *route, size_t route_len,
                        const struct wd_msg_token_chunk *ch);
void wd_router_on_request_error(struct wd_router *r, const unsigned char *route, size_t route_len,
                                const struct wd_msg_error *e);
/* The client of rq went away. */
void wd_router_client_gone(struct wd_router *r, struct wd_rreq *rq);
/* Fails over (or fails) every request on the worker in slot, which is going away. */
void wd_router_fail_worker_requests(struct wd_router *r, int slot, const char *reason);
/* Deadlines: answers 504 for the requests past theirs; returns seconds to the next one. */
double wd_router_check_deadlines(struct wd_router *r, double now);
/* Dispatches queued requests while slots are free (nothing once stopping). */
void wd_router_pump(struct wd_router *r);
/* Ends every open request with a 503 (an error event when streaming) and aborts it on its
 * worker: the router is stopping. */
void wd_router_fail_all(struct wd_router *r, const char *why);

/* router_workers.c */
void wd_router_on_worker_message(struct wd_router *r, const unsigned char *route, size_t route_len,
                                 struct wd_msg *m);
void wd_router_on_bad_frame(struct wd_router *r, const unsigned char *route, size_t route_len,
                            const struct wd_error *err);
/* Drops workers silent past the heartbeat timeout. */
void wd_router_expire_workers(struct wd_router *r, double now);
/* Sends Abort{request_id} to a peer (best effort). */
void wd_router_send_abort_to(struct wd_router *r, const unsigned char *route, size_t route_len,
                             uint64_t request_id);
/* Sends a message to the worker of slot; WD_ERR_PEER when it cannot be reached. */
enum wd_status wd_router_send(struct wd_router *r, int slot, const struct wd_msg *m,
                              struct wd_error *err);
/* Refreshes the per-worker gauges (before /metrics renders). */
void wd_router_update_worker_gauges(struct wd_router *r);

#endif
