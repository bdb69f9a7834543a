/* The worker front-end: bring-up, the serving loop, registration, heartbeats, drain. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#include "common/net/zsock.h"
#include "common/server/worker_internal.h"
#include "common/config/json_reader.h"
#include "common/util/log.h"

/* How often an unregistered worker says Register again. */
#define REGISTER_RETRY_MS 1000
/* After a drain's timeout: how long aborted requests get to report before the worker goes. */
#define ABORT_GRACE_MS 5000

/* Set by SIGTERM/SIGINT; the serving loop polls it (every few milliseconds). */
static volatile sig_atomic_t g_signals;

static void on_signal(int sig)
{
    (void)sig;
    g_signals++;
}

static void install_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

static const char *dtype_tag(enum wd_dtype dt)
{
    switch (dt) {
    case WD_DTYPE_BF16:
        return "bf16";
    case WD_DTYPE_F16:
        return "fp16";
    case WD_DTYPE_F8_E4M3:
        return "fp8_e4m3";
    default:
        return "fp32";
    }
}

/* The compatibility fingerprint: what the router (and a prefill/decode peer) must share. */
static enum wd_status make_fingerprint(struct wd_worker *w, enum wd_dtype kv_dtype,
                                       struct wd_error *err)
{
    const struct wd_model_config *c = &w->mc;
    const struct wd_layout *l = w->layout;
    struct wd_msg_fingerprint *fp = &w->fp;
    memset(fp, 0, sizeof(*fp));
    fp->protocol_version = WD_MSG_PROTOCOL_VERSION;
    char path[4096];
    snprintf(path, sizeof(path), "%s/config.json", w->args.model_path);
    size_t len = 0;
    char *bytes = NULL;
    WD_CHECK(wd_json_reader_read_file(path, (size_t)64 << 20, &bytes, &len, err));
    fp->config_hash = wd_msg_config_hash(bytes, len);
    free(bytes);
    /* The directory's name, as SGLang names a model it serves from a path. */
    const char *name = w->args.model_path, *slash;
    size_t n = strlen(name);
    while (n > 1 && name[n - 1] == '/')
        n--;
    for (slash = name + n; slash > name && slash[-1] != '/'; slash--)
        ;
    snprintf(fp->model, sizeof(fp->model), "%.*s", (int)(name + n - slash), slash);
    for (char *p = fp->model; *p; p++)
        if ((unsigned char)*p < 0x20)
            *p = '_';
    snprintf(fp->weight_dtype, sizeof(fp->weight_dtype), "%s",
             dtype_tag(c->has_torch_dtype ? c->torch_dtype : WD_DTYPE_F32));
    snprintf(fp->kv_dtype, sizeof(fp->kv_dtype), "%s", wd_kv_dtype_name(kv_dtype));
    fp->page_size = w->args.page_size;
    if (c->arch == WD_ARCH_DEEPSEEK_V3) {
        fp->kv = (struct wd_msg_kv_layout){.kind = WD_MSG_KV_MLA,
                                           .n_layers = c->n_layers,
                                           .n_kv_heads = 1,
                                           .k_head_dim = c->kv_lora_rank + c->qk_rope_head_dim};
    } else {
        fp->kv = (struct wd_msg_kv_layout){.kind = WD_MSG_KV_GQA,
                                           .n_layers = c->n_layers,
                                           .n_kv_heads = c->n_kv_heads,
                                           .k_head_dim = c->head_dim,
                                           .v_head_dim = c->head_dim};
    }
    fp->parallel = (struct wd_msg_parallel){.tp = l->tp_size,
                                            .dp = l->dp_size,
                                            .ep = l->ep_size,
                                            .attn_tp = l->attn_tp_size,
                                            .attn_dp = l->attn_dp_size,
                                            .moe_ep = l->moe_ep_size,
                                            .moe_tp = l->moe_tp_size,
                                            .nnodes = l->nnodes};
    snprintf(fp->parallel.a2a_backend, sizeof(fp->parallel.a2a_backend), "%s",
             l->a2a_backend == WD_A2A_DEEPEP ? "deepep" : "none");
    static const char *const modes[] = {"auto", "normal", "low_latency"};
    snprintf(fp->parallel.deepep_mode, sizeof(fp->parallel.deepep_mode), "%s",
             modes[l->deepep_mode]);
    return WD_OK;
}

