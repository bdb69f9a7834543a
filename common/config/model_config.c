/*
 * config.json -> struct wd_model_config for Qwen3-MoE and DeepSeek-V3.
 *
 * Reading goes through a first-error-wins wd_json_reader, so the parse functions
 * read every key in a row and the caller checks one status; cross-field checks run
 * after all reads. The caps below are far above any released model and exist so that
 * a corrupt file is refused here rather than turned into a huge allocation later.
 */
#include "common/config/model_config.h"

#include <math.h>
#include <string.h>

#include "common/config/json_reader.h"
#include "kernels/moe_gate.h"

#define CONFIG_MAX_BYTES (16u * 1024u * 1024u)

#define CAP_VOCAB (4LL << 20)
#define CAP_HIDDEN 65536LL
#define CAP_LAYERS 1024LL
#define CAP_HEADS 1024LL
#define CAP_HEAD_DIM 1024LL
#define CAP_FFN (1LL << 20)
#define CAP_EXPERTS ((long long)WD_MOE_MAX_EXPERTS) /* the routers hold a score per expert */
#define CAP_SHARED 64LL
#define CAP_RANK 65536LL
#define CAP_POSITIONS (1LL << 26)
#define CAP_TOKEN_ID 0x7fffffffLL

/* Reads a sub-object (NULL when absent or null) and sets up a reader on it. */
static const json_t *sub_object(struct wd_json_reader *r, const char *key,
                                struct wd_json_reader *sub, char *where, size_t where_cap)
{
    const json_t *v = wd_json_reader_has(r, key) ? json_object_get(r->obj, key) : NULL;
    if (v && !json_is_object(v)) {
        wd_json_reader_fail(r, WD_ERR_FORMAT, "'%s' must be an object", key);
        v = NULL;
    }
    snprintf(where, where_cap, "%s: %s", r->where, key);
    wd_json_reader_init(sub, v, where, r->err);
    return v;
}

/* architectures[0], or the model_type when there is no architectures list (a bare
 * transformers config saved without a model). */
static void read_arch(struct wd_json_reader *r, struct wd_model_config *c)
{
    wd_json_reader_string(r, "model_type", 0, "", c->model_type, sizeof(c->model_type));
    if (r->status != WD_OK)
        return;
    const char *name = NULL;
    if (wd_json_reader_has(r, "architectures")) {
        const json_t *a = json_object_get(r->obj, "architectures");
        if (!json_is_array(a) || json_array_size(a) == 0 || !json_is_string(json_array_get(a, 0))) {
            wd_json_reader_fail(r, WD_ERR_FORMAT,
                                "'architectures' must be a non-empty list of "
                                "strings");
            return;
        }
        name = json_string_value(json_array_get(a, 0));
    } else if (strcmp(c->model_type, "qwen3_moe") == 0) {
        name = "Qwen3MoeForCausalLM";
    } else if (strcmp(c->model_type, "deepseek_v3") == 0) {
        name = "DeepseekV3ForCausalLM";
    } else if (c->model_type[0]) {
        wd_json_reader_fail(r, WD_ERR_UNSUPPORTED,
                            "no 'architectures' and unsupported model_type '%s' (supported: "
                            "qwen3_moe, deepseek_v3)",
                            c->model_type);
        return;
    } else {
        wd_json_reader_fail(r, WD_ERR_NOT_FOUND, "missing required key 'architectures'");
        return;
    }
    if (strcmp(name, "Qwen3MoeForCausalLM") == 0) {
        c->arch = WD_ARCH_QWEN3_MOE;
    } else if (strcmp(name, "DeepseekV3ForCausalLM") == 0) {
        c->arch = WD_ARCH_DEEPSEEK_V3;
    } else {
        wd_json_reader_fail(r, WD_ERR_UNSUPPORTED,
                            "unsupported architecture '%.100s' (supported: Qwen3MoeForCausalLM, "
                            "DeepseekV3ForCausalLM)",
                            name);
        return;
    }
    snprintf(c->arch_name, sizeof(c->arch_name), "%s", name);
}

