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

char *wd_api_dump(json_t *root, size_t *len_p)
{
    char *s = root ? json_dumps(root, JSON_COMPACT) : NULL;
    json_decref(root);
    if (s && len_p)
        *len_p = strlen(s);
    return s;
}

enum wd_status wd_api_sse_json(struct wd_buf *out, json_t *root)
{
    size_t len;
    char *s = wd_api_dump(root, &len);
    if (!s)
        return WD_ERR_NOMEM;
    enum wd_status st = wd_api_sse_event(out, s, len);
    free(s);
    return st;
}

json_t *wd_api_usage_json(const struct wd_api_response_ctx *cx, const struct wd_output *o)
{
    json_t *u = json_pack("{s:i, s:i, s:i}", "prompt_tokens", cx->prompt_tokens,
                          "completion_tokens", o->n, "total_tokens", cx->prompt_tokens + o->n);
    if (u && cx->cached_tokens > 0)
        json_object_set_new(u, "prompt_tokens_details",
                            json_pack("{s:i}", "cached_tokens", cx->cached_tokens));
    return u;
}

json_t *wd_api_token_text(const struct wd_api_response_ctx *cx, int32_t id)
{
    char *s = NULL;
    size_t len = 0;
    struct wd_error err;
    if (wd_tokenizer_decode_len(cx->tok, &id, 1, 0, &s, &len, &err) != WD_OK)
        return json_string("");
    json_t *j = json_stringn(s, len); /* NULL only for a NUL-containing decode: fall back */
    free(s);
    return j ? j : json_string("");
}

char *wd_api_response_full(const struct wd_api_response_ctx *cx, const struct wd_output *o,
                           size_t *len_p)
{
    return cx->req->kind == WD_API_GENERATE ? wd_api_sglang_full(cx, o, len_p)
                                            : wd_api_openai_full(cx, o, len_p);
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
