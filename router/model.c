/* The served model's files, loaded once, and prompt tokenization. */
#include "router/model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/config/json_reader.h"
#include "common/net/msg.h"

static void add_eos(struct wd_router_model *m, int id)
{
    for (int i = 0; i < m->n_eos; i++)
        if (m->eos[i] == id)
            return;
    if (id >= 0 && m->n_eos < WD_ROUTER_MAX_EOS)
        m->eos[m->n_eos++] = id;
}

static enum wd_status hash_config(struct wd_router_model *m, struct wd_error *err)
{
    char path[4096], *text = NULL;
    size_t len = 0;
    snprintf(path, sizeof(path), "%s/config.json", m->path);
    WD_CHECK(wd_json_reader_read_file(path, (size_t)64 << 20, &text, &len, err));
    m->config_hash = wd_msg_config_hash(text, len);
    free(text);
    return WD_OK;
}

enum wd_status wd_router_model_load(const char *path, const char *served_name,
                                    struct wd_router_model **m_p, struct wd_error *err)
{
    struct wd_router_model *m = calloc(1, sizeof(*m));
    if (!m)
        return wd_error_set(err, WD_ERR_NOMEM, "model: out of memory");
    m->path = path;
    snprintf(m->served_name, sizeof(m->served_name), "%s", served_name ? served_name : path);
    char file[4096];
    enum wd_status st = wd_model_config_load(path, &m->cfg, err);
    if (st == WD_OK)
        st = hash_config(m, err);
    if (st == WD_OK)
        st = wd_generation_config_load(path, &m->gen, err);
    if (st == WD_OK) {
        snprintf(file, sizeof(file), "%s/tokenizer.json", path);
        st = wd_tokenizer_load(file, &m->tok, err);
    }
    if (st == WD_OK) {
        snprintf(file, sizeof(file), "%s/tokenizer_config.json", path);
        struct wd_error terr = {0};
        if (wd_chat_template_load(file, &m->tmpl, &terr) != WD_OK) {
            /* A base model without a template still serves completions and /generate. */
            m->tmpl = NULL;
            if (terr.status != WD_ERR_NOT_FOUND && !strstr(terr.msg, "no chat_template"))
                st = wd_error_set(err, terr.status, "%s", terr.msg);
        }
    }
    if (st != WD_OK) {
        wd_router_model_destroy(m);
        return st;
    }
    m->context_len = m->cfg.max_position_embeddings;
    int32_t tv = wd_tokenizer_vocab_size(m->tok);
    m->vocab_size = tv > m->cfg.vocab_size ? tv : m->cfg.vocab_size;
    for (int i = 0; i < m->cfg.n_eos; i++)
        add_eos(m, m->cfg.eos_token_ids[i]);
    for (int i = 0; i < m->gen.n_eos; i++)
        add_eos(m, m->gen.eos_token_ids[i]);
    /* Sampling defaults as wideep-generate takes them: the file's temperature only when it
     * also says do_sample; neutral otherwise. */
    m->api.served_name = m->served_name;
    m->api.vocab_size = m->vocab_size;
    m->api.temperature = m->gen.has_temperature && m->gen.do_sample ? m->gen.temperature : 1.0f;
    m->api.top_p = m->gen.has_top_p ? m->gen.top_p : 1.0f;
    m->api.top_k = m->gen.has_top_k ? m->gen.top_k : 0;
    m->api.min_p = 0.0f;
    *m_p = m;
    return WD_OK;
}

void wd_router_model_destroy(struct wd_router_model *m)
{
    if (!m)
        return;
    wd_tokenizer_destroy(m->tok);
    wd_chat_template_destroy(m->tmpl);
    free(m);
}

enum wd_status wd_router_model_tokenize(const struct wd_router_model *m,
                                        const struct wd_api_request *req, int32_t **ids_p, int *n_p,
                                        struct wd_api_error *e)
{
    struct wd_error err = {0};
    int32_t *ids = NULL;
    size_t n = 0;
    if (req->ids) {
        ids = malloc(sizeof(int32_t) * (size_t)(req->n_ids ? req->n_ids : 1));
        if (!ids)
            return wd_api_error_set(e, 500, NULL, "out of memory");
        memcpy(ids, req->ids, sizeof(int32_t) * (size_t)req->n_ids);
        n = (size_t)req->n_ids;
    } else if (req->kind == WD_API_CHAT) {
        if (!m->tmpl)
            return wd_api_error_set(e, 400, "messages",
                                    "this model has no chat template (tokenizer_config.json); use "
                                    "/v1/completions");
        struct wd_chat_render_opts opts = {.add_generation_prompt = req->add_generation_prompt,
                                           .enable_thinking = req->enable_thinking};
        char *text = NULL;
        if (wd_chat_template_render_ex(m->tmpl, req->msgs, (size_t)req->n_msgs, &opts, &text,
                                       &err) != WD_OK)
            return wd_api_error_set(e, 400, "messages", "chat template: %s", err.msg);
        enum wd_status st = wd_tokenizer_encode(m->tok, text, strlen(text), 0, &ids, &n, &err);
        free(text);
        if (st != WD_OK)
            return wd_api_error_set(e, 400, "messages", "%s", err.msg);
    } else {
        if (wd_tokenizer_encode(m->tok, req->text, req->text_len, 1, &ids, &n, &err) != WD_OK)
            return wd_api_error_set(e, 400, req->kind == WD_API_GENERATE ? "text" : "prompt", "%s",
                                    err.msg);
    }
    if (n == 0) {
        free(ids);
        return wd_api_error_set(e, 400, req->kind == WD_API_CHAT ? "messages" : "prompt",
                                "the prompt is empty (0 tokens)");
    }
    *ids_p = ids;
    *n_p = (int)n;
    return WD_OK;
}
