/*
 * Rendezvous client: one blocking TCP connection with a deadline on every exchange, plus
 * the address parser. Waiting for a key is the client re-asking with backoff (1 ms doubling
 * to 20 ms), calling the wait hook between asks. Any malformed or short reply, or a reply
 * that does not come in time, marks the connection broken: later calls fail at once
 * instead of reading a stream that lost its framing. The wire format is in
 * rendezvous_wire.h; the server in rendezvous_server.c.
 */
#include "common/comm/rendezvous.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common/comm/rendezvous_wire.h"
#include "common/util/le.h"

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

enum wd_status wd_rdzv_parse_addr(const char *addr, char *host, size_t host_cap, int *port_p,
                                  struct wd_error *err)
{
    const char *h = addr, *colon;
    size_t hlen;
    if (!addr)
        return wd_error_set(err, WD_ERR_INVALID, "rendezvous address missing");
    if (addr[0] == '[') {
        const char *close = strchr(addr, ']');
        if (!close || close[1] != ':')
            goto bad;
        h = addr + 1;
        hlen = (size_t)(close - h);
        colon = close + 1;
    } else {
        colon = strrchr(addr, ':');
        if (!colon || memchr(addr, ':', (size_t)(colon - addr)))
            goto bad;
        hlen = (size_t)(colon - addr);
    }
    if (hlen == 0 || hlen >= host_cap)
        goto bad;
    /* Digits only: strtol would take signs and leading blanks. */
    long port = 0;
    const char *p = colon + 1;
    if (!*p)
        goto bad;
    for (; *p; p++) {
        if (*p < '0' || *p > '9' || port > 65535)
            goto bad;
        port = port * 10 + (*p - '0');
    }
    if (port < 1 || port > 65535)
        goto bad;
    memcpy(host, h, hlen);
    host[hlen] = 0;
    *port_p = (int)port;
    return WD_OK;
bad:
    return wd_error_set(err, WD_ERR_INVALID, "bad rendezvous address '%s' (want host:port)", addr);
}

/* ---------------------------------------------------------------- client */

struct wd_rdzv {
    int fd; /* -1 once the connection broke */
    int io_timeout_ms;
    char where[280]; /* "host:port" for messages */
    wd_rdzv_wait_hook hook;
    void *hook_arg;
};

/* Connects one address without blocking past deadline. Returns fd or -1 (errno set). */
static int connect_one(const struct addrinfo *ai, int64_t deadline)
{
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
        return fd;
    if (errno != EINPROGRESS) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    int64_t left = deadline - now_ms();
    struct pollfd p = {.fd = fd, .events = POLLOUT};
    int soerr = ETIMEDOUT;
    if (left > 0 && poll(&p, 1, (int)(left < 1000 ? left : 1000)) == 1) {
        socklen_t sl = sizeof(soerr);
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0)
            soerr = errno;
    }
    if (soerr != 0) {
        close(fd);
        errno = soerr;
        return -1;
    }
    return fd;
}

static enum wd_status request(struct wd_rdzv *c, int op, const char *key, const void *val,
                              size_t vl, int *status_p, void **val_p, size_t *len_p,
                              struct wd_error *err);

/* Presents the launch token; the server closes the connection when it is not its own. */
static enum wd_status hello(struct wd_rdzv *c, const char *token, struct wd_error *err)
{
    int status;
    WD_CHECK(request(c, WD_RDZV_OP_HELLO, WD_RDZV_HELLO_KEY, token, strlen(token), &status, NULL,
                     NULL, err));
    if (status == WD_RDZV_REPLY_DENIED)
        return wd_error_set(err, WD_ERR_INVALID,
                            "rendezvous %s: launch token mismatch (the job there was started "
                            "with another token; every node of one job needs the same one)",
                            c->where);
    if (status != WD_RDZV_REPLY_OK)
        return wd_error_set(err, WD_ERR_FORMAT, "rendezvous %s: hello refused (status %d)",
                            c->where, status);
    return WD_OK;
}

