/*
 * The layer sequence of both architectures, written once:
 *   x = embed(ids)
 *   per layer: x += attn(rmsnorm(x)); x += mlp_or_moe(rmsnorm(x))
 *   logits = lm_head(rmsnorm(x[logit_rows]))
 * Attention is GQA with per-head q/k RMSNorm (Qwen3-MoE) or MLA with a latent
 * KV cache (DeepSeek-V3); the MLP is dense, or routed experts (+ shared
 * experts). Every row is computed independently and each token's expert
 * contributions are summed in expert-index order, so a request's results do
 * not depend on which other requests share its batch.
 */
#include <string.h>

#include "common/model/model.h"
#include "common/model/model_workspace.h"

/* The backend's ops, named as the forward uses them. */
static void linear(struct wd_model *m, const struct wd_weight *w, const float *x, int64_t n,
                   float *y)
{
    m->be.ops->linear(m->be.ctx, w, x, n, y);
}

static void rmsnorm(struct wd_model *m, const float *x, const float *gamma, int64_t n, int64_t dim,
                    float *y)
{
    m->be.ops->rmsnorm(m->be.ctx, x, gamma, n, dim, (float)m->cfg.rms_norm_eps, y);
}

static void rope(struct wd_model *m, float *x, int64_t n, int n_heads, int head_stride, int off,
                 const int32_t *pos)
{
    m->be.ops->rope(m->be.ctx, &m->rope, x, n, n_heads, head_stride, off, pos);
}

/* Sums a partial result over the ranks of a group (a no-op on a whole model). */
static enum wd_status reduce(struct wd_model *m, enum wd_model_group g, int group_size, float *buf,
                             size_t n, struct wd_error *err)
{
    if (group_size <= 1 || !m->opt.comm.all_reduce)
        return WD_OK;
    return m->opt.comm.all_reduce(m->opt.comm.ctx, g, buf, n, err);
}

static void add_inplace(struct wd_model *m, float *x, const float *y, size_t n)
{
    m->be.ops->add(m->be.ctx, x, y, (int64_t)n);
}

/* Gated MLP y = down(silu(gate x) * up x) for n rows of width H, using ws->mlp_tmp. */
static void mlp(struct wd_model *m, const struct wd_mlp_weights *w, const float *x, int64_t n,
                float *y)
{
    struct wd_mlp_group g = {.gate = &w->gate,
                             .up = &w->up,
                             .down = &w->down,
                             .x = x,
                             .n = n,
                             .tmp = m->ws->mlp_tmp,
                             .y = y};
    m->be.ops->mlp(m->be.ctx, &g, 1);
}

/* Most experts one grouped MLP call takes (a stack array; more simply make another call). */
#define MOE_WAVE 64

static void attention_gqa(struct wd_model *m, const struct wd_attn_weights *a,
                          const struct wd_kv_layer *kv, const struct wd_attn_batch *ab)
{
    struct wd_model_workspace *ws = m->ws;
    int64_t n = ab->n_tokens;
    int hd = m->cfg.head_dim;
    struct wd_linear_item qkv[3] = {{.w = &a->q_proj, .x = ws->h, .n = n, .y = ws->q},
                                    {.w = &a->k_proj, .x = ws->h, .n = n, .y = ws->k},
                                    {.w = &a->v_proj, .x = ws->h, .n = n, .y = ws->v}};
    m->be.ops->linear_many(m->be.ctx, qkv, 3);
    rmsnorm(m, ws->q, a->q_norm, n * m->n_heads, hd, ws->q);
    rmsnorm(m, ws->k, a->k_norm, n * m->n_kv_heads, hd, ws->k);
    rope(m, ws->q, n, m->n_heads, hd, 0, ab->tok_pos);
    rope(m, ws->k, n, m->n_kv_heads, hd, 0, ab->tok_pos);
    m->be.ops->kv_write(m->be.ctx, ws->k, ws->v, ab, kv);
    m->be.ops->attention_gqa(m->be.ctx, ws->q, ab, kv, m->n_heads, m->n_kv_heads, hd, m->attn_scale,
                             ws->attn);
    linear(m, &a->o_proj, ws->attn, n, ws->out);
}

