/*
 * Sharded forward (tensor-parallel attention, expert-parallel and expert-TP MoE,
 * TP dense layers, DP attention with gathered MoE and an idle DP rank) against the
 * golden logits: R ranks run as R threads of this
 * process, each holding its shard of the fixture, joined by an all-reduce over a
 * shared array and a barrier (the multi-process transports are tested elsewhere;
 * this checks the slicing and the reduction points). The logits of every rank must
 * equal each other bit for bit and transformers' within 1e-4.
 */
#include <jansson.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "common/kv/kv_pool.h"
#include "common/model/model.h"
#include "tests/unit/wd_test.h"

#define MAX_RANKS 4

struct group {
    int n;
    pthread_barrier_t barrier;
    float *slots[MAX_RANKS];
    /* The test's all-to-all: every rank's dispatched rows, visible to all. */
    const float *a2a_x[MAX_RANKS];
    const int32_t *a2a_idx[MAX_RANKS];
    const float *a2a_w[MAX_RANKS];
    int64_t a2a_n[MAX_RANKS];
    float *a2a_out[MAX_RANKS];
};

struct rank_ctx {
    struct group *g;      /* every rank (MoE and dense groups) */
    struct group *g_attn; /* this rank's attention-TP group (== g without DP attention) */
    int rank, attn_rank;  /* index in g and in g_attn */
    const char *model_dir;
    struct wd_model_shard shard;
    const int32_t *ids;
    int n_tokens;   /* 0: an idle DP rank */
    int max_tokens; /* the largest batch of any DP rank */
    int vocab;
    float *logits; /* [n_tokens, vocab] */
    int use_a2a;   /* MoE through the test's all-to-all instead of the all-reduce backend */
    int deepep_mode;
    struct wd_model *model;
    enum wd_status st;
    char msg[WD_ERROR_LEN];
};

/* Every group of this test is the whole set of ranks; the sum runs in rank order so each
 * rank gets the same bits. */
static enum wd_status all_reduce(void *ctx, enum wd_model_group grp, float *buf, size_t n,
                                 struct wd_error *err)
{
    struct rank_ctx *r = ctx;
    struct group *g = grp == WD_GROUP_ATTN_TP ? r->g_attn : r->g;
    int me = grp == WD_GROUP_ATTN_TP ? r->attn_rank : r->rank;
    g->slots[me] = buf;
    pthread_barrier_wait(&g->barrier);
    float *sum = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) {
        float s = 0;
        for (int k = 0; k < g->n; k++)
            s += g->slots[k][i];
        sum[i] = s;
    }
    pthread_barrier_wait(&g->barrier); /* everyone has read every slot */
    memcpy(buf, sum, n * sizeof(float));
    free(sum);
    return WD_OK;
}

/* A plain all-to-all with the DeepEP contract's result, for checking the model's side:
 * each rank publishes its rows, then, one rank at a time, every rank runs its own experts
 * on the rows routed to them and adds the weighted results into the sources' outputs. */
static enum wd_status
test_a2a(void *ctx, const float *x, int64_t n, const int32_t *idx, const float *w, int low_latency,
         enum wd_status (*run)(void *, int, const float *, int, float *, struct wd_error *),
         void *ectx, float *out, struct wd_error *err)
{
    struct rank_ctx *r = ctx;
    struct group *g = r->g;
    const struct wd_model *m = r->model;
    int H = m->cfg.hidden_size, K = m->cfg.num_experts_per_tok;
    g->a2a_x[r->rank] = x;
    g->a2a_idx[r->rank] = idx;
    g->a2a_w[r->rank] = w;
    g->a2a_n[r->rank] = n;
    g->a2a_out[r->rank] = out;
    memset(out, 0, (size_t)n * (size_t)H * sizeof(float));
    pthread_barrier_wait(&g->barrier);
    float *y = malloc((size_t)H * sizeof(float));
    enum wd_status st = WD_OK;
    for (int turn = 0; turn < g->n; turn++) {
        for (int s = 0; turn == r->rank && st == WD_OK && s < g->n; s++)
            for (int64_t i = 0; st == WD_OK && i < g->a2a_n[s] * K; i++) {
                int e = g->a2a_idx[s][i];
                if (e < m->expert_begin || e >= m->expert_end)
                    continue;
                st = run(ectx, e - m->expert_begin, g->a2a_x[s] + (i / K) * H, 1, y, err);
                for (int d = 0; d < H; d++)
                    g->a2a_out[s][(i / K) * H + d] += g->a2a_w[s][i] * y[d];
            }
        pthread_barrier_wait(&g->barrier);
    }
    free(y);
    (void)low_latency;
    return st;
}

