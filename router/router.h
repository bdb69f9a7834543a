/*
 * wd_router: the router process's one object: the served model's tokenizer and template,
 * the HTTP server, the ZeroMQ socket workers register on, the worker registry and
 * policies, the request table and the metrics, driven by one event loop (wd_router_run)
 * on the calling thread. Other threads may only call wd_router_stop.
 */
#ifndef WD_ROUTER_ROUTER_H
#define WD_ROUTER_ROUTER_H

#include "common/util/status.h"
#include "router/router_args.h"

struct wd_router;

/* Loads the model files, binds both ports. Errors name the file or the address. */
enum wd_status wd_router_create(const struct wd_router_args *args, struct wd_router **r_p,
                                struct wd_error *err);
/* Answers what is still open with 503, closes every connection. NULL-safe. */
void wd_router_destroy(struct wd_router *r);

/* Serves until wd_router_stop. */
enum wd_status wd_router_run(struct wd_router *r, struct wd_error *err);
/* Makes wd_router_run return soon. Async-signal-safe (one write to an eventfd). */
void wd_router_stop(struct wd_router *r);

int wd_router_http_port(const struct wd_router *r);
int wd_router_worker_port(const struct wd_router *r);

#endif