/* The number of routed experts under its name or its transformers alias. */
static int read_experts(struct wd_json_reader *r, const char *key, const char *alias)
{
    int has_key = wd_json_reader_has(r, key), has_alias = wd_json_reader_has(r, alias);
    if (!has_key && !has_alias) {
        wd_json_reader_fail(r, WD_ERR_NOT_FOUND, "missing required key '%s'", key);
        return 0;
    }
    int n = has_key ? (int)wd_json_reader_int(r, key, 1, 0, 0, CAP_EXPERTS) : 0;
    int m = has_alias ? (int)wd_json_reader_int(r, alias, 1, 0, 0, CAP_EXPERTS) : n;
    if (has_key && has_alias && n != m)
        wd_json_reader_fail(r, WD_ERR_INVALID, "'%s' = %d and '%s' = %d disagree", key, n, alias,
                            m);
    return has_key ? n : m;
}

static void read_common(struct wd_json_reader *r, struct wd_model_config *c)
{
    int ds = c->arch == WD_ARCH_DEEPSEEK_V3;
    c->vocab_size = (int)wd_json_reader_int(r, "vocab_size", 1, 0, 1, CAP_VOCAB);
    c->hidden_size = (int)wd_json_reader_int(r, "hidden_size", 1, 0, 1, CAP_HIDDEN);
    c->n_layers = (int)wd_json_reader_int(r, "num_hidden_layers", 1, 0, 1, CAP_LAYERS);
    c->n_heads = (int)wd_json_reader_int(r, "num_attention_heads", 1, 0, 1, CAP_HEADS);
    c->intermediate_size = (int)wd_json_reader_int(r, "intermediate_size", 1, 0, 1, CAP_FFN);
    c->moe_intermediate_size =
        (int)wd_json_reader_int(r, "moe_intermediate_size", 1, 0, 1, CAP_FFN);
    c->num_experts_per_tok =
        (int)wd_json_reader_int(r, "num_experts_per_tok", 1, 0, 1, CAP_EXPERTS);
    c->norm_topk_prob = wd_json_reader_bool(r, "norm_topk_prob", 0, ds);
    c->rms_norm_eps = wd_json_reader_double(r, "rms_norm_eps", 0, 1e-6, 1e-30, 1.0);
    if (r->status == WD_OK && c->rms_norm_eps <= 0)
        wd_json_reader_fail(r, WD_ERR_INVALID, "'rms_norm_eps' must be positive");
    c->max_position_embeddings = (int)wd_json_reader_int(r, "max_position_embeddings", 0,
                                                         ds ? 4096 : 32768, 1, CAP_POSITIONS);
    c->tie_word_embeddings = wd_json_reader_bool(r, "tie_word_embeddings", 0, 0);
    c->attention_bias = wd_json_reader_bool(r, "attention_bias", 0, 0);
    c->bos_token_id = (int)wd_json_reader_int(r, "bos_token_id", 0, -1, 0, CAP_TOKEN_ID);
    wd_json_reader_int_list(r, "eos_token_id", 0, 0, CAP_TOKEN_ID, c->eos_token_ids,
                            WD_MODEL_MAX_EOS, &c->n_eos);

    char act[64];
    wd_json_reader_string(r, "hidden_act", 0, "silu", act, sizeof(act));
    if (r->status == WD_OK && strcmp(act, "silu") != 0)
        wd_json_reader_fail(r, WD_ERR_UNSUPPORTED, "hidden_act '%s' unsupported (supported: silu)",
                            act);

    /* "dtype" is transformers 5's name, "torch_dtype" the older one. */
    const char *dkey = wd_json_reader_has(r, "dtype") ? "dtype" : "torch_dtype";
    char dt[64];
    c->torch_dtype = WD_DTYPE_F32;
    c->has_torch_dtype = wd_json_reader_has(r, dkey);
    wd_json_reader_string(r, dkey, 0, "float32", dt, sizeof(dt));
    if (strcmp(dt, "bfloat16") == 0)
        c->torch_dtype = WD_DTYPE_BF16;
    else if (strcmp(dt, "float16") == 0)
        c->torch_dtype = WD_DTYPE_F16;
    else if (strcmp(dt, "float32") != 0)
        wd_json_reader_fail(r, WD_ERR_UNSUPPORTED,
                            "%s '%s' unsupported (supported: bfloat16, float16, float32)", dkey,
                            dt);
}

