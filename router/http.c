/*
 * HTTP server on libmicrohttpd in external-epoll mode. Connection records are pooled (a
 * keep-alive client reuses its body buffer); suspended connections are watched for
 * EPOLLRDHUP in a second epoll set because MHD does not poll them. The watch starts only
 * once a connection has stayed suspended for WATCH_DELAY_MS: most requests are answered
 * sooner, and two epoll_ctl calls per request were a visible share of the router's time.
 */
#include "router/http.h"

#include <errno.h>
#include <microhttpd.h>
#include <netdb.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common/util/log.h"
#include "router/buf.h"

#define BODY_KEEP_BYTES (64 * 1024) /* a pooled record keeps a body buffer up to this size */
#define STREAM_BLOCK 16384
#define WATCH_DELAY_MS 10.0
/* MHD zeroes a connection's memory pool for every request: the default 32 KiB cost a
 * visible memset per request. 16 KiB still holds request headers up to ~12 KiB. */
#define CONNECTION_MEMORY 16384

enum conn_state {
    ST_NEW = 0,   /* headers seen, body being read */
    ST_ANSWERED,  /* a response is queued */
    ST_DEFERRED,  /* suspended, waiting for the handler's answer */
    ST_STREAMING, /* the chunked response is queued */
};

struct wd_http_conn {
    struct wd_http *h;
    struct MHD_Connection *mc;
    enum conn_state state;
    struct wd_http_request req;
    struct wd_buf body;
    int is_body_too_big;
    int in_handler;                       /* inside on_request: answers are queued directly */
    int is_suspended;                     /* by defer or by the stream reader */
    int is_watched;                       /* in the hang-up epoll set */
    double suspended_at;                  /* ms, monotonic */
    struct wd_http_conn *w_prev, *w_next; /* waiting to be watched, by suspend time */
    int is_watch_pending;
    int is_gone;     /* the client hung up */
    int has_pending; /* an answer waits for the resumed access handler */
    struct wd_http_response pending;
    int is_stream; /* wd_http_stream_start was called */
    const char *stream_type;
    struct wd_buf out; /* stream bytes not yet taken by MHD: out.p[out_off, out.len) */
    size_t out_off;
    int is_out_eof;
    void *user;
    struct wd_http_conn *prev, *next; /* live list (destroy resumes them all) or free list */
};

struct wd_http {
    struct MHD_Daemon *d;
    struct wd_http_callbacks cb;
    size_t max_body;
    int port;
    int hup_fd; /* epoll set of suspended connections, EPOLLRDHUP */
    struct wd_http_conn *live, *free;
    struct wd_http_conn *w_head, *w_tail; /* suspended, not yet watched, oldest first */
};

static struct wd_http_conn *conn_get(struct wd_http *h)
{
    struct wd_http_conn *c = h->free;
    if (c) {
        h->free = c->next;
        struct wd_buf body = c->body, out = c->out;
        memset(c, 0, sizeof(*c));
        c->body = body;
        c->out = out;
        wd_buf_reset(&c->body);
        wd_buf_reset(&c->out);
    } else {
        c = calloc(1, sizeof(*c));
        if (!c)
            return NULL;
    }
    c->h = h;
    c->next = h->live;
    if (h->live)
        h->live->prev = c;
    h->live = c;
    return c;
}

static void unwatch(struct wd_http_conn *c)
{
    if (c->is_watched) {
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(c->mc, MHD_CONNECTION_INFO_CONNECTION_FD);
        if (ci)
            epoll_ctl(c->h->hup_fd, EPOLL_CTL_DEL, ci->connect_fd, NULL);
        c->is_watched = 0;
    }
}

static void watch(struct wd_http_conn *c)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c->mc, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!ci || c->is_watched)
        return;
    /* RDHUP only: a pipelined next request (EPOLLIN) is not a hang-up. */
    struct epoll_event ev = {.events = EPOLLRDHUP, .data.ptr = c};
    if (epoll_ctl(c->h->hup_fd, EPOLL_CTL_ADD, ci->connect_fd, &ev) == 0)
        c->is_watched = 1;
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

