/*
 * wd_eplb_dispatch: which physical replica a token's logical expert goes to
 * (--ep-dispatch-algorithm), applied to the router's top-k ids before dispatch, as SGLang's
 * expert_location_dispatch.py does. Dispatch then sees physical expert ids.
 *
 *   static  - a fixed slot per (layer, logical expert) for this rank, computed exactly as
 *             SGLang's compute_logical_to_rank_dispatch_physical_map: the only replica if
 *             there is one; else the first replica on this rank's GPU; else the first on this
 *             rank's node when that narrows the choice; else a fair seeded choice that spreads
 *             the remaining ranks evenly over all replicas (Python's random.Random(42), same
 *             stream and draws, so the map equals SGLang's bit for bit).
 *   dynamic - per (token, slot) a uniformly random replica: randint(0, 65536) % count, as
 *             SGLang; our generator is splitmix64 (torch's stream cannot be matched).
 * With is_nearest_only (SGLang's init_by_mapping path, i.e. trivial or
 * physical_to_logical_map locations, with an all-to-all backend), the rank's candidates shrink
 * to its nearest replica where it has one, for both algorithms (SGLang then also skips that
 * expert's random draw in the static map, which shifts the draws of the others).
 *
 * Tables are computed at create/refresh (allocation at create only); wd_eplb_dispatch_topk
 * neither allocates nor fails. One dispatch object per rank and thread.
 */
#ifndef WD_EP_EPLB_DISPATCH_H
#define WD_EP_EPLB_DISPATCH_H

#include <stdint.h>

#include "common/ep/eplb_location.h"
#include "common/util/status.h"

enum wd_eplb_dispatch_algorithm {
    WD_EPLB_DISPATCH_STATIC = 0,
    WD_EPLB_DISPATCH_DYNAMIC,
};

/* Parses "static" or "dynamic"; SGLang's "fake" and "lp" are WD_ERR_UNSUPPORTED. */
enum wd_status wd_eplb_dispatch_algorithm_parse(const char *name,
                                                enum wd_eplb_dispatch_algorithm *algo_p,
                                                struct wd_error *err);

struct wd_eplb_dispatch_config {
    enum wd_eplb_dispatch_algorithm algorithm;
    int ep_rank;         /* this rank's moe_ep_rank, in [0, loc->n_gpus) */
    int n_nodes;         /* --nnodes; 0 turns the same-node preference off */
    int is_nearest_only; /* see the file comment */
    uint64_t seed;       /* dynamic: generator seed (give each rank its own) */
};

struct wd_eplb_dispatch;

/* Builds this rank's tables for loc (borrowed: it must outlive the object; call refresh after
 * changing it). Errors: WD_ERR_INVALID for ep_rank out of range or n_gpus % n_nodes != 0;
 * WD_ERR_NOMEM. */
enum wd_status wd_eplb_dispatch_create(const struct wd_eplb_dispatch_config *cfg,
                                       const struct wd_eplb_location *loc,
                                       struct wd_eplb_dispatch **d_p, struct wd_error *err);
void wd_eplb_dispatch_destroy(struct wd_eplb_dispatch *d);

/* Recomputes the tables after the location changed (a rebalance). */
void wd_eplb_dispatch_refresh(struct wd_eplb_dispatch *d);

/* This rank's static map [n_layers, n_logical]: the slot each logical expert is sent to. */
const int32_t *wd_eplb_dispatch_static_map(const struct wd_eplb_dispatch *d);

/* Maps topk_logical [n] (ids of one layer) to physical slots topk_physical [n]. An id outside
 * [0, n_logical) is a broken invariant (WD_ASSERT). */
void wd_eplb_dispatch_topk(struct wd_eplb_dispatch *d, int layer, const int32_t *topk_logical,
                           int n, int32_t *topk_physical);

/* SGLang's _find_nearest_expert: among slots [n_slots] (one expert's replicas), the only one,
 * else the first on ep_rank's GPU, else the first on its node if that is not all of them
 * (n_nodes > 0), else -1. */
int32_t wd_eplb_nearest_replica(const int32_t *slots, int n_slots, int n_physical, int n_gpus,
                                int n_nodes, int ep_rank);

#endif
