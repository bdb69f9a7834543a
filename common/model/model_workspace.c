/* Workspace sizing: a table of (pointer, bytes) carved from one aligned block. */
#include "common/model/model_workspace.h"

#include <stdlib.h>
#include <string.h>

#include "common/model/model.h"
#include "kernels/attention_mla_cpu.h"

struct carve {
    void **ptr;
    size_t bytes;
};

static size_t round64(size_t n)
{
    return (n + 63) & ~(size_t)63;
}

enum wd_status wd_model_workspace_create(const struct wd_model *m, struct wd_model_workspace **ws_p,
                                         struct wd_error *err)
{
    const struct wd_model_config *c = &m->cfg;
    size_t T = (size_t)m->opt.max_batch_tokens, H = (size_t)c->hidden_size;
    size_t G = T * (size_t)m->shard.attn_dp_size; /* rows the MoE / dense layers may see */
    size_t E = (size_t)(c->n_routed_experts > 0 ? c->n_routed_experts : 1);
    size_t K = (size_t)(c->num_experts_per_tok > 0 ? c->num_experts_per_tok : 1);
    int k_row, v_row;
    wd_model_kv_geometry(m, &k_row, &v_row);
    size_t i_max = (size_t)c->intermediate_size;
    size_t i_moe = (size_t)c->moe_intermediate_size *
                   (size_t)(c->n_shared_experts > 1 ? c->n_shared_experts : 1);
    if (i_moe > i_max)
        i_max = i_moe;

    struct wd_model_workspace *ws = calloc(1, sizeof(*ws));
    if (!ws)
        return wd_error_set(err, WD_ERR_NOMEM, "workspace: out of memory");
    struct carve table[] = {
        {(void **)&ws->x, T * H * 4},
        {(void **)&ws->h, T * H * 4},
        {(void **)&ws->out, T * H * 4},
        {(void **)&ws->q, T * (size_t)m->n_heads * (size_t)m->qk_head_dim * 4},
        {(void **)&ws->q_a, T * (size_t)(c->q_lora_rank > 0 ? c->q_lora_rank : 1) * 4},
        {(void **)&ws->k, T * (size_t)k_row * 4},
        {(void **)&ws->v, T * (size_t)(v_row > 0 ? v_row : 1) * 4},
        {(void **)&ws->attn, T * (size_t)m->n_heads * (size_t)m->v_head_dim * 4},
        {(void **)&ws->mla,
         c->kv_lora_rank > 0 ? (size_t)wd_attention_mla_cpu_scratch(
                                   (int64_t)T, m->n_heads, c->kv_lora_rank, c->qk_rope_head_dim) *
                                   4
                             : 4},
        {(void **)&ws->router, G * E * 4},
        {(void **)&ws->topk_idx, G * K * 4},
        {(void **)&ws->topk_w, G * K * 4},
        {(void **)&ws->e_count, (E + 1) * 4},
        {(void **)&ws->e_token, G * K * 4},
        {(void **)&ws->e_weight, G * K * 4},
        {(void **)&ws->e_in, G * H * 4},
        {(void **)&ws->e_out, G * H * 4},
        {(void **)&ws->mlp_tmp, G * 2 * i_max * 4},
        {(void **)&ws->sel, (size_t)m->opt.max_logit_rows * H * 4},
        {(void **)&ws->g_h, G * H * 4},
        {(void **)&ws->g_out, G * H * 4},
        {(void **)&ws->a2a_idx, T * K * 4},
        {(void **)&ws->phys_idx, G * K * 4},
        {(void **)&ws->a2a_w, T * K * 4},
        {(void **)&ws->mode_vote, (1 + WD_MODEL_MAX_RANKS) * 4},
    };
    size_t n = sizeof(table) / sizeof(table[0]), total = 0;
    for (size_t i = 0; i < n; i++)
        total += round64(table[i].bytes);
    ws->block = aligned_alloc(64, total);
    if (!ws->block) {
        free(ws);
        return wd_error_set(err, WD_ERR_NOMEM,
                            "workspace: cannot allocate %zu bytes for %zu tokens", total, T);
    }
    memset(ws->block, 0, total);
    unsigned char *p = ws->block;
    for (size_t i = 0; i < n; i++) {
        *table[i].ptr = p;
        p += round64(table[i].bytes);
    }
    *ws_p = ws;
    return WD_OK;
}

void wd_model_workspace_destroy(struct wd_model_workspace *ws)
{
    if (!ws)
        return;
    free(ws->block);
    free(ws);
}
