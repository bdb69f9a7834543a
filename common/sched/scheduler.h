/*
 * wd_scheduler: continuous batching over one model and one KV pool.
 *
 * Each wd_scheduler_step builds one ragged batch: one token for every running
 * request that is decoding, then prompt chunks of requests still prefilling,
 * up to chunked_prefill_size prompt tokens per step (chunked prefill) and at most
 * max_forward_tokens tokens in all, runs the forward, samples the next token of every
 * request whose whole context is now cached, and reports new tokens and finished
 * requests through the callback. Admission is FIFO and takes all the pages a request can
 * need (prompt + max_new_tokens) up front, so a running request never stalls for
 * memory; requests that do not fit wait. Abort frees a request's pages at once.
 *
 * The roles' verbs: decode `reserve`s pages for a request whose KV another server will
 * write, then `activate`s it (KV landed, first token known) so it joins the batch with
 * its prompt already cached; prefill (hold_after_prefill) keeps a request's pages after
 * its first token until `release` (the KV transfer is flushed). Requests carry the
 * caller's id (looked up in O(1)) and a user pointer.
 *
 * The scheduler reads no clock: deadlines and leases are enforced by whoever owns the
 * request's lifetime (the server front-end), which aborts. So ranks running the same
 * commands make the same decisions. Single-threaded: the owner calls every function from
 * one thread.
 */
#ifndef WD_SCHED_SCHEDULER_H
#define WD_SCHED_SCHEDULER_H

#include "common/kv/kv_pool.h"
#include "common/model/model.h"
#include "common/sched/request.h"
#include "common/util/u64map.h"

struct wd_scheduler_config {
    int max_running_requests;
    int chunked_prefill_size; /* prompt tokens per step; <= 0 disables chunking */
    int max_forward_tokens;   /* most tokens of one forward, decode included; 0 = no cap
                                 (DeepEP low-latency mode's per-rank capacity sets one) */
    int context_length;       /* most tokens (prompt + output) of one request */
    int lockstep;             /* run a forward every step, empty when there is no work (an
                                 attention-DP rank joining the other ranks' MoE collectives) */
    int hold_after_prefill;   /* prefill role: after its first token a request keeps its pages
                                 (state PREFILLED) until wd_scheduler_release */
};

/* Called for every generated token (finish != NONE on the last one) and once with
 * token -1 for a request that finishes without a new token (abort, error). With
 * hold_after_prefill the first token comes with state WD_REQ_PREFILLED and finish NONE. */
typedef void (*wd_scheduler_token_fn)(void *ctx, const struct wd_request *req, int32_t token,
                                      float logprob);

struct wd_scheduler_stats {
    int n_running, n_waiting, n_reserved, n_prefilled;
    long queued_prefill_tokens; /* prompt tokens of waiting and prefilling requests not cached */
    int free_pages, total_pages;
};

struct wd_scheduler;

/* Borrows model and kv (they must outlive the scheduler). */
enum wd_status wd_scheduler_create(const struct wd_scheduler_config *cfg, struct wd_model *model,
                                   struct wd_kv_pool *kv, wd_scheduler_token_fn on_token, void *ctx,
                                   struct wd_scheduler **sched_p, struct wd_error *err);
/* Aborts whatever is left (the callback sees each) and frees everything. */
void wd_scheduler_destroy(struct wd_scheduler *sched);

/* Checks a request (empty prompt, ids out of vocabulary, prompt + max_new_tokens beyond
 * the context length, more pages than the pool has, bad sampling values, an id in use). */
enum wd_status wd_scheduler_check(const struct wd_scheduler *sched,
                                  const struct wd_request_params *params, struct wd_error *err);
/* Queues a request (checked as above) and returns its id (params->id, or a new one). */
enum wd_status wd_scheduler_add(struct wd_scheduler *sched, const struct wd_request_params *params,
                                uint64_t *id_p, struct wd_error *err);
/* Decode: checks the request and reserves its pages now (state RESERVED; it is not
 * scheduled). Reserved requests count against max_running_requests. WD_ERR_NOMEM when the
 * pages or a batch slot are not free (nothing is taken). The request's page ids are then
 * wd_scheduler_find(id)->pages. */
enum wd_status wd_scheduler_reserve(struct wd_scheduler *sched,
                                    const struct wd_request_params *params, uint64_t *id_p,
                                    struct wd_error *err);
/* Decode: the KV of a reserved request's whole prompt is in its pages and its first token
 * is known: it joins the running batch (the token is reported now, and may finish it).
 * WD_ERR_NOT_FOUND when unknown, WD_ERR_INVALID when not reserved or the token is bad. */
enum wd_status wd_scheduler_activate(struct wd_scheduler *sched, uint64_t id, int32_t first_token,
                                     float logprob, struct wd_error *err);
/* Prefill: frees a PREFILLED request's pages and the request (no callback).
 * WD_ERR_NOT_FOUND when unknown, WD_ERR_INVALID when it is not prefilled. */
enum wd_status wd_scheduler_release(struct wd_scheduler *sched, uint64_t id);
/* Aborts a request in any state: pages are freed now, the callback sees token -1 and
 * finish ABORT. WD_ERR_NOT_FOUND if unknown. */
enum wd_status wd_scheduler_abort(struct wd_scheduler *sched, uint64_t id);
/* The live request with this id, or NULL. */
const struct wd_request *wd_scheduler_find(const struct wd_scheduler *sched, uint64_t id);

/* Runs one batch. *n_active_p = requests still waiting or running afterwards (reserved and
 * prefilled requests are not active work). */
enum wd_status wd_scheduler_step(struct wd_scheduler *sched, int *n_active_p, struct wd_error *err);
int wd_scheduler_n_running(const struct wd_scheduler *sched);
int wd_scheduler_n_waiting(const struct wd_scheduler *sched);
void wd_scheduler_stats(const struct wd_scheduler *sched, struct wd_scheduler_stats *st);

/* The model's max_batch_tokens and max_logit_rows this config needs for prompts up to
 * max_prompt tokens. */
void wd_scheduler_model_limits(const struct wd_scheduler_config *cfg, int max_prompt,
                               int *max_batch_tokens_p, int *max_logit_rows_p);

#endif
