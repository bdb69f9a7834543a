/* Engine command and event records: conversion and validation. */
#include "common/engine/engine_msg.h"

#include <string.h>

void wd_engine_cmd_from_params(struct wd_engine_cmd *c, enum wd_engine_cmd_kind kind,
                               const struct wd_request_params *p)
{
    memset(c, 0, sizeof(*c));
    c->kind = kind;
    c->bytes = (uint32_t)(sizeof(*c) + (size_t)p->n_prompt * sizeof(int32_t));
    c->id = p->id;
    c->seed = p->seed;
    c->n_prompt = p->n_prompt;
    c->max_new_tokens = p->max_new_tokens;
    c->top_k = p->sampling.top_k;
    c->temperature = p->sampling.temperature;
    c->top_p = p->sampling.top_p;
    c->min_p = p->sampling.min_p;
    c->n_stop_ids = p->n_stop_ids;
    c->ignore_eos = p->ignore_eos;
    c->top_logprobs = p->top_logprobs;
    memcpy(c->stop_ids, p->stop_ids, sizeof(c->stop_ids));
}

void wd_engine_cmd_to_params(const struct wd_engine_cmd *c, const int32_t *prompt,
                             struct wd_request_params *p)
{
    memset(p, 0, sizeof(*p));
    p->prompt = prompt;
    p->n_prompt = c->n_prompt;
    p->max_new_tokens = c->max_new_tokens;
    p->sampling.temperature = c->temperature;
    p->sampling.top_k = c->top_k;
    p->sampling.top_p = c->top_p;
    p->sampling.min_p = c->min_p;
    p->seed = c->seed;
    p->n_stop_ids = c->n_stop_ids;
    memcpy(p->stop_ids, c->stop_ids, sizeof(p->stop_ids));
    p->ignore_eos = c->ignore_eos;
    p->top_logprobs = c->top_logprobs;
    p->id = c->id;
}

enum wd_status wd_engine_cmd_check(const void *rec, size_t len, struct wd_error *err)
{
    struct wd_engine_cmd c;
    if (len < sizeof(c))
        return wd_error_set(err, WD_ERR_FORMAT, "engine command of %zu bytes is too short", len);
    memcpy(&c, rec, sizeof(c));
    if (c.bytes != len)
        return wd_error_set(err, WD_ERR_FORMAT, "engine command says %u bytes, has %zu", c.bytes,
                            len);
    if (c.kind < WD_ENGINE_CMD_ADD || c.kind > WD_ENGINE_CMD_RELEASE)
        return wd_error_set(err, WD_ERR_FORMAT, "engine command kind %u is unknown", c.kind);
    int has_prompt = c.kind == WD_ENGINE_CMD_ADD || c.kind == WD_ENGINE_CMD_RESERVE;
    size_t want = sizeof(c);
    if (has_prompt) {
        if (c.n_prompt < 0 || c.n_prompt > WD_ENGINE_MAX_PROMPT)
            return wd_error_set(err, WD_ERR_FORMAT, "engine command prompt of %d tokens",
                                c.n_prompt);
        want += (size_t)c.n_prompt * sizeof(int32_t);
    }
    if (want != len)
        return wd_error_set(err, WD_ERR_FORMAT, "engine command of %zu bytes, expected %zu", len,
                            want);
    if (c.id == 0)
        return wd_error_set(err, WD_ERR_FORMAT, "engine command without a request id");
    return WD_OK;
}

enum wd_status wd_engine_event_check(const void *rec, size_t len, struct wd_error *err)
{
    struct wd_engine_event e;
    if (len < sizeof(e))
        return wd_error_set(err, WD_ERR_FORMAT, "engine event of %zu bytes is too short", len);
    memcpy(&e, rec, sizeof(e));
    if (e.bytes != len || e.kind < WD_ENGINE_EV_TOKEN || e.kind > WD_ENGINE_EV_RESERVED ||
        e.extra < 0 || e.n_top < 0 || e.n_top > WD_MAX_TOP_LOGPROBS || e.finish < 0 ||
        e.finish > WD_FINISH_ERROR)
        return wd_error_set(err, WD_ERR_FORMAT, "engine event is malformed (kind %u, %u bytes)",
                            e.kind, e.bytes);
    size_t unit = e.kind == WD_ENGINE_EV_RESERVED ? sizeof(int32_t) : 1;
    if (sizeof(e) + (size_t)e.extra * unit != len)
        return wd_error_set(err, WD_ERR_FORMAT, "engine event of %zu bytes, extra %d", len,
                            e.extra);
    return WD_OK;
}