static enum wd_status register_metrics(struct wd_worker *w, struct wd_error *err)
{
    WD_CHECK(wd_metrics_create(&w->metrics, err));
    struct wd_metrics *m = w->metrics;
    w->m_requests = wd_metrics_register(m, "wideep:worker_requests_total",
                                        "requests this worker ended, by outcome", WD_METRIC_COUNTER,
                                        "outcome", NULL, 0);
    w->m_tokens =
        wd_metrics_register(m, "wideep:worker_generated_tokens_total", "tokens sent to the router",
                            WD_METRIC_COUNTER, "dp_rank", NULL, 0);
    w->m_running =
        wd_metrics_register(m, "wideep:worker_running_requests", "requests in the running batch",
                            WD_METRIC_GAUGE, "dp_rank", NULL, 0);
    w->m_waiting = wd_metrics_register(m, "wideep:worker_waiting_requests",
                                       "requests waiting for a batch slot or KV pages",
                                       WD_METRIC_GAUGE, "dp_rank", NULL, 0);
    w->m_free = wd_metrics_register(m, "wideep:worker_kv_free_pages", "free KV pages",
                                    WD_METRIC_GAUGE, "dp_rank", NULL, 0);
    w->m_total = wd_metrics_register(m, "wideep:worker_kv_total_pages", "KV pages in all",
                                     WD_METRIC_GAUGE, "dp_rank", NULL, 0);
    w->m_queued =
        wd_metrics_register(m, "wideep:worker_queued_prefill_tokens",
                            "prompt tokens not yet prefilled", WD_METRIC_GAUGE, "dp_rank", NULL, 0);
    w->m_draining = wd_metrics_register(m, "wideep:worker_draining", "1 while draining",
                                        WD_METRIC_GAUGE, NULL, NULL, 0);
    w->m_registered = wd_metrics_register(m, "wideep:worker_registered",
                                          "1 while the router has accepted this worker",
                                          WD_METRIC_GAUGE, NULL, NULL, 0);
    w->m_registrations = wd_metrics_register(
        m, "wideep:worker_registrations_total",
        "Register messages sent (a restarted router asks again)", WD_METRIC_COUNTER, NULL, NULL, 0);
    static const double secs[] = {0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05,
                                  0.1,    0.2,   0.5,   1,     2,    5,    10};
    int nb = (int)(sizeof(secs) / sizeof(secs[0]));
    w->m_kv_transfer_us = wd_metrics_register(
        m, "wideep:kv_transfer_seconds",
        "disaggregated KV transfer of a request: first put to the completed flush",
        WD_METRIC_HISTOGRAM, NULL, secs, nb);
    w->m_kv_wait_us = wd_metrics_register(m, "wideep:kv_wait_target_seconds",
                                          "prefill: request arrival to the decode side's target",
                                          WD_METRIC_HISTOGRAM, NULL, secs, nb);
    w->m_kv_bytes = wd_metrics_register(m, "wideep:kv_transfer_bytes_total",
                                        "KV bytes moved between prefill and decode",
                                        WD_METRIC_COUNTER, NULL, NULL, 0);
    w->m_kv_failures =
        wd_metrics_register(m, "wideep:kv_failures_total", "disaggregated requests failed, by kind",
                            WD_METRIC_COUNTER, "kind", NULL, 0);
    /* Connect wires the endpoints up eagerly (a flush to each decode rank), so "ready" is
     * real, not a lazy endpoint that the first put would pay for. */
    w->m_kv_pair_setup = wd_metrics_register(
        m, "wideep:kv_pair_setup_seconds",
        "prefill: a decode worker's KvDescriptors received to every engine rank connected to "
        "that decode DP group (UCX endpoints wired up), per decode DP group",
        WD_METRIC_HISTOGRAM, NULL, secs, nb);
    w->m_kv_rate = wd_metrics_register(
        m, "wideep:kv_transfer_gb_per_second",
        "disaggregated KV transfer rate of a request: bytes / transfer time, in GB/s (1e9 bytes)",
        WD_METRIC_HISTOGRAM, NULL, wd_metrics_gbps_buckets, wd_metrics_n_gbps_buckets);
    if (w->m_kv_transfer_us < 0 || w->m_kv_wait_us < 0 || w->m_kv_bytes < 0 ||
        w->m_kv_failures < 0 || w->m_kv_pair_setup < 0 || w->m_kv_rate < 0)
        return wd_error_set(err, WD_ERR_INVALID, "metrics: cannot register the KV families");
    if (w->m_requests < 0 || w->m_tokens < 0 || w->m_running < 0 || w->m_waiting < 0 ||
        w->m_free < 0 || w->m_total < 0 || w->m_queued < 0 || w->m_draining < 0 ||
        w->m_registered < 0 || w->m_registrations < 0)
        return wd_error_set(err, WD_ERR_INVALID, "metrics: cannot register the families");
    return WD_OK;
}

