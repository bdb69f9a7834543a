/*
 * wd_api_request: an HTTP generation request (OpenAI chat or completions, SGLang
 * /generate) parsed from its JSON body into one native struct, checked field by field.
 *
 * Every field of the body is either supported (validated, used), accepted as harmless
 * (not used: see the lists in api_request_openai.c and api_request_sglang.c), accepted
 * only at its neutral value (n = 1, penalties 0, ...), or refused with a 400 that names it. Nothing is silently
 * ignored, because a client that asks for n=2 or a tool call and gets a plain completion
 * back has been lied to.
 *
 * The struct borrows strings from the parsed JSON, which it keeps a reference to; release
 * it with wd_api_request_cleanup. The parser knows nothing about the tokenizer: prompt
 * text and messages come out as text; token ids are range-checked against the vocab.
 */
#ifndef WD_ROUTER_API_REQUEST_H
#define WD_ROUTER_API_REQUEST_H

#include <stddef.h>
#include <stdint.h>

#include "common/tokenizer/chat_template.h"
#include "common/util/status.h"
#include "router/api_error.h"

#define WD_API_MAX_STOP 16       /* stop strings per request */
#define WD_API_MAX_STOP_LEN 1024 /* bytes per stop string */
#define WD_API_MAX_STOP_IDS 32   /* stop_token_ids per request */
#define WD_API_MAX_TOP_LOGPROBS 20
#define WD_API_MAX_MESSAGES 4096

enum wd_api_kind { WD_API_CHAT = 0, WD_API_COMPLETION, WD_API_GENERATE };

/* What the parser needs from the served model. */
struct wd_api_model {
    const char *served_name; /* a request's "model" must match (or be absent) */
    int32_t vocab_size;      /* token ids must be below */
    /* sampling defaults (generation_config.json, else neutral) */
    float temperature, top_p, min_p;
    int top_k;
};

struct wd_api_request {
    enum wd_api_kind kind;
    int is_stream;
    int include_usage; /* stream_options.include_usage */
    /* the prompt: messages (chat), text, or token ids */
    struct wd_chat_message *msgs; /* [n_msgs] (chat) */
    int n_msgs;
    int add_generation_prompt; /* chat, default 1 */
    int enable_thinking;       /* chat_template_kwargs.enable_thinking: -1 not given */
    const char *text;          /* completion / generate text; NULL when ids are given */
    size_t text_len;
    int32_t *ids; /* [n_ids] malloc'd, prompt token ids when given as ids */
    int n_ids;
    /* generation */
    int max_tokens; /* -1: not given (the router applies the endpoint's default) */
    float temperature, top_p, min_p;
    int top_k; /* 0: off */
    int has_seed;
    uint64_t seed;
    const char *stop[WD_API_MAX_STOP];
    size_t stop_len[WD_API_MAX_STOP];
    int n_stop;
    int32_t stop_ids[WD_API_MAX_STOP_IDS];
    int n_stop_ids;
    int ignore_eos;
    int skip_special_tokens;     /* default 1 */
    int no_stop_trim;            /* /generate: keep the matched stop string in the text */
    int logprobs;                /* return the chosen tokens' logprobs */
    int top_logprobs;            /* and this many alternatives per position */
    int return_text_in_logprobs; /* /generate */
    const char *rid;             /* /generate's request id, NULL when not given */
    void *json;                  /* the parsed body (json_t *), kept for the borrowed strings */
    char **owned;                /* strings built from content parts */
    int n_owned;
};

/* Parses body (len bytes, need not be NUL-terminated) for endpoint kind. On error fills e
 * (400 with the field as param; 404 for an unknown model) and returns its status; *req is
 * then already cleaned up. */
enum wd_status wd_api_request_parse(enum wd_api_kind kind, const char *body, size_t len,
                                    const struct wd_api_model *model, struct wd_api_request *req,
                                    struct wd_api_error *e);
void wd_api_request_cleanup(struct wd_api_request *req);

#endif