static void pending_remove(struct wd_http *h, struct wd_http_conn *c)
{
    if (!c->is_watch_pending)
        return;
    if (c->w_prev)
        c->w_prev->w_next = c->w_next;
    else
        h->w_head = c->w_next;
    if (c->w_next)
        c->w_next->w_prev = c->w_prev;
    else
        h->w_tail = c->w_prev;
    c->w_prev = c->w_next = NULL;
    c->is_watch_pending = 0;
}

static void suspend(struct wd_http_conn *c)
{
    if (c->is_suspended)
        return;
    struct wd_http *h = c->h;
    MHD_suspend_connection(c->mc);
    c->is_suspended = 1;
    c->suspended_at = now_ms();
    c->w_prev = h->w_tail;
    c->w_next = NULL;
    if (h->w_tail)
        h->w_tail->w_next = c;
    else
        h->w_head = c;
    h->w_tail = c;
    c->is_watch_pending = 1;
}

static void resume(struct wd_http_conn *c)
{
    if (!c->is_suspended)
        return;
    pending_remove(c->h, c);
    unwatch(c);
    c->is_suspended = 0;
    MHD_resume_connection(c->mc);
}

/* Starts watching the connections suspended for WATCH_DELAY_MS by now. */
static void arm_watches(struct wd_http *h)
{
    if (!h->w_head)
        return;
    double now = now_ms();
    while (h->w_head && now - h->w_head->suspended_at >= WATCH_DELAY_MS) {
        struct wd_http_conn *c = h->w_head;
        pending_remove(h, c);
        watch(c);
    }
}

static void conn_put(struct wd_http *h, struct wd_http_conn *c)
{
    pending_remove(h, c);
    unwatch(c);
    if (c->has_pending)
        free(c->pending.body);
    if (c->prev)
        c->prev->next = c->next;
    else
        h->live = c->next;
    if (c->next)
        c->next->prev = c->prev;
    if (c->body.cap > BODY_KEEP_BYTES)
        wd_buf_cleanup(&c->body);
    if (c->out.cap > BODY_KEEP_BYTES)
        wd_buf_cleanup(&c->out);
    c->prev = NULL;
    c->next = h->free;
    h->free = c;
}

void wd_http_response_set(struct wd_http_response *resp, int status, const char *json_body)
{
    memset(resp, 0, sizeof(*resp));
    resp->status = status;
    resp->content_type = "application/json";
    resp->body_len = strlen(json_body);
    resp->body = malloc(resp->body_len + 1);
    if (resp->body)
        memcpy(resp->body, json_body, resp->body_len + 1);
    else
        resp->body_len = 0;
}

static enum MHD_Result queue(struct wd_http_conn *c, struct wd_http_response *resp)
{
    struct MHD_Response *r =
        resp->body
            ? MHD_create_response_from_buffer(resp->body_len, resp->body, MHD_RESPMEM_MUST_FREE)
            : MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    if (!r) {
        free(resp->body);
        return MHD_NO;
    }
    if (resp->content_type)
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, resp->content_type);
    if (resp->header_name)
        MHD_add_response_header(r, resp->header_name, resp->header_value);
    enum MHD_Result ok = MHD_queue_response(c->mc, (unsigned)resp->status, r);
    MHD_destroy_response(r);
    c->state = ST_ANSWERED;
    return ok;
}

static ssize_t stream_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
    struct wd_http_conn *c = cls;
    (void)pos;
    if (c->is_gone)
        return MHD_CONTENT_READER_END_WITH_ERROR;
    if (c->out_off < c->out.len) {
        size_t n = c->out.len - c->out_off;
        n = n < max ? n : max;
        memcpy(buf, c->out.p + c->out_off, n);
        c->out_off += n;
        if (c->out_off == c->out.len) {
            c->out_off = 0;
            wd_buf_reset(&c->out);
        }
        return (ssize_t)n;
    }
    if (c->is_out_eof)
        return MHD_CONTENT_READER_END_OF_STREAM;
    /* Nothing yet: returning 0 without suspending would make MHD call again at once. */
    suspend(c);
    return 0;
}

