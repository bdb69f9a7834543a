/* Keep-alive HTTP load: connections as small state machines on one epoll loop. */
#include "tests/bench/http_load.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tests/bench/bench_util.h"

#define RESP_CAP 65536
#define MAX_SAMPLES (8 << 20)

struct conn {
    int fd;
    size_t sent;
    char resp[RESP_CAP];
    size_t got;
    double t_start;
};

static int connect_to(const char *host, int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, host, &a.sin_addr);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        fprintf(stderr, "http-load: connect %s:%d: %s\n", host, port, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
}

/* Bytes of a complete answer in c->resp (0: not complete yet); *status_p its status. */
static size_t complete_len(const struct conn *c, int *status_p)
{
    const char *end = memmem(c->resp, c->got, "\r\n\r\n", 4);
    if (!end)
        return 0;
    size_t head = (size_t)(end - c->resp) + 4;
    long clen = -1;
    for (const char *p = c->resp; p < end; p++) {
        if ((p == c->resp || p[-1] == '\n') && strncasecmp(p, "content-length:", 15) == 0) {
            clen = strtol(p + 15, NULL, 10);
            break;
        }
    }
    if (clen < 0 || head + (size_t)clen > c->got)
        return 0;
    *status_p = atoi(c->resp + 9); /* "HTTP/1.1 200" */
    return head + (size_t)clen;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void send_request(const struct wd_http_load_config *cfg, struct conn *c)
{
    ssize_t n = send(c->fd, cfg->request + c->sent, cfg->request_len - c->sent, MSG_NOSIGNAL);
    if (n > 0)
        c->sent += (size_t)n;
}

int wd_http_load_run(const struct wd_http_load_config *cfg, struct wd_http_load_result *res)
{
    memset(res, 0, sizeof(*res));
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct conn *conns = calloc((size_t)cfg->connections, sizeof(*conns));
    double *lat = malloc(sizeof(double) * MAX_SAMPLES);
    if (ep < 0 || !conns || !lat) {
        fprintf(stderr, "http-load: out of memory\n");
        free(conns);
        free(lat);
        return -1;
    }
    long n_lat = 0;
    double t0 = wd_bench_now(), t_measure = t0 + cfg->warmup_s, t_end = t_measure + cfg->duration_s;
    int rc = 0;
    for (int i = 0; i < cfg->connections; i++) {
        conns[i].fd = connect_to(cfg->host, cfg->port);
        if (conns[i].fd < 0) {
            rc = -1;
            break;
        }
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &conns[i]};
        epoll_ctl(ep, EPOLL_CTL_ADD, conns[i].fd, &ev);
        conns[i].t_start = wd_bench_now();
        send_request(cfg, &conns[i]);
    }
    struct epoll_event evs[256];
    while (rc == 0) {
        double now = wd_bench_now();
        if (now >= t_end)
            break;
        int n = epoll_wait(ep, evs, 256, 100);
        for (int k = 0; k < n; k++) {
            struct conn *c = evs[k].data.ptr;
            if (c->sent < cfg->request_len)
                send_request(cfg, c);
            ssize_t got = recv(c->fd, c->resp + c->got, RESP_CAP - c->got, 0);
            if (got <= 0) {
                if (got < 0 && errno == EAGAIN)
                    continue;
                res->n_errors++;
                rc = -1; /* a closed keep-alive connection ends the run: it is a bug */
                fprintf(stderr, "http-load: connection closed by the server\n");
                break;
            }
            c->got += (size_t)got;
            int status = 0;
            size_t len = complete_len(c, &status);
            if (len == 0) {
                if (c->got == RESP_CAP) {
                    fprintf(stderr, "http-load: answer over %d bytes\n", RESP_CAP);
                    rc = -1;
                    break;
                }
                continue;
            }
            double t = wd_bench_now();
            if (c->t_start >= t_measure) {
                if (status >= 200 && status < 300) {
                    res->n_ok++;
                    if (n_lat < MAX_SAMPLES)
                        lat[n_lat++] = (t - c->t_start) * 1e6;
                } else {
                    res->n_errors++;
                    res->last_bad_status = status;
                }
            }
            memmove(c->resp, c->resp + len, c->got - len);
            c->got -= len;
            c->sent = 0;
            c->t_start = t;
            send_request(cfg, c);
        }
    }
    double measured = wd_bench_now() - t_measure;
    for (int i = 0; i < cfg->connections; i++)
        if (conns[i].fd > 0)
            close(conns[i].fd);
    close(ep);
    if (n_lat > 0) {
        qsort(lat, (size_t)n_lat, sizeof(double), cmp_double);
        double sum = 0;
        for (long i = 0; i < n_lat; i++)
            sum += lat[i];
        res->mean_us = sum / (double)n_lat;
        res->p50_us = lat[n_lat / 2];
        res->p90_us = lat[(long)(n_lat * 0.9)];
        res->p99_us = lat[(long)(n_lat * 0.99)];
    }
    res->rps = measured > 0 ? (double)res->n_ok / measured : 0;
    free(conns);
    free(lat);
    return rc;
}