static void *rank_main(void *arg)
{
    struct rank_ctx *r = arg;
    struct wd_error err = {0};
    struct wd_model_options opt = {.max_batch_tokens = r->max_tokens,
                                   .max_logit_rows = r->max_tokens,
                                   .n_threads = 1,
                                   .shard = r->shard,
                                   .comm = {.ctx = r, .all_reduce = all_reduce}};
    if (r->use_a2a) {
        opt.comm.moe_a2a = test_a2a;
        opt.comm.deepep_mode = r->deepep_mode;
        opt.comm.ll_max_tokens = 128;
    }
    struct wd_model *m = NULL;
    struct wd_kv_pool *kv = NULL;
    r->st = wd_model_create(r->model_dir, &opt, &m, &err);
    r->model = m;
    if (r->st == WD_OK) {
        struct wd_kv_pool_config kc = {.n_layers = m->cfg.n_layers, .page_size = 16, .n_pages = 8};
        wd_model_kv_geometry(m, &kc.k_row, &kc.v_row);
        r->st = wd_kv_pool_create(&kc, &kv, &err);
    }
    if (r->st == WD_OK) {
        int32_t pages[8] = {3, 1, 7, 0, 2, 4, 5, 6};
        struct wd_attn_seq seq = {.page_table = pages, .n_ctx = r->n_tokens};
        int32_t *tseq = calloc((size_t)r->n_tokens, sizeof(int32_t));
        int32_t *pos = malloc((size_t)r->n_tokens * sizeof(int32_t));
        for (int t = 0; t < r->n_tokens; t++)
            pos[t] = t;
        struct wd_forward_batch b = {.n_tokens = r->n_tokens,
                                     .ids = r->ids,
                                     .tok_seq = tseq,
                                     .tok_pos = pos,
                                     .n_seqs = 1,
                                     .seqs = &seq,
                                     .n_logits = r->n_tokens,
                                     .logit_rows = pos};
        r->st = wd_model_forward(m, kv, &b, r->logits, &err);
        free(tseq);
        free(pos);
    }
    if (r->st != WD_OK)
        snprintf(r->msg, sizeof(r->msg), "%s", err.msg);
    wd_kv_pool_destroy(kv);
    wd_model_destroy(m);
    return NULL;
}

