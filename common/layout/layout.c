/*
 * Parallel layout: SGLang's flag adjustments and checks (server_args.py), its group
 * enumeration (parallel_state.initialize_model_parallel) and its per-rank indices
 * (compute_dp_attention_world_info, moe_ep_rank in the engine launcher), rewritten for
 * one instance with pp_size 1. Error texts reproduce SGLang's wording where SGLang has a
 * message; where SGLang only asserts, the message is ours and names both numbers.
 * Everything is computed once into one allocation set owned by struct wd_layout.
 */
#include "common/layout/layout.h"

#include "common/comm/rendezvous.h"

#include <jansson.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util/log.h"

void wd_parallel_args_init(struct wd_parallel_args *args)
{
    memset(args, 0, sizeof(*args));
    args->tp_size = args->dp_size = args->ep_size = args->pp_size = 1;
    args->nnodes = 1;
    args->a2a_backend = WD_A2A_NONE;
    args->deepep_mode = WD_DEEPEP_AUTO;
}

const int *wd_group_set_members(const struct wd_group_set *set, int g)
{
    WD_ASSERT(g >= 0 && g < set->n_groups);
    return set->ranks + (size_t)g * (size_t)set->group_size;
}

/* --dist-init-addr: host:port, [v6addr]:port (the rendezvous' parser), with SGLang's
 * message when it is not one. */
static enum wd_status parse_dist_init_addr(const char *addr, char *host, size_t host_cap,
                                           int *port_p, struct wd_error *err)
{
    if (wd_rdzv_parse_addr(addr, host, host_cap, port_p, NULL) == WD_OK)
        return WD_OK;
    return wd_error_set(err, WD_ERR_INVALID,
                        "please provide --dist-init-addr as host:port of head node (got '%s')",
                        addr);
}

