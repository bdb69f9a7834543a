/*
 * wd_transport: the one data-movement contract between the ranks of a group.
 *
 * Every rank of a group exposes one symmetric window (the same size on every
 * rank, registered once at start-up). A rank writes bytes into a peer's window
 * with put(), then bumps a 64-bit signal word in the peer's window with
 * signal(); the peer waits for the word to reach a value. A signal is ordered
 * after every earlier put from the same rank to the same peer, so "data, then
 * signal" is the only synchronisation the protocols above need. Signal words
 * only grow (each use waits for a higher target than the last), so nothing is
 * ever reset between rounds and a late reader cannot see a stale zero.
 *
 * Executors: shm (ranks of one node map each other's windows: put is a memcpy,
 * the NVLink analogue) and ucx (RMA put + atomic add into the registered peer
 * window: the RDMA analogue). An in-process executor (ranks as threads sharing
 * one address space) serves the protocol unit tests. Dispatch/combine and the
 * collectives are written once against this interface.
 *
 * Waits take a timeout; on expiry they fail with WD_ERR_TIMEOUT and a message
 * naming the peer rank whose signal did not arrive. A transport whose peer is
 * known dead fails every call involving that peer with WD_ERR_PEER.
 * Threading: one thread per rank drives its transport.
 */
#ifndef WD_COMM_TRANSPORT_H
#define WD_COMM_TRANSPORT_H

#include <stddef.h>
#include <stdint.h>

#include "common/util/status.h"

struct wd_transport;

struct wd_transport_ops {
    /* Copies len bytes from local src into peer's window at dst_off. May return before the
     * bytes land; they are visible to the peer once a later signal to it is. */
    enum wd_status (*put)(struct wd_transport *t, int peer, size_t dst_off, const void *src,
                          size_t len, struct wd_error *err);
    /* Adds add to the u64 at sig_off (8-byte aligned) in peer's window, after all earlier
     * puts to peer. */
    enum wd_status (*signal)(struct wd_transport *t, int peer, size_t sig_off, uint64_t add,
                             struct wd_error *err);
    /* Waits until the u64 at sig_off of this rank's own window is >= target. from_peer
     * names the rank expected to write it, for the timeout message. */
    enum wd_status (*wait)(struct wd_transport *t, size_t sig_off, uint64_t target, int from_peer,
                           int timeout_ms, struct wd_error *err);
    /* Direct load/store pointer to peer's window when the executor shares memory (shm,
     * in-process), else NULL. Protocols may use it as a fast path, never for correctness. */
    void *(*peer_window)(struct wd_transport *t, int peer);
    void (*destroy)(struct wd_transport *t);
};

struct wd_transport {
    const struct wd_transport_ops *ops;
    int rank, n_ranks;
    uint8_t *window;     /* this rank's symmetric window */
    size_t window_bytes; /* the same on every rank */
    const char *kind;    /* "shm", "ucx", "inproc" */
    void *impl;
};

/* Thin dispatchers to t->ops (see the ops above for each one's contract). */
enum wd_status wd_transport_put(struct wd_transport *t, int peer, size_t dst_off, const void *src,
                                size_t len, struct wd_error *err);
enum wd_status wd_transport_signal(struct wd_transport *t, int peer, size_t sig_off, uint64_t add,
                                   struct wd_error *err);
enum wd_status wd_transport_wait(struct wd_transport *t, size_t sig_off, uint64_t target,
                                 int from_peer, int timeout_ms, struct wd_error *err);
void wd_transport_destroy(struct wd_transport *t); /* NULL-safe */

#endif
