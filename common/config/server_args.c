/*
 * Expert-parallel server flags: the flag-table fragment with SGLang's names, aliases and
 * defaults, the choice checks that tell "SGLang has it, wideep does not" apart from
 * "no such value", and SGLang's EPLB-derived defaults (server_args._handle_eplb_and_dispatch
 * and _handle_expert_distribution_metrics), rewritten in C.
 */
#include "common/config/server_args.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common/util/log.h"

/* One string flag's values: the ones wideep implements, and the ones SGLang also accepts
 * that wideep refuses (so the error can say "not supported" instead of "unknown"). */
struct choice_set {
    const char *flag;
    const char *const *supported;
    const char *const *sglang_only;
};

static const char *const a2a_supported[] = {"none", "deepep", NULL};
static const char *const a2a_sglang_only[] = {"mooncake",   "nixl",    "mori",      "ascend_fuseep",
                                              "flashinfer", "megamoe", "deepep_v2", "pplx",
                                              "ascend_tp",  NULL};
static const char *const mode_supported[] = {"auto", "normal", "low_latency", NULL};
static const char *const none_list[] = {NULL};
static const char *const recorder_supported[] = {"stat", "per_pass", "per_token", NULL};
static const char *const recorder_sglang_only[] = {"stat_approx", NULL};
static const char *const dispatch_supported[] = {"static", "dynamic", NULL};
static const char *const dispatch_sglang_only[] = {"fake", NULL};
static const char *const eplb_supported[] = {"auto", "deepseek", "deepseek_hierarchical", NULL};
static const char *const eplb_sglang_only[] = {"deepseek_vec", "deepseek_vec_hierarchical",
                                               "elasticity_aware", NULL};

static const struct choice_set a2a_choices = {"moe-a2a-backend", a2a_supported, a2a_sglang_only};
static const struct choice_set mode_choices = {"deepep-mode", mode_supported, none_list};
static const struct choice_set recorder_choices = {"expert-distribution-recorder-mode",
                                                   recorder_supported, recorder_sglang_only};
static const struct choice_set dispatch_choices = {"ep-dispatch-algorithm", dispatch_supported,
                                                   dispatch_sglang_only};
static const struct choice_set eplb_choices = {"eplb-algorithm", eplb_supported, eplb_sglang_only};

static void join(const char *const *list, char *buf, size_t cap)
{
    size_t k = 0;
    buf[0] = 0;
    for (int i = 0; list[i] && k < cap; i++)
        k += (size_t)snprintf(buf + k, cap - k, "%s%s", i ? ", " : "", list[i]);
}

/* Canonicalizes *value (a pointer into argv) to the static spelling; returns its index. */
static enum wd_status check_choice(const struct choice_set *c, const char **value, int *index_p,
                                   struct wd_error *err)
{
    char supported[160];
    join(c->supported, supported, sizeof(supported));
    for (int i = 0; c->supported[i]; i++)
        if (strcmp(*value, c->supported[i]) == 0) {
            *value = c->supported[i];
            if (index_p)
                *index_p = i;
            return WD_OK;
        }
    for (int i = 0; c->sglang_only[i]; i++)
        if (strcmp(*value, c->sglang_only[i]) == 0)
            return wd_error_set(err, WD_ERR_UNSUPPORTED,
                                "--%s %s is not supported by wideep (supported: %s)", c->flag,
                                *value, supported);
    return wd_error_set(err, WD_ERR_INVALID, "--%s: '%s' is not one of: %s", c->flag, *value,
                        supported);
}

void wd_server_args_init(struct wd_server_args *a)
{
    memset(a, 0, sizeof(*a));
    a->tp_size = a->dp_size = a->ep_size = 1;
    a->moe_a2a_backend = "none";
    a->deepep_mode = "auto";
    a->nnodes = 1;
    a->eplb_algorithm = "auto";
    a->eplb_rebalance_num_iterations = 1000;
    a->init_expert_location = "trivial";
}

