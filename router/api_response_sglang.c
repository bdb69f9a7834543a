/*
 * SGLang /generate response: {"text", "output_ids", "meta_info": {"id", "finish_reason",
 * "prompt_tokens", "completion_tokens", "cached_tokens", "e2e_latency", and with
 * return_logprob "input_token_logprobs" (always empty: prompt logprobs are not offered),
 * "output_token_logprobs" [[logprob, id, text|null]...], "output_top_logprobs"}}.
 * finish_reason is {"type": "length", "length": n}, {"type": "stop", "matched": id|str}
 * or null while running.
 */
#include <string.h>

#include "router/api_response_internal.h"

static enum wd_status finish_reason(const struct wd_api_response_ctx *cx, const struct wd_output *o,
                                    struct wd_buf *b)
{
    switch (o->finish) {
    case WD_OUTPUT_LENGTH:
        return wd_buf_appendf(b, "{\"type\":\"length\",\"length\":%d}", o->n);
    case WD_OUTPUT_STOP_STRING:
        WD_CHECK(wd_jw_raw(b, "{\"type\":\"stop\",\"matched\":"));
        WD_CHECK(wd_jw_string(b, cx->req->stop[o->stop_string], cx->req->stop_len[o->stop_string]));
        return wd_jw_raw(b, "}");
    case WD_OUTPUT_STOP_TOKEN:
        return wd_buf_appendf(b, "{\"type\":\"stop\",\"matched\":%d}", (int)o->stop_token);
    default:
        return wd_jw_raw(b, "null");
    }
}

static enum wd_status lp_entry(const struct wd_api_response_ctx *cx, float lp, int32_t id,
                               struct wd_buf *b)
{
    WD_CHECK(wd_jw_raw(b, "["));
    WD_CHECK(wd_jw_double(b, lp));
    WD_CHECK(wd_buf_appendf(b, ",%d,", (int)id));
    WD_CHECK(cx->req->return_text_in_logprobs ? wd_api_token_text(cx, id, b, NULL)
                                              : wd_jw_raw(b, "null"));
    return wd_jw_raw(b, "]");
}

static enum wd_status logprobs(const struct wd_api_response_ctx *cx, const struct wd_output *o,
                               struct wd_buf *b)
{
    int k = o->cfg.top_logprobs;
    WD_CHECK(wd_jw_raw(b, ",\"input_token_logprobs\":[],\"output_token_logprobs\":["));
    for (int t = 0; t < o->n; t++) {
        if (t)
            WD_CHECK(wd_jw_raw(b, ","));
        WD_CHECK(lp_entry(cx, o->lps[t], o->ids[t], b));
    }
    WD_CHECK(wd_jw_raw(b, "],\"output_top_logprobs\":["));
    for (int t = 0; k > 0 && t < o->n; t++) {
        WD_CHECK(wd_jw_raw(b, t ? ",[" : "["));
        int n = 0;
        for (int j = 0; j < k; j++) {
            int32_t id = o->top_ids[(size_t)t * k + j];
            if (id < 0)
                continue;
            if (n++)
                WD_CHECK(wd_jw_raw(b, ","));
            WD_CHECK(lp_entry(cx, o->top_lps[(size_t)t * k + j], id, b));
        }
        WD_CHECK(wd_jw_raw(b, "]"));
    }
    return wd_jw_raw(b, "]");
}

static enum wd_status body(const struct wd_api_response_ctx *cx, const struct wd_output *o,
                           struct wd_buf *b)
{
    WD_CHECK(wd_jw_raw(b, "{\"text\":"));
    WD_CHECK(wd_jw_string(b, o->text.p ? o->text.p : "", o->released));
    WD_CHECK(wd_jw_raw(b, ",\"output_ids\":["));
    for (int t = 0; t < o->n; t++)
        WD_CHECK(wd_buf_appendf(b, t ? ",%d" : "%d", (int)o->ids[t]));
    WD_CHECK(wd_jw_raw(b, "],\"meta_info\":{\"id\":"));
    WD_CHECK(wd_jw_string(b, cx->id, strlen(cx->id)));
    WD_CHECK(wd_jw_raw(b, ",\"finish_reason\":"));
    WD_CHECK(finish_reason(cx, o, b));
    WD_CHECK(wd_buf_appendf(b,
                            ",\"prompt_tokens\":%d,\"completion_tokens\":%d,\"cached_tokens\":%d",
                            cx->prompt_tokens, o->n, cx->cached_tokens));
    if (wd_output_is_finished(o)) {
        WD_CHECK(wd_jw_raw(b, ",\"e2e_latency\":"));
        WD_CHECK(wd_jw_double(b, cx->e2e_latency));
    }
    if (o->cfg.logprobs)
        WD_CHECK(logprobs(cx, o, b));
    return wd_jw_raw(b, "}}");
}

enum wd_status wd_api_sglang_full(const struct wd_api_response_ctx *cx, const struct wd_output *o,
                                  struct wd_buf *out)
{
    return body(cx, o, out);
}

enum wd_status wd_api_sglang_stream(const struct wd_api_response_ctx *cx, struct wd_output *o,
                                    struct wd_api_stream_state *ss, struct wd_buf *out)
{
    size_t len;
    wd_output_unsent(o, &len);
    int is_final = wd_output_is_finished(o);
    if (len == 0 && o->n == ss->n_lp_sent && !is_final)
        return WD_OK;
    wd_output_mark_sent(o);
    ss->n_lp_sent = o->n;
    ss->is_started = 1;
    size_t start = out->len;
    WD_CHECK(body(cx, o, out));
    WD_CHECK(wd_api_sse_frame(out, start));
    if (is_final)
        ss->is_finished = 1;
    return WD_OK;
}
