/*
 * OpenAI request bodies: /v1/chat/completions and /v1/completions.
 *
 * Accepted as harmless and not used: user, metadata, store, service_tier,
 * parallel_tool_calls (meaningless without tools), a message's name. Mapped: role
 * "developer" is rendered as "system" (OpenAI's newer name for it; chat templates know
 * "system"); content given as a list of text parts is joined with "\n" (as vLLM does).
 * Accepted only at their neutral value: n / best_of 1, presence / frequency penalty 0,
 * repetition_penalty 1, min_tokens 0, empty logit_bias / tools / functions / suffix,
 * echo / continue_final_message false, tool_choice "none" or "auto" (there are no tools),
 * response_format {"type": "text"}. Everything else is a 400 naming the field.
 */
#include <stdlib.h>
#include <string.h>

#include "router/api_fields.h"

static enum wd_status set_error(struct wd_api_ctx *cx, const char *param, const char *msg)
{
    return wd_api_error_set(cx->e, 400, param, "%s", msg);
}

static enum wd_status keep_string(struct wd_api_ctx *cx, char *s)
{
    char **o = realloc(cx->req->owned, sizeof(char *) * (size_t)(cx->req->n_owned + 1));
    if (!o) {
        free(s);
        return wd_api_error_set(cx->e, 500, NULL, "out of memory");
    }
    cx->req->owned = o;
    o[cx->req->n_owned++] = s;
    return WD_OK;
}

/* content: a string, or a list of {"type": "text", "text": ...} parts. */
static enum wd_status message_content(struct wd_api_ctx *cx, int i, json_t *content,
                                      const char **out)
{
    char name[64];
    snprintf(name, sizeof(name), "messages[%d].content", i);
    if (json_is_null(content)) {
        *out = NULL;
        return WD_OK;
    }
    if (json_is_string(content)) {
        *out = json_string_value(content);
        return WD_OK;
    }
    if (!json_is_array(content))
        return wd_api_error_set(cx->e, 400, name, "'%s' must be a string or a list of parts", name);
    size_t total = 1, j;
    json_t *part;
    json_array_foreach(content, j, part)
    {
        json_t *type = json_object_get(part, "type"), *text = json_object_get(part, "text");
        if (!json_is_object(part) || !json_is_string(type))
            return wd_api_error_set(cx->e, 400, name, "'%s[%zu]' must be an object with a type",
                                    name, j);
        if (strcmp(json_string_value(type), "text") != 0)
            return wd_api_error_set(cx->e, 400, name,
                                    "'%s[%zu]': content of type '%s' is not supported by wideep "
                                    "(text only)",
                                    name, j, json_string_value(type));
        if (!json_is_string(text) || json_object_size(part) != 2)
            return wd_api_error_set(cx->e, 400, name,
                                    "'%s[%zu]' must be {\"type\": \"text\", \"text\": string}",
                                    name, j);
        total += json_string_length(text) + 1;
    }
    char *s = malloc(total), *p = s;
    if (!s)
        return wd_api_error_set(cx->e, 500, NULL, "out of memory");
    json_array_foreach(content, j, part)
    {
        json_t *text = json_object_get(part, "text");
        if (j > 0)
            *p++ = '\n';
        memcpy(p, json_string_value(text), json_string_length(text));
        p += json_string_length(text);
    }
    *p = 0;
    WD_CHECK(keep_string(cx, s));
    *out = s;
    return WD_OK;
}

static enum wd_status one_message(struct wd_api_ctx *cx, int i, json_t *m,
                                  struct wd_chat_message *out)
{
    char name[64];
    snprintf(name, sizeof(name), "messages[%d]", i);
    if (!json_is_object(m))
        return wd_api_error_set(cx->e, 400, name, "'%s' must be an object", name);
    const char *key;
    json_t *v, *content = NULL;
    const char *role = NULL;
    json_object_foreach(m, key, v)
    {
        char field[96];
        snprintf(field, sizeof(field), "%s.%s", name, key);
        if (strcmp(key, "role") == 0) {
            if (!json_is_string(v))
                return wd_api_error_set(cx->e, 400, field, "'%s' must be a string", field);
            role = json_string_value(v);
        } else if (strcmp(key, "content") == 0) {
            content = v;
        } else if (strcmp(key, "name") == 0) {
            if (!json_is_string(v) && !json_is_null(v))
                return wd_api_error_set(cx->e, 400, field, "'%s' must be a string", field);
        } else if (strcmp(key, "tool_calls") == 0 || strcmp(key, "function_call") == 0 ||
                   strcmp(key, "reasoning_content") == 0) {
            if (!json_is_null(v) && !(json_is_array(v) && json_array_size(v) == 0))
                return wd_api_error_set(cx->e, 400, field, "'%s' is not supported by wideep",
                                        field);
        } else {
            return wd_api_error_set(cx->e, 400, field,
                                    "'%s' is not supported by wideep: unknown field", field);
        }
    }
    if (!role)
        return wd_api_error_set(cx->e, 400, name, "'%s' has no role", name);
    if (strcmp(role, "developer") == 0)
        role = "system";
    if (strcmp(role, "system") != 0 && strcmp(role, "user") != 0 &&
        strcmp(role, "assistant") != 0) {
        char field[96];
        snprintf(field, sizeof(field), "%s.role", name);
        return wd_api_error_set(cx->e, 400, field,
                                "'%s' '%s' is not supported by wideep (system, developer, user, "
                                "assistant)",
                                field, role);
    }
    out->role = role;
    if (!content && strcmp(role, "assistant") != 0)
        return wd_api_error_set(cx->e, 400, name, "'%s' has no content", name);
    return content ? message_content(cx, i, content, &out->content) : WD_OK;
}

