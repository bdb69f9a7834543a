/* wideep-router flags: the table, defaults (SGLang router's where it has one), checks. */
#include "router/router_args.h"

#include <stdio.h>
#include <string.h>

#include "common/config/flags.h"
#include "common/util/log.h"

#define MAX_FLAGS 32

static int build_table(struct wd_router_args *a, struct wd_flag *f)
{
    struct wd_policy_tuning *t = &a->tuning;
    const struct wd_flag table[] = {
        {"host", NULL, WD_FLAG_STRING, &a->host, 1, 0, "HTTP bind address", NULL, 0},
        {"port", NULL, WD_FLAG_INT, &a->port, 0, 65535, "HTTP port (0: any free port)", NULL, 0},
        {"worker-host", NULL, WD_FLAG_STRING, &a->worker_host, 1, 0,
         "bind address of the ZeroMQ socket workers register on", NULL, 0},
        {"worker-port", NULL, WD_FLAG_INT, &a->worker_port, 0, 65535,
         "ZeroMQ port workers register on (0: any free port)", NULL, 0},
        {"port-file", NULL, WD_FLAG_STRING, &a->port_file, 1, 0,
         "write \"HTTP_PORT WORKER_PORT\" here once both are bound", NULL, 0},
        {"model-path", "model", WD_FLAG_STRING, &a->model_path, 1, 0,
         "model directory: tokenizer.json, tokenizer_config.json, config.json, "
         "generation_config.json",
         NULL, 0},
        {"served-model-name", NULL, WD_FLAG_STRING, &a->served_model_name, 1, 0,
         "the model name clients send (default: --model-path as given)", NULL, 0},
        {"policy", NULL, WD_FLAG_STRING, &a->policy, 1, 0,
         "how a request picks its worker and DP rank", WD_POLICY_CHOICES, 0},
        {"cache-threshold", NULL, WD_FLAG_FLOAT, &a->cache_threshold, 0, 1,
         "cache_aware: share of the prompt a cached prefix must cover", NULL, 0},
        {"balance-abs-threshold", NULL, WD_FLAG_INT, &t->balance_abs_threshold, 0, 1 << 30,
         "cache_aware: load gap that counts as imbalance...", NULL, 0},
        {"balance-rel-threshold", NULL, WD_FLAG_FLOAT, &a->balance_rel_threshold, 1, 1e6,
         "...when the max load is also this many times the min", NULL, 0},
        {"max-concurrent-requests", NULL, WD_FLAG_INT, &a->max_concurrent_requests, 1, 1 << 20,
         "requests at the workers at once; more wait in the queue", NULL, 0},
        {"queue-size", NULL, WD_FLAG_INT, &a->queue_size, 0, 1 << 20,
         "requests that may wait for a slot; more get 429", NULL, 0},
        {"retry-after-secs", NULL, WD_FLAG_INT, &a->retry_after_secs, 1, 3600,
         "Retry-After of a 429", NULL, 0},
        {"request-timeout-secs", NULL, WD_FLAG_INT, &a->request_timeout_secs, 1, 86400 * 7,
         "deadline of every request (sent to the worker); 504 when it passes", NULL, 0},
        {"max-body-bytes", "max-payload-size", WD_FLAG_INT, &a->max_body_bytes_int, 1024,
         2147483647, "largest request body; longer ones get 413", NULL, 0},
        {"api-key", NULL, WD_FLAG_STRING, &a->api_key, 1, 0,
         "require \"Authorization: Bearer KEY\" (all but /health and /metrics)", NULL, 0},
        {"heartbeat-interval-ms", NULL, WD_FLAG_INT, &a->heartbeat_interval_ms, 10, 600000,
         "how often workers heartbeat (told to them at registration)", NULL, 0},
        {"heartbeat-timeout-ms", NULL, WD_FLAG_INT, &a->heartbeat_timeout_ms, 20, 3600000,
         "a worker silent this long is dropped and its requests fail over", NULL, 0},
        {"worker-fail-threshold", NULL, WD_FLAG_INT, &a->worker_fail_threshold, 1, 1000,
         "failed requests in a row that cool a worker off", NULL, 0},
        {"worker-cooloff-secs", NULL, WD_FLAG_INT, &a->worker_cooloff_secs, 0, 86400,
         "how long a cooled-off worker gets no new request", NULL, 0},
        {"log-level", NULL, WD_FLAG_STRING, &a->log_level, 1, 0, "log level",
         "error,warn,info,debug", 0},
    };
    int n = (int)(sizeof(table) / sizeof(table[0]));
    WD_ASSERT(n <= MAX_FLAGS);
    memcpy(f, table, sizeof(table));
    return n;
}

static void defaults(struct wd_router_args *a)
{
    memset(a, 0, sizeof(*a));
    a->host = "127.0.0.1";
    a->port = 30000;
    a->worker_host = "127.0.0.1";
    a->worker_port = 30001;
    a->policy = "cache_aware";
    wd_policy_tuning_defaults(&a->tuning);
    a->cache_threshold = (float)a->tuning.cache_threshold;
    a->balance_rel_threshold = (float)a->tuning.balance_rel_threshold;
    a->max_concurrent_requests = 256;
    a->queue_size = 100;
    a->retry_after_secs = 1;
    a->request_timeout_secs = 1800;
    a->max_body_bytes_int = 64 << 20;
    a->heartbeat_interval_ms = 500;
    a->heartbeat_timeout_ms = 5000;
    a->worker_fail_threshold = 3;
    a->worker_cooloff_secs = 30;
    a->log_level = "info";
}

enum wd_status wd_router_args_parse(struct wd_router_args *a, int argc, char **argv, int *help_p,
                                    struct wd_error *err)
{
    defaults(a);
    struct wd_flag flags[MAX_FLAGS];
    int n = build_table(a, flags);
    WD_CHECK(wd_flags_parse(flags, n, argc, argv, help_p, err));
    if (*help_p) {
        wd_flags_print_help(flags, n, "usage: wideep-router --model-path DIR [options]");
        return WD_OK;
    }
    if (!a->model_path)
        return wd_error_set(err, WD_ERR_INVALID, "--model-path is required (see --help)");
    if (a->heartbeat_timeout_ms <= a->heartbeat_interval_ms)
        return wd_error_set(err, WD_ERR_INVALID,
                            "--heartbeat-timeout-ms %d must exceed --heartbeat-interval-ms %d",
                            a->heartbeat_timeout_ms, a->heartbeat_interval_ms);
    if (a->port != 0 && a->port == a->worker_port && strcmp(a->host, a->worker_host) == 0)
        return wd_error_set(err, WD_ERR_INVALID, "--port and --worker-port are both %d", a->port);
    if (a->api_key && !a->api_key[0])
        a->api_key = NULL;
    a->policy_kind = (enum wd_policy_kind)wd_policy_kind_parse(a->policy);
    a->tuning.cache_threshold = a->cache_threshold;
    a->tuning.balance_rel_threshold = a->balance_rel_threshold;
    a->max_body_bytes = a->max_body_bytes_int;
    wd_log_set_level((enum wd_log_level)wd_log_level_parse(a->log_level));
    /* The effective configuration, the key itself left out of the log. */
    const char *key = a->api_key;
    if (key)
        a->api_key = "(set)";
    wd_flags_log(flags, n, "args");
    a->api_key = key;
    return WD_OK;
}
