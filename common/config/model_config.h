/*
 * Model hyper-parameters from a Hugging Face config.json, for the two architectures
 * wideep runs: Qwen3MoeForCausalLM and DeepseekV3ForCausalLM.
 *
 * Values come from the file. Keys that fix a tensor shape are required; the others
 * fall back to the defaults of transformers' own config classes (Qwen3MoeConfig,
 * DeepseekV3Config, FineGrainedFP8Config, modeling_rope_utils), and the defaults are
 * noted next to each field. Both RoPE spellings parse: the classic top-level
 * rope_theta + rope_scaling {type|rope_type, ...} of hub checkpoints and the
 * transformers-5 rope_parameters {rope_type, rope_theta, ...}. Anything wideep does not
 * implement (another architecture, rope type, scoring function, quantization, sliding
 * window, activation) is refused with WD_ERR_UNSUPPORTED naming it, never ignored.
 * The result is a plain value struct: no allocation, nothing to free.
 */
#ifndef WD_CONFIG_MODEL_CONFIG_H
#define WD_CONFIG_MODEL_CONFIG_H

#include <stddef.h>

#include "common/util/status.h"
#include "kernels/dtype.h"

#define WD_MODEL_MAX_EOS 8
#define WD_MODEL_MAX_MLP_ONLY_LAYERS 256

enum wd_arch { WD_ARCH_QWEN3_MOE = 0, WD_ARCH_DEEPSEEK_V3 };
enum wd_rope_type { WD_ROPE_DEFAULT = 0, WD_ROPE_YARN };

struct wd_rope_config {
    enum wd_rope_type type;
    double theta; /* rope_theta, default 10000 */
    /* yarn only (default rope: factor 1, the rest 0) */
    double factor;                        /* absent/null: max_position / original_max */
    int original_max_position_embeddings; /* default max_position_embeddings */
    double beta_fast, beta_slow;          /* absent or 0: 32 and 1, as transformers does */
    double mscale, mscale_all_dim;        /* 0 = not given */
    double attention_factor;              /* 0 = not given (derive from factor and mscales) */
    int truncate;                         /* bool, default 1 */
};

struct wd_model_config {
    enum wd_arch arch;
    char arch_name[64];  /* architectures[0], or derived from model_type when absent */
    char model_type[64]; /* "" when absent */
    int vocab_size, hidden_size, n_layers, n_heads;
    int n_kv_heads;        /* Qwen3: num_key_value_heads. DeepSeek (MLA): = n_heads, every head
                             has its own K/V expanded from the latent; the file's value unused */
    int head_dim;          /* Qwen3: head_dim, default hidden/heads. DeepSeek: qk_rope_head_dim,
                             as transformers defines it */
    int intermediate_size; /* dense MLP */
    int moe_intermediate_size, n_routed_experts, n_shared_experts, num_experts_per_tok;
    int norm_topk_prob; /* bool; default Qwen3 0, DeepSeek 1 */
    /* Qwen3-MoE */
    int decoder_sparse_step; /* default 1 */
    int n_mlp_only_layers;
    int mlp_only_layers[WD_MODEL_MAX_MLP_ONLY_LAYERS];
    int attention_bias; /* bool, default 0 (DeepSeek: q_a/kv_a projections) */
    int use_qk_norm;    /* always 1 for Qwen3, 0 for DeepSeek */
    /* DeepSeek-V3 */
    int n_group, topk_group;      /* default 8, 4 */
    int first_k_dense_replace;    /* default 3 */
    int moe_layer_freq;           /* default 1 */
    double routed_scaling_factor; /* default 2.5 (Qwen3: 1) */
    char scoring_func[16];        /* "sigmoid" (the only one supported; default) */
    char topk_method[16];         /* "noaux_tc" (the only one supported; default) */
    int q_lora_rank;              /* 0 = no q compression (null in the file) */
    int kv_lora_rank, qk_nope_head_dim, qk_rope_head_dim, v_head_dim;
    int qk_head_dim;     /* qk_nope_head_dim + qk_rope_head_dim */
    int rope_interleave; /* bool, default 1 */
    int n_mtp_layers;    /* num_nextn_predict_layers, default 1 (Qwen3: 0) */
    /* common */
    double rms_norm_eps;         /* default 1e-6 */
    int max_position_embeddings; /* default Qwen3 32768, DeepSeek 4096 */
    struct wd_rope_config rope;
    int tie_word_embeddings; /* bool, default 0 */
    int bos_token_id;        /* -1 when absent or null */
    int n_eos;
    int eos_token_ids[WD_MODEL_MAX_EOS];
    enum wd_dtype torch_dtype; /* "dtype" or "torch_dtype"; F32 when absent */
    int has_torch_dtype;
    /* quantization_config: quant_method fp8, fmt e4m3, weight_block_size [128, 128] */
    int is_fp8;
    int fp8_block[2];       /* [out, in] block of one weight scale */
    char fp8_scale_fmt[16]; /* "float" (default) or "ue8m0" (DeepSeek-V3.1) */
};

/* Reads model_dir/config.json. Errors as for wd_model_config_parse, plus WD_ERR_NOT_FOUND /
 * WD_ERR_IO for the file; messages start with the file's path. */
enum wd_status wd_model_config_load(const char *model_dir, struct wd_model_config *cfg,
                                    struct wd_error *err);

/* Parses config.json text (len bytes, need not be NUL-terminated). *cfg written only on
 * success. Errors (one line naming the key): WD_ERR_FORMAT (bad JSON or type),
 * WD_ERR_NOT_FOUND (missing required key), WD_ERR_INVALID (value out of range or
 * inconsistent), WD_ERR_UNSUPPORTED (architecture or option wideep does not implement). */
enum wd_status wd_model_config_parse(const char *json_text, size_t len, struct wd_model_config *cfg,
                                     struct wd_error *err);

/* Is layer a MoE layer (vs dense MLP)? 0 for layers out of range.
 * Qwen3: not in mlp_only_layers, n_routed_experts > 0, (layer+1) % decoder_sparse_step == 0.
 * DeepSeek: n_routed_experts > 0, layer >= first_k_dense_replace, layer % moe_layer_freq == 0. */
int wd_model_config_is_moe_layer(const struct wd_model_config *cfg, int layer);

/* The yarn attention scaling of cos/sin that transformers derives: attention_factor when
 * given, else mscale(factor, mscale) / mscale(factor, mscale_all_dim) when both are non-zero,
 * else mscale(factor, 1), with mscale(s, m) = s <= 1 ? 1 : 0.1 m ln(s) + 1. 1 for default rope. */
double wd_rope_attention_factor(const struct wd_rope_config *rope);

/* The attention softmax scale transformers uses: Qwen3 head_dim^-0.5; DeepSeek
 * qk_head_dim^-0.5, times mscale(factor, mscale_all_dim)^2 under yarn with a non-zero
 * mscale_all_dim. */
double wd_model_config_softmax_scale(const struct wd_model_config *cfg);

#endif
