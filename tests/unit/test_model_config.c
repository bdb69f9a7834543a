/*
 * config.json parsing: hub-style DeepSeek-V3 and Qwen3-30B-A3B configs and configs saved by
 * transformers 5 itself (tests/fixtures/loader, see tests/tools/make_loader_fixtures.py) must
 * give every field its file value; each unsupported or broken variant (made by editing one
 * key of a good config) must fail with the right status and a message naming the key.
 * Expected yarn scales come from transformers' own functions (values noted where used).
 */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "common/config/json_reader.h"
#include "common/config/model_config.h"
#include "tests/unit/wd_test.h"

#define DS_HUB "tests/fixtures/loader/config_deepseek_v3_hub.json"
#define DS_TF5 "tests/fixtures/loader/config_deepseek_v3_tf5.json"
#define QW_HUB "tests/fixtures/loader/config_qwen3_30b_a3b_hub.json"
#define QW_TF5 "tests/fixtures/loader/config_qwen3_moe_tf5.json"

static json_t *load_fixture(const char *rel)
{
    json_error_t jerr;
    json_t *j = json_load_file(wd_test_src(rel), 0, &jerr);
    if (!j)
        fprintf(stderr, "%s: %s\n", rel, jerr.text);
    WD_ASSERT(j);
    return j;
}

static enum wd_status parse_json(const json_t *j, struct wd_model_config *cfg, struct wd_error *err)
{
    char *text = json_dumps(j, JSON_COMPACT);
    enum wd_status s = wd_model_config_parse(text, strlen(text), cfg, err);
    free(text);
    return s;
}

static enum wd_status parse_fixture(const char *rel, struct wd_model_config *cfg,
                                    struct wd_error *err)
{
    json_t *j = load_fixture(rel);
    enum wd_status s = parse_json(j, cfg, err);
    json_decref(j);
    return s;
}

/* Sets key (one level of nesting with "a.b") to val (stolen; NULL deletes the key). */
static void edit(json_t *j, const char *key, json_t *val)
{
    char buf[128];
    snprintf(buf, sizeof(buf), "%s", key);
    char *dot = strchr(buf, '.');
    if (dot) {
        *dot = 0;
        j = json_object_get(j, buf);
        WD_ASSERT(json_is_object(j));
        key = dot + 1;
    } else {
        key = buf;
    }
    if (val)
        json_object_set_new(j, key, val);
    else
        json_object_del(j, key);
}

/* Parses fixture with key set to val (NULL deletes); expects status want and want_msg in the
 * message. want == WD_OK checks success and leaves the result in *out when out != NULL. */
static void expect_edit(int line, const char *fixture, const char *key, json_t *val,
                        enum wd_status want, const char *want_msg, struct wd_model_config *out)
{
    json_t *j = load_fixture(fixture);
    edit(j, key, val);
    struct wd_model_config cfg;
    struct wd_error err = {0};
    enum wd_status s = parse_json(j, &cfg, &err);
    json_decref(j);
    WD_EXPECT_MSG(s == want, "line %d: %s: status %s, want %s (%s)", line, key, wd_status_str(s),
                  wd_status_str(want), s == WD_OK ? "" : err.msg);
    if (want != WD_OK)
        WD_EXPECT_MSG(strstr(err.msg, want_msg) != NULL, "line %d: message '%s' lacks '%s'", line,
                      err.msg, want_msg);
    else if (out && s == WD_OK)
        *out = cfg;
}

#define EDIT_FAIL(fx, key, val, st, msg) expect_edit(__LINE__, fx, key, val, st, msg, NULL)
#define EDIT_OK(fx, key, val, out) expect_edit(__LINE__, fx, key, val, WD_OK, "", out)