enum wd_status wd_worker_create(const struct wd_worker_args *args, enum wd_worker_role role,
                                struct wd_worker **w_p, struct wd_error *err)
{
    struct wd_worker *w = calloc(1, sizeof(*w));
    if (!w)
        return wd_error_set(err, WD_ERR_NOMEM, "worker: out of memory");
    w->args = *args;
    w->role = role;
    w->role_name = role == WD_WORKER_PREFILL ? "prefill" : "decode";
    w->metrics_port = -1;
    enum wd_status st = wd_u64map_init(&w->reqs, 1024, err);
    if (st == WD_OK)
        st = wd_model_config_load(args->model_path, &w->mc, err);
    enum wd_dtype kv_dtype = WD_DTYPE_F32;
    if (st == WD_OK)
        st = wd_kv_dtype_parse(args->kv_cache_dtype, &kv_dtype, err);
    if (st == WD_OK) {
        struct wd_layout_model_dims dims;
        wd_layout_dims_from_model_config(&w->mc, args->sargs.ep_num_redundant_experts, &dims);
        st = wd_layout_create(&args->pargs, &dims, &w->layout, err);
    }
    if (st == WD_OK) {
        w->n_dp = w->layout->attn_dp_size;
        w->context_length =
            args->context_length > 0 ? args->context_length : w->mc.max_position_embeddings;
        if (args->instance_id) {
            snprintf(w->instance_id, sizeof(w->instance_id), "%s", args->instance_id);
        } else {
            char host[64] = "host";
            gethostname(host, sizeof(host) - 1);
            snprintf(w->instance_id, sizeof(w->instance_id), "%s-%s-%d", w->role_name, host,
                     (int)getpid());
        }
        st = make_fingerprint(w, kv_dtype, err);
    }
    if (st == WD_OK) {
        w->hc.engine = (struct wd_engine_config){
            .model_path = args->model_path,
            .layout = w->layout,
            .sargs = &w->args.sargs,
            .sched = {.max_running_requests = args->max_running_requests,
                      .chunked_prefill_size = args->chunked_prefill_size,
                      .context_length = w->context_length,
                      .hold_after_prefill = role == WD_WORKER_PREFILL},
            .page_size = args->page_size,
            .max_total_tokens = args->max_total_tokens,
            .kv_dtype = kv_dtype,
            .n_threads = args->threads,
            .is_weights_mapped = args->weights_mapped,
            .timeout_ms = args->dist_timeout_ms,
            .max_prompt_tokens = w->context_length,
            .idle_wait_ms = 5,
            .role = w->role_name,
            /* Every worker can be half of a pair: its ranks register their KV regions. */
            .kv_transfer = 1};
        /* Forks the ranks: before ZeroMQ and libmicrohttpd start their threads. */
        st = wd_engine_host_create(&w->hc, &w->host, err);
    }
    if (st == WD_OK && w->layout->node_rank == 0) {
        w->zctx = zmq_ctx_new();
        st = w->zctx ? wd_zsock_dealer_connect(w->zctx, args->router, w->instance_id, &w->sock, err)
                     : wd_error_set(err, WD_ERR_NOMEM, "worker: cannot start ZeroMQ");
    }
    if (st == WD_OK)
        st = register_metrics(w, err);
    if (st == WD_OK)
        st = wd_worker_pd_init(w, err);
    if (st == WD_OK && args->metrics_port >= 0)
        st = wd_worker_http_start(args->metrics_host, args->metrics_port, &w->http,
                                  &w->metrics_port, err);
    if (st != WD_OK) {
        wd_worker_destroy(w);
        return st;
    }
    wd_log(WD_LOG_INFO, "worker", "%s %s: %d attention-DP rank(s), router %s", w->role_name,
           w->instance_id, w->n_dp, args->router);
    *w_p = w;
    return WD_OK;
}

