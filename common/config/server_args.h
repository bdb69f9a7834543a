/*
 * The expert-parallel server flags, spelled as SGLang spells them: the parallel layout
 * (--tp-size, --dp-size, --ep-size and their aliases, --enable-dp-attention,
 * --moe-a2a-backend, --deepep-mode, --moe-dense-tp-size, --nnodes, --node-rank,
 * --dist-init-addr, and wideep's --dist-init-token) and EPLB (--enable-eplb,
 * --ep-num-redundant-experts, ...), with SGLang's defaults. A binary appends these
 * entries to its own flag table (wd_server_args_flags), parses, then calls
 * wd_server_args_finalize, which refuses values SGLang has but wideep does not implement
 * (mooncake, ...) with a clear error and applies SGLang's EPLB-derived defaults. String
 * fields point into argv or into static storage; the struct owns nothing.
 */
#ifndef WD_CONFIG_SERVER_ARGS_H
#define WD_CONFIG_SERVER_ARGS_H

#include "common/config/flags.h"
#include "common/layout/layout.h"
#include "common/util/status.h"

/* Entries wd_server_args_flags appends. */
#define WD_SERVER_ARGS_N_FLAGS 20

struct wd_server_args {
    /* parallel layout */
    int tp_size, dp_size, ep_size; /* 1, 1, 1 */
    int enable_dp_attention;       /* bool, 0 */
    const char *moe_a2a_backend;   /* "none" | "deepep" */
    const char *deepep_mode;       /* "auto" | "normal" | "low_latency" */
    int moe_dense_tp_size;         /* 0 = None (SGLang's default) or 1 */
    int nnodes, node_rank;         /* 1, 0 */
    const char *dist_init_addr;    /* NULL = not given; "host:port" */
    const char *dist_init_token;   /* NULL = not given (the empty token) */
    /* EPLB */
    int enable_eplb;                   /* bool, 0 */
    int ep_num_redundant_experts;      /* 0 */
    const char *eplb_algorithm;        /* "auto" | "deepseek" | "deepseek_hierarchical" */
    int eplb_rebalance_num_iterations; /* 1000 forward passes */
    const char *expert_distribution_recorder_mode; /* NULL = None | stat | per_pass |
                                                      per_token */
    int expert_distribution_recorder_buffer_size;  /* 0 = None */
    const char *ep_dispatch_algorithm;             /* NULL = None | "static" | "dynamic" */
    const char *init_expert_location;              /* "trivial" or a file path */
    int print_layout;                              /* bool: --print-layout was given */
};

/* SGLang's defaults (noted beside each field). */
void wd_server_args_init(struct wd_server_args *a);

/* Writes the flag entries bound to a's fields into out[0..n) and returns n
 * (WD_SERVER_ARGS_N_FLAGS), or -1 when cap is smaller. a must outlive the table. */
int wd_server_args_flags(struct wd_server_args *a, struct wd_flag *out, int cap);

/* After parsing: checks the string choices (values SGLang knows but wideep does not
 * implement are WD_ERR_UNSUPPORTED naming the value and the supported ones; unknown
 * values WD_ERR_INVALID), then applies SGLang's EPLB rules: --enable-eplb sets the
 * recorder mode to "stat" when unset and needs ep_size > 1 (after --moe-a2a-backend
 * deepep made it tp_size); the dispatch algorithm defaults to "static" when EPLB is on or
 * an initial expert location is given; the recorder buffer size defaults to
 * --eplb-rebalance-num-iterations; with EPLB the rebalance period must be >= the buffer.
 * Choice strings are replaced by pointers to static storage. Logs what it sets. */
enum wd_status wd_server_args_finalize(struct wd_server_args *a, struct wd_error *err);

/* The layout part as struct wd_parallel_args (pp_size 1). Checks the choices as
 * wd_server_args_finalize does and that --dist-init-addr fits. */
enum wd_status wd_server_args_to_parallel(const struct wd_server_args *a,
                                          struct wd_parallel_args *p, struct wd_error *err);

#endif
