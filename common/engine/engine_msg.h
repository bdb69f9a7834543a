/*
 * The records the engine's front-end and its ranks exchange: commands into a DP rank (add a
 * request, abort, the decode/prefill verbs) and events out of it (a token, a request error,
 * reserved pages). They cross process boundaries (shared-memory rings, the attention-TP
 * broadcast, the relay between nodes), so they are fixed-layout, little-endian, carry
 * indices and never pointers. wd_engine_cmd_check / wd_engine_event_check validate a
 * record read from elsewhere before any field is trusted.
 */
#ifndef WD_ENGINE_MSG_H
#define WD_ENGINE_MSG_H

#include <stddef.h>
#include <stdint.h>

#include "common/sched/request.h"
#include "common/util/status.h"

enum wd_engine_cmd_kind {
    WD_ENGINE_CMD_ADD = 1,  /* queue a request (prompt follows) */
    WD_ENGINE_CMD_ABORT,    /* abort a request in any state */
    WD_ENGINE_CMD_RESERVE,  /* decode: reserve pages for a request (prompt follows) */
    WD_ENGINE_CMD_ACTIVATE, /* decode: KV landed, first token known */
    WD_ENGINE_CMD_RELEASE,  /* prefill: the KV transfer is flushed, free the pages */
};

/* One command; ADD and RESERVE are followed by int32 prompt[n_prompt]. */
struct wd_engine_cmd {
    uint32_t kind;
    uint32_t bytes; /* the whole record: this head plus the prompt */
    uint64_t id;
    uint64_t seed;
    int32_t n_prompt, max_new_tokens, top_k, n_stop_ids, ignore_eos, top_logprobs;
    float temperature, top_p, min_p;
    int32_t first_token; /* ACTIVATE */
    float first_logprob; /* ACTIVATE */
    int32_t pad;
    int32_t stop_ids[WD_MAX_STOP_IDS];
};

enum wd_engine_event_kind {
    WD_ENGINE_EV_TOKEN = 1, /* a generated token, or a finish without one (token -1) */
    WD_ENGINE_EV_ERROR,     /* a command was refused or the request failed: message follows */
    WD_ENGINE_EV_RESERVED,  /* decode: the pages of a reserve, int32 pages[n_pages] follow */
};

/* One event; ERROR is followed by `extra` bytes of message (no NUL), RESERVED by the page
 * ids. */
struct wd_engine_event {
    uint32_t kind;
    uint32_t bytes; /* the whole record */
    uint64_t id;
    int32_t dp_rank;
    int32_t token; /* -1: none */
    float logprob;
    int32_t finish;       /* enum wd_finish_reason */
    int32_t is_prefilled; /* prefill: the request holds its pages until RELEASE */
    int32_t n_prompt, n_generated;
    int32_t n_top;
    int32_t status; /* ERROR: enum wd_status */
    int32_t extra;  /* bytes (ERROR) or page ids (RESERVED) that follow */
    int32_t top_ids[WD_MAX_TOP_LOGPROBS];
    float top_logprobs[WD_MAX_TOP_LOGPROBS];
};

/* Fills an ADD (or RESERVE) command from request params (prompt not copied). */
void wd_engine_cmd_from_params(struct wd_engine_cmd *c, enum wd_engine_cmd_kind kind,
                               const struct wd_request_params *p);
/* The request params of an ADD/RESERVE command whose prompt is `prompt`. */
void wd_engine_cmd_to_params(const struct wd_engine_cmd *c, const int32_t *prompt,
                             struct wd_request_params *p);
/* Checks a command record of len bytes read from elsewhere: size, kind, counts. */
enum wd_status wd_engine_cmd_check(const void *rec, size_t len, struct wd_error *err);
/* Checks an event record of len bytes. */
enum wd_status wd_engine_event_check(const void *rec, size_t len, struct wd_error *err);

/* Largest prompt a command may carry (keeps a corrupt count from sizing anything). */
#define WD_ENGINE_MAX_PROMPT (1 << 22)

#endif
