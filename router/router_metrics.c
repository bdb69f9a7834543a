/* Registration of the router's metric families. */
#include "router/router_metrics.h"

#include <string.h>

#include "router/pd_route.h"

static const double latency_buckets[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                         0.1,    0.25,  0.5,    1,     2.5,  5,     10,
                                         30,     60,    120,    300,   600,  1800};
static const double itl_buckets[] = {0.0005, 0.001, 0.002, 0.004, 0.006, 0.008, 0.01, 0.015,
                                     0.02,   0.025, 0.03,  0.04,  0.05,  0.075, 0.1,  0.15,
                                     0.2,    0.3,   0.5,   1,     2,     5};

/* KV bytes per request: 4 KiB to 64 GiB by powers of 4. */
static const double bytes_buckets[] = {
    4096.0,     16384.0,     65536.0,      262144.0,     1048576.0,     4194304.0,    16777216.0,
    67108864.0, 268435456.0, 1073741824.0, 4294967296.0, 17179869184.0, 68719476736.0};
/* GB/s of one request's transfer: TCP on loopback to RDMA on several NICs. */
static const char *const failure_names[WD_PD_N_FAILURES] = {
    "prefill_error", "decode_error", "prefill_lost", "decode_lost", "timeout"};

const char *wd_pd_failure_name(enum wd_pd_failure kind)
{
    return failure_names[kind];
}

/* The per-pool gauges {role} that the autoscalers read (deploy/k8s/prometheus-adapter);
 * 0 or -1 as wd_metrics_register. */
static int register_pool(struct wd_router_metrics *m)
{
    struct wd_metrics *r = m->reg;
    m->pool_dp_ranks = wd_metrics_register(r, "wideep:router_pool_dp_ranks",
                                           "DP ranks of the registered workers of a pool",
                                           WD_METRIC_GAUGE, "role", NULL, 0);
    m->pool_running = wd_metrics_register(r, "wideep:router_pool_running_requests",
                                          "Requests running in a pool (last heartbeats)",
                                          WD_METRIC_GAUGE, "role", NULL, 0);
    m->pool_waiting = wd_metrics_register(r, "wideep:router_pool_waiting_requests",
                                          "Requests waiting in a pool's queues (last heartbeats)",
                                          WD_METRIC_GAUGE, "role", NULL, 0);
    m->pool_queued_prefill_tokens =
        wd_metrics_register(r, "wideep:router_pool_queued_prefill_tokens",
                            "Prompt tokens waiting for prefill in a pool (last heartbeats)",
                            WD_METRIC_GAUGE, "role", NULL, 0);
    m->pool_kv_usage = wd_metrics_register(
        r, "wideep:router_pool_kv_usage",
        "Fraction of a pool's KV pages in use, 0..1 (last heartbeats and placements since)",
        WD_METRIC_GAUGE, "role", NULL, 0);
    return m->pool_dp_ranks < 0 || m->pool_running < 0 || m->pool_waiting < 0 ||
                   m->pool_queued_prefill_tokens < 0 || m->pool_kv_usage < 0
               ? -1
               : 0;
}

/* The disaggregation families; 0 or -1 as wd_metrics_register. */
static int register_pd(struct wd_router_metrics *m)
{
    struct wd_metrics *r = m->reg;
    int nl = (int)(sizeof(latency_buckets) / sizeof(latency_buckets[0]));
    m->pd_requests = wd_metrics_register(
        r, "wideep:router_pd_requests_total",
        "Dispatched requests by placement: disaggregated (prefill + decode worker), "
        "short_prompt or no_prefill (prefilled on the decode worker)",
        WD_METRIC_COUNTER, "mode", NULL, 0);
    m->pd_failures = wd_metrics_register(r, "wideep:router_pd_failures_total",
                                         "Failed attempts of disaggregated requests by kind",
                                         WD_METRIC_COUNTER, "kind", NULL, 0);
    m->kv_transfer_time = wd_metrics_register(
        r, "wideep:router_kv_transfer_seconds",
        "KV transfer of a request, first put to flush, as its prefill worker reports it",
        WD_METRIC_HISTOGRAM, NULL, latency_buckets, nl);
    m->kv_transfer_bytes = wd_metrics_register(
        r, "wideep:router_kv_transfer_bytes", "KV bytes a prefill worker wrote for a request",
        WD_METRIC_HISTOGRAM, NULL, bytes_buckets,
        (int)(sizeof(bytes_buckets) / sizeof(bytes_buckets[0])));
    m->kv_transfer_rate = wd_metrics_register(
        r, "wideep:router_kv_transfer_gb_per_second",
        "KV transfer rate of a request: bytes / transfer time, in GB/s (1e9 bytes)",
        WD_METRIC_HISTOGRAM, NULL, wd_metrics_gbps_buckets, wd_metrics_n_gbps_buckets);
    m->kv_wait_target = wd_metrics_register(
        r, "wideep:router_kv_wait_target_seconds",
        "Time a prefill worker had a request before its decode worker's target pages came",
        WD_METRIC_HISTOGRAM, NULL, latency_buckets, nl);
    m->pd_prefill_time = wd_metrics_register(
        r, "wideep:router_pd_prefill_seconds",
        "Dispatch of a disaggregated request to its prefill worker's KvDone, at the router",
        WD_METRIC_HISTOGRAM, NULL, latency_buckets, nl);
    if (m->pd_requests < 0 || m->pd_failures < 0 || m->kv_transfer_time < 0 ||
        m->kv_transfer_bytes < 0 || m->kv_transfer_rate < 0 || m->kv_wait_target < 0 ||
        m->pd_prefill_time < 0)
        return -1;
    for (int k = 0; k < WD_PD_N_FAILURES; k++)
        wd_metrics_add(r, m->pd_failures, failure_names[k], 0);
    for (int k = 0; k < WD_PD_N_MODES; k++)
        wd_metrics_add(r, m->pd_requests, wd_pd_mode_name((enum wd_pd_mode)k), 0);
    return 0;
}

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
        m->bad_frames < 0 || register_pd(m) != 0 || register_pool(m) != 0) {
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
