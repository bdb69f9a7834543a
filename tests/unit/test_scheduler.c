/*
 * Continuous batching on the tiny Qwen3-MoE fixture: admission limits, KV pages
 * reserved and returned, abort of waiting and running requests, bad requests
 * refused with a message, stop ids, and the seeded sampler's determinism.
 */
#include <math.h>
#include <string.h>

#include "common/kv/kv_pool.h"
#include "common/model/model.h"
#include "common/sched/scheduler.h"
#include "tests/unit/wd_test.h"

#define MAXR 16

struct log {
    int n_tokens[MAXR + 1];
    int32_t last[MAXR + 1];
    int32_t out[MAXR + 1][64];
    enum wd_finish_reason finish[MAXR + 1];
    int n_finished;
};

static void on_token(void *ctx, const struct wd_request *req, int32_t token, float lp)
{
    struct log *l = ctx;
    int i = (int)req->id;
    if (i > MAXR)
        return;
    if (token >= 0) {
        if (l->n_tokens[i] < 64)
            l->out[i][l->n_tokens[i]] = token;
        l->n_tokens[i]++;
        l->last[i] = token;
    }
    if (req->finish != WD_FINISH_NONE) {
        l->finish[i] = req->finish;
        l->n_finished++;
    }
}

struct fixture {
    struct wd_model *model;
    struct wd_kv_pool *kv;
    struct wd_scheduler *sched;
    struct log log;
};

static int setup(struct fixture *f, int n_pages, int max_running, int chunk)
{
    memset(f, 0, sizeof(*f));
    struct wd_model_options opt = {
        .max_batch_tokens = 128, .max_logit_rows = max_running, .n_threads = 1};
    struct wd_error err = {0};
    if (wd_model_create(wd_test_src("tests/fixtures/tiny-qwen3-moe/fp32"), &opt, &f->model, &err) !=
        WD_OK) {
        wd_test_fail(__FILE__, __LINE__, "model: %s", err.msg);
        return -1;
    }
    struct wd_kv_pool_config kc = {
        .n_layers = f->model->cfg.n_layers, .page_size = 4, .n_pages = n_pages};
    wd_model_kv_geometry(f->model, &kc.k_row, &kc.v_row);
    WD_EXPECT_EQ_INT(wd_kv_pool_create(&kc, &f->kv, &err), WD_OK);
    struct wd_scheduler_config sc = {
        .max_running_requests = max_running, .chunked_prefill_size = chunk, .context_length = 64};
    WD_EXPECT_EQ_INT(wd_scheduler_create(&sc, f->model, f->kv, on_token, &f->log, &f->sched, &err),
                     WD_OK);
    return f->sched ? 0 : -1;
}

static void teardown(struct fixture *f)
{
    wd_scheduler_destroy(f->sched);
    if (f->kv)
        WD_EXPECT_EQ_INT(wd_kv_pool_n_free(f->kv), f->kv->cfg.n_pages);
    wd_kv_pool_destroy(f->kv);
    wd_model_destroy(f->model);
}

static const int32_t k_prompt[] = {5, 17, 99, 3, 250, 7, 8, 41, 12};

static struct wd_request_params params(int n_prompt, int max_new)
{
    struct wd_request_params p = {.prompt = k_prompt,
                                  .n_prompt = n_prompt,
                                  .max_new_tokens = max_new,
                                  .sampling = {.temperature = 0, .top_p = 1},
                                  .ignore_eos = 1};
    return p;
}

static int run_all(struct fixture *f)
{
    int active = 1, steps = 0;
    struct wd_error err = {0};
    while (active > 0 && steps < 1000) {
        if (wd_scheduler_step(f->sched, &active, &err) != WD_OK) {
            wd_test_fail(__FILE__, __LINE__, "step: %s", err.msg);
            return -1;
        }
        steps++;
    }
    return steps;
}

static void test_admission_and_pages(void)
{
    struct fixture f;
    if (setup(&f, 8, 2, 4))
        return;
    struct wd_request_params p = params(9, 6); /* 15 tokens -> 4 pages of 4 */
    uint64_t ids[3];
    for (int i = 0; i < 3; i++)
        WD_EXPECT_EQ_INT(wd_scheduler_add(f.sched, &p, &ids[i], NULL), WD_OK);
    int active = 0;
    wd_scheduler_step(f.sched, &active, NULL);
    /* Two run (8 pages reserved), the third waits for memory and a slot. */
    WD_EXPECT_EQ_INT(wd_scheduler_n_running(f.sched), 2);
    WD_EXPECT_EQ_INT(wd_scheduler_n_waiting(f.sched), 1);
    WD_EXPECT_EQ_INT(wd_kv_pool_n_free(f.kv), 0);
    run_all(&f);
    for (int i = 0; i < 3; i++) {
        WD_EXPECT_EQ_INT(f.log.n_tokens[ids[i]], 6);
        WD_EXPECT_EQ_INT(f.log.finish[ids[i]], WD_FINISH_LENGTH);
    }
    /* Same prompt, greedy: the same tokens whatever the batch and chunking. */
    WD_EXPECT(memcmp(f.log.out[ids[0]], f.log.out[ids[2]], 6 * sizeof(int32_t)) == 0);
    teardown(&f);
}

