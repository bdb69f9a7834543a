/*
 * OpenAI response shapes: chat.completion(.chunk) and text_completion, whole and streamed.
 * Besides OpenAI's fields a choice carries SGLang's "matched_stop" (the stop string or
 * token id that ended it, null otherwise); clients ignore fields they do not know.
 */
#include <string.h>

#include "router/api_response_internal.h"

static int is_chat(const struct wd_api_response_ctx *cx)
{
    return cx->req->kind == WD_API_CHAT;
}

static enum wd_status matched_stop(const struct wd_api_response_ctx *cx, const struct wd_output *o,
                                   struct wd_buf *b)
{
    WD_CHECK(wd_jw_raw(b, ",\"matched_stop\":"));
    if (o->finish == WD_OUTPUT_STOP_STRING)
        return wd_jw_string(b, cx->req->stop[o->stop_string], cx->req->stop_len[o->stop_string]);
    if (o->finish == WD_OUTPUT_STOP_TOKEN && o->stop_token >= 0)
        return wd_jw_int(b, o->stop_token);
    return wd_jw_raw(b, "null");
}

static enum wd_status finish_reason(const struct wd_output *o, int is_final, struct wd_buf *b)
{
    const char *r = is_final ? wd_api_finish_reason(o) : NULL;
    WD_CHECK(wd_jw_raw(b, ",\"finish_reason\":"));
    return r ? wd_jw_string(b, r, strlen(r)) : wd_jw_raw(b, "null");
}

/* chat: {"content": [{"token", "logprob", "bytes", "top_logprobs": [...]}]} for [from, to). */
static enum wd_status chat_logprobs(const struct wd_api_response_ctx *cx, const struct wd_output *o,
                                    int from, int to, struct wd_buf *b)
{
    int k = o->cfg.top_logprobs;
    WD_CHECK(wd_jw_raw(b, "{\"content\":["));
    for (int t = from; t < to; t++) {
        WD_CHECK(wd_jw_raw(b, t > from ? ",{\"token\":" : "{\"token\":"));
        WD_CHECK(wd_api_token_text(cx, o->ids[t], b, NULL));
        WD_CHECK(wd_jw_raw(b, ",\"logprob\":"));
        WD_CHECK(wd_jw_double(b, o->lps[t]));
        WD_CHECK(wd_jw_raw(b, ",\"bytes\":"));
        WD_CHECK(wd_api_token_bytes(cx, o->ids[t], b));
        WD_CHECK(wd_jw_raw(b, ",\"top_logprobs\":["));
        int n = 0;
        for (int j = 0; j < k; j++) {
            int32_t id = o->top_ids[(size_t)t * k + j];
            if (id < 0)
                continue;
            WD_CHECK(wd_jw_raw(b, n++ ? ",{\"token\":" : "{\"token\":"));
            WD_CHECK(wd_api_token_text(cx, id, b, NULL));
            WD_CHECK(wd_jw_raw(b, ",\"logprob\":"));
            WD_CHECK(wd_jw_double(b, o->top_lps[(size_t)t * k + j]));
            WD_CHECK(wd_jw_raw(b, ",\"bytes\":"));
            WD_CHECK(wd_api_token_bytes(cx, id, b));
            WD_CHECK(wd_jw_raw(b, "}"));
        }
        WD_CHECK(wd_jw_raw(b, "]}"));
    }
    return wd_jw_raw(b, "]}");
}

/* completions: {"tokens", "token_logprobs", "top_logprobs", "text_offset"} for [from, to);
 * text offsets count from base (the completion text's bytes before token `from`). */
static enum wd_status completion_logprobs(const struct wd_api_response_ctx *cx,
                                          const struct wd_output *o, int from, int to, size_t base,
                                          struct wd_buf *b)
{
    int k = o->cfg.top_logprobs;
    size_t tok_len = 0;
    WD_CHECK(wd_jw_raw(b, "{\"tokens\":["));
    /* The offsets need each token's length: remembered while writing the tokens. */
    struct wd_buf offs;
    wd_buf_init(&offs);
    enum wd_status st = WD_OK;
    for (int t = from; t < to && st == WD_OK; t++) {
        st = wd_buf_appendf(&offs, t > from ? ",%zu" : "%zu", base);
        if (st == WD_OK && t > from)
            st = wd_jw_raw(b, ",");
        if (st == WD_OK)
            st = wd_api_token_text(cx, o->ids[t], b, &tok_len);
        base += tok_len;
    }
    if (st == WD_OK)
        st = wd_jw_raw(b, "],\"token_logprobs\":[");
    for (int t = from; t < to && st == WD_OK; t++) {
        if (t > from)
            st = wd_jw_raw(b, ",");
        if (st == WD_OK)
            st = wd_jw_double(b, o->lps[t]);
    }
    if (st == WD_OK)
        st = wd_jw_raw(b, "],\"top_logprobs\":[");
    for (int t = from; t < to && st == WD_OK; t++) {
        st = wd_jw_raw(b, t > from ? (k ? ",{" : ",null") : (k ? "{" : "null"));
        int n = 0;
        for (int j = 0; j < k && st == WD_OK; j++) {
            int32_t id = o->top_ids[(size_t)t * k + j];
            if (id < 0)
                continue;
            if (n++)
                st = wd_jw_raw(b, ",");
            if (st == WD_OK)
                st = wd_api_token_text(cx, id, b, NULL);
            if (st == WD_OK)
                st = wd_jw_raw(b, ":");
            if (st == WD_OK)
                st = wd_jw_double(b, o->top_lps[(size_t)t * k + j]);
        }
        if (st == WD_OK && k)
            st = wd_jw_raw(b, "}");
    }
    if (st == WD_OK)
        st = wd_jw_raw(b, "],\"text_offset\":[");
    if (st == WD_OK)
        st = wd_buf_append(b, offs.p ? offs.p : "", offs.len);
    wd_buf_cleanup(&offs);
    return st == WD_OK ? wd_jw_raw(b, "]}") : st;
}