static enum MHD_Result queue_stream(struct wd_http_conn *c)
{
    struct MHD_Response *r =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, STREAM_BLOCK, stream_reader, c, NULL);
    if (!r)
        return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, c->stream_type);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
    enum MHD_Result ok = MHD_queue_response(c->mc, MHD_HTTP_OK, r);
    MHD_destroy_response(r);
    c->state = ST_STREAMING;
    return ok;
}

static enum wd_http_method method_of(const char *m)
{
    if (strcmp(m, MHD_HTTP_METHOD_GET) == 0)
        return WD_HTTP_GET;
    if (strcmp(m, MHD_HTTP_METHOD_POST) == 0)
        return WD_HTTP_POST;
    return WD_HTTP_OTHER;
}

static enum MHD_Result on_first_call(struct wd_http *h, struct wd_http_conn *c)
{
    const char *cl = MHD_lookup_connection_value(c->mc, MHD_HEADER_KIND, "Content-Length");
    struct wd_http_response resp = {0};
    if (cl) {
        char *end;
        errno = 0;
        unsigned long long n = strtoull(cl, &end, 10);
        if (errno == 0 && end != cl && n > h->max_body) {
            /* Refused before reading a byte of it (MHD drops the rest and closes). */
            c->is_body_too_big = c->req.is_body_too_big = 1;
        }
    }
    if (h->cb.precheck && h->cb.precheck(h->cb.ctx, &c->req, &resp))
        return queue(c, &resp);
    if (c->is_body_too_big) {
        h->cb.on_request(h->cb.ctx, c, &c->req); /* the handler words the 413 */
        return MHD_YES;
    }
    return MHD_YES;
}

static enum MHD_Result append_body(struct wd_http *h, struct wd_http_conn *c, const char *data,
                                   size_t n)
{
    if (c->is_body_too_big || c->body.len + n > h->max_body) {
        /* Over the cap: stop buffering at once; the answer is a 413 at the end. */
        c->is_body_too_big = c->req.is_body_too_big = 1;
        return MHD_YES;
    }
    return wd_buf_append(&c->body, data, n) == WD_OK ? MHD_YES : MHD_NO;
}

