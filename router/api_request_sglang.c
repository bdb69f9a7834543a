/*
 * SGLang's native /generate body: {"text" | "input_ids", "sampling_params": {...},
 * "stream", "return_logprob", "top_logprobs_num", "return_text_in_logprobs", "rid"}.
 *
 * One prompt per request: a batch (a list of texts or of id lists with more than one
 * entry) is a 400. sampling_params: max_new_tokens (default 128, as SGLang), temperature,
 * top_p, top_k, min_p, sampling_seed, stop, stop_token_ids, ignore_eos,
 * skip_special_tokens, no_stop_trim; n 1, penalties neutral and min_new_tokens 0 only;
 * spaces_between_special_tokens is harmless (the detokenizer never inserts spaces).
 * Prompt logprobs (logprob_start_len >= 0) and every multimodal, LoRA, session, structured
 * output or disaggregation field is a 400 naming it. log_metrics is harmless.
 */
#include <string.h>

#include "router/api_fields.h"

static enum wd_status f_no_stop_trim(struct wd_api_ctx *cx, const char *name, json_t *v)
{
    return wd_api_get_bool(cx, name, v, &cx->req->no_stop_trim);
}

static const struct wd_api_field sampling_fields[] = {
    {"max_new_tokens", wd_api_field_max_tokens},
    {"temperature", wd_api_field_temperature},
    {"top_p", wd_api_field_top_p},
    {"top_k", wd_api_field_top_k},
    {"min_p", wd_api_field_min_p},
    {"sampling_seed", wd_api_field_seed},
    {"stop", wd_api_field_stop},
    {"stop_token_ids", wd_api_field_stop_ids},
    {"ignore_eos", wd_api_field_ignore_eos},
    {"skip_special_tokens", wd_api_field_skip_special},
    {"no_stop_trim", f_no_stop_trim},
    {"n", wd_api_field_only_one},
    {"repetition_penalty", wd_api_field_only_one},
    {"frequency_penalty", wd_api_field_only_zero},
    {"presence_penalty", wd_api_field_only_zero},
    {"min_new_tokens", wd_api_field_only_zero},
    {"logit_bias", wd_api_field_only_empty},
    {"spaces_between_special_tokens", wd_api_field_harmless},
    {"json_schema", wd_api_field_refused},
    {"regex", wd_api_field_refused},
    {"ebnf", wd_api_field_refused},
    {"structural_tag", wd_api_field_refused},
};

static enum wd_status f_sampling_params(struct wd_api_ctx *cx, const char *name, json_t *v)
{
    if (json_is_array(v))
        return wd_api_unsupported(cx, name, "a list (one per prompt of a batch)");
    if (!json_is_object(v))
        return wd_api_error_set(cx->e, 400, name, "'%s' must be an object", name);
    cx->prefix = "sampling_params.";
    enum wd_status st =
        wd_api_fields_walk(cx, v, NULL, 0, sampling_fields,
                           (int)(sizeof(sampling_fields) / sizeof(sampling_fields[0])));
    cx->prefix = "";
    return st;
}

static enum wd_status f_text(struct wd_api_ctx *cx, const char *name, json_t *v)
{
    if (json_is_array(v)) {
        if (json_array_size(v) != 1 || !json_is_string(json_array_get(v, 0)))
            return wd_api_unsupported(cx, name, "a batch of several prompts");
        v = json_array_get(v, 0);
    }
    if (!json_is_string(v))
        return wd_api_error_set(cx->e, 400, name, "'%s' must be a string", name);
    if (cx->has_prompt)
        return wd_api_error_set(cx->e, 400, name, "give either 'text' or 'input_ids', not both");
    cx->req->text = json_string_value(v);
    cx->req->text_len = json_string_length(v);
    cx->has_prompt = 1;
    return WD_OK;
}

static enum wd_status f_input_ids(struct wd_api_ctx *cx, const char *name, json_t *v)
{
    if (json_is_array(v) && json_array_size(v) > 0 && json_is_array(json_array_get(v, 0))) {
        if (json_array_size(v) != 1)
            return wd_api_unsupported(cx, name, "a batch of several prompts");
        v = json_array_get(v, 0);
    }
    if (cx->has_prompt)
        return wd_api_error_set(cx->e, 400, name, "give either 'text' or 'input_ids', not both");
    WD_CHECK(wd_api_get_ids(cx, name, v, &cx->req->ids, &cx->req->n_ids));
    cx->has_prompt = 1;
    return WD_OK;
}

static enum wd_status f_return_logprob(struct wd_api_ctx *cx, const char *name, json_t *v)
{
    return wd_api_get_bool(cx, name, v, &cx->req->logprobs);
}

static enum wd_status f_top_logprobs_num(struct wd_api_ctx *cx, const char *name, json_t *v)
{
    return wd_api_get_int(cx, name, v, 0, WD_API_MAX_TOP_LOGPROBS, &cx->req->top_logprobs);
}

static enum wd_status f_return_text(struct wd_api_ctx *cx, const char *name, json_t *v)
{
    return wd_api_get_bool(cx, name, v, &cx->req->return_text_in_logprobs);
}

static enum wd_status f_logprob_start_len(struct wd_api_ctx *cx, const char *name, json_t *v)
{
    int x;
    WD_CHECK(wd_api_get_int(cx, name, v, -1, 1 << 24, &x));
    return x == -1 ? WD_OK : wd_api_unsupported(cx, name, "prompt logprobs (only -1 is)");
}

static enum wd_status f_rid(struct wd_api_ctx *cx, const char *name, json_t *v)
{
    if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) > 256)
        return wd_api_error_set(cx->e, 400, name, "'%s' must be a string of 1..256 bytes", name);
    cx->req->rid = json_string_value(v);
    return WD_OK;
}

static const struct wd_api_field generate_fields[] = {
    {"text", f_text},
    {"input_ids", f_input_ids},
    {"sampling_params", f_sampling_params},
    {"stream", wd_api_field_stream},
    {"return_logprob", f_return_logprob},
    {"top_logprobs_num", f_top_logprobs_num},
    {"return_text_in_logprobs", f_return_text},
    {"logprob_start_len", f_logprob_start_len},
    {"rid", f_rid},
    {"log_metrics", wd_api_field_harmless},
    {"return_hidden_states", wd_api_field_only_false},
    {"image_data", wd_api_field_refused},
    {"video_data", wd_api_field_refused},
    {"audio_data", wd_api_field_refused},
    {"input_embeds", wd_api_field_refused},
    {"lora_path", wd_api_field_refused},
    {"session_params", wd_api_field_refused},
    {"custom_logit_processor", wd_api_field_refused},
    {"token_ids_logprob", wd_api_field_refused},
    {"data_parallel_rank", wd_api_field_refused},
    {"bootstrap_host", wd_api_field_refused},
    {"bootstrap_port", wd_api_field_refused},
    {"bootstrap_room", wd_api_field_refused},
};

enum wd_status wd_api_parse_generate(struct wd_api_ctx *cx, json_t *root)
{
    WD_CHECK(wd_api_fields_walk(cx, root, NULL, 0, generate_fields,
                                (int)(sizeof(generate_fields) / sizeof(generate_fields[0]))));
    if (!cx->has_prompt)
        return wd_api_error_set(cx->e, 400, "text", "one of 'text' or 'input_ids' is required");
    if (!cx->req->logprobs && cx->req->top_logprobs > 0)
        return wd_api_error_set(cx->e, 400, "top_logprobs_num",
                                "'top_logprobs_num' needs 'return_logprob' set to true");
    return WD_OK;
}
