/*
 * ZeroMQ plumbing of the control plane: socket options chosen for a server that runs for
 * weeks, one wd_msg per ZeroMQ message, and the refusal of frames that do not decode
 * (an Error back to the sender, one log line). Owns no state beyond the sockets it creates
 * for the caller; see zsock.h for the threading rule.
 */
#include "common/net/zsock.h"

#include <errno.h>
#include <string.h>
#include <zmq.h>

#include "common/util/log.h"

struct sockopt {
    int name;
    int value;
};

/* Both kinds of socket. */
static const struct sockopt common_opts[] = {
    /* Close drops unsent messages at once: the default (-1) makes zmq_ctx_term wait forever
     * for a peer that is gone, hanging shutdown. Whatever was unsent is failed upstream. */
    {ZMQ_LINGER, 0},
    /* Queue bounds in messages per peer. Token chunks are the busiest traffic (one per
     * running request per step): 65536 absorbs seconds of a stalled reader at thousands of
     * requests, and beyond it sends fail fast (WD_ERR_PEER) instead of growing memory. */
    {ZMQ_SNDHWM, 65536},
    {ZMQ_RCVHWM, 65536},
    /* ZMTP heartbeats: a peer whose host vanished without a FIN/RST (power loss, a network
     * partition) is disconnected after 10 s of silence instead of TCP's ~15 min
     * retransmission timeout, so the DEALER reconnects and the ROUTER's sends to it fail. */
    {ZMQ_HEARTBEAT_IVL, 2000},
    {ZMQ_HEARTBEAT_TIMEOUT, 10000},
    /* TCP keepalive keeps idle connections alive through NAT and conntrack tables
     * (Kubernetes, cloud load balancers) that forget flows after minutes of silence, and is
     * a second, kernel-level detector of dead hosts. */
    {ZMQ_TCP_KEEPALIVE, 1},
    {ZMQ_TCP_KEEPALIVE_IDLE, 30},
    {ZMQ_TCP_KEEPALIVE_INTVL, 10},
    {ZMQ_TCP_KEEPALIVE_CNT, 3},
};

static const struct sockopt router_opts[] = {
    /* A restarted worker connects with its old instance id while the router still holds
     * the dead connection: handover gives the id to the new connection (the default
     * refuses it, and the worker could never be reached again). */
    {ZMQ_ROUTER_HANDOVER, 1},
    /* A send to an unknown or vanished peer fails (EHOSTUNREACH) instead of being dropped
     * silently, so the router fails that request at once. With DONTWAIT a full peer
     * queue is EAGAIN instead of a silent drop too. */
    {ZMQ_ROUTER_MANDATORY, 1},
};

static const struct sockopt dealer_opts[] = {
    /* Messages are queued only on a live connection: while the router is down a send
     * fails (and the registration loop retries) rather than piling up stale heartbeats and
     * token chunks that would burst into a restarted router. */
    {ZMQ_IMMEDIATE, 1},
    /* Reconnect after 100 ms, backing off to 5 s while the router stays down, so a fleet
     * of waiting workers does not hammer it at 10 Hz each. */
    {ZMQ_RECONNECT_IVL, 100},
    {ZMQ_RECONNECT_IVL_MAX, 5000},
};

static enum wd_status zmq_fail(struct wd_error *err, const char *what)
{
    return wd_error_set(err, WD_ERR_IO, "%s: %s", what, zmq_strerror(zmq_errno()));
}

static enum wd_status set_opts(void *sock, const struct sockopt *opts, size_t n,
                               struct wd_error *err)
{
    for (size_t i = 0; i < n; i++)
        if (zmq_setsockopt(sock, opts[i].name, &opts[i].value, sizeof(opts[i].value)) != 0)
            return wd_error_set(err, WD_ERR_IO, "zmq_setsockopt(%d): %s", opts[i].name,
                                zmq_strerror(zmq_errno()));
    return WD_OK;
}

/* A socket of type with the common options, and the frame cap enforced by libzmq itself:
 * a larger inbound message disconnects its sender before it is buffered. */