static void test_deepseek_hub(void)
{
    struct wd_model_config c;
    struct wd_error err = {0};
    enum wd_status s = parse_fixture(DS_HUB, &c, &err);
    WD_EXPECT_MSG(s == WD_OK, "%s", err.msg);
    if (s != WD_OK)
        return;
    WD_EXPECT_EQ_INT(c.arch, WD_ARCH_DEEPSEEK_V3);
    WD_EXPECT(strcmp(c.arch_name, "DeepseekV3ForCausalLM") == 0);
    WD_EXPECT(strcmp(c.model_type, "deepseek_v3") == 0);
    WD_EXPECT_EQ_INT(c.vocab_size, 129280);
    WD_EXPECT_EQ_INT(c.hidden_size, 7168);
    WD_EXPECT_EQ_INT(c.n_layers, 61);
    WD_EXPECT_EQ_INT(c.n_heads, 128);
    WD_EXPECT_EQ_INT(c.n_kv_heads, 128);
    WD_EXPECT_EQ_INT(c.head_dim, 64);
    WD_EXPECT_EQ_INT(c.intermediate_size, 18432);
    WD_EXPECT_EQ_INT(c.moe_intermediate_size, 2048);
    WD_EXPECT_EQ_INT(c.n_routed_experts, 256);
    WD_EXPECT_EQ_INT(c.n_shared_experts, 1);
    WD_EXPECT_EQ_INT(c.num_experts_per_tok, 8);
    WD_EXPECT_EQ_INT(c.norm_topk_prob, 1);
    WD_EXPECT_EQ_INT(c.n_group, 8);
    WD_EXPECT_EQ_INT(c.topk_group, 4);
    WD_EXPECT_EQ_INT(c.first_k_dense_replace, 3);
    WD_EXPECT_EQ_INT(c.moe_layer_freq, 1);
    WD_EXPECT_NEAR(c.routed_scaling_factor, 2.5, 0);
    WD_EXPECT(strcmp(c.scoring_func, "sigmoid") == 0);
    WD_EXPECT(strcmp(c.topk_method, "noaux_tc") == 0);
    WD_EXPECT_EQ_INT(c.q_lora_rank, 1536);
    WD_EXPECT_EQ_INT(c.kv_lora_rank, 512);
    WD_EXPECT_EQ_INT(c.qk_nope_head_dim, 128);
    WD_EXPECT_EQ_INT(c.qk_rope_head_dim, 64);
    WD_EXPECT_EQ_INT(c.qk_head_dim, 192);
    WD_EXPECT_EQ_INT(c.v_head_dim, 128);
    WD_EXPECT_EQ_INT(c.rope_interleave, 1);
    WD_EXPECT_EQ_INT(c.n_mtp_layers, 1);
    WD_EXPECT_EQ_INT(c.attention_bias, 0);
    WD_EXPECT_EQ_INT(c.use_qk_norm, 0);
    WD_EXPECT_NEAR(c.rms_norm_eps, 1e-6, 0);
    WD_EXPECT_EQ_INT(c.max_position_embeddings, 163840);
    WD_EXPECT_EQ_INT(c.rope.type, WD_ROPE_YARN);
    WD_EXPECT_NEAR(c.rope.theta, 10000, 0);
    WD_EXPECT_NEAR(c.rope.factor, 40, 0);
    WD_EXPECT_EQ_INT(c.rope.original_max_position_embeddings, 4096);
    WD_EXPECT_NEAR(c.rope.beta_fast, 32, 0);
    WD_EXPECT_NEAR(c.rope.beta_slow, 1, 0);
    WD_EXPECT_NEAR(c.rope.mscale, 1.0, 0);
    WD_EXPECT_NEAR(c.rope.mscale_all_dim, 1.0, 0);
    WD_EXPECT_NEAR(c.rope.attention_factor, 0, 0);
    WD_EXPECT_EQ_INT(c.rope.truncate, 1);
    WD_EXPECT_EQ_INT(c.tie_word_embeddings, 0);
    WD_EXPECT_EQ_INT(c.bos_token_id, 0);
    WD_EXPECT_EQ_INT(c.n_eos, 1);
    WD_EXPECT_EQ_INT(c.eos_token_ids[0], 1);
    WD_EXPECT_EQ_INT(c.torch_dtype, WD_DTYPE_BF16);
    WD_EXPECT_EQ_INT(c.has_torch_dtype, 1);
    WD_EXPECT_EQ_INT(c.is_fp8, 1);
    WD_EXPECT_EQ_INT(c.fp8_block[0], 128);
    WD_EXPECT_EQ_INT(c.fp8_block[1], 128);
    WD_EXPECT(strcmp(c.fp8_scale_fmt, "float") == 0);
    /* transformers: _compute_yarn_parameters -> 1.0; yarn_apply_mscale(192^-0.5) below. */
    WD_EXPECT_NEAR(wd_rope_attention_factor(&c.rope), 1.0, 1e-12);
    WD_EXPECT_NEAR(wd_model_config_softmax_scale(&c), 0.1352337788608801, 1e-12);
    for (int l = 0; l < 61; l++)
        WD_EXPECT_EQ_INT(wd_model_config_is_moe_layer(&c, l), l >= 3);
    WD_EXPECT_EQ_INT(wd_model_config_is_moe_layer(&c, 61), 0);
    WD_EXPECT_EQ_INT(wd_model_config_is_moe_layer(&c, -1), 0);
}

