/*
 * The router's state and the functions its files share (internal to router/).
 *
 *   router.c           create / destroy, the event loop, timers
 *   router_http.c      HTTP routing, auth, the generation endpoints' admission
 *   router_info.c      the GET endpoints (models, health, metrics, info, workers)
 *   router_requests.c  a request's life: queue, tokens, finish, retry, deadline, abort
 *   router_dispatch.c  one attempt: placement, the messages to one worker or a pair, the
 *                      pair's bookkeeping (prefill side, KvDone's figures, aborts)
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
#include "router/pd_route.h"
#include "router/policy.h"
#include "router/router.h"
#include "router/router_args.h"
#include "router/router_metrics.h"
#include "router/worker_link.h"
#include "router/workers.h"

#define WD_RREQ_INDEX_BITS 21 /* request slots per router: up to 2M */
#define WD_HEALTH_TIMEOUT_SECS 20.0
/* A disaggregated request whose decode worker finished before its prefill worker's KvDone
 * reached the router (they travel on two connections) waits this long for it, so that its
 * figures make the metrics and the answer; then it is answered without them. */
#define WD_PD_KV_DONE_GRACE_SECS 1.0

enum wd_rreq_state { WD_RREQ_FREE = 0, WD_RREQ_QUEUED, WD_RREQ_RUNNING };

struct wd_rreq;
/* The two workers of a disaggregated request. */
enum wd_rreq_side { WD_SIDE_DECODE = 0, WD_SIDE_PREFILL };

/* KvDone's figures. */
struct wd_rreq_kv {
    int has_done;
    uint64_t bytes;
    uint32_t transfer_us, wait_target_us;
    double prefill_secs; /* the attempt's dispatch to the KvDone at the router */
};

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
    int is_http_streaming;       /* the 200 and the first events went out */
    struct wd_buf sse;           /* stream events being built */
    struct wd_worker_ref worker; /* the decode worker (the only one when prefilled there) */
    int dp_rank;
    /* disaggregated (is_pd): the prefill side of the pair */
    int is_pd;
    struct wd_worker_ref prefill;
    int prefill_dp_rank;
    int is_prefill_live; /* the prefill worker has it: until its KvDone, Error or our Abort */
    int is_held;         /* finished; the answer waits for the KvDone (router->held) */
    double held_until;
    struct wd_rreq_kv kv;
    double t_attempt; /* this attempt's dispatch */
    int n_attempts;
    int is_health; /* /health_generate's probe */
    double t_arrival, t_dispatch, t_first, t_last, deadline;
    long long created; /* unix seconds for "created" */
    char resp_id[64];
    struct wd_rreq_link q; /* waiting queue or held list (free slots: q.next) */
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
    struct wd_pd_route *route; /* placement: the policies of both roles */
    struct wd_router_metrics m;
    struct wd_rreq *slots; /* [n_slots] */
    int n_slots;
    struct wd_rreq *free_slots; /* linked through q.next */
    struct wd_rreq_list queue;  /* QUEUED, by arrival */
    struct wd_rreq_list live;   /* QUEUED and RUNNING user requests, by arrival = deadline */
    struct wd_rreq_list health; /* /health_generate probes (their own shorter deadline) */
    struct wd_rreq_list held;   /* finished, waiting for a KvDone, by held_until */
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
void wd_router_on_kv_done(struct wd_router *r, const unsigned char *route, size_t route_len,
                          const struct wd_msg_kv_done *kd);
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

/* router_dispatch.c */
/* One attempt of rq: picks the worker or the pair (leaving out the excluded ones), assigns
 * a new wire id, sends GenerateRequest, or DecodeRequest then PrefillRequest, and books
 * the pages placed. Returns 0 when sent; -1 with e filled when the request cannot go
 * anywhere (e->status 503: no worker; 500: the router's own bug); 1 with e filled when the
 * picked worker *unreachable_p (on side *side_p) could not be sent to: another may do (a
 * decode side that got its request was told to Abort). Leaves the request's state alone. */
int wd_router_dispatch_attempt(struct wd_router *r, struct wd_rreq *rq, struct wd_worker_ref excl_p,
                               struct wd_worker_ref excl_d, struct wd_api_error *e,
                               struct wd_worker_ref *unreachable_p, enum wd_rreq_side *side_p);
/* Sends Abort for rq's current attempt to one side (best effort, counted by reason); the
 * prefill side only while it is live, and that ends it. */
void wd_router_abort_side(struct wd_router *r, struct wd_rreq *rq, enum wd_rreq_side side,
                          const char *reason);
/* The prefill side's part is over (KvDone, error, abort, loss): its load bookkeeping. */
void wd_router_prefill_end(struct wd_router *r, struct wd_rreq *rq);
/* Records a KvDone's figures in rq and the metrics, and ends the prefill side. */
void wd_router_kv_done_record(struct wd_router *r, struct wd_rreq *rq,
                              const struct wd_msg_kv_done *kd);
/* Counts a failed attempt of a disaggregated request. */
void wd_router_pd_failure(struct wd_router *r, enum wd_pd_failure kind);
/* What /generate's meta_info.kv_transfer shows for rq. */
void wd_router_kv_stats(struct wd_router *r, const struct wd_rreq *rq, struct wd_api_kv_stats *s);

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
