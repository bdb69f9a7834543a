/* Continuous batching: admission, batch building, sampling, completion, the role verbs. */
#include "common/sched/scheduler.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "common/util/log.h"
#include "kernels/logprobs.h"
#include "kernels/logprobs_cpu.h"

struct wd_scheduler {
    struct wd_scheduler_config cfg;
    struct wd_model *model;
    struct wd_kv_pool *kv;
    wd_scheduler_token_fn on_token;
    void *ctx;
    uint64_t next_id;
    struct wd_u64map by_id; /* every live request */

    struct wd_request *wait_head, *wait_tail;
    int n_waiting;
    struct wd_request **running; /* [max_running_requests] in admission order */
    int n_running;
    int n_reserved, n_prefilled; /* held outside the batch (decode lease / prefill hold) */
    int rr;                      /* where the next capped decode pass starts (fairness) */

    /* Batch arrays, sized once from the model limits. */
    int max_tokens, max_logits;
    int32_t *ids, *tok_seq, *tok_pos, *logit_rows; /* [max_tokens] x3, [max_logits] */
    struct wd_attn_seq *seqs;                      /* [max_running_requests] */
    uint64_t *seq_ids;                             /* [max_running_requests] */
    struct wd_request **sampled;                   /* [max_logits] */
    int *take;                                     /* [max_running_requests] */
    float *logits;                                 /* [max_logits, vocab] */
    float *sample_f;                               /* [2 * vocab] */
    int32_t *sample_i;                             /* [vocab] */
    double *lse;      /* [max_running_requests] log-sum-exp of each sampled row */
    double *lse_part; /* [max_running_requests * wd_logsumexp_cpu_parts(vocab)] */
};

static int pages_for(const struct wd_scheduler *s, int n_tokens)
{
    int ps = s->kv->cfg.page_size;
    return (n_tokens + ps - 1) / ps;
}

/* Tokens a request may hold in all: prompt + output, capped by the context length. */
static int max_total(const struct wd_scheduler *s, const struct wd_request_params *p)
{
    /* A prefill-only server computes the prompt and samples one token it never caches. */
    long t = (long)p->n_prompt + (s->cfg.hold_after_prefill ? 1 : p->max_new_tokens);
    return t > s->cfg.context_length ? s->cfg.context_length : (int)t;
}

void wd_scheduler_model_limits(const struct wd_scheduler_config *cfg, int max_prompt,
                               int *max_batch_tokens_p, int *max_logit_rows_p)
{
    int prefill = cfg->chunked_prefill_size > 0 ? cfg->chunked_prefill_size : max_prompt;
    if (prefill < 1)
        prefill = 1;
    int tokens = prefill + cfg->max_running_requests;
    if (cfg->max_forward_tokens > 0 && tokens > cfg->max_forward_tokens)
        tokens = cfg->max_forward_tokens;
    *max_batch_tokens_p = tokens;
    *max_logit_rows_p = cfg->max_running_requests;
}

