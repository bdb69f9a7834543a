/*
 * Model creation: config, safetensors, weight binding for both architectures,
 * RoPE tables and the softmax scale. Weights stay in the mmap (checkpoint
 * dtype); only small vectors (norms, router bias) and FP8 block scales are
 * converted to fp32 into the model's arena. A tensor whose data is not aligned
 * to its element size is copied once so kernels can read it directly.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <unistd.h>

#include "common/model/model.h"
#include "kernels/attention_mla_cpu.h"
#include "common/model/model_weights.h"
#include "common/model/model_workspace.h"
#include "common/util/log.h"

struct binder {
    const struct wd_safetensors *st;
    const struct wd_model_config *cfg;
    struct wd_arena *arena;
    struct wd_error *err;
    /* Listing mode: report each expected tensor instead of binding it. */
    wd_model_tensor_fn list_fn;
    void *list_ctx;
};

static int is_float_dtype(enum wd_dtype dt)
{
    return dt == WD_DTYPE_F32 || dt == WD_DTYPE_F16 || dt == WD_DTYPE_BF16 ||
           dt == WD_DTYPE_F8_E4M3;
}

/* Returns a pointer to the tensor data aligned for its element type, copying if needed. */
static const void *aligned_data(struct binder *b, const struct wd_tensor_info *t)
{
    size_t align = wd_dtype_size(t->dtype);
    if (((uintptr_t)t->data % align) == 0)
        return t->data;
    void *copy = wd_arena_alloc(b->arena, t->nbytes);
    if (copy)
        memcpy(copy, t->data, t->nbytes);
    return copy;
}

/* Binds name as a [rows, cols] matrix; F8_E4M3 needs its "<name>_scale_inv" companion
 * ("x.weight" -> "x.weight_scale_inv") of shape [ceil(rows/br), ceil(cols/bc)]. */
static enum wd_status bind_matrix(struct binder *b, const char *name, int64_t rows, int64_t cols,
                                  struct wd_weight *w)
{
    const struct wd_tensor_info *t;
    int64_t shape[2] = {rows, cols};
    if (b->list_fn) {
        memset(w, 0, sizeof(*w));
        b->list_fn(b->list_ctx, name, 2, shape);
        return WD_OK;
    }
    WD_CHECK(wd_safetensors_get(b->st, name, 2, shape, &t, b->err));
    if (!is_float_dtype(t->dtype))
        return wd_error_set(b->err, WD_ERR_UNSUPPORTED, "tensor %s: dtype %s is not a weight dtype",
                            name, wd_dtype_name(t->dtype));
    memset(w, 0, sizeof(*w));
    w->dtype = t->dtype;
    w->rows = rows;
    w->cols = cols;
    w->data = aligned_data(b, t);
    if (!w->data)
        return wd_error_set(b->err, WD_ERR_NOMEM, "tensor %s: out of memory", name);
    if (t->dtype != WD_DTYPE_F8_E4M3)
        return WD_OK;

    if (!b->cfg->is_fp8)
        return wd_error_set(b->err, WD_ERR_FORMAT,
                            "tensor %s: F8_E4M3 weight but config.json has no fp8 "
                            "quantization_config",
                            name);
    char sname[512];
    snprintf(sname, sizeof(sname), "%s_scale_inv", name);
    int br = b->cfg->fp8_block[0], bc = b->cfg->fp8_block[1];
    int64_t sshape[2] = {(rows + br - 1) / br, (cols + bc - 1) / bc};
    const struct wd_tensor_info *s;
    WD_CHECK(wd_safetensors_get(b->st, sname, 2, sshape, &s, b->err));
    if (!is_float_dtype(s->dtype) || s->dtype == WD_DTYPE_F8_E4M3)
        return wd_error_set(b->err, WD_ERR_FORMAT, "tensor %s: scale dtype %s is not supported",
                            sname, wd_dtype_name(s->dtype));
    size_t n = (size_t)(sshape[0] * sshape[1]);
    float *scale = wd_arena_alloc(b->arena, n * sizeof(float));
    if (!scale)
        return wd_error_set(b->err, WD_ERR_NOMEM, "tensor %s: out of memory", sname);
    wd_dtype_to_f32(s->dtype, s->data, scale, n);
    w->scale_inv = scale;
    w->block_rows = br;
    w->block_cols = bc;
    return WD_OK;
}

