/*
 * --print-layout: parse the layout flags, build the layout and print it as JSON, without
 * loading a model (an optional --model-path reads only config.json, for the shape guards).
 * A front end for binaries to call from main, so it is the one place in the library that
 * writes to stdout; it never exits, it returns the exit code.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/config/flags.h"
#include "common/config/model_config.h"
#include "common/config/server_args.h"
#include "common/layout/layout.h"
#include "common/util/log.h"

void wd_layout_dims_from_model_config(const struct wd_model_config *cfg, int num_redundant_experts,
                                      struct wd_layout_model_dims *dims)
{
    memset(dims, 0, sizeof(*dims));
    dims->num_attention_heads = cfg->n_heads;
    dims->num_key_value_heads = cfg->n_kv_heads;
    if (cfg->n_routed_experts > 0) {
        dims->num_experts = cfg->n_routed_experts;
        dims->num_redundant_experts = num_redundant_experts;
        dims->moe_intermediate_size = cfg->moe_intermediate_size;
        dims->weight_block_size_n = cfg->is_fp8 ? cfg->fp8_block[0] : 0;
    }
    /* The dense MLP size matters only when some layer actually is dense. */
    for (int layer = 0; layer < cfg->n_layers; layer++)
        if (!wd_model_config_is_moe_layer(cfg, layer)) {
            dims->intermediate_size = cfg->intermediate_size;
            break;
        }
}

static const char *prog_name(int argc, char **argv)
{
    if (argc < 1 || !argv[0])
        return "wideep";
    const char *slash = strrchr(argv[0], '/');
    return slash ? slash + 1 : argv[0];
}

/* Parses, validates and builds; returns the exit code (0, 1 bad layout, 2 bad flags). */
static int build_and_print(struct wd_server_args *sa, const char *model_path, const char *prog)
{
    struct wd_error err = {0};
    struct wd_parallel_args pa;
    struct wd_model_config *cfg = NULL;
    struct wd_layout_model_dims dims;
    struct wd_layout *layout = NULL;
    char *json = NULL;
    int rc = 2;
    if (wd_server_args_finalize(sa, &err) != WD_OK ||
        wd_server_args_to_parallel(sa, &pa, &err) != WD_OK)
        goto out;
    rc = 1;
    if (model_path) {
        /* The config struct is large (mlp_only_layers); keep it off the stack. */
        cfg = malloc(sizeof(*cfg));
        if (!cfg) {
            wd_error_set(&err, WD_ERR_NOMEM, "out of memory");
            goto out;
        }
        if (wd_model_config_load(model_path, cfg, &err) != WD_OK)
            goto out;
        wd_layout_dims_from_model_config(cfg, sa->ep_num_redundant_experts, &dims);
    }
    if (wd_layout_create(&pa, model_path ? &dims : NULL, &layout, &err) != WD_OK ||
        wd_layout_to_json(layout, &json, &err) != WD_OK)
        goto out;
    printf("%s\n", json);
    fflush(stdout);
    rc = 0;
out:
    if (rc != 0)
        fprintf(stderr, "%s: %s\n", prog, err.msg);
    free(json);
    wd_layout_destroy(layout);
    free(cfg);
    return rc;
}

int wd_layout_print_main(int argc, char **argv)
{
    const char *prog = prog_name(argc, argv);
    struct wd_server_args sa;
    const char *model_path = NULL, *log_level = "warn";
    struct wd_flag flags[WD_SERVER_ARGS_N_FLAGS + 2];
    wd_server_args_init(&sa);
    int n = wd_server_args_flags(&sa, flags, WD_SERVER_ARGS_N_FLAGS);
    WD_ASSERT(n == WD_SERVER_ARGS_N_FLAGS);
    const struct wd_flag extra[2] = {
        {"model-path", NULL, WD_FLAG_STRING, &model_path, 1, 0,
         "model directory: its config.json adds the shape checks", NULL, 0},
        {"log-level", NULL, WD_FLAG_STRING, &log_level, 1, 0, "log level", "error,warn,info,debug",
         0},
    };
    memcpy(flags + n, extra, sizeof(extra));
    n += 2;
    struct wd_error err = {0};
    int help = 0;
    if (wd_flags_parse(flags, n, argc, argv, &help, &err) != WD_OK) {
        fprintf(stderr, "%s: %s\n", prog, err.msg);
        return 2;
    }
    if (help) {
        char usage[128];
        snprintf(usage, sizeof(usage), "usage: %s --print-layout [layout flags]", prog);
        wd_flags_print_help(flags, n, usage);
        return 0;
    }
    wd_log_set_level((enum wd_log_level)wd_log_level_parse(log_level));
    return build_and_print(&sa, model_path, prog);
}
