/*
 * The engine's EPLB (initial placement, dispatch tables, rebalancing at a safe point with
 * expert weights moved between ranks), the expert-distribution recorder and rank 0's
 * metrics registry (balancedness per layer, rebalances, moves, forward passes).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/engine/engine_internal.h"
#include "common/util/log.h"

int wd_engine_eplb_wanted(const struct wd_server_args *a)
{
    return a && (a->enable_eplb || a->ep_num_redundant_experts > 0 ||
                 (a->init_expert_location && strcmp(a->init_expert_location, "trivial") != 0));
}

/* The initial placement and this rank's dispatch tables. With the all-reduce backend a row is
 * routed the same way on every rank: by the table of the DP rank it came from. */
enum wd_status wd_engine_eplb_setup(struct wd_engine *e, const struct wd_model_config *mc,
                                    struct wd_error *err)
{
    const struct wd_server_args *a = e->cfg.sargs;
    const struct wd_layout *l = e->layout;
    int E = mc->n_routed_experts, P = E + a->ep_num_redundant_experts;
    WD_CHECK(wd_eplb_algorithm_parse(a->eplb_algorithm ? a->eplb_algorithm : "auto",
                                     &e->params.algorithm, err));
    e->params.n_groups = mc->arch == WD_ARCH_DEEPSEEK_V3 ? mc->n_group : 0;
    e->params.n_nodes = l->nnodes;
    WD_CHECK(wd_eplb_location_create(mc->n_layers, E, P, l->moe_ep_size, &e->loc, err));
    WD_CHECK(wd_eplb_location_create(mc->n_layers, E, P, l->moe_ep_size, &e->next, err));
    WD_CHECK(wd_eplb_location_load(e->loc, a->init_expert_location, &e->params, err));
    enum wd_eplb_dispatch_algorithm algo = WD_EPLB_DISPATCH_STATIC;
    if (a->ep_dispatch_algorithm)
        WD_CHECK(wd_eplb_dispatch_algorithm_parse(a->ep_dispatch_algorithm, &algo, err));
    int deepep = l->a2a_backend == WD_A2A_DEEPEP;
    e->n_dispatch = deepep ? 1 : l->attn_dp_size;
    for (int d = 0; d < e->n_dispatch; d++) {
        int src = deepep ? e->me->rank : d * l->attn_tp_size;
        struct wd_eplb_dispatch_config dc = {
            .algorithm = algo,
            .ep_rank = l->ranks[src].moe_ep_rank,
            .n_nodes = l->nnodes,
            /* dynamic: ranks that must agree draw from the same stream */
            .seed = 0x5eed + (uint64_t)(deepep ? e->me->rank : d)};
        WD_CHECK(wd_eplb_dispatch_create(&dc, e->loc, &e->dispatch[d], err));
    }
    return WD_OK;
}

/* The expert-distribution recorder (--expert-distribution-recorder-mode; EPLB's input). */
enum wd_status wd_engine_recorder_setup(struct wd_engine *e, const struct wd_model_config *mc,
                                        struct wd_error *err)
{
    const struct wd_server_args *a = e->cfg.sargs;
    int E = mc->n_routed_experts;
    const char *mode =
        a->expert_distribution_recorder_mode ? a->expert_distribution_recorder_mode : "stat";
    struct wd_expert_recorder_config rc = {
        .n_layers = mc->n_layers,
        .n_experts = E,
        .top_k = mc->num_experts_per_tok,
        .buffer_size =
            a->expert_distribution_recorder_buffer_size > 0
                ? a->expert_distribution_recorder_buffer_size
                : (a->eplb_rebalance_num_iterations > 0 ? a->eplb_rebalance_num_iterations : 1000),
        .max_tokens = 4096};
    WD_CHECK(wd_expert_record_mode_parse(mode, &rc.mode, err));
    return wd_expert_recorder_create(&rc, &e->recorder, err);
}

/* With WIDEEP_EXPERT_DISTRIBUTION_RECORDER_DIR set (SGLang: SGLANG_EXPERT_DISTRIBUTION_
 * RECORDER_DIR), the recorded routing is written there at the end: by rank 0 when every
 * rank saw every token (all-reduce backend), by every rank when each recorded its own rows. */
enum wd_status wd_engine_recorder_dump(struct wd_engine *e, struct wd_error *err)
{
    const char *dir = getenv("WIDEEP_EXPERT_DISTRIBUTION_RECORDER_DIR");
    const struct wd_layout *l = e->layout;
    if (!e->recorder || !dir || (l->a2a_backend == WD_A2A_NONE && e->me->rank != 0))
        return WD_OK;
    char path[4096];
    snprintf(path, sizeof(path), "%s/expert_distribution_rank%d.json", dir, e->me->rank);
    FILE *f = fopen(path, "w");
    if (!f)
        return wd_error_set(err, WD_ERR_IO, "%s: %m", path);
    enum wd_status st = wd_expert_recorder_dump(e->recorder, f, err);
    if (fclose(f) != 0 && st == WD_OK)
        st = wd_error_set(err, WD_ERR_IO, "%s: %m", path);
    return st;
}