void wd_worker_destroy(struct wd_worker *w)
{
    if (!w)
        return;
    wd_worker_http_stop(w->http);
    wd_engine_host_destroy(w->host);
    wd_worker_pd_cleanup(w);
    wd_zsock_close_linger(w->sock, SHUTDOWN_LINGER_MS);
    if (w->zctx)
        zmq_ctx_term(w->zctx);
    for (size_t i = 0; w->reqs.slots && i < w->reqs.cap; i++)
        wd_worker_req_free(w->reqs.slots[i].value);
    wd_u64map_cleanup(&w->reqs);
    free(w->dirty);
    wd_metrics_destroy(w->metrics);
    wd_layout_destroy(w->layout);
    free(w);
}

static void send_register(struct wd_worker *w)
{
    struct wd_msg m;
    wd_msg_init(&m, WD_MSG_REGISTER);
    struct wd_msg_register *r = &m.reg;
    r->role = w->role == WD_WORKER_PREFILL ? WD_MSG_ROLE_PREFILL : WD_MSG_ROLE_DECODE;
    snprintf(r->instance_id, sizeof(r->instance_id), "%s", w->instance_id);
    struct wd_msg_dp_capacity cap[WD_MSG_MAX_DP_RANKS];
    r->n_dp_ranks = w->n_dp;
    r->dp = cap;
    int n_pages = (w->args.max_total_tokens + w->args.page_size - 1) / w->args.page_size;
    for (int d = 0; d < w->n_dp; d++)
        cap[d] = (struct wd_msg_dp_capacity){.n_pages = n_pages,
                                             .max_running = w->args.max_running_requests};
    r->context_len = w->context_length;
    r->metrics_port = w->metrics_port > 0 ? w->metrics_port : 0;
    snprintf(r->bootstrap_endpoint, sizeof(r->bootstrap_endpoint), "%s", w->bootstrap_endpoint);
    r->fp = w->fp;
    wd_metrics_add(w->metrics, w->m_registrations, NULL, 1);
    /* While the router is away every retry fails: no log line each second. */
    struct wd_error err = {0};
    wd_zsock_send(w->sock, &m, &err);
    w->next_register_ms = wd_now_ms() + REGISTER_RETRY_MS;
}

static void send_heartbeat(struct wd_worker *w)
{
    struct wd_msg m;
    wd_msg_init(&m, WD_MSG_HEARTBEAT);
    struct wd_msg_heartbeat *h = &m.heartbeat;
    snprintf(h->instance_id, sizeof(h->instance_id), "%s", w->instance_id);
    h->seq = ++w->hb_seq;
    h->is_draining = w->is_draining;
    struct wd_msg_dp_load load[WD_MSG_MAX_DP_RANKS];
    h->n_dp_ranks = w->n_dp;
    h->dp = load;
    for (int d = 0; d < w->n_dp; d++) {
        struct wd_engine_stats st;
        wd_engine_host_stats(w->host, d, &st);
        /* Pages held for reserved requests are not free for new work. */
        load[d] = (struct wd_msg_dp_load){.n_free_pages = st.free_pages,
                                          .n_pages = st.total_pages,
                                          .n_running = st.running + st.reserved,
                                          .n_waiting = st.waiting,
                                          .n_queued_prefill_tokens = st.queued_prefill_tokens};
        if (load[d].n_pages <= 0) { /* not ready yet: report the pool as it will be */
            load[d].n_pages =
                (w->args.max_total_tokens + w->args.page_size - 1) / w->args.page_size;
            load[d].n_free_pages = 0;
        }
    }
    struct wd_error err = {0};
    if (wd_zsock_send(w->sock, &m, &err) != WD_OK && w->is_registered) {
        /* The router is gone (or restarting): register again once it answers. */
        wd_log(WD_LOG_WARN, "worker", "lost the router (%s); registering again", err.msg);
        w->is_registered = 0;
        w->next_register_ms = 0;
    }
}

