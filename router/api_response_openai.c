/*
 * OpenAI response shapes: chat.completion(.chunk) and text_completion, whole and streamed.
 * Besides OpenAI's fields a choice carries SGLang's "matched_stop" (the stop string or
 * token id that ended it, null otherwise); clients ignore fields they do not know.
 */
#include <stdlib.h>
#include <string.h>

#include "router/api_response_internal.h"

static int is_chat(const struct wd_api_response_ctx *cx)
{
    return cx->req->kind == WD_API_CHAT;
}

static json_t *matched_stop(const struct wd_api_response_ctx *cx, const struct wd_output *o)
{
    if (o->finish == WD_OUTPUT_STOP_STRING)
        return json_stringn(cx->req->stop[o->stop_string], cx->req->stop_len[o->stop_string]);
    if (o->finish == WD_OUTPUT_STOP_TOKEN && o->stop_token >= 0)
        return json_integer(o->stop_token);
    return json_null();
}

static json_t *finish_json(const struct wd_output *o)
{
    const char *r = wd_api_finish_reason(o);
    return r ? json_string(r) : json_null();
}

/* chat: {"token", "logprob", "bytes", "top_logprobs": [...]} for tokens [from, to). */
static json_t *chat_logprobs(const struct wd_api_response_ctx *cx, const struct wd_output *o,
                             int from, int to)
{
    json_t *content = json_array();
    int k = o->cfg.top_logprobs;
    for (int t = from; t < to && content; t++) {
        json_t *tok = wd_api_token_text(cx, o->ids[t]);
        json_t *bytes = json_array();
        const char *s = json_string_value(tok);
        for (size_t b = 0; s && b < json_string_length(tok); b++)
            json_array_append_new(bytes, json_integer((unsigned char)s[b]));
        json_t *tops = json_array();
        for (int j = 0; j < k; j++) {
            int32_t id = o->top_ids[(size_t)t * k + j];
            if (id < 0)
                continue;
            json_t *tt = wd_api_token_text(cx, id);
            json_t *tb = json_array();
            const char *ts = json_string_value(tt);
            for (size_t b = 0; ts && b < json_string_length(tt); b++)
                json_array_append_new(tb, json_integer((unsigned char)ts[b]));
            json_array_append_new(tops,
                                  json_pack("{s:o, s:f, s:o}", "token", tt, "logprob",
                                            (double)o->top_lps[(size_t)t * k + j], "bytes", tb));
        }
        json_array_append_new(content,
                              json_pack("{s:o, s:f, s:o, s:o}", "token", tok, "logprob",
                                        (double)o->lps[t], "bytes", bytes, "top_logprobs", tops));
    }
    return content ? json_pack("{s:o}", "content", content) : NULL;
}

/* completions: {"tokens", "token_logprobs", "top_logprobs", "text_offset"} for [from, to);
 * text offsets count from base (the bytes of completion text before token `from`). */
static json_t *completion_logprobs(const struct wd_api_response_ctx *cx, const struct wd_output *o,
                                   int from, int to, size_t *base)
{
    json_t *tokens = json_array(), *lps = json_array(), *tops = json_array(), *offs = json_array();
    int k = o->cfg.top_logprobs;
    for (int t = from; t < to; t++) {
        json_t *tok = wd_api_token_text(cx, o->ids[t]);
        json_array_append_new(offs, json_integer((json_int_t)*base));
        *base += json_string_length(tok);
        json_array_append_new(tokens, tok);
        json_array_append_new(lps, json_real(o->lps[t]));
        if (k == 0) {
            json_array_append_new(tops, json_null());
            continue;
        }
        json_t *d = json_object();
        for (int j = 0; j < k; j++) {
            int32_t id = o->top_ids[(size_t)t * k + j];
            if (id < 0)
                continue;
            json_t *tt = wd_api_token_text(cx, id);
            json_object_set_new(d, json_string_value(tt), json_real(o->top_lps[(size_t)t * k + j]));
            json_decref(tt);
        }
        json_array_append_new(tops, d);
    }
    return json_pack("{s:o, s:o, s:o, s:o}", "tokens", tokens, "token_logprobs", lps,
                     "top_logprobs", tops, "text_offset", offs);
}

static json_t *envelope(const struct wd_api_response_ctx *cx, const char *object)
{
    return json_pack("{s:s, s:s, s:I, s:s}", "id", cx->id, "object", object, "created",
                     (json_int_t)cx->created, "model", cx->model);
}