static enum wd_status f_messages(struct wd_api_ctx *cx, const char *name, json_t *v)
{
    if (!json_is_array(v) || json_array_size(v) == 0)
        return wd_api_error_set(cx->e, 400, name, "'%s' must be a non-empty list", name);
    size_t n = json_array_size(v);
    if (n > WD_API_MAX_MESSAGES)
        return wd_api_error_set(cx->e, 400, name, "'%s': at most %d messages", name,
                                WD_API_MAX_MESSAGES);
    cx->req->msgs = calloc(n, sizeof(struct wd_chat_message));
    if (!cx->req->msgs)
        return wd_api_error_set(cx->e, 500, NULL, "out of memory");
    for (size_t i = 0; i < n; i++)
        WD_CHECK(one_message(cx, (int)i, json_array_get(v, i), &cx->req->msgs[i]));
    cx->req->n_msgs = (int)n;
    cx->has_prompt = 1;
    return WD_OK;
}

/* An object whose only key may be `key`, a boolean (null: not given): stream_options
 * {include_usage}, chat_template_kwargs {enable_thinking}. */
static enum wd_status one_bool_object(struct wd_api_ctx *cx, const char *name, json_t *v,
                                      const char *key, int *out)
{
    if (!json_is_object(v))
        return wd_api_error_set(cx->e, 400, name, "'%s' must be an object", name);
    const char *k;
    json_t *x;
    json_object_foreach(v, k, x)
    {
        char field[96];
        snprintf(field, sizeof(field), "%s.%s", name, k);
        if (strcmp(k, key) != 0)
            return wd_api_unsupported(cx, field, NULL);
        if (!json_is_null(x))
            WD_CHECK(wd_api_get_bool(cx, field, x, out));
    }
    return WD_OK;
}

static enum wd_status f_stream_options(struct wd_api_ctx *cx, const char *name, json_t *v)
{
    WD_CHECK(one_bool_object(cx, name, v, "include_usage", &cx->req->include_usage));
    cx->has_stream_options = 1;
    return WD_OK;
}

static enum wd_status f_max_completion_tokens(struct wd_api_ctx *cx, const char *name, json_t *v)
{
    return wd_api_get_int(cx, name, v, 1, 1 << 24, &cx->max_completion_tokens);
}

static enum wd_status f_chat_logprobs(struct wd_api_ctx *cx, const char *name, json_t *v)
{
    return wd_api_get_bool(cx, name, v, &cx->req->logprobs);
}

static enum wd_status f_top_logprobs(struct wd_api_ctx *cx, const char *name, json_t *v)
{
    cx->has_top_logprobs = 1;
    return wd_api_get_int(cx, name, v, 0, WD_API_MAX_TOP_LOGPROBS, &cx->req->top_logprobs);
}

static enum wd_status f_choice_none(struct wd_api_ctx *cx, const char *name, json_t *v)
{
    if (json_is_string(v) &&
        (strcmp(json_string_value(v), "none") == 0 || strcmp(json_string_value(v), "auto") == 0))
        return WD_OK;
    return wd_api_unsupported(cx, name, "there are no tools");
}

static enum wd_status f_response_format(struct wd_api_ctx *cx, const char *name, json_t *v)
{
    json_t *type = json_object_get(v, "type");
    if (json_is_object(v) && json_object_size(v) == 1 && json_is_string(type) &&
        strcmp(json_string_value(type), "text") == 0)
        return WD_OK;
    return wd_api_unsupported(cx, name, "only {\"type\": \"text\"} is");
}

static enum wd_status f_template_kwargs(struct wd_api_ctx *cx, const char *name, json_t *v)
{
    return one_bool_object(cx, name, v, "enable_thinking", &cx->req->enable_thinking);
}

static enum wd_status f_add_generation_prompt(struct wd_api_ctx *cx, const char *name, json_t *v)
{
    return wd_api_get_bool(cx, name, v, &cx->req->add_generation_prompt);
}