int wd_server_args_flags(struct wd_server_args *a, struct wd_flag *out, int cap)
{
    const struct wd_flag flags[WD_SERVER_ARGS_N_FLAGS] = {
        {"tp-size", "tp,tensor-parallel-size", WD_FLAG_INT, &a->tp_size, 1, WD_LAYOUT_MAX_WORLD,
         "ranks of the instance (the TP group; attention and MoE split it further)", NULL, 0},
        {"dp-size", "dp,data-parallel-size", WD_FLAG_INT, &a->dp_size, 1, WD_LAYOUT_MAX_WORLD,
         "attention data-parallel size (needs --enable-dp-attention)", NULL, 0},
        {"ep-size", "ep,expert-parallel-size", WD_FLAG_INT, &a->ep_size, 1, WD_LAYOUT_MAX_WORLD,
         "MoE expert-parallel size (must divide --tp-size; moe_tp = tp / ep)", NULL, 0},
        {"enable-dp-attention", NULL, WD_FLAG_BOOL, &a->enable_dp_attention, 1, 0,
         "attention as dp-size data-parallel groups of tp/dp ranks, own batch and KV each", NULL,
         0},
        {"moe-a2a-backend", NULL, WD_FLAG_STRING, &a->moe_a2a_backend, 1, 0,
         "MoE token exchange: none (local experts + all-reduce) or deepep (dispatch/combine; "
         "sets ep = tp)",
         NULL, 0},
        {"deepep-mode", NULL, WD_FLAG_STRING, &a->deepep_mode, 1, 0,
         "DeepEP mode: auto (normal for prefill, low_latency for decode), normal, low_latency",
         NULL, 0},
        {"moe-dense-tp-size", NULL, WD_FLAG_INT, &a->moe_dense_tp_size, 1, WD_LAYOUT_MAX_WORLD,
         "TP size of dense MLP layers: unset = tp size, 1 = whole on every rank", NULL, 0},
        {"nnodes", NULL, WD_FLAG_INT, &a->nnodes, 1, WD_LAYOUT_MAX_WORLD, "number of nodes", NULL,
         0},
        {"node-rank", NULL, WD_FLAG_INT, &a->node_rank, 0, WD_LAYOUT_MAX_WORLD - 1,
         "this node's index (node 0 hosts the rendezvous)", NULL, 0},
        {"dist-init-addr", NULL, WD_FLAG_STRING, &a->dist_init_addr, 1, 0,
         "host:port of node 0's rendezvous (needed with --nnodes > 1)", NULL, 0},
        {"dist-init-token", NULL, WD_FLAG_STRING, &a->dist_init_token, 1, 0,
         "job identity every node presents at the rendezvous: give all nodes of one job the "
         "same value, so a launcher of another job pointed at the address is refused (an "
         "identity check, not a secret; default empty)",
         NULL, 0},
        {"enable-eplb", NULL, WD_FLAG_BOOL, &a->enable_eplb, 1, 0,
         "rebalance expert placement from recorded load (EPLB)", NULL, 0},
        {"ep-num-redundant-experts", NULL, WD_FLAG_INT, &a->ep_num_redundant_experts, 0, 65536,
         "extra physical expert slots per MoE layer", NULL, 0},
        {"eplb-algorithm", NULL, WD_FLAG_STRING, &a->eplb_algorithm, 1, 0,
         "auto, deepseek (global) or deepseek_hierarchical", NULL, 0},
        {"eplb-rebalance-num-iterations", NULL, WD_FLAG_INT, &a->eplb_rebalance_num_iterations, 1,
         999999, "forward passes between rebalances", NULL, 0},
        {"expert-distribution-recorder-mode", NULL, WD_FLAG_STRING,
         &a->expert_distribution_recorder_mode, 1, 0,
         "expert load recorder: stat, per_pass or per_token (unset = off; stat with EPLB)", NULL,
         0},
        {"expert-distribution-recorder-buffer-size", NULL, WD_FLAG_INT,
         &a->expert_distribution_recorder_buffer_size, 1, 999999,
         "forward passes the recorder keeps (unset = --eplb-rebalance-num-iterations)", NULL, 0},
        {"ep-dispatch-algorithm", NULL, WD_FLAG_STRING, &a->ep_dispatch_algorithm, 1, 0,
         "replica choice for redundant experts: static or dynamic (unset = static)", NULL, 0},
        {"init-expert-location", NULL, WD_FLAG_STRING, &a->init_expert_location, 1, 0,
         "initial expert placement: trivial or a saved placement file", NULL, 0},
        {"print-layout", NULL, WD_FLAG_BOOL, &a->print_layout, 1, 0,
         "print the parallel layout as JSON and exit (no model is loaded)", NULL, 0},
    };
    if (cap < WD_SERVER_ARGS_N_FLAGS)
        return -1;
    memcpy(out, flags, sizeof(flags));
    return WD_SERVER_ARGS_N_FLAGS;
}

/* Layout choices only: what wd_server_args_to_parallel needs. */
static enum wd_status check_layout_choices(const char **backend, const char **mode, int *backend_i,
                                           int *mode_i, struct wd_error *err)
{
    WD_CHECK(check_choice(&a2a_choices, backend, backend_i, err));
    return check_choice(&mode_choices, mode, mode_i, err);
}

