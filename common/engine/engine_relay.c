/* Node-to-node relay of engine commands and events over ZeroMQ. */
#include "common/engine/engine_relay.h"

#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "common/util/log.h"

/* Largest relay frame: a command carrying a prompt of WD_ENGINE_MAX_PROMPT tokens. */
#define RELAY_MAX_FRAME ((size_t)20 << 20)

struct wd_engine_relay {
    const struct wd_layout *layout;
    void *ctx, *sock;
    int is_root;
    uint8_t *ready; /* [nnodes] node 0: hello seen */
    zmq_msg_t msg;  /* the last received message (payload points into it) */
    int has_msg;
    uint8_t *buf; /* send staging */
    size_t buf_cap;
};

/* ZeroMQ binds to an address, not a name: resolve the --dist-init-addr host once. */
static enum wd_status resolve(const char *host, char *ip, size_t cap, struct wd_error *err)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
    int rc = getaddrinfo(host, NULL, &hints, &res);
    if (rc != 0 || !res)
        return wd_error_set(err, WD_ERR_IO, "relay: cannot resolve %s: %s", host, gai_strerror(rc));
    rc = getnameinfo(res->ai_addr, res->ai_addrlen, ip, (socklen_t)cap, NULL, 0, NI_NUMERICHOST);
    int v6 = res->ai_family == AF_INET6;
    freeaddrinfo(res);
    if (rc != 0)
        return wd_error_set(err, WD_ERR_IO, "relay: cannot resolve %s", host);
    if (v6) {
        char tmp[128];
        snprintf(tmp, sizeof(tmp), "[%s]", ip);
        snprintf(ip, cap, "%s", tmp);
    }
    return WD_OK;
}

enum wd_status wd_engine_relay_create(const struct wd_layout *layout, struct wd_engine_relay **r_p,
                                      struct wd_error *err)
{
    struct wd_engine_relay *r = calloc(1, sizeof(*r));
    if (!r)
        return wd_error_set(err, WD_ERR_NOMEM, "relay: out of memory");
    r->layout = layout;
    r->is_root = layout->node_rank == 0;
    r->ready = calloc((size_t)layout->nnodes, 1);
    r->ctx = zmq_ctx_new();
    enum wd_status st =
        r->ready && r->ctx ? WD_OK : wd_error_set(err, WD_ERR_NOMEM, "relay: out of memory");
    char ip[160], ep[256];
    if (st == WD_OK)
        st = resolve(layout->dist_init_host, ip, sizeof(ip), err);
    if (st == WD_OK) {
        r->sock = zmq_socket(r->ctx, r->is_root ? ZMQ_ROUTER : ZMQ_DEALER);
        int zero = 0, one = 1, v6 = ip[0] == '[';
        int64_t max = (int64_t)RELAY_MAX_FRAME + 64;
        zmq_setsockopt(r->sock, ZMQ_LINGER, &zero, sizeof(zero));
        zmq_setsockopt(r->sock, ZMQ_MAXMSGSIZE, &max, sizeof(max));
        zmq_setsockopt(r->sock, ZMQ_IPV6, &v6, sizeof(v6));
        /* Unbounded queues: a relay must never drop a command or a token. */
        zmq_setsockopt(r->sock, ZMQ_SNDHWM, &zero, sizeof(zero));
        zmq_setsockopt(r->sock, ZMQ_RCVHWM, &zero, sizeof(zero));
        snprintf(ep, sizeof(ep), "tcp://%s:%d", ip, layout->dist_init_port + 1);
        if (r->is_root) {
            zmq_setsockopt(r->sock, ZMQ_ROUTER_MANDATORY, &one, sizeof(one));
            if (zmq_bind(r->sock, ep) != 0)
                st = wd_error_set(err, WD_ERR_IO, "relay: bind %s: %s", ep,
                                  zmq_strerror(zmq_errno()));
        } else {
            char id[32];
            snprintf(id, sizeof(id), "node%d", layout->node_rank);
            zmq_setsockopt(r->sock, ZMQ_ROUTING_ID, id, strlen(id));
            if (zmq_connect(r->sock, ep) != 0)
                st = wd_error_set(err, WD_ERR_IO, "relay: connect %s: %s", ep,
                                  zmq_strerror(zmq_errno()));
            else
                st = wd_engine_relay_send(r, 0, WD_RELAY_HELLO, (uint32_t)layout->node_rank, NULL,
                                          0, NULL, 0) == WD_OK
                         ? WD_OK
                         : wd_error_set(err, WD_ERR_IO, "relay: cannot greet node 0");
        }
    }
    if (st != WD_OK) {
        wd_engine_relay_destroy(r);
        return st;
    }
    wd_log(WD_LOG_INFO, "relay", "node %d %s %s", layout->node_rank,
           r->is_root ? "relays other nodes on" : "relays through", ep);
    *r_p = r;
    return WD_OK;
}

