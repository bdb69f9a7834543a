/*
 * wd_worker_link: the router's ZeroMQ ROUTER socket that workers' DEALER sockets connect
 * to, on a ZeroMQ context of its own, through common/net's zsock helpers (one wd_msg per
 * message after the peer's routing id, which workers set to their instance id; a send to a
 * peer that is gone fails at once with WD_ERR_PEER; a frame that does not decode is
 * answered with an Error and logged once by zsock). Non-blocking throughout: the router
 * polls the socket (wd_worker_link_socket) in its event loop. One thread.
 */
#ifndef WD_ROUTER_WORKER_LINK_H
#define WD_ROUTER_WORKER_LINK_H

#include <stddef.h>

#include "common/net/msg.h"
#include "common/util/status.h"

#define WD_LINK_ROUTE_MAX 255 /* ZeroMQ routing ids are 1..255 bytes */

struct wd_worker_link;

/* Binds tcp://host:port (port 0: any free port). */
enum wd_status wd_worker_link_create(const char *host, int port, struct wd_worker_link **l_p,
                                     struct wd_error *err);
void wd_worker_link_destroy(struct wd_worker_link *l);

void *wd_worker_link_socket(struct wd_worker_link *l);
int wd_worker_link_port(const struct wd_worker_link *l);

/* Receives one message without blocking. WD_OK: *m decoded (free with wd_msg_free) and
 * route/route_len hold the sender. WD_ERR_TIMEOUT: nothing waiting. WD_ERR_FORMAT /
 * WD_ERR_UNSUPPORTED: a frame that did not decode (already answered and logged; err says
 * why, route names the sender). */
enum wd_status wd_worker_link_recv(struct wd_worker_link *l, unsigned char *route,
                                   size_t *route_len, struct wd_msg *m, struct wd_error *err);

/* Encodes and sends m to the peer. WD_ERR_PEER: the peer is not connected (or its queue is
 * full); WD_ERR_INVALID: m breaks a protocol rule (a router bug, err says which). */
enum wd_status wd_worker_link_send(struct wd_worker_link *l, const unsigned char *route,
                                   size_t route_len, const struct wd_msg *m, struct wd_error *err);

#endif
