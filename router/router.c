/*
 * The router object and its event loop: one zmq_poll over the ZeroMQ ROUTER socket,
 * libmicrohttpd's epoll fd, the hang-up watcher and a wake-up eventfd, then timers
 * (request deadlines, worker heartbeat expiry). Worker messages are handled before MHD
 * runs, so the HTTP connections they resume are served in the same turn.
 */
#include "router/router_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "common/util/log.h"
#include "kernels/sampling.h"

#define MAX_MSGS_PER_TURN 4096 /* bound one turn so HTTP is not starved by a flood */
#define SHUTDOWN_FLUSH_SECS 0.2

double wd_router_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint64_t boot_nonce(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t s = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
    return wd_splitmix64(&s) ^ (uint64_t)getpid();
}

static enum wd_status create_slots(struct wd_router *r, struct wd_error *err)
{
    long n = (long)r->args.max_concurrent_requests + r->args.queue_size;
    if (n > (1L << WD_RREQ_INDEX_BITS) - 1)
        return wd_error_set(err, WD_ERR_INVALID,
                            "--max-concurrent-requests + --queue-size is %ld (at most %ld)", n,
                            (1L << WD_RREQ_INDEX_BITS) - 1);
    /* A few more for /health_generate probes, which bypass the limits. */
    r->n_slots = (int)n + 8;
    r->slots = calloc((size_t)r->n_slots, sizeof(*r->slots));
    if (!r->slots)
        return wd_error_set(err, WD_ERR_NOMEM, "router: out of memory for %d requests", r->n_slots);
    for (int i = r->n_slots - 1; i >= 0; i--) {
        r->slots[i].index = i;
        wd_buf_init(&r->slots[i].sse);
        r->slots[i].q.next = r->free_slots;
        r->free_slots = &r->slots[i];
    }
    return WD_OK;
}

static enum wd_status write_port_file(struct wd_router *r, struct wd_error *err)
{
    if (!r->args.port_file)
        return WD_OK;
    char tmp[4096];
    snprintf(tmp, sizeof(tmp), "%s.tmp", r->args.port_file);
    FILE *f = fopen(tmp, "w");
    if (!f)
        return wd_error_set(err, WD_ERR_IO, "--port-file %s: %s", tmp, strerror(errno));
    fprintf(f, "%d %d\n", wd_http_port(r->http), wd_worker_link_port(r->link));
    fclose(f);
    /* rename: a reader never sees a half-written file. */
    if (rename(tmp, r->args.port_file) != 0)
        return wd_error_set(err, WD_ERR_IO, "--port-file %s: %s", r->args.port_file,
                            strerror(errno));
    return WD_OK;
}

enum wd_status wd_router_create(const struct wd_router_args *args, struct wd_router **r_p,
                                struct wd_error *err)
{
    struct wd_router *r = calloc(1, sizeof(*r));
    if (!r)
        return wd_error_set(err, WD_ERR_NOMEM, "router: out of memory");
    r->args = *args;
    r->wake_fd = -1;
    r->t_start = wd_router_now();
    r->boot_nonce = boot_nonce();
    enum wd_status st =
        wd_router_model_load(args->model_path, args->served_model_name, &r->model, err);
    if (st == WD_OK)
        st = wd_router_metrics_create(&r->m, err);
    if (st == WD_OK)
        st = wd_workers_create(&r->workers, err);
    if (st == WD_OK)
        st = wd_policy_create(args->policy_kind, &args->tuning, r->boot_nonce, &r->policy, err);
    if (st == WD_OK)
        st = create_slots(r, err);
    if (st == WD_OK) {
        r->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (r->wake_fd < 0)
            st = wd_error_set(err, WD_ERR_IO, "eventfd: %s", strerror(errno));
    }
    if (st == WD_OK)
        st = wd_worker_link_create(args->worker_host, args->worker_port, &r->link, err);
    if (st == WD_OK) {
        struct wd_http_config hc = {.host = args->host,
                                    .port = args->port,
                                    .max_body_bytes = (size_t)args->max_body_bytes,
                                    .connection_limit = 65536,
                                    .idle_timeout_secs = 300};
        struct wd_http_callbacks cb = {.ctx = r,
                                       .precheck = wd_router_http_precheck,
                                       .on_request = wd_router_http_request,
                                       .on_gone = wd_router_http_gone};
        st = wd_http_create(&hc, &cb, &r->http, err);
    }
    if (st == WD_OK)
        st = write_port_file(r, err);
    if (st != WD_OK) {
        wd_router_destroy(r);
        return st;
    }
    wd_log(WD_LOG_INFO, "router",
           "serving %s (context %d, vocab %d, config hash %016llx) on http://%s:%d, workers on "
           "tcp://%s:%d, policy %s",
           r->model->served_name, r->model->context_len, (int)r->model->vocab_size,
           (unsigned long long)r->model->config_hash, args->host, wd_http_port(r->http),
           args->worker_host, wd_worker_link_port(r->link), args->policy);
    *r_p = r;
    return WD_OK;
}