/* Binds a 1-D tensor of n elements, converted to fp32. */
static enum wd_status bind_vector(struct binder *b, const char *name, int64_t n, float **out_p)
{
    const struct wd_tensor_info *t;
    if (b->list_fn) {
        b->list_fn(b->list_ctx, name, 1, &n);
        *out_p = NULL;
        return WD_OK;
    }
    WD_CHECK(wd_safetensors_get(b->st, name, 1, &n, &t, b->err));
    if (!is_float_dtype(t->dtype) || t->dtype == WD_DTYPE_F8_E4M3)
        return wd_error_set(b->err, WD_ERR_FORMAT, "tensor %s: dtype %s is not supported here",
                            name, wd_dtype_name(t->dtype));
    float *v = wd_arena_alloc(b->arena, (size_t)n * sizeof(float));
    if (!v)
        return wd_error_set(b->err, WD_ERR_NOMEM, "tensor %s: out of memory", name);
    /* Copy through an aligned view: the mmap'd data may be unaligned for its dtype. */
    const void *src = aligned_data(b, t);
    if (!src)
        return wd_error_set(b->err, WD_ERR_NOMEM, "tensor %s: out of memory", name);
    wd_dtype_to_f32(t->dtype, src, v, (size_t)n);
    *out_p = v;
    return WD_OK;
}

/* Binds a [rows, cols] matrix and keeps rows [r0, r0 + nr) (a tensor-parallel shard). */
static enum wd_status bind_rows(struct binder *b, const char *name, int64_t rows, int64_t cols,
                                int64_t r0, int64_t nr, struct wd_weight *w)
{
    WD_CHECK(bind_matrix(b, name, rows, cols, w));
    if (!b->list_fn && (r0 != 0 || nr != rows))
        *w = wd_weight_slice_rows(w, r0, nr);
    return WD_OK;
}

/* Binds a [rows, cols] matrix and keeps columns [c0, c0 + nc). */
static enum wd_status bind_cols(struct binder *b, const char *name, int64_t rows, int64_t cols,
                                int64_t c0, int64_t nc, struct wd_weight *w)
{
    WD_CHECK(bind_matrix(b, name, rows, cols, w));
    if (!b->list_fn && (c0 != 0 || nc != cols))
        *w = wd_weight_slice_cols(w, c0, nc);
    return WD_OK;
}

/* A gated MLP whose intermediate dimension is split tp ways; this rank keeps part `rank`. */
static enum wd_status bind_mlp(struct binder *b, const char *prefix, int64_t hidden, int64_t inter,
                               int tp, int rank, struct wd_mlp_weights *m)
{
    char name[512];
    int64_t part = inter / tp, i0 = part * rank;
    snprintf(name, sizeof(name), "%s.gate_proj.weight", prefix);
    WD_CHECK(bind_rows(b, name, inter, hidden, i0, part, &m->gate));
    snprintf(name, sizeof(name), "%s.up_proj.weight", prefix);
    WD_CHECK(bind_rows(b, name, inter, hidden, i0, part, &m->up));
    snprintf(name, sizeof(name), "%s.down_proj.weight", prefix);
    return bind_cols(b, name, hidden, inter, i0, part, &m->down);
}