static void read_qwen3(struct wd_json_reader *r, struct wd_model_config *c)
{
    c->n_kv_heads = (int)wd_json_reader_int(r, "num_key_value_heads", 1, 0, 1, CAP_HEADS);
    if (wd_json_reader_has(r, "head_dim")) {
        c->head_dim = (int)wd_json_reader_int(r, "head_dim", 1, 0, 1, CAP_HEAD_DIM);
    } else if (r->status == WD_OK) {
        if (c->hidden_size % c->n_heads != 0)
            wd_json_reader_fail(r, WD_ERR_INVALID,
                                "no 'head_dim' and hidden_size %d is not divisible by "
                                "num_attention_heads %d",
                                c->hidden_size, c->n_heads);
        c->head_dim = c->hidden_size / c->n_heads;
    }
    c->n_routed_experts = read_experts(r, "num_experts", "num_local_experts");
    c->n_shared_experts = 0;
    c->decoder_sparse_step = (int)wd_json_reader_int(r, "decoder_sparse_step", 0, 1, 1, CAP_LAYERS);
    wd_json_reader_int_list(r, "mlp_only_layers", 0, 0, CAP_LAYERS - 1, c->mlp_only_layers,
                            WD_MODEL_MAX_MLP_ONLY_LAYERS, &c->n_mlp_only_layers);
    c->use_qk_norm = 1;
    c->routed_scaling_factor = 1.0;
    if (wd_json_reader_bool(r, "use_sliding_window", 0, 0))
        wd_json_reader_fail(r, WD_ERR_UNSUPPORTED, "use_sliding_window true unsupported");
}

static void read_deepseek(struct wd_json_reader *r, struct wd_model_config *c)
{
    c->n_kv_heads = c->n_heads;
    c->n_routed_experts = read_experts(r, "n_routed_experts", "num_local_experts");
    if (r->status == WD_OK && c->n_routed_experts == 0)
        wd_json_reader_fail(r, WD_ERR_INVALID, "'n_routed_experts' must be positive");
    c->n_shared_experts = (int)wd_json_reader_int(r, "n_shared_experts", 0, 0, 0, CAP_SHARED);
    c->n_group = (int)wd_json_reader_int(r, "n_group", 0, 8, 1, CAP_EXPERTS);
    c->topk_group = (int)wd_json_reader_int(r, "topk_group", 0, 4, 1, CAP_EXPERTS);
    c->first_k_dense_replace =
        (int)wd_json_reader_int(r, "first_k_dense_replace", 0, 3, 0, CAP_LAYERS);
    c->moe_layer_freq = (int)wd_json_reader_int(r, "moe_layer_freq", 0, 1, 1, CAP_LAYERS);
    c->routed_scaling_factor = wd_json_reader_double(r, "routed_scaling_factor", 0, 2.5, 1e-6, 1e6);
    /* Read into a wide buffer so that long unsupported names are reported as unsupported. */
    char name[64];
    wd_json_reader_string(r, "scoring_func", 0, "sigmoid", name, sizeof(name));
    if (r->status == WD_OK && strcmp(name, "sigmoid") != 0)
        wd_json_reader_fail(r, WD_ERR_UNSUPPORTED,
                            "scoring_func '%s' unsupported (supported: sigmoid)", name);
    snprintf(c->scoring_func, sizeof(c->scoring_func), "sigmoid");
    wd_json_reader_string(r, "topk_method", 0, "noaux_tc", name, sizeof(name));
    if (r->status == WD_OK && strcmp(name, "noaux_tc") != 0)
        wd_json_reader_fail(r, WD_ERR_UNSUPPORTED,
                            "topk_method '%s' unsupported (supported: noaux_tc)", name);
    snprintf(c->topk_method, sizeof(c->topk_method), "noaux_tc");
    /* q_lora_rank is required but may be null: no low-rank q projection (DeepSeek-V2-Lite). */
    if (r->status == WD_OK && !json_object_get(r->obj, "q_lora_rank"))
        wd_json_reader_fail(r, WD_ERR_NOT_FOUND, "missing required key 'q_lora_rank'");
    c->q_lora_rank = (int)wd_json_reader_int(r, "q_lora_rank", 0, 0, 1, CAP_RANK);
    c->kv_lora_rank = (int)wd_json_reader_int(r, "kv_lora_rank", 1, 0, 1, CAP_RANK);
    c->qk_nope_head_dim = (int)wd_json_reader_int(r, "qk_nope_head_dim", 1, 0, 1, CAP_HEAD_DIM);
    c->qk_rope_head_dim = (int)wd_json_reader_int(r, "qk_rope_head_dim", 1, 0, 1, CAP_HEAD_DIM);
    c->v_head_dim = (int)wd_json_reader_int(r, "v_head_dim", 1, 0, 1, CAP_HEAD_DIM);
    c->qk_head_dim = c->qk_nope_head_dim + c->qk_rope_head_dim;
    c->head_dim = c->qk_rope_head_dim;
    c->rope_interleave = wd_json_reader_bool(r, "rope_interleave", 0, 1);
    c->n_mtp_layers = (int)wd_json_reader_int(r, "num_nextn_predict_layers", 0, 1, 0, CAP_LAYERS);
}