static enum wd_status make_socket(void *ctx, int type, const struct sockopt *opts, size_t n,
                                  void **sock_p, struct wd_error *err)
{
    void *sock = zmq_socket(ctx, type);
    if (!sock)
        return zmq_fail(err, "zmq_socket");
    int64_t max_size = (int64_t)WD_MSG_MAX_FRAME;
    enum wd_status st =
        set_opts(sock, common_opts, sizeof(common_opts) / sizeof(common_opts[0]), err);
    if (st == WD_OK)
        st = set_opts(sock, opts, n, err);
    if (st == WD_OK && zmq_setsockopt(sock, ZMQ_MAXMSGSIZE, &max_size, sizeof(max_size)) != 0)
        st = zmq_fail(err, "zmq_setsockopt(ZMQ_MAXMSGSIZE)");
    if (st != WD_OK) {
        zmq_close(sock);
        return st;
    }
    *sock_p = sock;
    return WD_OK;
}

enum wd_status wd_zsock_router_bind(void *ctx, const char *endpoint, void **sock_p, char *bound,
                                    size_t bound_cap, struct wd_error *err)
{
    void *sock;
    WD_CHECK(make_socket(ctx, ZMQ_ROUTER, router_opts, sizeof(router_opts) / sizeof(router_opts[0]),
                         &sock, err));
    if (zmq_bind(sock, endpoint) != 0) {
        wd_error_set(err, WD_ERR_IO, "cannot bind %s: %s", endpoint, zmq_strerror(zmq_errno()));
        zmq_close(sock);
        return WD_ERR_IO;
    }
    if (bound && bound_cap) {
        size_t len = bound_cap;
        if (zmq_getsockopt(sock, ZMQ_LAST_ENDPOINT, bound, &len) != 0) {
            wd_error_set(err, WD_ERR_IO, "bound %s but cannot read the endpoint back: %s", endpoint,
                         zmq_strerror(zmq_errno()));
            zmq_close(sock);
            return WD_ERR_IO;
        }
    }
    *sock_p = sock;
    return WD_OK;
}

enum wd_status wd_zsock_dealer_connect(void *ctx, const char *endpoint, const char *identity,
                                       void **sock_p, struct wd_error *err)
{
    size_t len = strlen(identity);
    if (len == 0 || len >= WD_MSG_ID_CAP)
        return wd_error_set(err, WD_ERR_INVALID, "instance id \"%s\" must have 1..%d bytes",
                            identity, WD_MSG_ID_CAP - 1);
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)identity[i] <= 0x20 || (unsigned char)identity[i] >= 0x7f)
            return wd_error_set(err, WD_ERR_INVALID,
                                "instance id \"%s\" must be printable ASCII without spaces",
                                identity);
    void *sock;
    WD_CHECK(make_socket(ctx, ZMQ_DEALER, dealer_opts, sizeof(dealer_opts) / sizeof(dealer_opts[0]),
                         &sock, err));
    if (zmq_setsockopt(sock, ZMQ_ROUTING_ID, identity, len) != 0) {
        zmq_fail(err, "zmq_setsockopt(ZMQ_ROUTING_ID)");
        zmq_close(sock);
        return WD_ERR_IO;
    }
    if (zmq_connect(sock, endpoint) != 0) {
        wd_error_set(err, WD_ERR_IO, "cannot connect to %s: %s", endpoint,
                     zmq_strerror(zmq_errno()));
        zmq_close(sock);
        return WD_ERR_IO;
    }
    *sock_p = sock;
    return WD_OK;
}

void wd_zsock_close(void *sock)
{
    if (sock)
        zmq_close(sock);
}

void wd_zsock_close_linger(void *sock, int linger_ms)
{
    if (sock) {
        zmq_setsockopt(sock, ZMQ_LINGER, &linger_ms, sizeof(linger_ms));
        zmq_close(sock);
    }
}

