/*
 * wd_chat_template: renders a conversation with the Jinja chat template of a
 * Hugging Face tokenizer_config.json, byte-identical to transformers'
 * apply_chat_template(tokenize=False) for the templates wideep ships (Qwen3,
 * DeepSeek-V3) and others within the supported Jinja subset (see jinja.h).
 *
 * Threading: a loaded template is immutable; renders may run concurrently.
 */
#ifndef WD_TOKENIZER_CHAT_TEMPLATE_H
#define WD_TOKENIZER_CHAT_TEMPLATE_H

#include <stddef.h>

#include "common/util/status.h"

struct wd_chat_message {
    const char *role;
    const char *content; /* NULL renders as None */
};

struct wd_chat_template;

/* Reads chat_template (a string, or the "default" entry of a list of named templates),
 * bos_token, eos_token, pad_token and unk_token (strings or {"content": ...} objects).
 * Errors: WD_ERR_IO / WD_ERR_NOT_FOUND (file), WD_ERR_FORMAT (bad JSON, no chat_template,
 * a template that does not parse), WD_ERR_UNSUPPORTED is not used: unsupported Jinja
 * constructs are WD_ERR_FORMAT naming the construct. */
enum wd_status wd_chat_template_load(const char *tokenizer_config_json_path,
                                     struct wd_chat_template **ct_p, struct wd_error *err);
enum wd_status wd_chat_template_load_from_memory(const char *json, size_t len,
                                                 struct wd_chat_template **ct_p,
                                                 struct wd_error *err);
void wd_chat_template_destroy(struct wd_chat_template *ct);

struct wd_chat_render_opts {
    int add_generation_prompt;
    int enable_thinking; /* -1: not passed (undefined in the template), 0: false, 1: true */
};

/* Renders msgs[0..n). *text_p is malloc'd and NUL-terminated. Errors: WD_ERR_INVALID for
 * a template runtime error (including raise_exception) with its message. */
enum wd_status wd_chat_template_render(const struct wd_chat_template *ct,
                                       const struct wd_chat_message *msgs, size_t n,
                                       int add_generation_prompt, char **text_p,
                                       struct wd_error *err);
enum wd_status wd_chat_template_render_ex(const struct wd_chat_template *ct,
                                          const struct wd_chat_message *msgs, size_t n,
                                          const struct wd_chat_render_opts *opts, char **text_p,
                                          struct wd_error *err);

#endif