/* RoPE from rope_parameters (transformers 5) or rope_scaling + rope_theta (hub files);
 * when both dicts exist rope_scaling wins, as in transformers. */
static void read_rope(struct wd_json_reader *r, struct wd_model_config *c)
{
    struct wd_rope_config *rp = &c->rope;
    const char *key = wd_json_reader_has(r, "rope_scaling") ? "rope_scaling" : "rope_parameters";
    struct wd_json_reader sub;
    char where[WD_ERROR_LEN];
    const json_t *obj = sub_object(r, key, &sub, where, sizeof(where));
    if (r->status != WD_OK)
        return;
    double theta = wd_json_reader_double(r, "rope_theta", 0, 10000.0, 1e-6, 1e12);
    double partial = wd_json_reader_double(r, "partial_rotary_factor", 0, 1.0, 0, 1);
    memset(rp, 0, sizeof(*rp));
    rp->type = WD_ROPE_DEFAULT;
    rp->theta = theta;
    rp->factor = 1.0;
    rp->truncate = 1;
    if (obj) {
        char type[64];
        const char *tkey = wd_json_reader_has(&sub, "rope_type") ? "rope_type" : "type";
        wd_json_reader_string(&sub, tkey, 0, "default", type, sizeof(type));
        rp->theta = wd_json_reader_double(&sub, "rope_theta", 0, theta, 1e-6, 1e12);
        partial = wd_json_reader_double(&sub, "partial_rotary_factor", 0, partial, 0, 1);
        if (sub.status == WD_OK && strcmp(type, "yarn") == 0) {
            rp->type = WD_ROPE_YARN;
            /* A top-level original_max_position_embeddings wins, as in transformers. */
            int orig = (int)wd_json_reader_int(&sub, "original_max_position_embeddings", 0,
                                               c->max_position_embeddings, 1, CAP_POSITIONS);
            rp->original_max_position_embeddings = (int)wd_json_reader_int(
                r, "original_max_position_embeddings", 0, orig, 1, CAP_POSITIONS);
            rp->factor = wd_json_reader_double(&sub, "factor", 0,
                                               (double)c->max_position_embeddings /
                                                   rp->original_max_position_embeddings,
                                               1.0, 1e6);
            rp->beta_fast = wd_json_reader_double(&sub, "beta_fast", 0, 0, 0, 1e6);
            rp->beta_slow = wd_json_reader_double(&sub, "beta_slow", 0, 0, 0, 1e6);
            rp->beta_fast = rp->beta_fast ? rp->beta_fast : 32.0;
            rp->beta_slow = rp->beta_slow ? rp->beta_slow : 1.0;
            rp->mscale = wd_json_reader_double(&sub, "mscale", 0, 0, 0, 1e6);
            rp->mscale_all_dim = wd_json_reader_double(&sub, "mscale_all_dim", 0, 0, 0, 1e6);
            rp->attention_factor = wd_json_reader_double(&sub, "attention_factor", 0, 0, 0, 1e6);
            rp->truncate = wd_json_reader_bool(&sub, "truncate", 0, 1);
        } else if (sub.status == WD_OK && strcmp(type, "default") != 0) {
            wd_json_reader_fail(&sub, WD_ERR_UNSUPPORTED,
                                "rope type '%s' unsupported (supported: default, yarn)", type);
        }
        if (sub.status != WD_OK)
            r->status = sub.status;
    }
    if (r->status == WD_OK && partial != 1.0)
        wd_json_reader_fail(r, WD_ERR_UNSUPPORTED, "partial_rotary_factor %g unsupported (only 1)",
                            partial);
}

/* quantization_config: only DeepSeek-style fine-grained fp8 (e4m3 weights, one fp32 scale per
 * weight block, activations quantized on the fly). */
