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

/* Bytes that follow a command's head. */
static size_t cmd_tail(const struct wd_engine_cmd *c)
{
    switch (c->kind) {
    case WD_ENGINE_CMD_ADD:
        return ((size_t)c->n_prompt + (c->pd_peer ? (size_t)c->n_remote_pages : 0)) *
               sizeof(int32_t);
    case WD_ENGINE_CMD_RESERVE:
        return (size_t)c->n_prompt * sizeof(int32_t);
    case WD_ENGINE_CMD_PD_PEER:
        return (size_t)c->n_extra;
    default:
        return 0;
    }
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
    if (c.kind < WD_ENGINE_CMD_ADD || c.kind > WD_ENGINE_CMD_PD_PEER)
        return wd_error_set(err, WD_ERR_FORMAT, "engine command kind %u is unknown", c.kind);
    if (c.n_prompt < 0 || c.n_prompt > WD_ENGINE_MAX_PROMPT || c.n_remote_pages < 0 ||
        c.n_remote_pages > WD_ENGINE_MAX_PROMPT || c.n_extra < 0 || c.pd_peer < 0)
        return wd_error_set(err, WD_ERR_FORMAT,
                            "engine command counts out of range (prompt %d, pages %d, extra %d)",
                            c.n_prompt, c.n_remote_pages, c.n_extra);
    size_t want = sizeof(c) + cmd_tail(&c);
    if (want != len)
        return wd_error_set(err, WD_ERR_FORMAT, "engine command of %zu bytes, expected %zu", len,
                            want);
    if (c.kind == WD_ENGINE_CMD_PD_PEER ? c.pd_peer == 0 : c.id == 0)
        return wd_error_set(err, WD_ERR_FORMAT, "engine command without a request id or index");
    return WD_OK;
}

enum wd_status wd_engine_event_check(const void *rec, size_t len, struct wd_error *err)
{
    struct wd_engine_event e;
    if (len < sizeof(e))
        return wd_error_set(err, WD_ERR_FORMAT, "engine event of %zu bytes is too short", len);
    memcpy(&e, rec, sizeof(e));
    if (e.bytes != len || e.kind < WD_ENGINE_EV_TOKEN || e.kind > WD_ENGINE_EV_PEER_READY ||
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
