/*
 * wd_engine_relay: the link between the front-ends of one instance's nodes. Node 0's
 * front-end is the instance's only control endpoint; the attention-DP groups whose leaders
 * run on other nodes are reached through their node's front-end, which only relays:
 * commands go node 0 -> node k and into node k's local links, events and DP load go back.
 *
 * ZeroMQ: node 0 binds a ROUTER on the --dist-init-addr host at the rendezvous port + 1
 * (every node already knows that address; SGLang derives its side ports the same way),
 * node k connects a DEALER whose routing id names it. One frame per message:
 * [u32 type][u32 dp][payload]. Frames are checked (size, type, node, DP rank) before use.
 * Not thread-safe: owned by the host's driver thread.
 */
#ifndef WD_ENGINE_RELAY_H
#define WD_ENGINE_RELAY_H

#include <stddef.h>
#include <stdint.h>

#include "common/layout/layout.h"
#include "common/util/status.h"

enum wd_relay_type {
    WD_RELAY_HELLO = 1, /* node k -> 0: I am up (dp = node rank) */
    WD_RELAY_CMD,       /* 0 -> k: an engine command for DP rank dp */
    WD_RELAY_EVENT,     /* k -> 0: an engine event of DP rank dp */
    WD_RELAY_STATS,     /* k -> 0: struct wd_engine_stats of DP rank dp */
    WD_RELAY_FINISH,    /* 0 -> k: no more commands; exit once idle */
};

struct wd_engine_relay;

/* Node 0 binds, other nodes connect (to the layout's --dist-init-addr host). */
enum wd_status wd_engine_relay_create(const struct wd_layout *layout, struct wd_engine_relay **r_p,
                                      struct wd_error *err);
void wd_engine_relay_destroy(struct wd_engine_relay *r); /* NULL-safe */
/* An fd that becomes readable when frames may be waiting (edge-triggered: drain with recv
 * until it returns 0). */
int wd_engine_relay_fd(const struct wd_engine_relay *r);
/* Node 0: whether node k has said hello (frames to it can be sent). */
int wd_engine_relay_node_ready(const struct wd_engine_relay *r, int node);
/* Sends a frame to node `node` (node 0 side) or to node 0 (other nodes: node ignored).
 * The payload is a followed by b. WD_ERR_NOMEM when it cannot go now (queue and retry). */
enum wd_status wd_engine_relay_send(struct wd_engine_relay *r, int node, uint32_t type, uint32_t dp,
                                    const void *a, size_t a_len, const void *b, size_t b_len);
/* Receives one checked frame without waiting: returns 1 and its fields (payload valid until
 * the next call), 0 when nothing is waiting. Malformed frames are dropped with a log line. */
int wd_engine_relay_recv(struct wd_engine_relay *r, uint32_t *type_p, uint32_t *dp_p, int *node_p,
                         const uint8_t **payload_p, size_t *len_p);

#endif
