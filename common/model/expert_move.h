/*
 * wd_expert_mover: EPLB's weight moves. After a rebalance every physical slot may
 * hold another logical expert; the rank owning a slot receives that expert's blob
 * from a rank that held it before (or copies it locally), over a transport spanning
 * the MoE-EP group. Every rank walks the same list of moves in the same order; a
 * destination signals "ready" before its source puts, so one receive area per rank
 * suffices and nothing is overwritten before it is consumed. Sources read from a
 * snapshot of the layer taken first, so a slot can be a source and a destination in
 * the same rebalance. Waits time out naming the silent rank.
 */
#ifndef WD_MODEL_EXPERT_MOVE_H
#define WD_MODEL_EXPERT_MOVE_H

#include <stddef.h>
#include <stdint.h>

#include "common/comm/transport.h"
#include "common/model/expert_store.h"

/* Window bytes the mover needs on every rank of an EP group of n_ranks. */
size_t wd_expert_move_window_bytes(int n_ranks, size_t blob_bytes);

struct wd_expert_mover;

/* t: a transport over the EP group (rank = this rank's EP rank) with a zeroed window of
 * wd_expert_move_window_bytes; borrowed. */
enum wd_status wd_expert_mover_create(struct wd_transport *t, const struct wd_expert_store *store,
                                      int timeout_ms, struct wd_expert_mover **mv_p,
                                      struct wd_error *err);
void wd_expert_mover_destroy(struct wd_expert_mover *mv);

/* Makes the store's slots of layer hold new_phy2log's experts ([n_physical] each; this rank
 * holds slots [rank * n_physical / n_ranks, ...)). Returns the blobs received from peers in
 * *n_moved_p. Collective over the EP group. */
enum wd_status wd_expert_mover_layer(struct wd_expert_mover *mv, struct wd_expert_store *store,
                                     int layer, const int32_t *old_phy2log,
                                     const int32_t *new_phy2log, int n_physical, int *n_moved_p,
                                     struct wd_error *err);

#endif