static enum MHD_Result access_handler(void *cls, struct MHD_Connection *mc, const char *url,
                                      const char *method, const char *version,
                                      const char *upload_data, size_t *upload_data_size,
                                      void **con_cls)
{
    struct wd_http *h = cls;
    struct wd_http_conn *c = *con_cls;
    (void)version;
    if (!c) {
        c = conn_get(h);
        if (!c)
            return MHD_NO;
        *con_cls = c;
        c->mc = mc;
        c->req.method = method_of(method);
        c->req.method_name = method;
        c->req.path = url;
        c->req.authorization =
            MHD_lookup_connection_value(mc, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
        c->in_handler = 1;
        enum MHD_Result r = on_first_call(h, c);
        c->in_handler = 0;
        return r;
    }
    if (*upload_data_size) {
        enum MHD_Result r = append_body(h, c, upload_data, *upload_data_size);
        *upload_data_size = 0;
        return r;
    }
    switch (c->state) {
    case ST_NEW:
        if (c->body.len > 0 && !c->is_body_too_big) {
            c->req.body = c->body.p; /* NUL-terminated by wd_buf */
            c->req.body_len = c->body.len;
        }
        c->in_handler = 1;
        h->cb.on_request(h->cb.ctx, c, &c->req);
        c->in_handler = 0;
        return MHD_YES;
    case ST_DEFERRED:
        if (c->is_gone)
            return MHD_NO; /* closes the connection */
        if (c->has_pending) {
            c->has_pending = 0;
            return queue(c, &c->pending);
        }
        if (c->is_stream)
            return queue_stream(c);
        suspend(c); /* resumed with nothing to say (should not happen): wait again */
        return MHD_YES;
    case ST_ANSWERED:
    case ST_STREAMING:
        break;
    }
    return MHD_YES;
}

static void completed(void *cls, struct MHD_Connection *mc, void **con_cls,
                      enum MHD_RequestTerminationCode toe)
{
    struct wd_http *h = cls;
    struct wd_http_conn *c = *con_cls;
    (void)mc;
    (void)toe;
    if (!c)
        return;
    void *user = c->user;
    c->user = NULL;
    if (user && h->cb.on_gone)
        h->cb.on_gone(h->cb.ctx, user);
    conn_put(h, c);
    *con_cls = NULL;
}

void wd_http_respond(struct wd_http_conn *c, struct wd_http_response *resp)
{
    if (c->in_handler) {
        queue(c, resp);
        return;
    }
    WD_ASSERT(c->state == ST_DEFERRED && !c->has_pending && !c->is_stream);
    c->pending = *resp;
    c->has_pending = 1;
    resume(c);
}

void wd_http_respond_text(struct wd_http_conn *c, int status, const char *content_type,
                          const char *body, size_t len)
{
    struct wd_http_response resp = {.status = status, .content_type = content_type};
    resp.body = malloc(len + 1);
    if (resp.body) {
        memcpy(resp.body, body, len);
        resp.body[len] = 0;
        resp.body_len = len;
    }
    wd_http_respond(c, &resp);
}

void wd_http_defer(struct wd_http_conn *c)
{
    WD_ASSERT(c->in_handler && c->state == ST_NEW);
    c->state = ST_DEFERRED;
    suspend(c);
}

void wd_http_set_user(struct wd_http_conn *c, void *user)
{
    c->user = user;
}

enum wd_status wd_http_stream_start(struct wd_http_conn *c, const char *content_type)
{
    WD_ASSERT(!c->is_stream && (c->state == ST_DEFERRED || c->state == ST_NEW));
    c->is_stream = 1;
    c->stream_type = content_type;
    if (c->in_handler)
        return queue_stream(c) == MHD_YES ? WD_OK : WD_ERR_IO;
    resume(c);
    return WD_OK;
}

enum wd_status wd_http_stream_write(struct wd_http_conn *c, const char *data, size_t len)
{
    if (c->out_off > 0) { /* drop what MHD already took before growing */
        wd_buf_consume(&c->out, c->out_off);
        c->out_off = 0;
    }
    WD_CHECK(wd_buf_append(&c->out, data, len));
    if (c->state == ST_STREAMING)
        resume(c);
    return WD_OK;
}

void wd_http_stream_end(struct wd_http_conn *c)
{
    c->is_out_eof = 1;
    if (c->state == ST_STREAMING)
        resume(c);
}

static void report_hangups(struct wd_http *h)
{
    struct epoll_event ev[64];
    int n = epoll_wait(h->hup_fd, ev, 64, 0);
    for (int i = 0; i < n; i++) {
        struct wd_http_conn *c = ev[i].data.ptr;
        c->is_gone = 1;
        void *user = c->user;
        c->user = NULL;
        if (user && h->cb.on_gone)
            h->cb.on_gone(h->cb.ctx, user);
        /* Let MHD see the dead socket: the access handler or the reader ends it. */
        if (c->has_pending) {
            c->has_pending = 0;
            free(c->pending.body);
        }
        resume(c);
    }
}

void wd_http_run(struct wd_http *h, int hangup_ready)
{
    MHD_run(h->d);
    arm_watches(h);
    if (hangup_ready)
        report_hangups(h);
}

long wd_http_timeout_ms(struct wd_http *h)
{
    long t = -1;
    MHD_UNSIGNED_LONG_LONG ms;
    if (MHD_get_timeout(h->d, &ms) == MHD_YES)
        t = ms > 3600000 ? 3600000 : (long)ms;
    if (h->w_head) {
        double left = h->w_head->suspended_at + WATCH_DELAY_MS - now_ms();
        long w = left <= 0 ? 0 : (long)left + 1;
        if (t < 0 || w < t)
            t = w;
    }
    return t;
}

int wd_http_port(const struct wd_http *h)
{
    return h->port;
}

int wd_http_poll_fd(const struct wd_http *h)
{
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_EPOLL_FD);
    return di ? di->epoll_fd : -1;
}