void wd_router_destroy(struct wd_router *r)
{
    if (!r)
        return;
    /* Requests still open get a 503 (an error event when streaming); their workers an
     * Abort. wd_router_run already did this and sent the answers out. */
    r->is_stopping = 1;
    if (r->http)
        wd_router_fail_all(r, "the router is shutting down");
    wd_http_destroy(r->http);
    wd_worker_link_destroy(r->link);
    for (int i = 0; i < r->n_slots; i++)
        wd_buf_cleanup(&r->slots[i].sse);
    free(r->slots);
    wd_policy_destroy(r->policy);
    wd_workers_destroy(r->workers);
    wd_router_metrics_destroy(&r->m);
    wd_router_model_destroy(r->model);
    if (r->wake_fd >= 0)
        close(r->wake_fd);
    free(r);
}

void wd_router_stop(struct wd_router *r)
{
    r->is_stopping = 1;
    uint64_t one = 1;
    ssize_t n = write(r->wake_fd, &one, sizeof(one));
    (void)n;
}

int wd_router_http_port(const struct wd_router *r)
{
    return wd_http_port(r->http);
}

int wd_router_worker_port(const struct wd_router *r)
{
    return wd_worker_link_port(r->link);
}

static void drain_link(struct wd_router *r)
{
    unsigned char route[WD_LINK_ROUTE_MAX];
    for (int i = 0; i < MAX_MSGS_PER_TURN; i++) {
        size_t route_len = 0;
        struct wd_msg m;
        struct wd_error err = {0};
        wd_msg_init(&m, WD_MSG_NONE);
        enum wd_status st = wd_worker_link_recv(r->link, route, &route_len, &m, &err);
        if (st == WD_ERR_TIMEOUT)
            return;
        if (st == WD_OK)
            wd_router_on_worker_message(r, route, route_len, &m);
        else
            wd_router_on_bad_frame(r, route, route_len, &err);
        wd_msg_free(&m);
    }
}

enum wd_status wd_router_run(struct wd_router *r, struct wd_error *err)
{
    zmq_pollitem_t items[4] = {
        {.socket = wd_worker_link_socket(r->link), .events = ZMQ_POLLIN},
        {.fd = wd_http_poll_fd(r->http), .events = ZMQ_POLLIN},
        {.fd = wd_http_hangup_fd(r->http), .events = ZMQ_POLLIN},
        {.fd = r->wake_fd, .events = ZMQ_POLLIN},
    };
    double expiry_period = r->args.heartbeat_timeout_ms / 4000.0;
    r->next_expiry_check = wd_router_now() + expiry_period;
    while (!r->is_stopping) {
        double now = wd_router_now();
        double wait = wd_router_check_deadlines(r, now);
        if (now >= r->next_expiry_check) {
            wd_router_expire_workers(r, now);
            r->next_expiry_check = now + expiry_period;
        }
        double to_expiry = r->next_expiry_check - now;
        wait = to_expiry < wait ? to_expiry : wait;
        long ms = (long)(wait * 1000.0) + 1;
        long http_ms = wd_http_timeout_ms(r->http);
        if (http_ms >= 0 && http_ms < ms)
            ms = http_ms;
        if (zmq_poll(items, 4, ms) < 0 && errno != EINTR)
            return wd_error_set(err, WD_ERR_IO, "zmq_poll: %s", zmq_strerror(errno));
        drain_link(r);
        wd_http_run(r->http, items[2].revents & ZMQ_POLLIN);
    }
    uint64_t v;
    ssize_t n = read(r->wake_fd, &v, sizeof(v));
    (void)n;
    wd_log(WD_LOG_INFO, "router", "stopping: %d running and %d queued requests get a 503",
           r->n_running, r->queue.n);
    wd_router_fail_all(r, "the router is shutting down");
    /* A moment for those answers to reach their clients before the sockets close. */
    double until = wd_router_now() + SHUTDOWN_FLUSH_SECS;
    while (wd_router_now() < until) {
        zmq_poll(items + 1, 1, 10);
        wd_http_run(r->http, 0);
    }
    return WD_OK;
}