/* Attention of one layer; this rank keeps the heads of its attention-TP part. */
static enum wd_status bind_attention(struct binder *b, const struct wd_model *m, const char *p,
                                     struct wd_attn_weights *a)
{
    const struct wd_model_config *c = b->cfg;
    int64_t H = c->hidden_size, hp = m->n_heads, h0 = hp * m->shard.attn_tp_rank;
    char name[512];
#define NAME(suffix) (snprintf(name, sizeof(name), "%s.%s", p, suffix), name)
    if (c->arch == WD_ARCH_QWEN3_MOE) {
        int64_t hd = c->head_dim, kvp = m->n_kv_heads;
        /* KV heads split when there are enough; otherwise this rank keeps the one its
         * query heads attend with (GQA groups are contiguous). */
        int64_t kv0 = c->n_kv_heads >= m->shard.attn_tp_size ? kvp * m->shard.attn_tp_rank
                                                             : h0 / (c->n_heads / c->n_kv_heads);
        WD_CHECK(
            bind_rows(b, NAME("q_proj.weight"), c->n_heads * hd, H, h0 * hd, hp * hd, &a->q_proj));
        WD_CHECK(bind_rows(b, NAME("k_proj.weight"), c->n_kv_heads * hd, H, kv0 * hd, kvp * hd,
                           &a->k_proj));
        WD_CHECK(bind_rows(b, NAME("v_proj.weight"), c->n_kv_heads * hd, H, kv0 * hd, kvp * hd,
                           &a->v_proj));
        WD_CHECK(bind_vector(b, NAME("q_norm.weight"), hd, &a->q_norm));
        WD_CHECK(bind_vector(b, NAME("k_norm.weight"), hd, &a->k_norm));
        return bind_cols(b, NAME("o_proj.weight"), H, c->n_heads * hd, h0 * hd, hp * hd,
                         &a->o_proj);
    }
    int64_t qk = c->qk_nope_head_dim + c->qk_rope_head_dim;
    int64_t kvb = c->qk_nope_head_dim + c->v_head_dim;
    if (c->q_lora_rank > 0) {
        WD_CHECK(bind_matrix(b, NAME("q_a_proj.weight"), c->q_lora_rank, H, &a->q_a_proj));
        WD_CHECK(bind_vector(b, NAME("q_a_layernorm.weight"), c->q_lora_rank, &a->q_a_norm));
        WD_CHECK(bind_rows(b, NAME("q_b_proj.weight"), c->n_heads * qk, c->q_lora_rank, h0 * qk,
                           hp * qk, &a->q_b_proj));
    } else {
        WD_CHECK(
            bind_rows(b, NAME("q_proj.weight"), c->n_heads * qk, H, h0 * qk, hp * qk, &a->q_proj));
    }
    /* The latent (c_kv, k_pe) is shared by all heads: every rank computes and caches it. */
    WD_CHECK(bind_matrix(b, NAME("kv_a_proj_with_mqa.weight"),
                         c->kv_lora_rank + c->qk_rope_head_dim, H, &a->kv_a_proj));
    WD_CHECK(bind_vector(b, NAME("kv_a_layernorm.weight"), c->kv_lora_rank, &a->kv_a_norm));
    WD_CHECK(bind_rows(b, NAME("kv_b_proj.weight"), (int64_t)c->n_heads * kvb, c->kv_lora_rank,
                       h0 * kvb, hp * kvb, &a->kv_b_proj));
    if (!b->list_fn) {
        if (c->kv_lora_rank > WD_MLA_MAX_RANK)
            return wd_error_set(b->err, WD_ERR_UNSUPPORTED, "kv_lora_rank %d is above %d",
                                c->kv_lora_rank, WD_MLA_MAX_RANK);
        a->uk_t = wd_arena_alloc(b->arena, (size_t)hp * (size_t)c->kv_lora_rank *
                                               (size_t)c->qk_nope_head_dim *
                                               wd_dtype_size(wd_mla_uk_dtype(&a->kv_b_proj)));
        if (!a->uk_t)
            return wd_error_set(b->err, WD_ERR_NOMEM, "%s: out of memory", p);
        wd_mla_uk_transpose_as(&a->kv_b_proj, (int)hp, c->qk_nope_head_dim, c->v_head_dim,
                               c->kv_lora_rank, a->uk_t);
    }
    return bind_cols(b, NAME("o_proj.weight"), H, (int64_t)c->n_heads * c->v_head_dim,
                     h0 * c->v_head_dim, hp * c->v_head_dim, &a->o_proj);
#undef NAME
}

