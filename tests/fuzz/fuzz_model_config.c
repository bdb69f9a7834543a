/*
 * libFuzzer target: wd_model_config_parse on arbitrary text. An accepted config must be
 * internally consistent (the invariants the engine relies on are re-checked here).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "common/config/model_config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct wd_model_config c;
    struct wd_error err;
    if (wd_model_config_parse((const char *)data, size, &c, &err) != WD_OK)
        return 0;
    if (c.vocab_size <= 0 || c.hidden_size <= 0 || c.n_layers <= 0 || c.n_heads <= 0 ||
        c.n_kv_heads <= 0 || c.n_heads % c.n_kv_heads != 0 || c.head_dim <= 0 ||
        c.num_experts_per_tok <= 0 || c.n_eos < 0 || c.n_eos > WD_MODEL_MAX_EOS)
        abort();
    if (c.n_routed_experts > 0 && c.num_experts_per_tok > c.n_routed_experts)
        abort();
    if (c.arch == WD_ARCH_DEEPSEEK_V3 &&
        (c.n_routed_experts % c.n_group != 0 || c.topk_group > c.n_group))
        abort();
    for (int l = -1; l <= c.n_layers; l++)
        if (wd_model_config_is_moe_layer(&c, l) && (l < 0 || l >= c.n_layers))
            abort();
    double s = wd_model_config_softmax_scale(&c) * wd_rope_attention_factor(&c.rope);
    if (!(s > 0) || s != s)
        abort();
    return 0;
}
