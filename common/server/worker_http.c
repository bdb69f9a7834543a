/* The worker's probe and metrics endpoint over libmicrohttpd. */
#include "common/server/worker_http.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "common/util/clock.h"
#include "common/util/log.h"

/* The serving loop publishes every few milliseconds; ten seconds of silence means it is
 * wedged (a probe then fails and Kubernetes restarts the pod). */
#define STUCK_MS 10000

struct wd_worker_http {
    struct MHD_Daemon *d;
    pthread_mutex_t mu;
    char state[64];
    char *metrics;
    int64_t tick_ms;
};

static enum MHD_Result reply(struct MHD_Connection *c, unsigned code, const char *text,
                             const char *type)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(text), (void *)text, MHD_RESPMEM_MUST_COPY);
    if (!r)
        return MHD_NO;
    MHD_add_response_header(r, "Content-Type", type);
    enum MHD_Result ret = MHD_queue_response(c, code, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url,
                              const char *method, const char *version, const char *upload,
                              size_t *upload_size, void **con_cls)
{
    struct wd_worker_http *h = cls;
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
        return reply(c, 405, "only GET\n", "text/plain");
    pthread_mutex_lock(&h->mu);
    int stuck = wd_now_ms() - h->tick_ms > STUCK_MS;
    char state[80];
    snprintf(state, sizeof(state), "%s\n", stuck ? "stuck" : h->state);
    char *metrics = strdup(h->metrics ? h->metrics : "");
    pthread_mutex_unlock(&h->mu);
    enum MHD_Result ret;
    if (strcmp(url, "/health") == 0)
        ret = reply(c, strcmp(state, "ok\n") == 0 ? 200 : 503, state, "text/plain");
    else if (strcmp(url, "/live") == 0)
        ret = reply(c, stuck ? 503 : 200, stuck ? "stuck\n" : "alive\n", "text/plain");
    else if (strcmp(url, "/metrics") == 0)
        ret = metrics ? reply(c, 200, metrics, "text/plain; version=0.0.4")
                      : reply(c, 500, "out of memory\n", "text/plain");
    else
        ret = reply(c, 404, "not found: /health, /live, /metrics\n", "text/plain");
    free(metrics);
    return ret;
}

enum wd_status wd_worker_http_start(const char *host, int port, struct wd_worker_http **h_p,
                                    int *port_p, struct wd_error *err)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1)
        return wd_error_set(err, WD_ERR_INVALID, "--metrics-host %s: not an IPv4 address", host);
    struct wd_worker_http *h = calloc(1, sizeof(*h));
    if (!h)
        return wd_error_set(err, WD_ERR_NOMEM, "metrics endpoint: out of memory");
    pthread_mutex_init(&h->mu, NULL);
    snprintf(h->state, sizeof(h->state), "loading");
    h->tick_ms = wd_now_ms();
    h->d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG, (uint16_t)port,
                            NULL, NULL, handle, h, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
                            MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)10,
                            MHD_OPTION_CONNECTION_LIMIT, (unsigned)64, MHD_OPTION_END);
    if (!h->d) {
        pthread_mutex_destroy(&h->mu);
        free(h);
        return wd_error_set(err, WD_ERR_IO, "metrics endpoint: cannot listen on %s:%d", host, port);
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_BIND_PORT);
    *port_p = info ? info->port : port;
    wd_log(WD_LOG_INFO, "http", "health and metrics on http://%s:%d", host, *port_p);
    *h_p = h;
    return WD_OK;
}

void wd_worker_http_stop(struct wd_worker_http *h)
{
    if (!h)
        return;
    MHD_stop_daemon(h->d);
    pthread_mutex_destroy(&h->mu);
    free(h->metrics);
    free(h);
}

void wd_worker_http_publish(struct wd_worker_http *h, const char *state, const char *metrics)
{
    char *copy = metrics ? strdup(metrics) : NULL;
    pthread_mutex_lock(&h->mu);
    snprintf(h->state, sizeof(h->state), "%s", state);
    if (copy) {
        free(h->metrics);
        h->metrics = copy;
    }
    h->tick_ms = wd_now_ms();
    pthread_mutex_unlock(&h->mu);
}