static enum wd_status bind_layer(struct binder *b, struct wd_model *m, int l)
{
    const struct wd_model_config *c = b->cfg;
    struct wd_layer_weights *L = &m->layers[l];
    int64_t H = c->hidden_size;
    char p[256], name[512];
    snprintf(p, sizeof(p), "model.layers.%d", l);

    snprintf(name, sizeof(name), "%s.input_layernorm.weight", p);
    WD_CHECK(bind_vector(b, name, H, &L->input_norm));
    snprintf(name, sizeof(name), "%s.post_attention_layernorm.weight", p);
    WD_CHECK(bind_vector(b, name, H, &L->post_attn_norm));
    snprintf(name, sizeof(name), "%s.self_attn", p);
    WD_CHECK(bind_attention(b, m, name, &L->attn));
    const struct wd_model_shard *sh = &m->shard;

    L->is_moe = wd_model_config_is_moe_layer(c, l);
    if (!L->is_moe) {
        snprintf(name, sizeof(name), "%s.mlp", p);
        return bind_mlp(b, name, H, c->intermediate_size, sh->dense_tp_size, sh->dense_tp_rank,
                        &L->dense);
    }
    int E = c->n_routed_experts;
    snprintf(name, sizeof(name), "%s.mlp.gate.weight", p);
    WD_CHECK(bind_matrix(b, name, E, H, &L->router));
    if (c->arch == WD_ARCH_DEEPSEEK_V3) {
        snprintf(name, sizeof(name), "%s.mlp.gate.e_score_correction_bias", p);
        WD_CHECK(bind_vector(b, name, E, &L->router_bias));
    }
    int n_local = m->expert_end - m->expert_begin;
    L->experts =
        wd_arena_alloc(b->arena, (size_t)(n_local > 0 ? n_local : 1) * sizeof(*L->experts));
    if (!L->experts)
        return wd_error_set(b->err, WD_ERR_NOMEM, "layer %d: out of memory", l);
    const struct wd_eplb_location *loc = b->list_fn ? NULL : m->opt.eplb.loc;
    for (int e = m->expert_begin; e < m->expert_end; e++) {
        struct wd_mlp_weights *dst = &L->experts[e - m->expert_begin];
        if (!loc) {
            snprintf(name, sizeof(name), "%s.mlp.experts.%d", p, e);
            WD_CHECK(bind_mlp(b, name, H, c->moe_intermediate_size, sh->moe_tp_size,
                              sh->moe_tp_rank, dst));
            continue;
        }
        /* EPLB: the slot owns a copy of the whole logical expert it holds (so a rebalance
         * can overwrite it); the views are this rank's MoE-TP slice of that copy. */
        int logical = loc->phy2log[(size_t)l * (size_t)loc->n_physical + (size_t)e];
        struct wd_mlp_weights full;
        snprintf(name, sizeof(name), "%s.mlp.experts.%d", p, logical);
        WD_CHECK(bind_mlp(b, name, H, c->moe_intermediate_size, 1, 0, &full));
        if (!m->experts_store)
            WD_CHECK(wd_expert_store_create(&full, c->n_layers, m->expert_end - m->expert_begin,
                                            &m->experts_store, b->err));
        wd_expert_store_fill(m->experts_store, l, e - m->expert_begin, &full);
        wd_expert_store_views(m->experts_store, l, e - m->expert_begin, sh->moe_tp_size,
                              sh->moe_tp_rank, dst);
    }
    if (c->arch == WD_ARCH_DEEPSEEK_V3 && c->n_shared_experts > 0) {
        L->has_shared = 1;
        snprintf(name, sizeof(name), "%s.mlp.shared_experts", p);
        WD_CHECK(bind_mlp(b, name, H, (int64_t)c->moe_intermediate_size * c->n_shared_experts,
                          sh->dense_tp_size, sh->dense_tp_rank, &L->shared));
    }
    return WD_OK;
}

