/* Continuous batching: admission, batch building, sampling, completion. */
#include "common/sched/scheduler.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "common/util/log.h"

struct wd_scheduler {
    struct wd_scheduler_config cfg;
    struct wd_model *model;
    struct wd_kv_pool *kv;
    wd_scheduler_token_fn on_token;
    void *ctx;
    uint64_t next_id;

    struct wd_request *wait_head, *wait_tail;
    int n_waiting;
    struct wd_request **running; /* [max_running_requests] in admission order */
    int n_running;

    /* Batch arrays, sized once from the model limits. */
    int max_tokens, max_logits;
    int32_t *ids, *tok_seq, *tok_pos, *logit_rows; /* [max_tokens] x3, [max_logits] */
    struct wd_attn_seq *seqs;                      /* [max_running_requests] */
    struct wd_request **sampled;                   /* [max_logits] */
    int *take;                                     /* [max_running_requests] */
    float *logits;                                 /* [max_logits, vocab] */
    float *sample_f;                               /* [2 * vocab] */
    int32_t *sample_i;                             /* [vocab] */
};

static int pages_for(const struct wd_scheduler *s, int n_tokens)
{
    int ps = s->kv->cfg.page_size;
    return (n_tokens + ps - 1) / ps;
}

void wd_scheduler_model_limits(const struct wd_scheduler_config *cfg, int max_prompt,
                               int *max_batch_tokens_p, int *max_logit_rows_p)
{
    int prefill = cfg->chunked_prefill_size > 0 ? cfg->chunked_prefill_size : max_prompt;
    if (prefill < 1)
        prefill = 1;
    *max_batch_tokens_p = prefill + cfg->max_running_requests;
    *max_logit_rows_p = cfg->max_running_requests;
}

