/*
 * wd_request: one generation request as the scheduler tracks it: its tokens
 * (prompt then output), how many of them have KV in the cache, its pages, its
 * sampler state and its outcome. The scheduler owns every request it admits and
 * frees it when the caller has been told the request finished (or, for a prefilled
 * request held for a KV transfer, when the caller releases it).
 */
#ifndef WD_SCHED_REQUEST_H
#define WD_SCHED_REQUEST_H

#include <stdint.h>

#include "kernels/sampling.h"

#define WD_MAX_STOP_IDS 32
/* Most top logprobs a request may ask for per token (OpenAI's limit is 20). */
#define WD_MAX_TOP_LOGPROBS 20

enum wd_finish_reason {
    WD_FINISH_NONE = 0, /* still running */
    WD_FINISH_LENGTH,   /* max_new_tokens or the context length reached */
    WD_FINISH_STOP,     /* a stop / eos token was generated */
    WD_FINISH_ABORT,    /* aborted by the caller */
    WD_FINISH_ERROR,    /* the engine failed this request (req->error says why) */
};

struct wd_request_params {
    const int32_t *prompt; /* [n_prompt], copied */
    int n_prompt;
    int max_new_tokens;
    struct wd_sampling_params sampling;
    uint64_t seed;
    int n_stop_ids; /* eos and stop token ids; generation stops after emitting one */
    int32_t stop_ids[WD_MAX_STOP_IDS];
    int ignore_eos;   /* keep going through stop ids (benchmarks) */
    int top_logprobs; /* 0..WD_MAX_TOP_LOGPROBS most likely tokens reported per step */
    uint64_t id;      /* the caller's id (the router's request id); 0 = the scheduler picks */
    void *user;       /* the caller's pointer, handed back in callbacks; never touched */
};

enum wd_request_state {
    WD_REQ_WAITING = 0, /* queued for pages and a batch slot */
    WD_REQ_RESERVED,    /* decode: pages reserved, waiting for its KV to arrive (activate) */
    WD_REQ_RUNNING,     /* prefilling or decoding in the batch */
    WD_REQ_PREFILLED,   /* prefill: prompt done, pages held until release */
    WD_REQ_FINISHED,
};

struct wd_request {
    uint64_t id;
    void *user;
    enum wd_request_state state;
    struct wd_request_params params; /* params.prompt points into tokens */
    int32_t *tokens;                 /* [n_prompt + max_new_tokens] prompt, then generated ids */
    float *logprobs;                 /* [max_new_tokens] logprob of each generated id */
    int n_tokens;                    /* prompt + generated so far */
    int n_cached;                    /* leading tokens whose KV is in the cache */
    int32_t *pages;                  /* [n_pages] reserved KV pages, in sequence order */
    int n_pages;
    uint64_t rng[4];
    enum wd_finish_reason finish;
    const char *error; /* WD_FINISH_ERROR: why (static text) */
    /* The step's top logprobs (params.top_logprobs of them, best first), valid during the
     * token callback. */
    int32_t top_ids[WD_MAX_TOP_LOGPROBS];
    float top_logprobs[WD_MAX_TOP_LOGPROBS];
    struct wd_request *next; /* queue link */
};

static inline int wd_request_n_generated(const struct wd_request *r)
{
    return r->n_tokens - r->params.n_prompt;
}

#endif
