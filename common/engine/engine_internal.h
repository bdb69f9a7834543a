/* The engine's state, shared by its files (engine.c: bring-up and the step loop;
 * engine_eplb.c: EPLB, the expert recorder and the rank's metrics). Internal to
 * common/engine. */
#ifndef WD_ENGINE_INTERNAL_H
#define WD_ENGINE_INTERNAL_H

#include "common/comm/comm.h"
#include "common/comm/comm_group.h"
#include "common/engine/engine.h"
#include "common/ep/ep_buffer.h"
#include "common/ep/ep_moe.h"
#include "common/ep/ep_normal.h"
#include "common/ep/eplb.h"
#include "common/model/expert_move.h"
#include "common/util/metrics.h"

struct wd_engine {
    struct wd_engine_config cfg;
    const struct wd_layout *layout;
    const struct wd_rank_layout *me;
    struct wd_rank_info ri;
    struct wd_engine_link *link; /* set when this rank leads its attention-DP group */
    int is_leader;
    int timeout_ms;
    struct wd_comm *comm;
    struct wd_comm_groups *groups;
    /* --moe-a2a-backend deepep: dispatch/combine over the MoE-EP group's window */
    struct wd_ep_buffer *ep;
    struct wd_ep_moe *ep_moe;
    struct wd_ep_handle *ep_handle;
    struct wd_ep_payload payload;
    /* EPLB */
    struct wd_eplb_location *loc, *next; /* current placement, and the one being computed */
    struct wd_eplb_dispatch *dispatch[WD_MODEL_MAX_DP];
    int n_dispatch;
    struct wd_eplb_params params;
    struct wd_expert_recorder *recorder;
    struct wd_transport *move_t;
    struct wd_expert_mover *mover;
    struct wd_model *model;
    struct wd_kv_pool *kv;
    struct wd_scheduler *sched;
    long passes; /* forward passes run */
    uint64_t steps;
    struct wd_metrics *metrics;
    int m_balance, m_balance_mean, m_rebalances, m_moved, m_passes;
    /* The step's commands: popped by the leader, broadcast to the group. */
    uint8_t *cmds;
    size_t cmds_cap;
    int events_pushed; /* events written since the last notify */
    int is_broken;     /* a collective failed: skip collective teardown */
};

/* engine_eplb.c */
int wd_engine_eplb_wanted(const struct wd_server_args *a);
enum wd_status wd_engine_eplb_setup(struct wd_engine *e, const struct wd_model_config *mc,
                                    struct wd_error *err);
enum wd_status wd_engine_recorder_setup(struct wd_engine *e, const struct wd_model_config *mc,
                                        struct wd_error *err);
enum wd_status wd_engine_mover_setup(struct wd_engine *e, struct wd_error *err);
/* After each forward: rebalances every --eplb-rebalance-num-iterations passes. */
enum wd_status wd_engine_eplb_after_pass(struct wd_engine *e, struct wd_error *err);
enum wd_status wd_engine_recorder_dump(struct wd_engine *e, struct wd_error *err);
enum wd_status wd_engine_metrics_setup(struct wd_engine *e, struct wd_error *err);
enum wd_status wd_engine_metrics_write(struct wd_engine *e, struct wd_error *err);
void wd_engine_eplb_destroy(struct wd_engine *e);

#endif