static void read_quant(struct wd_json_reader *r, struct wd_model_config *c)
{
    struct wd_json_reader q;
    char where[WD_ERROR_LEN];
    const json_t *obj = sub_object(r, "quantization_config", &q, where, sizeof(where));
    snprintf(c->fp8_scale_fmt, sizeof(c->fp8_scale_fmt), "float");
    if (!obj || r->status != WD_OK)
        return;
    char method[64], fmt[64], act[64], expert[64];
    wd_json_reader_string(&q, "quant_method", 1, NULL, method, sizeof(method));
    if (q.status == WD_OK && strcmp(method, "fp8") != 0)
        wd_json_reader_fail(&q, WD_ERR_UNSUPPORTED,
                            "quant_method '%s' unsupported (supported: fp8 with e4m3 weight "
                            "blocks)",
                            method);
    wd_json_reader_string(&q, "fmt", 0, "e4m3", fmt, sizeof(fmt));
    if (q.status == WD_OK && strcmp(fmt, "e4m3") != 0)
        wd_json_reader_fail(&q, WD_ERR_UNSUPPORTED, "fp8 fmt '%s' unsupported (supported: e4m3)",
                            fmt);
    wd_json_reader_string(&q, "activation_scheme", 0, "dynamic", act, sizeof(act));
    if (q.status == WD_OK && strcmp(act, "dynamic") != 0)
        wd_json_reader_fail(&q, WD_ERR_UNSUPPORTED,
                            "activation_scheme '%s' unsupported (supported: dynamic)", act);
    wd_json_reader_string(&q, "expert_dtype", 0, "fp8", expert, sizeof(expert));
    if (q.status == WD_OK && strcmp(expert, "fp8") != 0)
        wd_json_reader_fail(&q, WD_ERR_UNSUPPORTED,
                            "expert_dtype '%s' unsupported (supported: fp8)", expert);
    char scale_fmt[64];
    wd_json_reader_string(&q, "scale_fmt", 0, "float", scale_fmt, sizeof(scale_fmt));
    if (q.status == WD_OK && strcmp(scale_fmt, "float") != 0 && strcmp(scale_fmt, "ue8m0") != 0)
        wd_json_reader_fail(&q, WD_ERR_UNSUPPORTED,
                            "scale_fmt '%s' unsupported (supported: float, ue8m0)", scale_fmt);
    else
        snprintf(c->fp8_scale_fmt, sizeof(c->fp8_scale_fmt), "%s", scale_fmt);
    if (q.status == WD_OK && !wd_json_reader_has(&q, "weight_block_size"))
        wd_json_reader_fail(&q, WD_ERR_UNSUPPORTED,
                            "fp8 without weight_block_size (per-tensor scales) unsupported");
    int n = 0;
    wd_json_reader_int_list(&q, "weight_block_size", 1, 1, 4096, c->fp8_block, 2, &n);
    if (q.status == WD_OK && n != 2)
        wd_json_reader_fail(&q, WD_ERR_INVALID, "'weight_block_size' must have 2 entries");
    c->is_fp8 = 1;
    if (q.status != WD_OK)
        r->status = q.status;
}

/* Cross-field checks, after every key was read. */
static void validate(struct wd_json_reader *r, struct wd_model_config *c)
{
    if (r->status != WD_OK)
        return;
    int e = c->n_routed_experts;
    if (e > 0 && c->num_experts_per_tok > e)
        wd_json_reader_fail(r, WD_ERR_INVALID, "num_experts_per_tok %d exceeds the %d experts",
                            c->num_experts_per_tok, e);
    if (c->arch == WD_ARCH_QWEN3_MOE) {
        if (c->n_heads % c->n_kv_heads != 0)
            wd_json_reader_fail(r, WD_ERR_INVALID,
                                "num_attention_heads %d is not a multiple of "
                                "num_key_value_heads %d",
                                c->n_heads, c->n_kv_heads);
        if (c->head_dim % 2 != 0)
            wd_json_reader_fail(r, WD_ERR_INVALID, "head_dim %d must be even for RoPE",
                                c->head_dim);
        for (int i = 0; i < c->n_mlp_only_layers; i++)
            if (c->mlp_only_layers[i] >= c->n_layers)
                wd_json_reader_fail(r, WD_ERR_INVALID,
                                    "mlp_only_layers[%d] = %d is not a layer "
                                    "(num_hidden_layers %d)",
                                    i, c->mlp_only_layers[i], c->n_layers);
        return;
    }
    if (c->qk_rope_head_dim % 2 != 0)
        wd_json_reader_fail(r, WD_ERR_INVALID, "qk_rope_head_dim %d must be even for RoPE",
                            c->qk_rope_head_dim);
    if (c->first_k_dense_replace > c->n_layers)
        wd_json_reader_fail(r, WD_ERR_INVALID,
                            "first_k_dense_replace %d exceeds num_hidden_layers %d",
                            c->first_k_dense_replace, c->n_layers);
    if (e > 0) {
        if (e % c->n_group != 0)
            wd_json_reader_fail(r, WD_ERR_INVALID, "n_group %d does not divide the %d experts",
                                c->n_group, e);
        else if (c->topk_group > c->n_group)
            wd_json_reader_fail(r, WD_ERR_INVALID, "topk_group %d exceeds n_group %d",
                                c->topk_group, c->n_group);
        else if (c->num_experts_per_tok > c->topk_group * (e / c->n_group))
            wd_json_reader_fail(r, WD_ERR_INVALID,
                                "num_experts_per_tok %d exceeds the %d experts of topk_group %d "
                                "groups",
                                c->num_experts_per_tok, c->topk_group * (e / c->n_group),
                                c->topk_group);
    }
}