const char *wd_zsock_peer_str(const struct wd_zsock_peer *peer, char *buf, size_t cap)
{
    if (!cap)
        return buf;
    int is_printable = peer->len > 0;
    for (size_t i = 0; i < peer->len; i++)
        is_printable &= peer->id[i] > 0x20 && peer->id[i] < 0x7f;
    size_t o = 0;
    if (is_printable) {
        o = peer->len < cap - 1 ? peer->len : cap - 1;
        memcpy(buf, peer->id, o);
    } else {
        o = (size_t)snprintf(buf, cap, "0x");
        for (size_t i = 0; i < peer->len && o + 2 < cap; i++)
            o += (size_t)snprintf(buf + o, cap - o, "%02x", peer->id[i]);
        o = o < cap ? o : cap - 1;
    }
    buf[o] = '\0';
    return buf;
}

/* ---- send ---- */

static void free_frame(void *data, void *hint)
{
    free(data);
}

static enum wd_status send_error(const char *to, struct wd_error *err)
{
    int e = zmq_errno();
    if (e == EHOSTUNREACH)
        return wd_error_set(err, WD_ERR_PEER, "%s is not connected", to);
    if (e == EAGAIN)
        return wd_error_set(err, WD_ERR_PEER, "%s: not connected or its send queue is full", to);
    return wd_error_set(err, WD_ERR_IO, "send to %s: %s", to, zmq_strerror(e));
}

/* One message: [peer routing id,] payload. The payload buffer moves into libzmq (freed by
 * free_frame once sent), so a large prompt is not copied again. */