enum wd_status wd_server_args_finalize(struct wd_server_args *a, struct wd_error *err)
{
    WD_CHECK(check_layout_choices(&a->moe_a2a_backend, &a->deepep_mode, NULL, NULL, err));
    WD_CHECK(check_choice(&eplb_choices, &a->eplb_algorithm, NULL, err));
    if (a->expert_distribution_recorder_mode)
        WD_CHECK(check_choice(&recorder_choices, &a->expert_distribution_recorder_mode, NULL, err));
    if (a->ep_dispatch_algorithm)
        WD_CHECK(check_choice(&dispatch_choices, &a->ep_dispatch_algorithm, NULL, err));
    if (a->moe_dense_tp_size > 1)
        return wd_error_set(err, WD_ERR_INVALID,
                            "moe_dense_tp_size only support 1 and None currently (got %d)",
                            a->moe_dense_tp_size);
    if (!a->init_expert_location || !a->init_expert_location[0])
        return wd_error_set(err, WD_ERR_INVALID,
                            "--init-expert-location needs 'trivial' or a file path");
    if (strcmp(a->init_expert_location, "trivial") != 0 &&
        access(a->init_expert_location, R_OK) != 0)
        return wd_error_set(err, WD_ERR_NOT_FOUND, "--init-expert-location %s: %m",
                            a->init_expert_location);

    /* SGLang's order: the a2a backend fixes ep_size before the EPLB checks read it. */
    int ep_size = strcmp(a->moe_a2a_backend, "deepep") == 0 ? a->tp_size : a->ep_size;
    if (a->enable_eplb && !a->expert_distribution_recorder_mode) {
        a->expert_distribution_recorder_mode = recorder_supported[0]; /* "stat" */
        wd_log(WD_LOG_WARN, "config",
               "EPLB is enabled. The expert_distribution_recorder_mode is automatically set.");
    }
    /* SGLang: EPLB on or an initial location given -> static. Its default location is
     * "trivial" (never None), so an unset algorithm always ends up static. */
    if (!a->ep_dispatch_algorithm) {
        a->ep_dispatch_algorithm = dispatch_supported[0]; /* "static" */
        if (a->enable_eplb)
            wd_log(WD_LOG_INFO, "config",
                   "EPLB is enabled or init_expert_location is provided. ep_dispatch_algorithm "
                   "is configured.");
    }
    if (a->enable_eplb && ep_size <= 1)
        return wd_error_set(err, WD_ERR_INVALID,
                            "--enable-eplb needs expert parallelism: ep_size must be > 1 (got %d)",
                            ep_size);
    if (!a->expert_distribution_recorder_buffer_size)
        a->expert_distribution_recorder_buffer_size = a->eplb_rebalance_num_iterations;
    /* SGLang's EPLBManager: a shorter period would rebalance on stale buffer slots. Its
     * message says "greater" for ">=". */
    if (a->enable_eplb &&
        a->eplb_rebalance_num_iterations < a->expert_distribution_recorder_buffer_size)
        return wd_error_set(err, WD_ERR_INVALID,
                            "eplb_rebalance_num_iterations must be greater than "
                            "expert_distribution_recorder_buffer_size (%d < %d)",
                            a->eplb_rebalance_num_iterations,
                            a->expert_distribution_recorder_buffer_size);
    return WD_OK;
}

enum wd_status wd_server_args_to_parallel(const struct wd_server_args *a,
                                          struct wd_parallel_args *p, struct wd_error *err)
{
    const char *backend = a->moe_a2a_backend, *mode = a->deepep_mode;
    int backend_i = 0, mode_i = 0;
    WD_CHECK(check_layout_choices(&backend, &mode, &backend_i, &mode_i, err));
    struct wd_parallel_args out;
    wd_parallel_args_init(&out);
    if (a->dist_init_addr) {
        size_t n = strlen(a->dist_init_addr);
        if (n >= sizeof(out.dist_init_addr))
            return wd_error_set(err, WD_ERR_INVALID,
                                "--dist-init-addr is longer than %zu characters",
                                sizeof(out.dist_init_addr) - 1);
        memcpy(out.dist_init_addr, a->dist_init_addr, n + 1);
    }
    out.tp_size = a->tp_size;
    out.dp_size = a->dp_size;
    out.ep_size = a->ep_size;
    out.nnodes = a->nnodes;
    out.node_rank = a->node_rank;
    out.enable_dp_attention = a->enable_dp_attention;
    out.moe_dense_tp_size = a->moe_dense_tp_size;
    /* The choice arrays list the enums in order. */
    out.a2a_backend = (enum wd_a2a_backend)backend_i;
    out.deepep_mode = (enum wd_deepep_mode)mode_i;
    *p = out;
    return WD_OK;
}
