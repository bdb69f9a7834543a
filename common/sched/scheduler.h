/*
 * wd_scheduler: continuous batching over one model and one KV pool.
 *
 * Each wd_scheduler_step builds one ragged batch: one token for every running
 * request that is decoding, then prompt chunks of requests still prefilling,
 * up to chunked_prefill_size prompt tokens per step (chunked prefill), runs
 * the forward, samples the next token of every request whose whole context is
 * now cached, and reports new tokens and finished requests through the
 * callback. Admission is FIFO and reserves all the pages a request can need
 * (prompt + max_new_tokens) up front, so a running request never stalls for
 * memory; requests that do not fit wait. Abort frees a request's pages at
 * once. Single-threaded: the owner calls add/abort/step from one thread.
 */
#ifndef WD_SCHED_SCHEDULER_H
#define WD_SCHED_SCHEDULER_H

#include "common/kv/kv_pool.h"
#include "common/model/model.h"
#include "common/sched/request.h"

struct wd_scheduler_config {
    int max_running_requests;
    int chunked_prefill_size; /* prompt tokens per step; <= 0 disables chunking */
    int context_length;       /* most tokens (prompt + output) of one request */
    int lockstep;             /* run a forward every step, empty when there is no work (an
                                 attention-DP rank joining the other ranks' MoE collectives) */
};

/* Called for every generated token (finish != NONE on the last one) and once with
 * token -1 for a request that finishes without a new token (abort). */
typedef void (*wd_scheduler_token_fn)(void *ctx, const struct wd_request *req, int32_t token,
                                      float logprob);

struct wd_scheduler;

/* Borrows model and kv (they must outlive the scheduler). */
enum wd_status wd_scheduler_create(const struct wd_scheduler_config *cfg, struct wd_model *model,
                                   struct wd_kv_pool *kv, wd_scheduler_token_fn on_token, void *ctx,
                                   struct wd_scheduler **sched_p, struct wd_error *err);
/* Aborts whatever is left (the callback sees each) and frees everything. */
void wd_scheduler_destroy(struct wd_scheduler *sched);

/* Queues a request; checks it (empty prompt, ids out of vocabulary, prompt + max_new_tokens
 * beyond the context length, more pages than the pool has) and returns its id. */
enum wd_status wd_scheduler_add(struct wd_scheduler *sched, const struct wd_request_params *params,
                                uint64_t *id_p, struct wd_error *err);
/* Aborts a waiting or running request: pages are freed now. WD_ERR_NOT_FOUND if unknown. */
enum wd_status wd_scheduler_abort(struct wd_scheduler *sched, uint64_t id);
/* Runs one batch. *n_active_p = requests still waiting or running afterwards. */
enum wd_status wd_scheduler_step(struct wd_scheduler *sched, int *n_active_p, struct wd_error *err);
int wd_scheduler_n_running(const struct wd_scheduler *sched);
int wd_scheduler_n_waiting(const struct wd_scheduler *sched);

/* The model's max_batch_tokens and max_logit_rows this config needs for prompts up to
 * max_prompt tokens. */
void wd_scheduler_model_limits(const struct wd_scheduler_config *cfg, int max_prompt,
                               int *max_batch_tokens_p, int *max_logit_rows_p);

#endif