enum wd_status wd_rdzv_create(const char *host, int port, const char *token, int timeout_ms,
                              struct wd_rdzv **c_p, struct wd_error *err)
{
    if (token && strlen(token) > WD_RDZV_MAX_TOKEN)
        return wd_error_set(err, WD_ERR_INVALID, "rendezvous: launch token longer than %d bytes",
                            WD_RDZV_MAX_TOKEN);
    struct addrinfo hints = {
        .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    char port_s[16];
    snprintf(port_s, sizeof(port_s), "%d", port);
    int gai = getaddrinfo(host, port_s, &hints, &res);
    if (gai != 0)
        return wd_error_set(err, WD_ERR_IO, "rendezvous: cannot resolve '%s': %s", host,
                            gai_strerror(gai));
    int64_t deadline = now_ms() + (timeout_ms > 0 ? timeout_ms : 0);
    int fd = -1, saved = ETIMEDOUT;
    for (;;) {
        for (struct addrinfo *ai = res; ai && fd < 0; ai = ai->ai_next) {
            fd = connect_one(ai, deadline);
            if (fd < 0)
                saved = errno;
        }
        if (fd >= 0 || now_ms() >= deadline)
            break;
        sleep_ms(20); /* the server may not be listening yet */
    }
    freeaddrinfo(res);
    if (fd < 0)
        return wd_error_set(err, WD_ERR_TIMEOUT,
                            "rendezvous: cannot connect to %s:%d within %d ms: %s", host, port,
                            timeout_ms, strerror(saved));
    struct wd_rdzv *c = calloc(1, sizeof(*c));
    if (!c) {
        close(fd);
        return wd_error_set(err, WD_ERR_NOMEM, "rendezvous: out of memory");
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    c->fd = fd;
    c->io_timeout_ms = timeout_ms > 0 ? timeout_ms : 1;
    snprintf(c->where, sizeof(c->where), "%s:%d", host, port);
    if (token) {
        enum wd_status st = hello(c, token, err);
        if (st != WD_OK) {
            wd_rdzv_destroy(c);
            return st;
        }
    }
    *c_p = c;
    return WD_OK;
}

void wd_rdzv_destroy(struct wd_rdzv *c)
{
    if (!c)
        return;
    if (c->fd >= 0)
        close(c->fd);
    free(c);
}

void wd_rdzv_set_wait_hook(struct wd_rdzv *c, wd_rdzv_wait_hook hook, void *arg)
{
    c->hook = hook;
    c->hook_arg = arg;
}

static enum wd_status broken(struct wd_rdzv *c, enum wd_status st, const char *what,
                             struct wd_error *err)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    return wd_error_set(err, st, "rendezvous %s: %s", c->where, what);
}

/* Moves exactly n bytes in the direction given, or fails at the deadline. */
static enum wd_status xfer(struct wd_rdzv *c, uint8_t *buf, size_t n, int is_send, int64_t deadline,
                           struct wd_error *err)
{
    size_t off = 0;
    while (off < n) {
        ssize_t r = is_send ? send(c->fd, buf + off, n - off, MSG_NOSIGNAL)
                            : recv(c->fd, buf + off, n - off, 0);
        if (r > 0) {
            off += (size_t)r;
            continue;
        }
        if (r == 0)
            return broken(c, WD_ERR_IO, "connection closed by the server", err);
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            return broken(c, WD_ERR_IO, strerror(errno), err);
        int64_t left = deadline - now_ms();
        if (left <= 0)
            return broken(c, WD_ERR_TIMEOUT, "no reply in time", err);
        struct pollfd p = {.fd = c->fd, .events = is_send ? POLLOUT : POLLIN};
        poll(&p, 1, (int)(left < 1000 ? left : 1000));
    }
    return WD_OK;
}

/* One request/reply exchange. On WD_OK, *status_p is the server's status and, when val_p
 * is non-NULL, *val_p a malloc'ed copy of the reply value. */
static enum wd_status request(struct wd_rdzv *c, int op, const char *key, const void *val,
                              size_t vl, int *status_p, void **val_p, size_t *len_p,
                              struct wd_error *err)
{
    if (c->fd < 0)
        return wd_error_set(err, WD_ERR_IO, "rendezvous %s: connection already lost", c->where);
    size_t kl = strlen(key);
    if (kl == 0 || kl > WD_RDZV_MAX_KEY || vl > WD_RDZV_MAX_VALUE)
        return wd_error_set(err, WD_ERR_INVALID, "rendezvous: key '%.64s' or its value too long",
                            key);
    uint8_t *frame = malloc(WD_RDZV_HDR + kl + vl);
    if (!frame)
        return wd_error_set(err, WD_ERR_NOMEM, "rendezvous: out of memory");
    memset(frame, 0, WD_RDZV_HDR);
    wd_le_put32(frame, WD_RDZV_MAGIC);
    frame[4] = (uint8_t)op;
    wd_le_put32(frame + 8, (uint32_t)kl);
    wd_le_put32(frame + 12, (uint32_t)vl);
    memcpy(frame + WD_RDZV_HDR, key, kl);
    if (vl)
        memcpy(frame + WD_RDZV_HDR + kl, val, vl);
    int64_t deadline = now_ms() + c->io_timeout_ms;
    enum wd_status st = xfer(c, frame, WD_RDZV_HDR + kl + vl, 1, deadline, err);
    free(frame);
    uint8_t h[WD_RDZV_HDR];
    if (st == WD_OK)
        st = xfer(c, h, WD_RDZV_HDR, 0, deadline, err);
    if (st != WD_OK)
        return st;
    uint32_t rl = wd_le_get32(h + 8);
    if (wd_le_get32(h) != WD_RDZV_MAGIC || h[4] > WD_RDZV_REPLY_DENIED || rl > WD_RDZV_MAX_VALUE)
        return broken(c, WD_ERR_FORMAT, "malformed reply", err);
    uint8_t *rv = malloc(rl ? rl : 1);
    if (!rv)
        return broken(c, WD_ERR_NOMEM, "out of memory", err);
    st = xfer(c, rv, rl, 0, deadline, err);
    if (st != WD_OK) {
        free(rv);
        return st;
    }
    *status_p = h[4];
    if (val_p) {
        *val_p = rv;
        *len_p = rl;
    } else {
        free(rv);
    }
    return WD_OK;
}

/* Why the server refused a request. */
static const char *refusal(int status)
{
    return status == WD_RDZV_REPLY_FULL     ? "store full"
           : status == WD_RDZV_REPLY_DENIED ? "no launch token presented"
                                            : "bad request";
}

enum wd_status wd_rdzv_set(struct wd_rdzv *c, const char *key, const void *val, size_t len,
                           struct wd_error *err)
{
    int status;
    WD_CHECK(request(c, WD_RDZV_OP_SET, key, val, len, &status, NULL, NULL, err));
    if (status != WD_RDZV_REPLY_OK)
        return wd_error_set(err, status == WD_RDZV_REPLY_FULL ? WD_ERR_NOMEM : WD_ERR_INVALID,
                            "rendezvous: set '%.64s' refused (%s)", key, refusal(status));
    return WD_OK;
}

enum wd_status wd_rdzv_get(struct wd_rdzv *c, const char *key, int timeout_ms, void **val_p,
                           size_t *len_p, struct wd_error *err)
{
    int64_t deadline = now_ms() + (timeout_ms > 0 ? timeout_ms : 0);
    int backoff = 1;
    for (;;) {
        int status;
        void *v;
        size_t len;
        WD_CHECK(request(c, WD_RDZV_OP_GET, key, NULL, 0, &status, &v, &len, err));
        if (status == WD_RDZV_REPLY_OK) {
            *val_p = v;
            *len_p = len;
            return WD_OK;
        }
        free(v);
        if (status != WD_RDZV_REPLY_NOT_FOUND)
            return wd_error_set(err, WD_ERR_INVALID, "rendezvous: get '%.64s' refused (%s)", key,
                                refusal(status));
        if (timeout_ms <= 0)
            return wd_error_set(err, WD_ERR_NOT_FOUND, "rendezvous: key '%.64s' not set", key);
        if (now_ms() >= deadline)
            return wd_error_set(err, WD_ERR_TIMEOUT, "rendezvous: key '%.64s' not set within %d ms",
                                key, timeout_ms);
        if (c->hook)
            WD_CHECK(c->hook(c->hook_arg, err));
        sleep_ms(backoff);
        backoff = backoff < 16 ? backoff * 2 : 20;
    }
}

enum wd_status wd_rdzv_add(struct wd_rdzv *c, const char *key, int64_t delta, int64_t *value_p,
                           struct wd_error *err)
{
    uint8_t buf[8];
    wd_le_put64(buf, (uint64_t)delta);
    int status;
    void *v;
    size_t len;
    WD_CHECK(request(c, WD_RDZV_OP_ADD, key, buf, 8, &status, &v, &len, err));
    enum wd_status st = WD_OK;
    if (status != WD_RDZV_REPLY_OK)
        st = wd_error_set(err, status == WD_RDZV_REPLY_FULL ? WD_ERR_NOMEM : WD_ERR_INVALID,
                          "rendezvous: add on '%.64s' refused (%s)", key,
                          status == WD_RDZV_REPLY_BAD ? "not a counter" : refusal(status));
    else if (len != 8)
        st = broken(c, WD_ERR_FORMAT, "malformed counter reply", err);
    else if (value_p)
        *value_p = (int64_t)wd_le_get64(v);
    free(v);
    return st;
}

enum wd_status wd_rdzv_barrier(struct wd_rdzv *c, const char *name, int n, int timeout_ms,
                               struct wd_error *err)
{
    char key[WD_RDZV_MAX_KEY + 1];
    if (n < 1 || snprintf(key, sizeof(key), "barrier/%s", name) >= (int)sizeof(key))
        return wd_error_set(err, WD_ERR_INVALID, "rendezvous: bad barrier '%.64s'", name);
    int64_t arrived;
    WD_CHECK(wd_rdzv_add(c, key, 1, &arrived, err));
    int64_t target = ((arrived - 1) / n + 1) * n;
    int64_t deadline = now_ms() + timeout_ms;
    int backoff = 1;
    while (arrived < target) {
        if (now_ms() >= deadline)
            return wd_error_set(err, WD_ERR_TIMEOUT,
                                "rendezvous: barrier '%.64s': %lld of %d arrived within %d ms",
                                name, (long long)(n - (target - arrived)), n, timeout_ms);
        if (c->hook)
            WD_CHECK(c->hook(c->hook_arg, err));
        sleep_ms(backoff);
        backoff = backoff < 16 ? backoff * 2 : 20;
        WD_CHECK(wd_rdzv_add(c, key, 0, &arrived, err));
    }
    return WD_OK;
}
