/* Group bring-up from the layout: a transport plus collectives per group of this rank. */
#include "common/comm/comm_group.h"

#include <stdio.h>
#include <stdlib.h>

#include "common/layout/layout.h"

enum wd_status wd_comm_group_create(struct wd_comm *comm, const char *name, const int *members,
                                    int n_members, size_t piece_bytes, struct wd_comm_group **g_p,
                                    struct wd_error *err)
{
    struct wd_comm_group *g = calloc(1, sizeof(*g));
    if (!g)
        return wd_error_set(err, WD_ERR_NOMEM, "comm: out of memory");
    size_t bytes = wd_coll_window_bytes(n_members, piece_bytes);
    enum wd_status st = wd_comm_transport_create(comm, name, members, n_members, bytes, &g->t, err);
    if (st == WD_OK)
        st = wd_coll_create(g->t, 0, piece_bytes, &g->coll, err);
    if (st != WD_OK) {
        wd_comm_group_destroy(g);
        return st;
    }
    *g_p = g;
    return WD_OK;
}

void wd_comm_group_destroy(struct wd_comm_group *g)
{
    if (!g)
        return;
    wd_coll_destroy(g->coll);
    wd_transport_destroy(g->t);
    free(g);
}

/* This rank's group of a set: the one whose members contain rank. */
static const int *my_group(const struct wd_group_set *set, int rank, int *g_p)
{
    for (int g = 0; g < set->n_groups; g++) {
        const int *m = wd_group_set_members(set, g);
        for (int i = 0; i < set->group_size; i++)
            if (m[i] == rank) {
                *g_p = g;
                return m;
            }
    }
    return NULL;
}

static enum wd_status group_of(struct wd_comm *comm, const struct wd_group_set *set,
                               const char *kind, size_t piece, struct wd_comm_group **g_p,
                               struct wd_error *err)
{
    int g, rank = wd_comm_rank_info(comm)->rank;
    const int *m = my_group(set, rank, &g);
    if (!m)
        return wd_error_set(err, WD_ERR_INVALID, "comm: rank %d is in no %s group", rank, kind);
    char name[48];
    snprintf(name, sizeof(name), "%s%d", kind, g);
    return wd_comm_group_create(comm, name, m, set->group_size, piece, g_p, err);
}

enum wd_status wd_comm_groups_create(struct wd_comm *comm, const struct wd_layout *layout,
                                     size_t coll_piece_bytes, size_t ep_window_bytes,
                                     struct wd_comm_groups **g_p, struct wd_error *err)
{
    const struct wd_rank_info *ri = wd_comm_rank_info(comm);
    if (layout->world_size != ri->world_size)
        return wd_error_set(err, WD_ERR_INVALID, "comm: layout has %d ranks, the launch %d",
                            layout->world_size, ri->world_size);
    struct wd_comm_groups *g = calloc(1, sizeof(*g));
    if (!g)
        return wd_error_set(err, WD_ERR_NOMEM, "comm: out of memory");
    enum wd_status st = group_of(comm, &layout->tp_groups, "tp", coll_piece_bytes, &g->tp, err);
    if (st == WD_OK)
        st = group_of(comm, &layout->attn_tp_groups, "attn_tp", coll_piece_bytes, &g->attn_tp, err);
    if (st == WD_OK)
        st = group_of(comm, &layout->moe_ep_groups, "moe_ep", coll_piece_bytes, &g->moe_ep, err);
    if (st == WD_OK)
        st = group_of(comm, &layout->moe_tp_groups, "moe_tp", coll_piece_bytes, &g->moe_tp, err);
    if (st == WD_OK && ep_window_bytes) {
        int k = 0;
        const int *m = my_group(&layout->moe_ep_groups, ri->rank, &k);
        char name[48];
        snprintf(name, sizeof(name), "ep%d", k);
        st = wd_comm_transport_create(comm, name, m, layout->moe_ep_groups.group_size,
                                      ep_window_bytes, &g->ep, err);
    }
    if (st != WD_OK) {
        wd_comm_groups_destroy(g);
        return st;
    }
    *g_p = g;
    return WD_OK;
}

void wd_comm_groups_destroy(struct wd_comm_groups *g)
{
    if (!g)
        return;
    wd_transport_destroy(g->ep);
    wd_comm_group_destroy(g->moe_tp);
    wd_comm_group_destroy(g->moe_ep);
    wd_comm_group_destroy(g->attn_tp);
    wd_comm_group_destroy(g->tp);
    free(g);
}
