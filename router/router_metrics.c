/* Registration of the router's metric families. */
#include "router/router_metrics.h"

#include <string.h>

static const double latency_buckets[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                         0.1,    0.25,  0.5,    1,     2.5,  5,     10,
                                         30,     60,    120,    300,   600,  1800};
static const double itl_buckets[] = {0.0005, 0.001, 0.002, 0.004, 0.006, 0.008, 0.01, 0.015,
                                     0.02,   0.025, 0.03,  0.04,  0.05,  0.075, 0.1,  0.15,
                                     0.2,    0.3,   0.5,   1,     2,     5};

enum wd_status wd_router_metrics_create(struct wd_router_metrics *m, struct wd_error *err)
{
    memset(m, 0, sizeof(*m));
    WD_CHECK(wd_metrics_create(&m->reg, err));
    struct wd_metrics *r = m->reg;
    int nl = (int)(sizeof(latency_buckets) / sizeof(latency_buckets[0]));
    int ni = (int)(sizeof(itl_buckets) / sizeof(itl_buckets[0]));
    m->requests =
        wd_metrics_register(r, "wideep:router_requests_total", "Generation requests by outcome",
                            WD_METRIC_COUNTER, "outcome", NULL, 0);
    m->ttft = wd_metrics_register(r, "wideep:router_time_to_first_token_seconds",
                                  "Arrival at the router to the first token back",
                                  WD_METRIC_HISTOGRAM, NULL, latency_buckets, nl);
    m->itl = wd_metrics_register(r, "wideep:router_inter_token_latency_seconds",
                                 "Time between two tokens of a request", WD_METRIC_HISTOGRAM, NULL,
                                 itl_buckets, ni);
    m->e2e = wd_metrics_register(r, "wideep:router_e2e_request_latency_seconds",
                                 "Arrival to the end of the answer", WD_METRIC_HISTOGRAM, NULL,
                                 latency_buckets, nl);
    m->queue_time = wd_metrics_register(r, "wideep:router_queue_time_seconds",
                                        "Arrival to dispatch to a worker", WD_METRIC_HISTOGRAM,
                                        NULL, latency_buckets, nl);
    m->running = wd_metrics_register(r, "wideep:router_num_running_reqs", "Requests at the workers",
                                     WD_METRIC_GAUGE, NULL, NULL, 0);
    m->queued = wd_metrics_register(r, "wideep:router_num_queue_reqs",
                                    "Requests waiting for a slot", WD_METRIC_GAUGE, NULL, NULL, 0);
    m->prompt_tokens = wd_metrics_register(r, "wideep:router_prompt_tokens_total",
                                           "Prompt tokens of dispatched requests",
                                           WD_METRIC_COUNTER, NULL, NULL, 0);
    m->generation_tokens =
        wd_metrics_register(r, "wideep:router_generation_tokens_total",
                            "Completion tokens returned", WD_METRIC_COUNTER, NULL, NULL, 0);
    m->worker_load = wd_metrics_register(r, "wideep:router_worker_load",
                                         "Requests at a worker's DP rank (worker/dpN)",
                                         WD_METRIC_GAUGE, "worker", NULL, 0);
    m->worker_free_pages = wd_metrics_register(
        r, "wideep:router_worker_free_kv_pages",
        "Free KV pages of a worker's DP rank (last heartbeat)", WD_METRIC_GAUGE, "worker", NULL, 0);
    m->workers = wd_metrics_register(r, "wideep:router_workers", "Registered workers",
                                     WD_METRIC_GAUGE, "role", NULL, 0);
    m->registrations =
        wd_metrics_register(r, "wideep:router_registrations_total",
                            "Worker registrations by result", WD_METRIC_COUNTER, "result", NULL, 0);
    m->worker_drops =
        wd_metrics_register(r, "wideep:router_worker_drops_total", "Workers dropped by reason",
                            WD_METRIC_COUNTER, "reason", NULL, 0);
    m->worker_cooloffs = wd_metrics_register(r, "wideep:router_worker_cooloffs_total",
                                             "Workers cooled off after failures in a row",
                                             WD_METRIC_COUNTER, NULL, NULL, 0);
    m->retries =
        wd_metrics_register(r, "wideep:router_retries_total", "Requests retried on another worker",
                            WD_METRIC_COUNTER, NULL, NULL, 0);
    m->aborts = wd_metrics_register(r, "wideep:router_aborts_sent_total",
                                    "Abort messages sent to workers by reason", WD_METRIC_COUNTER,
                                    "reason", NULL, 0);
    m->bad_frames = wd_metrics_register(r, "wideep:router_bad_worker_frames_total",
                                        "Frames on the worker port that did not decode",
                                        WD_METRIC_COUNTER, NULL, NULL, 0);
    if (m->requests < 0 || m->ttft < 0 || m->itl < 0 || m->e2e < 0 || m->queue_time < 0 ||
        m->running < 0 || m->queued < 0 || m->prompt_tokens < 0 || m->generation_tokens < 0 ||
        m->worker_load < 0 || m->worker_free_pages < 0 || m->workers < 0 || m->registrations < 0 ||
        m->worker_drops < 0 || m->worker_cooloffs < 0 || m->retries < 0 || m->aborts < 0 ||
        m->bad_frames < 0) {
        wd_router_metrics_destroy(m);
        return wd_error_set(err, WD_ERR_INVALID, "metrics: a family was refused (name or size)");
    }
    /* Counters start at 0 so rate() has a first sample before the first event. */
    wd_metrics_add(r, m->retries, NULL, 0);
    wd_metrics_add(r, m->worker_cooloffs, NULL, 0);
    wd_metrics_add(r, m->bad_frames, NULL, 0);
    return WD_OK;
}

void wd_router_metrics_destroy(struct wd_router_metrics *m)
{
    wd_metrics_destroy(m->reg);
    m->reg = NULL;
}