/* Mean over MoE layers of EPLB's balancedness (mean / max GPU load) of a placement. */
static double balancedness(const struct wd_engine *e, const struct wd_eplb_location *loc,
                           const double *counts, int publish)
{
    const struct wd_model_config *c = &e->model->cfg;
    double sum = 0, load[WD_MODEL_MAX_RANKS];
    int n = 0;
    for (int layer = 0; layer < c->n_layers; layer++) {
        if (!wd_model_config_is_moe_layer(c, layer))
            continue;
        if (wd_eplb_gpu_load(counts + (size_t)layer * loc->n_logical, loc->n_logical,
                             loc->phy2log + (size_t)layer * loc->n_physical, loc->n_physical,
                             loc->n_gpus, load, NULL) != WD_OK)
            continue;
        double b = wd_eplb_balancedness(load, loc->n_gpus);
        sum += b;
        n++;
        if (publish && e->metrics) {
            char lv[16];
            snprintf(lv, sizeof(lv), "%d", layer);
            wd_metrics_set(e->metrics, e->m_balance, lv, b);
        }
        if (publish)
            wd_log(WD_LOG_DEBUG, "eplb", "layer %d balancedness %.3f", layer, b);
    }
    return n ? sum / n : 1.0;
}

/* A rebalance at a safe point (between forward passes, the same pass on every rank):
 * the recorded routing -> a new placement -> expert weights moved between ranks. */
static enum wd_status eplb_rebalance(struct wd_engine *e, struct wd_error *err)
{
    const struct wd_layout *l = e->layout;
    const struct wd_model_config *c = &e->model->cfg;
    size_t n = (size_t)c->n_layers * (size_t)c->n_routed_experts;
    double *counts = malloc(n * sizeof(double));
    float *sum = malloc(n * sizeof(float));
    enum wd_status st =
        counts && sum ? WD_OK : wd_error_set(err, WD_ERR_NOMEM, "eplb: out of memory");
    if (st == WD_OK) {
        wd_expert_recorder_counts(e->recorder, counts);
        /* With the all-to-all backend each rank recorded the rows it dispatched: sum them. */
        if (l->a2a_backend == WD_A2A_DEEPEP) {
            for (size_t i = 0; i < n; i++)
                sum[i] = (float)counts[i];
            st = wd_coll_all_reduce_f32(e->groups->tp->coll, sum, n, e->timeout_ms, err);
            for (size_t i = 0; st == WD_OK && i < n; i++)
                counts[i] = sum[i];
        }
    }
    double before = st == WD_OK ? balancedness(e, e->loc, counts, 0) : 0;
    for (int layer = 0; st == WD_OK && layer < c->n_layers; layer++)
        wd_eplb_location_copy_layer(e->next, e->loc, layer);
    if (st == WD_OK)
        st = wd_eplb_location_rebalance(e->next, counts, &e->params, err);
    int moved = 0;
    for (int layer = 0; st == WD_OK && layer < c->n_layers; layer++) {
        if (!wd_model_config_is_moe_layer(c, layer)) {
            wd_eplb_location_copy_layer(e->next, e->loc, layer); /* dense: nothing moves */
            continue;
        }
        int k = 0;
        st = wd_expert_mover_layer(e->mover, e->model->experts_store, layer,
                                   e->loc->phy2log + (size_t)layer * e->loc->n_physical,
                                   e->next->phy2log + (size_t)layer * e->next->n_physical,
                                   e->loc->n_physical, &k, err);
        moved += k;
    }
    if (st == WD_OK) {
        for (int layer = 0; layer < c->n_layers; layer++)
            wd_eplb_location_copy_layer(e->loc, e->next, layer);
        for (int d = 0; d < e->n_dispatch; d++)
            wd_eplb_dispatch_refresh(e->dispatch[d]);
        double after = balancedness(e, e->loc, counts, 1);
        if (e->metrics) {
            wd_metrics_set(e->metrics, e->m_balance_mean, NULL, after);
            wd_metrics_add(e->metrics, e->m_rebalances, NULL, 1);
            wd_metrics_add(e->metrics, e->m_moved, NULL, moved);
        }
        wd_log(WD_LOG_INFO, "eplb",
               "rebalanced after %ld passes: balancedness %.3f -> %.3f (mean/max GPU load over "
               "MoE layers), %d expert blobs received",
               e->passes, before, after, moved);
    }
    free(counts);
    free(sum);
    return st;
}

