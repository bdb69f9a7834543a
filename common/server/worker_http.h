/*
 * wd_worker_http: a worker's small HTTP endpoint for Kubernetes probes and Prometheus
 * (--metrics-port). It serves plain text only (the JSON API lives in the router):
 *   GET /health   200 "ok" when the worker takes requests; 503 with the reason while it
 *                 loads, drains, or its serving loop is stuck (readiness, startup)
 *   GET /live     200 while the serving loop ticks, even when loading or draining
 *                 (liveness: restart only a wedged process)
 *   GET /metrics  the last metrics snapshot the serving loop published
 * libmicrohttpd runs it on its own thread; the serving loop publishes a snapshot and the
 * handlers only copy it under a mutex, so they never touch serving state.
 */
#ifndef WD_SERVER_WORKER_HTTP_H
#define WD_SERVER_WORKER_HTTP_H

#include "common/util/status.h"

struct wd_worker_http;

/* Binds host:port (port 0: the kernel picks; *port_p gets the bound port). */
enum wd_status wd_worker_http_start(const char *host, int port, struct wd_worker_http **h_p,
                                    int *port_p, struct wd_error *err);
/* Stops the server thread and frees everything. NULL-safe. */
void wd_worker_http_stop(struct wd_worker_http *h);

/* The serving loop's snapshot: state words for /health ("ok" when serving; otherwise the
 * reason, e.g. "loading", "draining") and the metrics text (copied). Also marks the loop as
 * alive now. */
void wd_worker_http_publish(struct wd_worker_http *h, const char *state, const char *metrics);

#endif