static void test_deepseek_tf5(void)
{
    struct wd_model_config c;
    struct wd_error err = {0};
    enum wd_status s = parse_fixture(DS_TF5, &c, &err);
    WD_EXPECT_MSG(s == WD_OK, "%s", err.msg);
    if (s != WD_OK)
        return;
    /* The constructor arguments in make_loader_fixtures.py. */
    WD_EXPECT_EQ_INT(c.arch, WD_ARCH_DEEPSEEK_V3);
    WD_EXPECT_EQ_INT(c.vocab_size, 1000);
    WD_EXPECT_EQ_INT(c.hidden_size, 64);
    WD_EXPECT_EQ_INT(c.intermediate_size, 128);
    WD_EXPECT_EQ_INT(c.moe_intermediate_size, 32);
    WD_EXPECT_EQ_INT(c.n_layers, 3);
    WD_EXPECT_EQ_INT(c.n_heads, 4);
    WD_EXPECT_EQ_INT(c.n_kv_heads, 4); /* file says 128 (class default); MLA ignores it */
    WD_EXPECT_EQ_INT(c.n_routed_experts, 16);
    WD_EXPECT_EQ_INT(c.n_shared_experts, 2);
    WD_EXPECT_EQ_INT(c.n_group, 4);
    WD_EXPECT_EQ_INT(c.topk_group, 2);
    WD_EXPECT_EQ_INT(c.num_experts_per_tok, 4);
    WD_EXPECT_EQ_INT(c.first_k_dense_replace, 1);
    WD_EXPECT_EQ_INT(c.moe_layer_freq, 1);
    WD_EXPECT_EQ_INT(c.q_lora_rank, 32);
    WD_EXPECT_EQ_INT(c.kv_lora_rank, 16);
    WD_EXPECT_EQ_INT(c.qk_rope_head_dim, 8);
    WD_EXPECT_EQ_INT(c.qk_nope_head_dim, 16);
    WD_EXPECT_EQ_INT(c.qk_head_dim, 24);
    WD_EXPECT_EQ_INT(c.head_dim, 8);
    WD_EXPECT_EQ_INT(c.v_head_dim, 12);
    WD_EXPECT_EQ_INT(c.max_position_embeddings, 8192);
    WD_EXPECT_NEAR(c.routed_scaling_factor, 1.5, 0);
    WD_EXPECT_NEAR(c.rms_norm_eps, 1e-5, 0);
    WD_EXPECT_EQ_INT(c.bos_token_id, 5);
    WD_EXPECT_EQ_INT(c.n_eos, 2);
    WD_EXPECT(c.eos_token_ids[0] == 6 && c.eos_token_ids[1] == 7);
    WD_EXPECT_EQ_INT(c.torch_dtype, WD_DTYPE_BF16);
    WD_EXPECT_EQ_INT(c.has_torch_dtype, 1);
    WD_EXPECT(strcmp(c.scoring_func, "sigmoid") == 0); /* not written by transformers 5 */
    WD_EXPECT(strcmp(c.topk_method, "noaux_tc") == 0);
    WD_EXPECT_EQ_INT(c.is_fp8, 0);
    WD_EXPECT_EQ_INT(c.rope.type, WD_ROPE_YARN);
    WD_EXPECT_NEAR(c.rope.theta, 50000, 0);
    WD_EXPECT_NEAR(c.rope.factor, 4, 0);
    WD_EXPECT_EQ_INT(c.rope.original_max_position_embeddings, 2048);
    WD_EXPECT_NEAR(c.rope.beta_fast, 16, 0);
    WD_EXPECT_NEAR(c.rope.beta_slow, 2, 0);
    WD_EXPECT_NEAR(c.rope.mscale, 0.5, 0);
    WD_EXPECT_NEAR(c.rope.mscale_all_dim, 0.75, 0);
    /* transformers 5.23: _compute_yarn_parameters and yarn_apply_mscale on this file. */
    WD_EXPECT_NEAR(wd_rope_attention_factor(&c.rope), 0.9686066706328836, 1e-12);
    WD_EXPECT_NEAR(wd_model_config_softmax_scale(&c), 0.24877718932522672, 1e-12);
    WD_EXPECT_EQ_INT(wd_model_config_is_moe_layer(&c, 0), 0);
    WD_EXPECT_EQ_INT(wd_model_config_is_moe_layer(&c, 1), 1);
    WD_EXPECT_EQ_INT(wd_model_config_is_moe_layer(&c, 2), 1);
}

static void test_qwen3_hub(void)
{
    struct wd_model_config c;
    struct wd_error err = {0};
    enum wd_status s = parse_fixture(QW_HUB, &c, &err);
    WD_EXPECT_MSG(s == WD_OK, "%s", err.msg);
    if (s != WD_OK)
        return;
    WD_EXPECT_EQ_INT(c.arch, WD_ARCH_QWEN3_MOE);
    WD_EXPECT(strcmp(c.arch_name, "Qwen3MoeForCausalLM") == 0);
    WD_EXPECT(strcmp(c.model_type, "qwen3_moe") == 0);
    WD_EXPECT_EQ_INT(c.vocab_size, 151936);
    WD_EXPECT_EQ_INT(c.hidden_size, 2048);
    WD_EXPECT_EQ_INT(c.n_layers, 48);
    WD_EXPECT_EQ_INT(c.n_heads, 32);
    WD_EXPECT_EQ_INT(c.n_kv_heads, 4);
    WD_EXPECT_EQ_INT(c.head_dim, 128);
    WD_EXPECT_EQ_INT(c.intermediate_size, 6144);
    WD_EXPECT_EQ_INT(c.moe_intermediate_size, 768);
    WD_EXPECT_EQ_INT(c.n_routed_experts, 128);
    WD_EXPECT_EQ_INT(c.n_shared_experts, 0);
    WD_EXPECT_EQ_INT(c.num_experts_per_tok, 8);
    WD_EXPECT_EQ_INT(c.norm_topk_prob, 1);
    WD_EXPECT_EQ_INT(c.decoder_sparse_step, 1);
    WD_EXPECT_EQ_INT(c.n_mlp_only_layers, 0);
    WD_EXPECT_EQ_INT(c.attention_bias, 0);
    WD_EXPECT_EQ_INT(c.use_qk_norm, 1);
    WD_EXPECT_NEAR(c.routed_scaling_factor, 1.0, 0);
    WD_EXPECT_NEAR(c.rms_norm_eps, 1e-6, 0);
    WD_EXPECT_EQ_INT(c.max_position_embeddings, 40960);
    WD_EXPECT_EQ_INT(c.rope.type, WD_ROPE_DEFAULT);
    WD_EXPECT_NEAR(c.rope.theta, 1000000.0, 0);
    WD_EXPECT_NEAR(c.rope.factor, 1.0, 0);
    WD_EXPECT_EQ_INT(c.tie_word_embeddings, 0);
    WD_EXPECT_EQ_INT(c.bos_token_id, 151643);
    WD_EXPECT_EQ_INT(c.n_eos, 1);
    WD_EXPECT_EQ_INT(c.eos_token_ids[0], 151645);
    WD_EXPECT_EQ_INT(c.torch_dtype, WD_DTYPE_BF16);
    WD_EXPECT_EQ_INT(c.is_fp8, 0);
    WD_EXPECT_EQ_INT(c.n_mtp_layers, 0);
    WD_EXPECT_NEAR(wd_rope_attention_factor(&c.rope), 1.0, 0);
    WD_EXPECT_NEAR(wd_model_config_softmax_scale(&c), 1.0 / sqrt(128.0), 1e-15);
    for (int l = 0; l < 48; l++)
        WD_EXPECT_EQ_INT(wd_model_config_is_moe_layer(&c, l), 1);
}

