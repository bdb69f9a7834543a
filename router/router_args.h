/*
 * wd_router_args: the flags of wideep-router, one table (common/config/flags.h) with
 * defaults, bounds and help, SGLang's router names where it has them.
 *
 * The policy fields are per role so the prefill/decode split (the next issue's
 * --prefill-policy / --decode-policy / --pd-min-prefill-tokens) adds entries to the
 * table without changing how the registry or the policies are built. Plain value
 * struct: strings point into argv or the environment; nothing to free.
 */
#ifndef WD_ROUTER_ARGS_H
#define WD_ROUTER_ARGS_H

#include "common/util/status.h"
#include "router/policy.h"

struct wd_router_args {
    const char *host;        /* HTTP bind address */
    int port;                /* HTTP port (0: the kernel picks one, logged and in --port-file) */
    const char *worker_host; /* ZeroMQ ROUTER bind address */
    int worker_port;         /* 0: the kernel picks one */
    const char *port_file;   /* if set: "http_port worker_port\n" written once bound (tests) */
    const char *model_path;  /* tokenizer.json, tokenizer_config.json, config.json, ... */
    const char *served_model_name; /* NULL: the model path as given, as SGLang does */
    const char *policy;
    enum wd_policy_kind policy_kind;
    struct wd_policy_tuning tuning; /* cache_aware thresholds */
    int max_concurrent_requests;    /* requests at the workers at once */
    int queue_size;                 /* requests waiting for one of those slots */
    int retry_after_secs;           /* Retry-After of a 429 */
    int request_timeout_secs;       /* deadline of every request, sent to the worker */
    long max_body_bytes;
    int max_body_bytes_int;                       /* the flag's storage (flags are int) */
    float cache_threshold, balance_rel_threshold; /* flag storage (flags are float) */
    const char *api_key;                          /* NULL or "": no check */
    int heartbeat_interval_ms;                    /* told to workers in RegisterAck */
    int heartbeat_timeout_ms;                     /* a worker silent this long is dropped */
    int worker_fail_threshold; /* consecutive failed requests that cool a worker off */
    int worker_cooloff_secs;
    const char *log_level;
};

/* Fills defaults, parses argv (and WIDEEP_* environment), validates. *help_p is set
 * for --help (the usage is printed here). Errors name the flag. */
enum wd_status wd_router_args_parse(struct wd_router_args *a, int argc, char **argv, int *help_p,
                                    struct wd_error *err);

#endif