void wd_engine_relay_destroy(struct wd_engine_relay *r)
{
    if (!r)
        return;
    if (r->has_msg)
        zmq_msg_close(&r->msg);
    if (r->sock)
        zmq_close(r->sock);
    if (r->ctx)
        zmq_ctx_term(r->ctx);
    free(r->ready);
    free(r->buf);
    free(r);
}

int wd_engine_relay_fd(const struct wd_engine_relay *r)
{
    int fd = -1;
    size_t len = sizeof(fd);
    zmq_getsockopt(r->sock, ZMQ_FD, &fd, &len);
    return fd;
}

int wd_engine_relay_node_ready(const struct wd_engine_relay *r, int node)
{
    return node > 0 && node < r->layout->nnodes && r->ready[node];
}

enum wd_status wd_engine_relay_send(struct wd_engine_relay *r, int node, uint32_t type, uint32_t dp,
                                    const void *a, size_t a_len, const void *b, size_t b_len)
{
    size_t len = 8 + a_len + b_len;
    if (len > RELAY_MAX_FRAME)
        return WD_ERR_INVALID;
    if (len > r->buf_cap) {
        uint8_t *bigger = realloc(r->buf, len);
        if (!bigger)
            return WD_ERR_NOMEM;
        r->buf = bigger;
        r->buf_cap = len;
    }
    memcpy(r->buf, &type, 4);
    memcpy(r->buf + 4, &dp, 4);
    if (a_len)
        memcpy(r->buf + 8, a, a_len);
    if (b_len)
        memcpy(r->buf + 8 + a_len, b, b_len);
    if (r->is_root) {
        if (!wd_engine_relay_node_ready(r, node))
            return WD_ERR_NOMEM;
        char id[32];
        snprintf(id, sizeof(id), "node%d", node);
        if (zmq_send(r->sock, id, strlen(id), ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0)
            return WD_ERR_NOMEM;
    }
    if (zmq_send(r->sock, r->buf, len, ZMQ_DONTWAIT) < 0)
        return WD_ERR_NOMEM;
    return WD_OK;
}

/* Node 0: the node a routing id names, or -1. */
static int node_of_id(const struct wd_engine_relay *r, const char *id, size_t len)
{
    char tmp[32];
    if (len < 5 || len >= sizeof(tmp))
        return -1;
    memcpy(tmp, id, len);
    tmp[len] = 0;
    char *end;
    long n = strtol(tmp + 4, &end, 10);
    if (strncmp(tmp, "node", 4) != 0 || *end || n <= 0 || n >= r->layout->nnodes)
        return -1;
    return (int)n;
}

int wd_engine_relay_recv(struct wd_engine_relay *r, uint32_t *type_p, uint32_t *dp_p, int *node_p,
                         const uint8_t **payload_p, size_t *len_p)
{
    for (;;) {
        if (r->has_msg) {
            zmq_msg_close(&r->msg);
            r->has_msg = 0;
        }
        int node = 0;
        if (r->is_root) {
            zmq_msg_t id;
            zmq_msg_init(&id);
            if (zmq_msg_recv(&id, r->sock, ZMQ_DONTWAIT) < 0) {
                zmq_msg_close(&id);
                return 0;
            }
            node = node_of_id(r, zmq_msg_data(&id), zmq_msg_size(&id));
            zmq_msg_close(&id);
        }
        zmq_msg_init(&r->msg);
        r->has_msg = 1;
        if (zmq_msg_recv(&r->msg, r->sock, ZMQ_DONTWAIT) < 0)
            return 0;
        /* One frame per message: drop any further parts a confused peer sent. */
        int more = 0;
        size_t more_len = sizeof(more);
        while (zmq_getsockopt(r->sock, ZMQ_RCVMORE, &more, &more_len) == 0 && more) {
            zmq_msg_t extra;
            zmq_msg_init(&extra);
            zmq_msg_recv(&extra, r->sock, ZMQ_DONTWAIT);
            zmq_msg_close(&extra);
            node = -1;
        }
        size_t len = zmq_msg_size(&r->msg);
        const uint8_t *p = zmq_msg_data(&r->msg);
        uint32_t type = 0, dp = 0;
        if (len >= 8) {
            memcpy(&type, p, 4);
            memcpy(&dp, p + 4, 4);
        }
        int ok = len >= 8 && node >= 0 && type >= WD_RELAY_HELLO && type <= WD_RELAY_FINISH &&
                 (type == WD_RELAY_HELLO || type == WD_RELAY_FINISH ||
                  dp < (uint32_t)r->layout->attn_dp_size);
        if (ok && r->is_root && type == WD_RELAY_HELLO)
            ok = dp == (uint32_t)node;
        if (!ok) {
            wd_log(WD_LOG_ERROR, "relay", "dropped a malformed frame of %zu bytes", len);
            continue;
        }
        if (r->is_root && type == WD_RELAY_HELLO) {
            r->ready[node] = 1;
            wd_log(WD_LOG_INFO, "relay", "node %d joined", node);
        }
        *type_p = type;
        *dp_p = dp;
        *node_p = node;
        *payload_p = p + 8;
        *len_p = len - 8;
        return 1;
    }
}