static enum wd_status setup_rope(struct wd_model *m, struct wd_error *err)
{
    const struct wd_model_config *c = &m->cfg;
    const struct wd_rope_config *r = &c->rope;
    int mla = c->arch == WD_ARCH_DEEPSEEK_V3;
    int rot_dim = mla ? c->qk_rope_head_dim : c->head_dim;
    if (rot_dim <= 0 || rot_dim % 2)
        return wd_error_set(err, WD_ERR_FORMAT, "config: rotary dimension %d must be even",
                            rot_dim);
    m->inv_freq = wd_arena_alloc(m->arena, (size_t)rot_dim / 2 * sizeof(float));
    if (!m->inv_freq)
        return wd_error_set(err, WD_ERR_NOMEM, "rope: out of memory");
    int is_yarn = r->type == WD_ROPE_YARN;
    float attention_scaling = 1.0f;
    wd_rope_init(rot_dim, r->theta, is_yarn, r->factor, r->original_max_position_embeddings,
                 r->beta_fast, r->beta_slow, r->mscale, r->mscale_all_dim,
                 wd_rope_attention_factor(r), r->truncate, m->inv_freq, &attention_scaling);
    m->rope.rot_dim = rot_dim;
    m->rope.is_interleaved = mla && c->rope_interleave;
    m->rope.inv_freq = m->inv_freq;
    m->rope.attention_scaling = attention_scaling;

    m->qk_head_dim = mla ? c->qk_nope_head_dim + c->qk_rope_head_dim : c->head_dim;
    m->v_head_dim = mla ? c->v_head_dim : c->head_dim;
    m->attn_scale = (float)wd_model_config_softmax_scale(c);
    return WD_OK;
}

/* Normalizes the shard (sizes 0 -> 1), checks the model divides it, and derives this rank's
 * head counts and expert range. */
static enum wd_status setup_shard(struct wd_model *m, const struct wd_model_shard *in,
                                  struct wd_error *err)
{
    const struct wd_model_config *c = &m->cfg;
    struct wd_model_shard sh = *in;
    int *sizes[] = {&sh.attn_dp_size, &sh.attn_tp_size, &sh.moe_ep_size, &sh.moe_tp_size,
                    &sh.dense_tp_size};
    int *ranks[] = {&sh.attn_dp_rank, &sh.attn_tp_rank, &sh.moe_ep_rank, &sh.moe_tp_rank,
                    &sh.dense_tp_rank};
    for (int i = 0; i < 5; i++) {
        if (*sizes[i] <= 0)
            *sizes[i] = 1;
        if (*ranks[i] < 0 || *ranks[i] >= *sizes[i])
            return wd_error_set(err, WD_ERR_INVALID, "shard: rank %d outside a group of %d",
                                *ranks[i], *sizes[i]);
    }
    if (c->n_heads % sh.attn_tp_size)
        return wd_error_set(err, WD_ERR_INVALID,
                            "num_attention_heads %d must be divisible by attn_tp_size %d",
                            c->n_heads, sh.attn_tp_size);
    int kv = c->arch == WD_ARCH_QWEN3_MOE ? c->n_kv_heads : c->n_heads;
    if (kv >= sh.attn_tp_size ? kv % sh.attn_tp_size : sh.attn_tp_size % kv)
        return wd_error_set(err, WD_ERR_INVALID,
                            "num_key_value_heads %d and attn_tp_size %d: one must divide the other",
                            kv, sh.attn_tp_size);
    int E = c->n_routed_experts;
    const struct wd_eplb_location *loc = m->opt.eplb.loc;
    if (loc && (loc->n_logical != E || loc->n_layers != c->n_layers))
        return wd_error_set(err, WD_ERR_INVALID,
                            "expert location: %d layers x %d experts, the model has %d x %d",
                            loc->n_layers, loc->n_logical, c->n_layers, E);
    if (loc)
        E = loc->n_physical; /* ranks hold physical slots */
    if (E > 0 && E % sh.moe_ep_size)
        return wd_error_set(err, WD_ERR_INVALID,
                            "num_experts %d must be divisible by moe_ep_size %d", E,
                            sh.moe_ep_size);
    if (E > 0 && c->moe_intermediate_size % sh.moe_tp_size)
        return wd_error_set(err, WD_ERR_INVALID,
                            "moe_intermediate_size %d must be divisible by moe_tp_size %d",
                            c->moe_intermediate_size, sh.moe_tp_size);
    if ((c->intermediate_size % sh.dense_tp_size) ||
        ((c->moe_intermediate_size * c->n_shared_experts) % sh.dense_tp_size))
        return wd_error_set(err, WD_ERR_INVALID,
                            "intermediate_size %d (and shared experts) must be divisible by the "
                            "dense tp size %d",
                            c->intermediate_size, sh.dense_tp_size);
    m->shard = sh;
    m->n_heads = c->n_heads / sh.attn_tp_size;
    m->n_kv_heads = kv >= sh.attn_tp_size ? kv / sh.attn_tp_size : 1;
    int per = E / sh.moe_ep_size;
    m->expert_begin = per * sh.moe_ep_rank;
    m->expert_end = m->expert_begin + per;
    return WD_OK;
}

