/* Helpers shared by the response builders (internal to router/). */
#ifndef WD_ROUTER_API_RESPONSE_INTERNAL_H
#define WD_ROUTER_API_RESPONSE_INTERNAL_H

#include <jansson.h>

#include "router/api_response.h"

/* {"prompt_tokens", "completion_tokens", "total_tokens"} (+ cached details when known). */
json_t *wd_api_usage_json(const struct wd_api_response_ctx *cx, const struct wd_output *o);
/* A token's own text (special tokens included), as a JSON string; invalid UTF-8 -> U+FFFD. */
json_t *wd_api_token_text(const struct wd_api_response_ctx *cx, int32_t id);
/* Dumps root compactly (and releases it); NULL on failure. */
char *wd_api_dump(json_t *root, size_t *len_p);
/* Appends root as one SSE event (and releases it). */
enum wd_status wd_api_sse_json(struct wd_buf *out, json_t *root);

char *wd_api_openai_full(const struct wd_api_response_ctx *cx, const struct wd_output *o,
                         size_t *len_p);
enum wd_status wd_api_openai_stream(const struct wd_api_response_ctx *cx, struct wd_output *o,
                                    struct wd_api_stream_state *ss, struct wd_buf *out);
char *wd_api_sglang_full(const struct wd_api_response_ctx *cx, const struct wd_output *o,
                         size_t *len_p);
enum wd_status wd_api_sglang_stream(const struct wd_api_response_ctx *cx, struct wd_output *o,
                                    struct wd_api_stream_state *ss, struct wd_buf *out);

#endif
