/*
 * The flags of a worker server (wideep-decode, wideep-prefill): one table with the model,
 * the router endpoint, SGLang's layout and EPLB flags (common/config/server_args.h), the
 * engine's sizes and the serving knobs, parsed and checked into plain values. Parsing
 * allocates nothing: strings point into argv or static storage.
 */
#ifndef WD_SERVER_WORKER_ARGS_H
#define WD_SERVER_WORKER_ARGS_H

#include "common/config/server_args.h"

struct wd_worker_args {
    const char *model_path;
    const char *router;      /* "tcp://host:port" of the router's --worker-port */
    const char *instance_id; /* NULL = "<role>-<hostname>-<pid>" */
    const char *kv_cache_dtype;
    const char *metrics_host;
    const char *log_level;
    int page_size, max_running_requests, chunked_prefill_size, context_length, max_total_tokens;
    int threads, dist_timeout_ms;
    int weights_mapped; /* --weights-mapped: no load-time copy of the weights */
    int heartbeat_interval_ms, drain_timeout_secs;
    int metrics_port;   /* -1 off, 0 the kernel picks (logged and registered) */
    int bootstrap_port; /* prefill: where decode workers reach it (0 = the kernel picks) */
    const char *bootstrap_host;
    int kv_release_timeout_secs; /* decode: see CANCEL in worker_pd.c */
    struct wd_server_args sargs;
    struct wd_parallel_args pargs;
};

/* Parses argv for a worker of role `role` ("decode" or "prefill"; prefill adds
 * --bootstrap-port/--bootstrap-host). Returns 0 to go on, 1 after --help was printed, 2 on
 * a bad flag (the message already printed as "<prog>: <error>"). */
int wd_worker_args_parse(struct wd_worker_args *a, const char *role, int argc, char **argv);

#endif
