/* The worker servers' flag table. */
#include "common/server/worker_args.h"

#include <stdio.h>
#include <string.h>

#include "common/util/log.h"

#define MAX_FLAGS 64

int wd_worker_args_parse(struct wd_worker_args *a, const char *role, int argc, char **argv)
{
    memset(a, 0, sizeof(*a));
    a->page_size = 16;
    a->max_running_requests = 64;
    a->chunked_prefill_size = 2048;
    a->max_total_tokens = 16384;
    a->dist_timeout_ms = 60000;
    a->heartbeat_interval_ms = 1000;
    a->drain_timeout_secs = 60;
    a->kv_release_timeout_secs = 60;
    a->metrics_port = -1;
    a->kv_cache_dtype = "auto";
    a->metrics_host = "127.0.0.1";
    a->bootstrap_host = "127.0.0.1";
    a->log_level = "info";
    wd_server_args_init(&a->sargs);
    int is_prefill = strcmp(role, "prefill") == 0;
    struct wd_flag flags[MAX_FLAGS] = {
        {"model-path", "model", WD_FLAG_STRING, &a->model_path, 1, 0,
         "model directory (Hugging Face layout)", NULL, 0},
        {"router", NULL, WD_FLAG_STRING, &a->router, 1, 0,
         "the router's worker endpoint, tcp://HOST:PORT (its --worker-port)", NULL, 0},
        {"instance-id", NULL, WD_FLAG_STRING, &a->instance_id, 1, 0,
         "this worker's name at the router (default <role>-<hostname>-<pid>)", NULL, 0},
        {"page-size", NULL, WD_FLAG_INT, &a->page_size, 1, 4096, "tokens per KV page", NULL, 0},
        {"max-running-requests", NULL, WD_FLAG_INT, &a->max_running_requests, 1, 1 << 16,
         "requests in one DP rank's batch", NULL, 0},
        {"chunked-prefill-size", NULL, WD_FLAG_INT, &a->chunked_prefill_size, -1, 1 << 24,
         "prompt tokens per step (-1 = no chunking)", NULL, 0},
        {"context-length", NULL, WD_FLAG_INT, &a->context_length, 0, 1 << 24,
         "max tokens per request (0 = the model's)", NULL, 0},
        {"max-total-tokens", NULL, WD_FLAG_INT, &a->max_total_tokens, 1, 1 << 30,
         "KV pool of each attention-DP rank, in tokens", NULL, 0},
        {"kv-cache-dtype", NULL, WD_FLAG_STRING, &a->kv_cache_dtype, 1, 0,
         "KV cache element type (auto = fp32, the CPU engine's activation type)",
         "auto,fp32,float32,bf16,bfloat16", 0},
        {"threads", NULL, WD_FLAG_INT, &a->threads, 0, 1024, "CPU threads per rank (0 = all)", NULL,
         0},
        {"weights-mapped", NULL, WD_FLAG_BOOL, &a->weights_mapped, 1, 0,
         "stream the weights from the checkpoint's mapping, not a huge-page copy made at load "
         "(less RAM, slower CPU decode)",
         NULL, 0},
        {"dist-timeout-ms", NULL, WD_FLAG_INT, &a->dist_timeout_ms, 100, 3600000,
         "how long a rank waits for another before the instance fails", NULL, 0},
        {"heartbeat-interval-ms", NULL, WD_FLAG_INT, &a->heartbeat_interval_ms, 10, 60000,
         "load reports to the router", NULL, 0},
        {"drain-timeout-secs", NULL, WD_FLAG_INT, &a->drain_timeout_secs, 0, 86400,
         "after SIGTERM, how long requests in flight may take before they are aborted", NULL, 0},
        {"metrics-port", NULL, WD_FLAG_INT, &a->metrics_port, -1, 65535,
         "HTTP /health, /live and /metrics (-1 off, 0 = the kernel picks)", NULL, 0},
        {"metrics-host", NULL, WD_FLAG_STRING, &a->metrics_host, 1, 0,
         "address the metrics endpoint binds", NULL, 0},
        {"log-level", NULL, WD_FLAG_STRING, &a->log_level, 1, 0, "log level",
         "error,warn,info,debug", 0},
    };
    int n = 0;
    while (flags[n].name)
        n++;
    if (is_prefill) {
        flags[n++] = (struct wd_flag){"bootstrap-port",
                                      NULL,
                                      WD_FLAG_INT,
                                      &a->bootstrap_port,
                                      0,
                                      65535,
                                      "where decode workers reach this prefill worker (0 = the "
                                      "kernel picks; advertised at registration)",
                                      NULL,
                                      0};
        flags[n++] = (struct wd_flag){"bootstrap-host",
                                      NULL,
                                      WD_FLAG_STRING,
                                      &a->bootstrap_host,
                                      1,
                                      0,
                                      "address the bootstrap endpoint binds and advertises",
                                      NULL,
                                      0};
    } else {
        flags[n++] = (struct wd_flag){"kv-release-timeout-secs",
                                      NULL,
                                      WD_FLAG_INT,
                                      &a->kv_release_timeout_secs,
                                      1,
                                      86400,
                                      "an aborted request's reserved pages wait this long for "
                                      "the prefill worker's word that it writes no more; keep "
                                      "it above the longest prefill step",
                                      NULL,
                                      0};
    }
    int n_server = wd_server_args_flags(&a->sargs, flags + n, MAX_FLAGS - n);
    WD_ASSERT(n_server > 0);
    n += n_server;
    struct wd_error err = {0};
    int help = 0;
    if (wd_flags_parse(flags, n, argc, argv, &help, &err) != WD_OK) {
        fprintf(stderr, "%s: %s\n", argv[0], err.msg);
        return 2;
    }
    if (help) {
        char usage[160];
        snprintf(usage, sizeof(usage),
                 "usage: wideep-%s --model-path DIR --router tcp://HOST:PORT [options]", role);
        wd_flags_print_help(flags, n, usage);
        return 1;
    }
    wd_log_set_level((enum wd_log_level)wd_log_level_parse(a->log_level));
    if (!a->model_path || !a->router) {
        fprintf(stderr, "%s: --model-path and --router are required (see --help)\n", argv[0]);
        return 2;
    }
    if (strncmp(a->router, "tcp://", 6) != 0) {
        fprintf(stderr, "%s: --router %s: expected tcp://HOST:PORT\n", argv[0], a->router);
        return 2;
    }
    if (wd_server_args_finalize(&a->sargs, &err) != WD_OK ||
        wd_server_args_to_parallel(&a->sargs, &a->pargs, &err) != WD_OK) {
        fprintf(stderr, "%s: %s\n", argv[0], err.msg);
        return 2;
    }
    wd_flags_log(flags, n, role);
    return 0;
}
