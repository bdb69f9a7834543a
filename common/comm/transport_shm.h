/*
 * Shared-memory executor of the transport contract (the NVLink analogue): each rank's
 * window is a POSIX shm segment, every same-node peer's segment is mapped, put is a
 * memcpy into the peer's mapping, signal an atomic add with release order, wait an
 * acquire-load loop (common/comm/peers.h).
 *
 * Bring-up is in three steps because the segment names travel through the rendezvous:
 * create (this rank's segment, zeroed), connect each peer by its segment name, then,
 * once every peer has mapped it, unlink this rank's name so nothing stays in /dev/shm
 * even if the process is killed later. Peers never connected (other nodes) fail put and
 * signal with WD_ERR_INVALID. One thread drives the transport.
 */
#ifndef WD_COMM_TRANSPORT_SHM_H
#define WD_COMM_TRANSPORT_SHM_H

#include "common/comm/peers.h"
#include "common/comm/transport.h"

/* Creates segment seg_name ("/wd-...", must not exist) of window_bytes, zeroed and with
 * every page reserved (wd_shm_segment_create), as this rank's window. peers is copied.
 * WD_ERR_NOMEM when /dev/shm has no room for it, WD_ERR_IO otherwise; both name the
 * segment. */
enum wd_status wd_transport_shm_create(const struct wd_peers *peers, const char *seg_name,
                                       size_t window_bytes, struct wd_transport **t_p,
                                       struct wd_error *err);
/* Maps peer's segment (its size must equal window_bytes). */
enum wd_status wd_transport_shm_connect(struct wd_transport *t, int peer, const char *seg_name,
                                        struct wd_error *err);
/* Removes this rank's segment name (the mappings stay). Idempotent. */
void wd_transport_shm_unlink(struct wd_transport *t);
/* 1 when peer's window is mapped (always for this rank itself). */
int wd_transport_shm_is_connected(const struct wd_transport *t, int peer);

#endif