/* Flag-level checks: sizes, nodes, address, and SGLang's adjustments, written into l. */
static enum wd_status check_args(const struct wd_parallel_args *a, struct wd_layout *l,
                                 struct wd_error *err)
{
    static const struct {
        const char *name;
        size_t off;
    } sizes[] = {
        {"tp_size", offsetof(struct wd_parallel_args, tp_size)},
        {"dp_size", offsetof(struct wd_parallel_args, dp_size)},
        {"ep_size", offsetof(struct wd_parallel_args, ep_size)},
        {"pp_size", offsetof(struct wd_parallel_args, pp_size)},
        {"nnodes", offsetof(struct wd_parallel_args, nnodes)},
    };
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        int v = *(const int *)((const char *)a + sizes[i].off);
        if (v < 1)
            return wd_error_set(err, WD_ERR_INVALID, "%s must be at least 1, got %d", sizes[i].name,
                                v);
    }
    if (a->pp_size != 1)
        return wd_error_set(err, WD_ERR_UNSUPPORTED,
                            "pipeline parallelism (pp_size %d) is not supported by wideep",
                            a->pp_size);
    if ((unsigned)a->a2a_backend > WD_A2A_DEEPEP)
        return wd_error_set(err, WD_ERR_INVALID, "unknown moe_a2a_backend %d", (int)a->a2a_backend);
    if ((unsigned)a->deepep_mode > WD_DEEPEP_LOW_LATENCY)
        return wd_error_set(err, WD_ERR_INVALID, "unknown deepep_mode %d", (int)a->deepep_mode);
    if (a->moe_dense_tp_size != 0 && a->moe_dense_tp_size != 1)
        return wd_error_set(err, WD_ERR_INVALID,
                            "moe_dense_tp_size only support 1 and None currently (got %d)",
                            a->moe_dense_tp_size);

    l->tp_size = a->tp_size;
    l->pp_size = a->pp_size;
    l->dp_size = a->dp_size;
    l->ep_size = a->ep_size;
    l->a2a_backend = a->a2a_backend;
    l->deepep_mode = a->deepep_mode;
    l->moe_dense_tp_size = a->moe_dense_tp_size;
    l->nnodes = a->nnodes;
    l->node_rank = a->node_rank;
    /* SGLang (_handle_data_parallelism): with one DP rank, DP attention is silently off. */
    l->enable_dp_attention = a->enable_dp_attention && a->dp_size > 1;
    /* SGLang (_handle_a2a_moe): DeepEP spans the whole TP group, whatever --ep said. */
    if (a->a2a_backend == WD_A2A_DEEPEP) {
        l->ep_size = a->tp_size;
        wd_log(WD_LOG_WARN, "layout",
               "DeepEP MoE is enabled. The expert parallel size is adjusted to be the same as "
               "the tensor parallel size[%d].",
               a->tp_size);
    }

    if ((long long)a->tp_size * a->pp_size > WD_LAYOUT_MAX_WORLD)
        return wd_error_set(err, WD_ERR_INVALID,
                            "tp_size %d x pp_size %d is more than wideep's %d ranks per instance",
                            a->tp_size, a->pp_size, WD_LAYOUT_MAX_WORLD);
    l->world_size = a->tp_size * a->pp_size;

    /* SGLang (check_server_args), in its order. */
    if (l->world_size % a->nnodes != 0)
        return wd_error_set(err, WD_ERR_INVALID,
                            "tp_size must be divisible by number of nodes (tp_size %d, nnodes %d)",
                            a->tp_size, a->nnodes);
    if (a->dp_size > 1 && a->nnodes != 1 && !l->enable_dp_attention)
        return wd_error_set(err, WD_ERR_INVALID,
                            "multi-node data parallel is not supported unless dp attention!");
    if (a->node_rank < 0 || a->node_rank >= a->nnodes)
        return wd_error_set(err, WD_ERR_INVALID, "node_rank %d must be in [0, nnodes %d)",
                            a->node_rank, a->nnodes);
    if (a->dist_init_addr[0]) {
        if (!memchr(a->dist_init_addr, 0, sizeof(a->dist_init_addr)))
            return wd_error_set(err, WD_ERR_INVALID, "dist_init_addr is not terminated");
        WD_CHECK(parse_dist_init_addr(a->dist_init_addr, l->dist_init_host,
                                      sizeof(l->dist_init_host), &l->dist_init_port, err));
    } else if (a->nnodes > 1) {
        return wd_error_set(err, WD_ERR_INVALID,
                            "please provide --dist-init-addr as host:port of head node "
                            "(needed with nnodes %d)",
                            a->nnodes);
    }

    /* Data parallelism without DP attention means dp_size independent TP replicas, each a
     * world of its own; wideep serves one instance per process tree. */
    if (a->dp_size > 1 && !l->enable_dp_attention)
        return wd_error_set(err, WD_ERR_UNSUPPORTED,
                            "data-parallel replicas (dp_size %d without --enable-dp-attention) "
                            "are not supported by wideep; add --enable-dp-attention or run one "
                            "server per replica",
                            a->dp_size);
    /* SGLang asserts tp_size % dp_size == 0 for DP attention (no message of its own). */
    if (l->enable_dp_attention && a->tp_size % a->dp_size != 0)
        return wd_error_set(err, WD_ERR_INVALID,
                            "tp_size %d must be divisible by dp_size %d with DP attention",
                            a->tp_size, a->dp_size);
    /* The seeds' words (SGLang's model runner says "ep_size" in the same sentence). */
    if (l->ep_size > a->tp_size || a->tp_size % l->ep_size != 0)
        return wd_error_set(err, WD_ERR_INVALID, "tp_size %d must be divisible by moe_ep_size %d",
                            a->tp_size, l->ep_size);
    return WD_OK;
}

/* Shape guards. SGLang checks the expert intermediate size only for block-quantized
 * models; wideep splits it across moe_tp ranks for every model, so it always checks. */
