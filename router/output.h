/*
 * wd_output: one request's output as it arrives from a worker: the token ids (and their
 * logprobs), the text the incremental detokenizer makes of them, stop strings applied with
 * hold-back, the finish reason and the completion token count.
 *
 * The text only grows, except when a stop string matches: then it is cut where the match
 * starts (or after it, with no_stop_trim) and the output is finished. "released" is the
 * prefix that can no longer change and may go to the client; a streaming caller sends
 * text[sent, released) after each push and marks it sent.
 *
 * A stop token (eos or a stop_token_ids entry) that ends the generation is counted and
 * kept in the ids, but its text is not added (SGLang's trim; no_stop_trim keeps it).
 * Owned by one request on the event loop; init/cleanup (embedded).
 */
#ifndef WD_ROUTER_OUTPUT_H
#define WD_ROUTER_OUTPUT_H

#include <stddef.h>
#include <stdint.h>

#include "common/tokenizer/tokenizer.h"
#include "router/buf.h"
#include "router/stop_match.h"

enum wd_output_finish {
    WD_OUTPUT_RUNNING = 0,
    WD_OUTPUT_LENGTH,      /* max tokens or the context length */
    WD_OUTPUT_STOP_TOKEN,  /* eos or a stop token id */
    WD_OUTPUT_STOP_STRING, /* a stop string matched here */
};

struct wd_output_config {
    const struct wd_tokenizer *tok;
    int skip_special_tokens;
    const char *const *stop; /* [n_stop] borrowed for the output's life */
    const size_t *stop_len;
    int n_stop;
    const int32_t *stop_ids; /* [n_stop_ids] the ids the worker stops at (eos included) */
    int n_stop_ids;
    int no_stop_trim;
    int logprobs;     /* keep each token's logprob */
    int top_logprobs; /* and this many alternatives per token */
};

struct wd_output {
    struct wd_output_config cfg;
    struct wd_detok *detok;
    struct wd_stop_match stop;
    struct wd_buf text;
    size_t released;  /* text[0, released) is final */
    size_t sent;      /* the caller's mark, <= released */
    int32_t *ids;     /* [n] accepted tokens (the completion tokens) */
    float *lps;       /* [n] when logprobs */
    int32_t *top_ids; /* [n][top_logprobs] when top_logprobs > 0 (-1 pads) */
    float *top_lps;
    int n, cap;
    enum wd_output_finish finish;
    int stop_string;    /* index of the matched stop string, -1 */
    int32_t stop_token; /* the stop token id, -1 */
};

enum wd_status wd_output_init(struct wd_output *o, const struct wd_output_config *cfg);
void wd_output_cleanup(struct wd_output *o);

/* Adds n tokens of one worker chunk. lps may be NULL; top_ids/top_lps ([n][n_top], -1 ids
 * ignored) may be NULL. worker_finish is the chunk's finish (RUNNING, LENGTH or
 * STOP_TOKEN). Tokens after a stop-string match are dropped. Returns WD_ERR_NOMEM on
 * allocation failure (the request should then fail). */
enum wd_status wd_output_push(struct wd_output *o, const int32_t *ids, const float *lps,
                              const int32_t *top_ids, const float *top_lps, int n_top, int n,
                              enum wd_output_finish worker_finish);
/* 1 when finished (by the worker or by a stop string). */
int wd_output_is_finished(const struct wd_output *o);
/* Released text not yet marked sent. */
const char *wd_output_unsent(const struct wd_output *o, size_t *n_p);
void wd_output_mark_sent(struct wd_output *o);

#endif