static void attention_mla(struct wd_model *m, const struct wd_attn_weights *a,
                          const struct wd_kv_layer *kv, const struct wd_attn_batch *ab)
{
    const struct wd_model_config *c = &m->cfg;
    struct wd_model_workspace *ws = m->ws;
    int64_t n = ab->n_tokens;
    int lora = c->kv_lora_rank, rope_dim = c->qk_rope_head_dim, row = lora + rope_dim;
    /* The projections of h in one pass; then q's second half when q is low-rank. */
    int low_rank = c->q_lora_rank > 0;
    struct wd_linear_item proj[2] = {{.w = low_rank ? &a->q_a_proj : &a->q_proj,
                                      .x = ws->h,
                                      .n = n,
                                      .y = low_rank ? ws->q_a : ws->q},
                                     {.w = &a->kv_a_proj, .x = ws->h, .n = n, .y = ws->k}};
    m->be.ops->linear_many(m->be.ctx, proj, 2);
    if (low_rank) {
        rmsnorm(m, ws->q_a, a->q_a_norm, n, c->q_lora_rank, ws->q_a);
        linear(m, &a->q_b_proj, ws->q_a, n, ws->q);
    }
    /* Latent row: [c_kv (normed) | k_pe (roped)], exactly what the cache stores. */
    for (int64_t t = 0; t < n; t++)
        rmsnorm(m, ws->k + t * row, a->kv_a_norm, 1, lora, ws->k + t * row);
    rope(m, ws->q, n, m->n_heads, m->qk_head_dim, c->qk_nope_head_dim, ab->tok_pos);
    rope(m, ws->k, n, 1, row, lora, ab->tok_pos);
    m->be.ops->kv_write(m->be.ctx, ws->k, NULL, ab, kv);
    struct wd_mla_args mla = {.n_heads = m->n_heads,
                              .kv_lora_rank = lora,
                              .nope_dim = c->qk_nope_head_dim,
                              .rope_dim = rope_dim,
                              .v_dim = c->v_head_dim,
                              .kv_b = &a->kv_b_proj,
                              .uk_t = a->uk_t,
                              .scale = m->attn_scale,
                              .scratch = ws->mla};
    m->be.ops->attention_mla(m->be.ctx, ws->q, ab, kv, &mla, ws->attn);
    linear(m, &a->o_proj, ws->attn, n, ws->out);
}

/* EPLB: the logical experts of n rows -> physical slots, each block of rows through the
 * dispatch table of the DP rank it came from (blocks: [n_dispatch + 1] row offsets; NULL:
 * every row through table 0). Returns the routing to use: phys, or logical without EPLB. */
static const int32_t *to_physical(struct wd_model *m, int layer, const int32_t *logical, int64_t n,
                                  const int64_t *blocks, int32_t *phys)
{
    const struct wd_model_eplb *e = &m->opt.eplb;
    int K = m->cfg.num_experts_per_tok;
    if (!e->loc)
        return logical;
    if (!blocks || e->n_dispatch == 1) {
        wd_eplb_dispatch_topk(e->dispatch[0], layer, logical, (int)(n * K), phys);
        return phys;
    }
    for (int d = 0; d < e->n_dispatch; d++)
        if (blocks[d + 1] > blocks[d])
            wd_eplb_dispatch_topk(e->dispatch[d], layer, logical + blocks[d] * K,
                                  (int)((blocks[d + 1] - blocks[d]) * K), phys + blocks[d] * K);
    return phys;
}

/* The router of layer L on n rows: logits, then the family's top-k (Qwen3: softmax;
 * DeepSeek-V3: sigmoid, bias-corrected grouped choice, scaled weights) into ws->topk_*. */