static enum wd_status send_msg(void *sock, const struct wd_zsock_peer *peer, const struct wd_msg *m,
                               struct wd_error *err)
{
    void *buf;
    size_t len;
    WD_CHECK(wd_msg_encode(m, &buf, &len, err));
    char to[2 * WD_ZSOCK_PEER_CAP + 3] = "the router";
    if (peer)
        wd_zsock_peer_str(peer, to, sizeof(to));
    zmq_msg_t msg;
    if (zmq_msg_init_data(&msg, buf, len, free_frame, NULL) != 0) {
        free(buf);
        return zmq_fail(err, "zmq_msg_init_data");
    }
    /* A ROUTER checks the peer on the first frame (EHOSTUNREACH or EAGAIN), and the frames
     * of one message are queued atomically, so nothing half-sent can remain. */
    if ((peer && zmq_send(sock, peer->id, peer->len, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0) ||
        zmq_msg_send(&msg, sock, ZMQ_DONTWAIT) < 0) {
        enum wd_status st = send_error(to, err);
        zmq_msg_close(&msg);
        return st;
    }
    return WD_OK;
}

enum wd_status wd_zsock_send(void *sock, const struct wd_msg *m, struct wd_error *err)
{
    return send_msg(sock, NULL, m, err);
}

enum wd_status wd_zsock_send_to(void *sock, const struct wd_zsock_peer *peer,
                                const struct wd_msg *m, struct wd_error *err)
{
    return send_msg(sock, peer, m, err);
}

/* ---- receive ---- */

/* A frame that did not decode: answer with an Error (request_id 0) naming the cause, unless
 * it was itself an Error (two peers of different versions would bounce Errors forever),
 * and log exactly one line either way. */
static void refuse_frame(void *sock, const struct wd_zsock_peer *peer, const void *buf, size_t len,
                         const struct wd_error *why)
{
    char from[2 * WD_ZSOCK_PEER_CAP + 3] = "the router";
    if (peer)
        wd_zsock_peer_str(peer, from, sizeof(from));
    if (wd_msg_peek_kind(buf, len) == WD_MSG_ERROR) {
        wd_log(WD_LOG_WARN, "net", "dropped an error frame from %s: %s (errors get no reply)", from,
               why->msg);
        return;
    }
    struct wd_msg reply;
    struct wd_error serr = {0};
    wd_msg_init(&reply, WD_MSG_ERROR);
    reply.error.code = why->status;
    snprintf(reply.error.message, sizeof(reply.error.message), "refused frame: %s", why->msg);
    if (send_msg(sock, peer, &reply, &serr) == WD_OK)
        wd_log(WD_LOG_WARN, "net", "refused a frame from %s: %s (error sent back)", from, why->msg);
    else
        wd_log(WD_LOG_WARN, "net", "dropped a frame from %s: %s (no error reply: %s)", from,
               why->msg, serr.msg);
}

/* Discards the rest of a multipart message; returns how many parts were dropped. */
static int drain_parts(void *sock)
{
    int n = 0, more = 1;
    size_t more_len = sizeof(more);
    while (zmq_getsockopt(sock, ZMQ_RCVMORE, &more, &more_len) == 0 && more) {
        zmq_msg_t part;
        zmq_msg_init(&part);
        if (zmq_msg_recv(&part, sock, 0) < 0) {
            zmq_msg_close(&part);
            break;
        }
        zmq_msg_close(&part);
        n++;
    }
    return n;
}

/* Waits for input; 1 when a message is queued, 0 on timeout or a signal, -1 on error. */
static int wait_input(void *sock, int timeout_ms, struct wd_error *err)
{
    if (timeout_ms == 0)
        return 1; /* the DONTWAIT receive says whether something is there */
    zmq_pollitem_t item = {sock, 0, ZMQ_POLLIN, 0};
    int rc = zmq_poll(&item, 1, timeout_ms);
    if (rc < 0 && zmq_errno() == EINTR)
        return 0;
    if (rc < 0) {
        zmq_fail(err, "zmq_poll");
        return -1;
    }
    return rc > 0;
}

static enum wd_status recv_msg(void *sock, int timeout_ms, struct wd_zsock_peer *peer,
                               struct wd_msg *m, struct wd_error *err)
{
    wd_msg_init(m, WD_MSG_NONE);
    int ready = wait_input(sock, timeout_ms, err);
    if (ready < 0)
        return WD_ERR_IO;
    if (ready == 0)
        return wd_error_set(err, WD_ERR_TIMEOUT, "no message within %d ms", timeout_ms);
    zmq_msg_t part;
    zmq_msg_init(&part);
    if (zmq_msg_recv(&part, sock, ZMQ_DONTWAIT) < 0) {
        int e = zmq_errno();
        zmq_msg_close(&part);
        if (e == EAGAIN || e == EINTR)
            return wd_error_set(err, WD_ERR_TIMEOUT, "no message within %d ms", timeout_ms);
        return wd_error_set(err, WD_ERR_IO, "zmq_msg_recv: %s", zmq_strerror(e));
    }
    if (peer) {
        /* A ROUTER prepends the sender's routing id (1..255 bytes) to every message. */
        peer->len =
            zmq_msg_size(&part) < WD_ZSOCK_PEER_CAP ? zmq_msg_size(&part) : WD_ZSOCK_PEER_CAP;
        memcpy(peer->id, zmq_msg_data(&part), peer->len);
        zmq_msg_close(&part);
        zmq_msg_init(&part);
        if (zmq_msg_recv(&part, sock, 0) < 0) {
            zmq_msg_close(&part);
            return zmq_fail(err, "zmq_msg_recv");
        }
    }
    int n_extra = drain_parts(sock);
    struct wd_error why = {0};
    enum wd_status st;
    if (n_extra > 0)
        st = wd_error_set(&why, WD_ERR_FORMAT, "a message of %d parts (one frame expected)",
                          n_extra + 1);
    else
        st = wd_msg_decode(zmq_msg_data(&part), zmq_msg_size(&part), m, &why);
    if (st != WD_OK) {
        refuse_frame(sock, peer, zmq_msg_data(&part), zmq_msg_size(&part), &why);
        if (err)
            *err = why;
    }
    zmq_msg_close(&part);
    return st;
}

enum wd_status wd_zsock_recv(void *sock, int timeout_ms, struct wd_msg *m, struct wd_error *err)
{
    return recv_msg(sock, timeout_ms, NULL, m, err);
}

enum wd_status wd_zsock_recv_from(void *sock, int timeout_ms, struct wd_zsock_peer *peer,
                                  struct wd_msg *m, struct wd_error *err)
{
    return recv_msg(sock, timeout_ms, peer, m, err);
}
