/*
 * libFuzzer target: a command line of layout flags (whitespace-separated words) through
 * the flag table, wd_server_args_finalize, wd_server_args_to_parallel, wd_layout_create
 * (without and with model shapes) and wd_layout_to_json. Any layout that is accepted must
 * partition the ranks exactly once per group kind.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/config/server_args.h"
#include "common/layout/layout.h"
#include "common/util/log.h"

#define MAX_WORDS 64

static void check_partition(const struct wd_layout *l, const struct wd_group_set *s)
{
    if (s->n_groups * s->group_size != l->world_size)
        abort();
    char *seen = calloc((size_t)l->world_size, 1);
    if (!seen)
        abort();
    for (int i = 0; i < l->world_size; i++) {
        int r = s->ranks[i];
        if (r < 0 || r >= l->world_size || seen[r]++)
            abort();
    }
    free(seen);
}

static void build(const struct wd_parallel_args *p, const struct wd_layout_model_dims *dims)
{
    struct wd_layout *l = NULL;
    struct wd_error err;
    if (wd_layout_create(p, dims, &l, &err) != WD_OK)
        return;
    check_partition(l, &l->tp_groups);
    check_partition(l, &l->attn_tp_groups);
    check_partition(l, &l->moe_ep_groups);
    check_partition(l, &l->moe_tp_groups);
    for (int r = 0; r < l->world_size; r++)
        if (l->ranks[r].moe_ep_rank != r / l->moe_tp_size)
            abort();
    char *json = NULL;
    if (wd_layout_to_json(l, &json, &err) == WD_OK)
        free(json);
    wd_layout_destroy(l);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 4096)
        return 0;
    char *text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = 0;
    char *argv[MAX_WORDS + 1] = {"fuzz"};
    int argc = 1;
    for (char *w = strtok(text, " \t\n"); w && argc <= MAX_WORDS; w = strtok(NULL, " \t\n"))
        argv[argc++] = w;

    wd_log_set_level(WD_LOG_ERROR);
    struct wd_server_args sa;
    struct wd_flag flags[WD_SERVER_ARGS_N_FLAGS];
    wd_server_args_init(&sa);
    wd_server_args_flags(&sa, flags, WD_SERVER_ARGS_N_FLAGS);
    struct wd_error err;
    struct wd_parallel_args p;
    int help = 0;
    if (wd_flags_parse(flags, WD_SERVER_ARGS_N_FLAGS, argc, argv, &help, &err) == WD_OK &&
        wd_server_args_finalize(&sa, &err) == WD_OK &&
        wd_server_args_to_parallel(&sa, &p, &err) == WD_OK) {
        struct wd_layout_model_dims dims = {.num_experts = 256,
                                            .num_redundant_experts = sa.ep_num_redundant_experts,
                                            .moe_intermediate_size = 2048,
                                            .weight_block_size_n = 128,
                                            .num_attention_heads = 128,
                                            .num_key_value_heads = 128,
                                            .intermediate_size = 18432};
        build(&p, NULL);
        build(&p, &dims);
    }
    free(text);
    return 0;
}
