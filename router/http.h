/*
 * wd_http: the router's HTTP server, libmicrohttpd driven from the router's own event loop.
 *
 * MHD runs in "external epoll" mode: it exposes one epoll fd that the router polls beside
 * its ZeroMQ socket, and wd_http_run does MHD's work when it is ready. So every callback
 * below runs on the router's one event loop thread, and the router's state needs no locks
 * (the alternative, MHD's own threads, would put a lock or a queue between every HTTP
 * handler and the worker traffic it waits on).
 *
 * A request is delivered once, whole: method, path, the Authorization header and the body
 * (buffered up to max_body_bytes; a longer body is refused with 413 as soon as its
 * Content-Length or the bytes read so far exceed the cap, never buffered whole). The
 * handler answers at once (wd_http_respond), or keeps the connection (wd_http_defer) and
 * answers later, or streams (wd_http_stream_*). A kept connection is suspended in MHD, so
 * nothing polls it; http watches it for a client hang-up (EPOLLRDHUP) once it has waited
 * 10 ms, so a client that goes away is noticed within that, not at the next write.
 *
 * Errors found from the headers alone (401, 404, 405, 413 by Content-Length) are answered
 * before the body is read, through the pre-check callback.
 */
#ifndef WD_ROUTER_HTTP_H
#define WD_ROUTER_HTTP_H

#include <stddef.h>

#include "common/util/status.h"

struct wd_http;
struct wd_http_conn; /* one HTTP request (a keep-alive connection carries several in turn) */

enum wd_http_method { WD_HTTP_GET = 0, WD_HTTP_POST, WD_HTTP_OTHER };

struct wd_http_request {
    enum wd_http_method method;
    const char *method_name;
    const char *path;          /* without the query string */
    const char *authorization; /* NULL when absent */
    const char *body;          /* NUL-terminated; NULL for no body */
    size_t body_len;
    int is_body_too_big; /* over max_body_bytes: body is NULL; the handler answers 413 */
};

/* An answer decided early or late: status, a JSON or text body, one optional header. */
struct wd_http_response {
    int status;
    const char *content_type;
    char *body; /* malloc'd; wd_http_respond takes ownership */
    size_t body_len;
    const char *header_name; /* e.g. "Retry-After"; NULL for none */
    char header_value[64];
};

struct wd_http_callbacks {
    void *ctx;
    /* Headers are in (body not read yet). Return 0 to go on, or fill *resp and return 1 to
     * answer now (its body is then sent and the request body is discarded). */
    int (*precheck)(void *ctx, const struct wd_http_request *req, struct wd_http_response *resp);
    /* The whole request. The handler must respond, defer or stream before returning. */
    void (*on_request)(void *ctx, struct wd_http_conn *c, const struct wd_http_request *req);
    /* A deferred or streaming request whose handler data is still attached ended early: the
     * client went away or the connection failed. user is what wd_http_set_user attached;
     * after this call the connection is gone and c must not be used. */
    void (*on_gone)(void *ctx, void *user);
};

struct wd_http_config {
    const char *host; /* IPv4 or IPv6 literal, or a name */
    int port;         /* 0: any free port */
    size_t max_body_bytes;
    unsigned int connection_limit;
    unsigned int idle_timeout_secs; /* keep-alive connections idle this long are closed */
};

enum wd_status wd_http_create(const struct wd_http_config *cfg, const struct wd_http_callbacks *cb,
                              struct wd_http **h_p, struct wd_error *err);
/* Resumes and closes every connection, then stops the daemon. NULL-safe. */
void wd_http_destroy(struct wd_http *h);

int wd_http_port(const struct wd_http *h);
/* The fds the event loop polls for readability (MHD's epoll fd, the hang-up watcher). */
int wd_http_poll_fd(const struct wd_http *h);
int wd_http_hangup_fd(const struct wd_http *h);
/* Milliseconds until MHD needs wd_http_run even without I/O; -1 for no deadline. */
long wd_http_timeout_ms(struct wd_http *h);
/* Does MHD's pending work and, when the hang-up fd polled readable, reports hang-ups.
 * Never blocks. */
void wd_http_run(struct wd_http *h, int hangup_ready);

/* Handler side. Answers a request. In on_request, directly; on a deferred connection, from
 * any later point on the loop (the connection is resumed). Takes ownership of resp->body. */
void wd_http_respond(struct wd_http_conn *c, struct wd_http_response *resp);
/* Convenience: copies body. */
void wd_http_respond_text(struct wd_http_conn *c, int status, const char *content_type,
                          const char *body, size_t len);
/* Keeps the connection for a later answer (only from on_request). */
void wd_http_defer(struct wd_http_conn *c);
/* Attaches the handler's data, reported by on_gone; NULL detaches (on_gone is not called). */
void wd_http_set_user(struct wd_http_conn *c, void *user);

/* Streaming: starts a 200 chunked response with this content type (e.g. text/event-stream)
 * on a deferred connection; then append data as it comes and end it. Data is buffered in
 * the connection and sent as the client reads; the connection is resumed when needed. */
enum wd_status wd_http_stream_start(struct wd_http_conn *c, const char *content_type);
enum wd_status wd_http_stream_write(struct wd_http_conn *c, const char *data, size_t len);
void wd_http_stream_end(struct wd_http_conn *c);

/* Fills resp with a status and a body copied from text (content type JSON). */
void wd_http_response_set(struct wd_http_response *resp, int status, const char *json_body);

#endif