/* Rank 0 keeps the run's metrics (EPLB balancedness per layer, rebalances, moves). */
enum wd_status wd_engine_metrics_setup(struct wd_engine *e, struct wd_error *err)
{
    if (!e->cfg.metrics_file || e->me->rank != 0)
        return WD_OK;
    WD_CHECK(wd_metrics_create(&e->metrics, err));
    struct wd_metrics *m = e->metrics;
    e->m_balance = wd_metrics_register(m, "wideep_eplb_balancedness",
                                       "mean/max GPU load of a MoE layer's expert placement under "
                                       "the recorded routing (1 = balanced)",
                                       WD_METRIC_GAUGE, "layer", NULL, 0);
    e->m_balance_mean = wd_metrics_register(m, "wideep_eplb_balancedness_mean",
                                            "wideep_eplb_balancedness averaged over MoE layers",
                                            WD_METRIC_GAUGE, NULL, NULL, 0);
    e->m_rebalances = wd_metrics_register(m, "wideep_eplb_rebalances_total", "EPLB rebalances done",
                                          WD_METRIC_COUNTER, NULL, NULL, 0);
    e->m_moved = wd_metrics_register(m, "wideep_eplb_expert_moves_total",
                                     "expert weight blobs rank 0 received in rebalances",
                                     WD_METRIC_COUNTER, NULL, NULL, 0);
    e->m_passes = wd_metrics_register(m, "wideep_forward_passes_total", "forward passes run",
                                      WD_METRIC_COUNTER, NULL, NULL, 0);
    if (e->m_balance < 0 || e->m_balance_mean < 0 || e->m_rebalances < 0 || e->m_moved < 0 ||
        e->m_passes < 0)
        return wd_error_set(err, WD_ERR_INVALID, "metrics: cannot register the families");
    return WD_OK;
}

enum wd_status wd_engine_metrics_write(struct wd_engine *e, struct wd_error *err)
{
    if (!e->metrics)
        return WD_OK;
    wd_metrics_add(e->metrics, e->m_passes, NULL, (double)e->passes);
    char *text = wd_metrics_render(e->metrics);
    if (!text)
        return wd_error_set(err, WD_ERR_NOMEM, "metrics: out of memory");
    const char *path = e->cfg.metrics_file;
    FILE *f = fopen(path, "w");
    enum wd_status st = WD_OK;
    if (!f || fputs(text, f) < 0)
        st = wd_error_set(err, WD_ERR_IO, "--metrics-file %s: %m", path);
    if (f && fclose(f) != 0 && st == WD_OK)
        st = wd_error_set(err, WD_ERR_IO, "--metrics-file %s: %m", path);
    free(text);
    return st;
}

/* The expert mover: rebalances move weights over their own window on this rank's MoE-EP
 * group. */
enum wd_status wd_engine_mover_setup(struct wd_engine *e, struct wd_error *err)
{
    if (!e->loc || !e->model->experts_store)
        return WD_OK;
    const struct wd_layout *l = e->layout;
    char name[32];
    snprintf(name, sizeof(name), "eplb%d", e->me->moe_tp_rank);
    const int *members = wd_group_set_members(&l->moe_ep_groups, e->me->moe_tp_rank);
    WD_CHECK(wd_comm_transport_create(
        e->comm, name, members, l->moe_ep_size,
        wd_expert_move_window_bytes(l->moe_ep_size, e->model->experts_store->blob_bytes),
        &e->move_t, err));
    return wd_expert_mover_create(e->move_t, e->model->experts_store, e->timeout_ms, &e->mover,
                                  err);
}

enum wd_status wd_engine_eplb_after_pass(struct wd_engine *e, struct wd_error *err)
{
    const struct wd_server_args *a = e->cfg.sargs;
    if (e->mover && a->enable_eplb && a->eplb_rebalance_num_iterations > 0 &&
        e->passes % a->eplb_rebalance_num_iterations == 0)
        return eplb_rebalance(e, err);
    return WD_OK;
}

void wd_engine_eplb_destroy(struct wd_engine *e)
{
    wd_expert_mover_destroy(e->mover);
    e->mover = NULL;
    wd_transport_destroy(e->move_t); /* no barrier after a failure: wd_comm_mark_failed */
    e->move_t = NULL;
    for (int d = 0; d < e->n_dispatch; d++)
        wd_eplb_dispatch_destroy(e->dispatch[d]);
    e->n_dispatch = 0;
    wd_expert_recorder_destroy(e->recorder);
    wd_eplb_location_destroy(e->loc);
    wd_eplb_location_destroy(e->next);
    wd_metrics_destroy(e->metrics);
    e->recorder = NULL;
    e->loc = e->next = NULL;
    e->metrics = NULL;
}