static void test_qwen3_tf5(void)
{
    struct wd_model_config c;
    struct wd_error err = {0};
    enum wd_status s = parse_fixture(QW_TF5, &c, &err);
    WD_EXPECT_MSG(s == WD_OK, "%s", err.msg);
    if (s != WD_OK)
        return;
    WD_EXPECT_EQ_INT(c.arch, WD_ARCH_QWEN3_MOE);
    WD_EXPECT_EQ_INT(c.vocab_size, 1000);
    WD_EXPECT_EQ_INT(c.hidden_size, 64);
    WD_EXPECT_EQ_INT(c.intermediate_size, 96);
    WD_EXPECT_EQ_INT(c.moe_intermediate_size, 24);
    WD_EXPECT_EQ_INT(c.n_layers, 4);
    WD_EXPECT_EQ_INT(c.n_heads, 4);
    WD_EXPECT_EQ_INT(c.n_kv_heads, 2);
    WD_EXPECT_EQ_INT(c.head_dim, 32);
    WD_EXPECT_EQ_INT(c.n_routed_experts, 8); /* written as num_local_experts */
    WD_EXPECT_EQ_INT(c.num_experts_per_tok, 2);
    WD_EXPECT_EQ_INT(c.norm_topk_prob, 1);
    WD_EXPECT_EQ_INT(c.decoder_sparse_step, 2);
    WD_EXPECT_EQ_INT(c.n_mlp_only_layers, 1);
    WD_EXPECT_EQ_INT(c.mlp_only_layers[0], 0);
    WD_EXPECT_EQ_INT(c.max_position_embeddings, 4096);
    WD_EXPECT_EQ_INT(c.tie_word_embeddings, 1);
    WD_EXPECT_EQ_INT(c.bos_token_id, 1);
    WD_EXPECT_EQ_INT(c.n_eos, 1);
    WD_EXPECT_EQ_INT(c.eos_token_ids[0], 2);
    WD_EXPECT_EQ_INT(c.torch_dtype, WD_DTYPE_F32);
    WD_EXPECT_EQ_INT(c.has_torch_dtype, 1);
    WD_EXPECT_EQ_INT(c.rope.type, WD_ROPE_DEFAULT);
    WD_EXPECT_NEAR(c.rope.theta, 1000000.0, 0);
    /* modeling_qwen3_moe: layer l is sparse iff l not in mlp_only and (l+1) % step == 0. */
    const int moe[4] = {0, 1, 0, 1};
    for (int l = 0; l < 4; l++)
        WD_EXPECT_EQ_INT(wd_model_config_is_moe_layer(&c, l), moe[l]);
}