enum wd_status wd_scheduler_create(const struct wd_scheduler_config *cfg, struct wd_model *model,
                                   struct wd_kv_pool *kv, wd_scheduler_token_fn on_token, void *ctx,
                                   struct wd_scheduler **sched_p, struct wd_error *err)
{
    if (cfg->max_running_requests <= 0 || cfg->context_length <= 0 || cfg->max_forward_tokens < 0)
        return wd_error_set(err, WD_ERR_INVALID,
                            "scheduler: max_running_requests and context_length must be positive");
    if (model->opt.max_logit_rows < cfg->max_running_requests)
        return wd_error_set(err, WD_ERR_INVALID,
                            "scheduler: model returns %d logit rows, %d requests may run",
                            model->opt.max_logit_rows, cfg->max_running_requests);
    struct wd_scheduler *s = calloc(1, sizeof(*s));
    if (!s)
        return wd_error_set(err, WD_ERR_NOMEM, "scheduler: out of memory");
    s->cfg = *cfg;
    s->model = model;
    s->kv = kv;
    s->on_token = on_token;
    s->ctx = ctx;
    s->next_id = 1;
    s->max_tokens = model->opt.max_batch_tokens;
    if (cfg->max_forward_tokens > 0 && cfg->max_forward_tokens < s->max_tokens)
        s->max_tokens = cfg->max_forward_tokens;
    s->max_logits = cfg->max_running_requests;
    size_t R = (size_t)cfg->max_running_requests, T = (size_t)s->max_tokens;
    size_t V = (size_t)model->cfg.vocab_size;
    enum wd_status st = wd_u64map_init(&s->by_id, R * 2, err);
    s->running = calloc(R, sizeof(*s->running));
    s->ids = malloc(T * sizeof(int32_t));
    s->tok_seq = malloc(T * sizeof(int32_t));
    s->tok_pos = malloc(T * sizeof(int32_t));
    s->logit_rows = malloc(R * sizeof(int32_t));
    s->seqs = calloc(R, sizeof(*s->seqs));
    s->seq_ids = calloc(R, sizeof(*s->seq_ids));
    s->sampled = calloc(R, sizeof(*s->sampled));
    s->take = calloc(R, sizeof(int));
    s->logits = malloc(R * V * sizeof(float));
    s->sample_f = malloc(2 * V * sizeof(float));
    s->sample_i = malloc(V * sizeof(int32_t));
    s->lse = malloc(R * sizeof(double));
    s->lse_part = malloc(R * (size_t)wd_logsumexp_cpu_parts((int)V) * sizeof(double));
    if (st != WD_OK || !s->running || !s->ids || !s->tok_seq || !s->tok_pos || !s->logit_rows ||
        !s->seqs || !s->seq_ids || !s->sampled || !s->take || !s->logits || !s->sample_f ||
        !s->sample_i || !s->lse || !s->lse_part) {
        wd_scheduler_destroy(s);
        return wd_error_set(err, WD_ERR_NOMEM, "scheduler: out of memory");
    }
    *sched_p = s;
    return WD_OK;
}

static void request_free(struct wd_request *r)
{
    if (!r)
        return;
    free(r->tokens);
    free(r->logprobs);
    free(r->pages);
    free(r);
}

/* Forgets r: out of the id map, pages back to the pool, memory freed. */
static void drop_request(struct wd_scheduler *s, struct wd_request *r)
{
    wd_u64map_remove(&s->by_id, r->id);
    if (r->n_pages > 0 && wd_kv_pool_free(s->kv, r->pages, r->n_pages) != WD_OK)
        wd_log(WD_LOG_ERROR, "sched", "request %llu: its pages were not all held",
               (unsigned long long)r->id);
    r->n_pages = 0;
    request_free(r);
}

/* Tells the caller the request is over, returns its pages and frees it. */
static void finish_request(struct wd_scheduler *s, struct wd_request *r, int32_t token, float lp,
                           enum wd_finish_reason why)
{
    r->finish = why;
    r->state = WD_REQ_FINISHED;
    if (s->on_token)
        s->on_token(s->ctx, r, token, lp);
    drop_request(s, r);
}

static void remove_running(struct wd_scheduler *s, struct wd_request *r)
{
    for (int i = 0; i < s->n_running; i++)
        if (s->running[i] == r) {
            memmove(&s->running[i], &s->running[i + 1],
                    (size_t)(s->n_running - i - 1) * sizeof(void *));
            s->n_running--;
            return;
        }
    WD_ASSERT(0 && "request not running");
}

/* Takes r out of whatever list holds it (waiting queue, batch, held counts). */
static void unlink_request(struct wd_scheduler *s, struct wd_request *r)
{
    switch (r->state) {
    case WD_REQ_WAITING: {
        struct wd_request **pp = &s->wait_head, *prev = NULL;
        while (*pp != r) {
            prev = *pp;
            pp = &(*pp)->next;
        }
        *pp = r->next;
        if (s->wait_tail == r)
            s->wait_tail = prev;
        s->n_waiting--;
        break;
    }
    case WD_REQ_RUNNING:
        remove_running(s, r);
        break;
    case WD_REQ_RESERVED:
        s->n_reserved--;
        break;
    case WD_REQ_PREFILLED:
        s->n_prefilled--;
        break;
    case WD_REQ_FINISHED:
        WD_ASSERT(0 && "finished request still linked");
    }
    r->next = NULL;
}