static void gate(struct wd_model *m, const struct wd_layer_weights *L, const float *in, int64_t n)
{
    const struct wd_model_config *c = &m->cfg;
    struct wd_model_workspace *ws = m->ws;
    int E = c->n_routed_experts, K = c->num_experts_per_tok;
    linear(m, &L->router, in, n, ws->router);
    if (c->arch == WD_ARCH_DEEPSEEK_V3)
        m->be.ops->moe_gate_sigmoid_grouped(
            m->be.ctx, ws->router, n, E, K, c->n_group, c->topk_group, L->router_bias,
            c->norm_topk_prob, (float)c->routed_scaling_factor, ws->topk_idx, ws->topk_w);
    else
        m->be.ops->moe_gate_softmax_topk(m->be.ctx, ws->router, n, E, K, c->norm_topk_prob,
                                         ws->topk_idx, ws->topk_w);
}

/* Routed experts (+ shared experts) for the n rows of ws->h into ws->out. On a sharded
 * model each rank adds its experts' (and its slice's) share and the MoE group sums them;
 * shared experts split over the same group join that sum, whole ones are added after. */
static enum wd_status moe(struct wd_model *m, int layer, const float *in, int64_t n,
                          const int64_t *blocks, float *out, struct wd_error *err)
{
    const struct wd_layer_weights *L = &m->layers[layer];
    const struct wd_model_config *c = &m->cfg;
    struct wd_model_workspace *ws = m->ws;
    int K = c->num_experts_per_tok;
    size_t H = (size_t)c->hidden_size;

    gate(m, L, in, n);
    if (m->opt.recorder)
        wd_expert_recorder_add(m->opt.recorder, layer, ws->topk_idx, n);
    const int32_t *route = to_physical(m, layer, ws->topk_idx, n, blocks, ws->phys_idx);

    /* Counting sort of the (token, slot) assignments to this rank's experts, by expert;
     * tokens stay in batch order. Experts are indexed locally: e - expert_begin. */
    int eb = m->expert_begin, nl = m->expert_end - m->expert_begin;
    int32_t *off = ws->e_count;
    memset(off, 0, (size_t)(nl + 1) * sizeof(int32_t));
    for (int64_t i = 0; i < n * K; i++) {
        int e = route[i] - eb;
        if (e >= 0 && e < nl)
            off[e + 1]++;
    }
    for (int e = 0; e < nl; e++)
        off[e + 1] += off[e];
    for (int64_t i = 0; i < n * K; i++) {
        int e = route[i] - eb;
        if (e < 0 || e >= nl)
            continue;
        int32_t at = off[e]++;
        ws->e_token[at] = (int32_t)(i / K);
        ws->e_weight[at] = ws->topk_w[i];
    }
    for (int e = nl; e > 0; e--) /* shift back: off[e] = start of local expert e */
        off[e] = off[e - 1];
    off[0] = 0;

    /* Waves of consecutive experts whose rows fit e_in (G rows; one expert always does) run
     * in one grouped MLP call; then each token adds its experts' outputs in expert order.
     * Whole shared experts join the last wave when their n rows fit too (one pool pass
     * fewer each way, and more tasks to balance); their output waits in e_out until it is
     * added, after the routed sum and its reduce, as before. */
    memset(out, 0, (size_t)n * H * sizeof(float));
    int64_t cap = (int64_t)m->opt.max_batch_tokens * m->shard.attn_dp_size;
    int shared_split = m->shard.dense_tp_size > 1;
    const float *shared_out = NULL;
    for (int e = 0; e < nl;) {
        struct wd_mlp_group grp[MOE_WAVE];
        int ng = 0, e0 = e;
        int64_t rows = 0;
        for (; e < nl && ng < MOE_WAVE; e++) {
            int32_t begin = off[e], cnt = off[e + 1] - off[e];
            if (cnt == 0)
                continue;
            if (rows + cnt > cap)
                break;
            const struct wd_mlp_weights *w = &L->experts[e];
            for (int32_t j = 0; j < cnt; j++)
                memcpy(ws->e_in + (size_t)(rows + j) * H, in + (size_t)ws->e_token[begin + j] * H,
                       H * sizeof(float));
            grp[ng++] = (struct wd_mlp_group){.gate = &w->gate,
                                              .up = &w->up,
                                              .down = &w->down,
                                              .x = ws->e_in + (size_t)rows * H,
                                              .n = cnt,
                                              .tmp = ws->mlp_tmp + rows * 2 * w->gate.rows,
                                              .y = ws->e_out + (size_t)rows * H};
            rows += cnt;
        }
        if (e == nl && L->has_shared && !shared_split && rows + n <= cap) {
            int64_t tmp_at = ng > 0 ? (grp[ng - 1].tmp - ws->mlp_tmp) +
                                          grp[ng - 1].n * 2 * grp[ng - 1].gate->rows
                                    : 0;
            grp[ng++] = (struct wd_mlp_group){.gate = &L->shared.gate,
                                              .up = &L->shared.up,
                                              .down = &L->shared.down,
                                              .x = in,
                                              .n = n,
                                              .tmp = ws->mlp_tmp + tmp_at,
                                              .y = ws->e_out + (size_t)rows * H};
            shared_out = grp[ng - 1].y;
        }
        m->be.ops->mlp(m->be.ctx, grp, ng);
        const float *src = ws->e_out;
        for (int32_t i = off[e0]; i < off[e]; i++, src += H) {
            float w = ws->e_weight[i];
            float *dst = out + (size_t)ws->e_token[i] * H;
            for (size_t d = 0; d < H; d++)
                dst[d] += w * src[d];
        }
    }
    if (L->has_shared && shared_split) {
        mlp(m, &L->shared, in, n, ws->e_out);
        add_inplace(m, out, ws->e_out, (size_t)n * H);
    }
    WD_CHECK(reduce(m, WD_GROUP_MOE, m->shard.moe_ep_size * m->shard.moe_tp_size, out,
                    (size_t)n * H, err));
    if (L->has_shared && !shared_split) {
        if (!shared_out) {
            mlp(m, &L->shared, in, n, ws->e_out);
            shared_out = ws->e_out;
        }
        add_inplace(m, out, shared_out, (size_t)n * H);
    }
    return WD_OK;
}