static enum wd_status parse_with_label(const char *text, size_t len, const char *label,
                                       struct wd_model_config *cfg, struct wd_error *err)
{
    json_t *root;
    WD_CHECK(wd_json_reader_parse(text, len, label, &root, err));
    struct wd_model_config c;
    memset(&c, 0, sizeof(c));
    struct wd_json_reader r;
    wd_json_reader_init(&r, root, label, err);
    read_arch(&r, &c);
    if (r.status == WD_OK)
        read_common(&r, &c);
    if (r.status == WD_OK && c.arch == WD_ARCH_QWEN3_MOE)
        read_qwen3(&r, &c);
    else if (r.status == WD_OK)
        read_deepseek(&r, &c);
    read_rope(&r, &c);
    read_quant(&r, &c);
    validate(&r, &c);
    json_decref(root);
    if (r.status == WD_OK)
        *cfg = c;
    return r.status;
}

enum wd_status wd_model_config_parse(const char *json_text, size_t len, struct wd_model_config *cfg,
                                     struct wd_error *err)
{
    return parse_with_label(json_text, len, "config.json", cfg, err);
}

enum wd_status wd_model_config_load(const char *model_dir, struct wd_model_config *cfg,
                                    struct wd_error *err)
{
    char path[4096];
    if (snprintf(path, sizeof(path), "%s/config.json", model_dir) >= (int)sizeof(path))
        return wd_error_set(err, WD_ERR_INVALID, "%s: path too long", model_dir);
    char *text;
    size_t len;
    WD_CHECK(wd_json_reader_read_file(path, CONFIG_MAX_BYTES, &text, &len, err));
    enum wd_status s = parse_with_label(text, len, path, cfg, err);
    free(text);
    return s;
}

int wd_model_config_is_moe_layer(const struct wd_model_config *cfg, int layer)
{
    if (layer < 0 || layer >= cfg->n_layers || cfg->n_routed_experts <= 0)
        return 0;
    if (cfg->arch == WD_ARCH_QWEN3_MOE) {
        for (int i = 0; i < cfg->n_mlp_only_layers; i++)
            if (cfg->mlp_only_layers[i] == layer)
                return 0;
        return (layer + 1) % cfg->decoder_sparse_step == 0;
    }
    return layer >= cfg->first_k_dense_replace && layer % cfg->moe_layer_freq == 0;
}

static double yarn_mscale(double scale, double m)
{
    return scale <= 1.0 ? 1.0 : 0.1 * m * log(scale) + 1.0;
}

double wd_rope_attention_factor(const struct wd_rope_config *rope)
{
    if (rope->type != WD_ROPE_YARN)
        return 1.0;
    if (rope->attention_factor > 0)
        return rope->attention_factor;
    if (rope->mscale != 0 && rope->mscale_all_dim != 0)
        return yarn_mscale(rope->factor, rope->mscale) /
               yarn_mscale(rope->factor, rope->mscale_all_dim);
    return yarn_mscale(rope->factor, 1.0);
}

double wd_model_config_softmax_scale(const struct wd_model_config *cfg)
{
    if (cfg->arch == WD_ARCH_QWEN3_MOE)
        return 1.0 / sqrt((double)cfg->head_dim);
    double s = 1.0 / sqrt((double)cfg->qk_head_dim);
    if (cfg->rope.type == WD_ROPE_YARN && cfg->rope.mscale_all_dim != 0) {
        double m = yarn_mscale(cfg->rope.factor, cfg->rope.mscale_all_dim);
        s *= m * m;
    }
    return s;
}