void wd_scheduler_destroy(struct wd_scheduler *s)
{
    if (!s)
        return;
    /* Abort every live request through the map's slots (each abort removes one key). */
    for (size_t i = 0; s->by_id.slots && i < s->by_id.cap; i++)
        while (s->by_id.slots[i].key) {
            struct wd_request *r = s->by_id.slots[i].value;
            unlink_request(s, r);
            finish_request(s, r, -1, 0.0f, WD_FINISH_ABORT);
        }
    wd_u64map_cleanup(&s->by_id);
    free(s->running);
    free(s->ids);
    free(s->tok_seq);
    free(s->tok_pos);
    free(s->logit_rows);
    free(s->seqs);
    free(s->seq_ids);
    free(s->sampled);
    free(s->take);
    free(s->logits);
    free(s->sample_f);
    free(s->sample_i);
    free(s->lse);
    free(s->lse_part);
    free(s);
}

enum wd_status wd_scheduler_check(const struct wd_scheduler *s, const struct wd_request_params *p,
                                  struct wd_error *err)
{
    int vocab = s->model->cfg.vocab_size;
    if (p->n_prompt <= 0)
        return wd_error_set(err, WD_ERR_INVALID, "request: empty prompt");
    if (p->max_new_tokens <= 0)
        return wd_error_set(err, WD_ERR_INVALID, "request: max_new_tokens must be >= 1 (got %d)",
                            p->max_new_tokens);
    if (p->n_prompt >= s->cfg.context_length)
        return wd_error_set(err, WD_ERR_INVALID,
                            "request: prompt of %d tokens does not fit the context length %d",
                            p->n_prompt, s->cfg.context_length);
    if (p->n_stop_ids < 0 || p->n_stop_ids > WD_MAX_STOP_IDS)
        return wd_error_set(err, WD_ERR_INVALID, "request: at most %d stop ids", WD_MAX_STOP_IDS);
    if (p->top_logprobs < 0 || p->top_logprobs > WD_MAX_TOP_LOGPROBS)
        return wd_error_set(err, WD_ERR_INVALID, "request: top_logprobs %d is not in 0..%d",
                            p->top_logprobs, WD_MAX_TOP_LOGPROBS);
    for (int i = 0; i < p->n_prompt; i++)
        if (p->prompt[i] < 0 || p->prompt[i] >= vocab)
            return wd_error_set(err, WD_ERR_INVALID,
                                "request: token id %d at position %d is outside the vocabulary "
                                "[0, %d)",
                                p->prompt[i], i, vocab);
    /* Written so that NaN fails every test (a request can carry any float bits). */
    if (!(p->sampling.temperature >= 0) || !(p->sampling.top_p > 0 && p->sampling.top_p <= 1) ||
        !(p->sampling.min_p >= 0 && p->sampling.min_p <= 1))
        return wd_error_set(err, WD_ERR_INVALID,
                            "request: sampling needs temperature >= 0, 0 < top_p <= 1, "
                            "0 <= min_p <= 1");
    int need = pages_for(s, max_total(s, p));
    if (need > s->kv->cfg.n_pages)
        return wd_error_set(err, WD_ERR_NOMEM, "request: needs %d KV pages, the pool has %d in all",
                            need, s->kv->cfg.n_pages);
    if (p->id != 0 && wd_u64map_get(&s->by_id, p->id))
        return wd_error_set(err, WD_ERR_INVALID, "request: id %llu is already in use",
                            (unsigned long long)p->id);
    return WD_OK;
}

/* A checked request, allocated and in the id map, linked nowhere yet. */
static enum wd_status new_request(struct wd_scheduler *s, const struct wd_request_params *p,
                                  struct wd_request **r_p, struct wd_error *err)
{
    WD_CHECK(wd_scheduler_check(s, p, err));
    int total = max_total(s, p), need = pages_for(s, total);
    struct wd_request *r = calloc(1, sizeof(*r));
    if (!r)
        return wd_error_set(err, WD_ERR_NOMEM, "request: out of memory");
    r->tokens = malloc((size_t)total * sizeof(int32_t));
    r->logprobs = calloc((size_t)p->max_new_tokens, sizeof(float));
    r->pages = malloc((size_t)need * sizeof(int32_t));
    if (!r->tokens || !r->logprobs || !r->pages) {
        request_free(r);
        return wd_error_set(err, WD_ERR_NOMEM, "request: out of memory");
    }
    if (p->id != 0) {
        r->id = p->id;
    } else {
        while (wd_u64map_get(&s->by_id, s->next_id) || s->next_id == 0)
            s->next_id++;
        r->id = s->next_id++;
    }
    if (wd_u64map_put(&s->by_id, r->id, r) != WD_OK) {
        request_free(r);
        return wd_error_set(err, WD_ERR_NOMEM, "request: out of memory");
    }
    r->user = p->user;
    r->params = *p;
    memcpy(r->tokens, p->prompt, (size_t)p->n_prompt * sizeof(int32_t));
    r->params.prompt = r->tokens;
    r->n_tokens = p->n_prompt;
    wd_rng_seed(r->rng, p->seed);
    *r_p = r;
    return WD_OK;
}