static void test_variants(void)
{
    struct wd_model_config c;
    /* Qwen3 with yarn added the way Qwen's model cards say. */
    EDIT_OK(QW_HUB, "rope_scaling",
            json_pack("{s:s, s:f, s:i}", "rope_type", "yarn", "factor", 4.0,
                      "original_max_position_embeddings", 32768),
            &c);
    WD_EXPECT_EQ_INT(c.rope.type, WD_ROPE_YARN);
    WD_EXPECT_NEAR(c.rope.theta, 1000000.0, 0);
    WD_EXPECT_NEAR(c.rope.factor, 4.0, 0);
    WD_EXPECT_EQ_INT(c.rope.original_max_position_embeddings, 32768);
    WD_EXPECT_NEAR(c.rope.beta_fast, 32, 0);
    WD_EXPECT_NEAR(c.rope.beta_slow, 1, 0);
    WD_EXPECT_NEAR(c.rope.mscale, 0, 0);
    WD_EXPECT_NEAR(wd_rope_attention_factor(&c.rope), 0.1 * log(4.0) + 1.0, 1e-15);
    /* yarn without factor: max_position / original (transformers' fallback for None). */
    EDIT_OK(QW_HUB, "rope_scaling",
            json_pack("{s:s, s:n, s:i}", "type", "yarn", "factor",
                      "original_max_position_embeddings", 10240),
            &c);
    WD_EXPECT_NEAR(c.rope.factor, 4.0, 0);
    /* yarn without original_max_position_embeddings: max_position_embeddings. */
    EDIT_OK(QW_HUB, "rope_scaling", json_pack("{s:s, s:f}", "type", "yarn", "factor", 2.0), &c);
    WD_EXPECT_EQ_INT(c.rope.original_max_position_embeddings, 40960);
    /* No rope_theta anywhere: 10000. */
    EDIT_OK(QW_HUB, "rope_theta", NULL, &c);
    WD_EXPECT_NEAR(c.rope.theta, 10000, 0);
    EDIT_OK(QW_TF5, "rope_parameters.rope_theta", NULL, &c);
    WD_EXPECT_NEAR(c.rope.theta, 10000, 0);
    /* head_dim absent: hidden / heads. */
    EDIT_OK(QW_HUB, "head_dim", NULL, &c);
    WD_EXPECT_EQ_INT(c.head_dim, 64);
    EDIT_OK(QW_HUB, "head_dim", json_null(), &c);
    WD_EXPECT_EQ_INT(c.head_dim, 64);
    /* eos as a list, bos null, dtype under its transformers-5 name. */
    EDIT_OK(QW_HUB, "eos_token_id", json_pack("[i,i]", 151645, 151643), &c);
    WD_EXPECT(c.n_eos == 2 && c.eos_token_ids[1] == 151643);
    EDIT_OK(QW_HUB, "bos_token_id", json_null(), &c);
    WD_EXPECT_EQ_INT(c.bos_token_id, -1);
    EDIT_OK(QW_HUB, "dtype", json_string("float16"), &c);
    WD_EXPECT_EQ_INT(c.torch_dtype, WD_DTYPE_F16);
    EDIT_OK(QW_HUB, "torch_dtype", NULL, &c);
    WD_EXPECT(c.has_torch_dtype == 0 && c.torch_dtype == WD_DTYPE_F32);
    /* Qwen3 defaults when optional keys are absent. */
    EDIT_OK(QW_HUB, "norm_topk_prob", NULL, &c);
    WD_EXPECT_EQ_INT(c.norm_topk_prob, 0);
    EDIT_OK(QW_HUB, "max_position_embeddings", NULL, &c);
    WD_EXPECT_EQ_INT(c.max_position_embeddings, 32768);
    EDIT_OK(QW_HUB, "num_experts", json_integer(0), &c);
    WD_EXPECT_EQ_INT(wd_model_config_is_moe_layer(&c, 5), 0);
    /* Qwen3 fp8 checkpoint (Qwen3-30B-A3B-FP8 style). */
    EDIT_OK(QW_HUB, "quantization_config",
            json_pack("{s:s, s:s, s:s, s:[i,i]}", "activation_scheme", "dynamic", "fmt", "e4m3",
                      "quant_method", "fp8", "weight_block_size", 128, 128),
            &c);
    WD_EXPECT(c.is_fp8 == 1 && c.fp8_block[0] == 128 && c.fp8_block[1] == 128);

    /* DeepSeek: architectures absent -> model_type; q_lora_rank null; moe_layer_freq. */
    EDIT_OK(DS_HUB, "architectures", NULL, &c);
    WD_EXPECT(c.arch == WD_ARCH_DEEPSEEK_V3 && strcmp(c.arch_name, "DeepseekV3ForCausalLM") == 0);
    EDIT_OK(DS_HUB, "q_lora_rank", json_null(), &c);
    WD_EXPECT_EQ_INT(c.q_lora_rank, 0);
    EDIT_OK(DS_HUB, "moe_layer_freq", json_integer(2), &c);
    for (int l = 0; l < 8; l++)
        WD_EXPECT_EQ_INT(wd_model_config_is_moe_layer(&c, l), l >= 3 && l % 2 == 0);
    EDIT_OK(DS_HUB, "quantization_config.scale_fmt", json_string("ue8m0"), &c);
    WD_EXPECT(strcmp(c.fp8_scale_fmt, "ue8m0") == 0);
    EDIT_OK(DS_HUB, "quantization_config", json_null(), &c);
    WD_EXPECT_EQ_INT(c.is_fp8, 0);
    EDIT_OK(DS_HUB, "rope_interleave", json_false(), &c);
    WD_EXPECT_EQ_INT(c.rope_interleave, 0);
    /* DeepSeek defaults of DeepseekV3Config. */
    EDIT_OK(DS_HUB, "first_k_dense_replace", NULL, &c);
    WD_EXPECT_EQ_INT(c.first_k_dense_replace, 3);
    EDIT_OK(DS_HUB, "routed_scaling_factor", NULL, &c);
    WD_EXPECT_NEAR(c.routed_scaling_factor, 2.5, 0);
    EDIT_OK(DS_HUB, "max_position_embeddings", NULL, &c);
    WD_EXPECT_EQ_INT(c.max_position_embeddings, 4096);
    EDIT_OK(DS_HUB, "rope_scaling", json_null(), &c);
    WD_EXPECT(c.rope.type == WD_ROPE_DEFAULT && c.rope.theta == 10000);
    WD_EXPECT_NEAR(wd_model_config_softmax_scale(&c), 1.0 / sqrt(192.0), 1e-15);
    /* Both spellings of the expert count, agreeing. */
    EDIT_OK(QW_HUB, "num_local_experts", json_integer(128), &c);
    WD_EXPECT_EQ_INT(c.n_routed_experts, 128);
    /* A real that is an integer is fine where an integer is wanted. */
    EDIT_OK(QW_HUB, "hidden_size", json_real(2048.0), &c);
    WD_EXPECT_EQ_INT(c.hidden_size, 2048);
}