static void run_layout(const char *family, int R, int attn_tp, int ep, int moe_tp, int dense_tp)
{
    char rel[256], dir[4096];
    snprintf(rel, sizeof(rel), "tests/fixtures/%s/golden/golden.json", family);
    json_t *root = json_load_file(wd_test_src(rel), 0, NULL);
    WD_EXPECT(root != NULL);
    if (!root)
        return;
    int vocab = (int)json_integer_value(json_object_get(root, "vocab_size"));
    /* The longest prompt (it crosses KV pages); its logits sit after the earlier prompts'. */
    json_t *prompts = json_object_get(root, "prompts");
    int which = (int)json_array_size(prompts) - 1;
    size_t before = 0;
    for (int i = 0; i < which; i++)
        before += json_array_size(json_object_get(json_array_get(prompts, i), "ids"));
    json_t *jids = json_object_get(json_array_get(prompts, which), "ids");
    int n = (int)json_array_size(jids);
    int32_t *ids = malloc((size_t)n * sizeof(int32_t));
    for (int i = 0; i < n; i++)
        ids[i] = (int32_t)json_integer_value(json_array_get(jids, i));
    /* The fp32 variant, or the family's only one (the FP8 family ships fp8 alone). */
    json_t *vars = json_object_get(root, "variants"), *var = json_object_get(vars, "fp32");
    if (!var)
        var = json_object_iter_value(json_object_iter(vars));
    snprintf(rel, sizeof(rel), "tests/fixtures/%s/golden/%s", family,
             json_string_value(json_object_get(var, "logits")));
    FILE *f = fopen(wd_test_src(rel), "rb");
    float *ref = malloc((size_t)n * (size_t)vocab * sizeof(float));
    int ok = f && fseek(f, (long)(before * (size_t)vocab * sizeof(float)), SEEK_SET) == 0 &&
             fread(ref, sizeof(float), (size_t)n * (size_t)vocab, f) == (size_t)n * (size_t)vocab;
    if (f)
        fclose(f);
    WD_EXPECT(ok);
    snprintf(rel, sizeof(rel), "tests/fixtures/%s/%s", family,
             json_string_value(json_object_get(var, "model_dir")));
    snprintf(dir, sizeof(dir), "%s", wd_test_src(rel));

    struct group g = {.n = R};
    pthread_barrier_init(&g.barrier, NULL, (unsigned)R);
    struct rank_ctx ctx[MAX_RANKS];
    pthread_t th[MAX_RANKS];
    for (int r = 0; r < R; r++) {
        ctx[r] = (struct rank_ctx){.g = &g,
                                   .g_attn = &g,
                                   .rank = r,
                                   .attn_rank = r,
                                   .model_dir = dir,
                                   .ids = ids,
                                   .n_tokens = n,
                                   .max_tokens = n,
                                   .vocab = vocab};
        /* Layout as SGLang builds it without DP attention: MoE-TP groups contiguous,
         * moe_ep_rank = rank / moe_tp. */
        ctx[r].shard = (struct wd_model_shard){.attn_tp_size = attn_tp,
                                               .attn_tp_rank = r,
                                               .moe_ep_size = ep,
                                               .moe_ep_rank = r / moe_tp,
                                               .moe_tp_size = moe_tp,
                                               .moe_tp_rank = r % moe_tp,
                                               .dense_tp_size = dense_tp,
                                               .dense_tp_rank = dense_tp > 1 ? r : 0};
        ctx[r].logits = malloc((size_t)n * (size_t)vocab * sizeof(float));
        pthread_create(&th[r], NULL, rank_main, &ctx[r]);
    }
    for (int r = 0; r < R; r++)
        pthread_join(th[r], NULL);
    for (int r = 0; r < R; r++) {
        WD_EXPECT_MSG(ctx[r].st == WD_OK, "%s R%d rank %d: %s", family, R, r, ctx[r].msg);
        if (ctx[r].st != WD_OK)
            continue;
        double worst = 0;
        for (int t = 0; t < n; t++) {
            double scale = 0, e = 0;
            for (int j = 0; j < vocab; j++) {
                double a = fabs(ref[(size_t)t * vocab + j]);
                double d = fabs(ctx[r].logits[(size_t)t * vocab + j] - ref[(size_t)t * vocab + j]);
                scale = a > scale ? a : scale;
                e = d > e ? d : e;
            }
            worst = e / scale > worst ? e / scale : worst;
        }
        WD_EXPECT_MSG(worst <= 1e-4, "%s tp%d ep%d moe_tp%d dense_tp%d rank %d: rel err %.3g",
                      family, R, ep, moe_tp, dense_tp, r, worst);
        if (r > 0)
            WD_EXPECT_MSG(memcmp(ctx[r].logits, ctx[0].logits,
                                 (size_t)n * (size_t)vocab * sizeof(float)) == 0,
                          "%s: rank %d logits differ from rank 0", family, r);
        if (r == 0)
            printf("  %s tp%d ep%d moe_tp%d dense_tp%d: max rel err %.3g\n", family, R, ep, moe_tp,
                   dense_tp, worst);
    }
    for (int r = 0; r < R; r++)
        free(ctx[r].logits);
    pthread_barrier_destroy(&g.barrier);
    free(ids);
    free(ref);
    json_decref(root);
}

static void test_tp2_ep2(void)
{
    run_layout("tiny-qwen3-moe", 2, 2, 2, 1, 2);
    run_layout("tiny-deepseek-v3", 2, 2, 2, 1, 2);
    /* FP8 weights split inside 128x128 blocks (dense MLP rows, attention heads). */
    run_layout("tiny-deepseek-v3-fp8", 2, 2, 2, 1, 2);
    run_layout("tiny-deepseek-v3-fp8", 4, 4, 4, 1, 4);
}