enum wd_status wd_scheduler_create(const struct wd_scheduler_config *cfg, struct wd_model *model,
                                   struct wd_kv_pool *kv, wd_scheduler_token_fn on_token, void *ctx,
                                   struct wd_scheduler **sched_p, struct wd_error *err)
{
    if (cfg->max_running_requests <= 0 || cfg->context_length <= 0)
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
    s->max_logits = cfg->max_running_requests;
    size_t R = (size_t)cfg->max_running_requests, T = (size_t)s->max_tokens;
    size_t V = (size_t)model->cfg.vocab_size;
    s->running = calloc(R, sizeof(*s->running));
    s->ids = malloc(T * sizeof(int32_t));
    s->tok_seq = malloc(T * sizeof(int32_t));
    s->tok_pos = malloc(T * sizeof(int32_t));
    s->logit_rows = malloc(R * sizeof(int32_t));
    s->seqs = calloc(R, sizeof(*s->seqs));
    s->sampled = calloc(R, sizeof(*s->sampled));
    s->take = calloc(R, sizeof(int));
    s->logits = malloc(R * V * sizeof(float));
    s->sample_f = malloc(2 * V * sizeof(float));
    s->sample_i = malloc(V * sizeof(int32_t));
    if (!s->running || !s->ids || !s->tok_seq || !s->tok_pos || !s->logit_rows || !s->seqs ||
        !s->sampled || !s->take || !s->logits || !s->sample_f || !s->sample_i) {
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

/* Tells the caller the request is over, returns its pages and frees it. */
static void finish_request(struct wd_scheduler *s, struct wd_request *r, int32_t token, float lp,
                           enum wd_finish_reason why)
{
    r->finish = why;
    r->state = WD_REQ_FINISHED;
    if (s->on_token)
        s->on_token(s->ctx, r, token, lp);
    if (r->n_pages > 0)
        wd_kv_pool_free(s->kv, r->pages, r->n_pages);
    r->n_pages = 0;
    request_free(r);
}

static void remove_running(struct wd_scheduler *s, int i)
{
    memmove(&s->running[i], &s->running[i + 1], (size_t)(s->n_running - i - 1) * sizeof(void *));
    s->n_running--;
}

void wd_scheduler_destroy(struct wd_scheduler *s)
{
    if (!s)
        return;
    while (s->n_running > 0) {
        struct wd_request *r = s->running[s->n_running - 1];
        s->n_running--;
        finish_request(s, r, -1, 0.0f, WD_FINISH_ABORT);
    }
    while (s->wait_head) {
        struct wd_request *r = s->wait_head;
        s->wait_head = r->next;
        finish_request(s, r, -1, 0.0f, WD_FINISH_ABORT);
    }
    free(s->running);
    free(s->ids);
    free(s->tok_seq);
    free(s->tok_pos);
    free(s->logit_rows);
    free(s->seqs);
    free(s->sampled);
    free(s->take);
    free(s->logits);
    free(s->sample_f);
    free(s->sample_i);
    free(s);
}

enum wd_status wd_scheduler_add(struct wd_scheduler *s, const struct wd_request_params *p,
                                uint64_t *id_p, struct wd_error *err)
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
    int max_total = p->n_prompt + p->max_new_tokens;
    if (max_total > s->cfg.context_length)
        max_total = s->cfg.context_length;
    int need = pages_for(s, max_total);
    if (need > s->kv->cfg.n_pages)
        return wd_error_set(err, WD_ERR_NOMEM, "request: needs %d KV pages, the pool has %d in all",
                            need, s->kv->cfg.n_pages);

    struct wd_request *r = calloc(1, sizeof(*r));
    if (!r)
        return wd_error_set(err, WD_ERR_NOMEM, "request: out of memory");
    r->tokens = malloc((size_t)max_total * sizeof(int32_t));
    r->logprobs = calloc((size_t)p->max_new_tokens, sizeof(float));
    r->pages = malloc((size_t)need * sizeof(int32_t));
    if (!r->tokens || !r->logprobs || !r->pages) {
        request_free(r);
        return wd_error_set(err, WD_ERR_NOMEM, "request: out of memory");
    }
    r->id = s->next_id++;
    r->params = *p;
    memcpy(r->tokens, p->prompt, (size_t)p->n_prompt * sizeof(int32_t));
    r->params.prompt = r->tokens;
    r->n_tokens = p->n_prompt;
    wd_rng_seed(r->rng, p->seed);
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

enum wd_status wd_scheduler_abort(struct wd_scheduler *s, uint64_t id)
{
    for (int i = 0; i < s->n_running; i++) {
        struct wd_request *r = s->running[i];
        if (r->id == id) {
            remove_running(s, i);
            finish_request(s, r, -1, 0.0f, WD_FINISH_ABORT);
            return WD_OK;
        }
    }
    struct wd_request **pp = &s->wait_head, *prev = NULL;
    for (; *pp; prev = *pp, pp = &(*pp)->next) {
        struct wd_request *r = *pp;
        if (r->id != id)
            continue;
        *pp = r->next;
        if (s->wait_tail == r)
            s->wait_tail = prev;
        s->n_waiting--;
        finish_request(s, r, -1, 0.0f, WD_FINISH_ABORT);
        return WD_OK;
    }
    return WD_ERR_NOT_FOUND;
}

/* Moves waiting requests to running, FIFO, while slots and pages allow. */
static void admit(struct wd_scheduler *s)
{
    while (s->wait_head && s->n_running < s->cfg.max_running_requests) {
        struct wd_request *r = s->wait_head;
        int max_total = r->params.n_prompt + r->params.max_new_tokens;
        if (max_total > s->cfg.context_length)
            max_total = s->cfg.context_length;
        int need = pages_for(s, max_total);
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

static int is_stop(const struct wd_request *r, int32_t tok)
{
    if (r->params.ignore_eos)
        return 0;
    for (int i = 0; i < r->params.n_stop_ids; i++)
        if (r->params.stop_ids[i] == tok)
            return 1;
    return 0;
}

enum wd_status wd_scheduler_step(struct wd_scheduler *s, int *n_active_p, struct wd_error *err)
{
    admit(s);
    int n_tok = 0, n_seq = 0, n_log = 0, n_prefill = 0;
    int budget = s->cfg.chunked_prefill_size > 0 ? s->cfg.chunked_prefill_size : INT_MAX;
    /* Pass 0 takes the decoding requests (one token each), pass 1 the prefill chunks. */
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < s->n_running; i++) {
            struct wd_request *r = s->running[i];
            int pending = r->n_tokens - r->n_cached;
            int decoding = r->n_cached >= r->params.n_prompt;
            if (pending <= 0 || decoding != (pass == 0))
                continue;
            int take = pending;
            if (!decoding) {
                if (take > budget)
                    take = budget;
                if (take > s->max_tokens - n_tok)
                    take = s->max_tokens - n_tok;
                if (take <= 0)
                    continue;
                budget -= take;
                n_prefill += take;
            }
            for (int j = 0; j < take; j++) {
                s->ids[n_tok] = r->tokens[r->n_cached + j];
                s->tok_seq[n_tok] = n_seq;
                s->tok_pos[n_tok] = r->n_cached + j;
                n_tok++;
            }
            s->seqs[n_seq].page_table = r->pages;
            s->seqs[n_seq].n_ctx = r->n_cached + take;
            s->take[n_seq] = i;
            if (r->n_cached + take == r->n_tokens) {
                s->logit_rows[n_log] = n_tok - 1;
                s->sampled[n_log++] = r;
            }
            n_seq++;
        }
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
        };
        WD_CHECK(wd_model_forward(s->model, s->kv, &b, s->logits, err));
        for (int q = 0; q < n_seq; q++)
            s->running[s->take[q]]->n_cached = s->seqs[q].n_ctx;
    }

    int vocab = s->model->cfg.vocab_size;
    for (int i = 0; i < n_log; i++) {
        struct wd_request *r = s->sampled[i];
        float lp = 0.0f;
        int32_t tok = wd_sample_ref(s->logits + (size_t)i * (size_t)vocab, vocab,
                                    &r->params.sampling, r->rng, s->sample_f, s->sample_i, &lp);
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
            continue;
        }
        for (int j = 0; j < s->n_running; j++)
            if (s->running[j] == r) {
                remove_running(s, j);
                break;
            }
        finish_request(s, r, tok, lp, why);
    }
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