static enum wd_status check_supported(const struct wd_model_config *c, struct wd_error *err)
{
    if (c->arch == WD_ARCH_QWEN3_MOE && c->attention_bias)
        return wd_error_set(err, WD_ERR_UNSUPPORTED,
                            "config: attention_bias=true is not supported for %s", c->arch_name);
    return WD_OK;
}

enum wd_status wd_model_create_from(const struct wd_model_config *cfg, struct wd_safetensors *st,
                                    const struct wd_model_options *opt, struct wd_model **model_p,
                                    struct wd_error *err)
{
    if (opt->max_batch_tokens <= 0 || opt->max_logit_rows <= 0) {
        wd_safetensors_close(st);
        return wd_error_set(err, WD_ERR_INVALID,
                            "model: max_batch_tokens and max_logit_rows must be positive");
    }
    struct wd_model *m = calloc(1, sizeof(*m));
    if (!m) {
        wd_safetensors_close(st);
        return wd_error_set(err, WD_ERR_NOMEM, "model: out of memory");
    }
    m->opt = *opt;
    m->cfg = *cfg;
    m->st = st;
    enum wd_status st_ = check_supported(&m->cfg, err);
    if (st_ == WD_OK)
        st_ = setup_shard(m, &opt->shard, err);
    m->arena = wd_arena_create(1u << 20);
    m->layers = calloc((size_t)m->cfg.n_layers, sizeof(*m->layers));
    if (st_ == WD_OK && (!m->arena || !m->layers))
        st_ = wd_error_set(err, WD_ERR_NOMEM, "model: out of memory");
    struct binder b = {.st = m->st, .cfg = &m->cfg, .arena = m->arena, .err = err};
    const struct wd_model_config *c = &m->cfg;
    if (st_ == WD_OK)
        st_ =
            bind_matrix(&b, "model.embed_tokens.weight", c->vocab_size, c->hidden_size, &m->embed);
    if (st_ == WD_OK && m->embed.dtype == WD_DTYPE_F8_E4M3)
        st_ = wd_error_set(err, WD_ERR_UNSUPPORTED,
                           "tensor model.embed_tokens.weight: FP8 embeddings are not supported");
    if (st_ == WD_OK)
        st_ = bind_vector(&b, "model.norm.weight", c->hidden_size, &m->final_norm);
    if (st_ == WD_OK) {
        if (c->tie_word_embeddings && !wd_safetensors_find(m->st, "lm_head.weight"))
            m->lm_head = m->embed;
        else
            st_ = bind_matrix(&b, "lm_head.weight", c->vocab_size, c->hidden_size, &m->lm_head);
    }
    for (int l = 0; st_ == WD_OK && l < c->n_layers; l++)
        st_ = bind_layer(&b, m, l);
    if (st_ == WD_OK)
        st_ = setup_rope(m, err);
    if (st_ == WD_OK) {
        int n = opt->n_threads > 0 ? opt->n_threads : (int)sysconf(_SC_NPROCESSORS_ONLN);
        st_ = wd_threadpool_create(n > 0 ? n : 1, &m->tp);
        if (st_ != WD_OK)
            wd_error_set(err, st_, "model: cannot start %d threads", n);
        wd_backend_cpu_init(&m->be, m->tp);
    }
    if (st_ == WD_OK && !opt->is_weights_mapped)
        wd_model_weights_to_ram(m);
    if (st_ == WD_OK)
        st_ = wd_model_workspace_create(m, &m->ws, err);
    if (st_ != WD_OK) {
        wd_model_destroy(m);
        return st_;
    }
    wd_log(WD_LOG_INFO, "model",
           "loaded %s: %d layers, hidden %d, %d experts (top-%d), vocab %d, weights %s",
           c->arch_name, c->n_layers, c->hidden_size, c->n_routed_experts, c->num_experts_per_tok,
           c->vocab_size, wd_dtype_name(m->layers[0].attn.o_proj.dtype));
    *model_p = m;
    return WD_OK;
}