int wd_http_hangup_fd(const struct wd_http *h)
{
    return h->hup_fd;
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    char msg[512];
    (void)cls;
    vsnprintf(msg, sizeof(msg), fmt, ap);
    size_t n = strlen(msg);
    while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
        msg[--n] = 0;
    wd_log(WD_LOG_DEBUG, "http", "microhttpd: %s", msg);
}

enum wd_status wd_http_create(const struct wd_http_config *cfg, const struct wd_http_callbacks *cb,
                              struct wd_http **h_p, struct wd_error *err)
{
    char port[16];
    snprintf(port, sizeof(port), "%d", cfg->port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE},
                    *ai = NULL;
    int gai = getaddrinfo(cfg->host, port, &hints, &ai);
    if (gai != 0)
        return wd_error_set(err, WD_ERR_INVALID, "--host %s: %s", cfg->host, gai_strerror(gai));
    struct wd_http *h = calloc(1, sizeof(*h));
    if (!h) {
        freeaddrinfo(ai);
        return wd_error_set(err, WD_ERR_NOMEM, "http: out of memory");
    }
    h->cb = *cb;
    h->max_body = cfg->max_body_bytes;
    h->hup_fd = epoll_create1(EPOLL_CLOEXEC);
    if (h->hup_fd < 0) {
        freeaddrinfo(ai);
        free(h);
        return wd_error_set(err, WD_ERR_IO, "http: epoll_create1: %s", strerror(errno));
    }
    unsigned int flags = MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_TURBO |
                         MHD_USE_ERROR_LOG | (ai->ai_family == AF_INET6 ? MHD_USE_IPv6 : 0);
    h->d = MHD_start_daemon(
        flags, 0, NULL, NULL, access_handler, h, MHD_OPTION_SOCK_ADDR, ai->ai_addr,
        MHD_OPTION_NOTIFY_COMPLETED, completed, h, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
        (size_t)CONNECTION_MEMORY, MHD_OPTION_CONNECTION_LIMIT, cfg->connection_limit,
        MHD_OPTION_CONNECTION_TIMEOUT, cfg->idle_timeout_secs, MHD_OPTION_LISTENING_ADDRESS_REUSE,
        1, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL, MHD_OPTION_END);
    freeaddrinfo(ai);
    if (!h->d) {
        int e = errno;
        close(h->hup_fd);
        free(h);
        return wd_error_set(err, WD_ERR_IO, "http: cannot listen on %s:%d: %s", cfg->host,
                            cfg->port, e ? strerror(e) : "microhttpd refused the options");
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_BIND_PORT);
    h->port = di ? di->port : cfg->port;
    *h_p = h;
    return WD_OK;
}

void wd_http_destroy(struct wd_http *h)
{
    if (!h)
        return;
    /* MHD forbids stopping with suspended connections: resume each, marked gone. */
    for (struct wd_http_conn *c = h->live; c; c = c->next) {
        c->user = NULL;
        c->is_gone = 1;
        resume(c);
    }
    MHD_stop_daemon(h->d);
    while (h->free) {
        struct wd_http_conn *c = h->free;
        h->free = c->next;
        wd_buf_cleanup(&c->body);
        wd_buf_cleanup(&c->out);
        free(c);
    }
    close(h->hup_fd);
    free(h);
}
