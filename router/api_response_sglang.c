/*
 * SGLang /generate response: {"text", "output_ids", "meta_info": {"id", "finish_reason",
 * "prompt_tokens", "completion_tokens", "cached_tokens", "e2e_latency", and with
 * return_logprob "input_token_logprobs" (always empty: prompt logprobs are not offered),
 * "output_token_logprobs" [[logprob, id, text|null]...], "output_top_logprobs"}}.
 * finish_reason is {"type": "length", "length": n}, {"type": "stop", "matched": id|str}
 * or null while running.
 */
#include <stdlib.h>

#include "router/api_response_internal.h"

static json_t *finish_reason(const struct wd_api_response_ctx *cx, const struct wd_output *o)
{
    switch (o->finish) {
    case WD_OUTPUT_LENGTH:
        return json_pack("{s:s, s:i}", "type", "length", "length", o->n);
    case WD_OUTPUT_STOP_STRING:
        return json_pack("{s:s, s:s%}", "type", "stop", "matched", cx->req->stop[o->stop_string],
                         cx->req->stop_len[o->stop_string]);
    case WD_OUTPUT_STOP_TOKEN:
        return json_pack("{s:s, s:i}", "type", "stop", "matched", (int)o->stop_token);
    default:
        return json_null();
    }
}

static json_t *lp_entry(const struct wd_api_response_ctx *cx, float lp, int32_t id)
{
    json_t *text = cx->req->return_text_in_logprobs ? wd_api_token_text(cx, id) : json_null();
    return json_pack("[f, i, o]", (double)lp, (int)id, text);
}

static json_t *body(const struct wd_api_response_ctx *cx, const struct wd_output *o)
{
    json_t *ids = json_array();
    for (int t = 0; t < o->n; t++)
        json_array_append_new(ids, json_integer(o->ids[t]));
    json_t *meta = json_pack("{s:s, s:o, s:i, s:i, s:i}", "id", cx->id, "finish_reason",
                             finish_reason(cx, o), "prompt_tokens", cx->prompt_tokens,
                             "completion_tokens", o->n, "cached_tokens", cx->cached_tokens);
    if (meta && wd_output_is_finished(o))
        json_object_set_new(meta, "e2e_latency", json_real(cx->e2e_latency));
    if (meta && o->cfg.logprobs) {
        json_t *out_lp = json_array(), *out_top = json_array();
        int k = o->cfg.top_logprobs;
        for (int t = 0; t < o->n; t++) {
            json_array_append_new(out_lp, lp_entry(cx, o->lps[t], o->ids[t]));
            if (k == 0)
                continue;
            json_t *tops = json_array();
            for (int j = 0; j < k; j++)
                if (o->top_ids[(size_t)t * k + j] >= 0)
                    json_array_append_new(tops, lp_entry(cx, o->top_lps[(size_t)t * k + j],
                                                         o->top_ids[(size_t)t * k + j]));
            json_array_append_new(out_top, tops);
        }
        json_object_set_new(meta, "input_token_logprobs", json_array());
        json_object_set_new(meta, "output_token_logprobs", out_lp);
        json_object_set_new(meta, "output_top_logprobs", out_top);
    }
    return json_pack("{s:s%, s:o, s:o}", "text", o->text.p ? o->text.p : "", o->released,
                     "output_ids", ids, "meta_info", meta);
}

char *wd_api_sglang_full(const struct wd_api_response_ctx *cx, const struct wd_output *o,
                         size_t *len_p)
{
    return wd_api_dump(body(cx, o), len_p);
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
    WD_CHECK(wd_api_sse_json(out, body(cx, o)));
    if (is_final)
        ss->is_finished = 1;
    return WD_OK;
}
