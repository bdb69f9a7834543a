/* Helpers shared by the response builders (internal to router/). */
#ifndef WD_ROUTER_API_RESPONSE_INTERNAL_H
#define WD_ROUTER_API_RESPONSE_INTERNAL_H

#include "router/api_response.h"
#include "router/json_writer.h"

/* {"prompt_tokens", "completion_tokens", "total_tokens"} (+ cached details when known). */
enum wd_status wd_api_usage_json(const struct wd_api_response_ctx *cx, const struct wd_output *o,
                                 struct wd_buf *out);
/* A token's own text (special tokens included) as a JSON string; *len_p its byte length. */
enum wd_status wd_api_token_text(const struct wd_api_response_ctx *cx, int32_t id,
                                 struct wd_buf *out, size_t *len_p);
/* A token's text as OpenAI's "bytes": [b0, b1, ...]. */
enum wd_status wd_api_token_bytes(const struct wd_api_response_ctx *cx, int32_t id,
                                  struct wd_buf *out);
/* Frames out[from, len) as one SSE event in place ("data: " before, "\n\n" after). */
enum wd_status wd_api_sse_frame(struct wd_buf *out, size_t from);

enum wd_status wd_api_openai_full(const struct wd_api_response_ctx *cx, const struct wd_output *o,
                                  struct wd_buf *out);
enum wd_status wd_api_openai_stream(const struct wd_api_response_ctx *cx, struct wd_output *o,
                                    struct wd_api_stream_state *ss, struct wd_buf *out);
enum wd_status wd_api_sglang_full(const struct wd_api_response_ctx *cx, const struct wd_output *o,
                                  struct wd_buf *out);
enum wd_status wd_api_sglang_stream(const struct wd_api_response_ctx *cx, struct wd_output *o,
                                    struct wd_api_stream_state *ss, struct wd_buf *out);

#endif
