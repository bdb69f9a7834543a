/*
 * A rank's groups, ready to use: what the engine calls inside rank_main after wd_comm_create.
 * wd_comm_group = one group transport plus a collectives engine over it;
 * wd_comm_groups = every group of the layout this rank belongs to (TP, attention TP, MoE
 * EP, MoE TP) plus the MoE-EP window that dispatch/combine run on.
 *
 * Creation and destruction are collective over each group's members and done in one fixed
 * order (tp, attn_tp, moe_ep, moe_tp, ep; destroyed in reverse), so every rank calling
 * wd_comm_groups_create with the same layout cannot deadlock. Groups of one rank are
 * valid (collectives return at once).
 */
#ifndef WD_COMM_COMM_GROUP_H
#define WD_COMM_COMM_GROUP_H

#include <stddef.h>

#include "common/comm/collectives.h"
#include "common/comm/comm.h"

struct wd_layout;

struct wd_comm_group {
    struct wd_transport *t; /* owned; rank/n_ranks are the index in and size of the group */
    struct wd_coll *coll;   /* over t */
};

/* Collective over members (see wd_comm_transport_create): a transport sized for
 * collectives moving up to piece_bytes per round, and the engine over it. */
enum wd_status wd_comm_group_create(struct wd_comm *comm, const char *name, const int *members,
                                    int n_members, size_t piece_bytes, struct wd_comm_group **g_p,
                                    struct wd_error *err);
void wd_comm_group_destroy(struct wd_comm_group *g); /* NULL-safe, collective */

struct wd_comm_groups {
    struct wd_comm_group *tp;      /* the TP group: every rank of the instance */
    struct wd_comm_group *attn_tp; /* attention-TP group number attn_dp_rank */
    struct wd_comm_group *moe_ep;  /* MoE-EP group number moe_tp_rank */
    struct wd_comm_group *moe_tp;  /* MoE-TP group number moe_ep_rank */
    struct wd_transport *ep;       /* dispatch/combine window over the MoE-EP group; NULL
                                      when ep_window_bytes is 0 */
};

/* Brings up this rank's groups of layout (the rank is wd_comm_rank_info(comm)->rank; the
 * layout's world size must be the launch's). coll_piece_bytes sizes every collectives
 * window; ep_window_bytes the dispatch/combine one. */
enum wd_status wd_comm_groups_create(struct wd_comm *comm, const struct wd_layout *layout,
                                     size_t coll_piece_bytes, size_t ep_window_bytes,
                                     struct wd_comm_groups **g_p, struct wd_error *err);
void wd_comm_groups_destroy(struct wd_comm_groups *g); /* NULL-safe, collective */

#endif
