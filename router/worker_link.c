/* The ROUTER socket: bind, receive [id][(empty)][frame], send [id][frame]. */
#include "router/worker_link.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

struct wd_worker_link {
    void *ctx, *sock;
    int port;
};

enum wd_status wd_worker_link_create(const char *host, int port, struct wd_worker_link **l_p,
                                     struct wd_error *err)
{
    struct wd_worker_link *l = calloc(1, sizeof(*l));
    if (!l)
        return wd_error_set(err, WD_ERR_NOMEM, "worker link: out of memory");
    l->ctx = zmq_ctx_new();
    l->sock = l->ctx ? zmq_socket(l->ctx, ZMQ_ROUTER) : NULL;
    if (!l->sock) {
        wd_worker_link_destroy(l);
        return wd_error_set(err, WD_ERR_IO, "worker link: zmq socket: %s", zmq_strerror(errno));
    }
    int one = 1, zero = 0, hwm = 100000;
    int64_t max = (int64_t)WD_MSG_MAX_FRAME;
    zmq_setsockopt(l->sock, ZMQ_ROUTER_MANDATORY, &one, sizeof(one));
    zmq_setsockopt(l->sock, ZMQ_LINGER, &zero, sizeof(zero));
    zmq_setsockopt(l->sock, ZMQ_MAXMSGSIZE, &max, sizeof(max));
    /* Token chunks of every running request pass here: the default 1000 would drop. */
    zmq_setsockopt(l->sock, ZMQ_SNDHWM, &hwm, sizeof(hwm));
    zmq_setsockopt(l->sock, ZMQ_RCVHWM, &hwm, sizeof(hwm));
    char ep[300];
    if (port)
        snprintf(ep, sizeof(ep), "tcp://%s:%d", host, port);
    else
        snprintf(ep, sizeof(ep), "tcp://%s:*", host);
    if (zmq_bind(l->sock, ep) != 0) {
        int e = errno;
        wd_worker_link_destroy(l);
        return wd_error_set(err, WD_ERR_IO, "worker link: cannot bind %s: %s", ep, zmq_strerror(e));
    }
    char last[300];
    size_t n = sizeof(last);
    zmq_getsockopt(l->sock, ZMQ_LAST_ENDPOINT, last, &n);
    const char *colon = strrchr(last, ':');
    l->port = colon ? atoi(colon + 1) : port;
    *l_p = l;
    return WD_OK;
}

void wd_worker_link_destroy(struct wd_worker_link *l)
{
    if (!l)
        return;
    if (l->sock)
        zmq_close(l->sock);
    if (l->ctx)
        zmq_ctx_term(l->ctx);
    free(l);
}

void *wd_worker_link_socket(struct wd_worker_link *l)
{
    return l->sock;
}

int wd_worker_link_port(const struct wd_worker_link *l)
{
    return l->port;
}

static int more(void *sock)
{
    int m = 0;
    size_t n = sizeof(m);
    zmq_getsockopt(sock, ZMQ_RCVMORE, &m, &n);
    return m;
}

static void drain_rest(void *sock)
{
    while (more(sock)) {
        zmq_msg_t part;
        zmq_msg_init(&part);
        zmq_msg_recv(&part, sock, ZMQ_DONTWAIT);
        zmq_msg_close(&part);
    }
}

enum wd_status wd_worker_link_recv(struct wd_worker_link *l, unsigned char *route,
                                   size_t *route_len, struct wd_msg *m, struct wd_error *err)
{
    zmq_msg_t id, frame;
    zmq_msg_init(&id);
    if (zmq_msg_recv(&id, l->sock, ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(&id);
        return WD_ERR_TIMEOUT;
    }
    size_t n = zmq_msg_size(&id);
    *route_len = n <= WD_LINK_ROUTE_MAX ? n : 0;
    memcpy(route, zmq_msg_data(&id), *route_len);
    zmq_msg_close(&id);
    if (!more(l->sock))
        return wd_error_set(err, WD_ERR_FORMAT, "a message with no frame after the routing id");
    zmq_msg_init(&frame);
    int got = zmq_msg_recv(&frame, l->sock, ZMQ_DONTWAIT);
    if (got == 0 && more(l->sock)) { /* the REQ-style empty delimiter */
        zmq_msg_close(&frame);
        zmq_msg_init(&frame);
        got = zmq_msg_recv(&frame, l->sock, ZMQ_DONTWAIT);
    }
    enum wd_status st;
    if (got < 0) {
        st = wd_error_set(err, WD_ERR_FORMAT, "a truncated message");
    } else if (more(l->sock)) {
        drain_rest(l->sock);
        st = wd_error_set(err, WD_ERR_FORMAT, "a message of more than one frame");
    } else {
        st = wd_msg_decode(zmq_msg_data(&frame), zmq_msg_size(&frame), m, err);
    }
    zmq_msg_close(&frame);
    return st;
}

enum wd_status wd_worker_link_send(struct wd_worker_link *l, const unsigned char *route,
                                   size_t route_len, const struct wd_msg *m, struct wd_error *err)
{
    void *buf = NULL;
    size_t len = 0;
    WD_CHECK(wd_msg_encode(m, &buf, &len, err));
    enum wd_status st = WD_OK;
    if (zmq_send(l->sock, route, route_len, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0 ||
        zmq_send(l->sock, buf, len, ZMQ_DONTWAIT) < 0)
        st = wd_error_set(err, WD_ERR_PEER, "send %s: %s", wd_msg_kind_str(m->kind),
                          zmq_strerror(errno));
    free(buf);
    return st;
}