static void test_tp4_ep2_moe_tp2(void)
{
    run_layout("tiny-qwen3-moe", 4, 4, 2, 2, 4);
    run_layout("tiny-deepseek-v3", 4, 4, 2, 2, 4);
}

static void test_tp4_ep4_dense_whole(void)
{
    /* --moe-dense-tp-size 1: dense layers and shared experts whole on every rank. */
    run_layout("tiny-qwen3-moe", 4, 4, 4, 1, 1);
    run_layout("tiny-deepseek-v3", 4, 4, 4, 1, 1);
}

struct prompt {
    int32_t *ids;
    int n;
    float *ref; /* [n, vocab] */
};

/* Loads prompt i of a family's golden set with its fp32 logits. */
static int load_prompt(const char *family, int i, int *vocab_p, struct prompt *p)
{
    char rel[256];
    snprintf(rel, sizeof(rel), "tests/fixtures/%s/golden/golden.json", family);
    json_t *root = json_load_file(wd_test_src(rel), 0, NULL);
    if (!root)
        return -1;
    int vocab = (int)json_integer_value(json_object_get(root, "vocab_size"));
    json_t *prompts = json_object_get(root, "prompts");
    size_t before = 0;
    for (int k = 0; k < i; k++)
        before += json_array_size(json_object_get(json_array_get(prompts, k), "ids"));
    json_t *jids = json_object_get(json_array_get(prompts, i), "ids");
    p->n = (int)json_array_size(jids);
    p->ids = malloc((size_t)p->n * sizeof(int32_t));
    for (int k = 0; k < p->n; k++)
        p->ids[k] = (int32_t)json_integer_value(json_array_get(jids, k));
    json_decref(root);
    snprintf(rel, sizeof(rel), "tests/fixtures/%s/golden/logits_fp32.bin", family);
    FILE *f = fopen(wd_test_src(rel), "rb");
    size_t cnt = (size_t)p->n * (size_t)vocab;
    p->ref = malloc(cnt * sizeof(float));
    int ok = f && fseek(f, (long)(before * (size_t)vocab * sizeof(float)), SEEK_SET) == 0 &&
             fread(p->ref, sizeof(float), cnt, f) == cnt;
    if (f)
        fclose(f);
    *vocab_p = vocab;
    return ok ? 0 : -1;
}

/* DP attention: R ranks in dp blocks of attn_tp; DP rank d runs golden prompt
 * prompt_of[d] (-1: idle, an empty forward); experts split ep ways over all ranks. */