static enum wd_status check_dims(const struct wd_layout *l, const struct wd_layout_model_dims *d,
                                 struct wd_error *err)
{
    if (d->num_redundant_experts < 0)
        return wd_error_set(err, WD_ERR_INVALID, "ep_num_redundant_experts must be >= 0, got %d",
                            d->num_redundant_experts);
    if (d->num_experts > 0) {
        long long physical = (long long)d->num_experts + d->num_redundant_experts;
        if (physical % l->moe_ep_size != 0)
            return wd_error_set(err, WD_ERR_INVALID,
                                "num_experts %lld (%d routed + %d redundant) must be divisible by "
                                "moe_ep_size %d",
                                physical, d->num_experts, d->num_redundant_experts, l->moe_ep_size);
    }
    if (d->moe_intermediate_size > 0) {
        int mi = d->moe_intermediate_size, mtp = l->moe_tp_size;
        if (mi % mtp != 0)
            return wd_error_set(err, WD_ERR_INVALID,
                                "moe_intermediate_size %d must be divisible by moe_tp_size (%d) "
                                "which is tp_size (%d) divided by moe_ep_size (%d).",
                                mi, mtp, l->tp_size, l->moe_ep_size);
        /* When even the whole expert (moe_tp 1) is not a multiple of the block, no --tp/--ep
         * helps: say the checkpoint itself does not fit, not how to change the flags. */
        if (d->weight_block_size_n > 0 && mi % d->weight_block_size_n != 0)
            return wd_error_set(
                err, WD_ERR_INVALID,
                "For quantized MoE models, please make sure (moe_intermediate_size=%d / "
                "moe_tp_size=%d) %% weight_block_size_n=%d == 0. No --tp / --ep can fix this: "
                "moe_intermediate_size %d is not a multiple of the FP8 block size %d even "
                "unsplit, so this checkpoint cannot be served with its weight_block_size.",
                mi, mtp, d->weight_block_size_n, mi, d->weight_block_size_n);
        if (d->weight_block_size_n > 0 && (mi / mtp) % d->weight_block_size_n != 0)
            return wd_error_set(
                err, WD_ERR_INVALID,
                "For quantized MoE models, please make sure (moe_intermediate_size=%d / "
                "moe_tp_size=%d) %% weight_block_size_n=%d == 0 where moe_tp_size is equal to "
                "tp_size (%d) divided by ep_size (%d). You can fix this by setting arguments "
                "`--tp` and `--ep` correctly.",
                mi, mtp, d->weight_block_size_n, l->tp_size, l->moe_ep_size);
    }
    if (d->num_attention_heads > 0 && d->num_attention_heads % l->attn_tp_size != 0)
        return wd_error_set(err, WD_ERR_INVALID,
                            "num_attention_heads %d must be divisible by attn_tp_size %d",
                            d->num_attention_heads, l->attn_tp_size);
    /* KV heads are split when there are enough of them and replicated otherwise, as in
     * SGLang's attention layers. */
    if (d->num_key_value_heads > 0) {
        int kv = d->num_key_value_heads, atp = l->attn_tp_size;
        if (kv >= atp && kv % atp != 0)
            return wd_error_set(err, WD_ERR_INVALID,
                                "num_key_value_heads %d must be divisible by attn_tp_size %d", kv,
                                atp);
        if (kv < atp && atp % kv != 0)
            return wd_error_set(err, WD_ERR_INVALID,
                                "attn_tp_size %d must be divisible by num_key_value_heads %d", atp,
                                kv);
    }
    if (d->intermediate_size > 0 && d->intermediate_size % l->dense_tp_size != 0)
        return wd_error_set(err, WD_ERR_INVALID,
                            "intermediate_size %d must be divisible by the dense MLP's tp_size %d "
                            "(--moe-dense-tp-size 1 keeps dense layers whole)",
                            d->intermediate_size, l->dense_tp_size);
    return WD_OK;
}

static enum wd_status group_set_alloc(struct wd_group_set *s, int n_groups, int group_size,
                                      struct wd_error *err)
{
    s->n_groups = n_groups;
    s->group_size = group_size;
    s->ranks = malloc((size_t)n_groups * (size_t)group_size * sizeof(int));
    if (!s->ranks)
        return wd_error_set(err, WD_ERR_NOMEM, "out of memory for the layout's groups");
    return WD_OK;
}