static void test_errors(void)
{
    EDIT_FAIL(QW_HUB, "architectures", json_pack("[s]", "LlamaForCausalLM"), WD_ERR_UNSUPPORTED,
              "config.json: unsupported architecture 'LlamaForCausalLM' (supported: "
              "Qwen3MoeForCausalLM, DeepseekV3ForCausalLM)");
    EDIT_FAIL(QW_HUB, "architectures", json_string("Qwen3MoeForCausalLM"), WD_ERR_FORMAT,
              "'architectures' must be a non-empty list");
    EDIT_FAIL(QW_HUB, "architectures", json_array(), WD_ERR_FORMAT, "non-empty list");
    {
        json_t *j = load_fixture(QW_HUB);
        edit(j, "architectures", NULL);
        edit(j, "model_type", json_string("llama"));
        struct wd_model_config c;
        struct wd_error err = {0};
        WD_EXPECT(parse_json(j, &c, &err) == WD_ERR_UNSUPPORTED);
        WD_EXPECT_MSG(strstr(err.msg, "unsupported model_type 'llama'") != NULL, "%s", err.msg);
        edit(j, "model_type", NULL);
        WD_EXPECT(parse_json(j, &c, &err) == WD_ERR_NOT_FOUND);
        WD_EXPECT_MSG(strstr(err.msg, "missing required key 'architectures'") != NULL, "%s",
                      err.msg);
        json_decref(j);
    }
    /* Missing required keys. */
    EDIT_FAIL(QW_HUB, "hidden_size", NULL, WD_ERR_NOT_FOUND,
              "config.json: missing required key 'hidden_size'");
    EDIT_FAIL(QW_HUB, "vocab_size", json_null(), WD_ERR_NOT_FOUND,
              "missing required key 'vocab_size'");
    EDIT_FAIL(QW_HUB, "num_experts", NULL, WD_ERR_NOT_FOUND, "missing required key 'num_experts'");
    EDIT_FAIL(QW_HUB, "num_key_value_heads", NULL, WD_ERR_NOT_FOUND, "'num_key_value_heads'");
    EDIT_FAIL(DS_HUB, "kv_lora_rank", NULL, WD_ERR_NOT_FOUND,
              "missing required key 'kv_lora_rank'");
    EDIT_FAIL(DS_HUB, "q_lora_rank", NULL, WD_ERR_NOT_FOUND, "missing required key 'q_lora_rank'");
    EDIT_FAIL(DS_HUB, "n_routed_experts", NULL, WD_ERR_NOT_FOUND, "'n_routed_experts'");
    EDIT_FAIL(DS_HUB, "qk_rope_head_dim", NULL, WD_ERR_NOT_FOUND, "'qk_rope_head_dim'");
    /* Types. */
    EDIT_FAIL(QW_HUB, "hidden_size", json_string("2048"), WD_ERR_FORMAT,
              "'hidden_size' must be an integer");
    EDIT_FAIL(QW_HUB, "hidden_size", json_real(2048.5), WD_ERR_INVALID, "'hidden_size' = 2048.5");
    EDIT_FAIL(QW_HUB, "tie_word_embeddings", json_integer(1), WD_ERR_FORMAT,
              "'tie_word_embeddings' must be true or false");
    EDIT_FAIL(QW_HUB, "rms_norm_eps", json_string("1e-6"), WD_ERR_FORMAT,
              "'rms_norm_eps' must be a number");
    EDIT_FAIL(QW_HUB, "eos_token_id", json_string("</s>"), WD_ERR_FORMAT,
              "'eos_token_id' must be an integer or a list");
    EDIT_FAIL(QW_HUB, "eos_token_id", json_pack("[i,s]", 1, "x"), WD_ERR_FORMAT,
              "'eos_token_id'[1] must be an integer");
    EDIT_FAIL(QW_HUB, "rope_scaling", json_string("yarn"), WD_ERR_FORMAT,
              "'rope_scaling' must be an object");
    EDIT_FAIL(DS_HUB, "quantization_config", json_string("fp8"), WD_ERR_FORMAT,
              "'quantization_config' must be an object");
    /* Ranges and caps. */
    EDIT_FAIL(QW_HUB, "vocab_size", json_integer(0), WD_ERR_INVALID,
              "'vocab_size' = 0 out of range");
    EDIT_FAIL(QW_HUB, "vocab_size", json_integer(5000000), WD_ERR_INVALID, "'vocab_size'");
    EDIT_FAIL(QW_HUB, "num_hidden_layers", json_integer(2000), WD_ERR_INVALID,
              "'num_hidden_layers' = 2000 out of range [1, 1024]");
    EDIT_FAIL(QW_HUB, "num_experts", json_integer(5000), WD_ERR_INVALID, "'num_experts' = 5000");
    EDIT_FAIL(QW_HUB, "hidden_size", json_integer(-64), WD_ERR_INVALID, "'hidden_size' = -64");
    EDIT_FAIL(QW_HUB, "num_attention_heads", json_integer(1LL << 40), WD_ERR_INVALID,
              "'num_attention_heads'");
    EDIT_FAIL(QW_HUB, "rms_norm_eps", json_real(-1e-6), WD_ERR_INVALID, "'rms_norm_eps'");
    EDIT_FAIL(QW_HUB, "decoder_sparse_step", json_integer(0), WD_ERR_INVALID,
              "'decoder_sparse_step' = 0");
    EDIT_FAIL(QW_HUB, "eos_token_id", json_pack("[i,i,i,i,i,i,i,i,i]", 1, 2, 3, 4, 5, 6, 7, 8, 9),
              WD_ERR_UNSUPPORTED, "'eos_token_id' has 9 entries, at most 8");
    EDIT_FAIL(QW_HUB, "eos_token_id", json_integer(-2), WD_ERR_INVALID, "'eos_token_id' = -2");
    EDIT_FAIL(DS_HUB, "n_routed_experts", json_integer(0), WD_ERR_INVALID,
              "'n_routed_experts' must be positive");
    EDIT_FAIL(DS_HUB, "q_lora_rank", json_integer(0), WD_ERR_INVALID, "'q_lora_rank' = 0");
    /* Consistency. */
    EDIT_FAIL(QW_HUB, "num_key_value_heads", json_integer(5), WD_ERR_INVALID,
              "num_attention_heads 32 is not a multiple of num_key_value_heads 5");
    {
        json_t *j = load_fixture(QW_HUB);
        edit(j, "head_dim", NULL);
        edit(j, "hidden_size", json_integer(2050));
        struct wd_model_config c;
        struct wd_error err = {0};
        WD_EXPECT(parse_json(j, &c, &err) == WD_ERR_INVALID);
        WD_EXPECT_MSG(strstr(err.msg, "no 'head_dim' and hidden_size 2050 is not divisible by "
                                      "num_attention_heads 32") != NULL,
                      "%s", err.msg);
        json_decref(j);
    }
    EDIT_FAIL(QW_HUB, "head_dim", json_integer(127), WD_ERR_INVALID, "head_dim 127 must be even");
    EDIT_FAIL(QW_HUB, "num_experts_per_tok", json_integer(200), WD_ERR_INVALID,
              "num_experts_per_tok 200 exceeds the 128 experts");
    EDIT_FAIL(QW_HUB, "mlp_only_layers", json_pack("[i,i]", 0, 48), WD_ERR_INVALID,
              "mlp_only_layers[1] = 48 is not a layer");
    EDIT_FAIL(QW_HUB, "num_local_experts", json_integer(64), WD_ERR_INVALID,
              "'num_experts' = 128 and 'num_local_experts' = 64 disagree");
    EDIT_FAIL(DS_HUB, "n_group", json_integer(7), WD_ERR_INVALID,
              "n_group 7 does not divide the 256 experts");
    EDIT_FAIL(DS_HUB, "topk_group", json_integer(9), WD_ERR_INVALID,
              "topk_group 9 exceeds n_group 8");
    EDIT_FAIL(DS_HUB, "num_experts_per_tok", json_integer(129), WD_ERR_INVALID,
              "num_experts_per_tok 129 exceeds the 128 experts of topk_group 4 groups");
    EDIT_FAIL(DS_HUB, "qk_rope_head_dim", json_integer(63), WD_ERR_INVALID,
              "qk_rope_head_dim 63 must be even");
    EDIT_FAIL(DS_HUB, "first_k_dense_replace", json_integer(62), WD_ERR_INVALID,
              "first_k_dense_replace 62 exceeds num_hidden_layers 61");
    /* Unsupported options. */
    EDIT_FAIL(DS_HUB, "scoring_func", json_string("softmax"), WD_ERR_UNSUPPORTED,
              "scoring_func 'softmax' unsupported (supported: sigmoid)");
    EDIT_FAIL(DS_HUB, "topk_method", json_string("greedy"), WD_ERR_UNSUPPORTED,
              "topk_method 'greedy' unsupported (supported: noaux_tc)");
    EDIT_FAIL(DS_HUB, "topk_method", json_string("group_limited_greedy"), WD_ERR_UNSUPPORTED,
              "topk_method 'group_limited_greedy'");
    EDIT_FAIL(DS_HUB, "rope_scaling.type", json_string("linear"), WD_ERR_UNSUPPORTED,
              "config.json: rope_scaling: rope type 'linear' unsupported (supported: default, "
              "yarn)");
    EDIT_FAIL(DS_TF5, "rope_parameters.rope_type", json_string("llama3"), WD_ERR_UNSUPPORTED,
              "rope_parameters: rope type 'llama3' unsupported");
    EDIT_FAIL(DS_HUB, "rope_scaling.factor", json_real(0.5), WD_ERR_INVALID,
              "rope_scaling: 'factor' = 0.5 out of range");
    EDIT_FAIL(QW_TF5, "partial_rotary_factor", json_real(0.5), WD_ERR_UNSUPPORTED,
              "partial_rotary_factor 0.5 unsupported");
    EDIT_FAIL(QW_HUB, "use_sliding_window", json_true(), WD_ERR_UNSUPPORTED,
              "use_sliding_window true unsupported");
    EDIT_FAIL(QW_HUB, "hidden_act", json_string("gelu"), WD_ERR_UNSUPPORTED,
              "hidden_act 'gelu' unsupported");
    EDIT_FAIL(QW_HUB, "torch_dtype", json_string("float64"), WD_ERR_UNSUPPORTED,
              "torch_dtype 'float64' unsupported");
    EDIT_FAIL(DS_HUB, "quantization_config.quant_method", json_string("awq"), WD_ERR_UNSUPPORTED,
              "config.json: quantization_config: quant_method 'awq' unsupported");
    EDIT_FAIL(DS_HUB, "quantization_config.quant_method", NULL, WD_ERR_NOT_FOUND,
              "quantization_config: missing required key 'quant_method'");
    EDIT_FAIL(DS_HUB, "quantization_config.fmt", json_string("e5m2"), WD_ERR_UNSUPPORTED,
              "fp8 fmt 'e5m2' unsupported");
    EDIT_FAIL(DS_HUB, "quantization_config.activation_scheme", json_string("static"),
              WD_ERR_UNSUPPORTED, "activation_scheme 'static' unsupported");
    EDIT_FAIL(DS_HUB, "quantization_config.weight_block_size", NULL, WD_ERR_UNSUPPORTED,
              "fp8 without weight_block_size (per-tensor scales) unsupported");
    EDIT_FAIL(DS_HUB, "quantization_config.weight_block_size", json_pack("[i]", 128),
              WD_ERR_INVALID, "'weight_block_size' must have 2 entries");
    EDIT_FAIL(DS_HUB, "quantization_config.weight_block_size", json_pack("[i,i]", 128, 0),
              WD_ERR_INVALID, "'weight_block_size'[1] = 0");
    EDIT_FAIL(DS_HUB, "quantization_config.expert_dtype", json_string("fp4"), WD_ERR_UNSUPPORTED,
              "expert_dtype 'fp4' unsupported");
}

