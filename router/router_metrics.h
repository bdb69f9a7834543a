/*
 * The router's Prometheus families (all named wideep:router_*): their registration and
 * the ids the event loop updates. Owned by the router; updated and rendered on its one
 * event loop thread (wd_metrics is not thread-safe).
 */
#ifndef WD_ROUTER_METRICS_H
#define WD_ROUTER_METRICS_H

#include "common/util/metrics.h"

struct wd_router_metrics {
    struct wd_metrics *reg;
    int requests;        /* counter {outcome} */
    int ttft;            /* histogram: arrival to first token */
    int itl;             /* histogram: between tokens */
    int e2e;             /* histogram: arrival to the last byte handed to the client */
    int queue_time;      /* histogram: arrival to dispatch */
    int running, queued; /* gauges */
    int prompt_tokens, generation_tokens; /* counters */
    int worker_load;                      /* gauge {worker}: load of each worker/DP rank */
    int worker_free_pages;                /* gauge {worker} */
    int workers;                          /* gauge {role}: registered workers */
    int registrations;                    /* counter {result}: accepted / refused */
    int worker_drops;                     /* counter {reason}: heartbeat / reregister / drain */
    int worker_cooloffs;                  /* counter */
    int retries;                          /* counter */
    int aborts;                           /* counter {reason}: client / deadline / stop */
    int bad_frames;                       /* counter: worker frames that did not decode */
    /* per pool {role}, from the heartbeats: what the autoscalers scale on */
    int pool_dp_ranks, pool_running, pool_waiting, pool_queued_prefill_tokens, pool_kv_usage;
    /* prefill/decode disaggregation */
    int pd_requests;       /* counter {mode}: disaggregated / short_prompt / no_prefill */
    int pd_failures;       /* counter {kind}: prefill_error, decode_error, prefill_lost,
                              decode_lost, timeout */
    int kv_transfer_time;  /* histogram: KvDone's transfer_us, seconds */
    int kv_transfer_bytes; /* histogram: KvDone's kv_bytes */
    int kv_transfer_rate;  /* histogram: kv_bytes / transfer time, GB/s */
    int kv_wait_target;    /* histogram: KvDone's wait_target_us, seconds */
    int pd_prefill_time;   /* histogram: the pair's dispatch to KvDone at the router */
};

/* The label values of pd_failures, in this order. */
enum wd_pd_failure {
    WD_PD_PREFILL_ERROR = 0, /* the prefill worker answered Error */
    WD_PD_DECODE_ERROR,      /* the decode worker answered Error or aborted it */
    WD_PD_PREFILL_LOST,      /* the prefill worker dropped (heartbeats) or unreachable */
    WD_PD_DECODE_LOST,       /* the decode worker dropped or unreachable */
    WD_PD_TIMEOUT,           /* the deadline passed (at the router or at a worker) */
    WD_PD_N_FAILURES,
};
const char *wd_pd_failure_name(enum wd_pd_failure kind);

enum wd_status wd_router_metrics_create(struct wd_router_metrics *m, struct wd_error *err);
void wd_router_metrics_destroy(struct wd_router_metrics *m);

#endif
