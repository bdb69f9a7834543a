/*
 * wd_http_load: a keep-alive HTTP/1.1 load client for the router benchmark. N connections
 * on one thread (epoll), each sending the same request again as soon as the previous
 * answer is complete (closed loop), for a fixed time after a warm-up. Answers must carry
 * Content-Length (the router's non-streaming answers do). Records every latency (send of
 * the first byte to the last byte of the answer) for exact percentiles.
 */
#ifndef WD_BENCH_HTTP_LOAD_H
#define WD_BENCH_HTTP_LOAD_H

#include <stddef.h>

struct wd_http_load_config {
    const char *host; /* IPv4 literal */
    int port;
    const char *request; /* the whole HTTP request, headers and body */
    size_t request_len;
    int connections;
    double warmup_s, duration_s;
};

struct wd_http_load_result {
    long n_ok;     /* 2xx answers in the measured window */
    long n_errors; /* other statuses or broken connections */
    int last_bad_status;
    double rps;
    double p50_us, p90_us, p99_us, mean_us;
};

/* Runs the load; 0 on success, -1 when it could not connect (message on stderr). */
int wd_http_load_run(const struct wd_http_load_config *cfg, struct wd_http_load_result *res);

#endif
