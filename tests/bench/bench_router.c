/*
 * wideep-bench router: what the router adds to a request. It starts wideep-router and a
 * null worker (tests/bench/null_worker.c, which answers at once) as child processes, drives
 * non-streaming one-token requests through HTTP with the keep-alive load client
 * (http_load.c), and measures in the same run the floor the router cannot beat: a bare
 * ZeroMQ DEALER -> ROUTER -> DEALER round trip over TCP loopback with frames of the size of
 * a GenerateRequest and its TokenChunk. Reported: latency at one connection (p50/p99) and
 * the router's addition over the bare round trip, and requests/s at --connections.
 * Everything shares the machine's cores: the figures are for the whole loop on this host.
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zmq.h>

#include "common/config/flags.h"
#include "tests/bench/bench_util.h"
#include "tests/bench/http_load.h"

struct echo {
    void *ctx, *sock;
    char endpoint[256];
    volatile int stop;
};

/* The ROUTER side of the baseline: returns every message to its sender. */
static void *echo_main(void *arg)
{
    struct echo *e = arg;
    zmq_pollitem_t it = {.socket = e->sock, .events = ZMQ_POLLIN};
    while (!e->stop) {
        if (zmq_poll(&it, 1, 50) <= 0)
            continue;
        zmq_msg_t id, body;
        zmq_msg_init(&id);
        zmq_msg_init(&body);
        if (zmq_msg_recv(&id, e->sock, 0) >= 0 && zmq_msg_recv(&body, e->sock, 0) >= 0) {
            zmq_msg_send(&id, e->sock, ZMQ_SNDMORE);
            zmq_msg_send(&body, e->sock, 0);
        }
        zmq_msg_close(&id);
        zmq_msg_close(&body);
    }
    return NULL;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Bare ZeroMQ round trips; writes p50 / p99 in microseconds. */
static int zmq_baseline(int iters, size_t bytes, double *p50, double *p99)
{
    struct echo e = {0};
    e.ctx = zmq_ctx_new();
    e.sock = zmq_socket(e.ctx, ZMQ_ROUTER);
    if (zmq_bind(e.sock, "tcp://127.0.0.1:*") != 0)
        return -1;
    size_t n = sizeof(e.endpoint);
    zmq_getsockopt(e.sock, ZMQ_LAST_ENDPOINT, e.endpoint, &n);
    void *d = zmq_socket(e.ctx, ZMQ_DEALER);
    zmq_connect(d, e.endpoint);
    pthread_t th;
    pthread_create(&th, NULL, echo_main, &e);
    char *buf = calloc(1, bytes);
    double *lat = malloc(sizeof(double) * (size_t)iters);
    int warm = iters / 10;
    for (int i = 0; i < warm + iters; i++) {
        double t = wd_bench_now();
        zmq_send(d, buf, bytes, 0);
        zmq_recv(d, buf, bytes, 0);
        if (i >= warm)
            lat[i - warm] = (wd_bench_now() - t) * 1e6;
    }
    e.stop = 1;
    pthread_join(th, NULL);
    qsort(lat, (size_t)iters, sizeof(double), cmp_double);
    *p50 = lat[iters / 2];
    *p99 = lat[(int)(iters * 0.99)];
    free(lat);
    free(buf);
    int zero = 0;
    zmq_setsockopt(d, ZMQ_LINGER, &zero, sizeof(zero));
    zmq_setsockopt(e.sock, ZMQ_LINGER, &zero, sizeof(zero));
    zmq_close(d);
    zmq_close(e.sock);
    zmq_ctx_term(e.ctx);
    return 0;
}

static pid_t spawn(char *const argv[])
{
    pid_t pid = fork();
    if (pid == 0) {
        execv(argv[0], argv);
        fprintf(stderr, "wideep-bench router: exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    return pid;
}

static void stop_child(pid_t pid)
{
    if (pid <= 0)
        return;
    kill(pid, SIGTERM);
    for (int i = 0; i < 50; i++) {
        if (waitpid(pid, NULL, WNOHANG) == pid)
            return;
        usleep(100000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

/* CPU seconds (user + system, all threads) a process has used so far; -1 if unknown. */
static double cpu_seconds(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = 0;
    const char *p = strrchr(buf, ')'); /* the command name may hold spaces */
    unsigned long ut = 0, st = 0;
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
        return -1;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static int read_ports(const char *path, int *http, int *wp)
{
    for (int i = 0; i < 100; i++) {
        FILE *f = fopen(path, "r");
        if (f) {
            int ok = fscanf(f, "%d %d", http, wp) == 2;
            fclose(f);
            if (ok)
                return 0;
        }
        usleep(100000);
    }
    return -1;
}

static int run_load(int port, const char *req, int conns, double warm, double dur,
                    struct wd_http_load_result *res)
{
    struct wd_http_load_config lc = {.host = "127.0.0.1",
                                     .port = port,
                                     .request = req,
                                     .request_len = strlen(req),
                                     .connections = conns,
                                     .warmup_s = warm,
                                     .duration_s = dur};
    return wd_http_load_run(&lc, res);
}

int wd_bench_router(int argc, char **argv)
{
    const char *model = "deploy/tiny-model", *prompt = "Hello", *endpoint = "completions";
    int conns = 32, zmq_iters = 20000;
    float duration = 5, warmup = 1;
    struct wd_flag flags[] = {
        {"model-path", NULL, WD_FLAG_STRING, &model, 1, 0, "model directory (tokenizer)", NULL, 0},
        {"connections", NULL, WD_FLAG_INT, &conns, 1, 4096, "keep-alive connections", NULL, 0},
        {"duration", NULL, WD_FLAG_FLOAT, &duration, 0.1, 3600, "seconds measured per load", NULL,
         0},
        {"warmup", NULL, WD_FLAG_FLOAT, &warmup, 0, 60, "seconds before measuring", NULL, 0},
        {"prompt", NULL, WD_FLAG_STRING, &prompt, 1, 0, "prompt text (no quotes)", NULL, 0},
        {"endpoint", NULL, WD_FLAG_STRING, &endpoint, 1, 0, "which API the requests use",
         "completions,chat,generate", 0},
        {"zmq-iters", NULL, WD_FLAG_INT, &zmq_iters, 100, 10000000, "baseline round trips", NULL,
         0},
    };
    int n_flags = (int)(sizeof(flags) / sizeof(flags[0])), help = 0;
    struct wd_error err = {0};
    if (wd_flags_parse(flags, n_flags, argc, argv, &help, &err) != WD_OK) {
        fprintf(stderr, "wideep-bench router: %s\n", err.msg);
        return 2;
    }
    if (help) {
        wd_flags_print_help(flags, n_flags, "usage: wideep-bench router [--model-path DIR] ...");
        return 0;
    }
    char self[PATH_MAX], router[PATH_MAX + 32], port_file[] = "/tmp/wd-bench-router-XXXXXX";
    ssize_t sn = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (sn <= 0)
        return 2;
    self[sn] = 0;
    snprintf(router, sizeof(router), "%.*s/wideep-router", (int)(strrchr(self, '/') - self), self);
    int pf = mkstemp(port_file);
    if (pf < 0)
        return 2;
    close(pf);
    unlink(port_file);

    double z50, z99;
    if (zmq_baseline(zmq_iters, 160, &z50, &z99) != 0) {
        fprintf(stderr, "wideep-bench router: ZeroMQ baseline failed\n");
        return 1;
    }
    char *rargv[] = {router,        "--model-path",
                     (char *)model, "--port",
                     "0",           "--worker-port",
                     "0",           "--port-file",
                     port_file,     "--log-level",
                     "warn",        "--max-concurrent-requests",
                     "65536",       "--queue-size",
                     "65536",       "--policy",
                     "least_load",  NULL};
    pid_t rpid = spawn(rargv), wpid = -1;
    int http = 0, wp = 0, rc = 1;
    if (read_ports(port_file, &http, &wp) != 0) {
        fprintf(stderr, "wideep-bench router: %s did not start\n", router);
        goto out;
    }
    char url[64];
    snprintf(url, sizeof(url), "tcp://127.0.0.1:%d", wp);
    char *wargv[] = {self, "null-worker", "--router", url, "--model-path", (char *)model, NULL};
    wpid = spawn(wargv);

    char body[1024], req[2048];
    const char *path = "/v1/completions";
    if (strcmp(endpoint, "chat") == 0) {
        path = "/v1/chat/completions";
        snprintf(body, sizeof(body),
                 "{\"messages\":[{\"role\":\"user\",\"content\":\"%s\"}],\"max_tokens\":1}",
                 prompt);
    } else if (strcmp(endpoint, "generate") == 0) {
        path = "/generate";
        snprintf(body, sizeof(body), "{\"text\":\"%s\",\"sampling_params\":{\"max_new_tokens\":1}}",
                 prompt);
    } else {
        snprintf(body, sizeof(body), "{\"prompt\":\"%s\",\"max_tokens\":1}", prompt);
    }
    snprintf(req, sizeof(req),
             "POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
             "Content-Length: %zu\r\n\r\n%s",
             path, strlen(body), body);
    /* Ready when a request gets a 200 (the worker has registered). */
    struct wd_http_load_result r1, rn;
    int ready = 0;
    for (int i = 0; i < 50 && !ready; i++) {
        run_load(http, req, 1, 0, 0.1, &r1);
        ready = r1.n_ok > 0;
    }
    if (!ready) {
        fprintf(stderr, "wideep-bench router: no 200 within 5 s (last status %d)\n",
                r1.last_bad_status);
        goto out;
    }
    if (run_load(http, req, 1, warmup, duration, &r1) != 0)
        goto out;
    /* CPU per request at load: what the router and the worker cost regardless of how busy
     * the machine is (the latencies are not). Warm-up included on both sides. */
    double rc0 = cpu_seconds(rpid), wc0 = cpu_seconds(wpid), t0 = wd_bench_now();
    if (run_load(http, req, conns, warmup, duration, &rn) != 0)
        goto out;
    double rcpu = cpu_seconds(rpid) - rc0, wcpu = cpu_seconds(wpid) - wc0;
    double n_all = rn.rps * (wd_bench_now() - t0); /* approximately: rate x whole run */
    long nproc = sysconf(_SC_NPROCESSORS_ONLN);
    printf("router: %s %s max_tokens 1 (non-streaming) through wideep-router + null worker, "
           "%ld CPU(s) shared by router, worker and load client\n",
           path, model, nproc);
    printf("baseline: bare ZeroMQ DEALER->ROUTER->DEALER round trip over TCP loopback, "
           "160 B: p50 %.1f us, p99 %.1f us (%d round trips)\n",
           z50, z99, zmq_iters);
    printf("1 connection:  %.0f req/s, latency p50 %.1f us, p99 %.1f us; added over the bare "
           "round trip: p50 %.1f us\n",
           r1.rps, r1.p50_us, r1.p99_us, r1.p50_us - z50);
    printf("%d connections: %.0f req/s, latency p50 %.1f us, p90 %.1f us, p99 %.1f us%s\n", conns,
           rn.rps, rn.p50_us, rn.p90_us, rn.p99_us, rn.n_errors ? " (with errors)" : "");
    if (rc0 >= 0 && n_all > 0)
        printf("CPU per request at %d connections: router %.1f us (%.0f req/s per core), "
               "null worker %.1f us\n",
               conns, rcpu / n_all * 1e6, n_all / rcpu, wcpu / n_all * 1e6);
    if (r1.n_errors || rn.n_errors)
        printf("errors: %ld + %ld answers not 2xx (last status %d)\n", r1.n_errors, rn.n_errors,
               rn.last_bad_status ? rn.last_bad_status : r1.last_bad_status);
    rc = r1.n_errors || rn.n_errors ? 1 : 0;
out:
    stop_child(wpid);
    stop_child(rpid);
    unlink(port_file);
    return rc;
}