/* Gathers every DP rank's rows of ws->h into ws->g_h over group g (an all-reduce of
 * zero-padded blocks: one attention-TP rank of each DP rank contributes them); returns
 * the total and this rank's offset. */
static enum wd_status gather_dp_rows(struct wd_model *m, enum wd_model_group g, int64_t n,
                                     int64_t *total_p, int64_t *offset_p, int64_t *blocks,
                                     struct wd_error *err)
{
    struct wd_model_workspace *ws = m->ws;
    const struct wd_model_shard *sh = &m->shard;
    size_t H = (size_t)m->cfg.hidden_size;
    int dp = sh->attn_dp_size;
    float counts[WD_MODEL_MAX_DP];
    WD_ASSERT(dp <= WD_MODEL_MAX_DP);
    memset(counts, 0, sizeof(counts));
    int leader = sh->attn_tp_rank == 0;
    if (leader)
        counts[sh->attn_dp_rank] = (float)n;
    WD_CHECK(m->opt.comm.all_reduce(m->opt.comm.ctx, g, counts, (size_t)dp, err));
    int64_t total = 0, offset = 0;
    for (int d = 0; d < dp; d++) {
        if (d == sh->attn_dp_rank)
            offset = total;
        if (blocks)
            blocks[d] = total;
        total += (int64_t)counts[d];
    }
    if (blocks)
        blocks[dp] = total;
    WD_ASSERT(total <= (int64_t)m->opt.max_batch_tokens * dp);
    memset(ws->g_h, 0, (size_t)total * H * sizeof(float));
    if (leader)
        memcpy(ws->g_h + (size_t)offset * H, ws->h, (size_t)n * H * sizeof(float));
    WD_CHECK(m->opt.comm.all_reduce(m->opt.comm.ctx, g, ws->g_h, (size_t)total * H, err));
    *total_p = total;
    *offset_p = offset;
    return WD_OK;
}

/* A dense MLP (or shared experts) split dense_tp ways over this rank's n rows of ws->h, into
 * out: with DP attention the rows of every DP rank are gathered, run and summed, and this
 * rank keeps its own block. */