/* The fields chat and completions share. */
static const struct wd_api_field shared_fields[] = {
    {"model", wd_api_field_model},
    {"stream", wd_api_field_stream},
    {"stream_options", f_stream_options},
    {"max_tokens", wd_api_field_max_tokens},
    {"temperature", wd_api_field_temperature},
    {"top_p", wd_api_field_top_p},
    {"top_k", wd_api_field_top_k},
    {"min_p", wd_api_field_min_p},
    {"seed", wd_api_field_seed},
    {"stop", wd_api_field_stop},
    {"stop_token_ids", wd_api_field_stop_ids},
    {"ignore_eos", wd_api_field_ignore_eos},
    {"skip_special_tokens", wd_api_field_skip_special},
    {"n", wd_api_field_only_one},
    {"repetition_penalty", wd_api_field_only_one},
    {"presence_penalty", wd_api_field_only_zero},
    {"frequency_penalty", wd_api_field_only_zero},
    {"min_tokens", wd_api_field_only_zero},
    {"logit_bias", wd_api_field_only_empty},
    {"echo", wd_api_field_only_false},
    {"user", wd_api_field_harmless},
    {"metadata", wd_api_field_harmless},
    {"store", wd_api_field_harmless},
    {"service_tier", wd_api_field_harmless},
};
#define N_SHARED ((int)(sizeof(shared_fields) / sizeof(shared_fields[0])))

static const struct wd_api_field chat_fields[] = {
    {"messages", f_messages},
    {"max_completion_tokens", f_max_completion_tokens},
    {"logprobs", f_chat_logprobs},
    {"top_logprobs", f_top_logprobs},
    {"chat_template_kwargs", f_template_kwargs},
    {"add_generation_prompt", f_add_generation_prompt},
    {"tools", wd_api_field_only_empty},
    {"functions", wd_api_field_only_empty},
    {"tool_choice", f_choice_none},
    {"function_call", f_choice_none},
    {"response_format", f_response_format},
    {"continue_final_message", wd_api_field_only_false},
    {"parallel_tool_calls", wd_api_field_harmless},
};

/* The checks that involve two fields, once all are read. */
static enum wd_status finish_common(struct wd_api_ctx *cx)
{
    if (cx->has_stream_options && !cx->req->is_stream)
        return set_error(cx, "stream_options",
                         "'stream_options' is only allowed when 'stream' is true");
    if (cx->max_completion_tokens > 0)
        cx->req->max_tokens = cx->max_completion_tokens;
    if (!cx->has_prompt)
        return set_error(cx, cx->req->kind == WD_API_CHAT ? "messages" : "prompt",
                         cx->req->kind == WD_API_CHAT ? "'messages' is required"
                                                      : "'prompt' is required");
    return WD_OK;
}

enum wd_status wd_api_parse_chat(struct wd_api_ctx *cx, json_t *root)
{
    WD_CHECK(wd_api_fields_walk(cx, root, shared_fields, N_SHARED, chat_fields,
                                (int)(sizeof(chat_fields) / sizeof(chat_fields[0]))));
    if (cx->has_top_logprobs && cx->req->top_logprobs > 0 && !cx->req->logprobs)
        return set_error(cx, "top_logprobs", "'top_logprobs' needs 'logprobs' set to true");
    return finish_common(cx);
}

/* prompt: a string, a list of token ids, or a batch of one of either. */
static enum wd_status f_prompt(struct wd_api_ctx *cx, const char *name, json_t *v)
{
    if (json_is_array(v) && json_array_size(v) >= 1 &&
        (json_is_string(json_array_get(v, 0)) || json_is_array(json_array_get(v, 0)))) {
        if (json_array_size(v) > 1)
            return wd_api_unsupported(cx, name, "a batch of several prompts");
        v = json_array_get(v, 0);
    }
    if (json_is_string(v)) {
        cx->req->text = json_string_value(v);
        cx->req->text_len = json_string_length(v);
    } else if (json_is_array(v)) {
        WD_CHECK(wd_api_get_ids(cx, name, v, &cx->req->ids, &cx->req->n_ids));
    } else {
        return wd_api_error_set(cx->e, 400, name, "'%s' must be a string or a list of token ids",
                                name);
    }
    cx->has_prompt = 1;
    return WD_OK;
}

static enum wd_status f_completion_logprobs(struct wd_api_ctx *cx, const char *name, json_t *v)
{
    /* The legacy API's logprobs is the number of alternatives; 0 still returns the chosen
     * tokens' own logprobs. */
    WD_CHECK(wd_api_get_int(cx, name, v, 0, WD_API_MAX_TOP_LOGPROBS, &cx->req->top_logprobs));
    cx->req->logprobs = 1;
    return WD_OK;
}

static const struct wd_api_field completion_fields[] = {
    {"prompt", f_prompt},
    {"logprobs", f_completion_logprobs},
    {"best_of", wd_api_field_only_one},
    {"suffix", wd_api_field_only_empty},
};

enum wd_status wd_api_parse_completion(struct wd_api_ctx *cx, json_t *root)
{
    WD_CHECK(wd_api_fields_walk(cx, root, shared_fields, N_SHARED, completion_fields,
                                (int)(sizeof(completion_fields) / sizeof(completion_fields[0]))));
    return finish_common(cx);
}
