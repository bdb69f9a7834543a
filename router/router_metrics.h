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
};

enum wd_status wd_router_metrics_create(struct wd_router_metrics *m, struct wd_error *err);
void wd_router_metrics_destroy(struct wd_router_metrics *m);

#endif