static void test_bad_text(void)
{
    struct wd_model_config c;
    struct wd_error err = {0};
    const char *bad[] = {"", "{", "[1]", "{\"a\":1,\"a\":2}", "null", "{\"vocab_size\":1e999}"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        enum wd_status s = wd_model_config_parse(bad[i], strlen(bad[i]), &c, &err);
        WD_EXPECT_MSG(s == WD_ERR_FORMAT, "'%s': %s", bad[i], wd_status_str(s));
        WD_EXPECT_MSG(strncmp(err.msg, "config.json: ", 13) == 0, "%s", err.msg);
    }
    /* Not NUL-terminated: only len bytes are read. */
    char *text;
    size_t len;
    WD_ASSERT(wd_json_reader_read_file(wd_test_src(QW_HUB), 1 << 20, &text, &len, &err) == WD_OK);
    WD_EXPECT(wd_model_config_parse(text, len, &c, &err) == WD_OK);
    WD_EXPECT(wd_model_config_parse(text, len - 3, &c, &err) == WD_ERR_FORMAT);
    free(text);
}

static void test_load(void)
{
    char dir[256], cmd[1024], out[256];
    snprintf(dir, sizeof(dir), "%s/wd_cfg_XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    WD_ASSERT(mkdtemp(dir));
    struct wd_model_config c;
    struct wd_error err = {0};
    enum wd_status s = wd_model_config_load(dir, &c, &err);
    WD_EXPECT(s == WD_ERR_NOT_FOUND);
    WD_EXPECT_MSG(strstr(err.msg, "config.json: No such file or directory") != NULL, "%s", err.msg);
    snprintf(cmd, sizeof(cmd), "cp '%s' '%s/config.json'", wd_test_src(DS_HUB), dir);
    WD_ASSERT(wd_test_sh(cmd, out, sizeof(out)) == 0);
    s = wd_model_config_load(dir, &c, &err);
    WD_EXPECT_MSG(s == WD_OK, "%s", err.msg);
    WD_EXPECT(s == WD_OK && c.n_layers == 61 && c.is_fp8);
    /* Errors of a loaded file name its path. */
    snprintf(cmd, sizeof(cmd), "sed -i 's/\"silu\"/\"relu\"/' '%s/config.json'", dir);
    WD_ASSERT(wd_test_sh(cmd, out, sizeof(out)) == 0);
    s = wd_model_config_load(dir, &c, &err);
    WD_EXPECT(s == WD_ERR_UNSUPPORTED);
    WD_EXPECT_MSG(strstr(err.msg, "/config.json: hidden_act 'relu' unsupported") != NULL, "%s",
                  err.msg);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    wd_test_sh(cmd, out, sizeof(out));
}

int main(void)
{
    WD_RUN(test_deepseek_hub);
    WD_RUN(test_deepseek_tf5);
    WD_RUN(test_qwen3_hub);
    WD_RUN(test_qwen3_tf5);
    WD_RUN(test_variants);
    WD_RUN(test_errors);
    WD_RUN(test_bad_text);
    WD_RUN(test_load);
    return wd_test_finish();
}