enum wd_status wd_model_list_tensors(const struct wd_model_config *cfg, wd_model_tensor_fn fn,
                                     void *ctx, struct wd_error *err)
{
    struct wd_model m = {.cfg = *cfg};
    struct wd_model_shard whole = {0};
    enum wd_status st0 = setup_shard(&m, &whole, err);
    if (st0 != WD_OK)
        return st0;
    m.arena = wd_arena_create(1u << 16);
    m.layers = calloc((size_t)cfg->n_layers, sizeof(*m.layers));
    enum wd_status st = WD_OK;
    if (!m.arena || !m.layers)
        st = wd_error_set(err, WD_ERR_NOMEM, "model: out of memory");
    struct binder b = {.cfg = &m.cfg, .arena = m.arena, .err = err, .list_fn = fn, .list_ctx = ctx};
    struct wd_weight w;
    float *v;
    if (st == WD_OK)
        st = bind_matrix(&b, "model.embed_tokens.weight", cfg->vocab_size, cfg->hidden_size, &w);
    if (st == WD_OK)
        st = bind_vector(&b, "model.norm.weight", cfg->hidden_size, &v);
    if (st == WD_OK && !cfg->tie_word_embeddings)
        st = bind_matrix(&b, "lm_head.weight", cfg->vocab_size, cfg->hidden_size, &w);
    for (int l = 0; st == WD_OK && l < cfg->n_layers; l++)
        st = bind_layer(&b, &m, l);
    free(m.layers);
    wd_arena_destroy(m.arena);
    return st;
}

enum wd_status wd_model_create(const char *model_dir, const struct wd_model_options *opt,
                               struct wd_model **model_p, struct wd_error *err)
{
    struct wd_model_config cfg;
    struct wd_safetensors *st = NULL;
    enum wd_status s = wd_model_config_load(model_dir, &cfg, err);
    if (s == WD_OK)
        s = wd_safetensors_open(model_dir, &st, err);
    if (s == WD_OK)
        s = wd_model_create_from(&cfg, st, opt, model_p, err);
    if (s != WD_OK)
        wd_error_prefix(err, "%s", model_dir);
    return s;
}

void wd_model_destroy(struct wd_model *model)
{
    if (!model)
        return;
    wd_model_workspace_destroy(model->ws);
    wd_threadpool_destroy(model->tp);
    wd_expert_store_destroy(model->experts_store);
    wd_model_weights_release(model);
    free(model->layers);
    wd_arena_destroy(model->arena);
    wd_safetensors_close(model->st);
    free(model);
}

void wd_model_kv_pool_config(const struct wd_model *model, struct wd_kv_pool_config *cfg)
{
    cfg->n_layers = model->cfg.n_layers;
    wd_model_kv_geometry(model, &cfg->k_row, &cfg->v_row);
    cfg->n_heads = model->cfg.arch == WD_ARCH_DEEPSEEK_V3 ? 1 : model->n_kv_heads;
}

void wd_model_kv_geometry(const struct wd_model *model, int *k_row_p, int *v_row_p)
{
    const struct wd_model_config *c = &model->cfg;
    if (c->arch == WD_ARCH_DEEPSEEK_V3) {
        *k_row_p = c->kv_lora_rank + c->qk_rope_head_dim;
        *v_row_p = 0;
    } else {
        *k_row_p = model->n_kv_heads * c->head_dim;
        *v_row_p = model->n_kv_heads * c->head_dim;
    }
}