/* The groups of the single TP group (pp_size 1, so the TP group is the world). */
static enum wd_status build_groups(struct wd_layout *l, struct wd_error *err)
{
    int tp = l->tp_size, atp = l->attn_tp_size, adp = l->attn_dp_size;
    int ep = l->moe_ep_size, mtp = l->moe_tp_size;
    WD_CHECK(group_set_alloc(&l->tp_groups, 1, tp, err));
    WD_CHECK(group_set_alloc(&l->attn_tp_groups, adp, atp, err));
    WD_CHECK(group_set_alloc(&l->moe_ep_groups, mtp, ep, err));
    WD_CHECK(group_set_alloc(&l->moe_tp_groups, ep, mtp, err));
    for (int r = 0; r < tp; r++)
        l->tp_groups.ranks[r] = r;
    /* Attention TP: DP rank d owns the contiguous block [d * atp, (d + 1) * atp). */
    for (int d = 0; d < adp; d++)
        for (int k = 0; k < atp; k++)
            l->attn_tp_groups.ranks[d * atp + k] = d * atp + k;
    /* MoE EP: one group per MoE-TP index t, ranks t, t + mtp, t + 2 mtp, ... */
    for (int t = 0; t < mtp; t++)
        for (int k = 0; k < ep; k++)
            l->moe_ep_groups.ranks[t * ep + k] = t + k * mtp;
    /* MoE TP: EP rank e owns the contiguous block [e * mtp, (e + 1) * mtp). */
    for (int e = 0; e < ep; e++)
        for (int k = 0; k < mtp; k++)
            l->moe_tp_groups.ranks[e * mtp + k] = e * mtp + k;
    return WD_OK;
}

static void fill_prefix(const struct wd_layout *l, struct wd_rank_layout *r)
{
    /* SGLang's run_scheduler_process: " DP{dp}" when the rank has a DP rank (DP attention),
     * " TP{tp}" when tp_size > 1, " EP{ep}" when ep_size > 1. We keep it without the
     * leading space; the log line adds its own separator. */
    size_t k = 0, cap = sizeof(r->prefix);
    r->prefix[0] = 0;
    if (l->enable_dp_attention)
        k += (size_t)snprintf(r->prefix + k, cap - k, "DP%d", r->attn_dp_rank);
    if (l->tp_size > 1 && k < cap)
        k += (size_t)snprintf(r->prefix + k, cap - k, "%sTP%d", k ? " " : "", r->tp_rank);
    if (l->ep_size > 1 && k < cap)
        snprintf(r->prefix + k, cap - k, "%sEP%d", k ? " " : "", r->moe_ep_rank);
}

static void build_ranks(struct wd_layout *l)
{
    for (int rank = 0; rank < l->world_size; rank++) {
        struct wd_rank_layout *r = &l->ranks[rank];
        r->rank = rank;
        r->tp_rank = rank % l->tp_size;
        r->attn_tp_rank = r->tp_rank % l->attn_tp_size;
        r->attn_dp_rank = r->tp_rank / l->attn_tp_size;
        r->moe_ep_rank = r->tp_rank / (l->tp_size / l->ep_size);
        r->moe_tp_rank = r->tp_rank % l->moe_tp_size;
        r->node_rank = rank / l->ranks_per_node;
        r->local_rank = rank % l->ranks_per_node;
        fill_prefix(l, r);
    }
}

enum wd_status wd_layout_create(const struct wd_parallel_args *args,
                                const struct wd_layout_model_dims *dims,
                                struct wd_layout **layout_p, struct wd_error *err)
{
    struct wd_layout *l = calloc(1, sizeof(*l));
    if (!l)
        return wd_error_set(err, WD_ERR_NOMEM, "out of memory for the layout");
    enum wd_status st = check_args(args, l, err);
    if (st != WD_OK)
        goto fail;
    l->attn_dp_size = l->enable_dp_attention ? l->dp_size : 1;
    l->attn_tp_size = l->tp_size / l->attn_dp_size;
    l->moe_ep_size = l->ep_size;
    l->moe_tp_size = l->tp_size / l->ep_size;
    l->dense_tp_size = l->moe_dense_tp_size == 1 ? 1 : l->tp_size;
    l->ranks_per_node = l->world_size / l->nnodes;
    if (dims && (st = check_dims(l, dims, err)) != WD_OK)
        goto fail;
    if ((st = build_groups(l, err)) != WD_OK)
        goto fail;
    l->ranks = calloc((size_t)l->world_size, sizeof(*l->ranks));
    if (!l->ranks) {
        st = wd_error_set(err, WD_ERR_NOMEM, "out of memory for the layout's ranks");
        goto fail;
    }
    build_ranks(l);
    *layout_p = l;
    return WD_OK;
fail:
    wd_layout_destroy(l);
    return st;
}