char *wd_api_openai_full(const struct wd_api_response_ctx *cx, const struct wd_output *o,
                         size_t *len_p)
{
    json_t *root = envelope(cx, is_chat(cx) ? "chat.completion" : "text_completion");
    json_t *text = json_stringn(o->text.p ? o->text.p : "", o->released);
    json_t *choice;
    size_t base = 0;
    json_t *lp = !o->cfg.logprobs ? json_null()
                 : is_chat(cx)    ? chat_logprobs(cx, o, 0, o->n)
                                  : completion_logprobs(cx, o, 0, o->n, &base);
    if (is_chat(cx))
        choice = json_pack("{s:i, s:{s:s, s:o}, s:o, s:o, s:o}", "index", 0, "message", "role",
                           "assistant", "content", text, "logprobs", lp, "finish_reason",
                           finish_json(o), "matched_stop", matched_stop(cx, o));
    else
        choice = json_pack("{s:i, s:o, s:o, s:o, s:o}", "index", 0, "text", text, "logprobs", lp,
                           "finish_reason", finish_json(o), "matched_stop", matched_stop(cx, o));
    if (!root || !choice) {
        json_decref(root);
        json_decref(choice);
        return NULL;
    }
    json_object_set_new(root, "choices", json_pack("[o]", choice));
    json_object_set_new(root, "usage", wd_api_usage_json(cx, o));
    return wd_api_dump(root, len_p);
}

/* One chunk event with the delta text (and logprobs of tokens [from, to)). */
static enum wd_status chunk(const struct wd_api_response_ctx *cx, struct wd_output *o,
                            const char *text, size_t len, int with_role, int from, int to,
                            int is_final, struct wd_buf *out)
{
    json_t *root = envelope(cx, is_chat(cx) ? "chat.completion.chunk" : "text_completion");
    json_t *lp = json_null();
    if (o->cfg.logprobs && to > from) {
        json_decref(lp);
        size_t base = o->sent - len;
        lp = is_chat(cx) ? chat_logprobs(cx, o, from, to)
                         : completion_logprobs(cx, o, from, to, &base);
    }
    json_t *choice;
    if (is_chat(cx)) {
        json_t *delta = json_object();
        if (with_role)
            json_object_set_new(delta, "role", json_string("assistant"));
        if (len > 0 || with_role)
            json_object_set_new(delta, "content", json_stringn(text, len));
        choice = json_pack("{s:i, s:o, s:o, s:o}", "index", 0, "delta", delta, "logprobs", lp,
                           "finish_reason", is_final ? finish_json(o) : json_null());
    } else {
        choice = json_pack("{s:i, s:s%, s:o, s:o}", "index", 0, "text", text, len, "logprobs", lp,
                           "finish_reason", is_final ? finish_json(o) : json_null());
    }
    if (!root || !choice) {
        json_decref(root);
        json_decref(choice);
        return WD_ERR_NOMEM;
    }
    if (is_final)
        json_object_set_new(choice, "matched_stop", matched_stop(cx, o));
    json_object_set_new(root, "choices", json_pack("[o]", choice));
    if (cx->req->include_usage)
        json_object_set_new(root, "usage", json_null());
    return wd_api_sse_json(out, root);
}

enum wd_status wd_api_openai_stream(const struct wd_api_response_ctx *cx, struct wd_output *o,
                                    struct wd_api_stream_state *ss, struct wd_buf *out)
{
    size_t len;
    const char *text = wd_output_unsent(o, &len);
    int to = o->cfg.logprobs ? o->n : ss->n_lp_sent;
    int is_final = wd_output_is_finished(o);
    int with_role = is_chat(cx) && !ss->is_started;
    if (len > 0 || to > ss->n_lp_sent || with_role || is_final) {
        /* Text and the tokens' logprobs go together; the finish reason in the same event
         * when there is text left, in its own otherwise. */
        int fold_final = is_final && !with_role;
        wd_output_mark_sent(o);
        WD_CHECK(chunk(cx, o, text, len, with_role, ss->n_lp_sent, to, fold_final, out));
        ss->n_lp_sent = to;
        ss->is_started = 1;
        if (is_final && !fold_final)
            WD_CHECK(chunk(cx, o, "", 0, 0, to, to, 1, out));
    }
    if (!is_final)
        return WD_OK;
    if (cx->req->include_usage) {
        json_t *root = envelope(cx, is_chat(cx) ? "chat.completion.chunk" : "text_completion");
        if (!root)
            return WD_ERR_NOMEM;
        json_object_set_new(root, "choices", json_array());
        json_object_set_new(root, "usage", wd_api_usage_json(cx, o));
        WD_CHECK(wd_api_sse_json(out, root));
    }
    ss->is_finished = 1;
    return WD_OK;
}
