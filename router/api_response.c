/* Response building: dispatch by endpoint, SSE framing, shared JSON pieces. */
#include "router/api_response.h"

#include <stdlib.h>
#include <string.h>

#include "router/api_response_internal.h"

const char *wd_api_finish_reason(const struct wd_output *o)
{
    switch (o->finish) {
    case WD_OUTPUT_LENGTH:
        return "length";
    case WD_OUTPUT_STOP_TOKEN:
    case WD_OUTPUT_STOP_STRING:
        return "stop";
    default:
        return NULL;
    }
}

enum wd_status wd_api_sse_event(struct wd_buf *out, const char *payload, size_t len)
{
    WD_CHECK(wd_buf_reserve(out, len + 8));
    WD_CHECK(wd_buf_append(out, "data: ", 6));
    WD_CHECK(wd_buf_append(out, payload, len));
    return wd_buf_append(out, "\n\n", 2);
}

enum wd_status wd_api_sse_frame(struct wd_buf *out, size_t from)
{
    WD_CHECK(wd_buf_reserve(out, 8));
    memmove(out->p + from + 6, out->p + from, out->len - from);
    memcpy(out->p + from, "data: ", 6);
    out->len += 6;
    return wd_buf_append(out, "\n\n", 2);
}

enum wd_status wd_api_usage_json(const struct wd_api_response_ctx *cx, const struct wd_output *o,
                                 struct wd_buf *out)
{
    WD_CHECK(wd_buf_appendf(out,
                            "{\"prompt_tokens\":%d,\"completion_tokens\":%d,\"total_tokens\":%d",
                            cx->prompt_tokens, o->n, cx->prompt_tokens + o->n));
    if (cx->cached_tokens > 0)
        WD_CHECK(wd_buf_appendf(out, ",\"prompt_tokens_details\":{\"cached_tokens\":%d}",
                                cx->cached_tokens));
    return wd_buf_append(out, "}", 1);
}

/* The token's decoded text, malloc'd (NULL on failure: treated as ""). */
static char *decode_one(const struct wd_api_response_ctx *cx, int32_t id, size_t *len_p)
{
    char *s = NULL;
    struct wd_error err;
    if (wd_tokenizer_decode_len(cx->tok, &id, 1, 0, &s, len_p, &err) != WD_OK) {
        *len_p = 0;
        return NULL;
    }
    return s;
}

enum wd_status wd_api_token_text(const struct wd_api_response_ctx *cx, int32_t id,
                                 struct wd_buf *out, size_t *len_p)
{
    size_t len;
    char *s = decode_one(cx, id, &len);
    enum wd_status st = wd_jw_string(out, s ? s : "", len);
    free(s);
    if (len_p)
        *len_p = len;
    return st;
}

enum wd_status wd_api_token_bytes(const struct wd_api_response_ctx *cx, int32_t id,
                                  struct wd_buf *out)
{
    size_t len;
    char *s = decode_one(cx, id, &len);
    enum wd_status st = wd_buf_append(out, "[", 1);
    for (size_t i = 0; i < len && st == WD_OK; i++)
        st = wd_buf_appendf(out, i ? ",%u" : "%u", (unsigned char)s[i]);
    free(s);
    return st == WD_OK ? wd_buf_append(out, "]", 1) : st;
}

enum wd_status wd_api_response_full(const struct wd_api_response_ctx *cx, const struct wd_output *o,
                                    struct wd_buf *out)
{
    return cx->req->kind == WD_API_GENERATE ? wd_api_sglang_full(cx, o, out)
                                            : wd_api_openai_full(cx, o, out);
}

enum wd_status wd_api_response_stream(const struct wd_api_response_ctx *cx, struct wd_output *o,
                                      struct wd_api_stream_state *ss, struct wd_buf *out)
{
    if (ss->is_finished)
        return WD_OK;
    enum wd_status st = cx->req->kind == WD_API_GENERATE ? wd_api_sglang_stream(cx, o, ss, out)
                                                         : wd_api_openai_stream(cx, o, ss, out);
    if (st == WD_OK && ss->is_finished)
        st = wd_buf_append(out, "data: [DONE]\n\n", 14);
    return st;
}

enum wd_status wd_api_response_stream_error(const struct wd_api_error *e, struct wd_buf *out)
{
    size_t len;
    char *s = wd_api_error_json(e, &len);
    if (!s)
        return WD_ERR_NOMEM;
    enum wd_status st = wd_api_sse_event(out, s, len);
    free(s);
    return st == WD_OK ? wd_buf_append(out, "data: [DONE]\n\n", 14) : st;
}