static enum wd_status dense_mlp(struct wd_model *m, const struct wd_mlp_weights *w, int64_t n,
                                float *out, struct wd_error *err)
{
    struct wd_model_workspace *ws = m->ws;
    const struct wd_model_shard *sh = &m->shard;
    size_t H = (size_t)m->cfg.hidden_size;
    if (sh->attn_dp_size <= 1 || sh->dense_tp_size <= 1) {
        mlp(m, w, ws->h, n, out);
        return reduce(m, WD_GROUP_DENSE, sh->dense_tp_size, out, (size_t)n * H, err);
    }
    int64_t total, offset;
    WD_CHECK(gather_dp_rows(m, WD_GROUP_DENSE, n, &total, &offset, NULL, err));
    mlp(m, w, ws->g_h, total, ws->g_out);
    WD_CHECK(reduce(m, WD_GROUP_DENSE, sh->dense_tp_size, ws->g_out, (size_t)total * H, err));
    memcpy(out, ws->g_out + (size_t)offset * H, (size_t)n * H * sizeof(float));
    return WD_OK;
}

struct expert_call {
    struct wd_model *m;
    const struct wd_layer_weights *L;
};

/* The all-to-all backend's callback: one of this rank's experts on the rows it received. */
static enum wd_status run_local_expert(void *ectx, int local_expert, const float *x, int n,
                                       float *y, struct wd_error *err)
{
    struct expert_call *c = ectx;
    int n_local = c->m->expert_end - c->m->expert_begin;
    if (local_expert < 0 || local_expert >= n_local)
        return wd_error_set(err, WD_ERR_INVALID, "moe: local expert %d of %d", local_expert,
                            n_local);
    mlp(c->m, &c->L->experts[local_expert], x, n, y);
    return WD_OK;
}

/* A MoE layer through DeepEP-style dispatch/combine. The ranks of an attention-TP group hold
 * the same rows, so each dispatches every attn_tp-th row and the group sums the scattered
 * results back into every row. Shared experts run beside, as dense layers do. */
static enum wd_status moe_a2a(struct wd_model *m, int layer, int64_t n, struct wd_error *err)
{
    const struct wd_model_config *c = &m->cfg;
    const struct wd_layer_weights *L = &m->layers[layer];
    struct wd_model_workspace *ws = m->ws;
    const struct wd_model_shard *sh = &m->shard;
    size_t H = (size_t)c->hidden_size;
    int K = c->num_experts_per_tok;

    gate(m, L, ws->h, n);
    const int32_t *route = to_physical(m, layer, ws->topk_idx, n, NULL, ws->phys_idx);

    int64_t n_sub = 0;
    for (int64_t r = sh->attn_tp_rank; r < n; r += sh->attn_tp_size, n_sub++) {
        memcpy(ws->g_h + (size_t)n_sub * H, ws->h + (size_t)r * H, H * sizeof(float));
        memcpy(ws->a2a_idx + n_sub * K, route + r * K, (size_t)K * sizeof(int32_t));
        /* Each row is dispatched (and recorded) by one rank of its attention-TP group, so the
         * TP group's recorders sum to the instance's routing. */
        if (m->opt.recorder)
            wd_expert_recorder_add(m->opt.recorder, layer, ws->topk_idx + r * K, 1);
        memcpy(ws->a2a_w + n_sub * K, ws->topk_w + r * K, (size_t)K * sizeof(float));
    }
    struct expert_call call = {.m = m, .L = L};
    WD_CHECK(m->opt.comm.moe_a2a(m->opt.comm.ctx, ws->g_h, n_sub, ws->a2a_idx, ws->a2a_w,
                                 ws->low_latency, run_local_expert, &call, ws->g_out, err));
    memset(ws->out, 0, (size_t)n * H * sizeof(float));
    n_sub = 0;
    for (int64_t r = sh->attn_tp_rank; r < n; r += sh->attn_tp_size, n_sub++)
        memcpy(ws->out + (size_t)r * H, ws->g_out + (size_t)n_sub * H, H * sizeof(float));
    WD_CHECK(reduce(m, WD_GROUP_ATTN_TP, sh->attn_tp_size, ws->out, (size_t)n * H, err));
    if (!L->has_shared)
        return WD_OK;
    /* ws->e_out is free here: the experts ran inside the all-to-all. */
    WD_CHECK(dense_mlp(m, &L->shared, n, ws->e_out, err));
    add_inplace(m, ws->out, ws->e_out, (size_t)n * H);
    return WD_OK;
}

