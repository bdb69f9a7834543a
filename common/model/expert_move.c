/* Expert weight moves: a ready/data handshake per move over the EP group's transport. */
#include "common/model/expert_move.h"

#include <stdlib.h>
#include <string.h>

/* Window: data_from[R] u64 | ready_from[R] u64 | one blob (64-byte aligned). */
static size_t blob_offset(int n_ranks)
{
    return ((size_t)16 * (size_t)n_ranks + 63) & ~(size_t)63;
}

size_t wd_expert_move_window_bytes(int n_ranks, size_t blob_bytes)
{
    return blob_offset(n_ranks) + blob_bytes;
}

struct wd_expert_mover {
    struct wd_transport *t;
    int timeout_ms;
    size_t blob_bytes;
    unsigned char *snapshot; /* [n_slots, blob_bytes] the layer before the moves */
    uint64_t *data_sent, *data_seen, *ready_sent, *ready_seen; /* [R] running counters */
};

enum wd_status wd_expert_mover_create(struct wd_transport *t, const struct wd_expert_store *store,
                                      int timeout_ms, struct wd_expert_mover **mv_p,
                                      struct wd_error *err)
{
    if (t->window_bytes < wd_expert_move_window_bytes(t->n_ranks, store->blob_bytes))
        return wd_error_set(err, WD_ERR_INVALID, "expert mover: window of %zu bytes, needs %zu",
                            t->window_bytes,
                            wd_expert_move_window_bytes(t->n_ranks, store->blob_bytes));
    struct wd_expert_mover *mv = calloc(1, sizeof(*mv));
    if (!mv)
        return wd_error_set(err, WD_ERR_NOMEM, "expert mover: out of memory");
    mv->t = t;
    mv->timeout_ms = timeout_ms;
    mv->blob_bytes = store->blob_bytes;
    size_t R = (size_t)t->n_ranks;
    mv->snapshot = malloc((size_t)(store->n_slots > 0 ? store->n_slots : 1) * store->blob_bytes);
    mv->data_sent = calloc(4 * R, sizeof(uint64_t));
    if (!mv->snapshot || !mv->data_sent) {
        wd_expert_mover_destroy(mv);
        return wd_error_set(err, WD_ERR_NOMEM, "expert mover: out of memory");
    }
    mv->data_seen = mv->data_sent + R;
    mv->ready_sent = mv->data_seen + R;
    mv->ready_seen = mv->ready_sent + R;
    *mv_p = mv;
    return WD_OK;
}

void wd_expert_mover_destroy(struct wd_expert_mover *mv)
{
    if (!mv)
        return;
    free(mv->snapshot);
    free(mv->data_sent);
    free(mv);
}

enum wd_status wd_expert_mover_layer(struct wd_expert_mover *mv, struct wd_expert_store *store,
                                     int layer, const int32_t *old_phy2log,
                                     const int32_t *new_phy2log, int n_physical, int *n_moved_p,
                                     struct wd_error *err)
{
    struct wd_transport *t = mv->t;
    int R = t->n_ranks, me = t->rank, spr = n_physical / R;
    size_t B = mv->blob_bytes, bo = blob_offset(R);
    WD_ASSERT(spr == store->n_slots && spr * R == n_physical);
    for (int j = 0; j < spr; j++)
        memcpy(mv->snapshot + (size_t)j * B, wd_expert_store_blob(store, layer, j), B);
    int moved = 0;
    for (int s = 0; s < n_physical; s++) {
        int want = new_phy2log[s];
        if (want == old_phy2log[s])
            continue;
        int dest = s / spr, from = -1;
        /* Prefer a copy the destination already holds; else the first holder. */
        for (int q = dest * spr; q < (dest + 1) * spr && from < 0; q++)
            if (old_phy2log[q] == want)
                from = q;
        for (int q = 0; q < n_physical && from < 0; q++)
            if (old_phy2log[q] == want)
                from = q;
        if (from < 0)
            return wd_error_set(err, WD_ERR_INVALID,
                                "expert mover: layer %d: no slot holds expert %d before the move",
                                layer, want);
        int src = from / spr;
        if (me == dest && src == me) {
            memcpy(wd_expert_store_blob(store, layer, s - me * spr),
                   mv->snapshot + (size_t)(from - me * spr) * B, B);
        } else if (me == dest) {
            WD_CHECK(wd_transport_signal(t, src, (size_t)(R + me) * 8, 1, err));
            mv->ready_sent[src]++;
            WD_CHECK(wd_transport_wait(t, (size_t)src * 8, ++mv->data_seen[src], src,
                                       mv->timeout_ms, err));
            memcpy(wd_expert_store_blob(store, layer, s - me * spr), t->window + bo, B);
            moved++;
        } else if (me == src) {
            WD_CHECK(wd_transport_wait(t, (size_t)(R + dest) * 8, ++mv->ready_seen[dest], dest,
                                       mv->timeout_ms, err));
            WD_CHECK(wd_transport_put(t, dest, bo, mv->snapshot + (size_t)(from - me * spr) * B, B,
                                      err));
            WD_CHECK(wd_transport_signal(t, dest, (size_t)me * 8, 1, err));
            mv->data_sent[dest]++;
        }
    }
    if (n_moved_p)
        *n_moved_p = moved;
    return WD_OK;
}
