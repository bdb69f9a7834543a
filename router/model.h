/*
 * wd_router_model: what the router knows of the served model, from --model-path:
 * tokenizer.json, the chat template (tokenizer_config.json), config.json (context length,
 * vocabulary, EOS ids, and the XXH3-64 hash of its bytes that a worker's fingerprint must
 * carry), generation_config.json (EOS ids, sampling defaults). Loaded once at start;
 * read-only afterwards.
 */
#ifndef WD_ROUTER_MODEL_H
#define WD_ROUTER_MODEL_H

#include <stdint.h>

#include "common/config/generation_config.h"
#include "common/config/model_config.h"
#include "common/tokenizer/chat_template.h"
#include "common/tokenizer/tokenizer.h"
#include "router/api_request.h"

#define WD_ROUTER_MAX_EOS 16

struct wd_router_model {
    const char *path;
    char served_name[256];
    struct wd_tokenizer *tok;
    struct wd_chat_template *tmpl; /* NULL when tokenizer_config.json has no template */
    struct wd_model_config cfg;
    struct wd_generation_config gen;
    uint64_t config_hash;
    int context_len;
    int32_t vocab_size;             /* the larger of the tokenizer's and config.json's */
    int32_t eos[WD_ROUTER_MAX_EOS]; /* config.json's and generation_config.json's, once each */
    int n_eos;
    struct wd_api_model api; /* what the request parser needs */
};

enum wd_status wd_router_model_load(const char *path, const char *served_name,
                                    struct wd_router_model **m_p, struct wd_error *err);
void wd_router_model_destroy(struct wd_router_model *m);

/* The request's prompt as token ids: the chat template rendered and encoded (no special
 * tokens added, as transformers' apply_chat_template), text encoded with the tokenizer's
 * special tokens, or the given ids copied. *ids_p malloc'd. Errors are 400s: a template
 * runtime error with its message, a chat request when the model has no template, an empty
 * prompt. */
enum wd_status wd_router_model_tokenize(const struct wd_router_model *m,
                                        const struct wd_api_request *req, int32_t **ids_p, int *n_p,
                                        struct wd_api_error *e);

#endif
