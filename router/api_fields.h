/*
 * Field-table helpers shared by the request parsers (api_request_openai.c,
 * api_request_sglang.c): each endpoint lists its fields with a handler, and every key of
 * the body must be in the list. JSON null means "not given" for every field, supported or
 * not, as OpenAI's own API treats it. Internal to router/.
 */
#ifndef WD_ROUTER_API_FIELDS_H
#define WD_ROUTER_API_FIELDS_H

#include <jansson.h>

#include "router/api_request.h"

struct wd_api_ctx {
    struct wd_api_request *req;
    const struct wd_api_model *model;
    struct wd_api_error *e;
    const char *prefix; /* "sampling_params." inside /generate's nested object, else "" */
    /* what the cross-field checks after the walk need */
    int has_stream_options, has_top_logprobs, has_prompt;
    int max_completion_tokens; /* -1: not given; wins over max_tokens */
};

/* v is never JSON null here (the walker skips nulls). */
typedef enum wd_status (*wd_api_field_fn)(struct wd_api_ctx *cx, const char *name, json_t *v);

struct wd_api_field {
    const char *name;
    wd_api_field_fn fn;
};

/* Runs each key of obj through its handler, looked up in `shared` (fields several endpoints
 * take; may be NULL) and then `own`; a key in neither is a 400 naming it. */
enum wd_status wd_api_fields_walk(struct wd_api_ctx *cx, json_t *obj,
                                  const struct wd_api_field *shared, int n_shared,
                                  const struct wd_api_field *own, int n_own);

/* Typed readers: write *out on success, or set a 400 naming the field. */
enum wd_status wd_api_get_bool(struct wd_api_ctx *cx, const char *name, json_t *v, int *out);
enum wd_status wd_api_get_int(struct wd_api_ctx *cx, const char *name, json_t *v, long long min,
                              long long max, int *out);
enum wd_status wd_api_get_float(struct wd_api_ctx *cx, const char *name, json_t *v, double min,
                                double max, float *out);
/* A string or a list of strings into req->stop. */
enum wd_status wd_api_get_stop(struct wd_api_ctx *cx, const char *name, json_t *v);
/* A list of token ids below the vocab size; *ids_p malloc'd. */
enum wd_status wd_api_get_ids(struct wd_api_ctx *cx, const char *name, json_t *v, int32_t **ids_p,
                              int *n_p);
enum wd_status wd_api_get_stop_ids(struct wd_api_ctx *cx, const char *name, json_t *v);
/* 400 "<name> is not supported by wideep" (+ detail). */
enum wd_status wd_api_unsupported(struct wd_api_ctx *cx, const char *name, const char *detail);

/* Handlers shared by several endpoints. */
enum wd_status wd_api_field_harmless(struct wd_api_ctx *cx, const char *name, json_t *v);
enum wd_status wd_api_field_model(struct wd_api_ctx *cx, const char *name, json_t *v);
enum wd_status wd_api_field_stream(struct wd_api_ctx *cx, const char *name, json_t *v);
enum wd_status wd_api_field_temperature(struct wd_api_ctx *cx, const char *name, json_t *v);
enum wd_status wd_api_field_top_p(struct wd_api_ctx *cx, const char *name, json_t *v);
enum wd_status wd_api_field_top_k(struct wd_api_ctx *cx, const char *name, json_t *v);
enum wd_status wd_api_field_min_p(struct wd_api_ctx *cx, const char *name, json_t *v);
enum wd_status wd_api_field_seed(struct wd_api_ctx *cx, const char *name, json_t *v);
enum wd_status wd_api_field_max_tokens(struct wd_api_ctx *cx, const char *name, json_t *v);
enum wd_status wd_api_field_stop(struct wd_api_ctx *cx, const char *name, json_t *v);
enum wd_status wd_api_field_stop_ids(struct wd_api_ctx *cx, const char *name, json_t *v);
enum wd_status wd_api_field_ignore_eos(struct wd_api_ctx *cx, const char *name, json_t *v);
enum wd_status wd_api_field_skip_special(struct wd_api_ctx *cx, const char *name, json_t *v);
/* Accepted only at the neutral value: n / best_of 1, penalties 0, repetition_penalty 1,
 * min_tokens 0, logit_bias empty. */
enum wd_status wd_api_field_only_one(struct wd_api_ctx *cx, const char *name, json_t *v);
enum wd_status wd_api_field_only_zero(struct wd_api_ctx *cx, const char *name, json_t *v);
enum wd_status wd_api_field_only_empty(struct wd_api_ctx *cx, const char *name, json_t *v);
enum wd_status wd_api_field_only_false(struct wd_api_ctx *cx, const char *name, json_t *v);
enum wd_status wd_api_field_refused(struct wd_api_ctx *cx, const char *name, json_t *v);

/* The endpoint parsers (their field tables live beside them). */
enum wd_status wd_api_parse_chat(struct wd_api_ctx *cx, json_t *root);
enum wd_status wd_api_parse_completion(struct wd_api_ctx *cx, json_t *root);
enum wd_status wd_api_parse_generate(struct wd_api_ctx *cx, json_t *root);

#endif