static void test_abort(void)
{
    struct fixture f;
    if (setup(&f, 16, 1, 0))
        return;
    struct wd_request_params p = params(9, 20);
    uint64_t a, b;
    WD_EXPECT_EQ_INT(wd_scheduler_add(f.sched, &p, &a, NULL), WD_OK);
    WD_EXPECT_EQ_INT(wd_scheduler_add(f.sched, &p, &b, NULL), WD_OK);
    int active;
    wd_scheduler_step(f.sched, &active, NULL);
    wd_scheduler_step(f.sched, &active, NULL);
    WD_EXPECT(wd_kv_pool_n_free(f.kv) < 16);
    WD_EXPECT_EQ_INT(wd_scheduler_abort(f.sched, b), WD_OK); /* waiting */
    WD_EXPECT_EQ_INT(wd_scheduler_abort(f.sched, a), WD_OK); /* running */
    WD_EXPECT_EQ_INT(wd_scheduler_abort(f.sched, a), WD_ERR_NOT_FOUND);
    WD_EXPECT_EQ_INT(f.log.finish[a], WD_FINISH_ABORT);
    WD_EXPECT_EQ_INT(f.log.finish[b], WD_FINISH_ABORT);
    WD_EXPECT_EQ_INT(wd_kv_pool_n_free(f.kv), 16);
    WD_EXPECT_EQ_INT(wd_scheduler_n_running(f.sched) + wd_scheduler_n_waiting(f.sched), 0);
    /* Requests left at destroy are aborted and their pages returned (checked in teardown). */
    WD_EXPECT_EQ_INT(wd_scheduler_add(f.sched, &p, &a, NULL), WD_OK);
    wd_scheduler_step(f.sched, &active, NULL);
    teardown(&f);
}

static void test_bad_requests(void)
{
    struct fixture f;
    if (setup(&f, 4, 2, 0))
        return;
    uint64_t id;
    struct wd_error err = {0};
    struct wd_request_params p = params(0, 4);
    WD_EXPECT_EQ_INT(wd_scheduler_add(f.sched, &p, &id, &err), WD_ERR_INVALID);
    p = params(9, 0);
    WD_EXPECT_EQ_INT(wd_scheduler_add(f.sched, &p, &id, &err), WD_ERR_INVALID);
    int32_t bad[] = {1, 1 << 20};
    p = params(2, 4);
    p.prompt = bad;
    WD_EXPECT_EQ_INT(wd_scheduler_add(f.sched, &p, &id, &err), WD_ERR_INVALID);
    WD_EXPECT(strstr(err.msg, "outside the vocabulary") != NULL);
    int32_t longp[80] = {0};
    p = params(9, 4);
    p.prompt = longp;
    p.n_prompt = 80;
    WD_EXPECT_EQ_INT(wd_scheduler_add(f.sched, &p, &id, &err), WD_ERR_INVALID);
    WD_EXPECT(strstr(err.msg, "context length") != NULL);
    p = params(9, 30); /* 39 tokens: 10 pages, the pool has 4 */
    WD_EXPECT_EQ_INT(wd_scheduler_add(f.sched, &p, &id, &err), WD_ERR_NOMEM);
    p = params(9, 4);
    p.sampling.top_p = 0;
    WD_EXPECT_EQ_INT(wd_scheduler_add(f.sched, &p, &id, &err), WD_ERR_INVALID);
    /* NaN passes a plain "< 0" range check; each sampling field must refuse it. */
    float *fields[] = {&p.sampling.temperature, &p.sampling.top_p, &p.sampling.min_p};
    for (int k = 0; k < 3; k++) {
        p = params(9, 4);
        *fields[k] = NAN;
        WD_EXPECT_EQ_INT(wd_scheduler_add(f.sched, &p, &id, &err), WD_ERR_INVALID);
    }
    WD_EXPECT_EQ_INT(wd_scheduler_n_waiting(f.sched), 0);
    teardown(&f);
}

static void test_stop_and_context(void)
{
    struct fixture f;
    if (setup(&f, 32, 4, 0))
        return;
    uint64_t free_id, stop_id, ctx_id;
    struct wd_request_params p = params(9, 10);
    WD_EXPECT_EQ_INT(wd_scheduler_add(f.sched, &p, &free_id, NULL), WD_OK);
    run_all(&f);
    /* Stop at the third greedy token: the request ends there with reason STOP. */
    p.ignore_eos = 0;
    p.n_stop_ids = 1;
    p.stop_ids[0] = f.log.out[free_id][2];
    WD_EXPECT_EQ_INT(wd_scheduler_add(f.sched, &p, &stop_id, NULL), WD_OK);
    /* A request reaching the context length (64) ends with LENGTH. */
    struct wd_request_params q = params(9, 100);
    WD_EXPECT_EQ_INT(wd_scheduler_add(f.sched, &q, &ctx_id, NULL), WD_OK);
    run_all(&f);
    int first_stop = 0;
    while (f.log.out[free_id][first_stop] != p.stop_ids[0])
        first_stop++;
    WD_EXPECT_EQ_INT(f.log.n_tokens[stop_id], first_stop + 1);
    WD_EXPECT_EQ_INT(f.log.finish[stop_id], WD_FINISH_STOP);
    WD_EXPECT_EQ_INT(f.log.n_tokens[ctx_id], 64 - 9);
    WD_EXPECT_EQ_INT(f.log.finish[ctx_id], WD_FINISH_LENGTH);
    teardown(&f);
}

