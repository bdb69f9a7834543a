/*
 * wd_jw: appending JSON values to a wd_buf, for the responses the router sends per request
 * and per token. jansson builds a tree of small allocations and dumps it through a callback
 * per piece: on the one-token benchmark that was a tenth of the router's CPU time. The
 * builders write their fixed keys as literals and the values through these; the buffer is
 * the request slot's own, so nothing is allocated once it has grown. Requests are still
 * parsed with jansson (api_request.c).
 */
#ifndef WD_ROUTER_JSON_WRITER_H
#define WD_ROUTER_JSON_WRITER_H

#include <stddef.h>

#include "router/buf.h"

/* A JSON string: quotes, and the escapes JSON needs (", \, control characters). The text
 * must be valid UTF-8 (the detokenizer's output and the parser's strings are). */
enum wd_status wd_jw_string(struct wd_buf *b, const char *s, size_t len);
/* A number for a logprob: 9 significant digits (a float round-trips); -inf (a token the
 * model gave no chance) as -9999.0, as vLLM reports it; NaN as null. */
enum wd_status wd_jw_double(struct wd_buf *b, double v);
enum wd_status wd_jw_int(struct wd_buf *b, long long v);
/* A literal fragment such as ",\"object\":\"text_completion\"". */
enum wd_status wd_jw_raw(struct wd_buf *b, const char *s);

#endif
