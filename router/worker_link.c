/* The ROUTER socket: a ZeroMQ context of its own and common/net's zsock helpers. */
#include "router/worker_link.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "common/net/zsock.h"

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
    if (!l->ctx) {
        free(l);
        return wd_error_set(err, WD_ERR_IO, "worker link: zmq_ctx_new failed");
    }
    char ep[300], bound[300];
    if (port)
        snprintf(ep, sizeof(ep), "tcp://%s:%d", host, port);
    else
        snprintf(ep, sizeof(ep), "tcp://%s:*", host);
    enum wd_status st = wd_zsock_router_bind(l->ctx, ep, &l->sock, bound, sizeof(bound), err);
    if (st != WD_OK) {
        wd_worker_link_destroy(l);
        return st;
    }
    const char *colon = strrchr(bound, ':');
    l->port = colon ? atoi(colon + 1) : port;
    *l_p = l;
    return WD_OK;
}

void wd_worker_link_destroy(struct wd_worker_link *l)
{
    if (!l)
        return;
    wd_zsock_close(l->sock);
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

enum wd_status wd_worker_link_recv(struct wd_worker_link *l, unsigned char *route,
                                   size_t *route_len, struct wd_msg *m, struct wd_error *err)
{
    struct wd_zsock_peer peer = {0};
    enum wd_status st = wd_zsock_recv_from(l->sock, 0, &peer, m, err);
    memcpy(route, peer.id, peer.len);
    *route_len = peer.len;
    return st;
}

enum wd_status wd_worker_link_send(struct wd_worker_link *l, const unsigned char *route,
                                   size_t route_len, const struct wd_msg *m, struct wd_error *err)
{
    struct wd_zsock_peer peer;
    peer.len = route_len <= WD_ZSOCK_PEER_CAP ? route_len : WD_ZSOCK_PEER_CAP;
    memcpy(peer.id, route, peer.len);
    return wd_zsock_send_to(l->sock, &peer, m, err);
}
