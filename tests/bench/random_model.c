/* Random checkpoints in memory: tensor list -> safetensors header -> random bf16 data. */
#include "kernels/sampling.h"
#include "tests/bench/random_model.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/dtype.h"

static const char *k_qwen3_moe_mid =
    "{\"architectures\":[\"Qwen3MoeForCausalLM\"],\"model_type\":\"qwen3_moe\","
    "\"vocab_size\":151936,\"hidden_size\":1024,\"num_hidden_layers\":16,"
    "\"num_attention_heads\":16,\"num_key_value_heads\":4,\"head_dim\":64,"
    "\"intermediate_size\":3072,\"moe_intermediate_size\":512,\"num_experts\":64,"
    "\"num_experts_per_tok\":8,\"norm_topk_prob\":true,\"decoder_sparse_step\":1,"
    "\"mlp_only_layers\":[],\"max_position_embeddings\":32768,\"rope_theta\":1000000.0,"
    "\"rms_norm_eps\":1e-6,\"tie_word_embeddings\":false,\"torch_dtype\":\"bfloat16\"}";

static const char *k_deepseek_v3_mid =
    "{\"architectures\":[\"DeepseekV3ForCausalLM\"],\"model_type\":\"deepseek_v3\","
    "\"vocab_size\":32768,\"hidden_size\":1024,\"num_hidden_layers\":8,"
    "\"num_attention_heads\":16,\"num_key_value_heads\":16,\"intermediate_size\":4096,"
    "\"moe_intermediate_size\":512,\"n_routed_experts\":64,\"n_shared_experts\":1,"
    "\"num_experts_per_tok\":8,\"n_group\":8,\"topk_group\":4,\"first_k_dense_replace\":1,"
    "\"routed_scaling_factor\":2.5,\"norm_topk_prob\":true,\"q_lora_rank\":384,"
    "\"kv_lora_rank\":256,\"qk_nope_head_dim\":64,\"qk_rope_head_dim\":32,\"v_head_dim\":64,"
    "\"max_position_embeddings\":16384,\"rope_theta\":10000.0,\"rms_norm_eps\":1e-6,"
    "\"tie_word_embeddings\":false,\"torch_dtype\":\"bfloat16\"}";

enum wd_status wd_bench_random_config(const char *name, struct wd_model_config *cfg,
                                      struct wd_error *err)
{
    if (strcmp(name, "qwen3-moe-mid") == 0)
        return wd_model_config_parse(k_qwen3_moe_mid, strlen(k_qwen3_moe_mid), cfg, err);
    if (strcmp(name, "deepseek-v3-mid") == 0)
        return wd_model_config_parse(k_deepseek_v3_mid, strlen(k_deepseek_v3_mid), cfg, err);
    FILE *f = fopen(name, "r");
    if (!f)
        return wd_error_set(err, WD_ERR_NOT_FOUND,
                            "--random %s: not a preset (qwen3-moe-mid, deepseek-v3-mid) nor a "
                            "readable config.json",
                            name);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *text = len > 0 && len < (1 << 24) ? malloc((size_t)len) : NULL;
    size_t got = text ? fread(text, 1, (size_t)len, f) : 0;
    fclose(f);
    enum wd_status st = text && got == (size_t)len
                            ? wd_model_config_parse(text, got, cfg, err)
                            : wd_error_set(err, WD_ERR_IO, "--random %s: cannot read", name);
    free(text);
    return st;
}

struct listing {
    json_t *header;
    size_t offset; /* bytes of data so far */
    int n;
    struct {
        size_t begin, count, cols;
        int is_norm;
    } * items;
    int cap;
};

static void add_tensor(void *ctx, const char *name, int n_dims, const int64_t *shape)
{
    struct listing *l = ctx;
    size_t count = 1;
    json_t *jshape = json_array();
    for (int i = 0; i < n_dims; i++) {
        count *= (size_t)shape[i];
        json_array_append_new(jshape, json_integer(shape[i]));
    }
    json_t *t = json_object();
    json_object_set_new(t, "dtype", json_string("BF16"));
    json_object_set_new(t, "shape", jshape);
    json_t *off = json_array();
    json_array_append_new(off, json_integer((json_int_t)l->offset));
    json_array_append_new(off, json_integer((json_int_t)(l->offset + count * 2)));
    json_object_set_new(t, "data_offsets", off);
    json_object_set_new(l->header, name, t);
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 256;
        l->items = realloc(l->items, (size_t)l->cap * sizeof(*l->items));
    }
    l->items[l->n].begin = l->offset;
    l->items[l->n].count = count;
    l->items[l->n].cols = n_dims == 2 ? (size_t)shape[1] : 0;
    /* Norm gains are 1 and the router bias 0, as a freshly initialized model has. */
    l->items[l->n].is_norm = n_dims == 1;
    l->n++;
    l->offset += count * 2;
}

enum wd_status wd_bench_random_model(const struct wd_model_config *cfg,
                                     const struct wd_model_options *opt, uint64_t seed,
                                     struct wd_model **model_p, uint8_t **blob_p,
                                     struct wd_error *err)
{
    struct listing l = {.header = json_object()};
    enum wd_status st = wd_model_list_tensors(cfg, add_tensor, &l, err);
    char *head = st == WD_OK ? json_dumps(l.header, JSON_COMPACT) : NULL;
    json_decref(l.header);
    if (st == WD_OK && !head)
        st = wd_error_set(err, WD_ERR_NOMEM, "random model: out of memory");
    uint8_t *blob = NULL;
    size_t hlen = 0;
    if (st == WD_OK) {
        hlen = (strlen(head) + 7) & ~(size_t)7;
        blob = malloc(8 + hlen + l.offset);
        if (!blob)
            st = wd_error_set(err, WD_ERR_NOMEM, "random model: cannot allocate %zu bytes",
                              8 + hlen + l.offset);
    }
    if (st == WD_OK) {
        for (int i = 0; i < 8; i++)
            blob[i] = (uint8_t)((uint64_t)hlen >> (8 * i));
        memset(blob + 8, ' ', hlen);
        memcpy(blob + 8, head, strlen(head));
        uint8_t *data = blob + 8 + hlen;
        uint64_t s = seed;
        for (int i = 0; i < l.n; i++) {
            uint16_t *dst = (uint16_t *)(data + l.items[i].begin);
            size_t n = l.items[i].count;
            if (l.items[i].is_norm) {
                uint16_t v = wd_f32_to_bf16(1.0f);
                for (size_t j = 0; j < n; j++)
                    dst[j] = v;
                continue;
            }
            /* Uniform in +-sqrt(3/cols): unit-variance outputs for unit-variance inputs. */
            float a = sqrtf(3.0f / (float)(l.items[i].cols ? l.items[i].cols : 1));
            for (size_t j = 0; j < n; j += 4) {
                uint64_t r = wd_splitmix64(&s);
                for (size_t k = 0; k < 4 && j + k < n; k++) {
                    float u = (float)((r >> (16 * k)) & 0xffff) / 65535.0f * 2.0f - 1.0f;
                    dst[j + k] = wd_f32_to_bf16(u * a);
                }
            }
        }
        struct wd_safetensors *sf = NULL;
        st = wd_safetensors_parse(blob, 8 + hlen + l.offset, &sf, err);
        if (st == WD_OK)
            st = wd_model_create_from(cfg, sf, opt, model_p, err);
    }
    free(head);
    free(l.items);
    if (st != WD_OK) {
        free(blob);
        return st;
    }
    *blob_p = blob;
    return WD_OK;
}