static void test_seeded_sampling(void)
{
    struct fixture f;
    if (setup(&f, 32, 4, 0))
        return;
    struct wd_request_params p = params(9, 12);
    p.sampling.temperature = 1.0f;
    p.sampling.top_k = 50;
    p.seed = 1234;
    uint64_t a, b, c;
    WD_EXPECT_EQ_INT(wd_scheduler_add(f.sched, &p, &a, NULL), WD_OK);
    WD_EXPECT_EQ_INT(wd_scheduler_add(f.sched, &p, &b, NULL), WD_OK);
    p.seed = 99;
    WD_EXPECT_EQ_INT(wd_scheduler_add(f.sched, &p, &c, NULL), WD_OK);
    run_all(&f);
    WD_EXPECT(memcmp(f.log.out[a], f.log.out[b], 12 * sizeof(int32_t)) == 0);
    WD_EXPECT(memcmp(f.log.out[a], f.log.out[c], 12 * sizeof(int32_t)) != 0);
    teardown(&f);
}

/* The forward reports every MoE layer's routing to the recorder: top_k entries per token
 * on MoE layers, nothing on the dense layer. */
static void test_expert_recorder(void)
{
    struct wd_expert_recorder *rec = NULL;
    struct wd_model *m = NULL;
    struct wd_error err = {0};
    struct wd_model_config cfg;
    WD_EXPECT_EQ_INT(
        wd_model_config_load(wd_test_src("tests/fixtures/tiny-qwen3-moe/fp32"), &cfg, &err), WD_OK);
    struct wd_expert_recorder_config rc = {.mode = WD_RECORD_STAT,
                                           .n_layers = cfg.n_layers,
                                           .n_experts = cfg.n_routed_experts,
                                           .top_k = cfg.num_experts_per_tok,
                                           .buffer_size = 8};
    WD_EXPECT_EQ_INT(wd_expert_recorder_create(&rc, &rec, &err), WD_OK);
    struct wd_model_options opt = {
        .max_batch_tokens = 16, .max_logit_rows = 16, .n_threads = 1, .recorder = rec};
    WD_EXPECT_EQ_INT(
        wd_model_create(wd_test_src("tests/fixtures/tiny-qwen3-moe/fp32"), &opt, &m, &err), WD_OK);
    struct wd_kv_pool *kv = NULL;
    struct wd_kv_pool_config kc = {.n_layers = cfg.n_layers, .page_size = 16, .n_pages = 1};
    if (m) {
        wd_model_kv_geometry(m, &kc.k_row, &kc.v_row);
        WD_EXPECT_EQ_INT(wd_kv_pool_create(&kc, &kv, &err), WD_OK);
    }
    if (m && kv) {
        int32_t page = 0, seq[9] = {0}, pos[9];
        for (int i = 0; i < 9; i++)
            pos[i] = i;
        struct wd_attn_seq s = {.page_table = &page, .n_ctx = 9};
        struct wd_forward_batch b = {.n_tokens = 9,
                                     .ids = k_prompt,
                                     .tok_seq = seq,
                                     .tok_pos = pos,
                                     .n_seqs = 1,
                                     .seqs = &s,
                                     .n_logits = 1,
                                     .logit_rows = pos + 8};
        float *logits = malloc((size_t)cfg.vocab_size * sizeof(float));
        WD_EXPECT_EQ_INT(wd_model_forward(m, kv, &b, logits, &err), WD_OK);
        free(logits);
        double *c = calloc((size_t)cfg.n_layers * cfg.n_routed_experts, sizeof(double));
        WD_EXPECT_EQ_INT(wd_expert_recorder_counts(rec, c), 1);
        for (int l = 0; l < cfg.n_layers; l++) {
            double sum = 0;
            for (int e = 0; e < cfg.n_routed_experts; e++)
                sum += c[l * cfg.n_routed_experts + e];
            WD_EXPECT_NEAR(
                sum, wd_model_config_is_moe_layer(&cfg, l) ? 9 * cfg.num_experts_per_tok : 0, 0);
        }
        free(c);
    }
    wd_kv_pool_destroy(kv);
    wd_model_destroy(m);
    wd_expert_recorder_destroy(rec);
}

int main(void)
{
    WD_RUN(test_admission_and_pages);
    WD_RUN(test_abort);
    WD_RUN(test_bad_requests);
    WD_RUN(test_stop_and_context);
    WD_RUN(test_seeded_sampling);
    WD_RUN(test_expert_recorder);
    return wd_test_finish();
}