static void on_router_msg(struct wd_worker *w, const struct wd_msg *m)
{
    switch (m->kind) {
    case WD_MSG_REGISTER_ACK:
        w->is_registered = 1;
        w->worker_id = m->reg_ack.worker_id;
        w->hb_interval_ms = m->reg_ack.heartbeat_interval_ms;
        w->next_heartbeat_ms = 0;
        wd_log(WD_LOG_INFO, "worker", "registered with the router as worker %u",
               m->reg_ack.worker_id);
        break;
    case WD_MSG_REGISTER_REFUSE:
        wd_log(WD_LOG_ERROR, "worker", "the router refused this worker: %s", m->reg_refuse.reason);
        w->is_refused = 1;
        break;
    case WD_MSG_GENERATE:
        wd_worker_on_generate(w, &m->generate);
        break;
    case WD_MSG_DECODE_REQUEST:
        wd_worker_pd_on_decode_request(w, &m->generate);
        break;
    case WD_MSG_PREFILL_REQUEST:
        wd_worker_pd_on_prefill_request(w, &m->generate);
        break;
    case WD_MSG_ABORT:
        wd_worker_on_abort(w, m->abort.request_id);
        break;
    case WD_MSG_DRAIN:
        if (!w->is_draining)
            g_signals++; /* the same path as SIGTERM */
        break;
    case WD_MSG_ERROR:
        if (m->error.request_id == 0 && m->error.code == WD_ERR_NOT_FOUND) {
            /* The router does not know us (it restarted): register again now. */
            if (w->is_registered)
                wd_log(WD_LOG_INFO, "worker", "the router forgot this worker; registering again");
            w->is_registered = 0;
            w->next_register_ms = 0;
        } else {
            wd_log(WD_LOG_WARN, "worker", "router error (request %llu): %s",
                   (unsigned long long)m->error.request_id, m->error.message);
        }
        break;
    default:
        wd_log(WD_LOG_WARN, "worker", "ignored a %s message from the router",
               wd_msg_kind_str(m->kind));
    }
}

/* Every few hundred milliseconds: the metrics snapshot and the probes' state. */
static void publish(struct wd_worker *w, int is_ready)
{
    int64_t now = wd_now_ms();
    if (now < w->next_publish_ms)
        return;
    w->next_publish_ms = now + 250;
    for (int d = 0; d < w->n_dp; d++) {
        struct wd_engine_stats st;
        char dp[16];
        snprintf(dp, sizeof(dp), "%d", d);
        wd_engine_host_stats(w->host, d, &st);
        wd_metrics_set(w->metrics, w->m_running, dp, st.running);
        wd_metrics_set(w->metrics, w->m_waiting, dp, st.waiting + wd_worker_pd_n_waiting(w, d));
        wd_metrics_set(w->metrics, w->m_free, dp, st.free_pages);
        wd_metrics_set(w->metrics, w->m_total, dp, st.total_pages);
        wd_metrics_set(w->metrics, w->m_queued, dp, (double)st.queued_prefill_tokens);
    }
    wd_metrics_set(w->metrics, w->m_draining, NULL, w->is_draining);
    wd_metrics_set(w->metrics, w->m_registered, NULL, w->is_registered);
    if (!w->http)
        return;
    char *text = wd_metrics_render(w->metrics);
    wd_worker_http_publish(w->http,
                           w->is_draining ? "draining"
                           : is_ready     ? "ok"
                                          : "loading",
                           text);
    free(text);
}

/* A drained worker stays this long after its Drain message: what the router (or a decode
 * worker's KvTarget) sent before learning of the drain still arrives and is answered (refused,
 * so the router retries it on another worker at once, or released) instead of being lost
 * with the socket and found only by the heartbeat timeout or the KV release timeout. */
#define DRAIN_SETTLE_MS 500

/* What a drain waits for: requests in the engine and, on a prefill worker, those waiting for
 * their other half (leaving then would strand the decode side's reserved pages until its
 * release timeout). */
static int n_in_flight(const struct wd_worker *w)
{
    return wd_engine_host_n_live(w->host) + wd_worker_pd_n_waiting(w, -1);
}

/* SIGTERM (or Drain): tell the router, take nothing new, give in-flight requests until the
 * drain timeout, then abort what is left. A second signal aborts at once. */
static void advance_drain(struct wd_worker *w, int signals_seen)
{
    int64_t now = wd_now_ms();
    if (signals_seen > 0 && !w->is_draining) {
        w->is_draining = 1;
        w->drain_deadline_ms = now + (int64_t)w->args.drain_timeout_secs * 1000;
        w->drain_settle_ms = now + DRAIN_SETTLE_MS;
        wd_worker_pd_on_drain(w);
        wd_log(WD_LOG_INFO, "worker", "draining: %d request(s) in flight, up to %d s",
               n_in_flight(w), w->args.drain_timeout_secs);
        if (w->sock) {
            struct wd_msg m;
            wd_msg_init(&m, WD_MSG_DRAIN);
            snprintf(m.drain.instance_id, sizeof(m.drain.instance_id), "%s", w->instance_id);
            wd_worker_send(w, &m);
            send_heartbeat(w);
        }
    }
    if (w->is_draining && !w->is_aborting_all &&
        (now >= w->drain_deadline_ms || signals_seen > 1)) {
        w->is_aborting_all = 1;
        w->abort_deadline_ms = now + ABORT_GRACE_MS;
        wd_log(WD_LOG_WARN, "worker", "drain timeout: aborting %d request(s)", n_in_flight(w));
        for (size_t i = 0; i < w->reqs.cap; i++)
            if (w->reqs.slots[i].value)
                wd_engine_host_abort(w->host, w->reqs.slots[i].key);
        wd_worker_pd_fail_pending(w, "the prefill worker's drain timed out");
    }
}