/* All ranks of the MoE group agree on this forward's DeepEP mode: low latency for decode
 * batches in auto mode, unless some rank dispatches more rows than one low-latency call
 * carries (then normal mode, which has no such limit). */
static enum wd_status agree_a2a_mode(struct wd_model *m, const struct wd_forward_batch *b,
                                     struct wd_error *err)
{
    struct wd_model_workspace *ws = m->ws;
    const struct wd_model_comm *cm = &m->opt.comm;
    const struct wd_model_shard *sh = &m->shard;
    int group = sh->moe_ep_size * sh->moe_tp_size;
    int me = sh->moe_ep_rank * sh->moe_tp_size + sh->moe_tp_rank;
    WD_ASSERT(group <= WD_MODEL_MAX_RANKS);
    if (cm->deepep_mode == 1) {
        ws->low_latency = 0;
        return WD_OK;
    }
    int64_t n_sub = (b->n_tokens + sh->attn_tp_size - 1 - sh->attn_tp_rank) / sh->attn_tp_size;
    memset(ws->mode_vote, 0, (size_t)(1 + group) * sizeof(float));
    ws->mode_vote[0] = b->is_decode ? 0.0f : 1.0f;
    ws->mode_vote[1 + me] = (float)n_sub;
    WD_CHECK(reduce(m, WD_GROUP_MOE, group, ws->mode_vote, (size_t)(1 + group), err));
    float most = 0;
    for (int i = 0; i < group; i++)
        most = ws->mode_vote[1 + i] > most ? ws->mode_vote[1 + i] : most;
    int fits = most <= (float)cm->ll_max_tokens;
    if (cm->deepep_mode == 2 && !fits)
        return wd_error_set(err, WD_ERR_INVALID,
                            "deepep low_latency: a rank dispatches %.0f tokens, more than "
                            "num_max_dispatch_tokens_per_rank %d",
                            most, cm->ll_max_tokens);
    ws->low_latency = cm->deepep_mode == 2 || (ws->mode_vote[0] == 0.0f && fits);
    return WD_OK;
}

/* The feed-forward part of layer l for this rank's n rows of ws->h, into ws->out. */
static enum wd_status feed_forward(struct wd_model *m, int layer, int64_t n, struct wd_error *err)
{
    const struct wd_layer_weights *L = &m->layers[layer];
    struct wd_model_workspace *ws = m->ws;
    const struct wd_model_shard *sh = &m->shard;
    size_t H = (size_t)m->cfg.hidden_size;
    if (!L->is_moe)
        return dense_mlp(m, &L->dense, n, ws->out, err);
    if (m->opt.comm.moe_a2a)
        return moe_a2a(m, layer, n, err);
    /* All-reduce backend: with DP attention every rank's rows are gathered first. */
    if (sh->attn_dp_size <= 1 || sh->moe_ep_size * sh->moe_tp_size <= 1)
        return moe(m, layer, ws->h, n, NULL, ws->out, err);
    int64_t total, offset, blocks[WD_MODEL_MAX_DP + 1];
    WD_CHECK(gather_dp_rows(m, WD_GROUP_MOE, n, &total, &offset, blocks, err));
    WD_CHECK(moe(m, layer, ws->g_h, total, blocks, ws->g_out, err));
    memcpy(ws->out, ws->g_out + (size_t)offset * H, (size_t)n * H * sizeof(float));
    return WD_OK;
}