enum wd_status wd_scheduler_add(struct wd_scheduler *s, const struct wd_request_params *p,
                                uint64_t *id_p, struct wd_error *err)
{
    struct wd_request *r = NULL;
    WD_CHECK(new_request(s, p, &r, err));
    r->state = WD_REQ_WAITING;
    if (s->wait_tail)
        s->wait_tail->next = r;
    else
        s->wait_head = r;
    s->wait_tail = r;
    s->n_waiting++;
    *id_p = r->id;
    return WD_OK;
}

enum wd_status wd_scheduler_reserve(struct wd_scheduler *s, const struct wd_request_params *p,
                                    uint64_t *id_p, struct wd_error *err)
{
    WD_CHECK(wd_scheduler_check(s, p, err));
    int need = pages_for(s, max_total(s, p));
    if (s->n_running + s->n_reserved >= s->cfg.max_running_requests)
        return wd_error_set(err, WD_ERR_NOMEM,
                            "reserve: all %d batch slots are taken (running or reserved)",
                            s->cfg.max_running_requests);
    if (need > wd_kv_pool_n_free(s->kv))
        return wd_error_set(err, WD_ERR_NOMEM, "reserve: needs %d KV pages, %d are free", need,
                            wd_kv_pool_n_free(s->kv));
    struct wd_request *r = NULL;
    WD_CHECK(new_request(s, p, &r, err));
    WD_ASSERT(wd_kv_pool_reserve(s->kv, need, r->pages) == WD_OK);
    r->n_pages = need;
    r->state = WD_REQ_RESERVED;
    s->n_reserved++;
    *id_p = r->id;
    return WD_OK;
}

static int is_stop(const struct wd_request *r, int32_t tok)
{
    if (r->params.ignore_eos)
        return 0;
    for (int i = 0; i < r->params.n_stop_ids; i++)
        if (r->params.stop_ids[i] == tok)
            return 1;
    return 0;
}

/* Appends a generated token and reports it; finishes the request when it is the last. */
static void emit_token(struct wd_scheduler *s, struct wd_request *r, int32_t tok, float lp)
{
    int gen = wd_request_n_generated(r);
    r->logprobs[gen] = lp;
    r->tokens[r->n_tokens++] = tok;
    enum wd_finish_reason why = WD_FINISH_NONE;
    if (is_stop(r, tok))
        why = WD_FINISH_STOP;
    else if (gen + 1 >= r->params.max_new_tokens || r->n_tokens >= s->cfg.context_length)
        why = WD_FINISH_LENGTH;
    if (why == WD_FINISH_NONE) {
        if (s->on_token)
            s->on_token(s->ctx, r, tok, lp);
        return;
    }
    unlink_request(s, r);
    finish_request(s, r, tok, lp, why);
}

enum wd_status wd_scheduler_activate(struct wd_scheduler *s, uint64_t id, int32_t first_token,
                                     float logprob, struct wd_error *err)
{
    struct wd_request *r = wd_u64map_get(&s->by_id, id);
    if (!r)
        return wd_error_set(err, WD_ERR_NOT_FOUND, "activate: no request %llu",
                            (unsigned long long)id);
    if (r->state != WD_REQ_RESERVED)
        return wd_error_set(err, WD_ERR_INVALID, "activate: request %llu is not reserved",
                            (unsigned long long)id);
    if (first_token < 0 || first_token >= s->model->cfg.vocab_size)
        return wd_error_set(err, WD_ERR_INVALID, "activate: first token %d is outside [0, %d)",
                            first_token, s->model->cfg.vocab_size);
    WD_ASSERT(wd_kv_pool_commit(s->kv, r->pages, r->n_pages) == WD_OK);
    s->n_reserved--;
    r->state = WD_REQ_RUNNING;
    r->n_cached = r->params.n_prompt;
    s->running[s->n_running++] = r; /* reserve kept a slot free for it */
    emit_token(s, r, first_token, logprob);
    return WD_OK;
}

