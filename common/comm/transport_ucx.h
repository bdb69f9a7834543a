/*
 * UCX executor of the transport contract (the RDMA analogue): the window is registered
 * with ucp_mem_map, peers are reached through ucp endpoints created from worker
 * addresses, put is ucp_put_nbx into the peer's registered window, signal flushes the
 * endpoint (so every earlier put is complete at the target) and then adds to the peer's
 * signal word with ucp_atomic_op_nbx, wait progresses the worker while it polls the word.
 * Over transports without hardware RMA (tcp, which is what runs in CI and between two
 * "nodes" on one machine) UCX emulates put and add with active messages that the target
 * applies when it progresses, which every wait here does.
 *
 * One struct wd_ucx (context + worker, common/comm/ucx.h) per rank process, shared by all
 * its UCX transports; it is created after fork and never crosses one. Bring-up: create (registers the window),
 * local_info (worker address, window address and packed rkey, to publish), connect each
 * remote peer with its blob. Every blocking step is bounded by op_timeout_ms and fails
 * early with WD_ERR_PEER when the peer is known dead. One thread drives it.
 */
#ifndef WD_COMM_TRANSPORT_UCX_H
#define WD_COMM_TRANSPORT_UCX_H

#include "common/comm/peers.h"
#include "common/comm/transport.h"
#include "common/comm/ucx.h"

/* Registers window (borrowed, window_bytes, must outlive the transport; NULL allocates a
 * zeroed one the transport owns). peers is copied. op_timeout_ms bounds each put/signal. */
enum wd_status wd_transport_ucx_create(struct wd_ucx *u, const struct wd_peers *peers, void *window,
                                       size_t window_bytes, int op_timeout_ms,
                                       struct wd_transport **t_p, struct wd_error *err);
/* This rank's connection blob for peers (malloc'ed; the caller frees it). */
enum wd_status wd_transport_ucx_local_info(struct wd_transport *t, void **blob_p, size_t *len_p,
                                           struct wd_error *err);
/* Connects peer from the blob it published. WD_ERR_FORMAT for a malformed blob. */
enum wd_status wd_transport_ucx_connect(struct wd_transport *t, int peer, const void *blob,
                                        size_t len, struct wd_error *err);
int wd_transport_ucx_is_connected(const struct wd_transport *t, int peer);

#endif