void wd_layout_destroy(struct wd_layout *l)
{
    if (!l)
        return;
    free(l->tp_groups.ranks);
    free(l->attn_tp_groups.ranks);
    free(l->moe_ep_groups.ranks);
    free(l->moe_tp_groups.ranks);
    free(l->ranks);
    free(l);
}

/* ---- JSON ---------------------------------------------------------------------------- */

static json_t *groups_json(const struct wd_group_set *s)
{
    json_t *outer = json_array();
    for (int g = 0; outer && g < s->n_groups; g++) {
        json_t *inner = json_array();
        const int *m = wd_group_set_members(s, g);
        for (int k = 0; inner && k < s->group_size; k++)
            if (json_array_append_new(inner, json_integer(m[k])) != 0) {
                json_decref(inner);
                inner = NULL;
            }
        if (!inner || json_array_append_new(outer, inner) != 0) {
            json_decref(outer);
            return NULL;
        }
    }
    return outer;
}

/* json_object_set_new steals value even on failure; a NULL value fails. */
static int set(json_t *o, const char *key, json_t *value)
{
    return json_object_set_new(o, key, value) == 0 ? 0 : -1;
}

static json_t *rank_json(const struct wd_rank_layout *r)
{
    json_t *o = json_object();
    if (!o)
        return NULL;
    int bad = set(o, "rank", json_integer(r->rank)) | set(o, "tp_rank", json_integer(r->tp_rank)) |
              set(o, "attn_tp_rank", json_integer(r->attn_tp_rank)) |
              set(o, "attn_dp_rank", json_integer(r->attn_dp_rank)) |
              set(o, "moe_ep_rank", json_integer(r->moe_ep_rank)) |
              set(o, "moe_tp_rank", json_integer(r->moe_tp_rank)) |
              set(o, "prefix", json_string(r->prefix));
    if (bad) {
        json_decref(o);
        return NULL;
    }
    return o;
}

enum wd_status wd_layout_to_json(const struct wd_layout *l, char **json_p, struct wd_error *err)
{
    json_t *o = json_object(), *ranks = json_array();
    int bad = !o || !ranks;
    for (int i = 0; !bad && i < l->world_size; i++)
        bad = json_array_append_new(ranks, rank_json(&l->ranks[i])) != 0;
    if (!bad)
        bad = set(o, "world_size", json_integer(l->world_size)) |
              set(o, "tp_size", json_integer(l->tp_size)) |
              set(o, "attn_tp_size", json_integer(l->attn_tp_size)) |
              set(o, "attn_dp_size", json_integer(l->attn_dp_size)) |
              set(o, "moe_ep_size", json_integer(l->moe_ep_size)) |
              set(o, "moe_tp_size", json_integer(l->moe_tp_size)) |
              set(o, "tp_groups", groups_json(&l->tp_groups)) |
              set(o, "attn_tp_groups", groups_json(&l->attn_tp_groups)) |
              set(o, "moe_ep_groups", groups_json(&l->moe_ep_groups)) |
              set(o, "moe_tp_groups", groups_json(&l->moe_tp_groups));
    if (!bad) {
        bad = set(o, "ranks", ranks);
        ranks = NULL; /* owned by o now, even on failure */
    }
    char *text = bad ? NULL : json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(ranks);
    json_decref(o);
    if (!text)
        return wd_error_set(err, WD_ERR_NOMEM, "out of memory writing the layout JSON");
    *json_p = text;
    return WD_OK;
}
