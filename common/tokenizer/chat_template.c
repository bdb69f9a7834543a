/*
 * Chat templates from tokenizer_config.json: reads the template and the special
 * token strings, parses the template once (jinja_parse.c) and renders
 * conversations with the variables transformers passes: messages, tools=None,
 * documents=None, add_generation_prompt, the special tokens and, when asked,
 * enable_thinking.
 */
#include "common/tokenizer/chat_template.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/tokenizer/jinja.h"

#define N_SPECIAL 4
static const char *const SPECIAL_KEYS[N_SPECIAL] = {"bos_token", "eos_token", "unk_token",
                                                    "pad_token"};

struct wd_chat_template {
    struct wd_jinja *tpl;
    char *special[N_SPECIAL]; /* NULL when the config has none */
};

void wd_chat_template_destroy(struct wd_chat_template *ct)
{
    if (!ct)
        return;
    wd_jinja_destroy(ct->tpl);
    for (int i = 0; i < N_SPECIAL; i++)
        free(ct->special[i]);
    free(ct);
}

enum wd_status wd_chat_template_load_from_memory(const char *json, size_t len,
                                                 struct wd_chat_template **ct_p,
                                                 struct wd_error *err)
{
    json_error_t jerr;
    json_t *root = json_loadb(json, len, 0, &jerr);
    if (!root)
        return wd_error_set(err, WD_ERR_FORMAT,
                            "tokenizer_config.json: bad JSON at line %d "
                            "column %d: %s",
                            jerr.line, jerr.column, jerr.text);
    enum wd_status st = WD_OK;
    struct wd_chat_template *ct = calloc(1, sizeof(*ct));
    json_t *tpl = json_object_get(root, "chat_template");
    if (json_is_array(tpl)) { /* [{"name": "default", "template": "..."}, ...] */
        json_t *pick = NULL, *e;
        size_t i;
        json_array_foreach(tpl, i, e)
        {
            json_t *name = json_object_get(e, "name");
            if (json_is_string(name) && strcmp(json_string_value(name), "default") == 0)
                pick = json_object_get(e, "template");
        }
        tpl = pick;
    }
    if (!ct)
        st = wd_error_set(err, WD_ERR_NOMEM, "chat template: out of memory");
    else if (!json_is_object(root))
        st = wd_error_set(err, WD_ERR_FORMAT, "tokenizer_config.json: top level is not an object");
    else if (!json_is_string(tpl))
        st = wd_error_set(err, WD_ERR_FORMAT, "tokenizer_config.json: no chat_template string");
    for (int i = 0; i < N_SPECIAL && st == WD_OK; i++) {
        json_t *v = json_object_get(root, SPECIAL_KEYS[i]);
        if (json_is_object(v))
            v = json_object_get(v, "content");
        if (!v || json_is_null(v))
            continue;
        if (!json_is_string(v)) {
            st = wd_error_set(err, WD_ERR_FORMAT,
                              "tokenizer_config.json: %s is neither a "
                              "string nor {\"content\": string}",
                              SPECIAL_KEYS[i]);
            break;
        }
        ct->special[i] = strdup(json_string_value(v));
        if (!ct->special[i])
            st = wd_error_set(err, WD_ERR_NOMEM, "chat template: out of memory");
    }
    if (st == WD_OK)
        st = wd_jinja_parse(json_string_value(tpl), json_string_length(tpl), &ct->tpl, err);
    json_decref(root);
    if (st != WD_OK) {
        wd_chat_template_destroy(ct);
        return st;
    }
    *ct_p = ct;
    return WD_OK;
}

enum wd_status wd_chat_template_load(const char *path, struct wd_chat_template **ct_p,
                                     struct wd_error *err)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return wd_error_set(err, errno == ENOENT ? WD_ERR_NOT_FOUND : WD_ERR_IO,
                            "chat template: cannot open %s: %s", path, strerror(errno));
    char *buf = NULL;
    size_t n = 0, cap = 0;
    int bad = 0;
    for (;;) {
        if (n == cap) {
            cap = cap ? cap * 2 : 65536;
            char *nb = realloc(buf, cap);
            if (!nb) {
                bad = 1;
                break;
            }
            buf = nb;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0)
            break;
    }
    bad |= ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        return wd_error_set(err, WD_ERR_IO, "chat template: cannot read %s", path);
    }
    enum wd_status st = wd_chat_template_load_from_memory(buf ? buf : "", n, ct_p, err);
    free(buf);
    if (st != WD_OK)
        wd_error_prefix(err, "%s", path);
    return st;
}

enum wd_status wd_chat_template_render_ex(const struct wd_chat_template *ct,
                                          const struct wd_chat_message *msgs, size_t n,
                                          const struct wd_chat_render_opts *opts, char **text_p,
                                          struct wd_error *err)
{
    struct jj_arena arena = {0};
    jmp_buf oom;
    if (setjmp(oom)) {
        jj_arena_free(&arena);
        return wd_error_set(err, WD_ERR_NOMEM, "chat template: out of memory");
    }
    arena.oom = &oom;
    struct jj_value messages = jj_list_new(&arena);
    for (size_t i = 0; i < n; i++) {
        struct jj_value m = jj_dict_new(&arena);
        const char *role = msgs[i].role ? msgs[i].role : "";
        jj_dict_set(&arena, m, jj_str(&arena, "role", 4), jj_str(&arena, role, strlen(role)));
        jj_dict_set(&arena, m, jj_str(&arena, "content", 7),
                    msgs[i].content ? jj_str(&arena, msgs[i].content, strlen(msgs[i].content))
                                    : jj_none());
        jj_list_push(&arena, messages, m);
    }
    struct wd_jinja_var vars[4 + N_SPECIAL + 1];
    size_t nv = 0;
    vars[nv++] = (struct wd_jinja_var){"messages", messages};
    vars[nv++] = (struct wd_jinja_var){"tools", jj_none()};
    vars[nv++] = (struct wd_jinja_var){"documents", jj_none()};
    vars[nv++] =
        (struct wd_jinja_var){"add_generation_prompt", jj_bool(opts->add_generation_prompt)};
    for (int i = 0; i < N_SPECIAL; i++)
        if (ct->special[i])
            vars[nv++] = (struct wd_jinja_var){
                SPECIAL_KEYS[i], jj_str(&arena, ct->special[i], strlen(ct->special[i]))};
    if (opts->enable_thinking >= 0)
        vars[nv++] = (struct wd_jinja_var){"enable_thinking", jj_bool(opts->enable_thinking)};
    size_t len;
    enum wd_status st = wd_jinja_render(ct->tpl, &arena, vars, nv, text_p, &len, err);
    jj_arena_free(&arena);
    return st;
}

enum wd_status wd_chat_template_render(const struct wd_chat_template *ct,
                                       const struct wd_chat_message *msgs, size_t n,
                                       int add_generation_prompt, char **text_p,
                                       struct wd_error *err)
{
    struct wd_chat_render_opts opts = {add_generation_prompt, -1};
    return wd_chat_template_render_ex(ct, msgs, n, &opts, text_p, err);
}