enum wd_status wd_scheduler_release(struct wd_scheduler *s, uint64_t id)
{
    struct wd_request *r = wd_u64map_get(&s->by_id, id);
    if (!r)
        return WD_ERR_NOT_FOUND;
    if (r->state != WD_REQ_PREFILLED)
        return WD_ERR_INVALID;
    unlink_request(s, r);
    r->state = WD_REQ_FINISHED;
    drop_request(s, r);
    return WD_OK;
}

enum wd_status wd_scheduler_abort(struct wd_scheduler *s, uint64_t id)
{
    struct wd_request *r = wd_u64map_get(&s->by_id, id);
    if (!r)
        return WD_ERR_NOT_FOUND;
    unlink_request(s, r);
    finish_request(s, r, -1, 0.0f, WD_FINISH_ABORT);
    return WD_OK;
}

const struct wd_request *wd_scheduler_find(const struct wd_scheduler *s, uint64_t id)
{
    return wd_u64map_get(&s->by_id, id);
}

/* Moves waiting requests to running, FIFO, while slots and pages allow. */
static void admit(struct wd_scheduler *s)
{
    while (s->wait_head && s->n_running + s->n_reserved < s->cfg.max_running_requests) {
        struct wd_request *r = s->wait_head;
        int need = pages_for(s, max_total(s, &r->params));
        if (wd_kv_pool_alloc(s->kv, need, r->pages) != WD_OK)
            break; /* head-of-line waits for memory: keeps FIFO fairness */
        r->n_pages = need;
        s->wait_head = r->next;
        if (!s->wait_head)
            s->wait_tail = NULL;
        r->next = NULL;
        s->n_waiting--;
        r->state = WD_REQ_RUNNING;
        s->running[s->n_running++] = r;
    }
}

/* Samples request r from its logits row (lse: the row's log-sum-exp): its next token, or
 * an error when the model produced non-finite logits (a broken checkpoint must not stream
 * garbage). */
static void sample_one(struct wd_scheduler *s, struct wd_request *r, const float *row, double lse)
{
    int vocab = s->model->cfg.vocab_size;
    if (!wd_logits_finite_ref(row, vocab)) {
        r->error = "the model produced non-finite logits (NaN or Inf): check the checkpoint's "
                   "weights";
        wd_log(WD_LOG_ERROR, "sched", "request %llu: %s", (unsigned long long)r->id, r->error);
        unlink_request(s, r);
        finish_request(s, r, -1, 0.0f, WD_FINISH_ERROR);
        return;
    }
    int32_t tok =
        wd_sample_ref(row, vocab, &r->params.sampling, r->rng, s->sample_f, s->sample_i, NULL);
    float lp = (float)((double)row[tok] - lse);
    if (r->params.top_logprobs > 0)
        wd_logprobs_top_ref(row, vocab, r->params.top_logprobs, r->top_ids, r->top_logprobs);
    if (s->cfg.hold_after_prefill) {
        /* Prefill's job ends at the first token: the request keeps its pages for the KV
         * transfer and waits for release. */
        r->logprobs[0] = lp;
        r->tokens[r->n_tokens++] = tok;
        remove_running(s, r);
        r->state = WD_REQ_PREFILLED;
        s->n_prefilled++;
        if (s->on_token)
            s->on_token(s->ctx, r, tok, lp);
        return;
    }
    emit_token(s, r, tok, lp);
}

/* Appends r's next take tokens (from n_cached) to the batch as sequence n_seq. */
static void add_to_batch(struct wd_scheduler *s, struct wd_request *r, int i, int take, int *n_tok,
                         int n_seq, int *n_log)
{
    for (int j = 0; j < take; j++) {
        s->ids[*n_tok] = r->tokens[r->n_cached + j];
        s->tok_seq[*n_tok] = n_seq;
        s->tok_pos[*n_tok] = r->n_cached + j;
        (*n_tok)++;
    }
    s->seq_ids[n_seq] = r->id;
    s->seqs[n_seq].page_table = r->pages;
    s->seqs[n_seq].n_ctx = r->n_cached + take;
    s->take[n_seq] = i;
    if (r->n_cached + take == r->n_tokens) {
        s->logit_rows[*n_log] = *n_tok - 1;
        s->sampled[(*n_log)++] = r;
    }
}

