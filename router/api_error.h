/*
 * wd_api_error: an HTTP API error in OpenAI's shape,
 *   {"error": {"message": ..., "type": ..., "param": ..., "code": ...}}
 * which the openai client turns into its exception classes by status (400
 * BadRequestError, 401 AuthenticationError, 404 NotFoundError, 413/422 the generic
 * APIStatusError, 429 RateLimitError, 5xx InternalServerError). Every endpoint, /generate
 * included, answers errors this way. Plain value struct; never allocates until rendered.
 */
#ifndef WD_ROUTER_API_ERROR_H
#define WD_ROUTER_API_ERROR_H

#include <stddef.h>

#include "common/util/status.h"

struct wd_api_error {
    int status;       /* HTTP status */
    const char *type; /* OpenAI's error type for the status */
    const char *code; /* NULL renders as null */
    char param[64];   /* the request field at fault; "" renders as null */
    char message[WD_ERROR_LEN];
};

/* Fills e (type from the status) and returns WD_ERR_INVALID, so parsers can write
 * `return wd_api_error_set(e, 400, "top_p", "...")`. param may be NULL. */
enum wd_status wd_api_error_set(struct wd_api_error *e, int status, const char *param,
                                const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* Sets the code field (a static string such as "model_not_found"). */
void wd_api_error_code(struct wd_api_error *e, const char *code);

/* The error as JSON, malloc'd and NUL-terminated (NULL when out of memory). */
char *wd_api_error_json(const struct wd_api_error *e, size_t *len_p);

#endif