static void run_dp(const char *family, int R, int dp, int ep, int dense_tp, const int *prompt_of,
                   int use_a2a)
{
    int attn_tp = R / dp, moe_tp = R / ep, vocab = 0, max_tokens = 1;
    struct prompt pr[MAX_RANKS] = {{0}};
    for (int d = 0; d < dp; d++) {
        if (prompt_of[d] < 0)
            continue;
        WD_EXPECT(load_prompt(family, prompt_of[d], &vocab, &pr[d]) == 0);
        if (pr[d].n > max_tokens)
            max_tokens = pr[d].n;
    }
    char rel[256], dir[4096];
    snprintf(rel, sizeof(rel), "tests/fixtures/%s/fp32", family);
    snprintf(dir, sizeof(dir), "%s", wd_test_src(rel));
    struct group all = {.n = R}, attn[MAX_RANKS];
    pthread_barrier_init(&all.barrier, NULL, (unsigned)R);
    for (int d = 0; d < dp; d++) {
        attn[d] = (struct group){.n = attn_tp};
        pthread_barrier_init(&attn[d].barrier, NULL, (unsigned)attn_tp);
    }
    struct rank_ctx ctx[MAX_RANKS];
    pthread_t th[MAX_RANKS];
    for (int r = 0; r < R; r++) {
        int d = r / attn_tp;
        ctx[r] = (struct rank_ctx){.g = &all,
                                   .g_attn = &attn[d],
                                   .rank = r,
                                   .attn_rank = r % attn_tp,
                                   .model_dir = dir,
                                   .ids = pr[d].ids,
                                   .n_tokens = pr[d].n,
                                   .max_tokens = max_tokens,
                                   .vocab = vocab};
        ctx[r].shard = (struct wd_model_shard){.attn_dp_size = dp,
                                               .attn_dp_rank = d,
                                               .attn_tp_size = attn_tp,
                                               .attn_tp_rank = r % attn_tp,
                                               .moe_ep_size = ep,
                                               .moe_ep_rank = r / moe_tp,
                                               .moe_tp_size = moe_tp,
                                               .moe_tp_rank = r % moe_tp,
                                               .dense_tp_size = dense_tp,
                                               .dense_tp_rank = dense_tp > 1 ? r : 0};
        ctx[r].logits = malloc((size_t)max_tokens * (size_t)(vocab ? vocab : 1) * sizeof(float));
        ctx[r].use_a2a = use_a2a;
        ctx[r].deepep_mode = 0;
        pthread_create(&th[r], NULL, rank_main, &ctx[r]);
    }
    for (int r = 0; r < R; r++)
        pthread_join(th[r], NULL);
    double worst = 0;
    for (int r = 0; r < R; r++) {
        int d = r / attn_tp;
        WD_EXPECT_MSG(ctx[r].st == WD_OK, "%s dp rank %d: %s", family, r, ctx[r].msg);
        if (ctx[r].st != WD_OK || prompt_of[d] < 0)
            continue;
        for (int t = 0; t < pr[d].n; t++) {
            double scale = 0, e = 0;
            for (int j = 0; j < vocab; j++) {
                double a = fabs(pr[d].ref[(size_t)t * vocab + j]);
                double x =
                    fabs(ctx[r].logits[(size_t)t * vocab + j] - pr[d].ref[(size_t)t * vocab + j]);
                scale = a > scale ? a : scale;
                e = x > e ? x : e;
            }
            worst = e / scale > worst ? e / scale : worst;
        }
    }
    printf("  %s tp%d dp%d ep%d dense_tp%d%s: max rel err %.3g\n", family, R, dp, ep, dense_tp,
           use_a2a ? " (all-to-all backend)" : "", worst);
    WD_EXPECT_MSG(worst <= 1e-4, "%s DP attention: rel err %.3g", family, worst);
    for (int r = 0; r < R; r++)
        free(ctx[r].logits);
    for (int d = 0; d < dp; d++) {
        pthread_barrier_destroy(&attn[d].barrier);
        free(pr[d].ids);
        free(pr[d].ref);
    }
    pthread_barrier_destroy(&all.barrier);
}

static void test_dp_attention(void)
{
    int four[] = {0, 3, 1, 4}, two[] = {4, 2}, idle[] = {2, -1};
    run_dp("tiny-qwen3-moe", 4, 4, 4, 4, four, 0); /* tp4 ep4 dp4 */
    run_dp("tiny-deepseek-v3", 4, 4, 4, 4, four, 0);
    run_dp("tiny-qwen3-moe", 4, 2, 4, 4, two, 0); /* tp4 dp2 ep4: attn_tp 2 */
    run_dp("tiny-deepseek-v3", 4, 2, 4, 1, two, 0);
    run_dp("tiny-deepseek-v3", 2, 2, 2, 2, idle, 0); /* one DP rank idle */
}

/* The model's side of the all-to-all backend (row split over attention-TP, shared experts
 * beside, the mode vote), through a plain in-test all-to-all. */
static void test_a2a_backend(void)
{
    int four[] = {0, 3, 1, 4}, two[] = {4, 2}, idle[] = {2, -1}, one[] = {4};
    run_dp("tiny-qwen3-moe", 4, 4, 4, 4, four, 1);
    run_dp("tiny-deepseek-v3", 4, 4, 4, 1, four, 1);
    run_dp("tiny-deepseek-v3", 4, 2, 4, 4, two, 1); /* attn_tp 2: rows split, shared gathered */
    run_dp("tiny-qwen3-moe", 4, 1, 4, 4, one, 1);   /* no DP attention: attn_tp 4 */
    run_dp("tiny-deepseek-v3", 2, 2, 2, 1, idle, 1);
}

int main(void)
{
    WD_RUN(test_tp2_ep2);
    WD_RUN(test_tp4_ep2_moe_tp2);
    WD_RUN(test_tp4_ep4_dense_whole);
    WD_RUN(test_dp_attention);
    WD_RUN(test_a2a_backend);
    return wd_test_finish();
}