enum wd_status wd_scheduler_step(struct wd_scheduler *s, int *n_active_p, struct wd_error *err)
{
    admit(s);
    int n_tok = 0, n_seq = 0, n_log = 0, n_prefill = 0;
    int budget = s->cfg.chunked_prefill_size > 0 ? s->cfg.chunked_prefill_size : INT_MAX;
    /* Decode tokens first (one each), starting at a rotating index so that a cap on the
     * forward's size delays every request in turn; then prompt chunks. */
    int n_dec = 0;
    for (int k = 0; k < s->n_running && n_tok < s->max_tokens; k++) {
        int i = (s->rr + k) % s->n_running;
        struct wd_request *r = s->running[i];
        if (r->n_cached < r->params.n_prompt || r->n_tokens - r->n_cached <= 0)
            continue;
        add_to_batch(s, r, i, 1, &n_tok, n_seq++, &n_log);
        n_dec++;
    }
    if (s->n_running > 0 && n_tok >= s->max_tokens)
        s->rr = (s->rr + n_dec) % s->n_running;
    for (int i = 0; i < s->n_running; i++) {
        struct wd_request *r = s->running[i];
        int pending = r->n_tokens - r->n_cached;
        if (r->n_cached >= r->params.n_prompt || pending <= 0)
            continue;
        int take = pending < budget ? pending : budget;
        if (take > s->max_tokens - n_tok)
            take = s->max_tokens - n_tok;
        if (take <= 0)
            continue;
        budget -= take;
        n_prefill += take;
        add_to_batch(s, r, i, take, &n_tok, n_seq++, &n_log);
    }
    if (n_tok > 0 || s->cfg.lockstep) {
        struct wd_forward_batch b = {
            .n_tokens = n_tok,
            .ids = s->ids,
            .tok_seq = s->tok_seq,
            .tok_pos = s->tok_pos,
            .n_seqs = n_seq,
            .seqs = s->seqs,
            .n_logits = n_log,
            .logit_rows = s->logit_rows,
            .is_decode = n_prefill == 0,
            .seq_ids = s->seq_ids,
        };
        WD_CHECK(wd_model_forward(s->model, s->kv, &b, s->logits, err));
        for (int q = 0; q < n_seq; q++)
            s->running[s->take[q]]->n_cached = s->seqs[q].n_ctx;
    }

    size_t vocab = (size_t)s->model->cfg.vocab_size;
    /* The chosen tokens' logprobs need every row's log-sum-exp: one threaded pass for all. */
    wd_logsumexp_cpu(s->logits, n_log, (int)vocab, s->lse_part, s->lse, s->model->tp);
    for (int i = 0; i < n_log; i++)
        sample_one(s, s->sampled[i], s->logits + (size_t)i * vocab, s->lse[i]);
    if (n_active_p)
        *n_active_p = s->n_running + s->n_waiting;
    return WD_OK;
}

int wd_scheduler_n_running(const struct wd_scheduler *s)
{
    return s->n_running;
}

int wd_scheduler_n_waiting(const struct wd_scheduler *s)
{
    return s->n_waiting;
}

void wd_scheduler_stats(const struct wd_scheduler *s, struct wd_scheduler_stats *st)
{
    memset(st, 0, sizeof(*st));
    st->n_running = s->n_running;
    st->n_waiting = s->n_waiting;
    st->n_reserved = s->n_reserved;
    st->n_prefilled = s->n_prefilled;
    for (const struct wd_request *r = s->wait_head; r; r = r->next)
        st->queued_prefill_tokens += r->params.n_prompt;
    for (int i = 0; i < s->n_running; i++)
        if (s->running[i]->n_cached < s->running[i]->params.n_prompt)
            st->queued_prefill_tokens += s->running[i]->params.n_prompt - s->running[i]->n_cached;
    st->free_pages = wd_kv_pool_n_free(s->kv);
    st->total_pages = s->kv->cfg.n_pages;
}
