/*
 * wd_api_response: the JSON a generation request gets back, whole or as SSE events, for
 * the three endpoint shapes (OpenAI chat.completion / text_completion and their chunks,
 * SGLang's {"text", "output_ids", "meta_info"}), built from a wd_output.
 *
 * Streams follow OpenAI: chat's first event carries the assistant role, every event has
 * "usage": null when stream_options.include_usage is set and a last event with empty
 * choices carries the usage; the stream ends with "data: [DONE]". An error after the
 * stream began is one event {"error": {...}} followed by [DONE] (what vLLM and SGLang
 * send), since the HTTP status is already 200. /generate streams SGLang's default
 * (non-incremental) form: each event holds the text and ids so far.
 */
#ifndef WD_ROUTER_API_RESPONSE_H
#define WD_ROUTER_API_RESPONSE_H

#include <stddef.h>

#include "router/api_error.h"
#include "router/api_request.h"
#include "router/buf.h"
#include "router/output.h"

struct wd_api_response_ctx {
    const struct wd_api_request *req;
    const struct wd_tokenizer *tok;
    const char *id;    /* "chatcmpl-...", "cmpl-..." or /generate's rid */
    const char *model; /* served model name */
    long long created; /* unix seconds */
    int prompt_tokens;
    int cached_tokens;  /* from the worker, 0 when it does not say */
    double e2e_latency; /* seconds, /generate's meta_info */
};

/* Streaming progress of one request. */
struct wd_api_stream_state {
    int is_started;  /* the first event (chat: the role) went out */
    int n_lp_sent;   /* tokens whose logprobs went out */
    int is_finished; /* the finish event went out */
};

/* Appends the whole answer of a finished request (JSON) to out. */
enum wd_status wd_api_response_full(const struct wd_api_response_ctx *cx, const struct wd_output *o,
                                    struct wd_buf *out);

/* Appends the SSE events for what the output gained since the last call (nothing when it
 * gained nothing to show), marks the text sent, and when the output is finished the finish
 * event, the usage event if asked and [DONE]. */
enum wd_status wd_api_response_stream(const struct wd_api_response_ctx *cx, struct wd_output *o,
                                      struct wd_api_stream_state *ss, struct wd_buf *out);

/* An error inside a stream: the error event then [DONE]. */
enum wd_status wd_api_response_stream_error(const struct wd_api_error *e, struct wd_buf *out);

/* "stop" / "length" (NULL while running). */
const char *wd_api_finish_reason(const struct wd_output *o);

/* SSE framing: "data: <payload>\n\n". */
enum wd_status wd_api_sse_event(struct wd_buf *out, const char *payload, size_t len);

#endif