/* {"id": ..., "object": ..., "created": ..., "model": ..., */
static enum wd_status envelope(const struct wd_api_response_ctx *cx, const char *object,
                               struct wd_buf *b)
{
    WD_CHECK(wd_jw_raw(b, "{\"id\":"));
    WD_CHECK(wd_jw_string(b, cx->id, strlen(cx->id)));
    WD_CHECK(
        wd_buf_appendf(b, ",\"object\":\"%s\",\"created\":%lld,\"model\":", object, cx->created));
    return wd_jw_string(b, cx->model, strlen(cx->model));
}

enum wd_status wd_api_openai_full(const struct wd_api_response_ctx *cx, const struct wd_output *o,
                                  struct wd_buf *b)
{
    const char *text = o->text.p ? o->text.p : "";
    WD_CHECK(envelope(cx, is_chat(cx) ? "chat.completion" : "text_completion", b));
    if (is_chat(cx)) {
        WD_CHECK(wd_jw_raw(b, ",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\","
                              "\"content\":"));
        WD_CHECK(wd_jw_string(b, text, o->released));
        WD_CHECK(wd_jw_raw(b, "},\"logprobs\":"));
        WD_CHECK(o->cfg.logprobs ? chat_logprobs(cx, o, 0, o->n, b) : wd_jw_raw(b, "null"));
    } else {
        WD_CHECK(wd_jw_raw(b, ",\"choices\":[{\"index\":0,\"text\":"));
        WD_CHECK(wd_jw_string(b, text, o->released));
        WD_CHECK(wd_jw_raw(b, ",\"logprobs\":"));
        WD_CHECK(o->cfg.logprobs ? completion_logprobs(cx, o, 0, o->n, 0, b)
                                 : wd_jw_raw(b, "null"));
    }
    WD_CHECK(finish_reason(o, 1, b));
    WD_CHECK(matched_stop(cx, o, b));
    WD_CHECK(wd_jw_raw(b, "}],\"usage\":"));
    WD_CHECK(wd_api_usage_json(cx, o, b));
    return wd_jw_raw(b, "}");
}

/* One chunk event with the delta text (and logprobs of tokens [from, to)). */
static enum wd_status chunk(const struct wd_api_response_ctx *cx, struct wd_output *o,
                            const char *text, size_t len, int with_role, int from, int to,
                            int is_final, struct wd_buf *b)
{
    size_t start = b->len;
    WD_CHECK(envelope(cx, is_chat(cx) ? "chat.completion.chunk" : "text_completion", b));
    WD_CHECK(wd_jw_raw(b, ",\"choices\":[{\"index\":0,"));
    if (is_chat(cx)) {
        WD_CHECK(wd_jw_raw(b, "\"delta\":{"));
        if (with_role)
            WD_CHECK(wd_jw_raw(b, "\"role\":\"assistant\","));
        if (len > 0 || with_role) { /* the first chunk has "content": "", as OpenAI's */
            WD_CHECK(wd_jw_raw(b, "\"content\":"));
            WD_CHECK(wd_jw_string(b, text, len));
        }
        WD_CHECK(wd_jw_raw(b, "}"));
    } else {
        WD_CHECK(wd_jw_raw(b, "\"text\":"));
        WD_CHECK(wd_jw_string(b, text, len));
    }
    WD_CHECK(wd_jw_raw(b, ",\"logprobs\":"));
    if (o->cfg.logprobs && to > from)
        WD_CHECK(is_chat(cx) ? chat_logprobs(cx, o, from, to, b)
                             : completion_logprobs(cx, o, from, to, o->sent - len, b));
    else
        WD_CHECK(wd_jw_raw(b, "null"));
    WD_CHECK(finish_reason(o, is_final, b));
    if (is_final)
        WD_CHECK(matched_stop(cx, o, b));
    WD_CHECK(wd_jw_raw(b, cx->req->include_usage ? "}],\"usage\":null}" : "}]}"));
    return wd_api_sse_frame(b, start);
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
        size_t start = out->len;
        WD_CHECK(envelope(cx, is_chat(cx) ? "chat.completion.chunk" : "text_completion", out));
        WD_CHECK(wd_jw_raw(out, ",\"choices\":[],\"usage\":"));
        WD_CHECK(wd_api_usage_json(cx, o, out));
        WD_CHECK(wd_jw_raw(out, "}"));
        WD_CHECK(wd_api_sse_frame(out, start));
    }
    ss->is_finished = 1;
    return WD_OK;
}