int wd_worker_run(struct wd_worker *w)
{
    install_signals();
    int rc = 0, done = 0;
    struct wd_error err = {0};
    zmq_pollitem_t *items = NULL;
    int items_cap = 0;
    while (!done) {
        int signals = g_signals;
        advance_drain(w, signals);
        /* Node 0, the instance's control endpoint, leaves once its requests are done. The
         * front-end of another node holds no requests of its own, but its ranks serve node 0's:
         * it stays until node 0's shutdown stops the ranks (`done` below), so that an
         * orchestrator stopping every node of the instance at once (a LeaderWorkerSet group)
         * loses nothing, and leaves by itself only at the drain timeout. */
        if (w->is_draining && n_in_flight(w) == 0 && wd_now_ms() >= w->drain_settle_ms) {
            if (w->layout->node_rank == 0)
                break;
            if (wd_now_ms() >= w->drain_deadline_ms) {
                wd_log(WD_LOG_WARN, "worker", "drain timeout: node 0 has not stopped the ranks");
                break;
            }
        }
        if (w->is_aborting_all && wd_now_ms() >= w->abort_deadline_ms) {
            wd_log(WD_LOG_ERROR, "worker", "aborted requests did not finish in %d ms",
                   ABORT_GRACE_MS);
            break;
        }
        if (w->is_refused) {
            rc = 1;
            break;
        }
        /* The router, the pairs' sockets, the engine's event fds. */
        int want = 1 + (w->boot ? 1 : 0) + w->n_conns + WD_MODEL_MAX_DP + 3;
        if (want > items_cap) {
            zmq_pollitem_t *grown = realloc(items, (size_t)want * sizeof(*grown));
            if (!grown) {
                rc = 1;
                break;
            }
            items = grown;
            items_cap = want;
        }
        int n = 0;
        if (w->sock)
            items[n++] = (zmq_pollitem_t){.socket = w->sock, .events = ZMQ_POLLIN};
        n += wd_worker_pd_poll_items(w, items + n, items_cap - n);
        int fds[WD_MODEL_MAX_DP + 3];
        int k = wd_engine_host_fds(w->host, fds, WD_MODEL_MAX_DP + 3);
        for (int i = 0; i < k; i++)
            items[n++] = (zmq_pollitem_t){.fd = fds[i], .events = ZMQ_POLLIN};
        /* Short waits: deadlines, heartbeats and signals are checked every pass. */
        zmq_poll(items, n, 5);
        for (;;) {
            struct wd_msg m;
            if (!w->sock || wd_zsock_recv(w->sock, 0, &m, &err) != WD_OK)
                break;
            on_router_msg(w, &m);
            wd_msg_free(&m);
        }
        wd_worker_pd_service(w);
        enum wd_status st = wd_engine_host_poll(w->host, 0, wd_worker_on_event, w, &done, &err);
        wd_worker_flush(w);
        if (st != WD_OK) {
            wd_log(WD_LOG_ERROR, "worker", "the engine failed: %s", err.msg);
            wd_worker_fail_all(w, WD_ERR_PEER, err.msg);
            rc = 1;
            break;
        }
        if (done) {
            /* Cleanly: another node of the instance was stopped, and its vote stopped all. */
            wd_log(WD_LOG_INFO, "worker", "the ranks stopped");
            break;
        }
        int ready = wd_engine_host_ready(w->host);
        int64_t now = wd_now_ms();
        if (w->sock && ready && !w->is_registered && now >= w->next_register_ms)
            send_register(w);
        if (w->sock && w->is_registered && now >= w->next_heartbeat_ms) {
            send_heartbeat(w);
            w->next_heartbeat_ms =
                now +
                (w->hb_interval_ms ? w->hb_interval_ms : (uint32_t)w->args.heartbeat_interval_ms);
        }
        publish(w, ready);
    }
    free(items);
    if (rc == 0)
        wd_log(WD_LOG_INFO, "worker", "drained; shutting down");
    wd_worker_fail_all(w, WD_ERR_PEER, "worker shut down");
    return rc;
}
