/*
 * wd_zsock: the control plane's ZeroMQ sockets. The router binds one ROUTER socket; each
 * worker front-end connects one DEALER whose routing id is its instance id. One wd_msg
 * travels as one ZeroMQ message (on the ROUTER, after the peer's routing-id frame).
 *
 * Sockets are plain libzmq sockets (void *) created on the caller's context, so a caller
 * can zmq_poll them beside its other descriptors; wd_zsock only sets their options and
 * moves messages. Sends never block (ZMQ_DONTWAIT): a full queue or a vanished peer is
 * WD_ERR_PEER for that message, and the server keeps going. A frame that does not decode
 * is answered with an Error to its sender (or dropped when no answer is possible) with
 * exactly one log line, and never reaches the caller as a message.
 * Threading: a ZeroMQ socket belongs to one thread; these functions add no locking.
 */
#ifndef WD_NET_ZSOCK_H
#define WD_NET_ZSOCK_H

#include <stddef.h>
#include <stdint.h>

#include "common/net/msg.h"
#include "common/util/status.h"

/* ZeroMQ's routing-id limit. */
#define WD_ZSOCK_PEER_CAP 255

/* Who sent a message to a ROUTER: the DEALER's routing id (a worker's instance id). */
struct wd_zsock_peer {
    size_t len;
    uint8_t id[WD_ZSOCK_PEER_CAP];
};

/* Creates a ROUTER on ctx with the options of zsock.c and binds it to endpoint (e.g.
 * "tcp://0.0.0.0:5570", or "tcp://127.0.0.1:*" for a port the kernel picks). When bound is
 * not NULL it receives the endpoint actually bound (ZMQ_LAST_ENDPOINT, with the port).
 * WD_ERR_IO names the endpoint and libzmq's reason when the bind fails. The caller closes
 * the socket with wd_zsock_close. */
enum wd_status wd_zsock_router_bind(void *ctx, const char *endpoint, void **sock_p, char *bound,
                                    size_t bound_cap, struct wd_error *err);

/* Creates a DEALER on ctx whose routing id is identity (a worker's instance id: printable
 * ASCII, no spaces, under WD_MSG_ID_CAP bytes; WD_ERR_INVALID otherwise) and connects it to
 * endpoint. The connection is made in the background and remade after any loss: connect
 * succeeds before the router is up, and sends fail with WD_ERR_PEER until the connection
 * exists (ZMQ_IMMEDIATE; the registration loop simply retries). */
enum wd_status wd_zsock_dealer_connect(void *ctx, const char *endpoint, const char *identity,
                                       void **sock_p, struct wd_error *err);

/* Closes a socket made here; anything unsent is discarded at once (linger 0). NULL-safe. */
void wd_zsock_close(void *sock);
/* Closes, giving messages still queued up to linger_ms to leave (at shutdown: the last
 * errors and releases a peer waits for; the context's termination waits that long). */
void wd_zsock_close_linger(void *sock, int linger_ms);

/* DEALER: encodes m and queues it to the router. WD_ERR_INVALID when m breaks a rule of
 * wd_msg_validate; WD_ERR_PEER when not connected or the send queue is full; WD_ERR_IO on
 * any other libzmq error. Never blocks. */
enum wd_status wd_zsock_send(void *sock, const struct wd_msg *m, struct wd_error *err);

/* ROUTER: the same, to one peer. WD_ERR_PEER when that peer is not connected (any more) or
 * its queue is full. */
enum wd_status wd_zsock_send_to(void *sock, const struct wd_zsock_peer *peer,
                                const struct wd_msg *m, struct wd_error *err);

/* DEALER: waits up to timeout_ms (0: only what is queued now; -1: forever) for one message
 * and decodes it into m (free with wd_msg_free). WD_ERR_TIMEOUT when none came (also when a
 * signal interrupted the wait, so a loop can check its stop flag). A frame that does not
 * decode was answered (an Error back to the sender) and logged once here; it returns
 * the decode status (WD_ERR_FORMAT or WD_ERR_UNSUPPORTED) with m empty, and the caller just
 * goes on. WD_ERR_IO when the socket or context fails. */
enum wd_status wd_zsock_recv(void *sock, int timeout_ms, struct wd_msg *m, struct wd_error *err);

/* ROUTER: the same, also writing the sender into *peer (on WD_OK and on a refused frame). */
enum wd_status wd_zsock_recv_from(void *sock, int timeout_ms, struct wd_zsock_peer *peer,
                                  struct wd_msg *m, struct wd_error *err);

/* The peer's routing id for logs: as is when printable, else "0x" and hex; cut to cap.
 * Returns buf. */
const char *wd_zsock_peer_str(const struct wd_zsock_peer *peer, char *buf, size_t cap);

#endif