static enum wd_status check_batch(const struct wd_model *m, const struct wd_kv_pool *kv,
                                  const struct wd_forward_batch *b, struct wd_error *err)
{
    /* An empty batch is how an idle DP rank joins the others' collectives. */
    int min_tokens = m->shard.attn_dp_size > 1 ? 0 : 1;
    if (b->n_tokens < min_tokens || b->n_tokens > m->opt.max_batch_tokens)
        return wd_error_set(err, WD_ERR_INVALID, "forward: %lld tokens (limit %d)",
                            (long long)b->n_tokens, m->opt.max_batch_tokens);
    if (b->n_logits < 0 || b->n_logits > m->opt.max_logit_rows)
        return wd_error_set(err, WD_ERR_INVALID, "forward: %d logit rows (limit %d)", b->n_logits,
                            m->opt.max_logit_rows);
    if (kv->cfg.n_layers != m->cfg.n_layers)
        return wd_error_set(err, WD_ERR_INVALID, "forward: kv pool has %d layers, model %d",
                            kv->cfg.n_layers, m->cfg.n_layers);
    for (int64_t t = 0; t < b->n_tokens; t++) {
        if (b->ids[t] < 0 || b->ids[t] >= m->cfg.vocab_size)
            return wd_error_set(err, WD_ERR_INVALID, "token id %d out of range [0, %d)", b->ids[t],
                                m->cfg.vocab_size);
        int s = b->tok_seq[t];
        if (s < 0 || s >= b->n_seqs || b->tok_pos[t] < 0 || b->tok_pos[t] >= b->seqs[s].n_ctx)
            return wd_error_set(err, WD_ERR_INVALID, "forward: token %lld has bad seq/pos",
                                (long long)t);
    }
    for (int i = 0; i < b->n_logits; i++)
        if (b->logit_rows[i] < 0 || b->logit_rows[i] >= b->n_tokens)
            return wd_error_set(err, WD_ERR_INVALID, "forward: logit row %d out of range",
                                b->logit_rows[i]);
    return WD_OK;
}

enum wd_status wd_model_forward(struct wd_model *m, struct wd_kv_pool *kv,
                                const struct wd_forward_batch *b, float *logits,
                                struct wd_error *err)
{
    WD_CHECK(check_batch(m, kv, b, err));
    const struct wd_model_config *c = &m->cfg;
    struct wd_model_workspace *ws = m->ws;
    int64_t n = b->n_tokens;
    size_t H = (size_t)c->hidden_size;
    struct wd_attn_batch ab = {
        .n_tokens = n, .tok_seq = b->tok_seq, .tok_pos = b->tok_pos, .seqs = b->seqs};

    if (m->opt.recorder)
        wd_expert_recorder_begin_pass(m->opt.recorder);
    if (m->opt.comm.moe_a2a)
        WD_CHECK(agree_a2a_mode(m, b, err));
    m->be.ops->embedding(m->be.ctx, &m->embed, b->ids, n, ws->x);
    for (int l = 0; l < c->n_layers; l++) {
        const struct wd_layer_weights *L = &m->layers[l];
        struct wd_kv_layer kvl = {.k = wd_kv_pool_k(kv, l),
                                  .v = wd_kv_pool_v(kv, l),
                                  .dtype = kv->cfg.dtype,
                                  .page_size = kv->cfg.page_size,
                                  .k_row = kv->cfg.k_row,
                                  .v_row = kv->cfg.v_row};
        rmsnorm(m, ws->x, L->input_norm, n, c->hidden_size, ws->h);
        if (c->arch == WD_ARCH_DEEPSEEK_V3)
            attention_mla(m, &L->attn, &kvl, &ab);
        else
            attention_gqa(m, &L->attn, &kvl, &ab);
        /* This layer's KV is written: a prefill server may start sending it. */
        if (m->opt.layer_hook.fn)
            m->opt.layer_hook.fn(m->opt.layer_hook.ctx, l, b);
        WD_CHECK(reduce(m, WD_GROUP_ATTN_TP, m->shard.attn_tp_size, ws->out, (size_t)n * H, err));
        add_inplace(m, ws->x, ws->out, (size_t)n * H);

        rmsnorm(m, ws->x, L->post_attn_norm, n, c->hidden_size, ws->h);
        WD_CHECK(feed_forward(m, l, n, err));
        add_inplace(m, ws->x, ws->out, (size_t)n * H);
    }
    for (int i = 0; i < b->n_logits; i++)
        memcpy(ws->sel + (size_t)i * H, ws->x + (size_t)b->logit_rows[i] * H, H * sizeof(float));
    rmsnorm(m, ws->sel, m->final_norm, b->n_logits, c->hidden_size, ws->sel);
    if (b->n_logits > 0)
        linear(m, &m->lm_head, ws->sel, b->n_logits, logits);
    return WD_OK;
}
